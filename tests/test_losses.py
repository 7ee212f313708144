"""MSELoss, BCELoss and CrossEntropyLoss: kernels and modules against the plain-NumPy
reference, PyLDL's scalings checked by finite differences, clipping, stability, dtypes,
golden values."""

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
from pyldl.base import Loss
from pyldl.exceptions import DimensionMismatchError
from pyldl.kernels import losses as kernels
from pyldl.reference.losses import bce_epsilon

NAMES = ["MSELoss", "BCELoss"]
SHAPES = [(1, 1), (7, 3), (1, 5), (5, 300), (300, 5), (64, 10)]


def targets(rng, shape, dtype):
    """y in {0, 1} and yhat in (0, 1): valid for both losses."""
    y = rng.integers(0, 2, shape).astype(dtype)
    yhat = rng.uniform(0.02, 0.98, shape).astype(dtype)
    return y, yhat


def pair(name):
    return getattr(pyldl, name)(), getattr(ref, name)()


# ---------------------------------------------------------------- kernels vs reference


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_mse_kernels(shape, dtype, rng):
    y, yhat = targets(rng, shape, dtype)
    yhat = (3 * rng.standard_normal(shape)).astype(dtype)
    value = dtype(kernels.mse_forward(y, yhat))  # the kernel sums in float64
    assert_close(value, ref.MSELoss().forward(y, yhat), "op", dtype)
    out = np.full(shape, np.nan, dtype)
    kernels.mse_backward(y, yhat, out)
    assert_close(out, ref.MSELoss().backward(y, yhat), "op", dtype)


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_bce_kernels(shape, dtype, rng):
    y, yhat = targets(rng, shape, dtype)
    yhat.reshape(-1)[::7] = 0  # some predictions are clipped
    yhat.reshape(-1)[3::7] = 1
    eps = dtype(bce_epsilon(np.dtype(dtype)))
    value = dtype(kernels.bce_forward(y, yhat, eps))  # the kernel sums in float64
    assert_close(value, ref.BCELoss().forward(y, yhat), "op", dtype)
    out = np.full(shape, np.nan, dtype)
    kernels.bce_backward(y, yhat, eps, shape[0], out)
    assert_close(out, ref.BCELoss().backward(y, yhat), "op", dtype)


def test_clip_kernel_keeps_nan():
    assert kernels.clip(-1.0, 0.0, 1.0) == 0.0
    assert kernels.clip(2.0, 0.0, 1.0) == 1.0
    assert kernels.clip(0.5, 0.0, 1.0) == 0.5
    assert np.isnan(kernels.clip(np.nan, 0.0, 1.0))


# the loss values accumulate in float64 on purpose (the module docstring): the widened terms
# are added and the total divided by the count; nothing else is float64
TOTAL = ("fpext", "fadd", "fdiv")


Y = np.full((4, 3), 0.5, np.float32)
EPS = np.float32(bce_epsilon(np.dtype(np.float32)))


