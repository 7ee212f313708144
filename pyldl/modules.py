"""Linear, Conv1D and MaxPool1D, whose arithmetic runs in Numba kernels; Flatten (a reshape)."""

import numpy as np

from .base import get_default_dtype
from .kernels import modules as kernels
from .reference import modules as reference

# The kernels take an array for every bias (an empty row: none) and an int for the threads (0):
# the fused epoch's argument types, so that a hand-written loop runs the code the fused epoch
# compiled or loaded. (Written out at each call: a helper function costs 20 ns more a call, 1%
# of a one-row Linear.forward, 1.9 us.)
_NO_BIAS = {np.dtype(t): np.empty((1, 0), t) for t in (np.float32, np.float64)}


class Linear(reference.Linear):
    __doc__ = reference.Linear.__doc__
    _default_dtype = staticmethod(get_default_dtype)

    def forward(self, X):
        W, b = self._weights()
        X = self._input(X, W)
        out = np.empty((X.shape[0], W.shape[1]), W.dtype)
        kernels.linear_forward(X, W, _NO_BIAS[W.dtype] if b is None else b, out, 0)
        return out

    def backward_update_gradient(self, input, delta):
        W, b = self._weights()
        input = self._input(input, W, "input")
        delta = self._delta(delta, W, input)
        gradient, gradient_bias = self._gradients(W, b)
        if b is None:
            gradient_bias = _NO_BIAS[W.dtype]
        kernels.linear_backward_update_gradient(input, delta, gradient, gradient_bias, 0)

    def backward_delta(self, input, delta):
        W, _ = self._weights()
        delta = self._delta(delta, W, None)
        out = np.empty((delta.shape[0], W.shape[0]), W.dtype)
        kernels.linear_backward_delta(delta, W, out, 0)
        return out

    def update_parameters(self, gradient_step=1e-3):
        W, b = self._weights()
        gradient, gradient_bias = self._gradients(W, b)
        if b is None:
            b = gradient_bias = _NO_BIAS[W.dtype]
        kernels.linear_update_parameters(W, b, gradient, gradient_bias, W.dtype.type(gradient_step))


def _windows_buffer(X, W, d_out):
    """The im2col scratch of the Conv1D kernels: one row per window."""
    return np.empty((X.shape[0] * d_out, W.shape[0] * W.shape[1]), W.dtype)


class Conv1D(reference.Conv1D):
    __doc__ = reference.Conv1D.__doc__
    _default_dtype = staticmethod(get_default_dtype)

    def forward(self, X):
        W, b = self._weights()
        X = self._input(X, W)
        out = np.empty(self._output_shape(X, W), W.dtype)
        cols = _windows_buffer(X, W, out.shape[1])
        kernels.conv1d_forward(X, W, _NO_BIAS[W.dtype] if b is None else b, self._stride, cols, out, 0)
        return out

    def backward_update_gradient(self, input, delta):
        W, b = self._weights()
        input = self._input(input, W, "input")
        delta = self._delta(delta, input, W)
        self._check_batch(input)
        cols = _windows_buffer(input, W, delta.shape[1])
        gradient, gradient_bias = self._gradients(W, b)
        if b is None:
            gradient_bias = _NO_BIAS[W.dtype]
        kernels.conv1d_backward_update_gradient(input, delta, self._stride, cols, gradient, gradient_bias, 0)

    def backward_delta(self, input, delta):
        W, _ = self._weights()
        input = self._input(input, W, "input")
        delta = self._delta(delta, input, W)
        out = np.empty_like(input)
        kernels.conv1d_backward_delta(
            delta, W, self._stride, _windows_buffer(input, W, delta.shape[1]), out, 0
        )
        return out

    def update_parameters(self, gradient_step=1e-3):
        W, b = self._weights()
        gradient, gradient_bias = self._gradients(W, b)
        if b is None:
            b = gradient_bias = _NO_BIAS[W.dtype]
        flat = (W.shape[0] * W.shape[1], W.shape[2])
        kernels.linear_update_parameters(
            W.reshape(flat), b, gradient.reshape(flat), gradient_bias, W.dtype.type(gradient_step)
        )


class MaxPool1D(reference.MaxPool1D):
    __doc__ = reference.MaxPool1D.__doc__

    def forward(self, X):
        X = self._input(X)
        length = reference.output_length(X.shape[1], self._k_size, self._stride)
        out = np.empty((X.shape[0], length, X.shape[2]), X.dtype)
        kernels.maxpool1d_forward(X, self._k_size, self._stride, out)
        return out

    def backward_delta(self, input, delta):
        input, delta = self._input_and_delta(input, delta)
        out = np.empty_like(input)
        kernels.maxpool1d_backward_delta(input, delta, self._k_size, self._stride, out)
        return out


Flatten = reference.Flatten
