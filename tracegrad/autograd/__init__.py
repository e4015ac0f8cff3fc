"""Reverse-mode automatic differentiation: `backward`, `grad`, grad modes and tools.

>>> import tracegrad as torch
>>> x = torch.tensor(2.0, requires_grad=True)
>>> (dx,) = torch.autograd.grad(x ** 3, x, create_graph=True)
>>> dx, torch.autograd.grad(dx, x)[0]
(tensor(12., grad_fn=<MulBackward0>), tensor(12.))
"""

from __future__ import annotations

import numpy as np

from . import anomaly_mode, grad_mode, profiler  # noqa: F401
from .anomaly_mode import detect_anomaly, set_detect_anomaly  # noqa: F401
from .engine import run_backward
from .grad_mode import enable_grad, inference_mode, no_grad, set_grad_enabled  # noqa: F401

# Imported now, not lazily: a later import of the submodule would shadow the function.
from .gradcheck import gradcheck, gradgradcheck  # noqa: F401


def _as_tuple(x) -> tuple:
    if x is None:
        return ()
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _root_gradients(outputs, grad_outputs):
    grads = list(_as_tuple(grad_outputs)) or [None] * len(outputs)
    if len(grads) != len(outputs):
        raise RuntimeError(f"Mismatch in number of tensors: {len(grads)} gradients for "
                           f"{len(outputs)} outputs")
    result = []
    for out, g in zip(outputs, grads):
        if g is None:
            if out.requires_grad and out.numel() != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            g = out._wrap(np.ones(out._data.shape, out.dtype.numpy), out.dtype)
        elif g.shape != out.shape:
            raise RuntimeError(f"Mismatch in shape: grad_output[0] has a shape of "
                               f"{g.shape} and output[0] has a shape of {out.shape}.")
        result.append(g)
    return result


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate the gradients of `tensors` into the leaves' `.grad`.

    `grad_tensors` holds d(loss)/d(tensor) for each tensor (None for one-element ones);
    `retain_graph`, `create_graph` as in `Tensor.backward`; `inputs` restricts
    accumulation to those tensors (which may be non-leaves).

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([1.0, 2.0], requires_grad=True)
        >>> torch.autograd.backward((x * x).sum())
        >>> x.grad
        tensor([2., 4.])
        >>> x.grad = None
        >>> torch.autograd.backward([x * 2, x * 3], [torch.ones(2), torch.ones(2)])
        >>> x.grad
        tensor([5., 5.])
    """
    outputs = _as_tuple(tensors)
    grads = _root_gradients(outputs, grad_tensors)
    retain = create_graph if retain_graph is None else retain_graph
    inputs = _as_tuple(inputs) or None
    if inputs is not None and any(t.grad_fn is not None for t in inputs):
        captured = run_backward(outputs, grads, retain, create_graph, inputs=inputs,
                                allow_unused=True)
        for t, g in zip(inputs, captured):
            if t.grad_fn is not None and g is not None:
                g = g if create_graph else g.detach()
                t._grad = t._grad + g if t._has_grad() else g
    else:
        run_backward(outputs, grads, retain, create_graph, inputs=inputs, allow_unused=True)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         only_inputs=True, allow_unused=None, is_grads_batched=False, materialize_grads=False):
    """The gradients of `outputs` with respect to `inputs`, returned instead of accumulated.

    >>> import tracegrad as torch
    >>> x = torch.ones(2, requires_grad=True)
    >>> torch.autograd.grad((x * 3).sum(), x)
    (tensor([3., 3.]),)
    """
    outputs = _as_tuple(outputs)
    inputs_tuple = _as_tuple(inputs)
    grads = _root_gradients(outputs, grad_outputs)
    retain = create_graph if retain_graph is None else retain_graph
    unused_ok = bool(allow_unused) or materialize_grads
    captured = run_backward(outputs, grads, retain, create_graph, inputs=inputs_tuple,
                            accumulate=False, allow_unused=unused_ok)
    if materialize_grads:
        from ..creation import zeros_like

        captured = [zeros_like(t) if g is None else g for t, g in zip(inputs_tuple, captured)]
    return tuple(captured)


def __getattr__(name):
    # Function and FunctionCtx load on first use: they are not needed for import.
    if name in ("Function", "FunctionCtx"):
        from . import function

        return getattr(function, name)
    raise AttributeError(f"module 'tracegrad.autograd' has no attribute {name!r}")
