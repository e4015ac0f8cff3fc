"""The nodes of the autograd graph: what `tensor.grad_fn` is.

A node knows the edges to the nodes that made its inputs (`next_functions`), keeps what
its derivative needs, and turns the gradients of its outputs into gradients of its
inputs (`apply`). Three kinds exist: `PrimitiveNode` for an op of the op set,
`AccumulateGrad` for a leaf, and `FunctionNode` (in `function.py`) for a user's
`autograd.Function`.

>>> import tracegrad as torch
>>> x = torch.ones(2, requires_grad=True)
>>> (x * 2).grad_fn.name(), (x * 2).grad_fn.next_functions[0][0].name()
('MulBackward0', 'torch::autograd::AccumulateGrad')
"""

from __future__ import annotations

import re

from ..compiler.ops import Spec, sum_to
from . import anomaly_mode

_sequence = [0]  # the next node's sequence number: later nodes have larger ones
_new_spec = tuple.__new__  # Spec(shape, dtype) without NamedTuple's __new__ in Python


def next_sequence_number() -> int:
    return _sequence[0]

SAVED_TWICE = (
    "Trying to backward through the graph a second time (or directly access saved tensors "
    "after they have already been freed). Saved intermediate values of the graph are freed "
    "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
    "backward through the graph a second time or if you need to access saved tensors after "
    "calling backward.")


class Node:
    """A step of the backward pass."""

    __slots__ = ("__dict__", "__weakref__", "edges", "seq")
    # Rarely set state lives in the instance dict, defaulting to these (cheaper to create).
    display_name = None  # the composite's name, e.g. "MeanBackward0" (naming.py)
    display_edges = None  # the composite's inputs, shown as next_functions
    pre_hooks = None  # {output_nr: [fn]} from tensor.register_hook
    hooks = None  # [fn(grad_inputs, grad_outputs)] from node.register_hook
    retained = None  # {output_nr: weakref to tensor} from retain_grad()
    creation_trace = None  # the user's stack, under anomaly detection

    def __init__(self, edges: tuple):
        self.edges = edges  # per input: (node, output_nr) or None
        self.seq = _sequence[0]
        _sequence[0] += 1
        if anomaly_mode.state.on:
            self.creation_trace = anomaly_mode.creation_trace()

    def name(self) -> str:
        return self.display_name or self.default_name()

    def default_name(self) -> str:
        return type(self).__name__

    @property
    def next_functions(self) -> tuple:
        edges = self.display_edges if self.display_edges is not None else self.edges
        return tuple(e if e is not None else (None, 0) for e in edges)

    def register_hook(self, fn):
        """`fn(grad_inputs, grad_outputs)` runs after this node; may return new grad_inputs."""
        self.hooks = (self.hooks or []) + [fn]
        return _RemovableHook(self, "hooks", fn)

    def register_prehook(self, fn):
        """`fn(grad_outputs)` runs before this node; may return new grad_outputs."""
        self.pre_hooks = dict(self.pre_hooks or {})
        self.pre_hooks.setdefault("node", []).append(fn)
        return _RemovableHook(self, "pre_hooks", fn)

    def apply(self, grad_outputs: list) -> tuple:
        raise NotImplementedError

    def release(self) -> None:
        """Free what the backward pass needed (after backward without retain_graph)."""

    def __call__(self, *grad_outputs):
        return self.apply(list(grad_outputs))

    def __repr__(self) -> str:
        return f"<{self.name()} object at {hex(id(self))}>"


class _RemovableHook:
    def __init__(self, owner, slot, fn):
        self.owner, self.slot, self.fn = owner, slot, fn

    def remove(self) -> None:
        hooks = getattr(self.owner, self.slot)
        if isinstance(hooks, dict):
            for fns in hooks.values():
                if self.fn in fns:
                    fns.remove(self.fn)
        elif hooks and self.fn in hooks:
            setattr(self.owner, self.slot, [h for h in hooks if h is not self.fn])


