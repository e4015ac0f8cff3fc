"""The scheduled stage: a graph's nodes grouped into fused kernels, in execution order.

`schedule(graph)` merges nodes greedily along the graph's edges, in graph order, as long
as the merged group is one loop nest (`fuse.layout`) and merging creates no cycle between
kernels: no path may lead from one group to the other through a third (checked on the
graph with each group contracted to one node, `dag.Dag`). A view waits for its reader's
kernel (it becomes that kernel's index map) and scalars join whichever kernel takes them.
Constants are data of the program, not kernels; nodes no output needs are not scheduled.

>>> from tracegrad.compiler.ir_text import parse_graph
>>> g = parse_graph('''def f(x0: f32[8,4], x1: f32[4,16], x2: f32[16]):
...     v0 = matmul(x0, x1)
...     v1 = add(v0, x2)
...     v2 = relu(v1)
...     v3 = exp(x2)
...     return (v2, v3)''')
>>> [(k.name, k.kind) for k in schedule(g).kernels]
[('k0_matmul_add_relu', 'matmul'), ('k1_exp', 'elementwise')]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .dag import Dag
from .fuse import VIEWS, Layout, Unfusable, layout, role
from .ir import Graph, Node, Value, format_type
from .ir_dot import graph_to_dot
from .ir_text import print_graph
from .ops import PRIMITIVES

NAME_OPS = 4  # a kernel's name lists at most this many of its ops


@dataclass(eq=False)
class Kernel:
    """One fused loop nest: its nodes in graph order, what it reads and what it writes
    (values that a later kernel reads or that the graph returns)."""

    name: str
    kind: str  # elementwise | reduce | matmul | index | movement | view
    nodes: list[Node]
    inputs: list[Value]
    outputs: list[Value]
    layout: Layout


@dataclass(eq=False)
class Schedule:
    graph: Graph
    kernels: list[Kernel]
    constants: list[Node]  # data of the program, read by kernels
    dead: list[Node]  # nodes no output needs: not scheduled

    @property
    def inputs(self) -> list[Value]:
        return self.graph.inputs

    @property
    def outputs(self) -> list[Value]:
        return self.graph.outputs


def schedule(graph: Graph) -> Schedule:
    """Fuse `graph`'s nodes into kernels and order them (see the module docstring)."""
    live = live_nodes(graph)
    constants = [n for n in graph.nodes if n in live and n.op == "constant"]
    nodes = [n for n in graph.nodes if n in live and n.op != "constant"]
    groups = _Grouping(graph, nodes).run()
    group_of = {n: g for g in groups for n in g}
    readers: dict[Value, set] = {}  # value -> the groups that read it
    for n in nodes:
        for x in n.inputs:
            if isinstance(x, Value):
                readers.setdefault(x, set()).add(group_of[n])
    kernels = [_kernel(i, group, graph, readers) for i, group in enumerate(groups)]
    return Schedule(graph, kernels, constants, [n for n in graph.nodes if n not in live])


def live_nodes(graph: Graph) -> set[Node]:
    """The nodes some output depends on."""
    producers = graph.producers()
    live, todo = set(), [producers[v] for v in graph.outputs if v in producers]
    while todo:
        node = todo.pop()
        if node not in live:
            live.add(node)
            todo += [producers[x] for x in node.inputs if isinstance(x, Value) and x in producers]
    return live


