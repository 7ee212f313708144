"""Kernels of the activations: element-wise ones on 1-D arrays, Softmax on the rows of 2-D ones.

Each derivative is written once, from the activation's output: the scalar ``tanh_backward``,
``sigmoid_backward``, ``relu_backward`` and the row-wise ``softmax_jacobian``. The Module
wrappers' ``*_backward_delta`` kernels recompute the output from their input; the fused epoch
keeps it from forward.
"""

from . import _math
from ._numba import jit


@jit
def tanh_forward(x, out):
    for i in range(x.size):
        out[i] = _math.tanh(x[i])


@jit(inline=True)
def tanh_backward(t, d):
    """The delta below Tanh from its output ``t`` and the delta ``d`` above: d (1 - t**2)."""
    return d * (_math.constants(t).one - t * t)


@jit
def tanh_backward_delta(x, delta, out):
    for i in range(x.size):
        out[i] = tanh_backward(_math.tanh(x[i]), delta[i])


@jit
def tanh_output_backward_delta(t, delta, out):
    """The delta below Tanh from its output ``t`` (the float32 Module passes NumPy's)."""
    for i in range(t.size):
        out[i] = tanh_backward(t[i], delta[i])


@jit
def sigmoid_forward(x, out):
    for i in range(x.size):
        out[i] = _math.sigmoid(x[i])


@jit(inline=True)
def sigmoid_backward(s, d):
    """The delta below Sigmoid from its output ``s`` and the delta ``d`` above: d s (1 - s)."""
    return d * s * (_math.constants(s).one - s)


@jit
def sigmoid_backward_delta(x, delta, out):
    for i in range(x.size):
        out[i] = sigmoid_backward(_math.sigmoid(x[i]), delta[i])


@jit
def relu_forward(x, out):
    zero = x.dtype.type(0)
    for i in range(x.size):
        out[i] = zero if x[i] < zero else x[i]  # NaN stays NaN, as in np.maximum


@jit(inline=True)
def relu_backward(r, d):
    """The delta below ReLU from its output ``r`` (positive where its input was) and ``d``."""
    k = _math.constants(r)
    return d * (k.one if r > k.zero else k.zero)


@jit
def relu_backward_delta(x, delta, out):
    for i in range(x.size):
        out[i] = relu_backward(x[i], delta[i])  # x > 0 exactly where relu(x) > 0


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
def softmax_jacobian(s, delta, out):
    """out = s * (delta - sum(delta * s)) row by row: the delta below Softmax from its output
    ``s``.  All (N, D); ``out`` may be ``s`` or ``delta``."""
    for i in range(s.shape[0]):
        inner = s.dtype.type(0)
        for j in range(s.shape[1]):
            inner += delta[i, j] * s[i, j]
        for j in range(s.shape[1]):
            out[i, j] = s[i, j] * (delta[i, j] - inner)


@jit
def softmax_backward_delta(x, delta, out):
    """out = s * (delta - sum(delta * s)) row by row, s = softmax(x).  All (N, D)."""
    softmax_forward(x, out)
    softmax_jacobian(out, delta, out)
