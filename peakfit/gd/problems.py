"""Least-squares problems with exact loss, gradient, Hessian and per-example gradients.

Every problem here has the loss

.. math::

    L(w) = c \\cdot \\frac{1}{m} \\sum_{i \\in \\mathcal{B}} r_i(w)^2,

with :math:`c = 1/2` (``convention="half_mse"``, the default) or :math:`c = 1`
(``convention="mse"``, Keras' ``"mse"``). The gradient is :math:`2c J^T r / m` and the
Hessian :math:`2c (J^T J + \\sum_i r_i \\nabla^2 r_i) / m`. The factor ``2c`` is the
"factor-of-2 trap" of the stability limit: with ``"mse"`` the Hessian doubles and the
largest stable learning rate halves.

All arithmetic is done with the array module of the data (``numpy`` or ``cupy``; CuPy is
never imported here) and in the data's dtype, so a float16 problem really computes its
residuals, loss and gradient in float16.
"""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "EmbeddingRegression",
    "GaussianPeak",
    "LeastSquaresProblem",
    "LinearRegression",
    "SlidingWindowRegression",
    "array_module",
    "make_embedding",
    "make_gaussian_peak",
    "make_linear",
    "make_sliding_window",
    "to_numpy",
]

_CONVENTIONS = {"half_mse": 0.5, "mse": 1.0}


def array_module(*arrays: Any) -> ModuleType:
    """Return the array module (``numpy`` or ``cupy``) that owns ``arrays``.

    CuPy is only consulted when it is already imported (a CuPy array cannot exist
    otherwise), so importing :mod:`peakfit.gd` never imports CuPy.

    Examples
    --------
    >>> import numpy as np
    >>> array_module(np.zeros(3)) is np
    True
    """
    cp = sys.modules.get("cupy")
    if cp is not None:
        for a in arrays:
            if type(a).__module__.startswith("cupy"):
                return cp
    return np


def to_numpy(a: Any) -> np.ndarray:
    """Copy ``a`` to host memory as a NumPy array (no copy for NumPy input).

    Examples
    --------
    >>> to_numpy([1.0, 2.0])
    array([1., 2.])
    """
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)


