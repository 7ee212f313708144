"""Fused minibatch SGD: one call trains a whole epoch of a network flattened into a plan.

The plan is an int64 table, one row per step (row 0 is a header). A step (``KIND``) is a
Linear or a Conv1D, optionally followed by an activation (``ACT``), a MaxPool1D, or an
activation alone. A step with parameters holds the addresses of the Module's own arrays
(updated in place; the plan's owner keeps them alive): its weights at ``WEIGHTS``, seen as
(``W_ROWS``, ``W_COLS``) (a Conv1D's as their (k_size * chan_in, chan_out) view), and its
bias row (1, ``W_COLS``) at ``BIAS`` (0: none). Addresses instead of a typed list of arrays: the list's
type costs about 0.6 s of compilation on a fresh install and 1.3 us of unboxing per call.
Flatten is no step: a (batch, length, channels) block is already (batch, length * channels)
in memory, and sequences travel as such rows; Conv1D and MaxPool1D steps keep their
``K_SIZE``, ``STRIDE`` and the ``LENGTH`` and ``CHANNELS`` of their input.

Step ``s`` writes its output to ``work`` at ``rows * COLUMN`` as a (batch, ``WIDTH``) block,
``rows`` being the largest batch; two more blocks of the widest step hold the deltas (and
the loss terms, and a product before its activation), a column of ones sums the bias
gradient in gemm, a Conv1D keeps the windows of its input (im2col) at ``rows * COLS`` from
forward to its weight update, and one more region holds the windows of a Conv1D's delta
below (``work_size``). The header row keeps the widths' sum in ``COLUMN``, the widest step in
``WIDTH``, the first step with parameters in ``WEIGHTS``, the windows' columns in ``COLS``,
the most windows per sample (the ones column's length per row) in ``LENGTH`` and the widest
delta windows per row in ``K_SIZE``.

Backward passes use each activation's output (s (1 - s), 1 - t**2, [out > 0], the softmax
Jacobian), never its input, so a Linear's product need not be kept.

Compile time matters (the first epoch compiles the kernel): Numba re-optimises a callee's
code inside each caller, so the epoch kernel calls only shallow helpers.
"""

import ctypes

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic, overload

from . import _math
from ._blas import gemm
from ._numba import OPTIONS, jit
from .activations import relu_forward, sigmoid_forward, softmax_forward, tanh_forward
from .losses import cross_entropy_backward, cross_entropy_forward, sum64
from .modules import add_bias, conv1d_backward_delta, im2col, maxpool1d_backward_delta, maxpool1d_forward

# activations (the ACT column; NONE: a Linear alone)
NONE, TANH, SIGMOID, RELU, SOFTMAX = 0, 1, 2, 3, 4
# losses
MSE, BCE, CROSS_ENTROPY = 0, 1, 2
# step kinds (the KIND column)
ACTIVATION, LINEAR, CONV1D, MAXPOOL1D = 0, 1, 2, 3
# plan columns (the header row's meaning: module docstring)
KIND, ACT, WEIGHTS, BIAS, W_ROWS, W_COLS, WIDTH, COLUMN, K_SIZE, STRIDE, LENGTH, CHANNELS, COLS = range(13)
PLAN_COLUMNS = 13


def work_size(plan, rows):
    """Elements of ``work`` that ``sgd_epoch`` needs for batches of up to ``rows`` rows."""
    header = plan[0]
    per_row = int(header[COLUMN]) + 2 * int(header[WIDTH]) + int(header[COLS]) + int(header[K_SIZE])
    return rows * (per_row + max(1, int(header[LENGTH])))


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


overload(_pointer, jit_options=OPTIONS)(
    lambda address, like: lambda address, like: _pointer_compiled(address, like)
)


@jit
def _weights(plan, s, like):
    """Step ``s``'s weights (W_ROWS, W_COLS), of ``like``'s dtype."""
    return numba.carray(_pointer(plan[s, WEIGHTS], like), (plan[s, W_ROWS], plan[s, W_COLS]))


@jit
def _bias(plan, s, like):
    """Step ``s``'s bias row (1, W_COLS), of ``like``'s dtype."""
    return numba.carray(_pointer(plan[s, BIAS], like), (1, plan[s, W_COLS]))


@jit
def _copy_into(flat, at, array):
    """Copy ``array`` into ``flat`` from ``at``; the index after it."""
    values = array.reshape(array.size)
    for i in range(values.size):
        flat[at + i] = values[i]
    return at + values.size


@jit
def _outer(a, b, out):
    """out = a b^T, the product of a one-column matrix and a one-row one.  a (N,), b (M,).

    The delta below a Linear of one output (a binary classifier's last layer): OpenBLAS is
    2-8x slower on it (4000 x 1 x 8: 29 against 15 us; 256 x 1 x 2048: 1.8 against 0.2 ms).
    """
    for i in range(a.size):
        value = a[i]
        for j in range(b.size):
            out[i, j] = value * b[j]


