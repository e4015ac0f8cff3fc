"""A program: one graph, scheduled into kernels with a memory plan, ready to run.

This is the `scheduled` stage of SPEC §4.3. `run` executes the schedule kernel by kernel
on the planned arena with the reference NumPy kernels (so every compiled result keeps
being checked against eager); the LLVM backend runs the same schedule natively.

>>> from tracegrad.compiler.ir_text import parse_graph
>>> import numpy as np
>>> p = Program(parse_graph("def f(x0: f64[2]):\\n    v0 = mul(x0, 3.0)\\n    return (v0,)"))
>>> p.run(np.array([1.0, 2.0]))
[array([3., 6.])]
"""

from __future__ import annotations

from .ir import Graph
from .memory_plan import plan_memory
from .run_schedule import run_schedule
from .schedule import print_schedule, schedule


class Program:
    """`graph` scheduled and planned; `run(*arrays)` has `run_graph`'s contract."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.schedule = schedule(graph)
        # Outputs (new parameters, gradients) get buffers of their own: they outlive the
        # call, so keeping them in the arena would only pin arena space to the end.
        self.plan = plan_memory(self.schedule, outputs_in_arena=False)

    def run(self, *arrays):
        return run_schedule(self.schedule, self.plan, *arrays)

    def describe(self) -> str:
        """The kernels and the memory plan, as text (for `tracegrad ir --stage scheduled`)."""
        return f"{print_schedule(self.schedule)}\n{self.plan.report()}"
