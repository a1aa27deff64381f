"""Fit along one dimension of an xarray DataArray: hyperspectral cubes, Raman maps, series.

:func:`fit` reshapes the array so that ``dim`` is the spectral axis and every other position is
one spectrum, runs :func:`peakfit.fit_gaussians_batch` on them and returns a
:class:`xarray.Dataset` over the other dimensions (their coordinates and the array's attributes
kept). A Dask-backed (chunked) array gives a lazy Dataset: each chunk is fitted by one batch
call when computed. Importing this module also registers the ``.peakfit`` accessor, so
``da.peakfit.fit(dim="energy", n=4)`` is the same call.

Variables of the result (``...`` = the other dimensions):

==================  ==================  =====================================================
name                dims                meaning
==================  ==================  =====================================================
``coefficients``    ``(..., param)``    MATLAB-ordered coefficients (``a1, b1, c1, ...``)
``stderr``          ``(..., param)``    standard errors (NaN at active bounds)
``at_bound``        ``(..., param)``    the coefficient is held at a bound
``means``           ``(..., peak)``     sorted peak centres
``sse, rsquare``    ``(...)``           goodness of fit (MATLAB's formulas)
``rmse``            ``(...)``
``dfe, iterations`` ``(...)``           int
``state``           ``(...)``           :class:`~peakfit.result.FitState` code (0 converged)
``converged``       ``(...)``           ``state == 0``
``n``               ``(...)``           peaks chosen, only with ``n='auto'``
==================  ==================  =====================================================

xarray is optional: ``pip install "peakfit[xarray]"``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError
from .models import GaussianModel
from .result import FitState

__all__ = ["PeakfitAccessor", "fit"]

_XR_EXTRA = 'pip install "peakfit[xarray]"'


def _xr() -> Any:
    try:
        import xarray as xr
    except ImportError as exc:  # pragma: no cover - xarray is in the test extra
        raise ImportError(f"peakfit.xarray needs xarray; install it with: {_XR_EXTRA}") from exc
    return xr


def _outputs(n: Any, baseline: str, n_max: int | None) -> tuple[list[str], dict[str, Any], int,
                                                                  int, tuple[str, ...]]:
    """Names, dtypes, P, peaks and coefficient names of the per-spectrum outputs."""
    auto = isinstance(n, str)
    if auto:
        from .selection import _DEFAULT_N_MAX

        peaks = int(n_max or _DEFAULT_N_MAX)
    else:
        peaks = int(n)
    model = GaussianModel(peaks, baseline)
    names = ["coefficients", "stderr", "at_bound", "means", "sse", "rsquare", "state"]
    if not auto:
        names += ["rmse", "dfe", "iterations"]
    else:
        names += ["n"]
    dtypes = {"coefficients": float, "stderr": float, "at_bound": bool, "means": float,
              "sse": float, "rsquare": float, "state": np.int8, "rmse": float,
              "dfe": np.int64, "iterations": np.int64, "n": np.int64}
    return names, dtypes, model.n_params, peaks, model.names


def _fit_block(Y: np.ndarray, x: np.ndarray, n: Any, baseline: str, n_max: int | None,
               kwargs: dict[str, Any]) -> tuple[np.ndarray, ...]:
    """Fit the spectra of ``Y`` (..., m); arrays shaped (..., P), (..., n) or (...)."""
    from .batch import fit_gaussians_batch
    from .selection import fit_auto_batch

    names, dtypes, P, peaks, _ = _outputs(n, baseline, n_max)
    lead = Y.shape[:-1]
    flat = np.ascontiguousarray(Y.reshape(-1, Y.shape[-1]), dtype=float)
    if flat.shape[0] == 0:
        shapes = {"coefficients": (P,), "stderr": (P,), "at_bound": (P,), "means": (peaks,)}
        return tuple(np.empty(lead + shapes.get(k, ()), dtype=dtypes[k]) for k in names)
    if isinstance(n, str):
        r = fit_auto_batch(x, flat, n, baseline=baseline, n_max=n_max, **kwargs)
        held = np.zeros_like(r.p, dtype=bool)
        for c, f in r.fits.items():
            sel = r.n == c
            held[sel, : 3 * c] = f.held[sel, : 3 * c]
            held[sel, 3 * peaks :] = f.held[sel, 3 * c :]
    else:
        r = fit_gaussians_batch(x, flat, int(n), baseline=baseline, **kwargs)
        held = r.held
    cols = {"coefficients": r.p, "stderr": r.stderr, "at_bound": held, "means": r.means,
            "sse": r.sse, "rsquare": r.rsquare, "state": r.state}
    for k in ("rmse", "dfe", "iterations", "n"):
        if k in names:
            cols[k] = getattr(r, k)
    out = []
    for k in names:
        a = np.asarray(cols[k]).astype(dtypes[k], copy=False)
        out.append(a.reshape(lead + a.shape[1:]))
    return tuple(out)


def fit(
    da: Any,
    dim: str,
    n: int | str = 4,
    *,
    baseline: str = "none",
    n_max: int | None = None,
    device: str = "cpu",
    **kwargs: Any,
) -> Any:
    """Fit a sum of ``n`` Gaussians along ``dim`` at every other position of ``da``.

    Parameters
    ----------
    da : xarray.DataArray
        The data; ``dim`` is the spectral axis (its coordinate is ``x``; without one,
        ``0, 1, ...``). NaN values are handled as by ``fit_gaussians_batch``
        (``nan_policy='pad'`` by default).
    dim : str
        The dimension to fit along.
    n : int or 'auto'
        Number of peaks, or ``'auto'`` to choose it per spectrum by BIC (``criterion=`` in
        ``kwargs`` for another; padded results, see :mod:`peakfit.selection`).
    baseline : str
        As in :func:`peakfit.fit_gaussians_batch`.
    n_max : int, optional
        The largest ``n`` tried with ``n='auto'`` (default 8).
    device : {'cpu', 'gpu', 'auto'}
        Where to fit (default ``'cpu'``: Dask workers usually run on CPUs).
    **kwargs
        Passed to :func:`peakfit.fit_gaussians_batch` (``lower``, ``upper``, ``tol_fun``,
        ``start``, ``weights`` of shape ``(m,)``, ...).

    Returns
    -------
    xarray.Dataset
        The variables in the module docstring, over the other dimensions of ``da`` with their
        coordinates, plus ``param`` (coefficient names) and ``peak`` (1..n); ``da.attrs``
        are kept and ``peakfit_*`` attributes describe the model. Lazy when ``da`` is chunked
        (chunks along ``dim`` are merged first).

    Raises
    ------
    InputError
        ``dim`` is not a dimension of ``da``, or ``da`` is not a DataArray.

    Examples
    --------
    >>> import numpy as np, xarray as xr, peakfit.xarray
    >>> e = np.linspace(0, 10, 101)
    >>> centre = xr.DataArray([[3.0, 4.0], [5.0, 6.0]], dims=("y", "x"),
    ...                       coords={"y": [10, 20], "x": [1, 2]})
    >>> da = np.exp(-((xr.DataArray(e, dims="energy", coords={"energy": e}) - centre) / 0.8) ** 2)
    >>> da.attrs["units"] = "counts"
    >>> ds = peakfit.xarray.fit(da, dim="energy", n=1)
    >>> ds.means.sel(peak=1).round(6).values.tolist()
    [[3.0, 4.0], [5.0, 6.0]]
    >>> ds.coefficients.dims, ds.attrs["units"], bool(ds.converged.all())
    (('y', 'x', 'param'), 'counts', True)
    >>> float(da.peakfit.fit("energy", n=1).sel(param="b1", y=20, x=2).coefficients.round(6))
    6.0
    """
    xr = _xr()
    if not isinstance(da, xr.DataArray):
        raise InputError(f"peakfit.xarray.fit needs an xarray.DataArray; got {type(da).__name__}")
    if dim not in da.dims:
        raise InputError(f"dim={dim!r} is not a dimension of the array; its dimensions are "
                         f"{list(da.dims)}")
    if isinstance(n, str) and n.lower() != "auto":
        raise InputError(f"n must be a positive int or 'auto'; got {n!r}")
    n = "auto" if isinstance(n, str) else n
    x = (np.asarray(da[dim].values, dtype=float) if dim in da.coords
         else np.arange(da.sizes[dim], dtype=float))
    names, dtypes, P, peaks, pnames = _outputs(n, baseline, n_max)
    per_param = {"coefficients", "stderr", "at_bound"}
    core = [["param"] if k in per_param else ["peak"] if k == "means" else [] for k in names]
    kw = {"device": device, **kwargs}
    chunked = da.chunks is not None
    if chunked:
        da = da.chunk({dim: -1})
    outs = xr.apply_ufunc(
        _fit_block, da, kwargs={"x": x, "n": n, "baseline": baseline, "n_max": n_max,
                                "kwargs": kw},
        input_core_dims=[[dim]], output_core_dims=core,
        dask="parallelized" if chunked else "forbidden",
        output_dtypes=[dtypes[k] for k in names],
        dask_gufunc_kwargs={"output_sizes": {"param": P, "peak": peaks}},
        keep_attrs=False,
    )
    ds = xr.Dataset(dict(zip(names, outs)))
    ds = ds.assign_coords(param=list(pnames), peak=np.arange(1, peaks + 1))
    ds["converged"] = ds["state"] == int(FitState.CONVERGED)
    ds["state"].attrs.update(
        flag_values=[int(s) for s in FitState],
        flag_meanings=" ".join(s.name.lower() for s in FitState))
    ds.attrs.update(da.attrs)
    ds.attrs.update(peakfit_model=GaussianModel(peaks, baseline).matlab_name,
                    peakfit_n=str(n), peakfit_dim=dim)
    if da.name is not None:
        ds.attrs["peakfit_variable"] = str(da.name)
    return ds


class PeakfitAccessor:
    """``da.peakfit.fit(dim, n, ...)``: :func:`fit` as a DataArray accessor."""

    def __init__(self, da: Any) -> None:
        self._da = da

    def fit(self, dim: str, n: int | str = 4, **kwargs: Any) -> Any:
        """Same as :func:`peakfit.xarray.fit` on this array."""
        return fit(self._da, dim, n, **kwargs)


def _register() -> None:
    try:
        import xarray as xr
    except ImportError:  # pragma: no cover
        return
    if not hasattr(xr.DataArray, "peakfit"):
        xr.register_dataarray_accessor("peakfit")(PeakfitAccessor)


_register()
