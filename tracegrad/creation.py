"""Making tensors: from data, filled, ranges, random; dtype inference as in PyTorch.

Python floats become float32, Python ints int64, bools bool; NumPy arrays keep their
dtype. `linspace` and `arange` compute their values the way PyTorch's CPU kernels do, so
the float32 results agree bit for bit.

>>> import tracegrad as torch
>>> torch.tensor([1, 2]).dtype, torch.tensor([1.0, 2]).dtype
(tracegrad.int64, tracegrad.float32)
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .compiler.ops import dtypes
from .compiler.ops.dtypes import DType, float32, int64
from .errors import allocation_error, op_error
from .tensor import Tensor

_DEFAULT_FOR_KIND = {"f": float32, "i": int64, "u": int64, "b": dtypes.bool_}


def _infer_dtype(data, array: np.ndarray, typed: list) -> DType:
    """PyTorch's rule: Python numbers give default dtypes, NumPy values and tensors keep
    theirs (also inside lists: `[np.float64(1), 2.0]` is float64), then promotion."""
    if isinstance(data, (np.ndarray, np.generic)):
        return dtypes.from_numpy(array.dtype)  # NumPy's own types are kept
    found = [dtype for dtype, _ in typed]
    if typed and sum(size for _, size in typed) == array.size:  # no Python numbers
        return functools.reduce(dtypes.promote_types, found)
    try:
        default = _DEFAULT_FOR_KIND[array.dtype.kind]
    except KeyError:  # strings, None, objects (PyTorch: RuntimeError for None, else TypeError)
        odd = [x for x in array.ravel().tolist() if not isinstance(x, (int, float, bool))][:1]
        kind = RuntimeError if odd and odd[0] is None else TypeError
        raise op_error(kind, "tensor", f"Could not infer dtype of "
                                       f"{type(odd[0] if odd else data).__name__}") from None
    return functools.reduce(dtypes.promote_types, found, default)


def _finish(t: Tensor, requires_grad: bool) -> Tensor:
    if requires_grad:
        t.requires_grad = True  # the setter checks the dtype
    return t


def tensor(data, dtype: DType | None = None, device=None, requires_grad: bool = False,
           pin_memory: bool = False) -> Tensor:
    """A new tensor holding a copy of `data` (nested lists, scalars, arrays, tensors).

    Without `dtype`, Python floats give float32, ints int64 and bools bool; NumPy arrays
    and tensors keep their dtype.

    Example::

        >>> import tracegrad as torch
        >>> torch.tensor([[1, 2], [3, 4]])
        tensor([[1, 2],
                [3, 4]])
        >>> torch.tensor([1.0, 2.0], requires_grad=True)
        tensor([1., 2.], requires_grad=True)
        >>> torch.tensor(3.5, dtype=torch.float64)
        tensor(3.5000, dtype=tracegrad.float64)
    """
    if isinstance(data, Tensor):
        array = data._data.copy()
        dtype = dtype or data.dtype
    else:
        typed = []
        array = np.array(_unwrap_nested(data, typed))
        dtype = dtype or _infer_dtype(data, array, typed)
    return _finish(Tensor._wrap(np.array(array, dtype=dtype.numpy), dtype), requires_grad)


def _unwrap_nested(data, typed: list):
    """Lists may hold 0-d tensors (`[t1, t2]`): NumPy needs their values. The dtypes (and
    sizes) of tensors and NumPy values met on the way are appended to `typed`."""
    if isinstance(data, (list, tuple)):
        return [_unwrap_nested(x, typed) for x in data]
    if isinstance(data, Tensor):
        typed.append((data.dtype, data._data.size))
        return data._data
    if isinstance(data, (np.generic, np.ndarray)):
        typed.append((dtypes.from_numpy(data.dtype), np.size(data)))
    return data


def as_tensor(data, dtype: DType | None = None, device=None) -> Tensor:
    """Like `tensor`, but shares memory with a NumPy array or tensor when it can.

    Example::

        >>> import tracegrad as torch
        >>> import numpy as np
        >>> a = np.array([1.0, 2.0])
        >>> t = torch.as_tensor(a)
        >>> a[0] = 5.0
        >>> t
        tensor([5., 2.], dtype=tracegrad.float64)
    """
    if isinstance(data, Tensor):
        return data if dtype in (None, data.dtype) else data.to(dtype)
    if isinstance(data, np.ndarray) and (dtype is None or dtype.numpy == data.dtype):
        return from_numpy(data)
    return tensor(data, dtype=dtype)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing `array`'s memory (and its dtype): changes to one show in the other.

    Example::

        >>> import tracegrad as torch
        >>> import numpy as np
        >>> a = np.zeros(2, dtype=np.float32)
        >>> t = torch.from_numpy(a)
        >>> t[0] = 1.0
        >>> a
        array([1., 0.], dtype=float32)
    """
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(array).__name__})")
    return Tensor._wrap(array, dtypes.from_numpy(array.dtype))


