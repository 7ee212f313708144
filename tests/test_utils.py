"""Data helpers: the same draws from NumPy's global RNG as PyLDL, in the order SPEC.md gives."""

# PyLDL draws from NumPy's global RNG, so these tests do too.
# ruff: noqa: NPY002

import numpy as np
import pytest
from conftest import seeded

from pyldl.exceptions import DimensionMismatchError
from pyldl.utils import create_minibatches, encode_one_hot, gen_arti, load_usps

# ---------------------------------------------------------------- create_minibatches


@pytest.mark.parametrize(
    ("n", "batch_size"),
    [(10, 3), (9, 3), (2, 64), (1, 1), (5, 5), (7, 1), (64, 10)],
    ids=[
        "partial_last",
        "exact",
        "fewer_than_one_batch",
        "one_sample",
        "one_full_batch",
        "online",
        "64_by_10",
    ],
)
def test_create_minibatches_draws_one_permutation(n, batch_size):
    X = np.arange(3 * n, dtype=float).reshape(n, 3)
    Y = np.arange(n).reshape(n, 1)
    with seeded(5):
        batches = create_minibatches(X, Y, batch_size)
        next_draw = np.random.random()
    with seeded(5):
        order = np.random.permutation(n)
        expected_next_draw = np.random.random()

    assert next_draw == expected_next_draw  # one permutation, nothing else
    assert len(batches) == -(-n // batch_size)
    for k, (bx, by) in enumerate(batches):
        rows = order[k * batch_size : (k + 1) * batch_size]
        assert bx.shape == (len(rows), 3) and by.shape == (len(rows), 1)
        assert bx.dtype == X.dtype and by.dtype == Y.dtype
        np.testing.assert_array_equal(bx, X[rows])
        np.testing.assert_array_equal(by, Y[rows])
    assert [len(bx) for bx, _ in batches[:-1]] == [batch_size] * (len(batches) - 1)


def test_create_minibatches_accepts_one_dimensional_targets():
    with seeded(0):
        batches = create_minibatches(np.ones((5, 2)), np.arange(5), 2)
    assert [by.shape for _, by in batches] == [(2,), (2,), (1,)]
    np.testing.assert_array_equal(np.sort(np.concatenate([by for _, by in batches])), np.arange(5))


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True, None], ids=repr)
def test_create_minibatches_refuses_a_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        create_minibatches(np.ones((4, 2)), np.ones((4, 1)), batch_size)


def test_create_minibatches_refuses_rows_that_differ():
    with pytest.raises(DimensionMismatchError, match="rows"):
        create_minibatches(np.ones((4, 2)), np.ones((3, 1)), 2)


# ---------------------------------------------------------------- encode_one_hot


@pytest.mark.parametrize(
    "y",
    [
        np.array([0, 2, 1, 2]),
        np.array([[0], [2], [1], [2]]),
        [0, 2, 1, 2],
        np.array([0, 2, 1, 2], np.uint8),
    ],
    ids=["1d", "column", "list", "uint8"],
)
def test_encode_one_hot(y):
    expected = np.array([[1.0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1]])
    out = encode_one_hot(y)
    assert out.shape == (4, 3) and out.dtype == np.float64
    np.testing.assert_array_equal(out, expected)


def test_encode_one_hot_of_booleans():
    np.testing.assert_array_equal(encode_one_hot(np.array([True, False])), [[0.0, 1], [1, 0]])


@pytest.mark.parametrize(
    "y",
    [np.array([1, 7, 7]), np.array([-1, 1]), np.array([0.0, 1.0])],
    ids=["labels_beyond_classes", "negative", "float"],
)
def test_encode_one_hot_refuses_labels_it_cannot_place(y):
    with pytest.raises(ValueError, match="integer labels"):
        encode_one_hot(y)


# ---------------------------------------------------------------- gen_arti


