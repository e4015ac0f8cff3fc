"""One entry point per program, `i64 program(ptr %table)`, in a module of its own.

`table` is an array of pointers the caller fills once per call (its slots: `table.py`).

`program` first checks that each input is an `np.ndarray` of its planned dtype and shape
in C order: if one is not, it returns its position plus one and runs nothing (the caller
makes it so and calls again). Otherwise it returns 0 once it has run the program.

`program` computes every buffer's address once and calls the kernels in order; each
kernel (a module of its own, `noinline`, named like `k3_mul_add_relu` so it can be found
in the assembly) calls its loop nests, directly or through `tracegrad_parallel_for`. So a
call of a compiled program is one foreign call, whatever its size.

>>> from tracegrad.compiler.ir_text import parse_graph
>>> from tracegrad.compiler.lower.plan import plan_program, trivial_kernels
>>> g = parse_graph("def f(x0: f32[8]):\\n    v0 = exp(x0)\\n    return (v0,)")
>>> text = emit_program(plan_program(g, trivial_kernels(g))).ir
>>> "define i64 @\\"program\\"(ptr %\\"table\\")" in text
True
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from llvmlite import ir

from ...runtime.object_layout import C_CONTIGUOUS, WORD, object_layout
from ...runtime.threads import PARALLEL_FOR
from .expr import Buffer
from .llvm_types import I1, I8, I32, I64, MEMORY, PTR, VOID, translate_only
from .loops import emit_map
from .matmul import BlasThreads
from .nests import MapNest
from .plan import ProgramPlan
from .reduce_loops import emit_reduce
from .row_groups import group_rows
from .table import ARENA, CONSTANTS, ENTRY, EXPECTED, INPUTS, OUTPUTS
from .transpose import transposers

ALIGNMENT = 64


@dataclass
class Layout:
    """Where each buffer's address comes from (see the module docstring)."""

    inputs: list  # Buffer per table slot
    outputs: list  # Buffer per table slot
    tables: list  # large-constant Buffers per table slot
    offsets: dict  # arena Buffer -> byte offset
    arena_bytes: int
    in_place: dict = field(default_factory=dict)  # Buffer -> the Buffer it overwrites


@dataclass
class EmittedProgram:
    ir: str  # the entry point's module, then one module per kernel
    layout: Layout
    kernel_names: list
    uses_blas: bool


def emit_program(plan: ProgramPlan, memory_plan=None) -> EmittedProgram:
    """The IR text of the program's modules, and its buffer table layout.

    Each kernel is a module of its own, after the entry point's module, so that LLVM can
    compile a large program on several cores in groups of about the same size (the
    engine forms them, `runtime/engine.py`)."""
    entry_module = ir.Module(name=plan.graph.name)
    kernels = [(kernel.name, *_emit_kernel(plan, kernel, {})) for kernel in plan.kernels]
    layout = _layout(plan, [(name, functions) for name, functions, _ in kernels], memory_plan)
    aliased = set()
    for k, (name, functions, _) in enumerate(kernels):
        # An output written over an input of its loop: emitted anew with one pointer for
        # both, which LLVM sees is read and written at the same index, so the loop still
        # vectorises (two pointers to the same memory made it check at run time, find
        # them equal and take the scalar loop).
        buffers = {buf for fn in functions for buf in fn.buffers}
        if any(layout.in_place.get(buf) in buffers for buf in buffers):  # the writer's
            kernels[k] = (name, *_emit_kernel(plan, plan.kernels[k], layout.in_place))
            aliased.add(k)
    entries = [_kernel_function(module, entry_module, name, functions, layout,
                                rows=k not in aliased)
               for k, (name, functions, module) in enumerate(kernels) if functions]
    _entry(entry_module, entries, layout)
    modules = [entry_module] + [module for _, functions, module in kernels if functions]
    support = transposers(modules)  # defined once, called by kernels (`matmul.py`)
    modules += [support] if support is not None else []
    names = [name for name, functions, _ in kernels if functions]
    uses_blas = any(getattr(g, "name", "").endswith(("gemm64_", "gemm"))
                    for module in modules for g in module.globals.values()
                    if isinstance(g, ir.Function))
    return EmittedProgram("\n".join(map(str, modules)), layout, names, uses_blas)


def _emit_kernel(plan: ProgramPlan, kernel, aliases: dict) -> tuple:
    """A kernel's loop nests as functions in a module of its own; a buffer in `aliases`
    is accessed through the pointer of the buffer it maps to."""
    module = ir.Module(name=f"{plan.graph.name}.{kernel.name}")
    globals_: dict[Buffer, ir.GlobalVariable] = {}
    functions = []
    for n, nest in enumerate(kernel.nests):
        nest_name = f"{kernel.name}.{n}" if len(kernel.nests) > 1 else f"{kernel.name}.loop"
        emit = emit_map if isinstance(nest, MapNest) else emit_reduce
        functions += emit(module, nest_name, nest, globals_, aliases=aliases)
    return functions, module


