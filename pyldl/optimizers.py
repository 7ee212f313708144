"""Training: Optim (one step) and SGD (minibatch gradient descent over epochs)."""

import math
import numbers

import numpy as np
from tqdm.auto import tqdm

from .base import Module, as_float_array, check_2d, check_same_rows
from .exceptions import DivergenceError
from .reference.optimizers import Optim

__all__ = ["SGD", "Optim", "Trainer"]


def _arrays(network):
    """Every parameter array of the network (``_parameters`` and ``_bias`` of each module)."""
    stack = [network]
    while stack:
        module = stack.pop()
        stack.extend(getattr(module, "_modules", ()))
        for name in ("_parameters", "_bias"):
            value = getattr(module, name, None)
            if isinstance(value, np.ndarray):
                yield value


def _dtype(network):
    """The network's dtype: that of its first parameter array, float64 when it has none."""
    first = next(_arrays(network), None)
    return first.dtype if first is not None and first.dtype.kind == "f" else np.dtype(np.float64)


def _check_training_args(network, X, y, batch_size, gradient_step, n_iter):
    if not isinstance(network, Module):
        raise TypeError(f"network must be a pyldl Module, got {type(network).__name__}")
    dtype = _dtype(network)
    X = as_float_array(X, "X", dtype)
    y = as_float_array(y, "y", dtype)
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    check_2d(X, "X")
    check_2d(y, "y")
    check_same_rows(X, y, "X", "y")
    if len(X) == 0:
        raise ValueError("X is empty: SGD needs at least one sample")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(n_iter, bool) or not isinstance(n_iter, numbers.Integral) or n_iter < 0:
        raise ValueError(f"n_iter must be a non-negative integer, got {n_iter!r}")
    if not isinstance(gradient_step, numbers.Real) or not math.isfinite(gradient_step):
        raise ValueError(f"gradient_step must be a finite number, got {gradient_step!r}")
    return X, y, int(batch_size), float(gradient_step), int(n_iter)


class Trainer:
    """SGD's training state for one data set: validated inputs, the fixed minibatches, and
    the epoch routine (compiled and fused, or module by module).

    ``Trainer(...).epoch()`` trains one epoch and returns its mean batch loss; SGD calls it
    ``n_iter`` times. Benchmarks use it to time epochs without SGD's set-up.

    Args:
        order: the order of the rows (default: one ``np.random.permutation(len(X))``).
        fused: None picks the compiled whole-epoch path when the network and loss are all
            built-in, True insists on it (TypeError otherwise), False trains module by module.
    """

    def __init__(self, network, loss, X, y, batch_size=64, gradient_step=1e-3, *, order=None, fused=None):
        X, y, batch_size, gradient_step, _ = _check_training_args(
            network, X, y, batch_size, gradient_step, 0
        )
        if fused:
            raise NotImplementedError("the fused path is not built yet")
        if order is None:
            order = np.random.permutation(len(X))
        self.network, self.loss = network, loss
        self.fused = False
        X, y = X[order], y[order]
        self._batches = [(X[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(X), batch_size)]
        self._optimizer = Optim(network, loss, gradient_step)

    def epoch(self):
        """Train on every minibatch once; return the mean of the batch losses."""
        return float(np.mean([self._optimizer.step(bx, by) for bx, by in self._batches]))


def SGD(network, loss, X, y, batch_size=64, gradient_step=1e-3, n_iter=1000, *, progress=True, fused=None):
    """Minibatch gradient descent; returns each epoch's mean batch loss (a list of floats).

    One ``np.random.permutation(len(X))`` is drawn at the start; every epoch trains on the
    same consecutive batches of ``batch_size`` rows in that order, the last partial batch kept.
    A network of built-in modules with a built-in loss trains each epoch in one compiled call.

    If an epoch's loss is NaN or inf, :class:`~pyldl.exceptions.DivergenceError` is raised
    (with the losses so far) and the network keeps the parameters of the last finite epoch;
    Ctrl-C likewise restores them before re-raising KeyboardInterrupt.

    Args:
        progress: show a progress bar over epochs.
        fused: see :class:`Trainer` (None: automatic).
    """
    _check_training_args(network, X, y, batch_size, gradient_step, n_iter)
    trainer = Trainer(network, loss, X, y, batch_size, gradient_step, fused=fused)
    parameters = list(_arrays(network))
    saved = [p.copy() for p in parameters]
    losses = []
    for _ in tqdm(range(n_iter), disable=not progress, desc="SGD", unit="epoch"):
        for p, s in zip(parameters, saved):
            np.copyto(s, p)
        try:
            value = trainer.epoch()
        except KeyboardInterrupt:
            _restore(parameters, saved)
            raise
        losses.append(value)
        if not math.isfinite(value):
            _restore(parameters, saved)
            raise DivergenceError(len(losses) - 1, losses)
    return losses


def _restore(parameters, saved):
    for p, s in zip(parameters, saved):
        np.copyto(p, s)
