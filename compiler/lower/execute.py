"""`NativeProgram`: a graph compiled to one native function and run on NumPy arrays.

Same contract as the reference interpreter's `run_graph`: inputs of exactly the graph's
shapes and dtypes, a list of output arrays back. The machine code comes through the
runtime's cache (memory, then disk), so building the same program twice compiles once.

>>> import numpy as np
>>> from tracegrad.compiler.ir_text import parse_graph
>>> g = parse_graph("def f(x0: f32[3]):\\n    v0 = mul(x0, 2.0)\\n    return (v0,)")
>>> NativeProgram(g).run(np.arange(3, dtype=np.float32))
[array([0., 2., 4.], dtype=float32)]

Graphs with an op that has no lowering are rejected (`NotLowerable`, from
`build.can_lower`, which says which node and why), so the caller can run the interpreter
instead (and warn). What lowering takes (`build.py`) is imported only when a program is
lowered, not when it is found stored.
"""

from __future__ import annotations

import ctypes
import time
import warnings

import numpy as np

from ...runtime.buffers import PAGE, empty_behind, is_behind, nbytes, offset_behind
from ..interpret import _checked_input
from ..ir import Graph
from .stored_program import Binding, program_key
from .table import ARENA, CONSTANTS, ENTRY, EXPECTED, INPUTS, OUTPUTS, expected_inputs

# Outputs this large are placed in their pages (`runtime.buffers.empty_behind`): that costs
# a few microseconds a call, less than a loop over a quarter MiB takes.
PLACED_OUTPUT_BYTES = 1 << 18


class NotLowerable(RuntimeError):
    """The graph has a node the native backend cannot run; the message names it."""


