"""The robust default start point (``start='auto'``): batched, scale-free, deterministic.

MATLAB's ``gaussnstart`` (:func:`peakfit.start.gaussnstart_batch`) takes the highest point of the
residual as a peak with a deliberately narrow width; with overlapping peaks, unequal heights and
noise the fit that follows often ends in a wrong local minimum. :func:`auto_start` instead builds
a few candidate starts, refines all of them for a few Levenberg-Marquardt steps on a small,
downsampled copy of the data, repairs the best one where the residual says that a peak is
missing or misplaced, and returns the refined candidate with the lowest sum of squares. The final
fit (by the caller) always runs on the raw data, so smoothing and binning cannot bias it.

Algorithm (every step vectorised over spectra; NumPy or CuPy)
-------------------------------------------------------------
1. **Normalise**: ``u = (x - x0)/sx`` in ``[-1, 1]`` and ``z = y/max|y|``, so nothing depends
   on the units, offset or scale of x and y. Non-finite values get zero weight.
2. **Baseline and polarity**: the baseline is fitted to the outer 10 % of the points
   (:func:`peakfit.start.baseline_start`) and subtracted; it stays free in the refinements.
   Data whose dips are larger than their peaks are flipped, fitted as peaks and flipped back.
   Where the data dip below the edge fit by more than ``_BASELINE_DIP`` noise levels (a peak
   at an end lifted it), a polynomial baseline is fitted instead by asymmetric least squares
   from below the peaks and from above the dips; the polarity is then the one whose baseline
   touches more points (within ``_CONTACT`` noise levels). Where the polarity is in doubt
   (the data dip below the edge fit, against the chosen polarity, by more than
   ``_POLARITY_DIP`` noise levels and ``_POLARITY_RATIO`` of the largest excursion: typically
   a peak partly outside the window on a sloping baseline), both polarities are solved
   (steps 3-6, as extra rows of the same pass, with the same bins), each result is refined on
   the raw data (the caller's solver, at most ``_RAW_ITER`` steps) and the lower sum of
   squares wins.
   The noise level is estimated from the raw data (each point predicted by the cubic through
   its four neighbours; median absolute error; uneven spacing allowed).
3. **Downsample**: the full width at half maximum (FWHM) of the highest feature, in samples,
   sets the bin size so that it spans about eight bins (at least 100 bins in all); the data are
   averaged in bins (``downsample=`` sets the factor; ``smooth=`` smooths the data first).
   Spectra of a batch that need different bin sizes are processed as groups, so every spectrum
   gets the same start alone or in a batch.
4. **Candidates**, in two stages. *The cheap path* (every spectrum): *peeling* of the
   lightly smoothed data: the highest point of the residual gives a height and a centre
   (refined by a parabola); the width comes from the half-maximum crossing on the side nearer
   the top (the side less disturbed by a neighbour), ``c = hwhm / sqrt(ln 2)``; that Gaussian is
   subtracted and the next peak peeled, ``n`` times. With a polynomial baseline, a second
   candidate comes from greedy pursuit (:func:`_pursuit`): ``n`` times, the Gaussian of a grid
   (centres at the bins, ``_PURSUIT_WIDTHS`` widths) that most lowers the sum of squares with
   the terms chosen so far and the baseline, all linear coefficients re-fitted. These are
   refined (step 5), and *the gate* applies the tests of step 6 to the best of them (the sum of
   squares test at ``_GATE_SSE_SIGMAS``). Only the spectra it flags (standard batch: about
   2 %) take *the full path*: another peeling candidate that subtracts Gaussians of half the
   width (narrow, as MATLAB's estimator does, leaving more of a blend of overlapping peaks to
   the next steps) and, without a baseline, pursuit (``_PURSUIT_GATED``), refined and compared
   with the cheap candidates, then the repair of step 6. The gate's row selection is the cheap
   path's only host synchronisation on a GPU.
5. **Coarse refinement**: the shared solver (:func:`peakfit.solvers.lm.levenberg_marquardt`,
   Marquardt damping from ``_LAM0``, loose tolerances) for the candidates of a stage, all
   spectra at once, on the binned data, baseline free, heights >= 0, centres near the data
   (with a baseline: by variable projection, :mod:`peakfit.solvers.vp`, heights and baseline
   eliminated and unbounded, ``_COARSE_VP``); each candidate stops when a step gains less than
   0.1 %, and candidates more than ``_KEEP`` times worse than their spectrum's best are dropped
   after a few steps (through the solver's callback).
6. **Repair** of the gated spectra whose best candidate looks wrong: residuals correlated from
   bin to bin (lag-1 autocorrelation above ``2/sqrt(M)``), a sum of squares above the noise
   level, another candidate nearly as good (within a factor 1.5) with different centres, a
   wasted peak (height within three noise levels of zero, or width at its lower bound), or a
   weak, narrow peak on the flank of a wide one (a close pair fitted by one term). Variants:
   each peak in turn moved to the largest residual feature; each peak in turn split in two (the
   second half taking the slot of the weakest, or of the nearest, other peak); all heights
   re-fitted by linear least squares. They are refined as in 5 together with the current best,
   which is replaced only when a variant ends lower; up to ``_REPAIR_ROUNDS`` rounds, another
   round where a variant won and the misfit or a wasted term remains. (Peaks merged into one
   wide term, or split by noise, are the typical local minima this removes.)
7. **Trials** (``n_trials``, as O'Haver's ``peakfit.m`` ``NumTrials``): that many random
   perturbations (seeded) of the best start are refined as in 5; then the best and every trial
   are refined fully on the raw data and the lowest sum of squares is returned.
8. **Hand-over**: the winner is the optimum of the binned data, already close to the raw one;
   the caller's fit should start from it with small damping (:data:`LAM0`, see
   :func:`peakfit.start.initial_damping`), which ``fit_gaussians`` and ``fit_gaussians_batch``
   do for ``start='auto'``.

The returned start is the winner in the original units, clipped to the bounds of ``options``.

Examples
--------
>>> import numpy as np
>>> from peakfit.models import GaussianModel
>>> m = GaussianModel(2)
>>> x = np.linspace(0.0, 10.0, 400)
>>> y = m(x, [1.0, 4.0, 0.8, 0.6, 5.2, 0.8])  # two peaks 1.5 c apart: one maximum only
>>> p = auto_start(m, x, y[None, :])
>>> np.round(p[0, 1::3], 1).tolist()
[4.0, 5.2]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from ._xp import get_xp, to_numpy
from .errors import InputError
from .models import GaussianModel, term_values
from .solvers.linalg import solve_batched
from .solvers.lm import NormalEquations, levenberg_marquardt
from .solvers.vp import variable_projection
from .start import baseline_start

__all__ = ["AutoStartInfo", "auto_start", "parse_smooth"]

_SQRT_LN2 = math.sqrt(math.log(2.0))
#: Bins per full width at half maximum of the largest feature (step 3).
_BINS_PER_FWHM = 8.0
#: Fewest bins the coarse stage works on (when the data have more points).
_MIN_BINS = 100
#: Elements of work memory per chunk of spectra (8 bytes each: 64 MB).
_CHUNK_ELEMENTS = 1 << 23
_MOVING_METHODS = ("moving",)
#: Repair rounds at most (step 6); hard benchmark, 150 spectra: 3 -> 5 rounds, 94.0 -> 94.7 %.
_REPAIR_ROUNDS = 5
#: A further repair round also where the new best still has a wasted term (hard benchmark,
#: 150 spectra: 91.3 -> 94.0 %).
_REPAIR_DEGENERATE = True
#: Gate of the cheap path (step 4): every spectrum gets one candidate (peeling) refined on the
#: binned data; only those that fail the misfit, wasted-term or shoulder tests take the other
#: candidates and the repair rounds. False: every spectrum takes the full path.
_GATE = True
#: The gate's sum-of-squares test, in standard deviations of chi^2 (``_SSE_SIGMAS`` is the
#: full path's): the noise estimate's own error widens the spread of that statistic (standard
#: batch: 1.3 instead of 1), so 2 sigmas sent 7.7 % of well-fitted spectra on, 3 sigmas 1.8 %.
_GATE_SSE_SIGMAS = 3.0
#: The pursuit candidate (with a polynomial baseline) on the cheap path rather than only on
#: the gated-out spectra.
_CHEAP_PURSUIT = True
#: Baselines whose gated-out spectra also get the pursuit candidate (step 4).
_PURSUIT_GATED = ("none",)
#: Repair variants of step 6: "move" (each peak to the largest residual feature), "split"
#: (each peak in two), "drop" and "merge" (birth/death moves, see :func:`_rebirths`).
_VARIANTS = ("move", "split", "drop", "merge")
#: Width factor of the second peeling candidate (narrow, as MATLAB's gaussnstart).
_NARROW = 0.5
#: Misfit tests of step 6: residual lag-1 autocorrelation (in units of 1/sqrt(M)) and the
#: excess of the sum of squares over the noise (in standard deviations of chi^2).
_RHO_LIMIT = 2.0
_SSE_SIGMAS = 2.0
#: Coarse refinement (the shared solver with loose tolerances): a row stops when a step gains
#: less than this fraction of the sum of squares (or moves the coefficients by less than
#: ``_COARSE_TOL_X``, relative).
_COARSE_TOL = 1e-3
_COARSE_TOL_X = 1e-6
#: Candidates above this factor of their spectrum's best SSE after ``min_iter`` steps are
#: dropped; repair variants get ``_REPAIR_MIN_ITER`` steps first.
_KEEP = 2.0
_REPAIR_MIN_ITER = 6
#: Initial damping of the coarse refinement (relative to the scaled diagonal): the candidates
#: are rough, but are already fitted peak by peak.
_LAM0 = 1e-2
#: Initial damping for the caller's final fit from this start (see
#: :func:`peakfit.solvers.lm.levenberg_marquardt`): the start is the optimum of the binned data,
#: close to the raw one, so the final fit starts with nearly Gauss-Newton steps.
LAM0 = 1e-3
#: Up to this many rows, the coarse solver masks finished rows rather than compacting (less
#: fixed cost for small arrays).
_FEW_ROWS = 64
#: Another candidate within this factor of the best SSE, elsewhere, makes a spectrum ambiguous.
_AMBIGUOUS = 1.5
#: A peak is supported when dropping it raises the SSE by this many noise variances.
_SUPPORT_CHI2 = 50.0
#: Baseline estimate of step 2 (see :func:`peakfit.start.baseline_start`).
_BASELINE_METHOD = "asymmetric"
#: Coarse refinements of models with a baseline by variable projection (heights and baseline
#: eliminated, heights unbounded); without a baseline, the full solver with heights >= 0 did
#: better on the hard benchmark.
_COARSE_VP = True
#: The edge-fitted baseline is replaced by the asymmetric one where the data dip below it by
#: more than this many noise levels (a peak at an end lifted it).
_BASELINE_DIP = 5.0
#: Third start candidate by greedy pursuit with the baseline (step 4) for these baselines, and
#: the number of grid widths it tries. Without a baseline it also helps (hard benchmark, 150
#: spectra: 85 -> 91 %) but triples the start stage of large batches.
_PURSUIT_BASELINES = ("constant", "linear", "quadratic")
_PURSUIT_WIDTHS = 8
#: Where the polarity is in doubt (step 2), both polarities are solved and the lower sum of
#: squares on the raw data wins (hard benchmark, 150 spectra: 85.3 -> 91.3 %).
_BOTH_POLARITIES = True
#: The polarity is in doubt where the data dip below the edge-fitted baseline (against the
#: chosen polarity) by more than this many noise levels.
_POLARITY_DIP = 2.5
#: ... and by more than this fraction of the largest excursion in the chosen polarity.
_POLARITY_RATIO = 0.1
#: Most steps of the refinement on the raw data that decides between the two polarities.
_RAW_ITER = 100
_POLY_DEGREE = {"none": -1, "constant": 0, "linear": 1, "quadratic": 2}
#: Points within this many noise levels of an asymmetric baseline count as touching it.
_CONTACT = 3.0
#: Centres of the coarse stage stay within this bound of the normalised range [-1, 1] (edge
#: peaks). Hard benchmark, 300 spectra, seeds 0/1/3, with the re-ranking below: 1.2 -> 1.5,
#: 93.3/94.7/95.7 -> 94.7/95.0/96.0 %; 2.0: 93.7/95.0/95.0 %. (Without it 1.2 and 1.5
#: measured the same, 275.6 points summed over the three seeds.)
_CENTRE_BOX = 1.5
#: Repair candidates within this factor of their spectrum's best after the coarse refinement
#: are refined on the raw data (tolerance ``_RERANK_TOL``, at most ``_RERANK_ITER`` steps) and
#: ranked there (:func:`_rerank`). Hard benchmark, 300 spectra, seeds 0/1/3: none
#: 93.0/89.3/93.3 %; refined further on the binned data instead (1.1, 30 steps)
#: 92.7/92.0/95.0 %; on the raw data, (factor, steps): (1.1, 30) 94.7/95.0/96.0 %,
#: (1.3, 20) 94.7/94.7/95.7 %, (1.3, 10) 94.0/94.0/95.7 % (with _CENTRE_BOX 1.5),
#: (1.3, 5) 93.3/92.7/94.7 %; the best three distinct candidates only 92.3/91.0/94.7 %, the
#: best eight 93.7/92.7/95.7 %. Cost (auto over truth time, same runs, shared machine): none
#: ~11-13, (1.3, 10) ~16-19, (1.1, 30) ~25-35. With the gate (main of 8 Dec), seed 0 run alone:
#: auto 47.5 -> 83.0 ms a fit (truth 4.0 ms), 93.0 -> 94.0 %; seeds 1/3: 89.0 -> 93.7 %,
#: 93.3 -> 95.7 % (with _CENTRE_BOX 1.5); (1.1, 10): 93.3/93.7/94.7 %. Only where the
#: coarse stage ran on binned data (q > 1): re-ranking also where q = 1 measured the same
#: (94.0/94.0/95.7 %).
_RERANK_WITHIN = 1.3
_RERANK_TOL = 1e-6
#: Candidates whose sums of squares agree to this relative difference converged to the same
#: point and are re-ranked once: the same rates (94.0/94.0/95.7 %, also with 1e-9), and on
#: the CuPy stand-in (64 rows) 5875 instead of 14338 launches, 31 instead of 77 syncs.
_RERANK_SAME = 1e-6
_RERANK_ITER = 10
#: From this many points on, the noise is estimated on the index (cheaper; see _noise).
_NOISE_INDEX_M = 500


@dataclass
class AutoStartInfo:
    """Diagnostics of :func:`auto_start` (returned with ``return_info=True``).

    Attributes
    ----------
    sse : array (k,)
        Sum of squares of the chosen start on the normalised, binned data
        (``y / max|y|``, bin means).
    noise : array (k,)
        Estimated noise standard deviation of the normalised raw data.
    n_supported : array of int (k,)
        Number of peaks the data support: peaks of the chosen start are dropped one at a time,
        least important first (the others' heights re-fitted), while dropping one raises the
        sum of squares by less than ``_SUPPORT_CHI2`` noise variances (and a relative 1e-9 of
        the signal, for noise-free data). Less than ``n`` means that the data hold fewer
        distinct peaks than asked for (e.g. two terms on one peak, or a term on noise).
    downsample : ndarray of int (k,)
        Bin size used for the coarse stage of each spectrum (host array).
    """

    sse: Any
    noise: Any
    n_supported: Any
    downsample: np.ndarray


# ---------------------------------------------------------------------------- options
def parse_smooth(smooth: Any) -> tuple[str, float] | None:
    """Normalise the ``smooth=`` option to ``(method, span)`` or None.

    Accepts None/False/0/1 (no smoothing), True (5-point moving average), a span (``int`` or
    ``float`` as MATLAB's ``smooth``: a number of points, or a fraction of the points when below
    1), a method name of :func:`peakfit.signal.smooth` (span 5), a tuple ``(method, span)`` or
    a dict ``{'method': ..., 'span': ...}``.

    Examples
    --------
    >>> parse_smooth(9), parse_smooth(("sgolay", 11)), parse_smooth({"span": 0.05})
    (('moving', 9.0), ('sgolay', 11.0), ('moving', 0.05))
    >>> parse_smooth(None) is None
    True
    """
    if smooth is None or smooth is False or (
        not isinstance(smooth, (str, dict, tuple, list)) and smooth == 0
    ):
        return None
    from .signal import _SMOOTH_METHODS
    method, span = "moving", 5.0
    if isinstance(smooth, bool):
        return ("moving", 5.0)
    if isinstance(smooth, str):
        method = smooth
    elif isinstance(smooth, dict):
        unknown = set(smooth) - {"method", "span"}
        if unknown:
            raise InputError(f"smooth dict accepts 'method' and 'span', got {sorted(unknown)}")
        method = smooth.get("method", "moving")
        span = smooth.get("span", 5.0)
    elif isinstance(smooth, (tuple, list)):
        if len(smooth) != 2:
            raise InputError(f"smooth tuple must be (method, span), got {smooth!r}")
        method, span = smooth
    else:
        span = smooth
    if not isinstance(method, str) or method.lower() not in _SMOOTH_METHODS:
        raise InputError(f"unknown smoothing method {method!r}: choose from {_SMOOTH_METHODS}")
    try:
        span = float(span)
    except (TypeError, ValueError):
        raise InputError(f"smoothing span must be a number, got {span!r}") from None
    if not (span > 0 and math.isfinite(span)):
        raise InputError(f"smoothing span must be positive, got {span!r}")
    if span == 1.0:
        return None
    return method.lower(), span


def _parse_downsample(downsample: Any) -> int | None:
    if downsample is None or downsample is False:
        return None
    if isinstance(downsample, bool) or not isinstance(downsample, (int, np.integer)):
        if isinstance(downsample, float) and downsample.is_integer():
            downsample = int(downsample)
        else:
            raise InputError(f"downsample must be a positive integer factor, got {downsample!r}")
    if downsample < 1:
        raise InputError(f"downsample must be a positive integer factor, got {downsample!r}")
    return int(downsample)


# ---------------------------------------------------------------------------- helpers
def _moving(xp: Any, Y: Any, width: int) -> Any:
    """Row-wise moving average with MATLAB's shrinking symmetric end windows (odd ``width``)."""
    m = Y.shape[1]
    w = int(min(width, m))
    w = max(1, w - 1 + w % 2)
    if w <= 1:
        return Y
    h = (w - 1) // 2
    cs = xp.cumsum(Y, axis=1)  # cs[:, j] = Y[:, :j + 1].sum(axis=1)
    out = xp.empty(Y.shape, dtype=Y.dtype)
    # the full windows by slices; the h shrinking windows at each end by indices (the same
    # differences of the same cumulative sums, so the same values: 3x faster at k=2000);
    # written in place (on a GPU: no temporaries at full resolution)
    mid = out[:, h : m - h]  # a view: in-place operations write to out (no copy back)
    mid[:, 0] = cs[:, w - 1]
    xp.subtract(cs[:, w:], cs[:, : m - w], out=mid[:, 1:])
    mid /= xp.asarray(w, dtype=Y.dtype)
    i = np.arange(h)
    wi = xp.asarray(2 * i + 1, dtype=Y.dtype)
    out[:, :h] = cs[:, xp.asarray(2 * i)] / wi
    out[:, xp.asarray(m - 1 - i)] = (cs[:, m - 1 : m] - cs[:, xp.asarray(m - 2 * i - 2)]) / wi
    return out


def _user_smooth(xp: Any, x: Any, Z: Any, spec: tuple[str, float]) -> Any:
    """Apply ``smooth=`` to the rows of Z (vectorised for 'moving', per row otherwise)."""
    method, span = spec
    m = Z.shape[1]
    if span < 1:
        span = math.ceil(span * m)
    if method in _MOVING_METHODS:
        return _moving(xp, Z, int(span))
    from .signal import smooth as smooth1d

    Zh = to_numpy(Z)
    Xh = to_numpy(x)
    out = np.empty_like(Zh)
    for r in range(Zh.shape[0]):  # per-spectrum fallback for the non-vectorised methods
        xr = Xh if Xh.ndim == 1 else Xh[r]
        out[r] = smooth1d(Zh[r], span, method, x=xr)
    return xp.asarray(out)


def _noise(xp: Any, U: Any, S: Any, W: Any = None) -> Any:
    """Noise standard deviation of each row of S (k, m) at abscissae U ((m,) or (k, m)).

    Every interior point is predicted from its two neighbours on each side by the cubic through
    them (Lagrange weights, so uneven spacing is handled; cubics are predicted exactly); the
    prediction errors, divided by their noise factor ``sqrt(1 + sum w^2)``, have the noise's
    standard deviation, estimated robustly as ``median|e| / 0.6745``. For evenly spaced x, and
    for ``m >= _NOISE_INDEX_M`` points (where peaks span many samples and spacing matters
    little), this is the fourth difference in the index, ``/ sqrt(70)``.

    ``W`` (k, m), optional, marks the valid points (1) of each row: only predictions from five
    valid neighbouring points count, each row's median is taken over its own, and evenness and
    ``m`` are those of the row's valid points. For a row whose valid points are contiguous (the
    pipeline's ragged rows), the estimate is the one of those points alone. Decided on the
    device, row by row (no host synchronisation there).
    """
    k, m = S.shape
    if m < 8:
        return xp.zeros(k)
    h = (m - 4) // 2
    if W is not None:
        return _noise_masked(xp, U, S, W)
    uniform = m >= _NOISE_INDEX_M
    if not uniform and xp is not np:  # on a GPU: both estimates, chosen per row
        d2 = xp.abs(U[..., 2:] - 2.0 * U[..., 1:-1] + U[..., :-2]).max(axis=-1)
        index = xp.partition(_fourth(S), h, axis=1)[:, h] / (0.6745 * math.sqrt(70.0))
        cubic = xp.partition(_cubic_errors(xp, U, S), h, axis=1)[:, h] / 0.6745
        return xp.where((d2 <= 2e-4 / (m - 1)) | ~xp.isfinite(cubic), index, cubic)
    if not uniform:
        d2 = U[..., 2:] - 2.0 * U[..., 1:-1] + U[..., :-2]
        uniform = float(to_numpy(xp.abs(d2).max()).item()) <= 2e-4 / (m - 1)
    if uniform:  # the fourth difference in the index
        return xp.partition(_fourth(S), h, axis=1)[:, h] / (0.6745 * math.sqrt(70.0))
    e = _cubic_errors(xp, U, S)
    out = xp.partition(e, h, axis=1)[:, h] / 0.6745
    if not bool(xp.isfinite(out).all()):  # repeated abscissae: fall back to the index
        alt = xp.partition(_fourth(S), h, axis=1)[:, h] / (0.6745 * math.sqrt(70.0))
        out = xp.where(xp.isfinite(out), out, alt)
    return out


def _fourth(S: Any) -> Any:
    """|Fourth difference| of each row of S in the index (k, m - 4)."""
    return abs(S[:, 4:] - 4.0 * (S[:, 3:-1] + S[:, 1:-3]) + 6.0 * S[:, 2:-2] + S[:, :-4])


def _cubic_errors(xp: Any, U: Any, S: Any) -> Any:
    """|Error| of each interior point of S (k, m) predicted by the cubic through its two
    neighbours on each side, over its noise factor (k, m - 4); inf where abscissae repeat."""
    X = U if U.ndim == 2 else U[None, :]
    xi = X[:, 2:-2]
    nb = [X[:, 0:-4], X[:, 1:-3], X[:, 3:-1], X[:, 4:]]
    ys = [S[:, 0:-4], S[:, 1:-3], S[:, 3:-1], S[:, 4:]]
    pred = 0.0
    w2 = 1.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for j in range(4):
            w = 1.0
            for i in range(4):
                if i != j:
                    den = nb[j] - nb[i]
                    w = w * (xi - nb[i]) / xp.where(den != 0, den, xp.nan)
            pred = pred + w * ys[j]
            w2 = w2 + w * w
        e = xp.abs(S[:, 2:-2] - pred) / xp.sqrt(w2)
    return xp.where(xp.isfinite(e), e, xp.inf)


def _row_median(xp: Any, E: Any, ok: Any) -> Any:
    """``median`` of each row of E over the entries ``ok`` (the upper one of an even count,
    as ``partition`` at ``count // 2``); inf where a row has none."""
    cnt = ok.sum(axis=1)
    srt = xp.sort(xp.where(ok, E, xp.inf), axis=1)
    idx = xp.minimum(cnt // 2, E.shape[1] - 1)
    return xp.where(cnt > 0, xp.take_along_axis(srt, idx[:, None], axis=1)[:, 0], xp.inf)


def _noise_masked(xp: Any, U: Any, S: Any, W: Any) -> Any:
    """:func:`_noise` of rows with missing points (``W`` 0), decided row by row."""
    k, m = S.shape
    V = W > 0
    ok5 = V[:, 4:] & V[:, 3:-1] & V[:, 2:-2] & V[:, 1:-3] & V[:, :-4]
    mr = V.sum(axis=1)
    Ur = xp.broadcast_to(U if U.ndim == 2 else U[None, :], (k, m))
    ok3 = V[:, 2:] & V[:, 1:-1] & V[:, :-2]
    d2 = xp.where(ok3, xp.abs(Ur[:, 2:] - 2.0 * Ur[:, 1:-1] + Ur[:, :-2]), 0.0).max(axis=1)
    uniform = (mr >= _NOISE_INDEX_M) | (d2 <= 2e-4 / xp.maximum(mr - 1, 1))
    index = _row_median(xp, _fourth(S), ok5) / (0.6745 * math.sqrt(70.0))
    if xp is np and uniform.all():  # on NumPy the check is free: skip the cubic errors
        out = index
    else:
        cubic = _row_median(xp, _cubic_errors(xp, Ur, S), ok5) / 0.6745
        out = xp.where(uniform | ~xp.isfinite(cubic), index, cubic)
    return xp.where((mr >= 8) & xp.isfinite(out), out, 0.0)


def _pilot_fwhm(xp: Any, S: Any) -> Any:
    """Full width at half maximum of the highest feature of each row of S (k, m), in samples
    (twice the distance from the top to the nearer half-maximum crossing)."""
    k, m = S.shape
    Ss = _moving(xp, S, 5)
    kk = xp.argmax(Ss, axis=1)
    half = 0.5 * Ss[xp.arange(k), kk]
    idx = xp.arange(m, dtype=np.int32)[None, :]  # int32: half the bytes of the where/max
    below = Ss < half[:, None]
    left = xp.where(below & (idx < kk[:, None]), idx, -m).max(axis=1)
    right = xp.where(below & (idx > kk[:, None]), idx, 2 * m).min(axis=1)
    return xp.minimum(kk - left, right - kk) * 2


def _pilot_fwhm_masked(xp: Any, S: Any, U: Any, W: Any) -> Any:
    """:func:`_pilot_fwhm` of rows with missing points (``W`` 0): the crossings are searched
    among the valid points and measured in x, in units of the row's median spacing, so that a
    gap (missing points) next to the top does not pass for a narrow feature."""
    k, m = S.shape
    V = W > 0
    Ur = xp.broadcast_to(U if U.ndim == 2 else U[None, :], (k, m))
    Ss = _moving(xp, S, 5)
    kk = xp.argmax(xp.where(V, Ss, -xp.inf), axis=1)
    rows = xp.arange(k)
    half = 0.5 * Ss[rows, kk]
    idx = xp.arange(m, dtype=np.int32)[None, :]  # int32: half the bytes of the where/max
    below = V & (Ss < half[:, None])
    left = xp.where(below & (idx < kk[:, None]), idx, -1).max(axis=1)
    right = xp.where(below & (idx > kk[:, None]), idx, m).min(axis=1)
    u0 = Ur[rows, kk]
    dl = xp.where(left >= 0, u0 - Ur[rows, xp.maximum(left, 0)], xp.inf)
    dr = xp.where(right < m, Ur[rows, xp.minimum(right, m - 1)] - u0, xp.inf)
    du = _row_median(xp, Ur[:, 1:] - Ur[:, :-1], V[:, 1:] & V[:, :-1])
    du = xp.where(du > 0, du, xp.inf)
    fw = 2.0 * xp.minimum(dl, dr) / du
    return xp.where(xp.isfinite(fw), xp.floor(xp.minimum(fw, 2.0 * m)), 2 * m).astype(xp.int64)


def _bin_edges(m: int, q: int) -> np.ndarray:
    M = max(1, math.ceil(m / q))
    return np.floor(np.arange(M + 1) * (m / M)).astype(np.int64)


def _bin_rows(xp: Any, A: Any, edges: Any) -> Any:
    """Sums of A (k, m) over the bins [edges[j], edges[j+1])."""
    cs = xp.cumsum(A, axis=1)  # cs[:, j] = A[:, :j + 1].sum(axis=1); the first bin starts at 0
    out = cs[:, edges[1:] - 1]
    rest = out[:, 1:]  # a view: subtracted in place
    rest -= cs[:, edges[1:-1] - 1]
    return out


def _rows(X: Any, k: int) -> Any:
    return X if X.ndim == 2 else X[None, :]


def _gauss_sum(xp: Any, U: Any, a: Any, b: Any, c: Any) -> Any:
    """sum_i a_i exp(-((u-b_i)/c_i)^2) for a, b, c of shape (k, j) and U (M,) or (k, M)."""
    return _terms(xp, U, a, b, c).sum(axis=1)


def _terms(xp: Any, U: Any, a: Any, b: Any, c: Any) -> Any:
    """:func:`peakfit.models.term_values` (k, j, M); on a GPU by the generated term-values
    kernel (:func:`peakfit.gpu.kernels.term_values`, one launch instead of one a step)."""
    if xp is np:
        return term_values(U, a, b, c)
    from .gpu.kernels import term_values as device_terms

    return device_terms(U, a, b, c)


_ONE_PEAK = GaussianModel(1)


def _residual(xp: Any, model: GaussianModel, U: Any, Z: Any, p: Any) -> Any:
    """``Z - model(U, p)`` (k, M); on a GPU by the generated residual kernel
    (:func:`peakfit.gpu.kernels.residual`: one read of Z and one write) instead of a CuPy
    operation for every step of every term."""
    if xp is np:
        return Z - model.evaluate(U, p)
    from .gpu.kernels import residual

    return residual(model, U, Z, p)


def _take(xp: Any, A: Any, idx: Any) -> Any:
    """``A[i, idx[i]]`` for each row i (A (k, M) or shared (M,))."""
    if A.ndim == 1:
        return A[idx]
    return A[xp.arange(A.shape[0]), idx]


def _feature(xp: Any, R: Any, U: Any, du: Any) -> tuple[Any, Any, Any]:
    """Height, centre and c of the highest feature of each row of R (k, M).

    The centre is refined by a parabola through the three highest samples; c comes from the
    half-maximum crossing nearer to the top (linear interpolation), ``c = hw / sqrt(ln 2)``.
    """
    k, M = R.shape
    rows = xp.arange(k)
    kk = xp.argmax(R, axis=1)
    a = R[rows, kk]
    km = xp.maximum(kk - 1, 0)
    kp = xp.minimum(kk + 1, M - 1)
    rm, rp = R[rows, km], R[rows, kp]
    den = rm - 2.0 * a + rp
    neg = den < 0
    d = xp.where(neg, 0.5 * (rm - rp) / xp.where(neg, den, -1.0), 0.0)
    d = xp.minimum(xp.maximum(d, -0.5), 0.5)
    u0 = _take(xp, U, kk)
    b = u0 + xp.where(d >= 0, d * (_take(xp, U, kp) - u0), d * (u0 - _take(xp, U, km)))
    half = 0.5 * a
    idx = xp.arange(M, dtype=np.int32)[None, :]  # int32: half the bytes of the where/max
    below = R < half[:, None]
    kc = kk[:, None]
    left = xp.where(below & (idx < kc), idx, -M).max(axis=1)
    right = xp.where(below & (idx > kc), idx, 2 * M).min(axis=1)
    # interpolate the crossing on the side nearer to the top: between j0 and j0 + 1
    use_l = (kk - left) <= (right - kk)
    j0 = xp.minimum(xp.maximum(xp.where(use_l, left, right - 1), 0), max(M - 2, 0))
    j1 = xp.minimum(j0 + 1, M - 1)
    y0, y1 = R[rows, j0], R[rows, j1]
    f = (half - y0) / xp.where(y1 != y0, y1 - y0, 1.0)
    f = xp.minimum(xp.maximum(f, 0.0), 1.0)
    x0 = _take(xp, U, j0)
    xc = x0 + f * (_take(xp, U, j1) - x0)
    hw = xp.where(use_l, b - xc, xc - b)
    hw = xp.where((left < 0) & (right >= M), 0.5, hw)
    c = xp.maximum(hw / _SQRT_LN2, 0.5 * du)
    return a, b, c


def _refit_heights(xp: Any, U: Any, S: Any, b: Any, c: Any, sw: Any, floor: Any) -> Any:
    """Least-squares heights for fixed centres and widths (k, j), clipped at ``floor``."""
    E = _terms(xp, U, xp.ones_like(b), b, c)
    if sw is not None:
        E = E * sw[:, None, :]
        S = S * sw
    G = E @ E.transpose(0, 2, 1)
    j = G.shape[1]
    dg = xp.diagonal(G, axis1=1, axis2=2)
    G = G + (1e-9 * dg.max(axis=1) + 1e-300)[:, None, None] * xp.eye(j)
    h = (E @ S[:, :, None])[:, :, 0]
    a = solve_batched(G, h)
    a = xp.where(xp.isfinite(a), a, floor)
    return xp.maximum(a, floor)


def _pack(xp: Any, a: Any, b: Any, c: Any, q: Any) -> Any:
    k, n = a.shape
    p = xp.empty((k, 3 * n + q.shape[1]), dtype=a.dtype)
    p[:, 0 : 3 * n : 3] = a
    p[:, 1 : 3 * n : 3] = b
    p[:, 2 : 3 * n : 3] = c
    p[:, 3 * n :] = q
    return p


# ---------------------------------------------------------------------------- the estimator
def auto_start(
    model: GaussianModel,
    x: Any,
    Y: Any,
    *,
    smooth: Any = None,
    downsample: Any = None,
    n_trials: int | None = None,
    options: Any = None,
    seed: int = 0,
    return_info: bool = False,
    coarse_iter: int = 12,
    chunk_size: int | None = None,
    missing: bool | None = None,
    dtype: Any = None,
) -> Any:
    """Robust start points for a batch of spectra (the ``start='auto'`` estimator).

    Parameters
    ----------
    model : GaussianModel
        Number of peaks and baseline.
    x : array, shape (m,) or (k, m)
        Abscissae, sorted ascending (shared by all spectra or one row per spectrum), any unit
        and offset. NumPy or CuPy.
    Y : array, shape (k, m)
        Ordinates. Non-finite values are ignored.
    smooth : span, method, (method, span) or dict, optional
        Smooth the data before the start stage (see :func:`parse_smooth`); ``'moving'`` runs
        vectorised, the other methods of :func:`peakfit.signal.smooth` spectrum by spectrum.
    downsample : int, optional
        Average the data in bins of this many samples for the start stage. By default the bin
        size is chosen so that the largest feature spans about eight bins.
    n_trials : int, optional
        Number of extra, randomly perturbed starts (seeded by ``seed``); the best candidate and
        the trials are refined fully on the raw data and the lowest sum of squares is kept.
    options : FitOptions, optional
        Fit options; the start is clipped to their ``Lower``/``Upper`` bounds (weights and
        exclusions are the caller's business: pass only the points to use).
    seed : int
        Seed of the ``n_trials`` perturbations (everything else is deterministic). With
        ``n_trials``, spectra of one call draw from a generator seeded by ``seed`` and their
        position, so the result depends on ``seed``, ``chunk_size`` and the batch.
    return_info : bool
        Also return an :class:`AutoStartInfo` (computing ``n_supported`` costs a little).
    coarse_iter : int
        Most steps of each coarse refinement (each spectrum stops earlier when converged).
    chunk_size : int, optional
        Spectra per chunk, to bound memory; by default chosen from the problem size. Without
        ``n_trials`` the result does not depend on it.
    missing : bool, optional
        Whether some value of ``x`` or ``Y`` is not finite (a missing point), if the caller
        knows; by default checked once for the whole call (a host synchronisation on a GPU).
        With missing points every row is started in one pass, its missing points masked
        (weight 0 in every step); a row whose valid points are contiguous gets the start
        of those points alone to within the binning (edge baseline and noise exactly).

    Notes
    -----
    Without ``n_trials``, each spectrum's start is the same whether it is estimated alone or
    in a batch (for baselines with edge fitting, to the last bits of a batched least-squares
    solve). Everything runs on the array module of the input (NumPy or CuPy); only the
    non-``'moving'`` smoothing methods loop over spectra on the host.

    Returns
    -------
    array, shape (k, P)
        Start points in coefficient order (``a1, b1, c1, ...``, terms by ascending centre, then
        the baseline), on the array module of the input.
    AutoStartInfo
        Only with ``return_info=True``.

    Examples
    --------
    >>> import numpy as np
    >>> from peakfit.models import GaussianModel
    >>> m = GaussianModel(3, "linear")
    >>> x = np.linspace(1.0e4, 1.0e4 + 0.5, 600)
    >>> truth = [2.0, 1.0e4 + 0.15, 0.02, 1.0, 1.0e4 + 0.2, 0.02, 1.5, 1.0e4 + 0.35, 0.03,
    ...          -200.0, 0.02]
    >>> y = m(x, truth) + 0.01 * np.random.default_rng(0).standard_normal(x.size)
    >>> p = auto_start(m, x, y[None, :])
    >>> np.round(p[0, 1:9:3] - 1.0e4, 2).tolist()
    [0.15, 0.2, 0.35]
    """
    xp = get_xp(x, Y)
    dt = _start_dtype(dtype)
    Y = xp.asarray(Y, dtype=dt)
    x = xp.asarray(x, dtype=float)
    if Y.ndim == 1:
        Y = Y[None, :]
    if Y.ndim != 2:
        raise InputError(f"Y must have shape (k, m), got {Y.shape}")
    k, m = Y.shape
    if x.shape not in ((m,), (k, m)):
        raise InputError(f"x must have shape ({m},) or ({k}, {m}), got {x.shape}")
    spec = parse_smooth(smooth)
    q_user = _parse_downsample(downsample)
    trials = 0 if n_trials is None else int(n_trials)
    if trials < 0:
        raise InputError(f"n_trials must be a non-negative integer, got {n_trials!r}")
    if int(coarse_iter) < 0:
        raise InputError(f"coarse_iter must be >= 0, got {coarse_iter!r}")
    P = model.n_params
    if k == 0:
        out = xp.zeros((0, P))
        info0 = AutoStartInfo(out[:, 0], out[:, 0], out[:, 0].astype(int), np.zeros(0, int))
        return (out, info0) if return_info else out
    if missing is None:  # once for the call: every chunk takes the same path
        missing = not bool(xp.isfinite(Y).all() & xp.isfinite(x).all())
    if chunk_size is None:
        if xp is np:  # a working set of _CHUNK_ELEMENTS for the caches (the results depend
            # on the chunks in the last bits: this sizing is unchanged)
            per = (2 * model.n + 2 + trials) * (P * P + P + max(min(m, 512), 1)) + 8 * m
            budget = _CHUNK_ELEMENTS
        else:  # on a GPU: few, large chunks from its free memory and the measured peak
            from .gpu import work_elements

            per = _elements_per_row(model, m, trials, x.ndim == 1, bool(missing))
            budget = max(_CHUNK_ELEMENTS, work_elements())
        chunk_size = max(1, budget // per)
    parts = []
    infos = []
    for s0 in range(0, k, int(chunk_size)):
        s1 = min(k, s0 + int(chunk_size))
        xc = x if x.ndim == 1 else x[s0:s1]
        p, info = _estimate(
            model, xc, Y[s0:s1], spec, q_user, trials, int(seed) + s0, int(coarse_iter),
            return_info, bool(missing),
        )
        parts.append(p)
        infos.append(info)
    p = parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=0)
    p = p.astype(xp.float64, copy=False)
    if options is not None:
        lo, hi = options.bounds(model)
        p = xp.minimum(xp.maximum(p, xp.asarray(lo)), xp.asarray(hi))
    if not return_info:
        return p
    if len(infos) == 1:
        return p, infos[0]
    return p, AutoStartInfo(
        sse=xp.concatenate([i.sse for i in infos]),
        noise=xp.concatenate([i.noise for i in infos]),
        n_supported=xp.concatenate([i.n_supported for i in infos]),
        downsample=np.concatenate([i.downsample for i in infos]),
    )


def _start_dtype(dtype: Any) -> np.dtype:
    """The start's working dtype: float64 (``None``) or float32, else an :class:`InputError`."""
    try:
        dt = np.dtype(np.float64 if dtype is None else dtype)
    except TypeError:
        dt = np.dtype(np.int8)  # not understood: refused below
    if dt.name not in ("float64", "float32"):
        raise InputError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    return dt


def _elements_per_row(model: GaussianModel, m: int, trials: int = 0, shared_x: bool = True,
                      missing: bool = False) -> int:
    """Peak work memory of the start per spectrum of a chunk, in float64 elements.

    Measured with tracemalloc on the GPU path (the CuPy stand-in, whose arrays are NumPy's;
    ``tests/test_cupy_standin.py::test_the_starts_memory_per_row_stays_within_its_estimate``)
    and bounded by: about 6 m for the full-resolution arrays of steps 1-3 and the candidates'
    normal equations, plus the larger of the two phases' own memory, step 2's asymmetric
    baseline fits (both polarities on a GPU: about 16 m with a baseline) and greedy pursuit
    (shared abscissae, a polynomial baseline or the gated rows without one, every row in the
    worst case: ``_PURSUIT_WIDTHS`` x the bins x max(n + 3 deg + 2, 1), a quarter of the points
    as bins), plus about 20 m for rows with missing points (the masks, the masked medians'
    sorts, abscissae per row, and the re-ranking of the gated rows' candidates on the raw
    data, which most ragged rows reach: a few candidates a row at full resolution; measured,
    not bounded).

    Examples
    --------
    >>> _elements_per_row(GaussianModel(4), 1000)
    13560
    """
    n, P = model.n, model.n_params
    per = 6 * m + (2 * n + 2 + trials) * (P * P + P)
    deg = _POLY_DEGREE.get(model.baseline, -1)
    step2 = 16 * m if model.baseline_names else 0
    pursuit = 0
    if shared_x and (model.baseline in _PURSUIT_BASELINES or model.baseline in _PURSUIT_GATED):
        pursuit = _PURSUIT_WIDTHS * max(1, m // 4) * max(n + 3 * deg + 2, 1)
    return per + max(step2, pursuit) + (20 * m if missing else 0)


@dataclass
class _Prep:
    """Normalised data of a set of spectra (step 1-2), rows selectable with :meth:`take`."""

    U: Any  # (m,) shared or (k, m): x normalised to [-1, 1]
    Z: Any  # (k, m): y / max|y|, times the polarity sign
    S: Any  # (k, m): Z less the edge-fitted baseline (0 where invalid)
    W: Any  # None or (k, m) 0/1 validity
    q0: Any  # (k, nb) baseline start, normalised and signed
    sign: Any  # (k,)
    x0: Any  # (1, 1) shared or (k, 1)
    sx: Any
    sy: Any  # (k, 1)
    noise: Any  # (k,)
    ambiguous: Any = None  # None or (k,) bool: the polarity is in doubt (step 2)

    def take(self, rows: Any) -> _Prep:
        def t(a: Any, shared: bool) -> Any:
            return a if (a is None or shared) else a[rows]

        shared = self.U.ndim == 1
        Z = self.Z[rows]
        return _Prep(
            U=t(self.U, shared), Z=Z, S=Z if self.S is self.Z else self.S[rows],
            W=t(self.W, False),
            q0=self.q0[rows], sign=self.sign[rows], x0=t(self.x0, self.x0.shape[0] == 1),
            sx=t(self.sx, self.sx.shape[0] == 1), sy=self.sy[rows], noise=self.noise[rows],
            ambiguous=t(self.ambiguous, False),
        )


def _prepare(
    model: GaussianModel, x: Any, Y: Any, spec: tuple[str, float] | None, force: Any = None,
    missing: bool | None = None,
) -> _Prep:
    """Steps 1-2: validity, normalisation, baseline, polarity, user smoothing, noise.
    ``force`` (k,), +1 or -1, imposes the polarity of spectra whose baseline is fitted by
    asymmetric least squares (the others keep theirs). ``missing``: whether some point of x
    or Y is not finite (None: checked here, a host synchronisation on a GPU); with missing
    points every step masks them (weights ``W``), all rows in one pass.

    No host synchronisation when ``missing`` is given: the choices between the edge and the
    asymmetric baseline and between the noise estimators are made row by row on the device
    (on NumPy, the asymmetric fits run only where some row needs them)."""
    xp = get_xp(x, Y)
    k = Y.shape[0]
    n = model.n
    nb = len(model.baseline_names)
    if missing is False:  # the caller knows: every value is finite
        all_finite, finite, X = True, None, x
    else:
        xfin = xp.isfinite(x)
        finite = xp.isfinite(Y) & (xfin if x.ndim == 2 else xfin[None, :])
        all_finite = not missing if missing is not None else bool(finite.all())
        X = xp.where(xfin, x, 0.0)  # the same values where x is finite: no check needed
    Xr = _rows(X, k)
    if all_finite:
        xmin, xmax = Xr[:, :1], Xr[:, -1:]
    else:
        xmin = xp.where(finite, Xr, xp.inf).min(axis=1, keepdims=True)
        xmax = xp.where(finite, Xr, -xp.inf).max(axis=1, keepdims=True)
    good_x = xp.isfinite(xmin) & xp.isfinite(xmax)
    xmin = xp.where(good_x, xmin, 0.0)
    xmax = xp.where(good_x, xmax, 1.0)
    x0 = 0.5 * (xmin + xmax)
    sx = 0.5 * (xmax - xmin)
    sx = xp.where(sx > 0, sx, xp.where(xp.abs(x0) > 0, xp.abs(x0), 1.0))
    if x.ndim == 1:  # shared abscissae: U stays shared
        x0 = x0[:1]
        sx = sx[:1]
        U = (X - x0[0, 0]) / sx[0, 0]
    else:
        U = (X - x0) / sx
    U = U.astype(Y.dtype, copy=False)  # in [-1, 1]: float32 keeps 6e-8 of the span
    Yf = Y if all_finite else xp.where(finite, Y, 0.0)
    # max|y| as max(max y, -min y): the same number, without an |Y| temporary
    ymax, ymin = Yf.max(axis=1, keepdims=True), Yf.min(axis=1, keepdims=True)
    sy = xp.maximum(ymax, -ymin)
    sy = xp.where((sy > 0) & xp.isfinite(sy), sy, 1.0)
    # no baseline and no missing point: the polarity from the max and min of Y over sy (a
    # positive divisor keeps them), and Z signed in the same pass (dividing by -sy is exact)
    early = not nb and all_finite
    if early:
        sign = xp.where((ymax / sy)[:, 0] >= -(ymin / sy)[:, 0], 1.0, -1.0).astype(Y.dtype)
        Z = Yf / (sy * sign[:, None])
    else:
        Z = Yf / sy
    W = None if all_finite else finite.astype(Z.dtype)
    V = None if all_finite else finite
    if nb:
        q0 = baseline_start(model, U, Z, valid=V)
        q0 = xp.where(xp.isfinite(q0), q0, 0.0)
        S = Z - model.evaluate(U, xp.concatenate([xp.zeros((k, 3 * n)), q0], axis=1))
    else:
        q0 = xp.zeros((k, 0))
        S = Z
    if W is not None:
        S = S * W
    if not early:
        sign = xp.where(S.max(axis=1) >= -S.min(axis=1), 1.0, -1.0)
    if nb and _BASELINE_METHOD != "edges" and model.baseline != "exponential":
        # the edge fit stays where it leaves no dip below the data (in the polarity of the
        # peaks) deeper than _BASELINE_DIP noise levels; elsewhere a peak lifted it, and the
        # baseline is fitted from below the (signed) peaks instead
        noise = _noise(xp, U, Z, W)
        dip = (S * sign[:, None]).min(axis=1)
        lifted = dip < -_BASELINE_DIP * noise
        ambiguous = (dip < -_POLARITY_DIP * noise) & (
            -dip > _POLARITY_RATIO * (S * sign[:, None]).max(axis=1))
        if force is not None:
            lifted = xp.ones(k, dtype=bool)
        if xp is not np or bool(lifted.any()):  # on a GPU: both fits, chosen per row
            # fitted from below the peaks and from above the dips: the polarity is the one
            # whose baseline touches the data (within _CONTACT noise levels) at more points
            # (the baseline between peaks, rather than the tops of dips)
            zq = xp.zeros((k, 3 * n))
            fits = []
            for sg in (1.0, -1.0):
                qa = baseline_start(model, U, sg * Z, method=_BASELINE_METHOD, valid=V)
                qa = xp.where(xp.isfinite(qa), qa, 0.0)
                Sa = sg * Z - model.evaluate(U, xp.concatenate([zq, qa], axis=1))
                if W is not None:
                    Sa = Sa * W
                fits.append((sg * qa, sg * Sa, (Sa < _CONTACT * noise[:, None]).sum(axis=1)))
            pos = fits[0][2] >= fits[1][2]
            if force is not None:
                pos = force > 0
            sign = xp.where(lifted, xp.where(pos, 1.0, -1.0), sign)
            q0 = xp.where(lifted[:, None], xp.where(pos[:, None], fits[0][0], fits[1][0]), q0)
            S = xp.where(lifted[:, None], xp.where(pos[:, None], fits[0][1], fits[1][1]), S)
    else:
        ambiguous = None
    if not early:  # (early: Z is signed already, and S is Z)
        Z = Z * sign[:, None]
        S = S * sign[:, None]
    q0 = q0 * _baseline_sign(model, sign)
    if spec is not None:
        same = S is Z
        Z = _user_smooth(xp, x, Z, spec)
        S = Z if same else _user_smooth(xp, x, S, spec)
    return _Prep(U=U, Z=Z, S=S, W=W, q0=q0, sign=sign, x0=x0, sx=sx, sy=sy,
                 noise=_noise(xp, U, S, W), ambiguous=ambiguous)


def _bin_factors(xp: Any, S: Any, q_user: int | None, W: Any = None, U: Any = None) -> Any:
    """Per-spectrum bin size (int array on the device of S): ``q_user``, or about a tenth of the
    largest feature's FWHM in samples, rounded down to 1, 2, 3, 4, 6, 8, 12, 16, ... (few
    groups); at most a hundredth of the row's points (of its valid points ``W``), 1 below
    ``2 * _MIN_BINS`` points. No host synchronisation: :func:`_estimate` reads the sizes."""
    k, m = S.shape
    mr = m if W is None else (W > 0).sum(axis=1)
    if q_user is not None:
        return xp.maximum(xp.minimum(xp.full(k, q_user, dtype=xp.int64), mr), 1)
    if W is None and m < 2 * _MIN_BINS:
        return xp.ones(k, dtype=xp.int64)
    fw = _pilot_fwhm(xp, S) if W is None else _pilot_fwhm_masked(xp, S, U, W)
    q = fw // int(_BINS_PER_FWHM)
    q = xp.minimum(xp.maximum(q, 1), xp.maximum(mr // _MIN_BINS, 1))
    if W is not None:
        q = xp.where(mr < 2 * _MIN_BINS, 1, q)
    p2 = 2.0 ** xp.floor(xp.log2(q.astype(xp.float64)))
    return xp.where(q >= 1.5 * p2, 1.5 * p2, p2).astype(xp.int64)


def _estimate(
    model: GaussianModel, x: Any, Y: Any, spec: tuple[str, float] | None, q_user: int | None,
    trials: int, seed: int, iters: int, want_info: bool = False, missing: bool | None = None,
) -> tuple[Any, AutoStartInfo | None]:
    """Steps 1-7 for a chunk of spectra; spectra with different bin sizes run as groups.
    Where the polarity came from an asymmetric baseline fit (step 2), both polarities are
    solved and the start with the lower sum of squares on the raw data is kept.

    Steps 1-2 decide on the device; the host reads their outcome once (the bin size of every
    spectrum and whether its polarity is in doubt, one transfer): the one host
    synchronisation of steps 1-2 in a chunk (``missing`` given)."""
    xp = get_xp(x, Y)
    k = Y.shape[0]
    prep = _prepare(model, x, Y, spec, missing=missing)
    qd = _bin_factors(xp, prep.S, q_user, prep.W, prep.U)
    amb = prep.ambiguous if _BOTH_POLARITIES else None
    if amb is not None:
        qd = xp.concatenate([qd, amb.astype(qd.dtype)])
    host = np.asarray(to_numpy(qd))  # the host's one read of steps 1-2
    qs = host[:k]
    if amb is None or not host[k:].any():
        return _estimate_prep(model, prep, qs, trials, seed, iters, want_info)
    # the other polarity of the doubtful spectra, as extra rows of the same pass (same bins)
    rows_h = np.flatnonzero(host[k:])
    rows = xp.asarray(rows_h)
    xr = x if x.ndim == 1 else x[rows]
    Yr = Y[rows]
    masked = prep.W is not None
    alt = _prepare(model, xr, Yr, spec, force=-prep.sign[rows], missing=masked)
    both = _concat(prep, alt)
    p2, info2 = _estimate_prep(model, both, np.concatenate([qs, qs[rows_h]]), trials, seed,
                               iters, want_info)
    p, pa = p2[:k], p2[k:]
    # each polarity's start refined on the raw data (the binned optimum can misrank them)
    r = rows_h.size
    both_p, both_s = _raw_refine(model, xr, Yr, xp.concatenate([p[rows], pa], axis=0),
                                 missing=masked)
    better = both_s[r:] < both_s[:r]
    p[rows] = xp.where(better[:, None], both_p[r:], both_p[:r])
    info = None
    if info2 is not None:
        info = AutoStartInfo(sse=info2.sse[:k], noise=info2.noise[:k],
                             n_supported=info2.n_supported[:k], downsample=qs)
        info.sse[rows] = xp.where(better, info2.sse[k:], info.sse[rows])
        info.noise[rows] = xp.where(better, info2.noise[k:], info.noise[rows])
        info.n_supported[rows] = xp.where(better, info2.n_supported[k:],
                                          info.n_supported[rows])
    return p, info


def _concat(a: _Prep, b: _Prep) -> _Prep:
    """Rows of a then rows of b (both prepared from the same abscissae)."""
    xp = get_xp(a.Z)

    def cat(u: Any, v: Any, shared: bool) -> Any:
        return u if (u is None or shared) else xp.concatenate([u, v], axis=0)

    shared = a.U.ndim == 1
    return _Prep(
        U=cat(a.U, b.U, shared), Z=cat(a.Z, b.Z, False), S=cat(a.S, b.S, False),
        W=cat(a.W, b.W, False), q0=cat(a.q0, b.q0, False), sign=cat(a.sign, b.sign, False),
        x0=cat(a.x0, b.x0, a.x0.shape[0] == 1), sx=cat(a.sx, b.sx, a.sx.shape[0] == 1),
        sy=cat(a.sy, b.sy, False), noise=cat(a.noise, b.noise, False),
    )


def _raw_refine(model: GaussianModel, x: Any, Y: Any, p: Any,
                missing: bool | None = None) -> tuple[Any, Any]:
    """Starts p (j*k, P), j per spectrum of Y (k, m), refined on the raw data in the
    original units (the caller's solver and tolerances, at most ``_RAW_ITER`` steps,
    non-finite points ignored: ``missing`` says whether there are any, None: checked).
    Returns (p, sse)."""
    xp = get_xp(Y, p)
    j = p.shape[0] // Y.shape[0]
    xfin = xp.isfinite(x)
    fin = xp.isfinite(Y) & (xfin if x.ndim == 2 else xfin[None, :])
    if missing is None:
        missing = not bool(fin.all())
    Yr = xp.tile(xp.where(fin, Y, 0.0), (j, 1))
    xf = xp.where(xfin, x, 0.0)  # the same values where x is finite
    xr = xf if x.ndim == 1 else xp.tile(xf, (j, 1))
    w = xp.tile(fin.astype(Yr.dtype), (j, 1)) if missing else None
    res = levenberg_marquardt(NormalEquations(model, xr, Yr, w), p, model.default_lower(),
                              model.default_upper(), max_iter=_RAW_ITER,
                              max_fun_evals=2 * _RAW_ITER, lam0=LAM0)
    sse = xp.where(xp.isfinite(res.sse), res.sse, xp.inf)
    return xp.where(xp.isfinite(res.p), res.p, p), sse


def _estimate_prep(
    model: GaussianModel, prep: _Prep, qs: np.ndarray, trials: int, seed: int,
    iters: int, want_info: bool,
) -> tuple[Any, AutoStartInfo | None]:
    """Steps 3-7 for prepared spectra with bin sizes ``qs``, grouped by bin size."""
    xp = get_xp(prep.Z)
    k = prep.Z.shape[0]
    groups = np.unique(qs)
    if groups.size == 1:
        return _solve_group(model, prep, int(groups[0]), trials, seed, iters, want_info)
    p = xp.empty((k, model.n_params))
    info = None
    if want_info:
        info = AutoStartInfo(sse=xp.empty(k), noise=prep.noise,
                             n_supported=xp.empty(k, dtype=xp.int64), downsample=qs)
    for q in groups:
        rows_h = np.flatnonzero(qs == q)
        rows = xp.asarray(rows_h)
        pg, ig = _solve_group(model, prep.take(rows), int(q), trials, seed + int(rows_h[0]),
                              iters, want_info)
        p[rows] = pg
        if info is not None and ig is not None:
            info.sse[rows] = ig.sse
            info.n_supported[rows] = ig.n_supported
    return p, info


def _solve_group(
    model: GaussianModel, prep: _Prep, q: int, trials: int, seed: int, iters: int,
    want_info: bool,
) -> tuple[Any, AutoStartInfo | None]:
    """Steps 3-7 for spectra sharing the bin size q."""
    xp = get_xp(prep.Z)
    U, Z, S, W, q0 = prep.U, prep.Z, prep.S, prep.W, prep.q0
    k, m = Z.shape
    n = model.n
    nb = len(model.baseline_names)
    P = model.n_params

    # ---- 3. downsampling
    if q > 1:
        edges = xp.asarray(_bin_edges(m, q))
        if W is None:
            cnt = xp.asarray(np.diff(_bin_edges(m, q)).astype(float))
            Zb = _bin_rows(xp, Z, edges) / cnt
            Ub = _bin_rows(xp, U if U.ndim == 2 else U[None, :], edges) / cnt
            Ub = Ub if U.ndim == 2 else Ub[0]
            sw = None
        else:
            cnt = _bin_rows(xp, W, edges)
            cnt_safe = xp.where(cnt > 0, cnt, 1.0)
            Zb = _bin_rows(xp, Z * W, edges) / cnt_safe
            Uall = xp.broadcast_to(_rows(U, k), (k, m))
            Ub_all = _bin_rows(xp, Uall, edges) / xp.asarray(np.diff(_bin_edges(m, q)) * 1.0)
            Ub = xp.where(cnt > 0, _bin_rows(xp, Uall * W, edges) / cnt_safe, Ub_all)
            sw = xp.sqrt(cnt / q)
        if nb:
            Sb = Zb - model.evaluate(Ub, xp.concatenate([xp.zeros((k, 3 * n)), q0], axis=1))
        else:
            Sb = Zb
        if sw is not None:
            Sb = Sb * (sw > 0)
    else:
        Zb, Sb, Ub, sw = Z, S, U, W
    M = Zb.shape[1]
    noise_b = prep.noise / math.sqrt(q)
    # bin width in u, per spectrum
    span_u = _rows(Ub, k)[:, -1] - _rows(Ub, k)[:, 0]
    du = xp.broadcast_to(xp.where(span_u > 0, span_u / max(M - 1, 1), 2.0 / max(M, 1)), (k,))

    # ---- 4-5. the cheap path, every spectrum: one candidate (peeling with the measured
    # widths), refined on the binned data (no host synchronisation)
    floor = xp.maximum(noise_b, 1e-6)
    Ssm = _moving(xp, Sb, 3) if M >= 6 else Sb
    lo, hi = _box(xp, model, du)
    narrow = None
    if xp is np:
        pa, pb, pc = _peel(xp, Ssm, Ub, du, n, floor, xp.ones(k))
    else:  # on a GPU: the full path's narrow peeling too, as rows of the same pass (the same
        # numbers, row by row; half the launches of two passes)
        wfac = xp.concatenate([xp.ones(k), xp.full(k, _NARROW)])
        pa, pb, pc = _peel(xp, xp.concatenate([Ssm, Ssm], axis=0),
                           Ub if Ub.ndim == 1 else xp.concatenate([Ub, Ub], axis=0),
                           xp.concatenate([du, du]), n, xp.concatenate([floor, floor]), wfac)
        narrow = _pack(xp, pa[k:], pb[k:], pc[k:] * _NARROW, q0)
        pa, pb, pc = pa[:k], pb[:k], pc[:k]
    cands = [_pack(xp, pa, pb, pc, q0)[:, None, :]]
    pursuit = model.baseline in _PURSUIT_BASELINES and Ub.ndim == 1
    if pursuit and _CHEAP_PURSUIT:
        # a second candidate, chosen together with the baseline (greedy pursuit)
        cands.append(_pursuit(xp, model, Ub, Zb, sw, du)[:, None, :])
    C = len(cands)
    p_all, s_all = _refine(model, Ub, Zb, sw, xp.concatenate(cands, axis=1).reshape(k * C, P),
                           lo, hi, iters, C)
    p_all, s_all = p_all.reshape(k, C, P), s_all.reshape(k, C)
    best, sse = _pick(xp, p_all, s_all)

    # ---- the gate: spectra whose cheap start looks wrong take the full path (steps 4-6)
    gate = (
        _misfit(xp, model, Ub, Zb, sw, best, sse, noise_b, _GATE_SSE_SIGMAS)
        | _degenerate(xp, model, best, lo, noise_b)
        | _shoulder(xp, model, best)
    )
    if C > 1:
        gate = gate | _ambiguous(xp, model, p_all, s_all, best, sse)
    if not _GATE:
        gate = xp.ones(k, dtype=bool)
    rows = xp.flatnonzero(gate)  # the one host synchronisation of the path
    if int(rows.size):
        Ub_r = Ub if Ub.ndim == 1 else Ub[rows]
        sw_r = None if sw is None else sw[rows]
        best[rows], sse[rows] = _full_path(
            model, Ub_r, Zb[rows], Ssm[rows], sw_r, du[rows], floor[rows], q0[rows], lo[rows],
            hi[rows], noise_b[rows], p_all[rows], s_all[rows], iters,
            None if narrow is None else narrow[rows],
            Ub.ndim == 1 and (model.baseline in _PURSUIT_GATED
                              or (pursuit and not _CHEAP_PURSUIT)),
            prep.take(rows) if q > 1 else None,  # raw data for _rerank (binned rows only)
        )

    # ---- 7. random trials, refined fully on the raw data
    if trials > 0:
        best, sse = _trials(model, xp, U, Z, W, Ub, Zb, sw, best, du, lo, hi, iters, trials,
                            seed)

    info = None
    if want_info:
        info = AutoStartInfo(sse=sse, noise=prep.noise, downsample=np.full(k, q),
                             n_supported=_supported(xp, model, Ub, Zb, sw, best, noise_b))
    # ---- back to the original units and sign
    best[:, 0 : 3 * n : 3] *= prep.sign[:, None]
    best[:, 3 * n :] = best[:, 3 * n :] * _baseline_sign(model, prep.sign)
    p = model.unscale(best, prep.x0, prep.sx, prep.sy)
    p = xp.where(xp.isfinite(p), p, 0.0)
    return model.sort_peaks(p)[0], info


def _full_path(
    model: GaussianModel, Ub: Any, Zb: Any, Ssm: Any, sw: Any, du: Any, floor: Any, q0: Any,
    lo: Any, hi: Any, noise_b: Any, p_cheap: Any, s_cheap: Any, iters: int, narrow: Any,
    pursuit: bool, raw: _Prep | None = None,
) -> tuple[Any, Any]:
    """Steps 4-6 for the spectra that the gate sent on (binned data of those rows only):
    the other candidates (narrow peeling; pursuit with a polynomial baseline) refined and
    compared with the cheap path's candidates ``p_cheap`` (k, C0, P) and ``s_cheap`` (k, C0),
    then the repair rounds, each on the rows still to repair, stopping when none is left.
    With ``raw`` (the rows' unbinned data), each round's near-best candidates are ranked on it
    (:func:`_rerank`)."""
    xp = get_xp(Zb)
    k = Zb.shape[0]
    n = model.n
    P = model.n_params
    if narrow is None:  # the narrow peeling (unless the cheap path made it)
        pa, pb, pc = _peel(xp, Ssm, Ub, du, n, floor, xp.full(k, _NARROW))
        narrow = _pack(xp, pa, pb, pc * _NARROW, q0)
    cands = [narrow[:, None, :]]
    if pursuit:  # greedy pursuit with the baseline, where the cheap path has not run it
        cands.append(_pursuit(xp, model, Ub, Zb, sw, du)[:, None, :])
    C = len(cands)
    pc_, sc_ = _refine(model, Ub, Zb, sw, xp.concatenate(cands, axis=1).reshape(k * C, P),
                       lo, hi, iters, C)
    p_all = xp.concatenate([p_cheap, pc_.reshape(k, C, P)], axis=1)
    s_all = xp.concatenate([s_cheap, sc_.reshape(k, C)], axis=1)
    best, sse = _pick(xp, p_all, s_all)

    # ---- 6. repair where the residual shows structure or exceeds the noise
    todo = (
        _misfit(xp, model, Ub, Zb, sw, best, sse, noise_b)
        | _ambiguous(xp, model, p_all, s_all, best, sse)
        | _degenerate(xp, model, best, lo, noise_b)
        | _shoulder(xp, model, best)
    )
    for _ in range(_REPAIR_ROUNDS):
        # compact to the rows still to repair (one host synchronisation a round on a GPU:
        # cheaper there than a fixed number of masked rounds over every row, which measured
        # 17.8k launches against 7.9k on the CuPy stand-in at k = 64)
        rows = xp.flatnonzero(todo)
        if int(rows.size) == 0:
            break
        U_r = Ub if Ub.ndim == 1 else Ub[rows]
        sw_r = None if sw is None else sw[rows]
        Z_r = Zb[rows]
        variants = _repair_candidates(xp, model, U_r, Z_r, sw_r, best[rows], du[rows],
                                      floor[rows])
        Cr = variants.shape[1]
        pv, sv = _refine(model, U_r, Z_r, sw_r, variants.reshape(-1, P), lo[rows], hi[rows],
                         iters, Cr, _REPAIR_MIN_ITER)
        rerank = raw is not None and _RERANK_WITHIN > 1.0
        if rerank:  # the near-best ranked on the raw data
            pv, sv = _rerank(model, raw.take(rows), pv, sv, lo[rows], hi[rows], Cr)
        j, nb_best, nb_sse = _pick(xp, pv.reshape(-1, Cr, P), sv.reshape(-1, Cr), True)
        if rerank:  # back to the binned sum of squares of the pick
            r_b = _residual(xp, model, U_r, Z_r, nb_best)
            r_b = r_b if sw_r is None else r_b * sw_r
            nb_sse = (r_b * r_b).sum(axis=1)
        best[rows] = nb_best
        sse[rows] = nb_sse
        # another round only where a repair (not the continued best) won and misfit remains
        again = (j > 0) & (
            _misfit(xp, model, U_r, Z_r, sw_r, nb_best, nb_sse, noise_b[rows])
            | (_degenerate(xp, model, nb_best, lo[rows], noise_b[rows]) & _REPAIR_DEGENERATE))
        todo = xp.zeros(k, dtype=bool)
        todo[rows] = again
    return best, sse


def _baseline_sign(model: GaussianModel, sign: Any) -> Any:
    """Factors (k, nb) that flip the baseline coefficients with the data's sign."""
    xp = get_xp(sign)
    nb = len(model.baseline_names)
    f = xp.broadcast_to(sign[:, None], (sign.shape[0], nb)).copy()
    if model.baseline == "exponential":
        f[:, 1] = 1.0
    return f


def _box(xp: Any, model: GaussianModel, du: Any) -> tuple[Any, Any]:
    """Bounds of the coarse stage in normalised units (heights >= 0, centres near the data)."""
    n = model.n
    k = du.shape[0]
    lo = xp.full((k, model.n_params), -xp.inf)
    hi = xp.full((k, model.n_params), xp.inf)
    lo[:, 0 : 3 * n : 3] = 0.0
    hi[:, 0 : 3 * n : 3] = 4.0
    lo[:, 1 : 3 * n : 3] = -_CENTRE_BOX
    hi[:, 1 : 3 * n : 3] = _CENTRE_BOX
    lo[:, 2 : 3 * n : 3] = 0.5 * du[:, None]
    hi[:, 2 : 3 * n : 3] = 2.0
    return lo, hi


def _refine(
    model: GaussianModel, U: Any, Z: Any, sw: Any, p: Any, lo: Any, hi: Any, iters: int, C: int,
    min_iter: int = 3, tol_fun: float = _COARSE_TOL,
) -> tuple[Any, Any]:
    """Coarse refinement of C candidates per spectrum (rows of p are (spectrum, candidate)):
    at most ``iters`` steps of the shared solver, Marquardt damping from ``_LAM0``, each row
    stopping once a step gains less than ``_COARSE_TOL``; after ``min_iter`` steps, candidates
    with a sum of squares above ``_KEEP`` times the best of their spectrum are dropped (they
    are not worth waiting for). Returns (p, sse)."""
    xp = get_xp(Z, p)
    R = p.shape[0]
    cur = xp.full(R, xp.inf)  # latest SSE of every row (finished rows keep theirs)

    def prune(iteration: int, idx: Any, sse: Any, lam: Any) -> Any:
        cur[idx] = xp.where(sse == sse, sse, xp.inf)
        if iteration != min_iter or C == 1:
            return None
        best = cur.reshape(-1, C).min(axis=1)
        return cur[idx] > _KEEP * best[idx // C]

    # in the candidates' precision (float64) whatever the data's: the fused kernel works in
    # the data's dtype, and the coarse solves of a float32 start stay those of the CPU
    Zr = xp.repeat(Z.astype(p.dtype, copy=False), C, axis=0)
    Ur = U if U.ndim == 1 else xp.repeat(U, C, axis=0)
    swr = None if sw is None else xp.repeat(sw, C, axis=0)
    lor = xp.repeat(lo, C, axis=0)
    hir = xp.repeat(hi, C, axis=0)
    solver = levenberg_marquardt
    if _COARSE_VP and model.baseline != "none":
        lor = lor.copy()
        hir = hir.copy()
        lor[:, 0:3 * model.n:3] = -xp.inf
        hir[:, 0:3 * model.n:3] = xp.inf
        solver = partial(variable_projection, model=model)
    if xp is np:
        ev = NormalEquations(model, Ur, Zr, swr)
    else:  # on a GPU: the solver's fused kernel, one launch an evaluation
        from .gpu import FusedNormalEquations

        ev = FusedNormalEquations(model, Ur, Zr, swr)
    res = solver(
        ev, p0=p,
        lower=lor, upper=hir,
        tol_fun=tol_fun, tol_x=_COARSE_TOL_X, max_iter=iters, max_fun_evals=iters + 1,
        algorithm="Levenberg-Marquardt", lam0=_LAM0, callback=prune if C > 1 else None,
        # few rows: mask finished rows instead of compacting every step (same results);
        # on a GPU, never compact (a compaction is a host synchronisation)
        check_every=iters + 1 if p.shape[0] <= _FEW_ROWS or xp is not np else 1,
    )
    return res.p, res.sse


def _pursuit(xp: Any, model: GaussianModel, U: Any, Z: Any, sw: Any, du: Any) -> Any:
    """Start (k, P) by greedy pursuit: ``n`` times, the Gaussian of a grid (centres at the
    bins and ``_PURSUIT_WIDTHS`` widths) that most reduces the sum of squares when added to
    the terms chosen so far and the polynomial baseline, all linear coefficients re-fitted
    (orthogonal matching pursuit). The baseline is thus estimated with the peaks. Shared
    abscissae ``U`` (M,) only."""
    k, M = Z.shape
    n = model.n
    deg = _POLY_DEGREE[model.baseline]
    dmin = float(to_numpy(du).min())
    widths = np.geomspace(max(dmin, 1e-3), 0.5, _PURSUIT_WIDTHS)
    centres = U
    bg = xp.repeat(centres, widths.size)
    cg = xp.tile(xp.asarray(widths), centres.shape[0])
    Aa = xp.exp(-(((U[None, :] - bg[:, None]) / cg[:, None]) ** 2))  # (G, M) atoms
    w = None if sw is None else sw
    Zw = Z if w is None else Z * w
    cols = [xp.broadcast_to(U[None, :] ** j, (k, M)) for j in range(deg + 1)]
    Q = xp.zeros((k, deg + 1 + n, M))
    L = 0
    for col in cols:  # orthonormal baseline basis (Gram-Schmidt, per row for the weights)
        v = col if w is None else col * w
        if L:
            v = v - xp.einsum("klm,kl->km", Q[:, :L], xp.einsum("klm,km->kl", Q[:, :L], v))
        Q[:, L] = v / xp.maximum(xp.sqrt((v * v).sum(axis=1, keepdims=True)), 1e-300)
        L += 1
    chosen = xp.zeros((k, n), dtype=xp.int64)
    rows = xp.arange(k)
    Aw = Aa[None, :, :] if w is None else Aa[None, :, :] * w[:, None, :]  # (1 or k, G, M)
    a2 = (Aw * Aw).sum(axis=2)  # (1 or k, G)
    nrm = a2
    Cq = xp.zeros((k, Aa.shape[0], Q.shape[1]))  # projections of the atoms on Q
    for i in range(L):
        Cq[:, :, i] = (Aw @ Q[:, i, :, None])[:, :, 0] if w is not None else Q[:, i, :] @ Aa.T
        nrm = nrm - Cq[:, :, i] ** 2
    for j in range(n):
        r = Zw - xp.einsum("klm,kl->km", Q[:, :L], xp.einsum("klm,km->kl", Q[:, :L], Zw))
        corr = r @ Aa.T if w is None else (Aw @ r[:, :, None])[:, :, 0]  # (k, G)
        score = xp.where((corr > 0) & (nrm > 1e-9 * a2), corr * corr / xp.maximum(nrm, 1e-300),
                         -1.0)
        g = xp.argmax(score, axis=1)
        chosen[:, j] = g
        v = Aa[g] if w is None else Aa[g] * w
        v = v - xp.einsum("klm,kl->km", Q[:, :L], Cq[rows, g, :L])
        Q[:, L] = v / xp.maximum(xp.sqrt((v * v).sum(axis=1, keepdims=True)), 1e-300)
        if j + 1 < n:
            Cq[:, :, L] = (Q[:, L] @ Aa.T) if w is None else (Aw @ Q[:, L, :, None])[:, :, 0]
            nrm = nrm - Cq[:, :, L] ** 2
        L += 1
    b = bg[chosen]
    c = cg[chosen]
    # all linear coefficients (heights and baseline) by least squares on the chosen basis
    t = (U[None, None, :] - b[:, :, None]) / c[:, :, None]
    B = xp.exp(-t * t)
    if cols:
        B = xp.concatenate([B, xp.stack(cols, axis=1)], axis=1)  # (k, n+deg+1, M)
    Bw = B if w is None else B * w[:, None, :]
    G = Bw @ Bw.transpose(0, 2, 1)
    G = G + 1e-12 * xp.diagonal(G, axis1=1, axis2=2).max(axis=1)[:, None, None] * xp.eye(
        G.shape[1])
    coef = solve_batched(G, (Bw @ Zw[:, :, None])[:, :, 0])
    coef = xp.where(xp.isfinite(coef), coef, 0.0)
    return _pack(xp, xp.maximum(coef[:, :n], 0.0), b, c, coef[:, n:])


def _rerank(
    model: GaussianModel, raw: _Prep, p: Any, s: Any, lo: Any, hi: Any, C: int,
) -> tuple[Any, Any]:
    """Rank the candidates (rows (spectrum, candidate) of p, binned sums of squares s) within
    ``_RERANK_WITHIN`` of their spectrum's best on the raw (normalised) data ``raw``: each is
    refined there with the tolerance ``_RERANK_TOL`` (at most ``_RERANK_ITER`` steps). The
    binned landscape can rank a spike on noise below a close pair split from one wide term
    (which also converges slowly). Candidates with the same sum of squares (to
    ``_RERANK_SAME``) go once. Returns p (the re-ranked rows refined) and the raw sums of
    squares (inf for the other rows)."""
    xp = get_xp(raw.Z, p)
    sk = xp.where(xp.isfinite(s), s, xp.inf).reshape(-1, C)
    order = xp.argsort(sk, axis=1)
    ss = xp.take_along_axis(sk, order, axis=1)
    # distinct ends only: variants often converge to the same point (equal sums of squares)
    keep_s = ss <= _RERANK_WITHIN * ss[:, :1]
    keep_s[:, 1:] &= ss[:, 1:] > ss[:, :-1] * (1.0 + _RERANK_SAME)
    keep = xp.zeros(sk.shape, dtype=bool)
    keep[xp.arange(sk.shape[0])[:, None], order] = keep_s
    idx = xp.flatnonzero(keep.ravel())
    out = xp.full(s.shape, xp.inf)
    spec = idx // C
    U_i = raw.U if raw.U.ndim == 1 else raw.U[spec]
    pp, ss = _refine(model, U_i, raw.Z[spec], None if raw.W is None else raw.W[spec], p[idx],
                     lo[spec], hi[spec], _RERANK_ITER, 1, tol_fun=_RERANK_TOL)
    p = p.copy()
    ok = xp.isfinite(ss)
    p[idx] = xp.where(ok[:, None], pp, p[idx])
    out[idx] = xp.where(ok, ss, xp.inf)
    return p, out


def _pick(xp: Any, p: Any, s: Any, index: bool = False) -> Any:
    """Lowest-SSE candidate per spectrum: p (k, C, P), s (k, C) -> ([j,] best (k, P), sse)."""
    s = xp.where(xp.isfinite(s), s, xp.inf)
    j = xp.argmin(s, axis=1)
    rows = xp.arange(p.shape[0])
    best = p[rows, j]
    if index:
        return j, best, s[rows, j]
    return best, s[rows, j]


def _ambiguous(xp: Any, model: GaussianModel, p: Any, s: Any, best: Any, sse: Any) -> Any:
    """Spectra where another candidate ended nearly as well (SSE within ``_AMBIGUOUS``) at a
    different set of centres (some sorted centre more than a quarter width away)."""
    n = model.n
    bc = xp.sort(p[:, :, 1 : 3 * n : 3], axis=2)
    bb = xp.sort(best[:, 1 : 3 * n : 3], axis=1)
    cmin = xp.abs(best[:, 2 : 3 * n : 3]).min(axis=1)
    differ = (xp.abs(bc - bb[:, None, :]).max(axis=2) > 0.25 * cmin[:, None])
    close = s <= _AMBIGUOUS * sse[:, None]
    return (differ & close).any(axis=1)


def _degenerate(xp: Any, model: GaussianModel, p: Any, lo: Any, noise: Any) -> Any:
    """Spectra whose best start has a wasted peak: height within three noise levels of zero,
    or width at its lower bound."""
    n = model.n
    a = p[:, 0 : 3 * n : 3]
    c = p[:, 2 : 3 * n : 3]
    return ((a < 3.0 * noise[:, None]) | (c <= 1.001 * lo[:, 2 : 3 * n : 3])).any(axis=1)


def _shoulder(xp: Any, model: GaussianModel, p: Any) -> Any:
    """Spectra whose best start has a weak, narrow term on the flank of a wide one (height
    below half, width below 1/1.3, centre within 1.5 widths): the usual sign of a close pair
    fitted by one wide term, the spare term sitting on its side."""
    n = model.n
    a = xp.abs(p[:, 0 : 3 * n : 3])
    b = p[:, 1 : 3 * n : 3]
    c = p[:, 2 : 3 * n : 3]
    # [:, j, w]: term j is the shoulder of term w
    weak = a[:, :, None] < 0.5 * a[:, None, :]
    narrow = 1.3 * c[:, :, None] < c[:, None, :]
    near = xp.abs(b[:, :, None] - b[:, None, :]) < 1.5 * c[:, None, :]
    return (weak & narrow & near).any(axis=(1, 2))


def _misfit(
    xp: Any, model: GaussianModel, U: Any, Z: Any, sw: Any, p: Any, sse: Any, noise: Any,
    sigmas: float = _SSE_SIGMAS,
) -> Any:
    """Spectra whose fit leaves structure: lag-1 autocorrelation of the residuals above
    ``_RHO_LIMIT / sqrt(M)`` or a sum of squares above the noise level (by more than
    ``sigmas`` standard deviations of chi^2)."""
    r = _residual(xp, model, U, Z, p)
    if sw is not None:
        r = r * sw
    M = r.shape[1]
    ss = (r * r).sum(axis=1)
    rho = (r[:, 1:] * r[:, :-1]).sum(axis=1) / xp.maximum(ss, 1e-300)
    dof = max(M - model.n_params, 1)
    limit = dof * noise * noise * (1.0 + sigmas * math.sqrt(2.0 / dof))
    return (rho > _RHO_LIMIT / math.sqrt(M)) | (sse > limit)


def _peel(
    xp: Any, R: Any, U: Any, du: Any, n: int, floor: Any, wfac: Any
) -> tuple[Any, Any, Any]:
    """Greedy peeling of n peaks off R (k, M), widths from the half-maximum crossing; the
    Gaussian subtracted has its width multiplied by ``wfac`` (k,)."""
    k = R.shape[0]
    R = R.copy() if xp is np else R  # on a GPU each step makes a new R
    A = xp.zeros((k, n))
    B = xp.zeros((k, n))
    Cw = xp.zeros((k, n))
    for j in range(n):
        a, b, c = _feature(xp, R, U, du)
        a = xp.maximum(a, floor)
        A[:, j], B[:, j], Cw[:, j] = a, b, c
        if xp is np:  # one term: its values are the sum (no pass to sum it); R is ours
            R -= term_values(U, a[:, None], b[:, None], (c * wfac)[:, None])[:, 0]
        else:  # on a GPU: one generated kernel instead of a CuPy operation a step
            R = _residual(xp, _ONE_PEAK, U, R, xp.stack([a, b, c * wfac], axis=1))
    return A, B, Cw


def _repair_candidates(
    xp: Any, model: GaussianModel, U: Any, Z: Any, sw: Any, best: Any, du: Any, floor: Any
) -> Any:
    """Variants of each start (k, P) -> (k, V, P): the start itself; each peak in turn moved to
    the largest residual feature; each peak in turn split in two, the second half taking the
    slot of the weakest other peak (smallest a*c) or of the nearest other peak; the birth/death
    moves of :func:`_rebirths` (the kinds in ``_VARIANTS``)."""
    k, P = best.shape
    n = model.n
    R = Z - model.evaluate(U, best)
    if sw is not None:
        R = R * (sw > 0)
    base = Z - _gauss_sum(xp, U, best[:, 0 : 3 * n : 3], best[:, 1 : 3 * n : 3],
                          best[:, 2 : 3 * n : 3]) - R
    kinds = tuple(v for v in ("drop", "merge") if v in _VARIANTS)
    rebirth = None
    if n >= 2 and kinds:  # the birth/death variants and the largest residual feature
        rebirth, (a_new, b_new, c_new) = _rebirths(xp, U, Z - base, sw, best, n, du, floor,
                                                   kinds, R)
    else:
        Rs = _moving(xp, R, 3) if R.shape[1] >= 6 else R
        a_new, b_new, c_new = _feature(xp, Rs, U, du)
        a_new = xp.maximum(a_new, floor)
    blocks = [best[:, None, :]]
    if "move" in _VARIANTS or n == 1:
        mv = xp.repeat(best[:, None, :], n, axis=1)
        for j in range(n):
            mv[:, j, 3 * j] = a_new
            mv[:, j, 3 * j + 1] = b_new
            mv[:, j, 3 * j + 2] = xp.maximum(c_new, 0.5 * best[:, 3 * j + 2])
        blocks.append(mv)
    if n >= 2 and "split" in _VARIANTS:
        sp = xp.repeat(best[:, None, :], 2 * n, axis=1)
        a = best[:, 0 : 3 * n : 3]
        b = best[:, 1 : 3 * n : 3]
        c = best[:, 2 : 3 * n : 3]
        weak = xp.abs(a) * c
        rows = xp.arange(k)
        s = 0
        for j in range(n):
            dist = xp.abs(b - b[:, j : j + 1])
            dist[:, j] = xp.inf
            sc = weak.copy()
            sc[:, j] = xp.inf
            aj, bj, cj = 0.8 * a[:, j], b[:, j], c[:, j]
            for v in (xp.argmin(sc, axis=1), xp.argmin(dist, axis=1)):
                sp[:, s, 3 * j] = aj
                sp[:, s, 3 * j + 1] = bj - 0.5 * cj
                sp[:, s, 3 * j + 2] = 0.7 * cj
                sp[rows, s, 3 * v] = aj
                sp[rows, s, 3 * v + 1] = bj + 0.5 * cj
                sp[rows, s, 3 * v + 2] = 0.7 * cj
                s += 1
        blocks.append(sp)
    if rebirth is not None:
        blocks.append(rebirth)
    out = xp.concatenate(blocks, axis=1)
    # heights of every variant re-fitted to the data less the baseline
    V = out.shape[1]
    flat = out.reshape(k * V, P)
    Ur = U if U.ndim == 1 else xp.repeat(U, V, axis=0)
    flat[:, 0 : 3 * n : 3] = _refit_heights(
        xp, Ur, xp.repeat(Z - base, V, axis=0), flat[:, 1 : 3 * n : 3], flat[:, 2 : 3 * n : 3],
        None if sw is None else xp.repeat(sw, V, axis=0), xp.repeat(floor, V)[:, None],
    )
    return flat.reshape(k, V, P)


def _rebirths(
    xp: Any, U: Any, D: Any, sw: Any, best: Any, n: int, du: Any, floor: Any,
    kinds: tuple[str, ...] = ("drop", "merge"), R: Any = None,
) -> tuple[Any, tuple[Any, Any, Any] | None]:
    """Birth/death variants of each start (k, P) -> (k, len(kinds) * n, P) for the peaks D
    (k, M) (data less the baseline): for each peak j in turn, "drop": j removed, "merge": j
    merged with its nearest neighbour (one term at their weighted centre, spanning both); the
    freed slot j is re-seeded at the highest feature of the residual left by the remaining
    terms. Unlike a move (which looks at the residual of the full start), a wide term that
    covers a close pair is gone or narrowed before the residual is read, so the pair's second
    peak shows. All variants are formed at once (a fixed number of array operations); the
    highest feature of R (k, M), a residual given by the caller, is found in the same pass.
    Returns (variants, the feature of R (a, b, c) or None)."""
    k = best.shape[0]
    nk = len(kinds)
    V = nk * n
    a = best[:, 0 : 3 * n : 3]
    b = best[:, 1 : 3 * n : 3]
    c = best[:, 2 : 3 * n : 3]
    G = term_values(U, a, b, c)  # (k, n, M): each residual by adding terms back
    E = 0 if R is None else 1  # the caller's residual as the first row of each spectrum
    # residuals of all variants, rows (spectrum, [R,] j, kind), filled in place
    # (single precision: only seeds are read from them, and half the memory traffic)
    Rr = xp.empty((k, V + E, D.shape[1]), dtype=xp.float32)
    if R is not None:
        Rr[:, 0] = R
    Rd = (D - G.sum(axis=1))[:, None, :] + G  # (k, n, M): j dropped
    A3 = xp.repeat(a[:, None, :], V, axis=1)  # (k, V, n), variant (j, kind) at nk * j + t
    B3 = xp.repeat(b[:, None, :], V, axis=1)
    C3 = xp.repeat(c[:, None, :], V, axis=1)
    for kd in kinds:
        if kd == "merge":
            dist = xp.abs(b[:, None, :] - b[:, :, None])  # [i, j, v]
            dist = xp.where(xp.eye(n, dtype=bool)[None], xp.inf, dist)
            nv = xp.argmin(dist, axis=2)  # (k, n): the nearest neighbour of each j
            kk = xp.arange(k)[:, None]
            av, bv, cv = a[kk, nv], b[kk, nv], c[kk, nv]
            wj = xp.abs(a) * c
            wv = xp.abs(av) * cv
            wsum = xp.maximum(wj + wv, 1e-300)
            bm = (wj * b + wv * bv) / wsum
            # second moment of the pair about bm (c^2 / 2 is a term's variance)
            var = (wj * (0.5 * c**2 + (b - bm) ** 2) + wv * (0.5 * cv**2 + (bv - bm) ** 2)) / wsum
            cm = xp.sqrt(2.0 * var)
            am = xp.maximum(a, av)
            t = kinds.index(kd)
            sl = Rr[:, E + t :: nk]
            sl[...] = Rd
            sl += G[kk, nv]
            sl -= term_values(U, am, bm, cm)
            vi = (nk * xp.arange(n) + t)[None, :]
            A3[kk, vi, nv] = am
            B3[kk, vi, nv] = bm
            C3[kk, vi, nv] = cm
        else:
            Rr[:, E + kinds.index(kd) :: nk] = Rd
    if sw is not None:
        Rr[:, E:] *= sw[:, None, :] > 0
    Rr = Rr.reshape(k * (V + E), -1)
    Rs = _moving(xp, Rr, 3) if Rr.shape[1] >= 6 else Rr
    Ur = U if U.ndim == 1 else xp.repeat(U, V + E, axis=0)
    fa, fb, fc = _feature(xp, Rs, Ur, xp.repeat(du, V + E))
    fa = xp.maximum(fa, xp.repeat(floor, V + E)).reshape(k, V + E)
    fb = fb.reshape(k, V + E)
    fc = fc.reshape(k, V + E)
    extra = None
    if R is not None:
        extra = (fa[:, 0], fb[:, 0], fc[:, 0])
        fa, fb, fc = fa[:, 1:], fb[:, 1:], fc[:, 1:]
    vi = xp.arange(V)[None, :]
    sj = xp.repeat(xp.arange(n), nk)[None, :]
    kk = xp.arange(k)[:, None]
    A3[kk, vi, sj] = fa
    B3[kk, vi, sj] = fb
    C3[kk, vi, sj] = fc
    out = xp.repeat(best[:, None, :], V, axis=1)
    out[:, :, 0 : 3 * n : 3] = A3
    out[:, :, 1 : 3 * n : 3] = B3
    out[:, :, 2 : 3 * n : 3] = C3
    return out, extra

def _trials(
    model: GaussianModel, xp: Any, U: Any, Z: Any, W: Any, Ub: Any, Zb: Any, sw: Any, best: Any,
    du: Any, lo: Any, hi: Any, iters: int, trials: int, seed: int,
) -> tuple[Any, Any]:
    """O'Haver-style trials: perturbed starts, coarse then full refinement, lowest SSE kept."""
    k, P = best.shape
    n = model.n
    rng = np.random.default_rng(seed)
    T = trials + 1
    cand = xp.repeat(best[:, None, :], T, axis=1)
    c = best[:, 2 : 3 * n : 3]
    pert_b = xp.asarray(rng.standard_normal((k, trials, n)))
    pert_c = xp.asarray(rng.uniform(0.6, 1.6, (k, trials, n)))
    pert_a = xp.asarray(rng.uniform(0.5, 1.5, (k, trials, n)))
    cand[:, 1:, 1 : 3 * n : 3] = cand[:, 1:, 1 : 3 * n : 3] + pert_b * c[:, None, :]
    cand[:, 1:, 2 : 3 * n : 3] = cand[:, 1:, 2 : 3 * n : 3] * pert_c
    cand[:, 1:, 0 : 3 * n : 3] = cand[:, 1:, 0 : 3 * n : 3] * pert_a
    pc, _ = _refine(model, Ub, Zb, sw, cand.reshape(k * T, P), lo, hi, iters, T)
    # full refinement on the normalised raw data (free parameters, MATLAB-like lower c bound)
    Zr = xp.repeat(Z, T, axis=0)
    Ur = U if U.ndim == 1 else xp.repeat(U, T, axis=0)
    swr = None if W is None else xp.repeat(W, T, axis=0)
    lo_f = model.default_lower()
    hi_f = model.default_upper()
    res = levenberg_marquardt(NormalEquations(model, Ur, Zr, swr), pc, lo_f, hi_f,
                              tol_fun=1e-8, tol_x=1e-8, max_iter=100, max_fun_evals=200)
    s = xp.where(xp.isfinite(res.sse), res.sse, xp.inf).reshape(k, T)
    return _pick(xp, res.p.reshape(k, T, P), s)


def _supported(
    xp: Any, model: GaussianModel, U: Any, Z: Any, sw: Any, p: Any, noise: Any
) -> Any:
    """Number of peaks of p (k, P) that the data support (see ``AutoStartInfo.n_supported``)."""
    k = p.shape[0]
    n = model.n
    a, b, c = p[:, 0 : 3 * n : 3], p[:, 1 : 3 * n : 3], p[:, 2 : 3 * n : 3]
    w = None if sw is None else sw
    if xp is np:
        f = model.evaluate(U, p)
        S = Z - (f - _gauss_sum(xp, U, a, b, c))  # data less the baseline
        r = (Z - f) if w is None else (Z - f) * w
        E = term_values(U, xp.ones_like(b), b, c)  # (k, n, M)
    else:  # on a GPU: the residual kernel, the peaks from the basis E (one product)
        E = _terms(xp, U, xp.ones_like(b), b, c)
        r = _residual(xp, model, U, Z, p)
        S = r + (a[:, None, :] @ E)[:, 0]  # data less the baseline
        r = r if w is None else r * w
    sse = (r * r).sum(axis=1)
    Sw = S if w is None else S * w
    energy = (Sw * Sw).sum(axis=1)
    thr = _SUPPORT_CHI2 * noise * noise + 1e-9 * energy
    if w is not None:
        E = E * w[:, None, :]
    G = E @ E.transpose(0, 2, 1)  # (k, n, n)
    h = (E @ Sw[:, :, None])[:, :, 0]  # (k, n)
    active = xp.ones((k, n), dtype=bool)
    alive = xp.ones(k, dtype=bool)
    eye = xp.eye(n)
    for _ in range(n):
        # SSE with each active peak j dropped and the remaining heights re-fitted
        trial = active[:, None, :] & ~eye.astype(bool)[None, :, :]  # (k, j, n)
        mask = trial[:, :, :, None] & trial[:, :, None, :]
        Gj = xp.where(mask, G[:, None, :, :], 0.0) + (~trial)[:, :, :, None] * eye
        hj = xp.where(trial, h[:, None, :], 0.0)
        scale = xp.maximum(xp.diagonal(G, axis1=1, axis2=2).max(axis=1), 1e-300)
        Gj = Gj + 1e-10 * scale[:, None, None, None] * eye
        aj = solve_batched(Gj.reshape(k * n, n, n), hj.reshape(k * n, n)).reshape(k, n, n)
        # SSE = energy - h.a for the least-squares heights
        s_drop = energy[:, None] - (aj * hj).sum(axis=2) - sse[:, None]
        s_drop = xp.where(active & xp.isfinite(s_drop), s_drop, xp.inf)
        j = xp.argmin(s_drop, axis=1)
        rise = s_drop[xp.arange(k), j]
        drop = alive & (rise <= thr)
        active[xp.arange(k), j] = active[xp.arange(k), j] & ~drop
        alive = drop
        if not bool(alive.any()):
            break
    return active.sum(axis=1)
