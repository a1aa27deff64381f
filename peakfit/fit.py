"""``fit_gaussians``: one spectrum through the pipeline, as a batch of one.

Data flow: validate (this module: Exclude, Weights, non-finite points, Normalize, sort by x) →
:func:`peakfit.pipeline.fit_block` on one row (states, start, scaling, solve) → robust
reweighting (IRLS, reusing the same solve stage) → :func:`peakfit.result.build_fit_result`.
:func:`peakfit.fit_gaussians_batch` runs the same pipeline on many rows; ``BatchFit[i]`` is
built by the same function from the same numbers.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import numpy as np

from ._validate import as_real_array, check_finite, resolve_options
from .backends import select_backend
from .errors import FitWarning, InputError
from .models import GaussianModel
from .options import FitOptions, _canonical
from .pipeline import fit_block, make_spec
from .result import FitState, GaussianFit, build_fit_result

__all__ = ["build_fit_result", "fit_gaussians"]


def _robust_weights(
    kind: str, r: np.ndarray, J: np.ndarray, w_user: np.ndarray, P: int
) -> np.ndarray:
    """IRLS weights of MATLAB's robust fitting (leverage-adjusted residuals, MAD scale)."""
    sw = np.sqrt(w_user)
    Jw = J * sw[:, None]
    q, _ = np.linalg.qr(Jw)
    h = np.minimum(np.sum(q * q, axis=1), 0.9999)
    radj = r * sw / np.sqrt(1.0 - h)
    rs = np.sort(np.abs(radj))
    s = np.median(rs[max(0, P - 1) :]) / 0.6745
    if not s > 0:
        s = max(float(np.mean(np.abs(radj))), np.finfo(float).tiny)
    if kind == "Bisquare":
        u = radj / (4.685 * s)
        return np.where(np.abs(u) < 1, (1 - u * u) ** 2, 0.0)
    u = radj / s  # LAR: w = 1/|u|, bounded
    return 1.0 / np.maximum(np.abs(u), 1e-6)


