"""Diagnose a non-finite loss: which term of the loss, which input row, which operation.

A NaN at step 0 is rarely a learning-rate problem: ``log(0)``, ``0/0`` in a
normalisation, ``exp`` overflow, a zero width in ``(x - b)/c`` all produce it before
any step was taken. :func:`diagnose_loss` re-evaluates the loss term by term (the
problem's ``loss_terms(w, idx)`` generator yields each intermediate array with the
inputs it was computed from), stops at the first term holding a NaN or Inf, and
reports the term, the floating-point event NumPy signalled while computing it
(``divide by zero``, ``invalid value``, ``overflow``), the offending example rows
and their input values -- the idea of ``torch.autograd.detect_anomaly`` applied to
the forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .problems import to_numpy

__all__ = ["LossFault", "diagnose_loss"]

_EVENTS = {
    "divide by zero": "division by zero (x/0 or log(0))",
    "invalid value": "invalid operation (0/0, inf - inf, 0·inf, log or sqrt of a negative)",
    "overflow": "overflow (a value exceeded the dtype's largest finite number)",
    "underflow": "underflow",
}


@dataclass
class LossFault:
    """The first non-finite term of a loss, as found by :func:`diagnose_loss`.

    Attributes
    ----------
    term : str
        Name of the term (e.g. ``"log(μ)"``).
    events : list of str
        NumPy floating-point events raised while computing it (``"divide by zero"``,
        ``"invalid value"``, ``"overflow"``).
    rows : list of int
        Example rows (indices into the full data) where the term is non-finite;
        empty for a scalar term.
    n_nan, n_inf : int
        Counts of NaN and Inf in the term.
    inputs : dict
        Values of the term's inputs at the first offending rows (at most 5).
    dtype : str
        dtype of the term.
    """

    term: str
    events: list[str]
    rows: list[int]
    n_nan: int
    n_inf: int
    inputs: dict[str, list[float]] = field(default_factory=dict)
    dtype: str = ""

    def describe(self) -> str:
        """One sentence naming the term, the operation and the input rows.

        Examples
        --------
        >>> f = LossFault("log(μ)", ["divide by zero"], [3], 0, 1, {"μ": [0.0]})
        >>> f.describe()[:35]
        "term 'log(μ)' is non-finite (1 Inf)"
        >>> f.describe()[35:]
        ' after division by zero (x/0 or log(0)) at row(s) [3] where μ = [0.0]'
        """
        what = ", ".join(f"{v} {k}" for k, v in (("NaN", self.n_nan), ("Inf", self.n_inf)) if v)
        ev = " and ".join(_EVENTS.get(e, e) for e in self.events) or "a non-finite input"
        msg = f"term '{self.term}' is non-finite ({what}) after {ev}"
        if self.rows:
            more = f" (+{len(self.rows) - 10} more)" if len(self.rows) > 10 else ""
            msg += f" at row(s) {self.rows[:10]}{more}"
        if self.inputs:
            msg += " where " + ", ".join(f"{k} = {v}" for k, v in self.inputs.items())
        return msg


def _short(v: Any) -> list[float]:
    a = to_numpy(v).ravel()
    return [float(f"{x:.6g}") for x in a[:5]]


def diagnose_loss(problem: Any, w: Any, idx: Any = None) -> LossFault | None:
    """Evaluate ``problem.loss_terms(w, idx)`` and return the first non-finite term.

    Parameters
    ----------
    problem
        Any problem with a ``loss_terms(w, idx)`` generator yielding
        ``(name, array, inputs)`` in the order of computation (``inputs``: a dict of
        per-example arrays, same length as ``array``, or scalars).
    w : array
        Parameters.
    idx : int array, optional
        Batch rows (all when None).

    Returns
    -------
    LossFault or None
        None when every term is finite or the problem has no ``loss_terms``.

    Examples
    --------
    >>> import numpy as np
    >>> from peakfit.gd import PoissonRegression
    >>> p = PoissonRegression(np.ones((3, 1)), np.array([1.0, 0.0, 2.0]))
    >>> diagnose_loss(p, np.zeros(1)).term
    'log(μ)'
    """
    terms = getattr(problem, "loss_terms", None)
    if terms is None:
        return None
    events: list[str] = []

    def record(kind: str, _flag: int) -> None:
        if kind not in events:
            events.append(kind)

    rows_all = None if idx is None else to_numpy(idx).astype(np.int64)
    old_call = np.seterrcall(record)
    try:
        with np.errstate(all="call", under="ignore"):
            gen = terms(w, idx)
            while True:
                events.clear()
                try:
                    name, value, inputs = next(gen)
                except StopIteration:
                    return None
                arr = to_numpy(value)
                fin = np.isfinite(arr)
                if fin.all():
                    continue
                bad = np.flatnonzero(~fin.reshape(len(arr), -1).all(axis=1)) if arr.ndim else []
                rows = (
                    [int(r) for r in (bad if rows_all is None else rows_all[bad])]
                    if arr.ndim
                    else []
                )
                shown = {}
                for k, v in inputs.items():
                    va = to_numpy(v)
                    shown[k] = _short(va[bad[:5]] if va.ndim and len(bad) else va)
                return LossFault(
                    term=name,
                    events=list(events),
                    rows=rows,
                    n_nan=int(np.isnan(arr).sum()),
                    n_inf=int(np.isinf(arr).sum()),
                    inputs=shown,
                    dtype=str(arr.dtype),
                )
    finally:
        np.seterrcall(old_call)
