"""Optimizers against PyTorch: parameter trajectories step by step on a small MLP (same
initial weights, same data), hyperparameter changes between steps, state names and the
state_dict format and round trip."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import tracegrad
import tracegrad.optim.adam
import tracegrad.optim.sgd

STEPS = 6


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def mlp(lib):
    return lib.nn.Sequential(lib.nn.Linear(4, 8), lib.nn.Tanh(), lib.nn.Linear(8, 3))


def twin_models(torch, seed=0):
    """A torch MLP and a tracegrad MLP with the same weights."""
    torch.manual_seed(seed)
    theirs = mlp(torch)
    ours = mlp(tracegrad)
    ours.load_state_dict({k: tracegrad.tensor(v.detach().numpy())
                          for k, v in theirs.state_dict().items()})
    return ours, theirs


def batches(lib, steps=STEPS):
    rng = np.random.default_rng(1)
    for _ in range(steps):
        x = rng.standard_normal((16, 4)).astype(np.float32)
        y = rng.integers(0, 3, 16)
        yield lib.tensor(x), lib.tensor(y)


def train_step(lib, model, opt, x, y):
    opt.zero_grad()
    loss = lib.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss


def assert_same_parameters(ours, theirs, step, rtol=1e-5, atol=1e-6):
    for (name, p), (_, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
        np.testing.assert_allclose(p.detach()._data, tp.detach().numpy(), rtol=rtol,
                                   atol=atol, err_msg=f"{name} after step {step}")


CONFIGS = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.5}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.1, "weight_decay": 0.01, "maximize": True}),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "maximize": True}),
    ("AdamW", {"lr": 0.01}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
]


def run_both(torch, name, kwargs, change_lr_at=None):
    ours, theirs = twin_models(torch)
    opt = getattr(tracegrad.optim, name)(ours.parameters(), **kwargs)
    topt = getattr(torch.optim, name)(theirs.parameters(), **kwargs)
    for step, ((x, y), (tx, ty)) in enumerate(zip(batches(tracegrad), batches(torch))):
        if step == change_lr_at:
            opt.param_groups[0]["lr"] = topt.param_groups[0]["lr"] = kwargs["lr"] * 5
        loss = train_step(tracegrad, ours, opt, x, y)
        tloss = train_step(torch, theirs, topt, tx, ty)
        np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-5)
        assert_same_parameters(ours, theirs, step)
    return opt, topt, ours, theirs


@pytest.mark.parametrize("name, kwargs", CONFIGS)
def test_trajectory_matches_torch(torch, name, kwargs):
    run_both(torch, name, kwargs)


@pytest.mark.parametrize("name, kwargs", [CONFIGS[1], CONFIGS[3], CONFIGS[7], CONFIGS[11]])
def test_tensor_path_matches_torch(torch, monkeypatch, name, kwargs):
    """The update rules run on tensors too (what a tracer sees), with the same result."""
    for module in (tracegrad.optim.sgd, tracegrad.optim.adam):
        monkeypatch.setattr(module, "on_arrays", lambda *tensors: False)
    run_both(torch, name, kwargs)


@pytest.mark.parametrize("name, kwargs", [CONFIGS[1], CONFIGS[6]])
def test_learning_rate_changed_between_steps_takes_effect(torch, name, kwargs):
    run_both(torch, name, kwargs, change_lr_at=3)


def test_parameter_groups_with_their_own_hyperparameters(torch):
    ours, theirs = twin_models(torch)

    def groups(model):
        return [{"params": model[0].parameters()},
                {"params": model[2].parameters(), "lr": 0.5, "momentum": 0.0}]

    opt = tracegrad.optim.SGD(groups(ours), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(groups(theirs), lr=0.1, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    for step, ((x, y), (tx, ty)) in enumerate(zip(batches(tracegrad), batches(torch))):
        train_step(tracegrad, ours, opt, x, y)
        train_step(torch, theirs, topt, tx, ty)
        assert_same_parameters(ours, theirs, step)
    assert len(opt.state) == 2  # only the momentum group keeps buffers


def test_state_keys_and_state_dict_format_match_torch(torch):
    for name, kwargs in [CONFIGS[1], CONFIGS[0], CONFIGS[7], CONFIGS[11]]:
        opt, topt, _, _ = run_both(torch, name, kwargs)
        ours, theirs = opt.state_dict(), topt.state_dict()
        assert set(ours) == set(theirs) == {"state", "param_groups"}
        assert ours["param_groups"] == theirs["param_groups"]
        assert list(ours["state"]) == list(theirs["state"])
        for index, values in theirs["state"].items():
            assert list(ours["state"][index]) == list(values)
            for key, value in values.items():
                mine = ours["state"][index][key]
                assert isinstance(mine, tracegrad.Tensor)
                assert mine.dtype.name == str(value.dtype).replace("torch.", "")
                np.testing.assert_allclose(mine._data, value.numpy(), rtol=1e-4, atol=1e-6)
        assert repr(opt) == repr(topt)


def test_state_dict_round_trip_continues_the_same_trajectory(torch):
    ours, _ = twin_models(torch)
    opt = tracegrad.optim.Adam(ours.parameters(), lr=0.01, amsgrad=True)
    data = list(batches(tracegrad, steps=6))
    for x, y in data[:3]:
        train_step(tracegrad, ours, opt, x, y)
    saved_model = pickle.loads(pickle.dumps(ours.state_dict()))
    saved_opt = pickle.loads(pickle.dumps(opt.state_dict()))

    copy = mlp(tracegrad)
    copy.load_state_dict(saved_model)
    copy_opt = tracegrad.optim.Adam(copy.parameters(), lr=0.5)  # lr comes from the state
    copy_opt.load_state_dict(saved_opt)
    assert copy_opt.param_groups[0]["lr"] == 0.01
    assert copy_opt.param_groups[0]["params"] == list(copy.parameters())
    first = copy_opt.state[copy[0].weight]
    assert first["step"].item() == 3.0 and sorted(first) == [
        "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"]
    assert first["exp_avg"]._data is not saved_opt["state"][0]["exp_avg"]._data
    for x, y in data[3:]:
        train_step(tracegrad, ours, opt, x, y)
        train_step(tracegrad, copy, copy_opt, x, y)
    for p, q in zip(ours.parameters(), copy.parameters()):
        assert np.array_equal(p._data, q._data)


def test_load_state_dict_rejects_other_shapes_of_groups():
    a, b = mlp(tracegrad), mlp(tracegrad)
    opt = tracegrad.optim.SGD(a.parameters(), lr=0.1)
    other = tracegrad.optim.SGD([{"params": b[0].parameters()},
                                 {"params": b[2].parameters()}], lr=0.1)
    with pytest.raises(ValueError, match="different number of parameter groups"):
        opt.load_state_dict(other.state_dict())
    smaller = tracegrad.optim.SGD(b[0].parameters(), lr=0.1)
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        opt.load_state_dict(smaller.state_dict())


def test_zero_grad_closure_and_parameters_without_gradients():
    model = mlp(tracegrad)
    opt = tracegrad.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = next(batches(tracegrad))

    def closure():
        opt.zero_grad()
        loss = tracegrad.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert isinstance(loss, tracegrad.Tensor) and loss.requires_grad
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad._data.any() for p in model.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    before = [p._data.copy() for p in model.parameters()]
    versions = [p._version[0] for p in model.parameters()]
    model[2].bias.grad = tracegrad.ones(3)
    opt.step()  # only the parameter with a gradient moves
    after = list(model.parameters())
    assert all(np.array_equal(b, p._data) for b, p in zip(before[:3], after[:3]))
    assert not np.array_equal(before[3], after[3]._data)
    assert after[3]._version[0] > versions[3] and after[0]._version[0] == versions[0]


def test_a_step_invalidates_tensors_saved_for_backward():
    w = tracegrad.nn.Parameter(tracegrad.ones(2))
    opt = tracegrad.optim.SGD([w], lr=0.1)
    loss = (w * w).sum()
    w.grad = tracegrad.ones(2)
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_constructor_checks():
    params = list(mlp(tracegrad).parameters())
    with pytest.raises(ValueError, match="empty parameter list"):
        tracegrad.optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        tracegrad.optim.SGD(params, lr=-1)
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum"):
        tracegrad.optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1"):
        tracegrad.optim.Adam(params, betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="iterable of Tensors or dicts"):
        tracegrad.optim.Adam(params[0])
    with pytest.raises(ValueError, match="more than one parameter group"):
        tracegrad.optim.SGD([{"params": params}, {"params": params[:1]}], lr=0.1)
    with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
        tracegrad.optim.SGD([params[0] * 2], lr=0.1)
    assert tracegrad.optim.AdamW(params).param_groups[0]["weight_decay"] == 0.01
    assert tracegrad.optim.Adam(params).defaults["lr"] == 1e-3
