"""Core single-spectrum fitting: NIST StRD certified values, MATLAB formulas and display."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
from scipy import stats

import peakfit
from peakfit import FitWarning, InputError, fitoptions
from peakfit.matlab import fit as matlab_fit
from peakfit.models import GaussianModel
from peakfit.result import format_g, goodness_of_fit

TIGHT = {"TolFun": 1e-15, "TolX": 1e-15, "MaxIter": 1000, "MaxFunEvals": 2000}


def lre(got, cert) -> np.ndarray:
    """NIST's log relative error (number of correct significant digits)."""
    got = np.asarray(got, float)
    cert = np.asarray(cert, float)
    err = np.abs(got - cert) / np.abs(cert)
    with np.errstate(divide="ignore"):
        return np.where(err == 0, 16.0, -np.log10(err))


def gauss4_data(noise=0.0, seed=0, m=400):
    x = np.linspace(0, 100, m)
    truth = np.array([5, 20, 4, 3, 35, 6, 4, 60, 5, 2, 80, 7], float)
    y = GaussianModel(4)(x, truth)
    if noise:
        y = y + np.random.default_rng(seed).normal(0, noise, m)
    return x, y, truth


# ----------------------------------------------------------------------------- NIST StRD
@pytest.mark.parametrize("name", ["Gauss1", "Gauss2", "Gauss3"])
@pytest.mark.parametrize("start", ["start1", "start2"])
def test_nist_gauss_certified_values(nist, name, start):
    x, y, d = nist(name)
    par = d["parameters"]
    b = [float(par[f"b{i}"][start]) for i in range(1, 9)]
    p0 = [b[2], b[3], b[4], b[5], b[6], b[7], b[0], b[1]]
    r = peakfit.fit_gaussians(x, y, 2, baseline="exponential", start=p0, sort=False, **TIGHT)
    q = r.p
    got = [q[6], q[7], q[0], q[1], q[2], q[3], q[4], q[5]]
    cert = [float(par[f"b{i}"]["certified"]) for i in range(1, 9)]
    assert lre(got, cert).min() >= 7.0
    sd = math.sqrt(r.gof.sse / r.gof.dfe)
    assert lre(sd, float(d["residual_standard_deviation"])) >= 7.0
    assert lre(r.gof.sse, float(d["residual_sum_of_squares"])) >= 7.0
    assert r.gof.dfe == int(d["degrees_of_freedom"])
    # certified standard deviations (linearised), in our parameter order
    se = r.stderr
    se_got = [se[6], se[7], se[0], se[1], se[2], se[3], se[4], se[5]]
    se_cert = [float(par[f"b{i}"]["std_dev"]) for i in range(1, 9)]
    assert lre(se_got, se_cert).min() >= 5.0
    assert r.converged


@pytest.mark.parametrize("start", ["start1", "start2"])
def test_nist_eckerle4(nist, start):
    """Eckerle4: y = b1/b2 exp(-0.5((x-b3)/b2)^2) is gauss1 with a=b1/b2, b=b3, c=sqrt2 b2."""
    x, y, d = nist("Eckerle4")
    par = d["parameters"]
    b1, b2, b3 = (float(par[f"b{i}"][start]) for i in (1, 2, 3))
    r = peakfit.fit_gaussians(x, y, 1, start=[b1 / b2, b3, math.sqrt(2) * b2], **TIGHT)
    a, b, c = r.p
    got = [a * c / math.sqrt(2), c / math.sqrt(2), b]
    cert = [float(par[f"b{i}"]["certified"]) for i in (1, 2, 3)]
    assert lre(got, cert).min() >= 7.0
    assert lre(math.sqrt(r.gof.sse / r.gof.dfe), float(d["residual_standard_deviation"])) >= 7


def test_default_tolerances_are_close_to_certified(nist):
    """MATLAB's default TolFun/TolX (1e-6) already give >= 4 significant digits on Gauss2."""
    x, y, d = nist("Gauss2")
    par = d["parameters"]
    b = [float(par[f"b{i}"]["start1"]) for i in range(1, 9)]
    r = peakfit.fit_gaussians(x, y, 2, baseline="exponential",
                              start=[b[2], b[3], b[4], b[5], b[6], b[7], b[0], b[1]], sort=False)
    cert = [float(par[f"b{i}"]["certified"]) for i in (3, 4, 5, 6, 7, 8, 1, 2)]
    assert lre(r.p, cert).min() >= 4.0


