"""Generated CUDA source of the fused normal-equations kernel, and its CuPy evaluator.

One kernel evaluates, for a set of spectra, the weighted sum of squares ``S``, the normal matrix
``A = JᵀWJ`` and the gradient ``g = JᵀWr`` of the gaussN model (plus baseline) at given
coefficients. Model, residual and Jacobian are computed point by point and folded into the sums
at once, in registers: the Jacobian never exists in GPU memory, and a spectrum costs one read of
its data per evaluation. Only ``S`` (1), ``g`` (P) and ``A`` (P x P, from its P(P+1)/2 unique
accumulators) are written.

Design
------
* **One thread per spectrum, points-major layout.** Thread ``s`` walks the ``m`` points of
  spectrum ``idx[s]``; data are read as ``Y[i * ld + col]`` so that the 32 threads of a warp read
  32 consecutive words for each point (coalesced). The driver transposes each chunk once on the
  device (``(m, k)`` copy, no host round trip) and re-packs it when most rows have finished, so
  reads stay coalesced as the active set shrinks. Row-major data can also be read directly
  (``layout='rows'``, strides are kernel arguments) at the cost of uncoalesced loads.
* **Registers: the rows of A split across warps.** The accumulators are generated as scalar
  variables (``A_0_0``, ``A_0_1``, ...), not arrays, so that they live in registers. As one
  thread cannot hold all P(P+1)/2 of them from about P = 12, the rows of ``A`` (and of ``g``)
  are split into contiguous slices of balanced register cost (:func:`row_slices`); each slice
  is a non-inlined device function run by its own warp (warp ``w`` of a block serves the 32
  spectra of group ``w // T`` and the slice ``w % T``: uniform within a warp, coalesced
  reads). Each warp evaluates the model and the Jacobian columns it needs; the price is the
  repeated evaluation, the gain at most 128 registers a thread for n <= 4 in float32.
* **Generated from the model.** The source is produced in a loop over the terms of a
  :class:`~peakfit.models.GaussianModel` and over its baseline (any ``n``, every baseline),
  compiled at run time by NVRTC through ``cupy.RawKernel`` and cached per
  ``(n, baseline, dtype, layout of x and weights)``; no build step.
* **Precision.** ``REAL`` (float or double) is the type of the data, the model and ``A``;
  ``S`` and ``g`` are returned from double sums. In float32 the normal matrix only shapes the
  step (its rounding changes the path, not the minimum), while ``g`` defines the stationary
  point and ``S`` drives the gain ratio and the ``TolFun`` test: both are summed in float over
  blocks of :data:`POINT_BLOCK` points (``S`` with Kahan compensation) and the block sums are
  added in double, so no double arithmetic runs per point. Float32 uses the fast ``__expf``
  by default.
* **Testable on the CPU.** The per-spectrum routine is plain C behind a few macros
  (``PF_DEVICE``, ``PF_EXP``); with ``-DPF_HOST`` (no CUDA) the same text compiles with any C
  compiler into a host loop ``<name>_host``, which the test-suite compares with
  :class:`peakfit.solvers.lm.NormalEquations`.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..models import GaussianModel, render

__all__ = [
    "FusedNormalEquations",
    "generate_residual_source",
    "generate_source",
    "generate_values_source",
    "get_kernel",
    "get_residual_kernel",
    "get_values_kernel",
    "kernel_name",
    "launch_shape",
    "residual",
    "residual_kernel_name",
    "row_slices",
    "term_values",
    "values_kernel_name",
]

_C_TYPES = {"float64": "double", "float32": "float"}

#: Points per float32 block of the ``S`` and ``g`` sums (float within a block, double across).
POINT_BLOCK = 32

#: Accumulator registers one thread may hold (per dtype), from which :func:`row_slices`
#: decides how many warps share a spectrum's normal matrix; tuned with ``ptxas`` so that the
#: kernels stay within issue #16's budget (tests/test_gpu_compile.py).
ACCUMULATOR_BUDGET = {"float32": 56, "float64": 100}


def _row_cost(P: int, r: int, dtype: str) -> int:
    """Registers that row ``r``'s sums hold: ``A[r, r:]`` and ``g[r]``."""
    if dtype == "float32":
        return (P - r) + 3  # A in float, g in double plus its float block sum
    return 2 * (P - r) + 2


