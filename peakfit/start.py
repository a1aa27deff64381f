"""Start points: MATLAB's ``gaussnstart`` reproduced exactly, baseline starts, and dispatch.

``gaussnstart`` (Curve Fitting Toolbox, 2017 version) peels peaks greedily off the data: the last
index of the maximum of the current residual gives a height and a centre; the width is the mean of
the single-Gaussian width estimates ``|x - b| / sqrt(log(a / y))`` over all positive points below
the peak, divided by ``2n``, ``2n - 1``, ... for the first, second, ... peak; the peak is then
subtracted. When fewer than ``n`` peaks can be peeled, the remaining centres are spread evenly over
the x range. See ``docs/matlab.md`` for the source of every rule.

The robust default (``start='auto'``) lives in :mod:`peakfit.autostart`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._xp import get_xp
from .errors import InputError
from .models import GaussianModel, term_values

__all__ = ["baseline_start", "estimate_start", "gaussnstart", "gaussnstart_batch"]


def gaussnstart_batch(x: Any, Y: Any, n: int) -> Any:
    """MATLAB's ``gaussnstart`` for many spectra at once.

    Parameters
    ----------
    x : array, shape (m,) or (k, m)
        Abscissae, sorted ascending (callers sort; MATLAB sorts inside, stably).
    Y : array, shape (k, m)
        Ordinates.
    n : int
        Number of terms.

    Returns
    -------
    array, shape (k, 3n)
        Start points in MATLAB order ``a1, b1, c1, ...``.

    Notes
    -----
    Vectorised over spectra: every spectrum runs exactly MATLAB's loop, including its early
    ``break`` and the even-spacing fallback for peaks it could not find.
    """
    xp = get_xp(x, Y)
    Y = xp.array(Y, dtype=float, copy=True)
    k, m = Y.shape
    X = xp.broadcast_to(x, (k, m)) if x.ndim == 1 else x
    centres = xp.zeros((k, n))
    heights = xp.zeros((k, n))
    widths = xp.zeros((k, n))
    found = xp.zeros(k, dtype=xp.int64)
    alive = xp.ones(k, dtype=bool)
    rows = xp.arange(k)
    for j in range(n):
        # LAST index of the maximum: argmax on the reversed row
        kk = m - 1 - xp.argmax(Y[:, ::-1], axis=1)
        a = Y[rows, kk]
        b = X[rows, kk]
        ids = (Y > 0) & (Y < a[:, None])
        cnt = ids.sum(axis=1)
        ok = alive & (cnt > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = xp.where(ids, a[:, None] / xp.where(ids, Y, 1.0), 1.0)
            est = xp.where(ids, xp.abs(X - b[:, None]) / xp.sqrt(xp.log(ratio)), 0.0)
            c = est.sum(axis=1) / xp.maximum(cnt, 1) / (2 * n - j)
            sub = term_values(X, a[:, None], b[:, None], c[:, None])[:, 0]
        Y = xp.where(ok[:, None], Y - xp.where(ok[:, None], sub, 0.0), Y)
        centres[:, j] = xp.where(ok, b, 0.0)
        heights[:, j] = xp.where(ok, a, 0.0)
        widths[:, j] = xp.where(ok, c, 0.0)
        found = found + ok.astype(found.dtype)
        alive = ok
    # fallback for spectra with fewer than n peaks (2017 version): evenly spaced centres
    if bool((found < n).any()):
        xmin = X.min(axis=1)
        xmax = X.max(axis=1)
        ymax = Y.max(axis=1)
        for s in np.flatnonzero(np.asarray(found.get() if hasattr(found, "get") else found) < n):
            nf = int(found[s])
            bb = xp.linspace(xmin[s], xmax[s], n - nf + 2)
            centres[s, nf:] = bb[1:-1]
            heights[s, nf:] = ymax[s]
            widths[s, nf:] = bb[1] - bb[0]
    out = xp.empty((k, 3 * n))
    out[:, 0::3] = heights
    out[:, 1::3] = centres
    out[:, 2::3] = widths
    return out


def gaussnstart(x: Any, y: Any, n: int) -> np.ndarray:
    """MATLAB's ``gaussnstart(x, y, n)`` for one spectrum.

    Parameters
    ----------
    x, y : array_like, shape (m,)
        Data; x need not be sorted (it is sorted stably, as MATLAB does).
    n : int
        Number of terms.

    Returns
    -------
    ndarray, shape (3n,)
        ``[a1, b1, c1, a2, b2, c2, ...]``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(5.0)
    >>> y = np.array([0.0, 1.0, 4.0, 1.0, 0.0])
    >>> s = gaussnstart(x, y, 1)
    >>> s[:2].tolist()
    [4.0, 2.0]
    >>> bool(np.isclose(s[2], 1 / np.sqrt(np.log(4.0)) / 2))
    True
    """
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise InputError(f"x and y must have the same length, got {x.size} and {y.size}")
    order = np.argsort(x, kind="stable")
    return gaussnstart_batch(x[order], y[order][None, :], int(n))[0]


#: Iterations of the ``'asymmetric'`` baseline, and the weight of points above the fit.
ASYMMETRIC_ITER = 12
ASYMMETRY = 1e-3


def baseline_start(
    model: GaussianModel, x: Any, Y: Any, edge_fraction: float = 0.1, method: str = "edges",
    valid: Any = None,
) -> Any:
    """Start values for the baseline coefficients of each spectrum.

    ``method='edges'``: the first and last ``edge_fraction`` of the (sorted) points are taken as
    baseline, as in O'Haver's ``peakfit.m`` autozero mode; a polynomial of the baseline's degree
    is fitted to them by least squares (an exponential is fitted as a line to ``log(y)`` where
    ``y > 0``). ``method='asymmetric'`` (polynomial baselines): the polynomial is fitted to all
    points by asymmetrically reweighted least squares (points above the fit get weight
    :data:`ASYMMETRY`, :data:`ASYMMETRIC_ITER` rounds; the polynomial form of Eilers' asymmetric
    least squares), so peaks, even at the ends of x, do not lift the baseline; an exponential
    falls back to ``'edges'``.

    ``valid`` (k, m), optional: the points to use (True; missing points may hold any finite
    value). The edges are then the first and last ``edge_fraction`` of each row's valid
    points, so that a row gives the baseline of its valid points alone, and all rows are
    fitted in one pass whatever their gaps.

    Returns an array of shape ``(k, len(model.baseline_names))``.

    Examples
    --------
    >>> import numpy as np
    >>> m = GaussianModel(1, "linear")
    >>> x = np.linspace(0.0, 1.0, 201)
    >>> y = m(x, [1.0, 0.02, 0.05, 0.3, 0.5])  # a peak at the left end
    >>> y = y + 0.01 * np.random.default_rng(0).standard_normal(x.size)
    >>> np.round(baseline_start(m, x, y[None, :], method="asymmetric"), 1).tolist()
    [[0.3, 0.4]]
    >>> np.round(baseline_start(m, x, y[None, :]), 1).tolist()  # the peak lifts the edge fit
    [[1.0, -0.2]]
    """
    xp = get_xp(x, Y)
    k, m = Y.shape
    nb = len(model.baseline_names)
    if nb == 0:
        return xp.zeros((k, 0))
    X = xp.broadcast_to(x, (k, m)) if x.ndim == 1 else x
    vw = None if valid is None else valid.astype(Y.dtype)
    if method == "asymmetric" and model.baseline != "exponential":
        deg = {"constant": 0, "linear": 1, "quadratic": 2}[model.baseline]
        w = xp.ones_like(Y) if vw is None else vw
        for _ in range(ASYMMETRIC_ITER):
            coef = _weighted_polyfit(xp, X, Y, w, deg)
            fit = sum(coef[:, j:j + 1] * X**j for j in range(deg + 1))
            w = xp.where(Y > fit, ASYMMETRY, 1.0)
            if vw is not None:
                w = w * vw
        return coef
    if vw is None:
        e = max(2, round(edge_fraction * m))
        e = min(e, m // 2) if m >= 4 else m
        idx = np.r_[0:e, m - e : m] if m >= 4 else np.arange(m)
        xe = X[:, idx]
        ye = Y[:, idx]
        we = xp.ones_like(ye)
    else:  # each row's edges among its valid points: weights over all points, one pass
        rank = xp.cumsum(vw, axis=1) - 1.0  # of each valid point among its row's
        mr = vw.sum(axis=1, keepdims=True)
        e = xp.maximum(2.0, xp.round(edge_fraction * mr))
        e = xp.where(mr >= 4, xp.minimum(e, xp.floor(mr / 2)), mr)
        xe, ye = X, Y
        we = vw * ((rank < e) | (rank >= mr - e))
    bl = model.baseline
    if bl == "exponential":
        pos = ye > 0
        w = pos.astype(float) * we
        ly = xp.log(xp.where(pos, ye, 1.0))
        coef = _weighted_polyfit(xp, xe, ly, w, 1)
        e1 = xp.exp(coef[:, 0])
        e2 = -coef[:, 1]
        bad = (w > 0).sum(axis=1) < 2
        e1 = xp.where(bad, 0.0, e1)
        e2 = xp.where(bad, 0.0, e2)
        return xp.stack([e1, e2], axis=1)
    deg = {"constant": 0, "linear": 1, "quadratic": 2}.get(bl)
    if deg is None:  # a registered kind without its own estimator: start from zeros
        return xp.zeros((k, nb))
    return _weighted_polyfit(xp, xe, ye, we, deg)


def _weighted_polyfit(xp: Any, x: Any, y: Any, w: Any, deg: int) -> Any:
    """Row-wise weighted polynomial fit; returns coefficients lowest power first, (k, deg+1)."""
    xc = x.mean(axis=1, keepdims=True)
    xs = x.std(axis=1, keepdims=True)
    xs = xp.where(xs > 0, xs, 1.0)
    t = (x - xc) / xs
    V = xp.stack([t**j for j in range(deg + 1)], axis=2)  # (k, e, deg+1)
    Vw = V * w[:, :, None]
    A = xp.einsum("kej,kel->kjl", Vw, V) + 1e-12 * xp.eye(deg + 1)
    rhs = xp.einsum("kej,ke->kj", Vw, y)
    ct = xp.linalg.solve(A, rhs[..., None])[..., 0]  # coefficients in t
    # convert sum ct_j ((x - xc)/xs)^j to powers of x
    out = xp.zeros_like(ct)
    from math import comb

    for j in range(deg + 1):
        cj = ct[:, j] / xs[:, 0] ** j
        for i in range(j + 1):
            out[:, i] = out[:, i] + cj * comb(j, i) * (-xc[:, 0]) ** (j - i)
    return out


def initial_damping(method: str) -> float:
    """Initial damping ``lam0`` of the final fit from a start of ``method``.

    ``'auto'`` starts are fitted already (to the binned data, see :mod:`peakfit.autostart`),
    so the fit begins with small damping (:data:`peakfit.autostart.LAM0`, nearly Gauss-Newton
    steps); MATLAB's and users' starts get the solver's cautious default 1.0 (see
    :func:`peakfit.solvers.lm.levenberg_marquardt`).

    Examples
    --------
    >>> initial_damping("auto"), initial_damping("matlab")
    (0.001, 1.0)
    """
    if str(method).lower() == "auto":
        from .autostart import LAM0

        return LAM0
    return 1.0


def estimate_start(
    model: GaussianModel,
    x: Any,
    Y: Any,
    method: str = "auto",
    **kwargs: Any,
) -> Any:
    """Start points ``(k, P)`` for ``model`` on sorted data, by ``method``.

    Parameters
    ----------
    model : GaussianModel
    x : array, (m,) or (k, m), sorted ascending
    Y : array, (k, m)
    method : {'auto', 'matlab'}
        ``'matlab'`` is :func:`gaussnstart` on the data after subtracting an edge-fitted
        baseline (no baseline: exactly MATLAB). ``'auto'`` is the robust estimator of
        :mod:`peakfit.autostart`.
    **kwargs
        Passed to the ``'auto'`` estimator.
    """
    xp = get_xp(x, Y)
    meth = str(method).lower()
    if meth == "matlab":
        q = baseline_start(model, x, Y)
        Yp = Y
        if q.shape[1]:
            zero_peaks = xp.zeros((Y.shape[0], 3 * model.n + q.shape[1]))
            zero_peaks[:, 3 * model.n :] = q
            Yp = Y - model.evaluate(x, zero_peaks)
        s = gaussnstart_batch(x, Yp, model.n)
        return xp.concatenate([s, q], axis=1)
    if meth == "auto":
        from .autostart import auto_start

        return auto_start(model, x, Y, **kwargs)
    raise InputError(f"unknown start method {method!r}: use 'auto', 'matlab' or an array")
