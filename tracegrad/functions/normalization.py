"""Softmax, log-softmax and layer normalisation: fused primitives in eager mode.

>>> import tracegrad as torch
>>> torch.tensor([1.0, 1.0]).softmax(-1)
tensor([0.5000, 0.5000])
"""

from __future__ import annotations

from ..compiler import ops
from ..compiler.ops import normalize_axis
from ..eager import apply
from ..errors import op_error
from .pointwise import unary_input


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """`exp(x) / exp(x).sum(dim)` along `dim`, computed stably; `dtype` casts the input first.

    Example::

        >>> import tracegrad as torch
        >>> torch.softmax(torch.tensor([1.0, 2.0, 3.0]), dim=0)
        tensor([0.0900, 0.2447, 0.6652])
    """
    if dtype is not None:
        input = input.to(dtype)
    return apply(ops.softmax, (unary_input(input),), {"axis": _axis(input, dim)})


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """`log(softmax(x, dim))`, computed stably (`x - logsumexp(x, dim)`).

    Example::

        >>> import tracegrad as torch
        >>> torch.log_softmax(torch.tensor([1.0, 2.0, 3.0]), dim=0)
        tensor([-2.4076, -1.4076, -0.4076])
    """
    if dtype is not None:
        input = input.to(dtype)
    return apply(ops.log_softmax, (unary_input(input),), {"axis": _axis(input, dim)})


def _axis(input, dim) -> int:
    if dim is None:  # PyTorch's legacy implicit choice
        dim = 0 if input.ndim in (0, 1, 3) else 1
    return normalize_axis(dim, input.ndim, "softmax")


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    """Normalise over the trailing `normalized_shape` dimensions (zero mean, unit variance,
    `eps` added to the variance), then scale by `weight` and shift by `bias`.

    Example::

        >>> import tracegrad as torch
        >>> import tracegrad.nn.functional as F
        >>> F.layer_norm(torch.tensor([[1.0, 2.0, 3.0]]), (3,))
        tensor([[-1.2247,  0.0000,  1.2247]])
    """
    normalized_shape = tuple(normalized_shape) if not isinstance(normalized_shape, int) \
        else (normalized_shape,)
    count = len(normalized_shape)
    if tuple(input.shape[input.ndim - count:]) != normalized_shape:
        raise op_error(RuntimeError, "layer_norm", f"Given normalized_shape="
                       f"{list(normalized_shape)}, expected input with shape "
                       f"[*, {', '.join(map(str, normalized_shape))}], but got input of size"
                       f"{list(input.shape)}", (input,))
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

