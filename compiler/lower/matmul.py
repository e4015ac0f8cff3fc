"""Matrix multiplication: a call into the OpenBLAS that NumPy already loaded.

**Why BLAS and not our own kernel.** Measured on the 2-core Zen 4 this was written on
(tests/test_lower.py prints both figures): through this module OpenBLAS's sgemm runs a
512x512 float32 product at 190-200 GFLOP/s (what NumPy's `@` gets), while the best loop
nest our generator writes (`BACKEND = "loops"`: a reduction over k that vectorises along
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

**Threads are ours, not OpenBLAS's.** OpenBLAS splits a product across its own threads,
statically, and they wait for each other by spinning: on two cores shared with anything
else (our own pool, a PyTorch in the same process, another job) a product then waits for
a thread that has no core — measured: a 64-128-128-10 MLP step went from 71 us to
1.2-1.9 ms while another process ran, and an MNIST-sized product from 2.5 ms on one
thread to 20 ms on "two". So a program runs OpenBLAS on one thread (it sets the count on
entry and restores it on exit) and cuts each large product itself into up to
`MOST_PARTS` blocks of rows or columns, fixed when the program is generated (so the bits
never depend on the thread count), which the runtime's pool hands out dynamically
(`runtime/threads.py`): a busy core only means the other thread takes more blocks.
"""

from __future__ import annotations

import ctypes
import glob
import os
from dataclasses import dataclass, replace

from llvmlite import ir

from ...runtime.once import once
from ..ops.dtypes import float32, float64
from . import index as ix
from .llvm_types import F32, F64, I32, I64, PTR, VOID, constant
from .nests import GemmCall

BACKEND = os.environ.get("TRACEGRAD_MATMUL", "blas")  # "blas" or "loops" (for comparison)
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


@dataclass(frozen=True)
class Blas:
    path: str
    sgemm: str
    dgemm: str
    index_bits: int  # 64 for ILP64 builds (NumPy's), 32 otherwise
    threads: tuple | None  # (set, get) of OpenBLAS's thread count, if the library has them


MOST_PARTS = 4  # blocks a product is cut into, at most: a few per thread balance the load
PART_MACS = 1 << 17  # multiply-adds a block has at least (a few microseconds on one core)
PART_ALIGN = 16  # rows or columns per block: a multiple of the micro-kernels' widths
NS_PER_MAC = 0.02  # one core's sgemm: about 100 GFLOP/s
CALL_NS = 2000  # what a BLAS call costs beyond its arithmetic (packing, dispatch)

_CANDIDATES = [("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_", 64),
               ("cblas_sgemm64_", "cblas_dgemm64_", 64),
               ("cblas_sgemm", "cblas_dgemm", 32)]
_THREAD_FUNCTIONS = [("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
                     ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
                     ("openblas_set_num_threads", "openblas_get_num_threads")]


def _candidate_paths():
    """NumPy's own OpenBLAS first; the system's only if that fails (`find_library` runs
    `ldconfig`, which costs a first call tens of milliseconds)."""
    import ctypes.util

    import numpy

    libs = os.path.join(os.path.dirname(os.path.dirname(numpy.__file__)), "numpy.libs")
    yield from sorted(glob.glob(os.path.join(libs, "*openblas*.so*")))
    system = ctypes.util.find_library("openblas")
    if system:
        yield system


@once
def find_blas() -> Blas | None:
    """The BLAS NumPy uses (loaded into LLVM's symbol table), or None."""
    import llvmlite.binding as llvm

    for path in _candidate_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for sgemm, dgemm, bits in _CANDIDATES:
            if hasattr(lib, sgemm) and hasattr(lib, dgemm):
                llvm.load_library_permanently(path)
                threads = next(((setter, getter) for setter, getter in _THREAD_FUNCTIONS
                                if hasattr(lib, setter) and hasattr(lib, getter)), None)
                return Blas(path, sgemm, dgemm, bits, threads)
    return None


def use_blas() -> bool:
    return BACKEND == "blas" and find_blas() is not None


def emit_gemm_call(b: ir.IRBuilder, emitter, call: GemmCall) -> None:
    """`c = a @ b` for one matrix of the batch (or one block of it): one cblas_?gemm call."""
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
    i32 = lambda v: ir.Constant(I32, v)
    n = lambda v: ir.Constant(it, v)
    m_size, n_size = n(call.m), n(call.n)
    if call.left is not None:  # the last block of an uneven split is smaller
        left = emitter.index(call.left)
        left = b.trunc(left, it) if it is I32 else left
        step = m_size if call.split == "m" else n_size
        size = b.select(b.icmp_signed("<", left, step), left, step)
        m_size, n_size = (size, n_size) if call.split == "m" else (m_size, size)
    b.call(fn, [i32(ROW_MAJOR), i32(TRANS if call.a_trans else NO_TRANS),
                i32(TRANS if call.b_trans else NO_TRANS), m_size, n_size, n(call.k),
                constant(ft, 1.0), a, n(call.lda), bb, n(call.ldb), constant(ft, 0.0), c,
                n(call.ldc)])


def threads_are_ours() -> bool:
    """Whether a program can turn OpenBLAS's own threads off (and so share products out
    to the runtime's pool): the library has the functions for it."""
    blas = find_blas()
    return blas is not None and blas.threads is not None


def split(call: GemmCall) -> tuple[str, int, int]:
    """How to cut `call` into blocks: `(axis, step, parts)`, the larger of m and n cut
    into `parts` blocks of `step` rows or columns (the last may be smaller). `parts` is 1
    when the product is too small to share, or OpenBLAS's threads cannot be turned off."""
    axis, size = ("m", call.m) if call.m >= call.n else ("n", call.n)
    parts = min(MOST_PARTS, call.m * call.n * call.k // PART_MACS, size // PART_ALIGN)
    if not threads_are_ours() or parts < 2:
        return axis, size, 1
    step = -(-size // parts)
    step = -(-step // PART_ALIGN) * PART_ALIGN
    return axis, step, -(-size // step)


def block(call: GemmCall, axis: str, step: int, index: ix.Index) -> GemmCall:
    """Block `index` of `call` cut along `axis` every `step` rows or columns."""
    first = index * step
    total = call.m if axis == "m" else call.n
    left = None if total % step == 0 else ix.as_index(total) - first
    if axis == "m":  # rows of op(a) and of c
        a_offset = call.a_offset + (first if call.a_trans else first * call.lda)
        return replace(call, a_offset=a_offset, c_offset=call.c_offset + first * call.ldc,
                       m=step, split=axis, left=left)
    b_offset = call.b_offset + (first * call.ldb if call.b_trans else first)
    return replace(call, b_offset=b_offset, c_offset=call.c_offset + first, n=step,
                   split=axis, left=left)


def work_ns(call: GemmCall) -> float:
    """A single core's time for `call`, for deciding what is worth threads."""
    return CALL_NS + NS_PER_MAC * call.m * call.n * call.k


def emit_single_threaded(b: ir.IRBuilder):
    """Run OpenBLAS on one thread from here on; returns `restore()`, which emits putting
    back the count it had (see the module docstring)."""
    setter, getter = find_blas().threads
    module = b.module
    get = _declare(module, getter, ir.FunctionType(I32, []))
    set_ = _declare(module, setter, ir.FunctionType(VOID, [I32]))
    saved = b.call(get, [], name="blas.threads")
    b.call(set_, [ir.Constant(I32, 1)])
    return lambda: b.call(set_, [saved])


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


