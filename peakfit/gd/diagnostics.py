"""Diagnostics: curvature and the stable learning rate, lr sweeps and range tests,
gradient noise scale and batch size, per-example gradient moments, weight decay,
float16 and loss scaling, sparse updates.

The learning-rate limit used throughout is the one of the loss *actually
differentiated*: gradient descent on a quadratic converges iff ``0 < lr·λ_i < 2`` for
every Hessian eigenvalue (``< 2 + 2β`` with heavy-ball momentum ``β``), so the largest
stable learning rate is ``2 / λmax``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .optim import SGD, Adam, AdamW, GradScaler, Optimizer, sgd_stability_factor
from .problems import EmbeddingRegression, LeastSquaresProblem, LinearRegression, to_numpy
from .train import NonFiniteError, train

__all__ = [
    "BatchSizeStudy",
    "LRSweep",
    "NoiseScale",
    "PrecisionStudy",
    "RangeTest",
    "SparseStudy",
    "WeightDecayComparison",
    "batch_size_study",
    "compare_weight_decay",
    "fit_critical_batch",
    "gradient_second_moment",
    "gradient_second_moment_bruteforce",
    "gradient_variance",
    "hessian_eigenvalues",
    "lambda_max",
    "linear_scaling_lr",
    "lr_range_test",
    "lr_sweep",
    "noise_scale",
    "noise_scale_two_batch",
    "per_example_grad_norms",
    "precision_study",
    "sparse_update_study",
    "stability_limit",
]


# ============================================================================ curvature
def hessian_eigenvalues(problem: LeastSquaresProblem, w: Any = None) -> np.ndarray:
    """All eigenvalues (ascending) of the exact Hessian of the full-data loss at ``w``.

    Examples
    --------
    >>> import numpy as np
    >>> from peakfit.gd import LinearRegression
    >>> hessian_eigenvalues(LinearRegression(np.diag([1.0, 2.0]), np.zeros(2))).tolist()
    [0.5, 2.0]
    """
    xp = problem.xp
    H = problem.hessian(w).astype(xp.float64)
    return to_numpy(xp.linalg.eigvalsh(H))


def lambda_max(
    problem: LeastSquaresProblem,
    w: Any = None,
    *,
    method: str = "auto",
    iters: int = 1000,
    tol: float = 1e-12,
    seed: int = 0,
) -> float:
    """Largest Hessian eigenvalue (the "sharpness") of the loss actually differentiated.

    Parameters
    ----------
    problem : LeastSquaresProblem
        The problem (its ``convention`` decides the factor 2).
    w : array, optional
        Point of evaluation (not needed for linear problems).
    method : {"auto", "exact", "power"}
        ``"exact"``: ``eigvalsh`` of the exact Hessian; ``"power"``: power iteration on
        exact Hessian-vector products (returns the eigenvalue of largest modulus);
        ``"auto"``: exact for linear least squares, power iteration otherwise.
    iters, tol : int, float
        Power-iteration limits (relative change of the Rayleigh quotient).
    seed : int
        Seed of the random start vector.

    Examples
    --------
    >>> import numpy as np
    >>> from peakfit.gd import LinearRegression
    >>> p = LinearRegression(np.diag([1.0, 3.0]), np.zeros(2))
    >>> lambda_max(p), round(lambda_max(p, np.zeros(2), method="power"), 10)
    (4.5, 4.5)
    """
    if method not in ("auto", "exact", "power"):
        raise ValueError(f"method must be 'auto', 'exact' or 'power', got {method!r}")
    if method == "exact" or (method == "auto" and problem.linear):
        return float(hessian_eigenvalues(problem, w)[-1])
    xp = problem.xp
    if w is None:
        if not problem.linear:
            raise ValueError("lambda_max of a non-linear problem needs parameters w")
        w = xp.zeros(problem.dim)
    rng = np.random.default_rng(seed)
    v = xp.asarray(rng.standard_normal(problem.dim))
    v = v / xp.linalg.norm(v)
    op = problem.hvp_operator(w)
    lam = 0.0
    for _ in range(iters):
        hv = op(v).astype(xp.float64)
        new = float(v @ hv)
        nrm = float(xp.linalg.norm(hv))
        if nrm == 0.0:
            return 0.0
        v = hv / nrm
        if abs(new - lam) <= tol * abs(new):
            lam = new
            break
        lam = new
    return lam


def stability_limit(
    problem: LeastSquaresProblem | float,
    w: Any = None,
    *,
    momentum: float = 0.0,
    nesterov: bool = False,
    dampening: float = 0.0,
) -> float:
    """Largest stable learning rate of PyTorch's SGD variant on a quadratic.

    ``2/λmax`` without momentum; heavy ball ``2(1 + β)/λmax``; Nesterov
    ``2(1 + β)/((1 + 2β)λmax)``; dampening ``τ`` divides the heavy-ball limit by
    ``1 - τ`` (see :func:`peakfit.gd.sgd_stability_factor`). ``problem`` may also be
    ``λmax`` itself.

    Examples
    --------
    >>> stability_limit(4.0), stability_limit(4.0, momentum=0.9)
    (0.5, 0.95)
    >>> round(stability_limit(1.0, momentum=0.9, nesterov=True), 4)
    1.3571
    """
    lam = float(problem) if isinstance(problem, (int, float)) else lambda_max(problem, w)
    if lam <= 0:
        raise ValueError(f"λmax must be > 0 for a stability limit, got {lam}")
    return sgd_stability_factor(momentum, nesterov=nesterov, dampening=dampening) / lam


# ============================================================================ lr sweep
@dataclass
class LRSweep:
    """Result of :func:`lr_sweep` (sorted by learning rate).

    Attributes
    ----------
    lrs, final_loss, diverged : ndarray
        Learning rates tried (grid and bisection points), loss after ``steps`` steps
        (``inf``/``nan`` kept), divergence flag.
    initial_loss : float
    edge : float
        Estimated divergence edge ``sqrt(lo * hi)`` of the final bracket.
    bracket : (float, float)
        Largest converging and smallest diverging learning rate.
    lam_max, limit : float
        ``λmax`` and the theoretical edge of the variant (:func:`stability_limit`).
    momentum, dampening : float
    nesterov : bool
        The SGD variant swept.
    """

    lrs: np.ndarray
    final_loss: np.ndarray
    diverged: np.ndarray
    initial_loss: float
    edge: float
    bracket: tuple[float, float]
    lam_max: float
    limit: float
    curves: dict[float, np.ndarray] = field(default_factory=dict)
    momentum: float = 0.0
    nesterov: bool = False
    dampening: float = 0.0

    @property
    def edge_ratio(self) -> float:
        """``edge / limit`` (1 means the sweep found exactly the theoretical limit).

        Its resolution is the bracket's: report :attr:`bracket_ratio` with it.
        """
        return self.edge / self.limit

    @property
    def bracket_ratio(self) -> tuple[float, float]:
        """``bracket / limit``: the edge lies between these two multiples of the limit."""
        return self.bracket[0] / self.limit, self.bracket[1] / self.limit

    def describe(self) -> str:
        """The edge with its bracket, in units of the theoretical limit.

        Examples
        --------
        >>> from peakfit.gd import make_linear
        >>> s = lr_sweep(make_linear(200, 3, seed=0), [0.0] * 3, steps=200)
        >>> s.describe().startswith("edge in [")
        True
        """
        lo, hi = self.bracket_ratio
        return (
            f"edge in [{lo:.4f}, {hi:.4f}] × limit (converges at {lo:.4f}, diverges at "
            f"{hi:.4f}; limit = {self.limit:.6g})"
        )


def _gd_run(
    problem: Any,
    w0: Any,
    lr: float,
    steps: int,
    momentum: float,
    batch_size: int | None,
    seed: int,
    nesterov: bool = False,
    dampening: float = 0.0,
) -> tuple[float, bool, np.ndarray]:
    """Run SGD (any momentum variant); return final loss, diverged flag and the loss curve."""
    n = problem.n
    bs = n if batch_size is None else batch_size
    spe = math.ceil(n / bs)
    try:
        h = train(
            problem,
            w0,
            SGD(lr=lr, momentum=momentum, nesterov=nesterov, dampening=dampening),
            epochs=math.ceil(steps / spe),
            batch_size=bs,
            shuffle=batch_size is not None,
            seed=seed,
            eval_full=False,
            max_steps=steps,
        )
    except NonFiniteError:
        return math.inf, True, np.array([math.inf])
    with np.errstate(over="ignore", invalid="ignore"):
        final = problem.loss(h.params)
    initial = problem.loss(w0)
    curve = np.append(h.loss, final)
    best = float(np.nanmin(curve)) if np.isfinite(curve).any() else math.inf
    diverged = (not math.isfinite(final)) or final > initial or final > 10.0 * max(best, 1e-300)
    return final, diverged, curve


def lr_sweep(
    problem: LeastSquaresProblem,
    w0: Any,
    lrs: Sequence[float] | None = None,
    *,
    steps: int = 300,
    momentum: float = 0.0,
    nesterov: bool = False,
    dampening: float = 0.0,
    batch_size: int | None = None,
    refine: bool = True,
    rtol: float = 0.005,
    seed: int = 0,
    lam_max: float | None = None,
    keep_curves: bool = False,
) -> LRSweep:
    """Train at each learning rate and locate the divergence edge.

    Each run is ``steps`` steps of (full-batch by default) gradient descent from ``w0``;
    a run *diverges* if it hits Inf/NaN or ends above its initial loss (or 10x above
    its best loss). With ``refine`` the bracket [largest converging lr, smallest
    diverging lr] is bisected (geometrically) until ``hi/lo - 1 < rtol``.

    Parameters
    ----------
    problem : LeastSquaresProblem
    w0 : array
        Start point of every run.
    lrs : sequence of float, optional
        Grid; default ``(2/λmax) * geomspace(0.1, 3, 25)``.
    steps : int
        Steps per run.
    momentum, nesterov, dampening
        The SGD variant (PyTorch's parameters); the theoretical limit is
        :func:`stability_limit` of that variant: ``2(1+β)/λmax`` heavy ball,
        ``2(1+β)/((1+2β)λmax)`` Nesterov, divided by ``1 - τ`` with dampening.
    batch_size : int, optional
        Minibatch size (default: full batch, deterministic).
    refine : bool
        Bisect the bracket.
    rtol : float
        Relative width of the final bracket.
    seed : int
        Shuffling seed for minibatch runs.
    lam_max : float, optional
        Precomputed ``λmax``.
    keep_curves : bool
        Store each run's loss curve in ``curves``.

    Examples
    --------
    >>> from peakfit.gd import make_linear
    >>> p = make_linear(200, 3, seed=0)
    >>> s = lr_sweep(p, [0.0, 0.0, 0.0], steps=200)
    >>> abs(s.edge_ratio - 1) < 0.02
    True
    """
    lam = lambda_max(problem) if lam_max is None else float(lam_max)
    limit = stability_limit(lam, momentum=momentum, nesterov=nesterov, dampening=dampening)
    if lrs is None:
        lrs = limit * np.geomspace(0.1, 3.0, 25)
    lrs = [float(x) for x in lrs]
    if any(not x > 0 for x in lrs):
        raise ValueError("every learning rate in lrs must be > 0")
    results: dict[float, tuple[float, bool]] = {}
    curves: dict[float, np.ndarray] = {}

    def run(lr: float) -> bool:
        final, div, curve = _gd_run(
            problem, w0, lr, steps, momentum, batch_size, seed, nesterov, dampening
        )
        results[lr] = (final, div)
        if keep_curves:
            curves[lr] = curve
        return div

    for lr in sorted(lrs):
        run(lr)
    ok = [lr for lr, (_, d) in results.items() if not d]
    bad = [lr for lr, (_, d) in results.items() if d]
    lo = max(ok) if ok else math.nan
    hi = min([b for b in bad if not ok or b > lo], default=math.nan)
    if refine and math.isfinite(lo) and math.isfinite(hi):
        while hi / lo - 1 > rtol:
            mid = math.sqrt(lo * hi)
            if run(mid):
                hi = mid
            else:
                lo = mid
    order = sorted(results)
    edge = math.sqrt(lo * hi) if math.isfinite(lo) and math.isfinite(hi) else math.nan
    return LRSweep(
        lrs=np.array(order),
        final_loss=np.array([results[x][0] for x in order]),
        diverged=np.array([results[x][1] for x in order]),
        initial_loss=problem.loss(w0),
        edge=edge,
        bracket=(lo, hi),
        lam_max=lam,
        limit=limit,
        curves=curves,
        momentum=float(momentum),
        nesterov=bool(nesterov),
        dampening=float(dampening),
    )


# ============================================================================ range test
@dataclass
class RangeTest:
    """Result of :func:`lr_range_test`.

    Attributes
    ----------
    lrs, losses, smooth_losses : ndarray
        Learning rate of each step, raw batch loss, debiased smoothed loss.
    diverge_lr : float or None
        Learning rate at which the smoothed loss exceeded 4x its best (fastai's
        ``stop_div``), or at which it became non-finite.
    min_loss_lr : float
        Learning rate at the smallest smoothed loss.
    suggestions : dict
        fastai's ``valley``, ``steep`` and ``minimum`` suggestions.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smooth_losses: np.ndarray
    diverge_lr: float | None
    min_loss_lr: float
    suggestions: dict[str, float | None]


def _valley(lrs: np.ndarray, losses: np.ndarray) -> float | None:
    """fastai ``valley``: lr in the longest decreasing run, 1/3 + 1/6 of the way in."""
    n = len(losses)
    if n < 2:
        return None
    lds = [1] * n
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lrs[idx])


