"""Variable projection (``peakfit.solvers.vp``): same minimum as the full solver, NIST digits."""

from __future__ import annotations

import math

import numpy as np
import pytest

import peakfit
from peakfit import gpu as pf_gpu
from peakfit.models import GaussianModel
from peakfit.solvers.least_squares import least_squares, resolve_method
from peakfit.solvers.lm import NormalEquations, levenberg_marquardt
from peakfit.solvers.vp import SeparableEquations, linear_structure, variable_projection

TIGHT = {"TolFun": 1e-15, "TolX": 1e-15, "MaxIter": 1000, "MaxFunEvals": 2000}
TIGHT_LM = {"tol_fun": 1e-14, "tol_x": 1e-14, "max_iter": 500, "max_fun_evals": 1000}


def lre(got, cert) -> np.ndarray:
    err = np.abs(np.asarray(got, float) - np.asarray(cert, float)) / np.abs(np.asarray(cert))
    with np.errstate(divide="ignore"):
        return np.where(err == 0, 16.0, -np.log10(err))


def _nist_gauss(nist, name, start):
    """Fit of a NIST Gauss problem (2 Gaussians + e1 exp(-e2 x)), coefficients in NIST order."""
    x, y, d = nist(name)
    par = d["parameters"]
    kw = {}
    if start is not None:
        b = [float(par[f"b{i}"][start]) for i in range(1, 9)]
        kw["start"] = [b[2], b[3], b[4], b[5], b[6], b[7], b[0], b[1]]
    out = {}
    for method in ("full", "vp"):
        r = peakfit.fit_gaussians(x, y, 2, baseline="exponential", method=method, **kw, **TIGHT)
        q = r.p  # sorted by centre: the NIST order (b4 < b7)
        out[method] = (r, [q[6], q[7], q[0], q[1], q[2], q[3], q[4], q[5]])
    return d, out


@pytest.mark.parametrize("name", ["Gauss1", "Gauss2", "Gauss3"])
@pytest.mark.parametrize("start", ["start1", "start2", None])
def test_vp_equals_full_and_certified_on_nist_gauss(nist, name, start):
    d, out = _nist_gauss(nist, name, start)
    cert = [float(d["parameters"][f"b{i}"]["certified"]) for i in range(1, 9)]
    r_full, got_full = out["full"]
    r_vp, got_vp = out["vp"]
    assert abs(r_vp.gof.sse - r_full.gof.sse) <= 1e-8 * r_full.gof.sse
    assert lre(got_vp, cert).min() >= 7.0
    assert lre(got_full, cert).min() >= 7.0
    assert lre(r_vp.gof.sse, float(d["residual_sum_of_squares"])) >= 7.0
    assert r_vp.converged


@pytest.mark.parametrize("start", ["start1", "start2", None])
def test_vp_eckerle4_certified(nist, start):
    x, y, d = nist("Eckerle4")
    par = d["parameters"]
    kw = {}
    if start is not None:
        b1, b2, b3 = (float(par[f"b{i}"][start]) for i in (1, 2, 3))
        kw["start"] = [b1 / b2, b3, math.sqrt(2) * b2]
    r = peakfit.fit_gaussians(x, y, 1, method="vp", **kw, **TIGHT)
    a, b, c = r.p
    got = [a * c / math.sqrt(2), c / math.sqrt(2), b]
    cert = [float(par[f"b{i}"]["certified"]) for i in (1, 2, 3)]
    assert lre(got, cert).min() >= 7.0
    assert lre(r.gof.sse, float(d["residual_sum_of_squares"])) >= 7.0


