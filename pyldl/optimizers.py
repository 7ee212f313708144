"""Training: Optim (one step) and SGD (minibatch gradient descent over epochs).

A network made only of built-in modules (Linear, Tanh, Sigmoid, Softmax, ReLU inside
Sequential / AutoEncoder containers, nested in any way) with MSELoss, BCELoss or
CrossEntropyLoss is flattened
once into a plan for :func:`pyldl.kernels.optimizers.sgd_epoch`, which trains a whole epoch
(or one Optim step) in one compiled call. Anything else, a subclass of a built-in included,
trains module by module through the modules' own methods, with the same results.
"""

import math
import numbers

import numpy as np
from tqdm.auto import tqdm

from .activations import ReLU, Sigmoid, Softmax, Tanh
from .base import Module, as_float_array, check_2d, check_same_rows
from .checkpoints import save
from .exceptions import DimensionMismatchError, DivergenceError
from .kernels import optimizers as kernels
from .kernels._blas import threads_for
from .layers import AutoEncoder, Sequential
from .losses import BCELoss, CrossEntropyLoss, MSELoss
from .modules import Linear
from .reference import losses as reference_losses
from .reference import modules as reference_modules
from .reference import optimizers as reference
from .reference.losses import bce_epsilon
from .reference.modules import SEQUENCE

__all__ = ["SGD", "Optim", "Trainer"]

_CONTAINERS = (Sequential, AutoEncoder)
_ACTIVATIONS = {
    Tanh: kernels.TANH,
    Sigmoid: kernels.SIGMOID,
    ReLU: kernels.RELU,
    Softmax: kernels.SOFTMAX,
}
_LOSSES = {MSELoss: kernels.MSE, BCELoss: kernels.BCE, CrossEntropyLoss: kernels.CROSS_ENTROPY}


def _modules(network):
    """Every module of the network, containers included, depth first."""
    stack = [network]
    while stack:
        module = stack.pop()
        yield module
        stack.extend(reversed(getattr(module, "_modules", ())))


def _arrays(network):
    """Every parameter array of the network (``_parameters`` and ``_bias`` of each module)."""
    for module in _modules(network):
        for name in ("_parameters", "_bias"):
            value = getattr(module, name, None)
            if isinstance(value, np.ndarray):
                yield value


def _normalize_weights(network):
    """Convert user-assigned weights of every Linear and Conv1D once (``_weights`` stores them
    back), so that the arrays seen before training are the ones training updates."""
    for module in _modules(network):
        if isinstance(module, reference_modules.Weighted):
            module._weights()


def _first_leaf(network):
    while isinstance(network, Sequential) and network._modules:
        network = network._modules[0]
    return network


_SEQUENCE_MODULES = (reference_modules.Conv1D, reference_modules.MaxPool1D, reference_modules.Flatten)


def _dtype(network):
    """The network's dtype: that of its first parameter array, float64 when it has none."""
    first = next(_arrays(network), None)
    return first.dtype if first is not None and first.dtype.kind == "f" else np.dtype(np.float64)


def _check_training_args(network, X, y, batch_size, gradient_step, n_iter, dtype=None):
    if not isinstance(network, Module):
        raise TypeError(f"network must be a pyldl Module, got {type(network).__name__}")
    dtype = _dtype(network) if dtype is None else dtype
    X = as_float_array(X, "X", dtype)
    y = as_float_array(y, "y", dtype)
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    first = _first_leaf(network)
    if not isinstance(first, _SEQUENCE_MODULES):
        check_2d(X, "X")
    elif X.ndim != 3:
        name = type(first).__name__
        message = f"X must be 3-D {SEQUENCE} for a network that starts with {name}, got {X.ndim}-D"
        raise DimensionMismatchError(SEQUENCE, X.shape, message)
    check_2d(y, "y")
    check_same_rows(X, y, "X", "y")
    if len(X) == 0:
        raise ValueError("X is empty: SGD needs at least one sample")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    _check_n_iter(n_iter)
    if not isinstance(gradient_step, numbers.Real) or not math.isfinite(gradient_step):
        raise ValueError(f"gradient_step must be a finite number, got {gradient_step!r}")
    return X, y, int(batch_size), float(gradient_step), int(n_iter)


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


def _layers(module, path=()):
    """The leaf modules in forward order; TypeError naming the first one that is not built-in."""
    path = (*path, type(module).__name__)
    if type(module) in _CONTAINERS:
        for inner in module._modules:
            yield from _layers(inner, path)
    elif type(module) is Linear or type(module) in _ACTIVATIONS:
        yield module
    else:
        raise TypeError(
            f"{' > '.join(path)} is not a built-in module (Linear, Tanh, Sigmoid, Softmax, ReLU, "
            "Sequential, AutoEncoder; subclasses count as user modules): it cannot be fused"
        )


