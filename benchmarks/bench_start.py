"""Start-point benchmark: success rate and time of four ways to fit the same synthetic spectra.

Methods, each fitting every spectrum of :mod:`benchmarks.synth` (``n`` Gaussians, plus a linear
baseline where the spectrum has one):

``auto``
    ``peakfit.fit_gaussians(x, y, n, baseline=...)``: the default robust start.
``matlab``
    The same with ``start='matlab'`` (MATLAB's ``gaussnstart``; the baseline, when present, is
    first fitted to the edges and subtracted).
``truth``
    The same started from the true coefficients: the reference for what the data allow.
``scipy``
    ``scipy.signal.find_peaks`` (the ``n`` most prominent maxima of the data less an edge-fitted
    baseline, widths from ``peak_widths`` at half prominence) as the start of
    ``scipy.optimize.curve_fit`` (default Levenberg-Marquardt) on the sorted data.

Success: every fitted centre within ``0.1 c`` of the truth (:func:`benchmarks.synth.success`);
an exception counts as a failure. Time: wall time per fit (mean, ms), start estimation included.

A separate speed check (``--speed``, on by default) times, on one fixed 4-peak spectrum of 1000
points, ``fit_gaussians`` with the default start against ``curve_fit`` given a good start (the
truth perturbed by 3 %), each as the best of several repeats, interleaved.

Output: one JSON object per line (``{"kind": "rate", ...}`` per method and subgroup,
``{"kind": "speed", ...}``) to ``--json`` (or stdout with ``--json -``), and a readable table.

Usage::

    python benchmarks/bench_start.py --count 2000 --seed 1
    python benchmarks/bench_start.py --count 300 --fixed overlap=close --fixed size=m1000
    python benchmarks/bench_start.py --count 500 --methods auto,truth --json results.jsonl
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import timeit
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import scipy  # noqa: E402
from scipy.optimize import curve_fit  # noqa: E402
from scipy.signal import find_peaks, peak_widths  # noqa: E402

import peakfit  # noqa: E402
from benchmarks.synth import FACTORS, Spectrum, generate, parse_fixed, success  # noqa: E402

METHODS = ("auto", "matlab", "truth", "scipy")
_FWHM = 2.0 * np.sqrt(np.log(2.0))


# ----------------------------------------------------------------------------- methods
def _gauss_sum(x: np.ndarray, *p: float) -> np.ndarray:
    n3 = len(p) - (len(p) % 3)
    y = np.zeros_like(x)
    for i in range(0, n3, 3):
        y = y + p[i] * np.exp(-(((x - p[i + 1]) / p[i + 2]) ** 2))
    return y


#: Polynomial degree of each baseline kind (``d0 + d1 x + d2 x^2``, lowest power first).
BASELINE_DEGREE = {"none": -1, "constant": 0, "linear": 1, "quadratic": 2}


def gauss_poly(n: int, baseline: str) -> Callable[..., np.ndarray]:
    """``curve_fit`` model of ``n`` Gaussians plus a polynomial baseline (coefficients last)."""
    nb = BASELINE_DEGREE[baseline] + 1

    def f(x: np.ndarray, *p: float) -> np.ndarray:
        y = _gauss_sum(x, *p[: 3 * n])
        for j in range(nb):
            y = y + p[3 * n + j] * x**j
        return y

    return f


def scipy_start(x: np.ndarray, y: np.ndarray, n: int, baseline: str) -> np.ndarray:
    """A typical SciPy start: find_peaks on the data less an edge-fitted polynomial baseline
    (degree of ``baseline``: none, constant, linear or quadratic); sorted x."""
    m = x.size
    coef: list[float] = []
    yb = y
    deg = BASELINE_DEGREE[baseline]
    if deg >= 0:
        e = max(2, m // 10)
        xe = np.r_[x[:e], x[-e:]]
        ye = np.r_[y[:e], y[-e:]]
        c_hi = np.polyfit(xe, ye, deg)
        coef = [float(v) for v in c_hi[::-1]]
        yb = y - np.polyval(c_hi, x)
    pk, props = find_peaks(yb, prominence=0)
    order = np.argsort(props["prominences"])[::-1][:n]
    pk = pk[order]
    p: list[float] = []
    if pk.size:
        _, _, left, right = peak_widths(yb, pk, rel_height=0.5)
        idx = np.arange(m)
        xl = np.interp(left, idx, x)
        xr = np.interp(right, idx, x)
        for i, k in enumerate(pk):
            p += [float(yb[k]), float(x[k]), float(max(xr[i] - xl[i], 1e-12 * np.ptp(x)) / _FWHM)]
    missing = n - pk.size
    if missing:
        centres = np.linspace(x[0], x[-1], missing + 2)[1:-1]
        for b in centres:
            p += [float(np.max(yb)) / 2, float(b), float(np.ptp(x) / (3 * n))]
    return np.array(p + coef)


def fit_scipy(s: Spectrum) -> np.ndarray:
    """find_peaks + curve_fit; returns the fitted centres."""
    o = np.argsort(s.x, kind="stable")
    x, y = s.x[o], s.y[o]
    p0 = scipy_start(x, y, s.n, s.baseline)
    f = gauss_poly(s.n, s.baseline)
    popt, _ = curve_fit(f, x, y, p0=p0)
    return np.asarray(popt[1 : 3 * s.n : 3])


def fit_peakfit(s: Spectrum, method: str) -> np.ndarray:
    start: Any = s.params if method == "truth" else method
    r = peakfit.fit_gaussians(s.x, s.y, s.n, baseline=s.baseline, start=start)
    return np.asarray(r.means)


RUNNERS: dict[str, Callable[[Spectrum], np.ndarray]] = {
    "auto": lambda s: fit_peakfit(s, "auto"),
    "matlab": lambda s: fit_peakfit(s, "matlab"),
    "truth": lambda s: fit_peakfit(s, "truth"),
    "scipy": fit_scipy,
}


# ----------------------------------------------------------------------------- running
def run_rates(
    count: int, seed: int, n: int, fixed: dict[str, str], methods: tuple[str, ...],
    progress: bool = False,
) -> tuple[list[Spectrum], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Fit every spectrum with every method; returns the spectra, success and seconds per fit."""
    specs = generate(count, seed=seed, n=n, fixed=fixed)
    ok = {me: np.zeros(count, dtype=bool) for me in methods}
    secs = {me: np.zeros(count) for me in methods}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, s in enumerate(specs):
            for me in methods:
                t0 = time.perf_counter()
                try:
                    means = RUNNERS[me](s)
                    good = success(means, s.truth)
                except Exception:  # a crash is a failed fit
                    good = False
                secs[me][i] = time.perf_counter() - t0
                ok[me][i] = good
            if progress and (i + 1) % 100 == 0:
                print(f"  {i + 1}/{count}", file=sys.stderr)
    return specs, ok, secs


