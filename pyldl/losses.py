"""MSE, BCE and cross-entropy losses whose arithmetic runs in Numba kernels."""

import numpy as np

from .kernels import losses as kernels
from .reference import losses as reference
from .reference.losses import bce_epsilon, shaped_like, targets_and_logits, targets_and_predictions


class MSELoss(reference.MSELoss):
    __doc__ = reference.MSELoss.__doc__

    def forward(self, y, yhat):
        y, yhat = targets_and_predictions(y, yhat)
        return yhat.dtype.type(kernels.mse_forward(y, yhat))

    def backward(self, y, yhat):
        y2, yhat2 = targets_and_predictions(y, yhat)
        out = np.empty_like(yhat2)
        kernels.mse_backward(y2, yhat2, out)
        return shaped_like(out, yhat, yhat2)


class BCELoss(reference.BCELoss):
    __doc__ = reference.BCELoss.__doc__

    def forward(self, y, yhat):
        y, yhat = targets_and_predictions(y, yhat)
        return yhat.dtype.type(kernels.bce_forward(y, yhat, bce_epsilon(yhat.dtype)))

    def backward(self, y, yhat):
        y2, yhat2 = targets_and_predictions(y, yhat)
        out = np.empty_like(yhat2)
        kernels.bce_backward(y2, yhat2, bce_epsilon(yhat2.dtype), y2.shape[0], out)
        return shaped_like(out, yhat, yhat2)


class CrossEntropyLoss(reference.CrossEntropyLoss):
    __doc__ = reference.CrossEntropyLoss.__doc__

    def forward(self, y, yhat):
        y, yhat = targets_and_logits(y, yhat)
        return yhat.dtype.type(kernels.cross_entropy_forward(y, yhat))

    def backward(self, y, yhat):
        y, yhat = targets_and_logits(y, yhat)
        out = np.empty_like(yhat)
        kernels.cross_entropy_backward(y, yhat, out)
        return out
