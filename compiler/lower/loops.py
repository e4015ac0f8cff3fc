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

import llvmlite.ir as ir

from ..ops.dtypes import bool_
from . import index as ix
from .expr import Apply, Buffer, Literal, Load, cost, walk
from .llvm_types import FAST, I1, I64, MEMORY, PTR, REGISTER, VOID, constant, is_float
from .llvm_types import to_memory, to_register
from .nests import GemmCall, MapNest, ReduceNest, Store
from .scalar import emit as emit_scalar

PARALLEL_WORK_NS = 300_000  # a nest this costly (single-thread estimate) is worth threads
CHUNK_WORK_NS = 120_000  # ... and no thread gets less than this much of it


@dataclass
class LoopFunction:
    """One emitted nest function and how to call it."""

    function: ir.Function
    buffers: list  # the Buffer behind each pointer parameter, in order
    trips: int  # the outermost loop runs over [0, trips)
    grain: int  # 0: call directly; else parallel_for with this grain


# --- emitting expressions -------------------------------------------------------------------

class ValueEmitter:
    """Emits expression DAGs and indices at one point of the code (memoised per point)."""

    def __init__(self, b: ir.IRBuilder, pointers: dict, variables: dict, globals_: dict):
        self.b, self.pointers, self.variables, self.globals = b, pointers, variables, globals_
        self._values: dict[int, ir.Value] = {}
        self._indices: dict[int, ir.Value] = {}

    def value(self, e) -> ir.Value:
        found = self._values.get(id(e))
        if found is None:
            found = self._values[id(e)] = self._emit(e)
        return found

    def _emit(self, e) -> ir.Value:
        b = self.b
        if isinstance(e, Literal):
            return constant(REGISTER[e.dtype], e.value)
        if isinstance(e, Load):
            loaded = b.load(self.address(e.buffer, e.offset), typ=MEMORY[e.dtype])
            loaded.align = e.dtype.itemsize
            return to_register(b, loaded, e.dtype)
        if isinstance(e, Apply):
            return emit_scalar(b, e.op, [self.value(a) for a in e.args], e.attrs)
        raise TypeError(f"cannot emit {e!r}")

    def address(self, buffer: Buffer, offset: ix.Index) -> ir.Value:
        base = self.pointers.get(buffer) or self._global(buffer)
        return self.b.gep(base, [self.index(offset)], inbounds=True,
                          source_etype=MEMORY[buffer.dtype])

    def _global(self, buffer: Buffer) -> ir.GlobalVariable:
        """A constant compiled into the module (made on first use)."""
        found = self.globals.get(buffer)
        if found is None:
            data = bytearray(buffer.data.astype(buffer.dtype.numpy, copy=False).tobytes())
            t = ir.ArrayType(ir.IntType(8), len(data))
            found = ir.GlobalVariable(self.b.module, t, name=buffer.name)
            found.initializer = ir.Constant(t, data)
            found.global_constant, found.linkage, found.align = True, "internal", 64
            self.globals[buffer] = found
        return found

    def index(self, i: ix.Index) -> ir.Value:
        found = self._indices.get(id(i))
        if found is None:
            found = self._indices[id(i)] = self._emit_index(i)
        return found

    def _emit_index(self, i: ix.Index) -> ir.Value:
        b = self.b
        total = None
        for atom, coef in i.terms:
            term = self._atom(atom)
            if coef != 1:
                term = b.mul(term, ir.Constant(I64, coef), flags=["nsw"])
            total = term if total is None else b.add(total, term, flags=["nsw"])
        if total is None:
            return ir.Constant(I64, i.const)
        return b.add(total, ir.Constant(I64, i.const), flags=["nsw"]) if i.const else total

    def _atom(self, atom) -> ir.Value:
        b = self.b
        if isinstance(atom, ix.Var):
            return self.variables[atom]
        if isinstance(atom, (ix.Div, ix.Mod)):
            inner = self.index(atom.inner)
            d = ir.Constant(I64, atom.divisor)
            if atom.inner.lo >= 0:  # the usual case: plain unsigned arithmetic
                return b.udiv(inner, d) if isinstance(atom, ix.Div) else b.urem(inner, d)
            q = b.sdiv(inner, d)
            r = b.srem(inner, d)
            fix = b.icmp_signed("<", r, ir.Constant(I64, 0))
            if isinstance(atom, ix.Div):
                return b.sub(q, b.zext(fix, I64))
            return b.select(fix, b.add(r, d), r)
        if isinstance(atom, ix.Indirect):  # a runtime index: wrap negatives, stay in bounds
            raw = self.value(atom.source)
            raw = b.sext(raw, I64) if raw.type.width < 64 and raw.type != I1 else raw
            raw = b.zext(raw, I64) if raw.type == I1 else raw
            size = ir.Constant(I64, atom.size)
            wrapped = b.select(b.icmp_signed("<", raw, ir.Constant(I64, 0)), b.add(raw, size),
                               raw)
            top = ir.Constant(I64, max(atom.size - 1, 0))
            wrapped = b.select(b.icmp_signed(">", wrapped, top), top, wrapped)
            return b.select(b.icmp_signed("<", wrapped, ir.Constant(I64, 0)),
                            ir.Constant(I64, 0), wrapped)
        raise TypeError(f"cannot emit index atom {atom!r}")


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
    """An LLVM function for one nest: pointer parameters for its buffers, then begin/end."""

    def __init__(self, module: ir.Module, name: str, buffers: list, noalias: bool):
        self.buffers = [buf for buf in buffers if buf.kind != "global"]
        fnty = ir.FunctionType(VOID, [PTR] * len(self.buffers) + [I64, I64])
        self.function = ir.Function(module, fnty, name=name)
        self.function.linkage = "internal"
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

