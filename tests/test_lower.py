"""The LLVM lowering (SPEC §4.3): native programs against the reference interpreter.

* every primitive's sample, alone in a graph, in float32 and float64 (exact where the
  arithmetic is the same, within a few units of round-off where it is not);
* corners: integers, bools, casts, nan and inf, Python scalars, 0-d and empty arrays,
  movement chains, batched and transposed matmuls;
* randomly generated programs (tests/program_generator.py), traced and joint graphs,
  through the scheduler's fused kernels and memory plan, and one kernel per node;
* reductions give the same bits on 1 and 2 threads; kernels use the host's vectors;
* the speed figures (matmul GFLOP/s, elementwise GB/s) are printed, never asserted:
  benchmarks live in bench/.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from numeric import distance, no_worse_than
from program_generator import generate
from tracegrad.compiler.interpret import run_graph
from tracegrad.compiler.ir import GraphBuilder
from tracegrad.compiler.ir_text import parse_graph
from tracegrad.compiler.ops import PRIMITIVES, float32, float64
from tracegrad.compiler.ops.dtypes import from_numpy

lower = pytest.importorskip("tracegrad.compiler.lower")
from tracegrad.compiler.lower import Kernel, NativeProgram, NotLowerable, can_lower
from tracegrad.compiler.lower.build import kernels_for
from tracegrad.runtime.cache import ProgramCache

# Same arithmetic as NumPy's, so the same bits (sqrt is IEEE; comparisons, moves and
# copies are exact; the extrema and arg-extrema of a row do not depend on the order).
EXACT = {"abs", "add", "sub", "mul", "div", "neg", "sign", "relu", "copy", "cast", "where",
         "maximum", "minimum", "lt", "le", "gt", "ge", "eq", "ne", "logical_and",
         "logical_or", "logical_not", "sqrt", "reshape", "expand", "permute", "gather",
         "take", "take_along", "concat", "scatter_add", "index_put", "untake",
         "untake_along", "amax", "amin", "argmax", "argmin"}
ULPS = 4  # others: transcendental functions, sums (another order), fused ops


@pytest.fixture(scope="module")
def cache():
    return ProgramCache(enabled=False)  # memory only: tests leave no files behind


def native(graph, cache, **options):
    return NativeProgram(graph, cache=cache, **options)


def one_node_graph(name: str, dtype, seed: int = 0):
    """The primitive's sample as a one-node graph, float arrays cast to `dtype`."""
    prim = PRIMITIVES[name]
    inputs, attrs = prim.sample(np.random.default_rng(seed))
    arrays = [np.asarray(a, dtype=dtype.numpy) if np.asarray(a).dtype.kind == "f"
              else np.asarray(a) for a in inputs]
    b = GraphBuilder(name)
    values = [b.add_input(a.shape, from_numpy(a.dtype)) for a in arrays]
    b.set_outputs([b.add_node(name, values, attrs)])
    return b.build(), arrays


def assert_matches(actual: list, expected: list, what: str, exact=False, rtol=None) -> None:
    assert len(actual) == len(expected), what
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert (a.shape, a.dtype) == (e.shape, e.dtype), f"{what} output {i}"
        if e.dtype.kind != "f" or exact:
            np.testing.assert_array_equal(a, e, err_msg=f"{what} output {i}")
            continue
        tol = rtol if rtol is not None else ULPS * np.finfo(e.dtype).eps
        finite = np.abs(e[np.isfinite(e)])
        scale = max(float(finite.max(initial=0.0)), 1.0 if rtol is not None else 0.0)
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol * scale, equal_nan=True,
                                   err_msg=f"{what} output {i}")


# --- every primitive ---------------------------------------------------------------------

def test_every_primitive_has_a_lowering():
    missing = [name for name, prim in PRIMITIVES.items() if prim.lowering is None]
    assert missing == []
    for name in PRIMITIVES:
        graph, _ = one_node_graph(name, float32)
        assert can_lower(graph) == (True, ""), name


