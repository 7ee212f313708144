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
    """Mean over rows of the squared error summed over columns (four float64 accumulators, as
    sum64: 4000 x 1, 2.8 -> 1.4 us)."""
    t, p = y.reshape(y.size), yhat.reshape(yhat.size)
    a0 = a1 = a2 = a3 = np.float64(0.0)  # float64 also when run as Python (NUMBA_DISABLE_JIT=1)
    end = t.size - t.size % 4
    for i in range(0, end, 4):
        d0, d1, d2, d3 = t[i] - p[i], t[i + 1] - p[i + 1], t[i + 2] - p[i + 2], t[i + 3] - p[i + 3]
        a0 += d0 * d0
        a1 += d1 * d1
        a2 += d2 * d2
        a3 += d3 * d3
    for i in range(end, t.size):
        d = t[i] - p[i]
        a0 += d * d
    return ((a0 + a1) + (a2 + a3)) / y.shape[0]


@jit
def mse_backward(y, yhat, out):
    """out = -2 (y - yhat)."""
    two = y.dtype.type(2)
    t, p, d = y.reshape(y.size), yhat.reshape(yhat.size), out.reshape(out.size)  # one loop, also for 1 column
    for i in range(t.size):
        d[i] = two * (p[i] - t[i])


_CHUNK = 2048  # BCE's terms are summed by runs of this many: a loop that vectorises, then sum64


@jit
def bce_forward(y, yhat, eps):
    """-mean(y log p + (1 - y) log(1 - p)), p = yhat clipped to [eps, 1 - eps] (eps of y's dtype)."""
    one = y.dtype.type(1)
    low, high = eps, one - eps
    t, q = y.reshape(y.size), yhat.reshape(yhat.size)
    # runs of terms, then their sum: the first loop vectorises (_math.log is branch-free), a
    # reduction cannot (64 x 256, one core: 300-385 -> 65-90 us float64, 165-205 -> 32-39 float32)
    terms = np.empty(min(_CHUNK, t.size), y.dtype)
    total = np.float64(0.0)  # float64 also when run as Python (NUMBA_DISABLE_JIT=1)
    for start in range(0, t.size, _CHUNK):
        tc, qc = t[start : start + _CHUNK], q[start : start + _CHUNK]
        for j in range(tc.size):
            p = clip(qc[j], low, high)
            terms[j] = tc[j] * _math.log(p) + (one - tc[j]) * _math.log(one - p)
        total += sum64(terms[: tc.size])
    return -total / y.size


@jit
def bce_backward(y, yhat, eps, out):
    """out = (p - y) / (p (1 - p) N), p = yhat clipped to [eps, 1 - eps] (eps of y's dtype), N rows."""
    one = y.dtype.type(1)
    low, high = eps, one - eps
    rows = y.dtype.type(y.shape[0])
    t, q, d = y.reshape(y.size), yhat.reshape(yhat.size), out.reshape(out.size)
    for i in range(t.size):
        p = clip(q[i], low, high)
        d[i] = (p - t[i]) / (p * (one - p) * rows)


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
