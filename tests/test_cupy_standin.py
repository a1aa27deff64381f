"""The GPU path on every test run: peakfit's CuPy code under a strict CuPy stand-in.

``cupy_standin`` (beside this file) replaces ``cupy`` with NumPy-backed device arrays that
refuse implicit host conversion as CuPy does, and serves ``RawKernel`` from the host build of
the same generated CUDA source. Here the batch pipeline (``device='gpu'``, both starts, both
precisions, device-resident input, the out-of-memory retry), the fused evaluator and
:mod:`peakfit.gd` run on it and must equal the NumPy path; the counts of launches, host
synchronisations and bytes per LM iteration and per spectrum of the start are printed and held
to budgets; and every ``cupy`` name the package uses must exist in CuPy 14.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from cupy_standin import CC, COUNTS, NAMES_FILE, install

import peakfit
from peakfit.models import GaussianModel
from peakfit.solvers.lm import NormalEquations, levenberg_marquardt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _synth_batch import make_batch  # noqa: E402


@pytest.fixture
def standin(monkeypatch):
    """The CuPy stand-in as ``cupy`` for one test."""
    if CC is None:
        pytest.skip("the CuPy stand-in needs a C compiler (cc)")
    from peakfit.gpu import kernels

    yield install(monkeypatch)
    kernels.get_kernel.cache_clear()


_USE = re.compile(r"\b(?:xp|cp|cupy)\.([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)")


def _committed_names() -> set[str]:
    return {ln.strip() for ln in NAMES_FILE.read_text().splitlines()
            if ln.strip() and not ln.startswith("#")}


def _package_names() -> set[str]:
    names = set()
    for f in (ROOT / "peakfit").rglob("*.py"):
        names |= {m.group(1) for m in _USE.finditer(f.read_text())}
    return names


# ------------------------------------------------------------------------ the API check
def test_every_cupy_name_the_package_uses_is_in_the_checked_list():
    missing = _package_names() - _committed_names()
    assert not missing, (f"cupy names used but not checked against CuPy 14: {sorted(missing)};"
                         f" verify them and add them to {NAMES_FILE.name}")


def test_checked_list_exists_in_the_real_cupy():
    """Runs where the cupy-cuda12x wheel is installed (it imports without a GPU)."""
    import importlib

    saved = sys.modules.pop("cupy", None)
    try:
        cupy = importlib.import_module("cupy")
    except Exception:  # pragma: no cover - depends on the environment
        pytest.skip("real CuPy not installed (pip install cupy-cuda12x)")
    finally:
        if saved is not None:
            sys.modules["cupy"] = saved
    if getattr(cupy, "__standin__", False):  # pragma: no cover
        pytest.skip("the stand-in is installed")
    absent = []
    for name in sorted(_committed_names()):
        obj = cupy
        for part in name.split("."):
            if not hasattr(obj, part):
                absent.append(name)
                break
            obj = getattr(obj, part)
    assert absent == [], f"not in CuPy {cupy.__version__}: {absent}"
    assert int(cupy.__version__.split(".")[0]) >= 14


# --------------------------------------------------------------------- the stand-in
def test_standin_is_strict_like_cupy(standin):
    cp = standin
    a = cp.asarray(np.arange(6.0).reshape(2, 3))
    assert type(a).__module__ == "cupy" and peakfit._xp.get_xp(a) is cp
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a)
    with pytest.raises(TypeError, match="Unsupported type"):
        _ = a + np.ones((2, 3))
    with pytest.raises(TypeError, match="Unsupported type"):
        cp.where(a > 1, np.ones((2, 3)), a)
    with pytest.raises(AttributeError, match="stand-in has no 'errstate'"):
        _ = cp.errstate
    s = a.sum()
    assert type(s) is cp.ndarray and s.ndim == 0  # reductions stay on the device
    COUNTS.reset()
    assert float(s) == 15.0 and COUNTS.syncs == 1
    e = np.exp(a)  # a NumPy ufunc on a device array runs the cupy one (NEP 13)
    assert type(e) is cp.ndarray and np.allclose(e.get(), np.exp(np.arange(6.0).reshape(2, 3)))
    assert cp.asnumpy(a[cp.asarray([1])]).tolist() == [[3.0, 4.0, 5.0]]
    M = cp.asarray(np.zeros((2, 2, 2)))
    assert not np.isfinite(cp.linalg.solve(M, cp.ones((2, 2))).get()).any()  # no exception


def test_standin_counts_kernels_not_views_and_records_where_they_run(standin):
    """CuPy makes views (basic indexing, reshape, transpose, broadcast_to) and takes
    ``empty`` arrays from its pool without a kernel; an ``out=`` array is written, not read;
    an in-place operation reads both operands. Every launch and byte is recorded at the
    peakfit line that caused it (``op_sites``)."""
    cp = standin
    a = cp.asarray(np.arange(12.0).reshape(3, 4))
    b = cp.asarray(np.ones((3, 4)))
    COUNTS.reset()
    v = a[:, 1:]
    v = v.reshape(3, 3).T
    _ = a[0, 0], cp.broadcast_to(a[None], (2, 3, 4)), a[..., None]
    assert COUNTS.launches == 0 and COUNTS.device_bytes == 0 and COUNTS.views == 6
    assert v.get().tolist() == np.arange(12.0).reshape(3, 4)[:, 1:].T.tolist()
    _ = cp.empty((1000, 1000))  # from CuPy's pool: no kernel
    assert COUNTS.launches == 0 and COUNTS.device_bytes == 0
    COUNTS.reset()
    _ = a[cp.asarray([0, 2])]  # advanced indexing: a gather kernel (reads and writes 64 B)
    assert COUNTS.launches == 1 and COUNTS.device_bytes == 2 * 2 * 4 * 8
    COUNTS.reset()
    cp.add(a, b, out=b)  # reads a and b (96 B each), writes b (96 B)
    assert COUNTS.launches == 1 and COUNTS.device_bytes == 3 * 96
    b += a  # the same traffic in place
    assert COUNTS.launches == 2 and COUNTS.device_bytes == 6 * 96
    assert b.get().tolist() == (1.0 + 2.0 * np.arange(12.0).reshape(3, 4)).tolist()
    # by site: the stand-in's own calls here have no peakfit frame ('?'); peakfit's have one
    from peakfit.autostart import _moving

    COUNTS.reset()
    _moving(cp, a, 3)
    where = COUNTS.by_function()
    assert list(where) == ["autostart._moving"]
    assert where["autostart._moving"] == [COUNTS.launches, 0, COUNTS.device_bytes]


@pytest.mark.parametrize("baseline", ["none", "quadratic"])
@pytest.mark.parametrize("x_per_row", [False, True])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_generated_residual_and_term_values_kernels_equal_numpy(standin, baseline, x_per_row,
                                                                dtype):
    """The start's element-wise kernels (``r = y - f(x; p)`` and the (k, j, m) term values,
    generated from the term steps, one launch each) give NumPy's numbers (their host build,
    the same source NVRTC compiles), and read their inputs and write their output once."""
    from peakfit.gpu.kernels import residual, term_values
    from peakfit.models import term_values as np_terms

    cp = standin
    rng = np.random.default_rng(5)
    model = GaussianModel(3, baseline)
    k, m = 7, 50
    x = np.sort(rng.uniform(-1, 1, (k, m) if x_per_row else m), axis=-1)
    p = rng.uniform(0.2, 1.0, (k, model.n_params))
    p[:, 1:9:3] -= 0.6
    p[2, 2] = 0.0  # a zero width: MATLAB's guard, the term is 0
    Y = rng.standard_normal((k, m))
    rtol = 1e-12 if dtype == "float64" else 2e-6
    xd, Yd, pd = (cp.asarray(v.astype(dtype)) for v in (x, Y, p))
    COUNTS.reset()
    r = residual(model, xd, Yd, pd)
    assert COUNTS.raw_launches == 1 and COUNTS.launches == 0 and r.dtype == np.dtype(dtype)
    assert COUNTS.device_bytes == (xd.nbytes + 2 * Yd.nbytes + pd.nbytes)
    ref = Y - model.evaluate(x, p)
    np.testing.assert_allclose(r.get(), ref, rtol=rtol, atol=rtol * 4)
    a, b, c = p[:, 0:9:3], p[:, 1:9:3], p[:, 2:9:3]
    COUNTS.reset()
    v = term_values(xd, *(cp.asarray(q.astype(dtype)) for q in (a, b, c)))
    assert COUNTS.raw_launches == 1 and v.shape == (k, 3, m)
    np.testing.assert_allclose(v.get(), np_terms(x, a, b, c), rtol=rtol, atol=rtol)
    assert v.get()[2, 0].tolist() == [0.0] * m


def test_the_element_wise_kernels_compile_with_nvrtc_without_spills():
    """The residual and term-values kernels as CuPy compiles them (NVRTC, then ptxas for
    sm_80 and sm_90): measured 26-30 registers, no spills (n = 4 and 8, every baseline)."""
    from peakfit.gpu import nvrtc
    from peakfit.gpu.kernels import (
        generate_residual_source,
        generate_values_source,
        residual_kernel_name,
        values_kernel_name,
    )
    from peakfit.models import GAUSS

    if not nvrtc.available():
        pytest.skip("NVRTC/ptxas wheels not installed")
    srcs = [(generate_values_source(GAUSS, dt, x_per_row=xr),
             values_kernel_name(GAUSS, dt, xr)) for dt in ("float32", "float64")
            for xr in (False, True)]
    srcs += [(generate_residual_source(GaussianModel(n, bl), dt, x_per_row=xr),
              residual_kernel_name(GaussianModel(n, bl), dt, xr))
             for n in (4, 8) for bl in ("none", "quadratic", "exponential")
             for dt in ("float32", "float64") for xr in (False, True)]
    for src, name in srcs:
        for virt, arch in (("compute_80", "sm_80"), ("compute_90", "sm_90")):
            (r,) = nvrtc.resources(nvrtc.compile_ptx(src, name + ".cu", arch=virt), arch)
            assert r.kernel == name and r.registers <= 64 and not r.spills, (name, arch, r)


# ----------------------------------------------------------------- the batch pipeline
@pytest.fixture(scope="module")
def data():
    x, Y, _ = make_batch(24, 200, 2, seed=8)
    Y[3, :20] = np.nan  # ragged
    Y[5, 60] = np.inf  # flagged
    W = np.ones_like(Y)
    W[7, 100:110] = 0.0
    return x, Y, W


@pytest.mark.parametrize("start", ["matlab", "auto"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gpu_pipeline_on_the_standin_equals_the_numpy_path(standin, data, start, dtype):
    x, Y, W = data
    kw = dict(baseline="constant", start=start, weights=W, dtype=dtype)
    with peakfit.use_engine("numpy"):
        ref = peakfit.fit_gaussians_batch(x, Y, 2, device="cpu", **kw)
    r = peakfit.fit_gaussians_batch(x, Y, 2, device="gpu", **kw)
    assert r.device.startswith("gpu") and "stand-in" in r.device
    assert COUNTS.raw_launches > 0  # the generated kernel ran
    np.testing.assert_array_equal(r.state, ref.state)
    ok = ref.converged
    assert ok.sum() >= 20
    if dtype == "float64":
        np.testing.assert_allclose(r.p[ok], ref.p[ok], rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(r.sse[ok], ref.sse[ok], rtol=1e-9)
    else:
        assert np.max(np.abs(r.means[ok] - ref.means[ok])) <= 1e-4 * np.ptp(x)


def test_device_resident_input_and_auto_device(standin, data):
    x, Y, _ = data
    cp = standin
    Yc = np.nan_to_num(Y, nan=0.0, posinf=0.0)
    ref = peakfit.fit_gaussians_batch(x, Yc, 2, device="cpu")
    r = peakfit.fit_gaussians_batch(cp.asarray(x), cp.asarray(Yc), 2, device="auto")
    assert "stand-in" in r.device
    np.testing.assert_array_equal(r.state, ref.state)
    np.testing.assert_allclose(r.p[ref.converged], ref.p[ref.converged], rtol=1e-7, atol=1e-9)


def test_out_of_device_memory_retries_with_fewer_rows(standin, data, monkeypatch):
    x, Y, _ = data
    Yc = np.nan_to_num(Y, nan=0.0, posinf=0.0)
    from cupy_standin import OutOfMemoryError, RawKernel

    from peakfit.gpu import probe

    # the device check runs (and is cached) first, so the failing launch is the pipeline's,
    # whichever tests ran before this one
    assert probe(standin) is None
    calls = {"n": 0}
    orig = RawKernel.__call__

    def flaky(self, grid, block, args, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OutOfMemoryError("out of memory allocating 1 GiB")
        return orig(self, grid, block, args, **kw)

    monkeypatch.setattr(RawKernel, "__call__", flaky)
    ref = peakfit.fit_gaussians_batch(x, Yc, 2, device="cpu")
    r = peakfit.fit_gaussians_batch(x, Yc, 2, device="gpu", start="matlab")
    assert calls["n"] > 1
    np.testing.assert_array_equal(r.state, ref.state)


# ----------------------------------------------------------------------- counts
def _lm_problem(k: int, m: int = 400, n: int = 4, seed: int = 3):
    model = GaussianModel(n)
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, m)
    truth = np.column_stack([c for j in range(n) for c in (
        rng.uniform(0.5, 1.5, k), 0.1 + 0.8 * (j + rng.uniform(0.3, 0.7, k)) / n,
        rng.uniform(0.03, 0.06, k))])
    Y = model.evaluate(x, truth) + 0.01 * rng.standard_normal((k, m))
    p0 = truth * (1 + 0.05 * rng.standard_normal(truth.shape))
    return model, x, Y, p0


def test_counts_per_lm_iteration_on_the_device(standin):
    """Launches, host synchronisations and bytes of one LM iteration on the device.

    Issue #16 item 2's budget: <= 10 launches and no host synchronisation per iteration beyond
    the compaction every ``check_every`` (= 4) iterations. The iteration runs as the step
    kernel, the fused evaluation and the accept kernel (:mod:`peakfit.gpu.lm_kernel`; 134
    CuPy launches when the step was driven from the host).
    """
    cp = standin
    model, x, Y, p0 = _lm_problem(k=256)
    from peakfit.gpu import FusedNormalEquations

    ev = FusedNormalEquations(model, cp.asarray(x), cp.asarray(Y))
    lo, hi = model.default_lower(), model.default_upper()
    runs = {}
    for iters in (4, 12):
        COUNTS.reset()
        res = levenberg_marquardt(ev, cp.asarray(p0), lo, hi, max_iter=iters, tol_fun=0.0,
                                  tol_x=0.0, check_every=4, lam0=1e-3)
        runs[iters] = COUNTS.snapshot()
        assert int(res.iterations.max().get()) == iters
    per_it = {k: (runs[12][k] - runs[4][k]) / 8 for k in runs[4]}
    k, m, P = 256, 400, 12
    print("\nper LM iteration (k=256, m=400, n=4):", json.dumps(per_it))
    assert per_it["raw_launches"] == 3  # step, fused evaluation, accept
    assert per_it["syncs"] <= 0.25  # one compaction every check_every = 4 iterations
    assert per_it["launches"] + per_it["raw_launches"] <= 10
    # memory traffic beside the fused kernel's read of the data, as the stand-in counts it
    # (every argument array whole): 9.2 P x P float64 matrices a row (28.3 host-driven)
    other = (per_it["device_bytes"] - k * m * 8) / k
    assert other <= 10 * P * P * 8
    # the fused kernel's reference: one pass over the data per iteration
    ref = NormalEquations(model, x, Y, engine="numpy")
    s0, _A0, _g0 = ref(p0, np.arange(256))
    s1, _A1, _g1 = ev(cp.asarray(p0), cp.arange(256))
    np.testing.assert_allclose(s1.get(), s0, rtol=1e-12)


def test_counts_per_chunk_of_the_auto_start(standin, monkeypatch):
    """Launches and host synchronisations of ``start='auto'`` per chunk of spectra.

    On the device the start evaluates with the fused kernel (one launch an evaluation), masks
    finished rows instead of compacting them (compacting is a synchronisation), and takes its
    chunks from the free device memory: a CPU-sized chunk of 16 rows does not split the 64
    rows on the device. Every spectrum takes the cheap path (one candidate, no
    synchronisation); the gate's row selection is one synchronisation per bin-size group, and
    the gated-out rows' full path one per repair round. The synchronisations (15 for 64 rows in
    3 bin-size groups; 22 before the gate) and launches (6.6e3: the full path's pursuit and
    second coarse solve; 5.1e3 before the gate) do not grow with the rows beyond the groups
    that have a gated-out row, so chunks of 1e5 spectra make them < 1 µs a spectrum."""
    from peakfit import autostart
    from peakfit.gpu import work_elements

    cp = standin
    model, x, Y, _ = _lm_problem(k=64)
    assert work_elements() == (8 << 30) // 4 // 8  # a quarter of the stand-in's free 8 GiB
    per_cpu_chunk = 16
    monkeypatch.setattr(autostart, "_CHUNK_ELEMENTS", per_cpu_chunk * 8760)  # 16 rows on a CPU
    out = {}
    for k in (16, 64):
        COUNTS.reset()
        autostart.auto_start(model, cp.asarray(x), cp.asarray(Y[:k]))
        out[k] = COUNTS.snapshot()
    print("\nauto start per chunk, k=16 and k=64:", json.dumps(out))
    # one chunk for 64 rows (four CPU-sized chunks would count about 4x those of 16 rows);
    # what grows is data-dependent (more rows to repair, more LM iterations at the slowest)
    # (16 rows: the full path in fewer groups)
    assert out[64]["launches"] <= 2.0 * out[16]["launches"]
    assert out[64]["syncs"] <= 2.0 * out[16]["syncs"]
    # (the re-ranking of the repair rounds on the raw data, autostart._rerank: 7 218 launches,
    # 17 syncs and 426 raw launches here, from 6.6e3, 15 and 2e2-3e2)
    assert out[64]["syncs"] <= 17  # 22 before the gate, 36 per chunk of 570 rows before that
    # the LM iterations run on the device (peakfit.gpu.lm_kernel: step, fused evaluation,
    # accept; 12 589 launches and 78 fused evaluations with the host-driven step); views and
    # cupy.empty are no launch (CuPy makes them without a kernel); the generated residual
    # and term-values kernels replace a CuPy operation per step of every term: 4 927 + 453
    # RawKernel calls (main's code counted alike: 5 297 + 426)
    assert out[64]["launches"] <= 5300
    assert 120 <= out[64]["raw_launches"] <= 500
    # the fused kernel reads the data instead of forming m x P Jacobians: about 2.1 MB a
    # spectrum here (2.5 MB with main's code counted alike, before the generated residual
    # and term kernels, the in-place moving sums and bins, the int32 crossings), of
    # which the gated-out rows' pursuit grid (M x 8M atoms, 34 MB a bin-size group whatever
    # its rows) is most: at scale (gpu_check.py --counts) 0.65 MB a spectrum and 56 MB a
    # chunk; below m = 500 points both noise estimates of step 2 are formed, chosen per row
    # on the device instead of by a host read (+0.15 MB; none at m >= 500)
    assert out[64]["device_bytes"] / 64 <= 2.3e6
    assert out[64]["d2h_bytes"] <= 4096 * 64


def test_the_float32_start_moves_half_the_bytes_of_the_full_resolution_data(standin,
                                                                           monkeypatch):
    """The start of a float32 fit runs in float32 (``peakfit.pipeline.START_IN_FIT_DTYPE``):
    the full-resolution arrays of steps 1-3 move half their bytes (the noise's fourth
    difference exactly half, the normalisation, moving sums and bins about half), the binned
    data and the coarse solves stay float64, with the same launches and synchronisations. At
    k = 512 (``gpu_check.py --counts``): 0.499 instead of 0.652 MB a spectrum, 3 930 instead
    of 3 925 launches, 15 syncs either way. The pipeline hands a float32 fit's dtype over."""
    from peakfit import autostart

    cp = standin
    model = GaussianModel(4)
    x, Y, _ = make_batch(64, 1000, 4, seed=1)
    out, where = {}, {}
    for dt in ("float64", "float32"):
        COUNTS.reset()
        autostart.auto_start(model, cp.asarray(x), cp.asarray(Y.astype(dt)), missing=False,
                             return_info=True, dtype=dt)
        out[dt] = COUNTS.snapshot()
        where[dt] = COUNTS.by_function()
    print("\nauto start float64 / float32, k=64:", json.dumps(out))
    f64, f32 = out["float64"], out["float32"]
    b64 = {fn: v[2] for fn, v in where["float64"].items()}
    b32 = {fn: v[2] for fn, v in where["float32"].items()}
    # k x m arrays only: exactly half (measured 0.5; the normalisation 0.51, the bins
    # 0.51, the moving sums 0.57: their bin-resolution share stays float64)
    for fn in ("autostart._fourth", "autostart._noise", "autostart.take"):
        assert 2 * b32[fn] == b64[fn], fn
    for fn, r in (("autostart._prepare", 0.52), ("autostart._bin_rows", 0.52),
                  ("autostart._moving", 0.6), ("autostart._pilot_fwhm", 0.85)):
        assert b32[fn] <= r * b64[fn], fn
    # the binned stage and the chunk's pursuit atoms (most of it at k = 64) stay float64
    for fn in ("autostart._pursuit", "autostart._feature", "kernels.residual"):
        assert b32[fn] == b64[fn], fn
    assert f32["device_bytes"] <= 0.92 * f64["device_bytes"]  # measured 0.91 (k = 512: 0.77)
    assert f32["syncs"] <= f64["syncs"]  # 13 and 15 here: one repair round fewer
    assert abs(f32["launches"] - f64["launches"]) <= 0.01 * f64["launches"]
    assert abs(f32["raw_launches"] - f64["raw_launches"]) <= 0.01 * f64["raw_launches"]
    # the pipeline's float32 fit starts in float32, its float64 fit in float64
    seen = []
    orig = autostart.auto_start

    def spy(*a, **kw):
        seen.append(np.dtype(kw.get("dtype") or np.float64).name)
        return orig(*a, **kw)

    monkeypatch.setattr(autostart, "auto_start", spy)
    for dt in ("float32", "float64"):
        peakfit.fit_gaussians_batch(cp.asarray(x[:]), cp.asarray(Y[:8]), 4, device="gpu",
                                    dtype=dt)
    assert seen == ["float32", "float64"]


