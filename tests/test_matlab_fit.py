"""peakfit.matlab.fit runs MATLAB's algorithm: separable (variable projection) when every height
is unbounded, all 3n coefficients when a height is bounded, trust region, MATLAB's start."""

from __future__ import annotations

import numpy as np
import pytest

import peakfit
from peakfit import matlab


def _data() -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(0.0, 100.0, 300)
    y = 3.0 * np.exp(-(((x - 40.0) / 8.0) ** 2)) + 2.0 * np.exp(-(((x - 55.0) / 10.0) ** 2))
    return x, y + 0.05 * np.random.default_rng(1).standard_normal(x.size)


def test_unbounded_heights_run_variable_projection():
    x, y = _data()
    f, gof, out = matlab.fit(x, y, "gauss2")
    vp = peakfit.fit_gaussians(x, y, 2, start="matlab", sort=False, method="vp")
    full = peakfit.fit_gaussians(x, y, 2, start="matlab", sort=False, method="full")
    assert f.p.tolist() == vp.p.tolist()  # the same algorithm, bit for bit
    assert out.iterations == vp.output.iterations
    assert f.p.tolist() != full.p.tolist()  # not the full solver: another path...
    # ... to the same minimum, at MATLAB's default tolerances (TolFun = TolX = 1e-6)
    np.testing.assert_allclose(f.p, full.p, rtol=1e-6)
    assert gof.sse == pytest.approx(full.gof.sse, rel=1e-9)
    assert out.algorithm == "trust-region-reflective"


def test_bounded_heights_run_the_full_solver():
    x, y = _data()
    lower = [0.0, -np.inf, 0.0] * 2
    f, _, _ = matlab.fit(x, y, "gauss2", Lower=lower)
    full = peakfit.fit_gaussians(x, y, 2, start="matlab", sort=False, method="full",
                                 Lower=lower)
    assert f.p.tolist() == full.p.tolist()


def test_tight_tolerances_reach_the_same_optimum():
    x, y = _data()
    f, gof, _ = matlab.fit(x, y, "gauss2", TolFun=1e-12, TolX=1e-12)
    full = peakfit.fit_gaussians(x, y, 2, start="matlab", sort=False, method="full",
                                 TolFun=1e-12, TolX=1e-12)
    np.testing.assert_allclose(f.p, full.p, rtol=1e-8)
    assert gof.sse == pytest.approx(full.gof.sse, rel=1e-12)