@jit
def _activation_backward(out, delta, act):
    """delta *= act'(.), in place, from the activation's output ``out`` (NONE: nothing).  (N, D)."""
    if act == SOFTMAX:
        for i in range(out.shape[0]):
            inner = out.dtype.type(0)
            for j in range(out.shape[1]):
                inner += delta[i, j] * out[i, j]
            for j in range(out.shape[1]):
                delta[i, j] = out[i, j] * (delta[i, j] - inner)
        return
    one, zero = out.dtype.type(1), out.dtype.type(0)
    o, d = out.reshape(out.size), delta.reshape(delta.size)
    if act == TANH:
        for i in range(o.size):
            d[i] *= one - o[i] * o[i]
    elif act == SIGMOID:
        for i in range(o.size):
            d[i] *= o[i] * (one - o[i])
    elif act == RELU:
        for i in range(o.size):
            d[i] *= one if o[i] > zero else zero


@jit
def _loss_backward(loss, y, yhat, eps, delta, terms):
    """The batch loss; delta = its gradient wrt yhat (PyLDL's scaling, as the Loss modules).

    y, yhat, delta (N, D); terms (at least N * D) scratch for the loss of each element, summed
    afterwards (a vectorised loop cannot also reduce in order).
    """
    rows, width = yhat.shape
    t, p, d = y.reshape(y.size), yhat.reshape(yhat.size), delta.reshape(delta.size)
    one, two = yhat.dtype.type(1), yhat.dtype.type(2)
    if loss == MSE:
        for i in range(t.size):
            diff = p[i] - t[i]
            terms[i] = diff * diff
            d[i] = two * diff
        return sum64(terms[: t.size]) / rows
    if loss == CROSS_ENTROPY:  # yhat holds logits; the loss's own kernels
        cross_entropy_backward(y, yhat, delta)
        return cross_entropy_forward(y, yhat)
    low, high = eps, one - eps
    n = yhat.dtype.type(rows)
    for i in range(t.size):
        q = low if p[i] < low else p[i]  # clips that keep NaN
        q = high if q > high else q
        terms[i] = t[i] * _math.log(q) + (one - t[i]) * _math.log(one - q)
        d[i] = (q - t[i]) / (q * (one - q) * n)
    return -sum64(terms[: t.size]) / (rows * width)


@jit
def _window(plan, s):
    """Step ``s``'s (k_size, stride, input length, channels): a Conv1D's or MaxPool1D's windows."""
    return plan[s, K_SIZE], plan[s, STRIDE], plan[s, LENGTH], plan[s, CHANNELS]


