"""The runtime (SPEC §2, §4.3, §4.4): LLVM IR text in, native code on NumPy buffers out.

Kernels here are written by hand in LLVM IR, as the compiler's lowering will write them.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import pathlib
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from child_process import run_python, run_python_together

ROOT = pathlib.Path(__file__).resolve().parent.parent

SAXPY_IR = """
define void @saxpy(ptr noalias nocapture %x, ptr noalias nocapture %y, float %a, i64 %n) {
entry:
  %any = icmp sgt i64 %n, 0
  br i1 %any, label %loop, label %exit
loop:
  %i = phi i64 [ 0, %entry ], [ %i.next, %loop ]
  %px = getelementptr inbounds float, ptr %x, i64 %i
  %py = getelementptr inbounds float, ptr %y, i64 %i
  %vx = load float, ptr %px, align 4
  %vy = load float, ptr %py, align 4
  %ax = fmul float %a, %vx
  %sum = fadd float %ax, %vy
  store float %sum, ptr %py, align 4
  %i.next = add nuw nsw i64 %i, 1
  %done = icmp eq i64 %i.next, %n
  br i1 %done, label %exit, label %loop
exit:
  ret void
}
"""
SAXPY_ARGS = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_float, ctypes.c_int64]

# Each iteration records which thread ran it and where its chunk began.
RECORD_IR = """
declare void @tracegrad_parallel_for(ptr, ptr, i64, i64)
declare i64 @pthread_self()

%record = type { ptr, ptr }                          ; thread ids, chunk begins

define internal void @record_body(ptr %ctx, i64 %begin, i64 %end) {
entry:
  %tids = load ptr, ptr %ctx, align 8
  %begins.p = getelementptr inbounds %record, ptr %ctx, i64 0, i32 1
  %begins = load ptr, ptr %begins.p, align 8
  %self = call i64 @pthread_self()
  br label %loop
loop:
  %i = phi i64 [ %begin, %entry ], [ %i.next, %loop ]
  %t = getelementptr inbounds i64, ptr %tids, i64 %i
  store i64 %self, ptr %t, align 8
  %b = getelementptr inbounds i64, ptr %begins, i64 %i
  store i64 %begin, ptr %b, align 8
  %i.next = add nsw i64 %i, 1
  %more = icmp slt i64 %i.next, %end
  br i1 %more, label %loop, label %exit
exit:
  ret void
}

define void @record(ptr %tids, ptr %begins, i64 %n, i64 %grain) {
entry:
  %ctx = alloca %record, align 8
  store ptr %tids, ptr %ctx, align 8
  %begins.p = getelementptr inbounds %record, ptr %ctx, i64 0, i32 1
  store ptr %begins, ptr %begins.p, align 8
  call void @tracegrad_parallel_for(ptr @record_body, ptr %ctx, i64 %n, i64 %grain)
  ret void
}
"""

# A float32 sum that is the same whatever the thread count: block i (of a fixed 1024
# elements) is summed into partial[i] in parallel, then the partials in index order.
BLOCK = 1024
CHUNKED_SUM_IR = f"""
declare void @tracegrad_parallel_for(ptr, ptr, i64, i64)

%sum = type {{ ptr, ptr, i64 }}                        ; x, partial, n

