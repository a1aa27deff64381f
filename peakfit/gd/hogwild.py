"""Asynchronous SGD on shared parameters (Hogwild!, Niu, Recht, Ré & Wright 2011).

``workers`` processes share **one** parameter array and update it without any lock.
Each worker has its own data sampler (seeded ``seed + rank``) and its own optimizer
(a fresh copy: momentum buffers and Adam moments are per worker, as in PyTorch's
Hogwild example). A worker reads the shared parameters while computing its gradient
and writes its update in place while others may be doing the same: reads can be torn
and writes can be lost or stale. Hogwild's premise is that with *sparse* updates two
workers rarely touch the same coordinates, so this costs almost nothing.

Two back ends:

* ``backend="numpy"`` -- :mod:`multiprocessing.shared_memory` holds the parameters;
  workers call the problem's gradient and a :mod:`peakfit.gd` optimizer in place
  (sparse problems pass ``rows=`` so that only those rows are written);
* ``backend="torch"`` -- ``torch.multiprocessing`` and a parameter tensor moved to
  shared memory with ``share_memory_()`` (what ``model.share_memory()`` does); each
  worker steps its own ``torch.optim`` optimizer on it. torch is imported only here.

Each run records, per worker, the updates done and their *staleness* -- the number of
updates other workers wrote between this worker's read of the parameters and its
write -- and the *conflicts*: updates during which another worker wrote one of the
same rows (every concurrent update, for a dense problem). A monitor in the parent
samples the shared parameters to trace the full loss against wall time and total
updates. :func:`delayed_sgd` is the deterministic model of staleness: gradient
descent whose gradient is ``tau`` steps old.
"""

from __future__ import annotations

import copy
import math
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from typing import Any

import numpy as np

from .optim import SGD, Adam, Optimizer
from .problems import to_numpy

__all__ = [
    "HogwildResult",
    "delayed_sgd",
    "delayed_stability_factor",
    "hogwild",
    "sync_sgd",
]


@dataclass
class HogwildResult:
    """Outcome of :func:`hogwild` or :func:`sync_sgd`.

    Attributes
    ----------
    params : ndarray
        Final shared parameters.
    workers : int
        Number of worker processes (1 for :func:`sync_sgd`).
    backend : str
        ``"numpy"``, ``"torch"`` or ``"sync"``.
    updates : ndarray
        Updates done by each worker.
    wall : float
        Seconds from the common start to the last worker's end.
    staleness_mean, staleness_max : float, int
        Updates written by other workers between a worker's read and its write.
    conflict_fraction : float
        Fraction of updates during which another worker wrote one of the same rows.
    overlap_fraction : float
        Fraction of updates during which another worker wrote anything (staleness > 0):
        how often the workers really ran at the same time.
    trace_time, trace_updates, trace_loss : ndarray
        Monitor samples: seconds since start, total updates, full loss.
    """

    params: np.ndarray
    workers: int
    backend: str
    updates: np.ndarray
    wall: float
    staleness_mean: float
    staleness_max: int
    conflict_fraction: float
    overlap_fraction: float = 0.0
    trace_time: np.ndarray = field(default_factory=lambda: np.zeros(0))
    trace_updates: np.ndarray = field(default_factory=lambda: np.zeros(0))
    trace_loss: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def total_updates(self) -> int:
        """Sum of the workers' updates."""
        return int(np.sum(self.updates))

    @property
    def conflicts_per_overlap(self) -> float:
        """Conflicts among the updates that overlapped another one (1 for dense updates).

        Independent of how often the OS let the workers run concurrently: Hogwild's
        premise is that it is small for sparse updates. ``nan`` without any overlap.
        """
        return self.conflict_fraction / self.overlap_fraction if self.overlap_fraction else math.nan

    @property
    def updates_per_s(self) -> float:
        """Total updates divided by the wall time."""
        return self.total_updates / self.wall if self.wall > 0 else math.inf


def _sparse(problem: Any) -> bool:
    return hasattr(problem, "sparse_grad")


def _batch(rng: np.random.Generator, n: int, b: int) -> np.ndarray:
    return rng.integers(0, n, b)


