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
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from dataclasses import dataclass

from llvmlite import ir

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


_blas: Blas | None | bool = False
_lock = threading.Lock()

_CANDIDATES = [("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_", 64),
               ("cblas_sgemm64_", "cblas_dgemm64_", 64),
               ("cblas_sgemm", "cblas_dgemm", 32)]


def find_blas() -> Blas | None:
    """The BLAS NumPy uses (loaded into LLVM's symbol table), or None."""
    global _blas
    if _blas is False:
        with _lock:
            if _blas is False:
                _blas = _load()
    return _blas


def _load() -> Blas | None:
    import llvmlite.binding as llvm
    import numpy

    libs = os.path.join(os.path.dirname(os.path.dirname(numpy.__file__)), "numpy.libs")
    paths = sorted(glob.glob(os.path.join(libs, "*openblas*.so*")))
    import ctypes.util

    system = ctypes.util.find_library("openblas")
    paths += [system] if system else []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for sgemm, dgemm, bits in _CANDIDATES:
            if hasattr(lib, sgemm) and hasattr(lib, dgemm):
                llvm.load_library_permanently(path)
                return Blas(path, sgemm, dgemm, bits)
    return None


def use_blas() -> bool:
    return BACKEND == "blas" and find_blas() is not None


def emit_gemm_call(b: ir.IRBuilder, emitter, call: GemmCall) -> None:
    """`c = a @ b` for one matrix of the batch: one cblas_?gemm call."""
    blas = find_blas()
    dtype = call.c.dtype
    ft = F32 if dtype is float32 else F64
    it = I64 if blas.index_bits == 64 else I32
    name = blas.sgemm if dtype is float32 else blas.dgemm
    args = [I32, I32, I32, it, it, it, ft, PTR, it, PTR, it, ft, PTR, it]
    fn = b.module.globals.get(name)
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(VOID, args), name=name)
    a = emitter.address(call.a, call.a_offset)
    bb = emitter.address(call.b, call.b_offset)
    c = emitter.address(call.c, call.c_offset)
    i32 = lambda v: ir.Constant(I32, v)
    n = lambda v: ir.Constant(it, v)
    b.call(fn, [i32(ROW_MAJOR), i32(TRANS if call.a_trans else NO_TRANS),
                i32(TRANS if call.b_trans else NO_TRANS), n(call.m), n(call.n), n(call.k),
                constant(ft, 1.0), a, n(call.lda), bb, n(call.ldb), constant(ft, 0.0), c,
                n(call.n)])


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
    if blas is None:
        return 0
    lib = ctypes.CDLL(blas.path)
    for name in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads"):
        if hasattr(lib, name):
            return int(getattr(lib, name)())
    return 0


