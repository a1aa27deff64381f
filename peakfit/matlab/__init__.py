"""Everything MATLAB: the MATLAB-compatible ``fit``, reading MATLAB's results, comparing.

``peakfit.matlab.fit(x, y, 'gauss4', ...)`` returns ``(fitresult, gof, output)`` like MATLAB's
``[fitresult, gof, output] = fit(x, y, 'gauss4', ...)``. It uses MATLAB's start point
(:func:`gaussnstart`) unless a ``StartPoint`` is given and keeps the terms in the solver's
order, as MATLAB does; :func:`peakfit.fit_gaussians` is the Pythonic interface with the robust
start.

:mod:`peakfit.matlab.text` reads what MATLAB printed or saved (:func:`parse_matlab_fit`,
:func:`load_matlab_coefficients`, :func:`read_matlab_result`) and
:mod:`peakfit.matlab.compare` compares it with peakfit's fits (:func:`compare_with_matlab`,
the library side of ``peakfit compare-matlab``).
"""

from __future__ import annotations

from typing import Any

from ..fit import fit_gaussians
from ..models import parse_model_name
from ..options import FitOptions, fitoptions
from ..result import FitOutput, GaussianFit, GoodnessOfFit
from ..start import gaussnstart

__all__ = [
    "MatlabFit",
    "compare_with_matlab",
    "fit",
    "fitoptions",
    "gaussnstart",
    "load_matlab_coefficients",
    "parse_matlab_fit",
    "read_matlab_result",
]


def fit(
    x: Any,
    y: Any,
    fittype: str,
    options: FitOptions | None = None,
    /,
    **fit_options: Any,
) -> tuple[GaussianFit, GoodnessOfFit, FitOutput]:
    """MATLAB's ``fit`` for the ``gaussN`` library models.

    Parameters
    ----------
    x, y : array_like
        Data (column or row vectors are fine).
    fittype : str
        ``'gauss1'`` ... ``'gauss8'`` (any N >= 1 works).
    options : FitOptions, optional
        From :func:`fitoptions`; name-value options (MATLAB names) override it.
    **fit_options
        MATLAB name-value pairs, e.g. ``StartPoint=..., Lower=..., TolFun=1e-8, Robust='LAR'``.

    Returns
    -------
    fitresult : GaussianFit
        Prints like a MATLAB ``cfit``; ``fitresult(x)`` evaluates it.
    gof : GoodnessOfFit
        ``sse, rsquare, dfe, adjrsquare, rmse``.
    output : FitOutput
        ``numobs, numparam, residuals, jacobian, exitflag, iterations, funcCount, ...``.

    Examples
    --------
    >>> import numpy as np
    >>> from peakfit import matlab
    >>> x = np.linspace(-5, 5, 101)
    >>> y = 2 * np.exp(-((x - 0.5) / 1.5) ** 2)
    >>> f, gof, out = matlab.fit(x, y, 'gauss1')
    >>> [round(v, 6) for v in f.p.tolist()]
    [2.0, 0.5, 1.5]
    >>> gof.dfe, out.numparam
    (98, 3)
    """
    n = parse_model_name(fittype)
    r = fit_gaussians(x, y, n, start="matlab", options=options, sort=False, method="auto",
                      **fit_options)
    return r, r.gof, r.output


# after fit: compare imports it
from .compare import compare_with_matlab  # noqa: E402
from .text import (  # noqa: E402
    MatlabFit,
    load_matlab_coefficients,
    parse_matlab_fit,
    read_matlab_result,
)
