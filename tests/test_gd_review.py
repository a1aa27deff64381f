"""Tests of issue #13 on peakfit.gd: Hogwild SGD, float16 saturation, faulty-loss diagnosis,
loss-scale collapse, momentum-variant stability limits, lr-edge bracket, noise-scale
uncertainty, lazy amsgrad and duplicate sparse rows."""

from __future__ import annotations

import doctest
import importlib
import math
import warnings

import numpy as np
import pytest

from peakfit.gd import (
    SGD,
    Adam,
    GaussianPeak,
    GradScaler,
    NonFiniteError,
    PoissonRegression,
    RelativeErrorRegression,
    coalesce,
    delayed_sgd,
    delayed_stability_factor,
    diagnose_loss,
    hogwild,
    lambda_max,
    lr_sweep,
    make_embedding,
    make_linear,
    noise_scale,
    noise_scale_two_batch,
    saturation_study,
    saturation_threshold,
    sgd_stability_factor,
    stability_limit,
    sync_sgd,
    train,
)


@pytest.fixture(scope="module")
def lin():
    return make_linear(1000, 5, seed=0)


# ============================================================ sparse rows, lazy amsgrad
def test_duplicate_rows_accumulate_like_torch() -> None:
    torch = pytest.importorskip("torch")
    rows = np.array([2, 0, 2, 2])
    vals = np.array([[1.0, 2.0], [3.0, 4.0], [0.5, 0.5], [-0.25, 1.0]])
    for make, tmake in (
        (lambda: SGD(lr=0.1, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
        (lambda: Adam(lr=0.1), lambda p: torch.optim.Adam(p, lr=0.1)),
    ):
        E = np.ones((4, 2))
        tp = torch.ones((4, 2), dtype=torch.float64, requires_grad=True)
        ours, theirs = make(), tmake([tp])
        for _ in range(3):
            ours.step(E, vals, rows=rows)
            tp.grad = torch.sparse_coo_tensor(
                torch.tensor(rows[None, :]), torch.tensor(vals), (4, 2), check_invariants=True
            ).to_dense()
            theirs.step()
        assert np.max(np.abs(E - tp.detach().numpy())) <= 1e-15
    # lazy SparseAdam coalesces duplicates: same as passing the summed row once
    E1, E2 = np.zeros((4, 2)), np.zeros((4, 2))
    a1, a2 = Adam(lr=0.1, lazy=True), Adam(lr=0.1, lazy=True)
    a1.step(E1, vals, rows=rows)
    r, v = coalesce(rows, vals)
    assert r.tolist() == [0, 2] and v.tolist() == [[3.0, 4.0], [1.25, 3.5]]
    a2.step(E2, v, rows=r)
    assert np.array_equal(E1, E2)
    # the old last-write-wins result differs: the row-2 sum is not its last value
    assert not np.allclose(v[1], vals[-1])


def test_lazy_adam_rejects_amsgrad() -> None:
    with pytest.raises(ValueError, match=r"lazy \(SparseAdam\) updates do not support amsgrad"):
        Adam(lr=0.1, amsgrad=True, lazy=True)
    Adam(lr=0.1, amsgrad=True)  # dense AMSGrad is fine


def test_parameters_without_gradient_are_skipped_as_torch_does() -> None:
    torch = pytest.importorskip("torch")
    w = np.array([1.0, -2.0])
    for opt in (SGD(lr=0.1, momentum=0.9, weight_decay=0.5), Adam(lr=0.1, weight_decay=0.5)):
        before = w.copy()
        assert opt.step(w, None) is w
        assert np.array_equal(w, before) and opt.t == 0 and opt.state == {}
    # torch: a parameter whose .grad is None is not decayed either
    tp = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    torch.optim.SGD([tp], lr=0.1, momentum=0.9, weight_decay=0.5).step()
    assert tp.detach().numpy().tolist() == [1.0, -2.0]
    s = GradScaler()
    assert s.unscale(None) == (None, False)
    assert s.step(SGD(lr=0.1), w, None) is True and s.scale == 65536.0 and s.skipped == 0


# ============================================================ stability limits
@pytest.mark.parametrize(
    ("momentum", "nesterov", "dampening", "factor"),
    [
        (0.0, False, 0.0, 2.0),
        (0.9, False, 0.0, 3.8),
        (0.9, True, 0.0, 3.8 / 2.8),
        (0.9, False, 0.5, 7.6),
    ],
)
def test_lr_sweep_finds_the_limit_of_every_momentum_variant(
    lin, momentum: float, nesterov: bool, dampening: float, factor: float
) -> None:
    lam = lambda_max(lin)
    assert sgd_stability_factor(momentum, nesterov=nesterov, dampening=dampening) == pytest.approx(
        factor, rel=1e-15
    )
    lim = stability_limit(lam, momentum=momentum, nesterov=nesterov, dampening=dampening)
    s = lr_sweep(
        lin,
        np.zeros(5),
        steps=300,
        momentum=momentum,
        nesterov=nesterov,
        dampening=dampening,
        lam_max=lam,
    )
    assert s.limit == lim
    assert (s.momentum, s.nesterov, s.dampening) == (momentum, nesterov, dampening)
    lo, hi = s.bracket_ratio
    assert hi / lo - 1 <= 0.005  # the bracket is the sweep's resolution
    assert 0.99 < lo < hi < 1.01  # and it contains the theoretical limit to 1 %
    assert s.describe().startswith(f"edge in [{lo:.4f}, {hi:.4f}] × limit")


def test_guard_quotes_the_nesterov_limit(lin) -> None:
    lam = lambda_max(lin)
    opt = SGD(lr=2.0 / lam, momentum=0.9, nesterov=True)  # below 2/λ, above 1.357/λ
    with pytest.raises(NonFiniteError, match=r"lr·λmax = 2 > 1\.357"):
        train(lin, np.zeros(5), opt, epochs=3000, batch_size=lin.n, shuffle=False, lam_max=lam)


# ============================================================ noise scale uncertainty
def test_noise_scale_near_optimum_warns_with_its_standard_error() -> None:
    p = make_linear(4096, 8, scales=np.ones(8), noise=1.0, seed=0)
    ws = p.solution()
    w = 0.99 * ws  # 1 % of the way from the optimum: |G|² tiny against tr Σ / B
    exact = noise_scale(p, w).b_simple
    with pytest.warns(UserWarning, match=r"two-batch B_simple = .* ± .* is unreliable"):
        est = noise_scale_two_batch(p, w, 8, 512, draws=200, seed=1)
    assert est.relative_se > 0.25
    # the true value lies within 3 standard errors of the estimate
    assert abs(est.b_simple - exact) < 3 * est.b_simple_se
    # far from the optimum: precise, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        far = noise_scale_two_batch(p, 0.5 * ws, 8, 512, draws=400, seed=1)
    assert far.relative_se < 0.1
    assert abs(far.b_simple / noise_scale(p, 0.5 * ws).b_simple - 1) < 3 * far.relative_se
    assert noise_scale(p, w).b_simple_se == 0.0


# ============================================================ faulty losses
def test_log_of_zero_is_named_with_its_rows() -> None:
    X = np.column_stack([np.ones(6), [0.0, 1.0, 2.0, 0.0, 1.0, 2.0]])
    y = np.array([1.0, 2.0, 3.0, 1.0, 0.0, 2.0])
    p = PoissonRegression(X, y)
    with pytest.raises(NonFiniteError) as info:
        train(p, np.array([0.0, 1.0]), SGD(lr=0.01), batch_size=6, shuffle=False)
    err = info.value
    assert err.step == 0 and err.array == "loss"
    assert "not a learning-rate problem" in err.cause and "lr too high" not in err.cause
    assert "term 'log(μ)'" in err.cause and "division by zero" in err.cause
    assert "row(s) [0, 3]" in err.cause and "μ = [0.0, 0.0]" in err.cause
    f = diagnose_loss(p, np.array([0.0, 1.0]))
    assert (f.term, f.rows, f.n_inf, f.n_nan) == ("log(μ)", [0, 3], 2, 0)
    assert f.events == ["divide by zero"]
    # a negative rate: log of a negative number is an invalid operation (NaN)
    f = diagnose_loss(p, np.array([-0.5, 1.0]))
    assert (f.term, f.rows, f.n_nan, f.events) == ("log(μ)", [0, 3], 2, ["invalid value"])
    assert diagnose_loss(p, np.array([1.0, 1.0])) is None


def test_zero_over_zero_normalisation_is_named() -> None:
    X = np.column_stack([np.ones(5), np.arange(5.0)])
    y = np.array([1.0, 0.0, 2.0, 3.0, 0.0])
    p = RelativeErrorRegression(X, y)
    with pytest.raises(NonFiniteError) as info:
        train(p, np.zeros(2), SGD(lr=0.01), batch_size=5, shuffle=False)
    assert info.value.step == 0
    assert "term 'r²/y²'" in info.value.cause and "0/0" in info.value.cause
    assert "row(s) [1, 4]" in info.value.cause
    f = diagnose_loss(p, np.zeros(2), idx=np.array([4, 1, 2]))  # rows map back to the data
    assert f.rows == [4, 1] and f.inputs["y²"] == [0.0, 0.0] and f.events == ["invalid value"]


def test_zero_width_gaussian_and_float64_overflow_are_named() -> None:
    x = np.linspace(-1.0, 1.0, 5)
    g = GaussianPeak(x, np.exp(-(x**2)))
    f = diagnose_loss(g, np.array([1.0, 0.0, 0.0]))  # c = 0: (x - b)/0
    assert f.term == "u = (x - b)/c" and f.rows == [0, 1, 2, 3, 4] and f.inputs["c"] == [0.0]
    assert set(f.events) == {"divide by zero", "invalid value"} and f.n_nan == 1
    # r² overflows float64 only in row 2
    X = np.ones((3, 1))
    p = make_linear(3, 1)
    big = type(p)(X, np.array([1.0, 1.0, 1e200]))
    with pytest.raises(NonFiniteError) as info:
        train(big, np.zeros(1), SGD(lr=0.1), batch_size=3, shuffle=False)
    assert "term 'r²'" in info.value.cause and "row(s) [2]" in info.value.cause
    assert "overflow" in info.value.cause


# ============================================================ loss-scale collapse
def test_guard_raises_when_the_loss_scale_collapses(lin) -> None:
    p16 = lin.with_dtype(np.float16)
    lam = lambda_max(lin)
    w0 = np.zeros(5, dtype=np.float32)

    # lr 3/λmax diverges: the fp16 forward overflows at every scale, every step is skipped
    def run(**kw):
        return train(
            p16,
            w0,
            SGD(lr=3.0 / lam),
            epochs=400,
            batch_size=lin.n,
            shuffle=False,
            scaler=GradScaler(),
            **kw,
        )

    with np.errstate(all="ignore"):
        free = run(guard=False, eval_full=False)
    assert free.skipped.sum() > 100 and free.loss_scale[-1] < 1e-30  # silent before
    with pytest.raises(NonFiniteError) as info:
        run()
    err = info.value
    # raised within the first 60 of the 400 steps (the free run skipped 387 in silence)
    assert err.array == "loss scale" and err.step <= 60
    assert "collapsed to" in str(err) or "consecutive steps were skipped" in str(err)
    assert "no loss scale can help" in err.cause and "overflow" in err.cause
    # the fraction rule: every other step skipped
    s = GradScaler(max_skip_fraction=0.3, window=10)
    from peakfit.gd.train import _scaler_collapse

    assert _scaler_collapse(s, [True, False] * 5, s.window) == (
        "5 of the last 10 steps were skipped (> 30%; scale 6.55e+04)"
    )
    assert _scaler_collapse(GradScaler(), [True, False] * 5, 100) is None


def test_legitimate_overflow_calibration_is_not_flagged() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((512, 4))
    big = make_linear(4, 1).__class__(X, X @ (300.0 * rng.standard_normal(4)))
    h = train(
        big.with_dtype(np.float16),
        np.zeros(4, dtype=np.float32),
        SGD(lr=0.5),
        epochs=40,
        batch_size=512,
        shuffle=False,
        scaler=GradScaler(),
    )
    assert 5 <= h.skipped.sum() < 40  # skipped while calibrating, then trains: no error


# ============================================================ saturation
def test_float16_saturation_thresholds() -> None:
    assert saturation_threshold("sigmoid", np.float16) == 8.3203125
    assert saturation_threshold("tanh", np.float16) == 4.5078125
    assert saturation_threshold("sigmoid", np.float32) > 16
    assert saturation_threshold("tanh", np.float32) > 9
    assert saturation_threshold("softsign", np.float16) == math.inf


def test_saturation_study_what_helps_and_what_does_not() -> None:
    st = saturation_study(n=128, hidden=16, steps=40)
    # float16 has many more units with an exactly-zero derivative than float32
    assert st.dead_start["fp16"] >= st.dead_start["fp32"] + 4
    # loss scaling multiplies zero: the same units stay dead and frozen
    for k in ("dead_start", "dead_end", "frozen"):
        assert getattr(st, k)["fp16 + loss scaling"] == getattr(st, k)["fp16"]
    # float32 master weights do not revive units whose float16 derivative is 0
    assert st.dead_end["fp16 + fp32 master weights"] == st.dead_end["fp16"]
    assert st.frozen["fp16 + fp32 master weights"] <= st.frozen["fp16"]
    # a non-saturating activation, or none, leaves no dead unit
    assert st.dead_end["fp16, softsign"] == 0 and st.dead_end["fp16, no activation"] == 0
    # the parameter off the loss path never moves, even with weight decay
    assert all(st.unused_unchanged.values())
    assert all(np.isfinite(v).all() for v in st.loss.values())


# ============================================================ Hogwild
@pytest.mark.timeout(120)
def test_hogwild_two_workers_share_one_parameter_vector() -> None:
    # isotropic problem, small lr: the loss falls geometrically with the number of updates
    # that land in the shared vector (e^-2.4 per 400), far above the SGD noise floor
    p = make_linear(400, 4, scales=np.ones(4), seed=0)
    lam = lambda_max(p)
    w0 = np.zeros(4)
    opt = SGD(lr=0.006 / lam)
    l0, lstar = p.loss(w0), p.loss(p.solution())

    def excess(w):
        return (p.loss(w) - lstar) / (l0 - lstar)

    r2 = hogwild(p, w0, opt, workers=2, steps=400, batch_size=8, timeout=60)
    r1 = hogwild(p, w0, opt, workers=1, steps=400, batch_size=8, timeout=60)
    s = sync_sgd(p, w0, opt, steps=800, batch_size=8)
    assert r2.updates.tolist() == [400, 400] and r2.total_updates == 800
    assert r1.staleness_mean == 0 and r1.conflict_fraction == 0 and r1.total_updates == 400
    assert r2.staleness_mean >= 0 and 0 <= r2.conflict_fraction <= 1
    # measured: 2 workers 1.3-1.5e-4, synchronous 800 updates 1.2-1.5e-4, 1 worker ~1e-2
    assert excess(r2.params) < 3 * excess(s.params)
    assert excess(r1.params) > 20 * excess(r2.params)
    assert r2.trace_updates[0] == 0 and r2.trace_loss[0] == l0
    assert r2.trace_updates[-1] == 800 and r2.trace_loss[-1] == p.loss(r2.params)


@pytest.mark.timeout(120)
def test_hogwild_sparse_updates_rarely_conflict() -> None:
    e = make_embedding(4000, 20000, 2, zipf=0.0, seed=0)  # uniform rows: sparse, disjoint
    p = make_linear(400, 4, seed=0)
    lam = lambda_max(p)
    rs = hogwild(
        e, np.zeros(e.shape), SGD(lr=0.5, lazy=True), workers=2, steps=600, batch_size=2, timeout=60
    )
    rd = hogwild(p, np.zeros(4), SGD(lr=0.2 / lam), workers=2, steps=600, batch_size=2, timeout=60)
    assert rs.updates.tolist() == [600, 600] and e.loss(rs.params) < e.loss(np.zeros(e.shape))
    # a dense update conflicts whenever another one lands meanwhile; a 2-row update of a
    # 20000-row table almost never does
    assert rs.conflict_fraction <= 0.01 + 0.05 * rd.conflict_fraction
    # among the updates that did overlap another one, a dense update always conflicts and
    # a sparse one almost never does (overlaps depend on scheduling; counts checked exactly)
    assert 0 <= rs.overlap_fraction <= 1 and 0 <= rd.overlap_fraction <= 1
    assert rd.conflict_fraction <= rd.overlap_fraction + 1e-12
    if rd.overlap_fraction * rd.total_updates >= 50:
        assert rd.conflicts_per_overlap > 0.75
    if rs.overlap_fraction * rs.total_updates >= 50:
        assert rs.conflicts_per_overlap < 0.25


@pytest.mark.timeout(120)
def test_hogwild_torch_backend_and_bad_arguments() -> None:
    pytest.importorskip("torch")
    p = make_linear(300, 3, seed=0)
    lam = lambda_max(p)
    r = hogwild(
        p, np.zeros(3), SGD(lr=0.2 / lam), workers=2, steps=300, backend="torch", timeout=60
    )
    assert r.backend == "torch" and r.updates.tolist() == [300, 300]
    assert p.loss(r.params) < 0.05 * p.loss(np.zeros(3))
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        hogwild(p, np.zeros(3), workers=0)
    with pytest.raises(ValueError, match="backend must be 'numpy' or 'torch'"):
        hogwild(p, np.zeros(3), backend="mpi")
    with pytest.raises(ValueError, match=r"w0 must have shape \(3,\)"):
        hogwild(p, np.zeros(2))


@pytest.mark.timeout(60)
def test_hogwild_timeout_stops_the_workers() -> None:
    p = make_linear(2000, 50, seed=0)
    with pytest.raises(TimeoutError, match="timeout"):
        hogwild(p, np.zeros(50), SGD(lr=1e-4), workers=2, steps=10**7, batch_size=64, timeout=1.0)


def test_staleness_shrinks_the_stable_lr_as_levin_and_may() -> None:
    p = make_linear(300, 3, seed=0)
    lam = lambda_max(p)
    w0 = np.zeros(3)
    for tau in (0, 1, 2, 4):
        h = delayed_stability_factor(tau)
        ok = delayed_sgd(p, w0, 0.97 * h / lam, tau=tau, steps=1500)
        bad = delayed_sgd(p, w0, 1.03 * h / lam, tau=tau, steps=1500)
        assert ok[-1] < 1e-3 * ok[0] + p.loss(p.solution()) and bad[-1] > ok[0], tau
    assert delayed_stability_factor(2) == pytest.approx(2 * math.cos(2 * math.pi / 5), rel=1e-15)


def test_new_docstring_examples_run() -> None:
    for name in (".hogwild", ".saturation", ".faults", ".losses", ".optim", ".diagnostics"):
        mod = importlib.import_module("peakfit.gd" + name)
        res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert res.failed == 0, mod.__name__