class NativeProgram:
    """A graph (or a `Schedule` with a `.graph`) compiled to native code.

    A graph is scheduled (fused) by `compiler/schedule.py` unless `fuse=False` (one
    kernel per node); `kernels` (a list of `plan.Kernel`) overrides both, and
    `memory_plan` (a `compiler.memory_plan.MemoryPlan`) places the stored values. `cache`
    is a runtime `ProgramCache` (default: the process's). `compile_seconds` says how long
    lowering plus LLVM took. `run(*arrays)` runs it (an attribute made by `_runner`).

    A graph lowered the default way is also stored under a key of the graph itself
    (`stored_program.py`): a program found there is not lowered at all, and its LLVM IR
    (`ir`) is made again only if someone asks to see it.
    """

    def __init__(self, graph_or_schedule, *, kernels: list | None = None, cache=None,
                 memory_plan=None, fuse: bool = True):
        graph = graph_or_schedule
        if not isinstance(graph, Graph):
            from .build import kernels_from_schedule, memory_plan_of

            schedule, graph = graph_or_schedule, graph_or_schedule.graph
            if kernels is None:
                kernels = kernels_from_schedule(schedule)
                memory_plan = memory_plan or memory_plan_of(schedule)
        from ...runtime.cache import default_cache

        self.graph = graph
        self.cache = cache or default_cache()
        self._lowering = (kernels, memory_plan, fuse)
        self.lower_seconds = 0.0
        start = time.perf_counter()
        by_graph = kernels is None and memory_plan is None
        key = program_key(graph, fuse, self.cache.engine) if by_graph else None
        binding = self._stored(key) if key else None
        if binding is None:
            from .build import can_lower

            ok, why = can_lower(graph)
            if not ok:
                raise NotLowerable(why)
            binding = self._lower()
            # Stored by graph, it is found by graph: a second entry under the IR's hash
            # would only double the disk writes.
            self.native = self.cache.compile_module(self.ir, [ENTRY], use_disk=not key)
            if key:
                self.cache.keep(key, self.native, binding.to_bytes())
        self.kernel_names = binding.kernel_names
        self._function = self.native.function(ENTRY, ctypes.c_int64, [ctypes.c_void_p])
        self.compile_seconds = time.perf_counter() - start
        self._prepare(binding)

    def _stored(self, key: str) -> Binding | None:
        """The binding stored under `key` (with `self.native` set), or None."""
        found = self.cache.find(key, [ENTRY])
        if found is None:
            return None
        try:
            binding = Binding.from_bytes(found[1])
        except ValueError as error:  # intact file, unreadable binding: lower anew
            warnings.warn(f"tracegrad: ignoring a stored program ({error})", RuntimeWarning,
                          stacklevel=3)
            return None
        self.native = found[0]
        return binding

    def _lower(self) -> Binding:
        """Schedule (unless given), plan and emit the LLVM IR; what the caller binds."""
        from .build import lower

        start = time.perf_counter()
        self.kernels, self.memory_plan, self.plan, emitted, binding = \
            lower(self.graph, *self._lowering)
        self._ir, self.layout = emitted.ir, emitted.layout
        self.lower_seconds = time.perf_counter() - start
        return binding

    @property
    def ir(self) -> str:
        """The program's LLVM IR (made now if the program came from the store)."""
        if not hasattr(self, "_ir"):
            self._lower()
        return self._ir

    def _prepare(self, binding: Binding) -> None:
        self._inputs = [(v.shape, v.dtype.numpy) for v in self.graph.inputs]
        self._expected = expected_inputs(self._inputs)
        self._outputs = binding.outputs
        self._tables = [np.ascontiguousarray(array) for array in binding.tables]
        self._arena_bytes = binding.arena_bytes
        self._states: list = []  # (table, its address, arena): one per concurrent call
        self._results = binding.results
        self.run = self._runner()  # run(*arrays): the graph's outputs (see `_runner`)

    def fresh_outputs(self) -> list:
        """Per graph output: whether `run` always returns a new array no one else holds
        (not an input, a constant, or an array that is another output as well)."""
        slots = [k for kind, k in self._results if kind == "out"]
        return [kind == "out" and slots.count(k) == 1 for kind, k in self._results]

    def _new_state(self):
        """A buffer table with what never moves filled in: the arena, what the inputs must
        be, the large constants (the layout: `program.py`)."""
        from ...runtime.buffers import Arena, data_pointer

        table = np.zeros(CONSTANTS + len(self._tables), dtype=np.uintp)
        arena = Arena(self._arena_bytes)
        table[ARENA] = arena.address
        table[EXPECTED] = data_pointer(self._expected)
        for j, array in enumerate(self._tables):
            table[CONSTANTS + j] = data_pointer(array)
        return table, data_pointer(table), arena

    @property
    def assembly(self) -> str:
        """Host assembly of the program (optimised)."""
        return self.cache.engine.assembly(self.ir)

    @property
    def optimized_ir(self) -> str:
        return self.cache.engine.optimized_ir(self.ir)

    def _runner(self):
        """`run(*arrays)`: the graph's outputs for `arrays` (exact shapes and dtypes, like
        `run_graph`), written out for this program as straight-line Python (loops and
        lookups over inputs and outputs cost microseconds on a call that may take one).

        The table holds the addresses of two tuples, the inputs and the outputs made for
        the call: the program checks each input and reads each array's data pointer
        itself (`program.py`), which saves the ~150 ns an array that testing it and
        writing its address into the table cost in Python. An input it refuses is made
        right (`conform`: C order, the exact dtype object, or an error naming what is
        wrong) and the program called again. Each call owns a state (buffer table and
        arena) while it runs: it takes a free one or makes one, and gives it back.
        ctypes releases the GIL during the native call, so concurrent calls run in
        parallel and never share an arena, with no lock held (`list.pop` is atomic).

        `into`, if given, has per graph output None or an array the caller gives up to
        be that output instead of a new one: C-ordered, of the output's shape and dtype,
        aligned, writeable, no input's memory, and seen by nobody else (the program
        writes it without reading it). It is taken only for an output the program makes
        for this one graph output alone, and for a large one only where a new one would
        be placed (`runtime.buffers.is_behind`)."""
        n = len(self._inputs)
        env = {"empty": np.empty, "copy": np.array, "id": id, "states": self._states,
               "new_state": self._new_state, "call": self._function, "rerun": self._rerun,
               "conform": self._conform, "count": self._wrong_count}
        lines = ["def run(*arrays, into=None):", f"    if len(arrays) != {n}:",
                 "        count(arrays)"]
        streamed = [i for i, (shape, dtype) in enumerate(self._inputs)
                    if nbytes(shape, dtype) >= PAGE]
        placed = [k for k, (shape, dtype) in enumerate(self._outputs)
                  if streamed and nbytes(shape, dtype) >= PLACED_OUTPUT_BYTES]
        if placed:  # see `runtime.buffers`: large outputs go behind the inputs in the page,
            # which needs the inputs' addresses first (a microsecond is nothing here)
            env.update(offset_behind=offset_behind, empty_behind=empty_behind,
                       is_behind=is_behind)
            read = "".join(f"arrays[{i}], " for i in streamed)
            lines += ["    arrays = conform(arrays)", f"    behind = offset_behind(({read}))"]
        # `into` is per graph output; an array made for the call may be given only where
        # it is exactly one graph output (not also a second one, an input or a constant)
        alone = {what: j for j, ((_, what), fresh) in
                 enumerate(zip(self._results, self.fresh_outputs())) if fresh}
        made, given = [], []
        for k, (shape, dtype) in enumerate(self._outputs):
            env[f"O{k}"], env[f"E{k}"] = shape, np.dtype(dtype)
            made.append(f"empty_behind(O{k}, E{k}, behind, {placed.index(k)})" if k in placed
                        else f"empty(O{k}, E{k})")
            if k not in alone:
                given.append(made[-1])
                continue
            test = f"into[{alone[k]}] is not None"
            if k in placed:
                test += f" and is_behind(into[{alone[k]}], behind, {placed.index(k)})"
            given.append(f"into[{alone[k]}] if {test} else {made[-1]}")
        lines += ["    if into is None:", f"        outs = ({''.join(m + ', ' for m in made)})",
                  "    else:", f"        outs = ({''.join(g + ', ' for g in given)})",
                  "    try:", "        state = states.pop()", "    except IndexError:",
                  "        state = new_state()", "    try:", "        table = state[0]",
                  f"        table[{INPUTS}] = id(arrays)", f"        table[{OUTPUTS}] = id(outs)",
                  "        if call(state[1]):", "            arrays = rerun(state, arrays)",
                  "    finally:", "        states.append(state)"]
        results = []
        for j, (kind, what) in enumerate(self._results):
            if kind == "out":
                results.append(f"outs[{what}]")
            elif kind == "in":
                results.append(f"arrays[{what}]")
            else:
                env[f"K{j}"] = what
                results.append(f"copy(K{j}, copy=True)")
        lines.append(f"    return [{', '.join(results)}]")
        exec(compile("\n".join(lines), f"<run of {self.graph.name}>", "exec"), env)  # noqa: S102
        return env["run"]

    def _conform(self, arrays: tuple) -> tuple:
        """`arrays` as the program takes them: each an `np.ndarray` in C order whose dtype
        is NumPy's own object for it; IRError naming an input of the wrong shape or dtype."""
        conformed = []
        for value, array in zip(self.graph.inputs, arrays):
            array = _checked_input(value, array)  # the array itself if it is one
            array = array if array.flags.c_contiguous else array.copy(order="C")
            dtype = np.dtype(value.dtype.numpy)
            conformed.append(array if array.dtype is dtype else array.view(dtype))
        return tuple(conformed)

    def _rerun(self, state, arrays: tuple) -> tuple:
        """Run with the inputs the program refused made right (see `_runner`); those."""
        arrays = self._conform(arrays)
        state[0][INPUTS] = id(arrays)
        refused = self._function(state[1])
        if refused:  # `_conform` and the program's checks disagree: a bug, never ignored
            raise RuntimeError(f"{self.graph.name}: the compiled program refused input "
                               f"{refused - 1} after it was made C-ordered")
        return arrays

    def _wrong_count(self, arrays) -> None:
        from ..ir import IRError

        raise IRError(f"{self.graph.name} takes {len(self._inputs)} inputs, got {len(arrays)}")


def run_native(graph: Graph, *arrays, **options) -> list:
    """Compile (cached) and run `graph` once: `run_graph`'s signature, native speed."""
    return NativeProgram(graph, **options).run(*arrays)
