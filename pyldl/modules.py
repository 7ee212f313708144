"""Linear layer whose arithmetic runs in Numba kernels."""

import numpy as np

from .kernels import modules as kernels
from .reference import modules as reference


class Linear(reference.Linear):
    __doc__ = reference.Linear.__doc__

    def forward(self, X):
        W, b = self._weights()
        X = self._input(X, W)
        out = np.empty((X.shape[0], W.shape[1]), W.dtype)
        kernels.linear_forward(X, W, b, out)
        return out

    def backward_update_gradient(self, input, delta):
        W, b = self._weights()
        input = self._input(input, W, "input")
        delta = self._delta(delta, W, input)
        kernels.linear_backward_update_gradient(input, delta, *self._gradients(W, b))

    def backward_delta(self, input, delta):
        W, _ = self._weights()
        delta = self._delta(delta, W, None)
        out = np.empty((delta.shape[0], W.shape[0]), W.dtype)
        kernels.linear_backward_delta(delta, W, out)
        return out

    def update_parameters(self, gradient_step=1e-3):
        W, b = self._weights()
        kernels.linear_update_parameters(W, b, *self._gradients(W, b), gradient_step)
