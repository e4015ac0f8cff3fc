"""Every primitive of the op set, driven by its own `sample` and its entry in the op table.

For each primitive: (a) the NumPy kernel agrees with the shape rule (shape and dtype, in
float32 and float64); (b) calling the primitive on tensors gives the kernel's values;
(c) each derivative rule, run by the autograd engine, agrees with float64 central finite
differences; (d) for smooth primitives, differentiating the rules again (create_graph)
agrees with finite differences of the first gradient.
"""

from __future__ import annotations

import numpy as np
import pytest
from numeric import finite_differences
from op_table import PRIMITIVE_TABLE
from tracegrad.compiler import ops
from tracegrad.compiler.ops import PRIMITIVES, Spec, float32, float64
from tracegrad.compiler.ops.dtypes import from_name, from_numpy

import tracegrad

# PyTorch computes NaN and infinity silently: a NumPy warning is a bug here.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")
NAMES = sorted(PRIMITIVES)


def test_every_primitive_has_an_entry_and_a_sample():
    missing = sorted(set(PRIMITIVES) - set(PRIMITIVE_TABLE))
    assert not missing, f"primitives without an op-table entry: {missing}"
    stale = sorted(set(PRIMITIVE_TABLE) - set(PRIMITIVES))
    assert not stale, f"op-table entries for primitives that no longer exist: {stale}"
    assert [n for n in NAMES if PRIMITIVES[n].sample is None] == []


def sample(name: str, dtype=float64, seed: int = 0):
    """The primitive's sample: float arrays cast to `dtype`, other arrays as they are."""
    prim = PRIMITIVES[name]
    if name not in PRIMITIVE_TABLE:
        pytest.fail(f"primitive {name} has no entry in tests/op_table.py")
    if prim.sample is None:
        pytest.fail(f"primitive {name} has no sample")
    inputs, attrs = prim.sample(np.random.default_rng(seed))
    arrays = [np.asarray(a, dtype=dtype.numpy) if np.asarray(a).dtype.kind == "f"
              else np.asarray(a) for a in inputs]
    return prim, arrays, dict(attrs)


def differentiable(prim, arrays) -> list:
    if not prim.differentiable:
        return []
    return [i for i, a in enumerate(arrays)
            if a.dtype.kind == "f" and (prim.variadic or prim.vjp[i] is not None)]


def vjp_sample(name: str, seed: int = 0):
    prim, arrays, attrs = sample(name, float64, seed)
    for key, value in PRIMITIVE_TABLE[name].vjp_attrs.items():
        attrs[key] = from_name(value) if key == "dtype" else value
    return prim, arrays, attrs


