"""One LLVM module per program, with one entry point: `void program(ptr %table)`.

`table` is an array of pointers the caller fills once per call:

    table[0 .. n_in)            the input arrays
    table[n_in .. n_in+n_out)   the output arrays (the program writes results in place)
    table[n_in+n_out]           the arena (64-byte aligned; temporaries at planned offsets)
    table[n_in+n_out+1 ..)      large constants (small ones are globals in the module)

`program` computes every buffer's address once and calls the kernels in order; each
kernel (`internal`, `noinline`, named like `k3_mul_add_relu` so it can be found in the
assembly) calls its loop nests, directly or through `tracegrad_parallel_for`. So a call
of a compiled program is one foreign call, whatever its size.

>>> from tracegrad.compiler.ir_text import parse_graph
>>> from tracegrad.compiler.lower.plan import plan_program, trivial_kernels
>>> g = parse_graph("def f(x0: f32[8]):\\n    v0 = exp(x0)\\n    return (v0,)")
>>> text = emit_program(plan_program(g, trivial_kernels(g))).ir
>>> "define void @\\"program\\"(ptr %\\"table\\")" in text
True
"""

from __future__ import annotations

from dataclasses import dataclass

import llvmlite.ir as ir

from ...runtime.threads import PARALLEL_FOR
from .expr import Buffer
from .llvm_types import I8, I64, MEMORY, PTR, VOID
from .loops import emit_map, emit_reduce
from .nests import MapNest
from .plan import ProgramPlan

ENTRY = "program"
ALIGNMENT = 64


@dataclass
class Layout:
    """Where each buffer's address comes from (see the module docstring)."""

    inputs: list  # Buffer per table slot
    outputs: list  # Buffer per table slot
    tables: list  # large-constant Buffers per table slot
    offsets: dict  # arena Buffer -> byte offset
    arena_bytes: int

    @property
    def slots(self) -> int:
        return len(self.inputs) + len(self.outputs) + 1 + len(self.tables)


@dataclass
class EmittedProgram:
    ir: str
    layout: Layout
    kernel_names: list
    uses_blas: bool


def emit_program(plan: ProgramPlan, memory_plan=None) -> EmittedProgram:
    """The module's IR text and its buffer table layout."""
    module = ir.Module(name=plan.graph.name)
    globals_: dict[Buffer, ir.GlobalVariable] = {}
    kernels = []
    for k, kernel in enumerate(plan.kernels):
        functions = []
        for n, nest in enumerate(kernel.nests):
            nest_name = f"{kernel.name}.{n}" if len(kernel.nests) > 1 else f"{kernel.name}.loop"
            emit = emit_map if isinstance(nest, MapNest) else emit_reduce
            functions += emit(module, nest_name, nest, globals_)
        kernels.append((kernel.name, functions))
    layout = _layout(plan, kernels, memory_plan)
    entries = [_kernel_function(module, name, functions, layout, globals_)
               for name, functions in kernels if functions]
    _entry(module, entries, layout)
    names = [name for name, functions in kernels if functions]
    uses_blas = any(getattr(g, "name", "").endswith(("gemm64_", "gemm"))
                    for g in module.globals.values() if isinstance(g, ir.Function))
    return EmittedProgram(str(module), layout, names, uses_blas)


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
    offsets, size = plan_arena(lifetimes, memory_plan)
    return Layout(list(plan.inputs), list(plan.outputs.values()), list(tables), offsets, size)


def plan_arena(lifetimes: dict, memory_plan=None) -> tuple:
    """Offsets for the arena buffers: two share memory only if their kernels don't overlap.

    Largest first, each at the lowest 64-aligned offset free during its lifetime. A
    scheduler's `MemoryPlan` (with `offsets` by Value name) is followed where it has one.
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


def _kernel_function(module, name: str, functions: list, layout: Layout, globals_):
    buffers = list(dict.fromkeys(buf for fn in functions for buf in fn.buffers))
    fnty = ir.FunctionType(VOID, [PTR] * len(buffers))
    kernel = ir.Function(module, fnty, name=name)
    kernel.linkage = "internal"
    kernel.attributes.add("noinline")
    disjoint = _disjoint(buffers, layout)
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
    return kernel, buffers


def _disjoint(buffers: list, layout: Layout) -> bool:
    spans = sorted((layout.offsets[b], layout.offsets[b] + b.nbytes) for b in buffers
                   if b.kind == "arena")
    return all(hi <= lo for (_, hi), (lo, _) in zip(spans, spans[1:]))


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
    entry = ir.Function(module, ir.FunctionType(VOID, [PTR]), name=ENTRY)
    table = entry.args[0]
    table.name = "table"
    b = ir.IRBuilder(entry.append_basic_block("entry"))

    def slot(i, name):
        return b.load(b.gep(table, [ir.Constant(I64, i)], inbounds=True, source_etype=PTR),
                      typ=PTR, name=name)

    pointers = {}
    for i, buf in enumerate(layout.inputs + layout.outputs):
        pointers[buf] = slot(i, buf.name)
    arena_slot = len(layout.inputs) + len(layout.outputs)
    arena = slot(arena_slot, "arena") if layout.offsets else None
    for j, buf in enumerate(layout.tables):
        pointers[buf] = slot(arena_slot + 1 + j, buf.name)
    for buf, offset in layout.offsets.items():
        pointers[buf] = b.gep(arena, [ir.Constant(I64, offset)], inbounds=True,
                              source_etype=I8, name=buf.name)
    for kernel, buffers in kernels:
        b.call(kernel, [pointers[buf] for buf in buffers])
    b.ret_void()


__all__ = ["ENTRY", "EmittedProgram", "Layout", "MEMORY", "emit_program", "plan_arena"]
