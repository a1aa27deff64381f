"""Success of float32 batch fits with the auto start in float32 against the start in float64.

The same spectra of :mod:`benchmarks.synth` (as ``bench_start.py`` draws them), each fitted by
``fit_gaussians_batch(..., dtype='float32', device='cpu')`` twice: with the start in the fit's
dtype (``peakfit.pipeline.START_IN_FIT_DTYPE = True``, the default) and in float64 (False).
Success: every fitted centre within ``0.1 c`` of the truth (:func:`benchmarks.synth.success`).
Also reported: the spectra whose outcome differs, and the time of each (same run, interleaved).

Usage::

    python benchmarks/bench_start_dtype.py --count 600 --seed 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import peakfit  # noqa: E402
from benchmarks.synth import Spectrum, generate, success  # noqa: E402
from peakfit import pipeline  # noqa: E402


def fit_means(s: Spectrum, start_f32: bool) -> np.ndarray:
    """Fitted centres of one spectrum, float32 fit, the start in float32 or float64."""
    pipeline.START_IN_FIT_DTYPE = start_f32
    try:
        r = peakfit.fit_gaussians_batch(s.x, s.y[None, :], s.n, baseline=s.baseline,
                                        dtype="float32", device="cpu")
    finally:
        pipeline.START_IN_FIT_DTYPE = True
    return np.asarray(r.p[0, 1 : 3 * s.n : 3], dtype=float)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=600)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--n", type=int, default=4)
    a = ap.parse_args(argv)
    specs = generate(a.count, seed=a.seed, n=a.n)
    ok = {True: np.zeros(a.count, bool), False: np.zeros(a.count, bool)}
    secs = {True: 0.0, False: 0.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, s in enumerate(specs):
            for f32 in (True, False):
                t0 = time.perf_counter()
                try:
                    ok[f32][i] = success(fit_means(s, f32), s.truth)
                except Exception:  # a crash is a failed fit
                    ok[f32][i] = False
                secs[f32] += time.perf_counter() - t0
    out = {
        "count": a.count, "seed": a.seed, "n": a.n,
        "success_start_float32": int(ok[True].sum()),
        "success_start_float64": int(ok[False].sum()),
        "only_float32": np.flatnonzero(ok[True] & ~ok[False]).tolist(),
        "only_float64": np.flatnonzero(ok[False] & ~ok[True]).tolist(),
        "ms_per_fit_start_float32": 1e3 * secs[True] / a.count,
        "ms_per_fit_start_float64": 1e3 * secs[False] / a.count,
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
