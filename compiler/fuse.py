"""Fusion legality: can a set of nodes run as one kernel, one loop nest?

A kernel loops over a *domain* (a shape). Each value it computes or reads runs along the
domain through a *frame*: per axis of the value, the domain axis it follows, or None for
a size-1 axis. Inside a kernel, permute and unit-axis reshape views only relabel axes and
a broadcast drops them, so a chain of elementwise ops through them is one loop; reshape,
permute and expand of a value in memory are just index maps of the read ("load views").

Reductions split the domain. The *inner* axes form a row (softmax's or layer_norm's last
axis, a sum over it): a row is small, so the kernel may pass over it several times and
broadcast a row's result back into it. Reductions over the other, *outer* axes (a bias
gradient: a sum over the batch) accumulate across the whole loop; the values that depend
on them are *final*, computed once after the loop, and never broadcast back. A matmul
heads its kernel: its output is the domain, the rest is its epilogue. Other index and
movement ops (gather, scatter, concat) copy data, so they run alone.

A node is recomputed nowhere: a value computed inside the loop spans the whole domain,
the outer axes (once per row) or nothing (a scalar, hoisted).

>>> from tracegrad.compiler.ir_text import parse_graph
>>> g = parse_graph('''def f(x0: f32[4,8], x1: f32[8]):
...     v0 = add(x0, x1)
...     v1 = softmax(v0, axis=1)
...     v2 = sum(v1, axes=(0,), keepdims=False)
...     return (v2,)''')
>>> lay = layout(g.nodes)
>>> lay.domain, sorted(lay.inner), sorted(lay.outer), [v.name for v in lay.final]
((4, 8), [1], [0], ['v2'])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .ir import Node, Value
from .ops import PRIMITIVES

VIEWS = frozenset({"reshape", "permute", "expand"})
# Fused primitives that reduce over a row and give a value of their input's shape.
ROW_AXES = {"softmax": "axis", "log_softmax": "axis", "softmax_backward": "axis",
            "log_softmax_backward": "axis", "layer_norm": "axes", "layer_norm_backward": "axes"}
_MISSING = object()  # an axis whose frame is not known yet


class Unfusable(Exception):
    """The nodes cannot share one loop nest; the message says why."""


@dataclass
class Layout:
    """How one kernel's nodes share a loop nest (see the module docstring)."""

    domain: tuple
    frames: dict = field(default_factory=dict)  # Value -> frame (tuple of domain axes)
    inner: frozenset = frozenset()  # domain axes of a row
    outer: frozenset = frozenset()  # domain axes summed across the loop
    final: frozenset = frozenset()  # values computed after the loop


def role(node: Node) -> str:
    """constant, view, elementwise, reduce, row, matmul, or opaque (index/movement copies).

    >>> role(Node("gelu", [], {}, None)), role(Node("softmax", [], {}, None))
    ('elementwise', 'row')
    """
    if node.op == "constant":
        return "constant"
    if node.op in VIEWS:
        return "view"
    if node.op in ROW_AXES:
        return "row"
    kind = PRIMITIVES[node.op].kind
    return kind if kind in ("elementwise", "reduce", "matmul") else "opaque"


def reduced_axes(node: Node) -> tuple:
    """The axes of its first input that a reduce or row node reduces over."""
    ndim = node.inputs[0].ndim
    if node.op in ROW_AXES:
        axes = node.attrs[ROW_AXES[node.op]]
    else:
        axes = node.attrs.get("axes", node.attrs.get("axis"))
    if axes is None:
        return tuple(range(ndim))
    return tuple(sorted(a % ndim for a in (axes if isinstance(axes, (tuple, list)) else [axes])))


def layout(nodes: list[Node]) -> Layout:
    """The loop nest `nodes` (in graph order) can share, or raise `Unfusable`."""
    roles = [role(n) for n in nodes]
    if "constant" in roles:
        raise Unfusable("constants are not part of kernels")
    heads = [n for n, r in zip(nodes, roles) if r != "view"]
    if not heads:
        return Layout(())
    if "opaque" in roles:
        if len(heads) > 1:
            raise Unfusable(f"{heads[0].op} copies data: it runs alone")
        return Layout(heads[0].out.shape)
    matmuls = [n for n, r in zip(nodes, roles) if r == "matmul"]
    if len(matmuls) > 1:
        raise Unfusable("two matmuls")
    if matmuls:
        _check_operands(nodes, matmuls[0])
    needs, linked = _framed_values(nodes)
    anchor = matmuls[0].out if matmuls else max(_loop_values(nodes, needs), key=_numel)
    frames = _propagate(nodes, linked, anchor)
    _check_frames(needs, frames, anchor.shape)
    lay = _levels(nodes, frames, anchor.shape)
    _check_spans(nodes, lay)
    if matmuls:
        _check_epilogue(nodes, matmuls[0], frames)
    return lay


