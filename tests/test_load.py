"""Load: many threads, many calls, and memory that is given back.

* A compiled function called from several Python threads at once gives eager's result on
  every call: each call runs in a buffer table and arena of its own (native code runs
  without the GIL), and threads that call with a new signature at once trace it once.
* Ten thousand compiled calls or eager training steps leave the process no bigger and
  hold no more Python objects than after the first few hundred.
* The autograd graph and the values it saved for backward are freed by reference counting
  alone: by `backward()` (saved values) and when the last tensor of the graph dies (nodes).
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import weakref

import numpy as np
import pytest

import tracegrad

nn = tracegrad.nn
F = nn.functional
THREADS, CALLS = 4, 200


def in_threads(work, count: int = THREADS) -> list:
    """Run `work(thread_index)` in `count` threads started together; re-raise a failure."""
    barrier = threading.Barrier(count)
    results, errors = [None] * count, []

    def run(index):
        try:
            barrier.wait()
            results[index] = work(index)
        except BaseException as error:  # noqa: BLE001 - reported in the main thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def arrays(seed: int, *shapes) -> list:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for shape in shapes]


# --- threads ----------------------------------------------------------------------------

def layer(x, w):
    return ((x @ w).tanh() * 2 + x.mean(1, keepdim=True)).relu().sum(1)


def test_threads_calling_one_compiled_function_get_eager_results():
    w = tracegrad.tensor(arrays(99, (64, 64))[0])
    inputs = [tracegrad.tensor(a) for a in arrays(0, *[(32, 64)] * 16)]
    expected = [layer(x, w).numpy() for x in inputs]
    compiled = tracegrad.compile(layer)

    def work(thread):  # the first calls of all threads come at once: one trace
        for call in range(CALLS):
            k = (call * 7 + thread * 3) % len(inputs)
            np.testing.assert_allclose(compiled(inputs[k], w).numpy(), expected[k], rtol=2e-5,
                                       atol=2e-5)

    in_threads(work)
    assert len(compiled.variants) == 1 and compiled.fallback_reason is None
    program = compiled.variants[0].trace.program.native
    assert program is not None and len(program._states) <= THREADS  # one arena per caller


def rows(x):
    """Big enough that its kernels split their rows over the cores: threads in threads."""
    return ((x * 2).tanh() + x.mean(1, keepdim=True)).relu().sum(1)


def test_threads_calling_a_function_whose_kernels_run_in_parallel():
    inputs = [tracegrad.tensor(a) for a in arrays(3, *[(1024, 1024)] * 4)]
    expected = [rows(x).numpy() for x in inputs]
    compiled = tracegrad.compile(rows)
    compiled(inputs[0])
    assert '@"tracegrad_parallel_for"(' in compiled.variants[0].trace.program.native.ir

    def work(thread):
        for call in range(CALLS // 8):
            k = (call + thread) % len(inputs)
            np.testing.assert_allclose(compiled(inputs[k]).numpy(), expected[k], rtol=2e-5,
                                       atol=2e-5)

    in_threads(work)
    assert len(compiled.variants) == 1 and compiled.fallback_reason is None


def test_threads_running_compiled_backward_get_eager_gradients():
    w = tracegrad.tensor(arrays(98, (16, 8))[0])

    def loss_fn(x):
        return ((x @ w).sigmoid() * x.sum(1, keepdim=True)).pow(2).mean()

    compiled = tracegrad.compile(loss_fn)
    data = arrays(1, *[(32, 16)] * 8)
    expected = []
    for a in data:
        x = tracegrad.tensor(a, requires_grad=True)
        loss = loss_fn(x)
        loss.backward()
        expected.append((loss.item(), x.grad.numpy()))

    def work(thread):
        for call in range(CALLS):
            k = (call + thread) % len(data)
            x = tracegrad.tensor(data[k], requires_grad=True)
            loss = compiled(x)
            loss.backward()
            np.testing.assert_allclose(loss.item(), expected[k][0], rtol=1e-5)
            np.testing.assert_allclose(x.grad.numpy(), expected[k][1], rtol=1e-4, atol=1e-6)

    in_threads(work)
    assert len(compiled.variants) == 1 and compiled.fallback_reason is None


def test_threads_taking_different_branches_each_get_their_own():
    def signed(x):
        if x.sum() > 0:  # a value guard: the branch is checked on every call
            return x * 2
        return x - 1

    compiled = tracegrad.compile(signed)
    data = [np.abs(a) + 0.1 if i % 2 else -np.abs(a) - 0.1
            for i, a in enumerate(arrays(2, *[(8,)] * 10))]

    def work(thread):
        for call in range(CALLS):
            a = data[(call + thread) % len(data)]
            want = a * 2 if a.sum() > 0 else a - 1
            np.testing.assert_allclose(compiled(tracegrad.tensor(a)).numpy(), want, rtol=1e-6)

    in_threads(work)
    assert len(compiled.variants) == 2 and compiled.fallback_reason is None


def test_threads_with_their_own_shapes_trace_one_variant_each():
    compiled = tracegrad.compile(lambda x: (x * 3).exp().sum(0))
    shapes = [(3, 5), (4, 5), (5, 5), (6, 5)]

    def work(thread):
        for call in range(CALLS // 4):
            (a,) = arrays(call, shapes[(thread + call) % len(shapes)])
            np.testing.assert_allclose(compiled(tracegrad.tensor(a)).numpy(),
                                       np.exp(a * 3).sum(0), rtol=1e-5)

    in_threads(work)
    assert len(compiled.variants) == len(shapes) and compiled.fallback_reason is None


# --- no growth over many calls --------------------------------------------------------------

def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def growth(run, calls: int = 10_000, warmup: int = 300) -> tuple[int, int]:
    """(bytes of resident memory, Python memory blocks) that `calls` more calls of `run`
    added after `warmup` calls."""
    for _ in range(warmup):
        run()
    gc.collect()
    rss, blocks = resident_bytes(), sys.getallocatedblocks()
    for _ in range(calls):
        run()
    gc.collect()
    return resident_bytes() - rss, sys.getallocatedblocks() - blocks


MB = 1 << 20


def tiny_training(seed: int = 0):
    tracegrad.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = tracegrad.optim.Adam(model.parameters(), lr=1e-3)
    x, y = tracegrad.randn(8, 4), tracegrad.randint(0, 3, (8,))

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def test_ten_thousand_eager_training_steps_do_not_grow():
    rss, blocks = growth(tiny_training())
    assert rss < 4 * MB and blocks < 1000, (rss, blocks)


def test_ten_thousand_compiled_training_steps_do_not_grow():
    compiled = tracegrad.compile(tiny_training())
    rss, blocks = growth(compiled)
    assert rss < 4 * MB and blocks < 1000, (rss, blocks)
    assert len(compiled.variants) == 1 and len(compiled.events) == 2  # nothing piles up


def test_ten_thousand_compiled_calls_with_backward_do_not_grow():
    w = tracegrad.randn(6, 6, requires_grad=True)
    compiled = tracegrad.compile(lambda x: (x @ w).tanh().sum())
    x = tracegrad.randn(5, 6)

    def call():
        w.grad = None
        compiled(x).backward()

    rss, blocks = growth(call)
    assert rss < 4 * MB and blocks < 1000, (rss, blocks)
    assert len(compiled.variants) == 1


# --- the graph is freed when its tensors die -------------------------------------------------

def saved_values(node) -> list:
    """Weak references to every node reachable from `node` and to the arrays they saved."""
    refs, seen, stack = [], set(), [node]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        refs.append(weakref.ref(node))
        for kept in [*(getattr(node, "inputs", None) or ()), getattr(node, "out", None),
                     *(getattr(node, "saved", None) or ())]:
            if isinstance(kept, np.ndarray):
                refs.append(weakref.ref(kept))
            elif isinstance(kept, tracegrad.Tensor):
                refs.append(weakref.ref(kept._data))
        stack += [edge[0] for edge in node.edges or () if edge is not None]
    return refs


def alive(refs) -> list:
    return [ref() for ref in refs if ref() is not None]


@pytest.fixture
def no_cycle_collector():
    """Only reference counting frees memory here: a graph that needs the cycle collector
    to go away would stay until some later collection."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()


