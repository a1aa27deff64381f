"""Host input at link speed: pinned staging buffers and a copy stream ahead of the fit.

:func:`prefetch` wraps the chunks ``(row0, x, Y, W)`` that the batch fitter reads from host
memory (NumPy arrays, memory maps, HDF5 datasets, iterators). A helper thread reads the *next*
chunk, copies it into a page-locked (pinned) buffer and starts its host-to-device copy on a
non-blocking copy stream, while the caller fits the current chunk on the compute stream; the
compute stream waits on the copy's event before it uses the data (no host synchronisation in
the caller). Two pinned buffers alternate; a buffer is refilled only after its last copy has
finished (an event the helper thread waits for, not the caller).

The data are sent as they are (float64 stays float64): with ``dtype='float32'`` the conversion
runs on the device, in the kernels that read the data, not as a pass over host memory.

Safety: a chunk's device arrays come from CuPy's pool and are released when the caller drops
them; the batch fitter does so only after copying the chunk's results to the host, which waits
for every kernel that read them.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["prefetch"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _host_float_2d(a: Any) -> np.ndarray | None:
    """``a`` as a host NumPy float array of 2 dimensions, or None if it is not one (left to the
    fitter, which reports bad input in the user's terms)."""
    if a is None or type(a).__module__.startswith("cupy"):
        return None
    if not isinstance(a, np.ndarray):
        dt = getattr(a, "dtype", None)
        if dt is None or np.dtype(dt) not in _FLOATS or getattr(a, "ndim", 0) != 2:
            return None
        a = np.asarray(a)  # h5py dataset slices, memory maps: read here, in the helper
    if a.dtype not in _FLOATS or a.ndim != 2:
        return None
    return a


class _Pinned:
    """A page-locked host buffer, grown on demand, and the event of its last copy."""

    def __init__(self, cp: Any) -> None:
        self.cp = cp
        self.mem: Any = None
        self.nbytes = 0
        self.event: Any = None

    def view(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        if self.event is not None:
            self.event.synchronize()  # the previous copy from this buffer has finished
            self.event = None
        need = int(np.prod(shape)) * dtype.itemsize
        if need > self.nbytes:
            self.mem = self.cp.cuda.alloc_pinned_memory(max(need, 2 * self.nbytes))
            self.nbytes = max(need, 2 * self.nbytes)
        return np.frombuffer(self.mem, dtype, int(np.prod(shape))).reshape(shape)


def _upload(cp: Any, a: np.ndarray, buf: _Pinned, stream: Any) -> Any:
    """Device copy of host array ``a`` through pinned ``buf``, enqueued on ``stream``."""
    host = buf.view(a.shape, a.dtype)
    np.copyto(host, a)
    with stream:
        d = cp.empty(a.shape, dtype=a.dtype)
    d.set(host, stream=stream)
    buf.event = stream.record()
    return d


def prefetch(chunks: Iterator[tuple[int, Any, Any, Any]], cp: Any,
             depth: int = 1) -> Iterator[tuple[int, Any, Any, Any]]:
    """The chunks of ``chunks`` with their host arrays on the device, ``depth`` chunks ahead.

    ``Y`` and 2-D ``x`` and ``W`` that are host float arrays are uploaded (through pinned
    buffers, on a copy stream, from a helper thread); anything else passes through unchanged.
    The compute stream (CuPy's current stream) waits on each chunk's copies before the chunk
    is yielded, so using the arrays needs no synchronisation. Exceptions of the source (bad
    input) are raised here, in order.

    Examples
    --------
    >>> import numpy as np
    >>> list(prefetch(iter([]), cp=None))
    []
    """
    it = iter(chunks)
    first = next(it, None)
    if first is None:
        return
    stream = cp.cuda.Stream(non_blocking=True)
    bufs = [[_Pinned(cp) for _ in range(3)] for _ in range(depth + 1)]
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def stage(item: tuple[int, Any, Any, Any], slot: list[_Pinned]) -> tuple[Any, ...]:
        row0, x, Y, W = item
        out = [row0, x, Y, W]
        events = []
        for pos, b in ((2, 0), (1, 1), (3, 2)):
            a = _host_float_2d(out[pos])
            if a is not None:
                out[pos] = _upload(cp, a, slot[b], stream)
                events.append(slot[b].event)
        return tuple(out), events

    def worker() -> None:
        n = 0
        try:
            for item in _chain(first, it):
                if stop.is_set():
                    return
                q.put(("ok", stage(item, bufs[n % len(bufs)])))
                n += 1
            q.put(("end", None))
        except BaseException as exc:  # handed to the caller, in order
            q.put(("error", exc))

    t = threading.Thread(target=worker, name="peakfit-prefetch", daemon=True)
    t.start()
    compute = cp.cuda.get_current_stream()
    try:
        while True:
            kind, got = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise got
            item, events = got
            for ev in events:
                compute.wait_event(ev)
            yield item
    finally:
        stop.set()
        while t.is_alive():  # let a blocked put finish
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.01)


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest
