"""What the asv suites and their pytest-benchmark twins share: the cases and small helpers.

Imports nothing heavy and works without pytest (asv's environments have none).
"""

import contextlib

import numpy as np

try:
    import pytest
except ImportError:  # asv's virtualenvs: the twins are never collected there
    pytest = None

DTYPES = ["float64", "float32"]
WORKLOAD_KEYS = ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "W10"]

# Training paths: the compiled whole-epoch loop, pyldl module by module (Trainer), a loop
# written by hand on pyldl's modules (hand_epoch), plain NumPy.
PATHS = ["fused", "modules", "hand", "reference"]

# Rows per workload in asv (None: the full data set of WORKLOADS.md). W6 runs at its
# quick size, 1024 of 8192 rows (4 batches of 256), so one epoch stays under a second;
# the comparison command times it at full size.
ASV_SAMPLES = {"W6": 1024}

# Rows per workload in the pytest twins, which run once in CI: small, for speed.
TWIN_SAMPLES = {
    "W1": 200,
    "W2": 400,
    "W3": 256,
    "W4": 256,
    "W5": 32,
    "W6": 64,
    "W7": 256,
    "W8": 128,
    "W9": 256,
    "W10": 256,
}


def parametrize(*args, **kwargs):
    """``pytest.mark.parametrize``, or a no-op where pytest is not installed."""
    return pytest.mark.parametrize(*args, **kwargs) if pytest else (lambda func: func)


@contextlib.contextmanager
def seeded(seed):
    """Seed NumPy's global RNG (PyLDL's Linear draws from it) and restore it afterwards.

    Kept here rather than imported from ``pyldl.workloads``: asv runs these benchmarks
    against older commits too, whose pyldl may not have it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def parse_size(size, sep="x"):
    """``"64x128"`` -> ``(64, 128)``; ``"64x256->100"`` -> ``(64, 256, 100)``."""
    return tuple(int(part) for part in size.replace("->", sep).split(sep))


def random_array(shape, dtype, seed=0, low=None):
    """A seeded standard-normal array (uniform in [low, 1 - low) when ``low`` is given)."""
    rs = np.random.RandomState(seed)
    x = rs.standard_normal(shape) if low is None else rs.uniform(low, 1 - low, shape)
    return x.astype(dtype)


def make_trainer(key, path, dtype, n_samples=None):
    """A :class:`pyldl.optimizers.Trainer` for workload ``key`` on one training path, from the
    workload's initial weights and batches. ``path="fused"`` raises NotImplementedError while
    the fused loop is not built or does not take the workload's network, and so does a commit
    whose pyldl lacks the workload; asv reports these as skipped benchmarks."""
    import pyldl
    import pyldl.reference
    from pyldl.optimizers import Trainer
    from pyldl.workloads import WORKLOADS

    if key not in WORKLOADS:
        raise NotImplementedError(f"workload {key} is not in this version of pyldl.workloads")
    workload = WORKLOADS[key]
    X, y = workload.data(n_samples)
    if path == "hand":
        return HandTrainer(workload, np.dtype(dtype), X, y)
    namespace = pyldl.reference if path == "reference" else pyldl
    try:
        return Trainer(
            workload.network(namespace, np.dtype(dtype)),
            workload.loss_module(namespace),
            X,
            y,
            workload.batch_size,
            workload.gradient_step,
            order=workload.permutation(len(X)),
            fused=path == "fused",
        )
    except TypeError as error:  # fused=True on a network this version cannot fuse
        raise NotImplementedError(str(error)) from None


class HandTrainer:
    """``epoch()`` runs :func:`hand_epoch` on pyldl's modules, from the workload's initial
    weights on its batches (converted once to ``dtype``), like :func:`make_trainer`'s paths."""

    def __init__(self, workload, dtype, X, y, order=None):
        import pyldl

        order = workload.permutation(len(X)) if order is None else order
        X, y = np.ascontiguousarray(X[order], dtype), np.ascontiguousarray(y[order], dtype)
        step = workload.batch_size
        self.batches = [(X[i : i + step], y[i : i + step]) for i in range(0, len(X), step)]
        self.layers = list(workload.network(pyldl, dtype)._leaves())
        self.loss, self.gradient_step = workload.loss_module(pyldl), workload.gradient_step

    def epoch(self):
        return hand_epoch(self.layers, self.loss, self.batches, self.gradient_step)


