"""Lowering a graph: whether it can be (`can_lower`), its kernels (`kernels_for`), and the
LLVM IR of its program with how the caller binds to it (`lower`).

`execute.NativeProgram` imports this only when it lowers: a program found in the disk
cache is run without it, and a first call that finds one then loads none of the code
generator (llvmlite.ir, the emitters: ~15 ms of imports).

>>> from tracegrad.compiler.ir_text import parse_graph
>>> can_lower(parse_graph("def f(x0: i64[2]):\\n    v0 = exp(x0)\\n    return (v0,)"))
(False, "node 'v0 = exp(x0)': exp has no lowering for i64 operands")
"""

from __future__ import annotations

import threading
import warnings

import numpy as np

from ..ir import Graph, Value
from ..ops import PRIMITIVES
from . import expr
from .blas import find_blas
from .lowering import install, lowering_of
from .plan import Kernel, kernel_name, plan_program, trivial_kernels
from .program import emit_program
from .scalar import supports
from .stored_program import Binding
from .views import IndexPlan

install()  # each primitive's `lowering` slot, for those who look
_build_lock = threading.Lock()  # the expression and index tables are process-wide


def can_lower(graph: Graph) -> tuple[bool, str]:
    """`(True, "")`, or `(False, why)` naming the first node that has no lowering."""
    for node in graph.nodes:
        why = _why_not(node)
        if why:
            where = f" at {node.loc}" if node.loc else ""
            return False, f"node '{node!r}'{where}: {why}"
    return True, ""


def _why_not(node) -> str:
    if node.op == "constant":
        return ""
    if node.op not in PRIMITIVES or lowering_of(node.op) is None:
        return f"{node.op} has no lowering yet"
    prim = PRIMITIVES[node.op]
    tensors = [x for x in node.inputs if isinstance(x, Value)]
    if prim.kind == "elementwise":
        from .expr import operand_dtype

        dtype = operand_dtype(node)
        if not supports(node.op, dtype.is_floating_point):
            return f"{node.op} has no lowering for {_short(dtype)} operands"
    if "index" in node.attrs:
        try:
            shape = node.attrs.get("shape", tensors[0].shape if tensors else ())
            IndexPlan(tuple(shape) if node.op == "scatter_add" else tensors[0].shape,
                      node.attrs["index"])
        except (TypeError, ValueError, IndexError) as exc:
            return f"its index {node.attrs['index']!r} is not supported ({exc})"
    return ""


def _short(dtype) -> str:
    from ..ir import SHORT_NAMES

    return SHORT_NAMES[dtype]


def kernels_for(graph: Graph, use_schedule: bool = True) -> tuple[list, object]:
    """`(kernels, memory_plan)`: the scheduler's fused kernels and its memory plan when
    `compiler/schedule.py` can schedule the graph, else one kernel per node and None."""
    if not use_schedule:
        return trivial_kernels(graph), None
    try:
        from ..schedule import schedule
    except ImportError:
        return trivial_kernels(graph), None
    try:
        fused = schedule(graph)
        return kernels_from_schedule(fused), native_memory_plan(fused)
    except Exception as exc:  # noqa: BLE001 - a scheduler bug must not stop the program
        warnings.warn(f"tracegrad: the scheduler failed ({type(exc).__name__}: {exc}); "
                      f"compiling one kernel per node", RuntimeWarning, stacklevel=3)
        return trivial_kernels(graph), None


def kernels_from_schedule(schedule) -> list:
    """Our `Kernel`s from anything with `.kernels` whose items have `.nodes` (and
    optionally `.name` and `.outputs`)."""
    kernels = []
    for i, k in enumerate(schedule.kernels):
        nodes = list(k.nodes)
        name = getattr(k, "name", None) or kernel_name(i, nodes)
        kernels.append(Kernel(_identifier(name, i, nodes), nodes,
                              list(getattr(k, "outputs", []) or [])))
    return kernels


def _identifier(name: str, i: int, nodes: list) -> str:
    clean = "".join(c if c.isalnum() or c == "_" else "_" for c in str(name))
    return clean if clean and not clean[0].isdigit() else kernel_name(i, nodes)


def native_memory_plan(schedule):
    """The memory plan a native program runs on. Its outputs (new parameters, gradients)
    get buffers of their own: they outlive the call, so keeping them in the arena would
    only pin arena space to the end."""
    from ..memory_plan import plan_memory

    return plan_memory(schedule, outputs_in_arena=False)


def memory_plan_of(schedule):
    """`native_memory_plan(schedule)`, or None where it cannot be made."""
    try:
        return native_memory_plan(schedule)
    except Exception:  # noqa: BLE001 - without a plan our own planner places everything
        return None


def lower(graph: Graph, kernels: list | None, memory_plan, fuse: bool) -> tuple:
    """`(kernels, memory_plan, plan, emitted, binding)`: the graph scheduled (unless
    `kernels` are given), planned and emitted as LLVM IR, and how the caller's arrays meet
    the program (`Binding`)."""
    with _build_lock:
        try:
            if kernels is None:
                kernels, planned = kernels_for(graph, fuse)
                memory_plan = memory_plan or planned
            plan = plan_program(graph, kernels)
            emitted = emit_program(plan, memory_plan)
        finally:
            expr.clear_interned()
    if emitted.uses_blas:
        find_blas()  # its symbols must be known before the code is linked
    return kernels, memory_plan, plan, emitted, _binding(graph, plan, emitted)


def _binding(graph: Graph, plan, emitted) -> Binding:
    """How the caller's arrays meet the emitted program (see `Binding`)."""
    layout = emitted.layout
    outputs = [(buf.shape, np.dtype(buf.dtype.numpy).name) for buf in layout.outputs]
    positions = {v: i for i, v in enumerate(graph.inputs)}
    produced = {buf: k for k, buf in enumerate(layout.outputs)}
    results = []  # per graph output: ("out", k) | ("in", i) | ("const", array)
    for v in graph.outputs:
        if v in plan.outputs:
            results.append(("out", produced[plan.outputs[v]]))
        elif v in positions:
            results.append(("in", positions[v]))
        else:
            value = plan.constants[v]
            array = value.data if isinstance(value, expr.Buffer) else \
                np.full(v.shape, value, dtype=v.dtype.numpy)
            results.append(("const", array))
    return Binding(layout.arena_bytes, outputs, [b.data for b in layout.tables],
                   results, emitted.kernel_names, emitted.uses_blas)
