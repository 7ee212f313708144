"""Linear layer in plain NumPy."""

import numpy as np

from ..base import Module, as_float_array, check_2d, check_dtype, check_same_rows
from ..exceptions import DimensionMismatchError


class Linear(Module):
    r"""Fully connected layer: :math:`Y = X W + b`.

    Args:
        in_features: size of each input row.
        out_features: size of each output row.
        bias: learn an additive bias.
        dtype: float64 (default) or float32; the weights are drawn in float64 and cast, so
            a seed gives the same network in both.

    Shape:
        X: (N, in_features) -> Y: (N, out_features), in the layer's dtype (inputs of any
        real dtype are converted).

    Attributes:
        _parameters: (in_features, out_features), drawn from U(-1/sqrt(in), 1/sqrt(in)).
        _bias: (1, out_features), drawn the same way after the weights, or None.
        _gradient, _gradient_bias: accumulated gradients, same shapes, zero at first.
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float64):
        super().__init__()
        self._dtype = check_dtype(dtype)
        bound = 1.0 / np.sqrt(in_features)
        weights = np.random.uniform(-bound, bound, size=(in_features, out_features))
        self._parameters = weights.astype(self._dtype)
        if bias:
            self._bias = np.random.uniform(-bound, bound, size=(1, out_features)).astype(self._dtype)
        self.zero_grad()

    @property
    def dtype(self):
        return self._dtype

    def __repr__(self):
        n_in, n_out = np.shape(self._parameters)
        bias = "" if self._bias is not None else ", bias=False"
        dtype = "" if self._dtype == np.float64 else f", dtype={self._dtype.name}"
        return f"Linear({n_in} -> {n_out}{bias}{dtype})"

    # the arrays _weights last validated, with their shapes: (W, b, W.shape, b.shape or None)
    _checked = (None, None, None, None)

    def _weights(self):
        """The current weights and bias as C-contiguous, writeable arrays of the layer's dtype.

        Users may assign ``_parameters`` / ``_bias`` (any real dtype, a 1-D bias): such an
        array is converted once and stored back on the attribute. The arrays of the last
        call are checked again only for what can change in place: shape, dtype and flags.
        """
        W, b = self._parameters, self._bias
        checked_W, checked_b, W_shape, b_shape = self._checked
        if (
            W is checked_W
            and b is checked_b
            and W.shape == W_shape
            and W.dtype is self._dtype
            and W.flags.writeable
            and W.flags.c_contiguous
            and (
                b is None
                or (
                    b.shape == b_shape
                    and b.dtype is self._dtype
                    and b.flags.writeable
                    and b.flags.c_contiguous
                )
            )
        ):
            return W, b
        if not (type(W) is np.ndarray and W.dtype == self._dtype and W.flags.c_contiguous):
            W = self._parameters = as_float_array(W, "_parameters", self._dtype)
        if W.ndim != 2:
            raise DimensionMismatchError("(in_features, out_features)", W.shape, "_parameters must be 2-D")
        if b is not None and not (
            type(b) is np.ndarray
            and b.dtype == self._dtype
            and b.flags.c_contiguous
            and b.shape == (1, W.shape[1])
        ):
            b = as_float_array(b, "_bias", self._dtype)
            if b.size != W.shape[1]:
                raise DimensionMismatchError((1, W.shape[1]), b.shape, "_bias does not fit _parameters")
            b = self._bias = b.reshape(1, W.shape[1])
        if not W.flags.writeable or (b is not None and not b.flags.writeable):
            raise ValueError(f"{self!r} has read-only parameters: they cannot be trained")
        self._checked = (W, b, W.shape, None if b is None else b.shape)
        return W, b

    def _gradients(self, W, b):
        """The gradient buffers, re-created (zero) if the parameters were reassigned."""
        if not (
            type(self._gradient) is np.ndarray
            and self._gradient.shape == W.shape
            and self._gradient.dtype == W.dtype
        ):
            self._gradient = np.zeros_like(W)
        if b is not None and not (
            type(self._gradient_bias) is np.ndarray
            and self._gradient_bias.shape == b.shape
            and self._gradient_bias.dtype == b.dtype
        ):
            self._gradient_bias = np.zeros_like(b)
        return self._gradient, self._gradient_bias if b is not None else None

    def _input(self, X, W, name="X"):
        X = as_float_array(X, name, W.dtype)
        if X.ndim == 2 and X.shape[1] == W.shape[0]:
            return X
        check_2d(X, name)
        if X.shape[1] != W.shape[0]:
            raise DimensionMismatchError(
                f"(_, {W.shape[0]})",
                X.shape,
                f"{name} has {X.shape[1]} features, the layer takes {W.shape[0]}",
            )
        return X

    def _delta(self, delta, W, rows):
        delta = as_float_array(delta, "delta", W.dtype)
        if delta.ndim == 2 and delta.shape[1] == W.shape[1] and (rows is None or len(rows) == len(delta)):
            return delta
        check_2d(delta, "delta")
        if delta.shape[1] != W.shape[1]:
            raise DimensionMismatchError(
                f"(_, {W.shape[1]})",
                delta.shape,
                f"delta has {delta.shape[1]} columns, the layer outputs {W.shape[1]}",
            )
        if rows is not None:
            check_same_rows(rows, delta, "input", "delta")
        return delta

    def forward(self, X):
        W, b = self._weights()
        X = self._input(X, W)
        out = X @ W
        if b is not None:
            out += b
        return out

    def backward_update_gradient(self, input, delta):
        W, b = self._weights()
        input = self._input(input, W, "input")
        delta = self._delta(delta, W, input)
        gradient, gradient_bias = self._gradients(W, b)
        gradient += input.T @ delta
        if b is not None:
            gradient_bias += delta.sum(axis=0)

    def backward_delta(self, input, delta):
        W, _ = self._weights()
        return self._delta(delta, W, None) @ W.T

    def update_parameters(self, gradient_step=1e-3):
        W, b = self._weights()
        gradient, gradient_bias = self._gradients(W, b)
        W -= gradient_step * gradient
        if b is not None:
            b -= gradient_step * gradient_bias
