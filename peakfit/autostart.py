"""Robust default start point (placeholder: MATLAB's gaussnstart until the estimator lands)."""

from __future__ import annotations

from typing import Any

from .models import GaussianModel

__all__ = ["auto_start"]


def auto_start(model: GaussianModel, x: Any, Y: Any, **kwargs: Any) -> Any:
    """Start points ``(k, P)`` for sorted data; currently MATLAB's estimator."""
    from .start import estimate_start  # noqa: PLC0415

    return estimate_start(model, x, Y, "matlab")
