"""The ``peakfit`` command line: every subcommand, its output, its errors and exit codes."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import peakfit
from peakfit import cli
from peakfit import matlab as pf_matlab
from peakfit.cli import main

REPO = Path(__file__).resolve().parents[1]
X = np.linspace(0.0, 100.0, 401)
# three files x three spectra, two peaks each; file f, spectrum j -> centres shift with (f, j)
PARAMS = {
    (f, j): [3.0 + j, 30.0 + 2 * f + j, 5.0, 2.0, 62.0 - f + 0.5 * j, 7.0]
    for f in range(3)
    for j in range(3)
}


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def spectrum(p, seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    return peakfit.GaussianModel(len(p) // 3)(X, np.array(p)) + noise * rng.standard_normal(X.size)


def write_csv(path, x, columns: dict):
    names = ",".join(["x", *columns])
    data = np.column_stack([x, *columns.values()])
    np.savetxt(path, data, delimiter=",", header=names, comments="", fmt="%.17g")
    return path


@pytest.fixture()
def two_spectra(tmp_path):
    y1 = spectrum([3.0, 30.0, 5.0, 2.0, 60.0, 7.0], seed=1)
    y2 = spectrum([1.0, 40.0, 4.0, 2.5, 70.0, 6.0], seed=2)
    return write_csv(tmp_path / "two.csv", X, {"first": y1, "second": y2}), (y1, y2)


@pytest.fixture()
def folder(tmp_path):
    d = tmp_path / "spectra"
    d.mkdir()
    for f in range(3):
        cols = {f"s{j}": spectrum(PARAMS[f, j], seed=10 * f + j) for j in range(3)}
        write_csv(d / f"file{f}.csv", X, cols)
    return d


# ---------------------------------------------------------------------------------- demo


def test_demo_prints_display_and_sorted_means(capsys):
    rc, out, _err = run(capsys, "demo")
    assert rc == 0
    assert "     General model Gauss4:" in out
    assert "     Coefficients (with 95% confidence bounds):" in out
    assert "Goodness of fit:" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("Means (sorted): "))
    means = [float(v) for v in line.split(":")[1].split()]
    assert means == sorted(means)
    np.testing.assert_allclose(means, [470, 492, 560, 620], atol=0.5)


def test_demo_json_matches_the_library(capsys):
    from importlib import resources

    from peakfit.io import load_spectra

    rc, out, _ = run(capsys, "demo", "--json")
    assert rc == 0
    d = json.loads(out)
    with resources.as_file(resources.files("peakfit") / "data" / "example_4peaks.csv") as p:
        s = load_spectra(p)
    r = peakfit.fit_gaussians(s.x, s.Y[0], 4)
    assert d["means"] == r.means.tolist()
    assert d["coefficients"] == r.coefficients
    assert d["gof"]["dfe"] == 1200 - 12


def test_python_m_peakfit_demo_needs_only_numpy_and_scipy():
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        top = name.split('.')[0]\n"
        "        if top in {'matplotlib', 'pandas', 'h5py', 'pyarrow', 'lmfit', 'dask',\n"
        "                   'distributed', 'tqdm', 'cupy', 'torch'}:\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import runpy\n"
        "sys.argv = ['peakfit', 'demo']\n"
        "runpy.run_module('peakfit', run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "General model Gauss4:" in proc.stdout and "Means (sorted):" in proc.stdout


# ---------------------------------------------------------------------------------- fit


def test_fit_all_spectra_of_a_file(capsys, two_spectra):
    path, (y1, y2) = two_spectra
    rc, out, _ = run(capsys, "fit", path, "-n", 2)
    assert rc == 0
    assert out.count("     General model Gauss2:") == 2
    assert f"{path}: spectrum 0 (first), 401 points" in out
    assert f"{path}: spectrum 1 (second), 401 points" in out
    r1, r2 = peakfit.fit_gaussians(X, y1, 2), peakfit.fit_gaussians(X, y2, 2)
    assert r1.display("f") in out and r2.display("f") in out
    means = [ln for ln in out.splitlines() if ln.startswith("Means (sorted):")]
    assert means == [f"Means (sorted): {cli._fmt_means(r.means)}" for r in (r1, r2)]


def test_fit_json_index_and_solver_options(capsys, two_spectra):
    path, (y1, y2) = two_spectra
    rc, out, _ = run(capsys, "fit", path, "-n", 2, "--index", 1, "--json", "--tol-fun", "1e-10",
                     "--tol-x", "1e-10")
    assert rc == 0
    d = json.loads(out)
    assert d["source"] == str(path) and len(d["spectra"]) == 1
    s = d["spectra"][0]
    r = peakfit.fit_gaussians(X, y2, 2, tol_fun=1e-10, tol_x=1e-10)
    assert (s["index"], s["name"], s["state"]) == (1, "second", "converged")
    assert s["coefficients"] == r.coefficients
    assert s["means"] == r.means.tolist()
    np.testing.assert_allclose(s["means"], [40.0, 70.0], atol=0.05)
    # --start matlab is MATLAB's gaussnstart, and the terms stay sorted
    rc, out, _ = run(capsys, "fit", path, "-n", 2, "--index", 0, "--json", "--start", "matlab")
    s = json.loads(out)["spectra"][0]
    r = peakfit.fit_gaussians(X, y1, 2, start="matlab")
    assert rc == 0 and s["coefficients"] == r.coefficients
    np.testing.assert_allclose(s["means"], [30.0, 60.0], atol=0.05)


def test_fit_explicit_start_baseline_and_columns_by_name(capsys, tmp_path):
    y = peakfit.GaussianModel(1, "linear")(X, np.array([2.0, 45.0, 6.0, 0.5, 0.01]))
    path = write_csv(tmp_path / "b.csv", X, {"junk": np.zeros_like(X), "sig": y})
    rc, out, _ = run(capsys, "fit", path, "-n", 1, "--y", "sig", "--baseline", "linear",
                     "--start", "1,40,5,0,0", "--json")
    assert rc == 0
    s = json.loads(out)["spectra"][0]
    assert s["name"] == "sig" and s["baseline"] == "linear"
    np.testing.assert_allclose(list(s["coefficients"].values()), [2.0, 45.0, 6.0, 0.5, 0.01],
                               rtol=1e-6)


def test_fit_start_estimator_controls_are_passed_on(capsys, two_spectra):
    path, (y1, _) = two_spectra
    rc, out, _ = run(capsys, "fit", path, "-n", 2, "--index", 0, "--smooth", 5,
                     "--downsample", 3, "--json")
    assert rc == 0
    r = peakfit.fit_gaussians(X, y1, 2, smooth=5, downsample=3)
    assert json.loads(out)["spectra"][0]["coefficients"] == r.coefficients
    rc, _, err = run(capsys, "fit", path, "-n", 2, "--downsample", "abc")
    assert rc == 2 and "downsample must be a positive integer factor, got 'abc'" in err


def test_fit_not_converged_exits_1(capsys, two_spectra):
    path, _ = two_spectra
    rc, out, _err = run(capsys, "fit", path, "-n", 2, "--index", 0, "--start", "matlab",
                        "--max-iter", 1)
    assert rc == 1
    assert "Not converged: Fit computation did not converge" in out


# ---------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "{p}: file not found"),
        ("", "{p}: file is empty"),
        ("x,y\n1,2\n2,3,4\n3,4\n", "{p}, line 3: row has 3 columns but line 2 has 2"),
        ("x,y\n1,2\n2,abc\n3,4\n", "{p}, line 3, column 2: cell 'abc' is not a number"),
        ("# only a comment\n\n", "{p}: no data lines"),
    ],
    ids=["missing", "empty", "mixed-rows", "non-numeric", "comments-only"],
)
@pytest.mark.parametrize("command", ["fit", "plot", "batch", "compare-matlab"])
def test_bad_input_files_exit_2_naming_file_line_column(capsys, tmp_path, content, expected,
                                                        command):
    p = tmp_path / "data.csv"
    if content is not None:
        p.write_text(content)
    mat = tmp_path / "m.txt"
    mat.write_text("a1 = 1 (0, 2)\nb1 = 2 (1, 3)\nc1 = 3 (2, 4)\n")
    extra = {"fit": [], "plot": ["-o", tmp_path / "f.png"], "batch": ["-o", tmp_path / "o.csv"],
             "compare-matlab": ["--matlab", mat]}[command]
    rc, out, err = run(capsys, command, p, "-n", 1, *extra)
    assert rc == 2
    assert err.startswith("peakfit: error: " + expected.format(p=p))
    assert err.count("\n") == 1 and out == ""


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("bin.csv", b"x,y\n1,2\n\xff\xfe,3\n",
         "not a UTF-8 text file (invalid start byte at byte 8)"),
        ("bad.h5", b"garbage", "not a valid HDF5 file"),
        ("bad.mat", b"garbage", "not a valid MATLAB .mat file"),
        ("bad.npy", b"\x93NUMPY garbage", "not a valid .npy file (damaged header or data"),
        ("data.xyz", b"1,2\n", "unknown file extension '.xyz'"),
    ],
)
def test_unreadable_files_exit_2(capsys, tmp_path, name, content, expected):
    if name.endswith(".h5"):
        pytest.importorskip("h5py")
    p = tmp_path / name
    p.write_bytes(content)
    rc, out, err = run(capsys, "fit", p)
    assert rc == 2 and out == ""
    assert err.startswith(f"peakfit: error: {p}: {expected}")
    assert err.count("\n") == 1


def test_npy_with_objects_is_never_unpickled(capsys, tmp_path):
    p = tmp_path / "obj.npy"
    np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    rc, _, err = run(capsys, "fit", p, "-n", 1)
    assert rc == 2 and err.startswith(f"peakfit: error: {p}: ")


def test_mat_without_expected_variables(capsys, tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    p = tmp_path / "nov.mat"
    scipy_io.savemat(p, {"foo": np.ones(3)})
    rc, _, err = run(capsys, "fit", p)
    assert rc == 2
    assert err == (f"peakfit: error: {p}: no variable for the spectra (looked for 'Y', 'y', "
                   "'spectra'; pass --dataset); available: 'foo'\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit"], "the following arguments are required: FILE"),
        (["fit", "a.csv", "-n", "0"], "argument -n/--peaks: expected a positive integer, got '0'"),
        (["fit", "a.csv", "--start", "1,x"], "--start must be 'auto', 'matlab' or"),
        (["batch", "a.csv"], "the following arguments are required: -o/--out"),
        (["nonsense"], "argument COMMAND: invalid choice: 'nonsense'"),
        (["fit", "a.csv", "--baseline", "cubic"], "argument --baseline: invalid choice"),
    ],
)
def test_usage_errors_exit_2(capsys, argv, message):
    rc, _, err = run(capsys, *argv)
    assert rc == 2
    assert message in err


def test_no_command_prints_help_and_exits_2(capsys):
    rc, _, err = run(capsys)
    assert rc == 2 and "usage: peakfit" in err


def test_help_and_version_exit_0(capsys):
    assert run(capsys, "--version")[0] == 0
    rc, out, _ = run(capsys, "batch", "--help")
    assert rc == 0 and "--chunk-size K" in out


def test_index_out_of_range(capsys, two_spectra):
    path, _ = two_spectra
    rc, _, err = run(capsys, "fit", path, "--index", 5)
    assert rc == 2
    assert err == f"peakfit: error: --index 5: {path} holds 2 spectra (indices 0..1)\n"


def test_fit_of_invalid_data_names_the_spectrum(capsys, tmp_path):
    y = spectrum([3.0, 30.0, 5.0], seed=3)
    y[10] = np.nan
    p = write_csv(tmp_path / "nan.csv", X, {"y": y})
    rc, _, err = run(capsys, "fit", p, "-n", 1)
    assert rc == 2
    assert err.startswith(f"peakfit: error: {p}, spectrum 0 (y): ")
    assert "index 10" in err
    rc, out, _ = run(capsys, "fit", p, "-n", 1, "--nan-policy", "omit", "--json")
    assert rc == 0 and json.loads(out)["spectra"][0]["gof"]["dfe"] == 400 - 3


# ---------------------------------------------------------------------------------- plot


def test_plot_writes_png(capsys, two_spectra, tmp_path):
    pytest.importorskip("matplotlib")
    path, (_, y2) = two_spectra
    out_png = tmp_path / "fig" / "fit.png"
    out_png.parent.mkdir()
    rc, out, _ = run(capsys, "plot", path, "-n", 2, "--index", 1, "-o", out_png, "--dpi", 50)
    assert rc == 0
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = peakfit.fit_gaussians(X, y2, 2)
    assert out == (f"wrote {out_png} (spectrum 1 of {path}; means {cli._fmt_means(r.means)}; "
                   f"SSE {r.gof.sse:.6g})\n")


def test_plot_output_not_writable(capsys, two_spectra, tmp_path):
    pytest.importorskip("matplotlib")
    path, _ = two_spectra
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    rc, _, err = run(capsys, "plot", path, "-n", 2, "-o", blocker / "fit.png")
    assert rc == 2
    assert err.startswith(f"peakfit: error: cannot write {blocker / 'fit.png'}: ")


def test_plot_without_matplotlib(capsys, two_spectra, monkeypatch, tmp_path):
    path, _ = two_spectra
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    rc, _, err = run(capsys, "plot", path, "-o", tmp_path / "f.png")
    assert rc == 2
    assert err == ('peakfit: error: plotting needs matplotlib; install it with: '
                   'pip install "peakfit[plot]"\n')


# ---------------------------------------------------------------------------------- batch


def _direct_table(folder, chunk_size):
    """Rows the batch command must produce: fit_gaussians_batch on the same chunks of rows.

    (The 'auto' start picks its downsampling factor per call, so a row's numbers can depend on
    the rows fitted with it in the last digits; the command fits chunk by chunk.)
    """
    from peakfit.batch import fit_gaussians_batch
    from peakfit.io import load_spectra

    rows = {}
    for f in range(3):
        path = os.path.normpath(str(folder / f"file{f}.csv"))
        s = load_spectra(path)
        for i0 in range(0, s.k, chunk_size):
            t = fit_gaussians_batch(s.x, s.Y[i0 : i0 + chunk_size], 2).to_table()
            for i in range(t["index"].size):
                rows[(path, i0 + i)] = {k: v[i] for k, v in t.items() if k != "index"}
    return rows


def _as_rows(table):
    keys = list(zip(table["source"].tolist(), table["index"].tolist()))
    return keys, {k: {c: table[c][i] for c in table} for i, k in enumerate(keys)}


@pytest.mark.parametrize("ext", [".csv", ".parquet", ".h5"])
def test_batch_writes_one_row_per_spectrum(capsys, folder, tmp_path, ext):
    if ext == ".parquet":
        pytest.importorskip("pyarrow")
    if ext == ".h5":
        pytest.importorskip("h5py")
    from peakfit.io import read_table

    out = tmp_path / f"res{ext}"
    rc, stdout, err = run(capsys, "batch", folder, "-n", 2, "-o", out, "--chunk-size", 2)
    assert rc == 0
    assert stdout == f"{out}: 9 spectra, 9 converged, 0 not converged\n"
    assert f"peakfit: 9 spectra from 3 file(s) in {out}: 9 fitted now, 0 already done; " \
           "0 not converged" in err
    table = read_table(out)
    cols = list(table)
    assert cols[:7] == ["source", "index", "name", "state", "state_code", "exitflag", "sse"]
    for c in ("rsquare", "mean1", "mean2", "a1", "b1", "c1", "a2", "b2", "c2", "a1_err",
              "c2_err"):
        assert c in cols
    keys, rows = _as_rows(table)
    expected = _direct_table(folder, 2)
    assert sorted(keys) == sorted(expected) and len(keys) == 9
    for key, row in rows.items():
        assert row["state"] == "converged"
        assert row["name"] == f"s{key[1]}"
        for c, v in expected[key].items():
            np.testing.assert_array_equal(row[c], v, err_msg=f"{key} {c}")
    f, j = 2, 1
    np.testing.assert_allclose([rows[(os.path.normpath(str(folder / "file2.csv")), 1)][c]
                                for c in ("mean1", "mean2")],
                               [PARAMS[f, j][1], PARAMS[f, j][4]], atol=0.05)


def test_batch_resume_after_interrupts_gives_every_spectrum_once(capsys, folder, tmp_path,
                                                                 monkeypatch):
    from peakfit.io import read_table

    files = [folder / f"file{f}.csv" for f in range(3)]
    argv = ["batch", *files, "-n", 2, "--chunk-size", 2]
    ref = tmp_path / "ref.csv"
    assert run(capsys, *argv, "-o", ref)[0] == 0
    out = tmp_path / "res.csv"
    real = cli._fit_chunk
    calls = {"n": 0}

    def interrupt_on_second(x, Y, args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(x, Y, args)

    monkeypatch.setattr(cli, "_fit_chunk", interrupt_on_second)
    rc, _, err = run(capsys, *argv, "-o", out)
    assert rc == 130
    assert err.endswith(f"peakfit: interrupted; 2 spectra committed to {out} in this run. "
                        "Rerun the same command to resume.\n")
    assert len(read_table(out)["index"]) == 2

    calls["n"] = 0  # second run: interrupted again, after one more chunk
    rc, _, err = run(capsys, *argv, "-o", out)
    assert rc == 130
    assert f"peakfit: resuming {out}: 2 of 9 spectra already done" in err
    assert len(read_table(out)["index"]) == 3  # file0's chunks (2 + 1)

    monkeypatch.setattr(cli, "_fit_chunk", real)
    rc, _stdout, err = run(capsys, *argv, "-o", out)
    assert rc == 0
    assert "3 of 9 spectra already done" in err and "6 fitted now, 3 already done" in err

    def must_not_fit(*a):
        raise AssertionError("a finished table must not be fitted again")

    monkeypatch.setattr(cli, "_fit_chunk", must_not_fit)
    assert run(capsys, *argv, "-o", out)[0] == 0

    keys, rows = _as_rows(read_table(out))
    ref_keys, ref_rows = _as_rows(read_table(ref))
    assert len(keys) == len(set(keys)) == 9
    assert sorted(keys) == sorted(ref_keys)
    for k in keys:
        for c, v in ref_rows[k].items():
            np.testing.assert_array_equal(rows[k][c], v, err_msg=f"{k} {c}")


def test_batch_reports_non_converged_and_exits_1(capsys, folder, tmp_path):
    out = tmp_path / "r.csv"
    rc, stdout, _ = run(capsys, "batch", folder / "file0.csv", "-n", 2, "-o", out,
                        "--start", "matlab", "--max-iter", 1, "--quiet")
    assert rc == 1
    assert stdout == f"{out}: 3 spectra, 0 converged, 3 not converged\n"
    # a rerun (nothing to do) reports the same from the table
    rc, stdout, _ = run(capsys, "batch", folder / "file0.csv", "-n", 2, "-o", out,
                        "--start", "matlab", "--max-iter", 1, "--quiet")
    assert rc == 1 and stdout == f"{out}: 3 spectra, 0 converged, 3 not converged\n"


def test_batch_output_not_writable(capsys, folder, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    rc, _, err = run(capsys, "batch", folder, "-n", 2, "-o", blocker / "out.csv")
    assert rc == 2
    assert err.startswith(f"peakfit: error: cannot write result table {blocker / 'out.csv'}: ")


def test_batch_malformed_file_midway_keeps_committed_rows_and_resumes(capsys, folder, tmp_path):
    from peakfit.io import read_table

    bad = folder / "zz_bad.csv"
    bad.write_text("x,y\n" + "".join(f"{v},{v}\n" for v in range(12)) + "12,3,4\n")
    out = tmp_path / "r.csv"
    rc, _, err = run(capsys, "batch", folder, "-n", 1, "-o", out)
    assert rc == 2
    assert err.endswith(f"peakfit: error: {bad}, line 14: row has 3 columns but line 2 has 2\n")
    assert len(read_table(out)["index"]) == 9  # the good files were committed
    bad.write_text("x,y\n" + "".join(f"{v},{np.exp(-((v - 6) / 2) ** 2)}\n" for v in range(13)))
    rc, stdout, _ = run(capsys, "batch", folder, "-n", 1, "-o", out)
    assert rc == 0 and stdout == f"{out}: 10 spectra, 10 converged, 0 not converged\n"
    t = read_table(out)
    assert sorted(zip(t["source"].tolist(), t["index"].tolist()))[-1] == (str(bad), 0)


def test_batch_output_inside_an_input_folder_is_not_an_input(capsys, folder):
    from peakfit.io import read_table

    out = folder / "results.csv"
    for _ in range(2):  # the second run finds results.csv in the folder and must skip it
        rc, stdout, _ = run(capsys, "batch", folder, "-n", 2, "-o", out, "--quiet")
        assert rc == 0 and stdout == f"{out}: 9 spectra, 9 converged, 0 not converged\n"
    assert len(read_table(out)["index"]) == 9


def test_batch_gpu_requested_without_a_gpu(capsys, folder, tmp_path):
    from peakfit._xp import cupy_or_none

    if cupy_or_none() is not None:
        pytest.skip("a GPU is available here")
    rc, _, err = run(capsys, "batch", folder, "-n", 2, "-o", tmp_path / "r.csv",
                     "--device", "gpu")
    assert rc == 2
    assert err.startswith("peakfit: error: ") and "--device" in err and "device=" not in err


def test_batch_missing_input_stops_before_any_work(capsys, folder, tmp_path):
    out = tmp_path / "r.csv"
    rc, _, err = run(capsys, "batch", folder, tmp_path / "nope.csv", "-n", 2, "-o", out)
    assert rc == 2
    assert err == f"peakfit: error: {tmp_path / 'nope.csv'}: file not found\n"
    assert not out.exists()


def test_progress_log_line_format(capsys):
    p = cli._Progress(total=10, initial=3, quiet=False, interval=0.0)
    p.update(2, 2)
    err = capsys.readouterr().err
    assert re.fullmatch(r"peakfit: 5/10 spectra \(\d+\.\d spectra/s, ETA \d+ s\)\n", err)
    quiet = cli._Progress(total=10, initial=0, quiet=True, interval=0.0)
    quiet.update(10, 10)
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------------------- compare


def _matlab_case(tmp_path, seed=5, noise=0.02):
    p_true = [2.0, 25.0, 4.0, 1.5, 50.0, 5.0, 1.0, 75.0, 6.0]
    y = spectrum(p_true, seed=seed, noise=noise)
    data = write_csv(tmp_path / "spec.csv", X, {"y": y})
    f, _, _ = pf_matlab.fit(X, y, "gauss3")
    return data, y, f


def _matlab_text(f, p=None, order=None):
    """MATLAB's printed output for fit ``f`` (optionally other values / another term order)."""
    g = f if p is None else dataclasses.replace(f, p=np.asarray(p, float), _rinv=None)
    if order is not None:
        idx = np.concatenate([np.arange(3 * i, 3 * i + 3) for i in order])
        text = g.display("f")
        lines = text.splitlines()
        head = next(i for i, ln in enumerate(lines) if "Coefficients" in ln)
        coef = lines[head + 1 : head + 1 + 3 * f.n]
        renamed = []
        for new, old in enumerate(idx):
            name = f"{'abc'[new % 3]}{new // 3 + 1}"
            renamed.append(re.sub(r"^(\s+)\w+ =", rf"\g<1>{name} =", coef[old]))
        lines[head + 1 : head + 1 + 3 * f.n] = renamed
        return "f = \n\n" + "\n".join(lines) + "\n"
    return "f = \n\n" + g.display("f") + "\n"


