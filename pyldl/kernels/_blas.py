"""BLAS ``gemm`` callable from compiled code, through SciPy's Cython BLAS.

``gemm`` folds a product into an existing buffer (``C = alpha op(A) op(B) + beta C``), which
``np.dot`` cannot: gradients accumulate and updates subtract without a temporary.
``one_thread`` keeps that BLAS on one thread: the products' threads are pyldl's own
(``gemm``'s panels, ``pyldl.threads``).
"""

import ctypes
import importlib
import importlib.util
import os
import sys
import threading
from contextlib import contextmanager
from functools import cache
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

from ._numba import OPTIONS, call, cfunc, jit, load_slot, separately, slot


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
# 0.060 and 0.040. W3's 64 x 64 x 128, cut in 2 from 2**19: 0.92x the speed of one BLAS call
# at 26bd714, from 2**20 uncut: 1.02x. W6's 256 x 1024 x 2048 on two threads: 2 panels 6.2 ms,
# as OpenBLAS's own two threads; 4: 6.5; 8: 7.1; 16: 8.2, and W6's epoch 0.78x the speed of
# 26bd714's, which ran it on OpenBLAS's threads: at most 4.)
PANEL_WORK, MAX_PANELS = 2**18, 4


def panel_count(m, n, k):
    """How many panels C (m, n) = op(A) (m, k) op(B) (k, n) is computed in."""
    wide = (m if m > n else n) // 8  # conditionals, not min and max: 0.05 s less compilation
    most, work, count = MAX_PANELS if MAX_PANELS < wide else wide, m * n * k // PANEL_WORK, 1
    while work >= 4 and count * 2 <= most:
        count *= 2
        work //= 4
    return count


panels = jit(inline=True)(panel_count)  # for compiled code; Python (the plan) calls panel_count


def gemm(trans_a, trans_b, alpha, A, B, beta, C, threads):
    """C = alpha op(A) op(B) + beta C for 2-D arrays with contiguous rows (op transposes when
    asked). ``threads`` >= 1: in ``panels`` fixed by the shapes, run by up to that many threads,
    the BLAS on one thread (``one_thread``): the result is the same whatever ``threads`` is.
    0 (the Module wrappers'): one BLAS call, on as many threads as that BLAS has (the same
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


def _size_of(x):
    """The size in bytes of the float ``x``."""
    return np.dtype(type(x)).itemsize


@overload(_size_of, jit_options=OPTIONS, inline="always")
def _size_of_compiled(x):
    size = x.bitwidth // 8
    return lambda x: size


@jit(inline=True)
def _panel(i, count, rows, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Panel ``i`` of ``count`` of C's rows (``rows``) or columns: one BLAS call. a, b, c are
    addresses, lda, ldb, ldc row strides in elements of alpha's type.

    Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: BLAS's m is C's columns.
    """
    size = _size_of(alpha)
    side = m if rows else n
    lo, hi = i * side // count, (i + 1) * side // count
    if rows:
        m, a, c = hi - lo, a + lo * size * (1 if trans_a else lda), c + lo * ldc * size
    else:
        n, b, c = hi - lo, b + lo * size * (ldb if trans_b else 1), c + lo * size
    _fortran_gemm(trans_b, trans_a, n, m, k, alpha, b, ldb, a, lda, beta, c, ldc)


# The panels side by side: a parallel function of its own per dtype, compiled (or loaded from
# the cache) only once a product first runs on more than one thread (``side_by_side``), and
# called through its address (``call``), which a slot (a symbol the kernels refer to) holds. Until then
# the slot holds 0 and the panels run one after another, with the same bits. The Module
# wrappers and one-thread trainings never compile it (0.4 s on a fresh install).
def _slot_symbol(bits):
    return f"pyldl_side_by_side_{bits}"


_SLOTS = {np.dtype(t): slot(_slot_symbol(8 * np.dtype(t).itemsize)) for t in (np.float64, np.float32)}
_SIDE_BY_SIDE = {}  # dtype: the compiled function (kept alive: the slot holds its address)


@intrinsic
def _side_by_side_address(typingctx, like):
    """The address in the slot of ``like``'s float type (0 until ``side_by_side``)."""
    if isinstance(like, types.Float):
        name = _slot_symbol(like.bitwidth)
        return types.intp(like), lambda context, builder, signature, args: load_slot(builder, name)