@pytest.mark.parametrize("dtype", [float32, float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_primitive_against_interpreter(name, dtype, cache):
    graph, arrays = one_node_graph(name, dtype)
    assert_matches(native(graph, cache).run(*arrays), run_graph(graph, *arrays), name,
                   exact=name in EXACT)


CORNERS = {
    "python scalars, aliases": ('''def f(x0: f32[3,4]):
    v0 = sub(2.0, x0)
    v1 = div(1, v0)
    v2 = where(True, v1, x0)
    v3 = pow(x0, 0.5)
    v4 = pow(x0, 2)
    v5 = constant(array([1.0, 2.0, 3.0, 4.0], dtype=f32))
    v6 = mul(v5, x0)
    return (v2, x0, v0, v0, v3, v4, v5, v6)''', lambda rng: [rng.uniform(-1, 1, (3, 4))]),
    "0-d": ('''def f(x0: f64[], x1: f64[]):
    v0 = mul(x0, x1)
    v1 = add(v0, x0)
    v2 = sum(v1, axes=(), keepdims=False)
    return (v1, v2)''', lambda rng: [np.array(2.0), np.array(3.0)]),
    "empty": ('''def f(x0: f32[0,3]):
    v0 = exp(x0)
    v1 = sum(x0, axes=(0,), keepdims=True)
    v2 = sum(x0, axes=(1,), keepdims=False)
    return (v0, v1, v2)''', lambda rng: [np.zeros((0, 3))]),
    "ints and bools": ('''def f(x0: i64[5], x1: i32[5], x2: bool[5]):
    v0 = add(x0, 3)
    v1 = cast(x1, dtype=i64)
    v2 = mul(v0, v1)
    v3 = lt(v2, 2.5)
    v4 = logical_and(v3, x2)
    v5 = cast(v4, dtype=f32)
    v6 = sum(x0, axes=(0,), keepdims=False)
    v7 = amax(x1, axes=(0,), keepdims=True)
    v8 = argmin(x0, axis=None, keepdims=False)
    v9 = abs(x0)
    v10 = sign(x0)
    v11 = amax(x2, axes=(0,), keepdims=False)
    v12 = amin(x2, axes=(0,), keepdims=False)
    v13 = maximum(x1, 2)
    return (v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13)''', lambda rng: [
        np.array([1, -2, 3, 4, -5]), np.array([3, 2, -1, 0, 7], np.int32),
        np.array([True, False, True, True, False])]),
    "casts": ('''def f(x0: f32[6]):
    v0 = cast(x0, dtype=i64)
    v1 = cast(x0, dtype=bool)
    v2 = cast(x0, dtype=f64)
    v3 = cast(v1, dtype=f32)
    v4 = cast(v0, dtype=i32)
    return (v0, v1, v2, v3, v4)''', lambda rng: [np.array([1.5, -2.7, 0.0, np.nan, 3e9, -0.0])]),
    "nan and inf": ('''def f(x0: f64[10]):
    v0 = exp(x0)
    v1 = log(x0)
    v2 = tanh(x0)
    v3 = sigmoid(x0)
    v4 = sqrt(x0)
    v5 = log1p(x0)
    v6 = amax(x0, axes=(0,), keepdims=False)
    v7 = argmax(x0, axis=0, keepdims=False)
    v8 = maximum(x0, 1.0)
    v9 = cast(x0, dtype=f32)
    v10 = exp(v9)
    v11 = tanh(v9)
    v12 = gelu(x0, approximate='tanh')
    v13 = gelu_slope(x0, approximate='tanh')
    v14 = gelu(v9, approximate='tanh')
    v15 = gelu_slope(v9, approximate='tanh')
    return (v0, v1, v2, v3, v4, v5, v6, v7, v8, v10, v11, v12, v13, v14, v15)''',
        lambda rng: [np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 800.0, -800.0, 1e-310, -1.0,
                               88.5])]),
    "movement chains": ('''def f(x0: f32[2,3,4]):
    v0 = permute(x0, dims=(2, 0, 1))
    v1 = reshape(v0, shape=(8, 3))
    v2 = expand(x0, shape=(5, 2, 3, 4))
    v3 = reshape(v2, shape=(10, 12))
    v4 = gather(v3, index=(slice(None, None, -3), None, slice(1, 10, 4)))
    v5 = concat(v1, v1, axis=1)
    v6 = exp(v4)
    v7 = sum(v2, axes=(0, 2), keepdims=True)
    v8 = gather(x0, index=(array([1, 0, 1], dtype=i64), slice(None), array([3, -1, 0], dtype=i64)))
    return (v1, v3, v4, v5, v6, v7, v8)''', lambda rng: [rng.standard_normal((2, 3, 4))]),
    "matmuls": ('''def f(x0: f32[3,4,5], x1: f32[5,6], x2: f32[2,1,6,4], x3: f64[7,3], x4: i64[3,2]):
    v0 = matmul(x0, x1)
    v1 = permute(v0, dims=(0, 2, 1))
    v2 = matmul(x2, v0)
    v3 = matmul(v1, x0)
    v4 = permute(x3, dims=(1, 0))
    v5 = matmul(v4, x3)
    v6 = permute(x4, dims=(1, 0))
    v7 = matmul(x4, v6)
    return (v0, v2, v3, v5, v7)''', lambda rng: [rng.standard_normal((3, 4, 5)),
                                             rng.standard_normal((5, 6)),
                                             rng.standard_normal((2, 1, 6, 4)),
                                             rng.standard_normal((7, 3)),
                                             rng.integers(-3, 3, (3, 2))]),
}


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "per-node"])
@pytest.mark.parametrize("case", sorted(CORNERS))
def test_corner_cases(case, fuse, cache):
    text, make = CORNERS[case]
    graph = parse_graph(text)
    arrays = [np.asarray(a, dtype=v.dtype.numpy) for a, v in
              zip(make(np.random.default_rng(0)), graph.inputs)]
    with np.errstate(all="ignore"):
        expected = run_graph(graph, *arrays)
    assert_matches(native(graph, cache, fuse=fuse).run(*arrays), expected, case)


# --- random programs ---------------------------------------------------------------------

RANDOM_PROGRAMS = 24


