"""Saturating activations in low precision: gradients that are exactly zero.

``tanh`` and ``sigmoid`` flatten out: their outputs round to exactly ``±1`` (``1``)
once ``|z|`` is large enough, and the derivative computed from the rounded output --
``1 - y²`` or ``y(1 - y)``, as autograd does -- is then exactly 0. In float16 this
happens early: ``tanh`` beyond ``|z| ≈ 4.5`` and ``sigmoid`` beyond ``z ≈ 8.3``
(float32: 9.0 and 17.3; :func:`saturation_threshold` measures them). A hidden unit
whose pre-activation is past that point on every example receives no gradient and
stops learning.

:func:`saturation_study` trains the same one-hidden-layer network
``ŷ = v·act(W x + b) + c`` in several precisions and shows what helps: loss scaling
multiplies a zero by ``2¹⁶`` and does not; float32 master weights keep the tiny
updates of nearly saturated units that float16 weights round away; a non-saturating
activation or no activation removes the zero derivative. The network also carries
a parameter that is not on the loss path (``"unused"``): it gets no gradient, and the
optimizers and the loss scaler skip it as PyTorch skips ``p.grad is None`` (no weight
decay, no momentum, no step count).

Activations are computed in float32 and rounded to the working dtype, like PyTorch's
half-precision CPU kernels.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .optim import SGD, GradScaler, Optimizer

__all__ = ["SaturationStudy", "TwoLayerNet", "saturation_study", "saturation_threshold"]

_ACTS = ("tanh", "sigmoid", "softsign", "identity")


def _act(name: str, z: np.ndarray) -> np.ndarray:
    z32 = z.astype(np.float32)
    if name == "tanh":
        y = np.tanh(z32)
    elif name == "sigmoid":
        with np.errstate(over="ignore"):
            y = 1.0 / (1.0 + np.exp(-z32))
    elif name == "softsign":
        y = z32 / (1.0 + np.abs(z32))
    else:
        y = z32
    return y.astype(z.dtype)


def _dact(name: str, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Derivative from the (rounded) output, as autograd's backward formulas."""
    y32 = y.astype(np.float32)
    if name == "tanh":
        d = 1.0 - y32 * y32
    elif name == "sigmoid":
        d = y32 * (1.0 - y32)
    elif name == "softsign":
        d = 1.0 / (1.0 + np.abs(z.astype(np.float32))) ** 2
    else:
        d = np.ones_like(y32)
    return d.astype(y.dtype)


def saturation_threshold(activation: str, dtype: Any) -> float:
    """Smallest ``z > 0`` of ``dtype`` at which the activation's derivative is exactly 0.

    Scans every representable positive value of ``dtype`` up to 64 (float16) or a
    fine grid (float32). ``inf`` if none (``softsign``, ``identity``).

    Examples
    --------
    >>> import numpy as np
    >>> saturation_threshold("sigmoid", np.float16)
    8.3203125
    >>> saturation_threshold("tanh", np.float16)
    4.5078125
    """
    if activation not in _ACTS:
        raise ValueError(f"activation must be one of {_ACTS}, got {activation!r}")
    dt = np.dtype(dtype)
    if dt == np.float16:
        z = np.arange(0x0000, 0x5400, dtype=np.uint16).view(np.float16)  # 0 .. 64
    else:
        z = np.linspace(0.0, 64.0, 2_000_001).astype(dt)
    d = _dact(activation, z, _act(activation, z))
    zero = np.flatnonzero(d == 0)
    return float(z[zero[0]]) if len(zero) else float("inf")


