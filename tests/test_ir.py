"""The graph IR: building, `verify`, the text form, DOT, and the reference interpreter.

Every primitive is built into a one-node graph from its own `sample`; that graph must
verify, print and parse back to an equal graph, and run in the interpreter to exactly
what the kernel gives. Golden files under tests/golden/ir/ pin the text and DOT forms;
`pytest --update-golden` rewrites them (see tests/golden_option.py).
"""

from __future__ import annotations

import math
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from golden_option import check_golden
from tracegrad.compiler.interpret import run_graph, values_dead_after
from tracegrad.compiler.ir import Graph, GraphBuilder, IRError, Node, Value, graph_equal, verify
from tracegrad.compiler.ir_dot import graph_to_dot
from tracegrad.compiler.ir_text import parse_graph, print_graph
from tracegrad.compiler.ops import PRIMITIVES, bool_, float32, float64, int32, int64
from tracegrad.compiler.ops.dtypes import from_numpy

NAMES = sorted(PRIMITIVES)
GOLDEN = pathlib.Path(__file__).parent / "golden" / "ir"
DTYPES = pytest.mark.parametrize("dtype", [float32, float64], ids=["f32", "f64"])


def sample_graph(name: str, dtype=float32, seed: int = 0):
    """A one-node graph of primitive `name` on its sample, the arrays and the attrs."""
    prim = PRIMITIVES[name]
    if prim.sample is None:
        pytest.fail(f"primitive {name} has no sample, so the IR tests can't cover it")
    inputs, attrs = prim.sample(np.random.default_rng(seed))
    arrays = [np.asarray(a, dtype.numpy) if np.asarray(a).dtype.kind == "f" else np.asarray(a)
              for a in inputs]
    b = GraphBuilder(f"sample_{name}")
    values = [b.add_input(a.shape, from_numpy(a.dtype)) for a in arrays]
    b.set_outputs([b.add_node(name, values, attrs, loc=f"samples.py:{len(name)}")])
    return b.build(), arrays, attrs


def assert_round_trip(graph: Graph) -> None:
    text = print_graph(graph)
    again = parse_graph(text)
    assert graph_equal(again, graph), text
    assert print_graph(again) == text
    assert graph_equal(graph.copy(), graph)


