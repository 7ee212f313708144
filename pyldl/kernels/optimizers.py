"""Fused minibatch SGD: one call trains a whole epoch of a network flattened into a plan.

A plan is a structured array of steps (``STEP``, read by field name) and a one-record layout
of the work buffer (``LAYOUT``), both built by :mod:`pyldl.optimizers` from each built-in layer
kind's registration. A step is a Linear, a Conv1D or a MaxPool1D (``kind``), optionally
followed by an activation (``act``), or an activation alone. A step with parameters holds the
addresses of the Module's own arrays (updated in place; the plan's owner keeps them alive):
its weights, seen as (``w_rows``, ``w_cols``) (a Conv1D's as their (k_size * chan_in, chan_out)
view), and its bias row (1, ``w_cols``) (address 0: none). Addresses rather than a typed list
of arrays: the list's type cost about 0.6 s of compilation on a fresh install and 1.3 us of
unboxing per call. Flatten is no step: a (batch, length, channels) block is already (batch,
length * channels) in memory, and sequences travel as such rows; Conv1D and MaxPool1D steps
keep their ``k_size``, ``stride`` and the ``length`` and ``channels`` of their input.

``work`` holds, at offsets the layout gives for the largest batch: each step's output block
(batch, ``width``) at ``out``; two delta blocks of the widest step (``deltas``, ``spare``; the
first also holds a product before its activation); a run of ones (``ones``: bias gradients
as gemm); each Conv1D's windows of its input (im2col, at its ``cols``), kept from forward to
the update; and the windows of a Conv1D's delta below (``scratch``).

The epoch calls one forward and one backward kernel per kind, the same ones the Module
wrappers call (kernels.modules, .activations, .losses), and each activation's derivative
from its output, which forward keeps.
"""

import ctypes

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic, overload

from ._numba import OPTIONS, jit
from .activations import (
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    softmax_forward,
    softmax_jacobian,
    tanh_backward,
    tanh_forward,
)
from .losses import (
    bce_backward,
    bce_forward,
    cross_entropy_backward,
    cross_entropy_forward,
    mse_backward,
    mse_forward,
)
from .modules import (
    conv1d_backward_delta,
    conv1d_forward,
    linear_backward_delta,
    linear_forward,
    maxpool1d_backward_delta,
    maxpool1d_forward,
    sgd_update,
)

# activations (a step's ``act``; NONE: none)
NONE, TANH, SIGMOID, RELU, SOFTMAX = 0, 1, 2, 3, 4
# losses
MSE, BCE, CROSS_ENTROPY = 0, 1, 2
# step kinds
ACTIVATION, LINEAR, CONV1D, MAXPOOL1D = 0, 1, 2, 3

STEP = np.dtype(
    [
        (name, np.int64)
        for name in (
            "kind",
            "act",
            "weights",  # address of the weights (w_rows, w_cols); 0: none
            "bias",  # address of the bias row (1, w_cols); 0: none
            "w_rows",
            "w_cols",
            "width",  # output values per sample
            "out",  # offset in work of the output block (batch, width)
            "cols",  # a Conv1D's: offset of its windows (batch * positions, w_rows)
            "k_size",
            "stride",
            "length",  # a Conv1D's or MaxPool1D's input: its length and channels
            "channels",
        )
    ]
)
# the first step with parameters (the backward pass stops there), the offsets of the regions
# of work (module docstring) and its size
LAYOUT = np.dtype([(name, np.int64) for name in ("first", "deltas", "spare", "ones", "scratch", "size")])


@intrinsic
def _pointer_compiled(typingctx, address, like):
    if isinstance(address, types.Integer) and isinstance(like, types.Array):
        pointer = types.CPointer(like.dtype)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(pointer))

        return pointer(address, like), codegen


def _pointer(address, like):
    """The address as a pointer to elements of ``like``'s dtype (ctypes without Numba)."""
    return ctypes.cast(int(address), ctypes.POINTER(np.ctypeslib.as_ctypes_type(like.dtype)))


overload(_pointer, jit_options=OPTIONS, inline="always")(
    lambda address, like: lambda address, like: _pointer_compiled(address, like)
)


@jit(inline=True)
def _weights(step, like):
    """The step's weights (w_rows, w_cols), of ``like``'s dtype."""
    return numba.carray(_pointer(step["weights"], like), (step["w_rows"], step["w_cols"]))


@jit(inline=True)
def _bias(step, like):
    """The step's bias row (1, w_cols) of ``like``'s dtype, or None."""
    return numba.carray(_pointer(step["bias"], like), (1, step["w_cols"])) if step["bias"] else None


