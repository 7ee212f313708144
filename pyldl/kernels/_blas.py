"""BLAS ``gemm`` callable from compiled code, through SciPy's Cython BLAS.

``gemm`` folds a product into an existing buffer (``C = alpha op(A) op(B) + beta C``), which
``np.dot`` cannot: gradients accumulate and updates subtract without a temporary.
``threads_for`` keeps that BLAS on one thread where its threads cost more than they save.
"""

import ctypes
import importlib
import importlib.util
import sys
import threading
from contextlib import contextmanager, nullcontext
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import llvmlite.binding as llvm
import numpy as np
import scipy
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload


def _cython_blas():
    """``scipy.linalg.cython_blas`` loaded from its file, without running ``scipy.linalg``'s
    ``__init__`` (a third of ``import pyldl``: 0.2-0.5 s); the plain import where no such file is."""
    name = "scipy.linalg.cython_blas"
    paths = [Path(scipy.__file__).parent / "linalg" / f"cython_blas{suffix}" for suffix in EXTENSION_SUFFIXES]
    path = next((p for p in paths if p.is_file()), None)
    if name in sys.modules or path is None:
        return importlib.import_module(name)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cython_blas = _cython_blas()
_capsule_name = ctypes.pythonapi.PyCapsule_GetName
_capsule_name.restype, _capsule_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype, _capsule_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]


def _external_gemm(name):
    """Declare SciPy's ``name`` as a symbol (not a ctypes pointer), so kernels can be cached."""
    symbol = f"pyldl_{name}"
    capsule = cython_blas.__pyx_capi__[name]
    llvm.add_symbol(symbol, _capsule_pointer(capsule, _capsule_name(capsule)))
    return types.ExternalFunction(symbol, types.void(*([types.voidptr] * 13)))


_DGEMM = _external_gemm("dgemm")
_SGEMM = _external_gemm("sgemm")


@intrinsic
def _address_of(typingctx, value):
    """A pointer to a stack copy of a scalar (Fortran BLAS takes every argument by address)."""

    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once_value(builder, args[0])
        return builder.bitcast(slot, cgutils.voidptr_t)

    return types.voidptr(value), codegen


def gemm(trans_a, trans_b, alpha, A, B, beta, C):
    """C = alpha op(A) op(B) + beta C for C-contiguous 2-D arrays (op transposes when asked).

    This body is the NumPy stand-in that runs under NUMBA_DISABLE_JIT=1; compiled code
    calls BLAS through the overload below.
    """
    product = (A.T if trans_a else A) @ (B.T if trans_b else B)
    if beta == 0:
        C[...] = alpha * product
    else:
        C[...] = alpha * product + beta * C


@overload(gemm)
def _gemm_blas(trans_a, trans_b, alpha, A, B, beta, C):
    if not isinstance(C, types.Array):
        return None  # an Optional C (a bias that may be None): Numba retries with the array
    blas = _DGEMM if C.dtype == types.float64 else _SGEMM

    def impl(trans_a, trans_b, alpha, A, B, beta, C):
        # Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T.
        if C.size == 0:
            return
        transpose, keep = np.int8(84), np.int8(78)  # "T", "N" (ord() costs 0.3 s of compilation)
        m, n = np.int32(C.shape[1]), np.int32(C.shape[0])
        k = np.int32(A.shape[0] if trans_a else A.shape[1])
        if k == 0:
            if beta == 0:
                C[...] = 0
            else:
                C *= C.dtype.type(beta)
            return
        blas(
            _address_of(transpose if trans_b else keep),
            _address_of(transpose if trans_a else keep),
            _address_of(m),
            _address_of(n),
            _address_of(k),
            _address_of(C.dtype.type(alpha)),
            B.ctypes,
            _address_of(np.int32(B.shape[1])),
            A.ctypes,
            _address_of(np.int32(A.shape[1])),
            _address_of(C.dtype.type(beta)),
            C.ctypes,
            _address_of(np.int32(C.shape[1])),
        )

    return impl


# OpenBLAS splits a product over its threads from 4 * 65536 multiply-adds. Below 2**24 (64-row
# batches: W3, W4's 64 x 256 x 100; not W6's 256 x 2048 x 2048) the threads' hand-offs cost
# more than they save on a busy 2-core machine: at a load average of 6, W3's fused epoch took
# 3.2x and W4's 3.6x (float64) and 8x (float32) as long on two threads as on one.
THREADED_FROM, ONE_THREAD_BELOW = 4 * 65536, 2**24


def _openblas_threads():
    """(set, get) of the thread count of the OpenBLAS behind SciPy's BLAS, or None (another BLAS)."""
    try:
        library = ctypes.CDLL(cython_blas.__file__)  # its symbols and those of the BLAS it links
    except OSError:
        return None
    for prefix in ("scipy_openblas", "openblas"):
        try:
            return getattr(library, f"{prefix}_set_num_threads"), getattr(
                library, f"{prefix}_get_num_threads"
            )
        except AttributeError:
            continue
    return None


_THREADS = _openblas_threads()
_lock = threading.Lock()
_users = [0, 1]  # blocks inside ``one_thread`` now, the thread count to put back after the last


@contextmanager
def one_thread():
    """SciPy's OpenBLAS on one thread inside the block (process-wide: concurrent and nested
    blocks share it; the count from before the first one is put back after the last).
    Nothing changes where that BLAS is not OpenBLAS."""
    if _THREADS is None:
        yield
        return
    set_threads, get_threads = _THREADS
    with _lock:
        if _users[0] == 0:
            _users[1] = get_threads()
            set_threads(1)
        _users[0] += 1
    try:
        yield
    finally:
        with _lock:
            _users[0] -= 1
            if _users[0] == 0:
                set_threads(_users[1])


def threads_for(multiply_adds):
    """The context to run products of up to ``multiply_adds`` in: ``one_thread`` between
    ``THREADED_FROM`` and ``ONE_THREAD_BELOW`` (where OpenBLAS is the BLAS), else nothing."""
    if THREADED_FROM <= multiply_adds < ONE_THREAD_BELOW:
        return one_thread()
    return nullcontext()
