"""tracegrad.nn against PyTorch: layers and losses (values and gradients, with the same
weights), module registration and state_dict, reprs, default initialisation, clipping.

Tests that need PyTorch skip without it; the rest (registration, init statistics, API
behaviour) run anyway.
"""

from __future__ import annotations

import copy
import math
import pickle
import warnings

import numpy as np
import pytest

import tracegrad
import tracegrad.nn.functional as F
from tracegrad import nn

RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def to_torch(torch, t, requires_grad=False):
    return torch.tensor(np.array(t.detach()._data), requires_grad=requires_grad)


def pair(torch, *shape, seed=0, dtype=np.float32, requires_grad=True):
    """The same random values as a tracegrad tensor and a torch tensor."""
    data = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    ours = tracegrad.tensor(data, requires_grad=requires_grad)
    theirs = torch.tensor(data, requires_grad=requires_grad)
    return ours, theirs


def close(ours, theirs, rtol=RTOL, atol=ATOL):
    assert ours is not None and theirs is not None
    np.testing.assert_allclose(np.array(ours.detach()._data), theirs.detach().numpy(),
                               rtol=rtol, atol=atol)


def copy_weights(ours: nn.Module, theirs) -> None:
    state = {k: tracegrad.tensor(v.detach().numpy()) for k, v in theirs.state_dict().items()}
    ours.load_state_dict(state)


def check_module(torch, ours, theirs, *shape, seed=0, upstream=None):
    """Same output, input gradient and parameter gradients for the same weights."""
    copy_weights(ours, theirs)
    x, tx = pair(torch, *shape, seed=seed)
    out, tout = ours(x), theirs(tx)
    close(out, tout)
    g = np.random.default_rng(seed + 1).standard_normal(tuple(tout.shape)).astype(np.float32)
    out.backward(tracegrad.tensor(g))
    tout.backward(torch.tensor(g))
    close(x.grad, tx.grad)
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        close(p.grad, theirs_params[name].grad)


