"""Indexing: `x[i]` and `x[i] = v`, `gather`, `index_select`, `masked_fill`.

Every read is the `gather` primitive (a view for basic indices, as in PyTorch), every
write the `index_put` primitive, so one derivative pair covers them all.

>>> import tracegrad as torch
>>> x = torch.arange(6.0).reshape(2, 3)
>>> x[:, [0, 2]]
tensor([[0., 2.],
        [3., 5.]])
"""

from __future__ import annotations

import numpy as np

from ..autograd import grad_mode
from ..compiler import ops
from ..eager import apply
from ..errors import op_error
from ..tensor import Tensor
from ..trace_state import state as _trace
from .inplace import COPY_SLICES, VIEW_OF_LEAF_IN_PLACE, commit_inplace
from .shaping import mark_view


def normalize_index(index, shape) -> tuple:
    """A user's index as a tuple NumPy understands, with PyTorch's checks."""
    if not isinstance(index, tuple):
        index = (index,)
    items = []
    for item in index:
        if isinstance(item, Tensor):
            tracer = _trace.tracer
            if tracer is not None and not tracer.is_constant(item):
                tracer.break_graph("indexing with a tensor of indices other than x[i] or x[:, i]")
            item = item._data if item.dtype in (ops.bool_, ops.int64, ops.int32) else _bad(item)
            if item.ndim == 0 and item.dtype != np.bool_:
                item = int(item)
        elif isinstance(item, (list, np.ndarray)):
            item = np.asarray(item)
            if item.dtype.kind == "f":
                _bad(item)
        elif isinstance(item, slice) and item.step is not None and item.step <= 0:
            raise ValueError("step must be greater than zero")
        elif isinstance(item, float):
            _bad(item)
        items.append(item)
    _check_bounds(tuple(items), shape)
    return tuple(items)


def _bad(item):
    raise IndexError("tensors used as indices must be long, int, byte or bool tensors")


def _check_bounds(index, shape) -> None:
    dim = 0
    for item in index:
        if item is None:
            continue
        if item is Ellipsis:
            dim = len(shape) - _dims_used(index) + dim
            continue
        if isinstance(item, int) and not isinstance(item, bool):
            if dim >= len(shape):
                raise IndexError(f"too many indices for tensor of dimension {len(shape)}")
            if not -shape[dim] <= item < shape[dim]:
                raise IndexError(f"index {item} is out of bounds for dimension {dim} with size "
                                 f"{shape[dim]}")
        dim += item.ndim if isinstance(item, np.ndarray) and item.dtype == np.bool_ else 1
    if dim > len(shape):
        raise IndexError(f"too many indices for tensor of dimension {len(shape)}")


def _dims_used(index) -> int:
    return sum(item.ndim if isinstance(item, np.ndarray) and item.dtype == np.bool_ else 1
               for item in index if item is not None and item is not Ellipsis)


def _is_basic(index) -> bool:
    return not any(isinstance(i, (np.ndarray, bool)) for i in index)


def getitem(input, index):
    single = _single_tensor_index(index)
    if single is not None and single[0] < input.ndim:  # x[i], x[:, i]: the index is an input
        axis, tensor_index = single
        _check_take_bounds(tensor_index, input.shape[axis], axis, "index", input)
        out = apply(ops.take, (input, tensor_index), {"axis": axis})
        if out.grad_fn is not None:
            out.grad_fn.display_name = "IndexBackward0"
        return out
    index = _normalized(input, index, "index")
    out = apply(ops.gather, (input,), {"index": index})
    if _is_basic(index):
        mark_view(out, input, index)
        if out.grad_fn is not None:
            picks = any(isinstance(i, int) for i in index)
            out.grad_fn.display_name = "SelectBackward0" if picks else "SliceBackward0"
    return out


def _normalized(input, index, op: str) -> tuple:
    """`normalize_index`, its errors naming `op`, the tensor and the index's tensors."""
    try:
        return normalize_index(index, input._data.shape)
    except (IndexError, ValueError) as exc:
        items = index if isinstance(index, tuple) else (index,)
        raise op_error(type(exc), op, str(exc),
                       [input, *(i for i in items if isinstance(i, Tensor))]) from None


def setitem(input, index, value) -> None:
    index = _normalized(input, index, "index_put")
    basic = _is_basic(index)
    if basic and isinstance(value, Tensor) and value.ndim:
        _check_fits(input, index, value)
    if isinstance(value, Tensor):
        value = value.to(input.dtype) if value.dtype is not input.dtype else value
    else:
        value = input.dtype.numpy.type(value) if np.ndim(value) == 0 else \
            Tensor._wrap(np.asarray(value, dtype=input.dtype.numpy), input.dtype)
    raw = value._data if isinstance(value, Tensor) else value
    if basic and input._requires_grad and input.grad_fn is None and \
            grad_mode.state.enabled:
        raise RuntimeError(VIEW_OF_LEAF_IN_PLACE)  # `x[0] = v` writes through a view of x
    commit_inplace(input, lambda old: apply(ops.index_put, (old, value), {"index": index}),
                   name=COPY_SLICES if basic else "IndexPutBackward0",
                   others=(value,), op="index_put",
                   written=index if basic else None,
                   fast=lambda data: data.__setitem__(index, raw))


