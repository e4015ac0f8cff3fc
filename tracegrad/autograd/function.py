"""Custom differentiable operations: subclass `Function`, write `forward` and `backward`.

`MyOp.apply(x)` runs `forward` without recording, then makes one node, `MyOpBackward`,
the `grad_fn` of every output. The node is also the `ctx` that `forward` filled in, so
`backward(ctx, *grads)` finds what was saved. Under `create_graph=True` the engine runs
`backward` with recording on, so a backward written with tensor operations can itself
be differentiated.

>>> import tracegrad as torch
>>> class Cube(torch.autograd.Function):
...     @staticmethod
...     def forward(ctx, x):
...         ctx.save_for_backward(x)
...         return x ** 3
...     @staticmethod
...     def backward(ctx, grad):
...         (x,) = ctx.saved_tensors
...         return grad * 3 * x ** 2
>>> x = torch.tensor(2.0, requires_grad=True)
>>> y = Cube.apply(x); y
tensor(8., grad_fn=<CubeBackward>)
>>> y.backward(); x.grad
tensor(12.)
"""

from __future__ import annotations

import functools

from ..compiler.ops import ShapeError, broadcast_shapes, sum_to
from ..tensor import Tensor
from . import grad_mode, profiler
from .graph import SAVED_TWICE, Node, modified_message

LEAF_DIRTY = "a leaf Variable that requires grad has been used in an in-place operation."


class FunctionCtx:
    """What `forward` leaves for `backward`: saved tensors and flags
    (`needs_input_grad`: which inputs need a gradient).

    Example::

        >>> import tracegrad as torch
        >>> class Mul(torch.autograd.Function):
        ...     @staticmethod
        ...     def forward(ctx, a, b):
        ...         ctx.save_for_backward(a, b)
        ...         return a * b
        ...     @staticmethod
        ...     def backward(ctx, grad):
        ...         a, b = ctx.saved_tensors
        ...         print(ctx.needs_input_grad)
        ...         return grad * b, grad * a
        >>> a = torch.tensor(2.0, requires_grad=True)
        >>> Mul.apply(a, torch.tensor(5.0)).backward()
        (True, False)
        >>> a.grad
        tensor(5.)
    """

    def save_for_backward(self, *tensors) -> None:
        """Keep tensors (or None) for backward; in-place changes to them are detected.

        Example::

            >>> import tracegrad as torch
            >>> class Cube(torch.autograd.Function):
            ...     @staticmethod
            ...     def forward(ctx, x):
            ...         ctx.save_for_backward(x)
            ...         return x ** 3
            ...     @staticmethod
            ...     def backward(ctx, grad):
            ...         (x,) = ctx.saved_tensors
            ...         return grad * 3 * x ** 2
            >>> x = torch.tensor(2.0, requires_grad=True)
            >>> Cube.apply(x).backward()
            >>> x.grad
            tensor(12.)
            >>> h = x * 1
            >>> y = Cube.apply(h)
            >>> h.add_(1)  # changes a saved tensor
            tensor(3., grad_fn=<AddBackward0>)
            >>> y.backward()
            Traceback (most recent call last):
            ...
            RuntimeError: one of the variables needed for gradient computation has been modified...
        """
        for t in tensors:
            if t is not None and not isinstance(t, Tensor):
                raise TypeError("save_for_backward can only save variables, but argument "
                                f"{tensors.index(t)} is of type {type(t).__name__}")
        self._to_save = tensors

    @property
    def saved_tensors(self) -> tuple:
        """What `save_for_backward` kept (raises once a backward pass freed it, or if a saved
        tensor was changed in place since).

        Example::

            >>> import tracegrad as torch
            >>> class Square(torch.autograd.Function):
            ...     @staticmethod
            ...     def forward(ctx, x):
            ...         ctx.save_for_backward(x)
            ...         return x * x
            ...     @staticmethod
            ...     def backward(ctx, grad):
            ...         (x,) = ctx.saved_tensors
            ...         return 2 * x * grad
            >>> x = torch.tensor(3.0, requires_grad=True)
            >>> y = Square.apply(x)
            >>> y.backward()
            >>> x.grad
            tensor(6.)
            >>> y.backward()
            Traceback (most recent call last):
            ...
            RuntimeError: Trying to backward through the graph a second time...
        """
        if getattr(self, "_freed", False):
            raise RuntimeError(SAVED_TWICE)
        saved = getattr(self, "_saved", None)
        if saved is None:  # still inside forward, or a bare context
            return tuple(getattr(self, "_to_save", ()))
        for tensor, version in saved:
            if tensor is not None and tensor._version[0] != version:
                raise RuntimeError(modified_message(tensor.dtype.name, tensor._data.shape,
                                                   tensor._version[0], version,
                                                   tensor.grad_fn))
        return tuple(tensor for tensor, _ in saved)

    def mark_non_differentiable(self, *tensors) -> None:
        """These outputs get no gradient (e.g. indices); they do not require grad.

        Example::

            >>> import tracegrad as torch
            >>> class DoubleAndPeak(torch.autograd.Function):
            ...     @staticmethod
            ...     def forward(ctx, x):
            ...         peak = x.amax()
            ...         ctx.mark_non_differentiable(peak)
            ...         return x * 2, peak
            ...     @staticmethod
            ...     def backward(ctx, grad, grad_peak):
            ...         return grad * 2
            >>> y, peak = DoubleAndPeak.apply(torch.tensor([1.0, 3.0], requires_grad=True))
            >>> y.requires_grad, peak.requires_grad
            (True, False)
        """
        self._non_differentiable = {id(t) for t in tensors}

    def mark_dirty(self, *tensors) -> None:
        """These inputs were modified in place by `forward` (and are returned); they become
        outputs of the node, and their version counters move on.

        Example::

            >>> import tracegrad as torch
            >>> class AddOne_(torch.autograd.Function):
            ...     @staticmethod
            ...     def forward(ctx, x):
            ...         x.add_(1)
            ...         ctx.mark_dirty(x)
            ...         return x
            ...     @staticmethod
            ...     def backward(ctx, grad):
            ...         return grad
            >>> a = torch.ones(2, requires_grad=True)
            >>> b = a * 1  # not a leaf: a leaf that requires grad cannot change in place
            >>> c = AddOne_.apply(b)
            >>> c, c is b
            (tensor([2., 2.], grad_fn=<AddOne_Backward>), True)
        """
        self._dirty = {id(t) for t in tensors}

    def set_materialize_grads(self, value: bool) -> None:
        """With False, backward receives None (not zeros) for outputs that got no gradient.

        Example::

            >>> import tracegrad as torch
            >>> class TwoOutputs(torch.autograd.Function):
            ...     @staticmethod
            ...     def forward(ctx, x):
            ...         ctx.set_materialize_grads(False)
            ...         return x * 2, x * 3
            ...     @staticmethod
            ...     def backward(ctx, grad_a, grad_b):
            ...         print(grad_b)
            ...         return grad_a * 2
            >>> x = torch.ones(1, requires_grad=True)
            >>> a, b = TwoOutputs.apply(x)
            >>> a.sum().backward()
            None
            >>> x.grad
            tensor([2.])
        """
        self.materialize_grads = bool(value)