def tensor_constructor(self: Tensor, *args, **kwargs) -> None:
    """`Tensor(2, 3)` (uninitialised float32 of that shape) or `Tensor([1, 2])` (data)."""
    if len(args) == 1 and not isinstance(args[0], int):
        made = tensor(args[0], dtype=float32)
    else:
        made = empty(*args)
    for slot in ("_data", "dtype", "_requires_grad", "grad_fn", "_version"):
        setattr(self, slot, getattr(made, slot))


def int_sizes(args, op: str, argument: str = "size", inputs=()) -> tuple:
    """`f(2, 3)`, `f((2, 3))` and `f([2, 3])` all mean (2, 3); anything else that is not
    ints raises PyTorch's TypeError naming `op` and `argument`.

    >>> int_sizes(([2, 3],), "zeros")
    (2, 3)
    """
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = args[0]
    try:
        return tuple(int(a) for a in args)
    except (TypeError, ValueError):
        bad = [type(a).__name__ for a in args if not isinstance(a, (int, float))][:1]
        raise op_error(TypeError, op, f"{op}(): argument '{argument}' (position 1) must be "
                                      f"tuple of ints, not {(bad or ['float'])[0]}",
                       inputs) from None


def _shape(size, op: str = "empty") -> tuple:
    shape = int_sizes(size, op)
    if any(s < 0 for s in shape):
        raise op_error(RuntimeError, op, f"Trying to create tensor with negative dimension "
                                         f"{min(shape)}: {list(shape)}")
    return shape


def allocated(op: str, dtype: DType, make) -> np.ndarray:
    """`make()`, a new array; if the machine cannot hold it, an error that names `op`, the
    shape and the bytes asked for instead of NumPy's bare MemoryError."""
    try:
        return make()
    except MemoryError as exc:  # NumPy's says which shape it could not allocate
        raise allocation_error(op, getattr(exc, "shape", ()), dtype) from None


def _filled(fill, size, dtype, requires_grad, default=float32, op="full") -> Tensor:
    dtype, shape = dtype or default, _shape(size, op)
    array = allocated(op, dtype, lambda: np.full(shape, fill, dtype=dtype.numpy))
    return _finish(Tensor._wrap(array, dtype), requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad=False, out=None) -> Tensor:
    """A tensor of zeros of the given size (ints or one tuple); float32 unless `dtype`.

    Example::

        >>> import tracegrad as torch
        >>> torch.zeros(2, 3)
        tensor([[0., 0., 0.],
                [0., 0., 0.]])
        >>> torch.zeros((2,), dtype=torch.int64)
        tensor([0, 0])
    """
    return _filled(0, size, dtype, requires_grad, op="zeros")


def ones(*size, dtype=None, device=None, requires_grad=False, out=None) -> Tensor:
    """A tensor of ones of the given size (ints or one tuple); float32 unless `dtype`.

    Example::

        >>> import tracegrad as torch
        >>> torch.ones(2)
        tensor([1., 1.])
        >>> torch.ones(1, 2, dtype=torch.bool)
        tensor([[True, True]])
    """
    return _filled(1, size, dtype, requires_grad, op="ones")


