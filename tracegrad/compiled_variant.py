"""One compiled variant of a function: its graph(s), how to bind inputs, run, write back.

A variant comes from a trace. If the function returned tensors that require grad and did
not call `backward()` itself (SPEC §4.1, use 1), the trace is extended with the backward:
the gradients of those outputs with respect to every differentiable input are traced
through the same derivative rules, and the joint graph is split into a forward that
saves what the backward needs and a backward that `loss.backward()` runs later.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from . import tracing
from .autograd import grad_mode
from .compiled_backward import attach_backward, spent_backward
from .compiler.ops.residuals import forget
from .compiler.pipeline import optimize
from .compiler.program import Program
from .compiler.remat import partition_with_remat
from .sharing import memory_owner, sharing
from .tensor import Tensor

GUARD_FAILED = object()  # what `Variant.run` returns when a value guard does not hold


def trace_variant(fn, args, kwargs, cache: bool = True):
    """Trace one call (an eager run); returns (trace, eager result, backward info)."""
    trace, result = tracing.trace(fn, args, kwargs)
    trace.stages = {"traced": trace.graph, "joint": trace.graph}
    results = [t for t in tracing.flatten(result) if isinstance(t, Tensor)]
    # an input returned as it is keeps the history it has: a call returns that tensor
    needs_grad = [t._requires_grad and k not in trace.returned_inputs
                  for k, t in enumerate(results)]
    backward = None
    if grad_mode.state.enabled and not trace.saw_backward and not trace.broken \
            and any(needs_grad):
        backward = _trace_backward(trace, [t for t, needs in zip(results, needs_grad) if needs],
                                   cache)
    elif not trace.broken:
        trace.graph, trace.pass_reports = optimize(trace.graph)
        trace.stages["optimized"] = trace.graph
        # The trace is complete: the eager run's intermediate tensors, kept so that their
        # ids stayed unique while it recorded, can go before LLVM needs the memory.
        trace.tracer.keep.clear()
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

    Everything a call needs is worked out here once — where each graph input comes from,
    and which graph outputs are results, write-backs, guard values and saved values — and
    written out as one straight-line Python function, `run(args, kwargs)`: the call's
    result, or GUARD_FAILED (then nothing has been written).
    """

    def __init__(self, index: int, fn, trace, outputs: Outputs, guard, args, kwargs):
        self.index, self.fn, self.trace, self.outputs = index, fn, trace, outputs
        self.graph = trace.graph
        self.guard = guard  # guard(args, kwargs) -> whether this variant describes the call
        self.failure = None  # why the last run was refused
        owners = trace.tracer.grad_owners
        self.grad_owner = [owners.get(id(t)) for t, _ in trace.captured]
        paths = _argument_paths(args, kwargs)
        env: dict = {}
        owners = _written_owners(trace)
        self.views = _argument_views(trace, owners, paths, env)
        self.held_views = _held_views(trace, owners, env)
        inputs = _inputs(self, trace, paths, env)
        self.sources = [_function(e, env) for e, _ in inputs]  # per graph input
        # the tensors a call's gradients flow to are this call's: the arguments, and the
        # tensors bound through them or found by the function
        self.call_tensors = _function("[" + ", ".join(
            _reference(t, f"T{k}", paths, env)
            for k, (t, _) in enumerate(trace.arguments + trace.captured)) + "]", env)
        self.result_count = sum(1 for v in tracing.flatten(trace.outputs)
                                if not tracing.is_scalar(v))
        written = len(trace.writes) + sum(v is not None for _, v in trace.grad_writes)
        self.guards_start = self.result_count + written
        self.saved_start = self.guards_start + len(trace.guards)
        self.run = self._runner(inputs, env, paths)

    def _runner(self, inputs: list, env: dict, paths: dict):
        """`run`, written out for this variant (see the class docstring)."""
        trace = self.trace
        expressions = [expression for expression, _ in inputs]
        fresh = trace.program.fresh_outputs()
        env.update(P=trace.program, refuse=self._refuse, GUARD_FAILED=GUARD_FAILED,
                   guards_hold=self._guards_hold, forget=forget, copyto=np.copyto,
                   wrap=Tensor._wrap, fresh=_fresh, results=self._results, OUT=trace.outputs)
        names = [f"i{k}" for k in range(len(expressions))]
        arrays = f"({''.join(n + ', ' for n in names)})"

        def as_tensor(k: int, dtype) -> str:
            """Output k as a tensor: copied only if it may be an input's or the program's
            own (`_fresh`), which the program knows when it is built."""
            env[f"OD{k}"] = dtype
            array = f"out[{k}]" if fresh[k] else f"fresh(out[{k}], {arrays})"
            return f"wrap({array}, OD{k})"

        lines = ["def run(args, kwargs):"]
        for j, (container, key, observed) in enumerate(trace.hyperparameter_tests):
            env[f"HT{j}"], env[f"HK{j}"] = container, key
            lines += [f"    if (float(HT{j}[HK{j}]) != 0) is not {observed}:",
                      f"        return changed({j})"]
        env["changed"] = self._hyperparameter_changed
        for j, (tensor, present) in enumerate(trace.grad_tests):
            subject = _reference(tensor, f"GT{j}", paths, env)
            lines += [f"    if ({subject}._grad is None) is {present}:",
                      f"        return failed({self._why_grad_changed(present)!r})"]
        for j, (owner, grad) in enumerate(trace.grad_identities):
            held = _reference(grad, f"GI{j}", paths, env)
            lines += [f"    if {_reference(owner, f'GO{j}', paths, env)}._grad is not {held}:",
                      f"        return failed({GRAD_REPLACED!r})"]
        if self.views:
            lines += [f"    if not ({' and '.join(self.views)}):",
                      f"        return failed({VIEWS_CHANGED!r})"]
        if self.held_views:
            lines += [f"    if not ({' and '.join(self.held_views)}):",
                      f"        return failed({VIEW_SPLIT!r})"]
        env["failed"] = self._failed
        # a call refused once its random tensors are drawn puts the generators back, so
        # that the eager run in its place draws what it would have drawn
        rngs = list({id(r.rng): r.rng for r in trace.random_inputs}.values())
        put_back = ""
        if rngs:
            env["RNGS"], env["put_back"] = rngs, _put_back
            lines.append("    drawn = [rng.bit_generator.state for rng in RNGS]")
            put_back = "put_back(RNGS, drawn) or "
        lines.append("    try:")
        lines += [f"        {n} = {e}" for n, e in zip(names, expressions)]
        lines += self._sharing_check(names, env, put_back)
        owners = [_reference(t, f"G{j}", paths, env) for j, (t, _) in enumerate(trace.grad_writes)]
        into = self._recycled_gradients(fresh, env)
        for j in into.values():
            lines += _recycling(j, owners[j])
        given = "".join(f"a{into[k]}, " if k in into else "None, "
                        for k in range(len(self.graph.outputs)))
        lines += [f"        out = P.run({', '.join(names)}{f', into=({given})' if into else ''})",
                  "    except Exception as exc:  # a missing .grad, an index never met...",
                  f"        return {put_back}refuse(exc)"]
        if trace.guards:
            lines += ["    if not guards_hold(out):", f"        return {put_back}GUARD_FAILED"]
        if self.result_count:  # made before the write-back: a result that is an input
            tensors = [  # passed through is copied as it was
                "None" if k in trace.returned_inputs else as_tensor(k, v.dtype)
                for k, v in enumerate(trace.graph.outputs[:self.result_count])]
            lines.append(f"    made = [{', '.join(tensors)}]")
        env["refcount"], env["ndarray"] = sys.getrefcount, np.ndarray
        grad_owners = trace.tracer.grad_owners
        for j, (tensor, _) in enumerate(trace.writes):
            owner = grad_owners.get(id(tensor))
            if owner is None:
                lines.append(f"    w = {_reference(tensor, f'W{j}', paths, env)}")
            else:  # a .grad changed in place: the one its owner has now, as it was read
                lines.append(f"    w = {_reference(owner, f'WO{j}', paths, env)}._grad")
            k = self.result_count + j
            lines += ["    old = w._data", "    forget(old)"]
            copy = f"copyto(old, out[{k}], casting='unsafe')"
            if self._may_take_over(k, tensor, fresh):
                # The tensor takes the program's new array instead of a copy of it when
                # nothing else holds its array: no view of it (a view holds it), no
                # `.numpy()` of it, no other tensor on it (the attribute, `old`, this
                # call's inputs and `refcount`'s argument are the references counted),
                # and it owns its memory. The tensor, its values and its version are what
                # a copy leaves; only the address changes, and nobody holds the old array.
                held = 3 + sum(source is tensor for _, source in inputs)
                lines += [f"    if refcount(old) == {held} and old.base is None:",
                          f"        w._data = out[{k}]",
                          "    else:",
                          f"        {copy}"]
            else:
                lines.append(f"    {copy}")
            lines.append("    w._version[0] += 1")
        position = self.result_count + len(trace.writes)
        for j, (tensor, value) in enumerate(trace.grad_writes):
            if value is None:
                lines.append(f"    {owners[j]}._grad = None")
                continue
            lines.append(f"    {owners[j]}._grad = {as_tensor(position, value.dtype)}")
            position += 1
        for j, (owner, tensor) in enumerate(trace.grad_assignments):
            lines.append(f"    {_reference(owner, f'GAO{j}', paths, env)}._grad = "
                         f"{_reference(tensor, f'GA{j}', paths, env)}")
        for k, tensor in trace.returned_inputs.items():  # the very tensor, written back
            lines.append(f"    made[{k}] = {_reference(tensor, f'R{k}', paths, env)}")
        if self.result_count:
            lines.append("    return results(made, out, args, kwargs)")
        else:  # nothing but Python values (or None) comes back
            lines.append("    return OUT")
        exec(compile("\n".join(lines), f"<run of variant {self.index}>", "exec"), env)  # noqa: S102
        return env["run"]

    def _sharing_check(self, names: list, env: dict, put_back: str) -> list:
        """Lines of `run` that refuse a call whose input arrays share memory otherwise than
        when traced, in a trace that writes in place: the program reads every input before
        it writes, and writes back what eager would have left in each tensor only if
        no tensor it writes shares memory with another it reads in a way the trace did not
        follow (the argument that is now a tensor the function holds itself, a `.grad`
        that is now a tensor it changes); see `sharing.py`."""
        arrays = self.trace.tracer.input_arrays
        shared = [(n, arrays[v]) for n, v in zip(names, self.graph.inputs) if v in arrays]
        if not self.trace.writes or len(shared) < 2:
            return []
        env["sharing"], env["SHARED"] = sharing, sharing([a for _, a in shared])
        test = f"sharing(({''.join(n + ', ' for n, _ in shared)})) != SHARED"
        if env["SHARED"][0] == tuple(range(len(shared))):  # none shared: a set says so in
            env["owner"] = memory_owner  # a third of the time (0.6 us for 8 arrays)
            owners = ", ".join(f"id({n} if {n}.base is None else owner({n}))" for n, _ in shared)
            test = f"len({{{owners}}}) != {len(shared)}"
        return [f"        if {test}:", f"            return {put_back}failed({SHARING_CHANGED!r})"]

    def _recycled_gradients(self, fresh: list, env: dict) -> dict:
        """Output position -> j, for each `.grad` write j whose old gradient's array the
        program may write the new one into (see `_recycling`): a large fresh output, in
        a trace without value guards (a guard that fails after the call must find the
        old gradients as they were), of a tensor whose `.grad` the program does not read."""
        if self.trace.guards:
            return {}
        read = {id(owner) for owner in self.grad_owner if owner is not None}
        into, position = {}, self.result_count + len(self.trace.writes)
        for j, (tensor, value) in enumerate(self.trace.grad_writes):
            if value is None:
                continue
            dtype = np.dtype(value.dtype.numpy)
            if fresh[position] and id(tensor) not in read and \
                    math.prod(value.shape) * dtype.itemsize >= RECYCLED_BYTES:
                env[f"GS{j}"], env[f"GD{j}"] = tuple(value.shape), dtype
                into[position] = j
            position += 1
        return into

    def _may_take_over(self, k: int, tensor, fresh: list) -> bool:
        """Whether output `k`, written back to `tensor`, may become its array: a new
        array of each call that no other output shares, of the tensor's dtype and shape
        (the guards keep those)."""
        value = self.graph.outputs[k]
        data = tensor._data
        return (fresh[k] and np.dtype(value.dtype.numpy) == data.dtype
                and tuple(value.shape) == data.shape and data.flags.c_contiguous)

    def _refuse(self, exc: Exception):
        # nothing is written; tracing anew runs eagerly (and is logged)
        self.failure = f"the compiled program raised {type(exc).__name__}: {exc}"
        return GUARD_FAILED

    def _hyperparameter_changed(self, j: int):
        container, key, observed = self.trace.hyperparameter_tests[j]
        self.failure = (f"hyperparameter {key!r} is {container[key]!r}: the traced update "
                        f"took the branch for {'non-zero' if observed else 'zero'}")
        return GUARD_FAILED

    @staticmethod
    def _why_grad_changed(present: bool) -> str:
        return (f"a tensor's .grad is {'None' if present else 'set'}; the call was traced "
                f"with it {'set' if present else 'None'}, and the function looked (backward "
                f"accumulates into a .grad that is set)")

    def _failed(self, why: str):
        self.failure = why
        return GUARD_FAILED

    def _guards_hold(self, outputs) -> bool:
        for guard, got in zip(self.trace.guards, outputs[self.guards_start:self.saved_start]):
            if _python_value(got, guard.kind) != guard.observed:
                self.failure = (f"{guard.kind}() at {guard.loc} gave "
                                f"{_python_value(got, guard.kind)!r}, traced with "
                                f"{guard.observed!r}")
                return False
        return True

    def _results(self, tensors: list, outputs, args, kwargs):
        saved = outputs[self.saved_start:]
        info = self.outputs
        if info.backward is not None:
            candidates = self.call_tensors(args, kwargs)
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
        tests = [("hyperparameter", f"{key!r} != 0 was {observed}", None)
                 for _, key, observed in self.trace.hyperparameter_tests]
        tests += [("grad", f".grad was {'set' if present else 'None'}", None)
                  for _, present in self.trace.grad_tests]
        return {"signature": self.key, "captured": [path for path, _ in self.reach],
                "values": [(g.kind, g.observed, g.loc) for g in self.trace.guards] + tests,
                "checks": self.guard.source}


