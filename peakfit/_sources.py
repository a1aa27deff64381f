"""Row access to the spectra of a batch: arrays (NumPy, CuPy, memmap, h5py...) or an iterator.

:class:`Source` checks the shapes of ``x``, ``Y`` and the weights once, before anything is
allocated, and yields chunks ``(row0, x, Y, W)`` to the scheduler; ``Source.row(i)`` gives one
spectrum back for ``BatchFit[i]``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ._validate import as_float_array as as_2d_float
from ._validate import ragged_error
from ._xp import get_xp, to_numpy
from .errors import InputError

__all__ = ["Source", "as_2d_float", "check_weights", "is_sliceable"]


class Source:
    """Row access to the spectra: arrays (NumPy, CuPy, memmap, h5py...) or an iterator."""

    def __init__(self, x: Any, Y: Any, weights: Any, nan_policy: str) -> None:
        self.nan_policy = nan_policy
        self.iterator: Iterator[Any] | None = None
        self.Y = None
        self.k: int | None = None
        if is_sliceable(Y):
            shape = tuple(int(s) for s in Y.shape)
            if len(shape) == 1:
                Y = Y[None, :] if not hasattr(Y, "reshape") else Y.reshape(1, shape[0])
                shape = (1, shape[0])
            if len(shape) != 2:
                raise InputError(
                    f"Y must be 2-D (spectra x points); got an array of shape {shape}"
                )
            self.Y = Y
            self.k, self.m = shape
            if self.m == 0:
                raise InputError("Y has no points (0 columns)")
        elif isinstance(Y, (list, tuple)):
            try:
                arr = np.asarray(Y, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                if all(np.ndim(item) == 1 for item in Y):  # rows of different lengths
                    raise ragged_error("Y", Y, exc) from None
                arr = None  # a list of chunks of different lengths
            if arr is not None and arr.ndim in (1, 2):
                arr = arr[None, :] if arr.ndim == 1 else arr
                self.Y = arr
                self.k, self.m = arr.shape
            else:
                self.iterator = iter(Y)
                self.m = None
        elif isinstance(Y, Iterable):
            self.iterator = iter(Y)
            self.m = None  # known at the first chunk
        else:
            raise InputError(
                f"Y must be a 2-D array, an h5py dataset / np.memmap, or an iterable of (k_i, m) "
                f"chunks; got {type(Y).__name__}"
            )
        self.m_first: int | None = self.m  # points per spectrum, known before any fitting
        if self.iterator is not None:
            # look at the first chunk now: its width bounds what can be fitted (n = 10**9
            # fails before anything of the model's size is allocated)
            first = next(self.iterator, None)
            if first is not None:
                self.iterator = itertools.chain([first], self.iterator)
                item = first[1] if isinstance(first, tuple) and len(first) == 2 else first
                shape = getattr(item, "shape", None) or np.shape(item)
                self.m_first = int(shape[-1]) if len(shape) else None
        self.x = x
        self.weights = weights
        self._check_x_w()

    def _check_x_w(self) -> None:
        x = self.x
        if x is None:
            if self.iterator is not None:
                return  # every chunk brings its own x: (x_i, Y_i) pairs
            raise InputError("x is missing")
        if not is_sliceable(x):
            x = as_2d_float("x", x, np)
        if x.ndim not in (1, 2):
            raise InputError(f"x must be 1-D (shared) or 2-D (one row per spectrum); got shape "
                             f"{tuple(x.shape)}")
        self.x = x
        if self.m is not None:
            m = self.m
            if x.ndim == 1 and x.shape[0] != m:
                raise InputError(f"x has {x.shape[0]} points but Y has {m} columns")
            if x.ndim == 2 and tuple(x.shape) != (self.k, m):
                raise InputError(
                    f"x has shape {tuple(x.shape)}; expected ({m},) or ({self.k}, {m}) like Y"
                )
        elif x.ndim == 2:
            raise InputError("with an iterator of chunks, x must be shared (1-D), or each chunk "
                             "must be an (x_i, Y_i) pair")
        if x.ndim == 1:
            xs = to_numpy(x) if type(x).__module__.startswith("cupy") else np.asarray(x)
            xs = as_2d_float("x", xs, np)
            if not np.all(np.isfinite(xs)):
                bad = np.flatnonzero(~np.isfinite(xs))
                raise InputError(f"x contains {bad.size} non-finite value(s), first at index "
                                 f"{bad[0]}; a shared x must be finite (pad Y with NaN instead)")
            self.x_host = xs.astype(np.float64)
        w = self.weights
        if w is not None:
            if not is_sliceable(w):
                w = as_2d_float("weights", w, np)
            if w.ndim not in (1, 2):
                raise InputError(f"weights must be 1-D or 2-D; got shape {tuple(w.shape)}")
            if self.m is not None:
                want = [(self.m,), (self.k, self.m)]
                if tuple(w.shape) not in want:
                    raise InputError(f"weights has shape {tuple(w.shape)}; expected "
                                     f"({self.m},) or ({self.k}, {self.m}) like Y")
            elif w.ndim == 2:
                raise InputError("with an iterator of chunks, weights must be shared (1-D)")
            if w.ndim == 1:
                wh = as_2d_float("weights", to_numpy(w), np).astype(np.float64)
                check_weights(wh)
            self.weights = w

    def chunks(self, size: int) -> Iterator[tuple[int, Any, Any, Any]]:
        """``(row0, x, Y, W)`` blocks of at most ``size`` rows."""
        if self.iterator is None:
            assert self.k is not None
            for a in range(0, self.k, size):
                b = min(self.k, a + size)
                x = self.x if self.x.ndim == 1 else self.x[a:b]
                w = self.weights
                if w is not None and w.ndim == 2:
                    w = w[a:b]
                yield a, x, self.Y[a:b], w
            return
        row = 0
        for item in self.iterator:
            if isinstance(item, tuple):
                if len(item) != 2:
                    raise InputError("iterator items must be Y_i arrays or (x_i, Y_i) pairs")
                xi, Yi = item
            else:
                xi, Yi = self.x, item
            Yi = as_2d_float("Y chunk", Yi, get_xp(Yi))
            if Yi.ndim == 1:
                Yi = Yi[None, :]
            if Yi.ndim != 2:
                raise InputError(f"each chunk must be 2-D (k_i, m); got shape {Yi.shape}")
            if self.m is None:
                self.m = Yi.shape[1]
                Source._check_shared_len(xi, self.m)
            if Yi.shape[1] != self.m:
                raise InputError(f"chunk at row {row} has {Yi.shape[1]} points; the first chunk "
                                 f"had {self.m}")
            xi = as_2d_float("x", xi, get_xp(xi))
            if xi.ndim == 2 and tuple(xi.shape) != tuple(Yi.shape):
                raise InputError(f"x chunk has shape {xi.shape}; Y chunk has {Yi.shape}")
            if xi.ndim == 1 and xi.shape[0] != self.m:
                raise InputError(f"x has {xi.shape[0]} points; the chunk has {self.m}")
            w = self.weights
            if w is not None and w.shape[0] != self.m:
                raise InputError(f"weights has {w.shape[0]} points; the chunk has {self.m}")
            for a in range(0, Yi.shape[0], size):
                b = min(Yi.shape[0], a + size)
                yield row + a, (xi if xi.ndim == 1 else xi[a:b]), Yi[a:b], w
            row += Yi.shape[0]

    @staticmethod
    def _check_shared_len(x: Any, m: int) -> None:
        if x is not None and np.ndim(x) == 1 and len(x) != m:
            raise InputError(f"x has {len(x)} points but the chunks have {m}")

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Host float64 ``x, y, w`` of spectrum ``i`` (arrays only)."""
        y = to_numpy(self.Y[i]).astype(np.float64).ravel()
        x = self.x_host if self.x.ndim == 1 else to_numpy(self.x[i]).astype(np.float64)
        w = self.weights
        if w is not None:
            w = to_numpy(w if w.ndim == 1 else w[i]).astype(np.float64)
        return x, y, w


def is_sliceable(a: Any) -> bool:
    return hasattr(a, "shape") and hasattr(a, "__getitem__") and hasattr(a, "dtype")


def check_weights(w: Any) -> None:
    xp = get_xp(w)
    if not bool(xp.all(xp.isfinite(w))):
        raise InputError("weights contain non-finite values; use 0 for points to ignore")
    if bool(xp.any(w < 0)):
        raise InputError("weights must be >= 0")
