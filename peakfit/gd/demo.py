"""Figures and a Markdown report for every concept of :mod:`peakfit.gd`.

:func:`run_demo` writes PNG figures (matplotlib, Agg canvas, imported lazily) and
``report.md`` with the measured numbers into a directory. ``quick=True`` uses smaller
problems and fewer runs (a few seconds; used by the tests).
"""

from __future__ import annotations

import math
import time
import warnings
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
from .hogwild import delayed_sgd, delayed_stability_factor, hogwild, sync_sgd
from .losses import PoissonRegression, RelativeErrorRegression
from .optim import SGD, GradScaler
from .problems import (
    LinearRegression,
    make_embedding,
    make_gaussian_peak,
    make_linear,
    make_sliding_window,
)
from .saturation import _act, _dact, saturation_study
from .train import GradientNoise, NonFiniteError, steps_per_epoch, train

__all__ = ["run_demo"]


_LAYOUT = {"constrained": True}


def _figure(ncols: int = 2, nrows: int = 1, size: tuple[float, float] | None = None) -> Any:
    from matplotlib.figure import Figure  # lazy: matplotlib is optional

    if _LAYOUT["constrained"]:
        fig = Figure(figsize=size or (5.0 * ncols, 3.8 * nrows), layout="constrained")
    else:  # quick mode: fixed margins, much faster than constrained layout
        fig = Figure(figsize=size or (5.2 * ncols, 4.0 * nrows))
        fig.subplots_adjust(
            left=0.08,
            right=0.98,
            bottom=0.13 if nrows == 1 else 0.08,
            top=0.9,
            wspace=0.32,
            hspace=0.45,
        )
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    return fig, axes


