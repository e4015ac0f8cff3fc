"""Layers: `Linear`, `Embedding`, `LayerNorm`, `Dropout`, activations, shape helpers.

Each layer holds its parameters, initialises them as PyTorch does, and calls the function
of the same name in `nn.functional`.

>>> import tracegrad as torch
>>> torch.nn.Linear(2, 3)
Linear(in_features=2, out_features=3, bias=True)
"""

from __future__ import annotations

import math

from ..autograd.grad_mode import no_grad
from ..creation import empty
from ..tensor import Tensor
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter


class Identity(Module):
    """Returns its input (arguments to the constructor are ignored).

    Example::

        >>> import tracegrad as torch
        >>> torch.nn.Identity()(torch.tensor([1.0, 2.0]))
        tensor([1., 2.])
    """

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """`y = x @ weight.T + bias`, with `weight` of shape (out_features, in_features); weight
    and bias uniform on ±1/sqrt(in_features), PyTorch's initialisation.

    Example::

        >>> import tracegrad as torch
        >>> fc = torch.nn.Linear(3, 2)
        >>> fc
        Linear(in_features=3, out_features=2, bias=True)
        >>> fc.weight.shape, fc(torch.ones(4, 3)).shape
        (tracegrad.Size([2, 3]), tracegrad.Size([4, 2]))
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None,
                 dtype=None):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(empty(out_features, in_features, dtype=dtype))
        if bias:
            self.bias = Parameter(empty(out_features, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw weight and bias anew, uniform on ±1/sqrt(in_features).

        Example::

            >>> import tracegrad as torch
            >>> fc = torch.nn.Linear(4, 2)
            >>> fc.reset_parameters()
            >>> bool((fc.weight.abs() <= 0.5).all()), bool((fc.bias.abs() <= 0.5).all())
            (True, True)
        """
        # kaiming_uniform_ with a = sqrt(5) gives the bound 1 / sqrt(fan_in), PyTorch's default
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Embedding(Module):
    """A lookup table: row `i` of `weight` for index `i`; weight standard normal. The row
    `padding_idx` starts at zero and gets no gradient.

    Example::

        >>> import tracegrad as torch
        >>> emb = torch.nn.Embedding(10, 3, padding_idx=0)
        >>> emb
        Embedding(10, 3, padding_idx=0)
        >>> emb(torch.tensor([[0, 2], [4, 0]])).shape
        tracegrad.Size([2, 2, 3])
        >>> emb(torch.tensor([0])).tolist()
        [[0.0, 0.0, 0.0]]
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0,
                 scale_grad_by_freq: bool = False, sparse: bool = False,
                 _weight: Tensor | None = None, _freeze: bool = False, device=None, dtype=None):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise AssertionError("Padding_idx must be within num_embeddings")
            padding_idx = padding_idx % num_embeddings
        self.padding_idx = padding_idx
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.sparse = sparse
        if _weight is None:
            self.weight = Parameter(empty(num_embeddings, embedding_dim, dtype=dtype),
                                    requires_grad=not _freeze)
            self.reset_parameters()
        else:
            if list(_weight.shape) != [num_embeddings, embedding_dim]:
                raise AssertionError("Shape of weight does not match num_embeddings and "
                                     "embedding_dim")
            self.weight = Parameter(_weight, requires_grad=not _freeze)

    def reset_parameters(self) -> None:
        """Draw the weight anew from the standard normal; the padding row becomes zero.

        Example::

            >>> import tracegrad as torch
            >>> emb = torch.nn.Embedding(3, 2, padding_idx=1)
            >>> emb.reset_parameters()
            >>> emb.weight[1].tolist()
            [0.0, 0.0]
        """
        init.normal_(self.weight)
        if self.padding_idx is not None:
            with no_grad():
                self.weight[self.padding_idx].fill_(0)

    def forward(self, input: Tensor) -> Tensor:
        return F.embedding(input, self.weight, self.padding_idx, self.max_norm, self.norm_type,
                           self.scale_grad_by_freq, self.sparse)

    @classmethod
    def from_pretrained(cls, embeddings: Tensor, freeze: bool = True,
                        padding_idx: int | None = None, **kwargs) -> Embedding:
        """An embedding whose table is `embeddings` (frozen unless `freeze=False`).

        Example::

            >>> import tracegrad as torch
            >>> emb = torch.nn.Embedding.from_pretrained(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
            >>> emb(torch.tensor([1]))
            tensor([[3., 4.]])
            >>> emb.weight.requires_grad
            False
        """
        rows, cols = embeddings.shape
        return cls(rows, cols, padding_idx, _weight=embeddings, _freeze=freeze, **kwargs)

    def extra_repr(self) -> str:
        text = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            text += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            text += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            text += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq:
            text += ", scale_grad_by_freq=True"
        if self.sparse:
            text += ", sparse=True"
        return text


class LayerNorm(Module):
    """Normalises over the trailing `normalized_shape` (see `functional.layer_norm`), then
    scales and shifts by the learned weight (ones at first) and bias (zeros).

    Example::

        >>> import tracegrad as torch
        >>> ln = torch.nn.LayerNorm(3)
        >>> ln(torch.tensor([[1.0, 2.0, 3.0]]))
        tensor([[-1.2247,  0.0000,  1.2247]], grad_fn=<NativeLayerNormBackward0>)
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(empty(self.normalized_shape, dtype=dtype))
            if bias:
                self.bias = Parameter(empty(self.normalized_shape, dtype=dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Set the weight to ones and the bias to zeros.

        Example::

            >>> import tracegrad as torch
            >>> ln = torch.nn.LayerNorm(2)
            >>> torch.nn.init.zeros_(ln.weight)
            Parameter containing:
            tensor([0., 0.], requires_grad=True)
            >>> ln.reset_parameters()
            >>> ln.weight
            Parameter containing:
            tensor([1., 1.], requires_grad=True)
        """
        if self.elementwise_affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    def forward(self, input: Tensor) -> Tensor:
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")


class Dropout(Module):
    """Zeroes elements with probability `p` in training mode; the identity in eval mode.

    Example::

        >>> import tracegrad as torch
        >>> _ = torch.manual_seed(0)
        >>> drop = torch.nn.Dropout(p=0.5)
        >>> sorted(set(drop(torch.ones(8)).tolist()))  # survivors scaled by 1 / (1 - p)
        [0.0, 2.0]
        >>> drop.eval()(torch.ones(3))
        tensor([1., 1., 1.])
    """

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout(input, self.p, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Flatten(Module):
    """Flattens dimensions `start_dim` to `end_dim` (by default all but the batch).

    Example::

        >>> import tracegrad as torch
        >>> torch.nn.Flatten()(torch.zeros(2, 3, 4)).shape
        tracegrad.Size([2, 12])
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input: Tensor) -> Tensor:
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class ReLU(Module):
    """`max(x, 0)` elementwise.

    >>> import tracegrad as torch
    >>> ReLU()(torch.tensor([-1.0, 2.0]))
    tensor([0., 2.])
    """

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.relu(input)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class GELU(Module):
    """`x * Phi(x)`, exactly (`approximate="none"`) or with the tanh formula.

    Example::

        >>> import tracegrad as torch
        >>> torch.nn.GELU()(torch.tensor([0.0, 1.0]))
        tensor([0.0000, 0.8413])
        >>> torch.nn.GELU(approximate="tanh")
        GELU(approximate='tanh')
    """

    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, input: Tensor) -> Tensor:
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Tanh(Module):
    """The hyperbolic tangent, elementwise.

    Example::

        >>> import tracegrad as torch
        >>> torch.nn.Tanh()(torch.tensor([0.0, 1.0]))
        tensor([0.0000, 0.7616])
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.tanh(input)


class Sigmoid(Module):
    """`1 / (1 + exp(-x))`, elementwise.

    Example::

        >>> import tracegrad as torch
        >>> torch.nn.Sigmoid()(torch.tensor([0.0, 1.0]))
        tensor([0.5000, 0.7311])
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.sigmoid(input)


class SiLU(Module):
    """`x * sigmoid(x)` (swish), elementwise.

    Example::

        >>> import tracegrad as torch
        >>> torch.nn.SiLU()(torch.tensor([0.0, 1.0]))
        tensor([0.0000, 0.7311])
    """

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.silu(input)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class Softplus(Module):
    """`log(1 + exp(beta * x)) / beta`; the identity above `threshold`.

    Example::

        >>> import tracegrad as torch
        >>> torch.nn.Softplus()(torch.tensor([0.0]))
        tensor([0.6931])
        >>> torch.nn.Softplus(beta=2.0)
        Softplus(beta=2.0, threshold=20.0)
    """

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta = beta
        self.threshold = threshold

    def forward(self, input: Tensor) -> Tensor:
        return F.softplus(input, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class Softmax(Module):
    """Softmax along `dim`: positive values that sum to one.

    Example::

        >>> import tracegrad as torch
        >>> torch.nn.Softmax(dim=1)(torch.tensor([[1.0, 1.0]]))
        tensor([[0.5000, 0.5000]])
    """

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:
        return F.softmax(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """The logarithm of softmax along `dim`, computed stably.

    Example::

        >>> import tracegrad as torch
        >>> torch.nn.LogSoftmax(dim=1)(torch.tensor([[1.0, 1.0]]))
        tensor([[-0.6931, -0.6931]])
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.log_softmax(input, self.dim)
