"""`t.data = ...` gives `t` other memory. As in PyTorch, views made before keep the memory
they had: an in-place write to one of them no longer reaches the other, in eager mode
(`inplace._rebase`, `inplace._refresh_views`) and in a compiled call, which derives a view
it holds from its base (or the base from the view) only while they still are one memory
(`Tensor._unlink_views`, `compiled_variant._held_views`).

Each scenario is a function holding tensors that are views of one another; between two of
its calls `.data` of one of them is replaced. PyTorch, when installed, is the reference
for eager mode; a compiled function must do what eager does.
"""

from __future__ import annotations

import pytest

import tracegrad

CALLS = 5
SWAPPED_BEFORE_CALL = 2


def base_written(lib):
    """The function writes the base and reads a view of it it holds."""
    w = lib.arange(4.0)
    v = w[0:2]

    def f():
        w.add_(1.0)
        return v * 1.0

    return {"w": w, "v": v}, f, ()


def view_written(lib):
    """The function writes a view and reads the base it holds."""
    w = lib.arange(4.0)
    v = w[0:2]

    def f():
        v.add_(1.0)
        return w * 1.0

    return {"w": w, "v": v}, f, ()


def view_of_a_view_written(lib):
    """The function holds only `v`, a view of `u`, itself a view of `w`: a write to `v`
    reaches both bases while each link holds."""
    w = lib.arange(6.0)
    u = w[0:4]
    v = u[1:3]

    def f():
        v.mul_(2.0)
        return v * 1.0

    return {"w": w, "u": u, "v": v}, f, ()


def argument_view_written(lib):
    """The function is passed a view of the base it holds, writes it, reads the base."""
    w = lib.arange(4.0)
    v = w[0:2]

    def f(x):
        x.add_(1.0)
        return w * 1.0

    return {"w": w, "v": v}, f, (v,)


def run(scenario, lib, swapped: str, compiled: bool = False):
    """Per call: the result and every tensor's values, `.data` of `swapped` replaced by
    zeros before call SWAPPED_BEFORE_CALL."""
    tensors, f, args = scenario(lib)
    if compiled:
        f = lib.compile(f)
    seen = []
    for i in range(CALLS):
        if i == SWAPPED_BEFORE_CALL:
            tensors[swapped].data = lib.zeros(tuple(tensors[swapped].shape))
        result = f(*args)
        seen.append((result.tolist(), {name: t.tolist() for name, t in tensors.items()}))
    return seen, f


CASES = [(base_written, "w"), (base_written, "v"), (view_written, "w"), (view_written, "v"),
         (view_of_a_view_written, "w"), (view_of_a_view_written, "u"),
         (view_of_a_view_written, "v"), (argument_view_written, "w"),
         (argument_view_written, "v")]
IDS = [f"{scenario.__name__}-{swapped}.data" for scenario, swapped in CASES]


@pytest.mark.parametrize(("scenario", "swapped"), CASES, ids=IDS)
def test_compiled_calls_match_eager_after_data_is_replaced(scenario, swapped):
    eager, _ = run(scenario, tracegrad, swapped)
    compiled, _ = run(scenario, tracegrad, swapped, compiled=True)
    for i, (got, expected) in enumerate(zip(compiled, eager)):
        assert got == expected, f"call {i}"


@pytest.mark.parametrize(("scenario", "swapped"), CASES, ids=IDS)
def test_compiled_calls_match_pytorch_after_data_is_replaced(scenario, swapped):
    torch = pytest.importorskip("torch")
    reference, _ = run(scenario, torch, swapped)
    compiled, _ = run(scenario, tracegrad, swapped, compiled=True)
    for i, (got, expected) in enumerate(zip(compiled, reference)):
        assert got == expected, f"call {i}"


def test_a_view_of_a_view_whose_base_data_is_replaced_is_still_compiled():
    # `w.data = ...` ends u's relation with w only: v still shares u's memory, so the
    # trace after the swap follows v -> u and needs no eager fallback
    eager, _ = run(view_of_a_view_written, tracegrad, "w")
    seen, compiled = run(view_of_a_view_written, tracegrad, "w", compiled=True)
    assert seen == eager
    assert compiled.fallback_reason is None
    assert len(compiled.variants) == 2  # the one traced before the swap was refused


def recorded_write(lib, swapped: str):
    """While autograd records, `.data` of a view or of its base is replaced by an array of
    another size, then the view is written in place: its base keeps its values."""
    a = lib.arange(4.0, requires_grad=True)
    t = a * 1.0
    v = t[2:4]
    if swapped == "view":
        v.data = lib.zeros(3)
    else:
        t.data = lib.zeros(2)
    v.add_(1.0)
    return t.tolist(), v.tolist()


RECORDED = {"view": ([0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0]),
            "base": ([0.0, 0.0], [3.0, 4.0])}  # what PyTorch 2.13 gives


@pytest.mark.parametrize("swapped", sorted(RECORDED))
def test_a_recorded_write_to_a_view_after_data_is_replaced_leaves_the_base(swapped):
    assert recorded_write(tracegrad, swapped) == RECORDED[swapped]


@pytest.mark.parametrize("swapped", sorted(RECORDED))
def test_a_recorded_write_after_data_is_replaced_matches_pytorch(swapped):
    torch = pytest.importorskip("torch")
    assert recorded_write(tracegrad, swapped) == recorded_write(torch, swapped)


@pytest.mark.filterwarnings("ignore:tracegrad.compile")  # (it says it runs eagerly)
def test_data_replaced_inside_a_compiled_function_runs_it_eagerly():
    def reset_then_double(x):
        x.data = tracegrad.zeros(4)
        return x * 2.0

    compiled = tracegrad.compile(reset_then_double)
    for _ in range(3):
        eager_x, compiled_x = tracegrad.arange(4.0), tracegrad.arange(4.0)
        assert compiled(compiled_x).tolist() == reset_then_double(eager_x).tolist()
        assert compiled_x.tolist() == eager_x.tolist()
    assert "`.data = ...` replaces a tensor's memory" in compiled.fallback_reason