def _pack_rows(cost: list[int], cap: int) -> list[list[int]]:
    """Contiguous rows packed greedily into slices of total cost <= cap (one row at least)."""
    out: list[list[int]] = [[]]
    run = 0
    for r, c in enumerate(cost):
        if out[-1] and run + c > cap:
            out.append([])
            run = 0
        out[-1].append(r)
        run += c
    return out


def row_slices(model: GaussianModel, dtype: str) -> list[list[int]]:
    """Rows of ``A = JᵀWJ`` (and of ``g``) owned by each warp slice of a spectrum.

    One thread holding all ``P(P+1)/2`` sums of ``A`` does not fit the register file from
    about ``P = 12`` (float32). The rows are split into the fewest contiguous slices whose
    accumulators fit :data:`ACCUMULATOR_BUDGET`; each slice is served by its own warp (the
    branch is uniform within a warp), which evaluates the model and the Jacobian columns from
    its first row on. Slice 0 also accumulates ``S``.

    Examples
    --------
    >>> row_slices(GaussianModel(2), 'float32')
    [[0, 1, 2, 3, 4, 5]]
    >>> [s[0] for s in row_slices(GaussianModel(4, 'quadratic'), 'float32')]  # first rows
    [0, 2, 5, 9]
    """
    dt = np.dtype(dtype).name
    P = model.n_params
    cost = [_row_cost(P, r, dt) for r in range(P)]
    T = len(_pack_rows(cost, ACCUMULATOR_BUDGET[dt]))
    # the same number of slices, balanced: the smallest cap that still packs into T
    lo, hi = max(cost), sum(cost)
    while lo < hi:
        mid = (lo + hi) // 2
        if len(_pack_rows(cost, mid)) <= T:
            hi = mid
        else:
            lo = mid + 1
    return _pack_rows(cost, lo)


def kernel_name(model: GaussianModel, dtype: str, x_per_row: bool, weights: str) -> str:
    """Name of the generated kernel for a configuration."""
    return (f"pf_normal_n{model.n}_{model.baseline}_{np.dtype(dtype).name}"
            f"_x{'row' if x_per_row else 'shared'}_w{weights}")


def _c_names(j: int) -> Any:
    """Variable names in the C source of term ``j``'s quantities (``x`` is the point)."""
    return lambda s: "xv" if s == "x" else f"t{j}_{s}"


