"""One entry point for the least-squares algorithms: the ``method`` is dispatched here, once.

``'full'``
    :func:`peakfit.solvers.lm.levenberg_marquardt` on all coefficients.
``'vp'``
    :func:`peakfit.solvers.vp.variable_projection`: the heights and the polynomial baseline
    (and ``e1``) are eliminated; the iteration runs on centres, widths (and ``e2``). Needs
    unbounded linear coefficients.
``'auto'``
    ``'vp'`` where it applies (every linear coefficient unbounded), else ``'full'``.

Both return a :class:`~peakfit.solvers.lm.LMResult` with the full coefficient vector, so the
callers (``fit_gaussians``, ``fit_gaussians_batch``) do not care which one ran.

Examples
--------
>>> import numpy as np
>>> from peakfit.models import GaussianModel
>>> from peakfit.solvers.lm import NormalEquations
>>> m = GaussianModel(1, "linear")
>>> x = np.linspace(0.0, 1.0, 51)
>>> y = m(x, [1.0, 0.4, 0.2, 0.1, 0.3])[None, :]
>>> res = least_squares(NormalEquations(m, x, y), np.array([[0.5, 0.5, 0.3, 0.0, 0.0]]),
...                     m.default_lower(), m.default_upper(), model=m, method="auto",
...                     tol_fun=1e-12, tol_x=1e-12)
>>> np.round(res.p, 8).tolist()
[[1.0, 0.4, 0.2, 0.1, 0.3]]
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .lm import Evaluator, LMResult, levenberg_marquardt
from .vp import separable, variable_projection

__all__ = ["METHODS", "least_squares", "resolve_method"]

METHODS = ("auto", "full", "vp")


def resolve_method(method: str, model: Any, lower: Any, upper: Any) -> str:
    """The algorithm that ``method`` runs for these bounds: ``'full'`` or ``'vp'``.

    Raises :class:`~peakfit.errors.InputError` (a ``ValueError``) for an unknown name, or for
    ``'vp'`` with bounded linear coefficients.

    Examples
    --------
    >>> import numpy as np
    >>> from peakfit.models import GaussianModel
    >>> m = GaussianModel(1)
    >>> resolve_method("auto", m, m.default_lower(), m.default_upper())
    'vp'
    >>> resolve_method("auto", m, [0.0, -np.inf, 0.0], m.default_upper())
    'full'
    """
    meth = str(method).lower()
    if meth not in METHODS:
        raise InputError(f"unknown least-squares method {method!r}: choose from {METHODS}")
    if meth == "full" or model is None or not hasattr(model, "baseline"):
        return "full"
    ok = separable(model, lower, upper)
    if meth == "vp" and not ok:
        raise InputError("method='vp' needs unbounded heights and baseline coefficients "
                         "(Lower/Upper of a, d0, d1, ... infinite); use method='full'")
    return "vp" if ok else "full"


def least_squares(
    evaluate: Evaluator, p0: Any, lower: Any, upper: Any, *, model: Any = None,
    method: str = "auto", **kwargs: Any,
) -> LMResult:
    """Solve a batch of bounded Gaussian least-squares problems with the chosen algorithm.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(p, idx) -> (S, JᵀWJ, JᵀWr)`` of the full problem.
    p0, lower, upper :
        Start rows (k, P) and bounds, as for :func:`~peakfit.solvers.lm.levenberg_marquardt`.
    model : GaussianModel, optional
        Needed for ``'vp'``/``'auto'`` (which coefficients are linear); without it the full
        solver runs.
    method : {'auto', 'full', 'vp'}
    **kwargs
        Tolerances and controls of :func:`~peakfit.solvers.lm.levenberg_marquardt`.
    """
    if resolve_method(method, model, lower, upper) == "vp":
        return variable_projection(evaluate, model, p0, lower, upper, **kwargs)
    return levenberg_marquardt(evaluate, p0, lower, upper, **kwargs)
