"""Errors that name the op, the operands' shapes and dtypes, and the user's line.

The first line keeps PyTorch's wording (so code matching PyTorch's messages still works,
and a shape error is a `RuntimeError`, as there); a second line adds where it happened.

>>> import tracegrad as torch
>>> torch.ones(3) + torch.ones(4)  # doctest: +ELLIPSIS
Traceback (most recent call last):
tracegrad...ShapeError: The size of tensor a (3) must match the size of tensor b (4) at ...
  in add of tensors with shapes [3] (float32) and [4] (float32), at ...
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_PACKAGE_ROOTS = (_PACKAGE_DIR, os.path.dirname(_PACKAGE_DIR) + os.sep + "compiler")


def user_frame():
    """The innermost stack frame outside tracegrad: the user's line."""
    frame = sys._getframe(1)
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if not path.startswith(_PACKAGE_ROOTS):
            return frame
        frame = frame.f_back
    return None


def user_location() -> str:
    frame = user_frame()
    if frame is None:
        return "<unknown>"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def describe_operands(inputs) -> str:
    parts = [f"[{', '.join(map(str, x._data.shape))}] ({x.dtype.name})" for x in inputs
             if hasattr(x, "_data")]
    if not parts:
        return ""
    kind = "tensor" if len(parts) == 1 else "tensors"
    shapes = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f" of {kind} with shapes {shapes}"


def op_error(kind: type, op: str, message: str, inputs=()) -> Exception:
    """An exception of type `kind` whose message names the op, operands and user line."""
    return kind(f"{message}\n  in {op}{describe_operands(inputs)}, at {user_location()}")


def not_a_tensor(op: str, argument: str, position: int, value, inputs=()) -> TypeError:
    """PyTorch's complaint about a non-tensor argument, with our second line (`inputs`: the
    op's other operands, to describe).

    >>> print(not_a_tensor("exp", "input", 1, "x"))  # doctest: +ELLIPSIS
    exp(): argument 'input' (position 1) must be Tensor, not str
      in exp, at ...
    """
    return op_error(TypeError, op, f"{op}(): argument '{argument}' (position {position}) must "
                                   f"be Tensor, not {type(value).__name__}", inputs)


class OutOfMemoryError(RuntimeError, MemoryError):
    """An array the machine cannot allocate. PyTorch raises RuntimeError (its allocator's
    "[enforce fail ...]"); code that catches NumPy's MemoryError catches this too.

    Example::

        >>> import tracegrad as torch
        >>> issubclass(torch.OutOfMemoryError, RuntimeError)
        True
        >>> issubclass(torch.OutOfMemoryError, MemoryError)
        True
    """


def allocation_error(op: str, shape, dtype, inputs=()) -> OutOfMemoryError:
    """The error for `op` failing to allocate its result of `shape` and `dtype` (a DType or
    a NumPy dtype, as NumPy's MemoryError carries)."""
    nbytes = math.prod(int(s) for s in shape) * np.dtype(getattr(dtype, "numpy", dtype)).itemsize
    return op_error(OutOfMemoryError, op, f"DefaultCPUAllocator: can't allocate memory: you "
                                          f"tried to allocate {nbytes} bytes for a result of "
                                          f"shape {list(shape)} ({dtype.name})", inputs)
