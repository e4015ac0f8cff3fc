"""In-place operations: `add_`, `x[i] = v`, `zero_`, `+=` and friends.

An in-place op computes its result out of place (recording it, when gradients are being
recorded), writes it into the tensor's memory, bumps the version counter that guards
saved values, and makes the op the tensor's new `grad_fn`. When the tensor is a slice of
another, the base's history is rewritten too (PyTorch's `CopySlices`). Without recording,
NumPy writes in place directly.

>>> import tracegrad as torch
>>> x = torch.ones(3)
>>> x.add_(1.0)
tensor([2., 2., 2.])
"""

from __future__ import annotations

import numpy as np

from ..autograd import grad_mode
from ..compiler import ops
from ..eager import apply
from ..compiler.ops.residuals import forget
from ..tensor import Tensor
from ..trace_state import state as _trace

_grad = grad_mode.state

LEAF_IN_PLACE = "a leaf Variable that requires grad is being used in an in-place operation."
COPY_SLICES = "torch::autograd::CopySlices"  # PyTorch's name(); reprs show "CopySlices"
VIEW_OF_LEAF_IN_PLACE = ("a view of a leaf Variable that requires grad is being used in an "
                         "in-place operation.")


def commit_inplace(target: Tensor, compute, *, name: str | None = None, others=(), fast=None):
    """Run `compute(old_target)` and write its result into `target`.

    `fast(data)`, when given, does the same directly on the NumPy array; it is used when
    nothing needs recording.
    """
    recording = _grad.enabled and (target._requires_grad or any(
        isinstance(o, Tensor) and o._requires_grad for o in others))
    tracer = _trace.tracer
    if recording:
        _check_may_modify(target)
    if not recording and fast is not None and tracer is None:
        _write_checked(target, fast)
        target._version[0] += 1
        return target
    old = _snapshot(target) if recording or tracer is not None else target
    result = compute(old)
    if result.dtype is not target.dtype and result.dtype.category <= target.dtype.category:
        from ..eager import to_dtype

        result = to_dtype(result, target.dtype)  # a recorded cast: the tensor keeps its dtype
    _write_checked(target, lambda data: np.copyto(data, result._data, casting="same_kind"),
                   result)
    target._version[0] += 1
    if tracer is not None:  # the trace now knows `target` by its new value
        tracer.rebind(target, result)
    if recording and result.grad_fn is not None:
        if name:
            result.grad_fn.display_name = name
        _adopt(target, result.grad_fn)
    elif recording:  # the new value depends on nothing that requires grad
        target.grad_fn, target._requires_grad = None, False
    if target._base is not None and (recording or tracer is not None):
        _rebase(target)
    return target


def _check_may_modify(target: Tensor) -> None:
    if target._requires_grad and target.grad_fn is None:
        raise RuntimeError(LEAF_IN_PLACE)
    view = target
    while view._base is not None:
        view, index = view._base
        if view._requires_grad and view.grad_fn is None:
            raise RuntimeError(VIEW_OF_LEAF_IN_PLACE)
        if index is None:
            raise RuntimeError(
                "an in-place operation on a view made by reshape, view, permute, transpose or "
                "expand, while gradients are being recorded, is not supported: write to the "
                "base tensor, or clone() the view first")


def _snapshot(target: Tensor) -> Tensor:
    """A copy of `target`'s current value that stands for it in the graph (and trace)."""
    old = Tensor._wrap(target._data.copy(), target.dtype, target._requires_grad)
    old.grad_fn, old._output_nr = target.grad_fn, target._output_nr
    if _trace.tracer is not None:
        _trace.tracer.rebind(old, target)
    return old


def _adopt(target: Tensor, node) -> None:
    target.grad_fn = node
    target._requires_grad = True
    target._output_nr = 0


