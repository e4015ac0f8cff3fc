"""The lowering of every primitive, by kind, and the slot it fills on the `Primitive` record.

* **inline** (elementwise, and the movement ops that only move: reshape, expand, permute,
  gather, take, take_along): a rule `(builder, node, index) -> expression`. These are
  computed wherever they are read, so a chain of them costs one pass over memory.
* **nests** (reductions, concat, the scatters, matmul): a builder that appends loop
  nests writing the node's result into a buffer.
* **decompose** (softmax, log_softmax, layer_norm and their backwards): a few primitive
  nodes — a reduction or two and an elementwise epilogue — that then lower as above.

`install()` puts these records in `PRIMITIVES[name].lowering`, where the rest of the
compiler looks them up.

>>> rule_kind("exp"), rule_kind("sum"), rule_kind("softmax")
('inline', 'nests', 'decompose')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..ir import Node, Value, infer_spec
from ..ops import PRIMITIVES
from . import index as ix
from . import views
from .expr import Buffer, ExpressionBuilder, elementwise_rule, literal
from .nests import GemmCall, MapNest, ReduceNest, Store


@dataclass(frozen=True)
class Lowering:
    """What `Primitive.lowering` holds: the kind and the function for it."""

    kind: str  # inline | nests | decompose
    fn: Callable

    def __repr__(self) -> str:
        return f"<lowering {self.kind}: {getattr(self.fn, '__name__', self.fn)}>"


# --- nest builders ------------------------------------------------------------------------

class NestContext:
    """What a nest builder needs: the expression builder as of now, and where to put nests."""

    def __init__(self, builder_factory, nests: list, materialize):
        self.snapshot = builder_factory  # () -> ExpressionBuilder over what is in memory now
        self.nests = nests
        self.materialize = materialize  # (value) -> Buffer holding it (written first if need be)


def _reduce(ctx: NestContext, node: Node, target: Buffer) -> None:
    x = node.inputs[0]
    builder = ctx.snapshot()
    if node.op in ("argmax", "argmin"):
        axis = node.attrs["axis"]
        axes = tuple(range(x.ndim)) if axis is None else (axis,)
        dtype = x.dtype
    else:
        axes, dtype = node.attrs["axes"], node.out.dtype
    ctx.nests.append(ReduceNest(x.shape, axes, node.op, lambda idx: builder.at(x, idx),
                                target, dtype, label=node.out.name))


def _concat(ctx: NestContext, node: Node, target: Buffer) -> None:
    axis, start = node.attrs["axis"], 0
    builder = ctx.snapshot()
    for x in node.inputs:
        def body(idx, x=x, start=start):
            moved = idx[:axis] + (idx[axis] + start,) + idx[axis + 1:]
            return [Store(target, ix.linear(moved, target.shape), builder.at(x, idx))]

        ctx.nests.append(MapNest(x.shape, body, label=node.out.name))
        start += x.shape[axis]


def _fill(ctx: NestContext, target: Buffer, value) -> None:
    def body(idx):
        return [Store(target, ix.linear(idx, target.shape), literal(value, target.dtype))]

    ctx.nests.append(MapNest(target.shape, body))


def _copy_into(ctx: NestContext, target: Buffer, x: Value) -> None:
    builder = ctx.snapshot()
    ctx.nests.append(MapNest(target.shape, lambda idx: [
        Store(target, ix.linear(idx, target.shape), builder.at(x, idx))]))


def _scatter_add(ctx: NestContext, node: Node, target: Buffer) -> None:
    g = node.inputs[0]
    plan = views.index_plan(node)
    _fill(ctx, target, 0)
    builder = ctx.snapshot()

    def body(idx):
        where = plan.map(idx, target.shape)
        value = builder.broadcast_input(g, plan.shape, idx, target.dtype)
        return [Store(target, ix.linear(where, target.shape), value, accumulate=True)]

    ctx.nests.append(MapNest(plan.shape, body, sequential=bool(plan.advanced)))


def _index_put(ctx: NestContext, node: Node, target: Buffer) -> None:
    x, v = node.inputs
    plan = views.index_plan(node)
    _copy_into(ctx, target, x)
    builder = ctx.snapshot()

    def body(idx):
        where = plan.map(idx, target.shape)
        value = builder.broadcast_input(v, plan.shape, idx, target.dtype)
        return [Store(target, ix.linear(where, target.shape), value)]

    ctx.nests.append(MapNest(plan.shape, body, sequential=bool(plan.advanced)))


def _untake(ctx: NestContext, node: Node, target: Buffer) -> None:
    g, where = node.inputs
    axis, k = node.attrs["axis"], where.ndim
    _fill(ctx, target, 0)
    builder = ctx.snapshot()

    def body(idx):
        picked = builder.at(where, idx[axis:axis + k])
        moved = ix.index(ix._atom(ix.Indirect, picked, target.shape[axis]))
        out = idx[:axis] + (moved,) + idx[axis + k:]
        return [Store(target, ix.linear(out, target.shape), builder.at(g, idx), True)]

    ctx.nests.append(MapNest(g.shape, body, sequential=True))


def _untake_along(ctx: NestContext, node: Node, target: Buffer) -> None:
    g, where = node.inputs
    axis = node.attrs["axis"]
    _fill(ctx, target, 0)
    builder = ctx.snapshot()

    def body(idx):
        moved = ix.index(ix._atom(ix.Indirect, builder.at(where, idx), target.shape[axis]))
        out = tuple(moved if d == axis else idx[d] for d in range(len(idx)))
        return [Store(target, ix.linear(out, target.shape), builder.at(g, idx), True)]

    ctx.nests.append(MapNest(g.shape, body, sequential=True))


def _matmul(ctx: NestContext, node: Node, target: Buffer, transposed: bool = False) -> None:
    """`target = a @ b` through BLAS; with `transposed`, `target` is the product with its
    last two axes swapped, computed directly as b^T @ a^T (autodiff's weight gradients are
    `(x^T @ g)^T`: no transposing copy)."""
    from . import matmul
    from .blas import use_blas

    a, b = node.inputs
    if not use_blas() or not matmul.gemm_supported(node.out.dtype) \
            or 0 in node.out.shape[-2:] + a.shape[-1:]:  # BLAS rejects empty leading dims
        return _matmul_loops(ctx, node, target, transposed)
    (abuf, atrans), (bbuf, btrans) = _operand(ctx, a), _operand(ctx, b)
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    out_batch = node.out.shape[:-2]
    if out_batch and b.ndim == 2 and not atrans and a.shape[:-2] == out_batch \
            and not transposed:
        m, out_batch = m * int(np.prod(out_batch)), ()  # (B, M, K) @ (K, N): one call
    lda, ldb = (m if atrans else k), (k if btrans else n)  # row lengths as stored

    def body(idx):
        a_at = matmul.batch_offset(idx, a.shape[:-2], out_batch, m * k) if out_batch \
            else ix.ZERO
        b_at = matmul.batch_offset(idx, b.shape[:-2], out_batch, k * n) if out_batch \
            else ix.ZERO
        c_at = ix.linear(idx, out_batch) * (m * n) if out_batch else ix.ZERO
        if transposed:  # C^T = op(B)^T op(A)^T
            return [GemmCall(bbuf, b_at, not btrans, ldb, abuf, a_at, not atrans, lda,
                             target, c_at, n, m, k)]
        return [GemmCall(abuf, a_at, atrans, lda, bbuf, b_at, btrans, ldb, target, c_at,
                         m, n, k)]

    ctx.nests.append(MapNest(out_batch, body, sequential=True, label=node.out.name))


def swaps_last_two(node: Node) -> bool:
    n = node.out.ndim
    return node.op == "permute" and n >= 2 and \
        tuple(node.attrs["dims"]) == tuple(range(n - 2)) + (n - 1, n - 2)


def _operand(ctx: NestContext, x: Value):
    """A matmul operand in memory: `(buffer, transposed)`; a swap of the last two axes of
    a value in memory is passed as BLAS's transpose flag instead of being copied."""
    builder = ctx.snapshot()
    if x in builder.buffers:
        return builder.buffers[x], False
    node = builder.producers.get(x)
    if node is not None and node.op == "permute":
        inner = node.inputs[0]
        if swaps_last_two(node) and inner in builder.buffers:
            return builder.buffers[inner], True
    return ctx.materialize(x), False