define internal void @block_sums(ptr %ctx, i64 %begin, i64 %end) {{
entry:
  %x = load ptr, ptr %ctx, align 8
  %partial.p = getelementptr inbounds %sum, ptr %ctx, i64 0, i32 1
  %partial = load ptr, ptr %partial.p, align 8
  %n.p = getelementptr inbounds %sum, ptr %ctx, i64 0, i32 2
  %n = load i64, ptr %n.p, align 8
  br label %block
block:
  %b = phi i64 [ %begin, %entry ], [ %b.next, %block.end ]
  %lo = mul nsw i64 %b, {BLOCK}
  %lo.next = add nsw i64 %lo, {BLOCK}
  %short = icmp slt i64 %n, %lo.next
  %hi = select i1 %short, i64 %n, i64 %lo.next
  br label %add
add:
  %i = phi i64 [ %lo, %block ], [ %i.next, %add ]
  %acc = phi float [ 0.0, %block ], [ %acc.next, %add ]
  %px = getelementptr inbounds float, ptr %x, i64 %i
  %v = load float, ptr %px, align 4
  %acc.next = fadd float %acc, %v
  %i.next = add nsw i64 %i, 1
  %in = icmp slt i64 %i.next, %hi
  br i1 %in, label %add, label %block.end
block.end:
  %pp = getelementptr inbounds float, ptr %partial, i64 %b
  store float %acc.next, ptr %pp, align 4
  %b.next = add nsw i64 %b, 1
  %more = icmp slt i64 %b.next, %end
  br i1 %more, label %block, label %exit
exit:
  ret void
}}