class PrimitiveNode(Node):
    """The backward of one primitive application: applies the op's derivative rules.

    Made by `eager.apply` when an input requires grad; `out_version` is the output's
    version counter (checked if the rules read the output). `release()` frees what it
    saved, after which `inputs` is None and `apply` refuses.
    """

    __slots__ = ("attrs", "inputs", "out", "prim", "shapes", "versions")

    def __init__(self, prim, inputs: tuple, attrs: dict, out, out_version: list):
        self.seq = _sequence[0]  # Node.__init__, inlined: one node per recorded op
        _sequence[0] += 1
        if anomaly_mode.state.on:
            self.creation_trace = anomaly_mode.creation_trace()
        self.prim = prim
        self.attrs = attrs
        saved = prim.saved_inputs
        edges, shapes, kept, versions = [], [], [], []
        for i, x in enumerate(inputs):
            data = getattr(x, "_data", None)
            if data is None:  # a Python number: no gradient; kept as it is
                edges.append(None)
                shapes.append(())
                kept.append(x)
                continue
            if x._requires_grad:  # Tensor._edge, inlined
                edges.append((x.grad_fn, x._output_nr) if x.grad_fn is not None
                             else (x._accumulator(), 0))
            else:
                edges.append(None)
            shapes.append(data.shape)
            if i in saved:
                kept.append(x)
                versions.append((x._version, x._version[0], x))
            else:  # inputs the rules do not read are kept as shape and dtype only
                kept.append(_new_spec(Spec, (data.shape, x.dtype)))
        if prim.saves_out:  # the output's memory is saved too
            versions.append((out_version, out_version[0], None))
            self.out = out
        else:
            self.out = _new_spec(Spec, (out.shape, None))
        self.edges, self.shapes, self.inputs, self.versions = edges, shapes, kept, versions

    def default_name(self) -> str:
        return self.prim.backward_name

    def apply(self, grad_outputs: list) -> list:
        inputs = self.inputs
        if inputs is None:
            raise RuntimeError(SAVED_TWICE)
        for counter, version, tensor in self.versions:
            if counter[0] != version:
                raise RuntimeError(self._modified(counter[0], version, tensor))
        g = grad_outputs[0]
        prim, attrs = self.prim, self.attrs
        out = type(g)._from_node(self.out, self) if prim.saves_out else self.out
        results = []
        for i, (edge, shape) in enumerate(zip(self.edges, self.shapes)):
            if edge is None:
                results.append(None)
                continue
            if prim.variadic:
                grad = prim.vjp[0](g, *inputs, out, i=i, **attrs)
            else:
                grad = prim.vjp[i](g, *inputs, out, **attrs)
            if grad._data.shape != shape:
                grad = sum_to(grad, shape)
            results.append(grad)
        return results

    def _modified(self, now: int, version: int, tensor) -> str:
        if tensor is None:  # the saved output: PyTorch names the node that made it
            return modified_message(self.out.dtype.name, self.out.shape, now, version, self)
        return modified_message(tensor.dtype.name, tensor._data.shape, now, version,
                                tensor.grad_fn)

    def release(self) -> None:
        if self.versions:  # something is saved (the output too has a version there)
            self.inputs = self.out = None
            self.versions = ()


class AccumulateGrad(Node):
    """The end of the backward pass for a leaf: adds the gradient into `leaf.grad`."""

    __slots__ = ("variable",)

    def __init__(self, variable):
        super().__init__(())
        self.variable = variable

    def default_name(self) -> str:
        return "torch::autograd::AccumulateGrad"

    def apply(self, grad_outputs: list) -> tuple:
        return ()


def modified_message(dtype: str, shape: tuple, now: int, version: int, producer) -> str:
    """PyTorch's message for a saved tensor changed in place (`producer` made it, if any)."""
    kind = {"float32": "FloatTensor", "float64": "DoubleTensor", "int64": "LongTensor",
            "int32": "IntTensor", "bool": "BoolTensor"}[dtype]
    # PyTorch names the operation, not its backward: "Exp" for ExpBackward0
    op = re.sub(r"Backward\d*$", "", producer.name()) if producer is not None else ""
    made_by = f", which is output 0 of {op}," if producer is not None else ""
    return (f"one of the variables needed for gradient computation has been modified by an "
            f"inplace operation: [tracegrad.{kind} {list(shape)}]{made_by} is at version "
            f"{now}; expected version {version} instead. Hint: enable anomaly detection to "
            f"find the operation that failed to compute its gradient, with "
            f"tracegrad.autograd.set_detect_anomaly(True, check_nan=False).")
