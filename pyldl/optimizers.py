"""Training: Optim (one step) and SGD (minibatch gradient descent over epochs).

A network made only of built-in modules (Linear, Conv1D, MaxPool1D, Flatten, Tanh, Sigmoid,
Softmax, ReLU inside Sequential / AutoEncoder containers, nested in any way) with MSELoss,
BCELoss or CrossEntropyLoss is flattened once into a plan for
:func:`pyldl.kernels.optimizers.sgd_epoch` (``sgd_epoch_sequences`` where Conv1D or MaxPool1D
steps are in it), which trains a whole epoch (or one Optim step) in one compiled call;
sequences (3-D inputs) travel as rows of length * channels values.
Anything else, a subclass of a built-in included, trains module by module through the
modules' own methods, with the same results.
"""

import math
import numbers

import numpy as np
from tqdm.auto import tqdm

from . import checkpoints
from . import threads as _threads
from .activations import ReLU, Sigmoid, Softmax, Tanh
from .base import Activation, Module, as_float_array, check_2d, check_same_rows, leaves
from .exceptions import DimensionMismatchError, DivergenceError
from .kernels import optimizers as kernels
from .kernels._blas import one_thread, panel_count
from .kernels._numba import uncached
from .layers import AutoEncoder, Sequential
from .losses import BCELoss, CrossEntropyLoss, MSELoss
from .modules import Conv1D, Flatten, Linear, MaxPool1D
from .reference import losses as reference_losses
from .reference import modules as reference_modules
from .reference import optimizers as reference
from .reference.losses import bce_epsilon
from .reference.modules import SEQUENCE

__all__ = ["SGD", "Optim", "Trainer"]

_CONTAINERS = (Sequential, AutoEncoder)
_LOSSES = {MSELoss: kernels.MSE, BCELoss: kernels.BCE, CrossEntropyLoss: kernels.CROSS_ENTROPY}


def _arrays(network):
    """Every parameter array of the network (``_parameters`` and ``_bias`` of each module)."""
    for _, module in leaves(network):
        for name in ("_parameters", "_bias"):
            value = getattr(module, name, None)
            if isinstance(value, np.ndarray):
                yield value


def _normalize_weights(network):
    """Convert user-assigned weights of every Linear and Conv1D once (``_weights`` stores them
    back), so that the arrays seen before training are the ones training updates."""
    for _, module in leaves(network):
        if isinstance(module, reference_modules.Weighted):
            module._weights()


def _first_layer(network):
    """The network's first leaf module that is not an activation: the one that decides whether
    it takes rows or sequences."""
    return next((m for _, m in leaves(network) if not isinstance(m, Activation)), None)


_SEQUENCE_MODULES = (reference_modules.Conv1D, reference_modules.MaxPool1D, reference_modules.Flatten)


def _dtype(network):
    """The network's dtype: that of its first parameter array, float64 when it has none."""
    first = next(_arrays(network), None)
    return first.dtype if first is not None and first.dtype.kind == "f" else np.dtype(np.float64)


