"""Elementwise functions: arithmetic with PyTorch's type promotion, math, activations.

Arithmetic and the math primitives map to one primitive each; activations such as `gelu`
or `softplus` are compositions and need no derivative of their own.

>>> import tracegrad as torch
>>> torch.tensor([1, 2]) / 2
tensor([0.5000, 1.0000])
"""

from __future__ import annotations

import math

from ..compiler import ops
from ..compiler.ops.dtypes import float32
from ..eager import apply, promote, to_dtype
from ..tensor import Tensor
from .naming import composite

_SCALARS = (int, float, bool)
_NO_ATTRS: dict = {}
_WEAK = {float: 2, int: 1}  # Python number type: the lowest dtype category it fits


def as_operand(x):
    """Tensors and Python scalars pass; NumPy values and sequences become tensors."""
    if isinstance(x, Tensor) or type(x) in _SCALARS:
        return x
    from ..creation import tensor

    if hasattr(x, "dtype") and getattr(x, "ndim", 1) == 0 and not hasattr(x, "_data"):
        return x.item()  # a NumPy scalar behaves as a Python one
    return tensor(x)


def binary(prim, a, b, *, floating: bool = False):
    """Apply a binary primitive after PyTorch's promotion (`floating`: ints become float)."""
    if isinstance(a, Tensor) and isinstance(b, Tensor) and a.dtype is b.dtype and (
            not floating or a.dtype.is_floating_point):
        return apply(prim, (a, b), _NO_ATTRS)
    # A Python number of the tensor's category: NumPy keeps it weak, as PyTorch does.
    if type(b) in _WEAK and isinstance(a, Tensor) and a.dtype.category >= _WEAK[type(b)]:
        if a.dtype.is_floating_point or not floating:
            return apply(prim, (a, b), _NO_ATTRS)
    if type(a) in _WEAK and isinstance(b, Tensor) and b.dtype.category >= _WEAK[type(a)]:
        if b.dtype.is_floating_point or not floating:
            return apply(prim, (a, b), _NO_ATTRS)
    a, b = as_operand(a), as_operand(b)
    dtype, (a, b) = promote(a, b)
    if floating and not dtype.is_floating_point:
        a, b = (to_dtype(x, float32) if isinstance(x, Tensor) else float(x) for x in (a, b))
    return apply(prim, (a, b), {})


def unary_input(x):
    """Integer inputs of float functions become float32 (sin of an int tensor is float)."""
    return x if x.dtype.is_floating_point else to_dtype(x, float32)


def unary(prim, x):
    return apply(prim, (unary_input(x),), _NO_ATTRS)


def add(input, other, *, alpha=1):
    if alpha != 1:
        other = mul(other, alpha)
    return binary(ops.add, input, other)


def sub(input, other, *, alpha=1):
    if alpha != 1:
        other = mul(other, alpha)
    if getattr(input, "dtype", None) is ops.bool_ and getattr(other, "dtype", None) is ops.bool_:
        raise RuntimeError("Subtraction, the `-` operator, with two bool tensors is not "
                           "supported. Use the `^` or `logical_xor()` operator instead.")
    result = binary(ops.sub, input, other)
    if not isinstance(input, Tensor) and result.grad_fn is not None:
        result.grad_fn.display_name = "RsubBackward1"  # `2 - x` is PyTorch's rsub
    return result


def mul(input, other):
    return binary(ops.mul, input, other)


def div(input, other, *, rounding_mode=None):
    if rounding_mode is None and not isinstance(input, Tensor):
        return mul(reciprocal(other), input)  # `2 / x`, computed as PyTorch does
    quotient = binary(ops.div, input, other, floating=True)
    if rounding_mode is None:
        return quotient
    rounded = floor(quotient) if rounding_mode == "floor" else trunc(quotient)
    dtype, _ = promote(as_operand(input), as_operand(other))
    return rounded if dtype.is_floating_point else rounded.to(dtype)


true_divide = divide = div
multiply = mul
subtract = sub


def pow(input, exponent):
    scalar_base = not isinstance(input, Tensor)
    if scalar_base:  # 2 ** x: the base becomes a 0-d tensor
        from ..creation import tensor

        input = tensor(input, dtype=exponent.dtype if exponent.dtype.is_floating_point else None)
    result = binary(ops.pow, input, exponent)
    if isinstance(exponent, Tensor) and result.grad_fn is not None:
        result.grad_fn.display_name = "PowBackward2" if scalar_base else "PowBackward1"
    return result


def neg(input):
    if input.dtype is ops.bool_:
        raise RuntimeError("Negation, the `-` operator, on a bool tensor is not supported. If "
                           "you are trying to invert a mask, use the `~` or `logical_not()` "
                           "operator instead.")
    return apply(ops.neg, (input,), {})


