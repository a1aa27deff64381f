"""The result of :func:`peakfit.fit_gaussians_batch`: :class:`BatchFit`, one row per spectrum."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputError
from .models import GaussianModel
from .options import FitOptions
from .result import FitState, GaussianFit, Quality, build_fit_result, quality_names

__all__ = ["BatchFit", "coefficient_columns"]

_STATE_NAMES = np.array([s.name.lower() for s in FitState])


@dataclass
class BatchFit:
    """Result of :func:`fit_gaussians_batch`: one row per spectrum, host NumPy arrays.

    Attributes
    ----------
    model : GaussianModel
    p : ndarray (k, P)
        Coefficients in MATLAB order (terms sorted by centre when ``sort=True``); NaN for rows
        that were not fitted.
    stderr : ndarray (k, P)
        Standard errors (``sqrt(diag((JᵀWJ)⁻¹) * sse/dfe)``); NaN at active bounds.
    sse, rsquare, adjrsquare, rmse : ndarray (k,)
        Goodness of fit, MATLAB's formulas.
    dfe, iterations, funcCount, exitflag, numobs : int ndarrays (k,)
    state : int8 ndarray (k,)
        :class:`~peakfit.result.FitState` values.
    start : ndarray (k, P)
        The start points used (same order as ``p``).
    held : bool ndarray (k, P)
        Coefficients held at a bound by the solver.
    firstorderopt : ndarray (k,)
    device : str
        Where the fit ran: ``'cpu'``, or ``'gpu:0 (<device name>)'`` on a GPU.
    dtype : str
        Working precision, ``'float64'`` or ``'float32'``.
    options : FitOptions
        Bounds and tolerances used.
    algorithm : str
    sorted : bool
        Whether the terms of each row are sorted by centre.
    elapsed : float
        Wall time of the fit in seconds.
    timings : dict
        Seconds spent in ``'start'`` (start-point estimation) and ``'solve'`` (the solver),
        summed over chunks (and over threads, so they can exceed ``elapsed``).
    engine : str
        Who evaluated the normal equations: ``'numpy'`` or ``'numba'`` on the CPU
        (:mod:`peakfit.engine`), ``'cupy'`` on the GPU (see :mod:`peakfit.backends`).
    quality : int64 ndarray (k,)
        :class:`~peakfit.result.Quality` flags per row (0: none), separate from ``state``.
    n_supported : int64 ndarray (k,)
        Peaks the data support per row (``'auto'`` start; ``-1``: not estimated).

    Examples
    --------
    >>> import numpy as np, peakfit
    >>> x = np.linspace(0, 10, 201)
    >>> Y = np.stack([np.exp(-((x - b) / 0.8) ** 2) for b in (3.0, 5.0, 7.0)])
    >>> r = peakfit.fit_gaussians_batch(x, Y, n=1, device='cpu')
    >>> len(r), r.n_converged, np.round(r.means[:, 0], 6).tolist()
    (3, 3, [3.0, 5.0, 7.0])
    >>> r[1].means.round(6).tolist()  # the same GaussianFit as fit_gaussians
    [5.0]
    """

    model: GaussianModel
    p: np.ndarray
    stderr: np.ndarray
    sse: np.ndarray
    rsquare: np.ndarray
    adjrsquare: np.ndarray
    dfe: np.ndarray
    rmse: np.ndarray
    iterations: np.ndarray
    funcCount: np.ndarray
    exitflag: np.ndarray
    state: np.ndarray
    start: np.ndarray
    held: np.ndarray
    firstorderopt: np.ndarray
    numobs: np.ndarray
    device: str
    dtype: str
    options: FitOptions
    algorithm: str
    sorted: bool = True
    elapsed: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    engine: str = "numpy"
    quality: np.ndarray | None = None
    n_supported: np.ndarray | None = None
    _source: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        k = self.p.shape[0]
        if self.quality is None:
            self.quality = np.zeros(k, dtype=np.int64)
        if self.n_supported is None:
            self.n_supported = np.full(k, -1, dtype=np.int64)

    # ------------------------------------------------------------ arrays
    def __len__(self) -> int:
        return int(self.p.shape[0])

    @property
    def n(self) -> int:
        """Number of Gaussian terms."""
        return self.model.n

    @property
    def names(self) -> tuple[str, ...]:
        """Coefficient names in MATLAB order."""
        return self.model.names

    @property
    def a(self) -> np.ndarray:
        """Heights ``(k, n)``."""
        return self.p[:, 0 : 3 * self.n : 3]

    @property
    def b(self) -> np.ndarray:
        """Centres ``(k, n)``."""
        return self.p[:, 1 : 3 * self.n : 3]

    @property
    def c(self) -> np.ndarray:
        """Width coefficients ``(k, n)`` (``c = sqrt(2) sigma``)."""
        return self.p[:, 2 : 3 * self.n : 3]

    @property
    def means(self) -> np.ndarray:
        """Peak centres sorted ascending per spectrum ``(k, n)``."""
        return np.sort(self.b, axis=1)

    @property
    def baseline(self) -> np.ndarray:
        """Baseline coefficients ``(k, len(model.baseline_names))``."""
        return self.p[:, 3 * self.n :]

    @property
    def converged(self) -> np.ndarray:
        """Boolean mask of converged rows."""
        return self.state == int(FitState.CONVERGED)

    @property
    def n_converged(self) -> int:
        """Number of converged rows."""
        return int(np.count_nonzero(self.converged))

    @property
    def state_names(self) -> np.ndarray:
        """The states as lowercase names (``'converged'``, ``'max_iterations'``, ...)."""
        return _STATE_NAMES[self.state.astype(np.intp)]

    @property
    def quality_names(self) -> np.ndarray:
        """The quality flags per row as text: names joined by ``'|'``, ``'ok'`` when none."""
        assert self.quality is not None
        return np.array(["|".join(quality_names(int(q))) or "ok" for q in self.quality],
                        dtype=object)

    def state_counts(self) -> dict[str, int]:
        """Number of rows per state (states that occur)."""
        counts = np.bincount(self.state.astype(np.intp), minlength=len(FitState))
        return {FitState(i).name.lower(): int(c) for i, c in enumerate(counts) if c}

    # ------------------------------------------------------------ one row
    def __getitem__(self, i: int) -> GaussianFit:
        """The :class:`~peakfit.result.GaussianFit` of spectrum ``i``.

        The same type, display, ``confint`` and ``predint`` as :func:`peakfit.fit_gaussians`,
        assembled by the same function from the batch's solution and the row's data.

        Raises
        ------
        IndexError
            ``i`` out of range.
        InputError
            The data were given as an iterator, so the row cannot be read again.
        """
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"BatchFit indices must be integers, got {type(i).__name__}")
        k = len(self)
        j = int(i) + k if i < 0 else int(i)
        if not 0 <= j < k:
            raise IndexError(f"spectrum index {i} out of range for {k} spectra")
        if self._source is None:
            raise InputError(
                "the spectra were given as an iterator and are not kept, so BatchFit[i] cannot "
                "rebuild the full fit; pass an array, np.memmap or h5py dataset to keep access"
            )
        x, y, w = self._source.row(j)
        keep = np.isfinite(x) & np.isfinite(y)  # padding and missing points, as nan_policy='omit'
        xk, yk = x[keep], y[keep]
        wk = None if w is None else w[keep]
        order = np.argsort(xk, kind="stable")
        assert self.n_supported is not None
        return build_fit_result(
            self.model, self.options, self.algorithm, self.p[j], self.held[j], self.start[j],
            xk[order], yk[order], None if wk is None else wk[order], order,
            iterations=int(self.iterations[j]), nfev=int(self.funcCount[j]),
            exitflag=int(self.exitflag[j]), firstorderopt=float(self.firstorderopt[j]),
            x=xk, y=yk, weights=wk, sort=self.sorted, state=int(self.state[j]),
            n_supported=int(self.n_supported[j]),
        )

    # ------------------------------------------------------------ tables
    def to_table(self) -> dict[str, np.ndarray]:
        """Columns of the result as a dict of 1-D NumPy arrays.

        ``index, state`` (lowercase names), ``state_code`` (the int values), ``exitflag, sse,
        rsquare, adjrsquare, rmse, dfe, iterations, quality`` (:attr:`quality_names`),
        ``mean1..mean{n}``, the coefficients in
        MATLAB order (``a1, b1, c1, ...`` and the baseline's), then ``<name>_err`` standard
        errors.

        Examples
        --------
        >>> import numpy as np, peakfit
        >>> x = np.linspace(0, 10, 101)
        >>> r = peakfit.fit_gaussians_batch(x, np.exp(-((x - 4) / 1.5) ** 2)[None], n=1,
        ...                                 device='cpu')
        >>> t = r.to_table()
        >>> str(t['state'][0]), round(float(t['b1'][0]), 6), list(t)[:4]
        ('converged', 4.0, ['index', 'state', 'state_code', 'exitflag'])
        """
        k = len(self)
        out: dict[str, np.ndarray] = {
            "index": np.arange(k, dtype=np.int64),
            "state": self.state_names,
            "state_code": self.state.astype(np.int64),
            "exitflag": self.exitflag.astype(np.int64),
            "sse": self.sse,
            "rsquare": self.rsquare,
            "adjrsquare": self.adjrsquare,
            "rmse": self.rmse,
            "dfe": self.dfe.astype(np.int64),
            "iterations": self.iterations.astype(np.int64),
            "quality": self.quality_names.astype(str),
        }
        out.update(coefficient_columns(self.means, self.names, self.p, self.stderr))
        return out

    def to_dataframe(self) -> Any:
        """The table of :meth:`to_table` as a pandas ``DataFrame`` (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas is installed in the test env
            raise ImportError(
                'BatchFit.to_dataframe needs pandas: pip install "peakfit[io]"'
            ) from exc
        df = pd.DataFrame(self.to_table())
        return df.set_index("index")

    def summary(self) -> str:
        """A short text report: counts per state, speed, medians."""
        k = len(self)
        lines = [
            f"BatchFit: {k} spectra, {self.model.matlab_name}, device {self.device} "
            f"({self.engine}), {self.dtype}",
        ]
        rate = k / self.elapsed if self.elapsed > 0 else float("nan")
        lines.append(f"  time {self.elapsed:.3g} s ({rate:.4g} fits/s)")
        for name, cnt in self.state_counts().items():
            lines.append(f"  {name:<18s} {cnt:>10d}  ({100.0 * cnt / max(k, 1):.2f} %)")
        assert self.quality is not None
        for q in Quality:
            cnt = int(np.count_nonzero(self.quality & int(q)))
            if cnt:
                lines.append(f"  quality {str(q.name).lower():<18s} {cnt:>10d}")
        ok = self.converged
        if ok.any():
            lines.append(
                f"  converged rows: median iterations {np.median(self.iterations[ok]):g}, "
                f"median R-square {np.median(self.rsquare[ok]):.6g}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<BatchFit {self.model.matlab_name}: {len(self)} spectra, "
                f"{self.n_converged} converged, device={self.device!r}, dtype={self.dtype!r}>")


def coefficient_columns(means: np.ndarray, names: tuple[str, ...], p: np.ndarray,
                        stderr: np.ndarray) -> dict[str, np.ndarray]:
    """Table columns ``mean1..``, the coefficients by name, then ``<name>_err``.

    Examples
    --------
    >>> cols = coefficient_columns(np.array([[2.0]]), ("a1", "b1", "c1"),
    ...                            np.array([[1.0, 2.0, 3.0]]), np.full((1, 3), 0.1))
    >>> list(cols)
    ['mean1', 'a1', 'b1', 'c1', 'a1_err', 'b1_err', 'c1_err']
    """
    out = {f"mean{i + 1}": means[:, i] for i in range(means.shape[1])}
    out.update({nm: p[:, j] for j, nm in enumerate(names)})
    out.update({f"{nm}_err": stderr[:, j] for j, nm in enumerate(names)})
    return out
