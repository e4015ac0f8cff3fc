"""Gradient clipping: scale all gradients so their joint norm is at most `max_norm`, or
clamp each gradient element into `[-clip_value, clip_value]`.

>>> import tracegrad as torch
>>> w = torch.nn.Parameter(torch.zeros(2)); w.grad = torch.tensor([3.0, 4.0])
>>> torch.nn.utils.clip_grad_norm_([w], max_norm=1.0)
tensor(5.)
>>> w.grad
tensor([0.6000, 0.8000])
"""

from __future__ import annotations

import math

from ...autograd.grad_mode import no_grad
from ...creation import tensor
from ...functions.pointwise import clamp
from ...functions.reductions import amax, norm
from ...functions.shaping import stack
from ...tensor import Tensor


def _gradients(parameters) -> list:
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


@no_grad()
def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach=None) -> Tensor:
    """Scale the gradients in place so that their total `norm_type`-norm is at most
    `max_norm`; returns the total norm before clipping (as PyTorch does). Alias
    `clip_grad_norm`.

    Example::

        >>> import tracegrad as torch
        >>> w = torch.nn.Parameter(torch.zeros(2))
        >>> w.grad = torch.tensor([3.0, 4.0])
        >>> torch.nn.utils.clip_grad_norm_([w], max_norm=1.0)
        tensor(5.)
        >>> w.grad
        tensor([0.6000, 0.8000])
    """
    grads = _gradients(parameters)
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not grads:
        return tensor(0.0)
    if norm_type == math.inf:
        total = amax(stack([g.abs().amax() for g in grads]))
    else:
        total = norm(stack([norm(g, norm_type) for g in grads]), norm_type)
    if error_if_nonfinite and not math.isfinite(total.item()):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from "
                           f"`parameters` is non-finite, so it cannot be clipped. To disable "
                           f"this error and scale the gradients by the non-finite norm "
                           f"anyway, set `error_if_nonfinite=False`")
    coefficient = clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coefficient.to(g.dtype))
    return total


@no_grad()
def clip_grad_value_(parameters, clip_value: float, foreach=None) -> None:
    """Clamp every gradient element into `[-clip_value, clip_value]`, in place.

    Example::

        >>> import tracegrad as torch
        >>> w = torch.nn.Parameter(torch.zeros(2))
        >>> w.grad = torch.tensor([-3.0, 0.5])
        >>> torch.nn.utils.clip_grad_value_([w], clip_value=1.0)
        >>> w.grad
        tensor([-1.0000,  0.5000])
    """
    clip_value = float(clip_value)
    for g in _gradients(parameters):
        g.clamp_(min=-clip_value, max=clip_value)
