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

Batching and host synchronisation
---------------------------------
The set of unfinished rows is recomputed (compacted) every ``check_every`` iterations; in between,
rows that finish are frozen by a mask and cost a little wasted work but no host round trip. With
``check_every=1`` (the default, used for NumPy) every iteration compacts; a GPU driver passes a
larger value so that the host synchronises with the device only every few iterations. The result
of a row does not depend on ``check_every`` or on which other rows share the batch.

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
from ..engine import resolve_engine

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

#: ``exp(-u)`` for ``u`` above this is replaced by an exact 0 in the float64 NumPy evaluator:
#: the true value is below 1e-260 (negligible next to any O(1) term), and NumPy's SIMD ``exp``
#: drops to a scalar path ~15x slower for results near the subnormal range.
_EXP_CUT64 = 600.0
_EXP_AT_CUT64 = float(np.exp(-_EXP_CUT64))


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


class NormalEquations:
    """NumPy/CuPy evaluator of ``(S, JᵀWJ, JᵀWr)`` for a model on a batch of spectra.

    Parameters
    ----------
    model : GaussianModel
    x : array (m,) or (k, m)
    Y : array (k, m)
        Data; entries with zero weight may be anything finite. Its dtype (float64 or float32)
        is the working precision; ``S`` is always returned as float64.
    sqrt_w : array (k, m) or (m,), optional
        Square roots of the weights.
    block_rows : int
        NumPy only: rows evaluated together, sized so that the per-block temporaries stay in
        the CPU cache.
    engine : {'auto', 'numpy', 'numba'}, optional
        Who computes the fused evaluation on the CPU (:mod:`peakfit.engine`; default: the
        process default, Numba when installed). Ignored for CuPy arrays and other models.
    fused : bool, optional
        NumPy engine only: use the fused path (below). Default: yes, for a
        :class:`~peakfit.models.GaussianModel` in float32/float64. The fused path wins from a
        few dozen rows on; for a handful of short rows its fixed cost dominates and ``False``
        (plain :meth:`GaussianModel.evaluate` and three products) is cheaper (2 rows x 125
        points: about 35 us against 60 us; 64 rows: 1.6 ms against 0.7 ms).

    Notes
    -----
    For NumPy arrays and a :class:`~peakfit.models.GaussianModel` the evaluation is fused: the
    Jacobian of a block of rows is written into one reused buffer with the weighted residual as
    an extra row, ``[J; r] [J; r]ᵀ`` (one batched GEMM) then gives ``A``, ``g`` and ``S``
    together. Values equal :meth:`GaussianModel.evaluate` except that, in float64, terms
    ``exp(-u)`` with ``u > 600`` (below 1e-260) are exactly zero. With the Numba engine the
    same numbers come from one compiled kernel (:mod:`peakfit.solvers._numba`, equal to
    rounding). Other array modules use :meth:`GaussianModel.evaluate`.

    Examples
    --------
    >>> import numpy as np
    >>> from peakfit.models import GaussianModel
    >>> m = GaussianModel(1)
    >>> x = np.linspace(-2, 2, 41)
    >>> Y = m(x, [1.0, 0.0, 1.0])[None, :] + 0.1
    >>> S, A, g = NormalEquations(m, x, Y)(np.array([[1.0, 0.0, 1.0]]), np.array([0]))
    >>> round(float(S[0]), 12), A.shape, g.shape
    (0.41, (1, 3, 3), (1, 3))
    """

    def __init__(
        self, model: Any, x: Any, Y: Any, sqrt_w: Any = None, *, block_rows: int = 16,
        fused: bool | None = None, engine: str | None = None,
    ) -> None:
        self.model = model
        self.x = x
        self.Y = Y
        self.sqrt_w = sqrt_w
        self.block_rows = max(1, int(block_rows))
        fusable = (
            get_xp(x, Y, sqrt_w) is np
            and hasattr(model, "baseline")
            and hasattr(model, "n_params")
            and Y.dtype in (np.float32, np.float64)
        )
        self.engine = resolve_engine(engine) if fusable else "numpy"
        self._numba = None
        if self.engine == "numba":
            self._numba = _NumbaCall(model, x, Y, sqrt_w)
        self._fast = fusable and fused is not False and self._numba is None
        self._buf: np.ndarray | None = None
        if self._fast:
            n = model.n
            # row of coefficient j (MATLAB order a1 b1 c1 a2 ...) in the grouped Jacobian
            # layout [a-derivatives, b-derivatives, c-derivatives, baseline]
            self._perm = np.array([(j % 3) * n + j // 3 for j in range(3 * n)]
                                  + list(range(3 * n, model.n_params)))
            if x.ndim == 1:
                self._xrange = (float(np.min(x)), float(np.max(x)))
            else:
                self._xrange = (np.min(x, axis=1), np.max(x, axis=1))

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
        if self._numba is not None:
            return self._numba(p, idx)
        if self._fast:
            return self._fused(p, idx)
        r, Jt = self.residuals(p, idx)
        sse = (r * r).sum(axis=1)
        A = Jt @ Jt.transpose(0, 2, 1)
        g = (Jt @ r[:, :, None])[:, :, 0]
        if sse.dtype != np.float64:
            xp = get_xp(r)
            sse = (r.astype(xp.float64) ** 2).sum(axis=1)
        return sse, A, g

    # ------------------------------------------------------------ NumPy fast path
    def _fused(self, p: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dt = self.Y.dtype
        P = self.model.n_params
        k = p.shape[0]
        m = self.Y.shape[1]
        p = np.asarray(p, dtype=dt)
        idx = np.asarray(idx)
        sse = np.empty(k, dtype=np.float64)
        A = np.empty((k, P, P), dtype=dt)
        g = np.empty((k, P), dtype=dt)
        B = self.block_rows
        if self._buf is None or self._buf.shape[0] < min(B, k):
            self._buf = np.empty((min(B, max(k, 1)), P + 1, m), dtype=dt)
        M = np.empty((min(B, max(k, 1)), P + 1, P + 1), dtype=dt)
        for s in range(0, k, B):
            e = min(k, s + B)
            rows = idx[s:e]
            nb = e - s
            J = self._buf[:nb]
            with np.errstate(over="ignore"):  # t^2 = inf for c -> 0: exp(-inf) = 0, exact
                self._jacobian_block(p[s:e], rows, J)
            Mb = M[:nb]
            np.matmul(J, J.transpose(0, 2, 1), out=Mb)
            perm = self._perm  # Jacobian rows are grouped by kind: back to MATLAB order
            A[s:e] = Mb[:, perm[:, None], perm[None, :]]
            g[s:e] = Mb[:, perm, P]
            if dt == np.float64:
                sse[s:e] = Mb[:, P, P]
            else:
                r64 = J[:, P, :].astype(np.float64)
                sse[s:e] = np.einsum("ij,ij->i", r64, r64)
        return sse, A, g

    def _jacobian_block(self, p: np.ndarray, rows: np.ndarray, J: np.ndarray) -> None:
        """Fill ``J`` (b, P+1, m) with the weighted Jacobian and, last, the residual.

        Rows are grouped by kind (all ``df/da``, all ``df/db``, all ``df/dc``, baseline) so
        that each group is one contiguous block; ``_perm`` maps back to MATLAB order.
        """
        model = self.model
        n = model.n
        P = model.n_params
        n3 = 3 * n
        dt = J.dtype
        a = p[:, 0:n3:3]
        b = p[:, 1:n3:3]
        c = p[:, 2:n3:3]
        zero_c = c == 0
        rc = (1.0 / np.where(zero_c, 1.0, c)).astype(dt, copy=False)[:, :, None]
        x = self.x
        if x.ndim == 1:
            xx = x[None, None, :]
            x2 = x[None, :]
            xlo, xhi = self._xrange
        else:
            x2 = x[rows]
            xx = x2[:, None, :]
            xlo, xhi = self._xrange[0][rows][:, None], self._xrange[1][rows][:, None]
        t = np.subtract(xx, b[:, :, None], dtype=dt)
        t *= rc
        E = J[:, 0:n]
        np.multiply(t, t, out=E)
        # largest t^2 of each term, from the x range: clip only when a term reaches the cut
        clip = dt == np.float64 and bool(
            np.any(np.maximum((xlo - b) ** 2, (xhi - b) ** 2) * rc[:, :, 0] ** 2 > _EXP_CUT64)
        )
        if clip:
            np.minimum(E, _EXP_CUT64, out=E)
        np.negative(E, out=E)
        np.exp(E, out=E)
        if clip:
            E -= _EXP_AT_CUT64  # exactly 0 beyond the cut; others move by < 3e-261
        if zero_c.any():
            E[zero_c] = 0.0
        f = J[:, P]
        dfdb = J[:, n:2 * n]
        np.multiply(E, a[:, :, None], out=dfdb)  # a E
        np.sum(dfdb, axis=1, out=f)
        dfdb *= t
        dfdb *= 2.0 * rc  # 2 a E t / c
        np.multiply(dfdb, t, out=J[:, 2 * n:n3])  # 2 a E t^2 / c
        q = p[:, n3:]
        bl = model.baseline
        if bl in ("constant", "linear", "quadratic"):
            f += q[:, 0:1]
            J[:, n3] = 1.0
            if bl == "linear":
                f += q[:, 1:2] * x2
                J[:, n3 + 1] = x2
            elif bl == "quadratic":
                f += (q[:, 1:2] + q[:, 2:3] * x2) * x2
                J[:, n3 + 1] = x2
                J[:, n3 + 2] = x2 * x2
        elif bl == "exponential":
            with np.errstate(over="ignore", invalid="ignore"):
                ex = np.exp(-q[:, 1:2] * x2)
                f += q[:, 0:1] * ex
                J[:, n3] = ex
                J[:, n3 + 1] = -q[:, 0:1] * x2 * ex
        np.subtract(self.Y[rows], f, out=f)  # the residual, in the row of f
        if self.sqrt_w is not None:
            sw = self.sqrt_w[None, None, :] if self.sqrt_w.ndim == 1 else (
                self.sqrt_w[rows][:, None, :])
            J *= sw


class _NumbaCall:
    """The Numba kernel bound to one batch's data (arrays laid out as the kernel wants)."""

    def __init__(self, model: Any, x: Any, Y: np.ndarray, sqrt_w: Any) -> None:
        from . import _numba

        self.kernel = _numba.normal_equations_kernel
        dt = Y.dtype
        self.dt = dt
        self.n = int(model.n)
        self.P = int(model.n_params)
        self.baseline = _numba.BASELINE_CODES[model.baseline]
        self.Y = np.ascontiguousarray(Y)
        xa = np.asarray(x, dtype=dt)
        self.x_shared = xa.ndim == 1
        self.x = np.ascontiguousarray(xa.reshape(1, -1) if self.x_shared else xa)
        if sqrt_w is None:
            self.w_mode = 0
            self.sw = np.ones((1, 1), dtype=dt)
        else:
            sw = np.asarray(sqrt_w, dtype=dt)
            self.w_mode = 1 if sw.ndim == 1 else 2
            self.sw = np.ascontiguousarray(sw.reshape(1, -1) if sw.ndim == 1 else sw)
        m = self.Y.shape[1]
        self.zero = np.zeros(1, dtype=dt)
        R = -(-(self.P + 1) // 3) * 3  # whole 3x3 tiles; the padding rows stay zero
        self.J = np.zeros((R, m), dtype=dt)
        self.M = np.empty((R, R), dtype=dt)
        self.E = np.empty(m, dtype=np.float64)
        self.Eb = self.E.view(np.int64)

    def __call__(self, p: Any, idx: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = np.ascontiguousarray(p, dtype=self.dt)
        idx = np.ascontiguousarray(idx, dtype=np.int64)
        k = p.shape[0]
        sse = np.empty(k, dtype=np.float64)
        A = np.empty((k, self.P, self.P), dtype=self.dt)
        g = np.empty((k, self.P), dtype=self.dt)
        if k:
            self.kernel(self.x, self.x_shared, self.Y, idx, self.sw, self.w_mode, p, self.n,
                        self.baseline, self.zero, sse, A, g, self.J, self.M, self.E, self.Eb)
        return sse, A, g


def _solve(xp: Any, M: Any, b: Any, engine: str = "numpy") -> Any:
    """Batched solve of SPD systems; rows that fail come back as NaN.

    ``engine='numba'`` (NumPy arrays only) uses the compiled LU of :mod:`._numba`, the same
    method as LAPACK's ``gesv`` without the per-matrix call overhead.
    """
    if engine == "numba" and xp is np and M.dtype in (np.float32, np.float64) and M.shape[0]:
        from ._numba import solve_kernel

        out = np.empty(b.shape, dtype=np.result_type(M.dtype, b.dtype))
        W = np.empty((M.shape[1], M.shape[1] + 1), dtype=out.dtype)
        solve_kernel(np.ascontiguousarray(M, dtype=out.dtype),
                     np.ascontiguousarray(b, dtype=out.dtype), out, W)
        return out
    try:
        return xp.linalg.solve(M, b[..., None])[..., 0]
    except np.linalg.LinAlgError:
        out = xp.full(b.shape, xp.nan, dtype=b.dtype)
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
        iterations; rows finishing in between are masked. Results do not depend on it.

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
    engine = getattr(evaluate, "engine", "numpy")  # who solves the damped systems on the CPU
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
    while True:
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
                delta = _solve(xp, As, ga / d, engine) / d
            else:
                fm = free[:, :, None] & free[:, None, :]
                As = xp.where(fm, As, 0.0)
                As[:, diag, diag] += la[:, None] + held.astype(dt)
                gs = xp.where(free, ga / d, 0.0)
                z = _solve(xp, As, gs, engine)
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
