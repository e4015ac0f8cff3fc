"""`tracegrad.compile` gives eager's results in every case of SPEC §4.1–§4.2."""

import copy
import functools
import warnings
import weakref

import numpy as np
import pytest
from tracegrad.compiler.ir import graph_equal, verify
from tracegrad.compiler.ir_text import parse_graph, print_graph

import tracegrad as torch
from tracegrad.compiled import CompileFallback

nn = torch.nn
F = nn.functional


def check_graphs(compiled):
    """Every graph a compiled function built verifies and round-trips through text."""
    for variant in compiled.variants:
        for graph in variant.trace.stages.values():
            verify(graph)
            assert graph_equal(parse_graph(print_graph(graph)), graph)


def assert_close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a.detach()), np.asarray(b.detach()), rtol=tol,
                               atol=tol)


def make_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


def make_step(model, opt):
    """A whole training step: zero_grad, cross-entropy loss, backward, optimizer step."""

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def batch(seed, n=8):
    rng = np.random.default_rng(seed)
    return (torch.tensor(rng.standard_normal((n, 6)).astype(np.float32)),
            torch.tensor(rng.integers(0, 3, n)))


# --- use 1: a differentiable function whose outputs join eager autograd ---
def test_differentiable_function_forward_and_backward_match_eager():
    w = torch.randn(4, 3, requires_grad=True)

    def loss_fn(x):
        return (x @ w).tanh().pow(2).mean()

    compiled = torch.compile(loss_fn)
    for seed in range(4):
        x = torch.tensor(np.random.default_rng(seed).standard_normal((5, 4)).astype(np.float32),
                         requires_grad=True)
        w.grad = None
        expected = loss_fn(x)
        expected.backward()
        want_w, want_x = w.grad.clone(), x.grad.clone()
        w.grad, x.grad = None, None
        got = compiled(x)
        got.backward()
        assert_close(got, expected)
        assert_close(w.grad, want_w)
        assert_close(x.grad, want_x)
    assert len(compiled.variants) == 1 and compiled.fallback_reason is None
    assert compiled.variants[0].outputs.backward is not None  # backward was compiled
    check_graphs(compiled)


def test_compiled_output_continues_into_eager_graph():
    a = torch.randn(3, requires_grad=True)
    f = torch.compile(lambda x: x.sin() * 2)
    for _ in range(2):
        a.grad = None
        (f(a * 3).sum() * 5).backward()
    expected = 30 * torch.cos(a.detach() * 3)
    assert_close(a.grad, expected)


def test_create_graph_through_compiled_function_raises_clearly():
    x = torch.randn(3, requires_grad=True)
    f = torch.compile(lambda t: (t ** 3).sum())
    f(x)
    y = f(x)
    with pytest.raises(RuntimeError, match="higher-order gradients"):
        torch.autograd.grad(y, x, create_graph=True)


# --- use 2: a whole training step ---
@pytest.mark.parametrize("make_optimizer", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda p: torch.optim.Adam(p, lr=0.01),
    lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
], ids=["sgd-momentum", "sgd-nesterov", "adam", "adamw"])
def test_training_step_matches_eager_over_steps(make_optimizer):
    eager_model, compiled_model = make_model(), make_model()
    eager_opt = make_optimizer(eager_model.parameters())
    compiled_opt = make_optimizer(compiled_model.parameters())

    eager_step = make_step(eager_model, eager_opt)
    compiled_step = torch.compile(make_step(compiled_model, compiled_opt))
    for i in range(6):
        x, y = batch(i)
        assert_close(compiled_step(x, y), eager_step(x, y))
        for p, q in zip(compiled_model.parameters(), eager_model.parameters()):
            assert_close(p, q)
            assert_close(p.grad, q.grad)
        for p, q in zip(compiled_model.parameters(), eager_model.parameters()):
            for key, value in eager_opt.state[q].items():
                assert_close(compiled_opt.state[p][key], value)
    assert compiled_step.fallback_reason is None
    assert len(compiled_step.variants) == 1
    check_graphs(compiled_step)


