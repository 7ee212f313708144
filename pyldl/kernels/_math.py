"""Scalar exp, sigmoid, tanh and log for use inside kernels (float32 stays float32).

Numba's ``np.exp``/``np.tanh`` are scalar libm calls; these are branch-free (clamps and
selects only), so that element-wise loops calling them vectorise. Each takes a float32 or
float64 scalar and computes in that precision throughout, with the constants of ``_k`` (log:
``_LOG64``, ``_LOG32``; it takes BCE's clipped probabilities, positive normal numbers).
Measured max errors, float64 (float32): exp 1.08 ulp (1.08), sigmoid 2.4 (2.4), tanh 1.31
(1.28); NumPy's: 0.70 (2.4), 2.4 (3.4) for its 1 / (1 + exp(-x)), 1.2 (1.4).

The few helpers that only Numba can compile (bit casts, selects, fused multiply-adds)
are Python functions with a NumPy body, which ``NUMBA_DISABLE_JIT=1`` runs instead.
"""

from collections import namedtuple

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from ._numba import OPTIONS, jit

# tanh: Cephes' x + x*z*P(z)/Q(z), z = x*x, below |x| = 0.625 (P: p0 p1 p2, Q: 1 q1 q2 q3),
# max error 0.61 ulp (float32: 0.81); tanh(20) == 1, also in float32.
_SHARED = dict(
    zero=0, one=1, two=2, log2e=1.4426950408889634, tanh_cut=0.625, tanh_max=20,
    p0=-9.64399179425052238628e-1, p1=-9.92877231001918586564e1, p2=-1.61468768441708447952e3,
    q1=1.12811678491632931402e2, q2=2.23548839060100448583e3, q3=4.84406305325125486048e3,
)  # fmt: skip
# exp(x) rounds to 0 below lo and to inf above hi; ln2_hi + ln2_lo = -ln2, with n * ln2_hi
# exact for the n = round(x / ln2) in between; adding shifter rounds to an integer.
_F64 = dict(
    lo=-746, hi=710, ln2_hi=-6.93147180369123816490e-01, ln2_lo=-1.90821492927058770002e-10,
    shifter=1.5 * 2**52,
)  # fmt: skip
_F32 = dict(lo=-104, hi=89, ln2_hi=-0.693359375, ln2_lo=2.12194440e-4, shifter=1.5 * 2**23)
_Consts = namedtuple("_Consts", [*_SHARED, *_F64])
_K64 = _Consts(**{name: np.float64(v) for name, v in {**_SHARED, **_F64}.items()})
_K32 = _Consts(**{name: np.float32(v) for name, v in {**_SHARED, **_F32}.items()})


def _k(x):
    """The constants in the precision of ``x``."""
    return _K32 if isinstance(x, np.float32) else _K64


@overload(_k, jit_options=OPTIONS)
def _k_compiled(x):
    k = {types.float32: _K32, types.float64: _K64}.get(x)  # None: no implementation for x
    return None if k is None else lambda x: k


constants = _k  # for the other kernels: ``constants(x).one`` is 1 in the precision of x


def _compiled_as(compiled):
    """Let Numba compile calls of the decorated Python function as the intrinsic ``compiled``."""

    def register(func):
        overload(func, jit_options=OPTIONS)(lambda *args: lambda *args: compiled(*args))
        return func

    return register


def _fmuladd(builder, a, b, c):
    ty = a.type
    name = "llvm.fmuladd.f64" if ty == ir.DoubleType() else "llvm.fmuladd.f32"
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty] * 3), name)
    return builder.call(fn, [a, b, c])


@intrinsic
def _fma_compiled(typingctx, a, b, c):
    if isinstance(a, types.Float) and a == b == c:
        return a(a, a, a), lambda context, builder, sig, args: _fmuladd(builder, *args)


@_compiled_as(_fma_compiled)
def _fma(a, b, c):
    """``a * b + c``, fused where the CPU has FMA."""
    return a * b + c


@intrinsic
def _where_compiled(typingctx, c, a, b):
    if isinstance(c, types.Boolean) and isinstance(a, types.Float) and a == b:
        return a(c, a, a), lambda context, builder, sig, args: builder.select(*args)


@_compiled_as(_where_compiled)
def _where(c, a, b):
    """``a if c else b`` as a select: no branch, even before LLVM's optimisations."""
    return a if c else b


