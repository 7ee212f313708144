"""Scalar exp, sigmoid and tanh for use inside kernels (float32 stays float32)."""

import numpy as np

from ._numba import jit


@jit
def exp(x):
    return np.exp(x)


@jit
def sigmoid(x):
    one = x.dtype.type(1) if hasattr(x, "dtype") else 1.0
    return one / (one + np.exp(-x))


@jit
def tanh(x):
    return np.tanh(x)