def test_written_back_parameters_stay_shared_with_whoever_holds_their_memory():
    """A parameter whose array nobody else holds takes the program's new array (no
    copy); one whose array is held (`.numpy()`, a `detach()`ed tensor, a NumPy view) is
    written in place, so every holder sees each update, as in eager PyTorch."""
    eager_model, compiled_model = make_model(), make_model()
    eager_step = make_step(eager_model, torch.optim.SGD(eager_model.parameters(), lr=0.1))
    compiled_step = torch.compile(
        make_step(compiled_model, torch.optim.SGD(compiled_model.parameters(), lr=0.1)))
    first, last = compiled_model[0], compiled_model[2]
    held = first.weight.detach().numpy()  # the very array
    alias = first.bias.detach()  # another tensor on the same memory
    column = last.weight.detach().numpy()[:, 0]  # a view: it holds the array
    for i in range(4):
        unheld = weakref.ref(last.bias.detach().numpy())  # a weak reference holds nothing
        x, y = batch(i)
        assert_close(compiled_step(x, y), eager_step(x, y))
        for p, q in zip(compiled_model.parameters(), eager_model.parameters()):
            assert_close(p, q)
        assert held is first.weight.detach().numpy()
        np.testing.assert_array_equal(alias.numpy(), first.bias.detach().numpy())
        np.testing.assert_array_equal(column, last.weight.detach().numpy()[:, 0])
        if i:  # the first call traces (and writes in place); later ones run the program
            assert unheld() is None  # nobody held that array: the program's took its place
    assert len(compiled_step.variants) == 1 and compiled_step.fallback_reason is None


def _gradient_step(tensors, accumulate=False, guard=False):
    def step(scale):
        if not accumulate:
            for t in tensors:
                t.grad = None
        x, w, b = tensors
        loss = ((x * w).sum() + (b * b).sum()) * scale
        if guard and bool(loss > 1e9):  # a value guard: never true here
            loss = loss * 2
        loss.backward()

    return step


def _large_tensors(seed):
    # 2^17 floats (512 KiB: placed behind the inputs) and 2^15 (128 KiB: a plain array)
    rng = np.random.default_rng(seed)
    return [torch.tensor(rng.standard_normal(n).astype(np.float32), requires_grad=True)
            for n in (1 << 17, 1 << 17, 1 << 15)]


HOLDERS = {  # ways to hold on to a gradient: what is held, and the values it must keep
    "tensor": lambda grad: grad,
    "numpy": lambda grad: grad.numpy(),
    "view": lambda grad: grad.numpy()[::3],  # its base is the gradient's own base
}


def test_a_gradient_nobody_else_holds_is_written_into_again_and_a_held_one_never():
    """A step that sets `.grad` to None and makes it anew writes the new gradient into
    the old one's array when nobody else can see that array (`compiled_variant.
    _recycling`): results as eager's, and whoever holds an old gradient (its tensor, its
    `.numpy()`, a view of it) keeps its values. A read-only array is never written."""
    eager, compiled = _large_tensors(0), _large_tensors(0)
    eager_step, compiled_step = _gradient_step(eager), torch.compile(_gradient_step(compiled))
    scenarios = [(None, 0)] * 3 + [("tensor", 2), ("numpy", 1), ("view", 0), ("read-only", 1),
                                   ("read-only", 2), (None, 0)]
    for i, (scenario, k) in enumerate(scenarios):  # k: whose gradient is held this time
        held = values = None
        if scenario == "read-only":  # no reference is kept
            compiled[k].grad.numpy().setflags(write=False)
        elif scenario is not None:
            held = HOLDERS[scenario](compiled[k].grad)
            values = np.array(held.numpy() if scenario == "tensor" else held)
        before = [weakref.ref(t.grad.numpy()) if t.grad is not None else None
                  for t in compiled]
        eager_step(torch.tensor(0.5 + i))
        compiled_step(torch.tensor(0.5 + i))
        for p, q in zip(compiled, eager):
            assert_close(p.grad, q.grad)
        if held is not None:
            np.testing.assert_array_equal(held.numpy() if scenario == "tensor" else held,
                                          values, err_msg=f"a held {scenario} changed")
        # the first call traces; the second takes eager's arrays, but for the large ones,
        # which are not placed behind the inputs as the program places them
        for j, t in enumerate(compiled):
            recycled = before[j] is not None and before[j]() is t.grad.numpy()
            assert recycled == (i >= (1 if j == 2 else 2) and (scenario is None or j != k)), \
                (i, scenario, j)
        del held
    assert len(compiled_step.variants) == 1 and compiled_step.fallback_reason is None


