"""Loop nests: what a kernel asks the loop generator for, before any IR exists.

A kernel lowers to a short list of nests, each one of three shapes:

* `MapNest` — for every point of a domain, some `Store`s (`out[offset] = value`, or
  `+=` for scatters) and `GemmCall`s; the values are expressions (`expr.py`) of the
  point's index;
* `ReduceNest` — fold a source expression over some axes of a domain into a target;
* (a matmul is a `MapNest` over its batch whose action is a `GemmCall`.)

Nests say *what*; `loops.py` says *how* (loop order, vector lanes, threads).

>>> nest = MapNest((3, 4), lambda idx: [])
>>> nest.domain
(3, 4)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ..ops.dtypes import DType
from . import index as ix
from .expr import Buffer, Expr

LANE_BYTES = 256  # a reduction keeps this many bytes of partial results: four zmm registers
BLOCK = 16384  # long reductions are cut into blocks of this many elements (fixed, so the
#                bits never depend on the thread count), reduced in parallel, then combined


@dataclass(eq=False)
class Store:
    """`buffer[offset] = value` (or `buffer[offset] += value` when `accumulate`)."""

    buffer: Buffer
    offset: ix.Index
    value: Expr
    accumulate: bool = False


@dataclass(eq=False)
class GemmCall:
    """`c = a @ b` on row-major matrices at element offsets, through BLAS (`matmul.py`)."""

    a: Buffer
    a_offset: ix.Index
    a_trans: bool
    lda: int
    b: Buffer
    b_offset: ix.Index
    b_trans: bool
    ldb: int
    c: Buffer
    c_offset: ix.Index
    m: int
    n: int
    k: int


Body = Callable[[tuple], list]


@dataclass(eq=False)
class MapNest:
    """Run `body(index)`'s actions at every point of `domain`.

    `sequential`: the actions of different points may touch the same element (a scatter
    with repeated indices), so the points run in row-major order on one thread."""

    domain: tuple
    body: Body
    sequential: bool = False
    label: str = ""


@dataclass(eq=False)
class ReduceNest:
    """`target[kept] = fold(op, source(index) for index over the reduced axes)`.

    `op` is sum, prod, amax, amin (fold values) or argmax, argmin (the row-major position
    over the reduced axes of the first extreme element, NumPy's answer)."""

    domain: tuple
    axes: tuple
    op: str
    source: Callable[[tuple], Expr]
    target: Buffer
    dtype: DType  # the type values are compared or summed in
    label: str = ""
    scratch: Buffer | None = field(default=None, init=False)

    def __post_init__(self):
        self.axes = tuple(sorted(self.axes))
        if self.op not in ("argmax", "argmin") and self.blocks > 1:
            kept = math.prod(s for d, s in enumerate(self.domain) if d not in self.axes)
            self.scratch = Buffer(f"{self.target.name}_partials", (kept, self.blocks),
                                  self.dtype)

    @property
    def kept_shape(self) -> tuple:
        return tuple(s for d, s in enumerate(self.domain) if d not in self.axes)

    @property
    def reduced_shape(self) -> tuple:
        return tuple(s for d, s in enumerate(self.domain) if d in self.axes)

    @property
    def innermost_reduced(self) -> bool:
        return bool(self.domain) and len(self.domain) - 1 in self.axes

    @property
    def run(self) -> int:
        """Elements in the trailing run of reduced axes (what vector lanes go over)."""
        size = 1
        for d in reversed(range(len(self.domain))):
            if d not in self.axes:
                break
            size *= self.domain[d]
        return size

    @property
    def only_trailing(self) -> bool:
        """Every reduced axis is in the trailing run (so the run is all there is)."""
        n = len(self.domain)
        return self.axes == tuple(range(n - len(self.axes), n))

    @property
    def blocks(self) -> int:
        if not (self.innermost_reduced and self.only_trailing) or self.run <= 2 * BLOCK:
            return 1
        return -(-self.run // BLOCK)

    def lanes(self) -> int:
        """How many partial results a row keeps: a power of two, at most 256 bytes' worth,
        fixed by the run length alone (so by the shapes, never by the thread count)."""
        size = self.dtype.itemsize if self.op not in ("argmax", "argmin") else 8
        most = max(LANE_BYTES // size, 1)
        run = min(self.run, BLOCK)
        return 1 if run < 2 else min(most, 1 << (run.bit_length() - 1))
