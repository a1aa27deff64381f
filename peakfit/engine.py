"""Which CPU engine computes the normal equations: NumPy (always there) or Numba (optional).

The least-squares algorithm is the same either way (:mod:`peakfit.solvers.lm`); the engine only
decides who evaluates ``S``, ``JᵀWJ`` and ``JᵀWr`` for the rows of a batch on the CPU:

``'numpy'``
    The fused NumPy path (always available; the reference).
``'numba'``
    A compiled kernel (:mod:`peakfit.solvers._numba`), 2.5-5x faster per evaluation; needs
    ``pip install "peakfit[numba]"``. The first call in a new environment compiles it (a few
    seconds, then cached on disk).
``'auto'`` (default)
    Numba when it imports, else NumPy.

The default comes from the environment variable ``PEAKFIT_ENGINE`` (``auto``, ``numpy`` or
``numba``) and can be changed for the process with :func:`set_engine` or for a block of code
with :func:`use_engine`. The GPU path (CuPy) does not depend on this setting.

Examples
--------
>>> import peakfit
>>> with peakfit.use_engine("numpy"):
...     peakfit.get_engine()
'numpy'
>>> peakfit.get_engine() in ("numpy", "numba")
True
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from .errors import InputError

__all__ = ["ENGINES", "get_engine", "numba_available", "resolve_engine", "set_engine",
           "use_engine"]

#: Accepted engine names.
ENGINES = ("auto", "numpy", "numba")

_setting: str | None = None  # set_engine(); None: the environment variable decides


def _check(name: object, where: str) -> str:
    e = str(name).strip().lower()
    if e not in ENGINES:
        raise InputError(f"{where} must be one of {', '.join(ENGINES)}; got {name!r}")
    return e


@lru_cache(maxsize=1)
def numba_available() -> bool:
    """True when the Numba kernel imports (Numba installed and compatible with NumPy)."""
    try:
        from .solvers import _numba  # noqa: F401
    except Exception:  # ImportError, or a Numba built for another NumPy
        return False
    return True


def resolve_engine(engine: str | None = None) -> str:
    """The concrete engine (``'numpy'`` or ``'numba'``) for a requested one.

    ``None`` means the current default (:func:`set_engine`, else ``PEAKFIT_ENGINE``, else
    ``'auto'``). Asking for ``'numba'`` without Numba raises :class:`~peakfit.InputError` saying
    how to install it.
    """
    if engine is None:
        engine = _setting if _setting is not None else os.environ.get("PEAKFIT_ENGINE", "auto")
        where = "the engine (PEAKFIT_ENGINE)" if _setting is None else "the engine"
    else:
        where = "engine"
    e = _check(engine, where)
    if e == "auto":
        return "numba" if numba_available() else "numpy"
    if e == "numba" and not numba_available():
        raise InputError(
            "engine 'numba' needs Numba: pip install \"peakfit[numba]\" (or use engine='numpy')"
        )
    return e


def get_engine() -> str:
    """The engine that CPU fits use now (``'numpy'`` or ``'numba'``)."""
    return resolve_engine(None)


def set_engine(engine: str | None) -> None:
    """Set the process-wide default engine (``None``: back to ``PEAKFIT_ENGINE``/``'auto'``).

    The choice is checked at once: ``set_engine('numba')`` without Numba raises.
    """
    global _setting
    if engine is None:
        _setting = None
        return
    e = _check(engine, "engine")
    resolve_engine(e)  # raises now if it cannot be used
    _setting = e


@contextmanager
def use_engine(engine: str | None) -> Iterator[str]:
    """Context manager: run a block with another default engine; yields the concrete engine.

    The setting is process-wide (worker threads started inside the block see it too).
    """
    global _setting
    old = _setting
    set_engine(engine)
    try:
        yield get_engine()
    finally:
        _setting = old
