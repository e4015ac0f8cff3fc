"""The loop generator: the one place that writes loops. Every nest of every kernel
(`nests.py`) becomes LLVM functions here.

Each nest becomes a function `name(ptr noalias %buf..., i64 %begin, i64 %end)` that
runs the outermost loop from `begin` to `end`, so that a large nest can be handed to
`tracegrad_parallel_for` in pieces and a small one called once with `(0, n)`.

* **Maps.** Adjacent dimensions that every access walks contiguously are merged first
  (a (128, 512) elementwise op is one loop of 65536), then the loops are written out
  and the stores emitted in the innermost body; LLVM's vectoriser does the rest.
* **Reductions over the innermost axis** keep `W` partial results ("lanes", 256 bytes:
  four zmm registers) in a small array: element `r` of a row goes to lane `r mod W`,
  which is an ordinary vectorisable loop with no loop-carried dependence, and the lanes
  are folded pairwise at the end. The order of every addition is fixed by the shapes, so
  the bits never depend on the vector width or the threads. Rows longer than `BLOCK`
  are cut into blocks, reduced in parallel into partials, then combined in order.
* **Reductions over outer axes** (the innermost axis kept) accumulate straight into the
  target row, which vectorises along the kept axis.
* **argmax/argmin** scan in order, keeping the first extreme element.

Threads are used for the outermost loop when a nest's estimated work is well above what
starting them costs (about 65 us for two threads).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llvmlite import ir

from . import index as ix
from .emitter import ValueEmitter
from .expr import Load, cost, walk
from .llvm_types import I64, MEMORY, PTR, VOID, is_float, to_memory, to_register
from .nests import GemmCall, MapNest, Store

PARALLEL_WORK_NS = 300_000  # a nest this costly (single-thread estimate) is worth threads
CHUNK_WORK_NS = 120_000  # ... and no thread gets less than this much of it


@dataclass
class LoopFunction:
    """One emitted nest function and how to call it."""

    function: ir.Function
    buffers: list  # the Buffer behind each pointer parameter, in order
    trips: int  # the outermost loop runs over [0, trips)
    grain: int  # 0: call directly; else parallel_for with this grain
    offsets: dict | None = None  # Buffer -> the indices it is read/written at (see below)
    work: float = 0.0  # estimated single-thread time, ns
    outer: ix.Var | None = None  # the outermost counter, when `offsets` covers every access
    writes: frozenset | None = None  # the buffers it stores to (None: any of its buffers)
    largest_product: int = 0  # multiply-adds of its largest BLAS product (0: it calls none)


# --- loop skeletons ------------------------------------------------------------------------

def counted_loop(b: ir.IRBuilder, begin, end, body, name: str) -> None:
    """`for (i = begin; i < end; i++) body(i)`; leaves `b` after the loop."""
    begin = begin if isinstance(begin, ir.Value) else ir.Constant(I64, begin)
    end = end if isinstance(end, ir.Value) else ir.Constant(I64, end)
    pre = b.block
    loop = b.append_basic_block(f"{name}.loop")
    done = b.append_basic_block(f"{name}.done")
    b.cbranch(b.icmp_signed("<", begin, end), loop, done)
    b.position_at_end(loop)
    i = b.phi(I64, name=name)
    i.add_incoming(begin, pre)
    body(i)
    nxt = b.add(i, ir.Constant(I64, 1), name=f"{name}.next", flags=["nsw"])
    i.add_incoming(nxt, b.block)
    b.cbranch(b.icmp_signed("<", nxt, end), loop, done)
    b.position_at_end(done)


def nested_loops(b, sizes: list, body, names: list, first_range=None) -> None:
    """Loops over `sizes` (outermost first); the first runs over `first_range` if given."""
    values = []

    def level(k):
        if k == len(sizes):
            body(values)
            return

        def inner(i):
            values.append(i)
            level(k + 1)
            values.pop()

        lo, hi = first_range if (k == 0 and first_range) else (0, sizes[k])
        counted_loop(b, lo, hi, inner, names[k])

    level(0)


class NestFunction:
    """An LLVM function for one nest: pointer parameters for its buffers, then begin/end.

    A buffer that `aliases` maps to another (an output written in place of an input) has
    no parameter of its own: it is accessed through the other's."""

    def __init__(self, module: ir.Module, name: str, buffers: list, noalias: bool,
                 aliases: dict | None = None):
        aliases = aliases or {}

        def memory(buf):  # a chain (v2 over v1 over v0) ends at the first one's memory
            while buf in aliases:
                buf = aliases[buf]
            return buf

        self.buffers = list(dict.fromkeys(memory(buf) for buf in buffers
                                          if buf.kind != "global"))
        fnty = ir.FunctionType(VOID, [PTR] * len(self.buffers) + [I64, I64])
        self.function = ir.Function(module, fnty, name=name)
        self.function.linkage = "internal"
        self.function.attributes.add("noinline")  # small functions: LLVM optimises each fast
        for arg, buf in zip(self.function.args, self.buffers):
            arg.name = buf.name
            if noalias:
                arg.add_attribute("noalias")
            if buf.kind == "arena":
                arg.attributes.align = 64
        self.begin, self.end = self.function.args[-2:]
        self.begin.name, self.end.name = "begin", "end"
        entry = self.function.append_basic_block("entry")
        self.allocas = ir.IRBuilder(entry)  # stack slots go first, where mem2reg wants them
        body = self.function.append_basic_block("body")
        self.allocas.branch(body)
        self.allocas.position_at_start(entry)
        self.b = ir.IRBuilder(body)
        self.pointers = dict(zip(self.buffers, self.function.args))
        self.pointers.update({buf: self.pointers[memory(buf)] for buf in aliases
                              if memory(buf) in self.pointers})

    def alloca(self, t: ir.Type, count: int = 1, name: str = "") -> ir.Value:
        slot = self.allocas.alloca(t, size=ir.Constant(I64, count), name=name)
        slot.align = 64
        return slot

    def emitter(self, variables: dict, globals_: dict) -> ValueEmitter:
        return ValueEmitter(self.b, self.pointers, variables, globals_)

    def finish(self) -> None:
        self.b.ret_void()


