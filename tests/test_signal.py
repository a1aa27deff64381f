"""Tests for peakfit.signal: MATLAB smooth / downsample / decimate / findpeaks semantics.

Expected numbers are worked out by hand in the comments (MATLAB documentation examples
where they exist). A few tests compare the vectorised code with a plain loop written
straight from MATLAB's algorithm description.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from peakfit.errors import InputError
from peakfit.signal import Peaks, Reduction, bin, decimate, downsample, findpeaks, smooth

# ======================================================================================
# smooth: moving average
# ======================================================================================


def test_moving_average_matlab_end_points():
    y = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0])
    yy = smooth(y)  # span 5, 'moving'
    # MATLAB doc: yy(1)=y(1); yy(2)=mean(y(1:3)); yy(3)=mean(y(1:5)); yy(4)=mean(y(2:6))
    assert yy[0] == y[0]
    assert yy[1] == pytest.approx((3 + 1 + 4) / 3, abs=1e-14)
    assert yy[2] == pytest.approx((3 + 1 + 4 + 1 + 5) / 5, abs=1e-14)
    assert yy[3] == pytest.approx((1 + 4 + 1 + 5 + 9) / 5, abs=1e-14)
    # symmetric at the other end
    assert yy[-1] == y[-1]
    assert yy[-2] == pytest.approx((5 + 3 + 5) / 3, abs=1e-14)
    assert yy[-3] == pytest.approx((2 + 6 + 5 + 3 + 5) / 5, abs=1e-14)


def test_moving_average_hand_example():
    # 1; mean(1,2,6)=3; mean(1,2,6,4,5)=3.6; mean(2,6,4,5,9)=5.2; mean(6,4,5,9,7)=6.2;
    # mean(5,9,7)=7; 7
    assert_allclose(smooth([1, 2, 6, 4, 5, 9, 7], 5), [1, 3, 3.6, 5.2, 6.2, 7, 7], atol=1e-14)


def test_moving_even_span_reduced_by_one():
    y = np.array([2.0, 7.0, 1.0, 8.0, 2.0, 8.0, 1.0, 8.0])
    assert_array_equal(smooth(y, 4), smooth(y, 3))
    # span 3 by hand: [2, (2+7+1)/3, (7+1+8)/3, ...]
    assert_allclose(smooth(y, 4)[:3], [2.0, 10 / 3, 16 / 3], atol=1e-14)


def test_span_larger_than_data_reduced_to_n():
    y = np.array([0.0, 1.0, 4.0, 9.0, 16.0, 25.0])
    # span 20 -> 6 -> odd 5
    assert_allclose(smooth(y, 20), [0, 5 / 3, 6, 11, 50 / 3, 25], atol=1e-13)
    assert_array_equal(smooth(y, 20), smooth(y, 6))
    assert_array_equal(smooth(y, 20, "lowess"), smooth(y, 6, "lowess"))


def test_fractional_span_is_ceil_of_fraction_times_n():
    rng = np.random.default_rng(1)
    y = rng.normal(size=20)
    assert_array_equal(smooth(y, 0.3), smooth(y, 6))  # ceil(0.3 * 20) = 6 -> 5
    assert_array_equal(smooth(y, 0.3, "lowess"), smooth(y, 6, "lowess"))
    assert_array_equal(smooth(y, 0.26, "loess"), smooth(y, 6, "loess"))  # ceil(5.2) = 6
    assert_array_equal(smooth(y, 1), y)  # span 1 is one point, not 100 %


@pytest.mark.parametrize("span", [0, -1, -0.5, math.nan])
def test_bad_span_raises(span):
    with pytest.raises(ValueError, match="span"):
        smooth([1.0, 2.0, 3.0], span)


def test_moving_nan_aware():
    y = [1, np.nan, 3, 4, np.nan, np.nan, np.nan, 8]
    # span 3 windows: [1], [1,3], [3,4], [3,4], [4], [] -> NaN, [8], [8]
    assert_allclose(smooth(y, 3), [1, 2, 3.5, 3.5, 4, np.nan, 8, 8], atol=1e-14)


def test_moving_and_gaussian_keep_inf_local():
    y = [1, 2, np.inf, 4, 5, 6, 7, 8, 9.0]
    assert_allclose(smooth(y, 3), [1, np.inf, np.inf, np.inf, 5, 6, 7, 8, 9])
    out = smooth(y, 3, "gaussian")
    assert np.isinf(out[1:4]).all()
    assert_allclose(out[4:8], [5, 6, 7, 8])


def test_moving_repeated_x_uses_matlab_groups():
    # x = [0,1,1,2,3], span 3: the pair at x=1 needs hf=ceil((3-2)/2)=1 more point each side
    # -> mean(1,2,4,3)=2.5; x=2 extends left over the whole x=1 group -> mean(2,4,3,5)=3.5
    out = smooth([1, 2, 4, 3, 5], 3, "moving", x=[0, 1, 1, 2, 3])
    assert_allclose(out, [1, 2.5, 2.5, 3.5, 5], atol=1e-14)


def test_single_point_every_method():
    for m in ("moving", "lowess", "loess", "sgolay", "rlowess", "rloess", "gaussian", "median"):
        assert_array_equal(smooth([3.5], method=m), [3.5])


def test_empty_and_2d_input_raise():
    with pytest.raises(InputError, match="empty"):
        smooth([])
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        smooth(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\(4, 1\)"):
        smooth(np.zeros((4, 1)))
    with pytest.raises(ValueError, match="same length"):
        smooth([1.0, 2.0, 3.0], x=[1.0, 2.0])
    with pytest.raises(ValueError, match="method"):
        smooth([1.0, 2.0, 3.0], method="spline")
    with pytest.raises(ValueError, match="real"):
        smooth([1 + 1j, 2.0])


def test_default_method_follows_x_spacing():
    rng = np.random.default_rng(2)
    y = rng.normal(size=15)
    x_uniform = 0.1 * np.arange(15)
    x_nonuniform = np.cumsum(rng.uniform(0.5, 1.5, 15))
    assert_array_equal(smooth(y, x=x_uniform), smooth(y, method="moving"))
    assert_array_equal(smooth(y, x=x_nonuniform), smooth(y, method="lowess", x=x_nonuniform))
    assert not np.allclose(smooth(y, x=x_nonuniform), smooth(y, method="moving"))


def test_unsorted_x_is_sorted_and_result_returned_in_input_order():
    rng = np.random.default_rng(3)
    x = np.cumsum(rng.uniform(0.2, 1.0, 25))
    y = np.sin(x) + rng.normal(0, 0.1, 25)
    perm = rng.permutation(25)
    for m in ("lowess", "rloess", "sgolay", "moving"):
        assert_allclose(smooth(y[perm], 7, m, x=x[perm]), smooth(y, 7, m, x=x)[perm], atol=1e-13)


def test_nan_x_gives_nan():
    out = smooth([1.0, 2.0, 3.0, 4.0], 3, "lowess", x=[0.0, np.nan, 2.0, 3.0])
    assert np.isnan(out[1])
    assert_allclose(out[[0, 2, 3]], [1.0, 3.0, 4.0], atol=1e-13)  # the line y = x + 1


# ======================================================================================
# smooth: lowess / loess
# ======================================================================================


def test_lowess_reproduces_a_straight_line():
    rng = np.random.default_rng(4)
    x = np.sort(rng.uniform(0, 10, 40))
    for span in (2, 3, 5, 11, 40):
        for m in ("lowess", "loess", "rlowess", "rloess"):
            assert_allclose(smooth(3 * x - 2, span, m, x=x), 3 * x - 2, atol=1e-10)


def test_loess_reproduces_a_parabola():
    x = np.cumsum(np.linspace(0.5, 1.5, 30))
    y = 0.5 * x**2 - x + 4
    assert_allclose(smooth(y, 7, "loess", x=x), y, rtol=1e-10)
    assert not np.allclose(smooth(y, 7, "lowess", x=x), y, rtol=1e-6)


def test_lowess_hand_computed_tricube_weights():
    # span 5 on a uniform grid, interior point: distances 0,1,1,2,2, dmax = 2; row weights
    # (1-(d/2)^3)^1.5, i.e. tricube weights 1, (7/8)^3, (7/8)^3, 0, 0 in the normal
    # equations. The design is symmetric, so the local line's intercept is the
    # weighted mean: (y_i + w (y_{i-1} + y_{i+1})) / (1 + 2 w), w = (7/8)^3.
    w = (7 / 8) ** 3
    out = smooth([0, 0, 0, 1, 0, 0, 0], 5, "lowess")
    assert out[3] == pytest.approx(1 / (1 + 2 * w), abs=1e-14)
    assert out[2] == pytest.approx(w / (1 + 2 * w), abs=1e-14)
    # span 3: the two neighbours sit at dmax and get weight 0 -> the data are returned
    assert_allclose(smooth([0, 0, 0, 1, 0, 0, 0], 3, "lowess"), [0, 0, 0, 1, 0, 0, 0], atol=1e-15)


def test_lowess_nan_aware():
    x = np.arange(12.0)
    y = 2 * x + 1
    y[[3, 7]] = np.nan
    out = smooth(y, 5, "lowess")
    # the local lines are fitted through the valid points only: the line comes back,
    # including at the NaN samples
    assert_allclose(out, 2 * x + 1, atol=1e-12)
    assert np.isnan(smooth([np.nan, np.nan, np.nan], 3, "lowess")).all()
    # at the NaN sample both neighbours sit at dmax (weight 0): MATLAB then drops the
    # weights altogether and fits the line through (0, 1) and (2, 5) -> 3
    assert_allclose(smooth([1, np.nan, 5, 7, 9], 3, "lowess"), [1, 3, 5, 7, 9], atol=1e-13)


def test_lowess_with_duplicate_x():
    x = np.array([0, 1, 1, 1, 2, 3, 3, 4, 5, 6.0])
    out = smooth(2 * x + 1, 5, "lowess", x=x)
    assert_allclose(out, 2 * x + 1, atol=1e-12)
    rng = np.random.default_rng(5)
    out = smooth(rng.normal(size=10), 5, "rlowess", x=x)
    assert out[1] == out[2] == out[3]  # equal x share one value, as MATLAB
    assert out[5] == out[6]


def test_rlowess_rejects_an_outlier():
    x = np.arange(20.0)
    y = 2 * x + 1
    y[10] += 100.0
    plain = smooth(y, 7, "lowess")
    robust = smooth(y, 7, "rlowess")
    assert abs(plain[10] - 21.0) > 20  # the outlier drags the plain fit
    assert_allclose(robust, 2 * x + 1, atol=1e-9)  # bisquare weights remove it entirely


def _lowess_loop(x, y, span, quad, robust, iters=5):
    """MATLAB smooth.m lowess, one point at a time (reference for the vectorised code).

    Rank-deficient local fits use fewer polynomial columns, as peakfit documents.
    """
    n = len(y)
    span = min(int(span), n)
    ynan = np.isnan(y)
    seps = math.sqrt(np.finfo(float).eps)
    c = np.zeros(n)
    wins = [None] * n

    def fit(i, idx, w):
        x1 = x[idx] - x[i]
        nc = min(3 if quad else 2, max(1, len(np.unique(x1[w > 0]))))
        v = np.column_stack([x1**k for k in range(nc)])
        return np.linalg.lstsq(w[:, None] * v, w * y[idx], rcond=None)[0][0]

    for i in range(n):
        d = np.abs(x - x[i])
        idx = np.flatnonzero((d <= np.sort(d)[span - 1]) & ~ynan)
        if idx.size == 0:
            c[i] = np.nan
            continue
        dmax = d[idx].max() or 1.0
        w = (1 - (d[idx] / dmax) ** 3) ** 1.5
        if np.all(w < seps):
            w[:] = 1
        wins[i] = (idx, w)
        c[i] = fit(i, idx, w)
    if robust:
        yeps = np.nanmax(np.abs(y)) * np.finfo(float).eps
        for _ in range(iters):
            r = y - c
            new = c.copy()
            for i in range(n):
                if wins[i] is None:
                    continue
                idx, w = wins[i]
                r1 = np.abs(r[idx] - np.median(r[idx]))
                mad = np.median(r1)
                if mad > yeps:
                    u = r1 / (6 * mad)
                    w = w * np.where(u <= 1, 1 - u * u, 0)
                new[i] = fit(i, idx, w)
            c = new
    return c


@pytest.mark.parametrize("method", ["lowess", "loess", "rlowess", "rloess"])
def test_lowess_matches_pointwise_matlab_loop(method):
    rng = np.random.default_rng(6)
    for trial in range(6):
        n = 45
        x = np.sort(np.round(rng.uniform(0, 10, n), 1))  # many repeated x values
        y = np.sin(x) + rng.normal(0, 0.3, n)
        y[rng.integers(0, n, 3)] += 4.0  # outliers
        if trial % 2:
            y[rng.integers(0, n, 2)] = np.nan
        span = 7 + 3 * trial
        got = smooth(y, span, method, x=x)
        ref = _lowess_loop(x, y, span, method.endswith("loess"), method.startswith("r"))
        assert_allclose(got, ref, rtol=1e-9, atol=1e-9)


def test_lowess_is_fast_on_10000_points():
    rng = np.random.default_rng(7)
    x = np.sort(rng.uniform(0, 100, 10_000))
    y = np.sin(x) + rng.normal(0, 0.1, x.size)
    t0 = time.perf_counter()
    out = smooth(y, 15, "lowess", x=x)
    assert time.perf_counter() - t0 < 1.0
    assert np.abs(out - np.sin(x)).mean() < 0.05


# ======================================================================================
# smooth: sgolay, gaussian, median
# ======================================================================================


def test_sgolay_hand_computed_interior_coefficients():
    # quadratic, 5 points: the classic Savitzky-Golay weights (-3, 12, 17, 12, -3) / 35
    y = np.zeros(11)
    y[5] = 1.0
    out = smooth(y, 5, "sgolay")
    assert_allclose(out[3:8], np.array([-3, 12, 17, 12, -3]) / 35, atol=1e-14)


def test_sgolay_reproduces_polynomials_exactly():
    x = np.arange(25.0)
    cubic = 0.01 * x**3 - 0.3 * x**2 + x - 7
    assert_allclose(smooth(cubic, 7, "sgolay", 3), cubic, atol=1e-9)  # ends included
    # non-uniform x: local polynomial fits, still exact for a quadratic
    xn = np.cumsum(np.linspace(0.3, 1.7, 25))
    quad = 2 * xn**2 - 3 * xn + 1
    assert_allclose(smooth(quad, 9, "sgolay", 2, x=xn), quad, rtol=1e-10)


def test_sgolay_even_span_and_degree_errors():
    rng = np.random.default_rng(8)
    y = rng.normal(size=20)
    assert_array_equal(smooth(y, 6, "sgolay"), smooth(y, 5, "sgolay"))
    with pytest.raises(ValueError, match="degree"):
        smooth(y, 5, "sgolay", degree=5)
    with pytest.raises(ValueError, match="degree"):
        smooth(y, 5, "sgolay", degree=-1)
    with pytest.raises(ValueError, match="degree"):
        smooth(y, 5, "sgolay", degree=1.5)
    # span reduced to the data: frame <= degree returns the data, as MATLAB
    assert_array_equal(smooth([1.0, 5.0, 2.0], 5, "sgolay", 3), [1.0, 5.0, 2.0])


def test_sgolay_nan_aware():
    x = np.arange(15.0)
    y = x**2
    y[6] = np.nan
    assert_allclose(smooth(y, 5, "sgolay", 2), x**2, atol=1e-9)


def test_gaussian_window_hand_computed():
    # span 3 -> sigma = 3/5; neighbour weight e = exp(-1 / (2 * 0.36))
    e = math.exp(-1 / 0.72)
    out = smooth([0, 0, 0, 1, 0, 0, 0], 3, "gaussian")
    assert_allclose(out[2:5], [e / (1 + 2 * e), 1 / (1 + 2 * e), e / (1 + 2 * e)], atol=1e-14)
    # ends: the window is truncated and the weights renormalised; NaN is skipped
    out = smooth([2.0, 4.0, np.nan, 1.0], 3, "gaussian")
    assert out[0] == pytest.approx((2 + 4 * e) / (1 + e), abs=1e-14)
    assert out[2] == pytest.approx((4 * e + 1 * e) / (2 * e), abs=1e-14)
    assert_allclose(smooth(np.full(9, 3.0), 5, "gaussian"), 3.0, atol=1e-14)


def test_moving_median_hand_computed():
    # windows (span 3, truncated at the ends): [1,100] [1,100,3] [100,3,4] [3,4,5] [4,5]
    assert_allclose(smooth([1, 100, 3, 4, 5], 3, "median"), [50.5, 3, 4, 4, 4.5])
    assert_allclose(smooth([1, np.nan, 3, 4], 3, "median"), [1, 2, 3.5, 3.5])


# ======================================================================================
# downsample / decimate / bin and Reduction
# ======================================================================================


def test_downsample_matlab_examples():
    assert_array_equal(downsample(np.arange(1, 11), 3), [1, 4, 7, 10])
    assert_array_equal(downsample(np.arange(1, 11), 3, 2), [3, 6, 9])
    assert downsample(np.arange(1, 11), 3).dtype == np.arange(1, 11).dtype
    assert_array_equal(downsample([5.0], 4), [5.0])


@pytest.mark.parametrize(
    ("n", "phase", "match"),
    [(0, 0, "n must be"), (2.5, 0, "n must be"), (3, 3, "phase"), (3, -1, "phase")],
)
def test_downsample_bad_arguments(n, phase, match):
    with pytest.raises(ValueError, match=match):
        downsample(np.arange(10), n, phase)


def test_downsample_reduction_maps_back():
    y = np.arange(10) ** 2
    red = Reduction.for_downsample(y.size, 3, phase=2)
    assert red.n_reduced == 3
    assert_array_equal(red.positions, [2, 5, 8])
    assert_array_equal(y[red.starts], downsample(y, 3, 2))
    assert_allclose(red.index_to_original([0, 1, 1.5, 2]), [2, 5, 6.5, 8])
    x = 0.5 * np.arange(10)
    assert_allclose(red.reduce_x(x), [1.0, 2.5, 4.0])
    assert_allclose(red.x_to_original(0.5, x), 1.75)
    assert_allclose(red.width_to_original(1.2), 3.6)
    with pytest.raises(ValueError, match="range"):
        red.index_to_original(2.5)


@pytest.mark.parametrize("n", [30, 31, 32, 33, 100, 101])
@pytest.mark.parametrize("r", [2, 3, 4])
def test_decimate_output_length_is_ceil(n, r):
    y = np.sin(np.arange(n) / 5.0)
    assert decimate(y, r).size == math.ceil(n / r)
    if n >= 63:
        assert decimate(y, r, "fir").size == math.ceil(n / r)


def test_decimate_iir_alignment_to_last_sample():
    # MATLAB: nout = ceil(nd/r), samples odata(nbeg:r:nd), nbeg = r - (r*nout - nd)
    assert Reduction.for_decimate(10, 3).offset == 0  # 0-based samples 0, 3, 6, 9
    assert Reduction.for_decimate(11, 3).offset == 1  # 1, 4, 7, 10
    assert Reduction.for_decimate(12, 3).offset == 2  # 2, 5, 8, 11
    assert_array_equal(Reduction.for_decimate(12, 3).starts, [2, 5, 8, 11])
    assert Reduction.for_decimate(12, 3, "fir").offset == 0

    # a slow sine passes the filter (zero phase) scaled by |H(0)|^2 = 10^(-0.05/10)
    # (even-order Chebyshev I); it must line up with the original samples of the grid
    n, r = 1001, 4
    t = np.arange(n)
    y = np.sin(2 * np.pi * t / 200)
    out = decimate(y, r)
    red = Reduction.for_decimate(n, r)
    assert red.offset == 0  # 1000 = 4 * 250: the last sample is on the grid
    g2 = 10 ** (-0.05 / 10)
    mid = slice(20, -20)
    assert_allclose(out[mid], g2 * y[red.starts][mid], atol=3e-3)
    # a grid shifted by one sample would be off by up to 2*pi/200 = 0.03
    assert np.abs(out[mid] - g2 * y[red.starts - 1][mid]).max() > 0.02

    y = np.sin(2 * np.pi * np.arange(1002) / 200)
    out = decimate(y, r)
    red = Reduction.for_decimate(1002, r)
    assert red.offset == 1
    assert_allclose(out[mid], g2 * y[red.starts][mid], atol=3e-3)


def test_decimate_fir_reproduces_a_ramp_on_the_first_sample_grid():
    # symmetric FIR with unit DC gain + MATLAB's odd end extension keep a line exact
    for n, r in ((100, 4), (101, 3), (64, 5)):
        y = 0.5 * np.arange(n) - 3
        assert_allclose(decimate(y, r, "fir"), y[::r], atol=1e-12)


def test_decimate_removes_aliasing():
    t = np.arange(400)
    y = np.sin(2 * np.pi * 0.01 * t) + np.sin(2 * np.pi * 0.45 * t)  # 0.45 cycles/sample
    out = decimate(y, 4)
    keep = np.sin(2 * np.pi * 0.01 * t[Reduction.for_decimate(400, 4).starts])
    assert np.abs(out[10:-10] - 10 ** (-0.05 / 10) * keep[10:-10]).max() < 0.02
    assert np.abs(downsample(y, 4) - np.sin(2 * np.pi * 0.01 * t[::4])).max() > 0.5


def test_decimate_bad_input():
    with pytest.raises(ValueError, match="finite"):
        decimate([1.0, np.nan] * 30, 2)
    with pytest.raises(ValueError, match="samples"):
        decimate(np.ones(20), 2)  # filtfilt of an order-8 IIR needs > 24 samples
    with pytest.raises(ValueError, match="samples"):
        decimate(np.ones(62), 2, "fir")
    with pytest.raises(ValueError, match="r must be"):
        decimate(np.ones(50), 1.5)
    with pytest.raises(ValueError, match="ftype"):
        decimate(np.ones(50), 2, "butter")
    assert_array_equal(decimate([1.0, 2.0], 1), [1.0, 2.0])


def test_bin_block_sums_and_means():
    y = np.arange(1, 11)
    assert_array_equal(bin(y, 3), [6, 15, 24])  # 1+2+3, 4+5+6, 7+8+9; 10 dropped
    assert_array_equal(bin(y, 3, "mean"), [2, 5, 8])
    assert_array_equal(bin(y, 3, remainder="keep"), [6, 15, 24, 10])
    assert_array_equal(bin(y, 3, "mean", remainder="keep"), [2, 5, 8, 10])
    assert_array_equal(bin(y, 5), np.asarray(y).reshape(-1, 5).sum(1))
    assert_array_equal(bin(y, 1), y)
    with pytest.raises(ValueError, match="fewer than one block"):
        bin([1.0, 2.0], 3)
    assert_array_equal(bin([1.0, 2.0], 3, remainder="keep"), [3.0])
    with pytest.raises(ValueError, match="how"):
        bin(y, 2, "max")
    with pytest.raises(ValueError, match="n must be"):
        bin(y, 0)


def test_bin_reduction_x_is_block_mean():
    x = np.array([0.0, 1.0, 3.0, 4.0, 6.0, 10.0, 11.0])
    red = Reduction.for_bin(x.size, 3)
    assert red.n_reduced == 2
    assert_allclose(red.positions, [1.0, 4.0])  # block centres k*n + (n-1)/2
    assert_allclose(red.reduce_x(x), [4 / 3, 20 / 3])  # mean(0,1,3), mean(4,6,10)
    assert red.source_slice(1) == slice(3, 6)
    keep = Reduction.for_bin(x.size, 3, remainder="keep")
    assert_allclose(keep.reduce_x(x), [4 / 3, 20 / 3, 11.0])
    assert_allclose(keep.positions, [1.0, 4.0, 6.0])
    assert_allclose(keep.index_to_original(1), 4.0)


def test_peak_found_on_binned_signal_maps_back():
    x = np.linspace(0, 10, 1000)
    y = np.exp(-(((x - 3.7) / 0.4) ** 2))
    red = Reduction.for_bin(x.size, 8)
    pk = findpeaks(bin(y, 8, "mean"), red.reduce_x(x), npeaks=1, sort="descend")
    assert abs(pk.locations[0] - 3.7) < 8 * (x[1] - x[0])
    orig = red.index_to_original(pk.indices)
    assert abs(x[round(orig[0])] - 3.7) < 8 * (x[1] - x[0])


# ======================================================================================
# findpeaks
# ======================================================================================


def test_findpeaks_hand_worked_prominence_and_halfprom_width():
    y = [0, 2, 6, 3, 4, 1, 0]
    pk = findpeaks(y)
    assert_array_equal(pk.indices, [2, 4])
    assert_array_equal(pk.heights, [6, 4])
    assert_array_equal(pk.locations, [2, 4])
    # peak 6: bases 0 (left end) and 0 (right end) -> prominence 6
    # peak 4: left base = lowest point before the higher peak 6 = 3; right base 0
    #         -> prominence 4 - max(3, 0) = 1
    assert_allclose(pk.prominences, [6, 1])
    # peak 6: level 3; left crossing between (1, 2) and (2, 6): 1 + (3-2)/(6-2) = 1.25;
    #         right crossing at sample 3 (y = 3 exactly) -> width 1.75
    # peak 4: level 3.5; left: 3 + (3.5-3)/(4-3) = 3.5; right: 5 - (3.5-1)/(4-1) = 4.1667
    assert_allclose(pk.widths, [1.75, 5 - 2.5 / 3 - 3.5], atol=1e-14)


def test_findpeaks_hand_worked_halfheight_width():
    y = [0, 2, 6, 3, 4, 1, 0]
    pk = findpeaks(y, width_reference="halfheight")
    # peak 6 at level 3: same crossings, right border = valley at 3 -> 1.75
    # peak 4 at level 2: the signal stays above 2 down to the valley (sample 3), where the
    # width is clamped; right: 5 - (2-1)/(4-1) = 4.6667 -> width 4.6667 - 3
    assert_allclose(pk.widths, [1.75, 5 - 1 / 3 - 3], atol=1e-14)
    assert_allclose(pk.prominences, [6, 1])


def test_findpeaks_halfheight_border_is_first_sample_of_flat_valley():
    # peaks 5 (sample 1) and 4 (sample 5) with a flat valley of 3s at samples 2..4.
    # MATLAB keeps the first sample of a flat run, so the valley (the border between the
    # two peaks) is sample 2. Half heights 2.5 and 2 are below the valley: both widths
    # are clamped at x = 2.
    # peak 5: left 0 + 2.5/5 = 0.5, right clamped at 2 -> 1.5
    # peak 4: left clamped at 2, right 6 - 2/4 = 5.5 -> 3.5; prominence 4 - 3 = 1
    pk = findpeaks([0, 5, 3, 3, 3, 4, 0], width_reference="halfheight")
    assert_allclose(pk.widths, [1.5, 3.5], atol=1e-14)
    assert_allclose(pk.prominences, [5, 1])


def test_findpeaks_gaussian_halfheight_width_is_fwhm():
    c = 1.3
    x = np.linspace(-10, 10, 2001)
    pk = findpeaks(np.exp(-((x / c) ** 2)), x, width_reference="halfheight")
    assert pk.widths[0] == pytest.approx(2 * math.sqrt(math.log(2)) * c, rel=1e-5)
    assert pk.widths[0] / c == pytest.approx(1.6651, abs=1e-4)
    assert pk.locations[0] == pytest.approx(0.0, abs=1e-12)
    # baseline 0.2: halfprom measures from the base (still the FWHM); halfheight from
    # zero, at level (1.2 + 0)/2 = 0.6, where exp(-(x/c)^2) = 0.4: x = c sqrt(ln 2.5)
    yb = np.exp(-((x / c) ** 2)) + 0.2
    assert findpeaks(yb, x).widths[0] == pytest.approx(1.6651 * c, rel=1e-4)
    hh = findpeaks(yb, x, width_reference="halfheight").widths[0]
    assert hh == pytest.approx(2 * c * math.sqrt(math.log(2.5)), rel=1e-5)


def test_findpeaks_flat_peak_takes_first_sample_and_endpoints_excluded():
    assert_array_equal(findpeaks([0, 1, 3, 3, 3, 1, 0]).indices, [2])
    assert len(findpeaks([5, 1, 5])) == 0
    assert len(findpeaks([5, 4, 3, 2])) == 0
    assert len(findpeaks([0, 1, 1, 2])) == 0  # a shelf, not a peak
    assert len(findpeaks([1.0, 2.0])) == 0  # fewer than 3 samples: no peaks
    with pytest.raises(InputError, match="empty"):
        findpeaks([])


def test_findpeaks_nan_is_not_a_peak():
    y = [0, 2, np.nan, 3, 1, 4, 0]
    pk = findpeaks(y)
    # 2 and 3 border the NaN: not peaks. Peak 4: left base = 1 (the NaN is a border),
    # prominence 3, level 2.5: 4 + 1.5/3 = 4.5 .. 6 - 2.5/4 = 5.375
    assert_array_equal(pk.indices, [5])
    assert_allclose(pk.prominences, [3.0])
    assert_allclose(pk.widths, [0.875])
    assert len(findpeaks([np.nan] * 5)) == 0


def test_findpeaks_infinite_peak():
    pk = findpeaks([0, 1, np.inf, 1, 0])
    assert_array_equal(pk.indices, [2])
    assert pk.heights[0] == np.inf and pk.prominences[0] == np.inf
    assert pk.widths[0] == 1.0  # from the midpoint 1.5 to the midpoint 2.5


def test_findpeaks_min_height_is_strict_and_halfheight_drops_negative_peaks():
    y = [0, 3, 0, 2, 0, -1, -5, 0]
    assert_array_equal(findpeaks(y, min_height=2).indices, [1])
    assert_array_equal(findpeaks([-5, -1, -5, 0, 2, 0]).indices, [1, 4])
    assert_array_equal(findpeaks([-5, -1, -5, 0, 2, 0], width_reference="halfheight").indices, [4])


def test_findpeaks_threshold():
    y = [0, 3, 2.5, 5, 0]
    # 3 - max(0, 2.5) = 0.5; 5 - max(2.5, 0) = 2.5
    assert_array_equal(findpeaks(y, threshold=1).indices, [3])
    assert_array_equal(findpeaks(y, threshold=0.5).indices, [1, 3])
    assert len(findpeaks([0, 1, 3, 3, 1, 0], threshold=0.1)) == 0  # flat top: 3 - 3 = 0


def test_findpeaks_min_prominence_and_width_filters():
    y = [0, 2, 6, 3, 4, 1, 0]
    assert_array_equal(findpeaks(y, min_prominence=1).indices, [2, 4])  # >= is kept
    assert_array_equal(findpeaks(y, min_prominence=1.5).indices, [2])
    assert_array_equal(findpeaks(y, min_width=1).indices, [2])  # widths 1.75, 0.667
    assert_array_equal(findpeaks(y, max_width=1).indices, [4])
    assert_array_equal(findpeaks(y, min_width=1.75, max_width=1.75).indices, [2])


def test_findpeaks_min_distance_greedy_from_tallest():
    y = [0, 5, 0, 3, 0, 0, 0, 4, 0]
    assert_array_equal(findpeaks(y, min_distance=2).indices, [1, 7])  # 3 is next to 5
    # the tallest goes first: 4 in the middle removes both 3s (left to right would keep
    # the first 3 and drop the 4)
    assert_array_equal(findpeaks([0, 3, 0, 4, 0, 3, 0], min_distance=2).indices, [3])
    # distance in x units, |dx| <= min_distance removes
    x = 0.5 * np.arange(9)
    assert_array_equal(findpeaks(y, x, min_distance=1.0).indices, [1, 7])
    assert_array_equal(findpeaks(y, x, min_distance=0.99).indices, [1, 3, 7])


def test_findpeaks_sort_then_npeaks():
    y = [0, 2, 0, 5, 0, 3, 0]
    assert_array_equal(findpeaks(y, npeaks=2).indices, [1, 3])  # by position
    pk = findpeaks(y, sort="descend", npeaks=2)
    assert_array_equal(pk.indices, [3, 5])
    assert_array_equal(pk.heights, [5, 3])
    assert_array_equal(findpeaks(y, sort="ascend").heights, [2, 3, 5])
    # equal heights keep their order (stable sort)
    assert_array_equal(findpeaks([0, 2, 0, 2, 0, 1, 0], sort="descend").indices, [1, 3, 5])


def test_findpeaks_x_units():
    y = np.array([0, 2, 6, 3, 4, 1, 0.0])
    x = 10 + 2 * np.arange(7)
    pk = findpeaks(y, x)
    assert_array_equal(pk.locations, [14, 18])
    assert_allclose(pk.widths, 2 * findpeaks(y).widths)
    assert_array_equal(pk.indices, [2, 4])


def test_findpeaks_prominence_matches_definition_on_random_signals():
    rng = np.random.default_rng(9)
    for _ in range(40):
        y = rng.integers(0, 8, 30).astype(float)  # plateaus and ties
        y[rng.integers(0, 30, 2)] = np.nan
        pk = findpeaks(y)
        for i, p in zip(pk.indices, pk.prominences):
            bases = []
            for step in (-1, 1):
                j, low = i, y[i]
                while 0 <= j + step < y.size and y[j + step] <= y[i]:  # stops at NaN
                    j += step
                    low = min(low, y[j])
                bases.append(low)
            assert p == y[i] - max(bases)


def test_findpeaks_bad_input():
    y = [0.0, 2.0, 6.0, 3.0, 4.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="increasing"):
        findpeaks(y, [0, 1, 2, 2, 4, 5, 6])
    with pytest.raises(ValueError, match="same length"):
        findpeaks(y, [0, 1, 2])
    with pytest.raises(ValueError, match="min_distance"):
        findpeaks(y, min_distance=6)  # must be < x[-1] - x[0], as MATLAB
    with pytest.raises(ValueError, match="min_prominence"):
        findpeaks(y, min_prominence=-1)
    with pytest.raises(ValueError, match="npeaks"):
        findpeaks(y, npeaks=0)
    with pytest.raises(ValueError, match="sort"):
        findpeaks(y, sort="up")
    with pytest.raises(ValueError, match="width_reference"):
        findpeaks(y, width_reference="fwhm")
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        findpeaks(np.zeros((2, 4)))


def test_peaks_is_frozen_and_read_only():
    pk = findpeaks([0, 2, 6, 3, 4, 1, 0])
    assert isinstance(pk, Peaks)
    assert len(pk) == 2
    assert pk.indices.dtype == np.intp
    with pytest.raises(dataclasses.FrozenInstanceError):
        pk.heights = np.zeros(2)  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        pk.heights[0] = 1.0
