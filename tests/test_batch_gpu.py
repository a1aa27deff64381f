"""Batch fitting on a CUDA GPU (CuPy): equal to the NumPy reference.

With CuPy and a CUDA device (``pytest -m gpu``) these tests run on the GPU; without one they
run, unchanged, on the strict CuPy stand-in of ``cupy_standin.py`` (the generated kernel's host
build behind ``RawKernel``), so that every test run executes the GPU path.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from peakfit import FitState, FitWarning, fit_gaussians_batch
from peakfit import gpu as pf_gpu
from peakfit.models import GaussianModel
from peakfit.solvers.lm import NormalEquations

pytestmark = [pytest.mark.gpu]
REAL_GPU = pf_gpu.available()

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _synth_batch import make_batch  # noqa: E402


@pytest.fixture(autouse=True)
def cp(monkeypatch):
    """The real ``cupy`` with a device, else the stand-in installed as ``cupy``."""
    if REAL_GPU:
        import cupy

        return cupy
    from cupy_standin import CC, install

    if CC is None:
        pytest.skip("no GPU, and the CuPy stand-in needs a C compiler")
    return install(monkeypatch)


@pytest.fixture(scope="module")
def data():
    return make_batch(300, 500, 3, seed=21)


@pytest.mark.parametrize("baseline", ["none", "linear", "exponential"])
@pytest.mark.parametrize("layout", ["points", "rows"])
def test_fused_kernel_equals_normal_equations_on_device(cp, baseline, layout):
    model = GaussianModel(3, baseline)
    rng = np.random.default_rng(3)
    k, m = 64, 300
    x = np.linspace(-1, 1, m)
    p = np.column_stack([rng.uniform(0.2, 1, k), rng.uniform(-0.7, 0.7, k),
                         rng.uniform(0.05, 0.3, k)] * 3
                        + [rng.uniform(0.1, 0.5, k) for _ in model.baseline_names])
    Y = model.evaluate(x, p) + 0.01 * rng.standard_normal((k, m))
    sw = rng.uniform(0, 1.5, (k, m))
    ref = NormalEquations(model, cp.asarray(x), cp.asarray(Y), cp.asarray(sw))
    fused = pf_gpu.FusedNormalEquations(model, cp.asarray(x), cp.asarray(Y), cp.asarray(sw),
                                        layout=layout)
    # shrinking active sets, as the solver passes them (a re-pack keeps only the rows asked
    # for, so a later set must be a subset of an earlier one)
    for idx in (np.arange(k), np.array([5, 60, 2, 33]), np.array([33, 2]), np.array([2])):
        i = cp.asarray(idx)
        s0, A0, g0 = ref(cp.asarray(p[idx]), i)
        s1, A1, g1 = fused(cp.asarray(p[idx]), i)
        np.testing.assert_allclose(s1.get(), s0.get(), rtol=1e-10)
        np.testing.assert_allclose(A1.get(), A0.get(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(g1.get(), g0.get(), rtol=1e-10, atol=1e-12)


def test_gpu_float64_equals_cpu(data):
    x, Y, _truth = data
    r_cpu = fit_gaussians_batch(x, Y, 3, start="matlab", device="cpu")
    r_gpu = fit_gaussians_batch(x, Y, 3, start="matlab", device="gpu")
    assert r_gpu.device.startswith("gpu") and r_gpu.dtype == "float64"
    ok = r_cpu.converged & r_gpu.converged
    assert ok.mean() >= 0.95 * r_cpu.converged.mean()
    np.testing.assert_allclose(r_gpu.p[ok], r_cpu.p[ok], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(r_gpu.sse[ok], r_cpu.sse[ok], rtol=1e-8)
    # standard errors where the peaks are identifiable (rel. error < 1): elsewhere (a peak
    # the data barely support, stderr ~1e4) they amplify the last digits of p
    ident = ok & np.all(r_cpu.stderr < np.abs(r_cpu.p), axis=1)
    assert ident.mean() > 0.8
    np.testing.assert_allclose(r_gpu.stderr[ident], r_cpu.stderr[ident], rtol=1e-4)
    assert np.mean(r_gpu.iterations[ok] == r_cpu.iterations[ok]) > 0.95
    g = r_gpu[0]
    assert g.display() == r_cpu[0].display()


def test_gpu_float32_reaches_the_float64_minima(data):
    x, Y, truth = data
    r64 = fit_gaussians_batch(x, Y, 3, start=truth, device="cpu")
    r32 = fit_gaussians_batch(x, Y, 3, start=truth, device="gpu", dtype="float32")
    ok = r64.converged & r32.converged
    assert ok.mean() > 0.95
    assert np.max(np.abs(r32.means[ok] - r64.means[ok])) <= 1e-4 * np.ptp(x)


def test_cupy_input_stays_on_the_device(cp, data, monkeypatch):
    x, Y, _truth = data
    Yd = cp.asarray(Y)
    shapes: list[tuple[int, ...]] = []
    real_get = cp.ndarray.get

    def spy(self, *a, **kw):
        shapes.append(tuple(self.shape))
        return real_get(self, *a, **kw)

    monkeypatch.setattr(cp.ndarray, "get", spy)
    r = fit_gaussians_batch(x, Yd, 3, start="matlab", device="auto")
    assert r.device.startswith("gpu")
    m = Y.shape[1]
    assert not any(len(s) == 2 and s[1] == m for s in shapes), "spectra copied to the host"
    ref = fit_gaussians_batch(x, Y, 3, start="matlab", device="gpu")
    np.testing.assert_array_equal(r.p, ref.p)


def test_gpu_out_of_memory_retries_with_smaller_chunks(cp, data, monkeypatch):
    x, Y, _ = data
    ref = fit_gaussians_batch(x, Y[:64], 3, start="matlab", device="gpu")
    real = pf_gpu.FusedNormalEquations.__call__
    state = {"raised": 0}

    def flaky(self, p, idx):
        if int(idx.shape[0]) > 16 and state["raised"] < 1:
            state["raised"] += 1
            raise cp.cuda.memory.OutOfMemoryError(1 << 40, 1 << 30)
        return real(self, p, idx)

    monkeypatch.setattr(pf_gpu.FusedNormalEquations, "__call__", flaky)
    with pytest.warns(FitWarning, match="out of memory"):
        r = fit_gaussians_batch(x, Y[:64], 3, start="matlab", device="gpu", chunk_size=64)
    assert state["raised"] == 1
    np.testing.assert_array_equal(r.p, ref.p)
    np.testing.assert_array_equal(r.iterations, ref.iterations)


def test_gpu_bad_rows_and_ragged_rows_match_cpu(data):
    x, Y, _ = data
    Yb = Y[:8].copy()
    Yb[1, 50] = np.nan
    Yb[2] = 0.0
    Yb[3, :40] = np.nan
    Yb[4, :] = np.nan
    Yb[4, :5] = 1.0
    Yb[5, 9] = np.inf
    r_cpu = fit_gaussians_batch(x, Yb, 3, start="matlab", device="cpu")
    r_gpu = fit_gaussians_batch(x, Yb, 3, start="matlab", device="gpu", check_every=3)
    np.testing.assert_array_equal(r_gpu.state, r_cpu.state)
    assert r_gpu.state[[1, 2, 4, 5]].tolist() == [FitState.NONFINITE_INPUT,
                                                  FitState.CONSTANT_DATA,
                                                  FitState.INSUFFICIENT_DATA,
                                                  FitState.NONFINITE_INPUT]
    ok = r_cpu.converged
    np.testing.assert_allclose(r_gpu.p[ok], r_cpu.p[ok], rtol=1e-6, atol=1e-8)


def test_gpu_chunking_does_not_change_results(data):
    x, Y, _ = data
    a = fit_gaussians_batch(x, Y[:100], 3, start="matlab", device="gpu")
    b = fit_gaussians_batch(x, Y[:100], 3, start="matlab", device="gpu", chunk_size=7,
                            check_every=1)
    np.testing.assert_allclose(a.p, b.p, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(a.iterations, b.iterations)
