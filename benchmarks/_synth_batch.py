"""Synthetic batches of multi-Gaussian spectra with known truth (for benchmarks and tests).

Each spectrum is ``sum_i a_i exp(-((x - b_i)/c_i)^2) + noise`` on ``x = linspace(0, 100, m)``:
centres spread evenly over the range with jitter (moderate overlaps, all well inside the range),
widths ``c`` in ``[3, 6]``, heights in ``[1, 5]`` and Gaussian noise of ``noise`` times the
largest height (1 % by default).

Examples
--------
>>> x, Y, truth = make_batch(3, 200, 4, seed=1)
>>> Y.shape, truth.shape
((3, 200), (3, 12))
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["make_batch", "success_mask"]

SPAN = 100.0


def make_batch(
    k: int, m: int = 1000, n: int = 4, *, noise: float = 0.01, seed: int = 0,
    dtype: str = "float64", xp: Any = np,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``k`` spectra of ``m`` points with ``n`` peaks; returns ``x (m,)``, ``Y (k, m)``, truth.

    ``truth`` has shape ``(k, 3n)`` in MATLAB order (``a1, b1, c1, ...``), centres ascending.
    ``xp=cupy`` makes them on the GPU (another random stream than NumPy's).
    """
    rng = np.random.default_rng(seed) if xp is np else xp.random.RandomState(seed)
    x = xp.linspace(0.0, SPAN, m)
    spacing = SPAN / (n + 1)
    b = spacing * (1 + xp.arange(n))[None, :] + rng.uniform(-0.25, 0.25, (k, n)) * spacing
    c = rng.uniform(0.03, 0.06, (k, n)) * SPAN
    a = rng.uniform(1.0, 5.0, (k, n))
    Y = xp.zeros((k, m))
    for i in range(n):
        Y += a[:, i : i + 1] * xp.exp(-(((x[None, :] - b[:, i : i + 1]) / c[:, i : i + 1]) ** 2))
    Y += noise * a.max(axis=1, keepdims=True) * rng.standard_normal((k, m))
    truth = xp.empty((k, 3 * n))
    truth[:, 0::3], truth[:, 1::3], truth[:, 2::3] = a, b, c
    return x, Y.astype(dtype), truth


def success_mask(
    a: np.ndarray, b: np.ndarray, c: np.ndarray, truth: np.ndarray, ok: np.ndarray | None = None,
    *, mean_tol: float = 0.005, rel_tol: float = 0.1,
) -> np.ndarray:
    """Fits that recovered the truth: every peak (matched in centre order) has its centre
    within ``mean_tol`` of the x span and its height and width within ``rel_tol`` (relative)."""
    order = np.argsort(b, axis=1)
    a, b, c = (np.take_along_axis(v, order, axis=1) for v in (a, b, c))
    ta, tb, tc = truth[:, 0::3], truth[:, 1::3], truth[:, 2::3]
    with np.errstate(invalid="ignore", divide="ignore"):
        good = (
            (np.abs(b - tb) <= mean_tol * SPAN).all(axis=1)
            & (np.abs(a - ta) <= rel_tol * np.abs(ta)).all(axis=1)
            & (np.abs(c - tc) <= rel_tol * np.abs(tc)).all(axis=1)
        )
    return good if ok is None else good & ok
