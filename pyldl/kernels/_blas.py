"""BLAS ``gemm`` callable from compiled code, through SciPy's Cython BLAS.

``gemm`` folds a product into an existing buffer (``C = alpha op(A) op(B) + beta C``), which
``np.dot`` cannot: gradients accumulate and updates subtract without a temporary.
``one_thread`` keeps that BLAS on one thread: the products' threads are pyldl's own
(``gemm``'s panels, ``pyldl.threads``).
"""

import ctypes
import importlib
import importlib.util
import sys
import threading
from contextlib import contextmanager
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import llvmlite.binding as llvm
import numba
import numpy as np
import scipy
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload
from numba.np.ufunc.parallel import _launch_threads

from ._numba import OPTIONS, jit


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


@intrinsic
def _voidptr(typingctx, address):
    """An integer address as a pointer."""
    if isinstance(address, types.Integer):
        return types.voidptr(address), lambda context, builder, sig, args: builder.inttoptr(
            args[0], cgutils.voidptr_t
        )


# A product of at least 4 * PANEL_WORK multiply-adds is cut into panels of C's longer side
# (rows, or columns: the operand each panel packs again is then the smaller one): 2 from
# 4 * PANEL_WORK, twice as many for every 4 times more work (each panel's work grows too: the
# panels' own cost, a call and a packing each, stays small next to it), at most MAX_PANELS,
# each at least 8 wide. Never as many as there are threads: the panels, so every value and the
# order of its sums, depend on the shapes alone, whether they run one after another or side by
# side. (W4's 64 x 256 x 100: 2 panels, one thread 0.053 s an epoch, two 0.034 s; cut into 4,
# 0.060 and 0.040.)
PANEL_WORK, MAX_PANELS = 2**17, 16


@jit(inline=True)
def panels(m, n, k):
    """How many panels C (m, n) = op(A) (m, k) op(B) (k, n) is computed in."""
    most, work, count = min(MAX_PANELS, max(m, n) // 8), m * n * k // PANEL_WORK, 1
    while work >= 4 and count * 2 <= most:
        count *= 2
        work //= 4
    return count


def gemm(trans_a, trans_b, alpha, A, B, beta, C, threads):
    """C = alpha op(A) op(B) + beta C for 2-D arrays with contiguous rows (op transposes when
    asked). ``threads`` >= 1: in ``panels`` fixed by the shapes, run by up to that many threads,
    the BLAS on one thread (``one_thread``): the result is the same whatever ``threads`` is.
    0: one BLAS call, on as many threads as that BLAS has (the Module wrappers': the same
    numbers as NumPy's product, whose OpenBLAS picks its kernel by the whole shape).

    This body is the NumPy stand-in that runs under NUMBA_DISABLE_JIT=1; compiled code
    calls BLAS through the overload below.
    """
    product = (A.T if trans_a else A) @ (B.T if trans_b else B)
    if beta == 0:
        C[...] = alpha * product
    else:
        C[...] = alpha * product + beta * C


def _fortran_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Fortran BLAS's gemm of alpha's dtype, on addresses (the arguments as BLAS names them)."""


@overload(_fortran_gemm, jit_options=OPTIONS)
def _fortran_gemm_blas(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    blas = _DGEMM if alpha == types.float64 else _SGEMM

    def impl(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        transpose, keep = np.int8(84), np.int8(78)  # "T", "N" (ord() costs 0.3 s of compilation)
        blas(
            _address_of(transpose if trans_a else keep),
            _address_of(transpose if trans_b else keep),
            _address_of(np.int32(m)),
            _address_of(np.int32(n)),
            _address_of(np.int32(k)),
            _address_of(alpha),
            _voidptr(a),
            _address_of(np.int32(lda)),
            _voidptr(b),
            _address_of(np.int32(ldb)),
            _address_of(beta),
            _voidptr(c),
            _address_of(np.int32(ldc)),
        )

    return impl


@jit(inline=True)
def _panel(i, count, rows, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, size):
    """Panel ``i`` of ``count`` of C's rows (``rows``) or columns: one BLAS call. a, b, c are
    addresses, lda, ldb, ldc row strides in elements, size the element size.

    Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: BLAS's m is C's columns.
    """
    side = m if rows else n
    lo, hi = i * side // count, (i + 1) * side // count
    if rows:
        m, a, c = hi - lo, a + lo * size * (1 if trans_a else lda), c + lo * ldc * size
    else:
        n, b, c = hi - lo, b + lo * size * (ldb if trans_b else 1), c + lo * size
    _fortran_gemm(trans_b, trans_a, n, m, k, alpha, b, ldb, a, lda, beta, c, ldc)


@jit(parallel=True)
def _panels_side_by_side(count, rows, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, size):
    for i in numba.prange(count):
        _panel(i, count, rows, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, size)


# Code that calls a parallel function refers to Numba's threading layer, whose symbols exist once
# it is loaded: a kernel loaded from the cache (which never compiles, so never loads it) would
# otherwise jump to nothing on its first call (a segmentation fault).
_launch_threads()


@overload(gemm, jit_options=OPTIONS)
def _gemm_blas(trans_a, trans_b, alpha, A, B, beta, C, threads):
    if not isinstance(C, types.Array):
        return None  # an Optional C (a bias that may be None): Numba retries with the array

    def impl(trans_a, trans_b, alpha, A, B, beta, C, threads):
        if C.size == 0:
            return
        m, n = C.shape
        k = A.shape[0] if trans_a else A.shape[1]
        if k == 0:
            if beta == 0:
                C[...] = 0
            else:
                C *= C.dtype.type(beta)
            return
        size = C.itemsize
        count, rows = panels(m, n, k) if threads else 1, m >= n
        alpha, beta = C.dtype.type(alpha), C.dtype.type(beta)
        a, b, c = np.intp(A.ctypes.data), np.intp(B.ctypes.data), np.intp(C.ctypes.data)
        lda, ldb, ldc = A.strides[0] // size, B.strides[0] // size, C.strides[0] // size
        if count == 1:
            _fortran_gemm(trans_b, trans_a, n, m, k, alpha, b, ldb, a, lda, beta, c, ldc)
        elif threads > 1:
            _panels_side_by_side(
                count, rows, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, size
            )
        else:
            for i in range(count):
                _panel(i, count, rows, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, size)

    return impl


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


def one_thread_users():
    """How many ``one_thread`` blocks are open now."""
    return _users[0]


def blas_threads():
    """The thread count of SciPy's OpenBLAS (None where that BLAS is not OpenBLAS)."""
    return None if _THREADS is None else _THREADS[1]()
