"""Tests of peakfit.gd: Keras batching, PyTorch optimizers, stability limit, noise scale,
per-example moments, weight decay, float16 loss scaling, sparse updates, guard, demo."""

from __future__ import annotations

import doctest
import inspect
import math
import time

import numpy as np
import pytest

from peakfit.gd import (
    SGD,
    Adam,
    AdamW,
    GaussianPeak,
    GradientNoise,
    GradScaler,
    LinearRegression,
    NonFiniteError,
    SlidingWindowRegression,
    batch_indices,
    batch_size_study,
    check_finite,
    compare_weight_decay,
    fit_critical_batch,
    gradient_second_moment,
    gradient_second_moment_bruteforce,
    gradient_variance,
    hessian_eigenvalues,
    lambda_max,
    linear_scaling_lr,
    lr_range_test,
    lr_sweep,
    make_embedding,
    make_gaussian_peak,
    make_linear,
    make_sliding_window,
    noise_scale,
    noise_scale_two_batch,
    per_example_grad_norms,
    precision_study,
    resolve_batch_size,
    sparse_update_study,
    stability_limit,
    steps_per_epoch,
    train,
)


@pytest.fixture(scope="module")
def lin() -> LinearRegression:
    return make_linear(1000, 5, seed=0)


# ============================================================ epochs and batches (Keras)
@pytest.mark.parametrize(
    ("n", "b", "steps", "last"),
    [(1000, 32, 32, 8), (1000, 64, 16, 40), (1024, 32, 32, 32), (7, 3, 3, 1), (5, 5, 1, 5)],
)
def test_steps_per_epoch_and_partial_batch_as_keras(n: int, b: int, steps: int, last: int) -> None:
    assert steps_per_epoch(n, b) == steps == math.ceil(n / b)
    assert steps_per_epoch(n, b, drop_last=True) == n // b
    sizes = [len(i) for i in batch_indices(n, b, shuffle=False)]
    assert sizes == [b] * (steps - 1) + [last]
    assert sizes[-1] == (n % b or b)
    dropped = [len(i) for i in batch_indices(n, b, shuffle=False, drop_last=True)]
    assert dropped == [b] * (n // b)


def test_keras_default_batch_size_and_shuffling() -> None:
    assert resolve_batch_size(None, 1000) == 32
    assert steps_per_epoch(1000, None) == 32
    rng = np.random.default_rng(0)
    e1 = np.concatenate(batch_indices(103, 25, rng=rng))
    e2 = np.concatenate(batch_indices(103, 25, rng=rng))
    assert sorted(e1.tolist()) == sorted(e2.tolist()) == list(range(103))  # each epoch = all data
    assert not np.array_equal(e1, e2)  # reshuffled every epoch
    chunks = batch_indices(103, 25, shuffle="batch", rng=np.random.default_rng(1))
    assert sorted(len(c) for c in chunks) == [3, 25, 25, 25, 25]
    assert all(np.array_equal(c, np.arange(c[0], c[0] + len(c))) for c in chunks)


def test_train_history_follows_keras_epochs(lin: LinearRegression) -> None:
    p = LinearRegression(lin.X[:103], lin.y[:103])
    h = train(p, np.zeros(5), SGD(lr=0.01), epochs=3, batch_size=25, seed=3)
    assert h.steps_per_epoch == 5 and h.steps == 15
    assert h.batch_size.tolist() == [25, 25, 25, 25, 3] * 3
    assert h.epoch.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert h.examples_seen[-1] == 3 * 103
    # Keras epoch loss: batch losses weighted by batch size
    for e in range(3):
        sel = h.epoch == e
        assert h.epoch_loss[e] == pytest.approx(
            np.sum(h.loss[sel] * h.batch_size[sel]) / 103, rel=1e-14
        )
    dl = train(
        p,
        np.zeros(5),
        SGD(lr=0.01),
        epochs=2,
        batch_size=25,
        drop_last=True,
        lr_schedule=lambda s: 0.01 / (1 + s),
    )
    assert dl.steps_per_epoch == 4 and dl.batch_size.tolist() == [25] * 8
    assert dl.lr.tolist() == [0.01 / (1 + s) for s in range(8)]
    again = train(p, np.zeros(5), SGD(lr=0.01), epochs=3, batch_size=25, seed=3)
    assert np.array_equal(h.params, again.params)  # seeded: bitwise reproducible
    assert h.epoch_full_loss[-1] == pytest.approx(p.loss(h.params), rel=1e-14)


def test_last_partial_batch_is_a_mean_over_its_own_examples(lin: LinearRegression) -> None:
    p = LinearRegression(lin.X[:103], lin.y[:103])
    w = np.full(5, 0.3)
    h = train(p, w, SGD(lr=1e-9), epochs=1, batch_size=25, shuffle=False)
    last = np.arange(100, 103)
    assert h.loss[-1] == pytest.approx(p.loss(w, last), rel=1e-6)
    g = p.grad(w, last)
    assert np.allclose(g, p.per_example_grads(w, last).mean(axis=0), rtol=1e-13, atol=0)


# ============================================================ bad input
@pytest.mark.parametrize("bad", [0, -3])
def test_batch_size_not_positive_raises(lin: LinearRegression, bad: int) -> None:
    with pytest.raises(ValueError, match=f"batch_size must be a positive integer, got {bad}"):
        train(lin, np.zeros(5), SGD(lr=0.01), batch_size=bad)


@pytest.mark.parametrize("bad", [2.5, True, "32"])
def test_batch_size_wrong_type_raises(lin: LinearRegression, bad: object) -> None:
    with pytest.raises(TypeError, match="batch_size must be a positive integer"):
        train(lin, np.zeros(5), SGD(lr=0.01), batch_size=bad)  # type: ignore[arg-type]


def test_batch_size_larger_than_n_is_clamped_like_keras(lin: LinearRegression) -> None:
    with pytest.warns(
        UserWarning, match=r"batch_size=5000 is larger than .* N=1000; clamped to 1000"
    ):
        h = train(lin, np.zeros(5), SGD(lr=0.01), epochs=2, batch_size=5000)
    assert h.batch_size_effective == 1000 and h.steps_per_epoch == 1
    assert h.batch_size.tolist() == [1000, 1000]
    assert steps_per_epoch(1000, 5000) == 1


@pytest.mark.parametrize("lr", [0, 0.0, -1e-3])
def test_lr_not_positive_raises(lr: float) -> None:
    for cls in (SGD, Adam, AdamW):
        with pytest.raises(ValueError, match=f"lr must be > 0, got {float(lr)}"):
            cls(lr=lr)
    opt = SGD(lr=0.1)
    with pytest.raises(ValueError, match="lr must be > 0"):
        opt.lr = lr
    with pytest.raises(ValueError, match="lr must be finite"):
        SGD(lr=float("nan"))


def test_other_bad_optimizer_arguments() -> None:
    with pytest.raises(
        ValueError, match="Nesterov momentum requires a momentum and zero dampening"
    ):
        SGD(lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"betas\[1\] must lie in \[0, 1\)"):
        Adam(betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        AdamW(weight_decay=-0.1)
    with pytest.raises(ValueError, match="gradient shape"):
        SGD(lr=0.1).step(np.zeros(3), np.zeros(2))


def test_mismatched_shapes_raise() -> None:
    with pytest.raises(ValueError, match="X has 5 rows but y has 4 entries"):
        LinearRegression(np.ones((5, 2)), np.ones(4))
    with pytest.raises(ValueError, match="X must be 2-D"):
        LinearRegression(np.ones(5), np.ones(5))
    with pytest.raises(ValueError, match="x has 5 entries but y has 6"):
        GaussianPeak(np.ones(5), np.ones(6))
    with pytest.raises(TypeError, match="X must be a real numeric array"):
        LinearRegression(np.ones((2, 2), dtype=complex), np.ones(2))
    with pytest.raises(ValueError, match="convention must be one of"):
        LinearRegression(np.ones((2, 2)), np.ones(2), convention="sse")
    p = LinearRegression(np.ones((5, 2)), np.ones(5))
    with pytest.raises(ValueError, match=r"w0 must have shape \(2,\), got \(3,\)"):
        train(p, np.zeros(3), SGD(lr=0.1), batch_size=5)
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        train(p, np.zeros(2), SGD(lr=0.1), epochs=0)
    with pytest.raises(ValueError, match="too short for window=8"):
        SlidingWindowRegression(np.arange(5.0), 8)


def test_nan_in_data_is_named_by_the_guard(lin: LinearRegression) -> None:
    X = lin.X.copy()
    X[417, 2] = np.nan
    p = LinearRegression(X, lin.y)  # accepted: the guard names the row when it is used
    assert p.bad_rows().tolist() == [417]
    with pytest.raises(NonFiniteError) as info:
        train(p, np.zeros(5), SGD(lr=0.01), batch_size=100, shuffle=False)
    err = info.value
    assert (err.step, err.epoch, err.array, err.rows) == (4, 0, "data", [417])
    assert str(err).startswith("non-finite data at step 4 (epoch 0)")
    assert "bad input row(s) [417]" in str(err)
    y = lin.y.copy()
    y[3] = np.inf
    with pytest.raises(NonFiniteError, match=r"step 0 .*bad input row\(s\) \[3\]"):
        train(LinearRegression(lin.X, y), np.zeros(5), SGD(lr=0.01), batch_size=10, shuffle=False)


# ============================================================ finite guard
def test_guard_raises_on_the_first_nonfinite_step(lin: LinearRegression) -> None:
    lam = lambda_max(lin)
    lr = 3.0 / lam
    with np.errstate(all="ignore"):
        free = train(
            lin,
            np.zeros(5),
            SGD(lr=lr),
            epochs=2000,
            batch_size=lin.n,
            shuffle=False,
            guard=False,
            eval_full=False,
        )
    first = int(np.flatnonzero(~np.isfinite(free.loss))[0])
    assert np.isfinite(free.loss[:first]).all() and first > 100
    with pytest.raises(NonFiniteError) as info:
        train(
            lin, np.zeros(5), SGD(lr=lr), epochs=2000, batch_size=lin.n, shuffle=False, lam_max=lam
        )
    err = info.value
    assert err.step == first and err.array == "loss"
    assert str(err).startswith(f"non-finite loss at step {first} (epoch {first}): loss = inf")
    assert "likely cause: lr too high: lr·λmax = 3 > 2" in str(err)
    # without λmax the loss history gives the diagnosis
    with pytest.raises(NonFiniteError, match=r"lr too high \(divergence\): the loss grew"):
        train(lin, np.zeros(5), SGD(lr=lr), epochs=2000, batch_size=lin.n, shuffle=False)


def test_guard_names_parameters_and_check_finite() -> None:
    p = LinearRegression(np.eye(2), np.array([1e10, 1.0]))
    with pytest.raises(NonFiniteError) as info:
        train(p, np.zeros(2), SGD(lr=1e300), epochs=1, batch_size=2)
    assert info.value.array == "parameters" and info.value.step == 0
    assert "non-finite parameters at step 0" in str(info.value)
    assert "1 NaN, 0 Inf" in str(info.value) or "0 NaN, 1 Inf" in str(info.value)
    with pytest.raises(
        NonFiniteError, match=r"non-finite gradient at step 7: 1 NaN, 1 Inf \(first at index 1\)"
    ):
        check_finite(np.array([0.0, np.inf, np.nan]), "gradient", step=7)
    x = np.arange(3.0)
    assert check_finite(x) is x


# ============================================================ problems and curvature
def test_gaussian_jacobian_and_hessian_match_finite_differences() -> None:
    g = make_gaussian_peak(120, seed=1)
    w = np.array([1.7, 0.1, 1.2])
    eps = 1e-6
    J = g.jacobian(w)
    H = g.hessian(w)
    for k in range(3):
        e = np.zeros(3)
        e[k] = eps
        fd_r = (g.residuals(w + e) - g.residuals(w - e)) / (2 * eps)
        fd_g = (g.grad(w + e) - g.grad(w - e)) / (2 * eps)
        assert np.allclose(J[:, k], fd_r, rtol=1e-7, atol=1e-9)
        assert np.allclose(H[:, k], fd_g, rtol=1e-6, atol=1e-9)
    v = np.array([0.3, -1.0, 2.0])
    assert np.allclose(g.hvp(w, v), H @ v, rtol=1e-13, atol=1e-15)
    assert np.allclose(g.hvp_operator(w)(v), H @ v, rtol=1e-13, atol=1e-15)


def test_lambda_max_exact_power_and_the_factor_of_two(lin: LinearRegression) -> None:
    lam = lambda_max(lin)
    assert lam == pytest.approx(np.linalg.eigvalsh(lin.X.T @ lin.X / lin.n).max(), rel=1e-12)
    assert lambda_max(lin, np.zeros(5), method="power") == pytest.approx(lam, rel=1e-9)
    mse = LinearRegression(lin.X, lin.y, convention="mse")
    assert lambda_max(mse) == pytest.approx(2 * lam, rel=1e-12)
    assert stability_limit(mse) == pytest.approx(1 / lam, rel=1e-12)
    g = make_gaussian_peak(200)
    w = np.array([1.5, 0.0, 1.3])
    assert lambda_max(g, w) == pytest.approx(hessian_eigenvalues(g, w)[-1], rel=1e-8)
    sw = SlidingWindowRegression(np.arange(6.0), 2, intercept=False)
    assert sw.X.tolist() == [[0, 1], [1, 2], [2, 3], [3, 4]] and sw.y.tolist() == [2, 3, 4, 5]


def test_lr_sweep_finds_the_edge_and_0p95_vs_1p05(lin: LinearRegression) -> None:
    w0 = np.zeros(5)
    lim = 2 / lambda_max(lin)
    s = lr_sweep(lin, w0, steps=150)
    assert abs(s.edge / lim - 1) < 0.02
    assert s.bracket[1] > lim  # below 2/λmax nothing can diverge
    assert s.bracket[0] < 1.005 * lim  # a finite run only sees growth a bit above it
    assert s.limit == pytest.approx(lim, rel=1e-14)
    conv = train(lin, w0, SGD(lr=0.95 * lim), epochs=400, batch_size=lin.n, shuffle=False)
    optimum = lin.loss(lin.solution())
    assert conv.epoch_full_loss[-1] == pytest.approx(optimum, rel=1e-9)
    assert np.all(np.diff(conv.epoch_full_loss) <= 1e-15)  # monotone below the edge
    div = train(lin, w0, SGD(lr=1.05 * lim), epochs=400, batch_size=lin.n, shuffle=False)
    assert div.epoch_full_loss[-1] > 1e6 * div.epoch_full_loss[0]
    m = lr_sweep(lin, w0, steps=150, momentum=0.9)
    assert m.limit == pytest.approx(3.8 / lambda_max(lin), rel=1e-14)
    assert abs(m.edge_ratio - 1) < 0.02
    sw = make_sliding_window(300, 6)
    assert abs(lr_sweep(sw, np.zeros(sw.dim), steps=150).edge_ratio - 1) < 0.02


def test_lr_range_test_brackets_the_edge(lin: LinearRegression) -> None:
    lim = 2 / lambda_max(lin)
    r100 = lr_range_test(lin, np.zeros(5))  # fastai defaults 1e-7 .. 10, 100 its
    r300 = lr_range_test(lin, np.zeros(5), start_lr=1e-4, num_it=300)
    expected = 1e-7 * (10 / 1e-7) ** (np.arange(len(r100.lrs)) / 100)
    assert np.allclose(r100.lrs, expected, rtol=1e-13)
    # GD on a quadratic cannot rise below 2/λmax: the wall lies above it;
    # slower ramps overshoot less
    assert lim < r300.diverge_lr < r100.diverge_lr < 20 * lim
    i_lim = int(np.searchsorted(r300.lrs, lim))
    assert np.all(np.diff(r300.losses[:i_lim]) < 0)
    for v in r100.suggestions.values():
        assert v is not None and 0 < v < lim


# ============================================================ per-example moments
@pytest.mark.parametrize(
    "problem",
    ["linear", "window", "gauss"],
)
def test_second_moment_on_pass_equals_bruteforce(problem: str) -> None:
    if problem == "linear":
        p, w = make_linear(400, 6, seed=2), np.linspace(-1, 1, 6)
    elif problem == "window":
        p = make_sliding_window(300, 5)
        w = np.linspace(-0.2, 0.3, p.dim)
    else:
        p, w = make_gaussian_peak(300), np.array([1.5, 0.0, 1.3])
    fast = gradient_second_moment(p, w)
    brute = gradient_second_moment_bruteforce(p, w)
    assert np.max(np.abs(fast - brute) / np.abs(brute)) < 1e-12
    idx = np.arange(10, 60)
    assert np.allclose(
        gradient_second_moment(p, w, idx),
        gradient_second_moment_bruteforce(p, w, idx),
        rtol=1e-12,
        atol=0,
    )
    G = p.per_example_grads(w)
    assert np.allclose(per_example_grad_norms(p, w), np.linalg.norm(G, axis=1), rtol=1e-12)
    assert np.allclose(gradient_variance(p, w, unbiased=True), G.var(axis=0, ddof=1), rtol=1e-9)


# ============================================================ noise scale and batch size
@pytest.fixture(scope="module")
def iso() -> tuple[LinearRegression, np.ndarray, float]:
    p = make_linear(4096, 8, scales=np.ones(8), noise=1.0, seed=0)
    w0 = np.zeros(8)
    ws = p.solution()
    frac = 0.03
    target = p.loss(ws) + frac * (p.loss(w0) - p.loss(ws))
    w_t = ws + math.sqrt(frac) * (w0 - ws)
    assert p.loss(w_t) == pytest.approx(target, rel=1e-12)
    return p, w_t, target


def test_noise_scale_exact_and_two_batch_estimate(iso: tuple) -> None:
    p, w, _ = iso
    ex = noise_scale(p, w)
    G = p.per_example_grads(w)
    assert ex.g2 == pytest.approx(float(G.mean(0) @ G.mean(0)), rel=1e-12)
    assert ex.trace_sigma == pytest.approx(float(np.trace(np.cov(G.T, bias=True))), rel=1e-10)
    assert 20 < ex.b_simple < 60
    est = noise_scale_two_batch(p, w, 8, 512, draws=2000)
    assert abs(est.b_simple / ex.b_simple - 1) < 0.2
    assert abs(est.g2 - ex.g2) < 4 * est.g2_se
    assert abs(est.trace_sigma - ex.trace_sigma) < 4 * est.trace_sigma_se
    wor = noise_scale_two_batch(p, w, 8, 512, draws=2000, replace=False, seed=5)
    assert abs(wor.b_simple / ex.b_simple - 1) < 0.2
    with pytest.raises(ValueError, match="need b_small < b_big"):
        noise_scale_two_batch(p, w, 64, 8)


def test_steps_vs_batch_size_flattens_near_the_noise_scale(iso: tuple) -> None:
    p, w_t, target = iso
    b_simple = noise_scale(p, w_t).b_simple
    bss = [2, 8, 32, 128, 512]
    st = batch_size_study(p, np.zeros(8), bss, target_loss=target, seeds=(0, 1), max_steps=3000)
    assert np.all(np.isfinite(st.steps))
    assert np.all(np.diff(st.steps) <= 0)
    assert st.steps[0] >= 10 * st.steps[-1]  # small batches: steps ∝ 1/B
    assert 0.5 < st.b_crit / b_simple < 2.0  # the knee sits at the noise scale
    far = st.batch_sizes >= 4 * b_simple
    assert np.all(st.steps[far] <= 2.5 * st.s_min)  # flat beyond it
    assert st.examples[-1] > 4 * st.examples[2]  # ... where examples are wasted
    assert np.all(np.diff(st.best_lr) >= 0) and st.best_lr[-1] < stability_limit(p)


def test_fit_critical_batch_and_linear_scaling() -> None:
    B = np.array([1, 4, 16, 64, 256])
    s_min, b_crit = fit_critical_batch(B, 50 * (1 + 20 / B))
    assert (s_min, b_crit) == (pytest.approx(50, rel=1e-12), pytest.approx(20, rel=1e-12))
    S, E = 50 * (1 + 20 / B), 50 * (B + 20)
    assert np.allclose((S / 50 - 1) * (E / (50 * 20) - 1), 1.0)  # McCandlish eq. 2.11
    assert linear_scaling_lr(0.1, 256, 8192) == pytest.approx(3.2)
    with pytest.raises(ValueError, match="need base_lr > 0"):
        linear_scaling_lr(0.0, 256, 512)


# ============================================================ optimizers vs PyTorch
def _ours_vs_torch(torch, ours, theirs, p0, grads, lr_change=None):
    w = p0.copy()
    tp = torch.tensor(p0.copy(), dtype=torch.float64, requires_grad=True)
    topt = theirs([tp])
    diff = 0.0
    for k, g in enumerate(grads):
        if lr_change and k == lr_change[0]:
            ours.lr = lr_change[1]
            for group in topt.param_groups:
                group["lr"] = lr_change[1]
        ours.step(w, g.copy())
        tp.grad = torch.tensor(g.copy(), dtype=torch.float64)
        topt.step()
        diff = max(diff, float(np.max(np.abs(w - tp.detach().numpy()))))
    return diff


def test_optimizers_match_torch_optim_to_1e12() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(7)
    grads = [rng.standard_normal(7) * 10.0 ** rng.uniform(-3, 1) for _ in range(40)]
    to = torch.optim
    cases = [
        (SGD(), lambda p: to.SGD(p)),
        (SGD(lr=0.05, momentum=0.9), lambda p: to.SGD(p, lr=0.05, momentum=0.9)),
        (
            SGD(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01),
            lambda p: to.SGD(p, lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01),
        ),
        (
            SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1),
            lambda p: to.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1),
        ),
        (SGD(lr=0.02, maximize=True), lambda p: to.SGD(p, lr=0.02, maximize=True)),
        (Adam(), lambda p: to.Adam(p)),
        (
            Adam(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
            lambda p: to.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
        ),
        (
            Adam(lr=0.01, amsgrad=True, weight_decay=0.05),
            lambda p: to.Adam(p, lr=0.01, amsgrad=True, weight_decay=0.05),
        ),
        (
            Adam(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
            lambda p: to.Adam(p, lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
        ),
        (AdamW(), lambda p: to.AdamW(p)),
        (
            AdamW(lr=0.01, weight_decay=0.3, amsgrad=True),
            lambda p: to.AdamW(p, lr=0.01, weight_decay=0.3, amsgrad=True),
        ),
    ]
    worst = 0.0
    for ours, theirs in cases:
        d = _ours_vs_torch(torch, ours, theirs, p0, grads, lr_change=(25, 0.003))
        assert d <= 1e-12, (ours, d)
        worst = max(worst, d)
    # defaults are PyTorch's
    for ours, theirs in ((SGD, to.SGD), (Adam, to.Adam), (AdamW, to.AdamW)):
        tsig = inspect.signature(theirs).parameters
        for name, par in inspect.signature(ours).parameters.items():
            if name in tsig and name not in ("params",):
                assert tsig[name].default == par.default, (ours.__name__, name)


def test_lazy_adam_matches_torch_sparse_adam() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    E0 = rng.standard_normal((20, 3))
    E = E0.copy()
    ours = Adam(lr=0.05, lazy=True)
    tp = torch.tensor(E0.copy(), requires_grad=True)
    topt = torch.optim.SparseAdam([tp], lr=0.05)
    for _ in range(15):
        rows = np.unique(rng.integers(0, 20, 6))
        vals = rng.standard_normal((len(rows), 3))
        before = E.copy()
        ours.step(E, vals, rows=rows)
        untouched = np.setdiff1d(np.arange(20), rows)
        assert np.array_equal(E[untouched], before[untouched])
        tp.grad = torch.sparse_coo_tensor(
            torch.tensor(rows[None, :]), torch.tensor(vals), (20, 3), check_invariants=True
        )
        topt.step()
        assert np.max(np.abs(E - tp.detach().numpy())) <= 1e-12


def test_grad_scaler_matches_torch_amp_grad_scaler() -> None:
    torch = pytest.importorskip("torch")
    c = np.array([1.0, 2.0, 3.0])
    inf_at = {2, 3, 9}
    ts = torch.amp.GradScaler("cpu", init_scale=8.0, growth_interval=3)
    tp = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    topt = torch.optim.SGD([tp], lr=0.1)
    ours, w, opt = GradScaler(init_scale=8.0, growth_interval=3), np.zeros(3), SGD(lr=0.1)
    for k in range(14):
        topt.zero_grad()
        ts.scale((tp * torch.tensor(c)).sum()).backward()
        g = ours.scale * c
        if k in inf_at:
            with torch.no_grad():
                tp.grad[0] = float("inf")
            g[0] = np.inf
        ts.step(topt)
        ts.update()
        stepped = ours.step(opt, w, g)
        assert stepped == (k not in inf_at)
        assert ours.scale == ts.get_scale()
        assert np.max(np.abs(w - tp.detach().numpy())) <= 1e-15
    d = GradScaler()
    assert (d.scale, d.growth_factor, d.backoff_factor, d.growth_interval) == (
        65536.0,
        2.0,
        0.5,
        2000,
    )


# ============================================================ weight decay
def test_adamw_differs_from_adam_l2_and_sgd_decays_coincide() -> None:
    p = make_linear(200, 3, scales=[0.1, 1.0, 10.0], seed=0)
    c = compare_weight_decay(p, np.zeros(3), lr=0.05, weight_decay=0.5, steps=1500)
    rn = np.linalg.norm(c.ridge)
    # Adam + L2 minimises L + λ/2|w|²; AdamW's decay is not preconditioned and ends elsewhere
    assert np.linalg.norm(c.params["adam_l2"] - c.ridge) / rn < 1e-8
    assert np.linalg.norm(c.params["adamw"] - c.params["adam_l2"]) / rn > 0.5
    # under plain SGD, L2 (λ) and decoupled decay (torch convention lr·λ) are the same update
    assert np.max(np.abs(c.params["sgd_l2"] - c.params["sgd_decoupled"])) < 1e-13
    # ... and equal Loshchilov-Hutter's w ← (1 - λ')w - γg with λ' = γλ made explicit
    gamma, lam = 0.01, 0.5
    w_l2, w_paper = np.zeros(3), np.zeros(3)
    opt = SGD(lr=gamma, weight_decay=lam)
    for _ in range(200):
        opt.step(w_l2, p.grad(w_l2))
        w_paper = (1 - gamma * lam) * w_paper - gamma * p.grad(w_paper)
    assert np.max(np.abs(w_l2 - w_paper)) < 1e-13
    # with momentum they are no longer the same
    a, b = np.zeros(3), np.zeros(3)
    o1 = SGD(lr=gamma, momentum=0.9, weight_decay=lam)
    o2 = SGD(lr=gamma, momentum=0.9, weight_decay=lam, decoupled_weight_decay=True)
    for _ in range(50):
        o1.step(a, p.grad(a))
        o2.step(b, p.grad(b))
    assert np.max(np.abs(a - b)) > 1e-3


# ============================================================ gradient noise
def test_annealed_gradient_noise_variance_and_training_use() -> None:
    gn = GradientNoise(eta=0.3, gamma=0.55, seed=0)
    for t in (0, 9, 99):
        assert gn.variance(t) == pytest.approx(0.3 / (1 + t) ** 0.55, rel=1e-15)
        emp = np.var(gn(np.zeros(40000), t))
        assert emp == pytest.approx(gn.variance(t), rel=0.03)  # variance, not std
    p = make_linear(50, 2, seed=0)
    h = train(
        p,
        np.zeros(2),
        SGD(lr=0.01),
        epochs=3,
        batch_size=50,
        shuffle=False,
        grad_noise=GradientNoise(eta=1.0, seed=7),
    )
    rng, w = np.random.default_rng(7), np.zeros(2)
    for t in range(3):  # t = updates done so far (Chainer's GradientNoise hook)
        w = w - 0.01 * (p.grad(w) + rng.standard_normal(2) * math.sqrt(1.0 / (1 + t) ** 0.55))
    assert np.allclose(h.params, w, rtol=0, atol=1e-15)


# ============================================================ float16 and loss scaling
def test_fp16_fails_without_scaling_and_converges_with_it() -> None:
    st = precision_study(n=1024, steps=40)
    l16, l16s, l32 = (st.loss64[k] for k in ("fp16", "fp16_scaled", "fp32"))
    assert st.zero_grad_fraction > 0.2  # r_i/N below half of 2**-24 flush to zero
    assert l16[-1] > 1e3 * l16s[-1]  # unscaled fp16 stalls
    assert l16s[-1] < 2 * l32[-1] and l16s[-1] < 1e-5 * l16s[0]  # scaled fp16 tracks fp32
    assert st.scale[0] == 65536.0 and not st.skipped.any()
    msg = st.overflow_error
    assert msg.startswith("non-finite loss at step 0 (epoch 0): loss = inf")
    assert "overflow in float16" in msg and "65504" in msg
    sc = st.overflow_scale
    k = st.overflow_skipped
    assert k >= 3 and np.array_equal(sc[: k + 1], 65536.0 * 0.5 ** np.arange(k + 1))
    assert np.all(sc[k:] == sc[k])
    ov = st.loss64["overflow_fp16_scaled"]
    assert np.all(ov[: k + 1] == ov[0])  # skipped steps leave the weights alone
    assert ov[-1] < 1e-4 * ov[0] and ov[-1] < 1.1 * st.loss64["overflow_fp32"][-1]


# ============================================================ sparse updates
def test_momentum_densifies_sparse_updates_lazy_does_not() -> None:
    p = make_embedding(1000, 200, 3, seed=0)
    st = sparse_update_study(p, steps=25)
    assert np.array_equal(st.rows_changed["sgd"], st.rows_seen)
    assert np.array_equal(st.rows_changed["momentum_lazy"], st.rows_seen)
    assert np.array_equal(st.rows_changed["adam_lazy"], st.rows_seen)
    rng = np.random.default_rng(0)  # same batches as the study
    batches = [rng.choice(p.n, 32, replace=False) for _ in range(25)]
    cumulative = np.array(
        [len(np.unique(p.ids[np.concatenate(batches[: k + 1])])) for k in range(25)]
    )
    assert np.array_equal(st.rows_changed["momentum"], cumulative)  # every row ever seen moves
    assert np.array_equal(st.rows_changed["adam"], cumulative)
    tr = st.rare_trajectory
    after = slice(st.rare_step, None)
    assert np.all(tr["momentum_lazy"][after] == tr["momentum_lazy"][st.rare_step])
    assert np.all(np.abs(np.diff(tr["momentum"][after])) > 0)


# ============================================================ demo and docs
def test_run_demo_quick(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from peakfit.gd.demo import run_demo

    t0 = time.perf_counter()
    res = run_demo(tmp_path, quick=True)
    assert time.perf_counter() - t0 < 60  # the quick demo's budget on 2 shared cores
    names = {
        "hogwild",
        "hogwild_sparsity",
        "saturation",
        "epochs_batches",
        "lr_sweep",
        "eigendirections",
        "lr_range_test",
        "nan_guard",
        "gaussian_peak",
        "batch_size",
        "noise_scale",
        "per_example",
        "weight_decay",
        "gradient_noise",
        "precision",
        "sparse",
    }
    assert set(res["figures"]) == names
    for path in res["figures"].values():
        with open(path, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    num = res["numbers"]
    assert abs(num["lr"]["edge_ratio"] - 1) < 0.02
    assert abs(num["batch"]["b_simple_ratio"] - 1) < 0.2
    assert num["per_example"]["max_rel_diff"] < 1e-12
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    lo, hi = num["lr"]["edge_brackets"]["GD"]
    assert 0.99 < lo < hi < 1.01 and f"GD (limit 2/λmax): [{lo:.4f}, {hi:.4f}]" in report
    assert num["hogwild"]["machine"]["cpus"] >= 1 and "CPUs" in report
    assert num["faults"]["messages"]["log(0)"].count("term 'log(μ)'") == 1
    for name in names:
        assert f"![]({name}.png)" in report


def test_docstring_examples_run() -> None:
    import importlib

    for name in ("", ".problems", ".optim", ".train", ".diagnostics", ".demo", ".hogwild"):
        mod = importlib.import_module("peakfit.gd" + name)
        res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert res.failed == 0, mod.__name__
