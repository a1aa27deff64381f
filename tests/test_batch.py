"""Batch fitting on the CPU: equal to per-spectrum fits, bad rows flagged, chunking, OOM retry."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import peakfit
from peakfit import FitState, GPUUnavailableError, InputError, fit_gaussians, fit_gaussians_batch
from peakfit import batch as batch_mod
from peakfit import gpu as pf_gpu
from peakfit.engine import numba_available
from peakfit.models import GaussianModel
from peakfit.scaling import Scaling
from peakfit.solvers.lm import NormalEquations, levenberg_marquardt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _synth_batch import make_batch

BASELINES = ["none", "constant", "linear", "quadratic", "exponential"]
ENGINES = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(
    not numba_available(), reason="needs numba (pip install 'peakfit[numba]')"))]


def _with_baseline(x: np.ndarray, Y: np.ndarray, baseline: str) -> np.ndarray:
    add = {
        "none": 0.0 * x,
        "constant": 0.3 + 0.0 * x,
        "linear": 0.3 + 0.004 * x,
        "quadratic": 0.3 + 0.004 * x - 2e-5 * x * x,
        "exponential": 0.6 * np.exp(-0.02 * x),
    }[baseline]
    return Y + add[None, :]


@pytest.fixture(scope="module")
def data():
    x, Y, truth = make_batch(16, 240, 2, seed=11)
    return x, Y, truth


def _assert_row_equal(r, i, s, *, rtol=1e-8):
    """Batch row i equals the single fit s (same minimum, statistics and counters)."""
    scale = np.maximum(np.abs(s.p), 1e-3 * np.max(np.abs(s.p)))
    np.testing.assert_array_less(np.abs(r.p[i] - s.p) / scale, rtol)
    assert r.sse[i] == pytest.approx(s.gof.sse, rel=1e-9)
    assert r.rsquare[i] == pytest.approx(s.gof.rsquare, rel=1e-12, abs=1e-12)
    assert r.dfe[i] == s.gof.dfe
    assert r.exitflag[i] == s.exitflag
    assert r.state[i] == int(s.state)


# ---------------------------------------------------------------------------------------------
# batch == single
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("baseline", BASELINES)
def test_batch_equals_single_fits_for_every_baseline(data, baseline):
    x, Y0, _ = data
    Y = _with_baseline(x, Y0, baseline)
    r = fit_gaussians_batch(x, Y, 2, baseline=baseline, start="matlab", device="cpu")
    assert r.device == "cpu" and r.dtype == "float64" and len(r) == Y.shape[0]
    same_iter = 0
    for i in range(Y.shape[0]):
        s = fit_gaussians(x, Y[i], 2, baseline=baseline, start="matlab")
        _assert_row_equal(r, i, s)
        same_iter += int(r.iterations[i] == s.output.iterations)
        np.testing.assert_allclose(r.means[i], s.means, rtol=0, atol=1e-7 * 100)
    # the same algorithm on the same numbers: the iteration counts agree (rounding may change
    # the last step of a rare row)
    assert same_iter >= Y.shape[0] - 1


def test_batch_getitem_is_the_single_fit(data):
    x, Y, _ = data
    r = fit_gaussians_batch(x, Y, 2, start="matlab", device="cpu")
    for i in (0, 5, -1):
        s = fit_gaussians(x, Y[i], 2, start="matlab")
        g = r[i]
        assert type(g) is type(s)
        assert g.display() == s.display()
        np.testing.assert_allclose(g.confint(), s.confint(), rtol=1e-7)
        np.testing.assert_allclose(g.output.residuals, s.output.residuals, atol=1e-9)
        assert g.output.iterations == s.output.iterations
        assert g.output.funcCount == s.output.funcCount
        np.testing.assert_allclose(g.start, s.start, rtol=1e-12)
        # the batch's own standard errors are those of the single fit
        np.testing.assert_allclose(r.stderr[i], s.stderr, rtol=1e-6)
    with pytest.raises(IndexError):
        r[len(r)]
    with pytest.raises(TypeError):
        r[1.5]


def test_default_start_and_explicit_start_arrays(data):
    x, Y, truth = data
    r = fit_gaussians_batch(x, Y[:4], 2, device="cpu")  # start='auto'
    for i in range(4):
        s = fit_gaussians(x, Y[i], 2)
        _assert_row_equal(r, i, s)
        assert r.state[i] == int(FitState.CONVERGED)
        np.testing.assert_allclose(r.start[i], s.start, rtol=1e-12)
    shared = truth[0] * 1.02
    r1 = fit_gaussians_batch(x, Y[:3], 2, start=shared, device="cpu")
    per_row = truth[:3] * 0.98
    r2 = fit_gaussians_batch(x, Y[:3], 2, start=per_row, device="cpu")
    for i in range(3):
        _assert_row_equal(r1, i, fit_gaussians(x, Y[i], 2, start=shared))
        _assert_row_equal(r2, i, fit_gaussians(x, Y[i], 2, start=per_row[i]))
        np.testing.assert_allclose(r2.start[i], np.asarray(r2[i].start), rtol=0)


def test_bounds_and_tolerances_are_those_of_the_single_fit(data):
    x, Y, _ = data
    lo = [0, 0, 0, 0, 0, 3.0]
    hi = [np.inf, 100, 10, np.inf, 100, 4.0]
    kw = {"lower": lo, "upper": hi, "tol_fun": 1e-10, "tol_x": 1e-10, "max_iter": 50}
    r = fit_gaussians_batch(x, Y[:5], 2, start="matlab", device="cpu", **kw)
    for i in range(5):
        s = fit_gaussians(x, Y[i], 2, start="matlab", Lower=lo, Upper=hi, TolFun=1e-10,
                          TolX=1e-10, MaxIter=50)
        _assert_row_equal(r, i, s)
        np.testing.assert_array_equal(r[i].activebounds, s.activebounds)
        assert np.all(r.p[i] >= np.array(lo)) and np.all(r.p[i] <= np.array(hi))
    assert np.any(r.c == 4.0)  # the upper bound on c2 is active somewhere


def test_weights_shared_and_per_row(data):
    x, Y, _ = data
    rng = np.random.default_rng(5)
    w = rng.uniform(0.5, 2.0, x.size)
    W = rng.uniform(0.5, 2.0, (4, x.size))
    W[1, :30] = 0.0  # zero weights: a ragged spectrum without NaN
    r = fit_gaussians_batch(x, Y[:4], 2, start="matlab", weights=w, device="cpu")
    r2 = fit_gaussians_batch(x, Y[:4], 2, start="matlab", weights=W, device="cpu")
    for i in range(4):
        _assert_row_equal(r, i, fit_gaussians(x, Y[i], 2, start="matlab", Weights=w))
        s = fit_gaussians(x, Y[i], 2, start="matlab", Weights=W[i])
        _assert_row_equal(r2, i, s)
        assert r2[i].display() == s.display()


def test_per_row_x_and_unsorted_shared_x(data):
    x, Y, _ = data
    k = 5
    X = np.stack([x * (1 + 0.01 * i) + i for i in range(k)])
    r = fit_gaussians_batch(X, Y[:k], 2, start="matlab", device="cpu")
    for i in range(k):
        _assert_row_equal(r, i, fit_gaussians(X[i], Y[i], 2, start="matlab"))
    perm = np.random.default_rng(2).permutation(x.size)
    r2 = fit_gaussians_batch(x[perm], Y[:k][:, perm], 2, start="matlab", device="cpu")
    r3 = fit_gaussians_batch(x, Y[:k], 2, start="matlab", device="cpu")
    np.testing.assert_array_equal(r2.p, r3.p)
    s = fit_gaussians(x[perm], Y[0][perm], 2, start="matlab")
    g = r2[0]
    np.testing.assert_allclose(g.output.residuals, s.output.residuals, atol=1e-10)
    np.testing.assert_array_equal(g.x, x[perm])
    # per-row x, each row shuffled differently
    Xs = np.stack([X[i][np.random.default_rng(i).permutation(x.size)] for i in range(k)])
    Ys = np.stack([Y[i][np.random.default_rng(i).permutation(x.size)] for i in range(k)])
    r4 = fit_gaussians_batch(Xs, Ys, 2, start="matlab", device="cpu")
    np.testing.assert_allclose(r4.p, r.p, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# bad rows: flagged, and nothing else changes
# ---------------------------------------------------------------------------------------------
def test_bad_rows_are_flagged_and_good_rows_fitted_as_if_alone(data):
    x, Y, _ = data
    good = Y[:6].copy()
    ref = fit_gaussians_batch(x, good, 2, start="matlab", device="cpu")
    m = x.size
    bad = np.zeros((7, m))
    bad[0] = good[0]
    bad[0, 100] = np.nan            # NaN between valid points (pad policy)
    bad[1] = good[1]
    bad[1, 7] = np.inf              # Inf
    bad[2] = 0.0                    # all zero
    bad[3] = 2.5                    # constant
    bad[4] = np.nan
    bad[4, 10:15] = good[4, 10:15]  # 5 valid points < 6 coefficients
    bad[5] = np.nan                 # all NaN
    bad[6] = good[2]
    bad[6, :20] = np.nan
    bad[6, -35:] = np.nan           # ragged: NaN padding at both ends
    rows = np.concatenate([good[:3], bad, good[3:]])
    r = fit_gaussians_batch(x, rows, 2, start="matlab", device="cpu", chunk_size=4)
    S = FitState
    expect = ([S.CONVERGED] * 3 + [S.NONFINITE_INPUT, S.NONFINITE_INPUT, S.CONSTANT_DATA,
              S.CONSTANT_DATA, S.INSUFFICIENT_DATA, S.INSUFFICIENT_DATA, S.CONVERGED]
              + [S.CONVERGED] * 3)
    assert r.state.tolist() == [int(s) for s in expect]
    assert r.exitflag[3:9].tolist() == [-4, -4, -3, -3, -4, -4]
    assert np.all(np.isnan(r.p[3:9])) and np.all(r.iterations[3:9] == 0)
    # the good rows are bit-for-bit those of the batch without the bad rows
    idx = [0, 1, 2, 10, 11, 12]
    np.testing.assert_array_equal(r.p[idx], ref.p)
    np.testing.assert_array_equal(r.sse[idx], ref.sse)
    np.testing.assert_array_equal(r.iterations[idx], ref.iterations)
    # the ragged row is the single fit of its valid points
    valid = np.isfinite(bad[6])
    s = fit_gaussians(x[valid], bad[6][valid], 2, start="matlab")
    _assert_row_equal(r, 9, s)
    assert r.numobs[9] == valid.sum() == r[9].output.numobs
    assert r[9].display() == s.display()
    # unfitted rows still index to a GaussianFit that says why
    g = r[5]
    assert g.exitflag == -3 and "constant" in g.output.message
    assert "Inf" in r[4].output.message
    assert r.state_counts() == {"converged": 7, "nonfinite_input": 2, "insufficient_data": 2,
                                "constant_data": 2}


def test_nan_policy_omit_treats_interior_nan_as_missing(data):
    x, Y, _ = data
    y = Y[0].copy()
    y[[50, 51, 120]] = np.nan
    r_pad = fit_gaussians_batch(x, y[None], 2, start="matlab", device="cpu")
    assert r_pad.state[0] == FitState.NONFINITE_INPUT
    r = fit_gaussians_batch(x, y[None], 2, start="matlab", device="cpu", nan_policy="omit")
    s = fit_gaussians(x, y, 2, start="matlab", nan_policy="omit")
    _assert_row_equal(r, 0, s)
    assert r.numobs[0] == x.size - 3


def test_ragged_per_row_x_with_nan_padding(data):
    x, Y, _ = data
    X = np.stack([x, x + 1.0, x * 1.1])
    Yr = Y[:3].copy()
    X[1, -40:] = np.nan
    Yr[1, -40:] = np.nan
    X[2, :15] = np.nan
    Yr[2, :15] = np.nan
    r = fit_gaussians_batch(X, Yr, 2, start="matlab", device="cpu")
    for i in range(3):
        v = np.isfinite(X[i]) & np.isfinite(Yr[i])
        _assert_row_equal(r, i, fit_gaussians(X[i][v], Yr[i][v], 2, start="matlab"))


# ---------------------------------------------------------------------------------------------
# precision, chunking, sources
# ---------------------------------------------------------------------------------------------
def test_float32_reaches_the_float64_minima():
    x, Y, truth = make_batch(40, 400, 3, seed=4)
    r64 = fit_gaussians_batch(x, Y, 3, start=truth, device="cpu")
    r32 = fit_gaussians_batch(x, Y, 3, start=truth, device="cpu", dtype="float32")
    assert r32.dtype == "float32"
    ok = r64.converged & r32.converged
    assert ok.sum() >= 38
    span = np.ptp(x)
    assert np.max(np.abs(r32.means[ok] - r64.means[ok])) <= 1e-4 * span
    np.testing.assert_allclose(r32.sse[ok], r64.sse[ok], rtol=1e-5)
    np.testing.assert_allclose(r32.stderr[ok], r64.stderr[ok], rtol=1e-3)


def test_chunks_threads_and_check_every_do_not_change_results(data):
    x, Y, _ = data
    a = fit_gaussians_batch(x, Y, 2, start="matlab", device="cpu", n_threads=1,
                            chunk_size=1000)
    b = fit_gaussians_batch(x, Y, 2, start="matlab", device="cpu", n_threads=2, chunk_size=3)
    c = fit_gaussians_batch(x, Y, 2, start="matlab", device="cpu", check_every=4)
    for other in (b, c):
        np.testing.assert_array_equal(a.p, other.p)
        np.testing.assert_array_equal(a.stderr, other.stderr)
        np.testing.assert_array_equal(a.iterations, other.iterations)
        np.testing.assert_array_equal(a.funcCount, other.funcCount)
        np.testing.assert_array_equal(a.exitflag, other.exitflag)


def test_iterator_memmap_and_h5py_sources(data, tmp_path):
    x, Y, _ = data
    ref = fit_gaussians_batch(x, Y, 2, start="matlab", device="cpu")

    def gen():
        for i in range(0, Y.shape[0], 5):
            yield Y[i:i + 5]

    r = fit_gaussians_batch(x, gen(), 2, start="matlab", device="cpu", chunk_size=3)
    np.testing.assert_array_equal(r.p, ref.p)
    with pytest.raises(InputError, match="iterator"):
        r[0]
    r2 = fit_gaussians_batch(None, ((x, Y[i:i + 4]) for i in range(0, 16, 4)), 2,
                             start="matlab", device="cpu")
    np.testing.assert_array_equal(r2.p, ref.p)
    mm = np.lib.format.open_memmap(tmp_path / "Y.npy", mode="w+", dtype=np.float64,
                                   shape=Y.shape)
    mm[:] = Y
    mm.flush()
    r3 = fit_gaussians_batch(x, np.load(tmp_path / "Y.npy", mmap_mode="r"), 2, start="matlab",
                             device="cpu", chunk_size=6)
    np.testing.assert_array_equal(r3.p, ref.p)
    assert r3[2].display() == ref[2].display()
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "s.h5", "w") as fh:
        fh["Y"] = Y
    with h5py.File(tmp_path / "s.h5", "r") as fh:
        r4 = fit_gaussians_batch(x, fh["Y"], 2, start="matlab", device="cpu", chunk_size=5)
        np.testing.assert_array_equal(r4.p, ref.p)
        assert r4[7].display() == ref[7].display()


def test_out_of_memory_retries_smaller_chunks_and_loses_nothing(data, monkeypatch):
    x, Y, _ = data
    ref = fit_gaussians_batch(x, Y, 2, start="matlab", device="cpu")
    real = batch_mod._fit_block
    sizes: list[int] = []

    def flaky(backend, spec, xc, Yc, Wc, row0):
        sizes.append(Yc.shape[0])
        if Yc.shape[0] > 3:
            raise MemoryError("simulated out of memory")
        return real(backend, spec, xc, Yc, Wc, row0)

    monkeypatch.setattr(batch_mod, "_fit_block", flaky)
    with pytest.warns(peakfit.FitWarning, match="out of memory"):
        r = fit_gaussians_batch(x, Y, 2, start="matlab", device="cpu", chunk_size=16,
                                n_threads=1)
    np.testing.assert_array_equal(r.p, ref.p)
    np.testing.assert_array_equal(r.iterations, ref.iterations)
    assert sizes[:3] == [16, 8, 4] and max(sizes[3:]) <= 3
    assert sum(s for s in sizes if s <= 3) == 16  # every row fitted exactly once


def test_run_rows_fake_backend_splits_until_it_fits():
    class FakeOOM(Exception):
        pass

    calls: list[tuple[int, int]] = []
    ooms: list[int] = []

    def fit(a, b):
        calls.append((a, b))
        if b - a > 5:
            raise FakeOOM
        return {"rows": np.arange(a, b)}

    parts, limit = batch_mod._run_rows(fit, 10, 33, (FakeOOM,), ooms.append)
    got = np.concatenate([p["rows"] for _, p in parts])
    np.testing.assert_array_equal(got, np.arange(10, 33))  # every row once, in order
    assert ooms == [23, 11] and limit == 5
    assert calls[:3] == [(10, 33), (10, 21), (10, 15)]
    assert all(b - a <= 5 for a, b in calls[2:])

    def never(a, b):
        raise FakeOOM

    with pytest.raises(FakeOOM):
        batch_mod._run_rows(never, 0, 4, (FakeOOM,), ooms.append)


# ---------------------------------------------------------------------------------------------
# tables, summary, device selection, errors
# ---------------------------------------------------------------------------------------------
def test_to_table_dataframe_and_summary(data):
    x, Y, _ = data
    Yb = Y[:3].copy()
    Yb[1] = 1.0
    r = fit_gaussians_batch(x, Yb, 2, baseline="constant", start="matlab", device="cpu")
    t = r.to_table()
    names = ["a1", "b1", "c1", "a2", "b2", "c2", "d0"]
    assert list(t) == (["index", "state", "state_code", "exitflag", "sse", "rsquare",
                        "adjrsquare", "rmse", "dfe", "iterations", "quality", "mean1",
                        "mean2"] + names
                       + [f"{nm}_err" for nm in names])
    assert t["state"].tolist() == ["converged", "constant_data", "converged"]
    assert t["state_code"].tolist() == [0, 5, 0]
    np.testing.assert_array_equal(t["b2"], r.p[:, 4])
    np.testing.assert_array_equal(t["d0_err"], r.stderr[:, 6])
    np.testing.assert_array_equal(t["mean1"], r.means[:, 0])
    df = r.to_dataframe()
    assert df.shape == (3, len(t) - 1) and df.index.name == "index"
    assert df.loc[1, "state"] == "constant_data"
    text = r.summary()
    assert "3 spectra" in text and "constant_data" in text and "device cpu" in text
    assert r.n_converged == 2 and repr(r).startswith("<BatchFit Gauss2")


def test_device_selection_and_gpu_errors(data, monkeypatch):
    x, Y, _ = data
    r = fit_gaussians_batch(x, Y[:2], 2, start="matlab")  # 'auto'
    if not pf_gpu.available():
        assert r.device == "cpu"
        with pytest.raises(GPUUnavailableError, match=r'pip install "peakfit\[gpu\]"'):
            fit_gaussians_batch(x, Y[:2], 2, device="gpu")
    with pytest.raises(InputError, match="device"):
        fit_gaussians_batch(x, Y[:2], 2, device="tpu")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"x": np.arange(10.0), "Y": np.zeros((2, 11))}, "x has 10 points"),
        ({"x": np.zeros((3, 11)), "Y": np.zeros((2, 11))}, "expected"),
        ({"Y": np.zeros((2, 3, 11))}, "2-D"),
        ({"Y": np.zeros((2, 11), dtype=complex)}, "complex"),
        ({"Y": np.array([["a"] * 11] * 2)}, "numeric"),
        ({"dtype": "float16"}, "dtype"),
        ({"weights": -np.ones(11)}, ">= 0"),
        ({"weights": np.ones(12)}, "weights has shape"),
        ({"start": [1.0, 2.0]}, "start has shape"),
        ({"start": "best"}, "unknown start"),
        ({"lower": [0.0] * 5}, "Lower has 5"),
        ({"nan_policy": "drop"}, "nan_policy"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"x": np.r_[np.nan, np.arange(10.0)]}, "non-finite"),
        ({"options": peakfit.fitoptions("gauss1", Robust="Bisquare")}, "Robust"),
    ],
)
def test_input_errors_are_clear(kwargs, match):
    args = {"x": np.linspace(0, 1, 11), "Y": np.ones((2, 11)), "n": 1, "device": "cpu"}
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        fit_gaussians_batch(args.pop("x"), args.pop("Y"), **args)


def test_progress_bar_and_start_none(data, capsys):
    x, Y, _ = data
    r = fit_gaussians_batch(x, Y[:3], 2, start=None, device="cpu", progress=True)
    ref = fit_gaussians_batch(x, Y[:3], 2, device="cpu")
    np.testing.assert_array_equal(r.p, ref.p)
    assert "3/3" in capsys.readouterr().err


def test_one_dimensional_and_empty_input():
    x = np.linspace(0, 10, 101)
    y = 2 * np.exp(-((x - 4) / 1.5) ** 2)
    r = fit_gaussians_batch(x, y, 1, device="cpu")
    assert len(r) == 1 and r.means[0, 0] == pytest.approx(4.0, abs=1e-8)
    r0 = fit_gaussians_batch(x, np.zeros((0, 101)), 1, device="cpu")
    assert len(r0) == 0 and r0.p.shape == (0, 3) and r0.to_table()["sse"].size == 0


# ---------------------------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("baseline", BASELINES)
def test_scaling_parameter_map_equals_the_models_map_row_by_row(baseline):
    model = GaussianModel(2, baseline)
    rng = np.random.default_rng(1)
    k = 6
    X = rng.uniform(-5, 30, (k, 50))
    Y = rng.uniform(0.5, 3, (k, 50))
    scal = Scaling.for_data(model, np.sort(X, axis=1), Y)
    p = rng.uniform(0.1, 2, (k, model.n_params))
    got_in = scal.params_in(p)
    got_out = scal.params_out(p)
    for i in range(k):
        args = (scal.x0[i, 0], scal.sx[i, 0], scal.sy[i, 0])
        np.testing.assert_allclose(got_in[i], model.rescale(p[i], *args), rtol=1e-14)
        np.testing.assert_allclose(got_out[i], model.unscale(p[i], *args), rtol=1e-14)
    T = scal.params_out_jacobian(p)
    h = 1e-6
    for j in range(model.n_params):
        e = np.zeros(model.n_params)
        e[j] = h
        fd = (scal.params_out(p + e) - scal.params_out(p - e)) / (2 * h)
        np.testing.assert_allclose(T[:, :, j], fd, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("baseline", BASELINES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_evaluator_equals_the_model_jacobian(baseline, dtype, engine):
    model = GaussianModel(3, baseline)
    rng = np.random.default_rng(7)
    k, m = 9, 120
    x = np.linspace(-1, 1, m)
    X = x[None, :] + rng.uniform(-0.1, 0.1, (k, 1))
    p = np.column_stack([rng.uniform(0.2, 1, k), rng.uniform(-0.6, 0.6, k),
                         rng.uniform(0.03, 0.3, k)] * 3
                        + [rng.uniform(0.1, 0.5, k) for _ in model.baseline_names])
    p[0, 2] = 0.0     # c == 0: the term vanishes
    p[1, 5] = 1e-300  # extreme width: every exp underflows, derivatives exactly 0
    with np.errstate(over="ignore"):
        Y = model.evaluate(X, p) + 0.01 * rng.standard_normal((k, m))
    sw = rng.uniform(0.5, 1.5, (k, m))
    idx = np.array([3, 0, 8, 1, 5])
    for xx, w in ((x, None), (X, sw), (x, sw[0])):
        ref = NormalEquations.generic(model, xx, Y, w)
        fast = NormalEquations(model, xx.astype(dtype), Y.astype(dtype),
                               None if w is None else w.astype(dtype), block_rows=2,
                               engine=engine)
        assert fast.engine == engine
        with np.errstate(over="ignore"):
            s0, A0, g0 = ref(p[idx], idx)
        s1, A1, g1 = fast(p[idx].astype(dtype), idx)
        assert s1.dtype == np.float64 and A1.dtype == dtype and g1.dtype == dtype
        tol = 1e-12 if dtype == np.float64 else 2e-4
        np.testing.assert_allclose(s1, s0, rtol=tol)
        np.testing.assert_allclose(A1, A0, rtol=tol, atol=tol * np.abs(A0).max())
        np.testing.assert_allclose(g1, g0, rtol=tol, atol=tol * np.abs(g0).max())
    assert np.all(np.isfinite(A1))


def test_levenberg_marquardt_check_every_gives_identical_rows():
    x, Y, truth = make_batch(30, 300, 3, seed=9)
    model = GaussianModel(3)
    lo, hi = model.default_lower(), model.default_upper()
    scal = Scaling.for_data(model, x, Y, lo, hi)
    p0 = scal.params_in(truth * 1.05)
    lo_i, hi_i = scal.bounds_in(lo, hi)
    ev = NormalEquations(model, scal.x_in(x), scal.y_in(Y))
    a = levenberg_marquardt(ev, p0, lo_i, hi_i)
    b = levenberg_marquardt(ev, p0, lo_i, hi_i, check_every=7)
    for f in ("p", "sse", "iterations", "nfev", "exitflag", "A", "g"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    # a row alone gives the same answer as in the batch
    c = levenberg_marquardt(ev.__class__(model, scal.x_in(x), scal.y_in(Y)[4:5]), p0[4:5],
                            lo_i[4:5], hi_i[4:5])
    np.testing.assert_array_equal(c.p[0], a.p[4])
    assert c.iterations[0] == a.iterations[4]


def test_no_warnings_on_clean_data(data):
    x, Y, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_gaussians_batch(x, Y[:4], 2, start="matlab", device="cpu")
