"""Transcendental functions as straight-line IR: no branches, no calls, so loops vectorise.

LLVM's `llvm.exp` & co. become calls to the C library, one element at a time; these are
the classic Cephes/fdlibm algorithms written with selects instead of branches. `exp` and
`tanh` have float32 versions (the hot ones: softmax, gelu); the others compute float32
in float64 and round once, which is as accurate as float32 gets. `erf` is the very
formula of the reference kernel (`ops/elementwise.py`), so the two agree to round-off.

>>> import numpy as np  # accuracy is checked against NumPy in tests/test_lower.py
"""

from __future__ import annotations

import math

from llvmlite import ir

from ...runtime.once import once
from ..ops.elementwise import _ERF_T, _ERF_U, _ERFC_P, _ERFC_Q, _ERFC_R, _ERFC_S, ERF_FAR
from .llvm_types import F32, F64, FAST, I32, I64, call1, call2, intrinsic, like, suffix

# --- small helpers -------------------------------------------------------------------------

def add(b, x, y):
    return b.fadd(x, y, flags=FAST)


def sub(b, x, y):
    return b.fsub(x, y, flags=FAST)


def mul(b, x, y):
    return b.fmul(x, y, flags=FAST)


def horner(b, x, coefficients):
    """`c0*x^n + c1*x^(n-1) + ... + cn` (highest degree first, like `np.polyval`)."""
    acc = like(x, coefficients[0])
    for c in coefficients[1:]:
        acc = add(b, mul(b, acc, x), like(x, c))
    return acc


def monic(b, x, coefficients):
    """`x^n + c0*x^(n-1) + ... ` (Cephes' p1evl)."""
    acc = add(b, x, like(x, coefficients[0]))
    for c in coefficients[1:]:
        acc = add(b, mul(b, acc, x), like(x, c))
    return acc


def isnan(b, x):
    return b.fcmp_unordered("uno", x, x)


def widened(fn):
    """`fn` for float64, applied to float32 through float64 (one rounding at the end)."""

    def run(b, x):
        if x.type == F32:
            return b.fptrunc(fn(b, b.fpext(x, F64)), F32)
        return fn(b, x)

    run.__name__ = fn.__name__
    return run


def power_of_two(b, n, t):
    """2**n for an integer register `n` well inside the exponent range of float type `t`."""
    if t == F64:
        bits = b.shl(b.add(n, ir.Constant(I64, 1023)), ir.Constant(I64, 52))
    else:
        bits = b.shl(b.add(n, ir.Constant(I32, 127)), ir.Constant(I32, 23))
    return b.bitcast(bits, t)


@once
def scales_natively() -> bool:
    """Whether this CPU multiplies by 2**n in one instruction (AVX-512's vscalef), which
    LLVM's `ldexp` then is. Elsewhere LLVM makes `ldexp` a call to the C library per
    element, so `scale` builds powers of two from integer ops instead. Programs are
    stored per CPU name and features (`runtime.cache`), so the choice is safe to bake in."""
    from ...runtime.llvm_steps import llvm_ready

    return "+avx512f" in llvm_ready().host.features.split(",")


def scale(b, x, n):
    """x * 2**n for an integer register n, rounded once, so that results down to the
    subnormals come out right: `ldexp` where it is one instruction, else two products."""
    if scales_natively():
        n = b.trunc(n, I32) if n.type != I32 else n  # |n| is a float's exponent range
        return intrinsic(b, f"llvm.ldexp.{suffix(x.type)}.i32", x.type, [x, n])
    half = b.ashr(n, like(n, 1))
    return mul(b, mul(b, x, power_of_two(b, half, x.type)),
               power_of_two(b, b.sub(n, half), x.type))


def scale_down(b, x, n):
    """x * 2**n for n <= 0 down to the subnormals, with one rounding: without `ldexp`,
    x 2**(n + 64) is exact (a normal number), and the product with 2**-64 rounds once."""
    if scales_natively():
        return scale(b, x, n)
    bias = 64
    return mul(b, mul(b, x, power_of_two(b, b.add(n, like(n, bias)), x.type)),
               like(x, 2.0 ** -bias))


# --- exp ------------------------------------------------------------------------------------

LOG2E = 1.4426950408889634