@compiled_only
@pytest.mark.parametrize(
    ("kernel", "args", "allowed"),
    [
        (kernels.mse_terms, (Y, Y, Y.ravel().copy()), ()),
        (kernels.mse_mean, (Y.ravel(), 4, 3), TOTAL),
        (kernels.mse_backward, (Y, Y, Y.copy()), ()),
        (kernels.bce_terms, (Y, Y, EPS, Y.ravel().copy()), ()),
        (kernels.bce_mean, (Y.ravel(), 4, 3), TOTAL),
        (kernels.bce_backward, (Y, Y, EPS, 4, Y.copy()), ()),
        (kernels.cross_entropy_terms, (Y, Y, Y[:, 0].copy()), ()),
        (kernels.cross_entropy_mean, (Y[:, 0].copy(), 4, 3), TOTAL),
        (kernels.cross_entropy_backward, (Y, Y, Y.copy()), ()),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_float32_kernels_compute_in_float32(kernel, args, allowed):
    assert_float32_stays_float32(kernel, args, allowed)
    half = np.float32(0.5)
    assert_float32_stays_float32(kernels.clip, (half, half, half))


# ---------------------------------------------------------------- modules vs reference


@pytest.mark.parametrize("shape", [*SHAPES, (6,)], ids=shape_id)
@pytest.mark.parametrize("name", NAMES)
def test_loss_matches_reference(name, shape, dtype, rng):
    fast, slow = pair(name)
    y, yhat = targets(rng, shape, dtype)
    value = fast.forward(y, yhat)
    assert type(value) is np.dtype(dtype).type  # a NumPy scalar, as PyLDL's np.mean
    assert_close(value, slow.forward(y, yhat), "op", dtype)
    assert_close(fast(y, yhat), slow(y, yhat), "op", dtype)
    assert_close(fast.backward(y, yhat), slow.backward(y, yhat), "op", dtype)


def test_mse_golden_value(namespace):
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    yhat = np.array([[0.8, 0.1, 0.1], [0.2, 0.5, 0.3], [0.9, 0.1, 0]])
    assert_close(namespace.MSELoss()(y, yhat), 0.42, "op", np.float64)


def test_mse_formula(namespace, rng):
    y, yhat = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    loss = namespace.MSELoss()
    assert_close(loss(y, yhat), np.mean(np.sum((y - yhat) ** 2, axis=1)), "op", np.float64)
    assert_close(loss.backward(y, yhat), -2 * (y - yhat), "op", np.float64)


def test_bce_formula(namespace, rng):
    y, yhat = targets(rng, (5, 3), np.float64)
    loss = namespace.BCELoss()
    expected = -np.mean(y * np.log(yhat) + (1 - y) * np.log(1 - yhat))
    assert_close(loss(y, yhat), expected, "op", np.float64)
    assert_close(loss.backward(y, yhat), (yhat - y) / (yhat * (1 - yhat) * 5), "op", np.float64)


# ---------------------------------------------------------------- gradient checks


@pytest.mark.parametrize("shape", [(4, 3), (1, 1), (6,), (2, 9)], ids=shape_id)
def test_mse_backward_is_the_gradient_of_n_times_forward(namespace, shape, rng):
    loss = namespace.MSELoss()
    y, yhat = rng.standard_normal(shape), rng.standard_normal(shape)
    n_rows = shape[0]
    assert_gradcheck(loss.backward(y, yhat), lambda: n_rows * loss.forward(y, yhat), yhat)


@pytest.mark.parametrize("soft", [False, True], ids=["hard_targets", "soft_targets"])
@pytest.mark.parametrize("shape", [(4, 3), (1, 1), (6,), (2, 9)], ids=shape_id)
def test_bce_backward_is_the_gradient_of_d_times_forward(namespace, shape, soft, rng):
    loss = namespace.BCELoss()
    y, yhat = targets(rng, shape, np.float64)
    if soft:
        y = rng.uniform(0, 1, shape)
    n_columns = shape[1] if len(shape) == 2 else 1
    assert_gradcheck(loss.backward(y, yhat), lambda: n_columns * loss.forward(y, yhat), yhat)


# ---------------------------------------------------------------- clipping


@pytest.mark.parametrize("name", NAMES)
def test_predictions_of_exactly_0_and_1(namespace, name, dtype):
    y = np.array([[0, 1, 0, 1]], dtype)
    yhat = np.array([[0, 1, 1, 0]], dtype)
    loss = getattr(namespace, name)()
    with no_warnings():
        value, delta = loss(y, yhat), loss.backward(y, yhat)
    assert np.isfinite(value)
    assert delta.dtype == dtype and np.all(np.isfinite(delta))


def test_bce_clips_with_an_epsilon_the_dtype_represents(namespace):
    """float32 clips at 1e-7: with 1e-12, 1 - eps rounds to 1 and log(1 - p) is -inf."""
    assert bce_epsilon(np.dtype(np.float64)) == 1e-12
    assert np.float32(1) - np.float32(bce_epsilon(np.dtype(np.float32))) < 1
    loss = namespace.BCELoss()
    y, yhat = np.zeros((1, 1)), np.ones((1, 1))
    single = loss(y.astype(np.float32), yhat.astype(np.float32))
    double = loss(y, yhat)
    high32 = np.float32(1) - np.float32(1e-7)
    assert type(single) is np.float32 and type(double) is np.float64
    assert_close(single, np.float32(-np.log(1 - float(high32))), "op", np.float32)
    assert_close(double, -np.log(1 - (1 - 1e-12)), "op", np.float64)


def test_nan_predictions_give_nan(namespace):
    y, yhat = np.ones((2, 2)), np.array([[0.5, np.nan], [0.5, 0.5]])
    for name in NAMES:
        loss = getattr(namespace, name)()
        assert np.isnan(loss(y, yhat))
        np.testing.assert_array_equal(np.isnan(loss.backward(y, yhat)), np.isnan(yhat))


# ---------------------------------------------------------------- dtypes and shapes


@pytest.mark.parametrize("name", NAMES)
def test_integer_targets_and_predictions(namespace, name):
    y = np.array([[1, 0], [0, 1], [1, 1]])
    yhat = np.array([[1, 0], [1, 1], [0, 1]])
    loss = getattr(namespace, name)()
    value = loss(y, yhat)
    assert type(value) is np.float64
    assert_close(value, loss(y * 1.0, yhat * 1.0), "op", np.float64)
    assert_close(loss.backward(y, yhat), loss.backward(y * 1.0, yhat * 1.0), "op", np.float64)
    assert_close(loss(y, yhat * 0.5), loss(y * 1.0, yhat * 0.5), "op", np.float64)
    from_lists = loss([[1, 0]], [[0.25, 0.5]])
    assert_close(from_lists, loss(np.array([[1.0, 0]]), np.array([[0.25, 0.5]])), "op", np.float64)


@pytest.mark.parametrize("name", NAMES)
def test_backward_has_the_predictions_dtype(namespace, name, rng):
    y, yhat = targets(rng, (4, 3), np.float32)
    loss = getattr(namespace, name)()
    assert loss.backward(y.astype(np.float64), yhat).dtype == np.float32
    assert loss.backward(y.astype(int), yhat).dtype == np.float32
    assert loss.backward(y, yhat.astype(np.float64)).dtype == np.float64


@pytest.mark.parametrize("name", NAMES)
def test_one_dimensional_targets_are_a_column(namespace, name, rng):
    y, yhat = targets(rng, (6,), np.float64)
    loss = getattr(namespace, name)()
    assert_close(loss(y, yhat), loss(y.reshape(-1, 1), yhat.reshape(-1, 1)), "op", np.float64)
    delta = loss.backward(y, yhat)
    assert_close(delta, loss.backward(y[:, None], yhat[:, None]).reshape(-1), "op", np.float64)


@pytest.mark.parametrize(
    ("y_shape", "yhat_shape"),
    [((3, 2), (3, 3)), ((3, 2), (2, 2)), ((3,), (3, 1)), ((2, 2, 2), (2, 2, 2))],
    ids=["columns", "rows", "1d_vs_column", "3d"],
)
@pytest.mark.parametrize("name", NAMES)
def test_shape_errors(namespace, name, y_shape, yhat_shape):
    loss = getattr(namespace, name)()
    y, yhat = np.full(y_shape, 0.5), np.full(yhat_shape, 0.5)
    with pytest.raises(DimensionMismatchError):
        loss(y, yhat)
    with pytest.raises(DimensionMismatchError):
        loss.backward(y, yhat)


@pytest.mark.parametrize("name", NAMES)
def test_empty_targets_are_refused(namespace, name):
    with pytest.raises(ValueError, match="empty"):
        getattr(namespace, name)()(np.zeros((0, 3)), np.zeros((0, 3)))


@pytest.mark.parametrize("name", NAMES)
def test_loss_protocol(namespace, name):
    loss = getattr(namespace, name)()
    assert isinstance(loss, Loss)
    assert repr(loss) == f"{name}()"


# ---------------------------------------------------------------- property test


@st.composite
def loss_cases(draw):
    name = draw(st.sampled_from(NAMES))
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=12))
    y = draw(hnp.arrays(dtype, shape, elements=st.sampled_from([0.0, 1.0]) | st.floats(0, 1)))
    yhat = draw(hnp.arrays(dtype, shape, elements=st.floats(0, 1, width=32)))
    return name, dtype, y, yhat


