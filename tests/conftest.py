"""Shared test settings: the one table of tolerances (SPEC.md) and a seeded RNG."""

# PyLDL draws from NumPy's global RNG, so these tests do too.
# ruff: noqa: NPY002

import contextlib
import warnings

import numba
import numpy as np
import pytest

import pyldl
import pyldl.reference
from pyldl.workloads import seeded  # noqa: F401  (tests import it from here)

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