define void @chunked_sum(ptr %x, i64 %n, ptr %partial, ptr %out) {{
entry:
  %ctx = alloca %sum, align 8
  store ptr %x, ptr %ctx, align 8
  %partial.p = getelementptr inbounds %sum, ptr %ctx, i64 0, i32 1
  store ptr %partial, ptr %partial.p, align 8
  %n.p = getelementptr inbounds %sum, ptr %ctx, i64 0, i32 2
  store i64 %n, ptr %n.p, align 8
  %n.up = add nsw i64 %n, {BLOCK - 1}
  %blocks = sdiv i64 %n.up, {BLOCK}
  call void @tracegrad_parallel_for(ptr @block_sums, ptr %ctx, i64 %blocks, i64 1)
  br label %combine
combine:
  %j = phi i64 [ 0, %entry ], [ %j.next, %combine ]
  %total = phi float [ 0.0, %entry ], [ %total.next, %combine ]
  %pj = getelementptr inbounds float, ptr %partial, i64 %j
  %v = load float, ptr %pj, align 4
  %total.next = fadd float %total, %v
  %j.next = add nsw i64 %j, 1
  %more = icmp slt i64 %j.next, %blocks
  br i1 %more, label %combine, label %exit
exit:
  store float %total.next, ptr %out, align 4
  ret void
}}
"""


def saxpy_expected(a: float = 2.0, n: int = 1000) -> np.ndarray:
    """What `saxpy` returns when the compiled function is right."""
    x = np.linspace(-1, 1, n, dtype=np.float32)
    return np.float32(a) * x + np.cos(x).astype(np.float32)


def saxpy(native, a: float = 2.0, n: int = 1000) -> np.ndarray:
    from tracegrad.runtime.buffers import data_pointer

    x = np.linspace(-1, 1, n, dtype=np.float32)
    y = np.cos(x).astype(np.float32)
    native.function("saxpy", None, SAXPY_ARGS)(data_pointer(x), data_pointer(y), a, n)
    return y


@pytest.fixture(scope="module")
def engine():
    from tracegrad.runtime.engine import default_engine

    return default_engine()


# --- engine -----------------------------------------------------------------------------

def test_compiled_saxpy_runs_on_numpy_buffers(engine):
    native = engine.compile_module(SAXPY_IR, ["saxpy"])
    np.testing.assert_array_equal(saxpy(native), saxpy_expected())
    assert native.address("saxpy") > 0


def test_assembly_uses_the_hosts_widest_vectors(engine):
    assembly = engine.assembly(SAXPY_IR)
    assert "saxpy:" in assembly
    if "+avx512f" in engine.host.features:
        assert "zmm" in assembly
    elif "+avx2" in engine.host.features:
        assert "ymm" in assembly


def test_optimized_ir_is_vectorised(engine):
    optimized = engine.optimized_ir(SAXPY_IR)
    assert optimized != SAXPY_IR
    assert "x float>" in optimized and "x float>" not in SAXPY_IR
    assert engine.host.triple in optimized


def test_ir_from_llvmlite_ir_builder_compiles(engine):
    """llvmlite.ir prints typed pointers and an unknown triple; the engine takes both."""
    from llvmlite import ir

    module = ir.Module()
    i64 = ir.IntType(64)
    function = ir.Function(module, ir.FunctionType(ir.VoidType(), [i64.as_pointer()]), "put42")
    builder = ir.IRBuilder(function.append_basic_block())
    builder.store(ir.Constant(i64, 42), function.args[0])
    builder.ret_void()
    out = np.zeros(1, np.int64)
    engine.compile_module(str(module), ["put42"]).function(
        "put42", None, [ctypes.c_void_p])(out.ctypes.data)
    assert out[0] == 42


def test_bad_ir_raises_compile_error(engine):
    from tracegrad.runtime.engine import CompileError

    with pytest.raises(CompileError, match="invalid LLVM IR"):
        engine.compile_module("define void @f() {\n  ret i32 0\n}", ["f"])
    with pytest.raises(CompileError, match="undefined symbols: no_such_function"):
        engine.compile_module("declare void @no_such_function()\n"
                              "define void @f() {\n  call void @no_such_function()\n"
                              "  ret void\n}", ["f"])
    with pytest.raises(CompileError, match="no function named 'absent'"):
        engine.compile_module(SAXPY_IR, ["absent"])


# Two modules in one text: the first calls a function the second defines.
TWO_MODULE_IR = """; ModuleID = "caller"
declare i64 @twice(i64)
define i64 @four_times(i64 %x) {
  %y = call i64 @twice(i64 %x)
  %z = call i64 @twice(i64 %y)
  ret i64 %z
}
; ModuleID = "callee"
define i64 @twice(i64 %x) {
  %y = add i64 %x, %x
  ret i64 %y
}
"""


@pytest.fixture
def group_per_module(monkeypatch):
    """Modules of any size get a group of their own, as many as there are threads."""
    from tracegrad.runtime import side_by_side

    monkeypatch.setattr(side_by_side, "GROUP_CHARACTERS", 1)


@pytest.mark.parametrize("count", [1, 2])
def test_modules_of_one_text_call_each_other_linked_or_loaded_together(
        engine, threads, group_per_module, count):
    threads.set_num_threads(count)
    code = engine.compile_object(TWO_MODULE_IR)
    assert len(code.parts) == count and code.externals == ()
    native = engine.load_object(code, ["four_times", "twice"])
    assert native.function("four_times", ctypes.c_int64, [ctypes.c_int64])(5) == 20
    assert engine.optimized_ir(TWO_MODULE_IR).count("; ModuleID") == 2
    assert "four_times:" in engine.assembly(TWO_MODULE_IR)


def test_modules_compile_in_one_group_per_thread_into_the_same_code_each_time(
        engine, threads, group_per_module):
    text = "".join(f'; ModuleID = "m{i}"\n' + SAXPY_IR.replace("@saxpy", f"@saxpy{i}")
                   for i in range(5))
    for count in (1, 2, 4):
        threads.set_num_threads(count)
        code = engine.compile_object(text)
        assert len(code.parts) == count and code == engine.compile_object(text)  # the same
        native = engine.load_object(code, [f"saxpy{i}" for i in range(5)])  # code each time
        x = np.arange(8, dtype=np.float32)
        y = np.ones(8, np.float32)
        native.function("saxpy4", None, SAXPY_ARGS)(x.ctypes.data, y.ctypes.data, 2.0, 8)
        np.testing.assert_array_equal(y, 2 * np.arange(8) + 1)


def test_a_bad_module_among_several_raises_compile_error(engine, threads):
    from tracegrad.runtime.engine import CompileError

    threads.set_num_threads(2)
    broken = TWO_MODULE_IR.replace("ret i64 %y\n}\n", "ret i32 0\n}\n")
    with pytest.raises(CompileError, match="invalid LLVM IR"):
        engine.compile_object(broken)
    unresolved = TWO_MODULE_IR.replace("@twice(i64 %x) {", "@thrice(i64 %x) {")
    with pytest.raises(CompileError, match="undefined symbols: twice"):
        engine.compile_object(unresolved)


@pytest.mark.parametrize("count", [1, 3])  # the two definitions linked, or in two objects
def test_a_function_defined_in_two_modules_is_an_error_in_one_group_or_two(
        engine, threads, group_per_module, count):
    from tracegrad.runtime.engine import CompileError

    threads.set_num_threads(count)
    twice_again = TWO_MODULE_IR + TWO_MODULE_IR[TWO_MODULE_IR.index('; ModuleID = "callee"'):]
    with pytest.raises(CompileError, match="multiply defined"):
        engine.compile_object(twice_again)


def test_function_keeps_its_module_alive(engine):
    import gc

    function = engine.compile_module(SAXPY_IR, ["saxpy"]).function("saxpy", None, SAXPY_ARGS)
    gc.collect()
    y = np.zeros(16, np.float32)
    function(np.ones(16, np.float32).ctypes.data, y.ctypes.data, 3.0, 16)
    assert (y == 3.0).all()


# --- cache ------------------------------------------------------------------------------

def test_memory_hit_returns_the_same_program(engine, tmp_path):
    from tracegrad.runtime.cache import ProgramCache, cache_key

    cache = ProgramCache(engine, tmp_path)
    first = cache.compile_module(SAXPY_IR, ["saxpy"])
    assert cache.compile_module(SAXPY_IR, ["saxpy"]) is first
    assert (cache.stats.compiles, cache.stats.memory_hits, cache.stats.disk_hits) == (1, 1, 0)
    assert list(tmp_path.glob("*.tgo")) == [cache.entry_path(cache_key(SAXPY_IR, engine))]


def test_key_covers_ir_and_optimisation_level(engine):
    from tracegrad.runtime.cache import cache_key
    from tracegrad.runtime.engine import Engine

    key = cache_key(SAXPY_IR, engine)
    assert key == cache_key(SAXPY_IR, engine)
    assert key != cache_key(SAXPY_IR.replace("fadd", "fsub"), engine)
    assert key != cache_key(SAXPY_IR, Engine(opt_level=2))


def chunked_sum(native, x: np.ndarray) -> np.float32:
    function = native.function("chunked_sum", None, [ctypes.c_void_p, ctypes.c_int64,
                                                     ctypes.c_void_p, ctypes.c_void_p])
    partial, out = np.zeros(-(-x.size // BLOCK), np.float32), np.zeros(1, np.float32)
    function(x.ctypes.data, x.size, partial.ctypes.data, out.ctypes.data)
    return out[0]


DISK_HIT = """
import json
import numpy as np
from test_runtime import CHUNKED_SUM_IR, SAXPY_IR, chunked_sum, saxpy
from tracegrad.runtime.cache import default_cache
from tracegrad.runtime.threads import set_num_threads
cache = default_cache()
y = saxpy(cache.compile_module(SAXPY_IR, ["saxpy"]))
set_num_threads(2)
total = chunked_sum(cache.compile_module(CHUNKED_SUM_IR, ["chunked_sum"]),
                    np.linspace(-3, 7, 50_001, dtype=np.float32))