VIEWS_CHANGED = ("an argument is a view of another tensor, or at another index, than the "
                 "view the call was traced with, whose base the function changes or reads")
VIEW_SPLIT = ("a view the function holds is no longer a view of the tensor it was traced as a "
              "view of (`.data = ...` on one of them), and the call derives one from the other")
SHARING_CHANGED = ("tensors the function writes in place share memory with tensors it reads "
                   "otherwise than when the call was traced")
GRAD_REPLACED = ("a tensor's .grad is no longer the tensor the function also holds itself, "
                 "which it was when traced")

# Gradients this large are written into the arrays of the gradients they replace when
# nobody else holds those: a training step's memory then stays the same blocks from one
# call to the next, and in cache. (With a new array per call, the old gradients live until
# the write-back, and the step touches twice their memory: the gelu step, 3 x 4 MiB of
# gradients, then took 440 us a call where its program alone takes 305.) Below this size
# a new array costs about what the checks do.
RECYCLED_BYTES = 1 << 16


def _recycling(j: int, owner: str) -> list:
    """Lines of a variant's `run` that set `a{j}` to the array of `owner`'s old gradient if
    the program may write the new one into it, else to None. It may if nobody else can see
    that array: the old `.grad` tensor is held only by its owner's attribute (and the
    local `g` and `refcount`'s argument), its array only by that tensor, and the memory
    only by that array, or by it and the block it is a view of (a placed output,
    `runtime.buffers.empty_behind`; a view of a view has the block as its base too, so
    any other view shows in the block's count). It must also be C-ordered, aligned,
    writeable and of the output's shape and dtype."""
    return [f"        a{j} = None",
            f"        g = {owner}._grad",
            "        if g is not None and refcount(g) == 3:",
            "            a = g._data",
            f"            if refcount(a) == 3 and a.shape == GS{j} and a.dtype == GD{j} \\",
            "                    and a.flags.c_contiguous and a.flags.writeable \\",
            "                    and a.flags.aligned and (a.base is None or \\",
            "                        (type(a.base) is ndarray and refcount(a.base) == 2 \\",
            "                         and a.base.base is None)):",
            f"                a{j} = a",
            "            a = None",
            "        g = None"]


