"""MSE, BCE and cross-entropy losses in plain NumPy, with PyLDL's scalings.

Every ``forward`` returns a NumPy scalar of the predictions' dtype (``np.float64`` or
``np.float32``), as PyLDL's ``np.mean`` did, so that hand-written loops can call ``.mean()``.
"""

import numpy as np

from ..base import Loss, as_float_array
from ..exceptions import DimensionMismatchError


def targets_and_predictions(y, yhat):
    """``y`` and ``yhat`` as 2-D float arrays of ``yhat``'s dtype (a 1-D array is a column)."""
    yhat = as_float_array(yhat, "yhat")
    y = as_float_array(y, "y", yhat.dtype)
    if y.shape != yhat.shape:
        raise DimensionMismatchError(y.shape, yhat.shape, "y and yhat must have the same shape")
    if y.ndim not in (1, 2):
        raise DimensionMismatchError("(n_samples, n_outputs)", y.shape, "y must be 1-D or 2-D")
    if y.size == 0:
        raise ValueError(f"y and yhat are empty (shape {y.shape})")
    if y.ndim == 1:
        return y.reshape(-1, 1), yhat.reshape(-1, 1)
    return y, yhat


def targets_and_logits(y, yhat):
    """``y`` and ``yhat`` as 2-D (N, C) float arrays of ``yhat``'s dtype, for CrossEntropyLoss.

    Class labels (``y`` of shape (N,) or (N, 1) beside C > 1 logits) get an error suggesting
    ``encode_one_hot``; 1-D logits are refused (PyLDL failed on them with an AxisError).
    """
    yhat = as_float_array(yhat, "yhat")
    y = as_float_array(y, "y", yhat.dtype)
    if yhat.ndim != 2:
        raise DimensionMismatchError(
            "(n_samples, n_classes)", yhat.shape, f"CrossEntropyLoss needs 2-D logits, got {yhat.ndim}-D"
        )
    if y.shape != yhat.shape:
        message = "y and yhat must have the same shape"
        if y.shape in ((len(yhat),), (len(yhat), 1)) and yhat.shape[1] > 1:
            message += (
                ": CrossEntropyLoss takes one-hot targets, encode class labels with pyldl.encode_one_hot"
            )
        raise DimensionMismatchError(y.shape, yhat.shape, message)
    if y.size == 0:
        raise ValueError(f"y and yhat are empty (shape {y.shape})")
    return y, yhat


def bce_epsilon(dtype):
    """The clipping margin of BCELoss as a scalar of ``dtype``: 1e-12 in float64, 1e-7 in float32
    (where 1 - 1e-12 == 1); a Python float would widen a float32 kernel."""
    return _EPSILONS[np.dtype(dtype)]


_FLOAT64 = np.dtype(np.float64)
_EPSILONS = {_FLOAT64: np.float64(1e-12), np.dtype(np.float32): np.float32(1e-7)}


def shaped_like(delta, yhat, predictions):
    """``delta`` in the shape of the ``yhat`` given to a loss's backward, ``predictions`` being
    the 2-D array ``targets_and_predictions`` made of it (no reshape when it is ``yhat`` itself)."""
    return delta if predictions is yhat else delta.reshape(np.shape(yhat))


class MSELoss(Loss):
    r"""Squared error summed over columns, averaged over rows:
    :math:`\frac1N \sum_i \lVert y_i - \hat y_i \rVert^2`.

    Backward is :math:`-2 (y - \hat y)` with no division by N (PyLDL's scaling: the
    gradient of N times the loss). Shape: y, yhat (N, D) or (N,) -> a scalar of yhat's dtype.
    """

    def forward(self, y, yhat):
        y, yhat = targets_and_predictions(y, yhat)
        return yhat.dtype.type(np.mean(np.sum((y - yhat) ** 2, axis=1)))

    def backward(self, y, yhat):
        y2, yhat2 = targets_and_predictions(y, yhat)
        return shaped_like(-2 * (y2 - yhat2), yhat, yhat2)


class BCELoss(Loss):
    r"""Binary cross-entropy averaged over every element, with
    :math:`p = \mathrm{clip}(\hat y, \epsilon, 1 - \epsilon)`:
    :math:`-\mathrm{mean}(y \log p + (1 - y) \log(1 - p))`.

    Backward is :math:`(p - y) / (p (1 - p) N)`, N the number of rows (PyLDL's scaling: the
    gradient of D times the loss, D the number of columns). :math:`\epsilon` is 1e-12 in
    float64 and 1e-7 in float32. Shape: y, yhat (N, D) or (N,) -> a scalar of yhat's dtype.
    """

    def forward(self, y, yhat):
        y, yhat = targets_and_predictions(y, yhat)
        eps = bce_epsilon(yhat.dtype)
        p = np.clip(yhat, eps, 1 - eps)
        return yhat.dtype.type(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    def backward(self, y, yhat):
        y2, yhat2 = targets_and_predictions(y, yhat)
        eps = bce_epsilon(yhat2.dtype)
        p = np.clip(yhat2, eps, 1 - eps)
        return shaped_like((p - y2) / (p * (1 - p) * len(y2)), yhat, yhat2)


class CrossEntropyLoss(Loss):
    r"""Cross-entropy of the softmax of logits, averaged over rows:
    :math:`\frac1N \sum_i \big(\log \sum_j e^{\hat y_{ij}} - \sum_j y_{ij} \hat y_{ij}\big)`.

    ``yhat`` holds logits (no Softmax before this loss), ``y`` one-hot or probability rows.
    The log-sum-exp subtracts each row's maximum and adds it back (PyLDL forgot to add it
    back: its value was low by the mean row maximum; its gradient was right). Backward is
    :math:`\mathrm{softmax}(\hat y) - y` with no division by N (PyLDL's scaling: the
    gradient of N times the loss). Shape: y, yhat (N, C) -> a scalar of yhat's dtype.
    """

    def forward(self, y, yhat):
        y, yhat = targets_and_logits(y, yhat)
        top = np.max(yhat, axis=1)
        # log(sum(exp(yhat - top))) + (top - y . yhat): the difference first, so that large
        # logits do not round the (smaller) loss away
        terms = np.log(np.sum(np.exp(yhat - top[:, None]), axis=1)) + (top - np.sum(y * yhat, axis=1))
        return yhat.dtype.type(np.mean(terms))

    def backward(self, y, yhat):
        y, yhat = targets_and_logits(y, yhat)
        e = np.exp(yhat - np.max(yhat, axis=1, keepdims=True))
        return e / np.sum(e, axis=1, keepdims=True) - y
