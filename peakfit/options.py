"""Fit options with MATLAB's names and defaults, and Pythonic aliases.

``FitOptions`` mirrors MATLAB's ``fitoptions('gaussN')``: the same field names, the same defaults
(``TolFun = TolX = 1e-6``, ``MaxIter = 400``, ``MaxFunEvals = 600``, ``Lower = [-Inf -Inf 0]`` per
term, ``Algorithm = 'Trust-Region'``). Every name is also accepted in snake case (``tol_fun``) and
case-insensitively (``tolfun``). Options are validated once, here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputError
from .models import GaussianModel, gauss_model

__all__ = ["FitOptions", "fitoptions"]

_ALGORITHMS = {"trust-region": "Trust-Region", "levenberg-marquardt": "Levenberg-Marquardt"}
_ROBUST = {"off": "off", "lar": "LAR", "bisquare": "Bisquare", "on": "Bisquare"}
_DISPLAY = {"notify": "notify", "off": "off", "final": "final", "iter": "iter"}

# MATLAB field name -> dataclass attribute
_FIELDS = {
    "Normalize": "normalize",
    "Exclude": "exclude",
    "Weights": "weights",
    "Method": "method",
    "Robust": "robust",
    "StartPoint": "start_point",
    "Lower": "lower",
    "Upper": "upper",
    "Algorithm": "algorithm",
    "DiffMinChange": "diff_min_change",
    "DiffMaxChange": "diff_max_change",
    "Display": "display",
    "MaxFunEvals": "max_fun_evals",
    "MaxIter": "max_iter",
    "TolFun": "tol_fun",
    "TolX": "tol_x",
}
_ALIASES: dict[str, str] = {}
for _mat, _py in _FIELDS.items():
    _ALIASES[_mat.lower()] = _py
    _ALIASES[_py] = _py
    _ALIASES[_py.replace("_", "")] = _py
_ALIASES.update({"start": "start_point", "maxfev": "max_fun_evals", "max_nfev": "max_fun_evals"})


def _label(attr: str) -> str:
    """``'TolFun (tol_fun)'``: an option's MATLAB name and attribute name, for messages."""
    mat = next((m for m, py in _FIELDS.items() if py == attr), None)
    return f"{mat} ({attr})" if mat else attr


def _vector_or_none(name: str, v: Any) -> np.ndarray | None:
    if v is None:
        return None
    try:
        a = np.asarray(v)
    except ValueError as exc:  # ragged nested lists
        from ._validate import ragged_error

        raise ragged_error(name, v, exc) from None
    if a.size == 0:
        return None
    if np.iscomplexobj(a):
        raise InputError(f"{name} must be real, got complex values")
    try:
        a = a.astype(float).ravel()
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be numeric: {exc}") from None
    return a


