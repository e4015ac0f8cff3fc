"""A program: one graph, scheduled into kernels with a memory plan, ready to run.

This is the `scheduled` stage of SPEC §4.3. A program runs natively: the LLVM backend
(`compiler/lower/`) compiles the schedule into one entry point, through the runtime's
cache. Where a graph holds something the backend cannot lower, or `native=False`, the
schedule runs on the reference NumPy kernels instead (`run_schedule`), and
`fallback_reason` says why, so the caller can warn.

>>> from tracegrad.compiler.ir_text import parse_graph
>>> import numpy as np
>>> p = Program(parse_graph("def f(x0: f64[2]):\\n    v0 = mul(x0, 3.0)\\n    return (v0,)"))
>>> p.run(np.array([1.0, 2.0]))
[array([3., 6.])]
"""

from __future__ import annotations

import os
from functools import cached_property

from .ir import Graph
from .run_schedule import run_schedule
from .schedule import print_schedule, schedule


def native_by_default() -> bool:
    """`TRACEGRAD_BACKEND=numpy` runs compiled programs on the NumPy kernels."""
    return os.environ.get("TRACEGRAD_BACKEND", "llvm") != "numpy"


class Program:
    """`graph` scheduled and planned; `run(*arrays)` has `run_graph`'s contract.

    The native backend schedules the graph itself, and not at all when it finds the
    program stored (`compiler/lower/stored_program.py`), so `schedule` and `plan` are
    made when first asked for: by the NumPy executor, or to be shown."""

    def __init__(self, graph: Graph, native: bool | None = None, cache: bool = True):
        self.graph = graph
        self.native = None
        self.fallback_reason = None
        if native_by_default() if native is None else native:
            self._compile(cache)

    @cached_property
    def schedule(self):
        return schedule(self.graph)

    @cached_property
    def plan(self):
        from .lower.build import native_memory_plan

        return native_memory_plan(self.schedule)

    def _compile(self, cache: bool) -> None:
        from .lower.execute import NativeProgram, NotLowerable

        program_cache = None
        if not cache:
            from ..runtime.cache import ProgramCache

            program_cache = ProgramCache(enabled=False)
        try:
            self.native = NativeProgram(self.graph, cache=program_cache)
        except NotLowerable as why:
            self.fallback_reason = str(why)

    def fresh_outputs(self) -> list:
        """Per graph output: whether `run` always returns a new array no one else holds."""
        if self.native is None:
            return [False] * len(self.graph.outputs)
        return self.native.fresh_outputs()

    def run(self, *arrays, into=None):
        """The graph's outputs; `into` gives arrays to write outputs into (see
        `NativeProgram`), which the interpreter, making its own, does not need."""
        if self.native is not None:
            return self.native.run(*arrays, into=into)
        return run_schedule(self.schedule, self.plan, *arrays)

    def describe(self) -> str:
        """The kernels and the memory plan, as text (for `tracegrad ir --stage scheduled`)."""
        return f"{print_schedule(self.schedule)}\n{self.plan.report()}"
