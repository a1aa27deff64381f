"""The gaussN model: values, analytic Jacobian and coefficient names, defined once.

The model is MATLAB's ``gaussN`` library model,

.. math:: f(x) = \\sum_{i=1}^{n} a_i \\exp\\left(-\\left(\\frac{x-b_i}{c_i}\\right)^2\\right)

plus an optional baseline term. Coefficients are ordered as in MATLAB: ``a1, b1, c1, a2, b2,
c2, ...`` followed by the baseline coefficients (``d0, d1, d2`` for polynomial baselines
``d0 + d1*x + d2*x^2``, ``e1, e2`` for the exponential baseline ``e1*exp(-e2*x)``, the form of the
NIST StRD Gauss problems).

Every evaluation is batched: parameters have shape ``(k, P)`` for ``k`` spectra and ``x`` is
either shared ``(m,)`` or per spectrum ``(k, m)``. Each term kind is written once
(:class:`TermKind`); the NumPy kernels (:func:`numpy_kernel`), the CuPy evaluation
(:func:`run_steps`), the Numba kernel and the GPU kernels (:mod:`peakfit.gpu.kernels`) all come
from these definitions, so that the model is written in one place.
"""

from __future__ import annotations

import ast
import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._xp import get_xp
from .errors import InputError

__all__ = [
    "BASELINES",
    "BASELINE_TERMS",
    "FWHM_PER_C",
    "GAUSS",
    "GaussianModel",
    "TermKind",
    "gauss_model",
    "numpy_kernel",
    "parse_model_name",
    "register_baseline",
    "render",
    "term_values",
    "unregister_baseline",
]

#: FWHM of ``exp(-((x-b)/c)^2)`` in units of ``c``: ``2*sqrt(ln 2)``.
FWHM_PER_C = 2.0 * math.sqrt(math.log(2.0))

# ------------------------------------------------------------------ term kinds
#: Operators of the expression language in which term kinds are written (a subset of Python
#: that is also C): numbers, names, ``+ - * /``, unary minus, ``exp(v)``, ``where(cond, a, b)``
#: and the comparisons ``== != < <= > >=``.
_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_CMPOPS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">",
           ast.GtE: ">="}


def _parse(expr: str) -> ast.expr:
    """Parse and check one expression of the term language."""
    tree = ast.parse(expr, mode="eval").body
    for node in ast.walk(tree):
        ok = isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Call, ast.Name, ast.Constant,
                               ast.Compare, ast.Load, ast.USub, *_BINOPS, *_CMPOPS))
        if isinstance(node, ast.BinOp):
            ok = type(node.op) in _BINOPS
        if isinstance(node, ast.Call):
            ok = (isinstance(node.func, ast.Name) and node.func.id in ("exp", "where")
                  and len(node.args) == (1 if node.func.id == "exp" else 3))
        if isinstance(node, ast.Compare):
            ok = len(node.ops) == 1
        if isinstance(node, ast.Constant):
            ok = isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
        if not ok:
            raise ValueError(f"{expr!r}: {ast.dump(node)[:40]} is not in the term language "
                             f"(numbers, names, + - * /, exp(v), where(cond, a, b))")
    return tree


def render(expr: str | ast.expr, target: str, name: Callable[[str], str] = str,
           exp: Callable[[str], str] | None = None) -> str:
    """Render an expression of the term language for a target language.

    Parameters
    ----------
    expr : str or ast node
        The expression (see :class:`TermKind`).
    target : {'python', 'c'}
        ``'python'`` gives scalar Python (Numba): ``where`` becomes a conditional expression,
        constants floats. ``'c'`` gives C/CUDA for ``pf_real`` arithmetic: constants are cast
        to ``pf_real`` (no double promotion in float32), ``exp`` becomes ``PF_EXP``.
    name : callable
        Maps a name of the expression to the variable that holds it in the target.
    exp : callable, optional
        Renders ``exp(<argument text>)`` (default: ``exp(...)``/``PF_EXP(...)``).

    Examples
    --------
    >>> render('where(c != 0, 2 / c, 0)', 'c')
    '((c != (pf_real)0) ? ((pf_real)2 / c) : (pf_real)0)'
    >>> render('-(t * t)', 'python', name=lambda s: s + '_1')
    '(-(t_1 * t_1))'
    """
    node = _parse(expr) if isinstance(expr, str) else expr
    c = target == "c"

    def r(nd: ast.expr) -> str:
        if isinstance(nd, ast.Constant):
            return f"(pf_real){nd.value!r}" if c else repr(float(nd.value))
        if isinstance(nd, ast.Name):
            return name(nd.id)
        if isinstance(nd, ast.UnaryOp):
            return f"(-{r(nd.operand)})"
        if isinstance(nd, ast.BinOp):
            return f"({r(nd.left)} {_BINOPS[type(nd.op)]} {r(nd.right)})"
        if isinstance(nd, ast.Compare):
            return f"({r(nd.left)} {_CMPOPS[type(nd.ops[0])]} {r(nd.comparators[0])})"
        assert isinstance(nd, ast.Call) and isinstance(nd.func, ast.Name)
        args = [r(a) for a in nd.args]
        if nd.func.id == "exp":
            if exp is not None:
                return exp(args[0])
            return f"PF_EXP({args[0]})" if c else f"exp({args[0]})"
        if c:
            return f"({args[0]} ? {args[1]} : {args[2]})"
        return f"({args[1]} if {args[0]} else {args[2]})"

    return r(node)


def names_in(expr: str) -> frozenset[str]:
    """Names used by an expression (without the functions ``exp`` and ``where``)."""
    return _names_in(expr)


@functools.lru_cache(maxsize=1024)
def _names_in(expr: str) -> frozenset[str]:
    return frozenset(nd.id for nd in ast.walk(_parse(expr)) if isinstance(nd, ast.Name)) - {
        "exp", "where"}


def exp_args(expr: str) -> list[ast.expr]:
    """The arguments of the ``exp`` calls in an expression, outermost first."""
    return [nd.args[0] for nd in ast.walk(_parse(expr))
            if isinstance(nd, ast.Call) and isinstance(nd.func, ast.Name)
            and nd.func.id == "exp"]


