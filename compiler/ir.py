"""The graph IR: a small typed SSA graph that every compiler stage reads and writes.

A `Graph` has typed inputs, a list of `Node`s in topological order and a list of outputs.
Each node applies one primitive of the op set (or is a `constant`) to earlier values and
Python scalars, and defines exactly one new `Value` of known shape and dtype. A tracer
makes graphs with `GraphBuilder`; `verify` checks the invariants every pass must keep;
`ir_text` prints and parses the text form, which reads like the Python it came from:

>>> from tracegrad.compiler.ops import float32
>>> b = GraphBuilder("loss")
>>> x = b.add_input((25,), float32)
>>> y = b.add_node("mul", [b.add_node("sin", [x], loc="train.py:12"), 2.0])
>>> b.set_outputs([b.add_node("sum", [y], {"axes": (0,), "keepdims": False})])
>>> g = b.build()
>>> [n.op for n in g.nodes], g.outputs[0]
(['sin', 'mul', 'sum'], Value(v2: f32[]))
"""

from __future__ import annotations

import keyword
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .ops import PRIMITIVES, Spec
from .ops.dtypes import ALL_DTYPES, DType, from_numpy

SHORT_NAMES: dict[DType, str] = dict(zip(ALL_DTYPES, ["bool", "i32", "i64", "f32", "f64"]))
BY_SHORT_NAME: dict[str, DType] = {short: d for d, short in SHORT_NAMES.items()}
# Names a value may not take: `inf`/`nan` are float literals where a node's inputs are read.
RESERVED_NAMES = frozenset({"inf", "nan"})


class IRError(Exception):
    """A malformed graph or IR text; `node` and `line` say where, when known."""

    def __init__(self, message: str, node: Node | None = None, line: int | None = None):
        super().__init__(message if line is None else f"line {line}: {message}")
        self.node = node
        self.line = line


def format_type(shape: tuple, dtype: DType) -> str:
    """The short spelling of a value's type.

    >>> from tracegrad.compiler.ops import float32
    >>> format_type((3, 4), float32), format_type((), float32)
    ('f32[3,4]', 'f32[]')
    """
    return f"{SHORT_NAMES[dtype]}[{','.join(map(str, shape))}]"


