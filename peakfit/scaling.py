"""Internal rescaling of x and y so the solver works with O(1) numbers.

The solver runs on ``x' = (x - x0)/sx`` and ``y' = y/sy`` (``x0`` the middle of the x range,
``sx`` its half-width, ``sy`` the largest ``|y|``). The model is exactly invariant under the map
(:meth:`GaussianModel.rescale`), so this changes nothing but conditioning: x around 1e4 with a
span of 1e-3, or y in the millions, fit as well as x in [-1, 1]. Polynomial and exponential
baselines mix their coefficients under a shift, so when such a baseline has finite bounds only a
scale is applied (``x0 = 0``), which maps each bound on its own.

Everything is vectorised over spectra: ``x0, sx, sy`` are arrays of shape ``(k, 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._xp import get_xp
from .models import GaussianModel

__all__ = ["Scaling"]


@dataclass(frozen=True)
class Scaling:
    """Per-spectrum affine scaling of x and y (arrays of shape ``(k, 1)``)."""

    model: GaussianModel
    x0: Any
    sx: Any
    sy: Any

    @classmethod
    def for_data(
        cls, model: GaussianModel, x: Any, Y: Any, lower: Any = None, upper: Any = None,
        valid: Any = None,
    ) -> Scaling:
        """Choose the scaling for data ``x`` ((m,) or (k, m)) and ``Y`` (k, m).

        ``valid`` (k, m) marks the points that count (e.g. non-zero weight).
        """
        xp = get_xp(x, Y)
        k, m = Y.shape
        X = xp.broadcast_to(x, (k, m)) if x.ndim == 1 else x
        if valid is None:
            xmin = X.min(axis=1, keepdims=True)
            xmax = X.max(axis=1, keepdims=True)
            ymax = xp.abs(Y).max(axis=1, keepdims=True)
        else:
            xmin = xp.where(valid, X, xp.inf).min(axis=1, keepdims=True)
            xmax = xp.where(valid, X, -xp.inf).max(axis=1, keepdims=True)
            ymax = xp.where(valid, xp.abs(Y), 0.0).max(axis=1, keepdims=True)
            none = ~valid.any(axis=1, keepdims=True)
            xmin = xp.where(none, 0.0, xmin)
            xmax = xp.where(none, 1.0, xmax)
        x0 = 0.5 * (xmin + xmax)
        sx = 0.5 * (xmax - xmin)
        if not cls._may_shift(model, lower, upper):
            sx = xp.maximum(xp.abs(xmin), xp.abs(xmax))
            x0 = xp.zeros_like(x0)
        sx = xp.where((sx > 0) & xp.isfinite(sx), sx, 1.0)
        sy = xp.where((ymax > 0) & xp.isfinite(ymax), ymax, 1.0)
        return cls(model, x0, sx, sy)

    @staticmethod
    def _may_shift(model: GaussianModel, lower: Any, upper: Any) -> bool:
        if model.baseline in ("none", "constant"):
            return True
        if not model.baseline_kind.shifts:
            return False
        k = 3 * model.n
        for b in (lower, upper):
            if b is not None and bool(np.any(np.isfinite(np.asarray(b)[..., k:]))):
                return False
        return True

    def x_in(self, x: Any) -> Any:
        """``(x - x0)/sx`` for x of shape (m,) (k must be 1) or (k, m)."""
        if x.ndim == 1:
            return (x - self.x0[0, 0]) / self.sx[0, 0]
        return (x - self.x0) / self.sx

    def y_in(self, Y: Any) -> Any:
        return Y / self.sy

    def params_in(self, p: Any) -> Any:
        return self.model.rescale(p, self.x0, self.sx, self.sy)

    def params_out(self, p: Any) -> Any:
        return self.model.unscale(p, self.x0, self.sx, self.sy)

    def params_out_jacobian(self, p: Any) -> Any:
        """``∂ params_out / ∂p`` at scaled rows ``p`` (k, P): shape (k, P, P)."""
        return self.model.unscale_jacobian(p, self.x0, self.sx, self.sy)

    def bounds_in(self, lo: Any, hi: Any) -> tuple[Any, Any]:
        """Map bounds (P,) or (k, P) to the scaled problem, shape (k, P)."""
        xp = get_xp(self.sx)
        m = self.model
        k = self.sx.shape[0]
        lo = xp.broadcast_to(xp.asarray(lo, dtype=float), (k, m.n_params)).copy()
        hi = xp.broadcast_to(xp.asarray(hi, dtype=float), (k, m.n_params)).copy()
        xpow, ypow = m.bound_scale()
        xpow = xp.asarray(xpow)
        ypow = xp.asarray(ypow)
        fac = self.sx**xpow / self.sy**ypow  # (k, P) multiplicative factor (positive)
        out = []
        for b in (lo, hi):
            nb = b * fac
            kk = 3 * m.n
            # centres are shifted as well as scaled
            with np.errstate(invalid="ignore"):
                nb[:, 1:kk:3] = (b[:, 1:kk:3] - self.x0) / self.sx
            if m.baseline not in ("none", "constant") and bool(xp.any(self.x0 != 0)):
                nb[:, kk:] = b[:, kk:]  # infinite by construction (shift only then)
            out.append(nb)
        return out[0], out[1]