def generate_source(
    model: GaussianModel,
    dtype: str = "float64",
    *,
    x_per_row: bool = False,
    weights: str = "none",
    fast_exp: bool | None = None,
) -> str:
    """CUDA C source (also valid C99 with ``-DPF_HOST``) of the fused normal-equations kernel.

    Parameters
    ----------
    model : GaussianModel
        ``n`` and baseline; the terms are generated in a loop over ``model``.
    dtype : {'float64', 'float32'}
        Type of data, model values and ``A`` (``S`` is returned in double).
    x_per_row : bool
        x has one row per spectrum (else one shared vector).
    weights : {'none', 'shared', 'row'}
        No weights, one shared vector of sqrt-weights, or one per spectrum.
    fast_exp : bool, optional
        Use CUDA's ``__expf`` for float32 (default True for float32). Host builds always use
        the C library.

    Returns
    -------
    str
        Source defining ``PF_DEVICE void <name>_slice<t>(...)`` (one spectrum, the rows of
        slice ``t``), the kernel
        ``extern "C" __global__ void <name>(...)`` under CUDA, and ``void <name>_host(...)``
        (a loop over spectra) under ``PF_HOST``.

    Examples
    --------
    >>> src = generate_source(GaussianModel(2, 'linear'))
    >>> 'pf_normal_n2_linear_float64_xshared_wnone' in src and src.count('A_') > 36
    True
    """
    dt, fast_exp = _precision(dtype, fast_exp)
    if weights not in ("none", "shared", "row"):
        raise ValueError(f"weights must be 'none', 'shared' or 'row', got {weights!r}")
    name = kernel_name(model, dt, x_per_row, weights)
    n = model.n
    P = model.n_params
    n3 = 3 * n
    slices = row_slices(model, dt)
    T = len(slices)
    blocked = dt == "float32"
    L: list[str] = []
    w = L.append
    w(f"/* generated by peakfit.gpu.kernels for {model.matlab_name}, {dt}: {T} warp slice(s) "
      f"of the rows of A, rows {[(s[0], s[-1]) for s in slices]} */")
    _header(w, dt, fast_exp,
            ("#define PF_DEVICE __device__ __noinline__", "#define PF_RESTRICT __restrict__",
             '#define PF_NO_UNROLL _Pragma("unroll 1")'),
            ("#define PF_DEVICE static inline", "#define PF_RESTRICT restrict",
             "#define PF_NO_UNROLL"))
    w(f"#define PF_SLICES {T}")
    if blocked:
        w(f"#define PF_POINT_BLOCK {POINT_BLOCK}")
    w("")
    # the terms: each kind's steps (models.TermKind), per spectrum before the point loop and
    # per point inside it; term j's names get the prefix t<j>_
    instances = [(model.peak, j, len(model.peak.params) * j)
                 for j in range(n)]
    instances.append((model.baseline_kind, n, n3))
    # ------------------------------------------------------------------ per-slice routines
    for t, rows in enumerate(slices):
        lo = rows[0]
        w(f"PF_DEVICE void {name}_slice{t}(")
        w("    int m, const pf_real* PF_RESTRICT x, pf_index x_step,")
        w("    const pf_real* PF_RESTRICT y, pf_index y_step,")
        w("    const pf_real* PF_RESTRICT sw, pf_index w_step,")
        w("    const pf_real* PF_RESTRICT p,")
        w("    double* PF_RESTRICT sse_out, pf_real* PF_RESTRICT A_out, "
          "pf_real* PF_RESTRICT g_out)")
        w("{")
        for kind, j, off in instances:
            var = _c_names(j)
            for i, q in enumerate(kind.params):
                w(f"    const pf_real {var(q)} = p[{off + i}];")
            pp = kind.per_point()
            for nm, ex in kind.steps:
                if nm not in pp:
                    w(f"    const pf_real {var(nm)} = {render(ex, 'c', var)};")
        for r in rows:
            for c in range(r, P):
                w(f"    pf_real A_{r}_{c} = 0;")
        for r in rows:
            w(f"    double g_{r} = 0;")
        if t == 0:
            w("    double s = 0;")
        ind = "        "
        if blocked:
            # fp32: the sums of g and S run in float over blocks of PF_POINT_BLOCK points
            # and are added to double once a block (no double arithmetic per point)
            w("    for (int i0 = 0; i0 < m; i0 += PF_POINT_BLOCK) {")
            w("        const int i1 = m - i0 < PF_POINT_BLOCK ? m : i0 + PF_POINT_BLOCK;")
            for r in rows:
                w(f"        pf_real gb_{r} = 0;")
            if t == 0:
                w("        pf_real sb = 0, sc = 0;")
            w("        PF_NO_UNROLL")
            w("        for (int i = i0; i < i1; ++i) {")
            ind = "            "
        else:
            w("    PF_NO_UNROLL")
            w("    for (int i = 0; i < m; ++i) {")
        w(f"{ind}const pf_real xv = x[i * x_step];")
        w(f"{ind}const pf_real yv = y[i * y_step];")
        w(f"{ind}pf_real f = 0;")
        for kind, j, off in instances:
            var = _c_names(j)
            pp = kind.per_point()
            for nm, ex in kind.steps:
                if nm in pp:
                    w(f"{ind}const pf_real {var(nm)} = {render(ex, 'c', var)};")
            if kind.params:
                w(f"{ind}f += {var('value')};")
            for i, q in enumerate(kind.params):
                if off + i >= lo:
                    w(f"{ind}pf_real J{off + i} = {var('d_' + q)};")
        w(f"{ind}pf_real r = yv - f;")
        if weights != "none":
            w(f"{ind}const pf_real wv = sw[i * w_step];")
            w(f"{ind}r *= wv;")
            for j in range(lo, P):
                w(f"{ind}J{j} *= wv;")
        gacc = "gb_" if blocked else "g_"
        if t == 0:
            if blocked:  # compensated (Kahan): S decides the gain ratio and TolFun
                w(f"{ind}const pf_real sy = r * r - sc;")
                w(f"{ind}const pf_real st = sb + sy;")
                w(f"{ind}sc = (st - sb) - sy;")
                w(f"{ind}sb = st;")
            else:
                w(f"{ind}s += r * r;")
        for r in rows:
            w(f"{ind}{gacc}{r} += J{r} * r;")
        for r in rows:
            for c in range(r, P):
                w(f"{ind}A_{r}_{c} += J{r} * J{c};")
        if blocked:
            w("        }")
            if t == 0:
                w("        s += (double)sb - (double)sc;")
            for r in rows:
                w(f"        g_{r} += gb_{r};")
        w("    }")
        if t == 0:
            w("    *sse_out = s;")
        for r in rows:
            w(f"    g_out[{r}] = (pf_real)g_{r};")
        for r in rows:
            w(f"    A_out[{r * P + r}] = A_{r}_{r};")
            for c in range(r + 1, P):
                w(f"    A_out[{r * P + c}] = A_{r}_{c};")
                w(f"    A_out[{c * P + r}] = A_{r}_{c};")
        w("}")
        w("")
    # ------------------------------------------------------------------ drivers
    args = ("const long long* PF_RESTRICT cols, int nrows, int m,\n"
            "    const pf_real* x, pf_index x_row, pf_index x_step,\n"
            "    const pf_real* y, pf_index y_row, pf_index y_step,\n"
            "    const pf_real* sw, pf_index w_row, pf_index w_step,\n"
            "    const pf_real* p, double* sse, pf_real* A, pf_real* g")
    call = (f"(m, x + c * x_row, x_step, y + c * y_row, y_step,\n"
            f"            sw + c * w_row, w_step, p + (long long)s * {P}, sse + s,\n"
            f"            A + (long long)s * {P * P}, g + (long long)s * {P});")
    w("#if defined(__CUDACC__) || defined(__CUDACC_RTC__)")
    w("/* blockDim.x is a multiple of 32 * PF_SLICES: warp w of a block serves the 32 spectra")
    w("   of warp group w / PF_SLICES and owns the rows of slice w % PF_SLICES (warp-uniform) */")
    w(f'extern "C" __global__ void {name}(\n    {args})')
    w("{")
    w("    const int warp = threadIdx.x >> 5;")
    w("    const int s = blockIdx.x * (blockDim.x / PF_SLICES)"
      " + (warp / PF_SLICES) * 32 + (threadIdx.x & 31);")
    w("    if (s >= nrows) return;")
    w("    const long long c = cols[s];")
    w("    switch (warp % PF_SLICES) {")
    for t in range(T):
        w(f"    case {t}: {name}_slice{t}{call} break;")
    w("    }")
    w("}")
    w("#else")
    w(f"void {name}_host(\n    {args})")
    w("{")
    w("    for (int s = 0; s < nrows; ++s) {")
    w("        const long long c = cols[s];")
    for t in range(T):
        w(f"        {name}_slice{t}{call}")
    w("    }")
    w("}")
    w("#endif")
    return "\n".join(L) + "\n"