@pytest.mark.slow
@pytest.mark.parametrize("n, baseline, gate, layout", [
    (4, "none", False, "shared"), (1, "none", False, "shared"), (4, "linear", True, "shared"),
    (4, "quadratic", True, "shared"), (2, "linear", False, "shared"),
    (4, "linear", True, "x per row"), (4, "none", True, "ragged"),
    (4, "linear", True, "ragged, x per row")])
def test_the_starts_memory_per_row_stays_within_its_estimate(standin, monkeypatch, n,
                                                             baseline, gate, layout):
    """The start sizes its chunks from ``_elements_per_row`` (on a GPU: a fraction of the free
    memory over it). The peak memory of the GPU path (tracemalloc on the stand-in, whose
    device arrays are NumPy's) per spectrum must stay below it, for every baseline, with every
    row gated out (the full path: pursuit on every row), with abscissae per row and with
    missing points (the pipeline's ragged rows: NaN runs, x per row), and the estimate not
    waste more than half of a chunk. Measured (256 rows, m = 1000), in elements a row:

    ==================================  ========  ========  ===========
    case                                measured  estimate  before
    ==================================  ========  ========  ===========
    n = 4, every row gated out          11.1k     13.6k     14.7k
    n = 1, every row gated out          6.5k      8.0k      10.1k
    n = 4, linear                       20.1k     26.1k     15.2k (low)
    n = 4, quadratic                    29.9k     32.4k     15.5k (low)
    n = 2, linear, every row gated out  14.0k     22.4k     11.5k (low)
    n = 4, linear, x per row            21.1k     24.1k     15.2k (low)
    n = 4, NaN runs                     18.4k     33.6k     14.7k (low)
    n = 4, linear, NaN runs, x per row  40.6k     44.1k     15.2k (low)
    ==================================  ========  ========  ===========
    """
    import tracemalloc

    from gpu_check import ragged_mask

    from peakfit import autostart

    cp = standin
    monkeypatch.setattr(autostart, "_GATE", gate)
    model = GaussianModel(n, baseline)
    x, Y, _ = make_batch(256, 1000, n, seed=1)
    if baseline != "none":
        Y = Y + 0.3 + 0.2 * (x - x.mean()) / np.ptp(x)
    missing = layout.startswith("ragged")
    if missing:
        Y[ragged_mask(256, 1000, 0.2, seed=1)] = np.nan
    if layout.endswith("x per row"):
        x = np.broadcast_to(x, Y.shape).copy()
    xd, Yd = cp.asarray(x), cp.asarray(Y)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        autostart.auto_start(model, xd, Yd, missing=missing, return_info=True)
        peak = (tracemalloc.get_traced_memory()[1] - base) / 256 / 8
    finally:
        tracemalloc.stop()
    est = autostart._elements_per_row(model, 1000, 0, x.ndim == 1, missing)
    print(f"\nstart memory per row, n={n} {baseline} gate={gate} {layout}: {peak:.0f} "
          f"elements, estimate {est}")
    assert peak <= est <= 2.0 * peak


