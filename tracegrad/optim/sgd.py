"""Stochastic gradient descent, optionally with momentum, dampening, Nesterov momentum and
weight decay (PyTorch's `torch.optim.SGD`, same arithmetic in the same order).

>>> import tracegrad as torch
>>> w = torch.nn.Parameter(torch.tensor([1.0]))
>>> opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
>>> for _ in range(2):
...     opt.zero_grad(); (w * w).sum().backward(); opt.step()
>>> w, sorted(opt.state[w])
(Parameter containing:
tensor([0.4600], requires_grad=True), ['momentum_buffer'])
"""

from __future__ import annotations

from ..tensor import Tensor
from .optimizer import (
    ARRAY_MATH,
    TENSOR_MATH,
    Optimizer,
    bump_versions,
    numbers,
    on_arrays,
    required,
)


def sgd_rule(math, param, grad, buf, *, lr, momentum, dampening, nesterov, weight_decay,
             maximize):
    """One step for one parameter, in place; returns the momentum buffer (new or updated).

    `param`, `grad` and `buf` are all NumPy arrays or all tensors; `math` matches them.
    """
    if maximize:
        grad = -grad
    if math.nonzero(weight_decay):
        grad = grad + weight_decay * param
    if math.nonzero(momentum):
        if buf is None:
            buf = math.copy(grad)
        else:
            buf *= momentum
            buf += (1 - dampening) * grad
        grad = grad + momentum * buf if nesterov else buf
    param += -lr * grad
    return buf


class SGD(Optimizer):
    """`p -= lr * g`, where g is the gradient plus `weight_decay * p`, or its momentum
    average (`buf = momentum * buf + (1 - dampening) * g`; Nesterov: `g + momentum * buf`).
    `maximize` ascends instead.

    Example::

        >>> import tracegrad as torch
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = torch.optim.SGD([w], lr=0.1, momentum=0.9, nesterov=True)
        >>> for _ in range(2):
        ...     opt.zero_grad()
        ...     (w * w).sum().backward()
        ...     opt.step()
        >>> w
        Parameter containing:
        tensor([0.2224], requires_grad=True)
    """

    def __init__(self, params, lr=1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach=None, differentiable: bool = False, fused=None):
        if lr is not required and lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening,
                    "weight_decay": weight_decay, "nesterov": nesterov, "maximize": maximize,
                    "foreach": foreach, "differentiable": differentiable, "fused": fused}
        super().__init__(params, defaults)

    def _update_group(self, group: dict, params: list) -> None:
        momentum = group["momentum"]  # zero or not decides whether there is a buffer
        hyper = numbers(group, ("lr", "momentum", "weight_decay"), params[0].dtype)
        hyper.update(dampening=group["dampening"], nesterov=group["nesterov"],
                     maximize=group["maximize"])
        for p in params:
            state = self.state[p] if momentum != 0 else None  # plain SGD keeps no state
            buf = state.get("momentum_buffer") if momentum != 0 else None
            grad = p._grad
            if on_arrays(p, grad, buf):
                new = sgd_rule(ARRAY_MATH, p._data, grad._data,
                               None if buf is None else buf._data, **hyper)
                bump_versions(p, buf)
                if buf is None and new is not None:
                    state["momentum_buffer"] = Tensor._wrap(new, p.dtype)
            else:  # `.grad`, not `._grad`: a tracer binds an input gradient through `p`
                new = sgd_rule(TENSOR_MATH, p, p.grad, buf, **hyper)
                if buf is None and new is not None:
                    state["momentum_buffer"] = new
