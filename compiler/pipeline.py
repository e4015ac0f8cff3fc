"""The `optimized` stage: the passes of `compiler/passes/`, run as one visible list.

`optimize` runs `PASSES` in order, again and again until a whole round changes nothing
(at most `MAX_ROUNDS` rounds), and reports every pass it ran. One pass often feeds
another: folding turns `expand(reshape(1.0))` into a constant that makes a `mul` an
identity, simplifying leaves a move that composes with the next one, and whatever they
bypass dies at the end of the round.

>>> from tracegrad.compiler.ir_text import parse_graph
>>> g = parse_graph('''
... def f(x0: f32[3], x1: f32[]):
...     v0 = constant(array(1.0, dtype=f32))
...     v1 = reshape(v0, shape=(1,))
...     v2 = expand(v1, shape=(3,))
...     v3 = mul(v2, x0)
...     v4 = ne(x1, 0)
...     v5 = ne(x1, 0)
...     return (v3, v4, v5)''')
>>> optimized, reports = optimize(g, verify_each=True)
>>> print(optimized, end="")
def f(x0: f32[3], x1: f32[]):
    v4 = ne(x1, 0)                                # bool[]
    return (x0, v4, v4)
>>> for r in reports:
...     if r.nodes_before != r.nodes_after:
...         counts = {key: n for key, n in r.stats.items() if n}
...         print(f"{r.name}: {r.nodes_before} -> {r.nodes_after} nodes, {counts}")
simplify_algebra: 6 -> 5 nodes, {'mul_one': 1}
eliminate_common_subexpressions: 5 -> 4 nodes, {'nodes_removed': 1}
eliminate_dead_code: 4 -> 1 nodes, {'nodes_removed': 3}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .ir import Graph, IRError, verify
from .passes import PassResult
from .passes.eliminate_common_subexpressions import eliminate_common_subexpressions
from .passes.eliminate_dead_code import eliminate_dead_code
from .passes.eliminate_movement import eliminate_movement
from .passes.fold_constants import fold_constants
from .passes.simplify_algebra import simplify_algebra

Pass = Callable[[Graph], PassResult]

PASSES: list[tuple[str, Pass]] = [
    ("fold_constants", fold_constants),
    ("simplify_algebra", simplify_algebra),
    ("eliminate_movement", eliminate_movement),
    ("eliminate_common_subexpressions", eliminate_common_subexpressions),
    ("eliminate_dead_code", eliminate_dead_code),  # last: sweeps what the others bypassed
]
MAX_ROUNDS = 8  # each round only shrinks or straightens the graph; real graphs need 2 or 3


@dataclass
class PassReport:
    """One run of one pass: its counts and the node counts around it."""

    name: str
    stats: dict
    nodes_before: int
    nodes_after: int


def optimize(graph: Graph, verify_each: bool = False, passes: list[tuple[str, Pass]] = PASSES,
             max_rounds: int = MAX_ROUNDS) -> tuple[Graph, list[PassReport]]:
    """`graph` after `passes` reach a fixed point, and a report per pass run.

    With `verify_each` (the tests set it) every pass's result is verified, and a broken
    one raises `IRError` naming the pass.
    """
    reports: list[PassReport] = []
    for _ in range(max_rounds):
        changed = False
        for name, run in passes:
            result = run(graph)
            if verify_each:
                try:
                    verify(result.graph)
                except IRError as exc:
                    raise IRError(f"after pass {name}: {exc}", exc.node) from exc
            reports.append(PassReport(name, result.stats, len(graph.nodes),
                                      len(result.graph.nodes)))
            changed = changed or result.graph is not graph
            graph = result.graph
        if not changed:
            break
    return graph, reports
