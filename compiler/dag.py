"""A small directed acyclic graph: just what the scheduler's greedy fusion asks of one.

The scheduler contracts groups of IR nodes into kernels one merge at a time and asks, for
each candidate merge, whether a path leads from one group to the other through a third.
That is a few dictionary operations per merge; networkx would do it as well but costs
0.15 s and 15 MB to import, which a compiled training step's first call (and every call
that only loads a cached program) would pay. (networkx stays for the min-cut of
`remat.py`, which only a differentiable function's forward/backward split needs.)

>>> d = Dag([1, 2, 3], [(1, 2), (2, 3)])
>>> d.reaches(1, 3), d.reaches(3, 1)
(True, False)
>>> d.contract(1, 2, (1, 2)); d.topological_order(key=lambda n: str(n))
[(1, 2), 3]
"""

from __future__ import annotations

import heapq


class Dag:
    def __init__(self, nodes, edges):
        self.successors: dict = {n: set() for n in nodes}
        self.predecessors: dict = {n: set() for n in nodes}
        for a, b in edges:
            self.successors[a].add(b)
            self.predecessors[b].add(a)

    def contract(self, a, b, merged) -> None:
        """Replace nodes `a` and `b` by one node `merged` with the edges of both."""
        preds = (self.predecessors.pop(a) | self.predecessors.pop(b)) - {a, b}
        succs = (self.successors.pop(a) | self.successors.pop(b)) - {a, b}
        for p in preds:
            self.successors[p] -= {a, b}
            self.successors[p].add(merged)
        for s in succs:
            self.predecessors[s] -= {a, b}
            self.predecessors[s].add(merged)
        self.predecessors[merged], self.successors[merged] = preds, succs

    def reaches(self, source, target) -> bool:
        """Whether a path of one or more edges leads from `source` to `target`."""
        stack, seen = list(self.successors[source]), set()
        while stack:
            node = stack.pop()
            if node == target:
                return True
            if node not in seen:
                seen.add(node)
                stack.extend(self.successors[node] - seen)
        return False

    def topological_order(self, key) -> list:
        """Every node after its predecessors; among those ready, the smallest `key` first."""
        waiting = {n: len(p) for n, p in self.predecessors.items()}
        ready = [(key(n), i, n) for i, n in enumerate(self.predecessors) if not waiting[n]]
        heapq.heapify(ready)
        order, count = [], len(ready)
        while ready:
            _, _, node = heapq.heappop(ready)
            order.append(node)
            for s in self.successors[node]:
                waiting[s] -= 1
                if not waiting[s]:
                    heapq.heappush(ready, (key(s), count, s))
                    count += 1
        return order
