"""The model written once: term kinds, and every backend produced from them.

Each term kind (the Gaussian peak and every baseline) is described once in
:mod:`peakfit.models` (:class:`~peakfit.models.TermKind`). The NumPy evaluator, the fused NumPy
path, the Numba kernel and the CUDA source (through its host build) are all produced from
those descriptions, and here each equals the readable reference (the kinds' steps one by one,
``run_steps``) to 1e-12 for every kind; a throw-away kind registered in one place is picked up
by all of them. ``tests/test_numpy_kernels.py`` checks the generated NumPy kernels themselves.
"""

from __future__ import annotations

import numpy as np
import pytest
from cupy_standin import CC, host_build

import peakfit
from peakfit import engine as engine_mod
from peakfit.gpu.kernels import generate_source, kernel_name
from peakfit.models import (
    BASELINE_TERMS,
    BASELINES,
    GAUSS,
    GaussianModel,
    TermKind,
    register_baseline,
    render,
    term_values,
    unregister_baseline,
)
from peakfit.solvers.evaluators import NormalEquations

needs_numba = pytest.mark.skipif(not engine_mod.numba_available(), reason="needs numba")
needs_cc = pytest.mark.skipif(CC is None, reason="needs a C compiler for the kernel's host build")


def _problem(model: GaussianModel, k: int = 6, m: int = 120, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = np.linspace(-1.0, 1.5, m)
    X = x[None, :] * rng.uniform(0.9, 1.1, (k, 1))
    cols = []
    for j in range(model.n):
        cols += [rng.uniform(0.3, 1.0, k), rng.uniform(-0.8, 1.2, k) + 0.1 * j,
                 rng.uniform(0.05, 0.4, k)]
    cols += [rng.uniform(0.1, 0.6, k) for _ in model.baseline_names]
    p = np.column_stack(cols)
    p[1, 2] = 0.0  # c == 0: the term and its derivatives vanish
    Y = model.evaluate(X, p) + 0.02 * rng.standard_normal((k, m))
    sw = rng.uniform(0.0, 1.5, (k, m))
    q = p * (1 + 0.05 * rng.standard_normal(p.shape))
    q[1, 2] = 0.0
    return x, X, Y, sw, q


def _reference(model, x, Y, sw, q, rows):
    """``(S, A, g)`` from the readable reference: the term kinds' steps one by one
    (:func:`peakfit.models.run_steps`, through ``GaussianModel.term_env``)."""
    xx = x if x.ndim == 1 else x[rows]
    env, benv = model.term_env(xx, q)
    f = env["value"].sum(axis=1) + benv["value"]
    Jt = np.empty((len(rows), model.n_params, Y.shape[1]))
    for kind, name, col in model._columns():
        Jt[:, col, :] = (env if kind is model.peak else benv)["d_" + name]
    r = Y[rows] - f
    if sw is not None:
        w = sw if sw.ndim == 1 else sw[rows]
        r, Jt = r * w, Jt * w[..., None, :]
    return (r * r).sum(axis=1), Jt @ Jt.transpose(0, 2, 1), (Jt @ r[:, :, None])[:, :, 0]


def _host_kernel(model, x_per_row: bool, weights: str):
    """The CUDA source's host build, called as the GPU driver would with row-major data."""
    src = generate_source(model, "float64", x_per_row=x_per_row, weights=weights)
    fn = host_build(src, kernel_name(model, "float64", x_per_row, weights))

    def call(x, Y, sw, p, rows):
        m = Y.shape[1]
        P = model.n_params
        Yd = np.ascontiguousarray(Y)
        xd = np.ascontiguousarray(x)
        swd = Yd if sw is None else np.ascontiguousarray(sw)
        xr = m if x.ndim == 2 else 0
        wr = 0 if sw is None or sw.ndim == 1 else m
        ws = 0 if sw is None else 1
        cols = np.ascontiguousarray(rows, dtype=np.int64)
        pp = np.ascontiguousarray(p)
        S = np.empty(len(rows))
        A = np.empty((len(rows), P, P))
        g = np.empty((len(rows), P))
        import ctypes

        ptr = ctypes.c_void_p
        i64 = ctypes.c_int64
        fn(ptr(cols.ctypes.data), ctypes.c_int(len(rows)), ctypes.c_int(m),
           ptr(xd.ctypes.data), i64(xr), i64(1), ptr(Yd.ctypes.data), i64(m), i64(1),
           ptr(swd.ctypes.data), i64(wr), i64(ws), ptr(pp.ctypes.data), ptr(S.ctypes.data),
           ptr(A.ctypes.data), ptr(g.ctypes.data))
        return S, A, g

    return call


def _backends(model):
    out = {"numpy-fused": lambda x, Y, sw, p, rows: NormalEquations(
        model, x, Y, sw, engine="numpy")(p, rows),
           "numpy-generated": lambda x, Y, sw, p, rows: NormalEquations.generic(
        model, x, Y, sw)(p, rows)}
    if engine_mod.numba_available():
        out["numba"] = lambda x, Y, sw, p, rows: NormalEquations(
            model, x, Y, sw, engine="numba")(p, rows)
    if CC is not None:
        def cuda_host(x, Y, sw, p, rows):
            w = "none" if sw is None else ("row" if sw.ndim == 2 else "shared")
            return _host_kernel(model, x.ndim == 2, w)(x, Y, sw, p, rows)

        out["cuda-source"] = cuda_host
    return out


def _assert_same(got, ref, name):
    for a, b, what in zip(got, ref, ("S", "A", "g")):
        scale = np.abs(b).max()
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * scale,
                                   err_msg=f"{name}: {what}")