# --- layers ---
@pytest.mark.parametrize("shape", [(5, 3), (2, 4, 3), (3,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(torch, shape, bias):
    check_module(torch, nn.Linear(3, 4, bias=bias), torch.nn.Linear(3, 4, bias=bias), *shape)


@pytest.mark.parametrize("name, args", [
    ("ReLU", ()), ("GELU", ()), ("GELU", ("tanh",)), ("Tanh", ()), ("Sigmoid", ()),
    ("SiLU", ()), ("Softplus", ()), ("Softplus", (2.0, 1.0)), ("Identity", ()),
    ("Softmax", (-1,)), ("LogSoftmax", (1,)), ("Flatten", ()), ("Flatten", (0, 1)),
])
def test_activations_and_shape_layers_match_torch(torch, name, args):
    check_module(torch, getattr(nn, name)(*args), getattr(torch.nn, name)(*args), 3, 4, 2)


@pytest.mark.parametrize("normalized, shape", [((6,), (4, 6)), ((3, 4), (2, 3, 4)),
                                               (5, (5,))])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_matches_torch(torch, normalized, shape, affine):
    theirs = torch.nn.LayerNorm(normalized, elementwise_affine=affine)
    if affine:  # non-trivial weights, so that their gradients mean something
        with torch.no_grad():
            theirs.weight.normal_()
            theirs.bias.normal_()
    check_module(torch, nn.LayerNorm(normalized, elementwise_affine=affine), theirs, *shape)


def test_layer_norm_rejects_a_wrong_shape():
    with pytest.raises(RuntimeError, match=r"expected input with shape \[\*, 4\]"):
        F.layer_norm(tracegrad.ones(2, 3), (4,))


@pytest.mark.parametrize("padding_idx", [None, 0, -1])
def test_embedding_matches_torch(torch, padding_idx):
    ours = nn.Embedding(6, 3, padding_idx=padding_idx)
    theirs = torch.nn.Embedding(6, 3, padding_idx=padding_idx)
    copy_weights(ours, theirs)
    idx = [[0, 2, 5], [5, 5, 1]]
    out, tout = ours(tracegrad.tensor(idx)), theirs(torch.tensor(idx))
    close(out, tout)
    g = np.arange(18, dtype=np.float32).reshape(2, 3, 3)
    out.backward(tracegrad.tensor(g))
    tout.backward(torch.tensor(g))
    close(ours.weight.grad, theirs.weight.grad)
    assert out.grad_fn.name() == tout.grad_fn.name() == "EmbeddingBackward0"


def test_embedding_from_pretrained_is_frozen():
    table = tracegrad.arange(6.0).reshape(3, 2)
    emb = nn.Embedding.from_pretrained(table)
    assert not emb.weight.requires_grad
    assert emb(tracegrad.tensor([2])).tolist() == [[4.0, 5.0]]


def test_dropout_masks_scales_and_respects_eval():
    tracegrad.manual_seed(0)
    x = tracegrad.ones(200, 50, requires_grad=True)
    drop = nn.Dropout(0.2)
    y = drop(x)
    values = np.unique(y.detach()._data)
    np.testing.assert_allclose(values, [0.0, 1.25], rtol=1e-6)
    assert abs((y.detach()._data == 0).mean() - 0.2) < 0.02
    y.sum().backward()
    assert np.array_equal(x.grad._data, y.detach()._data)  # the gradient goes where kept
    assert drop.eval()(x) is x
    assert F.dropout(x, 0.0) is x
    assert F.dropout(x, 1.0).sum().item() == 0.0
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


# --- losses ---
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(4, 3), (5,), (2, 3, 4)])
def test_mse_loss_matches_torch(torch, reduction, shape):
    x, tx = pair(torch, *shape, seed=1)
    y, ty = pair(torch, *shape, seed=2, requires_grad=False)
    out = nn.MSELoss(reduction=reduction)(x, y)
    tout = torch.nn.MSELoss(reduction=reduction)(tx, ty)
    close(out, tout)
    out.sum().backward()
    tout.sum().backward()
    close(x.grad, tx.grad)
    assert out.grad_fn.name() == tout.grad_fn.name() == "MseLossBackward0"


def test_mse_loss_warns_about_broadcasting():
    with pytest.warns(UserWarning, match="different to the input size"):
        F.mse_loss(tracegrad.ones(3, 1), tracegrad.ones(3))


CROSS_ENTROPY_CASES = [
    # (input shape, target class indices)
    ((4, 5), [0, 4, 2, 2]),
    ((5,), 3),
    ((2, 3, 4), [[0, 1, 2, 2], [1, 1, 0, 2]]),
]


@pytest.mark.parametrize("shape, target", CROSS_ENTROPY_CASES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_with_class_indices_matches_torch(torch, shape, target, reduction,
                                                        label_smoothing, weighted):
    classes = shape[0] if len(shape) == 1 else shape[1]
    weight = np.linspace(0.5, 2.0, classes).astype(np.float32) if weighted else None
    for ignore_index in (-100, 2):
        x, tx = pair(torch, *shape, seed=3)
        kw = {"reduction": reduction, "label_smoothing": label_smoothing,
              "ignore_index": ignore_index}
        out = nn.CrossEntropyLoss(None if weight is None else tracegrad.tensor(weight), **kw)(
            x, tracegrad.tensor(target))
        tout = torch.nn.CrossEntropyLoss(None if weight is None else torch.tensor(weight), **kw)(
            tx, torch.tensor(target))
        close(out, tout)
        out.sum().backward()
        tout.sum().backward()
        close(x.grad, tx.grad)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_with_probabilities_matches_torch(torch, reduction, label_smoothing,
                                                         weighted):
    x, tx = pair(torch, 6, 4, seed=4)
    p = np.random.default_rng(5).dirichlet(np.ones(4), size=6).astype(np.float32)
    weight = np.array([1.0, 0.5, 2.0, 1.5], np.float32) if weighted else None
    out = F.cross_entropy(x, tracegrad.tensor(p), None if weight is None else
                          tracegrad.tensor(weight), reduction=reduction,
                          label_smoothing=label_smoothing)
    tout = torch.nn.functional.cross_entropy(tx, torch.tensor(p), None if weight is None else
                                             torch.tensor(weight), reduction=reduction,
                                             label_smoothing=label_smoothing)
    close(out, tout)
    out.sum().backward()
    tout.sum().backward()
    close(x.grad, tx.grad)
    if not weighted:
        assert out.grad_fn.name() == tout.grad_fn.name()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_matches_torch(torch, reduction):
    x, tx = pair(torch, 5, 3, seed=6)
    target = [0, 2, 1, -100, 2]
    weight = [0.2, 1.0, 3.0]
    for w in (None, weight):
        x.grad, tx.grad = None, None
        out = nn.NLLLoss(None if w is None else tracegrad.tensor(w), reduction=reduction)(
            x, tracegrad.tensor(target))
        tout = torch.nn.NLLLoss(None if w is None else torch.tensor(w), reduction=reduction)(
            tx, torch.tensor(target))
        close(out, tout)
        out.sum().backward()
        tout.sum().backward()
        close(x.grad, tx.grad)


def test_loss_grad_fn_names_match_torch(torch):
    x, tx = pair(torch, 4, 3)
    t, tt = tracegrad.tensor([0, 1, 2, 1]), torch.tensor([0, 1, 2, 1])
    tF = torch.nn.functional
    assert F.cross_entropy(x, t).grad_fn.name() == tF.cross_entropy(tx, tt).grad_fn.name()
    assert F.nll_loss(x, t).grad_fn.name() == "NllLossBackward0"
    assert (F.cross_entropy(x, t, label_smoothing=0.1).grad_fn.name()
            == tF.cross_entropy(tx, tt, label_smoothing=0.1).grad_fn.name())
    x3 = tracegrad.randn(2, 3, 4, requires_grad=True)
    assert F.cross_entropy(x3, tracegrad.zeros(2, 4, dtype=tracegrad.long)).grad_fn.name() == \
        "NllLoss2DBackward0"
    assert F.linear(x, tracegrad.ones(2, 3)).grad_fn.name() == "MmBackward0"
    assert F.linear(x, tracegrad.ones(2, 3), tracegrad.ones(2)).grad_fn.name() == \
        "AddmmBackward0"


def test_cross_entropy_errors_match_torch():
    x = tracegrad.randn(3, 4)
    with pytest.raises(IndexError, match="Target 7 is out of bounds."):
        F.cross_entropy(x, tracegrad.tensor([0, 1, 7]))
    with pytest.raises(ValueError, match=r"Expected input batch_size \(3\) to match target "
                                         r"batch_size \(2\)"):
        F.cross_entropy(x, tracegrad.tensor([0, 1]))
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        F.cross_entropy(x, tracegrad.tensor([0, 1, 2]), reduction="avg")


def test_cross_entropy_of_ignored_targets_only_is_nan():
    loss = F.cross_entropy(tracegrad.randn(2, 3), tracegrad.tensor([-100, -100]))
    assert math.isnan(loss.item())


# --- registration ---
def make_block(lib):
    """A module whose parameters, buffers and children are assigned interleaved."""

    class Block(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.b = lib.nn.Parameter(lib.zeros(2))
            self.inner = lib.nn.Linear(2, 2)
            self.register_buffer("running", lib.zeros(2))
            self.a = lib.nn.Parameter(lib.ones(2))
            self.register_buffer("scratch", lib.zeros(1), persistent=False)
            self.seq = lib.nn.Sequential(lib.nn.Linear(2, 3), lib.nn.ReLU())
            self.shared = self.inner  # the same module twice: listed once
            self.plain = 3

    return Block()


def test_registration_order_matches_torch(torch):
    ours, theirs = make_block(tracegrad), make_block(torch)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [n for n, _ in ours.named_children()] == [n for n, _ in theirs.named_children()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert len(list(ours.parameters())) == 6 and len(list(ours.modules())) == 5
    assert len(list(ours.named_parameters(recurse=False))) == 2


def test_assigning_a_registered_name_again_keeps_its_place():
    block = make_block(tracegrad)
    def names():
        return [list(registry) for registry in (block._parameters, block._buffers,
                                                block._modules, block.seq._modules)]

    before = names()
    block.a = nn.Parameter(tracegrad.zeros(2))
    block.register_buffer("running", tracegrad.ones(2))
    block.seq[0] = nn.Linear(2, 3)  # PyTorch keeps "0" first; moving it would reorder
    block.inner = nn.Linear(2, 2)
    assert names() == before
    assert [type(m).__name__ for m in block.seq] == ["Linear", "ReLU"]


def test_registration_rules():
    block = make_block(tracegrad)
    assert block.plain == 3 and "plain" not in block._parameters
    with pytest.raises(TypeError, match=r"cannot assign 'torch.FloatTensor' as parameter 'a' "
                                        r"\(torch.nn.Parameter or None expected\)"):
        block.a = tracegrad.zeros(2)
    block.a = None
    assert "a" not in dict(block.named_parameters())
    block.running = tracegrad.ones(2)  # a tensor assigned to a buffer's name replaces it
    assert block._buffers["running"].tolist() == [1.0, 1.0]
    del block.seq
    assert "seq" not in dict(block.named_children())
    with pytest.raises(AttributeError, match="has no attribute 'missing'"):
        _ = block.missing
    with pytest.raises(KeyError, match="contain"):
        block.register_buffer("x.y", tracegrad.zeros(1))


def test_parameter_is_a_leaf_tensor_sharing_memory(torch):
    data = tracegrad.zeros(2)
    p = nn.Parameter(data)
    assert isinstance(p, tracegrad.Tensor) and p.is_leaf and p.requires_grad
    data.add_(1.0)
    assert p.tolist() == [1.0, 1.0]
    assert repr(p) == repr(torch.nn.Parameter(torch.ones(2))).replace("torch", "tracegrad")
    assert repr(nn.Parameter(tracegrad.ones(2), requires_grad=False)) == \
        "Parameter containing:\ntensor([1., 1.])"
    (p * 2).sum().backward()
    assert type(p * 2) is tracegrad.Tensor
    clone = copy.deepcopy(p)
    assert isinstance(clone, nn.Parameter) and clone.grad.tolist() == [2.0, 2.0]
    loaded = pickle.loads(pickle.dumps(p))
    assert isinstance(loaded, nn.Parameter) and loaded.tolist() == [1.0, 1.0]
    with pytest.raises(RuntimeError, match="floating point"):
        nn.Parameter(tracegrad.tensor([1, 2]))


# --- state_dict ---
def test_state_dict_round_trip_through_pickle():
    tracegrad.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.LayerNorm(4), nn.Linear(4, 2))
    state = pickle.loads(pickle.dumps(net.state_dict()))
    fresh = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.LayerNorm(4), nn.Linear(4, 2))
    assert repr(fresh.load_state_dict(state)) == "<All keys matched successfully>"
    x = tracegrad.randn(5, 3)
    assert np.array_equal(net(x).detach()._data, fresh(x).detach()._data)
    weight = net.state_dict()["0.weight"]
    assert not weight.requires_grad and weight._data is net[0].weight._data  # shared memory
    assert net.state_dict(keep_vars=True)["0.weight"] is net[0].weight


def test_whole_modules_pickle_and_deepcopy():
    tracegrad.manual_seed(2)
    net = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.CrossEntropyLoss(
        weight=tracegrad.ones(4)))
    for clone in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        assert repr(clone) == repr(net)
        assert isinstance(clone[0].weight, nn.Parameter) and clone[0].weight.requires_grad
        assert clone[0].weight._data is not net[0].weight._data
        assert np.array_equal(clone[0].weight._data, net[0].weight._data)
        assert [n for n, _ in clone.named_buffers()] == ["2.weight"]


def test_load_state_dict_reports_like_torch(torch):
    ours, theirs = nn.Linear(2, 3), torch.nn.Linear(2, 3)
    bad = {"weight": np.zeros((3, 3), np.float32), "extra": np.zeros(1, np.float32)}
    with pytest.raises(RuntimeError) as ours_error:
        ours.load_state_dict({k: tracegrad.tensor(v) for k, v in bad.items()})
    with pytest.raises(RuntimeError) as theirs_error:
        theirs.load_state_dict({k: torch.tensor(v) for k, v in bad.items()})
    message, _, where = str(ours_error.value).rpartition("\n  in load_state_dict, at ")
    assert message == str(theirs_error.value).replace("torch.Size", "tracegrad.Size")
    assert where.startswith(f"{__file__}:")  # our last line: the user's line
    assert str(ours_error.value).startswith("Error(s) in loading state_dict for Linear:\n\t")
    partial = {"weight": np.ones((3, 2), np.float32), "extra": np.zeros(1, np.float32)}
    result = ours.load_state_dict({k: tracegrad.tensor(v) for k, v in partial.items()},
                                  strict=False)
    expected = theirs.load_state_dict({k: torch.tensor(v) for k, v in partial.items()},
                                      strict=False)
    assert repr(result) == repr(expected)
    assert result.missing_keys == ["bias"] and result.unexpected_keys == ["extra"]
    assert ours.weight.tolist() == [[1.0, 1.0]] * 3  # what matched was loaded


def test_load_state_dict_nested_unexpected_and_missing_keys(torch):
    def build(lib):
        return lib.nn.Sequential(lib.nn.Linear(2, 2), lib.nn.Sequential(lib.nn.Linear(2, 1)))

    ours, theirs = build(tracegrad), build(torch)
    state = {"0.weight": np.zeros((2, 2), np.float32), "1.0.bias": np.zeros(1, np.float32),
             "1.1.weight": np.zeros(1, np.float32), "2.weight": np.zeros(1, np.float32)}
    result = ours.load_state_dict({k: tracegrad.tensor(v) for k, v in state.items()}, False)
    expected = theirs.load_state_dict({k: torch.tensor(v) for k, v in state.items()}, False)
    assert repr(result) == repr(expected)


# --- modes, conversions, containers ---
def test_train_eval_zero_grad_apply_and_to():
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(), nn.Sequential(nn.Linear(2, 1)))
    assert net.training and all(m.training for m in net.modules())
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    assert net[2][0].training
    net(tracegrad.ones(1, 2)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(p.grad is not None and p.grad.sum().item() == 0 for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "Dropout", "Linear", "Sequential", "Sequential"]
    weight = net[0].weight
    assert net.double() is net and net[0].weight is weight
    assert weight.dtype is tracegrad.float64 and net(tracegrad.ones(1, 2, dtype=tracegrad.double)
                                                     ).dtype is tracegrad.float64
    net.float()
    assert weight.dtype is tracegrad.float32
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())


