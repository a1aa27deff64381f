"""Compile the generated kernels without a GPU: NVRTC to PTX, ``ptxas`` for the resources.

NVRTC is the compiler CuPy's ``RawKernel`` uses; it and ``ptxas`` come as Python wheels
(``nvidia-cuda-nvrtc-cu12``, ``nvidia-cuda-nvcc-cu12``) that install on a machine without a
GPU or driver. :func:`compile_ptx` runs NVRTC through ``ctypes`` on exactly the source
:func:`peakfit.gpu.kernels.generate_source` gives; :func:`resources` assembles the PTX with
``ptxas -v`` for a real architecture (``sm_80``: A100, ``sm_90``: H100/H200) and returns the
registers per thread and the spill traffic, the figures that decide occupancy.

Examples
--------
>>> from peakfit.gpu import nvrtc
>>> nvrtc.available() in (True, False)
True
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Resources", "available", "compile_ptx", "find_nvrtc", "find_ptxas", "resources"]

#: Options that CuPy's RawKernel passes besides the architecture (peakfit adds ``--std``).
CUPY_OPTIONS = ("--std=c++14",)


def _wheel_dirs(package: str) -> list[Path]:
    """Directories of an ``nvidia.<package>`` wheel (namespace package), if installed."""
    try:
        import nvidia  # the namespace of the NVIDIA wheels

        return [Path(p) / package for p in nvidia.__path__ if (Path(p) / package).is_dir()]
    except ImportError:
        return []


@functools.lru_cache(maxsize=1)
def find_nvrtc() -> str | None:
    """Path of ``libnvrtc.so`` (the ``nvidia-cuda-nvrtc-cu12`` wheel, else CUDA_PATH/system)."""
    cands = []
    for d in _wheel_dirs("cuda_nvrtc"):
        cands += sorted(glob.glob(str(d / "lib" / "libnvrtc.so.*")))
    for root in filter(None, (os.environ.get("CUDA_PATH"), "/usr/local/cuda")):
        cands += sorted(glob.glob(os.path.join(root, "lib64", "libnvrtc.so*")))
    cands = [c for c in cands if ".alt." not in c and "builtins" not in c]
    return cands[0] if cands else None


@functools.lru_cache(maxsize=1)
def find_ptxas() -> str | None:
    """Path of ``ptxas`` (the ``nvidia-cuda-nvcc-cu12`` wheel, else CUDA_PATH/PATH)."""
    for d in _wheel_dirs("cuda_nvcc"):
        p = d / "bin" / "ptxas"
        if p.is_file():
            return str(p)
    for root in filter(None, (os.environ.get("CUDA_PATH"), "/usr/local/cuda")):
        p = Path(root) / "bin" / "ptxas"
        if p.is_file():
            return str(p)
    return shutil.which("ptxas")


def available() -> bool:
    """True when both NVRTC and ptxas are found."""
    return find_nvrtc() is not None and find_ptxas() is not None


@functools.lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL:
    path = find_nvrtc()
    if path is None:
        raise RuntimeError("NVRTC not found: pip install nvidia-cuda-nvrtc-cu12")
    lib = ctypes.CDLL(path)
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    return lib


def nvrtc_version() -> tuple[int, int]:
    """``(major, minor)`` of the NVRTC library."""
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(_lib().nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
    return major.value, minor.value


def _check(status: int, what: str, log: str = "") -> None:
    if status != 0:
        msg = _lib().nvrtcGetErrorString(status).decode()
        raise RuntimeError(f"{what}: {msg}" + (f"\n{log}" if log else ""))


def compile_ptx(source: str, name: str = "kernel.cu", arch: str = "compute_80",
                options: tuple[str, ...] = CUPY_OPTIONS) -> str:
    """PTX of ``source`` compiled by NVRTC for a virtual architecture (as CuPy does).

    Raises
    ------
    RuntimeError
        With NVRTC's log when the source does not compile.
    """
    lib = _lib()
    prog = ctypes.c_void_p()
    _check(lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0,
                                  None, None), "nvrtcCreateProgram")
    try:
        opts = [f"--gpu-architecture={arch}".encode(), *(o.encode() for o in options)]
        arr = (ctypes.c_char_p * len(opts))(*opts)
        status = lib.nvrtcCompileProgram(prog, len(opts), arr)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, buf)
        _check(status, f"NVRTC could not compile {name}", buf.value.decode(errors="replace"))
        lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
        ptx = ctypes.create_string_buffer(size.value)
        _check(lib.nvrtcGetPTX(prog, ptx), "nvrtcGetPTX")
        return ptx.value.decode()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


@dataclass(frozen=True)
class Resources:
    """What ``ptxas -v`` reports for one kernel on one architecture."""

    kernel: str
    arch: str
    registers: int
    spill_stores: int  # bytes
    spill_loads: int  # bytes
    stack: int  # bytes of stack frame

    @property
    def spills(self) -> bool:
        return self.spill_stores > 0 or self.spill_loads > 0


_RE_FUNC = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+)'")
_RE_STACK = re.compile(
    r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_RE_PROPS = re.compile(r"Function properties for (\S+)")
_RE_REGS = re.compile(r"Used (\d+) registers")


def resources(ptx: str, arch: str = "sm_80") -> list[Resources]:
    """Registers and spills of every kernel in ``ptx`` assembled by ``ptxas`` for ``arch``."""
    ptxas = find_ptxas()
    if ptxas is None:
        raise RuntimeError("ptxas not found: pip install nvidia-cuda-nvcc-cu12")
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "k.ptx"
        src.write_text(ptx)
        run = subprocess.run([ptxas, "-v", f"--gpu-name={arch}", str(src), "-o",
                              str(Path(d) / "k.cubin")], capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"ptxas failed for {arch}:\n{run.stderr}")
    # entry functions report their registers; device functions they call (not inlined)
    # report only their frames and spills, which count for the entries that call them
    entries: list[tuple[str, int, tuple[int, int, int]]] = []
    callees = [0, 0, 0]
    name, props, stack = None, None, (0, 0, 0)
    for line in run.stderr.splitlines():
        if m := _RE_FUNC.search(line):
            name = m.group(1)
        elif m := _RE_PROPS.search(line):
            props = m.group(1)
        elif m := _RE_STACK.search(line):
            stack = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
            if props is not None and props != name:
                callees = [a + b for a, b in zip(callees, stack)]
        elif (m := _RE_REGS.search(line)) and name is not None:
            entries.append((name, int(m.group(1)), stack))
            name = None
    return [Resources(nm, arch, regs, st[1] + callees[1], st[2] + callees[2], st[0] + callees[0])
            for nm, regs, st in entries]
