"""One pipeline: ``fit_gaussians`` on a spectrum equals ``fit_gaussians_batch`` on it.

Every input class the project knows (clean, noisy, weighted, unsorted, NaN-omitted, bad rows,
extreme scales, bad starts) goes through both entry points; the state, the coefficients (to
1e-10), the goodness of fit and the quality flags must agree, and ``BatchFit[i]`` must be the
same object type with the same values as the single fit of row ``i``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import peakfit
from peakfit import FitState, GaussianFit
from peakfit.models import GaussianModel

X = np.linspace(0.0, 10.0, 101)
TWO = GaussianModel(2)(X, [3.0, 4.0, 0.8, 1.0, 6.5, 1.1])
WIGGLE = 0.01 * np.sin(7.0 * X)


def _w(idx):
    w = np.zeros(X.size)
    w[idx] = 1.0
    return w


def _gap():
    y = TWO + WIGGLE
    y[40:45] = np.nan
    return y


# name: (x, y, n, keyword arguments shared by both, expected state, expected quality subset)
CASES = {
    "clean": (X, TWO, 2, {}, FitState.CONVERGED, ()),
    "noisy": (X, TWO + WIGGLE, 2, {}, FitState.CONVERGED, ()),
    "baseline": (X, TWO + 0.5, 2, {"baseline": "constant"}, FitState.CONVERGED, ()),
    "unsorted x": (X[::-1], (TWO + WIGGLE)[::-1], 2, {}, FitState.CONVERGED, ()),
    "integer y": (np.arange(101.0), np.round(100 * TWO).astype(np.int64), 2, {},
                  FitState.CONVERGED, ()),
    "some zero weights": (X, TWO + WIGGLE, 2, {"weights": _w(slice(0, 80))},
                          FitState.CONVERGED, ()),
    "all-zero weights": (X, TWO, 2, {"weights": np.zeros(X.size)},
                         FitState.INSUFFICIENT_DATA, ()),
    "3 positive weights for 6 coefficients": (X, TWO, 2, {"weights": _w([10, 40, 60])},
                                              FitState.INSUFFICIENT_DATA, ()),
    "x all equal": (np.full(X.size, 2.0), TWO, 2, {}, FitState.INSUFFICIENT_DATA, ()),
    "constant zero": (X, np.zeros(X.size), 2, {}, FitState.CONSTANT_DATA, ()),
    "constant 2.5": (X, np.full(X.size, 2.5), 2, {}, FitState.CONSTANT_DATA, ()),
    "NaN omitted": (X, _gap(), 2, {"nan_policy": "omit"}, FitState.CONVERGED, ()),
    "zero-width start": (X, TWO + WIGGLE, 2, {"start": [3, 4, 0, 1, 6.5, 1.1]},
                         FitState.CONVERGED, ("unresolved_peaks",)),
    "y x 1e300": (X, (TWO + WIGGLE) * 1e300, 2, {}, FitState.CONVERGED, ()),
    "y x 1e-300": (X, (TWO + WIGGLE) * 1e-300, 2, {}, FitState.CONVERGED, ()),
    "matlab start on dips": (X, 1.0 - TWO, 1, {"start": "matlab"}, FitState.CONVERGED,
                             ("negative_rsquare",)),
    "one iteration": (X, TWO + WIGGLE, 2, {"max_iter": 1, "start": "matlab"},
                      FitState.MAX_ITERATIONS, ()),
    "active bound": (X, TWO + WIGGLE, 2, {"upper": [2.0] + [np.inf] * 5},
                     FitState.CONVERGED, ("at_bound",)),
    "more terms than peaks": (X, GaussianModel(1)(X, [2.0, 5.0, 1.0])
                              + 0.01 * np.random.default_rng(0).standard_normal(X.size), 3, {},
                              FitState.CONVERGED, ("too_many_terms",)),
}

_SINGLE_NAMES = {"weights": "Weights", "upper": "Upper", "max_iter": "MaxIter"}


def _single(x, y, n, kw):
    kw = dict(kw)
    kw.setdefault("nan_policy", "raise")
    kw = {_SINGLE_NAMES.get(k, k): v for k, v in kw.items()}
    return peakfit.fit_gaussians(x, y, n, **kw)


def _batch(x, y, n, kw):
    kw = dict(kw)
    if kw.get("nan_policy") is None:
        kw["nan_policy"] = "pad"
    return peakfit.fit_gaussians_batch(x, np.asarray(y)[None, :], n, device="cpu", **kw)


@pytest.fixture(scope="module")
def fitted():
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (x, y, n, kw, _, _) in CASES.items():
            out[name] = (_single(x, y, n, kw), _batch(x, y, n, kw))
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_single_and_batch_agree(fitted, name):
    single, batch = fitted[name]
    _, _, _, _, state, quality = CASES[name]
    row = batch[0]
    assert type(row) is GaussianFit and type(single) is GaussianFit
    assert single.state is state and row.state is state
    assert int(batch.state[0]) == int(state)
    assert single.output.exitflag == row.output.exitflag == int(batch.exitflag[0])
    np.testing.assert_allclose(row.p, single.p, rtol=1e-10, atol=0, equal_nan=True)
    np.testing.assert_allclose(batch.p[0], single.p, rtol=1e-10, atol=0, equal_nan=True)
    for key in ("sse", "rsquare", "adjrsquare", "rmse"):
        np.testing.assert_allclose(row.gof[key], single.gof[key], rtol=1e-10, equal_nan=True)
        # the batch's own arrays come from the solver's scaled sums: equal to rounding
        tiny = 1e-12 * float(np.nansum(np.asarray(single.y, dtype=float) ** 2))
        np.testing.assert_allclose(batch.__getattribute__(key)[0], single.gof[key], rtol=1e-6,
                                   atol=tiny if key == "sse" else 1e-9, equal_nan=True)
    assert row.gof.dfe == single.gof.dfe == int(batch.dfe[0])
    assert row.quality == single.quality
    assert set(quality) <= set(single.quality)
    assert single.output.message == row.output.message
    if state is FitState.CONVERGED:
        assert np.all(np.isfinite(single.p))
        assert np.isfinite(single.gof.sse) or name == "y x 1e300"
    else:
        assert single.quality == ()


def test_extreme_scales_fit_exactly(fitted):
    """Internal scaling makes 1e±300 data fit as the unscaled data: same R², scaled heights."""
    ref, _ = fitted["noisy"]
    for name, s in (("y x 1e300", 1e300), ("y x 1e-300", 1e-300)):
        r, _ = fitted[name]
        assert r.gof.rsquare == pytest.approx(ref.gof.rsquare, rel=1e-10)
        np.testing.assert_allclose(r.a / s, ref.a, rtol=1e-8)
        np.testing.assert_allclose(r.b, ref.b, rtol=1e-8)
        assert r.gof.rmse == pytest.approx(ref.gof.rmse * s, rel=1e-8)
    big, _ = fitted["y x 1e300"]
    assert big.gof.sse == np.inf  # the true SSE (about 1e600) overflows, as it must


def test_not_fitted_rows_say_why(fitted):
    r, _ = fitted["all-zero weights"]
    assert "fewer usable points" in r.output.message and np.all(np.isnan(r.p))
    r, _ = fitted["constant 2.5"]
    assert "all y = 2.5" in r.output.message and r.output.exitflag == -3


def test_quality_flags_are_shown(fitted):
    r, b = fitted["matlab start on dips"]
    assert r.gof.rsquare < 0
    assert "Quality flags: negative_rsquare" in str(r)
    assert r.to_dict()["quality"] == list(r.quality)
    assert "negative_rsquare" in b.to_table()["quality"][0]
    assert "quality negative_rsquare" in b.summary()
    clean, bc = fitted["clean"]
    assert clean.quality == () and bc.to_table()["quality"][0] == "ok"


def test_a_batch_of_many_equals_its_rows_fitted_alone():
    rng = np.random.default_rng(4)
    Y = np.stack([TWO * rng.uniform(0.5, 2) + 0.02 * rng.standard_normal(X.size)
                  for _ in range(5)])
    Y[2] = 1.0  # constant
    W = np.ones_like(Y)
    W[3] = 0.0  # all-zero weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = peakfit.fit_gaussians_batch(X, Y, 2, weights=W, device="cpu", chunk_size=2)
        singles = [peakfit.fit_gaussians(X, Y[i], 2, Weights=W[i]) for i in range(5)]
    assert b.state_names.tolist() == ["converged", "converged", "constant_data",
                                      "insufficient_data", "converged"]
    for i, s in enumerate(singles):
        assert s.state == FitState(int(b.state[i]))
        np.testing.assert_allclose(b.p[i], s.p, rtol=1e-10, equal_nan=True)
        np.testing.assert_allclose(b[i].gof.sse, s.gof.sse, rtol=1e-10, equal_nan=True)


def test_robust_fit_reuses_the_solve_stage():
    truth = np.array([3.0, 4.0, 0.8, 1.0, 6.5, 1.1])
    y = TWO + WIGGLE
    y[[10, 52, 90]] += 0.6  # outliers
    errors = {rb: np.abs(peakfit.fit_gaussians(X, y, 2, Robust=rb).p - truth).max()
              for rb in ("off", "LAR", "Bisquare")}
    # measured: off 0.062, LAR 0.0038, Bisquare 0.00087
    assert errors["off"] > 0.05
    assert errors["LAR"] < 0.01 and errors["Bisquare"] < 0.002


def test_backend_is_reported():
    b = peakfit.fit_gaussians_batch(X, TWO[None], 2, device="cpu")
    assert b.device == "cpu" and b.engine == peakfit.get_engine()
    with peakfit.use_engine("numpy"):
        assert peakfit.fit_gaussians_batch(X, TWO[None], 2, device="cpu").engine == "numpy"
