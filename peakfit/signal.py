"""Smoothing, downsampling and peak finding with MATLAB semantics.

This module reimplements, in vectorised NumPy/SciPy, the behaviour of

* Curve Fitting Toolbox ``smooth`` (methods ``'moving'``, ``'lowess'``, ``'loess'``,
  ``'sgolay'``, ``'rlowess'``, ``'rloess'``), plus ``'gaussian'`` and ``'median'`` windows
  in the spirit of MATLAB ``smoothdata``;
* Signal Processing Toolbox ``downsample`` and ``decimate``, and a block-sum ``bin``;
* Signal Processing Toolbox ``findpeaks`` (heights, locations, widths, prominences, with
  MATLAB's filters applied in MATLAB's order).

Indices are 0-based (MATLAB's are 1-based). Every function takes array-likes, works on
1-D input and raises :class:`peakfit.errors.InputError` (a :class:`ValueError`) for bad
input. The user guide page ``docs/signal.md`` lists the MATLAB equivalents and every
documented difference.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.signal as sps
from numpy.typing import ArrayLike, NDArray

from .errors import InputError

__all__ = [
    "Peaks",
    "Reduction",
    "bin",
    "decimate",
    "downsample",
    "findpeaks",
    "smooth",
]

SmoothMethod = Literal[
    "moving", "lowess", "loess", "sgolay", "rlowess", "rloess", "gaussian", "median"
]
_SMOOTH_METHODS = ("moving", "lowess", "loess", "sgolay", "rlowess", "rloess", "gaussian", "median")

# Work arrays of (rows x window) are processed in chunks of about this many elements.
_CHUNK_ELEMS = 1 << 19
_SEPS = math.sqrt(np.finfo(float).eps)


# --------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------
def _as_1d(name: str, a: ArrayLike) -> NDArray[np.float64]:
    """Return ``a`` as a new 1-D float64 array; InputError for 2-D, empty, complex, text."""
    if a is None:
        raise InputError(f"{name} is missing")
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError) as exc:  # ragged lists and the like
        raise InputError(f"{name} could not be converted to an array: {exc}") from None
    if arr.ndim != 1:
        raise InputError(f"{name} must be a 1-D array, got an array of shape {arr.shape}")
    if np.iscomplexobj(arr):
        raise InputError(f"{name} must be real; got complex values (dtype {arr.dtype})")
    try:
        out = np.array(arr, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be numeric, got dtype {arr.dtype}") from None
    if out.size == 0:
        raise InputError(f"{name} is empty")
    return out


def _real_scalar(name: str, v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise InputError(f"{name} must be a real number, got {v!r}")
    f = float(v)
    if math.isnan(f):
        raise InputError(f"{name} must not be NaN")
    return f


def _int_scalar(name: str, v: object, minimum: int) -> int:
    """An integer (or an integer-valued float) >= minimum."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise InputError(f"{name} must be an integer, got {v!r}")
    f = float(v)
    if not math.isfinite(f) or f != math.floor(f):
        raise InputError(f"{name} must be an integer, got {v!r}")
    i = int(f)
    if i < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return i


def _choice(name: str, v: object, options: tuple[str, ...]) -> str:
    s = v.lower() if isinstance(v, str) else v
    if s not in options:
        raise InputError(f"{name} must be one of {', '.join(map(repr, options))}; got {v!r}")
    return str(s)


def _chunks(m: int, width: int) -> Iterator[slice]:
    step = max(1, _CHUNK_ELEMS // max(width, 1))
    for s in range(0, m, step):
        yield slice(s, min(m, s + step))


def _groups(x: NDArray[np.float64]) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    """Runs of equal values in sorted ``x``: (group id of each sample, group starts, group ends)."""
    n = x.size
    new = np.empty(n, dtype=bool)
    new[0] = True
    new[1:] = x[1:] != x[:-1]
    gid = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:] - 1
    ends[-1] = n - 1
    return gid, starts, ends


def _row_median(a: NDArray[np.float64]) -> NDArray[np.float64]:
    """Median of each row ignoring NaN (mean of the two middle values for even counts)."""
    valid = ~np.isnan(a)
    cnt = np.count_nonzero(valid, axis=1)
    b = np.where(valid, a, np.inf)  # missing values sort last
    med = np.full(a.shape[0], np.nan)
    for c in np.unique(cnt):
        if c == 0:
            continue
        rows = cnt == c
        k1, k2 = (c - 1) // 2, c // 2
        part = np.partition(b[rows], [k1, k2], axis=1)
        med[rows] = 0.5 * (part[:, k1] + part[:, k2])
    return med