def random_graphs(seed: int) -> list:
    """(what, graph, arrays) for program `seed`'s traced and joint graphs."""
    import tracegrad
    from tracegrad.tracing import trace

    program = generate(seed)
    try:
        traced, _ = trace(program.fn, tuple(program.make_inputs(0)))
        compiled = tracegrad.compile(program.fn)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a program that falls back to eager says so
            compiled(*program.make_inputs(0))
        joint = compiled.variants[0].trace
    except Exception as exc:  # noqa: BLE001 - eager failures are test_compile_random's
        pytest.skip(f"program {seed} does not run eagerly: {type(exc).__name__}: {exc}")
    cases = []
    for what, t, graph in (("traced", traced, traced.graph),
                           ("joint", joint, joint.stages["joint"])):
        known = {v: tensor._data for tensor, v in t.arguments + t.captured}
        rng = np.random.default_rng(seed)
        arrays = [np.array(known[v]) if v in known else
                  (rng.standard_normal(v.shape).astype(v.dtype.numpy)
                   if v.dtype.is_floating_point else
                   rng.integers(0, 2, v.shape).astype(v.dtype.numpy))
                  for v in graph.inputs]
        cases.append((what, graph, arrays))
    return cases


@pytest.mark.parametrize("seed", range(RANDOM_PROGRAMS))
def test_random_programs(seed, cache):
    for what, graph, arrays in random_graphs(seed):
        ok, why = can_lower(graph)
        assert ok, why
        low = any(v.dtype is float32 for v in graph.values())
        rtol = 1e-5 if low else 1e-12
        with np.errstate(all="ignore"):
            expected = run_graph(graph, *arrays)
        for fuse in ([True, False] if seed % 3 == 0 else [True]):
            actual = native(graph, cache, fuse=fuse).run(*arrays)
            try:
                assert_matches(actual, expected, f"program {seed} {what} fuse={fuse}",
                               rtol=rtol)
            except AssertionError:
                if not low:
                    raise
                assert_no_worse_than_numpy(actual, expected, _in_float64(graph, arrays),
                                           f"program {seed} {what} fuse={fuse}")


def _in_float64(graph, arrays) -> list:
    """The graph's outputs computed in float64 (every f32 made f64): the arbiter when
    float32 native code and float32 NumPy disagree on an ill-conditioned value."""
    from tracegrad.compiler.ir_text import print_graph

    wide = parse_graph(print_graph(graph).replace("f32", "f64"))
    cast = [a.astype(np.float64) if a.dtype == np.float32 else a for a in arrays]
    with np.errstate(all="ignore"):
        return run_graph(wide, *cast)


def assert_no_worse_than_numpy(actual, expected, exact, what: str) -> None:
    """Each float32 output no worse than NumPy's (`numeric.no_worse_than`), give or take
    16 ulps of the largest float64 value."""
    for i, (a, e, x) in enumerate(zip(actual, expected, exact)):
        if e.dtype.kind == "f" and a.size:
            tiny = 16 * np.finfo(e.dtype).eps * max(1.0, float(np.nanmax(np.abs(x), initial=0)))
            assert no_worse_than(a, e, x, tiny), f"{what} output {i}: " \
                f"{distance(a, x):g} from float64, NumPy's float32 {distance(e, x):g}"


def _scalar_function(emit, dtype, native_scaling: bool, monkeypatch):
    """`emit(b, x)` (a `mathlib` function) compiled alone as a C function of one float,
    with 2**n scaled by `ldexp` (AVX-512's vscalef) or by products of powers of two."""
    import ctypes

    from llvmlite import ir
    from tracegrad.compiler.lower import mathlib
    from tracegrad.compiler.lower.llvm_types import F32, F64
    from tracegrad.runtime.engine import default_engine

    if native_scaling and not mathlib.scales_natively():
        pytest.skip("this CPU has no one-instruction ldexp")
    monkeypatch.setattr(mathlib, "scales_natively", lambda: native_scaling)
    t, c_type = (F32, ctypes.c_float) if dtype is np.float32 else (F64, ctypes.c_double)
    module = ir.Module()
    function = ir.Function(module, ir.FunctionType(t, [t]), "f")
    b = ir.IRBuilder(function.append_basic_block())
    b.ret(emit(b, function.args[0]))
    assert ("llvm.ldexp" in str(module)) == native_scaling
    return default_engine().compile_module(str(module), ["f"]).function("f", c_type, [c_type])


SCALING = pytest.mark.parametrize("native_scaling", [True, False], ids=["ldexp", "products"])


@SCALING
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp2_of_nonpositive_arguments(dtype, native_scaling, monkeypatch):
    """`mathlib.exp2_nonpositive` (gelu's sigmoid): within an ulp of 2**t down to the
    subnormals (float32: its own polynomial; float64: exp of t ln2), 0 below them and
    for -inf, and 0 for nan (its callers carry a nan through other terms)."""
    from tracegrad.compiler.lower import mathlib

    exp2 = _scalar_function(mathlib.exp2_nonpositive, dtype, native_scaling, monkeypatch)
    lowest = np.log2(np.finfo(dtype).smallest_subnormal)
    ts = np.concatenate([-np.geomspace(1e-30, -lowest - 1, 20000),
                         np.linspace(lowest - 9, 0, 20001)]).astype(dtype)
    got = np.array([exp2(t) for t in ts], dtype)
    exact = np.exp2(ts.astype(np.longdouble))
    ulp = np.spacing(exact.astype(dtype)).astype(np.longdouble)
    # float64: exp's own 1.5 ulps, and up to 2 |t ln2| more, as the constant ln2 and the
    # argument t ln2 are each rounded
    allowed = 1.0 if dtype is np.float32 else 1.5 + 2 * np.abs(ts) * np.log(2)
    assert (np.abs(got - exact) <= allowed * ulp).all(), np.max(np.abs(got - exact) / ulp)
    assert got[ts < lowest - 1].max() == 0
    assert [exp2(v) for v in (0.0, -0.0, -np.inf, np.nan)] == [1.0, 1.0, 0.0, 0.0]


