"""The op set: every primitive, one record each (see `primitive.Primitive`).

Eager mode runs the records' NumPy kernels, autograd applies their derivative rules, and
the compiler reads their shape rules and lowerings. Everything else in the library is a
composition of these.

>>> sorted(PRIMITIVES)[:3]
['abs', 'add', 'amax']
"""

from .dtypes import ALL_DTYPES, DType, bool_, float32, float64, int32, int64  # noqa: F401
from .elementwise import ELEMENTWISE, cast, copy, logical_not, where  # noqa: F401
from .elementwise import (abs, add, cos, div, eq, erf, exp, ge, gt, le, log, log1p,  # noqa: F401
                          logical_and, logical_or, lt, maximum, minimum, mul, ne, neg, pow,
                          relu, sigmoid, sign, sin, sqrt, sub, tanh)
from .fused import DECOMPOSITIONS, FUSED, gelu, gelu_slope, layer_norm, log_softmax  # noqa: F401
from .fused import softmax  # noqa: F401
from .linalg import LINALG, matmul  # noqa: F401
from .movement import MOVEMENT, concat, expand, gather, index_put, permute, reshape  # noqa: F401
from .movement import scatter_add, take, take_along, untake, untake_along  # noqa: F401
from .primitive import Primitive, Spec  # noqa: F401
from .reduce import REDUCE, amax, amin, argmax, argmin, prod, sum_, sum_to  # noqa: F401
from .shapes import ShapeError, broadcast_shapes, normalize_axes, normalize_axis  # noqa: F401

PRIMITIVES: dict[str, Primitive] = {p.name: p for p in [*ELEMENTWISE, *REDUCE, *MOVEMENT,
                                                         *LINALG, *FUSED]}