@dataclass(frozen=True)
class TermKind:
    """One kind of term of the model (a peak shape or a baseline), written once.

    Every backend is produced from these fields: the NumPy kernels (:func:`numpy_kernel`,
    behind :meth:`GaussianModel.evaluate` and :func:`term_values`), the CuPy evaluation
    (:func:`run_steps`), the Numba kernel
    (:mod:`peakfit.solvers._numba`) and the CUDA source (:mod:`peakfit.gpu.kernels`).

    Parameters
    ----------
    name : str
        ``'gauss'`` for the peak; the baseline's name (``'linear'``...) for baselines.
    params : tuple of str
        Coefficient names, in MATLAB order (peaks get the term number appended: ``a1``).
    steps : tuple of (name, expression)
        Assignments evaluated in order in the term language (:func:`render`): the names
        ``value`` (the term's value) and ``d_<param>`` (its partial derivative for each
        parameter) must be assigned. ``x`` is the abscissa; a step that uses ``x`` (or a step
        that does) is computed per point, the others once per spectrum.
    formula : tuple of str
        The term in MATLAB's display, ``{i}`` standing for the term number.
    lower : dict
        Default lower bounds that are not ``-inf`` (MATLAB: widths ``>= 0``).
    units : dict
        ``param -> (x power, y power)``: with ``x' = x/sx``, ``y' = y/sy`` the coefficient
        maps as ``p' = p * sx**xpow / sy**ypow`` (used for bounds).
    rescale, unscale : dict
        ``param -> expression`` of the coefficients for ``x' = (x - x0)/sx``, ``y' = y/sy``
        (``rescale``) and back (``unscale``), in the names of the input coefficients and
        ``x0``, ``sx``, ``sy``.
    unscale_jacobian : dict
        ``(out, in) -> expression``: the non-zero entries of ``∂unscale/∂p'``.
    shifts : bool
        Whether ``rescale`` is exact for a shift ``x0 != 0`` too (else the scaling of the
        problem only scales x).
    """

    name: str
    params: tuple[str, ...]
    steps: tuple[tuple[str, str], ...]
    formula: tuple[str, ...] = ()
    lower: dict[str, float] = field(default_factory=dict)
    units: dict[str, tuple[int, int]] = field(default_factory=dict)
    rescale: dict[str, str] = field(default_factory=dict)
    unscale: dict[str, str] = field(default_factory=dict)
    unscale_jacobian: dict[tuple[str, str], str] = field(default_factory=dict)
    shifts: bool = True

    def __post_init__(self) -> None:
        defined = {"x", *self.params}
        for nm, ex in self.steps:
            missing = names_in(ex) - defined
            if missing:
                raise ValueError(f"term {self.name!r}: step {nm} = {ex!r} uses "
                                 f"{', '.join(sorted(missing))} before it is defined")
            defined.add(nm)
        need = {"value", *(f"d_{q}" for q in self.params)}
        if need - defined:
            raise ValueError(f"term {self.name!r} must assign {', '.join(sorted(need - defined))}")
        for table in ("rescale", "unscale", "units"):
            lack = set(self.params) - set(getattr(self, table))
            if lack:
                raise ValueError(f"term {self.name!r}: {table} lacks {', '.join(sorted(lack))}")
        for table in (self.rescale, self.unscale):
            for ex in table.values():
                _parse(ex)

    def per_point(self) -> frozenset[str]:
        """Names of the steps that depend on ``x`` (the others are per spectrum)."""
        return _per_point(self.steps)

    def needed(self, targets: Any) -> tuple[tuple[str, str], ...]:
        """The steps (in order) that the names ``targets`` depend on."""
        return _needed(self.steps, frozenset(targets))


@functools.lru_cache(maxsize=256)
def _per_point(steps: tuple[tuple[str, str], ...]) -> frozenset[str]:
    dep = {"x"}
    for nm, ex in steps:
        if names_in(ex) & dep:
            dep.add(nm)
    return frozenset(dep - {"x"})


@functools.lru_cache(maxsize=256)
def _needed(steps: tuple[tuple[str, str], ...], targets: frozenset[str]
            ) -> tuple[tuple[str, str], ...]:
    need = set(targets)
    out = []
    for nm, ex in reversed(steps):
        if nm in need:
            out.append((nm, ex))
            need |= names_in(ex)
    return tuple(out[::-1])


#: The peak shape: MATLAB's gaussN term ``a*exp(-((x-b)/c)^2)``. A term with ``c == 0``
#: contributes 0 and has zero derivatives (MATLAB's guard); ``u`` is ``t`` where the term is
#: non-zero and 0 elsewhere, so that no ``0 * inf`` appears however a compiler orders products.
GAUSS = TermKind(
    name="gauss",
    params=("a", "b", "c"),
    steps=(
        ("nz", "where(c != 0, 1, 0)"),
        ("rc", "where(c != 0, 1 / c, 0)"),
        ("tw", "2 * rc"),
        ("t", "(x - b) * rc"),
        ("e", "exp(-(t * t)) * nz"),
        ("u", "where(e != 0, t, 0)"),
        ("value", "a * e"),
        ("d_a", "e"),
        ("d_b", "a * e * u * tw"),
        ("d_c", "d_b * u"),
    ),
    formula=("a{i}*exp(-((x-b{i})/c{i})^2)",),
    lower={"c": 0.0},
    units={"a": (0, 1), "b": (-1, 0), "c": (-1, 0)},
    rescale={"a": "a / sy", "b": "(b - x0) / sx", "c": "c / sx"},
    unscale={"a": "a * sy", "b": "b * sx + x0", "c": "c * sx"},
    unscale_jacobian={("a", "a"): "sy", ("b", "b"): "sx", ("c", "c"): "sx"},
)

#: Baseline kinds, in the order of their codes in the compiled kernels.
BASELINE_TERMS: dict[str, TermKind] = {}


def register_baseline(kind: TermKind) -> TermKind:
    """Add a baseline kind (or replace one of the same name) for every backend.

    This is the one place a new kind is declared: names, evaluation, the Numba kernel and the
    CUDA source all follow from ``kind``. Returns ``kind``.
    """
    BASELINE_TERMS[kind.name] = kind
    BASELINES[kind.name] = kind.params
    _KEY[0] = None
    _PLANS.clear()
    return kind


def unregister_baseline(name: str) -> None:
    """Remove a baseline kind added by :func:`register_baseline`."""
    if name in _BUILTIN_BASELINES:
        raise ValueError(f"baseline {name!r} is built in")
    BASELINE_TERMS.pop(name, None)
    BASELINES.pop(name, None)
    _KEY[0] = None
    _PLANS.clear()


#: Baseline kinds and their coefficient names (kept in step with ``BASELINE_TERMS``).
BASELINES: dict[str, tuple[str, ...]] = {}
_KEY: list[Any] = [None]  # kinds_key(), rebuilt after a registration
# per-model constants (sizes, columns, default bounds, remap code), by (n, baseline); cleared
# by a registration
_PLANS: dict[tuple[int, str], _Plan] = {}


@dataclass(frozen=True)
class _Plan:
    """Constants of one model, computed once (see :meth:`GaussianModel._plan`)."""

    n_peak_params: int
    n_params: int
    columns: tuple[tuple[TermKind, str, Any], ...]
    lower: np.ndarray
    xpow: np.ndarray
    ypow: np.ndarray
    remap: dict[str, tuple[tuple[Any, Any, bool], ...]]
    #: generated NumPy kernels (peak, baseline): ``[values only, values and derivatives]``
    kernels: tuple[tuple[NumpyKernel, NumpyKernel], ...] = ()