class FunctionNode(FunctionCtx, Node):
    """The backward node of one `Function.apply` call; also that call's `ctx`."""

    function: type = None  # the Function subclass this node type belongs to
    materialize_grads = True
    needs_input_grad: tuple = ()

    def __init__(self, edges: tuple):
        super().__init__(edges)
        self.n_outputs = 0
        self._shapes = ()  # the inputs' shapes (None for non-tensors)
        self._outputs = ()  # (shape, dtype) per output, None for non-tensors

    def apply(self, grad_outputs: list) -> list:
        """Run the Function's `backward` on the outputs' gradients; one per input."""
        grads = list(grad_outputs) + [None] * (self.n_outputs - len(grad_outputs))
        if self.materialize_grads:
            grads = [_zeros(spec) if g is None and spec is not None else g
                     for g, spec in zip(grads, self._outputs)]
        result = self.function.backward(self, *grads)
        if not isinstance(result, tuple):
            result = (result,)
        expected = len(self._shapes)
        if len(result) != expected:
            if len(result) < expected or any(g is not None for g in result[expected:]):
                raise RuntimeError(f"function {self.name()} returned an incorrect number of "
                                   f"gradients (expected {expected}, got {len(result)})")
            result = result[:expected]
        return [self._checked(i, g) for i, g in enumerate(result)]

    def _checked(self, i: int, grad):
        """The gradient for input `i`, summed to the input's shape where it broadcasts."""
        if grad is None or self.edges[i] is None:
            if grad is not None and self._shapes[i] is None:
                raise RuntimeError(f"function {self.name()} returned a gradient different "
                                   f"than None at position {i + 1}, but the corresponding "
                                   f"forward input was not a Variable")
            return None
        shape = self._shapes[i]
        if grad.shape != shape:
            try:
                fits = broadcast_shapes(tuple(grad.shape), shape) == tuple(grad.shape)
            except (ShapeError, ValueError):
                fits = False
            if not fits:
                raise RuntimeError(f"Function {self.name()} returned an invalid gradient at "
                                   f"index {i} - got {list(grad.shape)} but expected shape "
                                   f"compatible with {list(shape)}")
            grad = sum_to(grad, shape)
        return grad

    def release(self) -> None:
        """Free the saved tensors (after a backward pass without `retain_graph`)."""
        if getattr(self, "_saved", None):
            self._freed = True
        self._saved = ()
        self._to_save = ()


