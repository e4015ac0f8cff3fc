"""The LLVM lowering: kernels of IR nodes in, one native program out (SPEC §4.3).

Lowering goes by the kind of each primitive (`lowering.py`): elementwise ops give a scalar
emitter (`scalar.py`, with the transcendental functions in `mathlib.py`), reductions an
identity and a combine, movement ops an index map (`views.py`, over the symbolic index
arithmetic of `index.py`), and the fused ops decompose into those. A kernel becomes a few
loop nests (`plan.py`, `nests.py`), the one loop generator writes them all (`loops.py`),
matmul calls BLAS (`matmul.py`), and `program.py` puts every kernel of a program behind
one entry point that `execute.NativeProgram` calls with NumPy arrays.

This package imports llvmlite; `import tracegrad` never imports it (the first compile
does).

>>> import numpy as np
>>> from tracegrad.compiler.ir_text import parse_graph
>>> from tracegrad.compiler.lower import NativeProgram, can_lower
>>> g = parse_graph('''def f(x0: f32[2,3]):
...     v0 = exp(x0)
...     v1 = sum(v0, axes=(1,), keepdims=False)
...     return (v1,)''')
>>> can_lower(g)
(True, '')
>>> out, = NativeProgram(g).run(np.zeros((2, 3), np.float32))
>>> out
array([3., 3.], dtype=float32)

The names below are imported from their modules when first asked for (PEP 562): running a
program found in the disk cache needs `execute.py` and not the code generator.
"""

import importlib

_HOMES = {"Kernel": "plan", "NativeProgram": "execute", "NotLowerable": "execute",
          "can_lower": "build", "install": "lowering", "kernels_for": "build",
          "run_native": "execute", "trivial_kernels": "plan"}


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


__all__ = ["Kernel", "NativeProgram", "NotLowerable", "can_lower", "install", "kernels_for",
           "run_native", "trivial_kernels"]