print(json.dumps({"bits": y.view("uint32").tolist(), "sum": int(total.view("uint32")),
                  "disk_hits": cache.stats.disk_hits, "compiles": cache.stats.compiles}))
"""


def test_disk_hit_in_a_new_process_gives_identical_results(engine, tmp_path):
    from tracegrad.runtime.cache import ProgramCache

    cache = ProgramCache(engine, tmp_path)
    here = saxpy(cache.compile_module(SAXPY_IR, ["saxpy"]))
    total = chunked_sum(cache.compile_module(CHUNKED_SUM_IR, ["chunked_sum"]),
                        np.linspace(-3, 7, 50_001, dtype=np.float32))
    done = run_python(DISK_HIT, TRACEGRAD_CACHE_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    there = json.loads(done.stdout)
    assert (there["disk_hits"], there["compiles"]) == (2, 0)
    assert there["bits"] == here.view("uint32").tolist()
    assert there["sum"] == int(total.view("uint32"))


def test_threads_asking_for_one_program_at_once_share_one_compile(engine, tmp_path):
    from tracegrad.runtime.cache import ProgramCache

    cache = ProgramCache(engine, tmp_path)
    with ThreadPoolExecutor(4) as pool:
        programs = list(pool.map(lambda _: cache.compile_module(SAXPY_IR, ["saxpy"]), range(8)))
    assert all(program is programs[0] for program in programs)
    assert cache.stats.compiles == 1


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "garbage", "other key"])
def test_damaged_entry_is_logged_and_rebuilt(engine, tmp_path, caplog, damage):
    from tracegrad.runtime.cache import ProgramCache, cache_key, decode_entry

    expected = saxpy(ProgramCache(engine, tmp_path).compile_module(SAXPY_IR, ["saxpy"]))
    key = cache_key(SAXPY_IR, engine)
    path = ProgramCache(engine, tmp_path).entry_path(key)
    data = bytearray(path.read_bytes())
    if damage == "flip a byte":
        data[-100] ^= 0xFF
    elif damage == "truncate":
        data = data[:len(data) // 2]
    elif damage == "garbage":
        data = bytearray(b"\x7fELF" + bytes(200))
    else:
        data = data.replace(key.encode(), cache_key("; other\n" + SAXPY_IR, engine).encode())
    path.write_bytes(bytes(data))

    cache = ProgramCache(engine, tmp_path)
    with caplog.at_level("WARNING", logger="tracegrad.runtime.cache"):
        result = saxpy(cache.compile_module(SAXPY_IR, ["saxpy"]))
    np.testing.assert_array_equal(result, expected)
    assert (cache.stats.rejected_entries, cache.stats.compiles, cache.stats.disk_hits) == (1, 1, 0)
    assert "ignoring cache entry" in caplog.text and str(path) in caplog.text
    decode_entry(path.read_bytes(), key)  # rewritten whole


def test_unwritable_directory_warns_once_and_runs(engine, tmp_path):
    from tracegrad.runtime.cache import ProgramCache

    blocker = tmp_path / "a file"
    blocker.write_text("not a directory")  # mkdir under a file fails, even for root
    cache = ProgramCache(engine, blocker / "cache")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        saxpy(cache.compile_module(SAXPY_IR, ["saxpy"]))
        cache.compile_module(SAXPY_IR.replace("@saxpy", "@saxpy2"), ["saxpy2"])
    assert [str(w.message).endswith("in memory only") for w in caught] == [True]
    assert cache.stats.failed_writes == 2 and cache.stats.compiles == 2


def test_disabled_cache_does_not_touch_disk(engine, tmp_path):
    from tracegrad.runtime.cache import ProgramCache

    cache = ProgramCache(engine, tmp_path / "cache", enabled=False)
    saxpy(cache.compile_module(SAXPY_IR, ["saxpy"]))
    assert not (tmp_path / "cache").exists()


CONCURRENT = """
import json, sys
from test_runtime import SAXPY_IR, saxpy
from tracegrad.runtime.cache import default_cache
sys.stdin.readline()  # start together
y = saxpy(default_cache().compile_module(SAXPY_IR, ["saxpy"]))
print(json.dumps(y.view("uint32").tolist()))
"""


def test_two_processes_compiling_at_once_both_succeed(tmp_path):
    from tracegrad.runtime.cache import decode_entry

    done = run_python_together(CONCURRENT, timeout=60, TRACEGRAD_CACHE_DIR=str(tmp_path))
    assert [d.returncode for d in done] == [0, 0], [d.stderr for d in done]
    assert done[0].stdout == done[1].stdout
    entries = list(tmp_path.iterdir())  # the program and the threading runtime, and no
    assert len(entries) == 2 and all(e.suffix == ".tgo" for e in entries)  # temporaries
    for entry in entries:
        decode_entry(entry.read_bytes(), entry.stem)


# --- threads ----------------------------------------------------------------------------

@functools.cache
def recorder(engine):
    """`record(n, grain)`: which thread ran each of n iterations, where its chunk began
    (RECORD_IR compiled once per engine)."""
    function = engine.compile_module(RECORD_IR, ["record"]).function(
        "record", None, [ctypes.c_void_p] * 2 + [ctypes.c_int64] * 2)

    def record(n: int, grain: int) -> tuple[np.ndarray, np.ndarray]:
        tids, begins = np.zeros(n, np.uint64), np.full(n, -1, np.int64)
        function(tids.ctypes.data, begins.ctypes.data, n, grain)
        return tids, begins

    return record


def record(engine, n: int, grain: int) -> tuple[np.ndarray, np.ndarray]:
    return recorder(engine)(n, grain)


@pytest.mark.parametrize("count", [1, 2, 3])
def test_parallel_for_runs_contiguous_chunks_each_on_one_thread(engine, threads, count):
    threads.set_num_threads(count)
    n = 100
    tids, begins = record(engine, n, 1)
    k = 1 if count == 1 else threads.CHUNKS_PER_THREAD * count
    q, r = divmod(n, k)
    sizes = [q + (c < r) for c in range(k)]
    assert begins.tolist() == [sum(sizes[:c]) for c in range(k) for _ in range(sizes[c])]
    owners = [tids[begins == begin] for begin in np.unique(begins)]
    assert all(len(set(owner.tolist())) == 1 for owner in owners)  # one thread per chunk
    assert len(set(tids.tolist())) <= count  # which threads, timing decides
    assert tids[0] == threading.get_ident()  # chunk 0 runs on the calling thread


def test_parallel_for_runs_small_loops_inline(engine, threads):
    threads.set_num_threads(2)
    tids, begins = record(engine, 15, 8)  # two chunks would leave one with < 8 iterations
    assert set(tids.tolist()) == {threading.get_ident()} and set(begins.tolist()) == {0}
    _, begins = record(engine, 16, 8)
    assert set(begins.tolist()) == {0, 8}


# Chunk 0 waits (a bounded time) for chunk 1 to start: only a pool worker can run it,
# since the caller is busy with chunk 0. state[0] becomes 1 if chunk 1 came in time;
# chunk 1 then takes state[1] microseconds more.
HANDOFF_IR = """
declare void @tracegrad_parallel_for(ptr, ptr, i64, i64)
declare i32 @usleep(i32)