# --------------------------------------------------------------------------- exact fits
def test_exact_gauss4_recovers_truth_and_sorts_means():
    x, y, truth = gauss4_data()
    rng = np.random.default_rng(1)
    perm = rng.permutation(x.size)
    r = peakfit.fit_gaussians(x[perm], y[perm], 4, start=truth * 1.05, TolFun=1e-12, TolX=1e-12)
    np.testing.assert_allclose(r.p, truth, rtol=1e-9, atol=1e-9)
    assert r.means.tolist() == sorted(r.means.tolist())
    np.testing.assert_allclose(r.means, [20, 35, 60, 80], rtol=1e-10)
    np.testing.assert_allclose(r.sigma, truth[2::3] / math.sqrt(2), rtol=1e-9)
    np.testing.assert_allclose(r.fwhm, 2 * math.sqrt(math.log(2)) * truth[2::3], rtol=1e-9)
    np.testing.assert_allclose(r.area, truth[0::3] * truth[2::3] * math.sqrt(math.pi),
                               rtol=1e-9)
    assert r.coefficients["b3"] == pytest.approx(60.0, rel=1e-10)
    assert r.b3 == r.coefficients["b3"]  # MATLAB-style attribute access
    np.testing.assert_allclose(r(x), y, atol=1e-9)


def test_sorting_is_a_permutation_of_the_matlab_order():
    x, y, truth = gauss4_data(noise=0.02, seed=3)
    f, gof, out = matlab_fit(x, y, "gauss4", StartPoint=truth[[3, 4, 5, 0, 1, 2, 9, 10, 11, 6,
                                                                   7, 8]])
    # the same algorithm as matlab.fit (separable, as MATLAB's fit with unbounded heights), so
    # that only the order differs: sorting permutes the terms and changes no number
    r = peakfit.fit_gaussians(x, y, 4, start=truth[[3, 4, 5, 0, 1, 2, 9, 10, 11, 6, 7, 8]],
                              method="auto")
    assert f.b.tolist() != sorted(f.b.tolist())  # MATLAB keeps the start's order
    np.testing.assert_allclose(np.sort(f.b), r.b, rtol=1e-12)
    assert gof.sse == pytest.approx(r.gof.sse, rel=1e-12)
    assert out.numparam == 12 and out.numobs == x.size


# ---------------------------------------------------------------------------- gof & stats
def test_goodness_of_fit_formulas():
    y = np.array([1.0, 2.0, 4.0, 3.0, 5.0])
    r = np.array([0.1, -0.2, 0.05, 0.0, -0.1])
    g = goodness_of_fit(y, r, 2)
    sse = float(np.sum(r**2))
    sst = float(np.sum((y - y.mean()) ** 2))
    assert g.sse == pytest.approx(sse, rel=1e-15)
    assert g.rsquare == pytest.approx(1 - sse / sst, rel=1e-15)
    assert g.dfe == 3
    assert g.adjrsquare == pytest.approx(1 - (1 - (1 - sse / sst)) * 4 / 3, rel=1e-15)
    assert g.rmse == pytest.approx(math.sqrt(sse / 3), rel=1e-15)
    w = np.array([1.0, 2.0, 1.0, 0.5, 1.0])
    gw = goodness_of_fit(y, r, 2, w, n_active=1)
    ybar = np.sum(w * y) / np.sum(w)
    assert gw.sse == pytest.approx(np.sum(w * r * r), rel=1e-15)
    assert gw.rsquare == pytest.approx(1 - np.sum(w * r * r) / np.sum(w * (y - ybar) ** 2))
    assert gw.dfe == 4
    g0 = goodness_of_fit(y[:2], r[:2], 2)
    assert g0.dfe == 0 and math.isnan(g0.rmse) and math.isnan(g0.adjrsquare)
    assert math.isnan(goodness_of_fit(np.ones(4), np.zeros(4), 1).rsquare)


