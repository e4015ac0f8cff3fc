"""Reductions, written by the loop generator's skeleton (`loops.py`): see its docstring
for the four shapes a `ReduceNest` takes (vector lanes along the innermost axis, fixed
blocks for long rows, accumulation into the target row when the innermost axis is kept,
and the in-order scan of argmax/argmin).

>>> identity("amax", __import__("tracegrad.compiler.ops", fromlist=["x"]).float32)
-inf
"""

from __future__ import annotations

import math

from llvmlite import ir

from ..ops.dtypes import bool_
from . import index as ix
from .expr import Load, cost, walk
from .llvm_types import I1, I64, MEMORY, REGISTER, constant, is_float, to_memory, to_register
from .loops import (
    LoopFunction,
    NestFunction,
    _as_indices,
    _buffers_of,
    _grain,
    _offsets_by_buffer,
    _variables,
    counted_loop,
    emit_map,
    merge_groups,
    merged_indices,
    nested_loops,
)
from .nests import BLOCK, MapNest, ReduceNest, Store


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
        return b.fadd(acc, x) if fl else b.add(acc, x)
    if op == "prod":
        if acc.type == I1:
            return b.and_(acc, x)
        return b.fmul(acc, x) if fl else b.mul(acc, x)
    cmp = ">" if op == "amax" else "<"
    if fl:
        take = b.or_(b.fcmp_ordered(cmp, x, acc), b.fcmp_unordered("uno", x, x))
    elif acc.type == I1:
        take = b.icmp_unsigned(cmp, x, acc)
    else:
        take = b.icmp_signed(cmp, x, acc)
    return b.select(take, x, acc)


def emit_reduce(module, name: str, nest: ReduceNest, globals_: dict,
                aliases: dict | None = None) -> list:
    """The functions that run a `ReduceNest`, in call order."""
    kept = math.prod(nest.kept_shape)
    if kept == 0:
        return []
    if math.prod(nest.reduced_shape) == 0 or not nest.axes:
        return _emit_degenerate(module, name, nest, globals_, aliases)
    if nest.op in ("argmax", "argmin"):
        return [_emit_scan(module, name, nest, globals_, aliases)]
    if nest.blocks > 1:
        return _emit_blocked(module, name, nest, globals_, aliases)
    if nest.innermost_reduced:
        return [_emit_lanes(module, name, nest, globals_, aliases=aliases)]
    return [_emit_columns(module, name, nest, globals_, aliases)]


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


