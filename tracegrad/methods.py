"""The Tensor's operations: functions of `tracegrad.functions` bound as methods and
operators, in one table so that what a Tensor can do is visible in one place.

>>> import tracegrad as torch
>>> torch.ones(2).add(1).sum().item()
4.0
"""

from __future__ import annotations

import numpy as np

from .compiler.ops import dtypes
from .functions import indexing, inplace, linalg, normalization, pointwise, reductions, shaping
from .tensor import Tensor

F = pointwise


def _flip(fn):
    """The reflected operator: `2 - x` calls `x.__rsub__(2)`."""
    return lambda self, other: fn(other, self)


def _to(self, *args, **kwargs):
    """`to(dtype)`, `to(other)`, `to("cpu")`: a cast (recorded), or self if nothing changes.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([1, 2])
        >>> x.to(torch.float64)
        tensor([1., 2.], dtype=tracegrad.float64)
        >>> x.to("cpu") is x
        True
    """
    dtype = kwargs.get("dtype")
    for a in args:
        if isinstance(a, dtypes.DType):
            dtype = a
        elif isinstance(a, Tensor):
            dtype = a.dtype
    if dtype is None or dtype is self.dtype:
        return self
    from .eager import to_dtype

    return to_dtype(self, dtype)


def _type_as(self, other):
    """`self.to(other.dtype)`.

    Example::

        >>> import tracegrad as torch
        >>> torch.tensor([1, 2]).type_as(torch.tensor([0.5]))
        tensor([1., 2.])
    """
    return _to(self, other.dtype)


def _where_method(self, condition, other):
    """`torch.where(condition, self, other)`: self where `condition` holds, else `other`.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([-1.0, 2.0])
        >>> x.where(x > 0, 0.0)
        tensor([0., 2.])
    """
    return pointwise.where(condition, self, other)


# The casting methods' docstrings: one template, and per dtype the method's name and what
# casting [1.5, -2.0] prints.
_CAST_DOC = """`x.to(torch.{dtype})`: a {dtype} copy (recorded), or `x` itself if already {dtype}.

    Example::

        >>> import tracegrad as torch
        >>> torch.tensor([1.5, -2.0]).{name}()
        {output}
    """
_CAST_EXAMPLES = {
    "float32": ("float", "tensor([ 1.5000, -2.0000])"),
    "float64": ("double", "tensor([ 1.5000, -2.0000], dtype=tracegrad.float64)"),
    "int64": ("long", "tensor([ 1, -2])"),
    "int32": ("int", "tensor([ 1, -2], dtype=tracegrad.int32)"),
    "bool": ("bool", "tensor([True, True])"),
}


def _cast(dtype):
    def cast(self, memory_format=None):
        return _to(self, dtype)

    name, printed = _CAST_EXAMPLES[dtype.name]
    cast.__name__ = cast.__qualname__ = name
    cast.__doc__ = _CAST_DOC.format(dtype=dtype.name, name=name, output=printed)
    return cast


def _uniform_(self, a=0.0, b=1.0, generator=None):
    """Fill with random values uniform on `[a, b)`, in place, without recording.

    Example::

        >>> import tracegrad as torch
        >>> _ = torch.manual_seed(0)
        >>> x = torch.empty(1000).uniform_(-1.0, 1.0)
        >>> bool(x.min() >= -1.0), bool(x.max() < 1.0)
        (True, True)
    """
    from .random import fill_uniform_

    return fill_uniform_(self, a, b, generator)


def _normal_(self, mean=0.0, std=1.0, generator=None):
    """Fill with random normal values of the given mean and standard deviation, in place,
    without recording.

    Example::

        >>> import tracegrad as torch
        >>> _ = torch.manual_seed(0)
        >>> x = torch.empty(10000).normal_(mean=2.0, std=0.5)
        >>> round(x.mean().item(), 1), round(x.std().item(), 1)
        (2.0, 0.5)
    """
    from .random import fill_normal_

    return fill_normal_(self, mean, std, generator)


def _new_tensor(self, data, dtype=None, requires_grad=False):
    """`torch.tensor(data)` with this tensor's dtype unless `dtype` is given.

    Example::

        >>> import tracegrad as torch
        >>> torch.ones(2, dtype=torch.float64).new_tensor([1, 2])
        tensor([1., 2.], dtype=tracegrad.float64)
    """
    from .creation import tensor

    return tensor(data, dtype=dtype or self.dtype, requires_grad=requires_grad)


