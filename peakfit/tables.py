"""Result tables: append fit results chunk by chunk, safely, and resume a killed job.

:class:`ResultWriter` writes one row per fitted spectrum to CSV, Parquet (a directory of part
files) or HDF5; :func:`read_table` reads a table back and :func:`table_metadata` tells what
made it.  The three formats are interchangeable backends behind one writer: the format
follows the extension.

Safety
------
- A table records what made it (peakfit version, the settings the caller passes, the input
  files with their size and SHA-256) in its own metadata: CSV in a sidecar
  ``<table>.peakfit.json``, Parquet in the schema metadata of ``_common_metadata`` and of
  every part, HDF5 in the root attribute ``peakfit_table``.
- Opening an existing path verifies that it is a peakfit table *before* touching a byte, and
  refuses (:class:`TableMismatchError`) a file that is not one, other settings, or an input
  that changed since its rows were written.  ``restart=True`` moves the old table aside to a
  new name (``out.old-1.csv``) and starts over; nothing is ever deleted.
- An input file is never an output.
- A writer holds an exclusive lock (``<table>.lock``, the ``filelock`` package) from open to
  close: a second writer waits ``timeout`` seconds, then fails with :class:`TableLockedError`.
- Every chunk commit is atomic: after a kill, a chunk is in the table completely or not at
  all (CSV: the committed length in the sidecar, replaced atomically; Parquet: one part per
  chunk renamed into place; HDF5: one part file per chunk renamed into place, folded into a
  new copy of the table that replaces the old one; no file is ever modified in place).

h5py and pyarrow are optional (``pip install "peakfit[io]"``), imported only when needed.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import importlib
import io as _stdio
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import filelock
import numpy as np

from peakfit.errors import FileFormatError, InputError

__all__ = [
    "ResultWriter",
    "TableLockedError",
    "TableMismatchError",
    "file_fingerprint",
    "read_table",
    "table_metadata",
]

PathLike = str | os.PathLike

_TABLE_FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
}
_COMMIT_ATTR = "peakfit_committed_rows"
_COLUMNS_ATTR = "peakfit_columns"
_META_ATTR = "peakfit_table"  # HDF5 attribute and Parquet schema-metadata key
_META_FORMAT = "peakfit result table"
_META_VERSION = 1
_SIDECAR = ".peakfit.json"
_LOCK = ".lock"
_COMMON = "_common_metadata"
_TMP_PREFIX = ".tmp-"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_HASH_BLOCK = 1 << 20


class TableMismatchError(InputError):
    """An existing output is not a peakfit table, or was made with other settings or inputs.

    Raised before anything on disk is changed.  ``path`` is the table.
    """

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class TableLockedError(InputError):
    """Another process is writing the table (its lock file is held)."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


def _require(module: str, purpose: str) -> Any:
    from peakfit.io import _require as require

    return require(module, purpose)


def _table_format(path: str) -> str:
    ext = Path(path).suffix.lower()
    fmt = _TABLE_FORMATS.get(ext)
    if fmt is None:
        raise InputError(
            f"result table {path}: unknown extension {ext or '(none)'!r}; use .csv, .parquet, "
            ".pq, .h5 or .hdf5"
        )
    return fmt


def file_fingerprint(path: PathLike) -> dict[str, Any]:
    """Size and SHA-256 of a file: how a table recognises an input that has changed.

    Examples
    --------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> with open(p, "wb") as fh:
    ...     _ = fh.write(b"abc")
    >>> file_fingerprint(p)["size"], file_fingerprint(p)["sha256"][:12]
    (3, 'ba7816bf8f01')
    """
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            h.update(block)
            size += len(block)
    return {"size": size, "sha256": h.hexdigest()}


def _json_roundtrip(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value, sort_keys=True))
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{what} must be JSON-serialisable (str, numbers, lists, dicts): {exc}"
        ) from exc


def _version() -> str:
    from peakfit import __version__

    return __version__


