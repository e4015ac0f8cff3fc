"""Neural-network functions (`torch.nn.functional`): layers and losses as compositions.

Nothing here has a derivative of its own: each function is built from tensor operations,
so autograd differentiates it and the compiler can trace it. Where it is cheap, the
result's `grad_fn` carries PyTorch's name (`NllLossBackward0`, `MseLossBackward0`, ...).

>>> import tracegrad as torch
>>> import tracegrad.nn.functional as F
>>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]], requires_grad=True)
>>> F.cross_entropy(logits, torch.tensor([0, 1]))
tensor(0.1269, grad_fn=<NllLossBackward0>)
"""

from __future__ import annotations

import warnings

import numpy as np

from ..compiler import ops
from ..compiler.ops import int64
from ..eager import apply
from ..errors import not_a_tensor, op_error
from ..functions.linalg import matmul
from ..functions.naming import composite
from ..functions.normalization import layer_norm, log_softmax, softmax
from ..functions.pointwise import gelu, relu, sigmoid, silu, softplus, tanh, where
from ..functions.reductions import mean, sum
from ..random import bernoulli
from ..tensor import Tensor
from ..trace_state import state as _trace

__all__ = ["cross_entropy", "dropout", "embedding", "gelu", "layer_norm", "leaky_relu",
           "linear", "log_softmax", "mse_loss", "nll_loss", "normalize", "one_hot", "relu",
           "sigmoid", "silu", "softmax", "softplus", "tanh"]

_REDUCTIONS = ("none", "mean", "sum")


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """`input @ weight.T + bias`, with `weight` stored `(out_features, in_features)`.

    >>> import tracegrad as torch
    >>> linear(torch.ones(1, 2), torch.ones(3, 2), torch.zeros(3))
    tensor([[2., 2., 2.]])
    """
    if not isinstance(input, Tensor):
        raise not_a_tensor("linear", "input", 1, input, [weight])
    out = matmul(input, weight.t())
    if bias is not None:
        # the add primitive directly when no promotion is needed (the hot path)
        out = apply(ops.add, (out, bias), {}) if bias.dtype is out.dtype else out + bias
    if out.grad_fn is not None:  # PyTorch's names (its linear is one fused op)
        if input.ndim == 2:
            out.grad_fn.display_name = "AddmmBackward0" if bias is not None else "MmBackward0"
        elif input.ndim > 2 and bias is None:
            out.grad_fn.display_name = "UnsafeViewBackward0"
        else:
            out.grad_fn.display_name = "ViewBackward0"
    return out


def dropout(input: Tensor, p: float = 0.5, training: bool = True,
            inplace: bool = False) -> Tensor:
    """Zero each element with probability `p`, scale the rest by `1 / (1 - p)`; the identity
    unless `training`.

    Example::

        >>> import tracegrad as torch
        >>> import tracegrad.nn.functional as F
        >>> F.dropout(torch.ones(3), p=0.5, training=False)
        tensor([1., 1., 1.])
        >>> _ = torch.manual_seed(0)
        >>> sorted(set(F.dropout(torch.ones(8), p=0.5).tolist()))
        [0.0, 2.0]
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        out = input * 0.0
    else:  # the mask is a random input of a trace: drawn anew on every compiled call
        out = input * (bernoulli(input._data.shape, 1.0 - p, input.dtype) * (1.0 / (1.0 - p)))
    if inplace:
        return input.copy_(out)
    return out


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return mean(loss)
    if reduction == "sum":
        return sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"{reduction} is not a valid value for reduction")


def _legacy_reduction(size_average, reduce, reduction: str) -> str:
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    return "none" if not reduce else ("mean" if size_average else "sum")


@composite("mse_loss")
def mse_loss(input: Tensor, target: Tensor, size_average=None, reduce=None,
             reduction: str = "mean", weight=None) -> Tensor:
    """Mean (or with `reduction`, sum or none) of the squared differences.

    Example::

        >>> import tracegrad as torch
        >>> import tracegrad.nn.functional as F
        >>> F.mse_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0]))
        tensor(5.)
        >>> F.mse_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0]), reduction="sum")
        tensor(10.)
    """
    if tuple(target.shape) != tuple(input.shape):
        warnings.warn(f"Using a target size ({_size(target.shape)}) that is different to the "
                      f"input size ({_size(input.shape)}). This will likely lead to incorrect "
                      f"results due to broadcasting. Please ensure they have the same size.",
                      UserWarning, stacklevel=3)
    diff = input - target
    return _reduce(diff * diff, _legacy_reduction(size_average, reduce, reduction))


def _size(shape) -> str:
    return f"torch.Size({list(shape)})"


def _class_dim(input: Tensor) -> int:
    return 0 if input.ndim == 1 else 1


def _check_tensors(op: str, input, target) -> None:
    if not isinstance(input, Tensor):
        raise not_a_tensor(op, "input", 1, input, [target])
    if not isinstance(target, Tensor):
        raise not_a_tensor(op, "target", 2, target, [input])


def _check_targets(input: Tensor, target: Tensor, ignore_index: int, op: str) -> None:
    """PyTorch's checks of class-index targets: batch sizes agree, indices in range."""
    _check_tensors(op, input, target)
    if target.dtype.is_floating_point:
        raise op_error(RuntimeError, op, f"expected scalar type Long but found "
                                         f"{target.dtype.name}", (input, target))
    batch_ok = (input.ndim == 1 and target.ndim == 0) or (
        input.ndim >= 2 and target.ndim == input.ndim - 1
        and target._data.shape[0] == input._data.shape[0]
        and target._data.shape[1:] == input._data.shape[2:])
    if not batch_ok:
        raise op_error(ValueError, op, f"Expected input batch_size "
                                       f"({input.shape[0] if input.ndim > 1 else 1}) to match "
                                       f"target batch_size "
                                       f"({target.shape[0] if target.ndim else 1}).",
                       (input, target))
    data, classes = target._data, input._data.shape[_class_dim(input)]
    if _trace.tracer is not None and data.size:  # the test becomes a value guard: a compiled
        in_range = ((target >= 0) & (target < classes)) | (target == ignore_index)  # call
        if bool(in_range.all()):  # with a target out of range then runs eagerly, and raises
            return
    if data.size and (data.min() < 0 or data.max() >= classes):
        bad = (data != ignore_index) & ((data < 0) | (data >= classes))
        if bad.any():
            raise op_error(IndexError, op, f"Target {int(data[bad].flat[0])} is out of bounds.",
                           (input, target))


