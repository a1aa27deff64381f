"""Per-fit CPU cost of ``fit_gaussians`` and the part of it spent outside the solver.

A probe for single-fit overhead (issue #10): the same 4-peak spectra (m points, noise 1 % of
the tallest peak) are fitted one at a time from a good start (truth perturbed by 3 %) and
with the auto start. CPU time (``time.process_time``) per fit, median over ``--repeats``
passes. The solver's and the start estimator's time are measured by wrapping
:func:`peakfit.solvers.lm.levenberg_marquardt` and :func:`peakfit.autostart.auto_start`
wherever the package imported them, so the
script runs unchanged against any tree: compare two trees by switching ``PYTHONPATH``::

    PYTHONPATH=/path/to/old python benchmarks/bench_overhead.py
    PYTHONPATH=$PWD python benchmarks/bench_overhead.py

Prints one JSON line per start kind: ``cpu_ms_per_fit``, ``solver_ms_per_fit`` (the final
LM solve), ``start_estimate_ms_per_fit`` (:func:`peakfit.autostart.auto_start`, its own
trial solves included), ``outside_solver_ms_per_fit`` (everything else: validation, options,
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
import peakfit.autostart as _autostart
import peakfit.solvers.lm as _lm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_single import make_spectra

_clock = {"solver": 0.0, "start": 0.0, "in_start": False}


def _timed(original, key):
    """``original`` adding its CPU time to ``_clock[key]`` (solver calls made by the start
    estimator count as start time)."""

    @functools.wraps(original)
    def timed(*args, **kwargs):
        nested = _clock["in_start"]
        if key == "start":
            _clock["in_start"] = True
        t0 = time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            if not (key == "solver" and nested):
                _clock[key] += time.process_time() - t0
            if key == "start":
                _clock["in_start"] = nested

    return timed


def _wrap(module, name, key) -> None:
    """Time every call of ``module.name``, wherever a module of the package bound it."""
    original = getattr(module, name)
    timed = _timed(original, key)
    for mod_name, mod in list(sys.modules.items()):
        if (mod_name == "peakfit" or mod_name.startswith("peakfit.")) and \
                getattr(mod, name, None) is original:
            setattr(mod, name, timed)


def run(args: argparse.Namespace) -> list[dict]:
    x, Y, truth = make_spectra(args.spectra, args.points, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    p0s = truth * (1 + 0.03 * rng.standard_normal(truth.shape))
    _wrap(_lm, "levenberg_marquardt", "solver")
    _wrap(_autostart, "auto_start", "start")
    out = []
    for kind in ("good", "auto"):
        def fit(s: int, kind: str = kind):
            start = p0s[s] if kind == "good" else "auto"
            return peakfit.fit_gaussians(x, Y[s], 4, start=start)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit(0)  # warm-up: imports, compiled kernels
            totals, solver, start, iters = [], [], [], 0
            for _ in range(args.repeats):
                _clock["solver"] = _clock["start"] = 0.0
                iters = 0
                t0 = time.process_time()
                for s in range(args.spectra):
                    iters += fit(s).output.iterations
                totals.append(time.process_time() - t0)
                solver.append(_clock["solver"])
                start.append(_clock["start"])
        i = int(np.argsort(totals)[len(totals) // 2])  # the median pass, all numbers from it
        total, inside, st = (v[i] / args.spectra for v in (totals, solver, start))
        out.append({
            "bench": "overhead", "start": kind, "spectra": args.spectra, "points": args.points,
            "repeats": args.repeats, "cpu_ms_per_fit": round(1e3 * total, 4),
            "solver_ms_per_fit": round(1e3 * inside, 4),
            "start_estimate_ms_per_fit": round(1e3 * st, 4),
            "outside_solver_ms_per_fit": round(1e3 * (total - inside - st), 4),
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