def _fd_jacobian(model, x, p, h=1e-6):
    J = np.empty((x.size, p.size))
    for j in range(p.size):
        dp = np.zeros_like(p)
        dp[j] = h * max(1.0, abs(p[j]))
        J[:, j] = (model(x, p + dp) - model(x, p - dp)) / (2 * dp[j])
    return J


def test_confint_and_predint_match_independent_computation():
    x, y, _ = gauss4_data(noise=0.05, seed=7, m=300)
    r = peakfit.fit_gaussians(x, y, 4, TolFun=1e-12, TolX=1e-12)
    J = _fd_jacobian(r.model, x, r.p)
    cov = np.linalg.inv(J.T @ J) * r.gof.sse / r.gof.dfe
    t = stats.t.ppf(0.975, r.gof.dfe)
    ci = r.confint()
    np.testing.assert_allclose(ci[0], r.p - t * np.sqrt(np.diag(cov)), rtol=1e-6)
    np.testing.assert_allclose(ci[1], r.p + t * np.sqrt(np.diag(cov)), rtol=1e-6)
    t90 = stats.t.ppf(0.95, r.gof.dfe)
    np.testing.assert_allclose(r.confint(0.9)[1] - r.p, t90 * np.sqrt(np.diag(cov)), rtol=1e-6)
    xn = np.array([10.0, 35.0, 61.5])
    Jn = _fd_jacobian(r.model, xn, r.p)
    var_f = np.einsum("ij,jk,ik->i", Jn, cov, Jn)
    s2 = r.gof.sse / r.gof.dfe
    fhat = r(xn)
    pf = r.predint(xn, kind="functional")
    np.testing.assert_allclose(pf[:, 1] - fhat, t * np.sqrt(var_f), rtol=1e-5)
    po = r.predint(xn)
    np.testing.assert_allclose(po[:, 1] - fhat, t * np.sqrt(var_f + s2), rtol=1e-6)
    ps = r.predint(xn, kind="functional", simultaneous=True)
    crit = math.sqrt(12 * stats.f.ppf(0.95, 12, r.gof.dfe))
    np.testing.assert_allclose(ps[:, 1] - fhat, crit * np.sqrt(var_f), rtol=1e-5)
    np.testing.assert_allclose(po[:, 0] + po[:, 1], 2 * fhat, rtol=1e-12)
    with pytest.raises(InputError, match="level"):
        r.confint(1.5)
    with pytest.raises(InputError, match="kind"):
        r.predint(xn, kind="bogus")


def test_active_bound_gives_back_a_degree_of_freedom():
    x, y, truth = gauss4_data(noise=0.02, seed=2)
    upper = np.full(12, np.inf)
    upper[0] = 4.0  # a1 truth is 5: the bound binds
    r = peakfit.fit_gaussians(x, y, 4, Upper=upper, start=truth)
    assert r.p[0] == 4.0
    assert r.output.activebounds.tolist() == [True] + [False] * 11
    assert r.gof.dfe == x.size - 12 + 1
    ci = r.confint()
    assert np.isnan(ci[:, 0]).all() and np.isfinite(ci[:, 1:]).all()
    assert "       a1 =           4  (fixed at bound)" in str(r).splitlines()


# ------------------------------------------------------------------------------ display
def test_display_format_exact():
    assert format_g(313.2, "11.4g") == "      313.2"
    assert format_g(21130.0, "11.4g") == "  2.113e+04"
    assert format_g(-23.51, "11.4g") == "     -23.51"
    assert format_g(0.006541, "11.4g") == "   0.006541"
    assert format_g(float("inf"), ".4g") == "Inf"
    assert format_g(float("-inf"), "11.4g") == "       -Inf"
    assert GaussianModel(2).formula() == " a1*exp(-((x-b1)/c1)^2) + a2*exp(-((x-b2)/c2)^2)"
    g4 = GaussianModel(4).formula()
    assert g4 == (
        "\n              a1*exp(-((x-b1)/c1)^2) + a2*exp(-((x-b2)/c2)^2) + "
        "\n              a3*exp(-((x-b3)/c3)^2) + a4*exp(-((x-b4)/c4)^2)"
    )