@dataclass
class FitOptions:
    """Options of a gaussN fit (MATLAB ``fitoptions`` fields, snake-cased).

    Build one with :func:`fitoptions`, which accepts MATLAB names (``TolFun=1e-8``) as well as
    the attribute names below (``tol_fun=1e-8``).

    Attributes
    ----------
    normalize : bool
        Centre and scale x by its mean and standard deviation before fitting (MATLAB
        ``Normalize 'on'``); coefficients then refer to the normalised x.
    exclude : array of bool or int, optional
        Points to leave out: a boolean mask (True = exclude) or integer indices.
    weights : array, optional
        Non-negative weight per point; the fit minimises ``sum(w * (y - f)**2)``.
    method : str
        Always ``'NonlinearLeastSquares'``.
    robust : {'off', 'LAR', 'Bisquare'}
        Robust fitting by iteratively reweighted least squares.
    start_point : array, optional
        Explicit start vector in coefficient order; None lets the start estimator choose.
    lower, upper : array, optional
        Bounds; None means MATLAB's defaults (``c_i >= 0``, everything else free).
    algorithm : {'Trust-Region', 'Levenberg-Marquardt'}
        ``'Levenberg-Marquardt'`` is switched to ``'Trust-Region'`` (with a warning) whenever a
        bound is finite, as MATLAB does.
    diff_min_change, diff_max_change : float
        Accepted for compatibility; peakfit always uses the analytic Jacobian.
    display : {'notify', 'off', 'final', 'iter'}
        ``'notify'`` warns when the fit does not converge, ``'final'`` prints the exit message,
        ``'iter'`` prints one line per iteration.
    max_fun_evals, max_iter : int
        Limits on model evaluations and iterations.
    tol_fun, tol_x : float
        Relative tolerances on the change of the sum of squares and of the coefficients.

    Examples
    --------
    >>> opts = fitoptions('gauss2', TolFun=1e-8)
    >>> opts.tol_fun, opts.max_iter
    (1e-08, 400)
    >>> opts.lower.tolist()
    [-inf, -inf, 0.0, -inf, -inf, 0.0]
    """

    normalize: bool = False
    exclude: np.ndarray | None = None
    weights: np.ndarray | None = None
    method: str = "NonlinearLeastSquares"
    robust: str = "off"
    start_point: np.ndarray | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    algorithm: str = "Trust-Region"
    diff_min_change: float = 1e-8
    diff_max_change: float = 0.1
    display: str = "notify"
    max_fun_evals: int = 600
    max_iter: int = 400
    tol_fun: float = 1e-6
    tol_x: float = 1e-6
    model: GaussianModel | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check and normalise every field (called on construction and by :meth:`replace`)."""
        nz = self.normalize
        if isinstance(nz, str):
            if nz.lower() not in ("on", "off"):
                raise InputError(f"Normalize must be 'on' or 'off', got {nz!r}")
            nz = nz.lower() == "on"
        self.normalize = bool(nz)
        if str(self.method).lower() != "nonlinearleastsquares":
            raise InputError(
                f"Method must be 'NonlinearLeastSquares' for gaussN models, got {self.method!r}"
            )
        self.method = "NonlinearLeastSquares"
        r = self.robust
        if r is True:
            r = "bisquare"
        if r is False or r is None:
            r = "off"
        if str(r).lower() not in _ROBUST:
            raise InputError(f"Robust must be 'off', 'LAR' or 'Bisquare', got {self.robust!r}")
        self.robust = _ROBUST[str(r).lower()]
        alg = str(self.algorithm).lower().replace("_", "-").replace(" ", "-")
        if alg in ("lm", "levenberg-marquardt", "levenbergmarquardt"):
            alg = "levenberg-marquardt"
        if alg in ("trust-region", "trustregion", "tr", "trust-region-reflective", "trf"):
            alg = "trust-region"
        if alg not in _ALGORITHMS:
            raise InputError(
                f"Algorithm must be 'Trust-Region' or 'Levenberg-Marquardt', got {self.algorithm!r}"
            )
        self.algorithm = _ALGORITHMS[alg]
        d = str(self.display).lower()
        if d not in _DISPLAY:
            raise InputError(f"Display must be one of {sorted(_DISPLAY)}, got {self.display!r}")
        self.display = _DISPLAY[d]
        for name in ("tol_fun", "tol_x", "diff_min_change", "diff_max_change"):
            v = getattr(self, name)
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise InputError(f"{_label(name)} must be a number, got {v!r}") from None
            if not np.isfinite(v) or v < 0:
                raise InputError(f"{_label(name)} must be a finite number >= 0, got {v!r}")
            setattr(self, name, v)
        for name in ("max_iter", "max_fun_evals"):
            v = getattr(self, name)
            try:
                ok = not isinstance(v, (bool, str)) and float(v).is_integer() and v >= 0
            except (TypeError, ValueError, OverflowError):
                ok = False
            if not ok:
                raise InputError(f"{_label(name)} must be an integer >= 0, got {v!r}")
            setattr(self, name, int(v))
        self.start_point = _vector_or_none("StartPoint", self.start_point)
        self.lower = _vector_or_none("Lower", self.lower)
        self.upper = _vector_or_none("Upper", self.upper)
        self.weights = _vector_or_none("Weights", self.weights)
        if self.weights is not None:
            if not np.all(np.isfinite(self.weights)):
                bad = np.flatnonzero(~np.isfinite(self.weights))
                raise InputError(
                    f"Weights has {bad.size} non-finite value(s), first at index {bad[0]}"
                )
            if np.any(self.weights < 0):
                bad = np.flatnonzero(self.weights < 0)
                raise InputError(
                    f"Weights must be >= 0: {bad.size} negative value(s), first at index {bad[0]}"
                )
        if self.exclude is not None:
            ex = np.asarray(self.exclude)
            if ex.size == 0:
                self.exclude = None
            elif ex.dtype == bool:
                self.exclude = ex.ravel()
            elif np.issubdtype(ex.dtype, np.integer):
                self.exclude = ex.ravel().astype(np.intp)
            else:
                raise InputError("Exclude must be a boolean mask or integer indices")
        if self.start_point is not None and not np.all(np.isfinite(self.start_point)):
            bad = np.flatnonzero(~np.isfinite(self.start_point))
            raise InputError(
                f"StartPoint has {bad.size} non-finite value(s), first at index {bad[0]}"
            )
        if self.model is not None:
            self.check_lengths(self.model)

    def check_lengths(self, model: GaussianModel) -> None:
        """Raise if StartPoint, Lower or Upper do not match ``model``, or if Lower > Upper."""
        P = model.n_params
        for name, v in (("StartPoint", self.start_point), ("Lower", self.lower),
                        ("Upper", self.upper)):
            if v is not None and v.size != P:
                raise InputError(
                    f"{name} has {v.size} element(s) but the model {model.matlab_name} has "
                    f"{P} coefficients ({', '.join(model.names)})"
                )
        lo, hi = self.bounds(model)
        if np.any(lo > hi):
            i = int(np.flatnonzero(lo > hi)[0])
            raise InputError(
                f"Lower > Upper for coefficient {model.names[i]}: {lo[i]} > {hi[i]}"
            )
        if np.any(np.isnan(lo)) or np.any(np.isnan(hi)):
            raise InputError("Lower and Upper must not contain NaN")

    def bounds(self, model: GaussianModel) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds for ``model``, MATLAB defaults where not given."""
        lo = model.default_lower() if self.lower is None else self.lower.copy()
        hi = model.default_upper() if self.upper is None else self.upper.copy()
        return lo, hi

    def effective_algorithm(self, model: GaussianModel) -> str:
        """The algorithm actually run: LM is switched to trust-region when a bound is finite."""
        if self.algorithm == "Levenberg-Marquardt":
            lo, hi = self.bounds(model)
            if np.any(np.isfinite(lo)) or np.any(np.isfinite(hi)):
                return "Trust-Region"
        return self.algorithm

    # -------------------------------------------------------------- helpers
    def replace(self, **kwargs: Any) -> FitOptions:
        """A copy with some options changed (any accepted spelling)."""
        new = dataclasses.replace(self, **_canonical(kwargs))
        return new

    def to_matlab(self) -> dict[str, Any]:
        """The options as a dict keyed by MATLAB field names."""
        return {mat: getattr(self, py) for mat, py in _FIELDS.items()}

    def __str__(self) -> str:
        def fmt(v: Any) -> str:
            if v is None:
                return "[]"
            if isinstance(v, bool):
                return "'on'" if v else "'off'"
            if isinstance(v, str):
                return f"'{v}'"
            if isinstance(v, np.ndarray):
                if v.size > 8:
                    return f"[1x{v.size} double]"
                return "[" + " ".join(f"{x:g}".replace("inf", "Inf") for x in v) + "]"
            if isinstance(v, float):
                return f"{v:.4e}" if v < 1e-3 or v >= 1e4 else f"{v:.4f}"
            return str(v)

        d = self.to_matlab()
        lo, _hi = (None, None)
        if self.model is not None:
            lo, _hi = self.bounds(self.model)
            d["Lower"] = lo if self.lower is None else self.lower
        w = max(len(k) for k in d)
        return "\n".join(f"{k:>{w + 4}}: {fmt(v)}" for k, v in d.items())