def test_compare_matlab_agrees_with_our_own_matlab_display(capsys, tmp_path):
    data, _, f = _matlab_case(tmp_path)
    mt = tmp_path / "matlab.txt"
    mt.write_text(_matlab_text(f))
    rc, out, _ = run(capsys, "compare-matlab", data, "--matlab", mt)
    assert rc == 0, out
    assert f"with MATLAB's gauss3 result {mt}" in out
    rows = [ln.split() for ln in out.splitlines() if re.match(r"^[abc]\d ", ln)]
    assert [r[0] for r in rows] == ["a1", "b1", "c1", "a2", "b2", "c2", "a3", "b3", "c3"]
    assert all(r[-1] == "yes" and r[-2] == "yes" for r in rows)
    # MATLAB column = the 4-digit printed values
    assert [float(r[3]) for r in rows] == [float(f"{v:.4g}") for v in f.p]
    assert re.search(r"^MATLAB \(printed\)\s+" + re.escape(f"{float(f'{f.gof.sse:.4g}'):12.6g}"),
                     out, re.M)
    assert "AGREE: all 9 coefficients of peakfit match MATLAB (rtol 0.001)." in out


def test_compare_matlab_matches_terms_by_position(capsys, tmp_path):
    data, _, f = _matlab_case(tmp_path)
    order = np.argsort(f.b)[::-1]  # MATLAB lists the peaks right to left
    mt = tmp_path / "matlab.txt"
    mt.write_text(_matlab_text(f, order=order))
    rc, out, _ = run(capsys, "compare-matlab", data, "--matlab", mt, "--json")
    assert rc == 0
    d = json.loads(out)
    assert d["matching"]["peakfit"] == [3, 2, 1]  # ours are sorted ascending
    b = {r["name"]: r for r in d["rows"]}
    assert b["b1"]["matlab"] == float(f"{np.sort(f.b)[2]:.4g}")
    assert abs(b["b1"]["peakfit"] - np.sort(f.b)[2]) < 1e-3