def _numel(value: Value) -> int:
    return math.prod(value.shape)


def _values(node: Node) -> list[Value]:
    return [x for x in node.inputs if isinstance(x, Value)]


def _framed_values(nodes: list[Node]) -> tuple[set, set]:
    """The values that need a frame, and the *linked* views: views of a value computed
    in the kernel that the kernel reads, which tie their input's frame to their output's.
    A view of memory is an index map of the read and needs no frame for its input."""
    computed = set()
    for node in nodes:
        if role(node) != "view" or node.inputs[0] in computed:
            computed.add(node.out)
    needs = {n.out for n in nodes if role(n) != "view"}
    linked = set()
    for node in reversed(nodes):
        if role(node) in ("elementwise", "reduce", "row"):
            needs.update(_values(node))
        elif role(node) == "view" and node.out in needs and node.inputs[0] in computed:
            needs.add(node.inputs[0])
            linked.add(node)
    return needs, linked


def _loop_values(nodes: list[Node], needs: set) -> list[Value]:
    """Candidates for the domain: computed values and what reductions read (in order)."""
    found = []
    for node in nodes:
        if role(node) in ("reduce", "row"):
            found += _values(node)
        if role(node) != "view":
            found.append(node.out)
    return [v for v in found if v in needs]


def _propagate(nodes: list[Node], linked: set, anchor: Value) -> dict:
    """Frames from the anchor's (the identity) to every value reachable through the
    nodes' rules, in both directions, until nothing changes."""
    frames = {anchor: tuple(None if s == 1 else i for i, s in enumerate(anchor.shape))}
    for node in nodes:
        for v in [*_values(node), node.out]:
            if all(s == 1 for s in v.shape):
                frames[v] = (None,) * v.ndim
    changed = True
    while changed:
        changed = False
        for node in nodes:
            for value, frame in _derive(node, frames, linked, anchor.shape):
                known = frames.get(value)
                if known is None:
                    frames[value], changed = frame, True
                elif known != frame:
                    raise Unfusable(f"{value.name} would run along two index maps")
    return frames


def _derive(node: Node, frames: dict, linked: set, domain: tuple) -> list:
    """(value, frame) pairs that `node`'s rule gives from the frames known so far."""
    r, out, ins = role(node), node.out, _values(node)
    if r == "elementwise" or (node in linked and node.op == "expand"):
        if out in frames:
            return [(u, _broadcast(u.shape, out.shape, frames[out])) for u in ins]
        joined = _join(out.shape, [(u, frames[u]) for u in ins if u in frames])
        return [(out, joined)] if joined else []
    if r == "row":
        known = next((frames[v] for v in [out, *ins] if v in frames), None)
        return [] if known is None else [(v, known) for v in [out, *ins]]
    if r == "reduce":
        x, axes, keep = ins[0], reduced_axes(node), node.attrs.get("keepdims", False)
        if x in frames:
            return [(out, _reduce(frames[x], axes, keep))]
        unreduced = _unreduce(x, out, frames, axes, keep, domain) if out in frames else None
        return [(x, unreduced)] if unreduced else []
    if node in linked:
        return _derive_view(node, frames)
    return []  # a load view, a matmul (the anchor) or an opaque node: no constraint


def _broadcast(shape: tuple, out_shape: tuple, out_frame: tuple) -> tuple:
    """The frame of an operand of `shape` broadcast against a result framed `out_frame`."""
    lead = len(out_shape) - len(shape)
    return tuple(None if s == 1 else out_frame[lead + i] for i, s in enumerate(shape))


def _join(shape: tuple, known: list) -> tuple | None:
    """A result's frame from its operands' (None while some axis is undetermined)."""
    frame = [None if s == 1 else _MISSING for s in shape]
    for u, f in known:
        lead = len(shape) - u.ndim
        for i, s in enumerate(u.shape):
            if s != 1:
                frame[lead + i] = f[i]
    return None if _MISSING in frame else tuple(frame)


def _reduce(frame: tuple, axes: tuple, keepdims: bool) -> tuple:
    if keepdims:
        return tuple(None if i in axes else a for i, a in enumerate(frame))
    return tuple(a for i, a in enumerate(frame) if i not in axes)


def _unreduce(x: Value, out: Value, frames: dict, axes: tuple, keep: bool, domain: tuple):
    """The input's frame from the result's: reduced axes take the first free domain axes
    of their sizes (None when there are none)."""
    kept = iter(frames[out])
    frame = []
    for i in range(x.ndim):
        if i in axes:
            frame.append(None if x.shape[i] == 1 else _MISSING)
            if keep:
                next(kept)
        else:
            frame.append(next(kept))
    free = [a for a, s in enumerate(domain) if s != 1 and a not in frame]
    for i, a in enumerate(frame):
        if a is _MISSING:
            match = next((a for a in free if domain[a] == x.shape[i]), None)
            if match is None:
                return None
            frame[i] = match
            free.remove(match)
    return tuple(frame)


