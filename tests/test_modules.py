"""Linear: kernels and module against the plain-NumPy reference, gradients, golden values,
initialisation, dtypes and parameters assigned by the user."""

# PyLDL draws from NumPy's global RNG, so these tests do too.
# ruff: noqa: NPY002

import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    DTYPES,
    assert_close,
    assert_float32_stays_float32,
    assert_gradcheck,
    compiled_only,
    no_warnings,
    seeded,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import pyldl
import pyldl.reference as ref
from pyldl.exceptions import DimensionMismatchError
from pyldl.kernels import modules as kernels

# (batch, in_features, out_features)
SHAPES = [
    (1, 1, 1),
    (7, 3, 5),
    (1, 4, 3),
    (5, 300, 7),
    (2, 5, 300),
    (0, 4, 3),
    (64, 33, 17),
]
SHAPE_IDS = [f"{n}x{i}->{o}" for n, i, o in SHAPES]


def make_linear(cls, n_in, n_out, dtype=np.float64, bias=True, seed=0):
    with seeded(seed):
        return cls(n_in, n_out, bias=bias, dtype=dtype)


def with_weights(cls, W, b):
    """A ``cls`` Linear holding copies of ``W`` and ``b`` (None: no bias)."""
    layer = make_linear(cls, *W.shape, dtype=W.dtype, bias=b is not None)
    layer._parameters = W.copy()
    if b is not None:
        layer._bias = b.copy()
    return layer


def no_bias(dtype):
    """The kernels' bias (or bias gradient) of a layer without one: an empty row."""
    return np.empty((1, 0), dtype)


def arrays(rng, dtype, *shapes):
    return [rng.standard_normal(shape).astype(dtype) for shape in shapes]


# ---------------------------------------------------------------- kernels vs reference


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize(("n", "n_in", "n_out"), SHAPES, ids=SHAPE_IDS)
def test_linear_forward_kernel(n, n_in, n_out, bias, dtype, rng):
    X, W, b = arrays(rng, dtype, (n, n_in), (n_in, n_out), (1, n_out))
    out = np.full((n, n_out), np.nan, dtype)  # every element must be written
    kernels.linear_forward(X, W, b if bias else no_bias(dtype), out, 0)
    assert_close(out, with_weights(ref.Linear, W, b if bias else None).forward(X), "op", dtype)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize(("n", "n_in", "n_out"), SHAPES, ids=SHAPE_IDS)
def test_linear_backward_update_gradient_kernel_accumulates(n, n_in, n_out, bias, dtype, rng):
    X, W, b, delta, grad0, grad_b0 = arrays(
        rng, dtype, (n, n_in), (n_in, n_out), (1, n_out), (n, n_out), (n_in, n_out), (1, n_out)
    )
    b = b if bias else None
    grad, grad_b = grad0.copy(), (grad_b0.copy() if bias else no_bias(dtype))
    kernels.linear_backward_update_gradient(X, delta, grad, grad_b, 0)

    expected = with_weights(ref.Linear, W, b)
    expected._gradient = grad0.copy()
    expected._gradient_bias = grad_b0.copy() if bias else None
    expected.backward_update_gradient(X, delta)
    assert_close(grad, expected._gradient, "op", dtype)
    if bias:
        assert_close(grad_b, expected._gradient_bias, "op", dtype)


@pytest.mark.parametrize(("n", "n_in", "n_out"), SHAPES, ids=SHAPE_IDS)
def test_linear_backward_delta_kernel(n, n_in, n_out, dtype, rng):
    W, delta = arrays(rng, dtype, (n_in, n_out), (n, n_out))
    out = np.full((n, n_in), np.nan, dtype)
    kernels.linear_backward_delta(delta, W, out, 0)
    assert_close(out, with_weights(ref.Linear, W, None).backward_delta(None, delta), "op", dtype)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize(("n_in", "n_out"), [(1, 1), (7, 3), (300, 5)], ids=["1x1", "7x3", "300x5"])
def test_linear_update_parameters_kernel(n_in, n_out, bias, dtype, rng):
    W, b, grad, grad_b = arrays(rng, dtype, (n_in, n_out), (1, n_out), (n_in, n_out), (1, n_out))
    expected = with_weights(ref.Linear, W, b if bias else None)
    expected._gradient, expected._gradient_bias = grad, grad_b
    expected.update_parameters(0.3)
    b = b if bias else no_bias(dtype)
    kernels.linear_update_parameters(W, b, grad, grad_b if bias else no_bias(dtype), dtype(0.3))
    assert_close(W, expected._parameters, "op", dtype)
    if bias:
        assert_close(b, expected._bias, "op", dtype)


def float32_kernel_cases():
    """(kernel, args) in float32 for every kernel of Linear, Conv1D and MaxPool1D."""
    f = np.float32
    X, W, b, out = np.ones((4, 3), f), np.ones((3, 2), f), np.ones((1, 2), f), np.ones((4, 2), f)
    seq, conv, windows = np.ones((2, 5, 3), f), np.ones((2, 3, 2), f), np.ones((8, 6), f)
    seq_out, pooled = np.ones((2, 4, 2), f), np.ones((2, 4, 3), f)
    return [
        (kernels.linear_forward, (X, W, b, out, 0)),
        (kernels.linear_backward_update_gradient, (X, out, W.copy(), b.copy(), 0)),
        (kernels.linear_backward_delta, (out, W, X.copy(), 0)),
        (kernels.linear_update_parameters, (W.copy(), b.copy(), W, b, f(0.1))),
        (kernels.conv1d_forward, (seq, conv, b, 1, windows, seq_out, 0)),
        (kernels.conv1d_backward_update_gradient, (seq, seq_out, 1, windows, conv.copy(), b.copy(), 0)),
        (kernels.conv1d_backward_delta, (seq_out, conv, 1, windows, seq.copy(), 0)),
        (kernels.maxpool1d_forward, (seq, 2, 1, pooled)),
        (kernels.maxpool1d_backward_delta, (seq, pooled, 2, 1, seq.copy())),
    ]


