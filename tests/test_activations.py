"""Tanh, Sigmoid, ReLU and Softmax: kernels and modules against the plain-NumPy reference,
any shape, extreme values, NaN, exact gradients."""

import warnings

import numpy as np
import pytest
from conftest import (
    DTYPES,
    assert_close,
    assert_float32_stays_float32,
    assert_gradcheck,
    compiled_only,
    no_warnings,
    shape_id,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import pyldl
import pyldl.reference as ref
from pyldl.base import Activation
from pyldl.exceptions import DimensionMismatchError
from pyldl.kernels import activations as kernels

NAMES = ["Tanh", "Sigmoid", "ReLU", "Softmax"]
ELEMENTWISE = {
    "Tanh": (kernels.tanh_forward, kernels.tanh_backward_delta),
    "Sigmoid": (kernels.sigmoid_forward, kernels.sigmoid_backward_delta),
    "ReLU": (kernels.relu_forward, kernels.relu_backward_delta),
}
SHAPES = [(1,), (7,), (0,), (1, 1), (7, 3), (1, 5), (5, 300), (0, 4), (4, 0), (2, 3, 4)]
ROW_SHAPES = [(1, 1), (7, 3), (1, 5), (5, 300), (300, 5), (0, 4), (4, 0)]


def pair(name):
    return getattr(pyldl, name)(), getattr(ref, name)()


def data(rng, shape, dtype, scale=3.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


# ---------------------------------------------------------------- kernels vs reference


@pytest.mark.parametrize("n", [1, 7, 0, 1000], ids=str)
@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_kernels(name, n, dtype, rng):
    forward, backward_delta = ELEMENTWISE[name]
    x, delta = data(rng, n, dtype), data(rng, n, dtype)
    expected = getattr(ref, name)()

    out = np.full(n, np.nan, dtype)
    forward(x, out)
    assert_close(out, expected.forward(x), "op", dtype)
    out = np.full(n, np.nan, dtype)
    backward_delta(x, delta, out)
    assert_close(out, expected.backward_delta(x, delta), "op", dtype)


@pytest.mark.parametrize("shape", ROW_SHAPES, ids=shape_id)
def test_softmax_kernels(shape, dtype, rng):
    x, delta = data(rng, shape, dtype), data(rng, shape, dtype)
    out = np.full(shape, np.nan, dtype)
    kernels.softmax_forward(x, out)
    assert_close(out, ref.Softmax().forward(x), "op", dtype)
    out = np.full(shape, np.nan, dtype)
    kernels.softmax_backward_delta(x, delta, out)
    assert_close(out, ref.Softmax().backward_delta(x, delta), "op", dtype)


@compiled_only
@pytest.mark.parametrize("name", [*ELEMENTWISE, "Softmax"])
def test_float32_kernels_compute_in_float32(name):
    forward, backward = ELEMENTWISE.get(name, (kernels.softmax_forward, kernels.softmax_backward_delta))
    x = np.ones((3, 4) if name == "Softmax" else 8, np.float32)
    assert_float32_stays_float32(forward, (x, x.copy()))
    assert_float32_stays_float32(backward, (x, x.copy(), x.copy()))


# ---------------------------------------------------------------- modules vs reference


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
@pytest.mark.parametrize("name", NAMES)
def test_activation_matches_reference(name, shape, dtype, rng):
    fast, slow = pair(name)
    x, delta = data(rng, shape, dtype), data(rng, shape, dtype)
    assert_close(fast.forward(x), slow.forward(x), "op", dtype)
    assert_close(fast(x), slow(x), "op", dtype)
    assert_close(fast.backward_delta(x, delta), slow.backward_delta(x, delta), "op", dtype)


@pytest.mark.parametrize("name", NAMES)
def test_activation_of_non_contiguous_input(name, dtype, rng):
    fast, slow = pair(name)
    x = data(rng, (6, 8), dtype)
    for view in (x[::2, 1::3], x.T, np.asfortranarray(x)):
        delta = np.ones_like(view)
        assert_close(fast(view), slow(np.ascontiguousarray(view)), "op", dtype)
        expected = slow.backward_delta(np.ascontiguousarray(view), delta)
        assert_close(fast.backward_delta(view, delta), expected, "op", dtype)


@pytest.mark.parametrize("name", NAMES)
def test_activation_of_a_scalar(name):
    fast, slow = pair(name)
    assert_close(fast(0.5), slow(0.5), "op", np.float64)
    assert_close(fast.backward_delta(0.5, 2.0), slow.backward_delta(0.5, 2.0), "op", np.float64)


EXTREMES = np.array([-1000.0, -710, -709, -89, -88, -20, -1e-8, 0, 1e-8, 20, 88, 89, 709, 710, 1000])


@pytest.mark.parametrize("name", NAMES)
def test_extreme_values_stay_finite_without_warnings(name, dtype, rng):
    fast, slow = pair(name)
    x = np.vstack([EXTREMES, rng.uniform(-1000, 1000, (4, EXTREMES.size))]).astype(dtype)
    delta = data(rng, x.shape, dtype)
    with no_warnings():
        out, back = fast(x), fast.backward_delta(x, delta)
        expected, expected_back = slow(x), slow.backward_delta(x, delta)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(back))
    assert_close(out, expected, "op", dtype)
    assert_close(back, expected_back, "op", dtype)


def test_float32_tanh_gradient_near_saturation_is_the_references():
    # 1 - t**2 for t within an ulp of 1: one ulp of t is up to all of the gradient
    x = np.linspace(-12, 12, 3841, dtype=np.float32)
    delta = np.where(np.arange(x.size) % 2, 10, -10).astype(np.float32)
    expected = ref.Tanh().backward_delta(x, delta)
    assert_close(pyldl.Tanh().backward_delta(x, delta), expected, "op", np.float32)
    out = np.full(x.size, np.nan, np.float32)
    kernels.tanh_output_backward_delta(np.tanh(x), delta, out)
    assert_close(out, expected, "op", np.float32)


@pytest.mark.parametrize("name", NAMES)
def test_nan_and_inf_propagate_like_the_reference(name, dtype):
    fast, slow = pair(name)
    x = np.array([[np.nan, 1.0, -2.0], [np.inf, 0.5, 1.0], [-np.inf, 0.0, 2.0], [1.0, -1.0, 3.0]], dtype)
    delta = np.array([[1.0, 2, 3], [4, 5, 6], [7, 8, 9], [np.nan, 1, 1]], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reference may warn on inf - inf; pyldl never does
        expected, expected_back = slow(x), slow.backward_delta(x, delta)
    with no_warnings():
        out, back = fast(x), fast.backward_delta(x, delta)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.isnan(back), np.isnan(expected_back))
    assert_close(out, expected, "op", dtype)
    assert_close(back, expected_back, "op", dtype)


def test_softmax_is_over_the_last_axis(dtype, rng):
    x = data(rng, (2, 3, 5), dtype)
    out = pyldl.Softmax()(x)
    assert_close(out.sum(axis=-1), np.ones((2, 3), dtype), "op", dtype)
    rows = pyldl.Softmax()(x.reshape(6, 5)).reshape(2, 3, 5)
    assert_close(out, rows, "op", dtype)
    one_row = pyldl.Softmax()(x[1, 2])
    assert_close(one_row, out[1, 2], "op", dtype)


def test_softmax_is_shift_invariant(dtype, rng):
    x = np.round(data(rng, (4, 6), dtype) * 64) / 64  # so that x + 900 is exact in float32
    shifted = x + np.array([[0], [500], [-500], [900]], dtype)
    assert_close(pyldl.Softmax()(shifted), pyldl.Softmax()(x), "op", dtype)


def test_softmax_backward_is_not_the_diagonal(rng):
    """pyldl's deliberate difference: the full Jacobian, not PyLDL's s * (1 - s)."""
    x, delta = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    s = pyldl.Softmax()(x)
    exact = np.stack([(np.diag(si) - np.outer(si, si)) @ di for si, di in zip(s, delta, strict=True)])
    assert_close(pyldl.Softmax().backward_delta(x, delta), exact, "op", np.float64)
    assert not np.allclose(exact, delta * s * (1 - s))


# ---------------------------------------------------------------- gradient checks


@pytest.mark.parametrize("shape", [(5,), (4, 3), (1, 1), (2, 3, 4)], ids=shape_id)
@pytest.mark.parametrize("name", NAMES)
def test_activation_gradcheck(namespace, name, shape, rng):
    module = getattr(namespace, name)()
    x = rng.standard_normal(shape)
    if name == "ReLU":  # keep away from the kink at 0
        x = np.where(x < 0, -1, 1) * (0.1 + np.abs(x))
    G = rng.standard_normal(shape)

    def f():
        return float(np.sum(module.forward(x) * G))

    assert_gradcheck(module.backward_delta(x, G), f, x)


# ---------------------------------------------------------------- dtypes, shapes, protocol


@pytest.mark.parametrize(
    "x",
    [np.arange(-3, 3), np.array([[True, False]]), [[1, -2]], np.arange(4, dtype=np.uint16)],
    ids=["int", "bool", "list", "uint16"],
)
@pytest.mark.parametrize("name", NAMES)
def test_activation_converts_ints_and_bools_to_float64(namespace, name, x):
    module = getattr(namespace, name)()
    x_float = np.asarray(x, dtype=np.float64)
    assert_close(module(x), module(x_float), "op", np.float64)
    delta = np.ones(np.shape(x), dtype=int)
    expected = module.backward_delta(x_float, delta * 1.0)
    assert_close(module.backward_delta(x, delta), expected, "op", np.float64)


@pytest.mark.parametrize("name", NAMES)
def test_activation_keeps_float32(namespace, name, rng):
    module = getattr(namespace, name)()
    x = data(rng, (3, 4), np.float32)
    assert module(x).dtype == np.float32
    # an upstream float64 delta is converted to the input's dtype
    assert module.backward_delta(x, np.ones((3, 4))).dtype == np.float32


@pytest.mark.parametrize("name", NAMES)
def test_activation_delta_of_another_shape(namespace, name):
    with pytest.raises(DimensionMismatchError):
        getattr(namespace, name)().backward_delta(np.ones((2, 3)), np.ones((3, 2)))


@pytest.mark.parametrize("name", NAMES)
def test_activation_has_no_parameters(namespace, name, rng):
    module = getattr(namespace, name)()
    assert isinstance(module, Activation)
    assert module._parameters is None and module._bias is None
    x = rng.standard_normal((2, 3))
    before = module(x)
    module.zero_grad()
    module.backward_update_gradient(x, np.ones((2, 3)))
    module.update_parameters(1.0)
    module.update_parameters()
    assert module._gradient is None
    assert_close(module(x), before, "op", np.float64)
    assert repr(module) == f"{name}()"


def test_activation_refuses_complex_input(namespace):
    with pytest.raises(TypeError):
        namespace.Tanh()(np.ones(3, complex))


# ---------------------------------------------------------------- property test

_values = st.floats(-1000, 1000, width=32) | st.sampled_from([np.nan, np.inf, -np.inf])


@st.composite
def activation_cases(draw):
    name = draw(st.sampled_from(NAMES))
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=6))
    x = draw(hnp.arrays(dtype, shape, elements=_values))
    delta = draw(hnp.arrays(dtype, shape, elements=st.floats(-10, 10, width=32)))
    return name, dtype, x, delta


@settings(deadline=None, max_examples=150)
@given(activation_cases())
def test_activation_matches_reference_property(case):
    name, dtype, x, delta = case
    fast, slow = pair(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # inf - inf in the reference's Softmax
        expected, expected_back = slow(x), slow.backward_delta(x, delta)
    with no_warnings():
        out, back = fast(x), fast.backward_delta(x, delta)
    assert_close(out, expected, "op", dtype)
    assert_close(back, expected_back, "op", dtype)
