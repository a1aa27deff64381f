"""Fit four overlapping peaks and plot the fit, each component and the residuals.

Run it with ``python examples/plot_4peaks.py``. It fits the spectrum bundled with peakfit
(``peakfit/data/example_4peaks.csv``: peaks near 470, 492, 560 and 620, noise sd 0.01) with the
default robust start and draws the figure with :func:`peakfit.plot.plot_fit` (needs
matplotlib: ``pip install "peakfit[plot]"``).
"""

# %%
# Load the bundled spectrum and fit four Gaussians. ``start='auto'`` (the default) finds the
# start point; no guess is needed.
from importlib import resources

import matplotlib.pyplot as plt

import peakfit
from peakfit.io import load_spectra
from peakfit.plot import plot_fit

with resources.as_file(resources.files("peakfit") / "data" / "example_4peaks.csv") as path:
    spectra = load_spectra(path)
x, y = spectra.x, spectra.Y[0]
result = peakfit.fit_gaussians(x, y, n=4)

print(f"{'peak':>4} {'height a':>10} {'centre b':>10} {'width c':>9} {'FWHM':>8} {'area':>8}")
for i in range(result.n):
    print(f"{i + 1:4d} {result.a[i]:10.4f} {result.b[i]:10.3f} {result.c[i]:9.3f} "
          f"{result.fwhm[i]:8.3f} {result.area[i]:8.3f}")
print(f"SSE {result.gof.sse:.4g}, R-square {result.gof.rsquare:.6f}, "
      f"RMSE {result.gof.rmse:.4g} (noise sd 0.01)")

# %%
# The data, the total fit, every Gaussian term (dashed) and the residuals underneath. The
# residuals look like white noise of sd 0.01: the model explains everything else.
fig = plot_fit(result)
plt.show()