@compiled_only
@pytest.mark.parametrize(("kernel", "args"), float32_kernel_cases(), ids=lambda v: getattr(v, "__name__", ""))
def test_float32_kernels_compute_in_float32(kernel, args):
    assert_float32_stays_float32(kernel, args)


@compiled_only
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_the_module_wrappers_run_the_kernels_the_fused_epoch_compiled(bias, dtype, rng):
    """The wrappers pass the fused epoch's argument types (an array for every bias, an int for
    the threads), so a hand-written loop after SGD compiles none of its layers' kernels again
    (nor loads them from the cache: the epoch already did)."""
    pyldl.set_default_dtype(dtype)
    dense = pyldl.Sequential(pyldl.Linear(5, 4, bias), pyldl.Tanh(), pyldl.Linear(4, 3, bias))
    conv = pyldl.Sequential(
        pyldl.Conv1D(3, 2, 3, bias=bias), pyldl.MaxPool1D(2, 2), pyldl.Flatten(), pyldl.Linear(9, 3, bias)
    )
    X, sequences, y = arrays(rng, dtype, (6, 5), (6, 8, 2), (6, 3))
    for net, inputs in ((dense, X), (conv, sequences)):
        pyldl.SGD(net, pyldl.MSELoss(), inputs, y, 4, 0.1, 1, progress=False)
    shared = [
        kernels.linear_forward,
        kernels.linear_backward_delta,
        kernels.conv1d_forward,
        kernels.conv1d_backward_delta,
        kernels.maxpool1d_forward,
        kernels.maxpool1d_backward_delta,
    ]
    compiled = [list(kernel.signatures) for kernel in shared]
    assert all(compiled)
    for net, inputs in ((dense, X), (conv, sequences)):
        out = net.forward(inputs)
        net.backward_delta(inputs, out - y)
    assert [list(kernel.signatures) for kernel in shared] == compiled


# ---------------------------------------------------------------- module vs reference


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize(("n", "n_in", "n_out"), SHAPES, ids=SHAPE_IDS)
def test_linear_matches_reference(n, n_in, n_out, bias, dtype, rng):
    fast = make_linear(pyldl.Linear, n_in, n_out, dtype, bias)
    slow = make_linear(ref.Linear, n_in, n_out, dtype, bias)
    X, delta = arrays(rng, dtype, (n, n_in), (n, n_out))

    assert_close(fast.forward(X), slow.forward(X), "op", dtype)
    assert_close(fast(X), slow(X), "op", dtype)
    assert_close(fast.backward_delta(X, delta), slow.backward_delta(X, delta), "op", dtype)
    for layer in (fast, slow):
        layer.backward_update_gradient(X, delta)
    assert_close(fast._gradient, slow._gradient, "op", dtype)
    if bias:
        assert_close(fast._gradient_bias, slow._gradient_bias, "op", dtype)
    else:
        assert fast._bias is None and fast._gradient_bias is None
    for layer in (fast, slow):
        layer.update_parameters(0.1)
    assert_close(fast._parameters, slow._parameters, "op", dtype)
    if bias:
        assert_close(fast._bias, slow._bias, "op", dtype)


def test_linear_nan_and_inf_propagate_like_the_reference(dtype, rng):
    fast = make_linear(pyldl.Linear, 3, 2, dtype)
    slow = make_linear(ref.Linear, 3, 2, dtype)
    X = rng.standard_normal((4, 3)).astype(dtype)
    X[1, 0], X[2, 2] = np.nan, np.inf
    delta = rng.standard_normal((4, 2)).astype(dtype)
    delta[3, 1] = np.nan
    with np.errstate(invalid="ignore"):  # NumPy's matmul warns on NaN; the kernels do not
        expected = slow(X)
        expected_delta = slow.backward_delta(X, delta)
        slow.backward_update_gradient(X, delta)
    with no_warnings():
        out = fast(X)
        assert_close(fast.backward_delta(X, delta), expected_delta, "op", dtype)
        fast.backward_update_gradient(X, delta)
    np.testing.assert_array_equal(np.isnan(out), [[0, 0], [1, 1], [0, 0], [0, 0]])
    assert_close(out, expected, "op", dtype)
    assert_close(fast._gradient, slow._gradient, "op", dtype)
    assert_close(fast._gradient_bias, slow._gradient_bias, "op", dtype)


def test_linear_update_parameters_default_step(namespace, rng):
    layer = make_linear(namespace.Linear, 3, 2)
    W, b = layer._parameters.copy(), layer._bias.copy()
    X, delta = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    layer.backward_update_gradient(X, delta)
    layer.update_parameters()
    assert_close(layer._parameters, W - 1e-3 * (X.T @ delta), "op", np.float64)
    assert_close(layer._bias, b - 1e-3 * delta.sum(axis=0, keepdims=True), "op", np.float64)


def test_linear_gradients_accumulate_until_zero_grad(namespace, dtype, rng):
    layer = make_linear(namespace.Linear, 4, 3, dtype)
    X1, X2, d1, d2 = arrays(rng, dtype, (5, 4), (2, 4), (5, 3), (2, 3))
    layer.backward_update_gradient(X1, d1)
    layer.backward_update_gradient(X2, d2)
    expected = X1.T @ d1 + X2.T @ d2
    assert_close(layer._gradient, expected, "op", dtype)
    assert_close(layer._gradient_bias, (d1.sum(0) + d2.sum(0)).reshape(1, 3), "op", dtype)

    layer.zero_grad()
    assert_close(layer._gradient, np.zeros((4, 3), dtype), "op", dtype)
    assert_close(layer._gradient_bias, np.zeros((1, 3), dtype), "op", dtype)