def test_compare_matlab_disagreement_bounds_and_tolerance(capsys, tmp_path):
    data, _, f = _matlab_case(tmp_path, noise=0.2)
    j = 4  # b2
    half = f.confint()[1, j] - f.p[j]
    delta = 0.5 * half
    assert delta / abs(f.p[j]) > 1e-3  # outside rtol, inside MATLAB's bounds
    p = f.p.copy()
    p[j] += delta
    mt = tmp_path / "matlab.txt"
    mt.write_text(_matlab_text(f, p))
    rc, out, _ = run(capsys, "compare-matlab", data, "--matlab", mt)
    assert rc == 1
    assert "DISAGREE: b2 of peakfit differ from MATLAB (rtol 0.001)." in out
    row = next(ln.split() for ln in out.splitlines() if ln.startswith("b2 "))
    assert row[-2:] == ["yes", "NO"]  # inside the bounds, but not within rtol
    rc, out, _ = run(capsys, "compare-matlab", data, "--matlab", mt, "--use-bounds")
    assert rc == 0 and "or inside MATLAB's 95% bounds" in out
    rc, _, _ = run(capsys, "compare-matlab", data, "--matlab", mt, "--rtol", 0.05)
    assert rc == 0
    p[j] = f.p[j] + 3 * half  # outside the bounds too
    mt.write_text(_matlab_text(f, p))
    rc, out, _ = run(capsys, "compare-matlab", data, "--matlab", mt, "--use-bounds", "--json")
    assert rc == 1
    d = json.loads(out)
    bad = [r for r in d["rows"] if not r["agree"]]
    assert [r["name"] for r in bad] == ["b2"] and bad[0]["in_bounds"] is False
    assert bad[0]["difference"] == pytest.approx(bad[0]["peakfit"] - bad[0]["matlab"])


