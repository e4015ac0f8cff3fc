"""The grad_fn of a compiled function's outputs: it runs the compiled backward graph.

`loss = compiled(x); loss.backward()` reaches this node like any other: it turns the
outputs' gradients into the inputs' by running the backward half of the joint graph on
the values the forward saved, and hands them to the inputs' own nodes.

>>> import tracegrad as torch
>>> w = torch.ones(3, requires_grad=True)
>>> f = torch.compile(lambda x: (x * w).sum())
>>> for _ in range(2):
...     w.grad = None
...     f(torch.arange(3.0)).backward()
>>> w.grad
tensor([0., 1., 2.])
"""

from __future__ import annotations

import numpy as np

from .autograd import grad_mode
from .autograd.graph import SAVED_TWICE, Node
from .tensor import Tensor


class CompiledBackward(Node):
    """Runs a compiled backward graph (see the module docstring)."""

    def __init__(self, backward, saved: list, outputs: list, differentiable: list):
        edges = [t._edge() if present else None
                 for t, present in zip(differentiable, backward.grad_present)]
        super().__init__(edges)
        self.backward = backward
        self.dtypes = [t.dtype for t in differentiable]
        self.saved = saved
        self.shapes = [(t._data.shape, t.dtype) for t in outputs]
        self.n_outputs = len(outputs)

    def default_name(self) -> str:
        return "CompiledFunctionBackward"

    def apply(self, grad_outputs: list) -> list:
        if self.saved is None:
            raise RuntimeError(SAVED_TWICE)
        if grad_mode.state.enabled:
            raise RuntimeError("higher-order gradients (create_graph=True) through a "
                               "tracegrad.compile'd function are not supported; call the "
                               "function without compile for this")
        cotangents = [np.zeros(shape, dtype.numpy) if g is None else g._data
                      for g, (shape, dtype) in zip(
                          list(grad_outputs) + [None] * (self.n_outputs - len(grad_outputs)),
                          self.shapes)]
        grads = iter(self.backward.partition.program.run(*cotangents, *self.saved))
        results = []
        for dtype, present in zip(self.dtypes, self.backward.grad_present):
            results.append(Tensor._wrap(next(grads), dtype) if present else None)
        return results

    def release(self) -> None:
        self.saved = None


def attach_backward(outputs: list, backward, saved: list, differentiable: list) -> None:
    """Make `outputs` (the differentiable results, in order) share one compiled node whose
    gradients flow to `differentiable` (this call's inputs that require grad)."""
    node = CompiledBackward(backward, saved, outputs, differentiable)
    for nr, t in enumerate(outputs):
        t.grad_fn, t._requires_grad, t._output_nr = node, True, nr


class SpentBackward(Node):
    """The grad_fn of a result whose graph the function itself already walked."""

    def __init__(self, name: str | None):
        super().__init__(())
        self.display_name = name

    def apply(self, grad_outputs: list):
        raise RuntimeError(SAVED_TWICE)


def spent_backward(tensor: Tensor, name: str | None) -> None:
    tensor.grad_fn, tensor._requires_grad = SpentBackward(name), True