@dataclass(eq=False, frozen=True)
class Value:
    """One SSA value: defined once (by a graph input or a node), hashed by identity."""

    name: str
    shape: tuple[int, ...]
    dtype: DType

    @property
    def spec(self) -> Spec:
        return Spec(self.shape, self.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"Value({self.name}: {format_type(self.shape, self.dtype)})"


Input = Value | int | float | bool  # what a node reads: a value or a Python scalar


@dataclass(eq=False)
class Node:
    """`out = op(*inputs, **attrs)`; `op` is a key of `PRIMITIVES` or "constant"."""

    op: str
    inputs: list[Input]
    attrs: dict[str, Any]
    out: Value
    loc: str | None = None  # the user's source line, e.g. "train.py:12"

    def __repr__(self) -> str:
        args = ", ".join(x.name if isinstance(x, Value) else repr(x) for x in self.inputs)
        where = f" at {self.loc}" if self.loc else ""
        return f"{self.out.name} = {self.op}({args}){where}"


@dataclass(eq=False)
class Graph:
    """A function: typed `inputs`, `nodes` in topological order, `outputs`."""

    name: str
    inputs: list[Value]
    nodes: list[Node]
    outputs: list[Value]

    def values(self) -> list[Value]:
        """Every value in definition order: the inputs, then each node's output."""
        return [*self.inputs, *(n.out for n in self.nodes)]

    def producers(self) -> dict[Value, Node]:
        """The node that defines each non-input value."""
        return {n.out: n for n in self.nodes}

    def users(self) -> dict[Value, list[Node]]:
        """For every value, the nodes that read it (each listed once, in order)."""
        users: dict[Value, list[Node]] = {v: [] for v in self.values()}
        for node in self.nodes:
            for x in dict.fromkeys(x for x in node.inputs if isinstance(x, Value)):
                users.setdefault(x, []).append(node)
        return users

    def to_networkx(self):
        """A `networkx.DiGraph` whose nodes are this graph's `Node`s (for the passes).

        An edge `a -> b` means `b` reads `a.out`; its attribute `values` lists the values
        it carries. Each graph node has the attribute `index` (its position). Graph inputs
        are not nodes: they have no producer.
        """
        import networkx as nx  # here, not at the top: `import tracegrad` must not load it

        dag = nx.DiGraph()
        producers = self.producers()
        for i, node in enumerate(self.nodes):
            dag.add_node(node, index=i)
            for x in node.inputs:
                if isinstance(x, Value) and x in producers:
                    edge = dag.get_edge_data(producers[x], node)
                    if edge is None:
                        dag.add_edge(producers[x], node, values=[x])
                    elif x not in edge["values"]:
                        edge["values"].append(x)
        return dag

    def copy(self) -> Graph:
        """A copy with fresh `Value`s and `Node`s (attribute arrays are shared: frozen)."""
        fresh: dict[Value, Value] = {v: Value(v.name, v.shape, v.dtype) for v in self.values()}
        nodes = [Node(n.op, [fresh.get(x, x) if isinstance(x, Value) else x for x in n.inputs],
                      dict(n.attrs), fresh[n.out], n.loc) for n in self.nodes]
        return Graph(self.name, [fresh[v] for v in self.inputs], nodes,
                     [fresh.get(v, v) for v in self.outputs])

    def __str__(self) -> str:
        from .ir_text import print_graph

        return print_graph(self)

    def __repr__(self) -> str:
        return (f"<Graph {self.name}: {len(self.inputs)} inputs, {len(self.nodes)} nodes, "
                f"{len(self.outputs)} outputs>")


# --- shape inference -----------------------------------------------------------------

def infer_spec(op: str, inputs: list, attrs: dict) -> Spec:
    """The output `Spec` of `op` by its shape rule; raises `IRError` if the rule rejects.

    Python scalars are weakly typed (PyTorch's and NumPy 2's rule): a rule sees them as
    `Spec((), None)`, and where it takes its dtype from one, they stand for the last
    tensor input instead (`sub(2.0, x)`, `where(c, 0.0, x)`).

    >>> from tracegrad.compiler.ops import float32
    >>> infer_spec("sub", [2.0, Value("x0", (3,), float32)], {})
    Spec(shape=(3,), dtype=tracegrad.float32)
    """
    if op == "constant":
        value = attrs.get("value")
        if not isinstance(value, np.ndarray) or set(attrs) != {"value"}:
            raise IRError("constant: expects exactly one attribute, value=<NumPy array>")
        return Spec(value.shape, from_numpy(value.dtype))
    prim = PRIMITIVES.get(op)
    if prim is None:
        raise IRError(f"unknown op '{op}'")
    specs = [x.spec if isinstance(x, Value) else Spec((), None) for x in inputs]
    spec = _apply_rule(prim, specs, attrs, inputs)
    if spec.dtype is None:
        tensors = [x.dtype for x in inputs if isinstance(x, Value)]
        if not tensors:
            raise IRError(f"{op}: needs at least one tensor input to have a dtype")
        weak = Spec((), tensors[-1])
        spec = _apply_rule(prim, [weak if s.dtype is None else s for s in specs], attrs, inputs)
    return Spec(tuple(int(s) for s in spec.shape), spec.dtype)


def _apply_rule(prim, specs: list[Spec], attrs: dict, inputs: list) -> Spec:
    try:
        return prim.shape(*specs, **attrs)
    except Exception as exc:  # any complaint of a rule is a malformed node, reported as one
        shown = ", ".join(format_type(*s) if s.dtype else repr(x) for s, x in zip(specs, inputs))
        raise IRError(f"{prim.name}: the shape rule rejects ({shown}) with attrs "
                      f"{_short_attrs(attrs)}: {type(exc).__name__}: {exc}") from exc


def _short_attrs(attrs: dict) -> str:
    return "{" + ", ".join(f"{k}={v!r}"[:60] for k, v in attrs.items()) + "}"


# --- attribute values ----------------------------------------------------------------

def normalize_attr(value: Any) -> Any:
    """An attribute in the IR's own terms: NumPy scalars as Python ones, arrays frozen.

    The copy keeps a caller's later writes to an index array out of the graph.
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        frozen = np.array(value, copy=True)
        frozen.flags.writeable = False
        return frozen
    if isinstance(value, slice):
        return slice(*(normalize_attr(p) for p in (value.start, value.stop, value.step)))
    if isinstance(value, (tuple, list)):  # also turns named tuples into plain ones
        items = [normalize_attr(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def check_attr(value: Any) -> str | None:
    """Why `value` can't be an attribute (the text form must print it), or None."""
    # Exact types: a subclass (np.float64, a named tuple) would not print as itself.
    if value is None or value is Ellipsis or type(value) in (bool, int, float, str, DType):
        return None
    if type(value) in (tuple, list):
        return next((why for why in map(check_attr, value) if why), None)
    if isinstance(value, slice):
        parts = (value.start, value.stop, value.step)
        ok = all(p is None or type(p) is int for p in parts)
        return None if ok else f"slice parts must be ints or None, not {value!r}"
    if isinstance(value, np.ndarray):
        return None if _exact_dtype(value) else f"arrays of {value.dtype} are not supported"
    return f"values of type {type(value).__name__} are not supported ({value!r:.40})"


def _exact_dtype(array: np.ndarray) -> DType | None:
    if array.dtype.kind not in "biuf":
        return None
    dtype = from_numpy(array.dtype)
    return dtype if dtype.numpy == array.dtype else None


# --- building ------------------------------------------------------------------------

class GraphBuilder:
    """Makes a graph node by node, computing each output's type with the op's shape rule.

    Inputs are named `x0, x1, ...` (unless named), node outputs `v0, v1, ...`.

    >>> from tracegrad.compiler.ops import float32
    >>> b = GraphBuilder("f")
    >>> x = b.add_input((3,), float32, name="x")
    >>> b.add_node("exp", [x])
    Value(v0: f32[3])
    """

    def __init__(self, name: str = "graph"):
        self.name = name
        self.inputs: list[Value] = []
        self.nodes: list[Node] = []
        self.outputs: list[Value] = []
        self._defined: set[Value] = set()
        self._names: set[str] = set()
        self._counter = 0

    def add_input(self, shape: tuple, dtype: DType, name: str | None = None) -> Value:
        """A new graph input."""
        if name is None:
            name = f"x{len(self.inputs)}"
        if name in self._names:
            raise IRError(f"input name '{name}' is already taken")
        value = self._define(name, tuple(int(s) for s in shape), dtype)
        self.inputs.append(value)
        return value

    def add_constant(self, array: Any, loc: str | None = None) -> Value:
        """A `constant` node holding a frozen copy of `array` (in one of the five dtypes)."""
        array = np.asarray(array)
        array = normalize_attr(array.astype(from_numpy(array.dtype).numpy, copy=False))
        return self._append("constant", [], {"value": array}, loc)

    def add_node(self, op: str, inputs: list, attrs: dict | None = None,
                 loc: str | None = None) -> Value:
        """`op(*inputs, **attrs)` as a new node; returns its output value."""
        attrs = {k: normalize_attr(v) for k, v in (attrs or {}).items()}
        if op == "constant":
            return self.add_constant(attrs.get("value"), loc)
        inputs = [x.item() if isinstance(x, np.generic) else x for x in inputs]
        for x in inputs:
            if isinstance(x, Value) and x not in self._defined:
                raise IRError(f"{op}: input {x!r} does not belong to this graph")
            if not isinstance(x, (Value, int, float)):
                raise IRError(f"{op}: an input must be a Value or a Python scalar, not {x!r}")
        return self._append(op, inputs, attrs, loc)

    def set_outputs(self, values: list[Value]) -> None:
        self.outputs = list(values)

    def build(self) -> Graph:
        """The graph, verified."""
        graph = Graph(self.name, list(self.inputs), list(self.nodes), list(self.outputs))
        verify(graph)
        return graph

    def _append(self, op: str, inputs: list, attrs: dict, loc: str | None) -> Value:
        try:
            spec = infer_spec(op, inputs, attrs)
        except IRError as exc:
            raise IRError(f"{exc}{f' at {loc}' if loc else ''}") from exc
        while f"v{self._counter}" in self._names:  # skip names taken by named inputs
            self._counter += 1
        out = self._define(f"v{self._counter}", spec.shape, spec.dtype)
        self.nodes.append(Node(op, list(inputs), attrs, out, loc))
        return out

    def _define(self, name: str, shape: tuple, dtype: DType) -> Value:
        value = Value(name, shape, dtype)
        self._names.add(name)
        self._defined.add(value)
        return value


# --- verification --------------------------------------------------------------------

def verify(graph: Graph) -> None:
    """Raise `IRError` naming the node and the problem if `graph` breaks an invariant.

    Every value is defined once and before use, every op is known, attributes are
    printable and accepted by the op's shape rule, each output type is the rule's, and
    the outputs are defined.
    """
    if not _is_name(graph.name):
        raise IRError(f"graph name {graph.name!r} is not an identifier")
    defined: set[Value] = set()
    names: set[str] = set()
    for value in graph.inputs:
        _check_definition(value, defined, names, f"input {value.name!r}")
    later = {n.out for n in graph.nodes}
    for node in graph.nodes:
        try:
            _verify_node(node, defined, later)
            _check_definition(node.out, defined, names, "its output")
        except IRError as exc:
            raise IRError(f"node '{node!r}': {exc}", node=node) from None
    for value in graph.outputs:
        if value not in defined:
            raise IRError(f"output {value!r} is not defined in the graph")


def _verify_node(node: Node, defined: set[Value], later: set[Value]) -> None:
    if node.op != "constant" and node.op not in PRIMITIVES:
        raise IRError(f"unknown op '{node.op}'")
    for x in node.inputs:
        if isinstance(x, Value):
            if x not in defined:
                why = "is defined only later" if x in later else "is not defined in the graph"
                raise IRError(f"uses {x.name}, which {why}")
        elif type(x) not in (bool, int, float):
            raise IRError(f"input {x!r} is neither a Value nor a Python scalar")
    for key, value in node.attrs.items():
        why = check_attr(value)
        if why:
            raise IRError(f"attribute {key}: {why}")
    spec = infer_spec(node.op, node.inputs, node.attrs)
    if (node.out.shape, node.out.dtype) != (spec.shape, spec.dtype):
        raise IRError(f"its output is declared {format_type(node.out.shape, node.out.dtype)} "
                      f"but the shape rule gives {format_type(*spec)}")
    loc = node.loc
    if loc is not None and (not isinstance(loc, str) or not loc or loc != loc.strip()
                            or "\n" in loc):
        raise IRError(f"location {loc!r} must be None or one non-blank line")


def _check_definition(value: Value, defined: set[Value], names: set[str], what: str) -> None:
    if not isinstance(value, Value):
        raise IRError(f"{what} is {value!r}, not a Value")
    if value in defined or value.name in names:
        raise IRError(f"{what} redefines {value.name}")
    if not _is_name(value.name) or value.name in RESERVED_NAMES:
        raise IRError(f"{what}: {value.name!r} can't name a value")
    if value.dtype not in SHORT_NAMES:
        raise IRError(f"{what}: {value.dtype!r} is not a dtype")
    if type(value.shape) is not tuple or not all(type(s) is int and s >= 0 for s in value.shape):
        raise IRError(f"{what}: shape {value.shape!r} is not a tuple of sizes")
    defined.add(value)
    names.add(value.name)


def _is_name(name: Any) -> bool:
    return isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name)


