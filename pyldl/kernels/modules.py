"""Kernels of Linear, Conv1D and MaxPool1D (Flatten is a reshape: no kernel).

Sequences are C-contiguous (batch, length, channels) arrays, so the window of output position
``d`` is the contiguous run ``X[b].ravel()[d * stride * channels :][: k_size * channels]``.
"""

import numpy as np

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
def linear_forward(X, W, b, out, threads):
    """out = X @ W + b.  X (N, I), W (I, O), b (1, O) or (1, 0): none, out (N, O); ``threads``:
    see ``gemm`` (every kernel's: 0 from the Module wrappers, the fused epoch's count from it)."""
    gemm(False, False, out.dtype.type(1), X, W, out.dtype.type(0), out, threads)
    if b.size:
        add_bias(out, b)


@jit
def linear_backward_update_gradient(X, delta, gradient, gradient_bias, threads):
    """gradient += X.T @ delta; gradient_bias += delta summed over rows (unless empty)."""
    one = gradient.dtype.type(1)
    gemm(True, False, one, X, delta, one, gradient, threads)
    if gradient_bias.size:
        for i in range(delta.shape[0]):
            for j in range(delta.shape[1]):
                gradient_bias[0, j] += delta[i, j]


@jit
def linear_backward_delta(delta, W, out, threads):
    """out = delta @ W.T.  delta (N, O), W (I, O), out (N, I)."""
    if W.shape[1] == 1:
        # an outer product (a binary classifier's last layer): OpenBLAS is 2-8x slower on it
        # (4000 x 1 x 8: 29 against 15 us; 256 x 1 x 2048: 1.8 against 0.2 ms)
        for i in range(out.shape[0]):
            value = delta[i, 0]
            for j in range(out.shape[1]):
                out[i, j] = value * W[j, 0]
        return
    gemm(False, True, out.dtype.type(1), delta, W, out.dtype.type(0), out, threads)


@jit
def linear_update_parameters(W, b, gradient, gradient_bias, gradient_step):
    """W -= gradient_step * gradient; b likewise (unless empty).  gradient_step a scalar of W's dtype."""
    for i in range(W.shape[0]):
        for j in range(W.shape[1]):
            W[i, j] -= gradient_step * gradient[i, j]
    if b.size:
        for j in range(b.shape[1]):
            b[0, j] -= gradient_step * gradient_bias[0, j]


@jit
def sgd_update(X, delta, rate, ones, W, b, threads):
    """W -= rate X.T @ delta; b -= rate * delta summed over rows (unless empty): a gradient step
    without a gradient buffer (the fused epoch's; a Conv1D's on its windows, ``X`` from im2col).

    X (N, I), delta (N, O), rate a scalar of W's dtype, ones (>= N,) holding ones, W (I, O),
    b (1, O).
    """
    one, rows = W.dtype.type(1), delta.shape[0]
    gemm(True, False, -rate, X, delta, one, W, threads)
    if b.size:
        if rows == 1:  # a loop beats a gemm call here: 0.01 against 0.1-0.3 us
            for j in range(b.shape[1]):
                b[0, j] -= rate * delta[0, j]
        else:
            gemm(True, False, -rate, ones[:rows].reshape((rows, 1)), delta, one, b, threads)


# Conv1D is im2col into a caller-owned buffer + gemm: faster than loops vectorised over chan_out
# by 1.7-4.8x (forward), 1.6-3.9x (gradient), 1.9-12x (delta) on W8's 32x64x1, k 3 -> 32 and on
# 32x31x32, k 3 -> 32 and 32x64x8, k 5 -> 16, stride 2, float64 and float32.


@jit
def im2col(X, k_size, stride, cols):
    """cols[b * d_out + d] = X[b, d stride : d stride + k_size].ravel(), every window as a row.

    X (N, L, I), cols (N * d_out, k_size * I).
    """
    rows, length, channels = X.shape
    flat = X.reshape((rows, length * channels))
    d_out, width = (length - k_size) // stride + 1, cols.shape[1]
    for b in range(rows):
        for d in range(d_out):
            at, row = d * stride * channels, cols[b * d_out + d]
            for j in range(width):
                row[j] = flat[b, at + j]


@jit
def conv1d_forward(X, W, b, stride, cols, out, threads):
    """out[b, d, o] = sum_{k, i} X[b, d stride + k, i] W[k, i, o] + b[0, o].

    X (N, L, I), W (K, I, O), b (1, O) or (1, 0), cols (N * d_out, K * I) scratch (left holding
    the windows), out (N, d_out, O).
    """
    k_size, channels, width = W.shape
    im2col(X, k_size, stride, cols)
    product = out.reshape((out.shape[0] * out.shape[1], width))
    W2 = W.reshape((k_size * channels, width))
    gemm(False, False, W.dtype.type(1), cols, W2, W.dtype.type(0), product, threads)
    if b.size:
        add_bias(product, b)