def rate_groups(
    labels: list[dict[str, Any]], keys: list[tuple[str, str]], ok: dict[str, np.ndarray],
    secs: dict[str, np.ndarray],
) -> list[tuple[dict[str, Any], np.ndarray]]:
    """One rate record (and the row indices) per ``(factor, level)`` key that has spectra.

    ``labels[i]`` are spectrum ``i``'s factor levels; ``("all", "all")`` covers every spectrum.
    A record holds each method's success share (``ok``) and mean time in ms (``secs``).
    Shared by this benchmark and ``bench_hard.py``.
    """
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, lab in enumerate(labels):
        groups[("all", "all")].append(i)
        for f, v in lab.items():
            groups[(f, str(v))].append(i)
    out = []
    for key in keys:
        idx = np.array(groups.get(key, []), dtype=int)
        if idx.size == 0:
            continue
        rec: dict[str, Any] = {"kind": "rate", "factor": key[0], "level": key[1],
                               "n": int(idx.size)}
        for me in ok:
            rec[f"{me}_rate"] = float(ok[me][idx].mean())
        for me in secs:
            rec[f"{me}_ms"] = float(secs[me][idx].mean() * 1e3)
        out.append((rec, idx))
    return out


def summarise(
    specs: list[Spectrum], ok: dict[str, np.ndarray], secs: dict[str, np.ndarray]
) -> list[dict[str, Any]]:
    """Rate records: overall, then every factor level present."""
    keys = [("all", "all")] + [(f, lv) for f in FACTORS for lv in FACTORS[f]]
    out = []
    for rec, idx in rate_groups([s.labels for s in specs], keys, ok, secs):
        if "auto" in ok and "truth" in ok:
            rec["auto_minus_truth_pp"] = 100.0 * (rec["auto_rate"] - rec["truth_rate"])
            rec["lost"] = int((ok["truth"][idx] & ~ok["auto"][idx]).sum())
            rec["gained"] = int((ok["auto"][idx] & ~ok["truth"][idx]).sum())
        out.append(rec)
    return out


