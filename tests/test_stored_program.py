"""Programs stored by graph (`compiler/lower/stored_program.py`): a warm cache skips
lowering, and the key changes whenever the machine code could.

The damaged-entry, read-only and two-process cases go through the same cache files and
are in `test_cache_faults.py`.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from child_process import run_python
from tracegrad.compiler.ir_text import digest_graph, parse_graph
from tracegrad.compiler.lower import NativeProgram, blas, stored_program
from tracegrad.compiler.lower.stored_program import Binding, program_key
from tracegrad.runtime.cache import ProgramCache, decode_entry, encode_entry

GRAPH = """def f(x0: f32[4,8], x1: f32[8,3]):
    v0 = matmul(x0, x1)                           # f32[4,3]      model.py:{line}
    v1 = mul(v0, {scale})                         # f32[4,3]
    v2 = sum(v1, axes=(1,), keepdims=False)       # f32[4]
    return (v2, v1)
"""


def graph(scale: float = 2.0, line: int = 3):
    return parse_graph(GRAPH.format(scale=scale, line=line))


def arrays(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((4, 8), np.float32), rng.standard_normal((8, 3), np.float32)


def expected(x, w, scale: float = 2.0):
    v1 = (x @ w) * np.float32(scale)
    return [v1.sum(1), v1]


def engine():
    from tracegrad.runtime.engine import default_engine

    return default_engine()


# --- the key ----------------------------------------------------------------------------

def test_the_key_names_what_is_computed_not_where_it_was_written():
    key = program_key(graph(), True, engine())
    assert program_key(graph(), True, engine()) == key
    assert program_key(graph(line=40), True, engine()) == key  # locations: no code change
    assert program_key(graph(scale=-2.0), True, engine()) != key
    assert program_key(graph(), False, engine()) != key  # fuse=False: other kernels


def test_the_key_changes_with_the_compiler_and_the_matmul_backend(monkeypatch):
    key = program_key(graph(), True, engine())
    monkeypatch.setattr(blas, "BACKEND", "loops")
    assert program_key(graph(), True, engine()) != key
    monkeypatch.undo()
    monkeypatch.setattr(stored_program, "compiler_fingerprint", lambda: "another version")
    assert program_key(graph(), True, engine()) != key
    monkeypatch.setattr(stored_program, "compiler_fingerprint", lambda: None)
    assert program_key(graph(), True, engine()) is None  # unknown sources: never stored


def test_arrays_are_digested_by_their_bytes():
    def constant(array):
        return parse_graph("def g(x0: f32[4]):\n"
                           f"    v0 = constant(array({array.tolist()!r}, dtype=f32))\n"
                           "    v1 = add(x0, v0)\n    return (v1,)")

    base = np.arange(4, dtype=np.float32)
    other = base.copy()
    other[2] = np.nextafter(other[2], np.float32(9))  # one ulp apart
    negative_zero = base.copy()
    negative_zero[0] = -0.0
    digests = {digest_graph(constant(a)) for a in (base, other, negative_zero)}
    assert len(digests) == 3 and digest_graph(constant(base)) == digest_graph(constant(base))


# --- storing and finding ------------------------------------------------------------------

def test_a_stored_program_is_found_without_lowering():
    cache = ProgramCache(enabled=False)
    first = NativeProgram(graph(), cache=cache)
    second = NativeProgram(graph(line=9), cache=cache)
    assert second.native is first.native and cache.stats.memory_hits == 1
    assert "_ir" not in vars(second) and second.lower_seconds == 0.0  # nothing lowered
    x, w = arrays()
    for program in (first, second):
        for got, want in zip(program.run(x, w), expected(x, w)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert second.ir == first.ir  # made again when asked for


def test_binding_round_trips_with_tables_and_constant_results():
    binding = Binding(arena_bytes=4096, outputs=[((3, 4), "float32")],
                      tables=[np.arange(12, dtype=np.float64).reshape(3, 4)],
                      results=[("out", 0), ("in", 1), ("const", np.full((2,), 7, np.int64))],
                      kernel_names=["k0_mul"], uses_blas=True)
    again = Binding.from_bytes(binding.to_bytes())
    assert (again.arena_bytes, again.outputs) == (4096, [((3, 4), "float32")])
    np.testing.assert_array_equal(again.tables[0], binding.tables[0])
    assert again.results[:2] == [("out", 0), ("in", 1)] and again.results[2][0] == "const"
    np.testing.assert_array_equal(again.results[2][1], [7, 7])
    assert again.kernel_names == ["k0_mul"] and again.uses_blas
    for damaged in (b"", b"{}", binding.to_bytes()[:-3], binding.to_bytes() + b"x"):
        with pytest.raises(ValueError):
            Binding.from_bytes(damaged)


def test_an_intact_entry_with_an_unreadable_binding_is_lowered_again(tmp_path):
    NativeProgram(graph(), cache=ProgramCache(directory=tmp_path))
    [entry] = tmp_path.glob("*.tgo")
    object_code, _ = decode_entry(entry.read_bytes(), entry.stem)
    entry.write_bytes(encode_entry(entry.stem, object_code, b"not a binding"))  # checksum ok
    cache = ProgramCache(directory=tmp_path)
    with pytest.warns(RuntimeWarning, match="ignoring a stored program"):
        program = NativeProgram(graph(), cache=cache)
    x, w = arrays(1)
    for got, want in zip(program.run(x, w), expected(x, w)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert cache.stats.compiles == 1
    Binding.from_bytes(decode_entry(entry.read_bytes(), entry.stem)[1])  # written anew


WARM = """
import json, sys
from test_stored_program import arrays, expected, graph
from tracegrad.compiler.lower import NativeProgram
from tracegrad.runtime import compile_child
from tracegrad.runtime.cache import default_cache
children = []
forked = compile_child.in_child
compile_child.in_child = lambda *args: children.append(1) or forked(*args)
program = NativeProgram(graph())
x, w = arrays(2)
close = all(abs(got - want).max() < 1e-5 for got, want in zip(program.run(x, w), expected(x, w)))
stats = default_cache().stats
print(json.dumps({"close": bool(close), "compiles": stats.compiles, "disk_hits": stats.disk_hits,
                  "lowered": "_ir" in vars(program), "children": len(children),
                  "generator": any(name in sys.modules for name in GENERATOR)}))
