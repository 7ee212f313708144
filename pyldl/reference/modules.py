"""Linear, Conv1D, MaxPool1D and Flatten in plain NumPy.

Conv1D and MaxPool1D compute as PyLDL does, on window views of the input
(``sliding_window_view``, ``(batch, d_out, channels, k_size)``) reduced by ``einsum`` / ``max``.
"""

import math
import numbers

import numpy as np

from ..base import Module, as_float_array, check_2d, check_dtype, check_same_rows
from ..exceptions import DimensionMismatchError

SEQUENCE = "(batch, length, channels)"


def positive_int(value, name):
    """``value`` as an int; ValueError unless it is a positive integer (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_sequences(X, name, channels, k_size):
    """DimensionMismatchError unless ``X`` is (batch, length >= k_size, channels) (None: any)."""
    if X.ndim != 3:
        raise DimensionMismatchError(SEQUENCE, X.shape, f"{name} must be 3-D {SEQUENCE}, got {X.ndim}-D")
    if channels is not None and X.shape[2] != channels:
        raise DimensionMismatchError(
            f"(_, _, {channels})", X.shape, f"{name} has {X.shape[2]} channels, the layer takes {channels}"
        )
    if X.shape[1] < k_size:
        raise DimensionMismatchError(
            f"(_, >= {k_size}, _)",
            X.shape,
            f"{name} has length {X.shape[1]}, shorter than the kernel ({k_size})",
        )


def check_delta(delta, expected):
    """``delta`` must have the shape ``expected`` (the module's output for the input)."""
    if delta.shape != expected:
        raise DimensionMismatchError(expected, delta.shape, "delta must have the shape of the output")


def windows(X, k_size, stride):
    """The view ``(batch, d_out, channels, k_size)`` of every window of ``X`` (no copy)."""
    return np.lib.stride_tricks.sliding_window_view(X, k_size, axis=1)[:, ::stride]


def output_length(length, k_size, stride):
    return (length - k_size) // stride + 1


class Weighted(Module):
    """A module with a weight array (``_parameters``) and an optional bias row (``_bias``, one
    value per last axis of the weights): the code Linear and Conv1D share.

    The weights of ``shape`` and then the bias are drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    in float64 and cast, so a seed gives the same network in both dtypes.
    """

    _AXES = ()  # names of the weight axes, for error messages

    def __init__(self, shape, fan_in, bias, dtype):
        super().__init__()
        self._dtype = check_dtype(self._default_dtype() if dtype is None else dtype)
        bound = 1.0 / np.sqrt(fan_in)
        self._parameters = np.random.uniform(-bound, bound, size=shape).astype(self._dtype)
        if bias:
            self._bias = np.random.uniform(-bound, bound, size=(1, shape[-1])).astype(self._dtype)
        self.zero_grad()

    @staticmethod
    def _default_dtype():
        """The dtype without ``dtype=``: float64 here, the yardstick; pyldl's layers follow
        :func:`pyldl.set_default_dtype`."""
        return np.dtype(np.float64)

    @property
    def dtype(self):
        return self._dtype

    def _suffix(self):
        """``, bias=False`` and ``, dtype=float32`` for __repr__, where they apply."""
        bias = "" if self._bias is not None else ", bias=False"
        dtype = "" if self._dtype == np.float64 else f", dtype={self._dtype.name}"
        return bias + dtype

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
        if W.ndim != len(self._AXES):
            axes = f"({', '.join(self._AXES)})"
            raise DimensionMismatchError(axes, W.shape, f"_parameters must be {len(self._AXES)}-D")
        width = W.shape[-1]
        if b is not None and not (
            type(b) is np.ndarray
            and b.dtype == self._dtype
            and b.flags.c_contiguous
            and b.shape == (1, width)
        ):
            b = as_float_array(b, "_bias", self._dtype)
            if b.size != width:
                raise DimensionMismatchError((1, width), b.shape, "_bias does not fit _parameters")
            b = self._bias = b.reshape(1, width)
        if not W.flags.writeable or (b is not None and not b.flags.writeable):
            raise ValueError(f"{self!r} has read-only parameters: they cannot be trained")
        self._checked = (W, b, W.shape, None if b is None else b.shape)
        return W, b

    def _gradients(self, W, b):
        """The gradient buffers, re-created (zero) if the parameters were reassigned."""
        gradient, gradient_bias = self._gradient, self._gradient_bias
        if not (
            type(gradient) is np.ndarray
            and gradient.shape == W.shape
            and (gradient.dtype is W.dtype or gradient.dtype == W.dtype)  # is: the common case, faster
        ):
            gradient = self._gradient = np.zeros_like(W)
        if b is None:
            return gradient, None
        if not (
            type(gradient_bias) is np.ndarray
            and gradient_bias.shape == b.shape
            and (gradient_bias.dtype is b.dtype or gradient_bias.dtype == b.dtype)
        ):
            gradient_bias = self._gradient_bias = np.zeros_like(b)
        return gradient, gradient_bias

    def update_parameters(self, gradient_step=1e-3):
        W, b = self._weights()
        gradient, gradient_bias = self._gradients(W, b)
        W -= gradient_step * gradient
        if b is not None:
            b -= gradient_step * gradient_bias


class Linear(Weighted):
    r"""Fully connected layer: :math:`Y = X W + b`.

    Args:
        in_features: size of each input row.
        out_features: size of each output row.
        bias: learn an additive bias.
        dtype: float64 or float32; None (default): float64, or in pyldl (not its reference)
            ``pyldl.get_default_dtype()``. The weights are drawn in float64 and cast, so a seed
            gives the same network in both.

    Shape:
        X: (N, in_features) -> Y: (N, out_features), in the layer's dtype (inputs of any
        real dtype are converted).

    Attributes:
        _parameters: (in_features, out_features), drawn from U(-1/sqrt(in), 1/sqrt(in)).
        _bias: (1, out_features), drawn the same way after the weights, or None.
        _gradient, _gradient_bias: accumulated gradients, same shapes, zero at first.
    """

    _AXES = ("in_features", "out_features")

    def __init__(self, in_features, out_features, bias=True, dtype=None):
        super().__init__((in_features, out_features), in_features, bias, dtype)

    def __repr__(self):
        n_in, n_out = np.shape(self._parameters)
        return f"Linear({n_in} -> {n_out}{self._suffix()})"

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


class Conv1D(Weighted):
    r"""1-D convolution (cross-correlation, no padding) over sequences:
    :math:`Y_{b,d,o} = \sum_{k,i} X_{b,\,d s + k,\,i} W_{k,i,o} + b_o`, ``s`` the stride.

    The parameter gradients are divided by the batch size N, as PyLDL does (unlike Linear):
    ``_gradient += sum_{b,d} X[b, d s + k, i] delta[b, d, o] / N``.

    Args:
        k_size: kernel length.
        chan_in, chan_out: channels of the input and of the output.
        stride: step between windows.
        bias: learn an additive bias per output channel.
        dtype: float64 or float32; None (default) as Linear; drawn in float64 and cast.

    Shape:
        X: (N, L, chan_in), L >= k_size -> Y: (N, d_out, chan_out), ``d_out = (L - k_size)
        // stride + 1`` (positions past the last whole window are never read).

    Attributes:
        _parameters: (k_size, chan_in, chan_out), drawn from U(-1/sqrt(chan_in), 1/sqrt(chan_in)).
        _bias: (1, chan_out), drawn the same way after the weights, or None.
        _gradient, _gradient_bias: accumulated gradients, same shapes, zero at first.
        _stride: the stride.
    """

    _AXES = ("k_size", "chan_in", "chan_out")

    def __init__(self, k_size, chan_in, chan_out, stride=1, bias=True, dtype=None):
        k_size, chan_in = positive_int(k_size, "k_size"), positive_int(chan_in, "chan_in")
        chan_out = positive_int(chan_out, "chan_out")
        self._stride = positive_int(stride, "stride")
        super().__init__((k_size, chan_in, chan_out), chan_in, bias, dtype)

    def __repr__(self):
        k_size, chan_in, chan_out = np.shape(self._parameters)
        return f"Conv1D({k_size}, {chan_in} -> {chan_out}, stride={self._stride}{self._suffix()})"

    def _input(self, X, W, name="X"):
        X = as_float_array(X, name, W.dtype)
        check_sequences(X, name, W.shape[1], W.shape[0])
        return X

    def _output_shape(self, input, W):
        return (input.shape[0], output_length(input.shape[1], W.shape[0], self._stride), W.shape[2])

    def _delta(self, delta, input, W):
        delta = as_float_array(delta, "delta", W.dtype)
        check_delta(delta, self._output_shape(input, W))
        return delta

    def forward(self, X):
        W, b = self._weights()
        X = self._input(X, W)
        out = np.einsum("bdik,kio->bdo", windows(X, W.shape[0], self._stride), W)
        if b is not None:
            out += b
        return out

    @staticmethod
    def _check_batch(input):
        if len(input) == 0:
            raise ValueError("Conv1D divides its gradient by the batch size: input is empty")

    def backward_update_gradient(self, input, delta):
        W, b = self._weights()
        input = self._input(input, W, "input")
        delta = self._delta(delta, input, W)
        self._check_batch(input)
        gradient, gradient_bias = self._gradients(W, b)
        n = len(input)
        gradient += np.einsum("bdik,bdo->kio", windows(input, W.shape[0], self._stride), delta) / n
        if b is not None:
            gradient_bias += delta.sum(axis=(0, 1)) / n

    def backward_delta(self, input, delta):
        W, _ = self._weights()
        input = self._input(input, W, "input")
        delta = self._delta(delta, input, W)
        per_offset = np.einsum("bdo,kio->kbdi", delta, W)
        out = np.zeros_like(input)
        stop = delta.shape[1] * self._stride
        for k in range(W.shape[0]):
            out[:, k : k + stop : self._stride] += per_offset[k]
        return out


class MaxPool1D(Module):
    r"""Max over windows of sequences, channel by channel:
    :math:`Y_{b,d,c} = \max_{k} X_{b,\,d s + k,\,c}`, ``s`` the stride.

    backward_delta routes each ``delta[b, d, c]`` to the position of its window's maximum
    (the first one on ties), summed where windows overlap: the exact gradient (PyLDL's
    indexes delta by the position inside the window and loses overlapping sums). A delta of
    the input's shape (N, L, C), which PyLDL's convolutional notebook passes, is accepted:
    its first d_out positions are used as the output's delta.

    Shape:
        X: (N, L, C), L >= k_size, any real dtype (kept if float, else float64) ->
        Y: (N, (L - k_size) // stride + 1, C).

    Attributes:
        _k_size, _stride: window length and step. No parameters.
    """

    def __init__(self, k_size, stride):
        super().__init__()
        self._k_size = positive_int(k_size, "k_size")
        self._stride = positive_int(stride, "stride")

    def __repr__(self):
        return f"MaxPool1D({self._k_size}, stride={self._stride})"

    def _input(self, X, name="X"):
        X = as_float_array(X, name)
        check_sequences(X, name, None, self._k_size)
        return X

    def _input_and_delta(self, input, delta):
        input = self._input(input, "input")
        delta = as_float_array(delta, "delta", input.dtype)
        length = output_length(input.shape[1], self._k_size, self._stride)
        if delta.shape == input.shape:  # PyLDL's notebook passes one: its first d_out positions
            delta = np.ascontiguousarray(delta[:, :length])
        check_delta(delta, (input.shape[0], length, input.shape[2]))
        return input, delta

    def forward(self, X):
        return windows(self._input(X), self._k_size, self._stride).max(axis=-1)

    def backward_update_gradient(self, input, delta):
        pass

    def backward_delta(self, input, delta):
        input, delta = self._input_and_delta(input, delta)
        n, length, channels = delta.shape
        b, d, c = np.meshgrid(range(n), range(length), range(channels), indexing="ij")
        position = d * self._stride + windows(input, self._k_size, self._stride).argmax(axis=-1)
        out = np.zeros_like(input)
        np.add.at(out, (b, position, c), delta)
        return out


class Flatten(Module):
    """(N, L, C) -> (N, L * C) in C order (any (N, ...) input: the rest flattened); backward
    reshapes delta (any shape of N rows and as many elements) back to the input's shape. Floats
    keep their dtype, others become float64. No parameters."""

    def __repr__(self):
        return "Flatten()"

    def forward(self, X):
        X = as_float_array(X, "X")
        if X.ndim < 2:
            raise DimensionMismatchError("(N, ...)", X.shape, f"X must be at least 2-D, got {X.ndim}-D")
        return X.reshape(X.shape[0], math.prod(X.shape[1:]))

    def backward_update_gradient(self, input, delta):
        pass

    def backward_delta(self, input, delta):
        input = as_float_array(input, "input")
        delta = as_float_array(delta, "delta", input.dtype)
        if delta.size != input.size or delta.shape[:1] != input.shape[:1]:  # any shape, as a reshape
            check_delta(delta, (input.shape[0], math.prod(input.shape[1:])))
        return delta.reshape(input.shape)