def speed_check(repeats: int = 7, number: int = 20) -> dict[str, Any]:
    """Best-of-repeats time of one 4-peak, 1000-point fit: auto start vs curve_fit(good p0)."""
    rng = np.random.default_rng(0)
    x = np.linspace(0.0, 100.0, 1000)
    truth = np.array([5.0, 20.0, 4.0, 3.0, 35.0, 6.0, 4.0, 60.0, 5.0, 2.0, 80.0, 7.0])
    y = _gauss_sum(x, *truth) + 0.05 * rng.standard_normal(x.size)
    p0 = truth * 1.03
    fns = {
        "curve_fit_good_p0": lambda: curve_fit(_gauss_sum, x, y, p0=p0),
        "fit_gaussians_auto": lambda: peakfit.fit_gaussians(x, y, 4),
        "fit_gaussians_good_p0": lambda: peakfit.fit_gaussians(x, y, 4, start=p0),
    }
    best = {k: np.inf for k in fns}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(repeats):  # interleaved, so load changes hit all alike
            for k, fn in fns.items():
                best[k] = min(best[k], timeit.timeit(fn, number=number) / number)
    r = peakfit.fit_gaussians(x, y, 4)
    rec: dict[str, Any] = {"kind": "speed", "m": 1000, "n": 4}
    rec.update({f"{k}_ms": v * 1e3 for k, v in best.items()})
    rec["auto_over_curve_fit"] = best["fit_gaussians_auto"] / best["curve_fit_good_p0"]
    rec["auto_success"] = success(r.means, truth.reshape(4, 3))
    return rec


def table(records: list[dict[str, Any]], methods: tuple[str, ...]) -> str:
    head = f"{'subgroup':22s} {'n':>5s}  " + "  ".join(f"{me:>15s}" for me in methods)
    has_gap = "auto" in methods and "truth" in methods
    if has_gap:
        head += f"  {'auto-truth':>10s}"
    lines = [head, "-" * len(head)]
    for r in records:
        if r["kind"] != "rate":
            continue
        name = "all" if r["factor"] == "all" else f"{r['factor']}={r['level']}"
        cells = "  ".join(
            f"{100 * r[me + '_rate']:6.1f}% {r[me + '_ms']:5.1f}ms" for me in methods
        )
        line = f"{name:22s} {r['n']:5d}  {cells}"
        if has_gap:
            flag = " <" if r["auto_minus_truth_pp"] < -1.0 - 1e-9 else ""
            line += f"  {r['auto_minus_truth_pp']:+8.2f}pp{flag}"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=1000, help="spectra (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    ap.add_argument("--n", type=int, default=4, help="peaks per spectrum (default 4)")
    ap.add_argument("--fixed", action="append", default=[], metavar="FACTOR=LEVEL",
                    help="restrict to a subgroup, e.g. --fixed overlap=close (repeatable)")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help=f"comma-separated subset of {','.join(METHODS)}")
    ap.add_argument("--json", default=None, metavar="PATH",
                    help="write JSON lines here ('-' for stdout)")
    ap.add_argument("--no-speed", action="store_true", help="skip the single-fit speed check")
    ap.add_argument("--progress", action="store_true", help="progress on stderr")
    args = ap.parse_args(argv)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    bad = set(methods) - set(METHODS)
    if bad:
        ap.error(f"unknown method(s) {sorted(bad)}; choose from {METHODS}")
    fixed = parse_fixed(args.fixed)

    t0 = time.perf_counter()
    specs, ok, secs = run_rates(args.count, args.seed, args.n, fixed, methods, args.progress)
    records = summarise(specs, ok, secs)
    meta = {
        "kind": "meta", "count": args.count, "seed": args.seed, "n": args.n, "fixed": fixed,
        "methods": list(methods), "seconds": round(time.perf_counter() - t0, 2),
        "python": platform.python_version(), "numpy": np.__version__,
        "scipy": scipy.__version__, "peakfit": peakfit.__version__,
        "machine": platform.machine(), "processor": platform.processor() or platform.system(),
        "command": "python benchmarks/bench_start.py " + " ".join(argv or sys.argv[1:]),
    }
    out = [meta, *records]
    if not args.no_speed:
        out.append(speed_check())
    lines = [json.dumps(r) for r in out]
    if args.json == "-":
        print("\n".join(lines))
    elif args.json:
        Path(args.json).write_text("\n".join(lines) + "\n")
    print(table(records, methods))
    if not args.no_speed:
        sp = out[-1]
        print(
            f"\nspeed (4 peaks, m=1000, best of 7): fit_gaussians auto start "
            f"{sp['fit_gaussians_auto_ms']:.2f} ms, from a good start "
            f"{sp['fit_gaussians_good_p0_ms']:.2f} ms; curve_fit from a good start "
            f"{sp['curve_fit_good_p0_ms']:.2f} ms (ratio {sp['auto_over_curve_fit']:.2f})"
        )
    print(f"({meta['seconds']} s; {meta['command']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
