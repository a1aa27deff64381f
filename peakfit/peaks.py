"""The table of peaks of a fit: centre, height, sigma, FWHM and area with standard errors.

:func:`peak_table` turns a :class:`~peakfit.result.GaussianFit` into a :class:`PeakTable`, one
row per Gaussian term, also available as ``result.peaks``. Every quantity is a function of the
term's ``(a, b, c)`` (MATLAB's ``a*exp(-((x-b)/c)^2)``):

==========  ===========================  ==========================================
column      value                        gradient with respect to ``(a, b, c)``
==========  ===========================  ==========================================
centre      ``b``                        ``(0, 1, 0)``
height      ``a``                        ``(1, 0, 0)``
sigma       ``c / sqrt(2)``              ``(0, 0, 1/sqrt(2))``
fwhm        ``2 sqrt(ln 2) c``           ``(0, 0, 2 sqrt(ln 2))``
area        ``a c sqrt(pi)``             ``(c sqrt(pi), 0, a sqrt(pi))``
==========  ===========================  ==========================================

Standard errors come from the coefficient covariance by the delta method,
``se(g) = sqrt(grad(g) Cov grad(g)ᵀ)`` (exact for the linear columns, first order for the
area). A coefficient held at a bound has no standard error (NaN), and its column's
``*_at_bound`` flag is set. With ``Normalize`` on, centres and widths are given in the
original x units.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import numpy as np

from .models import FWHM_PER_C

__all__ = ["PEAK_COLUMNS", "PeakTable", "peak_table"]

#: The value columns of a peak table, in order (each has a ``<name>_err`` column).
PEAK_COLUMNS = ("centre", "height", "sigma", "fwhm", "area")
_SQRT_PI = math.sqrt(math.pi)
_SQRT_HALF = math.sqrt(0.5)


class PeakTable:
    """One row per peak: values, standard errors and at-bound flags (columns of arrays).

    Columns: ``peak`` (1-based term number), ``centre, height, sigma, fwhm, area``, their
    standard errors ``centre_err, ...``, and ``height_at_bound, centre_at_bound,
    width_at_bound`` (the ``a``, ``b`` and ``c`` coefficient of the term is held at a bound).

    Examples
    --------
    >>> import numpy as np, peakfit
    >>> rng = np.random.default_rng(1)
    >>> x = np.linspace(0, 10, 201)
    >>> y = 3 * np.exp(-((x - 4) / 0.8) ** 2) + np.exp(-((x - 6.5) / 1.1) ** 2)
    >>> t = peakfit.fit_gaussians(x, y + 0.02 * rng.standard_normal(x.size), n=2).peaks
    >>> print(t.to_text(digits=4))  # doctest: +NORMALIZE_WHITESPACE
    peak centre centre_err height height_err  sigma sigma_err  fwhm fwhm_err  area area_err at_bound
       1      4   0.001232  2.999   0.005182 0.5651  0.001277 1.331 0.003007 4.248 0.008322        -
       2  6.497   0.004297 0.9949   0.004494 0.7794   0.00467 1.835    0.011 1.944 0.009594        -
    >>> t.to_dataframe().loc[2, "area"].round(4)
    np.float64(1.9438)
    """

    def __init__(self, columns: dict[str, np.ndarray]) -> None:
        self._cols = columns

    @property
    def columns(self) -> list[str]:
        """Column names in order."""
        return list(self._cols)

    def __len__(self) -> int:
        return int(self._cols["peak"].size)

    def __getitem__(self, key: str) -> np.ndarray:
        return self._cols[key]

    def __iter__(self) -> Any:
        return iter(self.to_records())

    def to_dict(self) -> dict[str, np.ndarray]:
        """The columns as a dict of 1-D NumPy arrays (copies)."""
        return {k: v.copy() for k, v in self._cols.items()}

    def to_records(self) -> list[dict[str, Any]]:
        """One plain-Python dict per peak (NaN kept as float NaN)."""
        out = []
        for i in range(len(self)):
            row: dict[str, Any] = {}
            for k, v in self._cols.items():
                x = v[i]
                row[k] = bool(x) if v.dtype == bool else (int(x) if k == "peak" else float(x))
            out.append(row)
        return out

    def to_dataframe(self) -> Any:
        """The table as a pandas ``DataFrame`` indexed by ``peak`` (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas is in the test extra
            raise ImportError('PeakTable.to_dataframe needs pandas: pip install "peakfit[io]"'
                              ) from exc
        return pd.DataFrame(self.to_dict()).set_index("peak")

    def to_json(self) -> str:
        """JSON list of rows; NaN is written as ``null``."""
        rows = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                 for k, v in r.items()} for r in self.to_records()]
        return json.dumps(rows)

    def to_csv(self) -> str:
        """CSV text with a header line; NaN written as ``nan``, flags as 0/1."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.columns)
        for r in self.to_records():
            w.writerow([int(v) if isinstance(v, bool) else (repr(v) if isinstance(v, float)
                        else v) for v in r.values()])
        return buf.getvalue()

    def to_text(self, digits: int = 6) -> str:
        """An aligned text table; ``at_bound`` lists the held coefficients (a, b, c)."""
        head = ["peak"]
        for c in PEAK_COLUMNS:
            head += [c, f"{c}_err"]
        head.append("at_bound")
        rows = []
        for r in self.to_records():
            cells = [str(r["peak"])]
            for c in PEAK_COLUMNS:
                cells += [_g(r[c], digits), _g(r[f"{c}_err"], digits)]
            held = "".join(s for s, f in (("a", "height_at_bound"), ("b", "centre_at_bound"),
                                          ("c", "width_at_bound")) if r[f])
            cells.append(held or "-")
            rows.append(cells)
        width = [max(len(h), *(len(r[j]) for r in rows)) if rows else len(h)
                 for j, h in enumerate(head)]
        lines = [" ".join(h.rjust(w) for h, w in zip(head, width))]
        lines += [" ".join(c.rjust(w) for c, w in zip(r, width)) for r in rows]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return f"<PeakTable: {len(self)} peaks>\n{self.to_text()}"


def _g(v: float, digits: int) -> str:
    if math.isnan(v):
        return "NaN"
    return f"{v:.{digits}g}"


def peak_table(result: Any) -> PeakTable:
    """The :class:`PeakTable` of a fit (also ``result.peaks``).

    Parameters
    ----------
    result : GaussianFit
        A fit from :func:`peakfit.fit_gaussians`, a batch row ``BatchFit[i]`` or
        :func:`peakfit.matlab.fit`.

    Returns
    -------
    PeakTable
        Rows in the order of the terms of ``result.p`` (ascending centre for
        :func:`peakfit.fit_gaussians`).

    Examples
    --------
    >>> import numpy as np, peakfit
    >>> rng = np.random.default_rng(0)
    >>> x = np.linspace(0, 10, 201)
    >>> y = 2 * np.exp(-((x - 5) / 1.0) ** 2) + 0.01 * rng.standard_normal(x.size)
    >>> r = peakfit.fit_gaussians(x, y, n=1)
    >>> t = peak_table(r)
    >>> bool(np.isclose(t["centre_err"][0], r.stderr[1]))  # se of b is the coefficient's
    True
    """
    n = result.model.n
    p = np.asarray(result.p, dtype=float)
    cov = np.asarray(result.covariance, dtype=float)
    active = np.asarray(result.output.activebounds, dtype=bool)
    if active.size != p.size:
        active = np.zeros(p.size, dtype=bool)
    mu, sd = (0.0, 1.0) if result.normalization is None else result.normalization
    cols: dict[str, np.ndarray] = {"peak": np.arange(1, n + 1, dtype=np.int64)}
    vals = {c: np.empty(n) for c in PEAK_COLUMNS}
    errs = {c: np.empty(n) for c in PEAK_COLUMNS}
    for i in range(n):
        a, b, c = p[3 * i : 3 * i + 3]
        S = cov[3 * i : 3 * i + 3, 3 * i : 3 * i + 3]
        # value and gradient wrt (a, b, c) in fitted units, then the x-unit scale of each
        grads = {
            "centre": (b * sd + mu, (0.0, sd, 0.0)),
            "height": (a, (1.0, 0.0, 0.0)),
            "sigma": (c * sd * _SQRT_HALF, (0.0, 0.0, sd * _SQRT_HALF)),
            "fwhm": (c * sd * FWHM_PER_C, (0.0, 0.0, sd * FWHM_PER_C)),
            "area": (a * c * sd * _SQRT_PI, (c * sd * _SQRT_PI, 0.0, a * sd * _SQRT_PI)),
        }
        for name, (v, g) in grads.items():
            gv = np.asarray(g)
            vals[name][i] = v
            used = gv != 0
            # a coefficient without a standard error (held at a bound) leaves none for g
            with np.errstate(invalid="ignore"):
                var = float(gv[used] @ S[np.ix_(used, used)] @ gv[used])
            errs[name][i] = math.sqrt(var) if var >= 0 else math.nan
    for name in PEAK_COLUMNS:
        cols[name] = vals[name]
        cols[f"{name}_err"] = errs[name]
    cols["height_at_bound"] = active[0 : 3 * n : 3].copy()
    cols["centre_at_bound"] = active[1 : 3 * n : 3].copy()
    cols["width_at_bound"] = active[2 : 3 * n : 3].copy()
    return PeakTable(cols)