def _buffers_of(actions) -> list:
    """Every buffer the actions read or write, in first-use order."""
    found: dict = {}
    for action in actions:
        if isinstance(action, Store):
            found.setdefault(action.buffer, None)
            roots = [action.value] + _offset_roots(action.offset)
        else:
            for buf in (action.a, action.b, action.c):
                found.setdefault(buf, None)
            roots = _offset_roots(action.a_offset, action.b_offset, action.c_offset)
        for e in walk(roots):
            if isinstance(e, Load):
                found.setdefault(e.buffer, None)
    return list(found)


def _offset_roots(*offsets) -> list:
    from .expr import indirect_sources

    return [src for off in offsets for src in indirect_sources(off)]


def _accesses(actions) -> list:
    """Every index used to address memory in `actions` (for deciding merges)."""
    offsets = []
    for action in actions:
        if isinstance(action, Store):
            offsets.append(action.offset)
            roots = [action.value] + _offset_roots(action.offset)
        else:
            offsets += [action.a_offset, action.b_offset, action.c_offset]
            roots = _offset_roots(action.a_offset, action.b_offset, action.c_offset)
        offsets += [e.offset for e in walk(roots) if isinstance(e, Load)]
    return offsets


# --- merging dimensions --------------------------------------------------------------------

def _variables(shape: tuple, prefix: str) -> tuple:
    """One loop counter per dimension (size-1 dimensions get the constant 0)."""
    return tuple(ix.Var(f"{prefix}{d}", s) if s != 1 else None for d, s in enumerate(shape))


def _as_indices(variables) -> tuple:
    return tuple(ix.ZERO if v is None else ix.index(v) for v in variables)


def merge_groups(shape: tuple, probe, classes=None) -> list:
    """Groups of adjacent dimensions that can be one loop: every access in `probe(idx)`
    walks the outer one `size(inner)` times as far as the inner one.

    `classes` (one label per dimension) keeps, e.g., kept and reduced axes apart."""
    variables = _variables(shape, "d")
    offsets = probe(_as_indices(variables))
    groups = [[d] for d in range(len(shape))]
    merged = [groups[0]] if groups else []
    for d in range(1, len(shape)):
        outer, inner = merged[-1][-1], d
        same_class = classes is None or classes[outer] == classes[inner]
        if same_class and _mergeable(offsets, variables[outer], variables[inner], shape[inner]):
            merged[-1].append(d)
        else:
            merged.append([d])
    return merged


