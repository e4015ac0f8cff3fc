"""Matrix multiplication: a call into the OpenBLAS that NumPy already loaded.

**Why BLAS and not our own kernel.** Measured on the 2-core Zen 4 this was written on
(tests/test_lower.py prints both figures): through this module OpenBLAS's sgemm runs a
512x512 float32 product at 190-200 GFLOP/s (what NumPy's `@` gets), while the best loop
nest our generator writes (`blas.BACKEND = "loops"`: a reduction over k that vectorises along
n, the cache-friendly i-k-j order, AVX-512) reaches 40-60 GFLOP/s: it keeps one row of C
in registers at a time and streams B from L2 once per row of A. Closing
that gap needs register tiling (a 6x32 or 14x16 micro-kernel held in zmm registers), B
and A packed into panels sized for L1/L2, and a k-blocking that keeps the panel hot —
weeks of tuning per micro-architecture, which OpenBLAS has done (its DYNAMIC_ARCH build
picks a Zen/SkylakeX kernel at load time). NumPy ships that library in every wheel
(`numpy.libs/libscipy_openblas64_*.so`, ILP64, symbols `scipy_cblas_sgemm64_` ...), so
calling it costs nothing to install; a call costs ~0.2 us, less than a thread start.
The loop nest stays as the fallback when no BLAS can be found (and as the baseline).

Transposed operands (`permute` of the last two axes, what autodiff makes for `x.T @ g`)
are passed with BLAS's transpose flags, not copied; a batch broadcasts by stride 0, and
`(B, M, K) @ (K, N)` is one call with B*M rows.
"""

from __future__ import annotations

import ctypes

from llvmlite import ir

from ...runtime.threads import POOL_REST
from ..ops.dtypes import float32, float64
from . import index as ix
from .blas import find_blas
from .llvm_types import F32, F64, I32, I64, PTR, VOID, constant
from .nests import GemmCall
from .transpose import transpose_function

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


# OpenBLAS splits any product of more than ~2^18 multiply-adds across its own threads,
# which wait for each other by spinning. On two cores that share the machine with anything
# else (our own threads, a PyTorch in the same process, another job), a product of a few
# microseconds then takes milliseconds (measured: a 64-128-128-10 MLP step, 71 us with
# one BLAS thread, 1.2-1.9 ms with two, while another process ran). Products smaller than
# this run on one thread; the larger ones, where threads pay (an MNIST step's: 5.1 ms on
# one, 3.2 ms on two), keep OpenBLAS's count, which the program reads before the first
# kernel of small products, and puts back before a kernel of larger ones and at its end
# (`BlasThreads`). A kernel has at most one product (`compiler/fuse.py`), or a batch of
# them of one size; one of mixed sizes would get the count its largest product wants.
SINGLE_THREAD_BELOW = 1 << 22  # multiply-adds (m * n * k) of one product

def emit_gemm_call(b: ir.IRBuilder, emitter, call: GemmCall) -> None:
    """`c = a @ b` for one matrix of the batch: one cblas_?gemm call."""
    blas = find_blas()
    dtype = call.c.dtype
    ft = F32 if dtype is float32 else F64
    it = I64 if blas.index_bits == 64 else I32
    name = blas.sgemm if dtype is float32 else blas.dgemm
    args = [I32, I32, I32, it, it, it, ft, PTR, it, PTR, it, ft, PTR, it]
    fn = _declare(b.module, name, ir.FunctionType(VOID, args))
    a = emitter.address(call.a, call.a_offset)
    bb = emitter.address(call.b, call.b_offset)
    c = emitter.address(call.c, call.c_offset)
    a_trans, lda = call.a_trans, call.lda
    if copies_a_transposed(call.m, call.n, call.k, dtype.itemsize, a_trans, call.b_trans):
        a, a_trans, lda = _transposed_on_stack(b, a, call.m, call.k, lda, ft), True, call.m
    i32 = lambda v: ir.Constant(I32, v)
    n = lambda v: ir.Constant(it, v)
    if not one_thread_for(call.m * call.n * call.k):
        # OpenBLAS's threads will want the cores our idle workers spin on
        b.call(_declare(b.module, POOL_REST, ir.FunctionType(VOID, [])), [])
    b.call(fn, [i32(ROW_MAJOR), i32(TRANS if a_trans else NO_TRANS),
                i32(TRANS if call.b_trans else NO_TRANS), n(call.m), n(call.n), n(call.k),
                constant(ft, 1.0), a, n(lda), bb, n(call.ldb), constant(ft, 0.0), c,
                n(call.n)])


