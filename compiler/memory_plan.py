"""Memory planning: every buffer the kernels exchange gets an offset in one arena.

A *stored* value is one that a kernel writes to memory: a value another kernel reads or
the graph returns (views are not stored: they read their root's memory), and the raw
product of a matmul, which the epilogue reads back. It lives from the kernel that writes
it to the last kernel that reads it (or through it, a view of it); graph outputs live to
the end; graph inputs and constants are not in the arena. Buffers whose lifetimes meet
need disjoint bytes; the rest share. With `outputs_in_arena=False` the graph's outputs get
buffers of their own instead (handed to the caller, as XLA does), and the arena holds
only the temporaries. An elementwise kernel may write an output over an
input of the same size that dies in it, read at the same positions (*in place*): each
element is read before it is overwritten.

Offsets come from the "greedy by size" rule: largest buffer first, each into the
best-fitting gap among the buffers already placed that are live at the same time.

>>> from tracegrad.compiler.ir_text import parse_graph
>>> from tracegrad.compiler.schedule import schedule
>>> g = parse_graph('''def f(x0: f32[64,64], x1: f32[64,64]):
...     v0 = matmul(x0, x1)
...     v1 = matmul(v0, x1)
...     v2 = matmul(v1, x1)
...     return (v2,)''')
>>> plan = plan_memory(schedule(g))
>>> plan.unplanned_bytes, plan.arena_bytes  # v0 and v2 share: v0 is dead when v2 is made
(49152, 32768)
"""

from __future__ import annotations

from dataclasses import dataclass

from .fuse import VIEWS
from .ir import Value, format_type
from .schedule import Kernel, Schedule, nbytes, storage_root

ALIGN = 64  # bytes: a cache line, and the widest vector load (AVX-512)


@dataclass
class Buffer:
    value: Value
    offset: int | None  # None: a buffer of its own, outside the arena (an output)
    size: int  # bytes, a multiple of ALIGN
    start: int  # the kernel that writes it
    end: int  # the last kernel that reads it; len(kernels) for a graph output


@dataclass
class MemoryPlan:
    schedule: Schedule
    buffers: dict  # stored Value -> Buffer
    inplace: dict  # Value -> the input whose buffer it took
    arena_bytes: int  # the peak: the arena's size
    unplanned_bytes: int  # every buffer separately

    def buffer_of(self, value: Value) -> Buffer | None:
        """The buffer holding `value` (through views), or None (an input or constant)."""
        return self.buffers.get(storage_root(value, self.schedule.graph.producers()))

    def report(self) -> str:
        """A table of the buffers by offset, after a summary line."""
        ratio = self.arena_bytes / self.unplanned_bytes if self.unplanned_bytes else 1.0
        summary = (f"# memory plan of {self.schedule.graph.name}: arena {self.arena_bytes} "
                   f"bytes at peak, {self.unplanned_bytes} unplanned ({ratio:.0%}); "
                   f"{len(self.buffers)} buffers, {len(self.inplace)} in place")
        lines = [summary, *self._views(), f"# {'offset':>10} {'bytes':>10}  kernels  value"]
        names = [k.name for k in self.schedule.kernels]
        for b in sorted(self.buffers.values(), key=lambda b: (b.offset is None, b.offset or 0,
                                                              b.start)):
            end = "end" if b.end == len(names) else str(b.end)
            note = f" in place of {self.inplace[b.value].name}" if b.value in self.inplace \
                else ""
            offset = "own" if b.offset is None else b.offset
            lines.append(f"  {offset:>10} {b.size:>10}  {b.start:>3}-{end:<3}  "
                         f"{b.value.name}: {format_type(b.value.shape, b.value.dtype)} "
                         f"({names[b.start]}){note}")
        return "\n".join(lines) + "\n"


    def _views(self) -> list[str]:
        """A line naming the values kernels exchange as views of another's memory."""
        producers = self.schedule.graph.producers()
        exchanged = dict.fromkeys(v for k in self.schedule.kernels for v in k.outputs)
        views = [f"{v.name} = {root.name}" for v in exchanged
                 for root in [storage_root(v, producers)] if root is not v]
        return [f"# views (no bytes of their own): {', '.join(views)}"] if views else []