def _layout(plan: ProgramPlan, kernels: list, memory_plan) -> Layout:
    """Table slots for the caller's buffers, and arena offsets for the rest."""
    lifetimes: dict[Buffer, list] = {}
    tables: dict[Buffer, None] = {}
    for k, (_, functions) in enumerate(kernels):
        for fn in functions:
            for buf in fn.buffers:
                if buf.kind == "arena":
                    span = lifetimes.setdefault(buf, [k, k])
                    span[1] = k
                elif buf.kind == "table":
                    tables.setdefault(buf, None)
    planned, rest, in_place = _planned_offsets(lifetimes, memory_plan, kernels)
    base = -(-getattr(memory_plan, "arena_bytes", 0) // ALIGNMENT) * ALIGNMENT if planned else 0
    offsets, size = plan_arena(rest)
    offsets = {buf: base + off for buf, off in offsets.items()}
    offsets.update(planned)
    total = max([base + size] + [off + buf.nbytes for buf, off in planned.items()])
    in_place = {buf: donor for buf, donor in in_place.items()
                if offsets.get(buf) == offsets.get(donor)}
    return Layout(list(plan.inputs), list(plan.outputs.values()), list(tables), offsets, total,
                  in_place)


def _planned_offsets(lifetimes: dict, memory_plan, kernels: list) -> tuple:
    """The scheduler's offsets (`compiler/memory_plan.py`) for the values it planned, and
    the buffers left to `plan_arena` (our scratch, and values it does not store), and the
    in-place pairs. A pair is honoured only where our loops make it safe
    (`_in_place_safe`)."""
    if memory_plan is None:
        return {}, lifetimes, {}
    planned, rest, in_place = {}, {}, {}
    by_value = {buf.value: buf for buf in lifetimes if buf.value is not None}
    for buf, span in lifetimes.items():
        entry = memory_plan.buffers.get(buf.value) if buf.value is not None else None
        ok = entry is not None and entry.offset is not None and entry.size >= buf.nbytes
        donor = memory_plan.inplace.get(buf.value) if ok else None
        if donor is not None:
            if _in_place_safe(buf, by_value.get(donor), kernels[span[0]][1]):
                in_place[buf] = by_value[donor]
            else:
                ok = False
        if ok:
            planned[buf] = entry.offset
        else:
            rest[buf] = span
    return planned, rest, in_place


def _in_place_safe(buf: Buffer, donor: Buffer | None, functions: list) -> bool:
    """Writing `buf` over `donor` is safe when one map loop writes `buf` and touches both
    at one and the same index (each element is read before it is overwritten, and by
    nobody else: a transposed read of the donor would see overwritten data), and the
    kernel's other loops, if any, only touch the donor before it (a matmul's product)."""
    if donor is None:
        return False
    touching = [i for i, fn in enumerate(functions) if buf in fn.buffers or donor in fn.buffers]
    last = functions[touching[-1]] if touching else None
    if last is None or last.offsets is None or buf not in last.offsets:
        return False
    if any(buf in functions[i].buffers for i in touching[:-1]):
        return False
    return len(last.offsets.get(buf, set()) | last.offsets.get(donor, set())) == 1


def plan_arena(lifetimes: dict) -> tuple:
    """Offsets for the arena buffers: two share memory only if their kernels don't overlap.

    Largest first, each at the lowest 64-aligned offset free during its lifetime.
    """
    placed: list = []  # (offset, end, first, last)
    offsets = {}
    for buf, (first, last) in sorted(lifetimes.items(), key=lambda kv: -kv[0].nbytes):
        size = -(-max(buf.nbytes, 1) // ALIGNMENT) * ALIGNMENT
        offset = 0
        for lo, hi, f, la in sorted(placed):
            if la < first or f > last:
                continue  # not alive at the same time
            if offset + size <= lo:
                break
            offset = max(offset, hi)
        placed.append((offset, offset + size, first, last))
        offsets[buf] = offset
    total = max((hi for _, hi, _, _ in placed), default=0)
    return offsets, total


def _kernel_function(module, entry_module, name: str, functions: list, layout: Layout,
                     rows: bool = True):
    """The kernel's function in `module`, and its declaration in `entry_module`, which
    the entry point calls. `rows`: its loops may be grouped by rows (`row_groups.py`);
    not where a loop writes in place (that grouping assumes every buffer separate)."""
    buffers = list(dict.fromkeys(buf for fn in functions for buf in fn.buffers))
    fnty = ir.FunctionType(VOID, [PTR] * len(buffers))
    kernel = ir.Function(module, fnty, name=name)
    kernel.attributes.add("noinline")
    disjoint = _disjoint(buffers, layout)
    if not disjoint:  # two buffers share memory: the loops may not assume separate memory
        for fn in functions:
            for arg in fn.function.args:
                arg.attributes.discard("noalias")
    elif rows:
        functions = group_rows(module, name, functions)
    for arg, buf in zip(kernel.args, buffers):
        arg.name = buf.name
        if disjoint:
            arg.add_attribute("noalias")
        if buf.kind == "arena":
            arg.attributes.align = ALIGNMENT
    b = ir.IRBuilder(kernel.append_basic_block("entry"))
    pointers = dict(zip(buffers, kernel.args))
    for fn in functions:
        args = [pointers[buf] for buf in fn.buffers]
        if fn.grain:
            _parallel_call(module, b, fn, args)
        else:
            b.call(fn.function, args + [ir.Constant(I64, 0), ir.Constant(I64, fn.trips)])
    b.ret_void()
    largest_product = max((fn.largest_product for fn in functions), default=0)
    return ir.Function(entry_module, fnty, name=name), buffers, largest_product


def _disjoint(buffers: list, layout: Layout) -> bool:
    spans = sorted((layout.offsets[b], layout.offsets[b] + b.nbytes) for b in buffers
                   if b.kind == "arena")
    return all(hi <= lo for (_, hi), (lo, _) in itertools.pairwise(spans))


def _parallel_call(module, b: ir.IRBuilder, fn, args: list) -> None:
    """`tracegrad_parallel_for(body, ctx, trips, grain)` with the pointers in `ctx`."""
    pfor = module.globals.get(PARALLEL_FOR)
    if pfor is None:
        pfor = ir.Function(module, ir.FunctionType(VOID, [PTR, PTR, I64, I64]), PARALLEL_FOR)
    body = ir.Function(module, ir.FunctionType(VOID, [PTR, I64, I64]),
                       name=f"{fn.function.name}.body")
    body.linkage = "internal"
    ctx, begin, end = body.args
    bb = ir.IRBuilder(body.append_basic_block("entry"))
    loaded = [bb.load(bb.gep(ctx, [ir.Constant(I64, i)], inbounds=True, source_etype=PTR),
                      typ=PTR) for i in range(len(args))]
    bb.call(fn.function, loaded + [begin, end])
    bb.ret_void()
    slots = b.alloca(PTR, size=ir.Constant(I64, max(len(args), 1)))
    for i, arg in enumerate(args):
        b.store(arg, b.gep(slots, [ir.Constant(I64, i)], inbounds=True, source_etype=PTR))
    b.call(pfor, [body, slots, ir.Constant(I64, fn.trips), ir.Constant(I64, fn.grain)])


def _entry(module, kernels: list, layout: Layout) -> None:
    entry = ir.Function(module, ir.FunctionType(I64, [PTR]), name=ENTRY)
    # Straight-line loads and calls, like the input checker's loop over a few words per
    # input: O3 made neither faster (the small MLP step: 59.6 us either way) but took 11
    # ms of the entry module's 19 to compile.
    translate_only(entry)
    table = entry.args[0]
    table.name = "table"
    b = ir.IRBuilder(entry.append_basic_block("entry"))
    refused = b.call(_input_checker(module), [table], name="refused")
    with b.if_then(b.icmp_unsigned("!=", refused, ir.Constant(I64, 0)), likely=False):
        b.ret(refused)
    objects = object_layout()
    pointers = {}
    for tuple_slot, buffers in ((INPUTS, layout.inputs), (OUTPUTS, layout.outputs)):
        arrays = _word(b, table, tuple_slot * WORD)
        for i, buf in enumerate(buffers):
            array = _word(b, arrays, objects.tuple_items + i * WORD, f"{buf.name}.object")
            pointers[buf] = _word(b, array, objects.data, buf.name)
    arena = _word(b, table, ARENA * WORD, "arena") if layout.offsets else None
    for j, buf in enumerate(layout.tables):
        pointers[buf] = _word(b, table, (CONSTANTS + j) * WORD, buf.name)
    for buf, offset in layout.offsets.items():
        pointers[buf] = b.gep(arena, [ir.Constant(I64, offset)], inbounds=True,
                              source_etype=I8, name=buf.name)
    blas_threads = BlasThreads(b)
    for kernel, buffers, largest_product in kernels:
        blas_threads.before_kernel(largest_product)
        b.call(kernel, [pointers[buf] for buf in buffers])
    blas_threads.finish()
    b.ret(ir.Constant(I64, 0))


def _word(b: ir.IRBuilder, base, offset, name: str = "", typ=PTR):
    """The `typ` at byte `offset` (an int or an i64 value) from `base`."""
    offset = ir.Constant(I64, offset) if isinstance(offset, int) else offset
    return b.load(b.gep(base, [offset], inbounds=True, source_etype=I8), typ=typ, name=name)


def _input_checker(module) -> ir.Function:
    """`i64 check_inputs(ptr table)`: 0 if every input is an `np.ndarray` of the dtype and
    shape `table[EXPECTED]` gives for it (`expected_inputs`), in C order; else its position
    plus one. One loop over that description, the same in every program: unrolled for each
    input, these tests took LLVM 15 ms more to compile the small MLP step. Each test
    reads only fields the previous one showed are there (an array's, then `ndim`
    dimensions)."""
    objects = object_layout()
    fn = ir.Function(module, ir.FunctionType(I64, [PTR]), name="check_inputs")
    fn.linkage = "internal"
    translate_only(fn)  # (see `_entry`)
    table = fn.args[0]
    blocks = {name: fn.append_basic_block(name) for name in
              ("start", "input", "array", "fields", "dimension", "size", "next", "refused",
               "accepted")}
    b = ir.IRBuilder(blocks["start"])
    arrays = _word(b, table, INPUTS * WORD, "inputs")
    expected = _word(b, table, EXPECTED * WORD, "expected")

    def expect(index):  # the description's word at `index`
        index = ir.Constant(I64, index) if isinstance(index, int) else index
        return b.load(b.gep(expected, [index], inbounds=True, source_etype=I64), typ=I64)

    count, array_type = expect(0), expect(1)
    b.branch(blocks["input"])

    b.position_at_end(blocks["input"])  # input i, described from word `at` on
    i, at = b.phi(I64, "i"), b.phi(I64, "at")
    i.add_incoming(ir.Constant(I64, 0), blocks["start"])
    at.add_incoming(ir.Constant(I64, 2), blocks["start"])
    b.cbranch(b.icmp_unsigned("==", i, count), blocks["accepted"], blocks["array"])

    b.position_at_end(blocks["array"])
    items = b.gep(arrays, [ir.Constant(I64, objects.tuple_items)], inbounds=True,
                  source_etype=I8)
    array = b.load(b.gep(items, [i], inbounds=True, source_etype=PTR), typ=PTR, name="array")
    is_array = b.icmp_unsigned("==", _word(b, array, objects.type, typ=I64), array_type)
    b.cbranch(is_array, blocks["fields"], blocks["refused"])

    b.position_at_end(blocks["fields"])
    dtype, ndim = expect(at), expect(b.add(at, ir.Constant(I64, 1)))
    flags = _word(b, array, objects.flags, typ=I32)
    planned = _all(b, [
        b.icmp_unsigned("==", _word(b, array, objects.dtype, typ=I64), dtype),
        b.icmp_unsigned("==", b.sext(_word(b, array, objects.ndim, typ=I32), I64), ndim),
        b.icmp_unsigned("!=", b.and_(flags, ir.Constant(I32, C_CONTIGUOUS)),
                        ir.Constant(I32, 0))])
    shape = _word(b, array, objects.shape, "shape")
    b.cbranch(planned, blocks["dimension"], blocks["refused"])

    b.position_at_end(blocks["dimension"])  # dimension d of input i
    d = b.phi(I64, "d")
    d.add_incoming(ir.Constant(I64, 0), blocks["fields"])
    b.cbranch(b.icmp_unsigned("==", d, ndim), blocks["next"], blocks["size"])

    b.position_at_end(blocks["size"])
    size = b.load(b.gep(shape, [d], inbounds=True, source_etype=I64), typ=I64)
    wanted = expect(b.add(b.add(at, ir.Constant(I64, 2)), d))
    d.add_incoming(b.add(d, ir.Constant(I64, 1)), blocks["size"])
    b.cbranch(b.icmp_unsigned("==", size, wanted), blocks["dimension"], blocks["refused"])

    b.position_at_end(blocks["next"])
    i.add_incoming(b.add(i, ir.Constant(I64, 1)), blocks["next"])
    at.add_incoming(b.add(b.add(at, ir.Constant(I64, 2)), ndim), blocks["next"])
    b.branch(blocks["input"])

    b.position_at_end(blocks["refused"])
    b.ret(b.add(i, ir.Constant(I64, 1)))
    b.position_at_end(blocks["accepted"])
    b.ret(ir.Constant(I64, 0))
    return fn


def _all(b: ir.IRBuilder, conditions: list):
    result = ir.Constant(I1, 1)
    for condition in conditions:
        result = b.and_(result, condition)
    return result


__all__ = ["ENTRY", "MEMORY", "EmittedProgram", "Layout", "emit_program", "plan_arena"]
