"""Tests of peakfit.io: spectra readers, chunked reading, resumable result tables."""

from __future__ import annotations

import importlib.util
import inspect
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from peakfit.errors import FileFormatError, InputError
from peakfit.io import (
    MissingFileError,
    ResultWriter,
    Spectra,
    count_spectra,
    iter_spectra_chunks,
    load_spectra,
    read_table,
)

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------
# Spectra
# ------------------------------------------------------------------------------------------


def test_spectra_properties_and_validation():
    s = Spectra(np.arange(4), np.ones((3, 4), dtype=np.float32), ["a", "b", "c"], "f.csv")
    assert (s.k, s.m, len(s)) == (3, 4, 3)
    assert s.Y.dtype == np.float64 and s.x.dtype == np.float64
    assert s.names == ("a", "b", "c")
    assert s.x_of(2).tolist() == [0.0, 1.0, 2.0, 3.0]
    per = Spectra(np.arange(6.0).reshape(2, 3), np.zeros((2, 3)), ("p", "q"), "f")
    assert per.x_of(1).tolist() == [3.0, 4.0, 5.0]
    with pytest.raises(InputError, match=r"x must have shape \(4,\)"):
        Spectra(np.arange(3), np.ones((2, 4)), ("a", "b"), "f")
    with pytest.raises(InputError, match="names has 1 entries but Y has 2 rows"):
        Spectra(np.arange(4), np.ones((2, 4)), ("a",), "f")


# ------------------------------------------------------------------------------------------
# Text files
# ------------------------------------------------------------------------------------------


def test_csv_with_header_x_and_two_y_columns(tmp_path):
    p = write(
        tmp_path / "s.csv",
        """
        # exported by an instrument
        wavelength,sample A,sample B
        400,1.5,-2
        401,2.25,nan

        402,3e2,NaN
        """,
    )
    s = load_spectra(p)
    assert s.source == str(p)
    assert s.names == ("sample A", "sample B")
    assert s.x.tolist() == [400.0, 401.0, 402.0]
    np.testing.assert_array_equal(s.Y[0], [1.5, 2.25, 300.0])
    assert s.Y[1, 0] == -2.0 and np.isnan(s.Y[1, 1:]).all()


def test_csv_without_header_crlf_bom_quotes(tmp_path):
    p = tmp_path / "s.CSV"
    p.write_bytes('\ufeff0,"10",20\r\n1,11,21\r\n'.encode())
    s = load_spectra(p)
    assert s.names == ("col1", "col2")
    assert s.x.tolist() == [0.0, 1.0]
    assert s.Y.tolist() == [[10.0, 11.0], [20.0, 21.0]]


def test_single_column_gives_index_x(tmp_path):
    p = write(tmp_path / "one.txt", "5\n6\n7\n")
    s = load_spectra(p)
    assert s.x.tolist() == [0.0, 1.0, 2.0]
    assert s.Y.tolist() == [[5.0, 6.0, 7.0]]
    assert s.names == ("col0",)


def test_column_selection_by_name_and_index(tmp_path):
    p = write(tmp_path / "s.csv", "a,t,b\n1,0,5\n2,1,6\n")
    s = load_spectra(p, x="t", y=["b", 0])
    assert s.names == ("b", "a")
    assert s.x.tolist() == [0.0, 1.0]
    assert s.Y.tolist() == [[5.0, 6.0], [1.0, 2.0]]
    s = load_spectra(p, x=1, y="B")  # names match case-insensitively when unique
    assert s.Y.tolist() == [[5.0, 6.0]]
    # y selecting column 0 with x=None: every column is a spectrum, x = 0..m-1
    s = load_spectra(p, y=[0, 2])
    assert s.x.tolist() == [0.0, 1.0] and s.names == ("a", "b")
    with pytest.raises(
        InputError, match=r"y='nope': no such column; columns are \['a', 't', 'b'\]"
    ):
        load_spectra(p, y="nope")
    with pytest.raises(InputError, match="x=5 is out of range: the file has 3 columns"):
        load_spectra(p, x=5)


