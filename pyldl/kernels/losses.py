"""Kernels of the MSE, BCE and cross-entropy losses.  y, yhat, out (N, D) of one dtype.

Loss values are sums of many terms: they accumulate in a float64 scalar, so a float32
loss is as accurate as NumPy's pairwise sum (no array is widened).
"""

import numpy as np

from . import _math
from ._numba import jit
from .activations import softmax_forward


@jit(inline=True)
def clip(value, low, high):
    """``value`` limited to [low, high]; NaN stays NaN, as in np.clip."""
    value = low if value < low else value
    return high if value > high else value


@jit
def sum64(x):
    """The sum in float64, over four accumulators (independent chains run 4x faster than one)."""
    a0 = a1 = a2 = a3 = np.float64(0.0)  # float64 also when run as Python (NUMBA_DISABLE_JIT=1)
    end = x.size - x.size % 4
    for i in range(0, end, 4):
        a0 += x[i]
        a1 += x[i + 1]
        a2 += x[i + 2]
        a3 += x[i + 3]
    for i in range(end, x.size):
        a0 += x[i]
    return (a0 + a1) + (a2 + a3)


# Each loss is its terms (one per value, or per row), computed in one loop that vectorises and
# that the fused epoch may share out among threads by rows, then their mean: sum64 over the
# terms in order, so the value does not depend on how the rows were shared out.


@jit
def mse_terms(y, yhat, terms):
    """terms = (y - yhat)**2, flattened."""
    t, p = y.reshape(y.size), yhat.reshape(yhat.size)
    for i in range(t.size):
        d = t[i] - p[i]
        terms[i] = d * d


@jit(inline=True)
def mse_mean(terms, rows, cols):
    """The mean over rows of the squared error summed over columns, from ``mse_terms``."""
    return sum64(terms[: rows * cols]) / rows


def mse_forward(y, yhat):
    """MSELoss's value (float64): its terms, then their mean."""
    terms = np.empty(y.size, y.dtype)
    mse_terms(y, yhat, terms)
    return mse_mean(terms, *y.shape)


@jit
def mse_backward(y, yhat, out):
    """out = -2 (y - yhat)."""
    two = y.dtype.type(2)
    t, p, d = y.reshape(y.size), yhat.reshape(yhat.size), out.reshape(out.size)  # one loop, also for 1 column
    for i in range(t.size):
        d[i] = two * (p[i] - t[i])


@jit
def bce_terms(y, yhat, eps, terms):
    """terms = -(y log p + (1 - y) log(1 - p)), flattened, p = yhat clipped to [eps, 1 - eps]
    (eps of y's dtype; _math.log is branch-free: the loop vectorises)."""
    one = y.dtype.type(1)
    low, high = eps, one - eps
    t, q = y.reshape(y.size), yhat.reshape(yhat.size)
    for j in range(t.size):
        p = clip(q[j], low, high)
        terms[j] = -(t[j] * _math.log(p) + (one - t[j]) * _math.log(one - p))


@jit(inline=True)
def bce_mean(terms, rows, cols):
    """The mean over every value, from ``bce_terms``."""
    return sum64(terms[: rows * cols]) / (rows * cols)


def bce_forward(y, yhat, eps):
    """BCELoss's value (float64), p clipped to [eps, 1 - eps]: its terms, then their mean."""
    terms = np.empty(y.size, y.dtype)
    bce_terms(y, yhat, eps, terms)
    return bce_mean(terms, *y.shape)


@jit
def bce_backward(y, yhat, eps, rows, out):
    """out = (p - y) / (p (1 - p) rows), p = yhat clipped to [eps, 1 - eps] (eps of y's dtype;
    ``rows``: the batch's, of which y may be a run)."""
    one = y.dtype.type(1)
    low, high = eps, one - eps
    n = y.dtype.type(rows)
    t, q, d = y.reshape(y.size), yhat.reshape(yhat.size), out.reshape(out.size)
    for i in range(t.size):
        p = clip(q[i], low, high)
        d[i] = (p - t[i]) / (p * (one - p) * n)


@jit
def cross_entropy_terms(y, yhat, terms):
    """terms[i] = logsumexp(yhat_i) - y_i . yhat_i, the row maximum subtracted inside the
    exponentials and added back.  y, yhat (N, C) logits, terms (N,)."""
    for i in range(y.shape[0]):
        top = yhat[i, 0]
        for j in range(1, y.shape[1]):
            top = yhat[i, j] if yhat[i, j] > top or yhat[i, j] != yhat[i, j] else top  # NaN wins
        exps, dot = y.dtype.type(0), y.dtype.type(0)
        for j in range(y.shape[1]):
            exps += _math.exp(yhat[i, j] - top)
            dot += y[i, j] * yhat[i, j]
        terms[i] = np.log(exps) + (top - dot)  # as the reference: large logits cancel first


@jit(inline=True)
def cross_entropy_mean(terms, rows, cols):
    """The mean over rows, from ``cross_entropy_terms``."""
    return sum64(terms[:rows]) / rows


def cross_entropy_forward(y, yhat):
    """CrossEntropyLoss's value (float64) for logits yhat: its terms, then their mean."""
    terms = np.empty(y.shape[0], y.dtype)
    cross_entropy_terms(y, yhat, terms)
    return cross_entropy_mean(terms, *y.shape)


@jit
def cross_entropy_backward(y, yhat, out):
    """out = softmax(yhat) - y, row by row.  y, yhat, out (N, C)."""
    softmax_forward(yhat, out)
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            out[i, j] -= y[i, j]