def fit_gaussians(
    x: Any,
    y: Any,
    n: int | str = 4,
    *,
    baseline: str = "none",
    start: Any = "auto",
    options: FitOptions | None = None,
    nan_policy: str = "raise",
    sort: bool = True,
    smooth: Any = None,
    downsample: Any = None,
    n_trials: int | None = None,
    method: str = "full",
    **fit_options: Any,
) -> GaussianFit:
    """Fit a sum of ``n`` Gaussians (MATLAB's ``gaussN``) to one spectrum.

    Parameters
    ----------
    x, y : array_like, shape (m,)
        The spectrum. ``x`` need not be sorted; integer and float32 input is promoted.
    n : int or 'auto'
        Number of Gaussian peaks; ``'auto'`` (or a sequence of candidates) fits several and
        chooses one (keywords ``criterion='bic'|'aicc'|'ftest'``, ``n_max=8``, ``alpha``; see
        :mod:`peakfit.selection`), with the candidates in ``result.selection``.
    baseline : {'none', 'constant', 'linear', 'quadratic', 'exponential'}
        Optional baseline term (``exponential`` is ``e1*exp(-e2*x)``, the NIST Gauss form).
    start : {'auto', 'matlab'} or array_like
        Start point: the robust estimator (default), MATLAB's ``gaussnstart``, or an explicit
        vector in coefficient order (same as the ``StartPoint`` option).
    options : FitOptions, optional
        Options from :func:`peakfit.fitoptions`; keyword options override them.
    nan_policy : {'raise', 'omit'}
        Non-finite x or y raise an error naming the count and first index, or are excluded.
    sort : bool
        Reorder the terms by ascending centre (``a1, b1, c1`` is the leftmost peak).
    smooth, downsample, n_trials :
        Controls of the ``'auto'`` start estimator (see :mod:`peakfit.autostart`); the final fit
        always uses the raw data.
    method : {'full', 'vp', 'auto'}
        Least-squares algorithm: the full solver (default), variable projection (heights and
        baseline eliminated, :mod:`peakfit.solvers.vp`), or ``'auto'`` (VP when the heights
        and baseline coefficients are unbounded).
    **fit_options
        Any MATLAB fit option by MATLAB or snake-case name: ``TolFun``/``tol_fun``, ``TolX``,
        ``MaxIter``, ``MaxFunEvals``, ``Lower``, ``Upper``, ``StartPoint``, ``Algorithm``,
        ``Robust``, ``Weights``, ``Exclude``, ``Normalize``, ``Display``.

    Returns
    -------
    GaussianFit
        ``.means`` (sorted centres), ``.a``/``.b``/``.c``, ``.coefficients``, ``.gof``,
        ``.output``, ``.confint()``, ``.predint()``; ``print(result)`` shows MATLAB's display.
        ``.state`` says whether it converged or why it was not fitted (the same state as
        :func:`peakfit.fit_gaussians_batch` gives the same spectrum: zero weights, all x
        equal, constant y are reported, not fitted) and ``.quality`` lists the
        :class:`~peakfit.result.Quality` flags of a fitted result.

    Raises
    ------
    InputError
        For invalid data or options; the message names the problem.

    Examples
    --------
    >>> import numpy as np, peakfit
    >>> x = np.linspace(0, 100, 1000)
    >>> truth = [(5, 20, 4), (3, 35, 6), (4, 60, 5), (2, 80, 7)]
    >>> y = sum(a * np.exp(-((x - b) / c) ** 2) for a, b, c in truth)
    >>> r = peakfit.fit_gaussians(x, y, n=4)
    >>> np.round(r.means, 4).tolist()
    [20.0, 35.0, 60.0, 80.0]
    >>> r.gof.dfe
    988
    """
    if not isinstance(n, (int, np.integer)):  # n='auto': choose n (criterion=, n_max=, alpha=)
        from .selection import _is_auto, fit_auto

        if _is_auto(n):
            return fit_auto(x, y, n, baseline=baseline, start=start, options=options,
                            nan_policy=nan_policy, sort=sort, smooth=smooth,
                            downsample=downsample, n_trials=n_trials, **fit_options)
    xa = as_real_array("x", x)
    ya = as_real_array("y", y)
    if xa.shape != ya.shape:
        raise InputError(
            f"x and y must have the same length: x has {xa.size} points, y has {ya.size}"
        )
    model = GaussianModel(n, baseline)
    check_enough_points(model, xa.size)
    if start is not None and not isinstance(start, str):
        if "start_point" in _canonical(fit_options):
            raise InputError("give the start point once: either start=array or StartPoint")
        fit_options = {**fit_options, "StartPoint": start}
        start = "auto"
    opts = resolve_options(model, options, fit_options)
    xk, yk, wk, normalization, gaps = _usable_points(xa, ya, opts, nan_policy)
    order = np.argsort(xk, kind="stable")
    xs, ys = xk[order], yk[order]
    ws = None if wk is None else wk[order]
    # the pipeline's row: the points used, or with missing y (NaN) left in place, so that the
    # fit is the one fit_gaussians_batch computes for the same row (nan_policy='omit')
    xr, yr, wr = (xs, ys, ws) if gaps is None else gaps

    callback = None
    if opts.display == "iter":
        print(f"{'Iteration':>9} {'Func-count':>10} {'f(x)':>14} {'lambda':>12}", file=sys.stdout)

        def callback(it: int, sse: float, lam: float) -> None:
            print(f"{it:9d} {it + 1:10d} {sse:14.6g} {lam:12.4g}")

    spec = make_spec(model, opts, start=start, sort=sort, nan_policy="omit", callback=callback,
                     start_kwargs={"smooth": smooth, "downsample": downsample,
                                   "n_trials": n_trials}, summary=False, method=method,
                     stacklevel=3)
    backend = select_backend("cpu")
    res = fit_block(backend, spec, xr, yr[None, :], wr)
    p, held, p0 = res["p"][0], res["held"][0], res["start"][0]
    state = int(res["state"][0])
    iterations, nfev = int(res["iterations"][0]), int(res["funcCount"][0])
    n_supported = int(res["n_supported"][0])
    if 0 <= n_supported < n:
        warnings.warn(
            f"the data support only {n_supported} of the {n} peaks (the other terms sit on "
            "noise or share a peak); consider a smaller n", FitWarning, stacklevel=2,
        )
    if opts.robust != "off" and np.all(np.isfinite(p)):
        w_user = np.ones_like(ys) if ws is None else ws
        for _ in range(50):
            f, Jt = model.evaluate(xs, p[None, :], jacobian=True)
            wr = _robust_weights(opts.robust, ys - f[0], Jt[0].T, w_user, model.n_params)
            res = fit_block(backend, spec.with_start(p), xs, ys[None, :], w_user * wr)
            iterations += int(res["iterations"][0])
            nfev += int(res["funcCount"][0])
            p_new = res["p"][0]
            change = np.max(np.abs(p_new - p) / np.maximum(np.abs(p), 1e-12))
            p, held, state = p_new, res["held"][0], int(res["state"][0])
            if change < max(opts.tol_x, 1e-8):
                break

    result = build_fit_result(
        model, opts, spec.algorithm, p, held, p0, xs, ys, ws, order,
        iterations=iterations, nfev=nfev, exitflag=int(res["exitflag"][0]),
        firstorderopt=float(res["firstorderopt"][0]), x=xk, y=yk, weights=wk,
        normalization=normalization, sort=sort, state=state, n_supported=n_supported,
    )
    message = result.output.message
    if opts.display == "notify" and result.state is not FitState.CONVERGED:
        warnings.warn(message, FitWarning, stacklevel=2)
    elif opts.display == "notify" and result.gof.rsquare < 0:  # Quality.NEGATIVE_RSQUARE
        warnings.warn(f"the fit converged but R-square is {result.gof.rsquare:.3g} < 0: it "
                      "describes the data worse than their mean (try start='auto', another n "
                      "or a baseline)", FitWarning, stacklevel=2)
    elif opts.display in ("final", "iter"):
        print(message)
    return result