def test_whitespace_dat_and_tsv_with_empty_cell(tmp_path):
    p = write(tmp_path / "w.dat", "#  t  y\n  0.0   -0.3\n  0.1\t0.25\n")
    s = load_spectra(p)
    assert s.x.tolist() == [0.0, 0.1] and s.Y.tolist() == [[-0.3, 0.25]]
    t = write(tmp_path / "w.tsv", "x\ty1\ty2\n0\t\t3\n1\t2\t4\n")
    s = load_spectra(t)
    assert s.names == ("y1", "y2")
    assert math.isnan(s.Y[0, 0]) and s.Y[0, 1] == 2.0 and s.Y[1].tolist() == [3.0, 4.0]


def test_skip_header_reads_nist_style_file(tmp_path):
    pre = "\n".join(f"preamble line {i}: words, commas; 1 2 3" for i in range(1, 6))
    p = write(tmp_path / "nist.dat", pre + "\nData:   y   x\n  97.5  1.0\n  98.25  2.0\n")
    s = load_spectra(p, skip_header=6, x=1, y=0)
    assert s.x.tolist() == [1.0, 2.0] and s.Y.tolist() == [[97.5, 98.25]]
    # with skip_header=5 the 'Data: y x' line is taken as the header, which has 3 names
    with pytest.raises(FileFormatError, match=r"line 6: header has 3 names but line 7 has 2"):
        load_spectra(p, skip_header=5)
    with pytest.raises(FileFormatError, match=r"\(skip the line with skip_header=\)"):
        load_spectra(p, skip_header=5, header=True, x=1, y=0)


def test_real_reference_files(shared_data):
    s = load_spectra(shared_data / "nist_strd" / "Gauss1.dat", skip_header=60, x=1, y=0)
    assert (s.k, s.m) == (1, 250)
    assert s.x[0] == 1.0 and s.Y[0, 0] == 97.62227 and s.x[-1] == 250.0
    w = load_spectra(shared_data / "lidar_waveform" / "waveform_1.txt")
    np.testing.assert_array_equal(
        w.Y[0], np.load(shared_data / "lidar_waveform" / "waveform_1.npy")
    )
    assert w.x.tolist() == list(range(80))


def test_rows_layout(tmp_path):
    p = write(tmp_path / "rows.csv", "10,20,30\n1,2,3\n4,5,6\n7,8,9\n")
    s = load_spectra(p, layout="rows", x=0)
    assert s.x.tolist() == [10.0, 20.0, 30.0]
    assert s.names == ("row1", "row2", "row3")
    assert s.Y.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    s = load_spectra(p, layout="rows")
    assert s.x.tolist() == [0.0, 1.0, 2.0] and s.k == 4
    s = load_spectra(p, layout="rows", x=0, y=[3, 1])  # rows come in file order
    assert s.names == ("row1", "row3")
    with pytest.raises(InputError, match=r"y= selects data rows \[9\]"):
        load_spectra(p, layout="rows", y=[1, 9])
    with pytest.raises(InputError, match="x= must be the 0-based index of the data row"):
        load_spectra(p, layout="rows", x="t")


def test_text_errors_name_line_and_column(tmp_path):
    p = write(tmp_path / "bad.csv", "x,y\n0,1\n1,2,3\n")
    with pytest.raises(FileFormatError) as ei:
        load_spectra(p)
    e = ei.value
    assert (e.path, e.line, e.column) == (str(p), 3, None)
    assert str(e) == f"{p}, line 3: row has 3 columns but line 2 has 2"

    p = write(tmp_path / "cell.csv", "# c\nx,y\n0,1\n1,abc\n")
    with pytest.raises(FileFormatError) as ei:
        load_spectra(p)
    assert (ei.value.line, ei.value.column) == (4, 2)
    assert str(ei.value) == f"{p}, line 4, column 2: cell 'abc' is not a number"

    p = write(tmp_path / "rows.txt", "1 2 3\n4 5 x6\n")
    with pytest.raises(FileFormatError, match=r"line 2, column 3: cell 'x6' is not a number"):
        load_spectra(p, layout="rows")

    # header=False forces the first line to be data, so a word there is a bad cell
    p = write(tmp_path / "h.csv", "t,y\n0,1\n")
    with pytest.raises(FileFormatError, match=r"line 1, column 1: cell 't' is not a number"):
        load_spectra(p, header=False)


