"""Result tables under stress: two writers, SIGKILL mid-commit and resume, changed settings.

Every test runs for each format (CSV, Parquet, HDF5).  Subprocesses are bounded by timeouts.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import peakfit
from peakfit.cli import main
from peakfit.tables import (
    ResultWriter,
    TableLockedError,
    TableMismatchError,
    read_table,
    table_metadata,
)

REPO = Path(__file__).resolve().parents[1]
def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


FORMATS = [
    "out.csv",
    pytest.param("out.parquet", marks=pytest.mark.skipif(not _has("pyarrow"), reason="pyarrow")),
    pytest.param("out.h5", marks=pytest.mark.skipif(not _has("h5py"), reason="h5py")),
]
NAMES = ["out.csv"] + (["out.parquet"] if _has("pyarrow") else []) + (
    ["out.h5"] if _has("h5py") else [])


def chunk(lo, hi):
    return {"source": ["a.csv"] * (hi - lo), "index": list(range(lo, hi)),
            "v": [0.1 * i for i in range(lo, hi)]}


def _tree_hash(path: Path) -> dict[str, str]:
    if path.is_file():
        return {"": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


_PRELUDE = f"""
import os, sys, time
sys.path.insert(0, {str(REPO)!r})
from peakfit.tables import ResultWriter, TableLockedError
def chunk(lo, hi):
    return {{"source": ["a.csv"] * (hi - lo), "index": list(range(lo, hi)),
            "v": [0.1 * i for i in range(lo, hi)]}}
"""

HOLDER = _PRELUDE + textwrap.dedent("""
    p, ready, go = sys.argv[1:4]
    with ResultWriter(p) as w:
        w.write_chunk(chunk(0, 5))
        open(ready, "w").close()
        t0 = time.monotonic()
        while not os.path.exists(go) and time.monotonic() - t0 < 60:
            time.sleep(0.02)
        w.write_chunk(chunk(5, 10))
""")

SECOND = _PRELUDE + textwrap.dedent("""
    p, timeout = sys.argv[1], float(sys.argv[2])
    try:
        with ResultWriter(p, timeout=timeout) as w:
            n = sum(w.write_chunk(chunk(lo, lo + 5)) for lo in (0, 5, 10))
    except TableLockedError as exc:
        print("locked:", exc)
        sys.exit(3)
    print("wrote", n)
""")


def _wait_for(path: Path, proc: subprocess.Popen, limit: float = 60.0) -> None:
    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < limit, "the first writer did not start"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("name", FORMATS)
def test_two_writers_second_fails_then_waits(tmp_path, name):
    p = tmp_path / name
    ready, go = tmp_path / "ready", tmp_path / "go"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(p), str(ready), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(ready, holder)
        before = _tree_hash(p)
        # a second writer that does not wait fails clearly and changes nothing
        second = subprocess.run([sys.executable, "-c", SECOND, str(p), "0"],
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 3, second.stderr
        assert f"locked: result table {p} is being written by another process" in second.stdout
        assert _tree_hash(p) == before
        # a second writer that waits gets the table once the first has closed it
        waiter = subprocess.Popen([sys.executable, "-c", SECOND, str(p), "60"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        assert waiter.poll() is None  # still waiting for the lock
        go.touch()
        out, err = waiter.communicate(timeout=120)
        assert waiter.returncode == 0, err
        assert out == "wrote 5\n"  # 0..9 were the holder's; only 10..14 are new
    finally:
        go.touch()
        holder.communicate(timeout=120)
    assert holder.returncode == 0
    t = read_table(p)
    assert t["index"].tolist() == list(range(15))
    np.testing.assert_array_equal(t["v"], [0.1 * i for i in range(15)])


def _spectra(folder: Path) -> list[Path]:
    x = np.linspace(0.0, 60.0, 121)
    folder.mkdir()
    files = []
    for f in range(3):
        cols = [x] + [(2.0 + j) * np.exp(-(((x - 20.0 - 4 * f - j) / 4.0) ** 2))
                      + 0.01 * np.cos(7 * x + f + j) for j in range(3)]
        path = folder / f"file{f}.csv"
        np.savetxt(path, np.column_stack(cols), delimiter=",", header="x,s0,s1,s2",
                   comments="", fmt="%.17g")
        files.append(path)
    return files


KILLER = textwrap.dedent(f"""
    import os, signal, sys
    sys.path.insert(0, {str(REPO)!r})
    from peakfit import cli, tables
    K = int(sys.argv[1])
    calls = [0]
    real = tables._fsync_path
    def fsync_or_die(path):
        calls[0] += 1
        if calls[0] == K:
            os.kill(os.getpid(), signal.SIGKILL)
        real(path)
    tables._fsync_path = fsync_or_die
    sys.exit(cli.main(sys.argv[2:]))
