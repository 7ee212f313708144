"""The one place that sets Numba's options for every pyldl kernel.

- ``error_model="numpy"``: no zero-division check in float divisions, so loops vectorise.
- no fastmath: NaN and inf must survive (the divergence guard and the error checks need them).
- ``cache=True`` writes compiled code next to the sources (or in ``NUMBA_CACHE_DIR``);
  where no folder is writable Numba refuses to cache, and the kernel quietly compiles
  in memory instead. ``PYLDL_NO_CACHE=1`` turns the cache off.
- A cached kernel is stamped with the contents of every file in this folder, not only its
  own: Numba inlines ``_math`` and ``_blas`` into the kernels that call them, and would
  otherwise keep serving stale code after either changed.
"""

import ctypes
import hashlib
import importlib
import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from functools import cache, partial
from pathlib import Path

import llvmlite.binding as llvm
import numba
from llvmlite import ir
from numba import types
from numba.core import caching, cgutils, compiler
from numba.core.imputils import lower_builtin
from numba.core.typing.templates import AbstractTemplate, infer_global
from numba.extending import intrinsic

OPTIONS = {"error_model": "numpy", "nogil": True, "no_cfunc_wrapper": True}
CACHE = os.environ.get("PYLDL_NO_CACHE", "") in ("", "0")
KERNELS = Path(__file__).resolve().parent


