"""The documentation site builds in strict mode and covers the public modules."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _nav_pages() -> list[str]:
    text = (REPO / "mkdocs.yml").read_text()
    nav = text[text.index("\nnav:") :]
    return re.findall(r":\s*([\w\-/]+\.md)\s*$", nav, re.M)


def test_nav_lists_the_required_pages():
    pages = _nav_pages()
    for page in ("index.md", "getting-started.md", "matlab.md", "start.md", "signal.md",
                 "batch.md", "io.md", "cli.md", "distributed.md", "gd.md", "architecture.md",
                 "api.md"):
        assert page in pages, page


def test_api_reference_covers_the_public_modules():
    entries = set(re.findall(r"^::: ([\w.]+)\s*$", (REPO / "docs" / "api.md").read_text(), re.M))
    for mod in ("peakfit", "peakfit.fit", "peakfit.matlab", "peakfit.options", "peakfit.result",
                "peakfit.models", "peakfit.start", "peakfit.batch", "peakfit.signal",
                "peakfit.io", "peakfit.matlab.text", "peakfit.matlab.compare", "peakfit.plot",
                "peakfit.interop", "peakfit.backends", "peakfit.pipeline", "peakfit.batchfit",
                "peakfit.distributed", "peakfit.cli", "peakfit.errors", "peakfit.gd"):
        assert mod in entries, mod


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings_handlers.python")
    missing = [p for p in _nav_pages() if not (REPO / "docs" / p).is_file()]
    assert not missing, f"pages in the nav but not in docs/: {missing}"
    mkdocs = shutil.which("mkdocs")
    cmd = [mkdocs] if mkdocs else [sys.executable, "-m", "mkdocs"]
    proc = subprocess.run([*cmd, "build", "--strict", "-d", str(tmp_path / "site")], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    site = tmp_path / "site"
    for page in ("getting-started", "matlab", "cli", "distributed", "architecture", "api"):
        assert (site / page / "index.html").is_file(), page
    api = (site / "api" / "index.html").read_text()
    assert 'id="peakfit.fit_gaussians"' in api and 'id="peakfit.cli.main"' in api
