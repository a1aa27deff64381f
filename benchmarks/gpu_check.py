"""GPU acceptance in one command: ``pytest -m gpu`` and the GPU benchmark grid, as JSON lines.

Usage::

    python benchmarks/gpu_check.py --json out.jsonl            # on a machine with a GPU
    python benchmarks/gpu_check.py --quick --json out.jsonl    # k up to 1e5, stream 1e6
    python benchmarks/gpu_check.py --counts                    # no GPU: the stand-in's counts

On a GPU it runs, in this order, printing one JSON object a line (and appending them to
``--json``):

1. ``device``: the device, CuPy/CUDA/NVRTC versions, and the registers and local memory of the
   generated kernel as CuPy compiled it (``RawKernel.attributes``);
2. ``pytest``: ``pytest -m gpu`` (tests/test_batch_gpu.py on the real device) and its outcome;
3. ``grid``: fp32 and fp64; data on the device (``cupy`` arrays) and from host NumPy (timed
   including the transfer); ``start='auto'`` (the default, timed with the fit) and the true
   coefficients as start (the solver alone); k = 1e4, 1e5, 1e6 at m = 1000, n = 4; and
   ragged rows (k = 1e4, NaN runs over 20 % of the points, a different pattern in every row,
   ``nan_policy='omit'``, the auto start) in both precisions from both sources
   (:func:`grid_lines`). Each line has fits/s, the rate of fits that recovered the truth, the
   target of issue #10 and the prediction of the performance model
   (docs/gpu-performance.md) for the same configuration (``model_fits_per_s``,
   ``measured_over_model``); ``--counts`` prints the model's figure for the same lines;
4. ``stream``: 1e7 spectra generated chunk by chunk on the device and fitted as a stream, with
   the peak device memory (CuPy's pool) and the host's peak RSS.

Without a GPU it exits with status 2 and says why (``--counts`` excepted: it runs the GPU path
on the CuPy stand-in of ``tests/cupy_standin.py`` and prints the launch, synchronisation and
byte counts that the performance model is built from).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import peakfit  # noqa: E402
from peakfit.models import GaussianModel  # noqa: E402

#: Targets of the batch issue (fits/s, H100-class device, m = 1000, n = 4).
TARGETS = {("float32", "device"): 3e6, ("float32", "host"): 1.5e6, ("float64", "device"): 5e5,
           ("float64", "host"): 5e5}

#: Published figures of the devices (bytes/s of HBM, fp32 and fp64 FLOP/s without tensor cores)
DEVICES = {
    "H100": {"bw": 3.35e12, "fp32": 67e12, "fp64": 34e12, "pcie": 50e9},
    "H200": {"bw": 4.8e12, "fp32": 67e12, "fp64": 34e12, "pcie": 50e9},
    "A100": {"bw": 2.0e12, "fp32": 19.5e12, "fp64": 9.7e12, "pcie": 25e9},
}

#: Counts measured on the CuPy stand-in (``--counts``; m = 1000, n = 4), the model's inputs.
COUNTS = {
    # LM iteration on the device (peakfit.gpu.lm_kernel, k = 512): the step, fused evaluation
    # and accept kernels and 1.25 CuPy operations (the evaluator's gather, the compaction
    # every check_every = 4 iterations; 7 when the stand-in counted views and allocations
    # as launches, the fused evaluation's launch left out)
    "lm_launches_per_iter": 4.25,
    "lm_syncs_per_iter": 0.25,
    # per row beyond the data, as the stand-in counts it (every argument array whole)
    "lm_row_bytes_per_iter": 13.9e3,
    # auto start (k = 512, m = 1000, as the pipeline calls it: missing=False, return_info
    # for the supported peaks): fused kernel and the device LM iteration, no compaction, one
    # chunk from device memory; the cheap path for every spectrum, the full path for the
    # gated-out ones; the generated residual and term-values kernels; launches include the
    # 350 RawKernel calls; syncs: 1 in steps 1-2 (the bin sizes and doubtful polarities in
    # one read), one for the gate's row selection per bin-size group, one per repair round,
    # the supported peaks' early exit; views (basic indexing, reshapes) and cupy.empty are
    # no launch, as in CuPy. Before (5400 launches, 10 syncs, 1.31 MB a spectrum) the
    # stand-in counted views as launches and the model left out the supported peaks (1.56 MB
    # a spectrum with them)
    "start_launches_per_chunk": 4280,  # do not grow with the rows of a chunk (1024: 4291)
    "start_syncs_per_chunk": 15,
    # device traffic: per spectrum (512 rows and the same rows twice: the difference) and
    # per chunk whatever its rows (the pursuit's atoms, 8 M x M a bin-size group)
    "start_bytes_per_row": 0.652e6,
    "start_bytes_per_chunk": 56.7e6,
    # the start of a float32 fit runs in float32 (peakfit.pipeline.START_IN_FIT_DTYPE): the
    # full-resolution arrays of steps 1-3 in float32, the binned data and the coarse solves
    # in float64 (in float32 the coarse solves ended elsewhere: 11 116 launches and 15.3 MB a
    # spectrum); the same launches (3 930 + 350) and syncs (15), and the same peak memory a
    # row within _elements_per_row (tracemalloc on the stand-in: 0.65-1.05 of float64's)
    "start_bytes_per_row_float32": 0.499e6,
    "start_bytes_per_chunk_float32": 56.7e6,
    # LM iterations (mean over rows, and of the slowest row of 1000), measured on the CPU for
    # make_batch(1000, 1000, 4) in float32: after the auto start, and from the truth
    "iterations_auto": (2.01, 6),
    "iterations_truth": (5.11, 10),
}

#: Ragged spectra of the grid: NaN runs over this fraction of the points (0.5 to 1.5 times it
#: per row, one to three runs at random places), fitted with ``nan_policy='omit'``.
RAGGED_FRACTION = 0.2
#: The start of ragged rows against full rows, measured on the stand-in (``--counts``: 512
#: rows of m = 1000, the pipeline's start, 20 % NaN runs, a different pattern every row): one
#: pass (before: one start per pattern, k passes). It costs more than full rows because the
#: data are harder: a gap through a peak leaves bins that straddle it, so most ragged rows
#: fail the misfit test and all five repair rounds run (full rows: one round, 8 % of them).
RAGGED_START = {"launches": 4.8, "syncs": 3.4, "device_bytes": 21.7}
#: The same in float32 (the start in the fit's dtype; its full rows move less, its ragged
#: rows' repair rounds on binned data as much: 7.8 GB for 512 rows, 8.5 GB in float64).
RAGGED_START_FLOAT32 = {"launches": 4.7, "syncs": 3.3, "device_bytes": 24.4}

#: Seconds per CuPy launch as seen from Python (launch + argument handling), per host sync.
T_LAUNCH = 8e-6
T_SYNC = 20e-6

#: The functions of steps 1-2 of the auto start (the stand-in's sync sites; also used by
#: tests/test_cupy_standin.py).
_STEPS_1_2 = ("autostart._prepare", "autostart._noise", "autostart._noise_masked",
              "autostart._row_median", "autostart._bin_factors", "autostart._pilot_fwhm",
              "autostart._estimate", "autostart._concat", "autostart._raw_refine",
              "autostart._baseline_sign", "autostart.auto_start", "start.baseline_start",
              "start._weighted_polyfit")


def _steps_1_2_syncs(sites: dict[str, int]) -> int:
    return sum(n for where, n in sites.items() if where.rsplit(":", 1)[0] in _STEPS_1_2)


def ragged_mask(k: int, m: int, fraction: float, seed: int) -> Any:
    """Missing points (True, host array (k, m)) of ``k`` ragged rows: NaN runs over about
    ``fraction`` of each row (:func:`bench_ragged.nan_mask`, a different pattern a row)."""
    import numpy as np
    from bench_ragged import nan_mask

    rng = np.random.default_rng([seed, 99])
    return np.array([nan_mask(m, fraction * rng.uniform(0.5, 1.5), "runs", rng)
                     for _ in range(k)])


def predict(dev: str, dtype: str, source: str, start: str, k: int, m: int = 1000,
            n: int = 4, ragged: bool = False) -> dict[str, float]:
    """Fits/s of the performance model (docs/gpu-performance.md) for one configuration
    (``ragged``: every row with NaN runs, :data:`RAGGED_FRACTION`)."""
    d = DEVICES[dev]
    P = 3 * n
    item = 4 if dtype == "float32" else 8
    c = COUNTS
    # fused kernel, per row and iteration: data read once; the rows of A split over T warps
    # (peakfit.gpu.kernels.row_slices), each evaluating the model (n exps, ~20 flops a term)
    # and the Jacobian (~10 flops a column) and accumulating its share of the P(P+1)/2 FMAs;
    # S (compensated) and g in the working precision per 32-point block: no double per point
    from peakfit.gpu.kernels import row_slices

    T = len(row_slices(GaussianModel(n), dtype))
    flops_w = m * (2 * P * (P + 1) / 2 + T * (20 * n + 10 * P) + 2 * P + 8)
    # share of peak throughput reached: <= 128 registers in fp32 (16 warps an SM of 64),
    # about 210 and no spills in fp64 (9 warps)
    occupancy = 0.6 if dtype == "float32" else 0.35
    # ragged rows carry their weights (0 at the missing points): one more read a point
    t_kernel = max(m * item * (2 if ragged else 1) / d["bw"],
                   flops_w / (occupancy * d["fp64" if dtype == "float64" else "fp32"]))
    t_rows = c["lm_row_bytes_per_iter"] / d["bw"]
    mean_it, max_it = c["iterations_auto"] if start == "auto" else c["iterations_truth"]
    from peakfit.gpu import bytes_per_row

    # rows a chunk holds in half of an 80 GB device (peakfit.gpu.auto_chunk_rows)
    chunk = min(k, int(0.5 * 80e9 // bytes_per_row(m, P, item)), 1 << 20)
    t_iter_fixed = c["lm_launches_per_iter"] * T_LAUNCH + c["lm_syncs_per_iter"] * T_SYNC
    # rows drop out of the work set when they finish; the chunk's fixed cost runs to the
    # slowest row
    per_fit = mean_it * (t_kernel + t_rows) + max_it * t_iter_fixed / chunk
    if start == "auto":
        # the start runs before the solver allocates anything: its chunks come from a quarter
        # of the memory the chunk's data leave free (peakfit.gpu.work_elements; the data as
        # sent and the validation's masks and statistics, ~48 bytes a point), at the start's
        # work memory per spectrum (peakfit.autostart._elements_per_row; the pipeline hands
        # ragged rows over with their abscissae per row)
        from peakfit.autostart import _elements_per_row

        free = 80e9 - chunk * m * (8 + 40)
        per_row = _elements_per_row(GaussianModel(n), m, 0, not ragged, ragged)
        sc = min(chunk, int(0.25 * free / 8 // per_row))
        sfx = "_float32" if dtype == "float32" else ""  # the start in the fit's dtype
        f = {"launches": 1.0, "syncs": 1.0, "device_bytes": 1.0}
        if ragged:
            f = RAGGED_START_FLOAT32 if sfx else RAGGED_START
        per_fit += (c["start_launches_per_chunk"] * f["launches"] * T_LAUNCH
                    + c["start_syncs_per_chunk"] * f["syncs"] * T_SYNC
                    + c["start_bytes_per_chunk" + sfx] / d["bw"]) / sc
        per_fit += c["start_bytes_per_row" + sfx] * f["device_bytes"] / d["bw"]
    if source == "host":
        # float64 input over PCIe, one chunk ahead on a copy stream (peakfit.gpu.transfer):
        # the slower of the link and the device sets the pace
        per_fit = max(per_fit, m * 8 / d["pcie"])
    return {"fits_per_s": 1.0 / per_fit, "kernel_s_per_iter_row": t_kernel,
            "rows_s_per_iter_row": t_rows}


# ------------------------------------------------------------------------ GPU runs
def _emit(rec: dict[str, Any], out: Path | None) -> None:
    line = json.dumps(rec, default=float)
    print(line, flush=True)
    if out is not None:
        with out.open("a") as fh:
            fh.write(line + "\n")


def _device_name(cp: Any) -> str:
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def _model_device(name: str) -> str:
    for key in DEVICES:
        if key in name:
            return key
    return "H100"


def device_record(cp: Any) -> dict[str, Any]:
    from peakfit.gpu.kernels import get_kernel

    rec: dict[str, Any] = {"check": "device", "name": _device_name(cp),
                           "cupy": cp.__version__,
                           "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
                           "driver": cp.cuda.runtime.driverGetVersion()}
    try:
        rec["nvrtc"] = cp.cuda.nvrtc.getVersion()
    except Exception as exc:  # pragma: no cover - depends on the install
        rec["nvrtc"] = f"unavailable: {exc}"
    kern = {}
    for dt in ("float32", "float64"):
        k = get_kernel(GaussianModel(4), dt, False, "none")
        try:
            a = k.attributes
            kern[dt] = {"registers": a.get("num_regs"), "local_bytes": a.get("local_size_bytes")}
        except Exception as exc:  # pragma: no cover
            kern[dt] = f"unavailable: {exc}"
    rec["kernel_n4"] = kern
    return rec


def run_pytest() -> dict[str, Any]:
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p",
                          "no:cacheprovider", str(ROOT / "tests")], capture_output=True,
                         text=True, cwd=ROOT)
    tail = run.stdout.strip().splitlines()[-1:] if run.stdout else []
    return {"check": "pytest -m gpu", "returncode": run.returncode,
            "summary": tail[0] if tail else run.stderr[-500:],
            "seconds": round(time.perf_counter() - t0, 1)}


def _device_batch(cp: Any, k: int, m: int, n: int, seed: int, dtype: str):
    """x, Y (on the device) and the truth of ``k`` synthetic spectra (:mod:`_synth_batch`)."""
    from _synth_batch import make_batch

    return make_batch(k, m, n, seed=seed, dtype=dtype, xp=cp)


def grid_record(cp: Any, dtype: str, source: str, start: str, k: int, m: int, n: int,
                dev: str, ragged: bool = False) -> dict[str, Any]:
    from _synth_batch import success_mask

    x, Y, truth = _device_batch(cp, k, m, n, seed=k, dtype=dtype)
    th = truth.get()
    if ragged:  # NaN runs, a different pattern in every row
        Y[cp.asarray(ragged_mask(k, m, RAGGED_FRACTION, seed=k))] = float("nan")
    if source == "host":
        x, Y = x.get(), Y.get()
    cp.cuda.Device().synchronize()
    pool = cp.get_default_memory_pool()
    t0 = time.perf_counter()
    r = peakfit.fit_gaussians_batch(x, Y, n, device="gpu", dtype=dtype,
                                    start=th if start == "truth" else "auto",
                                    nan_policy="omit" if ragged else "pad")
    cp.cuda.Device().synchronize()
    secs = time.perf_counter() - t0
    fits = k / secs
    target = TARGETS[(dtype, source)]
    pred = predict(dev, dtype, source, start, k, m, n, ragged)["fits_per_s"]
    return {"check": "grid", "dtype": dtype, "data": source, "start": start, "k": k, "m": m,
            "n": n, "nan_fraction": RAGGED_FRACTION if ragged else 0.0,
            "seconds": round(secs, 3), "fits_per_s": round(fits),
            "success_rate": round(float(success_mask(r.a, r.b, r.c, th, r.converged).mean()),
                                  4),
            "target": target, "meets_target": fits >= target,
            "model_fits_per_s": round(pred), "measured_over_model": round(fits / pred, 3),
            "pool_bytes": int(pool.total_bytes())}


def stream_record(cp: Any, total: int, chunk: int, dtype: str, dev: str) -> dict[str, Any]:
    m, n = 1000, 4
    x = cp.linspace(0.0, 100.0, m)

    def chunks():
        for s in range(0, total, chunk):
            yield _device_batch(cp, min(chunk, total - s), m, n, seed=s, dtype=dtype)[1]

    pool = cp.get_default_memory_pool()
    pool.free_all_blocks()
    t0 = time.perf_counter()
    r = peakfit.fit_gaussians_batch(x, chunks(), n, device="gpu", dtype=dtype)
    cp.cuda.Device().synchronize()
    secs = time.perf_counter() - t0
    return {"check": "stream", "k": total, "chunk": chunk, "dtype": dtype,
            "seconds": round(secs, 1), "fits_per_s": round(total / secs),
            "converged_rate": round(float(r.converged.mean()), 4),
            # the pool keeps what it allocated: its size at the end is the peak held
            "peak_pool_gb": round(int(pool.total_bytes()) / 2**30, 2),
            "peak_host_rss_gb": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "model_fits_per_s": round(predict(dev, dtype, "device", "auto", total)[
                "fits_per_s"])}


# ----------------------------------------------------------------------- no GPU
def stand_in_counts() -> list[dict[str, Any]]:
    """The counts of the model's inputs, measured on the CuPy stand-in (no GPU needed)."""
    import numpy as np
    import pytest

    sys.path.insert(0, str(ROOT / "tests"))
    from cupy_standin import COUNTS as C
    from cupy_standin import install

    from peakfit.autostart import auto_start
    from peakfit.gpu import FusedNormalEquations
    from peakfit.solvers.lm import levenberg_marquardt

    mp = pytest.MonkeyPatch()
    cp = install(mp)
    out = []
    try:
        from _synth_batch import make_batch

        model = GaussianModel(4)
        x, Y, truth = make_batch(512, 1000, 4, seed=1)
        ev = FusedNormalEquations(model, cp.asarray(x), cp.asarray(Y))
        runs = {}
        for iters in (4, 12):
            C.reset()
            levenberg_marquardt(ev, cp.asarray(truth * 1.01), model.default_lower(),
                                model.default_upper(), max_iter=iters, tol_fun=0.0,
                                tol_x=0.0, check_every=4, lam0=1e-3)
            runs[iters] = C.snapshot()
        per = {key: (runs[12][key] - runs[4][key]) / 8 for key in runs[4]}
        per["row_bytes_beyond_data"] = (per["device_bytes"] - 512 * 1000 * 8) / 512
        out.append({"check": "counts", "what": "LM iteration", "k": 512, "m": 1000, "n": 4,
                    **per})
        # the 512 spectra, then each of them twice (1024 rows, the same groups and gated
        # share): the difference is what a spectrum costs, the rest what a chunk costs
        # whatever its rows (launches, syncs, the pursuit's atoms)
        # (as the pipeline calls it: missing points known, the supported peaks wanted)
        # (and in float32, as the pipeline starts a float32 fit: the data in float32)
        for dt in ("float64", "float32"):
            Yd = Y.astype(dt)
            C.reset()
            auto_start(model, cp.asarray(x), cp.asarray(np.tile(Yd, (2, 1))), missing=False,
                       return_info=True, dtype=dt)
            twice = C.snapshot()
            C.reset()
            auto_start(model, cp.asarray(x), cp.asarray(Yd), missing=False,
                       return_info=True, dtype=dt)
            s = C.snapshot()
            row = (twice["device_bytes"] - s["device_bytes"]) / 512
            out.append({"check": "counts", "what": "auto start", "dtype": dt, "k": 512,
                        "m": 1000, "n": 4, **s, "per_spectrum_launches": s["launches"] / 512,
                        "bytes_per_spectrum": s["device_bytes"] / 512,
                        "bytes_per_spectrum_beyond_the_chunks": row,
                        "bytes_per_chunk": s["device_bytes"] - 512 * row,
                        "launches_1024_rows": twice["launches"] + twice["raw_launches"],
                        "syncs_steps_1_2": _steps_1_2_syncs(C.sites),
                        # where they go: function -> [launches, RawKernel calls, bytes]
                        "top_functions": dict(list(C.by_function().items())[:10])})
        # the start of the pipeline (peakfit.pipeline.start_points) on full and on ragged rows
        # (NaN runs, a different pattern in every row): one pass either way
        import peakfit.pipeline as pl

        starts: list[dict[str, Any]] = []
        orig = pl.start_points

        def counted(*a: Any, **kw: Any) -> Any:
            C.reset()
            res = orig(*a, **kw)
            starts.append(C.snapshot())
            return res

        mp.setattr(pl, "start_points", counted)
        Yr = Y.copy()
        Yr[ragged_mask(512, 1000, RAGGED_FRACTION, seed=1)] = float("nan")
        for dt in ("float64", "float32"):
            got = {}
            for name, data in (("full", Y), ("ragged", Yr)):
                starts.clear()
                peakfit.fit_gaussians_batch(cp.asarray(x), cp.asarray(data), 4, device="gpu",
                                            nan_policy="omit", dtype=dt)
                got[name] = starts[-1]
                out.append({"check": "counts", "what": f"pipeline start, {name} rows",
                            "dtype": dt, "k": 512, "m": 1000, "n": 4,
                            "nan_fraction": RAGGED_FRACTION if name == "ragged" else 0.0,
                            **got[name]})
            out.append({"check": "counts", "what": "ragged over full start", "dtype": dt, **{
                key: round(got["ragged"][key] / max(got["full"][key], 1), 2)
                for key in ("launches", "raw_launches", "syncs", "device_bytes")}})
    finally:
        mp.undo()
    return out