@SCALING
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_over_its_whole_range(dtype, native_scaling, monkeypatch):
    """`mathlib.exp` within 1.5 ulps of e**x from the subnormals to the largest float
    (float64: and |x| 2**-53 more, as rounding the argument x log2(e) costs), 0 below,
    inf above, and inf, 0 and nan for inf, -inf and nan."""
    from tracegrad.compiler.lower import mathlib

    exp = _scalar_function(mathlib.exp, dtype, native_scaling, monkeypatch)
    info = np.finfo(dtype)
    lowest, highest = np.log(float(info.smallest_subnormal)), np.log(float(info.max))
    xs = np.linspace(lowest, highest, 40001).astype(dtype)
    xs = xs[np.exp(xs.astype(np.longdouble)) < float(info.max)]  # not rounded up past it
    got = np.array([exp(x) for x in xs], dtype)
    exact = np.exp(xs.astype(np.longdouble))
    ulp = np.spacing(exact.astype(dtype)).astype(np.longdouble)
    allowed = 1.5 + (np.abs(xs) * 2.0 ** -53 / 2.0 ** -52 if dtype is np.float64 else 0)
    assert (np.abs(got - exact) <= allowed * ulp).all(), np.max(np.abs(got - exact) / ulp)
    assert [exp(v) for v in (lowest - 2, highest + 1, np.inf, -np.inf)] == [0, np.inf, np.inf, 0]
    assert np.isnan(exp(np.nan))


def test_a_programs_large_outputs_are_placed_behind_its_inputs(cache):
    from tracegrad.compiler.lower.execute import PLACED_OUTPUT_BYTES
    from tracegrad.runtime.buffers import ALIGNMENT, PAGE, SHADOW, data_pointer

    n = PLACED_OUTPUT_BYTES // 4
    graph = parse_graph(f"def f(x0: f32[{n}], x1: f32[{n}], x2: f32[8]):\n"
                        "    v0 = mul(x0, x1)\n    v1 = add(v0, x0)\n"
                        "    v2 = exp(x2)\n    return (v0, v1, v2)")
    x, y, small = (np.random.default_rng(0).standard_normal(k).astype(np.float32)
                   for k in (n, n, 8))
    products, sums, exps = native(graph, cache).run(x, y, small)
    np.testing.assert_array_equal(products, x * y)
    np.testing.assert_array_equal(sums, x * y + x)
    np.testing.assert_allclose(exps, np.exp(small), rtol=1e-6)
    for out in (products, sums):  # see runtime/buffers.py: 4K aliasing
        for array in (x, y):
            ahead = (data_pointer(array) - data_pointer(out)) % PAGE
            assert ALIGNMENT <= ahead <= PAGE - SHADOW
    assert exps.base is None  # small outputs: plain np.empty


def test_only_an_output_no_other_output_shares_is_fresh(cache):
    graph = parse_graph("def f(x0: f32[4]):\n    v0 = exp(x0)\n    v1 = neg(x0)\n"
                        "    return (v0, v1, v0, x0)")
    program = native(graph, cache)
    x = np.arange(4, dtype=np.float32)
    first, negated, again, same = program.run(x)
    np.testing.assert_array_equal(negated, -x)
    assert first is again and same is x
    assert program.fresh_outputs() == [False, True, False, False]


# --- threads, vectors --------------------------------------------------------------------

THREADED = {
    "sum of 2^20": ("def f(x0: f32[1048576]):\n    v0 = sum(x0, axes=(0,), keepdims=False)\n"
                    "    return (v0,)"),
    "row sums": ("def f(x0: f32[512,2048]):\n    v0 = sum(x0, axes=(1,), keepdims=True)\n"
                 "    v1 = amax(x0, axes=(1,), keepdims=False)\n    return (v0, v1)"),
    "column sums": ("def f(x0: f32[2048,512]):\n    v0 = sum(x0, axes=(0,), keepdims=False)\n"
                    "    return (v0,)"),
    "softmax": ("def f(x0: f32[64,4096]):\n    v0 = softmax(x0, axis=1)\n"
                "    v1 = sum(v0, axes=(0, 1), keepdims=False)\n    return (v0, v1)"),
    "elementwise": ("def f(x0: f64[1048576]):\n    v0 = tanh(x0)\n    v1 = mul(v0, x0)\n"
                    "    return (v1,)"),
}


@pytest.mark.parametrize("case", sorted(THREADED))
def test_same_bits_whatever_the_thread_count(case, cache, threads):
    graph = parse_graph(THREADED[case])
    x = np.random.default_rng(1).standard_normal(graph.inputs[0].shape)
    x = x.astype(graph.inputs[0].dtype.numpy)
    program = native(graph, cache)
    results = []
    for count in (1, 2, 3):
        threads.set_num_threads(count)
        results.append(program.run(x))
    for other in results[1:]:
        assert [a.tobytes() for a in other] == [a.tobytes() for a in results[0]]
    assert_matches(results[0], run_graph(graph, x), case, rtol=1e-5)


def _has_avx512() -> bool:
    import llvmlite.binding as llvm
    from tracegrad.runtime.engine import default_engine

    assert default_engine().host  # initialises LLVM's native target
    return bool(llvm.get_host_cpu_features().get("avx512f"))