def same_array(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


# --- every primitive -----------------------------------------------------------------

def test_every_primitive_has_a_sample_graph():
    covered = {sample_graph(name)[0].nodes[0].op for name in NAMES}
    assert covered == set(PRIMITIVES)


@DTYPES
@pytest.mark.parametrize("name", NAMES)
def test_primitive_graph_verifies_and_round_trips(name, dtype):
    graph, _, _ = sample_graph(name, dtype)
    verify(graph)
    assert_round_trip(graph)


@DTYPES
@pytest.mark.parametrize("name", NAMES)
def test_interpreter_matches_the_kernel(name, dtype):
    graph, arrays, attrs = sample_graph(name, dtype)
    (got,) = run_graph(graph, *arrays)
    assert same_array(got, np.asarray(PRIMITIVES[name].kernel(*arrays, **attrs)))


BINARY = [n for n in NAMES if PRIMITIVES[n].kind == "elementwise"
          and len(PRIMITIVES[n].sample(np.random.default_rng(0))[0]) == 2]


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("scalar_first", [False, True], ids=["x_op_s", "s_op_x"])
def test_python_scalar_inputs(name, scalar_first):
    """Scalars are weakly typed, on either side: `sub(2.0, x)` is f32 like `x`."""
    x = np.random.default_rng(1).uniform(0.5, 2.0, (3, 4)).astype(np.float32)
    b = GraphBuilder("scalar")
    v = b.add_input(x.shape, float32)
    inputs = [1.5, v] if scalar_first else [v, 1.5]
    b.set_outputs([b.add_node(name, inputs)])
    graph = b.build()
    assert_round_trip(graph)
    (got,) = run_graph(graph, x)
    arrays = [1.5, x] if scalar_first else [x, 1.5]
    assert same_array(got, np.asarray(PRIMITIVES[name].kernel(*arrays)))


# --- the graph and its builder -------------------------------------------------------

def small_graph() -> Graph:
    return parse_graph("""def f(x0: f32[3], x1: f32[3]):
    v0 = mul(x0, x1)  # f32[3]  a.py:1
    v1 = add(v0, v0)  # f32[3]  a.py:2
    v2 = sin(x0)      # f32[3]
    return (v1, v2)
""")


def test_values_producers_users():
    g = small_graph()
    x0 = g.inputs[0]
    assert [v.name for v in g.values()] == ["x0", "x1", "v0", "v1", "v2"]
    assert g.producers()[g.nodes[1].out] is g.nodes[1] and x0 not in g.producers()
    users = g.users()
    assert users[x0] == [g.nodes[0], g.nodes[2]] and users[g.nodes[0].out] == [g.nodes[1]]
    assert users[g.nodes[1].out] == []


def test_to_networkx():
    g = small_graph()
    dag = g.to_networkx()
    assert list(dag.nodes) == g.nodes
    assert list(dag.edges) == [(g.nodes[0], g.nodes[1])]
    assert dag.edges[g.nodes[0], g.nodes[1]]["values"] == [g.nodes[0].out]
    assert dag.nodes[g.nodes[2]]["index"] == 2


def test_importing_the_ir_loads_no_networkx():
    code = ("import sys, tracegrad.compiler.ir_text, tracegrad.compiler.interpret; "
            "print('networkx' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_copy_is_deep_in_values_and_nodes():
    g = small_graph()
    c = g.copy()
    assert not set(map(id, c.values())) & set(map(id, g.values()))
    c.nodes[0].attrs["x"] = 1
    assert g.nodes[0].attrs == {}


def test_builder_names_and_normalises():
    b = GraphBuilder("f")
    x = b.add_input((4, 5), float32, name="v0")  # the next node output must skip "v0"
    index = np.array([0, 2])
    out = b.add_node("gather", [x], {"index": (index, slice(np.int64(1), None))})
    index[0] = 3  # the graph keeps its own copy
    y = b.add_node("mul", [out, np.float32(2.0)])
    b.set_outputs([y])
    g = b.build()
    assert [v.name for v in g.values()] == ["v0", "v1", "v2"]
    assert g.nodes[0].attrs["index"][0].tolist() == [0, 2]
    assert type(g.nodes[0].attrs["index"][1].start) is int
    assert type(g.nodes[1].inputs[1]) is float
    with pytest.raises(IRError, match="already taken"):
        b.add_input((1,), float32, name="v0")
    with pytest.raises(IRError, match="does not belong"):
        b.add_node("neg", [Value("z", (1,), float32)])
    with pytest.raises(IRError, match=r"mul: the shape rule rejects \(f32\[4,5\], f32\[2,4\]\)"
                       r".* at t.py:3"):
        b.add_node("mul", [x, y], loc="t.py:3")


def test_constants_round_trip_bit_exactly():
    rng = np.random.default_rng(2)
    bits = rng.integers(0, 2**32, 64, dtype=np.uint64).astype(np.uint32)
    f32 = bits.view(np.float32)
    f32 = f32[~np.isnan(f32)]  # the text form keeps no nan payloads; nan itself is below
    b = GraphBuilder("consts")
    arrays = [f32, rng.standard_normal((2, 3)), np.array([np.nan, -np.inf, -0.0, 5e-324]),
              np.array(0.1, np.float32), np.arange(6, dtype=np.int32).reshape(3, 2, 1),
              np.array([[True, False]]), np.zeros((0, 3), np.int64), np.zeros((2, 0)),
              np.array([2**62, -(2**63)], np.int64)]
    b.set_outputs([b.add_constant(a) for a in arrays])
    graph = b.build()
    assert_round_trip(graph)
    for got, want in zip(run_graph(graph), arrays):
        assert got.tobytes() == np.asarray(want).tobytes() and got.shape == want.shape


ATTR_VALUES = [0, -7, 2**70, 0.1, -0.0, 1e-300, 5e-324, math.inf, -math.inf, math.nan, True,
               False, None, "tanh", "it's # not a comment", (), (1,), ((1, 2), (3, (4,))),
               [1, 2], float32, float64, int64, int32, bool_, slice(None, None, None),
               slice(1, -1, 2), ..., np.array([[0, 2], [2, 1]]), np.array(3, np.int32),
               np.array([True, False]), np.array([], np.float64).reshape(1, 0, 2),
               (np.array([0, 3]), slice(1, 4, None), None, ..., np.array([[True]]))]


@pytest.mark.parametrize("value", ATTR_VALUES, ids=repr)
def test_attribute_values_print_and_parse_exactly(value):
    x = Value("x0", (2,), float32)
    graph = Graph("attrs", [x], [Node("neg", [x], {"a": value}, Value("v0", (2,), float32))],
                  [x])
    again = parse_graph(print_graph(graph), check=False)  # `neg` takes no attribute `a`
    assert graph_equal(again, graph)


def test_graph_equal_is_exact():
    text = print_graph(small_graph())
    assert graph_equal(parse_graph(text), small_graph())
    for old, new in [("a.py:1", "a.py:9"), ("mul(x0, x1)", "mul(x1, x0)"), ("def f", "def g"),
                     ("(v1, v2)", "(v2, v1)"), ("x1: f32[3]", "x1: f32[1]"),
                     ("v1 = add(v0, v0)  ", "v1 = add(v0, 2.0)")]:
        assert not graph_equal(parse_graph(text.replace(old, new)), small_graph()), new
    one = parse_graph("def f(x0: f32[3]):\n    v0 = mul(x0, 2)\n    return (v0,)")
    two = parse_graph("def f(x0: f32[3]):\n    v0 = mul(x0, 2.0)\n    return (v0,)")
    assert not graph_equal(one, two)


# --- verify --------------------------------------------------------------------------

def broken(edit) -> Graph:
    g = small_graph().copy()
    edit(g)
    return g


@pytest.mark.parametrize("edit, message", [
    (lambda g: g.nodes.pop(0), r"v1 = add\(v0, v0\) at a.py:2'?: uses v0, which is not defined"),
    (lambda g: g.nodes.reverse(), r"v1 = add.*: uses v0, which is defined only later"),
    (lambda g: setattr(g.nodes[2], "out", g.nodes[0].out), "redefines v0"),
    (lambda g: setattr(g.nodes[2], "out", Value("x1", (3,), float32)), "redefines x1"),
    (lambda g: setattr(g.nodes[2], "out", Value("v2", (4,), float32)),
     r"declared f32\[4\] but the shape rule gives f32\[3\]"),
    (lambda g: setattr(g.nodes[2], "out", Value("v2", (3,), float64)),
     r"declared f64\[3\] but the shape rule gives f32\[3\]"),
    (lambda g: setattr(g.nodes[2], "op", "sine"), "unknown op 'sine'"),
    (lambda g: g.nodes[2].attrs.update(axis=0), r"sin: the shape rule rejects.*TypeError"),
    (lambda g: g.nodes[2].attrs.update(axis=np.int64(0)), "attribute axis: .*not supported"),
    (lambda g: setattr(g.nodes[2], "inputs", [g.inputs[0], {}]), "neither a Value nor"),
    (lambda g: setattr(g.nodes[2], "loc", " a.py:3"), "must be None or one non-blank line"),
    (lambda g: g.outputs.append(Value("v9", (3,), float32)), "output .*v9.* is not defined"),
    (lambda g: setattr(g, "name", "my graph"), "not an identifier"),
    (lambda g: g.inputs.append(Value("inf", (1,), float32)), "'inf' can't name a value"),
])
def test_verify_catches(edit, message):
    with pytest.raises(IRError, match=message) as info:
        verify(broken(edit))
    if "node" in str(info.value):
        assert info.value.node is not None


def test_verify_catches_bad_reduction_attrs():
    x = Value("x0", (3, 4), float32)
    for attrs in [{"axes": (0,)}, {"axes": (0,), "keepdims": False, "dim": 1}]:
        node = Node("sum", [x], attrs, Value("v0", (4,), float32))
        with pytest.raises(IRError, match="v0 = sum.*shape rule rejects"):
            verify(Graph("f", [x], [node], [node.out]))


# --- the text form -------------------------------------------------------------------

BRIEF_EXAMPLE = """\
def loss(x0: f32[25], x1: f32[]):
    v0 = sin(x0)                                  # f32[25]     train.py:12
    v1 = mul(v0, 2.0)                             # f32[25]     train.py:12
    v2 = sum(v1, axes=(0,), keepdims=False)       # f32[]       train.py:13
    return (v2,)
"""


def test_the_documented_example_is_the_printed_form():
    assert print_graph(parse_graph(BRIEF_EXAMPLE)) == BRIEF_EXAMPLE


def test_parse_fills_in_missing_types_and_skips_comments():
    g = parse_graph("# a comment\ndef f(x0: f32[2, 3]):\n\n    v0 = exp(x0)  # here.py:4\n"
                    "    v1 = sum(v0, axes=(1,), keepdims=True)\n    return (v0, v1)\n")
    assert (g.nodes[0].out.shape, g.nodes[0].loc) == ((2, 3), "here.py:4")
    assert g.nodes[1].out.shape == (2, 1) and g.nodes[1].loc is None


@pytest.mark.parametrize("text, message", [
    ("def f(x0: f32[3]):\n    v0 = neg(x9)\n    return (v0,)", r"line 2: x9 is not defined"),
    ("def f(x0: f32[3]):\n    v0 = neg(x0\n    return (v0,)", r"line 2: (syntax|can't)"),
    ("def f(x0: f33[3]):\n    v0 = neg(x0)\n    return (v0,)", r"line 1: 'f33\[3\]' is not"),
    ("def f(x0: f32[3]):\n    v0 = neg(x0)", r"line 2: expected `return"),
    ("def f(x0: f32[3]):\n    v0 = neg(x0, k=open('x'))\n    return (v0,)",
     r"line 2: `open\('x'\)` is not an attribute value"),
    ("def f(x0: f32[3]):\n    v0 = neg(x0)\n    v0 = exp(x0)\n    return (v0,)",
     r"line 3: node 'v0 = exp\(x0\)': its output redefines v0"),
    ("def f(x0: f32[3]):\n    v0 = neg(x0)  # f32[4]\n    return (v0,)",
     r"line 2: .*declared f32\[4\] but the shape rule gives f32\[3\]"),
    ("def f(x0: f32[3]):\n    v0 = cast(x0, dtype=f16)\n    return (v0,)", r"line 2: `f16`"),
    ("def f(x0: f32[3]):\n    v0 = sine(x0)\n    return (v0,)", r"line 2: unknown op 'sine'"),
])
def test_parse_errors_give_the_line(text, message):
    with pytest.raises(IRError, match=message):
        parse_graph(text)


# --- the interpreter -----------------------------------------------------------------

def test_interpreter_checks_its_inputs():
    g = small_graph()
    x = np.ones(3, np.float32)
    with pytest.raises(IRError, match="takes 2 inputs, got 1"):
        run_graph(g, x)
    with pytest.raises(IRError, match=r"input x1 expects f32\[3\], got f64\[3\]"):
        run_graph(g, x, x.astype(np.float64))
    with pytest.raises(IRError, match=r"input x0 expects f32\[3\], got f32\[4\]"):
        run_graph(g, np.ones(4, np.float32), x)


def test_interpreter_frees_values_after_their_last_use():
    g = small_graph()
    assert [[v.name for v in dead] for dead in values_dead_after(g)] == [["x1"], ["v0"], ["x0"]]
    x, y = np.arange(3, dtype=np.float32), np.full(3, 2.0, np.float32)
    v1, v2 = run_graph(g, x, y)
    assert same_array(v1, 2 * x * y) and same_array(v2, np.sin(x))


def test_interpreter_names_a_kernel_that_disagrees_with_its_node():
    x = Value("x0", (3,), float32)
    node = Node("neg", [x], {}, Value("v0", (4,), float32))  # unverified on purpose
    with pytest.raises(IRError, match=r"v0 = neg\(x0\).*returned float32\[3\]"):
        run_graph(Graph("f", [x], [node], [node.out]), np.ones(3, np.float32))


# --- golden files --------------------------------------------------------------------

def mlp_graph() -> Graph:
    """A two-layer MLP's loss: matmul, bias, gelu, log_softmax against one-hot targets."""
    b = GraphBuilder("mlp_loss")
    x, onehot = b.add_input((8, 16), float32, "x"), b.add_input((8, 10), float32, "onehot")
    w1, b1 = b.add_input((16, 32), float32, "w1"), b.add_input((32,), float32, "b1")
    w2 = b.add_input((32, 10), float32, "w2")
    h = b.add_node("matmul", [x, w1], loc="model.py:9")
    h = b.add_node("add", [h, b1], loc="model.py:9")
    h = b.add_node("gelu", [h], {"approximate": "tanh"}, loc="model.py:10")
    logp = b.add_node("log_softmax", [b.add_node("matmul", [h, w2], loc="model.py:11")],
                      {"axis": 1}, loc="train.py:20")
    picked = b.add_node("mul", [logp, onehot], loc="train.py:21")
    total = b.add_node("sum", [picked], {"axes": (0, 1), "keepdims": False}, loc="train.py:21")
    b.set_outputs([b.add_node("mul", [total, -0.125], loc="train.py:21"), logp])
    return b.build()


def indexing_graph() -> Graph:
    """Every kind of attribute value: slices, None, Ellipsis, int and bool arrays, dtypes."""
    b = GraphBuilder("indexing")
    x = b.add_input((4, 5, 6), float32)
    strided = b.add_node("gather", [x], {"index": (..., slice(None, None, 2))}, loc="ix.py:3")
    rows = b.add_node("gather", [x], {"index": (np.array([True, False, True, True]),)})
    picked = b.add_node("gather", [x], {"index": (np.array([[0], [3]]), None, slice(1, -1), 2)})
    back = b.add_node("scatter_add", [strided], {"shape": (4, 5, 6),
                                                 "index": (..., slice(None, None, 2))})
    put = b.add_node("index_put", [back, 0.0], {"index": (np.array([0, 3]), slice(1, 4))})
    masked = b.add_node("where", [b.add_node("lt", [put, 0.5]), -math.inf, put])
    wide = b.add_node("cast", [masked], {"dtype": float64}, loc="ix.py:9")
    best = b.add_node("argmax", [x], {"axis": None, "keepdims": False})
    table = b.add_constant(np.array([[0.1, np.nan], [np.inf, -0.0]], np.float32))
    both = b.add_node("concat", [rows, b.add_node("permute", [x], {"dims": (0, 1, 2)})],
                      {"axis": 0})
    grown = b.add_node("expand", [b.add_node("reshape", [table], {"shape": (1, 4)})],
                       {"shape": (3, 4)})
    b.set_outputs([wide, picked, best, both, grown])
    return b.build()


def golden_cases():
    mlp = mlp_graph()
    kernels = {"k0_matmul_add_gelu": mlp.nodes[:3], "k1_matmul_log_softmax": mlp.nodes[3:5]}
    return {"loss.txt": print_graph(parse_graph(BRIEF_EXAMPLE)),
            "mlp_loss.txt": print_graph(mlp), "indexing.txt": print_graph(indexing_graph()),
            "mlp_loss.dot": graph_to_dot(mlp, kernels)}


@pytest.mark.parametrize("filename", sorted(golden_cases()))
def test_golden(filename, request):
    text = golden_cases()[filename]
    path = GOLDEN / filename
    check_golden(path, text, request)
    if filename.endswith(".txt"):
        assert print_graph(parse_graph(path.read_text())) == text


# --- DOT -----------------------------------------------------------------------------

QUOTED = r'"(?:[^"\\]|\\.)*"'
DOT_STATEMENT = re.compile(
    rf"(?P<node>{QUOTED}) \[.*\];|(?P<a>{QUOTED}) -> (?P<b>{QUOTED});|(node|edge) \[.*\];"
    rf"|subgraph cluster_\d+ {{|label={QUOTED};|style=\w+; color=\w+;|}}")


def assert_well_formed_dot(text: str) -> None:
    lines = text.splitlines()
    assert re.fullmatch(rf"digraph {QUOTED} {{", lines[0]) and lines[-1] == "}"
    declared, depth = set(), 1
    for line in lines[1:-1]:
        match = DOT_STATEMENT.fullmatch(line.strip())
        assert match, line
        depth += line.count("{") - line.count("}") if not match["node"] else 0
        assert depth >= 1
        if match["node"]:
            declared.add(match["node"])
        elif match["a"]:
            assert {match["a"], match["b"]} <= declared, line
    assert depth == 1


def test_dot_is_well_formed():
    for graph in [mlp_graph(), indexing_graph(), small_graph()]:
        text = graph_to_dot(graph)
        assert_well_formed_dot(text)
        assert text.count(" -> ") == len(graph.outputs) + sum(
            isinstance(x, Value) for n in graph.nodes for x in n.inputs)
    mlp = mlp_graph()
    text = graph_to_dot(mlp, {"k0": mlp.nodes[:3]})
    assert_well_formed_dot(text)
    assert '"v2" [label="gelu\\nf32[8,32]", tooltip="v2 at model.py:10"];' in text
    if shutil.which("dot"):
        subprocess.run(["dot", "-Tsvg"], input=text, text=True, check=True,
                       capture_output=True)
