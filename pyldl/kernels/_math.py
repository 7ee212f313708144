"""Scalar exp, sigmoid and tanh for use inside kernels (float32 stays float32).

Branch-free (clamps and selects only), so that element-wise loops over them vectorise;
numba's ``np.exp``/``np.tanh`` are scalar libm calls. Each function takes a float32 or
float64 scalar and computes in that precision throughout, with the constants of ``_k``.
Run without Numba (``NUMBA_DISABLE_JIT=1``) the same code runs on NumPy scalars.
"""

from collections import namedtuple

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from ._numba import OPTIONS, jit

_Consts = namedtuple(
    "_Consts",
    "one two lo hi log2e shifter ln2_hi ln2_lo exp_q tanh_sat tanh_big tanh_p tanh_q",
)


def _consts(ftype, lo, hi, shifter, ln2_hi, ln2_lo, exp_q):
    f = ftype
    return _Consts(
        one=f(1), two=f(2), lo=f(lo), hi=f(hi), log2e=f(1.4426950408889634), shifter=f(shifter),
        ln2_hi=f(ln2_hi), ln2_lo=f(ln2_lo), exp_q=tuple(f(c) for c in exp_q),
        tanh_sat=f(20), tanh_big=f(0.625),
        tanh_p=tuple(f(c) for c in (-9.64399179425052238628e-1, -9.92877231001918586564e1,
                                     -1.61468768441708447952e3)),
        tanh_q=tuple(f(c) for c in (1.0, 1.12811678491632931402e2, 2.23548839060100448583e3,
                                     4.84406305325125486048e3)),
    )  # fmt: skip


# exp(r) = 1 + r + r*r*q(r) on |r| <= ln2/2, q highest power first: Chebyshev interpolants,
# max relative error 1.6e-17 (degree 11, float64) and 1.1e-8 (degree 6, float32).
# exp: below lo the result rounds to 0, above hi to inf. tanh: tanh(20) == 1; Cephes'
# rational x + x*z*P(z)/Q(z), z = x*x, below 0.625, 1 - 2/(exp(2x) + 1) above.
_K64 = _consts(
    np.float64, -746.0, 710.0, 1.5 * 2.0**52, 6.93147180369123816490e-01, 1.90821492927058770002e-10,
    (2.5100395159429246e-08, 2.7620101012098e-07, 2.7557268439678e-06, 2.4801521269532122e-05,
     0.00019841269863066696, 0.0013888888917230724, 0.00833333333333006, 0.041666666666624094,
     0.16666666666666669, 0.5000000000000001),
)  # fmt: skip
_K32 = _consts(
    np.float32, -104.0, 89.0, 1.5 * 2.0**23, 0.693359375, -2.12194440e-4,
    (0.0013926191, 0.008363185, 0.041666556, 0.16666576, 0.5),
)


def _k(x):
    """The constants in the precision of ``x``."""
    return _K32 if isinstance(x, np.float32) else _K64


@overload(_k, jit_options=OPTIONS)
def _k_compiled(x):
    k = _K32 if x == types.float32 else _K64
    return lambda x: k


def _scale(p, t):
    """``p * 2**n`` for the integer ``n = t - k.shifter`` (one rounding, also to subnormals)."""
    if t != t:
        return t
    with np.errstate(all="ignore"):
        return np.ldexp(p, int(t - _k(p).shifter))


@intrinsic
def _scale_bits(typingctx, p, t):
    """Compiled ``_scale``: n from the low bits of t, times 2**(n//2) then 2**(n - n//2)."""
    if not (isinstance(p, types.Float) and p == t):
        return None

    def codegen(context, builder, sig, args):
        p, t = args
        bits, mant = (64, 52) if p.type == ir.DoubleType() else (32, 23)
        ity = ir.IntType(bits)
        shifter = ir.Constant(p.type, 1.5 * 2.0**mant).bitcast(ity)
        n = builder.sub(builder.bitcast(t, ity), shifter)
        n1 = builder.ashr(n, ir.Constant(ity, 1))
        bias = ir.Constant(ity, 2 ** (bits - mant - 2) - 1)
        for half in (n1, builder.sub(n, n1)):
            two_half = builder.shl(builder.add(half, bias), ir.Constant(ity, mant))
            p = builder.fmul(p, builder.bitcast(two_half, p.type))
        return p

    return p(p, t), codegen


@overload(_scale, jit_options=OPTIONS)
def _scale_compiled(p, t):
    return lambda p, t: _scale_bits(p, t)


@jit
def _horner(x, c):
    """Polynomial with coefficients ``c``, highest power first."""
    y = c[0]
    for i in range(1, len(c)):
        y = y * x + c[i]
    return y


@jit
def exp(x):
    """``e**x``: inf above ~709.78 (float32: ~88.72), gradual underflow to 0 below."""
    k = _k(x)
    x = k.lo if x < k.lo else x  # clamps that keep NaN
    x = k.hi if x > k.hi else x
    t = x * k.log2e + k.shifter  # round(x / ln 2) in the low bits of t
    n = t - k.shifter
    r = (x - n * k.ln2_hi) - n * k.ln2_lo
    return _scale(k.one + (r + r * r * _horner(r, k.exp_q)), t)


@jit
def sigmoid(x):
    """``1 / (1 + e**-x)``."""
    k = _k(x)
    return k.one / (k.one + exp(-x))


@jit
def tanh(x):
    """Hyperbolic tangent, with relative accuracy near 0."""
    k = _k(x)
    a = abs(x)
    a = k.tanh_sat if a > k.tanh_sat else a
    z = a * a
    big = a >= k.tanh_big
    # both branches as num / den, for one shared division
    num = k.two if big else z * _horner(z, k.tanh_p)
    den = exp(a + a) + k.one if big else _horner(z, k.tanh_q)
    t = num / den
    s = k.one if x > 0 else -k.one
    return (s if big else x) + (-s if big else x) * t