@jit(inline=True)
def _block(work, at, rows, width):
    """work[at:] as a (rows, width) block."""
    return work[at : at + rows * width].reshape((rows, width))


@jit(inline=True)
def _copy_into(flat, array):
    """Copy ``array`` to the start of ``flat``; return its size."""
    values = array.reshape(array.size)
    for i in range(values.size):
        flat[i] = values[i]
    return values.size


@jit(inline=True)
def _snapshot(plan, work, snapshot):
    """Every parameter array of the plan into ``snapshot``, flattened one after the other."""
    at = 0
    for s in range(plan.size):
        step = plan[s]
        if step["weights"]:
            at += _copy_into(snapshot[at:], _weights(step, work))
        bias = _bias(step, work)
        if bias is not None:
            at += _copy_into(snapshot[at:], bias)


@jit(inline=True)
def _activation_forward(act, x, out):
    """out = act(x) (NONE: nothing).  (N, D)."""
    if act == SOFTMAX:
        softmax_forward(x, out)
    elif act != NONE:
        x1, out1 = x.reshape(x.size), out.reshape(out.size)
        if act == TANH:
            tanh_forward(x1, out1)
        elif act == SIGMOID:
            sigmoid_forward(x1, out1)
        else:
            relu_forward(x1, out1)


@jit(inline=True)
def _activation_backward(act, out, delta):
    """delta = the delta below ``act`` from its output ``out``, in place (NONE: nothing).  (N, D)."""
    if act == SOFTMAX:
        softmax_jacobian(out, delta, delta)
        return
    o, d = out.reshape(out.size), delta.reshape(delta.size)
    if act == TANH:
        for i in range(o.size):
            d[i] = tanh_backward(o[i], d[i])
    elif act == SIGMOID:
        for i in range(o.size):
            d[i] = sigmoid_backward(o[i], d[i])
    elif act == RELU:
        for i in range(o.size):
            d[i] = relu_backward(o[i], d[i])


@jit(inline=True)
def _loss(loss, y, yhat, eps, delta):
    """The batch loss, as the Loss module computes it; delta = its backward (PyLDL's scaling)."""
    if loss == MSE:
        mse_backward(y, yhat, delta)
        return mse_forward(y, yhat)
    if loss == CROSS_ENTROPY:  # yhat holds logits
        cross_entropy_backward(y, yhat, delta)
        return cross_entropy_forward(y, yhat)
    bce_backward(y, yhat, eps, delta)
    return bce_forward(y, yhat, eps)


# One forward and one backward helper per step kind, on the kind's own kernels. Forward: z =
# the step's result for its input x (before its activation). Backward: the step's update from
# its input x and the delta at its output and, where ``below`` is not empty, the delta below
# it, from the weights before the update.  x, z, delta, below (n, _).


@jit(inline=True)
def _linear_forward(step, x, z, work, threads):
    linear_forward(x, _weights(step, work), _bias(step, work), z, threads)


@jit(inline=True)
def _linear_backward(step, x, delta, below, lr, work, layout, threads):
    W = _weights(step, work)
    if below.size:
        linear_backward_delta(delta, W, below, threads)
    sgd_update(x, delta, lr, work[layout["ones"] : layout["scratch"]], W, _bias(step, work), threads)


@jit
def _conv1d_forward(step, x, z, work, threads):
    n, positions = x.shape[0], step["width"] // step["w_cols"]
    conv1d_forward(
        x.reshape((n, step["length"], step["channels"])),
        _weights(step, work).reshape((step["k_size"], step["channels"], step["w_cols"])),
        _bias(step, work),
        step["stride"],
        _block(work, step["cols"], n * positions, step["w_rows"]),
        z.reshape((n, positions, step["w_cols"])),
        threads,
    )


@jit
def _conv1d_backward(step, x, delta, below, lr, work, layout, threads):
    W = _weights(step, work)
    n, positions = x.shape[0], step["width"] // step["w_cols"]
    if below.size:
        conv1d_backward_delta(
            delta.reshape((n, positions, step["w_cols"])),
            W.reshape((step["k_size"], step["channels"], step["w_cols"])),
            step["stride"],
            _block(work, layout["scratch"], n * positions, step["w_rows"]),
            below.reshape((n, step["length"], step["channels"])),
            threads,
        )
    cols = _block(work, step["cols"], n * positions, step["w_rows"])
    rate = lr / work.dtype.type(n)  # PyLDL divides Conv1D's gradient by the batch's rows
    ones = work[layout["ones"] : layout["scratch"]]
    sgd_update(
        cols, delta.reshape((n * positions, step["w_cols"])), rate, ones, W, _bias(step, work), threads
    )


