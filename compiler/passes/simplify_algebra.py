"""Rewrite arithmetic that does nothing, or does it the long way, where the result is exact.

Rules (their names are the keys of `stats`):

    mul_one        mul(x, 1), mul(1, x), div(x, 1)          -> x
    add_zero       add(x, z), add(z, x), sub(x, z)           -> x   (z a zero that is exact)
    neg_neg        neg(neg(x))                               -> x
    cast_same      cast(x, dtype=<x's own dtype>)            -> x
    reduce_expand  sum(expand(x)) over exactly the expanded axes -> mul(x, count)
                   amax/amin(expand(x)) over them            -> x   (a reshape where needed)

"1" and "0" are Python scalars or constants with that value in every element, possibly
seen through `reshape`/`expand`/`permute` (the backward's `expand(reshape(1.0))` seeds).
A rule fires only if its result has exactly the replaced value's shape and dtype: never
`mul(x, ones)` whose ones broadcast x to a larger shape. A replaced graph output is
replaced in the output list too, so outputs always name defined values.

What is deliberately *not* rewritten, because it is not exact in IEEE arithmetic:
* `mul(x, 0) -> 0`: inf * 0 and nan * 0 are nan, and -1 * 0 is -0.0.
* `add(x, 0.0) -> x` for floats: -0.0 + 0.0 is +0.0, and div(1, ·) turns that sign into
  +inf against -inf. The rule fires for integers, for the zero -0.0 (x + -0.0 is x for
  every x) and for `sub(x, 0.0)` (x - 0.0 is x for every x), not for a float `+ 0`.
* `exp(log(x)) -> x`: wrong for x < 0 (nan) and, for x > 0, two roundings away from x.
  `log(exp(x)) -> x`: exp overflows to inf above ~88.7 in float32, and rounds elsewhere.
* `sum(expand(x))` as `mul(x, count)` is the one rule that may change the last bit: the
  product is correctly rounded, the sum of `count` copies is not always.
Movement (`reshape(reshape(x))`, `permute(permute(x))`, identity moves) is composed by
`eliminate_movement`. Before and after:

>>> from tracegrad.compiler.ir_text import parse_graph
>>> g = parse_graph('''
... def f(x0: f32[4], x1: f32[3,4]):
...     v0 = mul(x0, 1)
...     v1 = neg(v0)
...     v2 = neg(v1)
...     v3 = expand(v2, shape=(3, 4))
...     v4 = sum(v3, axes=(0,), keepdims=False)
...     return (v4, v2)''')
>>> result = simplify_algebra(g)
>>> print(result.graph, end="")
def f(x0: f32[4], x1: f32[3,4]):
    v1 = neg(x0)                                  # f32[4]
    v3 = expand(x0, shape=(3, 4))                 # f32[3,4]
    v4 = mul(x0, 3)                               # f32[4]
    return (v4, x0)
>>> {rule: n for rule, n in result.stats.items() if n}
{'mul_one': 1, 'neg_neg': 1, 'reduce_expand': 1}
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import Graph, Node, Value
from . import PassResult, Rewriter

RULES = ("mul_one", "add_zero", "neg_neg", "cast_same", "reduce_expand")
SPLAT_THROUGH = frozenset({"reshape", "expand", "permute"})  # they keep the set of elements


def _is_one(value, dtype) -> bool:
    return value == 1


def _is_add_identity(value, dtype) -> bool:
    # -0.0 is the float identity of addition; +0.0 is not (-0.0 + 0.0 is +0.0).
    return value == 0 and (not dtype.is_floating_point or math.copysign(1, value) < 0)


def _is_sub_identity(value, dtype) -> bool:
    # x - (+0.0) is x for every x (also -0.0); x - (-0.0) is x + 0.0, which is not.
    return value == 0 and (not dtype.is_floating_point or math.copysign(1, value) > 0)


# op -> (position of the neutral operand, its test, rule): op(a, b) is the other operand
NEUTRAL = {
    "mul": ((1, _is_one, "mul_one"), (0, _is_one, "mul_one")),
    "div": ((1, _is_one, "mul_one"),),
    "add": ((1, _is_add_identity, "add_zero"), (0, _is_add_identity, "add_zero")),
    "sub": ((1, _is_sub_identity, "add_zero"),),
}


def simplify_algebra(graph: Graph) -> PassResult:
    """`graph` with the rules of the module docstring applied, front to back."""
    rw = Rewriter(graph)
    stats = dict.fromkeys(RULES, 0)
    for node in graph.nodes:
        inputs = [rw.read(x) for x in node.inputs]
        rule, value = _rewrite(node, inputs, rw)
        if rule is None:
            rw.keep(node)
            continue
        stats[rule] += 1
        if value is not node.out:  # else the rule's new node defines node.out itself
            rw.replace(node.out, value)
    return PassResult(rw.finish(), stats)


def _rewrite(node: Node, inputs: list, rw: Rewriter) -> tuple[str | None, Value | None]:
    """(rule, the value that stands for node.out) or (None, None)."""
    op, out = node.op, node.out
    for k, neutral, rule in NEUTRAL.get(op, ()):
        x, value = inputs[1 - k], _splat(inputs[k], rw.producer)
        if _same_type(x, out) and value is not None and neutral(value, out.dtype):
            return rule, x
    if op == "neg":
        inner = rw.producer.get(inputs[0])
        if inner is not None and inner.op == "neg" and _same_type(inner.inputs[0], out):
            return "neg_neg", inner.inputs[0]
    if op == "cast" and _same_type(inputs[0], out):
        return "cast_same", inputs[0]
    if op in ("sum", "amax", "amin"):
        value = _reduce_expand(node, inputs[0], rw)
        if value is not None:
            return "reduce_expand", value
    return None, None


def _splat(x, producer: dict) -> int | float | bool | None:
    """The one value every element of `x` has (sign of zero included), or None."""
    while isinstance(x, Value) and x in producer and producer[x].op in SPLAT_THROUGH:
        x = producer[x].inputs[0]
    if not isinstance(x, Value):
        return x  # a Python scalar
    node = producer.get(x)
    if node is None or node.op != "constant" or node.attrs["value"].size == 0:
        return None
    array = node.attrs["value"]
    first = array.flat[0]
    if not np.all(array == first):
        return None
    if array.dtype.kind == "f" and not np.all(np.signbit(array) == np.signbit(first)):
        return None  # 0.0 and -0.0 are different zeros here
    return first.item()


def _same_type(x, out: Value) -> bool:
    return isinstance(x, Value) and (x.shape, x.dtype) == (out.shape, out.dtype)


def _reduce_expand(node: Node, x_expanded, rw: Rewriter) -> Value | None:
    """sum/amax/amin over exactly the axes an `expand` broadcast: x times the count (sum)
    or x itself, reshaped to the result's shape where that adds or drops unit axes."""
    src = rw.producer.get(x_expanded)
    if src is None or src.op != "expand" or node.out.dtype.category == 0:  # no bool sums
        return None
    x, shape, out = src.inputs[0], src.attrs["shape"], node.out
    lead = len(shape) - x.ndim
    broadcast = {a for a in range(len(shape)) if shape[a] != 1
                 and (a < lead or x.shape[a - lead] == 1)}
    axes = set(node.attrs["axes"])
    if not broadcast <= axes or any(a not in broadcast and shape[a] != 1 for a in axes):
        return None
    count = math.prod(shape[a] for a in broadcast)
    value = x
    if node.op == "sum" and count != 1:
        value = rw.add("mul", [x, count], {}, node.loc, out=out if x.shape == out.shape else None)
    if value.shape != out.shape:
        value = rw.add("reshape", [value], {"shape": out.shape}, node.loc, out=out)
    return value