def _canonical(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, val in kwargs.items():
        k = _ALIASES.get(str(key).lower()) or _ALIASES.get(str(key))
        if k is None:
            raise InputError(
                f"unknown fit option {key!r}; known options: {', '.join(_FIELDS)}"
            )
        if k in out:
            raise InputError(f"fit option {key!r} given twice (as another spelling too)")
        out[k] = val
    return out


def fitoptions(model: str | int | GaussianModel | None = None, /, **kwargs: Any) -> FitOptions:
    """Create fit options, MATLAB style.

    Parameters
    ----------
    model : str or int or GaussianModel, optional
        ``'gaussN'``; when given, the default ``Lower`` for that model is filled in and the
        lengths of StartPoint/Lower/Upper are checked.
    **kwargs
        Any option by MATLAB name (``TolFun``, case-insensitive) or attribute name (``tol_fun``).

    Returns
    -------
    FitOptions

    Examples
    --------
    >>> o = fitoptions('gauss4', TolFun=1e-8, max_iter=1000)
    >>> (o.tol_fun, o.max_iter, o.algorithm)
    (1e-08, 1000, 'Trust-Region')
    >>> len(o.lower)
    12
    """
    kw = _canonical(kwargs)
    m = None
    if model is not None:
        m = model if isinstance(model, GaussianModel) else gauss_model(model)
    opts = FitOptions(**kw, model=m)
    if m is not None and opts.lower is None:
        opts.lower = m.default_lower()
    return opts
