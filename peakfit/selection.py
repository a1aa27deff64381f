"""How many peaks: fit a range of ``n`` and choose by an information criterion or an F-test.

``fit_gaussians(x, y, n='auto')`` and ``fit_gaussians_batch(x, Y, n='auto')`` land here. Each
candidate ``n`` is fitted by the ordinary fitting functions (:func:`peakfit.fit_gaussians`, or
:func:`peakfit.fit_gaussians_batch` once per ``n`` for a batch); this module only scores the
candidates and picks one. The one rule, :func:`choose`, serves single fits and batches alike.

Criteria (``m`` points, ``P`` coefficients, ``SSE`` the weighted sum of squared residuals):

* ``'bic'`` (default): ``m ln(SSE/m) + P ln m`` (Schwarz), the smallest wins;
* ``'aicc'``: ``m ln(SSE/m) + 2P + 2P(P+1)/(m-P-1)`` (Akaike, small-sample corrected);
* ``'ftest'``: starting from the smallest ``n``, go to ``n+1`` while the extra-sum-of-squares
  F-test ``F = ((SSE_n - SSE_{n+1}) / (P_{n+1} - P_n)) / (SSE_{n+1} / dfe_{n+1})`` rejects
  the smaller model at level ``alpha`` (default 0.05).

A candidate takes part only when it is *valid* (see :func:`quality_flags`): it converged, every
centre lies inside the data's x range, no peak is wider than that range, and every height is
significant (``|a| >= 2 se(a)``) and visible above the noise (``|a| >= 3 RMSE``). Those
failures are what an overfitted ``n`` looks like: a term parked outside the data, one broad
term imitating a baseline, or a term fitted to noise.
When no candidate is valid the criterion alone decides.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from .errors import FitWarning, InputError
from .models import FWHM_PER_C, GaussianModel
from .result import FitState

__all__ = [
    "CRITERIA",
    "AutoBatchFit",
    "Selection",
    "choose",
    "criterion_values",
    "fit_auto",
    "fit_auto_batch",
    "quality_flags",
]

CRITERIA = ("bic", "aicc", "ftest")
#: The candidate flags, in the order of the candidates table (True = a problem).
FLAGS = ("not_converged", "centre_outside", "too_wide", "insignificant", "weak", "at_bound")
_SIGNIFICANCE = 2.0  # |a| / se(a) below this: the height is not distinguishable from 0
_DETECTION = 3.0  # |a| / rmse below this: a bump within the noise (3-sigma detection limit)
_DEFAULT_N_MAX = 8


def _check_criterion(criterion: str) -> str:
    c = str(criterion).lower()
    if c not in CRITERIA:
        raise InputError(f"criterion must be one of {', '.join(CRITERIA)}; got {criterion!r}")
    return c


def candidate_ns(n: Any, m: int, baseline: str, n_max: int | None = None) -> list[int]:
    """The candidate numbers of peaks for ``n`` ('auto' or a sequence of ints) and ``m`` points.

    ``'auto'`` means ``1..n_max`` (default 8), cut where the model would have fewer than two
    residual degrees of freedom (``3n + baseline < m - 1``).

    Examples
    --------
    >>> candidate_ns("auto", 1000, "none")
    [1, 2, 3, 4, 5, 6, 7, 8]
    >>> candidate_ns("auto", 12, "constant")
    [1, 2, 3]
    >>> candidate_ns(range(2, 5), 100, "none")
    [2, 3, 4]
    """
    nb = len(GaussianModel(1, baseline).baseline_names)
    if isinstance(n, str):
        if n.lower() != "auto":
            raise InputError(f"n must be a positive int, 'auto' or a sequence of ints; got {n!r}")
        top = _DEFAULT_N_MAX if n_max is None else int(n_max)
        if top < 1:
            raise InputError(f"n_max must be >= 1; got {n_max!r}")
        ns = list(range(1, top + 1))
    else:
        try:
            ns = sorted({int(v) for v in n})
        except (TypeError, ValueError):
            raise InputError(
                f"n must be a positive int, 'auto' or a sequence of ints; got {n!r}") from None
        if not ns or ns[0] < 1:
            raise InputError(f"candidate numbers of peaks must be >= 1; got {list(n)!r}")
    fit_ok = [k for k in ns if 3 * k + nb < m - 1]
    if not fit_ok:
        raise InputError(
            f"not enough data to choose n: {m} points leave no degrees of freedom for "
            f"n = {ns[0]} ({3 * ns[0] + nb} coefficients)"
        )
    return fit_ok


def criterion_values(sse: Any, m: Any, P: Any, criterion: str) -> np.ndarray:
    """BIC or AICc of each candidate (broadcasts); ``'ftest'`` scores as BIC (for display).

    Examples
    --------
    >>> float(criterion_values(2.0, 100, 3, "bic").round(6))  # 100 ln(0.02) + 3 ln(100)
    -377.38679
    >>> float(criterion_values(2.0, 100, 3, "aicc").round(6))
    -384.952301
    """
    sse = np.asarray(sse, dtype=float)
    m = np.asarray(m, dtype=float)
    P = np.asarray(P, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        base = m * np.log(np.maximum(sse, np.finfo(float).tiny) / m)
        if criterion == "aicc":
            return base + 2 * P + 2 * P * (P + 1) / (m - P - 1)
        return base + P * np.log(m)


def quality_flags(
    p: Any, stderr: Any, held: Any, state: Any, rmse: Any, n: int, xmin: Any, xmax: Any
) -> dict[str, np.ndarray]:
    """Problem flags of fitted candidates with ``n`` peaks (rows of ``p``), all ``(k,)`` bool.

    ``not_converged``: the fit's state is not ``converged``; ``centre_outside``: a centre is
    outside ``[xmin, xmax]``; ``too_wide``: a peak's FWHM exceeds ``xmax - xmin`` (a term
    imitating a baseline); ``insignificant``: a height is below twice its standard error (or
    has none); ``weak``: a height is below three times the fit's RMSE (a bump a reader would
    not see in the noise); ``at_bound``: a coefficient is held at a bound (reported; it does
    not invalidate). All flags but ``at_bound`` make a candidate invalid.

    Examples
    --------
    >>> p = np.array([[1.0, 5.0, 1.0], [1.0, 12.0, 1.0]])
    >>> f = quality_flags(p, np.full((2, 3), 0.1), np.zeros((2, 3), bool), [0, 0], [0.1, 0.5],
    ...                   1, 0.0, 10.0)
    >>> f["centre_outside"].tolist(), f["insignificant"].tolist(), f["weak"].tolist()
    ([False, True], [False, False], [False, True])
    """
    p = np.atleast_2d(np.asarray(p, dtype=float))
    se = np.atleast_2d(np.asarray(stderr, dtype=float))
    held = np.atleast_2d(np.asarray(held, dtype=bool))
    state = np.atleast_1d(np.asarray(state))
    xmin = np.asarray(xmin, dtype=float).reshape(-1, 1)
    xmax = np.asarray(xmax, dtype=float).reshape(-1, 1)
    rmse = np.asarray(rmse, dtype=float).reshape(-1, 1)
    a, b, c = p[:, 0 : 3 * n : 3], p[:, 1 : 3 * n : 3], p[:, 2 : 3 * n : 3]
    sa = se[:, 0 : 3 * n : 3]
    with np.errstate(invalid="ignore"):
        significant = np.abs(a) >= _SIGNIFICANCE * sa
        visible = np.abs(a) >= _DETECTION * rmse
    return {
        "not_converged": state != 0,
        "centre_outside": ~np.all((b >= xmin) & (b <= xmax), axis=1),
        "too_wide": ~np.all(np.abs(c) * FWHM_PER_C <= xmax - xmin, axis=1),
        "insignificant": ~np.all(significant, axis=1),
        "weak": ~np.all(visible, axis=1),
        "at_bound": np.any(held, axis=1),
    }


def _valid(flags: dict[str, np.ndarray]) -> np.ndarray:
    return ~np.any([flags[f] for f in FLAGS if f != "at_bound"], axis=0)


def choose(
    ns: list[int],
    sse: np.ndarray,
    m: np.ndarray,
    P: np.ndarray,
    valid: np.ndarray,
    criterion: str = "bic",
    alpha: float = 0.05,
) -> np.ndarray:
    """Index (into ``ns``) of the chosen candidate of each spectrum.

    Parameters
    ----------
    ns : list of int
        Candidate numbers of peaks, ascending (``C`` of them).
    sse, m, P, valid : ndarray (k, C)
        Weighted SSE, points, coefficients and validity of every candidate fit.
    criterion : {'bic', 'aicc', 'ftest'}
    alpha : float
        Level of the F-test.

    Returns
    -------
    ndarray of int (k,)

    Examples
    --------
    >>> sse = np.array([[10.0, 1.0, 0.99]])
    >>> m = np.full((1, 3), 100); P = np.array([[3, 6, 9]]); ok = np.ones((1, 3), bool)
    >>> choose([1, 2, 3], sse, m, P, ok).tolist(), choose([1, 2, 3], sse, m, P, ok, "ftest")
    ([1], array([1]))
    """
    criterion = _check_criterion(criterion)
    sse = np.atleast_2d(np.asarray(sse, dtype=float))
    k, C = sse.shape
    fine = np.isfinite(sse)
    usable = valid & fine
    none_valid = ~usable.any(axis=1)
    usable = np.where(none_valid[:, None], fine, usable)
    if criterion != "ftest":
        score = np.where(usable, criterion_values(sse, m, P, criterion), np.inf)
        return np.argmin(score, axis=1)
    chosen = np.argmax(usable, axis=1)  # the smallest usable n
    going = usable.any(axis=1)
    rows = np.arange(k)
    for _ in range(C):
        cur = chosen
        nxt = _next_usable(usable, cur)
        has = going & (nxt < C)
        j = np.minimum(nxt, C - 1)
        s0, s1 = sse[rows, cur], sse[rows, j]
        dp = (P[rows, j] - P[rows, cur]).astype(float)
        dfe = (m[rows, j] - P[rows, j]).astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            F = ((s0 - s1) / dp) / (s1 / dfe)
            pval = stats.f.sf(F, dp, dfe)
        step = has & (pval < alpha)
        chosen = np.where(step, j, chosen)
        going = step
        if not going.any():
            break
    return chosen


def _next_usable(usable: np.ndarray, cur: np.ndarray) -> np.ndarray:
    C = usable.shape[1]
    idx = np.arange(C)[None, :]
    later = usable & (idx > cur[:, None])
    return np.where(later.any(axis=1), np.argmax(later, axis=1), C)


# =============================================================================================
# one spectrum
# =============================================================================================


@dataclass
class Selection:
    """The candidates of an ``n='auto'`` fit (``result.selection``).

    Attributes
    ----------
    criterion : str
    n : int
        The chosen number of peaks.
    candidates : dict of ndarray
        One entry per candidate ``n``: ``n, sse, dfe, bic, aicc`` (both always computed), the
        flags of :data:`FLAGS`, ``valid`` and ``chosen``.
    fits : list of GaussianFit
        The candidate fits, in the order of ``candidates['n']``.
    """

    criterion: str
    n: int
    candidates: dict[str, np.ndarray]
    fits: list[Any] = field(repr=False)

    def to_dataframe(self) -> Any:
        """The candidates table as a pandas DataFrame indexed by ``n`` (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.candidates).set_index("n")

    def to_records(self) -> list[dict[str, Any]]:
        """One plain-Python dict per candidate."""
        out = []
        for i in range(len(self.candidates["n"])):
            row: dict[str, Any] = {}
            for k, v in self.candidates.items():
                x = v[i]
                row[k] = (bool(x) if v.dtype == bool else int(x) if v.dtype.kind in "iu"
                          else float(x))
            out.append(row)
        return out

    def to_text(self) -> str:
        """Aligned text: one line per candidate, ``*`` marks the chosen one."""
        head = f"{'n':>3} {'SSE':>12} {'dfe':>5} {'BIC':>12} {'AICc':>12}  flags"
        lines = [f"Number of peaks chosen by {self.criterion.upper()}: n = {self.n}", head]
        for r in self.to_records():
            flags = ",".join(f for f in FLAGS if r[f]) or "-"
            mark = "*" if r["chosen"] else " "
            lines.append(f"{r['n']:>3} {r['sse']:>12.6g} {r['dfe']:>5d} {r['bic']:>12.6g} "
                         f"{r['aicc']:>12.6g}  {flags}{mark}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def fit_auto(
    x: Any,
    y: Any,
    n: Any = "auto",
    *,
    criterion: str = "bic",
    n_max: int | None = None,
    alpha: float = 0.05,
    baseline: str = "none",
    **kwargs: Any,
) -> Any:
    """Fit every candidate number of peaks to one spectrum and return the chosen fit.

    Parameters
    ----------
    x, y : array_like
        The spectrum.
    n : 'auto' or sequence of int
        ``'auto'`` tries ``1..n_max``; a sequence gives the candidates.
    criterion : {'bic', 'aicc', 'ftest'}
        How to choose (see the module docstring).
    n_max : int, optional
        Largest ``n`` tried by ``'auto'`` (default 8).
    alpha : float
        Level of the F-test.
    baseline : str
        As in :func:`peakfit.fit_gaussians`.
    **kwargs
        Passed to :func:`peakfit.fit_gaussians` for every candidate.

    Returns
    -------
    GaussianFit
        The chosen fit; ``result.selection`` is the :class:`Selection` with the candidates.

    Examples
    --------
    >>> import numpy as np, peakfit
    >>> rng = np.random.default_rng(0)
    >>> x = np.linspace(0, 100, 400)
    >>> y = sum(a * np.exp(-((x - b) / 5) ** 2) for a, b in [(4, 30), (2, 55), (3, 70)])
    >>> r = peakfit.fit_gaussians(x, y + 0.1 * rng.standard_normal(x.size), n="auto")
    >>> r.n, np.round(r.means).tolist()
    (3, [30.0, 55.0, 70.0])
    >>> r.selection.candidates["valid"][:3].tolist()
    [True, True, True]
    """
    from .fit import fit_gaussians

    criterion = _check_criterion(criterion)
    m_total = int(np.size(np.asarray(x)))
    ns = candidate_ns(n, m_total, baseline, n_max)
    fits = []
    for k in ns:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)  # overfitted candidates warn by design
            try:
                f = fit_gaussians(x, y, k, baseline=baseline, **kwargs)
            except InputError as exc:
                if not fits or "not enough data" not in str(exc):
                    raise
                break  # too few points for larger n
        if fits and f.state is FitState.INSUFFICIENT_DATA:
            break  # excluded, missing or zero-weight points leave too few for larger n
        fits.append(f)
    ns = ns[: len(fits)]
    sse = np.array([[f.gof.sse for f in fits]])
    m = np.array([[f.output.numobs for f in fits]])
    P = np.array([[f.model.n_params for f in fits]])
    rows = []
    for k, f in zip(ns, fits):
        xr = f._xin(np.asarray(f.x, dtype=float))  # the units of b and c
        rows.append(quality_flags(f.p, f.stderr, f.output.activebounds, int(f.state),
                                  f.gof.rmse, k, np.min(xr), np.max(xr)))
    flags = {name: np.array([r[name][0] for r in rows]) for name in FLAGS}
    valid = _valid(flags)
    j = int(choose(ns, sse, m, P, valid[None, :], criterion, alpha)[0])
    cands: dict[str, np.ndarray] = {
        "n": np.array(ns, dtype=np.int64),
        "sse": sse[0],
        "dfe": np.array([f.gof.dfe for f in fits], dtype=np.int64),
        "bic": criterion_values(sse[0], m[0], P[0], "bic"),
        "aicc": criterion_values(sse[0], m[0], P[0], "aicc"),
        **flags,
        "valid": valid,
        "chosen": np.arange(len(ns)) == j,
    }
    result = fits[j]
    result.__dict__["selection"] = Selection(criterion, ns[j], cands, fits)
    if int(fits[j].state) == 0 and not valid[j]:
        warnings.warn(f"no candidate n passed the quality checks; n = {ns[j]} chosen by "
                      f"{criterion.upper()} alone", FitWarning, stacklevel=3)
    return result