def grid_lines(quick: bool = False) -> list[dict[str, Any]]:
    """The configurations of the acceptance grid, in the order they run: dtype, data, start,
    k (1e4 to 1e6 at m = 1000, n = 4), then the ragged lines (k = 1e4, NaN runs over
    :data:`RAGGED_FRACTION` of the points, the auto start).

    Examples
    --------
    >>> lines = grid_lines()
    >>> len(lines), lines[-1]
    (28, {'dtype': 'float64', 'source': 'host', 'start': 'auto', 'k': 10000, 'ragged': True})
    """
    ks = (10**4, 10**5) if quick else (10**4, 10**5, 10**6)
    lines = [{"dtype": dt, "source": src, "start": st, "k": k, "ragged": False}
             for dt in ("float32", "float64") for src in ("device", "host")
             for st in ("auto", "truth") for k in ks]
    lines += [{"dtype": dt, "source": src, "start": "auto", "k": 10**4, "ragged": True}
              for dt in ("float32", "float64") for src in ("device", "host")]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, help="append the JSON lines to this file")
    ap.add_argument("--quick", action="store_true", help="k up to 1e5; stream 1e6")
    ap.add_argument("--skip-pytest", action="store_true")
    ap.add_argument("--stream", type=int, default=None, help="spectra of the stream run")
    ap.add_argument("--counts", action="store_true",
                    help="no GPU needed: counts on the CuPy stand-in, and the model's figures")
    args = ap.parse_args(argv)
    if args.counts:
        for rec in stand_in_counts():
            _emit(rec, args.json)
        for dev in DEVICES:  # the model's figure for every line of the GPU grid
            for ln in grid_lines(args.quick):
                p = predict(dev, ln["dtype"], ln["source"], ln["start"], ln["k"],
                            ragged=ln["ragged"])
                _emit({"check": "model", "device": dev, "dtype": ln["dtype"],
                       "data": ln["source"], "start": ln["start"], "k": ln["k"], "m": 1000,
                       "n": 4, "nan_fraction": RAGGED_FRACTION if ln["ragged"] else 0.0,
                       "model_fits_per_s": round(p["fits_per_s"]),
                       "target": TARGETS[(ln["dtype"], ln["source"])]}, args.json)
        return 0
    from peakfit.errors import GPUUnavailableError
    from peakfit.gpu import require_cupy

    try:
        cp = require_cupy()
    except GPUUnavailableError as exc:
        print(f"gpu_check: no usable GPU: {exc}", file=sys.stderr)
        return 2
    rec = device_record(cp)
    _emit(rec, args.json)
    dev = _model_device(rec["name"])
    if not args.skip_pytest:
        _emit(run_pytest(), args.json)
    # warm-up (compilation), untimed
    peakfit.fit_gaussians_batch(*_device_batch(cp, 256, 1000, 4, 0, "float32")[:2], 4,
                                device="gpu", dtype="float32")
    peakfit.fit_gaussians_batch(*_device_batch(cp, 256, 1000, 4, 0, "float64")[:2], 4,
                                device="gpu", dtype="float64")
    for ln in grid_lines(args.quick):
        _emit(grid_record(cp, ln["dtype"], ln["source"], ln["start"], ln["k"], 1000, 4, dev,
                          ln["ragged"]), args.json)
        cp.get_default_memory_pool().free_all_blocks()
    total = args.stream if args.stream is not None else (10**6 if args.quick else 10**7)
    if total:
        _emit(stream_record(cp, total, 10**5, "float32", dev), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