def _zeros(spec):
    from ..creation import zeros

    shape, dtype = spec
    return zeros(shape, dtype=dtype)


class Function:
    """Base class of custom operations: static `forward(ctx, ...)` and `backward(ctx, ...)`.

    `forward` may instead take only the inputs, with a static `setup_context(ctx, inputs,
    output)` filling in ctx (PyTorch 2's style). Call the operation with `apply`; the node
    is named after the class (`CubeBackward`), and `backward` may itself be differentiated
    (under `create_graph=True`) when it is written with tensor operations.

    Example::

        >>> import tracegrad as torch
        >>> class Cube(torch.autograd.Function):
        ...     @staticmethod
        ...     def forward(ctx, x):
        ...         ctx.save_for_backward(x)
        ...         return x ** 3
        ...     @staticmethod
        ...     def backward(ctx, grad):
        ...         (x,) = ctx.saved_tensors
        ...         return grad * 3 * x ** 2
        >>> x = torch.tensor(2.0, requires_grad=True)
        >>> y = Cube.apply(x)
        >>> y
        tensor(8., grad_fn=<CubeBackward>)
        >>> (dx,) = torch.autograd.grad(y, x, create_graph=True)
        >>> dx, torch.autograd.grad(dx, x)[0]
        (tensor(12., grad_fn=<MulBackward0>), tensor(12.))
    """

    _backward_cls: type = FunctionNode

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._backward_cls = type(cls.__name__ + "Backward", (FunctionNode,),
                                 {"function": cls, "__module__": cls.__module__})

    @staticmethod
    def forward(ctx, *args, **kwargs):
        """The outputs, computed without recording (override; a static method).

        Example::

            >>> import tracegrad as torch
            >>> class Double(torch.autograd.Function):
            ...     @staticmethod
            ...     def forward(ctx, x):
            ...         return x * 2
            ...     @staticmethod
            ...     def backward(ctx, grad):
            ...         return grad * 2
            >>> Double.apply(torch.tensor([1.0, 2.0], requires_grad=True))
            tensor([2., 4.], grad_fn=<DoubleBackward>)
        """
        raise NotImplementedError("You must implement the forward function for custom "
                                  "autograd.Function.")

    @staticmethod
    def setup_context(ctx, inputs: tuple, output):
        """Fill in `ctx` from the inputs and output, when `forward` takes no ctx (override).

        Example::

            >>> import tracegrad as torch
            >>> class Square(torch.autograd.Function):
            ...     @staticmethod
            ...     def forward(x):
            ...         return x * x
            ...     @staticmethod
            ...     def setup_context(ctx, inputs, output):
            ...         ctx.save_for_backward(inputs[0])
            ...     @staticmethod
            ...     def backward(ctx, grad):
            ...         (x,) = ctx.saved_tensors
            ...         return 2 * x * grad
            >>> x = torch.tensor(3.0, requires_grad=True)
            >>> Square.apply(x).backward()
            >>> x.grad
            tensor(6.)
        """
        raise NotImplementedError("setup_context is not implemented.")

    @staticmethod
    def backward(ctx, *grad_outputs):
        """One gradient (or None) per forward input, given one per output (override; alias
        `vjp`). A gradient may have the input's broadcast shape: it is summed back.

        Example::

            >>> import tracegrad as torch
            >>> class Scale(torch.autograd.Function):
            ...     @staticmethod
            ...     def forward(ctx, x, factor):
            ...         ctx.factor = factor
            ...         return x * factor
            ...     @staticmethod
            ...     def backward(ctx, grad):
            ...         return grad * ctx.factor, None  # no gradient for the number
            >>> x = torch.ones(2, requires_grad=True)
            >>> Scale.apply(x, 3.0).sum().backward()
            >>> x.grad
            tensor([3., 3.])
        """
        raise NotImplementedError("You must implement either the backward or vjp method for "
                                  "your custom autograd.Function to use it with backward "
                                  "mode AD.")

    vjp = backward

    @classmethod
    def apply(cls, *args, **kwargs):
        """Run the operation on `args`; its outputs' `grad_fn` is a new backward node (when an
        input requires grad and grad mode is on).

        Example::

            >>> import tracegrad as torch
            >>> class Exp(torch.autograd.Function):
            ...     @staticmethod
            ...     def forward(ctx, x):
            ...         out = x.exp()
            ...         ctx.save_for_backward(out)
            ...         return out
            ...     @staticmethod
            ...     def backward(ctx, grad):
            ...         (out,) = ctx.saved_tensors
            ...         return grad * out
            >>> y = Exp.apply(torch.tensor([0.0], requires_grad=True))
            >>> y, y.grad_fn.name()
            (tensor([1.], grad_fn=<ExpBackward>), 'ExpBackward')
            >>> Exp.apply(torch.tensor([0.0]))  # nothing to record
            tensor([1.])
        """
        recording = grad_mode.state.enabled and any(
            isinstance(a, Tensor) and a._requires_grad for a in args)
        edges = tuple(a._edge() if recording and isinstance(a, Tensor) and a._requires_grad
                      else None for a in args)
        ctx = cls._backward_cls(edges)
        ctx.needs_input_grad = tuple(e is not None for e in edges)
        if len(edges) != sum(isinstance(a, Tensor) for a in args):  # shown: tensors only
            ctx.display_edges = tuple(e for a, e in zip(args, edges) if isinstance(a, Tensor))
        ctx._shapes = tuple(tuple(a.shape) if isinstance(a, Tensor) else None for a in args)
        if profiler.state.active:
            with profiler.record_function(cls.__name__):
                outputs = cls._run_forward(ctx, args, kwargs)
        else:
            outputs = cls._run_forward(ctx, args, kwargs)
        return _wrap_outputs(ctx, outputs, args, recording)

    @classmethod
    def _run_forward(cls, ctx, args: tuple, kwargs: dict):
        with grad_mode.no_grad():
            if cls.setup_context is Function.setup_context:
                return cls.forward(ctx, *args, **kwargs)
            outputs = cls.forward(*args, **kwargs)
            cls.setup_context(ctx, args, outputs)
            return outputs