def test_sequential_and_module_list_behave_like_lists():
    a, b, c = nn.Linear(1, 1), nn.ReLU(), nn.Tanh()
    seq = nn.Sequential(a, b)
    assert len(seq) == 2 and seq[0] is a and seq[-1] is b and list(seq) == [a, b]
    seq.append(c)
    assert seq[2] is c and isinstance(seq[1:], nn.Sequential) and len(seq[1:]) == 2
    del seq[0]
    assert list(seq) == [b, c] and [n for n, _ in seq.named_children()] == ["0", "1"]
    with pytest.raises(IndexError, match="index 5 is out of range"):
        seq[5]
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    layers.append(nn.ReLU())
    assert len(layers) == 4 and len(list(layers.parameters())) == 6
    assert isinstance(layers[:2], nn.ModuleList)
    holder = nn.Module()
    holder.layers = layers
    assert [n for n, _ in holder.named_parameters()][:2] == ["layers.0.weight", "layers.0.bias"]


def test_forward_hooks():
    lin = nn.Linear(2, 2)
    calls = []
    handle = lin.register_forward_hook(lambda m, args, out: calls.append(out.shape) or out * 0)
    assert lin(tracegrad.ones(1, 2)).sum().item() == 0.0
    handle.remove()
    assert lin(tracegrad.ones(1, 2)).sum().item() != 0.0 and len(calls) == 1


