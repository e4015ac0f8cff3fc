"""Softmax and log-softmax along a dimension, shifted by the (constant) maximum so that
`exp` never overflows.

>>> import tracegrad as torch
>>> torch.tensor([1.0, 1.0]).softmax(-1)
tensor([0.5000, 0.5000])
"""

from __future__ import annotations

from .naming import composite
from .reductions import amax, sum


def _shifted(input, dim):
    # The maximum is a constant shift: softmax does not depend on it, so no gradient flows
    # through it (and amax's tie-splitting rule never runs).
    return input - amax(input, dim, keepdim=True).detach()


@composite("softmax")
def softmax(input, dim=None, _stacklevel=3, dtype=None):
    if dtype is not None:
        input = input.to(dtype)
    e = _shifted(input, _dim(input, dim)).exp()
    return e / sum(e, _dim(input, dim), keepdim=True)


@composite("log_softmax")
def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    if dtype is not None:
        input = input.to(dtype)
    shifted = _shifted(input, _dim(input, dim))
    return shifted - sum(shifted.exp(), _dim(input, dim), keepdim=True).log()


def _dim(input, dim):
    if dim is None:  # PyTorch's legacy implicit choice
        return 0 if input.ndim in (0, 1, 3) else 1
    return dim
