"""Fit many spectra at once: :func:`fit_gaussians_batch` and its result, :class:`BatchFit`.

Every spectrum (row) goes through the same steps as :func:`peakfit.fit_gaussians` (validation,
per-spectrum scaling, start point, the bounded Levenberg-Marquardt / trust-region solver of
:mod:`peakfit.solvers.lm`, unscaling, sorting of the terms) but vectorised over rows, chunk by
chunk, on NumPy or on a CUDA GPU through CuPy. A row's result does not depend on the other rows
of the batch: bad rows are flagged in :attr:`BatchFit.state` and cost nothing else.

Data flow per chunk (``xp`` is NumPy or CuPy; the code is the same)::

    rows -> validate (states) -> sort x -> group (full / ragged) -> scaling -> start points
         -> levenberg_marquardt(evaluator) -> unscale, snap to bounds -> sort terms
         -> gof, standard errors -> host arrays

The stages are those of :mod:`peakfit.pipeline` (shared with :func:`peakfit.fit_gaussians`);
the rows come from :mod:`peakfit._sources`, the chunks are scheduled by
:mod:`peakfit._schedule`, the device × engine is chosen once by :mod:`peakfit.backends`, and
the result is a :class:`~peakfit.batchfit.BatchFit`.

Bad input (per row)
-------------------
=====================  ==========================================================================
state                  rows
=====================  ==========================================================================
``nonfinite_input``    an ``Inf`` in y (or in a per-row x), or, with ``nan_policy='pad'``, a NaN
                       between valid points
``insufficient_data``  fewer valid points with positive weight than coefficients ``P``, or all
                       of them at one x
``constant_data``      all valid y equal (all-zero rows included)
=====================  ==========================================================================

NaN entries at the start and end of a row (``nan_policy='pad'``, the default) are padding: a
ragged spectrum. They are removed exactly as ``fit_gaussians(..., nan_policy='omit')`` removes
them. ``nan_policy='omit'`` treats every NaN as a missing point, wherever it is.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from typing import Any

import numpy as np

from ._schedule import n_workers, progress_bar, run_chunks, run_rows
from ._sources import Source
from ._validate import resolve_options
from .backends import CPU_CHUNK_ROWS, Backend, select_backend
from .batchfit import BatchFit
from .errors import FitWarning, InputError
from .fit import check_enough_points
from .models import GaussianModel
from .options import FitOptions
from .pipeline import concat, fit_block, make_spec

__all__ = ["CPU_CHUNK_ROWS", "BatchFit", "fit_gaussians_batch"]

# internal names kept for code that used them before the split (tests patch them here)
_fit_block = fit_block
_run_rows = run_rows
_select_backend = select_backend


def fit_gaussians_batch(
    x: Any,
    Y: Any,
    n: int = 4,
    *,
    baseline: str = "none",
    device: str = "auto",
    dtype: str = "float64",
    start: Any = "auto",
    lower: Any = None,
    upper: Any = None,
    weights: Any = None,
    tol_fun: float | None = None,
    tol_x: float | None = None,
    max_iter: int | None = None,
    max_fun_evals: int | None = None,
    algorithm: str | None = None,
    options: FitOptions | None = None,
    nan_policy: str = "pad",
    sort: bool = True,
    chunk_size: int | None = None,
    n_threads: int | None = None,
    check_every: int | None = None,
    progress: bool = False,
    method: str = "full",
) -> BatchFit:
    """Fit a sum of ``n`` Gaussians to every spectrum (row) of ``Y``.

    Each row is fitted as :func:`peakfit.fit_gaussians` would fit it alone (same scaling,
    start point, bounded Levenberg-Marquardt / trust-region solver, tolerances and result
    formulas), vectorised over rows on the CPU or on a CUDA GPU.

    Parameters
    ----------
    x : array_like, shape (m,) or (k, m)
        Shared abscissa, or one per spectrum. Need not be sorted.
    Y : array_like (k, m), CuPy array, np.memmap, h5py dataset, or iterable of chunks
        One spectrum per row. CuPy input stays on the device (no host copy). An iterable
        yields ``(k_i, m)`` arrays (or ``(x_i, Y_i)`` pairs) and is fitted chunk by chunk with
        bounded memory. Ragged spectra: pad rows with NaN at the ends, or give zero weights.
    n : int or 'auto'
        Number of Gaussian peaks; ``'auto'`` chooses it per spectrum by BIC and returns a
        :class:`peakfit.selection.AutoBatchFit` (NaN-padded; other criteria through
        :func:`peakfit.selection.fit_auto_batch`).
    baseline : {'none', 'constant', 'linear', 'quadratic', 'exponential'}
    device : {'auto', 'cpu', 'gpu'}
        ``'auto'`` uses the GPU when CuPy and a CUDA device are present, else the CPU; the
        result's ``device`` says which.
    dtype : {'float64', 'float32'}
        Working precision of the solver (sums of squares always accumulate in float64).
    start : {'auto', 'matlab'} or array_like (P,) or (k, P)
        Start-point estimator, or explicit start points in coefficient order.
    lower, upper : array_like (P,), optional
        Bounds; MATLAB's defaults (``c >= 0``) when omitted.
    weights : array_like (m,) or (k, m), optional
        Non-negative weights; the fit minimises ``sum(w (y - f)^2)``.
    tol_fun, tol_x, max_iter, max_fun_evals, algorithm :
        As in :func:`peakfit.fitoptions` (defaults ``1e-6, 1e-6, 400, 600, 'Trust-Region'``).
    options : FitOptions, optional
        Options to start from; explicit keyword arguments override them. ``Robust``,
        ``Normalize`` and ``Exclude`` are not supported in batches (use ``weights``).
    nan_policy : {'pad', 'omit'}
        ``'pad'``: NaN at the start/end of a row is padding (ragged spectra), NaN between
        valid points flags the row ``nonfinite_input``. ``'omit'``: every NaN is a missing
        point.
    sort : bool
        Order the terms of each row by ascending centre.
    chunk_size : int, optional
        Rows per chunk. Default: 2048 on the CPU, from free memory on the GPU. Out-of-memory
        errors retry the chunk in smaller pieces.
    n_threads : int, optional
        CPU worker threads (default: the number of usable cores, at most 2 chunks per core).
        On the CPU the normal equations are evaluated by the current engine
        (:func:`peakfit.get_engine`: the compiled Numba kernels when ``peakfit[numba]`` is
        installed, else NumPy; change it with :func:`peakfit.use_engine`). The engine changes
        the speed, not the results (equal to rounding); ``BatchFit.engine`` says which ran.
    check_every : int, optional
        Iterations between compactions of the unfinished rows (host synchronisations on the
        GPU). Default 1 on the CPU, 4 on the GPU. Results do not depend on it.
    progress : bool
        Show a progress bar (needs ``tqdm``).
    method : {'full', 'vp', 'auto'}
        Least-squares algorithm, as in :func:`peakfit.fit_gaussians`: the full solver, variable
        projection (:mod:`peakfit.solvers.vp`), or VP where the heights and baseline are
        unbounded.

    Returns
    -------
    BatchFit

    Raises
    ------
    InputError
        Mismatched shapes, non-numeric or complex data, bad options.
    GPUUnavailableError
        ``device='gpu'`` without CuPy or a CUDA device.

    Examples
    --------
    >>> import numpy as np, peakfit
    >>> x = np.linspace(0, 100, 500)
    >>> centres = np.array([[30.0, 60.0], [35.0, 70.0]])
    >>> Y = sum(np.exp(-((x - centres[:, i:i + 1]) / 5.0) ** 2) for i in range(2))
    >>> r = peakfit.fit_gaussians_batch(x, Y, n=2, device='cpu')
    >>> np.round(r.means, 6).tolist()
    [[30.0, 60.0], [35.0, 70.0]]
    >>> r.state_names.tolist(), r.device
    (['converged', 'converged'], 'cpu')
    """
    from .selection import _is_auto, fit_auto_batch

    if _is_auto(n):  # n='auto': one batch per candidate n, chosen per row (peakfit.selection)
        return fit_auto_batch(  # type: ignore[return-value]
            x, Y, n, baseline=baseline, device=device, dtype=dtype, start=start, lower=lower,
            upper=upper, weights=weights, tol_fun=tol_fun, tol_x=tol_x, max_iter=max_iter,
            max_fun_evals=max_fun_evals, algorithm=algorithm, options=options,
            nan_policy=nan_policy, sort=sort, chunk_size=chunk_size, n_threads=n_threads,
            check_every=check_every)
    t_start = time.perf_counter()
    model = GaussianModel(n, baseline)
    dt = _working_dtype(dtype)
    policy = str(nan_policy).lower()
    if policy not in ("pad", "omit"):
        raise InputError(f"nan_policy must be 'pad' or 'omit', got {nan_policy!r}")
    check_every = _positive_int("check_every", check_every)
    chunk_size = _positive_int("chunk_size", chunk_size)
    source = Source(x, Y, weights, policy)
    if source.m_first is not None:
        check_enough_points(model, source.m_first, "each spectrum (columns of Y)")
    opts = _batch_options(model, options, lower=lower, upper=upper, tol_fun=tol_fun,
                          tol_x=tol_x, max_iter=max_iter, max_fun_evals=max_fun_evals,
                          algorithm=algorithm)
    spec = make_spec(model, opts, start=start, dtype=dt, nan_policy=policy, sort=sort,
                     k=source.k, method=method, stacklevel=3)
    backend = _select_backend(device, Y, check_every)
    workers = 1 if backend.name == "gpu" else n_workers(n_threads)
    rows = _chunk_rows(backend, source, model.n_params, dt, chunk_size, workers)

    def fit(row0: int, xc: Any, Yc: Any, Wc: Any) -> dict[str, np.ndarray]:
        return _fit_block(backend, spec, xc, Yc, Wc, row0)

    with contextlib.ExitStack() as stack:
        bar = progress_bar(progress, source.k)
        if bar is not None:
            stack.callback(bar.close)
        chunks = source.chunks(rows)
        if backend.name == "gpu" and backend.xp is not np:
            # host chunks: the next one's copy (pinned, on a copy stream) overlaps this fit
            from .gpu.transfer import prefetch

            chunks = prefetch(chunks, backend.xp)
        parts = run_chunks(chunks, fit, rows=rows, workers=workers,
                           oom=backend.oom, release=backend.release, progress=bar)
    res = concat([r for _, r in parts], model.n_params)
    few = int(np.count_nonzero((res["n_supported"] >= 0) & (res["n_supported"] < n)))
    if few:
        warnings.warn(f"the data of {few} spectra support fewer than {n} peaks (quality flag "
                      "'too_many_terms'); consider a smaller n", FitWarning, stacklevel=2)
    return BatchFit(
        model=model, p=res["p"], stderr=res["stderr"], sse=res["sse"], rsquare=res["rsquare"],
        adjrsquare=res["adjrsquare"], dfe=res["dfe"], rmse=res["rmse"],
        iterations=res["iterations"], funcCount=res["funcCount"], exitflag=res["exitflag"],
        state=res["state"].astype(np.int8), start=res["start"], held=res["held"],
        firstorderopt=res["firstorderopt"], numobs=res["numobs"], device=backend.label,
        dtype=str(dt), options=opts, algorithm=spec.algorithm, sorted=bool(sort),
        elapsed=time.perf_counter() - t_start,
        _source=source if source.iterator is None else None,
        timings={"start": float(res["_timings"][:, 0].sum()),
                 "solve": float(res["_timings"][:, 1].sum())},
        engine=backend.engine, quality=res["quality"], n_supported=res["n_supported"],
    )


def _working_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise InputError(f"dtype must be 'float64' or 'float32', got {dtype!r}") from None
    if dt not in (np.float64, np.float32):
        raise InputError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    return dt


def _positive_int(name: str, v: Any) -> int | None:
    if v is None:
        return None
    try:
        ok = not isinstance(v, bool) and float(v).is_integer() and int(v) >= 1
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise InputError(f"{name} must be an integer >= 1, got {v!r}")
    return int(v)


def _chunk_rows(backend: Backend, source: Source, P: int, dt: np.dtype, chunk_size: int | None,
                workers: int) -> int:
    """Rows per chunk: the given size, else the backend's default (several per CPU worker)."""
    if chunk_size is not None:
        return chunk_size
    rows = backend.chunk_rows(source.m or 1000, P, dt.itemsize)
    if backend.name == "cpu" and source.k is not None and workers > 1:
        # several chunks per worker so that both cores stay busy until the end
        rows = min(rows, max(256, -(-source.k // (4 * workers))))
    return int(rows)


def _batch_options(model: GaussianModel, options: FitOptions | None, **kw: Any) -> FitOptions:
    opts = resolve_options(model, options, {k: v for k, v in kw.items() if v is not None})
    if opts.robust != "off":
        raise InputError("Robust fitting is not supported by fit_gaussians_batch; use "
                         "fit_gaussians per spectrum")
    if opts.normalize:
        raise InputError("Normalize is not supported by fit_gaussians_batch (each spectrum is "
                         "scaled internally anyway)")
    if opts.exclude is not None:
        raise InputError("Exclude is not supported by fit_gaussians_batch; give those points "
                         "weight 0 (weights=...) or NaN")
    if opts.weights is not None:
        raise InputError("pass weights to fit_gaussians_batch as weights=..., not in options")
    return opts

