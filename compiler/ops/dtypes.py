"""The five dtypes of the op set and PyTorch's type-promotion rule.

A dtype is a small immutable object that knows its NumPy equivalent and its *category*
(bool < integer < floating point), which is what promotion compares first.

>>> promote_types(int64, float32).name
'float32'
"""

from __future__ import annotations

import numpy as np


class DType:
    """One element type: `tracegrad.float32` (alias `float`), `float64` (`double`),
    `int64` (`long`), `int32` (`int`) or `bool`; `tracegrad.dtype` is this class.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([1, 2])
        >>> x.dtype, x.dtype.is_floating_point, x.dtype.itemsize
        (tracegrad.int64, False, 8)
        >>> torch.float is torch.float32, isinstance(torch.float64, torch.dtype)
        (True, True)
    """

    __slots__ = ("category", "is_floating_point", "itemsize", "name", "numpy")

    def __init__(self, name: str, numpy_type: type, category: int):
        self.name = name
        self.numpy = np.dtype(numpy_type)
        self.category = category  # 0 bool, 1 integer, 2 floating point
        self.itemsize = self.numpy.itemsize
        self.is_floating_point = category == 2

    def __repr__(self) -> str:
        return f"tracegrad.{self.name}"

    def __reduce__(self):
        return (from_name, (self.name,))


bool_ = DType("bool", np.bool_, 0)
int32 = DType("int32", np.int32, 1)
int64 = DType("int64", np.int64, 1)
float32 = DType("float32", np.float32, 2)
float64 = DType("float64", np.float64, 2)

ALL_DTYPES = (bool_, int32, int64, float32, float64)
_BY_NUMPY = {d.numpy: d for d in ALL_DTYPES}
_BY_NAME = {d.name: d for d in ALL_DTYPES}
# What a Python scalar of each category becomes (PyTorch's default dtypes).
DEFAULT_FOR_CATEGORY = {0: bool_, 1: int64, 2: float32}


def from_name(name: str) -> DType:
    return _BY_NAME[name]


def from_numpy(numpy_dtype) -> DType:
    """The dtype for a NumPy dtype; float16 widens to float32, other ints to int64."""
    numpy_dtype = np.dtype(numpy_dtype)
    found = _BY_NUMPY.get(numpy_dtype)
    if found is not None:
        return found
    if numpy_dtype.kind == "f":
        return float32 if numpy_dtype.itemsize < 8 else float64
    if numpy_dtype.kind in "iu":
        return int64
    raise TypeError(f"can't convert NumPy arrays of type {numpy_dtype} to a tracegrad tensor; "
                    "the supported types are float64, float32, int64, int32 and bool")


def promote_types(a: DType, b: DType) -> DType:
    """The smallest dtype that holds both: higher category wins, then the wider type."""
    if a is b:
        return a
    if a.category != b.category:
        return a if a.category > b.category else b
    return a if a.itemsize >= b.itemsize else b


def scalar_category(value) -> int:
    if isinstance(value, (bool, np.bool_)):
        return 0
    if isinstance(value, (int, np.integer)):
        return 1
    return 2


def result_type(operands) -> DType:
    """PyTorch's promotion over tensors (anything with `.dtype` and `.ndim`) and scalars.

    Dimensioned tensors decide, unless a zero-dim tensor or a Python scalar is of a higher
    category; a scalar then contributes its category's default dtype.

    >>> result_type([2.5, 3]).name
    'float32'
    """
    ranks = [None, None, None]  # dimensioned tensors, zero-dim tensors, Python scalars
    for x in operands:
        if hasattr(x, "ndim"):
            dt, slot = x.dtype, (0 if x.ndim else 1)
        else:
            dt, slot = DEFAULT_FOR_CATEGORY[scalar_category(x)], 2
        ranks[slot] = dt if ranks[slot] is None else promote_types(ranks[slot], dt)
    result = None
    for dt in ranks:
        if dt is not None and (result is None or dt.category > result.category):
            result = dt
    return result