def _ldexp_ir(builder, t, u=None):
    """IR for 2**n, or (1 + u) * 2**n in two steps (for subnormal and overflowing results)."""
    bits, mant = (64, 52) if t.type == ir.DoubleType() else (32, 23)
    ity = ir.IntType(bits)
    bias = ir.Constant(ity, 2 ** (bits - mant - 2) - 1)

    def pow2(n):  # a normal 2**n from its bits
        return builder.bitcast(builder.shl(builder.add(n, bias), ir.Constant(ity, mant)), t.type)

    n = builder.sub(builder.bitcast(t, ity), ir.Constant(t.type, 1.5 * 2**mant).bitcast(ity))
    if u is None:
        return pow2(n)
    n1 = builder.ashr(n, ir.Constant(ity, 1))
    s1 = pow2(n1)
    return builder.fmul(_fmuladd(builder, u, s1, s1), pow2(builder.sub(n, n1)))


@intrinsic
def _ldexp1p_compiled(typingctx, u, t):
    if isinstance(u, types.Float) and u == t:
        return u(u, t), lambda context, builder, sig, args: _ldexp_ir(builder, args[1], args[0])


@intrinsic
def _pow2_compiled(typingctx, t):
    if isinstance(t, types.Float):
        return t(t), lambda context, builder, sig, args: _ldexp_ir(builder, args[0])


def _n(t):
    """The integer ``n`` held in ``t = n + shifter`` (see ``_reduce``)."""
    return int(t - _k(t).shifter)


@_compiled_as(_ldexp1p_compiled)
def _ldexp1p(u, t):
    """``(1 + u) * 2**n`` for ``n`` held in ``t``: the scaling is exact, or rounds once to a
    subnormal number, or overflows to inf."""
    with np.errstate(over="ignore"):
        return t if t != t else np.ldexp(_k(u).one + u, _n(t))


@_compiled_as(_pow2_compiled)
def _pow2(t):
    """``2**n`` for ``n`` held in ``t``, where that is a normal number."""
    return t if t != t else np.ldexp(_k(t).one, _n(t))


# e**r = 1 + r + r*r*q(r) on |r| <= ln2/2, q a Chebyshev interpolant: max relative error
# 1.6e-17 (degree 11, float64) and 1.1e-8 (degree 6, float32) before rounding; exp's max
# error 1.08 ulp (NumPy's: 0.70). Estrin's scheme: float64 exp 8% faster than Horner's.
_Q64 = tuple(map(np.float64, (
    0.5000000000000001, 0.16666666666666669, 0.041666666666624094, 0.00833333333333006,
    0.0013888888917230724, 0.00019841269863066696, 2.4801521269532122e-05, 2.7557268439678e-06,
    2.7620101012098e-07, 2.5100395159429246e-08,
)))  # fmt: skip
_Q32 = tuple(map(np.float32, (0.5, 0.16666576, 0.041666556, 0.008363185, 0.0013926191)))


def _q64(r):
    c0, c1, c2, c3, c4, c5, c6, c7, c8, c9 = _Q64
    r2 = r * r
    r4 = r2 * r2
    b0 = _fma(_fma(c3, r, c2), r2, _fma(c1, r, c0))
    b1 = _fma(_fma(c7, r, c6), r2, _fma(c5, r, c4))
    return _fma(_fma(_fma(c9, r, c8), r4, b1), r4, b0)


def _q32(r):
    c0, c1, c2, c3, c4 = _Q32
    r2 = r * r
    return _fma(_fma(c4, r2, _fma(c3, r, c2)), r2, _fma(c1, r, c0))


def _q(r):
    """The polynomial ``q`` in the precision of ``r``."""
    return _q32(r) if isinstance(r, np.float32) else _q64(r)


@overload(_q, jit_options=OPTIONS)
def _q_compiled(r):
    return _q32 if r == types.float32 else _q64


@jit
def _reduce(x):
    """``(u, t)`` with ``e**x = (1 + u) * 2**n``, ``n = round(x / ln2)`` held in ``t``."""
    k = _k(x)
    t = _fma(x, k.log2e, k.shifter)  # n + shifter: n in the low bits of t
    n = t - k.shifter
    r = _fma(n, k.ln2_lo, _fma(n, k.ln2_hi, x))
    return _fma(r * r, _q(r), r), t


@jit
def exp(x):
    """``e**x``: inf above ~709.78 (float32: ~88.72), gradual underflow to 0 below."""
    k = _k(x)
    x = _where(x < k.lo, k.lo, x)  # clamps that keep NaN
    u, t = _reduce(_where(x > k.hi, k.hi, x))
    return _ldexp1p(u, t)


@jit
def sigmoid(x):
    """``1 / (1 + e**-x)``: 0 below -709.78 (float32: -88.72), where that underflows."""
    k = _k(x)
    return k.one / (k.one + exp(-x))