class _DataCheck:
    """The one check of training data, which SGD, Trainer and Optim.step share: set up once per
    network (its first layer is looked up here, not at every step), called on each X, y.

    ``check(X, y)`` returns X and y as training takes them, or raises an error naming the
    problem before anything runs. Both are converted to the network's dtype (ints and bools
    too), a 1-D y to a column; X must be 2-D, or 3-D (batch, length, channels) for a network
    that starts with a Conv1D, MaxPool1D or Flatten, with as many rows as y and at least one;
    for the fused ``plan`` (or None), rows that fit it (sequences are returned as rows of
    length * channels values); no NaN or inf (unless ``check_finite`` is False); BCELoss and
    CrossEntropyLoss targets in their range.
    """

    def __init__(self, network, plan, loss, check_finite=True, names=("X", "y")):
        self._network, self._plan, self._loss = network, plan, loss
        self._check_finite, self._names = check_finite, names
        first = _first_layer(network)
        self._sequences_for = type(first).__name__ if isinstance(first, _SEQUENCE_MODULES) else None

    def __call__(self, X, y):
        plan, names = self._plan, self._names
        dtype = _dtype(self._network) if plan is None else plan.dtype  # weights may be reassigned
        X = as_float_array(X, names[0], dtype)
        y = as_float_array(y, names[1], dtype)
        if y.ndim == 1:
            y = y.reshape(-1, 1)
        if self._sequences_for is None:
            check_2d(X, names[0])
        elif X.ndim != 3:
            message = (
                f"{names[0]} must be 3-D {SEQUENCE} for a network that starts with "
                f"{self._sequences_for}, got {X.ndim}-D"
            )
            raise DimensionMismatchError(SEQUENCE, X.shape, message)
        check_2d(y, names[1])
        check_same_rows(X, y, *names)
        if len(X) == 0:
            raise ValueError(f"{names[0]} is empty: training needs at least one sample")
        if plan is not None:
            X = plan.check_data(X, y, names)
        _check_values(X, y, self._loss, self._check_finite, names)
        return X, y


