"""A strict CuPy stand-in, so that the GPU path of peakfit runs on every test run.

Installed as ``sys.modules['cupy']`` by :func:`install` (in a fixture), it behaves as CuPy does
where it matters for correctness, and counts what matters for speed:

* **Device arrays of their own type** (:class:`ndarray`, ``__module__ == 'cupy'``), backed by
  NumPy. Like CuPy they refuse implicit conversion to NumPy (``np.asarray(a)`` raises
  ``TypeError``; ``a.get()`` and ``cupy.asnumpy(a)`` work), refuse NumPy arrays as operands
  and as arguments of ``cupy`` functions (``cupy.asarray``/``array`` excepted), return 0-d
  device arrays from reductions, and dispatch NumPy functions and ufuncs called on them
  (``np.exp(a)``) to their ``cupy`` namesakes (NEP 13/18), failing for names CuPy lacks.
* **The ``cupy`` functions the package uses**, each one only if it exists in CuPy 14
  (``tests/data/cupy_api_names.txt``, checked against the real module by
  ``tests/test_cupy_standin.py``); any other name raises ``AttributeError``.
* **``RawKernel`` served by the host build of the same generated source**: the CUDA text of
  :mod:`peakfit.gpu.kernels` is also C99 with a host loop ``<name>_host``; it is compiled with
  ``cc -shared -fPIC`` and called through ``ctypes``. Arguments are checked as CuPy does
  (device arrays, C-contiguous; NumPy scalars).
* **Counters** (:data:`COUNTS`): kernel launches (each array operation counts as one, as it
  is one CuPy kernel; ``RawKernel`` calls are counted apart), host synchronisations (``.get``,
  ``bool``/``int``/``float`` of a device array, data-dependent output sizes such as
  ``flatnonzero`` or boolean-mask indexing), bytes copied host to device and back, and bytes
  read and written by device operations (a model of memory traffic).
"""

from __future__ import annotations

import collections
import ctypes
import hashlib
import shutil
import subprocess
import sys
import tempfile
import threading
import types
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest

CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
NAMES_FILE = Path(__file__).resolve().parent / "data" / "cupy_api_names.txt"