# --- repr ---
def _reprs(lib):
    n = lib.nn
    return [
        n.Linear(2, 3), n.Linear(2, 3, bias=False), n.ReLU(), n.ReLU(inplace=True), n.GELU(),
        n.GELU("tanh"), n.Tanh(), n.Sigmoid(), n.SiLU(), n.Softplus(), n.Softmax(dim=-1),
        n.LogSoftmax(1), n.Identity(), n.Flatten(), n.Dropout(), n.Dropout(0.1, inplace=True),
        n.LayerNorm(3), n.LayerNorm((3, 4), elementwise_affine=False),
        n.LayerNorm(3, bias=False), n.Embedding(10, 3), n.Embedding(10, 3, padding_idx=0),
        n.Embedding(10, 3, max_norm=1.0), n.MSELoss(), n.CrossEntropyLoss(), n.NLLLoss(),
        n.Sequential(n.Linear(2, 3), n.ReLU(), n.Linear(3, 3), n.Linear(3, 3),
                     n.Sequential(n.Tanh())),
        n.ModuleList([n.Linear(2, 2) for _ in range(3)] + [n.ReLU()]), n.ModuleList(),
        n.Sequential(),
    ]


def test_reprs_equal_torch(torch):
    for ours, theirs in zip(_reprs(tracegrad), _reprs(torch)):
        assert repr(ours) == repr(theirs)


