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
wrappers call (kernels.modules, .activations, .losses), the layers' ``separately`` (their own
compiled code, not a copy optimised again inside the epoch: W8's first epoch on an empty cache
about 1.2 s shorter) and with the wrappers' argument types (so one compiled copy serves both),
and each activation's derivative from its output, which forward keeps.
The activations and the loss it calls through a table of C callbacks (``calls``), compiled per
dtype for the kinds a plan uses, which run in blocks of rows side by side when the products do
(``side_by_side``).
"""

import ctypes

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from . import _blas
from ._numba import OPTIONS, aside, call, cfunc, jit, load_slot, separately, slot
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
    bce_mean,
    bce_terms,
    cross_entropy_backward,
    cross_entropy_mean,
    cross_entropy_terms,
    mse_backward,
    mse_mean,
    mse_terms,
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
    """The step's bias row (1, w_cols) of ``like``'s dtype, or (1, 0) if it has none."""
    if step["bias"]:
        return numba.carray(_pointer(step["bias"], like), (1, step["w_cols"]))
    return like[:0].reshape((1, 0))


@jit(inline=True)
def _block(work, at, rows, width):
    """work[at:] as a (rows, width) block."""
    return work[at : at + rows * width].reshape((rows, width))


@jit(inline=True)
def _ones(work, layout, rows):
    """The first ``rows`` of the run of ones (written by the layout, read by the bias updates)."""
    return work[layout["ones"] : layout["ones"] + rows]


def _copy_from(snapshot, at, address, size):
    """snapshot[at : at + size] = the ``size`` values at ``address``; at + size."""
    at, size = int(at), int(size)
    ctypes.memmove(snapshot.ctypes.data + at * snapshot.itemsize, int(address), size * snapshot.itemsize)
    return at + size


@intrinsic
def _copy_from_compiled(typingctx, snapshot, at, address, size):
    # a memcpy: as a loop, LLVM vectorised each copy (0.3-0.4 s of the epoch's compilation)
    def codegen(context, builder, signature, args):
        snapshot, at, address, size = args
        data = context.make_array(signature.args[0])(context, builder, snapshot).data
        itemsize = context.get_abi_sizeof(data.type.pointee)
        cgutils.raw_memcpy(
            builder, builder.gep(data, [at]), builder.inttoptr(address, data.type), size, itemsize
        )
        return builder.add(at, size)

    return types.intp(snapshot, at, address, size), codegen


overload(_copy_from, jit_options=OPTIONS, inline="always")(
    lambda snapshot, at, address, size: (
        lambda snapshot, at, address, size: _copy_from_compiled(snapshot, at, address, size)
    )
)


@jit(inline=True)
def _snapshot(plan, work, snapshot):
    """Every parameter array of the plan into ``snapshot``, flattened one after the other."""
    at = 0
    for s in range(plan.size):
        step = plan[s]
        at = _copy_from(
            snapshot, at, step["weights"], step["w_rows"] * step["w_cols"] if step["weights"] else 0
        )
        at = _copy_from(snapshot, at, step["bias"], step["w_cols"] if step["bias"] else 0)


# The activations and losses are called through a table of addresses (``calls``: rows FORWARD,
# BACKWARD by activation code, LOSS by loss code) of C callbacks compiled, or loaded from the
# cache, for the codes a plan uses. The epoch holds none of their code (Numba would link every
# one into it and optimise it there again), so a fresh install compiles only the kinds its
# networks use, and a network of other kinds compiles their callbacks, not another epoch
# (W3's first epoch on an empty cache: 4.6 -> 3.3 s).
FORWARD, BACKWARD, LOSS = 0, 1, 2


def _values(pointer, cols, lo, hi):
    """The values of rows lo to hi of the rows of ``cols`` values at ``pointer``, as a 1-D array
    (without Numba, ``pointer`` is an array, seen flat)."""
    return pointer.reshape(pointer.size)[lo * cols : hi * cols]


def _rows(pointer, cols, lo, hi):
    """Rows lo to hi of the rows of ``cols`` values at ``pointer``, as a 2-D array."""
    return _values(pointer, cols, lo, hi).reshape((hi - lo, cols))


@intrinsic
def _offset(typingctx, pointer, n):
    """``pointer`` + n elements."""
    return pointer(pointer, n), lambda context, builder, signature, args: builder.gep(args[0], [args[1]])


# (carrays at an offset, not slices of carrays: a loss callback compiles in 0.15 s, not 0.25)
@overload(_values, jit_options=OPTIONS, inline="always")
def _values_compiled(pointer, cols, lo, hi):
    if isinstance(pointer, types.CPointer):  # a callback's (arrays: the tests compile them so)
        return lambda pointer, cols, lo, hi: numba.carray(_offset(pointer, lo * cols), (hi - lo) * cols)
    return _values


@overload(_rows, jit_options=OPTIONS, inline="always")
def _rows_compiled(pointer, cols, lo, hi):
    if isinstance(pointer, types.CPointer):
        return lambda pointer, cols, lo, hi: numba.carray(_offset(pointer, lo * cols), (hi - lo, cols))
    return _rows


# The callbacks, one C signature for all: (a, b, c, d, rows, cols, eps, lo, hi, total) -> double,
# on rows lo to hi of (rows, cols) blocks at a and b (and c, d). Activations: forward b = act(a);
# backward b = the delta below from the output a and the delta b above, in place; they return 0.
# Losses: a holds y, b yhat; c receives the loss's delta (PyLDL's scaling), d its terms
# (kernels.losses), eps is BCE's clipping margin (float64 of the dtype's); with ``total`` they
# return the loss, the mean of every row's terms in order. Every row is computed alone, so the
# rows may be shared out among threads in any way (``_run``) and give the same bits.
def _tanh_forward(a, b, c, d, rows, cols, eps, lo, hi, total):
    tanh_forward(_values(a, cols, lo, hi), _values(b, cols, lo, hi))
    return 0.0


def _sigmoid_forward(a, b, c, d, rows, cols, eps, lo, hi, total):
    sigmoid_forward(_values(a, cols, lo, hi), _values(b, cols, lo, hi))
    return 0.0


def _relu_forward(a, b, c, d, rows, cols, eps, lo, hi, total):
    relu_forward(_values(a, cols, lo, hi), _values(b, cols, lo, hi))
    return 0.0


def _softmax_forward(a, b, c, d, rows, cols, eps, lo, hi, total):
    softmax_forward(_rows(a, cols, lo, hi), _rows(b, cols, lo, hi))
    return 0.0


@jit(inline=True)
def _in_place(derivative, out, delta):
    """delta = derivative(out, delta), value by value, in place: a kernel taking delta twice, as
    its input and its output, would not vectorise (LLVM's overlap check fails on exactly
    overlapping arrays)."""
    for i in range(delta.size):
        delta[i] = derivative(out[i], delta[i])


def _tanh_backward(a, b, c, d, rows, cols, eps, lo, hi, total):
    _in_place(tanh_backward, _values(a, cols, lo, hi), _values(b, cols, lo, hi))
    return 0.0


def _sigmoid_backward(a, b, c, d, rows, cols, eps, lo, hi, total):
    _in_place(sigmoid_backward, _values(a, cols, lo, hi), _values(b, cols, lo, hi))
    return 0.0


def _relu_backward(a, b, c, d, rows, cols, eps, lo, hi, total):
    _in_place(relu_backward, _values(a, cols, lo, hi), _values(b, cols, lo, hi))
    return 0.0


def _softmax_backward(a, b, c, d, rows, cols, eps, lo, hi, total):
    delta = _rows(b, cols, lo, hi)
    softmax_jacobian(_rows(a, cols, lo, hi), delta, delta)
    return 0.0


# (2-D row runs, as the Loss modules pass: both compile each kernel once)
def _mse(a, b, c, d, rows, cols, eps, lo, hi, total):
    y, yhat = _rows(a, cols, lo, hi), _rows(b, cols, lo, hi)
    mse_backward(y, yhat, _rows(c, cols, lo, hi))
    mse_terms(y, yhat, _values(d, cols, lo, hi))
    return mse_mean(_values(d, cols, 0, rows), rows, cols) if total else 0.0


def _bce(a, b, c, d, rows, cols, eps, lo, hi, total):
    y, yhat = _rows(a, cols, lo, hi), _rows(b, cols, lo, hi)
    margin = y.dtype.type(eps)
    bce_backward(y, yhat, margin, rows, _rows(c, cols, lo, hi))
    bce_terms(y, yhat, margin, _values(d, cols, lo, hi))
    return bce_mean(_values(d, cols, 0, rows), rows, cols) if total else 0.0


def _cross_entropy(a, b, c, d, rows, cols, eps, lo, hi, total):  # b holds logits; a term per row
    y, yhat = _rows(a, cols, lo, hi), _rows(b, cols, lo, hi)
    cross_entropy_backward(y, yhat, _rows(c, cols, lo, hi))
    cross_entropy_terms(y, yhat, _values(d, 1, lo, hi))
    return cross_entropy_mean(_values(d, 1, 0, rows), rows, cols) if total else 0.0


_CALLBACKS = {
    FORWARD: {TANH: _tanh_forward, SIGMOID: _sigmoid_forward, RELU: _relu_forward, SOFTMAX: _softmax_forward},
    BACKWARD: {
        TANH: _tanh_backward,
        SIGMOID: _sigmoid_backward,
        RELU: _relu_backward,
        SOFTMAX: _softmax_backward,
    },
    LOSS: {MSE: _mse, BCE: _bce, CROSS_ENTROPY: _cross_entropy},
}
_COMPILED = {}  # (row, code, dtype): the compiled callback (kept alive: the table holds its address)


def no_calls():
    """A table of callbacks with none in it (zeros)."""
    return np.zeros((3, 1 + max(max(_CALLBACKS[FORWARD]), max(_CALLBACKS[LOSS]))), np.intp)


def calls(dtype, activations, loss):
    """The table of the callbacks of the activation codes ``activations`` and of ``loss`` in
    ``dtype`` (each compiled or loaded from the cache once per process; zeros without Numba)."""
    table = no_calls()
    if numba.config.DISABLE_JIT:
        return table
    dtype = np.dtype(dtype)
    pointer = types.CPointer(numba.from_dtype(dtype))
    signature = types.float64(*[pointer] * 4, *[types.intp] * 2, types.float64, *[types.intp] * 3)
    wanted = [(row, act) for act in activations for row in (FORWARD, BACKWARD)] + [(LOSS, loss)]
    for row, code in wanted:
        key = row, code, dtype
        if key not in _COMPILED:  # setdefault: where two threads compiled it, both use one
            _COMPILED.setdefault(key, cfunc(signature)(_CALLBACKS[row][code]))
        table[row, code] = _COMPILED[key].address
    return table


def calls_aside(dtype, activations, loss):
    """A context in which ``calls(dtype, activations, loss)`` compiles (or loads) its callbacks
    in a second process, into the cache, which this one loads them from afterwards."""
    names = ", ".join(map(repr, (np.dtype(dtype).name, [int(a) for a in activations], int(loss))))
    return aside(f"from pyldl.kernels.optimizers import calls; calls({names})")


# With threads > 1, a callback on at least 2 * BLOCK_VALUES values runs in blocks of rows side
# by side (one block per BLOCK_VALUES, at most one per thread), through a parallel function of
# its own, compiled (or loaded from the cache) only once a product first runs on more than one
# thread (``side_by_side``) and reached through a slot (0 until then: the rows in one call).
# (W4's 64 x 256 BCE, two threads: 37 -> 21 us; 64 x 100: 15 -> 9; 32 x 64: 4.7 -> 4.2.)
BLOCK_VALUES = 4096
_SYMBOL = "pyldl_callbacks_side_by_side"
_SLOT = slot(_SYMBOL)
_SIDE_BY_SIDE = {}  # "callbacks": the compiled function (kept alive: the slot holds its address)


def _side_by_side(address, threads, a, b, c, d, rows, cols, eps):
    """The callback at ``address`` on the rows of the blocks at addresses a, b, c, d in blocks
    side by side on up to ``threads`` threads, then its total alone (the loss, in order)."""
    most = rows * cols // BLOCK_VALUES  # conditionals, not min: 0.08 s less compilation
    blocks = threads if threads < most else most
    blocks = blocks if blocks < rows else rows
    if blocks < 2:
        return call(address, np.float64, a, b, c, d, rows, cols, eps, 0, rows, 1)
    for i in numba.prange(blocks):
        call(
            address, np.float64, a, b, c, d, rows, cols, eps, i * rows // blocks, (i + 1) * rows // blocks, 0
        )
    return call(address, np.float64, a, b, c, d, rows, cols, eps, 0, 0, 1)


def side_by_side(dtype):
    """Make products of ``dtype`` and the callbacks with threads > 1 run side by side
    (compiling or loading the parallel functions, once per process); a no-op without Numba."""
    _blas.side_by_side(dtype)
    if _SIDE_BY_SIDE or numba.config.DISABLE_JIT:
        return
    compiled = cfunc(types.float64(*[types.intp] * 8, types.float64), parallel=True)(_side_by_side)
    # setdefault: where two threads compiled it, the slot holds the one that stays alive
    _SLOT.value = _SIDE_BY_SIDE.setdefault("callbacks", compiled).address


@intrinsic
def _run(typingctx, address, threads, a, b, c, d, rows, cols, eps):
    """The callback at ``address`` on every row of the (rows, cols) blocks a, b, c, d (arrays or
    0), side by side on up to ``threads`` threads once ``side_by_side`` ran; its total (a
    double). Written as LLVM IR: as a compiled helper, its branch and two calls cost the
    epoch 0.15 s of compilation."""
    blocks = (a, b, c, d)

    def codegen(context, builder, signature, args):
        address, threads, *values, rows, cols, eps = args
        pointers = [
            context.make_array(t)(context, builder, v).data if isinstance(t, types.Array) else v
            for t, v in zip(blocks, values, strict=True)
        ]
        word, double = ir.IntType(64), ir.DoubleType()
        runner = load_slot(builder, _SYMBOL)
        shared = builder.and_(
            builder.icmp_signed(">", threads, ir.Constant(word, 1)),
            builder.icmp_unsigned("!=", runner, ir.Constant(word, 0)),
        )
        with builder.if_else(shared) as (side_by_side, alone):
            with side_by_side:
                arguments = [address, threads, *pointers, rows, cols, eps]
                function = ir.FunctionType(double, [v.type for v in arguments])
                together = builder.call(builder.inttoptr(runner, function.as_pointer()), arguments)
                shared_block = builder.block
            with alone:
                arguments = [*pointers, rows, cols, eps, ir.Constant(word, 0), rows, ir.Constant(word, 1)]
                function = ir.FunctionType(double, [v.type for v in arguments])
                single = builder.call(builder.inttoptr(address, function.as_pointer()), arguments)
                alone_block = builder.block
        total = builder.phi(double)
        total.add_incoming(together, shared_block)
        total.add_incoming(single, alone_block)
        return total

    numbers = all(isinstance(t, types.Integer) for t in (address, threads, rows, cols))
    if numbers and eps == types.float64 and all(isinstance(t, (types.Array, types.Integer)) for t in blocks):
        return types.float64(address, threads, a, b, c, d, rows, cols, eps), codegen


def _activate(calls, row, act, a, b, threads):
    """b = the activation ``act`` of a (FORWARD), or the delta below it from its output a and
    the delta b above (BACKWARD, in place); NONE: nothing.  a, b (N, D) C-contiguous."""
    if act != NONE:
        _CALLBACKS[row][act](a, b, None, None, a.shape[0], a.shape[1], 0.0, 0, a.shape[0], 0)


def _loss(calls, loss, y, yhat, eps, delta, terms, threads):
    """The batch loss as the Loss module computes it (float64); delta = its backward.  y, yhat,
    delta (N, D) C-contiguous, terms (>= N D,) scratch."""
    rows, cols = y.shape
    return _CALLBACKS[LOSS][loss](y, yhat, delta, terms, rows, cols, eps, 0, rows, 1)


@overload(_activate, jit_options=OPTIONS, inline="always")
def _activate_compiled(calls, row, act, a, b, threads):
    def impl(calls, row, act, a, b, threads):
        if act != NONE:
            rows, cols, none = np.intp(a.shape[0]), np.intp(a.shape[1]), np.intp(0)
            _run(calls[row, act], np.intp(threads), a, b, none, none, rows, cols, 0.0)

    return impl


@overload(_loss, jit_options=OPTIONS, inline="always")
def _loss_compiled(calls, loss, y, yhat, eps, delta, terms, threads):
    def impl(calls, loss, y, yhat, eps, delta, terms, threads):
        rows, cols, margin = np.intp(y.shape[0]), np.intp(y.shape[1]), np.float64(eps)
        return _run(calls[LOSS, loss], np.intp(threads), y, yhat, delta, terms, rows, cols, margin)

    return impl


# One forward and one backward helper per step kind, on the kind's own kernels. Forward: z =
# the step's result for its input x (before its activation). Backward: the step's update from
# its input x and the delta at its output and, where ``below`` is not empty, the delta below
# it, from the weights before the update.  x, z, delta, below (n, _).


@jit(inline=True)
def _linear_forward(step, x, z, work, threads):
    separately(linear_forward, x, _weights(step, work), _bias(step, work), z, threads)


@jit(inline=True)
def _linear_backward(step, x, delta, below, lr, work, layout, threads):
    W = _weights(step, work)
    if below.size:
        separately(linear_backward_delta, delta, W, below, threads)
    separately(sgd_update, x, delta, lr, _ones(work, layout, x.shape[0]), W, _bias(step, work), threads)


@jit(inline=True)
def _conv1d_forward(step, x, z, work, threads):
    n, positions = x.shape[0], step["width"] // step["w_cols"]
    separately(
        conv1d_forward,
        x.reshape((n, step["length"], step["channels"])),
        _weights(step, work).reshape((step["k_size"], step["channels"], step["w_cols"])),
        _bias(step, work),
        step["stride"],
        _block(work, step["cols"], n * positions, step["w_rows"]),
        z.reshape((n, positions, step["w_cols"])),
        threads,
    )


@jit(inline=True)
def _conv1d_backward(step, x, delta, below, lr, work, layout, threads):
    W = _weights(step, work)
    n, positions = x.shape[0], step["width"] // step["w_cols"]
    if below.size:
        separately(
            conv1d_backward_delta,
            delta.reshape((n, positions, step["w_cols"])),
            W.reshape((step["k_size"], step["channels"], step["w_cols"])),
            step["stride"],
            _block(work, layout["scratch"], n * positions, step["w_rows"]),
            below.reshape((n, step["length"], step["channels"])),
            threads,
        )
    cols = _block(work, step["cols"], n * positions, step["w_rows"])
    rate = lr / work.dtype.type(n)  # PyLDL divides Conv1D's gradient by the batch's rows
    separately(
        sgd_update,
        cols,
        delta.reshape((n * positions, step["w_cols"])),
        rate,
        _ones(work, layout, n * positions),
        W,
        _bias(step, work),
        threads,
    )


@jit(inline=True)
def _maxpool1d_forward(step, x, z, work):
    n = x.shape[0]
    separately(
        maxpool1d_forward,
        x.reshape((n, step["length"], step["channels"])),
        step["k_size"],
        step["stride"],
        z.reshape((n, step["width"] // step["channels"], step["channels"])),
    )


@jit(inline=True)
def _maxpool1d_backward(step, x, delta, below, lr, work, layout):
    n = x.shape[0]
    separately(
        maxpool1d_backward_delta,
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
    def sgd_epoch(plan, layout, calls, X, y, batch_size, lr, loss, eps, work, snapshot, threads):
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
                _activate(calls, FORWARD, step["act"], x, out, threads)
                x = out
            delta = _block(work, layout["deltas"], n, plan[last]["width"])
            terms = work[layout["spare"] : layout["spare"] + n * plan[last]["width"]]  # unused yet
            total += _loss(calls, loss, y[start : start + n], x, eps, delta, terms, threads)
            delta_at, spare_at = layout["deltas"], layout["spare"]
            for s in range(last, layout["first"] - 1, -1):
                step = plan[s]
                out = _block(work, step["out"], n, step["width"])
                _activate(calls, BACKWARD, step["act"], out, delta, threads)
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
