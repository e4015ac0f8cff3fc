"""What one element of a value is, as a small expression DAG over buffer loads.

The loop generator asks for "the value `v` at index `(i, j)`". If `v` lives in a buffer
that is a load; if it is made by an elementwise node, it is that node's scalar op applied
to its inputs at the broadcast index; if it is made by a movement node, it is the input
at the moved index (`views.py`). So a fused kernel is just deeper expressions, and the
loop around them is written once, in `loops.py`.

Nodes are interned: asking twice for the same element gives the same object, which is
how a kernel computes a shared subexpression once.

>>> from tracegrad.compiler.ops import float32
>>> x = Buffer("x", (4,), float32)
>>> e = apply("exp", [load(x, ix.index(ix.Var("i", 4)))], float32)
>>> str(e)
'exp(x[i])'
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..ir import Node, Value
from ..ops.dtypes import DType, bool_, float64
from . import index as ix
from .scalar import COMPARISONS, EXPENSIVE, LOGICAL


@dataclass(eq=False)
class Buffer:
    """A dense row-major array the generated code reads or writes.

    `kind` says where its address comes from: "input"/"output" (the caller's arrays),
    "arena" (the program's planned temporary memory), "global" (a constant compiled into
    the module, `data`) or "table" (a large constant the caller passes)."""

    name: str
    shape: tuple
    dtype: DType
    kind: str = "arena"
    data: np.ndarray | None = field(default=None, repr=False)
    value: Value | None = field(default=None, repr=False)  # the IR value it holds, if any

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


class Expr:
    """A scalar expression node; see `load`, `literal`, `apply`."""

    dtype: DType


_INTERNED: dict[tuple, Expr] = {}


class Load(Expr):
    def __init__(self, buffer: Buffer, offset: ix.Index):
        self.buffer, self.offset, self.dtype = buffer, offset, buffer.dtype

    def __str__(self):
        return f"{self.buffer.name}[{self.offset}]"


class Literal(Expr):
    def __init__(self, value, dtype: DType):
        self.value, self.dtype = value, dtype

    def __str__(self):
        return repr(self.value)


class Apply(Expr):
    def __init__(self, op: str, args: tuple, dtype: DType, attrs: tuple):
        self.op, self.args, self.dtype, self.attrs = op, args, dtype, dict(attrs)

    def __str__(self):
        return f"{self.op}({', '.join(map(str, self.args))})"


def load(buffer: Buffer, offset: ix.Index) -> Expr:
    key = ("load", id(buffer), id(offset))
    if key not in _INTERNED:
        _INTERNED[key] = Load(buffer, offset)
    return _INTERNED[key]


def literal(value, dtype: DType) -> Expr:
    value = dtype.numpy.type(value).item()  # the value as the dtype holds it
    key = ("literal", dtype.name, repr(value))
    if key not in _INTERNED:
        _INTERNED[key] = Literal(value, dtype)
    return _INTERNED[key]


def apply(op: str, args: list, dtype: DType, attrs: dict | None = None) -> Expr:
    frozen = tuple(sorted((attrs or {}).items(), key=lambda kv: kv[0]))
    key = ("apply", op, tuple(map(id, args)), dtype.name, repr(frozen))
    if key not in _INTERNED:
        _INTERNED[key] = Apply(op, tuple(args), dtype, frozen)
    return _INTERNED[key]


def cast(e: Expr, dtype: DType) -> Expr:
    return e if e.dtype is dtype else apply("cast", [e], dtype, {"dtype": dtype})


def clear_interned() -> None:
    """Forget interned expressions (between programs: they hold buffers alive)."""
    from . import views

    _INTERNED.clear()
    ix._ATOMS.clear()
    ix._INDICES.clear()
    views._PLANS.clear()


# --- walking -----------------------------------------------------------------------------------

def walk(roots) -> list[Expr]:
    """Every expression node reachable from `roots`, also through indirect indices."""
    seen, order, stack = set(), [], list(roots)
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        order.append(e)
        if isinstance(e, Apply):
            stack.extend(e.args)
        elif isinstance(e, Load):
            stack.extend(indirect_sources(e.offset))
    return order


def indirect_sources(offset: ix.Index) -> list[Expr]:
    return [a.source for a in offset.atoms() if isinstance(a, ix.Indirect)]


def cost(roots) -> float:
    """Rough nanoseconds per element for one core (see `scalar.EXPENSIVE`)."""
    total = 0.0
    for e in walk(roots):
        if isinstance(e, Load):
            total += 0.1
        elif isinstance(e, Apply):
            total += EXPENSIVE.get(e.op, 0.03)
    return total


# --- from IR values to expressions ------------------------------------------------------

class ExpressionBuilder:
    """Builds `value at index` for the values of one kernel.

    `buffers` maps the values that already live in memory (graph inputs, earlier kernels'
    outputs, results this kernel has stored) to their buffers; every other value is
    computed from its producer node, inline.
    """

    def __init__(self, producers: dict[Value, Node], buffers: dict[Value, Buffer],
                 scalars: dict[Value, object] | None = None):
        self.producers = producers
        self.buffers = buffers
        self.scalars = scalars or {}  # one-element constants, folded into the code
        self._memo: dict[tuple, Expr] = {}

    def at(self, value, idx: tuple) -> Expr:
        """Element `idx` (a tuple of `Index`, one per dimension) of `value`."""
        if not isinstance(value, Value):
            raise TypeError(f"expected a Value, got {value!r}")
        key = (value, tuple(map(id, idx)))
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._build(value, tuple(idx))
        return found

    def _build(self, value: Value, idx: tuple) -> Expr:
        if value in self.scalars:
            return literal(self.scalars[value], value.dtype)
        buffer = self.buffers.get(value)
        if buffer is not None:
            return load(buffer, ix.linear(idx, value.shape))
        node = self.producers.get(value)
        if node is None:
            raise KeyError(f"{value!r} is neither in memory nor computed by this kernel")
        from .lowering import inline_rule  # the table of inline lowerings, by op

        return inline_rule(node.op)(self, node, idx)

    # --- helpers for the rules ---
    def broadcast_input(self, x, out_shape: tuple, idx: tuple, dtype: DType) -> Expr:
        """Input `x` (a Value or a Python scalar) at output index `idx`, as `dtype`."""
        if not isinstance(x, Value):
            return literal(x, dtype)
        lead = len(out_shape) - len(x.shape)
        mapped = tuple(ix.ZERO if size == 1 and out_shape[lead + d] != 1 else idx[lead + d]
                       for d, size in enumerate(x.shape))
        return cast(self.at(x, mapped), dtype)


def operand_dtype(node: Node) -> DType:
    """The type an elementwise node computes in: its tensor inputs' (they agree), except
    that an integer compared with a Python float compares as float64 (NumPy's rule)."""
    tensors = [x for x in node.inputs if isinstance(x, Value)]
    if node.op == "where":
        tensors = [x for x in node.inputs[1:] if isinstance(x, Value)] or tensors[:0]
        return tensors[0].dtype if tensors else node.out.dtype
    if node.op in LOGICAL:
        return bool_
    if node.op == "cast":
        return tensors[0].dtype
    dtype = tensors[0].dtype
    if node.op in COMPARISONS and not dtype.is_floating_point and any(
            isinstance(x, float) for x in node.inputs):
        return float64
    return dtype


def elementwise_rule(builder: ExpressionBuilder, node: Node, idx: tuple) -> Expr:
    """The inline rule of every elementwise primitive: its scalar op at the same index."""
    dtype = operand_dtype(node)
    shape = node.out.shape
    if node.op == "where":
        c = builder.broadcast_input(node.inputs[0], shape, idx, bool_)
        args = [c] + [builder.broadcast_input(x, shape, idx, dtype) for x in node.inputs[1:]]
    else:
        args = [builder.broadcast_input(x, shape, idx, dtype) for x in node.inputs]
    attrs = {k: node.attrs[k] for k in ("dtype", "approximate") if k in node.attrs}
    return apply(node.op, args, node.out.dtype, attrs)
