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
import weakref

import numpy as np

from ..compiler import ops
from ..compiler.ops import normalize_axes, normalize_axis
from ..creation import int_sizes
from ..eager import apply, promote
from ..errors import op_error
from ..tensor import Tensor


def mark_view(result: Tensor, base: Tensor, index=None, replay=None) -> Tensor:
    """Record that `result` shares `base`'s memory; `index` when it is `base[index]`, else
    `replay`: the (primitive, attributes) that make it from `base`. An in-place write to
    the memory they share remakes the other views' history with it (inplace.py)."""
    if np.may_share_memory(result._data, base._data):
        result._version = base._version
        result._base = (base, index)
        result._replay = replay
        views = base._views
        if views is None:
            views = base._views = []
        elif len(views) & (len(views) - 1) == 0:  # at 1, 2, 4, 8, ...: forget the dead
            views[:] = [ref for ref in views if ref() is not None]
        views.append(weakref.ref(result))
    return result


def _view_op(prim, input, attrs: dict) -> Tensor:
    """`prim(input, **attrs)`, marked as a view of `input` that a write to it can remake."""
    return mark_view(apply(prim, (input,), attrs), input, replay=(prim, attrs))


def _infer_shape(shape: tuple, input, op: str) -> tuple:
    numel = input._data.size
    if shape.count(-1) > 1:
        raise op_error(RuntimeError, op, "only one dimension can be inferred", (input,))
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if known == 0 or numel % known:
            raise op_error(RuntimeError, op, f"shape '{list(shape)}' is invalid for input of "
                                             f"size {numel}", (input,))
        shape = tuple(numel // known if s == -1 else s for s in shape)
    return shape


def reshape(input, *shape):
    """The same values in a new shape (one size may be -1, inferred): a view when the
    memory layout allows, otherwise a copy. The shape may be given as ints or a tuple.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.arange(6)
        >>> torch.reshape(x, (2, 3))
        tensor([[0, 1, 2],
                [3, 4, 5]])
        >>> x.reshape(-1, 2).shape
        tracegrad.Size([3, 2])
    """
    shape = _infer_shape(int_sizes(shape, "reshape", "shape", (input,)), input, "reshape")
    if shape == input._data.shape:
        return _alias(input)
    out = _view_op(ops.reshape, input, {"shape": shape})
    if out.grad_fn is not None and out._base is None:
        out.grad_fn.display_name = "UnsafeViewBackward0"  # a copy: PyTorch's clone + view
    return out


def view(input, *shape):
    """Like `reshape`, but never copies: fails where the memory layout does not allow it.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.zeros(2, 3)
        >>> x.view(3, 2).shape
        tracegrad.Size([3, 2])
        >>> x.t().view(6)
        Traceback (most recent call last):
        ...
        RuntimeError: view size is not compatible with input tensor's size and stride ...
    """
    if len(shape) == 1 and isinstance(shape[0], ops.DType):
        raise RuntimeError("view(dtype) is not supported; use .to(dtype)")
    shape = _infer_shape(int_sizes(shape, "view", "shape", (input,)), input, "view")
    probe = input._data.view()
    try:
        probe.shape = shape  # NumPy refuses exactly when a copy would be needed
    except AttributeError:
        raise op_error(RuntimeError, "view", "view size is not compatible with input tensor's "
                       "size and stride (at least one dimension spans across two contiguous "
                       "subspaces). Use .reshape(...) instead.", (input,)) from None
    except ValueError:
        raise op_error(RuntimeError, "view", f"shape '{list(shape)}' is invalid for input of "
                                             f"size {input._data.size}", (input,)) from None
    return reshape(input, shape)


def _alias(input):
    """`input` itself as a new tensor in the graph (a reshape to the same shape)."""
    return _view_op(ops.reshape, input, {"shape": input._data.shape})


def flatten(input, start_dim: int = 0, end_dim: int = -1):
    """Dimensions `start_dim` to `end_dim` merged into one (all of them by default).

    Example::

        >>> import tracegrad as torch
        >>> torch.flatten(torch.ones(2, 2))
        tensor([1., 1., 1., 1.])
        >>> torch.zeros(2, 3, 4).flatten(1).shape
        tracegrad.Size([2, 12])
    """
    if input.ndim == 0:
        return reshape(input, 1)
    start = normalize_axis(start_dim, input.ndim)
    end = normalize_axis(end_dim, input.ndim)
    shape = input.shape
    return reshape(input, shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:])


