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

Where a large output starts within its page matters too. A CPU first matches a load
against the earlier stores still in flight by the low 12 bits of their addresses; when
a loop's output runs a little ahead of one of its inputs in those bits, every load of
that input waits on a store it does not depend on ("4K aliasing"). NumPy's heap puts
arrays allocated one after another 16 bytes apart in their pages, so an output made
after its inputs lands just there: the gelu step's loop took up to 1.8 times as long
with its outputs 16-192 bytes ahead of its inputs (worst at 48-64) as with them anywhere
behind, or 384 or more ahead (measured with `TRACEGRAD_NUM_THREADS=1` on data in L2). A
program therefore makes its large outputs with `empty_behind`, 64-byte aligned and just
behind the page offsets of the arrays it reads (`offset_behind`).

>>> inputs = [np.empty(4096, np.float32) for _ in range(3)]
>>> out = empty_behind((4096,), np.float32, offset_behind(inputs), 0)
>>> all(0 < (data_pointer(a) - data_pointer(out)) % PAGE <= PAGE - SHADOW for a in inputs)
True
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from .object_layout import object_layout, read_word

ALIGNMENT = 64


def aligned_bytes(nbytes: int, alignment: int = ALIGNMENT, offset: int = 0) -> np.ndarray:
    """A uint8 array of ``nbytes`` whose first byte's address is ``offset`` modulo
    ``alignment`` (aligned, by default)."""
    if nbytes < 0:
        raise ValueError(f"cannot allocate {nbytes} bytes")
    raw = np.empty(max(nbytes, 1) + alignment, dtype=np.uint8)
    start = (offset - data_pointer(raw)) % alignment
    return raw[start:start + max(nbytes, 1)][:nbytes]  # NumPy moves empty slices' pointer


PAGE = 4096  # the low address bits a load is first matched on against earlier stores
SHADOW = 512  # how far ahead of a load, in those bits, a store may stall it (measured: 384
# bytes ahead no longer did)
SPREAD = 8  # placed outputs take this many consecutive cache lines of a page, at most


def nbytes(shape: tuple[int, ...], dtype) -> int:
    """The bytes of a C-contiguous array of ``shape`` and ``dtype``."""
    return math.prod(shape) * np.dtype(dtype).itemsize


def data_pointer(array: np.ndarray) -> int:
    """The address of ``array``'s first element, for a ctypes ``c_void_p`` argument: read
    from the array object (0.25 us; ``array.ctypes.data`` takes 2)."""
    return read_word(array, object_layout().data)


def offset_behind(arrays) -> int:
    """A 64-byte aligned offset in a page, for outputs of loops that read ``arrays``:
    64 bytes or more behind the page offset of every one (see the module docstring).

    Past the widest gap between the arrays' offsets (going round the page) comes the
    array that starts the others: the outputs go just behind it, so the others lie
    ahead of them by less than a page minus that gap. No array is then within
    ``SHADOW`` ahead of an output while the gap is wider than ``SHADOW`` plus the
    outputs' own spread: always, for up to five arrays and three outputs."""
    offsets = sorted(data_pointer(a) % PAGE for a in arrays)
    if not offsets:
        return 0
    gaps = [((later - offsets[k - 1]) % PAGE, later) for k, later in enumerate(offsets)]
    _, first = max(gaps)  # offsets[-1] is the one before offsets[0]
    return (first // ALIGNMENT - 1) * ALIGNMENT % PAGE


def empty_behind(shape: tuple[int, ...], dtype, offset: int, rank: int) -> np.ndarray:
    """``np.empty(shape, dtype)`` whose data starts ``rank`` cache lines behind ``offset``
    within its page: a program's ``rank``-th large output (the first ``SPREAD`` differ in
    their cache sets too; later ones share, rather than reach round the page to just
    ahead of the inputs). It is a view of a block one page larger."""
    return aligned_bytes(nbytes(shape, dtype), PAGE, _start(offset, rank)).view(dtype) \
        .reshape(shape)


def is_behind(array: np.ndarray, offset: int, rank: int) -> bool:
    """Whether ``array`` starts where ``empty_behind(..., offset, rank)`` would start one:
    an array given back to be written again must be placed as a new one would be."""
    return data_pointer(array) % PAGE == _start(offset, rank)


def _start(offset: int, rank: int) -> int:
    return (offset - rank % SPREAD * ALIGNMENT) % PAGE


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
        size = nbytes(shape, dtype)
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
