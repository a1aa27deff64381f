"""Batch-fit every spectrum in a folder of files with ``peakfit batch``, then read the table.

Run it with ``python examples/batch_folder.py [FOLDER]``. It writes four CSV files (an ``x``
column and five spectra each, four peaks per spectrum whose centres drift from file to file)
into FOLDER/spectra (FOLDER defaults to a new temporary folder) and runs the equivalent of

    peakfit batch FOLDER/spectra -n 4 -o FOLDER/results.csv --chunk-size 8

Rerunning the command resumes: spectra already in ``results.csv`` are skipped.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

import peakfit
from peakfit.cli import main as peakfit_main
from peakfit.io import read_table

CENTRES = np.array([470.0, 492.0, 560.0, 620.0])


def write_folder(folder: Path, n_files: int = 4, per_file: int = 5) -> list[Path]:
    """Synthetic spectra: file ``f``, spectrum ``j`` has its centres shifted by ``f + 0.2 j``."""
    x = np.linspace(400, 700, 1200)
    rng = np.random.default_rng(7)
    model = peakfit.GaussianModel(4)
    paths = []
    for f in range(n_files):
        cols = []
        for j in range(per_file):
            b = CENTRES + f + 0.2 * j
            p = np.column_stack([[1.0, 0.65, 0.8, 0.4], b, [12.0, 10.0, 18.0, 14.0]]).ravel()
            cols.append(model(x, p) + 0.01 * rng.standard_normal(x.size))
        path = folder / f"run{f}.csv"
        header = ",".join(["x"] + [f"shot{j}" for j in range(per_file)])
        np.savetxt(path, np.column_stack([x, *cols]), delimiter=",", header=header,
                   comments="", fmt="%.8g")
        paths.append(path)
    return paths


def main(folder: str | None = None) -> dict:
    """Write the files, run ``peakfit batch`` on the folder, print and return the table."""
    out = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="peakfit-batch-"))
    spectra = out / "spectra"
    spectra.mkdir(parents=True, exist_ok=True)
    write_folder(spectra)
    results = out / "results.csv"
    rc = peakfit_main(["batch", str(spectra), "-n", "4", "-o", str(results),
                       "--chunk-size", "8"])
    if rc not in (0, 1):
        raise SystemExit(rc)
    table = read_table(results)
    print(f"{'source':<28} {'index':>5} {'state':<10} " + " ".join(f"mean{i}" .rjust(9)
                                                                for i in range(1, 5)))
    for i in np.lexsort((table["index"], table["source"])):
        means = " ".join(f"{table[f'mean{k}'][i]:9.3f}" for k in range(1, 5))
        print(f"{Path(table['source'][i]).name:<28} {table['index'][i]:>5} "
              f"{table['state'][i]:<10} {means}")
    return table


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
