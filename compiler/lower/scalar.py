"""Elementwise primitives as scalar IR: one emitter per op, most of them one IRBuilder call.

An emitter gets the builder and its operands as registers of one type (the expression
builder has already converted Python scalars and mixed inputs, see `expr.py`) and returns
the result register. The loop generator decides where the code goes and LLVM vectorises
the loop around it; no emitter knows about loops or memory.

NumPy's semantics are the reference: `maximum` propagates nan, `sign(nan)` is nan,
comparisons with nan are false except `!=`, and a float is true when it is not 0.

>>> sorted(EMITTERS)[:4]
['abs', 'add', 'cast', 'copy']
"""

from __future__ import annotations

import math

from llvmlite import ir

from ..ops.fused import GELU_A, GELU_C, INV_SQRT2, INV_SQRT_2PI
from . import mathlib
from .llvm_types import I1, REGISTER, call1, call2, convert, intrinsic, is_float, like


# The graph's own arithmetic rounds every operation, as NumPy does: no `contract` here, so
# a fused kernel gives the bits of the same ops run one by one. Only the polynomials
# inside `mathlib` may fuse multiply-adds (their accuracy was designed with that).
def add(b, x, y):
    return b.fadd(x, y)


def sub(b, x, y):
    return b.fsub(x, y)


def mul(b, x, y):
    return b.fmul(x, y)



def _float_or_int(float_op, int_op):
    """An emitter that picks the float or the integer instruction by operand type."""

    def emit(b, x, y):
        return float_op(b, x, y) if is_float(x.type) else int_op(b, x, y)

    return emit


def _compare(op):
    def emit(b, x, y):
        if is_float(x.type):
            # NumPy: every comparison with nan is false, except `!=`, which is true.
            return b.fcmp_unordered(op, x, y) if op == "!=" else b.fcmp_ordered(op, x, y)
        if x.type == I1:
            return b.icmp_unsigned(op, x, y)
        return b.icmp_signed(op, x, y)

    return emit


def _extremum(op):
    """NumPy's maximum/minimum: x if (x op y or x is nan) else y, so nan propagates."""

    def emit(b, x, y):
        if is_float(x.type):
            keep = b.or_(b.fcmp_ordered(op + "=", x, y), mathlib.isnan(b, x))
        elif x.type == I1:
            keep = b.icmp_unsigned(op + "=", x, y)
        else:
            keep = b.icmp_signed(op + "=", x, y)
        return b.select(keep, x, y)

    return emit


def _neg(b, x):
    return b.fneg(x) if is_float(x.type) else b.sub(like(x, 0), x)


def _abs(b, x):
    if is_float(x.type):
        return call1(b, "fabs", x)
    return intrinsic(b, f"llvm.abs.i{x.type.width}", x.type, [x, ir.Constant(I1, 0)])


def _sign(b, x):
    if is_float(x.type):
        return mathlib.sign(b, x)
    positive = b.zext(b.icmp_signed(">", x, like(x, 0)), x.type)
    negative = b.zext(b.icmp_signed("<", x, like(x, 0)), x.type)
    return b.sub(positive, negative)


def _pow(b, x, y):
    """x**y; the scalar exponents NumPy special-cases are special-cased the same way."""
    if isinstance(y, ir.Constant) and y.constant in (0.0, 0.5, 1.0, 2.0, -1.0):
        k = y.constant  # NumPy's own fast paths for these scalar exponents
        if k == 0.0:
            return like(x, 1.0)  # pow(nan, 0) is 1 too
        if k == 0.5:
            return call1(b, "sqrt", x)
        return {1.0: x, 2.0: mul(b, x, x), -1.0: b.fdiv(like(x, 1.0), x)}[k]
    return call2(b, "pow", x, y)


def _relu(b, x):
    return _extremum(">")(b, x, like(x, 0))


def _logical(op):
    def emit(b, x, y):
        return op(b, x, y)

    return emit


def _cast(b, x, dtype):
    return convert(b, x, REGISTER[dtype])


def _erf_of_scaled(b, x):
    """erf(x / sqrt 2) as the reference computes it: the product in x's type first."""
    return mathlib.erf(b, mul(b, x, like(x, INV_SQRT2)))


def _gelu(b, x, approximate):
    if approximate == "tanh":
        _, r, a = _tanh_gelu_terms(b, x, mathlib.mul(b, x, x))
        return mul(b, x, mathlib.mul(b, r, a))
    half_x = mul(b, like(x, 0.5), x)
    return mul(b, half_x, add(b, like(x, 1.0), _erf_of_scaled(b, x)))


def _gelu_slope(b, x, approximate):
    if approximate == "tanh":
        # d/dx x σ = σ + x 2u' σ (1 - σ), with σ = r a and σ (1 - σ) = e r²: r (x 2u' e r + a)
        x2 = mathlib.mul(b, x, x)
        e, r, a = _tanh_gelu_terms(b, x, x2)
        x_du2 = mathlib.mul(b, x, _fma(b, x2, 6 * GELU_A * GELU_C, 2 * GELU_C))
        return mathlib.mul(b, r, mathlib.add(b, mathlib.mul(b, mathlib.mul(b, e, x_du2), r), a))
    cdf = mul(b, like(x, 0.5), add(b, like(x, 1.0), _erf_of_scaled(b, x)))
    density = mathlib.exp(b, mul(b, mul(b, like(x, -0.5), x), x))
    return add(b, cdf, mul(b, mul(b, x, like(x, INV_SQRT_2PI)), density))