@dataclass
class Counts:
    """What the device would have done since the last :meth:`reset`."""

    launches: int = 0  # array operations (one CuPy kernel each)
    raw_launches: int = 0  # RawKernel calls
    syncs: int = 0  # host synchronisations
    h2d_bytes: int = 0
    d2h_bytes: int = 0
    device_bytes: int = 0  # bytes read + written by array operations and RawKernels
    pinned_bytes: int = 0  # page-locked host memory allocated
    async_h2d_bytes: int = 0  # of h2d_bytes: copied on a non-default stream (overlappable)
    stream_waits: int = 0  # a stream waiting on an event (no host synchronisation)
    views: int = 0  # views made (basic indexing, reshape, ...): no kernel, no bytes in CuPy

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, 0)
        self.__dict__["sites"] = collections.Counter()
        self.__dict__["op_sites"] = {}

    def sync(self, n: int = 1) -> None:
        """Count ``n`` host synchronisations, and where in peakfit they happen (:attr:`sites`:
        ``'module.function:line'`` of the innermost peakfit frame -> count)."""
        if not n:
            return
        self.syncs += n
        self.__dict__.setdefault("sites", collections.Counter())[_site()] += n

    def op(self, launches: int, nbytes: int, raw: bool = False) -> None:
        """Count ``launches`` device operations (RawKernel calls with ``raw``) that read and
        write ``nbytes``, and where in peakfit they come from (:attr:`op_sites`:
        ``'module.function:line'`` -> ``[launches, raw_launches, bytes]``)."""
        if raw:
            self.raw_launches += launches
        else:
            self.launches += launches
        self.device_bytes += nbytes
        rec = self.__dict__.setdefault("op_sites", {}).setdefault(_site(), [0, 0, 0])
        rec[1 if raw else 0] += launches
        rec[2] += nbytes

    def by_function(self) -> dict[str, list[int]]:
        """:attr:`op_sites` summed by function (``'module.function'``), most bytes first."""
        out: dict[str, list[int]] = {}
        for where, rec in self.__dict__.get("op_sites", {}).items():
            acc = out.setdefault(where.rsplit(":", 1)[0], [0, 0, 0])
            for i in range(3):
                acc[i] += rec[i]
        return dict(sorted(out.items(), key=lambda kv: -kv[1][2]))

    def snapshot(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _site() -> str:
    """``'module.function:line'`` of the innermost peakfit frame of the caller ('?': none)."""
    f = sys._getframe(2)
    while f is not None and ("/peakfit/" not in f.f_code.co_filename.replace("\\", "/")
                            or f.f_code.co_filename.endswith("_xp.py")):
        f = f.f_back
    return "?" if f is None else (
        f"{Path(f.f_code.co_filename).stem}.{f.f_code.co_name}:{f.f_lineno}")


COUNTS = Counts()


def _api_names() -> tuple[set[str], set[str]]:
    top, linalg = set(), set()
    for line in NAMES_FILE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("linalg."):
            linalg.add(line[7:])
        elif "." not in line:
            top.add(line)
    return top, linalg


_SYNC_FUNCS = {"flatnonzero", "nonzero", "argwhere", "unique", "compress", "extract"}
#: Allocations without initialisation: CuPy takes them from its pool, no kernel runs.
_ALLOC_FUNCS = {"empty"}
_HOST_OK = {"asarray", "array", "asanyarray", "asnumpy"}


def _reject_numpy(v: Any, what: str) -> None:
    if isinstance(v, np.ndarray) and v.ndim > 0:
        raise TypeError(f"Unsupported type {type(v)} in {what} (CuPy does not mix host and "
                        "device arrays; use cupy.asarray)")


def _unwrap(v: Any, what: str) -> Any:
    if isinstance(v, ndarray):
        return v._a
    if isinstance(v, (list, tuple)):
        return type(v)(_unwrap(e, what) for e in v)
    _reject_numpy(v, what)
    return v


def _nbytes(v: Any) -> int:
    if isinstance(v, ndarray):
        return v._a.nbytes
    if isinstance(v, (list, tuple)):
        return sum(_nbytes(e) for e in v)
    return 0


def _wrap(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return ndarray(v)
    if isinstance(v, np.generic):  # CuPy reductions give 0-d device arrays, not scalars
        return ndarray(np.asarray(v))
    if isinstance(v, tuple):
        return tuple(_wrap(e) for e in v)
    if isinstance(v, list):
        return [_wrap(e) for e in v]
    return v


def _op(fn: Any, args: tuple, kwargs: dict, what: str, sync: bool = False) -> Any:
    a = _unwrap(args, what)
    k = {key: _unwrap(val, what) for key, val in kwargs.items()}
    out = fn(*a, **k)
    if isinstance(out, np.ndarray) and "out" not in k and any(
            isinstance(v, np.ndarray) and np.may_share_memory(out, v) for v in a):
        # a view of an operand (reshape, transpose, broadcast_to, diagonal, ...): CuPy makes
        # it without a kernel; whoever reads it is counted
        COUNTS.views += 1
    else:
        # read: the operands (an ``out=`` array is written, not read); written: the result
        COUNTS.op(1, _nbytes(args) + _nbytes([v for key, v in kwargs.items() if key != "out"])
                  + (out.nbytes if isinstance(out, np.ndarray) else 0))
    if sync:
        COUNTS.sync()
    return _wrap(out)


def _index(key: Any) -> tuple[Any, bool]:
    """A NumPy index for ``key``; True when its result size depends on data (a bool mask)."""
    parts = key if isinstance(key, tuple) else (key,)
    out, dep = [], False
    for p in parts:
        if isinstance(p, ndarray):
            dep |= p._a.dtype == bool
            out.append(p._a)
        else:
            out.append(p)
    return (tuple(out) if isinstance(key, tuple) else out[0]), dep


class ndarray:
    """A device array of the stand-in (NumPy memory, CuPy's rules)."""

    __array_priority__ = 1000

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    # -------------------------------------------------------------- attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T))

    def __repr__(self) -> str:
        return f"standin.{self._a!r}"

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self) -> Any:
        return (ndarray(np.asarray(v)) if not isinstance(v, np.ndarray) else ndarray(v)
                for v in self._a)

    # ---------------------------------------------------------- host transfers
    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use "
                        "`.get()` to construct a NumPy array explicitly.")

    def get(self, stream: Any = None, order: str = "C", out: Any = None) -> np.ndarray:
        COUNTS.sync()
        COUNTS.d2h_bytes += self._a.nbytes
        return np.array(self._a, order=order)

    def set(self, arr: Any, stream: Any = None) -> None:
        """Copy host ``arr`` in (CuPy's ``ndarray.set``; asynchronous on a stream)."""
        if not isinstance(arr, np.ndarray) or arr.shape != self._a.shape:
            raise ValueError("ndarray.set takes a host NumPy array of the same shape")
        if arr.dtype != self._a.dtype:
            raise TypeError("ndarray.set: the dtypes differ (CuPy does not convert)")
        self._a[...] = arr
        COUNTS.h2d_bytes += arr.nbytes
        if stream is not None and not getattr(stream, "null", False):
            COUNTS.async_h2d_bytes += arr.nbytes

    def _scalar(self) -> Any:
        if self._a.size != 1:
            raise ValueError("only a one-element device array converts to a Python scalar")
        COUNTS.sync()
        COUNTS.d2h_bytes += self._a.itemsize
        return self._a.reshape(()).item()

    def __bool__(self) -> bool:
        return bool(self._scalar())

    def __int__(self) -> int:
        return int(self._scalar())

    def __float__(self) -> float:
        return float(self._scalar())

    def __complex__(self) -> complex:
        return complex(self._scalar())

    def item(self) -> Any:
        return self._scalar()

    def tolist(self) -> Any:
        COUNTS.sync()
        COUNTS.d2h_bytes += self._a.nbytes
        return self._a.tolist()

    # --------------------------------------------------------------- indexing
    def __getitem__(self, key: Any) -> ndarray:
        idx, dep = _index(key)
        out = self._a[idx]
        parts = idx if isinstance(idx, tuple) else (idx,)
        if all(p is None or p is Ellipsis or isinstance(p, (int, np.integer, slice))
               for p in parts):
            # basic indexing: a view in CuPy (no kernel; a 0-d view for an element)
            COUNTS.views += 1
            return ndarray(out if isinstance(out, np.ndarray) else self._a[(*parts, ...)])
        COUNTS.op(1, 2 * np.asarray(out).nbytes)
        COUNTS.sync(int(dep))
        return _wrap(out)

    def __setitem__(self, key: Any, value: Any) -> None:
        idx, dep = _index(key)
        self._a[idx] = _unwrap(value, "assignment")
        COUNTS.op(1, 2 * _nbytes(value) if isinstance(value, ndarray) else 0)
        COUNTS.sync(int(dep))

    # ------------------------------------------------------------ NEP 13 / 18
    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        fn = getattr(_MODULE, ufunc.__name__, None)
        if fn is None or method not in ("__call__", "at"):
            return NotImplemented
        return fn(*inputs, **kwargs) if method == "__call__" else fn.at(*inputs, **kwargs)

    def __array_function__(self, func: Any, types_: Any, args: Any, kwargs: Any) -> Any:
        mod = getattr(func, "__module__", "") or ""
        target = _MODULE.linalg if mod.endswith("linalg") else _MODULE
        fn = getattr(target, func.__name__, None)
        if fn is None:
            return NotImplemented
        return fn(*args, **kwargs)


