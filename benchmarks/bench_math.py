"""exp, sigmoid and tanh of ``pyldl.kernels._math`` in element-wise loops beside NumPy's
ufuncs, on 1e5 elements (time / 1e5 = time per element): pytest-benchmark tests and their
asv twin. Imports no pytest (asv's environments have none)."""

import numba
import numpy as np

from pyldl.kernels import _math
from pyldl.kernels._numba import OPTIONS

N = 100_000
NAMES = ["exp", "sigmoid", "tanh"]
DTYPES = ["float64", "float32"]

jit = numba.njit(**OPTIONS)  # not cached: Numba's cache would not notice changes to _math.py


@jit
def _exp(x, out):
    for i in range(x.size):
        out[i] = _math.exp(x[i])


@jit
def _sigmoid(x, out):
    for i in range(x.size):
        out[i] = _math.sigmoid(x[i])


@jit
def _tanh(x, out):
    for i in range(x.size):
        out[i] = _math.tanh(x[i])


def _numpy_sigmoid(x, out):
    np.exp(np.negative(x, out=out), out=out)
    np.divide(1, np.add(out, 1, out=out), out=out)


PYLDL = {"exp": _exp, "sigmoid": _sigmoid, "tanh": _tanh}
NUMPY = {
    "exp": lambda x, out: np.exp(x, out=out),
    "sigmoid": _numpy_sigmoid,
    "tanh": lambda x, out: np.tanh(x, out=out),
}


def _arrays(dtype):
    x = np.random.default_rng(0).uniform(-10, 10, N).astype(dtype)
    return x, np.empty_like(x)


def pytest_generate_tests(metafunc):
    if "name" in metafunc.fixturenames:
        metafunc.parametrize("dtype", DTYPES)
        metafunc.parametrize("name", NAMES)


def test_pyldl(benchmark, name, dtype):
    x, out = _arrays(dtype)
    PYLDL[name](x, out)  # compiles
    benchmark(PYLDL[name], x, out)
    expected = np.empty_like(x)
    NUMPY[name](x, expected)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_numpy(benchmark, name, dtype):
    x, out = _arrays(dtype)
    benchmark(NUMPY[name], x, out)


class Math:
    params = (NAMES, DTYPES)
    param_names = ["function", "dtype"]

    def setup(self, name, dtype):
        self.x, self.out = _arrays(dtype)
        PYLDL[name](self.x, self.out)  # compiles

    def time_pyldl(self, name, dtype):
        PYLDL[name](self.x, self.out)

    def time_numpy(self, name, dtype):
        NUMPY[name](self.x, self.out)
