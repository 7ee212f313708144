"""The shared workloads W1-W10: networks with PyLDL's seeded weights, data, FLOP counts."""

# PyLDL draws from NumPy's global RNG, so these tests do too.
# ruff: noqa: NPY002

import numpy as np
import pytest
from conftest import seeded

import pyldl
import pyldl.reference as ref
from pyldl.workloads import PERMUTATION_SEED, WEIGHTS_SEED, WORKLOADS

KEYS = list(WORKLOADS)
NEEDS_SKLEARN = {"W1", "W3", "W5", "W7", "W8", "W9", "W10"}


def linears(module):
    """The layers with weights (Linear, Conv1D), in order."""
    if hasattr(module, "_modules"):
        return [layer for inner in module._modules for layer in linears(inner)]
    return [module] if isinstance(module, (ref.Linear, ref.Conv1D)) else []


def kinds(module):
    """The flat list of layer descriptions, as in ``Workload.layers``."""
    if hasattr(module, "_modules"):
        return [kind for inner in module._modules for kind in kinds(inner)]
    if isinstance(module, ref.Linear):
        return [("linear", *module._parameters.shape)]
    if isinstance(module, ref.Conv1D):
        return [("conv1d", *module._parameters.shape, module._stride)]
    if isinstance(module, ref.MaxPool1D):
        return [("maxpool1d", module._k_size, module._stride)]
    return [type(module).__name__]


def test_the_workloads():
    assert KEYS == ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "W10"]


@pytest.mark.parametrize("key", KEYS)
def test_network_has_the_same_initial_weights_in_both_namespaces(key):
    workload = WORKLOADS[key]
    with seeded(123):
        fast = workload.network(pyldl)
        slow = workload.network(ref)
        single = workload.network(pyldl, np.float32)
        draw_after = np.random.random()
    with seeded(123):
        expected_draw = np.random.random()
    assert draw_after == expected_draw  # the global RNG is left as it was

    assert kinds(fast) == kinds(slow) == list(workload.layers)
    assert type(fast) is type(slow)
    assert isinstance(fast, pyldl.AutoEncoder) == (workload.encoder_depth is not None)
    for module in (fast, single):
        assert all(isinstance(layer, (pyldl.Linear, pyldl.Conv1D)) for layer in linears(module))

    # PyLDL's draws from RandomState(WEIGHTS_SEED): weights then bias, layer by layer
    rs = np.random.RandomState(WEIGHTS_SEED)
    weights = workload.weights()
    for a, b, c, (W, bias) in zip(linears(fast), linears(slow), linears(single), weights, strict=True):
        shape = a._parameters.shape  # (in, out) or (k_size, chan_in, chan_out): fan in shape[-2]
        bound = 1 / np.sqrt(shape[-2])
        expected_W = rs.uniform(-bound, bound, size=shape)
        expected_b = rs.uniform(-bound, bound, size=(1, shape[-1]))
        for layer in (a, b):
            assert layer._parameters.dtype == np.float64
            np.testing.assert_array_equal(layer._parameters, expected_W)
            np.testing.assert_array_equal(layer._bias, expected_b)
        assert c._parameters.dtype == np.float32
        np.testing.assert_array_equal(c._parameters, expected_W.astype(np.float32))
        np.testing.assert_array_equal(c._bias, expected_b.astype(np.float32))
        np.testing.assert_array_equal(W, expected_W)
        np.testing.assert_array_equal(bias, expected_b)


@pytest.mark.parametrize("key", KEYS)
def test_loss_module(key):
    workload = WORKLOADS[key]
    expected = {"mse": "MSELoss", "bce": "BCELoss", "cross_entropy": "CrossEntropyLoss"}[workload.loss]
    assert type(workload.loss_module(pyldl)) is getattr(pyldl, expected)
    assert type(workload.loss_module(ref)) is getattr(ref, expected)


@pytest.mark.parametrize(
    ("key", "flops"),
    [
        ("W1", 6 * 1 * 800),
        ("W2", 6 * (2 * 8 + 8 * 1) * 4000),
        ("W3", 6 * (64 * 128 + 128 * 64 + 64 * 10) * 1437),
        ("W4", 6 * 2 * (256 * 100 + 100 * 4) * 7291),
        ("W5", 6 * (64 * 128 + 128 * 64 + 64 * 10) * 1437),
        ("W6", 6 * (1024 * 2048 + 2048 * 2048 + 2048 * 10) * 8192),
        ("W7", 6 * (64 * 100 + 100 * 10) * 1437),
        ("W8", 6 * (3 * 1 * 32 * 62 + 31 * 32 * 100 + 100 * 10) * 1437),  # the conv: d_out 62
        ("W9", 6 * 2 * (256 * 100 + 100 * 4) * 7438),
        ("W10", 6 * 2 * (256 * 128 + 128 * 64 + 64 * 32) * 7438),
    ],
)
def test_flops_per_epoch(key, flops):
    assert WORKLOADS[key].flops_per_epoch(len_of_full_data(key)) == flops


def len_of_full_data(key):
    sizes = {"W1": 800, "W2": 4000, "W3": 1437, "W4": 7291, "W5": 1437, "W6": 8192, "W7": 1437, "W8": 1437}
    return sizes.get(key, 7438)


