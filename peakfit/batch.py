"""Fit many spectra at once: :func:`fit_gaussians_batch` and its result, :class:`BatchFit`.

Every spectrum (row) goes through the same steps as :func:`peakfit.fit_gaussians` (validation,
per-spectrum scaling, start point, the bounded Levenberg-Marquardt / trust-region solver of
:mod:`peakfit.solvers.lm`, unscaling, sorting of the terms) but vectorised over rows, chunk by
chunk, on NumPy or on a CUDA GPU through CuPy. A row's result does not depend on the other rows
of the batch: bad rows are flagged in :attr:`BatchFit.state` and cost nothing else.

Data flow per chunk (``xp`` is NumPy or CuPy; the code is the same)::

    rows -> validate (states) -> sort x -> group (full / ragged) -> scaling -> start points
         -> levenberg_marquardt(evaluator) -> unscale, snap to bounds -> sort terms
         -> gof, standard errors -> host arrays

The evaluator is :class:`peakfit.solvers.lm.NormalEquations` on the CPU and the fused CUDA
kernel of :mod:`peakfit.gpu.kernels` on the GPU.

Bad input (per row)
-------------------
=====================  ==========================================================================
state                  rows
=====================  ==========================================================================
``nonfinite_input``    an ``Inf`` in y (or in a per-row x), or, with ``nan_policy='pad'``, a NaN
                       between valid points
``insufficient_data``  fewer valid points with positive weight than coefficients ``P``
``constant_data``      all valid y equal (all-zero rows included)
=====================  ==========================================================================

NaN entries at the start and end of a row (``nan_policy='pad'``, the default) are padding: a
ragged spectrum. They are removed exactly as ``fit_gaussians(..., nan_policy='omit')`` removes
them. ``nan_policy='omit'`` treats every NaN as a missing point, wherever it is.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from ._xp import cupy_or_none, get_xp, to_numpy
from .engine import get_engine
from .errors import FitWarning, GPUUnavailableError, InputError
from .fit import build_fit_result
from .models import GaussianModel
from .options import FitOptions, fitoptions
from .result import FitState, GaussianFit
from .scaling import Scaling
from .solvers.least_squares import least_squares, resolve_method
from .solvers.lm import NormalEquations
from .start import estimate_start, initial_damping

__all__ = ["BatchFit", "fit_gaussians_batch"]

#: ``exitflag`` of rows that were not fitted: constant data, invalid data.
EXITFLAG_CONSTANT = -3
EXITFLAG_NOT_FITTED = -4

_STATE_NAMES = np.array([s.name.lower() for s in FitState])

#: Default rows per chunk on the CPU (bounded memory: ~60 bytes x m per row in flight).
CPU_CHUNK_ROWS = 2048

_MESSAGES = {
    int(FitState.NONFINITE_INPUT): "Not fitted: the spectrum contains Inf, or NaN between valid "
    "points (NaN padding at the ends is allowed).",
    int(FitState.INSUFFICIENT_DATA): "Not fitted: fewer valid points than coefficients.",
    int(FitState.CONSTANT_DATA): "Not fitted: the data are constant, so the peak coefficients "
    "are not identifiable.",
}


# =============================================================================================
# result
# =============================================================================================
@dataclass
class BatchFit:
    """Result of :func:`fit_gaussians_batch`: one row per spectrum, host NumPy arrays.

    Attributes
    ----------
    model : GaussianModel
    p : ndarray (k, P)
        Coefficients in MATLAB order (terms sorted by centre when ``sort=True``); NaN for rows
        that were not fitted.
    stderr : ndarray (k, P)
        Standard errors (``sqrt(diag((JᵀWJ)⁻¹) * sse/dfe)``); NaN at active bounds.
    sse, rsquare, adjrsquare, rmse : ndarray (k,)
        Goodness of fit, MATLAB's formulas.
    dfe, iterations, funcCount, exitflag, numobs : int ndarrays (k,)
    state : int8 ndarray (k,)
        :class:`~peakfit.result.FitState` values.
    start : ndarray (k, P)
        The start points used (same order as ``p``).
    held : bool ndarray (k, P)
        Coefficients held at a bound by the solver.
    firstorderopt : ndarray (k,)
    device : str
        Where the fit ran: ``'cpu'``, or ``'gpu:0 (<device name>)'`` on a GPU.
    dtype : str
        Working precision, ``'float64'`` or ``'float32'``.
    options : FitOptions
        Bounds and tolerances used.
    algorithm : str
    sorted : bool
        Whether the terms of each row are sorted by centre.
    elapsed : float
        Wall time of the fit in seconds.
    timings : dict
        Seconds spent in ``'start'`` (start-point estimation) and ``'solve'`` (the solver),
        summed over chunks (and over threads, so they can exceed ``elapsed``).
    engine : str
        Who evaluated the normal equations: ``'numpy'`` or ``'numba'`` on the CPU
        (:mod:`peakfit.engine`), ``'cupy'`` on the GPU.

    Examples
    --------
    >>> import numpy as np, peakfit
    >>> x = np.linspace(0, 10, 201)
    >>> Y = np.stack([np.exp(-((x - b) / 0.8) ** 2) for b in (3.0, 5.0, 7.0)])
    >>> r = peakfit.fit_gaussians_batch(x, Y, n=1, device='cpu')
    >>> len(r), r.n_converged, np.round(r.means[:, 0], 6).tolist()
    (3, 3, [3.0, 5.0, 7.0])
    >>> r[1].means.round(6).tolist()  # the same GaussianFit as fit_gaussians
    [5.0]
    """

    model: GaussianModel
    p: np.ndarray
    stderr: np.ndarray
    sse: np.ndarray
    rsquare: np.ndarray
    adjrsquare: np.ndarray
    dfe: np.ndarray
    rmse: np.ndarray
    iterations: np.ndarray
    funcCount: np.ndarray
    exitflag: np.ndarray
    state: np.ndarray
    start: np.ndarray
    held: np.ndarray
    firstorderopt: np.ndarray
    numobs: np.ndarray
    device: str
    dtype: str
    options: FitOptions
    algorithm: str
    sorted: bool = True
    elapsed: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    engine: str = "numpy"
    _source: Any = field(default=None, repr=False)

    # ------------------------------------------------------------ arrays
    def __len__(self) -> int:
        return int(self.p.shape[0])

    @property
    def n(self) -> int:
        """Number of Gaussian terms."""
        return self.model.n

    @property
    def names(self) -> tuple[str, ...]:
        """Coefficient names in MATLAB order."""
        return self.model.names

    @property
    def a(self) -> np.ndarray:
        """Heights ``(k, n)``."""
        return self.p[:, 0 : 3 * self.n : 3]

    @property
    def b(self) -> np.ndarray:
        """Centres ``(k, n)``."""
        return self.p[:, 1 : 3 * self.n : 3]

    @property
    def c(self) -> np.ndarray:
        """Width coefficients ``(k, n)`` (``c = sqrt(2) sigma``)."""
        return self.p[:, 2 : 3 * self.n : 3]

    @property
    def means(self) -> np.ndarray:
        """Peak centres sorted ascending per spectrum ``(k, n)``."""
        return np.sort(self.b, axis=1)

    @property
    def baseline(self) -> np.ndarray:
        """Baseline coefficients ``(k, len(model.baseline_names))``."""
        return self.p[:, 3 * self.n :]

    @property
    def converged(self) -> np.ndarray:
        """Boolean mask of converged rows."""
        return self.state == int(FitState.CONVERGED)

    @property
    def n_converged(self) -> int:
        """Number of converged rows."""
        return int(np.count_nonzero(self.converged))

    @property
    def state_names(self) -> np.ndarray:
        """The states as lowercase names (``'converged'``, ``'max_iterations'``, ...)."""
        return _STATE_NAMES[self.state.astype(np.intp)]

    def state_counts(self) -> dict[str, int]:
        """Number of rows per state (states that occur)."""
        counts = np.bincount(self.state.astype(np.intp), minlength=len(FitState))
        return {FitState(i).name.lower(): int(c) for i, c in enumerate(counts) if c}

    # ------------------------------------------------------------ one row
    def __getitem__(self, i: int) -> GaussianFit:
        """The :class:`~peakfit.result.GaussianFit` of spectrum ``i``.

        The same type, display, ``confint`` and ``predint`` as :func:`peakfit.fit_gaussians`,
        assembled by the same function from the batch's solution and the row's data.

        Raises
        ------
        IndexError
            ``i`` out of range.
        InputError
            The data were given as an iterator, so the row cannot be read again.
        """
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"BatchFit indices must be integers, got {type(i).__name__}")
        k = len(self)
        j = int(i) + k if i < 0 else int(i)
        if not 0 <= j < k:
            raise IndexError(f"spectrum index {i} out of range for {k} spectra")
        if self._source is None:
            raise InputError(
                "the spectra were given as an iterator and are not kept, so BatchFit[i] cannot "
                "rebuild the full fit; pass an array, np.memmap or h5py dataset to keep access"
            )
        x, y, w = self._source.row(j)
        keep = np.isfinite(x) & np.isfinite(y)  # padding and missing points, as nan_policy='omit'
        xk, yk = x[keep], y[keep]
        wk = None if w is None else w[keep]
        order = np.argsort(xk, kind="stable")
        st = int(self.state[j])
        message = _MESSAGES.get(st)
        return build_fit_result(
            self.model, self.options, self.algorithm, self.p[j], self.held[j], self.start[j],
            xk[order], yk[order], None if wk is None else wk[order], order,
            iterations=int(self.iterations[j]), nfev=int(self.funcCount[j]),
            exitflag=int(self.exitflag[j]), firstorderopt=float(self.firstorderopt[j]),
            x=xk, y=yk, weights=wk, sort=self.sorted, message=message,
        )

    # ------------------------------------------------------------ tables
    def to_table(self) -> dict[str, np.ndarray]:
        """Columns of the result as a dict of 1-D NumPy arrays.

        ``index, state`` (lowercase names), ``state_code`` (the int values), ``exitflag, sse,
        rsquare, adjrsquare, rmse, dfe, iterations, mean1..mean{n}``, the coefficients in
        MATLAB order (``a1, b1, c1, ...`` and the baseline's), then ``<name>_err`` standard
        errors.

        Examples
        --------
        >>> import numpy as np, peakfit
        >>> x = np.linspace(0, 10, 101)
        >>> r = peakfit.fit_gaussians_batch(x, np.exp(-((x - 4) / 1.5) ** 2)[None], n=1,
        ...                                 device='cpu')
        >>> t = r.to_table()
        >>> str(t['state'][0]), round(float(t['b1'][0]), 6), list(t)[:4]
        ('converged', 4.0, ['index', 'state', 'state_code', 'exitflag'])
        """
        k = len(self)
        out: dict[str, np.ndarray] = {
            "index": np.arange(k, dtype=np.int64),
            "state": self.state_names,
            "state_code": self.state.astype(np.int64),
            "exitflag": self.exitflag.astype(np.int64),
            "sse": self.sse,
            "rsquare": self.rsquare,
            "adjrsquare": self.adjrsquare,
            "rmse": self.rmse,
            "dfe": self.dfe.astype(np.int64),
            "iterations": self.iterations.astype(np.int64),
        }
        means = self.means
        for i in range(self.n):
            out[f"mean{i + 1}"] = means[:, i]
        for j, nm in enumerate(self.names):
            out[nm] = self.p[:, j]
        for j, nm in enumerate(self.names):
            out[f"{nm}_err"] = self.stderr[:, j]
        return out

    def to_dataframe(self) -> Any:
        """The table of :meth:`to_table` as a pandas ``DataFrame`` (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas is installed in the test env
            raise ImportError(
                'BatchFit.to_dataframe needs pandas: pip install "peakfit[io]"'
            ) from exc
        df = pd.DataFrame(self.to_table())
        return df.set_index("index")

    def summary(self) -> str:
        """A short text report: counts per state, speed, medians."""
        k = len(self)
        lines = [
            f"BatchFit: {k} spectra, {self.model.matlab_name}, device {self.device} "
            f"({self.engine}), {self.dtype}",
        ]
        rate = k / self.elapsed if self.elapsed > 0 else float("nan")
        lines.append(f"  time {self.elapsed:.3g} s ({rate:.4g} fits/s)")
        for name, cnt in self.state_counts().items():
            lines.append(f"  {name:<18s} {cnt:>10d}  ({100.0 * cnt / max(k, 1):.2f} %)")
        ok = self.converged
        if ok.any():
            lines.append(
                f"  converged rows: median iterations {np.median(self.iterations[ok]):g}, "
                f"median R-square {np.median(self.rsquare[ok]):.6g}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<BatchFit {self.model.matlab_name}: {len(self)} spectra, "
                f"{self.n_converged} converged, device={self.device!r}, dtype={self.dtype!r}>")


# =============================================================================================
# backends
# =============================================================================================
@dataclass
class _Backend:
    """Where the arithmetic runs: NumPy on the host or CuPy on a GPU."""

    name: str
    xp: ModuleType
    label: str
    oom: tuple[type[BaseException], ...]
    check_every: int
    make_evaluator: Callable[..., Any]
    chunk_rows: Callable[[int, int, int], int] = lambda m, P, itemsize: CPU_CHUNK_ROWS

    def asarray(self, a: Any) -> Any:
        if self.name == "cpu":
            return to_numpy(a)
        return self.xp.asarray(a)

    def to_host(self, a: Any) -> np.ndarray:
        return to_numpy(a)

    def release(self) -> None:
        """Give cached device memory back (after an out-of-memory error)."""
        if self.name == "gpu":
            from . import gpu

            gpu.free_memory_pool()


def _cpu_backend() -> _Backend:
    return _Backend("cpu", np, "cpu", (MemoryError,), 1,
                    lambda model, x, Y, sw: NormalEquations(model, x, Y, sw, block_rows=16))


def _gpu_backend(check_every: int | None) -> _Backend:
    from . import gpu

    cp = gpu.require_cupy()
    return _Backend("gpu", cp, gpu.device_label(), gpu.oom_errors(),
                    4 if check_every is None else check_every,
                    gpu.FusedNormalEquations, gpu.auto_chunk_rows)


def _select_backend(device: str, Y: Any, check_every: int | None) -> _Backend:
    dev = str(device).lower()
    if dev not in ("auto", "cpu", "gpu", "cuda"):
        raise InputError(f"device must be 'auto', 'cpu' or 'gpu', got {device!r}")
    if dev == "cpu":
        b = _cpu_backend()
        if check_every is not None:
            b.check_every = check_every
        return b
    if dev in ("gpu", "cuda"):
        return _gpu_backend(check_every)
    on_device = type(Y).__module__.startswith("cupy")
    if on_device or cupy_or_none() is not None:
        try:
            return _gpu_backend(check_every)
        except GPUUnavailableError as exc:
            if on_device:
                raise
            warnings.warn(f"device='auto' found a GPU it cannot use, so fits run on the CPU: "
                          f"{exc}", FitWarning, stacklevel=3)
    b = _cpu_backend()
    if check_every is not None:
        b.check_every = check_every
    return b


# =============================================================================================
# sources of spectra
# =============================================================================================
def _as_2d_float(name: str, a: Any, xp: ModuleType) -> Any:
    """Validate a numeric array (NumPy or CuPy) and return it as a float array of ndim <= 2."""
    mod = type(a).__module__
    if not mod.startswith("cupy"):
        try:
            a = np.asarray(a)
        except Exception as exc:
            raise InputError(f"{name} could not be converted to an array: {exc}") from None
    dt = a.dtype
    if dt.kind == "c":
        raise InputError(f"{name} must be real; got complex values (dtype {dt})")
    if dt.kind not in "fiub":
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError):
            raise InputError(f"{name} must be numeric, got dtype {dt}") from None
    elif dt.kind != "f" or dt.itemsize < 4:
        a = a.astype(np.float64)
    return a


class _Source:
    """Row access to the spectra: arrays (NumPy, CuPy, memmap, h5py...) or an iterator."""

    def __init__(self, x: Any, Y: Any, weights: Any, nan_policy: str) -> None:
        self.nan_policy = nan_policy
        self.iterator: Iterator[Any] | None = None
        self.Y = None
        self.k: int | None = None
        if _is_sliceable(Y):
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
            except (TypeError, ValueError):
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
        self.x = x
        self.weights = weights
        self._check_x_w()

    def _check_x_w(self) -> None:
        x = self.x
        if x is None:
            if self.iterator is not None:
                return  # every chunk brings its own x: (x_i, Y_i) pairs
            raise InputError("x is missing")
        if not _is_sliceable(x):
            x = _as_2d_float("x", x, np)
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
            xs = _as_2d_float("x", xs, np)
            if not np.all(np.isfinite(xs)):
                bad = np.flatnonzero(~np.isfinite(xs))
                raise InputError(f"x contains {bad.size} non-finite value(s), first at index "
                                 f"{bad[0]}; a shared x must be finite (pad Y with NaN instead)")
            self.x_host = xs.astype(np.float64)
        w = self.weights
        if w is not None:
            if not _is_sliceable(w):
                w = _as_2d_float("weights", w, np)
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
                wh = _as_2d_float("weights", to_numpy(w), np).astype(np.float64)
                _check_weights(wh)
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
            Yi = _as_2d_float("Y chunk", Yi, get_xp(Yi))
            if Yi.ndim == 1:
                Yi = Yi[None, :]
            if Yi.ndim != 2:
                raise InputError(f"each chunk must be 2-D (k_i, m); got shape {Yi.shape}")
            if self.m is None:
                self.m = Yi.shape[1]
                _Source._check_shared_len(xi, self.m)
            if Yi.shape[1] != self.m:
                raise InputError(f"chunk at row {row} has {Yi.shape[1]} points; the first chunk "
                                 f"had {self.m}")
            xi = _as_2d_float("x", xi, get_xp(xi))
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


def _is_sliceable(a: Any) -> bool:
    return hasattr(a, "shape") and hasattr(a, "__getitem__") and hasattr(a, "dtype")


def _check_weights(w: Any) -> None:
    xp = get_xp(w)
    if not bool(xp.all(xp.isfinite(w))):
        raise InputError("weights contain non-finite values; use 0 for points to ignore")
    if bool(xp.any(w < 0)):
        raise InputError("weights must be >= 0")


# =============================================================================================
# the fit of one block of rows
# =============================================================================================
@dataclass(frozen=True)
class _Spec:
    model: GaussianModel
    opts: FitOptions
    algorithm: str
    lo: np.ndarray
    hi: np.ndarray
    dtype: np.dtype
    start_method: str | None
    start_array: np.ndarray | None  # (P,) or (k, P), original units
    nan_policy: str
    sort: bool
    method: str = "full"


_FIELDS_F = ("sse", "rsquare", "adjrsquare", "rmse", "firstorderopt")
_FIELDS_I = ("dfe", "iterations", "funcCount", "exitflag", "numobs")


def _empty_result(k: int, P: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {
        "p": np.full((k, P), np.nan), "stderr": np.full((k, P), np.nan),
        "start": np.full((k, P), np.nan), "held": np.zeros((k, P), dtype=bool),
        "state": np.full(k, int(FitState.NOT_FITTED), dtype=np.int8),
    }
    for f in _FIELDS_F:
        out[f] = np.full(k, np.nan)
    for f in _FIELDS_I:
        out[f] = np.zeros(k, dtype=np.int64)
    out["_timings"] = np.zeros((1, 2))  # seconds in (start estimation, solver) of a block
    return out


def _fit_block(backend: _Backend, spec: _Spec, x: Any, Y: Any, W: Any,
               row0: int) -> dict[str, np.ndarray]:
    """Fit the rows of one block; host arrays of every result field."""
    xp = backend.xp
    model = spec.model
    P = model.n_params
    Y = _as_2d_float("Y", backend.asarray(Y), xp)
    k, m = Y.shape
    x = _as_2d_float("x", backend.asarray(x), xp)
    if W is not None:
        W = backend.asarray(W).astype(xp.float64)
        if W.ndim == 2:
            _check_weights(W)
    if x.ndim == 1 and not bool(xp.all(x[1:] >= x[:-1])):
        # a shared x given unsorted: sort the columns (stably, as fit_gaussians)
        if not bool(xp.all(xp.isfinite(x))):
            raise InputError("a shared x must be finite (pad Y with NaN instead)")
        order = xp.argsort(x, kind="stable") if xp is np else xp.argsort(x)
        x = x[order]
        Y = Y[:, order]
        if W is not None:
            W = W[..., order]
    out = _empty_result(k, P)

    # ---------------------------------------------------------------- validation -> states
    finite_y = xp.isfinite(Y)
    inf_row = xp.any(xp.isinf(Y), axis=1)
    valid = finite_y
    if x.ndim == 2:
        inf_row = inf_row | xp.any(xp.isinf(x), axis=1)
        valid = valid & xp.isfinite(x)
    ragged_row = ~xp.all(valid, axis=1)
    nvalid = valid.sum(axis=1)
    nonfinite = inf_row
    if spec.nan_policy == "pad":
        v8 = valid.astype(xp.int8)
        first = xp.argmax(v8, axis=1)
        last = m - 1 - xp.argmax(v8[:, ::-1], axis=1)
        contiguous = (nvalid == 0) | (nvalid == last - first + 1)
        nonfinite = nonfinite | ~contiguous
    npos = nvalid if W is None else (valid & (W > 0)).sum(axis=1)
    insufficient = ~nonfinite & (npos < P)
    Yv_hi = xp.where(valid, Y, -xp.inf).max(axis=1)
    Yv_lo = xp.where(valid, Y, xp.inf).min(axis=1)
    constant = ~nonfinite & ~insufficient & (Yv_hi == Yv_lo)
    fit = ~(nonfinite | insufficient | constant)
    state = xp.full(k, int(FitState.NOT_FITTED), dtype=xp.int8)
    state = xp.where(nonfinite, int(FitState.NONFINITE_INPUT), state)
    state = xp.where(insufficient, int(FitState.INSUFFICIENT_DATA), state)
    state = xp.where(constant, int(FitState.CONSTANT_DATA), state)
    out["state"] = backend.to_host(state).astype(np.int8)
    out["exitflag"][:] = np.where(backend.to_host(constant), EXITFLAG_CONSTANT,
                                  EXITFLAG_NOT_FITTED)
    out["numobs"][:] = backend.to_host(nvalid)

    fit_h = backend.to_host(fit)
    ragged_h = backend.to_host(ragged_row)
    for ragged in (False, True):
        rows_h = np.flatnonzero(fit_h & (ragged_h == ragged))
        if rows_h.size == 0:
            continue
        rows = xp.asarray(rows_h)
        res = _solve_group(backend, spec, x, Y, W, valid, rows, rows_h, ragged, row0)
        for key, val in res.items():
            if key == "_timings":
                out[key] += val
            else:
                out[key][rows_h] = val
    return out


def _solve_group(backend: _Backend, spec: _Spec, x: Any, Y: Any, W: Any, valid: Any,
                 rows: Any, rows_h: np.ndarray, ragged: bool, row0: int) -> dict[str, Any]:
    """Scale, start, solve and summarise rows that share a layout (all valid, or ragged)."""
    xp = backend.xp
    model = spec.model
    P = model.n_params
    n3 = 3 * model.n
    dt = spec.dtype
    every = rows_h.size == Y.shape[0]  # the whole block: no gather copies
    Yg = Y if every else Y[rows]
    kg, m = Yg.shape
    xg = x if x.ndim == 1 or every else x[rows]
    Wg = None if W is None else (W if W.ndim == 1 or every else W[rows])
    vg = None
    if ragged:
        vg = valid if every else valid[rows]
        # points beyond the data of a row: weight 0, y 0, x = the row's first valid x (keeps
        # every model value finite there)
        X = xp.broadcast_to(xg, (kg, m)) if xg.ndim == 1 else xg
        first = xp.argmax(vg.astype(xp.int8), axis=1)
        x_fill = xp.take_along_axis(X, first[:, None], axis=1)
        xg = xp.where(vg, X, x_fill)
        Yg = xp.where(vg, Yg, 0.0)
        if xg.ndim == 2:
            # sort each row by x (valid points first); stable, as fit_gaussians
            key = xp.where(vg, xg, xp.inf)
            if not bool(xp.all(key[:, 1:] >= key[:, :-1])):
                o = xp.argsort(key, axis=1, kind="stable") if xp is np else xp.argsort(key,
                                                                                       axis=1)
                xg = xp.take_along_axis(xg, o, axis=1)
                Yg = xp.take_along_axis(Yg, o, axis=1)
                vg = xp.take_along_axis(vg, o, axis=1)
                if Wg is not None:
                    Wg = xp.take_along_axis(xp.broadcast_to(Wg, (kg, m)), o, axis=1)
    elif xg.ndim == 2:
        if not bool(xp.all(xg[:, 1:] >= xg[:, :-1])):
            o = xp.argsort(xg, axis=1, kind="stable") if xp is np else xp.argsort(xg, axis=1)
            xg = xp.take_along_axis(xg, o, axis=1)
            Yg = xp.take_along_axis(Yg, o, axis=1)
            if Wg is not None:
                Wg = xp.take_along_axis(xp.broadcast_to(Wg, (kg, m)), o, axis=1)

    lo, hi = spec.lo, spec.hi
    scal = Scaling.for_data(model, xg, Yg, lo, hi, valid=vg)

    # ---------------------------------------------------------------- start points
    t0 = time.perf_counter()
    p0 = _start_points(backend, spec, xg, Yg, vg, rows_h, row0)
    p0 = xp.clip(p0, xp.asarray(lo), xp.asarray(hi))

    # ---------------------------------------------------------------- solve (scaled)
    xi = scal.x_in(xg).astype(dt)
    yi = scal.y_in(Yg).astype(dt)
    sw = None
    if Wg is not None or vg is not None:
        sw = xp.sqrt(Wg) if Wg is not None else xp.ones((), dtype=xp.float64)
        if vg is not None:
            sw = xp.where(vg, sw, 0.0)
        sw = sw.astype(dt)
    lo_i, hi_i = scal.bounds_in(lo, hi)
    p0i = scal.params_in(p0).astype(dt)
    t1 = time.perf_counter()
    evaluator = backend.make_evaluator(model, xi, yi, sw)
    res = least_squares(
        evaluator, p0i, lo_i.astype(dt), hi_i.astype(dt), model=model, method=spec.method,
        tol_fun=spec.opts.tol_fun,
        tol_x=spec.opts.tol_x, max_iter=spec.opts.max_iter,
        max_fun_evals=spec.opts.max_fun_evals, algorithm=spec.algorithm,
        lam0=1.0 if spec.start_array is not None else initial_damping(spec.start_method),
        check_every=backend.check_every,
    )
    ps = res.p.astype(xp.float64)
    t2 = time.perf_counter()
    p = scal.params_out(ps)
    held = res.held
    lo_d, hi_d = xp.asarray(lo), xp.asarray(hi)
    p = xp.where(held & (xp.abs(p - lo_d) <= 1e-12 * xp.maximum(1, xp.abs(lo_d))), lo_d, p)
    p = xp.where(held & (xp.abs(p - hi_d) <= 1e-12 * xp.maximum(1, xp.abs(hi_d))), hi_d, p)
    sy = scal.sy[:, 0]
    sse = res.sse.astype(xp.float64) * sy * sy
    fo = res.firstorderopt.astype(xp.float64) * sy

    # ---------------------------------------------------------------- statistics
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        cov_s = _inverse_free(xp, res.A.astype(xp.float64), ~held)
        T = scal.params_out_jacobian(ps)
        cov = T @ cov_s @ T.transpose(0, 2, 1)
        var = xp.diagonal(cov, axis1=1, axis2=2)

    if spec.sort:
        p, perm = model.sort_peaks(p)
        idx = xp.concatenate(
            [(3 * perm[:, :, None] + xp.arange(3)[None, None, :]).reshape(kg, n3),
             xp.broadcast_to(xp.arange(n3, P), (kg, P - n3))], axis=1)
        held = xp.take_along_axis(held, idx, axis=1)
        p0 = xp.take_along_axis(p0, idx, axis=1)
        var = xp.take_along_axis(var, idx, axis=1)
    active = held & ((p <= lo_d) | (p >= hi_d))
    numobs = (vg.sum(axis=1) if vg is not None else xp.full(kg, m)).astype(xp.int64)
    dfe = numobs - P + active.sum(axis=1)
    # total sum of squares about the (weighted) mean, over the valid points
    Yd = Yg.astype(xp.float64, copy=False)
    with np.errstate(invalid="ignore", divide="ignore"):
        if Wg is None and vg is None:
            dev = Yd - Yd.mean(axis=1, keepdims=True)
            sst = (dev * dev).sum(axis=1)
            del dev
        else:
            w_all = xp.broadcast_to(xp.ones((1, m)) if Wg is None else Wg, (kg, m))
            if vg is not None:
                w_all = xp.where(vg, w_all, 0.0)
            ybar = (w_all * Yd).sum(axis=1) / w_all.sum(axis=1)
            sst = (w_all * (Yd - ybar[:, None]) ** 2).sum(axis=1)
        rsq = xp.where(sst != 0, 1.0 - sse / xp.where(sst != 0, sst, 1.0), -xp.inf)
        rsq = xp.where((sst == 0) & (sse == 0), xp.nan, rsq)
        dfe_pos = dfe > 0
        dfe_safe = xp.where(dfe_pos, dfe, 1)
        adj = xp.where(dfe_pos, 1.0 - (1.0 - rsq) * (numobs - 1) / dfe_safe, xp.nan)
        rmse = xp.where(dfe_pos, xp.sqrt(sse / dfe_safe), xp.nan)
        se = xp.sqrt(xp.maximum(var, 0.0) * (sse / dfe_safe / (sy * sy))[:, None])
        se = xp.where(dfe_pos[:, None] & ~active & xp.isfinite(se), se, xp.nan)
    flag = res.exitflag
    state = xp.where(flag > 0, int(FitState.CONVERGED), int(FitState.NOT_FITTED))
    state = xp.where(flag == 0, int(FitState.MAX_ITERATIONS), state)
    state = xp.where(flag == -1, int(FitState.NONFINITE_MODEL), state)
    state = xp.where(flag == -2, int(FitState.SINGULAR), state)
    h = backend.to_host
    return {
        "p": h(p), "stderr": h(se), "start": h(p0), "held": h(held),
        "state": h(state).astype(np.int8), "sse": h(sse), "rsquare": h(rsq),
        "adjrsquare": h(adj), "rmse": h(rmse), "firstorderopt": h(fo),
        "dfe": h(xp.where(dfe_pos, dfe, 0)), "iterations": h(res.iterations),
        "funcCount": h(res.nfev), "exitflag": h(flag), "numobs": h(numobs),
        "_timings": np.array([[t1 - t0, t2 - t1]]),
    }


def _start_points(backend: _Backend, spec: _Spec, xg: Any, Yg: Any, vg: Any,
                  rows_h: np.ndarray, row0: int) -> Any:
    """Start points (kg, P), original units, for the rows of a group."""
    xp = backend.xp
    model = spec.model
    P = model.n_params
    kg = Yg.shape[0]
    if spec.start_array is not None:
        s = spec.start_array
        s = s[None, :] if s.ndim == 1 else s[row0 + rows_h]
        return xp.asarray(np.broadcast_to(s, (kg, P)), dtype=xp.float64).copy()
    method = spec.start_method
    kw: dict[str, Any] = {}
    if method == "auto":
        kw = {"smooth": None, "downsample": None, "n_trials": None, "options": spec.opts}
    if vg is None:
        p0 = xp.asarray(estimate_start(model, xg, Yg, method, **kw), dtype=xp.float64)
    else:
        # ragged rows: one call per distinct pattern of valid points, on those points only
        p0 = xp.empty((kg, P), dtype=xp.float64)
        vg_h = backend.to_host(vg)
        packed = np.ascontiguousarray(np.packbits(vg_h, axis=1))
        keys = packed.view(np.dtype((np.void, packed.shape[1])))[:, 0]
        _, inverse = np.unique(keys, return_inverse=True)
        for g in range(int(inverse.max()) + 1):
            members = np.flatnonzero(inverse == g)
            cols = np.flatnonzero(vg_h[members[0]])
            mem = xp.asarray(members)
            colsd = xp.asarray(cols)
            xs = xg[colsd] if xg.ndim == 1 else xg[mem][:, colsd]
            p0[mem] = xp.asarray(estimate_start(model, xs, Yg[mem][:, colsd], method, **kw),
                                 dtype=xp.float64)
    bad = ~xp.all(xp.isfinite(p0), axis=1)
    if bool(xp.any(bad)):
        warnings.warn(f"{int(bad.sum())} start point estimate(s) were not finite; using a "
                      "generic start for those spectra", FitWarning, stacklevel=4)
        p0 = xp.nan_to_num(p0, nan=1.0, posinf=1.0, neginf=-1.0)
    return p0



def _inverse_free(xp: ModuleType, A: Any, free: Any) -> Any:
    """Batched inverse of ``A`` restricted to the free coefficients (held rows/cols -> 0)."""
    P = A.shape[1]
    fm = free[:, :, None] & free[:, None, :]
    eye = xp.eye(P, dtype=A.dtype)
    M = xp.where(fm, A, 0.0) + eye * (~free)[:, :, None]
    try:
        inv = xp.linalg.inv(M)
    except np.linalg.LinAlgError:  # NumPy: some row is exactly singular; invert the others
        inv = xp.full_like(M, xp.nan)
        ok = xp.isfinite(M).all(axis=(1, 2))
        ok[ok] = xp.linalg.det(M[ok]) != 0
        try:
            inv[ok] = xp.linalg.inv(M[ok])
        except np.linalg.LinAlgError:
            for i in np.flatnonzero(to_numpy(ok)):
                try:
                    inv[i] = xp.linalg.inv(M[i])
                except np.linalg.LinAlgError:
                    pass
    return xp.where(fm, inv, 0.0)


# =============================================================================================
# chunk scheduling, with retries on out-of-memory
# =============================================================================================
def _run_rows(fit: Callable[[int, int], dict[str, np.ndarray]], a: int, b: int,
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


def _concat(parts: list[dict[str, np.ndarray]], P: int) -> dict[str, np.ndarray]:
    if not parts:
        return _empty_result(0, P)
    return {key: np.concatenate([pt[key] for pt in parts], axis=0) for key in parts[0]}


# =============================================================================================
# public entry point
# =============================================================================================
def fit_gaussians_batch(
    x: Any,
    Y: Any,
    n: int = 4,
    *,
    baseline: str = "none",
    device: str = "auto",
    dtype: str = "float64",
    start: Any = "auto",
    lower: Any = None,
    upper: Any = None,
    weights: Any = None,
    tol_fun: float | None = None,
    tol_x: float | None = None,
    max_iter: int | None = None,
    max_fun_evals: int | None = None,
    algorithm: str | None = None,
    options: FitOptions | None = None,
    nan_policy: str = "pad",
    sort: bool = True,
    chunk_size: int | None = None,
    n_threads: int | None = None,
    check_every: int | None = None,
    progress: bool = False,
    method: str = "full",
) -> BatchFit:
    """Fit a sum of ``n`` Gaussians to every spectrum (row) of ``Y``.

    Each row is fitted as :func:`peakfit.fit_gaussians` would fit it alone (same scaling,
    start point, bounded Levenberg-Marquardt / trust-region solver, tolerances and result
    formulas), vectorised over rows on the CPU or on a CUDA GPU.

    Parameters
    ----------
    x : array_like, shape (m,) or (k, m)
        Shared abscissa, or one per spectrum. Need not be sorted.
    Y : array_like (k, m), CuPy array, np.memmap, h5py dataset, or iterable of chunks
        One spectrum per row. CuPy input stays on the device (no host copy). An iterable
        yields ``(k_i, m)`` arrays (or ``(x_i, Y_i)`` pairs) and is fitted chunk by chunk with
        bounded memory. Ragged spectra: pad rows with NaN at the ends, or give zero weights.
    n : int or 'auto'
        Number of Gaussian peaks; ``'auto'`` chooses it per spectrum by BIC and returns a
        :class:`peakfit.selection.AutoBatchFit` (NaN-padded; other criteria through
        :func:`peakfit.selection.fit_auto_batch`).
    baseline : {'none', 'constant', 'linear', 'quadratic', 'exponential'}
    device : {'auto', 'cpu', 'gpu'}
        ``'auto'`` uses the GPU when CuPy and a CUDA device are present, else the CPU; the
        result's ``device`` says which.
    dtype : {'float64', 'float32'}
        Working precision of the solver (sums of squares always accumulate in float64).
    start : {'auto', 'matlab'} or array_like (P,) or (k, P)
        Start-point estimator, or explicit start points in coefficient order.
    lower, upper : array_like (P,), optional
        Bounds; MATLAB's defaults (``c >= 0``) when omitted.
    weights : array_like (m,) or (k, m), optional
        Non-negative weights; the fit minimises ``sum(w (y - f)^2)``.
    tol_fun, tol_x, max_iter, max_fun_evals, algorithm :
        As in :func:`peakfit.fitoptions` (defaults ``1e-6, 1e-6, 400, 600, 'Trust-Region'``).
    options : FitOptions, optional
        Options to start from; explicit keyword arguments override them. ``Robust``,
        ``Normalize`` and ``Exclude`` are not supported in batches (use ``weights``).
    nan_policy : {'pad', 'omit'}
        ``'pad'``: NaN at the start/end of a row is padding (ragged spectra), NaN between
        valid points flags the row ``nonfinite_input``. ``'omit'``: every NaN is a missing
        point.
    sort : bool
        Order the terms of each row by ascending centre.
    chunk_size : int, optional
        Rows per chunk. Default: 2048 on the CPU, from free memory on the GPU. Out-of-memory
        errors retry the chunk in smaller pieces.
    n_threads : int, optional
        CPU worker threads (default: the number of usable cores, at most 2 chunks per core).
        On the CPU the normal equations are evaluated by the current engine
        (:func:`peakfit.get_engine`: the compiled Numba kernels when ``peakfit[numba]`` is
        installed, else NumPy; change it with :func:`peakfit.use_engine`). The engine changes
        the speed, not the results (equal to rounding); ``BatchFit.engine`` says which ran.
    check_every : int, optional
        Iterations between compactions of the unfinished rows (host synchronisations on the
        GPU). Default 1 on the CPU, 4 on the GPU. Results do not depend on it.
    progress : bool
        Show a progress bar (needs ``tqdm``).
    method : {'full', 'vp', 'auto'}
        Least-squares algorithm, as in :func:`peakfit.fit_gaussians`: the full solver, variable
        projection (:mod:`peakfit.solvers.vp`), or VP where the heights and baseline are
        unbounded.

    Returns
    -------
    BatchFit

    Raises
    ------
    InputError
        Mismatched shapes, non-numeric or complex data, bad options.
    GPUUnavailableError
        ``device='gpu'`` without CuPy or a CUDA device.

    Examples
    --------
    >>> import numpy as np, peakfit
    >>> x = np.linspace(0, 100, 500)
    >>> centres = np.array([[30.0, 60.0], [35.0, 70.0]])
    >>> Y = sum(np.exp(-((x - centres[:, i:i + 1]) / 5.0) ** 2) for i in range(2))
    >>> r = peakfit.fit_gaussians_batch(x, Y, n=2, device='cpu')
    >>> np.round(r.means, 6).tolist()
    [[30.0, 60.0], [35.0, 70.0]]
    >>> r.state_names.tolist(), r.device
    (['converged', 'converged'], 'cpu')
    """
    from .selection import _is_auto, fit_auto_batch

    if _is_auto(n):  # n='auto': one batch per candidate n, chosen per row (peakfit.selection)
        return fit_auto_batch(  # type: ignore[return-value]
            x, Y, n, baseline=baseline, device=device, dtype=dtype, start=start, lower=lower,
            upper=upper, weights=weights, tol_fun=tol_fun, tol_x=tol_x, max_iter=max_iter,
            max_fun_evals=max_fun_evals, algorithm=algorithm, options=options,
            nan_policy=nan_policy, sort=sort, chunk_size=chunk_size, n_threads=n_threads,
            check_every=check_every)
    t_start = time.perf_counter()
    model = GaussianModel(n, baseline)
    P = model.n_params
    opts = _batch_options(model, options, lower=lower, upper=upper, tol_fun=tol_fun,
                          tol_x=tol_x, max_iter=max_iter, max_fun_evals=max_fun_evals,
                          algorithm=algorithm)
    algo = opts.effective_algorithm(model)
    if algo != opts.algorithm:
        warnings.warn("Levenberg-Marquardt cannot handle bounds; using Trust-Region instead "
                      "(MATLAB: curvefit:fit:usingTrustRegion)", FitWarning, stacklevel=2)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise InputError(f"dtype must be 'float64' or 'float32', got {dtype!r}") from None
    if dt not in (np.float64, np.float32):
        raise InputError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    policy = str(nan_policy).lower()
    if policy not in ("pad", "omit"):
        raise InputError(f"nan_policy must be 'pad' or 'omit', got {nan_policy!r}")
    if check_every is not None and (isinstance(check_every, bool) or int(check_every) < 1):
        raise InputError(f"check_every must be an integer >= 1, got {check_every!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or int(chunk_size) < 1):
        raise InputError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")

    backend = _select_backend(device, Y, None if check_every is None else int(check_every))
    source = _Source(x, Y, weights, policy)

    # start: a method name or an array
    start_method: str | None = None
    start_array: np.ndarray | None = None
    if opts.start_point is not None and (start is None or isinstance(start, str)):
        start = opts.start_point
    if start is None:
        start = "auto"
    if isinstance(start, str):
        start_method = start.lower()
        if start_method not in ("auto", "matlab"):
            raise InputError(f"unknown start method {start!r}: use 'auto', 'matlab' or an array")
    else:
        start_array = _as_2d_float("start", to_numpy(start), np).astype(np.float64)
        if start_array.ndim == 2 and start_array.shape[0] == 1:
            start_array = start_array[0]
        want = f"({P},) or (k, {P})"
        if start_array.ndim not in (1, 2) or start_array.shape[-1] != P:
            raise InputError(f"start has shape {start_array.shape}; expected {want} for "
                             f"{model.matlab_name} ({', '.join(model.names)})")
        if start_array.ndim == 2 and source.k is not None and start_array.shape[0] != source.k:
            raise InputError(f"start has {start_array.shape[0]} rows but Y has {source.k}")
        if start_array.ndim == 2 and source.k is None:
            raise InputError("with an iterator of chunks, start must be one shared vector")
        if not np.all(np.isfinite(start_array)):
            raise InputError("start contains non-finite values")

    lo, hi = opts.bounds(model)
    resolve_method(method, model, lo, hi)  # an unknown or inapplicable method fails here
    spec = _Spec(model, opts, algo, lo, hi, dt, start_method, start_array, policy, bool(sort),
                 method)

    m_guess = source.m or 1000
    workers = 1 if backend.name == "gpu" else _n_workers(n_threads)
    engine = "cupy" if backend.name == "gpu" else get_engine()
    if chunk_size is None:
        chunk = int(backend.chunk_rows(m_guess, P, dt.itemsize))
        if backend.name == "cpu" and source.k is not None and workers > 1:
            # several chunks per worker so that both cores stay busy until the end
            chunk = min(chunk, max(256, -(-source.k // (4 * workers))))
    else:
        chunk = int(chunk_size)
    state = {"chunk": chunk}
    lock = threading.Lock()

    def on_oom(rows: int) -> None:
        backend.release()
        warnings.warn(f"out of memory fitting {rows} spectra at once; retrying in chunks of "
                      f"{max(1, rows // 2)}", FitWarning, stacklevel=3)

    def fit_chunk(row0: int, xc: Any, Yc: Any, Wc: Any) -> list[tuple[int, dict]]:
        def fit(a: int, b: int) -> dict[str, np.ndarray]:
            xa = xc if np.ndim(xc) == 1 or (hasattr(xc, "ndim") and xc.ndim == 1) else xc[a:b]
            wa = Wc if Wc is None or Wc.ndim == 1 else Wc[a:b]
            return _fit_block(backend, spec, xa, Yc[a:b], wa, row0 + a)

        got, limit = _run_rows(fit, 0, Yc.shape[0], backend.oom, on_oom, state["chunk"])
        with lock:
            state["chunk"] = min(state["chunk"], limit)
        parts = [(row0 + a, r) for a, r in got]
        return parts

    parts: list[tuple[int, dict[str, np.ndarray]]] = []
    with contextlib.ExitStack() as stack:
        bar = _progress_bar(progress, source.k)
        if bar is not None:
            stack.callback(bar.close)
        stack.enter_context(_blas_single_thread(workers > 1))

        def collect(got: list[tuple[int, dict[str, np.ndarray]]]) -> None:
            parts.extend(got)
            if bar is not None:
                bar.update(sum(r["p"].shape[0] for _, r in got))

        if workers == 1:
            for row0, xc, Yc, Wc in source.chunks(chunk):
                collect(fit_chunk(row0, xc, Yc, Wc))
        else:
            with ThreadPoolExecutor(max_workers=workers) as ex:
                pending: list[Any] = []
                for row0, xc, Yc, Wc in source.chunks(chunk):
                    # chunks are read here, in one thread (h5py datasets, iterators); at most
                    # ``workers + 1`` chunks are in memory at a time
                    Yc = Yc if type(Yc).__module__.startswith("cupy") else np.asarray(Yc)
                    pending.append(ex.submit(fit_chunk, row0, xc, Yc, Wc))
                    while len(pending) > workers:
                        collect(pending.pop(0).result())
                for fut in pending:
                    collect(fut.result())
    parts.sort(key=lambda t: t[0])
    res = _concat([r for _, r in parts], P)
    keep_source = source if source.iterator is None else None
    return BatchFit(
        model=model, p=res["p"], stderr=res["stderr"], sse=res["sse"], rsquare=res["rsquare"],
        adjrsquare=res["adjrsquare"], dfe=res["dfe"], rmse=res["rmse"],
        iterations=res["iterations"], funcCount=res["funcCount"], exitflag=res["exitflag"],
        state=res["state"].astype(np.int8), start=res["start"], held=res["held"],
        firstorderopt=res["firstorderopt"], numobs=res["numobs"], device=backend.label,
        dtype=str(dt), options=opts, algorithm=algo, sorted=bool(sort),
        elapsed=time.perf_counter() - t_start, _source=keep_source,
        timings={"start": float(res["_timings"][:, 0].sum()),
                 "solve": float(res["_timings"][:, 1].sum())},
        engine=engine,
    )


def _batch_options(model: GaussianModel, options: FitOptions | None, **kw: Any) -> FitOptions:
    given = {k: v for k, v in kw.items() if v is not None}
    if options is None:
        opts = fitoptions(model, **given)
    else:
        if not isinstance(options, FitOptions):
            raise InputError(f"options must be a FitOptions, got {type(options).__name__}")
        opts = options.replace(**given) if given else options
        if opts.lower is None:
            opts = opts.replace(lower=model.default_lower())
    opts.check_lengths(model)
    if opts.robust != "off":
        raise InputError("Robust fitting is not supported by fit_gaussians_batch; use "
                         "fit_gaussians per spectrum")
    if opts.normalize:
        raise InputError("Normalize is not supported by fit_gaussians_batch (each spectrum is "
                         "scaled internally anyway)")
    if opts.exclude is not None:
        raise InputError("Exclude is not supported by fit_gaussians_batch; give those points "
                         "weight 0 (weights=...) or NaN")
    if opts.weights is not None:
        raise InputError("pass weights to fit_gaussians_batch as weights=..., not in options")
    return opts


def _n_workers(n_threads: int | None) -> int:
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
def _blas_single_thread(active: bool) -> Iterator[None]:
    """Limit the BLAS library to one thread while our own worker threads run.

    The solver's matrix products are small (``(P+1) x m`` per spectrum); a multi-threaded
    BLAS only adds synchronisation and competes with the worker threads. Uses threadpoolctl
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

def _progress_bar(progress: bool, total: int | None) -> Any:
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        warnings.warn('progress=True needs tqdm (pip install "peakfit[progress]"); continuing '
                      "without a progress bar", FitWarning, stacklevel=3)
        return None
    return tqdm(total=total, unit="spectra", desc="peakfit")
