"""A matrix transposed through vector registers, for the copies `matmul.py` makes.

A plain loop (`target[j, i] = source[i, j]`) reads one of the two matrices a column at a
time: LLVM vectorises it with gathers, about 0.4 ns per element on this machine in L1 and
up to 1 ns beyond, where power-of-two row lengths put a column's elements in a few cache
sets. Here the matrix goes through in tiles of W x W elements, W the lanes of a 64-byte
register (16 float32, 8 float64): W rows are loaded whole, transposed in registers, and
stored as W whole rows of the target, about 0.1 ns per element (32 x 128 float32: 0.3 us
where the loop took 1.5). Rows and columns past the last whole tile go element by element.

The transposition of a tile is log2(W) rounds of one step: row i and row i + W/2 become
two rows that interleave them, the first halves and then the second halves. After the
last round, row c holds column c: each round moves one bit of an element's column index
into its row index, as a perfect shuffle does. LLVM makes each step one two-source
permute (`vpermt2ps` with AVX-512).

>>> [round_masks(4)[0].constant, round_masks(4)[1].constant]
[[0, 4, 1, 5], [2, 6, 3, 7]]
"""

from __future__ import annotations

import math

from llvmlite import ir

from .llvm_types import F32, F64, I32, I64, translate_only
from .loops import counted_loop

REGISTER_BYTES = 64


def round_masks(width: int) -> tuple[ir.Constant, ir.Constant]:
    """The shuffle masks of a round: interleave the first halves, then the second halves,
    of two vectors of `width` lanes."""
    half = width // 2
    first = [lane for i in range(half) for lane in (i, width + i)]
    second = [lane for i in range(half, width) for lane in (i, width + i)]
    vector = ir.VectorType(I32, width)
    return ir.Constant(vector, first), ir.Constant(vector, second)


FUNCTIONS = (("tracegrad_transpose_f32", F32), ("tracegrad_transpose_f64", F64))


def transpose_function(module: ir.Module, ft: ir.Type) -> ir.Function:
    """`void transpose(ptr source, ptr target, i64 rows, i64 cols, i64 row_length)` for
    elements of type `ft`, declared in `module`: `transposers` defines it once for the
    whole program, its sizes arguments, so LLVM compiles it once, not once per product
    (the three copies of the small MLP step, each emitted in place, made its first call
    60 ms slower)."""
    name = next(name for name, t in FUNCTIONS if t == ft)
    if name in module.globals:
        return module.globals[name]
    return ir.Function(module, _signature(ft), name=name)


def transposers(modules: list) -> ir.Module | None:
    """A module that defines each transpose function `modules` declare, or None."""
    wanted = [(name, ft) for name, ft in FUNCTIONS if any(name in m.globals for m in modules)]
    if not wanted:
        return None
    module = ir.Module(name="transposers")
    for name, ft in wanted:
        fn = ir.Function(module, _signature(ft), name=name)
        # Our IR is already the code wanted: loads, shuffles, stores. LLVM's O3 pipeline
        # would spend ~40 ms on it for no faster code (measured: 53 ms to compile it at
        # O3, 12 with `optnone`, the same 64 permutes and no spills either way).
        translate_only(fn)
        fn.args[0].add_attribute("noalias")
        fn.args[1].add_attribute("noalias")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        _emit_transpose(b, *fn.args, ft)
        b.ret_void()
    return module


def _signature(ft: ir.Type) -> ir.FunctionType:
    return ir.FunctionType(ir.VoidType(), [ft.as_pointer(), ft.as_pointer(), I64, I64, I64])


def _emit_transpose(b: ir.IRBuilder, source, target, rows, cols, row_length,
                    ft: ir.Type) -> None:
    """Write `target` (cols x rows, contiguous) = the transpose of `source` (rows x cols,
    rows `row_length` elements apart), both of element type `ft`."""
    itemsize = 4 if ft == F32 else 8
    width = REGISTER_BYTES // itemsize
    vector = ir.VectorType(ft, width)
    first, second = round_masks(width)
    half = width // 2

    def element_at(base, offset):
        return b.gep(base, [offset], inbounds=True, source_etype=ft)

    def vector_at(base, offset):  # (llvmlite checks types of typed pointers)
        return b.bitcast(element_at(base, offset), vector.as_pointer())

    def tile(ti, tj):
        i0, j0 = b.mul(ti, _i64(width)), b.mul(tj, _i64(width))
        lines = []
        for r in range(width):
            load = b.load(vector_at(source, b.add(b.mul(b.add(i0, _i64(r)), row_length), j0)),
                          typ=vector)
            load.align = itemsize
            lines.append(load)
        for _ in range(int(math.log2(width))):
            lines = [step for i in range(half) for step in
                     (b.shuffle_vector(lines[i], lines[i + half], first),
                      b.shuffle_vector(lines[i], lines[i + half], second))]
        for c, line in enumerate(lines):  # line c is the tile's column c
            store = b.store(line, vector_at(target, b.add(b.mul(b.add(j0, _i64(c)), rows),
                                                          i0)))
            store.align = itemsize

    def element(i, j):
        value = b.load(element_at(source, b.add(b.mul(i, row_length), j)), typ=ft)
        b.store(value, element_at(target, b.add(b.mul(j, rows), i)))

    shift = _i64(int(math.log2(width)))
    row_tiles, col_tiles = b.lshr(rows, shift), b.lshr(cols, shift)
    whole_rows, whole_cols = b.shl(row_tiles, shift), b.shl(col_tiles, shift)
    counted_loop(b, 0, row_tiles,
                 lambda ti: counted_loop(b, 0, col_tiles, lambda tj: tile(ti, tj), "tile.j"),
                 "tile.i")
    # the columns right of the tiles, every row; then the rows below the tiles, the
    # tiles' columns (each loop runs no times where the tiles reach the edge)
    counted_loop(b, whole_cols, cols,
                 lambda j: counted_loop(b, 0, rows, lambda i: element(i, j), "right.i"),
                 "right.j")
    counted_loop(b, 0, whole_cols,
                 lambda j: counted_loop(b, whole_rows, rows, lambda i: element(i, j),
                                        "below.i"), "below.j")


def _i64(value: int) -> ir.Constant:
    return ir.Constant(I64, value)