def _mergeable(offsets, outer, inner, inner_size) -> bool:
    if outer is None or inner is None:
        return True  # a size-1 dimension never moves
    pair = {outer, inner}
    for off in offsets:
        if not off.is_affine_in(pair):
            return False
        if off.coefficient(outer) != off.coefficient(inner) * inner_size:
            return False
    return True


def merged_indices(shape: tuple, groups: list, prefix: str):
    """Counters for the merged loops and each original dimension's index in terms of them."""
    sizes = [math.prod(shape[d] for d in g) for g in groups]
    variables = [ix.Var(f"{prefix}{k}", s) for k, s in enumerate(sizes)]
    idx = [None] * len(shape)
    for g, v in zip(groups, variables):
        parts = ix.delinearize(ix.index(v), tuple(shape[d] for d in g))
        for d, part in zip(g, parts):
            idx[d] = part
    return sizes, variables, tuple(idx)


def _grain(work_ns: float, trips: int, sequential: bool = False) -> int:
    """The parallel_for grain for a loop of `trips` iterations, or 0 to run it directly."""
    if sequential or trips < 2 or work_ns < PARALLEL_WORK_NS:
        return 0
    return max(1, math.ceil(CHUNK_WORK_NS / (work_ns / trips)))


# --- maps ----------------------------------------------------------------------------------

def emit_map(module, name: str, nest: MapNest, globals_: dict,
             aliases: dict | None = None) -> list:
    """The functions (just one) that run a `MapNest`."""
    domain = nest.domain if nest.domain else (1,)
    if math.prod(domain) == 0:
        return []
    body = nest.body if nest.domain else (lambda idx: nest.body(()))
    groups = merge_groups(domain, lambda idx: _accesses(body(idx))) if not nest.sequential \
        else [[d] for d in range(len(domain))]
    sizes, variables, idx = merged_indices(domain, groups, "i")
    actions = body(idx)
    fn = NestFunction(module, name, _buffers_of(actions), not nest.sequential, aliases)

    def innermost(counters):
        emitter = fn.emitter(dict(zip(variables, counters)), globals_)
        # every value first, then the stores: an output written in place of an input
        # (the memory plan allows it) must not be seen by another output's loads
        values = [emitter.value(a.value) if isinstance(a, Store) else None for a in actions]
        for action, value in zip(actions, values):
            _emit_action(emitter, action, value)

    nested_loops(fn.b, sizes, innermost, [v.name for v in variables], (fn.begin, fn.end))
    fn.finish()
    work = math.prod(domain) * cost([a.value for a in actions if isinstance(a, Store)])
    plain = not nest.sequential and all(isinstance(a, Store) for a in actions)
    return [LoopFunction(fn.function, fn.buffers, sizes[0],
                         _grain(work, sizes[0], nest.sequential), _offsets_by_buffer(actions),
                         work, variables[0] if plain else None,
                         frozenset(a.buffer if isinstance(a, Store) else a.c for a in actions),
                         max((a.m * a.n * a.k for a in actions if isinstance(a, GemmCall)),
                             default=0))]


def _offsets_by_buffer(actions) -> dict:
    """Buffer -> every index a map's loop reads or writes it at (in-place checks)."""
    found: dict = {}
    for action in actions:
        if isinstance(action, Store):
            found.setdefault(action.buffer, set()).add(action.offset)
            for e in walk([action.value] + _offset_roots(action.offset)):
                if isinstance(e, Load):
                    found.setdefault(e.buffer, set()).add(e.offset)
        else:
            for buf, off in ((action.a, action.a_offset), (action.b, action.b_offset),
                             (action.c, action.c_offset)):
                found.setdefault(buf, set()).update({off, None})  # whole matrices
    return found


def _emit_action(emitter: ValueEmitter, action, value) -> None:
    b = emitter.b
    if isinstance(action, GemmCall):
        from .matmul import emit_gemm_call

        emit_gemm_call(b, emitter, action)
        return
    address = emitter.address(action.buffer, action.offset)
    dtype = action.buffer.dtype
    if action.accumulate:
        old = b.load(address, typ=MEMORY[dtype])
        old.align = dtype.itemsize
        old = to_register(b, old, dtype)  # a scatter adds up repeated indices
        value = b.fadd(old, value) if is_float(old.type) else b.add(old, value)
    store = b.store(to_memory(b, value, dtype), address)
    store.align = dtype.itemsize
