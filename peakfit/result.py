"""Fit results: goodness of fit, optimizer output, confidence and prediction bounds, display.

:class:`GaussianFit` is the result of one spectrum, from :func:`peakfit.fit_gaussians`, from
:func:`peakfit.matlab.fit` and from indexing a batch result. It carries MATLAB's ``cfit``,
``gof`` and ``output`` in one object, computes ``confint``/``predint`` with MATLAB's formulas and
prints MATLAB's display text.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import Any

import numpy as np
from scipy import linalg, stats

from .errors import InputError
from .models import FWHM_PER_C, GaussianModel
from .options import FitOptions
from .solvers.lm import EXITFLAG_MESSAGES

__all__ = [
    "EXITFLAG_CONSTANT",
    "EXITFLAG_NOT_FITTED",
    "FitOutput",
    "FitState",
    "GaussianFit",
    "GoodnessOfFit",
    "Quality",
    "build_fit_result",
    "format_g",
    "gof_rows",
    "goodness_of_fit",
    "quality_flags",
    "quality_names",
    "state_from_exitflag",
    "states_from_exitflags",
]


class FitState(IntEnum):
    """Per-spectrum outcome, shared by single and batched fits on CPU and GPU."""

    CONVERGED = 0
    MAX_ITERATIONS = 1
    SINGULAR = 2
    NONFINITE_INPUT = 3
    INSUFFICIENT_DATA = 4
    CONSTANT_DATA = 5
    NONFINITE_MODEL = 6
    NOT_FITTED = 7

    @property
    def ok(self) -> bool:
        """True for a converged fit."""
        return self is FitState.CONVERGED


_STATE_OF_FLAG = {0: FitState.MAX_ITERATIONS, -1: FitState.NONFINITE_MODEL,
                  -2: FitState.SINGULAR, -3: FitState.CONSTANT_DATA, -4: FitState.NOT_FITTED}


_STATE_TABLE = np.array([int(_STATE_OF_FLAG.get(f, FitState.CONVERGED)) for f in range(-4, 2)],
                        dtype=np.int8)

#: ``exitflag`` of rows that were not fitted: constant data, other invalid data.
EXITFLAG_CONSTANT = -3
EXITFLAG_NOT_FITTED = -4

#: Exit message of the rows that were not fitted, by state.
NOT_FITTED_MESSAGES = {
    FitState.NONFINITE_INPUT: "Not fitted: the spectrum contains Inf, or NaN between valid "
    "points (NaN padding at the ends is allowed).",
    FitState.INSUFFICIENT_DATA: "Not fitted: fewer usable points (finite, with positive "
    "weight, at two or more distinct x) than coefficients.",
    FitState.CONSTANT_DATA: "Not fitted: the data are constant, so the peak coefficients "
    "are not identifiable.",
}


def state_from_exitflag(flag: int) -> FitState:
    """Map an ``exitflag`` to a :class:`FitState`."""
    return FitState.CONVERGED if flag > 0 else _STATE_OF_FLAG.get(int(flag), FitState.NOT_FITTED)


def states_from_exitflags(xp: Any, flag: Any) -> Any:
    """:func:`state_from_exitflag` for an array of exit flags (NumPy or CuPy); int8 states."""
    # flags -4..1 (and above) index this table: the states of -4, -3, -2, -1, 0, > 0
    table = xp.asarray(_STATE_TABLE)
    return table[xp.clip(flag, -4, 1).astype(xp.int64) + 4]


class Quality(IntFlag):
    """Quality flags of a fit, separate from its convergence (:class:`FitState`).

    A converged fit can still be a poor description of the data; these flags say how:

    ``NEGATIVE_RSQUARE``
        R² < 0: the fit explains less than the mean of the data does.
    ``NAN_RSQUARE``
        R² is NaN (no variation in the data, or a non-finite sum of squares).
    ``AT_BOUND``
        A coefficient is held at a bound.
    ``UNRESOLVED_PEAKS``
        Two terms share a peak (centres closer than half the smaller width coefficient) or a
        term has zero height or zero width.
    ``TOO_MANY_TERMS``
        The data support fewer peaks than ``n`` (from the ``'auto'`` start estimator).

    Examples
    --------
    >>> quality_names(int(Quality.AT_BOUND | Quality.NEGATIVE_RSQUARE))
    ('negative_rsquare', 'at_bound')
    """

    NEGATIVE_RSQUARE = 1
    NAN_RSQUARE = 2
    AT_BOUND = 4
    UNRESOLVED_PEAKS = 8
    TOO_MANY_TERMS = 16


def quality_names(code: int) -> tuple[str, ...]:
    """The names (lowercase) of the :class:`Quality` flags set in ``code``."""
    return tuple(q.name.lower() for q in Quality if int(code) & int(q))  # type: ignore[union-attr]


def quality_flags(xp: Any, model: GaussianModel, p: Any, rsquare: Any, active: Any,
                  n_supported: Any = None) -> Any:
    """:class:`Quality` codes (k,) of solutions ``p`` (k, P), vectorised (NumPy or CuPy).

    ``rsquare`` (k,), ``active`` (k, P) coefficients held at a bound, ``n_supported`` (k,)
    peaks the data support (``-1`` or None: unknown).
    """
    n = model.n
    a, b, c = p[:, 0 : 3 * n : 3], p[:, 1 : 3 * n : 3], p[:, 2 : 3 * n : 3]
    with np.errstate(invalid="ignore"):
        unresolved = xp.any((a == 0) | (c == 0), axis=1)
        if n > 1:
            o = xp.argsort(b, axis=1)
            bs = xp.take_along_axis(b, o, axis=1)
            cs = xp.abs(xp.take_along_axis(c, o, axis=1))
            close = (bs[:, 1:] - bs[:, :-1]) < 0.5 * xp.minimum(cs[:, 1:], cs[:, :-1])
            unresolved = unresolved | xp.any(close, axis=1)
        q = ((rsquare < 0) * int(Quality.NEGATIVE_RSQUARE)
             + xp.isnan(rsquare) * int(Quality.NAN_RSQUARE)
             + xp.any(active, axis=1) * int(Quality.AT_BOUND)
             + unresolved * int(Quality.UNRESOLVED_PEAKS))
        if n_supported is not None:
            q = q + ((n_supported >= 0) & (n_supported < n)) * int(Quality.TOO_MANY_TERMS)
    return q.astype(xp.int64)


def format_g(value: float, spec: str) -> str:
    """C/MATLAB ``%g`` formatting with MATLAB's spelling of ``NaN`` and ``Inf``.

    Examples
    --------
    >>> format_g(21130.0, '11.4g')
    '  2.113e+04'
    >>> format_g(float('nan'), '.4g')
    'NaN'
    """
    if math.isnan(value) or math.isinf(value):
        word = "NaN" if math.isnan(value) else ("Inf" if value > 0 else "-Inf")
        width = spec.split(".")[0]
        return word.rjust(int(width)) if width else word
    return format(value, spec)


@dataclass(frozen=True)
class GoodnessOfFit:
    """MATLAB's ``gof`` struct: ``sse, rsquare, dfe, adjrsquare, rmse`` (also indexable).

    Examples
    --------
    >>> g = goodness_of_fit(np.array([1.0, 2.0, 3.0]), np.array([0.1, -0.1, 0.0]), 1)
    >>> g.dfe, round(g.rsquare, 6), g['dfe']
    (2, 0.99, 2)
    """

    sse: float
    rsquare: float
    dfe: int
    adjrsquare: float
    rmse: float

    def __getitem__(self, key: str) -> float:
        return getattr(self, key)

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in ("sse", "rsquare", "dfe", "adjrsquare", "rmse")}


def gof_rows(xp: Any, Ys: Any, W: Any, sse_s: Any, numobs: Any, numparam: int,
             n_active: Any, scale: Any = None) -> dict[str, Any]:
    """MATLAB's goodness-of-fit formulas for rows of data, vectorised (NumPy or CuPy).

    The one implementation, used by single fits (:func:`goodness_of_fit`) and batches. The data
    ``Ys`` (k, m) and the sums of squares ``sse_s`` (k,) are given divided by a per-row
    ``scale`` (k,) (e.g. ``max|y|``), so that data near 1e±300 give exact R² and RMSE; SSE is
    returned as ``sse_s * scale**2`` (which may overflow to ``inf`` or underflow to 0, as the
    true value does). ``W`` (k, m) are the weights (zero at unused points) or None.

    ``dfe = numobs - numparam + n_active``; ``rsquare = 1 - sse/sst`` (NaN when both are 0,
    ``-inf`` when only ``sst`` is); ``adjrsquare`` and ``rmse`` are NaN for ``dfe <= 0`` (then
    ``dfe`` is reported as 0).
    """
    s = xp.ones(Ys.shape[0]) if scale is None else scale
    with np.errstate(invalid="ignore", divide="ignore", over="ignore", under="ignore"):
        sst = _sst_rows(xp, Ys, W)
        g = _gof_formulas(xp.where, xp.sqrt, sse_s, sst, numobs, numparam, n_active, s)
    g["dfe"] = g["dfe"].astype(xp.int64)
    return g


#: Elements of the deviations' temporary per block of rows on the host: small enough to stay
#: in cache and reuse its pages (a fresh (k, m) temporary costs more in page faults than in
#: arithmetic).
_SST_BLOCK_ELEMENTS = 1 << 16


def _sst_rows(xp: Any, Ys: Any, W: Any) -> Any:
    """Total sum of squares of each row (weighted when ``W`` is given)."""
    k, m = Ys.shape
    rows = max(1, _SST_BLOCK_ELEMENTS // max(m, 1))
    if xp is np and k > rows:  # the same arithmetic per row, in blocks of rows
        return np.concatenate([
            _sst_block(np, Ys[i:i + rows], None if W is None else W[i:i + rows])
            for i in range(0, k, rows)
        ])
    return _sst_block(xp, Ys, W)


def _sst_block(xp: Any, Ys: Any, W: Any) -> Any:
    # row-wise products through einsum: one pass each, no temporaries but the deviations
    if W is None:
        dev = Ys - Ys.mean(axis=1, keepdims=True)
        return xp.einsum("ij,ij->i", dev, dev)
    sw = W.sum(axis=1)
    ybar = xp.einsum("ij,ij->i", W, Ys) / xp.where(sw > 0, sw, xp.nan)
    dev = Ys - ybar[:, None]
    return xp.einsum("ij,ij,ij->i", W, dev, dev)


def _scalar_where(cond: Any, a: Any, b: Any) -> Any:
    return a if cond else b


def _gof_formulas(where: Callable[[Any, Any, Any], Any], sqrt: Callable[[Any], Any],
                  sse_s: Any, sst: Any, numobs: Any, numparam: int, n_active: Any,
                  s: Any) -> dict[str, Any]:
    """MATLAB's goodness-of-fit formulas from the (scaled) sums of squares.

    Written once for rows (``where``/``sqrt`` of NumPy or CuPy on arrays) and for one spectrum
    (:func:`_scalar_where` and :func:`math.sqrt` on floats: the same IEEE operations in the
    same order, so the numbers are identical, without the cost of 1-element arrays).
    """
    rsq = where(sst != 0, 1.0 - sse_s / where(sst != 0, sst, 1.0), -math.inf)
    rsq = where((sst == 0) & (sse_s == 0), math.nan, rsq)
    dfe = numobs - numparam + n_active
    ok = dfe > 0
    dfe_safe = where(ok, dfe, 1)
    adj = where(ok, 1.0 - (1.0 - rsq) * (numobs - 1) / dfe_safe, math.nan)
    rmse = where(ok, sqrt(sse_s / dfe_safe) * s, math.nan)
    sse = sse_s * s * s
    return {"sse": sse, "rsquare": rsq, "adjrsquare": adj, "rmse": rmse,
            "dfe": where(ok, dfe, 0)}


def goodness_of_fit(
    y: np.ndarray, residuals: np.ndarray, numparam: int, weights: np.ndarray | None = None,
    n_active: int = 0,
) -> GoodnessOfFit:
    """MATLAB's goodness-of-fit formulas (``fit.m``, ``iGoodnessStructure``) for one spectrum.

    ``residuals`` are the *unweighted* residuals ``y - f``; with weights ``w`` the sums are
    weighted: ``sse = sum(w r^2)``, ``ybar = sum(w y)/sum(w)``, ``sst = sum(w (y-ybar)^2)``.
    See :func:`gof_rows` (the same formulas for many rows, which this calls).
    """
    y = np.asarray(y, dtype=float)
    r = np.asarray(residuals, dtype=float)
    s = float(np.max(np.abs(y))) if y.size else 1.0
    s = s if s > 0 and math.isfinite(s) else 1.0
    ys, rs = y / s, r / s
    w = None if weights is None else np.asarray(weights, dtype=float)
    sse_s = float(np.sum(rs * rs if w is None else w * rs * rs))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore", under="ignore"):
        sst = float(_sst_rows(np, ys[None, :], None if w is None else w[None, :])[0])
    g = _gof_formulas(_scalar_where, math.sqrt, sse_s, sst, y.size, numparam, int(n_active), s)
    return GoodnessOfFit(float(g["sse"]), float(g["rsquare"]), int(g["dfe"]),
                         float(g["adjrsquare"]), float(g["rmse"]))


@dataclass(frozen=True)
class FitOutput:
    """MATLAB's ``output`` struct (third output of ``fit``).

    ``residuals`` are ``y - f`` for the points used (weighted by ``sqrt(w)`` when weights are
    given, as MATLAB), in the caller's original order; ``jacobian`` is the full
    ``numobs x numparam`` Jacobian at the solution (weighted likewise).
    """

    numobs: int
    numparam: int
    residuals: np.ndarray
    jacobian: np.ndarray
    exitflag: int
    iterations: int
    funcCount: int
    firstorderopt: float
    algorithm: str
    message: str
    activebounds: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def __getattr__(self, name: str) -> Any:
        # a result built by build_fit_result computes its Jacobian on first access
        fn = self.__dict__.get("_jacobian_fn") if name == "jacobian" else None
        if fn is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        J = fn()
        object.__setattr__(self, "jacobian", J)
        return J

    @classmethod
    def _lazy(cls, jacobian: Callable[[], np.ndarray], **fields: Any) -> FitOutput:
        """A FitOutput whose ``jacobian`` is ``jacobian()``, computed when first read."""
        out = cls(jacobian=None, **fields)  # type: ignore[arg-type]
        object.__delattr__(out, "jacobian")
        object.__setattr__(out, "_jacobian_fn", jacobian)
        return out


def _weighted_jacobian(model: GaussianModel, xs: np.ndarray, p: np.ndarray,
                       sw: np.ndarray | None, inv: np.ndarray) -> np.ndarray:
    """The Jacobian at ``p`` (weighted by ``sw``), rows in the caller's order."""
    _, Jt = model.evaluate(xs, p[None, :], jacobian=True)
    J = Jt[0].T if sw is None else Jt[0].T * sw[:, None]
    return J[inv]