for _kind in (
    TermKind("none", (), (("value", "0"),)),
    TermKind(
        "constant", ("d0",), (("value", "d0"), ("d_d0", "1")), ("d0",),
        units={"d0": (0, 1)}, rescale={"d0": "d0 / sy"}, unscale={"d0": "d0 * sy"},
        unscale_jacobian={("d0", "d0"): "sy"},
    ),
    TermKind(
        "linear", ("d0", "d1"), (("value", "d0 + d1 * x"), ("d_d0", "1"), ("d_d1", "x")),
        ("d0", "d1*x"), units={"d0": (0, 1), "d1": (1, 1)},
        rescale={"d0": "(d0 + d1 * x0) / sy", "d1": "d1 * sx / sy"},
        unscale={"d0": "d0 * sy - d1 * sy / sx * x0", "d1": "d1 * sy / sx"},
        unscale_jacobian={("d0", "d0"): "sy", ("d0", "d1"): "-sy * x0 / sx",
                          ("d1", "d1"): "sy / sx"},
    ),
    TermKind(
        "quadratic", ("d0", "d1", "d2"),
        (("value", "d0 + (d1 + d2 * x) * x"), ("d_d0", "1"), ("d_d1", "x"),
         ("d_d2", "x * x")),
        ("d0", "d1*x", "d2*x^2"), units={"d0": (0, 1), "d1": (1, 1), "d2": (2, 1)},
        rescale={"d0": "(d0 + d1 * x0 + d2 * x0 * x0) / sy",
                 "d1": "(d1 + 2 * d2 * x0) * sx / sy", "d2": "d2 * sx * sx / sy"},
        unscale={"d0": "d0 * sy - (d1 * sy / sx - 2 * (d2 * sy / (sx * sx)) * x0) * x0"
                       " - d2 * sy / (sx * sx) * x0 * x0",
                 "d1": "d1 * sy / sx - 2 * (d2 * sy / (sx * sx)) * x0",
                 "d2": "d2 * sy / (sx * sx)"},
        unscale_jacobian={("d0", "d0"): "sy", ("d0", "d1"): "-x0 * sy / sx",
                          ("d0", "d2"): "x0 * x0 * sy / (sx * sx)", ("d1", "d1"): "sy / sx",
                          ("d1", "d2"): "-2 * x0 * sy / (sx * sx)",
                          ("d2", "d2"): "sy / (sx * sx)"},
    ),
    TermKind(
        "exponential", ("e1", "e2"),
        (("ex", "exp(-e2 * x)"), ("value", "e1 * ex"), ("d_e1", "ex"),
         ("d_e2", "-e1 * x * ex")),
        ("e1*exp(-e2*x)",), units={"e1": (0, 1), "e2": (1, 0)},
        rescale={"e1": "e1 * exp(-e2 * x0) / sy", "e2": "e2 * sx"},
        unscale={"e1": "e1 * sy * exp(e2 / sx * x0)", "e2": "e2 / sx"},
        unscale_jacobian={("e1", "e1"): "sy * exp(e2 / sx * x0)",
                          ("e1", "e2"): "e1 * sy * exp(e2 / sx * x0) * x0 / sx",
                          ("e2", "e2"): "1 / sx"},
    ),
):
    register_baseline(_kind)
_BUILTIN_BASELINES = frozenset(BASELINE_TERMS)


def kinds_key() -> tuple[Any, ...]:
    """What generated code depends on (the registered kinds' names, parameters and steps)."""
    if _KEY[0] is None:
        _KEY[0] = tuple((k.name, k.params, k.steps) for k in (GAUSS, *BASELINE_TERMS.values()))
    return _KEY[0]


@functools.lru_cache(maxsize=16)
def _namespace(xp: Any, dtype: Any = None) -> dict[str, Any]:
    """Functions of the term language on arrays; ``where`` keeps the working ``dtype``."""
    if dtype is None:
        return {"exp": xp.exp, "where": xp.where, "__builtins__": {}}
    num = (int, float)
    typ = np.dtype(dtype).type

    def where(cond: Any, a: Any, b: Any) -> Any:
        return xp.where(cond, typ(a) if isinstance(a, num) else a,
                        typ(b) if isinstance(b, num) else b)

    return {"exp": xp.exp, "where": where, "__builtins__": {}}


@functools.lru_cache(maxsize=256)
def _code(expr: str) -> Any:
    _parse(expr)
    return compile(expr, "<term>", "eval")


def run_steps(kind: TermKind, env: dict[str, Any], xp: Any, outputs: Any = None,
              exp: Callable[[Any], Any] | None = None, dtype: Any = None) -> dict[str, Any]:
    """Evaluate a term kind's steps with arrays (NumPy or CuPy broadcasting), one by one.

    ``env`` holds ``x`` and the parameters, shaped to broadcast; returns ``env`` with the
    steps added. ``outputs`` limits the work to the steps these names need. This is the
    readable reference (and the CuPy path); NumPy's hot paths run the kernels generated from
    the same steps (:func:`numpy_kernel`), which give the same numbers.
    """
    if dtype is None:
        dtype = np.result_type(*(getattr(v, "dtype", np.float64) for v in env.values()))
    dt = np.dtype(dtype)
    ns = _namespace(xp, dt if dt.kind == "f" else np.dtype(np.float64))
    if exp is not None:
        ns = dict(ns, exp=exp)
    steps = kind.steps if outputs is None else kind.needed(outputs)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        for nm, ex in steps:
            env[nm] = eval(_code(ex), ns, env)  # the checked term language
    return env


# ------------------------------------------------------------ generated NumPy evaluation
#: ``exp(v)`` for ``v`` below ``-EXP_CUT64`` is an exact 0 in :func:`exp_flushed`.
EXP_CUT64 = 600.0


def exp_flushed(v: Any, out: Any = None) -> Any:
    """``exp(v)``, with the results below ``exp(-600)`` (1e-261) exactly 0 in float64.

    NumPy's SIMD ``exp`` drops to a scalar path ~10x slower for arguments below -708 (results
    in the subnormal range); a value below 1e-260 is negligible next to any O(1) term. One
    ``min`` pass tells whether any argument is below -600; only then are they clipped and their
    results set to 0. Other dtypes get the plain ``exp``. ``out`` may be ``v``.

    Examples
    --------
    >>> import numpy as np
    >>> exp_flushed(np.array([0.0, -700.0, -1.0])).tolist() == [1.0, 0.0, float(np.exp(-1.0))]
    True
    """
    v = np.asarray(v)
    if v.dtype != np.float64 or not v.size or v.min() >= -EXP_CUT64:  # (NaN: not >=)
        return np.exp(v, out=out)
    low = v < -EXP_CUT64
    out = np.maximum(v, -EXP_CUT64, out=out)
    np.exp(out, out=out)
    np.copyto(out, 0.0, where=low)
    return out


