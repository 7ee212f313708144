"""The implementations the comparison command times, and the worker process that runs one.

Every runner trains one workload of ``pyldl.workloads`` in one dtype from the workload's
initial weights (``Workload.weights()``) on its fixed batches (``Workload.permutation``, the
last partial batch kept) with PyLDL's math (SPEC.md): MSE backward ``-2 (y - yhat)`` per
sample (the gradient of N x loss), BCE backward ``(p - y) / (p (1 - p) N)`` with p clipped,
cross-entropy backward ``softmax(yhat) - y`` (the gradient of N x loss, logits in), Conv1D's
parameter gradients divided by the batch size N (Linear's are not), plain SGD
``param -= step * grad``. ``epoch()`` trains one epoch and returns the mean of its batch
losses as a Python float (so the work is done when it returns).

Peers (PyTorch, JAX) are optional: a missing one raises :class:`Unavailable`.
"""

import os
import time

import numpy as np

IMPLEMENTATIONS = ["fused", "modules", "hand", "reference", "bare", "torch", "jax"]
LABELS = {
    "fused": "pyldl fused",
    "modules": "pyldl module by module",
    "hand": "pyldl hand-written loop",
    "reference": "NumPy reference",
    "bare": "bare NumPy",
    "torch": "PyTorch eager",
    "jax": "JAX jit+scan",
}


class Unavailable(Exception):
    """This implementation cannot run here (not installed, or not built yet)."""


def _bce_epsilon(dtype):
    from pyldl.reference.losses import bce_epsilon

    return bce_epsilon(np.dtype(dtype))


class PyldlRunner:
    """pyldl's Trainer on one path: fused, modules (pyldl module by module) or reference."""

    def __init__(self, impl, workload, dtype, X, y, order):
        import pyldl
        import pyldl.reference
        from pyldl.optimizers import Trainer

        namespace = pyldl.reference if impl == "reference" else pyldl
        try:
            self.trainer = Trainer(
                workload.network(namespace, dtype),
                workload.loss_module(namespace),
                X,
                y,
                workload.batch_size,
                workload.gradient_step,
                order=order,
                fused=impl == "fused",
            )
        except NotImplementedError as error:
            raise Unavailable(f"not built yet ({error})") from None
        except TypeError as error:  # a version of the fused loop that does not take this network
            raise Unavailable(f"not fused: {error}") from None

    def epoch(self):
        return self.trainer.epoch()


