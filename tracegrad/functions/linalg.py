"""Matrix products: `matmul` (with NumPy's 1-D and batch rules), `mm`, `bmm`, `dot`.

>>> import tracegrad as torch
>>> (torch.ones(2, 3) @ torch.ones(3)).shape
tracegrad.Size([2])
"""

from __future__ import annotations

from ..compiler import ops
from ..eager import apply, promote
from ..errors import not_a_tensor, op_error
from ..tensor import Tensor
from .naming import present


def matmul(input, other):
    """The matrix product (also `@`), with NumPy's rules: 1-D operands are vectors, leading
    dimensions are batches that broadcast. Both operands must have the same dtype.

    Example::

        >>> import tracegrad as torch
        >>> a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
        >>> torch.matmul(a, torch.tensor([1.0, 1.0]))
        tensor([3., 7.])
        >>> (torch.ones(5, 2, 3) @ torch.ones(3, 4)).shape
        tracegrad.Size([5, 2, 4])
    """
    if not isinstance(input, Tensor):
        raise not_a_tensor("matmul", "input", 1, input, [other])
    if not isinstance(other, Tensor):
        raise not_a_tensor("matmul", "other", 2, other, [input])
    if input.ndim == 0 or other.ndim == 0:
        raise op_error(RuntimeError, "matmul", f"both arguments to matmul need to be at least "
                                               f"1D, but they are {input.ndim}D and "
                                               f"{other.ndim}D", (input, other))
    if input.dtype is not other.dtype:
        raise op_error(RuntimeError, "matmul", f"expected m1 and m2 to have the same dtype, but "
                                               f"got: {input.dtype.name} != {other.dtype.name}",
                       (input, other))
    a = input.unsqueeze(0) if input.ndim == 1 else input
    b = other.unsqueeze(-1) if other.ndim == 1 else other
    out = apply(ops.matmul, (a, b), {})
    if other.ndim == 1:
        out = out.squeeze(-1)
    if input.ndim == 1:
        out = out.squeeze(-2 if other.ndim > 1 else -1)
    if out.grad_fn is not None:
        name = _backward_name(input, other)
        if name in ("DotBackward0", "MvBackward0"):  # one node from both inputs, as PyTorch's
            present(out, name, (input, other))
        else:
            out.grad_fn.display_name = name
    return out


def _backward_name(a, b) -> str:
    """The name of PyTorch's last node for this case of `matmul` (its dispatch shows)."""
    if a.ndim <= 2 and b.ndim <= 2:
        return {(1, 1): "DotBackward0", (2, 1): "MvBackward0", (1, 2): "SqueezeBackward4",
                (2, 2): "MmBackward0"}[(a.ndim, b.ndim)]
    if a.ndim == 2 and a.requires_grad:
        return "CloneBackward0"  # folded into a transposed mm, then made contiguous
    return "UnsafeViewBackward0"


def mm(input, mat2):
    """The product of two matrices (2-D tensors only; `matmul` for the general case).

    Example::

        >>> import tracegrad as torch
        >>> torch.mm(torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0], [4.0]]))
        tensor([[11.]])
    """
    if input.ndim != 2 or mat2.ndim != 2:
        raise RuntimeError("self must be a matrix" if input.ndim != 2 else "mat2 must be a matrix")
    return matmul(input, mat2)


def bmm(input, mat2):
    """Batched matrix products: `(b, n, m) @ (b, m, p) -> (b, n, p)`, without broadcasting.

    Example::

        >>> import tracegrad as torch
        >>> torch.bmm(torch.ones(2, 1, 3), torch.ones(2, 3, 2)).shape
        tracegrad.Size([2, 1, 2])
    """
    if input.ndim != 3 or mat2.ndim != 3:
        raise RuntimeError("batch1 must be a 3D tensor" if input.ndim != 3
                           else "batch2 must be a 3D tensor")
    if input.shape[0] != mat2.shape[0]:
        raise RuntimeError(f"Expected size for first two dimensions of batch2 tensor to be: "
                           f"[{input.shape[0]}, {input.shape[2]}] but got: "
                           f"[{mat2.shape[0]}, {mat2.shape[1]}].")
    out = matmul(input, mat2)
    if out.grad_fn is not None:
        out.grad_fn.display_name = "BmmBackward0"
    return out


def dot(input, other):
    """The inner product of two 1-D tensors.

    Example::

        >>> import tracegrad as torch
        >>> torch.dot(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0]))
        tensor(11.)
    """
    if input.ndim != 1 or other.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input.ndim}D and {other.ndim}D "
                           f"tensors")
    return matmul(input, other)


def outer(input, vec2):
    """The outer product of two 1-D tensors: `out[i, j] = input[i] * vec2[j]`.

    Example::

        >>> import tracegrad as torch
        >>> torch.outer(torch.tensor([1, 2]), torch.tensor([1, 10]))
        tensor([[ 1, 10],
                [ 2, 20]])
    """
    _, (a, b) = promote(input, vec2)
    return a.unsqueeze(1) * b.unsqueeze(0)
