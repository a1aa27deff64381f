"""peakfit.distributed: Dask map_blocks over row chunks, locally and on a LocalCluster."""

from __future__ import annotations

import numpy as np
import pytest

import peakfit
from peakfit.errors import InputError

da = pytest.importorskip("dask.array")
from peakfit.distributed import (  # noqa: E402
    fit_dask,
    fit_dask_to_dataframe,
    result_columns,
    unpack,
)

X = np.linspace(0.0, 50.0, 251)


def make_Y(k: int = 23, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    b1 = rng.uniform(12, 18, k)
    b2 = rng.uniform(30, 38, k)
    P = np.column_stack([rng.uniform(1, 3, k), b1, rng.uniform(2, 4, k),
                         rng.uniform(1, 3, k), b2, rng.uniform(2, 5, k)])
    model = peakfit.GaussianModel(2)
    Y = np.stack([model(X, p) for p in P]) + 0.01 * rng.standard_normal((k, X.size))
    return Y, np.column_stack([b1, b2])


def reference(Y, x=X, rows=None, **kw) -> np.ndarray:
    """fit_gaussians_batch on the same data, one call per block of ``rows`` rows.

    (The 'auto' start chooses its downsampling factor per call, so a row's result can depend
    on the rows fitted with it; fit_dask equals fit_gaussians_batch block by block.)
    """
    from peakfit.batch import fit_gaussians_batch

    k = Y.shape[0]
    rows = rows or k
    parts = []
    for i in range(0, k, rows):
        sl = slice(i, min(i + rows, k))
        kwi = {key: (v[sl] if key in ("weights", "start") and np.ndim(v) == 2 else v)
               for key, v in kw.items()}
        r = fit_gaussians_batch(x if np.ndim(x) == 1 else x[sl], Y[sl], 2, **kwi)
        t = r.to_table()
        t["state"] = t["state_code"]
        t["quality"] = r.quality
        parts.append(np.column_stack([np.asarray(t[c], dtype=float)
                                      for c in result_columns(2, kw.get("baseline", "none"))]))
    return np.concatenate(parts)


def test_result_columns_layout():
    assert result_columns(2) == [
        "state", "exitflag", "sse", "rsquare", "adjrsquare", "rmse", "dfe", "iterations",
        "quality",
        "mean1", "mean2", "a1", "b1", "c1", "a2", "b2", "c2",
        "a1_err", "b1_err", "c1_err", "a2_err", "b2_err", "c2_err"]
    assert result_columns(1, "linear")[-7:] == ["d0", "d1", "a1_err", "b1_err", "c1_err",
                                                "d0_err", "d1_err"]


def test_fit_dask_threads_equals_batch_block_by_block():
    Y, truth = make_Y()
    for chunks in ((5, 251), (23, 100), (1, 251)):  # rows split unevenly; columns split
        packed = fit_dask(da.from_array(Y, chunks=chunks), X, n=2)
        assert packed.shape == (23, 23) and packed.chunks[1] == (23,)
        got = packed.compute(scheduler="threads")
        np.testing.assert_array_equal(got, reference(Y, rows=chunks[0]))
    cols = result_columns(2)
    means = got[:, [cols.index("mean1"), cols.index("mean2")]]
    np.testing.assert_allclose(means, truth, atol=0.05)
    assert set(got[:, cols.index("state")].tolist()) == {0.0}


def test_matlab_start_does_not_depend_on_the_chunking():
    Y, _ = make_Y(k=12, seed=5)
    ref = reference(Y, start="matlab")
    for rows in (5, 1, 12):
        got = fit_dask(da.from_array(Y, chunks=(rows, -1)), X, n=2, start="matlab").compute()
        np.testing.assert_array_equal(got, ref)


def test_numpy_input_per_spectrum_x_and_kwargs_pass_through():
    Y, _ = make_Y(k=6, seed=1)
    Xk = np.tile(X, (6, 1)) + np.arange(6)[:, None]  # each spectrum its own (shifted) x
    packed = fit_dask(Y, Xk, n=2, start="matlab", max_iter=1).compute(scheduler="sync")
    np.testing.assert_array_equal(packed, reference(Y, Xk, start="matlab", max_iter=1))
    assert packed.shape == (6, 23)
    cols = result_columns(2)
    assert packed[:, cols.index("iterations")].tolist() == [1.0] * 6
    assert not np.array_equal(packed, reference(Y, Xk, start="matlab"))  # max_iter got through


def test_per_spectrum_weights_and_start_follow_their_rows():
    Y, _ = make_Y(k=9, seed=4)
    W = np.ones_like(Y)
    W[:, :50] = 0.0
    W[4] = 1.0
    start = np.tile([2.0, 15.0, 3.0, 2.0, 34.0, 3.0], (9, 1))
    start[:, 1] += np.arange(9) * 0.1
    packed = fit_dask(da.from_array(Y, chunks=(4, -1)), X, n=2, weights=W,
                      start=start).compute()
    np.testing.assert_array_equal(packed, reference(Y, rows=4, weights=W, start=start))
    assert not np.array_equal(packed, reference(Y, rows=4, start=start))


def test_unpack_and_dataframe():
    pytest.importorskip("pandas")
    Y, truth = make_Y(k=7, seed=2)
    df = fit_dask_to_dataframe(da.from_array(Y, chunks=(3, -1)), X, n=2)
    assert list(df.columns) == ["index", *result_columns(2)]
    assert df["index"].tolist() == list(range(7))
    assert df["state"].dtype == np.int64 and df["dfe"].tolist() == [251 - 6] * 7
    np.testing.assert_allclose(df[["mean1", "mean2"]].to_numpy(), truth, atol=0.05)
    t = unpack(fit_dask(Y, X, n=2).compute(), 2)
    np.testing.assert_array_equal(t["b2"], df["b2"].to_numpy())


def test_bad_shapes():
    with pytest.raises(InputError, match=r"Y must be 2-D \(spectra x points\); got shape \(5,\)"):
        fit_dask(da.ones(5), X, n=1)
    with pytest.raises(InputError, match=r"x has shape \(10,\); expected \(251,\) or \(3, 251\)"):
        fit_dask(np.ones((3, 251)), np.arange(10.0), n=1)
    with pytest.raises(InputError, match=r"packed result must have shape \(k, 16\)"):
        unpack(np.ones((2, 3)), 1)


@pytest.mark.slow
def test_local_cluster_two_worker_processes():
    import os

    distributed = pytest.importorskip("distributed")
    Y, _ = make_Y(k=40, seed=3)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        pids = set(client.run(os.getpid).values())
        packed = client.persist(fit_dask(da.from_array(Y, chunks=(5, -1)), X, n=2))
        distributed.wait(packed)
        holders = {w for ws in client.who_has(packed).values() for w in ws}
        got = packed.compute()
        df = fit_dask_to_dataframe(da.from_array(Y, chunks=(15, -1)), X, n=2)
    assert len(pids) == 2 and os.getpid() not in pids  # two separate worker processes
    assert len(holders) == 2  # the 8 blocks were fitted on both workers
    np.testing.assert_array_equal(got, reference(Y, rows=5))
    np.testing.assert_array_equal(df[result_columns(2)].to_numpy(), reference(Y, rows=15))