def launch_shape(nrows: int, slices: int, block: int = 128) -> tuple[tuple[int], tuple[int]]:
    """``(grid, block)`` of the kernel for ``nrows`` spectra split in ``slices`` warps each.

    A block holds ``max(1, block // (32 * slices))`` groups of 32 spectra; each group has one
    warp per slice, so a block has a multiple of ``32 * slices`` threads.

    Examples
    --------
    >>> launch_shape(1000, 1)
    ((8,), (128,))
    >>> launch_shape(1000, 3)
    ((32,), (96,))
    """
    groups = max(1, int(block) // (32 * slices))
    per_block = 32 * groups
    return ((nrows + per_block - 1) // per_block,), (per_block * slices,)


def residual_kernel_name(model: GaussianModel, dtype: str, x_per_row: bool) -> str:
    """Name of the generated residual kernel for a configuration."""
    return (f"pf_resid_n{model.n}_{model.baseline}_{np.dtype(dtype).name}"
            f"_x{'row' if x_per_row else 'shared'}")


def generate_residual_source(model: GaussianModel, dtype: str = "float64", *,
                             x_per_row: bool = False, fast_exp: bool | None = None) -> str:
    """CUDA C source (also C99 with ``-DPF_HOST``) of the residual kernel ``r = y - f(x; p)``.

    One thread per point of every spectrum (rows of ``y`` (k, m), C order: coalesced reads and
    writes); each evaluates the model's terms at its point from the same term steps as the
    normal-equations kernel (:func:`generate_source`), only those the values need. On a GPU
    this replaces the CuPy operations of every step of every term (each a pass over a
    ``(k, n, m)`` array) by one read of ``y`` and one write of ``r``.

    Examples
    --------
    >>> src = generate_residual_source(GaussianModel(1))
    >>> 'pf_resid_n1_none_float64_xshared_host' in src and 'd_b' not in src
    True
    """
    dt, fast_exp = _precision(dtype, fast_exp)
    name = residual_kernel_name(model, dt, x_per_row)
    P = model.n_params
    L: list[str] = []
    w = L.append
    _inline_header(w, dt, fast_exp)
    w(f"/* generated by peakfit.gpu.kernels: r = y - f(x; p) for {model.matlab_name}, {dt} */")
    args = ("pf_index total, int m, const pf_real* x, pf_index x_row,\n"
            "    const pf_real* y, const pf_real* p, pf_real* r")
    w(f"PF_INLINE void {name}_point(pf_index e, {args})")
    w("{")
    w("    const pf_index s = e / m;")
    w("    const pf_index i = e - s * m;")
    w(f"    const pf_real* ps = p + s * {P};")
    w("    const pf_real xv = x[s * x_row + i];")
    w("    pf_real f = 0;")
    instances = [(model.peak, j, 3 * j) for j in range(model.n)]
    instances.append((model.baseline_kind, model.n, 3 * model.n))
    for kind, j, off in instances:
        if not kind.params:
            continue
        var = _c_names(j)
        for i, q in enumerate(kind.params):
            w(f"    const pf_real {var(q)} = ps[{off + i}];")
        for nm, ex in kind.needed(("value",)):
            w(f"    const pf_real {var(nm)} = {render(ex, 'c', var)};")
        w(f"    f += {var('value')};")
    w("    r[e] = y[e] - f;")
    w("}")
    w("")
    call = "(e, total, m, x, x_row, y, p, r);"
    _elementwise_drivers(w, name, args, call)
    return "\n".join(L) + "\n"


def generate_values_source(kind: Any = None, dtype: str = "float64", *,
                           x_per_row: bool = False, fast_exp: bool | None = None) -> str:
    """CUDA C source (also C99 with ``-DPF_HOST``) of the term-values kernel: the values
    ``v[s, j, i]`` of terms of one kind (:class:`peakfit.models.TermKind`, default the peak
    term) with parameters ``(k, j)`` each, at ``x`` (m,) or (k, m), as
    :func:`peakfit.models.term_values` gives them; one thread per value, from the kind's
    steps (only those ``value`` needs), instead of a CuPy operation per step.

    Examples
    --------
    >>> src = generate_values_source()
    >>> 'pf_values_gauss_float64_xshared_host' in src and 'PF_EXP' in src
    True
    """
    from ..models import GAUSS

    kind = GAUSS if kind is None else kind
    dt, fast_exp = _precision(dtype, fast_exp)
    name = values_kernel_name(kind, dt, x_per_row)
    L: list[str] = []
    w = L.append
    _inline_header(w, dt, fast_exp)
    w(f"/* generated by peakfit.gpu.kernels: values of {kind.name} terms, {dt} */")
    ptrs = ", ".join(f"const pf_real* {q}" for q in kind.params)
    args = (f"pf_index total, int nt, int m, const pf_real* x, pf_index x_row,\n"
            f"    {ptrs}, pf_real* v")
    w(f"PF_INLINE void {name}_point(pf_index e, {args})")
    w("{")
    w("    const pf_index st = e / m;  /* (spectrum, term) */")
    w("    const pf_index i = e - st * m;")
    w("    const pf_index s = st / nt;")
    w("    const pf_real xv = x[s * x_row + i];")
    var = _c_names(0)
    for q in kind.params:
        w(f"    const pf_real {var(q)} = {q}[st];")
    for nm, ex in kind.needed(("value",)):
        w(f"    const pf_real {var(nm)} = {render(ex, 'c', var)};")
    w(f"    v[e] = {var('value')};")
    w("}")
    w("")
    call = f"(e, total, nt, m, x, x_row, {', '.join(kind.params)}, v);"
    _elementwise_drivers(w, name, args, call)
    return "\n".join(L) + "\n"


def values_kernel_name(kind: Any, dtype: str, x_per_row: bool) -> str:
    """Name of the generated term-values kernel for a configuration."""
    return f"pf_values_{kind.name}_{np.dtype(dtype).name}_x{'row' if x_per_row else 'shared'}"


def _precision(dtype: Any, fast_exp: bool | None) -> tuple[str, bool]:
    """The dtype's name (float64 or float32) and whether CUDA's ``__expf`` is used (default:
    in float32)."""
    dt = np.dtype(dtype).name
    if dt not in _C_TYPES:
        raise ValueError(f"dtype must be float64 or float32, got {dtype!r}")
    return dt, (dt == "float32") if fast_exp is None else bool(fast_exp)


def _header(w: Any, dt: str, fast_exp: bool, cuda: tuple[str, ...],
            host: tuple[str, ...]) -> None:
    """The macros (``cuda`` under NVRTC, ``host`` in C99, ``PF_EXP`` in both) and the types
    of a generated source."""
    w("#if defined(__CUDACC__) || defined(__CUDACC_RTC__)")
    for line in cuda:
        w(line)
    if dt == "float32":
        w("#define PF_EXP(v) " + ("__expf(v)" if fast_exp else "expf(v)"))
    else:
        w("#define PF_EXP(v) exp(v)")
    w("#else")
    w("#include <math.h>")
    for line in host:
        w(line)
    w("#define PF_EXP(v) " + ("expf(v)" if dt == "float32" else "exp(v)"))
    w("#endif")
    w(f"typedef {_C_TYPES[dt]} pf_real;")
    w("typedef long long pf_index;")


def _inline_header(w: Any, dt: str, fast_exp: bool) -> None:
    """The macros and types of the element-wise kernels (CUDA or host C)."""
    _header(w, dt, fast_exp, ("#define PF_INLINE __device__ __forceinline__",),
            ("#define PF_INLINE static inline",))
    w("")


def _elementwise_drivers(w: Any, name: str, args: str, call: str) -> None:
    """The kernel (one thread per element ``e < total``) and its host loop."""
    w("#if defined(__CUDACC__) || defined(__CUDACC_RTC__)")
    w(f'extern "C" __global__ void {name}({args})')
    w("{")
    w("    const pf_index e = (pf_index)blockIdx.x * blockDim.x + threadIdx.x;")
    w(f"    if (e < total) {name}_point{call}")
    w("}")
    w("#else")
    w(f"void {name}_host({args})")
    w("{")
    w(f"    for (pf_index e = 0; e < total; ++e) {name}_point{call}")
    w("}")
    w("#endif")


def _kind(name: str) -> Any:
    """The term kind called ``name`` (the peak's or a baseline's)."""
    from ..models import BASELINE_TERMS, GAUSS

    return next(k for k in (GAUSS, *BASELINE_TERMS.values()) if k.name == name)


@functools.lru_cache(maxsize=64)
def get_values_kernel(kind_name: str, dtype: str, x_per_row: bool) -> Any:
    """The compiled ``cupy.RawKernel`` of :func:`generate_values_source` for the term kind
    called ``kind_name`` (cached)."""
    import cupy

    kind = _kind(kind_name)
    src = generate_values_source(kind, dtype, x_per_row=x_per_row)
    return cupy.RawKernel(src, values_kernel_name(kind, np.dtype(dtype).name, x_per_row),
                          options=("--std=c++14",))


def term_values(x: Any, *params: Any, kind: Any = None, block: int = 256) -> Any:
    """:func:`peakfit.models.term_values` for CuPy arrays ``x`` (m,) or (k, m) and parameters
    (k, j) each: the (k, j, m) values in one launch of the generated term-values kernel."""
    import cupy as cp

    from ..models import GAUSS

    kind = GAUSS if kind is None else kind
    dt = np.dtype(np.result_type(x.dtype, *(q.dtype for q in params)))
    k, nt = (int(v) for v in params[0].shape)
    m = int(x.shape[-1])
    x = cp.ascontiguousarray(cp.asarray(x, dtype=dt))
    ps = tuple(cp.ascontiguousarray(cp.broadcast_to(cp.asarray(q, dtype=dt), (k, nt)))
               for q in params)
    v = cp.empty((k, nt, m), dtype=dt)
    total = k * nt * m
    if total:
        kern = get_values_kernel(kind.name, dt.name, x.ndim == 2)
        kern(((total + block - 1) // block,), (block,),
             (np.int64(total), np.int32(nt), np.int32(m), x,
              np.int64(m if x.ndim == 2 else 0), *ps, v))
    return v


@functools.lru_cache(maxsize=64)
def get_residual_kernel(model: GaussianModel, dtype: str, x_per_row: bool) -> Any:
    """The compiled ``cupy.RawKernel`` of :func:`generate_residual_source` (cached)."""
    import cupy

    src = generate_residual_source(model, dtype, x_per_row=x_per_row)
    return cupy.RawKernel(src, residual_kernel_name(model, np.dtype(dtype).name, x_per_row),
                          options=("--std=c++14",))


def residual(model: GaussianModel, x: Any, Y: Any, p: Any, *, block: int = 256) -> Any:
    """``Y - model(x, p)`` for CuPy arrays ``Y`` (k, m), ``x`` (m,) or (k, m), ``p`` (k, P),
    in one launch of the generated residual kernel (the working precision of ``Y``)."""
    import cupy as cp

    dt = np.dtype(Y.dtype)
    k, m = (int(v) for v in Y.shape)
    Y = cp.ascontiguousarray(Y)
    x = cp.ascontiguousarray(cp.asarray(x, dtype=dt))
    p = cp.ascontiguousarray(cp.asarray(p, dtype=dt))
    r = cp.empty((k, m), dtype=dt)
    total = k * m
    if total:
        kern = get_residual_kernel(model, dt.name, x.ndim == 2)
        kern(((total + block - 1) // block,), (block,),
             (np.int64(total), np.int32(m), x, np.int64(m if x.ndim == 2 else 0), Y, p, r))
    return r


@functools.lru_cache(maxsize=64)
def get_kernel(model: GaussianModel, dtype: str, x_per_row: bool, weights: str,
               fast_exp: bool | None = None) -> Any:
    """The compiled ``cupy.RawKernel`` for a configuration (compiled once, then cached)."""
    import cupy

    src = generate_source(model, dtype, x_per_row=x_per_row, weights=weights,
                          fast_exp=fast_exp)
    name = kernel_name(model, np.dtype(dtype).name, x_per_row, weights)
    return cupy.RawKernel(src, name, options=("--std=c++14",))


class FusedNormalEquations:
    """GPU evaluator ``(S, JᵀWJ, JᵀWr)`` for :func:`peakfit.solvers.lm.levenberg_marquardt`.

    Drop-in for :class:`peakfit.solvers.lm.NormalEquations` with CuPy arrays: same arguments,
    same results (to rounding), computed by the generated fused kernel.

    Parameters
    ----------
    model : GaussianModel
    x : cupy array (m,) or (k, m)
    Y : cupy array (k, m)
        float64 or float32 (the working precision).
    sqrt_w : cupy array (m,) or (k, m), optional
    layout : {'points', 'rows'}
        ``'points'`` (default) copies the data once to a points-major ``(m, k)`` array so that
        warps read coalesced; ``'rows'`` reads ``Y`` in place.
    repack : float
        With ``'points'``, re-pack the data to the active rows when fewer than this fraction of
        the packed columns is still being evaluated. The rows asked for must then shrink as
        the solver's active sets do (each a subset of the last re-packed set); a re-pack
        refuses rows an earlier one dropped.
    block : int
        Threads per block (rounded to whole groups of ``32 * slices`` threads, see
        :func:`launch_shape`).
    xp, kernel_factory : optional
        Array module and ``factory(model, dtype, x_per_row, weights) -> launcher`` (default
        CuPy and :func:`get_kernel`). The tests pass NumPy and a host build of the same
        generated source, which exercises this driver (layouts, strides, re-packing) on a CPU.
    """

    def __init__(self, model: GaussianModel, x: Any, Y: Any, sqrt_w: Any = None, *,
                 layout: str = "points", repack: float = 0.5, block: int = 128,
                 xp: Any = None, kernel_factory: Any = None) -> None:
        if xp is None:
            import cupy as xp
        self.cp = xp
        cp = xp
        self.model = model
        dt = np.dtype(Y.dtype)
        if dt not in (np.float32, np.float64):
            raise ValueError(f"Y must be float32 or float64, got {dt}")
        self.dtype = dt
        self.k, self.m = (int(s) for s in Y.shape)
        self.layout = layout
        self.repack = float(repack)
        self.block = int(block)
        self.x_per_row = x.ndim == 2
        self.weights = "none" if sqrt_w is None else ("row" if sqrt_w.ndim == 2 else "shared")
        factory = get_kernel if kernel_factory is None else kernel_factory
        self.kernel = factory(model, dt.name, self.x_per_row, self.weights)
        self.slices = len(row_slices(model, dt.name))
        self._rows_of_col = None
        x = cp.ascontiguousarray(cp.asarray(x, dtype=dt))
        Y = cp.ascontiguousarray(cp.asarray(Y, dtype=dt))
        sw = None if sqrt_w is None else cp.ascontiguousarray(cp.asarray(sqrt_w, dtype=dt))
        if layout == "points":
            self._pack(x, Y, sw, None)
        elif layout == "rows":
            self.x, self.Y, self.sw = x, Y, sw
            self._col_of_row = cp.arange(self.k, dtype=cp.int64)
        else:
            raise ValueError(f"layout must be 'points' or 'rows', got {layout!r}")
        self._last_idx: Any = None
        self.repacks = 0

    # ---------------------------------------------------------------- data layout
    def _pack(self, x: Any, Y: Any, sw: Any, rows: Any) -> None:
        """Points-major copies of the rows ``rows`` (all when None)."""
        cp = self.cp
        if rows is not None:
            Y = Y[:, rows] if self.layout == "points" else Y[rows]
        self.Y = cp.ascontiguousarray(Y.T if rows is None else Y)
        if self.x_per_row:
            xr = x if rows is None else x[:, rows]
            self.x = cp.ascontiguousarray(xr.T if rows is None else xr)
        else:
            self.x = x
        if sw is not None and sw.ndim == 2:
            swr = sw if rows is None else sw[:, rows]
            self.sw = cp.ascontiguousarray(swr.T if rows is None else swr)
        else:
            self.sw = sw
        ncols = self.Y.shape[1]
        self._col_of_row = cp.full(self.k, -1, dtype=cp.int64)
        src = cp.arange(self.k) if rows is None else self._rows_of_col[rows]
        self._col_of_row[src] = cp.arange(ncols, dtype=cp.int64)
        self._rows_of_col = src

    def _strides(self) -> tuple[int, int, int, int, int, int]:
        """(row, step) element strides of x, y and sqrt-weights for the current layout."""
        if self.layout == "points":
            ld = self.Y.shape[1]
            y = (1, ld)
            x = (1, self.x.shape[1]) if self.x_per_row else (0, 1)
            if self.weights == "row":
                w = (1, self.sw.shape[1])
            elif self.weights == "shared":
                w = (0, 1)
            else:
                w = (0, 0)
        else:
            y = (self.m, 1)
            x = (self.m, 1) if self.x_per_row else (0, 1)
            w = (self.m, 1) if self.weights == "row" else ((0, 1) if self.weights == "shared"
                                                          else (0, 0))
        return x[0], x[1], y[0], y[1], w[0], w[1]

    # ---------------------------------------------------------------- evaluation
    def __call__(self, p: Any, idx: Any) -> tuple[Any, Any, Any]:
        cp = self.cp
        P = self.model.n_params
        nrows = int(idx.shape[0])
        if self.layout == "points" and idx is not self._last_idx:
            ncols = self.Y.shape[1]
            if nrows < self.repack * ncols and nrows > 0:
                cols = self._col_of_row[idx]
                # one host synchronisation a re-pack (rare): rows dropped by an earlier
                # re-pack would otherwise be read from the wrong column
                if bool((cols < 0).any()):
                    raise ValueError("FusedNormalEquations: rows outside the last re-packed set "
                                     "were asked for; the solver's active sets only shrink")
                self._pack(self.x, self.Y, self.sw, cols)
                self.repacks += 1
            self._last_idx = idx
        cols = cp.ascontiguousarray(self._col_of_row[idx])
        p = cp.ascontiguousarray(cp.asarray(p, dtype=self.dtype))
        sse = cp.empty(nrows, dtype=cp.float64)
        A = cp.empty((nrows, P, P), dtype=self.dtype)
        g = cp.empty((nrows, P), dtype=self.dtype)
        if nrows == 0:
            return sse, A, g
        xr, xs, yr, ys, wr, ws = self._strides()
        sw = self.sw if self.sw is not None else self.Y  # any valid pointer; never read
        grid, block = launch_shape(nrows, self.slices, self.block)
        self.kernel(grid, block, (
            cols, np.int32(nrows), np.int32(self.m),
            self.x, np.int64(xr), np.int64(xs),
            self.Y, np.int64(yr), np.int64(ys),
            sw, np.int64(wr), np.int64(ws),
            p, sse, A, g,
        ))
        return sse, A, g