def _sgd_epoch(sequences):
    """The epoch kernel for plans with Conv1D / MaxPool1D steps (``sequences``) or without.
    ``sequences`` is a compile-time constant: Numba prunes the other kind's branches before
    typing, so a network of Linear layers compiles none of the sequence kernels."""

    @jit
    def sgd_epoch(plan, X, y, batch_size, lr, loss, eps, work, snapshot):
        """One epoch of minibatch SGD over consecutive row slices of X, y (the last may be partial).

        Per batch: forward, loss, loss backward, then from the last step down to the first step
        with parameters: activation backward, the delta for the step below (from the weights
        before the update; none below the first step with parameters), then the update without
        a gradient buffer: a Linear's ``W -= lr X_in^T delta`` and ``b -= lr ones^T delta``, a
        Conv1D's ``W -= (lr / n) cols^T delta`` (its windows kept from forward, n the batch's
        rows: PyLDL divides Conv1D's gradient by the batch) and its bias likewise, all by gemm.
        X (N, I) (sequences as (N, length * channels) rows), y (N, O) and work (``work_size``) of
        the parameters' dtype, lr and eps scalars of it (a loss code in ``loss``). Returns the
        mean of the batch losses, each as the Loss module computes it. A non-empty ``snapshot``
        first receives every parameter array, flattened one after the other (SGD's copy for its
        divergence guard, without a NumPy call per array).
        """
        if snapshot.size:
            at = 0
            for s in range(1, plan.shape[0]):
                if plan[s, WEIGHTS]:
                    at = _copy_into(snapshot, at, _weights(plan, s, work))
                if plan[s, BIAS]:
                    at = _copy_into(snapshot, at, _bias(plan, s, work))
        total_rows = X.shape[0]
        rows = min(batch_size, total_rows)
        last = plan.shape[0] - 1
        first = plan[0, WEIGHTS]
        widest = plan[0, WIDTH]
        out_width = plan[last, WIDTH]
        deltas_at = rows * plan[0, COLUMN]
        ones_at = deltas_at + 2 * rows * widest
        cols_at = ones_at + rows * max(1, plan[0, LENGTH])
        scratch_at = cols_at + rows * plan[0, COLS]
        work[ones_at:cols_at] = 1
        one, zero = work.dtype.type(1), work.dtype.type(0)  # gemm's alpha and beta in the data's dtype
        total = 0.0
        batches = 0
        for start in range(0, total_rows, batch_size):
            n = min(batch_size, total_rows - start)
            x = X[start : start + n]
            for s in range(1, last + 1):
                kind, act = plan[s, KIND], plan[s, ACT]
                at, width = rows * plan[s, COLUMN], plan[s, WIDTH]
                out = work[at : at + n * width].reshape((n, width))
                k_size, stride, length, channels = _window(plan, s)
                if sequences and kind == MAXPOOL1D:
                    positions = width // channels
                    maxpool1d_forward(
                        x.reshape((n, length, channels)),
                        k_size,
                        stride,
                        out.reshape((n, positions, channels)),
                    )
                elif kind != ACTIVATION:
                    # the product goes to the (still unused) delta block when an activation follows:
                    # in place, the activation loops would fail their overlap check and not vectorise
                    z = work[deltas_at : deltas_at + n * width].reshape((n, width)) if act != NONE else out
                    W = _weights(plan, s, work)
                    product = z
                    if sequences and kind == CONV1D:
                        positions = width // W.shape[1]
                        cols_start = cols_at + rows * plan[s, COLS]
                        cols = work[cols_start : cols_start + n * positions * W.shape[0]]
                        cols = cols.reshape((n * positions, W.shape[0]))
                        im2col(x.reshape((n, length, channels)), k_size, stride, cols)
                        product = z.reshape((n * positions, W.shape[1]))
                        gemm(False, False, one, cols, W, zero, product)
                    else:
                        gemm(False, False, one, x, W, zero, z)
                    if plan[s, BIAS]:
                        add_bias(product, _bias(plan, s, work))
                    x = z
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
                x = out
            delta_at, spare_at = deltas_at, deltas_at + rows * widest
            delta = work[delta_at : delta_at + n * out_width].reshape((n, out_width))
            total += _loss_backward(loss, y[start : start + n], x, eps, delta, work[spare_at:])
            for s in range(last, first - 1, -1):
                kind = plan[s, KIND]
                at, width = rows * plan[s, COLUMN], plan[s, WIDTH]
                _activation_backward(work[at : at + n * width].reshape((n, width)), delta, plan[s, ACT])
                if kind == ACTIVATION:
                    continue
                x = X[start : start + n]  # the step's input
                if s > 1:
                    at = rows * plan[s - 1, COLUMN]
                    x = work[at : at + n * plan[s - 1, WIDTH]].reshape((n, plan[s - 1, WIDTH]))
                below = work[spare_at : spare_at + x.size].reshape(x.shape)
                k_size, stride, length, channels = _window(plan, s)
                if sequences and kind == MAXPOOL1D:
                    maxpool1d_backward_delta(
                        x.reshape((n, length, channels)),
                        delta.reshape((n, width // channels, channels)),
                        k_size,
                        stride,
                        below.reshape((n, length, channels)),
                    )
                elif sequences and kind == CONV1D:
                    W = _weights(plan, s, work)
                    chan_out = W.shape[1]
                    positions = width // chan_out
                    windows = n * positions
                    if s > first:
                        scratch = work[scratch_at : scratch_at + windows * W.shape[0]].reshape(
                            (windows, W.shape[0])
                        )
                        conv1d_backward_delta(
                            delta.reshape((n, positions, chan_out)),
                            W.reshape((k_size, channels, chan_out)),
                            stride,
                            scratch,
                            below.reshape((n, length, channels)),
                        )
                    cols_start = cols_at + rows * plan[s, COLS]
                    cols = work[cols_start : cols_start + windows * W.shape[0]].reshape((windows, W.shape[0]))
                    rate = lr / W.dtype.type(n)
                    gemm(True, False, -rate, cols, delta.reshape((windows, chan_out)), one, W)
                    if plan[s, BIAS]:
                        ones = work[ones_at : ones_at + windows].reshape((windows, 1))
                        bias = _bias(plan, s, work)
                        gemm(True, False, -rate, ones, delta.reshape((windows, chan_out)), one, bias)
                else:
                    W = _weights(plan, s, work)
                    if s > first:
                        if width == 1:
                            _outer(delta.reshape(n), W.reshape(W.shape[0]), below)
                        else:
                            gemm(False, True, one, delta, W, zero, below)
                    gemm(True, False, -lr, x, delta, one, W)
                    if plan[s, BIAS]:
                        bias = _bias(plan, s, work)
                        if n == 1:  # a loop beats a gemm call here: 0.01 against 0.1-0.3 us
                            for j in range(width):
                                bias[0, j] -= lr * delta[0, j]
                        else:
                            gemm(
                                True,
                                False,
                                -lr,
                                work[ones_at : ones_at + n].reshape((n, 1)),
                                delta,
                                one,
                                bias,
                            )
                delta = below
                delta_at, spare_at = spare_at, delta_at
            batches += 1
        return total / batches

    return sgd_epoch


sgd_epoch = _sgd_epoch(False)
sgd_epoch_sequences = _sgd_epoch(True)