def _new_zeros(self, *size, dtype=None, requires_grad=False):
    """`torch.zeros(*size)` with this tensor's dtype unless `dtype` is given.

    Example::

        >>> import tracegrad as torch
        >>> torch.tensor([1, 2]).new_zeros(2, 3)
        tensor([[0, 0, 0],
                [0, 0, 0]])
    """
    from .creation import zeros

    return zeros(*size, dtype=dtype or self.dtype, requires_grad=requires_grad)


def _new_ones(self, *size, dtype=None, requires_grad=False):
    """`torch.ones(*size)` with this tensor's dtype unless `dtype` is given.

    Example::

        >>> import tracegrad as torch
        >>> torch.tensor([1, 2]).new_ones(3)
        tensor([1, 1, 1])
    """
    from .creation import ones

    return ones(*size, dtype=dtype or self.dtype, requires_grad=requires_grad)


def _new_full(self, size, fill_value, dtype=None, requires_grad=False):
    """`torch.full(size, fill_value)` with this tensor's dtype unless `dtype` is given.

    Example::

        >>> import tracegrad as torch
        >>> torch.tensor([1.0]).new_full((2,), 7)
        tensor([7., 7.])
    """
    from .creation import full

    return full(size, fill_value, dtype=dtype or self.dtype, requires_grad=requires_grad)


def _mod(self, other):
    """Python's `%` elementwise: `x - floor(x / y) * y`, with the divisor's sign (also
    `x % y`).

    Example::

        >>> import tracegrad as torch
        >>> torch.tensor([-3, 3]).remainder(2)
        tensor([1, 1])
        >>> torch.tensor([-3.0, 3.0]) % -2
        tensor([-1., -1.])
    """
    return self - pointwise.div(self, other, rounding_mode="floor") * other


def _view_as(self, other):
    """`self.view(other.shape)`.

    Example::

        >>> import tracegrad as torch
        >>> torch.arange(6).view_as(torch.zeros(2, 3))
        tensor([[0, 1, 2],
                [3, 4, 5]])
    """
    return shaping.view(self, other.shape)


def _reshape_as(self, other):
    """`self.reshape(other.shape)`.

    Example::

        >>> import tracegrad as torch
        >>> torch.arange(4).reshape_as(torch.zeros(2, 2))
        tensor([[0, 1],
                [2, 3]])
    """
    return shaping.reshape(self, other.shape)


def _cpu(self):
    """The tensor itself: tensors live in host memory.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.ones(2)
        >>> x.cpu() is x
        True
    """
    return self


def _floordiv(self, other):
    return pointwise.div(self, other, rounding_mode="floor")


