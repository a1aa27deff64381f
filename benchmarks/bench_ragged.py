"""Ragged spectra: success and speed of the start on rows with missing points.

Spectra of :mod:`benchmarks.synth` (``n`` Gaussians, a linear baseline where the spectrum has
one; sorted x, ``m`` points) lose a fraction of their points, as NaN:

``runs``
    about ``--nan-fraction`` of the points (0.5 to 1.5 times it, drawn per row) in one to
    three runs at random places (ends included), fitted with ``nan_policy='omit'``;
``pad``
    as many at the two ends (padding), fitted with the default ``nan_policy='pad'``.

Each set is fitted three ways, and the success (:func:`benchmarks.synth.success`: every centre
within 0.1 c) and the rows per second of each are printed:

``ragged``
    ``fit_gaussians_batch`` on the rows with their NaN: every row of a block is started in one
    pass, the missing points masked (:func:`peakfit.pipeline.start_points`);
``compressed``
    ``fit_gaussians`` on each row's valid points only (x and y without the missing points):
    the reference for what the data allow;
``full``
    ``fit_gaussians_batch`` on the same spectra without missing points (for the speed ratio).

Output: one JSON object per line (``{"kind": "ragged", ...}``) to stdout or ``--json``.

Usage::

    python benchmarks/bench_ragged.py --count 200 --seed 1
    python benchmarks/bench_ragged.py --count 200 --layout pad --nan-fraction 0.3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import peakfit  # noqa: E402
from benchmarks.synth import generate, success  # noqa: E402


def nan_mask(m: int, fraction: float, layout: str, rng: np.random.Generator) -> np.ndarray:
    """Missing points (True) of one row: ``fraction`` of ``m`` in runs, or at the two ends.

    Examples
    --------
    >>> mk = nan_mask(100, 0.2, "pad", np.random.default_rng(0))
    >>> int(mk.sum()), bool(mk[0] or mk[-1]), bool(mk[40:60].any())
    (20, True, False)
    """
    miss = np.zeros(m, dtype=bool)
    total = round(fraction * m)
    if layout == "pad":
        left = int(rng.integers(0, total + 1))
        miss[:left] = True
        miss[m - (total - left):] = True
        return miss
    runs = int(rng.integers(1, 4))
    cuts = np.sort(rng.integers(0, total + 1, runs - 1))
    lengths = np.diff(np.concatenate([[0], cuts, [total]]))
    for ln in lengths:
        if ln:
            s = int(rng.integers(0, m - ln + 1))
            miss[s:s + ln] = True
    return miss


def run(count: int, seed: int, n: int, m: int, fraction: float, layout: str) -> list[dict]:
    specs = generate(count, seed=seed, n=n, fixed={"size": f"m{m}", "order": "sorted"})
    rng = np.random.default_rng([seed, 99])
    # each row its own share (0.5 to 1.5 times the fraction), so rows differ in length
    masks = np.array([nan_mask(m, fraction * rng.uniform(0.5, 1.5), layout, rng)
                      for _ in specs])
    X = np.array([s.x for s in specs])
    Y = np.array([s.y for s in specs])
    Yn = np.where(masks, np.nan, Y)
    policy = "omit" if layout == "runs" else "pad"
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for bl in ("none", "linear"):
            rows = np.array([i for i, s in enumerate(specs) if s.baseline == bl])
            if rows.size == 0:
                continue
            t0 = time.perf_counter()
            r = peakfit.fit_gaussians_batch(X[rows], Yn[rows], n, baseline=bl,
                                            nan_policy=policy)
            t_ragged = time.perf_counter() - t0
            ok_ragged = [success(r.means[j], specs[i].truth) for j, i in enumerate(rows)]
            t0 = time.perf_counter()
            ok_comp = []
            for i in rows:
                keep = ~masks[i]
                try:
                    f = peakfit.fit_gaussians(X[i, keep], Y[i, keep], n, baseline=bl)
                    ok_comp.append(success(f.means, specs[i].truth))
                except Exception:  # a crash is a failed fit
                    ok_comp.append(False)
            t_comp = time.perf_counter() - t0
            t0 = time.perf_counter()
            peakfit.fit_gaussians_batch(X[rows], Y[rows], n, baseline=bl)
            t_full = time.perf_counter() - t0
            out.append({
                "kind": "ragged", "layout": layout, "nan_fraction": fraction,
                "baseline": bl, "rows": int(rows.size), "m": m, "n": n, "seed": seed,
                "success_ragged": round(float(np.mean(ok_ragged)), 4),
                "success_compressed": round(float(np.mean(ok_comp)), 4),
                "rows_per_s_ragged": round(rows.size / t_ragged, 1),
                "rows_per_s_compressed_single": round(rows.size / t_comp, 1),
                "rows_per_s_full_batch": round(rows.size / t_full, 1),
                "ragged_over_full_time": round(t_ragged / t_full, 2),
                "load1": round(os.getloadavg()[0], 2), "python": platform.python_version(),
            })
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--m", type=int, default=1000, choices=(100, 300, 1000, 3000, 10000))
    ap.add_argument("--nan-fraction", type=float, default=0.2)
    ap.add_argument("--layout", choices=("runs", "pad", "both"), default="both")
    ap.add_argument("--json", type=Path, help="append the JSON lines to this file")
    args = ap.parse_args(argv)
    layouts = ("runs", "pad") if args.layout == "both" else (args.layout,)
    for layout in layouts:
        for rec in run(args.count, args.seed, args.n, args.m, args.nan_fraction, layout):
            line = json.dumps(rec)
            print(line, flush=True)
            if args.json is not None:
                with args.json.open("a") as fh:
                    fh.write(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