# ---------------------------------------------------------------- gradient checks


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize(("n", "n_in", "n_out"), [(1, 1, 1), (5, 4, 3), (2, 7, 9)], ids=str)
def test_linear_gradcheck(namespace, n, n_in, n_out, bias, rng):
    layer = make_linear(namespace.Linear, n_in, n_out, bias=bias)
    X, G = rng.standard_normal((n, n_in)), rng.standard_normal((n, n_out))

    def f():
        return float(np.sum(layer.forward(X) * G))

    layer.backward_update_gradient(X, rng.standard_normal((n, n_out)))  # stale gradient
    layer.zero_grad()
    layer.backward_update_gradient(X, G)
    assert_gradcheck(layer.backward_delta(X, G), f, X)
    assert_gradcheck(layer._gradient, f, layer._parameters)
    if bias:
        assert_gradcheck(layer._gradient_bias, f, layer._bias)


# ---------------------------------------------------------------- golden values (SPEC)

GOLDEN_W = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
GOLDEN_BIAS = np.array([0.95008842, -0.15135721])  # 1-D, as the original's notebook assigns it
GOLDEN_X = np.array([[1, 2, 3], [4, 5, 6]])  # integers


def test_linear_golden_values(namespace):
    layer = make_linear(namespace.Linear, 3, 2)
    layer._parameters = GOLDEN_W.copy()
    layer._bias = GOLDEN_BIAS.copy()
    delta = np.ones((2, 2))

    forward = np.array([[3.15008842, 2.64864279], [5.85008842, 6.24864279]])
    assert_close(layer.forward(GOLDEN_X), forward, "op", np.float64)
    layer.zero_grad()
    layer.backward_update_gradient(GOLDEN_X, delta)
    assert_close(layer._gradient, np.array([[5.0, 5], [7, 7], [9, 9]]), "op", np.float64)
    assert_close(layer._gradient_bias, np.array([[2.0, 2.0]]), "op", np.float64)
    backward_delta = np.array([[0.3, 0.7, 1.1], [0.3, 0.7, 1.1]])
    assert_close(layer.backward_delta(GOLDEN_X, delta), backward_delta, "op", np.float64)


# ---------------------------------------------------------------- initialisation and dtypes


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_linear_init_draws_like_pyldl(namespace, dtype, bias):
    with seeded(7):
        layer = namespace.Linear(5, 3, bias=bias, dtype=dtype)
        next_draw = np.random.random()
    with seeded(7):
        bound = 1 / np.sqrt(5)
        W = np.random.uniform(-bound, bound, size=(5, 3))
        b = np.random.uniform(-bound, bound, size=(1, 3)) if bias else None
        expected_next_draw = np.random.random()

    assert next_draw == expected_next_draw  # exactly the original's draws, no more
    assert layer._parameters.dtype == dtype and layer._parameters.shape == (5, 3)
    np.testing.assert_array_equal(layer._parameters, W.astype(dtype))
    assert_close(layer._gradient, np.zeros((5, 3), dtype), "op", dtype)
    if bias:
        assert layer._bias.dtype == dtype and layer._bias.shape == (1, 3)
        np.testing.assert_array_equal(layer._bias, b.astype(dtype))
        assert_close(layer._gradient_bias, np.zeros((1, 3), dtype), "op", dtype)
    else:
        assert layer._bias is None and layer._gradient_bias is None


def test_linear_float32_weights_are_float64_weights_cast(namespace):
    single = make_linear(namespace.Linear, 6, 4, np.float32, seed=11)
    double = make_linear(namespace.Linear, 6, 4, np.float64, seed=11)
    np.testing.assert_array_equal(single._parameters, double._parameters.astype(np.float32))
    np.testing.assert_array_equal(single._bias, double._bias.astype(np.float32))


LAYERS_WITH_WEIGHTS = {"Linear": (6, 4), "Conv1D": (3, 2, 4)}


@pytest.mark.parametrize(("name", "sizes"), LAYERS_WITH_WEIGHTS.items(), ids=list(LAYERS_WITH_WEIGHTS))
def test_the_default_dtype_makes_the_weights_of_a_float32_layer(name, sizes):
    with seeded(11):
        double = getattr(pyldl, name)(*sizes)
    pyldl.set_default_dtype(np.float32)
    layers = []
    for make in (getattr(pyldl, name), functools.partial(getattr(pyldl, name), dtype=np.float32)):
        with seeded(11):
            layers.append(make(*sizes))
    with seeded(11):
        yardstick = getattr(ref, name)(*sizes)  # the reference keeps float64
    for layer in layers:
        assert layer.dtype == np.float32 and layer._gradient.dtype == np.float32
        np.testing.assert_array_equal(layer._parameters, double._parameters.astype(np.float32))
        np.testing.assert_array_equal(layer._bias, double._bias.astype(np.float32))
    assert double.dtype == np.float64 and yardstick.dtype == np.float64
    np.testing.assert_array_equal(yardstick._parameters, double._parameters)
    assert getattr(pyldl, name)(*sizes, dtype=np.float64).dtype == np.float64  # dtype= wins
    pyldl.set_default_dtype(np.float64)
    assert getattr(pyldl, name)(*sizes, dtype=np.float32).dtype == np.float32