METHODS = {
    # arithmetic and operators
    "add": F.add, "__add__": F.add, "__radd__": F.add,
    "sub": F.sub, "subtract": F.sub, "__sub__": F.sub, "__rsub__": _flip(F.sub),
    "mul": F.mul, "multiply": F.mul, "__mul__": F.mul, "__rmul__": F.mul,
    "div": F.div, "divide": F.div, "true_divide": F.div,
    "__truediv__": F.div, "__rtruediv__": _flip(F.div),
    "__floordiv__": _floordiv, "__mod__": _mod, "remainder": _mod,
    "pow": F.pow, "__pow__": F.pow, "__rpow__": _flip(F.pow),
    "matmul": linalg.matmul, "__matmul__": linalg.matmul, "__rmatmul__": _flip(linalg.matmul),
    "mm": linalg.mm, "bmm": linalg.bmm, "dot": linalg.dot, "outer": linalg.outer,
    "neg": F.neg, "negative": F.neg, "__neg__": F.neg, "__pos__": lambda self: self,
    "abs": F.abs, "__abs__": F.abs, "sign": F.sign,
    "lt": F.lt, "le": F.le, "gt": F.gt, "ge": F.ge, "eq": F.eq, "ne": F.ne,
    "__lt__": F.lt, "__le__": F.le, "__gt__": F.gt, "__ge__": F.ge,
    "__eq__": F.eq, "__ne__": F.ne,
    "logical_and": F.logical_and, "logical_or": F.logical_or, "logical_not": F.logical_not,
    "__and__": F.logical_and, "__or__": F.logical_or, "__invert__": F.logical_not,
    "maximum": F.maximum, "minimum": F.minimum, "where": _where_method, "isnan": F.isnan,
    "equal": F.equal, "allclose": F.allclose,
    # math
    "exp": F.exp, "log": F.log, "log1p": F.log1p, "log2": F.log2, "exp2": F.exp2,
    "sqrt": F.sqrt, "rsqrt": F.rsqrt, "sin": F.sin, "cos": F.cos, "tan": F.tan,
    "tanh": F.tanh, "sigmoid": F.sigmoid, "relu": F.relu, "erf": F.erf,
    "reciprocal": F.reciprocal, "square": F.square, "floor": F.floor, "trunc": F.trunc,
    "clamp": F.clamp, "clip": F.clamp,
    "softmax": normalization.softmax, "log_softmax": normalization.log_softmax,
    # reductions
    "sum": reductions.sum, "mean": reductions.mean, "var": reductions.var,
    "std": reductions.std, "norm": reductions.norm, "logsumexp": reductions.logsumexp,
    "max": reductions.max, "min": reductions.min, "amax": reductions.amax,
    "amin": reductions.amin, "prod": reductions.prod, "argmax": reductions.argmax,
    "argmin": reductions.argmin, "all": reductions.all, "any": reductions.any,
    "count_nonzero": reductions.count_nonzero,
    # shape
    "reshape": shaping.reshape, "view": shaping.view, "flatten": shaping.flatten,
    "unflatten": shaping.unflatten,
    "view_as": _view_as, "reshape_as": _reshape_as,
    "squeeze": shaping.squeeze, "unsqueeze": shaping.unsqueeze, "permute": shaping.permute,
    "transpose": shaping.transpose, "swapaxes": shaping.transpose, "t": shaping.t,
    "T": property(shaping.numpy_T), "mT": property(shaping.matrix_T),
    "expand": shaping.expand, "expand_as": shaping.expand_as,
    "broadcast_to": shaping.broadcast_to, "split": shaping.split, "chunk": shaping.chunk,
    "unbind": shaping.unbind, "narrow": shaping.narrow, "contiguous": shaping.contiguous,
    "clone": shaping.clone,
    # indexing
    "__getitem__": indexing.getitem, "__setitem__": indexing.setitem,
    "gather": indexing.gather, "index_select": indexing.index_select,
    "masked_fill": indexing.masked_fill, "take_along_dim": indexing.take_along_dim,
    "nonzero": indexing.nonzero,
    # dtype
    "to": _to, "type_as": _type_as, "float": _cast(dtypes.float32),
    "double": _cast(dtypes.float64), "long": _cast(dtypes.int64), "int": _cast(dtypes.int32),
    "bool": _cast(dtypes.bool_), "cpu": _cpu,
    "new_tensor": _new_tensor, "new_zeros": _new_zeros, "new_ones": _new_ones,
    "new_full": _new_full,
    # in place
    "add_": inplace.arithmetic_inplace(F.add, np.add),
    "sub_": inplace.arithmetic_inplace(F.sub, np.subtract),
    "mul_": inplace.arithmetic_inplace(F.mul, np.multiply),
    "div_": inplace.arithmetic_inplace(F.div, np.true_divide),
    "zero_": inplace.zero_, "fill_": inplace.fill_, "copy_": inplace.copy_,
    "uniform_": _uniform_, "normal_": _normal_,
}
METHODS.update({
    "__iadd__": METHODS["add_"], "__isub__": METHODS["sub_"], "__imul__": METHODS["mul_"],
    "__itruediv__": METHODS["div_"],
})
for _name in ("pow", "exp", "log", "sqrt", "sin", "cos", "tanh", "sigmoid", "relu", "abs",
              "neg", "clamp", "masked_fill", "log1p", "reciprocal", "square"):
    METHODS[_name + "_"] = inplace.function_inplace(METHODS[_name])


def bind() -> None:
    for name, fn in METHODS.items():
        setattr(Tensor, name, fn)


bind()
