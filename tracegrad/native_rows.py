"""Eager mode's fused row operations on native code: softmax, log_softmax, layer_norm and
their backwards, for arrays large enough to notice.

Their NumPy kernels make several passes over memory per row operation (a max, the exps,
a sum, a division...). The LLVM backend's kernel for the same primitive makes its passes a
chunk of rows at a time while they sit in cache (`compiler/lower/row_groups.py`), about
twice as fast at 256 x 1024 float32: layer_norm 206 -> 127 us, its backward 322 -> 139 us,
softmax 231 -> 138 us, its backward 134 -> 58 us. Each (primitive, shapes, dtypes,
attributes) is compiled once per process, and the program cache keeps the machine code on
disk for the next one.

Only arrays of at least `MIN_ELEMENTS` go native: there the call (~2 us) is noise, and a
small model never loads LLVM at all (it loads on the first such call, not at import).
Whatever the backend cannot run, and everything under `TRACEGRAD_BACKEND=numpy`, uses the
NumPy kernel. The results agree with the NumPy kernels to round-off (tests/test_functions).

>>> import numpy as np
>>> from tracegrad.compiler.ops import PRIMITIVES
>>> sorted(p.name for p in OPS)[:3]
['layer_norm', 'layer_norm_backward', 'log_softmax']
>>> x = np.random.default_rng(0).standard_normal((256, 512)).astype(np.float32)
>>> out = run(PRIMITIVES["softmax"], (x,), {"axis": 1})
>>> bool(np.allclose(out, PRIMITIVES["softmax"].kernel(x, axis=1), rtol=1e-5, atol=1e-7))
True
"""

from __future__ import annotations

import threading

import numpy as np

from .compiler.ops.fused import FUSED

OPS = frozenset(p for p in FUSED if p.kind == "reduce")  # the fused ops that work by rows
MIN_ELEMENTS = 1 << 16

_programs: dict = {}  # key -> NativeProgram, or None where the NumPy kernel must serve
_lock = threading.Lock()


def run(prim, arrays: tuple, attrs: dict):
    """`prim`'s result on `arrays` by native code, or None: then use the NumPy kernel."""
    try:
        key = (prim.name, tuple((a.shape, a.dtype.str) for a in arrays),
               tuple(sorted(attrs.items())))
        program = _programs.get(key, False)
    except (AttributeError, TypeError):  # a Python scalar operand, an unhashable attribute
        return None
    if program is False:
        with _lock:
            program = _programs.get(key, False)
            if program is False:
                program = _programs[key] = _build(prim, arrays, attrs)
    return None if program is None else program.run(*arrays)[0]


def _build(prim, arrays: tuple, attrs: dict):
    from .compiler.ir import GraphBuilder
    from .compiler.ops.dtypes import from_numpy
    from .compiler.program import native_by_default

    if not native_by_default():
        return None
    try:
        from .compiler.lower import NativeProgram

        builder = GraphBuilder(prim.name)
        inputs = [builder.add_input(a.shape, from_numpy(a.dtype)) for a in arrays]
        builder.set_outputs([builder.add_node(prim.name, inputs, dict(attrs))])
        return NativeProgram(builder.build())
    except Exception:  # noqa: BLE001 - no native kernel here: NumPy's serves, as ever
        return None


def large(arrays) -> bool:
    """Whether the first operand is an array of at least `MIN_ELEMENTS`."""
    return type(arrays[0]) is np.ndarray and arrays[0].size >= MIN_ELEMENTS