@jit
def _maxpool1d_forward(step, x, z, work):
    n = x.shape[0]
    maxpool1d_forward(
        x.reshape((n, step["length"], step["channels"])),
        step["k_size"],
        step["stride"],
        z.reshape((n, step["width"] // step["channels"], step["channels"])),
    )


@jit
def _maxpool1d_backward(step, x, delta, below, lr, work, layout):
    n = x.shape[0]
    maxpool1d_backward_delta(
        x.reshape((n, step["length"], step["channels"])),
        delta.reshape((n, step["width"] // step["channels"], step["channels"])),
        step["k_size"],
        step["stride"],
        below.reshape((n, step["length"], step["channels"])),
    )


def _sgd_epoch(sequences):
    """The epoch kernel for plans with Conv1D / MaxPool1D steps (``sequences``) or without.
    ``sequences`` is a compile-time constant: Numba prunes the other kinds' branches before
    typing, so a network of Linear layers compiles none of the sequence kernels."""

    @jit
    def sgd_epoch(plan, layout, X, y, batch_size, lr, loss, eps, work, snapshot, threads):
        """One epoch of minibatch SGD over consecutive row slices of X, y (the last may be partial).

        Per batch: forward, loss, loss backward, then from the last step down to the first step
        with parameters: activation backward, the delta for the step below (from the weights
        before the update; none below the first step with parameters), then the update without
        a gradient buffer: ``W -= lr X_in^T delta`` and ``b -= lr ones^T delta`` (a Conv1D's on
        its windows, with lr / n: PyLDL divides Conv1D's gradient by the batch's n rows).
        X (N, I) (sequences as (N, length * channels) rows), y (N, O) and work (``size``) of the
        parameters' dtype, lr and eps scalars of it (a loss code in ``loss``). Returns the mean
        of the batch losses, each as the Loss module computes it. A non-empty ``snapshot`` first
        receives every parameter array (SGD's copy for its divergence guard). ``threads``:
        how many threads compute the products (the result does not depend on it).
        """
        layout = layout[0]
        if snapshot.size:
            _snapshot(plan, work, snapshot)
        work[layout["ones"] : layout["scratch"]] = 1
        last, total_rows = plan.size - 1, X.shape[0]
        total, batches = 0.0, 0
        for start in range(0, total_rows, batch_size):
            n = min(batch_size, total_rows - start)
            x = X[start : start + n]
            for s in range(plan.size):
                step = plan[s]
                out = _block(work, step["out"], n, step["width"])
                if step["kind"] != ACTIVATION:
                    # the product goes to the (still unused) delta block when an activation
                    # follows: in place, the activation loops would fail their overlap check
                    # and not vectorise
                    z = out if step["act"] == NONE else _block(work, layout["deltas"], n, step["width"])
                    if step["kind"] == LINEAR:
                        _linear_forward(step, x, z, work, threads)
                    elif sequences and step["kind"] == CONV1D:
                        _conv1d_forward(step, x, z, work, threads)
                    elif sequences:
                        _maxpool1d_forward(step, x, z, work)
                    x = z
                _activation_forward(step["act"], x, out)
                x = out
            delta = _block(work, layout["deltas"], n, plan[last]["width"])
            total += _loss(loss, y[start : start + n], x, eps, delta)
            delta_at, spare_at = layout["deltas"], layout["spare"]
            for s in range(last, layout["first"] - 1, -1):
                step = plan[s]
                _activation_backward(step["act"], _block(work, step["out"], n, step["width"]), delta)
                if step["kind"] == ACTIVATION:
                    continue
                x = (
                    X[start : start + n]
                    if s == 0
                    else _block(work, plan[s - 1]["out"], n, plan[s - 1]["width"])
                )
                below = _block(work, spare_at, n if s > layout["first"] else 0, x.shape[1])
                if step["kind"] == LINEAR:
                    _linear_backward(step, x, delta, below, lr, work, layout, threads)
                elif sequences and step["kind"] == CONV1D:
                    _conv1d_backward(step, x, delta, below, lr, work, layout, threads)
                elif sequences:
                    _maxpool1d_backward(step, x, delta, below, lr, work, layout)
                delta = below
                delta_at, spare_at = spare_at, delta_at
            batches += 1
        return total / batches

    return sgd_epoch


sgd_epoch = _sgd_epoch(False)
sgd_epoch_sequences = _sgd_epoch(True)