_UFUNC = {ast.Add: "add", ast.Sub: "subtract", ast.Mult: "multiply", ast.Div: "divide",
          ast.Eq: "equal", ast.NotEq: "not_equal", ast.Lt: "less", ast.LtE: "less_equal",
          ast.Gt: "greater", ast.GtE: "greater_equal"}


@dataclass
class _Op:
    """One full-size array operation of a generated evaluation (``fn`` of ``args``)."""

    fn: str  # a NumPy ufunc name, 'exp' or 'where'
    args: list  # ('s', python text) small | ('b', op index) | ('x',)
    bool_: bool = False
    home: Any = None  # ('o', output number) or ('w', buffer) / ('m', bool buffer)
    uses: int = 0
    last: int = -1
    flip: bool = False  # a compare computed negated (for a where that needs the complement)


@dataclass(frozen=True)
class NumpyKernel:
    """The generated NumPy evaluation of some outputs of one term kind (see :func:`numpy_kernel`).

    ``kernel(params, x, outs, work=None, exp=np.exp)`` evaluates the outputs: ``params`` (one
    array per parameter of the kind) and ``x`` broadcast together; ``outs`` holds, per output,
    an array of the broadcast shape to write into or ``None`` (a full-size output is then
    allocated, a per-spectrum one returned as computed). ``work`` is a :class:`Workspace`
    reused across calls (default: a fresh one). Returns the outputs, in order.
    """

    outputs: tuple[str, ...]
    source: str
    n_work: int
    n_mask: int
    fn: Callable[..., tuple[Any, ...]]

    def __call__(self, params: Any, x: Any, outs: Any = None, work: Workspace | None = None,
                 exp: Callable[..., Any] = np.exp) -> tuple[Any, ...]:
        shape = np.broadcast_shapes(np.shape(x), *(np.shape(q) for q in params))
        dt = np.result_type(x, *params)
        if dt.kind != "f":
            dt = np.dtype(np.float64)
        if outs is None:
            outs = (None,) * len(self.outputs)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            return self.run(params, x, outs, shape, dt, work or Workspace(), exp)

    def run(self, params: Any, x: Any, outs: Any, shape: tuple[int, ...], dt: Any,
            work: Workspace, exp: Callable[..., Any]) -> tuple[Any, ...]:
        """:meth:`__call__` for a caller that knows the shape and dtype (no checks, and no
        ``np.errstate``: the caller sets it)."""
        w, m = work.get(shape, dt, self.n_work, self.n_mask)
        return self.fn(x, *params, *outs, shape, dt, w, m, exp)


class Workspace:
    """Work buffers of generated evaluations, kept for the next call of the same shape.

    Holds the buffers of the last few shapes (a batch's last block is often shorter). Not
    shared between threads: each evaluator holds its own.
    """

    def __init__(self, shapes: int = 4) -> None:
        self._bufs: dict[Any, tuple[list, list]] = {}
        self._shapes = shapes

    def get(self, shape: tuple[int, ...], dt: Any, nw: int, nm: int) -> tuple[list, list]:
        """At least ``nw`` float buffers and ``nm`` boolean ones of ``shape`` (C order)."""
        key = (shape, dt)
        got = self._bufs.pop(key, None)
        if got is None:
            got = ([], [])
            if len(self._bufs) >= self._shapes:
                self._bufs.pop(next(iter(self._bufs)))
        self._bufs[key] = got  # most recent last
        w, m = got
        while len(w) < nw:
            w.append(np.empty(shape, dtype=dt))
        while len(m) < nm:
            m.append(np.empty(shape, dtype=bool))
        return w, m


def _ones(v: Any) -> bool:
    """Whether multiplying by ``v`` changes nothing (all ones)."""
    try:
        return bool((v == 1).all())
    except AttributeError:  # a number
        return bool(v == 1)


def numpy_kernel(kind: TermKind, outputs: Any = None) -> NumpyKernel:
    """The NumPy evaluation of a term kind's ``outputs``, generated from its steps.

    The result computes what :func:`run_steps` computes (the same operations in the same order,
    so the same numbers) with common subexpressions evaluated once, one in-place ufunc per
    full-size operation (``out=``) into output arrays or reused work buffers, per-spectrum
    steps on their small arrays, and no per-step ``eval``. Cached per kind and outputs.

    Examples
    --------
    >>> import numpy as np
    >>> k = numpy_kernel(GAUSS, ("value", "d_a"))
    >>> v, da = k((np.array([[2.0]]), np.array([[0.0]]), np.array([[1.0]])),
    ...           np.array([0.0, 1.0]))
    >>> v.tolist(), da.tolist()
    ([[2.0, 0.7357588823428847]], [[1.0, 0.36787944117144233]])
    """
    outs = tuple(("value", *(f"d_{q}" for q in kind.params)) if outputs is None else outputs)
    return _numpy_kernel(kind.params, kind.steps, outs)


@functools.lru_cache(maxsize=256)
def _numpy_kernel(params: tuple[str, ...], steps: tuple[tuple[str, str], ...],
                  outputs: tuple[str, ...]) -> NumpyKernel:
    src, nw, nm = _generate(params, steps, outputs)
    ns = {"np": np, "_ones": _ones, "__builtins__": {}}
    exec(compile(src, "<numpy_kernel>", "exec"), ns)  # generated from the checked language
    return NumpyKernel(outputs, src, nw, nm, ns["_kernel"])


def _constant(text: str) -> bool:
    """Whether generated per-spectrum code is a number (uses no parameter or step)."""
    return re.search(r"\b[ps]_\w", text) is None


