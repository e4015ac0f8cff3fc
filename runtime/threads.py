"""How compiled code runs on several cores.

A compiled program is one native entry point, called once from Python. Kernels inside it
that are worth splitting call ``tracegrad_parallel_for``, a small function the runtime
writes in LLVM IR (``runtime_ir`` below), compiles like a program and keeps in the disk
cache, and links once per process (see ``engine.py``). Generated modules only declare
it::

    declare void @tracegrad_parallel_for(ptr, ptr, i64, i64)

    call void @tracegrad_parallel_for(ptr @k3_body, ptr %ctx, i64 %n, i64 %grain)

and the JIT links the call to the runtime's copy by symbol name.

The contract of ``tracegrad_parallel_for(body, ctx, n, grain)``:

* It calls ``body(ctx, begin, end)`` on contiguous chunks that cover ``[0, n)`` exactly
  once, and returns when every chunk is done. ``n < 1`` calls nothing.
* The number of chunks is ``k = min(CHUNKS_PER_THREAD * num_threads(), n // max(grain,
  1))``: every chunk has at least ``grain`` iterations, so small loops (``n < 2 * grain``)
  and a thread count of one run inline in the calling thread.
* Chunk ``c`` is ``[c*q + min(c, r), (c+1)*q + min(c+1, r))`` with ``q, r = divmod(n, k)``:
  the split depends only on ``n``, ``grain`` and the thread count, never on timing.
* The calling thread runs chunk 0, then it and the pool's workers take the other chunks
  one at a time until none is left. Which thread runs which chunk depends on timing:
  on a busy machine a worker may not get a core in time, and then the caller runs more
  chunks itself instead of waiting for it.
* The body must be split-invariant: what it computes for iteration ``i`` must not depend
  on ``begin``/``end`` or on the thread. Chunks run concurrently, so bodies write
  disjoint memory. **Reductions are therefore never split by thread.** A kernel that
  reduces in parallel cuts its input into blocks of a size fixed when it is generated,
  lets ``tracegrad_parallel_for`` run over the blocks (iteration ``i`` reduces block
  ``i`` into ``partial[i]``), and then combines the partials in index order. The result
  has the same bits whatever the thread count (SPEC §4.3).
* Bodies must not call ``tracegrad_parallel_for`` themselves; the kernel generator
  parallelises the outermost loop only. (A nested or concurrent call, from another
  Python thread say, finds the pool taken and runs its loop inline: correct, not faster.)

The pool: ``num_threads() - 1`` workers, started with ``pthread_create`` the first time
they are needed (again in a forked child, which inherits none of them) and kept for the
life of the process. Between jobs a worker spins for 50-100 us, so the next loop of the
same program finds it awake (a loop then costs about 2 us more than a plain one), and
then sleeps on a futex: waking a sleeping thread costs about 100 us on a 2-core VM,
starting one 50-200 us. A ``grain`` should therefore make a chunk at least several
microseconds of work. Code about to run something that brings threads of its own (a large
OpenBLAS product) first calls ``tracegrad_pool_rest()``: idle workers then sleep at once
instead of spinning on the cores those threads need, until the next parallel loop wakes
them.

A worker that finishes far behind the caller's own pace (``LAG_SLACK_NS`` more than two
of the caller's chunks) had no core: another process has it. For ``CALM_NS`` after that,
loops run inline on the caller, twice as long after each lag in a row (up to
``MOST_CALM_NS``), so a machine that stays busy costs one wait per period, not one per
loop.

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
POOL_REST = "tracegrad_pool_rest"  # void(): idle workers stop spinning (see the docstring)
EXPORTED = (PARALLEL_FOR, POOL_REST)  # what generated code may call
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




# Per architecture: the futex system call's number and the spin-loop hint. Elsewhere an
# idle worker falls back to sched_yield() in a loop: correct, only busier.
_FUTEX_SYSCALL = {"x86_64": 202, "aarch64": 98}
_SPIN_HINT = {"x86_64": ("declare void @llvm.x86.sse2.pause()", "call void @llvm.x86.sse2.pause()"),
              "aarch64": ("declare void @llvm.aarch64.hint(i32)",
                          "call void @llvm.aarch64.hint(i32 1)")}  # hint 1 is YIELD
FUTEX_WAIT_PRIVATE = 128  # FUTEX_WAIT | FUTEX_PRIVATE_FLAG
FUTEX_WAKE_PRIVATE = 129  # FUTEX_WAKE | FUTEX_PRIVATE_FLAG
SPIN_ROUNDS = 4000  # spin-loop hints before a waiting thread sleeps (tens of microseconds)
LAG_SLACK_NS = 20_000  # a worker this much later than two of the caller's chunks lagged...
CALM_NS = 2_000_000  # ... and then loops run on the caller alone for this long, twice as
MOST_CALM_NS = 256_000_000  # long after each lag in a row, up to this
CHUNKS_PER_THREAD = 4  # more chunks than threads: a thread that lags leaves less undone
MOST_CHUNKS = 1 << 16  # the job word counts unclaimed chunks in 32 bits


def runtime_ir(triple: str) -> str:
    """The threading runtime's LLVM IR for a target triple (see the module docstring)."""
    arch = triple.split("-")[0]
    hint_declaration, hint = _SPIN_HINT.get(arch, ("", ""))
    futex = _FUTEX_SYSCALL.get(arch)
    if futex is None:
        sleep, wake = "  %yielded = call i32 @sched_yield()", ""
    else:
        sleep = (f"  %slept = call i64 (i64, ...) @syscall(i64 {futex}, ptr %word,"
                 f" i64 {FUTEX_WAIT_PRIVATE}, i64 %old.wide, ptr null)")
        wake = (f"  %woken = call i64 (i64, ...) @syscall(i64 {futex}, ptr %word,"
                f" i64 {FUTEX_WAKE_PRIVATE}, i64 2147483647)")
    fills = {"hint_declaration": hint_declaration, "spin_hint": hint, "sleep": sleep,
             "wake": wake, "spin_rounds": SPIN_ROUNDS, "chunks_per_thread": CHUNKS_PER_THREAD,
             "most_chunks": MOST_CHUNKS, "lag_slack_ns": LAG_SLACK_NS, "calm_ns": CALM_NS,
             "most_calm_ns": MOST_CALM_NS}
    text = _RUNTIME_IR
    for name, value in fills.items():
        text = text.replace("{" + name + "}", str(value))
    return text