def test_compare_matlab_normalized_fit(capsys, tmp_path):
    data, y, _ = _matlab_case(tmp_path)
    f, _, _ = pf_matlab.fit(X, y, "gauss3", Normalize="on")
    text = _matlab_text(f)
    assert "where x is normalized by mean 50 and std 28.98" in text
    mt = tmp_path / "matlab.txt"
    mt.write_text(text)
    rc, out, _ = run(capsys, "compare-matlab", data, "--matlab", mt, "--json")
    assert rc == 0
    rows = {r["name"]: r for r in json.loads(out)["rows"]}
    # coefficients refer to the normalised x, as MATLAB prints them
    assert rows["b1"]["matlab"] == float(f"{f.p[1]:.4g}") and abs(rows["b1"]["matlab"]) < 2


def test_compare_matlab_with_a_mat_file(capsys, tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    data, _, f = _matlab_case(tmp_path)
    mat = tmp_path / "coeffs.mat"
    scipy_io.savemat(mat, {"coeffs": f.p[None, :]})
    rc, out, _ = run(capsys, "compare-matlab", data, "--matlab", mat)
    assert rc == 0
    assert "in 95% bounds" in out and "AGREE: all 9 coefficients" in out
    # no bounds in a .mat file: the column says '-'
    row = next(ln.split() for ln in out.splitlines() if ln.startswith("a1 "))
    assert row[-2] == "-"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("f =\n     Coefficients (with 95% confidence bounds):\n       a1 = 1  (0.5, 2)\n"
         "       b1 = 4.7e+O2  (1, 2)\n       c1 = 3\n",
         "{p}, line 4, column 13: value '4.7e+O2' of coefficient 'b1' is not a number"),
        ("nothing here\n", "{p}: no coefficient lines ('name = value') found"),
        ("Coefficients:\n  p1 = 1\n  p2 = 2\n",
         "{p}: cannot tell the number of Gaussian terms: the coefficients are p1, p2; "
         "expected a1, b1, c1, ..., aN, bN, cN"),
    ],
    ids=["bad-number", "no-coefficients", "not-gaussian"],
)
def test_compare_matlab_unparseable_text(capsys, tmp_path, text, message):
    data, _, _ = _matlab_case(tmp_path)
    mt = tmp_path / "matlab.txt"
    mt.write_text(text)
    rc, _, err = run(capsys, "compare-matlab", data, "--matlab", mt)
    assert rc == 2
    assert err == f"peakfit: error: {message.format(p=mt)}\n"