_METHODS = ("astype", "copy", "reshape", "transpose", "ravel", "sum", "max", "min", "any",
            "all", "mean", "std", "var", "prod", "argmax", "argmin", "argsort", "cumsum",
            "clip", "dot", "fill", "view", "swapaxes", "squeeze", "diagonal", "take",
            "repeat", "sort", "round", "flatten", "conj", "nonzero", "argpartition",
            "partition")


def _method(name: str) -> Any:
    def f(self: ndarray, *args: Any, **kwargs: Any) -> Any:
        if name == "fill":
            self._a.fill(*_unwrap(args, name))
            COUNTS.op(1, 0)
            return None
        sync = name == "nonzero"
        out = _op(getattr(np.ndarray, name), (self, *args), kwargs, f"ndarray.{name}", sync)
        if name == "astype" and out is not None and kwargs.get("copy", True) is False and \
                out._a is self._a:
            return self
        return out

    f.__name__ = name
    return f


for _m in _METHODS:
    setattr(ndarray, _m, _method(_m))

_BINARY = {
    "add": "add", "sub": "subtract", "mul": "multiply", "truediv": "true_divide",
    "floordiv": "floor_divide", "mod": "remainder", "pow": "power", "matmul": "matmul",
    "and": "bitwise_and", "or": "bitwise_or", "xor": "bitwise_xor",
    "lshift": "left_shift", "rshift": "right_shift",
}