def _matmul_loops(ctx: NestContext, node: Node, target: Buffer, transposed=False) -> None:
    """Our own loop nest: out[..., i, j] = sum_k a[..., i, k] * b[..., k, j]."""
    a, b = node.inputs
    builder = ctx.snapshot()
    out = node.out.shape
    nb = len(out) - 2
    # (..., i, k, j) with k reduced and j innermost; transposed: (..., j, k, i)
    domain = out[:-2] + ((out[-1], a.shape[-1], out[-2]) if transposed
                         else (out[-2], a.shape[-1], out[-1]))

    def source(idx):
        batch, i, k, j = idx[:nb], idx[nb], idx[nb + 1], idx[nb + 2]
        if transposed:
            i, j = j, i
        x = builder.broadcast_input(a, out[:-2] + a.shape[-2:], batch + (i, k), node.out.dtype)
        y = builder.broadcast_input(b, out[:-2] + b.shape[-2:], batch + (k, j), node.out.dtype)
        from .expr import apply

        return apply("mul", [x, y], node.out.dtype)

    ctx.nests.append(ReduceNest(domain, (nb + 1,), "sum", source, target, node.out.dtype,
                                label=node.out.name))


# --- decompositions of the fused primitives ---------------------------------------------

class _Decomposer:
    """Builds the primitive nodes that stand for one fused node; the last one defines the
    fused node's own output value."""

    def __init__(self, node: Node):
        self.node, self.nodes, self.count = node, [], 0

    def __call__(self, op: str, inputs: list, **attrs) -> Value:
        spec = infer_spec(op, inputs, attrs)
        self.count += 1
        out = Value(f"{self.node.out.name}_{op}{self.count}", spec.shape, spec.dtype)
        self.nodes.append(Node(op, list(inputs), attrs, out, self.node.loc))
        return out

    def finish(self) -> list:
        last = self.nodes[-1]
        assert (last.out.shape, last.out.dtype) == (self.node.out.shape, self.node.out.dtype)
        self.nodes[-1] = Node(last.op, last.inputs, last.attrs, self.node.out, self.node.loc)
        return self.nodes


