"""Evaluate, at compile time, the nodes that read nothing but constants and scalars.

Such a node is run once with its op's NumPy kernel, the very code the reference
interpreter runs, and becomes a `constant` holding the result (same value, same type,
same location). Not folded:
* `expand`: a broadcast costs nothing as it is, and folded it would only grow the
  constant; `eliminate_movement` lets readers broadcast the small constant themselves;
* results above `MAX_FOLDED_BYTES` (64 KiB), which would bloat the graph, its text form
  and the cache;
* nodes whose kernel raises or disagrees with the node's type: the error is the
  program's, and belongs to run time, where it names the node.
The constants a folded node read may become dead; `eliminate_dead_code` removes them.
Before and after:

>>> from tracegrad.compiler.ir_text import parse_graph
>>> g = parse_graph('''
... def f(x0: f32[2]):
...     v0 = constant(array([1.0, 4.0], dtype=f32))
...     v1 = sqrt(v0)
...     v2 = mul(v1, 2)
...     v3 = expand(v2, shape=(3, 2))
...     v4 = mul(v3, x0)
...     return (v4,)''')
>>> result = fold_constants(g)
>>> print(result.graph, end="")
def f(x0: f32[2]):
    v0 = constant(array([1.0, 4.0], dtype=f32))   # f32[2]
    v1 = constant(array([1.0, 2.0], dtype=f32))   # f32[2]
    v2 = constant(array([2.0, 4.0], dtype=f32))   # f32[2]
    v3 = expand(v2, shape=(3, 2))                 # f32[3,2]
    v4 = mul(v3, x0)                              # f32[3,2]
    return (v4,)
>>> result.stats
{'nodes_folded': 2}
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import Graph, Node, Value, normalize_attr
from ..ops import PRIMITIVES
from . import PassResult, Rewriter

MAX_FOLDED_BYTES = 64 * 1024


def fold_constants(graph: Graph) -> PassResult:
    """`graph` with every foldable node replaced by a `constant` (see above)."""
    rw = Rewriter(graph)
    known: dict[Value, np.ndarray] = {}  # the value of each constant in the new graph
    folded = 0
    for node in graph.nodes:
        inputs = [rw.read(x) for x in node.inputs]
        array = None if node.op in ("constant", "expand") else _evaluate(node, inputs, known)
        if array is None:
            out = rw.keep(node)
            if node.op == "constant":
                known[out] = node.attrs["value"]
        else:
            known[rw.add("constant", [], {"value": array}, node.loc, out=node.out)] = array
            folded += 1
    return PassResult(rw.finish(), {"nodes_folded": folded})


def _evaluate(node: Node, inputs: list, known: dict) -> np.ndarray | None:
    """The node's result if every input is a constant or a scalar and it may be folded."""
    if not all(x in known for x in inputs if isinstance(x, Value)):
        return None
    out = node.out
    if math.prod(out.shape) * out.dtype.itemsize > MAX_FOLDED_BYTES:
        return None
    args = [known[x] if isinstance(x, Value) else x for x in inputs]
    try:
        with np.errstate(all="ignore"):  # inf and nan fold like any other value
            array = np.asarray(PRIMITIVES[node.op].kernel(*args, **node.attrs))
    except Exception:  # noqa: BLE001 - the program's error: left for run time to report
        return None
    if array.shape != out.shape or array.dtype != out.dtype.numpy:
        return None
    return normalize_attr(array)  # a frozen, contiguous copy: never a view of a constant
