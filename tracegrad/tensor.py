"""`Tensor`: a NumPy array plus what autograd needs to know about it.

The class holds state and the autograd entry points (`backward`, hooks, `detach`, ...);
the operations are plain functions in `tracegrad.functions` that `methods.py` binds as
methods and operators.

>>> import tracegrad as torch
>>> x = torch.tensor([1.0, 2.0], requires_grad=True)
>>> y = (x * x).sum()
>>> y
tensor(5., grad_fn=<SumBackward0>)
>>> y.backward(); x.grad
tensor([2., 4.])
"""

from __future__ import annotations

import warnings
import weakref

import numpy as np

from . import autograd
from .autograd import grad_mode
from .autograd.graph import AccumulateGrad
from .compiler.ops.dtypes import DType, from_numpy
from .errors import op_error
from .printing import format_tensor
from .trace_state import state as _trace

_grad = grad_mode.state


class Size(tuple):
    """A tensor's shape: a tuple that prints like PyTorch's `torch.Size`.

    Example::

        >>> import tracegrad as torch
        >>> s = torch.zeros(2, 3).shape
        >>> s, s[0], s == (2, 3)
        (tracegrad.Size([2, 3]), 2, True)
    """

    def __repr__(self) -> str:
        return f"tracegrad.Size({list(self)})"

    def numel(self) -> int:
        """The number of elements a tensor of this shape holds.

        Example::

            >>> import tracegrad as torch
            >>> torch.Size([2, 3]).numel()
            6
        """
        return int(np.prod(self))