def emit_map(module, name: str, nest: MapNest, globals_: dict, noalias=True) -> list:
    """The functions (just one) that run a `MapNest`."""
    domain = nest.domain if nest.domain else (1,)
    if math.prod(domain) == 0:
        return []
    body = nest.body if nest.domain else (lambda idx: nest.body(()))
    groups = merge_groups(domain, lambda idx: _accesses(body(idx))) if not nest.sequential \
        else [[d] for d in range(len(domain))]
    sizes, variables, idx = merged_indices(domain, groups, "i")
    actions = body(idx)
    fn = NestFunction(module, name, _buffers_of(actions), noalias and not nest.sequential)

    def innermost(counters):
        emitter = fn.emitter(dict(zip(variables, counters)), globals_)
        for action in actions:
            _emit_action(fn, emitter, action)

    nested_loops(fn.b, sizes, innermost, [v.name for v in variables], (fn.begin, fn.end))
    fn.finish()
    work = math.prod(domain) * cost([a.value for a in actions if isinstance(a, Store)])
    return [LoopFunction(fn.function, fn.buffers, sizes[0], _grain(work, sizes[0],
                                                                    nest.sequential))]


def _emit_action(fn: NestFunction, emitter: ValueEmitter, action) -> None:
    b = emitter.b
    if isinstance(action, GemmCall):
        from .matmul import emit_gemm_call

        emit_gemm_call(b, emitter, action)
        return
    value = emitter.value(action.value)
    address = emitter.address(action.buffer, action.offset)
    dtype = action.buffer.dtype
    if action.accumulate:
        old = b.load(address, typ=MEMORY[dtype])
        old.align = dtype.itemsize
        value = combine(b, "sum", to_register(b, old, dtype), value)
    store = b.store(to_memory(b, value, dtype), address)
    store.align = dtype.itemsize


# --- reductions ----------------------------------------------------------------------------

def identity(op: str, dtype) -> object:
    """The value a fold starts from."""
    if op == "sum":
        return 0
    if op == "prod":
        return 1
    if dtype is bool_:
        return op == "amin"
    if dtype.is_floating_point:
        return -math.inf if op == "amax" else math.inf
    info = __import__("numpy").iinfo(dtype.numpy)
    return info.min if op == "amax" else info.max


