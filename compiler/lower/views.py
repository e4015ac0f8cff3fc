"""Movement primitives as index maps: which input element each output element is.

A movement node never computes anything, so it lowers to a function from the output's
index to the input's; the expression builder follows it and the value is read (or
computed) at the moved index. Reshape is the only one that needs division, and the
index simplifier (`index.py`) removes it whenever the reshape only splits or merges
dimensions, which is nearly always.

>>> from tracegrad.compiler.lower import index as ix
>>> i, j = ix.index(ix.Var("i", 3)), ix.index(ix.Var("j", 4))
>>> [str(k) for k in permute_map((i, j), dims=(1, 0))]
['j', 'i']
"""

from __future__ import annotations

import numpy as np

from ..ops.dtypes import int64
from . import index as ix
from .expr import Buffer, ExpressionBuilder


def reshape_map(out_idx: tuple, out_shape: tuple, in_shape: tuple) -> tuple:
    return ix.delinearize(ix.linear(out_idx, out_shape), in_shape)


def expand_map(out_idx: tuple, out_shape: tuple, in_shape: tuple) -> tuple:
    lead = len(out_shape) - len(in_shape)
    return tuple(ix.ZERO if size == 1 and out_shape[lead + d] != 1 else out_idx[lead + d]
                 for d, size in enumerate(in_shape))


def permute_map(out_idx: tuple, dims: tuple) -> tuple:
    in_idx = [None] * len(dims)
    for k, d in enumerate(dims):
        in_idx[d] = out_idx[k]
    return tuple(in_idx)


# --- NumPy indexing with an attribute index -----------------------------------------------

class IndexPlan:
    """`x[index]` for a constant `index`: the result's shape and its element map.

    Integer and boolean arrays in the index become constant arrays in the module (their
    negative entries already wrapped); ints, slices, None and Ellipsis are arithmetic."""

    def __init__(self, shape: tuple, index, name: str = "index"):
        items = _expand(shape, index if isinstance(index, tuple) else (index,))
        arrays = [k for k, it in enumerate(items) if isinstance(it, np.ndarray)]
        if arrays:  # with an array present, ints are advanced indices too (NumPy)
            arrays = [k for k, it in enumerate(items)
                      if isinstance(it, (np.ndarray, int, np.integer))]
        self.items, self.advanced = items, arrays
        self.adv_shape = np.broadcast_shapes(*(np.shape(items[k]) for k in arrays)) \
            if arrays else ()
        adjacent = arrays == list(range(arrays[0], arrays[-1] + 1)) if arrays else True
        self.adv_at = None
        if arrays:
            self.adv_at = sum(_out_dims(items[k]) for k in range(arrays[0])) if adjacent else 0
        self.tables = self._tables(shape, name)
        self.shape = self._shape(shape)

    def _tables(self, shape, name) -> dict:
        """The advanced index arrays, broadcast and wrapped, as constant buffers."""
        tables, dim = {}, 0
        for k, it in enumerate(self.items):
            if k in self.advanced:
                size = shape[dim]
                full = np.broadcast_to(np.asarray(it, dtype=np.int64), self.adv_shape)
                full = np.ascontiguousarray(np.where(full < 0, full + size, full))
                if full.size and (full.min() < 0 or full.max() >= size):
                    raise IndexError(f"index out of bounds for axis {dim} with size {size}")
                tables[k] = Buffer(f"{name}{k}", self.adv_shape, int64, "global", full)
            dim += it is not None
        return tables

    def _shape(self, shape) -> tuple:
        out, dim = [], 0
        for it in self.items:
            if it is None:
                out.append(1)
            elif isinstance(it, slice):
                out.append(len(range(*it.indices(shape[dim]))))
            dim += it is not None
        if self.advanced:
            out[self.adv_at:self.adv_at] = list(self.adv_shape)
        return tuple(out)

    def map(self, out_idx: tuple, in_shape: tuple) -> tuple:
        """The input index of output element `out_idx`."""
        out_idx = list(out_idx)
        nadv = len(self.adv_shape)
        adv_idx = tuple(out_idx[self.adv_at:self.adv_at + nadv]) if self.advanced else ()
        if self.advanced:
            del out_idx[self.adv_at:self.adv_at + nadv]
        in_idx, cursor, dim = [], 0, 0
        for k, it in enumerate(self.items):
            if it is None:
                cursor += 1
                continue
            if k in self.advanced:
                table = self.tables[k]
                if table.numel == 1:
                    in_idx.append(ix.index(int(table.data.reshape(-1)[0])))
                else:
                    source = _table_load(table, adv_idx)
                    in_idx.append(ix.index(ix._atom(ix.Indirect, source, in_shape[dim])))
            elif isinstance(it, slice):
                start, _, step = it.indices(in_shape[dim])
                in_idx.append(out_idx[cursor] * step + start)
                cursor += 1
            else:
                in_idx.append(ix.index(int(it) % in_shape[dim]))
            dim += 1
        return tuple(in_idx)