@flag = internal global i32 0

define internal void @handoff_body(ptr %state, i64 %begin, i64 %end) {
entry:
  %first = icmp eq i64 %begin, 0
  br i1 %first, label %wait, label %signal
signal:
  store atomic i32 1, ptr @flag seq_cst, align 4
  %delay.p = getelementptr inbounds i64, ptr %state, i64 1
  %delay = load i64, ptr %delay.p, align 8
  %delay.narrow = trunc i64 %delay to i32
  %slept = call i32 @usleep(i32 %delay.narrow)
  ret void
wait:
  %round = phi i64 [ 0, %entry ], [ %round.next, %wait.more ]
  %seen = load atomic i32, ptr @flag seq_cst, align 4
  %set = icmp ne i32 %seen, 0
  br i1 %set, label %came, label %wait.more
wait.more:
  %round.next = add nsw i64 %round, 1
  %patient = icmp slt i64 %round.next, 300000000
  br i1 %patient, label %wait, label %gave.up
came:
  store i64 1, ptr %state, align 8
  ret void
gave.up:
  ret void
}

define void @handoff(ptr %state) {
entry:
  store atomic i32 0, ptr @flag seq_cst, align 4
  call void @tracegrad_parallel_for(ptr @handoff_body, ptr %state, i64 2, i64 1)
  ret void
}
"""


@functools.cache
def _handoff_function(engine):
    return engine.compile_module(HANDOFF_IR, ["handoff"]).function(
        "handoff", None, [ctypes.c_void_p])


def handoff(engine, delay_us: int = 0) -> bool:
    """Whether a pool worker ran chunk 1 while the caller was in chunk 0."""
    from tracegrad.runtime.threads import CALM_NS

    function = _handoff_function(engine)
    pause = CALM_NS * 1e-9
    for _ in range(8):  # outlast any calm an earlier test caused: it may have been doubled
        time.sleep(pause)
        state = np.array([0, delay_us], np.int64)
        function(state.ctypes.data)
        if state[0]:
            return True
        pause *= 2
    return False


def test_pool_workers_run_chunks_while_the_caller_is_busy(engine, threads):
    threads.set_num_threads(2)
    for _ in range(3):  # the first call starts the worker; later ones reuse it
        assert handoff(engine)


def test_after_a_worker_lags_loops_run_on_the_caller_for_a_while(engine, threads):
    threads.set_num_threads(2)
    record = recorder(engine)
    assert handoff(engine, delay_us=20_000)  # the caller waits 20 ms for the worker...
    _, begins = record(100, 1)
    assert set(begins.tolist()) == {0}  # ... and then runs loops alone, unsplit
    for _ in range(100):  # until the calm is over (longer if lags came in a row)
        time.sleep(threads.CALM_NS * 1e-9)
        _, begins = record(100, 1)
        if len(set(begins.tolist())) > 1:
            break
    assert len(set(begins.tolist())) == threads.CHUNKS_PER_THREAD * 2  # split again


def test_parallel_for_from_several_python_threads_at_once(engine, threads):
    threads.set_num_threads(2)
    native = engine.compile_module(CHUNKED_SUM_IR, ["chunked_sum"])
    x = np.random.default_rng(1).standard_normal(50_000).astype(np.float32)
    expected = chunked_sum(native, x)

    def work(_) -> list:
        return [chunked_sum(native, x) for _ in range(200)]

    with ThreadPoolExecutor(3) as pool:  # a worker's exception is raised again here
        results = [result for batch in pool.map(work, range(3)) for result in batch]
    assert len(results) == 600
    assert all(result.view(np.uint32) == expected.view(np.uint32) for result in results)


FORKED = """
import os
from tracegrad.runtime.engine import default_engine
from tracegrad.runtime.threads import set_num_threads
set_num_threads(2)
from test_runtime import handoff
engine = default_engine()
came = handoff(engine)  # the parent's pool is running now
child = os.fork()
if child == 0:  # the child inherits none of the pool's threads: it needs its own
    os._exit(0 if handoff(engine) else 3)
