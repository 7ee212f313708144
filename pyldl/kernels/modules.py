"""Kernels of the Linear layer."""

from ._blas import gemm
from ._numba import jit


@jit
def add_bias(out, b):
    """out += b.  out (N, D), b (1, D)."""
    rows, width = out.shape
    if width < 4:  # short rows cost a loop each: go column by column (32000 x 1: 150 -> 8 us)
        for j in range(width):
            value = b[0, j]
            for i in range(rows):
                out[i, j] += value
        return
    for i in range(rows):
        for j in range(width):
            out[i, j] += b[0, j]


@jit
def linear_forward(X, W, b, out):
    """out = X @ W + b.  X (N, I), W (I, O), b (1, O) or None, out (N, O)."""
    gemm(False, False, 1.0, X, W, 0.0, out)
    if b is not None:
        add_bias(out, b)


@jit
def linear_backward_update_gradient(X, delta, gradient, gradient_bias):
    """gradient += X.T @ delta; gradient_bias += delta summed over rows (if not None)."""
    gemm(True, False, 1.0, X, delta, 1.0, gradient)
    if gradient_bias is not None:
        for i in range(delta.shape[0]):
            for j in range(delta.shape[1]):
                gradient_bias[0, j] += delta[i, j]


@jit
def linear_backward_delta(delta, W, out):
    """out = delta @ W.T.  delta (N, O), W (I, O), out (N, I)."""
    gemm(False, True, 1.0, delta, W, 0.0, out)


@jit
def linear_update_parameters(W, b, gradient, gradient_bias, gradient_step):
    """W -= gradient_step * gradient; b likewise (if not None)."""
    step = W.dtype.type(gradient_step)
    for i in range(W.shape[0]):
        for j in range(W.shape[1]):
            W[i, j] -= step * gradient[i, j]
    if b is not None:
        for j in range(b.shape[1]):
            b[0, j] -= step * gradient_bias[0, j]
