"""``fit_gaussians``: one spectrum, validated, started, solved and summarised.

Data flow: validate → exclude/weight → (normalize) → sort → start point → scale → solve
(:func:`peakfit.solvers.lm.levenberg_marquardt`) → unscale → sort peaks → result.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import numpy as np

from ._validate import as_real_array, check_finite
from .errors import FitWarning, InputError
from .models import GaussianModel
from .options import FitOptions, _canonical, fitoptions
from .result import FitOutput, GaussianFit, goodness_of_fit
from .scaling import Scaling
from .solvers.least_squares import least_squares
from .solvers.lm import EXITFLAG_MESSAGES, NormalEquations
from .start import estimate_start, initial_damping

__all__ = ["build_fit_result", "fit_gaussians", "solve_prepared"]


def _resolve_options(
    model: GaussianModel, options: FitOptions | None, fit_options: dict[str, Any]
) -> FitOptions:
    if options is None:
        opts = fitoptions(model, **fit_options)
    else:
        if not isinstance(options, FitOptions):
            raise InputError(f"options must be a FitOptions, got {type(options).__name__}")
        opts = options.replace(**_canonical(fit_options)) if fit_options else options
    opts.check_lengths(model)
    return opts


def solve_prepared(
    model: GaussianModel,
    xs: np.ndarray,
    ys: np.ndarray,
    ws: np.ndarray | None,
    p0: np.ndarray,
    opts: FitOptions,
    algorithm: str,
    lam0: float = 1.0,
    method: str = "auto",
) -> tuple[np.ndarray, Any]:
    """Run the solver on sorted, validated data of one spectrum (original units).

    ``lam0`` is the solver's initial damping: 1.0 for a start of unknown quality, small for a
    start that is already close (see :func:`peakfit.start.initial_damping`). ``method`` is the
    least-squares algorithm (:func:`peakfit.solvers.least_squares.least_squares`).
    Returns the solution in original units and the raw :class:`LMResult`.
    """
    lo, hi = opts.bounds(model)
    scal = Scaling.for_data(model, xs, ys[None, :], lo, hi)
    xi = scal.x_in(xs)
    yi = scal.y_in(ys[None, :])
    lo_i, hi_i = scal.bounds_in(lo, hi)
    p0i = scal.params_in(np.clip(p0, lo, hi)[None, :])
    sw = None if ws is None else np.sqrt(ws)[None, :]
    callback = None
    if opts.display == "iter":
        print(f"{'Iteration':>9} {'Func-count':>10} {'f(x)':>14} {'lambda':>12}", file=sys.stdout)

        def callback(it: int, idx: Any, sse: Any, lam: Any) -> None:
            print(f"{it:9d} {it + 1:10d} {float(sse[0]) * float(scal.sy[0, 0]) ** 2:14.6g} "
                  f"{float(lam[0]):12.4g}")

    res = least_squares(
        NormalEquations(model, xi, yi, sw), p0i, lo_i, hi_i, model=model, method=method,
        tol_fun=opts.tol_fun, tol_x=opts.tol_x, max_iter=opts.max_iter,
        max_fun_evals=opts.max_fun_evals, algorithm=algorithm, lam0=lam0, callback=callback,
    )
    p = scal.params_out(res.p)[0]
    # snap to bounds that the scaling round-trip moved by an ulp
    with np.errstate(invalid="ignore"):
        near_lo = np.isfinite(lo) & (np.abs(p - lo) <= 1e-12 * np.maximum(1, np.abs(lo)))
        near_hi = np.isfinite(hi) & (np.abs(p - hi) <= 1e-12 * np.maximum(1, np.abs(hi)))
    p = np.where(res.held[0] & near_lo, lo, p)
    p = np.where(res.held[0] & near_hi, hi, p)
    return p, res



def build_fit_result(
    model: GaussianModel,
    opts: FitOptions,
    algorithm: str,
    p: np.ndarray,
    held: np.ndarray,
    start: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    ws: np.ndarray | None,
    order: np.ndarray,
    *,
    iterations: int,
    nfev: int,
    exitflag: int,
    firstorderopt: float,
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None,
    normalization: tuple[float, float] | None = None,
    sort: bool = True,
    message: str | None = None,
) -> GaussianFit:
    """Assemble the :class:`GaussianFit` of one spectrum from a solution.

    The one place where a single fit's result is built, used by :func:`fit_gaussians` and by
    indexing a batch result (``BatchFit[i]``): optional sorting of the terms by centre, active
    bounds, Jacobian and residuals at the solution, goodness of fit, exit message and
    ``FitOutput``.

    Parameters
    ----------
    model, opts, algorithm :
        The model, the fit options (bounds) and the algorithm actually run.
    p, held, start : ndarray (P,)
        Solution (original units), coefficients held at a bound, start point.
    xs, ys, ws : ndarray (m,)
        The data used, sorted by x (``ws`` the weights or None).
    order : ndarray of int (m,)
        The sorting permutation: ``xs = x[order]``; residuals and Jacobian are returned in the
        caller's order.
    iterations, nfev, exitflag, firstorderopt :
        Solver statistics (``firstorderopt`` in data units).
    x, y, weights :
        The data in the caller's order, stored on the result.
    normalization : (mean, std), optional
    sort : bool
        Reorder the terms by ascending centre.
    message : str, optional
        Replaces the exit message (used for rows a batch did not fit).

    Returns
    -------
    GaussianFit
    """
    n = model.n
    P = model.n_params
    p = np.asarray(p, dtype=float)
    held = np.asarray(held, dtype=bool)
    start = np.asarray(start, dtype=float)
    if sort:
        p_sorted, perm = model.sort_peaks(p)
        idx = np.concatenate([(3 * perm[:, None] + np.arange(3)).ravel(), np.arange(3 * n, P)])
        p, held, start = p_sorted, held[idx], start[idx]

    lo, hi = opts.bounds(model)
    active = held & ((p <= lo) | (p >= hi))
    f, Jt = model.evaluate(xs, p[None, :], jacobian=True)
    r = ys - f[0]
    J = Jt[0].T.copy()
    if ws is not None:
        sw = np.sqrt(ws)
        r_out, J = r * sw, J * sw[:, None]
    else:
        r_out = r
    gof = goodness_of_fit(ys, r, P, ws, int(active.sum()))
    if ys.size and np.ptp(ys) == 0:
        exitflag = -3
    if message is None:
        message = EXITFLAG_MESSAGES.get(exitflag, "")
        if exitflag == -3:
            message = (f"The data are constant (all y = {ys[0]:g}): the peak coefficients are "
                       "not identifiable.")
    inv = np.empty_like(order)
    inv[order] = np.arange(order.size)
    output = FitOutput(
        numobs=int(xs.size), numparam=P, residuals=r_out[inv], jacobian=J[inv],
        exitflag=int(exitflag), iterations=int(iterations), funcCount=int(nfev),
        firstorderopt=float(firstorderopt),
        algorithm=("trust-region-reflective" if algorithm == "Trust-Region"
                   else "levenberg-marquardt"),
        message=message, activebounds=active,
    )
    return GaussianFit(
        model=model, p=p, gof=gof, output=output, options=opts, start=start,
        x=x, y=y, weights=weights, normalization=normalization,
    )

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
    from .selection import _is_auto, fit_auto

    if _is_auto(n):  # n='auto': choose n (criterion=, n_max=, alpha= go to fit_auto)
        return fit_auto(x, y, n, baseline=baseline, start=start, options=options,
                        nan_policy=nan_policy, sort=sort, smooth=smooth, downsample=downsample,
                        n_trials=n_trials, **fit_options)
    model = GaussianModel(n, baseline)
    if start is not None and not isinstance(start, str):
        if "start_point" in _canonical(fit_options):
            raise InputError("give the start point once: either start=array or StartPoint")
        fit_options = {**fit_options, "StartPoint": start}
        start = "auto"
    opts = _resolve_options(model, options, fit_options)
    P = model.n_params

    xa = as_real_array("x", x)
    ya = as_real_array("y", y)
    if xa.shape != ya.shape:
        raise InputError(
            f"x and y must have the same length: x has {xa.size} points, y has {ya.size}"
        )
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
    w_all = None
    if opts.weights is not None:
        if opts.weights.size != m:
            raise InputError(f"Weights has {opts.weights.size} elements but the data has {m}")
        w_all = opts.weights
    policy = str(nan_policy).lower()
    if policy not in ("raise", "omit"):
        raise InputError(f"nan_policy must be 'raise' or 'omit', got {nan_policy!r}")
    finite = np.isfinite(xa) & np.isfinite(ya)
    if policy == "raise":
        check_finite("x", xa[keep])
        check_finite("y", ya[keep])
    keep &= finite
    kept = np.flatnonzero(keep)
    if kept.size < P:
        raise InputError(
            f"not enough data: {kept.size} usable point(s) for {P} coefficients "
            f"({model.matlab_name}); need at least {P}"
        )
    xk, yk = xa[kept], ya[kept]
    wk = None if w_all is None else w_all[kept]

    normalization = None
    if opts.normalize:
        mu = float(np.mean(xk))
        sd = float(np.std(xk, ddof=1))
        if not sd > 0:
            raise InputError("cannot normalize: x is constant (standard deviation 0)")
        normalization = (mu, sd)
        xk = (xk - mu) / sd

    order = np.argsort(xk, kind="stable")
    xs, ys = xk[order], yk[order]
    ws = None if wk is None else wk[order]

    # ---- start point
    lam0 = 1.0  # the solver's cautious default, for user and MATLAB starts
    if opts.start_point is not None:
        p0 = opts.start_point.copy()
    else:
        if str(start).lower() == "auto":
            from .autostart import auto_start

            p0s, info = auto_start(model, xs, ys[None, :], smooth=smooth, downsample=downsample,
                                   n_trials=n_trials, options=opts, return_info=True)
            p0 = np.asarray(p0s)[0]
            lam0 = initial_damping("auto")  # a fitted start: begin nearly Gauss-Newton
            n_supported = int(info.n_supported[0])
            if n_supported < n and np.ptp(ys) > 0:  # constant data: exitflag -3 says why
                warnings.warn(
                    f"the data support only {n_supported} of the {n} peaks (the other terms "
                    "sit on noise or share a peak); consider a smaller n",
                    FitWarning, stacklevel=2,
                )
        else:
            p0 = np.asarray(estimate_start(model, xs, ys[None, :], start))[0]
        if not np.all(np.isfinite(p0)):  # MATLAB: warning and a random start
            warnings.warn("start point estimate was not finite; using a generic start",
                          FitWarning, stacklevel=2)
            p0 = np.nan_to_num(p0, nan=1.0, posinf=1.0, neginf=-1.0)

    algorithm = opts.effective_algorithm(model)
    if algorithm != opts.algorithm:
        warnings.warn(
            "Levenberg-Marquardt cannot handle bounds; using Trust-Region instead "
            "(MATLAB: curvefit:fit:usingTrustRegion)", FitWarning, stacklevel=2,
        )

    p, res = solve_prepared(model, xs, ys, ws, p0, opts, algorithm, lam0, method)
    iterations = int(res.iterations[0])
    nfev = int(res.nfev[0])
    exitflag = int(res.exitflag[0])
    held = np.asarray(res.held[0])

    if opts.robust != "off":
        w_user = np.ones_like(ys) if ws is None else ws
        for _ in range(50):
            f, Jt = model.evaluate(xs, p[None, :], jacobian=True)
            wr = _robust_weights(opts.robust, ys - f[0], Jt[0].T, w_user, P)
            p_new, res = solve_prepared(model, xs, ys, w_user * wr, p, opts, algorithm,
                                        method=method)
            iterations += int(res.iterations[0])
            nfev += int(res.nfev[0])
            change = np.max(np.abs(p_new - p) / np.maximum(np.abs(p), 1e-12))
            p = p_new
            held = np.asarray(res.held[0])
            exitflag = int(res.exitflag[0])
            if change < max(opts.tol_x, 1e-8):
                break

    result = build_fit_result(
        model, opts, algorithm, p, held, p0, xs, ys, ws, order,
        iterations=iterations, nfev=nfev, exitflag=exitflag,
        firstorderopt=float(res.firstorderopt[0]) * float(np.max(np.abs(ys)) or 1.0),
        x=xa[kept], y=ya[kept], weights=wk, normalization=normalization, sort=sort,
    )
    exitflag = result.output.exitflag
    message = result.output.message
    if opts.display == "notify" and exitflag <= 0:
        warnings.warn(message, FitWarning, stacklevel=2)
    elif opts.display in ("final", "iter"):
        print(message)
    return result
