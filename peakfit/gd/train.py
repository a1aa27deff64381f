"""Minibatch training loop with Keras epoch/batch semantics, history and a finite guard.

Epochs and batches (Keras ``Model.fit`` on arrays):

* an *epoch* is one pass over all ``N`` examples; a *step* is one optimizer update on
  one batch;
* ``steps_per_epoch = ceil(N / B)``; the last batch keeps the ``N mod B`` leftover
  examples (``drop_last=False``, Keras' behaviour) or is dropped (``drop_last=True``,
  then ``floor(N / B)`` steps);
* ``batch_size=None`` means 32 (Keras' default); ``batch_size > N`` is *clamped* to
  ``N`` -- one full batch per epoch, as Keras does -- with a :class:`UserWarning`;
  ``batch_size < 1`` raises :class:`ValueError`;
* ``shuffle=True`` draws a new permutation every epoch; ``shuffle="batch"`` shuffles the
  order of contiguous batch-sized chunks.

The *finite guard* (``guard=True``) checks the batch data, the loss, the gradient and
the parameters every step and raises :class:`NonFiniteError` on the first NaN/Inf,
naming the step, the array and the likely cause -- the "check finite layer" idea of
``tf.debugging.check_numerics`` and Keras' ``TerminateOnNaN(raise_error=True)``. A loss
that is already non-finite before any update is diagnosed term by term
(:func:`peakfit.gd.diagnose_loss`: ``log(0)``, ``0/0``, overflow, with the input rows);
under a :class:`GradScaler` the guard raises when the scale collapses or steps keep
being skipped.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .faults import diagnose_loss
from .optim import SGD, GradScaler, Optimizer, sgd_stability_factor
from .problems import array_module, to_numpy

__all__ = [
    "GradientNoise",
    "History",
    "NonFiniteError",
    "batch_indices",
    "check_finite",
    "resolve_batch_size",
    "steps_per_epoch",
    "train",
]

KERAS_DEFAULT_BATCH_SIZE = 32


class NonFiniteError(RuntimeError):
    """Raised by the finite guard on the first NaN/Inf.

    Attributes
    ----------
    step : int
        0-based index of the optimizer step (``history.loss[step]`` would be its loss).
    epoch : int
        0-based epoch.
    array : str
        ``"data"``, ``"loss"``, ``"gradient"`` or ``"parameters"``.
    cause : str
        The likely cause: lr too high, overflow in a narrow dtype, bad input rows.
    rows : list of int
        Offending example indices when ``array == "data"``.
    """

    def __init__(
        self,
        message: str,
        *,
        step: int,
        epoch: int,
        array: str,
        cause: str,
        rows: list[int] | None = None,
    ) -> None:
        super().__init__(message)
        self.step = step
        self.epoch = epoch
        self.array = array
        self.cause = cause
        self.rows = rows or []


def check_finite(x: Any, name: str = "array", *, step: int | None = None) -> Any:
    """Identity that raises :class:`NonFiniteError` if ``x`` holds NaN or Inf.

    Like ``tf.debugging.check_numerics``: insert it anywhere in a computation.

    Examples
    --------
    >>> import numpy as np
    >>> check_finite(np.ones(2)).tolist()
    [1.0, 1.0]
    >>> check_finite(np.array([1.0, np.nan]), "gradient", step=3)
    Traceback (most recent call last):
    ...
    peakfit.gd.train.NonFiniteError: non-finite gradient at step 3: 1 NaN, 0 Inf (first at index 1)
    """
    xp = array_module(x)
    arr = xp.asarray(x)
    if bool(xp.isfinite(arr).all()):
        return x
    where = f" at step {step}" if step is not None else ""
    raise NonFiniteError(
        f"non-finite {name}{where}: {_describe(arr)}",
        step=-1 if step is None else step,
        epoch=-1,
        array=name,
        cause="",
    )


def _describe(arr: Any) -> str:
    a = to_numpy(arr).ravel()
    n_nan = int(np.isnan(a).sum())
    n_inf = int(np.isinf(a).sum())
    if a.size == 1:
        return f"value {a[0]}"
    first = int(np.flatnonzero(~np.isfinite(a))[0])
    return f"{n_nan} NaN, {n_inf} Inf (first at index {first})"


def resolve_batch_size(batch_size: int | None, n: int, *, warn: bool = True) -> int:
    """Validate ``batch_size`` the Keras way and return the effective batch size.

    ``None`` -> 32; ``batch_size > n`` -> ``n`` (clamped, one batch per epoch, with a
    warning); ``batch_size < 1`` -> :class:`ValueError`; non-integers -> :class:`TypeError`.

    Examples
    --------
    >>> resolve_batch_size(None, 100), resolve_batch_size(10, 100)
    (32, 10)
    >>> resolve_batch_size(500, 100, warn=False)
    100
    """
    if batch_size is None:
        batch_size = KERAS_DEFAULT_BATCH_SIZE
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    if batch_size > n:
        if warn:
            warnings.warn(
                f"batch_size={batch_size} is larger than the number of examples N={n}; "
                f"clamped to {n} (one full batch per epoch, as Keras does)",
                UserWarning,
                stacklevel=3,
            )
        batch_size = n
    return batch_size


def steps_per_epoch(n: int, batch_size: int | None, *, drop_last: bool = False) -> int:
    """Optimizer steps in one epoch: ``ceil(n / B)`` (Keras) or ``floor(n / B)`` with ``drop_last``.

    Examples
    --------
    >>> steps_per_epoch(1000, 32), steps_per_epoch(1000, 32, drop_last=True)
    (32, 31)
    >>> steps_per_epoch(1024, 32)
    32
    """
    b = resolve_batch_size(batch_size, n, warn=False)
    return n // b if drop_last else math.ceil(n / b)


def batch_indices(
    n: int,
    batch_size: int | None,
    *,
    shuffle: bool | str = True,
    rng: np.random.Generator | None = None,
    drop_last: bool = False,
) -> list[np.ndarray]:
    """Index arrays of the batches of one epoch.

    Examples
    --------
    >>> [b.tolist() for b in batch_indices(5, 2, shuffle=False)]
    [[0, 1], [2, 3], [4]]
    >>> [len(b) for b in batch_indices(5, 2, shuffle=False, drop_last=True)]
    [2, 2]
    """
    b = resolve_batch_size(batch_size, n, warn=False)
    if shuffle not in (True, False, "batch"):
        raise ValueError(f"shuffle must be True, False or 'batch', got {shuffle!r}")
    order = np.arange(n)
    if shuffle is True:
        order = (rng or np.random.default_rng()).permutation(n)
    stop = (n // b) * b if drop_last else n
    out = [order[i : min(i + b, stop)] for i in range(0, stop, b)]
    if shuffle == "batch":
        perm = (rng or np.random.default_rng()).permutation(len(out))
        out = [out[i] for i in perm]
    return out


class GradientNoise:
    """Annealed Gaussian gradient noise (Neelakantan et al. 2015, arXiv:1511.06807).

    ``g_t <- g_t + N(0, σ_t²)`` with ``σ_t² = η / (1 + t)^γ``, ``t`` the number of
    updates done so far (0 for the first step, Chainer's ``GradientNoise`` hook). The
    sample uses the standard deviation ``sqrt(σ_t²)`` (not the variance).

    Parameters
    ----------
    eta : float
        ``η``; the paper picks from {0.01, 0.3, 1.0}; default 0.3.
    gamma : float
        ``γ``, default 0.55.
    seed : int
        Seed of the noise generator.

    Examples
    --------
    >>> noise = GradientNoise(eta=1.0)
    >>> noise.variance(0), round(noise.variance(99), 6)
    (1.0, 0.079433)
    """

    def __init__(self, eta: float = 0.3, gamma: float = 0.55, seed: int = 0) -> None:
        if not eta > 0:
            raise ValueError(f"eta must be > 0, got {eta}")
        if not gamma >= 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.eta = float(eta)
        self.gamma = float(gamma)
        self.rng = np.random.default_rng(seed)

    def variance(self, t: int) -> float:
        """``σ_t² = η / (1 + t)^γ``."""
        return self.eta / (1.0 + t) ** self.gamma

    def __call__(self, g: Any, t: int) -> Any:
        """Return ``g`` plus a fresh noise sample for step ``t``."""
        xp = array_module(g)
        z = self.rng.standard_normal(g.shape) * math.sqrt(self.variance(t))
        return g + xp.asarray(z, dtype=g.dtype)


@dataclass
class History:
    """Per-step and per-epoch record of a :func:`train` run (steps are 0-based).

    Attributes
    ----------
    loss, grad_norm, lr, batch_size, epoch, loss_scale, skipped : ndarray
        One entry per step: batch loss (before the update), norm of the unscaled
        batch gradient, learning rate, batch size, epoch, loss scale, and whether a
        loss-scaler skipped the step.
    full_loss : ndarray
        Full-data loss after each step (only with ``record_full_loss=True``).
    epoch_loss : ndarray
        Keras' epoch loss: batch losses averaged with weights = batch sizes.
    epoch_full_loss, epoch_grad_norm : ndarray
        Full-data loss and gradient norm at the end of each epoch (``eval_full=True``).
    epoch_lr : ndarray
        Learning rate at the end of each epoch.
    params : ndarray
        Final parameters (host copy).
    snapshots : list of ndarray
        Parameters at the start and at the end of each epoch (``record_params=True``).
    steps_per_epoch, batch_size_effective : int
        Keras step count and the (possibly clamped) batch size.
    steps_to_target : int or None
        Updates needed to bring the full loss to ``target_loss``.
    stopped : str or None
        Why training stopped early (``"target"``, ``"max_steps"``, ``"callback"``).

    Examples
    --------
    >>> from peakfit.gd import make_linear, train, SGD
    >>> h = train(make_linear(100, 2), [0.0, 0.0], SGD(lr=0.05), epochs=2, batch_size=30)
    >>> h.steps_per_epoch, len(h.loss), h.batch_size.tolist()[:4]
    (4, 8, [30, 30, 30, 10])
    """

    loss: Any = field(default_factory=list)
    grad_norm: Any = field(default_factory=list)
    lr: Any = field(default_factory=list)
    batch_size: Any = field(default_factory=list)
    epoch: Any = field(default_factory=list)
    loss_scale: Any = field(default_factory=list)
    skipped: Any = field(default_factory=list)
    full_loss: Any = field(default_factory=list)
    epoch_loss: Any = field(default_factory=list)
    epoch_full_loss: Any = field(default_factory=list)
    epoch_grad_norm: Any = field(default_factory=list)
    epoch_lr: Any = field(default_factory=list)
    params: Any = None
    snapshots: list[Any] = field(default_factory=list)
    steps_per_epoch: int = 0
    batch_size_effective: int = 0
    steps_to_target: int | None = None
    stopped: str | None = None

    _ARRAYS = (
        "loss grad_norm lr batch_size epoch loss_scale skipped full_loss epoch_loss "
        "epoch_full_loss epoch_grad_norm epoch_lr"
    ).split()

    def _finalize(self) -> History:
        for name in self._ARRAYS:
            val = getattr(self, name)
            dtype = (
                bool
                if name == "skipped"
                else (np.int64 if name in ("batch_size", "epoch") else float)
            )
            setattr(self, name, np.asarray(val, dtype=dtype))
        return self

    @property
    def steps(self) -> int:
        """Number of optimizer steps attempted (skipped ones included)."""
        return len(self.loss)

    @property
    def examples_seen(self) -> np.ndarray:
        """Cumulative number of examples processed after each step."""
        return np.cumsum(np.asarray(self.batch_size))


def _norm(g: Any) -> float:
    xp = array_module(g)
    g64 = g.astype(xp.float64, copy=False)
    return float(xp.sqrt(xp.sum(g64 * g64)))


def _likely_cause(
    *,
    dtype: Any,
    losses: list[float],
    lr: float,
    lam_max: float | None,
    limit: float = 2.0,
    fault: Any = None,
    updated: bool = True,
) -> str:
    """Diagnosis of a non-finite value whose inputs were finite.

    ``limit`` is the optimizer's ``lr·λmax`` limit (:func:`sgd_stability_factor`);
    ``fault`` the first non-finite loss term (:func:`peakfit.gd.diagnose_loss`);
    ``updated`` is False when no update has been applied yet (step 0: the learning
    rate cannot be the cause).
    """
    if updated and lam_max is not None and lr * lam_max > limit:
        return (
            f"lr too high: lr·λmax = {lr * lam_max:.3g} > {limit:.4g}, so gradient descent "
            f"diverges; use lr < {limit / lam_max:.3g}"
        )
    finite = [v for v in losses if math.isfinite(v)]
    if updated and len(finite) >= 3:
        best = min(finite)
        last = finite[-1]
        if last > 1e3 * max(best, 1e-300) and last >= finite[-2]:
            k = len(finite) - int(np.argmin(finite)) - 1
            return (
                f"lr too high (divergence): the loss grew {last / max(best, 1e-300):.3g}x from "
                f"{best:.3g} to {last:.3g} over the last {k} steps (lr = {lr:.3g})"
            )
    dt = np.dtype(dtype)
    if fault is not None:
        if "overflow" in fault.events and dt.itemsize < 8:
            return (
                f"overflow in {dt.name}: a value exceeded its largest finite number "
                f"{float(np.finfo(dt).max):.6g}: {fault.describe()} (use float32/float64, "
                "smaller inputs, or loss scaling)"
            )
        where = "at the start, before any update" if not updated else "at these parameters"
        return (
            f"the loss itself is undefined {where}, not a learning-rate problem: {fault.describe()}"
        )
    if dt.itemsize < 8:
        fi = np.finfo(dt)
        return (
            f"overflow in {dt.name}: a value exceeded its largest finite number "
            f"{float(fi.max):.6g} "
            f"(use float32/float64, smaller inputs, or loss scaling)"
        )
    return (
        f"overflow or invalid arithmetic in {dt.name} (inf - inf, 0 * inf) with lr = {lr:.3g}; "
        "check the learning rate and the scale of the data"
    )


def _scaler_collapse(scaler: GradScaler, skipped: list[bool], window: int) -> str | None:
    """Why loss scaling has failed (or None): scale gone, or steps keep being skipped."""
    scale = scaler.scale
    run = 0
    for s in reversed(skipped):
        if not s:
            break
        run += 1
    if not (math.isfinite(scale) and scale >= scaler.min_scale):
        return (
            f"the loss scale collapsed to {scale:.3g} (< min_scale {scaler.min_scale:.3g}) after "
            f"{run} consecutive skipped steps"
        )
    if run >= scaler.max_consecutive_skips:
        return f"{run} consecutive steps were skipped (the scale fell to {scale:.3g})"
    recent = skipped[-window:]
    if len(recent) == window and sum(recent) > scaler.max_skip_fraction * window:
        return (
            f"{sum(recent)} of the last {window} steps were skipped "
            f"(> {scaler.max_skip_fraction:.0%}; scale {scale:.3g})"
        )
    return None


def _scaler_cause(problem: Any, w: Any, idx: Any, loss: float, g: Any) -> str:
    """Why the unscaled gradient stays non-finite whatever the scale."""
    xp = array_module(w)
    if not bool(xp.isfinite(w).all()):
        return "the parameters themselves are non-finite (lr too high?)"
    fault = diagnose_loss(problem, w, idx)
    if fault is not None and not math.isfinite(loss):
        return f"the forward pass is non-finite, so no loss scale can help: {fault.describe()}"
    if not math.isfinite(loss):
        return "the loss is non-finite, so no loss scale can help (lr too high or bad data?)"
    return (
        f"the gradient is non-finite at every scale (now {_describe(g)}); the forward pass "
        "overflows or the learning rate is too high"
    )


def train(
    problem: Any,
    w0: Any,
    optimizer: Optimizer | None = None,
    *,
    epochs: int = 1,
    batch_size: int | None = 32,
    shuffle: bool | str = True,
    drop_last: bool = False,
    seed: int = 0,
    lr_schedule: Callable[[int], float] | None = None,
    scaler: GradScaler | None = None,
    grad_noise: GradientNoise | None = None,
    guard: bool = True,
    lam_max: float | None = None,
    eval_full: bool = True,
    record_full_loss: bool = False,
    record_params: bool = False,
    max_steps: int | None = None,
    target_loss: float | None = None,
    callback: Callable[[int, Any], bool | None] | None = None,
) -> History:
    """Minibatch gradient descent on ``problem`` from ``w0`` with Keras epoch semantics.

    Parameters
    ----------
    problem : LeastSquaresProblem or EmbeddingRegression
        Anything with ``n``, ``loss(w, idx)``, ``loss_and_grad(w, idx, loss_scale=)`` and
        ``bad_rows(idx)``.
    w0 : array
        Initial parameters (copied; their dtype is the master dtype of the run).
    optimizer : Optimizer, optional
        Default ``SGD(lr=1e-3)`` (PyTorch's default). Its state is used as is.
    epochs : int
        Passes over the data.
    batch_size : int or None
        Examples per step; see the module docstring for ``None`` and ``> N``.
    shuffle : bool or "batch"
        Reshuffle every epoch (Keras default ``True``).
    drop_last : bool
        Drop the last partial batch (Keras keeps it).
    seed : int
        Seed of the shuffling generator.
    lr_schedule : callable, optional
        ``lr_schedule(step) -> lr`` set before each step.
    scaler : GradScaler, optional
        Dynamic loss scaling; non-finite gradients then skip the step instead of
        raising, and the loss is not guarded. With ``guard=True`` the run still raises
        :class:`NonFiniteError` (``array="loss scale"``) when the scale collapses below
        ``scaler.min_scale``, after ``scaler.max_consecutive_skips`` skipped steps in a
        row, or when more than ``scaler.max_skip_fraction`` of the last
        ``scaler.window`` steps were skipped: the scaler is then hiding a run that
        has failed.
    grad_noise : GradientNoise, optional
        Annealed Gaussian noise added to the gradient before the update.
    guard : bool
        Raise :class:`NonFiniteError` on the first NaN/Inf in data, loss, gradient or
        parameters. With ``guard=False`` non-finite values propagate silently.
    lam_max : float, optional
        Largest Hessian eigenvalue, quoted as ``lr·λmax`` in guard messages.
    eval_full : bool
        Record full-data loss and gradient norm at the end of each epoch.
    record_full_loss : bool
        Record the full-data loss after every step.
    record_params : bool
        Keep a copy of the parameters at the start and end of each epoch.
    max_steps : int, optional
        Stop after this many steps.
    target_loss : float, optional
        Stop when the full-data loss after a step is ``<= target_loss``.
    callback : callable, optional
        ``callback(step, w)`` after each step; returning True stops training.

    Returns
    -------
    History

    Raises
    ------
    ValueError, TypeError
        Bad ``epochs``/``batch_size``/``w0``.
    NonFiniteError
        With ``guard=True``, on the first non-finite value.

    Examples
    --------
    >>> from peakfit.gd import make_linear, train, SGD
    >>> p = make_linear(1000, 3, seed=0)
    >>> h = train(p, [0.0, 0.0, 0.0], SGD(lr=0.02), epochs=3, batch_size=100)
    >>> h.steps_per_epoch, bool(h.epoch_full_loss[-1] < h.epoch_full_loss[0])
    (10, True)
    """
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)):
        raise TypeError(f"epochs must be an int, got {type(epochs).__name__}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    n = int(problem.n)
    bs = resolve_batch_size(batch_size, n)
    if optimizer is None:
        optimizer = SGD()
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a peakfit.gd Optimizer, got {type(optimizer).__name__}")
    xp = problem.xp
    w = xp.array(w0, copy=True)
    if w.dtype.kind in "biu":
        w = w.astype(xp.float64)
    if w.dtype.kind != "f":
        raise TypeError(f"w0 must be a real array, got dtype {w.dtype}")
    expected = getattr(problem, "shape", None) or (problem.dim,)
    if tuple(w.shape) != tuple(expected):
        raise ValueError(f"w0 must have shape {tuple(expected)}, got {tuple(w.shape)}")

    rng = np.random.default_rng(seed)
    hist = History(
        steps_per_epoch=steps_per_epoch(n, bs, drop_last=drop_last), batch_size_effective=bs
    )
    limit = sgd_stability_factor(
        float(getattr(optimizer, "momentum", 0.0)),
        nesterov=bool(getattr(optimizer, "nesterov", False)),
        dampening=float(getattr(optimizer, "dampening", 0.0)),
    )
    data_has_bad_rows = guard and len(problem.bad_rows()) > 0
    use_scaler = scaler is not None and scaler.enabled
    step = 0
    if record_params:
        hist.snapshots.append(to_numpy(w).copy())

    def fail(
        array: str, detail: str, cause: str, epoch: int, rows: list[int] | None = None
    ) -> None:
        raise NonFiniteError(
            f"non-finite {array} at step {step} (epoch {epoch}): {detail}; likely cause: {cause}",
            step=step,
            epoch=epoch,
            array=array,
            cause=cause,
            rows=rows,
        )

    with np.errstate(over="ignore", invalid="ignore", under="ignore", divide="ignore"):
        for epoch in range(epochs):
            batches = batch_indices(n, bs, shuffle=shuffle, rng=rng, drop_last=drop_last)
            ep_loss_sum, ep_count = 0.0, 0
            for idx in batches:
                if lr_schedule is not None:
                    optimizer.lr = lr_schedule(step)
                if data_has_bad_rows:
                    bad = problem.bad_rows(idx)
                    if len(bad):
                        rows = [int(r) for r in bad]
                        fail(
                            "data",
                            f"{len(rows)} example(s) of this batch contain NaN/Inf",
                            f"bad input row(s) {rows[:10]} (NaN/Inf in the data, not a training "
                            "problem; clean or drop these rows)",
                            epoch,
                            rows,
                        )
                scale = scaler.scale if scaler is not None else 1.0
                loss, g = problem.loss_and_grad(w, idx, loss_scale=scale)
                skipped = False
                if use_scaler:
                    g, skipped = scaler.unscale(g, w.dtype)
                elif g.dtype != w.dtype:
                    g = g.astype(w.dtype)
                if guard and not use_scaler:
                    if not math.isfinite(loss):
                        fail(
                            "loss",
                            f"loss = {loss}",
                            _likely_cause(
                                dtype=problem.dtype,
                                losses=hist.loss,
                                lr=optimizer.lr,
                                lam_max=lam_max,
                                limit=limit,
                                fault=diagnose_loss(problem, w, idx),
                                updated=step > 0,
                            ),
                            epoch,
                        )
                    if not bool(xp.isfinite(g).all()):
                        fail(
                            "gradient",
                            _describe(g),
                            _likely_cause(
                                dtype=problem.dtype,
                                losses=[*hist.loss, loss],
                                lr=optimizer.lr,
                                lam_max=lam_max,
                                limit=limit,
                                fault=diagnose_loss(problem, w, idx),
                                updated=step > 0,
                            ),
                            epoch,
                        )
                gnorm = _norm(g)
                if not skipped:
                    if grad_noise is not None:
                        g = grad_noise(g, optimizer.t)
                    optimizer.step(w, g)
                if use_scaler:
                    scaler.update(skipped)
                    if guard:
                        why = _scaler_collapse(scaler, [*hist.skipped, skipped], scaler.window)
                        if why is not None:
                            fail(
                                "loss scale",
                                why,
                                _scaler_cause(problem, w, idx, loss, g),
                                epoch,
                            )
                hist.loss.append(loss)
                hist.grad_norm.append(gnorm)
                hist.lr.append(optimizer.lr)
                hist.batch_size.append(len(idx))
                hist.epoch.append(epoch)
                hist.loss_scale.append(scale)
                hist.skipped.append(skipped)
                if guard and not bool(xp.isfinite(w).all()):
                    fail(
                        "parameters",
                        _describe(w) + " after the update",
                        _likely_cause(
                            dtype=w.dtype,
                            losses=hist.loss,
                            lr=optimizer.lr,
                            lam_max=lam_max,
                            limit=limit,
                        ),
                        epoch,
                    )
                ep_loss_sum += loss * len(idx)
                ep_count += len(idx)
                full = None
                if record_full_loss or target_loss is not None:
                    full = problem.loss(w)
                    if record_full_loss:
                        hist.full_loss.append(full)
                step += 1
                stop = None
                if target_loss is not None and full is not None and full <= target_loss:
                    hist.steps_to_target = step
                    stop = "target"
                elif max_steps is not None and step >= max_steps:
                    stop = "max_steps"
                if callback is not None and callback(step - 1, w):
                    stop = "callback"
                if stop:
                    hist.stopped = stop
                    break
            hist.epoch_loss.append(ep_loss_sum / max(ep_count, 1))
            hist.epoch_lr.append(optimizer.lr)
            if eval_full:
                fl, fg = problem.loss_and_grad(w)
                hist.epoch_full_loss.append(fl)
                hist.epoch_grad_norm.append(_norm(fg))
            if record_params:
                hist.snapshots.append(to_numpy(w).copy())
            if hist.stopped:
                break
    hist.params = to_numpy(w).copy()
    return hist._finalize()