# ---------------------------------------------------------------------------- gd
def _steps_1_2_syncs() -> dict[str, int]:
    """Host synchronisations in the functions of steps 1-2 of the auto start, by site."""
    from gpu_check import _STEPS_1_2

    return {s: n for s, n in COUNTS.sites.items() if s.rsplit(":", 1)[0] in _STEPS_1_2}


def _ragged(Y: np.ndarray, seed: int, frac: float = 0.2) -> np.ndarray:
    """Y with a NaN run of about ``frac`` of the points, at a different place in every row."""
    rng = np.random.default_rng(seed)
    k, m = Y.shape
    Y = Y.copy()
    for i in range(k):
        ln = int(m * frac * rng.uniform(0.5, 1.5))
        s = int(rng.integers(0, m - ln))
        Y[i, s:s + ln] = np.nan
    return Y


@pytest.mark.parametrize("baseline", ["none", "linear"])
@pytest.mark.parametrize("ragged", [False, True])
def test_steps_1_2_of_the_start_read_the_device_once_per_chunk(standin, baseline, ragged):
    """Issue #16 item 1: steps 1-2 of the start (validity, baseline, polarity, noise, bin
    sizes) decide on the device; the host reads their outcome once a chunk (bin sizes and
    doubtful polarities in one transfer). Before: 3 to 12 a chunk (``bool(finite.all())``,
    ``bool(xfin.all())``, ``bool(lifted.any())``, the bin sizes, the doubtful rows, the
    raw refinement's checks). The data have peaks at the ends on a slope (doubtful polarity:
    the second polarity pass runs), ragged or not; the result equals NumPy's."""
    from peakfit.autostart import auto_start

    cp = standin
    model = GaussianModel(2, baseline)
    x, Y, _ = make_batch(12, 300, 2, seed=5)
    Y = Y + (0.8 - 0.02 * x)[None, :] + 3.0 * np.exp(-((x - 2.0) / 4.0) ** 2)[None, :]
    if ragged:
        Y = _ragged(Y, seed=5)
    p_ref = auto_start(model, x, Y)
    # per chunk: 4 chunks of 3 rows; missing given as the pipeline gives it
    COUNTS.reset()
    p = auto_start(model, cp.asarray(x), cp.asarray(Y), chunk_size=3, missing=ragged)
    sites = _steps_1_2_syncs()
    print(f"\nsteps 1-2, 4 chunks ({baseline}, ragged={ragged}):", json.dumps(sites),
          "all:", COUNTS.syncs)
    assert sum(sites.values()) == 4  # one a chunk: _estimate's read
    assert set(sites) == {next(s for s in sites if s.startswith("autostart._estimate:"))}
    np.testing.assert_allclose(p.get(), p_ref, rtol=1e-7, atol=1e-9)
    COUNTS.reset()
    auto_start(model, cp.asarray(x), cp.asarray(Y))  # missing not given: checked once a call
    assert sum(_steps_1_2_syncs().values()) == 2


