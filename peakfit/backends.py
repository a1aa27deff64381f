"""Where the arithmetic runs: the device × engine choice, made once, as one :class:`Backend`.

The user-facing knobs are ``device=`` (``'auto'``, ``'cpu'``, ``'gpu'``) of the fitting
functions and the CPU engine setting of :mod:`peakfit.engine` (``set_engine``/``use_engine``/
``PEAKFIT_ENGINE``). :func:`select_backend` resolves both into a :class:`Backend`: the array
module, the evaluator of the normal equations, the out-of-memory errors, the chunk size and a
label. The pipeline (:mod:`peakfit.pipeline`) asks the backend, never the settings, and the
results say which backend ran (``device`` and ``engine``).

============  ==========  ====================================================================
device        engine      evaluator
============  ==========  ====================================================================
``cpu``       ``numpy``   :class:`peakfit.solvers.evaluators.NormalEquations` (NumPy)
``cpu``       ``numba``   the same class with the compiled kernel of ``solvers/_numba.py``
``gpu``       ``cupy``    :class:`peakfit.gpu.kernels.FusedNormalEquations` (CUDA kernel)
============  ==========  ====================================================================

Examples
--------
>>> from peakfit.backends import select_backend
>>> b = select_backend("cpu", engine="numpy")
>>> b.name, b.label, b.engine
('cpu', 'cpu', 'numpy')
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ._xp import cupy_or_none, to_numpy
from .engine import resolve_engine
from .errors import FitWarning, GPUUnavailableError, InputError

__all__ = ["CPU_CHUNK_ROWS", "Backend", "select_backend"]

#: Default rows per chunk on the CPU (bounded memory: ~60 bytes x m per row in flight).
CPU_CHUNK_ROWS = 2048


@dataclass
class Backend:
    """One resolved device × engine: everything the pipeline needs to know about it.

    Attributes
    ----------
    name : {'cpu', 'gpu'}
    xp : module
        NumPy or CuPy.
    label : str
        Where the fit ran, e.g. ``'cpu'`` or ``'gpu:0 (NVIDIA H100 80GB HBM3)'``.
    engine : {'numpy', 'numba', 'cupy'}
        Who evaluates the normal equations.
    oom : tuple of exception types
        Out-of-memory errors that make the scheduler retry a chunk in smaller pieces.
    check_every : int
        Iterations between compactions of the unfinished rows.
    evaluator : callable, optional
        ``evaluator(model, x, Y, sqrt_w)`` replacing the device's own evaluator (tests run the
        GPU path on the host this way).
    """

    name: str
    xp: ModuleType
    label: str
    engine: str
    oom: tuple[type[BaseException], ...]
    check_every: int
    evaluator: Callable[..., Any] | None = None

    def make_evaluator(self, model: Any, x: Any, Y: Any, sqrt_w: Any) -> Any:
        """The normal-equations evaluator of this backend for scaled data."""
        if self.evaluator is not None:
            return self.evaluator(model, x, Y, sqrt_w)
        if self.name == "gpu":
            from .gpu import FusedNormalEquations

            return FusedNormalEquations(model, x, Y, sqrt_w)
        from .solvers.evaluators import NormalEquations

        return NormalEquations(model, x, Y, sqrt_w, engine=self.engine)

    def chunk_rows(self, m: int, P: int, itemsize: int) -> int:
        """Default rows per chunk for spectra of ``m`` points and ``P`` coefficients."""
        if self.name == "gpu" and self.xp is not np:
            from . import gpu

            return int(gpu.auto_chunk_rows(m, P, itemsize))
        return CPU_CHUNK_ROWS

    def asarray(self, a: Any) -> Any:
        """``a`` as an array of this backend (host NumPy or device CuPy)."""
        if isinstance(a, np.ndarray) and self.xp is np:
            return a
        if self.name == "cpu":
            return to_numpy(a)
        return self.xp.asarray(a)

    @staticmethod
    def to_host(a: Any) -> np.ndarray:
        """``a`` as a host NumPy array (no copy when it is one)."""
        return a if isinstance(a, np.ndarray) else to_numpy(a)

    def release(self) -> None:
        """Give cached device memory back (after an out-of-memory error)."""
        if self.name == "gpu" and self.xp is not np:
            from . import gpu

            gpu.free_memory_pool()


def _cpu(check_every: int | None, engine: str | None) -> Backend:
    return Backend("cpu", np, "cpu", resolve_engine(engine), (MemoryError,),
                   1 if check_every is None else check_every)


def _gpu(check_every: int | None) -> Backend:
    from . import gpu

    cp = gpu.require_cupy()
    return Backend("gpu", cp, gpu.device_label(), "cupy", gpu.oom_errors(),
                   4 if check_every is None else check_every)


def select_backend(device: str = "auto", Y: Any = None, check_every: int | None = None,
                   engine: str | None = None) -> Backend:
    """Resolve ``device`` and the CPU engine setting into one :class:`Backend`.

    Parameters
    ----------
    device : {'auto', 'cpu', 'gpu'}
        ``'auto'``: the GPU when CuPy and a CUDA device are present (always when ``Y`` is a
        CuPy array), else the CPU.
    Y : array, optional
        The data; CuPy data select the GPU under ``'auto'``.
    check_every : int, optional
        Iterations between compactions (default 1 on the CPU, 4 on the GPU).
    engine : {'auto', 'numpy', 'numba'}, optional
        CPU engine; default: the current setting (:func:`peakfit.get_engine`).

    Raises
    ------
    InputError
        Unknown device or engine.
    GPUUnavailableError
        ``device='gpu'`` (or CuPy data) without CuPy or a CUDA device.
    """
    dev = str(device).lower()
    if dev not in ("auto", "cpu", "gpu", "cuda"):
        raise InputError(f"device must be 'auto', 'cpu' or 'gpu', got {device!r}")
    if dev == "cpu":
        return _cpu(check_every, engine)
    if dev in ("gpu", "cuda"):
        return _gpu(check_every)
    on_device = type(Y).__module__.startswith("cupy")
    if on_device or cupy_or_none() is not None:
        try:
            return _gpu(check_every)
        except GPUUnavailableError as exc:
            if on_device:
                raise
            warnings.warn(f"device='auto' found a GPU it cannot use, so fits run on the CPU: "
                          f"{exc}", FitWarning, stacklevel=3)
    return _cpu(check_every, engine)
