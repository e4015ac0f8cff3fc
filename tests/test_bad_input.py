"""Bad input: a specific error that names the op, the shapes and the user's line, and no
harm done (SPEC §3.3 "Errors", §5 "Bad input never corrupts state").

One table, one row per kind of bad input. Every row runs three ways: eagerly, inside a
`tracegrad.compile`d function (after good calls have built a native variant, so the bad
call must get past the guards or the value guards), and, where PyTorch is installed, in
PyTorch, whose exception type ours must be an instance of. After the error, the inputs,
parameters, `.grad`, optimizer state and the compiled function's variants are exactly as
before. Then the things that must *not* raise: NaN and infinity propagate as in PyTorch
(and `detect_anomaly` names the op that made one in backward), and empty tensors compute.

Running out of memory is `tracegrad.OutOfMemoryError`, a `RuntimeError` (PyTorch's type
for "DefaultCPUAllocator: can't allocate memory") that is also a `MemoryError` (NumPy's),
whose message says how many bytes for which shape, in which op, at which line.
"""

from __future__ import annotations

import copy
import functools
import inspect
import warnings
from dataclasses import dataclass

import numpy as np
import pytest

import tracegrad
from tracegrad.compiled import CompiledFunction

nn = tracegrad.nn
F = nn.functional
BIG = 10**7  # BIG x BIG floats are 400 TB: no machine can allocate them (or tries long)


@dataclass
class Bad:
    """One bad call: `call(T, *args(T))` raises, for T the tracegrad or torch module."""

    id: str
    error: type  # what we raise (a subclass of what PyTorch raises)
    message: str  # our first line says this (PyTorch's wording where it has one)
    op: str  # the op the second line names
    shapes: str  # the operands as the message describes them
    args: object  # T -> the bad arguments
    call: object  # (T, *args) -> result; one line, which the message must name
    good: object = None  # T -> arguments of the same kind that work (compiled warm-up)


@functools.lru_cache
def linear(T, features):
    """One layer per library: a compiled function's guards check which module it is given."""
    T.manual_seed(0)
    return T.nn.Linear(features, 2)


def big(T, rows, cols):
    return T.ones(rows, 1), T.ones(1, cols)