@settings(deadline=None, max_examples=100)
@given(loss_cases())
def test_loss_matches_reference_property(case):
    name, dtype, y, yhat = case
    fast, slow = pair(name)
    with no_warnings():
        assert_close(fast(y, yhat), slow(y, yhat), "op", dtype)
        assert_close(fast.backward(y, yhat), slow.backward(y, yhat), "op", dtype)


# ---------------------------------------------------------------- CrossEntropyLoss

CE_SHAPES = [(1, 1), (1, 5), (7, 3), (5, 300), (300, 5), (64, 10)]


def one_hot(rng, shape, dtype):
    return np.eye(shape[1], dtype=dtype)[rng.integers(0, shape[1], shape[0])]


def probabilities(rng, shape, dtype):
    p = rng.uniform(0, 1, shape)
    return (p / p.sum(axis=1, keepdims=True)).astype(dtype)


@pytest.mark.parametrize("soft", [False, True], ids=["one_hot", "probabilities"])
@pytest.mark.parametrize("shape", CE_SHAPES, ids=shape_id)
def test_cross_entropy_kernels(shape, soft, dtype, rng):
    y = (probabilities if soft else one_hot)(rng, shape, dtype)
    yhat = (3 * rng.standard_normal(shape)).astype(dtype)
    value = dtype(kernels.cross_entropy_forward(y, yhat))  # the kernel sums in float64
    assert_close(value, ref.CrossEntropyLoss().forward(y, yhat), "op", dtype)
    out = np.full(shape, np.nan, dtype)
    kernels.cross_entropy_backward(y, yhat, out)
    assert_close(out, ref.CrossEntropyLoss().backward(y, yhat), "op", dtype)