@jit
def tanh(x):
    """Hyperbolic tangent, with relative accuracy near 0."""
    k = _k(x)
    a = abs(x)
    a = _where(a > k.tanh_max, k.tanh_max, a)  # keeps NaN
    z = a * a
    big = a >= k.tanh_cut
    # tanh(a) = a + a*z*P(z)/Q(z) below 0.625, 1 - 2/(e**2a + 1) above: one division. The
    # last rounding is that of 1 - a small term, so values near 1 round right (float32 tanh(9):
    # 0.99999994, not 1, which would make Tanh's gradient 1 - t**2 zero there)
    u, t = _reduce(a + a)
    s = _pow2(t)
    em1 = _fma(s, u, s - k.one)  # e**2a - 1 rounded once: max error vs NumPy 4.0e-16 -> 2.2e-16
    num = _where(big, k.two, z * _fma(_fma(k.p0, z, k.p1), z, k.p2))
    den = _where(big, em1 + k.two, _fma(_fma(z + k.q1, z, k.q2), z, k.q3))
    ratio = num / den
    return np.copysign(_where(big, k.one - ratio, _fma(a, ratio, a)), x)


# log(x) for BCE's clipped probabilities (positive normal numbers, or NaN): fdlibm's
# reduction to m in [sqrt(2)/2, sqrt(2)), log(m) = f - f*f/2 + s (f*f/2 + R(s*s)),
# s = f / (2 + f), f = m - 1; branch-free, so loops over it vectorise (libm's log does not).
_LOG64 = tuple(map(np.float64, (
    6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
    2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
    1.479819860511658591e-01, 6.93147180369123816490e-01, 1.90821492927058770002e-10,
)))  # fmt: skip
_LOG32 = tuple(map(np.float32, (
    0.66666662693, 0.40000972152, 0.28498786688, 0.24279078841, 6.9313812256e-01, 9.0580006145e-06,
)))  # fmt: skip


@intrinsic
def _bits(typingctx, x):
    """The bits of a float as a signed integer of its width."""
    if isinstance(x, types.Float):
        ity = types.int64 if x.bitwidth == 64 else types.int32
        return ity(x), lambda context, builder, sig, args: builder.bitcast(args[0], ir.IntType(x.bitwidth))


@intrinsic
def _float(typingctx, bits, like):
    """The float of ``like``'s type with the low bits of the integer ``bits``."""
    if isinstance(bits, types.Integer) and isinstance(like, types.Float):

        def codegen(context, builder, sig, args):
            ity = ir.IntType(like.bitwidth)
            value = args[0]
            if bits.bitwidth > like.bitwidth:
                value = builder.trunc(value, ity)
            elif bits.bitwidth < like.bitwidth:
                value = builder.sext(value, ity)
            return builder.bitcast(value, context.get_value_type(like))

        return like(bits, like), codegen


def log(x):
    """Natural log of a positive normal number (NaN stays NaN). NumPy's without Numba."""
    return np.log(x)


def _log64(x):
    lg1, lg2, lg3, lg4, lg5, lg6, lg7, ln2_hi, ln2_lo = _LOG64
    one, half = np.float64(1), np.float64(0.5)
    ix = _bits(x) + 0x0009_5F62_0000_0000  # moves [sqrt(2)/2, sqrt(2)) to one binade
    k = (ix >> 52) - 0x3FF
    f = _float((ix & 0x000F_FFFF_FFFF_FFFF) + 0x3FE6_A09E_0000_0000, x) - one
    s = f / (one + one + f)
    z = s * s
    w = z * z
    r = w * (lg2 + w * (lg4 + w * lg6)) + z * (lg1 + w * (lg3 + w * (lg5 + w * lg7)))
    hfsq = half * f * f
    dk = np.float64(k)
    y = s * (hfsq + r) + dk * ln2_lo - hfsq + f + dk * ln2_hi
    return y if x == x else x


def _log32(x):
    lg1, lg2, lg3, lg4, ln2_hi, ln2_lo = _LOG32
    one, half = np.float32(1), np.float32(0.5)
    ix = _bits(x) + (0x3F80_0000 - 0x3F35_04F3)
    k = (ix >> 23) - 0x7F
    f = _float((ix & 0x007F_FFFF) + 0x3F35_04F3, x) - one
    s = f / (one + one + f)
    z = s * s
    w = z * z
    r = w * (lg2 + w * lg4) + z * (lg1 + w * lg3)
    hfsq = half * f * f
    dk = np.float32(k)
    y = s * (hfsq + r) + dk * ln2_lo - hfsq + f + dk * ln2_hi
    return y if x == x else x


@overload(log, jit_options=OPTIONS)
def _log_compiled(x):
    return _log32 if x == types.float32 else _log64
