"""Remove the nodes whose values reach no graph output.

Every op of the IR is pure (random draws are graph inputs, in-place writes are outputs),
so a node nobody needs can go. Graph inputs all stay, used or not: they are the signature
the caller binds. Like torch.fx's `Graph.eliminate_dead_code`, before and after:

>>> from tracegrad.compiler.ir_text import parse_graph
>>> g = parse_graph('''
... def f(x0: f32[3], x1: f32[3]):
...     v0 = exp(x0)
...     v1 = mul(v0, x1)
...     v2 = sin(x0)
...     return (v2,)''')
>>> result = eliminate_dead_code(g)
>>> print(result.graph, end="")
def f(x0: f32[3], x1: f32[3]):
    v2 = sin(x0)                                  # f32[3]
    return (v2,)
>>> result.stats
{'nodes_removed': 2}
"""

from __future__ import annotations

from ..ir import Graph, Value
from . import PassResult


def eliminate_dead_code(graph: Graph) -> PassResult:
    """`graph` without the nodes no output depends on (see the module docstring)."""
    live = set(graph.outputs)
    kept = []
    for node in reversed(graph.nodes):  # a reader comes after what it reads: one sweep
        if node.out in live:
            kept.append(node)
            live.update(x for x in node.inputs if isinstance(x, Value))
    removed = len(graph.nodes) - len(kept)
    if not removed:
        return PassResult(graph, {"nodes_removed": 0})
    new = Graph(graph.name, list(graph.inputs), kept[::-1], list(graph.outputs))
    return PassResult(new, {"nodes_removed": removed})