@pytest.mark.parametrize(
    "X",
    [
        np.ones((3, 4), np.float64),
        np.ones((3, 4), np.float32),
        np.arange(12).reshape(3, 4),
        np.arange(12, dtype=np.uint8).reshape(3, 4),
        np.eye(3, 4, dtype=bool),
        [[1, 2, 3, 4]],
    ],
    ids=["float64", "float32", "int", "uint8", "bool", "list"],
)
def test_linear_keeps_its_dtype_for_any_input(namespace, dtype, X):
    layer = make_linear(namespace.Linear, 4, 2, dtype)
    delta64 = np.ones((np.shape(X)[0], 2))  # float64 upstream delta
    out = layer.forward(X)
    assert out.dtype == dtype and out.shape == (np.shape(X)[0], 2)
    X_float = np.asarray(X).astype(np.float64)
    expected = X_float @ layer._parameters.astype(np.float64) + layer._bias
    assert_close(out, expected.astype(dtype), "op", dtype)
    assert layer.backward_delta(X, delta64).dtype == dtype
    layer.backward_update_gradient(X, delta64)
    assert layer._gradient.dtype == dtype and layer._gradient_bias.dtype == dtype
    layer.update_parameters(0.1)
    assert layer._parameters.dtype == dtype and layer._bias.dtype == dtype


@pytest.mark.parametrize("bad", [np.int32, np.float16, np.complex128, "U3"], ids=str)
def test_linear_refuses_non_float_dtype(namespace, bad):
    with pytest.raises(TypeError, match="float32 or float64"):
        namespace.Linear(2, 3, dtype=bad)


def test_linear_refuses_complex_input(namespace):
    with pytest.raises(TypeError, match="real numeric"):
        make_linear(namespace.Linear, 2, 3).forward(np.ones((1, 2), complex))


# ---------------------------------------------------------------- shape errors


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("forward", (np.ones((2, 4)),)),
        ("forward", (np.ones(3),)),
        ("forward", (np.ones((2, 3, 1)),)),
        ("backward_update_gradient", (np.ones((2, 4)), np.ones((2, 2)))),
        ("backward_update_gradient", (np.ones((2, 3)), np.ones((2, 5)))),
        ("backward_update_gradient", (np.ones((2, 3)), np.ones((3, 2)))),
        ("backward_delta", (np.ones((2, 3)), np.ones((2, 5)))),
        ("backward_delta", (np.ones((2, 3)), np.ones(2))),
    ],
    ids=[
        "forward-features",
        "forward-1d",
        "forward-3d",
        "gradient-features",
        "gradient-delta-columns",
        "gradient-rows",
        "delta-columns",
        "delta-1d",
    ],
)
def test_linear_shape_errors(namespace, method, args):
    layer = make_linear(namespace.Linear, 3, 2)
    with pytest.raises(DimensionMismatchError) as error:
        getattr(layer, method)(*args)
    assert isinstance(error.value, ValueError)
    assert "Expected dimensions" in str(error.value)


def test_linear_repr(namespace):
    assert repr(make_linear(namespace.Linear, 3, 4)) == "Linear(3 -> 4)"
    assert "bias=False" in repr(make_linear(namespace.Linear, 3, 4, bias=False))
    assert "float32" in repr(make_linear(namespace.Linear, 3, 4, np.float32))


# ---------------------------------------------------------------- user-assigned parameters


def user_arrays(kind):
    """(W, b) as a user might assign them; their float64 values are W0 and b0 below."""
    W0 = np.array([[1.0, -2.0], [3.0, 0.5], [-1.0, 2.0]])
    b0 = np.array([[0.25, -1.0]])
    if kind == "int":
        return np.array([[1, -2], [3, 0], [-1, 2]]), np.array([[0, -1]])
    if kind == "1d_bias":
        return W0, b0.reshape(-1)
    if kind == "fortran":
        return np.asfortranarray(W0), b0
    if kind == "non_contiguous":
        wide = np.zeros((3, 4))
        wide[:, ::2] = W0
        row = np.zeros((2, 2))
        row[:, 0] = b0.reshape(-1)
        return wide[:, ::2], row[:, 0]
    if kind == "other_float":
        return W0.astype(np.float32), b0.astype(np.float32)
    if kind == "list":
        return W0.tolist(), b0.reshape(-1).tolist()
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["int", "1d_bias", "fortran", "non_contiguous", "other_float", "list"])
def test_linear_accepts_user_assigned_parameters(namespace, dtype, kind, rng):
    layer = make_linear(namespace.Linear, 3, 2, dtype)
    W, b = user_arrays(kind)
    layer._parameters, layer._bias = W, b
    W64 = np.array(W, dtype=np.float64)  # a copy: a float64 W is used (and updated) in place
    b64 = np.array(b, dtype=np.float64).reshape(1, 2)
    X = rng.standard_normal((4, 3)).astype(dtype)

    out = layer.forward(X)
    assert_close(out, (X.astype(np.float64) @ W64 + b64).astype(dtype), "op", dtype)
    # converted once and stored back
    stored_W, stored_b = layer._parameters, layer._bias
    for array, shape in ((stored_W, (3, 2)), (stored_b, (1, 2))):
        assert type(array) is np.ndarray and array.dtype == dtype and array.shape == shape
        assert array.flags.c_contiguous
    layer.forward(X)
    layer.backward_update_gradient(X, np.ones((4, 2), dtype))
    layer.update_parameters(0.5)
    assert layer._parameters is stored_W and layer._bias is stored_b  # updated in place
    expected_W = W64 - 0.5 * X.astype(np.float64).T @ np.ones((4, 2))
    assert_close(layer._parameters, expected_W.astype(dtype), "op", dtype)
    assert_close(layer._bias, (b64 - 0.5 * 4).astype(dtype), "op", dtype)


