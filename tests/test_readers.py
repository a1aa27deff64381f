"""Text readers on real files as they are, and on the layouts users bring (issue #14, item 3)."""

from __future__ import annotations

import io
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from peakfit.errors import FileFormatError, InputError
from peakfit.io import count_spectra, load_spectra

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------
# the shared reference files, unmodified
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,m,x0,y0,x_last", [
    ("Gauss1", 250, 1.0, 97.62227, 250.0),
    ("Gauss2", 250, 1.0, 97.58776, 250.0),
    ("Gauss3", 250, 1.0, 97.58776, 250.0),
    ("Eckerle4", 35, 400.0, 0.0001575, 500.0),
    ("Lanczos1", 24, 0.0, 2.5134, 1.15),
])
def test_nist_strd_files_read_without_options(shared_data, name, m, x0, y0, x_last):
    """The 60-line preamble is skipped and 'Data: y x' names the columns: x is column 2."""
    path = shared_data / "nist_strd" / f"{name}.dat"
    s = load_spectra(path)
    assert (s.k, s.m, s.names) == (1, m, ("y",))
    assert (s.x[0], s.Y[0, 0], s.x[-1]) == (x0, y0, x_last)
    old = load_spectra(path, skip_header=60, x=1, y=0)  # the explicit way gives the same
    np.testing.assert_array_equal(s.x, old.x)
    np.testing.assert_array_equal(s.Y, old.Y)
    assert count_spectra(path) == 1


def test_nist_gauss1_fit_from_the_file_reaches_certified_values(shared_data, reference_values):
    import peakfit

    s = load_spectra(shared_data / "nist_strd" / "Gauss1.dat")
    r = peakfit.fit_gaussians(s.x, s.Y[0], 2, baseline="exponential")
    assert abs(r.gof.sse - 1315.8222432) / 1315.8222432 < 1e-8


def test_lmfit_example_files(shared_data):
    d = shared_data / "lmfit_examples"
    g2 = load_spectra(d / "NIST_Gauss2.dat")  # '#' preamble, '# Data: y x' above the data
    nist = load_spectra(shared_data / "nist_strd" / "Gauss2.dat")
    np.testing.assert_array_equal(g2.x, nist.x)
    np.testing.assert_array_equal(g2.Y, nist.Y)
    t = load_spectra(d / "test_peak.dat")  # '#  t  y'
    assert (t.m, t.names, t.x[1], t.Y[0, 0]) == (401, ("y",), 0.05, 0.021654)
    m1 = load_spectra(d / "model1d_gauss.dat")  # '#  col1  col2'
    assert (m1.m, m1.names, m1.x[-1], m1.Y[0, 0]) == (101, ("col2",), 10.0, -0.305196)


def test_lidar_text_equals_npy(shared_data):
    for w in (1, 2):
        s = load_spectra(shared_data / "lidar_waveform" / f"waveform_{w}.txt")
        assert s.names == ("amplitude",)
        np.testing.assert_array_equal(
            s.Y[0], np.load(shared_data / "lidar_waveform" / f"waveform_{w}.npy"))
        assert s.x.tolist() == list(range(80))


# ------------------------------------------------------------------------------------------
# layouts and conventions
# ------------------------------------------------------------------------------------------


def test_title_and_comment_lines_then_named_columns(tmp_path):
    p = write(tmp_path / "run.txt",
              "Raman map, point 3\nacquired 2026-01-02, 10 s\n\n"
              "shift;counts;dark\n100;5;1\n101;6;1\n102;7;2\n103;8;2\n104;9;3\n105;10;3\n")
    s = load_spectra(p)
    assert s.names == ("counts", "dark") and s.x.tolist() == [100, 101, 102, 103, 104, 105]
    s = load_spectra(p, x="shift", y="counts")
    assert s.Y.tolist() == [[5, 6, 7, 8, 9, 10]]


@pytest.mark.parametrize("ext", [".xy", "", ".dat"])
def test_xy_and_extensionless_files_are_text(tmp_path, ext):
    p = write(tmp_path / f"spec{ext}", "0 1\n1 3\n2 1\n")
    s = load_spectra(p)
    assert s.x.tolist() == [0, 1, 2] and s.Y.tolist() == [[1, 3, 1]]


def test_extensionless_npy_is_recognised(tmp_path):
    p = tmp_path / "arr"
    with open(p, "wb") as fh:
        np.save(fh, np.arange(6.0).reshape(2, 3))
    assert load_spectra(p).Y.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_decimal_comma(tmp_path):
    p = write(tmp_path / "de.csv", "x;y\n0,5;1,25\n1,5;2,5\n2,5;1.000,5\n")
    s = load_spectra(p, decimal=",")
    assert s.x.tolist() == [0.5, 1.5, 2.5] and s.Y.tolist() == [[1.25, 2.5, 1000.5]]
    w = write(tmp_path / "de.txt", "0,5\t1,25\n1,5\t2,5\n")
    assert load_spectra(w, decimal=",").Y.tolist() == [[1.25, 2.5]]
    # without the option the error names the cell and suggests it
    with pytest.raises(FileFormatError, match=r"line 2, column 1: cell '0,5' is not a number "
                                              r"\(a decimal comma\? use decimal=','"):
        load_spectra(p)
    with pytest.raises(InputError, match="decimal must be"):
        load_spectra(p, decimal=";")


