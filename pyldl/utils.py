"""Data and plotting helpers with PyLDL's random draws, so seeded notebooks get the same data.

The plotting helpers (``plot_data``, ``plot_frontiere``, ``show_usps``) import matplotlib
only when called: it is the optional ``plot`` extra (``pip install 'pyldl[plot]'``).
"""

import numbers

import numpy as np

from .exceptions import DimensionMismatchError


def create_minibatches(X, Y, batch_size):
    """The list of (X, Y) batches SGD trains on.

    One ``np.random.permutation(len(X))`` is drawn; batches are consecutive slices of
    ``batch_size`` rows in that order, the last partial batch kept (also when there are
    fewer rows than one batch).
    """
    X, Y = np.asarray(X), np.asarray(Y)
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if len(X) != len(Y):
        raise DimensionMismatchError((len(X), "_"), np.shape(Y), f"X has {len(X)} rows but Y has {len(Y)}")
    order = np.random.permutation(len(X))
    X, Y = X[order], Y[order]
    return [(X[i : i + batch_size], Y[i : i + batch_size]) for i in range(0, len(X), batch_size)]


def encode_one_hot(y):
    """One-hot rows: as many columns as distinct labels, a 1 at column ``y[i]`` in row i."""
    y = np.asarray(y).reshape(-1)
    n_classes = len(np.unique(y))
    if y.dtype.kind == "b":
        y = y.astype(np.intp)
    if y.dtype.kind not in "iu" or (y.size and (y.min() < 0 or y.max() >= n_classes)):
        # PyLDL failed here with an IndexError
        raise ValueError(
            f"encode_one_hot needs integer labels from 0 to {n_classes - 1} ({n_classes} distinct "
            f"labels), got dtype {y.dtype} with values {np.unique(y)[:10]}"
        )
    one_hot = np.zeros((y.shape[0], n_classes))
    one_hot[np.arange(y.shape[0]), y] = 1
    return one_hot


def _blob(center, sigma, n):
    return np.random.multivariate_normal(center, np.diag([sigma, sigma]), n)


