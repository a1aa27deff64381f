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


# ------------------------------------------------ gallery examples (docs/gen_pages.py)
def run_gallery_example(name: str, tmp_path: Path, monkeypatch, capsys) -> tuple[str, list]:
    """Run a gallery script as the site build does: in-process, Agg, figures left open."""
    import runpy

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.close("all")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / name)])
    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    figs = [plt.figure(i) for i in plt.get_fignums()]
    return capsys.readouterr().out, figs


def _gallery_list() -> list[str]:
    text = (REPO / "docs" / "gen_pages.py").read_text()
    return re.findall(r'^    "(\w+\.py)",$', text[text.index("GALLERY = ["):], re.M)


def test_every_example_is_in_the_gallery_or_tested_elsewhere():
    gallery = _gallery_list()
    assert gallery[:4] == ["plot_4peaks.py", "matlab_display.py", "start_hard.py",
                           "batch_map.py"]
    # gd_demo.py runs the full-size demo (minutes); gd_figures.py shows its quick mode
    assert set(gallery) | {"gd_demo.py"} == {p.name for p in EXAMPLES.glob("*.py")}
    for name in gallery:
        text = (EXAMPLES / name).read_text()
        assert text.startswith('"""') and f"python examples/{name}" in text, name


def test_plot_4peaks(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    out, figs = run_gallery_example("plot_4peaks.py", tmp_path, monkeypatch, capsys)
    rows = [line.split() for line in out.splitlines()[1:5]]
    assert [r[0] for r in rows] == ["1", "2", "3", "4"]
    table = np.array([[float(v) for v in r[1:]] for r in rows])
    np.testing.assert_allclose(table[:, 1], [470, 492, 560, 620], atol=0.1)
    np.testing.assert_allclose(table[:, 2], [12, 10, 18, 14], rtol=0.02)
    np.testing.assert_allclose(table[:, 3], 2 * np.sqrt(np.log(2)) * table[:, 2], rtol=1e-3)
    rmse = float(re.search(r"RMSE ([\d.]+)", out).group(1))
    assert 0.0095 < rmse < 0.011  # the noise sd is 0.01
    (fig,) = figs
    main, res = fig.axes
    assert len(main.lines) == 2 + 4 and len(res.lines) == 2  # data, fit, 4 peaks; zero, residuals


def test_matlab_display(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    out, figs = run_gallery_example("matlab_display.py", tmp_path, monkeypatch, capsys)
    lines = out.splitlines()
    assert lines[0].split("   ")[0] == "MATLAB: fit(x, y, 'gauss3')"
    assert lines[0].endswith("peakfit: fit_gaussians(x, y, 3)")
    coef = [line for line in lines if re.match(r"\s+[abc][123] =", line)]
    assert len(coef) == 9
    for line in coef:  # same data and the same peak order: the two columns agree
        left, right = line[:len(line) // 2], line[len(line) // 2:]
        assert left.split() == right.split(), line
    diff = float(re.search(r"max .* = (\S+)$", out, re.M).group(1))
    assert diff < 1e-5
    its = [int(v) for v in re.search(r"MATLAB start (\d+), robust start (\d+)", out).groups()]
    assert its[1] <= its[0]
    (fig,) = figs
    assert len(fig.axes[0].lines) == 3


def test_start_hard(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    out, figs = run_gallery_example("start_hard.py", tmp_path, monkeypatch, capsys)
    heads = [line for line in out.splitlines() if not line.startswith(" ")]
    assert len(heads) == 4
    assert all(": success (" in h for h in heads), heads
    # MATLAB's start misses the close pair of unequal peaks: the reason for start='auto'
    assert heads[0].endswith("from MATLAB's start: FAILED")
    blocks = out.split("  true centres")[1:]
    for block in blocks:
        true, start, fitted = (np.array(line.split()[-4:], dtype=float)
                               for line in block.splitlines()[:3])
        spread = np.diff(true).min()
        assert np.all(np.abs(fitted - true) < 0.05 * spread)
        assert np.all(np.abs(start - true) < 0.05 * spread)
    (fig,) = figs
    assert len(fig.axes) == 4 and all(len(ax.lines) == 8 for ax in fig.axes)


def test_batch_map(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    out, figs = run_gallery_example("batch_map.py", tmp_path, monkeypatch, capsys)
    assert out.startswith("4800 spectra of 400 points\nBatchFit: 4800 spectra, Gauss3, device cpu")
    assert re.search(r"^  converged\s+4800  \(100.00 %\)$", out, re.M)
    med, mx = (float(v) for v in re.search(r"median ([\d.]+), max ([\d.]+)", out).groups())
    assert med < 0.05 and mx < 0.3  # of a 6-unit shift
    (fig,) = figs
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2 and all(im.get_array().shape == (60, 80) for im in images)


def test_gd_figures(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    out, figs = run_gallery_example("gd_figures.py", tmp_path, monkeypatch, capsys)
    n = int(re.match(r"(\d+) figures in", out).group(1))
    assert n == len(figs) == 16  # 13 + hogwild, hogwild_sparsity, saturation (issue #13)
    edge = float(re.search(r"edge found at ([\d.]+) x", out).group(1))
    assert 0.9 < edge < 1.1
    sizes = {tuple(f.get_size_inches() * f.dpi) for f in figs}
    assert all(w > 300 and h > 200 for w, h in sizes)
