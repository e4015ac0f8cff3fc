"""Loss modules: `MSELoss`, `CrossEntropyLoss`, `NLLLoss` (settings, then the function).

>>> import tracegrad as torch
>>> torch.nn.MSELoss()(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0]))
tensor(5.)
"""

from __future__ import annotations

from ..tensor import Tensor
from . import functional as F
from .functional import _legacy_reduction
from .module import Module


class _Loss(Module):
    def __init__(self, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__()
        self.reduction = _legacy_reduction(size_average, reduce, reduction)


class _WeightedLoss(_Loss):
    def __init__(self, weight: Tensor | None = None, size_average=None, reduce=None,
                 reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)


class MSELoss(_Loss):
    """Mean squared error (`reduction`: "mean", "sum" or "none").

    Example::

        >>> import tracegrad as torch
        >>> loss = torch.nn.MSELoss()
        >>> loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0]))
        tensor(5.)
        >>> torch.nn.MSELoss(reduction="none")(torch.tensor([1.0, 3.0]), torch.zeros(2))
        tensor([1., 9.])
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(input, target, reduction=self.reduction)


class NLLLoss(_WeightedLoss):
    """Negative log-likelihood of class indices, given log-probabilities.

    >>> import tracegrad as torch
    >>> NLLLoss()(torch.tensor([[-0.5, -1.0]]), torch.tensor([1]))
    tensor(1.)
    """

    def __init__(self, weight: Tensor | None = None, size_average=None,
                 ignore_index: int = -100, reduce=None, reduction: str = "mean"):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.nll_loss(input, target, self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class CrossEntropyLoss(_WeightedLoss):
    """Cross-entropy of logits against class indices or class probabilities, with class
    `weight`, `ignore_index` and `label_smoothing` (see `functional.cross_entropy`).

    Example::

        >>> import tracegrad as torch
        >>> loss = torch.nn.CrossEntropyLoss()
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]], requires_grad=True)
        >>> loss(logits, torch.tensor([0, 1]))
        tensor(0.1269, grad_fn=<NllLossBackward0>)
        >>> torch.nn.CrossEntropyLoss(reduction="none")(logits, torch.tensor([0, 0]))
        tensor([0.1269, 2.1269], grad_fn=<NllLossBackward0>)
    """

    def __init__(self, weight: Tensor | None = None, size_average=None,
                 ignore_index: int = -100, reduce=None, reduction: str = "mean",
                 label_smoothing: float = 0.0):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(input, target, self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)
