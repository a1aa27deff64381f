"""Bad-input catalogue, files, result tables and command line (issue #12).

Each case builds its files in a fresh folder, runs ``peakfit`` in-process, and asserts the exit
code, the key words of the one-line error (and words that must *not* appear, such as Python
keyword names or ``allow_pickle``), and that nothing in the folder changed: every file's
SHA-256 and the set of paths are the same after the call as before it.  The API/batch states
are catalogued in another file.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from peakfit.cli import main

X = np.linspace(0.0, 60.0, 121)


def _gauss(a: float, b: float, c: float) -> np.ndarray:
    return a * np.exp(-(((X - b) / c) ** 2))


def _spectra_csv(path: Path, k: int = 2, shift: float = 0.0) -> Path:
    cols = [X] + [_gauss(2.0 + j, 25.0 + 3 * j + shift, 5.0) for j in range(k)]
    head = ",".join(["x"] + [f"s{j}" for j in range(k)])
    np.savetxt(path, np.column_stack(cols), delimiter=",", header=head, comments="",
               fmt="%.17g")
    return path


def _snapshot(root: Path) -> dict[str, str]:
    """relative path -> sha256 (files) or 'dir'."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


def _batch_once(tmp: Path, out: str, *extra: str) -> None:
    data = _spectra_csv(tmp / "data.csv")
    assert main(["batch", str(data), "-n", "1", "-o", str(tmp / out), "--quiet", *extra]) == 0


@dataclass
class Case:
    setup: Callable[[Path], list[str]]
    words: tuple[str, ...]
    absent: tuple[str, ...] = ()
    rc: int = 2
    hold: Callable[[Path], object] | None = field(default=None)


def _npy_random(t: Path) -> list[str]:
    (t / "r.npy").write_bytes(np.random.default_rng(0).bytes(300))
    return ["fit", str(t / "r.npy")]


def _npz_random(t: Path) -> list[str]:
    (t / "r.npz").write_bytes(np.random.default_rng(1).bytes(300))
    return ["fit", str(t / "r.npz")]


