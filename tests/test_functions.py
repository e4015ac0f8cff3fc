"""The public functions of SPEC §3.2 and the autograd behaviour of §3.3, driven by the op
table (tests/op_table.py): forward against NumPy, gradients against float64 finite
differences, and everything against PyTorch when it is installed.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
from numeric import EPS, finite_differences
from op_table import CASES, ERRORS, PROMOTIONS, SPEC_FUNCTIONS, Case
from tracegrad.compiler.ops import float32, float64

import tracegrad

# PyTorch computes NaN and infinity silently: a NumPy warning is a bug here.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")
DTYPES = [pytest.param(float32, id="float32"), pytest.param(float64, id="float64")]


def case_params(torch_test: bool = False):
    params = []
    for case in CASES:
        marks = [pytest.mark.xfail(reason=case.xfail_torch, strict=True)] \
            if torch_test and case.xfail_torch else []
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params


def test_every_spec_function_has_a_case():
    names = {c.name for c in CASES}
    covered = {n for n in SPEC_FUNCTIONS
               if n in names or any(c.startswith(n + "/") for c in names)}
    assert sorted(set(SPEC_FUNCTIONS) - covered) == []
    assert len(names) == len(CASES), "case names must be unique"


# --- helpers --------------------------------------------------------------------------


def make_arrays(case: Case, dtype=float64, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(make(rng)) for make in case.inputs]
    return [a.astype(dtype.numpy) if a.dtype.kind == "f" else a for a in arrays]


def as_list(result) -> list:
    return list(result) if isinstance(result, (tuple, list)) else [result]


def float_positions(arrays) -> list:
    return [i for i, a in enumerate(arrays) if a.dtype.kind == "f"]


def tensors(lib, arrays, requires_grad: bool):
    return [lib.tensor(a, requires_grad=requires_grad and a.dtype.kind == "f")
            for a in arrays]


def run(lib, case: Case, arrays, requires_grad=False):
    inputs = tensors(lib, arrays, requires_grad)
    return inputs, as_list(case.fn(lib, *inputs))


def cotangents(outputs, seed=1) -> list:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(tuple(o.shape)) for o in outputs]


def engine_grads(lib, inputs, outputs, cots) -> list:
    """d<outputs, cots>/d(inputs), with zeros where an input is unused."""
    pairs = [(o, c) for o, c in zip(outputs, cots) if o.requires_grad]
    wrt = [t for t in inputs if t.requires_grad]
    if not pairs:
        return [np.zeros(tuple(t.shape)) for t in wrt]
    grads = lib.autograd.grad([o for o, _ in pairs], wrt,
                              grad_outputs=[lib.tensor(c, dtype=o.dtype) for o, c in pairs],
                              allow_unused=True)
    return [np.zeros(tuple(t.shape)) if g is None else g.detach().numpy().astype(np.float64)
            for t, g in zip(wrt, grads)]


# --- forward against NumPy ------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", case_params())
def test_forward_matches_numpy(case, dtype):
    arrays = make_arrays(case, dtype)
    _, outs = run(tracegrad, case, arrays)
    refs = as_list(case.ref(*[a.astype(np.float64) if a.dtype.kind == "f" else a
                              for a in arrays]))
    assert len(outs) == len(refs)
    for out, ref in zip(outs, refs):
        ref = np.asarray(ref)
        assert tuple(out.shape) == ref.shape
        kind = ref.dtype.kind
        if kind == "f":
            assert out.dtype is dtype, f"{case.name}: {out.dtype} from {dtype} inputs"
            rtol, atol = (case.rtol, case.atol) if dtype is float64 else (2e-6, 2e-6)
            np.testing.assert_allclose(out.numpy(), ref, rtol=rtol, atol=atol)
        else:
            assert out.dtype.numpy.kind == kind, f"{case.name}: {out.dtype} vs {ref.dtype}"
            np.testing.assert_array_equal(out.numpy(), ref)


# --- gradients against finite differences ---------------------------------------------


def _finite_differences(case, arrays, cots) -> list:
    def f(xs):
        _, outs = run(tracegrad, case, xs)
        return sum(float(np.sum(o.numpy() * c)) for o, c in zip(outs, cots)
                   if o.dtype.is_floating_point)

    return finite_differences(f, arrays, float_positions(arrays))


GRAD_CASES = [p for p in case_params()
              if p.values[0].grad and p.values[0].finite_differences]


@pytest.mark.parametrize("case", GRAD_CASES)
def test_gradients_match_finite_differences(case):
    arrays = make_arrays(case, float64)
    inputs, outs = run(tracegrad, case, arrays, requires_grad=True)
    assert any(o.requires_grad for o in outs), f"{case.name}: output does not require grad"
    cots = cotangents(outs)
    grads = engine_grads(tracegrad, inputs, outs, cots)
    expected = _finite_differences(case, arrays, cots)
    for k, (g, e) in enumerate(zip(grads, expected)):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6,
                                   err_msg=f"{case.name}: gradient of input {k}")


# --- against PyTorch -----------------------------------------------------------------


def _dtype_name(t) -> str:
    return str(t.dtype).replace("torch.", "").replace("tracegrad.", "")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", case_params(torch_test=True))
def test_matches_pytorch(case, dtype):
    torch = pytest.importorskip("torch")
    arrays = make_arrays(case, dtype)
    inputs, outs = run(tracegrad, case, arrays, requires_grad=case.grad)
    t_inputs, t_outs = run(torch, case, arrays, requires_grad=case.grad)
    assert len(outs) == len(t_outs)
    rtol, atol = (1e-10, 1e-12) if dtype is float64 else (2e-6, 2e-6)
    for out, t_out in zip(outs, t_outs):
        assert _dtype_name(out) == _dtype_name(t_out)
        assert tuple(out.shape) == tuple(t_out.shape)
        np.testing.assert_allclose(out.detach().numpy(), t_out.detach().numpy(),
                                   rtol=rtol, atol=atol)
        if t_out.grad_fn is not None:
            assert out.grad_fn is not None
            assert out.grad_fn.name() == t_out.grad_fn.name()
        assert out.requires_grad == t_out.requires_grad
    if not case.grad:
        return
    cots = cotangents(outs)
    grads = engine_grads(tracegrad, inputs, outs, cots)
    t_grads = engine_grads(torch, t_inputs, t_outs, cots)
    rtol, atol = (1e-9, 1e-11) if dtype is float64 else (2e-5, 2e-5)
    for k, (g, e) in enumerate(zip(grads, t_grads)):
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol,
                                   err_msg=f"{case.name}: gradient of input {k}")


# --- type promotion -------------------------------------------------------------------

PROMOTION_PARAMS = [pytest.param(fn, dtype, id=name) for name, fn, dtype in PROMOTIONS]


@pytest.mark.parametrize("fn, dtype", PROMOTION_PARAMS)
def test_type_promotion(fn, dtype):
    out = fn(tracegrad)
    assert out.dtype.name == dtype


@pytest.mark.parametrize("fn, dtype", PROMOTION_PARAMS)
def test_type_promotion_matches_pytorch(fn, dtype):
    torch = pytest.importorskip("torch")
    expected = fn(torch)
    assert str(expected.dtype) == f"torch.{dtype}", "the table disagrees with PyTorch"
    # sin and friends may differ from PyTorch's vectorised ones in the last bit
    np.testing.assert_allclose(fn(tracegrad).numpy(), expected.numpy(), rtol=1e-6)


# --- errors ---------------------------------------------------------------------------

ERROR_PARAMS = [pytest.param(fn, kind, message, id=name) for name, fn, kind, message in ERRORS]


@pytest.mark.parametrize("fn, kind, message", ERROR_PARAMS)
def test_error_type_and_message(fn, kind, message):
    with pytest.raises(kind) as info:  # a subclass (ShapeError) is fine
        fn(tracegrad)
    assert str(info.value).splitlines()[0] == message


@pytest.mark.parametrize("fn, kind, message", ERROR_PARAMS)
def test_error_matches_pytorch(fn, kind, message):
    torch = pytest.importorskip("torch")
    with pytest.raises(Exception) as info:
        fn(torch)
    assert type(info.value) is kind
    assert str(info.value).splitlines()[0].replace("torch", "tracegrad") == message


@pytest.mark.parametrize("lib_name", ["tracegrad", "torch"])
def test_all_and_any_of_no_elements(lib_name):
    lib = tracegrad if lib_name == "tracegrad" else pytest.importorskip("torch")
    empty = lib.zeros(0, 3, dtype=lib.bool)
    assert bool(empty.all()) and not bool(empty.any())  # vacuously true; none is true
    assert empty.all(dim=0).tolist() == [True] * 3 and empty.any(dim=0).tolist() == [False] * 3
    assert empty.all(dim=1).shape == (0,) and empty.any(dim=1, keepdim=True).shape == (0, 1)


def test_shape_error_names_both_shapes_and_the_user_line():
    with pytest.raises(RuntimeError) as info:
        tracegrad.ones(2, 3) + tracegrad.ones(4, 3)
    text = str(info.value)
    assert "[2, 3]" in text and "[4, 3]" in text
    assert "test_functions.py" in text


def test_backward_twice_works_with_retain_graph():
    x = tracegrad.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [4.0, 8.0])


# --- creation -------------------------------------------------------------------------

LINSPACE_RANGES = [(0.0, 1.0, 5), (-3.7, 12.1, 101), (0.0, 1.0, 1000), (1e-3, 1e3, 77),
                   (5.0, -5.0, 11), (0.0, 1.0, 1), (2.0, 2.0, 4), (-1.0, 1.0, 2),
                   (0.1, 0.7, 7), (-100.0, 3.3, 1234), (0, 10, 6)]
ARANGE_RANGES = [(10,), (0.0, 1.0, 0.1), (-2.5, 3.3, 0.7), (1, 10, 3), (0.0, 5.0),
                 (1.0, -1.0, -0.25), (0.0, 100.0, 0.37), (-1e3, 1e3, 12.5), (0.5, 7)]


def _bits(array):
    return np.ascontiguousarray(array).view(np.uint8)


@pytest.mark.parametrize("args", LINSPACE_RANGES, ids=str)
def test_linspace_endpoints_and_size(args):
    start, end, steps = args
    out = tracegrad.linspace(start, end, steps)
    assert out.dtype is float32 and tuple(out.shape) == (steps,)
    assert out.numpy()[0] == np.float32(start)
    if steps > 1:
        assert out.numpy()[-1] == np.float32(end)
    np.testing.assert_allclose(out.numpy(), np.linspace(start, end, steps), rtol=1e-6,
                               atol=1e-5 * max(abs(start), abs(end)))


@pytest.mark.parametrize("args", LINSPACE_RANGES, ids=str)
def test_linspace_is_bit_exact_with_pytorch(args):
    torch = pytest.importorskip("torch")
    assert (_bits(tracegrad.linspace(*args).numpy()) == _bits(torch.linspace(*args).numpy())).all()


@pytest.mark.parametrize("args", ARANGE_RANGES, ids=str)
def test_arange_is_bit_exact_with_pytorch(args):
    torch = pytest.importorskip("torch")
    ours, theirs = tracegrad.arange(*args), torch.arange(*args)
    assert _dtype_name(ours) == _dtype_name(theirs)
    assert ours.numpy().shape == theirs.numpy().shape
    assert (_bits(ours.numpy()) == _bits(theirs.numpy())).all()


def test_linspace_and_arange_requires_grad():
    assert tracegrad.linspace(0.0, 1.0, 3, requires_grad=True).requires_grad
    assert tracegrad.arange(0.0, 3.0, requires_grad=True).is_leaf


TENSOR_DTYPES = [
    ([1, 2], "int64"), ([1.0, 2], "float32"), ([True, False], "bool"), (3, "int64"),
    (2.5, "float32"), (True, "bool"), (np.array([1, 2], np.int32), "int32"),
    (np.array([1.0]), "float64"), (np.float64(2.0), "float64"), ([[1, 2], [3, 4.5]], "float32"),
    ([True, 2], "int64"), (np.array([1], np.float32), "float32"), ([], "float32"),
    (np.int64(3), "int64"), (np.array(True), "bool"), ([np.float64(1.0), 2.0], "float64"),
    ([np.int32(1), np.int32(2)], "int32"), ([np.float32(1.5), 2], "float32"),
]


@pytest.mark.parametrize("data, dtype", TENSOR_DTYPES, ids=lambda v: repr(v))
def test_tensor_infers_dtype(data, dtype):
    assert tracegrad.tensor(data).dtype.name == dtype


@pytest.mark.parametrize("data, dtype", TENSOR_DTYPES, ids=lambda v: repr(v))
def test_tensor_dtype_table_matches_pytorch(data, dtype):
    torch = pytest.importorskip("torch")
    assert str(torch.tensor(data).dtype) == f"torch.{dtype}"


def test_tensor_of_tensors_keeps_their_dtype():
    parts = [tracegrad.tensor(1.0, dtype=float64), tracegrad.tensor(2.0, dtype=float64)]
    assert tracegrad.tensor(parts).dtype is float64


# --- views share memory ---------------------------------------------------------------


def _views(lib) -> dict:
    """What each kind of view sees after writes through it and through its base."""
    seen = {}
    x = lib.zeros(2, 3)
    d = x.detach()
    d[0, 0] = 1.0
    seen["detach"] = x[0, 0].item()
    a = np.zeros(3, dtype=np.float32)
    t = lib.from_numpy(a)
    a[1] = 2.0
    t.add_(1.0)
    seen["from_numpy"] = (t[1].item(), float(a[0]))
    t.numpy()[2] = 5.0
    seen["numpy"] = t[2].item()
    v = x.view(6)
    v[5] = 3.0
    x.mul_(2.0)
    seen["view"] = (x[1, 2].item(), v[0].item())
    s = x[1, 1:]
    s.fill_(4.0)
    x[1, 2] = 7.0
    seen["slice"] = (x[1, 1].item(), s[1].item())
    tr = x.t()
    tr[0, 1] = 9.0
    seen["transpose"] = x[1, 0].item()
    x.reshape(-1)[0] = -1.0
    seen["reshape_contiguous"] = x[0, 0].item()
    x.clone()[0, 0] = 100.0
    seen["clone"] = x[0, 0].item()
    return seen


EXPECTED_VIEWS = {"detach": 1.0, "from_numpy": (3.0, 1.0), "numpy": 5.0, "view": (6.0, 2.0),
                  "slice": (4.0, 7.0), "transpose": 9.0, "reshape_contiguous": -1.0,
                  "clone": -1.0}


def test_views_share_memory():
    assert _views(tracegrad) == EXPECTED_VIEWS


def test_views_share_memory_like_pytorch():
    torch = pytest.importorskip("torch")
    assert _views(torch) == EXPECTED_VIEWS


def test_views_share_the_version_counter():
    x = tracegrad.ones(4, requires_grad=True) * 1
    y = x[1:]
    z = y * y  # saves y
    x.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.sum().backward()


# --- autograd -------------------------------------------------------------------------


def test_grad_create_graph_gives_higher_derivatives():
    x = tracegrad.tensor([0.5, -1.5, 2.0], dtype=float64, requires_grad=True)
    y = (x ** 4).sum()
    (d1,) = tracegrad.autograd.grad(y, x, create_graph=True)
    (d2,) = tracegrad.autograd.grad(d1.sum(), x, create_graph=True)
    (d3,) = tracegrad.autograd.grad(d2.sum(), x, create_graph=True)
    (d4,) = tracegrad.autograd.grad(d3.sum(), x)
    v = x.detach().numpy()
    np.testing.assert_allclose(d1.detach().numpy(), 4 * v ** 3)
    np.testing.assert_allclose(d2.detach().numpy(), 12 * v ** 2)
    np.testing.assert_allclose(d3.detach().numpy(), 24 * v)
    np.testing.assert_allclose(d4.numpy(), [24.0, 24.0, 24.0])


def _hessian_vector(lib, values, v):
    x = lib.tensor(values, dtype=lib.float64, requires_grad=True)
    y = (x.sin() * x.exp()).sum() + (x[:, None] * x[None, :]).tanh().sum()
    (g,) = lib.autograd.grad(y, x, create_graph=True)
    (hv,) = lib.autograd.grad(g, x, grad_outputs=lib.tensor(v, dtype=lib.float64))
    return g.detach().numpy(), hv.numpy()


def test_hessian_vector_product_matches_finite_differences():
    values, v = np.array([0.3, -0.8, 1.1]), np.array([1.0, -2.0, 0.5])
    _, hv = _hessian_vector(tracegrad, values, v)
    up, _ = _hessian_vector(tracegrad, values + EPS * v, v)
    down, _ = _hessian_vector(tracegrad, values - EPS * v, v)
    np.testing.assert_allclose(hv, (up - down) / (2 * EPS), rtol=1e-6, atol=1e-8)


def test_hessian_vector_product_matches_pytorch():
    torch = pytest.importorskip("torch")
    values, v = np.array([0.3, -0.8, 1.1]), np.array([1.0, -2.0, 0.5])
    for ours, theirs in zip(_hessian_vector(tracegrad, values, v),
                            _hessian_vector(torch, values, v)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_backward_inputs_restricts_accumulation():
    x = tracegrad.tensor([1.0, 2.0], requires_grad=True)
    y = tracegrad.tensor([3.0, 4.0], requires_grad=True)
    (x * y).sum().backward(inputs=[x])
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 4.0])
    assert y.grad is None
    a = x * 2
    (a * a).sum().backward(inputs=[a])
    np.testing.assert_array_equal(a.grad.numpy(), [4.0, 8.0])
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 4.0])  # unchanged


def test_retain_grad_and_non_leaf_grad_warning():
    x = tracegrad.tensor([1.0, 2.0], requires_grad=True)
    a = x * 3
    b = a + 1
    a.retain_grad()
    (b * b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), 2 * (a.detach().numpy() + 1))
    assert a.retains_grad and not b.retains_grad
    with pytest.warns(UserWarning, match="is not a leaf Tensor"):
        assert b.grad is None
    np.testing.assert_array_equal(x.grad.numpy(), 3 * 2 * (a.detach().numpy() + 1))


def test_gradients_accumulate_into_leaves():
    x = tracegrad.tensor([1.0, 2.0], requires_grad=True)
    (x * 2).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [4.0, 6.0])


def test_tensor_hooks_see_and_replace_gradients():
    x = tracegrad.tensor([1.0, 2.0], requires_grad=True)
    a = x * 2
    seen = []
    a.register_hook(lambda g: seen.append(g.numpy().copy()))
    handle = a.register_hook(lambda g: g * 10)
    x.register_hook(lambda g: g + 1)
    (a * a).sum().backward()
    np.testing.assert_array_equal(seen[0], [4.0, 8.0])
    np.testing.assert_array_equal(x.grad.numpy(), [81.0, 161.0])
    handle.remove()
    x.grad = None
    a = x * 2
    (a * a).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [9.0, 17.0])


def _structure(fn, depth=4):
    """A grad_fn graph as nested (name, children) tuples; leaves by name, constants None."""
    if fn is None or depth == 0:
        return None
    return (fn.name(), tuple(_structure(f, depth - 1) for f, _ in fn.next_functions))


def _graph(lib):
    x = lib.tensor([1.0, 2.0], requires_grad=True)
    w = lib.tensor([1.0, 2.0], requires_grad=True)
    c = lib.tensor([3.0, 4.0])
    y = ((x * 2 + c).exp() @ w).sum() - x.sin().mean()
    return x, y


def test_next_functions_structure():
    x, y = _graph(tracegrad)
    leaf = ("torch::autograd::AccumulateGrad", ())
    assert _structure(y.grad_fn, 8) == (
        "SubBackward0", (
            ("SumBackward0", (("DotBackward0", (
                ("ExpBackward0", (("AddBackward0", (("MulBackward0", (leaf, None)), None)),)),
                leaf)),)),
            ("MeanBackward0", (("SinBackward0", (leaf,)),)),
        ))
    mul = y.grad_fn.next_functions[0][0].next_functions[0][0].next_functions[0][0]
    accumulate = mul.next_functions[0][0].next_functions[0][0].next_functions[0][0]
    assert accumulate.variable is x
    assert y.grad_fn.next_functions[1][0].next_functions[0][0].next_functions[0][0] is \
        accumulate  # one AccumulateGrad per leaf
    assert mul.next_functions[0][1] == 0


def test_next_functions_structure_matches_pytorch():
    torch = pytest.importorskip("torch")
    ours, theirs = _graph(tracegrad)[1], _graph(torch)[1]
    assert _structure(ours.grad_fn, 8) == _structure(theirs.grad_fn, 8)


def _modes(lib) -> list:
    x = lib.ones(2, requires_grad=True)
    seen = []
    with lib.no_grad():
        seen.append((x * 2).requires_grad)
        with lib.enable_grad():
            seen.append((x * 2).requires_grad)
        seen.append(lib.is_grad_enabled())
    seen.append(lib.is_grad_enabled())

    @lib.no_grad()
    def doubled(t):
        return t * 2

    seen.append(doubled(x).requires_grad)
    seen.append(lib.is_grad_enabled())

    @lib.enable_grad()
    def doubled_with_grad(t):
        return t * 2

    with lib.no_grad():
        seen.append(doubled_with_grad(x).requires_grad)
    with lib.set_grad_enabled(False):
        seen.append((x * 2).requires_grad)
    seen.append(lib.is_grad_enabled())

    @lib.set_grad_enabled(False)
    def off(t):
        return t * 2

    seen.append(off(x).requires_grad)
    seen.append(lib.is_grad_enabled())
    lib.set_grad_enabled(False)
    seen.append((x * 2).requires_grad)
    lib.set_grad_enabled(True)
    with lib.inference_mode():
        seen.append((x * 2).requires_grad)
        seen.append(lib.is_inference_mode_enabled())

    @lib.inference_mode()
    def infer(t):
        return t * 2

    seen.append(infer(x).requires_grad)
    seen.append(lib.is_inference_mode_enabled())
    seen.append((x * 2).requires_grad)
    return seen


EXPECTED_MODES = [False, True, False, True, False, True, True, False, True, False, True,
                  False, False, True, False, False, True]


def test_grad_modes_as_context_managers_and_decorators():
    assert _modes(tracegrad) == EXPECTED_MODES


def test_grad_modes_match_pytorch():
    torch = pytest.importorskip("torch")
    assert _modes(torch) == EXPECTED_MODES


def test_no_grad_as_bare_decorator():
    @tracegrad.no_grad
    def doubled(t):
        return t * 2

    assert not doubled(tracegrad.ones(1, requires_grad=True)).requires_grad
    assert tracegrad.is_grad_enabled()


def test_inplace_on_a_leaf_is_allowed_without_recording():
    x = tracegrad.ones(2, requires_grad=True)
    with tracegrad.no_grad():
        x.mul_(3.0)
        x[0] = 5.0
    assert x.is_leaf and x.requires_grad
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [10.0, 6.0])


def test_setitem_drops_a_value_s_leading_ones_as_pytorch_does():
    h = tracegrad.zeros(4, 5)
    h[3] = tracegrad.arange(5.0).reshape(1, 5)  # (1, 5) into a row of shape (5,)
    np.testing.assert_array_equal(h.numpy()[3], np.arange(5.0))
    h[1:3] = tracegrad.ones(1, 1, 5)
    assert h.sum().item() == 20.0


def test_detach_requires_grad_and_detach_():
    x = tracegrad.ones(2, requires_grad=True)
    y = x * 2
    assert not y.detach().requires_grad and y.detach().is_leaf
    y.detach_()
    assert y.is_leaf and not y.requires_grad
    z = tracegrad.ones(2).requires_grad_()
    assert z.requires_grad and z.is_leaf


def test_long_chain_backward_frees_the_graph():
    """100 000 ops: no recursion error, and backward frees what the graph saved.

    The cycle collector is off meanwhile: reference counting alone must free the saved
    values (and the collector's passes over 100 000 live nodes would dominate the time).
    """
    x = tracegrad.tensor([1.0], dtype=float64, requires_grad=True)
    y = x
    saved = None
    gc.disable()
    try:
        for i in range(100_000):
            y = y * 1.00001  # mul saves its tensor input
            if i == 10:
                saved = weakref.ref(y)
        assert saved() is not None, "the graph should keep the intermediate until backward"
        last_node = weakref.ref(y.grad_fn)
        y.sum().backward()
        assert saved() is None, "backward without retain_graph should free saved tensors"
        np.testing.assert_allclose(x.grad.numpy(), [1.00001 ** 100_000], rtol=1e-9)
        del y
        assert last_node() is None, "the graph should go with its output"
    finally:
        gc.enable()


# --- large fused row ops run on native code (tracegrad/native_rows.py) -------------------

ROW_OPS = {
    "softmax": lambda x: tracegrad.softmax(x, dim=-1),
    "log_softmax": lambda x: tracegrad.log_softmax(x, dim=1),
    "layer_norm": lambda x: tracegrad.nn.functional.layer_norm(x, (x.shape[-1],)),
}


@pytest.mark.parametrize("dtype", [float32, float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(ROW_OPS))
def test_large_row_ops_agree_with_the_numpy_kernels(name, dtype, monkeypatch):
    """Above `MIN_ELEMENTS` eager softmax, log_softmax, layer_norm and their backwards run
    on native code: forward and gradient equal the NumPy kernels' to round-off."""
    import importlib

    native_rows = importlib.import_module("tracegrad.native_rows")
    monkeypatch.setattr(native_rows, "_programs", {})  # so what is in it is this test's
    rng = np.random.default_rng(5)
    data = rng.standard_normal((160, 500)) * 3
    weights = rng.standard_normal((160, 500))
    assert data.size >= native_rows.MIN_ELEMENTS
    results = []
    for native in (True, False):
        if not native:
            monkeypatch.setattr(native_rows, "MIN_ELEMENTS", 10 ** 12)
        x = tracegrad.tensor(data, dtype=dtype, requires_grad=True)
        out = ROW_OPS[name](x)
        (out * tracegrad.tensor(weights, dtype=dtype)).sum().backward()
        results.append((out.detach().numpy(), x.grad.numpy()))
    tol = 2e-5 if dtype is float32 else 1e-12
    for got, want in zip(results[0], results[1]):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
    assert any(key[0] == name and program is not None
               for key, program in native_rows._programs.items()), "native code was not used"


# --- eager mode on a large broadcast of one value (tracegrad/eager.py) -------------------

def test_ops_on_a_broadcast_value_compute_one_element(monkeypatch):
    """The backward of `sum` hands on a broadcast of one value; elementwise ops on a large
    one compute that element once, and give what the full computation gives."""
    import importlib

    eager = importlib.import_module("tracegrad.eager")
    calls, on_one_element = [], eager._on_one_element

    def counted(prim, *args):
        calls.append(prim.name)
        return on_one_element(prim, *args)

    monkeypatch.setattr(eager, "_on_one_element", counted)
    data = np.linspace(-2.0, 2.0, 3000)
    grads = []
    for threshold in (eager._ONE_ELEMENT_MIN_SIZE, 10 ** 12):  # then never on one element
        monkeypatch.setattr(eager, "_ONE_ELEMENT_MIN_SIZE", threshold)
        x = tracegrad.tensor(data, dtype=float32, requires_grad=True)
        (tracegrad.sin(x) * 3 + x.exp() / 2).sum().backward()
        grads.append(x.grad.numpy())
    assert calls, "no op ran on one element"
    assert grads[0].dtype == grads[1].dtype == np.float32
    np.testing.assert_array_equal(grads[0], grads[1])


def test_broadcast_values_that_do_not_fit_give_pytorchs_error():
    a, b = tracegrad.ones(1).expand(2000), tracegrad.ones(1).expand(3000)
    with tracegrad.no_grad(), pytest.raises(RuntimeError, match=r"size of tensor a \(2000\) "
                                                                r"must match the size"):
        a + b
