"""Elementwise primitives: unary math, binary arithmetic, comparisons, `where`, `cast`.

Inputs of a binary primitive already share one dtype (the front end promotes); either may
be a Python scalar. Broadcasting is the shape rule's business; summing a gradient back to
an input's shape is the autograd engine's, so no rule here un-broadcasts.

>>> elementwise_rules = [p.name for p in UNARY]  # doctest: +SKIP
"""

from __future__ import annotations

import math

import numpy as np

from .dtypes import bool_, float32
from .primitive import Primitive, Spec
from .samples import distinct, floats
from .shapes import broadcast_shapes


def quiet(kernel):
    """Run a kernel without NumPy's floating-point warnings: PyTorch gives nan/inf silently."""

    def run(*args, **attrs):
        with np.errstate(all="ignore"):
            return kernel(*args, **attrs)

    run.__name__ = getattr(kernel, "__name__", "kernel")
    return run


def same_shape(x):
    return Spec(x.shape, x.dtype)


def broadcast(*inputs):
    return Spec(broadcast_shapes(*(x.shape for x in inputs)), inputs[0].dtype)


def broadcast_to_bool(*inputs):
    return Spec(broadcast_shapes(*(x.shape for x in inputs)), bool_)


def unary(name, kernel, rule, saves=(0,), sample=floats((3, 4)), **extra):
    return Primitive(name, "elementwise", same_shape, kernel, (rule,), saves, sample, **extra)


def binary(name, kernel, rules, saves=(0, 1), sample=floats((3, 4), (4,)), **extra):
    return Primitive(name, "elementwise", broadcast, kernel, rules, saves, sample, **extra)


def compare(name, kernel):
    return Primitive(name, "elementwise", broadcast_to_bool, kernel, None, (),
                     distinct((3, 4), (4,)), backward_name="")


# --- erf, which NumPy lacks: Cephes' rational approximations, accurate to float64 ---
_ERF_T = [9.60497373987051638749E0, 9.00260197203842689217E1, 2.23200534594684319226E3,
          7.00332514112805075473E3, 5.55923013010394962768E4]
_ERF_U = [1.0, 3.35617141647503099647E1, 5.21357949780152679795E2, 4.59432382970980127987E3,
          2.26290000613890934246E4, 4.92673942608635921086E4]
_ERFC_P = [2.46196981473530512524E-10, 5.64189564831068821977E-1, 7.46321056442269912687E0,
           4.86371970985681366614E1, 1.96520832956077098242E2, 5.26445194995477358631E2,
           9.34528527171957607540E2, 1.02755188689515710272E3, 5.57535335369399327526E2]
_ERFC_Q = [1.0, 1.32281951154744992508E1, 8.67072140885989742329E1, 3.54937778887819891062E2,
           9.75708501743205489753E2, 1.82390916687909736289E3, 2.24633760818710981792E3,
           1.65666309194161350182E3, 5.57535340817727675546E2]
_ERFC_R = [5.64189583547755073984E-1, 1.27536670759978104416E0, 5.01905042251180477414E0,
           6.16021097993053585195E0, 7.40974269950448939160E0, 2.97886665372100240670E0]
_ERFC_S = [1.0, 2.26052863220117276590E0, 9.39603524938001434673E0, 1.20489539808096656605E1,
           1.70814450747565897222E1, 9.60896809063285878198E0, 3.36907645100081516050E0]


ERF_FAR = 64.0  # exp(-x²) is 0 past this: the ratio is taken here, so inf gives ±1, not nan


@quiet
def erf_kernel(x: np.ndarray) -> np.ndarray:
    """erf in float64 (a small-|x| series ratio, else 1 - erfc), cast back to x's dtype."""
    v = np.asarray(x, dtype=np.float64)
    a = np.abs(v)
    z = v * v
    small = v * np.polyval(_ERF_T, z) / np.polyval(_ERF_U, z)
    mid = np.polyval(_ERFC_P, a) / np.polyval(_ERFC_Q, a)
    capped = np.minimum(a, ERF_FAR)
    far = np.polyval(_ERFC_R, capped) / np.polyval(_ERFC_S, capped)
    erfc = np.exp(-z) * np.where(a < 8.0, mid, far)
    large = np.sign(v) * (1.0 - erfc)
    return np.where(a <= 1.0, small, large).astype(x.dtype, copy=False)


@quiet
def sigmoid_kernel(x):
    e = np.exp(-np.abs(x))  # never overflows; keeps tiny results for very negative x
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def pow_rule_base(g, x, y, out):
    if not hasattr(y, "shape"):  # a Python exponent
        return g * 0 if y == 0 else g * y * x ** (y - 1)
    return (g * y * x ** (y - 1)).where(y != 0, 0.0)


def pow_rule_exponent(g, x, y, out):
    # d(x**y)/dy = x**y log(x), taken as 0 where x == 0 and y >= 0 (PyTorch's choice);
    # log(1) stands in at x == 0, so that 0 * log(0) makes no NaN (and no warning) on the way.
    zero = x == 0
    return (g * out * x.where(~zero, 1.0).log()).where(~(zero & (y >= 0)), 0.0)


TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)

UNARY = [
    unary("neg", np.negative, lambda g, x, out: -g, saves=()),
    unary("exp", quiet(np.exp), lambda g, x, out: g * out, saves=("out",)),
    unary("log", quiet(np.log), lambda g, x, out: g / x, sample=floats((3, 4), low=0.2)),
    unary("log1p", quiet(np.log1p), lambda g, x, out: g / (x + 1),
          sample=floats((3, 4), low=-0.8)),
    unary("sin", np.sin, lambda g, x, out: g * x.cos()),
    unary("cos", np.cos, lambda g, x, out: -(g * x.sin())),
    unary("tanh", np.tanh, lambda g, x, out: g * (1 - out * out), saves=("out",)),
    unary("sigmoid", sigmoid_kernel, lambda g, x, out: g * out * (1 - out), saves=("out",)),
    unary("sqrt", quiet(np.sqrt), lambda g, x, out: g / (2 * out), saves=("out",),
          sample=floats((3, 4), low=0.2)),
    unary("erf", erf_kernel, lambda g, x, out: g * TWO_OVER_SQRT_PI * (-(x * x)).exp()),
    unary("abs", np.abs, lambda g, x, out: g * x.sign(),
          sample=floats((3, 4), away_from=0.0)),
    unary("sign", np.sign, lambda g, x, out: g * 0, saves=(),
          sample=floats((3, 4), away_from=0.0)),
    # max(x, 0) with gradient 0 at 0 (maximum's rule would split it there)
    unary("relu", lambda x: np.maximum(x, 0), lambda g, x, out: g.where(out > 0, 0.0),
          saves=("out",), sample=floats((3, 4), away_from=0.0)),
]

BINARY = [
    binary("add", np.add, (lambda g, x, y, out: g, lambda g, x, y, out: g), saves=()),
    binary("sub", np.subtract, (lambda g, x, y, out: g, lambda g, x, y, out: -g), saves=()),
    binary("mul", np.multiply, (lambda g, x, y, out: g * y, lambda g, x, y, out: g * x)),
    binary("div", quiet(np.divide), (lambda g, x, y, out: g / y,
                                     lambda g, x, y, out: -g * x / (y * y)),
           sample=floats((3, 4), (4,), away_from=0.0)),
    binary("pow", quiet(np.power), (pow_rule_base, pow_rule_exponent), saves=(0, 1, "out"),
           sample=floats((3, 4), (4,), low=0.3)),
    # Ties split the gradient evenly, as PyTorch does.
    binary("maximum", np.maximum, (lambda g, x, y, out: g * ((x > y) + (x == y) * 0.5),
                                   lambda g, x, y, out: g * ((x < y) + (x == y) * 0.5)),
           sample=distinct((3, 4), (4,))),
    binary("minimum", np.minimum, (lambda g, x, y, out: g * ((x < y) + (x == y) * 0.5),
                                   lambda g, x, y, out: g * ((x > y) + (x == y) * 0.5)),
           sample=distinct((3, 4), (4,))),
]

COMPARE = [
    compare("lt", np.less), compare("le", np.less_equal),
    compare("gt", np.greater), compare("ge", np.greater_equal),
    compare("eq", np.equal), compare("ne", np.not_equal),
    compare("logical_and", np.logical_and), compare("logical_or", np.logical_or),
]

logical_not = Primitive("logical_not", "elementwise", lambda x: Spec(x.shape, bool_),
                        np.logical_not, None, (), floats((3, 4)), backward_name="")

where = Primitive(
    "where", "elementwise",
    lambda c, x, y: Spec(broadcast_shapes(c.shape, x.shape, y.shape), x.dtype),
    np.where,
    (None, lambda g, c, x, y, out: g.where(c, 0.0), lambda g, c, x, y, out: g.where(~c, 0.0)),
    saves=(0,),
    sample=lambda rng: ([rng.uniform(size=(3, 4)) > 0.5, rng.standard_normal((3, 4)),
                         rng.standard_normal((4,))], {}),
)

cast = Primitive(
    "cast", "elementwise",
    lambda x, dtype: Spec(x.shape, dtype),
    lambda x, dtype: x.astype(dtype.numpy),
    # Only float-to-float casts carry gradients; the engine never asks for others.
    (lambda g, x, out, dtype: g.to(x.dtype),),
    saves=(),
    sample=lambda rng: ([rng.standard_normal((3, 4))], {"dtype": float32}),
    backward_name="ToCopyBackward0",
)

copy = Primitive("copy", "elementwise", same_shape, lambda x: np.array(x, copy=True),
                 (lambda g, x, out: g,), (), floats((3, 4)), backward_name="CloneBackward0")

ELEMENTWISE = [*UNARY, *BINARY, *COMPARE, logical_not, where, cast, copy]
(neg, exp, log, log1p, sin, cos, tanh, sigmoid, sqrt, erf, abs, sign, relu) = UNARY
(add, sub, mul, div, pow, maximum, minimum) = BINARY
(lt, le, gt, ge, eq, ne, logical_and, logical_or) = COMPARE
