"""How compiled code runs on several cores.

A compiled program is one native entry point, called once from Python. Kernels inside it
that are worth splitting call ``tracegrad_parallel_for``, a small function the runtime
writes in LLVM IR (``RUNTIME_IR`` below) and JIT-compiles once per process (see
``engine.py``). Generated modules only declare it::

    declare void @tracegrad_parallel_for(ptr, ptr, i64, i64)

    call void @tracegrad_parallel_for(ptr @k3_body, ptr %ctx, i64 %n, i64 %grain)

and the JIT links the call to the runtime's copy by symbol name.

The contract of ``tracegrad_parallel_for(body, ctx, n, grain)``:

* It calls ``body(ctx, begin, end)`` on contiguous chunks that cover ``[0, n)`` exactly
  once, and returns when every chunk is done. ``n < 1`` calls nothing.
* The number of chunks is ``k = min(num_threads(), n // max(grain, 1))``: every chunk has
  at least ``grain`` iterations, so small loops (``n < 2 * grain``) run inline in the
  calling thread, with no thread started.
* Chunk ``c`` is ``[c*q + min(c, r), (c+1)*q + min(c+1, r))`` with ``q, r = divmod(n, k)``:
  the split depends only on ``n``, ``grain`` and the thread count, never on timing.
  The calling thread runs chunk 0; chunks 1..k-1 run on threads made with
  ``pthread_create`` and joined before returning (if a thread cannot be made, its chunk
  runs in the calling thread instead).
* The body must be split-invariant: what it computes for iteration ``i`` must not depend
  on ``begin``/``end``. Chunks run concurrently, so bodies write disjoint memory.
  **Reductions are therefore never split by thread.** A kernel that reduces in parallel
  cuts its input into blocks of a size fixed when it is generated, lets
  ``tracegrad_parallel_for`` run over the blocks (iteration ``i`` reduces block ``i``
  into ``partial[i]``), and then combines the partials in index order. The result has
  the same bits whatever the thread count (SPEC §4.3).
* Bodies must not call ``tracegrad_parallel_for`` themselves (nested regions would start
  threads of their own); the kernel generator parallelises the outermost loop only.

Starting and joining a thread costs tens of microseconds (50-90 us measured on a 2-core
VM), so ``grain`` should make a chunk at least that much work.

The thread count lives in ``tracegrad_num_threads``, an ``i64`` owned by this module
(``ctypes``) whose address the engine registers with LLVM; ``set_num_threads`` changes it
for every compiled program at once, without recompiling.

>>> num_threads() >= 1
True
"""

from __future__ import annotations

import ctypes
import os
import warnings

PARALLEL_FOR = "tracegrad_parallel_for"
NUM_THREADS_SYMBOL = "tracegrad_num_threads"
PARALLEL_FOR_DECLARATION = f"declare void @{PARALLEL_FOR}(ptr, ptr, i64, i64)"
ENVIRONMENT_VARIABLE = "TRACEGRAD_NUM_THREADS"


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def thread_count_from_environment() -> int:
    """``TRACEGRAD_NUM_THREADS`` if it is a positive integer, else every available core."""
    text = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if not text:
        return available_cores()
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        warnings.warn(f"{ENVIRONMENT_VARIABLE}={text!r} is not a positive integer; "
                      f"using {available_cores()} threads", RuntimeWarning, stacklevel=2)
        return available_cores()
    return count


_num_threads = ctypes.c_int64(thread_count_from_environment())  # read by native code


def num_threads() -> int:
    """How many threads compiled code uses for a parallel loop."""
    return _num_threads.value


def set_num_threads(count: int) -> None:
    """Use ``count`` threads from the next parallel loop on (any compiled program)."""
    if int(count) < 1:
        raise ValueError(f"set_num_threads needs a positive count, got {count!r}")
    _num_threads.value = int(count)


def native_symbols() -> dict[str, int]:
    """Symbols this module owns, by name, for the engine to register before linking."""
    return {NUM_THREADS_SYMBOL: ctypes.addressof(_num_threads)}


