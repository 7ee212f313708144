"""Data helpers: the same draws from NumPy's global RNG as PyLDL, in the order SPEC.md gives;
the later version's helpers (grids, USPS selection, contingency, KL) and its plots (Agg)."""

# PyLDL draws from NumPy's global RNG, so these tests do too.
# ruff: noqa: NPY002

import sys

import numpy as np
import pytest
from conftest import seeded

from pyldl import utils
from pyldl.exceptions import DimensionMismatchError
from pyldl.utils import (
    contingency_matrix,
    create_minibatches,
    encode_one_hot,
    gen_arti,
    get_usps,
    kullback_leibler_divergence,
    load_usps,
    make_grid,
)

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


# ---------------------------------------------------------------- the later version's helpers


def test_kullback_leibler_divergence():
    p = np.array([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]])
    q = np.array([[0.25, 0.75, 0.0], [0.1, 0.2, 0.7]])
    expected = (0.5 * np.log(2) + 0.5 * np.log(0.5 / 0.75)) / 2  # row 2 is 0; p = 0 adds 0
    value = kullback_leibler_divergence(p, q)
    assert type(value) is np.float64
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    assert kullback_leibler_divergence(p, p) == 0
    # q floored at 1e-10, the ratio too: finite where q is 0 and p is not
    np.testing.assert_allclose(kullback_leibler_divergence([[1.0]], [[0.0]]), np.log(1e10), rtol=1e-12)
    np.testing.assert_allclose(kullback_leibler_divergence([[1e-12]], [[1.0]]), 1e-12 * np.log(1e-10))


def test_make_grid_default_bounds():
    grid, x, y = make_grid()
    steps = np.arange(-5, 5, 0.5)
    assert x.shape == y.shape == (20, 20) and grid.shape == (400, 2)
    np.testing.assert_array_equal(x[0], steps)
    np.testing.assert_array_equal(y[:, 0], steps)
    np.testing.assert_array_equal(grid, np.c_[x.ravel(), y.ravel()])


def test_make_grid_takes_its_bounds_from_the_data():
    data = np.array([[0.0, 10.0], [4.0, 2.0], [1.0, 6.0]])
    grid, x, y = make_grid(data=data, step=4)
    np.testing.assert_array_equal(x[0], [0, 1, 2, 3])
    np.testing.assert_array_equal(y[:, 0], [2, 4, 6, 8])
    assert grid.shape == (16, 2)
    assert make_grid(xmin=0, xmax=1, ymin=0, ymax=2, step=2)[0].tolist() == [
        [0, 0],
        [0.5, 0],
        [0, 1],
        [0.5, 1],
    ]


def test_get_usps_selects_one_label_or_a_list_in_its_order():
    X = np.arange(12).reshape(6, 2)
    y = np.array([3, 1, 3, 2, 1, 0])
    rows, labels = get_usps(3, X, y)
    np.testing.assert_array_equal(rows, X[[0, 2]])
    np.testing.assert_array_equal(labels, [3, 3])
    rows, labels = get_usps([1, 3], X, y)
    np.testing.assert_array_equal(rows, X[[1, 4, 0, 2]])
    np.testing.assert_array_equal(labels, [1, 1, 3, 3])
    assert get_usps(7, X, y)[0].shape == (0, 2)
    with pytest.raises(ValueError, match="at least one label"):
        get_usps([], X, y)


def test_contingency_matrix_counts_pairs_over_sorted_values():
    y_true = np.array([2, 0, 2, 1, 0, 2])
    y_pred = np.array(["b", "a", "b", "b", "c", "a"])
    expected = [[1, 0, 1], [0, 1, 0], [1, 2, 0]]  # rows 0, 1, 2; columns a, b, c
    counts = contingency_matrix(y_true, y_pred)
    assert counts.dtype == np.float64
    np.testing.assert_array_equal(counts, expected)
    assert counts.sum() == len(y_true)
    np.testing.assert_array_equal(contingency_matrix([5, 5], [1, 1]), [[2]])
    with pytest.raises(DimensionMismatchError, match="y_true has 2 values but y_pred has 3"):
        contingency_matrix([0, 1], [0, 1, 1])


# ---------------------------------------------------------------- plots (Agg)


@pytest.fixture
def pyplot():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.figure()
    yield plt
    plt.close("all")


def test_plot_data(pyplot):
    with seeded(0):
        data, labels = gen_arti(nbex=40, data_type=1)
    utils.plot_data(data)
    utils.plot_data(data, labels)
    collections = pyplot.gca().collections
    assert len(collections) == 3  # no labels: one scatter; two labels: one each
    assert len(collections[1].get_offsets()) + len(collections[2].get_offsets()) == 40
    with pytest.raises(ValueError, match="at most 6 distinct labels"):
        utils.plot_data(np.zeros((7, 2)), np.arange(7))


def test_plot_frontiere(pyplot):
    data = np.array([[-2.0, -1.0], [2.0, 3.0]])
    calls = []

    def decision(grid):
        calls.append(grid)
        return np.sign(grid[:, 0])

    utils.plot_frontiere(data, decision, step=10)
    np.testing.assert_array_equal(calls[0], make_grid(data=data, step=10)[0])
    contour = pyplot.gca().collections[-1]
    assert list(contour.levels) == [-1, 0, 1]


def test_show_usps(pyplot):
    utils.show_usps(np.linspace(0, 1, 256))
    image = pyplot.gca().get_images()[0]
    assert image.get_array().shape == (16, 16) and image.get_cmap().name == "gray"


@pytest.mark.parametrize(
    "call",
    [
        lambda: utils.plot_data(np.zeros((2, 2))),
        lambda: utils.plot_frontiere(np.zeros((2, 2)), np.sign),
        lambda: utils.show_usps(np.zeros(256)),
    ],
    ids=["plot_data", "plot_frontiere", "show_usps"],
)
def test_plots_without_matplotlib_name_the_extra(monkeypatch, call):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install 'pyldl\[plot\]'"):
        call()


def test_importing_pyldl_does_not_import_matplotlib():
    import subprocess

    code = "import sys, pyldl, pyldl.utils; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
