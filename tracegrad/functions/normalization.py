"""Softmax, log-softmax and layer normalisation: fused primitives in eager mode.

>>> import tracegrad as torch
>>> torch.tensor([1.0, 1.0]).softmax(-1)
tensor([0.5000, 0.5000])
"""

from __future__ import annotations

from ..compiler import ops
from ..compiler.ops import normalize_axis
from ..eager import apply
from .pointwise import unary_input


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    if dtype is not None:
        input = input.to(dtype)
    return apply(ops.softmax, (unary_input(input),), {"axis": _axis(input, dim)})


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    if dtype is not None:
        input = input.to(dtype)
    return apply(ops.log_softmax, (unary_input(input),), {"axis": _axis(input, dim)})


def _axis(input, dim) -> int:
    if dim is None:  # PyTorch's legacy implicit choice
        dim = 0 if input.ndim in (0, 1, 3) else 1
    return normalize_axis(dim, input.ndim, "softmax")


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    """Normalise over the trailing `normalized_shape` dimensions, then scale and shift."""
    normalized_shape = tuple(normalized_shape) if not isinstance(normalized_shape, int) \
        else (normalized_shape,)
    count = len(normalized_shape)
    if tuple(input.shape[input.ndim - count:]) != normalized_shape:
        raise RuntimeError(f"Given normalized_shape={list(normalized_shape)}, expected input "
                           f"with shape [*, {', '.join(map(str, normalized_shape))}], but got "
                           f"input of size{list(input.shape)}")
    axes = tuple(range(input.ndim - count, input.ndim))
    out = apply(ops.layer_norm, (unary_input(input),), {"axes": axes, "eps": float(eps)})
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    if out.grad_fn is not None and (weight is not None or bias is not None):
        from .naming import present

        present(out, "NativeLayerNormBackward0", (input, weight, bias))
    return out