def exp(b, x):
    """Cody-Waite reduction x = n ln2 + r, then a Pade (float64) or polynomial (float32)."""
    f64 = x.type == F64
    low, high = (-746.0, 710.0) if f64 else (-104.0, 89.0)
    clamped = call2(b, "minnum", call2(b, "maxnum", x, like(x, low)), like(x, high))
    n = call1(b, "rint", mul(b, clamped, like(x, LOG2E)))
    if f64:
        r = sub(b, sub(b, clamped, mul(b, n, like(x, 6.93145751953125e-1))),
                mul(b, n, like(x, 1.42860682030941723212e-6)))
        rr = mul(b, r, r)
        px = mul(b, r, horner(b, rr, [1.26177193074810590878e-4, 3.02994407707441961300e-2,
                                      9.99999999999999999910e-1]))
        q = horner(b, rr, [3.00198505138664455042e-6, 2.52448340349684104192e-3,
                           2.27265548208155028766e-1, 2.00000000000000000009e0])
        e = b.fdiv(px, sub(b, q, px))
        e = add(b, like(x, 1.0), add(b, e, e))
        ni = b.fptosi(n, I64)
    else:
        r = sub(b, sub(b, clamped, mul(b, n, like(x, 0.693359375))),
                mul(b, n, like(x, -2.12194440e-4)))
        p = horner(b, r, [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                          4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1])
        e = add(b, add(b, mul(b, p, mul(b, r, r)), r), like(x, 1.0))
        ni = b.fptosi(n, I32)
    return b.select(isnan(b, x), x, scale(b, e, ni))


# 2**f = 1 + f Q(f) on [-1/2, 1/2], Q highest degree first: minimax for the relative error
# (Lawson's iteration in float64; the coefficients of Cephes' exp2f to seven digits).
# Evaluated by Horner in float32 with FMAs it is within 0.94 ulp of 2**f.
_EXP2_Q = [1.5353362031132807e-4, 1.3398874650658922e-3, 9.61843735912283e-3,
           5.550332470535533e-2, 2.4022647913600614e-1, 6.93147202855338e-1]


def exp2_nonpositive(b, t):
    """2**t for t <= 0, for callers that fold log2(e) into their own arithmetic (gelu):
    n = rint(t) and f = t - n exactly, so no Cody-Waite reduction, and 2**n in one step
    (`scale_down`). A nan t gives 0: the caller's result must carry the nan another way.

    Rounding t costs |t| 2**-24 of relative accuracy, as rounding the argument of `exp`
    would; a caller folding the log2(e) into a product it rounds anyway loses nothing."""
    f64 = t.type == F64
    clamped = call2(b, "maxnum", t, like(t, -1100.0 if f64 else -150.0))  # rounds to 0
    if f64:  # not a hot path: the float64 exp, whose argument we round once
        return exp(b, mul(b, clamped, like(t, math.log(2.0))))
    n = call1(b, "rint", clamped)
    f = sub(b, clamped, n)
    power = add(b, mul(b, horner(b, f, _EXP2_Q), f), like(t, 1.0))
    return scale_down(b, power, b.fptosi(n, I32))


# --- log --------------------------------------------------------------------------------------

_LG = [6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
       2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
       1.479819860511658591e-01]


@widened
def log(b, x):
    """fdlibm's log: x = 2^k (1+f) with 1+f in [sqrt(2)/2, sqrt(2)), then a series in s."""
    tiny = b.fcmp_ordered("<", x, like(x, 2.2250738585072014e-308))
    y = b.select(tiny, mul(b, x, like(x, 2.0 ** 54)), x)
    k0 = b.select(tiny, ir.Constant(I64, -54), ir.Constant(I64, 0))
    bits = b.bitcast(y, I64)
    hx = b.add(b.lshr(bits, ir.Constant(I64, 32)), ir.Constant(I64, 0x3FF00000 - 0x3FE6A09E))
    k = b.add(k0, b.sub(b.lshr(hx, ir.Constant(I64, 20)), ir.Constant(I64, 0x3FF)))
    hx = b.add(b.and_(hx, ir.Constant(I64, 0x000FFFFF)), ir.Constant(I64, 0x3FE6A09E))
    low = b.and_(bits, ir.Constant(I64, 0xFFFFFFFF))
    m = b.bitcast(b.or_(b.shl(hx, ir.Constant(I64, 32)), low), F64)
    f = sub(b, m, like(x, 1.0))
    hfsq = mul(b, like(x, 0.5), mul(b, f, f))
    s = b.fdiv(f, add(b, like(x, 2.0), f))
    z = mul(b, s, s)
    w = mul(b, z, z)
    t1 = mul(b, w, horner(b, w, [_LG[5], _LG[3], _LG[1]]))
    t2 = mul(b, z, horner(b, w, [_LG[6], _LG[4], _LG[2], _LG[0]]))
    dk = b.sitofp(k, F64)
    # musl's order of evaluation: s*(hfsq+R) + k*ln2_lo - hfsq + f + k*ln2_hi
    result = add(b, mul(b, s, add(b, hfsq, add(b, t2, t1))),
                 mul(b, dk, like(x, 1.90821492927058770002e-10)))
    result = add(b, add(b, sub(b, result, hfsq), f),
                 mul(b, dk, like(x, 6.93147180369123816490e-01)))
    result = b.select(b.fcmp_ordered("==", x, like(x, math.inf)), x, result)
    result = b.select(b.fcmp_ordered("==", x, like(x, 0.0)), like(x, -math.inf), result)
    return b.select(b.fcmp_unordered("<", x, like(x, 0.0)), like(x, math.nan), result)


