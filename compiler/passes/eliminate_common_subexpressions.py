"""Compute each expression once: a node that repeats an earlier one is dropped.

Two nodes repeat each other when they apply the same op to the same inputs with equal
attributes (`attr_equal`'s meaning: exact types and bits, so `1 != 1.0` and
`0.0 != -0.0`); two `constant`s holding equal arrays repeat each other too. For `add`,
`mul` and the symmetric comparisons the order of the two inputs does not matter: IEEE
addition and multiplication commute exactly, broadcasting included. Readers of a dropped
node, and the outputs, read the first one; the graph's outputs may then name one value
twice. Every op is pure, so merging never loses an effect. Before and after:

>>> from tracegrad.compiler.ir_text import parse_graph
>>> g = parse_graph('''
... def f(x0: f32[3], x1: f32[3]):
...     v0 = mul(x0, x1)
...     v1 = mul(x1, x0)
...     v2 = constant(array([1.0, 2.0, 3.0], dtype=f32))
...     v3 = constant(array([1.0, 2.0, 3.0], dtype=f32))
...     v4 = add(v0, v2)
...     v5 = add(v1, v3)
...     return (v4, v5)''')
>>> result = eliminate_common_subexpressions(g)
>>> print(result.graph, end="")
def f(x0: f32[3], x1: f32[3]):
    v0 = mul(x0, x1)                              # f32[3]
    v2 = constant(array([1.0, 2.0, 3.0], dtype=f32)) # f32[3]
    v4 = add(v0, v2)                              # f32[3]
    return (v4, v4)
>>> result.stats
{'nodes_removed': 3}
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ir import Graph, Value
from . import PassResult, Rewriter

# Ops whose two inputs may swap. Not maximum/minimum: which of 0.0 and -0.0 they return
# depends on the order.
COMMUTATIVE = frozenset({"add", "mul", "eq", "ne", "logical_and", "logical_or"})


def eliminate_common_subexpressions(graph: Graph) -> PassResult:
    """`graph` with repeated nodes merged into their first occurrence."""
    rw = Rewriter(graph)
    first: dict[tuple, Value] = {}
    removed = 0
    for node in graph.nodes:
        key = expression_key(node.op, [rw.read(x) for x in node.inputs], node.attrs)
        earlier = first.get(key)
        if earlier is not None and (earlier.shape, earlier.dtype) == (node.out.shape,
                                                                      node.out.dtype):
            rw.replace(node.out, earlier)
            removed += 1
        else:
            first[key] = rw.keep(node)
    return PassResult(rw.finish(), {"nodes_removed": removed})


def expression_key(op: str, inputs: list, attrs: dict) -> tuple:
    """What two nodes share when they compute the same value: the op, the inputs (in
    either order for a commutative op) and attributes equal as `attr_equal` has them."""
    keys = tuple(_key(x) for x in inputs)
    if op in COMMUTATIVE and len(keys) == 2:
        keys = frozenset(keys)  # {a, b} == {b, a}; add(a, a) gives {a}: still exact
    return (op, keys, tuple(sorted((k, _key(v)) for k, v in attrs.items())))


def _key(x: Any) -> Any:
    """A hashable stand-in for an input or attribute: equal keys mean `attr_equal` values
    (values by identity). Floats go by `repr`, which tells -0.0 from 0.0; arrays by dtype,
    shape and bytes (nans with different payloads are then not merged: a missed merge,
    never a wrong one)."""
    if isinstance(x, Value):
        return x
    if isinstance(x, np.ndarray):
        return ("array", x.dtype.str, x.shape, np.ascontiguousarray(x).tobytes())
    if isinstance(x, (tuple, list)):
        return (type(x).__name__, *map(_key, x))
    if isinstance(x, slice):
        return ("slice", _key(x.start), _key(x.stop), _key(x.step))
    return (type(x).__name__, repr(x))
