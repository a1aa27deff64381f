"""Reading spectra from files and writing result tables that can be resumed.

Readers
-------
:func:`load_spectra` reads one file into a :class:`Spectra` (a shared or per-spectrum ``x`` and a
``(k, m)`` matrix ``Y``).  :func:`iter_spectra_chunks` yields the same spectra in chunks with
bounded memory, and :func:`count_spectra` counts them cheaply.  Supported formats, chosen by the
file extension (case-insensitive):

=======================  ========================================================================
``.csv .tsv .txt .dat``  delimited text: an ``x`` column plus ``y`` columns, or one spectrum a row;
``.xy``, no extension,   also any preamble (NIST StRD), comment lines, named columns, decimal
``-`` (standard input)   commas; a file without an extension is recognised by its content
``.npy``                 a 1-D (one spectrum) or 2-D ``(k, m)`` array; never unpickled
``.npz``                 arrays ``x`` and ``Y``/``y``/``spectra`` (or names set by ``x=``/``y=``)
``.h5 .hdf5``            datasets ``x`` and ``Y``/``y``/``spectra`` (or ``dataset=``/``x=``)
``.mat``                 MATLAB v5 (scipy) or v7.3 (HDF5, via h5py), variables as for HDF5
=======================  ========================================================================

Every problem with a file raises :class:`~peakfit.errors.FileFormatError` (a ``ValueError``) whose
message starts with the path and, for text files, the 1-based line and column.  A file that does
not exist raises :class:`MissingFileError`, which is both a ``FileFormatError`` and a
``FileNotFoundError``.

Writers
-------
:class:`ResultWriter` and :func:`read_table` live in :mod:`peakfit.tables` (result tables that
record what made them, are locked while written and resume a killed job exactly); they are
re-exported here.

h5py, pyarrow and pandas are optional (``pip install "peakfit[io]"``); they are imported only by
the code paths that need them.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import io as _stdio
import math
import os
import re
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from peakfit.errors import FileFormatError, InputError
from peakfit.tables import ResultWriter, read_table

__all__ = [
    "MissingFileError",
    "ResultWriter",
    "Spectra",
    "count_spectra",
    "iter_spectra_chunks",
    "load_spectra",
    "read_table",
]

PathLike = str | os.PathLike

Layout = Literal["auto", "columns", "rows"]

_TEXT_EXTS = (".csv", ".tsv", ".txt", ".dat", ".xy")
_FORMATS = {
    ".csv": "text",
    ".xy": "text",
    ".tsv": "text",
    ".txt": "text",
    ".dat": "text",
    ".npy": "npy",
    ".npz": "npz",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".mat": "mat",
}
_Y_DEFAULTS = ("Y", "y", "spectra")
_X_DEFAULT = "x"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_IO_EXTRA = 'pip install "peakfit[io]"'


class MissingFileError(FileFormatError, FileNotFoundError):
    """The input file does not exist.

    Both a :class:`~peakfit.errors.FileFormatError` (hence ``InputError``/``ValueError``) and a
    ``FileNotFoundError``, so either ``except`` clause catches it.  ``path`` (and ``filename``)
    name the file.
    """

    def __init__(self, path: str) -> None:
        super().__init__("file not found", path)
        self.filename = path

    def __str__(self) -> str:
        return BaseException.__str__(self)  # not OSError's "[Errno None] ..." form


def _require(module: str, purpose: str) -> Any:
    """Import an optional dependency or raise an ImportError naming the ``io`` extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{purpose} needs the optional package {module!r}; install it with: {_IO_EXTRA}"
        ) from exc


# --------------------------------------------------------------------------------------------
# Spectra container
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spectra:
    """A set of spectra read from one file.

    Attributes
    ----------
    x : numpy.ndarray
        Abscissa, float64: shape ``(m,)`` shared by all spectra, or ``(k, m)`` one row per
        spectrum.
    Y : numpy.ndarray
        Ordinates, float64, shape ``(k, m)``: one spectrum per row.  May contain NaN.
    names : tuple of str
        One name per spectrum: the column header, ``col3``, ``row3`` (0-based position in the
        file), or the variable name for a single 1-D spectrum.
    source : str
        The file the spectra came from.

    Examples
    --------
    >>> import numpy as np
    >>> s = Spectra(np.arange(3.0), np.ones((2, 3)), ("a", "b"), "mem")
    >>> s.k, s.m, len(s)
    (2, 3, 2)
    >>> s.x_of(1)
    array([0., 1., 2.])
    """

    x: np.ndarray
    Y: np.ndarray
    names: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        Y = np.asarray(self.Y, dtype=np.float64)
        if Y.ndim == 1:
            Y = Y[np.newaxis, :]
        if Y.ndim != 2:
            raise InputError(f"Spectra.Y must be 2-D (k, m); got shape {Y.shape}")
        x = np.asarray(self.x, dtype=np.float64)
        if x.shape not in ((Y.shape[1],), Y.shape):
            raise InputError(
                f"Spectra.x must have shape ({Y.shape[1]},) or {Y.shape} to match Y; got {x.shape}"
            )
        names = tuple(str(n) for n in self.names)
        if len(names) != Y.shape[0]:
            raise InputError(f"Spectra.names has {len(names)} entries but Y has {Y.shape[0]} rows")
        object.__setattr__(self, "Y", Y)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "source", str(self.source))

    @property
    def k(self) -> int:
        """Number of spectra."""
        return int(self.Y.shape[0])

    @property
    def m(self) -> int:
        """Number of points per spectrum."""
        return int(self.Y.shape[1])

    def __len__(self) -> int:
        return self.k

    def x_of(self, i: int) -> np.ndarray:
        """The abscissa of spectrum ``i`` (the shared ``x`` or row ``i`` of a 2-D ``x``)."""
        return self.x if self.x.ndim == 1 else self.x[i]


# --------------------------------------------------------------------------------------------
# Format dispatch and option checks
# --------------------------------------------------------------------------------------------


def _format_of(path: str) -> str:
    if path == "-":
        return "text"  # standard input
    ext = Path(path).suffix.lower()
    if not ext and os.path.isfile(path):
        return _format_by_content(path)
    fmt = _FORMATS.get(ext)
    if fmt is None:
        known = " ".join(sorted(_FORMATS))
        raise FileFormatError(
            f"unknown file extension {ext or '(none)'!r}; supported: {known}", path
        )
    return fmt