BAD = [
    # --- shapes ---
    Bad("add: shapes do not broadcast", RuntimeError, "The size of tensor a (3) must match the "
        "size of tensor b (4) at non-singleton dimension 0", "add", "[3] (float32) and [4] "
        "(float32)", lambda T: (T.ones(3), T.ones(4)), lambda T, a, b: a + b,
        lambda T: (T.ones(3), T.ones(3))),
    Bad("matmul: inner sizes differ", RuntimeError, "mat1 and mat2 shapes cannot be multiplied "
        "(3x4 and 5x6)", "matmul", "[3, 4] (float32) and [5, 6] (float32)",
        lambda T: (T.ones(3, 4), T.ones(5, 6)), lambda T, a, b: a @ b,
        lambda T: (T.ones(3, 4), T.ones(4, 6))),
    Bad("reshape: wrong number of elements", RuntimeError, "shape '[5, 3]' is invalid for input "
        "of size 12", "reshape", "[3, 4] (float32)",
        lambda T: (T.ones(3, 4),), lambda T, x: x.reshape(5, 3) * 2,
        lambda T: (T.ones(3, 5),)),
    Bad("view: -1 cannot be inferred", RuntimeError, "shape '[-1, 5]' is invalid for input of "
        "size 12", "view", "[3, 4] (float32)",
        lambda T: (T.ones(3, 4),), lambda T, x: x.view(-1, 5) * 2, lambda T: (T.ones(2, 5),)),
    Bad("view: memory layout does not allow it", RuntimeError, "view size is not compatible "
        "with input tensor's size and stride", "view", "[4, 3] (float32)",
        lambda T: (T.ones(3, 4),), lambda T, x: x.t().view(12) * 2),
    Bad("cat: sizes differ off the cat dimension", RuntimeError, "Sizes of tensors must match "
        "except in dimension 0. Expected size 3 but got size 4 for tensor number 1 in the list.",
        "concat", "[2, 3] (float32) and [2, 4] (float32)",
        lambda T: (T.ones(2, 3), T.ones(2, 4)), lambda T, a, b: T.cat([a, b]),
        lambda T: (T.ones(2, 3), T.ones(5, 3))),
    Bad("stack: sizes differ", RuntimeError, "stack expects each tensor to be equal size, but "
        "got [2] at entry 0 and [3] at entry 1", "stack", "[2] (float32) and [3] (float32)",
        lambda T: (T.ones(2), T.ones(3)), lambda T, a, b: T.stack([a, b]),
        lambda T: (T.ones(2), T.ones(2))),
    Bad("cross_entropy: target batch differs", ValueError, "Expected input batch_size (4) to "
        "match target batch_size (3).", "cross_entropy", "[4, 3] (float32) and [3] (int64)",
        lambda T: (T.ones(4, 3), T.tensor([0, 1, 2])),
        lambda T, x, t: T.nn.functional.cross_entropy(x, t),
        lambda T: (T.ones(4, 3), T.tensor([0, 1, 2, 0]))),
    Bad("Linear: wrong number of input features", RuntimeError, "mat1 and mat2 shapes cannot "
        "be multiplied (3x5 and 4x2)", "matmul", "[3, 5] (float32) and [4, 2] (float32)",
        lambda T: (linear(T, 4), T.ones(3, 5)), lambda T, layer, x: layer(x),
        lambda T: (linear(T, 4), T.ones(3, 4))),
    Bad("layer_norm: normalized shape differs", RuntimeError, "Given normalized_shape=[4], "
        "expected input with shape [*, 4], but got input of size[2, 3]", "layer_norm",
        "[2, 3] (float32)", lambda T: (T.ones(2, 3),),
        lambda T, x: T.nn.functional.layer_norm(x, (4,)), lambda T: (T.ones(2, 4),)),
    Bad("add_: result does not fit in place", RuntimeError, "output with shape [3] doesn't "
        "match the broadcast shape [2, 3]", "add_", "[3] (float32) and [2, 3] (float32)",
        lambda T: (T.zeros(3), T.ones(2, 3)), lambda T, x, y: x.add_(y),
        lambda T: (T.zeros(3), T.ones(3))),
    Bad("setitem: value does not fit", RuntimeError, "shape mismatch: value tensor of shape "
        "[2] cannot be broadcast to indexing result of shape [3]", "index_put",
        "[3, 3] (float32) and [2] (float32)",
        lambda T: (T.zeros(3, 3), T.ones(2)), lambda T, x, v: x.__setitem__(0, v),
        lambda T: (T.zeros(3, 3), T.ones(3))),
    Bad("index: out of range (a value guard)", IndexError, "index 3 is out of bounds for "
        "dimension 0 with size 3", "index", "[3, 2] (float32) and [2] (int64)",
        lambda T: (T.ones(3, 2), T.tensor([0, 3])), lambda T, x, i: x[i] * 2,
        lambda T: (T.ones(3, 2), T.tensor([0, 2]))),
    Bad("gather: index out of range (a value guard)", RuntimeError, "index 5 is out of bounds "
        "for dimension 1 with size 2", "gather", "[3, 2] (float32) and [3, 1] (int64)",
        lambda T: (T.ones(3, 2), T.tensor([[0], [5], [1]])), lambda T, x, i: x.gather(1, i),
        lambda T: (T.ones(3, 2), T.tensor([[0], [1], [1]]))),
    Bad("cross_entropy: target out of range (a value guard)", IndexError, "Target 5 is out of "
        "bounds.", "cross_entropy", "[4, 3] (float32) and [4] (int64)",
        lambda T: (T.ones(4, 3), T.tensor([0, 1, 5, 0])),
        lambda T, x, t: T.nn.functional.cross_entropy(x, t),
        lambda T: (T.ones(4, 3), T.tensor([0, 1, 2, 0]))),
    # --- dtypes ---
    Bad("requires_grad_ on an integer tensor", RuntimeError, "floating point", "requires_grad",
        "[2] (int64)", lambda T: (T.tensor([1, 2]),), lambda T, x: x.requires_grad_() * 2),
    Bad("tensor(requires_grad=True) of integers", RuntimeError, "floating point",
        "requires_grad", "[2] (int64)",
        lambda T: (), lambda T: T.tensor([1, 2], requires_grad=True)),
    Bad("index with a float tensor", IndexError, "tensors used as indices must be long, int, "
        "byte or bool tensors", "index", "[3] (float32) and [2] (float32)",
        lambda T: (T.ones(3), T.tensor([0.0, 1.0])), lambda T, x, i: x[i] * 2,
        lambda T: (T.ones(3), T.tensor([0, 1]))),
    Bad("cross_entropy: float targets of the wrong shape", RuntimeError,
        "Expected target size [4, 3], got [4]", "cross_entropy",
        "[4, 3] (float32) and [4] (float32)", lambda T: (T.ones(4, 3), T.tensor([0.0, 1, 2, 0])),
        lambda T, x, t: T.nn.functional.cross_entropy(x, t),
        lambda T: (T.ones(4, 3), T.tensor([0, 1, 2, 0]))),
    Bad("matmul: int64 @ float32", RuntimeError, "expected m1 and m2 to have the same dtype, "
        "but got: int64 != float32", "matmul", "[3] (int64) and [3] (float32)",
        lambda T: (T.ones(3, dtype=T.int64), T.ones(3)), lambda T, a, b: a @ b,
        lambda T: (T.ones(3), T.ones(3))),
    Bad("gather: float index", RuntimeError, "Expected dtype", "gather",
        "[2, 3] (float32) and [2, 1] (float32)", lambda T: (T.ones(2, 3), T.zeros(2, 1)),
        lambda T, x, i: x.gather(1, i), lambda T: (T.ones(2, 3), T.zeros(2, 1, dtype=T.int64))),
    Bad("embedding: float indices", RuntimeError, "Expected tensor for argument #1 'indices' to "
        "have one of the following scalar types: Long, Int", "embedding",
        "[2] (float32) and [3, 2] (float32)", lambda T: (T.tensor([0.0, 1.0]), T.ones(3, 2)),
        lambda T, i, w: T.nn.functional.embedding(i, w),
        lambda T: (T.tensor([0, 1]), T.ones(3, 2))),
    Bad("add_: float result into an int64 tensor", RuntimeError, "can't be cast to the desired "
        "output type Long", "add_", "[3] (int64) and [3] (float32)",
        lambda T: (T.zeros(3, dtype=T.int64), T.ones(3)), lambda T, x, y: x.add_(y),
        lambda T: (T.zeros(3, dtype=T.int64), T.ones(3, dtype=T.int64))),
    # --- not tensors ---
    Bad("add: a string", TypeError, "add(): argument 'other' (position 2) must be Tensor, not "
        "str", "add", "[3] (float32)", lambda T: (T.ones(3), "a"), lambda T, x, y: x + y,
        lambda T: (T.ones(3), T.ones(3))),
    Bad("sub: None", TypeError, "sub(): argument 'other' (position 2) must be Tensor, not "
        "NoneType", "sub", "[3] (float32)", lambda T: (T.ones(3), None), lambda T, x, y: x - y,
        lambda T: (T.ones(3), T.ones(3))),
    Bad("exp: a list", TypeError, "exp(): argument 'input' (position 1) must be Tensor, not "
        "list", "exp", "", lambda T: ([1.0, 2.0],), lambda T, x: T.exp(x),
        lambda T: (T.ones(2),)),
    Bad("matmul: None", TypeError, "matmul(): argument 'other' (position 2) must be Tensor, not "
        "NoneType", "matmul", "[3, 3] (float32)", lambda T: (T.ones(3, 3), None),
        lambda T, a, b: T.matmul(a, b), lambda T: (T.ones(3, 3), T.ones(3, 3))),
    Bad("Linear: None", TypeError, "linear(): argument 'input' (position 1) must be Tensor, not "
        "NoneType", "linear", "[2, 4] (float32)", lambda T: (linear(T, 4), None),
        lambda T, layer, x: layer(x), lambda T: (linear(T, 4), T.ones(3, 4))),
    Bad("cat: None in the list", TypeError, "expected Tensor as element 1 in argument 0, but got "
        "NoneType", "cat", "[2] (float32)", lambda T: (T.ones(2), None),
        lambda T, a, b: T.cat([a, b]), lambda T: (T.ones(2), T.ones(2))),
    Bad("cross_entropy: a list of targets", TypeError, "argument 'target' (position 2) must be "
        "Tensor, not list", "cross_entropy", "[4, 3] (float32)",
        lambda T: (T.ones(4, 3), [0, 1, 2, 0]), lambda T, x, t: T.nn.functional.cross_entropy(x, t),
        lambda T: (T.ones(4, 3), T.tensor([0, 1, 2, 0]))),
    Bad("tensor: a string", TypeError, "Could not infer dtype of str", "tensor", "",
        lambda T: ("abc",), lambda T, data: T.tensor(data) * 2, lambda T: (1.0,)),
    Bad("tensor: None", RuntimeError, "Could not infer dtype of NoneType", "tensor", "",
        lambda T: (None,), lambda T, data: T.tensor(data) * 2, lambda T: (1.0,)),
    Bad("zeros: a string size", TypeError, "zeros(): argument 'size' (position 1) must be tuple "
        "of ints, not str", "zeros", "", lambda T: ("a",), lambda T, n: T.zeros(n) * 2,
        lambda T: (3,)),
    Bad("reshape: a string shape", TypeError, "reshape(): argument 'shape' (position 1) must be "
        "tuple of ints, not str", "reshape", "[3] (float32)", lambda T: (T.ones(3), "a"),
        lambda T, x, shape: x.reshape(shape) * 2, lambda T: (T.ones(3), 3)),
    # --- empty tensors that cannot be reduced ---
    Bad("max of an empty tensor", RuntimeError, "max(): Expected reduction dim to be specified "
        "for input.numel() == 0. Specify the reduction dim with the 'dim' argument.", "max",
        "[0] (float32)", lambda T: (T.zeros(0),), lambda T, x: x.max() * 2,
        lambda T: (T.zeros(2),)),
    Bad("argmax along an empty dim", IndexError, "argmax(): Expected reduction dim 0 to have "
        "non-zero size.", "argmax", "[0, 3] (float32)", lambda T: (T.zeros(0, 3),),
        lambda T, x: x.argmax(dim=0) * 2, lambda T: (T.zeros(2, 3),)),
    # --- more memory than there is ---
    Bad("zeros: 400 TB", tracegrad.OutOfMemoryError, "can't allocate memory: you tried to "
        "allocate 400000000000000 bytes", "zeros", "shape [10000000, 10000000] (float32)",
        lambda T: (), lambda T: T.zeros(BIG, BIG)),
    Bad("randn: 400 TB", tracegrad.OutOfMemoryError, "can't allocate memory: you tried to "
        "allocate 400000000000000 bytes", "randn", "shape [10000000, 10000000] (float32)",
        lambda T: (), lambda T: T.randn(BIG, BIG)),
    Bad("empty int64: 800 TB", tracegrad.OutOfMemoryError, "can't allocate memory: you tried to "
        "allocate 800000000000000 bytes", "empty", "shape [10000000, 10000000] (int64)",
        lambda T: (), lambda T: T.empty(BIG, BIG, dtype=T.int64)),
    Bad("matmul: a 400 TB result", tracegrad.OutOfMemoryError, "can't allocate memory: you "
        "tried to allocate 400000000000000 bytes", "matmul",
        "[10000000, 1] (float32) and [1, 10000000] (float32)", lambda T: big(T, BIG, BIG),
        lambda T, a, b: a @ b, lambda T: big(T, 3, 3)),
]