def unflatten(input, dim: int, sizes):
    """Dimension `dim` split into `sizes` (the inverse of `flatten`).

    Example::

        >>> import tracegrad as torch
        >>> torch.arange(6).unflatten(0, (2, 3))
        tensor([[0, 1, 2],
                [3, 4, 5]])
    """
    dim = normalize_axis(dim, input.ndim)
    shape = input.shape
    return reshape(input, shape[:dim] + tuple(sizes) + shape[dim + 1:])


def squeeze(input, dim=None):
    """Dimensions of size 1 removed: all of them, or those of `dim` (an int or a tuple).

    Example::

        >>> import tracegrad as torch
        >>> x = torch.zeros(2, 1, 3, 1)
        >>> torch.squeeze(x).shape, x.squeeze(1).shape
        (tracegrad.Size([2, 3]), tracegrad.Size([2, 3, 1]))
    """
    shape = input._data.shape
    axes = range(len(shape)) if dim is None else normalize_axes(dim, input.ndim, "squeeze")
    new = tuple(s for i, s in enumerate(shape) if not (i in axes and s == 1))
    out = reshape(input, new)
    if out.grad_fn is not None:
        out.grad_fn.display_name = "SqueezeBackward0" if dim is None else "SqueezeBackward1"
    return out


def unsqueeze(input, dim: int):
    """A dimension of size 1 inserted at position `dim`.

    Example::

        >>> import tracegrad as torch
        >>> torch.tensor([1, 2]).unsqueeze(0)
        tensor([[1, 2]])
        >>> torch.unsqueeze(torch.tensor([1, 2]), 1)
        tensor([[1],
                [2]])
    """
    dim = normalize_axis(dim, input.ndim + 1, "unsqueeze")
    shape = input._data.shape
    out = reshape(input, shape[:dim] + (1,) + shape[dim:])
    if out.grad_fn is not None:
        out.grad_fn.display_name = "UnsqueezeBackward0"
    return out


def permute(input, *dims):
    """A view with the dimensions reordered: result dimension i is input dimension dims[i].

    Example::

        >>> import tracegrad as torch
        >>> torch.zeros(2, 3, 4).permute(2, 0, 1).shape
        tracegrad.Size([4, 2, 3])
    """
    dims = tuple(normalize_axis(d, input.ndim, "permute")
                 for d in int_sizes(dims, "permute", "dims", (input,)))
    if len(dims) != input.ndim:
        raise op_error(RuntimeError, "permute", f"permute(sparse_coo): number of dimensions in "
                       f"the tensor input does not match the length of the desired ordering of "
                       f"dimensions i.e. input.dim() = {input.ndim} is not equal to len(dims) = "
                       f"{len(dims)}", (input,))
    if sorted(dims) != list(range(input.ndim)):
        raise op_error(RuntimeError, "permute", "permute(): duplicate dims are not allowed.",
                       (input,))
    return _view_op(ops.permute, input, {"dims": dims})


def transpose(input, dim0: int, dim1: int):
    """A view with dimensions `dim0` and `dim1` swapped (aliases `swapaxes`, `swapdims`).

    Example::

        >>> import tracegrad as torch
        >>> torch.arange(6).reshape(2, 3).transpose(0, 1)
        tensor([[0, 3],
                [1, 4],
                [2, 5]])
    """
    dims = list(range(input.ndim))
    a, b = normalize_axis(dim0, input.ndim), normalize_axis(dim1, input.ndim)
    dims[a], dims[b] = dims[b], dims[a]
    out = permute(input, dims)
    if out.grad_fn is not None:
        out.grad_fn.display_name = "TransposeBackward0"
    return out


swapaxes = swapdims = transpose


