"""`tracegrad.compile` against eager mode when a call's tensors share memory otherwise than
they did when the function was traced (SPEC §4.2: in-place writes are written back).

A trace follows the memory its tensors share: an argument that is a slice of another
tensor and is written in place changes that tensor too (`inplace._rebase`), and views of
what was written see the new values (`inplace._refresh_views`). A later call may pass a
slice of another tensor, or at another index, or pass as an argument the very tensor the
function also holds itself, or a `.grad` may have become a tensor the function writes: the
compiled call must still do what eager does, or be refused and traced anew.

`TRACEGRAD_ALIASING_SEEDS=200` runs more random sequences.
"""

from __future__ import annotations

import functools
import os
import warnings

import numpy as np
import pytest

import tracegrad as torch

SEEDS = int(os.environ.get("TRACEGRAD_ALIASING_SEEDS", "25"))


def assert_same(compiled, eager, what: str) -> None:
    np.testing.assert_allclose(np.asarray(compiled.detach().numpy()),
                               np.asarray(eager.detach().numpy()), rtol=1e-6, err_msg=what)


def test_a_slice_written_in_place_changes_the_tensor_it_is_a_slice_of_on_this_call():
    def add_one(x):
        x.add_(1.0)
        return x * 2.0

    compiled = torch.compile(add_one)
    tensors = {mode: (torch.zeros(6), torch.zeros(6)) for mode in ("eager", "compiled")}
    calls = [(0, slice(0, 2)), (1, slice(2, 4)), (1, slice(2, 4)), (0, slice(2, 4)),
             (1, slice(0, 2)), (0, slice(0, 2))]
    for i, (which, index) in enumerate(calls):
        results = {mode: fn(tensors[mode][which][index])
                   for mode, fn in (("eager", add_one), ("compiled", compiled))}
        assert_same(results["compiled"], results["eager"], f"call {i}: the result")
        for k in range(2):
            assert_same(tensors["compiled"][k], tensors["eager"][k], f"call {i}: tensor {k}")
    assert compiled.fallback_reason is None


def test_a_slice_of_a_slice_written_in_place_reaches_both_bases():
    def scale(x):
        x.mul_(3.0)

    compiled = torch.compile(scale)
    for mode, fn in (("eager", scale), ("compiled", compiled)):
        bases = [torch.arange(8.0), torch.arange(8.0) + 10.0]
        for i in range(4):
            fn(bases[i % 2][1:7][2:4])
        if mode == "eager":
            expected = [b.clone() for b in bases]
        else:
            for k, (got, want) in enumerate(zip(bases, expected)):
                assert_same(got, want, f"base {k}")
    assert len(compiled.variants) == 1


def test_slices_taken_from_a_tensor_each_call_share_one_variant():
    """A batch sliced afresh from the same data each call, as a training loop does: the
    slice's base plays no part unless it is written."""
    data = torch.arange(64.0).reshape(8, 8)

    @torch.compile
    def total(x):
        return (x * 2.0).sum()

    for i in range(4):
        assert total(data[2 * i:2 * i + 2]).item() == (data[2 * i:2 * i + 2] * 2.0).sum().item()
    assert len(total.variants) == 1


def _twins(make):
    """(eager, compiled) of `make()`'s (state, function): two copies of the same state."""
    eager_state, eager_fn = make()
    compiled_state, compiled_fn = make()
    return eager_state, eager_fn, compiled_state, torch.compile(compiled_fn)


@pytest.mark.parametrize("held", [[False, True, False, True], [True, False, False, False]],
                         ids=["later", "when traced"])
def test_an_argument_that_is_the_tensor_the_function_holds_itself(held):
    def make():
        w = torch.ones(3)

        def f(x):
            x.add_(1.0)
            return x * 1.0 + w * 10.0

        return w, f

    eager_w, eager_f, compiled_w, compiled_f = _twins(make)
    for i, same in enumerate(held):
        got = compiled_f(compiled_w if same else torch.zeros(3))
        want = eager_f(eager_w if same else torch.zeros(3))
        assert_same(got, want, f"call {i}: the result")
        assert_same(compiled_w, eager_w, f"call {i}: w")


def test_an_argument_that_is_later_a_slice_of_a_tensor_the_function_reads():
    def make():
        w = torch.arange(4.0)

        def f(x):
            x.add_(1.0)
            return x * 1.0 + w[:2] * 10.0

        return w, f

    eager_w, eager_f, compiled_w, compiled_f = _twins(make)
    for i, index in enumerate([None, slice(0, 2), slice(2, 4), slice(1, 3), None,
                               slice(0, 2)]):
        got = compiled_f(torch.zeros(2) if index is None else compiled_w[index])
        want = eager_f(torch.zeros(2) if index is None else eager_w[index])
        assert_same(got, want, f"call {i}: the result")
        assert_same(compiled_w, eager_w, f"call {i}: w")