def _npy_pickled(t: Path) -> list[str]:
    np.save(t / "o.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return ["fit", str(t / "o.npy")]


def _npy_pickled_header_only(t: Path) -> list[str]:
    # a valid header announcing dtype object, followed by a raw pickle
    np.save(t / "p.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    return ["batch", str(t / "p.npy"), "-o", str(t / "out" / "r.csv")]


def _npz_pickled(t: Path) -> list[str]:
    np.savez(t / "o.npz", Y=np.array([1, "a", None], dtype=object), allow_pickle=True)
    return ["fit", str(t / "o.npz")]


def _npz_member_not_npy(t: Path) -> list[str]:
    with zipfile.ZipFile(t / "j.npz", "w") as z:
        z.writestr("Y.npy", pickle.dumps([1.0, 2.0]))
    return ["fit", str(t / "j.npz")]


def _npy_truncated(t: Path) -> list[str]:
    np.save(t / "g.npy", np.ones((3, 50)))
    raw = (t / "g.npy").read_bytes()
    (t / "g.npy").write_bytes(raw[:-40])
    return ["fit", str(t / "g.npy")]


def _dir_as_file(t: Path) -> list[str]:
    (t / "spectra.csv").mkdir()
    return ["fit", str(t / "spectra.csv")]


def _missing_no_extension(t: Path) -> list[str]:
    return ["fit", str(t / "spectrum")]


def _dir_as_npz(t: Path) -> list[str]:
    (t / "spectra.npz").mkdir()
    return ["plot", str(t / "spectra.npz"), "-o", str(t / "f.png")]


def _plot_out_dir(t: Path) -> list[str]:
    (t / "figs").mkdir()
    return ["plot", str(_spectra_csv(t / "d.csv")), "-n", "1", "-o", str(t / "figs")]


def _plot_out_under_file(t: Path) -> list[str]:
    (t / "afile").write_text("keep me")
    return ["plot", str(_spectra_csv(t / "d.csv")), "-n", "1", "-o", str(t / "afile" / "f.png")]


def _plot_out_missing_folder(t: Path) -> list[str]:
    return ["plot", str(_spectra_csv(t / "d.csv")), "-n", "1", "-o", str(t / "no" / "f.png")]


def _plot_out_is_data(t: Path) -> list[str]:
    d = _spectra_csv(t / "d.csv")
    return ["plot", str(d), "-n", "1", "-o", str(d)]


def _plot_absurd_dpi(t: Path) -> list[str]:
    return ["plot", str(_spectra_csv(t / "d.csv")), "-n", "1", "-o", str(t / "f.png"),
            "--dpi", "100000"]


def _batch_over_user_csv(t: Path) -> list[str]:
    (t / "xy.csv").write_text("x,y\n1,2\n3,4\n5,6")  # no final newline: nothing may be cut
    return ["batch", str(_spectra_csv(t / "d.csv")), "-n", "1", "-o", str(t / "xy.csv")]


def _batch_over_one_line_file(t: Path) -> list[str]:
    (t / "notes.csv").write_text("my notes, not a table")
    return ["batch", str(_spectra_csv(t / "d.csv")), "-n", "1", "-o", str(t / "notes.csv")]


def _batch_input_is_output(t: Path) -> list[str]:
    d = _spectra_csv(t / "d.csv")
    return ["batch", str(d), "-n", "1", "-o", str(d)]


def _batch_glob_matches_results(t: Path) -> list[str]:
    _batch_once(t, "results.csv")  # the first run; a glob *.csv now matches results.csv too
    return ["batch", str(t / "data.csv"), str(t / "results.csv"), "-n", "1",
            "-o", str(t / "results.csv")]


def _batch_out_under_file(t: Path) -> list[str]:
    (t / "afile").write_text("keep me")
    return ["batch", str(_spectra_csv(t / "d.csv")), "-n", "1",
            "-o", str(t / "afile" / "r.csv")]


def _batch_out_is_dir(t: Path) -> list[str]:
    (t / "r.csv").mkdir()
    return ["batch", str(_spectra_csv(t / "d.csv")), "-n", "1", "-o", str(t / "r.csv")]


def _batch_out_unknown_ext(t: Path) -> list[str]:
    return ["batch", str(_spectra_csv(t / "d.csv")), "-n", "1", "-o", str(t / "r.xlsx")]


def _batch_parquet_is_file(t: Path) -> list[str]:
    pytest.importorskip("pyarrow")
    (t / "r.parquet").write_bytes(b"PAR1 someone else's file")
    return ["batch", str(_spectra_csv(t / "d.csv")), "-n", "1", "-o", str(t / "r.parquet")]


def _batch_parquet_foreign_dir(t: Path) -> list[str]:
    pytest.importorskip("pyarrow")
    (t / "r.parquet").mkdir()
    (t / "r.parquet" / "part-0.parquet").write_bytes(b"foreign")
    return ["batch", str(_spectra_csv(t / "d.csv")), "-n", "1", "-o", str(t / "r.parquet")]


def _batch_h5_not_hdf5(t: Path) -> list[str]:
    pytest.importorskip("h5py")
    (t / "r.h5").write_text("x,y\n1,2\n")
    return ["batch", str(_spectra_csv(t / "d.csv")), "-n", "1", "-o", str(t / "r.h5")]


def _batch_h5_foreign(t: Path) -> list[str]:
    h5py = pytest.importorskip("h5py")
    with h5py.File(t / "r.h5", "w") as fh:
        fh["Y"] = np.ones((2, 3))
    return ["batch", str(_spectra_csv(t / "d.csv")), "-n", "1", "-o", str(t / "r.h5")]


def _resume_other_n(t: Path) -> list[str]:
    _batch_once(t, "r.csv")
    return ["batch", str(t / "data.csv"), "-n", "2", "-o", str(t / "r.csv")]


def _resume_other_baseline(t: Path) -> list[str]:
    out = "r.h5" if _has("h5py") else "r.csv"  # HDF5 here, CSV in the other cases
    _batch_once(t, out)
    return ["batch", str(t / "data.csv"), "-n", "1", "--baseline", "linear", "-o", str(t / out)]


def _resume_other_options(t: Path) -> list[str]:
    _batch_once(t, "r.csv", "--tol-fun", "1e-8")
    return ["batch", str(t / "data.csv"), "-n", "1", "-o", str(t / "r.csv")]


def _resume_changed_input(t: Path) -> list[str]:
    _batch_once(t, "r.csv")
    _spectra_csv(t / "data.csv", shift=1.0)  # same name, other numbers
    return ["batch", str(t / "data.csv"), "-n", "1", "-o", str(t / "r.csv")]


def _table_sidecar_lost(t: Path) -> list[str]:
    _batch_once(t, "r.csv")
    os.remove(t / "r.csv.peakfit.json")
    return ["batch", str(t / "data.csv"), "-n", "1", "-o", str(t / "r.csv")]


def _table_edited_shorter(t: Path) -> list[str]:
    _batch_once(t, "r.csv")
    raw = (t / "r.csv").read_bytes()
    (t / "r.csv").write_bytes(raw[: raw.rfind(b"\n", 0, len(raw) - 1) + 1])  # last row gone
    return ["batch", str(t / "data.csv"), "-n", "1", "-o", str(t / "r.csv")]


def _table_locked(t: Path) -> list[str]:
    _batch_once(t, "r.csv")
    return ["batch", str(t / "data.csv"), "-n", "1", "-o", str(t / "r.csv")]


def _hold_lock(t: Path) -> object:
    from peakfit.tables import ResultWriter

    return ResultWriter(t / "r.csv")


def _skip_header_text(t: Path) -> list[str]:
    return ["fit", str(_spectra_csv(t / "d.csv")), "--skip-header", "abc"]


def _delimiter_long(t: Path) -> list[str]:
    return ["fit", str(_spectra_csv(t / "d.csv")), "-n", "1", "--delimiter", "ab"]


def _downsample_text(t: Path) -> list[str]:
    return ["fit", str(_spectra_csv(t / "d.csv")), "-n", "1", "--downsample", "abc"]


def _tol_fun_none(t: Path) -> list[str]:
    return ["fit", str(_spectra_csv(t / "d.csv")), "-n", "1", "--tol-fun", "None"]


def _start_none(t: Path) -> list[str]:
    return ["fit", str(_spectra_csv(t / "d.csv")), "-n", "1", "--start", "None"]


def _y_column_none(t: Path) -> list[str]:
    return ["fit", str(_spectra_csv(t / "d.csv")), "-n", "1", "--y", "None"]


def _rows_layout_x_name(t: Path) -> list[str]:
    return ["fit", str(_spectra_csv(t / "d.csv")), "-n", "1", "--layout", "rows", "--x", "abc"]


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


NO_PY = ("_header=", "delimiter=", "downsample=", "layout=", "x=", "y=", "restart=True")
NEW_TABLE = ("is not a peakfit result table", "nothing was written", "-o", "--restart")
CASES = {
    "npy random bytes": Case(_npy_random, ("r.npy", "not a valid .npy file"), ("pickle",)),
    "npz random bytes": Case(_npz_random, ("r.npz", "not a valid .npz file", "zip"),
                             ("pickle",)),
    "npy pickled objects": Case(_npy_pickled, ("Python objects", "never loads"),
                                ("allow_pickle",)),
    "npy pickled, batch": Case(_npy_pickled_header_only, ("p.npy", "Python objects"),
                               ("allow_pickle",)),
    "npz pickled objects": Case(_npz_pickled, ("o.npz", "Python objects", "never loads"),
                                ("allow_pickle",)),
    "npz member not npy": Case(_npz_member_not_npy, ("member 'Y' is not a .npy array",)),
    "npy truncated": Case(_npy_truncated, ("g.npy", "not a valid .npy file", "damaged")),
    "directory given as csv": Case(_dir_as_file, ("spectra.csv", "is a directory")),
    "directory given as npz": Case(_dir_as_npz, ("spectra.npz", "is a directory")),
    "missing file without extension": Case(
        _missing_no_extension, ("spectrum", "file not found"), absent=("extension",)
    ),
    "plot -o directory": Case(_plot_out_dir, ("figs", "is a directory", "fit.png")),
    "plot -o under a file": Case(_plot_out_under_file, ("afile is a file, not a folder",)),
    "plot -o missing folder": Case(_plot_out_missing_folder, ("does not exist",)),
    "plot -o is the data": Case(_plot_out_is_data, ("it is the data file",)),
    "plot absurd dpi": Case(_plot_absurd_dpi, ("--dpi", "10 to 1200", "100000")),
    "batch -o user csv": Case(_batch_over_user_csv, ("xy.csv", *NEW_TABLE)),
    "batch -o one-line file": Case(_batch_over_one_line_file, ("notes.csv", *NEW_TABLE)),
    "batch input is output": Case(_batch_input_is_output,
                                  ("both an input and the result table", "never overwritten")),
    "batch glob matches results": Case(_batch_glob_matches_results,
                                       ("results.csv is both an input", "glob")),
    "batch -o under a file": Case(_batch_out_under_file, ("afile is a file, not a folder",)),
    "batch -o directory": Case(_batch_out_is_dir, ("it is a directory", "results.csv")),
    "batch -o unknown extension": Case(_batch_out_unknown_ext, ("unknown extension", ".xlsx")),
    "batch -o parquet is a file": Case(_batch_parquet_is_file, ("it is a file", *NEW_TABLE)),
    "batch -o parquet foreign dir": Case(_batch_parquet_foreign_dir,
                                         ("no _common_metadata", *NEW_TABLE)),
    "batch -o h5 not hdf5": Case(_batch_h5_not_hdf5, ("not an HDF5 file", *NEW_TABLE)),
    "batch -o h5 foreign": Case(_batch_h5_foreign, ("no attribute 'peakfit_table'",
                                                    *NEW_TABLE)),
    "resume with other -n": Case(_resume_other_n, ("other settings", "-n 2 now, -n 1 in the",
                                                   "--restart", "-o")),
    "resume with other baseline": Case(_resume_other_baseline,
                                       ("--baseline linear now, --baseline none in the table",
                                        "--restart")),
    "resume with other options": Case(_resume_other_options,
                                      ("--tol-fun 1e-06 now, --tol-fun 1e-08 in the table",)),
    "resume with changed input": Case(_resume_changed_input,
                                      ("data.csv has changed since its 2 row(s)", "SHA-256",
                                       "--restart")),
    "table sidecar lost": Case(_table_sidecar_lost,
                               ("no metadata file r.csv.peakfit.json", *NEW_TABLE)),
    "table edited outside": Case(_table_edited_shorter, ("shorter", "changed outside peakfit")),
    "table locked": Case(_table_locked, ("being written by another process", "r.csv.lock"),
                         hold=_hold_lock),
    "--skip-header text": Case(_skip_header_text, ("--skip-header", "'abc'")),
    "--delimiter two chars": Case(_delimiter_long, ("--delimiter must be a single character",)),
    "--downsample text": Case(_downsample_text, ("--downsample must be", "'abc'")),
    "--tol-fun None": Case(_tol_fun_none, ("--tol-fun", "'None'")),
    "--start None": Case(_start_none, ("--start", "'None'")),
    "--y None": Case(_y_column_none, ("--y None: no such column",)),
    "--layout rows --x name": Case(_rows_layout_x_name, ("--layout rows", "--x must be")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, tmp_path, capsys):
    case = CASES[name]
    argv = case.setup(tmp_path)
    held = case.hold(tmp_path) if case.hold is not None else None
    capsys.readouterr()
    before = _snapshot(tmp_path)
    try:
        rc = main(argv)
    finally:
        if held is not None:
            held.close()
    _out, err = capsys.readouterr()
    assert _snapshot(tmp_path) == before, "the files changed"
    assert rc == case.rc, err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert "error:" in line
    for w in case.words:
        assert w in line, (w, line)
    for w in (*case.absent, *NO_PY):
        assert w not in line, (w, line)


def test_catalogue_size():
    assert len(CASES) >= 25


def test_a_file_name_that_looks_like_a_keyword_is_not_translated(tmp_path, capsys):
    d = tmp_path / "run x=3"
    d.mkdir()
    (d / "r.npy").write_bytes(b"not numpy")
    assert main(["fit", str(d / "r.npy")]) == 2
    err = capsys.readouterr().err
    assert err == f"peakfit: error: {d / 'r.npy'}: not a valid .npy file (it does not start " \
                  "with a NumPy array header)\n"