@pytest.mark.parametrize("how", ["accumulate", "guard"])
def test_gradients_are_not_written_into_when_the_program_reads_them_or_a_guard_may_fail(how):
    """Accumulating into `.grad` reads the old gradient (the program must not write what
    it reads); with a value guard, a guard failing after the call must find the old
    gradients as they were."""
    eager, compiled = _large_tensors(1), _large_tensors(1)
    options = {how: True}
    eager_step, compiled_step = _gradient_step(eager, **options), \
        torch.compile(_gradient_step(compiled, **options))
    for i in range(4):
        before = [weakref.ref(t.grad.numpy()) if t.grad is not None else None
                  for t in compiled]
        eager_step(torch.tensor(1.0 + i))
        compiled_step(torch.tensor(1.0 + i))
        for j, (p, q) in enumerate(zip(compiled, eager)):
            assert_close(p.grad, q.grad)
            if how == "guard":  # (accumulating adds in place, into the same array)
                assert before[j] is None or before[j]() is not p.grad.numpy()
    # accumulating: the first call found no .grad, the later ones one to add to
    assert len(compiled_step.variants) == (2 if how == "accumulate" else 1)


def test_whether_a_tensor_came_with_a_grad_is_part_of_what_a_call_was_traced_with():
    """Backward adds to a `.grad` that is there and makes one that is not, and an
    optimizer skips parameters without one: a call traced one way must not run for a call
    that comes the other way (it would replace an accumulated gradient, or skip an
    update). Setting `.grad` first (`zero_grad`) makes the call not depend on it."""
    def accumulate(x, w):
        (x * w).sum().backward()

    eager_w, compiled_w = (torch.tensor([1.0, -2.0, 3.0], requires_grad=True) for _ in "ab")
    compiled_accumulate = torch.compile(accumulate)
    for i in range(4):  # no .grad, then one to add to: 2 variants, eager's sums
        x = torch.tensor([0.5, 1.0 + i, -1.0])
        accumulate(x, eager_w)
        compiled_accumulate(x, compiled_w)
        assert_close(compiled_w.grad, eager_w.grad)
    assert len(compiled_accumulate.variants) == 2
    compiled_w.grad = eager_w.grad = None  # and back: the first variant again
    accumulate(x, eager_w)
    compiled_accumulate(x, compiled_w)
    assert_close(compiled_w.grad, eager_w.grad)
    assert len(compiled_accumulate.variants) == 2
    for i in range(2):  # a new .grad tensor each time: added to, the old one left alone
        old = compiled_w.grad
        kept = old.numpy().copy()
        eager_w.grad, compiled_w.grad = (torch.tensor([10.0 * i, 1.0, -1.0]) for _ in "ab")
        accumulate(x, eager_w)
        compiled_accumulate(x, compiled_w)
        assert_close(compiled_w.grad, eager_w.grad)
        np.testing.assert_array_equal(old.numpy(), kept)

    def halve(w):  # the function's own read of .grad, changed in place
        w.grad.mul_(0.5)

    compiled_halve = torch.compile(halve)
    for i in range(3):
        eager_w.grad, compiled_w.grad = (torch.tensor([2.0 + i, 4.0, -8.0]) for _ in "ab")
        halve(eager_w)
        compiled_halve(compiled_w)
        assert_close(compiled_w.grad, eager_w.grad)
    assert len(compiled_halve.variants) == 1

    eager_model, compiled_model = make_model(), make_model()
    eager_opt = torch.optim.SGD(eager_model.parameters(), lr=0.1)
    compiled_opt = torch.optim.SGD(compiled_model.parameters(), lr=0.1)
    compiled_update = torch.compile(compiled_opt.step)
    for i in range(3):  # an update alone: the first call finds no gradients at all
        if i:
            for model in (eager_model, compiled_model):
                x, y = batch(i)
                F.cross_entropy(model(x), y).backward()
        eager_opt.step()
        compiled_update()
        for p, q in zip(compiled_model.parameters(), eager_model.parameters()):
            assert_close(p, q)
    assert "grad" in [kind for kind, _, _ in compiled_update.variants[-1].describe_guards()
                      ["values"]]

    eager_step = make_step(eager_model, eager_opt)  # zero_grad first: one variant
    compiled_step = torch.compile(make_step(compiled_model, compiled_opt))
    for i in range(3):
        x, y = batch(i)
        assert_close(compiled_step(x, y), eager_step(x, y))
    assert len(compiled_step.variants) == 1