def test_arguments_that_are_later_views_of_one_another():
    def f(a, b):
        a.add_(1.0)
        return b * 2.0

    compiled = torch.compile(f)
    for i in range(4):
        results, tensors = {}, {}
        for mode, fn in (("eager", f), ("compiled", compiled)):
            a = torch.arange(4.0)
            b = torch.zeros(2) if i % 2 == 0 else a[1:3]
            results[mode], tensors[mode] = fn(a, b), a
        assert_same(results["compiled"], results["eager"], f"call {i}: the result")
        assert_same(tensors["compiled"], tensors["eager"], f"call {i}: a")


@pytest.mark.parametrize("how", ["from_numpy on one array", "detach"])
def test_tensors_that_share_memory_without_being_views_run_eagerly(how):
    """Neither is a view of the other, so an in-place write to one cannot be followed into
    the other: the function runs eagerly, with a warning that says why."""
    held = torch.ones(4)

    def f(x, y):
        x.add_(1.0)
        return y * 2.0 + held.sum()

    compiled = torch.compile(f)
    for mode, fn in (("eager", f), ("compiled", compiled)):
        results = []
        for _ in range(3):
            memory = np.zeros(4, np.float32)
            if how == "detach":
                y = torch.tensor(memory)
                x = y.detach()
            else:
                x, y = torch.from_numpy(memory[0:2]), torch.from_numpy(memory[1:3])
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                results.append((fn(x, y).numpy().copy(), y.numpy().copy()))
            if mode == "compiled" and not results[1:]:
                assert any("share memory" in str(w.message) for w in caught), how
        if mode == "eager":
            expected = results
    for k, ((got, got_y), (want, want_y)) in enumerate(zip(results, expected)):
        np.testing.assert_allclose(got, want, err_msg=f"call {k}: the result")
        np.testing.assert_allclose(got_y, want_y, err_msg=f"call {k}: y")
    assert "share memory" in compiled.fallback_reason


def test_a_view_the_function_holds_of_the_base_of_a_slice_it_is_given():
    """The function holds `w`, a view of B, and writes a slice of B it is given: on a call
    with a slice of another tensor, `w` stays B's."""
    def make():
        b, c = torch.zeros(6), torch.ones(6) * 5.0
        w = b[0:3]

        def f(x):
            x.add_(1.0)
            return w * 1.0

        return (b, c), f

    (eager_b, eager_c), eager_f, (compiled_b, compiled_c), compiled_f = _twins(make)
    for i in range(4):
        want = eager_f((eager_b if i < 2 else eager_c)[2:4])
        got = compiled_f((compiled_b if i < 2 else compiled_c)[2:4])
        assert_same(got, want, f"call {i}")
        assert_same(compiled_c, eager_c, f"call {i}: the other tensor")


@pytest.mark.filterwarnings("ignore:tracegrad.compile")  # (overlapping: runs eagerly)
@pytest.mark.parametrize("how", ["slices apart, then overlapping", "as_strided"])
def test_arguments_on_one_array_that_overlap_otherwise_than_when_traced(how):
    def f(x, y):
        x.add_(1.0)
        return y * 2.0

    compiled = torch.compile(f)
    for i in range(4):
        results = []
        for fn in (f, compiled):
            memory = np.zeros(6, np.float32)
            if how == "as_strided":  # its .base is a helper object, whose .base is memory
                y = np.lib.stride_tricks.as_strided(memory, shape=(2,), strides=(4,))
            else:
                y = memory[2:4] if i < 2 else memory[1:3]
            results.append(fn(torch.from_numpy(memory[0:2]), torch.from_numpy(y)))
        assert_same(results[1], results[0], f"{how}, call {i}")


def test_a_function_that_writes_nothing_keeps_one_variant_for_slices_of_what_it_reads():
    data = torch.arange(1024.0).reshape(256, 4)

    @torch.compile
    def centred(x):
        return (x - data.mean(0)).sum()

    for i in range(12):
        batch = data[i * 16:(i + 1) * 16]
        assert_same(centred(batch), (batch - data.mean(0)).sum(), f"call {i}")
    assert len(centred.variants) == 1


def test_a_result_that_is_an_argument_before_it_is_written_keeps_its_old_values():
    def f(x):
        y = x * 1.0  # (the graph returns its input x here)
        x.add_(1.0)
        return y

    compiled = torch.compile(f)
    for i in range(3):
        eager_x, compiled_x = torch.full((3,), float(i)), torch.full((3,), float(i))
        assert_same(compiled(compiled_x), f(eager_x), f"call {i}: the result")
        assert_same(compiled_x, eager_x, f"call {i}: x")

# --- random programs on random sharing ------------------------------------------------------

def random_program(rng) -> list:
    """Steps of a function of two (2,)-shaped arguments x, y that also holds a (6,)-shaped
    w: in-place writes to the arguments, to w and to slices of w, and reads of all three."""
    kinds = ["x +=", "y *=", "w[j] += x", "w *=", "read x", "read y", "read w[j]"]
    steps = [(kinds[rng.integers(len(kinds))], int(rng.integers(5)),
              float(rng.uniform(0.5, 1.5))) for _ in range(int(rng.integers(2, 7)))]
    return steps + [("read x", 0, 1.0)]


