"""GPU support: CuPy discovery, memory sizing, and the fused normal-equations kernel.

Everything here is optional: importing :mod:`peakfit.gpu` never imports CuPy. The batch fitter
(:func:`peakfit.fit_gaussians_batch`) calls :func:`require_cupy` when ``device='gpu'`` (or
``'auto'`` finds a device) and then runs the same xp-generic pipeline as on the CPU, with
:class:`~peakfit.gpu.kernels.FusedNormalEquations` as the evaluator of the solver.

Install: ``pip install "peakfit[gpu]"`` (CuPy for CUDA 12).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from ..errors import GPUUnavailableError
from .kernels import FusedNormalEquations, generate_source, get_kernel, kernel_name

__all__ = [
    "FusedNormalEquations",
    "auto_chunk_rows",
    "available",
    "device_label",
    "free_memory_pool",
    "generate_source",
    "get_kernel",
    "kernel_name",
    "oom_errors",
    "probe",
    "require_cupy",
    "work_elements",
]

INSTALL_HINT = (
    'install CuPy for your CUDA version, e.g. pip install "peakfit[gpu]" (cupy-cuda12x), '
    "or use device='cpu'"
)


def require_cupy() -> ModuleType:
    """The ``cupy`` module, if it imports and sees a CUDA device.

    Raises
    ------
    GPUUnavailableError
        With the reason and how to install.
    """
    try:
        import cupy
    except ImportError as exc:
        raise GPUUnavailableError(f"device='gpu' needs CuPy, which is not installed: "
                                  f"{INSTALL_HINT}") from exc
    except Exception as exc:  # a broken CUDA install
        raise GPUUnavailableError(f"CuPy failed to import ({exc}); {INSTALL_HINT}") from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        raise GPUUnavailableError(f"device='gpu' needs a CUDA device, and CuPy found none "
                                  f"usable ({exc}): check the driver, or {INSTALL_HINT}"
                                  ) from exc
    if count < 1:
        raise GPUUnavailableError(f"device='gpu' needs a CUDA device, and CuPy found none; "
                                  f"{INSTALL_HINT}")
    reason = probe(cupy)
    if reason is not None:
        raise GPUUnavailableError(
            f"device='gpu': CuPy sees a CUDA device but could not compile and run peakfit's "
            f"kernel there ({reason}); {INSTALL_HINT}")
    return cupy


_PROBED: dict[int, str | None] = {}


def probe(cupy: ModuleType) -> str | None:
    """Compile and run a tiny generated kernel and a batched solve on the device.

    Returns None when they work and give the host's numbers, else the reason (cached per
    process). ``cupy`` importing and counting a device is not enough: without NVRTC or
    cuSOLVER (CuPy without its toolkit wheels) the first fit would fail.
    """
    key = id(cupy)
    if key not in _PROBED:
        _PROBED[key] = _probe(cupy)
    return _PROBED[key]


def _probe(cp: ModuleType) -> str | None:
    import numpy as np

    from ..models import GaussianModel

    try:
        model = GaussianModel(1)
        x = np.linspace(-2.0, 2.0, 33)
        y = model.evaluate(x, np.array([[1.5, 0.25, 0.75]]))
        ev = FusedNormalEquations(model, cp.asarray(x), cp.asarray(y))
        S, A, g = ev(cp.asarray([[1.0, 0.0, 1.0]]), cp.arange(1))
        step = cp.linalg.solve(A + cp.eye(3)[None], g[:, :, None])
        ref = np.sum((y[0] - model.evaluate(x, np.array([[1.0, 0.0, 1.0]]))[0]) ** 2)
        got = float(S[0])
        if not (abs(got - ref) <= 1e-9 * ref and bool(cp.isfinite(step).all())):
            return f"the test kernel gave {got!r} instead of {ref!r}"
    except Exception as exc:  # any failure (missing NVRTC, driver, cuSOLVER) means: unusable
        return f"{type(exc).__name__}: {exc}"
    return None


def available() -> bool:
    """True when CuPy imports and a CUDA device is visible."""
    try:
        require_cupy()
    except GPUUnavailableError:
        return False
    return True


def device_label() -> str:
    """``'gpu:<id> (<name>)'`` of the current CUDA device."""
    cp = require_cupy()
    dev = cp.cuda.Device()
    try:
        name = cp.cuda.runtime.getDeviceProperties(dev.id)["name"]
        name = name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # pragma: no cover - depends on the CUDA runtime
        name = "CUDA device"
    return f"gpu:{dev.id} ({name})"


def oom_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'out of device memory' (retry with fewer rows)."""
    errs: list[type[BaseException]] = [MemoryError]
    try:
        import cupy

        errs.append(cupy.cuda.memory.OutOfMemoryError)
    except Exception:  # pragma: no cover - no CuPy
        pass
    return tuple(errs)


def free_memory_pool() -> None:
    """Return CuPy's cached blocks to the device (after an out-of-memory error)."""
    try:
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()
    except Exception:  # pragma: no cover - no CuPy
        pass


def bytes_per_row(m: int, P: int, itemsize: int) -> int:
    """Rough peak device memory per spectrum of a chunk (bytes).

    Validation masks and float64 statistics (~40 bytes a point), the start estimator's
    float64 temporaries (~64), the scaled data and its points-major copy (2 x itemsize), plus
    the solver's per-row matrices (~12 P^2 doubles).
    """
    return int(m * (104 + 2 * itemsize) + 12 * 8 * P * P + 64 * P)


def auto_chunk_rows(m: int, P: int, itemsize: int, fraction: float = 0.5,
                    cap: int = 1 << 20) -> int:
    """Rows per chunk that fit in ``fraction`` of the free device memory (at most ``cap``)."""
    cp = require_cupy()
    free, _total = cp.cuda.Device().mem_info
    pool = cp.get_default_memory_pool()
    free += pool.free_bytes()
    rows = int(fraction * free // max(1, bytes_per_row(m, P, itemsize)))
    return max(1, min(cap, rows))


def work_elements(fraction: float = 0.25, itemsize: int = 8) -> int:
    """Elements of ``itemsize`` bytes that fit in ``fraction`` of the free device memory.

    The free memory counts the blocks CuPy's pool holds but does not use. The start
    (:func:`peakfit.autostart.auto_start`) sizes its chunks of spectra from it, so that a GPU
    works on a few large chunks rather than many small ones (launches and synchronisations are
    per chunk).
    """
    cp = require_cupy()
    free, _total = cp.cuda.Device().mem_info
    free += cp.get_default_memory_pool().free_bytes()
    return max(1, int(fraction * free) // max(1, int(itemsize)))


def _describe(obj: Any) -> str:  # pragma: no cover - debugging helper
    return f"{type(obj).__module__}.{type(obj).__name__}"