def _argument_views(trace, owners: set, paths: dict, env: dict) -> list:
    """Conditions (expressions for `run`) under which a call's arguments stand where the
    traced ones did, in a trace that writes in place where they share memory with what
    it writes:

    * an argument that was a tensor the function finds itself must be that tensor again;
    * an argument that is a view of a tensor the trace used as well (a slice written in
      place changes its base, `inplace._rebase`) must be a view at the same index, or
      made the same way, link by link down to that tensor. A base nothing else leads to
      is bound through the argument (`paths` gains `args[0]._base[0]`: a slice of
      another tensor changes that one); any other must be the very tensor traced."""
    if not owners:
        return []  # nothing written: each input is read once, whatever it shares
    tracer = trace.tracer
    used = {id(t) for t, _ in trace.arguments + trace.captured}
    conditions: list = []
    for tensor, value in trace.arguments:
        if id(memory_owner(tracer.input_arrays[value])) not in owners:
            continue  # shares no memory with what is written (`_sharing_check` watches)
        expression = paths[id(tensor)]
        if id(tensor) in tracer.held:  # the function's own tensor, passed to it
            conditions.append(f"{expression} is {_constant(tensor, env)}")
        view, links = tensor, []
        for base in tensor._bases():
            links.append((expression, view))
            view, expression = base, f"{expression}._base[0]"
            if id(view) not in used:
                continue
            for link, linked in links:  # down to here: each a view as it was
                index, replay = _constant(linked._base[1], env), _constant(linked._replay, env)
                conditions.append(f"{link}._base is not None and {link}._base[1] == {index} "
                                  f"and {link}._replay == {replay}")
            links = []
            if id(view) in paths or id(view) in tracer.held:  # an argument, or held
                conditions.append(f"{expression} is {_reference(view, None, paths, env)}")
                continue
            paths[id(view)] = expression  # bound through the argument
            conditions.append(f"{expression}._data.shape == {view._data.shape!r} and "
                              f"{expression}.dtype is {_constant(view.dtype, env)} and "
                              f"{expression}._requires_grad is {view._requires_grad} and "
                              f"{expression}._hooks is {_constant(view._hooks, env)}")
    return conditions