def test_weight_decay_switched_on_takes_the_other_branch():
    """`if weight_decay != 0` in the update rule is a guard on the Python number, checked
    before each call: switching it on traces anew instead of reusing the branch."""
    model, reference = make_model(), make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)

    compiled, eager = torch.compile(make_step(model, opt)), make_step(reference, ref_opt)
    for i in range(6):
        decay = 0.0 if i < 3 else 0.05
        for group in opt.param_groups + ref_opt.param_groups:
            group["weight_decay"] = decay
        x, y = batch(i)
        compiled(x, y)
        eager(x, y)
        for p, q in zip(model.parameters(), reference.parameters()):
            assert_close(p, q)
    tests = [v for guards in torch.explain(compiled, *batch(6))["guards"]
             for v in guards["values"] if v[0] == "hyperparameter"]
    assert any("'weight_decay' != 0 was True" in v[1] for v in tests), tests


def test_learning_rate_schedule_causes_no_retrace():
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    reference = make_model()
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)

    compiled, eager = torch.compile(make_step(model, opt)), make_step(reference, ref_opt)
    for i in range(6):
        for group in opt.param_groups + ref_opt.param_groups:
            group["lr"] = 0.1 / (i + 1)
        x, y = batch(i)
        compiled(x, y)
        eager(x, y)
    for p, q in zip(model.parameters(), reference.parameters()):
        assert_close(p, q)
    assert len(compiled.variants) == 1


# A module-level step named like the method it calls (`opt.step()`): the global the code
# names is the compiled function itself, whose call counters change on every call.
STEP_NAMED_STEP = """
import tracegrad as torch
model = torch.nn.Linear(3, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x = torch.ones(4, 3)

@torch.compile
def step():
    opt.zero_grad()
    model(x).sum().backward()
    opt.step()
"""


def test_a_compiled_function_reached_from_its_own_code_traces_once():
    namespace: dict = {}
    exec(STEP_NAMED_STEP, namespace)  # noqa: S102 - the step must be a module global
    for _ in range(4):
        namespace["step"]()
    assert len(namespace["step"].variants) == 1


# --- use 3: a module ---
def test_compiled_module_matches_eager_and_shares_parameters():
    model = make_model()
    compiled = torch.compile(model)
    assert [id(p) for p in compiled.parameters()] == [id(p) for p in model.parameters()]
    for i in range(3):
        x, _ = batch(i)
        model.zero_grad()
        expected = model(x).square().sum()
        expected.backward()
        want = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        got = compiled(x).square().sum()
        got.backward()
        assert_close(got, expected)
        for p, g in zip(model.parameters(), want):
            assert_close(p.grad, g)


# --- guards ---
def test_new_shapes_retrace_and_old_variants_are_reused():
    f = torch.compile(lambda x: x.exp().sum(dim=-1))
    for shape in [(2, 3), (4, 3), (2, 3), (4, 3)]:
        x = torch.randn(*shape)
        assert_close(f(x), x.exp().sum(dim=-1))
    assert len(f.variants) == 2


def test_if_branch_on_tensor_value_takes_the_right_path():
    @torch.compile
    def f(x):
        if x.sum() > 0:
            return x * 2
        return x - 1

    for values in ([1.0, 2.0], [1.0, 2.0], [-5.0, 1.0], [3.0, 3.0], [-1.0, -1.0]):
        x = torch.tensor(values)
        expected = x * 2 if sum(values) > 0 else x - 1
        assert_close(f(x), expected)


def test_while_loop_on_norm_matches_eager():
    def doubling(x):
        y = x * 2
        while y.norm() < 1000:
            y = y * 2
        return y

    compiled = torch.compile(doubling)
    for values in ([0.5, -1.2, 0.3], [0.5, -1.2, 0.3], [10.0, 20.0, 5.0], [0.01, 0.0, 0.0]):
        x = torch.tensor(values)
        assert_close(compiled(x), doubling(x))


def test_closure_parameter_changed_between_calls_is_seen():
    w = torch.ones(3)
    f = torch.compile(lambda x: (x * w).sum())
    x = torch.arange(3.0)
    assert f(x).item() == 3.0
    assert f(x).item() == 3.0
    w.mul_(2)  # changed in place
    assert f(x).item() == 6.0
    w = torch.full((3,), 10.0)  # rebound to another tensor: the closure sees the new one
    assert f(x).item() == 30.0