def gen_arti(centerx=1, centery=1, sigma=0.1, nbex=1000, data_type=0, epsilon=0.02):
    """Toy 2-D data with labels +1/-1 shaped (nbex, 1).

    ``data_type`` 0: two Gaussian blobs; 1: four blobs in an XOR layout; 2: a checkerboard.
    ``sigma`` is the variance of each blob; ``centery`` is accepted and unused (as in PyLDL).
    Noise of standard deviation ``epsilon`` is added, then the rows are shuffled.
    """
    c = centerx
    parts = {0: 2, 1: 4}.get(data_type, 1)
    if nbex % parts:
        # PyLDL failed here with a broadcasting error when adding the noise
        raise ValueError(f"gen_arti with data_type={data_type} needs nbex divisible by {parts}, got {nbex}")
    if data_type == 0:
        data = np.vstack((_blob([c, c], sigma, nbex // 2), _blob([-c, -c], sigma, nbex // 2)))
        y = np.hstack((np.ones(nbex // 2), -np.ones(nbex // 2)))
    elif data_type == 1:
        quarter = nbex // 4
        blobs = [_blob(center, sigma, quarter) for center in ([c, c], [-c, -c], [-c, c], [c, -c])]
        data = np.vstack(blobs)
        y = np.hstack((np.ones(2 * quarter), -np.ones(2 * quarter)))
    elif data_type == 2:
        data = np.reshape(np.random.uniform(-4, 4, 2 * nbex), (nbex, 2))
        y = 2 * ((np.ceil(data[:, 0]) + np.ceil(data[:, 1])) % 2) - 1
    else:
        raise ValueError(f"data_type must be 0, 1 or 2, got {data_type!r}")
    data[:, 0] += np.random.normal(0, epsilon, nbex)
    data[:, 1] += np.random.normal(0, epsilon, nbex)
    order = np.random.permutation(y.size)
    return data[order], y[order].reshape(-1, 1)


def load_usps(path):
    """USPS digits from a text file: (features as float, labels as int).

    The first line is skipped; every line of more than two numbers is a row whose first
    number is the label.
    """
    with open(path) as f:
        f.readline()
        rows = [[float(v) for v in line.split()] for line in f if len(line.split()) > 2]
    table = np.array(rows)
    return table[:, 1:], table[:, 0].astype(int)


def get_usps(l, X, y):  # noqa: E741  (PyLDL's name)
    """The rows of ``X`` and ``y`` whose label is ``l``; for a list of labels, those of each
    label stacked in the list's order."""
    X, y = np.asarray(X), np.asarray(y)
    if not isinstance(l, list | tuple):
        return X[y == l], y[y == l]
    if not l:
        raise ValueError("get_usps needs at least one label")
    parts = [get_usps(label, X, y) for label in l]
    return np.vstack([part[0] for part in parts]), np.hstack([part[1] for part in parts])


def kullback_leibler_divergence(d_true, d_pred):
    """Mean over rows of sum(p log(p / q)), with q and the ratio floored at 1e-10 (as PyLDL)."""
    p, q = np.asarray(d_true), np.asarray(d_pred)
    return np.mean(np.sum(p * np.log(np.maximum(p / np.maximum(q, 1e-10), 1e-10)), axis=1))


def contingency_matrix(y_true, y_pred):
    """Counts of the pairs (true, predicted): rows follow the sorted distinct values of
    ``y_true``, columns those of ``y_pred`` (a float matrix, as PyLDL)."""
    y_true, y_pred = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    if len(y_true) != len(y_pred):
        raise DimensionMismatchError(
            y_true.shape, y_pred.shape, f"y_true has {len(y_true)} values but y_pred has {len(y_pred)}"
        )
    true_values, rows = np.unique(y_true, return_inverse=True)
    pred_values, columns = np.unique(y_pred, return_inverse=True)
    counts = np.zeros((len(true_values), len(pred_values)))
    np.add.at(counts, (rows, columns), 1)
    return counts


def make_grid(data=None, xmin=-5, xmax=5, ymin=-5, ymax=5, step=20):
    """``(grid, x, y)``: the meshgrid ``x, y`` of ``arange(min, max, (max - min) / step)`` on each
    axis (bounds from data's first two columns when given) and its points as rows of ``grid``."""
    if data is not None:
        data = np.asarray(data)
        xmax, xmin, ymax, ymin = data[:, 0].max(), data[:, 0].min(), data[:, 1].max(), data[:, 1].min()
    x, y = np.meshgrid(
        np.arange(xmin, xmax, (xmax - xmin) * 1.0 / step), np.arange(ymin, ymax, (ymax - ymin) * 1.0 / step)
    )
    return np.c_[x.ravel(), y.ravel()], x, y


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError("pyldl's plotting helpers need matplotlib: pip install 'pyldl[plot]'") from error
    return plt


_COLORS = ["red", "green", "blue", "orange", "black", "cyan"]
_MARKERS = [".", "+", "*", "o", "x", "^"]


def plot_data(data, labels=None):
    """Scatter plot of 2-D points on the current axes; one colour and marker per label value
    (sorted), up to six."""
    plt = _pyplot()
    data = np.asarray(data)
    if labels is None:
        plt.scatter(data[:, 0], data[:, 1], marker="x")
        return
    labels = np.asarray(labels).reshape(-1)
    values = sorted(set(labels))
    if len(values) > len(_COLORS):
        # PyLDL failed here with an IndexError
        raise ValueError(f"plot_data draws at most {len(_COLORS)} distinct labels, got {len(values)}")
    for color, marker, value in zip(_COLORS, _MARKERS, values, strict=False):
        plt.scatter(data[labels == value, 0], data[labels == value, 1], c=color, marker=marker)


def plot_frontiere(data, f, step=20):
    """Filled contour of the decision function ``f`` (points -> values) on ``make_grid(data,
    step=step)``, grey below 0 and blue above, at levels [-1, 0, 1]."""
    plt = _pyplot()
    grid, x, y = make_grid(data=data, step=step)
    plt.contourf(x, y, np.asarray(f(grid)).reshape(x.shape), colors=("gray", "blue"), levels=[-1, 0, 1])


def show_usps(data):
    """A USPS digit (256 values) as a 16x16 grey image on the current axes."""
    _pyplot().imshow(np.asarray(data).reshape((16, 16)), interpolation="nearest", cmap="gray")
