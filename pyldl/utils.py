"""Data helpers with PyLDL's random draws, so seeded notebooks get the same data."""

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
