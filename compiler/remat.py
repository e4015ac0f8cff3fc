"""Rematerialisation: save fewer bytes between forward and backward by recomputing.

`partition.partition_joint` saves every forward value the backward reads. Many of them
are cheap elementwise functions of values the backward has anyway: `gelu(x * w + b)`'s
backward reads `x * w + b`, which the backward can remake from `x`, `w` and `b` (inputs,
kept alive by the caller) instead of the forward keeping 4 bytes per element of it.

Which values to save is a minimum cut, as in functorch's min-cut partitioner: in a flow
network with one edge per forward value of capacity its size in bytes (inputs free),
edges along the data, the source feeding the inputs and every node that may not be
recomputed (reductions, matmuls, index ops), and each value the backward reads feeding
the sink, the cheapest set of edges separating source from sink is the cheapest set of
values to save; everything between them and the backward is recomputed there.

    joint:    v0 = mul(x, w); v1 = add(v0, b); v2 = gelu(v1); ...; v9 = gelu_slope(v1)
    saved:    partition_joint: v1             with remat: x, w, b (inputs: 0 bytes)
    backward: recomputes v0 = mul(x, w); v1 = add(v0, b) before gelu_slope(v1)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .fuse import role
from .ir import Graph, Value, verify
from .partition import Partition, partition_joint
from .schedule import nbytes

RECOMPUTABLE = ("elementwise", "view", "constant")  # cheap enough to do twice


@dataclass
class RematPartition(Partition):
    recomputed: list = field(default_factory=list)  # forward values the backward remakes
    without_remat: list = field(default_factory=list)  # what partition_joint would save

    def saved_bytes(self, values: list | None = None) -> int:
        """Bytes kept from forward to backward (inputs count nothing: the caller has them)."""
        inputs = set(self.forward.inputs)
        return sum(nbytes(v) for v in (self.saved if values is None else values)
                   if v not in inputs)

    def report(self) -> str:
        """Which values are saved and which recomputed, and the bytes saved both ways."""
        def names(values):
            return ", ".join(v.name for v in values) or "none"
        return (f"# saved for backward: {names(self.saved)} "
                f"({self.saved_bytes()} bytes; {self.saved_bytes(self.without_remat)} "
                f"without recomputation)\n# recomputed in backward: {names(self.recomputed)}\n")


def partition_with_remat(joint: Graph, cotangents: list, forward_count: int) -> RematPartition:
    """`partition_joint`'s split, saving the cheapest set of values (see module docstring).

    >>> from tracegrad.compiler.ir_text import parse_graph
    >>> g = parse_graph('''def f(x0: f32[8], x1: f32[8], g: f32[8]):
    ...     v0 = mul(x0, x1)
    ...     v1 = sin(v0)
    ...     v2 = cos(v0)
    ...     v3 = mul(g, v2)
    ...     return (v1, v3)''')
    >>> p = partition_with_remat(g, [g.inputs[2]], 1)
    >>> [v.name for v in p.without_remat], [v.name for v in p.saved], p.recomputed
    (['v2'], ['x0', 'x1'], [Value(v0: f32[8]), Value(v2: f32[8])])
    """
    base = partition_joint(joint, cotangents, forward_count)
    needed = list(dict.fromkeys(base.saved))
    saved, recompute = _walk_back(base.forward, needed, _min_cut(base.forward, needed))
    order = {n: i for i, n in enumerate(joint.nodes)}
    forward = Graph(joint.name, base.forward.inputs, base.forward.nodes,
                    list(joint.outputs[:forward_count]) + saved)
    backward = Graph(f"{joint.name}_backward", list(cotangents) + saved,
                     sorted(recompute + base.backward.nodes, key=order.get),
                     list(joint.outputs[forward_count:]))
    verify(forward)
    verify(backward)
    return RematPartition(forward, backward, saved, [n.out for n in recompute], base.saved)


def _min_cut(forward: Graph, needed: list) -> set[Value]:
    """The values whose edges a minimum cut between the forward's sources and `needed`
    crosses."""
    import networkx as nx  # here: `import tracegrad` must not load networkx

    if not needed:
        return set()
    flow = nx.DiGraph()
    for v in forward.inputs:
        flow.add_edge("source", (v, "in"))  # no capacity attribute: unbounded
        flow.add_edge((v, "in"), (v, "out"), capacity=0)
    for node in forward.nodes:
        v = node.out
        flow.add_edge((v, "in"), (v, "out"), capacity=nbytes(v))
        for x in node.inputs:
            if isinstance(x, Value):
                flow.add_edge((x, "out"), (v, "in"))
        if role(node) not in RECOMPUTABLE:
            flow.add_edge("source", (v, "in"))
    for v in needed:
        flow.add_edge((v, "out"), "sink")
    _, (reachable, _) = nx.minimum_cut(flow, "source", "sink")
    values = [*forward.inputs, *(n.out for n in forward.nodes)]
    return {v for v in values if (v, "in") in reachable and (v, "out") not in reachable}


def _walk_back(forward: Graph, needed: list, cut: set) -> tuple[list, list]:
    """(values to save, nodes the backward reruns): from each needed value back to the
    cut, whose values it reaches are saved (the cut also holds unused inputs)."""
    producers = forward.producers()
    keep, rerun, todo = set(), set(), list(needed)
    while todo:
        v = todo.pop()
        if v in cut:
            keep.add(v)
        elif v not in rerun:
            node = producers[v]
            assert role(node) in RECOMPUTABLE, f"{node!r}: neither saved nor recomputable"
            rerun.add(v)
            todo += [x for x in node.inputs if isinstance(x, Value)]
    values = [*forward.inputs, *(n.out for n in forward.nodes)]
    return [v for v in values if v in keep], [n for n in forward.nodes if n.out in rerun]
