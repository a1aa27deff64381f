"""Cost of safe result tables next to the fitting they record (prints JSON).

Fits one chunk of synthetic spectra with ``fit_gaussians_batch`` and times, in the same run:
committing that chunk's table to CSV, Parquet and HDF5 with :class:`peakfit.tables.ResultWriter`
(each commit atomic and fsync-ed, under the table's lock), the same rows appended by pandas
``to_csv`` without any of that (the unsafe baseline), and the SHA-256 fingerprint of an input
file.  ``commit_vs_fit`` is the commit time of one chunk over its fitting time.

Run: ``python benchmarks/bench_tables.py [--k 1000] [--m 500] [--chunks 20]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _synth_batch import make_batch

from peakfit.batch import fit_gaussians_batch
from peakfit.tables import ResultWriter, file_fingerprint


def _table(fit_table: dict, k: int, lo: int) -> dict:
    out = {"source": ["bench.h5"] * k, "index": np.arange(lo, lo + k)}
    out.update({c: v for c, v in fit_table.items() if c != "index"})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=1000, help="spectra per chunk")
    ap.add_argument("--m", type=int, default=500, help="points per spectrum")
    ap.add_argument("--chunks", type=int, default=20, help="chunks committed per format")
    args = ap.parse_args()
    x, Y, _ = make_batch(args.k, args.m, 2, seed=0)
    t0 = time.perf_counter()
    fit = fit_gaussians_batch(x, Y, 2, device="cpu").to_table()
    t_fit = time.perf_counter() - t0
    rows = []
    with tempfile.TemporaryDirectory() as d:
        formats = ["csv"]
        try:
            import pyarrow  # noqa: F401

            formats.append("parquet")
        except ImportError:
            pass
        try:
            import h5py  # noqa: F401

            formats.append("h5")
        except ImportError:
            pass
        for fmt in formats:
            path = os.path.join(d, f"t.{fmt}")
            t0 = time.perf_counter()
            with ResultWriter(path, settings={"n": 2}) as w:
                for c in range(args.chunks):
                    w.write_chunk(_table(fit, args.k, c * args.k))
            dt = (time.perf_counter() - t0) / args.chunks
            rows.append({"writer": f"ResultWriter {fmt}", "seconds_per_chunk": dt,
                         "rows_per_s": args.k / dt, "commit_vs_fit": dt / t_fit})
        try:
            import pandas as pd

            path = os.path.join(d, "plain.csv")
            t0 = time.perf_counter()
            for c in range(args.chunks):
                pd.DataFrame(_table(fit, args.k, c * args.k)).to_csv(
                    path, mode="a", header=c == 0, index=False)
            dt = (time.perf_counter() - t0) / args.chunks
            rows.append({"writer": "pandas to_csv (no fsync, no lock, no resume)",
                         "seconds_per_chunk": dt, "rows_per_s": args.k / dt,
                         "commit_vs_fit": dt / t_fit})
        except ImportError:
            pass
        big = os.path.join(d, "input.bin")
        with open(big, "wb") as fh:
            fh.write(os.urandom(64 << 20))
        t0 = time.perf_counter()
        file_fingerprint(big)
        mb_s = 64 / (time.perf_counter() - t0)
    print(json.dumps({"k": args.k, "m": args.m, "fit_seconds_per_chunk": t_fit,
                      "writers": rows, "fingerprint_MB_per_s": mb_s}, indent=1))


if __name__ == "__main__":
    main()
