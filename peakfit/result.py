"""Fit results: goodness of fit, optimizer output, confidence and prediction bounds, display.

:class:`GaussianFit` is the result of one spectrum, from :func:`peakfit.fit_gaussians`, from
:func:`peakfit.matlab.fit` and from indexing a batch result. It carries MATLAB's ``cfit``,
``gof`` and ``output`` in one object, computes ``confint``/``predint`` with MATLAB's formulas and
prints MATLAB's display text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
from scipy import linalg, stats

from .errors import InputError
from .models import FWHM_PER_C, GaussianModel
from .options import FitOptions

__all__ = [
    "FitOutput",
    "FitState",
    "GaussianFit",
    "GoodnessOfFit",
    "format_g",
    "goodness_of_fit",
    "state_from_exitflag",
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


def state_from_exitflag(flag: int) -> FitState:
    """Map an ``exitflag`` to a :class:`FitState`."""
    return FitState.CONVERGED if flag > 0 else _STATE_OF_FLAG.get(int(flag), FitState.NOT_FITTED)


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


def goodness_of_fit(
    y: np.ndarray, residuals: np.ndarray, numparam: int, weights: np.ndarray | None = None,
    n_active: int = 0,
) -> GoodnessOfFit:
    """MATLAB's goodness-of-fit formulas (``fit.m``, ``iGoodnessStructure``).

    ``residuals`` are the *unweighted* residuals ``y - f``; with weights ``w`` the sums are
    weighted: ``sse = sum(w r^2)``, ``ybar = sum(w y)/sum(w)``, ``sst = sum(w (y-ybar)^2)``.
    ``dfe = numobs - numparam + n_active``; ``rsquare = 1 - sse/sst`` (NaN when both are 0);
    ``adjrsquare = 1 - (1-rsquare)(numobs-1)/dfe`` and ``rmse = sqrt(sse/dfe)``, NaN for
    ``dfe <= 0`` (then ``dfe`` is reported as 0).
    """
    y = np.asarray(y, dtype=float)
    r = np.asarray(residuals, dtype=float)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)
    numobs = y.size
    sse = float(np.sum(w * r * r))
    sw = float(np.sum(w))
    ybar = float(np.sum(w * y) / sw) if sw > 0 else float("nan")
    sst = float(np.sum(w * (y - ybar) ** 2))
    if sst == 0 and sse == 0:
        rsq = float("nan")
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            rsq = float(1.0 - sse / sst) if sst != 0 else float("-inf")
    dfe = numobs - numparam + int(n_active)
    if dfe <= 0:
        return GoodnessOfFit(sse, rsq, 0, float("nan"), float("nan"))
    adj = 1.0 - (1.0 - rsq) * (numobs - 1) / dfe
    return GoodnessOfFit(sse, rsq, int(dfe), float(adj), float(math.sqrt(sse / dfe)))


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
        """Outcome as a :class:`FitState`."""
        return state_from_exitflag(self.output.exitflag)

    @property
    def converged(self) -> bool:
        """True when the solver met a tolerance (``exitflag > 0``)."""
        return self.output.exitflag > 0

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
        a, b, c = self.a[i], self.b[i], self.c[i]
        t = (self._xin(x) - b) / c if c != 0 else np.zeros_like(np.asarray(x, float))
        return a * np.exp(-(t**2)) if c != 0 else t

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