# --- what "no harm done" compares ---------------------------------------------------------

def snapshot(*things) -> list:
    """Everything a bad call could have changed: tensors' values, `.grad`, version counters
    and `requires_grad`; modules' parameters; optimizers' state_dict; compiled functions'
    variants, guards, fallback and events (what `explain()` reports)."""
    taken = []
    for thing in things:
        if isinstance(thing, tracegrad.Tensor):
            grad = thing._grad
            taken.append(("tensor", thing._data.copy(), thing._version[0], thing._requires_grad,
                          None if grad is None else (id(grad), grad._data.copy())))
        elif isinstance(thing, nn.Module):
            taken.append(("module", snapshot(*thing.parameters(), *thing.buffers())))
        elif isinstance(thing, tracegrad.optim.Optimizer):
            taken.append(("optimizer", _plain(thing.state_dict())))
        elif isinstance(thing, CompiledFunction):
            taken.append(("compiled", [id(v) for v in thing.variants],
                          [v.describe_guards() for v in thing.variants], thing.fallback_reason,
                          list(thing.events)))
        elif isinstance(thing, (list, tuple)):
            taken.append(("sequence", snapshot(*thing)))
    return taken


def _plain(value):
    """A deep copy in which tensors are NumPy arrays (compared by value)."""
    if isinstance(value, tracegrad.Tensor):
        return ("T", value._data.copy(), value.dtype)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return copy.deepcopy(value)


