"""The k = 1 short path of the pipeline computes exactly what the row-vectorised path does."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

import peakfit
from peakfit.models import GaussianModel
from peakfit.result import gof_rows, goodness_of_fit


def _rows(y, r, P, w, n_active):
    s = float(np.max(np.abs(y))) or 1.0
    s = s if math.isfinite(s) else 1.0
    W = None if w is None else w[None, :]
    sse_s = np.array([float(np.sum((r / s) ** 2 if w is None else w * (r / s) ** 2))])
    return gof_rows(np, (y / s)[None, :], W, sse_s, np.array([y.size]), P,
                    np.array([n_active]), np.array([s]))


@pytest.mark.parametrize("case", ["plain", "weighted", "constant y", "perfect fit", "dfe 0",
                                  "huge y", "one active bound"])
def test_single_gof_equals_the_row_formulas_exactly(case):
    rng = np.random.default_rng(3)
    y = rng.normal(size=20) + 5.0
    r = rng.normal(size=20) * 0.1
    w, P, act = None, 6, 0
    if case == "weighted":
        w = rng.uniform(0.0, 2.0, 20)
    elif case == "constant y":
        y = np.full(20, 2.0)
    elif case == "perfect fit":
        y, r = np.full(20, 2.0), np.zeros(20)
    elif case == "dfe 0":
        P = 20
    elif case == "huge y":
        y, r = y * 1e300, r * 1e300
    elif case == "one active bound":
        act = 1
    g = goodness_of_fit(y, r, P, w, act)
    rows = _rows(y, r, P, w, act)
    for key in ("sse", "rsquare", "adjrsquare", "rmse"):
        a, b = getattr(g, key), float(rows[key][0])
        assert (math.isnan(a) and math.isnan(b)) or a == b, (key, a, b)
    assert g.dfe == int(rows["dfe"][0])
    if case == "constant y":
        assert g.rsquare == -math.inf
    if case == "perfect fit":
        assert math.isnan(g.rsquare)
    if case == "dfe 0":
        assert g.dfe == 0 and math.isnan(g.rmse) and math.isnan(g.adjrsquare)


def test_jacobian_on_demand_is_the_weighted_jacobian_in_caller_order():
    model = GaussianModel(2)
    x = np.linspace(0.0, 10.0, 60)
    truth = np.array([3.0, 3.0, 1.0, 2.0, 7.0, 1.5])
    y = model(x, truth) + np.random.default_rng(0).normal(0, 0.01, x.size)
    perm = np.random.default_rng(1).permutation(x.size)
    w = np.linspace(0.5, 2.0, x.size)
    r = peakfit.fit_gaussians(x[perm], y[perm], 2, Weights=w[perm])
    assert "jacobian" not in vars(r.output)  # not computed until read
    _, Jt = model.evaluate(x[perm], r.p[None, :], jacobian=True)
    expected = Jt[0].T * np.sqrt(w[perm])[:, None]
    np.testing.assert_array_equal(r.output.jacobian, expected)
    assert r.output["jacobian"] is r.output.jacobian  # computed once
    r.p[:] = 0.0  # the result's coefficients may be changed; the Jacobian stays the fit's
    back = pickle.loads(pickle.dumps(r))
    np.testing.assert_array_equal(back.output.jacobian, expected)
    np.testing.assert_array_equal(back.output.residuals, r.output.residuals)


def test_model_constants_follow_a_registration():
    from peakfit.models import TermKind, register_baseline, unregister_baseline

    m = GaussianModel(2, "constant")
    assert m.default_lower().tolist() == [-np.inf, -np.inf, 0.0] * 2 + [-np.inf]
    kind = TermKind("pf_test_step", ("s1", "s2"),
                    (("value", "s1 + s2 * x"), ("d_s1", "1 + 0 * x"), ("d_s2", "x")),
                    ("s1+s2*x",), lower={"s2": 0.0}, units={"s1": (0, 1), "s2": (1, 1)},
                    rescale={"s1": "s1 / sy", "s2": "s2 * sx / sy"},
                    unscale={"s1": "s1 * sy", "s2": "s2 * sy / sx"},
                    unscale_jacobian={("s1", "s1"): "sy", ("s2", "s2"): "sy / sx"},
                    shifts=False)
    p = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    register_baseline(kind)
    try:
        m2 = GaussianModel(1, "pf_test_step")
        assert m2.n_params == 5
        assert m2.default_lower().tolist() == [-np.inf, -np.inf, 0.0, -np.inf, 0.0]
        assert m2.bound_scale()[0].tolist() == [0.0, -1.0, -1.0, 0.0, 1.0]
        assert m2.rescale(p, 0.0, 2.0, 4.0).tolist() == [[0.25, 1.0, 1.5, 1.0, 2.5]]
    finally:
        unregister_baseline("pf_test_step")
    assert m.default_lower().tolist() == [-np.inf, -np.inf, 0.0] * 2 + [-np.inf]
