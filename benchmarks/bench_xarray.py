"""Fits per second on a hyperspectral cube: ``peakfit.xarray.fit`` vs xarray-lmfit, one run.

The cube: ``ny x nx`` positions, ``m`` channels, two Gaussian peaks whose centres, heights and
widths vary across the map, on a constant baseline, with white noise of 1 % of the tallest
peak. Both fit the same DataArray along ``shift``:

* ``peakfit.xarray.fit(da, "shift", n=2, baseline="constant")``: the batch engine, its own
  start point for every position (nothing given);
* xarray-lmfit ``da.xlm.modelfit("shift", model=Gaussian+Gaussian+Constant, params=...)``
  with one start for all positions (the map's mean centres, heights and widths, which a user
  would read off one spectrum) and ``output_result=False`` (its fastest setting).

Both are run in-process on NumPy arrays (no Dask), so the ratio is algorithm and
vectorisation, not parallelism. Success: both fitted centres within 0.1 sigma of the truth.
xarray-lmfit is a benchmark-only dependency (``pip install xarray-lmfit``).

Usage::

    python benchmarks/bench_xarray.py --ny 20 --nx 20 --points 200
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time

import numpy as np
import xarray as xr

import peakfit
import peakfit.xarray as pxr


def make_cube(ny: int, nx: int, m: int, seed: int = 0) -> tuple[xr.DataArray, np.ndarray]:
    rng = np.random.default_rng(seed)
    e = np.linspace(100.0, 300.0, m)
    b = np.stack([rng.uniform(150, 170, (ny, nx)), rng.uniform(220, 240, (ny, nx))], -1)
    a = np.stack([rng.uniform(0.8, 1.2, (ny, nx)), rng.uniform(0.4, 0.8, (ny, nx))], -1)
    s = np.stack([rng.uniform(8, 12, (ny, nx)), rng.uniform(10, 15, (ny, nx))], -1)  # sigma
    data = 0.1 + (a[..., None] * np.exp(-0.5 * ((e - b[..., None]) / s[..., None]) ** 2)).sum(-2)
    data = data + 0.01 * rng.standard_normal(data.shape)
    da = xr.DataArray(data, dims=("y", "x", "shift"),
                      coords={"y": np.arange(ny), "x": np.arange(nx), "shift": e})
    return da, np.stack([b, s], -1)  # truth (ny, nx, 2 peaks, [centre, sigma])


def run_peakfit(da: xr.DataArray) -> tuple[float, np.ndarray]:
    t = time.perf_counter()
    ds = pxr.fit(da, "shift", n=2, baseline="constant")
    dt = time.perf_counter() - t
    return dt, ds.coefficients.sel(param=["b1", "b2"]).values


def run_xlm(da: xr.DataArray, truth: np.ndarray) -> tuple[float, np.ndarray]:
    import lmfit
    import xarray_lmfit  # noqa: F401  (registers .xlm)

    model = (lmfit.models.GaussianModel(prefix="p1_") + lmfit.models.GaussianModel(prefix="p2_")
             + lmfit.models.ConstantModel())
    b = truth[..., 0].reshape(-1, 2).mean(0)
    s = truth[..., 1].reshape(-1, 2).mean(0)
    params = model.make_params(
        p1_center=b[0], p1_sigma=s[0], p1_amplitude=1.0 * s[0] * math.sqrt(2 * math.pi),
        p2_center=b[1], p2_sigma=s[1], p2_amplitude=0.6 * s[1] * math.sqrt(2 * math.pi),
        c=0.1)
    t = time.perf_counter()
    ds = da.xlm.modelfit("shift", model=model, params=params, output_result=False)
    dt = time.perf_counter() - t
    return dt, ds.modelfit_coefficients.sel(param=["p1_center", "p2_center"]).values


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ny", type=int, default=20)
    ap.add_argument("--nx", type=int, default=20)
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    da, truth = make_cube(args.ny, args.nx, args.points, args.seed)
    k = args.ny * args.nx
    pxr.fit(da.isel(y=slice(0, 1), x=slice(0, 2)), "shift", n=2, baseline="constant")  # warm-up
    t_pf, b_pf = run_peakfit(da)
    t_xl, b_xl = run_xlm(da, truth)
    tol = 0.1 * truth[..., 1]
    ok_pf = float(np.mean(np.all(np.abs(np.sort(b_pf, -1) - truth[..., 0]) < tol, -1)))
    ok_xl = float(np.mean(np.all(np.abs(np.sort(b_xl, -1) - truth[..., 0]) < tol, -1)))
    res = {
        "cube": [args.ny, args.nx, args.points], "spectra": k,
        "peakfit": {"seconds": round(t_pf, 4), "fits_per_s": round(k / t_pf, 1),
                    "success": ok_pf, "engine": peakfit.get_engine()},
        "xarray_lmfit": {"seconds": round(t_xl, 4), "fits_per_s": round(k / t_xl, 1),
                         "success": ok_xl},
        "speedup": round(t_xl / t_pf, 1),
        "python": platform.python_version(), "xarray": xr.__version__,
    }
    if args.json:
        print(json.dumps(res))
    else:
        print(f"cube {args.ny}x{args.nx}x{args.points} ({k} spectra)")
        for name in ("peakfit", "xarray_lmfit"):
            r = res[name]
            print(f"  {name:<13} {r['seconds']:8.3f} s  {r['fits_per_s']:10.1f} fits/s  "
                  f"success {r['success']:.3f}")
        print(f"  speed-up {res['speedup']}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