@dataclass
class GaussianFit:
    """The fit of a sum of Gaussians to one spectrum.

    Attributes
    ----------
    model : GaussianModel
    p : ndarray (P,)
        Coefficients in MATLAB order (``a1, b1, c1, a2, ...``, then baseline).
    gof : GoodnessOfFit
    output : FitOutput
    options : FitOptions
    start : ndarray (P,)
        The start point the solver used (same order as ``p``).
    x, y : ndarray
        The data used for the fit (excluded points removed), in the caller's order.
    weights : ndarray or None
    normalization : (mean, std) or None
        Set when ``Normalize`` was on: the coefficients refer to ``(x - mean)/std``.

    Notes
    -----
    Peaks are reported in the order of ``p``. :func:`peakfit.fit_gaussians` sorts the terms by
    ascending centre (``sort=True``), so ``a1, b1, c1`` is the leftmost peak;
    :func:`peakfit.matlab.fit` keeps the solver's order, as MATLAB does.

    Examples
    --------
    >>> import numpy as np, peakfit
    >>> x = np.linspace(0, 10, 201)
    >>> y = 3 * np.exp(-((x - 4) / 0.8) ** 2) + np.exp(-((x - 6.5) / 1.1) ** 2)
    >>> r = peakfit.fit_gaussians(x, y, n=2)
    >>> np.round(r.means, 6).tolist()
    [4.0, 6.5]
    >>> float(np.round(r(4.0), 6))  # 3 + exp(-(2.5/1.1)**2)
    3.005711
    """

    model: GaussianModel
    p: np.ndarray
    gof: GoodnessOfFit
    output: FitOutput
    options: FitOptions
    start: np.ndarray
    x: np.ndarray
    y: np.ndarray
    weights: np.ndarray | None = None
    normalization: tuple[float, float] | None = None
    fit_state: FitState | None = None
    n_supported: int = -1
    _rinv: np.ndarray | None = field(default=None, repr=False)

    # ------------------------------------------------------------ structure
    @property
    def names(self) -> tuple[str, ...]:
        """Coefficient names in MATLAB order."""
        return self.model.names

    @property
    def coefficients(self) -> dict[str, float]:
        """Coefficients by MATLAB name, in MATLAB order (``coeffvalues``/``coeffnames``)."""
        return {k: float(v) for k, v in zip(self.names, self.p)}

    def __getattr__(self, name: str) -> float:
        # fitresult.a1 as in MATLAB; only called when normal lookup fails
        if name.startswith("_"):
            raise AttributeError(name)
        names = self.__dict__.get("model").names if "model" in self.__dict__ else ()
        if name in names:
            return float(self.p[names.index(name)])
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    @property
    def n(self) -> int:
        """Number of Gaussian terms."""
        return self.model.n

    @property
    def a(self) -> np.ndarray:
        """Amplitudes (peak heights above the baseline), per term."""
        return self.p[0 : 3 * self.n : 3].copy()

    @property
    def b(self) -> np.ndarray:
        """Centres, per term."""
        return self.p[1 : 3 * self.n : 3].copy()

    @property
    def c(self) -> np.ndarray:
        """Width coefficients ``c = sqrt(2)*sigma``, per term."""
        return self.p[2 : 3 * self.n : 3].copy()

    @property
    def means(self) -> np.ndarray:
        """Peak centres sorted ascending (in original x units, also when Normalize is on)."""
        b = self.b
        if self.normalization is not None:
            mu, sd = self.normalization
            b = b * sd + mu
        return np.sort(b)

    @property
    def sigma(self) -> np.ndarray:
        """Standard deviations ``c/sqrt(2)``."""
        return self.c / math.sqrt(2.0)

    @property
    def fwhm(self) -> np.ndarray:
        """Full widths at half maximum ``2 sqrt(ln 2) c``."""
        return self.c * FWHM_PER_C

    @property
    def height(self) -> np.ndarray:
        """Peak heights (``a``)."""
        return self.a

    @property
    def area(self) -> np.ndarray:
        """Peak areas ``a c sqrt(pi)``."""
        return self.a * self.c * math.sqrt(math.pi)

    @property
    def peaks(self) -> Any:
        """The :class:`~peakfit.peaks.PeakTable`: centre, height, sigma, FWHM, area ± se."""
        from .peaks import peak_table

        return peak_table(self)

    @property
    def baseline(self) -> dict[str, float]:
        """Baseline coefficients by name (empty without a baseline)."""
        k = 3 * self.n
        return {nm: float(v) for nm, v in zip(self.model.baseline_names, self.p[k:])}

    @property
    def exitflag(self) -> int:
        return self.output.exitflag

    @property
    def state(self) -> FitState:
        """Outcome as a :class:`FitState` (convergence; see :attr:`quality` for the rest)."""
        if self.fit_state is not None:
            return FitState(self.fit_state)
        return state_from_exitflag(self.output.exitflag)

    @property
    def converged(self) -> bool:
        """True when the solver met a tolerance (state ``CONVERGED``)."""
        return self.state is FitState.CONVERGED

    @property
    def quality_code(self) -> int:
        """The :class:`Quality` flags of this fit as an int (0: none, or not fitted)."""
        if self.state in NOT_FITTED_MESSAGES:
            return 0
        active = self.output.activebounds
        if active.size != self.p.size:
            active = np.zeros(self.p.size, dtype=bool)
        q = quality_flags(np, self.model, self.p[None, :], np.array([self.gof.rsquare]),
                          active[None, :], np.array([self.n_supported]))
        return int(q[0])

    @property
    def quality(self) -> tuple[str, ...]:
        """Names of the :class:`Quality` flags of this fit (empty: none)."""
        return quality_names(self.quality_code)

    @property
    def activebounds(self) -> np.ndarray:
        """Boolean mask of coefficients stuck at a bound."""
        return self.output.activebounds

    # ------------------------------------------------------------ evaluation
    def _xin(self, x: Any) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if self.normalization is not None:
            mu, sd = self.normalization
            x = (x - mu) / sd
        return x

    def __call__(self, x: Any) -> np.ndarray:
        """Evaluate the fitted model at ``x`` (original units)."""
        x = np.asarray(x, dtype=float)
        shape = x.shape
        return self.model(self._xin(x).ravel(), self.p).reshape(shape)

    def component(self, i: int, x: Any) -> np.ndarray:
        """The ``i``-th Gaussian term alone (0-based) at ``x``."""
        return self.model.component(i, self._xin(x), self.p)

    def baseline_values(self, x: Any) -> np.ndarray:
        """The baseline term alone at ``x``."""
        q = self.p.copy()
        q[: 3 * self.n] = 0.0
        return self.model(self._xin(np.asarray(x, float)).ravel(), q).reshape(np.shape(x))

    # ------------------------------------------------------------ statistics
    def _free(self) -> np.ndarray:
        return ~self.output.activebounds

    def _r_inverse(self) -> np.ndarray:
        if self._rinv is None:
            J = self.output.jacobian[:, self._free()]
            try:
                R = np.linalg.qr(J, mode="r")
                with np.errstate(all="ignore"):
                    rinv = linalg.solve_triangular(R, np.eye(R.shape[0]), check_finite=False)
            except (np.linalg.LinAlgError, ValueError):
                rinv = np.full((J.shape[1], J.shape[1]), np.nan)
            self._rinv = rinv
        return self._rinv

    @property
    def covariance(self) -> np.ndarray:
        """Covariance of the coefficients ``Rinv Rinvᵀ sse/dfe`` (NaN at active bounds)."""
        P = self.model.n_params
        cov = np.full((P, P), np.nan)
        dfe = self.gof.dfe
        if dfe <= 0:
            return cov
        rinv = self._r_inverse()
        free = np.flatnonzero(self._free())
        cov[np.ix_(free, free)] = rinv @ rinv.T * (self.gof.sse / dfe)
        return cov

    @property
    def stderr(self) -> np.ndarray:
        """Standard errors of the coefficients (MATLAB order)."""
        with np.errstate(invalid="ignore"):
            return np.sqrt(np.diag(self.covariance))

    def confint(self, level: float = 0.95) -> np.ndarray:
        """Confidence bounds of the coefficients, MATLAB's ``confint``.

        Returns a ``2 x P`` array (row 0 lower, row 1 upper); NaN for coefficients at an active
        bound. ``ci = p ± t_{(1+level)/2, dfe} * sqrt(sum(Rinv.^2, 2) * sse/dfe)``.

        Raises
        ------
        InputError
            If ``level`` is not in (0, 1) or there are no degrees of freedom (``dfe <= 0``).
        """
        level = _check_level(level)
        if self.gof.dfe <= 0:
            raise InputError(
                "cannot compute confidence intervals: the number of observations "
                f"({self.output.numobs}) does not exceed the number of free coefficients"
            )
        t = -stats.t.ppf((1.0 - level) / 2.0, self.gof.dfe)
        se = self.stderr
        return np.vstack([self.p - t * se, self.p + t * se])

    def predint(
        self,
        x: Any,
        level: float = 0.95,
        kind: str = "observation",
        simultaneous: bool = False,
    ) -> np.ndarray:
        """Prediction bounds at ``x``, MATLAB's ``predint``.

        Parameters
        ----------
        x : array_like
            Where to predict.
        level : float
            Confidence level.
        kind : {'observation', 'functional'}
            Bounds for a new observation (``delta = sqrt(1 + sum(E.^2, 2))``) or for the fitted
            curve (``delta = sqrt(sum(E.^2, 2))``), ``E = J(x) Rinv``.
        simultaneous : bool
            Simultaneous bounds, ``crit = sqrt(P F^{-1}(level; P, dfe))``; otherwise
            ``crit = t_{(1+level)/2, dfe}``.

        Returns
        -------
        ndarray (len(x), 2)
            Lower and upper bounds.
        """
        level = _check_level(level)
        kind = str(kind).lower()
        if kind not in ("observation", "functional"):
            raise InputError(f"kind must be 'observation' or 'functional', got {kind!r}")
        dfe = self.gof.dfe
        if dfe <= 0:
            raise InputError("cannot compute prediction bounds with no degrees of freedom")
        xv = np.atleast_1d(np.asarray(x, dtype=float)).ravel()
        f, Jt = self.model.evaluate(self._xin(xv), self.p[None, :], jacobian=True)
        J = Jt[0].T[:, self._free()]
        E = J @ self._r_inverse()
        s2 = np.sum(E * E, axis=1)
        delta = np.sqrt(1.0 + s2) if kind == "observation" else np.sqrt(s2)
        npar = int(self._free().sum())
        if simultaneous:
            crit = math.sqrt(npar * stats.f.ppf(level, npar, dfe))
        else:
            crit = -stats.t.ppf((1.0 - level) / 2.0, dfe)
        half = delta * self.gof.rmse * crit
        return np.column_stack([f[0] - half, f[0] + half])

    # ------------------------------------------------------------ display
    def display(self, name: str = "f", level: float = 0.95, gof: bool = True) -> str:
        """MATLAB's display text of the fit, optionally followed by cftool's goodness of fit.

        Coefficient lines use MATLAB's format ``'       %s = %11.4g  (%.4g, %.4g)'``.
        """
        lines = [f"     General model {self.model.matlab_name}:"]
        lines.append(f"     {name}(x) = {self.model.formula()}")
        if self.normalization is not None:
            mu, sd = self.normalization
            lines.append(
                f"       where x is normalized by mean {format_g(mu, '0.4g')} "
                f"and std {format_g(sd, '0.4g')}"
            )
        ci = None
        if self.gof.dfe > 0:
            ci = self.confint(level)
            lines.append(f"     Coefficients (with {level * 100:g}% confidence bounds):")
        else:
            lines.append("     Coefficients:")
        active = self.output.activebounds
        for i, nm in enumerate(self.names):
            v = format_g(float(self.p[i]), "11.4g")
            if active.size and active[i]:
                lines.append(f"       {nm} = {v}  (fixed at bound)")
            elif ci is None or np.isnan(ci[0, i]) or np.isnan(ci[1, i]):
                lines.append(f"       {nm} = {v}")
            else:
                lo = format_g(float(ci[0, i]), ".4g")
                hi = format_g(float(ci[1, i]), ".4g")
                lines.append(f"       {nm} = {v}  ({lo}, {hi})")
        if gof:
            g = self.gof
            lines += [
                "",
                "Goodness of fit:",
                f"  SSE: {format_g(g.sse, '.4g')}",
                f"  R-square: {format_g(g.rsquare, '.4g')}",
                f"  Adjusted R-square: {format_g(g.adjrsquare, '.4g')}",
                f"  RMSE: {format_g(g.rmse, '.4g')}",
            ]
            if self.output.exitflag <= 0:
                lines += ["", self.output.message]
            if self.quality:
                lines += ["", f"Quality flags: {', '.join(self.quality)}"]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.display()

    def __repr__(self) -> str:
        means = ", ".join(f"{m:.6g}" for m in self.means)
        return (
            f"<GaussianFit {self.model.matlab_name}: means=[{means}], "
            f"sse={self.gof.sse:.6g}, exitflag={self.output.exitflag}>"
        )

    # ------------------------------------------------------------ conversion
    def to_dict(self) -> dict[str, Any]:
        """Plain-Python summary (JSON serialisable)."""
        se = self.stderr
        return {
            "model": self.model.matlab_name,
            "baseline": self.model.baseline,
            "coefficients": self.coefficients,
            "stderr": {k: _num(v) for k, v in zip(self.names, se)},
            "means": [float(v) for v in self.means],
            "gof": {k: _num(v) for k, v in self.gof.as_dict().items()},
            "exitflag": int(self.output.exitflag),
            "state": self.state.name.lower(),
            "quality": list(self.quality),
            "iterations": int(self.output.iterations),
            "funcCount": int(self.output.funcCount),
            "message": self.output.message,
        }

    def plot(self, ax: Any = None, **kwargs: Any) -> Any:
        """Plot data, fit, components and residuals (needs matplotlib); see :mod:`peakfit.plot`."""
        from .plot import plot_fit

        return plot_fit(self, ax=ax, **kwargs)

    def to_lmfit(self) -> Any:
        """lmfit ``Parameters`` with values and standard errors; see :mod:`peakfit.interop`."""
        from .interop import to_lmfit

        return to_lmfit(self)