def _tanh_gelu_terms(b, x, x2):
    """For the tanh approximation's u = C (x + A x³), given x2 = x²: e = exp(-2|u|),
    r = 1 / (1 + e) and a = 1 or e, such that σ(2u) = r a.

    The reference's (1 + tanh u) / 2 is σ(2u): one exp of -2|u| (which never overflows)
    and one division, where tanh would need a polynomial as well, and no cancellation
    where tanh u nears -1. For u >= 0, σ(2u) = r and 1 - σ(2u) = e r; for u < 0 the other
    way round, so σ (1 - σ) = e r² either way, with no select. As 1 + A x² > 0, u has the
    sign of x, and e = 2**t with t = |x| (-2C - 2AC x²) log2(e).

    Inside one primitive the rounding is ours to choose, so unlike the graph's own
    arithmetic these products may fuse into FMAs (`mathlib`'s `contract`), and log2(e)
    goes into the constants (`mathlib.exp2_nonpositive`). What bounds this loop on this
    machine (Zen 4, data in cache) is how many vector instructions it issues, chiefly
    products and FMAs, not how long its dependency chain is (a polynomial in Estrin's
    form, shorter but with two more products, was slower). The slope takes 25 with
    AVX-512's one-instruction `ldexp` (`mathlib.scale`) and σ (1 - σ) factored into
    `r (x 2u' e r + a)`: 0.59 ns per element of the gelu step's backward on one core,
    against 0.66 with 28 (two products to scale and one more to combine), and 0.73 with
    32 (a select of σ and 1 - σ and Cody-Waite's exp)."""
    to_base_2 = -2 * GELU_C * mathlib.LOG2E
    t = mathlib.mul(b, call1(b, "fabs", x), _fma(b, x2, GELU_A * to_base_2, to_base_2))
    e = mathlib.exp2_nonpositive(b, t)
    r = b.fdiv(like(x, 1.0), mathlib.add(b, e, like(x, 1.0)))
    return e, r, b.select(b.fcmp_ordered(">=", x, like(x, 0.0)), like(x, 1.0), e)


def _fma(b, x, y: float, z: float):
    """x y + z with constant y and z, fusable (see `_tanh_gelu_terms`)."""
    return mathlib.add(b, mathlib.mul(b, x, like(x, y)), like(x, z))


def _float_only(fn):
    fn.float_only = True
    return fn


EMITTERS = {
    # unary
    "neg": _neg,
    "exp": _float_only(mathlib.exp),
    "log": _float_only(mathlib.log),
    "log1p": _float_only(mathlib.log1p),
    "sin": _float_only(lambda b, x: call1(b, "sin", x)),  # the C library's: exact reduction
    "cos": _float_only(lambda b, x: call1(b, "cos", x)),
    "tanh": _float_only(mathlib.tanh),
    "sigmoid": _float_only(mathlib.sigmoid),
    "sqrt": _float_only(lambda b, x: call1(b, "sqrt", x)),
    "erf": _float_only(mathlib.erf),
    "abs": _abs,
    "sign": _sign,
    "relu": _relu,
    "copy": lambda b, x: x,
    "gelu": _float_only(_gelu),
    "gelu_slope": _float_only(_gelu_slope),
    # binary
    "add": _float_or_int(add, lambda b, x, y: b.add(x, y)),
    "sub": _float_or_int(sub, lambda b, x, y: b.sub(x, y)),
    "mul": _float_or_int(mul, lambda b, x, y: b.mul(x, y)),
    "div": _float_only(lambda b, x, y: b.fdiv(x, y)),
    "pow": _float_only(_pow),
    "maximum": _extremum(">"),
    "minimum": _extremum("<"),
    # comparisons and logic (operands of the logical ops arrive as i1)
    "lt": _compare("<"), "le": _compare("<="), "gt": _compare(">"), "ge": _compare(">="),
    "eq": _compare("=="), "ne": _compare("!="),
    "logical_and": _logical(lambda b, x, y: b.and_(x, y)),
    "logical_or": _logical(lambda b, x, y: b.or_(x, y)),
    "logical_not": lambda b, x: b.xor(x, ir.Constant(I1, 1)),
    "where": lambda b, c, x, y: b.select(c, x, y),
    "cast": _cast,
}

ATTRIBUTES = {"cast": ("dtype",), "gelu": ("approximate",), "gelu_slope": ("approximate",)}
LOGICAL = frozenset({"logical_and", "logical_or", "logical_not"})
COMPARISONS = frozenset({"lt", "le", "gt", "ge", "eq", "ne"})
# Rough cost of one element, in nanoseconds of one core, to decide on threads.
EXPENSIVE = {"exp": 0.4, "log": 0.5, "log1p": 0.7, "tanh": 0.6, "sigmoid": 0.5, "erf": 1.0,
             "gelu": 0.8, "gelu_slope": 1.0, "sin": 8.0, "cos": 8.0, "pow": 15.0,
             "div": 0.1, "sqrt": 0.1}


def emit(b: ir.IRBuilder, op: str, args: list, attrs: dict) -> ir.Value:
    """The result register of elementwise `op` on operand registers `args`."""
    extra = [attrs[name] for name in ATTRIBUTES.get(op, ())]
    return EMITTERS[op](b, *args, *extra)


def supports(op: str, operand_is_float: bool) -> bool:
    """Whether `op` lowers for operands of this kind (int `div`/`pow`/`exp` do not)."""
    fn = EMITTERS.get(op)
    return fn is not None and (operand_is_float or not getattr(fn, "float_only", False))


INFINITY = math.inf
