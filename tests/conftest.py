"""Shared test settings: the one table of tolerances (SPEC.md) and a seeded RNG."""

# PyLDL draws from NumPy's global RNG, so these tests do too.
# ruff: noqa: NPY002

import contextlib
import os
import re
import warnings

import numba
import numpy as np
import pytest

# The tests expect float64 by default, in this process and in the subprocesses they start.
os.environ.pop("PYLDL_DTYPE", None)

import pyldl  # noqa: E402
import pyldl.reference  # noqa: E402
from pyldl.kernels._numba import CACHE, OPTIONS  # noqa: E402
from pyldl.workloads import seeded  # noqa: E402, F401  (tests import it from here)

# comparison -> dtype -> (rtol, atol)
TOLERANCES = {
    "op": {np.float64: (1e-12, 1e-14), np.float32: (1e-5, 1e-6)},
    "run": {np.float64: (1e-9, 1e-12), np.float32: (1e-4, 1e-5)},
    "gradcheck": {np.float64: (1e-6, 1e-8)},
}
GRADCHECK_EPS = 1e-6
DTYPES = [np.float64, np.float32]


def assert_close(actual, expected, kind, dtype):
    """Shape and dtype first, then values, within TOLERANCES[kind][dtype]."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != {expected.dtype}"
    rtol, atol = TOLERANCES[kind][np.dtype(dtype).type]
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


@pytest.fixture(autouse=True)
def float64_by_default():
    """A test that changes pyldl's default dtype leaves float64 behind for the next one."""
    yield
    pyldl.set_default_dtype(np.float64)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(params=DTYPES, ids=lambda d: np.dtype(d).name)
def dtype(request):
    return request.param


@pytest.fixture(params=[pyldl, pyldl.reference], ids=["pyldl", "reference"])
def namespace(request):
    """The compiled classes and the plain-NumPy reference: checks that both must pass."""
    return request.param


def shape_id(shape):
    """A readable test id for a shape: (7, 3) -> "7x3", (5,) -> "5"."""
    return "x".join(str(n) for n in shape) if shape else "scalar"


def numerical_gradient(f, x, eps=GRADCHECK_EPS):
    """Central differences of the scalar ``f()`` with respect to every element of ``x``.

    ``x`` is a C-contiguous float64 array that ``f`` reads (an input it closes over, or a
    parameter array held by a module); it is perturbed in place and restored.
    """
    assert x.dtype == np.float64 and x.flags.c_contiguous
    flat = x.reshape(-1)
    grad = np.zeros(x.size)
    for i in range(x.size):
        saved = flat[i]
        flat[i] = saved + eps
        up = f()
        flat[i] = saved - eps
        down = f()
        flat[i] = saved
        grad[i] = (up - down) / (2 * eps)
    return grad.reshape(x.shape)


def assert_gradcheck(analytic, f, x):
    """``analytic`` is the gradient of the scalar ``f()`` with respect to ``x`` (float64)."""
    assert_close(analytic, numerical_gradient(f, x), "gradcheck", np.float64)


@contextlib.contextmanager
def no_warnings():
    """Any warning in the block is an error.

    Under ``NUMBA_DISABLE_JIT=1`` (the coverage run) kernels run as Python on NumPy scalars,
    which warn where compiled code is silent (``inf - inf``): RuntimeWarning is ignored there.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if numba.config.DISABLE_JIT:
            warnings.simplefilter("ignore", RuntimeWarning)
        yield


def mlp(ns, dtype=np.float64):
    """A small network with every activation, a Linear without bias, Softmax last."""
    return ns.Sequential(
        ns.Linear(4, 6, dtype=dtype),
        ns.Tanh(),
        ns.Linear(6, 5, dtype=dtype),
        ns.Sigmoid(),
        ns.Linear(5, 3, bias=False, dtype=dtype),
        ns.ReLU(),
        ns.Linear(3, 3, dtype=dtype),
        ns.Softmax(),
    )


# --------------------------------------------------------- float64 in float32 kernels (LLVM IR)

_FLOAT64_OPS = ("fadd", "fsub", "fmul", "fdiv", "frem", "fneg", "fcmp", "fpext", "fptrunc", "call")
_INSTRUCTION = re.compile(r"^\s*(?:(%[-\w.$]+|%\"[^\"]*\") = )?(?:tail |musttail |notail )?(\w+)\b(.*)$")
_VALUE = re.compile(r"%[-\w.$]+|%\"[^\"]*\"")


compiled_only = pytest.mark.skipif(numba.config.DISABLE_JIT, reason="inspects the compiled code")


def float64_operations(kernel, *args):
    """The float64 operations in the compiled code of ``kernel`` for ``args``, as
    ``{opcode: [IR lines]}``: arithmetic, comparisons and calls on doubles, and conversions
    between float and double (``fpext`` widens a float32 value, ``fptrunc`` narrows a double
    result). Only the native functions count (not Numba's CPython wrapper, which boxes
    arguments and results). Doubles made from integers and used only with each other are
    integer work that Numba does in float64 (a comparison of a signed with an unsigned
    integer, the digit count of an error message): not counted.

    Cached code cannot be inspected: with pyldl's disk cache on, the kernel is compiled afresh
    without it (its callees, cached or not, are linked into the same module).
    """
    compiled = numba.njit(**OPTIONS)(kernel.py_func) if CACHE else kernel
    compiled(*args)
    signature = tuple(numba.typeof(a) for a in args)
    instructions, native = [], False
    for line in compiled.inspect_llvm(signature).splitlines():
        if line.startswith("define "):
            native = "@_ZN7cpython" not in line and "@cfunc." not in line
            continue
        match = _INSTRUCTION.match(line)
        if native and match and "double" in line:
            result, opcode, rest = match.groups()
            instructions.append((result, opcode, set(_VALUE.findall(rest)), line.strip()))
    from_ints, grown = set(), True
    while grown:  # to a fixed point: blocks need not come in the order of their values
        size = len(from_ints)
        for result, opcode, operands, _ in instructions:
            if result and (
                opcode in ("sitofp", "uitofp") or (opcode != "fpext" and operands and operands <= from_ints)
            ):
                from_ints.add(result)  # an integer, or made from integers only
        grown = len(from_ints) > size
    found = {}
    for result, opcode, operands, line in instructions:
        made_from_ints = result in from_ints or (opcode == "fcmp" and operands <= from_ints)
        if opcode in _FLOAT64_OPS and not made_from_ints:
            found.setdefault(opcode, []).append(line)
    return found


def assert_float32_stays_float32(kernel, args, allowed=()):
    """``kernel``'s float32 specialisation for ``args`` does no float64 work but the opcodes in
    ``allowed`` (a deliberate float64 accumulator)."""
    found = float64_operations(kernel, *args)
    extra = {opcode: lines[:3] for opcode, lines in found.items() if opcode not in allowed}
    assert not extra, f"{kernel.__name__} computes in float64 on float32 data: {extra}"