def test_display_lines_match_matlab_layout():
    x, y, _ = gauss4_data(noise=0.05, seed=11)
    r = peakfit.fit_gaussians(x, y, 4)
    lines = str(r).splitlines()
    assert lines[0] == "     General model Gauss4:"
    assert lines[1] == "     f(x) = "
    assert lines[2].startswith("              a1*exp(")
    assert lines[4] == "     Coefficients (with 95% confidence bounds):"
    ci = r.confint()
    for i, name in enumerate(r.names):
        want = (f"       {name} = {r.p[i]:11.4g}  ({ci[0, i]:.4g}, {ci[1, i]:.4g})")
        assert lines[5 + i] == want
    assert lines[17:] == [
        "",
        "Goodness of fit:",
        f"  SSE: {r.gof.sse:.4g}",
        f"  R-square: {r.gof.rsquare:.4g}",
        f"  Adjusted R-square: {r.gof.adjrsquare:.4g}",
        f"  RMSE: {r.gof.rmse:.4g}",
    ]
    assert r.display("fitresult").splitlines()[1] == "     fitresult(x) = "
    x2 = np.linspace(-3, 3, 50)
    r2 = peakfit.fit_gaussians(x2, GaussianModel(1)(x2, [2, 0.1, 0.7]) + 0.01 * np.cos(x2), 1)
    assert str(r2).splitlines()[1] == "     f(x) =  a1*exp(-((x-b1)/c1)^2)"


# ---------------------------------------------------------------------------- gaussnstart
def _gaussnstart_reference(x, y, n):
    """Straight transcription of the documented MATLAB loop (independent of the vectorised code)."""
    order = np.argsort(x, kind="stable")
    x, y = x[order].astype(float), y[order].astype(float).copy()
    p, q, r = [], [], []
    while len(p) < n:
        k = np.flatnonzero(y == y.max())[-1]
        a, b = y[k], x[k]
        ids = (y > 0) & (y < a)
        if not ids.any():
            break
        c = np.mean(np.abs(x[ids] - b) / np.sqrt(np.log(a / y[ids]))) / (2 * n - len(p))
        y = y - a * np.exp(-(((x - b) / c) ** 2))
        p.append(b)
        q.append(a)
        r.append(c)
    nf = len(p)
    if nf < n:
        bb = np.linspace(x.min(), x.max(), n - nf + 2)
        p += list(bb[1:-1])
        q += [y.max()] * (n - nf)
        r += [bb[1] - bb[0]] * (n - nf)
    out = np.zeros(3 * n)
    out[0::3], out[1::3], out[2::3] = q, p, r
    return out


def test_gaussnstart_hand_worked():
    x = np.arange(5.0)
    y = np.array([0.0, 1.0, 4.0, 1.0, 0.0])
    s = peakfit.gaussnstart(x, y, 1)
    # peak at index 2 (a=4); points below it and >0: x=1,3 with y=1: |x-b|/sqrt(log 4) = 0.8493
    assert s.tolist() == [4.0, 2.0, 1.0 / math.sqrt(math.log(4.0)) / 2]
    # ties: the LAST index of the maximum
    s2 = peakfit.gaussnstart(np.arange(4.0), np.array([0.0, 3.0, 3.0, 1.0]), 1)
    assert s2[1] == 2.0


@pytest.mark.parametrize("seed", range(4))
def test_gaussnstart_matches_reference_transcription(seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 10, 80)
    y = GaussianModel(3)(x, [3, 2, 0.8, 1.5, 5, 1.0, 2, 7.5, 0.6]) + rng.normal(0, 0.05, 80)
    for n in (1, 2, 3, 5):
        np.testing.assert_allclose(peakfit.gaussnstart(x, y, n), _gaussnstart_reference(x, y, n),
                                   rtol=1e-13)


def test_gaussnstart_fallback_spreads_centres():
    x = np.linspace(0.0, 10.0, 11)
    y = -np.ones(11)  # negative-going: MATLAB finds no peak and spreads all centres
    s = peakfit.gaussnstart(x, y, 3)
    np.testing.assert_allclose(s[1::3], [2.5, 5.0, 7.5])
    np.testing.assert_allclose(s[2::3], [2.5, 2.5, 2.5])
    np.testing.assert_allclose(s[0::3], [-1, -1, -1])