def _random_batch(baseline, k=40, m=300, n=3, seed=5):
    """Separated 3-peak spectra with noise and a baseline, and starts 5 % off the truth."""
    rng = np.random.default_rng(seed)
    model = GaussianModel(n, baseline)
    x = np.linspace(-1.0, 1.0, m)
    centres = np.sort(rng.uniform(-0.7, 0.7, (k, n)), axis=1) + np.array([-0.1, 0.0, 0.1])
    p = np.empty((k, model.n_params))
    p[:, 0:3 * n:3] = rng.uniform(0.3, 1.0, (k, n))
    p[:, 1:3 * n:3] = centres
    p[:, 2:3 * n:3] = rng.uniform(0.05, 0.15, (k, n))
    nb = len(model.baseline_names)
    if baseline == "exponential":
        p[:, 3 * n:] = np.column_stack([rng.uniform(0.2, 0.5, k), rng.uniform(0.2, 1.0, k)])
    elif nb:
        p[:, 3 * n:] = rng.uniform(-0.3, 0.3, (k, nb))
    Y = model.evaluate(x, p) + 0.02 * rng.standard_normal((k, m))
    p0 = p * (1 + 0.05 * rng.standard_normal(p.shape))
    return model, x, Y, p0


@pytest.mark.parametrize("baseline", ["none", "constant", "linear", "quadratic", "exponential"])
def test_vp_reaches_the_full_minimum_on_a_random_batch(baseline):
    model, x, Y, p0 = _random_batch(baseline)
    lo, hi = model.default_lower(), model.default_upper()
    full = levenberg_marquardt(NormalEquations(model, x, Y), p0, lo, hi, **TIGHT_LM)
    vp = variable_projection(NormalEquations(model, x, Y), model, p0, lo, hi, **TIGHT_LM)
    ok = (full.exitflag > 0) & (vp.exitflag > 0)
    assert ok.mean() >= 0.95
    rel = np.abs(vp.sse - full.sse) / full.sse
    assert rel[ok].max() <= 1e-8
    # the result is the full problem's: its gradient vanishes in every coefficient
    assert np.all(np.abs(vp.g[ok]) <= 1e-6 * np.sqrt(full.sse[ok])[:, None])
    np.testing.assert_allclose(vp.sse, ((Y - model.evaluate(x, vp.p)) ** 2).sum(axis=1),
                               rtol=1e-10)


def test_vp_ignores_the_start_heights_and_needs_fewer_iterations():
    model, x, Y, p0 = _random_batch("linear", seed=8)
    lo, hi = model.default_lower(), model.default_upper()
    bad = p0.copy()
    bad[:, 0:9:3] = 0.0  # heights 0: the full solver has no centre/width gradient there
    bad[:, 9:] = 0.0
    vp = variable_projection(NormalEquations(model, x, Y), model, bad, lo, hi, **TIGHT_LM)
    ref = variable_projection(NormalEquations(model, x, Y), model, p0, lo, hi, **TIGHT_LM)
    np.testing.assert_allclose(vp.sse, ref.sse, rtol=1e-10)
    full = levenberg_marquardt(NormalEquations(model, x, Y), p0, lo, hi, **TIGHT_LM)
    assert ref.iterations.mean() < full.iterations.mean()


def test_separable_evaluator_matches_projection_by_qr():
    """S(θ), Kaufman's JᵀJ and Jᵀr from the normal equations equal a direct QR projection."""
    model, x, Y, p0 = _random_batch("exponential", k=3, seed=2)
    sep = SeparableEquations(NormalEquations(model, x, Y), model, p0 * 1.3)
    lin, nl, _ = linear_structure(model)
    idx = np.arange(3)
    S, A, g = sep(p0[:, nl], idx)
    for i in range(3):
        p = p0[i].copy()
        p[lin] = 1.0
        _, Jt = model.evaluate(x, p[None, :], jacobian=True)
        Phi = Jt[0, lin].T
        Q, _ = np.linalg.qr(Phi)
        r = Y[i] - Q @ (Q.T @ Y[i])
        alpha = np.linalg.lstsq(Phi, Y[i], rcond=None)[0]
        p[lin] = alpha
        _, Jt = model.evaluate(x, p[None, :], jacobian=True)
        JK = Jt[0, nl].T
        JK = JK - Q @ (Q.T @ JK)
        np.testing.assert_allclose(S[i], r @ r, rtol=1e-10)
        np.testing.assert_allclose(A[i], JK.T @ JK, rtol=1e-8, atol=1e-10 * np.abs(A[i]).max())
        np.testing.assert_allclose(g[i], JK.T @ r, rtol=1e-7, atol=1e-9 * np.abs(g[i]).max())
        np.testing.assert_allclose(sep.alpha[i], alpha, rtol=1e-9)