def _generate(params: tuple[str, ...], steps: tuple[tuple[str, str], ...],
              outputs: tuple[str, ...]) -> tuple[str, int, int]:
    """Source of ``_kernel(x, *params, *outs, shape, dt, w, m, exp)`` (see :func:`numpy_kernel`)."""
    needed = _needed(steps, frozenset(outputs))
    val: dict[str, tuple] = {q: ("s", f"p_{q}") for q in params}
    val["x"] = ("x",)
    ops: list[_Op] = []
    cse: dict[Any, int] = {}
    small: list[str] = []

    def op(fn: str, args: list, bool_: bool = False) -> tuple:
        key = (fn, tuple(tuple(a) for a in args))
        if key not in cse:
            cse[key] = len(ops)
            ops.append(_Op(fn, args, bool_))
        return ("b", cse[key])

    def low(nd: ast.expr) -> tuple:
        if isinstance(nd, ast.Constant):
            return ("s", repr(float(nd.value)))
        if isinstance(nd, ast.Name):
            return val[nd.id]
        if isinstance(nd, ast.UnaryOp):
            v = low(nd.operand)
            return ("s", f"(-{v[1]})") if v[0] == "s" else op("negative", [v])
        if isinstance(nd, ast.BinOp):
            a, b = low(nd.left), low(nd.right)
            if a[0] == b[0] == "s":
                return ("s", f"({a[1]} {_BINOPS[type(nd.op)]} {b[1]})")
            return op(_UFUNC[type(nd.op)], [a, b])
        if isinstance(nd, ast.Compare):
            a, b = low(nd.left), low(nd.comparators[0])
            if a[0] == b[0] == "s":
                return ("s", f"({a[1]} {_CMPOPS[type(nd.ops[0])]} {b[1]})")
            return op(_UFUNC[type(nd.ops[0])], [a, b], True)
        assert isinstance(nd, ast.Call) and isinstance(nd.func, ast.Name)
        args = [low(a) for a in nd.args]
        if all(a[0] == "s" for a in args):
            if nd.func.id == "exp":
                return ("s", f"exp({args[0][1]})")
            a1, a2 = (f"_c({a[1]})" if _constant(a[1]) else a[1] for a in args[1:])
            return ("s", f"np.where({args[0][1]}, {a1}, {a2})")
        return op(nd.func.id, args)

    maybe_one = set()  # per-spectrum steps that may well be all ones (a where of numbers)
    for nm, ex in needed:
        v = low(_parse(ex))
        if v[0] == "s" and not v[1].startswith("s_"):
            small.append(f"    s_{nm} = {v[1]}")
            v = ("s", f"s_{nm}")
            call = _parse(ex)
            if isinstance(call, ast.Call) and call.func.id == "where" and all(  # type: ignore
                    _constant(low(a)[1]) for a in call.args[1:]):
                maybe_one.add(f"s_{nm}")
        val[nm] = v
    # uses (an output is a use at the end)
    for i, o in enumerate(ops):
        for a in o.args:
            if a[0] == "b":
                ops[a[1]].uses += 1
                ops[a[1]].last = i
    fills = []  # outputs that are not the home of an operation: copied or returned at the end
    for j, nm in enumerate(outputs):
        v = val[nm]
        if v[0] == "b" and ops[v[1]].home is None and not ops[v[1]].bool_:
            ops[v[1]].home = ("o", j)
        else:
            fills.append((j, v))
        if v[0] == "b":
            ops[v[1]].last = len(ops)
    # an output's single-use operands are computed in the output array, in place
    for i in range(len(ops) - 1, -1, -1):
        o = ops[i]
        if o.home is None or o.home[0] != "o":
            continue
        cand = o.args[1:] if o.fn == "where" else o.args
        for a in cand:
            if a[0] == "b" and ops[a[1]].home is None and ops[a[1]].uses == 1 \
                    and not ops[a[1]].bool_:
                ops[a[1]].home = o.home
                break
    # work buffers, reused once their value is dead; in place when an operand dies here
    free: dict[bool, list[int]] = {False: [], True: []}
    count = {False: 0, True: 0}
    for i, o in enumerate(ops):
        if o.home is None:
            for a in (o.args[1:] if o.fn == "where" else o.args):
                if a[0] == "b":
                    src = ops[a[1]]
                    if src.last == i and src.home[0] in "wm" and src.bool_ == o.bool_:
                        o.home = src.home
                        break
        for a in o.args:  # operands dying here give their buffers back
            if a[0] == "b":
                src = ops[a[1]]
                if src.last == i and src.home[0] in "wm" and src.home != o.home \
                        and src.home[1] not in free[src.bool_]:
                    free[src.bool_].append(src.home[1])
        if o.home is None:
            if free[o.bool_]:
                o.home = ("m" if o.bool_ else "w", free[o.bool_].pop())
            else:
                o.home = ("m" if o.bool_ else "w", count[o.bool_])
                count[o.bool_] += 1
        if o.uses == 0 and o.last == -1 and o.home[0] in "wm":
            free[o.bool_].append(o.home[1])
    # a where computed in place over its first value needs the complement of its condition
    for o in ops:
        if o.fn == "where" and o.args[0][0] == "b":
            c = ops[o.args[0][1]]
            o.flip = _ref(ops, o.args[1]) == _home(o) and c.uses == 1 and c.fn in (
                "equal", "not_equal")
            if o.flip:
                c.flip = True

    def ref(a: tuple) -> str:
        return _ref(ops, a)

    body = []
    for j, nm in enumerate(outputs):
        v = val[nm]
        if v[0] != "s":
            body.append(f"    if o{j} is None:\n        o{j} = np.empty(shape, dtype=dt)")
    for o in ops:
        dst = _home(o)
        a = [ref(q) for q in o.args]
        if o.fn == "where":
            c, x1, x2 = a
            if x1 == dst:
                notc = c if o.flip else f"np.logical_not({c})"
                body.append(f"    np.copyto({dst}, {x2}, where={notc})")
            elif x2 == dst:
                body.append(f"    np.copyto({dst}, {x1}, where={c})")
            else:
                body.append(f"    np.copyto({dst}, {x2})")
                body.append(f"    np.copyto({dst}, {x1}, where={c})")
        elif o.fn == "exp":
            body.append(f"    exp({a[0]}, out={dst})")
        elif o.fn == "negative":
            body.append(f"    np.negative({a[0]}, out={dst})")
        else:
            fn = {"equal": "not_equal", "not_equal": "equal"}[o.fn] if o.flip else o.fn
            big = [q for q in a if q == dst]
            other = [q for q, s in zip(a, o.args) if s[0] == "s"]
            if fn in ("multiply", "divide") and big and other and (
                    fn == "multiply" or a[1] in other) and other[0] in maybe_one:
                body.append(f"    _t = {other[0]}\n    if not _ones(_t):\n"
                            f"        np.{fn}({a[0] if a[0] == dst else '_t'}, "
                            f"{a[1] if a[1] == dst else '_t'}, out={dst})")
            else:
                body.append(f"    np.{fn}({a[0]}, {a[1]}, out={dst})")
    ret = []
    for j, nm in enumerate(outputs):
        v = val[nm]
        if v[0] == "s":
            body.append(f"    if o{j} is not None:\n        o{j}[...] = {v[1]}\n"
                        f"    else:\n        o{j} = {v[1]}")
        elif (j, v) in fills:
            body.append(f"    np.copyto(o{j}, {ref(v)})")
        ret.append(f"o{j}")
    sig = ", ".join(["x", *(f"p_{q}" for q in params), *(f"o{j}" for j in range(len(outputs))),
                     "shape", "dt", "w", "m", "exp"])
    src = "\n".join([f"def _kernel({sig}):", "    _c = dt.type", *small, *body,
                     f"    return ({', '.join(ret)},)", ""])
    return src, count[False], count[True]


def _home(o: _Op) -> str:
    h = o.home
    return f"o{h[1]}" if h[0] == "o" else f"{h[0]}[{h[1]}]"