def _as_float_array(a: Any, name: str, xp: ModuleType | None = None) -> Any:
    """Convert ``a`` to a floating array of its own module, keeping float16/32/64."""
    if xp is None:
        xp = array_module(a)
    if isinstance(a, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array, got {type(a).__name__}")
    arr = xp.asarray(a)
    kind = arr.dtype.kind
    if kind in "biu":
        arr = arr.astype(xp.float64)
    elif kind != "f":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    return arr


def _check_convention(convention: str) -> float:
    if convention not in _CONVENTIONS:
        raise ValueError(f"convention must be one of {sorted(_CONVENTIONS)}, got {convention!r}")
    return _CONVENTIONS[convention]


class _Picklable:
    """Pickle the array module by name (problems travel to worker processes)."""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["xp"] = state["xp"].__name__
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state["xp"] = importlib.import_module(state["xp"])
        self.__dict__.update(state)


class LeastSquaresProblem(_Picklable):
    """Base class: loss ``c * mean(r**2)`` over a batch, with exact derivatives.

    Subclasses implement :meth:`residuals`, :meth:`jacobian` and, for non-linear
    residuals, :meth:`residual_hessians`. Everything else (loss, gradient, exact
    Hessian, Hessian-vector products, per-example gradients and their O(N) second
    moment) is derived here.

    Parameters
    ----------
    data : tuple of arrays
        The per-example arrays (first axis = example), used to locate bad rows.
    dim : int
        Number of parameters.
    convention : {"half_mse", "mse"}
        ``c = 1/2`` or ``c = 1`` in ``L = c * mean(r**2)``.

    Examples
    --------
    >>> import numpy as np
    >>> p = LinearRegression(np.eye(2), np.array([1.0, 2.0]))
    >>> p.loss(np.zeros(2))
    1.25
    """

    #: True when the residuals are affine in ``w`` (the Hessian is then constant).
    linear: bool = False
    #: Short human-readable name used in figures and reports.
    name: str = "least squares"

    def __init__(self, data: tuple[Any, ...], dim: int, convention: str = "half_mse") -> None:
        self._c = _check_convention(convention)
        self.convention = convention
        self._data = data
        self.dim = int(dim)
        self.n = int(data[0].shape[0])
        self.xp = array_module(*data)
        self.dtype = data[0].dtype

    # ------------------------------------------------------------------ interface
    def residuals(self, w: Any, idx: Any = None) -> Any:  # pragma: no cover - abstract
        """Residuals ``r_i(w)`` for the examples ``idx`` (all when None)."""
        raise NotImplementedError

    def jacobian(self, w: Any, idx: Any = None) -> Any:  # pragma: no cover - abstract
        """Jacobian ``dr_i/dw`` (shape ``(m, dim)``) for the examples ``idx``."""
        raise NotImplementedError

    def residual_hessians(self, w: Any, idx: Any = None) -> Any:
        """Second derivatives ``d2 r_i / dw2`` (shape ``(m, dim, dim)``); zero if linear."""
        m = self.n if idx is None else len(idx)
        return self.xp.zeros((m, self.dim, self.dim), dtype=self.dtype)

    # ------------------------------------------------------------------ helpers
    def _w(self, w: Any) -> Any:
        w = self.xp.asarray(w)
        if w.shape != (self.dim,):
            raise ValueError(f"parameters must have shape ({self.dim},), got {tuple(w.shape)}")
        return w.astype(self.dtype, copy=False)

    def _idx(self, idx: Any) -> Any:
        if idx is None:
            return None
        return self.xp.asarray(idx)

    def _m(self, idx: Any) -> int:
        return self.n if idx is None else len(idx)

    # ------------------------------------------------------------------ derived
    def loss(self, w: Any, idx: Any = None) -> float:
        """Mean loss ``c * mean(r**2)`` over ``idx`` (all examples when None).

        Examples
        --------
        >>> import numpy as np
        >>> LinearRegression(np.ones((4, 1)), np.ones(4), convention="mse").loss(np.zeros(1))
        1.0
        """
        r = self.residuals(w, idx)
        return float(self._c * self.xp.mean(r * r))

    def grad(self, w: Any, idx: Any = None) -> Any:
        """Gradient ``2c * J^T r / m`` in the data dtype.

        Examples
        --------
        >>> import numpy as np
        >>> LinearRegression(np.eye(2), np.array([1.0, 2.0])).grad(np.zeros(2))
        array([-0.5, -1. ])
        """
        return self.loss_and_grad(w, idx)[1]

    def loss_and_grad(
        self, w: Any, idx: Any = None, *, loss_scale: float = 1.0
    ) -> tuple[float, Any]:
        """Loss and gradient of ``loss_scale * L`` in one pass (the loss is returned unscaled).

        The backward factor ``2c * loss_scale / m`` is cast to the data dtype and
        multiplies the residuals first, as autograd does for a mean reduction: in
        float16 that product underflows to zero unless ``loss_scale`` is large.

        Examples
        --------
        >>> import numpy as np
        >>> p = LinearRegression(np.eye(2), np.array([1.0, 2.0]))
        >>> loss, g = p.loss_and_grad(np.zeros(2), loss_scale=4.0)
        >>> loss, g.tolist()
        (1.25, [-2.0, -4.0])
        """
        xp = self.xp
        r = self.residuals(w, idx)
        m = self._m(idx)
        loss = float(self._c * xp.mean(r * r))
        factor = xp.asarray(2.0 * self._c * loss_scale / m, dtype=self.dtype)
        g = self.jacobian(w, idx).T @ (r * factor)
        return loss, g

    def per_example_grads(self, w: Any, idx: Any = None) -> Any:
        """Per-example gradients ``g_i = 2c r_i J_i`` of ``l_i = c r_i**2`` (shape ``(m, dim)``).

        Their mean is :meth:`grad`.

        Examples
        --------
        >>> import numpy as np
        >>> p = LinearRegression(np.eye(2), np.array([1.0, 2.0]))
        >>> p.per_example_grads(np.zeros(2)).tolist()
        [[-1.0, -0.0], [-0.0, -2.0]]
        """
        r = self.residuals(w, idx)
        return (2.0 * self._c) * r[:, None] * self.jacobian(w, idx)

    def hessian(self, w: Any = None) -> Any:
        """Exact Hessian of the full-data loss, ``2c (J^T J + sum_i r_i H_i) / N``.

        Examples
        --------
        >>> import numpy as np
        >>> LinearRegression(2 * np.eye(2), np.zeros(2)).hessian().tolist()
        [[2.0, 0.0], [0.0, 2.0]]
        """
        if w is None:
            if not self.linear:
                raise ValueError("the Hessian of a non-linear problem needs parameters w")
            w = self.xp.zeros(self.dim, dtype=self.dtype)
        J = self.jacobian(w)
        H = J.T @ J
        if not self.linear:
            r = self.residuals(w)
            H = H + self.xp.einsum("i,ijk->jk", r, self.residual_hessians(w))
        return (2.0 * self._c / self.n) * H

    def hvp(self, w: Any, v: Any) -> Any:
        """Exact Hessian-vector product ``H v`` without forming ``H`` (O(N * dim**2) at most).

        Examples
        --------
        >>> import numpy as np
        >>> LinearRegression(2 * np.eye(2), np.zeros(2)).hvp(np.zeros(2), np.ones(2)).tolist()
        [2.0, 2.0]
        """
        xp = self.xp
        v = xp.asarray(v, dtype=self.dtype)
        J = self.jacobian(w)
        out = J.T @ (J @ v)
        if not self.linear:
            r = self.residuals(w)
            out = out + xp.einsum("i,ijk,k->j", r, self.residual_hessians(w), v)
        return (2.0 * self._c / self.n) * out

    def hvp_operator(self, w: Any) -> Any:
        """Return ``v -> H(w) v`` with ``J``, ``r`` and ``sum_i r_i H_i`` precomputed at ``w``.

        Each product then costs O(N * dim), which makes power iteration cheap.

        Examples
        --------
        >>> import numpy as np
        >>> op = LinearRegression(2 * np.eye(2), np.zeros(2)).hvp_operator(np.zeros(2))
        >>> op(np.array([1.0, 0.0])).tolist()
        [2.0, 0.0]
        """
        xp = self.xp
        J = self.jacobian(w)
        scale = 2.0 * self._c / self.n
        R = None
        if not self.linear:
            R = xp.einsum("i,ijk->jk", self.residuals(w), self.residual_hessians(w))

        def op(v: Any) -> Any:
            v = xp.asarray(v, dtype=self.dtype)
            out = J.T @ (J @ v)
            if R is not None:
                out = out + R @ v
            return scale * out

        return op

    def _residual_terms(self, w: Any, idx: Any) -> Any:
        """Yield the intermediate terms of the residuals; return the residuals."""
        r = self.residuals(w, idx)
        rows = slice(None) if idx is None else self.xp.asarray(idx)
        names = getattr(self, "_data_names", ())
        inputs = {
            names[k] if k < len(names) else f"data[{k}]": a[rows]
            for k, a in enumerate(self._data)
            if a.ndim == 1
        }
        yield "residuals r = model - y", r, inputs
        return r

    def loss_terms(self, w: Any, idx: Any = None) -> Any:
        """Yield ``(name, array, inputs)`` for each intermediate of the loss, in order.

        Used by :func:`peakfit.gd.diagnose_loss` to name the first non-finite term.

        Examples
        --------
        >>> import numpy as np
        >>> p = LinearRegression(np.eye(2), np.array([1.0, 2.0]))
        >>> [name for name, _, _ in p.loss_terms(np.zeros(2))]
        ['residuals r = model - y', 'r²', 'loss = 0.5·mean(r²)']
        """
        r = yield from self._residual_terms(w, idx)
        r2 = r * r
        yield "r²", r2, {"r": r}
        yield f"loss = {self._c:g}·mean(r²)", self.xp.asarray(self._c * self.xp.mean(r2)), {}

    def bad_rows(self, idx: Any = None) -> np.ndarray:
        """Indices (into the full data) of examples with a NaN or Inf in any data array.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.ones((3, 1)); X[1, 0] = np.nan
        >>> LinearRegression(X, np.ones(3)).bad_rows().tolist()
        [1]
        """
        xp = self.xp
        rows = xp.arange(self.n) if idx is None else xp.asarray(idx)
        ok = xp.ones(len(rows), dtype=bool)
        for a in self._data:
            sub = a[rows]
            fin = xp.isfinite(sub)
            if sub.ndim > 1:
                fin = fin.reshape(len(rows), -1).all(axis=1)
            ok &= fin
        return to_numpy(rows[~ok]).astype(np.int64)

    def with_dtype(self, dtype: Any) -> LeastSquaresProblem:
        """A copy of the problem whose data are cast to ``dtype`` (e.g. ``np.float16``).

        Examples
        --------
        >>> import numpy as np
        >>> LinearRegression(np.eye(2), np.ones(2)).with_dtype(np.float16).dtype
        dtype('float16')
        """
        raise NotImplementedError  # pragma: no cover - overridden


class LinearRegression(LeastSquaresProblem):
    """Linear least squares ``r = X w - y``; Hessian ``2c X^T X / N`` (constant).

    Parameters
    ----------
    X : array, shape (N, d)
        Design matrix.
    y : array, shape (N,)
        Targets.
    convention : {"half_mse", "mse"}
        Loss ``c * mean(r**2)`` with ``c = 1/2`` or ``1``.

    Raises
    ------
    ValueError
        If ``X`` is not 2-D, ``y`` not 1-D, or their lengths differ.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 0.0], [0.0, 2.0]]); y = np.array([1.0, 2.0])
    >>> p = LinearRegression(X, y)
    >>> p.solution().tolist()
    [1.0, 1.0]
    >>> float(np.linalg.eigvalsh(p.hessian()).max())
    2.0
    """

    linear = True
    name = "linear regression"
    _data_names = ("X", "y")

    def __init__(self, X: Any, y: Any, *, convention: str = "half_mse") -> None:
        xp = array_module(X, y)
        X = _as_float_array(X, "X", xp)
        y = _as_float_array(y, "y", xp)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (N examples x d features), got shape {tuple(X.shape)}")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(
                f"y must be 1-D with one target per row of X, got shape {tuple(y.shape)}"
            )
        if X.shape[0] != y.shape[0]:
            raise ValueError(
                f"X and y have mismatched shapes: X has {X.shape[0]} rows but y has "
                f"{y.shape[0]} entries"
            )
        if X.shape[0] == 0:
            raise ValueError("X and y must contain at least one example")
        if X.dtype != y.dtype:
            dt = xp.result_type(X.dtype, y.dtype)
            X, y = X.astype(dt), y.astype(dt)
        self.X = X
        self.y = y
        super().__init__((X, y), X.shape[1], convention)

    def residuals(self, w: Any, idx: Any = None) -> Any:
        """``X[idx] @ w - y[idx]``."""
        w = self._w(w)
        idx = self._idx(idx)
        if idx is None:
            return self.X @ w - self.y
        return self.X[idx] @ w - self.y[idx]

    def jacobian(self, w: Any, idx: Any = None) -> Any:
        """``X[idx]`` (independent of ``w``)."""
        idx = self._idx(idx)
        return self.X if idx is None else self.X[idx]

    def gram(self) -> Any:
        """``X^T X / N`` (the Hessian for ``convention="half_mse"``)."""
        return (self.X.T @ self.X) / self.n

    def solution(self) -> Any:
        """Least-squares minimiser (``lstsq`` in float64)."""
        xp = self.xp
        X = self.X.astype(xp.float64)
        return xp.linalg.lstsq(X, self.y.astype(xp.float64), rcond=None)[0]

    def ridge_solution(self, weight_decay: float) -> Any:
        """Minimiser of ``L(w) + weight_decay/2 * |w|**2`` (what L2 weight decay converges to)."""
        xp = self.xp
        H = self.hessian().astype(xp.float64)
        b = (2.0 * self._c / self.n) * (self.X.T.astype(xp.float64) @ self.y.astype(xp.float64))
        return xp.linalg.solve(H + weight_decay * xp.eye(self.dim), b)

    def with_dtype(self, dtype: Any) -> LinearRegression:
        return LinearRegression(
            self.X.astype(dtype), self.y.astype(dtype), convention=self.convention
        )


