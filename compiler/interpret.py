"""The reference interpreter: run a graph node by node with the op set's NumPy kernels.

Every compiled result is checked against it. Like torch.fx's `Interpreter`, it drops each
value after its last use, so a graph runs in the memory a planned program would need
(`values_dead_after` is that liveness, the seed of memory planning). It also checks what
each kernel returns against the node's declared type: a disagreement between a kernel
and its shape rule surfaces here, at the node that made it, not in a later stage.
"""

from __future__ import annotations

import numpy as np

from .ir import Graph, IRError, Node, Value, format_type
from .ops import PRIMITIVES
from .ops.dtypes import from_numpy


def run_graph(graph: Graph, *arrays: np.ndarray) -> list[np.ndarray]:
    """The graph's outputs for the given input arrays (exact shapes and dtypes required).

    >>> import numpy as np
    >>> from tracegrad.compiler.ir_text import parse_graph
    >>> g = parse_graph("def f(x0: f64[2]):\\n    v0 = mul(x0, 3.0)\\n    return (v0,)")
    >>> run_graph(g, np.array([1.0, 2.0]))
    [array([3., 6.])]
    """
    if len(arrays) != len(graph.inputs):
        raise IRError(f"{graph.name} takes {len(graph.inputs)} inputs, got {len(arrays)}")
    env: dict[Value, np.ndarray] = {}
    for value, array in zip(graph.inputs, arrays):
        env[value] = _checked_input(value, array)
    for node, dead in zip(graph.nodes, values_dead_after(graph)):
        env[node.out] = _evaluate(node, env)
        for value in dead:
            del env[value]
    return [env[v] for v in graph.outputs]


def values_dead_after(graph: Graph) -> list[list[Value]]:
    """For each node, the values no later node reads and that are not outputs.

    A value nobody reads is dead right after the node that defines it.

    >>> from tracegrad.compiler.ir_text import parse_graph
    >>> g = parse_graph('''def f(x0: f32[2]):
    ...     v0 = exp(x0)
    ...     v1 = neg(v0)
    ...     v2 = sin(x0)
    ...     return (v1,)''')
    >>> [[v.name for v in dead] for dead in values_dead_after(g)]
    [[], ['v0'], ['x0', 'v2']]
    """
    last: dict[Value, int] = {}
    for i, node in enumerate(graph.nodes):
        last[node.out] = i
        for x in node.inputs:
            if isinstance(x, Value):
                last[x] = i
    dead: list[list[Value]] = [[] for _ in graph.nodes]
    keep = set(graph.outputs)
    for value, i in last.items():
        if value not in keep:
            dead[i].append(value)
    return dead


def _checked_input(value: Value, array) -> np.ndarray:
    array = np.asarray(array)
    if array.shape != value.shape or array.dtype != value.dtype.numpy:
        got = f"{array.dtype}{list(array.shape)}"
        if array.dtype.kind in "biuf" and from_numpy(array.dtype).numpy == array.dtype:
            got = format_type(array.shape, from_numpy(array.dtype))
        raise IRError(f"input {value.name} expects {format_type(value.shape, value.dtype)}, "
                      f"got {got}")
    return array


def _evaluate(node: Node, env: dict[Value, np.ndarray]) -> np.ndarray:
    if node.op == "constant":
        return node.attrs["value"]  # frozen by the builder: no kernel can write into it
    prim = PRIMITIVES.get(node.op)
    if prim is None:
        raise IRError(f"node '{node!r}': unknown op '{node.op}'", node=node)
    args = [env[x] if isinstance(x, Value) else x for x in node.inputs]
    try:
        out = np.asarray(prim.kernel(*args, **node.attrs))
    except Exception as exc:
        raise IRError(f"node '{node!r}': the kernel failed: {type(exc).__name__}: {exc}",
                      node=node) from exc
    if out.shape != node.out.shape or out.dtype != node.out.dtype.numpy:
        raise IRError(f"node '{node!r}': the kernel returned {out.dtype}{list(out.shape)} but "
                      f"the node declares {format_type(node.out.shape, node.out.dtype)}",
                      node=node)
    return out