def _numpy_step(problem: Any, w: np.ndarray, opt: Optimizer, idx: np.ndarray) -> np.ndarray:
    """One lock-free update of the shared ``w``; return the rows written."""
    if _sparse(problem):
        rows, vals = problem.sparse_grad(w, idx)
        opt.step(w, vals, rows=rows)
        return np.asarray(rows)
    _, g = problem.loss_and_grad(w, idx)
    opt.step(w, g)
    return np.zeros(1, dtype=np.int64)


def _torch_optimizer(opt: Optimizer, params: list[Any]) -> Any:
    import torch

    if isinstance(opt, SGD):
        return torch.optim.SGD(
            params,
            lr=opt.lr,
            momentum=opt.momentum,
            dampening=opt.dampening,
            weight_decay=opt.weight_decay,
            nesterov=opt.nesterov,
        )
    if isinstance(opt, Adam):
        cls = torch.optim.AdamW if opt.decoupled_weight_decay else torch.optim.Adam
        return cls(
            params,
            lr=opt.lr,
            betas=opt.betas,
            eps=opt.eps,
            weight_decay=opt.weight_decay,
            amsgrad=opt.amsgrad,
        )
    raise TypeError(f"the torch back end supports SGD, Adam and AdamW, got {type(opt).__name__}")


def _worker(
    rank: int,
    backend: str,
    shared: Any,
    shape: tuple[int, ...],
    dtype: str,
    names: tuple[str, str],
    problem: Any,
    optimizer: Optimizer,
    batch_size: int,
    steps: int,
    seed: int,
    start: Any,
    stop: Any,
    out: Any,
) -> None:
    """Body of one Hogwild worker (module level so that ``spawn`` can pickle it)."""
    counts_shm = shared_memory.SharedMemory(name=names[0])
    stamps_shm = shared_memory.SharedMemory(name=names[1])
    w_shm = None
    try:
        counts = np.ndarray((-1,), dtype=np.int64, buffer=counts_shm.buf)
        stamps = np.ndarray((-1,), dtype=np.int64, buffer=stamps_shm.buf)
        if backend == "torch":
            import torch

            torch.set_num_threads(1)  # one core per worker, as in PyTorch's Hogwild example
            param = shared  # a shared-memory tensor inherited or rebuilt by torch
            w = param.detach().numpy()  # a NumPy view of the same shared memory
            topt = _torch_optimizer(optimizer, [param])
        else:
            w_shm = shared_memory.SharedMemory(name=shared)
            w = np.ndarray(shape, dtype=np.dtype(dtype), buffer=w_shm.buf)
            opt = copy.deepcopy(optimizer)
            opt.reset()
        rng = np.random.default_rng(seed + rank)
        n = problem.n
        stale_sum, stale_max, conflicts, overlaps, done = 0, 0, 0, 0, 0
        start.wait()  # a barrier: every worker (and the parent) is ready, then all start
        for k in range(steps):
            if k % 64 == 0 and stop.is_set():  # the check takes a lock: not every step
                break
            idx = _batch(rng, n, batch_size)
            others_before = int(counts.sum()) - int(counts[rank])
            if backend == "torch":
                if _sparse(problem):
                    rows, vals = problem.sparse_grad(w, idx)
                    g = np.zeros_like(w)
                    g[rows] = vals
                    rows = np.asarray(rows)
                else:
                    _, g = problem.loss_and_grad(w, idx)
                    rows = np.zeros(1, dtype=np.int64)
                stamp_before = stamps[rows].copy()
                param.grad = torch.from_numpy(np.ascontiguousarray(g, dtype=w.dtype))
                topt.step()
            else:
                if _sparse(problem):
                    rows = np.unique(problem.ids[idx])
                else:
                    rows = np.zeros(1, dtype=np.int64)
                stamp_before = stamps[rows].copy()
                _numpy_step(problem, w, opt, idx)
            others_after = int(counts.sum()) - int(counts[rank])
            if (stamps[rows] != stamp_before).any():
                conflicts += 1
            stamps[rows] += 1
            counts[rank] += 1
            lag = others_after - others_before
            overlaps += lag > 0
            stale_sum += lag
            stale_max = max(stale_max, lag)
            done += 1
        out.put((rank, done, stale_sum, stale_max, conflicts, time.perf_counter(), overlaps))
    finally:
        if w_shm is not None:
            w_shm.close()
        counts_shm.close()
        stamps_shm.close()


