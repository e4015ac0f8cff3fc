"""`NativeProgram`: a graph compiled to one native function and run on NumPy arrays.

Same contract as the reference interpreter's `run_graph`: inputs of exactly the graph's
shapes and dtypes, a list of output arrays back. The machine code comes through the
runtime's cache (memory, then disk), so building the same program twice compiles once.

>>> import numpy as np
>>> from tracegrad.compiler.ir_text import parse_graph
>>> g = parse_graph("def f(x0: f32[3]):\\n    v0 = mul(x0, 2.0)\\n    return (v0,)")
>>> NativeProgram(g).run(np.arange(3, dtype=np.float32))
[array([0., 2., 4.], dtype=float32)]

Graphs with an op that has no lowering are rejected up front: `can_lower(graph)` says
which node and why, so the caller can run the interpreter instead (and warn).
"""

from __future__ import annotations

import ctypes
import threading
import time
import warnings

import numpy as np

from ..interpret import _checked_input
from ..ir import Graph, Value
from ..ops import PRIMITIVES
from . import expr, matmul
from .lowering import install, lowering_of
from .plan import Kernel, kernel_name, plan_program, trivial_kernels
from .program import ENTRY, emit_program
from .scalar import supports
from .views import IndexPlan

_build_lock = threading.Lock()  # the expression and index tables are process-wide


class NotLowerable(RuntimeError):
    """The graph has a node the native backend cannot run; the message names it."""


def can_lower(graph: Graph) -> tuple[bool, str]:
    """`(True, "")`, or `(False, why)` naming the first node that has no lowering.

    >>> from tracegrad.compiler.ir_text import parse_graph
    >>> can_lower(parse_graph("def f(x0: i64[2]):\\n    v0 = exp(x0)\\n    return (v0,)"))
    (False, "node 'v0 = exp(x0)': exp has no lowering for i64 operands")
    """
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


def kernels_for(graph: Graph, use_schedule: bool | None = None) -> list:
    """The scheduler's kernels if `compiler/schedule.py` is there, else one per node."""
    if use_schedule is False:
        return trivial_kernels(graph)
    try:
        from ..schedule import schedule
    except ImportError:
        return trivial_kernels(graph)
    try:
        return kernels_from_schedule(schedule(graph))
    except Exception as exc:  # noqa: BLE001 - a scheduler bug must not stop the program
        warnings.warn(f"tracegrad: the scheduler failed ({type(exc).__name__}: {exc}); "
                      f"compiling one kernel per node", RuntimeWarning, stacklevel=3)
        return trivial_kernels(graph)


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


class NativeProgram:
    """A graph (or a `Schedule` with a `.graph`) compiled to native code.

    `kernels` overrides the schedule (a list of `plan.Kernel`); `cache` is a runtime
    `ProgramCache` (default: the process's). `compile_seconds` says how long it took.
    """

    def __init__(self, graph_or_schedule, *, kernels: list | None = None, cache=None,
                 memory_plan=None):
        install()
        graph = graph_or_schedule
        if not isinstance(graph, Graph):
            schedule, graph = graph_or_schedule, graph_or_schedule.graph
            kernels = kernels if kernels is not None else kernels_from_schedule(schedule)
            memory_plan = memory_plan or getattr(schedule, "memory_plan", None)
        ok, why = can_lower(graph)
        if not ok:
            raise NotLowerable(why)
        self.graph = graph
        start = time.perf_counter()
        with _build_lock:
            try:
                self.kernels = kernels if kernels is not None else kernels_for(graph)
                self.plan = plan_program(graph, self.kernels)
                emitted = emit_program(self.plan, memory_plan)
            finally:
                expr.clear_interned()
        self.ir, self.layout, self.kernel_names = emitted.ir, emitted.layout, emitted.kernel_names
        self.lower_seconds = time.perf_counter() - start
        if emitted.uses_blas:
            matmul.find_blas()  # its symbols must be known before the code is linked
        from ...runtime.cache import default_cache

        self.cache = cache or default_cache()
        self.native = self.cache.compile_module(self.ir, [ENTRY])
        self._function = self.native.function(ENTRY, None, [ctypes.c_void_p])
        self.compile_seconds = time.perf_counter() - start
        self._prepare()

    def _prepare(self) -> None:
        from ...runtime.buffers import ArenaPool, data_pointer

        layout = self.layout
        self._arenas = ArenaPool(layout.arena_bytes)
        self._tables = [np.ascontiguousarray(b.data) for b in layout.tables]
        self._table_pointers = [data_pointer(a) for a in self._tables]
        n_in = len(layout.inputs)
        self._output_slots = {buf: n_in + j for j, buf in enumerate(layout.outputs)}
        self._slots = layout.slots
        self._arena_slot = n_in + len(layout.outputs)
        produced = {buf.name: buf for buf in layout.outputs}
        self._results = []  # per graph output: ("out", Buffer) | ("in", i) | ("const", array)
        positions = {v: i for i, v in enumerate(self.graph.inputs)}
        for v in self.graph.outputs:
            if v in self.plan.outputs:
                self._results.append(("out", self.plan.outputs[v]))
            elif v in positions:
                self._results.append(("in", positions[v]))
            else:
                value = self.plan.constants[v]
                array = value.data if isinstance(value, expr.Buffer) else \
                    np.full(v.shape, value, dtype=v.dtype.numpy)
                self._results.append(("const", array))
        del produced

    @property
    def assembly(self) -> str:
        """Host assembly of the program (optimised)."""
        return self.cache.engine.assembly(self.ir)

    @property
    def optimized_ir(self) -> str:
        return self.cache.engine.optimized_ir(self.ir)

    def run(self, *arrays) -> list:
        """The graph's outputs for `arrays` (exact shapes and dtypes, like `run_graph`)."""
        graph = self.graph
        if len(arrays) != len(graph.inputs):
            from ..ir import IRError

            raise IRError(f"{graph.name} takes {len(graph.inputs)} inputs, got {len(arrays)}")
        inputs = [np.ascontiguousarray(_checked_input(v, a)) for v, a in zip(graph.inputs, arrays)]
        table = np.zeros(max(self._slots, 1), dtype=np.uintp)
        for i, a in enumerate(inputs):
            table[i] = a.ctypes.data
        outputs = {}
        for buf, slot in self._output_slots.items():
            out = np.empty(buf.shape, dtype=buf.dtype.numpy)
            outputs[buf] = out
            table[slot] = out.ctypes.data
        for j, pointer in enumerate(self._table_pointers):
            table[self._arena_slot + 1 + j] = pointer
        with self._arenas.borrow() as arena:
            table[self._arena_slot] = arena.address
            self._function(table.ctypes.data)
        results = []
        for kind, what in self._results:
            if kind == "out":
                results.append(outputs[what])
            elif kind == "in":
                results.append(inputs[what])
            else:
                results.append(np.array(what, copy=True))
        return results

    __call__ = run


def run_native(graph: Graph, *arrays, **options) -> list:
    """Compile (cached) and run `graph` once: `run_graph`'s signature, native speed."""
    return NativeProgram(graph, **options).run(*arrays)