def _batches(X, y, order, batch_size, dtype=None):
    X, y = X[order], y[order]
    if dtype is not None:  # converted once, as Trainer does
        X, y = np.ascontiguousarray(X, dtype), np.ascontiguousarray(y, dtype)
    return [(X[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(X), batch_size)]


class HandRunner:
    """A loop written by hand on pyldl's compiled modules, as PyLDL's notebooks train: every
    module's methods called one by one (``benchmarks._cases.HandTrainer``)."""

    def __init__(self, workload, dtype, X, y, order):
        from benchmarks._cases import HandTrainer

        self.trainer = HandTrainer(workload, dtype, X, y, order)

    def epoch(self):
        return self.trainer.epoch()


class BareRunner:
    """The NumPy operations of the hand-written loop without classes or checks
    (``benchmarks._cases.bare_epoch``): what the NumPy reference is measured against."""

    def __init__(self, workload, dtype, X, y, order):
        from benchmarks._cases import bare_epoch, bare_network

        if any(type(layer) is not str and layer[0] != "linear" for layer in workload.layers):
            raise Unavailable("bare NumPy is written for Linear networks only")
        self.layers = bare_network(workload, dtype)
        self.batches = _batches(X, y, order, workload.batch_size, dtype)
        self.loss, self.step, self._epoch = workload.loss, workload.gradient_step, bare_epoch

    def epoch(self):
        return self._epoch(self.layers, self.loss, self.batches, self.step)


class TorchRunner:
    """PyTorch eager on the CPU: autograd through the network, the loss's delta given by hand
    (``yhat.backward(delta)``) so the gradients follow PyLDL's scaling (Conv1D's divided by the
    batch size). Sequences are stored channels-first once, as ``conv1d`` and ``max_pool1d``
    take them; ``Flatten`` transposes back so that features keep PyLDL's (length, channels) order."""

    def __init__(self, workload, dtype, X, y, order):
        try:
            import torch
        except ImportError:
            raise Unavailable("PyTorch not installed (pip install torch==2.13.0: CPU build)") from None
        self.torch = torch
        tdtype = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}[dtype]
        functions = {
            "Tanh": torch.tanh,
            "Sigmoid": torch.sigmoid,
            "ReLU": torch.relu,
            "Softmax": lambda x: torch.softmax(x, dim=-1),
            "Flatten": lambda x: x.transpose(1, 2).reshape(len(x), -1),
        }
        self.params, self.layers, weights = [], [], iter(workload.weights())
        for layer in workload.layers:
            if type(layer) is str:
                self.layers.append((functions[layer], None))
            elif layer[0] == "maxpool1d":
                k_size, stride = layer[1:]
                self.layers.append(
                    (lambda x, k=k_size, s=stride: torch.nn.functional.max_pool1d(x, k, s), None)
                )
            else:
                W, b = next(weights)
                conv = layer[0] == "conv1d"
                W = W.transpose(2, 1, 0) if conv else W  # (chan_out, chan_in, k_size), as torch's conv1d
                pair = (
                    torch.tensor(W, dtype=tdtype, requires_grad=True),
                    torch.tensor(b.reshape(-1) if conv else b, dtype=tdtype, requires_grad=True),
                )
                self.params.append((*pair, conv))
                self.layers.append((layer[0], pair if not conv else (*pair, layer[4])))
        sequences = X.ndim == 3
        self.batches = [
            (
                torch.from_numpy(np.ascontiguousarray(bx.transpose(0, 2, 1) if sequences else bx, dtype)),
                torch.from_numpy(np.ascontiguousarray(by, dtype)),
            )
            for bx, by in _batches(X, y, order, workload.batch_size)
        ]
        self.step = workload.gradient_step
        self.loss = workload.loss
        self.eps = _bce_epsilon(dtype)

    def forward(self, x):
        for kind, params in self.layers:
            if kind == "linear":
                W, b = params
                x = self.torch.addmm(b, x, W)  # x @ W + b in one call, as nn.Linear
            elif kind == "conv1d":
                W, b, stride = params
                x = self.torch.nn.functional.conv1d(x, W, b, stride)
            else:
                x = kind(x)
        return x

    def loss_and_delta(self, y, yhat):
        if self.loss == "cross_entropy":
            value = (self.torch.logsumexp(yhat, 1) - (y * yhat).sum(1)).mean()
            return value, self.torch.softmax(yhat, 1) - y
        if self.loss == "bce":
            p = yhat.clamp(self.eps, 1 - self.eps)
            value = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
            return value, (p - y) / (p * (1 - p) * len(y))
        diff = y - yhat
        return (diff * diff).sum(1).mean(), -2 * diff

    def epoch(self):
        torch = self.torch
        losses = []
        for bx, by in self.batches:
            yhat = self.forward(bx)
            with torch.no_grad():
                value, delta = self.loss_and_delta(by, yhat)
            yhat.backward(delta)
            with torch.no_grad():
                for W, b, conv in self.params:
                    step = self.step / len(bx) if conv else self.step  # Conv1D's gradient / N
                    W.sub_(W.grad, alpha=step)
                    b.sub_(b.grad, alpha=step)
                    W.grad = b.grad = None
            losses.append(value)
        return float(torch.stack(losses).double().mean())