class SlidingWindowRegression(LinearRegression):
    """Autoregressive fit of a series from a sliding window, as in a small Keras example.

    Row ``t`` of the design matrix is ``series[t : t + window]`` (plus a column of
    ones when ``intercept``), and its target is ``series[t + window + horizon - 1]``.
    This is what ``keras.utils.timeseries_dataset_from_array(data[:-h], data[window+h-1:],
    sequence_length=window)`` feeds a single ``Dense(1)`` layer.

    Parameters
    ----------
    series : array, shape (T,)
        The time series.
    window : int
        Number of past values per example.
    horizon : int
        How far ahead the target lies (1 = the next value).
    intercept : bool
        Append a bias column.

    Examples
    --------
    >>> import numpy as np
    >>> p = SlidingWindowRegression(np.arange(6.0), window=2, intercept=False)
    >>> p.X.tolist(), p.y.tolist()
    ([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0], [3.0, 4.0]], [2.0, 3.0, 4.0, 5.0])
    """

    name = "sliding-window regression"

    def __init__(
        self,
        series: Any,
        window: int,
        *,
        horizon: int = 1,
        intercept: bool = True,
        convention: str = "half_mse",
    ) -> None:
        xp = array_module(series)
        s = _as_float_array(series, "series", xp)
        if s.ndim != 1:
            raise ValueError(f"series must be 1-D, got shape {tuple(s.shape)}")
        for nm, v in (("window", window), ("horizon", horizon)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{nm} must be an int, got {type(v).__name__}")
            if v < 1:
                raise ValueError(f"{nm} must be >= 1, got {v}")
        n = s.shape[0] - window - horizon + 1
        if n < 1:
            raise ValueError(
                f"series of length {s.shape[0]} is too short for window={window} and "
                f"horizon={horizon}"
            )
        rows = xp.arange(n)[:, None] + xp.arange(window)[None, :]
        X = s[rows]
        if intercept:
            X = xp.concatenate([X, xp.ones((n, 1), dtype=s.dtype)], axis=1)
        y = s[window + horizon - 1 : window + horizon - 1 + n]
        self.window = int(window)
        self.horizon = int(horizon)
        self.series = s
        super().__init__(X, y, convention=convention)

    def with_dtype(self, dtype: Any) -> LinearRegression:
        return LinearRegression(
            self.X.astype(dtype), self.y.astype(dtype), convention=self.convention
        )


class GaussianPeak(LeastSquaresProblem):
    """Fit of one Gaussian peak ``a * exp(-((x - b) / c)**2)``; parameters ``w = (a, b, c)``.

    The Jacobian and the residual Hessians are analytic, so :meth:`hessian` is the
    exact (not Gauss-Newton) Hessian of the loss being differentiated.

    Parameters
    ----------
    x, y : array, shape (N,)
        Abscissae and measured values.
    convention : {"half_mse", "mse"}
        Loss ``c * mean(r**2)``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.linspace(-3, 3, 61)
    >>> p = GaussianPeak(x, 2.0 * np.exp(-((x - 0.5) / 1.2) ** 2))
    >>> p.loss(np.array([2.0, 0.5, 1.2]))
    0.0
    """

    name = "Gaussian peak"

    def __init__(self, x: Any, y: Any, *, convention: str = "half_mse") -> None:
        xp = array_module(x, y)
        x = _as_float_array(x, "x", xp)
        y = _as_float_array(y, "y", xp)
        if x.ndim != 1 or y.ndim != 1:
            raise ValueError(
                f"x and y must be 1-D, got shapes {tuple(x.shape)} and {tuple(y.shape)}"
            )
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"x and y have mismatched shapes: x has {x.shape[0]} entries but y has {y.shape[0]}"
            )
        if x.shape[0] == 0:
            raise ValueError("x and y must contain at least one point")
        if x.dtype != y.dtype:
            dt = xp.result_type(x.dtype, y.dtype)
            x, y = x.astype(dt), y.astype(dt)
        self.x = x
        self.y = y
        super().__init__((x, y), 3, convention)

    def _parts(self, w: Any, idx: Any) -> tuple[Any, Any, Any, Any, Any]:
        w = self._w(w)
        idx = self._idx(idx)
        x = self.x if idx is None else self.x[idx]
        a, b, c = w[0], w[1], w[2]
        u = (x - b) / c
        e = self.xp.exp(-u * u)
        return a, c, u, e, idx

    def model(self, w: Any, idx: Any = None) -> Any:
        """``a * exp(-((x - b)/c)**2)`` at ``x[idx]``."""
        a, _, _, e, _ = self._parts(w, idx)
        return a * e

    def residuals(self, w: Any, idx: Any = None) -> Any:
        """``model - y``."""
        a, _, _, e, idx = self._parts(w, idx)
        y = self.y if idx is None else self.y[idx]
        return a * e - y

    def jacobian(self, w: Any, idx: Any = None) -> Any:
        """Columns ``(e, 2aeu/c, 2aeu²/c)`` with ``u = (x - b)/c`` and ``e = exp(-u²)``."""
        a, c, u, e, _ = self._parts(w, idx)
        return self.xp.stack([e, 2 * a * e * u / c, 2 * a * e * u * u / c], axis=1)

    def _residual_terms(self, w: Any, idx: Any) -> Any:
        w = self._w(w)
        sel = slice(None) if idx is None else self.xp.asarray(idx)
        x, y = self.x[sel], self.y[sel]
        a, b, c = w[0], w[1], w[2]
        u = (x - b) / c
        yield "u = (x - b)/c", u, {"x": x, "b": b, "c": c}
        e = self.xp.exp(-u * u)
        yield "e = exp(-u²)", e, {"u": u}
        r = a * e - y
        yield "residuals r = a·e - y", r, {"a": a, "e": e, "y": y}
        return r

    def residual_hessians(self, w: Any, idx: Any = None) -> Any:
        """Exact second derivatives of the model (shape ``(m, 3, 3)``)."""
        xp = self.xp
        a, c, u, e, _ = self._parts(w, idx)
        u2 = u * u
        zero = xp.zeros_like(e)
        h_ab = 2 * e * u / c
        h_ac = 2 * e * u2 / c
        h_bb = 2 * a * e * (2 * u2 - 1) / (c * c)
        h_bc = 4 * a * e * u * (u2 - 1) / (c * c)
        h_cc = 2 * a * e * u2 * (2 * u2 - 3) / (c * c)
        rows = [
            xp.stack([zero, h_ab, h_ac], axis=1),
            xp.stack([h_ab, h_bb, h_bc], axis=1),
            xp.stack([h_ac, h_bc, h_cc], axis=1),
        ]
        return xp.stack(rows, axis=1)

    def with_dtype(self, dtype: Any) -> GaussianPeak:
        return GaussianPeak(self.x.astype(dtype), self.y.astype(dtype), convention=self.convention)