def test_ragged_rows_start_in_one_pass(standin, monkeypatch):
    """Issue #16 item 1: ragged rows (missing points at different places) are started in one
    call of the estimator, their missing points masked, not once per pattern of valid points:
    the start's launches and host synchronisations for 24 rows with 24 patterns are those of
    one chunk (before: 24 calls, one a pattern). The result equals NumPy's."""
    from peakfit import autostart, pipeline

    x, Y, _ = make_batch(24, 400, 2, seed=9)
    Yr = _ragged(Y, seed=9)
    calls = []
    orig = autostart.auto_start
    monkeypatch.setattr(autostart, "auto_start",
                        lambda *a, **k: calls.append(a[2].shape[0]) or orig(*a, **k))
    counts = {}
    orig_sp = pipeline.start_points

    def start_points(*a, **k):
        before = COUNTS.snapshot()
        out = orig_sp(*a, **k)
        counts[len(counts)] = {key: COUNTS.snapshot()[key] - before[key] for key in before}
        return out

    monkeypatch.setattr(pipeline, "start_points", start_points)
    with peakfit.use_engine("numpy"):
        ref = peakfit.fit_gaussians_batch(x, Yr, 2, device="cpu", nan_policy="omit")
    assert calls == [24]
    calls.clear()
    counts.clear()
    COUNTS.reset()
    r = peakfit.fit_gaussians_batch(x, Yr, 2, device="gpu", nan_policy="omit")
    assert calls == [24] and len(counts) == 1
    ragged = counts[0]
    counts.clear()
    peakfit.fit_gaussians_batch(x, Y, 2, device="gpu")
    full = counts[0]
    print("\nstart of 24 ragged rows:", json.dumps(ragged), "\nof the same rows, full:",
          json.dumps(full))
    # one chunk, whose rows fall into more groups of bin size than the full rows (a gap cuts
    # a peak: its feature looks narrower) and more of which fail the start's gate (the full
    # rows here pass it: the cheap path alone); measured 7 713 launches and 16
    # synchronisations against 2 337 and 8 (before the gate: 10 213 and 45 against 3 996 and
    # 20; the whole fit: 10 854 launches, 84 synchronisations; 39 450 and 309 when started
    # per pattern)
    # (the repair rounds' re-ranking on the raw data, autostart._rerank: 12 126 launches and 28
    # synchronisations instead of 7 713 and 16; the full rows take the cheap path, unchanged)
    assert ragged["launches"] <= 12500 and full["launches"] <= 2600
    assert ragged["syncs"] <= 4 * full["syncs"]
    np.testing.assert_array_equal(r.state, ref.state)
    ok = ref.converged
    assert ok.sum() >= 20
    np.testing.assert_allclose(r.p[ok], ref.p[ok], rtol=1e-7, atol=1e-9)