class JaxRunner:
    """JAX: one jitted function per epoch, ``lax.scan`` over the full batches plus one step on
    the last partial batch; the delta of the loss is fed to ``jax.vjp`` of the network. Conv1D
    is ``lax.conv_general_dilated`` on PyLDL's own layouts (NWC input, WIO weights), MaxPool1D
    ``lax.reduce_window``; Conv1D's gradients are divided by the batch size."""

    def __init__(self, workload, dtype, X, y, order):
        try:
            import jax
        except ImportError:
            raise Unavailable("JAX not installed (pip install jax: CPU build)") from None
        jax.config.update("jax_enable_x64", True)  # float64 arrays stay float64
        import jax.numpy as jnp

        self.jax = jax
        self.params = [(jnp.asarray(W, dtype), jnp.asarray(b, dtype)) for W, b in workload.weights()]
        functions = {
            "Tanh": jnp.tanh,
            "Sigmoid": jax.nn.sigmoid,
            "ReLU": jax.nn.relu,
            "Softmax": lambda x: jax.nn.softmax(x, axis=-1),
            "Flatten": lambda x: x.reshape(x.shape[0], -1),
        }

        def maxpool1d(x, k_size, stride):
            return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, k_size, 1), (1, stride, 1), "VALID")

        layout = ("NWC", "WIO", "NWC")  # PyLDL's (batch, length, channels), (k_size, chan_in, chan_out)

        def conv1d(x, W, b, stride):
            return jax.lax.conv_general_dilated(x, W, (stride,), "VALID", dimension_numbers=layout) + b

        layers, convs = [], []  # (function, takes parameters); per parameter pair: is it a Conv1D's
        for layer in workload.layers:
            if type(layer) is str:
                layers.append((functions[layer], False))
            elif layer[0] == "linear":
                layers.append((lambda x, W, b: x @ W + b, True))
                convs.append(False)
            elif layer[0] == "conv1d":
                layers.append((lambda x, W, b, s=layer[4]: conv1d(x, W, b, s), True))
                convs.append(True)
            else:
                layers.append((lambda x, k=layer[1], s=layer[2]: maxpool1d(x, k, s), False))
        step_size, loss, eps = workload.gradient_step, workload.loss, _bce_epsilon(dtype)

        def forward(params, x):
            weighted = iter(params)
            for function, takes_parameters in layers:
                x = function(x, *next(weighted)) if takes_parameters else function(x)
            return x

        def loss_and_delta(y, yhat):
            if loss == "cross_entropy":
                value = jnp.mean(jax.nn.logsumexp(yhat, axis=1) - jnp.sum(y * yhat, axis=1))
                return value, jax.nn.softmax(yhat, axis=1) - y
            if loss == "bce":
                p = jnp.clip(yhat, eps, 1 - eps)
                value = -jnp.mean(y * jnp.log(p) + (1 - y) * jnp.log(1 - p))
                return value, (p - y) / (p * (1 - p) * y.shape[0])
            diff = y - yhat
            return jnp.mean(jnp.sum(diff * diff, axis=1)), -2 * diff

        def step(params, batch):
            x, y = batch
            yhat, vjp = jax.vjp(lambda p: forward(p, x), params)
            value, delta = loss_and_delta(y, yhat)
            (grads,) = vjp(delta)
            steps = [step_size / x.shape[0] if conv else step_size for conv in convs]  # Conv1D's / N
            params = [
                (W - step * gW, b - step * gb)
                for (W, b), (gW, gb), step in zip(params, grads, steps, strict=True)
            ]
            return params, value

        X, y = X[order].astype(dtype), y[order].astype(dtype)
        n_full = len(X) // workload.batch_size * workload.batch_size
        shape = (-1, workload.batch_size)
        self.full = (
            jnp.asarray(X[:n_full].reshape(shape + X.shape[1:])),
            jnp.asarray(y[:n_full].reshape(shape + y.shape[1:])),
        )
        self.last = (jnp.asarray(X[n_full:]), jnp.asarray(y[n_full:])) if n_full < len(X) else None

        def epoch(params, full, last):
            losses = []
            if full[0].shape[0]:
                params, values = jax.lax.scan(step, params, full)
                losses.append(values)
            if last is not None:
                params, value = step(params, last)
                losses.append(value[None])
            return params, jnp.mean(jnp.concatenate(losses))

        self._epoch = jax.jit(epoch)

    def epoch(self):
        self.params, value = self._epoch(self.params, self.full, self.last)
        return float(value)  # waits for the result