class EmbeddingRegression(_Picklable):
    """Embedding-style least squares: ``l_i = c * |E[ids_i] - t_i|**2``, parameters ``E`` (V, D).

    A batch only touches the rows ``ids[batch]``, so its gradient is *sparse*:
    :meth:`sparse_grad` returns ``(rows, values)`` like a PyTorch sparse COO gradient
    of ``nn.Embedding(sparse=True)``.

    Parameters
    ----------
    ids : int array, shape (N,)
        Row looked up by each example.
    targets : array, shape (N, D)
        Target vector of each example.
    num_rows : int
        Number of embedding rows ``V``.

    Examples
    --------
    >>> import numpy as np
    >>> p = EmbeddingRegression(np.array([0, 2]), np.ones((2, 3)), num_rows=4)
    >>> rows, vals = p.sparse_grad(np.zeros((4, 3)), np.array([1]))
    >>> rows.tolist(), vals.tolist()
    ([2], [[-1.0, -1.0, -1.0]])
    """

    name = "embedding regression"

    def __init__(
        self, ids: Any, targets: Any, num_rows: int, *, convention: str = "half_mse"
    ) -> None:
        xp = array_module(ids, targets)
        self._c = _check_convention(convention)
        self.convention = convention
        ids = xp.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"ids must be an integer array, got dtype {ids.dtype}")
        t = _as_float_array(targets, "targets", xp)
        if ids.ndim != 1 or t.ndim != 2:
            raise ValueError(
                f"ids must be 1-D and targets 2-D, got shapes {tuple(ids.shape)} and "
                f"{tuple(t.shape)}"
            )
        if ids.shape[0] != t.shape[0]:
            raise ValueError(
                f"ids and targets have mismatched shapes: {ids.shape[0]} ids but "
                f"{t.shape[0]} target rows"
            )
        if int(ids.min()) < 0 or int(ids.max()) >= num_rows:
            raise ValueError(
                f"ids must lie in [0, {num_rows}), got [{int(ids.min())}, {int(ids.max())}]"
            )
        self.ids, self.targets = ids, t
        self.num_rows, self.width = int(num_rows), int(t.shape[1])
        self.n = int(ids.shape[0])
        self.xp, self.dtype = xp, t.dtype
        self.shape = (self.num_rows, self.width)

    def _sel(self, idx: Any) -> tuple[Any, Any]:
        if idx is None:
            return self.ids, self.targets
        idx = self.xp.asarray(idx)
        return self.ids[idx], self.targets[idx]

    def loss(self, E: Any, idx: Any = None) -> float:
        """Mean over examples of ``c * |E[id] - t|**2``."""
        ids, t = self._sel(idx)
        r = E[ids] - t
        return float(self._c * self.xp.mean(self.xp.sum(r * r, axis=1)))

    def sparse_grad(self, E: Any, idx: Any = None) -> tuple[Any, Any]:
        """Gradient as ``(unique rows, summed per-row values)`` (coalesced, like PyTorch)."""
        xp = self.xp
        ids, t = self._sel(idx)
        r = (E[ids] - t) * (2.0 * self._c / len(ids))
        rows, inv = xp.unique(ids, return_inverse=True)
        vals = xp.zeros((len(rows), self.width), dtype=r.dtype)
        if xp is np:
            np.add.at(vals, inv.reshape(-1), r)
        else:  # pragma: no cover - CuPy path
            xp.add.at(vals, inv.reshape(-1), r)
        return rows, vals

    def grad(self, E: Any, idx: Any = None) -> Any:
        """Dense gradient (zeros for rows not in the batch)."""
        rows, vals = self.sparse_grad(E, idx)
        G = self.xp.zeros(self.shape, dtype=vals.dtype)
        G[rows] = vals
        return G

    def loss_and_grad(
        self, E: Any, idx: Any = None, *, loss_scale: float = 1.0
    ) -> tuple[float, Any]:
        """Loss and dense gradient of ``loss_scale * L``."""
        return self.loss(E, idx), self.grad(E, idx) * loss_scale

    def bad_rows(self, idx: Any = None) -> np.ndarray:
        """Examples whose target vector contains NaN or Inf."""
        xp = self.xp
        rows = xp.arange(self.n) if idx is None else xp.asarray(idx)
        ok = xp.isfinite(self.targets[rows]).all(axis=1)
        return to_numpy(rows[~ok]).astype(np.int64)