def _binary(npname: str, reflected: bool) -> Any:
    fn = getattr(np, npname)

    def f(self: ndarray, other: Any) -> Any:
        if isinstance(other, np.ndarray) and other.ndim > 0:
            raise TypeError(f"Unsupported type {type(other)} (CuPy does not mix host and "
                            "device arrays in arithmetic)")
        args = (other, self) if reflected else (self, other)
        return _op(fn, args, {}, npname)

    return f


def _inplace(npname: str) -> Any:
    fn = getattr(np, npname)

    def f(self: ndarray, other: Any) -> ndarray:
        _reject_numpy(other, npname)
        fn(self._a, _unwrap(other, npname), out=self._a)
        COUNTS.op(1, 2 * self._a.nbytes + _nbytes(other))  # self read and written, other read
        return self

    return f


for _d, _n in _BINARY.items():
    setattr(ndarray, f"__{_d}__", _binary(_n, False))
    setattr(ndarray, f"__r{_d}__", _binary(_n, True))
    if _d != "matmul":
        setattr(ndarray, f"__i{_d}__", _inplace(_n))
for _d, _n in {"lt": "less", "le": "less_equal", "gt": "greater", "ge": "greater_equal",
               "eq": "equal", "ne": "not_equal"}.items():
    setattr(ndarray, f"__{_d}__", _binary(_n, False))
for _d, _n in {"neg": "negative", "pos": "positive", "abs": "absolute",
               "invert": "invert"}.items():
    setattr(ndarray, f"__{_d}__", (lambda fn: lambda self: _op(fn, (self,), {}, "unary"))(
        getattr(np, _n)))
ndarray.__hash__ = None  # type: ignore[assignment]


# ---------------------------------------------------------------- module functions
def asarray(a: Any, dtype: Any = None, order: Any = None, **kw: Any) -> ndarray:
    if isinstance(a, ndarray):
        if dtype is None or np.dtype(dtype) == a.dtype:
            return a
        return a.astype(dtype)
    host = np.asarray(a, dtype=dtype, order=order)
    COUNTS.h2d_bytes += host.nbytes
    return ndarray(np.array(host, copy=True))


def array(a: Any, dtype: Any = None, copy: bool = True, order: str = "K", **kw: Any) -> ndarray:
    if isinstance(a, ndarray):
        return ndarray(np.array(a._a, dtype=dtype, copy=True, order=order))
    return asarray(a, dtype=dtype)