def t(input):
    """The transpose of a matrix (a tensor of at most 2 dimensions).

    Example::

        >>> import tracegrad as torch
        >>> torch.t(torch.tensor([[1, 2, 3]]))
        tensor([[1],
                [2],
                [3]])
    """
    if input.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is "
                           f"{input.ndim}D")
    out = permute(input, tuple(reversed(range(input.ndim))))
    if out.grad_fn is not None:
        out.grad_fn.display_name = "TBackward0"
    return out


def numpy_T(input):
    """`x.T`: a view with the dimensions in reverse order (PyTorch warns unless 2-D).

    Example::

        >>> import tracegrad as torch
        >>> torch.tensor([[1, 2]]).T
        tensor([[1],
                [2]])
    """
    return permute(input, tuple(reversed(range(input.ndim))))


def matrix_T(input):
    """`x.mT`: a view with the last two dimensions swapped (a batch of matrices transposed).

    Example::

        >>> import tracegrad as torch
        >>> torch.zeros(5, 2, 3).mT.shape
        tracegrad.Size([5, 3, 2])
    """
    return transpose(input, -2, -1)


def expand(input, *sizes):
    """A view repeating dimensions of size 1 to `sizes` (-1 keeps a size; new leading
    dimensions may be added), without copying.

    Example::

        >>> import tracegrad as torch
        >>> torch.tensor([[1], [2]]).expand(2, 3)
        tensor([[1, 1, 1],
                [2, 2, 2]])
    """
    sizes = int_sizes(sizes, "expand", "size", (input,))
    lead = len(sizes) - input.ndim
    if lead < 0:
        raise RuntimeError(f"expand(torch.FloatTensor{{{list(input.shape)}}}, size={list(sizes)}):"
                           f" the number of sizes provided ({len(sizes)}) must be greater or "
                           f"equal to the number of dimensions in the tensor ({input.ndim})")
    shape = tuple(input.shape[i - lead] if s == -1 else s for i, s in enumerate(sizes))
    if shape == input._data.shape:
        return _alias(input)
    return _view_op(ops.expand, input, {"shape": shape})


def expand_as(input, other):
    """`input.expand(other.shape)`.

    Example::

        >>> import tracegrad as torch
        >>> torch.tensor([1, 2]).expand_as(torch.zeros(2, 2))
        tensor([[1, 2],
                [1, 2]])
    """
    return expand(input, other.shape)


def broadcast_to(input, size):
    """`input` broadcast to the shape `size` (a view, as `expand`).

    Example::

        >>> import tracegrad as torch
        >>> torch.broadcast_to(torch.tensor([1, 2]), (2, 2))
        tensor([[1, 2],
                [1, 2]])
    """
    return expand(input, size)


def broadcast_tensors(*tensors):
    """The tensors expanded to their common broadcast shape (views).

    Example::

        >>> import tracegrad as torch
        >>> a, b = torch.broadcast_tensors(torch.zeros(2, 1), torch.zeros(3))
        >>> a.shape, b.shape
        (tracegrad.Size([2, 3]), tracegrad.Size([2, 3]))
    """
    shape = ops.broadcast_shapes(*(t._data.shape for t in tensors))
    return tuple(expand(t, shape) for t in tensors)


def cat(tensors, dim: int = 0):
    """The tensors joined along the existing dimension `dim` (aliases `concat`,
    `concatenate`); dtypes are promoted, empty 1-D tensors skipped.

    Example::

        >>> import tracegrad as torch
        >>> torch.cat([torch.tensor([1, 2]), torch.tensor([3])])
        tensor([1, 2, 3])
        >>> torch.cat([torch.zeros(2, 1), torch.ones(2, 2)], dim=1)
        tensor([[0., 1., 1.],
                [0., 1., 1.]])
    """
    tensors = list(tensors)
    _check_tensor_list(tensors, "cat")
    tensors = [t for t in tensors if not (t.ndim == 1 and t._data.size == 0)] or list(tensors)
    if not tensors:
        raise RuntimeError("torch.cat(): expected a non-empty list of Tensors")
    axis = normalize_axis(dim, tensors[0].ndim, "cat")
    _, tensors = promote(*tensors)
    return apply(ops.concat, tuple(tensors), {"axis": axis})