_, status = os.waitpid(child, 0)
print(int(came), os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_its_own_workers():
    done = run_python(FORKED)  # a hang times out
    assert done.stdout.split() == ["1", "0"], done.stderr


def test_chunked_sum_has_the_same_bits_on_any_thread_count(engine, threads):
    native = engine.compile_module(CHUNKED_SUM_IR, ["chunked_sum"])
    x = np.random.default_rng(0).standard_normal(100_003).astype(np.float32)
    blocks = -(-x.size // BLOCK)
    results = []
    for count in (1, 2, 3):
        threads.set_num_threads(count)
        results.append(chunked_sum(native, x).view(np.uint32))
    partials = [np.cumsum(x[b * BLOCK:(b + 1) * BLOCK])[-1] for b in range(blocks)]
    sequential = np.cumsum(np.array(partials, np.float32))[-1]  # left to right, in float32
    assert results == [sequential.view(np.uint32)] * 3


def test_thread_count_comes_from_the_environment(threads):
    code = "from tracegrad.runtime.threads import num_threads; print(num_threads())"
    assert run_python(code, TRACEGRAD_NUM_THREADS="3").stdout.strip() == "3"
    done = run_python(code, TRACEGRAD_NUM_THREADS="many")
    assert done.stdout.strip() == str(threads.available_cores())
    assert "not a positive integer" in done.stderr


def test_set_num_threads_rejects_nonsense(threads):
    with pytest.raises(ValueError):
        threads.set_num_threads(0)


# --- buffers ----------------------------------------------------------------------------

def test_arena_views_are_aligned_typed_and_bounded():
    from tracegrad.runtime.buffers import ALIGNMENT, Arena, aligned_bytes, data_pointer

    for size in (0, 1, 100, 4096):
        assert data_pointer(aligned_bytes(size)) % ALIGNMENT == 0
    arena = Arena(1024)
    a, b = arena.view(0, np.float32, (4, 8)), arena.view(128, np.float64, (2, 3))
    a[:], b[:] = 1.0, 2.0
    assert data_pointer(b) == arena.pointer(128) and a.flags.c_contiguous
    assert (arena.view(0, np.float32, (32,)) == 1.0).all()
    with pytest.raises(ValueError, match="does not fit"):
        arena.view(1000, np.float32, (8,))
    with pytest.raises(ValueError, match="not aligned"):
        arena.view(2, np.float32, (2,))


def test_arena_pool_reuses_one_arena_per_concurrent_caller():
    from tracegrad.runtime.buffers import ArenaPool

    pool = ArenaPool(256)
    with pool.borrow() as first, pool.borrow() as second:
        assert first is not second
    with pool.borrow() as again:
        assert again in (first, second)


def test_data_pointer_reads_the_array_object():
    from tracegrad.runtime.buffers import data_pointer

    base = np.arange(100, dtype=np.float64)
    for array in (base, base[3:], base[::2], base.reshape(10, 10).T, np.zeros(0)):
        assert data_pointer(array) == array.ctypes.data


@pytest.mark.parametrize("offsets", [[0, 16, 32], [4080, 0, 16], [100, 1200, 2300, 3400],
                                     [64], [0, 512, 1024, 1536, 2048, 2560, 3072]])
def test_outputs_go_just_behind_every_input_in_the_page(offsets):
    from tracegrad.runtime import buffers

    page = buffers.PAGE

    def at(offset):  # a float32 array starting `offset` bytes into a page
        raw = np.empty(8 * page, np.uint8)
        start = (offset - buffers.data_pointer(raw)) % page
        return raw[start:start + 4 * page].view(np.float32)

    inputs = [at(o) for o in offsets]
    behind = buffers.offset_behind(inputs)
    outputs = [buffers.empty_behind((8, 256), np.float32, behind, rank) for rank in range(3)]
    starts = [buffers.data_pointer(out) for out in outputs]
    for out, start in zip(outputs, starts):
        assert out.shape == (8, 256) and out.dtype == np.float32 and out.flags.c_contiguous
        assert start % buffers.ALIGNMENT == 0
        for array in inputs:  # never a little ahead of an input: 4K aliasing
            ahead = (buffers.data_pointer(array) - start) % page
            assert buffers.ALIGNMENT <= ahead <= page - buffers.SHADOW
    assert len({start % page for start in starts}) == 3  # in other cache sets, too
    many = [buffers.empty_behind((16,), np.float32, behind, rank) for rank in range(40)]
    for out in many:  # later outputs share lines: none reaches round to just ahead
        for array in inputs:
            ahead = (buffers.data_pointer(array) - buffers.data_pointer(out)) % page
            assert buffers.ALIGNMENT <= ahead <= page - buffers.SHADOW


# --- layering ---------------------------------------------------------------------------

def test_runtime_imports_nothing_of_the_front_end_or_compiler():
    for path in (ROOT / "runtime").glob("*.py"):
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]):
                assert not words[1].startswith(("tracegrad", "compiler", "..")), (path, line)


def test_importing_the_runtime_loads_no_llvm():
    code = ("import sys, tracegrad.runtime; "
            "print([m for m in sys.modules if m.startswith('llvmlite')])")
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