def asnumpy(a: Any, stream: Any = None, order: str = "C", out: Any = None) -> np.ndarray:
    if isinstance(a, ndarray):
        return a.get(order=order)
    return np.asarray(a, order=order)


def _solve(M: Any, b: Any) -> ndarray:
    """``cupy.linalg.solve``: singular systems give non-finite rows, no exception (CuPy's
    default error state), like cuSOLVER's getrf/getrs."""
    Mh, bh = _unwrap(M, "linalg.solve"), _unwrap(b, "linalg.solve")
    COUNTS.op(3, Mh.nbytes * 2 + bh.nbytes * 2)  # getrf, getrs, copy (batched)
    try:
        return ndarray(np.linalg.solve(Mh, bh))
    except np.linalg.LinAlgError:
        flatM = Mh.reshape(-1, *Mh.shape[-2:])
        flatb = bh.reshape(-1, *bh.shape[len(Mh.shape) - 2:])
        out = np.full(flatb.shape, np.nan, dtype=np.result_type(Mh, bh))
        for i in range(flatM.shape[0]):
            try:
                out[i] = np.linalg.solve(flatM[i], flatb[i])
            except np.linalg.LinAlgError:
                pass
        return ndarray(out.reshape(bh.shape))


def _inv(M: Any) -> ndarray:
    """``cupy.linalg.inv``: singular matrices give non-finite results, no exception."""
    Mh = _unwrap(M, "linalg.inv")
    COUNTS.op(3, Mh.nbytes * 3)
    with np.errstate(all="ignore"):
        try:
            return ndarray(np.linalg.inv(Mh))
        except np.linalg.LinAlgError:
            flat = Mh.reshape(-1, *Mh.shape[-2:])
            out = np.full(flat.shape, np.nan, dtype=Mh.dtype)
            for i in range(flat.shape[0]):
                try:
                    out[i] = np.linalg.inv(flat[i])
                except np.linalg.LinAlgError:
                    pass
            return ndarray(out.reshape(Mh.shape))


class _UFunc:
    """A CuPy ufunc: called like the function, with ``.at`` for unbuffered updates."""

    def __init__(self, fn: np.ufunc) -> None:
        self._fn = fn
        self.__name__ = fn.__name__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _op(self._fn, args, kwargs, f"cupy.{self.__name__}")

    def at(self, a: ndarray, indices: Any, b: Any = None) -> None:
        idx, _ = _index(indices)
        self._fn.at(a._a, idx, _unwrap(b, f"cupy.{self.__name__}.at"))
        COUNTS.op(1, 2 * _nbytes(b) if isinstance(b, ndarray) else 0)


def _function(name: str) -> Any:
    fn = getattr(np, name)
    if not callable(fn) or isinstance(fn, type):
        return fn  # dtypes and constants
    if isinstance(fn, np.ufunc):
        return _UFunc(fn)
    sync = name in _SYNC_FUNCS
    if name in _ALLOC_FUNCS:
        def f(*args: Any, **kwargs: Any) -> Any:  # memory from the pool: no kernel
            return _wrap(fn(*_unwrap(args, name), **kwargs))
    else:
        def f(*args: Any, **kwargs: Any) -> Any:
            return _op(fn, args, kwargs, f"cupy.{name}", sync)

    f.__name__ = name
    return f


# --------------------------------------------------------------------- the kernels
_BUILD = Path(tempfile.gettempdir()) / "peakfit-cupy-standin"