FUSED_CHAIN = """def chain(x0: f32[1048576], x1: f32[1048576], x2: f32[1048576]):
    v0 = mul(x0, x1)
    v1 = add(v0, x2)
    v2 = relu(v1)
    return (v2,)"""


def test_elementwise_kernel_uses_the_vector_width(cache):
    if not _has_avx512():
        pytest.skip("the host has no AVX-512")
    graph = parse_graph(FUSED_CHAIN)
    program = native(graph, cache, kernels=[Kernel("k0_mul_add_relu", list(graph.nodes))])
    asm = program.assembly
    assert "k0_mul_add_relu" in asm
    assert "zmm" in asm


def _best(fn, repeat: int = 20) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def test_elementwise_throughput_is_reported(cache, capsys):
    graph = parse_graph(FUSED_CHAIN)
    n = graph.inputs[0].shape[0]
    arrays = [np.random.default_rng(i).standard_normal(n).astype(np.float32) for i in range(3)]
    start = time.perf_counter()  # a cache of its own: this measures a real compile
    program = native(graph, ProgramCache(enabled=False),
                     kernels=[Kernel("k0_mul_add_relu", list(graph.nodes))])
    compile_ms = (time.perf_counter() - start) * 1e3
    assert_matches(program.run(*arrays), run_graph(graph, *arrays), "chain")  # FMA: not exact
    seconds = _best(lambda: program.run(*arrays))
    numpy_seconds = _best(lambda: run_graph(graph, *arrays))
    with capsys.disabled():
        print(f"\n[lower] mul-add-relu over 2^20 float32, one fused kernel: "
              f"{16 * n / seconds / 1e9:.1f} GB/s ({seconds * 1e3:.3f} ms; NumPy op by op "
              f"{numpy_seconds * 1e3:.3f} ms; compile {compile_ms:.0f} ms)")


def test_small_products_run_on_one_blas_thread_and_restore_the_count(cache):
    from tracegrad.compiler.lower import matmul
    from tracegrad.compiler.lower.blas import find_blas

    blas = find_blas()
    if blas is None or blas.threads is None:
        pytest.skip("no OpenBLAS with a thread count to set")
    text = "def f(x0: f32[{m},{k}], x1: f32[{k},{n}]):\n    v0 = matmul(x0, x1)\n    return (v0,)"
    before = matmul.blas_threads()
    for (m, k, n), single in (((32, 64, 128), True), ((512, 512, 512), False)):
        graph = parse_graph(text.format(m=m, k=k, n=n))
        program = native(graph, cache)
        assert (blas.threads[0] in program.ir) == single
        x = np.random.default_rng(0).standard_normal((m, k)).astype(np.float32)
        y = np.random.default_rng(1).standard_normal((k, n)).astype(np.float32)
        np.testing.assert_allclose(program.run(x, y)[0], x @ y, rtol=1e-4, atol=1e-4)
        assert matmul.blas_threads() == before


def test_blas_thread_count_is_set_only_where_it_changes_between_kernels(cache):
    from tracegrad.compiler.lower import matmul
    from tracegrad.compiler.lower.blas import find_blas

    blas = find_blas()
    if blas is None or blas.threads is None:
        pytest.skip("no OpenBLAS with a thread count to set")
    # a chain of small (2^21 multiply-adds), large (2^23) and small products: one thread
    # from the first kernel on, the caller's count for the large one, one thread again,
    # and the caller's count back at the end
    graph = parse_graph("def f(x0: f32[32,256], x1: f32[256,256], x2: f32[1024,32], "
                        "x3: f32[256,8]):\n"
                        "    v0 = matmul(x0, x1)\n    v1 = matmul(x2, v0)\n"
                        "    v2 = matmul(v1, x3)\n    return (v2,)")
    program = native(graph, cache)
    entry = program.ir.split('define i64 @"program"')[1].split("\n}")[0]
    calls = [line.split("@")[1].split("(")[0].strip('"') for line in entry.splitlines()
             if "call " in line and "_num_threads" in line]
    get, set_ = blas.threads[1], blas.threads[0]
    assert calls == [get, set_, set_, set_, set_], entry
    before = matmul.blas_threads()
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(shape).astype(np.float32) / 16
              for shape in ((32, 256), (256, 256), (1024, 32), (256, 8))]
    np.testing.assert_allclose(program.run(*arrays)[0], run_graph(graph, *arrays)[0],
                               rtol=1e-4, atol=1e-6)
    assert matmul.blas_threads() == before