def make_runner(impl, workload, dtype, X, y, order):
    """The runner of ``impl`` for ``workload`` in ``dtype`` on data (X, y), rows in ``order``."""
    dtype = np.dtype(dtype)
    if impl in ("fused", "modules", "reference"):
        runner = PyldlRunner(impl, workload, dtype, X, y, order)
    elif impl == "hand":
        runner = HandRunner(workload, dtype, X, y, order)
    elif impl == "bare":
        runner = BareRunner(workload, dtype, X, y, order)
    elif impl == "torch":
        runner = TorchRunner(workload, dtype, X, y, order)
    elif impl == "jax":
        runner = JaxRunner(workload, dtype, X, y, order)
    else:
        raise ValueError(f"unknown implementation {impl!r}")
    runner.samples = len(X)
    return runner


def gemm_seconds(dtype, n=2048, repeats=5):
    """Seconds of one n x n x n matrix product through NumPy (median of ``repeats``)."""
    rs = np.random.RandomState(0)
    A, B = rs.standard_normal((n, n)).astype(dtype), rs.standard_normal((n, n)).astype(dtype)
    out = A @ B
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(A, B, out=out)
        times.append(time.perf_counter() - start)
    return float(np.median(times)), times


def worker(conn, impl, env):
    """Serve one implementation in its own process (so thread pools never share one).

    Requests on ``conn``: ("prepare", key, dtype, n_samples, n_check) builds the runner, times
    the first call (compile plus one epoch) and trains ``n_check`` epochs in all, returning
    their losses; ("time", reps, pause) sleeps ``pause`` s, then times ``reps`` epochs;
    ("gemm", dtype) times a 2048^3 product; ("threads",) gives the thread counts pyldl's
    automatic choice keeps for the products of the last "prepare", which starts them afresh
    (None while it measures; none where they are too small to split); ("drop",) frees the
    runner; ("ping",) answers
    once the imports are done; ("quit",).
    Replies are ("ok", value) or ("error", message).
    """
    os.environ.update(env)
    from pyldl import threads  # after the environment: PYLDL_NUM_THREADS is read at import
    from pyldl.workloads import WORKLOADS

    for module in {"torch": ["torch"], "jax": ["jax", "jax.numpy"]}.get(impl, ["pyldl.optimizers"]):
        try:  # imported before anything is timed: first calls time compilation, not imports
            __import__(module)
        except ImportError:
            pass
    runner = None
    while True:
        request = conn.recv()
        try:
            if request[0] == "quit":
                conn.send(("ok", None))
                return
            if request[0] == "ping":
                reply = None
            elif request[0] == "prepare":
                _, key, dtype, n_samples, n_check = request
                runner = None
                threads._choices.clear()  # each cell's thread choice starts afresh, as in a new process
                workload = WORKLOADS[key]
                X, y = workload.data(n_samples)
                start = time.perf_counter()
                runner = make_runner(impl, workload, dtype, X, y, workload.permutation(len(X)))
                losses = [runner.epoch()]
                first_call = time.perf_counter() - start
                epoch_times = []
                for _ in range(n_check - 1):
                    start = time.perf_counter()
                    losses.append(runner.epoch())
                    epoch_times.append(time.perf_counter() - start)
                reply = {
                    "first_call": first_call,
                    "losses": losses,
                    "epoch_times": epoch_times,
                    "samples": runner.samples,
                }
            elif request[0] == "time":
                _, reps, pause = request
                time.sleep(pause)
                start = time.perf_counter()
                for _ in range(reps):
                    runner.epoch()
                reply = (time.perf_counter() - start) / reps
            elif request[0] == "gemm":
                reply = gemm_seconds(np.dtype(request[1]))
            elif request[0] == "threads":
                reply = sorted({choice.kept for choice in threads._choices.values()}, key=str)
            elif request[0] == "drop":
                runner, reply = None, None
            else:
                raise ValueError(f"unknown request {request!r}")
            conn.send(("ok", reply))
        except Unavailable as error:
            runner = None
            conn.send(("unavailable", str(error)))
        except Exception as error:  # reported by the parent, which goes on without this cell
            runner = None
            conn.send(("error", f"{type(error).__name__}: {error}"))