def test_a_partial_is_compiled_with_what_it_binds_and_what_its_function_reaches():
    w = torch.ones(3)
    settings = {"scale": 2.0}

    def scaled(weights, options, x):
        return (x * weights).sum() * options["scale"] + (x * w).sum()

    f = torch.compile(functools.partial(scaled, torch.ones(3), settings))
    assert f.__name__ == "scaled"
    x = torch.arange(3.0)
    assert f(x).item() == 9.0
    assert f(x).item() == 9.0
    settings["scale"] = 3.0  # a value the partial binds
    assert f(x).item() == 12.0
    w.mul_(2)  # a tensor its function reaches, changed in place
    assert f(x).item() == 15.0
    w = torch.full((3,), 10.0)  # its function's closure rebound
    assert f(x).item() == 39.0


def _eager_and_compiled(model, x):
    compiled = torch.compile(lambda x: model(x))
    for _ in range(3):  # traced, then run: its guard has looked at the module tree
        assert_close(compiled(x), model(x))
    return compiled


def test_every_change_to_a_module_tree_is_seen_by_a_compiled_call():
    """The guard re-reads a module tree only when a module changed (nn/structure.py): every
    way of changing one must count, and tensors' own state is checked on every call."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.5), nn.ReLU(), nn.Linear(16, 3),
                          nn.Softplus())
    model.eval()
    x, _ = batch(0)
    changes = [
        lambda: setattr(model[4], "beta", 2.0),  # a setting forward reads
        lambda: model.__setitem__(0, nn.Linear(6, 16)),  # a submodule replaced
        lambda: setattr(model[3], "bias", None),  # a parameter set to None
        lambda: model[3]._parameters.__setitem__("bias", nn.Parameter(torch.ones(3))),
        lambda: model[3]._parameters.update(bias=nn.Parameter(torch.zeros(3))),
        lambda: model[3]._parameters.setdefault("unused", nn.Parameter(torch.ones(1))),
        lambda: model.__delitem__(2),  # renumbered
        lambda: model.insert(2, nn.Tanh()),
        lambda: model.append(nn.Sigmoid()),
        lambda: model[0].weight.requires_grad_(False),  # a tensor's state
        lambda: setattr(model[0].weight, "data", model[0].weight.data.double().float()),
        lambda: model[0].register_buffer("offset", torch.ones(16)),  # read by nobody
        lambda: delattr(model, "3"),
        lambda: model.add_module("3", nn.Linear(16, 2)),
    ]
    for change in changes:
        compiled = _eager_and_compiled(model, x)
        change()
        for _ in range(2):
            assert_close(compiled(x), model(x))
    compiled = _eager_and_compiled(model, x)
    model.train()  # dropout draws masks now: the traced eval-mode call must not be reused
    assert not any(variant.guard((x,), {}) for variant in compiled.variants)


def test_a_module_tree_is_read_again_only_after_some_module_changed():
    import sys

    model = make_model()
    compiled = _eager_and_compiled(model, batch(0)[0])
    guard = compiled.variants[0].guard
    x = batch(1)[0]

    def lines_run() -> int:  # of the guard's own code
        count = []

        def trace(frame, event, arg):
            if frame.f_code.co_filename != "<tracegrad guard>":
                return None
            count.append(event == "line")
            return trace

        sys.settrace(trace)
        try:
            assert guard((x,), {})
        finally:
            sys.settrace(None)
        return sum(count)

    unchanged = lines_run()
    nn.Linear(1, 1).weight = nn.Parameter(torch.ones(1, 1))  # any module's change counts
    assert lines_run() > unchanged + 20  # the model's 3 modules, 4 dicts each
    assert lines_run() == unchanged


def test_a_module_that_sets_attributes_its_own_way_is_read_on_every_call():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = 2.0

        def __setattr__(self, name, value):  # not counted: nn/structure.py cannot see it
            self.__dict__[name] = value

        def forward(self, x):
            return x * self.scale

    model = Scaled()
    x = torch.ones(2)
    compiled = _eager_and_compiled(model, x)
    model.scale = 3.0
    assert compiled(x).tolist() == [3.0, 3.0]


def test_module_registries_count_their_changes_and_stay_registries():
    from tracegrad.nn.structure import CHANGES, Registry

    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Tanh())
    registry = model[0]._parameters
    for change in [lambda: registry.__setitem__("extra", None), lambda: registry.pop("extra"),
                   lambda: registry.setdefault("extra"), lambda: registry.popitem(),
                   lambda: registry.__ior__({"extra": None}), lambda: registry.clear()]:
        before = CHANGES[0]
        change()
        assert CHANGES[0] > before
    del model[1]
    for copied in (model, copy.deepcopy(model)):
        for module in copied.modules():
            for name in ("_parameters", "_buffers", "_modules"):
                assert type(getattr(module, name)) is Registry
    assert list(model._modules) == ["0", "1"]


def test_python_scalar_arguments_are_part_of_the_key():
    f = torch.compile(lambda x, k: x * k)
    x = torch.ones(2)
    assert f(x, 2.0).tolist() == [2.0, 2.0]
    assert f(x, 3.0).tolist() == [3.0, 3.0]
    assert f(x, 2.0).tolist() == [2.0, 2.0]


def test_grad_mode_is_part_of_the_key():
    w = torch.ones(2, requires_grad=True)
    f = torch.compile(lambda x: x * w)
    x = torch.ones(2)
    assert f(x).requires_grad and f(x).requires_grad
    with torch.no_grad():
        assert not f(x).requires_grad
        assert not f(x).requires_grad


def test_variant_limit_falls_back_with_one_warning():
    f = torch.compile(lambda x: x + 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in range(1, 12):
            assert f(torch.ones(n)).tolist() == [2.0] * n
    messages = [str(w.message) for w in caught if "tracegrad.compile" in str(w.message)]
    assert len(messages) == 1 and "variants" in messages[0]


# --- fallbacks ---
def test_numpy_detour_falls_back_with_one_warning_naming_the_line():
    def f(x):
        doubled = torch.from_numpy(x.numpy() * 2)
        return doubled + 1

    compiled = torch.compile(f)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert compiled(torch.ones(2)).tolist() == [3.0, 3.0]
    messages = [str(w.message) for w in caught if "tracegrad.compile" in str(w.message)]
    assert len(messages) == 1
    assert "numpy()" in messages[0] and "test_compile.py" in messages[0]


def test_fullgraph_raises_and_restores_state():
    w = torch.ones(2)

    def f(x):
        w.add_(1)
        return torch.from_numpy(x.numpy()) * w

    compiled = torch.compile(f, fullgraph=True)
    with pytest.raises(CompileFallback, match="numpy"):
        compiled(torch.ones(2))
    assert w.tolist() == [1.0, 1.0]


def test_error_in_traced_call_leaves_state_unchanged():
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = batch(0)
    compiled = torch.compile(make_step(model, opt))
    compiled(x, y)
    compiled(x, y)
    before = copy.deepcopy([p.detach().numpy().copy() for p in model.parameters()])
    with pytest.raises(RuntimeError):
        compiled(torch.ones(8, 5), y)  # wrong feature size: fails inside the step
    after = [p.detach().numpy() for p in model.parameters()]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_disable_compile_environment_variable(monkeypatch):
    monkeypatch.setenv("TRACEGRAD_DISABLE_COMPILE", "1")

    def f(x):
        return x

    assert torch.compile(f) is f


def test_log_prints_recompiles(monkeypatch, capsys):
    monkeypatch.setenv("TRACEGRAD_LOG", "recompiles,guards")
    f = torch.compile(lambda x: x * 2)
    f(torch.ones(1))
    f(torch.ones(2))
    err = capsys.readouterr().err
    assert err.count("[tracegrad:recompiles]") == 2


def test_explain_reports_guards_and_fallbacks():
    def f(x):
        return x * 2 if x.sum() > 0 else x

    report = torch.explain(f, torch.ones(2))
    assert report["variants"] == 1 and report["fallback"] is None
    assert report["guards"][0]["values"][0][:2] == ("bool", True)
    broken = torch.explain(lambda x: torch.from_numpy(x.numpy()), torch.ones(2))
    assert "numpy" in broken["fallback"]


def test_verify_compares_against_eager():
    w = torch.randn(3, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)

    def step(x):
        opt.zero_grad()
        loss = (x * w).sin().sum()
        loss.backward()
        opt.step()
        return loss

    compiled = torch.compile(step, verify=3)
    for i in range(5):
        compiled(torch.full((3,), float(i)))
    assert compiled.fallback_reason is None


def test_random_ops_are_redrawn_each_call():
    f = torch.compile(lambda x: x + torch.rand(3))
    x = torch.zeros(3)
    results = [f(x).tolist() for _ in range(4)]
    assert len({tuple(r) for r in results}) == 4


def test_dropout_in_training_mode_draws_new_masks():
    drop = nn.Dropout(0.5)
    f = torch.compile(lambda x: drop(x))
    x = torch.ones(64)
    masks = {tuple((f(x) > 0).tolist()) for _ in range(4)}
    assert len(masks) == 4