def test_linear_picks_up_reassigned_parameters(namespace, dtype, rng):
    layer = make_linear(namespace.Linear, 3, 2, dtype)
    X = rng.standard_normal((4, 3)).astype(dtype)
    delta = rng.standard_normal((4, 2)).astype(dtype)
    layer.forward(X)
    layer.backward_delta(X, delta)

    W2, b2 = arrays(rng, dtype, (3, 2), (1, 2))
    layer._parameters, layer._bias = W2, b2
    assert_close(layer.forward(X), X @ W2 + b2, "op", dtype)
    assert_close(layer.backward_delta(X, delta), delta @ W2.T, "op", dtype)

    W2[0, 0] += 1  # an in-place edit of the assigned array is seen too
    assert_close(layer.forward(X), X @ W2 + b2, "op", dtype)

    layer._bias = None  # and so is dropping the bias
    assert_close(layer.forward(X), X @ W2, "op", dtype)


def test_linear_reassigned_parameters_of_another_shape(namespace, rng):
    layer = make_linear(namespace.Linear, 3, 2)
    layer._parameters = rng.standard_normal((3, 5))
    layer._bias = rng.standard_normal(5)
    X, delta = rng.standard_normal((2, 3)), rng.standard_normal((2, 5))
    assert layer.forward(X).shape == (2, 5)
    layer.backward_update_gradient(X, delta)
    assert_close(layer._gradient, X.T @ delta, "op", np.float64)
    assert_close(layer._gradient_bias, delta.sum(0, keepdims=True), "op", np.float64)

    layer._bias = np.ones(4)
    with pytest.raises(DimensionMismatchError, match="_bias"):
        layer.forward(X)


# ---------------------------------------------------------------- property test


# Eighths between -10 and 10: every product and sum below is exact in float32 (at most 9 terms
# of 16 bits), so any summation order gives the same result and a difference is a bug. The
# rounding of real data is the fixed-seed tests' part: in float32 a cancelling sum, such as
# X.T @ delta = 0.146 out of terms of 76, may differ between two BLAS by more than 1e-6.
_eighths = st.integers(-80, 80).map(lambda k: k / 8)


@st.composite
def linear_cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    n, n_in, n_out = draw(st.tuples(*[st.integers(lo, 9) for lo in (0, 1, 1)]))
    X, delta, W = (
        draw(hnp.arrays(dtype, shape, elements=_eighths)) for shape in ((n, n_in), (n, n_out), (n_in, n_out))
    )
    b = draw(st.none() | hnp.arrays(dtype, (1, n_out), elements=_eighths))
    return dtype, X, delta, W, b


