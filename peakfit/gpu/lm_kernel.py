"""The LM iteration on the device: one generated CUDA kernel per iteration (issue #16 item 2).

:func:`peakfit.solvers.lm.levenberg_marquardt` drives the GPU with one kernel launch per
iteration when its evaluator is a :class:`~peakfit.gpu.kernels.FusedNormalEquations`: each
thread takes one row of the batch and performs the whole step of :mod:`peakfit.solvers.lm`
(held bounds, Moré's scaling, the damped system solved by Cholesky in the thread's own storage,
projection onto the box, the trial evaluation by the fused kernel's per-spectrum routine,
acceptance, damping, stopping tests), updating the solver's state arrays in place. Rows that
finish clear their ``active`` byte on the device; the host compacts the set of rows (one
synchronisation) only every ``check_every`` iterations. The algorithm is lm.py's (the NumPy
path is the reference the tests compare with); the only numerical difference is the solver of
the damped system (Cholesky here, LU there; both exact to rounding for the symmetric positive
definite damped matrix), and a matrix that is not positive definite marks the step as
singular (exit flag -2), as a zero LU pivot does.

The source is the fused kernel's (:func:`peakfit.gpu.kernels.generate_source`, same model
description) followed by the iteration; with ``-DPF_HOST`` it compiles as C99 into a host loop
``<name>_host``, which the CuPy stand-in of the test-suite runs and counts.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..models import GaussianModel
from .kernels import FusedNormalEquations, generate_source, kernel_name, row_slices

__all__ = ["DeviceIteration", "device_iteration", "generate_iteration_source",
           "iteration_kernel_name"]

_ARGS = (
    "const long long* PF_RESTRICT rows, int nrows, const long long* PF_RESTRICT cols, int m,\n"
    "    const pf_real* x, pf_index x_row, pf_index x_step,\n"
    "    const pf_real* y, pf_index y_row, pf_index y_step,\n"
    "    const pf_real* sw, pf_index w_row, pf_index w_step,\n"
    "    pf_real* p, pf_real* A, pf_real* g, double* S, pf_real* lam, pf_real* nu,\n"
    "    pf_real* D, const pf_real* lo, const pf_real* hi, long long* it, long long* nfev,\n"
    "    const double* S0, long long* flag, unsigned char* active, pf_real* At, pf_real* gt,\n"
    "    long long trust, double tol_fun, double tol_x, long long max_iter,\n"
    "    long long max_fun_evals, double tiny, double sqrt_eps, double eps"
)


def iteration_kernel_name(model: GaussianModel, dtype: str, x_per_row: bool,
                          weights: str) -> str:
    """Name of the generated iteration kernel for a configuration."""
    return kernel_name(model, dtype, x_per_row, weights) + "_lm_iter"


def generate_iteration_source(model: GaussianModel, dtype: str = "float64", *,
                              x_per_row: bool = False, weights: str = "none") -> str:
    """CUDA C source (C99 with ``-DPF_HOST``) of one LM iteration for a set of rows.

    Returns the fused evaluation kernel's source followed by ``PF_DEVICE void
    <name>_lm_row(...)`` (the step of one row), the kernel ``<name>_lm_iter`` (thread ``s``
    takes row ``rows[s]``; rows whose ``active`` byte is 0 return at once) and, under
    ``PF_HOST``, ``<name>_lm_iter_host``.

    Examples
    --------
    >>> src = generate_iteration_source(GaussianModel(2, 'linear'))
    >>> 'pf_normal_n2_linear_float64_xshared_wnone_lm_iter(' in src
    True
    >>> src.count('_lm_iter_row(')  # the row's step: defined, called by kernel and host loop
    3
    """
    dt = np.dtype(dtype).name
    base = kernel_name(model, dt, x_per_row, weights)
    name = base + "_lm_iter"
    P = model.n_params
    T = P * (P + 1) // 2
    src = generate_source(model, dt, x_per_row=x_per_row, weights=weights)
    L: list[str] = []
    w = L.append
    w("#if defined(__CUDACC__) || defined(__CUDACC_RTC__)")
    w("#define PF_NAN __longlong_as_double(0x7ff8000000000000LL)")
    w("#else")
    w("#define PF_NAN ((double)NAN)")
    w("#endif")
    w("#define PF_FINITE(v) ((v) - (v) == 0)")
    w(f"PF_DEVICE void {name}_row(long long r, const long long c, int m,")
    w("    const pf_real* x, pf_index x_row, pf_index x_step,")
    w("    const pf_real* y, pf_index y_row, pf_index y_step,")
    w("    const pf_real* sw, pf_index w_row, pf_index w_step,")
    w("    pf_real* p, pf_real* A, pf_real* g, double* S, pf_real* lam, pf_real* nu,")
    w("    pf_real* D, const pf_real* lo, const pf_real* hi, long long* it, long long* nfev,")
    w("    const double* S0, long long* flag, unsigned char* active, pf_real* At, pf_real* gt,")
    w("    long long trust, double tol_fun, double tol_x, long long max_iter,")
    w("    long long max_fun_evals, double tiny, double sqrt_eps, double eps)")
    w("{")
    w(f"    const int P = {P};")
    w(f"    pf_real* pr = p + r * {P};")
    w(f"    pf_real* Ar = A + r * {P * P};")
    w(f"    pf_real* gr = g + r * {P};")
    w(f"    pf_real* Dr = D + r * {P};")
    w(f"    const pf_real* lor = lo + r * {P};")
    w(f"    const pf_real* hir = hi + r * {P};")
    w(f"    pf_real* Atr = At + r * {P * P};")
    w(f"    pf_real* gtr = gt + r * {P};")
    w(f"    int fr[{P}];")
    w(f"    double d[{P}], z[{P}], L[{T}];")
    w(f"    pf_real delta[{P}], pt[{P}];")
    w("    /* 1. held coefficients; 2. D = max(D, diag A) (NaN propagates), d = sqrt(D) */")
    w("    double dmax = 0; int first = 1, nan_d = 0;")
    w("    for (int j = 0; j < P; ++j) {")
    w("        const pf_real pj = pr[j], gj = gr[j];")
    w("        fr[j] = !((pj <= lor[j] && gj < 0) || (pj >= hir[j] && gj > 0));")
    w("        pf_real v = Dr[j]; const pf_real a = Ar[j * P + j];")
    w("        if (v == v && (a > v || a != a)) v = a;")
    w("        Dr[j] = v;")
    w("        if (v != v) nan_d = 1;")
    w("        else if (first || v > dmax) { dmax = v; first = 0; }")
    w("    }")
    w("    double fl = dmax * 1e-30;")
    w("    if (fl < tiny) fl = tiny;")
    w("    if (nan_d) fl = PF_NAN;")
    w("    for (int j = 0; j < P; ++j) {")
    w("        const double v = (double)Dr[j];")
    w("        d[j] = (pf_real)sqrt((fl != fl || v < fl) ? fl : v);")
    w("    }")
    w("    /* 3. the scaled, bound-reduced damped system (held: identity), Cholesky */")
    w("    const double la = (double)lam[r];")
    w("    int k = 0;")
    w("    for (int i = 0; i < P; ++i) {")
    w("        for (int j = 0; j <= i; ++j, ++k) {")
    w("            double v = (fr[i] && fr[j]) ? (double)Ar[i * P + j] / (d[i] * d[j]) : 0.0;")
    w("            if (i == j) v += la + (fr[i] ? 0.0 : 1.0);")
    w("            L[k] = v;")
    w("        }")
    w("        z[i] = fr[i] ? (double)gr[i] / d[i] : 0.0;")
    w("    }")
    w("    int singular = 0;")
    w("    for (int j = 0; j < P && !singular; ++j) {")
    w("        const int jj = j * (j + 1) / 2;")
    w("        double s = L[jj + j];")
    w("        for (int q = 0; q < j; ++q) s -= L[jj + q] * L[jj + q];")
    w("        if (!(s > 0)) { singular = 1; break; }")
    w("        s = sqrt(s);")
    w("        L[jj + j] = s;")
    w("        for (int i = j + 1; i < P; ++i) {")
    w("            const int ii = i * (i + 1) / 2;")
    w("            double t = L[ii + j];")
    w("            for (int q = 0; q < j; ++q) t -= L[ii + q] * L[jj + q];")
    w("            L[ii + j] = t / s;")
    w("        }")
    w("    }")
    w("    if (!singular) {")
    w("        for (int i = 0; i < P; ++i) {  /* L u = b */")
    w("            const int ii = i * (i + 1) / 2;")
    w("            double t = z[i];")
    w("            for (int q = 0; q < i; ++q) t -= L[ii + q] * z[q];")
    w("            z[i] = t / L[ii + i];")
    w("        }")
    w("        for (int i = P - 1; i >= 0; --i) {  /* Lᵀ z = u */")
    w("            double t = z[i];")
    w("            for (int q = i + 1; q < P; ++q) t -= L[q * (q + 1) / 2 + i] * z[q];")
    w("            z[i] = t / L[i * (i + 1) / 2 + i];")
    w("        }")
    w("    } else {")
    w("        for (int i = 0; i < P; ++i) z[i] = PF_NAN;")
    w("    }")
    w("    /* the step, projected onto the box; predicted reduction 2 δ·g - δ·A δ */")
    w("    int bad = 0;")
    w("    for (int j = 0; j < P; ++j) {")
    w("        delta[j] = fr[j] ? (pf_real)(z[j] / d[j]) : (pf_real)0;")
    w("        pf_real q = pr[j] + delta[j];")
    w("        if (q == q) { if (q < lor[j]) q = lor[j]; if (q > hir[j]) q = hir[j]; }")
    w("        pt[j] = q;")
    w("        delta[j] = pt[j] - pr[j];")
    w("        if (!PF_FINITE(delta[j])) bad = 1;")
    w("    }")
    w("    double dg = 0, dAd = 0, pp = 0, ss = 0;")
    w("    for (int i = 0; i < P; ++i) {")
    w("        double s = 0;")
    w("        for (int j = 0; j < P; ++j) s += (double)Ar[i * P + j] * (double)delta[j];")
    w("        dAd += (double)delta[i] * s;")
    w("        dg += (double)delta[i] * (double)gr[i];")
    w("        pp += (double)pr[i] * (double)pr[i];")
    w("        ss += (double)delta[i] * (double)delta[i];")
    w("    }")
    w("    const double pred = 2.0 * dg - dAd;")
    w("    /* 4. the trial point, by the fused kernel's slice routines */")
    w("    double st = 0;")
    for t in range(len(row_slices(model, dt))):  # the rows of A, slice by slice
        w(f"    {base}_slice{t}(m, x + c * x_row, x_step, y + c * y_row, y_step,")
        w("        sw + c * w_row, w_step, pt, &st, Atr, gtr);")
    w("    nfev[r] += 1;")
    w("    it[r] += 1;")
    w("    int ok = PF_FINITE(st);")
    w("    for (int j = 0; j < P; ++j) if (!PF_FINITE(gtr[j])) ok = 0;")
    w("    const double sr = S[r];")
    w("    const double actual = sr - st;")
    w("    const int accept = ok && actual > 0 && !bad;")
    w("    /* 5. damping */")
    w("    double nl;")
    w("    if (trust) {")
    w("        const double rho = pred > 0 ? actual / pred : 0.0;")
    w("        const double e = 2.0 * rho - 1.0;")
    w("        double shrink = 1.0 - e * e * e;")
    w("        if (shrink < 1.0 / 3.0) shrink = 1.0 / 3.0;")
    w("        if (accept) { nl = la * shrink; nu[r] = (pf_real)2.0; }")
    w("        else { nl = la * (double)nu[r]; nu[r] = nu[r] * (pf_real)2.0; }")
    w("    } else {")
    w("        nl = accept ? la / 10.0 : la * 10.0;")
    w("    }")
    w("    if (nl == nl) { if (nl < 1e-16) nl = 1e-16; if (nl > 1e300) nl = 1e300; }")
    w("    lam[r] = (pf_real)nl;")
    w("    /* 6. stopping tests on the step just tried, then the update */")
    w("    const int step_small = sqrt(ss) <= tol_x * (sqrt_eps + sqrt(pp));")
    w("    const int fun_small = accept && actual <= tol_fun * sr && pred <= tol_fun * sr;")
    w("    if (accept) {")
    w("        for (int j = 0; j < P; ++j) { pr[j] = pt[j]; gr[j] = gtr[j]; }")
    w(f"        for (int j = 0; j < {P * P}; ++j) Ar[j] = Atr[j];")
    w("        S[r] = st;")
    w("    }")
    w("    const double s0 = S0[r] > tiny ? S0[r] : tiny;")
    w("    const int zero = S[r] <= 4 * eps * eps * s0;")
    w("    const long long f = bad ? -2 : (zero ? 1 : (fun_small ? 3 : (step_small ? 2 : 0)));")
    w("    if (bad || zero || fun_small || step_small || it[r] >= max_iter")
    w("            || nfev[r] >= max_fun_evals) {")
    w("        flag[r] = f;")
    w("        active[r] = 0;")
    w("    }")
    w("}")
    w("")
    call = (f"    const long long r = rows[s];\n"
            f"    if (!active[r]) return;\n"
            f"    {name}_row(r, cols[r], m, x, x_row, x_step, y, y_row, y_step, sw, w_row,\n"
            f"        w_step, p, A, g, S, lam, nu, D, lo, hi, it, nfev, S0, flag, active, At,\n"
            f"        gt, trust, tol_fun, tol_x, max_iter, max_fun_evals, tiny, sqrt_eps, eps);")
    w("#if defined(__CUDACC__) || defined(__CUDACC_RTC__)")
    w(f'extern "C" __global__ void {name}(\n    {_ARGS})')
    w("{")
    w("    const int s = blockIdx.x * blockDim.x + threadIdx.x;")
    w("    if (s >= nrows) return;")
    w(call)
    w("}")
    w("#else")
    w(f"void {name}_host(\n    {_ARGS})")
    w("{")
    w("    for (int s = 0; s < nrows; ++s) {")
    w(call.replace("return;", "continue;"))
    w("    }")
    w("}")
    w("#endif")
    return src + "\n".join(L) + "\n"


@functools.lru_cache(maxsize=64)
def get_iteration_kernel(model: GaussianModel, dtype: str, x_per_row: bool,
                         weights: str) -> Any:
    """The compiled ``cupy.RawKernel`` of the iteration (compiled once, then cached)."""
    import cupy

    src = generate_iteration_source(model, dtype, x_per_row=x_per_row, weights=weights)
    name = iteration_kernel_name(model, np.dtype(dtype).name, x_per_row, weights)
    return cupy.RawKernel(src, name, options=("--std=c++14",))


class DeviceIteration:
    """One LM iteration on the device for the data of a :class:`FusedNormalEquations`.

    Called by :func:`peakfit.solvers.lm.levenberg_marquardt` with the loop's state arrays
    (CuPy, full batch, updated in place); one kernel launch, no host synchronisation.
    """

    def __init__(self, ev: FusedNormalEquations) -> None:
        self.ev = ev
        self.kernel = get_iteration_kernel(ev.model, ev.dtype.name, ev.x_per_row, ev.weights)
        self._scratch: tuple[Any, Any] | None = None

    def __call__(self, idx: Any, p: Any, A: Any, g: Any, S: Any, lam: Any, nu: Any, D: Any,
                 lo: Any, hi: Any, it: Any, nfev: Any, S0: Any, flag: Any, active: Any,
                 trust: bool, tol_fun: float, tol_x: float, max_iter: int,
                 max_fun_evals: int) -> None:
        ev = self.ev
        cp = ev.cp
        k, P = p.shape
        if self._scratch is None or self._scratch[0].shape[0] != k:
            self._scratch = (cp.empty((k, P, P), dtype=ev.dtype),
                             cp.empty((k, P), dtype=ev.dtype))
        At, gt = self._scratch
        nrows = int(idx.shape[0])
        if nrows == 0:
            return
        xr, xs, yr, ys, wr, ws = ev._strides()
        sw = ev.sw if ev.sw is not None else ev.Y  # any valid pointer; never read
        eps = float(np.finfo(float).eps)
        grid = ((nrows + ev.block - 1) // ev.block,)
        self.kernel(grid, (ev.block,), (
            idx, np.int32(nrows), ev._col_of_row, np.int32(ev.m),
            ev.x, np.int64(xr), np.int64(xs), ev.Y, np.int64(yr), np.int64(ys),
            sw, np.int64(wr), np.int64(ws),
            p, A, g, S, lam, nu, D, lo, hi, it, nfev, S0, flag, active, At, gt,
            np.int64(bool(trust)), float(tol_fun), float(tol_x), np.int64(max_iter),
            np.int64(max_fun_evals), float(np.finfo(ev.dtype).tiny), float(np.sqrt(eps)),
            eps,
        ))


def device_iteration(evaluate: Any) -> DeviceIteration | None:
    """The device iteration for an evaluator, or None when it is not the fused GPU one.

    The data must still be in their first packing (the iteration reads the columns of every
    row of the batch; :class:`FusedNormalEquations` re-packs only when the solver asks it for
    fewer rows, which the device iteration never does).
    """
    if not isinstance(evaluate, FusedNormalEquations) or evaluate.repacks:
        return None
    return DeviceIteration(evaluate)
