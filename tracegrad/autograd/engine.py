"""The backward pass: walk the graph from the outputs and hand gradients to the inputs.

Nodes run in dependency order (a node runs once every node that feeds it gradient has
run), found with an explicit stack, so a chain of 100 000 ops needs no recursion.
Gradients reaching a leaf are added into `leaf.grad`, or captured for `autograd.grad`.

>>> import tracegrad as torch
>>> x = torch.tensor(3.0, requires_grad=True)
>>> (x * x).backward()
>>> x.grad
tensor(6.)
"""

from __future__ import annotations

import numpy as np

from ..trace_state import state as _trace
from . import anomaly_mode, grad_mode, profiler
from .graph import AccumulateGrad


def run_backward(outputs, grad_outputs, retain_graph: bool, create_graph: bool,
                 inputs=None, accumulate: bool = True, allow_unused: bool = False):
    """Backpropagate from `outputs`; accumulate into leaves or return grads of `inputs`.

    The engine's entry point, under `autograd.backward` and `autograd.grad`: one gradient
    per output in `grad_outputs`; with `accumulate=False` the gradients of `inputs` are
    returned (a list) instead of being accumulated into `.grad`.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([1.0, 2.0], requires_grad=True)
        >>> y = (x * x).sum()
        >>> torch.autograd.run_backward([y], [torch.tensor(1.0)], False, False, inputs=[x],
        ...                             accumulate=False)
        [tensor([2., 4.])]
    """
    roots = []
    for i, t in enumerate(outputs):
        if not t.requires_grad:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not "
                               f"have a grad_fn")
        roots.append(t._edge())
    targets = {}
    for k, t in enumerate(inputs or ()):
        if not t.requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
        targets.setdefault(t._edge(), []).append(k)
    dependencies = _count_dependencies([node for node, _ in roots])
    if targets:
        dependencies = _prune_to_targets(dependencies, {node for node, _ in targets})
    if _trace.tracer is not None:
        _trace.tracer.note_backward(dependencies, {node for node, _ in targets})
    pending, owned = {}, set()
    for (node, nr), g in zip(roots, grad_outputs):
        _add_grad(pending, node, nr, g)
        owned.add(id(g._data))  # the caller's gradient: never stored in a .grad as it is
    captured = [None] * len(inputs or ())
    ready = list(dict.fromkeys(node for node, _ in roots if not dependencies.get(node)))
    saved_mode, grad_mode.state.enabled = grad_mode.state.enabled, create_graph
    try:
        while ready:
            node = ready.pop()
            grads = pending.pop(node, None) or [None]
            if node.pre_hooks or node.retained:
                grads = _run_pre_hooks(node, grads)
            if targets:
                for nr, g in enumerate(grads):
                    for k in targets.get((node, nr), ()):
                        captured[k] = g
            if type(node) is AccumulateGrad:
                if accumulate and (not targets or (node, 0) in targets):
                    _accumulate(node.variable, grads[0], create_graph, owned)
                continue
            in_grads = _apply(node, grads)
            for edge, g in zip(node.edges, in_grads):
                if edge is None:
                    continue
                child = edge[0]
                left = dependencies.get(child)
                if left is None:
                    continue  # pruned: leads to no requested input
                if g is not None:
                    _add_grad(pending, child, edge[1], g)
                dependencies[child] = left - 1
                if left == 1:
                    ready.append(child)
            if not retain_graph:
                node.release()
    finally:
        grad_mode.state.enabled = saved_mode
    if inputs and not allow_unused and any(g is None for g in captured):
        raise RuntimeError(f"The differentiated Tensor at index {captured.index(None)} appears "
                           f"to not have been used in the graph. Set allow_unused=True if this "
                           f"is the desired behavior.")
    return captured


def _count_dependencies(root_nodes: list) -> dict:
    """Every node reachable from the roots, with how many edges lead into it."""
    dependencies = dict.fromkeys(root_nodes, 0)
    stack = list(dependencies)
    while stack:
        for edge in stack.pop().edges:
            if edge is not None:
                child = edge[0]
                if child in dependencies:
                    dependencies[child] += 1
                else:
                    dependencies[child] = 1
                    stack.append(child)
    return dependencies


