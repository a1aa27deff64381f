"""Run the benchmarks with small sizes and commit their results here as JSON (for the docs).

Usage::

    python benchmarks/results/collect.py            # all three benchmarks
    python benchmarks/results/collect.py batch      # only bench_batch.py
    python benchmarks/results/collect.py batch_gpu  # on a machine with CuPy and a CUDA GPU

Every output file ``benchmarks/results/<name>.json`` holds the machine (CPU model, logical
CPUs, OS), the UTC date, the exact commands and the JSON records the benchmark printed. The
performance page of the documentation (``docs/gen_pages.py``) draws its plots from these files;
nothing is timed while the site is built.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

#: the exact benchmark commands (arguments after ``python``), small enough for a 2-core VM
COMMANDS: dict[str, list[list[str]]] = {
    "batch": [
        ["benchmarks/bench_batch.py", "--device", "cpu", "--dtype", "float64",
         "--engine", "numpy", "numba", "--spectra", str(k), "--points", "1000", "--peaks", "4",
         "--subset", "40", "--repeat", "2"]
        for k in (100, 300, 1000, 3000)
    ],
    "single": [["benchmarks/bench_single.py", "--spectra", "40", "--points", "1000", "--json"]],
    "start": [["benchmarks/bench_start.py", "--count", "400", "--seed", "1", "--json", "-"]],
}

#: not run by default: needs CuPy and a CUDA device (the page lists its records when present)
GPU_COMMANDS: dict[str, list[list[str]]] = {
    "batch_gpu": [
        ["benchmarks/bench_batch.py", "--device", "gpu", "--dtype", "float32", "float64",
         "--spectra", str(k), "--points", "1000", "--peaks", "4", "--subset", "40"]
        for k in (10_000, 100_000, 1_000_000)
    ],
}

#: stated on the performance page: the numbers were measured on this kind of machine
MACHINE_NOTE = ("ratios within one run are more reliable than absolute figures; load_average is "
                "the 1-minute load when the benchmark started (other jobs raise it)")


def machine() -> dict[str, object]:
    """CPU model, logical CPUs and OS of this machine."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "logical_cpus": len(os.sched_getaffinity(0)),
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "load_average": round(os.getloadavg()[0], 2),
            "note": MACHINE_NOTE}


def run(name: str) -> Path:
    """Run the commands of benchmark ``name`` and write ``<name>.json``; return its path."""
    records, commands = [], []
    for args in {**COMMANDS, **GPU_COMMANDS}[name]:
        commands.append("python " + " ".join(args))
        proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                              check=True)
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                records.append(json.loads(line))
    gpu = sorted({r["device"] for r in records if str(r.get("device", "")).startswith("gpu")})
    doc = {"benchmark": f"benchmarks/bench_{name.split('_')[0]}.py", "machine": machine(),
           "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "commands": commands, "gpu_measured": bool(gpu), "gpu": gpu, "records": records}
    path = HERE / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


if __name__ == "__main__":
    for name in sys.argv[1:] or list(COMMANDS):
        print(run(name))
