"""Matrix multiplication: the one primitive that is not elementwise, a reduction or a move.

`matmul` takes operands of at least two dimensions whose leading (batch) dimensions
broadcast, like NumPy's; the front end adds and removes the unit dimensions of 1-D
operands. Gradients of broadcast batches are summed back by the engine.

>>> matmul.shape(Spec((5, 2, 3), float32), Spec((3, 4), float32)).shape  # doctest: +SKIP
(5, 2, 4)
"""

from __future__ import annotations

import numpy as np

from .movement import permute
from .primitive import Primitive, Spec
from .samples import floats
from .shapes import ShapeError, broadcast_shapes


def _matmul_spec(a, b):
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"mat1 and mat2 shapes cannot be multiplied "
                         f"({'x'.join(map(str, a.shape))} and {'x'.join(map(str, b.shape))})")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return Spec(batch + (a.shape[-2], b.shape[-1]), a.dtype)


def transpose_last(t):
    """`t` with its last two axes swapped."""
    n = len(t.shape)
    return permute(t, dims=tuple(range(n - 2)) + (n - 1, n - 2))


matmul = Primitive(
    "matmul", "matmul", _matmul_spec, np.matmul,
    (lambda g, a, b, out: matmul(g, transpose_last(b)),
     lambda g, a, b, out: matmul(transpose_last(a), g)),
    saves=(0, 1),
    sample=floats((2, 3, 4), (4, 5)),
    backward_name="MmBackward0",
)

LINALG = [matmul]
