"""The gaussN model: values, analytic Jacobian and coefficient names, defined once.

The model is MATLAB's ``gaussN`` library model,

.. math:: f(x) = \\sum_{i=1}^{n} a_i \\exp\\left(-\\left(\\frac{x-b_i}{c_i}\\right)^2\\right)

plus an optional baseline term. Coefficients are ordered as in MATLAB: ``a1, b1, c1, a2, b2,
c2, ...`` followed by the baseline coefficients (``d0, d1, d2`` for polynomial baselines
``d0 + d1*x + d2*x^2``, ``e1, e2`` for the exponential baseline ``e1*exp(-e2*x)``, the form of the
NIST StRD Gauss problems).

Every evaluation is batched: parameters have shape ``(k, P)`` for ``k`` spectra and ``x`` is
either shared ``(m,)`` or per spectrum ``(k, m)``. The same code runs on NumPy and CuPy arrays,
and the GPU kernels (:mod:`peakfit.gpu.kernels`) are generated from the same term definitions, so
that the model is written in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "BASELINES",
    "FWHM_PER_C",
    "GaussianModel",
    "gauss_model",
    "parse_model_name",
]

#: Baseline kinds and their coefficient names.
BASELINES: dict[str, tuple[str, ...]] = {
    "none": (),
    "constant": ("d0",),
    "linear": ("d0", "d1"),
    "quadratic": ("d0", "d1", "d2"),
    "exponential": ("e1", "e2"),
}

#: FWHM of ``exp(-((x-b)/c)^2)`` in units of ``c``: ``2*sqrt(ln 2)``.
FWHM_PER_C = 2.0 * math.sqrt(math.log(2.0))

_BASELINE_FORMULA = {
    "none": (),
    "constant": ("d0",),
    "linear": ("d0", "d1*x"),
    "quadratic": ("d0", "d1*x", "d2*x^2"),
    "exponential": ("e1*exp(-e2*x)",),
}


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
    def n_peak_params(self) -> int:
        """``3*n``: the number of Gaussian coefficients."""
        return 3 * self.n

    @property
    def baseline_names(self) -> tuple[str, ...]:
        """Names of the baseline coefficients."""
        return BASELINES[self.baseline]

    @property
    def n_params(self) -> int:
        """Total number of coefficients ``P``."""
        return 3 * self.n + len(self.baseline_names)

    @property
    def names(self) -> tuple[str, ...]:
        """Coefficient names in MATLAB order (``a1, b1, c1, a2, ...``, then baseline)."""
        peaks = tuple(f"{s}{i}" for i in range(1, self.n + 1) for s in "abc")
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
        terms = [f"a{i}*exp(-((x-b{i})/c{i})^2)" for i in range(1, self.n + 1)]
        terms += list(_BASELINE_FORMULA[self.baseline])
        if len(terms) <= 2:
            return " " + " + ".join(terms)
        lines = [" + ".join(terms[i : i + 2]) for i in range(0, len(terms), 2)]
        pad = "\n" + " " * 14
        return pad + (" + " + pad).join(lines)

    def default_lower(self) -> np.ndarray:
        """MATLAB's default lower bounds: ``[-Inf, -Inf, 0]`` per term, ``-Inf`` for baselines."""
        lo = np.full(self.n_params, -np.inf)
        lo[2 : 3 * self.n : 3] = 0.0
        return lo

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
        from ._xp import get_xp

        xp = get_xp(x, p)
        p = xp.asarray(p, dtype=float)
        x = xp.asarray(x, dtype=p.dtype)
        if p.ndim == 1:
            return self.evaluate(x, p[None, :])[0]
        return self.evaluate(x, p)

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
        A term with ``c == 0`` contributes 0 and has zero derivatives (MATLAB's guard).
        Derivatives: ``df/da = E``, ``df/db = 2 a (x-b) E / c^2``, ``df/dc = 2 a (x-b)^2 E / c^3``
        with ``E = exp(-((x-b)/c)^2)``.
        """
        from ._xp import get_xp

        xp = get_xp(x, p)
        n = self.n
        a, b, c, q = self.split(p)
        xx = x[None, None, :] if x.ndim == 1 else x[:, None, :]
        zero_c = c == 0
        cs = xp.where(zero_c, 1.0, c)[:, :, None]
        t = (xx - b[:, :, None]) / cs
        E = xp.exp(-t * t)
        if bool(zero_c.any()):
            E = xp.where(zero_c[:, :, None], 0.0, E)
        aE = a[:, :, None] * E
        f = aE.sum(axis=1)
        x2 = x if x.ndim == 2 else x[None, :]
        bl = self.baseline
        if bl == "constant":
            f = f + q[:, 0:1]
        elif bl == "linear":
            f = f + q[:, 0:1] + q[:, 1:2] * x2
        elif bl == "quadratic":
            f = f + q[:, 0:1] + (q[:, 1:2] + q[:, 2:3] * x2) * x2
        elif bl == "exponential":
            ex = xp.exp(-q[:, 1:2] * x2)
            f = f + q[:, 0:1] * ex
        if not jacobian:
            return f
        k = p.shape[0]
        m = xx.shape[-1]
        Jt = xp.empty((k, self.n_params, m), dtype=f.dtype)
        dfdb = 2.0 * aE * t / cs
        Jt[:, 0 : 3 * n : 3, :] = E
        Jt[:, 1 : 3 * n : 3, :] = dfdb
        Jt[:, 2 : 3 * n : 3, :] = dfdb * t
        j = 3 * n
        if bl in ("constant", "linear", "quadratic"):
            Jt[:, j, :] = 1.0
            if bl != "constant":
                Jt[:, j + 1, :] = x2
            if bl == "quadratic":
                Jt[:, j + 2, :] = x2 * x2
        elif bl == "exponential":
            Jt[:, j, :] = ex
            Jt[:, j + 1, :] = -q[:, 0:1] * x2 * ex
        return f, Jt

    # ------------------------------------------------------- reparameterising
    def rescale(self, p: Any, x0: float, sx: float, sy: float) -> Any:
        """Coefficients for ``x' = (x - x0)/sx``, ``y' = y/sy`` from those for ``x``, ``y``.

        The map is exact (the model is invariant under it) and is inverted by
        :meth:`unscale`. Polynomial baselines with ``x0 != 0`` mix their coefficients, so callers
        shift (``x0 != 0``) only when baseline bounds are infinite.
        """
        out = p.copy()
        k = 3 * self.n
        out[..., 0:k:3] = p[..., 0:k:3] / sy
        out[..., 1:k:3] = (p[..., 1:k:3] - x0) / sx
        out[..., 2:k:3] = p[..., 2:k:3] / sx
        x0, sx, sy = _per_row(p, x0, sx, sy)
        q = p[..., k:]
        bl = self.baseline
        if bl == "constant":
            out[..., k] = q[..., 0] / sy
        elif bl == "linear":
            out[..., k] = (q[..., 0] + q[..., 1] * x0) / sy
            out[..., k + 1] = q[..., 1] * sx / sy
        elif bl == "quadratic":
            d0, d1, d2 = q[..., 0], q[..., 1], q[..., 2]
            out[..., k] = (d0 + d1 * x0 + d2 * x0 * x0) / sy
            out[..., k + 1] = (d1 + 2.0 * d2 * x0) * sx / sy
            out[..., k + 2] = d2 * sx * sx / sy
        elif bl == "exponential":
            e1, e2 = q[..., 0], q[..., 1]
            out[..., k] = e1 * np.exp(-e2 * x0) / sy
            out[..., k + 1] = e2 * sx
        return out

    def unscale(self, p: Any, x0: float, sx: float, sy: float) -> Any:
        """Inverse of :meth:`rescale`."""
        out = p.copy()
        k = 3 * self.n
        out[..., 0:k:3] = p[..., 0:k:3] * sy
        out[..., 1:k:3] = p[..., 1:k:3] * sx + x0
        out[..., 2:k:3] = p[..., 2:k:3] * sx
        x0, sx, sy = _per_row(p, x0, sx, sy)
        q = p[..., k:]
        bl = self.baseline
        if bl == "constant":
            out[..., k] = q[..., 0] * sy
        elif bl == "linear":
            d1 = q[..., 1] * sy / sx
            out[..., k + 1] = d1
            out[..., k] = q[..., 0] * sy - d1 * x0
        elif bl == "quadratic":
            d2 = q[..., 2] * sy / (sx * sx)
            d1 = q[..., 1] * sy / sx - 2.0 * d2 * x0
            out[..., k + 2] = d2
            out[..., k + 1] = d1
            out[..., k] = q[..., 0] * sy - d1 * x0 - d2 * x0 * x0
        elif bl == "exponential":
            e2 = q[..., 1] / sx
            out[..., k + 1] = e2
            out[..., k] = q[..., 0] * sy * np.exp(e2 * x0)
        return out

    def unscale_jacobian(self, p: Any, x0: Any, sx: Any, sy: Any) -> Any:
        """``∂p/∂p'`` of :meth:`unscale` at scaled rows ``p`` (k, P): shape (k, P, P).

        Used to carry a covariance from the scaled problem back to the caller's units.
        """
        from ._xp import get_xp

        xp = get_xp(p)
        k, P = p.shape
        n3 = 3 * self.n
        x0, sx, sy = (xp.broadcast_to(xp.asarray(v, dtype=float).reshape(-1), (k,))
                      for v in (x0, sx, sy))
        T = xp.zeros((k, P, P))
        for j in range(self.n):
            T[:, 3 * j, 3 * j] = sy
            T[:, 3 * j + 1, 3 * j + 1] = sx
            T[:, 3 * j + 2, 3 * j + 2] = sx
        bl = self.baseline
        i = n3
        if bl == "constant":
            T[:, i, i] = sy
        elif bl == "linear":
            T[:, i, i] = sy
            T[:, i, i + 1] = -sy * x0 / sx
            T[:, i + 1, i + 1] = sy / sx
        elif bl == "quadratic":
            T[:, i, i] = sy
            T[:, i, i + 1] = -x0 * sy / sx
            T[:, i, i + 2] = x0 * x0 * sy / (sx * sx)
            T[:, i + 1, i + 1] = sy / sx
            T[:, i + 1, i + 2] = -2.0 * x0 * sy / (sx * sx)
            T[:, i + 2, i + 2] = sy / (sx * sx)
        elif bl == "exponential":
            e2 = p[:, i + 1] / sx
            grow = xp.exp(e2 * x0)
            T[:, i, i] = sy * grow
            T[:, i, i + 1] = p[:, i] * sy * grow * x0 / sx
            T[:, i + 1, i + 1] = 1.0 / sx
        return T

    def bound_scale(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-coefficient ``(x-power, y-power)`` for mapping bounds with scale-only rescaling.

        With ``x0 = 0`` every coefficient maps as ``p' = p * sx**xpow / sy**ypow``.
        """
        k = 3 * self.n
        xpow = np.zeros(self.n_params)
        ypow = np.zeros(self.n_params)
        ypow[0:k:3] = 1.0
        xpow[1:k:3] = -1.0
        xpow[2:k:3] = -1.0
        bl = self.baseline
        if bl in ("constant", "linear", "quadratic"):
            for i in range(len(self.baseline_names)):
                xpow[k + i] = i
                ypow[k + i] = 1.0
        elif bl == "exponential":
            ypow[k] = 1.0
            xpow[k + 1] = 1.0
        return xpow, ypow

    def sort_peaks(self, p: Any) -> tuple[Any, Any]:
        """Reorder the terms of ``p`` (``(P,)`` or ``(k, P)``) by ascending centre ``b``.

        Returns the reordered parameters and the permutation of terms (``(n,)`` or ``(k, n)``).
        The model value is unchanged.
        """
        from ._xp import get_xp

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