def assert_same(before, after) -> None:
    assert _equal(before, after), "the bad call changed state"


def _equal(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and \
            a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_equal, a, b))
    return a == b


def check_message(error: Exception, bad: Bad, line: int) -> None:
    message = str(error)
    first, _, rest = message.partition("\n")
    assert bad.message in first
    assert f"\n  in {bad.op}" in message, message
    assert bad.shapes in message, message
    assert rest.endswith(f"test_bad_input.py:{line}"), message  # the row's own line


def line_of(bad: Bad) -> int:
    return bad.call.__code__.co_firstlineno


# --- eager, compiled, PyTorch ---------------------------------------------------------------

@pytest.mark.parametrize("bad", BAD, ids=[b.id for b in BAD])
def test_eager_error_names_op_shapes_and_line_and_changes_nothing(bad):
    args = bad.args(tracegrad)
    before = snapshot(*args)
    with pytest.raises(bad.error) as caught:
        bad.call(tracegrad, *args)
    check_message(caught.value, bad, line_of(bad))
    assert_same(before, snapshot(*args))


@pytest.mark.parametrize("bad", BAD, ids=[b.id for b in BAD])
def test_compiled_error_is_the_eager_error_and_keeps_the_variants(bad):
    def function(*args):
        return bad.call(tracegrad, *args)

    compiled = tracegrad.compile(function)
    if bad.good is not None:  # a native variant first: the bad call must get past it
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no fallback, no interpreter
            for _ in range(2):
                good = bad.good(tracegrad)
                expected = bad.call(tracegrad, *bad.good(tracegrad))
                got = compiled(*good)
        assert len(compiled.variants) == 1 and compiled.fallback_reason is None
        _assert_results_equal(got, expected)
    args = bad.args(tracegrad)
    before = snapshot(compiled, *args)
    with pytest.raises(bad.error) as caught:
        compiled(*args)
    check_message(caught.value, bad, line_of(bad))
    assert_same(before, snapshot(compiled, *args))
    if bad.good is not None:  # the variant still runs the good calls, with no new trace
        _assert_results_equal(compiled(*bad.good(tracegrad)),
                              bad.call(tracegrad, *bad.good(tracegrad)))
        assert_same(before[:1], snapshot(compiled))


