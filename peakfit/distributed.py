"""Fit a Dask array of spectra chunk by chunk: one laptop, a cluster, or GPU workers.

:func:`fit_dask` maps :func:`peakfit.fit_gaussians_batch` over the row chunks of a Dask array
``Y`` (``k`` spectra x ``m`` points) with :meth:`dask.array.Array.map_blocks`. Each block of
spectra is fitted where it lives, and only a small packed result comes back: a ``(k, q)``
float64 array with the columns of :func:`result_columns`. The same call runs

* on one machine with Dask's default threaded scheduler;
* on a ``dask.distributed`` cluster: create a ``Client`` first and ``.compute()`` uses it;
* on GPU workers (``dask-cuda``'s ``LocalCUDACluster``): pass ``device='gpu'`` so every worker
  fits its blocks with CuPy.

Rows of ``Y`` are rechunked, if needed, so that every block spans all ``m`` columns (a spectrum
is never split). Dask is optional: ``pip install "peakfit[dask]"``.

Examples
--------
>>> import numpy as np, dask.array as da
>>> from peakfit.distributed import fit_dask, result_columns
>>> x = np.linspace(0, 10, 101)
>>> Y = np.stack([2 * np.exp(-((x - b) / 1.2) ** 2) for b in (4.0, 5.0, 6.0)])
>>> packed = fit_dask(da.from_array(Y, chunks=(2, 101)), x, n=1)
>>> cols = result_columns(1)
>>> np.round(packed.compute()[:, cols.index("mean1")], 6).tolist()
[4.0, 5.0, 6.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError
from .models import GaussianModel

__all__ = ["fit_dask", "fit_dask_to_dataframe", "result_columns", "unpack"]

#: Summary columns at the start of the packed result (``state`` holds ``FitState`` values).
SUMMARY_COLUMNS = ("state", "exitflag", "sse", "rsquare", "adjrsquare", "rmse", "dfe",
                   "iterations", "quality")


def _require_dask() -> Any:
    try:
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - exercised only without dask
        raise ImportError(
            'peakfit.distributed needs dask; install it with: pip install "peakfit[dask]"'
        ) from exc
    return da


def result_columns(n: int, baseline: str = "none") -> list[str]:
    """Column layout of the packed ``(k, q)`` result of :func:`fit_dask`.

    ``state, exitflag, sse, rsquare, adjrsquare, rmse, dfe, iterations, quality``, then
    ``mean1 .. mean{n}`` (sorted centres), the coefficients in MATLAB order (``a1, b1, c1,
    ..., a{n}, b{n}, c{n}`` and the baseline's), then their standard errors (``a1_err`` ...).
    Integer-valued columns (``state``, ``exitflag``, ``dfe``, ``iterations``, ``quality``) are
    stored as floats; ``state`` is the integer :class:`~peakfit.result.FitState` code
    (``state_code`` in :meth:`BatchFit.to_table`), ``quality`` the integer
    :class:`~peakfit.result.Quality` flags (``BatchFit.quality``); the other names are those of
    the table.

    Parameters
    ----------
    n : int
        Number of Gaussian terms.
    baseline : str
        Baseline kind.

    Returns
    -------
    list of str

    Examples
    --------
    >>> result_columns(1)
    ['state', 'exitflag', 'sse', 'rsquare', 'adjrsquare', 'rmse', 'dfe', 'iterations', \
'quality', 'mean1', 'a1', 'b1', 'c1', 'a1_err', 'b1_err', 'c1_err']
    """
    names = list(GaussianModel(n, baseline).names)
    return (list(SUMMARY_COLUMNS) + [f"mean{i}" for i in range(1, n + 1)] + names
            + [f"{nm}_err" for nm in names])


def _to_numpy(a: Any) -> np.ndarray:
    get = getattr(a, "get", None)  # CuPy arrays (dask-cuda) come back to the host
    if get is not None and not isinstance(a, np.ndarray):
        a = get()
    return np.asarray(a)


#: packed column -> BatchFit.to_table() column (``state`` is packed from the integer code)
_TABLE_NAME = {"state": "state_code"}


def _fit_rows(Y: Any, *blocks: Any, row_names: tuple[str, ...], x: Any, n: int,
              columns: tuple[str, ...], kwargs: dict[str, Any]) -> np.ndarray:
    """Fit one block of rows; the packed ``(rows, q)`` float64 result.

    ``blocks`` are the row blocks of the per-spectrum arguments named in ``row_names``
    (``x``, ``weights``, ``start``), aligned with the rows of ``Y``.
    """
    from .batch import fit_gaussians_batch

    if Y.shape[0] == 0:
        return np.empty((0, len(columns)))
    kw = dict(kwargs)
    for name, block in zip(row_names, blocks):
        if name == "x":
            x = block
        else:
            kw[name] = block
    fitted = fit_gaussians_batch(x, Y, n, **kw)
    table = fitted.to_table()
    table["quality"] = fitted.quality  # the int flags (the table holds their names)
    names = [_TABLE_NAME.get(c, c) for c in columns]
    missing = [c for c in names if c not in table]
    if missing:  # pragma: no cover - guards against a change of BatchFit.to_table
        raise InputError(f"fit_gaussians_batch().to_table() lacks the columns {missing}")
    return np.column_stack([_to_numpy(table[c]).astype(np.float64) for c in names])


def fit_dask(Y: Any, x: Any, n: int = 4, **batch_kwargs: Any) -> Any:
    """Fit every spectrum (row) of a Dask array; a lazy ``(k, q)`` Dask array of results.

    Parameters
    ----------
    Y : dask.array.Array or array_like, shape (k, m)
        One spectrum per row. NumPy arrays are wrapped (one chunk per 1000 rows). Chunks along
        the columns are merged so every block holds whole spectra.
    x : array_like, shape (m,) or (k, m)
        Shared abscissa, or one per spectrum (then chunked like ``Y``).
    n : int
        Number of Gaussian peaks.
    **batch_kwargs
        Passed to :func:`peakfit.fit_gaussians_batch` on every block: ``baseline``, ``start``,
        ``device`` (``'gpu'`` on CUDA workers), ``dtype``, ``lower``, ``upper``, ``weights``,
        ``tol_fun``, ``tol_x``, ``max_iter`` ... (``progress`` is forced off). Per-spectrum
        ``weights`` ``(k, m)`` and ``start`` ``(k, P)`` are split with the rows of ``Y``.

    Returns
    -------
    dask.array.Array
        Shape ``(k, len(result_columns(n, baseline)))``, float64, chunked like ``Y``'s rows;
        call ``.compute()`` (uses an active ``dask.distributed.Client`` if there is one), or
        :func:`fit_dask_to_dataframe`. Results are identical to fitting the same rows with
        :func:`peakfit.fit_gaussians_batch` directly.

    Raises
    ------
    InputError
        ``Y`` not 2-D, or ``x`` of the wrong length.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> x = np.linspace(0, 10, 101)
    >>> Y = da.from_array(np.exp(-((x - 5) / 1.5) ** 2)[None, :].repeat(4, 0), chunks=(2, 50))
    >>> fit_dask(Y, x, n=1).shape
    (4, 16)
    """
    da = _require_dask()
    if not isinstance(Y, da.Array):
        Y = da.from_array(np.asarray(Y), chunks=(1000, -1))
    if Y.ndim != 2:
        raise InputError(f"Y must be 2-D (spectra x points); got shape {Y.shape}")
    k, m = Y.shape
    if Y.numblocks[1] != 1:
        Y = Y.rechunk({1: -1})
    baseline = str(batch_kwargs.get("baseline", "none"))
    columns = tuple(result_columns(n, baseline))
    kwargs = {**batch_kwargs, "progress": False}
    # per-spectrum arguments travel with their rows; shared ones are sent to every task
    row_args: dict[str, Any] = {}
    xa = x
    if isinstance(xa, da.Array) or np.ndim(xa) == 2:
        if tuple(xa.shape) != (k, m):
            raise InputError(f"x has shape {tuple(xa.shape)}; expected ({m},) or ({k}, {m})")
        row_args["x"] = xa
        x_shared = None
    else:
        x_shared = np.asarray(xa, dtype=float)
        if x_shared.shape != (m,):
            raise InputError(f"x has shape {x_shared.shape}; expected ({m},) or ({k}, {m})")
    for name in ("weights", "start"):
        v = kwargs.get(name)
        if v is None or isinstance(v, str) or np.ndim(v) != 2:
            continue
        if v.shape[0] != k:
            raise InputError(f"{name} has {v.shape[0]} rows; Y has {k} spectra")
        row_args[name] = kwargs.pop(name)
    blocks = []
    for v in row_args.values():
        d = v if isinstance(v, da.Array) else da.from_array(np.asarray(v))
        blocks.append(d.rechunk((Y.chunks[0], (d.shape[1],))))
    return da.map_blocks(
        _fit_rows, Y, *blocks, row_names=tuple(row_args), x=x_shared, n=n, columns=columns,
        kwargs=kwargs, chunks=(Y.chunks[0], (len(columns),)), dtype=np.float64,
        meta=np.empty((0, 0)),
    )


def unpack(packed: Any, n: int, baseline: str = "none") -> dict[str, np.ndarray]:
    """Named columns of a packed (computed) result; integer columns become ``int64``.

    Parameters
    ----------
    packed : array_like, shape (k, q)
        A computed result of :func:`fit_dask` (NumPy or CuPy).
    n : int
        Number of Gaussian terms of the fit.
    baseline : str
        Baseline kind of the fit.

    Returns
    -------
    dict of str to numpy.ndarray
        ``index`` (0..k-1) and the columns of :func:`result_columns`.

    Examples
    --------
    >>> import numpy as np
    >>> row = np.arange(16, dtype=float)[None, :]
    >>> t = unpack(row, 1)
    >>> int(t["dfe"][0]), float(t["b1"][0])
    (6, 11.0)
    """
    a = _to_numpy(packed)
    columns = result_columns(n, baseline)
    if a.ndim != 2 or a.shape[1] != len(columns):
        raise InputError(f"packed result must have shape (k, {len(columns)}); got {a.shape}")
    out: dict[str, np.ndarray] = {"index": np.arange(a.shape[0], dtype=np.int64)}
    for j, c in enumerate(columns):
        col = a[:, j]
        if c in ("state", "exitflag", "dfe", "iterations", "quality"):
            col = col.astype(np.int64)
        out[c] = col
    return out


def fit_dask_to_dataframe(Y: Any, x: Any, n: int = 4, **batch_kwargs: Any) -> Any:
    """:func:`fit_dask`, computed, as a pandas DataFrame (one row per spectrum).

    Columns ``index`` then :func:`result_columns` (``state`` as an int ``FitState``).
    Needs pandas (``pip install "peakfit[io]"``).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.linspace(0, 10, 101)
    >>> Y = np.exp(-((x - 5) / 1.5) ** 2)[None, :].repeat(3, 0)
    >>> df = fit_dask_to_dataframe(Y, x, n=1)
    >>> df["mean1"].round(6).tolist(), df["state"].tolist()
    ([5.0, 5.0, 5.0], [0, 0, 0])
    """
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover
        raise ImportError('fit_dask_to_dataframe needs pandas: pip install "peakfit[io]"') from exc
    baseline = str(batch_kwargs.get("baseline", "none"))
    packed = fit_dask(Y, x, n, **batch_kwargs).compute()
    return pd.DataFrame(unpack(packed, n, baseline))
