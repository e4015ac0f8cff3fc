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
from ..errors import not_a_tensor
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
    a, b = _operand(prim, a, "input", 1, b), _operand(prim, b, "other", 2, a)
    dtype, (a, b) = promote(a, b)
    if floating and not dtype.is_floating_point:
        a, b = (to_dtype(x, float32) if isinstance(x, Tensor) else float(x) for x in (a, b))
    return apply(prim, (a, b), {})


def _operand(prim, x, argument: str, position: int, other):
    """`as_operand(x)`, or PyTorch's TypeError for what cannot be one (a string, None)."""
    try:
        return as_operand(x)
    except (TypeError, RuntimeError):  # `tensor(x)` could not make numbers of it
        raise not_a_tensor(prim.name, argument, position, x, [other]) from None


def unary_input(x):
    """Integer inputs of float functions become float32 (sin of an int tensor is float)."""
    return x if x.dtype.is_floating_point else to_dtype(x, float32)


def unary(prim, x):
    try:
        x = unary_input(x)
    except AttributeError:  # not a tensor
        raise not_a_tensor(prim.name, "input", 1, x) from None
    return apply(prim, (x,), _NO_ATTRS)


def add(input, other, *, alpha=1):
    """`input + alpha * other` elementwise, with broadcasting and PyTorch's type promotion
    (also `x + y` and `x.add(y)`); either side may be a Python number.

    Example::

        >>> import tracegrad as torch
        >>> torch.add(torch.tensor([1, 2]), torch.tensor([10, 20]), alpha=2)
        tensor([21, 42])
        >>> torch.tensor([1, 2]) + 0.5
        tensor([1.5000, 2.5000])
    """
    if alpha != 1:
        other = mul(other, alpha)
    return binary(ops.add, input, other)


def sub(input, other, *, alpha=1):
    """`input - alpha * other` elementwise, with broadcasting (also `x - y`; alias
    `subtract`). Two bool tensors cannot be subtracted, as in PyTorch.

    Example::

        >>> import tracegrad as torch
        >>> torch.sub(torch.tensor([5.0, 7.0]), torch.tensor([1.0, 2.0]))
        tensor([4., 5.])
        >>> 1 - torch.tensor([1, 2])
        tensor([ 0, -1])
    """
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
    """`input * other` elementwise, with broadcasting (also `x * y`; alias `multiply`).

    Example::

        >>> import tracegrad as torch
        >>> torch.mul(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0]))
        tensor([3., 8.])
        >>> torch.tensor([1, 2]) * 1.5
        tensor([1.5000, 3.0000])
    """
    return binary(ops.mul, input, other)


def div(input, other, *, rounding_mode=None):
    """`input / other` elementwise (also `x / y`; aliases `divide`, `true_divide`).

    True division: integer tensors give float32. `rounding_mode="floor"` or `"trunc"`
    rounds the quotient and keeps the inputs' promoted dtype.

    Example::

        >>> import tracegrad as torch
        >>> torch.div(torch.tensor([1, 2]), 2)
        tensor([0.5000, 1.0000])
        >>> torch.div(torch.tensor([-7, 7]), 2, rounding_mode="floor")
        tensor([-4,  3])
    """
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
    """`input ** exponent` elementwise (also `x ** y`); either may be a Python number.

    Example::

        >>> import tracegrad as torch
        >>> torch.pow(torch.tensor([1.0, 2.0, 3.0]), 2)
        tensor([1., 4., 9.])
        >>> 2 ** torch.tensor([0.0, 1.0, 2.0])
        tensor([1., 2., 4.])
    """
    scalar_base = not isinstance(input, Tensor)
    if scalar_base:  # 2 ** x: the base becomes a 0-d tensor
        from ..creation import tensor

        input = tensor(input, dtype=exponent.dtype if exponent.dtype.is_floating_point else None)
    result = binary(ops.pow, input, exponent)
    if isinstance(exponent, Tensor) and result.grad_fn is not None:
        result.grad_fn.display_name = "PowBackward2" if scalar_base else "PowBackward1"
    return result


def neg(input):
    """`-input` elementwise (also unary `-`; alias `negative`); not for bool tensors.

    Example::

        >>> import tracegrad as torch
        >>> torch.neg(torch.tensor([1.0, -2.0]))
        tensor([-1.,  2.])
    """
    if input.dtype is ops.bool_:
        raise RuntimeError("Negation, the `-` operator, on a bool tensor is not supported. If "
                           "you are trying to invert a mask, use the `~` or `logical_not()` "
                           "operator instead.")
    return apply(ops.neg, (input,), {})