def test_empty_and_comment_only_files(tmp_path):
    empty = tmp_path / "e.csv"
    empty.write_text("")
    with pytest.raises(FileFormatError, match=r"e\.csv: file is empty"):
        load_spectra(empty)
    com = write(tmp_path / "c.txt", "# nothing\n\n# here\n")
    with pytest.raises(FileFormatError, match="no data lines"):
        load_spectra(com)
    head = write(tmp_path / "h.csv", "x,y\n")
    with pytest.raises(FileFormatError, match="no data lines after the header"):
        load_spectra(head)


def test_missing_file_and_unknown_extension(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(MissingFileError) as ei:
        load_spectra(missing)
    assert isinstance(ei.value, FileNotFoundError) and isinstance(ei.value, FileFormatError)
    assert str(ei.value) == f"{missing}: file not found"
    odd = tmp_path / "s.xlsx"
    odd.write_text("1,2\n")
    with pytest.raises(FileFormatError, match=r"unknown file extension '\.xlsx'"):
        load_spectra(odd)
    with pytest.raises(InputError, match="layout must be"):
        load_spectra(odd, layout="diagonal")


# ------------------------------------------------------------------------------------------
# NumPy files
# ------------------------------------------------------------------------------------------


def test_npy_1d_2d_and_columns(tmp_path):
    p1 = tmp_path / "one.npy"
    np.save(p1, np.array([4, 5, 4], dtype=np.uint8))
    s = load_spectra(p1)
    assert s.Y.tolist() == [[4.0, 5.0, 4.0]] and s.x.tolist() == [0.0, 1.0, 2.0]
    assert s.names == ("y",)
    p2 = tmp_path / "two.NPY"
    Y = np.arange(12.0).reshape(3, 4)
    with open(p2, "wb") as fh:  # np.save(path) would append '.npy' to '.NPY'
        np.save(fh, Y)
    s = load_spectra(p2)
    np.testing.assert_array_equal(s.Y, Y)
    assert s.names == ("row0", "row1", "row2")
    s = load_spectra(p2, layout="columns")
    np.testing.assert_array_equal(s.Y, Y.T)
    assert s.names == ("col0", "col1", "col2", "col3")


def test_npy_object_array_is_never_unpickled(tmp_path):
    p = tmp_path / "obj.npy"
    np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(FileFormatError, match=r"obj\.npy: .*Python objects .*never loads") as e:
        load_spectra(p)
    assert "allow_pickle" not in str(e.value)


def test_npz_defaults_names_and_orientation(tmp_path):
    x = np.linspace(0, 1, 5)
    Y = np.arange(10.0).reshape(2, 5)
    p = tmp_path / "d.npz"
    np.savez(p, x=x, Y=Y)
    s = load_spectra(p)
    np.testing.assert_array_equal(s.x, x)
    np.testing.assert_array_equal(s.Y, Y)
    # stored one spectrum per column: auto layout follows the length of x
    q = tmp_path / "t.npz"
    np.savez(q, wl=x, counts=Y.T)
    s = load_spectra(q, x="wl", y="counts")
    np.testing.assert_array_equal(s.Y, Y)
    assert s.names == ("col0", "col1")
    assert count_spectra(q, x="wl", y="counts") == 2
    assert count_spectra(q, y="counts") == 5  # without x: rows
    with pytest.raises(FileFormatError) as ei:
        load_spectra(q)
    assert "looked for 'Y', 'y', 'spectra'" in str(ei.value)
    assert "available: 'wl', 'counts'" in str(ei.value)
    with pytest.raises(FileFormatError, match="no array 'xx' for the x; available"):
        load_spectra(q, x="xx", y="counts")
    bad = tmp_path / "b.npz"
    np.savez(bad, x=np.arange(3.0), Y=Y)
    with pytest.raises(
        FileFormatError, match=r"x has 3 values but 'Y' \(2, 5\) holds 2 spectra of 5 points"
    ):
        load_spectra(bad)


# ------------------------------------------------------------------------------------------
# HDF5 and MATLAB
# ------------------------------------------------------------------------------------------


def test_hdf5_defaults_groups_and_missing(tmp_path):
    h5py = pytest.importorskip("h5py")
    p = tmp_path / "s.h5"
    Y = np.random.default_rng(0).normal(size=(4, 6))
    xs = np.arange(24.0).reshape(4, 6)
    with h5py.File(p, "w") as f:
        f["x"] = np.arange(6.0)
        f["spectra"] = Y
        f.create_group("raw")["Y"] = Y[:2].astype(np.float32)
        f["raw"]["xs"] = xs[:2]
    s = load_spectra(p)
    np.testing.assert_array_equal(s.Y, Y)
    assert s.x.tolist() == list(range(6))
    s = load_spectra(p, dataset="raw/Y", x="raw/xs")
    np.testing.assert_array_equal(s.Y, Y[:2].astype(np.float32))
    np.testing.assert_array_equal(s.x, xs[:2])
    with pytest.raises(FileFormatError) as ei:
        load_spectra(p, dataset="counts")
    assert str(ei.value) == (
        f"{p}: no dataset 'counts' for the spectra; available: 'raw/Y', 'raw/xs', 'spectra', 'x'"
    )
    with pytest.raises(InputError, match="conflicting names"):
        load_spectra(p, dataset="spectra", variable="Y")


def test_mat_v5_variables_and_orientation(tmp_path):
    x = np.linspace(0.0, 2.0, 7)
    Y = np.arange(21.0).reshape(3, 7)
    p = tmp_path / "a.mat"
    scipy.io.savemat(p, {"x": x[np.newaxis, :], "Y": Y, "data": Y.T, "label": "abc"})
    s = load_spectra(p)
    np.testing.assert_array_equal(s.Y, Y)
    np.testing.assert_array_equal(s.x, x)
    s = load_spectra(p, variable="data")  # MATLAB m-by-k: spectra in columns
    np.testing.assert_array_equal(s.Y, Y)
    assert count_spectra(p, variable="data") == 3
    with pytest.raises(FileFormatError, match="no variable 'Z' for the spectra; available: "):
        load_spectra(p, variable="Z")
    with pytest.raises(FileFormatError, match="variable 'label' is a MATLAB char, not numeric"):
        load_spectra(p, variable="label")


def _write_mat73(path: Path, variables: dict[str, np.ndarray]) -> None:
    """A MATLAB v7.3 file as MATLAB writes it: 512-byte header, column-major datasets."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, value in variables.items():
            arr = np.atleast_2d(value)
            if arr.dtype.kind == "U":
                codes = np.array([[ord(c) for c in str(value)]], dtype=np.uint16)
                ds = f.create_dataset(name, data=codes.T)
                ds.attrs["MATLAB_class"] = np.bytes_("char")
                continue
            ds = f.create_dataset(name, data=arr.T)  # h5py shape = reversed MATLAB shape
            ds.attrs["MATLAB_class"] = np.bytes_("double")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 ."
    with open(path, "r+b") as fh:
        fh.write(header.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02IM")


def test_mat_v73_transposes_column_major(tmp_path):
    pytest.importorskip("h5py")
    x = np.linspace(0.0, 1.0, 5)
    Y = np.arange(15.0).reshape(3, 5) ** 1.5  # MATLAB 3-by-5: three spectra in rows
    p = tmp_path / "big.mat"
    _write_mat73(p, {"x": x[np.newaxis, :], "Y": Y, "Ycols": Y.T, "name": "abc"})
    s = load_spectra(p)
    np.testing.assert_array_equal(s.Y, Y)
    np.testing.assert_array_equal(s.x, x)
    assert s.names == ("row0", "row1", "row2")
    s = load_spectra(p, variable="Ycols")
    np.testing.assert_array_equal(s.Y, Y)
    assert s.names == ("col0", "col1", "col2")
    chunks = list(iter_spectra_chunks(p, 2, variable="Ycols"))
    assert [i for i, _ in chunks] == [0, 2]
    np.testing.assert_array_equal(np.vstack([c.Y for _, c in chunks]), Y)
    assert count_spectra(p) == 3
    with pytest.raises(FileFormatError, match="variable 'name' is MATLAB char, not numeric"):
        load_spectra(p, variable="name")
    with pytest.raises(FileFormatError, match=r"available: 'Y', 'Ycols', 'name', 'x'"):
        load_spectra(p, variable="nothere")


def test_missing_optional_dependency_message(tmp_path, monkeypatch):
    pytest.importorskip("h5py")
    p = tmp_path / "s.h5"
    import h5py

    with h5py.File(p, "w") as f:
        f["Y"] = np.ones((1, 3))
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"needs the optional package .h5py.*peakfit\[io\]"):
        load_spectra(p)


# ------------------------------------------------------------------------------------------
# Streaming and counting
# ------------------------------------------------------------------------------------------


def test_chunks_npy_memmap(tmp_path):
    Y = np.arange(70.0).reshape(7, 10)
    p = tmp_path / "s.npy"
    np.save(p, Y)
    chunks = list(iter_spectra_chunks(p, 3))
    assert [(i, c.k) for i, c in chunks] == [(0, 3), (3, 3), (6, 1)]
    np.testing.assert_array_equal(chunks[1][1].Y, Y[3:6])
    assert chunks[2][1].names == ("row6",)
    assert count_spectra(p) == 7
    assert count_spectra(p, layout="columns") == 10
    cols = list(iter_spectra_chunks(p, 4, layout="columns"))
    np.testing.assert_array_equal(np.vstack([c.Y for _, c in cols]), Y.T)


def test_chunks_hdf5_per_spectrum_x(tmp_path):
    h5py = pytest.importorskip("h5py")
    Y = np.arange(40.0).reshape(8, 5)
    X = Y / 10
    p = tmp_path / "s.hdf5"
    with h5py.File(p, "w") as f:
        f["Y"] = Y
        f["x"] = X
    out = list(iter_spectra_chunks(p, 5))
    assert [i for i, _ in out] == [0, 5]
    np.testing.assert_array_equal(out[1][1].Y, Y[5:])
    np.testing.assert_array_equal(out[1][1].x, X[5:])
    assert count_spectra(p) == 8
    q = tmp_path / "cols.h5"
    with h5py.File(q, "w") as f:  # one spectrum per column, x alongside
        f["Y"] = Y.T
        f["x"] = X.T
    out = list(iter_spectra_chunks(q, 3, layout="columns"))
    assert [i for i, _ in out] == [0, 3, 6]
    np.testing.assert_array_equal(np.vstack([c.Y for _, c in out]), Y)
    np.testing.assert_array_equal(np.vstack([c.x for _, c in out]), X)
    with h5py.File(q, "a") as f:
        f["x3"] = np.ones((3, 3))
    with pytest.raises(FileFormatError, match=r"a 2-D x must have the shape of 'Y' \(5, 8\)"):
        load_spectra(q, x="x3")


def test_chunks_text_rows_and_columns(tmp_path):
    lines = ["0,1,2,3"] + [f"{i},{i + 1},{i + 2},{i + 3}" for i in range(10, 17)]
    p = write(tmp_path / "r.csv", "# rows\n" + "\n".join(lines) + "\n")
    out = list(iter_spectra_chunks(p, 3, layout="rows", x=0))
    assert [(i, c.k) for i, c in out] == [(0, 3), (3, 3), (6, 1)]
    assert out[2][1].names == ("row7",)
    assert out[2][1].Y.tolist() == [[16, 17, 18, 19]]
    assert all(c.x.tolist() == [0, 1, 2, 3] for _, c in out)
    assert count_spectra(p, layout="rows", x=0) == 7
    assert count_spectra(p, layout="rows") == 8
    assert count_spectra(p) == 3  # columns: x plus 3 y columns
    cols = list(iter_spectra_chunks(p, 2))
    assert [(i, c.names) for i, c in cols] == [(0, ("col1", "col2")), (2, ("col3",))]
    with pytest.raises(InputError, match="chunk_size must be an int >= 1"):
        iter_spectra_chunks(p, 0)


def test_chunks_text_rows_report_bad_line_in_later_block(tmp_path):
    rows = [f"{i},{i}" for i in range(6)]
    rows[4] = "4,?"
    p = write(tmp_path / "r.csv", "\n".join(rows) + "\n")
    it = iter_spectra_chunks(p, 2, layout="rows")
    assert next(it)[1].k == 2
    assert next(it)[1].k == 2
    with pytest.raises(FileFormatError, match=r"line 5, column 2: cell '\?' is not a number"):
        next(it)


# ------------------------------------------------------------------------------------------
# Result tables
# ------------------------------------------------------------------------------------------

FLOATS = [0.1, 1 / 3, 1e-300, -2.5e17, math.nan, math.inf, 5e-324]


def chunk(lo: int, hi: int, src: str = "a.csv") -> dict[str, object]:
    idx = np.arange(lo, hi)
    return {
        "source": [src] * (hi - lo),
        "index": idx,
        "sse": np.array([FLOATS[i % len(FLOATS)] for i in idx]),
        "nfev": idx * 10,
        "ok": idx % 2 == 0,
        "state": [f"s{i}" for i in idx],
    }


def expected_rows(n: int) -> dict[str, list[object]]:
    c = chunk(0, n)
    return {k: list(np.asarray(v).tolist()) for k, v in c.items()}


def assert_table(table: dict[str, np.ndarray], n: int) -> None:
    exp = expected_rows(n)
    assert list(table) == ["source", "index", "sse", "nfev", "ok", "state"]
    order = np.argsort(table["index"], kind="stable")
    assert table["index"][order].tolist() == exp["index"]  # every row exactly once
    assert table["source"][order].tolist() == exp["source"]
    np.testing.assert_array_equal(table["sse"][order], np.array(exp["sse"]))  # bit-exact
    assert table["sse"].dtype == np.float64
    assert table["nfev"][order].tolist() == exp["nfev"] and table["nfev"].dtype == np.int64
    assert table["ok"][order].tolist() == exp["ok"] and table["ok"].dtype == np.bool_
    assert table["state"][order].tolist() == exp["state"]


FORMATS = ["out.csv", "out.parquet", "out.h5"]


def _needs(name: str) -> None:
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    if name.endswith(".h5"):
        pytest.importorskip("h5py")


@pytest.mark.parametrize("name", FORMATS)
def test_writer_roundtrip_exact(tmp_path, name):
    _needs(name)
    p = tmp_path / name
    with ResultWriter(p) as w:
        assert w.write_chunk(chunk(0, 4)) == 4
        assert w.write_chunk(chunk(4, 7)) == 3
        assert w.done_keys() == {("a.csv", i) for i in range(7)}
        assert w.columns == ["source", "index", "sse", "nfev", "ok", "state"]
    assert_table(read_table(p), 7)


@pytest.mark.parametrize("name", FORMATS)
def test_writer_resume_after_crash_is_exact_and_idempotent(tmp_path, name):
    _needs(name)
    p = tmp_path / name
    w = ResultWriter(p)
    w.write_chunk(chunk(0, 5))
    w.write_chunk(chunk(5, 10))
    del w  # "crash": never closed
    # simulate a kill in the middle of writing the third chunk
    if name.endswith(".csv"):
        with open(p, "ab") as fh:
            fh.write(b"a.csv,10,0.1,100,Tr")
    elif name.endswith(".parquet"):
        (p / ".tmp-part-000002.parquet").write_bytes(b"PAR1 half a file")
    else:
        # a chunk cut off while written, and a fold of the parts into the table cut off
        (tmp_path / "out.h5.parts" / ".tmp-part-000002.h5").write_bytes(b"\x89HDF half")
        (tmp_path / ".tmp-out.h5").write_bytes(b"\x89HDF half a copy")
    written = []
    for _ in range(2):  # resume, then resume again: the second run adds nothing
        with ResultWriter(p) as w:
            n_done = 15 if written else 10
            assert w.done_keys() == {("a.csv", i) for i in range(n_done)}
            written.append(sum(w.write_chunk(chunk(lo, lo + 5)) for lo in range(0, 15, 5)))
        assert_table(read_table(p), 15)
    assert written == [5, 0]
    if name.endswith(".parquet"):
        assert sorted(os.listdir(p)) == ["_common_metadata"] + [
            f"part-00000{i}.parquet" for i in range(3)
        ]
    if name.endswith(".h5"):  # parts folded into the table, temporary copies gone
        assert sorted(os.listdir(tmp_path)) == ["out.h5", "out.h5.lock"]


def test_writer_killed_process_then_resume(tmp_path):
    """A process SIGKILLed after two chunks (writers never closed) resumes exactly."""
    names = ["out.csv"]
    names += ["out.parquet"] if importlib.util.find_spec("pyarrow") else []
    names += ["out.h5"] if importlib.util.find_spec("h5py") else []
    paths = [tmp_path / n for n in names]
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        import numpy as np
        from peakfit.io import ResultWriter
        inf, nan = float("inf"), float("nan")
        FLOATS = {FLOATS!r}
{textwrap.indent(inspect.getsource(chunk), "        ")}
        writers = [ResultWriter(p) for p in {[str(p) for p in paths]!r}]
        for w in writers:
            w.write_chunk(chunk(0, 5))
            w.write_chunk(chunk(5, 10))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    for p in paths:
        with ResultWriter(p) as w:
            assert w.done_keys() == {("a.csv", i) for i in range(10)}
            assert w.write_chunk(chunk(5, 10)) == 0
            assert w.write_chunk(chunk(10, 15)) == 5
        assert_table(read_table(p), 15)


def test_csv_uncommitted_tail_is_cut_on_open(tmp_path):
    """Bytes beyond the committed length in the sidecar (a chunk cut off by a kill) go."""
    p = tmp_path / "t.csv"
    with ResultWriter(p) as w:
        w.write_chunk({"source": ["f"], "index": [0], "v": [1.5]})
    assert p.read_bytes() == b"source,index,v\nf,0,1.5\n"
    with open(p, "ab") as fh:
        fh.write(b"f,1,2.5\nf,2,2.")  # one complete and one partial row of an uncommitted chunk
    assert read_table(p)["index"].tolist() == [0]  # readers see committed rows only
    with ResultWriter(p) as w:
        assert w.done_keys() == {("f", 0)}
    assert p.read_bytes() == b"source,index,v\nf,0,1.5\n"


def test_read_table_as_frame(tmp_path):
    pd = pytest.importorskip("pandas")
    p = tmp_path / "t.csv"
    with ResultWriter(p, columns=["index", "source", "r2"]) as w:
        w.write_chunk({"source": ["x.h5", "x.h5"], "index": [3, 4], "r2": [0.5, 0.25]})
    df = read_table(p, as_frame=True)
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["index", "source", "r2"]
    assert df["r2"].tolist() == [0.5, 0.25] and df["index"].tolist() == [3, 4]


def test_writer_errors(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    bad = blocker / "out.csv"
    with pytest.raises(InputError, match=f"cannot write result table {bad}"):
        ResultWriter(bad)
    with pytest.raises(InputError, match=r"unknown extension '\.xlsx'"):
        ResultWriter(tmp_path / "o.xlsx")
    with pytest.raises(InputError, match="the column 'index' is required"):
        ResultWriter(tmp_path / "o.csv", columns=["source", "sse"])
    p = tmp_path / "o.csv"
    with ResultWriter(p) as w:
        with pytest.raises(InputError, match="the column 'source' is required"):
            w.write_chunk({"index": [0], "v": [1.0]})
        w.write_chunk({"source": ["s"], "index": [0], "v": [1.0]})
        with pytest.raises(InputError, match=r"missing \['v'\], extra \['w'\]"):
            w.write_chunk({"source": ["s"], "index": [1], "w": [1.0]})
        with pytest.raises(
            InputError, match=r"chunk repeats the key \(source, index\) = \('s', 2\)"
        ):
            w.write_chunk({"source": ["s", "s"], "index": [2, 2], "v": [1.0, 2.0]})
        with pytest.raises(InputError, match="different lengths"):
            w.write_chunk({"source": ["s"], "index": [1, 2], "v": [1.0]})
        with pytest.raises(InputError, match="column 'v' holds float values; this chunk has str"):
            w.write_chunk({"source": ["s"], "index": [1], "v": ["high"]})
    with pytest.raises(InputError, match=r"has columns \['source', 'index', 'v'\]"):
        ResultWriter(p, columns=["source", "index", "w"])
    with pytest.raises(InputError, match="is closed"):
        w.write_chunk({"source": ["s"], "index": [5], "v": [1.0]})


def test_writer_parquet_refuses_existing_file(tmp_path):
    pytest.importorskip("pyarrow")
    p = tmp_path / "o.parquet"
    p.write_bytes(b"x")
    with pytest.raises(InputError, match=r"is not a peakfit result table \(it is a file"):
        ResultWriter(p)
