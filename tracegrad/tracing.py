"""Tracing: record the primitives that an eager run executes, as an IR graph.

A trace *is* an eager run: tensors carry their real values and every operation computes
as usual, while the active `Tracer` notes each primitive application in a
`GraphBuilder`. Tensors the function did not make (its arguments, parameters found in
closures, modules and optimizers, gradients, optimizer state) become graph inputs;
tensors it made from data (`tensor`, `zeros`, ...) become constants, and random ones
become per-call random inputs. In-place writes rebind a tensor to a new value, and the
tensors that end up changed become outputs that are written back on every call.

What cannot be recorded (a NumPy detour through `.numpy()`, a tensor converted to a
Python list) *breaks* the trace: the eager run carries on, and the reason is kept so the
function can fall back to eager mode. Reading a tensor's value into Python (`bool(t)`,
`t.item()`) records a *value guard* instead: the graph exposes that value, and a call on
which it differs is not trusted.

>>> import tracegrad as torch
>>> from tracegrad.tracing import trace
>>> x = torch.ones(3)
>>> t, _ = trace(lambda x: (x * 2).sum(), (x,))
>>> [node.op for node in t.graph.nodes]
['mul', 'sum']
"""

from __future__ import annotations

import functools
import inspect
import keyword
from dataclasses import dataclass, field

import numpy as np

from .compiler.ir import GraphBuilder
from .errors import user_frame
from .reachable import reachable_tensors
from .sharing import unfollowed
from .tensor import Tensor
from .trace_state import state


def active():
    """The tracer recording on this thread, or None."""
    return state.tracer


@dataclass
class ValueGuard:
    """A tensor's value that Python read during the trace (`bool(t)`, `t.item()`)."""

    value: object  # the IR value whose content decided
    observed: object  # what Python saw
    kind: str  # "bool", "item", ...
    loc: str


@dataclass
class RandomInput:
    """A random tensor made inside the function: regenerated on every call."""

    value: object
    make: object  # () -> numpy array, drawing from `rng`
    rng: object  # the NumPy generator it draws from (put back if a call is refused)


@dataclass
class Trace:
    """What a traced call produced: the graph and how to bind and write back."""

    graph: object
    captured: list  # (tensor, IR input value) for tensors found by the function
    random_inputs: list  # RandomInput, in drawing order
    writes: list  # (tensor, IR value): tensors changed in place, their final value
    grad_writes: list  # (tensor, IR value or None): `.grad` set by the function
    guards: list  # ValueGuard
    hyperparameters: list  # (container, key, IR input value)
    outputs: object  # the returned structure, tensors replaced by their IR values
    broken: str | None = None  # why the trace is unusable, if it is
    saw_backward: bool = False
    arguments: list = field(default_factory=list)  # (tensor, IR input value) per argument
    tracer: object = None  # the Tracer, to extend the trace (with a backward)
    stages: dict = field(default_factory=dict)  # stage name -> graph, for `tracegrad ir`
    pass_reports: list = field(default_factory=list)  # what each optimisation pass did
    program: object = None  # the graph scheduled and planned (compiler.program.Program)
    # (container, key, whether container[key] != 0): branches an update rule took on a
    # hyperparameter, checked in Python before each call (`Tracer.hyperparameter_nonzero`)
    hyperparameter_tests: list = field(default_factory=list)
    # (tensor, whether it had a .grad): what the function saw of the .grad a tensor came
    # with, checked in Python before each call (`Tracer.observe_grad`)
    grad_tests: list = field(default_factory=list)
    # (owner, tensor): `owner.grad` was `tensor`, which the function also reaches itself
    grad_identities: list = field(default_factory=list)
    # (owner, tensor): the function set `owner.grad` to `tensor`, an input of its own
    grad_assignments: list = field(default_factory=list)
    # result position (among the tensors returned) -> the input tensor returned as it is
    # (`x.add_(1); return x`): a call returns that very tensor, as eager mode does
    returned_inputs: dict = field(default_factory=dict)