def combine(b: ir.IRBuilder, op: str, acc: ir.Value, x: ir.Value) -> ir.Value:
    """One step of a fold: `acc (op) x`. Max and min propagate nan like NumPy's."""
    fl = is_float(acc.type)
    if op == "sum":
        if acc.type == I1:
            return b.or_(acc, x)
        return b.fadd(acc, x, flags=FAST) if fl else b.add(acc, x)
    if op == "prod":
        if acc.type == I1:
            return b.and_(acc, x)
        return b.fmul(acc, x, flags=FAST) if fl else b.mul(acc, x)
    cmp = ">" if op == "amax" else "<"
    if fl:
        take = b.or_(b.fcmp_ordered(cmp, x, acc), b.fcmp_unordered("uno", x, x))
    elif acc.type == I1:
        take = b.icmp_unsigned(cmp, x, acc)
    else:
        take = b.icmp_signed(cmp, x, acc)
    return b.select(take, x, acc)


def emit_reduce(module, name: str, nest: ReduceNest, globals_: dict, noalias=True) -> list:
    """The functions that run a `ReduceNest`, in call order."""
    kept = math.prod(nest.kept_shape)
    if kept == 0:
        return []
    if math.prod(nest.reduced_shape) == 0 or not nest.axes:
        return _emit_degenerate(module, name, nest, globals_, noalias)
    if nest.op in ("argmax", "argmin"):
        return [_emit_scan(module, name, nest, globals_, noalias)]
    if nest.blocks > 1:
        return _emit_blocked(module, name, nest, globals_, noalias)
    if nest.innermost_reduced:
        return [_emit_lanes(module, name, nest, globals_, noalias)]
    return [_emit_columns(module, name, nest, globals_, noalias)]


def _reduce_layout(nest: ReduceNest):
    """Merge what can be merged; returns sizes, classes, variables and source index."""
    classes = ["r" if d in nest.axes else "k" for d in range(len(nest.domain))]
    groups = merge_groups(nest.domain, lambda idx: _source_offsets(nest, idx), classes)
    sizes, variables, idx = merged_indices(nest.domain, groups, "i")
    merged_classes = [classes[g[0]] for g in groups]
    return sizes, merged_classes, variables, idx


def _source_offsets(nest: ReduceNest, idx: tuple) -> list:
    src = nest.source(idx)
    return [e.offset for e in walk([src]) if isinstance(e, Load)]


def _target_offset(nest: ReduceNest, idx: tuple) -> ix.Index:
    kept_idx = tuple(i for d, i in enumerate(idx) if d not in nest.axes)
    return ix.linear(kept_idx, nest.kept_shape)


def _reg(nest: ReduceNest) -> ir.Type:
    return REGISTER[nest.dtype]


