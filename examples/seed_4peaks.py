"""The seed scenario: fit 4 Gaussian peaks to the bundled spectrum, print the sorted means.

Run it with ``python examples/seed_4peaks.py``. It needs only numpy and scipy. The spectrum
``peakfit/data/example_4peaks.csv`` has peaks near 470, 492, 560 and 620 (noise sd 0.01).
"""

from __future__ import annotations

from importlib import resources

import peakfit
from peakfit.io import load_spectra


def main() -> peakfit.GaussianFit:
    """Fit the bundled example and print MATLAB's display and the sorted peak means."""
    ref = resources.files("peakfit") / "data" / "example_4peaks.csv"
    with resources.as_file(ref) as path:
        spectra = load_spectra(path)
    x, y = spectra.x, spectra.Y[0]

    result = peakfit.fit_gaussians(x, y, n=4)

    print(result)  # MATLAB's display, with 95% confidence bounds and goodness of fit
    print()
    print("Means (sorted):", "  ".join(f"{m:.4f}" for m in result.means))
    print("FWHM:          ", "  ".join(f"{w:.4f}" for w in result.fwhm))
    return result


if __name__ == "__main__":
    main()
