"""Figures and a Markdown report for every concept of :mod:`peakfit.gd`.

:func:`run_demo` writes PNG figures (matplotlib, Agg canvas, imported lazily) and
``report.md`` with the measured numbers into a directory. ``quick=True`` uses smaller
problems and fewer runs (a few seconds; used by the tests).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from .diagnostics import (
    batch_size_study,
    compare_weight_decay,
    gradient_second_moment,
    gradient_second_moment_bruteforce,
    hessian_eigenvalues,
    lambda_max,
    lr_range_test,
    lr_sweep,
    noise_scale,
    noise_scale_two_batch,
    per_example_grad_norms,
    precision_study,
    sparse_update_study,
    stability_limit,
)
from .optim import SGD
from .problems import (
    LinearRegression,
    make_embedding,
    make_gaussian_peak,
    make_linear,
    make_sliding_window,
)
from .train import GradientNoise, NonFiniteError, steps_per_epoch, train

__all__ = ["run_demo"]


_LAYOUT = {"constrained": True}
_CLIP = 1e100  # plotted losses are clipped here (log axes overflow near 1e308)


def _figure(ncols: int = 2, nrows: int = 1, size: tuple[float, float] | None = None) -> Any:
    from matplotlib.figure import Figure  # lazy: matplotlib is optional

    if _LAYOUT["constrained"]:
        fig = Figure(figsize=size or (5.0 * ncols, 3.8 * nrows), layout="constrained")
    else:  # quick mode: fixed margins, much faster than constrained layout
        fig = Figure(figsize=size or (5.2 * ncols, 4.0 * nrows))
        fig.subplots_adjust(left=0.08, right=0.98, bottom=0.13, top=0.9, wspace=0.32)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    return fig, axes


def _save(fig: Any, out: Path, name: str, figures: dict[str, str], dpi: int) -> None:
    path = out / f"{name}.png"
    fig.savefig(path, dpi=dpi)
    figures[name] = str(path)


# --------------------------------------------------------------------------- sections
def _epochs(out: Path, quick: bool, num: dict, figs: dict, dpi: int) -> None:
    p = make_linear(1000, 5, seed=0)
    n = p.n
    lr = 1.0 / lambda_max(p)
    num["epochs"] = {
        "N": n,
        "steps_per_epoch_B64": steps_per_epoch(n, 64),
        "last_batch_B64": n - (steps_per_epoch(n, 64) - 1) * 64,
        "steps_per_epoch_B64_drop_last": steps_per_epoch(n, 64, drop_last=True),
        "steps_per_epoch_B32_default": steps_per_epoch(n, None),
    }
    fig, ax = _figure(3)
    bs = np.unique(np.geomspace(1, n, 120).astype(int))
    ax[0].step(bs, [steps_per_epoch(n, b) for b in bs], where="post", label="ceil(N/B) (Keras)")
    ax[0].step(
        bs,
        [steps_per_epoch(n, b, drop_last=True) for b in bs],
        where="post",
        ls="--",
        label="floor(N/B) (drop_last)",
    )
    ax[0].set(
        xscale="log",
        yscale="log",
        xlabel="batch size B",
        ylabel="steps per epoch",
        title=f"N = {n}: steps per epoch",
    )
    ax[0].legend()
    epochs = 3 if quick else 6
    for b in (10, 100, n):
        h = train(
            p,
            np.zeros(p.dim),
            SGD(lr=lr),
            epochs=epochs,
            batch_size=b,
            record_full_loss=True,
            eval_full=False,
        )
        ax[1].semilogy(
            h.examples_seen / n, h.full_loss, label=f"B={b} ({h.steps_per_epoch} steps/epoch)"
        )
        ax[2].semilogy(np.arange(1, h.steps + 1), h.full_loss, label=f"B={b}")
    ax[1].set(xlabel="epochs (examples seen / N)", ylabel="full loss", title="same lr, per epoch")
    ax[2].set(xscale="log", xlabel="steps (updates)", ylabel="full loss", title="per step")
    ax[1].legend(fontsize=8)
    ax[2].legend(fontsize=8)
    _save(fig, out, "epochs_batches", figs, dpi)


def _lr(out: Path, quick: bool, num: dict, figs: dict, dpi: int) -> None:
    p = make_linear(1000, 5, seed=0)
    w0 = np.zeros(p.dim)
    steps = 100 if quick else 300
    lam = lambda_max(p)
    lim = 2.0 / lam
    sweep = lr_sweep(p, w0, steps=steps, lam_max=lam)
    sweep_m = lr_sweep(p, w0, steps=steps, momentum=0.9, lam_max=lam)
    optimum = p.loss(p.solution())
    finals = {}
    fig, ax = _figure(2)
    for s, lab, limit in ((sweep, "GD", 2.0), (sweep_m, "momentum 0.9", 3.8)):
        x = s.lrs * lam
        # Inf/NaN runs are drawn at the top of the plot, not dropped
        y = np.minimum(np.nan_to_num(s.final_loss, nan=_CLIP, posinf=_CLIP), _CLIP)
        line = ax[0].loglog(x[~s.diverged], y[~s.diverged], "o", ms=4, label=f"{lab}: converged")[0]
        ax[0].loglog(
            x[s.diverged],
            y[s.diverged],
            "x",
            color=line.get_color(),
            label=f"{lab}: diverged (Inf/NaN drawn at {_CLIP:g})",
        )
        ax[0].axvline(limit, color=line.get_color(), ls="--", lw=1)
    ax[0].axhline(optimum, color="gray", lw=0.8)
    ax[0].set(
        xlabel="lr · λmax",
        ylabel=f"loss after {steps} steps",
        title="lr sweep: edge at lr·λmax = 2 (2+2β with momentum)",
    )
    ax[0].legend(fontsize=7)
    for f in (0.5, 0.95, 1.05):
        with np.errstate(over="ignore", invalid="ignore"):
            h = train(
                p,
                w0,
                SGD(lr=f * lim),
                epochs=steps,
                batch_size=p.n,
                shuffle=False,
                eval_full=False,
                guard=False,
            )
        finals[f] = p.loss(h.params) if np.isfinite(h.params).all() else math.inf
        ax[1].semilogy(np.minimum(h.loss, _CLIP), label=f"lr = {f:g} · 2/λmax")
    ax[1].set(xlabel="step", ylabel="loss", title="just below vs just above the edge")
    ax[1].legend()
    _save(fig, out, "lr_sweep", figs, dpi)

    ev = hessian_eigenvalues(p)
    lam_min = ev[0]
    num["lr"] = {
        "lambda_max": lam,
        "lambda_min": lam_min,
        "limit_2_over_lambda_max": lim,
        "edge_found": sweep.edge,
        "edge_ratio": sweep.edge_ratio,
        "edge_ratio_momentum_0.9": sweep_m.edge_ratio,
        "final_loss_0.95": finals[0.95],
        "final_loss_1.05": finals[1.05],
        "optimum_loss": optimum,
        "kappa": lam / lam_min,
        "optimal_lr": 2.0 / (lam + lam_min),
        "optimal_rate": (lam / lam_min - 1) / (lam / lam_min + 1),
    }

    # per-eigendirection error
    H = p.hessian()
    evals, V = np.linalg.eigh(H)
    ws = p.solution()
    fig, ax = _figure(2)
    for a, lr_, title in (
        (ax[0], 0.95 * lim, "lr = 0.95·2/λmax"),
        (ax[1], 2.0 / (lam + lam_min), "lr* = 2/(λmin+λmax)"),
    ):
        w = w0.copy()
        errs = []
        for _ in range(60):
            errs.append(np.abs(V.T @ (w - ws)))
            w = w - lr_ * p.grad(w)
        errs = np.array(errs)
        for i, lam_i in enumerate(evals):
            a.semilogy(errs[:, i], label=f"λ={lam_i:.3g}, |1-lrλ|={abs(1 - lr_ * lam_i):.3f}")
        a.set(xlabel="step", ylabel="|error along eigenvector|", title=title)
        a.legend(fontsize=7)
    _save(fig, out, "eigendirections", figs, dpi)

    # range test
    fig, ax = _figure(1, size=(6.5, 4.2))
    rts = {}
    for a, b, it in ((1e-7, 10.0, 100), (1e-4, 10.0, 300)):
        r = lr_range_test(p, w0, start_lr=a, end_lr=b, num_it=it)
        rts[it] = r
        line = ax[0].loglog(r.lrs, r.smooth_losses, label=f"{it} its, {a:g}→{b:g}")[0]
        for k, mk in (("valley", "v"), ("steep", "s"), ("minimum", "^")):
            v = r.suggestions[k]
            if v is not None:
                j = int(np.argmin(np.abs(r.lrs - v)))
                ax[0].plot(
                    r.lrs[j], r.smooth_losses[j], mk, color=line.get_color(), label=f"{k} ({it})"
                )
    ax[0].axvline(lim, color="k", ls="--", label="2/λmax")
    ax[0].set(
        xlabel="learning rate", ylabel="smoothed loss", title="lr range test (fastai lr_find style)"
    )
    ax[0].legend(fontsize=7)
    _save(fig, out, "lr_range_test", figs, dpi)
    num["range_test"] = {
        f"diverge_lr_over_limit_{it}its": r.diverge_lr / lim for it, r in rts.items()
    } | {
        f"{k}_over_limit_100its": (v / lim if v else None) for k, v in rts[100].suggestions.items()
    }

    # NaN guard
    factor = 3.0 if quick else 2.2  # 2.2 takes ~1900 steps to overflow float64, 3.0 ~640
    lr_bad = factor / lam
    fig, ax = _figure(1, size=(6.5, 4.0))
    with np.errstate(over="ignore", invalid="ignore"):
        h = train(
            p,
            w0,
            SGD(lr=lr_bad),
            epochs=2000,
            batch_size=p.n,
            shuffle=False,
            eval_full=False,
            guard=False,
        )
    ax[0].semilogy(
        np.where(np.isfinite(h.loss), np.minimum(h.loss, _CLIP), np.nan), label="loss (guard off)"
    )
    try:
        train(p, w0, SGD(lr=lr_bad), epochs=2000, batch_size=p.n, shuffle=False, lam_max=lam)
        msg, step = "", -1
    except NonFiniteError as err:
        msg, step = str(err), err.step
    ax[0].axvline(step, color="r", ls="--", label=f"guard raises at step {step}")
    ax[0].set(xlabel="step", ylabel="loss", title=f"lr = {factor:g}/λmax: divergence to Inf/NaN")
    ax[0].legend()
    _save(fig, out, "nan_guard", figs, dpi)
    X = p.X.copy()
    X[417, 2] = np.nan
    try:
        train(LinearRegression(X, p.y), w0, SGD(lr=0.01), epochs=1, batch_size=100, shuffle=False)
        data_msg = ""
    except NonFiniteError as err:
        data_msg = str(err)
    num["guard"] = {
        "lr": lr_bad,
        "lr_factor": factor,
        "step": step,
        "message": msg,
        "data_message": data_msg,
    }


def _nonlinear(out: Path, quick: bool, num: dict, figs: dict, dpi: int) -> None:
    g = make_gaussian_peak(200)
    w_start = np.array([1.5, 0.0, 1.3])
    lam0 = lambda_max(g, w_start)
    h = train(
        g,
        w_start,
        SGD(lr=1.0 / lam0),
        epochs=150 if quick else 400,
        batch_size=g.n,
        shuffle=False,
        eval_full=False,
        record_params=True,
    )
    # record_params keeps epoch snapshots; with full batch each epoch is one step
    snaps = np.array(h.snapshots)
    lams = [lambda_max(g, w) for w in snaps[:: max(1, len(snaps) // 40)]]
    w_end = snaps[-1]
    steps = 100 if quick else 300
    s0 = lr_sweep(g, w_start, steps=steps, lam_max=lam0)
    w_near = w_end * 1.02  # a sweep needs a start above the minimum
    s1 = lr_sweep(g, w_near, steps=steps, lam_max=lambda_max(g, w_near))
    sw = make_sliding_window(400, 8)
    s2 = lr_sweep(sw, np.zeros(sw.dim), steps=steps)
    fig, ax = _figure(2)
    x = np.asarray(g.x)
    ax[0].plot(x, g.y, ".", ms=3, label="data")
    ax[0].plot(x, g.model(w_start), label="start")
    ax[0].plot(x, g.model(w_end), label="GD fit")
    ax[0].set(xlabel="x", ylabel="y", title="Gaussian peak a·exp(-((x-b)/c)²)")
    ax[0].legend()
    ax[1].plot(np.arange(len(lams)) * max(1, len(snaps) // 40), lams, label="λmax along the path")
    ax[1].axhline(2 * lam0, color="r", ls="--", label="2/lr (lr = 1/λmax(start))")
    ax[1].set(
        xlabel="step",
        ylabel="sharpness λmax (power iteration)",
        title="sharpness changes along a non-linear fit",
    )
    ax[1].legend()
    _save(fig, out, "gaussian_peak", figs, dpi)
    num["nonlinear"] = {
        "gaussian_lambda_max_start": lam0,
        "gaussian_lambda_max_end": lams[-1],
        "gaussian_edge_ratio_from_start": s0.edge_ratio,
        "gaussian_edge_ratio_at_optimum": s1.edge_ratio,
        "sliding_window_edge_ratio": s2.edge_ratio,
        "gaussian_fit": [float(v) for v in w_end],
    }


def _batch(out: Path, quick: bool, num: dict, figs: dict, dpi: int) -> None:
    p = make_linear(4096, 8, scales=np.ones(8), noise=1.0, seed=0)
    w0 = np.zeros(p.dim)
    ws = p.solution()
    l_star, l0 = p.loss(ws), p.loss(w0)
    frac = 0.03
    target = l_star + frac * (l0 - l_star)
    w_t = ws + math.sqrt(frac) * (w0 - ws)  # exactly at the target loss (quadratic)
    exact = noise_scale(p, w_t)
    est = noise_scale_two_batch(p, w_t, 8, 512, draws=1000 if quick else 4000)
    bss = [2, 8, 32, 128, 512] if quick else [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    seeds = (0, 1) if quick else (0, 1, 2)
    st = batch_size_study(p, w0, bss, target_loss=target, seeds=seeds, max_steps=3000)
    lim = stability_limit(p)
    fig, ax = _figure(3)
    bb = np.geomspace(min(bss), max(bss), 100)
    ax[0].loglog(st.batch_sizes, st.steps, "o", label="measured (best lr per B)")
    ax[0].loglog(
        bb, st.s_min * (1 + st.b_crit / bb), "-", label=f"S_min(1+B_crit/B), B_crit={st.b_crit:.0f}"
    )
    ax[1].loglog(st.batch_sizes, st.examples, "o", label="measured")
    ax[1].loglog(bb, st.s_min * (bb + st.b_crit), "-", label="E_min(1+B/B_crit)")
    ax[2].loglog(st.batch_sizes, st.best_lr, "o", label="best lr of the grid")
    ax[2].loglog(bb, st.best_lr[0] * bb / st.batch_sizes[0], "--", label="linear scaling lr ∝ B")
    ax[2].axhline(lim, color="k", lw=1, label="2/λmax (stability limit)")
    ax[2].set_ylim(0.5 * st.best_lr.min(), 2 * lim)
    for a in ax:
        a.axvline(exact.b_simple, color="r", ls=":", label=f"B_simple={exact.b_simple:.0f}")
        a.set_xlabel("batch size B")
    ax[0].set(ylabel="steps to target", title="steps flatten beyond B_crit ≈ B_simple")
    ax[1].set(ylabel="examples to target", title="examples grow beyond B_crit")
    ax[2].set(ylabel="learning rate", title="optimal lr ∝ B, then saturates")
    for a in ax:
        a.legend(fontsize=7)
    _save(fig, out, "batch_size", figs, dpi)

    # noise scale along training
    h = train(
        p, w0, SGD(lr=0.05 * lim), epochs=4 if quick else 8, batch_size=32, record_params=True
    )
    fig, ax = _figure(1, size=(6.5, 4.2))
    losses, ex, es, err = [], [], [], []
    for w in h.snapshots:
        losses.append(p.loss(w) - l_star)
        ex.append(noise_scale(p, w).b_simple)
        e = noise_scale_two_batch(p, w, 8, 512, draws=200 if quick else 800, seed=1)
        es.append(e.b_simple)
        err.append(e.b_simple * math.hypot(e.trace_sigma_se / e.trace_sigma, e.g2_se / e.g2))
    ax[0].loglog(losses, ex, "o-", label="exact tr(Σ)/|G|²")
    ax[0].errorbar(losses, es, yerr=err, fmt="s", ms=4, label="two-batch estimate (8, 512) ± SE")
    ax[0].set(
        xlabel="excess loss L - L*",
        ylabel="B_simple",
        title="noise scale grows as the loss decreases",
    )
    ax[0].legend()
    _save(fig, out, "noise_scale", figs, dpi)
    num["batch"] = {
        "target_loss": target,
        "b_simple_exact": exact.b_simple,
        "b_simple_two_batch": est.b_simple,
        "b_simple_ratio": est.b_simple / exact.b_simple,
        "b_crit_fit": st.b_crit,
        "s_min_fit": st.s_min,
        "batch_sizes": [int(b) for b in st.batch_sizes],
        "steps": [float(s) for s in st.steps],
        "best_lr_over_limit": [float(v) for v in st.best_lr / lim],
    }


def _per_example(out: Path, quick: bool, num: dict, figs: dict, dpi: int) -> None:
    g = make_gaussian_peak(300 if quick else 2000)
    w = np.array([1.5, 0.0, 1.3])
    t0 = time.perf_counter()
    fast = gradient_second_moment(g, w)
    t1 = time.perf_counter()
    brute = gradient_second_moment_bruteforce(g, w)
    t2 = time.perf_counter()
    norms = per_example_grad_norms(g, w)
    fig, ax = _figure(2)
    ax[0].plot(np.asarray(g.x), norms, ".", ms=3)
    ax[0].set(xlabel="x", ylabel="|∇ℓ_i|", title="per-example gradient norms (Gaussian peak)")
    k = np.arange(3)
    ax[1].bar(k - 0.2, fast, 0.4, label=f"O(N) pass ({(t1 - t0) * 1e3:.2f} ms)")
    ax[1].bar(k + 0.2, brute, 0.4, label=f"loop ({(t2 - t1) * 1e3:.1f} ms)")
    ax[1].set(
        xticks=k,
        xticklabels=["a", "b", "c"],
        yscale="log",
        title="mean of squared per-example gradients",
    )
    ax[1].legend()
    _save(fig, out, "per_example", figs, dpi)
    num["per_example"] = {
        "N": g.n,
        "max_abs_diff": float(np.max(np.abs(fast - brute))),
        "max_rel_diff": float(np.max(np.abs(fast - brute) / np.abs(brute))),
        "time_fast_ms": (t1 - t0) * 1e3,
        "time_loop_ms": (t2 - t1) * 1e3,
    }


def _weight_decay(out: Path, quick: bool, num: dict, figs: dict, dpi: int) -> None:
    p = make_linear(200, 3, scales=[0.1, 1.0, 10.0], seed=0)
    c = compare_weight_decay(
        p, np.zeros(3), lr=0.05, weight_decay=0.5, steps=800 if quick else 3000
    )
    ols = p.solution()
    fig, ax = _figure(2)
    rows = {"OLS": ols, "ridge": c.ridge, **c.params}
    k = np.arange(3)
    wdt = 0.8 / len(rows)
    for i, (name, v) in enumerate(rows.items()):
        ax[0].bar(k + (i - len(rows) / 2) * wdt, v, wdt, label=name)
    ax[0].set(
        xticks=k,
        xticklabels=["w0 (scale 0.1)", "w1 (1)", "w2 (10)"],
        title="final weights: Adam+L2 → ridge; AdamW ≠ ridge",
    )
    ax[0].legend(fontsize=7)
    ax[1].bar(k, c.adam_effective_decay, label="Adam+L2: lr·λ/(√v̂+ε)")
    ax[1].axhline(c.adamw_decay, color="r", ls="--", label="AdamW: lr·λ")
    ax[1].set(xticks=k, yscale="log", title="effective per-step decay at the end")
    ax[1].legend()
    _save(fig, out, "weight_decay", figs, dpi)
    rn = float(np.linalg.norm(c.ridge))
    num["weight_decay"] = {
        "adam_l2_dist_to_ridge": float(np.linalg.norm(c.params["adam_l2"] - c.ridge)) / rn,
        "adamw_dist_to_ridge": float(np.linalg.norm(c.params["adamw"] - c.ridge)) / rn,
        "adamw_minus_adam_l2": float(np.linalg.norm(c.params["adamw"] - c.params["adam_l2"])) / rn,
        "sgd_l2_minus_decoupled_max_abs": float(
            np.max(np.abs(c.params["sgd_l2"] - c.params["sgd_decoupled"]))
        ),
    }


def _grad_noise(out: Path, quick: bool, num: dict, figs: dict, dpi: int) -> None:
    gn = GradientNoise(eta=0.3, gamma=0.55, seed=0)
    ts = np.array([0, 1, 3, 10, 30, 100, 300, 1000])
    reps = 2000 if quick else 20000
    emp = np.array([np.var(gn(np.zeros(reps), int(t))) for t in ts])
    theo = np.array([gn.variance(int(t)) for t in ts])
    g = make_gaussian_peak(200)
    w0 = np.array([1.0, -1.5, 0.5])
    lr = 0.5 / lambda_max(g, np.array([2.0, 0.3, 1.0]))  # half the limit at the optimum
    fig, ax = _figure(2)
    tt = np.unique(np.geomspace(1, 1000, 60).astype(int))
    ax[0].loglog(tt, [gn.variance(int(t)) for t in tt - 1], label="σ_t² = η/(1+t)^0.55")
    ax[0].loglog(ts + 1, emp, "o", label=f"empirical variance ({reps} draws)")
    ax[0].set(xlabel="1 + t", ylabel="noise variance", title="annealed gradient noise (η=0.3)")
    ax[0].legend()
    for eta in (None, 0.01, 0.3):
        noise = None if eta is None else GradientNoise(eta=eta, seed=1)
        h = train(
            g,
            w0,
            SGD(lr=lr),
            epochs=300 if quick else 1500,
            batch_size=g.n,
            shuffle=False,
            grad_noise=noise,
            eval_full=False,
        )
        ax[1].semilogy(h.loss, label="no noise" if eta is None else f"η={eta}")
    ax[1].set(xlabel="step", ylabel="loss", title="Gaussian peak from a poor start")
    ax[1].legend()
    _save(fig, out, "gradient_noise", figs, dpi)
    num["grad_noise"] = {
        "t": ts.tolist(),
        "variance_theory": theo.tolist(),
        "variance_empirical": emp.tolist(),
        "max_rel_err": float(np.max(np.abs(emp / theo - 1))),
    }


def _precision(out: Path, quick: bool, num: dict, figs: dict, dpi: int) -> None:
    st = precision_study(n=1024 if quick else 4096, steps=40 if quick else 80)
    fig, ax = _figure(3)
    for k in ("fp32", "fp16", "fp16_scaled"):
        ax[0].semilogy(st.loss64[k], label=k)
    ax[0].axhline(st.optimum, color="gray", lw=0.8)
    ax[0].set(
        xlabel="step",
        ylabel="float64 loss of master weights",
        title=f"underflow: {st.zero_grad_fraction:.0%} of r_i/N flush to 0 in fp16",
    )
    ax[0].legend()
    for k in ("overflow_fp32", "overflow_fp16_scaled"):
        ax[1].semilogy(st.loss64[k], label=k)
    ax[1].set(xlabel="step", ylabel="float64 loss", title="overflow: r² > 65504; scaler rescues")
    ax[1].legend()
    ax[2].semilogy(st.overflow_scale, label="GradScaler scale")
    sk = np.flatnonzero(
        st.loss64["overflow_fp16_scaled"][1:] == st.loss64["overflow_fp16_scaled"][0]
    )
    ax[2].plot(sk, st.overflow_scale[sk], "rx", label="skipped step")
    ax[2].set(xlabel="step", ylabel="loss scale", title="init 2¹⁶, ×0.5 on Inf, ×2 per 2000 ok")
    ax[2].legend()
    _save(fig, out, "precision", figs, dpi)
    num["precision"] = {
        "fp32_final": float(st.loss64["fp32"][-1]),
        "fp16_final": float(st.loss64["fp16"][-1]),
        "fp16_scaled_final": float(st.loss64["fp16_scaled"][-1]),
        "zero_backward_fraction": st.zero_grad_fraction,
        "overflow_skipped_steps": st.overflow_skipped,
        "overflow_final_scale": float(st.overflow_scale[-1]),
        "overflow_fp16_scaled_final": float(st.loss64["overflow_fp16_scaled"][-1]),
        "overflow_fp32_final": float(st.loss64["overflow_fp32"][-1]),
        "overflow_error": st.overflow_error,
    }


def _sparse(out: Path, quick: bool, num: dict, figs: dict, dpi: int) -> None:
    st = sparse_update_study(make_embedding(2000, 500, 4), steps=40 if quick else 100)
    fig, ax = _figure(2)
    ax[0].plot(st.rows_seen, "k--", label="rows in the batch")
    for k, v in st.rows_changed.items():
        ax[0].plot(v, label=k)
    ax[0].set(xlabel="step", ylabel="rows changed", title=f"{st.num_rows}-row embedding, B=32")
    ax[0].legend(fontsize=7)
    for k, v in st.rare_trajectory.items():
        ax[1].plot(v, label=k)
    ax[1].axvline(st.rare_step, color="gray", ls=":", label="only time the row is seen")
    ax[1].set(xlabel="step", ylabel="row value", title=f"row {st.rare_row}, seen once")
    ax[1].legend(fontsize=7)
    _save(fig, out, "sparse", figs, dpi)
    num["sparse"] = {
        "rows_seen_last": int(st.rows_seen[-1]),
        **{f"rows_changed_last_{k}": int(v[-1]) for k, v in st.rows_changed.items()},
        "rare_row_moves_after_seen_momentum": float(
            st.rare_trajectory["momentum"][-1] - st.rare_trajectory["momentum"][st.rare_step]
        ),
        "rare_row_moves_after_seen_lazy": float(
            st.rare_trajectory["momentum_lazy"][-1]
            - st.rare_trajectory["momentum_lazy"][st.rare_step]
        ),
    }


# --------------------------------------------------------------------------- report
def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def _report(num: dict, figs: dict, quick: bool, seconds: float) -> str:
    ep, lr, rt, nl = num["epochs"], num["lr"], num["range_test"], num["nonlinear"]
    bt, pe, wd = num["batch"], num["per_example"], num["weight_decay"]
    gn, pr, sp, gd = num["grad_noise"], num["precision"], num["sparse"], num["guard"]
    diverge = ", ".join(
        f"{k.split('_')[-1]}: {v:.3g} × 2/λmax" for k, v in rt.items() if k.startswith("diverge")
    )
    sugg = ", ".join(
        f"{k.split('_')[0]} {_fmt(v)}" for k, v in rt.items() if not k.startswith("diverge")
    )
    changed = ", ".join(
        f"{k.removeprefix('rows_changed_last_')} {v}"
        for k, v in sp.items()
        if k.startswith("rows_changed")
    )
    mode = "quick" if quick else "full"
    lines = [
        "# peakfit.gd demo report",
        "",
        f"Mode: {mode}; {seconds:.1f} s. Every number below was measured by this run "
        "(NumPy, float64 unless stated). See docs/gd.md for the formulas.",
        "",
        "## Epochs and batches (Keras semantics)",
        "",
        f"- N = {ep['N']}, B = 64: {ep['steps_per_epoch_B64']} steps per epoch = ceil(N/B); "
        f"the last batch holds {ep['last_batch_B64']} examples; with drop_last "
        f"{ep['steps_per_epoch_B64_drop_last']} steps; default B = 32: "
        f"{ep['steps_per_epoch_B32_default']} steps.",
        "",
        "![](epochs_batches.png)",
        "",
        "## Learning rate and the stability limit",
        "",
        f"- Hessian of the loss differentiated: λmax = {lr['lambda_max']:.6g}, "
        f"λmin = {lr['lambda_min']:.4g}, κ = {lr['kappa']:.4g}; 2/λmax = "
        f"{lr['limit_2_over_lambda_max']:.6g}.",
        f"- lr sweep edge = {lr['edge_found']:.6g}, i.e. **{lr['edge_ratio']:.4f} × 2/λmax**; "
        f"with momentum 0.9: {lr['edge_ratio_momentum_0.9']:.4f} × 3.8/λmax.",
        f"- Loss after the run at 0.95 · 2/λmax: {lr['final_loss_0.95']:.6g} "
        f"(optimum {lr['optimum_loss']:.6g}); at 1.05 · 2/λmax: {lr['final_loss_1.05']:.3g}.",
        f"- Optimal lr 2/(λmin+λmax) = {lr['optimal_lr']:.4g}; error contraction per step "
        f"(κ-1)/(κ+1) = {lr['optimal_rate']:.4f}.",
        "",
        "![](lr_sweep.png) ![](eigendirections.png)",
        "",
        f"- Range test: the loss blows up at {diverge}; fastai suggestions (100 its, in units "
        f"of 2/λmax): {sugg}.",
        "",
        "![](lr_range_test.png)",
        "",
        f"- Gaussian peak: λmax {nl['gaussian_lambda_max_start']:.4g} at the start, "
        f"{nl['gaussian_lambda_max_end']:.4g} at the fit; sweep edge from the start = "
        f"{nl['gaussian_edge_ratio_from_start']:.3f} × 2/λmax(start), near the optimum = "
        f"{nl['gaussian_edge_ratio_at_optimum']:.4f} × 2/λmax(optimum).",
        f"- Sliding-window regression: edge = {nl['sliding_window_edge_ratio']:.4f} × 2/λmax.",
        "",
        "![](gaussian_peak.png)",
        "",
        "## NaN guard",
        "",
        f"- lr = {gd['lr_factor']:g}/λmax: `{gd['message']}`",
        f"- NaN in X[417, 2]: `{gd['data_message']}`",
        "",
        "![](nan_guard.png)",
        "",
        "## Batch size and gradient noise scale",
        "",
        f"- At the target loss {bt['target_loss']:.4g}: exact B_simple = "
        f"{bt['b_simple_exact']:.4g}; two-batch estimate = {bt['b_simple_two_batch']:.4g} "
        f"(ratio {bt['b_simple_ratio']:.3f}).",
        f"- Fit S = S_min(1 + B_crit/B): S_min = {bt['s_min_fit']:.3g}, "
        f"B_crit = {bt['b_crit_fit']:.4g} = {bt['b_crit_fit'] / bt['b_simple_exact']:.2f} × "
        "B_simple.",
        f"- B = {bt['batch_sizes']}: steps {_fmt(bt['steps'])}; best lr in units of 2/λmax "
        f"{_fmt(bt['best_lr_over_limit'])}.",
        "",
        "![](batch_size.png) ![](noise_scale.png)",
        "",
        "## Per-example gradients",
        "",
        f"- N = {pe['N']}: O(N) second moment vs loop: max abs diff {pe['max_abs_diff']:.3g}, "
        f"max rel diff {pe['max_rel_diff']:.3g}; {pe['time_fast_ms']:.2f} ms vs "
        f"{pe['time_loop_ms']:.1f} ms.",
        "",
        "![](per_example.png)",
        "",
        "## Weight decay: L2 vs decoupled",
        "",
        f"- |Adam+L2 − ridge| / |ridge| = {wd['adam_l2_dist_to_ridge']:.3g}; "
        f"|AdamW − ridge| / |ridge| = {wd['adamw_dist_to_ridge']:.3g}; "
        f"|AdamW − Adam+L2| / |ridge| = {wd['adamw_minus_adam_l2']:.3g}.",
        f"- SGD: max |L2 − decoupled| = {wd['sgd_l2_minus_decoupled_max_abs']:.3g} "
        "(the same update: w − γ(g + λw) = w(1 − γλ) − γg).",
        "",
        "![](weight_decay.png)",
        "",
        "## Annealed gradient noise",
        "",
        f"- σ_t² = 0.3/(1+t)^0.55; empirical variance, max relative error {gn['max_rel_err']:.3g}.",
        "",
        "![](gradient_noise.png)",
        "",
        "## float16 and loss scaling",
        "",
        f"- Underflow: {pr['zero_backward_fraction']:.0%} of the fp16 backward factors r_i/N "
        f"are 0; final loss fp32 {pr['fp32_final']:.3g}, fp16 {pr['fp16_final']:.3g}, "
        f"fp16 + GradScaler {pr['fp16_scaled_final']:.3g}.",
        f"- Overflow: `{pr['overflow_error']}`",
        f"- With a GradScaler: {pr['overflow_skipped_steps']} skipped steps, scale "
        f"{pr['overflow_final_scale']:g}, final loss {pr['overflow_fp16_scaled_final']:.4g} "
        f"(fp32 {pr['overflow_fp32_final']:.4g}).",
        "",
        "![](precision.png)",
        "",
        "## Sparse updates",
        "",
        f"- Last step: {sp['rows_seen_last']} rows in the batch; rows changed: {changed}.",
        f"- A row seen once keeps moving by {sp['rare_row_moves_after_seen_momentum']:.3g} "
        f"under dense momentum, {sp['rare_row_moves_after_seen_lazy']:.3g} under lazy momentum.",
        "",
        "![](sparse.png)",
        "",
    ]
    return "\n".join(lines)


def run_demo(out_dir: str | Path, quick: bool = False) -> dict[str, Any]:
    """Write all figures and ``report.md`` into ``out_dir``; return the numbers.

    Parameters
    ----------
    out_dir : str or Path
        Output directory (created if needed).
    quick : bool
        Smaller problems and fewer runs (a few seconds).

    Returns
    -------
    dict
        ``{"report": path, "figures": {name: path}, "numbers": {...}, "seconds": float}``.

    Examples
    --------
    >>> import tempfile
    >>> res = run_demo(tempfile.mkdtemp(), quick=True)  # doctest: +SKIP
    >>> sorted(res["figures"])[:3]  # doctest: +SKIP
    ['batch_size', 'eigendirections', 'epochs_batches']
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dpi = 70 if quick else 110
    _LAYOUT["constrained"] = not quick
    num: dict[str, Any] = {}
    figs: dict[str, str] = {}
    for section in (
        _epochs,
        _lr,
        _nonlinear,
        _batch,
        _per_example,
        _weight_decay,
        _grad_noise,
        _precision,
        _sparse,
    ):
        section(out, quick, num, figs, dpi)
    seconds = time.perf_counter() - t0
    report = out / "report.md"
    report.write_text(_report(num, figs, quick, seconds), encoding="utf-8")
    return {"report": str(report), "figures": figs, "numbers": num, "seconds": seconds}
