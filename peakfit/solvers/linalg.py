"""Batched solves of the damped systems of the least-squares loop, and who provides them.

:func:`peakfit.solvers.lm.levenberg_marquardt` and :func:`peakfit.solvers.vp.variable_projection`
solve, every iteration, one small SPD system per row. The *evaluator* says how
(:func:`damped_solver`): one with a ``solve(M, B)`` method gets it used (the Numba engine's
:class:`~peakfit.solvers.evaluators.NormalEquations` sets it to :func:`solve_compiled`, chosen
once from the engine the backend resolved); any other evaluator gets :func:`solve_batched`
(LAPACK through ``xp.linalg.solve``, NumPy or CuPy). No module looks at engine names to decide.

Examples
--------
>>> import numpy as np
>>> M = np.array([[[2.0, 0.0], [0.0, 4.0]]])
>>> solve_batched(M, np.array([[2.0, 2.0]])).tolist()
[[1.0, 0.5]]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._xp import get_xp

__all__ = ["Solver", "damped_solver", "solve_batched", "solve_compiled"]

#: ``solve(M, B) -> X`` for ``M`` (j, L, L) and ``B`` (j, L) or (j, L, r); rows whose system
#: cannot be solved come back as NaN.
Solver = Callable[[Any, Any], Any]


def solve_batched(M: Any, B: Any) -> Any:
    """``M X = B`` by LAPACK (``xp.linalg.solve``), row by row on failure; failed rows NaN.

    ``B`` is (j, L) (one right-hand side per row) or (j, L, r).
    """
    xp = get_xp(M, B)
    vec = B.ndim == M.ndim - 1
    try:
        return xp.linalg.solve(M, B[..., None])[..., 0] if vec else xp.linalg.solve(M, B)
    except np.linalg.LinAlgError:
        out = xp.full(B.shape, xp.nan, dtype=B.dtype)
        for i in range(M.shape[0]):
            try:
                out[i] = xp.linalg.solve(M[i], B[i])
            except np.linalg.LinAlgError:
                pass
        return out


def solve_compiled(M: Any, B: Any) -> Any:
    """:func:`solve_batched` by the compiled LU of :mod:`._numba` (the Numba engine).

    The same method as LAPACK's ``gesv`` without the per-matrix call overhead; NumPy float
    arrays only (others go to :func:`solve_batched`). Several right-hand sides are solved one
    at a time.
    """
    if get_xp(M, B) is not np or M.dtype not in (np.float32, np.float64) or not M.shape[0]:
        return solve_batched(M, B)
    if B.ndim == M.ndim:  # (j, L, r): one system per right-hand side
        j, L, r = B.shape
        X = solve_compiled(np.repeat(M, r, axis=0), B.transpose(0, 2, 1).reshape(j * r, L))
        return X.reshape(j, r, L).transpose(0, 2, 1)
    from ._numba import solve_kernel

    out = np.empty(B.shape, dtype=np.result_type(M.dtype, B.dtype))
    W = np.empty((M.shape[1], M.shape[1] + 1), dtype=out.dtype)
    solve_kernel(np.ascontiguousarray(M, dtype=out.dtype),
                 np.ascontiguousarray(B, dtype=out.dtype), out, W)
    return out


def damped_solver(evaluate: Any) -> Solver:
    """The solver of the damped systems for an evaluator: its ``solve``, else LAPACK's.

    Examples
    --------
    >>> damped_solver(lambda p, idx: None) is solve_batched
    True
    """
    return getattr(evaluate, "solve", None) or solve_batched