@pytest.mark.parametrize("engine", ["numpy", "numba"])
def test_vp_same_on_every_cpu_path_and_the_generic_array_path(engine):
    """The generic path (``NormalEquations.generic``: ``model.evaluate``, what CuPy arrays
    run) and the fused NumPy/Numba evaluators give the same VP solution."""
    if engine == "numba":
        pytest.importorskip("numba")
    model, x, Y, p0 = _random_batch("quadratic", k=12, seed=4)
    lo, hi = model.default_lower(), model.default_upper()
    ref = variable_projection(NormalEquations.generic(model, x, Y), model,
                              p0, lo, hi, **TIGHT_LM)
    got = variable_projection(NormalEquations(model, x, Y, engine=engine), model, p0, lo, hi,
                              **TIGHT_LM)
    np.testing.assert_allclose(got.sse, ref.sse, rtol=1e-9)


@pytest.mark.gpu
@pytest.mark.skipif(not pf_gpu.available(), reason="needs CuPy and a CUDA device")
def test_vp_on_cupy_equals_numpy():
    import cupy as cp

    model, x, Y, p0 = _random_batch("linear", k=16, seed=6)
    lo, hi = model.default_lower(), model.default_upper()
    ref = variable_projection(NormalEquations(model, x, Y), model, p0, lo, hi, **TIGHT_LM)
    got = variable_projection(NormalEquations(model, cp.asarray(x), cp.asarray(Y)), model,
                              cp.asarray(p0), cp.asarray(lo), cp.asarray(hi), **TIGHT_LM)
    np.testing.assert_allclose(got.sse.get(), ref.sse, rtol=1e-9)


def test_method_dispatch_and_errors():
    m = GaussianModel(2, "linear")
    lo, hi = m.default_lower(), m.default_upper()
    assert resolve_method("auto", m, lo, hi) == "vp"
    assert resolve_method("full", m, lo, hi) == "full"
    lo2 = lo.copy()
    lo2[0] = 0.0  # a bounded height: not separable (MATLAB: all coefficients optimised)
    assert resolve_method("auto", m, lo2, hi) == "full"
    with pytest.raises(ValueError, match="unbounded heights"):
        resolve_method("vp", m, lo2, hi)
    with pytest.raises(ValueError, match="unknown least-squares method"):
        least_squares(None, np.zeros((1, 8)), lo, hi, model=m, method="newton")


def test_method_in_fit_gaussians_and_the_batch():
    """``method=`` reaches the solver of single and batch fits; bad names are InputErrors."""
    _, x, Y, _ = _random_batch("linear", k=6, seed=9)
    full = peakfit.fit_gaussians_batch(x, Y, 3, baseline="linear", method="full")
    vp = peakfit.fit_gaussians_batch(x, Y, 3, baseline="linear", method="vp")
    np.testing.assert_allclose(vp.sse, full.sse, rtol=1e-6)
    one = peakfit.fit_gaussians(x, Y[2], 3, baseline="linear", method="vp")
    np.testing.assert_allclose(one.gof.sse, vp.sse[2], rtol=1e-6)
    with pytest.raises(peakfit.InputError, match="unknown least-squares method"):
        peakfit.fit_gaussians_batch(x, Y, 3, method="newton")
    with pytest.raises(peakfit.InputError, match="unbounded heights"):
        peakfit.fit_gaussians(x, Y[0], 3, method="vp", Lower=[0.0] * 9)