def check_enough_points(model: GaussianModel, m: int, what: str = "the data") -> None:
    """Raise :class:`InputError` when ``m`` points cannot determine the model's coefficients.

    Checked before anything of the model's size is allocated (``n = 10**9`` fails here).
    """
    P = model.n_params
    if m < P:
        raise InputError(
            f"not enough data: {m} usable point(s) for {P} coefficients "
            f"({model.matlab_name}); need at least {P} points in {what}"
        )


def _usable_points(
    xa: np.ndarray, ya: np.ndarray, opts: FitOptions, nan_policy: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[float, float] | None, Any]:
    """The validate stage of one spectrum: Exclude, Weights, non-finite points, Normalize.

    Returns the points used (``x, y, w``, normalised x), the normalisation, and, when some y
    are missing (non-finite, ``nan_policy='omit'``), the sorted row with those y as NaN
    (``x, y, w``) for the pipeline; else None.
    """
    m = xa.size
    keep = np.ones(m, dtype=bool)
    if opts.exclude is not None:
        ex = opts.exclude
        if ex.dtype == bool:
            if ex.size != m:
                raise InputError(f"Exclude mask has {ex.size} elements but the data has {m}")
            keep &= ~ex
        else:
            if ex.size and (ex.min() < -m or ex.max() >= m):
                raise InputError(f"Exclude index out of range for {m} points")
            keep[ex] = False
    if opts.weights is not None and opts.weights.size != m:
        raise InputError(f"Weights has {opts.weights.size} elements but the data has {m}")
    policy = str(nan_policy).lower()
    if policy not in ("raise", "omit"):
        raise InputError(f"nan_policy must be 'raise' or 'omit', got {nan_policy!r}")
    if policy == "raise":
        check_finite("x", xa[keep])
        check_finite("y", ya[keep])
    keep &= np.isfinite(xa)
    y_ok = np.isfinite(ya)
    used = np.flatnonzero(keep & y_ok)
    xk, yk = xa[used], ya[used]
    wk = None if opts.weights is None else opts.weights[used]
    normalization = None
    if opts.normalize:
        mu = float(np.mean(xk)) if xk.size else 0.0
        sd = float(np.std(xk, ddof=1)) if xk.size > 1 else 0.0
        if not sd > 0:
            raise InputError("cannot normalize: x is constant (standard deviation 0)")
        normalization = (mu, sd)
        xk = (xk - mu) / sd
    gaps = None
    if not y_ok[keep].all():
        rows = np.flatnonzero(keep)
        xg = xa[rows] if normalization is None else (xa[rows] - mu) / sd
        o = np.argsort(xg, kind="stable")
        yg = np.where(y_ok[rows], ya[rows], np.nan)[o]
        gaps = (xg[o], yg, None if opts.weights is None else opts.weights[rows][o])
    return xk, yk, wk, normalization, gaps