class TwoLayerNet:
    """``ŷ = v·act(W x + b) + c`` with half-MSE loss, forward and backward in one dtype.

    Parameters are a dict of arrays ``W`` (H, d), ``b`` (H,), ``v`` (H,), ``c`` (1,)
    and ``unused`` (H,), a head not on the loss path whose gradient is ``None``.

    Examples
    --------
    >>> import numpy as np
    >>> net = TwoLayerNet(np.ones((2, 1)), np.zeros(2), "tanh")
    >>> p = {"W": np.zeros((1, 1)), "b": np.zeros(1), "v": np.ones(1), "c": np.zeros(1),
    ...      "unused": np.zeros(1)}
    >>> loss, g = net.loss_and_grads(p)
    >>> loss, g["unused"] is None, g["c"].tolist()
    (0.0, True, [0.0])
    """

    def __init__(self, X: Any, y: Any, activation: str = "tanh") -> None:
        if activation not in _ACTS:
            raise ValueError(f"activation must be one of {_ACTS}, got {activation!r}")
        self.X = np.asarray(X)
        self.y = np.asarray(y)
        if self.X.ndim != 2 or self.y.shape != (self.X.shape[0],):
            raise ValueError(f"X must be (N, d) and y (N,), got {self.X.shape} and {self.y.shape}")
        self.activation = activation

    def forward(self, p: dict[str, Any], dtype: Any) -> tuple[Any, Any, Any]:
        """Pre-activations, activations and predictions in ``dtype``."""
        dt = np.dtype(dtype)
        X = self.X.astype(dt)
        z = X @ p["W"].astype(dt).T + p["b"].astype(dt)
        a = _act(self.activation, z)
        return z, a, a @ p["v"].astype(dt) + p["c"].astype(dt)[0]

    def loss_and_grads(
        self, p: dict[str, Any], dtype: Any = np.float64, loss_scale: float = 1.0
    ) -> tuple[float, dict[str, Any]]:
        """Loss (float64 of the ``dtype`` residuals) and gradients of ``loss_scale·L``."""
        dt = np.dtype(dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            z, a, yhat = self.forward(p, dt)
            r = yhat - self.y.astype(dt)
            loss = 0.5 * float(np.mean(r.astype(np.float64) ** 2))
            dy = r * dt.type(loss_scale / len(r))
            dz = (dy[:, None] * p["v"].astype(dt)[None, :]) * _dact(self.activation, z, a)
            grads = {
                "W": dz.T @ self.X.astype(dt),
                "b": dz.sum(axis=0),
                "v": a.T @ dy,
                "c": np.asarray([dy.sum()], dtype=dt),
                "unused": None,  # not on the loss path: no gradient at all
            }
        return loss, grads

    def dead_units(self, p: dict[str, Any], dtype: Any) -> np.ndarray:
        """Boolean mask of hidden units whose derivative is exactly 0 on every example."""
        z, a, _ = self.forward(p, dtype)
        return (_dact(self.activation, z, a) == 0).all(axis=0)


@dataclass
class SaturationStudy:
    """Result of :func:`saturation_study`.

    Attributes
    ----------
    loss : dict
        Per variant, the float64 loss of the (master) weights before and after each step.
    dead_start, dead_end : dict
        Per variant, hidden units with an exactly-zero derivative on every example.
    frozen : dict
        Per variant, hidden units whose incoming weights and bias never changed.
    skipped : dict
        Steps skipped by the loss scaler (variants with one).
    unused_unchanged : dict
        Per variant, whether the no-gradient parameter is bit-identical at the end.
    thresholds : dict
        ``{activation: {dtype: z}}`` from :func:`saturation_threshold`.
    hidden : int
    """

    loss: dict[str, np.ndarray]
    dead_start: dict[str, int]
    dead_end: dict[str, int]
    frozen: dict[str, int]
    skipped: dict[str, int]
    unused_unchanged: dict[str, bool]
    thresholds: dict[str, dict[str, float]]
    hidden: int
    variants: dict[str, str] = field(default_factory=dict)


#: name -> (activation, compute dtype, master dtype, loss scaling, lr multiplier)
VARIANTS: dict[str, tuple[str, str, str, bool, float]] = {
    "fp32": ("tanh", "float32", "float32", False, 1.0),
    "fp16": ("tanh", "float16", "float16", False, 1.0),
    "fp16 + loss scaling": ("tanh", "float16", "float16", True, 1.0),
    "fp16 + fp32 master weights": ("tanh", "float16", "float32", False, 1.0),
    "fp16, softsign": ("softsign", "float16", "float16", False, 1.0),
    # without an activation the biases (up to 12) enter the output directly: the
    # Hessian is ~100x sharper, so the lr is divided by 100 to stay stable
    "fp16, no activation": ("identity", "float16", "float16", False, 0.01),
}


def _train_variant(
    X: np.ndarray,
    y: np.ndarray,
    p0: dict[str, np.ndarray],
    spec: tuple[str, str, str, bool, float],
    opt_template: Optimizer,
    steps: int,
) -> tuple[np.ndarray, int, int, int, int, bool]:
    act, compute, master, scaled, lr_mult = spec
    net = TwoLayerNet(X, y, act)
    eval_net = TwoLayerNet(X, y, act)
    p = {k: v.astype(master) for k, v in p0.items()}
    init = {k: v.copy() for k, v in p.items()}
    opts = {k: copy.deepcopy(opt_template) for k in p}
    for o in opts.values():
        o.lr = o.lr * lr_mult
    # weight decay on the parameter without gradient: it must still not move
    opts["unused"] = SGD(lr=opt_template.lr, momentum=0.9, weight_decay=0.1)
    scaler = GradScaler() if scaled else None
    dead0 = int(net.dead_units(p, compute).sum())
    losses = [eval_net.loss_and_grads(p, np.float64)[0]]
    skipped = 0
    for _ in range(steps):
        scale = scaler.scale if scaler else 1.0
        _, g = net.loss_and_grads(p, compute, loss_scale=scale)
        if scaler:
            un = {k: scaler.unscale(v, p[k].dtype) for k, v in g.items()}
            bad = any(found for _, found in un.values())
            if not bad:
                for k, (gk, _) in un.items():
                    opts[k].step(p[k], gk)  # gk None: skipped, as torch skips p.grad None
            scaler.update(bad)
            skipped += int(bad)
        else:
            for k, gk in g.items():
                opts[k].step(p[k], None if gk is None else gk.astype(p[k].dtype))
        losses.append(eval_net.loss_and_grads(p, np.float64)[0])
    dead1 = int(net.dead_units(p, compute).sum())
    frozen = int(((p["W"] == init["W"]).all(axis=1) & (p["b"] == init["b"])).sum())
    unused_ok = bool((p["unused"] == init["unused"]).all()) and opts["unused"].t == 0
    return np.array(losses), dead0, dead1, frozen, skipped, unused_ok


def saturation_study(
    n: int = 512,
    d: int = 4,
    hidden: int = 32,
    *,
    steps: int = 300,
    lr: float = 0.05,
    seed: int = 0,
    bias_range: tuple[float, float] = (0.0, 12.0),
) -> SaturationStudy:
    """Train one network in float32, float16 and the float16 remedies; count dead units.

    The hidden biases are spread evenly over ``bias_range`` (small input weights), so
    units range from linear to deep in saturation: in float16 every unit with a bias
    beyond ≈ 4.5 + |W x| has an exactly-zero tanh derivative; in float32 only those
    beyond ≈ 10. SGD with momentum 0.9; the ``unused`` head has its own SGD with weight
    decay 0.1, which would shrink it if the no-gradient step were not skipped.

    Examples
    --------
    >>> st = saturation_study(n=128, hidden=16, steps=20)
    >>> st.dead_start["fp16"] > st.dead_start["fp32"], st.unused_unchanged["fp16"]
    (True, True)
    >>> st.dead_end["fp16 + loss scaling"] == st.dead_end["fp16"]
    True
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    teacher_W = rng.standard_normal((8, d))
    y = np.tanh(X @ teacher_W.T) @ rng.standard_normal(8) / 4
    p0 = {
        "W": 0.1 * rng.standard_normal((hidden, d)),
        "b": np.linspace(bias_range[0], bias_range[1], hidden),
        "v": rng.standard_normal(hidden) / np.sqrt(hidden),
        "c": np.zeros(1),
        "unused": rng.standard_normal(hidden),
    }
    opt = SGD(lr=lr, momentum=0.9)
    res: dict[str, Any] = {k: {} for k in ("loss", "d0", "d1", "fr", "sk", "un")}
    for name, spec in VARIANTS.items():
        curve, d0, d1, fr, sk, un = _train_variant(X, y, p0, spec, opt, steps)
        for key, val in zip(("loss", "d0", "d1", "fr", "sk", "un"), (curve, d0, d1, fr, sk, un)):
            res[key][name] = val
    thresholds = {
        a: {t: saturation_threshold(a, np.dtype(t)) for t in ("float16", "float32")}
        for a in ("tanh", "sigmoid")
    }
    return SaturationStudy(
        loss=res["loss"],
        dead_start=res["d0"],
        dead_end=res["d1"],
        frozen=res["fr"],
        skipped=res["sk"],
        unused_unchanged=res["un"],
        thresholds=thresholds,
        hidden=hidden,
        variants={
            k: f"{v[0]}, compute {v[1]}, weights {v[2]}"
            + (", GradScaler" if v[3] else "")
            + (f", lr × {v[4]:g}" if v[4] != 1 else "")
            for k, v in VARIANTS.items()
        },
    )