def _check_settings(batch_size, gradient_step, n_iter):
    """batch_size, gradient_step and n_iter as int, float, int; ValueError naming a bad one."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    _check_n_iter(n_iter)
    if not isinstance(gradient_step, numbers.Real) or not math.isfinite(gradient_step):
        raise ValueError(f"gradient_step must be a finite number, got {gradient_step!r}")
    return int(batch_size), float(gradient_step), int(n_iter)


def _check_n_iter(n_iter):
    if isinstance(n_iter, bool) or not isinstance(n_iter, numbers.Integral) or n_iter < 0:
        raise ValueError(f"n_iter must be a non-negative integer, got {n_iter!r}")


def _first_index(mask):
    return tuple(int(i) for i in np.unravel_index(np.argmax(mask), mask.shape))


def _check_values(X, y, loss, check_finite=True, names=("X", "y")):
    """ValueError naming the argument and the first bad index: NaN or inf in X or y (unless
    ``check_finite`` is False), BCELoss targets outside [0, 1], CrossEntropyLoss targets that
    are not one-hot or probability rows. Once per call, on the data."""
    if check_finite:
        for array, name in zip((X, y), names, strict=True):
            bad = ~np.isfinite(array)
            if bad.any():
                raise ValueError(
                    f"{name} contains NaN or inf (first at index {_first_index(bad)}); "
                    "pass check_finite=False to skip this check"
                )
    if isinstance(loss, reference_losses.BCELoss):
        outside = (y < 0) | (y > 1)
        if outside.any():
            index = _first_index(outside)
            raise ValueError(f"BCELoss targets must lie in [0, 1]: {names[1]}{list(index)} is {y[index]}")
    if isinstance(loss, reference_losses.CrossEntropyLoss) and y.ndim in (1, 2):
        y = y.reshape(len(y), -1)  # Optim.step's batch_y may be 1-D: a column
        tolerance = np.sqrt(np.finfo(y.dtype).eps)  # rows of probabilities rounded in y's dtype
        bad = np.any((y < 0) | (y > 1), axis=1) | (np.abs(np.sum(y, axis=1) - 1) > tolerance)
        if bad.any():
            row = int(np.argmax(bad))
            raise ValueError(
                "CrossEntropyLoss targets must be one-hot or probability rows (in [0, 1], summing "
                f"to 1): {names[1]}[{row}] is {y[row]}{_one_hot_hint(loss, y)}"
            )


def _one_hot_hint(loss, y):
    """For CrossEntropyLoss given one column of class labels: how to encode them."""
    if isinstance(loss, reference_losses.CrossEntropyLoss) and y.shape[1] == 1:
        return " (class labels? CrossEntropyLoss takes one-hot rows: pyldl.encode_one_hot(labels))"
    return ""


# ---------------------------------------------------------------- how each layer kind fuses
#
# One registration per built-in layer kind: ``fuse(layer, shape)`` returns the fields of its
# step in the plan (kernels.STEP; None: no step), its output shape and its parameter arrays,
# for an input of ``shape``: (features,) for rows, (length, channels) for sequences. TypeError
# where the layer cannot be fused on such an input, DimensionMismatchError where it does not fit.


def _rows_only(layer, shape):
    if len(shape) != 1:
        raise TypeError(f"{layer!r} gets sequences: it cannot be fused")


def _parameters(W, b):
    """The fields of weights ``W`` (2-D, C-contiguous) and bias ``b`` (or None), and the arrays."""
    fields = {"weights": W.ctypes.data, "w_rows": W.shape[0], "w_cols": W.shape[1]}
    fields["bias"] = 0 if b is None else b.ctypes.data
    return fields, [W] if b is None else [W, b]


def _fuse_linear(layer, shape):
    _rows_only(layer, shape)
    W, b = layer._weights()
    if W.shape[0] != shape[0]:
        message = f"{layer!r} gets inputs of {shape[0]} features"
        raise DimensionMismatchError(f"(_, {W.shape[0]})", ("_", shape[0]), message)
    fields, arrays = _parameters(W, b)
    return {"kind": kernels.LINEAR, "width": W.shape[1], **fields}, (W.shape[1],), arrays


def _windows(layer, shape, k_size):
    """A Conv1D's or MaxPool1D's window fields for sequences of ``shape``; the output length."""
    if len(shape) != 2:
        raise TypeError(f"{layer!r} gets rows, not sequences: it cannot be fused")
    length, channels = shape
    if length < k_size:
        message = f"{layer!r} gets sequences of length {length}, shorter than its kernel ({k_size})"
        raise DimensionMismatchError(f"(_, >= {k_size}, _)", ("_", length, channels), message)
    fields = {"k_size": k_size, "stride": layer._stride, "length": length, "channels": channels}
    return fields, (length - k_size) // layer._stride + 1


def _fuse_conv1d(layer, shape):
    W, b = layer._weights()
    k_size, chan_in, chan_out = W.shape
    fields, positions = _windows(layer, shape, k_size)
    if chan_in != shape[1]:
        message = f"{layer!r} gets sequences of {shape[1]} channels"
        raise DimensionMismatchError(f"(_, _, {chan_in})", ("_", *shape), message)
    parameters, arrays = _parameters(W.reshape(k_size * chan_in, chan_out), b)
    step = {"kind": kernels.CONV1D, "width": positions * chan_out, **fields, **parameters}
    return step, (positions, chan_out), arrays


def _fuse_maxpool1d(layer, shape):
    fields, positions = _windows(layer, shape, layer._k_size)
    return {"kind": kernels.MAXPOOL1D, "width": positions * shape[1], **fields}, (positions, shape[1]), []


def _fuse_flatten(layer, shape):
    return None, (math.prod(shape),), []  # a (batch, length, channels) block is already rows


def _fuse_activation(code, rows_only=False):
    def fuse(layer, shape):
        if rows_only:
            _rows_only(layer, shape)
        return {"kind": kernels.ACTIVATION, "act": code, "width": math.prod(shape)}, shape, []

    return fuse


_FUSIONS = {
    Linear: _fuse_linear,
    Conv1D: _fuse_conv1d,
    MaxPool1D: _fuse_maxpool1d,
    Flatten: _fuse_flatten,
    Tanh: _fuse_activation(kernels.TANH),
    Sigmoid: _fuse_activation(kernels.SIGMOID),
    ReLU: _fuse_activation(kernels.RELU),
    Softmax: _fuse_activation(kernels.SOFTMAX, rows_only=True),  # on the rows' last axis
}
# every built-in module class: the layers registered above, then the containers (checkpoints
# hold these and nothing else)
BUILT_INS = (*_FUSIONS, *_CONTAINERS)
_WEIGHTED = (Linear, Conv1D)
_SEQUENCE_LENGTH = 2**20  # the length the plan is first folded for, before data is seen


def _layers(network):
    """The leaf modules in forward order; TypeError naming the first module (or container) on
    the way that is not built-in."""
    for path, module in leaves(network):
        chain = (*path, module)
        kinds = [_CONTAINERS] * len(path) + [tuple(_FUSIONS)]
        bad = next(
            (i for i, (m, known) in enumerate(zip(chain, kinds, strict=True)) if type(m) not in known), None
        )
        if bad is not None:
            where = " > ".join(type(m).__name__ for m in chain[: bad + 1])
            names = ", ".join(c.__name__ for c in BUILT_INS)
            raise TypeError(
                f"{where} is not a built-in module ({names}; subclasses count as user modules): "
                "it cannot be fused"
            )
        yield module


class _Plan:
    """A network of built-in modules and its loss, laid out for ``kernels.sgd_epoch``.

    The layers are folded through their kinds' registrations (``_FUSIONS``) into steps; an
    activation after a step that has none is applied to that step's result. The steps hold the
    addresses of the Linear and Conv1D layers' own ``_parameters`` / ``_bias`` arrays (a
    Conv1D's weights as a 2-D view), so the kernel updates them in place. Before every call
    they are checked against the layers' current attributes; a reassigned array is converted
    (``_weights``) and the plan is rebuilt around it. The plan is laid out for the shape of the
    data's rows (a sequence's length and channels), once ``check_data`` has seen them, and the
    work buffer for the largest batch.
    """

    def __init__(self, network, loss, threads=None):
        self.threads = threads  # for the products (None: ``pyldl.threads``' choice)
        if type(loss) not in _LOSSES:
            raise TypeError(
                f"the loss {type(loss).__name__} is not MSELoss, BCELoss or CrossEntropyLoss "
                "(subclasses count as user losses): it cannot be fused"
            )
        self.loss, self._loss_module = _LOSSES[type(loss)], loss
        self._layers = list(_layers(network))
        self._weighted = [m for m in self._layers if type(m) in _WEIGHTED]
        if not self._weighted:
            raise TypeError("the network has no Linear or Conv1D layer: there is nothing to fuse")
        dtypes = {m.dtype for m in self._weighted}
        if len(dtypes) > 1:
            names = sorted(d.name for d in dtypes)
            raise TypeError(f"the Linear and Conv1D layers mix dtypes {names}: they cannot be fused")
        self.dtype = dtypes.pop()
        self.eps = bce_epsilon(self.dtype)
        first = _first_layer(network)
        self.sequences = type(first) in (Conv1D, MaxPool1D, Flatten)
        if self.sequences:
            channels = first._weights()[0].shape[1] if type(first) is Conv1D else None
            self._input = (None, channels)  # (length, channels) of the rows it takes; None: any
        else:
            self._input = (first._weights()[0].shape[0],)
        self._work, self._no_snapshot = np.empty(0, self.dtype), np.empty(0, self.dtype)
        self._saved, self._shape, self._rows = None, None, 0
        self._calls = None  # the callbacks' table: compiled or loaded by the first run
        probe = (_SEQUENCE_LENGTH, channels or 1) if self.sequences else self._input
        try:
            self._bind(probe)  # TypeError here: what cannot be fused, before any data
        except DimensionMismatchError:
            pass  # a layer that does not fit: check_data names it, on the data
        if self.sequences:
            self._shape = None  # laid out for the probe's length: bind again on the data

    def _bind(self, shape):
        """(Re)build the steps from the layers' current arrays for rows of ``shape``.
        DimensionMismatchError, before anything changes, where a layer does not fit."""
        bound = [(m, *m._weights()) for m in self._weighted]
        steps, arrays, out = [], [], shape
        for layer in self._layers:
            step, out, layer_arrays = _FUSIONS[type(layer)](layer, out)
            arrays += layer_arrays
            if step is None:
                continue
            last = steps[-1] if steps else None
            if (
                step["kind"] == kernels.ACTIVATION
                and last
                and last["kind"] != kernels.ACTIVATION
                and not last.get("act")
            ):
                last["act"] = step["act"]  # applied to the step's result
            else:
                steps.append(step)
        if len(out) != 1:
            raise TypeError("the network's output is a sequence: it cannot be fused")
        plan = np.zeros(len(steps), kernels.STEP)
        for row, step in zip(plan, steps, strict=True):
            for name, value in step.items():
                row[name] = value
        self._plan, self._bound, self._shape = plan, bound, shape
        self.in_width, self.out_width = math.prod(shape), out[0]
        windows = np.isin(plan["kind"], (kernels.CONV1D, kernels.MAXPOOL1D)).any()
        self._epoch = kernels.sgd_epoch_sequences if windows else kernels.sgd_epoch
        self._activations = sorted(set(plan["act"].tolist()) - {kernels.NONE})  # the same every bind
        self._arrays, self._size = arrays, sum(a.size for a in arrays)  # also keeps the addresses valid
        self._rows = 0  # the work buffer is laid out for batches of up to this many rows

    def _lay_out(self, rows):
        """Lay the work buffer out for batches of up to ``rows`` rows (the one place that
        computes its offsets: the steps' ``out`` and ``cols``, kernels.LAYOUT) and make it so large."""
        plan = self._plan
        widths = plan["width"]
        windows = np.where(plan["kind"] == kernels.CONV1D, widths // np.maximum(plan["w_cols"], 1), 0)
        cols = windows * plan["w_rows"]  # a Conv1D's windows of its input, per sample
        widest = max(self.in_width, int(widths.max()))
        plan["out"] = rows * (np.cumsum(widths) - widths)
        deltas = rows * int(widths.sum())
        spare = deltas + rows * widest
        ones = spare + rows * widest
        cols_at = ones + rows * max(1, int(windows.max()))
        plan["cols"] = cols_at + rows * (np.cumsum(cols) - cols)
        scratch = cols_at + rows * int(cols.sum())
        size = scratch + rows * int(cols.max())
        first = int(np.argmax(plan["weights"] != 0))
        self._layout = np.array([(first, deltas, spare, ones, scratch, size)], kernels.LAYOUT)
        self._rows = rows
        # the choice of threads is keyed by the products, the batch's rows and the dtype; None
        # where no product is large enough to be split
        products = [
            (n, w_cols, w_rows)  # forward; the delta below and the update are its transposes
            for n, w_rows, w_cols in zip(
                rows * np.maximum(widths // np.maximum(plan["w_cols"], 1), 1),
                plan["w_rows"],
                plan["w_cols"],
                strict=True,
            )
            if w_rows
        ]
        split = any(
            panel_count(*p) > 1 or panel_count(p[0], p[2], p[1]) > 1 or panel_count(p[2], p[1], p[0]) > 1
            for p in products
        )
        self._threads_key = (self.dtype.char, rows, tuple(products)) if split else None
        # OpenBLAS threads a product from 4 * 65536 multiply-adds: kept on one thread, it gives
        # the same bits whatever its count
        self._blas_sized = any(math.prod(p) >= 4 * 65536 for p in products)
        if self._work.size < size:
            self._work = np.empty(size, self.dtype)
        self._work[ones:cols_at] = 1  # the bias updates' column of ones (``ones^T delta``)

    def check_data(self, X, y, names=("X", "y")):
        """X as the kernel takes it, 2-D (sequences as rows of length * channels values);
        DimensionMismatchError unless X and y (2-D or 3-D as the network takes them, as many
        rows: ``_DataCheck``) fit the network."""
        if self.sequences:
            channels = self._input[1]
            if channels is not None and X.shape[2] != channels:
                message = f"{names[0]} has {X.shape[2]} channels, the network takes {channels}"
                raise DimensionMismatchError(f"(_, _, {channels})", X.shape, message)
        else:
            if X.shape[1] != self._input[0]:
                message = f"{names[0]} has {X.shape[1]} features, the network takes {self._input[0]}"
                raise DimensionMismatchError(f"(_, {self._input[0]})", X.shape, message)
        if self._shape != X.shape[1:]:
            self._bind(X.shape[1:])
        X = X.reshape(len(X), self.in_width)
        if y.shape != (len(X), self.out_width):
            message = f"{names[1]} and the network's output must have the same shape"
            hint = _one_hot_hint(self._loss_module, y.reshape(len(y), -1)) if y.ndim in (1, 2) else ""
            raise DimensionMismatchError((len(X), self.out_width), y.shape, message + hint)
        return X

    def run(self, X, y, batch_size, lr, snapshot=False):
        """One epoch over consecutive batches of X, y (as ``check_data`` returns them); the mean
        batch loss, a NumPy scalar of the network's dtype. ``snapshot``: first copy the
        parameters, for ``restore``."""
        for module, W, b in self._bound:
            if module._parameters is not W or module._bias is not b:
                self._bind(self._shape)
                break
        saved = self._no_snapshot
        if snapshot:
            if self._saved is None or self._saved.size != self._size:
                self._saved = np.empty(self._size, self.dtype)
            saved = self._saved
        rows = min(batch_size, len(X))
        if rows > self._rows:
            self._lay_out(rows)
        args = (
            self._plan,
            self._layout,
            self._calls,
            X,
            y,
            batch_size,
            lr,
            self.loss,
            self.eps,
            self._work,
            saved,
        )
        if self._calls is None:
            self._calls = self._compiled(args)
            args = (*args[:2], self._calls, *args[3:])
        if self._threads_key is not None:
            with _threads.running(self._threads_key, self.threads) as run:
                if run.threads > 1:
                    kernels.side_by_side(self.dtype)
                value = self._epoch(*args, run.threads)
                run.record(len(X))
        elif self._blas_sized:
            with one_thread():
                value = self._epoch(*args, 1)
        else:
            value = self._epoch(*args, 1)
        return self.dtype.type(value)

    def _compiled(self, args):
        """The callbacks' table, compiled or loaded for the first run on ``args`` (the epoch's,
        but the table and the threads). Where the epoch must compile too and a core is free, the
        callbacks compile in a second process meanwhile, and this one loads them from the cache
        (a fresh install's first epoch of W3 on 2 cores: 4.1 -> 2.8 s)."""
        dtype, activations, loss = self.dtype, self._activations, self.loss
        argtypes = uncached(self._epoch, (*args[:2], kernels.no_calls(), *args[3:], 1))
        if argtypes and _threads.core_to_spare():
            with kernels.calls_aside(dtype, activations, loss):
                self._epoch.compile(argtypes)
        return kernels.calls(dtype, activations, loss)

    def restore(self):
        """Put back the parameters copied by the last ``run(..., snapshot=True)``."""
        at = 0
        for array in self._arrays:
            array.reshape(-1)[:] = self._saved[at : at + array.size]
            at += array.size


def _plan(network, loss, fused, threads):
    """The fused plan, or None for module by module (``fused``: None auto, True insist, False
    never); ``threads`` for its products (None: ``pyldl.threads``' choice)."""
    if fused is not None and not isinstance(fused, bool):
        raise TypeError(f"fused must be None, True or False, got {fused!r}")
    threads = _threads.checked(threads)
    if fused is False:
        return None
    try:
        return _Plan(network, loss, threads)
    except TypeError:
        if fused:
            raise
        return None


class Optim(reference.Optim):
    """One gradient-descent step of ``net`` on ``loss``: zero_grad, forward, loss, backward, update.

    ``step(batch_x, batch_y)`` (also ``optim(batch_x, batch_y)``) returns the batch loss,
    computed before the update, as the loss's ``forward`` gives it (for the built-in losses a
    NumPy scalar of the network's dtype, ``np.float64`` or ``np.float32``). On a network of
    built-in modules with a built-in loss the step runs as one compiled call (a one-batch
    epoch of the fused kernel); the layers' ``_gradient`` arrays are then left alone (the
    update is folded into the gradient product). Inputs are converted to the network's dtype.

    Args:
        fused: None picks the compiled step when the network and loss are all built-in,
            True insists on it (TypeError naming the module otherwise), False always runs
            module by module.
        check_finite: scan each batch for NaN and inf first (a ValueError naming the index).
        threads: how many threads compute the compiled step's products (None: chosen by
            measuring, :mod:`pyldl.threads`); the losses do not depend on it.
    """

    def __init__(self, net, loss, gradient_step=1e-3, *, fused=None, check_finite=True, threads=None):
        super().__init__(net, loss, gradient_step)
        self._plan = _plan(net, loss, fused, threads)
        self._check = _DataCheck(net, self._plan, loss, check_finite, ("batch_x", "batch_y"))

    @property
    def fused(self):
        """Whether steps run in the compiled kernel."""
        return self._plan is not None

    def step(self, batch_x, batch_y):
        """Train on one batch; return the loss before the update."""
        plan = self._plan
        X, y = self._check(batch_x, batch_y)
        if plan is None:
            return super().step(X, y)
        return plan.run(X, y, len(X), plan.dtype.type(self._gradient_step))


class Trainer:
    """SGD's training state for one data set: validated inputs, the fixed minibatches, and
    the epoch routine (compiled and fused, or module by module).

    ``Trainer(...).epoch()`` trains one epoch and returns its mean batch loss (a Python float);
    SGD calls it ``n_iter`` times. Benchmarks use it to time epochs without SGD's set-up.

    The fused path keeps the parameters in the layers' own arrays (updated in place) and
    re-checks them before every epoch, so an array assigned between epochs is picked up; the
    layers' ``_gradient`` arrays are not used and hold nothing meaningful afterwards.

    Args:
        order: the order of the rows (default: one ``np.random.permutation(len(X))``).
        fused: None picks the compiled whole-epoch path when the network and loss are all
            built-in, True insists on it (TypeError naming the module otherwise), False
            trains module by module.
        snapshot: copy the parameters at the start of every epoch, so that :meth:`restore`
            can put them back (SGD's divergence guard; the fused path copies them inside the
            compiled call).
        check_finite: scan X and y for NaN and inf first (a ValueError naming the index).
        threads: how many threads compute the compiled epoch's products (None: chosen by
            measuring, :mod:`pyldl.threads`); the losses do not depend on it.
    """

    def __init__(
        self,
        network,
        loss,
        X,
        y,
        batch_size=64,
        gradient_step=1e-3,
        *,
        order=None,
        fused=None,
        snapshot=False,
        check_finite=True,
        threads=None,
    ):
        if not isinstance(network, Module):
            raise TypeError(f"network must be a pyldl Module, got {type(network).__name__}")
        self._plan = _plan(network, loss, fused, threads)
        if self._plan is None:
            _normalize_weights(network)
        X, y = _DataCheck(network, self._plan, loss, check_finite)(X, y)  # sequences as rows if fused
        batch_size, gradient_step, _ = _check_settings(batch_size, gradient_step, 0)
        if order is None:
            order = np.random.permutation(len(X))
        self.network, self.loss = network, loss
        self._snapshot, self._saved = bool(snapshot), None
        X, y = X[order], y[order]
        if self._plan is not None:
            self._X, self._y = X, y  # fancy indexing made C-contiguous copies
            self._batch_size, self._lr = batch_size, self._plan.dtype.type(gradient_step)
        else:
            starts = range(0, len(X), batch_size)
            self._batches = [(X[i : i + batch_size], y[i : i + batch_size]) for i in starts]
            self._optimizer = reference.Optim(network, loss, gradient_step)

    @property
    def fused(self):
        """Whether epochs run in the compiled kernel."""
        return self._plan is not None

    def parameters(self):
        """The network's parameter arrays, the very ones training updates."""
        return list(_arrays(self.network))

    def epoch(self):
        """Train on every minibatch once; return the mean of the batch losses."""
        if self._plan is not None:
            return float(self._plan.run(self._X, self._y, self._batch_size, self._lr, self._snapshot))
        if self._snapshot:  # module by module is slow anyway: fresh copies are fine
            self._saved = [(array, array.copy()) for array in self.parameters()]
        return float(np.mean([self._optimizer.step(bx, by) for bx, by in self._batches]))

    def restore(self):
        """Put back the parameters as they were at the start of the last epoch (``snapshot=True``)."""
        if not self._snapshot:
            raise RuntimeError("restore() needs a Trainer made with snapshot=True")
        if self._plan is not None:
            self._plan.restore()
            return
        for array, saved in self._saved or ():
            np.copyto(array, saved)


def SGD(
    network,
    loss,
    X,
    y,
    batch_size=64,
    gradient_step=1e-3,
    n_iter=1000,
    *,
    progress=True,
    order=None,
    fused=None,
    check_finite=True,
    checkpoint=None,
    checkpoint_every=1,
    threads=None,
):
    """Minibatch gradient descent; returns each epoch's mean batch loss (a list of floats).

    One ``np.random.permutation(len(X))`` is drawn at the start (unless ``order`` is given);
    every epoch trains on the same consecutive batches of ``batch_size`` rows in that order, the
    last partial batch kept.
    A network of built-in modules with a built-in loss trains each epoch in one compiled call
    (see :class:`Trainer`; the layers' ``_gradient`` arrays then hold nothing meaningful).

    If an epoch's loss is NaN or inf, :class:`~pyldl.exceptions.DivergenceError` is raised
    (with the losses so far) and the network keeps the parameters of the last finite epoch.
    Ctrl-C also puts back the parameters of the last epoch whose loss was recorded, then
    re-raises KeyboardInterrupt; a compiled epoch cannot be interrupted midway, so the
    interrupt surfaces when it returns.

    Args:
        progress: show a progress bar over epochs.
        order: the order of the rows (default: one ``np.random.permutation(len(X))``, drawn from
            NumPy's global RNG; :func:`pyldl.sweep` passes its own, drawn under a lock).
        fused: see :class:`Trainer` (None: automatic).
        check_finite: scan X and y for NaN and inf first (a ValueError naming the index);
            False saves that pass over the data.
        checkpoint: a path; the network is saved there (:func:`pyldl.save`, atomic) after
            every ``checkpoint_every`` finite epochs and after the last one.
        threads: see :class:`Trainer` (None: chosen by measuring).
    """
    _check_n_iter(n_iter)
    if (
        isinstance(checkpoint_every, bool)
        or not isinstance(checkpoint_every, numbers.Integral)
        or (checkpoint_every < 1)
    ):
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    trainer = Trainer(
        network,
        loss,
        X,
        y,
        batch_size,
        gradient_step,
        order=order,
        fused=fused,
        snapshot=True,
        check_finite=check_finite,
        threads=threads,
    )
    losses = []
    for epoch in tqdm(range(n_iter), disable=not progress, desc="SGD", unit="epoch"):
        try:
            value = trainer.epoch()
        except KeyboardInterrupt:
            trainer.restore()
            raise
        losses.append(value)
        if not math.isfinite(value):
            trainer.restore()
            raise DivergenceError(len(losses) - 1, losses)
        if checkpoint is not None and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == n_iter):
            checkpoints.save(network, checkpoint)
    return losses
