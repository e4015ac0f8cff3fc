"""Reduction primitives over a tuple of axes: sum, max, min, prod, argmax, argmin.

Attributes: `axes`, a sorted tuple of non-negative axes, and `keepdims`. Every rule first
puts the reduced axes back as size 1 (`kept`), so the gradient broadcasts against `x`.

>>> reduced_shape((2, 3, 4), (1,), keepdims=True)
(2, 1, 4)
"""

from __future__ import annotations

import numpy as np

from .dtypes import int64
from .movement import expand, reshape
from .primitive import Primitive, Spec
from .samples import distinct, floats
from .shapes import reduced_shape


def _reduce_spec(x, axes, keepdims):
    return Spec(reduced_shape(x.shape, axes, keepdims), x.dtype)


def _kept(t, x, axes):
    """`t` (reduced over `axes` of `x`) with those axes back as size 1."""
    return reshape(t, shape=reduced_shape(x.shape, axes, True))


def sum_to(g, shape: tuple):
    """Sum a broadcast gradient back down to `shape` (the engine's un-broadcasting)."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = len(g.shape) - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, size in enumerate(shape) if size == 1 and g.shape[lead + i] != 1)
    return reshape(sum_(g, axes=axes, keepdims=True), shape=shape)


def _sum_rule(g, x, out, axes, keepdims):
    return expand(_kept(g, x, axes), shape=x.shape)


def _extremum_rule(g, x, out, axes, keepdims):
    # Ties share the gradient evenly (PyTorch's amax/amin and full max()/min()).
    hit = (x == _kept(out, x, axes)).to(x.dtype)
    return _kept(g, x, axes) * hit / sum_(hit, axes=axes, keepdims=True)


def _prod_rule(g, x, out, axes, keepdims):
    # d prod / d x_i is the product of the others; division by x_i fails where x_i == 0,
    # so zeros are handled by counting them: one zero leaves that element the product of
    # the rest, two or more make every derivative 0.
    is_zero = x == 0
    zeros = sum_(is_zero.to(x.dtype), axes=axes, keepdims=True)
    x_safe = x.where(~is_zero, 1.0)
    nonzero_prod = prod(x_safe, axes=axes, keepdims=True)
    at_single_zero = nonzero_prod.where(is_zero & (zeros == 1), 0.0)
    others = (nonzero_prod / x_safe).where(zeros == 0, at_single_zero)
    return _kept(g, x, axes) * others


def _arg_spec(x, axis, keepdims):
    if axis is None:
        shape = (1,) * len(x.shape) if keepdims else ()
    else:
        shape = reduced_shape(x.shape, (axis,), keepdims)
    return Spec(shape, int64)


def _reduction(name, kernel, rule, saves, sample, backward_name=""):
    return Primitive(name, "reduce", _reduce_spec, kernel, (rule,), saves, sample,
                     backward_name=backward_name)


# The ufuncs' own reduce is what np.sum, np.amax, ... call, without their ~1 us of
# argument handling in Python (small ints still sum as int64).
sum_ = _reduction("sum", lambda x, axes, keepdims: np.add.reduce(x, axes, keepdims=keepdims),
                  _sum_rule, (), floats((3, 4, 5), axes=(0, 2), keepdims=False))
amax = _reduction("amax",
                  lambda x, axes, keepdims: np.maximum.reduce(x, axes, keepdims=keepdims),
                  _extremum_rule, (0, "out"), distinct((3, 4, 5), axes=(1,), keepdims=True))
amin = _reduction("amin",
                  lambda x, axes, keepdims: np.minimum.reduce(x, axes, keepdims=keepdims),
                  _extremum_rule, (0, "out"), distinct((3, 4, 5), axes=(0, 1), keepdims=False))
prod = _reduction("prod",
                  lambda x, axes, keepdims: np.multiply.reduce(x, axes, keepdims=keepdims),
                  _prod_rule, (0,), floats((3, 4), axes=(1,), keepdims=False))


def _argument(name, kernel):
    return Primitive(name, "reduce", _arg_spec, kernel, None, (),
                     distinct((3, 4), axis=1, keepdims=False), backward_name="")


argmax = _argument("argmax", lambda x, axis, keepdims: np.argmax(x, axis=axis, keepdims=keepdims))
argmin = _argument("argmin", lambda x, axis, keepdims: np.argmin(x, axis=axis, keepdims=keepdims))

REDUCE = [sum_, amax, amin, prod, argmax, argmin]