def test_custom_module_repr_with_extra_repr_and_children():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
            self.head = nn.Linear(3, 1)

        def extra_repr(self):
            return "note=1"

    assert repr(Net()) == (
        "Net(\n  note=1\n  (body): Sequential(\n    (0): Linear(in_features=2, out_features=3, "
        "bias=True)\n    (1): ReLU()\n  )\n  (head): Linear(in_features=3, out_features=1, "
        "bias=True)\n)")


# --- initialisation ---
def test_default_initialisation_statistics():
    tracegrad.manual_seed(0)
    lin = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    w, b = lin.weight._data, lin.bias._data
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.02 * bound  # uniform on ±bound
    assert abs(w.mean()) < 0.01 * bound and np.abs(w).max() > 0.99 * bound
    emb = nn.Embedding(1000, 100, padding_idx=3)
    e = emb.weight._data
    assert abs(e.mean()) < 0.01 and abs(e.std() - 1) < 0.01 and not e[3].any()
    ln = nn.LayerNorm(5)
    assert ln.weight.tolist() == [1.0] * 5 and ln.bias.tolist() == [0.0] * 5
    assert lin.weight.dtype is tracegrad.float32 and lin.weight.requires_grad


def test_init_functions(torch):
    w = tracegrad.empty(50, 80)
    nn.init.xavier_uniform_(w, gain=2.0)
    assert np.abs(w._data).max() <= 2.0 * math.sqrt(6 / 130)
    nn.init.kaiming_uniform_(w, mode="fan_out", nonlinearity="relu")
    assert np.abs(w._data).max() <= math.sqrt(2) * math.sqrt(3 / 50)
    assert nn.init.constant_(w, 0.5)._data.mean() == 0.5
    assert nn.init.zeros_(w).sum().item() == 0 and nn.init.ones_(w).sum().item() == 4000
    nn.init.normal_(w, 2.0, 0.5)
    assert abs(w._data.mean() - 2.0) < 0.05 and abs(w._data.std() - 0.5) < 0.05
    nn.init.uniform_(w, -3.0, -2.0)
    assert w._data.min() >= -3.0 and w._data.max() <= -2.0
    for name, param in [("linear", None), ("tanh", None), ("relu", None),
                        ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None),
                        ("sigmoid", None)]:
        assert nn.init.calculate_gain(name, param) == pytest.approx(
            torch.nn.init.calculate_gain(name, param))
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        nn.init.xavier_uniform_(tracegrad.empty(3))
    p = nn.Parameter(tracegrad.zeros(3))
    nn.init.ones_(p)  # initialisers work on leaves that require grad
    assert p.requires_grad and p.tolist() == [1.0] * 3


