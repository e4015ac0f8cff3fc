"""Shape functions: reshape and view, squeeze, transpose, expand, cat, stack, split.

Results that NumPy gives as views share memory and the version counter with their input,
as PyTorch's views do (`view`, `transpose`, `expand`, basic slicing, ...).

>>> import tracegrad as torch
>>> x = torch.zeros(2, 3)
>>> v = x.view(6); v[0] = 1.0; x[0, 0]
tensor(1.)
"""

from __future__ import annotations

import math

import numpy as np

from ..compiler import ops
from ..compiler.ops import normalize_axes, normalize_axis
from ..eager import apply, promote
from ..tensor import Tensor


def mark_view(result: Tensor, base: Tensor, index=None) -> Tensor:
    """Record that `result` shares `base`'s memory; `index` when it is `base[index]`."""
    if np.may_share_memory(result._data, base._data):
        result._version = base._version
        result._base = (base, index)
    return result


def _sizes(args) -> tuple:
    """`f(2, 3)`, `f((2, 3))` and `f([2, 3])` all mean the shape (2, 3)."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = args[0]
    return tuple(int(a) for a in args)


def _infer_shape(shape: tuple, numel: int) -> tuple:
    if shape.count(-1) > 1:
        raise RuntimeError("only one dimension can be inferred")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if known == 0 or numel % known:
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    return shape


def reshape(input, *shape):
    shape = _infer_shape(_sizes(shape), input._data.size)
    if shape == input._data.shape:
        return _alias(input)
    out = apply(ops.reshape, (input,), {"shape": shape})
    if out.grad_fn is not None and not np.may_share_memory(out._data, input._data):
        out.grad_fn.display_name = "UnsafeViewBackward0"  # a copy: PyTorch's clone + view
    return mark_view(out, input)


def view(input, *shape):
    """Like `reshape`, but never copies: fails where the memory layout does not allow it."""
    if len(shape) == 1 and isinstance(shape[0], ops.DType):
        raise RuntimeError("view(dtype) is not supported; use .to(dtype)")
    shape = _infer_shape(_sizes(shape), input._data.size)
    probe = input._data.view()
    try:
        probe.shape = shape  # NumPy refuses exactly when a copy would be needed
    except AttributeError:
        raise RuntimeError("view size is not compatible with input tensor's size and stride "
                           "(at least one dimension spans across two contiguous subspaces). "
                           "Use .reshape(...) instead.") from None
    except ValueError:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size "
                           f"{input._data.size}") from None
    return reshape(input, shape)


def _alias(input):
    """`input` itself as a new tensor in the graph (a reshape to the same shape)."""
    return mark_view(apply(ops.reshape, (input,), {"shape": input._data.shape}), input)


def flatten(input, start_dim: int = 0, end_dim: int = -1):
    if input.ndim == 0:
        return reshape(input, 1)
    start = normalize_axis(start_dim, input.ndim)
    end = normalize_axis(end_dim, input.ndim)
    shape = input.shape
    return reshape(input, shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:])


def unflatten(input, dim: int, sizes):
    dim = normalize_axis(dim, input.ndim)
    shape = input.shape
    return reshape(input, shape[:dim] + tuple(sizes) + shape[dim + 1:])


def squeeze(input, dim=None):
    shape = input._data.shape
    axes = range(len(shape)) if dim is None else normalize_axes(dim, input.ndim, "squeeze")
    new = tuple(s for i, s in enumerate(shape) if not (i in axes and s == 1))
    out = reshape(input, new)
    if out.grad_fn is not None:
        out.grad_fn.display_name = "SqueezeBackward0" if dim is None else "SqueezeBackward1"
    return out


def unsqueeze(input, dim: int):
    dim = normalize_axis(dim, input.ndim + 1, "unsqueeze")
    shape = input._data.shape
    out = reshape(input, shape[:dim] + (1,) + shape[dim:])
    if out.grad_fn is not None:
        out.grad_fn.display_name = "UnsqueezeBackward0"
    return out


def permute(input, *dims):
    dims = tuple(normalize_axis(d, input.ndim, "permute") for d in _sizes(dims))
    if sorted(dims) != list(range(input.ndim)):
        raise RuntimeError(f"permute(sparse_coo): number of dimensions in the tensor input does "
                           f"not match the length of the desired ordering of dimensions i.e. "
                           f"input.dim() = {input.ndim} is not equal to len(dims) = {len(dims)}")
    return mark_view(apply(ops.permute, (input,), {"dims": dims}), input)


def transpose(input, dim0: int, dim1: int):
    dims = list(range(input.ndim))
    a, b = normalize_axis(dim0, input.ndim), normalize_axis(dim1, input.ndim)
    dims[a], dims[b] = dims[b], dims[a]
    out = permute(input, dims)
    if out.grad_fn is not None:
        out.grad_fn.display_name = "TransposeBackward0"
    return out


swapaxes = swapdims = transpose


def t(input):
    if input.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is "
                           f"{input.ndim}D")
    out = permute(input, tuple(reversed(range(input.ndim))))
    if out.grad_fn is not None:
        out.grad_fn.display_name = "TBackward0"
    return out


def numpy_T(input):
    return permute(input, tuple(reversed(range(input.ndim))))


def matrix_T(input):
    return transpose(input, -2, -1)


def expand(input, *sizes):
    sizes = _sizes(sizes)
    lead = len(sizes) - input.ndim
    if lead < 0:
        raise RuntimeError(f"expand(torch.FloatTensor{{{list(input.shape)}}}, size={list(sizes)}):"
                           f" the number of sizes provided ({len(sizes)}) must be greater or "
                           f"equal to the number of dimensions in the tensor ({input.ndim})")
    shape = tuple(input.shape[i - lead] if s == -1 else s for i, s in enumerate(sizes))
    if shape == input._data.shape:
        return _alias(input)
    return mark_view(apply(ops.expand, (input,), {"shape": shape}), input)


def expand_as(input, other):
    return expand(input, other.shape)


def broadcast_to(input, size):
    return expand(input, size)


def broadcast_tensors(*tensors):
    shape = ops.broadcast_shapes(*(t._data.shape for t in tensors))
    return tuple(expand(t, shape) for t in tensors)


def cat(tensors, dim: int = 0):
    tensors = [t for t in tensors if not (t.ndim == 1 and t._data.size == 0)] or list(tensors)
    if not tensors:
        raise RuntimeError("torch.cat(): expected a non-empty list of Tensors")
    axis = normalize_axis(dim, tensors[0].ndim, "cat")
    _, tensors = promote(*tensors)
    return apply(ops.concat, tuple(tensors), {"axis": axis})


concat = concatenate = cat


def stack(tensors, dim: int = 0):
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    first = tensors[0].shape
    for k, t in enumerate(tensors):
        if t.shape != first:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got "
                               f"{list(first)} at entry 0 and {list(t.shape)} at entry {k}")
    dim = normalize_axis(dim, len(first) + 1, "stack")
    out = cat([unsqueeze(t, dim) for t in tensors], dim)
    if out.grad_fn is not None:
        out.grad_fn.display_name = "StackBackward0"
    return out


def narrow(input, dim: int, start: int, length: int):
    dim = normalize_axis(dim, input.ndim)
    return input[(slice(None),) * dim + (slice(start, start + length),)]


def split(tensor, split_size_or_sections, dim: int = 0):
    dim = normalize_axis(dim, tensor.ndim)
    size = tensor.shape[dim]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        sections = [min(step, size - s) for s in range(0, size, step)] or [0]
    else:
        sections = list(split_size_or_sections)
        if int(np.sum(sections)) != size:
            raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {size} "
                               f"(input tensor's size at dimension {dim}), but got "
                               f"split_sizes={sections}")
    starts = np.cumsum([0] + sections[:-1])
    pieces = tuple(narrow(tensor, dim, int(s), n) for s, n in zip(starts, sections))
    name = "SplitBackward0" if isinstance(split_size_or_sections, int) else \
        "SplitWithSizesBackward0"
    for piece in pieces:
        if piece.grad_fn is not None:
            piece.grad_fn.display_name = name
    return pieces


def chunk(input, chunks: int, dim: int = 0):
    size = input.shape[normalize_axis(dim, input.ndim)]
    return split(input, max(-(-size // chunks), 1), dim)


def unbind(input, dim: int = 0):
    dim = normalize_axis(dim, input.ndim)
    return tuple(input[(slice(None),) * dim + (i,)] for i in range(input.shape[dim]))


def contiguous(input):
    return input if input._data.flags.c_contiguous else clone(input)


def clone(input):
    return apply(ops.copy, (input,), {})
