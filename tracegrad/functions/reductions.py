"""Reductions with PyTorch's `dim` (int or tuple) and `keepdim`.

`sum`, `amax`, `amin`, `prod`, `argmax` and `argmin` are primitives; `mean`, `var`, `std`,
`norm`, `logsumexp` and the `(values, indices)` forms of `max`/`min` are compositions.

>>> import tracegrad as torch
>>> torch.tensor([[1.0, 2.0], [3.0, 4.0]]).mean(dim=0)
tensor([2., 3.])
"""

from __future__ import annotations

import builtins
import math
from collections import namedtuple

from ..compiler import ops
from ..compiler.ops import normalize_axes, normalize_axis
from ..eager import apply, to_dtype
from ..errors import op_error
from ..tensor import Tensor
from .naming import composite, present
from .pointwise import maximum, minimum, sqrt, where

_INTEGRAL_TO_INT64 = (ops.bool_, ops.int32)
values_indices = namedtuple("values_indices", ["values", "indices"])


def _axes(input, dim, op):
    if dim is None or dim == ():
        return tuple(range(input.ndim))
    return normalize_axes(dim, input.ndim, op)


def _check_not_empty(input, dim, op: str) -> None:
    """PyTorch's error for an extremum of no elements: over the whole tensor (`dim` None or
    ()), or along a given `dim` of size 0."""
    if input._data.size:  # the common case, in one test
        return
    shape = input.shape
    if dim is None or dim == ():
        if 0 in shape:
            more = "" if op.startswith("arg") else \
                " Specify the reduction dim with the 'dim' argument."
            raise op_error(IndexError if op.startswith("arg") else RuntimeError, op,
                           f"{op}(): Expected reduction dim to be specified for "
                           f"input.numel() == 0.{more}", (input,))
        return
    for axis in normalize_axes(dim, input.ndim, op):
        if shape[axis] == 0:
            raise op_error(IndexError, op, f"{op}(): Expected reduction dim {axis} to have "
                                           f"non-zero size.", (input,))


def _one_of(name: str, dim_given: bool) -> str:
    return f"{name}Backward{1 if dim_given else 0}"


def sum(input, dim=None, keepdim: bool = False, *, dtype=None):
    """The sum of all elements, or over `dim` (an int or a tuple), keeping it as size 1 with
    `keepdim`; bool and int32 tensors sum as int64, as in PyTorch.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
        >>> torch.sum(x)
        tensor(10.)
        >>> x.sum(dim=1, keepdim=True)
        tensor([[3.],
                [7.]])
        >>> torch.tensor([True, True, False]).sum()
        tensor(2)
    """
    if dtype is not None:
        input = input.to(dtype)
    elif input.dtype in _INTEGRAL_TO_INT64:
        input = to_dtype(input, ops.int64)  # PyTorch sums bools and ints as int64
    out = apply(ops.sum_, (input,), {"axes": _axes(input, dim, "sum"), "keepdims": keepdim})
    if dim is not None and out.grad_fn is not None:
        out.grad_fn.display_name = "SumBackward1"
    return out


@composite("mean", lambda input, dim=None, *a, **k: _one_of("Mean", dim is not None))
def mean(input, dim=None, keepdim: bool = False, *, dtype=None):
    """The mean of all elements, or over `dim` (an int or a tuple); floating-point inputs
    only, as in PyTorch.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
        >>> torch.mean(x), x.mean(dim=0)
        (tensor(2.5000), tensor([2., 3.]))
    """
    if dtype is not None:
        input = input.to(dtype)
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"mean(): could not infer output dtype. Input dtype must be either "
                           f"a floating point or complex dtype. Got: {_type_word(input.dtype)}")
    axes = _axes(input, dim, "mean")
    count = math.prod(input.shape[a] for a in axes)
    return sum(input, axes, keepdim) / count


def _type_word(dtype) -> str:
    return {"int64": "Long", "int32": "Int", "bool": "Bool"}.get(dtype.name, dtype.name)


def _correction(unbiased, correction) -> float:
    if correction is not None:
        return correction
    return 1 if unbiased is None or unbiased else 0


