"""peakfit: fast, robust fitting of sums of Gaussian peaks with MATLAB gaussN semantics.

Examples
--------
>>> import numpy as np, peakfit
>>> x = np.linspace(0, 10, 500)
>>> y = 2 * np.exp(-((x - 3) / 0.7) ** 2) + np.exp(-((x - 6) / 1.2) ** 2)
>>> peakfit.fit_gaussians(x, y, n=2).means.round(6).tolist()
[3.0, 6.0]
"""

from __future__ import annotations

from .batch import BatchFit, fit_gaussians_batch
from .engine import get_engine, set_engine, use_engine
from .errors import FileFormatError, FitWarning, GPUUnavailableError, InputError, PeakfitError
from .fit import fit_gaussians
from .models import GaussianModel, gauss_model
from .options import FitOptions, fitoptions
from .result import FitOutput, FitState, GaussianFit, GoodnessOfFit
from .start import gaussnstart

__version__ = "0.1.0"

__all__ = [
    "BatchFit",
    "FileFormatError",
    "FitOptions",
    "FitOutput",
    "FitState",
    "FitWarning",
    "GPUUnavailableError",
    "GaussianFit",
    "GaussianModel",
    "GoodnessOfFit",
    "InputError",
    "PeakfitError",
    "__version__",
    "fit_gaussians",
    "fit_gaussians_batch",
    "fitoptions",
    "gauss_model",
    "gaussnstart",
    "get_engine",
    "set_engine",
    "use_engine",
]
