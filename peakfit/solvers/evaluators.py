"""Evaluators of the normal equations ``(S, JᵀWJ, JᵀWr)`` for the least-squares loop.

:func:`peakfit.solvers.lm.levenberg_marquardt` needs, for a set of rows of a batch, the weighted
sum of squares ``S``, ``A = JᵀWJ`` and ``g = JᵀWr`` at given coefficients. This module computes
them on the CPU; the GPU's fused kernel is :class:`peakfit.gpu.kernels.FusedNormalEquations`.
All of them evaluate the model through its term kinds (:mod:`peakfit.models`): NumPy runs the
kernels generated from them (:func:`peakfit.models.numpy_kernel`), CuPy their steps with array
broadcasting, the Numba kernel is generated from the same steps (:mod:`peakfit.solvers._numba`),
so adding a term kind changes no code here. Each evaluator also carries the solver of the damped
systems that goes with its engine (``solve``, :mod:`peakfit.solvers.linalg`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._xp import get_xp
from ..engine import resolve_engine
from ..models import Workspace, exp_flushed
from .linalg import Solver, solve_batched, solve_compiled

__all__ = ["NormalEquations"]

_EPS = float(np.finfo(float).eps)
#: Points per block of the fused NumPy path (rows x points): its arrays stay in the CPU cache.
_BLOCK_POINTS = 16000
_SQRT_EPS = float(np.sqrt(_EPS))


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
    block_rows : int, optional
        NumPy only: rows evaluated together. Default: sized from the number of points so that
        a block's arrays stay in the CPU cache (16 rows of 1000 points, 128 of 125).
    engine : {'auto', 'numpy', 'numba'}, optional
        Who computes the fused evaluation on the CPU (:mod:`peakfit.engine`; default: the
        process default, Numba when installed). Ignored for CuPy arrays and other models.
        :class:`peakfit.backends.Backend` passes the engine it resolved.

    Attributes
    ----------
    engine : {'numpy', 'numba'}
        The engine that evaluates (``'numpy'`` for CuPy arrays and other models: array code).
    solve : callable
        ``solve(M, B)``: the solver of the damped systems that goes with the engine
        (:mod:`peakfit.solvers.linalg`: the compiled LU for Numba, LAPACK otherwise), which
        the least-squares loops use (:func:`~peakfit.solvers.linalg.damped_solver`).
    lm_iteration : callable or None
        The compiled iteration of the least-squares loop (Numba engine only, see
        :meth:`NumbaNormalEquations.iterate`).

    Notes
    -----
    Which path evaluates is decided here, once, from the arrays and the engine:

    * the Numba engine: one compiled kernel generated from the model's term kinds
      (:mod:`peakfit.solvers._numba`, equal to the NumPy numbers to rounding);
    * NumPy arrays (float32/float64) and a :class:`~peakfit.models.GaussianModel`: the fused
      path. The Jacobian of a block of rows is written by the generated NumPy kernels
      (:meth:`GaussianModel.fill <peakfit.models.GaussianModel.fill>`) into one reused
      buffer, rows grouped by parameter, with the weighted residual as an extra row;
      ``[J; r] [J; r]ᵀ`` (one batched GEMM) then gives ``A``, ``g`` and ``S`` together.
      Values equal :meth:`GaussianModel.evaluate` except that, in float64, terms ``exp(v)``
      with ``v < -600`` (below 1e-260) are exactly zero (:func:`peakfit.models.exp_flushed`).
      It is used at every size: measured against the generic path below it is faster from
      one row of 60 points up (there is no small-problem switch);
    * anything else (CuPy arrays, other models): :meth:`GaussianModel.evaluate` and three
      products (:meth:`generic` builds this path for NumPy arrays too: the reference the
      fused paths are tested against).

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
        self, model: Any, x: Any, Y: Any, sqrt_w: Any = None, *, block_rows: int | None = None,
        engine: str | None = None,
    ) -> None:
        self.model = model
        self.x = x
        self.Y = Y
        self.sqrt_w = sqrt_w
        m = int(Y.shape[-1]) if getattr(Y, "ndim", 0) else 1
        self.block_rows = max(1, int(block_rows) if block_rows is not None
                              else _BLOCK_POINTS // max(m, 1))
        fusable = (
            get_xp(x, Y, sqrt_w) is np
            and hasattr(model, "fill")
            and Y.dtype in (np.float32, np.float64)
        )
        self.engine = resolve_engine(engine) if fusable else "numpy"
        self._numba = None
        if self.engine == "numba":
            self._numba = NumbaNormalEquations(model, x, Y, sqrt_w)
        self._fast = fusable and self._numba is None
        self.solve: Solver = solve_compiled if self._numba is not None else solve_batched
        self.lm_iteration = None if self._numba is None else self._numba.iterate
        if self._fast:
            self._x_dt = np.asarray(x, dtype=Y.dtype)
            self._work = Workspace(8)
            o = model.grouped_order()
            self._order = o
            # A[i, j] read from the upper triangle of the grouped product
            self._upper = (np.minimum.outer(o, o), np.maximum.outer(o, o))
            self._exp = exp_flushed if Y.dtype == np.float64 else np.exp

    @classmethod
    def generic(cls, model: Any, x: Any, Y: Any, sqrt_w: Any = None) -> NormalEquations:
        """The array-code path (:meth:`GaussianModel.evaluate` and three products) on any
        arrays: what CuPy arrays and other models run, and the reference of the tests."""
        ev = cls(model, x, Y, sqrt_w, engine="numpy")
        ev._fast = False
        return ev

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
        ui, uj = self._upper
        for s in range(0, k, B):
            e = min(k, s + B)
            # [J; r] of the block, rows grouped by parameter: (P+1, b, m)
            J = self._work.get((P + 1, e - s, m), dt, 1, 0)[0][0]
            self._jacobian_block(p[s:e], idx[s:e], J)
            Jb = J.transpose(1, 0, 2)
            # J [J; r]ᵀ = [A g] in one GEMM per row (not [J; r][J; r]ᵀ: NumPy hands a product
            # of an array with its own transpose to BLAS's syrk, about twice as slow here)
            Mb = self._work.get((e - s, P, P + 1), dt, 1, 0)[0][0]
            np.matmul(Jb[:, :P], Jb.transpose(0, 2, 1), out=Mb)
            A[s:e] = Mb[:, ui, uj]  # MATLAB order, from one triangle: exactly symmetric
            g[s:e] = Mb[:, self._order, P]
            r = J[P] if dt == np.float64 else J[P].astype(np.float64)
            sse[s:e] = np.einsum("ij,ij->i", r, r)
        return sse, A, g

    def _jacobian_block(self, p: np.ndarray, rows: np.ndarray, J: np.ndarray) -> None:
        """Fill ``J`` (P+1, b, m) with the weighted Jacobian (rows grouped by parameter, see
        :meth:`GaussianModel.fill`) and, last, the weighted residual."""
        P = self.model.n_params
        x = self._x_dt if self._x_dt.ndim == 1 else self._x_dt[rows]
        f = J[P]
        self.model.fill(x, p, f, J[:P], grouped=True, work=self._work, exp=self._exp)
        np.subtract(self.Y[rows], f, out=f)  # the residual, in the row of f
        if self.sqrt_w is not None:
            J *= self.sqrt_w if self.sqrt_w.ndim == 1 else self.sqrt_w[rows]


class NumbaNormalEquations:
    """The Numba kernel (generated from the model's term kinds) bound to one batch's data."""

    def __init__(self, model: Any, x: Any, Y: np.ndarray, sqrt_w: Any) -> None:
        from . import _numba

        self.kernel = _numba.get_kernel()
        dt = Y.dtype
        self.dt = dt
        self.n = int(model.n)
        self.P = int(model.n_params)
        self.baseline = _numba.baseline_code(model.baseline)
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
        ne = max(1, _numba.exp_slots())
        self.EP = np.empty((ne, m), dtype=np.float64)
        self.EW = np.empty((ne, m), dtype=np.float64)
        self.EB = self.EW.view(np.int64)
        self._it_scratch: tuple[np.ndarray, ...] | None = None
        self._tiny = float(np.finfo(dt).tiny)

    def __call__(self, p: Any, idx: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = np.ascontiguousarray(p, dtype=self.dt)
        idx = np.ascontiguousarray(idx, dtype=np.int64)
        k = p.shape[0]
        sse = np.empty(k, dtype=np.float64)
        A = np.empty((k, self.P, self.P), dtype=self.dt)
        g = np.empty((k, self.P), dtype=self.dt)
        if k:
            self.kernel(self.x, self.x_shared, self.Y, idx, self.sw, self.w_mode, p, self.n,
                        self.baseline, self.zero, sse, A, g, self.J, self.M, self.EP, self.EW,
                        self.EB)
        return sse, A, g

    def iterate(self, idx: np.ndarray, p: np.ndarray, A: np.ndarray, g: np.ndarray,
                S: np.ndarray, lam: np.ndarray, nu: np.ndarray, D: np.ndarray, lo: np.ndarray,
                hi: np.ndarray, it: np.ndarray, nfev: np.ndarray, S0: np.ndarray,
                flag: np.ndarray, active: np.ndarray, trust: bool, tol_fun: float,
                tol_x: float, max_iter: int, max_fun_evals: int) -> None:
        """One iteration of :func:`peakfit.solvers.lm.levenberg_marquardt` for the rows ``idx``.

        The whole per-row step (bounds, scaling, damped solve, projection, trial evaluation,
        acceptance, damping, stopping tests) runs in one compiled call with the GIL released;
        the state arrays (full batch, the loop's own) are updated in place and finished rows
        get ``active[r] = False`` and their exit flag.
        """
        from . import _numba

        P = self.P
        dt = self.dt
        if self._it_scratch is None:
            self._it_scratch = (
                np.empty((P, P + 1), dtype=dt), np.empty((1, P), dtype=dt),
                np.empty((1, P, P), dtype=dt), np.empty((1, P), dtype=dt),
                np.empty(1, dtype=np.float64), np.empty(1, dtype=np.int64),
                np.empty(P, dtype=dt), np.empty(P, dtype=dt), np.empty(P, dtype=dt),
                np.empty(P, dtype=np.bool_))
        eps = _EPS
        _numba.get_iteration_kernel()(
            idx, self.x, self.x_shared, self.Y, self.sw, self.w_mode, self.n, self.baseline,
            self.zero, self.J, self.M, self.EP, self.EW, self.EB,
            p, A, g, S, lam, nu, D, lo, hi, it, nfev, S0, flag, active,
            bool(trust), float(tol_fun), float(tol_x), int(max_iter), int(max_fun_evals),
            self._tiny, _SQRT_EPS, eps, *self._it_scratch)


_NumbaCall = NumbaNormalEquations  # the former private name