@pytest.mark.parametrize("baseline", list(BASELINES))
def test_every_backend_equals_the_numpy_reference_for_every_term_kind(baseline):
    model = GaussianModel(3, baseline)
    x, X, Y, sw, q = _problem(model, seed=len(baseline))
    rows = np.array([4, 1, 0, 5])
    backends = _backends(model)
    assert len(backends) == 2 + engine_mod.numba_available() + (CC is not None)
    for xx, w in ((x, None), (X, sw), (x, sw[2])):
        ref = _reference(model, xx, Y, w, q[rows], rows)
        for name, ev in backends.items():
            _assert_same(ev(xx, Y, w, q[rows], rows), ref, f"{name}/{baseline}")


@pytest.mark.parametrize("kind", [GAUSS, *BASELINE_TERMS.values()], ids=lambda k: k.name)
def test_derivatives_of_every_kind_match_finite_differences(kind):
    rng = np.random.default_rng(1)
    x = np.linspace(-1.0, 2.0, 31)
    vals = {q: rng.uniform(0.3, 0.9) for q in kind.params}
    env = dict(vals, x=x)
    from peakfit.models import run_steps

    run_steps(kind, env, np)
    for q in kind.params:
        h = 1e-6 * max(1.0, abs(vals[q]))
        up = run_steps(kind, dict(vals, x=x, **{q: vals[q] + h}), np, ("value",))["value"]
        dn = run_steps(kind, dict(vals, x=x, **{q: vals[q] - h}), np, ("value",))["value"]
        fd = (up - dn) / (2 * h)
        np.testing.assert_allclose(np.broadcast_to(env["d_" + q], x.shape), fd, rtol=1e-7,
                                   atol=1e-9, err_msg=f"{kind.name}: d/d{q}")


@pytest.mark.parametrize("baseline", list(BASELINES))
def test_rescale_is_exact_and_unscale_inverts_it(baseline):
    """f(x; p) = sy * f((x - x0)/sx; rescale(p)) for every kind, and unscale(rescale(p)) = p."""
    model = GaussianModel(2, baseline)
    x, _X, _Y, _sw, q = _problem(model, k=3, m=40, seed=3)
    x0 = 0.0 if baseline not in ("none", "constant") else 0.3
    x0, sx, sy = (np.array([[v]]) for v in (x0, 2.5, 4.0))
    ps = model.rescale(q, x0, sx, sy)
    np.testing.assert_allclose(sy * model.evaluate((x - x0[0]) / sx[0], ps),
                               model.evaluate(x, q), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.unscale(ps, x0, sx, sy), q, rtol=1e-12, atol=1e-14)
    # the unscale Jacobian against differences of unscale
    T = model.unscale_jacobian(ps, x0, sx, sy)
    for j in range(model.n_params):
        h = 1e-6
        up, dn = ps.copy(), ps.copy()
        up[:, j] += h
        dn[:, j] -= h
        fd = (model.unscale(up, x0, sx, sy) - model.unscale(dn, x0, sx, sy)) / (2 * h)
        np.testing.assert_allclose(T[:, :, j], fd, rtol=1e-6, atol=1e-8)


