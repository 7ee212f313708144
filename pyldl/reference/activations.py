"""Activations in plain NumPy: any array shape, 1-D included; Softmax works on the last axis."""

import numpy as np

from ..base import Activation, as_float_array
from ..exceptions import DimensionMismatchError


def input_and_delta(input, delta):
    """``input`` as a float array and ``delta`` converted to its dtype, with the same shape."""
    input = as_float_array(input, "input")
    delta = as_float_array(delta, "delta", input.dtype)
    if delta.shape != input.shape:
        raise DimensionMismatchError(input.shape, delta.shape, "delta must have the shape of input")
    return input, delta


@np.errstate(over="ignore")  # exp(-x) = inf for x < -709 gives exactly 0: no warning needed
def _sigmoid(x):  # (a decorator: half the cost of a with block, measured)
    return 1 / (1 + np.exp(-x))


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True, initial=-np.inf))  # initial: an empty last axis
    return e / e.sum(axis=-1, keepdims=True)


class Tanh(Activation):
    r""":math:`\tanh(x)`; backward :math:`\delta (1 - \tanh^2 x)`. Shape: any, dtype kept."""

    def forward(self, X):
        return np.tanh(as_float_array(X, "X"))

    def backward_delta(self, input, delta):
        input, delta = input_and_delta(input, delta)
        return delta * (1 - np.tanh(input) ** 2)


class Sigmoid(Activation):
    r""":math:`\sigma(x) = 1 / (1 + e^{-x})`, without overflow; backward
    :math:`\delta \sigma (1 - \sigma)`. Shape: any, dtype kept."""

    def forward(self, X):
        return _sigmoid(as_float_array(X, "X"))

    def backward_delta(self, input, delta):
        input, delta = input_and_delta(input, delta)
        s = _sigmoid(input)
        return delta * s * (1 - s)


class ReLU(Activation):
    r""":math:`\max(0, x)`; backward :math:`\delta [x > 0]`. Shape: any, dtype kept."""

    def forward(self, X):
        return np.maximum(as_float_array(X, "X"), 0)

    def backward_delta(self, input, delta):
        input, delta = input_and_delta(input, delta)
        return delta * (input > 0)


class Softmax(Activation):
    r"""Softmax over the last axis, max-subtracted: :math:`s_i = e^{x_i} / \sum_k e^{x_k}`.

    Backward is the exact product with the Jacobian,
    :math:`s \odot (\delta - \langle \delta, s \rangle)` (PyLDL used only its diagonal).
    Shape: any with at least one axis, dtype kept.
    """

    def forward(self, X):
        return _softmax(as_float_array(X, "X"))

    def backward_delta(self, input, delta):
        input, delta = input_and_delta(input, delta)
        s = _softmax(input)
        return s * (delta - np.sum(delta * s, axis=-1, keepdims=True))
