"""The CPU engines: NumPy (reference) and the optional Numba kernels give the same fits."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import peakfit
from peakfit import InputError
from peakfit import engine as engine_mod
from peakfit.models import GaussianModel
from peakfit.solvers.linalg import solve_batched, solve_compiled
from peakfit.solvers.lm import NormalEquations, levenberg_marquardt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _synth_batch import make_batch, success_mask

needs_numba = pytest.mark.skipif(not engine_mod.numba_available(),
                                 reason="needs numba (pip install 'peakfit[numba]')")


def test_engine_names_are_checked():
    with pytest.raises(InputError, match="engine must be one of auto, numpy, numba"):
        peakfit.set_engine("fortran")
    with pytest.raises(InputError, match="engine must be one of"):
        NormalEquations(GaussianModel(1), np.zeros(3), np.zeros((1, 3)), engine="gpu")


def test_environment_variable_sets_the_default(monkeypatch):
    monkeypatch.setenv("PEAKFIT_ENGINE", "numpy")
    assert peakfit.get_engine() == "numpy"
    monkeypatch.setenv("PEAKFIT_ENGINE", "bogus")
    with pytest.raises(InputError, match=r"PEAKFIT_ENGINE.*got 'bogus'"):
        peakfit.get_engine()


def test_use_engine_restores_the_previous_setting():
    before = peakfit.get_engine()
    with peakfit.use_engine("numpy") as e:
        assert e == "numpy" == peakfit.get_engine()
    assert peakfit.get_engine() == before


def test_numba_requested_without_numba_says_how_to_install(monkeypatch):
    monkeypatch.setattr(engine_mod, "numba_available", lambda: False)
    with pytest.raises(InputError, match=r'pip install "peakfit\[numba\]"'):
        peakfit.set_engine("numba")
    assert engine_mod.resolve_engine("auto") == "numpy"


@needs_numba
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_compiled_solve_equals_lapack(dtype):
    rng = np.random.default_rng(3)
    J = rng.standard_normal((40, 7, 20))
    M = (J @ J.transpose(0, 2, 1) + 1e-3 * np.eye(7)).astype(dtype)
    b = rng.standard_normal((40, 7)).astype(dtype)
    M[5] = 0.0  # singular: NaN row, the others solved
    M[5, :, 0] = 1.0
    ref = solve_batched(M, b)
    got = solve_compiled(M, b)
    assert got.dtype == dtype
    assert np.isnan(got[5]).all() and np.isnan(ref[5]).all()
    ok = np.arange(40) != 5
    tol = 1e-10 if dtype == np.float64 else 2e-3
    np.testing.assert_allclose(got[ok], ref[ok], rtol=tol, atol=tol)


@needs_numba
def test_numba_evaluator_propagates_nan_and_handles_zero_and_tiny_widths():
    model = GaussianModel(3)
    x = np.linspace(-1, 2, 50)
    Y = np.zeros((1, 50))
    p = np.array([[1.0, np.nan, 0.3, 0.5, 0.7, 0.2, 2.0, 1.5, 0.1]])
    for eng in ("numpy", "numba"):
        assert np.isnan(NormalEquations(model, x, Y, engine=eng)(p, np.array([0]))[0][0])
    p = np.array([[1.0, 0.0, 0.0, 0.5, 0.7, 1e-300, 2.0, 1.5, np.inf]])
    with np.errstate(over="ignore", invalid="ignore"):
        ref = NormalEquations(model, x, Y, engine="numpy")(p, np.array([0]))
    got = NormalEquations(model, x, Y, engine="numba")(p, np.array([0]))
    for r, g in zip(ref, got):
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12)


@needs_numba
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_batch_fits_agree_between_engines(dtype):
    x, Y, truth = make_batch(40, 400, 3, seed=21)
    out = {}
    for eng in ("numpy", "numba"):
        with peakfit.use_engine(eng):
            out[eng] = peakfit.fit_gaussians_batch(x, Y, 3, dtype=dtype)
        assert out[eng].engine == eng
    a, b = out["numpy"], out["numba"]
    span = float(x.max() - x.min())
    # same start points (to rounding) and the same minima (means within 1e-6 / 1e-4 of span)
    tol = 1e-6 if dtype == "float64" else 1e-4
    assert np.nanmax(np.abs(a.means - b.means)) < tol * span
    np.testing.assert_array_equal(a.state, b.state)
    np.testing.assert_allclose(b.sse, a.sse, rtol=1e-6 if dtype == "float64" else 1e-3)
    ok = success_mask(b.a, b.b, b.c, truth, b.converged)
    assert ok.mean() == success_mask(a.a, a.b, a.c, truth, a.converged).mean() >= 0.95


@pytest.mark.parametrize("eng", ["numpy", pytest.param("numba", marks=needs_numba)])
@pytest.mark.parametrize("start", ["start1", "start2"])
def test_nist_gauss3_certified_with_either_engine(nist, eng, start):
    """NIST StRD Gauss3 (two overlapping peaks on an exponential): >= 7 certified digits."""
    x, y, d = nist("Gauss3")
    par = d["parameters"]
    b = [float(par[f"b{i}"][start]) for i in range(1, 9)]
    p0 = [b[2], b[3], b[4], b[5], b[6], b[7], b[0], b[1]]
    with peakfit.use_engine(eng):
        r = peakfit.fit_gaussians(x, y, 2, baseline="exponential", start=p0, sort=False,
                                  tol_fun=1e-12, tol_x=1e-12, max_iter=2000,
                                  max_fun_evals=4000)
    q = r.p
    got = np.array([q[6], q[7], q[0], q[1], q[2], q[3], q[4], q[5]])
    cert = np.array([float(par[f"b{i}"]["certified"]) for i in range(1, 9)])
    digits = -np.log10(np.abs(got - cert) / np.abs(cert))
    assert digits.min() >= 7.0


def test_levenberg_marquardt_reports_the_engine_it_ran():
    model = GaussianModel(1)
    x = np.linspace(-3, 3, 61)
    y = model(x, [2.0, 0.5, 1.2])[None, :]
    ev = NormalEquations(model, x, y, engine="numpy")
    res = levenberg_marquardt(ev, np.array([[1.0, 0.0, 1.0]]), model.default_lower(),
                              model.default_upper(), tol_fun=1e-12, tol_x=1e-12)
    assert ev.engine == "numpy"
    np.testing.assert_allclose(res.p[0], [2.0, 0.5, 1.2], rtol=1e-9)


def _lm_problem(dtype, baseline, weights):
    rng = np.random.default_rng(11)
    model = GaussianModel(3, baseline=baseline)
    k, m = 60, 200
    x = np.linspace(0.0, 10.0, m)
    a = rng.uniform(1.0, 3.0, (k, 3))
    b = np.array([2.5, 5.0, 7.5]) + rng.uniform(-0.4, 0.4, (k, 3))  # resolved peaks
    c = rng.uniform(0.4, 0.9, (k, 3))
    truth = np.stack([a, b, c], axis=2).reshape(k, 9)
    nb = model.n_params - 9
    truth = np.hstack([truth, np.full((k, nb), 0.1)])
    Y = model.evaluate(x, truth) + 0.02 * rng.standard_normal((k, m))
    p0 = truth * rng.uniform(0.8, 1.2, truth.shape)
    lo, hi = model.default_lower(), model.default_upper()
    lo = np.broadcast_to(lo, (k, lo.size)).copy()
    hi = np.broadcast_to(hi, (k, hi.size)).copy()
    hi[::3, 0] = truth[::3, 0] * 0.7  # an active upper bound on a height: held coefficients
    lo[1::4, 2] = truth[1::4, 2] * 1.3  # an active lower bound on a width
    p0 = np.clip(p0, lo, hi)
    sw = np.sqrt(rng.uniform(0.5, 2.0, m)) if weights else None
    return model, x, Y.astype(dtype), sw, p0.astype(dtype), lo, hi


@needs_numba
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("algorithm", ["Trust-Region", "Levenberg-Marquardt"])
@pytest.mark.parametrize(("baseline", "weights"), [("none", False), ("linear", True),
                                                   ("exponential", False)])
def test_compiled_iteration_equals_the_numpy_loop(dtype, algorithm, baseline, weights):
    """The Numba engine's compiled per-row iteration reproduces lm.py's NumPy loop (same
    evaluator, same LU): the same iterations, evaluations and exit flags in every row, and the
    same solutions to rounding, with held bounds, weights, baselines, both damping rules."""
    model, x, Y, sw, p0, lo, hi = _lm_problem(dtype, baseline, weights)
    out = {}
    stops = {}
    for compiled in (True, False):
        ev = NormalEquations(model, x, Y, None if sw is None else sw.astype(dtype),
                             engine="numba")
        assert ev.lm_iteration is not None
        if not compiled:
            ev.lm_iteration = None  # the reference: lm.py's NumPy loop

        def cb(it, idx, sse, lam, compiled=compiled):
            if it == 3:  # the caller ends some rows, as autostart's pruning does
                stop = idx % 5 == 0
                stops[compiled] = np.sort(idx[stop])
                return stop
            return None

        out[compiled] = levenberg_marquardt(ev, p0.copy(), lo, hi, tol_fun=1e-10, tol_x=1e-10,
                                            max_iter=60, algorithm=algorithm, callback=cb)
    a, b = out[False], out[True]
    np.testing.assert_array_equal(stops[True], stops[False])
    assert stops[True].size > 0
    np.testing.assert_array_equal(a.held, b.held)
    assert a.held.any()  # the bounds were active
    if algorithm == "Levenberg-Marquardt":
        # discrete damping: the very same numbers, bit for bit, in every row
        for f in ("p", "sse", "A", "g", "lam", "exitflag", "iterations", "nfev"):
            np.testing.assert_array_equal(getattr(b, f), getattr(a, f))
        return
    # Nielsen's damping follows the gain ratio, whose denominator 2δ·g - δ·Aδ cancels near
    # the minimum: the summation order (BLAS against the compiled loop) changes λ at rounding
    # level, which moves the stopping point along flat valleys (two peaks merged with
    # opposite heights); the same minima otherwise
    rel = np.abs(b.sse - a.sse) / a.sse
    close = 1e-12 if dtype == np.float64 else 1e-6
    assert np.mean(rel <= close) >= 0.9
    assert rel.max() <= (1e-3 if dtype == np.float64 else 1e-2)
    assert np.mean(a.exitflag == b.exitflag) >= 0.9
