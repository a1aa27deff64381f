"""MATLAB's ``fit(x, y, 'gauss3')`` display beside peakfit's, for the same data.

Run it with ``python examples/matlab_display.py``. ``peakfit.matlab.fit`` is the MATLAB port:
MATLAB's start point (``gaussnstart``), MATLAB's term order and MATLAB's command-window
display. ``peakfit.fit_gaussians`` is the Pythonic interface: robust start, terms sorted by
centre. Both print the same ``cfit`` format, so a MATLAB user can read either. (The
MATLAB-format text is produced by peakfit; no MATLAB installation is used.)
"""

# %%
# Three peaks, the middle one the smallest, with noise. The MATLAB side is what
# ``[fitresult, gof] = fit(x, y, 'gauss3')`` gives; the peakfit side is
# ``fit_gaussians(x, y, 3)``.
import matplotlib.pyplot as plt
import numpy as np

import peakfit
from peakfit import matlab

x = np.linspace(400.0, 700.0, 600)
rng = np.random.default_rng(3)
y = (1.0 * np.exp(-(((x - 470) / 12) ** 2)) + 0.7 * np.exp(-(((x - 540) / 15) ** 2))
     + 0.45 * np.exp(-(((x - 620) / 20) ** 2)) + 0.01 * rng.standard_normal(x.size))

fitresult, gof, output = matlab.fit(x, y, "gauss3")
result = peakfit.fit_gaussians(x, y, 3)

left = ["MATLAB: fit(x, y, 'gauss3')", "", *str(fitresult).splitlines()]
right = ["peakfit: fit_gaussians(x, y, 3)", "", *str(result).splitlines()]
width = max(len(line) for line in left) + 3
for i in range(max(len(left), len(right))):
    a = left[i] if i < len(left) else ""
    b = right[i] if i < len(right) else ""
    print(f"{a:<{width}}{b}".rstrip())

# %%
# The two fits are the same curve: the largest difference between them, relative to the
# tallest peak, is at the level of the solver tolerance.
diff = np.max(np.abs(fitresult(x) - result(x))) / np.max(y)
print(f"max |MATLAB-style fit - peakfit fit| / max(y) = {diff:.1e}")
print(f"iterations: MATLAB start {output.iterations}, robust start {result.output.iterations}")

fig, ax = plt.subplots(figsize=(8, 3.8))
ax.plot(x, y, ".", ms=3, color="0.5", label="data")
ax.plot(x, fitresult(x), "-", lw=3, color="C0", alpha=0.5, label="MATLAB port (gaussnstart)")
ax.plot(x, result(x), "--", lw=1.5, color="C3", label="peakfit (robust start)")
ax.set_xlabel("x")
ax.set_ylabel("y")
ax.legend()
plt.show()
