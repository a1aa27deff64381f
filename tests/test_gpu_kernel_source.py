"""The generated GPU kernel's arithmetic, checked on the CPU.

The per-spectrum routine of :mod:`peakfit.gpu.kernels` is plain C behind a few macros, so the
exact source that NVRTC compiles for the GPU also compiles with the system C compiler into a host
loop. These tests build it with ``cc`` (test-only; skipped without a compiler), call it through
``ctypes``, and compare ``S``, ``JᵀWJ`` and ``JᵀWr`` with :class:`NormalEquations`.
"""

from __future__ import annotations

import ctypes
import functools
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from peakfit.gpu.kernels import generate_source, kernel_name, row_slices
from peakfit.models import BASELINES, GaussianModel
from peakfit.solvers.lm import NormalEquations

CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler to build the kernel source")

_P = ctypes.c_void_p
_I64 = ctypes.c_longlong


@functools.cache
def _build(n: int, baseline: str, dtype: str, x_per_row: bool, weights: str,
           tmpdir: str) -> ctypes.CDLL:
    model = GaussianModel(n, baseline)
    src = generate_source(model, dtype, x_per_row=x_per_row, weights=weights)
    name = kernel_name(model, dtype, x_per_row, weights)
    d = Path(tmpdir)
    c = d / f"{name}.c"
    so = d / f"{name}.so"
    c.write_text(src)
    subprocess.run([CC, "-std=c99", "-O0", "-fPIC", "-shared", str(c), "-o", str(so), "-lm"],
                   check=True, capture_output=True)
    lib = ctypes.CDLL(str(so))
    fn = getattr(lib, f"{name}_host")
    fn.restype = None
    fn.argtypes = [_P, ctypes.c_int, ctypes.c_int, _P, _I64, _I64, _P, _I64, _I64, _P, _I64,
                   _I64, _P, _P, _P, _P]
    return fn


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("kernels"))


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def run_host(fn, model, dtype, x, Y, sw, p, cols, layout):
    """Call the host build like the GPU driver does (strides in elements)."""
    dt = np.dtype(dtype)
    k, m = Y.shape
    P = model.n_params
    x = np.ascontiguousarray(x, dtype=dt)
    if layout == "points":
        Yd = np.ascontiguousarray(Y.T, dtype=dt)
        yr, ys = 1, k
        if x.ndim == 2:
            x = np.ascontiguousarray(x.T)
            xr, xs = 1, k
        else:
            xr, xs = 0, 1
        if sw is None:
            swd, wr, ws = Yd, 0, 0
        elif sw.ndim == 2:
            swd, wr, ws = np.ascontiguousarray(sw.T, dtype=dt), 1, k
        else:
            swd, wr, ws = np.ascontiguousarray(sw, dtype=dt), 0, 1
    else:
        Yd = np.ascontiguousarray(Y, dtype=dt)
        yr, ys = m, 1
        xr, xs = (m, 1) if x.ndim == 2 else (0, 1)
        if sw is None:
            swd, wr, ws = Yd, 0, 0
        else:
            swd = np.ascontiguousarray(sw, dtype=dt)
            wr, ws = (m, 1) if sw.ndim == 2 else (0, 1)
    cols = np.ascontiguousarray(cols, dtype=np.int64)
    pp = np.ascontiguousarray(p, dtype=dt)
    nrows = cols.size
    sse = np.full(nrows, np.nan)
    A = np.full((nrows, P, P), np.nan, dtype=dt)
    g = np.full((nrows, P), np.nan, dtype=dt)
    fn(_ptr(cols), nrows, m, _ptr(x), xr, xs, _ptr(Yd), yr, ys, _ptr(swd), wr, ws, _ptr(pp),
       _ptr(sse), _ptr(A), _ptr(g))
    return sse, A, g


def _problem(model: GaussianModel, k: int, m: int, seed: int):
    rng = np.random.default_rng(seed)
    x = np.linspace(-1.0, 1.0, m)
    X = x[None, :] * rng.uniform(0.9, 1.1, (k, 1)) + rng.uniform(-0.05, 0.05, (k, 1))
    cols = [rng.uniform(0.2, 1.0, k), rng.uniform(-0.7, 0.7, k), rng.uniform(0.05, 0.4, k)]
    p = np.column_stack(cols * model.n + [rng.uniform(0.1, 0.6, k)
                                          for _ in model.baseline_names])
    p[:, 1:3 * model.n:3] += np.linspace(-0.3, 0.3, model.n)[None, :]
    p[2, 2] = 0.0  # c == 0: the term and its derivatives vanish
    Y = model.evaluate(X, p) + 0.02 * rng.standard_normal((k, m))
    sw = rng.uniform(0.0, 1.5, (k, m))
    sw[:, :5] = 0.0  # zero weights (ragged padding)
    q = p * (1 + 0.05 * rng.standard_normal(p.shape))  # evaluate away from the truth
    q[2, 2] = 0.0
    return x, X, Y, sw, q


