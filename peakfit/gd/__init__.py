"""Gradient descent, with numbers and pictures: a teaching and diagnostics toolkit.

Beside peakfit's least-squares engine, :mod:`peakfit.gd` shows how (minibatch)
gradient descent behaves on least-squares problems -- linear regression, a
sliding-window regression and a Gaussian peak ``a*exp(-((x-b)/c)**2)``:

* :func:`train` -- Keras-style epochs and batches, history, finite guard, gradient noise;
* :class:`SGD`, :class:`Adam`, :class:`AdamW`, :class:`GradScaler` -- PyTorch semantics;
* :func:`lambda_max`, :func:`lr_sweep`, :func:`lr_range_test` -- why a learning rate
  diverges (``lr < 2/λmax``);
* :func:`noise_scale`, :func:`noise_scale_two_batch`, :func:`batch_size_study` -- what
  batch size buys;
* :func:`gradient_second_moment` -- per-example gradient moments in one O(N) pass;
* :func:`compare_weight_decay`, :func:`precision_study`, :func:`sparse_update_study`;
* :func:`hogwild` -- asynchronous lock-free SGD on shared parameters (processes),
  against :func:`sync_sgd`; :func:`delayed_sgd` models staleness;
* :func:`saturation_study` -- tanh/sigmoid gradients that are exactly zero in float16;
* :func:`diagnose_loss` -- which term and which input row made the loss NaN/Inf;
* :func:`peakfit.gd.demo.run_demo` -- all figures and a Markdown report.

Everything works on NumPy arrays and, unchanged, on CuPy arrays (never imported here).

Examples
--------
>>> from peakfit.gd import make_linear, lambda_max, train, SGD
>>> p = make_linear(500, 3, seed=0)
>>> lr = 1.9 / lambda_max(p)
>>> h = train(p, [0.0, 0.0, 0.0], SGD(lr=lr), epochs=200, batch_size=p.n)
>>> bool(h.epoch_full_loss[-1] < 1.01 * p.loss(p.solution()))
True
"""

from __future__ import annotations

from .diagnostics import (
    BatchSizeStudy,
    LRSweep,
    NoiseScale,
    PrecisionStudy,
    RangeTest,
    SparseStudy,
    WeightDecayComparison,
    batch_size_study,
    compare_weight_decay,
    fit_critical_batch,
    gradient_second_moment,
    gradient_second_moment_bruteforce,
    gradient_variance,
    hessian_eigenvalues,
    lambda_max,
    linear_scaling_lr,
    lr_range_test,
    lr_sweep,
    noise_scale,
    noise_scale_two_batch,
    per_example_grad_norms,
    precision_study,
    sparse_update_study,
    stability_limit,
)
from .faults import LossFault, diagnose_loss
from .hogwild import HogwildResult, delayed_sgd, delayed_stability_factor, hogwild, sync_sgd
from .losses import PoissonRegression, RelativeErrorRegression
from .optim import SGD, Adam, AdamW, GradScaler, Optimizer, coalesce, sgd_stability_factor
from .problems import (
    EmbeddingRegression,
    GaussianPeak,
    LeastSquaresProblem,
    LinearRegression,
    SlidingWindowRegression,
    array_module,
    make_embedding,
    make_gaussian_peak,
    make_linear,
    make_sliding_window,
    to_numpy,
)
from .saturation import SaturationStudy, TwoLayerNet, saturation_study, saturation_threshold
from .train import (
    GradientNoise,
    History,
    NonFiniteError,
    batch_indices,
    check_finite,
    resolve_batch_size,
    steps_per_epoch,
    train,
)

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "BatchSizeStudy",
    "EmbeddingRegression",
    "GaussianPeak",
    "GradScaler",
    "GradientNoise",
    "History",
    "HogwildResult",
    "LRSweep",
    "LeastSquaresProblem",
    "LinearRegression",
    "LossFault",
    "NoiseScale",
    "NonFiniteError",
    "Optimizer",
    "PoissonRegression",
    "PrecisionStudy",
    "RangeTest",
    "RelativeErrorRegression",
    "SaturationStudy",
    "SlidingWindowRegression",
    "SparseStudy",
    "TwoLayerNet",
    "WeightDecayComparison",
    "array_module",
    "batch_indices",
    "batch_size_study",
    "check_finite",
    "coalesce",
    "compare_weight_decay",
    "delayed_sgd",
    "delayed_stability_factor",
    "diagnose_loss",
    "fit_critical_batch",
    "gradient_second_moment",
    "gradient_second_moment_bruteforce",
    "gradient_variance",
    "hessian_eigenvalues",
    "hogwild",
    "lambda_max",
    "linear_scaling_lr",
    "lr_range_test",
    "lr_sweep",
    "make_embedding",
    "make_gaussian_peak",
    "make_linear",
    "make_sliding_window",
    "noise_scale",
    "noise_scale_two_batch",
    "per_example_grad_norms",
    "precision_study",
    "resolve_batch_size",
    "saturation_study",
    "saturation_threshold",
    "sgd_stability_factor",
    "sparse_update_study",
    "stability_limit",
    "steps_per_epoch",
    "sync_sgd",
    "to_numpy",
    "train",
]