negative = neg


def abs(input):
    return apply(ops.abs, (input,), {})


def sign(input):
    return apply(ops.sign, (input,), {})


def _float_unary(prim):
    """The public function for a float primitive: one element at a time, ints as float32."""

    def elementwise(input):
        return unary(prim, input)

    elementwise.__name__ = elementwise.__qualname__ = prim.name
    elementwise.__doc__ = f"`{prim.name}` of each element (integer tensors give float32)."
    return elementwise


exp, log, log1p, sqrt, sin, cos, tanh, sigmoid, erf = (
    _float_unary(getattr(ops, name))
    for name in ("exp", "log", "log1p", "sqrt", "sin", "cos", "tanh", "sigmoid", "erf"))


@composite("rsqrt")
def rsqrt(input):
    return 1 / sqrt(input)


@composite("tan")
def tan(input):
    return sin(input) / cos(input)


@composite("log2")
def log2(input):
    return log(input) / math.log(2)


@composite("exp2")
def exp2(input):
    return exp(input * math.log(2))


@composite("reciprocal")
def reciprocal(input):
    return binary(ops.div, 1.0, input, floating=True)  # not `1 / input`: that calls us


@composite("square", backward_name="PowBackward0")
def square(input):
    return input * input


def maximum(input, other):
    return binary(ops.maximum, input, other)


def minimum(input, other):
    return binary(ops.minimum, input, other)


def where(condition, input=None, other=None):
    """`input` where `condition` holds, else `other` (tensors or scalars)."""
    if input is None and other is None:
        return condition.nonzero(as_tuple=True)
    condition = as_operand(condition)
    if condition.dtype is not ops.bool_:
        condition = condition.to(ops.bool_)
    dtype, (input, other) = promote(as_operand(input), as_operand(other))
    # np.where does not treat Python scalars as weak: give them the result's dtype
    input, other = (x if isinstance(x, Tensor) else dtype.numpy.type(x) for x in (input, other))
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        from ..creation import tensor

        input = tensor(input, dtype=dtype)
    return apply(ops.where, (condition, input, other), {})


@composite("clamp", backward_name="ClampBackward1")
def clamp(input, min=None, max=None):
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    # where() rather than maximum(): at the bounds the gradient goes to input, as in PyTorch
    result = input
    if min is not None:
        result = where(result < min, min, result)
    if max is not None:
        result = where(result > max, max, result)
    return result


clip = clamp


@composite("relu")
def relu(input):
    return apply(ops.relu, (input,), _NO_ATTRS)


def gelu(input, approximate: str = "none"):
    if approximate not in ("none", "tanh"):
        raise RuntimeError(f"approximate argument must be either none or tanh, not "
                           f"{approximate!r}")
    return apply(ops.gelu, (unary_input(input),), {"approximate": approximate})


@composite("silu")
def silu(input):
    return input * sigmoid(input)


@composite("softplus")
def softplus(input, beta: float = 1.0, threshold: float = 20.0):
    scaled = input * beta
    # log1p(exp(-|z|)) + max(z, 0) never overflows; above `threshold` PyTorch returns input
    smooth = (log1p(exp(-abs(scaled))) + relu(scaled)) / beta
    return where(scaled > threshold, input, smooth)


@composite("floor")
def floor(input):
    return _rounding(input, "floor")


@composite("trunc")
def trunc(input):
    return _rounding(input, "trunc")


def _rounding(input, how: str):
    import numpy as np

    from ..creation import tensor

    # Piecewise constant: zero gradient, so the result is computed outside the graph.
    return tensor(getattr(np, how)(input._data), dtype=input.dtype)


def _compare(prim):
    def compare(input, other):
        return binary(prim, input, other)

    compare.__name__ = prim.name
    return compare


lt, le, gt, ge, eq, ne = (_compare(getattr(ops, n)) for n in ("lt", "le", "gt", "ge", "eq", "ne"))
less, less_equal, greater, greater_equal, not_equal = lt, le, gt, ge, ne


def logical_and(input, other):
    return binary(ops.logical_and, input.to(ops.bool_), as_operand(other))


def logical_or(input, other):
    return binary(ops.logical_or, input.to(ops.bool_), as_operand(other))


def logical_not(input):
    return apply(ops.logical_not, (input,), {})


def isnan(input):
    return input != input  # noqa: PLR0124 - only NaN differs from itself


def equal(input, other) -> bool:
    return input.shape == other.shape and bool((input == other).all())


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> bool:
    import numpy as np

    return bool(np.allclose(input._data, other._data, rtol=rtol, atol=atol, equal_nan=equal_nan))