class _Grouping:
    """Greedy merging of node groups (tuples of nodes in graph order). `quotient` is the
    graph with each group contracted to one node: merging two groups is legal when no
    path leads from one to the other through a third (the merged kernel would have to
    run both before and after it)."""

    def __init__(self, graph: Graph, nodes: list[Node]):
        self.index = {n: i for i, n in enumerate(graph.nodes)}
        producers, chosen = graph.producers(), set(nodes)
        edges = {(producers[x], n) for n in nodes for x in n.inputs
                 if isinstance(x, Value) and producers.get(x) in chosen}
        self.dag = Dag(nodes, edges)  # between nodes: never changes
        self.quotient = Dag([(n,) for n in nodes], [((a,), (b,)) for a, b in edges])
        self.group = {n: (n,) for n in nodes}
        self.failed: set = set()
        # each node's producers, latest first: the closest producer is the best partner
        self.edges = [(p, n) for n in nodes for p in sorted(self.dag.predecessors[n],
                                                            key=self.index.get, reverse=True)]

    def run(self) -> list[tuple]:
        while self._merge_edges() or self._place_views() or self._place_scalars():
            pass
        return self.quotient.topological_order(key=lambda g: self.index[g[0]])

    def _merge(self, a: tuple, b: tuple) -> bool:
        if a == b or (a, b) in self.failed:
            return False
        nodes = tuple(sorted({*a, *b}, key=self.index.get))
        try:
            if self._detour(a, b) or self._detour(b, a):
                raise Unfusable("another kernel would have to run between the two")
            layout(list(nodes))
        except Unfusable:
            self.failed.add((a, b))
            return False
        self.quotient.contract(a, b, nodes)
        for n in nodes:
            self.group[n] = nodes
        return True

    def _detour(self, a: tuple, b: tuple) -> bool:
        """Whether a path from group `a` to group `b` passes through another group."""
        q = self.quotient
        return any(s == b or q.reaches(s, b) for s in q.successors[a] if s != b)

    def _merge_edges(self) -> bool:
        changed = False
        for p, c in self.edges:
            a, b = self.group[p], self.group[c]
            if a != b and not self._waits(p, c):
                changed |= self._merge(a, b)
        return changed

    def _waits(self, p: Node, c: Node) -> bool:
        """A view waits for its reader's kernel. A scalar read by several kernels waits
        too: in the first reader's kernel it would hold back the others (an optimizer's
        `-lr` read by every parameter's update)."""
        if c.op in VIEWS and self.group[c] == (c,):
            return True
        return _scalar(p) and self.group[p] == (p,) and len(self.dag.successors[p]) > 1

    def _place_views(self) -> bool:
        """A view left alone joins a reader's kernel, else its producer's."""
        changed = False
        for n in [n for n, g in self.group.items() if g == (n,) and n.op in VIEWS]:
            partners = [self.group[c] for c in self._sorted(self.dag.successors[n])]
            partners += [self.group[p] for p in self._sorted(self.dag.predecessors[n])]
            changed |= any(self._merge(self.group[n], g) for g in partners)
        return changed

    def _place_scalars(self) -> bool:
        """A group of scalars joins its producers' kernel (its inputs are ready there),
        else a kernel that depends on nothing, else a reader's, else any kernel."""
        changed = False
        for g in self._groups():
            if self.group[g[0]] != g or not all(_scalar(n) for n in g):
                continue
            producers = [self.group[p] for n in g for p in self._sorted(self.dag.predecessors[n])]
            sources = [h for h in self._groups() if not self.quotient.predecessors[h]]
            readers = [self.group[c] for n in g for c in self._sorted(self.dag.successors[n])]
            candidates = [h for h in [*producers, *sources, *readers, *self._groups()] if h != g]
            changed |= any(self._merge(g, h) for h in candidates)
        return changed

    def _sorted(self, nodes) -> list[Node]:
        return sorted(nodes, key=self.index.get)

    def _groups(self) -> list[tuple]:
        return sorted(self.quotient.predecessors, key=lambda g: self.index[g[0]])


def _scalar(node: Node) -> bool:
    return role(node) in ("elementwise", "view") and math.prod(node.out.shape) == 1


def _kernel(i: int, group: tuple, graph: Graph, readers: dict) -> Kernel:
    nodes = list(group)
    defined = {n.out for n in nodes}
    inputs = list(dict.fromkeys(x for n in nodes for x in n.inputs
                                if isinstance(x, Value) and x not in defined))
    outputs = [n.out for n in nodes
               if readers.get(n.out, set()) - {group} or n.out in graph.outputs]
    ops = [n.op for n in nodes if n.op not in VIEWS] or [n.op for n in nodes]
    name = "_".join([f"k{i}", *list(dict.fromkeys(ops))[:NAME_OPS]])
    return Kernel(name, _kind(nodes), nodes, inputs, outputs, _layout(nodes))


def _layout(nodes: list[Node]) -> Layout:
    """The group's layout; a node alone always makes a kernel, even one whose values
    give no single domain (an empty axis reduced away)."""
    try:
        return layout(nodes)
    except Unfusable:
        if len(nodes) > 1:
            raise
        return Layout(max((nodes[0].out, *nodes[0].inputs[:1]), key=_size).shape)