@cache
def _kernels_stamp():
    digest = hashlib.sha256()
    for path in sorted(KERNELS.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _stamped(locator):
    """``locator`` restricted to pyldl's kernels, with the whole folder's stamp."""

    class Stamped(locator):
        @classmethod
        def from_function(cls, py_func, py_file):
            if Path(py_file).resolve().parent != KERNELS:
                return None
            return super().from_function(py_func, py_file)

        def get_source_stamp(self):
            return _kernels_stamp()

    Stamped.__name__ = Stamped.__qualname__ = f"PyldlKernels{locator.__name__}"
    return Stamped


caching.CacheImpl._locator_classes[:0] = [
    _stamped(locator)
    for locator in (
        caching.UserProvidedCacheLocator,
        caching.InTreeCacheLocator,
        caching.UserWideCacheLocator,
    )
]


def uncached(dispatcher, args):
    """The argument types of ``dispatcher`` (a ``jit`` kernel) for ``args`` where calling it
    would compile it, into a cache; None where it would not (no JIT, no cache folder, compiled
    or cached already)."""
    cache = getattr(dispatcher, "_cache", None)
    if not isinstance(cache, caching.Cache):  # no JIT (a Python function), or no cache folder
        return None
    argtypes = tuple(dispatcher.typeof_pyval(a) for a in args)
    if argtypes in dispatcher.overloads:
        return None
    key = cache._index_key(argtypes, dispatcher.targetctx.codegen())
    return None if key in cache._cache_file._load_index() else argtypes


ASIDE_SECONDS = 120  # the longest ``aside`` waits for its process before stopping it
_ASIDE = threading.Lock()  # one second process at a time (a sweep's threads would each start one)


def _interpreter():
    """This Python's interpreter, or None where ``sys.executable`` is none or another program
    (an application embedding Python: run with ``-c``, it would not run Python)."""
    name = Path(sys.executable or "").name.lower()
    return sys.executable if name.startswith("python") else None


@contextmanager
def aside(statement):
    """Run ``statement`` (Python that compiles kernels: they land in the cache) in a second
    process with this pyldl, while the block runs; then wait for it (stop it if the block
    raised, or after ``ASIDE_SECONDS``). Whatever it could not compile, or save, this process
    compiles when it gets there. The block gets the process (a ``Popen``), or None where none
    started: no Python interpreter to start, or another one still running."""
    root = str(KERNELS.parent.parent)
    # this pyldl, not one in the working directory (``-c`` puts that first on the path); the
    # second process stops if it imported another
    code = "\n".join(
        [
            f"import pathlib, sys; root = {root!r}",
            "sys.path[:] = ([] if root in sys.path else [root]) + [p for p in sys.path if p != '']",
            "import pyldl",
            "if pathlib.Path(pyldl.__file__).resolve().parents[1] != pathlib.Path(root): sys.exit(1)",
            statement,
        ]
    )
    interpreter = _interpreter()
    if interpreter is None or not _ASIDE.acquire(blocking=False):
        yield None
        return
    try:
        devnull = subprocess.DEVNULL
        try:
            worker = subprocess.Popen(
                [interpreter, "-c", code], stdin=devnull, stdout=devnull, stderr=devnull
            )
        except OSError:  # no such file, not executable
            yield None
            return
        try:
            yield worker
            try:
                worker.wait(ASIDE_SECONDS)
            except subprocess.TimeoutExpired:
                pass  # stopped below: this process compiles what it left
        finally:
            if worker.poll() is None:  # the block raised (Ctrl-C), or the process hangs
                worker.kill()
                worker.wait()
    finally:
        _ASIDE.release()


def jit(func=None, *, inline=False, parallel=False):
    """Compile ``func`` with pyldl's Numba options, cached on disk where possible.

    ``jit(inline=True)``: compiled code calling ``func`` takes its body in (Numba's
    ``inline="always"``) instead of calling a function compiled on its own: for small helpers,
    each of which would cost 50-100 ms of compilation on a fresh install.
    ``jit(parallel=True)``: ``numba.prange`` loops run on Numba's threads, as many as
    ``numba.set_num_threads`` last set in the calling thread.
    """
    if func is None:
        return lambda func: jit(func, inline=inline, parallel=parallel)
    options = {**OPTIONS, "inline": "always"} if inline else dict(OPTIONS)
    if parallel:
        options["parallel"] = True
    if CACHE:
        try:
            return numba.njit(cache=True, **options)(func)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            pass
    return numba.njit(**options)(func)


def cfunc(signature, *, parallel=False):
    """Compile a C-callable ``func`` of ``signature`` with pyldl's Numba options, cached on
    disk where possible (``.address`` is its entry point)."""

    def decorate(func):
        options = {**OPTIONS, "parallel": parallel}
        del options["no_cfunc_wrapper"]
        compiled = None
        if CACHE:
            try:
                compiled = numba.cfunc(signature, cache=True, **options)(func)
            except RuntimeError:  # no locator available
                pass
        compiled = compiled or numba.cfunc(signature, **options)(func)
        # Numba saves no reload hooks with a cfunc (its compiler skips that step): loaded from the
        # cache in the next process, calls made ``separately`` in it would find no symbol
        if any(getattr(hook, "func", None) is _compiled for hook in compiled._library._reload_init):
            raise TypeError(f"{func.__qualname__}: a cfunc cannot call kernels separately")
        return compiled

    return decorate


@intrinsic
def call(typingctx, address, result, *args):
    """Call the C function at the integer ``address`` (a ``cfunc``'s) from compiled code:
    arrays go as their data pointers, numbers as they are, and its C signature must be those,
    in that order; ``result`` is its return type (``np.float64``; None: it returns nothing)."""
    returns = types.void if isinstance(result, types.NoneType) else result.instance_type

    def codegen(context, builder, signature, values):
        arguments = [
            context.make_array(t)(context, builder, v).data if isinstance(t, types.Array) else v
            for t, v in zip(args, cgutils.unpack_tuple(builder, values[2]), strict=True)
        ]
        restype = ir.VoidType() if returns is types.void else context.get_value_type(returns)
        function = ir.FunctionType(restype, [a.type for a in arguments])
        value = builder.call(builder.inttoptr(values[0], function.as_pointer()), arguments)
        return context.get_dummy_value() if returns is types.void else value

    signature = (types.none if returns is types.void else returns)(address, result, types.StarArgTuple(args))
    return signature, codegen


def slot(name):
    """A word of memory that compiled code reads as the symbol ``name`` (``load_slot``): an
    address that Python sets later (``.value``), 0 until then. Cached code refers to the symbol,
    so it stays valid in every process."""
    word = ctypes.c_void_p(0)
    llvm.add_symbol(name, ctypes.addressof(word))
    return word


def load_slot(builder, name):
    """In an intrinsic's codegen: the value of the slot ``name`` (an intp)."""
    word = builder.module.globals.get(name)
    if word is None:
        word = ir.GlobalVariable(builder.module, ir.IntType(64), name)  # a declaration
    return builder.load(word)


# ``separately(function, *args)``: compiled code calls ``function``'s own compiled code (for
# those argument types) through a symbol, instead of linking a copy of it in and optimising it
# again there, with everything it calls, in every caller (the fused epoch, the gemm of every
# kernel). The symbol names the function and its argument types, not Numba's per-process name
# for it, and its address is set from Python (``llvm.add_symbol``) each time the function is
# compiled or loaded from the cache; a caller loaded from the cache first makes sure of that
# (Numba runs a library's ``_reload_init`` before loading it). The callee is compiled (or
# loaded) on its own, so a caller whose cache entry is valid while its callee's is not still
# links: the callee compiles again, and the symbol takes its new address.


def _symbol(module, qualname, argtypes):
    digest = hashlib.sha256(repr(argtypes).encode()).hexdigest()[:16]
    return f"pyldl:{module}:{qualname}:{digest}"


def _rebuild_keeping_hooks(rebuild):
    """Numba's ``CompileResult._rebuild``, which runs a cached function's reload hooks but
    leaves its library without them: a function compiled later that links it (a kernel calling
    ``linear_forward``, whose gemm calls ``_gemm_arrays`` separately) would inherit none, and
    its own cache entry would lack the hook its code needs."""

    def rebuilt(cls, *args, **kwargs):
        result = rebuild.__func__(cls, *args, **kwargs)
        result.library._reload_init.update(result.reload_init or ())
        return result

    return classmethod(rebuilt)


compiler.CompileResult._rebuild = _rebuild_keeping_hooks(compiler.CompileResult._rebuild)


def _compiled(module, qualname, argtypes):
    """The compiled ``module.qualname`` for ``argtypes`` (compiled or loaded from the cache
    once per process), its entry point published as its symbol."""
    function = importlib.import_module(module)
    for name in qualname.split("."):
        function = getattr(function, name)
    function.compile(argtypes)
    result = function.overloads[argtypes]
    address = result.library.get_pointer_to_function(result.fndesc.mangled_name)
    llvm.add_symbol(_symbol(module, qualname, argtypes), address)
    return result


def separately(function, *args):
    """``function(*args)``. Compiled code calls the compiled ``function`` (a pyldl ``jit``
    kernel at module level) through its symbol, without taking a copy of its code in."""
    return function(*args)


@infer_global(separately)
class _Separately(AbstractTemplate):
    def generic(self, args, kws):
        function, *argtypes = args
        if isinstance(function, types.Dispatcher) and not kws:
            argtypes = tuple(types.unliteral(t) for t in argtypes)
            py_func = function.dispatcher.py_func
            result = _compiled(py_func.__module__, py_func.__qualname__, argtypes)
            return result.signature.return_type(function, *argtypes)


@lower_builtin(separately, types.Dispatcher, types.VarArg(types.Any))
def _separately_lowered(context, builder, signature, values):
    function, *argtypes = signature.args
    py_func, argtypes = function.dispatcher.py_func, tuple(argtypes)
    key = py_func.__module__, py_func.__qualname__, argtypes
    fndesc, convention = function.dispatcher.overloads[argtypes].fndesc, context.call_conv
    callee_type = convention.get_function_type(fndesc.restype, fndesc.argtypes)
    callee = cgutils.get_or_insert_function(builder.module, callee_type, _symbol(*key))
    status, result = convention.call_function(builder, callee, fndesc.restype, fndesc.argtypes, values[1:])
    with cgutils.if_unlikely(builder, status.is_error):
        convention.return_status_propagate(builder, status)
    context.active_code_library._reload_init.add(partial(_compiled, *key))
    return result
