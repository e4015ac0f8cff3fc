"""The BLAS that NumPy ships, found and loaded so that generated code can call it.

NumPy's wheels carry OpenBLAS (`numpy.libs/libscipy_openblas64_*.so`, ILP64, symbols
`scipy_cblas_sgemm64_` ...): `find_blas` loads it into LLVM's symbol table once per
process, and says which names and index width to call (`matmul.py` emits the calls, and
explains why BLAS rather than a loop nest of ours). This module is apart from `matmul.py`
because a program found in the disk cache needs it too (its key names the library, and
its code calls it) but none of the code generator.

>>> blas = find_blas()
>>> blas is None or blas.index_bits in (32, 64)
True
"""

from __future__ import annotations

import ctypes
import glob
import os
from dataclasses import dataclass

from ...runtime.once import once

BACKEND = os.environ.get("TRACEGRAD_MATMUL", "blas")  # "blas" or "loops" (for comparison)


@dataclass(frozen=True)
class Blas:
    path: str
    sgemm: str
    dgemm: str
    index_bits: int  # 64 for ILP64 builds (NumPy's), 32 otherwise
    threads: tuple | None  # OpenBLAS's (set, get) of its thread count, if it has them


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