# ---------------------------------------------------------------------- generators
def make_linear(
    n: int = 1000,
    d: int = 5,
    *,
    noise: float = 0.1,
    scales: Sequence[float] | None = None,
    seed: int = 0,
    convention: str = "half_mse",
) -> LinearRegression:
    """Random linear-regression problem ``y = X w* + noise`` (float64).

    Parameters
    ----------
    n, d : int
        Examples and features.
    noise : float
        Standard deviation of the additive noise.
    scales : sequence of float, optional
        Column scales of ``X`` (default: ``1, 2, ..., d`` rescaled to spread the
        Hessian's eigenvalues); they set the condition number.
    seed : int
        Seed of ``np.random.default_rng``.
    convention : {"half_mse", "mse"}
        Loss convention.

    Examples
    --------
    >>> p = make_linear(100, 3, seed=1)
    >>> p.X.shape, p.y.shape
    ((100, 3), (100,))
    """
    rng = np.random.default_rng(seed)
    if scales is None:
        scales = np.linspace(1.0, float(d), d)
    scales = np.asarray(scales, dtype=float)
    if scales.shape != (d,):
        raise ValueError(f"scales must have length d={d}, got {scales.shape}")
    X = rng.standard_normal((n, d)) * scales
    w_true = rng.standard_normal(d)
    y = X @ w_true + noise * rng.standard_normal(n)
    return LinearRegression(X, y, convention=convention)


