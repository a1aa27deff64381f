"""The gradient-descent demo's figures, made with its quick mode.

Run it with ``python examples/gd_figures.py``. :func:`peakfit.gd.demo.run_demo` with
``quick=True`` trains the small problems of the gradient-descent study (learning-rate edge,
batch size, weight decay, gradient noise, precision, ...) and writes its figures and
``report.md`` into a temporary folder; this script prints the headline numbers and shows every
figure. ``python examples/gd_demo.py`` runs the full-size demo; the study itself is described
on the gradient-descent page.
"""

# %%
# Run the demo in quick mode (smaller problems, a few seconds).
import tempfile

import matplotlib.pyplot as plt

from peakfit.gd.demo import run_demo

result = run_demo(tempfile.mkdtemp(prefix="peakfit-gd-"), quick=True)
lr, bt = result["numbers"]["lr"], result["numbers"]["batch"]
print(f"{len(result['figures'])} figures in {result['seconds']:.1f} s")
print(f"learning-rate edge found at {lr['edge_ratio']:.4f} x 2/lambda_max")
print(f"noise-scale estimate / exact: {bt['b_simple_ratio']:.3f}")

# %%
# Every figure the demo wrote, shown at its own size.
for name, path in result["figures"].items():
    image = plt.imread(path)
    dpi = 100
    fig = plt.figure(name, figsize=(image.shape[1] / dpi, image.shape[0] / dpi), dpi=dpi)
    fig.figimage(image)
plt.show()
