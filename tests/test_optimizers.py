"""Optim, SGD and Trainer: the fused (one compiled call per epoch) path, the module-by-module
path and the plain-NumPy reference give the same losses and parameters."""

# PyLDL draws from NumPy's global RNG, so these tests do too.
# ruff: noqa: NPY002

import contextlib
import math
import re
import threading

import numba
import numpy as np
import pytest
from conftest import (
    DTYPES,
    assert_close,
    assert_float32_stays_float32,
    compiled_only,
    float64_operations,
    mlp,
    seeded,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import pyldl
import pyldl.reference as ref
from pyldl import optimizers
from pyldl import threads as _threads
from pyldl.base import Activation, Loss, Module, leaves
from pyldl.exceptions import DimensionMismatchError, DivergenceError
from pyldl.kernels import _blas
from pyldl.kernels import losses as loss_kernels
from pyldl.kernels import modules as module_kernels
from pyldl.kernels import optimizers as kernels
from pyldl.kernels._numba import OPTIONS
from pyldl.optimizers import Trainer
from pyldl.workloads import WORKLOADS

PATHS = {"fused": {"fused": True}, "modules": {"fused": False}}

# ---------------------------------------------------------------- networks


def autoencoder(ns, dtype):
    """An AutoEncoder of nested containers."""
    encoder = ns.Sequential(
        ns.Linear(4, 5, dtype=dtype), ns.Tanh(), ns.Sequential(ns.Linear(5, 2, dtype=dtype), ns.Sigmoid())
    )
    decoder = ns.Sequential(ns.Linear(2, 5, dtype=dtype), ns.ReLU(), ns.Linear(5, 3, dtype=dtype))
    return ns.AutoEncoder(encoder, ns.Sequential(decoder, ns.Sigmoid()))


def odd_layout(ns, dtype):
    """An activation first, two activations in a row, two Linear layers in a row."""
    return ns.Sequential(
        ns.Sequential(ns.Sigmoid(), ns.Linear(4, 5, dtype=dtype)),
        ns.Tanh(),
        ns.Tanh(),
        ns.Linear(5, 4, bias=False, dtype=dtype),
        ns.Linear(4, 3, dtype=dtype),
        ns.Sigmoid(),
    )


def single_linear(ns, dtype):
    return ns.Sequential(ns.Linear(4, 3, dtype=dtype))


NETWORKS = {"mlp": mlp, "autoencoder": autoencoder, "odd_layout": odd_layout, "linear": single_linear}


def build(build_network, ns, dtype, seed=0):
    with seeded(seed):
        return build_network(ns, dtype)


def parameters(network):
    """Every parameter array, in forward order (the arrays themselves)."""
    return list(optimizers._arrays(network))


def data(rows, seed=1):
    rs = np.random.RandomState(seed)
    return rs.standard_normal((rows, 4)), rs.uniform(0.05, 0.95, (rows, 3))


def train(ns, network, loss_name, X, y, batch_size, gradient_step, n_iter, seed=5, **kwargs):
    """SGD with the global RNG seeded (the permutation); returns (losses, parameter copies)."""
    loss = getattr(ns, loss_name)()
    with seeded(seed):
        losses = ns.SGD(network, loss, X, y, batch_size, gradient_step, n_iter, progress=False, **kwargs)
    return losses, [p.copy() for p in parameters(network)]


def assert_same_run(run, expected, dtype, value_type=float):
    """Same losses (of ``value_type``: SGD's are Python floats, Optim.step's NumPy scalars of
    the network's dtype) and parameters within the run tolerance."""
    (losses, params), (expected_losses, expected_params) = run, expected
    assert all(type(v) is value_type for v in losses)
    assert_close(np.array(losses), np.array(expected_losses), "run", dtype)
    assert len(params) == len(expected_params)
    for p, q in zip(params, expected_params, strict=True):
        assert_close(p, q, "run", dtype)


# ---------------------------------------------------------------- fused == modules == reference


@pytest.mark.parametrize("loss_name", ["MSELoss", "BCELoss"])
@pytest.mark.parametrize("name", NETWORKS)
def test_fused_and_module_by_module_match_the_reference(name, loss_name, dtype):
    X, y = data(50)  # batches of 16: the last has 2 rows
    step = 0.01 if name == "linear" else 0.1
    expected = train(ref, build(NETWORKS[name], ref, dtype), loss_name, X, y, 16, step, 8)
    for kwargs in PATHS.values():
        network = build(NETWORKS[name], pyldl, dtype)
        run = train(pyldl, network, loss_name, X, y, 16, step, 8, **kwargs)
        assert_same_run(run, expected, dtype)
    if loss_name == "MSELoss":
        assert expected[0][-1] < expected[0][0]  # it trains


def one_hot_data(rows, seed=1):
    """X as ``data``, y one-hot rows of 3 classes (CrossEntropyLoss's targets)."""
    X, y = data(rows, seed)
    return X, np.eye(3)[np.argmax(y, axis=1)]


@pytest.mark.parametrize("name", NETWORKS)
def test_cross_entropy_fused_and_module_by_module_match_the_reference(name, dtype):
    X, y = one_hot_data(50)
    expected = train(ref, build(NETWORKS[name], ref, dtype), "CrossEntropyLoss", X, y, 16, 0.05, 8)
    for kwargs in PATHS.values():
        network = build(NETWORKS[name], pyldl, dtype)
        run = train(pyldl, network, "CrossEntropyLoss", X, y, 16, 0.05, 8, **kwargs)
        assert_same_run(run, expected, dtype)
    assert expected[0][-1] < expected[0][0]  # it trains


def test_cross_entropy_with_probability_targets_and_its_golden_run():
    """Soft targets train alike on every path; the first epoch's loss is that of the initial
    logits (computed here with NumPy), not PyLDL's value, which lacks the row maximum."""
    X, y = data(30)
    y = y / y.sum(axis=1, keepdims=True)
    network = build(single_linear, ref, np.float64)
    W, b = (p.copy() for p in parameters(network))
    expected = train(ref, network, "CrossEntropyLoss", X, y, 30, 0.1, 3)
    logits = X @ W + b
    first = np.mean(np.log(np.sum(np.exp(logits), axis=1)) - np.sum(y * logits, axis=1))
    assert_close(expected[0][0], first, "op", np.float64)
    for kwargs in PATHS.values():
        run = train(
            pyldl, build(single_linear, pyldl, np.float64), "CrossEntropyLoss", X, y, 30, 0.1, 3, **kwargs
        )
        assert_same_run(run, expected, np.float64)


@pytest.mark.parametrize(
    "rows, batch_size",
    [(48, 16), (50, 16), (13, 1), (7, 64), (1, 1)],
    ids=["whole_batches", "partial_last", "batch_of_1", "fewer_rows_than_a_batch", "one_row"],
)
def test_batch_layouts(rows, batch_size, dtype):
    X, y = data(rows)
    expected = train(ref, build(autoencoder, ref, dtype), "BCELoss", X, y, batch_size, 0.2, 4)
    for kwargs in PATHS.values():
        run = train(pyldl, build(autoencoder, pyldl, dtype), "BCELoss", X, y, batch_size, 0.2, 4, **kwargs)
        assert_same_run(run, expected, dtype)


@pytest.mark.parametrize("hidden", [0, 2, 6], ids=["1-1", "1-2-1", "1-6-1"])
def test_one_input_and_one_output(hidden, dtype):
    """Linear layers of one input or one output (the kernel's rank-1 products)."""

    def narrow(ns, dtype):
        if not hidden:
            return ns.Sequential(ns.Linear(1, 1, dtype=dtype))
        return ns.Sequential(ns.Linear(1, hidden, dtype=dtype), ns.Tanh(), ns.Linear(hidden, 1, dtype=dtype))

    rs = np.random.RandomState(3)
    X = rs.standard_normal((40, 1))
    y = np.sin(X) + 0.1 * rs.standard_normal((40, 1))
    expected = train(ref, build(narrow, ref, dtype), "MSELoss", X, y, 16, 0.02, 5)
    for kwargs in PATHS.values():
        assert_same_run(
            train(pyldl, build(narrow, pyldl, dtype), "MSELoss", X, y, 16, 0.02, 5, **kwargs), expected, dtype
        )


def test_sgd_matches_a_hand_written_loop():
    """PyLDL's SGD in a dozen lines of NumPy: one permutation, consecutive batches, the last
    partial one kept, the same batches every epoch, the epoch loss the mean of batch losses."""
    X, y = data(23)
    with seeded(0):
        W, b = np.random.uniform(-0.5, 0.5, (4, 3)), np.random.uniform(-0.5, 0.5, (1, 3))
    with seeded(5):
        order = np.random.permutation(23)
    expected_losses = []
    for _ in range(6):
        batch_losses = []
        for start in range(0, 23, 10):
            xb, yb = X[order[start : start + 10]], y[order[start : start + 10]]
            yhat = 1 / (1 + np.exp(-(xb @ W + b)))
            batch_losses.append(np.mean(np.sum((yb - yhat) ** 2, axis=1)))
            delta = -2 * (yb - yhat) * yhat * (1 - yhat)
            W, b = W - 0.3 * xb.T @ delta, b - 0.3 * delta.sum(axis=0)
        expected_losses.append(np.mean(batch_losses))
    for ns, kwargs in [(ref, {}), (pyldl, PATHS["fused"]), (pyldl, PATHS["modules"])]:
        with seeded(0):  # PyLDL's init: U(-1/sqrt(4), 1/sqrt(4)), the weights then the bias
            network = ns.Sequential(ns.Linear(4, 3), ns.Sigmoid())
        run = train(ns, network, "MSELoss", X, y, 10, 0.3, 6, **kwargs)
        assert_same_run(run, (expected_losses, [W, b]), np.float64)


@pytest.mark.slow  # 15 s without the JIT; the same paths as the matches-the-reference tests
@pytest.mark.parametrize("key", ["W2", "W3", "W4"])
def test_workloads_at_reduced_size(key):
    workload = WORKLOADS[key]
    X, y = workload.data(workload.quick_samples or 200)
    results = []
    for ns, kwargs in [(ref, {}), (pyldl, PATHS["fused"])]:
        network = workload.network(ns)
        with seeded(1):
            losses = ns.SGD(
                network, workload.loss_module(ns), X, y, workload.batch_size, workload.gradient_step, 2,
                progress=False, **kwargs,
            )  # fmt: skip
        results.append((losses, parameters(network)))
    assert_same_run(results[0], results[1], np.float64)


def test_products_large_enough_are_split_and_blas_runs_on_one_thread(monkeypatch):
    """W4's products (64 rows x 256 x 100) are split into panels, so their thread count is
    chosen (keyed by the products, rows and dtype), with SciPy's OpenBLAS on one thread inside;
    W2's are too small for either. The OpenBLAS count comes back afterwards."""
    seen, running = [], _threads.running

    @contextlib.contextmanager
    def spy(key, threads=None):
        with running(key, threads) as run:
            seen.append((key, _blas.blas_threads()))
            yield run

    monkeypatch.setattr(_threads, "running", spy)
    before = _blas.blas_threads()
    plans = {}
    for key in ("W4", "W2"):
        workload = WORKLOADS[key]
        X, y = workload.data(64)
        trainer = Trainer(workload.network(), workload.loss_module(), X, y, workload.batch_size, 0.01)
        trainer.epoch()
        plans[key] = trainer._plan
    assert seen == [(("d", 64, ((64, 100, 256), (64, 4, 100), (64, 100, 4), (64, 256, 100))), 1)]
    assert plans["W4"]._threads_key == seen[0][0]
    assert plans["W2"]._threads_key is None and not plans["W2"]._blas_sized
    assert _blas.blas_threads() == before


@pytest.mark.skipif(_blas._THREADS is None, reason="SciPy's BLAS is not OpenBLAS")
def test_one_thread_puts_the_thread_count_back():
    set_threads, get_threads = _blas._THREADS
    before = get_threads()
    try:
        set_threads(2)
        threaded = get_threads()  # 2, or fewer where OpenBLAS has fewer
        inside = []
        barrier = threading.Barrier(2)

        def job():
            with _blas.one_thread():
                barrier.wait()  # both blocks open at once
                inside.append(get_threads())
                barrier.wait()

        threads = [threading.Thread(target=job) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with _blas.one_thread(), _blas.one_thread():
            inside.append(get_threads())
        assert inside == [1, 1, 1]
        assert get_threads() == threaded
    finally:
        set_threads(before)


# ---------------------------------------------------------------- Optim


@pytest.mark.parametrize("loss_name", ["MSELoss", "BCELoss", "CrossEntropyLoss"])
def test_optim_step_matches_the_reference(loss_name, dtype):
    X, y = one_hot_data(40) if loss_name == "CrossEntropyLoss" else data(40)
    sizes = [5, 20, 3, 12]  # the work buffer grows, then is reused
    runs = []
    for ns, kwargs in [(ref, {}), (pyldl, PATHS["fused"]), (pyldl, PATHS["modules"])]:
        network = build(mlp, ns, dtype)
        optim = ns.Optim(network, getattr(ns, loss_name)(), 0.1, **kwargs)
        losses, start = [], 0
        for size in sizes * 2:
            losses.append(optim(X[start : start + size], y[start : start + size]))
            start = (start + size) % 30
        runs.append((losses, parameters(network)))
    assert pyldl.Optim(build(mlp, pyldl, dtype), getattr(pyldl, loss_name)()).fused
    for run in runs:
        assert_same_run(run, runs[0], dtype, np.dtype(dtype).type)


def test_optim_step_checks_its_batch():
    optim = pyldl.Optim(build(mlp, pyldl, np.float64), pyldl.MSELoss(), fused=True)
    X, y = data(6)
    with pytest.raises(DimensionMismatchError):
        optim.step(X[:, :3], y)
    with pytest.raises(DimensionMismatchError):
        optim.step(X, y[:, :2])
    with pytest.raises(DimensionMismatchError):
        optim.step(X[0], y[0])
    with pytest.raises(ValueError, match="empty"):
        optim.step(X[:0], y[:0])
    assert type(optim.step(X.astype(int), (y > 0.5).astype(int))) is np.float64  # integers accepted


# ---------------------------------------------------------------- what falls back


class Scale(Module):
    """A user's plain-NumPy layer with a parameter."""

    def __init__(self, width):
        super().__init__()
        self._parameters = np.random.uniform(0.5, 1.5, (1, width))
        self.zero_grad()

    def forward(self, X):
        return X * self._parameters

    def backward_update_gradient(self, input, delta):
        self._gradient += (input * delta).sum(axis=0, keepdims=True)

    def backward_delta(self, input, delta):
        return delta * self._parameters


class Softsign(Activation):
    def forward(self, X):
        return X / (1 + np.abs(X))

    def backward_delta(self, input, delta):
        return delta / (1 + np.abs(input)) ** 2


class HalfMSE(Loss):
    def forward(self, y, yhat):
        return float(0.5 * np.mean(np.sum((y - yhat) ** 2, axis=1)))

    def backward(self, y, yhat):
        return yhat - y


def user_network(ns, dtype=np.float64):
    return ns.Sequential(ns.Linear(4, 5), Scale(5), Softsign(), ns.Linear(5, 3), ns.Sigmoid())


class MyTanh(pyldl.Tanh):
    """A subclass of a built-in: the user's code, so it falls back."""


@pytest.mark.parametrize(
    "make, loss_name, culprit",
    [
        (user_network, "MSELoss", "Scale"),
        (lambda ns, dtype: ns.Sequential(ns.Linear(4, 3), (MyTanh if ns is pyldl else ns.Tanh)()), "BCELoss",
         "MyTanh"),
        (mlp, "HalfMSE", "HalfMSE"),
    ],
    ids=["user_module", "subclass_of_a_built_in", "user_loss"],
)  # fmt: skip
def test_user_code_falls_back_with_the_same_results(make, loss_name, culprit):
    X, y = data(30)
    expected_loss = HalfMSE if loss_name == "HalfMSE" else getattr(ref, loss_name)
    loss = HalfMSE if loss_name == "HalfMSE" else getattr(pyldl, loss_name)
    network = build(make, ref, np.float64)
    with seeded(5):
        expected = ref.SGD(network, expected_loss(), X, y, 8, 0.1, 5, progress=False), parameters(network)
    network = build(make, pyldl, np.float64)
    with seeded(5):
        trainer = Trainer(network, loss(), X, y, 8, 0.1)
    assert not trainer.fused
    with seeded(5):
        run = pyldl.SGD(network, loss(), X, y, 8, 0.1, 5, progress=False), parameters(network)
    assert_same_run(run, expected, np.float64)
    with pytest.raises(TypeError, match=culprit):
        Trainer(build(make, pyldl, np.float64), loss(), X, y, 8, 0.1, fused=True)
    with pytest.raises(TypeError, match=culprit):
        pyldl.Optim(build(make, pyldl, np.float64), loss(), 0.1, fused=True)
    assert not pyldl.Optim(build(make, pyldl, np.float64), loss(), 0.1).fused


def test_what_cannot_be_fused_is_named():
    X, y = data(10)
    cases = [
        (pyldl.Sequential(ref.Linear(4, 3)), "Sequential > Linear"),  # the plain-NumPy Linear
        (pyldl.Sequential(pyldl.Tanh()), "no Linear"),
        (pyldl.Sequential(pyldl.Linear(4, 3), pyldl.Linear(3, 3, dtype=np.float32)), "mix dtypes"),
    ]
    for network, message in cases:
        with pytest.raises(TypeError, match=message):
            Trainer(network, pyldl.MSELoss(), X, y, fused=True)
        assert not Trainer(network, pyldl.MSELoss(), X, y).fused
    with pytest.raises(TypeError, match="fused"):
        Trainer(build(mlp, pyldl, np.float64), pyldl.MSELoss(), X, y, fused="yes")


def test_mismatched_shapes_raise_on_both_paths():
    X, y = data(10)
    for kwargs in PATHS.values():
        with pytest.raises(DimensionMismatchError):
            pyldl.SGD(build(mlp, pyldl, np.float64), pyldl.MSELoss(), X[:, :3], y, n_iter=1, progress=False,
                      **kwargs)  # fmt: skip
        with pytest.raises(DimensionMismatchError):
            pyldl.SGD(build(mlp, pyldl, np.float64), pyldl.MSELoss(), X, y[:, :2], n_iter=1, progress=False,
                      **kwargs)  # fmt: skip
    broken = build(mlp, pyldl, np.float64)
    broken._modules[2]._parameters = np.zeros((4, 5))  # takes 4 features, gets 6
    with pytest.raises(DimensionMismatchError):
        Trainer(broken, pyldl.MSELoss(), X, y, fused=True)


# ---------------------------------------------------------------- the parameters


def test_parameters_stay_the_same_arrays(dtype):
    network = build(autoencoder, pyldl, dtype)
    before = parameters(network)
    copies = [p.copy() for p in before]
    X, y = data(30)
    with seeded(5):
        pyldl.SGD(network, pyldl.BCELoss(), X, y, 8, 0.1, 3, progress=False, fused=True)
    after = parameters(network)
    assert all(a is b for a, b in zip(after, before, strict=True))
    assert all(a.dtype == dtype and a.flags.c_contiguous for a in after)
    assert all(not np.array_equal(a, c) for a, c in zip(after, copies, strict=True))


def reassign(network):
    """What PyLDL notebooks do: new weights of another dtype and layout, a 1-D bias."""
    network._modules[0]._parameters = np.arange(24).reshape(6, 4).T * 0.05  # not C-contiguous
    network._modules[-2]._bias = np.full(3, 0.25)  # 1-D


def test_reassigned_parameters_are_picked_up(dtype):
    X, y = data(30)
    runs = []
    for ns, kwargs in [(ref, {}), (pyldl, PATHS["fused"]), (pyldl, PATHS["modules"])]:
        network = build(mlp, ns, dtype)
        train(ns, network, "MSELoss", X, y, 8, 0.1, 2, **kwargs)
        reassign(network)
        runs.append(train(ns, network, "MSELoss", X, y, 8, 0.1, 2, **kwargs))
        assert network._modules[0]._parameters.dtype == dtype
    for run in runs[1:]:
        assert_same_run(run, runs[0], dtype)


def test_trainer_and_optim_pick_up_arrays_assigned_between_calls(dtype):
    X, y = data(30)
    network = build(mlp, pyldl, dtype)
    with seeded(5):
        trainer = Trainer(network, pyldl.MSELoss(), X, y, 8, 0.1, fused=True)
    expected_network = build(mlp, ref, dtype)
    with seeded(5):
        order = np.random.permutation(30)
    expected = ref.Optim(expected_network, ref.MSELoss(), 0.1)

    def expected_epoch():
        batches = [(X[order][i : i + 8], y[order][i : i + 8]) for i in range(0, 30, 8)]
        return float(np.mean([expected.step(bx, by) for bx, by in batches]))

    assert_close(trainer.epoch(), expected_epoch(), "run", dtype)
    new = np.ascontiguousarray(network._modules[2]._parameters * 2)
    network._modules[2]._parameters = new
    expected_network._modules[2]._parameters = expected_network._modules[2]._parameters * 2
    assert_close(trainer.epoch(), expected_epoch(), "run", dtype)
    assert network._modules[2]._parameters is new  # trained in place
    assert_close(new, expected_network._modules[2]._parameters, "run", dtype)

    optim = pyldl.Optim(network, pyldl.MSELoss(), 0.1)
    network._modules[0]._bias = np.zeros(6, dtype)
    expected_network._modules[0]._bias = np.zeros(6, dtype)
    assert_close(optim.step(X, y), ref.Optim(expected_network, ref.MSELoss(), 0.1).step(X, y), "run", dtype)
    for p, q in zip(parameters(network), parameters(expected_network), strict=True):
        assert_close(p, q, "run", dtype)


def test_read_only_parameters_are_refused():
    network = build(mlp, pyldl, np.float64)
    network._modules[0]._parameters.flags.writeable = False
    X, y = data(10)
    with pytest.raises(ValueError, match="read-only"):
        pyldl.SGD(network, pyldl.MSELoss(), X, y, n_iter=1, progress=False)


def test_float32_stays_float32():
    network = build(mlp, pyldl, np.float32)
    X, y = data(20)
    losses, params = train(pyldl, network, "BCELoss", X, y, 8, 0.1, 2, fused=True)
    assert all(type(v) is float for v in losses)
    assert all(p.dtype == np.float32 for p in params)
    for fused in (True, False):
        assert type(pyldl.Optim(network, pyldl.MSELoss(), fused=fused).step(X, y)) is np.float32
    if numba.config.DISABLE_JIT:
        return
    float32_signatures = [s for s in kernels.sgd_epoch.signatures if s[9].dtype == numba.float32]  # work
    assert float32_signatures, "the fused epoch was not compiled for float32 parameters"
    for signature in float32_signatures:
        arrays_and_scalars = [signature[i] for i in (3, 4, 6, 8, 9, 10)]  # X y lr eps work snapshot
        assert [getattr(t, "dtype", t) for t in arrays_and_scalars] == [numba.float32] * 6


# ---------------------------------------------------------------- SGD's guards


@pytest.mark.parametrize("path", PATHS)
def test_divergence_keeps_the_last_finite_epoch(path):
    X, y = data(30)
    y = y * 10
    network = build(single_linear, pyldl, np.float64)
    with np.errstate(all="ignore"), pytest.raises(DivergenceError) as info:
        train(pyldl, network, "MSELoss", X, y, 8, 50.0, 200, **PATHS[path])
    error = info.value
    assert error.epoch == len(error.losses) - 1 > 1
    assert not math.isfinite(error.losses[-1]) and all(math.isfinite(v) for v in error.losses[:-1])
    expected = build(single_linear, pyldl, np.float64)
    with np.errstate(all="ignore"):
        losses, params = train(pyldl, expected, "MSELoss", X, y, 8, 50.0, error.epoch, **PATHS[path])
    assert losses == error.losses[:-1]
    assert all(np.array_equal(p, q) for p, q in zip(parameters(network), params, strict=True))


@pytest.mark.parametrize("path", PATHS)
def test_keyboard_interrupt_restores_the_last_finished_epoch(path, monkeypatch):
    """A compiled epoch cannot be interrupted: Ctrl-C surfaces when it returns."""
    X, y = data(30)
    epoch, calls = Trainer.epoch, []

    def interrupted_epoch(self):
        value = epoch(self)
        calls.append(value)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return value

    monkeypatch.setattr(Trainer, "epoch", interrupted_epoch)
    network = build(mlp, pyldl, np.float64)
    with pytest.raises(KeyboardInterrupt):
        train(pyldl, network, "MSELoss", X, y, 8, 0.1, 10, **PATHS[path])
    monkeypatch.undo()
    expected = build(mlp, pyldl, np.float64)
    _, params = train(pyldl, expected, "MSELoss", X, y, 8, 0.1, 2, **PATHS[path])
    assert all(np.array_equal(p, q) for p, q in zip(parameters(network), params, strict=True))


@pytest.mark.parametrize("path", PATHS)
def test_trainer_snapshot_and_restore(path):
    X, y = data(30)
    network = build(mlp, pyldl, np.float64)
    with seeded(5):
        trainer = Trainer(network, pyldl.MSELoss(), X, y, 8, 0.1, snapshot=True, **PATHS[path])
    assert trainer.fused == (path == "fused")
    trainer.epoch()
    after_one = [p.copy() for p in parameters(network)]
    trainer.epoch()
    assert not all(np.array_equal(p, q) for p, q in zip(parameters(network), after_one, strict=True))
    trainer.restore()
    assert all(np.array_equal(p, q) for p, q in zip(parameters(network), after_one, strict=True))
    with seeded(5), pytest.raises(RuntimeError, match="snapshot"):
        Trainer(network, pyldl.MSELoss(), X, y, 8, 0.1, **PATHS[path]).restore()


def test_progress_bar_can_be_turned_off(capsys):
    X, y = data(10)
    pyldl.SGD(build(mlp, pyldl, np.float64), pyldl.MSELoss(), X, y, n_iter=3, progress=False)
    assert capsys.readouterr().err == ""
    pyldl.SGD(build(mlp, pyldl, np.float64), pyldl.MSELoss(), X, y, n_iter=3)
    assert "3/3" in capsys.readouterr().err


def test_zero_epochs_change_nothing():
    network = build(mlp, pyldl, np.float64)
    copies = [p.copy() for p in parameters(network)]
    X, y = data(10)
    assert pyldl.SGD(network, pyldl.MSELoss(), X, y, n_iter=0, progress=False) == []
    assert all(np.array_equal(p, c) for p, c in zip(parameters(network), copies, strict=True))


# float64 on purpose: the loss totals (sum64 over the terms, the batch losses' mean), as in the
# loss kernels; the widened terms are added, divided by counts and negated, nothing else
TOTALS = ("fpext", "fadd", "fdiv")


def assert_epoch_stays_float32(epoch, args):
    """The epoch's float64 work: the loss totals, and the callbacks' calls through the table
    (their C signature takes BCE's clipping margin as a double and returns the loss)."""
    found = float64_operations(epoch, *args)
    extra = {opcode: lines[:3] for opcode, lines in found.items() if opcode not in (*TOTALS, "call")}
    assert not extra, f"the epoch computes in float64 on float32 data: {extra}"
    calls = found.get("call", [])
    assert calls, "no callback call found: the check looks at the wrong code"
    for line in calls:
        assert re.search(r"call double %[.\w]+\(", line), line  # a call at an address


@compiled_only
def test_float32_fused_kernels_compute_in_float32(monkeypatch):
    calls, epoch = [], kernels.sgd_epoch
    monkeypatch.setattr(kernels, "sgd_epoch", lambda *args: calls.append(args) or epoch(*args))
    network = build(mlp, pyldl, np.float32)
    X, y = data(10)
    Trainer(network, pyldl.BCELoss(), X, y, 4, 0.1, fused=True).epoch()
    assert_epoch_stays_float32(epoch, calls[0])
    calls, epoch = [], kernels.sgd_epoch_sequences  # Conv1D and MaxPool1D steps
    monkeypatch.setattr(kernels, "sgd_epoch_sequences", lambda *args: calls.append(args) or epoch(*args))
    X, y = sequences(6)
    conv = conv_net(pyldl, np.float32)  # alive: the plan in calls[0] holds its arrays' addresses
    Trainer(conv, pyldl.MSELoss(), X, y, 4, 0.1, fused=True).epoch()
    assert_epoch_stays_float32(epoch, calls[0])
    f = np.float32
    m = np.full((4, 3), 0.5, f)
    rows = (np.intp(4), np.intp(3))  # then eps (a double: BCE's narrows it), lo and hi
    for callback in kernels._CALLBACKS[kernels.LOSS].values():  # compiled on arrays, not pointers
        args = (m, m, m.copy(), m.ravel().copy(), *rows, 1e-7, np.intp(1), np.intp(3), np.intp(1))
        assert_float32_stays_float32(numba.njit(**OPTIONS)(callback), args, ("fptrunc", *TOTALS))
    assert_float32_stays_float32(loss_kernels.sum64, (m.ravel(),), ("fpext", "fadd"))
    for row in (kernels.FORWARD, kernels.BACKWARD):
        for callback in kernels._CALLBACKS[row].values():
            args = (m, m.copy(), None, None, *rows, 0.0, np.intp(1), np.intp(3), np.intp(0))
            assert_float32_stays_float32(numba.njit(**OPTIONS)(callback), args)
    one_output = m[:, :1].copy()  # the delta below a Linear of one output: an outer product
    assert_float32_stays_float32(
        module_kernels.linear_backward_delta, (one_output, m[:1].T.copy(), m.copy(), 0)
    )


@pytest.mark.parametrize("path", PATHS)
def test_a_linear_reassigned_wider_between_epochs(path):
    """The work buffer's rows are recomputed when a Linear is rebound to a wider output."""
    X, y = data(30)
    runs = []
    for ns, kwargs in [(ref, {}), (pyldl, PATHS[path])]:
        network = build(mlp, ns, np.float64)
        with seeded(5):
            trainer = Trainer(network, ns.MSELoss(), X, y, 8, 0.1, **kwargs)
        losses = [trainer.epoch()]
        first, second = [m for _, m in leaves(network) if isinstance(m, ref.Linear)][:2]
        rs = np.random.RandomState(7)
        first._parameters = rs.uniform(-0.5, 0.5, (first._parameters.shape[0], 40))
        first._bias = rs.uniform(-0.5, 0.5, (1, 40))
        second._parameters = rs.uniform(-0.5, 0.5, (40, second._parameters.shape[1]))
        losses.append(trainer.epoch())
        runs.append((losses, [p.copy() for p in parameters(network)]))
    assert runs[1][1][0].shape[1] == 40
    assert_same_run(runs[1], runs[0], np.float64)


@pytest.mark.parametrize("path", PATHS)
def test_snapshot_grows_when_a_bias_is_assigned(path):
    """Trainer(snapshot=True) on a Linear without bias, then ``_bias`` assigned: restore()
    puts back every parameter of the epoch's start, the new bias included."""
    X, y = data(30)
    with seeded(0):
        network = pyldl.Sequential(pyldl.Linear(4, 3, bias=False), pyldl.Sigmoid())
    with seeded(5):
        trainer = Trainer(network, pyldl.MSELoss(), X, y, 8, 0.1, snapshot=True, **PATHS[path])
    trainer.epoch()
    network._modules[0]._bias = np.full((1, 3), 0.25)
    before = [p.copy() for p in parameters(network)]
    trainer.epoch()
    assert not np.array_equal(network._modules[0]._bias, before[1])
    trainer.restore()
    assert len(parameters(network)) == 2
    for p, q in zip(parameters(network), before, strict=True):
        np.testing.assert_array_equal(p, q)


# ---------------------------------------------------------------- convolutional networks


def conv_net(ns, dtype, stride=2, head=True):
    """Conv1D, ReLU, MaxPool1D (overlapping windows), Flatten, Linear: W8 in miniature (on
    sequences of length 7; ``head``: a Sigmoid last, for MSE and BCE)."""
    pooled = (7 - 3) // stride  # the conv's positions, less one for the pool
    layers = [
        ns.Conv1D(3, 2, 4, stride, dtype=dtype),
        ns.ReLU(),
        ns.MaxPool1D(2, 1),
        ns.Flatten(),
        ns.Linear(pooled * 4, 3, dtype=dtype),
    ]
    return ns.Sequential(*layers, *([ns.Sigmoid()] if head else []))


def deep_conv_net(ns, dtype, stride=2, head=True):
    """Two Conv1D (the second gets a delta below it, has several input channels and no bias),
    a Tanh alone after a pool, a Flatten inside a nested Sequential."""
    length = ((7 - 2 + 1) - 2) // stride + 1  # after Conv1D(2, stride 1), then Conv1D(2, stride)
    pooled = (length - 2) // 2 + 1
    return ns.Sequential(
        ns.Conv1D(2, 2, 3, 1, dtype=dtype),
        ns.Tanh(),
        ns.Conv1D(2, 3, 4, stride, bias=False, dtype=dtype),
        ns.MaxPool1D(2, 2),
        ns.Tanh(),
        ns.Sequential(ns.Flatten(), ns.Linear(pooled * 4, 3, dtype=dtype)),
        *([ns.Sigmoid()] if head else []),
    )


CONV_NETS = {"conv": conv_net, "deep_conv": deep_conv_net}


def sequences(rows, seed=2, one_hot=False):
    rs = np.random.RandomState(seed)
    X, y = rs.standard_normal((rows, 7, 2)), rs.uniform(0.05, 0.95, (rows, 3))
    return X, (np.eye(3)[np.argmax(y, axis=1)] if one_hot else y)


@pytest.mark.parametrize("batch_size", [4, 1], ids=["batch4", "batch1"])  # 11 rows: the last batch has 3
@pytest.mark.parametrize("stride", [1, 2], ids=["stride1", "stride2"])
@pytest.mark.parametrize("loss_name", ["MSELoss", "BCELoss", "CrossEntropyLoss"])
@pytest.mark.parametrize("name", CONV_NETS)
def test_convolutional_network_fused_and_modules_match_the_reference(
    name, loss_name, stride, batch_size, dtype
):
    cross_entropy = loss_name == "CrossEntropyLoss"
    X, y = sequences(11, one_hot=cross_entropy)
    step = 0.05 if cross_entropy else 0.5

    def make(ns, dtype):
        return CONV_NETS[name](ns, dtype, stride, head=not cross_entropy)

    expected = train(ref, build(make, ref, dtype), loss_name, X, y, batch_size, step, 3)
    for path, kwargs in PATHS.items():
        network = build(make, pyldl, dtype)
        assert Trainer(network, getattr(pyldl, loss_name)(), X, y, batch_size, **kwargs).fused == (
            path == "fused"
        )
        run = train(pyldl, network, loss_name, X, y, batch_size, step, 3, **kwargs)
        assert_same_run(run, expected, dtype)
    assert expected[0][-1] < expected[0][0]


@pytest.mark.parametrize("name", CONV_NETS)
def test_convolutional_optim_step_matches_the_reference(name, dtype):
    X, y = sequences(20)
    runs = []
    for ns, kwargs in [(ref, {}), (pyldl, PATHS["fused"]), (pyldl, PATHS["modules"])]:
        network = build(CONV_NETS[name], ns, dtype)
        optim = ns.Optim(network, ns.BCELoss(), 0.5, **kwargs)
        losses, start = [], 0
        for size in [3, 5, 1, 4]:  # the work buffer grows, then is reused
            losses.append(optim.step(X[start : start + size], y[start : start + size]))
            start += size
        runs.append((losses, parameters(network)))
    assert pyldl.Optim(build(CONV_NETS[name], pyldl, dtype), pyldl.BCELoss()).fused
    for run in runs:
        assert_same_run(run, runs[0], dtype, np.dtype(dtype).type)


def test_convolutional_plan_follows_the_sequence_length():
    """One Optim on sequences of two lengths (a Flatten first: any length fits), then errors
    for a sequence the network cannot take, before anything changes."""
    with seeded(0):
        network = pyldl.Sequential(pyldl.MaxPool1D(2, 2), pyldl.Flatten(), pyldl.Tanh(), pyldl.Linear(6, 1))
    optim = pyldl.Optim(network, pyldl.MSELoss(), 0.1, fused=True)
    X, y = sequences(4)
    assert np.isfinite(optim.step(X, y[:, :1]))
    before = [p.copy() for p in parameters(network)]
    with pytest.raises(DimensionMismatchError, match="gets inputs of 2 features"):
        optim.step(X[:, :3], y[:, :1])  # pooled to (4, 1, 2): 2 features
    with pytest.raises(DimensionMismatchError, match="shorter than its kernel"):
        optim.step(X[:, :1], y[:, :1])
    with pytest.raises(DimensionMismatchError, match="batch_x must be 3-D"):
        optim.step(X[:, :, 0], y[:, :1])
    assert all(np.array_equal(p, q) for p, q in zip(parameters(network), before, strict=True))
    assert np.isfinite(optim.step(X[:, :6], y[:, :1]))  # 3 positions of 2 channels: 6 features
    flatten_first = pyldl.Sequential(pyldl.Flatten(), pyldl.Linear(14, 2))
    assert Trainer(flatten_first, pyldl.MSELoss(), X, y[:, :2]).fused
    mismatched = pyldl.Sequential(
        pyldl.Conv1D(3, 2, 4), pyldl.Conv1D(2, 3, 1), pyldl.Flatten(), pyldl.Linear(4, 3)
    )
    with pytest.raises(
        DimensionMismatchError, match=r"Conv1D\(2, 3 -> 1, stride=1\) gets sequences of 4 channels"
    ):
        Trainer(mismatched, pyldl.MSELoss(), X, y, fused=True)


def test_what_cannot_be_fused_on_sequences_falls_back():
    X, y = sequences(8)
    cases = [
        pyldl.Sequential(pyldl.Conv1D(3, 2, 4), pyldl.Softmax(), pyldl.Flatten(), pyldl.Linear(20, 3)),
        pyldl.Sequential(pyldl.Conv1D(3, 2, 1), pyldl.Flatten(), pyldl.Conv1D(1, 1, 1)),
        pyldl.Sequential(pyldl.Conv1D(3, 2, 3, 2), pyldl.MaxPool1D(1, 1)),  # a sequence out
    ]
    messages = ["Softmax", "gets rows", "output is a sequence"]
    for network, message in zip(cases, messages, strict=True):
        with pytest.raises(TypeError, match=message):
            Trainer(network, pyldl.MSELoss(), X, y, fused=True)
    trainer = Trainer(cases[0], pyldl.MSELoss(), X, y)
    assert not trainer.fused and np.isfinite(trainer.epoch())


def test_convolutional_network_sees_assigned_parameters_and_converts_its_input():
    network = build(conv_net, pyldl, np.float32)
    conv = network._modules[0]
    conv._parameters = conv._parameters.astype(np.float64).tolist()  # any layout: converted once
    X, y = sequences(8)
    trainer = Trainer(network, pyldl.MSELoss(), X.astype(int), y, 4)
    arrays = trainer.parameters()
    assert arrays[0] is conv._parameters and arrays[0].dtype == np.float32
    before = arrays[0].copy()
    trainer.epoch()
    assert conv._parameters is arrays[0] and not np.array_equal(arrays[0], before)
    pooled_first = pyldl.Sequential(
        pyldl.MaxPool1D(2, 2), pyldl.Flatten(), pyldl.Linear(6, 1, dtype=np.float32)
    )
    assert pooled_first(X.astype(int)).dtype == np.float32  # the container converts for MaxPool1D
    assert Trainer(pooled_first, pyldl.MSELoss(), X, y[:, :1], 4).fused
    losses = pyldl.SGD(pooled_first, pyldl.MSELoss(), X, y[:, :1], 4, 0.01, 2, progress=False)
    assert len(losses) == 2 and all(type(v) is float and math.isfinite(v) for v in losses)
    assert losses[1] < losses[0]


def test_convolutional_network_divergence_keeps_the_last_finite_epoch():
    X, y = sequences(12)
    network = build(conv_net, pyldl, np.float64)
    network._modules.pop()  # no Sigmoid: a linear output diverges with MSE
    with np.errstate(all="ignore"), pytest.raises(DivergenceError) as info:
        train(pyldl, network, "MSELoss", X * 10, y * 10, 4, 2.0, 50)
    error = info.value
    assert error.epoch >= 1
    expected = build(conv_net, pyldl, np.float64)
    expected._modules.pop()
    with np.errstate(all="ignore"):
        losses, params = train(pyldl, expected, "MSELoss", X * 10, y * 10, 4, 2.0, error.epoch)
    assert losses == error.losses[:-1]
    assert len(params) == 4  # Conv1D's weights and bias are guarded too
    assert all(np.array_equal(p, q) for p, q in zip(parameters(network), params, strict=True))


def test_networks_of_linear_layers_train_in_the_kernel_without_sequence_steps():
    """Plans with Conv1D or MaxPool1D steps use ``sgd_epoch_sequences``; the others
    ``sgd_epoch``, whose sequence branches are pruned at compile time (less to compile), and
    both train the same way (a Flatten first is not a sequence step)."""
    X, y = sequences(6)
    with seeded(0):
        dense = pyldl.Sequential(pyldl.Flatten(), pyldl.Linear(14, 3), pyldl.Sigmoid())
    assert Trainer(dense, pyldl.MSELoss(), X, y, 4)._plan._epoch is kernels.sgd_epoch
    convolutional = Trainer(conv_net(pyldl, np.float64), pyldl.MSELoss(), X, y, 4)
    assert convolutional._plan._epoch is kernels.sgd_epoch_sequences
    with seeded(0):
        twin = ref.Sequential(ref.Flatten(), ref.Linear(14, 3), ref.Sigmoid())
    with seeded(1):
        fused = pyldl.SGD(dense, pyldl.MSELoss(), X, y, 4, 0.1, 3, progress=False, fused=True)
    with seeded(1):
        expected = ref.SGD(twin, ref.MSELoss(), X, y, 4, 0.1, 3, progress=False)
    assert_close(fused, expected, "run", np.float64)
    for a, b in zip(parameters(dense), parameters(twin), strict=True):
        assert_close(a, b, "run", np.float64)


@pytest.mark.parametrize("fused", [None, False], ids=["auto", "modules"])
def test_sgd_takes_sequences_when_an_activation_comes_before_the_conv1d(fused):
    """The first layer other than an activation decides whether X holds rows or sequences."""
    X, y = sequences(5)
    with seeded(0):
        network = pyldl.Sequential(pyldl.Tanh(), pyldl.Conv1D(3, 2, 4), pyldl.Flatten(), pyldl.Linear(20, 3))
    with seeded(0):
        twin = ref.Sequential(ref.Tanh(), ref.Conv1D(3, 2, 4), ref.Flatten(), ref.Linear(20, 3))
    with seeded(1):
        losses = pyldl.SGD(network, pyldl.MSELoss(), X, y, 2, 0.1, 2, progress=False, fused=fused)
    with seeded(1):
        expected = ref.SGD(twin, ref.MSELoss(), X, y, 2, 0.1, 2, progress=False)
    assert_close(losses, expected, "run", np.float64)
    with pytest.raises(DimensionMismatchError, match="must be 3-D"):
        pyldl.SGD(network, pyldl.MSELoss(), X.reshape(5, -1), y, 2, 0.1, 1, progress=False, fused=fused)


# ---------------------------------------------------------------- random networks (hypothesis)
#
# The safety net of the fused engine: any built-in network the fused path takes trains to the
# same losses and weights fused, module by module and in the reference. Few epochs and a small
# step, so that ReLU kinks and pooling ties (after ReLU, windows of zeros) are not crossed
# differently by the paths' roundings. Data come from a drawn seed, not from hypothesis's values.

ACTIVATIONS = ["Tanh", "Sigmoid", "ReLU", "Softmax"]
optional_activation = st.sampled_from([None, "Tanh", "Sigmoid", "ReLU"])


@st.composite
def sequence_layers(draw, length, channels):
    """Conv1D / MaxPool1D steps (each fitting the length left), each maybe with an activation
    after it, then Flatten; returns (layers, features after Flatten)."""
    layers = []
    for _ in range(draw(st.integers(1, 3))):
        k_size = draw(st.integers(1, min(3, length)))
        stride = draw(st.integers(1, 2))
        if draw(st.booleans()) or not layers:
            chan_out = draw(st.integers(1, 3))
            layers.append(("Conv1D", k_size, channels, chan_out, stride, draw(st.booleans())))
            channels = chan_out
        else:
            layers.append(("MaxPool1D", k_size, stride))
        length = (length - k_size) // stride + 1
        act = draw(optional_activation)
        if act:
            layers.append((act,))
        if length < 2:
            break
    return [*layers, ("Flatten",)], length * channels


@st.composite
def random_networks(draw):
    """(layers, nesting, input shape, loss name): a recipe for ``build_recipe``."""
    loss = draw(st.sampled_from(["MSELoss", "BCELoss", "CrossEntropyLoss"]))
    layers = [(draw(st.sampled_from(["Tanh", "Sigmoid"])),)] if draw(st.integers(0, 4)) == 0 else []
    if draw(st.booleans()):
        length, channels = draw(st.integers(3, 9)), draw(st.integers(1, 3))
        body, width = draw(sequence_layers(length, channels))
        layers += body
        shape = (length, channels)
    else:
        width = draw(st.integers(1, 5))
        shape = (width,)
    for i in range(draw(st.integers(1, 3))):
        out = draw(st.integers(1, 5))
        layers.append(("Linear", width, out, draw(st.booleans())))
        width = out
        last = i == 2 or draw(st.booleans())
        act = draw(st.sampled_from([None, *ACTIVATIONS])) if not last else None
        if act:
            layers.append((act,))
        if last:
            break
    if loss == "BCELoss":
        layers.append(("Sigmoid",))  # probabilities, as BCE takes them
    elif loss == "MSELoss" and draw(st.booleans()):
        layers.append((draw(st.sampled_from(ACTIVATIONS)),))
    cuts = sorted(draw(st.sets(st.integers(1, len(layers) - 1), max_size=2))) if len(layers) > 1 else []
    return layers, cuts, draw(st.booleans()), shape, width, loss


def build_recipe(ns, recipe, dtype):
    """The network of ``recipe``: its layers cut into nested containers (an AutoEncoder of the
    first two pieces when asked)."""
    layers, cuts, autoencoder, _, _, _ = recipe
    made = []
    for name, *args in layers:
        kwargs = {"dtype": dtype} if name in ("Linear", "Conv1D") else {}
        if name == "Linear":
            made.append(ns.Linear(args[0], args[1], bias=args[2], **kwargs))
        elif name == "Conv1D":
            made.append(ns.Conv1D(*args[:4], bias=args[4], **kwargs))
        else:
            made.append(getattr(ns, name)(*args))
    pieces = [made[i:j] for i, j in zip([0, *cuts], [*cuts, len(made)], strict=True)]
    containers = [ns.Sequential(*piece) for piece in pieces]
    if autoencoder and len(containers) >= 2:
        return ns.Sequential(ns.AutoEncoder(containers[0], ns.Sequential(*containers[1:])))
    return ns.Sequential(*containers)


@pytest.mark.slow
@settings(max_examples=120, deadline=None)
@given(
    recipe=random_networks(),
    dtype=st.sampled_from(DTYPES),
    rows=st.integers(1, 12),
    batch_size=st.integers(1, 8),
    epochs=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_random_networks_fused_and_module_by_module_match_the_reference(
    recipe, dtype, rows, batch_size, epochs, seed
):
    _, _, _, shape, out, loss_name = recipe
    rs = np.random.RandomState(seed)
    X = rs.standard_normal((rows, *shape))
    if loss_name == "CrossEntropyLoss":
        y = np.eye(out)[rs.randint(out, size=rows)]
    else:
        y = rs.uniform(0.05, 0.95, (rows, out))
    step = 0.05
    network = build(lambda ns, d: build_recipe(ns, recipe, d), ref, dtype)
    expected = train(ref, network, loss_name, X, y, batch_size, step, epochs)
    network = build(lambda ns, d: build_recipe(ns, recipe, d), pyldl, dtype)
    assert Trainer(network, getattr(pyldl, loss_name)(), X, y, order=np.arange(rows)).fused, "not fused"
    for kwargs in PATHS.values():
        network = build(lambda ns, d: build_recipe(ns, recipe, d), pyldl, dtype)
        run = train(pyldl, network, loss_name, X, y, batch_size, step, epochs, **kwargs)
        assert_same_run(run, expected, dtype)
