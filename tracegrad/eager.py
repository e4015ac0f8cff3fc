"""Eager execution: run a primitive's NumPy kernel now and record it for autograd.

This is the hot path of every operation, so it does little: unwrap, call the kernel,
wrap, and make a graph node only when grad mode is on and an input requires grad.

>>> import tracegrad as torch
>>> from tracegrad.compiler.ops import mul
>>> mul(torch.tensor([1.0, 2.0]), 3.0)
tensor([3., 6.])
"""

from __future__ import annotations

import numpy as np

from . import native_rows
from .autograd import grad_mode, profiler
from .autograd.graph import PrimitiveNode
from .compiler.ops import ShapeError, Spec, broadcast_shapes, cast
from .compiler.ops.broadcast_view import broadcast_view
from .compiler.ops.dtypes import ALL_DTYPES, result_type
from .compiler.ops.dtypes import from_numpy as dtype_of_numpy
from .errors import allocation_error, op_error
from .tensor import Tensor
from .trace_state import state as _trace

_grad = grad_mode.state
_ndarray = np.ndarray
_DTYPES = {d.numpy: d for d in ALL_DTYPES}
_new = object.__new__
_NATIVE_ROW_OPS = native_rows.OPS  # large ones run on native kernels (native_rows.py)
_ONE_ELEMENT_MIN_SIZE = 1024  # a broadcast of one value this large is computed on one element


def apply(prim, inputs: tuple, attrs: dict):
    """Run `prim` on tensors (and Python scalars); returns a new Tensor."""
    if len(inputs) == 2:  # the common cases, without building a list
        a, b = inputs
        arrays = (a._data if isinstance(a, Tensor) else a, b._data if isinstance(b, Tensor) else b)
    elif len(inputs) == 1:
        (a,) = inputs
        arrays = (a._data if isinstance(a, Tensor) else a,)
    else:
        arrays = [x._data if isinstance(x, Tensor) else x for x in inputs]
    recording = _grad.enabled
    if profiler.state.active:
        with profiler.record_function(prim.name):
            out = _run_kernel(prim, inputs, arrays, attrs)
    elif not recording and prim.kind == "elementwise" and _all_broadcast(arrays):
        out = _on_one_element(prim, inputs, arrays, attrs)
    elif prim in _NATIVE_ROW_OPS and native_rows.large(arrays):
        out = native_rows.run(prim, arrays, attrs)
        if out is None:
            out = _run_kernel(prim, inputs, arrays, attrs)
    else:
        try:
            out = prim.kernel(*arrays, **attrs)
        except (ValueError, IndexError, TypeError, MemoryError) as exc:
            raise _explain(prim, inputs, attrs, exc) from None
    if type(out) is not _ndarray:
        out = np.asarray(out)
    result = _new(Tensor)  # Tensor._wrap, inlined: this is the hottest line of eager mode
    result._data = out
    result.dtype = dtype = _DTYPES.get(out.dtype) or dtype_of_numpy(out.dtype)
    result.grad_fn = None
    result._version = [0]
    result._requires_grad = False
    if recording and prim.vjp is not None and dtype.is_floating_point:
        for x in inputs:
            if isinstance(x, Tensor) and x._requires_grad:
                result.grad_fn = PrimitiveNode(prim, inputs, attrs, out, result._version)
                result._requires_grad = True
                break
    if _trace.tracer is not None:
        _trace.tracer.record(prim, inputs, attrs, result)
    return result


def _all_broadcast(arrays) -> bool:
    """Whether every array operand repeats one element (a broadcast of a scalar, as the
    backward of `sum` or `mean` makes): the op then needs computing once. Only worth it for
    large arrays: `_on_one_element` takes ~2 us, NumPy as long for a few thousand elements."""
    found = False
    for a in arrays:
        if type(a) is _ndarray:
            if a.size < _ONE_ELEMENT_MIN_SIZE or any(a.strides):
                return False
            found = True
    return found


def _on_one_element(prim, inputs, arrays, attrs):
    try:
        shape = broadcast_shapes(*(a.shape for a in arrays if type(a) is _ndarray))
    except ShapeError as exc:
        raise _explain(prim, inputs, attrs, exc) from None
    # Each array's first element, as a 0-d view (every element is that one).
    ones = [a[(0,) * a.ndim + (...,)] if type(a) is _ndarray else a for a in arrays]
    value = np.asarray(_run_kernel(prim, inputs, ones, attrs))
    return broadcast_view(value, shape)  # read-only; an in-place write copies it first


def _run_kernel(prim, inputs, arrays, attrs):
    try:
        return prim.kernel(*arrays, **attrs)
    except (ValueError, IndexError, TypeError, MemoryError) as exc:
        raise _explain(prim, inputs, attrs, exc) from None


def _explain(prim, inputs, attrs, exc: Exception) -> Exception:
    """Turn NumPy's complaint into PyTorch's wording via the op's shape rule."""
    specs = [Spec(x._data.shape, x.dtype) if hasattr(x, "_data") else Spec((), None)
             for x in inputs]
    try:
        prim.shape(*specs, **attrs)
    except (ShapeError, IndexError, RuntimeError) as rule_error:
        return op_error(type(rule_error), prim.name, str(rule_error), inputs)
    if isinstance(exc, MemoryError):  # NumPy's carries the shape it could not allocate
        return allocation_error(prim.name, getattr(exc, "shape", ()),
                                getattr(exc, "dtype", np.dtype(np.float32)), inputs)
    return op_error(RuntimeError if isinstance(exc, ValueError) else type(exc), prim.name,
                    str(exc), inputs)


def promote(*operands):
    """Operands converted to their common dtype (PyTorch's rule); scalars stay scalars."""
    dtype = result_type(operands)
    return dtype, tuple(x if not isinstance(x, Tensor) or x.dtype is dtype else to_dtype(x, dtype)
                        for x in operands)


def to_dtype(x, dtype):
    """`x` cast to `dtype` (recorded, so gradients flow back to float inputs)."""
    return apply(cast, (x,), {"dtype": dtype})


Tensor._apply_primitive = staticmethod(apply)