"""
# What lowering imports and a program found on disk does not need (~15 ms of imports)
GENERATOR = ["tracegrad.compiler.lower." + name for name in
             ("build", "program", "emitter", "loops", "lowering", "matmul")]
WARM = WARM.replace("GENERATOR", repr(GENERATOR))


def test_a_new_process_with_a_warm_cache_runs_without_lowering(tmp_path):
    reports = []
    for _ in range(2):
        done = run_python(WARM, timeout=120, TRACEGRAD_CACHE_DIR=str(tmp_path))
        assert done.returncode == 0, done.stderr
        reports.append(json.loads(done.stdout))
    # The first process compiles the program and the threading runtime in one child; the
    # second finds both on disk and starts no child at all.
    assert reports[0] == {"close": True, "compiles": 1, "disk_hits": 0, "lowered": True,
                          "children": 1, "generator": True}
    assert reports[1] == {"close": True, "compiles": 0, "disk_hits": 1, "lowered": False,
                          "children": 0, "generator": False}


def test_a_program_built_from_given_kernels_is_not_stored_by_graph():
    from tracegrad.compiler.lower import trivial_kernels

    cache = ProgramCache(enabled=False)
    g = graph()
    NativeProgram(g, cache=cache, kernels=trivial_kernels(g))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        program = NativeProgram(g, cache=cache)  # by graph: a different, fused program
    assert "_ir" in vars(program) and cache.stats.memory_hits == 0
