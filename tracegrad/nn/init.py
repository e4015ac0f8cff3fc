"""Initialisers that overwrite a tensor in place (`torch.nn.init`), without recording.

The random values come from tracegrad's generator, so they differ from PyTorch's; their
distributions (bounds, standard deviations, gains) are PyTorch's.

>>> import tracegrad as torch
>>> w = torch.empty(3, 5)
>>> _ = torch.nn.init.kaiming_uniform_(w, a=5 ** 0.5)  # nn.Linear's default
>>> bool((w.abs() <= 1 / 5 ** 0.5).all())
True
"""

from __future__ import annotations

import math

from ..autograd.grad_mode import no_grad
from ..tensor import Tensor


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended scale of the weights in front of `nonlinearity`.

    Example::

        >>> import tracegrad as torch
        >>> torch.nn.init.calculate_gain("relu")
        1.4142135623730951
        >>> torch.nn.init.calculate_gain("leaky_relu", 0.2)
        1.3867504905630728
    """
    linear_like = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                   "conv_transpose2d", "conv_transpose3d", "sigmoid")
    if nonlinearity in linear_like:
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    if tensor.dim() < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 "
                         "dimensions")
    receptive_field = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


def _calculate_correct_fan(tensor: Tensor, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator=None) -> Tensor:
    """Fill with values uniform on [a, b), in place, without recording; returns the tensor.

    Example::

        >>> import tracegrad as torch
        >>> w = torch.nn.init.uniform_(torch.empty(100), -0.1, 0.1)
        >>> bool((w.abs() <= 0.1).all())
        True
    """
    with no_grad():
        return tensor.uniform_(a, b, generator=generator)


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator=None) -> Tensor:
    """Fill with normal values of the given mean and standard deviation, in place, without
    recording; returns the tensor.

    Example::

        >>> import tracegrad as torch
        >>> _ = torch.manual_seed(0)
        >>> w = torch.nn.init.normal_(torch.empty(10000), mean=1.0, std=0.1)
        >>> round(w.mean().item(), 1), round(w.std().item(), 1)
        (1.0, 0.1)
    """
    with no_grad():
        return tensor.normal_(mean, std, generator=generator)


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill with `val`.

    >>> import tracegrad as torch
    >>> constant_(torch.empty(2), 0.5)
    tensor([0.5000, 0.5000])
    """
    with no_grad():
        return tensor.fill_(val)


def zeros_(tensor: Tensor) -> Tensor:
    """Fill with zeros, in place, without recording; returns the tensor.

    Example::

        >>> import tracegrad as torch
        >>> torch.nn.init.zeros_(torch.empty(2))
        tensor([0., 0.])
    """
    with no_grad():
        return tensor.zero_()


def ones_(tensor: Tensor) -> Tensor:
    """Fill with ones, in place, without recording; returns the tensor.

    Example::

        >>> import tracegrad as torch
        >>> torch.nn.init.ones_(torch.empty(2))
        tensor([1., 1.])
    """
    return constant_(tensor, 1.0)


def kaiming_uniform_(tensor: Tensor, a: float = 0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu", generator=None) -> Tensor:
    """Fill with values uniform on ±gain·sqrt(3 / fan) (He et al., 2015): the gain of
    `nonlinearity` (with negative slope `a`), the fan of `mode` ("fan_in" or "fan_out").

    Example::

        >>> import tracegrad as torch
        >>> w = torch.nn.init.kaiming_uniform_(torch.empty(3, 6), nonlinearity="relu")
        >>> bool((w.abs() <= 1.0).all())  # sqrt(2) * sqrt(3 / 6) = 1
        True
    """
    if 0 in tensor.shape:
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_calculate_correct_fan(tensor, mode))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor: Tensor, a: float = 0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", generator=None) -> Tensor:
    """Fill with normal values of standard deviation gain / sqrt(fan) (He et al., 2015);
    `a`, `mode` and `nonlinearity` as in `kaiming_uniform_`.

    Example::

        >>> import tracegrad as torch
        >>> _ = torch.manual_seed(0)
        >>> w = torch.nn.init.kaiming_normal_(torch.empty(200, 200), nonlinearity="relu")
        >>> round(w.std().item(), 2)  # sqrt(2) / sqrt(200)
        0.1
    """
    if 0 in tensor.shape:
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_calculate_correct_fan(tensor, mode))
    return normal_(tensor, 0.0, std, generator)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """Fill with values uniform on ±gain·sqrt(6 / (fan_in + fan_out)) (Glorot and Bengio, 2010).

    Example::

        >>> import tracegrad as torch
        >>> w = torch.nn.init.xavier_uniform_(torch.empty(2, 4))
        >>> bool((w.abs() <= 1.0).all())  # sqrt(6 / (4 + 2)) = 1
        True
    """
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    bound = math.sqrt(3.0) * gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """Fill with normal values of standard deviation gain * sqrt(2 / (fan_in + fan_out))
    (Glorot and Bengio, 2010).

    Example::

        >>> import tracegrad as torch
        >>> _ = torch.manual_seed(0)
        >>> w = torch.nn.init.xavier_normal_(torch.empty(200, 200))
        >>> round(w.std().item(), 2)  # sqrt(2 / 400)
        0.07
    """
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / float(fan_in + fan_out)), generator)