@dataclass
class Tracer:
    """Records one eager run; see the module docstring."""

    name: str
    builder: GraphBuilder = field(default=None)
    values: dict = field(default_factory=dict)  # id(tensor) -> IR value
    arrays: dict = field(default_factory=dict)  # id(tensor._data) -> IR value
    keep: dict = field(default_factory=dict)  # id(tensor) -> tensor (ids stay unique)
    made: set = field(default_factory=set)  # ids of tensors made inside from data
    captured: list = field(default_factory=list)
    grads_before: dict = field(default_factory=dict)  # id(tensor) -> its .grad at capture
    grad_owners: dict = field(default_factory=dict)  # id(grad tensor) -> tensor it is .grad of
    random_inputs: list = field(default_factory=list)
    guards: list = field(default_factory=list)
    hyperparameters: list = field(default_factory=list)
    hyperparameter_tests: list = field(default_factory=list)
    grad_tests: list = field(default_factory=list)
    grads_set: set = field(default_factory=set)  # ids of tensors whose .grad the function set
    grads_only: list = field(default_factory=list)  # tensors only their .grad was set of
    reachable: set = field(default_factory=set)  # ids of the tensors the function can reach
    held: set = field(default_factory=set)  # ids of those it finds itself, and their bases
    held_views: list = field(default_factory=list)  # the tensors it finds that are views
    grad_identities: list = field(default_factory=list)  # (owner, its .grad), see note_grad_of
    broken: str | None = None
    saw_backward: bool = False
    # IR input value -> the array of the tensor it was bound to, when bound: which inputs
    # shared memory when traced (a later call must find them sharing alike)
    input_arrays: dict = field(default_factory=dict)
    # id(input tensor) -> its grad_fn when bound: the autograd history it brought, which a
    # compiled call can neither run backward through nor extend (`note_backward`, `finish`)
    histories: dict = field(default_factory=dict)

    def __post_init__(self):
        self.builder = GraphBuilder(self.name)
        self.restore = []  # (tensor, data copy, grad) of each captured tensor, for undo

    def add_argument(self, tensor: Tensor, name: str):
        """An explicit argument of the traced function: a named graph input."""
        value = self.builder.add_input(tensor._data.shape, tensor.dtype, name=name)
        self.grads_before[id(tensor)] = tensor._grad
        self.restore.append((tensor, tensor._data.copy(), tensor._grad))
        self._bind_input(tensor, value)
        return value

    # --- the hooks the library calls while tracing ---
    def record(self, prim, inputs, attrs, result) -> None:
        """`result = prim(*inputs, **attrs)` just ran eagerly."""
        if self.broken:
            return
        args = [self.value_of(x) for x in inputs]
        value = self.builder.add_node(prim.name, args, dict(attrs), loc=_user_location())
        self._bind(result, value)

    def rebind(self, target: Tensor, result: Tensor) -> None:
        """`target` now holds `result`'s value (an in-place write)."""
        if not self.broken:
            self._bind(target, self.value_of(result))

    def note_made(self, tensor: Tensor) -> None:
        """`tensor` was made inside the function: a constant, unless it wraps the memory
        of a recorded value (a `detach()`, a node's saved output): then it is that value."""
        if self.broken:
            return
        alias = self.arrays.get(id(tensor._data))
        if alias is not None:
            self._bind(tensor, alias)
        else:
            self.made.add(id(tensor))
            self.keep[id(tensor)] = tensor

    def note_random(self, tensor: Tensor, make, rng) -> None:
        """`tensor` was drawn at random inside the function: redrawn on every call."""
        if not self.broken:
            value = self.builder.add_input(tensor._data.shape, tensor.dtype)
            self.random_inputs.append(RandomInput(value, make, rng))
            self._bind(tensor, value)

    def hyperparameter(self, container, key, dtype):
        """`container[key]`, a Python number such as a learning rate, as a 0-d tensor that
        is a graph input: a new value on a later call is used, not baked in."""
        t = Tensor._wrap(np.array(container[key], dtype=dtype.numpy), dtype)
        if not self.broken:
            self.made.discard(id(t))
            value = self.builder.add_input((), dtype)
            self.hyperparameters.append((container, key, value))
            self._bind(t, value)
        return t

    def hyperparameter_nonzero(self, tensor: Tensor) -> bool:
        """`tensor != 0` for a branch of an update rule (`if momentum != 0:`). For a
        hyperparameter the test is made on the Python number and kept as a guard on it,
        checked before each call (a momentum switched on later traces anew): as a value
        guard it would be one more graph output, read back on every call. An update rule
        runs once per parameter: the same test is kept once."""
        value = self.values.get(id(tensor))
        for container, key, input_value in self.hyperparameters:
            if input_value is value:
                observed = float(container[key]) != 0
                test = (container, key, observed)
                if not any(c is container and k == key and o is observed
                           for c, k, o in self.hyperparameter_tests):
                    self.hyperparameter_tests.append(test)
                return observed
        return bool(tensor != 0)

    def guard(self, tensor: Tensor, observed, kind: str) -> None:
        """Python read `tensor`'s value: later calls must see the same to be trusted."""
        if not self.broken:
            self.guards.append(ValueGuard(self.value_of(tensor), observed, kind,
                                          _user_location()))

    def observe_grad(self, tensor: Tensor) -> None:
        """The function looked at whether `tensor` has a `.grad` (backward about to
        accumulate into it, an optimizer skipping parameters without one). While that is
        still the `.grad` the tensor came with, what the function did depends on it: a
        later call must come with a `.grad` too, or without one, as this one did."""
        key = id(tensor)
        if key in self.values and key not in self.grads_before:
            return  # computed by the function (`retain_grad`): its .grad is the function's
        if key in self.grads_set or key in self.made or \
                tensor._grad is not self.grads_before.get(key, tensor._grad) or \
                any(t is tensor for t, _ in self.grad_tests):
            return  # the function's own .grad, or already noted
        self.keep[key] = tensor
        self.grad_tests.append((tensor, tensor._grad is not None))

    def note_grad_set(self, tensor: Tensor) -> None:
        """The function set `tensor.grad`: what it sees of it from now on is its own, and
        later calls set it too, whether the function uses the tensor otherwise or not
        (`zero_grad()` on a parameter the loss does not reach)."""
        key = id(tensor)
        if key not in self.grads_before and key not in self.values:
            self.grads_before[key] = tensor._grad
            self.keep[key] = tensor
            self.grads_only.append(tensor)
        self.grads_set.add(key)

    def note_grad_of(self, owner: Tensor, grad: Tensor) -> None:
        """`grad` was read as `owner.grad`: if it becomes an input, bind it through
        `owner` on each call (a new `.grad` object each step is then no surprise). But
        where the function can also reach that tensor itself (a closure holding an old
        `.grad`), both are one tensor only while `owner.grad` is it: a later call must
        find it so (`grad_identities`), and it stays bound as itself."""
        if id(owner) in self.grads_set:
            return  # the function set it: what it is later is the function's own doing
        if id(grad) in self.reachable:
            if not any(o is owner and g is grad for o, g in self.grad_identities):
                self.keep[id(owner)], self.keep[id(grad)] = owner, grad
                self.grad_identities.append((owner, grad))
            return
        self.grad_owners.setdefault(id(grad), owner)

    def is_constant(self, tensor: Tensor) -> bool:
        """Whether `tensor` was made inside the function from data (so may be baked in)."""
        return id(tensor) in self.made and id(tensor) not in self.values

    def note_backward(self, nodes, targets: set) -> None:
        """Backward runs the autograd `nodes` (`targets` only to read the gradient that
        reaches them): break the trace if one is history an input brought from before the
        call. That history (a slice of a leaf, a product) is eager work outside the
        function; recorded, it would be baked in, and a later call on another tensor would
        send its gradients to the tensors of the traced call."""
        self.saw_backward = True
        brought = {id(node) for node in self.histories.values() if node is not None}
        if any(id(node) in brought for node in nodes if node not in targets):
            self.break_graph("backward() runs into the autograd history of a tensor the "
                             "function was given (made before the call, not a leaf)")

    def break_graph(self, reason: str) -> None:
        if not self.broken:
            self.broken = f"{reason} at {_user_location()}"

    # --- values ---
    def value_of(self, x):
        """The IR value standing for `x` (a tensor or a Python scalar)."""
        if not isinstance(x, Tensor):
            return x.item() if isinstance(x, np.generic) else x
        value = self.values.get(id(x))
        if value is not None:
            return value
        if id(x) in self.made:
            value = self.builder.add_constant(np.array(x._data, copy=True))
        else:
            value = self.builder.add_input(x._data.shape, x.dtype)
            self.captured.append((x, value))
            self.grads_before.setdefault(id(x), x._grad)  # unless the function set it
            self.restore.append((x, x._data.copy(), x._grad))
            self._bind_input(x, value)
            return value
        self._bind(x, value)
        return value

    def _bind_input(self, tensor: Tensor, value) -> None:
        self.input_arrays[value] = tensor._data
        self.histories[id(tensor)] = tensor.grad_fn
        self._bind(tensor, value)

    def _bind(self, tensor: Tensor, value) -> None:
        self.values[id(tensor)] = value
        self.arrays[id(tensor._data)] = value
        self.keep[id(tensor)] = tensor


