"""Where CPython and NumPy keep what a compiled program reads from Python objects.

A compiled program is called with the addresses of two tuples, its input arrays and the
arrays made for its outputs (`compiler/lower/program.py`). It reads each array's data
pointer in the array object, and checks each input itself — its type is `np.ndarray`,
its dtype the one planned, its shape and C order — which costs a few nanoseconds an
array where the same test in Python costs about a hundred.

The offsets are those of CPython's `PyTupleObject` and NumPy's `PyArrayObject_fields`
(public C structures, the same in NumPy 1 and 2). None is taken on trust: each is found
or confirmed once, on live objects, and a layout that does not read back as expected
stops native code from being built rather than letting it read the wrong word.

>>> layout = object_layout()
>>> probe = np.zeros((2, 3), np.float32)
>>> read_word(probe, layout.data) == probe.ctypes.data
True
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from .once import once

C_CONTIGUOUS = 0x1  # NPY_ARRAY_C_CONTIGUOUS, a bit of the array's `flags`
WORD = ctypes.sizeof(ctypes.c_void_p)


@dataclass(frozen=True)
class ObjectLayout:
    """Byte offsets in the objects, from the object's address."""

    type: int  # ob_type, of any object
    tuple_items: int  # a tuple's first item pointer; item i is `i` words further
    data: int  # an array's data pointer
    ndim: int  # its number of dimensions (a C int)
    shape: int  # a pointer to its dimensions (`ndim` npy_intp)
    dtype: int  # its dtype object
    flags: int  # its flags (a C int), `C_CONTIGUOUS` among them

    def describe(self) -> str:
        """The offsets as text, for keys of stored programs that hard-code them."""
        return ",".join(f"{name}={getattr(self, name)}" for name in self.__dataclass_fields__)


def read_word(obj, offset: int) -> int:
    """The pointer-sized word at `offset` in `obj`'s object memory."""
    return ctypes.c_size_t.from_address(id(obj) + offset).value


def _read_int(obj, offset: int) -> int:
    return ctypes.c_int.from_address(id(obj) + offset).value


def _find(obj, word: int) -> int:
    """The offset of the first occurrence of `word` in `obj`'s object memory."""
    kind = type(obj)
    size = kind.__basicsize__ + kind.__itemsize__ * (len(obj) if kind.__itemsize__ else 0)
    words = np.frombuffer(ctypes.string_at(id(obj), size), dtype=np.uintp)
    hits = np.flatnonzero(words == word)
    if not len(hits):
        raise RuntimeError(f"cannot find a {type(obj).__name__}'s fields in its object memory")
    return int(hits[0]) * WORD


@once
def object_layout() -> ObjectLayout:
    """The layout, found on probe objects and confirmed on arrays of every kind a program
    must tell apart (RuntimeError if NumPy's arrays are not laid out as its C API says)."""
    probe = np.zeros((5, 6, 7), np.float32)
    data, dtype = _find(probe, probe.ctypes.data), _find(probe, id(probe.dtype))
    # NumPy's field order after the data pointer: nd, dimensions, strides, base, descr,
    # flags; found by value where a value is unique, by that order where it is not.
    layout = ObjectLayout(type=_find(probe, id(np.ndarray)),
                          tuple_items=_find((probe, None), id(probe)),
                          data=data, ndim=data + WORD, shape=data + 2 * WORD,
                          dtype=dtype, flags=dtype + WORD)
    checks = [np.zeros((5, 6, 7), np.float32), np.ones(3), np.array(2.0, np.float32),
              np.zeros((4, 3), np.int64).T, np.zeros((2, 4), np.float32)[:, ::2]]
    for array in checks:
        shape = ((ctypes.c_ssize_t * array.ndim).from_address(read_word(array, layout.shape))
                 if array.ndim else ())
        seen = (read_word(array, layout.type), read_word(array, layout.data),
                _read_int(array, layout.ndim), tuple(shape), read_word(array, layout.dtype),
                bool(_read_int(array, layout.flags) & C_CONTIGUOUS))
        expected = (id(np.ndarray), array.ctypes.data, array.ndim, array.shape,
                    id(array.dtype), array.flags.c_contiguous)
        if seen != expected:
            raise RuntimeError(f"NumPy {np.__version__}'s array objects are not laid out as "
                               f"compiled programs read them: {seen} for {expected}")
    return layout
