"""Compare peakfit's fits of a spectrum with MATLAB's result for it (``peakfit compare-matlab``).

Both ways of fitting are run (peakfit's robust start, and MATLAB's way: :func:`peakfit.matlab.fit`),
their terms matched to MATLAB's by centre, and each coefficient compared with a tolerance (or
MATLAB's confidence bounds).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InputError
from ..fit import fit_gaussians
from ..result import goodness_of_fit

__all__ = ["compare_with_matlab"]


def _match_terms(b_ours: np.ndarray, b_matlab: np.ndarray) -> np.ndarray:
    """``perm[j]`` = our term matched to MATLAB term ``j`` (minimum total |Δb|)."""
    from scipy.optimize import linear_sum_assignment

    cost = np.abs(b_ours[:, None] - b_matlab[None, :])
    cost = np.where(np.isfinite(cost), cost, 1e300)
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(b_matlab.size, dtype=int)
    perm[cols] = rows
    return perm


def _aligned(result: Any, perm: np.ndarray) -> np.ndarray:
    p = np.asarray(result.p, dtype=float)
    return np.concatenate([p[3 * i : 3 * i + 3] for i in perm])


def compare_with_matlab(
    x: Any, y: Any, matlab: Any, *, rtol: float = 1e-3, atol: float = 0.0,
    use_bounds: bool = False, against: str = "auto", tol_fun: float = 1e-6,
    tol_x: float = 1e-6,
) -> dict[str, Any]:
    """Fit ``x, y`` the MATLAB way and the peakfit way and compare with a MATLAB result.

    Parameters
    ----------
    x, y : array_like
        The data MATLAB fitted.
    matlab : peakfit.matlab.text.MatlabFit
        MATLAB's result (:func:`peakfit.matlab.text.parse_matlab_fit`).
    rtol, atol : float
        A coefficient agrees when ``|ours - MATLAB| <= atol + rtol*|MATLAB|``.
    use_bounds : bool
        Also accept a coefficient inside MATLAB's confidence bounds.
    against : {'auto', 'matlab'}
        Which fit decides ``agree``: the peakfit-way fit or the MATLAB-way fit.
    tol_fun, tol_x : float
        Tolerances of both peakfit fits.

    Returns
    -------
    dict
        ``rows`` (one per MATLAB coefficient: ``name``, ``peakfit``, ``peakfit_matlab_start``,
        ``matlab``, ``difference``, ``relative``, ``in_bounds``, ``agree``), ``gof`` (SSE,
        R² ... of both fits, of MATLAB's printed block and at MATLAB's coefficients),
        ``matching`` (our term for each MATLAB term), ``agree``, ``n``.

    Examples
    --------
    >>> import numpy as np
    >>> from peakfit.matlab import parse_matlab_fit
    >>> x = np.linspace(-5, 5, 101)
    >>> y = 2 * np.exp(-((x - 0.5) / 1.5) ** 2)
    >>> m = parse_matlab_fit("a1 = 2 (1.9, 2.1)\\nb1 = 0.5 (0.4, 0.6)\\nc1 = 1.5 (1.4, 1.6)")
    >>> cmp = compare_with_matlab(x, y, m)
    >>> cmp["agree"], [r["name"] for r in cmp["rows"]]
    (True, ['a1', 'b1', 'c1'])
    """
    from . import fit as matlab_fit

    n = matlab.n_terms
    if n is None:
        raise InputError(
            "the MATLAB result does not say how many Gaussian terms it has "
            f"(coefficients {', '.join(matlab.coefficients)}); expected a1, b1, c1, ..."
        )
    names = [f"{p}{i}" for i in range(1, n + 1) for p in "abc"]
    missing = [nm for nm in names if nm not in matlab.coefficients]
    if missing:
        raise InputError(f"the MATLAB result lacks the coefficients {', '.join(missing)}")
    extra = {}
    if matlab.normalized is not None:
        extra["Normalize"] = "on"
    mat_p = np.array([matlab.coefficients[nm] for nm in names])
    lower = np.array([matlab.lower.get(nm, math.nan) for nm in names])
    upper = np.array([matlab.upper.get(nm, math.nan) for nm in names])
    ours = fit_gaussians(x, y, n, tol_fun=tol_fun, tol_x=tol_x, **extra)
    mway, _, _ = matlab_fit(x, y, f"gauss{n}", TolFun=tol_fun, TolX=tol_x, **extra)
    b_mat = mat_p[1::3]
    perm_auto = _match_terms(ours.b, b_mat)
    perm_mway = _match_terms(mway.b, b_mat)
    v_auto = _aligned(ours, perm_auto)
    v_mway = _aligned(mway, perm_mway)
    decide = v_auto if against == "auto" else v_mway
    rows = []
    for j, nm in enumerate(names):
        diff = decide[j] - mat_p[j]
        rel = abs(diff) / abs(mat_p[j]) if mat_p[j] != 0 else (0.0 if diff == 0 else math.inf)
        has_bounds = math.isfinite(lower[j]) and math.isfinite(upper[j])
        inside = bool(lower[j] <= decide[j] <= upper[j]) if has_bounds else None
        ok = abs(diff) <= atol + rtol * abs(mat_p[j])
        if use_bounds and inside:
            ok = True
        rows.append({
            "name": nm, "peakfit": float(v_auto[j]), "peakfit_matlab_start": float(v_mway[j]),
            "matlab": float(mat_p[j]), "difference": float(diff), "relative": float(rel),
            "in_bounds": inside, "agree": bool(ok),
            "fixed_at_bound": nm in matlab.fixed_at_bound,
        })
    xin = np.asarray(x, dtype=float)
    if matlab.normalized is not None:
        mu, sd = matlab.normalized
        xin = (xin - mu) / sd
    yv = np.asarray(y, dtype=float)
    at = goodness_of_fit(yv, yv - ours.model(xin, mat_p), ours.model.n_params)
    gof = {
        "peakfit": ours.gof.as_dict(),
        "peakfit_matlab_start": mway.gof.as_dict(),
        "matlab_printed": dict(matlab.gof),
        "at_matlab_coefficients": {"sse": at.sse, "rsquare": at.rsquare},
    }
    return {
        "n": n, "rows": rows, "gof": gof, "agree": all(r["agree"] for r in rows),
        "against": against, "rtol": rtol, "atol": atol, "use_bounds": use_bounds,
        "level": matlab.level,
        "matching": {"peakfit": [int(i) + 1 for i in perm_auto],
                     "peakfit_matlab_start": [int(i) + 1 for i in perm_mway]},
        "converged": {"peakfit": ours.converged, "peakfit_matlab_start": mway.converged},
    }