def host_build(code: str, name: str) -> Any:
    """``<name>_host`` of ``code`` compiled as C99 (``cc -O2 -shared -fPIC``), via ctypes."""
    if CC is None:
        raise RuntimeError("the CuPy stand-in needs a C compiler (cc) for RawKernel")
    digest = hashlib.sha256(code.encode()).hexdigest()[:20]
    _BUILD.mkdir(parents=True, exist_ok=True)
    so = _BUILD / f"{name}_{digest}.so"
    if not so.exists():
        src = _BUILD / f"{name}_{digest}.c"
        src.write_text(code)
        tmp = so.with_suffix(f".{id(code)}.tmp")
        subprocess.run([CC, "-std=c99", "-O2", "-fPIC", "-shared", str(src), "-o", str(tmp),
                        "-lm"], check=True, capture_output=True)
        tmp.replace(so)
    fn = getattr(ctypes.CDLL(str(so)), f"{name}_host")
    fn.restype = None
    return fn


_CTYPES = {np.dtype(np.int32): ctypes.c_int32, np.dtype(np.int64): ctypes.c_int64,
           np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double,
           np.dtype(np.uint32): ctypes.c_uint32, np.dtype(np.uint64): ctypes.c_uint64}


class RawKernel:
    """``cupy.RawKernel`` served by the host build of the same source."""

    def __init__(self, code: str, name: str, options: tuple = (), backend: str = "nvrtc",
                 translate_cucomplex: bool = False, *, enable_cooperative_groups: bool = False,
                 jitify: bool = False) -> None:
        if not isinstance(options, tuple):
            raise TypeError("RawKernel options must be a tuple of str")
        self.code, self.name, self.options = code, name, options
        self._fn = host_build(code, name)

    def __call__(self, grid: tuple, block: tuple, args: tuple, *, shared_mem: int = 0,
                 stream: Any = None) -> None:
        if not (isinstance(grid, tuple) and isinstance(block, tuple)
                and isinstance(args, tuple)):
            raise TypeError("RawKernel takes (grid, block, args) tuples")
        conv = []
        nbytes = 0
        for a in args:
            if isinstance(a, ndarray):
                if not a._a.flags.c_contiguous:
                    raise ValueError(f"{self.name}: a RawKernel argument is not C-contiguous")
                conv.append(ctypes.c_void_p(a._a.ctypes.data))
                nbytes += a._a.nbytes
            elif isinstance(a, np.generic):
                conv.append(_CTYPES[a.dtype](a))
            elif isinstance(a, (bool, int, float)):
                conv.append(ctypes.c_int64(a) if isinstance(a, int) else ctypes.c_double(a))
            else:
                raise TypeError(f"Unsupported type {type(a)} as a RawKernel argument")
        self._fn(*conv)
        COUNTS.op(1, nbytes, raw=True)


# ------------------------------------------------------------------------- cuda
class OutOfMemoryError(MemoryError):
    pass


class _Device:
    mem = (8 << 30, 16 << 30)

    def __init__(self, device: int = 0) -> None:
        self.id = int(device)

    @property
    def mem_info(self) -> tuple[int, int]:
        return self.mem

    def synchronize(self) -> None:
        COUNTS.sync()

    def use(self) -> None:
        pass

    def __enter__(self) -> _Device:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


class Event:
    """``cupy.cuda.Event``: recorded on a stream; the stand-in's work is already done."""

    def synchronize(self) -> None:
        COUNTS.sync()

    @property
    def done(self) -> bool:
        return True


class Stream:
    """``cupy.cuda.Stream``: the stand-in runs everything at once, so a stream orders nothing;
    what is enqueued on it and what waits on it is counted."""

    _current = threading.local()

    def __init__(self, null: bool = False, non_blocking: bool = False, ptds: bool = False,
                 priority: int | None = None) -> None:
        self.null = bool(null)
        self.non_blocking = bool(non_blocking)

    def record(self, event: Event | None = None) -> Event:
        return Event() if event is None else event

    def wait_event(self, event: Event) -> None:
        if not isinstance(event, Event):
            raise TypeError("Stream.wait_event takes a cupy.cuda.Event")
        COUNTS.stream_waits += 1

    def synchronize(self) -> None:
        COUNTS.sync()

    def use(self) -> Stream:
        Stream._current.stream = self
        return self

    def __enter__(self) -> Stream:
        stack = Stream._current.__dict__.setdefault("stack", [])
        stack.append(get_current_stream())
        Stream._current.stream = self
        return self

    def __exit__(self, *exc: Any) -> None:
        Stream._current.stream = Stream._current.stack.pop()


