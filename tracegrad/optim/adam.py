"""Adam and AdamW (PyTorch's `torch.optim.Adam` / `AdamW`, same arithmetic, same order).

State per parameter: `step` (a 0-d float32 tensor), `exp_avg`, `exp_avg_sq`, and with
`amsgrad` also `max_exp_avg_sq`.

>>> import tracegrad as torch
>>> w = torch.nn.Parameter(torch.tensor([1.0]))
>>> opt = torch.optim.Adam([w], lr=0.1)
>>> (w * w).sum().backward(); opt.step()
>>> w, sorted(opt.state[w])
(Parameter containing:
tensor([0.9000], requires_grad=True), ['exp_avg', 'exp_avg_sq', 'step'])
"""

from __future__ import annotations

from ..compiler.ops import float64
from ..creation import tensor, zeros_like
from ..tensor import Tensor
from .optimizer import (
    ARRAY_MATH,
    TENSOR_MATH,
    Optimizer,
    as_float,
    betas,
    bump_versions,
    numbers,
    on_arrays,
)


def adam_rule(math, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, *, lr, beta1,
              beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay):
    """One step for one parameter, in place (`step` counts this one: 1 on the first).

    The arrays or tensors are updated in place; `math` matches their kind. `step` and the
    hyperparameters are Python numbers, or 0-d tensors on the tensor path.
    """
    if maximize:
        grad = -grad
    if math.nonzero(weight_decay):
        if decoupled_weight_decay:  # AdamW
            param *= 1 - lr * weight_decay
        else:
            grad = grad + weight_decay * param
    exp_avg += (1 - beta1) * (grad - exp_avg)  # PyTorch's lerp_ towards grad
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * grad * grad
    step_size = lr / (1 - beta1**step)
    bias_correction2_sqrt = (1 - beta2**step) ** 0.5
    if amsgrad:
        max_exp_avg_sq[...] = math.maximum(max_exp_avg_sq, exp_avg_sq)
        exp_avg_sq = max_exp_avg_sq
    denom = math.sqrt(exp_avg_sq) / bias_correction2_sqrt + eps
    param += -step_size * exp_avg / denom


class Adam(Optimizer):
    """Steps of `lr` along the bias-corrected ratio of the gradient's running mean to the
    root of its running mean square (Kingma and Ba, 2015); `weight_decay` adds
    `weight_decay * p` to the gradient, `amsgrad` divides by the largest mean square yet.

    Example::

        >>> import tracegrad as torch
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
        >>> opt = torch.optim.Adam([w], lr=0.1)
        >>> (w * w).sum().backward()
        >>> opt.step()
        >>> w  # the first step moves each element by lr
        Parameter containing:
        tensor([ 0.9000, -0.9000], requires_grad=True)
        >>> sorted(opt.state[w])
        ['exp_avg', 'exp_avg_sq', 'step']
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *, foreach=None,
                 maximize: bool = False, capturable: bool = False, differentiable: bool = False,
                 fused=None, decoupled_weight_decay: bool = False):
        if not 0.0 <= as_float(lr):
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        for i in (0, 1):
            if not 0.0 <= betas[i] < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {betas[i]}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = {"lr": lr, "betas": tuple(as_float(b) for b in betas), "eps": eps,
                    "weight_decay": weight_decay, "amsgrad": amsgrad, "maximize": maximize,
                    "foreach": foreach, "capturable": capturable,
                    "differentiable": differentiable, "fused": fused,
                    "decoupled_weight_decay": decoupled_weight_decay}
        super().__init__(params, defaults)

    def _update_group(self, group: dict, params: list) -> None:
        dtype = params[0].dtype
        hyper = numbers(group, ("lr", "weight_decay"), dtype)
        hyper["beta1"], hyper["beta2"] = betas(group, dtype)
        hyper.update(eps=group["eps"], amsgrad=group["amsgrad"], maximize=group["maximize"],
                     decoupled_weight_decay=group["decoupled_weight_decay"])
        for p in params:
            self._update(p, self.state[p], hyper)

    @staticmethod
    def _update(p: Tensor, state: dict, hyper: dict) -> None:
        amsgrad = hyper["amsgrad"]
        if not state:
            state["step"] = tensor(0.0)
            state["exp_avg"] = zeros_like(p)
            state["exp_avg_sq"] = zeros_like(p)
            if amsgrad:
                state["max_exp_avg_sq"] = zeros_like(p)
        step_t, exp_avg, exp_avg_sq = state["step"], state["exp_avg"], state["exp_avg_sq"]
        max_sq = state.get("max_exp_avg_sq") if amsgrad else None
        tensors = (p, p._grad, exp_avg, exp_avg_sq, max_sq)
        if on_arrays(step_t, *tensors):
            step_t._data += 1
            bump_versions(step_t, p, exp_avg, exp_avg_sq, max_sq)
            adam_rule(ARRAY_MATH, *(None if t is None else t._data for t in tensors),
                      float(step_t._data), **hyper)
        else:
            tensors = (p, p.grad, *tensors[2:])  # `.grad`: a tracer binds it through `p`
            step_t += 1
            # the count as a tensor (not .item(), which a trace would have to guard), in
            # float64 like PyTorch's Python-number bias corrections
            adam_rule(TENSOR_MATH, *tensors, step_t.to(float64), **hyper)


class AdamW(Adam):
    """Adam with decoupled weight decay: `param *= 1 - lr * weight_decay` before the step.

    Example::

        >>> import tracegrad as torch
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = torch.optim.AdamW([w], lr=0.1, weight_decay=0.01)
        >>> (w * w).sum().backward()
        >>> opt.step()
        >>> w  # 1 * (1 - 0.1 * 0.01) - 0.1
        Parameter containing:
        tensor([0.8990], requires_grad=True)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach=None, capturable: bool = False, differentiable: bool = False,
                 fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable,
                         differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)