def _check_fits(input, index: tuple, value: Tensor) -> None:
    """PyTorch's error for `input[index] = value` when `value` does not broadcast to the
    indexed part (checked before anything is written; `index` is basic: this is a view)."""
    shape, given = input._data[index].shape, value._data.shape
    while len(given) > len(shape) and given[0] == 1:  # NumPy and PyTorch drop leading ones
        given = given[1:]
    try:
        fits = ops.broadcast_shapes(shape, given) == shape
    except ops.ShapeError:
        fits = False
    if not fits:
        raise op_error(RuntimeError, "index_put", f"shape mismatch: value tensor of shape "
                                                  f"{list(value.shape)} cannot be broadcast to "
                                                  f"indexing result of shape {list(shape)}",
                       (input, value))


def gather(input, dim: int, index):
    """Values picked along `dim` by `index` (an integer tensor of as many dimensions):
    `out[i][j] = input[index[i][j]][j]` for dim=0, `input[i][index[i][j]]` for dim=1.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([[1, 2], [3, 4]])
        >>> torch.gather(x, 1, torch.tensor([[0, 0], [1, 0]]))
        tensor([[1, 1],
                [4, 3]])
    """
    dim = ops.normalize_axis(dim, input.ndim, "gather")
    index = _index_tensor(index, "gather", input)
    if index.ndim != input.ndim:
        raise op_error(RuntimeError, "gather", "Index tensor must have the same number of "
                                               "dimensions as input tensor", (input, index))
    # PyTorch lets the index be smaller than the input off `dim`: read that corner only
    corner = tuple(slice(None) if d == dim or n == input.shape[d] else slice(0, n)
                   for d, n in enumerate(index.shape))
    if any(c != slice(None) for c in corner):
        input = getitem(input, corner)
    _check_take_bounds(index, input.shape[dim], dim, "gather", input, RuntimeError)  # PyTorch's
    return apply(ops.take_along, (input, index), {"axis": dim})


def _index_tensor(index, op: str, input) -> Tensor:
    if not isinstance(index, Tensor):
        index = Tensor._wrap(np.asarray(index, dtype=np.int64), ops.int64)
    if index.dtype not in (ops.int64, ops.int32):
        raise op_error(RuntimeError, op, f"{op}(): Expected dtype int64 for index, got "
                                         f"{index.dtype.name}", (input, index))
    return index


def take_along_dim(input, indices, dim=None):
    """`gather(input, dim, indices)`; without `dim`, indices into the flattened input.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([[10, 30, 20]])
        >>> torch.take_along_dim(x, x.argmax(dim=1, keepdim=True), dim=1)
        tensor([[30]])
        >>> torch.take_along_dim(x, torch.tensor([2, 0]))
        tensor([20, 10])
    """
    if dim is None:
        return getitem(input.reshape(-1), indices.reshape(-1))
    return gather(input, dim, indices)


def index_select(input, dim: int, index):
    """The entries of dimension `dim` at the positions in the 1-D integer tensor `index`.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([[1, 2], [3, 4], [5, 6]])
        >>> torch.index_select(x, 0, torch.tensor([2, 0]))
        tensor([[5, 6],
                [1, 2]])
    """
    dim = ops.normalize_axis(dim, input.ndim, "index_select")
    index = _index_tensor(index, "index_select", input)
    if index.ndim > 1:
        raise op_error(IndexError, "index_select", "index_select(): Index is supposed to be a "
                                                   "vector", (input, index))
    _check_take_bounds(index, input.shape[dim], dim, "index_select", input)
    return apply(ops.take, (input, index), {"axis": dim})


def _check_take_bounds(index, size: int, dim: int, op: str, input, kind=IndexError) -> None:
    data = index._data
    # While tracing, the test is made of ops and read by bool(): a value guard, so that a
    # compiled call with an index out of range runs eagerly and raises (native code would
    # wrap the index around and return a wrong value).
    if _trace.tracer is not None and data.size and bool(((index >= -size) & (index < size))
                                                         .all()):
        return
    if data.size and (data.min() < -size or data.max() >= size):
        bad = int(data.max() if data.max() >= size else data.min())
        raise op_error(kind, op, f"index {bad} is out of bounds for dimension {dim} with size "
                                 f"{size}", (input, index))


def _single_tensor_index(index):
    """`(:, ..., :, t)` with `t` an integer tensor: (axis, t); otherwise None."""
    items = index if isinstance(index, tuple) else (index,)
    if not items or not isinstance(items[-1], Tensor) or items[-1].dtype not in (ops.int64,
                                                                                   ops.int32):
        return None
    if any(not (isinstance(i, slice) and i == slice(None)) for i in items[:-1]):
        return None
    return len(items) - 1, items[-1]


def masked_fill(input, mask, value):
    """`value` where the bool tensor `mask` (broadcast) is True, `input` elsewhere.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([1.0, -2.0, 3.0])
        >>> x.masked_fill(x < 0, 0.0)
        tensor([1., 0., 3.])
    """
    from .pointwise import where

    out = where(mask, value, input)
    if out.grad_fn is not None:
        out.grad_fn.display_name = "MaskedFillBackward0"
    return out


def nonzero(input, as_tuple: bool = False):
    """The indices of the nonzero elements: one row per element (int64), or with
    `as_tuple=True` one index tensor per dimension.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([[0, 1], [1, 0]])
        >>> torch.nonzero(x)
        tensor([[0, 1],
                [1, 0]])
        >>> x.nonzero(as_tuple=True)
        (tensor([0, 1]), tensor([1, 0]))
    """
    found = np.nonzero(input._data)
    if as_tuple:
        return tuple(Tensor._wrap(i.astype(np.int64), ops.int64) for i in found)
    return Tensor._wrap(np.stack(found, axis=1).astype(np.int64), ops.int64)