def _held_views(trace, owners: set, env: dict) -> list:
    """Conditions (expressions for `run`) under which the views the function holds itself
    (in a closure, a module) are still views of what they were when traced, in a trace
    that writes memory they share: there a view is derived from its base after a write
    to the base (`inplace._refresh_views`), and the base from the view after a write to
    the view (`inplace._rebase`). `.data = ...` on either ends that relation
    (`Tensor._unlink_views`). A view's `_base` is set once, when it is made, so each link
    down the chain must be the very one traced: an identity test, ~10 ns a call."""
    checked, conditions = set(), []
    for view in trace.tracer.held_views:
        if id(memory_owner(view._data)) not in owners:
            continue  # nothing written derives it or from it
        while view._base is not None and id(view) not in checked:
            checked.add(id(view))
            conditions.append(f"{_constant(view, env)}._base is {_constant(view._base, env)}")
            view = view._base[0]
    return conditions


def _written_owners(trace) -> set:
    """The ids of the memory owners of the tensors the trace writes in place (the views a
    call checks are those sharing one: `_argument_views`, `_held_views`)."""
    written = {id(t) for t, _ in trace.writes}
    arrays = trace.tracer.input_arrays
    return {id(memory_owner(arrays[v])) for t, v in trace.arguments + trace.captured
            if id(t) in written}


