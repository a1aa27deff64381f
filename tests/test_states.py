"""Bad-input catalogue of the API and the batch: exact states, or errors naming the problem.

Each class asserts the state a row gets, or the key words of the :class:`~peakfit.InputError`
raised before anything is allocated. The property-based tests (hypothesis) fit random small
spectra through both entry points: only documented exceptions, a ``CONVERGED`` result always
has finite coefficients, means and SSE, and single and batch agree.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import peakfit
from peakfit import FitState, InputError
from peakfit.models import GaussianModel

X = np.linspace(0.0, 10.0, 60)
Y1 = GaussianModel(1)(X, [2.0, 5.0, 1.0])


def batch(x, Y, n=1, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw.setdefault("device", "cpu")
        return peakfit.fit_gaussians_batch(x, Y, n, **kw)


def single(x, y, n=1, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return peakfit.fit_gaussians(x, y, n, **kw)


def rows(*ys):
    return np.stack([np.asarray(y, dtype=float) for y in ys])


def _with(y, idx, value):
    y = np.array(y, dtype=float)
    y[idx] = value
    return y


# ------------------------------------------------------------------ states (row-level)
STATE_CASES = {
    "Inf in y": (_with(Y1, 30, np.inf), {}, FitState.NONFINITE_INPUT),
    "-Inf in y": (_with(Y1, 3, -np.inf), {}, FitState.NONFINITE_INPUT),
    "NaN between valid points (pad)": (_with(Y1, 30, np.nan), {}, FitState.NONFINITE_INPUT),
    "NaN between valid points (omit)": (_with(Y1, 30, np.nan), {"nan_policy": "omit"},
                                         FitState.CONVERGED),
    "NaN padding at the ends": (_with(Y1, slice(0, 5), np.nan), {}, FitState.CONVERGED),
    "all NaN": (np.full(X.size, np.nan), {}, FitState.INSUFFICIENT_DATA),
    "2 valid points for 3 coefficients": (_with(Y1, slice(2, None), np.nan), {},
                                          FitState.INSUFFICIENT_DATA),
    "all-zero weights": (Y1, {"weights": np.zeros(X.size)}, FitState.INSUFFICIENT_DATA),
    "2 positive weights": (Y1, {"weights": _with(np.zeros(X.size), [5, 9], 1.0)},
                           FitState.INSUFFICIENT_DATA),
    "positive weights at one x": (Y1, {"weights": _with(np.zeros(X.size), [7], 1.0)},
                                  FitState.INSUFFICIENT_DATA),
    "constant zero": (np.zeros(X.size), {}, FitState.CONSTANT_DATA),
    "constant negative": (np.full(X.size, -3.0), {}, FitState.CONSTANT_DATA),
    "one iteration allowed": (Y1 + 0.01 * np.cos(3 * X), {"max_iter": 1, "start": "matlab"},
                              FitState.MAX_ITERATIONS),
}


@pytest.mark.parametrize("name", list(STATE_CASES))
def test_row_states(name):
    y, kw, state = STATE_CASES[name]
    # the bad row between two good ones: it costs nothing else
    r = batch(X, rows(Y1, y, Y1), **{k: (np.stack([np.ones(X.size), v, np.ones(X.size)])
                                         if k == "weights" else v) for k, v in kw.items()})
    good = "max_iterations" if state is FitState.MAX_ITERATIONS else "converged"
    assert r.state_names.tolist()[0] == r.state_names.tolist()[2] == good
    assert FitState(int(r.state[1])) is state, r.state_names[1]
    if state is not FitState.CONVERGED and state is not FitState.MAX_ITERATIONS:
        assert np.all(np.isnan(r.p[1])) and r.quality[1] == 0


def test_x_all_equal_single_and_batch():
    x = np.full(X.size, 4.0)
    assert batch(x, Y1[None]).state_names.tolist() == ["insufficient_data"]
    assert single(x, Y1).state is FitState.INSUFFICIENT_DATA
    r = batch(np.stack([X, x]), rows(Y1, Y1))
    assert r.state_names.tolist() == ["converged", "insufficient_data"]


def test_inf_in_a_per_row_x():
    x2 = np.stack([X, _with(X, 10, np.inf)])
    assert batch(x2, rows(Y1, Y1)).state_names.tolist() == ["converged", "nonfinite_input"]


# ------------------------------------------------------------------ errors (call-level)
ERROR_CASES = {
    "n = 10**9 (single)": (lambda: single(X, Y1, 10**9), "not enough data"),
    "n = 10**9 (batch)": (lambda: batch(X, Y1[None], 10**9), "not enough data"),
    "n = 10**9 (batch of chunks)": (lambda: batch(X, iter([Y1[None], Y1[None]]), 10**9),
                                    "not enough data"),
    "n = 0": (lambda: single(X, Y1, 0), "n must be >= 1"),
    "n a string": (lambda: batch(X, Y1[None], "3"), "n must be a positive int"),
    "MaxIter None": (lambda: single(X, Y1, MaxIter=None), "MaxIter (max_iter)"),
    "TolFun text": (lambda: single(X, Y1, TolFun="small"), "TolFun (tol_fun) must be a number"),
    "tol_x text (batch)": (lambda: batch(X, Y1[None], tol_x="x"), "TolX (tol_x)"),
    "MaxFunEvals 1.5": (lambda: single(X, Y1, MaxFunEvals=1.5), "MaxFunEvals"),
    "ragged weights (batch)": (lambda: batch(X, rows(Y1, Y1), weights=[[1.0] * 60, [1.0] * 59]),
                               "weights is ragged: row 0 has 60 values but row 1 has 59"),
    "ragged per-row x": (lambda: batch([list(X), list(X[:50])], rows(Y1, Y1)),
                         "x is ragged: row 0 has 60 values but row 1 has 50"),
    "ragged Y rows": (lambda: batch(X[:3], [[1.0, 2.0, 3.0], [1.0, 2.0]]), "Y is ragged"),
    "ragged Weights (single)": (lambda: single(X, Y1, Weights=[[1.0, 2.0], [1.0]]),
                                "Weights is ragged"),
    "complex y": (lambda: single(X, Y1 + 1j), "y must be real"),
    "text y": (lambda: batch(X[:2], [["a", "b"]]), "must be numeric"),
    "x/y lengths": (lambda: single(X[:-1], Y1), "x has 59 points, y has 60"),
    "x/Y columns": (lambda: batch(X[:-1], Y1[None]), "x has 59 points but Y has 60 columns"),
    "negative weights": (lambda: single(X, Y1, Weights=-np.ones(X.size)), "Weights must be >= 0"),
    "NaN weights (batch)": (lambda: batch(X, Y1[None], weights=_with(np.ones(60), 3, np.nan)),
                            "non-finite"),
    "unknown device": (lambda: batch(X, Y1[None], device="tpu"), "device must be"),
    "integer dtype": (lambda: batch(X, Y1[None], dtype="int8"), "dtype must be"),
    "start of the wrong length": (lambda: batch(X, Y1[None], start=[1.0, 2.0]),
                                  "start has shape (2,)"),
    "unknown start method": (lambda: batch(X, Y1[None], start="guess"), "unknown start method"),
    "nan_policy": (lambda: batch(X, Y1[None], nan_policy="drop"), "nan_policy must be"),
    "chunk_size 0": (lambda: batch(X, Y1[None], chunk_size=0), "chunk_size must be"),
    "unknown option": (lambda: single(X, Y1, TolFn=1e-3), "unknown fit option 'TolFn'"),
    "Lower > Upper": (lambda: single(X, Y1, Lower=[0, 0, 2], Upper=[1, 1, 1]), "Lower > Upper"),
    "Robust in a batch": (lambda: batch(X, Y1[None], options=peakfit.fitoptions(
        "gauss1", Robust="LAR")), "Robust fitting is not supported"),
    "non-finite x (single)": (lambda: single(_with(X, 4, np.nan), Y1), "x contains 1 non-finite"),
}


@pytest.mark.parametrize("name", list(ERROR_CASES))
def test_errors_name_the_problem(name):
    call, words = ERROR_CASES[name]
    with pytest.raises(InputError) as info:
        call()
    assert words in str(info.value)


def test_catalogue_size():
    assert len(STATE_CASES) + len(ERROR_CASES) >= 15


# ------------------------------------------------------------------ properties
_BASELINES = ("none", "constant", "linear")

spectra = st.fixed_dictionaries({
    "m": st.integers(2, 40),
    "n": st.integers(1, 3),
    "baseline": st.sampled_from(_BASELINES),
    "scale": st.sampled_from([1e-300, 1e-8, 1.0, 1e8, 1e300]),
    "seed": st.integers(0, 2**31 - 1),
    "zero_weights": st.integers(0, 40),
    "start": st.sampled_from(["auto", "matlab"]),
    "kind": st.sampled_from(["peaks", "noise", "constant", "steps"]),
    "missing": st.integers(0, 4),
})


def _make(spec):
    rng = np.random.default_rng(spec["seed"])
    m = spec["m"]
    x = np.sort(rng.uniform(-5, 5, m))
    if spec["kind"] == "peaks":
        y = GaussianModel(1)(x, [rng.uniform(0.5, 2), rng.uniform(-3, 3), rng.uniform(0.3, 2)])
        y = y + 0.01 * rng.standard_normal(m)
    elif spec["kind"] == "noise":
        y = rng.standard_normal(m)
    elif spec["kind"] == "constant":
        y = np.full(m, rng.choice([0.0, 1.5]))
    else:
        y = np.where(x > 0, 1.0, 0.0)
    w = np.ones(m)
    w[: min(spec["zero_weights"], m)] = 0.0
    y = y * spec["scale"]
    y[rng.integers(0, m, spec.get("missing", 0))] = np.nan  # omitted by both
    return x, y, w


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spectra)
# found by this test: noise at 1e300 converged in scaled units to a height that overflows
# when unscaled; it is now nonfinite_model with a message saying so
@example({"m": 29, "n": 1, "baseline": "linear", "scale": 1e300, "seed": 2535,
          "zero_weights": 13, "start": "auto", "kind": "noise"})
def test_property_single_and_batch_agree(spec):
    x, y, w = _make(spec)
    n, baseline, start = spec["n"], spec["baseline"], spec["start"]
    P = GaussianModel(n, baseline).n_params
    try:
        s = single(x, y, n, baseline=baseline, start=start, Weights=w, nan_policy="omit")
    except InputError as exc:  # the documented error: fewer points than coefficients
        assert x.size < P and "not enough data" in str(exc)
        with pytest.raises(InputError, match="not enough data"):
            batch(x, y[None], n, baseline=baseline, start=start, weights=w, nan_policy="omit")
        return
    b = batch(x, y[None], n, baseline=baseline, start=start, weights=w, nan_policy="omit")
    assert s.state is FitState(int(b.state[0]))
    np.testing.assert_allclose(b.p[0], s.p, rtol=1e-10, atol=0, equal_nan=True)
    assert b[0].quality == s.quality
    if s.state is FitState.CONVERGED:
        assert np.all(np.isfinite(s.p)) and np.all(np.isfinite(s.means))
        # SSE is finite unless the data's own squares overflow (|y| ~ 1e300)
        assert np.isfinite(s.gof.sse) or spec["scale"] == 1e300
        if s.gof.dfe > 0:
            assert np.isfinite(s.gof.rmse) and np.isfinite(b.rmse[0])
    if int(((w > 0) & np.isfinite(y)).sum()) < P:
        assert s.state is FitState.INSUFFICIENT_DATA