@pytest.mark.parametrize("dtype", [float32, float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_kernel_agrees_with_shape_rule(name, dtype):
    prim, arrays, attrs = sample(name, dtype)
    spec = prim.shape(*[Spec(a.shape, from_numpy(a.dtype)) for a in arrays], **attrs)
    out = np.asarray(prim.kernel(*arrays, **attrs))
    assert out.shape == tuple(spec.shape)
    assert out.dtype == spec.dtype.numpy, f"kernel gives {out.dtype}, rule says {spec.dtype}"


@pytest.mark.parametrize("dtype", [float32, float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_eager_application_gives_kernel_values(name, dtype):
    prim, arrays, attrs = sample(name, dtype)
    expected = np.asarray(prim.kernel(*arrays, **attrs))
    out = prim(*[tracegrad.tensor(a) for a in arrays], **attrs)
    assert isinstance(out, tracegrad.Tensor)
    assert out.dtype.numpy == expected.dtype
    np.testing.assert_array_equal(out.numpy(), expected)


def _cotangent(rng, out_shape):
    return rng.standard_normal(out_shape)


def _engine_vjp(prim, arrays, attrs, wrt, cotangent, create_graph=False):
    """The gradients of <prim(arrays), cotangent> with respect to inputs `wrt`."""
    tensors = [tracegrad.tensor(a, requires_grad=i in wrt) for i, a in enumerate(arrays)]
    out = prim(*tensors, **attrs)
    grads = tracegrad.autograd.grad(out, [tensors[i] for i in wrt],
                                    grad_outputs=tracegrad.tensor(cotangent),
                                    create_graph=create_graph, allow_unused=True)
    return tensors, grads


@pytest.mark.parametrize("name", NAMES)
def test_vjp_matches_finite_differences(name):
    prim, arrays, attrs = vjp_sample(name)
    wrt = differentiable(prim, arrays)
    if not wrt:
        assert not prim.differentiable or prim.vjp[0] is None
        return
    cot = _cotangent(np.random.default_rng(1), np.shape(prim.kernel(*arrays, **attrs)))
    _, grads = _engine_vjp(prim, arrays, attrs, wrt, cot)
    expected = finite_differences(
        lambda xs: float(np.sum(np.asarray(prim.kernel(*xs, **attrs)) * cot)), arrays, wrt)
    for i, g, e in zip(wrt, grads, expected):
        assert g is not None, f"{name}: no gradient for input {i}"
        assert g.shape == arrays[i].shape and g.dtype is float64
        np.testing.assert_allclose(g.numpy(), e, rtol=1e-5, atol=1e-6,
                                   err_msg=f"{name}: gradient of input {i}")


SECOND_ORDER = [n for n in NAMES if PRIMITIVE_TABLE.get(n) and
                PRIMITIVE_TABLE[n].second_order]


def test_second_order_list_is_not_empty():
    assert {"exp", "mul", "matmul", "pow", "prod"} <= set(SECOND_ORDER)


@pytest.mark.parametrize("name", SECOND_ORDER)
def test_second_order_vjp_matches_finite_differences(name):
    prim, arrays, attrs = vjp_sample(name)
    wrt = differentiable(prim, arrays)
    rng = np.random.default_rng(2)
    cot = _cotangent(rng, np.shape(prim.kernel(*arrays, **attrs)))
    weights = [rng.standard_normal(arrays[i].shape) for i in wrt]

    def first(xs, create_graph=False):
        tensors, grads = _engine_vjp(prim, xs, attrs, wrt, cot, create_graph)
        return tensors, grads

    tensors, grads = first(arrays, create_graph=True)
    assert any(g.requires_grad for g in grads), f"{name}: first gradient is not differentiable"
    total = sum((g * tracegrad.tensor(w)).sum() for g, w in zip(grads, weights)
                if g.requires_grad)
    second = tracegrad.autograd.grad(total, [tensors[i] for i in wrt], allow_unused=True)

    def weighted_first(xs):
        _, gs = first(xs)
        return float(sum(np.sum(g.numpy() * w) for g, w in zip(gs, weights)))

    expected = finite_differences(weighted_first, arrays, wrt)
    for i, g, e in zip(wrt, second, expected):
        actual = np.zeros_like(e) if g is None else g.detach().numpy()
        np.testing.assert_allclose(actual, e, rtol=1e-5, atol=1e-6,
                                   err_msg=f"{name}: second derivative, input {i}")


DECOMPOSITIONS = getattr(ops, "DECOMPOSITIONS", {})  # fused primitive -> its composition


@pytest.mark.parametrize("name", sorted(DECOMPOSITIONS))
def test_fused_primitive_agrees_with_its_decomposition(name):
    """A fused primitive and the composition it stands for: same values, same gradients."""
    prim, arrays, attrs = sample(name, float64)
    x = tracegrad.tensor(arrays[0], requires_grad=True)
    fused = prim(x, **attrs)
    composed = DECOMPOSITIONS[name](x, **attrs)
    np.testing.assert_allclose(fused.detach().numpy(), composed.detach().numpy(),
                               rtol=1e-12, atol=1e-12)
    cot = tracegrad.tensor(_cotangent(np.random.default_rng(3), arrays[0].shape))
    (g_fused,) = tracegrad.autograd.grad(fused, x, cot)
    (g_composed,) = tracegrad.autograd.grad(composed, x, cot)
    np.testing.assert_allclose(g_fused.numpy(), g_composed.numpy(), rtol=1e-10, atol=1e-12)


def test_remembered_residuals_never_change_results():
    """gelu and layer_norm leave a value for their backward; an in-place write drops it."""
    from tracegrad.compiler.ops import gelu_slope

    import tracegrad as torch

    x = torch.tensor([0.5, -1.0, 2.0])
    torch.nn.functional.gelu(x, approximate="tanh")  # remembers 1 + tanh(u) for x
    x.add_(1.0)  # x changes in place: the remembered value must not be used
    fresh = torch.tensor([1.5, 0.0, 3.0])
    np.testing.assert_array_equal(gelu_slope(x, approximate="tanh").numpy(),
                                  gelu_slope(fresh, approximate="tanh").numpy())


@pytest.mark.parametrize("shape, target, layout", [
    ((), (3, 4), "contiguous"), ((4,), (3, 4), "contiguous"), ((3, 1), (2, 3, 5), "contiguous"),
    ((1, 1), (0, 4), "contiguous"), ((2, 3), (2, 3), "contiguous"), ((4, 3), (2, 4, 3), "strided"),
    ((3,), (2, 3), "reversed"), ((3,), (4,), "contiguous"), ((2, 3), (3,), "contiguous"),
])
def test_broadcast_view_is_np_broadcast_to(shape, target, layout):
    """expand's kernel: NumPy's read-only view, its values and its errors."""
    from tracegrad.compiler.ops.broadcast_view import broadcast_view

    x = np.arange(float(np.prod(shape))).reshape(shape)
    if layout == "strided":  # not C-contiguous: NumPy's own view
        x = np.asfortranarray(x)
    elif layout == "reversed":
        x = x[::-1]
    try:
        want = np.broadcast_to(x, target)
    except ValueError:
        with pytest.raises(ValueError):
            broadcast_view(x, target)
        return
    got = broadcast_view(x, target)
    assert got.shape == want.shape and got.strides == want.strides
    assert not got.flags.writeable and np.shares_memory(got, x) == np.shares_memory(want, x)
    np.testing.assert_array_equal(got, want)