def _new_meta(settings: Any) -> dict[str, Any]:
    return {
        "format": _META_FORMAT,
        "format_version": _META_VERSION,
        "peakfit": _version(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": settings,
        "inputs": {},
    }


def _parse_meta(text: str | bytes, where: str, path: str) -> dict[str, Any]:
    try:
        meta = json.loads(text)
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != _META_FORMAT:
        raise _not_a_table(path, f"{where} is not peakfit's")
    if not isinstance(meta.get("format_version"), int) or meta["format_version"] > _META_VERSION:
        raise TableMismatchError(
            f"result table {path} was written by a newer peakfit (format "
            f"{meta.get('format_version')!r}, peakfit {meta.get('peakfit')}); upgrade peakfit "
            "to resume it, or write to a new path",
            path,
        )
    meta.setdefault("inputs", {})
    return meta


def _not_a_table(path: str, why: str) -> TableMismatchError:
    return TableMismatchError(
        f"{path} exists and is not a peakfit result table ({why}); nothing was written. "
        "Choose a new output path, or pass restart=True to move it aside (it is kept under a "
        "new name) and start a new table",
        path,
    )


# --------------------------------------------------------------------------------------------
# Column types
# --------------------------------------------------------------------------------------------


_DTYPE_KINDS = {"b": "bool", "i": "int", "u": "int", "f": "float", "U": "str", "S": "str",
                "O": "str"}


def _kind_of(values: np.ndarray) -> str:
    kind = _DTYPE_KINDS.get(values.dtype.kind)
    if kind is None:
        raise InputError(f"unsupported column dtype {values.dtype}")
    return kind


def _coerce(values: Any, kind: str, name: str) -> np.ndarray:
    if kind == "str":
        out = [v.decode() if isinstance(v, bytes) else str(v) for v in list(values)]
        for v in out:
            if "\n" in v or "\r" in v:
                raise InputError(f"column {name!r}: strings must not contain line breaks: {v!r}")
        return np.array(out, dtype=object)
    arr = np.asarray(values)
    have = _kind_of(arr) if arr.size else kind
    if (
        have == kind
        or (kind == "float" and have in ("int", "bool"))
        or (kind == "int" and have == "bool")
    ):
        return arr.astype({"bool": np.bool_, "int": np.int64, "float": np.float64}[kind])
    raise InputError(f"column {name!r} holds {kind} values; this chunk has {have} ({arr.dtype})")


# --------------------------------------------------------------------------------------------
# Durable file operations
# --------------------------------------------------------------------------------------------


def _fsync_path(path: str) -> None:
    """fsync a file or directory by path (no-op where the OS does not allow it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. directories on Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _replace_atomically(final: str, write: Callable[[str], None]) -> None:
    """Write ``final`` through a temporary file in the same folder: fsync, os.replace, fsync."""
    folder, name = os.path.split(final)
    tmp = os.path.join(folder, f"{_TMP_PREFIX}{name}")
    write(tmp)
    _fsync_path(tmp)
    os.replace(tmp, final)
    _fsync_path(folder or ".")


def _write_json_atomically(final: str, obj: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=1, sort_keys=True)
            fh.write("\n")

    _replace_atomically(final, write)


# --------------------------------------------------------------------------------------------
# Backends: read_meta (read-only), recover, write_meta, append
# --------------------------------------------------------------------------------------------


class _CsvBackend:
    """CSV rows plus a JSON sidecar whose ``committed_bytes`` is the commit point."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sidecar = path + _SIDECAR
        self.columns: list[str] | None = None
        self.keys: list[tuple[str, int]] = []
        self.meta: dict[str, Any] = {}
        self._fh: Any = None

    def artefacts(self) -> list[str]:
        return [self.path, self.sidecar]

    def _size(self) -> int:
        return os.path.getsize(self.path) if os.path.exists(self.path) else 0

    def read_meta(self) -> dict[str, Any] | None:
        if os.path.isdir(self.path):
            raise _not_a_table(self.path, "it is a directory")
        size = self._size()
        if size == 0:
            return None  # nothing to lose: a new table (a stale sidecar is replaced)
        if not os.path.isfile(self.sidecar):
            name = os.path.basename(self.sidecar)
            raise _not_a_table(self.path, f"it has no metadata file {name}")
        with open(self.sidecar, "rb") as fh:
            meta = _parse_meta(fh.read(), f"its metadata file {self.sidecar}", self.path)
        committed = int(meta.get("committed_bytes", 0))
        if size < committed:
            raise TableMismatchError(
                f"result table {self.path} is shorter ({size} bytes) than its committed length "
                f"({committed} bytes): it was changed outside peakfit. Write to a new path, or "
                "pass restart=True to move it aside and start over",
                self.path,
            )
        columns = meta.get("columns")
        if committed and columns:
            with open(self.path, encoding="utf-8", errors="replace", newline="") as fh:
                head = next(csv.reader([fh.readline()]), [])
            if head != list(columns):
                raise TableMismatchError(
                    f"result table {self.path} has the header {head} but its metadata says "
                    f"{columns}: it was changed outside peakfit. Write to a new path, or pass "
                    "restart=True to move it aside and start over",
                    self.path,
                )
        return meta

    def recover(self, meta: dict[str, Any] | None) -> None:
        """Cut an uncommitted tail (a chunk cut off by a kill), then read the committed keys."""
        self.meta = dict(meta) if meta is not None else {}
        committed = int(self.meta.get("committed_bytes", 0))
        if not os.path.exists(self.path) or self._size() != committed:
            with open(self.path, "ab") as fh:
                fh.truncate(committed)
                fh.flush()
                os.fsync(fh.fileno())
        if committed == 0:
            self.columns = None
            return
        self.columns = list(self.meta["columns"])
        with open(self.path, "rb") as fh:
            text = fh.read(committed).decode("utf-8")
        reader = csv.reader(_stdio.StringIO(text))
        head = next(reader)
        si, ii = head.index("source"), head.index("index")
        for row in reader:
            if len(row) != len(head):
                raise FileFormatError(
                    f"row has {len(row)} fields, header has {len(head)}", self.path,
                    reader.line_num,
                )
            try:
                self.keys.append((row[si], int(row[ii])))
            except ValueError as exc:
                raise FileFormatError(
                    f"index {row[ii]!r} is not an integer", self.path, reader.line_num, ii + 1
                ) from exc

    def kinds(self) -> dict[str, str] | None:
        return None

    def write_meta(self, meta: dict[str, Any]) -> None:
        keep = {k: self.meta[k] for k in ("columns", "committed_bytes", "committed_rows")
                if k in self.meta}
        self.meta = {**meta, **keep}
        self.meta.setdefault("committed_bytes", 0)
        self.meta.setdefault("committed_rows", 0)
        _write_json_atomically(self.sidecar, self.meta)

    def append(
        self, columns: list[str], data: dict[str, np.ndarray], kinds: dict[str, str]
    ) -> None:
        buf = _stdio.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if self.columns is None:
            w.writerow(columns)
        n = len(data["index"])
        fmt = [{"float": _fmt_float, "int": str, "bool": str, "str": str}[kinds[c]]
               for c in columns]
        cols = [data[c].tolist() for c in columns]
        for r in range(n):
            w.writerow([f(col[r]) for f, col in zip(fmt, cols)])
        payload = buf.getvalue().encode("utf-8")
        if self._fh is None:
            self._fh = open(self.path, "ab")  # kept open between chunks
        committed = int(self.meta.get("committed_bytes", 0))
        if os.fstat(self._fh.fileno()).st_size != committed:  # an earlier write that failed
            self._fh.truncate(committed)
        self._fh.write(payload)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        meta = dict(self.meta)
        meta["columns"] = list(columns)
        meta["committed_bytes"] = int(meta.get("committed_bytes", 0)) + len(payload)
        meta["committed_rows"] = int(meta.get("committed_rows", 0)) + n
        _write_json_atomically(self.sidecar, meta)  # the commit point
        self.meta = meta
        self.columns = list(columns)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _fmt_float(v: float) -> str:
    return repr(float(v))


class _ParquetBackend:
    """A directory of part files, one per chunk, and ``_common_metadata`` with the metadata."""

    def __init__(self, path: str) -> None:
        self.pa = _require("pyarrow", "writing Parquet result tables")
        self.pq = importlib.import_module("pyarrow.parquet")
        self.path = path
        self.common = os.path.join(path, _COMMON)
        self.columns: list[str] | None = None
        self.keys: list[tuple[str, int]] = []
        self._kinds: dict[str, str] | None = None
        self.parts: list[str] = []
        self.meta: dict[str, Any] = {}

    def artefacts(self) -> list[str]:
        return [self.path]

    def read_meta(self) -> dict[str, Any] | None:
        if os.path.isfile(self.path):
            raise _not_a_table(
                self.path, "it is a file; peakfit writes Parquet tables as a directory of parts"
            )
        if not os.path.isdir(self.path) or not os.listdir(self.path):
            return None
        if not os.path.isfile(self.common):
            raise _not_a_table(self.path, f"the directory has no {_COMMON}")
        try:
            raw = (self.pq.read_schema(self.common).metadata or {}).get(_META_ATTR.encode())
        except Exception:  # pyarrow raises several types on a corrupt file
            raw = None
        if raw is None:
            raise _not_a_table(self.path, f"its {_COMMON} has no peakfit metadata")
        return _parse_meta(raw, f"the metadata in {self.common}", self.path)

    def recover(self, meta: dict[str, Any] | None) -> None:
        self.meta = dict(meta) if meta is not None else {}
        os.makedirs(self.path, exist_ok=True)
        for name in os.listdir(self.path):
            if name.startswith(_TMP_PREFIX):  # a chunk or metadata cut off by a kill
                os.remove(os.path.join(self.path, name))
        self.parts = _parquet_parts(self.path)
        if self.parts:
            schema = self.pq.read_schema(self.parts[0])
            self.columns = list(schema.names)
            self._kinds = {f.name: _arrow_kind(self.pa, f.type) for f in schema}
            for part in self.parts:
                t = self.pq.read_table(part, columns=["source", "index"])
                self.keys.extend(zip(t.column("source").to_pylist(), t.column("index").to_pylist()))

    def kinds(self) -> dict[str, str] | None:
        return self._kinds

    def _schema_meta(self) -> dict[bytes, bytes]:
        return {_META_ATTR.encode(): json.dumps(self.meta, sort_keys=True).encode()}

    def write_meta(self, meta: dict[str, Any]) -> None:
        self.meta = dict(meta)
        schema = self.pa.schema([], metadata=self._schema_meta())
        _replace_atomically(self.common, lambda tmp: self.pq.write_metadata(schema, tmp))

    def append(
        self, columns: list[str], data: dict[str, np.ndarray], kinds: dict[str, str]
    ) -> None:
        pa = self.pa
        types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
        arrays = [
            pa.array(data[c].tolist() if kinds[c] == "str" else data[c], type=types[kinds[c]])
            for c in columns
        ]
        table = pa.Table.from_arrays(arrays, names=columns)
        table = table.replace_schema_metadata(self._schema_meta())
        number = 0
        if self.parts:
            number = int(re.findall(r"\d+", os.path.basename(self.parts[-1]))[-1]) + 1
        final = os.path.join(self.path, f"part-{number:06d}.parquet")
        _replace_atomically(final, lambda tmp: self.pq.write_table(table, tmp))
        self.parts.append(final)
        self.columns = list(columns)
        self._kinds = dict(kinds)

    def close(self) -> None:
        pass


def _parquet_parts(path: str) -> list[str]:
    return sorted(
        os.path.join(path, n)
        for n in os.listdir(path)
        if n.endswith(".parquet") and not n.startswith((".", "_"))
    )


def _arrow_kind(pa: Any, t: Any) -> str:
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    return "str"


class _Hdf5Backend:
    """One 1-D dataset per column, never modified in place.

    A chunk is committed as a small HDF5 file ``<table>.parts/part-NNNNNN.h5`` (written under
    a temporary name, fsync-ed, renamed into place).  Closing the writer, or the next open
    after a kill, folds the pending parts into the table by writing a new copy of it
    (temporary name, fsync, ``os.replace``).  Rows already in the table are not added twice,
    so a kill at any point of the fold is harmless.  The attribute ``peakfit_committed_rows``
    counts the rows of the table file.
    """

    def __init__(self, path: str) -> None:
        self.h5py = _require("h5py", "writing HDF5 result tables")
        self.path = path
        self.parts_dir = path + ".parts"
        self.columns: list[str] | None = None
        self.keys: list[tuple[str, int]] = []
        self._kinds: dict[str, str] | None = None
        self.meta: dict[str, Any] = {}
        self._next_part = 0

    def artefacts(self) -> list[str]:
        return [self.path, self.parts_dir]

    def read_meta(self) -> dict[str, Any] | None:
        if os.path.isdir(self.path):
            raise _not_a_table(self.path, "it is a directory")
        if not os.path.exists(self.path) or os.path.getsize(self.path) == 0:
            if _h5_parts(self.parts_dir):
                raise _not_a_table(self.path, f"{self.parts_dir} holds rows but the table is gone")
            return None
        with open(self.path, "rb") as fh:
            if fh.read(8) != _HDF5_SIGNATURE:
                raise _not_a_table(self.path, "it is not an HDF5 file")
        try:
            fh = self.h5py.File(self.path, "r")
        except OSError as exc:
            raise _not_a_table(self.path, f"HDF5 cannot open it: {exc}") from exc
        with fh:
            raw = fh.attrs.get(_META_ATTR)
            if raw is None:
                if len(fh.keys()) or len(fh.attrs):
                    raise _not_a_table(self.path, f"it has no attribute {_META_ATTR!r}")
                return None  # an empty HDF5 file: nothing to lose
            if isinstance(raw, bytes):
                raw = raw.decode("utf-8", "replace")
            return _parse_meta(str(raw), f"its attribute {_META_ATTR!r}", self.path)

    def recover(self, meta: dict[str, Any] | None) -> None:
        self.meta = dict(meta) if meta is not None else {}
        if os.path.isdir(self.parts_dir):
            for name in os.listdir(self.parts_dir):
                if name.startswith(_TMP_PREFIX):  # a chunk cut off by a kill
                    os.remove(os.path.join(self.parts_dir, name))
        if meta is None:
            return  # a new table: write_meta creates the file
        self._fold()
        with self.h5py.File(self.path, "r") as fh:
            table = _h5_read(fh)
            self.columns = [str(c) for c in fh.attrs[_COLUMNS_ATTR]] if table else None
            self._kinds = {c: _h5_kind(fh[c]) for c in self.columns} if self.columns else None
        if table:
            self.keys = list(zip(table["source"].tolist(), table["index"].tolist()))

    def kinds(self) -> dict[str, str] | None:
        return self._kinds

    def write_meta(self, meta: dict[str, Any]) -> None:
        self.meta = dict(meta)
        self._rewrite()

    def _rewrite(self, parts: Sequence[str] = ()) -> None:
        """A new copy of the table (pending ``parts`` added, metadata set), then os.replace."""
        h5py = self.h5py
        new = not os.path.exists(self.path) or os.path.getsize(self.path) == 0

        def write(tmp: str) -> None:
            if new:
                h5py.File(tmp, "w").close()
            else:
                with open(self.path, "rb") as src, open(tmp, "wb") as dst:
                    while block := src.read(_HASH_BLOCK):
                        dst.write(block)
            with h5py.File(tmp, "a") as fh:
                n = int(fh.attrs.get(_COMMIT_ATTR, 0))
                cols = [str(c) for c in fh.attrs.get(_COLUMNS_ATTR, [])]
                for c in cols:
                    if fh[c].shape[0] != n:  # rows of a chunk the old counter did not commit
                        fh[c].resize((n,))
                done = set()
                if cols:
                    done = set(zip(fh["source"].asstr()[:n].tolist(), fh["index"][:n].tolist()))
                for part in parts:
                    with h5py.File(part, "r") as pf:
                        data = _h5_read(pf)
                        kinds = {c: _h5_kind(pf[c]) for c in data}
                        order = [str(c) for c in pf.attrs[_COLUMNS_ATTR]]
                    keys = list(zip(data["source"].tolist(), data["index"].tolist()))
                    keep = np.array([k not in done for k in keys], dtype=bool)
                    if not keep.any():
                        continue
                    if not cols:
                        _h5_create(h5py, fh, order, kinds)
                        cols = order
                    for c in cols:
                        ds = fh[c]
                        ds.resize((n + int(keep.sum()),))
                        ds[n:] = data[c][keep]
                    n += int(keep.sum())
                    done.update(k for k, kp in zip(keys, keep) if kp)
                fh.attrs[_COMMIT_ATTR] = n
                fh.attrs[_META_ATTR] = json.dumps(self.meta, sort_keys=True)

        _replace_atomically(self.path, write)

    def _fold(self) -> None:
        """Fold pending parts into the table (a no-op when there are none)."""
        parts = _h5_parts(self.parts_dir)
        if parts:
            self._rewrite(parts=parts)
            for part in parts:
                os.remove(part)
        if os.path.isdir(self.parts_dir) and not os.listdir(self.parts_dir):
            os.rmdir(self.parts_dir)

    def append(
        self, columns: list[str], data: dict[str, np.ndarray], kinds: dict[str, str]
    ) -> None:
        if not os.path.isdir(self.parts_dir):
            os.makedirs(self.parts_dir)
            _fsync_path(os.path.dirname(os.path.abspath(self.parts_dir)))
        while os.path.exists(os.path.join(self.parts_dir, f"part-{self._next_part:06d}.h5")):
            self._next_part += 1
        final = os.path.join(self.parts_dir, f"part-{self._next_part:06d}.h5")

        def write(tmp: str) -> None:
            with self.h5py.File(tmp, "w") as fh:  # contiguous datasets: written once
                for c in columns:
                    fh.create_dataset(c, data=data[c], dtype=_h5_dtype(self.h5py, kinds[c]))
                fh.attrs[_COLUMNS_ATTR] = np.array(columns, dtype=self.h5py.string_dtype())
                fh.attrs[_COMMIT_ATTR] = len(data["index"])

        _replace_atomically(final, write)
        self._next_part += 1
        self.columns = list(columns)
        self._kinds = dict(kinds)

    def close(self) -> None:
        self._fold()


def _h5_dtype(h5py: Any, kind: str) -> Any:
    return {"str": h5py.string_dtype("utf-8"), "int": np.int64, "float": np.float64,
            "bool": np.bool_}[kind]


def _h5_create(h5py: Any, fh: Any, columns: Sequence[str], kinds: Mapping[str, str]) -> None:
    for c in columns:
        fh.create_dataset(c, shape=(0,), maxshape=(None,), dtype=_h5_dtype(h5py, kinds[c]),
                          chunks=(4096,))
    fh.attrs[_COLUMNS_ATTR] = np.array(list(columns), dtype=h5py.string_dtype("utf-8"))
    fh.attrs[_COMMIT_ATTR] = 0


def _h5_parts(parts_dir: str) -> list[str]:
    if not os.path.isdir(parts_dir):
        return []
    return sorted(os.path.join(parts_dir, n) for n in os.listdir(parts_dir)
                  if n.startswith("part-") and n.endswith(".h5"))


def _h5_read(fh: Any) -> dict[str, np.ndarray]:
    """The committed rows of an open table or part file (``{}`` before the first chunk)."""
    if _COLUMNS_ATTR not in fh.attrs:
        return {}
    n = int(fh.attrs.get(_COMMIT_ATTR, 0))
    out: dict[str, np.ndarray] = {}
    for c in (str(c) for c in fh.attrs[_COLUMNS_ATTR]):
        ds = fh[c]
        out[c] = np.array(ds.asstr()[:n].tolist(), dtype=str) if _h5_kind(ds) == "str" else ds[:n]
    return out


def _h5_kind(ds: Any) -> str:
    return _DTYPE_KINDS.get(ds.dtype.kind, "str")  # HDF5 variable-length strings: kind O


_BACKENDS: dict[str, Callable[[str], Any]] = {
    "csv": _CsvBackend,
    "parquet": _ParquetBackend,
    "hdf5": _Hdf5Backend,
}


# --------------------------------------------------------------------------------------------
# Opening checks
# --------------------------------------------------------------------------------------------


def _check_not_a_directory(path: str, fmt: str) -> None:
    if fmt != "parquet" and os.path.isdir(path):
        raise InputError(
            f"cannot write result table {path}: it is a directory; give a file name such as "
            f"{os.path.join(path, 'results' + Path(path).suffix.lower())}"
        )


def _prepare_parent(path: str, fmt: str) -> None:
    """Create missing parent folders, or say in plain words why the path cannot be written."""
    parent = os.path.dirname(os.path.abspath(path))
    ancestor = parent
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise InputError(
            f"cannot write result table {path}: {ancestor} is a file, not a folder"
        )
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot write result table {path}: {exc.strerror or exc}") from exc
    if not os.access(parent, os.W_OK):
        raise InputError(f"cannot write result table {path}: the folder {parent} is read-only")


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _check_inputs_are_not_output(inputs: Sequence[str], path: str, fmt: str) -> None:
    folder = {"parquet": path, "hdf5": path + ".parts"}.get(fmt)  # a folder the table owns
    folder_real = os.path.realpath(folder) + os.sep if folder else None
    owned = [path] + ([path + _SIDECAR] if fmt == "csv" else [])
    for src in inputs:
        inside = folder_real is not None and os.path.realpath(src).startswith(folder_real)
        if inside or any(_same_file(src, p) for p in owned):
            raise InputError(
                f"{src} is both an input and the result table {path}: an input is never "
                "overwritten. Write the results to another path (a glob such as *.csv may "
                "have matched the results of an earlier run)"
            )


def _settings_diff(table: Any, now: Any) -> list[str]:
    if not isinstance(table, dict) or not isinstance(now, dict):
        return [f"settings={now!r} now, settings={table!r} in the table"]
    diffs = []
    for key in sorted(set(table) | set(now)):
        t, v = table.get(key, "(not set)"), now.get(key, "(not set)")
        if t != v:
            diffs.append(f"{key}={v!r} now, {key}={t!r} in the table")
    return diffs


def _check_settings(meta: dict[str, Any], settings: Any, path: str) -> None:
    diffs = []
    if meta.get("peakfit") != _version():
        diffs.append(f"peakfit {_version()} now, peakfit {meta.get('peakfit')} in the table")
    diffs += _settings_diff(meta.get("settings"), settings)
    if diffs:
        raise TableMismatchError(
            f"result table {path} was made with other settings: {'; '.join(diffs)}. Its rows "
            "are not resumed, since they would mix two different fits; nothing was written. "
            "Rerun with the table's settings, write to a new path, or pass restart=True to move "
            "the old table aside (it is kept under a new name) and start over",
            path,
        )


def _lock_busy(lock_path: str) -> bool:
    """True when another writer holds an existing lock file (a missing one is not created)."""
    if not os.path.exists(lock_path):
        return False
    probe = filelock.FileLock(lock_path, timeout=0, thread_local=False)
    try:
        probe.acquire()
    except filelock.Timeout:
        return True
    except OSError:
        return False
    probe.release()
    return False


def _aside_name(path: str) -> str:
    p = Path(path)
    for i in range(1, 100_000):
        cand = str(p.with_name(f"{p.stem}.old-{i}{p.suffix}"))
        if not os.path.lexists(cand) and not os.path.lexists(cand + _SIDECAR):
            return cand
    raise InputError(f"cannot find a free name to move {path} aside")  # pragma: no cover


# --------------------------------------------------------------------------------------------
# The writer
# --------------------------------------------------------------------------------------------


class ResultWriter:
    """Append result rows chunk by chunk; resume a killed run without duplicating rows.

    The format follows the extension: ``.csv`` (plus the metadata sidecar
    ``<path>.peakfit.json``); ``.parquet``/``.pq`` (a *directory* of part files
    ``part-000000.parquet``, ... and ``_common_metadata``; needs pyarrow); ``.h5``/``.hdf5``
    (one 1-D dataset per column; needs h5py).  Every row is keyed by the required columns
    ``source`` (str) and ``index`` (int).  Opening an existing table resumes it:
    :meth:`done_keys` tells which rows are already committed and :meth:`write_chunk` drops rows
    whose key is already there, so re-running a whole job after a crash writes every row
    exactly once.

    Opening checks, in this order, all before anything on disk changes: no input is the table;
    an existing path is a peakfit table; its peakfit version and ``settings`` equal these (when
    ``settings`` is given); the lock is free.  Then uncommitted rows of a killed run are cut
    off, and an input whose rows are in the table must still have the size and SHA-256 it had.

    Commit guarantees
    -----------------
    - CSV: a chunk's lines are appended with one ``write`` and ``fsync``-ed, then the sidecar
      (with the new committed length) is replaced atomically: that is the commit.  On open,
      bytes beyond the committed length (a chunk cut off by a kill) are truncated.
    - Parquet: each chunk is written to a hidden temporary file, fsync-ed and renamed to its
      final name with ``os.replace``.  Leftover temporary files are removed on open.
    - HDF5: each chunk is written as a small HDF5 file ``<path>.parts/part-NNNNNN.h5``
      (temporary name, fsync, ``os.replace``).  :meth:`close` (or the next open after a
      kill) folds the parts into a new copy of the table that replaces it with
      ``os.replace``; the table file is never modified in place, so a kill cannot leave it
      half-written.  :func:`read_table` includes parts not yet folded.  Closing costs one copy
      of the table.

    Parameters
    ----------
    path : str or path-like
        Output table.  Missing parent directories are created.
    columns : sequence of str, optional
        Column names in output order (must include ``source`` and ``index``).  Default: the
        existing table's columns, or the keys of the first chunk in insertion order.
    settings : dict, optional
        What made the rows (model, options; JSON values).  Recorded in a new table; an
        existing table made with other settings (or another peakfit version) is refused.
        ``None``: record nothing and check nothing.
    inputs : sequence of str, optional
        Input files, named as in the ``source`` column.  Their size and SHA-256 are recorded;
        none may be the table itself; an input with rows in the table that has changed since
        is refused.
    restart : bool
        Move an existing table (whatever it holds) aside to ``NAME.old-N.EXT`` and start a new
        one.  Nothing is deleted.  The new name is in :attr:`moved_to`.
    timeout : float
        Seconds to wait for another writer of the same table to finish (default 0: fail at
        once with :class:`TableLockedError`; negative: wait forever).

    Raises
    ------
    TableMismatchError
        The path holds something that is not a peakfit table, a table made with other
        settings, or rows of an input that has changed.
    TableLockedError
        Another process holds the table.
    peakfit.errors.InputError
        Unknown extension, a path that cannot be written (the message names it and why),
        columns that differ from an existing table's, an input that is the output.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "out.csv")
    >>> with ResultWriter(p, settings={"n": 2}) as w:
    ...     w.write_chunk({"source": ["a.csv", "a.csv"], "index": [0, 1], "sse": [0.5, 0.25]})
    2
    >>> with ResultWriter(p, settings={"n": 2}) as w:  # resume: row 1 is already there
    ...     sorted(w.done_keys()), w.write_chunk(
    ...         {"source": ["a.csv", "a.csv"], "index": [1, 2], "sse": [0.25, 1.0]})
    ([('a.csv', 0), ('a.csv', 1)], 1)
    >>> read_table(p)["index"].tolist()
    [0, 1, 2]
    >>> ResultWriter(p, settings={"n": 3})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    peakfit.tables.TableMismatchError: result table ... was made with other settings: n=3 now, n=2 in the table. ...
    """  # noqa: E501

    def __init__(
        self,
        path: PathLike,
        columns: Sequence[str] | None = None,
        *,
        settings: Mapping[str, Any] | None = None,
        inputs: Sequence[PathLike] | None = None,
        restart: bool = False,
        timeout: float = 0.0,
    ) -> None:
        self.path = os.fspath(path)
        self.format = _table_format(self.path)
        self.moved_to: str | None = None
        self._closed = True
        if columns is not None:
            columns = [str(c) for c in columns]
            _check_columns(columns, self.path)
        self._settings = None if settings is None else _json_roundtrip(dict(settings), "settings")
        srcs = [os.fspath(s) for s in (inputs or ())]
        _check_inputs_are_not_output(srcs, self.path, self.format)
        _check_not_a_directory(self.path, self.format)
        backend: Any = _BACKENDS[self.format](self.path)
        if not restart:  # refuse early, before even a lock file is created ...
            try:
                self._verify(backend)
            except TableMismatchError:
                if not _lock_busy(self.path + _LOCK):
                    raise
                # ... unless a writer holds the table: what it is is decided under the lock
        _prepare_parent(self.path, self.format)
        self._lock = filelock.FileLock(self.path + _LOCK, timeout=timeout, thread_local=False)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise TableLockedError(
                f"result table {self.path} is being written by another process (it holds "
                f"{self.path + _LOCK}); wait for it to finish, or write to another path",
                self.path,
            ) from None
        except OSError as exc:
            raise InputError(
                f"cannot write result table {self.path}: {exc.strerror or exc}"
            ) from exc
        try:
            self._open(backend, restart, srcs, columns)
        except BaseException:
            backend.close()
            self._lock.release()
            raise
        self._closed = False

    def _verify(self, backend: Any) -> dict[str, Any] | None:
        meta = backend.read_meta()
        if meta is not None and self._settings is not None:
            _check_settings(meta, self._settings, self.path)
        return meta

    def _open(
        self, backend: Any, restart: bool, srcs: list[str], columns: list[str] | None
    ) -> None:
        try:
            if restart and any(os.path.lexists(a) for a in backend.artefacts()):
                self.moved_to = _aside_name(self.path)
                for a in backend.artefacts():
                    if os.path.lexists(a):
                        os.rename(a, self.moved_to + a[len(self.path):])
                _fsync_path(os.path.dirname(os.path.abspath(self.path)))
                backend = _BACKENDS[self.format](self.path)
            meta = self._verify(backend)
            for a in backend.artefacts():  # the temporary copy of a replacement cut off by a kill
                tmp = os.path.join(os.path.dirname(a), _TMP_PREFIX + os.path.basename(a))
                if os.path.isfile(tmp):
                    os.remove(tmp)
            backend.recover(meta)
            done = set(backend.keys)
            new = dict(meta) if meta is not None else _new_meta(self._settings)
            new["inputs"] = self._merge_inputs(new.get("inputs", {}), srcs, done)
            if new != meta:  # a resume that adds nothing writes nothing
                backend.write_meta(new)
        except OSError as exc:
            raise InputError(
                f"cannot write result table {self.path}: {exc.strerror or exc}"
            ) from exc
        self._backend = backend
        existing = backend.columns
        if existing is not None:
            if columns is not None and list(columns) != existing:
                raise InputError(
                    f"result table {self.path} has columns {existing}; asked for {list(columns)}"
                )
            columns = existing
        self._columns: list[str] | None = list(columns) if columns is not None else None
        self._kinds: dict[str, str] | None = backend.kinds()
        self._done: set[tuple[str, int]] = done

    def _merge_inputs(
        self, recorded: dict[str, Any], srcs: list[str], done: set[tuple[str, int]]
    ) -> dict[str, Any]:
        merged = dict(recorded)
        used = {s for s, _ in done}
        for src in srcs:
            try:
                fp = file_fingerprint(src)
            except OSError:
                continue  # the reader reports a missing or unreadable input in its own words
            old = recorded.get(src)
            if old is not None and old != fp and src in used:
                rows = sum(1 for s, _ in done if s == src)
                raise TableMismatchError(
                    f"input {src} has changed since its {rows} row(s) were written to "
                    f"{self.path} (size {old.get('size')} -> {fp['size']} bytes, SHA-256 "
                    f"{str(old.get('sha256'))[:12]}... -> {fp['sha256'][:12]}...); nothing was "
                    "written. Write to a new path, or pass restart=True to move the old table "
                    "aside and start over",
                    self.path,
                )
            merged[src] = fp
        return merged

    @property
    def columns(self) -> list[str] | None:
        """Column names in output order (``None`` until known)."""
        return None if self._columns is None else list(self._columns)

    @property
    def metadata(self) -> dict[str, Any]:
        """What the table records about how it was made (see :func:`table_metadata`)."""
        return json.loads(json.dumps(self._backend.meta))

    def done_keys(self) -> set[tuple[str, int]]:
        """The ``(source, index)`` pairs already committed to the table."""
        return set(self._done)

    def write_chunk(self, table: Mapping[str, Any]) -> int:
        """Commit one chunk of rows; rows whose key is already committed are skipped.

        Parameters
        ----------
        table : mapping of str to array or list
            Equal-length 1-D columns; the same column names for every chunk; must contain
            ``source`` (str) and ``index`` (int).

        Returns
        -------
        int
            Number of rows written (0 if every key was already there).

        Raises
        ------
        peakfit.errors.InputError
            Missing/extra columns, unequal lengths, duplicate keys within the chunk, a column
            whose type changed, a closed writer.
        """
        if self._closed:
            raise InputError(f"ResultWriter for {self.path} is closed")
        names = [str(c) for c in table]
        if self._columns is None:
            _check_columns(names, self.path)
            columns = names
        else:
            columns = self._columns
            if set(names) != set(columns):
                missing = [c for c in columns if c not in names]
                extra = [c for c in names if c not in columns]
                raise InputError(
                    f"chunk columns differ from the table's {columns}: missing {missing}, "
                    f"extra {extra}"
                )
        lengths = {c: len(table[c]) for c in columns}
        if len(set(lengths.values())) > 1:
            raise InputError(f"chunk columns have different lengths: {lengths}")
        for c in columns:
            if np.ndim(table[c]) != 1:
                raise InputError(f"column {c!r} must be 1-D; got shape {np.shape(table[c])}")
        kinds = dict(self._kinds) if self._kinds is not None else {}
        data: dict[str, np.ndarray] = {}
        for c in columns:
            if c == "source":
                kind = "str"
            elif c == "index":
                kind = "int"
            else:
                kind = kinds.get(c) or _kind_of(np.asarray(table[c]))
            if c == "index":
                idx = np.asarray(table[c])
                if idx.size and idx.dtype.kind not in "iu":
                    if idx.dtype.kind != "f" or not np.all(idx == np.round(idx)):
                        raise InputError(f"column 'index' must hold integers; got {idx.dtype}")
                    idx = idx.astype(np.int64)
                data[c] = idx.astype(np.int64)
            else:
                data[c] = _coerce(table[c], kind, c)
            kinds[c] = kind
        keys = list(zip(data["source"].tolist(), data["index"].tolist()))
        if len(set(keys)) != len(keys):
            seen: set[tuple[str, int]] = set()
            for key in keys:
                if key in seen:
                    raise InputError(f"chunk repeats the key (source, index) = {key}")
                seen.add(key)
        keep = np.array([k not in self._done for k in keys], dtype=bool)
        if not keep.all():
            data = {c: v[keep] for c, v in data.items()}
            keys = [k for k, kp in zip(keys, keep) if kp]
        self._columns = columns
        if not keys:
            return 0
        self._kinds = kinds
        try:
            self._backend.append(columns, data, kinds)
        except OSError as exc:
            raise InputError(
                f"cannot write result table {self.path}: {exc.strerror or exc}"
            ) from exc
        self._done.update(keys)
        return len(keys)

    def close(self) -> None:
        """Release the file and the lock (every committed chunk is already on disk)."""
        if not self._closed:
            self._closed = True
            try:
                self._backend.close()
            finally:
                self._lock.release()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_columns(columns: Sequence[str], path: str) -> None:
    for req in ("source", "index"):
        if req not in columns:
            raise InputError(
                f"result table {path}: the column {req!r} is required; got {list(columns)}"
            )
    if len(set(columns)) != len(columns):
        raise InputError(f"result table {path}: repeated column names in {list(columns)}")
    for c in columns:
        if not c or "/" in c or "\n" in c:
            raise InputError(f"result table {path}: invalid column name {c!r}")


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def table_metadata(path: PathLike) -> dict[str, Any] | None:
    """What a result table records about how it was made; ``None`` for an empty path.

    Returns
    -------
    dict or None
        ``format``, ``format_version``, ``peakfit`` (version), ``created`` (UTC),
        ``settings`` (as given to :class:`ResultWriter`), ``inputs`` (path -> ``size``,
        ``sha256``); for CSV also ``columns``, ``committed_bytes``, ``committed_rows``.

    Raises
    ------
    TableMismatchError
        The path exists and is not a peakfit result table.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "t.csv")
    >>> with ResultWriter(p, settings={"n": 4, "baseline": "none"}) as w:
    ...     _ = w.write_chunk({"source": ["f"], "index": [0], "sse": [0.5]})
    >>> m = table_metadata(p)
    >>> m["settings"], m["committed_rows"]
    ({'baseline': 'none', 'n': 4}, 1)
    """
    spath = os.fspath(path)
    return _BACKENDS[_table_format(spath)](spath).read_meta()


def read_table(path: PathLike, *, as_frame: bool = False) -> Any:
    """Read a result table written by :class:`ResultWriter` (committed rows only).

    Parameters
    ----------
    path : str or path-like
        ``.csv``, ``.parquet``/``.pq`` (a part directory or a single file), ``.h5``/``.hdf5``.
    as_frame : bool
        Return a pandas DataFrame instead of a dict (needs pandas).

    Returns
    -------
    dict of str to numpy.ndarray, or pandas.DataFrame
        Columns in table order.  CSV columns are typed by content: all integers -> int64,
        numbers -> float64 (``nan``/empty -> NaN), ``True``/``False`` -> bool, otherwise str.
        Floats round-trip exactly (CSV stores ``repr``).

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "t.csv")
    >>> with ResultWriter(p) as w:
    ...     _ = w.write_chunk({"source": ["f"], "index": [3], "r2": [0.1]})
    >>> t = read_table(p)
    >>> t["source"].tolist(), t["index"].tolist(), t["r2"].tolist()
    (['f'], [3], [0.1])
    """
    spath = os.fspath(path)
    fmt = _table_format(spath)
    if not os.path.exists(spath):
        from peakfit.io import MissingFileError

        raise MissingFileError(spath)
    if fmt == "csv":
        out = _read_csv_table(spath)
    elif fmt == "parquet":
        out = _read_parquet_table(spath)
    else:
        out = _read_h5_table(spath)
    if as_frame:
        pd = _require("pandas", "read_table(..., as_frame=True)")
        return pd.DataFrame(out)
    return out


def _read_csv_table(path: str) -> dict[str, np.ndarray]:
    committed: int | None = None
    if os.path.isfile(path + _SIDECAR):
        try:
            with open(path + _SIDECAR, encoding="utf-8") as fh:
                committed = int(json.load(fh).get("committed_bytes", 0))
        except (ValueError, AttributeError, TypeError):
            committed = None
    with open(path, "rb") as fh:
        raw = fh.read() if committed is None else fh.read(committed)
    text = raw.decode("utf-8")
    if committed is None and "\n" in text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # a table without metadata: drop a partial line
    reader = csv.reader(_stdio.StringIO(text))
    head = next(reader, None)
    if head is None:
        return {}
    cols: list[list[str]] = [[] for _ in head]
    for row in reader:
        if len(row) != len(head):
            raise FileFormatError(
                f"row has {len(row)} fields, header has {len(head)}", path, reader.line_num
            )
        for c, v in zip(cols, row):
            c.append(v)
    return {name: _parse_csv_column(name, vals) for name, vals in zip(head, cols)}


def _parse_csv_column(name: str, vals: list[str]) -> np.ndarray:
    if name == "source":
        return np.array(vals, dtype=str)
    try:
        return np.array([int(v) for v in vals], dtype=np.int64)
    except ValueError:
        pass
    if name != "index":
        try:
            return np.array([float(v) if v else math.nan for v in vals], dtype=np.float64)
        except ValueError:
            pass
        if all(v in ("True", "False") for v in vals):
            return np.array([v == "True" for v in vals], dtype=np.bool_)
    return np.array(vals, dtype=str)


def _read_parquet_table(path: str) -> dict[str, np.ndarray]:
    pa = _require("pyarrow", "reading Parquet result tables")
    pq = importlib.import_module("pyarrow.parquet")
    if os.path.isdir(path):
        parts = _parquet_parts(path)
        if not parts:
            return {}
        table = pa.concat_tables(
            [pq.read_table(p).replace_schema_metadata(None) for p in parts]
        )
    else:
        table = pq.read_table(path)
    out: dict[str, np.ndarray] = {}
    for field in table.schema:
        col = table.column(field.name)
        if _arrow_kind(pa, field.type) == "str":
            out[field.name] = np.array(col.to_pylist(), dtype=str)
        else:
            out[field.name] = col.to_numpy()
    return out


def _read_h5_table(path: str) -> dict[str, np.ndarray]:
    h5py = _require("h5py", "reading HDF5 result tables")
    with h5py.File(path, "r") as fh:
        out = _h5_read(fh)
    pending = []
    for part in _h5_parts(path + ".parts"):  # chunks of a run not yet folded into the table
        with h5py.File(part, "r") as pf:
            pending.append(_h5_read(pf))
    if not pending:
        return out
    done = set(zip(out["source"].tolist(), out["index"].tolist())) if out else set()
    pieces = [out] if out else []
    for data in pending:
        keys = list(zip(data["source"].tolist(), data["index"].tolist()))
        keep = np.array([k not in done for k in keys], dtype=bool)
        done.update(keys)
        pieces.append({c: v[keep] for c, v in data.items()})
    return {c: np.concatenate([p[c] for p in pieces]) for c in pieces[0]}