def _assert_results_equal(got, expected) -> None:
    if isinstance(expected, tracegrad.Tensor):
        np.testing.assert_allclose(got.detach().numpy(), expected.detach().numpy(), rtol=1e-6)


@pytest.mark.parametrize("bad", BAD, ids=[b.id for b in BAD])
def test_pytorch_raises_the_same_kind_of_error(bad):
    torch = pytest.importorskip("torch")
    with pytest.raises(Exception) as caught:  # the type is what is compared
        bad.call(torch, *bad.args(torch))
    assert issubclass(bad.error, type(caught.value)), (type(caught.value), bad.error)


def test_out_of_memory_is_both_runtime_and_memory_error():
    with pytest.raises(MemoryError):
        tracegrad.ones(BIG, BIG)
    with pytest.raises(RuntimeError):
        tracegrad.ones(BIG, BIG)
    assert issubclass(tracegrad.OutOfMemoryError, (RuntimeError, MemoryError))


# --- a compiled training step --------------------------------------------------------------

def make_training(seed=0):
    tracegrad.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    return model, tracegrad.optim.Adam(model.parameters(), lr=1e-2)


def batch(seed=0, n=8):
    rng = np.random.default_rng(seed)
    return (tracegrad.tensor(rng.standard_normal((n, 4)).astype(np.float32)),
            tracegrad.tensor(rng.integers(0, 3, n)))


def zero_grad_first(model, opt):
    """The usual step; `zero_grad()` drops every `.grad` before the bad input is met."""

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)  # the user's line
        loss.backward()
        opt.step()
        return loss

    return step


def zero_grad_late(model, opt):
    """A step that fails, if it fails, before it changes anything (for eager mode, where
    nothing is undone: what ran, ran, as in PyTorch)."""

    def step(x, y):
        loss = F.cross_entropy(model(x), y)  # the user's line
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return step


def line_in(function, text: str) -> int:
    """The line of this file, inside `function`, that holds `text`."""
    lines, start = inspect.getsourcelines(function)
    return start + next(i for i, line in enumerate(lines) if text in line)