class _Plan:
    """A network of built-in modules and its loss, laid out for ``kernels.sgd_epoch``.

    The typed list holds the Linear layers' own ``_parameters`` / ``_bias`` arrays, so the
    kernel updates them in place. Before every call they are checked against the layers'
    current attributes; a reassigned array is converted (``Linear._weights``) and the plan
    is rebuilt around it.
    """

    def __init__(self, network, loss):
        if type(loss) not in _LOSSES:
            raise TypeError(
                f"the loss {type(loss).__name__} is not MSELoss, BCELoss or CrossEntropyLoss "
                "(subclasses count as user losses): it cannot be fused"
            )
        self.loss, self._loss_module = _LOSSES[type(loss)], loss
        self._layers = list(_layers(network))
        self._linears = [m for m in self._layers if type(m) is Linear]
        if not self._linears:
            raise TypeError("the network has no Linear layer: there is nothing to fuse")
        dtypes = {m.dtype for m in self._linears}
        if len(dtypes) > 1:
            names = sorted(d.name for d in dtypes)
            raise TypeError(f"the Linear layers mix dtypes {names}: they cannot be fused")
        self.dtype = dtypes.pop()
        self.eps = self.dtype.type(bce_epsilon(self.dtype))
        self._work, self._no_snapshot = np.empty(0, self.dtype), np.empty(0, self.dtype)
        self._saved = None
        self._bind()

    def _bind(self):
        """(Re)build the table and the parameter list from the layers' current arrays."""
        self._bound = [(m, *m._weights()) for m in self._linears]
        width = self.in_width = self._bound[0][1].shape[0]
        table = [[0] * kernels.PLAN_COLUMNS]
        parameters, column, widest = [], 0, width
        no_bias = np.zeros((1, 0), self.dtype)
        linears = iter(self._bound)
        for layer in self._layers:
            if type(layer) is Linear:
                _, W, b = next(linears)
                if W.shape[0] != width:
                    raise DimensionMismatchError(
                        f"(_, {W.shape[0]})", ("_", width), f"{layer!r} gets inputs of {width} features"
                    )
                width = W.shape[1]
                table.append([1, kernels.NONE, len(parameters), b is not None, width, column])
                parameters += [W, no_bias if b is None else b]
            elif len(table) > 1 and table[-1][kernels.IS_LINEAR] and table[-1][kernels.ACT] == kernels.NONE:
                table[-1][kernels.ACT] = _ACTIVATIONS[type(layer)]  # applied to the Linear's product
                continue
            else:
                table.append([0, _ACTIVATIONS[type(layer)], 0, 0, width, column])
            column += width
            widest = max(widest, width)
        header = table[0]
        header[kernels.PARAM] = next(i for i, row in enumerate(table) if row[kernels.IS_LINEAR])
        header[kernels.WIDTH], header[kernels.COLUMN] = widest, column
        self.out_width = width
        self._largest = max(a.size for a in parameters)  # multiply-adds per row of the largest product
        self._table = np.array(table, dtype=np.int64)
        self._arrays, self._size = parameters, sum(a.size for a in parameters)
        self._parameters = kernels.parameter_list(parameters[0])
        for array in parameters[1:]:
            kernels.parameter_list_append(self._parameters, array)
        self._rows = 0  # the work buffer fits batches of up to this many rows

    def check_data(self, X, y):
        """DimensionMismatchError unless X and y (2-D, same rows) fit the network."""
        if X.shape[1] != self.in_width:
            message = f"X has {X.shape[1]} features, the network takes {self.in_width}"
            raise DimensionMismatchError(f"(_, {self.in_width})", X.shape, message)
        if y.shape[1] != self.out_width:
            message = "y and the network's output must have the same shape" + _one_hot_hint(
                self._loss_module, y
            )
            raise DimensionMismatchError((y.shape[0], self.out_width), y.shape, message)

    def run(self, X, y, batch_size, lr, snapshot=False):
        """One epoch over consecutive batches of X, y (checked by ``check_data``); the mean batch
        loss, a NumPy scalar of the network's dtype. ``snapshot``: first copy the parameters,
        for ``restore``."""
        for module, W, b in self._bound:
            if module._parameters is not W or module._bias is not b:
                self._bind()
                break
        saved = self._no_snapshot
        if snapshot:
            if self._saved is None or self._saved.size != self._size:
                self._saved = np.empty(self._size, self.dtype)
            saved = self._saved
        rows = min(batch_size, len(X))
        if rows > self._rows:
            size = kernels.work_size(self._table, rows)
            if self._work.size < size:
                self._work = np.empty(size, self.dtype)
            self._rows = rows
        with threads_for(rows * self._largest):
            value = kernels.sgd_epoch(
                self._table, self._parameters, X, y, batch_size, lr, self.loss, self.eps, self._work, saved
            )
        return self.dtype.type(value)

    def restore(self):
        """Put back the parameters copied by the last ``run(..., snapshot=True)``."""
        at = 0
        for array in self._arrays:
            array.reshape(-1)[:] = self._saved[at : at + array.size]
            at += array.size