def _wrap_outputs(ctx: FunctionNode, outputs, args: tuple, recording: bool):
    """Make `ctx` the grad_fn of each differentiable output; remember what was saved."""
    is_tuple = isinstance(outputs, tuple)
    outs = list(outputs) if is_tuple else [outputs]
    inputs = {id(a): a for a in args if isinstance(a, Tensor)}
    dirty = getattr(ctx, "_dirty", set())
    non_differentiable = getattr(ctx, "_non_differentiable", set())
    for i, out in enumerate(outs):
        if not isinstance(out, Tensor):
            continue
        differentiable = id(out) not in non_differentiable
        if id(out) in dirty:
            if out._requires_grad and out.grad_fn is None and recording:
                raise RuntimeError(LEAF_DIRTY)
            out._version[0] += 1
        elif id(out) in inputs:  # an input returned as it is: a new tensor sharing it
            alias = Tensor._wrap(out._data, out.dtype)
            alias._version = out._version
            out = outs[i] = alias
        if not differentiable:
            out._requires_grad = False
        elif recording and out.dtype.is_floating_point:
            out.grad_fn, out._requires_grad, out._output_nr = ctx, True, i
    ctx.n_outputs = len(outs)
    ctx._outputs = tuple((tuple(o.shape), o.dtype) if isinstance(o, Tensor) else None
                         for o in outs)
    if recording:
        ctx._saved = tuple((t, t._version[0] if t is not None else 0)
                           for t in getattr(ctx, "_to_save", ()))
    return tuple(outs) if is_tuple else outs[0]


def once_differentiable(backward):
    """Mark a `backward` as not differentiable itself: it runs without recording."""

    @functools.wraps(backward)
    def run_without_recording(ctx, *grads):
        """`backward`, with recording off."""
        with grad_mode.no_grad():
            return backward(ctx, *grads)

    return run_without_recording

