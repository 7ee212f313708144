"""Kernels of the activations: element-wise ones on 1-D arrays, Softmax on the rows of 2-D ones."""

from . import _math
from ._numba import jit


@jit
def tanh_forward(x, out):
    for i in range(x.size):
        out[i] = _math.tanh(x[i])


@jit
def tanh_backward_delta(x, delta, out):
    one = x.dtype.type(1)
    for i in range(x.size):
        t = _math.tanh(x[i])
        out[i] = delta[i] * (one - t * t)


@jit
def sigmoid_forward(x, out):
    for i in range(x.size):
        out[i] = _math.sigmoid(x[i])


@jit
def sigmoid_backward_delta(x, delta, out):
    one = x.dtype.type(1)
    for i in range(x.size):
        s = _math.sigmoid(x[i])
        out[i] = delta[i] * s * (one - s)


@jit
def relu_forward(x, out):
    zero = x.dtype.type(0)
    for i in range(x.size):
        out[i] = zero if x[i] < zero else x[i]  # NaN stays NaN, as in np.maximum


@jit
def relu_backward_delta(x, delta, out):
    zero, one = x.dtype.type(0), x.dtype.type(1)
    for i in range(x.size):
        out[i] = delta[i] * (one if x[i] > zero else zero)


@jit
def softmax_forward(x, out):
    """Row-wise softmax, max-subtracted.  x, out (N, D)."""
    for i in range(x.shape[0]):
        top = x[i, 0] if x.shape[1] else x.dtype.type(0)
        for j in range(1, x.shape[1]):  # a loop, not np.max: 1.3 s less compilation
            top = x[i, j] if x[i, j] > top or x[i, j] != x[i, j] else top
        total = x.dtype.type(0)
        for j in range(x.shape[1]):
            out[i, j] = _math.exp(x[i, j] - top)
            total += out[i, j]
        for j in range(x.shape[1]):
            out[i, j] /= total


@jit
def softmax_backward_delta(x, delta, out):
    """out = s * (delta - sum(delta * s)) row by row, s = softmax(x).  All (N, D)."""
    softmax_forward(x, out)
    for i in range(x.shape[0]):
        inner = x.dtype.type(0)
        for j in range(x.shape[1]):
            inner += delta[i, j] * out[i, j]
        for j in range(x.shape[1]):
            out[i, j] *= delta[i, j] - inner
