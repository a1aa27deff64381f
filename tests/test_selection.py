"""n='auto': criteria against published values, the right n on known cases, batch = single."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

import peakfit
from peakfit.cli import main
from peakfit.errors import InputError
from peakfit.selection import (
    AutoBatchFit,
    candidate_ns,
    choose,
    criterion_values,
    fit_auto_batch,
)


def gauss_sum(x, peaks):
    return sum(a * np.exp(-((x - b) / c) ** 2) for a, b, c in peaks)


def test_bic_matches_lmfit_published_reports():
    """lmfit's BIC is N ln(chisqr/N) + ln(N) nvarys (reports in ../shared/data).

    The reports print 9 significant digits of chi-square: 1e-5 covers the rounding."""
    assert float(criterion_values(1247.52821, 250, 8, "bic")) == pytest.approx(446.036318,
                                                                                abs=1e-5)
    assert float(criterion_values(29.9943157, 401, 3, "bic")) == pytest.approx(-1021.79248,
                                                                                abs=1e-5)
    # AICc = lmfit's AIC + 2k(k+1)/(N-k-1)
    assert float(criterion_values(29.9943157, 401, 3, "aicc")) == pytest.approx(
        -1033.77437 + 24 / 397, abs=1e-5)


def test_ftest_steps_while_significant():
    # m=100; SSE 10 -> 1 (n 1->2) is significant, 1 -> 0.99 (2->3) is not: F = 0.01/3/(0.99/91)
    sse = np.array([[10.0, 1.0, 0.99]])
    m, P, ok = np.full((1, 3), 100), np.array([[3, 6, 9]]), np.ones((1, 3), bool)
    assert choose([1, 2, 3], sse, m, P, ok, "ftest").tolist() == [1]
    # a much larger drop for n=3 is taken
    assert choose([1, 2, 3], np.array([[10.0, 1.0, 0.5]]), m, P, ok, "ftest").tolist() == [2]
    # an invalid candidate is skipped, the next valid one is tested against the current
    ok2 = np.array([[True, False, True]])
    assert choose([1, 2, 3], sse, m, P, ok2, "bic").tolist() == [2]
    with pytest.raises(InputError, match="criterion must be one of bic, aicc, ftest"):
        choose([1], sse[:, :1], m[:, :1], P[:, :1], ok[:, :1], "aic")


def test_candidates_and_errors():
    assert candidate_ns("AUTO", 30, "linear", n_max=20) == [1, 2, 3, 4, 5, 6, 7, 8]
    with pytest.raises(InputError, match="not enough data to choose n: 4 points"):
        candidate_ns("auto", 4, "none")
    with pytest.raises(InputError, match="n must be a positive int, 'auto'"):
        peakfit.fit_gaussians(np.arange(10.0), np.ones(10), n="many")


@pytest.mark.parametrize("criterion", ["bic", "aicc", "ftest"])
def test_lidar_waveforms_give_the_returns_a_reader_sees(shared_data, criterion):
    """waveform_1: one return; waveform_2: three (the published model has a constant c0)."""
    d = shared_data / "lidar_waveform"
    for w, n_true, centres in ((1, 1, [15.48]), (2, 3, [16.6, 23.1, 29.0])):
        y = np.load(d / f"waveform_{w}.npy").astype(float)
        r = peakfit.fit_gaussians(np.arange(80.0), y, n="auto", baseline="constant",
                                  criterion=criterion)
        assert r.n == n_true
        np.testing.assert_allclose(r.means, centres, atol=0.1)
        assert r.selection.n == n_true and r.selection.criterion == criterion
    # waveform_2, 3 peaks: the published (unbounded scipy leastsq) SSE from its start
    assert r.gof.sse == pytest.approx(28.9413754, rel=1e-6)


def test_one_return_waveform_no_longer_gets_four_terms(shared_data):
    y = np.load(shared_data / "lidar_waveform" / "waveform_1.npy").astype(float)
    r = peakfit.fit_gaussians(np.arange(80.0), y, n="auto")
    assert r.n == 1
    cand = r.selection.candidates
    assert cand["n"].tolist() == list(range(1, 9))
    assert cand["chosen"].tolist() == [True] + [False] * 7
    # the 4-term fit of the issue has a term outside or insignificant: flagged invalid
    assert not cand["valid"][3]


@pytest.mark.parametrize("n_true", [1, 2, 3, 5])
def test_known_n_synthetic(n_true):
    rng = np.random.default_rng(n_true)
    x = np.linspace(0, 100, 500)
    b = np.linspace(15, 85, n_true) if n_true > 1 else np.array([50.0])
    peaks = [(rng.uniform(1, 3), bi, 4.0) for bi in b]
    y = gauss_sum(x, peaks) + 0.05 * rng.standard_normal(x.size)  # SNR 20
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a valid choice raises no warning
        r = peakfit.fit_gaussians(x, y, n="auto")
    assert r.n == n_true
    np.testing.assert_allclose(r.means, b, atol=0.2)
    # the chosen fit is the same as a fit with that n
    plain = peakfit.fit_gaussians(x, y, n=n_true)
    np.testing.assert_array_equal(r.p, plain.p)


def test_candidates_sequence_and_table_text():
    x = np.linspace(0, 10, 300)
    y = gauss_sum(x, [(2, 3, 0.7), (1, 6, 0.9)]) + 0.01 * np.cos(40 * x)
    r = peakfit.fit_gaussians(x, y, n=[1, 2, 3], criterion="aicc")
    assert r.n == 2 and r.selection.candidates["n"].tolist() == [1, 2, 3]
    text = r.selection.to_text().splitlines()
    assert text[0] == "Number of peaks chosen by AICC: n = 2"
    assert text[3].endswith("*") and text[3].split()[0] == "2"
    df = r.selection.to_dataframe()
    assert df.loc[2, "chosen"] and df.loc[1, "sse"] > df.loc[2, "sse"]


def test_batch_chooses_like_the_single_fit():
    rng = np.random.default_rng(11)
    x = np.linspace(0, 10, 250)
    truth = [[(2, 5, 0.8)], [(2, 3, 0.7), (1.5, 6.5, 0.8)],
             [(1, 2, 0.6), (2, 5, 0.6), (1.5, 8, 0.6)], [(2, 5, 0.8)]]
    Y = np.stack([gauss_sum(x, p) for p in truth]) + 0.03 * rng.standard_normal((4, x.size))
    r = peakfit.fit_gaussians_batch(x, Y, n="auto", device="cpu")
    assert isinstance(r, AutoBatchFit)
    assert r.n.tolist() == [1, 2, 3, 1]
    assert r.p.shape == (4, 24) and r.means.shape == (4, 8)
    for i in range(4):
        one = peakfit.fit_gaussians(x, Y[i], n="auto")
        assert one.n == r.n[i]
        np.testing.assert_allclose(r.p[i, : 3 * one.n], one.p, rtol=1e-6, atol=1e-9)
        assert np.all(np.isnan(r.p[i, 3 * one.n :]))
        np.testing.assert_allclose(r[i].p, one.p, rtol=1e-6, atol=1e-9)
    t = r.to_table()
    assert t["n"].tolist() == [1, 2, 3, 1] and math.isnan(t["mean2"][0])
    sub = fit_auto_batch(x, Y, n=[1, 2], criterion="ftest", device="cpu")
    assert sub.n.tolist() == [1, 2, 2, 1] and sub.p.shape == (4, 6)


def test_batch_with_baseline_pads_peaks_before_the_baseline():
    x = np.linspace(0, 10, 200)
    Y = np.stack([gauss_sum(x, [(2, 4, 0.8)]) + 1.0, gauss_sum(x, [(2, 3, 0.6), (2, 7, 0.6)])
                  + 1.0])
    Y = Y + 0.01 * np.random.default_rng(2).standard_normal(Y.shape)
    r = fit_auto_batch(x, Y, n_max=3, baseline="constant", device="cpu")
    assert r.n.tolist() == [1, 2]
    assert r.names[-1] == "d0" and r.p.shape == (2, 10)
    np.testing.assert_allclose(r.p[:, -1], 1.0, atol=0.01)


def test_cli_n_auto_json_and_text(shared_data, capsys):
    path = str(shared_data / "lidar_waveform" / "waveform_2.txt")
    rc = main(["fit", path, "-n", "auto", "--baseline", "constant", "--format", "json"])
    out = capsys.readouterr().out
    assert rc == 0
    d = json.loads(out)["spectra"][0]
    assert d["selection"]["n"] == 3 and d["selection"]["criterion"] == "bic"
    assert [c["n"] for c in d["selection"]["candidates"]] == list(range(1, 9))
    assert len(d["peaks"]) == 3 and d["peaks"][0]["centre"] == pytest.approx(16.6, abs=0.05)
    rc = main(["fit", path, "-n", "auto", "--baseline", "constant", "--criterion", "ftest",
               "--n-max", "4"])
    out = capsys.readouterr().out
    assert rc == 0 and "Number of peaks chosen by FTEST: n = 3" in out
    assert "\nPeaks:\npeak" in out


def test_cli_batch_n_auto_writes_n_and_padded_columns(tmp_path, capsys):
    from peakfit.io import read_table

    x = np.linspace(0, 10, 150)
    Y = np.stack([gauss_sum(x, [(2, 4, 0.7)]), gauss_sum(x, [(2, 3, 0.6), (1, 7, 0.6)])])
    Y = Y + 0.01 * np.random.default_rng(8).standard_normal(Y.shape)
    src = tmp_path / "two.csv"
    np.savetxt(src, np.column_stack([x, Y.T]), delimiter=",", header="x,s1,s2", comments="")
    out = tmp_path / "res.csv"
    rc = main(["batch", str(src), "-n", "auto", "--n-max", "3", "-o", str(out), "--quiet",
               "--format", "json", "--device", "cpu"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["converged"] == 2
    t = read_table(out)
    assert t["n"].tolist() == [1, 2] and t["name"].tolist() == ["s1", "s2"]
    assert math.isnan(t["b2"][0]) and t["b2"][1] == pytest.approx(7, abs=0.01)


def test_candidates_stop_where_the_usable_points_run_out():
    x = np.linspace(0, 10, 30)
    y = gauss_sum(x, [(2, 5, 2.0)]) + 0.02 * np.random.default_rng(0).standard_normal(30)
    keep = [2, 6, 10, 12, 14, 16, 20, 26]
    y[np.setdiff1d(np.arange(30), keep)] = np.nan  # 8 usable points: n = 3 (9 coefficients)
    r = peakfit.fit_gaussians(x, y, n="auto", nan_policy="omit")
    assert r.selection.candidates["n"].tolist() == [1, 2] and r.n == 1