@pytest.mark.parametrize("compiled, calls", [(False, 1), (True, 1), (True, 3)],
                         ids=["eager", "compiled, the traced call", "compiled, native"])
def test_backward_frees_saved_values_and_the_last_tensor_frees_the_graph(no_cycle_collector,
                                                                         compiled, calls):
    tracegrad.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(x):
        return model(x).exp().sum()

    forward = tracegrad.compile(forward) if compiled else forward
    for _ in range(calls):  # the last call's graph is looked at
        x = tracegrad.randn(64, 32)
        loss = forward(x)
    owned = {id(x._data), *(id(p._data) for p in model.parameters())}  # alive anyway
    refs = saved_values(loss.grad_fn)
    activations = [ref for ref in refs if isinstance(ref(), np.ndarray) and id(ref()) not in
                   owned and ref().size >= 64 * 16]
    assert activations, "the forward saved activations for backward"
    loss.backward()
    assert alive(activations) == []  # backward freed them, though `loss` is alive
    del loss
    assert [o for o in alive(refs) if id(o) not in owned] == [], \
        "nodes or saved values outlived the last tensor of the graph"


def test_dropping_an_unused_graph_frees_it_without_backward(no_cycle_collector):
    x = tracegrad.randn(256, 256, requires_grad=True)
    y = (x.exp() * 2).sigmoid().sum()
    refs = saved_values(y.grad_fn)
    node, saved = weakref.ref(y.grad_fn), [r for r in refs if isinstance(r(), np.ndarray)]
    assert saved
    del y
    assert node() is None and [a for a in alive(saved) if a is not x._data] == []


def test_a_tensor_saved_for_backward_lives_only_as_long_as_the_graph(no_cycle_collector):
    x = tracegrad.randn(100, requires_grad=True)
    middle = x.exp()  # ExpBackward saves its output: this tensor's memory
    kept = weakref.ref(middle._data)
    loss = (middle * middle).sum()  # MulBackward saves both inputs: `middle` itself
    del middle
    assert kept() is not None  # the graph still needs it
    loss.backward()
    assert kept() is None  # backward released it, though `loss` is alive
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp(2 * x.detach().numpy()), rtol=1e-5)
