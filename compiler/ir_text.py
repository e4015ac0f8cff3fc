"""The text form of the IR: Python-like, one line per node, with a type comment.

`print_graph` writes it and `parse_graph` reads it back, so that
`graph_equal(parse_graph(print_graph(g)), g)` holds for every verified graph:

    def loss(x0: f32[25], x1: f32[]):
        v0 = sin(x0)                                  # f32[25]     train.py:12
        v1 = mul(v0, 2.0)                             # f32[25]     train.py:12
        v2 = sum(v1, axes=(0,), keepdims=False)       # f32[]       train.py:13
        return (v2,)

Grammar (one statement per line; blank lines and lines that start with `#` are skipped):

    header   := "def" NAME "(" [NAME ":" TYPE {"," NAME ":" TYPE}] "):"
    node     := NAME "=" OP "(" {input ","} {NAME "=" attr ","} ")" ["#" [TYPE] [LOCATION]]
    return   := "return" "(" {NAME ","} ")"
    TYPE     := ("f32" | "f64" | "i64" | "i32" | "bool") "[" [INT {"," INT}] "]"
    input    := NAME | number | "True" | "False"         (a value or a Python scalar)
    attr     := number | "True" | "False" | "None" | STRING | "..." | TYPE-NAME
              | "(" attrs ")" | "[" attrs "]" | "slice(" a "," b "," c ")"
              | "array(" nested-list "," ["shape=" tuple ","] "dtype=" TYPE-NAME ")"
    number   := Python int or float literal, or inf, -inf, nan

Floats print with `repr`, so they read back bit for bit; float32 array elements print
in their shortest float32 spelling when that reads back exactly. The type in a comment
is the declared type of the node's output, which `verify` checks against the shape rule
(a node without one gets the rule's).
"""

from __future__ import annotations

import ast
import hashlib
import io
import re
import tokenize
from typing import Any

import numpy as np

from .ir import (
    BY_SHORT_NAME,
    SHORT_NAMES,
    Graph,
    IRError,
    Node,
    Value,
    check_attr,
    format_type,
    infer_spec,
    normalize_attr,
    verify,
)
from .ops.dtypes import DType, float32, from_numpy

CODE_WIDTH = 49  # the type comment starts in column 51, as long as the code fits
TYPE_WIDTH = 11
_TYPE = re.compile(r"(\w+)\[([\d,\s]*)\]")


# --- printing ------------------------------------------------------------------------

def print_graph(graph: Graph) -> str:
    """The text form of `graph` (ends with a newline).

    >>> from tracegrad.compiler.ir import GraphBuilder
    >>> from tracegrad.compiler.ops import float32
    >>> b = GraphBuilder("f"); x = b.add_input((3,), float32)
    >>> b.set_outputs([b.add_node("mul", [x, 2.0], loc="f.py:2")])
    >>> print(print_graph(b.build()), end="")
    def f(x0: f32[3]):
        v0 = mul(x0, 2.0)                             # f32[3]      f.py:2
        return (v0,)
    """
    return _graph_text(graph, _format_array)