def build_fit_result(
    model: GaussianModel,
    opts: FitOptions,
    algorithm: str,
    p: np.ndarray,
    held: np.ndarray,
    start: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    ws: np.ndarray | None,
    order: np.ndarray,
    *,
    iterations: int,
    nfev: int,
    exitflag: int,
    firstorderopt: float,
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None,
    normalization: tuple[float, float] | None = None,
    sort: bool = True,
    message: str | None = None,
    state: int | None = None,
    n_supported: int = -1,
) -> GaussianFit:
    """Assemble the :class:`GaussianFit` of one spectrum from a solution.

    The one place where a single fit's result is built, used by :func:`fit_gaussians` and by
    indexing a batch result (``BatchFit[i]``): optional sorting of the terms by centre, active
    bounds, Jacobian and residuals at the solution, goodness of fit, exit message and
    ``FitOutput``, state and quality flags.

    Parameters
    ----------
    model, opts, algorithm :
        The model, the fit options (bounds) and the algorithm actually run.
    p, held, start : ndarray (P,)
        Solution (original units), coefficients held at a bound, start point.
    xs, ys, ws : ndarray (m,)
        The data used, sorted by x (``ws`` the weights or None).
    order : ndarray of int (m,)
        The sorting permutation: ``xs = x[order]``; residuals and Jacobian are returned in the
        caller's order.
    iterations, nfev, exitflag, firstorderopt :
        Solver statistics (``firstorderopt`` in data units).
    x, y, weights :
        The data in the caller's order, stored on the result.
    normalization : (mean, std), optional
    sort : bool
        Reorder the terms by ascending centre.
    message : str, optional
        Replaces the exit message.
    state : FitState, optional
        The pipeline's state (default: from ``exitflag``); rows that were not fitted get the
        message of their state.
    n_supported : int
        Peaks the data support (``-1``: unknown), for the ``TOO_MANY_TERMS`` quality flag.

    Returns
    -------
    GaussianFit
    """
    n = model.n
    P = model.n_params
    p = np.asarray(p, dtype=float)
    held = np.asarray(held, dtype=bool)
    start = np.asarray(start, dtype=float)
    if sort:
        p_sorted, perm = model.sort_peaks(p)
        idx = np.concatenate([(3 * perm[:, None] + np.arange(3)).ravel(), np.arange(3 * n, P)])
        p, held, start = p_sorted, held[idx], start[idx]

    lo, hi = opts.bounds(model)
    active = held & ((p <= lo) | (p >= hi))
    r = ys - model.evaluate(xs, p[None, :])[0]
    sw = None if ws is None else np.sqrt(ws)
    r_out = r if sw is None else r * sw
    st = state_from_exitflag(exitflag) if state is None else FitState(int(state))
    if st in NOT_FITTED_MESSAGES:
        gof = GoodnessOfFit(math.nan, math.nan, 0, math.nan, math.nan)
    else:
        gof = goodness_of_fit(ys, r, P, ws, int(active.sum()))
    if message is None:
        message = NOT_FITTED_MESSAGES.get(st) or EXITFLAG_MESSAGES.get(exitflag, "")
        if st is FitState.CONSTANT_DATA:
            message = (f"Not fitted: the data are constant (all y = {ys[0]:g}), so the peak "
                       "coefficients are not identifiable.")
        elif st is FitState.NONFINITE_MODEL and not np.all(np.isfinite(p)):
            message = ("The solution is not finite in the data's units (a coefficient "
                       "overflows when the internal scaling is undone); rescale x or y.")
    inv = np.empty_like(order)
    inv[order] = np.arange(order.size)
    output = FitOutput._lazy(
        functools.partial(_weighted_jacobian, model, xs, p.copy(), sw, inv),
        numobs=int(xs.size), numparam=P, residuals=r_out[inv],
        exitflag=int(exitflag), iterations=int(iterations), funcCount=int(nfev),
        firstorderopt=float(firstorderopt),
        algorithm=("trust-region-reflective" if algorithm == "Trust-Region"
                   else "levenberg-marquardt"),
        message=message, activebounds=active,
    )
    return GaussianFit(
        model=model, p=p, gof=gof, output=output, options=opts, start=start,
        x=x, y=y, weights=weights, normalization=normalization, fit_state=st,
        n_supported=int(n_supported),
    )


def _num(v: Any) -> float | int | None:
    if isinstance(v, (int, np.integer)):
        return int(v)
    v = float(v)
    return None if math.isnan(v) else v


def _check_level(level: float) -> float:
    try:
        level = float(level)
    except (TypeError, ValueError):
        raise InputError(f"level must be a number in (0, 1), got {level!r}") from None
    if not 0.0 < level < 1.0:
        raise InputError(f"level must be in (0, 1), got {level}")
    return level
