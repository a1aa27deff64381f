"""Losses that can fail before the first step: Poisson ``log(μ)`` and a relative error ``r²/y²``.

They exist to show (and test) :func:`peakfit.gd.diagnose_loss`: a Poisson negative
log-likelihood with an identity link evaluates ``log(0)`` where a rate is zero and
``log`` of a negative number where it is negative; a relative squared error divides by
``y²`` and gives ``0/0`` on rows whose target is zero. Both have exact gradients and
the interface :func:`peakfit.gd.train` needs (``n``, ``dim``, ``xp``, ``dtype``,
``loss``, ``loss_and_grad``, ``bad_rows``) plus ``loss_terms`` for the diagnosis.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .problems import _as_float_array, _Picklable, array_module, to_numpy

__all__ = ["PoissonRegression", "RelativeErrorRegression"]


class _RowLoss(_Picklable):
    """Shared plumbing: data ``X`` (N, d), ``y`` (N,), mean over the batch of a row loss."""

    linear = False
    name = "row loss"

    def __init__(self, X: Any, y: Any) -> None:
        xp = array_module(X, y)
        X = _as_float_array(X, "X", xp)
        y = _as_float_array(y, "y", xp)
        if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
            raise ValueError(
                f"X must be (N, d) and y (N,), got shapes {tuple(X.shape)} and {tuple(y.shape)}"
            )
        self.X, self.y = X, y
        self.xp, self.dtype = xp, X.dtype
        self.n, self.dim = int(X.shape[0]), int(X.shape[1])

    def _sel(self, idx: Any) -> tuple[Any, Any]:
        if idx is None:
            return self.X, self.y
        idx = self.xp.asarray(idx)
        return self.X[idx], self.y[idx]

    def loss(self, w: Any, idx: Any = None) -> float:
        """Mean row loss over ``idx`` (all rows when None)."""
        return self.loss_and_grad(w, idx)[0]

    def grad(self, w: Any, idx: Any = None) -> Any:
        """Gradient of :meth:`loss`."""
        return self.loss_and_grad(w, idx)[1]

    def loss_and_grad(
        self, w: Any, idx: Any = None, *, loss_scale: float = 1.0
    ) -> tuple[float, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def bad_rows(self, idx: Any = None) -> np.ndarray:
        """Rows with NaN or Inf in ``X`` or ``y``."""
        xp = self.xp
        rows = xp.arange(self.n) if idx is None else xp.asarray(idx)
        ok = xp.isfinite(self.X[rows]).all(axis=1) & xp.isfinite(self.y[rows])
        return to_numpy(rows[~ok]).astype(np.int64)


class PoissonRegression(_RowLoss):
    """Poisson regression with identity link: ``μ = X w``, loss ``mean(μ - y·log μ)``.

    The gradient is ``Xᵀ(1 - y/μ)/m``. ``μ = 0`` gives ``log(0) = -inf`` and ``μ < 0``
    gives ``log`` of a negative number (NaN): the loss is undefined there, whatever the
    learning rate.

    Examples
    --------
    >>> import numpy as np
    >>> p = PoissonRegression(np.ones((2, 1)), np.array([1.0, 1.0]))
    >>> p.loss(np.ones(1)), p.grad(np.ones(1)).tolist()
    (1.0, [0.0])
    """

    name = "Poisson regression"

    def loss_and_grad(
        self, w: Any, idx: Any = None, *, loss_scale: float = 1.0
    ) -> tuple[float, Any]:
        """Loss and gradient of ``loss_scale * L`` (the loss is returned unscaled)."""
        X, y = self._sel(idx)
        mu = X @ self.xp.asarray(w, dtype=self.dtype)
        loss = float(self.xp.mean(mu - y * self.xp.log(mu)))
        g = X.T @ ((1 - y / mu) * (loss_scale / len(y)))
        return loss, g

    def loss_terms(self, w: Any, idx: Any = None) -> Any:
        """Intermediates ``μ``, ``log(μ)``, ``y·log(μ)``, ``μ - y·log(μ)`` and the mean."""
        X, y = self._sel(idx)
        mu = X @ self.xp.asarray(w, dtype=self.dtype)
        yield "μ = X·w", mu, {"y": y}
        lg = self.xp.log(mu)
        yield "log(μ)", lg, {"μ": mu, "y": y}
        ylg = y * lg
        yield "y·log(μ)", ylg, {"y": y, "log(μ)": lg}
        row = mu - ylg
        yield "μ - y·log(μ)", row, {"μ": mu, "y·log(μ)": ylg}
        yield "loss = mean(μ - y·log(μ))", self.xp.asarray(self.xp.mean(row)), {}


class RelativeErrorRegression(_RowLoss):
    """Relative squared error ``½·mean((x·w - y)²/y²)``; gradient ``Xᵀ(r/y²)/m``.

    A row with ``y = 0`` divides by zero: ``0/0`` (NaN) while its residual is 0,
    ``r²/0 = inf`` afterwards.

    Examples
    --------
    >>> import numpy as np
    >>> p = RelativeErrorRegression(np.ones((2, 1)), np.array([2.0, 4.0]))
    >>> p.loss(np.array([2.0]))  # r = (0, -2): ½·mean(0, 4/16)
    0.0625
    """

    name = "relative-error regression"

    def loss_and_grad(
        self, w: Any, idx: Any = None, *, loss_scale: float = 1.0
    ) -> tuple[float, Any]:
        """Loss and gradient of ``loss_scale * L`` (the loss is returned unscaled)."""
        X, y = self._sel(idx)
        r = X @ self.xp.asarray(w, dtype=self.dtype) - y
        y2 = y * y
        loss = float(0.5 * self.xp.mean(r * r / y2))
        g = X.T @ (r / y2 * (loss_scale / len(y)))
        return loss, g

    def loss_terms(self, w: Any, idx: Any = None) -> Any:
        """Intermediates ``r``, ``y²``, ``r²/y²`` and the mean."""
        X, y = self._sel(idx)
        r = X @ self.xp.asarray(w, dtype=self.dtype) - y
        yield "r = X·w - y", r, {"y": y}
        y2 = y * y
        yield "normaliser y²", y2, {"y": y}
        q = r * r / y2
        yield "r²/y²", q, {"r": r, "y²": y2}
        yield "loss = ½·mean(r²/y²)", self.xp.asarray(0.5 * self.xp.mean(q)), {}
