"""Linear (``pyldl.modules``): each method of the layer, pyldl's kernels beside the NumPy
reference, at the layer sizes of the workloads (batch x in -> out)."""

import numpy as np

import pyldl
import pyldl.reference

from ._cases import DTYPES, parametrize, parse_size, random_array, seeded

SIZES = [
    "1x64->128",  # W5: one sample, call overhead
    "64x64->128",  # W3
    "64x256->100",  # W4
    "256x1024->2048",  # W6: BLAS-bound
]
METHODS = ["forward", "backward_update_gradient", "backward_delta", "update_parameters"]


class Linear:
    params = (SIZES, DTYPES)
    param_names = ["size", "dtype"]

    def setup(self, size, dtype):
        n, n_in, n_out = parse_size(size)
        self.X = random_array((n, n_in), dtype, seed=0)
        self.delta = random_array((n, n_out), dtype, seed=1)
        self.layers = {}
        for impl, namespace in (("numba", pyldl), ("reference", pyldl.reference)):
            with seeded(2):
                self.layers[impl] = namespace.Linear(n_in, n_out, dtype=np.dtype(dtype))
            for method in METHODS:  # compiles every kernel before timing
                self._call(impl, method)

    def _call(self, impl, method):
        layer = self.layers[impl]
        if method == "forward":
            return layer.forward(self.X)
        if method == "backward_update_gradient":
            return layer.backward_update_gradient(self.X, self.delta)
        if method == "backward_delta":
            return layer.backward_delta(self.X, self.delta)
        return layer.update_parameters(1e-9)

    def time_forward_numba(self, size, dtype):
        self.layers["numba"].forward(self.X)

    def time_forward_reference(self, size, dtype):
        self.layers["reference"].forward(self.X)

    def time_backward_update_gradient_numba(self, size, dtype):
        self.layers["numba"].backward_update_gradient(self.X, self.delta)

    def time_backward_update_gradient_reference(self, size, dtype):
        self.layers["reference"].backward_update_gradient(self.X, self.delta)

    def time_backward_delta_numba(self, size, dtype):
        self.layers["numba"].backward_delta(self.X, self.delta)

    def time_backward_delta_reference(self, size, dtype):
        self.layers["reference"].backward_delta(self.X, self.delta)

    def time_update_parameters_numba(self, size, dtype):
        self.layers["numba"].update_parameters(1e-9)

    def time_update_parameters_reference(self, size, dtype):
        self.layers["reference"].update_parameters(1e-9)


# pytest-benchmark twins: the same suite and cases; run once under --benchmark-disable.


@parametrize("impl", ["numba", "reference"])
@parametrize("method", METHODS)
@parametrize("dtype", DTYPES)
@parametrize("size", ["64x64->128"])
def test_linear(benchmark, size, dtype, method, impl):
    suite = Linear()
    suite.setup(size, dtype)
    benchmark(suite._call, impl, method)
