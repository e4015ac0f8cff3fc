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
from ..compiler.ops.residuals import forget
from ..eager import apply
from ..errors import op_error
from ..tensor import Tensor
from ..trace_state import state as _trace

_grad = grad_mode.state

LEAF_IN_PLACE = "a leaf Variable that requires grad is being used in an in-place operation."
COPY_SLICES = "torch::autograd::CopySlices"  # PyTorch's name(); reprs show "CopySlices"
VIEW_OF_LEAF_IN_PLACE = ("a view of a leaf Variable that requires grad is being used in an "
                         "in-place operation.")


def commit_inplace(target: Tensor, compute, *, name: str | None = None, others=(), fast=None,
                   op: str = "copy_", written=None):
    """Run `compute(old_target)` and write its result into `target`.

    `fast(data)`, when given, does the same directly on the NumPy array; it is used when
    nothing needs recording. `op` names the operation in errors; `written`, when given, is
    the (basic) index of the part written, so that only views of that part are remade.
    """
    recording = _grad.enabled and (target._requires_grad or any(
        isinstance(o, Tensor) and o._requires_grad for o in others))
    tracer = _trace.tracer
    if recording:
        _check_may_modify(target)
    if not recording and fast is not None and tracer is None:
        _write_checked(target, fast, op=op, others=others)
        target._version[0] += 1
        return target
    old = _snapshot(target) if recording or tracer is not None else target
    result = compute(old)
    if result.dtype is not target.dtype and result.dtype.category <= target.dtype.category:
        from ..eager import to_dtype

        result = to_dtype(result, target.dtype)  # a recorded cast: the tensor keeps its dtype
    _write_checked(target, lambda data: np.copyto(data, result._data, casting="same_kind"),
                   result, op, others)
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
    if recording or tracer is not None:
        _refresh_views(target, recording, written)
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


def _refresh_views(target: Tensor, recording: bool, written=None) -> None:
    """After an in-place write into `target` (at the basic index `written`, or all of it),
    remake the history and trace of every other view of that memory from its base: its
    values changed with the write (PyTorch regenerates a view's grad_fn the same way).

    >>> import tracegrad as torch
    >>> x = torch.ones(3, requires_grad=True)
    >>> t = x * 1.0; v = t[1:]; _ = t.mul_(2.0)
    >>> v.sum().backward(); x.grad
    tensor([0., 2., 2.])
    """
    remade, root = {id(target)}, target
    while root._base is not None:
        root = root._base[0]
        remade.add(id(root))
    if root._views:  # else nothing to remake, and no need to slice out what was written
        data = target._data if written is None else target._data[written]
        _refresh_views_of(root, remade, recording, data)


def _refresh_views_of(base: Tensor, written: set, recording: bool, data) -> None:
    for ref in base._views or ():
        view = ref()
        if view is None or not np.may_share_memory(view._data, data):
            continue  # its values (and those of its own views) did not change
        if id(view) not in written:
            index = view._base[1]
            prim, attrs = view._replay if index is None else (ops.gather, {"index": index})
            new = apply(prim, (base,), attrs)
            if _trace.tracer is not None:
                _trace.tracer.rebind(view, new)
            if recording:
                view.grad_fn, view._requires_grad, view._output_nr = \
                    new.grad_fn, new._requires_grad, 0
        _refresh_views_of(view, written, recording, data)


def _write_checked(target: Tensor, write, result: Tensor | None = None, op: str = "copy_",
                   others=()) -> None:
    """Run `write(target_data)`, turning NumPy's refusals into PyTorch's messages (and our
    line naming `op`, its operands and the user's line). Nothing is written if it fails."""
    if result is not None and result.dtype.category > target.dtype.category:
        raise op_error(RuntimeError, op, f"result type {_word(result.dtype)} can't be cast to "
                                         f"the desired output type {_word(target.dtype)}",
                       _operands(target, others))
    if result is not None and result._data.shape != target._data.shape:
        raise op_error(RuntimeError, op, f"output with shape {list(target.shape)} doesn't "
                                         f"match the broadcast shape {list(result.shape)}",
                       _operands(target, others))
    forget(target._data)  # values a kernel remembered for the old contents are stale
    data = target._data
    if target._base is None and not data.flags.writeable and not any(data.strides) and \
            data.base is not None:  # one repeated element (eager.py), not a view: copy on write
        target._data = np.array(data, copy=True)
    try:
        write(target._data)
    except TypeError as exc:  # NumPy's UFuncTypeError is one
        raise op_error(RuntimeError, op, f"result type can't be cast to the desired output "
                                         f"type {_word(target.dtype)} ({exc})",
                       _operands(target, others)) from None
    except ValueError as exc:  # shapes that do not fit (NumPy checks before it writes)
        operands = _operands(target, others)
        try:
            message = (f"output with shape {list(target.shape)} doesn't match the broadcast "
                       f"shape {list(np.broadcast_shapes(*(t.shape for t in operands)))}")
        except ValueError:
            message = f"shape mismatch: {exc}"
        raise op_error(RuntimeError, op, message, operands) from None


def _operands(target: Tensor, others) -> list:
    """The tensors an in-place op's error message describes."""
    return [target, *(o for o in others if isinstance(o, Tensor))]


def _word(dtype) -> str:
    return {"float32": "Float", "float64": "Double", "int64": "Long", "int32": "Int",
            "bool": "Bool"}[dtype.name]


def _raw(x):
    return x._data if isinstance(x, Tensor) else x