concat = concatenate = cat


def _check_tensor_list(tensors, op: str) -> None:
    for k, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise op_error(TypeError, op, f"expected Tensor as element {k} in argument 0, but "
                                          f"got {type(t).__name__}",
                           [x for x in tensors if isinstance(x, Tensor)])


def stack(tensors, dim: int = 0):
    """Tensors of one shape joined along a new dimension `dim`.

    Example::

        >>> import tracegrad as torch
        >>> a, b = torch.tensor([1, 2]), torch.tensor([3, 4])
        >>> torch.stack([a, b])
        tensor([[1, 2],
                [3, 4]])
        >>> torch.stack([a, b], dim=1)
        tensor([[1, 3],
                [2, 4]])
    """
    tensors = list(tensors)
    _check_tensor_list(tensors, "stack")
    if not tensors:
        raise op_error(RuntimeError, "stack", "stack expects a non-empty TensorList")
    first = tensors[0].shape
    for k, t in enumerate(tensors):
        if t.shape != first:
            raise op_error(RuntimeError, "stack", f"stack expects each tensor to be equal size, "
                                                  f"but got {list(first)} at entry 0 and "
                                                  f"{list(t.shape)} at entry {k}", tensors)
    dim = normalize_axis(dim, len(first) + 1, "stack")
    out = cat([unsqueeze(t, dim) for t in tensors], dim)
    if out.grad_fn is not None:
        out.grad_fn.display_name = "StackBackward0"
    return out


def narrow(input, dim: int, start: int, length: int):
    """A view of `length` elements of dimension `dim`, from `start`.

    Example::

        >>> import tracegrad as torch
        >>> torch.arange(5).narrow(0, 1, 3)
        tensor([1, 2, 3])
    """
    dim = normalize_axis(dim, input.ndim)
    return input[(slice(None),) * dim + (slice(start, start + length),)]


def split(tensor, split_size_or_sections, dim: int = 0):
    """Views of consecutive pieces along `dim`: of `split_size` each (the last may be
    shorter), or of the sizes in a list.

    Example::

        >>> import tracegrad as torch
        >>> torch.split(torch.arange(5), 2)
        (tensor([0, 1]), tensor([2, 3]), tensor([4]))
        >>> torch.arange(5).split([1, 4])
        (tensor([0]), tensor([1, 2, 3, 4]))
    """
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
    """At most `chunks` views of equal size along `dim` (the last may be smaller).

    Example::

        >>> import tracegrad as torch
        >>> torch.arange(5).chunk(2)
        (tensor([0, 1, 2]), tensor([3, 4]))
    """
    size = input.shape[normalize_axis(dim, input.ndim)]
    return split(input, max(-(-size // chunks), 1), dim)


def unbind(input, dim: int = 0):
    """The slices along `dim`, as a tuple, with that dimension removed.

    Example::

        >>> import tracegrad as torch
        >>> torch.unbind(torch.tensor([[1, 2], [3, 4]]))
        (tensor([1, 2]), tensor([3, 4]))
    """
    dim = normalize_axis(dim, input.ndim)
    return tuple(input[(slice(None),) * dim + (i,)] for i in range(input.shape[dim]))


def contiguous(input):
    """The tensor itself if its memory is in row-major order, else a row-major copy.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.arange(4).reshape(2, 2).t()
        >>> x.is_contiguous()
        False
        >>> x.contiguous()
        tensor([[0, 2],
                [1, 3]])
        >>> y = torch.ones(2)
        >>> y.contiguous() is y
        True
    """
    if input._data.flags.c_contiguous:
        return input
    out = clone(input)  # keeps a transposed or broadcast layout (NumPy's order="K")
    out._data = np.ascontiguousarray(out._data)
    return out


def clone(input):
    """A copy with its own memory; gradients flow back to `input`.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([1.0, 2.0], requires_grad=True)
        >>> torch.clone(x)
        tensor([1., 2.], grad_fn=<CloneBackward0>)
    """
    return apply(ops.copy, (input,), {})
