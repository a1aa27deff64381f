"""peakfit <-> lmfit conversion, checked against lmfit's published fit reports.

The reference numbers are the lmfit documentation's reports (lmfit-py commit 8553e2a5, 2019),
copied in ``shared/data/lmfit_examples/lmfit_docs_2019_fit_reports.txt`` and README §2.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import peakfit
from peakfit.interop import from_lmfit, lmfit_model, lmfit_names, to_lmfit

lmfit = pytest.importorskip("lmfit")

TIGHT = {"tol_fun": 1e-12, "tol_x": 1e-12}

# NIST Gauss2 through lmfit (Run A, doc_builtinmodels_nistgauss.py): value, stderr
NIST_RUN_A = {
    "exp_decay": (90.9508860, 1.10310509),
    "exp_amplitude": (99.0183283, 0.53748735),
    "g1_center": (107.030954, 0.15006786),
    "g1_sigma": (16.6725753, 0.16048161),
    "g1_amplitude": (4257.77319, 42.3833645),
    "g1_fwhm": (39.2609138, 0.37790530),
    "g1_height": (101.880231, 0.59217100),
    "g2_center": (153.270101, 0.19466743),
    "g2_sigma": (13.8069484, 0.18679415),
    "g2_amplitude": (2493.41771, 36.1694731),
    "g2_fwhm": (32.5128783, 0.43986659),
    "g2_height": (72.0455934, 0.61722094),
}


def _load(shared_data, name):
    return np.loadtxt(shared_data / "lmfit_examples" / name)


def test_nist_gauss2_matches_lmfit_run_a(shared_data):
    d = _load(shared_data, "NIST_Gauss2.dat")
    x, y = d[:, 1], d[:, 0]
    r = peakfit.fit_gaussians(x, y, 2, baseline="exponential", **TIGHT)
    params = r.to_lmfit()
    assert set(NIST_RUN_A) <= set(params)
    for name, (value, err) in NIST_RUN_A.items():
        # lmfit's two published runs differ by up to 2e-7 in values and 6e-6 in errors
        assert params[name].value == pytest.approx(value, rel=1e-6), name
        assert params[name].stderr == pytest.approx(err, rel=1e-5), name
    # chi-square and reduced chi-square of the report
    assert r.gof.sse == pytest.approx(1247.52821, rel=1e-8)
    assert r.gof.sse / r.gof.dfe == pytest.approx(5.15507524, rel=1e-8)
    # correlations as printed (3 decimals)
    assert params["g1_sigma"].correl["g1_amplitude"] == pytest.approx(0.824, abs=5e-4)
    assert params["exp_decay"].correl["exp_amplitude"] == pytest.approx(-0.695, abs=5e-4)
    assert params["g1_center"].correl["g2_amplitude"] == pytest.approx(-0.669, abs=5e-4)


def test_nist_gauss2_lmfit_model_reproduces_the_curve_and_refits_in_place(shared_data):
    d = _load(shared_data, "NIST_Gauss2.dat")
    x, y = d[:, 1], d[:, 0]
    r = peakfit.fit_gaussians(x, y, 2, baseline="exponential", **TIGHT)
    params = to_lmfit(r)
    model = lmfit_model(2, "exponential")
    np.testing.assert_allclose(model.eval(params, x=x), r(x), rtol=1e-12, atol=1e-9)
    # lmfit started at our optimum stays there: same chi-square and errors
    out = model.fit(y, params, x=x)
    assert out.chisqr == pytest.approx(r.gof.sse, rel=1e-9)
    for nm in ("g1_amplitude", "g2_sigma", "exp_decay"):
        assert out.params[nm].value == pytest.approx(params[nm].value, rel=1e-6)
        assert out.params[nm].stderr == pytest.approx(params[nm].stderr, rel=1e-3)


def test_test_peak_gaussian_report(shared_data):
    d = _load(shared_data, "test_peak.dat")
    r = peakfit.fit_gaussians(d[:, 0], d[:, 1], 1, **TIGHT)
    p = r.to_lmfit()
    published = {
        "g1_sigma": (1.23218359, 0.00737496),
        "g1_amplitude": (30.3135620, 0.15712686),
        "g1_center": (9.24277047, 0.00737496),
        "g1_fwhm": (2.90157056, 0.01736670),
        "g1_height": (9.81457817, 0.05087283),
    }
    # lmfit (MINPACK, default tolerances) stops ~1e-6 short of the exact optimum we reach
    for name, (value, err) in published.items():
        assert p[name].value == pytest.approx(value, rel=5e-6), name
        assert p[name].stderr == pytest.approx(err, rel=1e-5), name
    assert r.gof.sse == pytest.approx(29.9943157, rel=1e-8)
    assert r.gof.sse / r.gof.dfe == pytest.approx(0.07536260, rel=1e-7)
    assert p["g1_sigma"].correl["g1_amplitude"] == pytest.approx(0.577, abs=5e-4)


def test_model1d_gauss_reports(shared_data):
    d = _load(shared_data, "model1d_gauss.dat")
    x, y = d[:, 0], d[:, 1]
    # user model amp/(sqrt(2 pi) wid) exp(-(x-cen)^2/(2 wid^2)) = lmfit's GaussianModel
    p = peakfit.fit_gaussians(x, y, 1, **TIGHT).to_lmfit()
    for name, (value, err) in {"g1_amplitude": (8.88021830, 0.11359492),
                               "g1_center": (5.65866102, 0.01030495),
                               "g1_sigma": (0.69765468, 0.01030495)}.items():
        assert p[name].value == pytest.approx(value, rel=1e-6), name
        assert p[name].stderr == pytest.approx(err, rel=1e-5), name

    r = peakfit.fit_gaussians(x, y + 0.25 * x - 1.0, 1, baseline="linear", **TIGHT)
    p = r.to_lmfit()
    for name, (value, err) in {"g1_amplitude": (8.45931062, 0.12414515),
                               "g1_center": (5.65547873, 0.00917678),
                               "g1_sigma": (0.67545524, 0.00991686),
                               "bl_slope": (0.26484404, 0.00574892),
                               "bl_intercept": (-0.96860202, 0.03352202)}.items():
        assert p[name].value == pytest.approx(value, rel=1e-6), name
        assert p[name].stderr == pytest.approx(err, rel=1e-5), name
    assert r.gof.sse == pytest.approx(2.57855517, rel=1e-8)
    assert p["bl_slope"].correl["bl_intercept"] == pytest.approx(-0.795, abs=5e-4)


def test_names_and_round_trip_for_every_baseline():
    x = np.linspace(0, 20, 400)
    truth = {
        "none": [3.0, 6.0, 1.5, 2.0, 12.0, 2.5],
        "constant": [3.0, 6.0, 1.5, 2.0, 12.0, 2.5, 0.5],
        "linear": [3.0, 6.0, 1.5, 2.0, 12.0, 2.5, 0.5, 0.05],
        "quadratic": [3.0, 6.0, 1.5, 2.0, 12.0, 2.5, 0.5, 0.05, -0.002],
        "exponential": [3.0, 6.0, 1.5, 2.0, 12.0, 2.5, 1.0, 0.1],
    }
    for baseline, p_true in truth.items():
        model = peakfit.GaussianModel(2, baseline)
        y = model(x, np.array(p_true))
        y = y + 1e-3 * np.sin(7 * x)  # a residual, so errors are finite
        r = peakfit.fit_gaussians(x, y, 2, baseline=baseline, start=p_true, **TIGHT)
        params = to_lmfit(r, derived=False)
        assert list(params) == lmfit_names(2, baseline)
        np.testing.assert_allclose(from_lmfit(params, 2, baseline), r.p, rtol=1e-12)
        np.testing.assert_allclose(lmfit_model(2, baseline).eval(params, x=x), r(x),
                                   rtol=1e-10, atol=1e-12)
        assert all(params[k].stderr is not None and params[k].stderr > 0 for k in params)


def test_exact_values_of_the_conversion():
    x = np.linspace(0, 10, 201)
    y = 3 * np.exp(-((x - 4) / 0.8) ** 2) + 0.01 * np.cos(5 * x)
    r = peakfit.fit_gaussians(x, y, 1, **TIGHT)
    p = to_lmfit(r)
    a, b, c = r.p
    assert p["g1_amplitude"].value == pytest.approx(a * c * math.sqrt(math.pi), rel=1e-15)
    assert p["g1_sigma"].value == pytest.approx(c / math.sqrt(2), rel=1e-15)
    assert p["g1_center"].value == b
    assert p["g1_height"].value == pytest.approx(0.3989423 * a * c * math.sqrt(math.pi)
                                                 / (c / math.sqrt(2)), rel=1e-12)
    # sigma's error is c's error / sqrt(2); centre's error is b's error
    assert p["g1_sigma"].stderr == pytest.approx(r.stderr[2] / math.sqrt(2), rel=1e-12)
    assert p["g1_center"].stderr == pytest.approx(r.stderr[1], rel=1e-12)
    assert p["g1_amplitude"].init_value == pytest.approx(
        r.start[0] * r.start[2] * math.sqrt(math.pi))


def test_fixed_at_bound_has_no_stderr_and_missing_names_are_reported():
    x = np.linspace(0, 10, 101)
    y = 2 * np.exp(-((x - 5) / 1.0) ** 2) + 0.01 * np.sin(3 * x)
    r = peakfit.fit_gaussians(x, y, 1, Upper=[np.inf, np.inf, 0.9], **TIGHT)
    assert r.activebounds.tolist() == [False, False, True]
    p = to_lmfit(r)
    assert p["g1_sigma"].stderr is None and p["g1_amplitude"].stderr is None
    assert p["g1_center"].stderr == pytest.approx(r.stderr[1])
    with pytest.raises(peakfit.InputError, match="'g2_center' is missing"):
        from_lmfit({"g1_amplitude": 1, "g1_center": 1, "g1_sigma": 1, "g2_amplitude": 1}, 2)
