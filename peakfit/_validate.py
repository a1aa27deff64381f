"""Input validation at the edge: shapes, dtypes, finiteness. Inner code trusts its inputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError

if TYPE_CHECKING:
    from .models import GaussianModel
    from .options import FitOptions

__all__ = ["as_float_array", "as_real_array", "check_finite", "first_bad", "ragged_error",
           "resolve_options"]


def as_float_array(name: str, a: Any, xp: Any = None) -> Any:
    """A numeric array (NumPy, or CuPy left on its device) as a float array.

    float32 and float64 are kept, integers and booleans become float64. Raises
    :class:`InputError` for ragged, complex or non-numeric input. ``xp`` is accepted for
    symmetry with the callers and ignored (the array's own module is used).
    """
    if isinstance(a, np.ndarray) and a.dtype in (np.float64, np.float32):
        return a
    mod = type(a).__module__
    if not mod.startswith("cupy"):
        try:
            a = np.asarray(a)
        except Exception as exc:  # ragged lists and the like
            raise ragged_error(name, a, exc) from None
    dt = a.dtype
    if dt.kind == "c":
        raise InputError(f"{name} must be real; got complex values (dtype {dt})")
    if dt.kind not in "fiub":
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError):
            raise InputError(f"{name} must be numeric, got dtype {dt}") from None
    elif dt.kind != "f" or dt.itemsize < 4:
        a = a.astype(np.float64)
    return a


def as_real_array(name: str, a: Any, ndim: int | tuple[int, ...] = 1) -> np.ndarray:
    """Convert to a float array (float32 and integers promoted to float64), checking shape.

    Raises :class:`InputError` for complex, non-numeric, empty or wrongly shaped input.
    """
    if a is None:
        raise InputError(f"{name} is missing")
    if type(a).__module__.startswith("cupy"):
        a = a.get()
    arr = as_float_array(name, a)
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim == 2 and 1 in dims and 2 not in dims and 1 in arr.shape:
        arr = arr.ravel()  # a row or column vector is fine where 1-D is expected
    if arr.ndim not in dims:
        want = " or ".join(f"{d}-D" for d in dims)
        raise InputError(f"{name} must be {want}, got an array of shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{name} is empty")
    return np.asarray(arr, dtype=np.float64)


def first_bad(mask: np.ndarray) -> tuple[int, int]:
    """Count of True entries and the first index (flat) where ``mask`` is True."""
    idx = np.flatnonzero(mask)
    return int(idx.size), int(idx[0]) if idx.size else -1


def check_finite(name: str, a: np.ndarray) -> None:
    """Raise :class:`InputError` naming the count and first index of non-finite values."""
    bad = ~np.isfinite(a)
    if bad.any():
        count, first = first_bad(bad)
        kinds = []
        if np.isnan(a).any():
            kinds.append("NaN")
        if np.isinf(a).any():
            kinds.append("Inf")
        raise InputError(
            f"{name} contains {count} non-finite value(s) ({'/'.join(kinds)}), first at index "
            f"{first}; remove them, or pass nan_policy='omit' to exclude those points"
        )


def ragged_error(name: str, a: Any, exc: BaseException | None = None) -> InputError:
    """The error for data that NumPy cannot turn into a rectangular array.

    Names the rows of different lengths when ``a`` is a sequence of sequences.
    """
    try:
        lengths = [len(row) for row in a]
    except TypeError:
        lengths = []
    if len(set(lengths)) > 1:
        first = next(i for i, n in enumerate(lengths) if n != lengths[0])
        return InputError(
            f"{name} is ragged: row 0 has {lengths[0]} values but row {first} has "
            f"{lengths[first]}; give a rectangular array (pad short rows with NaN at the end)"
        )
    why = f" ({exc})" if exc is not None else ""
    return InputError(f"{name} must be numeric and rectangular{why}")


def resolve_options(
    model: GaussianModel, options: FitOptions | None, overrides: dict[str, Any]
) -> FitOptions:
    """The fit options: ``options`` (or MATLAB's defaults) with ``overrides`` applied, checked
    against ``model``. The one place where options are merged, for single fits and batches."""
    from .options import FitOptions, _canonical, fitoptions

    if options is None:
        return fitoptions(model, **overrides)  # checked against the model there
    else:
        if not isinstance(options, FitOptions):
            raise InputError(f"options must be a FitOptions, got {type(options).__name__}")
        opts = options.replace(**_canonical(overrides)) if overrides else options
    opts.check_lengths(model)
    return opts