# ------------------------------------------------------------------------------ options
def test_fitoptions_defaults_and_names():
    o = fitoptions("gauss4")
    assert (o.tol_fun, o.tol_x, o.max_iter, o.max_fun_evals) == (1e-6, 1e-6, 400, 600)
    assert o.algorithm == "Trust-Region" and o.robust == "off" and o.normalize is False
    assert o.display == "notify" and o.start_point is None and o.upper is None
    assert o.lower.tolist() == [-np.inf, -np.inf, 0.0] * 4
    o2 = fitoptions("gauss2", TolFun=1e-9, tolx=1e-7, max_iter=10, MAXFUNEVALS=20,
                    Robust="lar", Normalize="on", Algorithm="levenberg-marquardt")
    assert (o2.tol_fun, o2.tol_x, o2.max_iter, o2.max_fun_evals) == (1e-9, 1e-7, 10, 20)
    assert (o2.robust, o2.normalize, o2.algorithm) == ("LAR", True, "Levenberg-Marquardt")
    assert "TolFun: 1.0000e-09" in str(o2)
    with pytest.raises(InputError, match="unknown fit option 'TolFn'"):
        fitoptions("gauss1", TolFn=1)
    with pytest.raises(InputError, match="StartPoint has 2 element"):
        fitoptions("gauss1", StartPoint=[1, 2])
    with pytest.raises(InputError, match="Lower > Upper for coefficient b1"):
        fitoptions("gauss1", Lower=[0, 5, 0], Upper=[1, 4, 1])
    with pytest.raises(InputError, match="StartPoint has 1 non-finite"):
        fitoptions("gauss1", StartPoint=[1, np.nan, 1])
    with pytest.raises(InputError, match="Robust"):
        fitoptions("gauss1", Robust="maybe")


def test_levenberg_marquardt_switches_to_trust_region_with_bounds():
    x, y, truth = gauss4_data(noise=0.02, seed=5)
    with pytest.warns(FitWarning, match="Trust-Region"):
        r = peakfit.fit_gaussians(x, y, 4, start=truth, Algorithm="Levenberg-Marquardt")
    assert r.output.algorithm == "trust-region-reflective"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r2 = peakfit.fit_gaussians(x, y, 4, start=truth, Algorithm="Levenberg-Marquardt",
                                   Lower=np.full(12, -np.inf), TolFun=1e-12, TolX=1e-12)
    assert r2.output.algorithm == "levenberg-marquardt"
    r3 = peakfit.fit_gaussians(x, y, 4, start=truth, TolFun=1e-12, TolX=1e-12)
    np.testing.assert_allclose(r2.p, r3.p, rtol=1e-7)


def test_max_iter_and_max_fun_evals_are_reported():
    x, y, truth = gauss4_data(noise=0.02, seed=5)
    with pytest.warns(FitWarning, match="did not converge"):
        r = peakfit.fit_gaussians(x, y, 4, start=truth * 1.2, MaxIter=2)
    assert r.output.exitflag == 0 and r.output.iterations == 2 and not r.converged
    assert r.state == peakfit.FitState.MAX_ITERATIONS
    assert "did not converge" in r.output.message and "did not converge" in str(r)
    with pytest.warns(FitWarning):
        r = peakfit.fit_gaussians(x, y, 4, start=truth * 1.2, MaxFunEvals=3)
    assert r.output.exitflag == 0 and r.output.funcCount == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        peakfit.fit_gaussians(x, y, 4, start=truth * 1.2, MaxIter=2, Display="off")


def test_display_iter_and_final(capsys):
    x, y, truth = gauss4_data(noise=0.02, seed=5)
    r = peakfit.fit_gaussians(x, y, 4, start=truth, Display="iter")
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["Iteration", "Func-count", "f(x)", "lambda"]
    assert len(out) == r.output.iterations + 2 and out[-1] == r.output.message
    peakfit.fit_gaussians(x, y, 4, start=truth, Display="final")
    assert capsys.readouterr().out.strip().startswith("Success")