@settings(deadline=None, max_examples=60)
@given(linear_cases())
def test_linear_matches_reference_property(case):
    dtype, X, delta, W, b = case
    fast, slow = with_weights(pyldl.Linear, W, b), with_weights(ref.Linear, W, b)
    assert_close(fast(X), slow(X), "op", dtype)
    assert_close(fast.backward_delta(X, delta), slow.backward_delta(X, delta), "op", dtype)
    fast.backward_update_gradient(X, delta)
    slow.backward_update_gradient(X, delta)
    assert_close(fast._gradient, slow._gradient, "op", dtype)
    if b is not None:
        assert_close(fast._gradient_bias, slow._gradient_bias, "op", dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_with_no_inputs_outputs_its_bias(namespace, dtype):
    """An inner dimension of 0 (``_parameters`` of shape (0, k), assigned): the product is
    empty, so gemm must still apply beta (forward: the bias; gradients: unchanged)."""
    layer = namespace.Linear(2, 3, dtype=dtype)
    layer._parameters = np.zeros((0, 3))
    layer._bias = np.array([[0.5, -1.0, 2.0]])
    X, delta = np.zeros((4, 0), dtype), np.ones((4, 3), dtype)
    out = layer.forward(X)
    assert out.shape == (4, 3) and out.dtype == dtype
    np.testing.assert_array_equal(out, np.broadcast_to(layer._bias, (4, 3)))
    layer.zero_grad()
    layer.backward_update_gradient(X, delta)
    layer.backward_update_gradient(X, delta)
    np.testing.assert_array_equal(layer._gradient_bias, np.full((1, 3), 8, dtype))
    assert layer._gradient.shape == (0, 3)
    assert layer.backward_delta(X, delta).shape == (4, 0)


# ================================================================ Conv1D, MaxPool1D, Flatten

# (batch, length, chan_in, chan_out): batch 1, several channel counts; with every stride and
# kernel size below, some lengths leave positions that no window reaches
SEQUENCE_SHAPES = [(1, 7, 1, 2), (3, 11, 2, 3), (2, 9, 3, 1)]
SEQUENCE_IDS = [f"{n}x{length}x{i}->{o}" for n, length, i, o in SEQUENCE_SHAPES]
STRIDES = [1, 2, 3]
K_SIZES = [1, 2, 3, 4, 5]


def make_conv(cls, k_size, chan_in, chan_out, stride=1, dtype=np.float64, bias=True, seed=0):
    with seeded(seed):
        return cls(k_size, chan_in, chan_out, stride, bias=bias, dtype=dtype)


def d_out(length, k_size, stride):
    return (length - k_size) // stride + 1


@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("k_size", K_SIZES)
@pytest.mark.parametrize(("n", "length", "chan_in", "chan_out"), SEQUENCE_SHAPES, ids=SEQUENCE_IDS)
def test_conv1d_matches_reference(n, length, chan_in, chan_out, k_size, stride, dtype, rng):
    bias = k_size != 2  # both kinds, without doubling the cases
    fast = make_conv(pyldl.Conv1D, k_size, chan_in, chan_out, stride, dtype, bias)
    slow = make_conv(ref.Conv1D, k_size, chan_in, chan_out, stride, dtype, bias)
    X, delta, grad0, grad_b0 = arrays(
        rng,
        dtype,
        (n, length, chan_in),
        (n, d_out(length, k_size, stride), chan_out),
        fast._gradient.shape,
        (1, chan_out),
    )
    assert_close(fast(X), slow(X), "op", dtype)
    assert_close(fast.backward_delta(X, delta), slow.backward_delta(X, delta), "op", dtype)
    for layer in (fast, slow):  # gradients accumulate onto what is there
        layer._gradient, layer._gradient_bias = grad0.copy(), grad_b0.copy() if bias else None
        layer.backward_update_gradient(X, delta)
    assert_close(fast._gradient, slow._gradient, "op", dtype)
    if bias:
        assert_close(fast._gradient_bias, slow._gradient_bias, "op", dtype)
    for layer in (fast, slow):
        layer.update_parameters(0.1)
    assert_close(fast._parameters, slow._parameters, "op", dtype)
    if bias:
        assert_close(fast._bias, slow._bias, "op", dtype)
    else:
        assert fast._bias is None and fast._gradient_bias is None


@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("k_size", [1, 3, 4])
def test_conv1d_kernels_write_every_element(k_size, stride, dtype, rng):
    n, length, chan_in, chan_out = 2, 10, 2, 3
    X, W, b = arrays(rng, dtype, (n, length, chan_in), (k_size, chan_in, chan_out), (1, chan_out))
    length_out = d_out(length, k_size, stride)
    delta = rng.standard_normal((n, length_out, chan_out)).astype(dtype)
    layer = make_conv(ref.Conv1D, k_size, chan_in, chan_out, stride, dtype)
    layer._parameters, layer._bias = W, b
    cols = np.full((n * length_out, k_size * chan_in), np.nan, dtype)
    out = np.full((n, length_out, chan_out), np.nan, dtype)
    kernels.conv1d_forward(X, W, b, stride, cols, out, 0)
    assert_close(out, layer.forward(X), "op", dtype)
    kernels.conv1d_forward(X, W, no_bias(dtype), stride, cols, out, 0)
    assert_close(out, layer.forward(X) - b, "op", dtype)
    out = np.full((n, length, chan_in), np.nan, dtype)
    kernels.conv1d_backward_delta(delta, W, stride, cols, out, 0)
    assert_close(out, layer.backward_delta(X, delta), "op", dtype)


@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("k_size", K_SIZES)
@pytest.mark.parametrize(("n", "length", "channels", "_"), SEQUENCE_SHAPES, ids=SEQUENCE_IDS)
def test_maxpool1d_matches_reference(n, length, channels, _, k_size, stride, dtype, rng):
    fast, slow = pyldl.MaxPool1D(k_size, stride), ref.MaxPool1D(k_size, stride)
    X = rng.standard_normal((n, length, channels)).astype(dtype)
    delta = rng.standard_normal((n, d_out(length, k_size, stride), channels)).astype(dtype)
    assert_close(fast(X), slow(X), "op", dtype)
    assert_close(fast.backward_delta(X, delta), slow.backward_delta(X, delta), "op", dtype)
    fast.backward_update_gradient(X, delta)  # nothing to accumulate
    fast.update_parameters(0.1)
    assert fast._parameters is None and fast._gradient is None


def test_maxpool1d_ties_and_nan_like_the_reference(namespace, dtype):
    pool = namespace.MaxPool1D(2, 1)
    X = np.array([[[3.0, 1.0], [3.0, np.nan], [1.0, 2.0], [np.nan, 2.0]]], dtype)
    delta = np.array([[[1.0, 10.0], [2.0, 20.0], [4.0, 40.0]]], dtype)
    expected = ref.MaxPool1D(2, 1)
    with no_warnings():
        out = pool(X)
        assert_close(out, expected(X), "op", dtype)
        np.testing.assert_array_equal(out[0], [[3, np.nan], [3, np.nan], [np.nan, 2]])
        back = pool.backward_delta(X, delta)
    # first maximum on ties (row 0 of window 0, row 2 of the last channel-1 window), first NaN
    np.testing.assert_array_equal(back[0], [[1, 0], [2, 30], [0, 40], [4, 0]])
    assert_close(back, expected.backward_delta(X, delta), "op", dtype)


def test_maxpool1d_golden_values_and_overlap(namespace):
    pool = namespace.MaxPool1D(3, 1)
    X = np.array([[[1], [5], [2], [0], [0]]])  # integers; windows overlap at the 5
    assert_close(pool(X), np.array([[[5.0], [5], [2]]]), "op", np.float64)
    delta = np.array([[[1.0], [2], [4]]])
    # 1 + 2 summed at the shared maximum, 4 at the first of the tied zeros' window maximum (the 2)
    assert_close(pool.backward_delta(X, delta), np.array([[[0.0], [3], [4], [0], [0]]]), "op", np.float64)

    # the original's notebook: MaxPool1D(3, 2) on rising values takes each window's last row
    X = np.arange(1, 21).reshape(4, 5, 1) * np.ones(3, int)
    out = namespace.MaxPool1D(3, 2)(X)
    assert_close(out[:, :, 0], np.array([[3.0, 5], [8, 10], [13, 15], [18, 20]]), "op", np.float64)
    delta = np.arange(24.0).reshape(4, 2, 3)
    back = namespace.MaxPool1D(3, 2).backward_delta(X, delta)
    expected = np.zeros((4, 5, 3))
    expected[:, 2], expected[:, 4] = delta[:, 0], delta[:, 1]
    assert_close(back, expected, "op", np.float64)
    # ... whose delta has the input's shape (4, 5, 3): its first d_out = 2 positions are used
    delta = np.arange(1, 61).reshape(4, 5, 3)
    back = namespace.MaxPool1D(3, 2).backward_delta(X, delta)
    expected[:, 2], expected[:, 4] = delta[:, 0], delta[:, 1]
    assert_close(back, expected, "op", np.float64)


def test_flatten_round_trip(namespace, dtype, rng):
    flatten = namespace.Flatten()
    X = rng.standard_normal((3, 4, 2)).astype(dtype)
    out = flatten(X)
    assert out.shape == (3, 8) and out.dtype == dtype
    np.testing.assert_array_equal(out[1], X[1].ravel())  # C order: positions, then channels
    back = flatten.backward_delta(X, out)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, X)
    # like the original: any (N, ...) input, and a delta of the input's shape (its notebook)
    X4 = np.arange(24).reshape(3, 2, 2, 2)
    assert flatten(X4).shape == (3, 8) and flatten(X4).dtype == np.float64
    assert flatten.backward_delta(X4, np.ones_like(X4)).shape == X4.shape
    assert repr(flatten) == "Flatten()"
    with pytest.raises(DimensionMismatchError, match="at least 2-D"):
        flatten(np.ones(3))
    with pytest.raises(DimensionMismatchError, match="delta"):
        flatten.backward_delta(X, out[:, :5])