# OpenBLAS's kernels for small products (under ~2^20 multiply-adds, where it skips packing)
# are slow for one layout: `a @ b^T` with both operands read along k, which is every
# forward of nn.Linear (x @ W^T). Measured on this machine, one thread, GFLOP/s:
#
#     m x n x k        a @ b^T   a^T @ b^T (a^T as stored)   a @ b
#     32 x 128 x 64         37          68                   85
#     32 x 128 x 128        52          97                   91
#     128 x 10 x 512        43          96                   -
#     64 x 256 x 256        76          75                   92   (2^22: packed, alike)
#
# So a small `a @ b^T` copies a transposed onto the stack and calls `a^T @ b^T`. The copy
# goes through registers (`transpose.py`, ~0.1 ns per element of a), and the products
# this rule admits (n of 32 and more, a of at most 16 KiB) gained 0.3-9 us each where
# measured; it does not pay for a small n, and for k of 256 and more the two kernels
# were within 10% of each other. The small MLP step: 71.5 -> 59.7 us with the copy a
# loop made (1.5 us for its 32 x 128), -> 58 us with the copy through registers.
TRANSPOSED_COPY_BELOW = 1 << 20  # multiply-adds of the product
TRANSPOSED_COPY_BYTES = 1 << 14  # of a, at most
TRANSPOSED_COPY_LEAST_N = 32


def copies_a_transposed(m: int, n: int, k: int, itemsize: int, a_trans: bool,
                        b_trans: bool) -> bool:
    """Whether `op(a) @ op(b)` runs as `(a^T)^T @ op(b)` with a copy of a^T (see above)."""
    return (b_trans and not a_trans and m * n * k < TRANSPOSED_COPY_BELOW
            and n >= TRANSPOSED_COPY_LEAST_N and m * k * itemsize <= TRANSPOSED_COPY_BYTES)


def _transposed_on_stack(b: ir.IRBuilder, a, m: int, k: int, lda: int, ft) -> ir.Value:
    """A copy of the (m, k) matrix at `a` (rows `lda` apart), transposed to (k, m), in the
    function's stack frame (allocated once, in its entry block)."""
    with b.goto_entry_block():
        copy = b.alloca(ft, size=ir.Constant(I64, m * k), name="a_transposed")
        copy.align = 64
    sizes = [ir.Constant(I64, v) for v in (m, k, lda)]
    b.call(transpose_function(b.module, ft), [a, copy, *sizes])
    return copy


def one_thread_for(macs: int) -> bool:
    """Whether a product of `macs` multiply-adds is to run on one of OpenBLAS's threads
    (see `SINGLE_THREAD_BELOW`; `BlasThreads` tells OpenBLAS so)."""
    blas = find_blas()
    return blas is not None and blas.threads is not None and 0 < macs < SINGLE_THREAD_BELOW


class BlasThreads:
    """Emits, in a program's entry point, OpenBLAS's thread count for each kernel: one
    thread for a kernel whose products are small (`one_thread_for`), the caller's count
    for the others. Setting it costs ~0.3 us, a tenth of a small product, so it is set
    only where it changes from one kernel to the next, and put back at the end."""

    def __init__(self, b: ir.IRBuilder):
        self.b = b
        self.callers = None  # the count the caller had, once read
        self.one = False  # whether OpenBLAS is on one thread now

    def before_kernel(self, largest_product: int) -> None:
        if not largest_product:
            return  # the kernel calls no BLAS
        one = one_thread_for(largest_product)
        if one and not self.one:
            if self.callers is None:
                getter = find_blas().threads[1]
                self.callers = self.b.call(
                    _declare(self.b.module, getter, ir.FunctionType(I32, [])), [])
            self._set(ir.Constant(I32, 1))
        elif self.one and not one:
            self._set(self.callers)
        self.one = one

    def finish(self) -> None:
        if self.one:
            self._set(self.callers)

    def _set(self, count) -> None:
        setter = find_blas().threads[0]
        self.b.call(_declare(self.b.module, setter, ir.FunctionType(VOID, [I32])), [count])


def _declare(module, name: str, fnty):
    fn = module.globals.get(name)
    return fn if fn is not None else ir.Function(module, fnty, name=name)


def batch_offset(idx: tuple, operand_batch: tuple, out_batch: tuple, matrix: int) -> ix.Index:
    """The element offset of an operand's matrix for output batch index `idx` (broadcast
    batch dimensions stay put: stride 0)."""
    lead = len(out_batch) - len(operand_batch)
    offset, stride = ix.ZERO, matrix
    for d in reversed(range(len(operand_batch))):
        if operand_batch[d] != 1:
            offset = offset + idx[lead + d] * stride
        stride *= operand_batch[d]
    return offset


def gemm_supported(dtype) -> bool:
    return dtype in (float32, float64)


def flops(m: int, n: int, k: int, batch: int = 1) -> int:
    return 2 * m * n * k * batch


def blas_threads() -> int:
    """How many threads OpenBLAS uses (it keeps its own pool)."""
    blas = find_blas()
    if blas is None or blas.threads is None:
        return 0
    return int(getattr(ctypes.CDLL(blas.path), blas.threads[1])())