def _user_location() -> str | None:
    frame = user_frame()
    if frame is None:
        return None
    return f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno}"


def trace(fn, args: tuple, kwargs: dict | None = None, name: str | None = None):
    """Run `fn(*args, **kwargs)` eagerly while recording it; returns `(Trace, result)`.

    If `fn` raises, every tensor the trace had seen gets its value and `.grad` back, and so
    does the `.grad` of every tensor `fn` can reach (`optimizer.zero_grad()` drops them
    before the trace sees the parameters).
    """
    kwargs = kwargs or {}
    tracer = Tracer(_identifier(name or getattr(fn, "__name__", "traced")))
    arguments = [(t, tracer.add_argument(t, path))
                 for path, t in named_arguments(fn, args, kwargs)]
    grads = [(t, t._grad) for _, t in reachable_tensors(fn)]
    tracer.reachable = {id(t) for t, _ in grads} | {id(t) for t, _ in arguments}
    tracer.held = _held(t for t, _ in grads)
    tracer.held_views = [t for t, _ in grads if t._base is not None]
    previous, state.tracer = state.tracer, tracer
    try:
        result = fn(*args, **kwargs)
    except BaseException:
        state.tracer = previous
        undo(tracer)
        for tensor, grad in grads:
            tensor._grad = grad
        raise
    state.tracer = previous
    return finish(tracer, arguments, result), result