""")

# fsync calls before the kill: opening writes the metadata (2 calls), then each commit makes 2
# (HDF5: 3 for the first, which creates the parts folder); these land inside the second
# commit, after its rows were written and before the commit point.
KILL_AT = {"out.csv": 5, "out.parquet": 5, "out.h5": 6}


def _uncommitted_leftovers(p: Path, name: str) -> bool:
    if name.endswith(".csv"):
        meta = table_metadata(p)
        return p.stat().st_size > meta["committed_bytes"]
    if name.endswith(".parquet"):
        return any(n.startswith(".tmp-part-") for n in os.listdir(p))
    return any(n.startswith(".tmp-part-") for n in os.listdir(str(p) + ".parts"))


@pytest.mark.slow
@pytest.mark.parametrize("name", FORMATS)
def test_cli_resume_after_sigkill_mid_commit_is_bit_exact(tmp_path, capsys, name):
    files = _spectra(tmp_path / "in")
    args = [*map(str, files), "-n", "1", "--chunk-size", "2", "--quiet"]
    ref, out = tmp_path / f"ref{Path(name).suffix}", tmp_path / name
    assert main(["batch", *args, "-o", str(ref)]) == 0
    proc = subprocess.run([sys.executable, "-c", KILLER, str(KILL_AT[name]), "batch", *args,
                           "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    assert len(read_table(out)["index"]) == 2  # the first chunk only
    assert _uncommitted_leftovers(out, name)  # killed inside the second commit
    assert main(["batch", *args, "-o", str(out)]) == 0
    capsys.readouterr()
    a, b = read_table(ref), read_table(out)
    assert list(a) == list(b) and len(b["index"]) == 9
    for c in a:
        np.testing.assert_array_equal(b[c], a[c], err_msg=c)
    if name.endswith(".csv"):
        assert out.read_bytes() == ref.read_bytes()
    if name.endswith(".parquet"):
        assert sorted(os.listdir(out)) == ["_common_metadata"] + [
            f"part-{i:06d}.parquet" for i in range(6)
        ]


@pytest.mark.parametrize("name", FORMATS)
def test_resume_with_other_settings_is_refused_and_restart_moves_aside(tmp_path, name,
                                                                      monkeypatch):
    p = tmp_path / name
    with ResultWriter(p, settings={"n": 2, "baseline": "none"}) as w:
        w.write_chunk(chunk(0, 3))
    before = _tree_hash(p)
    with pytest.raises(TableMismatchError, match=r"other settings: n=3 now, n=2 in the table"):
        ResultWriter(p, settings={"n": 3, "baseline": "none"})
    with pytest.raises(TableMismatchError, match=r"baseline='linear' now, baseline='none' in"):
        ResultWriter(p, settings={"n": 2, "baseline": "linear"})
    monkeypatch.setattr(peakfit, "__version__", "9.9")
    with pytest.raises(TableMismatchError, match=r"peakfit 9\.9 now, peakfit 0\.1\.0 in the"):
        ResultWriter(p, settings={"n": 2, "baseline": "none"})
    monkeypatch.undo()
    assert _tree_hash(p) == before
    with ResultWriter(p, settings={"n": 2, "baseline": "none"}) as w:  # same settings: resumes
        assert w.done_keys() == {("a.csv", i) for i in range(3)}
    with ResultWriter(p, settings={"n": 3}, restart=True) as w:
        assert w.done_keys() == set()
        assert w.moved_to == str(tmp_path / f"out.old-1{p.suffix}")
        w.write_chunk(chunk(0, 1))
    old = Path(w.moved_to)
    assert _tree_hash(old) == before  # kept, bit for bit
    assert read_table(old)["index"].tolist() == [0, 1, 2]
    assert table_metadata(old)["settings"] == {"n": 2, "baseline": "none"}
    assert read_table(p)["index"].tolist() == [0]
    assert table_metadata(p)["settings"] == {"n": 3}


@pytest.mark.parametrize("name", FORMATS)
def test_inputs_fingerprinted_and_a_changed_input_refused(tmp_path, name):
    src = tmp_path / "a.csv"
    src.write_text("x,y\n1,2\n")
    p = tmp_path / name
    with ResultWriter(p, inputs=[str(src)]) as w:
        w.write_chunk({"source": [str(src)], "index": [0], "v": [1.0]})
    fp = table_metadata(p)["inputs"][str(src)]
    assert fp == {"size": 8, "sha256": hashlib.sha256(b"x,y\n1,2\n").hexdigest()}
    src.write_text("x,y\n1,3\n")
    before = _tree_hash(p)
    with pytest.raises(TableMismatchError, match=r"has changed since its 1 row\(s\)"):
        ResultWriter(p, inputs=[str(src)])
    assert _tree_hash(p) == before
    with pytest.raises(InputErrorType, match="is both an input and the result table"):
        ResultWriter(p, inputs=[str(p)])


InputErrorType = peakfit.InputError


def test_lock_in_one_process_and_release_on_close(tmp_path):
    p = tmp_path / "t.csv"
    w = ResultWriter(p)
    with pytest.raises(TableLockedError, match="being written by another process"):
        ResultWriter(p)
    w.close()
    with ResultWriter(p) as w2:
        assert w2.done_keys() == set()


def test_metadata_property_matches_the_stored_metadata(tmp_path):
    for name in NAMES:
        p = tmp_path / name
        with ResultWriter(p, settings={"n": 1, "start": [1.0, 2.0, 3.0]}) as w:
            w.write_chunk(chunk(0, 2))
            meta = w.metadata
        stored = table_metadata(p)
        assert meta["settings"] == stored["settings"] == {"n": 1, "start": [1.0, 2.0, 3.0]}
        assert stored["peakfit"] == peakfit.__version__ and stored["format_version"] == 1


def test_cli_batch_waits_for_another_writer_with_wait(tmp_path, capsys):
    import threading

    import filelock

    files = _spectra(tmp_path / "in")
    out = tmp_path / "r.csv"
    lock = filelock.FileLock(str(out) + ".lock", thread_local=False)
    lock.acquire()
    argv = ["batch", str(files[0]), "-n", "1", "-o", str(out), "--quiet"]
    assert main(argv) == 2
    assert "being written by another process" in capsys.readouterr().err
    assert not out.exists()
    timer = threading.Timer(0.5, lock.release)
    t0 = time.monotonic()
    timer.start()
    try:
        assert main([*argv, "--wait", "60"]) == 0
    finally:
        timer.join()
    assert time.monotonic() - t0 >= 0.5
    assert read_table(out)["index"].tolist() == [0, 1, 2]


def test_a_failed_write_is_cut_before_the_next_chunk(tmp_path):
    p = tmp_path / "t.csv"
    with ResultWriter(p) as w:
        w.write_chunk(chunk(0, 2))
        with open(p, "ab") as fh:  # what a write cut short (disk full) leaves behind
            fh.write(b"a.csv,2,0.2")
        w.write_chunk(chunk(2, 4))
    assert p.read_bytes() == (b"source,index,v\na.csv,0,0.0\na.csv,1,0.1\na.csv,2,"
                              b"0.2\na.csv,3,0.30000000000000004\n")
    assert table_metadata(p)["committed_bytes"] == p.stat().st_size


def test_a_busy_lock_is_reported_before_what_the_path_holds(tmp_path):
    import filelock

    p = tmp_path / "t.csv"
    p.write_text("x,y\n1,2\n")
    lock = filelock.FileLock(str(p) + ".lock", thread_local=False)
    with lock:  # whoever holds the lock may be rewriting the path right now
        with pytest.raises(TableLockedError):
            ResultWriter(p)
    with pytest.raises(TableMismatchError, match="is not a peakfit result table"):
        ResultWriter(p)
    assert p.read_text() == "x,y\n1,2\n"


def test_hdf5_parts_are_read_before_the_fold_and_folded_once(tmp_path):
    pytest.importorskip("h5py")
    p = tmp_path / "t.h5"
    parts = Path(str(p) + ".parts")
    w = ResultWriter(p)
    w.write_chunk(chunk(0, 3))
    w.write_chunk(chunk(3, 5))
    assert read_table(p)["index"].tolist() == [0, 1, 2, 3, 4]  # committed, not yet folded
    saved = {n: (parts / n).read_bytes() for n in os.listdir(parts)}
    assert sorted(saved) == ["part-000000.h5", "part-000001.h5"]
    w.close()
    assert not parts.exists()
    # a fold cut off after the new table replaced the old one, before the parts were removed
    parts.mkdir()
    for n, raw in saved.items():
        (parts / n).write_bytes(raw)
    assert read_table(p)["index"].tolist() == [0, 1, 2, 3, 4]
    with ResultWriter(p) as w:
        assert w.done_keys() == {("a.csv", i) for i in range(5)}
        assert w.write_chunk(chunk(4, 6)) == 1
    t = read_table(p)
    assert t["index"].tolist() == list(range(6)) and not parts.exists()
    np.testing.assert_array_equal(t["v"], [0.1 * i for i in range(6)])


def test_files_the_table_owns_are_never_inputs(tmp_path):
    pytest.importorskip("h5py")
    p = tmp_path / "t.h5"
    with ResultWriter(p) as w:
        w.write_chunk(chunk(0, 1))
    part = Path(str(p) + ".parts") / "part-000000.h5"
    for src in (p, part, tmp_path / "." / "t.h5"):
        with pytest.raises(InputErrorType, match="is both an input and the result table"):
            ResultWriter(p, inputs=[str(src)])
    c = tmp_path / "t.csv"
    with ResultWriter(c) as w:
        w.write_chunk(chunk(0, 1))
    with pytest.raises(InputErrorType, match="is both an input and the result table"):
        ResultWriter(c, inputs=[str(c) + ".peakfit.json"])
