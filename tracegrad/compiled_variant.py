"""One compiled variant of a function: its graph(s), how to bind inputs, run, write back.

A variant comes from a trace. If the function returned tensors that require grad and did
not call `backward()` itself (SPEC §4.1, use 1), the trace is extended with the backward:
the gradients of those outputs with respect to every differentiable input are traced
through the same derivative rules, and the joint graph is split into a forward that
saves what the backward needs and a backward that `loss.backward()` runs later.
"""

from __future__ import annotations

import numpy as np

from . import tracing
from .autograd import grad_mode
from .compiled_backward import attach_backward, spent_backward
from .compiler.ops.dtypes import from_numpy
from .compiler.ops.residuals import forget
from .compiler.pipeline import optimize
from .compiler.program import Program
from .compiler.remat import partition_with_remat
from .tensor import Tensor

GUARD_FAILED = object()  # what `Variant.run` returns when a value guard does not hold


def trace_variant(fn, args, kwargs, cache: bool = True):
    """Trace one call (an eager run); returns (trace, eager result, backward info)."""
    trace, result = tracing.trace(fn, args, kwargs)
    trace.stages = {"traced": trace.graph, "joint": trace.graph}
    results = [t for t in tracing.flatten(result) if isinstance(t, Tensor)]
    needs_grad = [t._requires_grad for t in results]
    backward = None
    if grad_mode.state.enabled and not trace.saw_backward and not trace.broken \
            and any(needs_grad):
        backward = _trace_backward(trace, [t for t in results if t._requires_grad], cache)
    elif not trace.broken:
        trace.graph, trace.pass_reports = optimize(trace.graph)
        trace.stages["optimized"] = trace.graph
    if not trace.broken:
        trace.program = Program(trace.graph, cache=cache)
    return trace, result, Outputs(needs_grad, [t.grad_fn.name() if t.grad_fn else None
                                               for t in results], backward)


class Outputs:
    """How a variant's results carry gradients: a compiled backward, or none."""

    def __init__(self, needs_grad: list, grad_names: list, backward):
        self.needs_grad = needs_grad
        self.grad_names = grad_names
        self.backward = backward  # a Backward, or None


class Backward:
    def __init__(self, partition, positions: list, grad_present: list):
        self.partition = partition
        self.positions = positions  # which of (arguments + captured) gradients flow to
        self.grad_present = grad_present  # per such tensor: whether a gradient exists


def _trace_backward(trace, outputs: list, cache: bool) -> Backward:
    """Extend `trace` with the gradients of `outputs`; split the joint graph."""
    from .autograd import grad as autograd_grad

    tracer = trace.tracer
    candidates = [t for t, _ in trace.arguments + trace.captured]
    positions = [i for i, t in enumerate(candidates) if t._requires_grad]
    differentiable = [candidates[i] for i in positions]
    forward_outputs = list(tracer.builder.outputs)
    cotangents, cotangent_values = [], []
    for i, out in enumerate(outputs):
        value = tracer.builder.add_input(out._data.shape, out.dtype, name=f"grad_out{i}")
        cotangent = Tensor._wrap(np.ones_like(out._data), out.dtype)
        tracer._bind(cotangent, value)
        cotangents.append(cotangent)
        cotangent_values.append(value)
    previous, tracing.state.tracer = tracing.state.tracer, tracer
    try:
        grads = autograd_grad(outputs, differentiable, cotangents, retain_graph=True,
                              allow_unused=True)
    finally:
        tracing.state.tracer = previous
    grad_values = [tracer.value_of(g) for g in grads if g is not None]
    tracer.builder.set_outputs(forward_outputs + grad_values)
    joint = tracer.builder.build()
    # forward and backward are optimised together, then split
    optimized, trace.pass_reports = optimize(joint)
    partition = partition_with_remat(optimized, cotangent_values, len(forward_outputs))
    partition.program = Program(partition.backward, cache=cache)
    trace.graph = partition.forward
    trace.stages["joint"] = joint
    trace.stages["optimized"] = optimized
    return Backward(partition, positions, [g is not None for g in grads])


