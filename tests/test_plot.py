"""Figures of fits (matplotlib, Agg backend)."""

from __future__ import annotations

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

import peakfit  # noqa: E402
from peakfit.io import load_spectra  # noqa: E402
from peakfit.plot import plot_batch_summary, plot_fit  # noqa: E402

X = np.linspace(0, 20, 300)
TRUE = [3.0, 6.0, 1.5, 2.0, 12.0, 2.5]


@pytest.fixture()
def fit2():
    y = peakfit.GaussianModel(2)(X, np.array(TRUE)) + 0.01 * np.sin(9 * X)
    r = peakfit.fit_gaussians(X, y, 2)
    yield r
    plt.close("all")


def test_plot_fit_draws_data_fit_components_and_residuals(fit2):
    fig = fit2.plot()
    main, res = fig.axes
    labels = [ln.get_label() for ln in main.get_lines()]
    assert labels == ["data", "fit", f"peak 1: b={fit2.b[0]:.4g}", f"peak 2: b={fit2.b[1]:.4g}"]
    data, total, c1, c2 = main.get_lines()
    np.testing.assert_array_equal(data.get_xdata(), X)
    xf = total.get_xdata()
    assert xf.size == 1000 and xf[0] == X[0] and xf[-1] == X[-1]
    np.testing.assert_allclose(total.get_ydata(), fit2(xf))
    np.testing.assert_allclose(c1.get_ydata() + c2.get_ydata(), fit2(xf), atol=1e-12)
    # residual panel: zero line + residuals y - f
    zero, resid = res.get_lines()
    assert set(np.asarray(zero.get_ydata()).tolist()) == {0.0}
    np.testing.assert_allclose(resid.get_ydata(), fit2.y - fit2(X))
    assert res.get_ylabel() == "residual" and res.get_xlabel() == "x"
    assert main.get_title().startswith("Gauss2: SSE ")


def test_plot_fit_into_given_axes_without_residuals_and_with_baseline():
    y = peakfit.GaussianModel(1, "linear")(X, np.array([2.0, 10.0, 2.0, 0.5, 0.1]))
    r = peakfit.fit_gaussians(X, y + 0.01 * np.cos(5 * X), 1, baseline="linear")
    fig, ax = plt.subplots()
    out = plot_fit(r, ax=ax, title="mine")
    assert out is fig and len(fig.axes) == 1
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert labels == ["data", "fit", f"peak 1: b={r.b[0]:.4g}", "baseline"]
    peak, base = ax.get_lines()[2:]
    xf = base.get_xdata()
    np.testing.assert_allclose(base.get_ydata(), r.p[3] + r.p[4] * xf, rtol=1e-12)
    np.testing.assert_allclose(peak.get_ydata(), r(xf), rtol=1e-12)  # peak drawn on baseline
    assert ax.get_title() == "mine"
    fig2 = plot_fit(r, components=False, residuals=False)
    assert len(fig2.axes) == 1 and len(fig2.axes[0].get_lines()) == 2
    plt.close("all")


def test_plot_fit_writes_a_png(tmp_path, fit2):
    fig = plot_fit(fit2)
    path = tmp_path / "fit.png"
    fig.savefig(path, dpi=60)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_batch_summary_from_a_table():
    table = {"mean2": [5.0, 5.2, 5.1], "mean1": [1.0, 1.1, np.nan], "sse": [1, 2, 3]}
    fig = plot_batch_summary(table, bins=5)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "mean1 (median 1.05)", "mean2 (median 5.1)"]
    heights = [p.get_height() for p in ax.patches]
    assert sum(heights) == 5  # 2 finite mean1 + 3 mean2
    assert ax.get_title() == "3 spectra"
    plt.close("all")


def test_missing_matplotlib_message(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    r = peakfit.fit_gaussians(X, np.exp(-((X - 5) / 2) ** 2), 1)
    with pytest.raises(ImportError, match=r'pip install "peakfit\[plot\]"'):
        r.plot()


# ------------------------------------------------------------------ issue #14: NIST Gauss1


@pytest.fixture(scope="module")
def gauss1(shared_data):
    s = load_spectra(shared_data / "nist_strd" / "Gauss1.dat")
    return peakfit.fit_gaussians(s.x, s.Y[0], 2, baseline="exponential")


def _lines(ax, prefix):
    return [ln for ln in ax.get_lines() if str(ln.get_label()).startswith(prefix)]


def test_components_are_drawn_above_the_fit_with_their_bands(gauss1):
    fig = gauss1.plot()
    try:
        ax, ax_res = fig.axes
        (fit,) = _lines(ax, "fit")
        peaks = _lines(ax, "peak")
        (base,) = _lines(ax, "baseline")
        assert len(peaks) == 2 and len(ax.collections) == 2  # a line and a band per peak
        xf = fit.get_xdata()
        b = gauss1.baseline_values(xf)
        for i, ln in enumerate(peaks):
            assert ln.get_zorder() > fit.get_zorder()
            np.testing.assert_allclose(ln.get_ydata(), gauss1.component(i, xf) + b, rtol=1e-12)
            assert to_rgb(ln.get_color()) != to_rgb(fit.get_color())
        assert base.get_zorder() > fit.get_zorder()
        np.testing.assert_allclose(base.get_ydata(), b, rtol=1e-12)
        # residual panel: y - f at the data, exactly
        (res,) = [ln for ln in ax_res.get_lines() if ln.get_linestyle() == "None"]
        order = np.argsort(gauss1.x)
        np.testing.assert_array_equal(res.get_ydata(),
                                      gauss1.y[order] - gauss1(gauss1.x[order]))
    finally:
        plt.close(fig)


def test_component_colour_shows_at_each_peak_top(gauss1):
    """Rendered pixels: at the top of each peak, where component and fit coincide, the
    component's colour is what is seen (before the fix, the fit line covered it)."""
    fig = gauss1.plot()
    try:
        fig.canvas.draw()
        img = np.asarray(fig.canvas.buffer_rgba())[:, :, :3].astype(float) / 255
        ax = fig.axes[0]
        h = img.shape[0]
        for i, ln in enumerate(_lines(ax, "peak")):
            xd, yd = ln.get_xdata(), ln.get_ydata()
            j = int(np.argmax(yd))
            px, py = ax.transData.transform((xd[j], yd[j]))
            row, col = round(float(h - py)), round(float(px))
            patch = img[row - 2 : row + 3, col - 4 : col + 5].reshape(-1, 3)
            want = np.array(to_rgb(ln.get_color()))
            dist = np.linalg.norm(patch - want, axis=1)
            assert dist.min() < 0.15, f"peak {i + 1} colour not visible at its top"
    finally:
        plt.close(fig)


def test_into_given_axes_has_no_residual_panel(gauss1):
    fig, ax = plt.subplots()
    try:
        assert gauss1.plot(ax=ax) is fig and len(fig.axes) == 1
        assert len(_lines(ax, "peak")) == 2
        fig2 = gauss1.plot(components=False, residuals=False)
        assert len(fig2.axes) == 1 and not _lines(fig2.axes[0], "peak")
        assert not fig2.axes[0].collections
        plt.close(fig2)
    finally:
        plt.close(fig)