@pytest.mark.parametrize("shape", CE_SHAPES, ids=shape_id)
def test_cross_entropy_matches_reference(shape, dtype, rng):
    fast, slow = pyldl.CrossEntropyLoss(), ref.CrossEntropyLoss()
    y, yhat = one_hot(rng, shape, dtype), (2 * rng.standard_normal(shape)).astype(dtype)
    value = fast(y, yhat)
    assert type(value) is np.dtype(dtype).type and type(slow(y, yhat)) is np.dtype(dtype).type
    assert_close(value, slow(y, yhat), "op", dtype)
    assert_close(fast.backward(y, yhat), slow.backward(y, yhat), "op", dtype)


def test_cross_entropy_golden_value(namespace):
    """The original's losses notebook printed -0.16510414229480497 for these logits: its
    log-sum-exp lacks the row maximum it subtracts, so it is low by mean(max(yhat, axis=1))."""
    y = np.eye(3, dtype=int)
    yhat = np.array([[0.9, 0.1, 0], [0.2, 0.7, 0.1], [0, 0.1, 0.9]])
    loss = namespace.CrossEntropyLoss()
    original = -0.16510414229480497
    assert_close(loss(y, yhat), original + np.mean(np.max(yhat, axis=1)), "op", np.float64)
    expected_delta = [
        [-0.46117747, 0.24210857, 0.21906889],
        [0.28140804, -0.53603657, 0.25462853],
        [0.21906889, 0.24210857, -0.46117747],
    ]
    np.testing.assert_allclose(loss.backward(y, yhat), expected_delta, atol=1e-8)


def test_cross_entropy_formula(namespace, rng):
    y, yhat = probabilities(rng, (6, 4), np.float64), rng.standard_normal((6, 4))
    loss = namespace.CrossEntropyLoss()
    expected = np.mean(np.log(np.sum(np.exp(yhat), axis=1)) - np.sum(y * yhat, axis=1))
    assert_close(loss(y, yhat), expected, "op", np.float64)
    softmax = np.exp(yhat) / np.sum(np.exp(yhat), axis=1, keepdims=True)
    assert_close(loss.backward(y, yhat), softmax - y, "op", np.float64)