def make_sliding_window(
    length: int = 400, window: int = 8, *, noise: float = 0.05, seed: int = 0
) -> SlidingWindowRegression:
    """Noisy two-tone sine series wrapped in a :class:`SlidingWindowRegression`.

    Examples
    --------
    >>> p = make_sliding_window(50, 4)
    >>> p.X.shape
    (46, 5)
    """
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    s = np.sin(2 * math.pi * t / 25) + 0.5 * np.sin(2 * math.pi * t / 7)
    s = s + noise * rng.standard_normal(length)
    return SlidingWindowRegression(s, window)


def make_gaussian_peak(
    n: int = 200,
    *,
    amplitude: float = 2.0,
    center: float = 0.3,
    width: float = 1.0,
    noise: float = 0.05,
    seed: int = 0,
) -> GaussianPeak:
    """Noisy samples of ``a * exp(-((x - b)/c)**2)`` on ``x in [-4, 4]``.

    Examples
    --------
    >>> p = make_gaussian_peak(50, seed=2)
    >>> p.n, p.dim
    (50, 3)
    """
    rng = np.random.default_rng(seed)
    x = np.linspace(-4.0, 4.0, n)
    y = amplitude * np.exp(-(((x - center) / width) ** 2)) + noise * rng.standard_normal(n)
    return GaussianPeak(x, y)


def make_embedding(
    n: int = 2000, num_rows: int = 500, width: int = 4, *, zipf: float = 1.3, seed: int = 0
) -> EmbeddingRegression:
    """Embedding problem with Zipf-distributed row frequencies (a few rows are rare).

    Examples
    --------
    >>> p = make_embedding(100, 20, 2)
    >>> p.shape
    (20, 2)
    """
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, num_rows + 1) ** zipf
    ids = rng.choice(num_rows, size=n, p=p / p.sum())
    true = rng.standard_normal((num_rows, width))
    targets = true[ids] + 0.1 * rng.standard_normal((n, width))
    return EmbeddingRegression(ids, targets, num_rows)