def _derive_view(node: Node, frames: dict) -> list:
    u, out = node.inputs[0], node.out
    if node.op == "permute":
        dims = node.attrs["dims"]
        if u in frames:
            return [(out, tuple(frames[u][d] for d in dims))]
        if out in frames:
            frame = [None] * u.ndim
            for i, d in enumerate(dims):
                frame[d] = frames[out][i]
            return [(u, tuple(frame))]
        return []
    # reshape: only one that adds or drops size-1 axes keeps a computed value's frame
    if [s for s in u.shape if s != 1] != [s for s in out.shape if s != 1]:
        raise Unfusable(f"reshape {list(u.shape)} -> {list(out.shape)} regroups axes")
    src, dst = (u, out) if u in frames else (out, u)
    if src not in frames:
        return []
    axes = iter(a for a, s in zip(frames[src], src.shape) if s != 1)
    return [(dst, tuple(None if s == 1 else next(axes) for s in dst.shape))]


def _check_frames(needs: set, frames: dict, domain: tuple) -> None:
    for v in needs:
        frame = frames.get(v)
        if frame is None:
            raise Unfusable(f"{v.name} has no index map into the domain {list(domain)}")
        axes = [a for a in frame if a is not None]
        sizes_agree = all((a is None) == (s == 1) and (a is None or domain[a] == s)
                          for a, s in zip(frame, v.shape))
        if len(set(axes)) != len(axes) or not sizes_agree:
            raise Unfusable(f"{v.name} does not run along the domain {list(domain)}")


def _span(frames: dict, value: Value) -> frozenset:
    return frozenset(a for a in frames.get(value, ()) if a is not None)


def _reduced_span(node: Node, frames: dict) -> frozenset:
    frame = frames[node.inputs[0]]
    return frozenset(frame[a] for a in reduced_axes(node) if frame[a] is not None)


def _levels(nodes: list[Node], frames: dict, domain: tuple) -> Layout:
    """The row (inner axes), the outer axes and the final values; raise if a reduction
    cuts a row in two or a row op would need a value only known after the loop."""
    rows = {_reduced_span(n, frames) for n in nodes if role(n) == "row"} - {frozenset()}
    if len(rows) > 1:
        raise Unfusable("row ops over different axes")
    sums = [_reduced_span(n, frames) for n in nodes if role(n) == "reduce"]
    inner = next(iter(rows), next((s for s in sums if s), frozenset()))
    outer, final = set(), set()
    for node in nodes:
        if any(u in final for u in _values(node)):
            if role(node) == "row":
                raise Unfusable(f"{node.op} would read a value known only after the loop")
            final.add(node.out)
        elif role(node) == "reduce":
            span = _reduced_span(node, frames)
            if span and span != inner:
                if span & inner and not span >= inner:
                    raise Unfusable("a reduction over part of a row")
                outer |= span - inner
                final.add(node.out)
    return Layout(domain, frames, inner, frozenset(outer), frozenset(final))


def _check_spans(nodes: list[Node], lay: Layout) -> None:
    """Computed once per element, once per row, or once (a scalar); final values do
    not run along the axes summed across the loop."""
    full = frozenset(a for a, s in enumerate(lay.domain) if s != 1)
    for node in nodes:
        if role(node) == "view":
            continue
        span = _span(lay.frames, node.out)
        if node.out in lay.final:
            if span & lay.outer:
                raise Unfusable(f"{node.out.name} needs the loop's result in the loop")
        elif span not in (full, full - lay.inner, frozenset()):
            raise Unfusable(f"{node.out.name} would be recomputed for every element")


def _check_operands(nodes: list[Node], matmul: Node) -> None:
    """A matmul reads its operands from memory (through views at most)."""
    producers = {n.out: n for n in nodes}
    for operand in _values(matmul):
        while operand in producers and role(producers[operand]) == "view":
            operand = producers[operand].inputs[0]
        if operand in producers:
            raise Unfusable(f"matmul operand {operand.name} is computed in the kernel")


def _check_epilogue(nodes: list[Node], matmul: Node, frames: dict) -> None:
    """A matmul's kernel is the matmul and what follows it: nothing but scalars is
    computed before it."""
    after = {matmul.out}
    for node in nodes:
        if any(u in after for u in _values(node)):
            after.add(node.out)
        elif role(node) not in ("view", "matmul") and _span(frames, node.out):
            raise Unfusable(f"{node.out.name} would run before the matmul")
