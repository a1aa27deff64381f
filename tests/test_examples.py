"""Every script in ``examples/`` runs and produces the numbers it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def run_example(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_the_issue_examples_exist():
    # other examples (e.g. gd_demo.py) are tested beside their modules
    tested = {"seed_4peaks.py", "batch_folder.py", "compare_matlab.py"}
    assert tested <= {p.name for p in EXAMPLES.glob("*.py")}


def test_seed_4peaks(tmp_path):
    proc = run_example("seed_4peaks.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("     General model Gauss4:\n")
    assert "Coefficients (with 95% confidence bounds):" in out and "Goodness of fit:" in out
    means = [float(v) for v in re.search(r"^Means \(sorted\): (.*)$", out, re.M).group(1).split()]
    assert means == sorted(means)
    np.testing.assert_allclose(means, [470, 492, 560, 620], atol=0.5)
    fwhm = [float(v) for v in re.search(r"^FWHM: (.*)$", out, re.M).group(1).split()]
    # true c = 12, 10, 18, 14 -> FWHM = 2 sqrt(ln 2) c
    np.testing.assert_allclose(fwhm, 2 * np.sqrt(np.log(2)) * np.array([12, 10, 18, 14]),
                               rtol=0.05)


def test_compare_matlab_example(tmp_path):
    proc = run_example("compare_matlab.py", str(tmp_path / "cmp"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "AGREE: all 9 coefficients of peakfit match MATLAB (rtol 0.001)." in proc.stdout
    assert "Peaks matched by centre (MATLAB term <- peakfit term): 1<-1, 2<-2, 3<-3" in proc.stdout
    text = (tmp_path / "cmp" / "matlab_output.txt").read_text()
    assert "       b2 =         540  (539.9, 540)" in text


def test_batch_folder_example(tmp_path):
    from peakfit.io import read_table

    folder = tmp_path / "batch"
    proc = run_example("batch_folder.py", str(folder), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = read_table(folder / "results.csv")
    keys = sorted(zip(table["source"].tolist(), table["index"].tolist()))
    assert keys == sorted((str(folder / "spectra" / f"run{f}.csv"), j)
                          for f in range(4) for j in range(5))
    assert set(table["state"].tolist()) == {"converged"}
    f = np.array([int(Path(s).stem[3:]) for s in table["source"]])
    expected = np.array([470.0, 492.0, 560.0, 620.0]) + (f + 0.2 * table["index"])[:, None]
    means = np.column_stack([table[f"mean{k}"] for k in range(1, 5)])
    np.testing.assert_allclose(means, expected, atol=0.2)
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{folder / 'results.csv'}: 20 spectra, 20 converged, 0 not converged"
    assert lines[1].split() == ["source", "index", "state", "mean1", "mean2", "mean3", "mean4"]
    assert len(lines) == 2 + 20 and lines[2].split()[:3] == ["run0.csv", "0", "converged"]
    # rerunning resumes: nothing to fit, the table is unchanged
    before = (folder / "results.csv").read_bytes()
    proc = run_example("batch_folder.py", str(folder), cwd=tmp_path)
    assert proc.returncode == 0
    assert (folder / "results.csv").read_bytes() == before


@pytest.mark.parametrize("name", ["seed_4peaks.py", "batch_folder.py", "compare_matlab.py"])
def test_examples_have_a_docstring_that_says_how_to_run_them(name):
    text = (EXAMPLES / name).read_text()
    assert text.startswith('"""') and f"python examples/{name}" in text