def _ref(ops: list[_Op], a: tuple) -> str:
    if a[0] == "s":
        return a[1]
    if a[0] == "x":
        return "x"
    return _home(ops[a[1]])


def term_values(x: Any, *params: Any, kind: TermKind = GAUSS) -> Any:
    """Values of terms of one kind, broadcasting ``x`` against the parameters.

    For peaks ``a, b, c`` of shape ``(k, j)`` and ``x`` of shape ``(M,)`` or ``(k, M)`` the
    result has shape ``(k, j, M)``; arrays of other shapes broadcast as NumPy does.

    Examples
    --------
    >>> import numpy as np
    >>> v = term_values(np.array([0.0, 1.0]), np.array([[2.0]]), np.array([[0.0]]),
    ...                 np.array([[1.0]]))
    >>> v.shape, float(v[0, 0, 1])  # 2 exp(-1)
    ((1, 1, 2), 0.7357588823428847)
    """
    xp = get_xp(x, *params)
    if getattr(x, "ndim", 0) == 1 and all(getattr(q, "ndim", 0) == 2 for q in params):
        xx = x[None, None, :]
        params = tuple(q[:, :, None] for q in params)
    elif getattr(x, "ndim", 0) == 2 and all(getattr(q, "ndim", 0) == 2 for q in params):
        xx = x[:, None, :]
        params = tuple(q[:, :, None] for q in params)
    else:
        xx = x
    if xp is np:
        return numpy_kernel(kind, ("value",))(params, xx)[0]
    env = dict(zip(kind.params, params))
    env["x"] = xx
    return run_steps(kind, env, xp, ("value",))["value"]


def parse_model_name(name: str) -> int:
    """Number of terms in a MATLAB library name such as ``'gauss4'``.

    Examples
    --------
    >>> parse_model_name('gauss4')
    4
    """
    s = str(name).strip().lower()
    if not s.startswith("gauss") or not s[5:].isdigit():
        raise InputError(f"unknown model {name!r}: expected 'gaussN' with N >= 1, e.g. 'gauss4'")
    n = int(s[5:])
    if n < 1:
        raise InputError(f"model {name!r} has no terms: N must be >= 1")
    return n