def test_gd_on_device_arrays_equals_numpy(standin):
    from peakfit.gd import SGD, Adam, GaussianPeak, lambda_max, make_gaussian_peak, train

    cp = standin
    p = make_gaussian_peak(200, seed=0)
    pd = GaussianPeak(cp.asarray(p.x), cp.asarray(p.y))
    assert pd.xp is cp
    lam_h, lam_d = lambda_max(p, [1.0, 0.0, 1.0]), lambda_max(pd, cp.asarray([1.0, 0.0, 1.0]))
    assert lam_d == pytest.approx(lam_h, rel=1e-9)
    for make in (lambda: SGD(lr=0.5 / lam_h, momentum=0.9), lambda: Adam(lr=1e-2)):
        hh = train(p, [1.0, 0.0, 1.0], make(), epochs=3, batch_size=50, seed=1)
        hd = train(pd, cp.asarray([1.0, 0.0, 1.0]), make(), epochs=3, batch_size=50, seed=1)
        np.testing.assert_allclose(hd.epoch_loss, hh.epoch_loss, rtol=1e-10)
        assert hd.epoch_loss[-1] < hd.epoch_loss[0]


# ------------------------------------------------------------------ device='auto'
def test_auto_falls_back_to_the_cpu_with_one_warning_when_the_kernel_cannot_run(
        standin, data, monkeypatch):
    import cupy_standin

    from peakfit import gpu as pf_gpu

    x, Y, _ = data
    Yc = np.nan_to_num(Y[:4], nan=0.0, posinf=0.0)

    def no_nvrtc(code, name):
        raise RuntimeError("libnvrtc.so.12: cannot open shared object file")

    monkeypatch.setattr(cupy_standin, "host_build", no_nvrtc)
    monkeypatch.setattr(pf_gpu, "_PROBED", {})
    with pytest.warns(peakfit.FitWarning, match=r"device='auto'.*on the CPU.*libnvrtc") as rec:
        r = peakfit.fit_gaussians_batch(x, Yc, 2, device="auto")
    assert len(rec) == 1 and r.device == "cpu"
    with pytest.raises(peakfit.GPUUnavailableError, match="could not compile and run"):
        peakfit.fit_gaussians_batch(x, Yc, 2, device="gpu")
    monkeypatch.setattr(pf_gpu, "_PROBED", {})
    monkeypatch.undo()
    install(monkeypatch)
    assert pf_gpu.probe(sys.modules["cupy"]) is None  # the working stand-in passes


