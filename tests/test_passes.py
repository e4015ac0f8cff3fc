"""The passes of the `optimized` stage (compiler/passes/) and their pipeline.

* Golden files under tests/golden/passes/ pin one before/after example per pass and one
  for the pipeline; `pytest --update-golden` rewrites them (see tests/golden_option.py).
* Unit cases pin every rule, also where it must not fire (a changed shape or dtype, an
  inexact identity, a graph output). Every case checks that the pass left its input
  alone, that the result verifies, and that it computes what the input computes.
* Property tests run every pass and the pipeline on the traced and the joint graphs of
  random programs (tests/program_generator.py) and compare `run_graph` before and after.
* The bench workloads' joint graphs must shrink; `python tests/test_passes.py` prints
  their node counts, traced -> optimized.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import os
import pathlib
import textwrap

import numpy as np
import pytest
from golden_option import check_golden
from program_generator import generate
from tracegrad.compiler.interpret import run_graph
from tracegrad.compiler.ir import Graph, IRError, Node, Value, verify
from tracegrad.compiler.ir_text import parse_graph, print_graph
from tracegrad.compiler.passes import PassResult
from tracegrad.compiler.passes.eliminate_common_subexpressions import (
    eliminate_common_subexpressions as cse,
)
from tracegrad.compiler.passes.eliminate_dead_code import eliminate_dead_code as dce
from tracegrad.compiler.passes.eliminate_movement import eliminate_movement as movement
from tracegrad.compiler.passes.fold_constants import fold_constants as fold
from tracegrad.compiler.passes.simplify_algebra import simplify_algebra as simplify
from tracegrad.compiler.pipeline import PASSES, PassReport, optimize

import tracegrad
from tracegrad.tracing import trace

ROOT = pathlib.Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "passes"
PROGRAMS = int(os.environ.get("TRACEGRAD_RANDOM_PROGRAMS", "150"))  # as test_compile_random
RTOL = 1e-6  # the passes are exact but for sum(expand(x)) -> mul(x, n)


# --- helpers ------------------------------------------------------------------------

def parse(text: str) -> Graph:
    return parse_graph(textwrap.dedent(text).strip())


def snapshot(graph: Graph) -> tuple:
    """Everything a pass could change in place: text, node identities, inputs, outputs."""
    return (print_graph(graph), [id(n) for n in graph.nodes],
            [(id(n.out), list(map(id, n.inputs)), dict(n.attrs)) for n in graph.nodes],
            list(map(id, graph.inputs)), list(map(id, graph.outputs)))


def random_arrays(graph: Graph, seed: int = 0, known: dict | None = None) -> list:
    """An array per graph input: `known[value]` if given, else random (ints small)."""
    rng, known = np.random.default_rng(seed), known or {}
    arrays = []
    for v in graph.inputs:
        if v in known:
            arrays.append(np.array(known[v]))
        elif v.dtype.is_floating_point:
            arrays.append(rng.standard_normal(v.shape).astype(v.dtype.numpy))
        else:
            arrays.append(rng.integers(0, 2, v.shape).astype(v.dtype.numpy))
    return arrays


def assert_same_outputs(before: Graph, after: Graph, arrays: list, what: str = "") -> None:
    expected, actual = run_graph(before, *arrays), run_graph(after, *arrays)
    assert len(expected) == len(actual)
    for i, (e, a) in enumerate(zip(expected, actual)):
        assert (a.shape, a.dtype) == (e.shape, e.dtype), f"{what} output {i}"
        if e.dtype.kind == "f":
            finite = np.abs(e[np.isfinite(e)])
            scale = float(finite.max(initial=0.0))
            np.testing.assert_allclose(a, e, rtol=RTOL, atol=RTOL * max(scale, 1.0),
                                       equal_nan=True, err_msg=f"{what} output {i}")
        else:
            np.testing.assert_array_equal(a, e, err_msg=f"{what} output {i}")


def run_pure(run, graph: Graph) -> PassResult:
    """`run(graph)`, checking that it leaves `graph` as it was and that the result
    verifies."""
    before = snapshot(graph)
    result = run(graph)
    assert snapshot(graph) == before, f"{run.__name__} changed its input graph"
    verify(result.graph)
    return result


def pipeline(graph: Graph) -> PassResult:
    """`optimize` (verifying after each pass) as a pass: counts summed as `pass.key`."""
    optimized, reports = optimize(graph, verify_each=True)
    counts: dict[str, int] = {}
    for report in reports:
        for key, n in report.stats.items():
            counts[f"{report.name}.{key}"] = counts.get(f"{report.name}.{key}", 0) + n
    return PassResult(optimized, counts)


# --- golden files -------------------------------------------------------------------

GOLDEN_CASES = {
    "eliminate_dead_code": (dce, """
        def dead(x0: f32[4], x1: f32[4], x2: f32[4]):
            v0 = exp(x0)
            v1 = mul(v0, x1)
            v2 = sin(v1)
            v3 = cos(v2)
            v4 = constant(array([1.0, 2.0, 3.0, 4.0], dtype=f32))
            v5 = add(v1, 1.0)
            return (v5, v1, x2)"""),
    "eliminate_common_subexpressions": (cse, """
        def repeated(x0: f32[3,4], x1: f32[4]):
            v0 = mul(x0, x1)
            v1 = mul(x1, x0)
            v2 = sum(v0, axes=(0,), keepdims=False)
            v3 = sum(v1, axes=(0,), keepdims=False)
            v4 = sum(v0, axes=(1,), keepdims=False)
            v5 = sub(x1, v2)
            v6 = sub(v3, x1)
            v7 = constant(array([0.0, -0.0], dtype=f32))
            v8 = constant(array([0.0, 0.0], dtype=f32))
            v9 = constant(array([0.0, -0.0], dtype=f32))
            v10 = mul(x1, 1)
            v11 = mul(x1, 1.0)
            v12 = ne(x0, 0)
            v13 = ne(x0, 0)
            return (v5, v6, v4, v7, v8, v9, v10, v11, v12, v13)"""),
    "fold_constants": (fold, """
        def folding(x0: f32[2,3]):
            v0 = constant(array([[1.0, 2.0, 3.0]], dtype=f32))
            v1 = log(v0)
            v2 = mul(v1, 2.0)
            v3 = lt(v0, 2.5)
            v4 = where(v3, v2, 0.0)
            v5 = expand(v4, shape=(2, 3))
            v6 = add(x0, v5)
            v7 = constant(array([[1.0]], dtype=f32))
            v8 = scatter_add(v7, shape=(128, 129), index=(slice(0, 1, None), slice(0, 1, None)))
            v9 = cast(v3, dtype=i64)
            v10 = sum(v9, axes=(0, 1), keepdims=False)
            return (v6, v8, v10)"""),
    "simplify_algebra": (simplify, """
        def algebra(x0: f32[3,4], x1: f32[4], x2: i64[4]):
            v0 = constant(array(1.0, dtype=f32))
            v1 = reshape(v0, shape=(1, 1))
            v2 = expand(v1, shape=(3, 4))
            v3 = mul(v2, x0)
            v4 = mul(x1, v2)
            v5 = div(x1, 1)
            v6 = add(x1, 0.0)
            v7 = add(x2, 0)
            v8 = sub(x1, 0.0)
            v9 = mul(x1, 0.0)
            v10 = neg(v5)
            v11 = neg(v10)
            v12 = cast(v11, dtype=f32)
            v13 = expand(v12, shape=(2, 3, 4))
            v14 = sum(v13, axes=(0, 1), keepdims=True)
            v15 = amax(v13, axes=(0, 1), keepdims=False)
            v16 = exp(x1)
            v17 = log(v16)
            return (v3, v4, v6, v7, v8, v9, v14, v15, v17)"""),
    "eliminate_movement": (movement, """
        def movement(x0: f32[2,3,4], x1: f32[4], x2: f32[]):
            v0 = permute(x0, dims=(2, 0, 1))
            v1 = permute(v0, dims=(2, 0, 1))
            v2 = permute(v1, dims=(2, 0, 1))
            v3 = reshape(x0, shape=(6, 4))
            v4 = reshape(v3, shape=(24,))
            v5 = reshape(v4, shape=(2, 3, 4))
            v6 = reshape(x2, shape=(1, 1))
            v7 = expand(v6, shape=(3, 4))
            v8 = expand(x1, shape=(1, 4))
            v9 = expand(v8, shape=(3, 4))
            v10 = mul(v9, v7)
            v11 = expand(x1, shape=(3, 4))
            v12 = exp(v11)
            v13 = permute(x0, dims=(0, 2, 1))
            return (v2, v5, v10, v12, v13)"""),
    "pipeline": (lambda g: pipeline(g), """
        def train_step(x0: f32[8,4], x1: f32[4], x2: f32[3,4], x3: f32[], x4: f32[]):
            v0 = permute(x2, dims=(1, 0))
            v1 = matmul(x0, v0)
            v2 = relu(v1)
            v3 = sum(v2, axes=(0, 1), keepdims=False)
            v4 = constant(array(1.0, dtype=f32))
            v5 = reshape(v4, shape=(1, 1))
            v6 = expand(v5, shape=(8, 3))
            v7 = mul(v6, 1)
            v8 = gt(v2, 0)
            v9 = where(v8, v7, 0.0)
            v10 = permute(v9, dims=(1, 0))
            v11 = matmul(v10, x0)
            v12 = permute(v11, dims=(1, 0))
            v13 = permute(v12, dims=(1, 0))
            v14 = neg(x3)
            v15 = mul(v14, v13)
            v16 = add(x2, v15)
            v17 = ne(x4, 0)
            v18 = neg(x3)
            v19 = mul(v18, x1)
            v20 = add(x1, v19)
            v21 = ne(x4, 0)
            return (v16, v20, v3, v17, v21)"""),
}


def golden_text(name: str) -> str:
    run, source = GOLDEN_CASES[name]
    graph = parse(source)
    result = run_pure(run, graph)
    counts = ", ".join(f"{key}={n}" for key, n in result.stats.items() if n)
    lines = textwrap.wrap(f"counts: {counts}", 96, subsequent_indent="    ")
    return (f"# {name}: before\n{print_graph(graph)}\n# after\n"
            + "".join(f"# {line}\n" for line in lines) + print_graph(result.graph))


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_golden(name, request):
    text = golden_text(name)
    check_golden(GOLDEN / f"{name}.txt", text, request)
    after = text.split("\n# after\n")[1]  # the result, below its `# counts` lines
    body = "".join(line for line in after.splitlines(True) if not line.startswith("#"))
    assert print_graph(parse_graph(after)) == body


def test_golden_examples_compute_the_same():
    for name, (run, source) in GOLDEN_CASES.items():
        graph = parse(source)
        assert_same_outputs(graph, run(graph).graph, random_arrays(graph), name)


# --- the rules, one case each ---------------------------------------------------------

def case(name, run, before, after=None, **fired):
    """`run` on `before` gives `after` with `fired` counts; after=None: nothing fires."""
    return pytest.param(run, before, after, fired, id=name)


F = "def f(x0: f32[3,4], x1: f32[4], x2: i64[4]):"
CASES = [
    # eliminate_dead_code
    case("dce_chain", dce, F + " v0 = exp(x0); v1 = sin(v0); return (x1,)",
         F + " return (x1,)", nodes_removed=2),
    case("dce_keeps_used", dce, F + " v0 = exp(x0); v1 = sin(v0); return (v0, v1)"),
    # eliminate_common_subexpressions
    case("cse_same", cse, F + " v0 = exp(x1); v1 = exp(x1); v2 = add(v0, v1); return (v2,)",
         F + " v0 = exp(x1); v2 = add(v0, v0); return (v2,)", nodes_removed=1),
    case("cse_commuted", cse, F + " v0 = add(x0, x1); v1 = add(x1, x0); return (v0, v1)",
         F + " v0 = add(x0, x1); return (v0, v0)", nodes_removed=1),
    case("cse_cascades", cse, F + " v0 = exp(x1); v1 = exp(x1); v2 = sin(v0); v3 = sin(v1);"
         " return (v2, v3)", F + " v0 = exp(x1); v2 = sin(v0); return (v2, v2)",
         nodes_removed=2),
    case("cse_not_sub_swapped", cse, F + " v0 = sub(x0, x1); v1 = sub(x1, x0); return (v0, v1)"),
    case("cse_not_maximum_swapped", cse,
         F + " v0 = maximum(x0, x1); v1 = maximum(x1, x0); return (v0, v1)"),
    case("cse_not_other_attrs", cse, F + " v0 = sum(x0, axes=(0,), keepdims=False);"
         " v1 = sum(x0, axes=(0,), keepdims=True); return (v0, v1)"),
    case("cse_not_int_vs_float", cse, F + " v0 = mul(x1, 2); v1 = mul(x1, 2.0); return (v0, v1)"),
    case("cse_not_signed_zero", cse, F + " v0 = add(x1, 0.0); v1 = add(x1, -0.0); return (v0, v1)"),
    case("cse_constants", cse, F + " v0 = constant(array([1, 2], dtype=i64));"
         " v1 = constant(array([1, 2], dtype=i64)); return (v0, v1)",
         F + " v0 = constant(array([1, 2], dtype=i64)); return (v0, v0)", nodes_removed=1),
    case("cse_not_constants_of_other_dtype", cse, F + " v0 = constant(array([1, 2], dtype=i64));"
         " v1 = constant(array([1, 2], dtype=i32)); return (v0, v1)"),
    # fold_constants
    case("fold_chain", fold, F + " v0 = constant(array([1.0, 4.0], dtype=f64)); v1 = sqrt(v0);"
         " v2 = neg(v1); return (v2,)", F + " v0 = constant(array([1.0, 4.0], dtype=f64));"
         " v1 = constant(array([1.0, 2.0], dtype=f64)); v2 = constant(array([-1.0, -2.0],"
         " dtype=f64)); return (v2,)", nodes_folded=2),
    case("fold_nan_and_inf", fold, F + " v0 = constant(array([0.0, -1.0], dtype=f32));"
         " v1 = log(v0); return (v1,)", F + " v0 = constant(array([0.0, -1.0], dtype=f32));"
         " v1 = constant(array([-inf, nan], dtype=f32)); return (v1,)", nodes_folded=1),
    case("fold_not_expand", fold,
         F + " v0 = constant(array([1.0], dtype=f32)); v1 = expand(v0, shape=(3, 4));"
         " return (v1,)"),
    case("fold_not_huge", fold, F + " v0 = constant(array([[1.0]], dtype=f32)); v1 = "
         "scatter_add(v0, shape=(128, 129), index=(slice(0, 1, None), slice(0, 1, None)));"
         " return (v1,)"),
    case("fold_not_inputs", fold, F + " v0 = constant(array([1.0], dtype=f32)); v1 = add(v0, x1);"
         " return (v1,)"),
    # simplify_algebra
    case("mul_one", simplify, F + " v0 = mul(x0, 1); v1 = mul(1.0, v0); return (v1,)",
         F + " return (x0,)", mul_one=2),
    case("mul_ones_constant", simplify, F + " v0 = constant(array([1.0, 1.0, 1.0, 1.0],"
         " dtype=f32)); v1 = mul(x0, v0); return (v1,)",
         F + " v0 = constant(array([1.0, 1.0, 1.0, 1.0], dtype=f32)); return (x0,)", mul_one=1),
    case("mul_one_seen_through_moves", simplify, F + " v0 = constant(array(1.0, dtype=f32));"
         " v1 = reshape(v0, shape=(1, 1)); v2 = expand(v1, shape=(3, 4)); v3 = permute(v2,"
         " dims=(1, 0)); v4 = permute(x0, dims=(1, 0)); v5 = mul(v4, v3); return (v5,)",
         F + " v0 = constant(array(1.0, dtype=f32)); v1 = reshape(v0, shape=(1, 1));"
         " v2 = expand(v1, shape=(3, 4)); v3 = permute(v2, dims=(1, 0));"
         " v4 = permute(x0, dims=(1, 0)); return (v4,)", mul_one=1),
    case("not_mul_one_that_broadcasts", simplify, F + " v0 = constant(array([[1.0], [1.0],"
         " [1.0]], dtype=f32)); v1 = mul(x1, v0); return (v1,)"),
    case("not_mul_one_of_another_dtype", simplify, F + " v0 = constant(array([1.0], dtype=f64));"
         " v1 = mul(v0, x1); return (v1,)"),
    case("not_mul_not_splat", simplify, F + " v0 = constant(array([1.0, 2.0, 1.0, 1.0],"
         " dtype=f32)); v1 = mul(x1, v0); return (v1,)"),
    case("not_mul_zero", simplify, F + " v0 = mul(x1, 0.0); v1 = mul(x2, 0); return (v0, v1)"),
    case("div_one", simplify, F + " v0 = div(x1, 1.0); return (v0,)", F + " return (x1,)",
         mul_one=1),
    case("not_one_div", simplify, F + " v0 = div(1.0, x1); return (v0,)"),
    case("add_zero_int", simplify, F + " v0 = add(x2, 0); v1 = add(0, v0); return (v1,)",
         F + " return (x2,)", add_zero=2),
    case("add_minus_zero", simplify, F + " v0 = add(x1, -0.0); return (v0,)",
         F + " return (x1,)", add_zero=1),
    case("not_add_float_zero", simplify, F + " v0 = add(x1, 0.0); v1 = add(0, x1);"
         " return (v0, v1)"),
    case("sub_zero", simplify, F + " v0 = sub(x1, 0.0); v1 = sub(x2, 0); return (v0, v1)",
         F + " return (x1, x2)", add_zero=2),
    case("not_sub_minus_zero", simplify, F + " v0 = sub(x1, -0.0); v1 = sub(0.0, x1);"
         " return (v0, v1)"),
    case("neg_neg", simplify, F + " v0 = neg(x1); v1 = neg(v0); v2 = exp(v1); return (v2, v0)",
         F + " v0 = neg(x1); v2 = exp(x1); return (v2, v0)", neg_neg=1),
    case("cast_same", simplify, F + " v0 = cast(x1, dtype=f32); return (v0,)",
         F + " return (x1,)", cast_same=1),
    case("not_cast_other", simplify, F + " v0 = cast(x1, dtype=f64); return (v0,)"),
    case("not_exp_log", simplify, F + " v0 = log(x1); v1 = exp(v0); v2 = exp(x1); v3 = log(v2);"
         " return (v1, v3)"),
    case("sum_expand", simplify, F + " v0 = expand(x1, shape=(3, 4)); v1 = sum(v0, axes=(0,),"
         " keepdims=False); return (v1,)", F + " v0 = expand(x1, shape=(3, 4));"
         " v1 = mul(x1, 3); return (v1,)", reduce_expand=1),
    case("sum_expand_keepdims", simplify, F + " v0 = expand(x1, shape=(2, 3, 4)); v1 = sum(v0,"
         " axes=(0, 1), keepdims=True); return (v1,)", F + " v0 = expand(x1, shape=(2, 3, 4));"
         " v2 = mul(x1, 6); v1 = reshape(v2, shape=(1, 1, 4)); return (v1,)",
         reduce_expand=1),
    case("sum_expand_int_inner_axis", simplify, F + " v0 = reshape(x2, shape=(4, 1)); v1 = "
         "expand(v0, shape=(4, 5)); v2 = sum(v1, axes=(1,), keepdims=True); return (v2,)",
         F + " v0 = reshape(x2, shape=(4, 1)); v1 = expand(v0, shape=(4, 5));"
         " v2 = mul(v0, 5); return (v2,)", reduce_expand=1),
    case("amax_expand", simplify, F + " v0 = expand(x1, shape=(3, 4)); v1 = amax(v0, axes=(0,),"
         " keepdims=False); return (v1,)", F + " v0 = expand(x1, shape=(3, 4)); return (x1,)",
         reduce_expand=1),
    case("not_sum_expand_other_axes", simplify, F + " v0 = expand(x1, shape=(3, 4)); v1 = sum(v0,"
         " axes=(0, 1), keepdims=False); v2 = sum(v0, axes=(1,), keepdims=False);"
         " return (v1, v2)"),
    case("not_sum_expand_some_axes", simplify, F + " v0 = reshape(x1, shape=(1, 1, 4));"
         " v1 = expand(v0, shape=(2, 3, 4)); v2 = sum(v1, axes=(0,), keepdims=False);"
         " return (v2,)"),
    # eliminate_movement
    case("identities", movement, F + " v0 = permute(x0, dims=(0, 1)); v1 = reshape(v0,"
         " shape=(3, 4)); v2 = expand(v1, shape=(3, 4)); return (v2,)", F + " return (x0,)",
         identity=3),
    case("permute_permute", movement, F + " v0 = permute(x0, dims=(1, 0)); v1 = permute(v0,"
         " dims=(1, 0)); return (v1,)", F + " v0 = permute(x0, dims=(1, 0)); return (x0,)",
         permute_permute=1, identity=1),
    case("permute_permute_3d", movement, "def f(x0: f32[2,3,4]): v0 = permute(x0,"
         " dims=(2, 0, 1)); v1 = permute(v0, dims=(0, 2, 1)); return (v1,)",
         "def f(x0: f32[2,3,4]): v0 = permute(x0, dims=(2, 0, 1)); v1 = permute(x0,"
         " dims=(2, 1, 0)); return (v1,)", permute_permute=1),
    case("reshape_reshape", movement, F + " v0 = reshape(x0, shape=(2, 6)); v1 = reshape(v0,"
         " shape=(12,)); return (v1,)", F + " v0 = reshape(x0, shape=(2, 6)); v1 = reshape(x0,"
         " shape=(12,)); return (v1,)", reshape_reshape=1),
    case("expand_expand", movement, F + " v0 = expand(x1, shape=(3, 4)); v1 = expand(v0,"
         " shape=(2, 3, 4)); return (v1,)", F + " v0 = expand(x1, shape=(3, 4)); v1 = expand(x1,"
         " shape=(2, 3, 4)); return (v1,)", expand_expand=1),
    case("expand_reshape", movement, F + " v0 = reshape(x1, shape=(1, 4)); v1 = expand(v0,"
         " shape=(3, 4)); return (v1,)", F + " v0 = reshape(x1, shape=(1, 4)); v1 = expand(x1,"
         " shape=(3, 4)); return (v1,)", expand_reshape=1),
    case("not_expand_reshape_inner_unit", movement, F + " v0 = reshape(x1, shape=(4, 1));"
         " v1 = expand(v0, shape=(4, 3)); return (v1,)"),
    case("expand_as_reshape", movement, F + " v0 = expand(x1, shape=(1, 4)); v1 = reshape(v0,"
         " shape=(4,)); return (v1,)", F + " v0 = reshape(x1, shape=(1, 4)); return (x1,)",
         expand_as_reshape=1, reshape_reshape=1, identity=1),
    case("expand_broadcast", movement, F + " v0 = expand(x1, shape=(3, 4)); v1 = mul(v0, x0);"
         " return (v1,)", F + " v0 = expand(x1, shape=(3, 4)); v1 = mul(x1, x0); return (v1,)",
         expand_broadcast=1),
    case("expand_sink", movement, F + " v0 = expand(x1, shape=(3, 4)); v1 = exp(v0);"
         " v2 = mul(v1, 2.0); return (v2,)", F + " v0 = expand(x1, shape=(3, 4)); v3 = exp(x1);"
         " v1 = expand(v3, shape=(3, 4)); v4 = mul(v3, 2.0); v2 = expand(v4, shape=(3, 4));"
         " return (v2,)", expand_sink=2),
    case("not_copy_of_expand", movement, F + " v0 = expand(x1, shape=(3, 4)); v1 = copy(v0);"
         " return (v1,)"),
    case("not_moves_around_matmul", movement, F + " v0 = expand(x1, shape=(4, 4));"
         " v1 = matmul(x0, v0); return (v1,)"),
]


@pytest.mark.parametrize("run, before, after, fired", CASES)
def test_rule(run, before, after, fired):
    graph = _one_line_graph(before)
    result = run_pure(run, graph)
    if after is None:
        assert result.graph is graph, "a pass that changes nothing returns its input"
        assert not any(result.stats.values()), result.stats
    else:
        assert print_graph(result.graph) == print_graph(_one_line_graph(after))
        assert {k: n for k, n in result.stats.items() if n} == fired
    assert_same_outputs(graph, result.graph, random_arrays(graph))


def _one_line_graph(text: str) -> Graph:
    """A graph written on one line, statements separated by `;` (the cases above)."""
    header, _, body = text.partition("):")
    lines = [f"{header}):", *(f"    {statement.strip()}" for statement in body.split(";"))]
    return parse_graph("\n".join(lines))


# --- purity, unchanged graphs, the pipeline -----------------------------------------

def test_a_pass_that_changes_nothing_returns_its_input():
    graph = parse("""
        def f(x0: f32[3], x1: f32[3]):
            v0 = mul(x0, x1)
            v1 = exp(v0)
            return (v1,)""")
    for name, run in PASSES:
        result = run(graph)
        assert result.graph is graph, name
        assert result.stats and not any(result.stats.values()), name


def test_pipeline_reaches_a_fixed_point_and_reports_each_pass():
    _, source = GOLDEN_CASES["pipeline"]
    graph = parse(source)
    optimized, reports = optimize(graph, verify_each=True)
    names = [name for name, _ in PASSES]
    assert [r.name for r in reports] == names * (len(reports) // len(names))
    assert all(isinstance(r, PassReport) for r in reports)
    assert reports[0].nodes_before == len(graph.nodes)
    assert reports[-1].nodes_after == len(optimized.nodes) < len(graph.nodes)
    for previous, report in itertools.pairwise(reports):
        assert report.nodes_before == previous.nodes_after
    assert not any(n for r in reports[-len(names):] for n in r.stats.values())
    again, _ = optimize(optimized)
    assert again is optimized


def test_pipeline_is_bounded():
    graph = parse(GOLDEN_CASES["pipeline"][1])
    _, reports = optimize(graph, max_rounds=1)
    assert len(reports) == len(PASSES)


def test_fold_leaves_a_failing_kernel_to_run_time():
    graph = parse("""
        def f(x0: f32[3]):
            v0 = constant(array([1.0, 2.0, 3.0], dtype=f32))
            v1 = constant(array([3], dtype=i64))
            v2 = take(v0, v1, axis=0)
            return (v2,)""")
    assert fold(graph).graph is graph
    with pytest.raises(IRError, match="take"):
        run_graph(graph, np.zeros(3, np.float32))


def test_verify_each_names_the_broken_pass():
    def break_graph(graph):
        node = graph.nodes[0]
        stray = Value("v99", node.inputs[0].shape, node.inputs[0].dtype)  # defined nowhere
        bad = Node(node.op, [stray], node.attrs, node.out, node.loc)
        return PassResult(Graph(graph.name, graph.inputs, [bad], graph.outputs), {"broken": 1})

    graph = parse("def f(x0: f32[3]):\n    v0 = exp(x0)\n    return (v0,)")
    with pytest.raises(IRError, match="after pass break_graph: .*v99"):
        optimize(graph, verify_each=True, passes=[("break_graph", break_graph)])


def test_passes_list_names_its_functions():
    for name, run in PASSES:
        assert run.__name__ == name
        module = importlib.import_module(f"tracegrad.compiler.passes.{name}")
        assert getattr(module, name) is run
        assert ">>> print(result.graph" in module.__doc__, f"{name}: no before/after example"


# --- random programs ----------------------------------------------------------------

def program_graphs(seed: int) -> list:
    """(what, graph, input arrays) for the traced and the joint graph of program `seed`."""
    program = generate(seed)
    try:
        traced, _ = trace(program.fn, tuple(program.make_inputs(0)))
        compiled = tracegrad.compile(program.fn)
        compiled(*program.make_inputs(0))
        joint = compiled.variants[0].trace
    except Exception as exc:  # noqa: BLE001 - an eager failure is test_compile_random's
        pytest.skip(f"program {seed} does not run eagerly: {type(exc).__name__}: {exc}")
    cases = []
    for what, t, graph in (("traced", traced, traced.graph),
                           ("joint", joint, joint.stages["joint"])):
        known = {v: tensor._data for tensor, v in t.arguments + t.captured}
        cases.append((what, graph, random_arrays(graph, seed, known)))
    return cases


@pytest.mark.parametrize("seed", range(PROGRAMS))
def test_passes_on_random_programs(seed):
    for what, graph, arrays in program_graphs(seed):
        for name, run in PASSES:
            result = run_pure(run, graph)
            assert_same_outputs(graph, result.graph, arrays, f"program {seed} {what} {name}")
        optimized = run_pure(pipeline, graph).graph
        assert_same_outputs(graph, optimized, arrays, f"program {seed} {what} pipeline")
        for name, run in PASSES:  # a fixed point: no pass finds anything more
            assert run(optimized).graph is optimized, f"program {seed} {what}: {name}"


# --- the bench workloads ------------------------------------------------------------

def bench_node_counts() -> dict:
    """{workload: (joint graph nodes, optimized nodes)} for bench/workloads.py's steps."""
    spec = importlib.util.spec_from_file_location("workloads", ROOT / "bench" / "workloads.py")
    workloads = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(workloads)
    data, counts = workloads.inputs(), {}
    for name, make in workloads.WORKLOADS.items():
        step, _ = make(tracegrad, data)
        compiled = tracegrad.compile(step)
        for _ in range(3):
            compiled()
        t = compiled.variants[0].trace
        graph = t.stages["joint"]
        optimized, _ = optimize(graph, verify_each=True)
        known = {v: tensor._data for tensor, v in t.arguments + t.captured}
        assert_same_outputs(graph, optimized, random_arrays(graph, 0, known), name)
        counts[name] = (len(graph.nodes), len(optimized.nodes))
    return counts


def test_bench_workloads_shrink():
    for name, (before, after) in bench_node_counts().items():
        assert after < before, name


if __name__ == "__main__":
    for name, (before, after) in bench_node_counts().items():
        print(f"{name:<24} {before:>4} -> {after:>4} nodes")
