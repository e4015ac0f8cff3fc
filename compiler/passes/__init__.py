"""The passes of the `optimized` stage (SPEC §4.3): small pure functions `Graph -> PassResult`.

One module each, named for what it does: `eliminate_dead_code`,
`eliminate_common_subexpressions`, `fold_constants`, `simplify_algebra`,
`eliminate_movement`; `compiler/pipeline.py` runs them in a visible list to a fixed point.

Every pass keeps three promises, which the tests check on random programs:
* it never changes the graph it is given: it builds a new `Graph`, sharing the `Value`s and
  `Node`s it keeps (a node whose inputs changed is a new `Node` defining the same `Value`);
* its result passes `verify` and computes the same outputs (`run_graph`);
* if it changes nothing it returns the very graph it was given, with zero counts in
  `stats` — which is how the pipeline knows it has reached a fixed point.

`Rewriter` is the one piece the passes share: it rebuilds a graph front to back while
values are replaced.

>>> from tracegrad.compiler.ir_text import parse_graph
>>> g = parse_graph("def f(x0: f32[3]):\\n    v0 = neg(x0)\\n    return (v0,)")
>>> rw = Rewriter(g)
>>> rw.replace(g.nodes[0].out, rw.add("mul", [g.inputs[0], -1.0], {}, None))
>>> print(rw.finish(), end="")
def f(x0: f32[3]):
    v1 = mul(x0, -1.0)                            # f32[3]
    return (v1,)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import Graph, Input, IRError, Node, Value, format_type, infer_spec


@dataclass
class PassResult:
    """What a pass made: the new graph and counts of what it changed."""

    graph: Graph
    stats: dict[str, int] = field(default_factory=dict)


class Rewriter:
    """Builds the graph a pass makes from `graph`, node by node in the same order.

    `keep(node)` appends a node of the old graph (reading replaced values in its inputs),
    `add(...)` appends a new node, and `replace(old, new)` makes every later reader, and
    the outputs, read `new` where they read `old` (whose node the pass then leaves out).
    `producer` maps each value of the new graph to the node that defines it.
    """

    def __init__(self, graph: Graph):
        self.graph = graph
        self.nodes: list[Node] = []
        self.producer: dict[Value, Node] = {}
        self._replaced: dict[Value, Value] = {}
        self._names = {v.name for v in graph.values()}
        self._counter = 0
        self._changed = False

    def read(self, x: Input) -> Input:
        """What stands for `x` in the new graph (scalars stand for themselves)."""
        return self._replaced.get(x, x) if isinstance(x, Value) else x

    def keep(self, node: Node) -> Value:
        """Append `node`, itself if none of its inputs was replaced, else a copy."""
        inputs = [self.read(x) for x in node.inputs]
        if any(new is not old for new, old in zip(inputs, node.inputs)):
            node = Node(node.op, inputs, node.attrs, node.out, node.loc)
        self._append(node)
        return node.out

    def add(self, op: str, inputs: list, attrs: dict, loc: str | None,
            out: Value | None = None) -> Value:
        """Append `op(*inputs, **attrs)`, defining `out` (a value of the type the op gives,
        typically the output of the node this one stands in for) or a freshly named value."""
        inputs = [self.read(x) for x in inputs]
        spec = infer_spec(op, inputs, attrs)
        if out is None:
            out = Value(self._fresh_name(), spec.shape, spec.dtype)
        elif (out.shape, out.dtype) != (spec.shape, spec.dtype):
            raise IRError(f"{op} gives {format_type(*spec)}, not {out!r}")
        self._append(Node(op, inputs, attrs, out, loc))
        self._changed = True
        return out

    def replace(self, old: Value, new: Value) -> None:
        """Later readers and the outputs read `new` for `old`: only of the very same type,
        so a rewrite can never change a value's shape or dtype."""
        if (old.shape, old.dtype) != (new.shape, new.dtype):
            raise IRError(f"can't replace {old!r} by {new!r}: the types differ")
        self._replaced[old] = self.read(new)
        self._changed = True

    def finish(self) -> Graph:
        """The new graph, or the old one itself if nothing changed."""
        if not self._changed and len(self.nodes) == len(self.graph.nodes):
            return self.graph
        outputs = [self.read(v) for v in self.graph.outputs]
        return Graph(self.graph.name, list(self.graph.inputs), self.nodes, outputs)

    def _append(self, node: Node) -> None:
        self.nodes.append(node)
        self.producer[node.out] = node

    def _fresh_name(self) -> str:
        while f"v{self._counter}" in self._names:
            self._counter += 1
        name = f"v{self._counter}"
        self._names.add(name)
        return name
