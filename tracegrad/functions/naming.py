"""Composite functions present themselves as one op, like PyTorch's.

`mean(x)` is `sum(x) / n` inside, but its result's `grad_fn` should read
`MeanBackward0` with `x`'s node as its only next function, and the profiler should show a
`mean` range. `composite` gives a function both; the graph the engine walks is unchanged.

>>> import tracegrad as torch
>>> x = torch.ones(3, requires_grad=True)
>>> x.mean().grad_fn.name(), len(x.mean().grad_fn.next_functions)
('MeanBackward0', 1)
"""

from __future__ import annotations

import functools

from ..autograd import profiler
from ..autograd.graph import next_sequence_number


def composite(op_name: str, backward_name=None):
    """Decorate a composite: name its result's node (a string, or a function of the call's
    arguments returning one) and profile it as `op_name`."""
    default = "".join(p.title() for p in op_name.split("_")) + "Backward0"

    def decorate(fn):
        @functools.wraps(fn)
        def run_composite(*args, **kwargs):
            first = next_sequence_number()
            if profiler.state.active:
                with profiler.record_function(op_name):
                    out = fn(*args, **kwargs)
            else:
                out = fn(*args, **kwargs)
            node = getattr(out, "grad_fn", None)
            if node is not None and node.seq >= first:
                if callable(backward_name):
                    name = backward_name(*args, **kwargs) or default
                else:
                    name = backward_name or default
                present(out, name, args, kwargs)
            return out

        return run_composite

    return decorate


def present(out, name: str, args=(), kwargs=None) -> None:
    """Show `out`'s node as `name`, with the tensor arguments as its next functions."""
    node = out.grad_fn
    node.display_name = name
    tensors = [a for a in (*args, *(kwargs or {}).values()) if hasattr(a, "_edge")]
    tensors += [t for a in args if isinstance(a, (list, tuple)) for t in a if hasattr(t, "_edge")]
    node.display_edges = tuple(t._edge() if t._requires_grad else None for t in tensors)
