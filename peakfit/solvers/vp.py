"""Variable projection: the separable least-squares algorithm (Golub-Pereyra, Kaufman's Jacobian).

A sum of Gaussians is linear in the heights ``a_i`` and in the coefficients of a polynomial
baseline (and in ``e1`` of the exponential baseline ``e1*exp(-e2*x)``). For fixed nonlinear
coefficients ``θ`` (centres, widths, ``e2``) the best linear coefficients ``α(θ)`` solve a
linear least-squares problem, so the fit only has to search over ``θ``: it minimises the
*projected* sum of squares ``S(θ) = |P⊥(θ) y|²``, ``P⊥ = I - Φ Φ⁺`` (Golub & Pereyra 1973).
Half of the coefficients are gone and the start's heights do not matter. MATLAB's ``fit``
solves ``gaussN`` this way whenever the heights are unbounded (its default).

The outer iteration is the shared loop of :func:`peakfit.solvers.lm.levenberg_marquardt`
(damping, bounds on ``θ``, exit flags, batching); this module only supplies its evaluator,
:class:`SeparableEquations`, built on the same normal-equation evaluator as the full solver
(NumPy fused path, Numba kernel or CuPy), so every backend of the model runs it unchanged.

Evaluation (per row), from the full normal equations at ``p = (s, θ)``
---------------------------------------------------------------------
The full evaluator returns ``S_s``, ``A = JᵀJ`` and ``g = Jᵀ(y - f)`` at the linear values
``s`` (the row's latest ``α``, the linearisation point; 1 where that is 0). With ``L`` the
linear and ``N`` the nonlinear coefficients, ``G = A_LL`` is the Gram matrix of the basis
``Φ``, and, exactly (the model is linear in ``α``):

1. ``d = G⁻¹ g_L``, ``α = s + d`` (the linear least-squares coefficients),
2. ``S(θ) = S_s - dᵀ g_L``,
3. Kaufman's Jacobian ``J_K = P⊥ J_N(α)`` (the Golub-Pereyra term ``(Φ⁺)ᵀ DΦᵀ r`` dropped,
   Kaufman 1975): ``J_KᵀJ_K = R (A_NN - A_NL G⁻¹ A_LN) R`` and ``J_Kᵀ r = R (g_N - A_NL d)``,
   where ``R = diag(α_o / s_o)`` rescales each nonlinear column by its owner ``o`` (the height
   of its term, ``e1`` for ``e2``), since ``J_N`` is proportional to it.

``G`` gets a ridge of ``1e-13 · max diag(G)`` so that a term with a vanishing column (width 0)
leaves the others solvable. After convergence the full evaluator runs once more at
``(α, θ)``: the returned :class:`~peakfit.solvers.lm.LMResult` has the full coefficients and
the full ``JᵀJ``, ``Jᵀr`` (for covariances), as from the full solver.

References: G. H. Golub, V. Pereyra, SIAM J. Numer. Anal. 10 (1973) 413-432; L. Kaufman,
BIT 15 (1975) 49-57; D. P. O'Leary, B. W. Rust, Comput. Optim. Appl. 54 (2013) 579-593.

Examples
--------
>>> import numpy as np
>>> from peakfit.models import GaussianModel
>>> from peakfit.solvers.lm import NormalEquations
>>> m = GaussianModel(2)
>>> x = np.linspace(-3.0, 3.0, 121)
>>> y = m(x, [1.0, -0.6, 0.7, 0.5, 0.8, 0.9])[None, :]
>>> p0 = np.array([[0.0, -1.0, 1.0, 0.0, 1.0, 1.0]])  # heights are ignored
>>> res = variable_projection(NormalEquations(m, x, y), m, p0, m.default_lower(),
...                           m.default_upper(), tol_fun=1e-12, tol_x=1e-12)
>>> np.round(res.p, 8).tolist()
[[1.0, -0.6, 0.7, 0.5, 0.8, 0.9]]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._xp import get_xp
from .linalg import damped_solver
from .lm import Evaluator, LMResult, _held, levenberg_marquardt

__all__ = ["SeparableEquations", "linear_structure", "separable", "variable_projection"]

#: Ridge added to the Gram matrix of the linear basis, relative to its largest diagonal entry.
_RIDGE = 1e-13


def linear_structure(model: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which coefficients of ``model`` enter linearly, and who owns each nonlinear one.

    Returns
    -------
    lin : ndarray of int (L,)
        Positions of the linear coefficients (heights, polynomial baseline, ``e1``).
    nonlin : ndarray of int (N,)
        Positions of the nonlinear coefficients (centres, widths, ``e2``).
    owner : ndarray of int (N,)
        For each nonlinear coefficient, the index *into* ``lin`` of the linear coefficient its
        Jacobian column is proportional to.

    Examples
    --------
    >>> from peakfit.models import GaussianModel
    >>> [v.tolist() for v in linear_structure(GaussianModel(2, "exponential"))]
    [[0, 3, 6], [1, 2, 4, 5, 7], [0, 0, 1, 1, 2]]
    """
    n = int(model.n)
    lin = [3 * i for i in range(n)]
    nonlin = [j for i in range(n) for j in (3 * i + 1, 3 * i + 2)]
    owner = [i for i in range(n) for _ in (0, 1)]
    nb = len(model.baseline_names)
    if model.baseline == "exponential":  # e1 * exp(-e2 x): e1 linear, e2 owned by e1
        lin.append(3 * n)
        nonlin.append(3 * n + 1)
        owner.append(n)
    else:
        lin.extend(range(3 * n, 3 * n + nb))
    return np.array(lin), np.array(nonlin, dtype=np.int64), np.array(owner, dtype=np.int64)


