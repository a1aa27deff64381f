"""Compare peakfit with a MATLAB ``fit(x, y, 'gauss3')`` result printed in the command window.

Run it with ``python examples/compare_matlab.py [FOLDER]``. It writes the spectrum and the
MATLAB output to FOLDER (default: a new temporary folder) and runs

    peakfit compare-matlab FOLDER/spectrum.csv --matlab FOLDER/matlab_output.txt

which fits the data the MATLAB way and the peakfit way, matches the peaks by centre and prints a
side-by-side table. The exit code is 0 when every coefficient agrees within ``--rtol``.

To compare with your own MATLAB session, paste what MATLAB prints for ``fitresult`` (and,
optionally, cftool's "Goodness of fit" block) into a text file. The text below has exactly
MATLAB's format; it was produced for this synthetic data set with ``peakfit.matlab.fit``
(MATLAB's start point, term order and display), since a MATLAB installation is not available
to the test suite.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

import peakfit
from peakfit.cli import main as peakfit_main

MATLAB_OUTPUT = """\
>> [fitresult, gof] = fit(x, y, 'gauss3')

fitresult =

     General model Gauss3:
     fitresult(x) =
              a1*exp(-((x-b1)/c1)^2) + a2*exp(-((x-b2)/c2)^2) +
              a3*exp(-((x-b3)/c3)^2)
     Coefficients (with 95% confidence bounds):
       a1 =           1  (0.9961, 1.005)
       b1 =       470.1  (470, 470.1)
       c1 =       11.98  (11.92, 12.04)
       a2 =       0.702  (0.6981, 0.706)
       b2 =         540  (539.9, 540)
       c2 =       14.97  (14.88, 15.07)
       a3 =      0.4503  (0.4469, 0.4537)
       b3 =       619.9  (619.8, 620.1)
       c3 =       20.09  (19.92, 20.27)

Goodness of fit:
  SSE: 0.0593
  R-square: 0.9984
  Adjusted R-square: 0.9984
  RMSE: 0.01001
"""


def make_spectrum() -> tuple[np.ndarray, np.ndarray]:
    """Three peaks at 470, 540, 620 with noise sd 0.01 (seeded, so always the same data)."""
    x = np.linspace(400, 700, 601)
    truth = np.array([1.0, 470.0, 12.0, 0.7, 540.0, 15.0, 0.45, 620.0, 20.0])
    rng = np.random.default_rng(2024)
    y = peakfit.GaussianModel(3)(x, truth) + 0.01 * rng.standard_normal(x.size)
    return x, y


def main(folder: str | None = None) -> int:
    """Write the data and MATLAB's output, run ``peakfit compare-matlab``; its exit code."""
    out = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="peakfit-compare-"))
    out.mkdir(parents=True, exist_ok=True)
    x, y = make_spectrum()
    data = out / "spectrum.csv"
    np.savetxt(data, np.column_stack([x, y]), delimiter=",", header="x,y", comments="",
               fmt="%.10g")
    matlab_txt = out / "matlab_output.txt"
    matlab_txt.write_text(MATLAB_OUTPUT)
    return peakfit_main(["compare-matlab", str(data), "--matlab", str(matlab_txt)])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
