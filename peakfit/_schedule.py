"""Chunk scheduling of a batch: worker threads, BLAS threads, out-of-memory retries, progress.

:func:`run_chunks` feeds the chunks of a :class:`~peakfit._sources.Source` to a fit function
(one call per chunk, in worker threads on the CPU) and returns the per-chunk results in row
order; it knows nothing about the fit.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .errors import FitWarning, InputError

__all__ = ["blas_single_thread", "n_workers", "progress_bar", "run_chunks", "run_rows"]

def run_rows(fit: Callable[[int, int], dict[str, np.ndarray]], a: int, b: int,
              oom: tuple[type[BaseException], ...], on_oom: Callable[[int], None],
              limit: int | None = None, min_rows: int = 1,
              ) -> tuple[list[tuple[int, dict[str, np.ndarray]]], int]:
    """Fit rows ``[a, b)`` in order, ``limit`` rows per call of ``fit(lo, hi)``.

    On an out-of-memory error the failed piece is retried with half as many rows (and the
    smaller size is kept for the rest), down to ``min_rows``; no row's result is lost or
    computed twice. ``on_oom(rows)`` is called with the size that failed. Returns the results
    (``(first_row, result)`` in order) and the final ``limit``.
    """
    limit = max(1, b - a if limit is None else int(limit))
    done: list[tuple[int, dict[str, np.ndarray]]] = []
    pos = a
    while pos < b:
        step = min(limit, b - pos)
        try:
            done.append((pos, fit(pos, pos + step)))
        except oom:
            if step <= min_rows:
                raise
            on_oom(step)
            limit = max(min_rows, step // 2)
            continue
        pos += step
    return done, limit


def n_workers(n_threads: int | None) -> int:
    if n_threads is not None:
        if isinstance(n_threads, bool) or int(n_threads) < 1:
            raise InputError(f"n_threads must be an integer >= 1, got {n_threads!r}")
        return int(n_threads)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores)



@contextlib.contextmanager
def blas_single_thread(active: bool) -> Iterator[None]:
    """Limit the BLAS library to one thread while the pipeline runs.

    The solver's matrix products are small (``(P+1) x m`` per spectrum); a multi-threaded
    BLAS only adds synchronisation and competes with the worker threads (or, with one worker,
    with whatever else runs on the machine: the auto start of 2000 spectra took 0.45-0.69 s
    instead of 0.23-0.27 s on a 2-vCPU machine with one other busy process). Uses threadpoolctl
    when installed, else OpenBLAS's own setter found among the loaded libraries; does nothing
    when neither is available.
    """
    if not active:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
        return
    get_set = _openblas_thread_api()
    if get_set is None:
        yield
        return
    get, set_ = get_set
    old = int(get())
    set_(1)
    try:
        yield
    finally:
        set_(old)


@functools.lru_cache(maxsize=1)
def _openblas_thread_api() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    try:
        with open("/proc/self/maps") as fh:
            paths = sorted({ln.split()[-1] for ln in fh if "openblas" in ln.lower()
                            and ln.split()[-1].startswith("/")})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for suffix in ("64_", ""):
            for prefix in ("scipy_openblas", "openblas"):
                g = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                s = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if g is not None and s is not None:
                    g.restype = ctypes.c_int
                    s.argtypes = [ctypes.c_int]
                    return g, s
    return None

def progress_bar(progress: bool, total: int | None) -> Any:
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        warnings.warn('progress=True needs tqdm (pip install "peakfit[progress]"); continuing '
                      "without a progress bar", FitWarning, stacklevel=3)
        return None
    return tqdm(total=total, unit="spectra", desc="peakfit")


class _Shrinking:
    """Rows per call, shared by the worker threads; only ever shrinks (after out-of-memory)."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self._lock = threading.Lock()

    def shrink_to(self, rows: int) -> None:
        with self._lock:
            self.rows = min(self.rows, rows)


def run_chunks(
    chunks: Iterator[tuple[int, Any, Any, Any]],
    fit: Callable[[int, Any, Any, Any], dict[str, np.ndarray]],
    *,
    rows: int,
    workers: int,
    oom: tuple[type[BaseException], ...] = (MemoryError,),
    release: Callable[[], None] = lambda: None,
    progress: Any = None,
) -> list[tuple[int, dict[str, np.ndarray]]]:
    """Fit every chunk ``(row0, x, Y, W)``; ``(first_row, result)`` pieces in row order.

    ``fit(row0, x, Y, W)`` fits a block of rows. A block that runs out of memory is retried in
    halves (:func:`run_rows`) and the smaller size is kept for the rest. With ``workers > 1``
    the chunks are read here, in one thread (h5py datasets and iterators are not thread-safe),
    and fitted in a thread pool with at most ``workers + 1`` chunks in memory; the BLAS runs
    single-threaded meanwhile. ``progress`` (a tqdm bar or None) is advanced by rows done.
    """
    limit = _Shrinking(rows)

    def on_oom(failed: int) -> None:
        release()
        warnings.warn(f"out of memory fitting {failed} spectra at once; retrying in chunks of "
                      f"{max(1, failed // 2)}", FitWarning, stacklevel=4)

    def one_chunk(row0: int, xc: Any, Yc: Any, Wc: Any) -> list[tuple[int, dict]]:
        def block(a: int, b: int) -> dict[str, np.ndarray]:
            xa = xc if _ndim(xc) == 1 else xc[a:b]
            wa = Wc if Wc is None or Wc.ndim == 1 else Wc[a:b]
            return fit(row0 + a, xa, Yc[a:b], wa)

        got, new_limit = run_rows(block, 0, Yc.shape[0], oom, on_oom, limit.rows)
        limit.shrink_to(new_limit)
        return [(row0 + a, r) for a, r in got]

    parts: list[tuple[int, dict[str, np.ndarray]]] = []

    def collect(got: list[tuple[int, dict[str, np.ndarray]]]) -> None:
        parts.extend(got)
        if progress is not None:
            progress.update(sum(r["p"].shape[0] for _, r in got))

    # one BLAS thread always: the products are small, and a threaded BLAS beside busy cores
    # (ours or another process's) made the 1-thread start 2-3x slower (measured, 2 vCPUs)
    with blas_single_thread(True):
        if workers == 1:
            for item in chunks:
                collect(one_chunk(*item))
        else:
            with ThreadPoolExecutor(max_workers=workers) as ex:
                pending: list[Any] = []
                for row0, xc, Yc, Wc in chunks:
                    Yc = Yc if type(Yc).__module__.startswith("cupy") else np.asarray(Yc)
                    pending.append(ex.submit(one_chunk, row0, xc, Yc, Wc))
                    while len(pending) > workers:
                        collect(pending.pop(0).result())
                for fut in pending:
                    collect(fut.result())
    parts.sort(key=lambda t: t[0])
    return parts


def _ndim(a: Any) -> int:
    return int(a.ndim) if hasattr(a, "ndim") else int(np.ndim(a))