@dataclass(frozen=True)
class GaussianModel:
    """A sum of ``n`` Gaussian terms plus an optional baseline.

    Parameters
    ----------
    n : int
        Number of Gaussian terms (``n >= 1``; MATLAB's gauss1..gauss8 and beyond).
    baseline : {'none', 'constant', 'linear', 'quadratic', 'exponential'}
        Baseline term added to the peaks.

    Examples
    --------
    >>> import numpy as np
    >>> m = GaussianModel(2)
    >>> m.names
    ('a1', 'b1', 'c1', 'a2', 'b2', 'c2')
    >>> float(m(np.array([0.0]), [1.0, 0.0, 1.0, 2.0, 1.0, 1.0])[0])  # 1 + 2*exp(-1)
    1.7357588823428847
    """

    n: int
    baseline: str = "none"

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, (int, np.integer)):
            raise InputError(f"n must be an integer >= 1, got {self.n!r}")
        if self.n < 1:
            raise InputError(f"n must be >= 1 (number of Gaussian peaks), got {self.n}")
        object.__setattr__(self, "n", int(self.n))
        b = "none" if self.baseline is None else str(self.baseline).lower()
        if b not in BASELINES:
            raise InputError(
                f"unknown baseline {self.baseline!r}: choose one of {', '.join(BASELINES)}"
            )
        object.__setattr__(self, "baseline", b)

    # ----------------------------------------------------------------- names
    @property
    def peak(self) -> TermKind:
        """The peak term kind (:data:`GAUSS`)."""
        return GAUSS

    @property
    def baseline_kind(self) -> TermKind:
        """The baseline term kind (an entry of :data:`BASELINE_TERMS`)."""
        return BASELINE_TERMS[self.baseline]

    def _plan(self) -> _Plan:
        """The model's constants (sizes, columns, default bounds, remap code), cached."""
        plan = _PLANS.get((self.n, self.baseline))
        if plan is None:
            plan = self._make_plan()
            if plan.n_params <= 4096:  # small models only (a cache, not a store)
                if len(_PLANS) >= 256:
                    _PLANS.clear()
                _PLANS[(self.n, self.baseline)] = plan
        return plan

    def _make_plan(self) -> _Plan:
        pk, bk = self.peak, self.baseline_kind
        npk = len(pk.params)
        n3 = npk * self.n
        P = n3 + len(bk.params)
        cols = tuple([(pk, q, slice(i, n3, npk)) for i, q in enumerate(pk.params)]
                     + [(bk, q, n3 + i) for i, q in enumerate(bk.params)])
        lo = np.full(P, -np.inf)
        xpow, ypow = np.zeros(P), np.zeros(P)
        for kind, q, col in cols:
            lo[col] = kind.lower.get(q, -np.inf)
            xpow[col], ypow[col] = kind.units.get(q, (0, 0))
        for a in (lo, xpow, ypow):
            a.flags.writeable = False
        remap = {t: tuple((_code(getattr(kind, t).get(q, q)), col, kind is pk)
                          for kind, q, col in cols) for t in ("rescale", "unscale")}
        kernels = tuple(
            tuple(numpy_kernel(kind, ("value", *(tuple(f"d_{q}" for q in kind.params) if jac
                                                 else ())))
                  for kind in (pk, bk))
            for jac in (False, True))
        return _Plan(n3, P, cols, lo, xpow, ypow, remap, kernels)

    @property
    def n_peak_params(self) -> int:
        """``3*n``: the number of Gaussian coefficients."""
        return len(GAUSS.params) * self.n

    @property
    def baseline_names(self) -> tuple[str, ...]:
        """Names of the baseline coefficients."""
        return self.baseline_kind.params

    @property
    def n_params(self) -> int:
        """Total number of coefficients ``P``."""
        return len(GAUSS.params) * self.n + len(BASELINE_TERMS[self.baseline].params)

    @property
    def names(self) -> tuple[str, ...]:
        """Coefficient names in MATLAB order (``a1, b1, c1, a2, ...``, then baseline)."""
        peaks = tuple(f"{s}{i}" for i in range(1, self.n + 1) for s in self.peak.params)
        return peaks + self.baseline_names

    @property
    def matlab_name(self) -> str:
        """The model's name in MATLAB's display (``Gauss4``)."""
        base = f"Gauss{self.n}"
        return base if self.baseline == "none" else f"{base} with {self.baseline} baseline"

    def formula(self) -> str:
        """The formula text as MATLAB prints it after ``f(x) =``.

        For up to two terms it starts with one space; for more it starts with a newline and 14
        spaces and wraps after every second term, keeping ``' + '`` at the line end.
        """
        terms = [f.format(i=i) for i in range(1, self.n + 1) for f in self.peak.formula]
        terms += list(self.baseline_kind.formula)
        if len(terms) <= 2:
            return " " + " + ".join(terms)
        lines = [" + ".join(terms[i : i + 2]) for i in range(0, len(terms), 2)]
        pad = "\n" + " " * 14
        return pad + (" + " + pad).join(lines)

    def _columns(self) -> list[tuple[TermKind, str, Any]]:
        """``(kind, param, column index or slice)`` of every coefficient group."""
        return list(self._plan().columns)

    def default_lower(self) -> np.ndarray:
        """MATLAB's default lower bounds: ``[-Inf, -Inf, 0]`` per term, ``-Inf`` for baselines."""
        return self._plan().lower.copy()

    def default_upper(self) -> np.ndarray:
        """MATLAB's default upper bounds: all ``+Inf``."""
        return np.full(self.n_params, np.inf)

    # ------------------------------------------------------------ evaluation
    def split(self, p: Any) -> tuple[Any, Any, Any, Any]:
        """Views ``(a, b, c, baseline)`` of a parameter array ``(..., P)``."""
        k = 3 * self.n
        return p[..., 0:k:3], p[..., 1:k:3], p[..., 2:k:3], p[..., k:]

    def __call__(self, x: Any, p: Any) -> Any:
        """Evaluate the model for one parameter vector ``(P,)`` or a batch ``(k, P)``."""
        xp = get_xp(x, p)
        p = xp.asarray(p, dtype=float)
        x = xp.asarray(x, dtype=p.dtype)
        if p.ndim == 1:
            return self.evaluate(x, p[None, :])[0]
        return self.evaluate(x, p)

    def term_env(self, x: Any, p: Any, jacobian: bool = True,
                 exp: Callable[[Any], Any] | None = None) -> tuple[dict, dict]:
        """The evaluated steps of the peaks ``(k, n, m)`` and of the baseline ``(k, m)``.

        Each term kind's steps (:class:`TermKind`) run one by one with array broadcasting
        (:func:`run_steps`): the CuPy evaluation, and the readable reference that the generated
        NumPy kernels (:meth:`fill`) are tested against. ``exp`` replaces the exponential
        (e.g. :func:`exp_flushed`).
        """
        xp = get_xp(x, p)
        n3 = self.n_peak_params
        pk = self.peak
        npk = len(pk.params)
        env = {q: p[:, i:n3:npk][:, :, None] for i, q in enumerate(pk.params)}
        env["x"] = x[None, None, :] if x.ndim == 1 else x[:, None, :]
        bk = self.baseline_kind
        benv = {q: p[:, n3 + i : n3 + i + 1] for i, q in enumerate(bk.params)}
        benv["x"] = x[None, :] if x.ndim == 1 else x
        out = None if jacobian else ("value",)
        dt = np.result_type(p.dtype, x.dtype)
        return (run_steps(pk, env, xp, out, exp, dt), run_steps(bk, benv, xp, out, exp, dt))

    def evaluate(self, x: Any, p: Any, jacobian: bool = False) -> Any:
        """Batched model values, and optionally the transposed Jacobian.

        Parameters
        ----------
        x : array, shape (m,) or (k, m)
            Abscissae, shared or per spectrum.
        p : array, shape (k, P)
            Coefficients in MATLAB order.
        jacobian : bool
            Also return ``Jt`` of shape ``(k, P, m)`` with ``Jt[s, j, i] = df(x_i)/dp_j``.

        Returns
        -------
        f : array, shape (k, m)
        Jt : array, shape (k, P, m)
            Only when ``jacobian`` is true.

        Notes
        -----
        The values and derivatives are those of the term kinds (:data:`GAUSS`,
        :data:`BASELINE_TERMS`). A term with ``c == 0`` contributes 0 and has zero
        derivatives (MATLAB's guard). No host synchronisation on a GPU.
        """
        xp = get_xp(x, p)
        if xp is np:
            return self._evaluate_numpy(x, p, jacobian)
        env, benv = self.term_env(x, p, jacobian)
        f = env["value"].sum(axis=1) + benv["value"]
        if f.ndim == 1:
            f = xp.broadcast_to(f[:, None], (p.shape[0], x.shape[-1]))
        if not jacobian:
            return f
        Jt = xp.empty((p.shape[0], self.n_params, f.shape[-1]), dtype=f.dtype)
        for kind, q, col in self._columns():
            Jt[:, col, :] = (env if kind is self.peak else benv)["d_" + q]
        return f, Jt

    def _evaluate_numpy(self, x: Any, p: Any, jacobian: bool) -> Any:
        """:meth:`evaluate` on NumPy arrays: the generated kernels, derivatives written in place."""
        dt = np.result_type(p.dtype, x.dtype)
        if dt.kind != "f":
            dt = np.dtype(np.float64)
        k, m = p.shape[0], x.shape[-1]
        Jt = np.empty((k, self.n_params, m), dtype=dt) if jacobian else None
        f = np.empty((k, m), dtype=dt)
        self.fill(x, p, f, Jt)
        return (f, Jt) if jacobian else f

    def fill(self, x: Any, p: Any, f: Any, D: Any = None, *, grouped: bool = False,
             work: Workspace | None = None, exp: Callable[..., Any] = np.exp) -> None:
        """Write the model values at rows ``p`` (k, P) into ``f`` (k, m), derivatives into ``D``.

        NumPy only. The generated kernels of the term kinds (:func:`numpy_kernel`) write each
        derivative straight into its place in ``D``: shape ``(k, P, m)`` in MATLAB order
        (``Jt`` of :meth:`evaluate`), or with ``grouped=True`` shape ``(P, k, m)`` with the rows
        grouped by parameter (``a1..an, b1..bn, c1..cn``, then the baseline's; see
        :meth:`grouped_order`), where each output is one contiguous block, which NumPy's
        ufuncs run fastest. ``work`` keeps the work buffers of a caller that evaluates
        repeatedly; ``exp`` replaces the exponential (e.g. :func:`exp_flushed`).

        Examples
        --------
        >>> import numpy as np
        >>> m = GaussianModel(1, "constant")
        >>> x, p = np.array([0.0, 1.0]), np.array([[2.0, 0.0, 1.0, 0.5]])
        >>> f, D = np.empty((1, 2)), np.empty((4, 1, 2))
        >>> m.fill(x, p, f, D, grouped=True)
        >>> f.round(6).tolist(), D[:, 0, 1].round(6).tolist()  # d/d(a, b, c, d0) at x = 1
        ([[2.5, 1.235759]], [0.367879, 1.471518, 1.471518, 1.0])
        """
        pk, bk, n3, n = self.peak, self.baseline_kind, self.n_peak_params, self.n
        npk, nb = len(pk.params), len(bk.params)
        kp, kb = self._plan().kernels[D is not None]
        k, m = p.shape[0], x.shape[-1]
        dt = f.dtype
        work = Workspace() if work is None else work
        if D is None:
            outs: tuple = ()
        elif grouped:
            outs = tuple(D[i * n:(i + 1) * n] for i in range(npk))
        else:
            outs = tuple(D[:, i:n3:npk].transpose(1, 0, 2) for i in range(npk))
        # peaks in shape (n, k, m): the values and each derivative contiguous
        prm = tuple(p[:, i:n3:npk].T[:, :, None] for i in range(npk))
        xx = x[None, None, :] if x.ndim == 1 else x[None, :, :]
        v = work.get((n, k, m), dt, kp.n_work + 1, kp.n_mask)[0][kp.n_work]  # the values
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            kp.run(prm, xx, (v, *outs), (n, k, m), dt, work, exp)
            np.sum(v, axis=0, out=f)
            prm = tuple(p[:, n3 + i : n3 + i + 1] for i in range(nb))
            xb = x[None, :] if x.ndim == 1 else x
            outs = () if D is None else tuple(D[n3 + i] if grouped else D[:, n3 + i]
                                              for i in range(nb))
            v = kb.run(prm, xb, (None, *outs), (k, m), dt, work, exp)[0]
            if not (type(v) is float and v == 0):  # no baseline: nothing to add
                f += v

    def grouped_order(self) -> np.ndarray:
        """``order[j]``: the row of coefficient ``j`` (MATLAB order) in :meth:`fill`'s grouped
        layout."""
        npk, n = len(self.peak.params), self.n
        return np.array([(j % npk) * n + j // npk for j in range(self.n_peak_params)]
                        + list(range(self.n_peak_params, self.n_params)))

    def component(self, i: int, x: Any, p: Any) -> Any:
        """The ``i``-th peak (0-based) alone at ``x`` for coefficients ``p`` (``(P,)``)."""
        npk = len(self.peak.params)
        q = [np.asarray(v, dtype=float) for v in p[npk * i : npk * (i + 1)]]
        return term_values(np.asarray(x, dtype=float), *q, kind=self.peak)

    # ------------------------------------------------------- reparameterising
    def _remap(self, p: Any, table: str, x0: Any, sx: Any, sy: Any) -> Any:
        xp = get_xp(p)
        out = p.copy()
        n3 = self.n_peak_params
        pk, bk = self.peak, self.baseline_kind
        npk = len(pk.params)
        env = {q: p[..., i:n3:npk] for i, q in enumerate(pk.params)}
        env.update(x0=x0, sx=sx, sy=sy)
        x0r, sxr, syr = _per_row(p, x0, sx, sy)
        benv = {q: p[..., n3 + i] for i, q in enumerate(bk.params)}
        benv.update(x0=x0r, sx=sxr, sy=syr)
        ns = _namespace(xp)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            for code, col, is_peak in self._plan().remap[table]:
                out[..., col] = eval(code, ns, env if is_peak else benv)
        return out

    def rescale(self, p: Any, x0: float, sx: float, sy: float) -> Any:
        """Coefficients for ``x' = (x - x0)/sx``, ``y' = y/sy`` from those for ``x``, ``y``.

        The map is exact (the model is invariant under it) and is inverted by
        :meth:`unscale`. Polynomial baselines with ``x0 != 0`` mix their coefficients, so callers
        shift (``x0 != 0``) only when baseline bounds are infinite.
        """
        return self._remap(p, "rescale", x0, sx, sy)

    def unscale(self, p: Any, x0: float, sx: float, sy: float) -> Any:
        """Inverse of :meth:`rescale`."""
        return self._remap(p, "unscale", x0, sx, sy)

    def unscale_jacobian(self, p: Any, x0: Any, sx: Any, sy: Any) -> Any:
        """``∂p/∂p'`` of :meth:`unscale` at scaled rows ``p`` (k, P): shape (k, P, P).

        Used to carry a covariance from the scaled problem back to the caller's units.
        """
        xp = get_xp(p)
        k, P = p.shape
        x0, sx, sy = (xp.broadcast_to(xp.asarray(v, dtype=float).reshape(-1), (k,))
                      for v in (x0, sx, sy))
        T = xp.zeros((k, P, P))
        ns = _namespace(xp)
        n3 = self.n_peak_params
        groups = [(self.peak, o) for o in range(0, n3, len(self.peak.params))]
        groups.append((self.baseline_kind, n3))
        for kind, off in groups:
            env = {q: p[:, off + i] for i, q in enumerate(kind.params)}
            env.update(x0=x0, sx=sx, sy=sy)
            for (qo, qi), expr in kind.unscale_jacobian.items():
                T[:, off + kind.params.index(qo), off + kind.params.index(qi)] = eval(
                    _code(expr), ns, dict(env))  # the checked term language
        return T

    def bound_scale(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-coefficient ``(x-power, y-power)`` for mapping bounds with scale-only rescaling.

        With ``x0 = 0`` every coefficient maps as ``p' = p * sx**xpow / sy**ypow``.
        """
        plan = self._plan()
        return plan.xpow.copy(), plan.ypow.copy()

    def sort_peaks(self, p: Any) -> tuple[Any, Any]:
        """Reorder the terms of ``p`` (``(P,)`` or ``(k, P)``) by ascending centre ``b``.

        Returns the reordered parameters and the permutation of terms (``(n,)`` or ``(k, n)``).
        The model value is unchanged.
        """
        xp = get_xp(p)
        squeeze = p.ndim == 1
        P = p[None, :] if squeeze else p
        k3 = 3 * self.n
        terms = P[:, :k3].reshape(P.shape[0], self.n, 3)
        order = xp.argsort(terms[:, :, 1], axis=1, kind="stable") if xp is np else xp.argsort(
            terms[:, :, 1], axis=1
        )
        terms = xp.take_along_axis(terms, order[:, :, None], axis=1)
        out = P.copy()
        out[:, :k3] = terms.reshape(P.shape[0], k3)
        if squeeze:
            return out[0], order[0]
        return out, order


def _per_row(p: Any, *scalings: Any) -> tuple[Any, ...]:
    """Scalings of shape ``(k, 1)`` as ``(k,)`` so they broadcast with a column ``p[..., j]``."""
    out = []
    for s in scalings:
        nd = getattr(s, "ndim", 0)
        out.append(s[..., 0] if nd == p.ndim and nd > 0 else s)
    return tuple(out)


def gauss_model(name_or_n: str | int, baseline: str = "none") -> GaussianModel:
    """Build a :class:`GaussianModel` from ``'gaussN'`` or an integer ``N``.

    Examples
    --------
    >>> gauss_model('gauss3').n_params
    9
    """
    n = parse_model_name(name_or_n) if isinstance(name_or_n, str) else name_or_n
    return GaussianModel(n, baseline)
