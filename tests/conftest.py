"""Shared fixtures: the reference data in ``../shared/data`` (NIST StRD, lmfit examples)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """``$PEAKFIT_SHARED_DATA`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("PEAKFIT_SHARED_DATA")
    cands = [Path(env)] if env else []
    cands.append(REPO.parent / "shared" / "data")
    for c in cands:
        if (c / "reference_values.json").is_file():
            return c
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("reference data not found: set PEAKFIT_SHARED_DATA or place shared/ beside")
    return d


@pytest.fixture(scope="session")
def reference_values(shared_data: Path) -> dict:
    return json.loads((shared_data / "reference_values.json").read_text())


def load_nist(shared: Path, ref: dict, name: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """x, y and the reference entry of a NIST StRD problem."""
    d = ref["nist_strd"][name]
    lines = (shared / d["file"]).read_text().splitlines()
    a, b = d["data_lines_1based"]
    data = np.array([[float(v) for v in ln.split()] for ln in lines[a - 1 : b]])
    return data[:, 1], data[:, 0], d


@pytest.fixture(scope="session")
def nist(shared_data: Path, reference_values: dict):
    def get(name: str):
        return load_nist(shared_data, reference_values, name)

    return get
