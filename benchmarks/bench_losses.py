"""Losses (``pyldl.losses``): forward and backward of MSELoss and BCELoss, pyldl's kernels
beside the NumPy reference, on the output shapes of the workloads (rows x columns)."""

import pyldl
import pyldl.reference

from ._cases import DTYPES, parametrize, parse_size, random_array

NAMES = ["MSELoss", "BCELoss"]
SHAPES = [
    "4000x1",  # W2
    "64x10",  # W3
    "64x256",  # W4
]


class Losses:
    params = (NAMES, SHAPES, DTYPES)
    param_names = ["loss", "shape", "dtype"]

    def setup(self, name, shape, dtype):
        shape = parse_size(shape)
        self.y = random_array(shape, dtype, seed=0, low=0.0)
        self.yhat = random_array(shape, dtype, seed=1, low=0.01)  # probabilities, for BCE
        self.numba = getattr(pyldl, name)()
        self.reference = getattr(pyldl.reference, name)()
        self.numba.forward(self.y, self.yhat)  # compiles
        self.numba.backward(self.y, self.yhat)

    def time_forward_numba(self, name, shape, dtype):
        self.numba.forward(self.y, self.yhat)

    def time_forward_reference(self, name, shape, dtype):
        self.reference.forward(self.y, self.yhat)

    def time_backward_numba(self, name, shape, dtype):
        self.numba.backward(self.y, self.yhat)

    def time_backward_reference(self, name, shape, dtype):
        self.reference.backward(self.y, self.yhat)


# pytest-benchmark twins: the same suite and cases; run once under --benchmark-disable.


@parametrize("method", ["forward", "backward"])
@parametrize("impl", ["numba", "reference"])
@parametrize("dtype", DTYPES)
@parametrize("name", NAMES)
def test_loss(benchmark, name, dtype, impl, method):
    suite = Losses()
    suite.setup(name, "64x10", dtype)
    benchmark(getattr(suite, f"time_{method}_{impl}"), name, "64x10", dtype)
