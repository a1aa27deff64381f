"""Ragged rows in the start: every row of a block started in one pass, missing points masked.

The pipeline's layout puts each ragged row's valid points first (sorted by x), so a row is its
valid points followed by padding. With the padding masked, steps 1-2 of the auto start give
exactly what the valid points alone give (the edge baseline, the noise level), and the whole
start is as good as the start of the compressed rows (``benchmarks/bench_ragged.py``).
"""

from __future__ import annotations

import numpy as np
import pytest

import peakfit
from peakfit import autostart, pipeline
from peakfit.autostart import _noise, auto_start
from peakfit.models import GaussianModel
from peakfit.start import baseline_start


def _rows(k: int = 6, m: int = 300, seed: int = 2):
    """k spectra (2 peaks on a slope, uneven x) and a valid length per row (left-aligned)."""
    rng = np.random.default_rng(seed)
    model = GaussianModel(2, "linear")
    X = np.sort(rng.uniform(0.0, 10.0, (k, m)), axis=1)
    truth = np.column_stack([rng.uniform(1, 2, k), rng.uniform(2, 4, k), np.full(k, 0.6),
                             rng.uniform(1, 2, k), rng.uniform(5, 7, k), np.full(k, 0.8),
                             rng.uniform(-1, 1, k), rng.uniform(-0.1, 0.1, k)])
    Y = model.evaluate(X, truth) + 0.02 * rng.standard_normal((k, m))
    lengths = np.array([m, m - 1, m - 37, m - 120, 9, 150][:k])
    valid = np.arange(m)[None, :] < lengths[:, None]
    return model, X, Y, valid, lengths


def test_masked_edge_baseline_equals_the_baseline_of_the_valid_points():
    model, X, Y, valid, lengths = _rows()
    # padding: any finite values (the pipeline's: the last valid x, y = 0)
    Xp = np.where(valid, X, X[np.arange(6), lengths - 1][:, None])
    Yp = np.where(valid, Y, 0.0)
    for method in ("edges", "asymmetric"):
        got = baseline_start(model, Xp, Yp, method=method, valid=valid)
        for i, mr in enumerate(lengths):
            ref = baseline_start(model, X[i:i + 1, :mr], Y[i:i + 1, :mr], method=method)
            np.testing.assert_allclose(got[i], ref[0], rtol=1e-9, atol=1e-12)


def test_masked_noise_equals_the_noise_of_the_valid_points():
    _model, X, Y, valid, lengths = _rows()
    U = (X - 5.0) / 5.0
    for S in (Y, Y + np.sin(3 * X)):  # uneven x: the cubic predictor; and m >= 500 below
        got = _noise(np, U, np.where(valid, S, 0.0), valid.astype(float))
        for i, mr in enumerate(lengths):
            ref = _noise(np, U[i:i + 1, :mr], S[i:i + 1, :mr])
            assert got[i] == ref[0]  # the same median element
    x = np.linspace(0.0, 1.0, 700)
    S = np.sin(9 * x)[None, :] + 0.01 * np.random.default_rng(1).standard_normal((2, 700))
    v = np.arange(700)[None, :] < np.array([[700], [510]])
    got = _noise(np, x, np.where(v, S, 0.0), v.astype(float))
    assert got[0] == _noise(np, x, S[:1])[0]
    assert got[1] == _noise(np, x[:510], S[1:, :510])[0]
    assert got[1] > 0.005


def test_ragged_block_is_started_in_one_call_and_single_equals_batch(monkeypatch):
    """Every ragged row of a block in one auto_start call (was: one call per pattern of
    valid points), and a row fitted alone is the same row of the batch (both take the
    pipeline's masked path)."""
    x = np.linspace(0.0, 100.0, 400)
    model = GaussianModel(2)
    rng = np.random.default_rng(4)
    k = 10
    truth = np.column_stack([rng.uniform(1, 3, k), rng.uniform(25, 40, k), np.full(k, 6.0),
                             rng.uniform(1, 3, k), rng.uniform(60, 75, k), np.full(k, 8.0)])
    Y = model.evaluate(x, truth) + 0.02 * rng.standard_normal((k, 400))
    for i in range(k):  # a different gap and padding in every row
        Y[i, 100 + 7 * i: 130 + 9 * i] = np.nan
        Y[i, : 3 * i] = np.nan
    calls = []
    orig = autostart.auto_start
    monkeypatch.setattr(autostart, "auto_start",
                        lambda *a, **kw: calls.append((a[2].shape[0], kw.get("missing")))
                        or orig(*a, **kw))
    batch = peakfit.fit_gaussians_batch(x, Y, 2, nan_policy="omit")
    assert calls == [(k, True)]
    assert batch.converged.all()
    np.testing.assert_allclose(np.sort(batch.b, axis=1), truth[:, 1::3], atol=0.3)
    for i in (0, 4, 9):
        single = peakfit.fit_gaussians(x, Y[i], 2, nan_policy="omit")
        np.testing.assert_allclose(single.p, batch.p[i], rtol=1e-10, atol=0)


def test_matlab_start_of_ragged_rows_stays_per_pattern(monkeypatch):
    """``start='matlab'`` (MATLAB's estimator, no masks) still sees each row's valid points
    alone: one call per pattern of valid points."""
    x = np.linspace(0.0, 10.0, 200)
    Y = np.exp(-((x[None, :] - np.array([[4.0], [5.0], [6.0]])) / 0.8) ** 2)
    Y[0, :10] = np.nan
    Y[1, :20] = np.nan
    calls = []
    orig = pipeline.estimate_start
    monkeypatch.setattr(pipeline, "estimate_start",
                        lambda *a, **kw: calls.append(a[2].shape) or orig(*a, **kw))
    r = peakfit.fit_gaussians_batch(x, Y, 1, start="matlab")
    assert sorted(calls) == [(1, 180), (1, 190), (1, 200)]  # the full row, then 2 patterns
    np.testing.assert_allclose(r.b[:, 0], [4.0, 5.0, 6.0], atol=1e-6)


@pytest.mark.parametrize("missing", [None, True])
def test_missing_given_or_checked_gives_the_same_start(missing):
    model, X, Y, valid, _ = _rows()
    Yn = np.where(valid, Y, np.nan)
    Xn = np.where(valid, X, X.max(axis=1, keepdims=True))
    ref = auto_start(model, Xn, Yn)
    np.testing.assert_array_equal(auto_start(model, Xn, Yn, missing=missing), ref)
    assert np.all(np.isfinite(ref))