def test_matmul_throughput_is_reported(cache, capsys):
    from tracegrad.compiler.lower import blas

    n = 512
    graph = parse_graph(f"def mm(x0: f32[{n},{n}], x1: f32[{n},{n}]):\n"
                        f"    v0 = matmul(x0, x1)\n    return (v0,)")
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    figures = {}
    saved = blas.BACKEND
    try:
        for backend in ("blas", "loops"):
            blas.BACKEND = backend
            run = native(graph, cache).run
            assert_matches(run(a, b), [a @ b], backend, rtol=1e-4)
            figures[backend] = 2 * n ** 3 / _best(lambda run=run: run(a, b), 5) / 1e9
    finally:
        blas.BACKEND = saved
    with capsys.disabled():
        print(f"\n[lower] matmul 512x512 float32: BLAS {figures['blas']:.0f} GFLOP/s, "
              f"own loop nest {figures['loops']:.0f} GFLOP/s")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_matrix_transposed_through_registers_is_the_transpose(dtype):
    """The transpose function `transpose.transposers` defines: whole tiles, the columns right of them, the rows
    below, from a source whose rows are longer than the part read."""
    import ctypes

    from llvmlite import ir
    from tracegrad.compiler.lower.llvm_types import F32, F64
    from tracegrad.compiler.lower.transpose import transpose_function, transposers
    from tracegrad.runtime.engine import default_engine

    user = ir.Module()
    transpose_function(user, F32 if dtype is np.float32 else F64)
    module = transposers([user])
    [function] = module.functions
    run = default_engine().compile_module(str(module), [function.name]).function(
        function.name, None, [ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_int64] * 3)
    rng = np.random.default_rng(0)
    for rows, cols in [(32, 128), (16, 16), (13, 37), (17, 16), (40, 9), (1, 1), (8, 33)]:
        row_length = cols + 5
        source = rng.standard_normal((rows, row_length)).astype(dtype)
        target = np.full((cols, rows), np.nan, dtype)
        run(source.ctypes.data, target.ctypes.data, rows, cols, row_length)
        np.testing.assert_array_equal(target, source[:, :cols].T, err_msg=str((rows, cols)))


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_a_small_product_with_b_transposed_copies_a_transposed_where_that_pays(dtype, cache):
    """`a @ b^T` (nn.Linear's forward) below `TRANSPOSED_COPY_BELOW` multiply-adds, with
    n of at least `TRANSPOSED_COPY_LEAST_N` and a of at most `TRANSPOSED_COPY_BYTES`,
    runs as `(a^T)^T @ b^T` on a transposed copy of a (`matmul.py`); every other product
    as it is. Either way the result is NumPy's to round-off, batched or not."""
    from tracegrad.compiler.lower import matmul

    size = 4 if dtype == "f32" else 8
    cases = {  # (a's shape, b's shape as stored): copied?
        ((32, 64), (128, 64)): True,
        ((3, 8, 64), (64, 64)): True,  # batch rows folded into m: 24 x 64 x 64
        ((2, 16, 64), (2, 48, 64)): True,  # one product per batch entry, a copy each
        ((32, 128), (10, 128)): False,  # n = 10: the copy would cost what it gains
        ((matmul.TRANSPOSED_COPY_BYTES // size // 64 + 1, 64), (32, 64)): False,  # a too big
        ((128, 128), (256, 128)): False,  # 2^22 multiply-adds: OpenBLAS packs, no gain
    }
    rng = np.random.default_rng(0)
    for (a_shape, b_shape), copied in cases.items():
        m, k, n = int(np.prod(a_shape[:-1])) if len(b_shape) == 2 else a_shape[-2], \
            a_shape[-1], b_shape[-2]
        assert matmul.copies_a_transposed(m, n, k, size, False, True) == copied
        dims = ", ".join(map(str, (*range(len(b_shape) - 2), len(b_shape) - 1,
                                    len(b_shape) - 2)))
        graph = parse_graph(
            f"def f(x0: {dtype}[{','.join(map(str, a_shape))}], "
            f"x1: {dtype}[{','.join(map(str, b_shape))}]):\n"
            f"    v0 = permute(x1, dims=({dims}))\n    v1 = matmul(x0, v0)\n"
            f"    return (v1,)")
        a, b = (rng.standard_normal(s).astype(dtype.replace("f", "float")) for s in
                (a_shape, b_shape))
        program = native(graph, cache)
        assert ("a_transposed" in program.ir) == copied, (a_shape, b_shape)
        assert_matches(program.run(a, b), [a @ np.swapaxes(b, -1, -2)], str(a_shape),
                       rtol=1e-5 if dtype == "f32" else 1e-12)


# --- row groups: nests over the same rows run a chunk of rows at a time -------------------

def test_row_local_reads_only_the_row_of_the_iteration():
    from tracegrad.compiler.lower import index as ix
    from tracegrad.compiler.lower.row_groups import row_local

    i, j = ix.Var("i", 8), ix.Var("j", 16)
    assert row_local(ix.index(i) * 16 + ix.index(j), i, 1, 16)  # row i of an (8, 16) array
    assert row_local(ix.index(i), i, 1, 1)  # a per-row result (8, 1)
    assert row_local(ix.index(i), i, 16, 1) is False  # 16 iterations per row, 1 element each
    flat = ix.Var("k", 128)
    assert row_local(ix.index(flat), flat, 16, 16)  # (8, 16) walked as one loop of 128
    assert not row_local(ix.index(j) * 8 + ix.index(i), i, 1, 16)  # a transposed read
    assert not row_local(ix.index(i) * 16 + ix.index(j) + 16, i, 1, 16)  # the next row
    assert not row_local(ix.index(j), i, 1, 16)  # every row reads row 0


ROW_KERNELS = {
    # softmax, layer norm and their backward: one run of row-local nests per direction
    "layer norm softmax": ("""def f(x0: f32[96,300], x1: f32[300], x2: f32[96,300]):
    v0 = layer_norm(x0, axes=(1,), eps=1e-05)
    v1 = mul(v0, x1)
    v2 = softmax(v1, axis=1)
    v3 = softmax_backward(x2, v2, axis=1)
    v4 = sum(v3, axes=(0,), keepdims=False)
    v5 = layer_norm_backward(v3, x0, v0, axes=(1,), eps=1e-05)
    return (v2, v4, v5)""", True),
    # a column sum between row-local nests waits for the run; a nest reading it may not
    # join the run (it would read the sum before it is made)
    "column sum read later": ("""def f(x0: f32[300,200], x1: f32[300,200]):
    v0 = softmax(x0, axis=1)
    v1 = sum(v0, axes=(0,), keepdims=True)
    v2 = log_softmax(x1, axis=1)
    v3 = mul(v2, v1)
    v4 = softmax(v3, axis=1)
    v5 = sum(v4, axes=(0,), keepdims=False)
    return (v2, v4, v5)""", True),
    # the stored exps are read transposed by a later nest: that nest is not row-local
    # (the nests before it may still be grouped)
    "transposed reader": ("""def f(x0: f32[512,512]):
    v0 = exp(x0)
    v1 = sum(v0, axes=(1,), keepdims=True)
    v2 = div(v0, v1)
    v3 = permute(v0, dims=(1, 0))
    v4 = sum(v3, axes=(1,), keepdims=True)
    v5 = mul(v2, v4)
    return (v5,)""", None),
}


@pytest.mark.parametrize("case", sorted(ROW_KERNELS))
def test_row_groups_give_the_same_bits_as_nest_by_nest(case, cache, monkeypatch, threads):
    from tracegrad.compiler.lower import program as emit

    text, grouped = ROW_KERNELS[case]
    graph = parse_graph(text)
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(v.shape).astype(np.float32) for v in graph.inputs]
    one_kernel = [Kernel("k0_all", list(graph.nodes))]
    program = native(graph, cache, kernels=one_kernel)
    if grouped is not None:
        assert (".rows" in program.ir) == grouped
    monkeypatch.setattr(emit, "group_rows", lambda module, name, functions: functions)
    nest_by_nest = native(graph, cache, kernels=one_kernel)
    assert ".rows" not in nest_by_nest.ir
    for count in (1, 2):
        threads.set_num_threads(count)
        got, want = program.run(*arrays), nest_by_nest.run(*arrays)
        assert [a.tobytes() for a in got] == [a.tobytes() for a in want]
    assert_matches(got, run_graph(graph, *arrays), case, rtol=1e-5)


@pytest.mark.parametrize("seed", range(0, RANDOM_PROGRAMS, 3))
def test_kernels_compiled_in_groups_give_the_bits_of_one_module(seed, monkeypatch, threads):
    """Each kernel is a module; LLVM compiles them linked into groups side by side
    (`side_by_side.balanced_groups`), and the grouping changes no bit of any result."""
    from tracegrad.runtime import side_by_side

    threads.set_num_threads(4)
    for what, graph, arrays in random_graphs(seed):
        kernels, plan = kernels_for(graph)
        programs = []
        for least in (10**9, 1):  # one group; as many as there are threads or modules
            monkeypatch.setattr(side_by_side, "GROUP_CHARACTERS", least)
            programs.append(native(graph, ProgramCache(enabled=False), kernels=kernels,
                                   memory_plan=plan))
        modules = side_by_side.split_modules(programs[1].ir)
        assert len(modules) == 1 + len(programs[1].kernel_names)
        assert len(side_by_side.balanced_groups(modules, 4)) == min(4, len(modules))
        assert len(programs[1].native.object_code.parts) == min(4, len(modules))
        assert len(programs[0].native.object_code.parts) == 1
        with np.errstate(all="ignore"):
            got, want = programs[1].run(*arrays), programs[0].run(*arrays)
        assert [a.tobytes() for a in got] == [a.tobytes() for a in want], what


def test_a_loop_writing_in_place_vectorises_without_checking_for_overlap(monkeypatch):
    """relu(matmul + bias) written over the product: one pointer for both, so LLVM
    vectorises the loop as it is (two pointers to one memory made it test for overlap
    at run time and take the scalar loop). The bits are those of a separate output."""
    from tracegrad.compiler.lower import program as emit

    graph = parse_graph("""def f(x0: f32[32,64], x1: f32[64,128], x2: f32[128], x3: f32[128,10]):
    v0 = matmul(x0, x1)
    v1 = add(v0, x2)
    v2 = relu(v1)
    v3 = matmul(v2, x3)
    return (v3,)""")
    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal(v.shape).astype(np.float32) for v in graph.inputs]

    def overlap_tested(program) -> bool:  # LLVM's run-time overlap test, by its names
        return any(name in program.optimized_ir for name in ("found.conflict", "diff.check"))

    def lowered():
        kernels, memory_plan = kernels_for(graph)
        return native(graph, ProgramCache(enabled=False), kernels=kernels,
                      memory_plan=memory_plan)

    in_place = lowered()
    assert [(a.name, b.name) for a, b in in_place.layout.in_place.items()] == [("v2", "v0")]
    assert not overlap_tested(in_place)
    emit_kernel = emit._emit_kernel
    monkeypatch.setattr(emit, "_emit_kernel", lambda plan, kernel, aliases:
                        emit_kernel(plan, kernel, {}))
    two_pointers = lowered()  # in place, but through two pointers: what it was before
    assert two_pointers.layout.in_place and overlap_tested(two_pointers)
    monkeypatch.setattr(emit, "_in_place_safe", lambda *args: False)
    separate = lowered()
    assert separate.layout.in_place == {}
    for program in (two_pointers, separate):
        assert in_place.run(*arrays)[0].tobytes() == program.run(*arrays)[0].tobytes()