def _prune_to_targets(dependencies: dict, target_nodes: set) -> dict:
    """Only the nodes from which a target can be reached need to run."""
    leads = set(target_nodes)
    nodes = list(dependencies)  # parents come before their children
    changed = True
    while changed:
        changed = False
        for node in reversed(nodes):
            if node not in leads and any(e is not None and e[0] in leads for e in node.edges):
                leads.add(node)
                changed = True
    kept = {node: 0 for node in nodes if node in leads}
    for node in kept:
        for edge in node.edges:
            if edge is not None and edge[0] in kept:
                kept[edge[0]] += 1
    return kept


def _add_grad(pending: dict, node, nr: int, g) -> None:
    slots = pending.get(node)
    if slots is None:
        if nr == 0:
            pending[node] = [g]
            return
        slots = pending[node] = [None] * (nr + 1)
    elif len(slots) <= nr:
        slots.extend([None] * (nr + 1 - len(slots)))
    if slots[nr] is None:
        slots[nr] = g
    elif grad_mode.state.enabled or _trace.tracer is not None:  # a recorded sum
        slots[nr] = slots[nr] + g
    else:
        total = slots[nr]._data + g._data
        slots[nr] = type(g)._wrap(np.asarray(total), g.dtype)


def _run_pre_hooks(node, grads: list) -> list:
    if node.pre_hooks:
        for nr, hooks in node.pre_hooks.items():
            if nr == "node":
                for hook in hooks:
                    result = hook(tuple(grads))
                    grads = list(result) if result is not None else grads
                continue
            for hook in hooks:
                if grads[nr] is not None:
                    result = hook(grads[nr])
                    grads[nr] = result if result is not None else grads[nr]
    if node.retained:
        for nr, ref in node.retained.items():
            tensor = ref()
            if tensor is not None and nr < len(grads) and grads[nr] is not None:
                g = grads[nr].detach() if not grad_mode.state.enabled else grads[nr]
                tensor.grad = g if tensor.grad is None else tensor.grad + g
    return grads


def _apply(node, grads: list):
    if profiler.state.active:  # backward nodes are ranges too, named like grad_fn
        with profiler.record_function(node.name()):
            in_grads = node.apply(grads)
    else:
        in_grads = node.apply(grads)
    if node.hooks:
        for hook in node.hooks:
            result = hook(tuple(in_grads), tuple(grads))
            in_grads = tuple(result) if result is not None else in_grads
    if anomaly_mode.state.on:
        anomaly_mode.check_gradients(node, in_grads)
    return in_grads


def _accumulate(leaf, g, create_graph: bool, owned: set) -> None:
    if g is None:
        return
    for hook in leaf._hooks or ():
        result = hook(g)
        g = result if result is not None else g
    if g._data.shape != leaf._data.shape:
        raise RuntimeError(f"Function AccumulateGrad returned an invalid gradient - got "
                           f"{list(g.shape)} but expected shape compatible with "
                           f"{list(leaf.shape)}")
    if not leaf._has_grad():
        leaf._grad = g if create_graph else _owned_copy(g, owned)
    elif create_graph or leaf._grad._requires_grad:
        leaf._grad = leaf._grad + g
    elif _trace.tracer is not None:
        leaf._grad.add_(g)  # recorded, so that the trace knows the new .grad
    else:
        np.add(leaf._grad._data, g._data, out=leaf._grad._data, casting="unsafe")
    if not create_graph:
        owned.add(id(leaf._grad._data))


def _owned_copy(g, owned: set):
    """`g` detached, in memory that no other tensor shares (it may be added into later)."""
    data = g._data
    if data.base is not None or id(data) in owned or not data.flags.writeable:
        data = data.copy()
    copy = type(g)._wrap(data, g.dtype)
    if _trace.tracer is not None:
        _trace.tracer.rebind(copy, g)
    return copy