def _held(tensors) -> set:
    """The ids of `tensors` and of every tensor one of them is a view of."""
    return {id(t) for tensor in tensors for t in (tensor, *tensor._bases())}


def _identifier(name: str) -> str:
    """A graph name (an identifier): `<lambda>` becomes `lambda`."""
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in name).strip("_")
    if not cleaned or cleaned[0].isdigit() or keyword.iskeyword(cleaned):
        return f"fn_{cleaned}"
    return cleaned


def undo(tracer: Tracer) -> None:
    """Put back the value and `.grad` of every tensor the tracer saw the function use."""
    for tensor, data, grad in reversed(tracer.restore):
        if tensor._data.shape == data.shape:
            np.copyto(tensor._data, data)
        tensor._grad = grad


def finish(tracer: Tracer, arguments: list, result) -> Trace:
    """The graph and bookkeeping of a completed trace."""
    outputs = map_tensors(result, tracer.value_of)
    odd = [x for x in flatten(outputs) if not is_scalar(x) and not hasattr(x, "shape")]
    odd += [x for x in flatten(outputs) if isinstance(x, np.ndarray)]
    if odd:
        tracer.break_graph(f"the function returns a {type(odd[0]).__name__}, which a graph "
                           f"cannot produce")
    seen = arguments + tracer.captured
    writes = [] if tracer.broken else \
        [(t, tracer.values[id(t)]) for t, v in seen if tracer.values[id(t)] is not v]
    # A view written along with a tensor it is a view of gets its values through that
    # one's memory: written back as well, it would be written twice, and cannot be where
    # it is read-only (`w.expand(4, 3)` of a `w` the function scales).
    written = {id(t) for t, _ in writes}
    writes = [(t, v) for t, v in writes if not any(id(b) in written for b in t._bases())]
    if writes:
        _check_sharing(tracer, arguments, seen, writes)
        _check_histories(tracer, arguments, writes)
    if tracer.broken:
        return Trace(None, [], [], [], [], [], [], None, tracer.broken,
                     tracer.saw_backward, arguments, tracer)
    seen_ids = {id(t) for t, _ in seen}
    candidates = [t for t, _ in seen] + [t for t in tracer.grads_only if id(t) not in seen_ids]
    changed = [t for t in candidates
               if t._grad is not tracer.grads_before[id(t)] or id(t) in tracer.grads_set]
    # a .grad that is now a tensor the function was given or found stays that very tensor
    grad_assignments = [(t, t._grad) for t in changed if id(t._grad) in seen_ids]
    grad_writes = [(t, None if t._grad is None else tracer.value_of(t._grad))
                   for t in changed if id(t._grad) not in seen_ids]
    results = [v for v in flatten(outputs) if not is_scalar(v)]
    extra = [v for _, v in writes] + [v for _, v in grad_writes if v is not None]
    tracer.builder.set_outputs(results + extra + [g.value for g in tracer.guards])
    return Trace(tracer.builder.build(), tracer.captured,
                 tracer.random_inputs, writes, grad_writes, tracer.guards,
                 tracer.hyperparameters, outputs, tracer.broken, tracer.saw_backward,
                 arguments, tracer, hyperparameter_tests=tracer.hyperparameter_tests,
                 grad_tests=tracer.grad_tests, grad_identities=tracer.grad_identities,
                 grad_assignments=grad_assignments,
                 returned_inputs=returned_inputs(result, [t for t, _ in seen]))


