"""Row groups: a run of loop nests that each work row by row runs a few rows at a time.

A softmax or layer-norm kernel is a chain of nests over the same rows: a max per row, the
exps, a sum per row, a division, and the same again for the backward. Run one after the
other, each nest streams every row of its arrays through the caches, so the chain moves
megabytes where a few rows would do. When every nest of a run touches the arrays that the
run writes only within the row it is working on (checked on the index expressions,
`row_local`), the run becomes one function that takes a chunk of rows through every nest
while they sit in the cache, and the whole run is split across threads at once instead of
nest by nest. The bits do not change: each row is computed by the same code, in the same
order.
"""

from __future__ import annotations

import math

from llvmlite import ir

from . import index as ix
from .llvm_types import I64
from .loops import LoopFunction, NestFunction, _grain, counted_loop

CHUNK_BYTES = 96 * 1024  # the rows of a chunk, over all its arrays: well inside L2 (1 MiB)


def row_local(offset: ix.Index, outer: ix.Var, scale: int, row: int) -> bool:
    """True if iteration `o` of a loop whose counter is `outer` touches, at `offset`, only
    row `o // scale` of a buffer with `row` elements per row.

    >>> o, j = ix.Var("o", 4), ix.Var("j", 5)
    >>> row_local(ix.index(o) * 5 + ix.index(j), o, 1, 5)  # row o of a (4, 5) array
    True
    >>> row_local(ix.index(j) * 4 + ix.index(o), o, 1, 4)  # column o of a (5, 4) array
    False
    """
    if offset is None or not offset.is_affine_in({outer}):
        return False
    c = offset.coefficient(outer)
    rest = offset - ix.index(outer) * c
    return c * scale == row and rest.lo >= 0 and c * (scale - 1) + rest.hi < row


def group_rows(module, name: str, functions: list) -> list:
    """`functions` with every run of two or more row-local nests replaced by one group.

    A nest that cannot join a run (a sum down the columns, say) waits until the run is
    over, and so does every nest after it that does not join; row-local nests after it
    join the run if they do not touch what a waiting nest touches. A layer norm's
    backward then shares one group (one start of threads) with the softmax before it,
    the column sums of the gradients running after both."""
    grouped, run, waiting = [], [], []

    def flush():
        rows = _rows(run) if len(run) > 1 else None
        if rows:
            grouped.append(_emit_group(module, f"{name}.rows{len(grouped)}", run, rows))
        else:
            grouped.extend(run)
        grouped.extend(waiting)
        run.clear()
        waiting.clear()

    for fn in functions:
        if fn.outer is not None and run and _rows(run + [fn]) \
                and all(_independent(fn, other) for other in waiting):
            run.append(fn)
        elif run:
            waiting.append(fn)  # after the run, in the order they came
        elif fn.outer is not None:
            run.append(fn)
        else:
            grouped.append(fn)
    flush()
    return grouped


def _independent(a, b) -> bool:
    """Whether `a` and `b` may run in either order: neither writes what the other uses."""
    return not (_writes(a) & set(b.buffers)) and not (_writes(b) & set(a.buffers))


def _writes(fn) -> set:
    return set(fn.buffers) if fn.writes is None else set(fn.writes)


def _rows(run: list) -> int | None:
    """The number of rows the nests of `run` share, if each is row-local in all it writes."""
    rows = min(fn.trips for fn in run)
    if rows < 2 or any(fn.trips % rows for fn in run):
        return None
    written = set().union(*(_writes(fn) for fn in run))
    for fn in run:
        scale = fn.trips // rows
        for buf, offsets in fn.offsets.items():
            if buf not in written:
                continue  # read-only here: any element may be read at any time
            per_row, rest = divmod(math.prod(buf.shape), rows)
            if rest or not all(row_local(off, fn.outer, scale, per_row) for off in offsets):
                return None
    return rows


def _emit_group(module, name: str, run: list, rows: int) -> LoopFunction:
    """`name(buffers..., begin, end)`: rows `[begin, end)`, a chunk at a time, each chunk
    through every nest of `run` in order."""
    buffers = list(dict.fromkeys(buf for fn in run for buf in fn.buffers))
    row_bytes = sum(buf.nbytes for buf in buffers) / rows
    chunk = max(1, min(rows, int(CHUNK_BYTES // max(row_bytes, 1))))
    group = NestFunction(module, name, buffers, noalias=True)
    b = group.b
    count = b.sdiv(b.add(b.sub(group.end, group.begin), ir.Constant(I64, chunk - 1)),
                   ir.Constant(I64, chunk))

    def one_chunk(j):
        first = b.add(group.begin, b.mul(j, ir.Constant(I64, chunk)))
        last = b.add(first, ir.Constant(I64, chunk))
        last = b.select(b.icmp_signed("<", last, group.end), last, group.end)
        for fn in run:
            scale = ir.Constant(I64, fn.trips // rows)
            args = [group.pointers[buf] for buf in fn.buffers]
            b.call(fn.function, args + [b.mul(first, scale), b.mul(last, scale)])

    counted_loop(b, 0, count, one_chunk, "chunk")
    group.finish()
    work = sum(fn.work for fn in run)
    return LoopFunction(group.function, group.buffers, rows, _grain(work, rows), work=work)