# The in-place methods' docstrings: one template, and per method an example: the tensor's
# values, the call's arguments and what the call prints.
_INPLACE_DOC = """In-place `{base}`: `x.{name}(...)` writes `x.{base}(...)` into `x`, returns `x`.

    Recorded for autograd like `{base}`; a leaf that requires grad cannot change in place.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor({input})
        >>> x.{name}({args})
        {output}
        >>> x
        {output}
    """
_INPLACE_EXAMPLES = {
    "add_": ("[1.0, 2.0]", "10", "tensor([11., 12.])"),
    "sub_": ("[1.0, 2.0]", "torch.tensor([1.0, 1.0]), alpha=2", "tensor([-1.,  0.])"),
    "mul_": ("[1.0, 2.0]", "3", "tensor([3., 6.])"),
    "div_": ("[1.0, 2.0]", "4", "tensor([0.2500, 0.5000])"),
    "pow_": ("[1.0, 2.0, 3.0]", "2", "tensor([1., 4., 9.])"),
    "exp_": ("[0.0, 1.0]", "", "tensor([1.0000, 2.7183])"),
    "log_": ("[1.0, 2.0]", "", "tensor([0.0000, 0.6931])"),
    "log1p_": ("[0.0, 1.0]", "", "tensor([0.0000, 0.6931])"),
    "sqrt_": ("[4.0, 9.0]", "", "tensor([2., 3.])"),
    "sin_": ("[0.0, 1.0]", "", "tensor([0.0000, 0.8415])"),
    "cos_": ("[0.0, 1.0]", "", "tensor([1.0000, 0.5403])"),
    "tanh_": ("[0.0, 1.0]", "", "tensor([0.0000, 0.7616])"),
    "sigmoid_": ("[0.0, 1.0]", "", "tensor([0.5000, 0.7311])"),
    "relu_": ("[-1.0, 2.0]", "", "tensor([0., 2.])"),
    "abs_": ("[-1.5, 2.0]", "", "tensor([1.5000, 2.0000])"),
    "neg_": ("[1.0, -2.0]", "", "tensor([-1.,  2.])"),
    "clamp_": ("[-2.0, 0.5, 3.0]", "min=0.0, max=1.0", "tensor([0.0000, 0.5000, 1.0000])"),
    "masked_fill_": ("[1.0, 2.0]", "torch.tensor([True, False]), 0.0", "tensor([0., 2.])"),
    "reciprocal_": ("[2.0, 4.0]", "", "tensor([0.5000, 0.2500])"),
    "square_": ("[-2.0, 3.0]", "", "tensor([4., 9.])"),
}


def _inplace_doc(name: str) -> str | None:
    if name not in _INPLACE_EXAMPLES:
        return None
    values, args, printed = _INPLACE_EXAMPLES[name]
    return _INPLACE_DOC.format(name=name, base=name[:-1], input=values, args=args,
                               output=printed)


def arithmetic_inplace(fn, ufunc):
    """`x.op_(other)`: NumPy's `ufunc(x, other, out=x)` when nothing is recorded."""

    def op_(self, other, *, alpha=1):
        from .pointwise import mul

        if alpha != 1:
            other = mul(other, alpha)
        if ufunc is np.true_divide and not self.dtype.is_floating_point:
            raise RuntimeError(f"result type Float can't be cast to the desired output type "
                               f"{_word(self.dtype)}")
        return commit_inplace(self, lambda old: fn(old, other), others=(other,), op=op_name,
                              fast=lambda data: ufunc(data, _raw(other), out=data,
                                                      casting="same_kind"))

    op_name = op_.__name__ = fn.__name__ + "_"
    op_.__doc__ = _inplace_doc(op_.__name__)
    return op_


def function_inplace(fn, name=None):
    """`x.fn_(...)` for any function: computed out of place, then written back."""

    def op_(self, *args, **kwargs):
        others = [a for a in args if isinstance(a, Tensor)]
        return commit_inplace(self, lambda old: fn(old, *args, **kwargs), others=others,
                              name=name, op=op_.__name__)

    op_.__name__ = fn.__name__ + "_"
    op_.__doc__ = _inplace_doc(op_.__name__)
    return op_


def zero_(self):
    """Fill with zeros, in place; returns the tensor.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([1.0, 2.0])
        >>> x.zero_()
        tensor([0., 0.])
    """
    return _fill(self, 0, "ZeroBackward0", "zero_")


def fill_(self, value):
    """Fill with `value` (a number or a 0-d tensor), in place; returns the tensor.

    Example::

        >>> import tracegrad as torch
        >>> torch.empty(3).fill_(2.5)
        tensor([2.5000, 2.5000, 2.5000])
    """
    # PyTorch's node names tell a Python number (2) from a 0-d tensor (3) value
    return _fill(self, _raw(value), "FillBackward3" if isinstance(value, Tensor) else
                 "FillBackward2", "fill_")


def _fill(self, value, name: str, op: str):
    from .pointwise import mul

    return commit_inplace(self, lambda old: mul(old, 0) + value, name=name, op=op,
                          fast=lambda data: data.fill(value))


def copy_(self, src, non_blocking=False):
    """Copy `src`'s values (broadcast, cast to this tensor's dtype) into this tensor.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.zeros(2, 2)
        >>> x.copy_(torch.tensor([1, 2]))
        tensor([[1., 2.],
                [1., 2.]])
    """
    from .shaping import expand

    src = src if isinstance(src, Tensor) else Tensor._wrap(np.asarray(src), self.dtype)
    return commit_inplace(
        self, lambda old: expand(src.to(self.dtype), self.shape),
        name="CopyBackwards", others=(src,),
        fast=lambda data: np.copyto(data, src._data, casting="unsafe"))