negative = neg


def abs(input):
    """The absolute value of each element (also `abs(x)`).

    Example::

        >>> import tracegrad as torch
        >>> torch.abs(torch.tensor([-1.5, 2.0]))
        tensor([1.5000, 2.0000])
    """
    return apply(ops.abs, (input,), {})


def sign(input):
    """-1, 0 or 1 for each element's sign (its gradient is zero).

    Example::

        >>> import tracegrad as torch
        >>> torch.sign(torch.tensor([-2.0, 0.0, 3.0]))
        tensor([-1.,  0.,  1.])
    """
    return apply(ops.sign, (input,), {})


# The float primitives' docstrings: one template, and per name what the function computes,
# an example's input and what the example prints.
_FLOAT_UNARY_DOC = """Elementwise {what}: `torch.{name}(x)` or `x.{name}()`; integer tensors
    give float32.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor({input})
        >>> torch.{name}(x.float())
        {output}
        >>> x.{name}()  # an integer tensor gives float32
        {output}
    """
_FLOAT_UNARY_EXAMPLES = {  # the inputs are integers
    "exp": ("`e ** x`", "[0, 1]", "tensor([1.0000, 2.7183])"),
    "log": ("natural logarithm", "[1, 2]", "tensor([0.0000, 0.6931])"),
    "log1p": ("`log(1 + x)`, accurate for small x", "[0, 1]", "tensor([0.0000, 0.6931])"),
    "sqrt": ("square root", "[4, 9]", "tensor([2., 3.])"),
    "sin": ("sine (of radians)", "[0, 1]", "tensor([0.0000, 0.8415])"),
    "cos": ("cosine (of radians)", "[0, 1]", "tensor([1.0000, 0.5403])"),
    "tanh": ("hyperbolic tangent", "[0, 1]", "tensor([0.0000, 0.7616])"),
    "sigmoid": ("logistic sigmoid `1 / (1 + exp(-x))`", "[0, 1]", "tensor([0.5000, 0.7311])"),
    "erf": ("error function", "[0, 1]", "tensor([0.0000, 0.8427])"),
}


def _float_unary(prim):
    """The public function for a float primitive: one element at a time, ints as float32."""

    def elementwise(input):
        return unary(prim, input)

    what, example, printed = _FLOAT_UNARY_EXAMPLES[prim.name]
    elementwise.__name__ = elementwise.__qualname__ = prim.name
    elementwise.__doc__ = _FLOAT_UNARY_DOC.format(name=prim.name, what=what, input=example,
                                                  output=printed)
    return elementwise


exp, log, log1p, sqrt, sin, cos, tanh, sigmoid, erf = (
    _float_unary(getattr(ops, name))
    for name in ("exp", "log", "log1p", "sqrt", "sin", "cos", "tanh", "sigmoid", "erf"))


@composite("rsqrt")
def rsqrt(input):
    """`1 / sqrt(x)` of each element.

    Example::

        >>> import tracegrad as torch
        >>> torch.rsqrt(torch.tensor([1.0, 4.0]))
        tensor([1.0000, 0.5000])
    """
    return 1 / sqrt(input)


@composite("tan")
def tan(input):
    """The tangent of each element (of radians).

    Example::

        >>> import tracegrad as torch
        >>> torch.tan(torch.tensor([0.0, 1.0]))
        tensor([0.0000, 1.5574])
    """
    return sin(input) / cos(input)


@composite("log2")
def log2(input):
    """The base-2 logarithm of each element.

    Example::

        >>> import tracegrad as torch
        >>> torch.log2(torch.tensor([1.0, 8.0]))
        tensor([0., 3.])
    """
    return log(input) / math.log(2)


@composite("exp2")
def exp2(input):
    """`2 ** x` of each element.

    Example::

        >>> import tracegrad as torch
        >>> torch.exp2(torch.tensor([0.0, 3.0]))
        tensor([1., 8.])
    """
    return exp(input * math.log(2))


@composite("reciprocal")
def reciprocal(input):
    """`1 / x` of each element (integer tensors give float32).

    Example::

        >>> import tracegrad as torch
        >>> torch.reciprocal(torch.tensor([2.0, 4.0]))
        tensor([0.5000, 0.2500])
    """
    return binary(ops.div, 1.0, input, floating=True)  # not `1 / input`: that calls us