def _fresh(array, inputs: tuple):
    """`array`, copied if it is an input passed straight through (a result must not alias
    state the next call overwrites), a read-only broadcast view, or a view of another
    array (it may be a result twice over)."""
    if array.base is not None or not array.flags.writeable or any(array is a for a in inputs):
        return np.array(array, copy=True)
    return array


def _argument_paths(args, kwargs) -> dict:
    """id(tensor) -> the expression that reads that tensor from a later call's `args` and
    `kwargs` (`args[0]`, `kwargs['batch'][1]`)."""
    paths = {}

    def visit(x, path):
        if isinstance(x, Tensor):
            paths.setdefault(id(x), path)
        elif isinstance(x, (list, tuple)):
            for i, item in enumerate(x):
                visit(item, f"{path}[{i}]")
        elif isinstance(x, dict):
            for key, item in x.items():
                visit(item, f"{path}[{key!r}]")

    for i, arg in enumerate(args):
        visit(arg, f"args[{i}]")
    for key, arg in kwargs.items():
        visit(arg, f"kwargs[{key!r}]")
    return paths


def _put_back(rngs: list, drawn: list) -> None:
    """Return each generator of a variant's random tensors to its state before the call."""
    for rng, state in zip(rngs, drawn):
        rng.bit_generator.state = state