@widened
def log1p(b, x):
    """log(u) * x / (u - 1) with u = 1 + x: the rounding of u cancels out (Goldberg)."""
    u = add(b, x, like(x, 1.0))
    um1 = sub(b, u, like(x, 1.0))
    corrected = b.fdiv(mul(b, log(b, u), x), um1)
    exact = b.fcmp_ordered("==", um1, like(x, 0.0))  # u rounds to 1: log1p(x) is x
    result = b.select(exact, x, corrected)
    return b.select(b.fcmp_ordered("==", x, like(x, math.inf)), x,
                    b.select(b.fcmp_ordered("==", u, like(x, 0.0)), like(x, -math.inf), result))


# --- tanh, sigmoid, erf ---------------------------------------------------------------------

def tanh(b, x):
    """Cephes: a rational (float64) or polynomial (float32) in x² near 0, else via exp."""
    ax = call1(b, "fabs", x)
    z = mul(b, x, x)
    if x.type == F64:
        ratio = b.fdiv(horner(b, z, [-9.64399179425052238628e-1, -9.92877231001918586564e1,
                                     -1.61468768441708447952e3]),
                       monic(b, z, [1.12811678491632931402e2, 2.23548839060100448583e3,
                                    4.84406305325125486048e3]))
        small = add(b, x, mul(b, mul(b, x, z), ratio))
    else:
        p = horner(b, z, [-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2,
                          1.33314422036e-1, -3.33332819422e-1])
        small = add(b, mul(b, mul(b, p, z), x), x)
    e = exp(b, add(b, ax, ax))
    large = sub(b, like(x, 1.0), b.fdiv(like(x, 2.0), add(b, e, like(x, 1.0))))
    large = call2(b, "copysign", large, x)
    return b.select(b.fcmp_ordered("<", ax, like(x, 0.625)), small, large)


def sigmoid(b, x):
    """The reference's formula: exp(-|x|) never overflows."""
    e = exp(b, b.fneg(call1(b, "fabs", x)))
    one_plus = add(b, like(x, 1.0), e)
    positive = b.fcmp_ordered(">=", x, like(x, 0.0))
    return b.select(positive, b.fdiv(like(x, 1.0), one_plus), b.fdiv(e, one_plus))


@widened
def erf(b, x):
    """The reference kernel's Cephes ratios, term for term (it computes in float64 too)."""
    a = call1(b, "fabs", x)
    z = mul(b, x, x)
    small = b.fdiv(mul(b, x, horner(b, z, _ERF_T)), horner(b, z, _ERF_U))
    mid = b.fdiv(horner(b, a, _ERFC_P), horner(b, a, _ERFC_Q))
    capped = call2(b, "minnum", a, like(x, ERF_FAR))
    far = b.fdiv(horner(b, capped, _ERFC_R), horner(b, capped, _ERFC_S))
    erfc = mul(b, exp(b, b.fneg(z)), b.select(b.fcmp_ordered("<", a, like(x, 8.0)), mid, far))
    large = mul(b, sign(b, x), sub(b, like(x, 1.0), erfc))
    return b.select(b.fcmp_ordered("<=", a, like(x, 1.0)), small, large)


def sign(b, x):
    """NumPy's sign: -1, 0 or 1, and nan for nan."""
    positive = b.select(b.fcmp_ordered(">", x, like(x, 0.0)), like(x, 1.0), x)
    negative = b.select(b.fcmp_ordered("<", x, like(x, 0.0)), like(x, -1.0), positive)
    return b.select(b.fcmp_ordered("==", x, like(x, 0.0)), like(x, 0.0), negative)
