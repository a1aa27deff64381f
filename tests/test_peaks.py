"""The table of peaks: values and standard errors against the coefficients and covariance."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

import peakfit
from peakfit.io import load_spectra
from peakfit.peaks import PEAK_COLUMNS, peak_table


@pytest.fixture(scope="module")
def two_peaks():
    rng = np.random.default_rng(3)
    x = np.linspace(0, 20, 400)
    y = 5 * np.exp(-((x - 7) / 1.3) ** 2) + 2 * np.exp(-((x - 11) / 2.0) ** 2)
    return peakfit.fit_gaussians(x, y + 0.05 * rng.standard_normal(x.size), n=2,
                                 baseline="constant")


def test_values_are_the_coefficients(two_peaks):
    r = two_peaks
    t = r.peaks
    assert len(t) == 2 and t["peak"].tolist() == [1, 2]
    np.testing.assert_array_equal(t["centre"], r.b)
    np.testing.assert_array_equal(t["height"], r.a)
    np.testing.assert_array_equal(t["sigma"], r.c * math.sqrt(0.5))
    np.testing.assert_array_equal(t["fwhm"], r.c * 2 * math.sqrt(math.log(2)))
    np.testing.assert_allclose(t["area"], r.a * r.c * math.sqrt(math.pi), rtol=1e-15)


def test_errors_are_the_delta_method_on_the_covariance(two_peaks):
    r = two_peaks
    t = r.peaks
    se, cov = r.stderr, r.covariance
    np.testing.assert_allclose(t["height_err"], se[0:6:3], rtol=1e-12)
    np.testing.assert_allclose(t["centre_err"], se[1:6:3], rtol=1e-12)
    np.testing.assert_allclose(t["sigma_err"], se[2:6:3] / math.sqrt(2), rtol=1e-12)
    np.testing.assert_allclose(t["fwhm_err"], se[2:6:3] * 2 * math.sqrt(math.log(2)),
                               rtol=1e-12)
    for i in range(2):
        a, c = r.a[i], r.c[i]
        g = np.array([c, 0.0, a]) * math.sqrt(math.pi)
        S = cov[3 * i : 3 * i + 3, 3 * i : 3 * i + 3]
        assert t["area_err"][i] == pytest.approx(math.sqrt(g @ S @ g), rel=1e-12)
    # the area's error is not the naive sum: a and c are correlated
    naive = math.sqrt(math.pi) * math.hypot(r.c[0] * se[0], r.a[0] * se[2])
    assert abs(t["area_err"][0] - naive) / naive > 1e-3


def test_nist_gauss2_matches_lmfit_published_report(shared_data):
    """lmfit's Gaussian: amplitude is our area, sigma, fwhm, height; errors scaled by redchi."""
    s = load_spectra(shared_data / "lmfit_examples" / "NIST_Gauss2.dat")
    r = peakfit.fit_gaussians(s.x, s.Y[0], 2, baseline="exponential")
    t = r.peaks
    published = {  # Run A of the lmfit docs (2019): value, stderr
        0: {"centre": (107.030954, 0.15006786), "sigma": (16.6725753, 0.16048161),
            "area": (4257.77319, 42.3833645), "fwhm": (39.2609138, 0.37790530),
            "height": (101.880231, 0.59217100)},
        1: {"centre": (153.270101, 0.19466743), "sigma": (13.8069484, 0.18679415),
            "area": (2493.41771, 36.1694731), "fwhm": (32.5128783, 0.43986659),
            "height": (72.0455934, 0.61722094)},
    }
    for i, cols in published.items():
        for name, (v, e) in cols.items():
            assert t[name][i] == pytest.approx(v, rel=1e-6), name
            assert t[f"{name}_err"][i] == pytest.approx(e, rel=1e-4), name


def test_bound_flags_and_missing_errors():
    x = np.linspace(0, 10, 200)
    y = 3 * np.exp(-((x - 5) / 1.0) ** 2)
    # width held at its upper bound 0.5 (the truth is 1.0)
    r = peakfit.fit_gaussians(x, y + 0.01 * np.sin(7 * x), n=1, Lower=[0, 0, 0],
                              Upper=[10, 10, 0.5])
    t = r.peaks
    assert t["width_at_bound"].tolist() == [True]
    assert t["height_at_bound"].tolist() == [False]
    assert t["centre_at_bound"].tolist() == [False]
    assert math.isnan(t["sigma_err"][0]) and math.isnan(t["area_err"][0])
    assert t["sigma"][0] == 0.5 * math.sqrt(0.5)
    assert math.isfinite(t["centre_err"][0])
    assert "c" in t.to_text().splitlines()[1].split()[-1]


def test_normalize_reports_original_units():
    x = np.linspace(1000, 1100, 300)
    y = 4 * np.exp(-((x - 1040) / 6) ** 2) + np.exp(-((x - 1070) / 8) ** 2)
    r = peakfit.fit_gaussians(x, y, n=2, Normalize="on")
    t = r.peaks
    np.testing.assert_allclose(t["centre"], [1040, 1070], atol=1e-6)
    np.testing.assert_allclose(t["sigma"], np.array([6, 8]) / math.sqrt(2), rtol=1e-6)
    np.testing.assert_allclose(t["area"], [4 * 6 * math.sqrt(math.pi),
                                           8 * math.sqrt(math.pi)], rtol=1e-6)


def test_exports(two_peaks):
    t = two_peaks.peaks
    df = t.to_dataframe()
    assert list(df.index) == [1, 2]
    assert list(df.columns) == t.columns[1:]
    assert df.loc[2, "centre"] == t["centre"][1]
    back = np.genfromtxt(io.StringIO(t.to_csv()), delimiter=",", names=True)
    for c in PEAK_COLUMNS:
        np.testing.assert_array_equal(back[c], t[c])  # repr round-trips exactly
    recs = t.to_records()
    assert recs[0]["peak"] == 1 and isinstance(recs[0]["width_at_bound"], bool)
    assert peak_table(two_peaks).to_json() == t.to_json()
    assert str(t).splitlines()[0].split()[:3] == ["peak", "centre", "centre_err"]


def test_batch_row_has_the_same_table():
    x = np.linspace(0, 10, 150)
    rng = np.random.default_rng(5)
    Y = np.stack([np.exp(-((x - b) / 0.9) ** 2) for b in (3.0, 6.0)])
    Y = Y + 0.01 * rng.standard_normal(Y.shape)
    b = peakfit.fit_gaussians_batch(x, Y, n=1, device="cpu")
    one = peakfit.fit_gaussians(x, Y[1], n=1)
    np.testing.assert_allclose(b[1].peaks["area"], one.peaks["area"], rtol=1e-9)
    np.testing.assert_allclose(b[1].peaks["area_err"], one.peaks["area_err"], rtol=1e-6)


def test_cli_demo_csv_is_the_peak_table(capsys):
    import csv

    from peakfit.cli import _bundled_example, main

    assert main(["demo", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    s = _bundled_example()
    t = peakfit.fit_gaussians(s.x, s.Y[0], 4).peaks
    assert [int(r["peak"]) for r in rows] == [1, 2, 3, 4]
    for c in PEAK_COLUMNS:
        assert [float(r[c]) for r in rows] == t[c].tolist()  # repr: exact
        assert [float(r[f"{c}_err"]) for r in rows] == t[f"{c}_err"].tolist()
    assert {r["state"] for r in rows} == {"converged"} and rows[0]["n"] == "4"
    assert main(["demo", "--json", "--format", "csv"]) == 2
    assert "--json contradicts --format csv" in capsys.readouterr().err
