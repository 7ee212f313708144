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


@jit
def mse_forward(y, yhat):
    """Mean over rows of the squared error summed over columns."""
    total = np.float64(0.0)  # float64 also when run as Python (NUMBA_DISABLE_JIT=1)
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            d = y[i, j] - yhat[i, j]
            total += d * d
    return total / y.shape[0]


@jit
def mse_backward(y, yhat, out):
    """out = -2 (y - yhat)."""
    two = y.dtype.type(2)
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            out[i, j] = two * (yhat[i, j] - y[i, j])


@jit
def bce_forward(y, yhat, eps):
    """-mean(y log p + (1 - y) log(1 - p)), p = yhat clipped to [eps, 1 - eps] (eps of y's dtype)."""
    one = y.dtype.type(1)
    low, high = eps, one - eps
    # a row of terms, then their sum: the first loop vectorises (_math.log is branch-free), a
    # reduction cannot (64 x 256, one core: 300-385 -> 65-90 us float64, 165-205 -> 32-39 float32)
    terms = np.empty(y.shape[1], y.dtype)
    total = np.float64(0.0)  # float64 also when run as Python (NUMBA_DISABLE_JIT=1)
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            p = clip(yhat[i, j], low, high)
            terms[j] = y[i, j] * _math.log(p) + (one - y[i, j]) * _math.log(one - p)
        total += sum64(terms)
    return -total / y.size


@jit
def bce_backward(y, yhat, eps, out):
    """out = (p - y) / (p (1 - p) N), p = yhat clipped to [eps, 1 - eps] (eps of y's dtype), N rows."""
    one = y.dtype.type(1)
    low, high = eps, one - eps
    rows = y.dtype.type(y.shape[0])
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            p = clip(yhat[i, j], low, high)
            out[i, j] = (p - y[i, j]) / (p * (one - p) * rows)


@jit
def cross_entropy_forward(y, yhat):
    """Mean over rows of logsumexp(yhat_i) - y_i . yhat_i, the row maximum subtracted inside
    the exponentials and added back.  y, yhat (N, C) logits."""
    total = np.float64(0.0)  # float64 also when run as Python (NUMBA_DISABLE_JIT=1)
    for i in range(y.shape[0]):
        top = yhat[i, 0]
        for j in range(1, y.shape[1]):
            top = yhat[i, j] if yhat[i, j] > top or yhat[i, j] != yhat[i, j] else top  # NaN wins
        exps, dot = y.dtype.type(0), y.dtype.type(0)
        for j in range(y.shape[1]):
            exps += _math.exp(yhat[i, j] - top)
            dot += y[i, j] * yhat[i, j]
        total += np.log(exps) + (top - dot)  # as the reference: large logits cancel first
    return total / y.shape[0]


@jit
def cross_entropy_backward(y, yhat, out):
    """out = softmax(yhat) - y, row by row.  y, yhat, out (N, C)."""
    softmax_forward(yhat, out)
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            out[i, j] -= y[i, j]