@composite("var")  # VarBackward0 with or without dim, as in PyTorch
def var(input, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
    """The variance over all elements or `dim`, dividing by `n - correction` (default 1,
    Bessel's; `unbiased=False` means 0).

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([1.0, 2.0, 3.0, 4.0])
        >>> torch.var(x), x.var(correction=0)
        (tensor(1.6667), tensor(1.2500))
    """
    axes = _axes(input, dim, "var")
    count = math.prod(input.shape[a] for a in axes)
    centred = input - mean(input, axes, keepdim=True)
    # builtins: this module's max is the tensor reduction
    dof = builtins.max(count - _correction(unbiased, correction), 0)
    return sum(centred * centred, axes, keepdim) / dof


@composite("std")  # StdBackward0 with or without dim, as in PyTorch
def std(input, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
    """The standard deviation: the square root of `var` (same arguments).

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([1.0, 2.0, 3.0, 4.0])
        >>> torch.std(x), x.std(correction=0)
        (tensor(1.2910), tensor(1.1180))
    """
    return sqrt(var(input, dim, unbiased, keepdim, correction=correction))


@composite("norm", backward_name="LinalgVectorNormBackward0")  # PyTorch's name for every p
def norm(input, p="fro", dim=None, keepdim: bool = False, dtype=None):
    """The vector `p`-norm of all elements or over `dim`: `p` is "fro" or 2 (Euclidean),
    1, `inf`, `-inf`, 0 (count of nonzeros) or any other number.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([3.0, -4.0])
        >>> torch.norm(x), x.norm(p=1), x.norm(p=float("inf"))
        (tensor(5.), tensor(7.), tensor(4.))
    """
    if dtype is not None:
        input = input.to(dtype)
    axes = _axes(input, dim, "norm")
    if p in ("fro", 2, 2.0):
        squares = sum(input * input, axes, keepdim)
        # sqrt'(0) is infinite; PyTorch defines the norm's gradient at 0 as 0
        safe = where(squares == 0, 1.0, squares)
        return where(squares == 0, 0.0, sqrt(safe))
    if p in (math.inf, "inf"):
        return amax(input.abs(), axes, keepdim)
    if p in (-math.inf, "-inf"):
        return amin(input.abs(), axes, keepdim)
    if p == 1:
        return sum(input.abs(), axes, keepdim)
    if p == 0:
        return sum((input != 0).to(input.dtype), axes, keepdim)
    return sum(input.abs() ** p, axes, keepdim) ** (1.0 / p)


@composite("logsumexp")
def logsumexp(input, dim, keepdim: bool = False):
    """`log(sum(exp(input)))` over `dim`, computed without overflow.

    Example::

        >>> import tracegrad as torch
        >>> torch.logsumexp(torch.tensor([0.0, 0.0]), dim=0)
        tensor(0.6931)
        >>> torch.tensor([1000.0, 1000.0]).logsumexp(0)
        tensor(1000.6932)
    """
    axes = _axes(input, dim, "logsumexp")
    peak = amax(input, axes, keepdim=True).detach()
    # an infinite peak would give inf - inf = nan; shifting by 0 there is exact
    peak = where(peak.abs() == math.inf, 0.0, peak)
    shifted = sum((input - peak).exp(), axes, keepdim=True).log() + peak
    return shifted if keepdim else shifted.squeeze(axes)


def amax(input, dim=(), keepdim: bool = False):
    """The largest value over `dim` (all dimensions by default); ties share the gradient.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([[1.0, 5.0], [3.0, 2.0]])
        >>> torch.amax(x), torch.amax(x, dim=0)
        (tensor(5.), tensor([3., 5.]))
    """
    _check_not_empty(input, dim, "amax")
    return apply(ops.amax, (input,), {"axes": _axes(input, dim, "amax"), "keepdims": keepdim})


def amin(input, dim=(), keepdim: bool = False):
    """The smallest value over `dim` (all dimensions by default); ties share the gradient.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([[1.0, 5.0], [3.0, 2.0]])
        >>> torch.amin(x), torch.amin(x, dim=0)
        (tensor(1.), tensor([1., 2.]))
    """
    _check_not_empty(input, dim, "amin")
    return apply(ops.amin, (input,), {"axes": _axes(input, dim, "amin"), "keepdims": keepdim})


def prod(input, dim=None, keepdim: bool = False, *, dtype=None):
    """The product of all elements, or over one `dim`; bool and int32 give int64.

    Example::

        >>> import tracegrad as torch
        >>> torch.prod(torch.tensor([1.0, 2.0, 3.0]))
        tensor(6.)
        >>> torch.tensor([[1, 2], [3, 4]]).prod(dim=1)
        tensor([ 2, 12])
    """
    if dtype is not None:
        input = input.to(dtype)
    elif input.dtype in _INTEGRAL_TO_INT64:
        input = to_dtype(input, ops.int64)
    out = apply(ops.prod, (input,), {"axes": _axes(input, dim, "prod"), "keepdims": keepdim})
    if dim is not None and out.grad_fn is not None:
        out.grad_fn.display_name = "ProdBackward1"
    return out


def argmax(input, dim=None, keepdim: bool = False):
    """The index of the largest value (in the flattened tensor, or along `dim`), as int64.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([[1.0, 5.0], [3.0, 2.0]])
        >>> torch.argmax(x), x.argmax(dim=0)
        (tensor(1), tensor([1, 0]))
    """
    _check_not_empty(input, dim, "argmax")
    axis = None if dim is None else normalize_axis(dim, input.ndim, "argmax")
    return apply(ops.argmax, (input,), {"axis": axis, "keepdims": keepdim})


def argmin(input, dim=None, keepdim: bool = False):
    """The index of the smallest value (in the flattened tensor, or along `dim`), as int64.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([[1.0, 5.0], [3.0, 2.0]])
        >>> torch.argmin(x), x.argmin(dim=0)
        (tensor(0), tensor([0, 1]))
    """
    _check_not_empty(input, dim, "argmin")
    axis = None if dim is None else normalize_axis(dim, input.ndim, "argmin")
    return apply(ops.argmin, (input,), {"axis": axis, "keepdims": keepdim})


def max(input, dim=None, keepdim: bool = False, *, out=None):
    """`max(x)`: the largest value; `max(x, dim)`: a named tuple (values, indices) along
    `dim`; `max(x, y)`: `maximum(x, y)`. The gradient goes to the chosen elements.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([[1.0, 5.0], [3.0, 2.0]])
        >>> torch.max(x)
        tensor(5.)
        >>> values, indices = torch.max(x, dim=1)
        >>> values, indices
        (tensor([5., 3.]), tensor([1, 0]))
        >>> x.max(torch.tensor(4.0))
        tensor([[4., 5.],
                [4., 4.]])
    """
    return _extreme(input, dim, keepdim, amax, argmax, maximum, "max")


def min(input, dim=None, keepdim: bool = False, *, out=None):
    """`min(x)`: the smallest value; `min(x, dim)`: a named tuple (values, indices) along
    `dim`; `min(x, y)`: `minimum(x, y)`. The gradient goes to the chosen elements.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([[1.0, 5.0], [3.0, 2.0]])
        >>> torch.min(x)
        tensor(1.)
        >>> x.min(dim=1).indices
        tensor([0, 1])
    """
    return _extreme(input, dim, keepdim, amin, argmin, minimum, "min")


def _extreme(input, dim, keepdim, whole, arg, pairwise, op):
    if isinstance(dim, Tensor):
        return pairwise(input, dim)
    _check_not_empty(input, dim, op)  # named max or min, before amax or argmax would
    word = op.capitalize()
    if dim is None:
        out = whole(input)
        if out.grad_fn is not None:
            out.grad_fn.display_name = f"{word}Backward1"
        return out
    indices = arg(input, dim, keepdim=True)
    values = input.gather(dim, indices)  # the gradient goes to the chosen index only
    if not keepdim:
        values, indices = values.squeeze(dim), indices.squeeze(dim)
    if values.grad_fn is not None:
        present(values, f"{word}Backward0", (input,))
    return values_indices(values, indices)


def all(input, dim=None, keepdim: bool = False):
    """Whether every element (over `dim`, if given) is nonzero, as a bool tensor.

    Example::

        >>> import tracegrad as torch
        >>> torch.all(torch.tensor([True, False]))
        tensor(False)
        >>> torch.tensor([[1, 0], [1, 1]]).all(dim=1)
        tensor([False,  True])
    """
    # a count, not amin: every element of no elements is nonzero
    return sum(input == 0, dim, keepdim) == 0


def any(input, dim=None, keepdim: bool = False):
    """Whether some element (over `dim`, if given) is nonzero, as a bool tensor.

    Example::

        >>> import tracegrad as torch
        >>> torch.any(torch.tensor([True, False]))
        tensor(True)
        >>> torch.tensor([[0, 0], [1, 0]]).any(dim=1)
        tensor([False,  True])
    """
    return sum(input != 0, dim, keepdim) > 0  # a count, not amax: empty gives False


def count_nonzero(input, dim=None):
    """How many elements (over `dim`, if given) are nonzero, as int64.

    Example::

        >>> import tracegrad as torch
        >>> torch.count_nonzero(torch.tensor([0, 1, 2, 0]))
        tensor(2)
    """
    return sum(input != 0, dim)