def _wls_intercept(
    u: NDArray[np.float64],
    yv: NDArray[np.float64],
    w: NDArray[np.float64],
    ncols: NDArray[np.intp],
) -> NDArray[np.float64]:
    """Intercept of row-weighted polynomial least squares, one small problem per row.

    Row ``r`` solves ``min || w * (yv - sum_k b_k u**k) ||`` over ``k < ncols[r]``
    (weights act on rows as in MATLAB's ``smooth``: ``(w .* V) \\ (w .* y)``) through the
    normal equations. ``u`` is centred on the fitted point and scaled to [-1, 1], which
    keeps these small systems well conditioned; callers choose ``ncols`` no larger than
    the number of distinct positions with nonzero weight, so each system is regular.
    """
    p = int(np.max(ncols))
    w2 = w * w
    mom = np.empty((u.shape[0], 2 * p - 1))
    rhs = np.empty((u.shape[0], p))
    upow = np.ones_like(u)
    for k in range(2 * p - 1):
        if k:
            upow = upow * u
        mom[:, k] = np.einsum("ij,ij->i", w2, upow)
        if k < p:
            rhs[:, k] = np.einsum("ij,ij,ij->i", w2, upow, yv)
    powers = np.arange(p)
    mat = mom[:, powers[:, None] + powers[None, :]]
    off = powers[None, :] >= ncols[:, None]  # columns dropped for this row
    mat[off[:, :, None] | off[:, None, :]] = 0.0
    diag = mat[:, powers, powers]
    diag[off | (diag == 0)] = 1.0  # dropped column, or a row with no weight at all
    mat[:, powers, powers] = diag
    rhs[off] = 0.0

    def solve(m: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
        try:
            return np.linalg.solve(m, b[..., None])[..., 0]
        except np.linalg.LinAlgError:  # pragma: no cover - numerically singular rows only
            return np.einsum("mij,mj->mi", np.linalg.pinv(m, rcond=1e-13, hermitian=True), b)

    sol = solve(mat, rhs)
    # The normal equations square the condition number. On badly spread windows (two
    # samples almost on top of each other, say) two steps of iterative refinement recover
    # the accuracy of an orthogonal solver; they are only spent where needed.
    with np.errstate(all="ignore"):
        bad = np.flatnonzero(np.linalg.cond(mat) > 1e6)
    if bad.size:
        ub, yb, wb, mb, offb = u[bad], yv[bad], w2[bad], mat[bad], off[bad]
        sb = sol[bad]
        for _ in range(2):
            fit = sb[:, p - 1 : p] * np.ones_like(ub)
            for k in range(p - 2, -1, -1):
                fit = fit * ub + sb[:, k : k + 1]
            res = wb * (yb - fit)
            upow = np.ones_like(ub)
            corr = np.empty((bad.size, p))
            for k in range(p):
                if k:
                    upow = upow * ub
                corr[:, k] = np.einsum("ij,ij->i", res, upow)
            corr[offb] = 0.0
            sb = sb + solve(mb, corr)
        sol[bad] = sb
    return sol[:, 0]


# --------------------------------------------------------------------------------------
# smooth
# --------------------------------------------------------------------------------------
def smooth(
    y: ArrayLike,
    span: float = 5,
    method: SmoothMethod | None = None,
    degree: int = 2,
    x: ArrayLike | None = None,
    *,
    iterations: int = 5,
) -> NDArray[np.float64]:
    """Smooth a signal with MATLAB ``smooth`` semantics (Curve Fitting Toolbox).

    Parameters
    ----------
    y : array_like, shape (n,)
        The signal. NaN values are ignored inside every window (the output at a NaN
        sample is computed from its non-NaN neighbours; a window with no valid sample
        gives NaN).
    span : float, default 5
        Number of points in each window. ``span < 1`` is a fraction of the data:
        ``span = ceil(span * n)`` (MATLAB applies this to every method). A span larger
        than the data is reduced to ``n``; a non-integer span is floored. For
        ``'moving'``, ``'sgolay'``, ``'gaussian'`` and ``'median'`` an even span is reduced
        by 1. Zero, negative or NaN spans raise.
    method : str, optional
        ``'moving'`` (moving average), ``'lowess'`` / ``'loess'`` (local linear /
        quadratic fit with tricube weights), ``'rlowess'`` / ``'rloess'`` (robust
        versions, bisquare weights), ``'sgolay'`` (Savitzky-Golay), ``'gaussian'``
        (Gaussian-weighted moving average, sigma = span / 5) or ``'median'`` (moving
        median). Default, as MATLAB: ``'moving'`` when ``x`` is omitted or uniformly
        spaced, else ``'lowess'``.
    degree : int, default 2
        Polynomial degree for ``'sgolay'``; must satisfy ``0 <= degree < span``.
    x : array_like, shape (n,), optional
        Sample positions. Unsorted ``x`` is sorted (stably) first and the result is
        returned in the input order. Repeated ``x`` values share one smoothed value.
        Samples with NaN ``x`` get NaN. ``'moving'``, ``'gaussian'`` and ``'median'`` use
        ``x`` only for the ordering (and, for ``'moving'``, the repeats), as MATLAB.
    iterations : int, default 5
        Robustness iterations for ``'rlowess'`` / ``'rloess'``.

    Returns
    -------
    ndarray, shape (n,)
        The smoothed signal (float64).

    Notes
    -----
    Moving average end points use shrinking symmetric windows, exactly as MATLAB:
    ``yy[0] = y[0]``, ``yy[1] = mean(y[0:3])``, ``yy[2] = mean(y[0:5])``,
    ``yy[3] = mean(y[1:6])``, ...

    Examples
    --------
    >>> import numpy as np
    >>> from peakfit.signal import smooth
    >>> smooth([1, 2, 6, 4, 5, 9, 7], span=5)
    array([1. , 3. , 3.6, 5.2, 6.2, 7. , 7. ])
    >>> x = np.array([0.0, 1.0, 1.5, 4.0, 5.0, 7.0])
    >>> np.round(smooth(2 * x + 1, span=4, method="lowess", x=x), 12)
    array([ 1.,  3.,  4.,  9., 11., 15.])
    """
    yv = _as_1d("y", y)
    n_total = yv.size
    if x is None:
        xv = np.arange(n_total, dtype=np.float64)
    else:
        xv = _as_1d("x", x)
        if xv.size != n_total:
            raise InputError(f"x and y must have the same length; got {xv.size} and {n_total}")
        if np.isinf(xv).any():
            raise InputError("x must not contain Inf (NaN x values are allowed and give NaN)")

    spanf = _real_scalar("span", span)
    if spanf <= 0:
        raise InputError(f"span must be positive, got {span!r}")
    if spanf < 1:
        spanf = float(math.ceil(spanf * n_total))

    if method is None:
        xf = np.sort(xv[~np.isnan(xv)])
        if xf.size < 3:
            method_s = "moving"
        else:
            tol = np.finfo(float).eps * max(abs(xf[0]), abs(xf[-1]))
            uniform = bool(np.all(np.abs(np.diff(xf, 2)) <= 4 * tol)) and xf[1] > xf[0]
            method_s = "moving" if uniform else "lowess"
    else:
        method_s = _choice("method", method, _SMOOTH_METHODS)

    deg = iters = 0
    if method_s == "sgolay":
        deg = _int_scalar("degree", degree, 0)
        if deg >= spanf:
            raise InputError(
                f"degree must be an integer between 0 and span-1; got degree={degree!r} "
                f"with span={span!r}"
            )
    if method_s in ("rlowess", "rloess"):
        iters = _int_scalar("iterations", iterations, 0)

    order = np.argsort(xv, kind="stable")  # NaN x sort last
    xs = xv[order]
    ys = yv[order]
    ok = ~np.isnan(xs)
    xs, ys = xs[ok], ys[ok]
    out_sorted = np.full(n_total, np.nan)
    if xs.size:
        if method_s == "moving":
            c = _moving(xs, ys, spanf)
        elif method_s == "gaussian":
            c = _gaussian(ys, spanf)
        elif method_s == "median":
            c = _movmedian(ys, spanf)
        elif method_s == "sgolay":
            c = _sgolay(xs, ys, spanf, deg)
        else:
            c = _lowess(xs, ys, spanf, method_s.endswith("loess"), iters)
        out_sorted[: xs.size] = c
    out = np.empty(n_total)
    out[order] = out_sorted
    return out


def _odd_width(span: float, n: int) -> int:
    s = int(min(math.floor(span), n))
    return max(1, s - 1 + s % 2)


def _moving(x: NDArray[np.float64], y: NDArray[np.float64], span: float) -> NDArray[np.float64]:
    """MATLAB moving average: symmetric windows that shrink at the ends, NaN ignored."""
    n = y.size
    w = _odd_width(span, n)
    gid, starts, ends = _groups(x)
    gsize = ends - starts + 1
    hf = (np.maximum(0, w - gsize) + 1) // 2  # ceil(max(0, (w - g) / 2))
    hf = np.minimum(hf, np.minimum(starts, n - 1 - ends))
    lo = starts[gid[starts - hf]]
    hi = ends[gid[ends + hf]]
    good = ~np.isnan(y)
    fin = np.isfinite(y)
    centre = float(np.mean(y[fin])) if fin.any() else 0.0
    # window sums from prefix sums of the centred finite values (centring keeps the
    # cancellation error small); +-Inf samples are counted separately
    yy = np.where(fin, y - centre, 0.0)

    def window_sum(v: NDArray[np.generic]) -> NDArray[np.generic]:
        cs = np.concatenate(([0], np.cumsum(v)))
        return cs[hi + 1] - cs[lo]

    cnt = window_sum(good)
    with np.errstate(invalid="ignore", divide="ignore"):
        val = window_sum(yy) / cnt + centre
    if not fin[good].all():
        npos = window_sum(np.isposinf(y))
        nneg = window_sum(np.isneginf(y))
        val[npos > 0] = np.inf
        val[nneg > 0] = -np.inf
        val[(npos > 0) & (nneg > 0)] = np.nan
    val[cnt == 0] = np.nan
    single = (hi == lo) & good[lo]  # a one-sample window returns the sample exactly
    val[single] = y[lo[single]]
    return val[gid]


def _gaussian(y: NDArray[np.float64], span: float) -> NDArray[np.float64]:
    """Gaussian-weighted moving average, window truncated at the ends, NaN ignored."""
    n = y.size
    w = _odd_width(span, n)
    h = (w - 1) // 2
    t = np.arange(-h, h + 1, dtype=np.float64)
    g = np.exp(-0.5 * (t / (w / 5.0)) ** 2)
    good = ~np.isnan(y)
    # FFT convolution would smear an Inf over the whole signal: go direct then
    how = "auto" if np.isfinite(y[good]).all() else "direct"
    num = sps.convolve(np.where(good, y, 0.0), g, mode="same", method=how)
    den = sps.convolve(good.astype(np.float64), g, mode="same", method=how)
    cn = np.concatenate(([0], np.cumsum(good)))
    idx = np.arange(n)
    cnt = cn[np.minimum(idx + h, n - 1) + 1] - cn[np.maximum(idx - h, 0)]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[cnt == 0] = np.nan
    return out


def _movmedian(y: NDArray[np.float64], span: float) -> NDArray[np.float64]:
    """Moving median over [i-h, i+h] clipped to the data, NaN ignored."""
    n = y.size
    w = _odd_width(span, n)
    h = (w - 1) // 2
    padded = np.concatenate((np.full(h, np.nan), y, np.full(h, np.nan)))
    win = np.lib.stride_tricks.sliding_window_view(padded, w)
    out = np.empty(n)
    for sl in _chunks(n, w):
        out[sl] = _row_median(win[sl])
    return out


def _sgolay(
    x: NDArray[np.float64], y: NDArray[np.float64], span: float, k: int
) -> NDArray[np.float64]:
    """MATLAB smooth 'sgolay': uniform fast path, or local polynomial fits otherwise."""
    n = y.size
    f = int(min(math.floor(span), n))
    f = f - (f - 1) % 2  # odd
    diffx = np.diff(x)
    notnan = ~np.isnan(y)
    nomissing = bool(notnan.all())
    if f <= k and bool(np.all(diffx > 0)) and nomissing:
        return y.copy()
    if n >= 2:
        tol = np.finfo(float).eps * max(abs(x[0]), abs(x[-1]))
        uniform = bool(np.all(np.abs(np.diff(diffx)) <= tol))
    else:
        uniform = True
    if nomissing and uniform and f > k:
        if f == 1:
            return y.copy()
        return sps.savgol_filter(y, f, k, mode="interp")

    # non-uniform x, repeated x or missing values: one local fit per distinct x
    gid, starts, ends = _groups(x)
    gsize = ends - starts + 1
    hf = (np.maximum(0, f - gsize) + 1) // 2
    lo = np.minimum(n - f, np.maximum(0, starts - hf))
    lo = starts[gid[lo]]
    hi = np.minimum(n - 1, np.maximum(ends + hf, lo + f - 1))
    hi = ends[gid[hi]]
    vals = _local_fits(x, y, starts, lo, hi, k + 1, weighted=False)
    return vals[gid]


def _local_fits(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    reps: NDArray[np.intp],
    lo: NDArray[np.intp],
    hi: NDArray[np.intp],
    ncols_max: int,
    *,
    weighted: bool,
    resid: NDArray[np.float64] | None = None,
    yeps: float = 0.0,
) -> NDArray[np.float64]:
    """Local polynomial fits at ``x[reps]`` over samples ``lo..hi`` (NaN y skipped).

    Returns the fitted value (the intercept) at each ``x[reps]``; NaN where a window has
    no valid sample. ``weighted=False``: unweighted fit (sgolay). ``weighted=True``:
    lowess/loess rows weighted by ``(1-(d/dmax)^3)^1.5`` and, when ``resid`` is given,
    by the bisquare robust weights computed from the residuals inside the window. The
    polynomial has ``min(ncols_max, #distinct x with nonzero weight)`` coefficients.
    """
    n = y.size
    ynan = np.isnan(y)
    m = reps.size
    out = np.empty(m)
    wmax = int(np.max(hi - lo)) + 1
    ar = np.arange(wmax)
    for sl in _chunks(m, wmax * (2 * ncols_max + 6)):
        j = lo[sl, None] + ar
        jc = np.minimum(j, n - 1)
        valid = (j <= hi[sl, None]) & ~ynan[jc]
        has = valid.any(axis=1)
        dx = np.where(valid, x[jc] - x[reps[sl]][:, None], 0.0)
        d = np.abs(dx)
        dmax = d.max(axis=1)
        dmax[dmax == 0] = 1.0
        u = dx / dmax[:, None]
        yy = np.where(valid, y[jc], 0.0)
        if weighted:
            t = np.clip(1.0 - d * d * d / (dmax * dmax * dmax)[:, None], 0.0, None)
            wt = np.where(valid, t * np.sqrt(t), 0.0)  # (1 - (d/dmax)^3)^1.5
            allsmall = ~np.any(valid & (wt >= _SEPS), axis=1)
            wt = np.where(allsmall[:, None] & valid, 1.0, wt)
            if resid is not None:
                r = np.where(valid, resid[jc], np.nan)
                r1 = np.abs(r - _row_median(r)[:, None])
                mad = _row_median(r1)
                use = mad > yeps
                with np.errstate(invalid="ignore", divide="ignore"):
                    ratio = r1 / (6.0 * mad[:, None])
                rw = np.where(ratio <= 1.0, 1.0 - ratio * ratio, 0.0)
                wt = np.where(use[:, None] & valid, wt * rw, wt)
        else:
            wt = valid.astype(np.float64)
        # number of distinct x among the samples with nonzero weight (x is sorted)
        nz = valid & (wt > 0)
        last = np.maximum.accumulate(np.where(nz, dx, -np.inf), axis=1)
        prev = np.concatenate((np.full((last.shape[0], 1), -np.inf), last[:, :-1]), axis=1)
        distinct = np.count_nonzero(nz & (dx > prev), axis=1)
        ncols = np.clip(distinct, 1, ncols_max)
        c = _wls_intercept(u, yy, wt, ncols)
        c[~has] = np.nan
        out[sl] = c
    return out


def _first_true(
    pred: Callable[[NDArray[np.intp]], NDArray[np.bool_]],
    lo: NDArray[np.intp],
    hi: NDArray[np.intp],
    cap: int,
) -> NDArray[np.intp]:
    """Vectorised binary search: smallest j in [lo, hi) with ``pred(j)``, else ``hi``.

    ``pred`` must be monotone (False, then True) in j for every element; it is only
    evaluated at indices <= ``cap``.
    """
    lo = lo.copy()
    hi = hi.copy()
    while True:
        act = lo < hi
        if not act.any():
            return lo
        mid = (lo + hi) // 2
        cond = act & pred(np.minimum(mid, cap))
        hi = np.where(cond, mid, hi)
        lo = np.where(act & ~cond, mid + 1, lo)


def _lowess(
    x: NDArray[np.float64], y: NDArray[np.float64], span: float, quad: bool, iters: int
) -> NDArray[np.float64]:
    """MATLAB smooth lowess/loess (robust when iters > 0), vectorised over points."""
    n = y.size
    s = int(min(math.floor(span), n))
    if s <= 1:
        return y.copy()
    gid, reps, _ = _groups(x)
    xi = x[reps]
    # span-th smallest distance from x_i (MATLAB's dsort(span)): the best window of s
    # consecutive samples containing i (nearest neighbours in sorted data are contiguous).
    # max(x_i - x_a, x_{a+s-1} - x_i) is the max of a nonincreasing and a nondecreasing
    # function of a, so its minimum sits where the second overtakes the first.
    amin = np.maximum(0, reps - s + 1)
    amax = np.minimum(reps, n - s)
    astar = _first_true(lambda a: (x[a + s - 1] - xi) >= (xi - x[a]), amin, amax + 1, n - s)
    dist = np.full(reps.size, np.inf)
    for cand in (astar, astar - 1):
        a = np.clip(cand, amin, amax)
        dist = np.minimum(dist, np.maximum(xi - x[a], x[a + s - 1] - xi))
    # all samples with |x_j - x_i| <= dist (ties included, as MATLAB)
    left = _first_true(lambda j: (xi - x[j]) <= dist, np.zeros_like(reps), reps, n - 1)
    right = _first_true(lambda j: (x[j] - xi) > dist, reps, np.full_like(reps, n), n - 1) - 1

    p = 3 if quad else 2
    c = _local_fits(x, y, reps, left, right, p, weighted=True)
    if iters > 0:
        finite_y = np.abs(y[~np.isnan(y)])
        yeps = float(finite_y.max()) * np.finfo(float).eps if finite_y.size else np.inf
        for _ in range(iters):
            resid = y - c[gid]
            cn = _local_fits(x, y, reps, left, right, p, weighted=True, resid=resid, yeps=yeps)
            c = np.where(np.isnan(c), c, cn)
    return c[gid]


# --------------------------------------------------------------------------------------
# downsampling
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reduction:
    """How the samples of a reduced signal map back to the original signal.

    Build one with :meth:`for_downsample`, :meth:`for_decimate` or :meth:`for_bin`
    (with the same arguments as the reducing function); then map indices (integer or
    fractional, e.g. peak locations found on the reduced signal) and x positions back.

    Attributes
    ----------
    kind : {'downsample', 'decimate', 'bin'}
        The reducing function.
    factor : int
        Reduction factor: consecutive reduced samples are ``factor`` original samples apart.
    offset : int
        Original index of reduced sample 0 (``downsample``: ``phase``; ``decimate``:
        ``0`` for FIR, ``(n-1) - (m-1)*r`` for IIR; ``bin``: start of block 0, i.e. 0).
    n_original : int
        Length of the original signal.
    n_reduced : int
        Length of the reduced signal.

    Examples
    --------
    >>> from peakfit.signal import Reduction
    >>> red = Reduction.for_downsample(10, 3, phase=2)
    >>> red.positions
    array([2., 5., 8.])
    >>> red.index_to_original([0, 1.5])
    array([2. , 6.5])
    >>> Reduction.for_bin(10, 4, remainder="keep").positions
    array([1.5, 5.5, 8.5])
    """

    kind: Literal["downsample", "decimate", "bin"]
    factor: int
    offset: int
    n_original: int
    n_reduced: int

    # -- constructors ------------------------------------------------------------------
    @classmethod
    def for_downsample(cls, n_original: int, n: int, phase: int = 0) -> Reduction:
        """Mapping for ``downsample(y, n, phase)`` of a signal of ``n_original`` samples."""
        n_orig = _int_scalar("n_original", n_original, 1)
        n = _int_scalar("n", n, 1)
        phase = _phase(phase, n)
        m = max(0, -(-(n_orig - phase) // n))
        return cls("downsample", n, phase, n_orig, m)

    @classmethod
    def for_decimate(
        cls, n_original: int, r: int, ftype: Literal["iir", "fir"] = "iir"
    ) -> Reduction:
        """Mapping for ``decimate(y, r, ftype)``: IIR output is aligned to the last sample."""
        n_orig = _int_scalar("n_original", n_original, 1)
        r = _int_scalar("r", r, 1)
        ft = _choice("ftype", ftype, ("iir", "fir"))
        m = -(-n_orig // r)
        offset = 0 if (ft == "fir" or r == 1) else (n_orig - 1) - (m - 1) * r
        return cls("decimate", r, offset, n_orig, m)

    @classmethod
    def for_bin(
        cls, n_original: int, n: int, remainder: Literal["drop", "keep"] = "drop"
    ) -> Reduction:
        """Mapping for ``bin(y, n, remainder=...)``: reduced sample k = block k*n..k*n+n-1."""
        n_orig = _int_scalar("n_original", n_original, 1)
        n = _int_scalar("n", n, 1)
        rem = _choice("remainder", remainder, ("drop", "keep"))
        m = n_orig // n if rem == "drop" else -(-n_orig // n)
        return cls("bin", n, 0, n_orig, m)

    # -- geometry ----------------------------------------------------------------------
    @property
    def starts(self) -> NDArray[np.intp]:
        """First original index behind each reduced sample."""
        return self.offset + self.factor * np.arange(self.n_reduced, dtype=np.intp)

    @property
    def stops(self) -> NDArray[np.intp]:
        """One past the last original index behind each reduced sample (bins: block end)."""
        if self.kind == "bin":
            return np.minimum(self.starts + self.factor, self.n_original)
        return self.starts + 1

    @property
    def positions(self) -> NDArray[np.float64]:
        """Original (fractional) index of each reduced sample; bins sit at block centres."""
        return 0.5 * (self.starts + self.stops - 1).astype(np.float64)

    def source_slice(self, i: int) -> slice:
        """Original samples behind reduced sample ``i`` (a block for bins)."""
        i = _int_scalar("i", i, 0)
        if i >= self.n_reduced:
            raise InputError(f"i={i} is out of range for {self.n_reduced} reduced samples")
        return slice(int(self.starts[i]), int(self.stops[i]))

    def _check_range(self, i: NDArray[np.float64]) -> None:
        if self.n_reduced == 0:
            raise InputError("the reduced signal is empty")
        if np.isnan(i).any() or (i < 0).any() or (i > self.n_reduced - 1).any():
            raise InputError(
                f"reduced index out of range: must lie in [0, {self.n_reduced - 1}]; "
                f"got {i.tolist()}"
            )

    def index_to_original(self, i: ArrayLike) -> NDArray[np.float64]:
        """Original (fractional) index of reduced index ``i`` (integer or fractional).

        ``offset + factor * i`` for ``downsample``/``decimate``; for ``bin`` the linear
        interpolation of the block centres (``factor * i + (factor - 1) / 2`` for full
        blocks).
        """
        ii = np.asarray(i, dtype=np.float64)
        self._check_range(ii)
        return np.asarray(np.interp(ii, np.arange(self.n_reduced), self.positions))

    def reduce_x(self, x: ArrayLike) -> NDArray[np.float64]:
        """x coordinates of the reduced samples.

        ``x[starts]`` for ``downsample``/``decimate``; the mean of each block's x for
        ``bin`` (partial last block: the mean of the samples present).
        """
        xv = _as_1d("x", x)
        if xv.size != self.n_original:
            raise InputError(f"x has {xv.size} samples; this reduction expects {self.n_original}")
        if self.n_reduced == 0:
            return np.empty(0)
        if self.kind != "bin":
            return xv[self.starts]
        starts = self.starts
        sums = np.add.reduceat(xv[: int(self.stops[-1])], starts)
        return sums / (self.stops - starts)

    def x_to_original(self, i: ArrayLike, x: ArrayLike) -> NDArray[np.float64]:
        """x position of reduced index ``i`` (linear interpolation of :meth:`reduce_x`)."""
        ii = np.asarray(i, dtype=np.float64)
        self._check_range(ii)
        return np.asarray(np.interp(ii, np.arange(self.n_reduced), self.reduce_x(x)))

    def width_to_original(self, w: ArrayLike) -> NDArray[np.float64]:
        """A width measured in reduced samples, in original samples (``w * factor``)."""
        return np.asarray(w, dtype=np.float64) * self.factor


def _phase(phase: object, n: int) -> int:
    p = _int_scalar("phase", phase, 0)
    if p > n - 1:
        raise InputError(f"phase must be an integer between 0 and n-1 = {n - 1}; got {phase!r}")
    return p


def downsample(y: ArrayLike, n: int, phase: int = 0) -> NDArray[np.generic]:
    """Keep every ``n``-th sample starting at ``phase`` (MATLAB ``downsample``).

    Returns ``y[phase::n]`` (MATLAB ``x(1+phase:n:end)``); no anti-alias filtering.
    The dtype of ``y`` is kept. Map back with ``Reduction.for_downsample(len(y), n, phase)``:
    reduced index ``i`` is original index ``phase + n*i``.

    Parameters
    ----------
    y : array_like, shape (N,)
    n : int
        Positive integer factor.
    phase : int, default 0
        Offset, ``0 <= phase <= n-1``.

    Returns
    -------
    ndarray, shape (ceil((N - phase) / n),)

    Examples
    --------
    >>> from peakfit.signal import downsample
    >>> downsample(range(1, 11), 3)
    array([ 1,  4,  7, 10])
    >>> downsample(range(1, 11), 3, 2)
    array([3, 6, 9])
    """
    _as_1d("y", y)  # validation only
    arr = np.asarray(y)
    n = _int_scalar("n", n, 1)
    phase = _phase(phase, n)
    return arr[phase::n].copy()


def _filtmag_db(b: NDArray[np.float64], a: NDArray[np.float64], f: float) -> float:
    top = np.exp(-1j * np.arange(b.size) * np.pi * f) @ b
    bot = np.exp(-1j * np.arange(a.size) * np.pi * f) @ a
    return float(20.0 * np.log10(abs(top / bot)))


def decimate(
    y: ArrayLike,
    r: int,
    ftype: Literal["iir", "fir"] = "iir",
    *,
    order: int | None = None,
) -> NDArray[np.float64]:
    """Low-pass filter and keep every ``r``-th sample (MATLAB ``decimate``).

    ``'iir'`` (default): Chebyshev type I low-pass ``cheby1(order=8, 0.05 dB, 0.8/r)``
    (order reduced while the design is numerically off, as MATLAB), applied forwards
    and backwards (``filtfilt``, zero phase, odd-reflection padding of
    ``3*(order)`` samples), then ``m = ceil(N/r)`` samples are taken with the grid
    aligned to the **last** sample: original indices ``(N-1) - (m-1-k)*r``.

    ``'fir'``: ``fir1(30, 1/r)`` (Hamming window) applied with MATLAB's
    mirrored end extension and group-delay compensation; the grid is aligned to the
    **first** sample: original indices ``k*r`` (a linear ramp is reproduced exactly).

    Map back with ``Reduction.for_decimate(len(y), r, ftype)``.

    Parameters
    ----------
    y : array_like, shape (N,)
        Finite values (NaN/Inf raise: the filter would spread them everywhere).
    r : int
        Positive integer factor; ``r == 1`` returns a copy.
    ftype : {'iir', 'fir'}
    order : int, optional
        Filter order (default 8 for IIR, 30 for FIR).

    Returns
    -------
    ndarray, shape (ceil(N / r),)

    Raises
    ------
    InputError
        Non-finite input, bad ``r``, or a signal too short for the filter
        (IIR: ``N > 3*order``; FIR: ``N >= 2*order + 3``).

    Examples
    --------
    >>> import numpy as np
    >>> from peakfit.signal import decimate
    >>> ramp = np.arange(100.0)
    >>> bool(np.allclose(decimate(ramp, 4, "fir"), ramp[::4]))  # FIR: aligned to the first sample
    True
    >>> decimate(np.ones(50), 4).shape
    (13,)
    """
    yv = _as_1d("y", y)
    if not np.isfinite(yv).all():
        raise InputError("decimate needs finite y (NaN/Inf would spread through the filter)")
    r = _int_scalar("r", r, 1)
    ft = _choice("ftype", ftype, ("iir", "fir"))
    if r == 1:
        return yv.copy()
    nd = yv.size
    nout = -(-nd // r)
    if ft == "iir":
        nfilt = 8 if order is None else _int_scalar("order", order, 1)
        rip = 0.05
        b, a = sps.cheby1(nfilt, rip, 0.8 / r)
        while np.all(b == 0) or abs(_filtmag_db(b, a, 0.8 / r) + rip) > 1e-6:
            nfilt -= 1
            if nfilt == 0:
                break
            b, a = sps.cheby1(nfilt, rip, 0.8 / r)
        if nfilt == 0:
            raise InputError(
                f"bad Chebyshev design for r={r} (r too large); decimate in stages, "
                "e.g. r = r1 * r2"
            )
        padlen = 3 * (max(a.size, b.size) - 1)
        if nd <= padlen:
            raise InputError(
                f"decimate (iir, order {nfilt}) needs more than {padlen} samples; got {nd}"
            )
        filtered = sps.filtfilt(b, a, yv, padtype="odd", padlen=padlen)
        start = (nd - 1) - (nout - 1) * r
        return filtered[start::r].copy()

    nfilt = 30 if order is None else _int_scalar("order", order, 1)
    nf1 = nfilt + 1
    if nd < 2 * nf1 + 1:
        raise InputError(
            f"decimate (fir, order {nfilt}) needs at least {2 * nf1 + 1} samples; got {nd}"
        )
    b = sps.firwin(nfilt + 1, 1.0 / r, window="hamming")
    head = 2.0 * yv[0] - yv[nf1:0:-1]
    _, zi = sps.lfilter(b, 1.0, head, zi=np.zeros(b.size - 1))
    body, zf = sps.lfilter(b, 1.0, yv, zi=zi)
    tail = 2.0 * yv[-1] - yv[np.arange(nd - 2, nd - 2 - 2 * nf1, -1)]
    tail_out, _ = sps.lfilter(b, 1.0, tail, zi=zf)
    gd = nfilt / 2.0  # group delay of a linear-phase FIR
    first = math.floor(gd + 1.25 + 0.5) - 1  # MATLAB round(gd + 1.25), 0-based
    picks = np.arange(first, nd, r)
    nlen = nout - picks.size
    nbeg = r - (nd - (int(picks[-1]) + 1))  # 1-based start inside the tail
    extra = tail_out[nbeg - 1 + r * np.arange(nlen)]
    return np.concatenate((body[picks], extra))


def bin(
    y: ArrayLike,
    n: int,
    how: Literal["sum", "mean"] = "sum",
    *,
    remainder: Literal["drop", "keep"] = "drop",
) -> NDArray[np.float64]:
    """Aggregate blocks of ``n`` consecutive samples (the ``reshape(-1, n).sum(1)`` trick).

    Parameters
    ----------
    y : array_like, shape (N,)
        NaN propagates into its block.
    n : int
        Block length (positive integer).
    how : {'sum', 'mean'}
        Sum (counts add up, e.g. photon counts) or mean of each block.
    remainder : {'drop', 'keep'}, default 'drop'
        What happens to the last ``N % n`` samples when ``n`` does not divide ``N``:
        ``'drop'`` discards them (output length ``N // n``); ``'keep'`` makes them a
        shorter last block, summed or averaged over the samples it has (output length
        ``ceil(N / n)``).

    Returns
    -------
    ndarray
        float64 block sums or means.

    Notes
    -----
    Map back with ``Reduction.for_bin(len(y), n, remainder)``: reduced sample ``k``
    covers original samples ``k*n .. k*n+n-1`` and sits at index ``k*n + (n-1)/2``;
    its x position is the mean of the block's x (``Reduction.reduce_x``).

    Examples
    --------
    >>> from peakfit.signal import bin
    >>> bin(range(1, 11), 3)
    array([ 6., 15., 24.])
    >>> bin(range(1, 11), 3, "mean", remainder="keep")
    array([ 2.,  5.,  8., 10.])
    """
    yv = _as_1d("y", y)
    n = _int_scalar("n", n, 1)
    agg = _choice("how", how, ("sum", "mean"))
    rem = _choice("remainder", remainder, ("drop", "keep"))
    nfull = yv.size // n
    if rem == "drop" and nfull == 0:
        raise InputError(
            f"bin: y has {yv.size} samples, fewer than one block of n={n}; "
            "use remainder='keep' to aggregate the partial block"
        )
    blocks = yv[: nfull * n].reshape(nfull, n)
    out = blocks.sum(axis=1) if agg == "sum" else blocks.mean(axis=1)
    if rem == "keep" and yv.size % n:
        last = yv[nfull * n :]
        out = np.append(out, last.sum() if agg == "sum" else last.mean())
    return out


# --------------------------------------------------------------------------------------
# findpeaks
# --------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Peaks:
    """Peaks found by :func:`findpeaks` (read-only arrays, one entry per peak).

    Attributes
    ----------
    heights : ndarray of float
        Signal value at each peak (MATLAB ``pks``).
    locations : ndarray of float
        Peak positions in x units (``x[indices]``; the 0-based index when no x was given;
        MATLAB ``locs``).
    widths : ndarray of float
        Widths in x units at the reference level (MATLAB ``w``).
    prominences : ndarray of float
        Prominences (MATLAB ``p``).
    indices : ndarray of int
        0-based sample index of each peak.
    """

    heights: NDArray[np.float64]
    locations: NDArray[np.float64]
    widths: NDArray[np.float64]
    prominences: NDArray[np.float64]
    indices: NDArray[np.intp]

    def __post_init__(self) -> None:
        for name in ("heights", "locations", "widths", "prominences", "indices"):
            arr = np.array(getattr(self, name))
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    def __len__(self) -> int:
        return int(self.indices.size)


def _local_maxima(yt: NDArray[np.float64]) -> NDArray[np.intp]:
    """MATLAB findLocalMaxima: NaN-bookended, plateaus collapsed to their first sample."""
    yb = np.concatenate(([np.nan], yt, [np.nan]))
    fin = ~np.isnan(yb)
    keep = np.empty(yb.size, dtype=bool)
    keep[0] = True
    keep[1:] = (yb[:-1] != yb[1:]) & (fin[:-1] | fin[1:])
    it = np.flatnonzero(keep)
    with np.errstate(invalid="ignore"):
        s = np.sign(np.diff(yb[it]))
        imax = 1 + np.flatnonzero(np.diff(s) < 0)
    return (it[imax] - 1).astype(np.intp)


def _linterp(xa: float, xb: float, ya: float, yb: float, yc: float, bc: float) -> float:
    """MATLAB findpeaks linterp: x where the segment crosses (yc + bc) / 2."""
    try:
        xc = xa + (xb - xa) * (0.5 * (yc + bc) - ya) / (yb - ya)
    except ZeroDivisionError:
        xc = math.nan
    if math.isnan(xc):
        xc = 0.5 * (xa + xb) if math.isinf(bc) else xb
    return xc


def _bounds_scalar(
    y: NDArray[np.float64], x: NDArray[np.float64], ipk: int, base: float, lb: int, rb: int
) -> tuple[float, float]:
    """MATLAB getHalfMaxBounds for one peak (used where infinities are involved)."""
    yp = float(y[ipk])
    ref = (yp + base) / 2
    i = ipk
    while i >= lb and y[i] > ref:
        i -= 1
    if i < lb:
        xl = float(x[lb])
    else:
        xl = _linterp(float(x[i]), float(x[i + 1]), float(y[i]), float(y[i + 1]), yp, base)
    i = ipk
    while i <= rb and y[i] > ref:
        i += 1
    if i > rb:
        xr = float(x[rb])
    else:
        xr = _linterp(float(x[i]), float(x[i - 1]), float(y[i]), float(y[i - 1]), yp, base)
    return xl, xr


def findpeaks(
    y: ArrayLike,
    x: ArrayLike | None = None,
    *,
    min_height: float = -np.inf,
    min_prominence: float = 0.0,
    min_distance: float = 0.0,
    min_width: float = 0.0,
    max_width: float = np.inf,
    threshold: float = 0.0,
    width_reference: Literal["halfprom", "halfheight"] = "halfprom",
    npeaks: int | None = None,
    sort: Literal["none", "ascend", "descend"] = "none",
) -> Peaks:
    """Find local maxima with MATLAB ``findpeaks`` semantics.

    A peak is a sample larger than both neighbours; endpoints are never peaks; on a
    flat top the first (lowest-index) sample is the peak; a sample next to a NaN is not
    a peak; ``+Inf`` samples are peaks of infinite height and prominence (as MATLAB).
    Filters are applied in MATLAB's order:

    1. height: ``y > min_height`` (with ``'halfheight'``, ``min_height`` is raised to 0);
    2. threshold: ``y[i] - max(y[i-1], y[i+1]) >= threshold``;
    3. prominence ``>= min_prominence``;
    4. width: ``min_width <= w <= max_width``;
    5. distance: from the tallest peak down, drop every peak with
       ``|x - x_k| <= min_distance`` of a kept peak;
    6. ``sort`` by height (stable), then keep the first ``npeaks``.

    Prominence is the height above the higher of the two bases, a base being the
    lowest point between the peak and the nearest strictly higher sample (or the
    signal end / a NaN) on that side. The width is measured where the signal crosses
    the reference level ``(height + base) / 2`` (base = prominence base for
    ``'halfprom'``, 0 for ``'halfheight'``), by linear interpolation between samples,
    clamped to the prominence bases (``'halfprom'``) or to the lowest valley between
    neighbouring peaks (``'halfheight'``).

    Parameters
    ----------
    y : array_like, shape (n,)
        The signal (NaN allowed).
    x : array_like, shape (n,), optional
        Finite, strictly increasing positions; locations, widths and ``min_distance``,
        ``min_width``, ``max_width`` are in x units. Default: the 0-based sample index.
    min_height, min_prominence, min_distance, min_width, max_width, threshold : float
        Filters (MATLAB ``MinPeakHeight``, ``MinPeakProminence``, ``MinPeakDistance``,
        ``MinPeakWidth``, ``MaxPeakWidth``, ``Threshold``); defaults keep everything.
        ``min_distance`` must be smaller than ``x[-1] - x[0]`` (as MATLAB).
    width_reference : {'halfprom', 'halfheight'}
    npeaks : int, optional
        Keep at most this many peaks (after sorting).
    sort : {'none', 'ascend', 'descend'}
        Order of the output: by position (``'none'``) or by height.

    Returns
    -------
    Peaks
        ``heights``, ``locations``, ``widths``, ``prominences``, ``indices``.
        Signals shorter than 3 samples have no peaks (MATLAB raises instead).

    Examples
    --------
    >>> from peakfit.signal import findpeaks
    >>> pk = findpeaks([0, 1, 4, 1, 0, 2, 3, 2, 0])
    >>> pk.indices
    array([2, 6])
    >>> pk.prominences
    array([4., 3.])
    >>> pk.widths
    array([1.33333333, 2.5       ])
    """
    yv = _as_1d("y", y)
    n = yv.size
    if x is None:
        xv = np.arange(n, dtype=np.float64)
    else:
        xv = _as_1d("x", x)
        if xv.size != n:
            raise InputError(f"x and y must have the same length; got {xv.size} and {n}")
        if not np.isfinite(xv).all():
            raise InputError("x must be finite")
        if n > 1 and not bool(np.all(np.diff(xv) > 0)):
            raise InputError("x must be strictly increasing")
    min_h = _real_scalar("min_height", min_height)
    min_p = _real_scalar("min_prominence", min_prominence)
    min_d = _real_scalar("min_distance", min_distance)
    min_w = _real_scalar("min_width", min_width)
    max_w = _real_scalar("max_width", max_width)
    thr = _real_scalar("threshold", threshold)
    for name, v in (
        ("min_prominence", min_p),
        ("min_distance", min_d),
        ("min_width", min_w),
        ("max_width", max_w),
        ("threshold", thr),
    ):
        if v < 0:
            raise InputError(f"{name} must be nonnegative, got {v!r}")
    if not math.isfinite(min_w):
        raise InputError("min_width must be finite")
    if not math.isfinite(min_d):
        raise InputError("min_distance must be finite")
    wref = _choice("width_reference", width_reference, ("halfprom", "halfheight"))
    sort_s = _choice("sort", sort, ("none", "ascend", "descend"))
    npk = None if npeaks is None else _int_scalar("npeaks", npeaks, 1)
    if wref == "halfheight":
        min_h = max(min_h, 0.0)
    if n >= 2 and min_d >= xv[-1] - xv[0]:
        raise InputError(
            f"min_distance must be smaller than the x range {xv[-1] - xv[0]!r}; got {min_d!r}"
        )

    empty = Peaks(np.empty(0), np.empty(0), np.empty(0), np.empty(0), np.empty(0, np.intp))
    if n < 3:
        return empty

    iinf = np.flatnonzero(np.isposinf(yv))
    yt = yv.copy()
    yt[iinf] = np.nan
    ipk = _local_maxima(yt)
    # 1. height, 2. threshold
    ipk = ipk[yv[ipk] > min_h]
    ipk = ipk[yv[ipk] - np.maximum(yv[ipk - 1], yv[ipk + 1]) >= thr]

    # 3. prominence (bases as MATLAB: left base = first sample of a flat valley)
    if ipk.size:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, lb, rb = sps.peak_prominences(yt, ipk)
        change = np.empty(n, dtype=bool)
        change[0] = True
        change[1:] = yt[1:] != yt[:-1]
        run_start = np.maximum.accumulate(np.where(change, np.arange(n), 0))
        lb = run_start[lb]
        pbase = np.maximum(yt[lb], yt[rb])
        with np.errstate(invalid="ignore"):
            prom = yt[ipk] - pbase
        keep = prom >= min_p
        ipk, lb, rb, pbase = ipk[keep], lb[keep], rb[keep], pbase[keep]
    else:
        lb = rb = np.empty(0, np.intp)
        pbase = np.empty(0)

    # widths
    if ipk.size:
        if wref == "halfheight":
            base = np.zeros(ipk.size)
            lbh = np.concatenate((lb[:1], np.maximum(lb[1:], rb[:-1])))
            rbh = np.concatenate((np.minimum(rb[:-1], lb[1:]), rb[-1:]))
            guard = lbh > ipk
            lbh[guard] = lb[guard]
            guard = rbh < ipk
            rbh[guard] = rb[guard]
        else:
            base = pbase
            lbh, rbh = lb, rb
        with np.errstate(invalid="ignore"):
            pdata = yt[ipk] - base
        xl = np.full(ipk.size, np.nan)
        xr = np.full(ipk.size, np.nan)
        fast = np.isfinite(pdata)
        if fast.any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, _, lip, rip = sps.peak_widths(
                    yt,
                    ipk[fast],
                    rel_height=0.5,
                    prominence_data=(pdata[fast], lbh[fast], rbh[fast]),
                )
            grid = np.arange(n, dtype=np.float64)
            xl[fast] = np.interp(lip, grid, xv)
            xr[fast] = np.interp(rip, grid, xv)
        for k in np.flatnonzero(~(np.isfinite(xl) & np.isfinite(xr))):
            xl[k], xr[k] = _bounds_scalar(
                yt, xv, int(ipk[k]), float(base[k]), int(lbh[k]), int(rbh[k])
            )
    else:
        base = np.empty(0)
        xl = xr = np.empty(0)

    # merge the +Inf peaks (prominence base 0, width to the midpoints of the neighbours)
    if iinf.size:
        il = np.maximum(iinf - 1, 0)
        ir = np.minimum(iinf + 1, n - 1)
        allpk = np.concatenate((ipk, iinf))
        order = np.argsort(allpk, kind="stable")
        ipk = allpk[order]
        pbase = np.concatenate((pbase, np.zeros(iinf.size)))[order]
        xl = np.concatenate((xl, 0.5 * (xv[iinf] + xv[il])))[order]
        xr = np.concatenate((xr, 0.5 * (xv[iinf] + xv[ir])))[order]
    widths = xr - xl
    with np.errstate(invalid="ignore"):
        proms = yv[ipk] - pbase

    # 4. width
    if ipk.size and (min_w > 0 or max_w < np.inf):
        keep = (min_w <= widths) & (widths <= max_w)
        ipk, widths, proms = ipk[keep], widths[keep], proms[keep]

    # 5. distance: greedy from the tallest peak
    idx = np.arange(ipk.size)
    if ipk.size and min_d > 0:
        locs = xv[ipk]  # sorted (peaks are in index order)
        by_height = np.argsort(-yv[ipk], kind="stable")
        deleted = np.zeros(ipk.size, dtype=bool)
        lo_all = np.searchsorted(locs, locs - min_d, side="left")
        hi_all = np.searchsorted(locs, locs + min_d, side="right")
        for k in by_height:
            if not deleted[k]:
                deleted[lo_all[k] : hi_all[k]] = True
                deleted[k] = False
        idx = idx[~deleted]

    # 6. sort and npeaks
    if sort_s != "none" and idx.size:
        h = yv[ipk[idx]]
        s = np.argsort(h, kind="stable") if sort_s == "ascend" else np.argsort(-h, kind="stable")
        idx = idx[s]
    if npk is not None:
        idx = idx[:npk]
    ipk = ipk[idx]
    return Peaks(
        heights=yv[ipk],
        locations=xv[ipk],
        widths=widths[idx],
        prominences=proms[idx],
        indices=ipk.astype(np.intp),
    )