# ------------------------------------------------------------ fp32 accumulation accuracy
def test_float32_minima_within_1e_4_of_the_x_span_of_float64(standin):
    """Issue #16 item 3: the fp32 kernel (float sums per 32-point block, double across blocks,
    S compensated; no double arithmetic per point) finds the fp64 minima of 4 peaks on
    m = 1000 points to 1e-4 of the x span. Where a minimum is flat (stderr of a mean above 1 %
    of the span) float32's own rounding of the residual moves it more (the kernel with double
    sums per point did the same): there the shift stays below 5 % of the stderr."""
    from peakfit.gpu.kernels import generate_source

    src = generate_source(GaussianModel(4, "linear"), "float32")
    inner = src.split("for (int i = i0; i < i1; ++i) {")[1].split("\n        }\n")[0]
    assert "double" not in inner and "pf_real gb_0" in src  # float per point, double per block
    _model, x, Y, _ = _lm_problem(k=48, m=1000)
    r64 = peakfit.fit_gaussians_batch(x, Y, 4, device="gpu", dtype="float64", start="matlab")
    r32 = peakfit.fit_gaussians_batch(x, Y, 4, device="gpu", dtype="float32", start="matlab")
    ok = r64.converged & r32.converged
    assert ok.sum() == 48
    shift = np.abs(r32.means - r64.means) / np.ptp(x)
    se = r64.stderr[:, 1::3] / np.ptp(x)
    sharp = np.all(se < 1e-2, axis=1)
    print(f"\nfp32 vs fp64 minima, n=4, m=1000: max |dmean|/span {shift[sharp].max():.2e} over "
          f"{sharp.sum()} sharp spectra, {shift.max():.2e} over all, 90th pct "
          f"{np.percentile(shift.max(axis=1), 90):.2e}")
    assert sharp.sum() >= 30 and shift[sharp].max() <= 1e-4
    assert np.all(shift <= 0.05 * se)


