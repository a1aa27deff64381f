"""The one least-squares algorithm: batched, bounded Levenberg-Marquardt / trust region.

Every fit in peakfit, one spectrum or millions, NumPy or CuPy, runs this loop. A spectrum is a
row of the batch; each row has its own damping, its own convergence test and its own exit flag,
and rows that have finished are removed from the work set (no batch-wide stopping rule).

The problem is ``min_p sum_i w_i (y_i - f(x_i; p))^2`` subject to ``lower <= p <= upper``. The
loop only needs, for a set of rows, the normal-equation pieces at a parameter vector: the sum of
squares ``S``, ``A = JᵀWJ`` and ``g = JᵀW r`` (``r = y - f``). They come from an *evaluator*
callable, which is where NumPy (:class:`NormalEquations`) and the fused GPU kernels differ.

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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._xp import get_xp

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
        Weighted sum of squares at ``p``.
    A, g : arrays (k, P, P), (k, P)
        ``JᵀWJ`` and ``JᵀWr`` at ``p``.
    held : array of bool (k, P)
        Coefficients at a bound with the gradient pointing outward (MATLAB's active bounds).
    iterations, nfev : int arrays (k,)
    exitflag : int array (k,)
    firstorderopt : array (k,)
        Infinity norm of the projected gradient of ``S/2`` at the solution.
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


class NormalEquations:
    """NumPy/CuPy evaluator of ``(S, JᵀWJ, JᵀWr)`` for a model on a batch of spectra.

    Parameters
    ----------
    model : GaussianModel
    x : array (m,) or (k, m)
    Y : array (k, m)
        Data; entries with zero weight may be anything finite.
    sqrt_w : array (k, m) or (m,), optional
        Square roots of the weights.
    """

    def __init__(self, model: Any, x: Any, Y: Any, sqrt_w: Any = None) -> None:
        self.model = model
        self.x = x
        self.Y = Y
        self.sqrt_w = sqrt_w

    def residuals(self, p: Any, idx: Any) -> tuple[Any, Any]:
        """Weighted residuals ``sqrt(w)(y - f)`` and weighted ``Jᵀ`` for rows ``idx``."""
        x = self.x if self.x.ndim == 1 else self.x[idx]
        f, Jt = self.model.evaluate(x, p, jacobian=True)
        r = self.Y[idx] - f
        if self.sqrt_w is not None:
            sw = self.sqrt_w if self.sqrt_w.ndim == 1 else self.sqrt_w[idx]
            r = r * sw
            Jt = Jt * sw[..., None, :]
        return r, Jt

    def __call__(self, p: Any, idx: Any) -> tuple[Any, Any, Any]:
        r, Jt = self.residuals(p, idx)
        sse = (r * r).sum(axis=1)
        A = Jt @ Jt.transpose(0, 2, 1)
        g = (Jt @ r[:, :, None])[:, :, 0]
        return sse, A, g


def _solve(xp: Any, M: Any, b: Any) -> Any:
    """Batched solve of SPD systems; rows that fail come back as NaN."""
    try:
        return xp.linalg.solve(M, b[..., None])[..., 0]
    except np.linalg.LinAlgError:
        out = xp.full(b.shape, xp.nan)
        for i in range(M.shape[0]):
            try:
                out[i] = xp.linalg.solve(M[i], b[i])
            except np.linalg.LinAlgError:
                pass
        return out


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
    lam0: float = 1e-3,
    callback: Callable[[int, Any, Any, Any], None] | None = None,
) -> LMResult:
    """Minimise a batch of weighted nonlinear least-squares problems.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(p, idx) -> (sse, A, g)`` for parameter rows ``p`` (shape ``(j, P)``) of the
        spectra ``idx`` (integer array of length ``j``).
    p0 : array (k, P)
        Start points.
    lower, upper : array (P,) or (k, P)
        Bounds (``-inf``/``inf`` for none).
    tol_fun, tol_x, max_iter, max_fun_evals : optional
        Stopping rules (see the module docstring).
    algorithm : {'Trust-Region', 'Levenberg-Marquardt'}
        Damping update rule.
    lam0 : float
        Initial damping, relative to the scaled diagonal.
    callback : callable, optional
        ``callback(iteration, idx, sse, lam)`` after each iteration (used by ``Display='iter'``).

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
    tr = str(algorithm).lower().startswith("trust")
    k, P = p0.shape
    lo = xp.broadcast_to(xp.asarray(lower, dtype=p0.dtype), (k, P))
    hi = xp.broadcast_to(xp.asarray(upper, dtype=p0.dtype), (k, P))
    p = xp.clip(p0, lo, hi)
    all_idx = xp.arange(k)
    sse, A, g = evaluate(p, all_idx)
    sse0 = sse.copy()
    nfev = xp.ones(k, dtype=xp.int64)
    it = xp.zeros(k, dtype=xp.int64)
    lam = xp.full(k, lam0, dtype=p0.dtype)
    nu = xp.full(k, 2.0, dtype=p0.dtype)
    D = xp.zeros((k, P), dtype=p0.dtype)
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
    tiny = float(np.finfo(np.dtype(str(p0.dtype))).tiny)
    eye = xp.eye(P, dtype=p0.dtype)
    iteration = 0
    while True:
        idx = xp.flatnonzero(active)
        if idx.size == 0:
            break
        iteration += 1
        pa, Aa, ga, sa = p[idx], A[idx], g[idx], sse[idx]
        la, lo_a, hi_a = lam[idx], lo[idx], hi[idx]
        held = _held(pa, ga, lo_a, hi_a)
        free = ~held
        diagA = xp.diagonal(Aa, axis1=1, axis2=2)
        Da = xp.maximum(D[idx], diagA)
        D[idx] = Da
        dmax = xp.max(Da, axis=1, keepdims=True)
        d = xp.sqrt(xp.maximum(Da, xp.maximum(dmax * 1e-30, tiny)))
        As = Aa / (d[:, :, None] * d[:, None, :])
        fm = free[:, :, None] & free[:, None, :]
        As = xp.where(fm, As, 0.0) + eye * (la[:, None, None] + held[:, :, None].astype(As.dtype))
        gs = xp.where(free, ga / d, 0.0)
        z = _solve(xp, As, gs)
        delta = xp.where(free, z / d, 0.0)
        pt = xp.clip(pa + delta, lo_a, hi_a)
        delta = pt - pa
        Ad = (Aa @ delta[:, :, None])[:, :, 0]
        pred = 2.0 * (delta * ga).sum(axis=1) - (delta * Ad).sum(axis=1)
        bad_step = ~xp.all(xp.isfinite(delta), axis=1)
        st, At, gt = evaluate(pt, idx)
        nfev[idx] += 1
        it[idx] += 1
        ok_t = xp.isfinite(st) & xp.all(xp.isfinite(gt), axis=1)
        actual = sa - st
        accept = ok_t & (actual > 0) & ~bad_step
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = xp.where(pred > 0, actual / pred, 0.0)
        if tr:
            shrink = xp.maximum(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
            new_lam = xp.where(accept, la * shrink, la * nu[idx])
            nu[idx] = xp.where(accept, 2.0, nu[idx] * 2.0)
        else:
            new_lam = xp.where(accept, la / 10.0, la * 10.0)
        lam[idx] = xp.clip(new_lam, 1e-16, 1e300)
        acc3 = accept[:, None]
        p[idx] = xp.where(acc3, pt, pa)
        sse[idx] = xp.where(accept, st, sa)
        A[idx] = xp.where(acc3[:, :, None], At, Aa)
        g[idx] = xp.where(acc3, gt, ga)
        # convergence tests
        pnorm = xp.sqrt((pa * pa).sum(axis=1))
        snorm = xp.sqrt((delta * delta).sum(axis=1))
        step_small = snorm <= tol_x * (np.sqrt(_EPS) + pnorm)
        fun_small = accept & (actual <= tol_fun * sa) & (pred <= tol_fun * sa)
        new_s = sse[idx]
        zero = new_s <= 4 * _EPS * _EPS * xp.maximum(sse0[idx], tiny)
        flag = xp.zeros(idx.size, dtype=xp.int64)
        done = xp.zeros(idx.size, dtype=bool)
        for cond, val in ((bad_step, -2), (zero, 1), (fun_small, 3), (step_small, 2)):
            newly = cond & ~done
            flag = xp.where(newly, val, flag)
            done = done | cond
        limit = (it[idx] >= max_iter) | (nfev[idx] >= max_fun_evals)
        flag = xp.where(~done & limit, 0, flag)
        done = done | limit
        exitflag[idx] = xp.where(done, flag, exitflag[idx])
        active[idx] = ~done
        if callback is not None:
            callback(iteration, idx, sse[idx], lam[idx])
    held = _held(p, g, lo, hi)
    fo = xp.max(xp.abs(xp.where(held, 0.0, g)), axis=1) if P else xp.zeros(k)
    return LMResult(
        p=p, sse=sse, A=A, g=g, held=held, iterations=it, nfev=nfev,
        exitflag=exitflag, firstorderopt=fo,
    )