def skip_if_not_implemented(func, *args):
    """``func(*args)``, turning NotImplementedError into a pytest skip (with its message)."""
    try:
        return func(*args)
    except NotImplementedError as error:
        pytest.skip(f"not implemented yet: {error}")


def hand_epoch(layers, loss, batches, gradient_step):
    """One epoch of a training loop written by hand, as PyLDL's notebooks do: per batch, every
    module's zero_grad, forward module by module, the loss and its backward, then from the last
    module to the first backward_update_gradient and backward_delta, then update_parameters.
    ``layers``: the network's leaf modules in forward order. Returns the mean batch loss."""
    losses = []
    for x, y in batches:
        for module in layers:
            module.zero_grad()
        inputs = []
        for module in layers:
            inputs.append(x)
            x = module.forward(x)
        losses.append(loss.forward(y, x))
        delta = loss.backward(y, x)
        for module, x in zip(reversed(layers), reversed(inputs), strict=True):
            module.backward_update_gradient(x, delta)
            delta = module.backward_delta(x, delta)
        for module in layers:
            module.update_parameters(gradient_step)
    return float(np.mean(losses))


def bare_network(workload, dtype):
    """Workload ``workload``'s initial network as plain data for :func:`bare_epoch`: a list
    holding ``[W, b]`` per Linear layer and the activations' names."""
    weights = iter(workload.weights())
    return [
        [a.astype(dtype) for a in next(weights)] if layer[0] == "linear" else layer
        for layer in workload.layers
    ]


def bare_epoch(layers, loss, batches, gradient_step):
    """The NumPy operations of PyLDL (SPEC.md) for one epoch of :func:`hand_epoch`, done bare:
    no classes, no checks, no conversions. The yardstick the reference's own cost is measured
    against. ``layers`` from :func:`bare_network` (updated in place), ``loss`` "mse", "bce" or
    "cross_entropy"."""
    from pyldl.reference.losses import bce_epsilon

    unknown = [
        layer for layer in layers if type(layer) is not list and layer not in ("Tanh", "Sigmoid", "ReLU")
    ]
    if unknown or loss not in ("mse", "bce", "cross_entropy"):
        raise ValueError(
            f"bare_epoch knows Linear, Tanh, Sigmoid, ReLU and mse, bce, cross_entropy: {unknown or loss}"
        )
    losses = []
    for x, y in batches:
        gradients = [[np.zeros_like(a) for a in layer] if type(layer) is list else None for layer in layers]
        inputs = []
        for layer in layers:
            inputs.append(x)
            if type(layer) is list:
                x = x @ layer[0] + layer[1]
            elif layer == "Tanh":
                x = np.tanh(x)
            elif layer == "Sigmoid":
                x = 1 / (1 + np.exp(-x))
            else:  # ReLU
                x = np.maximum(x, 0)
        if loss == "mse":
            losses.append(np.mean(np.sum((y - x) ** 2, axis=1)))
            delta = -2 * (y - x)
        elif loss == "cross_entropy":  # logits in
            top = x.max(axis=1, keepdims=True)
            e = np.exp(x - top)
            sums = e.sum(axis=1, keepdims=True)
            losses.append(np.mean(np.log(sums[:, 0]) + top[:, 0] - np.sum(y * x, axis=1)))
            delta = e / sums - y
        else:  # bce
            eps = bce_epsilon(x.dtype)
            p = np.clip(x, eps, 1 - eps)
            losses.append(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
            p = np.clip(x, eps, 1 - eps)  # again: forward and backward are two calls
            delta = (p - y) / (p * (1 - p) * len(y))
        for layer, gradient, x in zip(reversed(layers), reversed(gradients), reversed(inputs), strict=True):
            if type(layer) is list:
                gradient[0] += x.T @ delta
                gradient[1] += delta.sum(axis=0)
                delta = delta @ layer[0].T
            elif layer == "Tanh":
                delta = delta * (1 - np.tanh(x) ** 2)
            elif layer == "Sigmoid":
                s = 1 / (1 + np.exp(-x))
                delta = delta * s * (1 - s)
            else:  # ReLU
                delta = delta * (x > 0)
        for layer, gradient in zip(layers, gradients, strict=True):
            if type(layer) is list:
                layer[0] -= gradient_step * gradient[0]
                layer[1] -= gradient_step * gradient[1]
    return float(np.mean(losses))