def separable(model: Any, lower: Any, upper: Any) -> bool:
    """True when every linear coefficient is unbounded (in every row), so VP applies.

    Examples
    --------
    >>> from peakfit.models import GaussianModel
    >>> m = GaussianModel(1)
    >>> separable(m, m.default_lower(), m.default_upper())
    True
    >>> separable(m, [0.0, -np.inf, 0.0], m.default_upper())
    False
    """
    lin = linear_structure(model)[0]
    lo = np.asarray(lower.get() if hasattr(lower, "get") else lower, dtype=float)
    hi = np.asarray(upper.get() if hasattr(upper, "get") else upper, dtype=float)
    return bool(np.all(np.isneginf(lo[..., lin])) and np.all(np.isposinf(hi[..., lin])))


class SeparableEquations:
    """Evaluator ``(S, J_KᵀJ_K, J_Kᵀr)`` of the projected problem in the nonlinear coefficients.

    Parameters
    ----------
    full : callable
        The full problem's evaluator ``full(p, idx) -> (S, JᵀJ, Jᵀr)``
        (:class:`~peakfit.solvers.lm.NormalEquations` or the GPU kernels).
    model : GaussianModel
    s0 : array (k, P)
        Rows of full coefficients whose linear entries are the first linearisation points.

    Notes
    -----
    ``alpha`` (k, L) holds, for every row, the linear coefficients of its latest evaluation
    (trial points included); :func:`variable_projection` re-evaluates at the solution.
    """

    def __init__(self, full: Evaluator, model: Any, s0: Any) -> None:
        self.full = full
        #: the full problem's solver of the damped systems (:func:`.linalg.damped_solver`)
        self.solve = damped_solver(full)
        xp = get_xp(s0)
        lin, nonlin, owner = linear_structure(model)
        self.P = int(model.n_params)
        self.lin = xp.asarray(lin)
        self.nonlin = xp.asarray(nonlin)
        self.owner = xp.asarray(owner)
        self.alpha = s0[:, self.lin].copy()

    def full_params(self, theta: Any, alpha: Any) -> Any:
        """Full coefficient rows from nonlinear ``theta`` (j, N) and linear ``alpha`` (j, L)."""
        xp = get_xp(theta)
        p = xp.empty((theta.shape[0], self.P), dtype=theta.dtype)
        p[:, self.nonlin] = theta
        p[:, self.lin] = alpha.astype(theta.dtype, copy=False)
        return p

    def __call__(self, theta: Any, idx: Any) -> tuple[Any, Any, Any]:
        xp = get_xp(theta)
        lin, nl = self.lin, self.nonlin
        a_prev = self.alpha[idx]
        tiny = 1e-8 * xp.maximum(xp.abs(a_prev).max(axis=1, keepdims=True), 1e-300)
        s = xp.where(xp.abs(a_prev) > tiny, a_prev, 1.0)
        sse_s, A, g = self.full(self.full_params(theta, s), idx)
        G = A[:, lin][:, :, lin]
        H = A[:, nl][:, :, lin]  # A_NL (j, N, L)
        gl = g[:, lin]
        L = G.shape[1]
        eye = xp.eye(L, dtype=G.dtype)
        ridge = _RIDGE * xp.max(xp.diagonal(G, axis1=1, axis2=2), axis=1)
        Gr = G + ridge[:, None, None] * eye
        # one batched solve for d = G⁻¹ g_L and G⁻¹ A_LN
        rhs = xp.concatenate([gl[:, :, None], H.transpose(0, 2, 1)], axis=2)
        sol = self.solve(Gr, rhs)
        d = sol[:, :, 0]
        GiH = sol[:, :, 1:]
        alpha = s + d
        sse = sse_s.astype(xp.float64) - (d * gl).sum(axis=1).astype(xp.float64)
        sse = xp.maximum(sse, 0.0)
        Ap = A[:, nl][:, :, nl] - H @ GiH
        gp = g[:, nl] - (H @ d[:, :, None])[:, :, 0]
        o = self.owner
        rho = alpha[:, o] / s[:, o]
        Ap = rho[:, :, None] * Ap * rho[:, None, :]
        gp = rho * gp
        self.alpha[idx] = alpha
        return sse, Ap, gp


