"""Plain-NumPy implementation of PyLDL's semantics, the yardstick for pyldl's kernels.

Same classes, names and behaviour as the compiled modules (``pyldl.reference.modules.Linear``
and so on), written with NumPy only: no kernel is ever imported here. Tests compare the
kernels against it and benchmarks time it beside them. The compiled modules subclass these
classes and replace only the arithmetic, so checks, initialisation and containers are shared.
"""

from .activations import ReLU, Sigmoid, Softmax, Tanh
from .layers import AutoEncoder, Sequential
from .losses import BCELoss, CrossEntropyLoss, MSELoss
from .modules import Conv1D, Flatten, Linear, MaxPool1D
from .optimizers import SGD, Optim

__all__ = [
    "AutoEncoder",
    "BCELoss",
    "CrossEntropyLoss",
    "Conv1D",
    "Flatten",
    "Linear",
    "MSELoss",
    "MaxPool1D",
    "Optim",
    "ReLU",
    "SGD",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
]