# ---------------------------------------------------------------- gradient checks


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize(
    ("n", "length", "chan_in", "chan_out", "k_size", "stride"),
    [(1, 5, 1, 1, 1, 1), (2, 9, 2, 3, 3, 2), (3, 8, 3, 2, 4, 3)],
    ids=str,
)
def test_conv1d_gradcheck(namespace, n, length, chan_in, chan_out, k_size, stride, bias, rng):
    layer = make_conv(namespace.Conv1D, k_size, chan_in, chan_out, stride, bias=bias)
    X = rng.standard_normal((n, length, chan_in))
    G = rng.standard_normal((n, d_out(length, k_size, stride), chan_out))

    def f():
        return float(np.sum(layer.forward(X) * G))

    layer.backward_update_gradient(X, rng.standard_normal(G.shape))  # stale gradient
    layer.zero_grad()
    layer.backward_update_gradient(X, G)
    assert_gradcheck(layer.backward_delta(X, G), f, X)
    assert_gradcheck(layer._gradient * n, f, layer._parameters)  # PyLDL divides by the batch
    if bias:
        assert_gradcheck(layer._gradient_bias * n, f, layer._bias)


@pytest.mark.parametrize(("k_size", "stride"), [(3, 1), (3, 2), (2, 2), (4, 3)], ids=str)
def test_maxpool1d_gradcheck(namespace, k_size, stride, rng):
    pool = namespace.MaxPool1D(k_size, stride)
    X = rng.permutation(2 * 10 * 3).reshape(2, 10, 3) / 7.0  # distinct values, far apart
    G = rng.standard_normal((2, d_out(10, k_size, stride), 3))

    def f():
        return float(np.sum(pool.forward(X) * G))

    assert_gradcheck(pool.backward_delta(X, G), f, X)


# ---------------------------------------------------------------- golden values, init, parameters


def test_conv1d_golden_values(namespace):
    layer = make_conv(namespace.Conv1D, 3, 1, 2, stride=2)
    layer._parameters = GOLDEN_W.reshape(3, 1, 2).copy()
    layer._bias = np.array([1.0, -1.0])
    X = np.array([[[1], [2], [3], [4], [5]]])  # integers; windows [1 2 3] and [3 4 5]
    assert_close(layer(X), np.array([[[3.2, 1.8], [5.0, 4.2]]]), "op", np.float64)
    delta = np.ones((1, 2, 2))
    layer.zero_grad()
    layer.backward_update_gradient(X, delta)
    assert_close(layer._gradient, np.array([[[4.0, 4]], [[6, 6]], [[8, 8]]]), "op", np.float64)
    assert_close(layer._gradient_bias, np.array([[2.0, 2]]), "op", np.float64)
    # row sums of W (0.3, 0.7, 1.1), summed where the two windows overlap (position 2)
    expected = np.array([[[0.3], [0.7], [1.4], [0.7], [1.1]]])
    assert_close(layer.backward_delta(X, delta), expected, "op", np.float64)


@pytest.mark.parametrize("stride", STRIDES)
def test_conv1d_one_channel_matches_the_original_formula(namespace, stride, rng):
    """With one input channel, PyLDL's windows of shape (1, k_size, chan_in) reshaped to
    (chan_in, k_size) are the SPEC's windows, and its einsum gives the same forward."""
    layer = make_conv(namespace.Conv1D, 3, 1, 4, stride, seed=3)
    X = rng.standard_normal((2, 10, 1))
    view = np.lib.stride_tricks.sliding_window_view(X, (1, 3, 1))[:, ::stride]
    view = view.reshape(2, d_out(10, 3, stride), 1, 3)
    expected = np.einsum("bdik,kio->bdo", view, layer._parameters) + layer._bias
    assert_close(layer(X), expected, "op", np.float64)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_conv1d_init_draws_like_pyldl(namespace, dtype, bias):
    with seeded(7):
        layer = namespace.Conv1D(3, 2, 4, 1, bias=bias, dtype=dtype)
        next_draw = np.random.random()
    with seeded(7):
        bound = 1 / np.sqrt(2)
        W = np.random.uniform(-bound, bound, size=(3, 2, 4))
        b = np.random.uniform(-bound, bound, size=(1, 4)) if bias else None
        expected_next_draw = np.random.random()
    assert next_draw == expected_next_draw
    assert layer._parameters.dtype == dtype and layer._parameters.shape == (3, 2, 4)
    np.testing.assert_array_equal(layer._parameters, W.astype(dtype))
    assert_close(layer._gradient, np.zeros((3, 2, 4), dtype), "op", dtype)
    assert layer._stride == 1
    if bias:
        np.testing.assert_array_equal(layer._bias, b.astype(dtype))
        assert_close(layer._gradient_bias, np.zeros((1, 4), dtype), "op", dtype)
    else:
        assert layer._bias is None and layer._gradient_bias is None


