"""Moving between peakfit and lmfit.

peakfit writes a Gaussian as MATLAB does, ``a*exp(-((x-b)/c)^2)``; lmfit's ``GaussianModel`` is
``amplitude/(sigma*sqrt(2*pi)) * exp(-(x-center)^2/(2*sigma^2))``. The two are the same curve
with

=================  ==============================  ==================================
lmfit              from peakfit                    back to peakfit
=================  ==============================  ==================================
``gN_amplitude``   ``a*c*sqrt(pi)`` (the area)     ``a = amplitude/(sigma*sqrt(2*pi))``
``gN_center``      ``b``                           ``b = center``
``gN_sigma``       ``c/sqrt(2)``                   ``c = sigma*sqrt(2)``
``gN_fwhm``        ``2.3548200*sigma`` (expr)      derived, not needed
``gN_height``      ``0.3989423*amplitude/sigma``   derived, equals ``a``
=================  ==============================  ==================================

Baselines map to lmfit's built-in models: ``exponential`` (``e1*exp(-e2*x)``) to
``ExponentialModel`` (``exp_amplitude = e1``, ``exp_decay = 1/e2``); ``constant`` to
``ConstantModel`` (``bl_c = d0``); ``linear`` to ``LinearModel`` (``bl_intercept = d0``,
``bl_slope = d1``); ``quadratic`` to ``QuadraticModel`` (``bl_c = d0``, ``bl_b = d1``,
``bl_a = d2``).

Standard errors are carried over with the delta method on the full covariance matrix. At a
least-squares optimum this is exact: lmfit's covariance ``(JᵀJ)⁻¹ · redchi`` in its own
parameters is the same matrix transformed by the Jacobian of the reparameterisation, so
:func:`to_lmfit` reproduces the standard errors lmfit prints for the same fit. Correlations
(``Parameter.correl``) are filled in as well.

lmfit is optional (``pip install "peakfit[lmfit]"``); it is imported only when needed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import InputError
from .models import BASELINES
from .result import GaussianFit

__all__ = ["from_lmfit", "lmfit_model", "lmfit_names", "to_lmfit"]

_SQRT2 = math.sqrt(2.0)
_SQRTPI = math.sqrt(math.pi)
_SQRT2PI = math.sqrt(2.0 * math.pi)
#: The constants lmfit's GaussianModel writes into its fwhm/height expressions.
_LMFIT_FWHM = 2.3548200
_LMFIT_HEIGHT = 0.3989423

#: lmfit names of each baseline's coefficients (after the prefix), in peakfit's order.
_BASELINE_LMFIT: dict[str, tuple[str, ...]] = {
    "none": (),
    "constant": ("c",),
    "linear": ("intercept", "slope"),
    "quadratic": ("c", "b", "a"),
    "exponential": ("amplitude", "decay"),
}


def _require_lmfit() -> Any:
    try:
        import lmfit
    except ImportError as exc:  # pragma: no cover - exercised only without lmfit
        raise ImportError(
            'peakfit.interop needs lmfit; install it with: pip install "peakfit[lmfit]"'
        ) from exc
    return lmfit


def _default_baseline_prefix(baseline: str) -> str:
    return "exp_" if baseline == "exponential" else "bl_"


def lmfit_names(
    n: int, baseline: str = "none", *, prefix: str = "g", baseline_prefix: str | None = None
) -> list[str]:
    """Names of the independent lmfit parameters, in peakfit's coefficient order.

    Parameters
    ----------
    n : int
        Number of Gaussian terms.
    baseline : str
        peakfit baseline kind.
    prefix : str
        Peak ``i`` (1-based) gets the prefix ``f"{prefix}{i}_"``.
    baseline_prefix : str, optional
        Prefix of the baseline parameters; default ``'exp_'`` for the exponential baseline and
        ``'bl_'`` otherwise.

    Returns
    -------
    list of str

    Examples
    --------
    >>> lmfit_names(2, "exponential")
    ['g1_amplitude', 'g1_center', 'g1_sigma', 'g2_amplitude', 'g2_center', 'g2_sigma', \
'exp_amplitude', 'exp_decay']
    """
    if baseline not in BASELINES:
        raise InputError(f"unknown baseline {baseline!r}: choose one of {', '.join(BASELINES)}")
    bp = _default_baseline_prefix(baseline) if baseline_prefix is None else baseline_prefix
    names = [f"{prefix}{i}_{s}" for i in range(1, n + 1) for s in ("amplitude", "center", "sigma")]
    return names + [bp + s for s in _BASELINE_LMFIT[baseline]]


def _forward(p: np.ndarray, n: int, baseline: str) -> tuple[np.ndarray, np.ndarray]:
    """lmfit values ``q(p)`` and the Jacobian ``dq/dp`` (peakfit order on both sides)."""
    P = p.size
    q = np.empty(P)
    G = np.zeros((P, P))
    for i in range(n):
        a, b, c = p[3 * i : 3 * i + 3]
        j = 3 * i
        q[j] = a * c * _SQRTPI
        G[j, j], G[j, j + 2] = c * _SQRTPI, a * _SQRTPI
        q[j + 1] = b
        G[j + 1, j + 1] = 1.0
        q[j + 2] = c / _SQRT2
        G[j + 2, j + 2] = 1.0 / _SQRT2
    k = 3 * n
    if baseline == "exponential":
        e1, e2 = p[k], p[k + 1]
        q[k] = e1
        G[k, k] = 1.0
        with np.errstate(divide="ignore"):
            q[k + 1] = 1.0 / e2 if e2 != 0 else math.inf
            G[k + 1, k + 1] = -1.0 / (e2 * e2) if e2 != 0 else math.nan
    else:
        for j in range(k, P):
            q[j] = p[j]
            G[j, j] = 1.0
    return q, G


def to_lmfit(
    result: GaussianFit,
    *,
    prefix: str = "g",
    baseline_prefix: str | None = None,
    derived: bool = True,
) -> Any:
    """Convert a fit to ``lmfit.Parameters`` with values, standard errors and correlations.

    Parameters
    ----------
    result : GaussianFit
        A fit from :func:`peakfit.fit_gaussians`, :func:`peakfit.matlab.fit` or a batch.
    prefix : str
        Peak ``i`` (1-based, in the order of ``result.p``) gets the prefix ``f"{prefix}{i}_"``,
        as in ``GaussianModel(prefix='g1_')``.
    baseline_prefix : str, optional
        Prefix of the baseline parameters (default ``'exp_'`` for the exponential baseline,
        ``'bl_'`` otherwise).
    derived : bool
        Also add lmfit's derived ``gN_fwhm`` and ``gN_height`` (with lmfit's expressions and
        their standard errors), as ``GaussianModel.make_params`` does.

    Returns
    -------
    lmfit.Parameters
        ``value``, ``stderr`` (NaN-free where peakfit has one, else ``None``), ``correl``, and
        ``init_value`` from peakfit's start point. A coefficient held at a bound (MATLAB's
        "fixed at bound") has ``stderr = None``.

    Raises
    ------
    InputError
        For a fit made with ``Normalize`` on and a baseline (the baseline cannot be converted
        to original x units in lmfit's built-in models).
    ImportError
        If lmfit is not installed.

    Examples
    --------
    >>> import numpy as np, peakfit
    >>> x = np.linspace(0, 10, 201)
    >>> y = 3 * np.exp(-((x - 4) / 0.8) ** 2)
    >>> params = peakfit.fit_gaussians(x, y, n=1).to_lmfit()
    >>> round(params["g1_sigma"].value, 6), round(params["g1_amplitude"].value, 4)
    (0.565685, 4.2539)
    >>> round(params["g1_height"].value, 6)
    3.0
    """
    lmfit = _require_lmfit()
    model = result.model
    n, baseline = model.n, model.baseline
    p = np.asarray(result.p, dtype=float).copy()
    cov = np.asarray(result.covariance, dtype=float).copy()
    p0 = np.asarray(result.start, dtype=float).copy()
    if result.normalization is not None:
        if baseline != "none":
            raise InputError(
                "to_lmfit: a fit with Normalize on and a baseline cannot be converted; "
                "fit without Normalize"
            )
        mu, sd = result.normalization
        scale = np.ones(p.size)
        scale[1::3] = sd
        scale[2::3] = sd
        p = p * scale
        p[1::3] += mu
        p0 = p0 * scale
        p0[1::3] += mu
        cov = cov * np.outer(scale, scale)
    q, G = _forward(p, n, baseline)
    q0, _ = _forward(p0, n, baseline)
    with np.errstate(invalid="ignore"):
        covq = G @ np.nan_to_num(cov, nan=0.0) @ G.T
    bad = ~np.isfinite(np.diag(cov))  # held at a bound or no dof: no error for that coefficient
    # a transformed parameter has no error if any of its sources has none
    bad_q = (np.abs(G) > 0) @ bad.astype(float) > 0
    names = lmfit_names(n, baseline, prefix=prefix, baseline_prefix=baseline_prefix)
    lo, hi = result.options.bounds(model)
    params = lmfit.Parameters()
    for j, name in enumerate(names):
        kw: dict[str, Any] = {"value": float(q[j])}
        # only simple bounds survive the change of variables (c >= 0 -> sigma >= 0)
        if j < 3 * n and j % 3 == 2:
            kw["min"] = float(lo[j] / _SQRT2) if np.isfinite(lo[j]) else -np.inf
            kw["max"] = float(hi[j] / _SQRT2) if np.isfinite(hi[j]) else np.inf
        elif j < 3 * n and j % 3 == 1:
            kw["min"], kw["max"] = float(lo[j]), float(hi[j])
            if result.normalization is not None:
                mu, sd = result.normalization
                kw["min"], kw["max"] = kw["min"] * sd + mu, kw["max"] * sd + mu
        if kw.get("min", -np.inf) > kw["value"] or kw.get("max", np.inf) < kw["value"]:
            kw.pop("min", None)
            kw.pop("max", None)
        params.add(name, **kw)
        par = params[name]
        par.init_value = float(q0[j])
        par.stderr = None if bad_q[j] else float(math.sqrt(max(covq[j, j], 0.0)))
    sd_q = np.sqrt(np.clip(np.diag(covq), 0.0, None))
    for j, name in enumerate(names):
        if bad_q[j] or not sd_q[j] > 0:
            params[name].correl = None
            continue
        correl = {}
        for k2, other in enumerate(names):
            if k2 != j and not bad_q[k2] and sd_q[k2] > 0:
                correl[other] = float(covq[j, k2] / (sd_q[j] * sd_q[k2]))
        params[name].correl = correl
    if derived:
        for i in range(1, n + 1):
            pre = f"{prefix}{i}_"
            j = 3 * (i - 1)
            amp, sig = q[j], q[j + 2]
            params.add(pre + "fwhm", expr=f"{_LMFIT_FWHM:.7f}*{pre}sigma")
            params.add(
                pre + "height",
                expr=f"{_LMFIT_HEIGHT:.7f}*{pre}amplitude/max(1e-15, {pre}sigma)",
            )
            if bad_q[j] or bad_q[j + 2]:
                continue
            sub = covq[np.ix_([j, j + 2], [j, j + 2])]
            g_f = np.array([0.0, _LMFIT_FWHM])
            g_h = np.array([_LMFIT_HEIGHT / sig, -_LMFIT_HEIGHT * amp / sig**2])
            params[pre + "fwhm"].stderr = float(math.sqrt(max(g_f @ sub @ g_f, 0.0)))
            params[pre + "height"].stderr = float(math.sqrt(max(g_h @ sub @ g_h, 0.0)))
    return params


def from_lmfit(
    params: Any,
    n: int,
    baseline: str = "none",
    *,
    prefix: str = "g",
    baseline_prefix: str | None = None,
) -> np.ndarray:
    """peakfit coefficients (MATLAB order) from lmfit parameters or a name -> value mapping.

    Parameters
    ----------
    params : lmfit.Parameters or mapping of str to float
        Must hold ``gN_amplitude``, ``gN_center``, ``gN_sigma`` for ``N = 1..n`` (with the
        given prefix) and the baseline parameters named as in :func:`lmfit_names`.
    n : int
        Number of Gaussian terms.
    baseline : str
        peakfit baseline kind.
    prefix, baseline_prefix : str
        As in :func:`to_lmfit`.

    Returns
    -------
    numpy.ndarray
        ``a1, b1, c1, ..., an, bn, cn`` followed by the baseline coefficients; usable as
        ``start=`` of :func:`peakfit.fit_gaussians` or with :class:`peakfit.GaussianModel`.

    Raises
    ------
    InputError
        A missing parameter (the message names it).

    Examples
    --------
    >>> import math
    >>> p = from_lmfit({"g1_amplitude": 3 * 0.8 * math.sqrt(math.pi), "g1_center": 4.0,
    ...                 "g1_sigma": 0.8 / math.sqrt(2)}, 1)
    >>> [round(v, 12) for v in p.tolist()]
    [3.0, 4.0, 0.8]
    """
    names = lmfit_names(n, baseline, prefix=prefix, baseline_prefix=baseline_prefix)

    def value(name: str) -> float:
        if isinstance(params, Mapping) or hasattr(params, "__getitem__"):
            try:
                v = params[name]
            except KeyError:
                raise InputError(f"from_lmfit: parameter {name!r} is missing") from None
        else:
            raise InputError(f"from_lmfit: expected lmfit Parameters or a mapping, got {params!r}")
        return float(getattr(v, "value", v))

    q = np.array([value(nm) for nm in names], dtype=float)
    p = np.empty_like(q)
    for i in range(n):
        amp, cen, sig = q[3 * i : 3 * i + 3]
        p[3 * i] = amp / (sig * _SQRT2PI) if sig != 0 else math.nan
        p[3 * i + 1] = cen
        p[3 * i + 2] = sig * _SQRT2
    k = 3 * n
    if baseline == "exponential":
        p[k] = q[k]
        p[k + 1] = 1.0 / q[k + 1] if q[k + 1] != 0 else math.inf
    else:
        p[k:] = q[k:]
    return p


def lmfit_model(
    n: int, baseline: str = "none", *, prefix: str = "g", baseline_prefix: str | None = None
) -> Any:
    """The composite lmfit ``Model`` matching a peakfit model (same parameter names).

    ``lmfit_model(2, 'exponential')`` is ``GaussianModel(prefix='g1_') +
    GaussianModel(prefix='g2_') + ExponentialModel(prefix='exp_')``, so the parameters returned
    by :func:`to_lmfit` can be passed straight to its ``fit`` or ``eval``.

    Examples
    --------
    >>> import numpy as np, peakfit
    >>> x = np.linspace(0, 10, 201)
    >>> r = peakfit.fit_gaussians(x, 3 * np.exp(-((x - 4) / 0.8) ** 2), n=1)
    >>> m = lmfit_model(1)
    >>> bool(np.allclose(m.eval(r.to_lmfit(), x=x), r(x)))
    True
    """
    lmfit = _require_lmfit()
    models = lmfit.models
    if baseline not in BASELINES:
        raise InputError(f"unknown baseline {baseline!r}: choose one of {', '.join(BASELINES)}")
    bp = _default_baseline_prefix(baseline) if baseline_prefix is None else baseline_prefix
    total = None
    for i in range(1, n + 1):
        g = models.GaussianModel(prefix=f"{prefix}{i}_")
        total = g if total is None else total + g
    extra = {
        "none": None,
        "constant": models.ConstantModel,
        "linear": models.LinearModel,
        "quadratic": models.QuadraticModel,
        "exponential": models.ExponentialModel,
    }[baseline]
    if extra is not None:
        total = total + extra(prefix=bp)
    return total