def plan_memory(schedule: Schedule, inplace: bool = True,
                outputs_in_arena: bool = True) -> MemoryPlan:
    """Offsets for every stored value of `schedule` (see the module docstring)."""
    spans = _lifetimes(schedule)
    end = len(schedule.kernels)
    in_arena = {v: s for v, s in spans.items() if outputs_in_arena or s[1] < end}
    shared = _inplace_pairs(schedule, in_arena) if inplace else {}
    units: dict[Value, list[Value]] = {}  # first owner -> the values sharing its bytes
    owner = {}
    for v in in_arena:  # in kernel order: a donor comes before the value taking its bytes
        owner[v] = owner[shared[v]] if v in shared else v
        units.setdefault(owner[v], []).append(v)
    sizes = {o: _aligned(max(map(nbytes, vs))) for o, vs in units.items()}
    offsets = _place([(sizes[o], min(spans[v][0] for v in vs), max(spans[v][1] for v in vs), o)
                      for o, vs in units.items()])
    buffers = {v: Buffer(v, offsets[owner[v]] if v in owner else None, _aligned(nbytes(v)),
                         *spans[v]) for v in spans}
    top = max((offsets[o] + sizes[o] for o in units), default=0)
    return MemoryPlan(schedule, buffers, shared, top,
                      sum(buffers[v].size for v in in_arena))


def _aligned(size: int) -> int:
    return -(-size // ALIGN) * ALIGN


def stored_values(schedule: Schedule) -> dict[Value, int]:
    """Each stored value and the index of the kernel that writes it, in that order."""
    producers = schedule.graph.producers()
    made = {n.out: i for i, k in enumerate(schedule.kernels) for n in k.nodes
            if n.op not in VIEWS}
    stored = {}
    for i, k in enumerate(schedule.kernels):
        for n in k.nodes:
            if n.op == "matmul":
                stored[n.out] = i
        for v in k.outputs:
            root = storage_root(v, producers)
            if root in made:
                stored.setdefault(root, made[root])
    return dict(sorted(stored.items(), key=lambda item: item[1]))


def _lifetimes(schedule: Schedule) -> dict[Value, tuple[int, int]]:
    """(first kernel, last kernel) for each stored value."""
    producers = schedule.graph.producers()
    spans = {v: [i, i] for v, i in stored_values(schedule).items()}
    for i, k in enumerate(schedule.kernels):
        for x in k.inputs:
            root = storage_root(x, producers)
            if root in spans:
                spans[root][1] = max(spans[root][1], i)
    for v in schedule.graph.outputs:
        root = storage_root(v, producers)
        if root in spans:
            spans[root][1] = len(schedule.kernels)
    return {v: tuple(span) for v, span in spans.items()}


def _inplace_pairs(schedule: Schedule, spans: dict) -> dict[Value, Value]:
    """value -> donor: an output that may overwrite an input dying in its kernel."""
    producers = schedule.graph.producers()
    pairs: dict[Value, Value] = {}
    for i, k in enumerate(schedule.kernels):
        for v in [n.out for n in k.nodes if n.out in spans and n.op != "matmul"]:
            donor = next((x for x in _donors(k, i, spans, producers)
                          if x not in pairs.values() and _fits(k, x, v)), None)
            if donor is not None:
                pairs[v] = donor
    return pairs


def _donors(kernel: Kernel, i: int, spans: dict, producers: dict) -> list[Value]:
    """Stored values that die in `kernel` and that it reads only element by element:
    never through a view, its own or one another kernel made."""
    if kernel.kind == "elementwise":
        candidates = kernel.inputs
    elif kernel.kind == "matmul" and not kernel.layout.inner and not kernel.layout.outer:
        candidates = [n.out for n in kernel.nodes if n.op == "matmul"]  # the raw product
    else:
        return []
    viewed = {n.inputs[0] for n in kernel.nodes if n.op in VIEWS}
    viewed |= {r for v in kernel.inputs for r in [storage_root(v, producers)] if r is not v}
    return [x for x in candidates if x in spans and spans[x][1] == i and x not in viewed]


def _fits(kernel: Kernel, donor: Value, value: Value) -> bool:
    frames = kernel.layout.frames
    return nbytes(donor) == nbytes(value) and donor in frames and \
        frames.get(donor) == frames.get(value)


def _place(units: list[tuple]) -> dict:
    """Offsets for (size, start, end, key) units: largest first, best-fitting gap."""
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, start, end)
    offsets = {}
    for size, start, end, key in sorted(units, key=lambda u: (-u[0], u[1])):
        busy = sorted((o, s) for o, s, a, b in placed if a <= end and start <= b)
        best, cursor = None, 0
        for o, s in busy:
            gap = o - cursor
            if gap >= size and (best is None or gap < best[1]):
                best = (cursor, gap)
            cursor = max(cursor, o + s)
        offset = best[0] if best else cursor
        placed.append((offset, size, start, end))
        offsets[key] = offset
    return offsets
