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
>>> g = parse_graph('''def f(x0: f32[2,3]):
...     v0 = exp(x0)
...     v1 = sum(v0, axes=(1,), keepdims=False)
...     return (v1,)''')
>>> can_lower(g)
(True, '')
>>> out, = NativeProgram(g).run(np.zeros((2, 3), np.float32))
>>> out
array([3., 3.], dtype=float32)
"""

from .execute import NativeProgram, NotLowerable, can_lower, kernels_for, run_native
from .lowering import install
from .plan import Kernel, trivial_kernels

install()

__all__ = ["Kernel", "NativeProgram", "NotLowerable", "can_lower", "install", "kernels_for",
           "run_native", "trivial_kernels"]