def hogwild(
    problem: Any,
    w0: Any,
    optimizer: Optimizer | None = None,
    *,
    workers: int = 2,
    steps: int = 1000,
    batch_size: int = 8,
    seed: int = 0,
    backend: str = "numpy",
    start_method: str | None = None,
    monitor_interval: float = 0.02,
    timeout: float = 60.0,
) -> HogwildResult:
    """Run ``workers`` processes of lock-free SGD on one shared parameter array.

    Parameters
    ----------
    problem
        A :mod:`peakfit.gd` problem (dense ``loss_and_grad``, or ``sparse_grad`` for
        :class:`~peakfit.gd.EmbeddingRegression`). Copied into each worker.
    w0 : array
        Initial parameters (float64 or float32); not modified.
    optimizer : Optimizer, optional
        Template, copied per worker (default ``SGD(lr=0.01)``). Use ``lazy=True``
        with sparse problems so that only the batch's rows are written.
    workers : int
        Number of worker processes (>= 1).
    steps : int
        Updates per worker.
    batch_size : int
        Examples per update, drawn with replacement.
    seed : int
        Worker ``k`` samples with ``default_rng(seed + k)``.
    backend : {"numpy", "torch"}
        Shared memory of :mod:`multiprocessing` or of ``torch.multiprocessing``.
    start_method : str, optional
        ``"fork"`` (default where available: fast start) or ``"spawn"``.
    monitor_interval : float
        Seconds between loss samples of the parent's monitor (``0`` disables).
    timeout : float
        Hard limit in seconds: workers still running are stopped, then killed, and
        :class:`TimeoutError` is raised.

    Returns
    -------
    HogwildResult

    Examples
    --------
    >>> import numpy as np
    >>> from peakfit.gd import make_linear, SGD
    >>> p = make_linear(400, 3, seed=0)
    >>> r = hogwild(p, np.zeros(3), SGD(lr=0.01), workers=2, steps=300, timeout=30)
    >>> r.updates.tolist(), bool(p.loss(r.params) < 0.05 * p.loss(np.zeros(3)))
    ([300, 300], True)
    """
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if backend not in ("numpy", "torch"):
        raise ValueError(f"backend must be 'numpy' or 'torch', got {backend!r}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    optimizer = SGD(lr=0.01) if optimizer is None else optimizer
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a peakfit.gd Optimizer, got {type(optimizer).__name__}")
    w_init = np.array(to_numpy(w0), dtype=np.float64 if to_numpy(w0).dtype.kind != "f" else None)
    expected = getattr(problem, "shape", None) or (problem.dim,)
    if tuple(w_init.shape) != tuple(expected):
        raise ValueError(f"w0 must have shape {tuple(expected)}, got {tuple(w_init.shape)}")
    if start_method is None:
        start_method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    rows_n = problem.shape[0] if _sparse(problem) else 1

    if backend == "torch":
        import torch
        import torch.multiprocessing as tmp

        ctx = tmp.get_context(start_method)
        param = torch.nn.Parameter(torch.from_numpy(w_init.copy()))
        param.share_memory_()
        _torch_optimizer(optimizer, [torch.nn.Parameter(torch.zeros(1))])  # import torch.optim
        shared: Any = param
        w_view = param.detach().numpy()
    else:
        ctx = mp.get_context(start_method)
        w_shm = shared_memory.SharedMemory(create=True, size=max(w_init.nbytes, 1))
        w_view = np.ndarray(w_init.shape, dtype=w_init.dtype, buffer=w_shm.buf)
        w_view[...] = w_init
        shared = w_shm.name
    counts_shm = shared_memory.SharedMemory(create=True, size=8 * workers)
    stamps_shm = shared_memory.SharedMemory(create=True, size=8 * rows_n)
    counts = np.ndarray((workers,), dtype=np.int64, buffer=counts_shm.buf)
    counts[...] = 0
    np.ndarray((rows_n,), dtype=np.int64, buffer=stamps_shm.buf)[...] = 0
    start, stop, out = ctx.Barrier(workers + 1), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker,
            args=(
                k,
                backend,
                shared,
                w_init.shape,
                w_init.dtype.str,
                (counts_shm.name, stamps_shm.name),
                problem,
                optimizer,
                int(batch_size),
                int(steps),
                int(seed),
                start,
                stop,
                out,
            ),
            daemon=True,
        )
        for k in range(workers)
    ]
    with np.errstate(all="ignore"):
        l_init = float(problem.loss(w_init))
    tt: list[float] = [0.0]
    tu: list[int] = [0]
    tl: list[float] = [l_init]
    results: dict[int, tuple] = {}
    try:
        for p in procs:
            p.start()
        t_launch = time.perf_counter()
        try:
            start.wait(timeout=timeout)
        except Exception:  # threading.BrokenBarrierError
            stop.set()
            raise TimeoutError(
                f"hogwild: the {workers} workers were not ready within the {timeout:g} s timeout"
            ) from None
        t0 = time.perf_counter()
        deadline = t_launch + timeout
        next_sample = t0
        while len(results) < workers:
            now = time.perf_counter()
            if now > deadline:
                stop.set()
                raise TimeoutError(
                    f"hogwild: {workers - len(results)} of {workers} workers still running "
                    f"after the {timeout:g} s timeout; they were stopped"
                )
            if monitor_interval > 0 and now >= next_sample:
                snap = w_view.copy()
                tt.append(now - t0)
                tu.append(int(counts.sum()))
                with np.errstate(all="ignore"):
                    tl.append(float(problem.loss(snap)))
                next_sample = now + monitor_interval
            try:
                item = out.get(timeout=monitor_interval if monitor_interval > 0 else 0.05)
            except Exception:  # queue.Empty
                if not any(p.is_alive() for p in procs) and out.empty():
                    dead = [p.exitcode for p in procs]
                    raise RuntimeError(
                        f"hogwild: a worker died without reporting (exit codes {dead})"
                    ) from None
                continue
            results[item[0]] = item
        t_end = max(r[5] for r in results.values())
        wall = t_end - t0
        params = w_view.copy()
        tt.append(wall)
        tu.append(int(counts.sum()))
        with np.errstate(all="ignore"):
            tl.append(float(problem.loss(params)))
    finally:
        stop.set()
        started = [p for p in procs if p.pid is not None]
        for p in started:
            p.join(timeout=5)
        for p in started:
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        counts_shm.close()
        counts_shm.unlink()
        stamps_shm.close()
        stamps_shm.unlink()
        if backend == "numpy":
            w_shm.close()
            w_shm.unlink()
    done = np.array([results[k][1] for k in range(workers)])
    total = max(int(done.sum()), 1)
    return HogwildResult(
        params=params,
        workers=workers,
        backend=backend,
        updates=done,
        wall=wall,
        staleness_mean=sum(results[k][2] for k in range(workers)) / total,
        staleness_max=max(results[k][3] for k in range(workers)),
        conflict_fraction=sum(results[k][4] for k in range(workers)) / total,
        overlap_fraction=sum(results[k][6] for k in range(workers)) / total,
        trace_time=np.array(tt),
        trace_updates=np.array(tu),
        trace_loss=np.array(tl),
    )