_RUNTIME_IR = r"""
; tracegrad_parallel_for(body, ctx, n, grain) on a pool of persistent workers: see
; runtime/threads.py for the contract.
;
; A job is published in @work, one i64: the job's generation (high half) and how many of
; its chunks nobody has claimed yet (low half). A thread claims a chunk by compare-and-swap
; on the whole word, so a claim on a job that has moved on fails. The fields of @job are
; read before that swap: if it succeeds, the job still had chunks left while they were
; read, and the owner rewrites them only once every chunk is done.
%job = type { ptr, ptr, i64, i64, i64 }             ; body, ctx, q, r, k
%timespec = type { i64, i64 }                       ; seconds, nanoseconds

@tracegrad_num_threads = external global i64

@job = internal global %job zeroinitializer
@work = internal global i64 0                       ; generation << 32 | chunks unclaimed
@done = internal global i32 0                       ; chunks of the job finished
@done.sleepers = internal global i32 0              ; owners asleep on @done
@generation = internal global i32 0                 ; the newest job's, for workers to sleep on
@generation.sleepers = internal global i32 0        ; workers asleep on @generation
@owned = internal global i32 0                      ; 1 while a caller owns the pool
@workers = internal global i64 0                    ; pool threads started
@workers.pid = internal global i32 0                ; the process they belong to
@calm.until = internal global i64 0                 ; loops run inline until then (see below)
@calm.next = internal global i64 {calm_ns}          ; how long the next calm lasts
@resting = internal global i32 0                    ; 1: idle workers sleep without spinning

declare i32 @pthread_create(ptr, ptr, ptr, ptr)
declare i32 @pthread_detach(i64)                    ; pthread_t is unsigned long on Linux
declare i32 @getpid()
declare i32 @sched_yield()
declare i64 @syscall(i64, ...)
declare i32 @clock_gettime(i32, ptr)
{hint_declaration}

define internal i64 @tracegrad_chunk_begin(i64 %c, i64 %q, i64 %r) alwaysinline {
entry:
  %base = mul nsw i64 %c, %q
  %early = icmp slt i64 %c, %r                      ; the first r chunks get one more
  %extra = select i1 %early, i64 %c, i64 %r
  %begin = add nsw i64 %base, %extra
  ret i64 %begin
}

; Return once the word no longer holds %old: spin a while, then sleep on it. Sleepers are
; counted first and the word read again after, both seq_cst, so a notifier that changes
; the word and then reads the count cannot miss a thread on its way to sleep.
define internal void @tracegrad_await_change(ptr %word, i32 %old, ptr %sleepers) {
entry:
  %old.wide = zext i32 %old to i64
  br label %spin
spin:
  %round = phi i64 [ 0, %entry ], [ %round.next, %pause ]
  %now = load atomic i32, ptr %word seq_cst, align 4
  %changed = icmp ne i32 %now, %old
  br i1 %changed, label %done, label %pause
pause:
{spin_hint}
  %round.next = add nsw i64 %round, 1
  %rest = load atomic i32, ptr @resting monotonic, align 4
  %resting = icmp ne i32 %rest, 0
  %spun = icmp sge i64 %round.next, {spin_rounds}
  %stop = or i1 %resting, %spun
  br i1 %stop, label %sleep, label %spin
sleep:
  %counted = atomicrmw add ptr %sleepers, i32 1 seq_cst
  %now.counted = load atomic i32, ptr %word seq_cst, align 4
  %still = icmp eq i32 %now.counted, %old
  br i1 %still, label %wait, label %woke
wait:
{sleep}
  br label %woke
woke:
  %uncounted = atomicrmw sub ptr %sleepers, i32 1 seq_cst
  %now.woken = load atomic i32, ptr %word seq_cst, align 4
  %changed.woken = icmp ne i32 %now.woken, %old
  br i1 %changed.woken, label %done, label %sleep
done:
  ret void
}

; Idle workers: sleep now, do not spin (threads of a library are about to need the cores).
define void @tracegrad_pool_rest() {
entry:
  store atomic i32 1, ptr @resting monotonic, align 4
  ret void
}

; Wake whoever sleeps on the word (called after changing it).
define internal void @tracegrad_notify(ptr %word, ptr %sleepers) {
entry:
  %count = load atomic i32, ptr %sleepers seq_cst, align 4
  %anyone = icmp ne i32 %count, 0
  br i1 %anyone, label %wake, label %done
wake:
{wake}
  br label %done
done:
  ret void
}

; CLOCK_MONOTONIC in nanoseconds.
define internal i64 @tracegrad_now() {
entry:
  %time = alloca %timespec, align 8
  %failed = call i32 @clock_gettime(i32 1, ptr %time)
  %seconds = load i64, ptr %time, align 8
  %nanoseconds.p = getelementptr inbounds %timespec, ptr %time, i64 0, i32 1
  %nanoseconds = load i64, ptr %nanoseconds.p, align 8
  %whole = mul i64 %seconds, 1000000000
  %now = add i64 %whole, %nanoseconds
  ret i64 %now
}

; Claim and run the current job's chunks until none is left unclaimed; how many it ran.
define internal i64 @tracegrad_run_chunks() {
entry:
  br label %claim
claim:
  %ran = phi i64 [ 0, %entry ], [ %ran, %read ], [ %ran.next, %run ], [ %ran.next, %wake ]
  %word = load atomic i64, ptr @work seq_cst, align 8
  %left = and i64 %word, 4294967295
  %any = icmp ne i64 %left, 0
  br i1 %any, label %read, label %none
read:
  %body = load atomic ptr, ptr @job monotonic, align 8
  %ctx.p = getelementptr inbounds %job, ptr @job, i64 0, i32 1
  %ctx = load atomic ptr, ptr %ctx.p monotonic, align 8
  %q.p = getelementptr inbounds %job, ptr @job, i64 0, i32 2
  %q = load atomic i64, ptr %q.p monotonic, align 8
  %r.p = getelementptr inbounds %job, ptr @job, i64 0, i32 3
  %r = load atomic i64, ptr %r.p monotonic, align 8
  %k.p = getelementptr inbounds %job, ptr @job, i64 0, i32 4
  %k = load atomic i64, ptr %k.p monotonic, align 8
  %taken = sub i64 %word, 1
  %swap = cmpxchg ptr @work, i64 %word, i64 %taken seq_cst seq_cst
  %won = extractvalue { i64, i1 } %swap, 1
  br i1 %won, label %run, label %claim
run:
  %ran.next = add nsw i64 %ran, 1
  %c = sub nsw i64 %k, %left
  %begin = call i64 @tracegrad_chunk_begin(i64 %c, i64 %q, i64 %r)
  %c.next = add nsw i64 %c, 1
  %end = call i64 @tracegrad_chunk_begin(i64 %c.next, i64 %q, i64 %r)
  call void %body(ptr %ctx, i64 %begin, i64 %end)
  %finished.before = atomicrmw add ptr @done, i32 1 seq_cst
  %finished = add i32 %finished.before, 1
  %k.narrow = trunc i64 %k to i32
  %all = icmp eq i32 %finished, %k.narrow
  br i1 %all, label %wake, label %claim
wake:
  call void @tracegrad_notify(ptr @done, ptr @done.sleepers)
  br label %claim
none:
  ret i64 %ran
}

; A pool thread. Its argument is the generation it was started at: a job published
; before it first looks must still count as new.
define internal ptr @tracegrad_worker(ptr %arg) {
entry:
  %start.wide = ptrtoint ptr %arg to i64
  %start = trunc i64 %start.wide to i32
  br label %idle
idle:
  %seen = phi i32 [ %start, %entry ], [ %now, %idle ]
  call void @tracegrad_await_change(ptr @generation, i32 %seen, ptr @generation.sleepers)
  %now = load atomic i32, ptr @generation seq_cst, align 4
  %ran = call i64 @tracegrad_run_chunks()
  br label %idle
}

define void @tracegrad_parallel_for(ptr %body, ptr %ctx, i64 %n, i64 %grain) {
entry:
  %tid = alloca i64, align 8
  %empty = icmp slt i64 %n, 1
  br i1 %empty, label %exit, label %count
count:
  %grain.big = icmp sgt i64 %grain, 1
  %g = select i1 %grain.big, i64 %grain, i64 1
  %most = sdiv i64 %n, %g                           ; every chunk gets >= grain iterations
  %threads = load i64, ptr @tracegrad_num_threads, align 8
  %split = mul nsw i64 %threads, {chunks_per_thread}
  %fewer = icmp slt i64 %most, %split
  %k.wanted = select i1 %fewer, i64 %most, i64 %split
  %too.many = icmp sgt i64 %k.wanted, {most_chunks}
  %k = select i1 %too.many, i64 {most_chunks}, i64 %k.wanted
  %several.threads = icmp sgt i64 %threads, 1
  %several.chunks = icmp sgt i64 %k, 1
  %parallel = and i1 %several.threads, %several.chunks
  br i1 %parallel, label %calm, label %inline
calm:                                               ; a worker lagged lately: go alone
  %now = call i64 @tracegrad_now()
  %calm.end = load atomic i64, ptr @calm.until monotonic, align 8
  %calming = icmp slt i64 %now, %calm.end
  br i1 %calming, label %inline, label %claim
claim:                                              ; another caller has the pool: go alone
  %claimed = cmpxchg ptr @owned, i32 0, i32 1 seq_cst seq_cst
  %owner = extractvalue { i32, i1 } %claimed, 1
  br i1 %owner, label %check, label %inline
inline:
  call void %body(ptr %ctx, i64 0, i64 %n)
  br label %exit
check:                                              ; a forked child has none of the threads
  %pid = call i32 @getpid()
  %pool.pid = load i32, ptr @workers.pid, align 4
  %same = icmp eq i32 %pid, %pool.pid
  br i1 %same, label %grow, label %forked
forked:
  store i64 0, ptr @workers, align 8
  store i32 %pid, ptr @workers.pid, align 4
  store atomic i32 0, ptr @generation.sleepers seq_cst, align 4  ; they were the parent's
  store atomic i32 0, ptr @done.sleepers seq_cst, align 4
  br label %grow
grow:                                               ; one worker per thread but the caller's
  %have = load i64, ptr @workers, align 8
  %threads.used = select i1 %fewer, i64 %k, i64 %threads
  %want = sub nsw i64 %threads.used, 1
  %short = icmp slt i64 %have, %want
  br i1 %short, label %spawn, label %publish
spawn:
  %generation.now = load atomic i32, ptr @generation seq_cst, align 4
  %generation.wide = zext i32 %generation.now to i64
  %arg = inttoptr i64 %generation.wide to ptr
  %error = call i32 @pthread_create(ptr %tid, ptr null, ptr @tracegrad_worker, ptr %arg)
  %started = icmp eq i32 %error, 0
  br i1 %started, label %keep, label %publish       ; none to be had: fewer threads work
keep:
  %thread = load i64, ptr %tid, align 8
  %detached = call i32 @pthread_detach(i64 %thread)
  %have.next = add nsw i64 %have, 1
  store i64 %have.next, ptr @workers, align 8
  br label %grow
publish:
  %q = sdiv i64 %n, %k
  %r = srem i64 %n, %k
  store atomic ptr %body, ptr @job monotonic, align 8
  %job.ctx = getelementptr inbounds %job, ptr @job, i64 0, i32 1
  store atomic ptr %ctx, ptr %job.ctx monotonic, align 8
  %job.q = getelementptr inbounds %job, ptr @job, i64 0, i32 2
  store atomic i64 %q, ptr %job.q monotonic, align 8
  %job.r = getelementptr inbounds %job, ptr @job, i64 0, i32 3
  store atomic i64 %r, ptr %job.r monotonic, align 8
  %job.k = getelementptr inbounds %job, ptr @job, i64 0, i32 4
  store atomic i64 %k, ptr %job.k monotonic, align 8
  store atomic i32 1, ptr @done seq_cst, align 4    ; chunk 0: the caller's, counted now
  %generation.old = load atomic i32, ptr @generation seq_cst, align 4
  %generation.new = add i32 %generation.old, 1
  %generation.high = zext i32 %generation.new to i64
  %generation.shifted = shl i64 %generation.high, 32
  %unclaimed = sub nsw i64 %k, 1
  %word = or i64 %generation.shifted, %unclaimed
  store atomic i64 %word, ptr @work seq_cst, align 8
  store atomic i32 0, ptr @resting monotonic, align 4
  store atomic i32 %generation.new, ptr @generation seq_cst, align 4
  call void @tracegrad_notify(ptr @generation, ptr @generation.sleepers)
  %start = call i64 @tracegrad_now()
  %end0 = call i64 @tracegrad_chunk_begin(i64 1, i64 %q, i64 %r)
  call void %body(ptr %ctx, i64 0, i64 %end0)
  %ran = call i64 @tracegrad_run_chunks()
  %own.done = call i64 @tracegrad_now()
  %k.narrow = trunc i64 %k to i32
  br label %join
join:
  %finished = load atomic i32, ptr @done seq_cst, align 4
  %all = icmp eq i32 %finished, %k.narrow
  br i1 %all, label %release, label %wait
wait:
  call void @tracegrad_await_change(ptr @done, i32 %finished, ptr @done.sleepers)
  br label %join
release:
  ; A worker that is this far behind the caller's own pace was not running (another
  ; process has its core): for a while, do not wait for threads that have no core. Each
  ; lag in a row doubles the while, so a machine that stays busy costs one lag per
  ; MOST_CALM_NS; a loop without lag starts the doubling over.
  %all.done = call i64 @tracegrad_now()
  %own = add nsw i64 %ran, 1
  %own.ns = sub i64 %own.done, %start
  %per.chunk = sdiv i64 %own.ns, %own
  %lag = sub i64 %all.done, %own.done
  %twice = mul i64 %per.chunk, 2
  %bound = add i64 %twice, {lag_slack_ns}
  %lagged = icmp sgt i64 %lag, %bound
  br i1 %lagged, label %back.off, label %steady
back.off:
  %calm.length = load i64, ptr @calm.next, align 8
  %calm.new = add i64 %all.done, %calm.length
  store atomic i64 %calm.new, ptr @calm.until monotonic, align 8
  %calm.doubled = shl i64 %calm.length, 1
  %calm.long = icmp sgt i64 %calm.doubled, {most_calm_ns}
  %calm.capped = select i1 %calm.long, i64 {most_calm_ns}, i64 %calm.doubled
  store i64 %calm.capped, ptr @calm.next, align 8
  br label %free
steady:
  store i64 {calm_ns}, ptr @calm.next, align 8
  br label %free
free:
  store atomic i32 0, ptr @owned seq_cst, align 4
  br label %exit
exit:
  ret void
}
"""