BAD_BATCHES = [
    ("features", RuntimeError, "in matmul", lambda x, y: (tracegrad.ones(8, 5), y)),
    ("target batch", ValueError, "in cross_entropy", lambda x, y: (x, y[:7])),
    ("float targets", RuntimeError, "in cross_entropy", lambda x, y: (x, y.float())),
    ("target out of range", IndexError, "in cross_entropy",
     lambda x, y: (x, tracegrad.tensor([0, 1, 2, 5, 0, 1, 2, 0]))),
    ("None input", TypeError, "in linear", lambda x, y: (None, y)),
    ("string targets", TypeError, "in cross_entropy", lambda x, y: (x, "0 1 2")),
    ("integer inputs", RuntimeError, "in matmul", lambda x, y: (x.long(), y)),
]


@pytest.mark.parametrize("make_step", [zero_grad_first, zero_grad_late])
def test_compiled_training_step_bad_batches_change_nothing(make_step):
    model, opt = make_training()
    twin_model, twin_opt = copy.deepcopy((model, opt))
    compiled = tracegrad.compile(make_step(model, opt))
    eager = make_step(twin_model, twin_opt)
    x, y = batch()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):  # the first call makes Adam's state; then one variant
            compiled(x, y)
            eager(x, y)
    assert len(compiled.variants) == 1 and compiled.fallback_reason is None
    line = line_in(make_step, "# the user's line")
    for name, error, op, make in BAD_BATCHES:
        before = snapshot(compiled, model, opt)
        with pytest.raises(error) as caught:
            compiled(*make(x, y))
        message = str(caught.value)
        assert op in message and f"test_bad_input.py:{line}" in message, (name, message)
        assert_same(before, snapshot(compiled, model, opt))
    # the variant is intact: the next good step runs it and matches eager
    loss, expected = compiled(x, y), eager(x, y)
    np.testing.assert_allclose(loss.item(), expected.item(), rtol=1e-5)
    assert len(compiled.variants) == 1
    for p, q in zip(model.parameters(), twin_model.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5,
                                   atol=1e-6)


def test_eager_training_step_bad_batches_change_nothing():
    model, opt = make_training()
    step = zero_grad_late(model, opt)
    x, y = batch()
    step(x, y)
    line = line_in(zero_grad_late, "# the user's line")
    for name, error, op, make in BAD_BATCHES:
        before = snapshot(model, opt)
        with pytest.raises(error) as caught:
            step(*make(x, y))
        message = str(caught.value)
        assert op in message and f"test_bad_input.py:{line}" in message, (name, message)
        assert_same(before, snapshot(model, opt))


# --- state dicts ------------------------------------------------------------------------------

def two_layers():
    tracegrad.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.LayerNorm(2))


STATE_DICTS = [
    ("missing", lambda sd: {k: v for k, v in sd.items() if k != "0.bias"},
     'Missing key(s) in state_dict: "0.bias". '),
    ("unexpected", lambda sd: {**sd, "0.scale": tracegrad.ones(2), "2.weight": tracegrad.ones(1)},
     'Unexpected key(s) in state_dict: "2.weight", "0.scale". '),  # PyTorch's order
    ("mis-shaped", lambda sd: {**sd, "1.weight": tracegrad.ones(3)},
     "size mismatch for 1.weight: copying a param with shape"),
    ("not a tensor", lambda sd: {**sd, "0.weight": [[1.0] * 3] * 2},
     'While copying the parameter named "0.weight", expected torch.Tensor'),
]


@pytest.mark.parametrize("name, change, message", STATE_DICTS, ids=[s[0] for s in STATE_DICTS])
def test_load_state_dict_strict_errors_load_nothing(name, change, message):
    model = two_layers()
    saved = {k: v * 0 + 7 for k, v in model.state_dict().items()}  # all different values
    before = snapshot(model)
    with pytest.raises(RuntimeError) as caught:
        model.load_state_dict(change(saved))
    text = str(caught.value)
    assert text.startswith("Error(s) in loading state_dict for Sequential:") and message in text
    assert "in load_state_dict" in text and "test_bad_input.py:" in text
    assert_same(before, snapshot(model))  # PyTorch copies the good keys first; we copy none


def test_load_state_dict_errors_match_pytorch():
    torch = pytest.importorskip("torch")
    reference = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    for name, change, message in STATE_DICTS[:3]:
        saved = {k: v * 0 + 7 for k, v in reference.state_dict().items()}
        with pytest.raises(RuntimeError, match="Error.s. in loading state_dict") as caught:
            reference.load_state_dict(change_torch(change, saved))
        assert message.split(" copying")[0] in str(caught.value), name