def expected_gen_arti(c, sigma, nbex, data_type, epsilon):
    """SPEC.md's draws, one explicit call at a time, from the current global RNG."""
    cov = np.diag([sigma, sigma])
    if data_type == 0:
        half = nbex // 2
        data = np.vstack(
            [
                np.random.multivariate_normal([c, c], cov, half),
                np.random.multivariate_normal([-c, -c], cov, half),
            ]
        )
        y = np.array([1.0] * half + [-1.0] * half)
    elif data_type == 1:
        quarter = nbex // 4
        centers = [[c, c], [-c, -c], [-c, c], [c, -c]]
        data = np.vstack([np.random.multivariate_normal(m, cov, quarter) for m in centers])
        y = np.array([1.0] * (2 * quarter) + [-1.0] * (2 * quarter))
    else:
        data = np.random.uniform(-4, 4, 2 * nbex).reshape(nbex, 2)
        y = 2 * ((np.ceil(data[:, 0]) + np.ceil(data[:, 1])) % 2) - 1
    noise_x0 = np.random.normal(0, epsilon, nbex)
    noise_x1 = np.random.normal(0, epsilon, nbex)
    data = data + np.column_stack([noise_x0, noise_x1])
    order = np.random.permutation(nbex)
    return data[order], y[order].reshape(-1, 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"data_type": 1},
        {"data_type": 2},
        {"centerx": 2.5, "sigma": 0.3, "nbex": 40, "data_type": 0, "epsilon": 0.1},
        {"centerx": 0.5, "sigma": 0.05, "nbex": 12, "data_type": 1, "epsilon": 0.0},
        {"nbex": 7, "data_type": 2, "epsilon": 0.5},
    ],
    ids=["defaults", "xor", "checkerboard", "two_blobs_custom", "xor_custom", "checkerboard_odd"],
)
def test_gen_arti_reproduces_the_draws(kwargs):
    args = {"centerx": 1, "sigma": 0.1, "nbex": 1000, "data_type": 0, "epsilon": 0.02} | kwargs
    with seeded(3):
        data, y = gen_arti(**kwargs)
        next_draw = np.random.random()
    with seeded(3):
        expected_data, expected_y = expected_gen_arti(
            args["centerx"], args["sigma"], args["nbex"], args["data_type"], args["epsilon"]
        )
        expected_next_draw = np.random.random()

    nbex = args["nbex"]
    assert data.shape == (nbex, 2) and data.dtype == np.float64
    assert y.shape == (nbex, 1) and y.dtype == np.float64
    assert set(np.unique(y)) <= {-1.0, 1.0}
    np.testing.assert_array_equal(data, expected_data)
    np.testing.assert_array_equal(y, expected_y)
    assert next_draw == expected_next_draw


def test_gen_arti_ignores_centery():
    with seeded(1):
        a = gen_arti(centerx=2, centery=1, nbex=20)
    with seeded(1):
        b = gen_arti(centerx=2, centery=-7, nbex=20)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_gen_arti_labels_follow_the_blobs():
    with seeded(0):
        data, y = gen_arti(centerx=3, sigma=0.01, nbex=400, data_type=1, epsilon=0.0)
    same_sign = np.sign(data[:, 0]) == np.sign(data[:, 1])
    np.testing.assert_array_equal(np.where(same_sign, 1.0, -1.0), y[:, 0])
    assert np.sum(y == 1) == 200


@pytest.mark.parametrize(("data_type", "nbex"), [(0, 11), (1, 10), (1, 6)], ids=str)
def test_gen_arti_refuses_nbex_it_cannot_split(data_type, nbex):
    with pytest.raises(ValueError, match="nbex"):
        gen_arti(nbex=nbex, data_type=data_type)


def test_gen_arti_refuses_an_unknown_type():
    with pytest.raises(ValueError, match="data_type"):
        gen_arti(data_type=3)


# ---------------------------------------------------------------- load_usps


def test_load_usps(tmp_path):
    path = tmp_path / "usps_train.txt"
    path.write_text(
        "3 4\n"  # header: skipped
        "6 0.5 -1 0.25 1\n"
        "\n"  # too short: skipped
        "1 2\n"  # two numbers only: skipped
        "0 -0.75 0 1e-3 -1\n"
        "9 1 1 1 1\n"
    )
    X, y = load_usps(path)
    assert X.shape == (3, 4) and X.dtype == np.float64
    assert y.shape == (3,) and y.dtype.kind == "i"
    np.testing.assert_array_equal(y, [6, 0, 9])
    np.testing.assert_array_equal(X, [[0.5, -1, 0.25, 1], [-0.75, 0, 1e-3, -1], [1, 1, 1, 1]])
    X2, y2 = load_usps(str(path))  # a str path works too
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)