class Tensor:
    """A multi-dimensional array of one dtype that records operations for autograd
    (PyTorch's `torch.Tensor`).

    Make tensors with `tensor`, `zeros`, `arange`, `rand`, ...; as in PyTorch,
    `Tensor(data)` makes a float32 tensor of `data` and `Tensor(2, 3)` an uninitialised one
    of that shape. The operations of `tracegrad` are also methods and operators.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
        >>> y = (x @ x).sum()
        >>> y
        tensor(54., grad_fn=<SumBackward0>)
        >>> y.backward()
        >>> x.grad
        tensor([[ 7., 11.],
                [ 9., 13.]])
        >>> torch.Tensor([1, 2])
        tensor([1., 2.])
    """

    __slots__ = (
        "__dict__",
        "__weakref__",
        "_data",
        "_requires_grad",
        "_version",
        "dtype",
        "grad_fn",
    )
    # Rarely set state lives in the instance dict, defaulting to these (cheaper to create).
    _grad = None
    _base = None  # (base tensor, index or None) for a view
    _replay = None  # for a view: the (primitive, attributes) that make it from its base
    _views = None  # weak references to the views of this tensor (functions/shaping.py)
    _accumulator_ref = None  # weak reference to this leaf's AccumulateGrad node
    _hooks = None
    _retains_grad = False
    _output_nr = 0

    def __init__(self, *args, **kwargs):
        from .creation import tensor_constructor

        tensor_constructor(self, *args, **kwargs)

    # --- construction used by the library (fast: no checks) ---
    @classmethod
    def _wrap(cls, data: np.ndarray, dtype: DType, requires_grad: bool = False) -> Tensor:
        t = object.__new__(cls)
        t._data = data
        t.dtype = dtype
        t._requires_grad = requires_grad
        t.grad_fn = None
        t._version = [0]
        if _trace.tracer is not None:  # made inside a traced function: a constant there
            _trace.tracer.note_made(t)
        return t

    @classmethod
    def _from_node(cls, data: np.ndarray, node) -> Tensor:
        """A tensor for `data` made by `node` (a node's saved output, for higher order)."""
        t = cls._wrap(data, from_numpy(data.dtype), True)
        t.grad_fn = node
        return t

    # _apply_primitive(prim, inputs, attrs), which lets a primitive be called on tensors,
    # is bound by eager.py (it needs this class first).

    # --- autograd state ---
    @property
    def requires_grad(self) -> bool:
        """Whether operations on this tensor are recorded for autograd; settable on leaves
        (floating-point tensors only).

        Example::

            >>> import tracegrad as torch
            >>> x = torch.ones(2)
            >>> x.requires_grad
            False
            >>> x.requires_grad = True
            >>> (x * 2).requires_grad
            True
        """
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if self.grad_fn is not None:
            raise RuntimeError("you can only change requires_grad flags of leaf variables. If "
                               "you want to use a computed variable in a subgraph that doesn't "
                               "require differentiation use var_no_grad = var.detach().")
        if value and not self.dtype.is_floating_point:
            raise op_error(RuntimeError, "requires_grad", "Only Tensors of floating point and "
                                                          "complex dtype can require gradients",
                           (self,))
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set `requires_grad` in place (on a leaf); returns the tensor.

        Example::

            >>> import tracegrad as torch
            >>> torch.zeros(2).requires_grad_()
            tensor([0., 0.], requires_grad=True)
        """
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self) -> bool:
        """True unless a recorded operation made this tensor; `backward` fills in the `.grad` of
        leaves that require grad.

        Example::

            >>> import tracegrad as torch
            >>> x = torch.ones(2, requires_grad=True)
            >>> x.is_leaf, (x * 2).is_leaf
            (True, False)
        """
        return self.grad_fn is None

    @property
    def grad(self):
        """The gradient that `backward` accumulated (None until then); assignable. Non-leaf
        tensors keep none unless `retain_grad()` was called (reading it warns).

        Example::

            >>> import tracegrad as torch
            >>> x = torch.tensor([1.0, 2.0], requires_grad=True)
            >>> print(x.grad)
            None
            >>> (x * x).sum().backward()
            >>> x.grad
            tensor([2., 4.])
        """
        if self.grad_fn is not None and not self._retains_grad and self._grad is None:
            warnings.warn(
                "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. "
                "Its .grad attribute won't be populated during autograd.backward(). If you "
                "indeed want the .grad field to be populated for a non-leaf Tensor, use "
                ".retain_grad() on the non-leaf Tensor. If you access the non-leaf Tensor by "
                "mistake, make sure you access the leaf Tensor instead.", UserWarning,
                stacklevel=2)
        if _trace.tracer is not None:
            self._has_grad()  # a trace notes what the function saw
        return self._grad

    @grad.setter
    def grad(self, value) -> None:
        if value is not None:
            if not isinstance(value, Tensor):
                raise op_error(TypeError, "grad", f"assigned grad expected to be a Tensor or "
                                                  f"None but got grad of type "
                                                  f"{type(value).__name__}", (self,))
            if value._data.shape != self._data.shape or value.dtype is not self.dtype:
                raise op_error(RuntimeError, "grad", "assigned grad has data of a different "
                               + ("size" if value._data.shape != self._data.shape else "type"),
                               (self, value))
        if _trace.tracer is not None:
            _trace.tracer.note_grad_set(self)
        self._grad = value

    def _has_grad(self) -> bool:
        """Whether this tensor has a `.grad`, for library code that branches on it and
        then uses it: a trace notes the answer (`Tracer.observe_grad`) and, as `.grad`
        does, whose `.grad` it is."""
        if _trace.tracer is not None:
            _trace.tracer.observe_grad(self)
            if self._grad is not None:
                _trace.tracer.note_grad_of(self, self._grad)
        return self._grad is not None

    def _bases(self):
        """The tensors this one is a view of, nearest first (its base, that one's, ...)."""
        view = self
        while view._base is not None:
            view = view._base[0]
            yield view

    def _unlink_views(self) -> None:
        """End the view relations of this tensor, whose memory `.data = ...` replaces: with
        its base and with its own views, which keep the memory they had (as in PyTorch).
        Everything that follows `_base` (in-place writes reaching a base or the other
        views, a trace deriving a view from its base, the sharing rule) then sees
        separate tensors, and a compiled call traced when they were views is refused
        (`compiled_variant._held_views`). Views of the views keep theirs: they still
        share those views' memory."""
        if self._base is not None:
            base = self._base[0]
            base._views = [ref for ref in base._views or ()
                           if (view := ref()) is not None and view is not self]
            self._base = self._replay = None
        for ref in self._views or ():
            view = ref()
            if view is not None:
                view._base = view._replay = None
        self._views = None

    def _accumulator(self) -> AccumulateGrad:
        """This leaf's AccumulateGrad node (one per leaf while a graph uses it)."""
        node = self._accumulator_ref() if self._accumulator_ref is not None else None
        if node is None:
            node = AccumulateGrad(self)
            self._accumulator_ref = weakref.ref(node)
        return node

    def _edge(self):
        """Where gradient for this tensor goes: (node, output number)."""
        if self.grad_fn is not None:
            return (self.grad_fn, self._output_nr)
        return (self._accumulator(), 0)

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Accumulate d(self)/d(leaf) into every leaf's `.grad` (see `autograd.backward`).

        `gradient` (d(loss)/d(self)) is needed unless self has one element; the graph's
        saved values are freed unless `retain_graph`; `create_graph` records the backward
        pass for higher derivatives; `inputs` restricts which tensors accumulate.

        Example::

            >>> import tracegrad as torch
            >>> x = torch.tensor([1.0, 2.0], requires_grad=True)
            >>> (x ** 2).sum().backward()
            >>> x.grad
            tensor([2., 4.])
            >>> (x ** 2).backward(torch.tensor([1.0, 0.1]))
            >>> x.grad
            tensor([4.0000, 4.4000])
        """
        autograd.backward(self, gradient, retain_graph, create_graph, inputs=inputs)

    def register_hook(self, hook):
        """`hook(grad)` runs when this tensor's gradient is computed and may return a new one
        to use instead; returns a handle whose `remove()` unregisters it.

        Example::

            >>> import tracegrad as torch
            >>> x = torch.tensor([1.0, 2.0], requires_grad=True)
            >>> handle = x.register_hook(lambda grad: grad * 10)
            >>> x.sum().backward()
            >>> x.grad
            tensor([10., 10.])
            >>> handle.remove()
        """
        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require "
                               "gradient")
        if self.grad_fn is None:
            self._hooks = (self._hooks or []) + [hook]
            return _TensorHookHandle(self, hook)
        node = self.grad_fn
        node.pre_hooks = dict(node.pre_hooks or {})
        node.pre_hooks.setdefault(self._output_nr, []).append(hook)
        return _NodeHookHandle(node, self._output_nr, hook)

    def retain_grad(self) -> None:
        """Keep `.grad` for this non-leaf tensor too (leaves keep theirs anyway).

        Example::

            >>> import tracegrad as torch
            >>> x = torch.tensor([1.0, 2.0], requires_grad=True)
            >>> y = x * 3
            >>> y.retain_grad()
            >>> (y * y).sum().backward()
            >>> y.grad
            tensor([ 6., 12.])
        """
        if not self._requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self.grad_fn is None or self._retains_grad:
            return
        self._retains_grad = True
        node = self.grad_fn
        node.retained = dict(node.retained or {})
        node.retained[self._output_nr] = weakref.ref(self)

    @property
    def retains_grad(self) -> bool:
        """Whether `retain_grad()` was called on this non-leaf tensor.

        Example::

            >>> import tracegrad as torch
            >>> y = torch.ones(1, requires_grad=True) * 2
            >>> y.retains_grad
            False
            >>> y.retain_grad()
            >>> y.retains_grad
            True
        """
        return self._retains_grad

    def detach(self) -> Tensor:
        """A tensor sharing this one's memory (and version counter), outside the graph: it
        does not require grad.

        Example::

            >>> import tracegrad as torch
            >>> x = torch.tensor([1.0], requires_grad=True)
            >>> y = (x * 2).detach()
            >>> y, y.requires_grad
            (tensor([2.]), False)
        """
        t = Tensor._wrap(self._data, self.dtype)
        t._version = self._version
        return t

    def detach_(self) -> Tensor:
        """Detach this tensor from the graph in place: it becomes a leaf that does not require
        grad; returns it.

        Example::

            >>> import tracegrad as torch
            >>> y = torch.ones(1, requires_grad=True) * 2
            >>> y.detach_()
            tensor([2.])
            >>> y.is_leaf
            True
        """
        self.grad_fn = None
        self._requires_grad = False
        return self

    @property
    def data(self) -> Tensor:
        """The values as a tensor outside the graph (sharing memory, as `detach()`); assigning
        a tensor replaces the values (and dtype) without recording.

        Example::

            >>> import tracegrad as torch
            >>> x = torch.tensor([1.0], requires_grad=True)
            >>> x.data
            tensor([1.])
            >>> x.data = torch.tensor([5.0])
            >>> x
            tensor([5.], requires_grad=True)

        As in PyTorch, views made before keep the memory they had:

            >>> w = torch.zeros(3); v = w[:2]
            >>> w.data = torch.ones(3)
            >>> v
            tensor([0., 0.])
        """
        return self.detach()

    @data.setter
    def data(self, value: Tensor) -> None:
        if value._data is not self._data:
            if _trace.tracer is not None:  # a compiled call would write into the old memory
                _trace.tracer.break_graph("`.data = ...` replaces a tensor's memory, which a "
                                          "compiled call cannot do")
            self._unlink_views()
        self._data = value._data
        self.dtype = value.dtype

    # --- facts about the array ---
    @property
    def shape(self) -> Size:
        """The size of each dimension, as a `Size` (a tuple).

        Example::

            >>> import tracegrad as torch
            >>> torch.zeros(2, 3).shape
            tracegrad.Size([2, 3])
        """
        return Size(self._data.shape)

    def size(self, dim: int | None = None):
        """`shape` as a `Size`, or the size of dimension `dim` as an int.

        Example::

            >>> import tracegrad as torch
            >>> x = torch.zeros(2, 3)
            >>> x.size(), x.size(-1)
            (tracegrad.Size([2, 3]), 3)
        """
        if dim is None:
            return Size(self._data.shape)
        from .compiler.ops import normalize_axis

        return self._data.shape[normalize_axis(dim, self._data.ndim)]

    def dim(self) -> int:
        """The number of dimensions (also `ndim`).

        Example::

            >>> import tracegrad as torch
            >>> torch.zeros(2, 3).dim()
            2
        """
        return self._data.ndim

    @property
    def ndim(self) -> int:
        """The number of dimensions (also `dim()`).

        Example::

            >>> import tracegrad as torch
            >>> torch.tensor(1.0).ndim
            0
        """
        return self._data.ndim

    def numel(self) -> int:
        """The number of elements (alias `nelement`).

        Example::

            >>> import tracegrad as torch
            >>> torch.zeros(2, 3).numel()
            6
        """
        return int(self._data.size)

    nelement = numel

    def element_size(self) -> int:
        """The size of one element in bytes.

        Example::

            >>> import tracegrad as torch
            >>> torch.zeros(1).element_size(), torch.zeros(1, dtype=torch.float64).element_size()
            (4, 8)
        """
        return self.dtype.itemsize

    def is_floating_point(self) -> bool:
        """Whether the dtype is float32 or float64.

        Example::

            >>> import tracegrad as torch
            >>> torch.tensor([1.0]).is_floating_point(), torch.tensor([1]).is_floating_point()
            (True, False)
        """
        return self.dtype.is_floating_point

    def is_contiguous(self) -> bool:
        """Whether the elements lie in memory in row-major order, without gaps.

        Example::

            >>> import tracegrad as torch
            >>> x = torch.zeros(2, 3)
            >>> x.is_contiguous(), x.t().is_contiguous()
            (True, False)
        """
        return bool(self._data.flags.c_contiguous)

    @property
    def device(self) -> str:
        """Always "cpu" (a string, where PyTorch has a `torch.device`): tensors live in host
        memory.

        Example::

            >>> import tracegrad as torch
            >>> torch.ones(1).device
            'cpu'
        """
        return "cpu"

    @property
    def is_cuda(self) -> bool:
        """Always False: tensors live in host memory.

        Example::

            >>> import tracegrad as torch
            >>> torch.ones(1).is_cuda
            False
        """
        return False

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    # --- conversion ---
    def numpy(self, force: bool = False) -> np.ndarray:
        """The NumPy array holding the values (shared memory, not a copy). Raises if the tensor
        requires grad, as in PyTorch (use `detach().numpy()`, or `force=True`).

        Example::

            >>> import tracegrad as torch
            >>> x = torch.tensor([1.0, 2.0])
            >>> a = x.numpy()
            >>> a[0] = 5.0
            >>> x
            tensor([5., 2.])
            >>> torch.ones(1, requires_grad=True).numpy()
            Traceback (most recent call last):
            ...
            RuntimeError: Can't call numpy() on Tensor that requires grad...
        """
        if self._requires_grad and not force:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use "
                               "tensor.detach().numpy() instead.")
        if _trace.tracer is not None:
            _trace.tracer.break_graph("Tensor.numpy() (a NumPy detour)")
        return self._data

    def __array__(self, dtype=None, copy=None):
        if self._requires_grad:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use "
                               "tensor.detach().numpy() instead.")
        if _trace.tracer is not None:
            _trace.tracer.break_graph("conversion to a NumPy array")
        return self._data if dtype is None else self._data.astype(dtype, copy=False)

    def item(self):
        """The value of a one-element tensor as a Python number.

        Example::

            >>> import tracegrad as torch
            >>> torch.tensor([2.5]).item(), torch.tensor(3).item()
            (2.5, 3)
        """
        if self._data.size != 1:
            raise RuntimeError(f"a Tensor with {self._data.size} elements cannot be converted "
                               f"to Scalar")
        value = self._data.reshape(()).item()
        if _trace.tracer is not None:  # Python now depends on the value: guard it
            _trace.tracer.guard(self, value, "item")
        return value

    def tolist(self):
        """The values as (nested) Python lists of Python numbers.

        Example::

            >>> import tracegrad as torch
            >>> torch.tensor([[1, 2], [3, 4]]).tolist()
            [[1, 2], [3, 4]]
        """
        if _trace.tracer is not None:
            _trace.tracer.break_graph("Tensor.tolist()")
        return self._data.tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.dtype.category != 1 or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an "
                            "index")
        return int(self.item())

    def __bool__(self) -> bool:
        if self._data.size != 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is "
                               "ambiguous")
        value = bool(self._data.reshape(()).item())
        if _trace.tracer is not None:  # a branch now depends on the value: guard it
            _trace.tracer.guard(self, value, "bool")
        return value

    def __format__(self, spec: str) -> str:
        if self._data.ndim == 0:
            return format(self.item(), spec)
        return format(repr(self), spec)

    def __hash__(self) -> int:
        return id(self)

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    def __repr__(self, *, tensor_contents=None) -> str:
        suffixes = []
        if self.grad_fn is not None:
            # PyTorch shows the class name: "CopySlices" for "torch::autograd::CopySlices"
            suffixes.append(f"grad_fn=<{self.grad_fn.name().rsplit('::', 1)[-1]}>")
        elif self._requires_grad:
            suffixes.append("requires_grad=True")
        return format_tensor(self._data, self.dtype.name, suffixes)

    __str__ = __repr__

    def __reduce__(self):
        return (_rebuild, (self._data.copy(), self.dtype.name, self._requires_grad))


def _rebuild(data, dtype_name, requires_grad):
    from .compiler.ops.dtypes import from_name

    return Tensor._wrap(data, from_name(dtype_name), requires_grad)


class _TensorHookHandle:
    def __init__(self, tensor, hook):
        self.tensor, self.hook = tensor, hook

    def remove(self) -> None:
        self.tensor._hooks = [h for h in (self.tensor._hooks or []) if h is not self.hook]


class _NodeHookHandle:
    def __init__(self, node, output_nr, hook):
        self.node, self.output_nr, self.hook = node, output_nr, hook

    def remove(self) -> None:
        hooks = self.node.pre_hooks.get(self.output_nr, [])
        self.node.pre_hooks[self.output_nr] = [h for h in hooks if h is not self.hook]