def _table_load(table: Buffer, adv_idx: tuple):
    from .expr import load

    return load(table, ix.linear(adv_idx, table.shape))


def _out_dims(item) -> int:
    return 1 if item is None or isinstance(item, slice) else 0


def _expand(shape: tuple, index: tuple) -> list:
    """Index items with boolean arrays as integer ones and Ellipsis spelled out."""
    items = []
    for it in index:
        if isinstance(it, list):
            it = np.asarray(it)
        if isinstance(it, np.ndarray) and it.dtype == np.bool_:
            items.extend(np.nonzero(it))
        elif isinstance(it, np.ndarray) and it.ndim == 0:
            items.append(int(it))
        else:
            items.append(it)
    used = sum(1 for it in items if it is not None and it is not Ellipsis)
    fill = [slice(None)] * (len(shape) - used)
    for k, it in enumerate(items):
        if it is Ellipsis:
            return items[:k] + fill + [i for i in items[k + 1:] if i is not Ellipsis]
    return items + fill


# --- inline rules --------------------------------------------------------------------------

def reshape_rule(builder: ExpressionBuilder, node, idx):
    x = node.inputs[0]
    return builder.at(x, reshape_map(idx, node.out.shape, x.shape))


def expand_rule(builder: ExpressionBuilder, node, idx):
    x = node.inputs[0]
    return builder.at(x, expand_map(idx, node.out.shape, x.shape))


def permute_rule(builder: ExpressionBuilder, node, idx):
    return builder.at(node.inputs[0], permute_map(idx, node.attrs["dims"]))


def gather_rule(builder: ExpressionBuilder, node, idx):
    x = node.inputs[0]
    plan = index_plan(node)
    return builder.at(x, plan.map(idx, x.shape))


def take_rule(builder: ExpressionBuilder, node, idx):
    x, where = node.inputs
    axis, k = node.attrs["axis"], where.ndim
    picked = builder.at(where, idx[axis:axis + k])
    moved = ix.index(ix._atom(ix.Indirect, picked, x.shape[axis]))
    return builder.at(x, idx[:axis] + (moved,) + idx[axis + k:])


def take_along_rule(builder: ExpressionBuilder, node, idx):
    x, where = node.inputs
    axis = node.attrs["axis"]
    picked = builder.at(where, idx)
    moved = ix.index(ix._atom(ix.Indirect, picked, x.shape[axis]))
    in_idx = tuple(moved if d == axis else (ix.ZERO if x.shape[d] == 1 else idx[d])
                   for d in range(x.ndim))
    return builder.at(x, in_idx)


_PLANS: dict[int, tuple] = {}


def index_plan(node) -> IndexPlan:
    """The node's `IndexPlan`, made once per node."""
    found = _PLANS.get(id(node))
    if found is None or found[0] is not node:
        shape = node.inputs[0].shape if node.op != "scatter_add" else tuple(node.attrs["shape"])
        found = _PLANS[id(node)] = (node, IndexPlan(shape, node.attrs["index"],
                                                    f"{node.out.name}_index"))
    return found[1]