@pytest.mark.parametrize("baseline", list(BASELINES))
@pytest.mark.parametrize("n", [1, 2, 4, 7])
def test_generated_source_matches_normal_equations_float64(build_dir, n, baseline):
    model = GaussianModel(n, baseline)
    k, m = 7, 90
    x, X, Y, sw, q = _problem(model, k, m, seed=n)
    cols = np.array([4, 0, 2, 6, 1])
    cases = [
        (False, "none", x, None),
        (True, "row", X, sw),
        (False, "shared", x, sw[3]),
    ]
    for x_per_row, weights, xx, w in cases:
        fn = _build(n, baseline, "float64", x_per_row, weights, build_dir)
        ref = NormalEquations(model, xx, Y, w)
        ref._fast = False  # the model's own Jacobian, GaussianModel.evaluate
        s0, A0, g0 = ref(q[cols], cols)
        for layout in ("points", "rows"):
            s1, A1, g1 = run_host(fn, model, "float64", xx, Y, w, q[cols], cols, layout)
            np.testing.assert_allclose(s1, s0, rtol=1e-10)
            np.testing.assert_allclose(A1, A0, rtol=1e-10, atol=1e-10 * np.abs(A0).max())
            np.testing.assert_allclose(g1, g0, rtol=1e-10, atol=1e-10 * np.abs(g0).max())
            np.testing.assert_array_equal(A1, A1.transpose(0, 2, 1))
    # the c == 0 term of spectrum 2 has zero derivative rows
    _s, A, g = run_host(_build(n, baseline, "float64", False, "none", build_dir), model,
                       "float64", x, Y, None, q[[2]], np.array([2]), "points")
    assert np.all(A[0, 0:3, :] == 0) and np.all(g[0, 0:3] == 0)


@pytest.mark.parametrize("baseline", ["none", "linear", "exponential"])
def test_generated_source_float32_accumulates_sse_and_gradient_in_double(build_dir, baseline):
    model = GaussianModel(3, baseline)
    k, m = 6, 400
    x, _X, Y, sw, q = _problem(model, k, m, seed=11)
    cols = np.arange(k)
    fn = _build(3, baseline, "float32", False, "shared", build_dir)
    ref = NormalEquations(model, x, Y, sw[0])
    ref._fast = False
    s0, A0, g0 = ref(q, cols)
    s1, A1, g1 = run_host(fn, model, "float32", x, Y, sw[0], q, cols, "points")
    assert s1.dtype == np.float64 and A1.dtype == np.float32 and g1.dtype == np.float32
    np.testing.assert_allclose(s1, s0, rtol=1e-5)
    np.testing.assert_allclose(A1, A0, rtol=1e-4, atol=1e-5 * np.abs(A0).max())
    np.testing.assert_allclose(g1, g0, rtol=1e-4, atol=1e-5 * np.abs(g0).max())


def test_source_is_generated_from_the_model_not_handwritten():
    s4 = generate_source(GaussianModel(4, "quadratic"), "float32", x_per_row=True,
                         weights="row")
    P = 15
    assert s4.count("pf_real A_") == P * (P + 1) // 2  # unique accumulators only
    assert s4.count("double g_") == P
    assert "__expf" in s4 and 'extern "C" __global__' in s4
    assert f"{kernel_name(GaussianModel(4, 'quadratic'), 'float32', True, 'row')}_host" in s4
    s9 = generate_source(GaussianModel(9), "float64")
    # one exp per term and point in each warp slice of the rows (row_slices)
    slices = row_slices(GaussianModel(9), "float64")
    assert len(slices) > 1 and sum(map(len, slices)) == 27
    assert s9.count("PF_EXP((-(t") == 9 * len(slices) and "__expf" not in s9
    with pytest.raises(ValueError):
        generate_source(GaussianModel(1), "float16")
    with pytest.raises(ValueError):
        generate_source(GaussianModel(1), weights="some")