# --- structural equality -------------------------------------------------------------

def graph_equal(a: Graph, b: Graph) -> bool:
    """Same names, types, ops, inputs, attributes (arrays by value and dtype), locations
    and outputs; values are matched by name, so a copy equals its original.

    >>> b = GraphBuilder("f"); b.set_outputs([b.add_input((2,), BY_SHORT_NAME["f32"])])
    >>> g = b.build()
    >>> graph_equal(g, g.copy()), g.copy().inputs[0] is g.inputs[0]
    (True, False)
    """
    if a.name != b.name or len(a.nodes) != len(b.nodes):
        return False
    if not _values_equal(a.inputs, b.inputs) or not _values_equal(a.outputs, b.outputs):
        return False
    return all(_nodes_equal(m, n) for m, n in zip(a.nodes, b.nodes))


def _values_equal(xs: list, ys: list) -> bool:
    return len(xs) == len(ys) and all(
        (x.name, x.shape, x.dtype) == (y.name, y.shape, y.dtype) for x, y in zip(xs, ys))


def _nodes_equal(m: Node, n: Node) -> bool:
    if (m.op, m.loc, len(m.inputs)) != (n.op, n.loc, len(n.inputs)):
        return False
    if not _values_equal([m.out], [n.out]) or m.attrs.keys() != n.attrs.keys():
        return False
    for x, y in zip(m.inputs, n.inputs):
        same = (isinstance(y, Value) and _values_equal([x], [y])) if isinstance(x, Value) \
            else (not isinstance(y, Value) and attr_equal(x, y))
        if not same:
            return False
    return all(attr_equal(m.attrs[k], n.attrs[k]) for k in m.attrs)


def attr_equal(a: Any, b: Any) -> bool:
    """Exact equality of attribute values: types count (1 != 1.0 != True), nan equals
    nan, -0.0 differs from 0.0, arrays compare by dtype, shape and bits."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a)
                                                     == math.copysign(1, b))
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(map(attr_equal, a, b))
    if isinstance(a, slice):
        return attr_equal((a.start, a.stop, a.step), (b.start, b.stop, b.step))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and \
            _canonical_bytes(a) == _canonical_bytes(b)
    return a == b


def _canonical_bytes(array: np.ndarray) -> bytes:
    if array.dtype.kind == "f":  # every nan alike: the text form keeps no nan payloads
        array = np.where(np.isnan(array), np.array(np.nan, array.dtype), array)
    return np.ascontiguousarray(array).tobytes()
