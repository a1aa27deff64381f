"""peakfit.xarray: a Dataset over the other dims, equal to fit_gaussians_batch exactly."""

from __future__ import annotations

import numpy as np
import pytest

import peakfit
from peakfit.errors import InputError

xr = pytest.importorskip("xarray")
import peakfit.xarray as pxr  # noqa: E402


def cube(seed: int = 0, ny: int = 3, nx: int = 4, m: int = 120):
    """A small Raman-map-like cube (y, x, shift) with two peaks that move across the map."""
    rng = np.random.default_rng(seed)
    e = np.linspace(100.0, 200.0, m)
    b1 = rng.uniform(130, 140, (ny, nx))
    b2 = rng.uniform(160, 170, (ny, nx))
    data = (2.0 * np.exp(-((e - b1[..., None]) / 5.0) ** 2)
            + 1.0 * np.exp(-((e - b2[..., None]) / 6.0) ** 2)
            + 0.02 * rng.standard_normal((ny, nx, m)))
    da = xr.DataArray(data, dims=("y", "x", "shift"),
                      coords={"y": np.arange(ny) * 0.5, "x": np.arange(nx) * 0.25,
                              "shift": e, "label": ("x", [f"c{i}" for i in range(nx)])},
                      attrs={"units": "counts", "instrument": "R1"}, name="intensity")
    return da


def test_equals_fit_gaussians_batch_exactly():
    da = cube()
    ds = pxr.fit(da, "shift", n=2, baseline="constant")
    ref = peakfit.fit_gaussians_batch(da["shift"].values, da.values.reshape(-1, 120), n=2,
                                      baseline="constant", device="cpu")
    assert ds.coefficients.dims == ("y", "x", "param")
    assert ds.param.values.tolist() == ["a1", "b1", "c1", "a2", "b2", "c2", "d0"]
    np.testing.assert_array_equal(ds.coefficients.values.reshape(-1, 7), ref.p)
    np.testing.assert_array_equal(ds.stderr.values.reshape(-1, 7), ref.stderr)
    np.testing.assert_array_equal(ds.sse.values.ravel(), ref.sse)
    np.testing.assert_array_equal(ds.state.values.ravel(), ref.state)
    np.testing.assert_array_equal(ds.means.values.reshape(-1, 2), ref.means)
    np.testing.assert_array_equal(ds.iterations.values.ravel(), ref.iterations)
    np.testing.assert_array_equal(ds.at_bound.values.reshape(-1, 7), ref.held)
    assert bool(ds.converged.all())


def test_keeps_coords_and_attrs():
    da = cube()
    ds = da.peakfit.fit("shift", n=2)
    np.testing.assert_array_equal(ds.y.values, da.y.values)
    np.testing.assert_array_equal(ds.x.values, da.x.values)
    assert ds.label.values.tolist() == ["c0", "c1", "c2", "c3"]
    assert "shift" not in ds.dims
    assert ds.attrs["units"] == "counts" and ds.attrs["instrument"] == "R1"
    assert ds.attrs["peakfit_model"] == "Gauss2" and ds.attrs["peakfit_variable"] == "intensity"
    assert ds.state.attrs["flag_meanings"].split()[0] == "converged"


def test_dask_chunks_are_lazy_and_equal():
    pytest.importorskip("dask")
    da = cube(seed=1, ny=4, nx=5)
    lazy = pxr.fit(da.chunk({"y": 2, "x": 3, "shift": 40}), "shift", n=2)
    assert lazy.coefficients.chunks is not None  # nothing computed yet
    eager = pxr.fit(da, "shift", n=2)
    got = lazy.compute()
    for v in ("coefficients", "stderr", "sse", "state", "means"):
        np.testing.assert_array_equal(got[v].values, eager[v].values)


def test_time_series_without_dim_coordinate():
    t = np.arange(3)
    data = np.stack([np.exp(-((np.arange(50.0) - c) / 4) ** 2) for c in (20, 25, 30)])
    da = xr.DataArray(data, dims=("time", "channel"), coords={"time": t})
    ds = pxr.fit(da, "channel", n=1)
    np.testing.assert_allclose(ds.means.sel(peak=1).values, [20, 25, 30], atol=1e-6)


def test_n_auto_per_position():
    e = np.linspace(0, 10, 200)
    rng = np.random.default_rng(4)
    g = lambda b: np.exp(-((e - b) / 0.6) ** 2)  # noqa: E731
    data = np.stack([g(3), g(3) + g(7)]) + 0.02 * rng.standard_normal((2, 200))
    da = xr.DataArray(data, dims=("pos", "e"), coords={"e": e})
    ds = pxr.fit(da, "e", n="auto", n_max=3)
    assert ds.n.values.tolist() == [1, 2]
    assert ds.coefficients.shape == (2, 9) and np.isnan(ds.coefficients.values[0, 3:]).all()


def test_errors():
    da = cube()
    with pytest.raises(InputError, match=r"dim='energy' is not a dimension of the array; its "
                                         r"dimensions are \['y', 'x', 'shift'\]"):
        pxr.fit(da, "energy")
    with pytest.raises(InputError, match=r"needs an xarray\.DataArray"):
        pxr.fit(da.values, "shift")