# ---------------------------------------------------------------------------------------------
# the GPU driver (FusedNormalEquations and the batch pipeline) on the CPU, with the host build
# ---------------------------------------------------------------------------------------------
class HostLauncher:
    """Stands in for ``cupy.RawKernel``: ``launcher(grid, block, args)`` on NumPy arrays."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.launches = 0

    def __call__(self, grid, block, args) -> None:
        conv = [a.ctypes.data if isinstance(a, np.ndarray) else int(a) for a in args]
        self.fn(*conv)
        self.launches += 1


def host_factory(build_dir: str):
    def factory(model, dtype, x_per_row, weights):
        return HostLauncher(_build(model.n, model.baseline, dtype, x_per_row, weights,
                                   build_dir))

    return factory


@pytest.mark.parametrize("layout", ["points", "rows"])
@pytest.mark.parametrize("weights", ["none", "shared", "row"])
def test_fused_evaluator_driver_layouts_and_repacking(build_dir, layout, weights):
    from peakfit.gpu.kernels import FusedNormalEquations

    model = GaussianModel(2, "linear")
    k, m = 12, 80
    x, X, Y, sw, q = _problem(model, k, m, seed=5)
    w = {"none": None, "shared": sw[0], "row": sw}[weights]
    for xx in (x, X):
        ref = NormalEquations(model, xx, Y, w)
        ref._fast = False
        ev = FusedNormalEquations(model, xx, Y, w, layout=layout, xp=np,
                                  kernel_factory=host_factory(build_dir))
        # as the solver calls it: all rows, then shrinking active sets (new index arrays)
        for idx in (np.arange(k), np.array([0, 3, 7, 8, 11]), np.array([11, 3]),
                    np.array([3])):
            for _ in range(2):  # the same idx object twice: no re-pack the second time
                s1, A1, g1 = ev(q[idx], idx)
                s0, A0, g0 = ref(q[idx], idx)
                np.testing.assert_allclose(s1, s0, rtol=1e-10)
                np.testing.assert_allclose(A1, A0, rtol=1e-10, atol=1e-12)
                np.testing.assert_allclose(g1, g0, rtol=1e-10, atol=1e-12)
        assert ev.repacks == (2 if layout == "points" else 0)
        if layout == "points":  # a re-pack refuses rows an earlier re-pack dropped
            ev = FusedNormalEquations(model, xx, Y, w, layout=layout, xp=np,
                                      kernel_factory=host_factory(build_dir))
            five = np.array([0, 3, 7, 8, 11])
            ev(q[five], five)
            with pytest.raises(ValueError, match="outside the last re-packed set"):
                ev(q[[1]], np.array([1]))


def test_gpu_pipeline_simulated_on_the_cpu_equals_the_numpy_path(build_dir, monkeypatch):
    """fit_gaussians_batch with the GPU backend's evaluator and settings (fused kernel via its
    host build, check_every=4, points-major layout with re-packing) gives the CPU results."""
    import sys

    from peakfit import batch as batch_mod
    from peakfit.backends import Backend
    from peakfit.gpu.kernels import FusedNormalEquations

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from _synth_batch import make_batch

    x, Y, _ = make_batch(24, 200, 2, seed=8)
    Y[3, :20] = np.nan  # ragged
    Y[5, 60] = np.inf   # flagged
    W = np.ones_like(Y)
    W[7, 100:110] = 0.0
    factory = host_factory(build_dir)

    def sim_backend(device, Yarg, check_every):
        return Backend(
            "gpu", np, "gpu-sim", "cupy", (MemoryError,), 4 if check_every is None else check_every,
            lambda model, xx, YY, sw: FusedNormalEquations(model, xx, YY, sw, xp=np,
                                                           kernel_factory=factory))

    ref = batch_mod.fit_gaussians_batch(x, Y, 2, baseline="constant", start="matlab",
                                        weights=W, device="cpu")
    for dtype in ("float64", "float32"):
        monkeypatch.setattr(batch_mod, "_select_backend", sim_backend)
        r = batch_mod.fit_gaussians_batch(x, Y, 2, baseline="constant", start="matlab",
                                          weights=W, device="gpu", dtype=dtype)
        monkeypatch.undo()
        assert r.device == "gpu-sim"
        np.testing.assert_array_equal(r.state, ref.state)
        ok = ref.converged
        if dtype == "float64":
            np.testing.assert_allclose(r.p[ok], ref.p[ok], rtol=1e-7, atol=1e-9)
            np.testing.assert_allclose(r.stderr[ok], ref.stderr[ok], rtol=1e-5)
            assert np.mean(r.iterations[ok] == ref.iterations[ok]) >= 0.9
        else:
            assert np.max(np.abs(r.means[ok] - ref.means[ok])) <= 1e-4 * np.ptp(x)