def _reference(tensor, name: str | None, paths: dict, env: dict) -> str:
    """How a variant's `run` names `tensor`: as this call's argument where the trace got it
    as one (a later call may pass another tensor there), else as itself, `env[name]` (a
    new name if None)."""
    if id(tensor) in paths:
        return paths[id(tensor)]
    return _constant(tensor, env, name)


def _constant(value, env: dict, name: str | None = None) -> str:
    """A name in `env` for `value` in the code of a variant's `run`."""
    name = name or f"_K{len(env)}"
    env[name] = value
    return name


def _function(expression: str, env: dict):
    """`lambda args, kwargs: expression`, its names looked up in `env`."""
    return eval(f"lambda args, kwargs: {expression}", env)


def _inputs(variant, trace, paths: dict, env: dict) -> list:
    """Per graph input, `(expression, tensor)`: the expression that reads its array for a
    call (names it uses are put in `env`), and the tensor whose very array that is (None
    for a `.grad`, a random draw, a hyperparameter)."""
    by_value = {}
    for (tensor, value) in trace.arguments:
        by_value[value] = (f"{paths[id(tensor)]}._data", tensor)
    for k, ((tensor, value), owner) in enumerate(zip(trace.captured, variant.grad_owner)):
        if owner is None:  # (a base of an argument is read through it: `_argument_views`)
            by_value[value] = (f"{_reference(tensor, f'C{k}', paths, env)}._data", tensor)
        else:  # a .grad: read afresh through its owner (None raises: no variant then)
            by_value[value] = (f"{_reference(owner, f'C{k}', paths, env)}._grad._data", None)
    env["asarray"], env["array"] = np.asarray, np.array
    for k, random in enumerate(trace.random_inputs):
        env[f"R{k}"] = random.make
        by_value[random.value] = (f"asarray(R{k}())", None)
    for k, (container, key, value) in enumerate(trace.hyperparameters):
        env[f"H{k}"], env[f"K{k}"], env[f"D{k}"] = container, key, value.dtype.numpy
        by_value[value] = (f"array(H{k}[K{k}], dtype=D{k})", None)
    return [by_value[v] for v in trace.graph.inputs]


def _python_value(array, kind: str):
    value = array.item()  # a one-element array, from the program
    return bool(value) if kind == "bool" else value
