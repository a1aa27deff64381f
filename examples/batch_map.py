"""Fit a map of spectra in one batch and picture the fitted centres.

Run it with ``python examples/batch_map.py``. A 60 x 80 map (4800 spectra of 400 points, as
from a Raman or XRD mapping scan): each spectrum has three peaks; the middle one shifts with
position (a strained region in the middle of the map) and the last one fades towards the left
edge. :func:`peakfit.fit_gaussians_batch` fits all spectra at once on the CPU (or on a GPU
with ``device='gpu'``); the result's arrays reshape back to the map.
"""

# %%
# Make the map: true centre of peak 2 is 520 plus a bump of up to 6 in the middle.
import matplotlib.pyplot as plt
import numpy as np

import peakfit

rows, cols = 60, 80
x = np.linspace(450.0, 600.0, 400)
yy, xx = np.mgrid[0:rows, 0:cols]
b2 = 520.0 + 6.0 * np.exp(-(((xx - 45) / 18.0) ** 2 + ((yy - 28) / 14.0) ** 2))
a3 = 0.2 + 0.6 * xx / (cols - 1)
rng = np.random.default_rng(5)
truth = np.stack([np.full(b2.shape, 1.0), np.full(b2.shape, 490.0), np.full(b2.shape, 8.0),
                  np.full(b2.shape, 0.8), b2, np.full(b2.shape, 9.0),
                  a3, np.full(b2.shape, 560.0), np.full(b2.shape, 10.0)], axis=-1)
P = truth.reshape(-1, 9)
Y = sum(P[:, 3 * i, None] * np.exp(-(((x - P[:, 3 * i + 1, None]) / P[:, 3 * i + 2, None]) ** 2))
        for i in range(3))
Y = Y + 0.02 * rng.standard_normal(Y.shape)
print(f"{Y.shape[0]} spectra of {Y.shape[1]} points")

# %%
# Fit every spectrum: three peaks, default start, all at once.
r = peakfit.fit_gaussians_batch(x, Y, 3)
print(r.summary())
centres = r.b.reshape(rows, cols, 3)
err = np.abs(centres[..., 1] - b2)
print(f"peak-2 centre error: median {np.median(err):.3f}, max {err.max():.3f}")

# %%
# The fitted centre of peak 2 over the map, and the fitted height of peak 3.
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
im = axes[0].imshow(centres[..., 1], origin="lower", cmap="viridis")
fig.colorbar(im, ax=axes[0], label="fitted centre of peak 2")
axes[0].set_title("peak 2 centre")
im = axes[1].imshow(r.a.reshape(rows, cols, 3)[..., 2], origin="lower", cmap="magma")
fig.colorbar(im, ax=axes[1], label="fitted height of peak 3")
axes[1].set_title("peak 3 height")
for ax in axes:
    ax.set_xlabel("map column")
    ax.set_ylabel("map row")
fig.tight_layout()
plt.show()