def digest_graph(graph: Graph) -> str:
    """A SHA-256 that names what `graph` computes: its text without source locations, with
    every array spelled by a hash of its bytes (printing a large constant digit by digit
    costs more than compiling it).

    >>> from tracegrad.compiler.ir import GraphBuilder
    >>> from tracegrad.compiler.ops import float32
    >>> def f(scale):
    ...     b = GraphBuilder("f"); x = b.add_input((3,), float32)
    ...     b.set_outputs([b.add_node("mul", [x, scale])])
    ...     return digest_graph(b.build())
    >>> f(2.0) == f(2.0), f(2.0) == f(-2.0)
    (True, False)
    """
    text = _graph_text(graph, _hash_array, locations=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _graph_text(graph: Graph, format_array, locations: bool = True) -> str:
    params = ", ".join(f"{v.name}: {format_type(v.shape, v.dtype)}" for v in graph.inputs)
    lines = [f"def {graph.name}({params}):"]
    lines += [_format_node(node, format_array, locations) for node in graph.nodes]
    names = [v.name for v in graph.outputs]
    lines.append(f"    return ({', '.join(names)}{',' if len(names) == 1 else ''})")
    return "\n".join(lines) + "\n"


def _format_node(node: Node, format_array, locations: bool) -> str:
    if node.op == "constant":
        args = [format_value(node.attrs["value"], format_array)]
    else:
        args = [x.name if isinstance(x, Value) else format_value(x, format_array)
                for x in node.inputs]
        args += [f"{key}={format_value(value, format_array)}"
                 for key, value in node.attrs.items()]
    code = f"    {node.out.name} = {node.op}({', '.join(args)})"
    where = node.loc if locations and node.loc else ""
    comment = f"# {format_type(node.out.shape, node.out.dtype):<{TYPE_WIDTH}} {where}"
    return f"{code:<{CODE_WIDTH}} {comment}".rstrip()


def format_value(value: Any, format_array=None) -> str:
    """One attribute value or scalar input in the text form.

    >>> import numpy as np
    >>> format_value((np.array([0, 2]), slice(1, None, None), None, ...))
    '(array([0, 2], dtype=i64), slice(1, None, None), None, ...)'
    """
    if type(value) in (bool, int, float, str) or value is None:
        return repr(value)  # repr(float) reads back exactly, and spells inf and nan
    if value is Ellipsis:
        return "..."
    if isinstance(value, DType):
        return SHORT_NAMES[value]
    if type(value) is tuple:
        inner = ", ".join(format_value(item, format_array) for item in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if type(value) is list:
        return f"[{', '.join(format_value(item, format_array) for item in value)}]"
    if isinstance(value, slice):
        return f"slice({', '.join(map(format_value, (value.start, value.stop, value.step)))})"
    if isinstance(value, np.ndarray) and check_attr(value) is None:
        return (format_array or _format_array)(value)
    raise IRError(f"can't print {value!r:.60}: {check_attr(value)}")


def _format_array(array: np.ndarray) -> str:
    dtype = from_numpy(array.dtype)
    single = dtype is float32
    body = _format_nested(array.tolist(), single)
    # A nested list can't say how long an empty axis after the first is: say the shape.
    shape = f", shape={format_value(array.shape)}" if array.size == 0 and array.ndim != 1 else ""
    return f"array({body}{shape}, dtype={SHORT_NAMES[dtype]})"


def _hash_array(array: np.ndarray) -> str:
    data = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
    return f"array<{SHORT_NAMES[from_numpy(array.dtype)]}{list(array.shape)} {data}>"


def _format_nested(items: Any, single: bool) -> str:
    if isinstance(items, list):
        return f"[{', '.join(_format_nested(x, single) for x in items)}]"
    if single and type(items) is float:
        short = str(np.float32(items))  # the shortest spelling that names this float32...
        if np.float32(float(short)).tobytes() == np.float32(items).tobytes():  # ...checked
            return short
    return repr(items)


# --- parsing -------------------------------------------------------------------------

def parse_graph(text: str, *, check: bool = True) -> Graph:
    """Read the text form back into a `Graph` (verified unless `check=False`).

    Errors are `IRError`s that give the line number.

    >>> g = parse_graph("def f(x0: f32[3]):\\n    v0 = neg(x0)  # f32[3]\\n    return (v0,)")
    >>> g.nodes[0].out
    Value(v0: f32[3])
    """
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    if len(lines) < 2:
        raise IRError("expected a `def` line, nodes and a `return` line")
    name, inputs = _at_line(lines[0][0], _parse_header, lines[0][1])
    scope = {v.name: v for v in inputs}
    nodes, where = [], {}
    for number, line in lines[1:-1]:
        node = _at_line(number, _parse_node, line, scope)
        scope[node.out.name] = node.out
        nodes.append(node)
        where[node] = number
    outputs = _at_line(lines[-1][0], _parse_return, lines[-1][1], scope)
    graph = Graph(name, inputs, nodes, outputs)
    if check:
        try:
            verify(graph)
        except IRError as exc:
            raise IRError(str(exc), exc.node, where.get(exc.node, lines[0][0])) from None
    return graph


def _at_line(number: int, parse, *args):
    """`parse(*args)`, with the line number added to any error."""
    try:
        return parse(*args)
    except IRError as exc:
        raise IRError(str(exc), exc.node, number) from None
    except SyntaxError as exc:
        raise IRError(f"syntax error: {exc.msg}", line=number) from None


def parse_type(text: str) -> tuple[tuple[int, ...], DType]:
    """`"f32[3,4]"` as `((3, 4), float32)`."""
    text = text.strip()
    match = _TYPE.fullmatch(text)
    if not match or match.group(1) not in BY_SHORT_NAME:
        raise IRError(f"'{text}' is not a type like f32[3,4]")
    sizes = match.group(2).replace(" ", "")
    return tuple(int(s) for s in sizes.split(",") if s), BY_SHORT_NAME[match.group(1)]


def _parse_header(line: str) -> tuple[str, list[Value]]:
    match = re.fullmatch(r"\s*def\s+(\w+)\s*\((.*)\)\s*:\s*", line)
    if not match:
        raise IRError("expected `def NAME(x0: f32[3], ...):`")
    inputs = []
    for param in filter(str.strip, re.split(r",(?=\s*\w+\s*:)", match.group(2))):
        name, _, type_text = param.partition(":")
        inputs.append(Value(name.strip(), *parse_type(type_text)))
    return match.group(1), inputs


def _statement(line: str) -> ast.stmt:
    body = ast.parse(line.strip()).body
    if len(body) != 1:
        raise IRError("expected one statement per line")
    return body[0]


def _parse_return(line: str, scope: dict[str, Value]) -> list[Value]:
    statement = _statement(line)
    if not isinstance(statement, ast.Return) or not isinstance(statement.value, ast.Tuple):
        raise IRError("expected `return (v0, ...)` as the last line")
    return [_lookup(x, scope) for x in statement.value.elts]


def _parse_node(line: str, scope: dict[str, Value]) -> Node:
    statement = _statement(line)
    if not (isinstance(statement, ast.Assign) and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name) and isinstance(statement.value, ast.Call)
            and isinstance(statement.value.func, ast.Name)):
        raise IRError("expected `NAME = OP(inputs, attr=value, ...)`")
    call = statement.value
    op = call.func.id
    attrs = {k.arg: _literal(k.value) for k in call.keywords if k.arg is not None}
    if len(attrs) != len(call.keywords):
        raise IRError("`**` is not part of the IR")
    if op == "constant" and len(call.args) == 1 and not attrs:
        inputs, attrs = [], {"value": _literal(call.args[0])}
    else:
        inputs = [_parse_input(x, scope) for x in call.args]
    declared, loc = _parse_comment(line)
    shape, dtype = declared or infer_spec(op, inputs, attrs)
    return Node(op, inputs, attrs, Value(statement.targets[0].id, shape, dtype), loc)


def _parse_comment(line: str) -> tuple[tuple | None, str | None]:
    """The declared type and the location in a node line's comment."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(line.strip()).readline))
    except tokenize.TokenError as exc:
        raise IRError(f"can't read the line: {exc.args[0]}") from None
    comment = next((t.string[1:].strip() for t in tokens if t.type == tokenize.COMMENT), "")
    first, _, rest = comment.partition(" ")
    match = _TYPE.fullmatch(first)
    if match and match.group(1) in BY_SHORT_NAME:
        return parse_type(first), rest.strip() or None
    return None, comment or None


def _lookup(node: ast.expr, scope: dict[str, Value]) -> Value:
    if not isinstance(node, ast.Name):
        raise IRError(f"expected a value name, not `{ast.unparse(node)}`")
    if node.id not in scope:
        raise IRError(f"{node.id} is not defined")
    return scope[node.id]


def _parse_input(node: ast.expr, scope: dict[str, Value]) -> Value | int | float | bool:
    if isinstance(node, ast.Name) and node.id not in ("inf", "nan"):
        return _lookup(node, scope)
    value = _literal(node)
    if type(value) not in (bool, int, float):
        raise IRError(f"a node's inputs are values and scalars, not `{ast.unparse(node)}`")
    return value


def _literal(node: ast.expr) -> Any:
    """An attribute value from its syntax tree (no `eval`: only the IR's literals)."""
    if isinstance(node, ast.Constant) and (
            node.value is None or node.value is Ellipsis
            or type(node.value) in (bool, int, float, str)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _literal(node.operand)
        if type(value) in (int, float):
            return -value
    if isinstance(node, ast.Name):
        if node.id in ("inf", "nan"):
            return float(node.id)
        if node.id in BY_SHORT_NAME:
            return BY_SHORT_NAME[node.id]
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [_literal(x) for x in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id == "slice" and not node.keywords and 1 <= len(node.args) <= 3:
            return slice(*map(_literal, node.args))
        if node.func.id == "array":
            return _parse_array(node)
    raise IRError(f"`{ast.unparse(node)}` is not an attribute value")


def _parse_array(call: ast.Call) -> np.ndarray:
    keywords = {k.arg: _literal(k.value) for k in call.keywords}
    dtype, shape = keywords.pop("dtype", None), keywords.pop("shape", None)
    if len(call.args) != 1 or keywords or not isinstance(dtype, DType):
        raise IRError("expected `array(data, [shape=(...),] dtype=f32)`")
    data = _literal(call.args[0])
    try:
        array = np.array(data, dtype=dtype.numpy)
        if shape is not None:
            array = array.reshape(shape)
    except (TypeError, ValueError) as exc:
        raise IRError(f"bad array: {exc}") from None
    return normalize_attr(array)
