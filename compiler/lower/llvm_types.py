"""The LLVM side of the op set's five dtypes, and the few IRBuilder idioms every emitter uses.

In registers a `bool` is an `i1`; in memory it is a byte, as in NumPy. Fast-math flags:
`FAST` (just `contract`, which lets LLVM fuse a multiply and an add into one FMA) is for
the polynomials of `mathlib`, whose accuracy assumes it; the graph's own arithmetic
carries no flag, so it rounds op by op exactly like NumPy (an FMA would change the bits
of, say, an ill-conditioned layer_norm backward by far more than an ulp). `reassoc` is
never used: it would let LLVM reorder a sum, so its bits would depend on vector width.
"""

from __future__ import annotations

from llvmlite import ir

from ..ops.dtypes import DType, bool_, float32, float64, int32, int64

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
F32, F64 = ir.FloatType(), ir.DoubleType()
PTR = ir.PointerType()
VOID = ir.VoidType()
FAST = ("contract",)  # see the module docstring

REGISTER = {bool_: I1, int32: I32, int64: I64, float32: F32, float64: F64}
MEMORY = {bool_: I8, int32: I32, int64: I64, float32: F32, float64: F64}


def is_float(t: ir.Type) -> bool:
    return isinstance(t, (ir.FloatType, ir.DoubleType))


def constant(t: ir.Type, value) -> ir.Constant:
    """`value` as a constant of register type `t` (bools and ints from any Python number)."""
    if is_float(t):
        return ir.Constant(t, float(value))
    if t == I1:
        return ir.Constant(I1, int(bool(value)))
    return ir.Constant(t, int(value))


def like(x: ir.Value, value) -> ir.Constant:
    """A constant of `x`'s type."""
    return constant(x.type, value)


def intrinsic(b: ir.IRBuilder, name: str, ret: ir.Type, args: list, arg_types=None):
    """Call the LLVM intrinsic (or C function) `name`, declaring it once per module."""
    module = b.module
    arg_types = arg_types or [a.type for a in args]
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ret, arg_types), name=name)
    return b.call(fn, args)


def suffix(t: ir.Type) -> str:
    """The type suffix of an overloaded intrinsic: f32, f64, i64 ..."""
    if t == F32:
        return "f32"
    if t == F64:
        return "f64"
    return f"i{t.width}"


def call1(b: ir.IRBuilder, name: str, x: ir.Value) -> ir.Value:
    """`llvm.<name>.<type>(x)`, e.g. `call1(b, "sqrt", x)`."""
    return intrinsic(b, f"llvm.{name}.{suffix(x.type)}", x.type, [x])


def call2(b: ir.IRBuilder, name: str, x: ir.Value, y: ir.Value) -> ir.Value:
    return intrinsic(b, f"llvm.{name}.{suffix(x.type)}", x.type, [x, y])


def to_register(b: ir.IRBuilder, value: ir.Value, dtype: DType) -> ir.Value:
    """A loaded memory value as a register value (bytes to i1)."""
    if dtype is bool_:
        return b.icmp_unsigned("!=", value, ir.Constant(I8, 0))
    return value


def to_memory(b: ir.IRBuilder, value: ir.Value, dtype: DType) -> ir.Value:
    if dtype is bool_:
        return b.zext(value, I8)
    return value


def convert(b: ir.IRBuilder, x: ir.Value, to: ir.Type) -> ir.Value:
    """NumPy's `astype` between register types (float to int saturates instead of UB)."""
    src = x.type
    if src == to:
        return x
    if is_float(src) and is_float(to):
        return b.fpext(x, to) if to == F64 else b.fptrunc(x, to)
    if is_float(src):
        if to == I1:
            return b.fcmp_unordered("!=", x, like(x, 0.0))  # nan is truthy, as in NumPy
        # x86's answer for nan and out-of-range values (what NumPy gives): the minimum int
        name = f"llvm.fptosi.sat.{suffix(to)}.{suffix(src)}"
        limit = float(2 ** (to.width - 1))
        inside = b.and_(b.fcmp_ordered("<", x, like(x, limit)),
                        b.fcmp_ordered(">=", x, like(x, -limit)))
        return b.select(inside, intrinsic(b, name, to, [x]), ir.Constant(to, -(2 ** (to.width - 1))))
    if to == I1:
        return b.icmp_unsigned("!=", x, like(x, 0))
    if is_float(to):
        return b.uitofp(x, to) if src == I1 else b.sitofp(x, to)
    if src == I1:
        return b.zext(x, to)
    return b.sext(x, to) if to.width > src.width else b.trunc(x, to)


def translate_only(fn: ir.Function) -> None:
    """Mark `fn` for LLVM to translate, not optimise (`optnone`, which needs `noinline`):
    for code already as wanted, or run too little for O3 to pay (`program.py`,
    `transpose.py`)."""
    fn.attributes.add("noinline")
    fn.attributes.add("optnone")