def empty(*size, dtype=None, device=None, requires_grad=False, memory_format=None) -> Tensor:
    """An uninitialised tensor of the given size (its values are arbitrary); float32 unless
    `dtype`.

    Example::

        >>> import tracegrad as torch
        >>> torch.empty(2, 3).shape
        tracegrad.Size([2, 3])
    """
    dtype, shape = dtype or float32, _shape(size, "empty")
    array = allocated("empty", dtype, lambda: np.empty(shape, dtype=dtype.numpy))
    return _finish(Tensor._wrap(array, dtype), requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A tensor of shape `size` filled with `fill_value`; without `dtype`, the value's kind
    decides (float: float32, int: int64, bool: bool).

    Example::

        >>> import tracegrad as torch
        >>> torch.full((2, 2), 7)
        tensor([[7, 7],
                [7, 7]])
        >>> torch.full((2,), 0.5)
        tensor([0.5000, 0.5000])
    """
    default = dtypes.DEFAULT_FOR_CATEGORY[dtypes.scalar_category(fill_value)]
    return _filled(fill_value, (size,), dtype, requires_grad, default)


def _like(fill, input, dtype, requires_grad, op) -> Tensor:
    return _filled(fill, (input.shape,), dtype or input.dtype, requires_grad, op=op)


def zeros_like(input, dtype=None, device=None, requires_grad=False, memory_format=None):
    """Zeros of `input`'s shape and (unless `dtype`) dtype.

    Example::

        >>> import tracegrad as torch
        >>> torch.zeros_like(torch.tensor([[1, 2]]))
        tensor([[0, 0]])
    """
    return _like(0, input, dtype, requires_grad, "zeros_like")


def ones_like(input, dtype=None, device=None, requires_grad=False, memory_format=None):
    """Ones of `input`'s shape and (unless `dtype`) dtype.

    Example::

        >>> import tracegrad as torch
        >>> torch.ones_like(torch.tensor([1.0, 2.0]))
        tensor([1., 1.])
    """
    return _like(1, input, dtype, requires_grad, "ones_like")


def empty_like(input, dtype=None, device=None, requires_grad=False, memory_format=None):
    """An uninitialised tensor of `input`'s shape and (unless `dtype`) dtype.

    Example::

        >>> import tracegrad as torch
        >>> torch.empty_like(torch.ones(2, 3)).shape
        tracegrad.Size([2, 3])
    """
    return empty(input.shape, dtype=dtype or input.dtype, requires_grad=requires_grad)


def full_like(input, fill_value, dtype=None, device=None, requires_grad=False):
    """`fill_value` in `input`'s shape and (unless `dtype`) dtype.

    Example::

        >>> import tracegrad as torch
        >>> torch.full_like(torch.tensor([1.0, 2.0]), 3)
        tensor([3., 3.])
    """
    return _like(fill_value, input, dtype, requires_grad, "full_like")


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Values from `start` to `end` (exclusive): start + i * step, computed as PyTorch's CPU
    kernel does, so that float results agree bit for bit (up to 32768 values).

    `arange(end)` starts at 0. All-integer arguments give int64, otherwise float32.

    Example::

        >>> import tracegrad as torch
        >>> torch.arange(5)
        tensor([0, 1, 2, 3, 4])
        >>> torch.arange(1, 2.5, 0.5)
        tensor([1.0000, 1.5000, 2.0000])
    """
    if end is None:
        start, end = 0, start
    start, end, step = (x.item() if isinstance(x, Tensor) else x for x in (start, end, step))
    if step == 0:
        raise RuntimeError("step must be nonzero")
    if (end - start) * step < 0:
        raise RuntimeError("upper bound and larger bound inconsistent with step sign")
    all_ints = all(isinstance(v, int) for v in (start, end, step))
    dtype = dtype or (int64 if all_ints else float32)
    count = math.ceil((end - start) / step)
    if all_ints:
        values = start + np.arange(count, dtype=np.int64) * step
    else:
        values = _arange_values(start, step, count, dtype.numpy)
    return _finish(Tensor._wrap(values.astype(dtype.numpy), dtype), requires_grad)


def _arange_values(start: float, step: float, count: int, numpy_dtype) -> np.ndarray:
    """PyTorch's vectorised loop: pairs of 32-byte SIMD vectors, each from a base value
    rounded to the output type plus lane * step, then a scalar tail; in float64 with fused
    multiply-adds, emulated with a wider type."""
    index = np.arange(count)
    lanes = 32 // max(numpy_dtype.itemsize, 4)
    lane = np.where(index < count - count % (2 * lanes), index % lanes, 0)
    step = np.longdouble(step)
    base = (np.longdouble(start) + (index - lane) * step).astype(numpy_dtype)
    return (base.astype(np.longdouble) + lane * step).astype(np.float64)


def linspace(start, end, steps: int, *, dtype=None, device=None,
             requires_grad=False) -> Tensor:
    """`steps` evenly spaced values from `start` to `end` inclusive, computed as PyTorch's
    CPU kernel does (in the output dtype, from the start for the first half and from the
    end for the second; its compiler fuses each multiply-add, emulated here with a wider
    type).

    Example::

        >>> import tracegrad as torch
        >>> torch.linspace(0, 1, 5)
        tensor([0.0000, 0.2500, 0.5000, 0.7500, 1.0000])
    """
    dtype = dtype or float32
    if steps < 0:
        raise RuntimeError("number of steps must be non-negative")
    kind = np.float64 if not dtype.is_floating_point else dtype.numpy.type
    lo, hi = kind(start), kind(end)
    index = np.arange(steps)
    if steps <= 1:
        values = np.full(steps, lo, dtype=kind)
    else:
        step = (hi - lo) / kind(steps - 1)
        wide = np.longdouble  # one rounding per multiply-add, as PyTorch's fused ones
        from_start = wide(lo) + wide(step) * index
        from_end = wide(hi) - wide(step) * (steps - index - 1)
        values = np.where(index < steps // 2, from_start, from_end).astype(kind)
    return _finish(Tensor._wrap(values.astype(dtype.numpy), dtype), requires_grad)


def eye(n: int, m: int | None = None, *, dtype=None, device=None, requires_grad=False):
    """The `n` x `m` (default `n` x `n`) matrix with ones on the diagonal; float32 unless
    `dtype`.

    Example::

        >>> import tracegrad as torch
        >>> torch.eye(2)
        tensor([[1., 0.],
                [0., 1.]])
        >>> torch.eye(2, 3, dtype=torch.int64)
        tensor([[1, 0, 0],
                [0, 1, 0]])
    """
    dtype = dtype or float32
    return _finish(Tensor._wrap(np.eye(n, m, dtype=dtype.numpy), dtype), requires_grad)