def _format_by_content(path: str) -> str:
    """The format of a file without an extension, from its first bytes (text otherwise)."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04"):
        return "npz"
    if head.startswith(_HDF5_SIGNATURE):
        return "hdf5"
    if head.startswith(b"MATLAB"):
        return "mat"
    return "text"


def _check_exists(path: str) -> None:
    if path == "-":
        return
    if not os.path.exists(path):
        raise MissingFileError(path)
    if os.path.isdir(path):
        raise FileFormatError("is a directory, expected a file", path)


def _check_layout(layout: str) -> None:
    if layout not in ("auto", "columns", "rows"):
        raise InputError(f"layout must be 'auto', 'columns' or 'rows'; got {layout!r}")


def _container_name(path: str, y: Any, dataset: str | None, variable: str | None) -> str | None:
    """The Y variable name for npz/HDF5/.mat, from whichever of y=, dataset=, variable= is set."""
    pairs = (("y", y), ("dataset", dataset), ("variable", variable))
    given = {k: v for k, v in pairs if v is not None}
    for key, value in given.items():
        if not isinstance(value, str):
            raise InputError(
                f"{key}= must be a variable/dataset name (str) for {Path(path).suffix} files; "
                f"got {value!r}"
            )
    values = set(given.values())
    if len(values) > 1:
        raise InputError(f"conflicting names for the spectra: {given}")
    return values.pop() if values else None


# --------------------------------------------------------------------------------------------
# Delimited text
# --------------------------------------------------------------------------------------------


class _TextFile:
    """Delimited text: finds the preamble, delimiter and header, yields data lines, parses.

    Without ``skip_header`` the data block is found by content: it starts at the first line
    that follows a non-numeric line (or opens the file) and begins a run of
    :data:`_RUN` numeric lines with the same number of cells; everything above is preamble
    (titles, comments, NIST StRD's 60-line description). The last line above the block names
    the columns when it has one name per column (``# t y``, ``x,y1,y2``; a leading label such
    as NIST's ``Data:`` is dropped). Files whose data do not form such a run are read from
    their first non-comment line, as with ``skip_header=0``.
    """

    def __init__(
        self,
        path: str,
        delimiter: str | None,
        skip_header: int | None,
        header: bool | None,
        decimal: str = ".",
    ) -> None:
        self.path = path
        self.label = _STDIN_LABEL if path == "-" else path
        if skip_header is not None and (
            isinstance(skip_header, bool) or not isinstance(skip_header, int) or skip_header < 0
        ):
            raise InputError(f"skip_header must be an int >= 0 or None; got {skip_header!r}")
        self.skip = skip_header or 0
        if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
            raise InputError(f"delimiter must be a single character or None; got {delimiter!r}")
        if decimal not in (".", ","):
            raise InputError(f"decimal must be '.' or ','; got {decimal!r}")
        if decimal == "," and delimiter == ",":
            raise InputError("decimal=',' needs another delimiter than ','")
        self.decimal = decimal
        self.header_names: list[str] | None = None
        self.header_line: int | None = None
        first: tuple[int, str] | None = None
        with self._open() as fh:
            for lineno, text in self._candidates(fh):
                first = (lineno, text)
                break
        if first is None:
            empty = self.label != _STDIN_LABEL and os.path.getsize(path) == 0
            what = "file is empty" if empty else "no data lines (only comments or blank lines)"
            if self.label == _STDIN_LABEL and not _STDIN_CACHE.get("text"):
                what = "standard input is empty"
            raise FileFormatError(what, self.label)
        if skip_header is None and header is None:
            found = self._find_block(delimiter)
            if found is not None:
                self.delimiter, self.skip, self.header_names = found
                return
        lineno, text = first
        if delimiter is None:
            if Path(path).suffix.lower() == ".tsv":
                delimiter = "\t"
            elif "," in text and decimal != ",":
                delimiter = ","
            elif ";" in text:
                delimiter = ";"
            elif "\t" in text and decimal == ",":
                delimiter = "\t"
        self.delimiter = delimiter
        cells = self.split(text)
        is_header = header if header is not None else any(self._non_numeric(c) for c in cells)
        if is_header:
            self.header_names = [_unquote(c) for c in cells]
            self.header_line = lineno

    # ------------------------------------------------------------------ reading lines
    def _open(self) -> Any:
        if self.path == "-":
            if "text" not in _STDIN_CACHE:
                data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read()
                if isinstance(data, bytes):
                    try:
                        data = data.decode("utf-8-sig")
                    except UnicodeDecodeError as exc:
                        raise FileFormatError(
                            f"not UTF-8 text ({exc.reason} at byte {exc.start})", self.label
                        ) from exc
                _STDIN_CACHE["text"] = data
            return _stdio.StringIO(_STDIN_CACHE["text"], newline=None)
        try:
            return open(self.path, encoding="utf-8-sig", newline=None)
        except OSError as exc:
            raise FileFormatError(f"cannot open: {exc.strerror or exc}", self.path) from exc

    def _physical(self, fh: Any) -> Iterator[tuple[int, str]]:
        try:
            for lineno, raw in enumerate(fh, start=1):
                yield lineno, raw.rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise FileFormatError(
                f"not a UTF-8 text file ({exc.reason} at byte {exc.start})", self.label
            ) from exc

    def _candidates(self, fh: Any) -> Iterator[tuple[int, str]]:
        """(1-based line number, text) of non-blank, non-comment lines after skip_header."""
        for lineno, text in self._physical(fh):
            if lineno <= self.skip:
                continue
            stripped = text.strip()
            if not stripped or stripped.startswith("#"):
                continue
            yield lineno, text

    def _find_block(
        self, delimiter: str | None
    ) -> tuple[str | None, int, list[str] | None] | None:
        """(delimiter, lines to skip, column names) of the data block, or None."""
        lines: list[str] = []
        size = 0
        with self._open() as fh:
            for _, text in self._physical(fh):
                lines.append(text)
                size += len(text)
                if len(lines) >= _SNIFF_LINES or size > _SNIFF_CHARS:
                    break
        if delimiter is not None:
            delims: tuple[str | None, ...] = (delimiter,)
        elif Path(self.path).suffix.lower() == ".tsv":
            delims = ("\t",)
        else:
            delims = ("\t", ";", None) if self.decimal == "," else (",", "\t", ";", None)
        best = None
        for d in delims:
            found = self._block_with(lines, d)
            # the earliest block wins, then the most columns, then the order above
            if found is not None and (best is None or (-found[0], found[1])
                                      > (-best[1][0], best[1][1])):
                best = (d, found)
        if best is None:
            return None
        d, (start, ncol) = best
        self.delimiter = d
        return d, start, self._names_above(lines, start, ncol)

    def _block_with(self, lines: list[str], d: str | None) -> tuple[int, int] | None:
        """(0-based index of the first data line, columns) for delimiter ``d``, or None.

        Lines are classified as needed (the first run found ends the scan).
        """
        shape: list[int | None] = []  # cells of a numeric line, None for text, -1 for blank

        def classify(i: int) -> int | None:
            while len(shape) <= i:
                text = lines[len(shape)]
                s = text.strip()
                if not s or s.startswith("#"):
                    shape.append(-1)
                    continue
                cells = self._split_with(text, d)
                ok = any(_unquote(c) for c in cells) and not any(self._non_numeric(c)
                                                                  for c in cells)
                shape.append(len(cells) if ok else None)
            return shape[i]

        prev: int | None = None  # shape of the previous non-blank line
        widths: set[int] = set()  # numeric widths seen above
        for i in range(len(lines)):
            ncol = classify(i)
            if ncol == -1:
                continue
            if ncol is not None and prev is None:
                if ncol in widths:
                    return None  # data of this width above: a bad line inside data, no preamble
                run, j = 0, i
                while j < len(lines) and run < _RUN:
                    w = classify(j)
                    if w != -1:
                        if w != ncol:
                            break
                        run += 1
                    j += 1
                else:
                    return i, int(ncol)
            if ncol is not None:
                widths.add(ncol)
            prev = ncol
        return None

    def _names_above(self, lines: list[str], start: int, ncol: int) -> list[str] | None:
        """Column names from the last non-blank line above the data, if it has ``ncol``."""
        for text in reversed(lines[:start]):
            s = text.strip()
            if not s:
                continue
            s = s.lstrip("#").strip()
            cells = [_unquote(c) for c in self._split_with(s, self.delimiter)]
            if self.delimiter is not None and len(cells) == 1 and ncol > 1:
                cells = s.split()  # a '# t y' comment above comma-separated data
            if len(cells) == ncol + 1 and cells[0].endswith(":"):
                cells = cells[1:]  # NIST StRD: 'Data:   y   x'
            if len(cells) == ncol and all(cells) and any(self._non_numeric(c) for c in cells):
                return cells
            return None
        return None

    def split(self, text: str) -> list[str]:
        return self._split_with(text, self.delimiter)

    @staticmethod
    def _split_with(text: str, d: str | None) -> list[str]:
        if d is None:
            return text.split()
        if '"' in text:  # quoted cells may contain the delimiter: "1,234.5"
            return next(csv.reader([text], delimiter=d))
        return text.split(d)

    def _non_numeric(self, cell: str) -> bool:
        s = _unquote(cell)
        if not s:
            return False
        return _number(s, self.decimal) is None

    def data_lines(self) -> Iterator[tuple[int, str]]:
        """(line number, text) of every data line (header excluded)."""
        with self._open() as fh:
            for lineno, text in self._candidates(fh):
                if lineno == self.header_line:
                    continue
                yield lineno, text

    def first_data_line(self) -> tuple[int, str]:
        """The first data line, or FileFormatError when there is none."""
        gen = self.data_lines()
        try:
            first = next(gen, None)
        finally:
            gen.close()
        if first is None:
            raise FileFormatError("no data lines after the header", self.label)
        return first

    def parse(self, block: list[tuple[int, str]], ncol: int, ref_line: int) -> np.ndarray:
        """Parse data lines into an ``(len(block), ncol)`` float array (empty cells -> NaN)."""
        if not block:
            return np.empty((0, ncol))
        texts = [t for _, t in block]
        fast = True
        if self.decimal == ",":
            fast = not any("." in t for t in texts)  # '1.234' is a thousands separator there
            texts = [t.replace(",", ".") for t in texts]
        if fast:
            try:
                arr = np.loadtxt(
                    texts,
                    delimiter=self.delimiter,
                    dtype=np.float64,
                    comments=None,
                    ndmin=2,
                    quotechar='"',
                )
                if arr.shape == (len(block), ncol):
                    return arr
            except ValueError:
                pass
        out = np.empty((len(block), ncol))
        for r, (lineno, text) in enumerate(block):
            cells = self.split(text)
            if len(cells) != ncol:
                raise FileFormatError(
                    f"row has {len(cells)} columns but line {ref_line} has {ncol}",
                    self.label,
                    lineno,
                )
            for c, cell in enumerate(cells):
                out[r, c] = self._cell(cell, lineno, c + 1)
        return out

    def _cell(self, cell: str, lineno: int, column: int) -> float:
        s = _unquote(cell)
        if not s:
            return math.nan
        v = _number(s, self.decimal)
        if v is not None:
            return v
        hint = ""
        if self.decimal == "." and re.fullmatch(r"[+-]?\d+,\d+", s):
            hint = " (a decimal comma? use decimal=',' / --decimal-comma)"
        raise FileFormatError(f"cell {cell.strip()!r} is not a number{hint}", self.label,
                              lineno, column)


_STDIN_LABEL = "<stdin>"
_STDIN_CACHE: dict[str, str] = {}
_SNIFF_LINES = 5000  # lines read to find the data block (at most _SNIFF_CHARS characters)
_SNIFF_CHARS = 4_000_000
_RUN = 5  # numeric lines of equal width that open a data block
_THOUSANDS = {".": re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?([eE][+-]?\d+)?"),
              ",": re.compile(r"[+-]?\d{1,3}(\.\d{3})+(,\d*)?([eE][+-]?\d+)?")}


def _number(s: str, decimal: str = ".") -> float | None:
    """The value of a cell, or None: ``1.5``, ``nan``; ``1,234.5`` (thousands) and, with
    ``decimal=','``, ``1,5`` and ``1.234,5``.

    Examples
    --------
    >>> _number("1,234.5"), _number("1.234,5", ","), _number("2,5", ","), _number("1_0")
    (1234.5, 1234.5, 2.5, None)
    """
    if "_" in s:
        return None
    if _THOUSANDS[decimal].fullmatch(s):
        s = s.replace("," if decimal == "." else ".", "")
    if decimal == ",":
        s = s.replace(",", ".")
    try:
        return float(s)
    except ValueError:
        return None


def _unquote(cell: str) -> str:
    s = cell.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        s = s[1:-1].strip()
    return s


def _looks_non_numeric(cell: str) -> bool:
    s = _unquote(cell)
    return bool(s) and _number(s) is None


def _resolve_column(sel: int | str, header: list[str] | None, ncol: int, what: str) -> int:
    if isinstance(sel, (bool, np.bool_)):
        raise InputError(f"{what}= must be a column index or name; got {sel!r}")
    if isinstance(sel, (int, np.integer)):
        j = int(sel)
        if not -ncol <= j < ncol:
            raise InputError(f"{what}={j} is out of range: the file has {ncol} columns")
        return j % ncol
    if isinstance(sel, str):
        if header is None:
            raise InputError(f"{what}={sel!r} names a column but the file has no header line")
        if sel in header:
            return header.index(sel)
        folded = [h.casefold() for h in header]
        if folded.count(sel.casefold()) == 1:
            return folded.index(sel.casefold())
        raise InputError(f"{what}={sel!r}: no such column; columns are {header}")
    raise InputError(f"{what}= must be a column index or name; got {sel!r}")


def _as_selection(y: Any) -> list[Any] | None:
    if y is None:
        return None
    if isinstance(y, (str, int, np.integer)):
        return [y]
    return list(y)


def _text_layout(layout: str, tf: _TextFile | None = None, x: Any = None, y: Any = None
                 ) -> tuple[str, Any]:
    """The layout of a text file and the x option for it (``layout='auto'`` decides by content).

    ``'auto'`` reads columns, except for a file without column names, ``x``/``y`` options or
    a monotonic first column (as an x column would be), with lines of at least 20 cells that
    are more than the lines, or whose first line alone is strictly monotonic (an x line): that
    is one spectrum per line (x from the first line when it is such an x line). A file with
    more cells per line than lines that is read as columns gets a warning.
    """
    if layout != "auto":
        return layout, x
    if tf is None or tf.header_names is not None or x is not None or y is not None:
        return "columns", x
    gen = tf.data_lines()
    try:
        first = next(gen, None)
        if first is None:
            return "columns", x
        ncol = len(tf.split(first[1]))
        if ncol < _WIDE:
            return "columns", x
        sample = [first]
        for item in gen:  # enough lines to compare with ncol; parse at most _LAYOUT_ROWS
            sample.append(item)
            if len(sample) > ncol:
                break
    finally:
        gen.close()
    nrow = len(sample)
    try:
        data = tf.parse(sample[:_LAYOUT_ROWS], ncol, sample[0][0])
    except InputError:
        return "columns", x  # the reader will report the bad line
    with np.errstate(invalid="ignore"):
        d0 = np.diff(data[:, 0])
        col_mono = data.shape[0] >= 3 and (bool(np.all(d0 > 0)) or bool(np.all(d0 < 0)))
        dr = np.diff(data, axis=1)
        row_mono = np.all(dr > 0, axis=1) | np.all(dr < 0, axis=1)
    x_line = data.shape[0] >= 2 and bool(row_mono[0]) and not bool(row_mono[1:].any())
    if col_mono:
        if nrow <= ncol:
            warnings.warn(
                f"{tf.label}: lines have {ncol} cells but there are only {nrow} lines; "
                "reading columns (x = column 0); if each line is one spectrum, use "
                "layout='rows' (--layout rows)", UserWarning, stacklevel=4)
        return "columns", x
    if nrow <= ncol or x_line:
        x_row = 0 if x_line else None
        k = f"{nrow - x_line} spectra" if nrow <= ncol else "spectra"
        warnings.warn(
            f"{tf.label}: read as one spectrum per line ({k} of {ncol} values"
            f"{', x from the first line' if x_line else ''}); use layout='columns' "
            "(--layout columns) to read columns", UserWarning, stacklevel=4)
        return "rows", x_row
    return "columns", x


_WIDE = 20  # cells per line from which a file may hold one spectrum per line
_LAYOUT_ROWS = 200  # lines parsed to decide the layout


class _TextRows:
    """Layout 'rows' for text: every data row is one spectrum (streamed in line blocks)."""

    def __init__(self, tf: _TextFile, x: Any, y: Any) -> None:
        self.tf = tf
        if x is not None and (isinstance(x, (bool, str)) or not isinstance(x, (int, np.integer))):
            raise InputError(
                f"with layout='rows', x= must be the 0-based index of the data row holding x; "
                f"got {x!r}"
            )
        self.x_row = None if x is None else int(x)
        sel = _as_selection(y)
        if sel is not None:
            for s in sel:
                if isinstance(s, (bool, str)) or not isinstance(s, (int, np.integer)):
                    raise InputError(f"with layout='rows', y= must be data row indices; got {s!r}")
            sel = [int(s) for s in sel]
            if any(s < 0 for s in sel):
                raise InputError("with layout='rows', y= row indices must be >= 0")
        self.rows = sel
        first = tf.first_data_line()
        self.ref_line = first[0]
        self.ncol = len(tf.split(first[1]))
        self.x = self._read_x()

    def _read_x(self) -> np.ndarray:
        if self.x_row is None:
            return np.arange(self.ncol, dtype=np.float64)
        for i, (lineno, text) in enumerate(self.tf.data_lines()):
            if i == self.x_row:
                return self.tf.parse([(lineno, text)], self.ncol, self.ref_line)[0]
        raise InputError(f"x={self.x_row}: the file has fewer data rows")

    def _wanted(self) -> Iterator[tuple[int, tuple[int, str]]]:
        wanted = None if self.rows is None else set(self.rows)
        for i, item in enumerate(self.tf.data_lines()):
            if i == self.x_row:
                continue
            if wanted is None or i in wanted:
                yield i, item

    def count(self) -> int:
        if self.rows is not None:
            return len(self.rows)
        return sum(1 for _ in self._wanted())

    def chunks(self, chunk_size: int) -> Iterator[tuple[int, Spectra]]:
        start = 0
        block: list[tuple[int, str]] = []
        idx: list[int] = []
        found: set[int] = set()

        def emit() -> Spectra:
            Y = self.tf.parse(block, self.ncol, self.ref_line)
            return Spectra(self.x, Y, tuple(f"row{i}" for i in idx), self.tf.label)

        for i, item in self._wanted():
            block.append(item)
            idx.append(i)
            found.add(i)
            if len(block) == chunk_size:
                yield start, emit()
                start += len(block)
                block, idx = [], []
        if self.rows is not None and len(found) != len(set(self.rows)):
            missing = sorted(set(self.rows) - found)
            raise InputError(f"y= selects data rows {missing} that the file does not have")
        if block or start == 0:
            if not block:
                raise FileFormatError("no spectra rows in file", self.tf.label)
            yield start, emit()


def _load_text_columns(tf: _TextFile, x: Any, y: Any) -> Spectra:
    lines = list(tf.data_lines())
    if not lines:
        raise FileFormatError("no data lines after the header", tf.label)
    ref_line = lines[0][0]
    ncol = len(tf.split(lines[0][1]))
    header = tf.header_names
    if header is not None and len(header) != ncol:
        raise FileFormatError(
            f"header has {len(header)} names but line {ref_line} has {ncol} columns "
            "(skip the line with skip_header=)",
            tf.label,
            tf.header_line,
        )
    data = tf.parse(lines, ncol, ref_line)
    sel = _as_selection(y)
    ycols = None if sel is None else [_resolve_column(s, header, ncol, "y") for s in sel]
    named_x = [j for j, h in enumerate(header or ()) if h.casefold() == "x"]
    if x is not None:
        xcol: int | None = _resolve_column(x, header, ncol, "x")
    elif len(named_x) == 1 and ncol >= 2 and (ycols is None or named_x[0] not in ycols):
        xcol = named_x[0]  # a column named x (NIST StRD: 'y  x')
    elif ncol >= 2 and (ycols is None or 0 not in ycols):
        xcol = 0
    else:
        xcol = None
    if ycols is None:
        ycols = [j for j in range(ncol) if j != xcol]
    if not ycols:
        raise InputError(f"no y columns left: the file has {ncol} column(s) and x is column {xcol}")
    xv = np.arange(data.shape[0], dtype=np.float64) if xcol is None else data[:, xcol]
    names = tuple(header[j] if header is not None else f"col{j}" for j in ycols)
    return Spectra(xv, np.ascontiguousarray(data[:, ycols].T), names, tf.label)


# --------------------------------------------------------------------------------------------
# Arrays in containers: .npy, .npz, HDF5, MATLAB
# --------------------------------------------------------------------------------------------


class _Stored:
    """One stored numeric array, read lazily; ``transposed`` for MATLAB v7.3 (column-major).

    ``shape`` is the logical shape (NumPy's view for npy/npz/HDF5, MATLAB's view for .mat).
    """

    def __init__(
        self,
        name: str,
        shape: tuple[int, ...],
        get: Callable[[Any], np.ndarray],
        path: str,
        transposed: bool = False,
    ) -> None:
        self.name = name
        self.path = path
        self.transposed = transposed
        self.get = get
        self.shape = tuple(reversed(shape)) if transposed else tuple(shape)
        if len(self.shape) not in (1, 2) or 0 in self.shape:
            raise FileFormatError(
                f"{name!r} has shape {self.shape}; expected a non-empty 1-D or 2-D array", path
            )

    def _check(self, a: np.ndarray) -> np.ndarray:
        return _as_float(a, self.name, self.path)

    def all(self) -> np.ndarray:
        a = self._check(np.asarray(self.get(Ellipsis)))
        return a.T if self.transposed else a

    def rows(self, i: int, j: int) -> np.ndarray:
        """Logical ``A[i:j, :]``."""
        if self.transposed:
            return self._check(np.asarray(self.get((slice(None), slice(i, j))))).T
        return self._check(np.asarray(self.get((slice(i, j), slice(None)))))

    def cols(self, i: int, j: int) -> np.ndarray:
        """Logical ``A[:, i:j]``."""
        if self.transposed:
            return self._check(np.asarray(self.get((slice(i, j), slice(None))))).T
        return self._check(np.asarray(self.get((slice(None), slice(i, j)))))


def _as_float(a: np.ndarray, name: str, path: str) -> np.ndarray:
    kind = a.dtype.kind
    if kind in "biuf":
        return np.asarray(a, dtype=np.float64)
    if kind == "c":
        raise FileFormatError(f"{name!r} is complex; only real data can be fitted", path)
    raise FileFormatError(f"{name!r} is not numeric (dtype {a.dtype})", path)


class _ArraySpectra:
    """Spectra stored as an array ``Y`` (1-D or 2-D) with an optional ``x`` array.

    A 1-D ``x`` (or a row/column vector) is read at once; a 2-D ``x`` (one abscissa per
    spectrum, same shape as ``Y``) is sliced chunk by chunk like ``Y``.
    """

    def __init__(self, ystore: _Stored, xstore: _Stored | None, layout: str, path: str) -> None:
        self.y = ystore
        self.path = path
        shape = ystore.shape
        self.one_d = len(shape) == 1 or 1 in shape  # a MATLAB row/column vector: one spectrum
        self.x: np.ndarray | None = None
        self.x2d: _Stored | None = None
        if xstore is not None:
            if len(xstore.shape) == 1 or 1 in xstore.shape:
                self.x = xstore.all().ravel()
            elif xstore.shape != shape:
                raise FileFormatError(
                    f"x {xstore.name!r} has shape {xstore.shape}; a 2-D x must have the shape "
                    f"of {ystore.name!r} {shape}",
                    path,
                )
            else:
                self.x2d = xstore
        if self.one_d:
            self.orient = "rows"
            self.k, self.m = 1, int(np.prod(shape))
            if self.x is not None and self.x.shape != (self.m,):
                raise FileFormatError(
                    f"x has {self.x.size} values but {ystore.name!r} has {self.m} points", path
                )
            return
        r, c = shape
        if layout == "auto":
            layout = "columns" if self.x is not None and self.x.shape == (r,) != (c,) else "rows"
        self.orient = layout
        self.k, self.m = (r, c) if layout == "rows" else (c, r)
        if self.x is not None and self.x.shape != (self.m,):
            raise FileFormatError(
                f"x has {self.x.size} values but {ystore.name!r} {shape} holds {self.k} spectra "
                f"of {self.m} points (layout={layout!r})",
                path,
            )

    def take(self, i: int, j: int) -> Spectra:
        if self.one_d:
            Y = self.y.all().reshape(1, -1)
            names: tuple[str, ...] = (self.y.name,)
        elif self.orient == "rows":
            Y = self.y.rows(i, j)
            names = tuple(f"row{n}" for n in range(i, j))
        else:
            Y = self.y.cols(i, j).T
            names = tuple(f"col{n}" for n in range(i, j))
        if self.x2d is not None:
            x = self.x2d.rows(i, j) if self.orient == "rows" else self.x2d.cols(i, j).T
        elif self.x is not None:
            x = self.x
        else:
            x = np.arange(self.m, dtype=np.float64)
        return Spectra(x, np.ascontiguousarray(Y), names, self.path)

    def chunks(self, chunk_size: int) -> Iterator[tuple[int, Spectra]]:
        for i in range(0, self.k, chunk_size):
            yield i, self.take(i, min(i + chunk_size, self.k))


def _pick(
    available: Sequence[str],
    wanted: str | None,
    defaults: Sequence[str],
    what: str,
    path: str,
    kind: str,
) -> str:
    if wanted is not None:
        if wanted in available:
            return wanted
        raise FileFormatError(
            f"no {kind} {wanted!r} for the {what}; available: {_listing(available)}", path
        )
    for name in defaults:
        if name in available:
            return name
    raise FileFormatError(
        f"no {kind} for the {what} (looked for {', '.join(map(repr, defaults))}; pass "
        f"{'dataset=' if kind == 'dataset' else 'variable='}); available: {_listing(available)}",
        path,
    )


def _listing(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names) if names else "(none)"


@contextlib.contextmanager
def _open_arrays(
    path: str, fmt: str, x: Any, yname: str | None, layout: str
) -> Iterator[_ArraySpectra]:
    if x is not None and not isinstance(x, str):
        raise InputError(f"x= must be a variable/dataset name (str) for {fmt} files; got {x!r}")
    if fmt == "npy":
        if x is not None or yname is not None:
            raise InputError(".npy files hold one array: x=, y=, dataset=, variable= do not apply")
        _check_signature(path, (_NPY_SIGNATURE,), ".npy", "a NumPy array header")
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise _numpy_error(exc, ".npy", path) from exc
        if not isinstance(arr, np.ndarray):  # pragma: no cover - np.load always returns ndarray
            raise FileFormatError("not a .npy array", path)
        if arr.dtype.kind not in "biuf":
            _as_float(arr[:0], Path(path).name, path)
        yield _ArraySpectra(_Stored("y", arr.shape, arr.__getitem__, path), None, layout, path)
        return
    if fmt == "npz":
        _check_signature(path, _ZIP_SIGNATURES, ".npz", "a zip archive of .npy arrays")
        try:
            npz = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise _numpy_error(exc, ".npz", path) from exc
        with npz:
            keys = list(npz.files)
            yn = _pick(keys, yname, _Y_DEFAULTS, "spectra", path, "array")
            xn = (
                _pick(keys, x, (), "x", path, "array")
                if x is not None
                else (_X_DEFAULT if _X_DEFAULT in keys else None)
            )
            try:
                Yarr = npz[yn]
                xarr = None if xn is None else npz[xn]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                raise _numpy_error(exc, ".npz", path) from exc
            for name, arr in ((yn, Yarr), (xn, xarr)):
                if arr is not None and not isinstance(arr, np.ndarray):
                    raise FileFormatError(
                        f"not a valid .npz file: its member {name!r} is not a .npy array", path
                    )
            ystore = _Stored(yn, Yarr.shape, Yarr.__getitem__, path)
            xstore = None if xarr is None else _Stored(xn, xarr.shape, xarr.__getitem__, path)
            yield _ArraySpectra(ystore, xstore, layout, path)
        return
    if fmt == "hdf5" or (fmt == "mat" and _is_hdf5(path)):
        h5py = _require("h5py", f"reading {Path(path).suffix} files")
        try:
            fh = h5py.File(path, "r")
        except OSError as exc:
            raise FileFormatError(f"not a valid HDF5 file: {exc}", path) from exc
        with fh:
            mat = fmt == "mat"
            names = _h5_variables(fh, mat)
            kind = "variable" if mat else "dataset"
            yn = _pick(names, yname, _Y_DEFAULTS, "spectra", path, kind)
            xn = (
                _pick(names, x, (), "x", path, kind)
                if x is not None
                else (_X_DEFAULT if _X_DEFAULT in names else None)
            )
            yds = fh[yn]
            if mat:
                _check_mat73_numeric(yds, yn, path)
            elif yds.dtype.kind not in "biufc":
                raise FileFormatError(f"{yn!r} is not numeric (dtype {yds.dtype})", path)
            xstore = None
            if xn is not None:
                xds = fh[xn]
                if mat:
                    _check_mat73_numeric(xds, xn, path)
                xstore = _Stored(xn, xds.shape, xds.__getitem__, path, transposed=mat)
            ystore = _Stored(yn, yds.shape, yds.__getitem__, path, transposed=mat)
            yield _ArraySpectra(ystore, xstore, layout, path)
        return
    if fmt == "mat":
        sio = importlib.import_module("scipy.io")
        try:
            info = sio.whosmat(path)
        except Exception as exc:  # scipy raises several types on corrupt files
            raise FileFormatError(f"not a valid MATLAB .mat file: {exc}", path) from exc
        shapes = {name: (shape, cls) for name, shape, cls in info}
        names = list(shapes)
        yn = _pick(names, yname, _Y_DEFAULTS, "spectra", path, "variable")
        xn = (
            _pick(names, x, (), "x", path, "variable")
            if x is not None
            else (_X_DEFAULT if _X_DEFAULT in names else None)
        )
        cache: dict[str, np.ndarray] = {}

        def load(name: str) -> np.ndarray:
            if name not in cache:
                cache[name] = sio.loadmat(path, variable_names=[name])[name]
                if shapes[name][1] in ("cell", "struct", "char", "object", "function_handle"):
                    raise FileFormatError(
                        f"variable {name!r} is a MATLAB {shapes[name][1]}, not numeric", path
                    )
                if hasattr(cache[name], "toarray"):  # sparse
                    cache[name] = cache[name].toarray()
            return cache[name]

        for name in (yn, xn):
            if name is not None and shapes[name][1] in ("cell", "struct", "char", "object"):
                raise FileFormatError(
                    f"variable {name!r} is a MATLAB {shapes[name][1]}, not numeric", path
                )
        xstore = None
        if xn is not None:
            xstore = _Stored(xn, tuple(shapes[xn][0]), lambda key: load(xn)[key], path)
        ystore = _Stored(yn, tuple(shapes[yn][0]), lambda key: load(yn)[key], path)
        yield _ArraySpectra(ystore, xstore, layout, path)
        return
    raise AssertionError(fmt)  # pragma: no cover


_NPY_SIGNATURE = b"\x93NUMPY"
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")


def _check_signature(path: str, signatures: Sequence[bytes], ext: str, what: str) -> None:
    """A FileFormatError unless the file starts with one of ``signatures``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(max(len(sig) for sig in signatures))
    except OSError as exc:
        raise FileFormatError(f"cannot open: {exc.strerror or exc}", path) from exc
    if not any(head.startswith(sig) for sig in signatures):
        raise FileFormatError(f"not a valid {ext} file (it does not start with {what})", path)


def _numpy_error(exc: BaseException, ext: str, path: str) -> FileFormatError:
    """NumPy's load error in our words; never an invitation to unpickle (allow_pickle)."""
    text = str(exc)
    if "pickle" in text.lower() or "object" in text.lower():
        return FileFormatError(
            f"not a valid {ext} file of numbers: it holds Python objects (pickled data), which "
            "peakfit never loads; save the spectra as a numeric array",
            path,
        )
    return FileFormatError(f"not a valid {ext} file (damaged header or data: {text})", path)


def _is_hdf5(path: str) -> bool:
    """True for HDF5 files (MATLAB v7.3 .mat files carry a 512-byte header before HDF5)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024 + 8)
    except OSError as exc:
        raise FileFormatError(f"cannot open: {exc.strerror or exc}", path) from exc
    return any(head[o : o + 8] == _HDF5_SIGNATURE for o in (0, 512, 1024))


def _h5_variables(fh: Any, mat: bool) -> list[str]:
    """Dataset paths in an HDF5 file; for MATLAB v7.3 only the top-level variables."""
    h5py = importlib.import_module("h5py")
    if mat:
        return [k for k in fh if not k.startswith("#") and isinstance(fh[k], h5py.Dataset)]
    found: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found.append(name)

    fh.visititems(visit)
    return found


def _check_mat73_numeric(ds: Any, name: str, path: str) -> None:
    cls = ds.attrs.get("MATLAB_class", b"")
    if isinstance(cls, bytes):
        cls = cls.decode("ascii", "replace")
    if ds.attrs.get("MATLAB_empty", 0):
        raise FileFormatError(f"variable {name!r} is empty", path)
    if cls in ("char", "cell", "struct", "function_handle") or ds.dtype.kind not in "biufc":
        raise FileFormatError(f"variable {name!r} is MATLAB {cls or ds.dtype}, not numeric", path)
    if ds.dtype.names is not None:
        raise FileFormatError(f"variable {name!r} is complex; only real data can be fitted", path)


# --------------------------------------------------------------------------------------------
# Public readers
# --------------------------------------------------------------------------------------------


def load_spectra(
    path: PathLike,
    *,
    x: int | str | None = None,
    y: int | str | Sequence[int | str] | None = None,
    layout: Layout = "auto",
    dataset: str | None = None,
    variable: str | None = None,
    delimiter: str | None = None,
    skip_header: int | None = None,
    header: bool | None = None,
    decimal: str = ".",
) -> Spectra:
    """Read all spectra of one file.

    Parameters
    ----------
    path : str or path-like
        The file.  The format follows the extension (case-insensitive): ``.csv .tsv .txt .dat``
        (text), ``.npy``, ``.npz``, ``.h5 .hdf5``, ``.mat`` (v5 or v7.3).
    x : int or str, optional
        Text, ``layout='columns'``: the x column (0-based index or header name); default: the
        first column when there are at least 2 columns (and ``y`` does not select it), else
        ``x = 0, 1, ..., m-1``.  Text, ``layout='rows'``: the 0-based data row holding x (that
        row is then not a spectrum); default ``0..m-1``.  Containers (npz/HDF5/.mat): the name
        of the x array; default ``'x'`` if present, else ``0..m-1``.  A 2-D x gives one
        abscissa per spectrum.
    y : int, str or sequence of them, optional
        Text: the y columns (``layout='columns'``) or data rows (``layout='rows'``) to read;
        default all others.  Containers: the name of the spectra array (same as ``dataset=`` /
        ``variable=``); default the first of ``'Y'``, ``'y'``, ``'spectra'``.
    layout : {'auto', 'columns', 'rows'}
        Text: ``'columns'`` (x column plus y columns) or ``'rows'`` (one spectrum per line);
        ``'auto'`` decides by content (see Notes).  Containers: a 2-D array holds one spectrum
        per row (``'rows'``) or per column (``'columns'``, i.e. ``Y.T`` is used); ``'auto'``
        picks the orientation whose length matches ``x`` and otherwise ``'rows'``.  For
        ``.mat`` files rows and columns are MATLAB's.
    dataset, variable : str, optional
        Name of the spectra array in an HDF5 file (``dataset``; may contain ``/`` groups) or a
        ``.mat`` file (``variable``); either is accepted for any container.
    delimiter : str, optional
        Text: the field separator.  Default: detected, the one of ``,`` tab ``;`` and runs of
        whitespace that finds the data earliest, then splits it into the most columns (tab for
        ``.tsv``).
    skip_header : int, optional
        Text: number of physical lines at the top of the file to ignore entirely.  Default:
        the preamble is found by content (titles, comments, the 60 lines of a NIST StRD
        file): the data start at the first run of numeric lines of equal width, and the line
        above them names the columns when it has one name per column.
    header : bool, optional
        Text: whether a line of column names precedes the data.  Default: auto-detected (it
        has a cell that is not a number).  ``False`` reads from the first non-comment line.
    decimal : {'.', ','}
        Text: the decimal mark.  With ``','`` (``1,5``) the delimiter is ``;``, tab or
        whitespace.  Quoted numbers with thousands separators (``"1,234.5"``, or
        ``"1.234,5"`` with ``decimal=','``) are read either way.

    Returns
    -------
    Spectra
        ``x`` (``(m,)`` or ``(k, m)``), ``Y`` ``(k, m)`` float64, ``names``, ``source``.

    Raises
    ------
    MissingFileError
        The file does not exist (also a ``FileNotFoundError``).
    peakfit.errors.FileFormatError
        Unknown extension, empty file, rows of different lengths (names the line), a cell that
        is not a number (names line, column and the cell text), a missing variable/dataset
        (lists the available ones), non-numeric or complex data.
    peakfit.errors.InputError
        Inconsistent options (a column that does not exist, a bad ``layout``).

    Notes
    -----
    Text files: ``path='-'`` reads standard input; a column named ``x`` is the default x;
    ``layout='auto'`` reads one spectrum per line when the lines are long (at least 20 cells,
    more than there are lines), unnamed, and the first column is not monotonic (with a warning
    either way when lines outnumber cells); lines whose first non-blank character is ``#`` and
    blank lines are skipped;
    a UTF-8 byte-order mark is ignored; cells may be quoted; ``nan``/``NaN``/empty cells become
    NaN (the fitting layer reports them).  ``.npy`` files are always read with
    ``allow_pickle=False``.  Options that do not apply to a format (``delimiter`` for an HDF5
    file, ``dataset`` for a CSV file) are ignored.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> p = os.path.join(d, "s.csv")
    >>> _ = open(p, "w").write("x,a,b\\n0,1,2\\n1,3,4\\n")
    >>> s = load_spectra(p)
    >>> s.names, s.x.tolist(), s.Y.tolist()
    (('a', 'b'), [0.0, 1.0], [[1.0, 3.0], [2.0, 4.0]])
    """
    spath = os.fspath(path)
    k_chunks = list(
        iter_spectra_chunks(
            spath,
            None,
            x=x,
            y=y,
            layout=layout,
            dataset=dataset,
            variable=variable,
            delimiter=delimiter,
            skip_header=skip_header,
            header=header,
            decimal=decimal,
        )
    )
    if len(k_chunks) == 1:
        return k_chunks[0][1]
    parts = [c for _, c in k_chunks]
    xs = parts[0].x
    if xs.ndim == 2:
        xs = np.concatenate([p.x for p in parts])
    return Spectra(
        xs, np.concatenate([p.Y for p in parts]), sum((p.names for p in parts), ()), spath
    )


def iter_spectra_chunks(
    path: PathLike,
    chunk_size: int | None,
    *,
    x: int | str | None = None,
    y: int | str | Sequence[int | str] | None = None,
    layout: Layout = "auto",
    dataset: str | None = None,
    variable: str | None = None,
    delimiter: str | None = None,
    skip_header: int | None = None,
    header: bool | None = None,
    decimal: str = ".",
) -> Iterator[tuple[int, Spectra]]:
    """Yield ``(start_index, chunk)`` pairs of at most ``chunk_size`` spectra each.

    Memory stays bounded by the chunk for HDF5 and MATLAB v7.3 files (the dataset is sliced),
    ``.npy`` files (memory-mapped) and text files with ``layout='rows'`` (read in line
    blocks).  Text files with ``layout='columns'``, ``.npz`` and MATLAB v5 files are read once
    and then sliced.  Options are those of :func:`load_spectra`.

    Parameters
    ----------
    path : str or path-like
        The file.
    chunk_size : int or None
        Spectra per chunk (>= 1); ``None`` yields everything as one chunk.

    Yields
    ------
    tuple of (int, Spectra)
        The index of the chunk's first spectrum in the file, and the chunk.  Names carry the
        global positions (``row1000`` ...).

    Examples
    --------
    >>> import tempfile, os, numpy as np
    >>> p = os.path.join(tempfile.mkdtemp(), "s.npy")
    >>> np.save(p, np.arange(12.0).reshape(4, 3))
    >>> [(i, c.k) for i, c in iter_spectra_chunks(p, 3)]
    [(0, 3), (3, 1)]
    """
    spath = os.fspath(path)
    if chunk_size is not None and (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, (int, np.integer))
        or chunk_size < 1
    ):
        raise InputError(f"chunk_size must be an int >= 1 or None; got {chunk_size!r}")
    _check_layout(layout)
    _check_exists(spath)  # a missing file is reported as missing, whatever its name
    fmt = _format_of(spath)
    size = None if chunk_size is None else int(chunk_size)
    if fmt == "text":
        tf = _TextFile(spath, delimiter, skip_header, header, decimal)
        lay, x = _text_layout(layout, tf, x, y)
        if lay == "rows":
            return _TextRows(tf, x, y).chunks(size or 2**62)
        return _slice_spectra(_load_text_columns(tf, x, y), size)
    yname = _container_name(spath, y, dataset, variable)
    if x is not None and not isinstance(x, str):
        raise InputError(f"x= must be a variable/dataset name (str) for {fmt} files; got {x!r}")
    return _array_chunks(spath, fmt, x, yname, layout, size)


def _array_chunks(
    path: str, fmt: str, x: str | None, yname: str | None, layout: str, size: int | None
) -> Iterator[tuple[int, Spectra]]:
    with _open_arrays(path, fmt, x, yname, layout) as arrays:
        yield from arrays.chunks(size or max(arrays.k, 1))


def _slice_spectra(s: Spectra, chunk_size: int | None) -> Iterator[tuple[int, Spectra]]:
    if chunk_size is None or chunk_size >= s.k:
        yield 0, s
        return
    for i in range(0, s.k, chunk_size):
        j = min(i + chunk_size, s.k)
        x = s.x if s.x.ndim == 1 else s.x[i:j]
        yield i, Spectra(x, s.Y[i:j], s.names[i:j], s.source)


def count_spectra(
    path: PathLike,
    *,
    x: int | str | None = None,
    y: int | str | Sequence[int | str] | None = None,
    layout: Layout = "auto",
    dataset: str | None = None,
    variable: str | None = None,
    delimiter: str | None = None,
    skip_header: int | None = None,
    header: bool | None = None,
    decimal: str = ".",
) -> int:
    """Number of spectra :func:`load_spectra` would return, read cheaply where possible.

    Array shapes come from metadata (``.npy`` header, HDF5 dataset shape, ``whosmat`` for
    MATLAB v5; only a named ``x`` is read to decide the orientation); text files with
    ``layout='rows'`` are scanned line by line without parsing numbers; text files with
    ``layout='columns'`` read only the header and first data line.  Cells are therefore not
    validated.

    Examples
    --------
    >>> import tempfile, os, numpy as np
    >>> p = os.path.join(tempfile.mkdtemp(), "s.npy")
    >>> np.save(p, np.zeros((5, 7)))
    >>> count_spectra(p)
    5
    """
    spath = os.fspath(path)
    _check_layout(layout)
    _check_exists(spath)  # a missing file is reported as missing, whatever its name
    fmt = _format_of(spath)
    if fmt == "text":
        tf = _TextFile(spath, delimiter, skip_header, header, decimal)
        lay, x = _text_layout(layout, tf, x, y)
        if lay == "rows":
            return _TextRows(tf, x, y).count()
        first = tf.first_data_line()
        ncol = len(tf.split(first[1]))
        sel = _as_selection(y)
        if sel is not None:
            for s in sel:
                _resolve_column(s, tf.header_names, ncol, "y")
            return len(sel)
        has_x = x is not None or ncol >= 2
        if x is None and tf.header_names is not None and ncol >= 2:
            named = [h for h in tf.header_names if h.casefold() == "x"]
            if len(named) == 1:
                x = named[0]
        if x is not None:
            _resolve_column(x, tf.header_names, ncol, "x")
        return ncol - 1 if has_x else ncol
    yname = _container_name(spath, y, dataset, variable)
    with _open_arrays(spath, fmt, x, yname, layout) as arrays:
        return arrays.k
