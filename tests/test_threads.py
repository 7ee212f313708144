"""Reentrancy: two threads training two networks at once get exactly what each gets alone.

The kernels release the GIL (nogil), so the threads really run kernels side by side. SGD
draws its row order from NumPy's global RNG, whose draws two threads would race for: the
tests give each thread its own permutation, so the only thing left to differ is the kernels.
"""

import threading
import time

import numba
import numpy as np
import pytest
from conftest import seeded

import pyldl
from pyldl import Linear, MSELoss, Sequential, Sigmoid, Softmax, Tanh

pytestmark = pytest.mark.skipif(
    numba.config.DISABLE_JIT, reason="tests compiled kernels that release the GIL: needs the JIT"
)

EPOCHS, BATCH = 40, 32  # about 0.1 s a training: long enough for the threads to overlap surely
SEEDS = {"A": 1, "B": 2}
_local = threading.local()


@pytest.fixture(autouse=True)
def permutation_per_thread(monkeypatch):
    """``np.random.permutation`` draws from the calling job's own generator."""
    calls = []

    def permutation(n):
        calls.append(_local.seed)
        return np.random.default_rng(_local.seed).permutation(n)

    monkeypatch.setattr(np.random, "permutation", permutation)
    return calls


def job(name, mode, dtype):
    """Everything one thread needs: a network, data and how to train it."""
    seed = SEEDS[name]
    rng = np.random.default_rng(seed)
    X, y = rng.uniform(-1, 1, (384, 16)), rng.uniform(0, 1, (384, 4))
    with seeded(seed):
        network = Sequential(
            Linear(16, 48, dtype=dtype),
            Tanh(),
            Linear(48, 48, dtype=dtype),
            Sigmoid(),
            Linear(48, 4, dtype=dtype),
            Softmax(),
        )
    return {"seed": seed, "mode": mode, "network": network, "X": X, "y": y}


def train(job):
    """Train ``job``'s network; return its losses, parameters and when it ran."""
    _local.seed = job["seed"]
    network, X, y = job["network"], job["X"], job["y"]
    start = time.perf_counter()
    if job["mode"] == "optim":
        optimizer = pyldl.Optim(network, MSELoss(), gradient_step=0.2)
        batches = range(0, len(X), BATCH)
        losses = [optimizer.step(X[i : i + BATCH], y[i : i + BATCH]) for _ in range(EPOCHS) for i in batches]
    else:
        losses = pyldl.SGD(network, MSELoss(), X, y, BATCH, 0.2, EPOCHS, progress=False)
    end = time.perf_counter()
    parameters = [
        getattr(m, name).copy()
        for m in network._modules
        for name in ("_parameters", "_bias")
        if getattr(m, name, None) is not None
    ]
    return {"losses": losses, "parameters": parameters, "span": (start, end)}


def train_concurrently(jobs):
    results, errors = [None] * len(jobs), []
    barrier = threading.Barrier(len(jobs))

    def run(i):
        try:
            barrier.wait()
            results[i] = train(jobs[i])
        except BaseException as error:  # re-raised in the main thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    if errors:
        raise errors[0]
    return results


def assert_identical(got, expected):
    assert got["losses"] == expected["losses"]
    assert len(got["parameters"]) == len(expected["parameters"])
    for a, b in zip(got["parameters"], expected["parameters"], strict=True):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize(
    "modes", [("optim", "optim"), ("sgd", "sgd"), ("optim", "sgd")], ids=["optim", "sgd", "mixed"]
)
@pytest.mark.parametrize(
    "dtypes",
    [(np.float64, np.float64), (np.float32, np.float32), (np.float64, np.float32)],
    ids=["float64", "float32", "both"],
)
def test_two_threads_match_one_after_the_other(modes, dtypes, permutation_per_thread):
    def jobs():
        return [job(name, mode, dtype) for name, mode, dtype in zip(SEEDS, modes, dtypes, strict=True)]

    alone = [train(j) for j in jobs()]  # also compiles every kernel before the threads start
    together = train_concurrently(jobs())
    for got, expected in zip(together, alone, strict=True):
        assert_identical(got, expected)
    (start_a, end_a), (start_b, end_b) = (r["span"] for r in together)
    assert start_a < end_b and start_b < end_a, "the two trainings did not overlap"
    if "sgd" in modes:
        assert permutation_per_thread, "SGD no longer draws its order with np.random.permutation"