@composite("square", backward_name="PowBackward0")
def square(input):
    """`x * x` of each element.

    Example::

        >>> import tracegrad as torch
        >>> torch.square(torch.tensor([-2.0, 3.0]))
        tensor([4., 9.])
    """
    return input * input


def maximum(input, other):
    """The larger of the two, elementwise, with broadcasting.

    Example::

        >>> import tracegrad as torch
        >>> torch.maximum(torch.tensor([1.0, 5.0]), torch.tensor([3.0, 2.0]))
        tensor([3., 5.])
    """
    return binary(ops.maximum, input, other)


def minimum(input, other):
    """The smaller of the two, elementwise, with broadcasting.

    Example::

        >>> import tracegrad as torch
        >>> torch.minimum(torch.tensor([1.0, 5.0]), torch.tensor([3.0, 2.0]))
        tensor([1., 2.])
    """
    return binary(ops.minimum, input, other)


def where(condition, input=None, other=None):
    """`input` where `condition` holds, else `other` (tensors or scalars), broadcast
    together; `where(condition)` alone is `condition.nonzero(as_tuple=True)`.

    As a method, `x.where(condition, other)` takes `x` as `input`.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([-1.0, 2.0])
        >>> torch.where(x > 0, x, 0.0)
        tensor([0., 2.])
        >>> torch.where(x > 0)
        (tensor([1]),)
    """
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
    """Each element limited to `[min, max]` (either bound may be None); alias `clip`.

    At a bound the gradient goes to `input`, as in PyTorch.

    Example::

        >>> import tracegrad as torch
        >>> torch.clamp(torch.tensor([-2.0, 0.5, 3.0]), min=0.0, max=1.0)
        tensor([0.0000, 0.5000, 1.0000])
        >>> torch.tensor([-2.0, 3.0]).clamp(max=1.0)
        tensor([-2.,  1.])
    """
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
    """`max(x, 0)` of each element.

    Example::

        >>> import tracegrad as torch
        >>> torch.relu(torch.tensor([-1.0, 2.0]))
        tensor([0., 2.])
    """
    return apply(ops.relu, (input,), _NO_ATTRS)


def gelu(input, approximate: str = "none"):
    """`x * Phi(x)` of each element (Phi: the standard normal CDF); `approximate="tanh"`
    uses the tanh formula instead.

    Example::

        >>> import tracegrad as torch
        >>> import tracegrad.nn.functional as F
        >>> F.gelu(torch.tensor([-1.0, 0.0, 1.0]))
        tensor([-0.1587,  0.0000,  0.8413])
        >>> F.gelu(torch.tensor([1.0]), approximate="tanh")
        tensor([0.8412])
    """
    if approximate not in ("none", "tanh"):
        raise RuntimeError(f"approximate argument must be either none or tanh, not "
                           f"{approximate!r}")
    return apply(ops.gelu, (unary_input(input),), {"approximate": approximate})


@composite("silu")
def silu(input):
    """`x * sigmoid(x)` of each element (swish).

    Example::

        >>> import tracegrad as torch
        >>> import tracegrad.nn.functional as F
        >>> F.silu(torch.tensor([-1.0, 0.0, 1.0]))
        tensor([-0.2689,  0.0000,  0.7311])
    """
    return input * sigmoid(input)


@composite("softplus")
def softplus(input, beta: float = 1.0, threshold: float = 20.0):
    """`log(1 + exp(beta * x)) / beta` of each element; `x` itself where `beta * x`
    exceeds `threshold`.

    Example::

        >>> import tracegrad as torch
        >>> import tracegrad.nn.functional as F
        >>> F.softplus(torch.tensor([-1.0, 0.0, 1.0]))
        tensor([0.3133, 0.6931, 1.3133])
    """
    scaled = input * beta
    # log1p(exp(-|z|)) + max(z, 0) never overflows; above `threshold` PyTorch returns input
    smooth = (log1p(exp(-abs(scaled))) + relu(scaled)) / beta
    return where(scaled > threshold, input, smooth)


@composite("floor")
def floor(input):
    """The largest integer not above each element (same dtype; zero gradient).

    Example::

        >>> import tracegrad as torch
        >>> torch.floor(torch.tensor([-1.5, 1.5]))
        tensor([-2.,  1.])
    """
    return _rounding(input, "floor")


