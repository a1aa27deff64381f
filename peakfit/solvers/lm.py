"""The one least-squares algorithm: batched, bounded Levenberg-Marquardt / trust region.

Every fit in peakfit, one spectrum or millions, NumPy or CuPy, runs this loop. A spectrum is a
row of the batch; each row has its own damping, its own convergence test and its own exit flag,
and rows that have finished are removed from the work set (no batch-wide stopping rule).

The problem is ``min_p sum_i w_i (y_i - f(x_i; p))^2`` subject to ``lower <= p <= upper``. The
loop only needs, for a set of rows, the normal-equation pieces at a parameter vector: the sum of
squares ``S``, ``A = JᵀWJ`` and ``g = JᵀW r`` (``r = y - f``). They come from an *evaluator*
callable (:mod:`peakfit.solvers.evaluators`: NumPy, Numba, and the fused GPU kernel of
:mod:`peakfit.gpu.kernels`), which is where the backends differ; this module is the algorithm.

Iteration (per row)
-------------------
1. Bounds: a coefficient at a bound whose gradient points outward is *held* for the step.
2. Scaling: ``D = max(D, diag(A))`` (Moré's running maximum); the system is solved in the
   scaled variables ``z = sqrt(D) δ``, so the damping ``λ`` is dimensionless.
3. Step: ``(Â + λ I) z = ĝ``, ``δ = z / sqrt(D)``, projected onto the box.
4. Gain ratio ``ρ = (S - S_trial) / (2 δ·g - δ·A δ)``; the step is accepted when ``S`` decreases.
5. Damping: ``'Trust-Region'`` uses Nielsen's rule (accept: ``λ *= max(1/3, 1-(2ρ-1)^3)``,
   reject: ``λ *= ν, ν *= 2``), i.e. the damping follows the trust-region gain ratio (Moré 1978);
   ``'Levenberg-Marquardt'`` uses Marquardt's ``λ/10`` on success and ``λ*10`` on failure.
6. Stop with ``exitflag`` (MATLAB's ``lsqnonlin`` meanings):

   * ``1``: the sum of squares reached zero (exact fit) or the projected gradient vanished,
   * ``2``: the step is smaller than ``TolX * (sqrt(eps) + |p|)``,
   * ``3``: the relative change of the sum of squares (actual and predicted) is below ``TolFun``,
   * ``0``: ``MaxIter`` or ``MaxFunEvals`` reached,
   * ``-1``: the model produced non-finite values at the start,
   * ``-2``: the normal equations became singular or non-finite.

Batching and host synchronisation
---------------------------------
The set of unfinished rows is recomputed (compacted) every ``check_every`` iterations; in between,
rows that finish are frozen by a mask and cost a little wasted work but no host round trip. With
``check_every=1`` (the default, used for NumPy) every iteration compacts; a GPU driver passes a
larger value so that the host synchronises with the device only every few iterations. The result
of a row does not depend on ``check_every`` or on which other rows share the batch.

Compiled iterations
-------------------
The loop below, in NumPy, is the reference. Two evaluators also carry the same per-row
iteration compiled, which the loop then calls once per iteration instead of its array code:
the Numba engine (:meth:`peakfit.solvers.evaluators.NumbaNormalEquations.iterate`, generated
with the evaluation kernel in :mod:`peakfit.solvers._numba`, GIL released; bit for bit the
NumPy loop's numbers with Marquardt's damping, equal to rounding with the trust-region rule)
and the GPU's fused evaluator (:mod:`peakfit.gpu.lm_kernel`: a step kernel, the fused
evaluation, an accept kernel, no host synchronisation per iteration, the damped system solved
by Cholesky). Callbacks, exit flags and ``check_every`` mean the same on every path.

Precision
---------
Parameters, ``A`` and ``g`` are kept in the dtype of ``p0`` (float64 or float32); the sums of
squares are float64 whatever the working precision, so that the gain ratio and the ``TolFun`` test
resolve relative changes below float32's epsilon.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._xp import get_xp
from .evaluators import NormalEquations
from .linalg import damped_solver

__all__ = ["EXITFLAG_MESSAGES", "LMResult", "NormalEquations", "levenberg_marquardt"]

EXITFLAG_MESSAGES: dict[int, str] = {
    1: "Success: the sum of squares or its gradient reached zero.",
    2: "Success, but fitting stopped because change in coefficients less than TolX.",
    3: "Success, but fitting stopped because change in residuals less than TolFun.",
    0: (
        "Fit computation did not converge: Fitting stopped because the number of iterations "
        "or function evaluations exceeded the specified maximum."
    ),
    -1: "The model gave non-finite values at the start point.",
    -2: "The normal equations became singular or non-finite; no further progress possible.",
    -3: "The data are constant: the peak coefficients are not identifiable.",
    -4: "Not fitted: the data are invalid (see the state).",
}

_EPS = float(np.finfo(float).eps)

Evaluator = Callable[[Any, Any], tuple[Any, Any, Any]]


@dataclass
class LMResult:
    """Outcome of :func:`levenberg_marquardt` for a batch of ``k`` rows.

    Attributes
    ----------
    p : array (k, P)
        Solution.
    sse : array (k,)
        Weighted sum of squares at ``p`` (float64).
    A, g : arrays (k, P, P), (k, P)
        ``JᵀWJ`` and ``JᵀWr`` at ``p``.
    held : array of bool (k, P)
        Coefficients at a bound with the gradient pointing outward (MATLAB's active bounds).
    iterations, nfev : int arrays (k,)
    exitflag : int array (k,)
    firstorderopt : array (k,)
        Infinity norm of the projected gradient of ``S/2`` at the solution.
    lam : array (k,), optional
        Damping at exit (relative to the scaled diagonal); passing it back as ``lam0`` continues
        a run that was stopped by ``max_iter`` with the damping it had reached.
    """

    p: Any
    sse: Any
    A: Any
    g: Any
    held: Any
    iterations: Any
    nfev: Any
    exitflag: Any
    firstorderopt: Any
    lam: Any = None


def _compiled_iteration(evaluate: Any, on_host: bool) -> Any:
    """The evaluator's compiled form of this loop's iteration, if it has one.

    Numba engine: :meth:`peakfit.solvers.evaluators.NumbaNormalEquations.iterate`; CuPy: the
    generated kernel of :mod:`peakfit.gpu.lm_kernel`. Both perform, row by row, the arithmetic
    of the NumPy loop below, which stays the reference (and the path of every other evaluator).
    """
    if on_host:
        return getattr(evaluate, "lm_iteration", None)
    from ..gpu.lm_kernel import device_iteration

    return device_iteration(evaluate)


def _held(p: Any, g: Any, lo: Any, hi: Any) -> Any:
    return ((p <= lo) & (g < 0)) | ((p >= hi) & (g > 0))


def levenberg_marquardt(
    evaluate: Evaluator,
    p0: Any,
    lower: Any,
    upper: Any,
    *,
    tol_fun: float = 1e-6,
    tol_x: float = 1e-6,
    max_iter: int = 400,
    max_fun_evals: int = 600,
    algorithm: str = "Trust-Region",
    lam0: Any = 1.0,
    callback: Callable[[int, Any, Any, Any], None] | None = None,
    check_every: int = 1,
) -> LMResult:
    """Minimise a batch of weighted nonlinear least-squares problems.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(p, idx) -> (sse, A, g)`` for parameter rows ``p`` (shape ``(j, P)``) of the
        spectra ``idx`` (integer array of length ``j``).
    p0 : array (k, P)
        Start points; their dtype (float64 or float32) is the working precision.
    lower, upper : array (P,) or (k, P)
        Bounds (``-inf``/``inf`` for none).
    tol_fun, tol_x, max_iter, max_fun_evals : optional
        Stopping rules (see the module docstring).
    algorithm : {'Trust-Region', 'Levenberg-Marquardt'}
        Damping update rule.
    lam0 : float or array (k,)
        Initial damping ``τ``, relative to the scaled diagonal (``λ₀ = τ`` in the scaled
        variables, i.e. ``τ · max diag(A)`` in Madsen, Nielsen & Tingleff's terms when the
        scaling is uniform); a scalar or one value per row. The default 1.0 is for a start
        of unknown quality (a user's guess, MATLAB's ``gaussnstart``): the first steps are
        short, which makes fits from poor starts much more robust (from 10 %-perturbed starts,
        80 % success against 43 % with ``1e-3``). Pass a small value (``1e-6`` to ``1e-3``, as
        Madsen-Nielsen-Tingleff recommend "if x0 is believed to be a good approximation to
        x*") when the start is already close, e.g. from :func:`peakfit.autostart.auto_start`
        (``fit_gaussians`` and ``fit_gaussians_batch`` use ``1e-3`` for ``start='auto'``):
        the first steps are then nearly Gauss-Newton and the fit converges in a few
        iterations. ``LMResult.lam`` returns the damping at exit, so a run can be continued.
    callback : callable, optional
        ``callback(iteration, idx, sse, lam)`` after each iteration, for the rows ``idx`` of the
        work set (used by ``Display='iter'``). It may return a boolean array (one per row of
        ``idx``): rows marked True stop now, with exitflag 0 (e.g. candidates that a caller no
        longer needs; :mod:`peakfit.autostart` drops losing start candidates this way).
    check_every : int
        Compact the set of unfinished rows (one host synchronisation on a GPU) every this many
        iterations; rows finishing in between are masked. Results do not depend on it. On a
        GPU, more than ``max_iter`` never compacts: no host synchronisation at all.

    Returns
    -------
    LMResult

    Examples
    --------
    >>> import numpy as np
    >>> from peakfit.models import GaussianModel
    >>> m = GaussianModel(1)
    >>> x = np.linspace(-3, 3, 61)
    >>> y = m(x, [2.0, 0.5, 1.2])[None, :]
    >>> res = levenberg_marquardt(NormalEquations(m, x, y), np.array([[1.0, 0.0, 1.0]]),
    ...                           m.default_lower(), m.default_upper(), tol_fun=1e-12,
    ...                           tol_x=1e-12)
    >>> np.round(res.p, 8).tolist()
    [[2.0, 0.5, 1.2]]
    """
    xp = get_xp(p0)
    solve = damped_solver(evaluate)  # the evaluator's solver of the damped systems
    tr = str(algorithm).lower().startswith("trust")
    k, P = p0.shape
    dt = p0.dtype
    check_every = max(1, int(check_every))
    on_host = xp is np
    lo = xp.broadcast_to(xp.asarray(lower, dtype=dt), (k, P))
    hi = xp.broadcast_to(xp.asarray(upper, dtype=dt), (k, P))
    p = xp.clip(p0, lo, hi)
    all_idx = xp.arange(k)
    sse, A, g = evaluate(p, all_idx)
    sse = sse.astype(xp.float64, copy=False)
    A = A.astype(dt, copy=False)
    g = g.astype(dt, copy=False)
    sse0 = sse.copy()
    nfev = xp.ones(k, dtype=xp.int64)
    it = xp.zeros(k, dtype=xp.int64)
    lam = xp.broadcast_to(xp.asarray(lam0, dtype=dt), (k,)).copy()
    nu = xp.full(k, 2.0, dtype=dt)
    D = xp.zeros((k, P), dtype=dt)
    finite0 = xp.isfinite(sse) & xp.all(xp.isfinite(A), axis=(1, 2)) & xp.all(
        xp.isfinite(g), axis=1
    )
    exitflag = xp.where(finite0, 0, -1).astype(xp.int64)
    # exact fit or zero gradient at the start
    gfree0 = xp.where(_held(p, g, lo, hi), 0.0, g)
    at_zero = finite0 & (
        (sse <= 0) | (xp.max(xp.abs(gfree0), axis=1) <= 1e-300)
    )
    exitflag = xp.where(at_zero, 1, exitflag)
    active = finite0 & ~at_zero
    if max_iter == 0 or max_fun_evals <= 1:
        active = active & False
    tiny = float(np.finfo(np.dtype(str(dt))).tiny)
    diag = xp.arange(P)
    sqrt_eps = np.sqrt(_EPS)
    iteration = 0
    # the same per-row iteration compiled: the Numba engine's (one call per iteration, the
    # work set compacted every iteration) or the GPU's (one kernel launch per iteration, rows
    # masked on the device, compacted every check_every iterations: one host synchronisation)
    step = _compiled_iteration(evaluate, on_host) if P else None
    if step is not None:
        lo, hi = xp.ascontiguousarray(lo), xp.ascontiguousarray(hi)
        p, A, g = (xp.ascontiguousarray(a) for a in (p, A, g))
        between = 1 if on_host else check_every
        # on a GPU with check_every > max_iter: every row, masked, max_iter times (no host
        # synchronisation at all; finished rows cost their share of the work)
        masked = not on_host and check_every > max_iter
        while True:
            idx = all_idx if masked else xp.flatnonzero(active)
            if not masked and idx.size == 0:
                break
            for _ in range(max(1, min(between, max_iter - iteration))):
                iteration += 1
                step(idx, p, A, g, sse, lam, nu, D, lo, hi, it, nfev, sse0, exitflag, active,
                     tr, tol_fun, tol_x, max_iter, max_fun_evals)
                if callback is not None:
                    stop = callback(iteration, idx, sse[idx], lam[idx])
                    if stop is not None:  # the caller ends these rows (exitflag 0)
                        active[idx] = active[idx] & ~xp.asarray(stop, dtype=bool)  # no sync
            if masked:
                break
    while step is None:
        idx = xp.flatnonzero(active)
        if idx.size == 0:
            break
        # compact working copies of the unfinished rows (on the host, when every row is
        # unfinished, the arrays themselves: the loop below only rebinds, never writes into them)
        whole = on_host and idx.size == k
        if whole:
            pa, Aa, ga, sa, la, nua, Da = p, A, g, sse, lam, nu, D
            lo_a, hi_a, ita, nfa, s0a, flag_a = lo, hi, it, nfev, sse0, exitflag
        else:
            pa, Aa, ga, sa = p[idx], A[idx], g[idx], sse[idx]
            la, nua, Da = lam[idx], nu[idx], D[idx]
            lo_a, hi_a = lo[idx], hi[idx]
            ita, nfa, s0a = it[idx], nfev[idx], sse0[idx]
            flag_a = exitflag[idx]
        live = xp.ones(idx.size, dtype=bool)
        zero_sse = 4 * _EPS * _EPS * xp.maximum(s0a, tiny)
        for _ in range(min(check_every, max(1, max_iter))):
            if on_host and not live.any():
                break  # free on the host; a device keeps going until the next compaction
            iteration += 1
            held = _held(pa, ga, lo_a, hi_a)
            free = ~held
            Da = xp.maximum(Da, xp.diagonal(Aa, axis1=1, axis2=2))
            dmax = Da.max(axis=1, keepdims=True)
            d = xp.sqrt(xp.maximum(Da, xp.maximum(dmax * 1e-30, tiny)))
            # scaled, bound-reduced system: rows/columns of held coefficients become identity
            As = Aa / (d[:, :, None] * d[:, None, :])
            if on_host and not held.any():  # nothing held: the same numbers, fewer operations
                As[:, diag, diag] += la[:, None]
                delta = solve(As, ga / d) / d
            else:
                fm = free[:, :, None] & free[:, None, :]
                As = xp.where(fm, As, 0.0)
                As[:, diag, diag] += la[:, None] + held.astype(dt)
                gs = xp.where(free, ga / d, 0.0)
                z = solve(As, gs)
                delta = xp.where(free, z / d, 0.0)
            pt = xp.minimum(xp.maximum(pa + delta, lo_a), hi_a)  # clip, fewer calls
            delta = pt - pa
            Ad = (Aa @ delta[:, :, None])[:, :, 0]
            pred = 2.0 * (delta * ga).sum(axis=1) - (delta * Ad).sum(axis=1)
            bad_step = ~xp.isfinite(delta).all(axis=1)
            st, At, gt = evaluate(pt, idx)
            nfa = nfa + live
            ita = ita + live
            ok_t = xp.isfinite(st) & xp.isfinite(gt).all(axis=1)
            actual = sa - st
            accept = ok_t & (actual > 0) & ~bad_step
            if tr:
                with np.errstate(divide="ignore", invalid="ignore"):
                    rho = xp.where(pred > 0, actual / pred, 0.0)
                shrink = xp.maximum(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
                new_lam = xp.where(accept, la * shrink, la * nua)
                nua = xp.where(accept, 2.0, nua * 2.0).astype(dt, copy=False)
            else:
                new_lam = xp.where(accept, la / 10.0, la * 10.0)
            la = xp.minimum(xp.maximum(new_lam, 1e-16), 1e300).astype(dt, copy=False)
            take = accept & live
            take2 = take[:, None]
            # convergence tests (on the step just tried)
            pnorm = xp.sqrt((pa * pa).sum(axis=1))
            snorm = xp.sqrt((delta * delta).sum(axis=1))
            step_small = snorm <= tol_x * (sqrt_eps + pnorm)
            fun_small = accept & (actual <= tol_fun * sa) & (pred <= tol_fun * sa)
            pa = xp.where(take2, pt, pa)
            sa = xp.where(take, st, sa)
            Aa = xp.where(take2[:, :, None], At, Aa)
            ga = xp.where(take2, gt, ga)
            zero = sa <= zero_sse
            # the first condition that holds, in this order, gives the flag (0: the limits)
            flag = xp.where(bad_step, -2, xp.where(zero, 1, xp.where(
                fun_small, 3, 2 * step_small.astype(xp.int64))))
            done = bad_step | zero | fun_small | step_small | (ita >= max_iter) | (
                nfa >= max_fun_evals)
            flag_a = xp.where(done & live, flag, flag_a)
            live = live & ~done
            if callback is not None:
                stop = callback(iteration, idx, sa, la)
                if stop is not None:  # the caller ends these rows (exitflag 0)
                    live = live & ~xp.asarray(stop, dtype=bool)
        if whole:
            p, A, g, sse, lam, nu, D = pa, Aa, ga, sa, la, nua, Da
            it, nfev, exitflag, active = ita, nfa, flag_a, live
            continue
        p[idx], A[idx], g[idx], sse[idx] = pa, Aa, ga, sa
        lam[idx], nu[idx], D[idx] = la, nua, Da
        it[idx], nfev[idx], exitflag[idx] = ita, nfa, flag_a
        active[idx] = live
    held = _held(p, g, lo, hi)
    fo = xp.max(xp.abs(xp.where(held, 0.0, g)), axis=1) if P else xp.zeros(k)
    return LMResult(
        p=p, sse=sse, A=A, g=g, held=held, iterations=it, nfev=nfev,
        exitflag=exitflag, firstorderopt=fo, lam=lam,
    )