@pytest.mark.parametrize(
    ("key", "batch_size", "gradient_step"),
    [
        ("W1", 800, 1e-4),
        ("W2", 4000, 1e-3),
        ("W3", 64, 1e-3),
        ("W4", 64, 0.01),
        ("W5", 1, 1e-3),
        ("W6", 256, 1e-5),
        ("W7", 32, 1e-2),
        ("W8", 32, 1e-3),
        ("W9", 64, 0.01),
        ("W10", 32, 0.01),
    ],
)
def test_training_settings(key, batch_size, gradient_step):
    assert WORKLOADS[key].batch_size == batch_size
    assert WORKLOADS[key].gradient_step == gradient_step


@pytest.mark.parametrize(
    ("key", "n_samples", "x_shape", "y_shape"),
    [
        ("W1", None, (800, 1), (800, 1)),
        ("W2", None, (4000, 2), (4000, 1)),
        ("W3", None, (1437, 64), (1437, 10)),
        ("W4", None, (7291, 256), (7291, 256)),
        ("W5", None, (1437, 64), (1437, 10)),
        ("W6", 64, (64, 1024), (64, 10)),
        ("W7", None, (1437, 64), (1437, 10)),
        ("W8", None, (1437, 64, 1), (1437, 10)),
        ("W9", None, (7438, 256), (7438, 256)),
        ("W10", 100, (100, 256), (100, 256)),
    ],
)
def test_data_shapes_and_seeds(key, n_samples, x_shape, y_shape):
    if key in NEEDS_SKLEARN:
        pytest.importorskip("sklearn")
    workload = WORKLOADS[key]
    with seeded(99):
        X, y = workload.data(n_samples)
        X2, y2 = workload.data(n_samples)
        draw_after = np.random.random()
    with seeded(99):
        assert draw_after == np.random.random()  # seeded by its own RandomState
    assert X.shape == x_shape and y.shape == y_shape
    assert X.dtype == np.float64 and y.dtype == np.float64
    assert np.all(np.isfinite(X)) and np.all(np.isfinite(y))
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert workload.network()(X[:3]).shape == (3, y_shape[1])


def test_four_gaussians_labels():
    X, y = WORKLOADS["W2"].data()
    assert set(np.unique(y)) == {0.0, 1.0} and y.sum() == 2000
    same_sign = np.sign(X[:, 0]) == np.sign(X[:, 1])
    assert np.mean(same_sign == (y[:, 0] == 1)) > 0.95  # blobs at (1,1), (-1,-1) are label 1


def test_digits_data():
    pytest.importorskip("sklearn")
    X, y = WORKLOADS["W3"].data()
    assert X.min() >= 0 and X.max() <= 1
    np.testing.assert_array_equal(y.sum(axis=1), np.ones(1437))
    for key in ("W5", "W7"):
        np.testing.assert_array_equal(WORKLOADS["W3"].data()[0], WORKLOADS[key].data()[0])
    np.testing.assert_array_equal(WORKLOADS["W3"].data()[0], WORKLOADS["W8"].data()[0][:, :, 0])


def test_autoencoder_data_is_its_own_target():
    X, y = WORKLOADS["W4"].data(100)
    assert X.shape == (100, 256) and X.min() >= 0 and X.max() < 1
    np.testing.assert_array_equal(X, y)


def test_usps_like_data_is_the_digits_at_16x16():
    pytest.importorskip("sklearn")
    X, y = WORKLOADS["W9"].data()
    np.testing.assert_array_equal(X, y)
    np.testing.assert_array_equal(X, WORKLOADS["W10"].data()[0])
    assert X.min() == 0 and X.max() == 1
    digits = WORKLOADS["W3"].data()[0]  # the 8x8 digits / 16, in the same order
    block_means = X[:1437].reshape(1437, 8, 2, 8, 2).mean(axis=(2, 4)).reshape(1437, 64)
    assert np.abs(block_means - digits).mean() < 0.05  # each pixel doubled, plus clipped noise


@pytest.mark.parametrize("n", [1, 800, 4000], ids=str)
def test_permutation(n):
    expected = np.random.RandomState(PERMUTATION_SEED).permutation(n)
    np.testing.assert_array_equal(WORKLOADS["W2"].permutation(n), expected)


@pytest.mark.parametrize(
    ("name", "rows", "epochs", "loss_drop", "accuracy"),
    [
        ("W7", 256, 5, 0.5, 0.8),
        # seconds without JIT (NUMBA_DISABLE_JIT=1): im2col and pooling as Python loops
        pytest.param("W8", 512, 8, 0.6, 0.6, marks=pytest.mark.slow),
    ],
)
def test_multiclass_workloads_train(name, rows, epochs, loss_drop, accuracy):
    pytest.importorskip("sklearn")
    workload = WORKLOADS[name]
    X, y = workload.data(rows)
    network = workload.network()
    with seeded(1):
        losses = pyldl.SGD(
            network,
            workload.loss_module(),
            X,
            y,
            workload.batch_size,
            workload.gradient_step,
            epochs,
            progress=False,
        )
    assert losses[-1] < loss_drop * losses[0]
    assert np.mean(np.argmax(network(X), axis=1) == np.argmax(y, axis=1)) > accuracy
