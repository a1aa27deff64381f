"""Optimizers with PyTorch's exact update rules, on NumPy (or CuPy) arrays.

* :class:`SGD` -- ``torch.optim.SGD``: momentum, dampening, Nesterov, ``weight_decay``
  as an L2 term added to the gradient (and, as an extension, a decoupled variant).
* :class:`Adam` -- ``torch.optim.Adam`` (``weight_decay`` = L2 added to the gradient,
  ``amsgrad``, ``decoupled_weight_decay``).
* :class:`AdamW` -- ``torch.optim.AdamW``: ``w <- w * (1 - lr * weight_decay)`` first,
  then the Adam step on the raw gradient; default ``weight_decay=1e-2``.
* :class:`GradScaler` -- dynamic loss scaling with ``torch.amp.GradScaler`` defaults.

All optimizers update the parameter array **in place** and return it. Passing
``rows=`` to :meth:`Optimizer.step` gives an embedding-style sparse gradient; with
``lazy=True`` only those rows (and their optimizer state) are touched, as in
TensorFlow's ``SparseApplyMomentum`` / ``LazyAdam`` and ``torch.optim.SparseAdam``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .problems import array_module

__all__ = ["SGD", "Adam", "AdamW", "GradScaler", "Optimizer", "coalesce", "sgd_stability_factor"]


def _check_real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _check_lr(lr: Any) -> float:
    lr = _check_real("lr", lr)
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    return lr


def _scatter_add(out: Any, rows: Any, vals: Any) -> None:
    """``out[rows] += vals`` with repeated rows accumulated (not last-write-wins)."""
    xp = array_module(out, vals)
    if xp is np:
        np.add.at(out, rows, vals)
    else:  # pragma: no cover - CuPy path
        xp.add.at(out, rows, vals)


def coalesce(rows: Any, vals: Any) -> tuple[Any, Any]:
    """Sum the values of repeated rows, like ``torch.Tensor.coalesce`` (rows come out sorted).

    Examples
    --------
    >>> import numpy as np
    >>> r, v = coalesce(np.array([3, 1, 3]), np.array([[1.0], [2.0], [4.0]]))
    >>> r.tolist(), v.tolist()
    ([1, 3], [[2.0], [5.0]])
    """
    xp = array_module(rows, vals)
    rows = xp.asarray(rows)
    uniq, inv = xp.unique(rows, return_inverse=True)
    if len(uniq) == len(rows):
        order = xp.argsort(rows)
        return rows[order], vals[order]
    out = xp.zeros((len(uniq), *vals.shape[1:]), dtype=vals.dtype)
    _scatter_add(out, inv.reshape(-1), vals)
    return uniq, out


def sgd_stability_factor(
    momentum: float = 0.0, *, nesterov: bool = False, dampening: float = 0.0
) -> float:
    """``lr·λmax`` at which PyTorch's SGD diverges on a quadratic, for each momentum variant.

    * plain gradient descent: ``2``;
    * heavy ball (``b <- βb + g``, ``w <- w - γb``): ``2(1 + β)``;
    * Nesterov (``w <- w - γ(g + βb)``): ``2(1 + β)/(1 + 2β)``;
    * dampening ``τ`` (``b <- βb + (1 - τ)g``) scales the step by ``1 - τ`` once the
      buffer is full, so the heavy-ball limit becomes ``2(1 + β)/(1 - τ)`` (``inf`` for
      ``τ >= 1``: the buffer then stops receiving gradients).

    These are the limits of the linear recurrence ``x_{t+1} = x_t - γ·(update)`` with
    ``g = λx`` (the eigenvalues of its 2x2 companion matrix reach -1 there).

    Examples
    --------
    >>> sgd_stability_factor(), sgd_stability_factor(0.9)
    (2.0, 3.8)
    >>> round(sgd_stability_factor(0.9, nesterov=True), 4)
    1.3571
    >>> round(sgd_stability_factor(0.9, dampening=0.5), 6)
    7.6
    """
    beta = float(momentum)
    if beta == 0.0:
        return 2.0
    if nesterov:
        return 2.0 * (1.0 + beta) / (1.0 + 2.0 * beta)
    if dampening >= 1.0:
        return math.inf
    return 2.0 * (1.0 + beta) / (1.0 - float(dampening))


class Optimizer:
    """Base class: holds ``lr``, the step counter ``t`` and per-parameter state.

    Parameters
    ----------
    lr : float
        Learning rate (> 0). Can be changed between steps (schedules, range tests).
    lazy : bool
        With a sparse gradient (``rows=`` given to :meth:`step`), update only those
        rows and their state.

    Examples
    --------
    >>> import numpy as np
    >>> opt = SGD(lr=0.5)
    >>> opt.step(np.array([1.0]), np.array([2.0])).tolist()
    [0.0]
    """

    def __init__(self, lr: float, *, lazy: bool = False) -> None:
        self._lr = _check_lr(lr)
        self.lazy = bool(lazy)
        self.t = 0
        self.state: dict[str, Any] = {}

    @property
    def lr(self) -> float:
        """Learning rate (validated on assignment)."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _check_lr(value)

    def reset(self) -> None:
        """Forget the state (momentum buffers, moments, step count)."""
        self.t = 0
        self.state = {}

    def _dense(self, w: Any, g: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _lazy(self, w: Any, rows: Any, g: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self, w: Any, g: Any, rows: Any = None) -> Any:
        """Apply one update to ``w`` in place and return it.

        Parameters
        ----------
        w : array
            Parameters (updated in place).
        g : array
            Gradient, same shape as ``w``; or, when ``rows`` is given, the gradient
            values of those rows only (shape ``(len(rows),) + w.shape[1:]``).
        rows : int array, optional
            Row indices of a sparse gradient. Repeated rows are summed (coalesced), as
            PyTorch accumulates a sparse COO gradient. Without ``lazy`` the gradient is
            scattered into a dense zero array and the dense rule applies (so momentum,
            weight decay and Adam's moments still move every row).

        A ``g`` of ``None`` means the parameter received no gradient (it is not on the
        loss path): the step is skipped entirely -- no weight decay, no momentum, no
        step count -- as ``torch.optim`` skips parameters whose ``.grad`` is ``None``.

        Returns
        -------
        array
            ``w``.
        """
        if g is None:
            return w
        xp = array_module(w, g)
        if g.shape != (w.shape if rows is None else (len(rows), *w.shape[1:])):
            raise ValueError(
                f"gradient shape {tuple(g.shape)} does not match parameters {tuple(w.shape)}"
                + ("" if rows is None else f" restricted to {len(rows)} rows")
            )
        self.t += 1
        if rows is None:
            self._dense(w, g)
        elif self.lazy:
            self._lazy(w, *coalesce(rows, g))
        else:
            dense = xp.zeros_like(w)
            _scatter_add(dense, xp.asarray(rows), g)
            self._dense(w, dense)
        return w

    def __repr__(self) -> str:
        keys = [k for k in vars(self) if not k.startswith("_") and k not in ("state", "t")]
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in ["lr", *keys])
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent, exactly as ``torch.optim.SGD``.

    With ``g`` the gradient, ``λ`` the weight decay, ``μ`` the momentum, ``τ`` the
    dampening and ``γ`` the learning rate::

        g <- g + λ w                      (L2; skipped when decoupled_weight_decay)
        b <- g (first step) | μ b + (1 - τ) g
        g <- g + μ b  (nesterov)  |  b
        w <- w - γ g

    With ``decoupled_weight_decay=True`` (not in PyTorch's SGD) the decay is applied
    as ``w <- w (1 - γ λ)`` before the step, as AdamW does. Without momentum the two
    coincide: L2 with ``λ`` equals decoupled decay with ``λ`` in PyTorch's
    ``lr * weight_decay`` convention, i.e. a per-step shrink factor ``1 - γ λ``
    (Loshchilov & Hutter write it as ``λ' = γ λ``).

    Parameters
    ----------
    lr : float
        Learning rate, default ``1e-3`` (PyTorch 2.x default).
    momentum, dampening, weight_decay : float
        PyTorch defaults ``0``.
    nesterov : bool
        Nesterov momentum (requires ``momentum > 0`` and ``dampening == 0``).
    maximize : bool
        Ascend instead of descend.
    decoupled_weight_decay : bool
        Decay the weights directly instead of adding ``λ w`` to the gradient.
    lazy : bool
        Sparse gradients update only their rows and momentum rows (TensorFlow's
        ``SparseApplyMomentum`` semantics; a row's buffer starts as its first gradient).

    Examples
    --------
    >>> import numpy as np
    >>> opt = SGD(lr=0.1, momentum=0.9)
    >>> w = np.array([1.0])
    >>> for _ in range(2):
    ...     _ = opt.step(w, np.array([1.0]))
    >>> round(float(w[0]), 12)  # 1 - 0.1*1 - 0.1*(0.9 + 1)
    0.71
    """

    def __init__(
        self,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
        lazy: bool = False,
    ) -> None:
        super().__init__(lr, lazy=lazy)
        self.momentum = _check_real("momentum", momentum)
        self.dampening = _check_real("dampening", dampening)
        self.weight_decay = _check_real("weight_decay", weight_decay)
        if self.momentum < 0:
            raise ValueError(f"momentum must be >= 0, got {momentum}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        self.nesterov = bool(nesterov)
        self.maximize = bool(maximize)
        self.decoupled_weight_decay = bool(decoupled_weight_decay)

    def _direction(self, w: Any, g: Any, buf: Any, first: Any) -> tuple[Any, Any]:
        """Return (update direction, new buffer) for ``w``, ``g`` (dense or row subsets)."""
        if self.maximize:
            g = -g
        if self.weight_decay != 0 and not self.decoupled_weight_decay:
            g = g + self.weight_decay * w
        if self.momentum != 0:
            if first is True:
                buf = g.copy()
            else:
                new = buf * self.momentum + (1 - self.dampening) * g
                if first is not False:  # boolean mask of rows seen for the first time
                    new[first] = g[first]
                buf = new
            g = g + self.momentum * buf if self.nesterov else buf
        return g, buf

    def _decay(self, w: Any) -> Any:
        if self.weight_decay != 0 and self.decoupled_weight_decay:
            return w * (1 - self.lr * self.weight_decay)
        return w

    def _dense(self, w: Any, g: Any) -> None:
        buf = self.state.get("momentum_buffer")
        d, buf = self._direction(w, g, buf, buf is None)
        if self.momentum != 0:
            self.state["momentum_buffer"] = buf
        # in place, element by element (the same arithmetic as w = decay(w) - lr*d): a
        # concurrent writer to a shared w (Hogwild) can lose at most single elements
        if self.weight_decay != 0 and self.decoupled_weight_decay:
            w *= 1 - self.lr * self.weight_decay
        w += (-self.lr) * d

    def _lazy(self, w: Any, rows: Any, g: Any) -> None:
        xp = array_module(w)
        wr = w[rows]
        if self.momentum != 0:
            if "momentum_buffer" not in self.state:
                self.state["momentum_buffer"] = xp.zeros_like(w)
                self.state["seen"] = xp.zeros(w.shape[0], dtype=bool)
            first = ~self.state["seen"][rows]
            d, buf = self._direction(wr, g, self.state["momentum_buffer"][rows], first)
            self.state["momentum_buffer"][rows] = buf
            self.state["seen"][rows] = True
        else:
            d, _ = self._direction(wr, g, None, True)
        w[rows] = self._decay(wr) + (-self.lr) * d


class Adam(Optimizer):
    """Adam, exactly as ``torch.optim.Adam`` (``weight_decay`` is an L2 term).

    Per step ``t`` (counted from 1)::

        g <- g + λ w                         (L2, unless decoupled_weight_decay)
        m <- β1 m + (1 - β1) g ;  v <- β2 v + (1 - β2) g²
        w <- w - γ/(1 - β1^t) * m / (sqrt(v)/sqrt(1 - β2^t) + ε)

    With ``lazy=True`` and a sparse gradient the update is ``torch.optim.SparseAdam``'s:
    only the rows present update ``m``, ``v`` and ``w``, with
    ``step = γ sqrt(1-β2^t)/(1-β1^t)`` and ``denom = sqrt(v) + ε`` (note the different
    place of ε), ``t`` counting every call.

    Parameters
    ----------
    lr : float
        Default ``1e-3``.
    betas : (float, float)
        Default ``(0.9, 0.999)``.
    eps : float
        Default ``1e-8``.
    weight_decay : float
        L2 coefficient, default ``0``.
    amsgrad : bool
        Use the running maximum of ``v``.
    maximize : bool
        Ascend instead of descend.
    decoupled_weight_decay : bool
        ``True`` turns this into :class:`AdamW`.
    lazy : bool
        SparseAdam semantics for sparse gradients (requires ``weight_decay == 0`` and
        ``amsgrad=False``, as ``torch.optim.SparseAdam``; both raise :class:`ValueError`).

    Examples
    --------
    >>> import numpy as np
    >>> w = np.array([1.0])
    >>> _ = Adam(lr=0.1).step(w, np.array([3.0]))   # first step moves by ~lr
    >>> round(float(w[0]), 8)
    0.9
    """

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
        lazy: bool = False,
    ) -> None:
        super().__init__(lr, lazy=lazy)
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair, got {betas!r}")
        b1, b2 = (_check_real("betas[0]", betas[0]), _check_real("betas[1]", betas[1]))
        for i, b in enumerate((b1, b2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"betas[{i}] must lie in [0, 1), got {b}")
        self.betas = (b1, b2)
        self.eps = _check_real("eps", eps)
        if self.eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.weight_decay = _check_real("weight_decay", weight_decay)
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if lazy and self.weight_decay != 0:
            raise ValueError("lazy (SparseAdam) updates do not support weight_decay")
        if lazy and amsgrad:
            raise ValueError(
                "lazy (SparseAdam) updates do not support amsgrad (torch.optim.SparseAdam has "
                "no amsgrad either); use lazy=False for AMSGrad"
            )
        self.amsgrad = bool(amsgrad)
        self.maximize = bool(maximize)
        self.decoupled_weight_decay = bool(decoupled_weight_decay)

    def _dense(self, w: Any, g: Any) -> None:
        xp = array_module(w, g)
        st = self.state
        if "exp_avg" not in st:
            st["exp_avg"] = xp.zeros_like(w)
            st["exp_avg_sq"] = xp.zeros_like(w)
            if self.amsgrad:
                st["max_exp_avg_sq"] = xp.zeros_like(w)
        b1, b2 = self.betas
        lr, t = self.lr, self.t
        if self.maximize:
            g = -g
        if self.weight_decay != 0:
            if self.decoupled_weight_decay:
                w *= 1 - lr * self.weight_decay
            else:
                g = g + self.weight_decay * w
        m, v = st["exp_avg"], st["exp_avg_sq"]
        m += (g - m) * (1 - b1)  # torch: exp_avg.lerp_(grad, 1 - beta1)
        v *= b2
        v += (1 - b2) * (g * g)
        bc1 = 1 - b1**t
        bc2_sqrt = (1 - b2**t) ** 0.5
        if self.amsgrad:
            vmax = st["max_exp_avg_sq"]
            xp.maximum(vmax, v, out=vmax)
            denom = xp.sqrt(vmax) / bc2_sqrt + self.eps
        else:
            denom = xp.sqrt(v) / bc2_sqrt + self.eps
        w += (-(lr / bc1)) * (m / denom)

    def _lazy(self, w: Any, rows: Any, g: Any) -> None:
        xp = array_module(w, g)
        st = self.state
        if "exp_avg" not in st:
            st["exp_avg"] = xp.zeros_like(w)
            st["exp_avg_sq"] = xp.zeros_like(w)
        if self.maximize:
            g = -g
        b1, b2 = self.betas
        m_old, v_old = st["exp_avg"][rows], st["exp_avg_sq"][rows]
        dm = (g - m_old) * (1 - b1)
        dv = (g * g - v_old) * (1 - b2)
        m_new, v_new = dm + m_old, dv + v_old
        st["exp_avg"][rows] = m_new
        st["exp_avg_sq"][rows] = v_new
        denom = xp.sqrt(v_new) + self.eps
        t = self.t
        step_size = self.lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        w[rows] = w[rows] + (-step_size) * (m_new / denom)


class AdamW(Adam):
    """AdamW, exactly as ``torch.optim.AdamW``: decoupled weight decay, default ``1e-2``.

    ``w <- w (1 - γ λ)`` happens first; the decay never enters ``m`` or ``v``, so it is
    not shrunk by ``1/(sqrt(v̂) + ε)`` as Adam's L2 term is.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.array([1.0])
    >>> _ = AdamW(lr=0.1, weight_decay=0.5).step(w, np.array([0.0]))
    >>> float(w[0])  # only the decay: 1 * (1 - 0.1 * 0.5)
    0.95
    """

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            lr, betas, eps, weight_decay, amsgrad, maximize=maximize, decoupled_weight_decay=True
        )


class GradScaler:
    """Dynamic loss scaling with ``torch.amp.GradScaler`` semantics and defaults.

    The loss is multiplied by ``scale`` before the backward pass; :meth:`unscale`
    divides the gradient by it (in the master dtype) and reports Inf/NaN. If any are
    found the optimizer step is skipped and ``scale *= backoff_factor``; after
    ``growth_interval`` consecutive good steps ``scale *= growth_factor``. The scale is
    kept as a float32 number, as PyTorch does.

    Parameters
    ----------
    init_scale : float
        Default ``2**16``.
    growth_factor, backoff_factor : float
        Defaults ``2.0`` and ``0.5``.
    growth_interval : int
        Default ``2000``.
    enabled : bool
        ``False`` makes every method a pass-through with ``scale == 1``.
    min_scale, max_consecutive_skips, max_skip_fraction, window
        Failure thresholds read by :func:`peakfit.gd.train`'s finite guard (not by the
        scaler, which, like PyTorch's, never raises): a scale below ``min_scale``
        (default ``2**-24``, float16's smallest subnormal), ``max_consecutive_skips``
        skipped steps in a row (default 40: the scale fell by ``2**40`` without one
        clean step) or more than ``max_skip_fraction`` (default 0.5) of the last
        ``window`` (default 100) steps skipped.

    Examples
    --------
    >>> import numpy as np
    >>> s = GradScaler()
    >>> g, bad = s.unscale(np.array([np.inf]))
    >>> s.update(bad); s.scale
    32768.0
    """

    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
        enabled: bool = True,
        *,
        min_scale: float = 2.0**-24,
        max_consecutive_skips: int = 40,
        max_skip_fraction: float = 0.5,
        window: int = 100,
    ) -> None:
        init_scale = _check_real("init_scale", init_scale)
        if init_scale <= 0:
            raise ValueError(f"init_scale must be > 0, got {init_scale}")
        if _check_real("growth_factor", growth_factor) <= 1.0:
            raise ValueError(f"growth_factor should be > 1, got {growth_factor}")
        if not 0.0 < _check_real("backoff_factor", backoff_factor) < 1.0:
            raise ValueError(f"backoff_factor should be < 1, got {backoff_factor}")
        if isinstance(growth_interval, bool) or not isinstance(growth_interval, (int, np.integer)):
            raise TypeError(f"growth_interval must be an int, got {type(growth_interval).__name__}")
        if growth_interval <= 0:
            raise ValueError(f"growth_interval should be a positive integer, got {growth_interval}")
        self.min_scale = _check_real("min_scale", min_scale)
        if not 0 < max_skip_fraction <= 1:
            raise ValueError(f"max_skip_fraction must lie in (0, 1], got {max_skip_fraction}")
        if int(max_consecutive_skips) < 1 or int(window) < 1:
            raise ValueError("max_consecutive_skips and window must be positive integers")
        self.max_consecutive_skips = int(max_consecutive_skips)
        self.max_skip_fraction = float(max_skip_fraction)
        self.window = int(window)
        self.enabled = bool(enabled)
        self.growth_factor = float(growth_factor)
        self.backoff_factor = float(backoff_factor)
        self.growth_interval = int(growth_interval)
        self._scale = np.float32(init_scale)
        self.growth_tracker = 0
        self.skipped = 0

    @property
    def scale(self) -> float:
        """Current loss scale (1.0 when disabled)."""
        return float(self._scale) if self.enabled else 1.0

    def unscale(self, grad: Any, dtype: Any = None) -> tuple[Any, bool]:
        """Return ``(grad / scale, found_inf)``, computed in ``dtype`` (default float32 or wider).

        Examples
        --------
        >>> import numpy as np
        >>> g, bad = GradScaler(init_scale=4.0).unscale(np.array([2.0]))
        >>> g.tolist(), bad
        ([0.5], False)

        A parameter without gradient (``grad is None``) is skipped, as PyTorch skips
        ``p.grad is None``: the result is ``(None, False)``.
        """
        if grad is None:
            return None, False
        xp = array_module(grad)
        dtype = np.dtype(np.result_type(grad.dtype, np.float32) if dtype is None else dtype)
        inv = dtype.type(np.float32(1.0 / np.float64(self.scale)))  # torch: double reciprocal
        g = grad.astype(dtype) * inv
        found_inf = not bool(xp.isfinite(g).all())
        return g, found_inf

    def update(self, found_inf: bool) -> None:
        """Back off on Inf/NaN; grow after ``growth_interval`` clean steps.

        Same rule as PyTorch's ``_amp_update_scale_``.
        """
        if not self.enabled:
            return
        if found_inf:
            self._scale = np.float32(self._scale * np.float32(self.backoff_factor))
            self.growth_tracker = 0
            self.skipped += 1
        else:
            self.growth_tracker += 1
            if self.growth_tracker == self.growth_interval:
                new = np.float32(self._scale * np.float32(self.growth_factor))
                if np.isfinite(new):
                    self._scale = new
                self.growth_tracker = 0

    def step(self, optimizer: Optimizer, w: Any, scaled_grad: Any) -> bool:
        """Unscale, step the optimizer unless Inf/NaN were found, update the scale.

        Returns
        -------
        bool
            True if the optimizer stepped, False if the step was skipped.

        Examples
        --------
        >>> import numpy as np
        >>> w = np.zeros(1)
        >>> GradScaler(init_scale=8.0).step(SGD(lr=1.0), w, np.array([8.0]))
        True
        >>> w.tolist()
        [-1.0]
        """
        if scaled_grad is None:  # no gradient: nothing to unscale or step (torch skips it)
            return True
        if not self.enabled:
            optimizer.step(w, scaled_grad.astype(w.dtype))
            return True
        g, found_inf = self.unscale(scaled_grad, w.dtype)
        if not found_inf:
            optimizer.step(w, g)
        self.update(found_inf)
        return not found_inf