def _mean(f, x, axes):
    n = float(np.prod([x.shape[a] for a in axes]))
    return f("div", [f("sum", [x], axes=axes, keepdims=True), n])


def _softmax(f, x, axis):
    e = f("exp", [f("sub", [x, f("amax", [x], axes=(axis,), keepdims=True)])])
    f("div", [e, f("sum", [e], axes=(axis,), keepdims=True)])


def _log_softmax(f, x, axis):
    shifted = f("sub", [x, f("amax", [x], axes=(axis,), keepdims=True)])
    total = f("sum", [f("exp", [shifted])], axes=(axis,), keepdims=True)
    f("sub", [shifted, f("log", [total])])


def _softmax_backward(f, g, out, axis):
    grad = f("mul", [g, out])
    f("sub", [grad, f("mul", [out, f("sum", [grad], axes=(axis,), keepdims=True)])])


def _log_softmax_backward(f, g, out, axis):
    total = f("sum", [g], axes=(axis,), keepdims=True)
    f("sub", [g, f("mul", [f("exp", [out]), total])])


def _inverse_std(f, x, axes, eps):
    centred = f("sub", [x, _mean(f, x, axes)])
    var = _mean(f, f("mul", [centred, centred]), axes)
    return centred, f("div", [1.0, f("sqrt", [f("add", [var, eps])])])


def _layer_norm(f, x, axes, eps):
    centred, inv = _inverse_std(f, x, axes, eps)
    f("mul", [centred, inv])


def _layer_norm_backward(f, g, x, out, axes, eps):
    _, inv = _inverse_std(f, x, axes, eps)
    grad = f("sub", [g, _mean(f, g, axes)])
    grad = f("sub", [grad, f("mul", [out, _mean(f, f("mul", [g, out]), axes)])])
    f("mul", [grad, inv])


DECOMPOSITIONS = {
    "softmax": _softmax, "log_softmax": _log_softmax,
    "softmax_backward": _softmax_backward, "log_softmax_backward": _log_softmax_backward,
    "layer_norm": _layer_norm, "layer_norm_backward": _layer_norm_backward,
}


def decompose(node: Node) -> list:
    """The primitive nodes that compute fused `node` (the last one defines `node.out`)."""
    f = _Decomposer(node)
    DECOMPOSITIONS[node.op](f, *node.inputs, **node.attrs)
    return f.finish()


# --- the table ------------------------------------------------------------------------------

INLINE = {"reshape": views.reshape_rule, "expand": views.expand_rule,
          "permute": views.permute_rule, "gather": views.gather_rule,
          "take": views.take_rule, "take_along": views.take_along_rule}
NESTS = {"sum": _reduce, "prod": _reduce, "amax": _reduce, "amin": _reduce,
         "argmax": _reduce, "argmin": _reduce, "concat": _concat,
         "scatter_add": _scatter_add, "index_put": _index_put, "untake": _untake,
         "untake_along": _untake_along, "matmul": _matmul}


def lowering_of(op: str) -> Lowering | None:
    prim = PRIMITIVES.get(op)
    if prim is None:
        return None
    if op in DECOMPOSITIONS:
        return Lowering("decompose", DECOMPOSITIONS[op])
    if op in NESTS:
        return Lowering("nests", NESTS[op])
    if op in INLINE:
        return Lowering("inline", INLINE[op])
    if prim.kind == "elementwise":
        return Lowering("inline", elementwise_rule)
    return None


def rule_kind(op: str) -> str | None:
    found = lowering_of(op)
    return found.kind if found else None


def inline_rule(op: str):
    found = PRIMITIVES[op].lowering or lowering_of(op)
    if found.kind != "inline":
        raise KeyError(f"{op} is not computed inline")
    return found.fn


def install() -> None:
    """Fill each primitive's `lowering` slot (idempotent)."""
    for name, prim in PRIMITIVES.items():
        if prim.lowering is None:
            prim.lowering = lowering_of(name)


__all__ = ["Buffer", "ExpressionBuilder", "NestContext", "decompose", "install", "lowering_of"]