# --- the API around it -------------------------------------------------------------------

def test_cannot_lower_names_the_node(cache):
    graph = parse_graph("def f(x0: i64[2]):\n    v0 = exp(x0)\n    return (v0,)")
    ok, why = can_lower(graph)
    assert not ok and "v0 = exp(x0)" in why and "i64" in why
    with pytest.raises(NotLowerable, match="exp"):
        native(graph, cache)


def test_hand_made_kernels_and_schedules(cache):
    graph = parse_graph("""def f(x0: f32[64,32], x1: f32[32]):
    v0 = add(x0, x1)
    v1 = exp(v0)
    v2 = sum(v1, axes=(1,), keepdims=True)
    v3 = div(v1, v2)
    return (v3, v2)""")
    x = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    y = np.random.default_rng(1).standard_normal(32).astype(np.float32)
    expected = run_graph(graph, x, y)
    one = native(graph, cache, kernels=[Kernel("k0_softmax_by_hand", list(graph.nodes))])
    assert one.kernel_names == ["k0_softmax_by_hand"]
    assert_matches(one.run(x, y), expected, "one kernel", rtol=1e-6)

    class Schedule:  # anything with .graph and .kernels whose items have .nodes
        def __init__(self, graph):
            self.graph = graph
            self.kernels = [type("K", (), {"nodes": [n], "outputs": [n.out]})()
                            for n in graph.nodes]

    per_node = NativeProgram(Schedule(graph), cache=cache)
    assert len(per_node.kernel_names) == 4
    assert_matches(per_node.run(x, y), expected, "schedule-like", rtol=1e-6)