def _identical(curves: dict[str, np.ndarray]) -> list[tuple[list[str], np.ndarray]]:
    """Group identical curves so that each is drawn once, labelled with all its names."""
    groups: list[tuple[list[str], np.ndarray]] = []
    for k, v in curves.items():
        for names, ref in groups:
            if np.array_equal(ref, v):
                names.append(k)
                break
        else:
            groups.append(([k], v))
    return groups


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
    variants = {
        "GD": {},
        "heavy ball β=0.9": {"momentum": 0.9},
        "Nesterov β=0.9": {"momentum": 0.9, "nesterov": True},
        "heavy ball β=0.9, dampening 0.5": {"momentum": 0.9, "dampening": 0.5},
    }
    sweeps = {k: lr_sweep(p, w0, steps=steps, lam_max=lam, **kw) for k, kw in variants.items()}
    sweep, sweep_m = sweeps["GD"], sweeps["heavy ball β=0.9"]
    optimum = p.loss(p.solution())
    l0 = p.loss(w0)
    finals = {}
    fig, ax = _figure(2)
    markers = ("o", "s", "^", "D")
    top = 10.0  # diverged runs are drawn in a band above 1 (a converged run stays below 1)
    for (lab, s), mk in zip(sweeps.items(), markers):
        x = s.lrs / s.limit
        rel = np.clip((s.final_loss - optimum) / (l0 - optimum), 1e-16, None)
        conv = ~s.diverged
        line = ax[0].loglog(x[conv], rel[conv], mk, ms=4, mfc="none", label=lab)[0]
        ax[0].plot(
            x[s.diverged], np.full(int(s.diverged.sum()), top), mk, ms=4, color=line.get_color()
        )
    ax[0].axvline(1.0, color="k", ls="--", lw=1, label="theoretical limit of each variant")
    ax[0].axhspan(2.0, 100.0, color="0.9", zorder=0)
    ax[0].text(0.105, 25.0, "band: diverged runs (Inf/NaN or loss grew)", fontsize=7)
    ax[0].text(0.105, 2e-16, "bottom edge: at L* to rounding (≤ 1e-16)", fontsize=7)
    ax[0].set(
        xlabel="lr / limit  (GD 2/λ, heavy ball 2(1+β)/λ, Nesterov 2(1+β)/((1+2β)λ), ÷(1−τ))",
        ylabel=f"(L − L*)/(L0 − L*) after {steps} steps",
        title="lr sweep: every variant diverges at its own limit",
        ylim=(5e-17, 100.0),
    )
    ax[0].legend(fontsize=7, loc="center left")
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
        ax[1].semilogy(h.loss - optimum, label=f"lr = {f:g} · 2/λmax")
    ax[1].set(xlabel="step", ylabel="L − L* (batch = all data)", title="just below vs above 2/λmax")
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
        "edge_brackets": {k: list(v.bracket_ratio) for k, v in sweeps.items()},
        "limits": {k: v.limit * lam for k, v in sweeps.items()},
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
    fin = np.isfinite(h.loss)
    # log10 on a linear axis: a log axis cannot place ticks near float64's 1.8e308
    ax[0].plot(np.flatnonzero(fin), np.log10(h.loss[fin]), label="loss (guard off), finite steps")
    ax[0].axhline(np.log10(np.finfo(float).max), color="k", lw=0.8, ls=":", label="float64 max")
    first_bad = int(np.flatnonzero(~fin)[0]) if (~fin).any() else -1
    if first_bad >= 0:
        ax[0].axvspan(
            first_bad, len(h.loss), color="0.9", label=f"loss = inf/NaN from step {first_bad}"
        )
    try:
        train(p, w0, SGD(lr=lr_bad), epochs=2000, batch_size=p.n, shuffle=False, lam_max=lam)
        msg, step = "", -1
    except NonFiniteError as err:
        msg, step = str(err), err.step
    ax[0].axvline(step, color="r", ls="--", lw=1.5, label=f"guard raises at step {step}")
    ax[0].set(
        xlabel="step", ylabel="log10(loss)", title=f"lr = {factor:g}/λmax: divergence to Inf/NaN"
    )
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
        "first_nonfinite_step": first_bad,
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
    # condition number 25 and a target 1000x below the start: even the full batch needs
    # more than a handful of steps, so the S(B) curve is resolved
    p = make_linear(4096, 8, scales=np.linspace(1.0, 5.0, 8), noise=1.0, seed=0)
    w0 = np.zeros(p.dim)
    ws = p.solution()
    l_star, l0 = p.loss(ws), p.loss(w0)
    frac = 1e-3
    target = l_star + frac * (l0 - l_star)
    w_t = ws + math.sqrt(frac) * (w0 - ws)  # on the segment, at the target loss
    exact = noise_scale(p, w_t)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # its SE is reported instead
        est = noise_scale_two_batch(p, w_t, 8, 512, draws=1000 if quick else 4000)
    bss = [2, 8, 32, 128, 512] if quick else [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    seeds = (0, 1) if quick else (0, 1, 2)
    st = batch_size_study(p, w0, bss, target_loss=target, seeds=seeds, max_steps=3000)
    lim = stability_limit(p)
    fig, ax = _figure(3)
    bb = np.geomspace(min(bss), max(bss), 100)
    ax[0].loglog(st.batch_sizes, st.steps, "o", label="measured (best lr per B, median)")
    ax[0].loglog(
        bb,
        st.s_min * (1 + st.b_crit / bb),
        "-",
        label=f"fit S_min(1+B_crit/B): B_crit={st.b_crit:.3g}",
    )
    ax[1].loglog(st.batch_sizes, st.examples, "o", label="measured")
    ax[1].loglog(bb, st.s_min * (bb + st.b_crit), "-", label="fit E_min(1+B/B_crit)")
    ax[2].loglog(st.batch_sizes, st.best_lr, "o", label="best lr of the grid")
    ax[2].loglog(bb, st.best_lr[0] * bb / st.batch_sizes[0], "--", label="linear scaling lr ∝ B")
    ax[2].axhline(lim, color="k", lw=1, label="2/λmax (stability limit)")
    ax[2].set_ylim(0.5 * st.best_lr.min(), 2 * lim)
    for a in ax:
        a.axvline(exact.b_simple, color="r", ls=":", label=f"B_simple={exact.b_simple:.3g}")
        a.axvline(exact.b_noise, color="m", ls="-.", label=f"B_noise={exact.b_noise:.3g}")
        a.set_xlabel("batch size B")
    ax[0].set(
        ylabel="steps to target (L − L* = 0.1 % of L0 − L*)",
        title=f"measured here: B_crit = {st.b_crit / exact.b_simple:.2f} × B_simple",
    )
    ax[1].set(ylabel="examples to target", title="examples grow beyond B_crit")
    ax[2].set(ylabel="learning rate", title="best lr ∝ B, then limited by 2/λmax")
    for a in ax:
        a.legend(fontsize=7)
    _save(fig, out, "batch_size", figs, dpi)

    # noise scale along training: ~30 snapshots, log-spaced in steps
    steps_total = 1500 if quick else 4000
    keep = set(np.unique(np.geomspace(1, steps_total, 30).astype(int)).tolist())
    snaps = [np.zeros(p.dim)]
    train(
        p,
        w0,
        SGD(lr=0.05 * lim),
        epochs=math.ceil(steps_total * 32 / p.n),
        batch_size=32,
        max_steps=steps_total,
        eval_full=False,
        callback=lambda k, w: snaps.append(w.copy()) if k + 1 in keep else None,
    )
    fig, ax = _figure(1, size=(6.5, 4.2))
    losses, ex, es, err, rel = [], [], [], [], []
    for w in snaps:
        losses.append(p.loss(w) - l_star)
        ex.append(noise_scale(p, w).b_simple)
        e = noise_scale_two_batch(p, w, 8, 512, draws=150 if quick else 600, seed=1, warn_rse=None)
        es.append(e.b_simple)
        err.append(e.b_simple_se)
        rel.append(e.relative_se)
    losses, es, err, rel = map(np.asarray, (losses, es, err, rel))
    ok = rel <= 0.25
    ax[0].loglog(losses, ex, "-", color="k", label="exact tr(Σ)/|G|²")
    ax[0].errorbar(losses[ok], es[ok], yerr=err[ok], fmt="s", ms=4, label="two-batch (8, 512) ± SE")
    ax[0].errorbar(
        losses[~ok],
        np.abs(es[~ok]),
        yerr=np.minimum(err[~ok], 0.99 * np.abs(es[~ok])),
        fmt="s",
        ms=4,
        mfc="none",
        color="C3",
        label="same, SE > 25 % (warned: unreliable)",
    )
    ax[0].set(
        xlabel="excess loss L − L*",
        ylabel="B_simple",
        title=f"noise scale grows as the loss falls ({len(snaps)} snapshots)",
    )
    ax[0].invert_xaxis()
    ax[0].legend(fontsize=8)
    _save(fig, out, "noise_scale", figs, dpi)
    num["batch"] = {
        "target_loss": target,
        "b_simple_exact": exact.b_simple,
        "b_noise_exact": exact.b_noise,
        "b_simple_two_batch": est.b_simple,
        "b_simple_two_batch_se": est.b_simple_se,
        "b_simple_ratio": est.b_simple / exact.b_simple,
        "b_crit_fit": st.b_crit,
        "s_min_fit": st.s_min,
        "batch_sizes": [int(b) for b in st.batch_sizes],
        "steps": [float(s) for s in st.steps],
        "best_lr_over_limit": [float(v) for v in st.best_lr / lim],
        "snapshots": len(snaps),
        "snapshots_unreliable": int((~ok).sum()),
        "largest_rel_se_near_optimum": float(rel[-1]),
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
    ax[1].semilogy(k, fast, "o", ms=9, mfc="none", label=f"O(N) pass ({(t1 - t0) * 1e3:.2f} ms)")
    ax[1].semilogy(k, brute, "x", ms=9, label=f"loop over examples ({(t2 - t1) * 1e3:.1f} ms)")
    ax[1].set(
        xticks=k,
        xticklabels=["a", "b", "c"],
        xlim=(-0.5, 2.5),
        xlabel="parameter",
        ylabel="(1/N) Σ_i (∂ℓ_i/∂w)²",
        title=f"E[g_i²]: O(N) = loop to {float(np.max(np.abs(fast - brute) / np.abs(brute))):.0e}",
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
    styles = {"adam_l2": "-", "adamw": "-", "sgd_l2": "-", "sgd_decoupled": ":"}
    for name, dist in c.dist_to_ridge.items():
        ax[1].semilogy(np.arange(1, len(dist) + 1), dist, styles[name], lw=1.5, label=name)
    ax[1].set(
        xscale="log",
        xlabel="step",
        ylabel="|w_t − ridge| / |ridge|",
        title="distance to the ridge solution",
    )
    ax[1].legend(fontsize=8)
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
    groups = _identical({"rows in the batch": st.rows_seen, **st.rows_changed})
    for (names, v), ls in zip(groups, ("-", "--", ":", "-.")):
        ax[0].plot(v, ls, lw=2 if len(names) > 1 else 1.2, label=" = ".join(names))
    ax[0].set(xlabel="step", ylabel="rows changed", title=f"{st.num_rows}-row embedding, B=32")
    ax[0].legend(fontsize=7)
    for (names, v), ls in zip(_identical(st.rare_trajectory), ("-", "--", ":", "-.", (0, (1, 3)))):
        ax[1].plot(v, ls=ls, lw=1.5, label=" = ".join(names))
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


def _machine() -> dict[str, Any]:
    import os
    import platform

    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.system(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "load_1min_before": float(load[0]),
    }


def _delayed_edge(p: Any, w0: Any, lam: float, tau: int, steps: int) -> tuple[float, float]:
    """Bisect the lr·λmax at which delayed GD (staleness tau) stops converging."""
    lo, hi = 0.05, 2.2
    l0 = p.loss(w0)
    for _ in range(12):
        mid = math.sqrt(lo * hi)
        curve = delayed_sgd(p, w0, mid / lam, tau=tau, steps=steps)
        if curve[-1] < l0 and np.isfinite(curve[-1]):
            lo = mid
        else:
            hi = mid
    return lo, hi


def _hogwild(out: Path, quick: bool, num: dict, figs: dict, dpi: int) -> None:
    p = make_linear(2000, 20, seed=0)
    lam = lambda_max(p)
    w0 = np.zeros(p.dim)
    l_star = p.loss(p.solution())
    opt = SGD(lr=0.2 / lam)
    steps = 1500 if quick else 5000
    counts = (1, 2, 4) if quick else (1, 2, 4, 8)
    runs = {
        k: hogwild(p, w0, opt, workers=k, steps=steps, batch_size=8, timeout=120) for k in counts
    }
    sync = sync_sgd(p, w0, opt, steps=2 * steps, batch_size=8, trace_every=max(1, steps // 50))
    torch_run = None
    try:
        import torch  # noqa: F401

        torch_run = hogwild(
            p, w0, opt, workers=2, steps=steps, batch_size=8, backend="torch", timeout=120
        )
    except ImportError:
        pass
    fig, ax = _figure(2, 2, size=(11.0, 8.0))
    ax = ax.ravel()
    ax[0].plot(counts, [runs[k].updates_per_s for k in counts], "o-", label="Hogwild (NumPy)")
    if torch_run is not None:
        ax[0].plot([2], [torch_run.updates_per_s], "s", label="Hogwild (torch, 2 workers)")
    ax[0].axhline(sync.updates_per_s, color="k", ls="--", label="synchronous SGD (1 process)")
    ax[0].set(
        xlabel="worker processes",
        ylabel="updates / s (all workers)",
        xticks=list(counts),
        title=f"throughput on {_machine()['cpus']} CPUs (shared machine)",
    )
    ax[0].legend(fontsize=8)
    h2 = runs[2]
    for r, lab in (
        (sync, "synchronous SGD"),
        (h2, "Hogwild, 2 workers"),
        (runs[counts[-1]], f"Hogwild, {counts[-1]} workers"),
    ):
        ax[1].semilogy(r.trace_time, r.trace_loss - l_star, ".-", ms=3, label=lab)
        ax[2].semilogy(r.trace_updates, r.trace_loss - l_star, ".-", ms=3, label=lab)
    ax[1].set(xlabel="wall time (s)", ylabel="L − L*", title="loss against wall time")
    ax[2].set(
        xlabel="total updates (all workers)",
        ylabel="L − L*",
        title="loss against updates: asynchrony costs little here",
    )
    ax[1].legend(fontsize=8)
    ax[2].legend(fontsize=8)
    # staleness: delayed gradient descent, measured edge vs Levin & May
    ps = make_linear(300, 3, seed=0)
    lam_s = lambda_max(ps)
    taus = [0, 1, 2, 4, 8] if quick else [0, 1, 2, 3, 4, 6, 8, 12, 16]
    edges = [_delayed_edge(ps, np.zeros(3), lam_s, t, 300 if quick else 600) for t in taus]
    tt = np.arange(0, max(taus) + 1)
    ax[3].plot(tt, [delayed_stability_factor(int(t)) for t in tt], "-", label="2cos(τπ/(2τ+1))")
    ax[3].errorbar(
        taus,
        [math.sqrt(a * b) for a, b in edges],
        yerr=np.array(
            [[math.sqrt(a * b) - a for a, b in edges], [b - math.sqrt(a * b) for a, b in edges]]
        ),
        fmt="o",
        label="measured edge (bisection bracket)",
    )
    ax[3].set(
        xlabel="staleness τ (gradient τ steps old)",
        ylabel="largest stable lr · λmax",
        title="stale gradients shrink the stable lr ≈ π/(2τ)",
    )
    ax[3].legend(fontsize=8)
    _save(fig, out, "hogwild", figs, dpi)

    # sparsity: conflicts of dense vs sparse updates
    e_uni = make_embedding(20000, 5000, 4, zipf=0.0, seed=0)
    e_zipf = make_embedding(20000, 5000, 4, zipf=1.3, seed=0)
    sp_steps = 1000 if quick else 4000
    tables = {"sparse, Zipf rows": e_zipf, "sparse, uniform rows": e_uni}
    sparse_runs = {
        "dense (linear, 20 params)": hogwild(
            p, w0, opt, workers=2, steps=sp_steps, batch_size=2, timeout=120
        ),
        **{
            name: hogwild(
                e,
                np.zeros(e.shape),
                SGD(lr=0.5, lazy=True),
                workers=2,
                steps=sp_steps,
                batch_size=2,
                timeout=120,
            )
            for name, e in tables.items()
        },
    }
    sync_sp = sync_sgd(
        e_uni,
        np.zeros(e_uni.shape),
        SGD(lr=0.5, lazy=True),
        steps=2 * sp_steps,
        batch_size=2,
        trace_every=max(1, sp_steps // 25),
    )
    fig, ax = _figure(2)
    names = list(sparse_runs)
    per = [sparse_runs[k].conflicts_per_overlap for k in names]
    ax[0].bar(range(3), np.nan_to_num(per), 0.5)
    for i, k in enumerate(names):
        r = sparse_runs[k]
        ax[0].text(
            i,
            np.nan_to_num(per[i]),
            f"{per[i]:.1%} of {r.overlap_fraction:.1%}\noverlapping",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax[0].set(
        xticks=range(3),
        xticklabels=[n.replace(", ", ",\n") for n in names],
        ylabel="conflicts per overlapping update",
        ylim=(0, 1.25),
        title="Hogwild's premise: sparse updates rarely collide (2 workers, B=2)",
    )
    for r, lab in (
        (sync_sp, "synchronous SGD"),
        (sparse_runs["sparse, uniform rows"], "Hogwild, 2 workers"),
    ):
        ax[1].semilogy(r.trace_updates, r.trace_loss, ".-", ms=3, label=lab)
    ax[1].set(xlabel="total updates", ylabel="loss", title="5000-row embedding, uniform rows")
    ax[1].legend()
    _save(fig, out, "hogwild_sparsity", figs, dpi)
    num["hogwild"] = {
        "machine": _machine(),
        "steps_per_worker": steps,
        "updates_per_s": {k: runs[k].updates_per_s for k in counts},
        "updates_per_s_sync": sync.updates_per_s,
        "updates_per_s_torch_2": None if torch_run is None else torch_run.updates_per_s,
        "staleness_mean": {k: runs[k].staleness_mean for k in counts},
        "staleness_max": {k: runs[k].staleness_max for k in counts},
        "excess_loss_final": {k: runs[k].trace_loss[-1] - l_star for k in counts},
        "excess_loss_sync": float(sync.trace_loss[-1] - l_star),
        "conflicts": {k: v.conflict_fraction for k, v in sparse_runs.items()},
        "overlaps": {k: v.overlap_fraction for k, v in sparse_runs.items()},
        "conflicts_per_overlap": {k: v.conflicts_per_overlap for k, v in sparse_runs.items()},
        "sparse_loss_hogwild": float(sparse_runs["sparse, uniform rows"].trace_loss[-1]),
        "sparse_loss_sync": float(sync_sp.trace_loss[-1]),
        "delayed_taus": taus,
        "delayed_edges": [list(e) for e in edges],
        "delayed_theory": [delayed_stability_factor(int(t)) for t in taus],
    }


def _saturation(out: Path, quick: bool, num: dict, figs: dict, dpi: int) -> None:
    st = saturation_study(
        n=256 if quick else 512, hidden=16 if quick else 32, steps=100 if quick else 300
    )
    fig, ax = _figure(3, size=(15.0, 4.2))
    z = np.linspace(0.0, 20.0, 4001)
    for act, color in (("tanh", "C0"), ("sigmoid", "C1")):
        for dt, ls in (("float16", "-"), ("float32", "--")):
            zz = z.astype(dt)
            d = _dact(act, zz, _act(act, zz)).astype(float)
            keep = d > 0
            ax[0].semilogy(z[keep], d[keep], ls, color=color, label=f"{act}′, {dt}")
            thr = st.thresholds[act][dt]
            ax[0].axvline(thr, color=color, ls=ls, lw=0.8)
            ax[0].text(
                thr, 1e-14 if dt == "float16" else 1e-16, f" {thr:.3g}", color=color, fontsize=7
            )
    ax[0].set(
        xlabel="pre-activation z",
        ylabel="derivative (from the rounded output)",
        title="exactly 0 right of each vertical line",
        ylim=(1e-17, 2.0),
    )
    ax[0].legend(fontsize=7)
    names = list(st.loss)
    k = np.arange(len(names))
    ax[1].bar(
        k - 0.2, [st.dead_start[n] for n in names], 0.4, label="zero derivative on every example"
    )
    ax[1].bar(k + 0.2, [st.frozen[n] for n in names], 0.4, label="weights never changed")
    ax[1].set(
        xticks=k,
        xticklabels=names,
        ylabel=f"hidden units (of {st.hidden})",
        title=f"dead units after {len(st.loss[names[0]]) - 1} steps",
    )
    ax[1].tick_params(axis="x", labelsize=7, labelrotation=25)
    for lab in ax[1].get_xticklabels():
        lab.set_horizontalalignment("right")
    ax[1].legend(fontsize=7)
    for n in names:
        ax[2].semilogy(st.loss[n], label=n)
    ax[2].set(xlabel="step", ylabel="float64 loss", title="the loss: live units compensate")
    ax[2].legend(fontsize=7)
    _save(fig, out, "saturation", figs, dpi)
    num["saturation"] = {
        "thresholds": st.thresholds,
        "hidden": st.hidden,
        "dead_start": st.dead_start,
        "dead_end": st.dead_end,
        "frozen": st.frozen,
        "skipped": st.skipped,
        "unused_unchanged": st.unused_unchanged,
        "final_loss": {n: float(v[-1]) for n, v in st.loss.items()},
    }


def _faults(out: Path, quick: bool, num: dict, figs: dict, dpi: int) -> None:
    msgs = {}

    def catch(name: str, fn: Any) -> None:
        try:
            with np.errstate(all="ignore"):
                fn()
            msgs[name] = ""
        except NonFiniteError as err:
            msgs[name] = str(err)

    X = np.column_stack([np.ones(6), [0.0, 1.0, 2.0, 0.0, 1.0, 2.0]])
    y = np.array([1.0, 2.0, 3.0, 1.0, 0.0, 2.0])
    catch(
        "log(0)",
        lambda: train(
            PoissonRegression(X, y), np.array([0.0, 1.0]), SGD(lr=0.01), batch_size=6, shuffle=False
        ),
    )
    y0 = np.array([1.0, 0.0, 2.0, 3.0, 0.0, 1.0])
    catch(
        "0/0",
        lambda: train(
            RelativeErrorRegression(X, y0), np.zeros(2), SGD(lr=0.01), batch_size=6, shuffle=False
        ),
    )
    g = make_gaussian_peak(50)
    catch("c = 0", lambda: train(g, np.array([2.0, 0.3, 0.0]), SGD(lr=0.01), batch_size=50))
    p = make_linear(1000, 5, seed=0)
    lam = lambda_max(p)
    catch(
        "scale collapse",
        lambda: train(
            p.with_dtype(np.float16),
            np.zeros(5, dtype=np.float32),
            SGD(lr=3.0 / lam),
            epochs=400,
            batch_size=p.n,
            shuffle=False,
            scaler=GradScaler(),
        ),
    )
    with np.errstate(all="ignore"):
        free = train(
            p.with_dtype(np.float16),
            np.zeros(5, dtype=np.float32),
            SGD(lr=3.0 / lam),
            epochs=400,
            batch_size=p.n,
            shuffle=False,
            scaler=GradScaler(),
            guard=False,
            eval_full=False,
        )
    num["faults"] = {
        "messages": msgs,
        "unguarded_skipped": int(free.skipped.sum()),
        "unguarded_final_scale": float(free.loss_scale[-1]),
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
        "- lr sweep, edge bracketed by bisection (largest converging, smallest diverging lr, "
        "in units of each variant's limit): "
        + "; ".join(
            f"{k} (limit {lr['limits'][k]:.4g}/λmax): [{a:.4f}, {b:.4f}]"
            for k, (a, b) in lr["edge_brackets"].items()
        )
        + ". The bracket width is the sweep's resolution (bisection to 0.5 %), not a "
        "property of the problem.",
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
        f"- lr = {gd['lr_factor']:g}/λmax: the loss is Inf/NaN from step "
        f"{gd['first_nonfinite_step']}; `{gd['message']}`",
        f"- NaN in X[417, 2]: `{gd['data_message']}`",
        "",
        "![](nan_guard.png)",
        "",
        "## Batch size and gradient noise scale",
        "",
        f"- At the target loss {bt['target_loss']:.4g}: exact B_simple = "
        f"{bt['b_simple_exact']:.4g}; two-batch estimate = {bt['b_simple_two_batch']:.4g} "
        f"(ratio {bt['b_simple_ratio']:.3f}).",
        f"  Its standard error is {bt['b_simple_two_batch_se']:.3g}.",
        f"- Fit S = S_min(1 + B_crit/B): S_min = {bt['s_min_fit']:.3g}, "
        f"B_crit = {bt['b_crit_fit']:.4g}, measured here "
        f"{bt['b_crit_fit'] / bt['b_simple_exact']:.2f} × B_simple and "
        f"{bt['b_crit_fit'] / bt['b_noise_exact']:.2f} × B_noise (Hessian-weighted, "
        f"{bt['b_noise_exact']:.4g}); the ratio depends on the problem and the target: "
        "it is a measurement, not a rule.",
        f"- B = {bt['batch_sizes']}: steps {_fmt(bt['steps'])}; best lr in units of 2/λmax "
        f"{_fmt(bt['best_lr_over_limit'])}.",
        "",
        f"- Noise scale along training: {bt['snapshots']} snapshots; "
        f"{bt['snapshots_unreliable']} two-batch estimates have a standard error above 25 % "
        f"(hollow markers; the estimator warns); at the last snapshot, nearest the optimum, "
        f"the relative SE is {bt['largest_rel_se_near_optimum']:.0%}.",
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
        *_report_new(num),
    ]
    return "\n".join(lines)


def _report_new(num: dict) -> list[str]:
    hw, sa, fa = num["hogwild"], num["saturation"], num["faults"]
    m = hw["machine"]
    ups = ", ".join(f"{k}: {v:.0f}" for k, v in hw["updates_per_s"].items())
    stale = ", ".join(
        f"{k}: {hw['staleness_mean'][k]:.2f} (max {hw['staleness_max'][k]})"
        for k in hw["staleness_mean"]
    )
    exl = ", ".join(f"{k}: {v:.3g}" for k, v in hw["excess_loss_final"].items())
    conf = "; ".join(
        f"{k} {v:.2%} of all updates, {hw['conflicts_per_overlap'][k]:.1%} of the "
        f"{hw['overlaps'][k]:.1%} that overlapped another"
        for k, v in hw["conflicts"].items()
    )
    edges = ", ".join(
        f"τ={t}: [{a:.3f}, {b:.3f}] (theory {th:.3f})"
        for t, (a, b), th in zip(hw["delayed_taus"], hw["delayed_edges"], hw["delayed_theory"])
    )
    torch_ups = hw["updates_per_s_torch_2"]
    th = sa["thresholds"]
    dead = ", ".join(f"{k}: {v}" for k, v in sa["dead_end"].items())
    frozen = ", ".join(f"{k}: {v}" for k, v in sa["frozen"].items())
    fl = ", ".join(f"{k}: {v:.3g}" for k, v in sa["final_loss"].items())
    msgs = fa["messages"]
    return [
        "## Asynchronous SGD on shared parameters (Hogwild)",
        "",
        f"- Machine: {m['system']} {m['machine']}, {m['cpus']} CPUs, Python {m['python']}, "
        f"NumPy {m['numpy']}; 1-min load average {m['load_1min_before']:.2f} before the run "
        "(other processes share the CPUs, so timings are noisy; compare within this run).",
        f"- Linear regression (d = 20, B = 8), {hw['steps_per_worker']} updates per worker: "
        f"updates/s by workers {ups}; synchronous single process "
        f"{hw['updates_per_s_sync']:.0f}"
        + (f"; torch back end, 2 workers {torch_ups:.0f}" if torch_ups else "")
        + ".",
        f"- Staleness (updates by others between a worker's read and write), mean by workers: "
        f"{stale}. Final L − L*: {exl}; synchronous SGD with the same total updates as 2 "
        f"workers: {hw['excess_loss_sync']:.3g}.",
        f"- Conflicts (an update overwritten by a concurrent one, 2 workers, B = 2): {conf}. "
        f"Embedding, uniform rows: final loss Hogwild {hw['sparse_loss_hogwild']:.4g} vs "
        f"synchronous {hw['sparse_loss_sync']:.4g} for the same number of updates.",
        f"- Staleness model (gradient τ steps old, full batch): measured stable lr·λmax "
        f"bracket {edges}; theory 2cos(τπ/(2τ+1)) (Levin & May 1976).",
        "",
        "![](hogwild.png) ![](hogwild_sparsity.png)",
        "",
        "## Saturation in float16",
        "",
        f"- The derivative computed from the rounded output is exactly 0 beyond z = "
        f"{th['tanh']['float16']:.4g} (tanh) and {th['sigmoid']['float16']:.4g} (sigmoid) in "
        f"float16; {th['tanh']['float32']:.4g} and {th['sigmoid']['float32']:.4g} in float32.",
        f"- {sa['hidden']} hidden units with biases spread over [0, 12]: units with a zero "
        f"derivative on every example at the end: {dead}. Units whose weights never changed: "
        f"{frozen}.",
        f"- Final float64 loss: {fl}. The parameter off the loss path is unchanged in every "
        f"variant: {all(sa['unused_unchanged'].values())}.",
        "",
        "![](saturation.png)",
        "",
        "## Faulty losses and a collapsing loss scale",
        "",
        *[f"- {k}: `{v}`" for k, v in msgs.items()],
        f"- Without the guard the same scaled run skips {fa['unguarded_skipped']} of 400 steps "
        f"and ends with scale {fa['unguarded_final_scale']:.3g}, silently.",
        "",
    ]


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
        _saturation,
        _faults,
        _hogwild,
    ):
        section(out, quick, num, figs, dpi)
    seconds = time.perf_counter() - t0
    report = out / "report.md"
    report.write_text(_report(num, figs, quick, seconds), encoding="utf-8")
    return {"report": str(report), "figures": figs, "numbers": num, "seconds": seconds}
