"""Single-spectrum speed: peakfit vs scipy ``curve_fit`` vs lmfit on the same 4-peak spectra.

Each method fits the same spectra (4 Gaussians, m points, noise 1 % of the tallest peak). SciPy
and lmfit get a *good* start (truth perturbed by 3 %); peakfit is timed twice: with its own start
estimation included (``start='auto'``, the default) and from the same good start. Success means
every fitted centre within 0.1·c of the truth.

Prints one JSON line per method (``--json``) or a table.

Usage::

    python benchmarks/bench_single.py --spectra 200 --points 1000
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings

import numpy as np
from scipy.optimize import curve_fit

import peakfit
from peakfit.models import GaussianModel


def make_spectra(count: int, m: int, seed: int = 0):
    """Deterministic 4-peak spectra with moderate overlap; returns x, Y, truth (count, 12)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 100.0, m)
    model = GaussianModel(4)
    truth = np.empty((count, 12))
    for s in range(count):
        c = rng.uniform(3.0, 6.0, 4)
        b = np.sort(rng.uniform(15, 85, 4))
        while np.any(np.diff(b) < 1.6 * np.maximum(c[:-1], c[1:])):
            b = np.sort(rng.uniform(15, 85, 4))
        a = rng.uniform(1.0, 3.0, 4)
        truth[s, 0::3], truth[s, 1::3], truth[s, 2::3] = a, b, c
    Y = model.evaluate(x, truth)
    Y += rng.normal(0.0, 0.01, Y.shape) * Y.max(axis=1, keepdims=True)
    return x, Y, truth


def success(means: np.ndarray, truth: np.ndarray) -> bool:
    b = truth[1::3]
    c = truth[2::3]
    o = np.argsort(b)
    m = np.sort(np.asarray(means))
    return bool(m.size == b.size and np.all(np.abs(m - b[o]) <= 0.1 * c[o]))


def gauss4(x, *p):
    p = np.asarray(p)
    return sum(p[i] * np.exp(-(((x - p[i + 1]) / p[i + 2]) ** 2)) for i in range(0, 12, 3))


def run(args) -> list[dict]:
    x, Y, truth = make_spectra(args.spectra, args.points, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    p0s = truth * (1 + 0.03 * rng.standard_normal(truth.shape))
    out = []

    def bench(name, fn, count):
        ok = 0
        try:  # warm-up, untimed: imports, compiled-kernel loading (Numba's cache), first calls
            fn(0)
        except Exception:
            pass
        t0 = time.perf_counter()
        for s in range(count):
            try:
                means = fn(s)
                ok += success(means, truth[s])
            except Exception:
                pass
        dt = time.perf_counter() - t0
        out.append({"method": name, "fits": count, "ms_per_fit": 1e3 * dt / count,
                    "success_rate": ok / count})

    k = args.spectra
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bench("peakfit auto start (start estimation included)",
              lambda s: peakfit.fit_gaussians(x, Y[s], 4).means, k)
        bench("peakfit good p0", lambda s: peakfit.fit_gaussians(x, Y[s], 4, start=p0s[s]).means,
              k)
        bench("scipy curve_fit good p0 (defaults)",
              lambda s: curve_fit(gauss4, x, Y[s], p0=p0s[s])[0][1::3], k)
        try:
            import lmfit

            mod = sum(
                (lmfit.models.GaussianModel(prefix=f"g{i}_") for i in range(1, 5)),
                start=lmfit.models.ConstantModel(prefix="z_"),
            )

            def fit_lmfit(s):
                pars = mod.make_params(z_c=0.0)
                pars["z_c"].vary = False
                for i in range(4):
                    a, b, c = p0s[s, 3 * i : 3 * i + 3]
                    pars[f"g{i + 1}_center"].set(value=b)
                    pars[f"g{i + 1}_sigma"].set(value=c / np.sqrt(2))
                    pars[f"g{i + 1}_amplitude"].set(value=a * c * np.sqrt(np.pi))
                r = mod.fit(Y[s], pars, x=x)
                return [r.params[f"g{i}_center"].value for i in range(1, 5)]

            bench("lmfit good p0", fit_lmfit, max(5, k // 4))
        except ImportError:
            pass
    base = next(r for r in out if r["method"].startswith("scipy"))["ms_per_fit"]
    for r in out:
        r.update(points=args.points, peaks=4, speedup_vs_curve_fit=base / r["ms_per_fit"],
                 python=platform.python_version(), numpy=np.__version__,
                 peakfit=peakfit.__version__)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spectra", type=int, default=100)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="JSON lines only")
    args = ap.parse_args(argv)
    rows = run(args)
    for r in rows:
        if args.json:
            print(json.dumps(r))
        else:
            print(f"{r['method']:<50} {r['ms_per_fit']:8.3f} ms/fit  success "
                  f"{100 * r['success_rate']:5.1f} %  x{r['speedup_vs_curve_fit']:.2f} vs "
                  "curve_fit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
