"""Per-fit CPU cost of ``fit_gaussians`` and the part of it spent outside the solver.

A probe for single-fit overhead (issue #10): the same 4-peak spectra (m points, noise 1 % of
the tallest peak) are fitted one at a time from a good start (truth perturbed by 3 %) and
with the auto start. CPU time (``time.process_time``) per fit, median over ``--repeats``
passes. The solver's own time is measured by wrapping
:func:`peakfit.solvers.lm.levenberg_marquardt` wherever the package imported it, so the
script runs unchanged against any tree: compare two trees by switching ``PYTHONPATH``::

    PYTHONPATH=/path/to/old python benchmarks/bench_overhead.py
    PYTHONPATH=$PWD python benchmarks/bench_overhead.py

Prints one JSON line per start kind: ``cpu_ms_per_fit``, ``solver_ms_per_fit``,
``outside_solver_ms_per_fit`` (everything else: validation, options, start estimation,
scaling, states, result building), the iterations per fit and the tree it ran against.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
import warnings

import numpy as np

import peakfit
import peakfit.solvers.lm as _lm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_single import make_spectra

_solver_time = [0.0]


def _wrap_solver() -> None:
    """Time every call of the LM loop, wherever a module of the package bound it."""
    original = _lm.levenberg_marquardt

    @functools.wraps(original)
    def timed(*args, **kwargs):
        t0 = time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            _solver_time[0] += time.process_time() - t0

    for name, mod in list(sys.modules.items()):
        if (name == "peakfit" or name.startswith("peakfit.")) and \
                getattr(mod, "levenberg_marquardt", None) is original:
            mod.levenberg_marquardt = timed


def run(args: argparse.Namespace) -> list[dict]:
    x, Y, truth = make_spectra(args.spectra, args.points, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    p0s = truth * (1 + 0.03 * rng.standard_normal(truth.shape))
    _wrap_solver()
    out = []
    for kind in ("good", "auto"):
        def fit(s: int, kind: str = kind):
            start = p0s[s] if kind == "good" else "auto"
            return peakfit.fit_gaussians(x, Y[s], 4, start=start)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit(0)  # warm-up: imports, compiled kernels
            totals, solver, iters = [], [], 0
            for _ in range(args.repeats):
                _solver_time[0] = 0.0
                iters = 0
                t0 = time.process_time()
                for s in range(args.spectra):
                    iters += fit(s).output.iterations
                totals.append(time.process_time() - t0)
                solver.append(_solver_time[0])
        i = int(np.argsort(totals)[len(totals) // 2])  # the median pass, both numbers from it
        total, inside = totals[i] / args.spectra, solver[i] / args.spectra
        out.append({
            "bench": "overhead", "start": kind, "spectra": args.spectra, "points": args.points,
            "repeats": args.repeats, "cpu_ms_per_fit": round(1e3 * total, 4),
            "solver_ms_per_fit": round(1e3 * inside, 4),
            "outside_solver_ms_per_fit": round(1e3 * (total - inside), 4),
            "iterations_per_fit": iters / args.spectra,
            "tree": os.path.dirname(os.path.dirname(os.path.abspath(peakfit.__file__))),
        })
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spectra", type=int, default=40)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    for row in run(ap.parse_args(argv)):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
