"""Figures of fits: data, total fit, each Gaussian component, baseline and residuals.

matplotlib is optional (``pip install "peakfit[plot]"``) and imported only when a function here
is called. Nothing here selects a backend; scripts without a display should call
``matplotlib.use("Agg")`` first (the ``peakfit plot`` command does).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .result import GaussianFit

__all__ = ["plot_batch_summary", "plot_fit"]

_PLOT_EXTRA = 'pip install "peakfit[plot]"'


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(f"plotting needs matplotlib; install it with: {_PLOT_EXTRA}") from exc
    return plt


def _grid(result: GaussianFit, points: int) -> np.ndarray:
    x = np.asarray(result.x, dtype=float)
    lo, hi = float(np.min(x)), float(np.max(x))
    return np.linspace(lo, hi, max(points, 2 * x.size))


def plot_fit(
    result: GaussianFit,
    ax: Any = None,
    *,
    components: bool = True,
    residuals: bool = True,
    title: str | None = None,
    points: int = 1000,
) -> Any:
    """Plot a fit: data, total fit, each component (and baseline), residuals below.

    Parameters
    ----------
    result : GaussianFit
        The fit (its ``x``/``y`` are the points used in the fit).
    ax : matplotlib Axes, optional
        Draw the data and fit into this axes. Without one a new figure is made, with a
        residual panel underneath when ``residuals`` is true. With an ``ax`` the residuals are
        not drawn (there is no room for them).
    components : bool
        Draw each Gaussian term on top of the baseline (if any) as a filled band with a
        dashed outline, in its own colour, above the total fit line so that a component that
        coincides with the total stays visible; the baseline is dotted.
    residuals : bool
        Add a residual panel (``y - f(x)``) below the main axes (only without ``ax``).
    title : str, optional
        Figure title; default names the model, the SSE and R².
    points : int
        Number of points of the smooth curves (at least twice the data's).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ImportError
        If matplotlib is missing (the message gives the ``pip install`` command).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np, peakfit
    >>> x = np.linspace(0, 10, 201)
    >>> y = 3 * np.exp(-((x - 4) / 0.8) ** 2) + np.exp(-((x - 6.5) / 1.1) ** 2)
    >>> fig = peakfit.fit_gaussians(x, y, n=2).plot()
    >>> len(fig.axes), len(fig.axes[0].collections)  # main and residual panels; 2 bands
    (2, 2)
    """
    plt = _pyplot()
    x = np.asarray(result.x, dtype=float)
    y = np.asarray(result.y, dtype=float)
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    xf = _grid(result, points)
    if ax is None:
        if residuals:
            fig, (ax_main, ax_res) = plt.subplots(
                2, 1, sharex=True, figsize=(8, 6),
                gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05},
            )
        else:
            fig, ax_main = plt.subplots(figsize=(8, 4.5))
            ax_res = None
    else:
        ax_main, ax_res = ax, None
        fig = ax.figure
    ax_main.plot(xs, ys, ".", ms=3, color="0.45", label="data", zorder=1)
    ax_main.plot(xf, result(xf), "-", color="k", lw=1.2, label="fit", zorder=3)
    if components:
        has_baseline = result.model.baseline != "none"
        base = result.baseline_values(xf) if has_baseline else np.zeros_like(xf)
        for i in range(result.n):
            colour = f"C{i % 10}"
            ci = result.component(i, xf) + base
            # each peak is a filled band over the baseline with its outline above the fit
            # line, so it stays visible where it coincides with the total (NIST Gauss1)
            ax_main.fill_between(xf, base, ci, color=colour, alpha=0.25, lw=0, zorder=2)
            ax_main.plot(xf, ci, "--", color=colour, lw=1.5, zorder=4,
                         label=f"peak {i + 1}: b={result.b[i]:.4g}")
        if has_baseline:
            ax_main.plot(xf, base, ":", color="0.2", lw=1.5, label="baseline", zorder=4)
    ax_main.set_ylabel("y")
    ax_main.legend(fontsize="small", loc="best")
    if title is None:
        title = (f"{result.model.matlab_name}: SSE {result.gof.sse:.4g}, "
                 f"R² {result.gof.rsquare:.4g}")
    ax_main.set_title(title)
    if ax_res is not None:
        r = ys - result(xs)
        ax_res.axhline(0.0, color="k", lw=0.8)
        ax_res.plot(xs, r, ".", ms=3, color="C0")
        ax_res.set_ylabel("residual")
        ax_res.set_xlabel("x")
    else:
        ax_main.set_xlabel("x")
    return fig


def plot_batch_summary(batch: Any, ax: Any = None, *, bins: int = 50) -> Any:
    """Histogram of the fitted peak centres of a batch, one colour per peak.

    Parameters
    ----------
    batch : BatchFit or mapping
        A result of :func:`peakfit.fit_gaussians_batch` (its ``means``, ``(k, n)``) or a table
        with columns ``mean1``, ``mean2``, ... (as written by ``peakfit batch``).
    ax : matplotlib Axes, optional
        Where to draw; default a new figure.
    bins : int
        Histogram bins.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> fig = plot_batch_summary({"mean1": [1.0, 1.1], "mean2": [3.0, 2.9]})
    >>> len(fig.axes[0].patches) > 0
    True
    """
    plt = _pyplot()
    if hasattr(batch, "means"):
        means = np.asarray(batch.means, dtype=float)
    else:
        cols = sorted((c for c in batch if str(c).startswith("mean") and str(c)[4:].isdigit()),
                      key=lambda c: int(str(c)[4:]))
        means = np.column_stack([np.asarray(batch[c], dtype=float) for c in cols])
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 4))
    else:
        fig = ax.figure
    for i in range(means.shape[1]):
        v = means[:, i]
        v = v[np.isfinite(v)]
        ax.hist(v, bins=bins, alpha=0.6, label=f"mean{i + 1} (median {np.median(v):.4g})"
                if v.size else f"mean{i + 1}")
    ax.set_xlabel("peak centre")
    ax.set_ylabel("spectra")
    ax.set_title(f"{means.shape[0]} spectra")
    ax.legend(fontsize="small")
    return fig
