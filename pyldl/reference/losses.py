"""MSE and BCE losses in plain NumPy, with PyLDL's scalings."""

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


def bce_epsilon(dtype):
    """The clipping margin of BCELoss: 1e-12 in float64, 1e-7 in float32 (where 1 - 1e-12 == 1)."""
    return 1e-12 if dtype == np.float64 else 1e-7


class MSELoss(Loss):
    r"""Squared error summed over columns, averaged over rows:
    :math:`\frac1N \sum_i \lVert y_i - \hat y_i \rVert^2`.

    Backward is :math:`-2 (y - \hat y)` with no division by N (PyLDL's scaling: the
    gradient of N times the loss). Shape: y, yhat (N, D) or (N,) -> float.
    """

    def forward(self, y, yhat):
        y, yhat = targets_and_predictions(y, yhat)
        return float(np.mean(np.sum((y - yhat) ** 2, axis=1)))

    def backward(self, y, yhat):
        shape = np.shape(yhat)
        y, yhat = targets_and_predictions(y, yhat)
        return (-2 * (y - yhat)).reshape(shape)


class BCELoss(Loss):
    r"""Binary cross-entropy averaged over every element, with
    :math:`p = \mathrm{clip}(\hat y, \epsilon, 1 - \epsilon)`:
    :math:`-\mathrm{mean}(y \log p + (1 - y) \log(1 - p))`.

    Backward is :math:`(p - y) / (p (1 - p) N)`, N the number of rows (PyLDL's scaling: the
    gradient of D times the loss, D the number of columns). :math:`\epsilon` is 1e-12 in
    float64 and 1e-7 in float32. Shape: y, yhat (N, D) or (N,) -> float.
    """

    def forward(self, y, yhat):
        y, yhat = targets_and_predictions(y, yhat)
        eps = bce_epsilon(yhat.dtype)
        p = np.clip(yhat, eps, 1 - eps)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    def backward(self, y, yhat):
        shape = np.shape(yhat)
        y, yhat = targets_and_predictions(y, yhat)
        eps = bce_epsilon(yhat.dtype)
        p = np.clip(yhat, eps, 1 - eps)
        return ((p - y) / (p * (1 - p) * len(y))).reshape(shape)