def _panels_side_by_side(count, rows, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    for i in numba.prange(count):
        _panel(i, count, rows, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


# GNU OpenMP's threads, between and at the end of parallel loops, spin GOMP_SPINCOUNT times
# before they sleep: 300,000 by default, 15 ms of `pause` on this machine's Skylake cores. On a
# busy machine a thread spinning for one that is not running keeps it from running: W4 on two
# threads beside two CPU-bound processes took 0.08-0.09 s an epoch, but in 3 runs of 12, epochs
# of 2-6 s (85% of the time in libgomp's spin); with 30,000, 0.08 s, and in 3 runs of 21 epochs
# of about 0.7 s (the thread choice's means see those and keep one thread). Idle, 30,000 keeps
# the default's 0.036-0.039 s (3,000 0.035-0.039; 1,000 0.056-0.062; 300, asleep at almost every
# loop's end, 0.10). A user's GOMP_SPINCOUNT or OMP_WAIT_POLICY is kept.
SPINCOUNT = 30_000


@cache
def launch_threads():
    """Load and start Numba's threading layer (once per process: before any
    ``numba.set_num_threads``, which would load it), GNU OpenMP with ``SPINCOUNT`` unless the
    user set its waiting; the environment is left as it was."""
    if any(name in os.environ for name in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")):
        _launch_threads()
        return
    os.environ["GOMP_SPINCOUNT"] = str(SPINCOUNT)  # read once, when libgomp is loaded
    try:
        _launch_threads()
    finally:
        os.environ.pop("GOMP_SPINCOUNT", None)


def side_by_side(dtype):
    """Make products of ``dtype`` with threads > 1 run their panels side by side (compiling
    or loading the parallel function, once per process); a no-op without Numba."""
    dtype = np.dtype(dtype)
    if dtype in _SIDE_BY_SIDE or numba.config.DISABLE_JIT:
        return
    launch_threads()  # its code refers to Numba's threading layer, loaded here
    scalar = numba.from_dtype(dtype)
    signature = types.void(*[types.intp] * 7, scalar, *[types.intp] * 4, scalar, types.intp, types.intp)
    compiled = cfunc(signature, parallel=True)(_panels_side_by_side)
    # setdefault: where two threads compiled it, the slot holds the one that stays alive
    _SLOTS[dtype].value = _SIDE_BY_SIDE.setdefault(dtype, compiled).address


@jit
def _gemm_at(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, threads):
    """``gemm`` on addresses (one compiled function per dtype, which every kernel's gemm calls
    ``separately``)."""
    count, rows = panels(m, n, k) if threads else 1, np.intp(m >= n)
    address = _side_by_side_address(alpha) if threads > 1 and count > 1 else 0
    if address:
        call(address, None, count, rows, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    else:
        for i in range(count):
            _panel(i, count, rows, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


@jit
def _gemm_arrays(trans_a, trans_b, alpha, A, B, beta, C, threads):
    """``gemm`` compiled: one function per argument types, which every kernel's gemm calls
    ``separately`` (not a copy of it compiled into each: 0.1-0.2 s each on a fresh install)."""
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
    alpha_c, beta_c = C.dtype.type(alpha), C.dtype.type(beta)
    a, lda = np.intp(A.ctypes.data), np.intp(A.strides[0] // size)
    b, ldb = np.intp(B.ctypes.data), np.intp(B.strides[0] // size)
    c, ldc = np.intp(C.ctypes.data), np.intp(C.strides[0] // size)
    # (no *args: Numba would type the kernel inside a tuple, an experimental type)
    ta, tb, count = np.intp(trans_a), np.intp(trans_b), np.intp(threads)
    mm, nn, kk = np.intp(m), np.intp(n), np.intp(k)
    separately(_gemm_at, ta, tb, mm, nn, kk, alpha_c, a, lda, b, ldb, beta_c, c, ldc, count)


@overload(gemm, jit_options=OPTIONS)
def _gemm_blas(trans_a, trans_b, alpha, A, B, beta, C, threads):
    def impl(trans_a, trans_b, alpha, A, B, beta, C, threads):
        separately(_gemm_arrays, trans_a, trans_b, alpha, A, B, beta, C, threads)

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
