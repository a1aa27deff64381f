"""The generated NumPy kernels (``peakfit.models.numpy_kernel``) against the readable reference.

``run_steps`` evaluates a term kind's steps one ``eval`` at a time and stays the reference; the
generated kernel performs the same operations in the same order with common subexpressions
once, in-place ufuncs and reused work buffers, so it must give the same numbers for every kind,
every subset of outputs, float32 as float32, and for the degenerate coefficients (``c == 0``,
widths so small that every ``exp`` underflows, NaN). Also here: the evaluator's knobs (the
damped-system solver comes from the evaluator, no ``fused=`` switch, blocks sized from the
number of points) leave the numbers unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest

from peakfit import engine as engine_mod
from peakfit.models import (
    BASELINE_TERMS,
    EXP_CUT64,
    GAUSS,
    GaussianModel,
    TermKind,
    Workspace,
    exp_flushed,
    numpy_kernel,
    register_baseline,
    run_steps,
    term_values,
    unregister_baseline,
)
from peakfit.solvers.evaluators import NormalEquations
from peakfit.solvers.linalg import damped_solver, solve_batched, solve_compiled
from peakfit.solvers.lm import levenberg_marquardt
from peakfit.solvers.vp import SeparableEquations, variable_projection

KINDS = [GAUSS, *BASELINE_TERMS.values()]


def _inputs(kind, dtype=np.float64, k=5, n=3, m=40, seed=0):
    """Parameters (k, n, 1) and x (1, 1, m) with the degenerate cases in some rows."""
    rng = np.random.default_rng(seed)
    prm = {q: rng.uniform(0.2, 1.5, (k, n, 1)) for q in kind.params}
    if kind is GAUSS:
        prm["c"][0, 1] = 0.0  # the term and its derivatives vanish
        prm["c"][1, 0] = 1e-300  # every exp underflows: t is huge, u must be 0 there
        prm["b"][2, 2] = np.nan  # NaN propagates
        prm["c"][3, :] = 0.01  # narrow: many exp arguments below -600 (flushed path)
    x = np.linspace(-1.0, 3.0, m)[None, None, :]
    return {q: v.astype(dtype) for q, v in prm.items()}, x.astype(dtype)


def _reference(kind, prm, x, outputs, exp=None):
    env = run_steps(kind, dict(prm, x=x), np, outputs, exp)
    return [np.broadcast_to(env[o], np.broadcast_shapes(x.shape, *(v.shape for v in
                                                                   prm.values())))
            for o in outputs]


def _all_outputs(kind):
    return ("value", *(f"d_{q}" for q in kind.params))


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_generated_kernel_equals_run_steps_for_every_kind(kind, dtype):
    prm, x = _inputs(kind, dtype)
    outputs = _all_outputs(kind)
    kern = numpy_kernel(kind, outputs)
    with np.errstate(all="ignore"):
        ref = _reference(kind, prm, x, outputs)
    got = kern(tuple(prm[q] for q in kind.params), x)
    for name, a, b in zip(outputs, got, ref):
        assert np.result_type(a) == dtype or np.ndim(a) == 0, name
        # the same operations in the same order: the same numbers (NaN where NaN)
        np.testing.assert_array_equal(np.broadcast_to(a, b.shape), b, err_msg=name)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_every_single_output_and_the_flushed_exp(kind):
    prm, x = _inputs(kind, seed=1)
    for outputs in [(o,) for o in _all_outputs(kind)] + [tuple(reversed(_all_outputs(kind)))]:
        with np.errstate(all="ignore"):
            ref = _reference(kind, prm, x, outputs, exp_flushed)
        got = numpy_kernel(kind, outputs)(tuple(prm[q] for q in kind.params), x,
                                          exp=exp_flushed)
        for name, a, b in zip(outputs, got, ref):
            np.testing.assert_allclose(np.broadcast_to(a, b.shape), b, rtol=1e-12, atol=0,
                                       err_msg=f"{kind.name}: {name}")


def test_the_gaussian_kernel_computes_each_value_once_in_place():
    src = numpy_kernel(GAUSS).source
    assert "eval" not in src
    assert src.count("exp(") == 1  # e: once, shared by value, d_a, d_b and d_c
    assert src.count("np.multiply(p_a,") == 1  # a*e: once, for value and d_b
    # work buffers: t (then u, in place) and one mask; the outputs hold the rest
    k = numpy_kernel(GAUSS)
    assert (k.n_work, k.n_mask) == (1, 1)


def test_work_buffers_are_reused_and_results_do_not_depend_on_them():
    prm, x = _inputs(GAUSS)
    args = tuple(prm[q] for q in GAUSS.params)
    kern = numpy_kernel(GAUSS)
    ws = Workspace()
    first = [a.copy() for a in kern(args, x, work=ws)]
    bufs = [id(b) for b in ws.get((5, 3, 40), np.dtype(np.float64), 1, 1)[0]]
    other = tuple(a * 1.3 for a in args)
    kern(other, x, work=ws)  # the same buffers, other numbers
    again = kern(args, x, work=ws)
    assert [id(b) for b in ws.get((5, 3, 40), np.dtype(np.float64), 1, 1)[0]] == bufs
    for a, b in zip(again, first):
        np.testing.assert_array_equal(a, b)
    # given outputs are written, not replaced
    outs = tuple(np.full((5, 3, 40), 7.0) for _ in range(4))
    got = kern(args, x, outs, work=ws)
    assert all(g is o for g, o in zip(got, outs))
    np.testing.assert_array_equal(outs[3], first[3])


def test_exp_flushed_is_exact_above_the_cut_and_zero_below():
    v = np.array([0.0, -1.0, -EXP_CUT64, -EXP_CUT64 - 1e-9, -745.0, -1e300, np.nan, 5.0])
    got = exp_flushed(v)
    with np.errstate(all="ignore"):
        want = np.where(v < -EXP_CUT64, 0.0, np.exp(v))
    np.testing.assert_array_equal(got, want)
    above = np.linspace(-EXP_CUT64, 0.0, 101)
    np.testing.assert_array_equal(exp_flushed(above), np.exp(above))  # no clip pass
    out = v.copy()
    assert exp_flushed(out, out=out) is out
    np.testing.assert_array_equal(out, want)
    f32 = np.array([-700.0, -1.0], dtype=np.float32)
    assert exp_flushed(f32).dtype == np.float32


def test_evaluate_and_term_values_equal_the_reference_path():
    model = GaussianModel(3, "quadratic")
    rng = np.random.default_rng(4)
    x = np.linspace(-2.0, 2.0, 57)
    X = x[None, :] * rng.uniform(0.9, 1.1, (4, 1))
    p = np.column_stack([rng.uniform(0.5, 1.5, 4), rng.uniform(-1, 1, 4),
                         rng.uniform(0.1, 0.5, 4)] * 3 + [rng.uniform(0, 1, 4)] * 3)
    p[2, 5] = 0.0
    for xx in (x, X):
        f, Jt = model.evaluate(xx, p, jacobian=True)
        env, benv = model.term_env(xx, p)  # run_steps
        np.testing.assert_array_equal(f, env["value"].sum(axis=1) + benv["value"])
        for kind, name, col in model._columns():
            ref = (env if kind is model.peak else benv)["d_" + name]
            np.testing.assert_array_equal(Jt[:, col, :], np.broadcast_to(ref, Jt[:, col].shape))
    a, b, c = p[:, 0:9:3], p[:, 1:9:3], p[:, 2:9:3]
    env = run_steps(GAUSS, {"a": a[:, :, None], "b": b[:, :, None], "c": c[:, :, None],
                            "x": x[None, None, :]}, np, ("value",))
    np.testing.assert_array_equal(term_values(x, a, b, c), env["value"])


def test_a_registered_kind_gets_its_generated_kernel():
    kind = TermKind("gen_test", ("h", "s"),
                    (("q", "s * x"), ("value", "h * q * q"), ("d_h", "q * q"),
                     ("d_s", "2 * h * q * x")),
                    units={"h": (0, 1), "s": (1, 0)}, rescale={"h": "h / sy", "s": "s * sx"},
                    unscale={"h": "h * sy", "s": "s / sx"})
    register_baseline(kind)
    try:
        model = GaussianModel(1, "gen_test")
        x = np.linspace(0.0, 1.0, 11)
        p = np.array([[1.0, 0.5, 0.2, 2.0, 3.0]])
        f, Jt = model.evaluate(x, p, jacobian=True)
        env, benv = model.term_env(x, p)
        np.testing.assert_array_equal(f, env["value"].sum(axis=1) + benv["value"])
        np.testing.assert_array_equal(Jt[:, 4], benv["d_s"])
        np.testing.assert_allclose(Jt[0, 4], 2 * 2.0 * 3.0 * x * x, rtol=1e-15)
    finally:
        unregister_baseline("gen_test")


# ------------------------------------------------------------------ the evaluator's knobs
def _problem(baseline="linear", k=9, m=80):
    model = GaussianModel(2, baseline)
    rng = np.random.default_rng(7)
    x = np.linspace(0.0, 4.0, m)
    truth = np.column_stack([rng.uniform(1, 2, k), rng.uniform(0.8, 1.5, k),
                             rng.uniform(0.2, 0.4, k), rng.uniform(1, 2, k),
                             rng.uniform(2.5, 3.2, k), rng.uniform(0.2, 0.4, k)]
                            + [rng.uniform(0, 0.3, k) for _ in model.baseline_names])
    Y = model.evaluate(x, truth) + 0.01 * rng.standard_normal((k, m))
    return model, x, Y, truth * (1 + 0.05 * rng.standard_normal(truth.shape))


def test_the_fused_keyword_is_gone_and_blocks_are_sized_from_the_points():
    model, x, Y, p0 = _problem()
    with pytest.raises(TypeError):
        NormalEquations(model, x, Y, fused=False)  # type: ignore[call-arg]
    assert NormalEquations(model, x, Y, engine="numpy").block_rows == 16000 // 80
    idx = np.arange(len(Y))
    auto = NormalEquations(model, x, Y, engine="numpy")(p0, idx)
    for rows in (1, 4):  # each row is computed alone: the block size changes nothing
        got = NormalEquations(model, x, Y, engine="numpy", block_rows=rows)(p0, idx)
        for a, b in zip(got, auto):
            np.testing.assert_array_equal(a, b)


def test_the_damped_system_solver_comes_from_the_evaluator():
    model, x, Y, p0 = _problem()
    ev = NormalEquations(model, x, Y, engine="numpy")
    assert ev.solve is solve_batched and damped_solver(ev) is solve_batched
    assert damped_solver(lambda p, idx: None) is solve_batched  # plain callables: LAPACK
    if engine_mod.numba_available():
        assert NormalEquations(model, x, Y, engine="numba").solve is solve_compiled
    calls = []

    def spy(M, B):
        calls.append(M.shape[0])
        return solve_batched(M, B)

    lo, hi = model.default_lower(), model.default_upper()
    ref = levenberg_marquardt(NormalEquations(model, x, Y, engine="numpy"), p0, lo, hi)
    ev.solve = spy
    got = levenberg_marquardt(ev, p0, lo, hi)
    assert len(calls) == int(ref.iterations.max())  # one batched solve per iteration
    np.testing.assert_array_equal(got.p, ref.p)
    # variable projection solves with the full problem's solver too
    calls.clear()
    sep = SeparableEquations(ev, model, p0)
    assert sep.solve is spy
    vp = variable_projection(ev, model, p0, lo, hi)
    assert calls and np.all(np.isfinite(vp.p))


def test_generic_path_equals_the_fused_path():
    model, x, Y, p0 = _problem("exponential")
    sw = np.random.default_rng(2).uniform(0.5, 1.5, Y.shape)
    idx = np.array([4, 0, 7])
    fused = NormalEquations(model, x, Y, sw, engine="numpy")
    generic = NormalEquations.generic(model, x, Y, sw)
    assert fused.engine == generic.engine == "numpy"
    got = fused(p0[idx], idx)
    for a, b in zip(got, generic(p0[idx], idx)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())
    A = got[1]
    np.testing.assert_array_equal(A, A.transpose(0, 2, 1))  # one triangle, mirrored