@pytest.mark.parametrize(
    ("logits", "target", "expected"),
    [
        ([[1e3, -1e3]], [[1, 0]], 0.0),
        ([[1e3, -1e3]], [[0, 1]], 2e3),
        ([[-1e3, -1e3, -1e3]], [[0, 0, 1]], np.log(3)),
        ([[1e3, 1e3, 1e3, 1e3]], [[0.25, 0.25, 0.25, 0.25]], np.log(4)),
        ([[7.0, 7.0]], [[1, 0]], np.log(2)),
    ],
    ids=["large_right", "large_wrong", "equal_very_negative", "equal_very_positive", "equal"],
)
def test_cross_entropy_extreme_logits_stay_finite(namespace, dtype, logits, target, expected):
    y, yhat = np.array(target, dtype), np.array(logits, dtype)
    loss = namespace.CrossEntropyLoss()
    with no_warnings():
        value, delta = loss(y, yhat), loss.backward(y, yhat)
    assert_close(value, dtype(expected), "op", dtype)
    softmax = np.full(yhat.shape, 1 / yhat.shape[1]) if len(set(logits[0])) == 1 else (yhat == yhat.max())
    assert_close(delta, (softmax - y).astype(dtype), "op", dtype)


@pytest.mark.parametrize("soft", [False, True], ids=["one_hot", "probabilities"])
@pytest.mark.parametrize("shape", [(4, 3), (1, 2), (1, 1), (3, 7)], ids=shape_id)
def test_cross_entropy_backward_is_the_gradient_of_n_times_forward(namespace, shape, soft, rng):
    loss = namespace.CrossEntropyLoss()
    y = (probabilities if soft else one_hot)(rng, shape, np.float64)
    yhat = 2 * rng.standard_normal(shape)
    assert_gradcheck(loss.backward(y, yhat), lambda: shape[0] * loss.forward(y, yhat), yhat)


def test_cross_entropy_nan_logits_give_nan(namespace):
    y, yhat = np.eye(2), np.array([[0.5, np.nan], [0.5, 0.25]])
    loss = namespace.CrossEntropyLoss()
    with no_warnings():
        assert np.isnan(loss(y, yhat))
        delta = loss.backward(y, yhat)
    np.testing.assert_array_equal(np.isnan(delta), [[True, True], [False, False]])


def test_cross_entropy_dtypes(namespace, rng):
    y, yhat = one_hot(rng, (4, 3), np.float64), rng.standard_normal((4, 3)).astype(np.float32)
    loss = namespace.CrossEntropyLoss()
    assert type(loss(y, yhat)) is np.float32 and loss.backward(y, yhat).dtype == np.float32
    assert type(loss(y.astype(int), yhat.astype(np.float64))) is np.float64
    assert_close(loss([[0, 1]], [[1, 2]]), loss(np.array([[0.0, 1]]), np.array([[1.0, 2]])), "op", np.float64)


@pytest.mark.parametrize(
    ("y_shape", "yhat_shape", "fragment"),
    [
        ((3, 2), (3, 3), "same shape"),
        ((2, 3), (3, 3), "same shape"),
        ((3,), (3,), "2-D logits"),
        ((2, 2, 2), (2, 2, 2), "2-D logits"),
        ((3,), (3, 4), "encode_one_hot"),
        ((3, 1), (3, 4), "encode_one_hot"),
    ],
    ids=["columns", "rows", "1d", "3d", "labels", "label_column"],
)
def test_cross_entropy_shape_errors(namespace, y_shape, yhat_shape, fragment):
    loss = namespace.CrossEntropyLoss()
    y, yhat = np.zeros(y_shape), np.zeros(yhat_shape)
    for method in (loss.forward, loss.backward):
        with pytest.raises(DimensionMismatchError, match=fragment):
            method(y, yhat)


def test_cross_entropy_empty_is_refused(namespace):
    for shape in [(0, 3), (3, 0)]:
        with pytest.raises(ValueError, match="empty"):
            namespace.CrossEntropyLoss()(np.zeros(shape), np.zeros(shape))


def test_cross_entropy_protocol(namespace):
    loss = namespace.CrossEntropyLoss()
    assert isinstance(loss, Loss) and repr(loss) == "CrossEntropyLoss()"
    assert pyldl.losses.CrossEntropyLoss is pyldl.CrossEntropyLoss