def test_conv1d_and_maxpool1d_repr(namespace):
    assert repr(make_conv(namespace.Conv1D, 3, 1, 32)) == "Conv1D(3, 1 -> 32, stride=1)"
    assert repr(make_conv(namespace.Conv1D, 5, 2, 3, 2, np.float32, bias=False)) == (
        "Conv1D(5, 2 -> 3, stride=2, bias=False, dtype=float32)"
    )
    assert repr(namespace.MaxPool1D(2, 2)) == "MaxPool1D(2, stride=2)"


@pytest.mark.parametrize("kind", ["int", "1d_bias", "fortran", "list"])
def test_conv1d_accepts_user_assigned_parameters(namespace, dtype, kind, rng):
    layer = make_conv(namespace.Conv1D, 2, 2, 3, 1, dtype)
    W0, b0 = np.arange(-6, 6).reshape(2, 2, 3), np.array([[1, 0, -1]])
    W, b = {
        "int": (W0, b0),
        "1d_bias": (W0.astype(float), b0.reshape(-1).astype(float)),
        "fortran": (np.asfortranarray(W0.astype(float)), b0),
        "list": (W0.tolist(), b0.reshape(-1).tolist()),
    }[kind]
    layer._parameters, layer._bias = W, b
    X = rng.standard_normal((2, 5, 2)).astype(dtype)
    expected = ref.Conv1D(2, 2, 3, 1, dtype=np.float64)
    expected._parameters, expected._bias = W0.astype(float), b0.astype(float)
    assert_close(layer(X), expected(X.astype(np.float64)).astype(dtype), "op", dtype)
    stored_W, stored_b = layer._parameters, layer._bias
    assert stored_W.dtype == dtype and stored_W.shape == (2, 2, 3) and stored_W.flags.c_contiguous
    assert stored_b.dtype == dtype and stored_b.shape == (1, 3)
    layer.backward_update_gradient(X, np.ones((2, 4, 3), dtype))
    layer.update_parameters(0.5)
    assert layer._parameters is stored_W and layer._bias is stored_b  # updated in place
    assert_close(layer._bias, (b0 - 0.5 * 4).astype(dtype), "op", dtype)


def test_conv1d_reassigned_parameters_of_another_shape(namespace, rng):
    layer = make_conv(namespace.Conv1D, 3, 1, 2)
    layer._parameters = rng.standard_normal((2, 3, 4))  # k_size 2, 3 -> 4 channels
    layer._bias = None
    X = rng.standard_normal((2, 6, 3))
    assert layer(X).shape == (2, 5, 4)
    assert repr(layer) == "Conv1D(2, 3 -> 4, stride=1, bias=False)"
    layer._bias = np.ones(5)
    with pytest.raises(DimensionMismatchError, match="_bias"):
        layer(X)
    layer._parameters, layer._bias = np.ones((3, 4)), None
    with pytest.raises(DimensionMismatchError, match="_parameters must be 3-D"):
        layer(X)


@pytest.mark.parametrize(
    "X",
    [np.arange(12).reshape(2, 3, 2), np.ones((2, 3, 2), bool), np.ones((2, 3, 2), np.float32)],
    ids=["int", "bool", "float32"],
)
def test_conv_layers_keep_their_dtype_for_any_input(namespace, dtype, X):
    layer = make_conv(namespace.Conv1D, 2, 2, 3, 1, dtype)
    out = layer(X)
    assert out.dtype == dtype
    assert layer.backward_delta(X, np.ones(out.shape)).dtype == dtype
    layer.backward_update_gradient(X, np.ones(out.shape))
    assert layer._gradient.dtype == dtype
    pool = namespace.MaxPool1D(2, 1)
    assert pool(X).dtype == (X.dtype if X.dtype.kind == "f" else np.float64)


def test_conv1d_empty_batch(namespace):
    layer = make_conv(namespace.Conv1D, 2, 1, 3)
    X = np.ones((0, 4, 1))
    assert layer(X).shape == (0, 3, 3)
    assert layer.backward_delta(X, np.ones((0, 3, 3))).shape == (0, 4, 1)
    with pytest.raises(ValueError, match="input is empty"):
        layer.backward_update_gradient(X, np.ones((0, 3, 3)))


def test_gemm_comes_from_scipys_cython_blas_without_scipy_linalg():
    """pyldl loads SciPy's BLAS from its file: ``import pyldl`` skips ``scipy.linalg``'s own
    imports, and the addresses are those Numba's own lookup finds."""
    code = (
        "import sys, pyldl.kernels._blas as b; assert 'scipy.linalg' not in sys.modules, 'imported';"
        "from numba.extending import get_cython_function_address as find;"
        "c = b.cython_blas.__pyx_capi__['sgemm'];"
        "assert b._capsule_pointer(c, b._capsule_name(c)) == find('scipy.linalg.cython_blas', 'sgemm')"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(pyldl.__file__).parents[1])}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