def _size(value) -> int:
    return math.prod(value.shape) if isinstance(value, Value) else 0


def _kind(nodes: list[Node]) -> str:
    roles = {role(n) for n in nodes}
    for r in ("matmul", "opaque", "reduce", "row", "elementwise"):
        if r in roles:
            if r == "opaque":
                return next(PRIMITIVES[n.op].kind for n in nodes if role(n) == "opaque")
            return "reduce" if r == "row" else r
    return "view"


# --- reading a schedule ------------------------------------------------------------

def describe_kernel(kernel: Kernel) -> str:
    """One comment line: kind, domain, row axes, axes summed across the loop.

    >>> print(describe_kernel(Kernel("k0_exp", "elementwise", [], [], [], Layout((4, 8)))))
    # k0_exp: elementwise over [4,8]
    """
    lay = kernel.layout
    text = f"# {kernel.name}: {kernel.kind} over [{','.join(map(str, lay.domain))}]"
    if lay.inner:
        text += f"; rows along axes {sorted(lay.inner)}"
    if lay.outer:
        after = ", ".join(n.out.name for n in kernel.nodes if n.out in lay.final)
        text += f"; sums across axes {sorted(lay.outer)}, then {after}"
    return text


def print_schedule(sched: Schedule) -> str:
    """Stable text: a header, then each kernel as an IR function of what it reads,
    returning what it writes (each block parses with `parse_graph`)."""
    g = sched.graph
    count = sum(len(k.nodes) for k in sched.kernels)
    lines = [f"# schedule of {g.name}: {len(sched.kernels)} kernels, {count} nodes",
             "# inputs: " + ", ".join(f"{v.name}: {format_type(v.shape, v.dtype)}"
                                      for v in g.inputs),
             "# outputs: " + ", ".join(v.name for v in g.outputs)]
    if sched.constants:
        lines.append("# constants: " + ", ".join(n.out.name for n in sched.constants))
    if sched.dead:
        lines.append("# not scheduled (no output needs them): "
                     + ", ".join(n.out.name for n in sched.dead))
    text = "\n".join(lines) + "\n"
    for k in sched.kernels:
        text += "\n" + describe_kernel(k) + "\n"
        text += print_graph(Graph(k.name, k.inputs, k.nodes, k.outputs))
    return text


def schedule_to_dot(sched: Schedule) -> str:
    """Graphviz DOT of the graph with each kernel drawn as a labelled cluster."""
    return graph_to_dot(sched.graph, {k.name: k.nodes for k in sched.kernels})


def nbytes(value: Value) -> int:
    return math.prod(value.shape) * value.dtype.numpy.itemsize


def storage_root(value: Value, producers: dict) -> Value:
    """The value whose memory `value` views: itself unless a view node made it.

    >>> from tracegrad.compiler.ir_text import parse_graph
    >>> g = parse_graph('''def f(x0: f32[2,3]):
    ...     v0 = permute(x0, dims=(1, 0))
    ...     v1 = reshape(v0, shape=(6,))
    ...     return (v1,)''')
    >>> storage_root(g.outputs[0], g.producers())
    Value(x0: f32[2,3])
    """
    while value in producers and producers[value].op in VIEWS:
        value = producers[value].inputs[0]
    return value


def bytes_moved(sched: Schedule) -> tuple[int, int]:
    """(what the kernels read and write, the least a step can move: each graph input read
    once, each output written once). A view is read as the memory it views; constants
    are part of the program, not counted.

    >>> from tracegrad.compiler.ir_text import parse_graph
    >>> bytes_moved(schedule(parse_graph('''def f(x0: f32[4]):
    ...     v0 = exp(x0)
    ...     v1 = sin(v0)
    ...     return (v1,)''')))
    (32, 32)
    """
    producers = sched.graph.producers()
    constants = {n.out for n in sched.constants}
    moved = 0
    for k in sched.kernels:
        reads = {storage_root(v, producers) for v in k.inputs} - constants
        made = {n.out for n in k.nodes if n.op not in VIEWS}
        writes = {storage_root(v, producers) for v in k.outputs} & made
        writes |= {n.out for n in k.nodes if n.op == "matmul"}
        moved += sum(map(nbytes, reads | writes))
    least = sum(map(nbytes, sched.graph.inputs)) + sum(map(nbytes, set(sched.graph.outputs)))
    return moved, least