def run_program(steps: list, w, x, y):
    result = torch.zeros(2)
    for kind, j, c in steps:
        if kind == "x +=":
            x.add_(c)
        elif kind == "y *=":
            y.mul_(c)
        elif kind == "w[j] += x":
            w[j:j + 2].add_(x)
        elif kind == "w *=":
            w.mul_(c)
        else:
            read = {"read x": x, "read y": y}.get(kind)
            result = result + c * (w[j:j + 2] if read is None else read)
    return result


def call_arguments(choice: tuple, w, other, fresh: list):
    """The arguments a call passes, by kind: a new tensor, a slice of w (the function's own),
    a slice of another tensor, or x again."""
    made = []
    for kind, j in choice:
        made.append(fresh[len(made)] if kind == "new" else w[j:j + 2] if kind == "w" else
                    other[j:j + 2] if kind == "other" else made[0])
    return made


@pytest.mark.parametrize("seed", range(SEEDS))
def test_random_programs_follow_eager_whatever_their_arguments_share(seed):
    rng = np.random.default_rng(seed)
    steps = random_program(rng)
    kinds = [("new", 0), ("w", 0), ("other", 0), ("same", 0)]
    calls = []
    for _ in range(8):
        x_kind = kinds[rng.integers(3)][0]
        y_kind = kinds[rng.integers(4)][0]
        calls.append(((x_kind, int(rng.integers(5))), (y_kind, int(rng.integers(5)))))
    state = {}
    for mode in ("eager", "compiled"):
        w, other = torch.arange(6.0) * 0.25, torch.arange(6.0) * -0.5
        fn = functools.partial(run_program, steps, w)
        state[mode] = (w, other, torch.compile(fn) if mode == "compiled" else fn)
    for i, choice in enumerate(calls):
        fresh = [rng.uniform(-1, 1, 2).astype(np.float32) for _ in range(2)]
        results = {}
        for mode, (w, other, fn) in state.items():
            results[mode] = fn(*call_arguments(choice, w, other,
                                               [torch.tensor(a) for a in fresh]))
        what = f"seed {seed}, program {steps}, call {i} with {choice}"
        assert_same(results["compiled"], results["eager"], f"{what}: the result")
        for k, name in enumerate(("w", "the other tensor")):
            assert_same(state["compiled"][k], state["eager"][k], f"{what}: {name}")


@pytest.mark.parametrize("written", [True, False])
def test_an_input_returned_as_it_is_comes_back_itself(written):
    """`x.add_(1); return x` returns `x` itself in eager mode, so what the caller does to
    the result next (an in-place write) reaches `x`; so must a compiled call's, for an
    argument, a tensor the function holds, and one returned twice."""
    def make():
        held = torch.ones(3)

        def f(x):
            if written:
                x.add_(1.0)
                held.mul_(2.0)
            return x, held * 1.0, held, x

        return held, f

    eager_held, eager_f, compiled_held, compiled_f = _twins(make)
    for i in range(3):
        outcomes = []
        for f, held in ((eager_f, eager_held), (compiled_f, compiled_held)):
            x = torch.zeros(3)
            a, b, c, d = f(x)
            assert a is x and d is x and c is held, f"call {i}"
            a.mul_(3.0)  # reaches x
            c.add_(1.0)  # reaches held
            outcomes.append((x, b, held))
        for got, want in zip(outcomes[1], outcomes[0]):
            assert_same(got, want, f"call {i}")


def test_a_parameter_returned_as_it_is_keeps_its_own_history():
    """Returned as it is, a leaf that requires grad stays that leaf (no compiled backward
    is attached to it); the other results still carry theirs."""
    w = torch.ones(3, requires_grad=True)

    def f(x):
        return w, (w * x).sum()

    compiled = torch.compile(f)
    for _ in range(3):
        same, loss = compiled(torch.arange(3.0))
        assert same is w and w.is_leaf and w.grad_fn is None
        loss.backward()
    np.testing.assert_allclose(w.grad.numpy(), 3 * np.arange(3.0))


def test_a_broadcast_view_of_a_tensor_the_function_scales():
    """`x` is a read-only broadcast of `w` (`expand`), and the function scales `w`: `x`
    sees it through `w`'s memory, as in eager mode, and is not written back itself (that
    raised NumPy's read-only error)."""
    def make():
        w = torch.arange(3.0)

        def f(x):
            w.mul_(2.0)
            return x.sum(0)

        return w, f

    eager_w, eager_f, compiled_w, compiled_f = _twins(make)
    for i in range(3):
        want, got = eager_f(eager_w.expand(4, 3)), compiled_f(compiled_w.expand(4, 3))
        assert_same(got, want, f"call {i}")
        assert_same(compiled_w, eager_w, f"call {i}: w")
    assert compiled_f.fallback_reason is None