def _rebase(view: Tensor) -> None:
    """After `view` changed in place, make its base's history (and trace) include it."""
    base, index = view._base
    if index is None:
        if _trace.tracer is not None:
            _trace.tracer.break_graph("an in-place write to a reshaped or permuted view")
        return
    new_base = apply(ops.index_put, (_snapshot(base), view), {"index": index})
    if _trace.tracer is not None:
        _trace.tracer.rebind(base, new_base)
    if new_base.grad_fn is not None:
        new_base.grad_fn.display_name = COPY_SLICES
        _adopt(base, new_base.grad_fn)
    if base._base is not None:
        _rebase(base)


def _write_checked(target: Tensor, write, result: Tensor | None = None) -> None:
    """Run `write(target_data)`, turning NumPy's refusals into PyTorch's messages."""
    if result is not None and result.dtype.category > target.dtype.category:
        raise RuntimeError(f"result type {_word(result.dtype)} can't be cast to the desired "
                           f"output type {_word(target.dtype)}")
    if result is not None and result._data.shape != target._data.shape:
        raise RuntimeError(f"output with shape {list(target.shape)} doesn't match the "
                           f"broadcast shape {list(result.shape)}")
    forget(target._data)  # values a kernel remembered for the old contents are stale
    data = target._data
    if target._base is None and not data.flags.writeable and not any(data.strides) and \
            data.base is not None:  # one repeated element (eager.py), not a view: copy on write
        target._data = np.array(data, copy=True)
    try:
        write(target._data)
    except (TypeError, np.exceptions.UFuncTypeError) as exc:
        raise RuntimeError(f"result type can't be cast to the desired output type "
                           f"{_word(target.dtype)} ({exc})") from None
    except ValueError as exc:
        raise RuntimeError(f"in-place operation on a tensor of shape {list(target.shape)}: "
                           f"{exc}") from None


def _word(dtype) -> str:
    return {"float32": "Float", "float64": "Double", "int64": "Long", "int32": "Int",
            "bool": "Bool"}[dtype.name]


def _raw(x):
    return x._data if isinstance(x, Tensor) else x


def arithmetic_inplace(fn, ufunc):
    """`x.op_(other)`: NumPy's `ufunc(x, other, out=x)` when nothing is recorded."""

    def op_(self, other, *, alpha=1):
        from .pointwise import mul

        if alpha != 1:
            other = mul(other, alpha)
        if ufunc is np.true_divide and not self.dtype.is_floating_point:
            raise RuntimeError(f"result type Float can't be cast to the desired output type "
                               f"{_word(self.dtype)}")
        return commit_inplace(self, lambda old: fn(old, other), others=(other,),
                              fast=lambda data: ufunc(data, _raw(other), out=data,
                                                      casting="same_kind"))

    op_.__name__ = fn.__name__ + "_"
    return op_


def function_inplace(fn, name=None):
    """`x.fn_(...)` for any function: computed out of place, then written back."""

    def op_(self, *args, **kwargs):
        others = [a for a in args if isinstance(a, Tensor)]
        return commit_inplace(self, lambda old: fn(old, *args, **kwargs), others=others,
                              name=name)

    op_.__name__ = fn.__name__ + "_"
    return op_


def zero_(self):
    return _fill(self, 0, "ZeroBackward0")


def fill_(self, value):
    # PyTorch's node names tell a Python number (2) from a 0-d tensor (3) value
    return _fill(self, _raw(value), "FillBackward3" if isinstance(value, Tensor) else
                 "FillBackward2")


def _fill(self, value, name: str):
    from .pointwise import mul

    return commit_inplace(self, lambda old: mul(old, 0) + value, name=name,
                          fast=lambda data: data.fill(value))


def copy_(self, src, non_blocking=False):
    from .shaping import expand

    src = src if isinstance(src, Tensor) else Tensor._wrap(np.asarray(src), self.dtype)
    return commit_inplace(
        self, lambda old: expand(src.to(self.dtype), self.shape),
        name="CopyBackwards", others=(src,),
        fast=lambda data: np.copyto(data, src._data, casting="unsafe"))
