"""The one fitting pipeline: ``validate → start → scale → solve → summarise``, for a block of rows.

:func:`peakfit.fit_gaussians` is a block of one row through these stages and
:func:`peakfit.fit_gaussians_batch` feeds blocks of many rows (chunks) through them; both then
build :class:`~peakfit.result.GaussianFit`/:class:`~peakfit.batchfit.BatchFit` results with the
functions of :mod:`peakfit.result`. Everything here is vectorised over rows, on NumPy or CuPy
(``backend.xp``); a row's result never depends on the other rows of the block.

Stages of :func:`fit_block`:

``validate_rows``
    per-row states for data that cannot be fitted (``nonfinite_input``, ``insufficient_data``,
    ``constant_data``); such rows cost nothing else.
``layout``
    rows are sorted by x and grouped (every point valid / ragged); ragged rows get zero weight
    at their missing points.
``start_points``
    the ``'auto'``/``'matlab'`` estimator or the given start (original units).
``Scaling``
    x to ``[-1, 1]``, y to ``|y| <= 1`` per row (:mod:`peakfit.scaling`).
``solve``
    the one call site of the least-squares solver
    (:func:`peakfit.solvers.least_squares.least_squares`: the full LM / trust-region loop or
    variable projection, with the backend's evaluator).
``summarise``
    unscale, snap to bounds, sort the terms, states, goodness of fit, standard errors, quality
    flags; skipped for a single spectrum (``Spec.summary=False``), whose result is built from
    its data by :func:`peakfit.result.build_fit_result`.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

import numpy as np

from ._sources import as_2d_float, check_weights
from ._xp import to_numpy
from .backends import Backend
from .errors import FitWarning, InputError
from .models import GaussianModel
from .options import FitOptions
from .result import (
    EXITFLAG_CONSTANT,
    EXITFLAG_NOT_FITTED,
    FitState,
    gof_rows,
    quality_flags,
    states_from_exitflags,
)
from .scaling import Scaling
from .solvers.least_squares import least_squares, resolve_method
from .start import estimate_start, initial_damping

__all__ = ["Spec", "concat", "empty_result", "fit_block", "make_spec", "solve"]

#: The auto start of a float32 fit runs in float32 (half the bytes a spectrum on a GPU).
START_IN_FIT_DTYPE = True


@dataclass(frozen=True)
class Spec:
    """What to fit, resolved once per call: model, options, start, precision, layout rules."""

    model: GaussianModel
    opts: FitOptions
    algorithm: str
    lo: np.ndarray
    hi: np.ndarray
    dtype: np.dtype
    start_method: str | None
    start_array: np.ndarray | None  # (P,) or (k, P), original units
    nan_policy: str = "pad"
    sort: bool = True
    start_kwargs: dict[str, Any] = field(default_factory=dict)
    callback: Any = None  # per-iteration callback of the solver (Display 'iter')
    summary: bool = True  # False: the k = 1 short path (the result is built from the data)
    method: str = "full"  # least-squares algorithm (peakfit.solvers.least_squares)

    def with_start(self, p: np.ndarray) -> Spec:
        """The same fit from the start ``p`` (e.g. the next IRLS pass)."""
        return replace(self, start_array=np.asarray(p, dtype=np.float64), start_method=None)


def make_spec(
    model: GaussianModel, opts: FitOptions, *, start: Any = "auto", dtype: Any = np.float64,
    nan_policy: str = "pad", sort: bool = True, k: int | None = None,
    start_kwargs: dict[str, Any] | None = None, callback: Any = None, summary: bool = True,
    method: str = "full", stacklevel: int = 3,
) -> Spec:
    """Resolve the start and the algorithm into a :class:`Spec` (warns when LM is switched).

    ``start`` is a method name or an array ``(P,)``/``(k, P)``; the options' ``StartPoint``
    is used when ``start`` is a method name. ``method`` is the least-squares algorithm
    (``'full'``, ``'vp'``, ``'auto'``: :func:`peakfit.solvers.least_squares.least_squares`).
    """
    P = model.n_params
    algorithm = opts.effective_algorithm(model)
    if algorithm != opts.algorithm:
        warnings.warn("Levenberg-Marquardt cannot handle bounds; using Trust-Region instead "
                      "(MATLAB: curvefit:fit:usingTrustRegion)", FitWarning,
                      stacklevel=stacklevel)
    start_method: str | None = None
    array: np.ndarray | None = None
    if opts.start_point is not None and (start is None or isinstance(start, str)):
        start = opts.start_point
    if start is None:
        start = "auto"
    if isinstance(start, str):
        start_method = start.lower()
        if start_method not in ("auto", "matlab"):
            raise InputError(f"unknown start method {start!r}: use 'auto', 'matlab' or an array")
    else:
        array = as_2d_float("start", to_numpy(start), np).astype(np.float64)
        if array.ndim == 2 and array.shape[0] == 1:
            array = array[0]
        if array.ndim not in (1, 2) or array.shape[-1] != P:
            raise InputError(f"start has shape {array.shape}; expected ({P},) or (k, {P}) for "
                             f"{model.matlab_name} ({', '.join(model.names)})")
        if array.ndim == 2 and k is not None and array.shape[0] != k:
            raise InputError(f"start has {array.shape[0]} rows but Y has {k}")
        if array.ndim == 2 and k is None:
            raise InputError("with an iterator of chunks, start must be one shared vector")
        if not np.all(np.isfinite(array)):
            raise InputError("start contains non-finite values")
    lo, hi = opts.bounds(model)
    resolve_method(method, model, lo, hi)  # an unknown or inapplicable method fails here
    return Spec(model, opts, algorithm, lo, hi, np.dtype(dtype), start_method, array,
                str(nan_policy), bool(sort), dict(start_kwargs or {}), callback, bool(summary),
                method)


# =============================================================================================
# result arrays of a block
# =============================================================================================
_FIELDS_F = ("sse", "rsquare", "adjrsquare", "rmse", "firstorderopt")
_FIELDS_I = ("dfe", "iterations", "funcCount", "exitflag", "numobs")


def empty_result(k: int, P: int) -> dict[str, np.ndarray]:
    """Result arrays of ``k`` rows that were not fitted."""
    out: dict[str, np.ndarray] = {
        "p": np.full((k, P), np.nan), "stderr": np.full((k, P), np.nan),
        "start": np.full((k, P), np.nan), "held": np.zeros((k, P), dtype=bool),
        "state": np.full(k, int(FitState.NOT_FITTED), dtype=np.int8),
        "quality": np.zeros(k, dtype=np.int64), "n_supported": np.full(k, -1, dtype=np.int64),
    }
    floats = np.full((len(_FIELDS_F), k), np.nan)
    ints = np.zeros((len(_FIELDS_I), k), dtype=np.int64)
    out.update(zip(_FIELDS_F, floats))
    out.update(zip(_FIELDS_I, ints))
    out["_timings"] = np.zeros((1, 2))  # seconds in (start estimation, solver) of a block
    return out


def concat(parts: list[dict[str, np.ndarray]], P: int) -> dict[str, np.ndarray]:
    """Join the result arrays of consecutive blocks."""
    if not parts:
        return empty_result(0, P)
    return {key: np.concatenate([pt[key] for pt in parts], axis=0) for key in parts[0]}


# =============================================================================================
# validate
# =============================================================================================
def fit_block(backend: Backend, spec: Spec, x: Any, Y: Any, W: Any,
              row0: int = 0) -> dict[str, np.ndarray]:
    """Fit the rows of one block; host arrays of every result field.

    ``x`` (m,) or (k, m), ``Y`` (k, m), ``W`` None, (m,) or (k, m); ``row0`` is the index of
    the block's first row in the whole batch (for per-row start arrays).
    """
    xp = backend.xp
    P = spec.model.n_params
    Y = as_2d_float("Y", backend.asarray(Y), xp)
    k, m = Y.shape
    x = as_2d_float("x", backend.asarray(x), xp)
    if W is not None:
        W = backend.asarray(W).astype(xp.float64)
        if W.ndim == 2:
            check_weights(W)
    if x.ndim == 1 and not bool(xp.all(x[1:] >= x[:-1])):
        # a shared x given unsorted: sort the columns (stably, as fit_gaussians)
        if not bool(xp.all(xp.isfinite(x))):
            raise InputError("a shared x must be finite (pad Y with NaN instead)")
        order = xp.argsort(x, kind="stable") if xp is np else xp.argsort(x)
        x = x[order]
        Y = Y[:, order]
        if W is not None:
            W = W[..., order]
    out = empty_result(k, P)
    valid, nvalid, state = _validate_rows(xp, spec, x, Y, W)
    out["state"] = backend.to_host(state).astype(np.int8)
    out["exitflag"][:] = np.where(out["state"] == int(FitState.CONSTANT_DATA),
                                  EXITFLAG_CONSTANT, EXITFLAG_NOT_FITTED)
    out["numobs"][:] = backend.to_host(nvalid)

    fit_h = out["state"] == int(FitState.NOT_FITTED)
    ragged_h = backend.to_host(nvalid < m)
    if fit_h.all() and not ragged_h.any():  # the common case: one group, every row
        res = _solve_group(backend, spec, x, Y, W, valid, np.arange(k), False, row0)
        out.update(res)
        return out
    for ragged in (False, True):
        rows_h = np.flatnonzero(fit_h & (ragged_h == ragged))
        if rows_h.size == 0:
            continue
        res = _solve_group(backend, spec, x, Y, W, valid, rows_h, ragged, row0)
        for key, val in res.items():
            if key == "_timings":
                out[key] += val
            else:
                out[key][rows_h] = val
    return out


def _validate_rows(xp: ModuleType, spec: Spec, x: Any, Y: Any,
                   W: Any) -> tuple[Any, Any, Any]:
    """Valid points (k, m), their count per row and the state of each row (``NOT_FITTED``
    for rows to fit)."""
    k, m = Y.shape
    P = spec.model.n_params
    valid = xp.isfinite(Y)
    if x.ndim == 2:
        valid = valid & xp.isfinite(x)
    if bool(valid.all()):  # the common case: every point of the block is finite
        nvalid = xp.full(k, m)
        nonfinite = xp.zeros(k, dtype=bool)
        y_hi, y_lo = Y.max(axis=1), Y.min(axis=1)
    else:
        nonfinite = xp.any(xp.isinf(Y), axis=1)
        if x.ndim == 2:
            nonfinite = nonfinite | xp.any(xp.isinf(x), axis=1)
        nvalid = valid.sum(axis=1)
        if spec.nan_policy == "pad":
            v8 = valid.astype(xp.int8)
            first = xp.argmax(v8, axis=1)
            last = m - 1 - xp.argmax(v8[:, ::-1], axis=1)
            contiguous = (nvalid == 0) | (nvalid == last - first + 1)
            nonfinite = nonfinite | ~contiguous
        y_hi = xp.where(valid, Y, -xp.inf).max(axis=1)
        y_lo = xp.where(valid, Y, xp.inf).min(axis=1)
    if W is None:
        npos = nvalid
        x_hi = xp.where(valid, x, -xp.inf).max(axis=-1) if x.ndim == 2 else x.max()
        x_lo = xp.where(valid, x, xp.inf).min(axis=-1) if x.ndim == 2 else x.min()
    else:
        usable = valid & (W > 0)
        npos = usable.sum(axis=1)
        x_hi = xp.where(usable, x, -xp.inf).max(axis=1)
        x_lo = xp.where(usable, x, xp.inf).min(axis=1)
    # fewer usable points than coefficients, or all at one x: nothing to identify
    insufficient = ~nonfinite & ((npos < P) | ~(x_hi > x_lo))
    constant = ~nonfinite & ~insufficient & (y_hi == y_lo)
    state = xp.full(k, int(FitState.NOT_FITTED), dtype=xp.int8)
    state = xp.where(nonfinite, int(FitState.NONFINITE_INPUT), state)
    state = xp.where(insufficient, int(FitState.INSUFFICIENT_DATA), state)
    state = xp.where(constant, int(FitState.CONSTANT_DATA), state)
    return valid, nvalid, state


# =============================================================================================
# layout, start, scale, solve, summarise
# =============================================================================================
def _sort_rows(xp: ModuleType, key: Any, *arrays: Any) -> tuple[Any, ...]:
    """Sort each row of ``arrays`` by ``key`` (stably, as fit_gaussians) when not sorted."""
    if bool(xp.all(key[:, 1:] >= key[:, :-1])):
        return arrays
    o = xp.argsort(key, axis=1, kind="stable") if xp is np else xp.argsort(key, axis=1)
    return tuple(None if a is None else
                 xp.take_along_axis(xp.broadcast_to(a, key.shape), o, axis=1) for a in arrays)


def _layout(xp: ModuleType, x: Any, Y: Any, W: Any, valid: Any, rows: Any, every: bool,
            ragged: bool) -> tuple[Any, Any, Any, Any]:
    """The rows of a group, sorted by x; ragged rows padded with zero-weight points."""
    Yg = Y if every else Y[rows]
    kg, m = Yg.shape
    xg = x if x.ndim == 1 or every else x[rows]
    Wg = None if W is None else (W if W.ndim == 1 or every else W[rows])
    vg = None
    if ragged:
        vg = valid if every else valid[rows]
        # points beyond the data of a row: weight 0, y 0, x = the row's first valid x (keeps
        # every model value finite there)
        X = xp.broadcast_to(xg, (kg, m)) if xg.ndim == 1 else xg
        first = xp.argmax(vg.astype(xp.int8), axis=1)
        x_fill = xp.take_along_axis(X, first[:, None], axis=1)
        xg = xp.where(vg, X, x_fill)
        Yg = xp.where(vg, Yg, 0.0)
        if xg.ndim == 2:
            xg, Yg, vg, Wg = _sort_rows(xp, xp.where(vg, xg, xp.inf), xg, Yg, vg, Wg)
    elif xg.ndim == 2:
        xg, Yg, Wg = _sort_rows(xp, xg, xg, Yg, Wg)
    return xg, Yg, Wg, vg


def _solve_group(backend: Backend, spec: Spec, x: Any, Y: Any, W: Any, valid: Any,
                 rows_h: np.ndarray, ragged: bool, row0: int) -> dict[str, Any]:
    """Scale, start, solve and summarise rows that share a layout (all valid, or ragged)."""
    xp = backend.xp
    every = rows_h.size == Y.shape[0]  # the whole block: no gather copies
    xg, Yg, Wg, vg = _layout(xp, x, Y, W, valid, xp.asarray(rows_h), every, ragged)
    scal = Scaling.for_data(spec.model, xg, Yg, spec.lo, spec.hi, valid=vg)
    t0 = time.perf_counter()
    p0, n_supported = start_points(backend, spec, xg, Yg, vg, rows_h, row0)
    t1 = time.perf_counter()
    res, ps = solve(backend, spec, scal, xg, Yg, Wg, vg, p0)
    t2 = time.perf_counter()
    out = _summarise(backend, spec, scal, res, ps, p0, Yg, Wg, vg, n_supported)
    out["n_supported"] = backend.to_host(n_supported)
    out["_timings"] = np.array([[t1 - t0, t2 - t1]])
    return out


def start_points(backend: Backend, spec: Spec, xg: Any, Yg: Any, vg: Any,
                 rows_h: np.ndarray, row0: int) -> tuple[Any, Any]:
    """Start points (kg, P), original units and clipped to the bounds, for the rows of a group,
    and the number of peaks the data support per row (``-1``: not estimated)."""
    xp = backend.xp
    model = spec.model
    P = model.n_params
    kg = Yg.shape[0]
    n_supported = xp.full(kg, -1, dtype=xp.int64)
    if spec.start_array is not None:
        s = spec.start_array
        s = s[None, :] if s.ndim == 1 else s[row0 + rows_h]
        p0 = xp.asarray(s if s.shape[0] == kg else np.broadcast_to(s, (kg, P)), dtype=xp.float64)
        return _clip(xp, p0, spec), n_supported
    method = spec.start_method
    kw: dict[str, Any] = {}
    if method == "auto":
        kw = {"smooth": None, "downsample": None, "n_trials": None, "options": spec.opts,
              **spec.start_kwargs, "return_info": True, "missing": vg is not None}
        if START_IN_FIT_DTYPE and spec.dtype == np.float32:  # half the bytes a spectrum
            kw["dtype"] = spec.dtype

    def estimate(xs: Any, Ys: Any) -> tuple[Any, Any]:
        got = estimate_start(model, xs, Ys, method, **kw)
        if method == "auto":
            p, info = got
            return xp.asarray(p, dtype=xp.float64), xp.asarray(info.n_supported)
        return xp.asarray(got, dtype=xp.float64), xp.full(Ys.shape[0], -1, dtype=xp.int64)

    if vg is None:
        p0, n_supported = estimate(xg, Yg)
    elif method == "auto":
        # ragged rows, all in one pass: the missing points masked (NaN), their x the row's
        # last valid x (the layout puts the valid points first, so x stays sorted)
        X = xp.broadcast_to(xg, vg.shape)
        last = xp.where(vg, X, -xp.inf).max(axis=1, keepdims=True)
        p0, n_supported = estimate(xp.where(vg, X, last), xp.where(vg, Yg, xp.nan))
    else:
        # MATLAB's estimator: one call per distinct pattern of valid points, on those only
        p0 = xp.empty((kg, P), dtype=xp.float64)
        vg_h = backend.to_host(vg)
        packed = np.ascontiguousarray(np.packbits(vg_h, axis=1))
        keys = packed.view(np.dtype((np.void, packed.shape[1])))[:, 0]
        _, inverse = np.unique(keys, return_inverse=True)
        for g in range(int(inverse.max()) + 1):
            members = np.flatnonzero(inverse == g)
            cols = np.flatnonzero(vg_h[members[0]])
            mem = xp.asarray(members)
            colsd = xp.asarray(cols)
            xs = xg[colsd] if xg.ndim == 1 else xg[mem][:, colsd]
            p0[mem], n_supported[mem] = estimate(xs, Yg[mem][:, colsd])
    bad = ~xp.all(xp.isfinite(p0), axis=1)
    if bool(xp.any(bad)):  # MATLAB: a warning and a generic start
        warnings.warn(f"{int(bad.sum())} start point estimate(s) were not finite; using a "
                      "generic start for those spectra", FitWarning, stacklevel=5)
        p0 = xp.nan_to_num(p0, nan=1.0, posinf=1.0, neginf=-1.0)
    return _clip(xp, p0, spec), n_supported


def _clip(xp: ModuleType, p0: Any, spec: Spec) -> Any:
    """``clip(p0, lo, hi)`` as a new array (the same operations, without ``clip``'s overhead
    on one row)."""
    return xp.minimum(xp.maximum(p0, xp.asarray(spec.lo)), xp.asarray(spec.hi))


def solve(backend: Backend, spec: Spec, scal: Scaling, xg: Any, Yg: Any, Wg: Any, vg: Any,
          p0: Any) -> tuple[Any, Any]:
    """The solve stage: the least-squares solver on the scaled rows of a group.

    The one place where the pipeline calls a solver. Returns the solver's result (scaled
    units) and its solution as float64.
    """
    xp = backend.xp
    dt = spec.dtype
    xi = scal.x_in(xg).astype(dt)
    yi = scal.y_in(Yg).astype(dt)
    sw = None
    if Wg is not None or vg is not None:
        sw = xp.sqrt(Wg) if Wg is not None else xp.ones((), dtype=xp.float64)
        if vg is not None:
            sw = xp.where(vg, sw, 0.0)
        sw = sw.astype(dt)
    lo_i, hi_i = scal.bounds_in(spec.lo, spec.hi)
    p0i = scal.params_in(p0).astype(dt)
    callback = None
    if spec.callback is not None:
        sy = scal.sy

        def callback(it: int, idx: Any, sse: Any, lam: Any) -> None:
            spec.callback(it, float(sse[0]) * float(sy[0, 0]) ** 2, float(lam[0]))

    res = least_squares(
        backend.make_evaluator(spec.model, xi, yi, sw), p0i, lo_i.astype(dt), hi_i.astype(dt),
        model=spec.model, method=spec.method, tol_fun=spec.opts.tol_fun,
        tol_x=spec.opts.tol_x, max_iter=spec.opts.max_iter,
        max_fun_evals=spec.opts.max_fun_evals, algorithm=spec.algorithm,
        lam0=1.0 if spec.start_array is not None else initial_damping(spec.start_method),
        check_every=backend.check_every, callback=callback,
    )
    return res, res.p.astype(xp.float64)


def _summarise(backend: Backend, spec: Spec, scal: Scaling, res: Any, ps: Any, p0: Any,
               Yg: Any, Wg: Any, vg: Any, n_supported: Any) -> dict[str, Any]:
    """Unscale and snap to bounds; with ``spec.summary`` also sort, gof, stderr and flags."""
    xp = backend.xp
    model = spec.model
    P = model.n_params
    kg, m = Yg.shape
    h = backend.to_host
    p = scal.params_out(ps)
    held = res.held
    lo_d, hi_d = xp.asarray(spec.lo), xp.asarray(spec.hi)
    # snap to the bounds that the scaling round-trip moved by an ulp
    if bool(held.any()):
        with np.errstate(invalid="ignore"):
            for b in (lo_d, hi_d):
                near = xp.isfinite(b) & (xp.abs(p - b) <= 1e-12 * xp.maximum(1, xp.abs(b)))
                p = xp.where(held & near, b, p)
    sy = scal.sy[:, 0]
    flag = res.exitflag
    # a solution that overflows in the data's units (y near 1e300) is not a converged fit
    flag = xp.where((flag > 0) & ~xp.all(xp.isfinite(p), axis=1), -1, flag)
    out = {
        "p": h(p), "start": h(p0), "held": h(held), "state": h(states_from_exitflags(xp, flag)),
        "firstorderopt": h(res.firstorderopt.astype(xp.float64) * sy),
        "iterations": h(res.iterations), "funcCount": h(res.nfev), "exitflag": h(flag),
    }
    if not spec.summary:
        return out
    var = None
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        cov_s = _inverse_free(xp, res.A.astype(xp.float64), ~held)
        T = scal.params_out_jacobian(ps)
        var = xp.diagonal(T @ cov_s @ T.transpose(0, 2, 1), axis1=1, axis2=2)
    if spec.sort:
        p, perm = model.sort_peaks(p)
        n3 = 3 * model.n
        idx = xp.concatenate(
            [(3 * perm[:, :, None] + xp.arange(3)[None, None, :]).reshape(kg, n3),
             xp.broadcast_to(xp.arange(n3, P), (kg, P - n3))], axis=1)
        held = xp.take_along_axis(held, idx, axis=1)
        p0 = xp.take_along_axis(p0, idx, axis=1)
        var = xp.take_along_axis(var, idx, axis=1)
    active = held & ((p <= lo_d) | (p >= hi_d))
    numobs = (vg.sum(axis=1) if vg is not None else xp.full(kg, m)).astype(xp.int64)
    W = None
    if Wg is not None or vg is not None:
        W = xp.broadcast_to(xp.ones((1, m)) if Wg is None else Wg, (kg, m))
        W = W if vg is None else xp.where(vg, W, 0.0)
    sse_s = res.sse.astype(xp.float64)
    g = gof_rows(xp, Yg.astype(xp.float64, copy=False) / scal.sy, W, sse_s, numobs, P,
                 active.sum(axis=1), scale=sy)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        dfe_safe = xp.where(g["dfe"] > 0, g["dfe"], 1)
        se = xp.sqrt(xp.maximum(var, 0.0) * (sse_s / dfe_safe)[:, None])
        se = xp.where((g["dfe"] > 0)[:, None] & ~active & xp.isfinite(se), se, xp.nan)
    out.update({key: h(v) for key, v in g.items()})
    out.update({"p": h(p), "start": h(p0), "held": h(held), "stderr": h(se), "numobs": h(numobs),
                "quality": h(quality_flags(xp, model, p, g["rsquare"], active, n_supported))})
    return out


def _inverse_free(xp: ModuleType, A: Any, free: Any) -> Any:
    """Batched inverse of ``A`` restricted to the free coefficients (held rows/cols -> 0)."""
    P = A.shape[1]
    fm = free[:, :, None] & free[:, None, :]
    eye = xp.eye(P, dtype=A.dtype)
    M = xp.where(fm, A, 0.0) + eye * (~free)[:, :, None]
    try:
        inv = xp.linalg.inv(M)
    except np.linalg.LinAlgError:  # NumPy: some row is exactly singular; invert the others
        inv = xp.full_like(M, xp.nan)
        ok = xp.isfinite(M).all(axis=(1, 2))
        ok[ok] = xp.linalg.det(M[ok]) != 0
        try:
            inv[ok] = xp.linalg.inv(M[ok])
        except np.linalg.LinAlgError:
            for i in np.flatnonzero(to_numpy(ok)):
                try:
                    inv[i] = xp.linalg.inv(M[i])
                except np.linalg.LinAlgError:
                    pass
    return xp.where(fm, inv, 0.0)