def test_tolerances_change_the_work_done():
    x, y, truth = gauss4_data(noise=0.05, seed=9)
    loose = peakfit.fit_gaussians(x, y, 4, start=truth * 1.1, TolFun=1e-2, TolX=1e-2)
    tight = peakfit.fit_gaussians(x, y, 4, start=truth * 1.1, TolFun=1e-14, TolX=1e-14)
    assert loose.output.funcCount < tight.output.funcCount
    assert loose.gof.sse >= tight.gof.sse


def test_weights_and_exclude():
    x, y, truth = gauss4_data(noise=0.05, seed=4)
    w = np.ones(x.size)
    w[::7] = 0.0
    rw = peakfit.fit_gaussians(x, y, 4, start=truth, Weights=w, TolFun=1e-13, TolX=1e-13)
    keep = w > 0
    rk = peakfit.fit_gaussians(x[keep], y[keep], 4, start=truth, TolFun=1e-13, TolX=1e-13)
    np.testing.assert_allclose(rw.p, rk.p, rtol=1e-8)
    assert rw.gof.sse == pytest.approx(rk.gof.sse, rel=1e-9)
    re = peakfit.fit_gaussians(x, y, 4, start=truth, Exclude=~keep, TolFun=1e-13, TolX=1e-13)
    np.testing.assert_allclose(re.p, rk.p, rtol=1e-10)
    ri = peakfit.fit_gaussians(x, y, 4, start=truth, Exclude=np.flatnonzero(~keep),
                               TolFun=1e-13, TolX=1e-13)
    np.testing.assert_allclose(ri.p, rk.p, rtol=1e-10)
    assert re.output.numobs == int(keep.sum())
    # scaling all weights by 4 leaves the coefficients and confidence bounds unchanged
    r4 = peakfit.fit_gaussians(x, y, 4, start=truth, Weights=4 * np.ones(x.size),
                               TolFun=1e-13, TolX=1e-13)
    r1 = peakfit.fit_gaussians(x, y, 4, start=truth, TolFun=1e-13, TolX=1e-13)
    np.testing.assert_allclose(r4.p, r1.p, rtol=1e-9)
    np.testing.assert_allclose(r4.confint(), r1.confint(), rtol=1e-7)
    assert r4.gof.sse == pytest.approx(4 * r1.gof.sse, rel=1e-9)
    with pytest.raises(InputError, match="Weights must be >= 0"):
        peakfit.fit_gaussians(x, y, 4, Weights=-w)
    with pytest.raises(InputError, match="Weights has 3 elements"):
        peakfit.fit_gaussians(x, y, 4, Weights=[1, 2, 3])


def test_robust_fitting_resists_outliers():
    x, y, truth = gauss4_data(noise=0.02, seed=8)
    yo = y.copy()
    yo[[50, 130, 210, 290, 330]] += 3.0
    plain = peakfit.fit_gaussians(x, yo, 4, start=truth)
    for kind in ("Bisquare", "LAR"):
        rob = peakfit.fit_gaussians(x, yo, 4, start=truth, Robust=kind)
        err_rob = np.max(np.abs(rob.p - truth) / np.abs(truth))
        err_plain = np.max(np.abs(plain.p - truth) / np.abs(truth))
        assert err_rob < 0.25 * err_plain, kind
        assert err_rob < 0.02, kind


