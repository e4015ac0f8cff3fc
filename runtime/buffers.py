"""Memory that compiled programs work in.

A program's temporaries live in one *arena*: a single 64-byte-aligned block (a cache line,
and the width of an AVX-512 register) in which the memory planner gives each buffer an
offset. The arena is allocated on a program's first call and reused by every later call,
so a call allocates nothing; its address, and so every buffer's, is computed once.

>>> arena = Arena(256)
>>> arena.address % ALIGNMENT
0
>>> view = arena.view(64, "float32", (4, 4))
>>> view[:] = 1.0
>>> arena.pointer(64) == data_pointer(view)
True

Views alias the arena: whatever must outlive the call (a returned value) is copied out
or, better, written by the program straight into memory its caller owns.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

ALIGNMENT = 64


def aligned_bytes(nbytes: int, alignment: int = ALIGNMENT) -> np.ndarray:
    """A uint8 array of ``nbytes`` whose first byte is ``alignment``-aligned."""
    if nbytes < 0:
        raise ValueError(f"cannot allocate {nbytes} bytes")
    raw = np.empty(max(nbytes, 1) + alignment, dtype=np.uint8)
    start = -data_pointer(raw) % alignment
    return raw[start:start + max(nbytes, 1)][:nbytes]  # NumPy moves empty slices' pointer


def data_pointer(array: np.ndarray) -> int:
    """The address of ``array``'s first element, for a ctypes ``c_void_p`` argument."""
    return array.ctypes.data  # ~1 us: resolve the arena's pointers once, not per call


class Arena:
    """One aligned block carved into typed views at planned offsets."""

    def __init__(self, nbytes: int):
        self.nbytes = nbytes
        self.buffer = aligned_bytes(nbytes)
        self.address = data_pointer(self.buffer)

    def pointer(self, offset: int) -> int:
        """The address ``offset`` bytes into the arena."""
        return self.address + offset

    def view(self, offset: int, dtype, shape: tuple[int, ...]) -> np.ndarray:
        """A C-contiguous array of ``dtype`` and ``shape`` that starts at ``offset``."""
        dtype = np.dtype(dtype)
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if offset < 0 or offset + size > self.nbytes:
            raise ValueError(f"view of {size} bytes at offset {offset} does not fit in an "
                             f"arena of {self.nbytes} bytes")
        if offset % dtype.alignment:
            raise ValueError(f"offset {offset} is not aligned for {dtype}")
        return self.buffer[offset:offset + size].view(dtype).reshape(shape)


class ArenaPool:
    """The arenas of one program: reused call after call, one per concurrent caller.

    >>> pool = ArenaPool(1024)
    >>> with pool.borrow() as first: pass
    >>> with pool.borrow() as second: pass
    >>> first is second
    True
    """

    def __init__(self, nbytes: int):
        self.nbytes = nbytes
        self._free: list[Arena] = []
        self._lock = threading.Lock()

    @contextmanager
    def borrow(self) -> Iterator[Arena]:
        """An arena for the length of one call; a second thread calling at once gets its own."""
        with self._lock:
            arena = self._free.pop() if self._free else None
        if arena is None:
            arena = Arena(self.nbytes)
        try:
            yield arena
        finally:
            with self._lock:
                self._free.append(arena)
