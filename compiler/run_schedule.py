"""Run a schedule kernel by kernel on NumPy, every stored value in one planned arena.

The reference for the scheduled stage, as `interpret.run_graph` is for the graph: each
kernel evaluates its nodes with the op set's NumPy kernels, then writes what it stores
into that value's slice of a single `uint8` arena, and later kernels read it from there.
The arena starts filled with a pattern that reads as nan, so a plan that lets two live
buffers overlap, or a kernel that reads a buffer nobody wrote, gives wrong results
instead of passing by luck. A kernel's writes happen after it has read everything, as in
a fused loop that reads each element before it writes over it (in-place buffers).

>>> import numpy as np
>>> from tracegrad.compiler.ir_text import parse_graph
>>> from tracegrad.compiler.schedule import schedule
>>> from tracegrad.compiler.memory_plan import plan_memory
>>> g = parse_graph('''def f(x0: f64[3]):
...     v0 = exp(x0)
...     v1 = sum(v0, axes=(0,), keepdims=False)
...     return (v1,)''')
>>> s = schedule(g)
>>> run_schedule(s, plan_memory(s), np.zeros(3))
[array(3.)]
"""

from __future__ import annotations

from collections import ChainMap

import numpy as np

from .fuse import VIEWS
from .interpret import _checked_input, _evaluate
from .ir import IRError, Value
from .memory_plan import ALIGN, MemoryPlan
from .schedule import Kernel, Schedule, storage_root

GARBAGE = 0xFF  # all-ones bytes: nan in every float type


def run_schedule(schedule: Schedule, plan: MemoryPlan, *arrays: np.ndarray) -> list[np.ndarray]:
    """The graph's outputs, computed kernel by kernel in the planned arena."""
    graph = schedule.graph
    if len(arrays) != len(graph.inputs):
        raise IRError(f"{graph.name} takes {len(graph.inputs)} inputs, got {len(arrays)}")
    env: dict[Value, np.ndarray] = {v: _checked_input(v, a) for v, a in zip(graph.inputs, arrays)}
    env.update((n.out, n.attrs["value"]) for n in schedule.constants)
    arena = _arena(plan.arena_bytes)
    producers = graph.producers()
    for kernel in schedule.kernels:
        _run_kernel(kernel, env, arena, plan, producers)
    return [np.array(env[v], copy=True) for v in graph.outputs]


def _arena(size: int) -> np.ndarray:
    """`size` bytes starting on an ALIGN boundary, filled with GARBAGE."""
    raw = np.full(size + ALIGN, GARBAGE, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start:start + size]


def _slot(arena: np.ndarray, offset: int, like: np.ndarray, value: Value) -> np.ndarray:
    """`value`'s slice of the arena, laid out like `like` when that is a dense
    permutation of the axes (so that NumPy sums in the same order as `run_graph`)."""
    itemsize = value.dtype.numpy.itemsize
    flat = arena[offset:offset + like.size * itemsize].view(value.dtype.numpy)
    if like.shape != value.shape or like.flags.c_contiguous or not _dense(like, itemsize):
        return flat.reshape(value.shape)
    return np.lib.stride_tricks.as_strided(flat, value.shape, like.strides)


def _dense(array: np.ndarray, itemsize: int) -> bool:
    """Whether `array` fills its memory exactly, in some order of its axes."""
    axes = sorted((a for a in range(array.ndim) if array.shape[a] > 1),
                  key=lambda a: array.strides[a])
    expected = itemsize
    for a in axes:
        if array.strides[a] != expected:
            return False
        expected *= array.shape[a]
    return True


def _run_kernel(kernel: Kernel, env: dict, arena: np.ndarray, plan: MemoryPlan,
                producers: dict) -> None:
    local = ChainMap({}, env)  # the kernel's own values, over everything stored so far
    for node in kernel.nodes:
        local[node.out] = _evaluate(node, local)
    for node in kernel.nodes:  # the kernel's stores, in order: a value in place comes later
        buffer = plan.buffers.get(node.out)
        if buffer is not None:
            memory = arena if buffer.offset is not None else _arena(buffer.size)
            slot = _slot(memory, buffer.offset or 0, np.asarray(local[node.out]), node.out)
            np.copyto(slot, local[node.out])
            env[node.out] = slot
    for node in kernel.nodes:  # what other kernels read through views reads the arena
        if node.op in VIEWS and storage_root(node.out, producers) in env:
            env[node.out] = _evaluate(node, env)
    for value in kernel.outputs:
        if value not in env:
            raise IRError(f"{kernel.name} writes {value.name}, but the plan has no buffer "
                          f"for it")
