"""The robust default start (``start='auto'``): success rates, NIST from no start, invariances,
smoothing/downsampling without bias, batching, bad input."""

from __future__ import annotations

import math
import sys
import timeit
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import curve_fit

import peakfit
from peakfit import InputError
from peakfit.autostart import AutoStartInfo, auto_start, parse_smooth
from peakfit.models import GaussianModel
from peakfit.solvers.lm import NormalEquations

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.bench_hard import SSE_TOL, make_hard  # noqa: E402
from benchmarks.synth import FACTORS, generate, make_spectrum, success  # noqa: E402

TIGHT = {"tol_fun": 1e-14, "tol_x": 1e-14, "max_iter": 2000, "max_fun_evals": 4000}
# converge on the step size alone: the sum of squares stops changing (to rounding) while the
# coefficients still move at the 1e-8 level
STEP = {"tol_fun": 0.0, "tol_x": 1e-15, "max_iter": 400, "max_fun_evals": 800}


def _fit(s, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return peakfit.fit_gaussians(s.x, s.y, s.n, baseline=s.baseline, **kw)


def _rates(specs):
    auto = np.array([success(_fit(s).means, s.truth) for s in specs])
    truth = np.array([success(_fit(s, start=s.params).means, s.truth) for s in specs])
    matlab = np.array([success(_fit(s, start="matlab").means, s.truth) for s in specs])
    return auto, truth, matlab


# ----------------------------------------------------------------------------- success rates
# Pinned on fixed subsets of benchmarks/synth.py (measured when the estimator landed):
# seed 101, 120 spectra of every subgroup: auto 116, truth 116 (MATLAB's start 75-87, with
# the solver of the day); seed 102, 80 spectra with close overlap (gap 1.2-1.6 c): auto 77,
# truth 77 (MATLAB's start 35-47).
@pytest.mark.parametrize(
    ("seed", "count", "fixed", "pinned"),
    [(101, 120, None, 116), (102, 80, {"overlap": "close"}, 77)],
)
def test_success_rate_is_pinned(seed, count, fixed, pinned):
    specs = generate(count, seed=seed, fixed=fixed)
    auto, truth, matlab = _rates(specs)
    assert auto.sum() >= pinned, f"auto found {auto.sum()} of {count}, pinned {pinned}"
    # within one spectrum of starting from the truth, and far better than MATLAB's start
    assert auto.sum() >= truth.sum() - 1
    assert (truth & ~auto).sum() <= 1
    assert matlab.sum() <= auto.sum() - 10


# Pinned on the hard set (benchmarks/bench_hard.py, run seed 5, 40 spectra of each baseline):
# the default reaches the truth-started minimum in 30 (quadratic) and 33 (linear) of 40; the
# edge-fitted baseline alone (before the asymmetric baseline, the pursuit candidate and the
# separable coarse stage) reached 18 and 21; with those and one polarity, 25 and 31.
@pytest.mark.parametrize(("baseline", "pinned"), [("quadratic", 30), ("linear", 33)])
def test_hard_set_success_with_a_baseline_is_pinned(baseline, pinned):
    got = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(40):
            s = make_hard(5, i, fixed={"baseline": baseline})
            m = GaussianModel(s.n, baseline)
            sse = {}
            for key, start in (("truth", s.params), ("auto", "auto")):
                r = peakfit.fit_gaussians(s.x, s.y, s.n, baseline=baseline, start=start)
                res = s.y - m(s.x, r.p)
                sse[key] = float(res @ res)
            got += sse["auto"] <= (1 + SSE_TOL) * sse["truth"]
    assert got >= pinned, f"{got} of 40, pinned {pinned}"


def test_the_gate_sends_few_spectra_to_the_full_path(monkeypatch):
    """Step 4: on the standard batch (4 well-separated peaks, 1 % noise) the cheap path is
    the start of almost every spectrum (measured: 5 of these 300 gated out; 44 of the 2000 of
    bench_batch.py), and its starts equal those of the full path for every spectrum (to
    3.2e-5 of a span of 100), all within bench_batch's success tolerances of the truth."""
    from benchmarks._synth_batch import make_batch, success_mask
    from peakfit import autostart

    x, Y, truth = make_batch(300, 1000, 4, seed=2)
    # the paths compared without the repair rounds' re-ranking on the raw data (_rerank), which
    # moves a repaired start toward the optimum of the raw data (0.021 of the span here)
    monkeypatch.setattr(autostart, "_RERANK_WITHIN", 1.0)
    seen = []
    full = autostart._full_path

    def spy(*args):
        seen.append(args[2].shape[0])  # the gated-out rows' binned data
        return full(*args)

    monkeypatch.setattr(autostart, "_full_path", spy)
    p = auto_start(GaussianModel(4), x, Y)
    assert 1 <= sum(seen) <= 15
    seen.clear()
    monkeypatch.setattr(autostart, "_GATE", False)
    p_full = auto_start(GaussianModel(4), x, Y)
    assert sum(seen) == 300
    for q in (p, p_full):
        assert success_mask(q[:, 0::3], q[:, 1::3], q[:, 2::3], truth).all()
    assert np.abs(p - p_full).max() < 1e-4


# Hard spectra (bench_hard seed 0) with a peak partly outside the window on a sloping baseline:
# the data dip below the edge-fitted baseline, so one polarity alone fitted negative peaks
# (sum of squares 2.3x, 12.6x and 1.65x that of the truth-started fit).
@pytest.mark.parametrize("index", [131, 186, 43])
def test_doubtful_polarity_is_decided_by_the_fit(index):
    s = make_hard(0, index)
    m = GaussianModel(s.n, s.baseline)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sse = {}
        for key, start in (("truth", s.params), ("auto", "auto")):
            r = peakfit.fit_gaussians(s.x, s.y, s.n, baseline=s.baseline, start=start)
            res = s.y - m(s.x, r.p)
            sse[key] = float(res @ res)
    auto_height = float(np.asarray(r.p)[0])  # the last fit: the default start
    assert s.n == 1 and s.baseline in ("linear", "quadratic") and s.labels["edge"] == "edge"
    assert sse["auto"] <= (1 + SSE_TOL) * sse["truth"], sse
    assert auto_height > 0


def _hard_sse(s):
    """The sum of squares of a default fit of the hard spectrum ``s`` from ``start``."""
    m = GaussianModel(s.n, s.baseline)

    def sse(start):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = peakfit.fit_gaussians(s.x, s.y, s.n, baseline=s.baseline, start=start)
        res = s.y - m(s.x, r.p)
        return float(res @ res)

    return sse


# Hard spectra (bench_hard seed 0, 7-8 peaks) that the move and split repair variants alone
# left in another minimum (a close pair fitted by one wide term, the spare term elsewhere, sum
# of squares 0.1-2 % above the truth-started fit) and the birth/death variants fix (step 6).
# (Compared without the ranking on the raw data, _rerank, which alone also fixes 253; 162 is
# now found by the move and split variants alone.)
@pytest.mark.parametrize("index", [124, 253])
def test_birth_death_variants_fix_a_close_pair_fitted_by_one_term(index, monkeypatch):
    import peakfit.autostart as autostart

    s = make_hard(0, index)
    sse = _hard_sse(s)

    truth = sse(s.params)
    assert s.n >= 7
    assert sse("auto") <= (1 + SSE_TOL) * truth
    monkeypatch.setattr(autostart, "_VARIANTS", ("move", "split"))
    monkeypatch.setattr(autostart, "_RERANK_WITHIN", 1.0)
    assert sse("auto") > (1 + SSE_TOL) * truth


# Hard spectra (bench_hard) that the default start gets right and that an ablation breaks:
# "_RERANK_WITHIN": ranking the repair candidates near the best on the raw data (_rerank); the
# right candidate ended above a worse one on the binned data (a term on a noise spike, or a
# close pair in a slow valley). "_CENTRE_BOX": edge peaks whose centre the coarse stage must
# be allowed to put outside the data (1.5 instead of 1.2 of the half range).
@pytest.mark.parametrize("seed, index, name, value", [
    (0, 226, "_RERANK_WITHIN", 1.0), (1, 130, "_RERANK_WITHIN", 1.0),
    (0, 255, "_CENTRE_BOX", 1.2), (1, 141, "_CENTRE_BOX", 1.2),
])
def test_repair_ranking_and_box_fix_hard_spectra(seed, index, name, value, monkeypatch):
    import peakfit.autostart as autostart

    s = make_hard(seed, index)
    sse = _hard_sse(s)

    truth = sse(s.params)
    assert sse("auto") <= (1 + SSE_TOL) * truth
    monkeypatch.setattr(autostart, name, value)
    assert sse("auto") > (1 + SSE_TOL) * truth


def test_rebirth_reseeds_the_dropped_term_inside_a_blend():
    from peakfit.autostart import _rebirths

    u = np.linspace(-1.0, 1.0, 201)
    d = (np.exp(-(((u + 0.25) / 0.15) ** 2)) + np.exp(-(((u - 0.25) / 0.15) ** 2))
         + 0.8 * np.exp(-(((u - 0.75) / 0.1) ** 2)))[None, :]
    # a close pair fitted by one wide term (0), a peak (1) and a spare term on noise (2)
    best = np.array([[1.1, 0.0, 0.38, 0.8, 0.75, 0.1, 0.01, -0.9, 0.05]])
    out, feat = _rebirths(np, u, d, None, best, 3, np.array([0.01]), np.array([1e-3]),
                          ("drop", "merge"))
    assert feat is None
    assert out.shape == (1, 6, 9)
    # drop the spare term (j = 2): re-seeded on one side of the wide term, where the pair
    # rises above it (not at -0.9); the other terms unchanged
    b_new = out[0, 4, 7]
    assert 0.15 < abs(b_new) < 0.45, b_new
    np.testing.assert_array_equal(out[0, 4, :6], best[0, :6])
    # merge j = 1 with its nearest neighbour (the wide term 0): slot 1 is re-seeded, term 0
    # becomes one term at the weighted centre
    assert out[0, 3, 1] > 0.0 and out[0, 3, 2] > 0.38


def test_subset_covers_every_subgroup():
    specs = generate(120, seed=101)
    for factor, levels in FACTORS.items():
        seen = {s.labels[factor] for s in specs}
        assert seen == set(levels), factor


def test_generator_is_deterministic_and_documented_ranges():
    a = make_spectrum(7, 3)
    b = generate(5, seed=7)[3]
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    s = make_spectrum(7, 4, fixed={"overlap": "close", "ratio": "ratio3", "noise": "high",
                                   "order": "sorted", "baseline": "none"})
    t = s.truth
    gaps = np.diff(t[:, 1]) / (0.5 * (t[:-1, 2] + t[1:, 2]))
    assert 1.2 <= gaps.min() <= 1.6
    assert 2.0 <= t[:, 0].max() / t[:, 0].min() <= 3.0 + 1e-12
    resid = s.y - GaussianModel(4)(s.x, s.params)
    assert 0.015 < resid.std() / t[:, 0].max() < 0.035


# ----------------------------------------------------------------------------- NIST StRD
@pytest.mark.parametrize("name", ["Gauss1", "Gauss2", "Gauss3"])
def test_nist_gauss_from_no_start(nist, name):
    x, y, d = nist(name)
    par = d["parameters"]
    r = peakfit.fit_gaussians(x, y, 2, baseline="exponential", tol_fun=1e-15, tol_x=1e-15)
    order = (3, 4, 5, 6, 7, 8, 1, 2)  # our a1,b1,c1,a2,b2,c2,e1,e2 = NIST b3..b8, b1, b2
    cert = np.array([float(par[f"b{i}"]["certified"]) for i in order])
    rel = np.abs(r.p - cert) / np.abs(cert)
    assert rel.max() < 1e-7, rel
    assert abs(r.gof.sse / float(d["residual_sum_of_squares"]) - 1) < 1e-7
    # the start came from the estimator (not NIST's), and is already close
    start1 = np.array([float(par[f"b{i}"]["start1"]) for i in order])
    assert not np.allclose(r.start, start1)
    assert np.all(np.abs(r.start[[1, 4]] - cert[[1, 4]]) < 0.1 * cert[[2, 5]])


# ----------------------------------------------------------------------------- smoothing
@pytest.mark.parametrize(
    ("smooth", "downsample"),
    [(15, None), (None, 4), (("sgolay", 21), 3), ({"method": "gaussian", "span": 25}, 2),
     (0.05, 8)],
)
def test_smoothing_and_downsampling_do_not_bias_the_means(smooth, downsample):
    s = make_spectrum(0, 0, fixed={"size": "m1000", "overlap": "moderate", "xscale": "unit",
                                   "noise": "low"})
    plain = _fit(s, **STEP)
    r = _fit(s, smooth=smooth, downsample=downsample, **STEP)
    c = s.truth[:, 2]
    # the start stage did see different data ...
    assert np.max(np.abs(r.start - plain.start)) > 0
    # ... but the final fit on the raw data is the same
    np.testing.assert_array_less(np.abs(r.means - plain.means), 1e-8 * c)
    assert success(r.means, s.truth)


def test_heavy_smoothing_biases_only_the_start():
    x = np.linspace(0.0, 10.0, 2000)
    m = GaussianModel(2)
    y = m(x, [1.0, 4.0, 0.3, 0.8, 6.0, 0.3])
    p_raw = auto_start(m, x, y[None, :])[0]
    p_smooth = auto_start(m, x, y[None, :], smooth=301)[0]
    assert p_smooth[2] > 1.2 * p_raw[2]  # the widths of the start are broadened
    r = peakfit.fit_gaussians(x, y, 2, smooth=301, **TIGHT)
    np.testing.assert_allclose(r.means, [4.0, 6.0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(r.c, [0.3, 0.3], rtol=1e-9)


def test_parse_smooth_options():
    assert parse_smooth(None) is None
    assert parse_smooth(9) == ("moving", 9.0)
    assert parse_smooth("sgolay") == ("sgolay", 5.0)
    assert parse_smooth(("lowess", 0.1)) == ("lowess", 0.1)
    assert parse_smooth({"method": "moving", "span": 7}) == ("moving", 7.0)
    assert parse_smooth(1) is None
    for bad in (("nope", 5), -3, {"spam": 1}, ("moving",), "median5"):
        with pytest.raises(InputError):
            parse_smooth(bad)


@pytest.mark.parametrize("bad", [0, -2, 2.5, "4", True])
def test_bad_downsample_is_named(bad):
    x = np.linspace(0, 1, 50)
    with pytest.raises(InputError, match="downsample"):
        auto_start(GaussianModel(1), x, np.exp(-((x - 0.5) / 0.1) ** 2)[None, :],
                   downsample=bad)


# ----------------------------------------------------------------------------- invariance
def test_unsorted_x_gives_the_identical_result():
    s = make_spectrum(3, 8, fixed={"order": "sorted", "size": "m1000", "baseline": "linear"})
    perm = np.random.default_rng(1).permutation(s.x.size)
    r1 = _fit(s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r2 = peakfit.fit_gaussians(s.x[perm], s.y[perm], 4, baseline="linear")
    assert np.array_equal(r1.p, r2.p)
    assert np.array_equal(r1.start, r2.start)


@pytest.mark.parametrize(("scale", "offset"), [(1e-3, 0.0), (1e3, 1e4), (1.0, -5e5), (7.3, 3.1)])
def test_x_scale_and_offset_invariance(scale, offset):
    x = np.linspace(0.0, 10.0, 800)
    m = GaussianModel(3)
    truth = np.array([1.0, 3.0, 0.5, 0.6, 3.8, 0.5, 0.9, 7.0, 0.8])
    y = m(x, truth) + 0.01 * np.random.default_rng(5).standard_normal(x.size)
    r1 = peakfit.fit_gaussians(x, y, 3, **TIGHT)
    r2 = peakfit.fit_gaussians(scale * x + offset, y, 3, **TIGHT)
    # the same solution, to the precision the sum of squares determines it (~sqrt(eps))
    np.testing.assert_array_less(
        np.abs(r2.means - (scale * r1.means + offset)), 1e-8 * scale * r1.c
    )
    np.testing.assert_allclose(r2.c, scale * r1.c, rtol=1e-8)
    np.testing.assert_allclose(r2.a, r1.a, rtol=1e-8)
    # the start itself is scale-free too
    p1 = auto_start(m, x, y[None, :])[0]
    p2 = auto_start(m, scale * x + offset, y[None, :])[0]
    np.testing.assert_allclose(p2[1::3], scale * p1[1::3] + offset, rtol=0,
                               atol=1e-9 * scale * 10)
    np.testing.assert_allclose(p2[2::3], scale * p1[2::3], rtol=1e-9)


def test_y_scale_invariance_and_negative_going_data():
    x = np.linspace(0.0, 10.0, 500)
    m = GaussianModel(2, "constant")
    truth = np.array([1.0, 4.0, 0.6, 0.7, 5.0, 0.6, 0.2])
    y = m(x, truth) + 0.005 * np.random.default_rng(2).standard_normal(x.size)
    p1 = auto_start(m, x, y[None, :])[0]
    p2 = auto_start(m, x, 1e6 * y[None, :])[0]
    factor = np.array([1e6, 1.0, 1.0, 1e6, 1.0, 1.0, 1e6])  # heights and d0 scale with y
    np.testing.assert_allclose(p2, factor * p1, rtol=1e-9)
    # dips (absorption lines) are found as negative peaks
    r = peakfit.fit_gaussians(x, -y, 2, baseline="constant")
    np.testing.assert_allclose(r.means, [4.0, 5.0], atol=0.02)
    assert np.all(r.a < 0)


# ----------------------------------------------------------------------------- batching
def test_batched_equals_one_by_one_and_chunks():
    specs = generate(12, seed=4, fixed={"size": "m300", "sampling": "uniform",
                                        "order": "sorted", "xscale": "unit", "baseline": "none"})
    x = specs[0].x
    Y = np.stack([s.y for s in specs])
    m = GaussianModel(4)
    P = auto_start(m, x, Y)
    one = np.concatenate([auto_start(m, x, Y[i : i + 1]) for i in range(len(specs))])
    assert np.array_equal(P, one)
    assert np.array_equal(P, auto_start(m, x, Y, chunk_size=5))
    assert np.array_equal(P, auto_start(m, np.tile(x, (len(specs), 1)), Y))
    assert P.shape == (12, 12) and np.all(np.isfinite(P))


def test_batch_with_mixed_widths_groups_bin_sizes():
    x = np.linspace(0.0, 1.0, 2000)
    m = GaussianModel(2)
    Y = np.stack([m(x, [1.0, 0.4, w, 0.7, 0.6, w]) for w in (0.004, 0.01, 0.03, 0.08)])
    P, info = auto_start(m, x, Y, return_info=True)
    assert len(set(info.downsample.tolist())) > 1  # different bin sizes per spectrum
    np.testing.assert_allclose(P[:, 1], 0.4, atol=1e-3)
    np.testing.assert_allclose(P[:, 4], 0.6, atol=1e-3)
    single = np.concatenate([auto_start(m, x, Y[i : i + 1]) for i in range(4)])
    assert np.array_equal(P, single)


@pytest.mark.parametrize("baseline", ["constant", "linear", "quadratic", "exponential"])
def test_batched_baselines_equal_one_by_one(baseline):
    x = np.linspace(1.0e3, 1.0e3 + 5.0, 400)
    m = GaussianModel(2, baseline)
    rng = np.random.default_rng(8)
    rows = []
    for i in range(5):
        truth = [1.0 + i, 1001.5, 0.3, 0.7, 1003.0 + 0.2 * i, 0.4]
        base = {"constant": [0.3], "linear": [-300.0, 0.3], "quadratic": [0.1, 0.0, 0.0],
                "exponential": [0.2, 1e-4]}[baseline]
        rows.append(m(x, truth + base) + 0.01 * rng.standard_normal(x.size))
    Y = np.stack(rows)
    P = auto_start(m, x, Y)
    one = np.concatenate([auto_start(m, x, Y[i : i + 1]) for i in range(5)])
    # equal up to the last-bit differences of batched vs single least squares (edge baseline)
    np.testing.assert_allclose(P, one, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(P[:, 1], 1001.5, atol=0.01)


def test_coarse_stage_uses_the_shared_model_and_solver():
    # one algorithm, one place: no private model/Jacobian or LM copies in the estimator
    import peakfit.autostart as autostart

    for name in ("_model_jac", "_normal_equations", "_coarse_lm", "_polish"):
        assert not hasattr(autostart, name), name
    assert autostart.NormalEquations is NormalEquations
    # and the shared evaluator gives the model's numbers on the coarse stage's layouts
    rng = np.random.default_rng(1)
    for bl in ("none", "constant", "linear", "quadratic", "exponential"):
        m = GaussianModel(3, bl)
        for U in (np.linspace(-1, 1, 40), rng.uniform(-1, 1, (5, 40))):
            p = rng.uniform(0.1, 1.0, (5, m.n_params))
            Z = rng.standard_normal((5, 40))
            for sw in (None, rng.uniform(0.0, 1.0, (5, 40))):
                f, J = m.evaluate(U, p, jacobian=True)
                r = Z - f
                if sw is not None:
                    r, J = r * sw, J * sw[:, None, :]
                S, A, g = NormalEquations(m, U, Z, sw)(p, np.arange(5))
                np.testing.assert_allclose(S, (r * r).sum(axis=1), rtol=1e-12)
                np.testing.assert_allclose(A, J @ J.transpose(0, 2, 1), rtol=1e-12, atol=1e-13)
                np.testing.assert_allclose(g, (J @ r[:, :, None])[:, :, 0], rtol=1e-12,
                                           atol=1e-13)


# ----------------------------------------------------------------------------- n_trials
def test_n_trials_is_deterministic_and_never_worse_in_sse():
    specs = generate(6, seed=11, fixed={"overlap": "close", "size": "m300"})
    for s in specs:
        plain = _fit(s)
        t1 = _fit(s, n_trials=4)
        t2 = _fit(s, n_trials=4)
        assert np.array_equal(t1.p, t2.p)
        assert t1.gof.sse <= plain.gof.sse * (1 + 1e-9)


def test_n_trials_start_is_fully_refined_on_the_raw_data():
    s = make_spectrum(11, 2, fixed={"overlap": "close", "size": "m300", "baseline": "none"})
    o = np.argsort(s.x)
    x, y = s.x[o], s.y[o]
    m = GaussianModel(4)
    a = auto_start(m, x, y[None, :], n_trials=3, seed=0)
    assert np.array_equal(a, auto_start(m, x, y[None, :], n_trials=3, seed=0))
    plain = auto_start(m, x, y[None, :])
    final = peakfit.fit_gaussians(x, y, 4, **TIGHT)

    def sse(p):
        return float(np.sum((y - m(x, p[0])) ** 2))

    # the trial start is refined fully on the raw data: at the minimum, no worse than the plain
    # start, and the final fit from it stops at once
    assert sse(a) <= final.gof.sse * (1 + 1e-8)
    assert sse(a) <= sse(plain) * (1 + 1e-12)
    assert peakfit.fit_gaussians(x, y, 4, start=a[0]).output.iterations <= 2
    with pytest.raises(InputError):
        auto_start(m, x, y[None, :], n_trials=-1)


# ----------------------------------------------------------------------------- bad input
def test_more_peaks_than_the_data_hold_is_reported_not_a_crash():
    x = np.linspace(0.0, 10.0, 300)
    y = np.exp(-((x - 5.0) / 1.0) ** 2) + 0.01 * np.random.default_rng(0).standard_normal(300)
    m = GaussianModel(4)
    p, info = auto_start(m, x, y[None, :], return_info=True)
    assert isinstance(info, AutoStartInfo)
    assert np.all(np.isfinite(p))
    assert int(info.n_supported[0]) < 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = peakfit.fit_gaussians(x, y, 4)
    assert np.all(np.isfinite(r.p))
    assert np.min(np.abs(r.means - 5.0)) < 0.01  # the real peak is among them
    # noise only: no peak is supported
    _, info0 = auto_start(GaussianModel(2), x, 0.01 * np.random.default_rng(1)
                          .standard_normal((1, 300)), return_info=True)
    assert int(info0.n_supported[0]) == 0
    # no valid data at all: nothing is supported, and the start is still finite
    p_nan, info_nan = auto_start(GaussianModel(2), x, np.full((1, 300), np.nan),
                                 return_info=True)
    assert int(info_nan.n_supported[0]) == 0 and np.all(np.isfinite(p_nan))


def test_real_peaks_are_all_supported():
    for s in generate(20, seed=101, fixed={"overlap": "separated", "order": "sorted"}):
        m = GaussianModel(s.n, s.baseline)
        _, info = auto_start(m, s.x, s.y[None, :], return_info=True)
        assert int(info.n_supported[0]) == s.n


@pytest.mark.parametrize("value", [0.0, 1.0, -3.0])
@pytest.mark.parametrize("baseline", ["none", "linear"])
def test_flat_data_give_a_finite_start(value, baseline):
    x = np.linspace(0, 1, 100)
    p = auto_start(GaussianModel(2, baseline), x, np.full((1, 100), value))
    assert np.all(np.isfinite(p))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = peakfit.fit_gaussians(x, np.full(100, value), 2, baseline=baseline)
    assert r.output.exitflag == -3


def test_nan_in_the_signal():
    x = np.linspace(0.0, 10.0, 400)
    m = GaussianModel(2)
    y = m(x, [1.0, 3.0, 0.5, 0.6, 7.0, 0.8])
    y[[10, 50, 51, 300]] = np.nan
    p = auto_start(m, x, y[None, :])
    np.testing.assert_allclose(p[0, [1, 4]], [3.0, 7.0], atol=1e-3)
    # NaN in a shared x is ignored as well
    xn = x.copy()
    xn[[5, 200]] = np.nan
    y2 = m(x, [1.0, 3.0, 0.5, 0.6, 7.0, 0.8])
    p2 = auto_start(m, xn, y2[None, :])
    np.testing.assert_allclose(p2[0, [1, 4]], [3.0, 7.0], atol=1e-3)
    r = peakfit.fit_gaussians(x, y, 2, nan_policy="omit")
    np.testing.assert_allclose(r.means, [3.0, 7.0], atol=1e-8)
    with pytest.raises(InputError, match="NaN"):
        peakfit.fit_gaussians(x, y, 2)


@pytest.mark.parametrize("m_points", [1, 2, 3, 5])
def test_tiny_data_give_a_finite_start(m_points):
    x = np.arange(float(m_points))
    y = np.exp(-((x - 1.0) / 1.5) ** 2)[None, :]
    p = auto_start(GaussianModel(1), x, y)
    assert p.shape == (1, 3) and np.all(np.isfinite(p))
    assert p[0, 2] > 0
    if m_points < 3:
        with pytest.raises(InputError, match="not enough data"):
            peakfit.fit_gaussians(x, y[0], 1)


def test_duplicate_x_values():
    xs = np.linspace(0.0, 10.0, 150)
    x = np.repeat(xs, 2)
    m = GaussianModel(2)
    y = m(x, [1.0, 3.0, 0.5, 0.6, 7.0, 0.8]) + 0.005 * np.random.default_rng(3).standard_normal(300)
    p, info = auto_start(m, x, y[None, :], return_info=True)
    assert np.isfinite(info.noise[0]) and 0.002 < info.noise[0] < 0.02
    np.testing.assert_allclose(p[0, [1, 4]], [3.0, 7.0], atol=0.02)
    r = peakfit.fit_gaussians(x, y, 2)
    np.testing.assert_allclose(r.means, [3.0, 7.0], atol=0.01)


def test_shape_errors_are_named():
    m = GaussianModel(1)
    with pytest.raises(InputError, match="x must have shape"):
        auto_start(m, np.arange(4.0), np.ones((2, 5)))
    with pytest.raises(InputError, match="Y must have shape"):
        auto_start(m, np.arange(4.0), np.ones((2, 2, 4)))
    out = auto_start(m, np.arange(4.0), np.ones((0, 4)))
    assert out.shape == (0, 3)


def test_bounds_of_options_are_respected():
    x = np.linspace(0.0, 10.0, 300)
    y = np.exp(-((x - 4.0) / 1.0) ** 2)
    opts = peakfit.fitoptions("gauss1", Lower=[0, 0, 1.5], Upper=[10, 3.5, 5])
    p = auto_start(GaussianModel(1), x, y[None, :], options=opts)[0]
    assert p[1] <= 3.5 and p[2] >= 1.5


# ----------------------------------------------------------------------------- speed
@pytest.mark.slow
def test_default_fit_is_about_as_fast_as_curve_fit_from_a_good_start():
    """Loose guard against gross slow-downs (the benchmark reports the real ratio)."""
    x = np.linspace(0.0, 100.0, 1000)
    truth = np.array([5.0, 20.0, 4.0, 3.0, 35.0, 6.0, 4.0, 60.0, 5.0, 2.0, 80.0, 7.0])
    m = GaussianModel(4)
    y = m(x, truth) + 0.05 * np.random.default_rng(0).standard_normal(x.size)

    def f(xx, *p):
        return m(xx, np.asarray(p))

    def cf():
        return curve_fit(f, x, y, p0=truth * 1.03)

    def pf():
        return peakfit.fit_gaussians(x, y, 4)

    t_cf = t_pf = math.inf
    for _ in range(5):
        t_cf = min(t_cf, timeit.timeit(cf, number=10))
        t_pf = min(t_pf, timeit.timeit(pf, number=10))
    assert t_pf < 2.0 * t_cf, (t_pf, t_cf)
    assert success(pf().means, truth.reshape(4, 3))