_NULL_STREAM = Stream(null=True)


def get_current_stream() -> Stream:
    return getattr(Stream._current, "stream", _NULL_STREAM)


def alloc_pinned_memory(size: int) -> bytearray:
    """``cupy.cuda.alloc_pinned_memory``: host memory (a buffer NumPy can view), counted."""
    COUNTS.pinned_bytes += int(size)
    return bytearray(int(size))


class _Pool:
    def free_bytes(self) -> int:
        return 0

    def used_bytes(self) -> int:
        return 0

    def total_bytes(self) -> int:
        return 0

    def free_all_blocks(self) -> None:
        pass


_POOL, _PINNED = _Pool(), _Pool()


def _build_module() -> types.ModuleType:
    top, linalg_names = _api_names()
    mod = types.ModuleType("cupy", "Strict CuPy stand-in for the tests (NumPy memory).")
    mod.__dict__["__standin__"] = True
    special = {"asarray": asarray, "array": array, "asnumpy": asnumpy, "ndarray": ndarray,
               "RawKernel": RawKernel,
               "get_default_memory_pool": lambda: _POOL,
               "get_default_pinned_memory_pool": lambda: _PINNED}
    for name in sorted(top):
        if name in special:
            setattr(mod, name, special[name])
        elif hasattr(np, name):
            setattr(mod, name, _function(name))
    ndarray.__module__ = "cupy"
    la = types.ModuleType("cupy.linalg")
    for name in linalg_names:
        if name in ("solve", "inv"):
            setattr(la, name, _solve if name == "solve" else _inv)
        elif hasattr(np.linalg, name):
            setattr(la, name, (lambda fn: lambda *a, **k: _op(fn, a, k, "linalg"))(
                getattr(np.linalg, name)))
    mod.linalg = la
    cuda = types.ModuleType("cupy.cuda")
    runtime = types.ModuleType("cupy.cuda.runtime")
    runtime.getDeviceCount = lambda: 1
    runtime.getDeviceProperties = lambda i: {"name": b"CuPy stand-in (host build)",
                                             "totalGlobalMem": _Device.mem[1],
                                             "multiProcessorCount": 1}
    cuda.runtime = runtime
    cuda.Device = _Device
    cuda.Stream = Stream
    cuda.Event = Event
    cuda.get_current_stream = get_current_stream
    cuda.alloc_pinned_memory = alloc_pinned_memory
    memory = types.ModuleType("cupy.cuda.memory")
    memory.OutOfMemoryError = OutOfMemoryError
    cuda.memory = memory
    mod.cuda = cuda

    def __getattr__(name: str) -> Any:
        raise AttributeError(f"the CuPy stand-in has no {name!r}: add it to "
                             f"{NAMES_FILE.name} if CuPy 14 has it, else do not use it")

    mod.__getattr__ = __getattr__  # type: ignore[attr-defined]
    return mod


_MODULE = _build_module()


def install(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Make ``import cupy`` give the stand-in for the rest of a test (counters reset)."""
    from peakfit.gpu import kernels

    for cached in (kernels.get_kernel, kernels.get_residual_kernel, kernels.get_values_kernel):
        cached.cache_clear()
    monkeypatch.setitem(sys.modules, "cupy", _MODULE)
    monkeypatch.setitem(sys.modules, "cupy.linalg", _MODULE.linalg)
    monkeypatch.setitem(sys.modules, "cupy.cuda", _MODULE.cuda)
    COUNTS.reset()
    return _MODULE