def test_quoted_numbers_with_thousands_separators(tmp_path):
    p = write(tmp_path / "q.csv", 'x,y\n1,"1,234.5"\n2,"2,000"\n3,"12"\n')
    s = load_spectra(p)
    assert s.Y.tolist() == [[1234.5, 2000.0, 12.0]]
    bad = write(tmp_path / "b.csv", 'x,y\n1,"1,23,4"\n')
    with pytest.raises(FileFormatError, match=r"line 2, column 2: cell '1,23,4' is not a"):
        load_spectra(bad)


def _row_file(tmp_path: Path, k: int, m: int, with_x: bool) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    x = np.linspace(0, 10, m)
    centres = rng.uniform(3, 7, k)
    Y = np.exp(-((x[None, :] - centres[:, None]) / 0.8) ** 2) + 0.01 * rng.standard_normal((k, m))
    rows = ([x] if with_x else []) + list(Y)
    p = tmp_path / f"rows{k}x{m}.csv"
    np.savetxt(p, np.array(rows), delimiter=",", fmt="%.10g")
    return p, centres


def test_one_spectrum_per_row_csv_is_detected(tmp_path):
    """Before: 299 'converged' spectra of R² 0.002 (the rows read as columns)."""
    import peakfit

    p, centres = _row_file(tmp_path, 12, 300, with_x=True)
    with pytest.warns(UserWarning, match=r"read as one spectrum per line \(12 spectra of 300 "
                                         r"values, x from the first line\)"):
        s = load_spectra(p)
    assert (s.k, s.m) == (12, 300) and s.x[-1] == 10.0
    r = peakfit.fit_gaussians_batch(s.x, s.Y, n=1, device="cpu")
    np.testing.assert_allclose(r.means[:, 0], centres, atol=0.01)
    assert r.rsquare.min() > 0.99
    with pytest.warns(UserWarning, match="one spectrum per line"):
        assert count_spectra(p) == 12
    p2, _ = _row_file(tmp_path, 5, 40, with_x=False)
    with pytest.warns(UserWarning, match=r"\(5 spectra of 40 values\)"):
        assert load_spectra(p2).x.tolist() == list(range(40))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_spectra(p, layout="columns").k == 299  # asked for: no guessing


def test_wide_file_with_monotonic_first_column_reads_columns_with_warning(tmp_path):
    data = np.column_stack([np.arange(5.0), np.ones((5, 30))])
    p = tmp_path / "wide.csv"
    np.savetxt(p, data, delimiter=",")
    with pytest.warns(UserWarning, match=r"lines have 31 cells but there are only 5 lines; "
                                         r"reading columns"):
        assert load_spectra(p).k == 30


def test_standard_input(monkeypatch):
    import peakfit.io as pio

    monkeypatch.setattr(pio, "_STDIN_CACHE", {})
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"# t y\n0 1\n1 2\n2 1\n")))
    s = load_spectra("-")
    assert s.source == "<stdin>" and s.names == ("y",) and s.Y.tolist() == [[1, 2, 1]]
    monkeypatch.setattr(pio, "_STDIN_CACHE", {})
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    with pytest.raises(FileFormatError, match="<stdin>: standard input is empty"):
        load_spectra("-")


def test_cli_reads_stdin_and_named_columns(tmp_path):
    text = "".join(f"{t} {np.exp(-((t - 20) / 4) ** 2) * 50 + 3:.6f} 7\n" for t in range(60))
    proc = subprocess.run(
        [sys.executable, "-m", "peakfit", "fit", "-", "-n", "1", "--baseline", "constant",
         "--y", "1", "--format", "csv"],
        input="# t counts other\n" + text, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("source,index,name,peak,centre,centre_err")
    fields = lines[1].split(",")
    assert fields[:4] == ["<stdin>", "0", "counts", "1"] and abs(float(fields[4]) - 20) < 1e-4


def test_many_spectra_per_line_with_an_x_line(tmp_path):
    """More spectra than points: the x line (monotonic, alone) still shows the layout."""
    p, _ = _row_file(tmp_path, 60, 30, with_x=True)
    with pytest.warns(UserWarning, match=r"read as one spectrum per line \(spectra of 30 "
                                         r"values, x from the first line\)"):
        s = load_spectra(p)
    assert (s.k, s.m) == (60, 30)


def test_header_true_keeps_its_meaning(tmp_path):
    p = write(tmp_path / "h.csv", "10,20\n1,2\n3,4\n")
    s = load_spectra(p, header=True)
    assert s.names == ("20",) and s.x.tolist() == [1, 3]
