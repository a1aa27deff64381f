"""Synthetic multi-Gaussian spectra with known truth, for the start-point benchmark and tests.

Every spectrum is drawn from its own generator ``numpy.random.default_rng([seed, index])``, so
spectrum ``i`` of a run is the same whatever ``count`` is, and a run is reproducible from
``(seed, count, fixed factors)`` alone.

The model is MATLAB's ``gaussN``: ``y = sum_i a_i exp(-((x - b_i)/c_i)^2) [+ d0 + d1 x] + noise``.

Factors (each drawn uniformly from its levels unless fixed with ``fixed={factor: level}``)
----------------------------------------------------------------------------------------
``overlap``
    How close the closest pair of adjacent peaks is, as the centre gap divided by the pair's mean
    ``c``: ``separated`` all gaps in [2.5, 4]; ``moderate`` one gap in [1.6, 2.5], the others in
    [1.6, 4]; ``close`` one gap in [1.2, 1.6], the others in [1.6, 4]. (Two equal Gaussians of this
    form stop showing two maxima below a gap of about 1.41 c.)
``ratio``
    Largest over smallest height: ``equal`` in [1, 1.5], ``ratio2`` in [1.5, 2], ``ratio3`` in
    [2, 3] (one peak has the smallest height, another the largest, the rest in between). All
    heights are then multiplied by ``10**U(-2, 3)``.
``noise``
    White Gaussian noise with standard deviation a fraction of the largest peak height: ``low``
    [0.5, 1] %, ``mid`` [1, 2] %, ``high`` [2, 3] %.
``xscale``
    The x window ``[x0, x0 + span]``: ``unit`` [0, 1]; ``offset1e4`` x0 = 1e4, span in [10, 100];
    ``span1e-3`` x0 in [-1, 1], span 1e-3; ``span1e6`` x0 = -3e5, span 1e6.
``sampling``
    ``uniform`` (``linspace``), ``jittered`` (uniform plus up to ±0.4 spacing), ``random`` (sorted
    uniform draws: locally denser and sparser regions).
``order``
    ``sorted``, or ``unsorted`` (x and y permuted together at random).
``baseline``
    ``none``, or ``linear``: a straight line whose ends are each in ±0.5 of the largest height
    (then fitted with ``baseline='linear'``).
``size``
    Number of points ``m``: ``m100``, ``m300``, ``m1000``, ``m3000``, ``m10000``.

Geometry: widths ``c_i = c0 * U(0.75, 1.33)``; centres follow each other by the gap ratios above;
the pattern from ``b_1 - 2.5 c_1`` to ``b_n + 2.5 c_n`` fills a fraction ``U(0.55, 0.9)`` of the
window at a random offset, so every peak lies wholly inside the data. With ``n = 4`` this gives
``c`` of 3 to 5 % of the span, i.e. 3 to 5 samples per ``c`` at ``m = 100``.

Success (:func:`success`): every fitted centre, matched to the truth in ascending order, lies
within ``0.1 c`` of its true centre.

Examples
--------
>>> from benchmarks.synth import generate, success
>>> specs = generate(3, seed=1)
>>> [s.x.shape == s.y.shape for s in specs]
[True, True, True]
>>> s = specs[0]
>>> s.truth.shape, sorted(s.labels) == sorted(FACTORS)
((4, 3), True)
>>> bool(success(s.truth[:, 1], s.truth))
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["FACTORS", "Spectrum", "generate", "make_spectrum", "parse_fixed", "success"]

#: Factor name -> levels (see the module docstring).
FACTORS: dict[str, tuple[str, ...]] = {
    "overlap": ("separated", "moderate", "close"),
    "ratio": ("equal", "ratio2", "ratio3"),
    "noise": ("low", "mid", "high"),
    "xscale": ("unit", "offset1e4", "span1e-3", "span1e6"),
    "sampling": ("uniform", "jittered", "random"),
    "order": ("sorted", "unsorted"),
    "baseline": ("none", "linear"),
    "size": ("m100", "m300", "m1000", "m3000", "m10000"),
}

_GAP = {"separated": (2.5, 4.0), "moderate": (1.6, 2.5), "close": (1.2, 1.6)}
_RATIO = {"equal": (1.0, 1.5), "ratio2": (1.5, 2.0), "ratio3": (2.0, 3.0)}
_NOISE = {"low": (0.005, 0.01), "mid": (0.01, 0.02), "high": (0.02, 0.03)}


@dataclass(frozen=True)
class Spectrum:
    """One synthetic spectrum.

    Attributes
    ----------
    x, y : ndarray, shape (m,)
        The data, in the order a user would pass them (unsorted for ``order='unsorted'``).
    truth : ndarray, shape (n, 3)
        True ``(a, b, c)`` per peak, ascending in ``b``.
    baseline : str
        ``'none'`` or ``'linear'``: the baseline to fit.
    baseline_coef : tuple of float
        ``(d0, d1)`` for a linear baseline ``d0 + d1 x``, else empty.
    sigma : float
        Standard deviation of the added noise.
    labels : dict
        Factor -> level of this spectrum.
    index : int
        Position in the run (the generator seed is ``[seed, index]``).
    """

    x: np.ndarray
    y: np.ndarray
    truth: np.ndarray
    baseline: str
    baseline_coef: tuple[float, ...]
    sigma: float
    labels: dict[str, str] = field(default_factory=dict)
    index: int = 0

    @property
    def n(self) -> int:
        """Number of peaks."""
        return int(self.truth.shape[0])

    @property
    def params(self) -> np.ndarray:
        """True coefficients in peakfit order (``a1, b1, c1, ...``, then ``d0, d1``)."""
        return np.concatenate([self.truth.ravel(), np.asarray(self.baseline_coef, dtype=float)])


def _pick(rng: np.random.Generator, name: str, fixed: Mapping[str, str]) -> str:
    levels = FACTORS[name]
    choice = levels[int(rng.integers(len(levels)))]  # always drawn: keeps the stream aligned
    if name in fixed:
        if fixed[name] not in levels:
            raise ValueError(f"unknown level {fixed[name]!r} for {name}: choose from {levels}")
        return fixed[name]
    return choice


def make_spectrum(
    seed: int, index: int, n: int = 4, fixed: Mapping[str, str] | None = None
) -> Spectrum:
    """Spectrum ``index`` of the run ``seed`` (see the module docstring for the factors).

    Examples
    --------
    >>> s = make_spectrum(0, 5, fixed={"size": "m300", "order": "sorted"})
    >>> s.x.size, bool(np.all(np.diff(s.x) >= 0))
    (300, True)
    """
    fixed = dict(fixed or {})
    unknown = set(fixed) - set(FACTORS)
    if unknown:
        raise ValueError(f"unknown factor(s) {sorted(unknown)}: choose from {list(FACTORS)}")
    if n < 1:
        raise ValueError("n must be >= 1")
    rng = np.random.default_rng([int(seed), int(index)])
    lab = {name: _pick(rng, name, fixed) for name in FACTORS}

    # widths and centres in units of c0
    c = rng.uniform(0.75, 1.33, n)
    lo, hi = _GAP[lab["overlap"]]
    gaps = rng.uniform(max(lo, 1.6) if lab["overlap"] != "separated" else lo, 4.0, max(n - 1, 0))
    if n > 1 and lab["overlap"] != "separated":
        gaps[int(rng.integers(n - 1))] = rng.uniform(lo, hi)
    b = np.concatenate([[0.0], np.cumsum(gaps * 0.5 * (c[:-1] + c[1:]))])
    left = b[0] - 2.5 * c[0]
    extent = b[-1] + 2.5 * c[-1] - left

    # heights
    r_lo, r_hi = _RATIO[lab["ratio"]]
    ratio = rng.uniform(r_lo, r_hi)
    a = rng.uniform(1.0, ratio, n)
    if n > 1:
        i_min, i_max = rng.choice(n, 2, replace=False)
        a[i_min], a[i_max] = 1.0, ratio
    a *= 10.0 ** rng.uniform(-2.0, 3.0)

    # x window and sampling
    xs = lab["xscale"]
    if xs == "unit":
        x0, span = 0.0, 1.0
    elif xs == "offset1e4":
        x0, span = 1.0e4, rng.uniform(10.0, 100.0)
    elif xs == "span1e-3":
        x0, span = rng.uniform(-1.0, 1.0), 1.0e-3
    else:
        x0, span = -3.0e5, 1.0e6
    m = int(lab["size"][1:])
    t = np.linspace(0.0, 1.0, m)
    if lab["sampling"] == "jittered":
        t = np.clip(t + rng.uniform(-0.4, 0.4, m) / (m - 1), 0.0, 1.0)
        t.sort()
    elif lab["sampling"] == "random":
        t = np.sort(rng.uniform(0.0, 1.0, m))
    x = x0 + span * t

    # place the pattern
    fill = rng.uniform(0.55, 0.9)
    scale = fill * span / extent
    offset = x0 + rng.uniform(0.0, 1.0 - fill) * span - left * scale
    truth = np.column_stack([a, offset + b * scale, c * scale])

    y = np.zeros(m)
    for ai, bi, ci in truth:
        y += ai * np.exp(-(((x - bi) / ci) ** 2))
    amax = float(a.max())
    sigma = rng.uniform(*_NOISE[lab["noise"]]) * amax
    y += sigma * rng.standard_normal(m)
    coef: tuple[float, ...] = ()
    if lab["baseline"] == "linear":
        y_left, y_right = rng.uniform(-0.5, 0.5, 2) * amax
        d1 = (y_right - y_left) / span
        d0 = y_left - d1 * x0
        y += d0 + d1 * x
        coef = (float(d0), float(d1))
    if lab["order"] == "unsorted":
        perm = rng.permutation(m)
        x, y = x[perm], y[perm]
    return Spectrum(
        x=x, y=y, truth=truth, baseline=lab["baseline"], baseline_coef=coef, sigma=sigma,
        labels=lab, index=int(index),
    )


def generate(
    count: int, seed: int = 0, n: int = 4, fixed: Mapping[str, str] | None = None,
    start: int = 0,
) -> list[Spectrum]:
    """Spectra ``start .. start+count-1`` of the run ``seed``.

    Parameters
    ----------
    count : int
        Number of spectra.
    seed : int
        Run seed; spectrum ``i`` uses ``default_rng([seed, i])``.
    n : int
        Peaks per spectrum.
    fixed : dict, optional
        Factor levels to impose, e.g. ``{"overlap": "close", "size": "m1000"}``.
    start : int
        Index of the first spectrum.

    Examples
    --------
    >>> a = generate(2, seed=3)
    >>> b = generate(1, seed=3, start=1)
    >>> bool(np.array_equal(a[1].y, b[0].y))
    True
    """
    return [make_spectrum(seed, i, n, fixed) for i in range(start, start + count)]


def parse_fixed(items: Iterable[str]) -> dict[str, str]:
    """``['overlap=close', 'size=m1000']`` -> ``{'overlap': 'close', 'size': 'm1000'}``.

    Examples
    --------
    >>> parse_fixed(["noise=high"])
    {'noise': 'high'}
    """
    out: dict[str, str] = {}
    for it in items:
        if "=" not in it:
            raise ValueError(f"expected factor=level, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def success(means: np.ndarray, truth: np.ndarray, tol: float = 0.1) -> bool:
    """True when every fitted centre is within ``tol * c`` of its true centre.

    Parameters
    ----------
    means : array_like, shape (n,)
        Fitted centres, any order (matched to the truth in ascending order).
    truth : array_like, shape (n, 3)
        True ``(a, b, c)`` per peak, ascending in ``b``.
    tol : float
        Tolerance in units of each peak's true ``c``.

    Examples
    --------
    >>> t = np.array([[1.0, 0.0, 1.0], [1.0, 3.0, 2.0]])
    >>> success([3.15, 0.05], t), success([0.0, 3.3], t)
    (True, False)
    """
    mu = np.sort(np.asarray(means, dtype=float).ravel())
    t = np.asarray(truth, dtype=float)
    if mu.size != t.shape[0] or not np.all(np.isfinite(mu)):
        return False
    return bool(np.all(np.abs(mu - t[:, 1]) <= tol * t[:, 2]))
