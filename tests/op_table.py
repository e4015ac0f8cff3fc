"""The op table that drives the op tests: one entry per primitive and per public function.

* `PRIMITIVE_TABLE` has an entry for every primitive of `tracegrad.compiler.ops`; the
  primitive's own `sample` gives the inputs, the entry says what else the tests need
  to know. `test_primitives.py` fails when a primitive is missing here.
* `CASES` has one or more `Case`s per public function of SPEC §3.2. A case's `fn(lib,
  *tensors)` is written once and run with `lib = tracegrad` and `lib = torch`, so the
  same line of code is compared with PyTorch; `ref(*arrays)` is the NumPy reference.
* `PROMOTIONS` and `ERRORS` are the type-promotion and error-message cases.

>>> sorted(PRIMITIVE_TABLE)[:2]
['abs', 'add']
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# --- primitives ---------------------------------------------------------------------


@dataclass(frozen=True)
class PrimitiveEntry:
    second_order: bool = False  # smooth and non-linear on its sample: check d2 too
    vjp_attrs: dict = field(default_factory=dict)  # attribute overrides for the VJP checks


SMOOTH = PrimitiveEntry(second_order=True)
LINEAR = PrimitiveEntry()  # linear in each input: the second derivative is 0
PIECEWISE = PrimitiveEntry()  # kinks (sign, max, ...): samples keep away from them
NO_GRAD = PrimitiveEntry()  # comparisons, argmax: no derivative

PRIMITIVE_TABLE: dict[str, PrimitiveEntry] = {
    # elementwise unary
    "neg": LINEAR, "exp": SMOOTH, "log": SMOOTH, "log1p": SMOOTH, "sin": SMOOTH,
    "cos": SMOOTH, "tanh": SMOOTH, "sigmoid": SMOOTH, "sqrt": SMOOTH, "erf": SMOOTH,
    "abs": PIECEWISE, "sign": PIECEWISE, "relu": PIECEWISE,
    # elementwise binary
    "add": LINEAR, "sub": LINEAR, "mul": SMOOTH, "div": SMOOTH, "pow": SMOOTH,
    "maximum": PIECEWISE, "minimum": PIECEWISE,
    "lt": NO_GRAD, "le": NO_GRAD, "gt": NO_GRAD, "ge": NO_GRAD, "eq": NO_GRAD, "ne": NO_GRAD,
    "logical_and": NO_GRAD, "logical_or": NO_GRAD, "logical_not": NO_GRAD,
    "where": LINEAR,
    # a float64 -> float32 cast cannot be finite-differenced at eps 1e-6: check it in float64
    "cast": PrimitiveEntry(vjp_attrs={"dtype": "float64"}),
    "copy": LINEAR,
    # reductions
    "sum": LINEAR, "amax": PIECEWISE, "amin": PIECEWISE, "prod": SMOOTH,
    "argmax": NO_GRAD, "argmin": NO_GRAD,
    # movement and indexing
    "reshape": LINEAR, "expand": LINEAR, "permute": LINEAR, "gather": LINEAR,
    "scatter_add": LINEAR, "index_put": LINEAR, "concat": LINEAR,
    "take": LINEAR, "untake": LINEAR, "take_along": LINEAR, "untake_along": LINEAR,
    # linear algebra
    "matmul": SMOOTH,
    # fused (one kernel in eager mode; see DECOMPOSITIONS)
    "gelu": SMOOTH, "gelu_slope": SMOOTH, "softmax": SMOOTH, "log_softmax": SMOOTH,
    "layer_norm": SMOOTH,
    # their backwards, primitives too; `out` is an input of its own there
    "softmax_backward": SMOOTH, "log_softmax_backward": SMOOTH, "layer_norm_backward": SMOOTH,
}


# --- input samplers for the function cases ------------------------------------------


def floats(*shape, low=-2.0, high=2.0, away=None):
    """Uniform floats; `away` keeps every value at least 0.1 from the given kink(s)."""
    kinks = () if away is None else (away if isinstance(away, tuple) else (away,))

    def make(rng):
        a = rng.uniform(low, high, size=shape)
        for kink in kinks:
            near = np.abs(a - kink) < 0.1
            a[near] = kink + np.where(a[near] >= kink, 0.15, -0.15)
        return a

    return make


def distinct(*shape, scale=0.25):
    """Floats without ties (no two within `scale`), for max/min/sort-like functions."""

    def make(rng):
        n = math.prod(shape)
        return ((rng.permutation(n) - n / 2) * scale + rng.uniform(0, 0.05, n)).reshape(shape)

    return make


def fixed(array):
    return lambda rng: np.array(array)


def bools(*shape):
    return lambda rng: rng.uniform(size=shape) > 0.5


# --- NumPy references ---------------------------------------------------------------

erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu(x):
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def softplus(x, beta=1.0, threshold=20.0):
    return np.where(x * beta > threshold, x, np.log1p(np.exp(x * beta)) / beta)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis):
    s = x - x.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


def logsumexp(x, axis, keepdims=False):
    return np.log(np.exp(x).sum(axis=axis, keepdims=keepdims))


def setitem(x, index, v):
    out = x.copy()
    out[index] = v
    return out


def nnf(lib):
    """`lib.nn.functional` (tracegrad's may not exist yet: fall back to the functions)."""
    if lib.__name__ == "torch":
        return lib.nn.functional
    try:
        from tracegrad.nn import functional

        return functional
    except ImportError:
        from types import SimpleNamespace

        from tracegrad.functions import normalization, pointwise

        return SimpleNamespace(**{**vars(pointwise), **vars(normalization)})


def inplace(method, *args):
    """`z = x.clone(); z.method(*args); z`: an in-place op on a non-leaf."""

    def run(lib, x, *tensors):
        z = x.clone()
        getattr(z, method)(*(tensors or args))
        return z

    return run


def iadd(lib, x, y):
    z = x.clone()
    z += y
    return z


def isub_imul_idiv(lib, x, y):
    z = x.clone()
    z -= y
    z *= y
    z /= y
    return z


def mul_then_use(lib, x, y):
    z = x * 1
    z.mul_(y)
    return z * x


def zero_negatives(lib, x):
    z = x.clone()
    z[z < 0] = 0.0
    return z


def write(index_of, value_is_input=True, value=None):
    """`z = x.clone(); z[index] = v; z` with `index_of(lib)` building the index."""

    def run(lib, x, *v):
        z = x.clone()
        z[index_of(lib)] = v[0] if value_is_input else value
        return z

    return run


def iwrite(index_of):
    """`z[index] += v` on a clone: a read, an add and a write of the same place."""

    def run(lib, x, v):
        z = x.clone()
        z[index_of(lib)] += v
        return z

    return run


# --- the function cases -------------------------------------------------------------


@dataclass
class Case:
    """One call of a public function, run by tracegrad and PyTorch and compared.

    `grad`: whether gradients are checked (for every floating input). `rtol`/`atol` are for
    float64 against the NumPy reference; float32 and PyTorch comparisons scale them.
    """

    name: str
    fn: Callable
    ref: Callable | None
    inputs: tuple
    grad: bool = True
    rtol: float = 1e-7
    atol: float = 1e-9
    finite_differences: bool = True  # False at kinks: only PyTorch's convention applies
    xfail_torch: str | None = None  # why PyTorch's behaviour is not matched, if it is not


M34 = floats(3, 4)
V4 = floats(4)
POS34 = floats(3, 4, low=0.2, high=3.0)
NZ34 = floats(3, 4, away=0.0)
NZ4 = floats(4, away=0.0)

ARITHMETIC = [
    Case("add", lambda lib, x, y: x + y, np.add, (M34, V4)),
    Case("add/function_alpha", lambda lib, x, y: lib.add(x, y, alpha=2.5),
         lambda x, y: x + 2.5 * y, (M34, V4)),
    Case("add/scalar_right", lambda lib, x: x + 2.5, lambda x: x + 2.5, (M34,)),
    Case("add/scalar_left", lambda lib, x: 2.5 + x, lambda x: 2.5 + x, (M34,)),
    Case("add/broadcast_both", lambda lib, x, y: x + y, np.add, (floats(3, 1), floats(1, 4))),
    Case("sub", lambda lib, x, y: x - y, np.subtract, (M34, V4)),
    Case("sub/scalar_left", lambda lib, x: 2 - x, lambda x: 2 - x, (M34,)),
    Case("sub/scalar_right", lambda lib, x: x - 2, lambda x: x - 2, (M34,)),
    Case("mul", lambda lib, x, y: x * y, np.multiply, (M34, V4)),
    Case("mul/scalar_left", lambda lib, x: 3 * x, lambda x: 3 * x, (M34,)),
    Case("mul/zero_dim", lambda lib, x, y: x * y, np.multiply, (M34, floats())),
    Case("div", lambda lib, x, y: x / y, np.divide, (M34, NZ4)),
    Case("div/scalar_right", lambda lib, x: x / 4, lambda x: x / 4, (M34,)),
    Case("div/scalar_left", lambda lib, x: 2 / x, lambda x: 2 / x, (NZ34,)),
    Case("pow/scalar_exponent", lambda lib, x: x ** 3, lambda x: x ** 3, (M34,)),
    Case("pow/fractional", lambda lib, x: x ** 0.5, np.sqrt, (POS34,)),
    Case("pow/tensor_exponent", lambda lib, x, y: x ** y, np.power,
         (POS34, floats(4, low=-1.5, high=1.5))),
    Case("pow/scalar_base", lambda lib, x: 2 ** x, lambda x: 2.0 ** x, (M34,)),
    Case("pow/function", lambda lib, x: lib.pow(x, 2), lambda x: x ** 2, (M34,)),
    Case("neg", lambda lib, x: -x, np.negative, (M34,)),
    Case("abs", lambda lib, x: x.abs(), np.abs, (NZ34,)),
    Case("abs/operator", lambda lib, x: abs(x), np.abs, (NZ34,)),
]

COMPARISONS = [
    Case(name, fn, ref, (distinct(3, 4), distinct(4)), grad=False)
    for name, fn, ref in [
        ("lt", lambda lib, x, y: x < y, np.less),
        ("le", lambda lib, x, y: x <= y, np.less_equal),
        ("gt", lambda lib, x, y: x > y, np.greater),
        ("ge", lambda lib, x, y: x >= y, np.greater_equal),
    ]
] + [
    Case(name, fn, ref, (fixed([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]), fixed([1.0, 2.0, 1.0])),
         grad=False)
    for name, fn, ref in [("eq", lambda lib, x, y: x == y, np.equal),
                          ("ne", lambda lib, x, y: x != y, np.not_equal)]
] + [
    Case("gt/scalar", lambda lib, x: x > 0.5, lambda x: x > 0.5, (M34,), grad=False),
    Case("le/scalar_left", lambda lib, x: 0.5 <= x, lambda x: 0.5 <= x, (M34,),
         grad=False),
    Case("lt/function", lambda lib, x, y: lib.lt(x, y), np.less, (M34, V4), grad=False),
]

INPLACE = [
    Case("add_", inplace("add_"), np.add, (M34, V4)),
    Case("add_/scalar", inplace("add_", 2.0), lambda x: x + 2, (M34,)),
    Case("add_/alpha", lambda lib, x, y: x.clone().add_(y, alpha=-2),
         lambda x, y: x - 2 * y, (M34, V4)),
    Case("sub_", inplace("sub_"), np.subtract, (M34, V4)),
    Case("mul_", inplace("mul_"), np.multiply, (M34, V4)),
    Case("mul_/scalar", inplace("mul_", 3.0), lambda x: 3 * x, (M34,)),
    Case("div_", inplace("div_"), np.divide, (M34, NZ4)),
    Case("zero_", inplace("zero_"), np.zeros_like, (M34,)),
    Case("fill_", inplace("fill_", 2.5), lambda x: np.full_like(x, 2.5), (M34,)),
    Case("iadd", iadd, np.add, (M34, V4)),
    Case("isub_imul_idiv", isub_imul_idiv, lambda x, y: (x - y) * y / y, (M34, NZ4)),
    Case("inplace/then_used", mul_then_use, lambda x, y: x * y * x, (M34, V4)),
]

MATH = [
    Case("exp", lambda lib, x: x.exp(), np.exp, (M34,)),
    Case("exp/function", lambda lib, x: lib.exp(x), np.exp, (M34,)),
    Case("log", lambda lib, x: x.log(), np.log, (POS34,)),
    Case("log1p", lambda lib, x: x.log1p(), np.log1p, (floats(3, 4, low=-0.8),)),
    Case("sqrt", lambda lib, x: x.sqrt(), np.sqrt, (POS34,)),
    Case("rsqrt", lambda lib, x: x.rsqrt(), lambda x: 1 / np.sqrt(x), (POS34,)),
    Case("sin", lambda lib, x: x.sin(), np.sin, (M34,)),
    Case("cos", lambda lib, x: lib.cos(x), np.cos, (M34,)),
    Case("tan", lambda lib, x: x.tan(), np.tan, (floats(3, 4, low=-1.2, high=1.2),)),
    Case("tanh", lambda lib, x: x.tanh(), np.tanh, (M34,)),
    Case("sigmoid", lambda lib, x: x.sigmoid(), sigmoid, (floats(3, 4, low=-6, high=6),)),
    Case("relu", lambda lib, x: x.relu(), lambda x: np.maximum(x, 0), (NZ34,)),
    Case("relu/functional", lambda lib, x: nnf(lib).relu(x), lambda x: np.maximum(x, 0),
         (NZ34,)),
    Case("gelu", lambda lib, x: nnf(lib).gelu(x), gelu, (floats(3, 4, low=-4, high=4),)),
    Case("gelu/tanh", lambda lib, x: nnf(lib).gelu(x, approximate="tanh"), gelu_tanh,
         (floats(3, 4, low=-4, high=4),)),
    Case("silu", lambda lib, x: nnf(lib).silu(x), lambda x: x * sigmoid(x),
         (floats(3, 4, low=-4, high=4),)),
    Case("softplus", lambda lib, x: nnf(lib).softplus(x), softplus,
         (floats(3, 4, low=-4, high=4),)),
    Case("softplus/beta_threshold", lambda lib, x: nnf(lib).softplus(x, beta=2.0, threshold=3.0),
         lambda x: softplus(x, 2.0, 3.0), (floats(3, 4, low=-4, high=4, away=1.5),)),
    Case("erf", lambda lib, x: x.erf(), erf, (M34,)),
    Case("clamp", lambda lib, x: x.clamp(-1.0, 1.0), lambda x: np.clip(x, -1, 1),
         (floats(3, 4, away=(-1.0, 1.0)),)),
    Case("clamp/min", lambda lib, x: x.clamp(min=0.5), lambda x: np.maximum(x, 0.5),
         (floats(3, 4, away=0.5),)),
    Case("clamp/max", lambda lib, x: lib.clamp(x, max=0.5), lambda x: np.minimum(x, 0.5),
         (floats(3, 4, away=0.5),)),
    Case("maximum", lambda lib, x, y: lib.maximum(x, y), np.maximum,
         (distinct(3, 4), distinct(4, scale=0.3))),
    Case("minimum", lambda lib, x, y: x.minimum(y), np.minimum,
         (distinct(3, 4), distinct(4, scale=0.3))),
    Case("where", lambda lib, x, y: lib.where(x > 0, x, y), lambda x, y: np.where(x > 0, x, y),
         (NZ34, V4)),
    Case("where/scalar", lambda lib, x: lib.where(x > 0, x, 0.0),
         lambda x: np.where(x > 0, x, 0.0), (NZ34,)),
    Case("where/method", lambda lib, x, y: x.where(x > 0, y), lambda x, y: np.where(x > 0, x, y),
         (NZ34, M34)),
    Case("sign", lambda lib, x: x.sign(), np.sign, (NZ34,)),
]


def _max_dim(x, axis, keepdims=False):
    return (x.max(axis=axis, keepdims=keepdims), x.argmax(axis=axis, keepdims=keepdims))


def _min_dim(x, axis):
    return (x.min(axis=axis), x.argmin(axis=axis))


M345 = floats(3, 4, 5)
D345 = distinct(3, 4, 5)

REDUCTIONS = [
    Case("sum", lambda lib, x: x.sum(), np.sum, (M345,)),
    Case("sum/dim", lambda lib, x: x.sum(1), lambda x: x.sum(1), (M345,)),
    Case("sum/dim_negative_keepdim", lambda lib, x: x.sum(-1, keepdim=True),
         lambda x: x.sum(-1, keepdims=True), (M345,)),
    Case("sum/dim_tuple", lambda lib, x: lib.sum(x, (0, 2)), lambda x: x.sum((0, 2)), (M345,)),
    Case("mean", lambda lib, x: x.mean(), np.mean, (M345,)),
    Case("mean/dim_tuple_keepdim", lambda lib, x: x.mean((0, -1), keepdim=True),
         lambda x: x.mean((0, 2), keepdims=True), (M345,)),
    Case("max", lambda lib, x: x.max(), np.max, (D345,)),
    Case("max/dim", lambda lib, x: x.max(1), lambda x: _max_dim(x, 1), (D345,)),
    Case("max/dim_keepdim", lambda lib, x: lib.max(x, -1, keepdim=True),
         lambda x: _max_dim(x, -1, True), (D345,)),
    Case("max/binary", lambda lib, x, y: lib.max(x, y), np.maximum,
         (distinct(3, 4), distinct(4, scale=0.3))),
    Case("min", lambda lib, x: x.min(), np.min, (D345,)),
    Case("min/dim", lambda lib, x: x.min(0), lambda x: _min_dim(x, 0), (D345,)),
    Case("amax", lambda lib, x: x.amax(), np.max, (D345,)),
    Case("amax/dim_tuple", lambda lib, x: x.amax((0, 2)), lambda x: x.max((0, 2)), (D345,)),
    Case("amax/ties", lambda lib, x: lib.amax(x, 1), lambda x: x.max(1),
         (fixed([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]),), finite_differences=False),
    Case("max/ties", lambda lib, x: x.max(), np.max,
         (fixed([[1.0, 3.0, 3.0], [2.0, 3.0, 2.0]]),), finite_differences=False),
    Case("maximum/ties", lambda lib, x, y: lib.maximum(x, y), np.maximum,
         (fixed([[1.0, 3.0, 3.0], [2.0, 3.0, 2.0]]), fixed([1.0, 3.0, 0.0])),
         finite_differences=False),
    Case("amin/dim_keepdim", lambda lib, x: x.amin(1, keepdim=True),
         lambda x: x.min(1, keepdims=True), (D345,)),
    Case("prod", lambda lib, x: x.prod(), np.prod, (floats(3, 4, low=0.5, high=1.5),)),
    Case("prod/dim", lambda lib, x: x.prod(1), lambda x: x.prod(1), (M345,)),
    Case("prod/dim_keepdim_with_zero", lambda lib, x: x.prod(1, keepdim=True),
         lambda x: x.prod(1, keepdims=True),
         (fixed([[1.5, 0.0, 2.0], [0.0, 0.0, 3.0], [1.0, 2.0, -1.0]]),)),
    Case("var", lambda lib, x: x.var(), lambda x: x.var(ddof=1), (M345,)),
    Case("var/dim_unbiased_false", lambda lib, x: x.var(1, unbiased=False),
         lambda x: x.var(1), (M345,)),
    Case("var/dim_tuple_keepdim", lambda lib, x: x.var((0, 2), keepdim=True),
         lambda x: x.var((0, 2), ddof=1, keepdims=True), (M345,)),
    Case("var/correction", lambda lib, x: lib.var(x, 0, correction=0),
         lambda x: x.var(0), (M345,)),
    Case("std", lambda lib, x: x.std(), lambda x: x.std(ddof=1), (M345,)),
    Case("std/dim", lambda lib, x: x.std(-1), lambda x: x.std(-1, ddof=1), (M345,)),
    Case("norm", lambda lib, x: x.norm(), lambda x: np.sqrt((x * x).sum()), (M345,)),
    Case("norm/dim", lambda lib, x: x.norm(dim=1), lambda x: np.sqrt((x * x).sum(1)), (M345,)),
    Case("norm/p1_keepdim", lambda lib, x: x.norm(1, dim=(0, 1), keepdim=True),
         lambda x: np.abs(x).sum((0, 1), keepdims=True), (floats(3, 4, 5, away=0.0),)),
    Case("logsumexp", lambda lib, x: x.logsumexp(1), lambda x: logsumexp(x, 1), (M345,)),
    Case("logsumexp/dim_tuple_keepdim", lambda lib, x: lib.logsumexp(x, (0, 2), keepdim=True),
         lambda x: logsumexp(x, (0, 2), True), (M345,)),
    Case("argmax", lambda lib, x: x.argmax(), lambda x: np.argmax(x), (D345,), grad=False),
    Case("argmax/dim", lambda lib, x: x.argmax(1), lambda x: x.argmax(1), (D345,), grad=False),
    Case("argmax/dim_keepdim", lambda lib, x: lib.argmax(x, -1, keepdim=True),
         lambda x: x.argmax(-1, keepdims=True), (D345,), grad=False),
    Case("argmin/dim", lambda lib, x: x.argmin(0), lambda x: x.argmin(0), (D345,), grad=False),
]


def _split(x, sizes, axis):
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


SHAPE = [
    Case("reshape", lambda lib, x: x.reshape(4, -1), lambda x: x.reshape(4, -1), (M34,)),
    Case("reshape/function_tuple", lambda lib, x: lib.reshape(x, (2, 2, 3)),
         lambda x: x.reshape(2, 2, 3), (M34,)),
    Case("reshape/noncontiguous", lambda lib, x: x.t().reshape(12),
         lambda x: x.T.reshape(12), (M34,)),
    Case("view", lambda lib, x: x.view(2, 6), lambda x: x.reshape(2, 6), (M34,)),
    Case("view/infer", lambda lib, x: x.view(-1), lambda x: x.reshape(-1), (M34,)),
    Case("flatten", lambda lib, x: x.flatten(), lambda x: x.reshape(-1), (M345,)),
    Case("flatten/range", lambda lib, x: lib.flatten(x, 1), lambda x: x.reshape(3, 20), (M345,)),
    Case("squeeze", lambda lib, x: x.squeeze(), np.squeeze, (floats(1, 3, 1, 4),)),
    Case("squeeze/dim", lambda lib, x: x.squeeze(2), lambda x: x.squeeze(2),
         (floats(1, 3, 1, 4),)),
    Case("unsqueeze", lambda lib, x: x.unsqueeze(1), lambda x: x[:, None], (M34,)),
    Case("unsqueeze/negative", lambda lib, x: lib.unsqueeze(x, -1), lambda x: x[..., None],
         (M34,)),
    Case("transpose", lambda lib, x: x.transpose(0, 2), lambda x: x.transpose(2, 1, 0),
         (M345,)),
    Case("t", lambda lib, x: x.t(), np.transpose, (M34,)),
    Case("T", lambda lib, x: x.T, np.transpose, (M34,)),
    Case("permute", lambda lib, x: x.permute(2, 0, 1), lambda x: x.transpose(2, 0, 1),
         (M345,)),
    Case("permute/function_negative", lambda lib, x: lib.permute(x, (-1, 0, 1)),
         lambda x: x.transpose(2, 0, 1), (M345,)),
    Case("expand", lambda lib, x: x.expand(2, 3, 4), lambda x: np.broadcast_to(x, (2, 3, 4)),
         (floats(3, 1),)),
    Case("expand/minus_one", lambda lib, x: x.expand(5, -1), lambda x: np.broadcast_to(x, (5, 4)),
         (V4,)),
    Case("broadcast_to", lambda lib, x: lib.broadcast_to(x, (3, 4)),
         lambda x: np.broadcast_to(x, (3, 4)), (V4,)),
    Case("cat", lambda lib, x, y: lib.cat([x, y]), lambda x, y: np.concatenate([x, y]),
         (M34, floats(2, 4))),
    Case("cat/dim", lambda lib, x, y: lib.cat((x, y, x), dim=-1),
         lambda x, y: np.concatenate([x, y, x], -1), (M34, floats(3, 2))),
    Case("stack", lambda lib, x, y: lib.stack([x, y]), lambda x, y: np.stack([x, y]),
         (M34, M34)),
    Case("stack/dim", lambda lib, x, y: lib.stack([x, y], dim=-1),
         lambda x, y: np.stack([x, y], -1), (M34, M34)),
    Case("split", lambda lib, x: x.split(2, dim=1), lambda x: _split(x, [2, 2, 1], 1),
         (floats(3, 5),)),
    Case("split/sizes", lambda lib, x: lib.split(x, [1, 2], 0), lambda x: _split(x, [1, 2], 0),
         (M34,)),
    Case("chunk", lambda lib, x: x.chunk(3, 1), lambda x: _split(x, [2, 2, 1], 1),
         (floats(3, 5),)),
    Case("chunk/function", lambda lib, x: lib.chunk(x, 2), lambda x: _split(x, [2, 1], 0),
         (M34,)),
]

INDEXING = [
    Case("index/int", lambda lib, x: x[1], lambda x: x[1], (M34,)),
    Case("index/negative_int", lambda lib, x: x[-1, 2], lambda x: x[-1, 2], (M34,)),
    Case("index/slice", lambda lib, x: x[:, 1:3], lambda x: x[:, 1:3], (M34,)),
    Case("index/step", lambda lib, x: x[::2, -1], lambda x: x[::2, -1], (M34,)),
    Case("index/none_ellipsis", lambda lib, x: x[..., None, 1:], lambda x: x[..., None, 1:],
         (M345,)),
    Case("index/list", lambda lib, x: x[[0, 2, 2]], lambda x: x[[0, 2, 2]], (M34,)),
    Case("index/tensor", lambda lib, x: x[lib.tensor([2, 0])], lambda x: x[[2, 0]], (M34,)),
    Case("index/two_arrays", lambda lib, x: x[[0, 1, 2], [3, 3, 0]],
         lambda x: x[[0, 1, 2], [3, 3, 0]], (M34,)),
    Case("index/slice_and_array", lambda lib, x: x[1:, [0, 0, 2]],
         lambda x: x[1:, [0, 0, 2]], (M34,)),
    Case("index/mask", lambda lib, x: x[x > 0], lambda x: x[x > 0], (NZ34,)),
    Case("index/2d_index_array", lambda lib, x: x[lib.tensor([[0, 1], [1, 2]])],
         lambda x: x[np.array([[0, 1], [1, 2]])], (M34,)),
    Case("setitem/slice", write(lambda lib: (0, slice(1, 3))),
         lambda x, v: setitem(x, (0, slice(1, 3)), v), (M34, floats(2))),
    Case("setitem/broadcast_value", write(lambda lib: (slice(None), 1)),
         lambda x, v: setitem(x, (slice(None), 1), v), (M34, floats(1))),
    Case("setitem/scalar", write(lambda lib: (1, 2), False, 7.0),
         lambda x: setitem(x, (1, 2), 7.0), (M34,)),
    Case("setitem/array", write(lambda lib: [0, 2]),
         lambda x, v: setitem(x, [0, 2], v), (M34, floats(2, 4))),
    Case("setitem/mask_scalar", zero_negatives, lambda x: np.where(x < 0, 0.0, x), (NZ34,)),
    Case("setitem/iadd_slice", iwrite(lambda lib: (slice(1, None), slice(None, 2))),
         lambda x, v: setitem(x, (slice(1, None), slice(None, 2)), x[1:, :2] + v),
         (M34, floats(2, 2))),
    Case("gather", lambda lib, x: x.gather(1, lib.tensor([[0, 0], [1, 3], [2, 1]])),
         lambda x: np.take_along_axis(x, np.array([[0, 0], [1, 3], [2, 1]]), 1), (M34,)),
    Case("gather/dim0", lambda lib, x: lib.gather(x, 0, lib.tensor([[2, 1, 0, 0]])),
         lambda x: np.take_along_axis(x, np.array([[2, 1, 0, 0]]), 0), (M34,)),
    Case("index_select", lambda lib, x: x.index_select(1, lib.tensor([3, 0, 3])),
         lambda x: x[:, [3, 0, 3]], (M34,)),
    Case("index_select/function", lambda lib, x: lib.index_select(x, 0, lib.tensor([1])),
         lambda x: x[[1]], (M34,)),
    Case("masked_fill", lambda lib, x: x.masked_fill(x > 0, -1.0),
         lambda x: np.where(x > 0, -1.0, x), (NZ34,)),
    Case("masked_fill/broadcast_mask", lambda lib, x: lib.masked_fill(
        x, lib.tensor([True, False, False, True]), 0.0),
        lambda x: np.where([True, False, False, True], 0.0, x), (M34,)),
]

LINALG = [
    Case("matmul", lambda lib, x, y: x @ y, np.matmul, (M34, floats(4, 2))),
    Case("matmul/batched_2d", lambda lib, x, y: x @ y, np.matmul, (M345, floats(5, 2))),
    Case("matmul/2d_batched", lambda lib, x, y: lib.matmul(x, y), np.matmul,
         (floats(2, 3), floats(4, 3, 2))),
    Case("matmul/broadcast_batches", lambda lib, x, y: x @ y, np.matmul,
         (floats(2, 1, 3, 4), floats(5, 4, 2))),
    Case("matmul/1d_1d", lambda lib, x, y: x @ y, np.matmul, (V4, V4)),
    Case("matmul/2d_1d", lambda lib, x, y: x @ y, np.matmul, (M34, V4)),
    Case("matmul/1d_2d", lambda lib, x, y: x @ y, np.matmul, (V4, floats(4, 3))),
    Case("matmul/1d_3d", lambda lib, x, y: x.matmul(y), np.matmul, (V4, floats(2, 4, 3))),
    Case("matmul/3d_1d", lambda lib, x, y: x @ y, np.matmul, (M345, floats(5))),
    Case("mm", lambda lib, x, y: lib.mm(x, y), np.matmul, (M34, floats(4, 2))),
    Case("bmm", lambda lib, x, y: x.bmm(y), np.matmul, (M345, floats(3, 5, 2))),
    Case("softmax", lambda lib, x: x.softmax(-1), lambda x: softmax(x, -1), (M345,)),
    Case("softmax/functional_dim0", lambda lib, x: nnf(lib).softmax(x, dim=0),
         lambda x: softmax(x, 0), (M345,)),
    Case("log_softmax", lambda lib, x: lib.log_softmax(x, 1), lambda x: log_softmax(x, 1),
         (M345,)),
    Case("log_softmax/functional", lambda lib, x: nnf(lib).log_softmax(x, dim=-1),
         lambda x: log_softmax(x, -1), (M345,)),
]

# Where a function has a kink or a removable singularity, PyTorch picks a (sub)gradient;
# finite differences cannot tell, so these are compared with PyTorch only.
KINKS = [
    Case("relu/at_zero", lambda lib, x: x.relu(), lambda x: np.maximum(x, 0),
         (fixed([-1.0, 0.0, 2.0]),), finite_differences=False),
    Case("abs/at_zero", lambda lib, x: x.abs(), np.abs, (fixed([-1.0, 0.0, 2.0]),),
         finite_differences=False),
    Case("sign/at_zero", lambda lib, x: x.sign(), np.sign, (fixed([-1.0, 0.0, 2.0]),),
         finite_differences=False),
    Case("clamp/at_bounds", lambda lib, x: x.clamp(-1.0, 1.0), lambda x: np.clip(x, -1, 1),
         (fixed([-2.0, -1.0, 0.0, 1.0, 2.0]),), finite_differences=False),
    Case("max/dim_ties", lambda lib, x: x.max(1), lambda x: _max_dim(x, 1),
         (fixed([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]),), finite_differences=False),
    Case("norm/zero", lambda lib, x: x.norm(), lambda x: np.sqrt((x * x).sum()),
         (fixed([0.0, 0.0, 0.0]),), finite_differences=False),
    Case("norm/dim_with_zero_row", lambda lib, x: x.norm(dim=1),
         lambda x: np.sqrt((x * x).sum(1)), (fixed([[0.0, 0.0], [3.0, 4.0]]),),
         finite_differences=False),
    Case("pow/zero_base", lambda lib, x, y: x ** y, np.power,
         (fixed([[0.0, 1.5], [0.0, 2.0]]), fixed([1.0, 2.5])), finite_differences=False),
    Case("where/same_input_both_sides", lambda lib, x: lib.where(x > 0, x * 2, x),
         lambda x: np.where(x > 0, 2 * x, x), (fixed([-1.0, 0.0, 1.0]),),
         finite_differences=False),
]

# Large magnitudes: the shifted and overflow-free formulations must hold.
EXTREMES = [
    Case("softmax/large_values", lambda lib, x: x.softmax(-1), lambda x: softmax(x, -1),
         (floats(3, 4, low=-500, high=500),)),
    Case("log_softmax/large_values", lambda lib, x: x.log_softmax(0),
         lambda x: log_softmax(x, 0), (floats(3, 4, low=-500, high=500),)),
    Case("logsumexp/large_values", lambda lib, x: x.logsumexp(-1),
         lambda x: np.max(x, -1) + np.log(np.exp(x - np.max(x, -1, keepdims=True)).sum(-1)),
         (floats(3, 4, low=-500, high=500),)),
    Case("sigmoid/large_values", lambda lib, x: x.sigmoid(), sigmoid,
         (floats(3, 4, low=-60, high=60),)),
    Case("softplus/large_values", lambda lib, x: nnf(lib).softplus(x), softplus,
         (floats(3, 4, low=-60, high=60),)),
    Case("tanh/large_values", lambda lib, x: x.tanh(), np.tanh,
         (floats(3, 4, low=-30, high=30),)),
]

CASES: list[Case] = [*ARITHMETIC, *COMPARISONS, *INPLACE, *MATH, *REDUCTIONS, *SHAPE,
                     *INDEXING, *LINALG, *KINKS, *EXTREMES]

# Every public function of SPEC §3.2 and the cases that cover it: a name without a case
# fails test_functions.py::test_every_spec_function_has_a_case.
SPEC_FUNCTIONS = ["add", "sub", "mul", "div", "pow", "matmul", "neg", "abs", "lt", "le", "gt", "ge", "eq", "ne", "add_", "mul_", "sub_", "div_", "zero_", "fill_", "iadd", "exp", "log", "log1p", "sqrt", "rsqrt", "sin", "cos", "tan", "tanh", "sigmoid", "relu", "gelu", "gelu/tanh", "silu", "softplus", "erf", "clamp", "maximum", "minimum", "where", "sign", "sum", "mean", "max", "min", "amax", "amin", "prod", "var", "std", "norm", "logsumexp", "argmax", "argmin", "reshape", "view", "flatten", "squeeze", "unsqueeze", "transpose", "permute", "expand", "broadcast_to", "cat", "stack", "split", "chunk", "index", "setitem", "gather", "index_select", "masked_fill", "mm", "bmm", "softmax", "log_softmax"]


# --- type promotion: (name, fn(lib) -> tensor, expected dtype name) -------------------

PROMOTIONS = [
    ("int_tensor+float_scalar", lambda lib: lib.tensor([1, 2]) + 2.5, "float32"),
    ("float_scalar*int_tensor", lambda lib: 1.5 * lib.tensor([1, 2]), "float32"),
    ("int_tensor+int_scalar", lambda lib: lib.tensor([1, 2]) + 3, "int64"),
    ("int32_tensor+int_scalar", lambda lib: lib.tensor([1, 2], dtype=lib.int32) + 3, "int32"),
    ("int32+int64", lambda lib: lib.tensor([1], dtype=lib.int32) + lib.tensor([2]), "int64"),
    ("int/int", lambda lib: lib.tensor([1, 2, 3]) / lib.tensor([2, 2, 2]), "float32"),
    ("int/int_scalar", lambda lib: lib.tensor([1, 2, 3]) / 2, "float32"),
    ("int_scalar/int", lambda lib: 3 / lib.tensor([1, 2, 3]), "float32"),
    ("float32+float64", lambda lib: lib.tensor([1.5]) + lib.tensor([2.25], dtype=lib.float64),
     "float64"),
    ("float32*float64_scalar", lambda lib: lib.tensor([1.5]) * 0.1, "float32"),
    ("float32+float64_zero_dim",
     lambda lib: lib.tensor([1.5]) + lib.tensor(2.25, dtype=lib.float64), "float32"),
    ("int+float64_zero_dim", lambda lib: lib.tensor([1, 2]) + lib.tensor(0.5, dtype=lib.float64),
     "float64"),
    ("float64+float32_zero_dim",
     lambda lib: lib.tensor([1.5], dtype=lib.float64) * lib.tensor(3.0), "float64"),
    ("bool+bool", lambda lib: lib.tensor([True, False]) + lib.tensor([True, True]), "bool"),
    ("bool*bool", lambda lib: lib.tensor([True, False]) * lib.tensor([True, True]), "bool"),
    ("bool+int_scalar", lambda lib: lib.tensor([True, False]) + 1, "int64"),
    ("bool*float_scalar", lambda lib: lib.tensor([True, False]) * 1.5, "float32"),
    ("bool+int_tensor", lambda lib: lib.tensor([True, False]) + lib.tensor([3, 4],
                                                                           dtype=lib.int32),
     "int32"),
    ("float_tensor+bool_scalar", lambda lib: lib.tensor([0.5]) + True, "float32"),
    ("int_tensor*bool_scalar", lambda lib: lib.tensor([3]) * True, "int64"),
    ("int**float_scalar", lambda lib: lib.tensor([1, 2, 4]) ** 0.5, "float32"),
    ("int**int_scalar", lambda lib: lib.tensor([1, 2, 4]) ** 2, "int64"),
    ("int_tensor.sum", lambda lib: lib.tensor([1, 2], dtype=lib.int32).sum(), "int64"),
    ("bool_tensor.sum", lambda lib: lib.tensor([True, True, False]).sum(), "int64"),
    ("int.sin", lambda lib: lib.tensor([1, 2]).sin(), "float32"),
    ("int.sqrt", lambda lib: lib.tensor([1, 4]).sqrt(), "float32"),
    ("where_int_float", lambda lib: lib.where(lib.tensor([True, False]), lib.tensor([1, 2]),
                                              0.5), "float32"),
    ("cat_int_float", lambda lib: lib.cat([lib.tensor([1]), lib.tensor([2.5])]), "float32"),
    ("int_max", lambda lib: lib.tensor([[3, 1], [2, 5]]).max(), "int64"),
    ("int_floordiv", lambda lib: lib.tensor([7, -7]) // 2, "int64"),
    ("compare_int_float", lambda lib: lib.tensor([1, 2]) < 1.5, "bool"),
]


# --- errors: (name, fn(lib), exception type, first line of the message) --------------
# The message is written with tracegrad's names; PyTorch's is compared after replacing
# "torch" by "tracegrad".


def _backward_twice(lib):
    x = lib.ones(3, requires_grad=True)
    y = (x * x).sum()
    y.backward()
    y.backward()


def _inplace_saved(lib):
    x = lib.ones(3, requires_grad=True)
    y = x.exp()
    z = y * 2  # noqa: F841 (keeps the graph)
    y.add_(1)
    y.sum().backward()


def _inplace_saved_input(lib):
    x = lib.ones(3, requires_grad=True)
    a = x * 1
    y = a * a
    a.mul_(2)
    y.sum().backward()


def _inplace_leaf(lib):
    lib.ones(3, requires_grad=True).add_(1)


def _setitem_leaf(lib):
    x = lib.ones(3, requires_grad=True)
    x[0] = 2.0


def _setitem_leaf_advanced(lib):
    x = lib.ones(3, requires_grad=True)
    x[[0, 2]] = 2.0


def _non_scalar_backward(lib):
    (lib.ones(3, requires_grad=True) * 2).backward()


SAVED_TWICE = (
    "Trying to backward through the graph a second time (or directly access saved tensors "
    "after they have already been freed). Saved intermediate values of the graph are freed "
    "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
    "backward through the graph a second time or if you need to access saved tensors after "
    "calling backward.")
MODIFIED = (
    "one of the variables needed for gradient computation has been modified by an inplace "
    "operation: [tracegrad.FloatTensor [3]], which is output 0 of {node}, is at version 1; "
    "expected version 0 instead. Hint: enable anomaly detection to find the operation that "
    "failed to compute its gradient, with tracegrad.autograd.set_detect_anomaly(True, "
    "check_nan=False).")

ERRORS = [
    ("broadcast_mismatch", lambda lib: lib.ones(3) + lib.ones(4), RuntimeError,
     ("The size of tensor a (3) must match the size of tensor b (4) at non-singleton "
      "dimension 0")),
    ("broadcast_mismatch_2d", lambda lib: lib.ones(2, 3) * lib.ones(4, 1, 2), RuntimeError,
     ("The size of tensor a (3) must match the size of tensor b (2) at non-singleton "
      "dimension 2")),
    ("mm_mismatch", lambda lib: lib.ones(2, 3) @ lib.ones(4, 5), RuntimeError,
     "mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"),
    ("reshape_invalid", lambda lib: lib.ones(2, 3).reshape(5), RuntimeError,
     "shape '[5]' is invalid for input of size 6"),
    ("view_invalid", lambda lib: lib.ones(2, 3).view(4, -1), RuntimeError,
     "shape '[4, -1]' is invalid for input of size 6"),
    ("cat_mismatch", lambda lib: lib.cat([lib.ones(2, 3), lib.ones(2, 4)]), RuntimeError,
     ("Sizes of tensors must match except in dimension 0. Expected size 3 but got size 4 for "
      "tensor number 1 in the list.")),
    ("cat_mismatch_dim", lambda lib: lib.cat([lib.ones(2, 3), lib.ones(2, 3), lib.ones(3, 4)],
                                             dim=1), RuntimeError,
     ("Sizes of tensors must match except in dimension 1. Expected size 2 but got size 3 for "
      "tensor number 2 in the list.")),
    ("cat_ndim_mismatch", lambda lib: lib.cat([lib.ones(2, 3), lib.ones(2)]), RuntimeError,
     "Tensors must have same number of dimensions: got 2 and 1"),
    ("stack_mismatch", lambda lib: lib.stack([lib.ones(2), lib.ones(3)]), RuntimeError,
     "stack expects each tensor to be equal size, but got [2] at entry 0 and [3] at entry 1"),
    ("dim_out_of_range", lambda lib: lib.ones(2, 3).sum(2), IndexError,
     "Dimension out of range (expected to be in range of [-2, 1], but got 2)"),
    ("index_out_of_range", lambda lib: lib.ones(2, 3)[2], IndexError,
     "index 2 is out of bounds for dimension 0 with size 2"),
    ("backward_no_grad", lambda lib: lib.ones(3).sum().backward(), RuntimeError,
     "element 0 of tensors does not require grad and does not have a grad_fn"),
    ("non_scalar_backward", _non_scalar_backward, RuntimeError,
     "grad can be implicitly created only for scalar outputs"),
    ("backward_twice", _backward_twice, RuntimeError, SAVED_TWICE),
    ("inplace_leaf", _inplace_leaf, RuntimeError,
     "a leaf Variable that requires grad is being used in an in-place operation."),
    ("setitem_leaf", _setitem_leaf, RuntimeError,
     "a view of a leaf Variable that requires grad is being used in an in-place operation."),
    ("setitem_leaf_advanced", _setitem_leaf_advanced, RuntimeError,
     "a leaf Variable that requires grad is being used in an in-place operation."),
    ("inplace_saved_output", _inplace_saved, RuntimeError, MODIFIED.format(node="Exp")),
    ("inplace_saved_input", _inplace_saved_input, RuntimeError,
     MODIFIED.format(node="Mul")),
    ("numpy_requires_grad", lambda lib: lib.ones(2, requires_grad=True).numpy(), RuntimeError,
     "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead."),
    ("int_requires_grad", lambda lib: lib.tensor([1, 2], requires_grad=True), RuntimeError,
     "Only Tensors of floating point and complex dtype can require gradients"),
    ("grad_unused", lambda lib: lib.autograd.grad(
        (lib.ones(2, requires_grad=True) * 2).sum(), lib.ones(2, requires_grad=True)),
     RuntimeError,
     ("The differentiated Tensor at index 0 appears to not have been used in the graph. "
      "Set allow_unused=True if this is the desired behavior.")),
    ("negative_step", lambda lib: lib.ones(4)[::-1], ValueError,
     "step must be greater than zero"),
    ("item_many", lambda lib: lib.ones(2).item(), RuntimeError,
     "a Tensor with 2 elements cannot be converted to Scalar"),
    # extrema of no elements
    ("amin_of_empty", lambda lib: lib.zeros(0).amin(), RuntimeError,
     ("amin(): Expected reduction dim to be specified for input.numel() == 0. Specify the "
      "reduction dim with the 'dim' argument.")),
    ("argmin_of_empty", lambda lib: lib.zeros(0).argmin(), IndexError,
     "argmin(): Expected reduction dim to be specified for input.numel() == 0."),
    ("min_along_empty_dim", lambda lib: lib.zeros(2, 0).min(dim=1), IndexError,
     "min(): Expected reduction dim 1 to have non-zero size."),
    ("argmax_along_empty_dim", lambda lib: lib.zeros(0, 3).argmax(dim=-2), IndexError,
     "argmax(): Expected reduction dim 0 to have non-zero size."),
]