def sync_sgd(
    problem: Any,
    w0: Any,
    optimizer: Optimizer | None = None,
    *,
    steps: int = 1000,
    batch_size: int = 8,
    seed: int = 0,
    trace_every: int = 10,
) -> HogwildResult:
    """Synchronous single-process SGD with the same sampler and update: the baseline.

    Returns a :class:`HogwildResult` (one worker, no staleness) whose trace is the
    full loss every ``trace_every`` updates (evaluated outside the timed loop).

    Examples
    --------
    >>> import numpy as np
    >>> from peakfit.gd import make_linear, SGD
    >>> p = make_linear(400, 3, seed=0)
    >>> r = sync_sgd(p, np.zeros(3), SGD(lr=0.01), steps=300)
    >>> r.total_updates, bool(r.trace_loss[-1] < 0.05 * r.trace_loss[0])
    (300, True)
    """
    opt = copy.deepcopy(SGD(lr=0.01) if optimizer is None else optimizer)
    opt.reset()
    w = np.array(to_numpy(w0), dtype=float, copy=True)
    rng = np.random.default_rng(seed)
    tt, tu, tl = [0.0], [0], [float(problem.loss(w))]
    spent = 0.0
    for k in range(steps):
        t = time.perf_counter()
        _numpy_step(problem, w, opt, _batch(rng, problem.n, batch_size))
        spent += time.perf_counter() - t
        if (k + 1) % trace_every == 0 or k + 1 == steps:
            tt.append(spent)
            tu.append(k + 1)
            tl.append(float(problem.loss(w)))
    return HogwildResult(
        params=w,
        workers=1,
        backend="sync",
        updates=np.array([steps]),
        wall=spent,
        staleness_mean=0.0,
        staleness_max=0,
        conflict_fraction=0.0,
        trace_time=np.array(tt),
        trace_updates=np.array(tu),
        trace_loss=np.array(tl),
    )


