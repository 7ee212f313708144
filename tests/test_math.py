"""pyldl.kernels._math (exp, sigmoid, tanh, log) against NumPy, in float64 and float32."""

import re

import numba
import numpy as np
import pytest
from conftest import float64_operations
from hypothesis import given, settings
from hypothesis import strategies as st
from numba.np.numpy_support import as_dtype

from pyldl.kernels import _math
from pyldl.kernels._numba import OPTIONS

# pyldl's options without its disk cache: Numba's cache would not notice changes to _math.py
jit = numba.njit(**OPTIONS)


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


@jit
def _log(x, out):
    for i in range(x.size):
        out[i] = _math.log(x[i])


@jit
def _scalar(x):
    return _math.exp(x), _math.sigmoid(x), _math.tanh(x)


KERNELS = {"exp": _exp, "sigmoid": _sigmoid, "tanh": _tanh}
NUMPY = {"exp": np.exp, "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "tanh": np.tanh}
DTYPES = [np.float64, np.float32]
# The references are NumPy's in wider precision (long double where it is wider than double,
# as on x86-64 Linux), rounded: NumPy's float64 sigmoid formula is itself off by 2.4 ulp.
WIDER = {np.float64: np.longdouble, np.float32: np.float64}
EXTENDED = np.finfo(np.longdouble).eps < np.finfo(np.float64).eps
RTOL = {np.float64: 4e-16 if EXTENDED else 6e-16, np.float32: 3e-7}
THIN = 100 if numba.config.DISABLE_JIT else 1  # pure Python takes ~25 us an element


def reference(name, x):
    with np.errstate(all="ignore"):
        return NUMPY[name](x.astype(WIDER[x.dtype.type])).astype(x.dtype)


def check(name, x):
    """Relative error <= RTOL; below the normal range, one subnormal step (exp, tanh), and
    flushed to 0 (sigmoid: 1 / (1 + e**-x) for x < -709.78 (float32: -88.72))."""
    out = np.empty_like(x)
    KERNELS[name](x, out)
    ref = reference(name, x)
    info = np.finfo(x.dtype)
    atol = info.tiny if name == "sigmoid" else info.smallest_subnormal
    with np.errstate(all="ignore"):
        err = np.abs(out - ref)
        ok = (
            (out == ref)
            | np.isnan(out) & np.isnan(ref)
            | np.isfinite(ref) & (err <= np.maximum(RTOL[x.dtype.type] * np.abs(ref), atol))
        )
    assert ok.all(), f"{name}{x[~ok][:5]} = {out[~ok][:5]}, not {ref[~ok][:5]}"


def grid(dtype):
    info = np.finfo(dtype)
    tiny = np.geomspace(info.smallest_subnormal, 1, 20001)
    # where exp overflows (709.78 / 88.72) and leaves the normal and subnormal ranges, where
    # 1 + e**x starts to round (36.74), tanh's formula changes (0.625) and it reaches 1
    edges = [709.78, 88.72, -708.4, -745.13, -87.34, -103.97, 36.74, 0.625, 19.06, 9.01]
    near = np.concatenate([np.linspace(e - 0.01, e + 0.01, 2001) for e in edges])
    dense = np.concatenate([np.linspace(-800, 800, 200001), tiny, -tiny, near, -near])[::THIN]
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, info.max, -info.max, 1e-300, -1e-30]
    return np.concatenate([dense, special]).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(KERNELS))
def test_grid(name, dtype):
    check(name, grid(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values(dtype):
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1000, -1000], dtype)
    for name, want in [
        ("exp", [np.inf, 0, np.nan, 1, 1, np.inf, 0]),
        ("sigmoid", [1, 0, np.nan, 0.5, 0.5, 1, 0]),
        ("tanh", [1, -1, np.nan, 0.0, -0.0, 1, -1]),
    ]:
        out = np.empty_like(x)
        KERNELS[name](x, out)
        np.testing.assert_array_equal(out, np.array(want, dtype), strict=True)
        assert np.signbit(out[4]) == (name == "tanh")  # tanh(-0.0) is -0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_tiny_tanh_is_x(dtype):
    x = np.geomspace(np.finfo(dtype).smallest_subnormal, 1e-9, 1001)[::THIN]
    x = np.concatenate([x, -x]).astype(dtype)
    out = np.empty_like(x)
    _tanh(x, out)
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_scalar_result_dtype(dtype):
    x = dtype(0.5)
    results = _scalar(x)
    if numba.config.DISABLE_JIT:
        types = [type(r) for r in results]
    else:
        signature = _scalar.overloads[(numba.typeof(x),)].signature
        types = [as_dtype(t).type for t in signature.return_type]
    assert types == [dtype] * 3


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="only the compiled log is pyldl's")
@pytest.mark.parametrize("dtype", DTYPES)
def test_log_of_probabilities(dtype):
    """The log of BCE's clipped probabilities within 1 ulp; NaN stays NaN."""
    eps = 1e-12 if dtype is np.float64 else 1e-7
    p = np.concatenate([np.geomspace(eps, 1, 20001), np.linspace(0.5, 1, 20001)]).astype(dtype)
    x = np.concatenate([p, (1 - p)[p < 1], [np.nan]]).astype(dtype)
    out = np.empty_like(x)
    _log(x, out)
    assert np.isnan(out[-1])
    exact = np.log(x[:-1].astype(np.longdouble))
    ulps = np.abs(out[:-1] - exact) / np.spacing(np.abs(exact).astype(dtype))
    assert ulps.max() <= 1.0


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="inspects the compiled code")
@pytest.mark.parametrize("name", [*KERNELS, "log"])
def test_vectorised_and_float32_stays_float32(name):
    kernel = KERNELS.get(name, _log)
    for dtype, ty in [(np.float64, "double"), (np.float32, "float")]:
        x = np.ones(8, dtype)
        kernel(x, np.empty_like(x))
        llvm = kernel.inspect_llvm((numba.typeof(x),) * 2)
        assert re.search(rf"<\d+ x {ty}>", llvm), "the loop did not vectorise"
        if dtype == np.float32:
            assert "double" not in llvm


@jit
def _sigmoid_backward_with_a_literal(x, delta, out):
    for i in range(x.size):
        s = _math.sigmoid(x[i])
        out[i] = delta[i] * s * (1.0 - s)  # the float literal widens s: float64 arithmetic


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="inspects the compiled code")
def test_float64_operations_finds_a_float_literal():
    """The check the kernel files' float32 tests use catches a float literal in a kernel."""
    x = np.ones(8, np.float32)
    found = float64_operations(_sigmoid_backward_with_a_literal, x, x, np.empty_like(x))
    assert {"fpext", "fsub", "fmul", "fptrunc"} <= set(found), found
    assert not float64_operations(_sigmoid, x, np.empty_like(x))


@settings(deadline=None)
@given(st.lists(st.floats(width=64), min_size=1, max_size=50))
def test_random_float64(values):
    for name in KERNELS:
        check(name, np.array(values, np.float64))


@settings(deadline=None)
@given(st.lists(st.floats(width=32), min_size=1, max_size=50))
def test_random_float32(values):
    for name in KERNELS:
        check(name, np.array(values, np.float32))
