"""Training in plain NumPy, module by module: one Optim step per minibatch."""

import numpy as np
from tqdm.auto import tqdm

from ..utils import create_minibatches


class Optim:
    """One gradient-descent step of ``net`` on ``loss``: zero_grad, forward, backward, update."""

    def __init__(self, net, loss, gradient_step=1e-3):
        self._network = net
        self._loss = loss
        self._gradient_step = gradient_step

    def __call__(self, *args, **kwargs):
        return self.step(*args, **kwargs)

    def step(self, batch_x, batch_y):
        """Train on one batch; return the loss before the update."""
        self._network.zero_grad()
        yhat = self._network(batch_x)
        value = self._loss(batch_y, yhat)
        delta = self._loss.backward(batch_y, yhat)
        self._network.backward(batch_x, delta)
        self._network.update_parameters(self._gradient_step)
        return value


def SGD(network, loss, X, y, batch_size=64, gradient_step=1e-3, n_iter=1000, progress=True):
    """Minibatch gradient descent; returns each epoch's mean batch loss (a list of floats).

    One permutation is drawn at the start and the same batches are used every epoch.
    """
    optimizer = Optim(network, loss, gradient_step)
    batches = create_minibatches(X, y, batch_size)
    return [
        float(np.mean([optimizer.step(bx, by) for bx, by in batches]))
        for _ in tqdm(range(n_iter), disable=not progress)
    ]