def lr_range_test(
    problem: Any,
    w0: Any,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_it: int = 100,
    batch_size: int | None = None,
    beta: float = 0.98,
    stop_div: bool = True,
    seed: int = 0,
    optimizer: Callable[[float], Optimizer] | None = None,
) -> RangeTest:
    """Learning-rate range test (Smith 2015; fastai ``lr_find``).

    One run in which the learning rate grows exponentially,
    ``lr_i = start_lr * (end_lr/start_lr)**(i/num_it)``; the loss is smoothed with
    ``beta`` (debiased EMA, fastai's ``AvgSmoothLoss``) and the run stops when the
    smoothed loss exceeds 4x the best one. Suggestions follow fastai on
    ``lrs[num_it//10:-5]``: ``valley`` (longest decreasing stretch), ``steep``
    (steepest descent in log lr) and ``minimum`` (lr at the minimum / 10).

    For gradient descent on least squares the loss cannot rise while
    ``lr < 2/λmax``, so ``diverge_lr`` lies above ``2/λmax`` (the overshoot depends on
    how fast the lr grows).

    Parameters
    ----------
    problem : LeastSquaresProblem
    w0 : array
        Start (not modified).
    start_lr, end_lr : float
        fastai defaults ``1e-7`` and ``10``.
    num_it : int
        Number of steps (fastai default 100, at least 6).
    batch_size : int, optional
        Minibatch size; default full batch.
    beta : float
        Smoothing, fastai default 0.98.
    stop_div : bool
        Stop at 4x the best smoothed loss.
    seed : int
        Shuffling seed.
    optimizer : callable, optional
        ``optimizer(lr) -> Optimizer``; default ``SGD``.

    Examples
    --------
    >>> from peakfit.gd import make_linear, lambda_max
    >>> p = make_linear(300, 3, seed=0)
    >>> r = lr_range_test(p, [0.0] * 3, start_lr=1e-4, end_lr=10, num_it=200)
    >>> bool(r.diverge_lr > 2 / lambda_max(p))
    True
    """
    if not (0 < start_lr < end_lr):
        raise ValueError(f"need 0 < start_lr < end_lr, got {start_lr} and {end_lr}")
    if num_it < 6:
        raise ValueError(f"num_it must be >= 6, got {num_it}")
    opt = (optimizer or (lambda lr: SGD(lr=lr)))(start_lr)
    xp = problem.xp
    w = xp.array(w0, dtype=xp.float64, copy=True)
    n = problem.n
    bs = n if batch_size is None else min(int(batch_size), n)
    rng = np.random.default_rng(seed)
    queue: list[np.ndarray] = []
    lrs, losses, smooth = [], [], []
    avg, best = 0.0, math.inf
    diverge_lr = None
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(num_it):
            lr = start_lr * (end_lr / start_lr) ** (i / num_it)
            opt.lr = lr
            if not queue:
                order = rng.permutation(n) if batch_size is not None else np.arange(n)
                queue = [order[k : k + bs] for k in range(0, n, bs)]
            idx = queue.pop(0)
            loss, g = problem.loss_and_grad(w, None if bs == n else idx)
            avg = beta * avg + (1 - beta) * loss
            sm = avg / (1 - beta ** (i + 1))
            lrs.append(lr)
            losses.append(loss)
            smooth.append(sm)
            if sm < best:
                best = sm
            if not math.isfinite(sm) or (stop_div and sm > 4 * best):
                diverge_lr = lr
                break
            opt.step(w, g)
    lrs_a, loss_a, sm_a = np.array(lrs), np.array(losses), np.array(smooth)
    finite = np.isfinite(sm_a)
    min_lr = float(lrs_a[finite][np.argmin(sm_a[finite])]) if finite.any() else math.nan
    sl = slice(num_it // 10, -5)
    s_lrs, s_loss = lrs_a[sl], sm_a[sl]
    nan = np.flatnonzero(~np.isfinite(s_loss))
    if len(nan):
        s_lrs, s_loss = s_lrs[: nan[0]], s_loss[: nan[0]]
    sugg: dict[str, float | None] = {"valley": None, "steep": None, "minimum": None}
    if len(s_loss) >= 2:
        sugg["valley"] = _valley(s_lrs, s_loss)
        slope = np.diff(s_loss) / np.diff(np.log(s_lrs))
        sugg["steep"] = float(s_lrs[int(np.argmin(slope))])
        sugg["minimum"] = float(s_lrs[int(np.argmin(s_loss))] / 10)
    return RangeTest(lrs_a, loss_a, sm_a, diverge_lr, min_lr, sugg)


# ============================================================================ per-example
def per_example_grad_norms(problem: LeastSquaresProblem, w: Any, idx: Any = None) -> np.ndarray:
    """``|g_i| = 2c |r_i| |J_i|`` for each example, without forming the gradients.

    Examples
    --------
    >>> import numpy as np
    >>> from peakfit.gd import LinearRegression
    >>> p = LinearRegression(np.array([[3.0, 4.0]]), np.array([1.0]))
    >>> per_example_grad_norms(p, np.zeros(2)).tolist()
    [5.0]
    """
    xp = problem.xp
    r = problem.residuals(w, idx)
    J = problem.jacobian(w, idx)
    return to_numpy((2 * problem._c) * xp.abs(r) * xp.sqrt(xp.sum(J * J, axis=1)))


def gradient_second_moment(problem: LeastSquaresProblem, w: Any, idx: Any = None) -> Any:
    """Elementwise mean of squared per-example gradients, in one O(N·d) pass.

    ``(1/m) Σ_i g_i ⊙ g_i = (2c)² (r ⊙ r)ᵀ (J ⊙ J) / m`` because ``g_i = 2c r_i J_i``:
    one matrix-vector product, no per-example gradient tensor (the trick of
    Goodfellow 2015 and of CABS' ``gradient_moment``).

    Examples
    --------
    >>> import numpy as np
    >>> from peakfit.gd import LinearRegression
    >>> p = LinearRegression(np.array([[1.0, 2.0], [3.0, 0.0]]), np.zeros(2))
    >>> gradient_second_moment(p, np.ones(2)).tolist()   # g = [3,6] and [9,0]
    [45.0, 18.0]
    """
    r = problem.residuals(w, idx)
    J = problem.jacobian(w, idx)
    m = r.shape[0]
    return ((2 * problem._c) ** 2 / m) * ((r * r) @ (J * J))


def gradient_second_moment_bruteforce(problem: LeastSquaresProblem, w: Any, idx: Any = None) -> Any:
    """Reference: loop over examples, compute each gradient with ``problem.grad``, square, average.

    Examples
    --------
    >>> import numpy as np
    >>> from peakfit.gd import LinearRegression
    >>> p = LinearRegression(np.array([[1.0, 2.0], [3.0, 0.0]]), np.zeros(2))
    >>> gradient_second_moment_bruteforce(p, np.ones(2)).tolist()
    [45.0, 18.0]
    """
    rows = range(problem.n) if idx is None else [int(i) for i in to_numpy(idx)]
    acc = problem.xp.zeros(problem.dim, dtype=problem.xp.float64)
    m = 0
    for i in rows:
        g = problem.grad(w, [i])
        acc += g * g
        m += 1
    return acc / m


def gradient_variance(
    problem: LeastSquaresProblem, w: Any, idx: Any = None, *, unbiased: bool = False
) -> Any:
    """Per-coordinate variance of per-example gradients, ``E[g²] - E[g]²`` (O(N·d)).

    Examples
    --------
    >>> import numpy as np
    >>> from peakfit.gd import LinearRegression
    >>> p = LinearRegression(np.array([[1.0], [3.0]]), np.zeros(2))
    >>> gradient_variance(p, np.ones(1)).tolist()   # g = 1 and 9
    [16.0]
    """
    m2 = gradient_second_moment(problem, w, idx)
    g = problem.grad(w, idx)
    var = m2 - g * g
    if unbiased:
        m = problem.n if idx is None else len(idx)
        var = var * (m / (m - 1))
    return var


# ============================================================================ noise scale
@dataclass
class NoiseScale:
    """Gradient noise scale ``B_simple = tr(Σ) / |G|²`` (McCandlish et al. 2018).

    ``g2`` is ``|G|²`` (squared true gradient), ``trace_sigma`` the trace of the
    per-example gradient covariance, ``b_simple`` their ratio; ``b_noise`` is the
    Hessian-weighted ``tr(HΣ)/(GᵀHG)`` (exact values only), which McCandlish et al.
    relate to the critical batch size; the two coincide when ``H ∝ I``. Estimates from
    :func:`noise_scale_two_batch` also carry standard errors and the draw count.
    """

    g2: float
    trace_sigma: float
    b_simple: float
    g2_se: float = 0.0
    trace_sigma_se: float = 0.0
    draws: int = 0
    cov: float = 0.0
    b_noise: float = math.nan

    @property
    def b_simple_se(self) -> float:
        """Standard error of ``b_simple`` (delta method on the ratio; 0 for exact values).

        ``SE² = B² ((se_tr/tr)² + (se_G/|G|²)² - 2 cov/(tr |G|²))`` with ``cov`` the
        covariance of the two means (they come from the same draws).
        """
        if self.draws == 0:
            return 0.0
        if not (self.g2 > 0 and self.trace_sigma != 0):
            return math.inf
        rel2 = (
            (self.trace_sigma_se / self.trace_sigma) ** 2
            + (self.g2_se / self.g2) ** 2
            - 2 * self.cov / (self.trace_sigma * self.g2)
        )
        return abs(self.b_simple) * math.sqrt(max(rel2, 0.0))

    @property
    def relative_se(self) -> float:
        """``b_simple_se / b_simple`` (inf when ``|G|²`` is not positive)."""
        if self.draws == 0:
            return 0.0
        return self.b_simple_se / abs(self.b_simple) if self.b_simple else math.inf


def noise_scale(problem: LeastSquaresProblem, w: Any) -> NoiseScale:
    """Exact simple noise scale at ``w`` from all per-example gradients (O(N·d)).

    ``tr(Σ) = mean_i |g_i|² - |G|²`` (population covariance: what a batch drawn with
    replacement sees), ``B_simple = tr(Σ)/|G|²``.

    Examples
    --------
    >>> import numpy as np
    >>> from peakfit.gd import LinearRegression
    >>> p = LinearRegression(np.array([[1.0], [3.0]]), np.zeros(2))
    >>> ns = noise_scale(p, np.ones(1))   # g = 1, 9 -> G = 5, tr Σ = 16
    >>> ns.g2, ns.trace_sigma, ns.b_simple
    (25.0, 16.0, 0.64)
    """
    xp = problem.xp
    G = problem.grad(w).astype(xp.float64)
    g2 = float(G @ G)
    tr = float(gradient_second_moment(problem, w).sum()) - g2
    H = problem.hessian(w).astype(xp.float64)
    P = problem.per_example_grads(w).astype(xp.float64)
    ghg = float(G @ H @ G)
    tr_h = float(xp.mean(xp.sum((P @ H) * P, axis=1))) - ghg
    return NoiseScale(
        g2=g2,
        trace_sigma=tr,
        b_simple=tr / g2 if g2 > 0 else math.inf,
        b_noise=tr_h / ghg if ghg > 0 else math.inf,
    )


def noise_scale_two_batch(
    problem: LeastSquaresProblem,
    w: Any,
    b_small: int,
    b_big: int,
    *,
    draws: int = 200,
    replace: bool = True,
    seed: int = 0,
    warn_rse: float | None = 0.25,
) -> NoiseScale:
    """Estimate ``B_simple`` from gradient norms at two batch sizes (McCandlish App. A.1).

    With ``E|G_B|² = |G|² + k(B) tr(Σ)``, ``k(B) = 1/B`` for batches drawn with
    replacement (``(N-B)/((N-1)B)`` without):

    ``|G|² ≈ (k_s|G_big|² - k_b|G_small|²)/(k_s - k_b)``,
    ``tr(Σ) ≈ (|G_small|² - |G_big|²)/(k_s - k_b)``.

    Both are unbiased; they are averaged over ``draws`` independent pairs *separately*
    and the ratio is taken last (the ratio of unbiased estimates is itself biased).
    The result carries standard errors (``b_simple_se``, ``relative_se``); when the
    relative standard error exceeds ``warn_rse`` (default 25 %; ``None`` disables) or
    ``|G|²`` is not 2 SE above zero -- typical near the optimum, where the gradient
    vanishes against the noise -- a :class:`UserWarning` says the estimate is unreliable.

    Examples
    --------
    >>> import numpy as np
    >>> from peakfit.gd import make_linear
    >>> p = make_linear(2000, 4, scales=np.ones(4), noise=1.0, seed=0)
    >>> w = 0.8 * p.solution()
    >>> est, ex = noise_scale_two_batch(p, w, 8, 512, draws=1000), noise_scale(p, w)
    >>> abs(est.b_simple / ex.b_simple - 1) < 0.2
    True
    """
    n = problem.n
    for nm, b in (("b_small", b_small), ("b_big", b_big)):
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise ValueError(f"{nm} must be a positive integer, got {b!r}")
        if not replace and b > n:
            raise ValueError(f"{nm}={b} exceeds N={n} for sampling without replacement")
    if not b_small < b_big:
        raise ValueError(f"need b_small < b_big, got {b_small} and {b_big}")

    def k(b: int) -> float:
        return 1.0 / b if replace else (n - b) / ((n - 1) * b)

    ks, kb = k(b_small), k(b_big)
    rng = np.random.default_rng(seed)
    g2_est, tr_est = np.empty(draws), np.empty(draws)
    xp = problem.xp
    for d in range(draws):
        if replace:
            i_s, i_b = rng.integers(0, n, b_small), rng.integers(0, n, b_big)
        else:
            i_s, i_b = rng.choice(n, b_small, replace=False), rng.choice(n, b_big, replace=False)
        gs = problem.grad(w, i_s).astype(xp.float64)
        gb = problem.grad(w, i_b).astype(xp.float64)
        ns, nb = float(gs @ gs), float(gb @ gb)
        g2_est[d] = (ks * nb - kb * ns) / (ks - kb)
        tr_est[d] = (ns - nb) / (ks - kb)
    g2, tr = float(g2_est.mean()), float(tr_est.mean())
    se = 1.0 / math.sqrt(draws)
    res = NoiseScale(
        g2=g2,
        trace_sigma=tr,
        b_simple=tr / g2 if g2 > 0 else math.inf,
        g2_se=float(g2_est.std(ddof=1) * se) if draws > 1 else math.nan,
        trace_sigma_se=float(tr_est.std(ddof=1) * se) if draws > 1 else math.nan,
        draws=draws,
        cov=float(np.cov(g2_est, tr_est)[0, 1] / draws) if draws > 1 else math.nan,
    )
    rel = res.relative_se
    if warn_rse is not None and not rel <= warn_rse:
        why = (
            f"|G|² = {g2:.3g} ± {res.g2_se:.2g} is not significantly above 0"
            if not g2 > 2 * res.g2_se
            else f"its standard error is {rel:.0%} of the estimate"
        )
        warnings.warn(
            f"two-batch B_simple = {res.b_simple:.4g} ± {res.b_simple_se:.3g} is unreliable: "
            f"{why} ({draws} draws of B = {b_small}, {b_big}). Near the optimum the true "
            "gradient is small against the noise; use more draws or noise_scale() (exact).",
            UserWarning,
            stacklevel=2,
        )
    return res


# ============================================================================ batch size
def linear_scaling_lr(base_lr: float, base_batch: int, batch: int) -> float:
    """Goyal et al. (2017): multiply the lr by ``k`` when the batch grows ``k``-fold.

    Only sound below the critical batch size and below the stability limit ``2/λmax``.

    Examples
    --------
    >>> linear_scaling_lr(0.1, 256, 1024)
    0.4
    """
    if base_lr <= 0 or base_batch < 1 or batch < 1:
        raise ValueError("need base_lr > 0 and positive batch sizes")
    return base_lr * batch / base_batch


def fit_critical_batch(batch_sizes: Sequence[float], steps: Sequence[float]) -> tuple[float, float]:
    """Fit ``S(B) = S_min (1 + B_crit / B)`` (McCandlish eq. 2.11); return ``(S_min, B_crit)``.

    Weighted least squares on ``S = a + b/B`` with relative weights ``1/S``.

    Examples
    --------
    >>> B = [1, 2, 4, 8, 16, 32]
    >>> S = [100 * (1 + 8 / b) for b in B]
    >>> [round(v, 9) for v in fit_critical_batch(B, S)]
    [100.0, 8.0]
    """
    B = np.asarray(batch_sizes, dtype=float)
    S = np.asarray(steps, dtype=float)
    ok = np.isfinite(S) & (S > 0)
    if ok.sum() < 2:
        raise ValueError("need at least two finite step counts to fit S(B)")
    B, S = B[ok], S[ok]
    A = np.stack([np.ones_like(B), 1.0 / B], axis=1) / S[:, None]
    a, b = np.linalg.lstsq(A, np.ones_like(S), rcond=None)[0]
    return float(a), float(b / a)


@dataclass
class BatchSizeStudy:
    """Result of :func:`batch_size_study`.

    Attributes
    ----------
    batch_sizes, steps, examples, best_lr : ndarray
        Per batch size: median steps to target at the best lr of the grid, the
        corresponding examples (``steps * B``) and that lr.
    steps_grid : ndarray
        Median steps for every (batch size, lr) pair (``inf`` = target not reached).
    lrs : ndarray
        The lr grid.
    s_min, b_crit : float
        Fit of ``S = S_min (1 + B_crit/B)``; ``E_min = S_min * B_crit``.
    target_loss : float
    """

    batch_sizes: np.ndarray
    steps: np.ndarray
    examples: np.ndarray
    best_lr: np.ndarray
    steps_grid: np.ndarray
    lrs: np.ndarray
    s_min: float
    b_crit: float
    target_loss: float

    @property
    def e_min(self) -> float:
        """Minimum number of examples, ``S_min * B_crit``."""
        return self.s_min * self.b_crit


def batch_size_study(
    problem: LeastSquaresProblem,
    w0: Any,
    batch_sizes: Sequence[int],
    *,
    target_loss: float,
    lrs: Sequence[float] | None = None,
    max_steps: int = 5000,
    seeds: Sequence[int] = (0, 1, 2),
) -> BatchSizeStudy:
    """Steps and examples needed to reach ``target_loss`` versus batch size (lr tuned per B).

    For each batch size every lr of the grid is run with each seed (SGD, batches
    drawn by per-epoch shuffling); the median step count over seeds is taken and the
    best lr kept, as in McCandlish et al. The steps curve falls like ``1/B`` while
    gradient noise dominates and flattens beyond the critical batch size.

    Parameters
    ----------
    problem : LeastSquaresProblem
    w0 : array
    batch_sizes : sequence of int
    target_loss : float
        Full-data loss to reach.
    lrs : sequence of float, optional
        lr grid; default ``(2/λmax) * [1/64, 1/32, ..., 1/2, 0.9]`` (8 values).
    max_steps : int
        Give up after this many steps (counted as ``inf``).
    seeds : sequence of int
        Shuffling seeds.

    Examples
    --------
    >>> import numpy as np
    >>> from peakfit.gd import make_linear
    >>> p = make_linear(1000, 4, scales=np.ones(4), noise=1.0, seed=0)
    >>> l0, l_star = p.loss(np.zeros(4)), p.loss(p.solution())
    >>> st = batch_size_study(p, np.zeros(4), [2, 256], target_loss=l_star + 0.03 * (l0 - l_star),
    ...                       seeds=(0,), max_steps=2000)
    >>> bool(st.steps[0] > 4 * st.steps[1])
    True
    """
    lim = stability_limit(problem)
    if lrs is None:
        lrs = lim * np.array([1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 0.9])
    lrs = np.asarray(sorted(float(x) for x in lrs))
    bss = np.asarray([int(b) for b in batch_sizes])
    grid = np.full((len(bss), len(lrs)), np.inf)
    for i, b in enumerate(bss):
        for j, lr in enumerate(lrs):
            counts = []
            for s in seeds:
                spe = math.ceil(problem.n / b)
                try:
                    h = train(
                        problem,
                        w0,
                        SGD(lr=float(lr)),
                        epochs=math.ceil(max_steps / spe),
                        batch_size=int(b),
                        seed=int(s),
                        eval_full=False,
                        max_steps=max_steps,
                        target_loss=target_loss,
                    )
                    counts.append(h.steps_to_target if h.steps_to_target is not None else np.inf)
                except NonFiniteError:
                    counts.append(np.inf)
            grid[i, j] = float(np.median(counts))
    best = np.argmin(grid, axis=1)
    steps = grid[np.arange(len(bss)), best]
    s_min, b_crit = fit_critical_batch(bss, steps)
    return BatchSizeStudy(
        batch_sizes=bss,
        steps=steps,
        examples=steps * bss,
        best_lr=lrs[best],
        steps_grid=grid,
        lrs=lrs,
        s_min=s_min,
        b_crit=b_crit,
        target_loss=float(target_loss),
    )


# ============================================================================ weight decay
@dataclass
class WeightDecayComparison:
    """Final parameters of the same run with L2 vs decoupled weight decay.

    ``params`` maps ``"adam_l2"``, ``"adamw"``, ``"sgd_l2"``, ``"sgd_decoupled"`` to
    final parameters; ``ridge`` is the minimiser of ``L + λ/2 |w|²`` for linear
    problems (where every L2 variant must end); ``dist_to_ridge[name]`` the relative
    distance ``|w_t - ridge|/|ridge|`` after each step (linear problems);
    ``adam_effective_decay`` is Adam+L2's per-coordinate ``lr·λ/(sqrt(v̂)+ε)`` at the
    end, versus AdamW's ``lr·λ`` (kept for reference: near convergence ``v̂ -> 0`` and
    this ratio says nothing about where each optimizer ends).
    """

    params: dict[str, np.ndarray]
    ridge: np.ndarray | None
    adam_effective_decay: np.ndarray
    adamw_decay: float
    losses: dict[str, np.ndarray]
    dist_to_ridge: dict[str, np.ndarray] = field(default_factory=dict)


def compare_weight_decay(
    problem: LeastSquaresProblem,
    w0: Any,
    *,
    lr: float = 0.05,
    weight_decay: float = 0.1,
    steps: int = 3000,
    sgd_lr: float | None = None,
) -> WeightDecayComparison:
    """Full-batch Adam+L2 vs AdamW and SGD+L2 vs SGD with decoupled decay.

    Under SGD the two coincide exactly (``w - γ(g + λw) = w(1 - γλ) - γg``); under Adam
    the L2 term goes through the ``1/(sqrt(v̂)+ε)`` preconditioner and the results differ:
    Adam+L2 converges to the ridge solution, AdamW does not.

    Examples
    --------
    >>> import numpy as np
    >>> from peakfit.gd import make_linear
    >>> p = make_linear(200, 3, scales=[0.1, 1.0, 10.0], seed=0)
    >>> c = compare_weight_decay(p, np.zeros(3), steps=500)
    >>> float(np.abs(c.params["sgd_l2"] - c.params["sgd_decoupled"]).max()) < 1e-12
    True
    """
    n = problem.n
    if sgd_lr is None:  # half the stability limit of the L2-regularised Hessian H + λI
        sgd_lr = 1.0 / (lambda_max(problem, None if problem.linear else w0) + weight_decay)
    opts = {
        "adam_l2": Adam(lr=lr, weight_decay=weight_decay),
        "adamw": AdamW(lr=lr, weight_decay=weight_decay),
        "sgd_l2": SGD(lr=sgd_lr, weight_decay=weight_decay),
        "sgd_decoupled": SGD(lr=sgd_lr, weight_decay=weight_decay, decoupled_weight_decay=True),
    }
    ridge = (
        to_numpy(problem.ridge_solution(weight_decay))
        if isinstance(problem, LinearRegression)
        else None
    )
    params, losses, dist = {}, {}, {}
    for name, opt in opts.items():
        track: list[float] = []
        cb = (
            None
            if ridge is None
            else (lambda _s, w, t=track: t.append(float(np.linalg.norm(to_numpy(w) - ridge))))
        )
        h = train(
            problem,
            w0,
            opt,
            epochs=steps,
            batch_size=n,
            shuffle=False,
            eval_full=False,
            callback=cb,
        )
        params[name] = h.params
        losses[name] = h.loss
        if ridge is not None:
            dist[name] = np.array(track) / np.linalg.norm(ridge)
    adam = opts["adam_l2"]
    b2 = adam.betas[1]
    vhat = to_numpy(adam.state["exp_avg_sq"]) / (1 - b2**adam.t)
    eff = lr * weight_decay / (np.sqrt(vhat) + adam.eps)
    return WeightDecayComparison(params, ridge, eff, lr * weight_decay, losses, dist)


# ============================================================================ float16
@dataclass
class PrecisionStudy:
    """float32 vs float16 training, without and with dynamic loss scaling.

    Two regression problems are trained with float32 master weights and residuals
    and gradients computed in the data dtype:

    * *underflow* (targets ~1e-4): ``loss64["fp32"]``, ``["fp16"]``, ``["fp16_scaled"]``
      are the float64 losses of the master weights after each step;
      ``zero_grad_fraction`` is the fraction of the per-example backward factors
      ``r_i / N`` of the first unscaled float16 step that flushed to zero;
    * *overflow* (targets ~1e3, squared residuals > 65504): unscaled float16 trips the
      finite guard (``overflow_error``); ``loss64["overflow_fp32"]`` and
      ``["overflow_fp16_scaled"]`` are the float32 run and the GradScaler run, whose
      first ``overflow_skipped`` steps are skipped while the scale backs off
      (``overflow_scale``).
    """

    loss64: dict[str, np.ndarray]
    scale: np.ndarray
    skipped: np.ndarray
    zero_grad_fraction: float
    overflow_error: str
    overflow_scale: np.ndarray
    overflow_skipped: int
    optimum: float


def precision_study(
    n: int = 2048, d: int = 8, *, steps: int = 60, lr: float = 0.5, seed: int = 0
) -> PrecisionStudy:
    """Train the same regressions in float32 and float16, without and with a GradScaler.

    Underflow: with targets ~1e-4 the backward factor ``r_i / N`` (~1e-8) is below half
    of float16's smallest subnormal (2⁻²⁴ ≈ 6e-8), so unscaled float16 gradients are
    exactly zero and the loss never moves; multiplying the loss by ``2**16`` moves them
    into range and the run tracks float32. Overflow: with targets ~1e3, ``r²`` exceeds
    65504; the guard stops the unscaled run at step 0, and a GradScaler skips steps and
    halves its scale until the scaled gradient fits, then converges.

    Examples
    --------
    >>> st = precision_study(n=1024, steps=30)
    >>> bool(st.loss64["fp16"][-1] > 100 * st.loss64["fp16_scaled"][-1])
    True
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w0 = np.zeros(d, dtype=np.float32)
    loss64: dict[str, np.ndarray] = {}

    def run(p64: LinearRegression, dtype: Any, scaler: GradScaler | None) -> Any:
        trace: list[float] = []
        h = train(
            p64.with_dtype(dtype),
            w0,
            SGD(lr=lr),
            epochs=steps,
            batch_size=n,
            shuffle=False,
            scaler=scaler,
            eval_full=False,
            callback=lambda _s, w: trace.append(p64.loss(w.astype(np.float64))),
        )
        return np.array([p64.loss(w0.astype(np.float64)), *trace]), h

    small = LinearRegression(X, X @ (3e-5 * rng.standard_normal(d)) + 1e-7 * rng.standard_normal(n))
    loss64["fp32"], _ = run(small, np.float32, None)
    loss64["fp16"], _ = run(small, np.float16, None)
    loss64["fp16_scaled"], hs = run(small, np.float16, GradScaler())
    r16 = small.with_dtype(np.float16).residuals(w0)
    back = r16 * np.float16(1.0 / n)  # per-example backward factors 2c r_i / N
    zero_frac = float(np.mean((back == 0) & (r16 != 0)))

    big = LinearRegression(X, X @ (300.0 * rng.standard_normal(d)) + rng.standard_normal(n))
    try:
        train(big.with_dtype(np.float16), w0, SGD(lr=lr), epochs=1, batch_size=n)
        msg = ""
    except NonFiniteError as err:
        msg = str(err)
    loss64["overflow_fp32"], _ = run(big, np.float32, None)
    loss64["overflow_fp16_scaled"], hb = run(big, np.float16, GradScaler())
    return PrecisionStudy(
        loss64=loss64,
        scale=hs.loss_scale,
        skipped=hs.skipped,
        zero_grad_fraction=zero_frac,
        overflow_error=msg,
        overflow_scale=hb.loss_scale,
        overflow_skipped=int(hb.skipped.sum()),
        optimum=small.loss(small.solution()),
    )


# ============================================================================ sparse
@dataclass
class SparseStudy:
    """Rows seen vs rows changed per step, dense vs lazy updates of an embedding table.

    ``rows_seen[k]`` is the number of distinct rows in batch ``k``;
    ``rows_changed[name][k]`` the number of table rows whose value changed in that
    step; ``rare_row`` a row seen exactly once (at step ``rare_step``) and
    ``rare_trajectory[name]`` its first coordinate after every step.
    """

    rows_seen: np.ndarray
    rows_changed: dict[str, np.ndarray]
    rare_row: int
    rare_step: int
    rare_trajectory: dict[str, np.ndarray]
    num_rows: int


def sparse_update_study(
    problem: EmbeddingRegression,
    *,
    steps: int = 60,
    batch_size: int = 32,
    lr: float = 0.1,
    momentum: float = 0.9,
    seed: int = 0,
) -> SparseStudy:
    """Show that momentum/Adam make sparse gradients dense, and lazy updates do not.

    Four optimizers see the same batches and sparse gradients ``(rows, values)``:
    ``"sgd"`` (no momentum, touches only seen rows), ``"momentum"`` (PyTorch: the
    dense buffer keeps moving every row ever seen), ``"momentum_lazy"`` (TensorFlow's
    ``SparseApplyMomentum``), ``"adam"`` (dense Adam) and ``"adam_lazy"``
    (``torch.optim.SparseAdam``).

    Examples
    --------
    >>> from peakfit.gd import make_embedding
    >>> st = sparse_update_study(make_embedding(500, 100, 2), steps=10)
    >>> bool(st.rows_changed["momentum"][-1] > st.rows_seen[-1])
    True
    >>> bool((st.rows_changed["momentum_lazy"] <= st.rows_seen).all())
    True
    """
    rng = np.random.default_rng(seed)
    batches = [rng.choice(problem.n, batch_size, replace=False) for _ in range(steps)]
    opts: dict[str, Optimizer] = {
        "sgd": SGD(lr=lr),
        "momentum": SGD(lr=lr, momentum=momentum),
        "momentum_lazy": SGD(lr=lr, momentum=momentum, lazy=True),
        "adam": Adam(lr=lr * 0.1),
        "adam_lazy": Adam(lr=lr * 0.1, lazy=True),
    }
    ids = to_numpy(problem.ids)
    seen_count = np.zeros(problem.num_rows, dtype=int)
    first_step = np.full(problem.num_rows, -1)
    for k, b in enumerate(batches):
        u = np.unique(ids[b])
        seen_count[u] += 1
        first_step[u] = np.where(first_step[u] < 0, k, first_step[u])
    once = np.flatnonzero((seen_count == 1) & (first_step < steps // 3))
    rare = int(once[0]) if len(once) else int(np.argmax(first_step))
    rare_step = int(first_step[rare])
    rows_seen = np.array([len(np.unique(ids[b])) for b in batches])
    changed: dict[str, np.ndarray] = {}
    traj: dict[str, np.ndarray] = {}
    xp = problem.xp
    for name, opt in opts.items():
        E = xp.zeros(problem.shape)
        ch, tr = [], []
        for b in batches:
            rows, vals = problem.sparse_grad(E, b)
            before = E.copy()
            opt.step(E, vals, rows=rows)
            ch.append(int(to_numpy((E != before).any(axis=1)).sum()))
            tr.append(float(E[rare, 0]))
        changed[name] = np.array(ch)
        traj[name] = np.array(tr)
    return SparseStudy(rows_seen, changed, rare, rare_step, traj, problem.num_rows)