def test_term_language_is_checked_and_rendered_for_each_target():
    assert render("where(c != 0, 1 / c, 0)", "python") == "((1.0 / c) if (c != 0.0) else 0.0)"
    assert render("exp(-(t * t))", "c") == "PF_EXP((-(t * t)))"
    with pytest.raises(ValueError, match="not in the term language"):
        render("c ** 2", "c")
    with pytest.raises(ValueError, match="not in the term language"):
        render("sin(x)", "c")
    with pytest.raises(ValueError, match="uses w before it is defined"):
        TermKind("bad", ("h",), (("value", "h * w"), ("d_h", "w")))
    with pytest.raises(ValueError, match="must assign d_h"):
        TermKind("bad", ("h",), (("value", "h * x"),))
    with pytest.raises(ValueError, match="rescale lacks h"):
        TermKind("bad", ("h",), (("value", "h * x"), ("d_h", "x")))


def test_components_and_values_come_from_the_model():
    model = GaussianModel(2, "linear")
    p = np.array([2.0, 0.5, 0.7, 1.0, 2.0, 0.0, 0.1, 0.2])
    x = np.linspace(0, 3, 7)
    np.testing.assert_allclose(model.component(0, x, p), 2.0 * np.exp(-((x - 0.5) / 0.7) ** 2),
                               rtol=1e-15)
    assert np.all(model.component(1, x, p) == 0.0)  # c == 0: MATLAB's guard
    v = term_values(x, np.array([[2.0, 1.0]]), np.array([[0.5, 2.0]]), np.array([[0.7, 0.0]]))
    assert v.shape == (1, 2, 7)
    np.testing.assert_allclose(v[0].sum(axis=0) + 0.1 + 0.2 * x, model(x, p), rtol=1e-15)


# ------------------------------------------------------------------ a throw-away kind
#: A logistic step ``h / (1 + exp(-s x))``: written here once, it must reach every backend.
LOGISTIC = TermKind(
    name="logistic_test",
    params=("h", "s"),
    steps=(
        ("ex", "exp(-s * x)"),
        ("den", "1 / (1 + ex)"),
        ("value", "h * den"),
        ("d_h", "den"),
        ("d_s", "h * x * ex * den * den"),
    ),
    formula=("h/(1+exp(-s*x))",),
    units={"h": (0, 1), "s": (1, 0)},
    rescale={"h": "h / sy", "s": "s * sx"},
    unscale={"h": "h * sy", "s": "s / sx"},
    unscale_jacobian={("h", "h"): "sy", ("s", "s"): "1 / sx"},
    shifts=False,  # a shift of x would need a third coefficient
)


@pytest.fixture
def logistic():
    register_baseline(LOGISTIC)
    yield LOGISTIC
    unregister_baseline(LOGISTIC.name)


@pytest.mark.slow  # compiles a second Numba kernel (about 10 s)
def test_a_kind_registered_in_one_place_reaches_every_backend(logistic):
    model = GaussianModel(2, logistic.name)
    assert model.names[-2:] == ("h", "s") and BASELINES[logistic.name] == ("h", "s")
    assert model.formula().endswith("h/(1+exp(-s*x))")
    _x, X, Y, sw, q = _problem(model, seed=9)
    direct = q[:, 6:7] / (1 + np.exp(-q[:, 7:8] * X))
    zero = q.copy()
    zero[:, 0:6:3] = 0.0
    np.testing.assert_allclose(model.evaluate(X, zero), direct, rtol=1e-14)
    rows = np.array([3, 0, 5])
    ref = _reference(model, X, Y, sw, q[rows], rows)
    backends = _backends(model)
    assert len(backends) == 2 + engine_mod.numba_available() + (CC is not None)
    for name, ev in backends.items():
        _assert_same(ev(X, Y, sw, q[rows], rows), ref, f"{name}/logistic")
    # and a fit through the whole pipeline recovers the coefficients
    truth = np.array([[1.0, 0.2, 0.15, 0.6, 1.0, 0.2, 0.3, 4.0]])
    xs = np.linspace(-1.0, 2.0, 300)
    r = peakfit.fit_gaussians_batch(xs, model.evaluate(xs, truth), 2, baseline=logistic.name,
                                    start=truth[0] * 1.02, tol_fun=1e-12, tol_x=1e-12)
    np.testing.assert_allclose(r.p[0], truth[0], rtol=1e-6, atol=1e-8)
    # the start estimators know nothing of it: its coefficients start from 0, and it runs
    r = peakfit.fit_gaussians_batch(xs, model.evaluate(xs, truth), 2, baseline=logistic.name,
                                    start="matlab")
    assert np.all(r.start[0, 6:] == 0.0) and r.p.shape == (1, 8)


def test_built_in_kinds_cannot_be_unregistered():
    with pytest.raises(ValueError, match="built in"):
        unregister_baseline("linear")