def test_compare_matlab_missing_and_inconsistent(capsys, tmp_path):
    data, _, f = _matlab_case(tmp_path)
    rc, _, err = run(capsys, "compare-matlab", data, "--matlab", tmp_path / "nope.txt")
    assert rc == 2 and err == f"peakfit: error: {tmp_path / 'nope.txt'}: file not found\n"
    mt = tmp_path / "matlab.txt"
    mt.write_text(_matlab_text(f))
    rc, _, err = run(capsys, "compare-matlab", data, "--matlab", mt, "-n", 2)
    assert rc == 2 and err == f"peakfit: error: -n 2 but {mt} holds a gauss3 result\n"
    mat = tmp_path / "nov.mat"
    pytest.importorskip("scipy.io").savemat(mat, {"foo": np.ones(3)})
    rc, _, err = run(capsys, "compare-matlab", data, "--matlab", mat)
    assert rc == 2 and err.startswith(f"peakfit: error: {mat}: no coefficients: expected")


# ---------------------------------------------------------------------------------- gd-demo


def test_gd_demo_is_wired_to_run_demo(capsys, tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("peakfit.gd.demo")

    def run_demo(out_dir, quick=False):
        calls.append((str(out_dir), quick))
        return {"report": os.path.join(str(out_dir), "report.md"), "figures": 7}

    fake.run_demo = run_demo
    monkeypatch.setitem(sys.modules, "peakfit.gd.demo", fake)
    rc, out, _ = run(capsys, "gd-demo", "--out", tmp_path / "gd", "--quick")
    assert rc == 0
    assert calls == [(str(tmp_path / "gd"), True)]
    assert out == (f"wrote the gradient-descent demo to {tmp_path / 'gd'}\n"
                   f"  report: {tmp_path / 'gd' / 'report.md'}\n  figures: 7\n")
