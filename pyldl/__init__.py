"""pyldl: PyLDL's small neural networks, compiled with Numba.

The same classes, import paths and numbers as the PyLDL teaching library; every numeric
step runs in a Numba kernel. ``pyldl.reference`` is the plain-NumPy yardstick.
"""

from .activations import ReLU, Sigmoid, Softmax, Tanh
from .base import Activation, Loss, Module, get_default_dtype, set_default_dtype
from .checkpoints import load, save
from .exceptions import CheckpointError, DimensionMismatchError, DivergenceError, DTypeError
from .layers import AutoEncoder, Sequential
from .losses import BCELoss, CrossEntropyLoss, MSELoss
from .modules import Conv1D, Flatten, Linear, MaxPool1D
from .optimizers import SGD, Optim
from .sweeps import grid, sweep
from .threads import get_num_threads, set_num_threads
from .utils import create_minibatches, encode_one_hot, gen_arti, load_usps

__version__ = "0.1.0"

__all__ = [
    "Activation",
    "AutoEncoder",
    "BCELoss",
    "CrossEntropyLoss",
    "CheckpointError",
    "Conv1D",
    "DimensionMismatchError",
    "DivergenceError",
    "DTypeError",
    "Flatten",
    "Linear",
    "Loss",
    "MSELoss",
    "MaxPool1D",
    "Module",
    "Optim",
    "ReLU",
    "SGD",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "create_minibatches",
    "encode_one_hot",
    "gen_arti",
    "get_default_dtype",
    "get_num_threads",
    "grid",
    "load",
    "load_usps",
    "save",
    "set_default_dtype",
    "set_num_threads",
    "sweep",
]
