"""Doctest collection of the package (``--doctest-modules``): skip optional compiled modules
whose dependency is not installed (``peakfit/solvers/_numba.py`` needs Numba)."""

from __future__ import annotations

import importlib.util

collect_ignore: list[str] = []
if importlib.util.find_spec("numba") is None:
    collect_ignore.append("peakfit/solvers/_numba.py")
