"""Reading MATLAB's fit results; moved to :mod:`peakfit.matlab.text` (names kept here)."""

from __future__ import annotations

from .matlab.text import (
    MatlabFit,
    load_matlab_coefficients,
    parse_matlab_fit,
    read_matlab_result,
)

__all__ = ["MatlabFit", "load_matlab_coefficients", "parse_matlab_fit", "read_matlab_result"]