def _pick(input: Tensor, target: Tensor) -> Tensor:
    """`input`'s entries at the target classes (class dimension 1, or 0 when unbatched)."""
    # take_along, not input[arange, target]: the targets stay an input of a traced graph;
    # and not gather, whose bounds check (a second value guard when compiled) would repeat
    # _check_targets'
    if input.ndim == 1:
        return input[target]
    return apply(ops.take_along, (input, target.unsqueeze(1)), {"axis": 1}).squeeze(1)


def _nll_name(input: Tensor, *args, **kwargs) -> str:
    return "NllLoss2DBackward0" if input.ndim >= 3 else "NllLossBackward0"


@composite("nll_loss", _nll_name)
def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average=None,
             ignore_index: int = -100, reduce=None, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of the target classes, given log-probabilities `input`.

    The `mean` is weighted: divided by the sum of the weights of the non-ignored targets.

    >>> import tracegrad as torch
    >>> nll_loss(torch.tensor([[-1.0, -2.0], [-3.0, -4.0]]), torch.tensor([1, -100]))
    tensor(2.)
    """
    return _nll_loss(input, target, weight, ignore_index,
                     _legacy_reduction(size_average, reduce, reduction), "nll_loss")


def _nll_loss(input, target, weight, ignore_index: int, reduction: str, op: str) -> Tensor:
    """`nll_loss`, its errors naming `op` (the function the user called)."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    _check_targets(input, target, ignore_index, op)
    kept = target != ignore_index
    safe = where(kept, target, 0)  # ignored targets may be out of range: read class 0
    # the weight of each target's class, 0 where ignored
    scale = kept.to(input.dtype) if weight is None else where(kept, weight[safe], 0.0)
    likelihood = _pick(input, safe) * scale
    if reduction == "none":
        return -likelihood
    if reduction == "sum":
        return -sum(likelihood)
    return sum(likelihood) / -sum(scale)


