"""MATLAB-compatible entry points for people porting scripts.

``peakfit.matlab.fit(x, y, 'gauss4', ...)`` returns ``(fitresult, gof, output)`` like MATLAB's
``[fitresult, gof, output] = fit(x, y, 'gauss4', ...)``. It uses MATLAB's start point
(``gaussnstart``) unless a ``StartPoint`` is given and keeps the terms in the solver's order,
as MATLAB does; :func:`peakfit.fit_gaussians` is the Pythonic interface with the robust start.
"""

from __future__ import annotations

from typing import Any

from .fit import fit_gaussians
from .models import parse_model_name
from .options import FitOptions, fitoptions
from .result import FitOutput, GaussianFit, GoodnessOfFit

__all__ = ["fit", "fitoptions"]


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
    r = fit_gaussians(x, y, n, start="matlab", options=options, sort=False, **fit_options)
    return r, r.gof, r.output