RUNTIME_IR = r"""
; tracegrad_parallel_for(body, ctx, n, grain): see runtime/threads.py for the contract.
%task = type { ptr, ptr, i64, i64 }                 ; body, ctx, begin, end

@tracegrad_num_threads = external global i64

declare i32 @pthread_create(ptr, ptr, ptr, ptr)
declare i32 @pthread_join(i64, ptr)                 ; pthread_t is unsigned long on Linux

define internal ptr @tracegrad_parallel_worker(ptr %task) {
entry:
  %body = load ptr, ptr %task, align 8
  %ctx.p = getelementptr inbounds %task, ptr %task, i64 0, i32 1
  %ctx = load ptr, ptr %ctx.p, align 8
  %begin.p = getelementptr inbounds %task, ptr %task, i64 0, i32 2
  %begin = load i64, ptr %begin.p, align 8
  %end.p = getelementptr inbounds %task, ptr %task, i64 0, i32 3
  %end = load i64, ptr %end.p, align 8
  call void %body(ptr %ctx, i64 %begin, i64 %end)
  ret ptr null
}

define internal i64 @tracegrad_chunk_begin(i64 %c, i64 %q, i64 %r) alwaysinline {
entry:
  %base = mul nsw i64 %c, %q
  %early = icmp slt i64 %c, %r                      ; the first r chunks get one more
  %extra = select i1 %early, i64 %c, i64 %r
  %begin = add nsw i64 %base, %extra
  ret i64 %begin
}

define void @tracegrad_parallel_for(ptr %body, ptr %ctx, i64 %n, i64 %grain) {
entry:
  %empty = icmp slt i64 %n, 1
  br i1 %empty, label %done, label %count
count:
  %grain.big = icmp sgt i64 %grain, 1
  %g = select i1 %grain.big, i64 %grain, i64 1
  %most = sdiv i64 %n, %g                           ; every chunk gets >= grain iterations
  %threads = load i64, ptr @tracegrad_num_threads, align 8
  %fewer = icmp slt i64 %most, %threads
  %k = select i1 %fewer, i64 %most, i64 %threads
  %parallel = icmp sgt i64 %k, 1
  br i1 %parallel, label %split, label %inline
inline:
  call void %body(ptr %ctx, i64 0, i64 %n)
  br label %done
split:
  %q = sdiv i64 %n, %k
  %r = srem i64 %n, %k
  %tasks = alloca %task, i64 %k, align 8
  %tids = alloca i64, i64 %k, align 8
  %started = alloca i8, i64 %k, align 1
  br label %spawn
spawn:                                              ; chunks 1..k-1 on new threads
  %c = phi i64 [ 1, %split ], [ %c.next, %spawned ]
  %c.next = add nsw i64 %c, 1
  %begin = call i64 @tracegrad_chunk_begin(i64 %c, i64 %q, i64 %r)
  %end = call i64 @tracegrad_chunk_begin(i64 %c.next, i64 %q, i64 %r)
  %t = getelementptr inbounds %task, ptr %tasks, i64 %c
  store ptr %body, ptr %t, align 8
  %t.ctx = getelementptr inbounds %task, ptr %t, i64 0, i32 1
  store ptr %ctx, ptr %t.ctx, align 8
  %t.begin = getelementptr inbounds %task, ptr %t, i64 0, i32 2
  store i64 %begin, ptr %t.begin, align 8
  %t.end = getelementptr inbounds %task, ptr %t, i64 0, i32 3
  store i64 %end, ptr %t.end, align 8
  %tid = getelementptr inbounds i64, ptr %tids, i64 %c
  %err = call i32 @pthread_create(ptr %tid, ptr null, ptr @tracegrad_parallel_worker, ptr %t)
  %ok = icmp eq i32 %err, 0
  %ok.byte = zext i1 %ok to i8
  %flag = getelementptr inbounds i8, ptr %started, i64 %c
  store i8 %ok.byte, ptr %flag, align 1
  br i1 %ok, label %spawned, label %fallback
fallback:                                           ; no thread to be had: run it here
  call void %body(ptr %ctx, i64 %begin, i64 %end)
  br label %spawned
spawned:
  %more = icmp slt i64 %c.next, %k
  br i1 %more, label %spawn, label %first
first:                                              ; chunk 0 on the calling thread
  %end0 = call i64 @tracegrad_chunk_begin(i64 1, i64 %q, i64 %r)
  call void %body(ptr %ctx, i64 0, i64 %end0)
  br label %join
join:
  %j = phi i64 [ 1, %first ], [ %j.next, %joined ]
  %j.flag = getelementptr inbounds i8, ptr %started, i64 %j
  %j.started = load i8, ptr %j.flag, align 1
  %j.wait = icmp ne i8 %j.started, 0
  br i1 %j.wait, label %wait, label %joined
wait:
  %j.tid.p = getelementptr inbounds i64, ptr %tids, i64 %j
  %j.tid = load i64, ptr %j.tid.p, align 8
  %j.err = call i32 @pthread_join(i64 %j.tid, ptr null)
  br label %joined
joined:
  %j.next = add nsw i64 %j, 1
  %j.more = icmp slt i64 %j.next, %k
  br i1 %j.more, label %join, label %done
done:
  ret void
}
"""