def delayed_stability_factor(tau: int) -> float:
    """``lr·λ`` limit of gradient descent with a gradient ``tau`` steps old.

    ``x_{t+1} = x_t - h x_{t-τ}`` is stable iff ``0 < h < 2 cos(τπ/(2τ+1))``
    (Levin & May 1976): 2 for ``τ = 0``, 1 for ``τ = 1``, ``≈ π/(2τ)`` for large ``τ``
    -- staleness shrinks the stable learning rate roughly like ``1/τ``.

    Examples
    --------
    >>> delayed_stability_factor(0), round(delayed_stability_factor(1), 12)
    (2.0, 1.0)
    """
    if isinstance(tau, bool) or not isinstance(tau, (int, np.integer)) or tau < 0:
        raise ValueError(f"tau must be a non-negative integer, got {tau!r}")
    return 2.0 * math.cos(tau * math.pi / (2 * tau + 1))


def delayed_sgd(
    problem: Any,
    w0: Any,
    lr: float,
    *,
    tau: int,
    steps: int,
    batch_size: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Gradient descent whose gradient is evaluated at the parameters of ``tau`` steps ago.

    The deterministic model of Hogwild's staleness (full batch by default). Returns
    the full loss after each step (``inf`` once it overflows).

    Examples
    --------
    >>> import numpy as np
    >>> from peakfit.gd import make_linear, lambda_max
    >>> p = make_linear(300, 3, seed=0)
    >>> lam = lambda_max(p)
    >>> ok = delayed_sgd(p, np.zeros(3), 0.9 / lam, tau=1, steps=300)
    >>> bad = delayed_sgd(p, np.zeros(3), 1.1 / lam, tau=1, steps=300)
    >>> bool(ok[-1] < ok[0] < bad[-1])
    True
    """
    if isinstance(tau, bool) or not isinstance(tau, (int, np.integer)) or tau < 0:
        raise ValueError(f"tau must be a non-negative integer, got {tau!r}")
    w = np.array(to_numpy(w0), dtype=float, copy=True)
    hist = [w.copy() for _ in range(tau + 1)]
    rng = np.random.default_rng(seed)
    out = np.empty(steps)
    with np.errstate(all="ignore"):
        for k in range(steps):
            idx = None if batch_size is None else _batch(rng, problem.n, batch_size)
            _, g = problem.loss_and_grad(hist[0], idx)
            w = w - lr * g
            hist = [*hist[1:], w.copy()]
            loss = float(problem.loss(w))
            out[k] = loss if math.isfinite(loss) else math.inf
            if not math.isfinite(loss):
                out[k:] = math.inf
                break
    return out