def _plan(network, loss, fused):
    """The fused plan, or None for module by module (``fused``: None auto, True insist, False never)."""
    if fused is not None and not isinstance(fused, bool):
        raise TypeError(f"fused must be None, True or False, got {fused!r}")
    if fused is False:
        return None
    try:
        return _Plan(network, loss)
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
    """

    def __init__(self, net, loss, gradient_step=1e-3, *, fused=None, check_finite=True):
        super().__init__(net, loss, gradient_step)
        self._plan = _plan(net, loss, fused)
        self._check_finite = check_finite

    @property
    def fused(self):
        """Whether steps run in the compiled kernel."""
        return self._plan is not None

    def step(self, batch_x, batch_y):
        """Train on one batch; return the loss before the update."""
        plan = self._plan
        dtype = _dtype(self._network) if plan is None else plan.dtype
        X = as_float_array(batch_x, "batch_x", dtype)
        y = as_float_array(batch_y, "batch_y", dtype)
        _check_values(X, y, self._loss, self._check_finite, ("batch_x", "batch_y"))
        if plan is None:
            return super().step(X, y)
        check_2d(X, "batch_x")
        if y.shape != (len(X), plan.out_width):
            message = "batch_y and the network's output must have the same shape"
            hint = _one_hot_hint(self._loss, y.reshape(len(y), -1)) if y.ndim in (1, 2) else ""
            raise DimensionMismatchError((len(X), plan.out_width), y.shape, message + hint)
        plan.check_data(X, y)
        if len(X) == 0:
            raise ValueError("batch_x is empty")
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
    ):
        if not isinstance(network, Module):
            raise TypeError(f"network must be a pyldl Module, got {type(network).__name__}")
        self._plan = _plan(network, loss, fused)
        if self._plan is None:
            _normalize_weights(network)
        dtype = None if self._plan is None else self._plan.dtype
        X, y, batch_size, gradient_step, _ = _check_training_args(
            network, X, y, batch_size, gradient_step, 0, dtype
        )
        if self._plan is not None:
            self._plan.check_data(X, y)
        _check_values(X, y, loss, check_finite)
        if order is None:
            order = np.random.permutation(len(X))
        self.network, self.loss = network, loss
        self._snapshot, self._saved = bool(snapshot), None
        X, y = X[order], y[order]
        if self._plan is not None:
            self._X, self._y = np.ascontiguousarray(X), np.ascontiguousarray(y)
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
    fused=None,
    check_finite=True,
    checkpoint=None,
    checkpoint_every=1,
):
    """Minibatch gradient descent; returns each epoch's mean batch loss (a list of floats).

    One ``np.random.permutation(len(X))`` is drawn at the start; every epoch trains on the
    same consecutive batches of ``batch_size`` rows in that order, the last partial batch kept.
    A network of built-in modules with a built-in loss trains each epoch in one compiled call
    (see :class:`Trainer`; the layers' ``_gradient`` arrays then hold nothing meaningful).

    If an epoch's loss is NaN or inf, :class:`~pyldl.exceptions.DivergenceError` is raised
    (with the losses so far) and the network keeps the parameters of the last finite epoch.
    Ctrl-C also puts back the parameters of the last epoch whose loss was recorded, then
    re-raises KeyboardInterrupt; a compiled epoch cannot be interrupted midway, so the
    interrupt surfaces when it returns.

    Args:
        progress: show a progress bar over epochs.
        fused: see :class:`Trainer` (None: automatic).
        check_finite: scan X and y for NaN and inf first (a ValueError naming the index);
            False saves that pass over the data.
        checkpoint: a path; the network is saved there (:func:`pyldl.save`, atomic) after
            every ``checkpoint_every`` finite epochs and after the last one.
    """
    _check_n_iter(n_iter)
    if (
        isinstance(checkpoint_every, bool)
        or not isinstance(checkpoint_every, numbers.Integral)
        or (checkpoint_every < 1)
    ):
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    trainer = Trainer(
        network, loss, X, y, batch_size, gradient_step, fused=fused, snapshot=True, check_finite=check_finite
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
            save(network, checkpoint)
    return losses
