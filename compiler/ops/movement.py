"""Movement primitives: they move elements without computing new ones.

`gather` reads `x[index]` (basic and advanced indexing), `scatter_add` is its transpose
(adds a gradient into zeros at the same index), and `index_put` writes `x[index] = v`;
between them they carry slicing, `split`, `index_select`, `gather`, `embedding` and
item assignment.

An `index` attribute is a tuple of ints, slices, None, Ellipsis and NumPy integer or
boolean arrays, exactly what NumPy's `x[index]` accepts.
"""

from __future__ import annotations

import numpy as np

from .broadcast_view import broadcast_view
from .primitive import Primitive, Spec
from .samples import floats
from .shapes import ShapeError, broadcast_shapes


def _reshape_spec(x, shape):
    if int(np.prod(shape)) != int(np.prod(x.shape)):
        raise ShapeError(f"shape '{list(shape)}' is invalid for input of size "
                         f"{int(np.prod(x.shape))}")
    return Spec(tuple(shape), x.dtype)


def _expand_spec(x, shape):
    if broadcast_shapes(x.shape, shape) != tuple(shape):
        raise ShapeError(f"The expanded size of the tensor must match the existing size "
                         f"{list(x.shape)} at non-singleton dimensions; target {list(shape)}")
    return Spec(tuple(shape), x.dtype)


def _indexed_shape(shape, index) -> tuple:
    # Indexing a zero-stride dummy of the right shape answers with NumPy's own rules.
    return np.broadcast_to(np.empty((), np.int8), shape)[index].shape


def _has_array(index) -> bool:
    return any(isinstance(i, np.ndarray) for i in index)


def _scatter_add(g, shape, index):
    out = np.zeros(shape, dtype=g.dtype)
    if _has_array(index):
        np.add.at(out, index, g)  # repeated indices must add up, not overwrite
    else:
        out[index] = g
    return out


def _index_put(x, v, index):
    out = np.array(x, copy=True)
    out[index] = v
    return out


def _concat_spec(*xs, axis):
    first = xs[0].shape
    for n, x in enumerate(xs[1:], 1):
        if len(x.shape) != len(first):
            raise ShapeError(f"Tensors must have same number of dimensions: got {len(first)} "
                             f"and {len(x.shape)}")
        for k, (a, b) in enumerate(zip(first, x.shape)):
            if k != axis and a != b:
                raise ShapeError(f"Sizes of tensors must match except in dimension {axis}. "
                                 f"Expected size {a} but got size {b} for tensor number {n} "
                                 f"in the list.")
    size = sum(x.shape[axis] for x in xs)
    return Spec(first[:axis] + (size,) + first[axis + 1:], xs[0].dtype)


def _concat_rule(g, *inputs_and_out, i, axis):
    xs = inputs_and_out[:-1]
    start = sum(x.shape[axis] for x in xs[:i])
    index = (slice(None),) * axis + (slice(start, start + xs[i].shape[axis]),)
    return gather(g, index=index)


def _index_sample(rng):
    return [rng.standard_normal((4, 5))], {"index": (np.array([0, 2, 2]), slice(1, 4))}


reshape = Primitive(
    "reshape", "movement", _reshape_spec, lambda x, shape: x.reshape(shape),
    (lambda g, x, out, shape: reshape(g, shape=x.shape),), (),
    floats((3, 4), shape=(2, 6)), backward_name="ViewBackward0")

expand = Primitive(
    "expand", "movement", _expand_spec, broadcast_view,
    # The gradient has the expanded shape; the engine sums it back to x's shape.
    (lambda g, x, out, shape: g,), (),
    floats((3, 1), shape=(2, 3, 4)))

permute = Primitive(
    "permute", "movement",
    lambda x, dims: Spec(tuple(x.shape[d] for d in dims), x.dtype),
    lambda x, dims: np.transpose(x, dims),
    (lambda g, x, out, dims: permute(g, dims=tuple(np.argsort(dims).tolist())),), (),
    floats((2, 3, 4), dims=(2, 0, 1)))

