"""Compose chains of moves (`permute`, `reshape`, `expand`) into one move or none, and let
elementwise ops broadcast by themselves instead of reading an `expand`.

What is composed (their names are the keys of `stats`), each exact by construction:

    identity          permute(x, dims=(0, 1, ...)), reshape(x, shape=x.shape),
                      expand(x, shape=x.shape)                 -> x
    permute_permute   permute(permute(x, p), q)                -> permute(x, (p[i] for i in q))
    reshape_reshape   reshape(reshape(x, s), t)                -> reshape(x, t)
                      (both read and write row-major order, so the middle shape is moot)
    expand_expand     expand(expand(x, s), t)                  -> expand(x, t)
                      (x broadcasts to s and s to t, so x broadcasts to t alike)
    expand_reshape    expand(reshape(x, (1, ..., 1) + x.shape), t) -> expand(x, t)
                      (broadcasting prepends unit axes by itself)
    expand_as_reshape expand(x, t) that adds only unit axes    -> reshape(x, t)
                      (one kind of move for it, so that it composes with reshapes)
    expand_broadcast  an elementwise op reading expand(x)      -> the op reading x
                      where its own broadcasting gives the same type (mul(expand(g), y))
    expand_sink       an elementwise op reading only expanded  -> expand(op(x, ...))
                      values and scalars                          (computed on fewer elements)

The counts of the last two rules are per input read past an expand. `copy` is left
alone: a copy is there to make a buffer of its own.

A composition that lands on the identity removes the move altogether. The inner move
stays for its other readers; if it has none, `eliminate_dead_code` removes it. Not
composed: moves around `gather`/`scatter_add` (index maps with slices and arrays),
reshapes across a permute (not one row-major order) and `concat`. Before and after:

>>> from tracegrad.compiler.ir_text import parse_graph
>>> g = parse_graph('''
... def f(x0: f32[2,3], x1: f32[]):
...     v0 = permute(x0, dims=(1, 0))
...     v1 = permute(v0, dims=(1, 0))
...     v2 = reshape(v1, shape=(3, 2))
...     v3 = reshape(v2, shape=(6,))
...     v4 = reshape(x1, shape=(1, 1))
...     v5 = expand(v4, shape=(4, 6))
...     return (v3, v5)''')
>>> result = eliminate_movement(g)
>>> print(result.graph, end="")
def f(x0: f32[2,3], x1: f32[]):
    v0 = permute(x0, dims=(1, 0))                 # f32[3,2]
    v2 = reshape(x0, shape=(3, 2))                # f32[3,2]
    v3 = reshape(x0, shape=(6,))                  # f32[6]
    v4 = reshape(x1, shape=(1, 1))                # f32[1,1]
    v5 = expand(x1, shape=(4, 6))                 # f32[4,6]
    return (v3, v5)
>>> {rule: n for rule, n in result.stats.items() if n}
{'identity': 1, 'permute_permute': 1, 'reshape_reshape': 1, 'expand_reshape': 1}
"""

from __future__ import annotations

import math

from ..ir import Graph, IRError, Node, Value, infer_spec
from ..ops import PRIMITIVES, ShapeError, broadcast_shapes
from . import PassResult, Rewriter

RULES = ("identity", "permute_permute", "reshape_reshape", "expand_expand", "expand_reshape",
         "expand_as_reshape", "expand_broadcast", "expand_sink")
MOVES = frozenset({"permute", "reshape", "expand"})
ELEMENTWISE = frozenset(name for name, prim in PRIMITIVES.items()
                        if prim.kind == "elementwise" and name != "copy")


def eliminate_movement(graph: Graph) -> PassResult:
    """`graph` with chains of moves composed (see the module docstring)."""
    rw = Rewriter(graph)
    stats = dict.fromkeys(RULES, 0)
    for node in graph.nodes:
        if node.op in MOVES:
            fired = _move(node, rw)
        elif node.op in ELEMENTWISE:
            fired = _broadcast(node, rw)
        else:
            fired = []
        if not fired:
            rw.keep(node)
        for rule in fired:
            stats[rule] += 1
    return PassResult(rw.finish(), stats)


def _move(node: Node, rw: Rewriter) -> list[str]:
    """Append what stands for the move `node` (if anything fires); the rules that fired."""
    op, x, attrs = node.op, rw.read(node.inputs[0]), node.attrs
    fired = []
    if op == "expand" and not _is_identity(op, x, attrs) and \
            math.prod(attrs["shape"]) == math.prod(x.shape):
        op, fired = "reshape", ["expand_as_reshape"]  # it only adds unit axes
    if not _is_identity(op, x, attrs):
        composed = _compose(op, attrs, rw.producer.get(x))
        if composed is not None:
            rule, x, attrs = composed
            fired.append(rule)
    if _is_identity(op, x, attrs):
        rw.replace(node.out, x)
        return [*fired, "identity"]
    if fired:
        rw.add(op, [x], attrs, node.loc, out=node.out)
    return fired


def _compose(op: str, attrs: dict, inner: Node | None) -> tuple[str, Value, dict] | None:
    """`op(inner.out, **attrs)` as (rule, source, attrs) of one move reading inner's input,
    or None when the two moves do not compose."""
    if inner is None or inner.op not in MOVES:
        return None
    source = inner.inputs[0]
    if op == "permute" and inner.op == "permute":
        p = inner.attrs["dims"]
        return "permute_permute", source, {"dims": tuple(p[i] for i in attrs["dims"])}
    if op == "reshape" and inner.op == "reshape":
        return "reshape_reshape", source, attrs
    if op == "expand" and inner.op == "expand":
        return "expand_expand", source, attrs
    if op == "expand" and inner.op == "reshape":
        shape = inner.attrs["shape"]
        lead = len(shape) - source.ndim
        if lead >= 0 and tuple(shape) == (1,) * lead + source.shape:
            return "expand_reshape", source, attrs
    return None


def _broadcast(node: Node, rw: Rewriter) -> list[str]:
    """An elementwise node reading `expand(x)` reads x instead wherever its own
    broadcasting still fits the output; if the result is then smaller, it is computed
    small and expanded once at the end."""
    inputs, out = [rw.read(x) for x in node.inputs], node.out
    spec, bypassed = None, 0
    for i, x in enumerate(inputs):
        inner = rw.producer.get(x) if isinstance(x, Value) else None
        if inner is None or inner.op != "expand":
            continue
        trial = [*inputs[:i], inner.inputs[0], *inputs[i + 1:]]
        try:
            trial_spec = infer_spec(node.op, trial, node.attrs)
        except IRError:
            continue
        if trial_spec.dtype == out.dtype and _broadcasts_to(trial_spec.shape, out.shape):
            inputs, spec, bypassed = trial, trial_spec, bypassed + 1
    if not bypassed:
        return []
    if spec.shape == out.shape:
        rw.add(node.op, inputs, node.attrs, node.loc, out=out)
        return ["expand_broadcast"] * bypassed
    small = rw.add(node.op, inputs, node.attrs, node.loc)
    rw.add("expand", [small], {"shape": out.shape}, node.loc, out=out)
    return ["expand_sink"] * bypassed


def _broadcasts_to(shape: tuple, target: tuple) -> bool:
    try:
        return broadcast_shapes(shape, target) == tuple(target)
    except ShapeError:
        return False


def _is_identity(op: str, x: Value, attrs: dict) -> bool:
    if op == "permute":
        return tuple(attrs["dims"]) == tuple(range(x.ndim))
    return tuple(attrs["shape"]) == x.shape