# nll_loss as cross_entropy calls it: the same node name, errors that say "cross_entropy"
_nll_loss_in_cross_entropy = composite("nll_loss", _nll_name)(_nll_loss)


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                  size_average=None, ignore_index: int = -100, reduce=None,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """`nll_loss(log_softmax(input))` for class indices; `-(target * log_softmax).sum()` for
    class probabilities (a floating-point target of the input's shape). The class
    dimension is 1 (0 for unbatched input); `label_smoothing` mixes in a uniform target.

    Example::

        >>> import tracegrad as torch
        >>> import tracegrad.nn.functional as F
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
        >>> F.cross_entropy(logits, torch.tensor([0, 1]))
        tensor(0.1269)
        >>> F.cross_entropy(logits, torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
        tensor(0.6269)
        >>> F.cross_entropy(logits, torch.tensor([0, 1]), label_smoothing=0.2)
        tensor(0.3269)
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: "
                           f"{label_smoothing}")
    _check_tensors("cross_entropy", input, target)
    probabilities = target.dtype.is_floating_point  # class probabilities, input's shape
    if probabilities and tuple(target.shape) != tuple(input.shape):
        raise op_error(RuntimeError, "cross_entropy", f"Expected target size "
                                                      f"{list(input.shape)}, got "
                                                      f"{list(target.shape)}",
                       (input, target))
    dim = _class_dim(input)
    logp = log_softmax(input, dim)
    if probabilities:
        return _cross_entropy_probabilities(logp, target, weight, reduction, label_smoothing)
    loss = _nll_loss_in_cross_entropy(logp, target, weight, ignore_index, reduction,
                                      "cross_entropy")
    if label_smoothing == 0.0:
        return loss
    # PyTorch's label smoothing: mix in the loss against the uniform distribution
    uniform = _uniform_target_loss(logp, target, weight, ignore_index, reduction)
    return (1 - label_smoothing) * loss + uniform * (label_smoothing / input.shape[dim])


def _uniform_target_loss(logp, target, weight, ignore_index: int, reduction: str) -> Tensor:
    """The (weighted) sum of -log p over the classes, reduced as nll_loss reduces."""
    dim = _class_dim(logp)
    terms = -sum(logp * _along(weight, dim, logp.ndim) if weight is not None else logp, dim)
    ignored = target == ignore_index
    terms = where(ignored, 0.0, terms)
    if reduction != "mean":
        return _reduce(terms, reduction)
    if weight is None:
        return sum(terms) / sum(~ignored)
    return sum(terms) / sum(where(ignored, 0.0, weight[where(ignored, 0, target)]))


def _along(weight: Tensor, dim: int, ndim: int) -> Tensor:
    """`weight` (one value per class) shaped to broadcast along the class dimension."""
    shape = [1] * ndim
    shape[dim] = weight.shape[0]
    return weight.reshape(shape)


def _cross_entropy_probabilities(logp, target, weight, reduction, label_smoothing):
    dim = _class_dim(logp)
    classes = logp.shape[dim]
    if label_smoothing > 0.0:
        target = target * (1 - label_smoothing) + label_smoothing / classes
    terms = logp * target
    if weight is not None:
        terms = terms * _along(weight, dim, logp.ndim)
    if reduction == "none":
        return -sum(terms, dim)
    if reduction == "sum":
        return -sum(terms)
    if reduction != "mean":
        raise ValueError(f"{reduction} is not a valid value for reduction")
    out = -sum(terms) / (logp.numel() / classes)
    if out.grad_fn is not None:
        out.grad_fn.display_name = "DivBackward1"
    return out


@composite("embedding")
def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None,
              max_norm=None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
              sparse: bool = False) -> Tensor:
    """Rows of `weight` picked by the integer tensor `input`; no gradient to `padding_idx`.

    Example::

        >>> import tracegrad as torch
        >>> import tracegrad.nn.functional as F
        >>> weight = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
        >>> F.embedding(torch.tensor([2, 0]), weight)
        tensor([[2., 2.],
                [0., 0.]])
    """
    if input.dtype.is_floating_point:
        raise op_error(RuntimeError, "embedding", "Expected tensor for argument #1 'indices' to "
                       "have one of the following scalar types: Long, Int; but got "
                       "torch.FloatTensor instead (while checking arguments for embedding)",
                       (input, weight))
    if max_norm is not None:
        _renormalize_(weight, input, max_norm, norm_type)
    rows = weight[input]
    if padding_idx is None:
        return rows
    if padding_idx < 0:
        padding_idx += weight.shape[0]
    # the padding rows keep their value but pass no gradient back
    return where((input != padding_idx).unsqueeze(-1), rows, rows.detach())


def _renormalize_(weight: Tensor, input: Tensor, max_norm: float, norm_type: float) -> None:
    """PyTorch's `max_norm`: rows that are looked up are scaled in place to norm <= max_norm."""
    from ..autograd.grad_mode import no_grad
    from ..trace_state import state

    if state.tracer is not None:  # the rows to rescale depend on the data: not traceable
        state.tracer.break_graph("Embedding with max_norm (renormalises rows in place)")
    with no_grad():
        rows = np.unique(input._data)
        data = weight._data
        norms = np.linalg.norm(data[rows], ord=norm_type, axis=1, keepdims=True)
        scale = np.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0)
        data[rows] = data[rows] * scale.astype(data.dtype)
        weight._version[0] += 1


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """Class indices as rows of zeros with a one at the index (int64).

    >>> import tracegrad as torch
    >>> one_hot(torch.tensor([2, 0]), 3)
    tensor([[0, 0, 1],
            [1, 0, 0]])
    """
    if num_classes < 0:
        num_classes = int(tensor.max()) + 1 if tensor.numel() else 0
    classes = Tensor._wrap(np.arange(num_classes, dtype=np.int64), int64)
    return (tensor.unsqueeze(-1) == classes).to(int64)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """`x` where positive, `negative_slope * x` elsewhere.

    Example::

        >>> import tracegrad as torch
        >>> import tracegrad.nn.functional as F
        >>> F.leaky_relu(torch.tensor([-2.0, 3.0]), 0.1)
        tensor([-0.2000,  3.0000])
    """
    return where(input > 0, input, input * negative_slope)


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> Tensor:
    """`input` divided by its `p`-norm along `dim` (at least `eps`).

    Example::

        >>> import tracegrad as torch
        >>> import tracegrad.nn.functional as F
        >>> F.normalize(torch.tensor([[3.0, 4.0]]))
        tensor([[0.6000, 0.8000]])
    """
    from ..functions.pointwise import clamp

    return input / clamp(input.norm(p, dim, keepdim=True), min=eps)