gather = Primitive(
    "gather", "index",
    lambda x, index: Spec(_indexed_shape(x.shape, index), x.dtype),
    lambda x, index: x[index],
    (lambda g, x, out, index: scatter_add(g, shape=x.shape, index=index),), (),
    _index_sample, backward_name="IndexBackward0")

scatter_add = Primitive(
    "scatter_add", "index",
    lambda g, shape, index: Spec(tuple(shape), g.dtype),
    _scatter_add,
    (lambda g, x, out, shape, index: gather(g, index=index),), (),
    lambda rng: ([rng.standard_normal((3, 4))],
                 {"shape": (4, 5), "index": (np.array([0, 2, 2]), slice(1, 5))}))

index_put = Primitive(
    "index_put", "index",
    lambda x, v, index: Spec(x.shape, x.dtype),
    _index_put,
    (lambda g, x, v, out, index: index_put(g, 0.0, index=index),
     lambda g, x, v, out, index: gather(g, index=index)),
    (),
    lambda rng: ([rng.standard_normal((4, 5)), rng.standard_normal((2, 3))],
                 {"index": (np.array([0, 3]), slice(1, 4))}),
    backward_name="IndexPutBackward0")

concat = Primitive(
    "concat", "movement", _concat_spec, lambda *xs, axis: np.concatenate(xs, axis=axis),
    (_concat_rule,), (), floats((2, 3), (4, 3), axis=0), backward_name="CatBackward0",
    variadic=True)



# --- indexing by a tensor of indices along one axis (the index is an input, not an
# attribute, so a compiled graph reads new indices on every call) ---
def _take_spec(x, idx, axis):
    return Spec(x.shape[:axis] + idx.shape + x.shape[axis + 1:], x.dtype)


def _untake(g, idx, axis, shape):
    out = np.zeros(shape, dtype=g.dtype)
    index = (slice(None),) * axis + (idx,)
    np.add.at(out, index, g)  # repeated indices add up
    return out


def _along_grids(idx, axis):
    """Index arrays selecting `idx` along `axis` and every position elsewhere."""
    grids = list(np.ix_(*[np.arange(n) for n in idx.shape]))
    grids[axis] = idx
    return tuple(grids)


def _unalong(g, idx, axis, shape):
    out = np.zeros(shape, dtype=g.dtype)
    np.add.at(out, _along_grids(idx, axis), g)
    return out


take = Primitive(
    "take", "index", _take_spec, lambda x, idx, axis: np.take(x, idx, axis=axis),
    (lambda g, x, idx, out, axis: untake(g, idx, axis=axis, shape=x.shape), None), (1,),
    lambda rng: ([rng.standard_normal((5, 3)), rng.integers(0, 5, (2, 4))], {"axis": 0}),
    backward_name="IndexSelectBackward0")

untake = Primitive(
    "untake", "index", lambda g, idx, axis, shape: Spec(tuple(shape), g.dtype), _untake,
    (lambda gg, g, idx, out, axis, shape: take(gg, idx, axis=axis), None), (1,),
    lambda rng: ([rng.standard_normal((2, 4, 3)), rng.integers(0, 5, (2, 4))],
                 {"axis": 0, "shape": (5, 3)}))

take_along = Primitive(
    "take_along", "index", lambda x, idx, axis: Spec(idx.shape, x.dtype),
    lambda x, idx, axis: np.take_along_axis(x, idx, axis=axis),
    (lambda g, x, idx, out, axis: untake_along(g, idx, axis=axis, shape=x.shape), None), (1,),
    lambda rng: ([rng.standard_normal((4, 5)), rng.integers(0, 5, (4, 2))], {"axis": 1}),
    backward_name="GatherBackward0")

untake_along = Primitive(
    "untake_along", "index", lambda g, idx, axis, shape: Spec(tuple(shape), g.dtype),
    _unalong,
    (lambda gg, g, idx, out, axis, shape: take_along(gg, idx, axis=axis), None), (1,),
    lambda rng: ([rng.standard_normal((4, 2)), rng.integers(0, 5, (4, 2))],
                 {"axis": 1, "shape": (4, 5)}))

MOVEMENT = [reshape, expand, permute, gather, scatter_add, index_put, concat, take, untake,
            take_along, untake_along]