@composite("trunc")
def trunc(input):
    """Each element rounded towards zero (same dtype; zero gradient).

    Example::

        >>> import tracegrad as torch
        >>> torch.trunc(torch.tensor([-1.5, 1.5]))
        tensor([-1.,  1.])
    """
    return _rounding(input, "trunc")


def _rounding(input, how: str):
    import numpy as np

    from ..creation import tensor

    # Piecewise constant: zero gradient, so the result is computed outside the graph.
    return tensor(getattr(np, how)(input._data), dtype=input.dtype)


# The comparisons' docstrings: one template, and per name the operator and what comparing
# [1, 2, 3] with 2 prints.
_COMPARE_DOC = """`input {symbol} other` elementwise, with broadcasting, as a bool tensor (also the
    `{symbol}` operator); not differentiable.

    Example::

        >>> import tracegrad as torch
        >>> torch.{name}(torch.tensor([1, 2, 3]), 2)
        {output}
        >>> torch.tensor([1, 2, 3]) {symbol} 2
        {output}
    """
_COMPARE_EXAMPLES = {
    "lt": ("<", "tensor([ True, False, False])"),
    "le": ("<=", "tensor([ True,  True, False])"),
    "gt": (">", "tensor([False, False,  True])"),
    "ge": (">=", "tensor([False,  True,  True])"),
    "eq": ("==", "tensor([False,  True, False])"),
    "ne": ("!=", "tensor([ True, False,  True])"),
}


def _compare(prim):
    def compare(input, other):
        return binary(prim, input, other)

    symbol, printed = _COMPARE_EXAMPLES[prim.name]
    compare.__name__ = prim.name
    compare.__doc__ = _COMPARE_DOC.format(name=prim.name, symbol=symbol, output=printed)
    return compare


lt, le, gt, ge, eq, ne = (_compare(getattr(ops, n)) for n in ("lt", "le", "gt", "ge", "eq", "ne"))
less, less_equal, greater, greater_equal, not_equal = lt, le, gt, ge, ne


def logical_and(input, other):
    """Elementwise AND of the two as bools (nonzero is True); also the `&` operator.

    Example::

        >>> import tracegrad as torch
        >>> a, b = torch.tensor([True, True, False]), torch.tensor([True, False, False])
        >>> torch.logical_and(a, b)
        tensor([ True, False, False])
    """
    return binary(ops.logical_and, input.to(ops.bool_), as_operand(other))


def logical_or(input, other):
    """Elementwise OR of the two as bools (nonzero is True); also the `|` operator.

    Example::

        >>> import tracegrad as torch
        >>> a, b = torch.tensor([True, True, False]), torch.tensor([True, False, False])
        >>> torch.logical_or(a, b)
        tensor([ True,  True, False])
    """
    return binary(ops.logical_or, input.to(ops.bool_), as_operand(other))


def logical_not(input):
    """Elementwise NOT (also the `~` operator on bool tensors).

    Example::

        >>> import tracegrad as torch
        >>> torch.logical_not(torch.tensor([True, False]))
        tensor([False,  True])
    """
    return apply(ops.logical_not, (input,), {})


def isnan(input):
    """Which elements are NaN, as a bool tensor.

    Example::

        >>> import tracegrad as torch
        >>> torch.isnan(torch.tensor([1.0, float("nan")]))
        tensor([False,  True])
    """
    return input != input  # noqa: PLR0124 - only NaN differs from itself


def equal(input, other) -> bool:
    """True if the two have the same shape and the same values (a Python bool).

    Example::

        >>> import tracegrad as torch
        >>> torch.equal(torch.tensor([1, 2]), torch.tensor([1, 2]))
        True
        >>> torch.equal(torch.tensor([1, 2]), torch.tensor([1, 3]))
        False
    """
    return input.shape == other.shape and bool((input == other).all())


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> bool:
    """True if `|input - other| <= atol + rtol * |other|` everywhere (a Python bool).

    Example::

        >>> import tracegrad as torch
        >>> torch.allclose(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.000001]))
        True
        >>> torch.allclose(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.1]))
        False
    """
    import numpy as np

    return bool(np.allclose(input._data, other._data, rtol=rtol, atol=atol, equal_nan=equal_nan))