def _emit_lanes(module, name, nest: ReduceNest, globals_, blocked=None, aliases=None):
    """Rows reduced over the innermost axis through `W` vector lanes (module docstring)."""
    sizes, classes, variables, idx = _reduce_layout(nest)
    src = nest.source(idx)
    target = nest.scratch if blocked else nest.target
    buffers = _buffers_of([Store(target, ix.ZERO, src)])
    fn = NestFunction(module, name, buffers, True, aliases)
    b, t = fn.b, _reg(nest)
    lanes = nest.lanes()
    slots = fn.alloca(t, lanes, "lanes")
    run = sizes[-1]
    outer = [k for k in range(len(sizes) - 1) if classes[k] == "k"]
    middle = [k for k in range(len(sizes) - 1) if classes[k] == "r"]
    start = constant(t, identity(nest.op, nest.dtype))
    loop_sizes = [sizes[k] for k in outer] or [1]
    if blocked:
        loop_sizes = [blocked[0] * blocked[1]]  # (row, block) pairs, flattened

    def lane_slot(lane):
        return b.gep(slots, [lane], inbounds=True, source_etype=t)

    def row(counters):
        counter_of = {}
        if blocked:  # counters[0] runs over (row, block) pairs; rows over the kept dims
            q, nblocks = counters[0], blocked[1]
            row_index = b.udiv(q, ir.Constant(I64, nblocks))
            block = b.urem(q, ir.Constant(I64, nblocks))
            stride = 1
            for k in reversed(outer):
                part = b.udiv(row_index, ir.Constant(I64, stride)) if stride > 1 else row_index
                counter_of[variables[k]] = b.urem(part, ir.Constant(I64, sizes[k]))
                stride *= sizes[k]
        else:
            counter_of.update({variables[k]: c for k, c in zip(outer, counters)})
        counted_loop(b, 0, lanes, lambda lane: b.store(start, lane_slot(lane)), "init")

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
                per_block = ir.Constant(I64, BLOCK // lanes)  # whole chunks of lanes per block
                first = b.mul(block, per_block)
                last = b.add(first, per_block)
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
        total = _fold_lanes(b, nest.op, lanes, lane_slot, t)
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
    if blocked or not outer:
        return LoopFunction(fn.function, fn.buffers, trips, _grain(work, trips),
                            writes=frozenset([target]))
    store = Store(target, _target_offset(nest, _zero_reduced(nest, idx)), src)
    return LoopFunction(fn.function, fn.buffers, trips, _grain(work, trips),
                        _offsets_by_buffer([store]), work, variables[outer[0]],
                        frozenset([target]))


def _zero_reduced(nest: ReduceNest, idx: tuple) -> tuple:
    """`idx` with the reduced axes at 0 (the target offset depends on kept axes only)."""
    return tuple(ix.ZERO if d in nest.axes else i for d, i in enumerate(idx))


def _fold_lanes(b, op, lanes: int, lane_slot, t) -> ir.Value:
    """Pairwise, in place: lane l with lane l + h for h = W/2, W/4, ... 1; then lane 0."""
    half = lanes // 2
    while half:
        def step(lane, half=half):
            here, there = lane_slot(lane), lane_slot(b.add(lane, ir.Constant(I64, half)))
            b.store(combine(b, op, b.load(here, typ=t), b.load(there, typ=t)), here)

        counted_loop(b, 0, half, step, f"fold{half}")
        half //= 2
    return b.load(lane_slot(ir.Constant(I64, 0)), typ=t)


def _emit_blocked(module, name, nest: ReduceNest, globals_, aliases=None) -> list:
    """Long rows: partial results per fixed block (in parallel), then one ordered fold."""
    rows, nblocks = math.prod(nest.kept_shape), nest.blocks
    first = _emit_lanes(module, f"{name}.blocks", nest, globals_, (rows, nblocks), aliases)
    return [first, _emit_partials_fold(module, f"{name}.fold", nest, rows, nblocks)]


def _emit_partials_fold(module, name, nest: ReduceNest, rows: int, nblocks: int):
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
    return LoopFunction(fn.function, fn.buffers, rows, 0, writes=frozenset([nest.target]))


def _emit_columns(module, name, nest: ReduceNest, globals_, aliases=None):
    """Innermost axis kept: fold into the target row, vectorising along the kept axes."""
    sizes, classes, variables, idx = _reduce_layout(nest)
    src = nest.source(idx)
    toff = _target_offset(nest, _zero_reduced(nest, idx))
    buffers = _buffers_of([Store(nest.target, toff, src)])
    fn = NestFunction(module, name, buffers, True, aliases)
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
                        _grain(work, outer_sizes[0]) if outer else 0,
                        writes=frozenset([nest.target]))


def _emit_scan(module, name, nest: ReduceNest, globals_, aliases=None):
    """argmax/argmin: the first extreme element in row-major order of the reduced axes."""
    variables = _variables(nest.domain, "i")
    idx = _as_indices(variables)
    src = nest.source(idx)
    toff = _target_offset(nest, _zero_reduced(nest, idx))
    fn = NestFunction(module, name, _buffers_of([Store(nest.target, toff, src)]), True,
                      aliases)
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
    return LoopFunction(fn.function, fn.buffers, kept_sizes[0], 0,
                        writes=frozenset([nest.target]))


def _emit_degenerate(module, name, nest: ReduceNest, globals_, aliases=None):
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
    return emit_map(module, name, MapNest(kept_shape, body), globals_, aliases)
