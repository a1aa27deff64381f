"""How often ``n='auto'`` finds the true number of peaks, by SNR and overlap; lidar waveforms.

Synthetic spectra: ``n`` in 1..8 Gaussians (MATLAB ``gaussN`` form) on ``m`` points of [0, 1],
widths ``c = c0 U(0.75, 1.33)`` with ``c0`` chosen so the pattern fills about 70 % of the window,
heights in [1, 3] (the smallest is 1), white noise of standard deviation ``1/SNR`` (so SNR is
the smallest peak's height over the noise). Overlap is the closest adjacent pair's centre gap
over its mean ``c``: ``separated`` all gaps in [2.5, 4], ``moderate`` one in [1.6, 2.5],
``close`` one in [1.2, 1.6] (the others in [1.6, 4]). Two equal peaks stop showing two maxima
below a gap of about 1.41 c, so ``close`` pairs are only partly resolvable; the target
(>= 95 % right at SNR >= 20) is for ``separated`` and ``moderate``.

Every spectrum is fitted by ``peakfit.selection.fit_auto_batch`` (candidates 1..8, the same
rule as ``fit_gaussians(x, y, n='auto')``) with each criterion. The lidar waveforms of
``../shared/data/lidar_waveform`` are fitted with ``fit_gaussians(..., n='auto',
baseline='constant')`` (their published model has a constant ``c0``).

Prints one JSON object (``--json``) or a table. Usage::

    python benchmarks/bench_nauto.py --reps 6
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

import peakfit
from peakfit.selection import fit_auto_batch

SNRS = (5, 10, 20, 50, 100)
OVERLAPS = ("separated", "moderate", "close")
NS = tuple(range(1, 9))
GAPS = {"separated": (2.5, 4.0), "moderate": (1.6, 2.5), "close": (1.2, 1.6)}


def make_spectrum(rng: np.random.Generator, n: int, snr: float, overlap: str,
                  m: int) -> tuple[np.ndarray, np.ndarray]:
    """One spectrum (y on the shared x) and its truth ``(n, 3)``."""
    x = np.linspace(0.0, 1.0, m)
    gaps = rng.uniform(2.5, 4.0, max(n - 1, 0)) if overlap == "separated" else \
        rng.uniform(1.6, 4.0, max(n - 1, 0))
    if n > 1 and overlap != "separated":
        gaps[rng.integers(n - 1)] = rng.uniform(*GAPS[overlap])
    rel = rng.uniform(0.75, 1.33, n)
    # pattern length in units of c0: 2.5 c on each side plus the gaps (gap * mean c of the pair)
    pair = (rel[:-1] + rel[1:]) / 2
    length = 2.5 * rel[0] + 2.5 * rel[-1] + float(np.sum(gaps * pair))
    c0 = 0.7 / length
    c = c0 * rel
    b = np.empty(n)
    b[0] = 2.5 * c[0]
    for i in range(1, n):
        b[i] = b[i - 1] + gaps[i - 1] * (c[i - 1] + c[i]) / 2
    b += rng.uniform(0.02, 0.98 - (b[-1] + 2.5 * c[-1]))
    a = rng.uniform(1.0, 3.0, n)
    a[rng.integers(n)] = 1.0
    y = (a[:, None] * np.exp(-(((x[None, :] - b[:, None]) / c[:, None]) ** 2))).sum(axis=0)
    y = y + rng.standard_normal(m) / snr
    return y, np.column_stack([a, b, c])


def synthetic(reps: int, m: int, seed: int, criteria: tuple[str, ...]) -> dict:
    rng = np.random.default_rng(seed)
    cells = [(n, s, o) for n in NS for s in SNRS for o in OVERLAPS for _ in range(reps)
             if not (n == 1 and o != "separated")]
    Y = np.empty((len(cells), m))
    for i, (n, s, o) in enumerate(cells):
        Y[i], _ = make_spectrum(rng, n, s, o, m)
    true_n = np.array([c[0] for c in cells])
    snr = np.array([c[1] for c in cells])
    ov = np.array([c[2] for c in cells])
    x = np.linspace(0.0, 1.0, m)
    out: dict = {"spectra": len(cells), "m": m, "reps_per_cell": reps}
    for crit in criteria:
        t0 = time.perf_counter()
        r = fit_auto_batch(x, Y, "auto", criterion=crit, device="cpu")
        dt = time.perf_counter() - t0
        right = r.n == true_n
        table = {}
        for o in OVERLAPS:
            for s in SNRS:
                sel = (ov == o) & (snr == s)
                table[f"{o}/snr{s}"] = round(float(right[sel].mean()), 4)
        resolvable = (ov != "close") & (snr >= 20)
        by_n = {int(k): round(float(right[(true_n == k) & resolvable].mean()), 4) for k in NS}
        out[crit] = {
            "share_right_by_overlap_snr": table,
            "share_right_resolvable_snr_ge_20": round(float(right[resolvable].mean()), 4),
            "share_right_resolvable_snr_ge_20_by_n": by_n,
            "too_many": round(float((r.n > true_n)[resolvable].mean()), 4),
            "too_few": round(float((r.n < true_n)[resolvable].mean()), 4),
            "seconds": round(dt, 2),
        }
    return out


def lidar(data: Path) -> dict:
    out = {}
    for w in (1, 2):
        y = np.load(data / f"waveform_{w}.npy").astype(float)
        x = np.arange(y.size, dtype=float)
        row = {}
        for crit in ("bic", "aicc", "ftest"):
            r = peakfit.fit_gaussians(x, y, n="auto", baseline="constant", criterion=crit)
            row[crit] = {"n": r.n, "centres": [round(float(v), 3) for v in r.means]}
        out[f"waveform_{w}"] = row
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=6, help="spectra per (n, SNR, overlap) cell")
    ap.add_argument("--points", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--criteria", default="bic,aicc,ftest")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"
                                          / "lidar_waveform"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = {"python": platform.python_version(), "peakfit": peakfit.__version__,
           "synthetic": synthetic(args.reps, args.points, args.seed,
                                  tuple(args.criteria.split(",")))}
    if Path(args.data).is_dir():
        res["lidar"] = lidar(Path(args.data))
    if args.json:
        print(json.dumps(res))
        return 0
    syn = res["synthetic"]
    for crit in args.criteria.split(","):
        s = syn[crit]
        print(f"== {crit}: right n at SNR>=20, resolvable: "
              f"{s['share_right_resolvable_snr_ge_20']:.3f} (too many {s['too_many']:.3f}, "
              f"too few {s['too_few']:.3f}; {s['seconds']} s for {syn['spectra']} spectra)")
        print(f"{'overlap':>10} " + " ".join(f"{'snr' + str(v):>7}" for v in SNRS))
        for o in OVERLAPS:
            cells = [s["share_right_by_overlap_snr"][f"{o}/snr{v}"] for v in SNRS]
            print(f"{o:>10} " + " ".join(f"{v:7.3f}" for v in cells))
        print("   by n:", s["share_right_resolvable_snr_ge_20_by_n"])
    if "lidar" in res:
        print("lidar:", json.dumps(res["lidar"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