# =============================================================================================
# batch
# =============================================================================================


@dataclass
class AutoBatchFit:
    """Result of ``fit_gaussians_batch(x, Y, n='auto')``: a number of peaks per spectrum.

    Attributes
    ----------
    n : ndarray of int (k,)
        The chosen number of peaks of each spectrum.
    ns : list of int
        The candidates.
    p, stderr : ndarray (k, 3 max(ns) + baseline)
        Coefficients and standard errors of the chosen fit, padded with NaN after the
        ``3 n[i]`` peak coefficients (baseline coefficients last).
    sse, rsquare, state : ndarray (k,)
        Of the chosen fit.
    criterion : str
    scores : ndarray (k, C)
        The criterion of every candidate (BIC for ``'ftest'``).
    valid : ndarray of bool (k, C)
    flags : dict of (k, C) bool arrays
    fits : dict int -> BatchFit
        The batch fit of each candidate ``n``.
    """

    n: np.ndarray
    ns: list[int]
    p: np.ndarray
    stderr: np.ndarray
    sse: np.ndarray
    rsquare: np.ndarray
    state: np.ndarray
    criterion: str
    scores: np.ndarray
    valid: np.ndarray
    flags: dict[str, np.ndarray]
    fits: dict[int, Any] = field(repr=False)
    baseline_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.n.size)

    @property
    def n_max(self) -> int:
        return max(self.ns)

    @property
    def names(self) -> tuple[str, ...]:
        """Column names of the padded ``p``."""
        peaks = tuple(f"{s}{i}" for i in range(1, self.n_max + 1) for s in "abc")
        return peaks + self.baseline_names

    @property
    def means(self) -> np.ndarray:
        """Sorted centres, ``(k, max(ns))``, NaN-padded."""
        return np.sort(self.p[:, 1 : 3 * self.n_max : 3], axis=1)  # NaN sorts last

    def __getitem__(self, i: int) -> Any:
        """The :class:`~peakfit.result.GaussianFit` of spectrum ``i`` with its chosen ``n``."""
        return self.fits[int(self.n[i])][i]

    def to_table(self) -> dict[str, np.ndarray]:
        """Columns: ``index, n, state, sse, rsquare``, ``mean1..``, padded coefficients."""
        out: dict[str, np.ndarray] = {
            "index": np.arange(len(self), dtype=np.int64), "n": self.n.astype(np.int64),
            "state": self.state.astype(np.int64), "sse": self.sse, "rsquare": self.rsquare,
        }
        from .batchfit import coefficient_columns

        out.update(coefficient_columns(self.means, self.names, self.p, self.stderr))
        return out

    def to_dataframe(self) -> Any:
        """:meth:`to_table` as a pandas DataFrame indexed by ``index`` (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.to_table()).set_index("index")


def fit_auto_batch(
    x: Any,
    Y: Any,
    n: Any = "auto",
    *,
    criterion: str = "bic",
    n_max: int | None = None,
    alpha: float = 0.05,
    baseline: str = "none",
    **kwargs: Any,
) -> AutoBatchFit:
    """Choose the number of peaks of every spectrum of a batch.

    Runs :func:`peakfit.fit_gaussians_batch` once per candidate ``n`` (same options) and
    applies :func:`choose` row by row, so each row gets the ``n`` that ``fit_gaussians(x, y,
    n='auto')`` would choose for it from the same candidate fits.

    Parameters
    ----------
    x : array_like (m,) or (k, m)
    Y : array_like (k, m)
        Spectra as rows (an array: the rows are fitted several times).
    n, criterion, n_max, alpha, baseline :
        As in :func:`fit_auto`.
    **kwargs
        Passed to :func:`peakfit.fit_gaussians_batch`.

    Returns
    -------
    AutoBatchFit

    Examples
    --------
    >>> import numpy as np, peakfit
    >>> x = np.linspace(0, 10, 200)
    >>> rng = np.random.default_rng(1)
    >>> g = lambda b: np.exp(-((x - b) / 0.6) ** 2)
    >>> Y = np.stack([g(3), g(3) + g(7), g(2) + g(5) + g(8)]) + 0.02 * rng.standard_normal((3, 200))
    >>> r = fit_auto_batch(x, Y, n_max=4, device="cpu")  # or fit_gaussians_batch(x, Y, "auto")
    >>> r.n.tolist(), np.round(r.means[1], 2).tolist()
    ([1, 2, 3], [3.0, 7.0, nan, nan])
    """
    from .batch import fit_gaussians_batch

    criterion = _check_criterion(criterion)
    Ya = np.asarray(Y, dtype=float)
    if Ya.ndim != 2:
        raise InputError(f"Y must be a 2-D array (k, m) for n='auto'; got shape {Ya.shape}")
    xa = np.asarray(x, dtype=float)
    k, m_all = Ya.shape
    ns = candidate_ns(n, m_all, baseline, n_max)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)  # overfitted candidates warn by design
        fits = {c: fit_gaussians_batch(xa, Ya, c, baseline=baseline, **kwargs) for c in ns}
    xb = np.broadcast_to(xa, Ya.shape)
    usable = np.isfinite(xb) & np.isfinite(Ya)
    with np.errstate(invalid="ignore"):
        xmin = np.where(usable, xb, np.inf).min(axis=1)
        xmax = np.where(usable, xb, -np.inf).max(axis=1)
    sse = np.column_stack([fits[c].sse for c in ns])
    m = np.column_stack([fits[c].numobs for c in ns])
    P = np.column_stack([np.full(k, fits[c].model.n_params) for c in ns])
    per = [quality_flags(fits[c].p, fits[c].stderr, fits[c].held, fits[c].state, fits[c].rmse,
                         c, xmin, xmax) for c in ns]
    flags = {name: np.column_stack([f[name] for f in per]) for name in FLAGS}
    valid = _valid(flags)
    j = choose(ns, sse, m, P, valid, criterion, alpha)
    nb = len(fits[ns[0]].model.baseline_names)
    top = max(ns)
    width = 3 * top + nb
    p = np.full((k, width), np.nan)
    se = np.full((k, width), np.nan)
    rows = np.arange(k)
    n_chosen = np.asarray(ns)[j]
    for ci, c in enumerate(ns):
        sel = j == ci
        if not sel.any():
            continue
        f = fits[c]
        p[sel, : 3 * c] = f.p[sel, : 3 * c]
        se[sel, : 3 * c] = f.stderr[sel, : 3 * c]
        if nb:
            p[sel, 3 * top :] = f.p[sel, 3 * c :]
            se[sel, 3 * top :] = f.stderr[sel, 3 * c :]
    pick = lambda attr: np.column_stack([getattr(fits[c], attr) for c in ns])[rows, j]  # noqa: E731
    return AutoBatchFit(
        n=n_chosen, ns=ns, p=p, stderr=se, sse=sse[rows, j], rsquare=pick("rsquare"),
        state=pick("state"), criterion=criterion,
        scores=criterion_values(sse, m, P, "aicc" if criterion == "aicc" else "bic"),
        valid=valid, flags=flags, fits=fits,
        baseline_names=fits[ns[0]].model.baseline_names,
    )


def _is_auto(n: Any) -> bool:
    """True when ``n`` asks for model selection ('auto' or a sequence of candidates)."""
    if isinstance(n, str):
        return True
    return not isinstance(n, (int, np.integer, float)) and hasattr(n, "__iter__")