def test_normalize_on():
    x, y, _truth = gauss4_data(noise=0.02, seed=6)
    tight = {"TolFun": 1e-13, "TolX": 1e-13}
    r = peakfit.fit_gaussians(x + 1000.0, y, 4, start="matlab", Normalize="on", **tight)
    plain = peakfit.fit_gaussians(x + 1000.0, y, 4, **tight)
    mu, sd = float(np.mean(x + 1000.0)), float(np.std(x, ddof=1))
    assert r.normalization == pytest.approx((mu, sd), rel=1e-12)
    np.testing.assert_allclose(r.b, (plain.b - mu) / sd, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(r.means, plain.means, rtol=1e-11)
    np.testing.assert_allclose(r(x + 1000.0), plain(x + 1000.0), atol=1e-9)
    line = str(r).splitlines()[4]
    assert line == f"       where x is normalized by mean {mu:0.4g} and std {sd:0.4g}"


# ---------------------------------------------------------------------------- bad input
def test_nonfinite_input_is_named_or_omitted():
    x, y, truth = gauss4_data(noise=0.02, seed=1)
    yb = y.copy()
    yb[[17, 40]] = np.nan
    yb[99] = np.inf
    with pytest.raises(InputError, match=r"y contains 3 non-finite value\(s\) \(NaN/Inf\), "
                       r"first at index 17"):
        peakfit.fit_gaussians(x, yb, 4)
    xb = x.copy()
    xb[5] = np.nan
    with pytest.raises(InputError, match=r"x contains 1 non-finite value.*index 5"):
        peakfit.fit_gaussians(xb, y, 4)
    r = peakfit.fit_gaussians(x, yb, 4, start=truth, nan_policy="omit", TolFun=1e-12)
    keep = np.isfinite(yb)
    r2 = peakfit.fit_gaussians(x[keep], y[keep], 4, start=truth, TolFun=1e-12)
    np.testing.assert_allclose(r.p, r2.p, rtol=1e-12)
    assert r.output.numobs == x.size - 3


@pytest.mark.parametrize(
    ("x", "y", "n", "match"),
    [
        (np.arange(5.0), np.arange(4.0), 1, "x has 5 points, y has 4"),
        (np.arange(5.0), np.arange(5.0), 2, r"5 usable point\(s\) for 6 coefficients"),
        ([], [], 1, "x is empty"),
        (np.ones((3, 4)), np.ones((3, 4)), 1, r"x must be 1-D, got an array of shape \(3, 4\)"),
        (np.arange(5.0), np.arange(5.0) + 1j, 1, "y must be real"),
        (np.arange(5.0), np.arange(5.0), 0, "n must be >= 1"),
        (np.arange(5.0), ["a", "b", "c", "d", "e"], 1, "y must be numeric"),
    ],
)
def test_bad_input_messages(x, y, n, match):
    with pytest.raises(InputError, match=match):
        peakfit.fit_gaussians(x, y, n)


def test_unsorted_integer_and_float32_input():
    x, y, _truth = gauss4_data(noise=0.02, seed=12)
    ref = peakfit.fit_gaussians(x, y, 4)
    perm = np.random.default_rng(0).permutation(x.size)
    r = peakfit.fit_gaussians(x[perm], y[perm], 4)
    np.testing.assert_allclose(r.p, ref.p, rtol=1e-12)
    # residuals come back in the caller's order
    np.testing.assert_allclose(r.output.residuals, y[perm] - r(x[perm]), atol=1e-12)
    r32 = peakfit.fit_gaussians(x.astype(np.float32), y.astype(np.float32), 4)
    assert r32.p.dtype == np.float64
    ri = peakfit.fit_gaussians(np.arange(60), np.round(100 * GaussianModel(1)(
        np.arange(60.0), [1, 30, 8])).astype(np.int64), 1)
    assert ri.b[0] == pytest.approx(30.0, abs=0.01)


@pytest.mark.parametrize("value", [0.0, 2.5])
def test_constant_data_reports_why(value):
    x = np.linspace(0, 1, 50)
    y = np.full(50, value)
    with pytest.warns(FitWarning, match="constant"):
        r = peakfit.fit_gaussians(x, y, 2)
    assert r.output.exitflag == -3 and r.state == peakfit.FitState.CONSTANT_DATA
    assert f"all y = {value:g}" in r.output.message


def test_matlab_fit_signature_and_start():
    x, y, _truth = gauss4_data(noise=0.01, seed=13)
    f, gof, out = matlab_fit(x, y, "gauss4", TolFun=1e-10)
    assert gof is f.gof and out is f.output
    np.testing.assert_allclose(f.start[:12], peakfit.gaussnstart(x, y, 4), rtol=1e-14)
    assert re.match(r"<GaussianFit Gauss4: means=\[", repr(f))
    with pytest.raises(InputError, match="unknown model 'poly2'"):
        matlab_fit(x, y, "poly2")