@jit
def conv1d_backward_update_gradient(X, delta, stride, cols, gradient, gradient_bias, threads):
    """gradient[k, i, o] += sum_{b, d} X[b, d stride + k, i] delta[b, d, o] / N;
    gradient_bias[0, o] += sum_{b, d} delta[b, d, o] / N (unless empty).

    X (N, L, I) with N > 0, delta (N, d_out, O), cols (N * d_out, K * I) scratch, gradient
    (K, I, O), gradient_bias (1, O).
    """
    k_size, channels, width = gradient.shape
    im2col(X, k_size, stride, cols)
    rows = delta.reshape((delta.shape[0] * delta.shape[1], width))
    scale = gradient.dtype.type(1.0 / X.shape[0])
    one = gradient.dtype.type(1)
    gemm(True, False, scale, cols, rows, one, gradient.reshape((k_size * channels, width)), threads)
    if gradient_bias.size:
        for r in range(rows.shape[0]):
            for o in range(width):
                gradient_bias[0, o] += scale * rows[r, o]


@jit
def conv1d_backward_delta(delta, W, stride, cols, out, threads):
    """out[b, d stride + k, i] = sum over the windows reaching it of sum_o delta[b, d, o] W[k, i, o],
    zero where none does (the adjoint of conv1d_forward, as col2im of ``delta W^T``).

    delta (N, d_out, O), W (K, I, O), cols (N * d_out, K * I) scratch, out (N, L, I).
    """
    k_size, channels, width = W.shape
    rows, d_out = delta.shape[0], delta.shape[1]
    gemm(
        False,
        True,
        W.dtype.type(1),
        delta.reshape((rows * d_out, width)),
        W.reshape((k_size * channels, width)),
        W.dtype.type(0),
        cols,
        threads,
    )
    flat = out.reshape((rows, out.shape[1] * channels))
    flat[...] = 0
    for b in range(rows):
        for d in range(d_out):
            at, row = d * stride * channels, cols[b * d_out + d]
            for j in range(row.size):
                flat[b, at + j] += row[j]


# MaxPool1D's backward finds each window's maximum again from the input (a pass as cheap as
# forward), so no index buffer travels between the two calls.


@jit
def maxpool1d_forward(X, k_size, stride, out):
    """out[b, d, c] = max_k X[b, d stride + k, c], NaN propagating as in np.max.

    X (N, L, C), out (N, d_out, C).
    """
    for b in range(out.shape[0]):
        for d in range(out.shape[1]):
            start = d * stride
            row, first = out[b, d], X[b, start]
            for c in range(row.size):  # loops, not row[:] = ...: a slice assignment compiles its
                row[c] = first[c]  # shape-mismatch message (string formatting: 1.7 s on a fresh install)
            for k in range(1, k_size):
                window = X[b, start + k]
                for c in range(row.size):
                    best, value = row[c], window[c]
                    row[c] = value if best == best and not value <= best else best


@jit
def maxpool1d_backward_delta(X, delta, k_size, stride, out):
    """out[b, d stride + j, c] += delta[b, d, c], j the first position of window (b, d)'s
    maximum in channel c (its first NaN if any, as np.argmax); zero elsewhere.

    X (N, L, C), delta (N, d_out, C), out (N, L, C).
    """
    channels, d_out = X.shape[2], delta.shape[1]
    tiled = stride == k_size  # windows side by side: each position written once, no zeroing pass
    if tiled:
        out[:, d_out * stride :] = 0
    else:
        out[...] = 0
    best, at = np.empty(channels, X.dtype), np.empty(channels, np.intp)
    for b in range(delta.shape[0]):
        for d in range(d_out):
            start = d * stride
            first = X[b, start]
            for c in range(channels):
                best[c], at[c] = first[c], start
            for k in range(1, k_size):  # channels innermost (W8's pool: 138 -> 78 us)
                window = X[b, start + k]
                for c in range(channels):
                    value, top = window[c], best[c]
                    take = top == top and not value <= top
                    best[c] = value if take else top
                    at[c] = start + k if take else at[c]
            if tiled:  # writes, not zeroing then adding (W8's pool, float64: 72 -> 44 us)
                zero, grad = out.dtype.type(0), delta[b, d]
                for k in range(k_size):
                    row = out[b, start + k]
                    for c in range(channels):
                        row[c] = grad[c] if at[c] == start + k else zero
            else:
                for c in range(channels):
                    out[b, at[c], c] += delta[b, d, c]