def test_a_program_compiles_once(cache):
    graph = parse_graph("def f(x0: f64[3]):\n    v0 = sin(x0)\n    return (v0,)")
    native(graph, cache)
    hits = cache.stats.memory_hits
    native(graph, cache)
    assert cache.stats.memory_hits == hits + 1


def test_inputs_are_checked(cache):
    graph = parse_graph("def f(x0: f64[3]):\n    v0 = sin(x0)\n    return (v0,)")
    program = native(graph, cache)
    from tracegrad.compiler.ir import IRError

    with pytest.raises(IRError, match="expects f64"):
        program.run(np.zeros(3, np.float32))
    strided = np.arange(6.0)[::2]  # not contiguous: copied, not misread
    np.testing.assert_array_equal(program.run(strided)[0], np.sin(strided))


class _Subclass(np.ndarray):
    pass


def test_the_entry_refuses_every_input_it_cannot_read_as_planned_and_runs_nothing(cache):
    """The entry checks each input's type, dtype object, shape and C order itself
    (program.py): it answers the refused input's position plus one, before any kernel,
    and `run` makes that input right and calls it again, or names what is wrong."""
    from tracegrad.compiler.ir import IRError
    from tracegrad.compiler.lower.program import INPUTS, OUTPUTS

    graph = parse_graph("def f(x0: f32[2,3], x1: f32[], x2: f64[3]):\n"
                        "    v0 = mul(x0, x1)\n    v1 = sin(x2)\n    return (v0, v1)")
    program = native(graph, cache)
    rng = np.random.default_rng(0)
    x, s, z = rng.standard_normal((2, 3)).astype(np.float32), np.float32(1.5), np.arange(3.0)
    s = np.array(s)

    def entry(*arrays):
        """The entry's answer for `arrays`, and the outputs it was given (NaN-filled)."""
        table, address, _ = program._new_state()
        outs = tuple(np.full(shape, np.nan, dtype) for shape, dtype in program._outputs)
        table[INPUTS], table[OUTPUTS] = id(arrays), id(outs)
        return program._function(address), outs

    answer, (product, sines) = entry(x, s, z)
    assert answer == 0
    np.testing.assert_array_equal(product, x * s)
    np.testing.assert_array_equal(sines, np.sin(z))
    unlike = {  # position: inputs of the right values that the program must not read as is
        1: [np.asfortranarray(x), memoryview(x), x.view(_Subclass)],
        2: [s.view(_Subclass), s.view(np.dtype("f4", copy=True))],
        3: [z.view(np.dtype("f8", copy=True)), np.arange(6.0)[::2]],
    }
    for position, variants in unlike.items():
        for variant in variants:
            arrays = [x, s, z]
            arrays[position - 1] = variant
            answer, outs = entry(*arrays)
            assert answer == position, (position, variant)
            assert all(np.isnan(out).all() for out in outs)  # it ran nothing
            product, sines = program.run(*arrays)  # conformed, then run
            np.testing.assert_array_equal(product, x * s)
            np.testing.assert_array_equal(sines, np.sin(np.asarray(arrays[2])))
    for wrong in [(x.T, s, z), (x.tolist(), s, z), (x, s.reshape(1), z), (x, s, z[None]),
                  (x, s, z.astype(np.float32))]:
        with pytest.raises(IRError, match="expects"):
            program.run(*wrong)
    with pytest.raises(IRError, match="takes 3 inputs, got 2"):
        program.run(x, s)