def change_torch(change, saved):
    """`change` made for tracegrad state dicts, applied to a torch one."""
    import torch

    changed = change({k: tracegrad.tensor(v.numpy()) for k, v in saved.items()})
    return {k: torch.tensor(np.asarray(v)) for k, v in changed.items()}


def test_load_state_dict_non_strict_loads_what_fits():
    model = two_layers()
    saved = {k: v * 0 + 7 for k, v in model.state_dict().items()}
    del saved["0.bias"]
    result = model.load_state_dict({**saved, "extra": tracegrad.ones(1)}, strict=False)
    assert result.missing_keys == ["0.bias"] and result.unexpected_keys == ["extra"]
    assert (model[0].weight == 7).all()


def test_optimizer_load_state_dict_mismatch_changes_nothing():
    model, opt = make_training()
    step = zero_grad_first(model, opt)
    step(*batch())
    other = tracegrad.optim.Adam([tracegrad.ones(2, requires_grad=True)])
    before = snapshot(opt)
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        opt.load_state_dict(other.state_dict())
    assert_same(before, snapshot(opt))


# --- a captured tensor that changes shape ----------------------------------------------------

def test_closure_tensor_resized_between_calls_retraces():
    w = tracegrad.ones(3)
    compiled = tracegrad.compile(lambda x: (x * w).sum(0))
    x = tracegrad.ones(4, 3)
    for _ in range(2):
        assert compiled(x).tolist() == [4.0] * 3
    w.data = tracegrad.full((1,), 2.0)  # same tensor object, new shape: broadcasts still
    assert compiled(x).tolist() == [8.0] * 3
    w.data = tracegrad.arange(3.0)  # back to the first shape, new values
    assert compiled(x).tolist() == [0.0, 4.0, 8.0]
    assert len(compiled.variants) == 2


def test_closure_tensor_rebound_to_another_shape_retraces_or_raises():
    w = tracegrad.ones(2, 3)

    def f(x):
        return x + w  # the rebound tensor

    compiled = tracegrad.compile(f)
    for _ in range(2):
        assert compiled(tracegrad.ones(3)).shape == (2, 3)
    w = tracegrad.full((3,), 5.0)
    assert compiled(tracegrad.ones(3)).tolist() == [6.0] * 3
    before = snapshot(compiled)
    w = tracegrad.ones(4)
    with pytest.raises(RuntimeError, match="must match the size") as caught:
        compiled(tracegrad.ones(3))
    assert f"test_bad_input.py:{f.__code__.co_firstlineno + 1}" in str(caught.value)
    assert_same(before, snapshot(compiled))


# --- NaN and infinity propagate, as in PyTorch -----------------------------------------------

