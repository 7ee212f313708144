"""Shared test settings: the one table of tolerances (SPEC.md) and a seeded RNG."""

import numpy as np
import pytest

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
