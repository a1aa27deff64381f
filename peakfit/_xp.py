"""Array-module helpers: the same code runs on NumPy and CuPy arrays."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["cupy_or_none", "get_xp", "to_numpy"]


def cupy_or_none() -> ModuleType | None:
    """Return the ``cupy`` module when it imports and sees a CUDA device, else None."""
    try:
        import cupy
    except Exception:  # ImportError, or a broken CUDA install
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:
        return None
    return cupy


def get_xp(*arrays: Any) -> ModuleType:
    """The array module (``numpy`` or ``cupy``) that owns ``arrays``.

    NumPy is returned unless one of the arrays is a CuPy array, without importing CuPy.
    """
    for a in arrays:
        mod = type(a).__module__
        if mod.startswith("cupy"):
            import cupy

            return cupy
    return np


def to_numpy(a: Any) -> np.ndarray:
    """Copy ``a`` to host memory as a NumPy array (no copy for NumPy input)."""
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)
