"""Activations (``pyldl.activations``): forward and backward_delta of Tanh, Sigmoid, ReLU and
Softmax, pyldl's kernels beside the NumPy reference, on the activation shapes of the
workloads (rows x columns)."""

import pyldl
import pyldl.reference

from ._cases import DTYPES, parametrize, parse_size, random_array

NAMES = ["Tanh", "Sigmoid", "ReLU", "Softmax"]
SHAPES = [
    "4000x8",  # W2: tall and thin
    "64x128",  # W3
    "256x2048",  # W6
]


class Activations:
    params = (NAMES, SHAPES, DTYPES)
    param_names = ["activation", "shape", "dtype"]

    def setup(self, name, shape, dtype):
        shape = parse_size(shape)
        self.X = random_array(shape, dtype, seed=0)
        self.delta = random_array(shape, dtype, seed=1)
        self.numba = getattr(pyldl, name)()
        self.reference = getattr(pyldl.reference, name)()
        self.numba.forward(self.X)  # compiles
        self.numba.backward_delta(self.X, self.delta)

    def time_forward_numba(self, name, shape, dtype):
        self.numba.forward(self.X)

    def time_forward_reference(self, name, shape, dtype):
        self.reference.forward(self.X)

    def time_backward_delta_numba(self, name, shape, dtype):
        self.numba.backward_delta(self.X, self.delta)

    def time_backward_delta_reference(self, name, shape, dtype):
        self.reference.backward_delta(self.X, self.delta)


# pytest-benchmark twins: the same suite and cases; run once under --benchmark-disable.


@parametrize("method", ["forward", "backward_delta"])
@parametrize("impl", ["numba", "reference"])
@parametrize("dtype", DTYPES)
@parametrize("name", NAMES)
def test_activation(benchmark, name, dtype, impl, method):
    suite = Activations()
    suite.setup(name, "64x128", dtype)
    benchmark(getattr(suite, f"time_{method}_{impl}"), name, "64x128", dtype)