# --- clipping ---
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(torch, norm_type, max_norm):
    grads = [np.random.default_rng(i).standard_normal(s).astype(np.float32)
             for i, s in enumerate([(3, 4), (4,), (2, 2)])]
    ours = [nn.Parameter(tracegrad.zeros(*g.shape)) for g in grads]
    theirs = [torch.nn.Parameter(torch.zeros(*g.shape)) for g in grads]
    for p, tp, g in zip(ours, theirs, grads):
        p.grad, tp.grad = tracegrad.tensor(g), torch.tensor(g)
    total = nn.utils.clip_grad_norm_(ours, max_norm, norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    close(total, expected)
    for p, tp in zip(ours, theirs):
        close(p.grad, tp.grad)


def test_clip_grad_value_and_edge_cases(torch):
    g = np.array([-3.0, 0.5, 2.0], np.float32)
    p, tp = nn.Parameter(tracegrad.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    p.grad, tp.grad = tracegrad.tensor(g), torch.tensor(g)
    assert nn.utils.clip_grad_value_(p, 1.0) is None
    torch.nn.utils.clip_grad_value_(tp, 1.0)
    close(p.grad, tp.grad)
    assert nn.utils.clip_grad_norm_([nn.Parameter(tracegrad.zeros(2))], 1.0).item() == 0.0
    p.grad = tracegrad.tensor([math.inf, 0.0, 0.0])
    with pytest.raises(RuntimeError, match="is non-finite, so it cannot be clipped"):
        nn.utils.clip_grad_norm_(p, 1.0, error_if_nonfinite=True)


def test_a_model_trains_end_to_end():
    tracegrad.manual_seed(0)
    x = tracegrad.randn(64, 2)
    y = ((x[:, 0] * x[:, 1]) > 0).long()
    net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))
    opt = tracegrad.optim.Adam(net.parameters(), lr=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(150):
            opt.zero_grad()
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
    assert loss.item() < 0.2