def returned_inputs(result, inputs: list) -> dict:
    """Position (among the tensors in `result`) -> the tensor of `inputs` returned there."""
    by_id = {id(t): t for t in inputs}
    tensors = [x for x in flatten(result) if isinstance(x, Tensor)]
    return {k: by_id[id(t)] for k, t in enumerate(tensors) if id(t) in by_id}


def _check_sharing(tracer: Tracer, arguments: list, seen: list, writes: list) -> None:
    """Break the trace if two of its inputs overlap in memory in a way it did not follow,
    one of them written in place (see `sharing.py`)."""
    pair = unfollowed([t for t, _ in seen], [tracer.input_arrays[v] for _, v in seen],
                      {id(t) for t, _ in writes})
    if pair is not None:
        a, b = (_described(t, arguments) for t in pair)
        tracer.broken = (f"{a} and {b} share memory, and neither is a view of the other "
                         f"(tensors made with from_numpy, .data or .detach() on one array?): "
                         f"an in-place write to one would not show in the other")


def _check_histories(tracer: Tracer, arguments: list, writes: list) -> None:
    """Break the trace if an in-place write gave a tensor new autograd history (`x.mul_(2)`
    on a tensor that requires grad, `buf.copy_(w * 2)`): a compiled call writes the values
    back but cannot give the tensor the history eager mode does, and a backward through
    it afterwards would miss the write."""
    for tensor, _ in writes:
        if tensor.grad_fn is not tracer.histories[id(tensor)]:
            tracer.broken = (f"the function writes in place to {_described(tensor, arguments)} "
                             f"where autograd records it: a compiled call could not give it "
                             f"that history")
            return


def _described(tensor: Tensor, arguments: list) -> str:
    """`tensor` as a message names it: the argument it is, or its shape."""
    name = next((v.name for t, v in arguments if t is tensor), None)
    return f"argument '{name}'" if name else \
        f"a tensor of shape {list(tensor.shape)} the function reaches"


def is_scalar(x) -> bool:
    return isinstance(x, (int, float, bool, str, type(None)))


def named_arguments(fn, args: tuple, kwargs: dict) -> list:
    """(name, tensor) for every tensor among the arguments, named after the parameters."""
    if not args and not kwargs:
        return []
    try:
        bound = _signature(fn).bind(*args, **kwargs).arguments
    except (TypeError, ValueError):  # no signature to read: number the arguments
        bound = {f"arg{i}": a for i, a in enumerate(args)} | kwargs
    found, seen = [], set()
    for name, value in bound.items():
        for path, tensor in tensor_leaves(value, name):
            if id(tensor) not in seen:  # the same tensor twice is one input
                seen.add(id(tensor))
                found.append((path, tensor))
    return found


@functools.lru_cache(maxsize=1024)
def _signature(fn):
    return inspect.signature(fn)


def tensor_leaves(structure, path: str):
    """(path, tensor) for every tensor in nested tuples, lists and dicts."""
    if isinstance(structure, Tensor):
        yield path, structure
    elif isinstance(structure, (tuple, list)):
        for i, item in enumerate(structure):
            yield from tensor_leaves(item, f"{path}_{i}")
    elif isinstance(structure, dict):
        for key, item in structure.items():
            yield from tensor_leaves(item, f"{path}_{key}")


def map_tensors(structure, fn):
    """`structure` with every tensor replaced by `fn(tensor)`."""
    if isinstance(structure, Tensor):
        return fn(structure)
    if isinstance(structure, tuple) and hasattr(structure, "_fields"):  # a namedtuple
        return type(structure)(*(map_tensors(x, fn) for x in structure))
    if isinstance(structure, (tuple, list)):
        return type(structure)(map_tensors(x, fn) for x in structure)
    if isinstance(structure, dict):
        return {k: map_tensors(v, fn) for k, v in structure.items()}
    return structure


def map_values(structure, fn):
    """`structure` (with IR values for tensors) with every non-scalar leaf replaced by
    `fn(leaf)`, in order."""
    if isinstance(structure, tuple) and hasattr(structure, "_fields"):
        return type(structure)(*(map_values(x, fn) for x in structure))
    if isinstance(structure, (tuple, list)):
        return type(structure)(map_values(x, fn) for x in structure)
    if isinstance(structure, dict):
        return {k: map_values(v, fn) for k, v in structure.items()}
    return structure if is_scalar(structure) else fn(structure)


def flatten(structure) -> list:
    """The leaves of nested tuples, lists and dicts, in order."""
    if isinstance(structure, (tuple, list)):
        return [leaf for item in structure for leaf in flatten(item)]
    if isinstance(structure, dict):
        return [leaf for item in structure.values() for leaf in flatten(item)]
    return [structure]