def variable_projection(
    evaluate: Evaluator, model: Any, p0: Any, lower: Any, upper: Any, **kwargs: Any
) -> LMResult:
    """Minimise a batch of separable Gaussian least-squares problems by variable projection.

    Parameters
    ----------
    evaluate : callable
        The full problem's evaluator ``evaluate(p, idx) -> (S, JᵀJ, Jᵀr)``.
    model : GaussianModel
    p0 : array (k, P)
        Start points (full coefficient order); only the nonlinear entries matter, the linear
        ones are re-fitted at every evaluation.
    lower, upper : array (P,) or (k, P)
        Bounds; those of the linear coefficients must be infinite (see :func:`separable`).
    **kwargs
        Passed to :func:`~peakfit.solvers.lm.levenberg_marquardt` (tolerances, ``max_iter``,
        ``algorithm``, ``lam0``, ``callback``, ``check_every``).

    Returns
    -------
    LMResult
        Full coefficients ``p``; ``sse``, ``A``, ``g``, ``held`` and ``firstorderopt`` of the
        full problem at ``p``; ``iterations``, ``nfev``, ``exitflag`` and ``lam`` of the
        projected iteration (``nfev`` counts the final full evaluation).
    """
    xp = get_xp(p0)
    k, P = p0.shape
    dt = p0.dtype
    lo = xp.broadcast_to(xp.asarray(lower, dtype=dt), (k, P))
    hi = xp.broadcast_to(xp.asarray(upper, dtype=dt), (k, P))
    if not separable(model, lo, hi):
        raise ValueError("variable projection needs unbounded linear coefficients (heights)")
    p0 = xp.minimum(xp.maximum(p0, lo), hi)
    sep = SeparableEquations(evaluate, model, p0)
    nl = sep.nonlin
    res = levenberg_marquardt(sep, p0[:, nl], lo[:, nl], hi[:, nl], **kwargs)
    all_idx = xp.arange(k)
    sep(res.p, all_idx)  # the linear coefficients at the solution
    p = sep.full_params(res.p, sep.alpha)
    sse, A, g = evaluate(p, all_idx)
    held = xp.zeros((k, P), dtype=bool)
    held[:, nl] = _held(res.p, res.g, lo[:, nl], hi[:, nl])
    fo = xp.max(xp.abs(xp.where(held, 0.0, g)), axis=1) if P else xp.zeros(k)
    return LMResult(
        p=p, sse=sse.astype(xp.float64, copy=False), A=A.astype(dt, copy=False),
        g=g.astype(dt, copy=False), held=held, iterations=res.iterations,
        nfev=res.nfev + 1, exitflag=res.exitflag, firstorderopt=fo, lam=res.lam,
    )