SPECIAL = [1.0, float("nan"), float("inf"), -float("inf"), -1.0, 0.0]
PROPAGATING = {
    "exp": lambda T, x: x.exp(), "log": lambda T, x: x.log(), "sqrt": lambda T, x: x.sqrt(),
    "relu": lambda T, x: x.relu(), "sigmoid": lambda T, x: x.sigmoid(),
    "tanh": lambda T, x: x.tanh(), "erf": lambda T, x: T.erf(x), "abs": lambda T, x: x.abs(),
    "clamp": lambda T, x: x.clamp(-0.5, 0.5), "maximum": lambda T, x: T.maximum(x, x * 0),
    "mul by 0": lambda T, x: x * 0, "square": lambda T, x: x**2,
    "where": lambda T, x: T.where(x > 0, x, x * 0), "less than": lambda T, x: (x < 0.5).float(),
    "sum": lambda T, x: x.sum(), "mean": lambda T, x: x.mean(), "max": lambda T, x: x.max(),
    "amax rows": lambda T, x: x.reshape(2, 3).amax(1), "min": lambda T, x: x.min(),
    "softmax": lambda T, x: x.softmax(0), "logsumexp": lambda T, x: x.logsumexp(0),
    "layer_norm": lambda T, x: T.nn.functional.layer_norm(x, (6,)),
    "silu": lambda T, x: T.nn.functional.silu(x),
    "softplus": lambda T, x: T.nn.functional.softplus(x),
    "var": lambda T, x: x.var(), "norm": lambda T, x: x.norm(), "prod": lambda T, x: x.prod(),
}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's "invalid value" notes
@pytest.mark.parametrize("name", PROPAGATING)
def test_nan_and_inf_propagate_like_pytorch_eager_and_compiled(name):
    op = PROPAGATING[name]
    eager = op(tracegrad, tracegrad.tensor(SPECIAL)).numpy()
    compiled = tracegrad.compile(lambda x: op(tracegrad, x))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no fallback
        results = [compiled(tracegrad.tensor(SPECIAL)).numpy() for _ in range(2)]
    for got in results:
        np.testing.assert_allclose(got, eager, rtol=1e-6, equal_nan=True)
    try:
        import torch
    except ImportError:
        return
    expected = op(torch, torch.tensor(SPECIAL)).numpy()
    np.testing.assert_allclose(eager, expected, rtol=1e-6, equal_nan=True)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_nan_in_backward_propagates_and_anomaly_mode_names_the_op():
    def loss_fn(x):
        return (x.sqrt() * 2).sum()  # the op that makes inf in backward

    compiled = tracegrad.compile(loss_fn)
    for fn in (loss_fn, compiled, compiled):  # eager, then the compiled variant twice
        x = tracegrad.tensor([0.0, 4.0], requires_grad=True)
        fn(x).backward()
        assert x.grad.tolist() == [float("inf"), 0.5]  # as PyTorch: no error without anomaly
    variants = snapshot(compiled)
    for fn in (loss_fn, compiled):
        x = tracegrad.tensor([0.0, 4.0], requires_grad=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            with tracegrad.autograd.detect_anomaly():
                loss = fn(x)
                with pytest.raises(RuntimeError) as caught:
                    loss.backward()
        message = str(caught.value)
        assert "Function 'SqrtBackward0' returned inf values in its 0th output." in message
        assert f"line {loss_fn.__code__.co_firstlineno + 1}" in message
    assert_same(variants, snapshot(compiled))


# --- empty tensors compute -------------------------------------------------------------------

EMPTY = {
    "sum of nothing is 0": (lambda T, x, a, b: x.sum(), 0.0),
    "mean of nothing is nan": (lambda T, x, a, b: x.mean(), float("nan")),
    "matmul with k = 0 is zeros": (lambda T, x, a, b: a @ b, np.zeros((3, 4))),
    "sum over a zero dim": (lambda T, x, a, b: a.sum(1), np.zeros(3)),
    "exp of nothing": (lambda T, x, a, b: x.exp(), np.zeros(0)),
    "cat of nothing twice": (lambda T, x, a, b: T.cat([a, a], 1), np.zeros((3, 0))),
    "softmax over a zero dim": (lambda T, x, a, b: a.softmax(1), np.zeros((3, 0))),
    "log_softmax over a zero dim": (lambda T, x, a, b: a.log_softmax(1), np.zeros((3, 0))),
    "mean over a zero dim": (lambda T, x, a, b: a.mean(1), np.full(3, np.nan)),
    "reshape of nothing": (lambda T, x, a, b: b.reshape(4, 0), np.zeros((4, 0))),
}


def empty_inputs(T):
    return T.zeros(0, requires_grad=True), T.ones(3, 0, requires_grad=True), T.ones(0, 4)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("name", EMPTY)
def test_empty_tensors_compute_like_pytorch_eager_and_compiled(name):
    op, expected = EMPTY[name]
    eager = op(tracegrad, *empty_inputs(tracegrad))
    compiled = tracegrad.compile(lambda *args: op(tracegrad, *args))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        results = [compiled(*empty_inputs(tracegrad)) for _ in range(2)]
    for got in [eager, *results]:
        np.testing.assert_array_equal(got.detach().numpy(), np.asarray(expected, np.float32))
    try:
        import torch
    except ImportError:
        return
    np.testing.assert_array_equal(op(torch, *empty_inputs(torch)).detach().numpy(),
                                  np.asarray(expected, np.float32))


def test_backward_through_empty_tensors_gives_empty_gradients():
    def loss_fn(x, a, b):
        return x.sum() + (a @ b).sum()

    compiled = tracegrad.compile(loss_fn)
    for fn in (loss_fn, compiled, compiled):
        x, a, b = empty_inputs(tracegrad)
        fn(x, a, b).backward()
        assert x.grad.shape == (0,) and a.grad.shape == (3, 0)