def _emit_lanes(module, name, nest: ReduceNest, globals_, noalias, blocked=None):
    """Rows reduced over the innermost axis through `W` vector lanes (module docstring)."""
    sizes, classes, variables, idx = _reduce_layout(nest)
    src = nest.source(idx)
    target = nest.scratch if blocked else nest.target
    buffers = _buffers_of([Store(target, ix.ZERO, src)])
    fn = NestFunction(module, name, buffers, noalias)
    b, t = fn.b, _reg(nest)
    lanes = nest.lanes()
    slots = fn.alloca(t, lanes, "lanes")
    run = sizes[-1]
    outer = [k for k in range(len(sizes) - 1) if classes[k] == "k"]
    middle = [k for k in range(len(sizes) - 1) if classes[k] == "r"]
    order = outer + middle
    start = constant(t, identity(nest.op, nest.dtype))
    loop_sizes = [sizes[k] for k in outer] or [1]
    if blocked:
        loop_sizes = [blocked[0] * blocked[1]]  # (row, block) pairs, flattened

    def lane_slot(lane):
        return b.gep(slots, [lane], inbounds=True, source_etype=t)

    def row(counters):
        counter_of = {}
        if blocked:
            q = counters[0]
            rows, nblocks = blocked
            if outer:
                counter_of[variables[outer[0]]] = b.udiv(q, ir.Constant(I64, nblocks))
            block = b.urem(q, ir.Constant(I64, nblocks))
        else:
            counter_of.update({variables[k]: c for k, c in zip(outer, counters)})
        for lane in range(lanes):
            b.store(start, lane_slot(ir.Constant(I64, lane)))

        def accumulate(lane, r):
            values = dict(counter_of)
            values[variables[-1]] = r
            emitter = fn.emitter(values, globals_)
            slot = lane_slot(lane)
            b.store(combine(b, nest.op, b.load(slot, typ=t), emitter.value(src)), slot)

        def over_run(mids):
            for k, c in zip(middle, mids):
                counter_of[variables[k]] = c
            if blocked:
                first = b.mul(block, ir.Constant(I64, BLOCK_CHUNKS(lanes)))
                last = b.add(first, ir.Constant(I64, BLOCK_CHUNKS(lanes)))
                whole = ir.Constant(I64, run // lanes)
                last = b.select(b.icmp_signed("<", last, whole), last, whole)
                chunk_range = (first, last)
            else:
                chunk_range = (0, run // lanes)

            def chunk(c):
                base = b.mul(c, ir.Constant(I64, lanes), flags=["nsw"])
                counted_loop(b, 0, lanes, lambda lane: accumulate(
                    lane, b.add(base, lane, flags=["nsw"])), "lane")

            counted_loop(b, chunk_range[0], chunk_range[1], chunk, "chunk")
            tail = run % lanes
            if tail:
                tail_start = ir.Constant(I64, run - tail)
                if blocked:  # only the last block has the tail
                    is_last = b.icmp_signed("==", block, ir.Constant(I64, blocked[1] - 1))
                    with b.if_then(is_last):
                        counted_loop(b, 0, tail, lambda lane: accumulate(
                            lane, b.add(tail_start, lane)), "tail")
                else:
                    counted_loop(b, 0, tail, lambda lane: accumulate(
                        lane, b.add(tail_start, lane)), "tail")

        nested_loops(b, [sizes[k] for k in middle], over_run, [f"r{k}" for k in middle])
        total = _fold_lanes(b, nest.op, [b.load(lane_slot(ir.Constant(I64, lane)), typ=t)
                                         for lane in range(lanes)])
        if blocked:
            where = b.gep(fn.pointers[target], [counters[0]], inbounds=True,
                          source_etype=MEMORY[nest.dtype])
        else:
            emitter = fn.emitter(dict(counter_of), globals_)
            where = emitter.address(target, _target_offset(nest, _zero_reduced(nest, idx)))
        b.store(to_memory(b, total, nest.dtype), where)

    nested_loops(b, loop_sizes, row, [f"k{k}" for k in range(len(loop_sizes))],
                 (fn.begin, fn.end))
    fn.finish()
    trips = loop_sizes[0]
    work = math.prod(nest.domain) * cost([src])
    return LoopFunction(fn.function, fn.buffers, trips, _grain(work, trips))


def BLOCK_CHUNKS(lanes: int) -> int:
    from .nests import BLOCK

    return BLOCK // lanes


def _zero_reduced(nest: ReduceNest, idx: tuple) -> tuple:
    """`idx` with the reduced axes at 0 (the target offset depends on kept axes only)."""
    return tuple(ix.ZERO if d in nest.axes else i for d, i in enumerate(idx))


def _fold_lanes(b, op, values: list) -> ir.Value:
    """Pairwise: lane l with lane l + W/2, and so on down to one."""
    while len(values) > 1:
        half = len(values) // 2
        values = [combine(b, op, values[k], values[k + half]) for k in range(half)]
    return values[0]


def _emit_blocked(module, name, nest: ReduceNest, globals_, noalias) -> list:
    """Long rows: partial results per fixed block (in parallel), then one ordered fold."""
    rows, nblocks = math.prod(nest.kept_shape), nest.blocks
    first = _emit_lanes(module, f"{name}.blocks", nest, globals_, noalias, (rows, nblocks))
    partials = nest.scratch

    def fold(idx):
        return [Store(nest.target, idx[0], _PartialFold(partials, idx[0], nblocks, nest))]

    second = _emit_partials_fold(module, f"{name}.fold", nest, rows, nblocks, globals_)
    return [first, second]


class _PartialFold:  # marker used only by _emit_partials_fold
    def __init__(self, *args):
        self.args = args


def _emit_partials_fold(module, name, nest: ReduceNest, rows: int, nblocks: int, globals_):
    fn = NestFunction(module, name, [nest.scratch, nest.target], True)
    b, t = fn.b, _reg(nest)
    partials, target = fn.pointers[nest.scratch], fn.pointers[nest.target]
    acc = fn.alloca(t, 1, "acc")

    def row(counters):
        r = counters[0]
        b.store(constant(t, identity(nest.op, nest.dtype)), acc)

        def step(k):
            at = b.add(b.mul(r, ir.Constant(I64, nblocks)), k)
            p = b.load(b.gep(partials, [at], inbounds=True, source_etype=MEMORY[nest.dtype]),
                       typ=MEMORY[nest.dtype])
            b.store(combine(b, nest.op, b.load(acc, typ=t), to_register(b, p, nest.dtype)),
                    acc)

        counted_loop(b, 0, nblocks, step, "block")
        out = b.gep(target, [r], inbounds=True, source_etype=MEMORY[nest.dtype])
        b.store(to_memory(b, b.load(acc, typ=t), nest.dtype), out)

    nested_loops(b, [rows], row, ["row"], (fn.begin, fn.end))
    fn.finish()
    return LoopFunction(fn.function, fn.buffers, rows, 0)


def _emit_columns(module, name, nest: ReduceNest, globals_, noalias):
    """Innermost axis kept: fold into the target row, vectorising along the kept axes."""
    sizes, classes, variables, idx = _reduce_layout(nest)
    src = nest.source(idx)
    toff = _target_offset(nest, _zero_reduced(nest, idx))
    buffers = _buffers_of([Store(nest.target, toff, src)])
    fn = NestFunction(module, name, buffers, noalias)
    b, t = fn.b, _reg(nest)
    inner = []
    for k in reversed(range(len(sizes))):
        if classes[k] != "k":
            break
        inner.insert(0, k)
    outer = [k for k in range(len(sizes)) if classes[k] == "k" and k not in inner]
    reduced = [k for k in range(len(sizes)) if classes[k] == "r"]
    start = constant(t, identity(nest.op, nest.dtype))

    def block(outer_counters):
        values = {variables[k]: c for k, c in zip(outer, outer_counters)}

        def init(inner_counters):
            here = dict(values)
            here.update({variables[k]: c for k, c in zip(inner, inner_counters)})
            for k in reduced:
                here[variables[k]] = ir.Constant(I64, 0)
            emitter = fn.emitter(here, globals_)
            store = b.store(to_memory(b, start, nest.dtype), emitter.address(nest.target, toff))
            store.align = nest.dtype.itemsize

        nested_loops(b, [sizes[k] for k in inner], init, [f"z{k}" for k in inner])

        def reduce_point(red_counters):
            def element(inner_counters):
                here = dict(values)
                here.update({variables[k]: c for k, c in zip(reduced, red_counters)})
                here.update({variables[k]: c for k, c in zip(inner, inner_counters)})
                emitter = fn.emitter(here, globals_)
                where = emitter.address(nest.target, toff)
                old = to_register(b, b.load(where, typ=MEMORY[nest.dtype]), nest.dtype)
                new = combine(b, nest.op, old, emitter.value(src))
                b.store(to_memory(b, new, nest.dtype), where)

            nested_loops(b, [sizes[k] for k in inner], element, [f"c{k}" for k in inner])

        nested_loops(b, [sizes[k] for k in reduced], reduce_point, [f"r{k}" for k in reduced])

    outer_sizes = [sizes[k] for k in outer] or [1]
    nested_loops(b, outer_sizes, block if outer else (lambda c: block([])),
                 [f"k{k}" for k in range(len(outer_sizes))], (fn.begin, fn.end))
    fn.finish()
    work = math.prod(nest.domain) * cost([src])
    return LoopFunction(fn.function, fn.buffers, outer_sizes[0],
                        _grain(work, outer_sizes[0]) if outer else 0)


def _emit_scan(module, name, nest: ReduceNest, globals_, noalias):
    """argmax/argmin: the first extreme element in row-major order of the reduced axes."""
    variables = _variables(nest.domain, "i")
    idx = _as_indices(variables)
    src = nest.source(idx)
    toff = _target_offset(nest, _zero_reduced(nest, idx))
    fn = NestFunction(module, name, _buffers_of([Store(nest.target, toff, src)]), noalias)
    b, t = fn.b, _reg(nest)
    kept = [d for d in range(len(nest.domain)) if d not in nest.axes]
    reduced = list(nest.axes)
    best, where = fn.alloca(t, 1, "best"), fn.alloca(I64, 1, "where")
    position = ix.linear(tuple(idx[d] for d in reduced), nest.reduced_shape)
    cmp = ">" if nest.op == "argmax" else "<"
    start = constant(t, identity("amax" if nest.op == "argmax" else "amin", nest.dtype))

    def row(kept_counters):
        values = {variables[d]: c for d, c in zip(kept, kept_counters) if variables[d]}
        b.store(start, best)
        b.store(ir.Constant(I64, 0), where)

        def element(red_counters):
            here = dict(values)
            here.update({variables[d]: c for d, c in zip(reduced, red_counters) if variables[d]})
            emitter = fn.emitter(here, globals_)
            x, old = emitter.value(src), b.load(best, typ=t)
            if is_float(t):  # the first nan wins, as in NumPy
                take = b.or_(b.fcmp_ordered(cmp, x, old),
                             b.and_(b.fcmp_unordered("uno", x, x),
                                    b.fcmp_ordered("ord", old, old)))
            else:
                take = (b.icmp_unsigned if t == I1 else b.icmp_signed)(cmp, x, old)
            b.store(b.select(take, x, old), best)
            b.store(b.select(take, emitter.index(position), b.load(where, typ=I64)), where)

        nested_loops(b, [nest.domain[d] for d in reduced], element, [f"r{d}" for d in reduced])
        emitter = fn.emitter(values, globals_)
        b.store(b.load(where, typ=I64), emitter.address(nest.target, toff))

    kept_sizes = [nest.domain[d] for d in kept] or [1]
    nested_loops(b, kept_sizes, row if kept else (lambda c: row([])),
                 [f"k{d}" for d in range(len(kept_sizes))], (fn.begin, fn.end))
    fn.finish()
    return LoopFunction(fn.function, fn.buffers, kept_sizes[0], 0)


def _emit_degenerate(module, name, nest: ReduceNest, globals_, noalias):
    """Nothing to reduce over (every target gets the identity) or no reduced axes (copy)."""
    kept_shape = nest.kept_shape
    if not nest.axes:
        def body(idx):
            return [Store(nest.target, ix.linear(idx, kept_shape), nest.source(idx))]
    else:
        def body(idx):
            value = identity(nest.op, nest.dtype) if nest.op not in ("argmax", "argmin") else 0
            from .expr import literal

            return [Store(nest.target, ix.linear(idx, kept_shape),
                          literal(value, nest.target.dtype))]
    return emit_map(module, name, MapNest(kept_shape, body), globals_, noalias)