class Variant:
    """A traced call, ready to run on later calls that pass its guards.

    Everything a call needs is worked out here once: where each graph input comes from,
    and which graph outputs are results, write-backs, guard values and saved values.
    """

    def __init__(self, index: int, fn, trace, outputs: Outputs, guard, args, kwargs):
        self.index, self.fn, self.trace, self.outputs = index, fn, trace, outputs
        self.graph = trace.graph
        self.guard = guard  # guard(args, kwargs) -> whether this variant describes the call
        self.failure = None  # why the last run was refused
        owners = trace.tracer.grad_owners
        self.grad_owner = [owners.get(id(t)) for t, _ in trace.captured]
        getters = _argument_getters(args, kwargs)
        self.argument_getters = [getters[id(t)] for t, _ in trace.arguments]
        self.sources = _input_sources(self, trace)
        self.result_count = sum(1 for v in tracing.flatten(trace.outputs)
                                if not tracing.is_scalar(v))
        written = len(trace.writes) + sum(v is not None for _, v in trace.grad_writes)
        self.guards_start = self.result_count + written
        self.saved_start = self.guards_start + len(trace.guards)
        fresh = trace.program.fresh_outputs()
        grads = iter(range(self.result_count + len(trace.writes), self.guards_start))
        # per .grad the step sets: (tensor, dtype, output position, whether it is fresh)
        self.grad_targets = [(t, None, None, False) if v is None else
                             (t, v.dtype, k, fresh[k]) for t, v in trace.grad_writes
                             for k in ([None] if v is None else [next(grads)])]

    def run(self, args, kwargs):
        """The call's result, or GUARD_FAILED (then nothing has been written)."""
        try:
            arrays = [source(args, kwargs) for source in self.sources]
            outputs = self.trace.program.run(*arrays)
        except Exception as exc:  # noqa: BLE001 - a missing .grad, or an index the traced
            # path never met: nothing is written; tracing anew runs eagerly (and is logged)
            self.failure = f"the compiled program raised {type(exc).__name__}: {exc}"
            return GUARD_FAILED
        guards = self.trace.guards
        if guards:
            for guard, got in zip(guards, outputs[self.guards_start:self.saved_start]):
                if _python_value(got, guard.kind) != guard.observed:
                    self.failure = (f"{guard.kind}() at {guard.loc} gave "
                                    f"{_python_value(got, guard.kind)!r}, traced with "
                                    f"{guard.observed!r}")
                    return GUARD_FAILED
        inputs = {id(a) for a in arrays}
        self._write_back(outputs, inputs)
        if not self.result_count:  # nothing but Python values (or None) comes back
            return self.trace.outputs
        return self._results(outputs[:self.result_count], outputs[self.saved_start:], inputs,
                             args, kwargs)

    def _write_back(self, outputs, inputs) -> None:
        for (tensor, _), array in zip(self.trace.writes, outputs[self.result_count:]):
            forget(tensor._data)
            np.copyto(tensor._data, array, casting="unsafe")
            tensor._version[0] += 1
        for tensor, dtype, k, fresh in self.grad_targets:
            if dtype is None:
                tensor._grad = None
            else:
                array = outputs[k]
                tensor._grad = Tensor._wrap(array if fresh else _fresh(array, inputs), dtype)

    def _results(self, arrays, saved, inputs, args, kwargs):
        tensors = [Tensor._wrap(_fresh(a, inputs), from_numpy(a.dtype)) for a in arrays]
        info = self.outputs
        if info.backward is not None:
            candidates = [get(args, kwargs) for get in self.argument_getters]
            candidates += [t for t, _ in self.trace.captured]
            attach_backward([t for t, needs in zip(tensors, info.needs_grad) if needs],
                            info.backward, saved,
                            [candidates[i] for i in info.backward.positions])
        else:
            for t, needs, name in zip(tensors, info.needs_grad, info.grad_names):
                if needs:
                    spent_backward(t, name)
        pending = iter(tensors)
        return tracing.map_values(self.trace.outputs, lambda _: next(pending))

    def describe_guards(self) -> dict:
        return {"signature": self.key, "captured": [path for path, _ in self.reach],
                "values": [(g.kind, g.observed, g.loc) for g in self.trace.guards],
                "checks": self.guard.source}


def _fresh(array, input_ids: set):
    """`array`, copied if it is an input passed straight through (a result must not alias
    state the next call overwrites), a read-only broadcast view, or a view of another
    array (it may be a result twice over)."""
    if array.base is not None or id(array) in input_ids or not array.flags.writeable:
        return np.array(array, copy=True)
    return array


def _argument_getters(args, kwargs) -> dict:
    """id(tensor) -> a function reading that tensor from a later call's (args, kwargs)."""
    getters = {}

    def visit(x, path):
        if isinstance(x, Tensor):
            getters.setdefault(id(x), _getter(path))
        elif isinstance(x, (list, tuple)):
            for i, item in enumerate(x):
                visit(item, path + (i,))
        elif isinstance(x, dict):
            for key, item in x.items():
                visit(item, path + (key,))

    for i, arg in enumerate(args):
        visit(arg, (0, i))
    for key, arg in kwargs.items():
        visit(arg, (1, key))
    return getters


def _getter(path):
    def get(args, kwargs):
        x = (args, kwargs)
        for key in path:
            x = x[key]
        return x

    return get


def _input_sources(variant, trace) -> list:
    """Per graph input, a function (args, kwargs) -> its array for this call."""
    by_value = {}
    for get, (_, value) in zip(variant.argument_getters, trace.arguments):
        by_value[value] = lambda a, k, get=get: get(a, k)._data
    for (tensor, value), owner in zip(trace.captured, variant.grad_owner):
        if owner is None:
            by_value[value] = lambda a, k, t=tensor: t._data
        else:  # a .grad: read afresh through its owner (None raises: no variant then)
            by_value[value] = lambda a, k, o=owner: o._grad._data
    for random in trace.random_inputs:
        by_value[random.value] = lambda a, k, make=random.make: np.asarray(make())
    for container, key, value in trace.hyperparameters:
        by_value[value] = (lambda a, k, c=container, key=key, d=value.dtype.numpy:
                           np.array(c[key], dtype=d))
    return [by_value[v] for v in trace.graph.inputs]


def _python_value(array, kind: str):
    value = np.asarray(array).reshape(()).item()
    return bool(value) if kind == "bool" else value