# --------------------------------------------------------------- host input at link speed
def test_host_chunks_are_copied_ahead_through_pinned_buffers(standin):
    """Issue #16 item 6: host chunks go to the device through pinned buffers on a copy stream,
    one chunk ahead of the fit; float64 input is sent as is and converted on the device for a
    float32 fit; the results are those of the NumPy path."""
    _model, x, Y, _ = _lm_problem(k=48, m=300, n=2)
    k, m = Y.shape
    with peakfit.use_engine("numpy"):
        ref = peakfit.fit_gaussians_batch(x, Y, 2, device="cpu", start="matlab",
                                          dtype="float32")
    COUNTS.reset()
    r = peakfit.fit_gaussians_batch(x, Y, 2, device="gpu", start="matlab", dtype="float32",
                                    chunk_size=16)
    c = COUNTS.snapshot()
    print("\nhost input, 3 chunks of 16:", json.dumps(c))
    assert c["async_h2d_bytes"] == k * m * 8  # every chunk's Y, float64, on the copy stream
    assert c["stream_waits"] == 3  # the compute stream waits on each chunk's copy
    assert c["pinned_bytes"] == 2 * 16 * m * 8  # two alternating staging buffers
    np.testing.assert_array_equal(r.state, ref.state)
    ok = ref.converged
    assert ok.sum() >= 40
    assert np.max(np.abs(r.means[ok] - ref.means[ok])) <= 1e-4 * np.ptp(x)


def test_prefetch_reads_the_next_chunk_while_the_caller_works(standin):
    import threading

    from peakfit.errors import InputError
    from peakfit.gpu.transfer import prefetch

    cp = standin
    read = []
    second_read = threading.Event()

    def source():
        for j in range(3):
            read.append(j)
            if j == 1:
                second_read.set()
            yield j, np.zeros(4), np.full((2, 4), float(j)), None
        raise InputError("chunk 3 is bad")

    got = []
    with pytest.raises(InputError, match="chunk 3 is bad"):  # raised in order, after chunk 2
        for row0, _x, Yd, _w in prefetch(source(), cp):
            if row0 == 0:  # while chunk 0 is being fitted, chunk 1 is read and copied
                assert second_read.wait(5)
            assert type(Yd) is cp.ndarray and float(Yd[0, 0]) == row0
            got.append(row0)
    assert got == [0, 1, 2] and read == [0, 1, 2]
    # device arrays and anything that is not a host float matrix pass through untouched
    dev = cp.ones((2, 4))
    items = list(prefetch(iter([(0, None, dev, None), (2, None, [[1, 2]], None)]), cp))
    assert items[0][2] is dev and items[1][2] == [[1, 2]]
