"""The autograd toolbox: custom `Function`s, `gradcheck`/`gradgradcheck`, anomaly
detection naming the forward op and the user's line, and the profiler's forward and
backward rows."""

from __future__ import annotations

import inspect
import sys
import warnings

import numpy as np
import pytest

import tracegrad
from tracegrad.autograd import Function, gradcheck, gradgradcheck
from tracegrad.autograd.function import FunctionCtx, once_differentiable
from tracegrad.autograd.gradcheck import GradcheckError


def f64(*shape, seed=0, requires_grad=True):
    data = np.random.default_rng(seed).standard_normal(shape)
    return tracegrad.tensor(data, dtype=tracegrad.float64, requires_grad=requires_grad)


class Cube(Function):
    """x³, backward written with tensor ops (so it is twice differentiable)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * x * x


class WrongCube(Cube):
    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 2 * x * x  # should be 3


class ScaledSoftplus(Function):
    """Two tensor inputs and a Python number; saves its output too."""

    @staticmethod
    def forward(ctx, x, w, scale: float):
        out = (x * w).exp().log1p() * scale
        ctx.save_for_backward(x, w)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        s = (x * w).sigmoid() * ctx.scale * grad
        return s * w, (s * x).sum(0), None


class SortWithIndices(Function):
    """Two outputs, the second (indices) non-differentiable."""

    @staticmethod
    def forward(ctx, x):
        order = np.argsort(x._data, kind="stable")
        indices = tracegrad.tensor(order)
        ctx.mark_non_differentiable(indices)
        ctx.save_for_backward(indices)
        return x[indices], indices

    @staticmethod
    def backward(ctx, grad, grad_indices):
        (indices,) = ctx.saved_tensors
        out = tracegrad.zeros_like(grad)
        out[indices] = grad
        return out


def test_custom_function_forward_backward_and_node():
    x = f64(4)
    y = Cube.apply(x)
    assert type(y.grad_fn).__name__ == "CubeBackward" and y.grad_fn.name() == "CubeBackward"
    assert repr(y).endswith("grad_fn=<CubeBackward>)")
    assert y.grad_fn.next_functions[0][0] is x._accumulator()
    y.sum().backward()
    np.testing.assert_allclose(x.grad._data, 3 * x._data ** 2)
    assert isinstance(y.grad_fn, FunctionCtx) and y.grad_fn.needs_input_grad == (True,)


def test_custom_function_under_gradcheck_and_gradgradcheck():
    x = f64(3, 2, seed=1)
    w = f64(2, seed=2)
    assert gradcheck(Cube.apply, (x,))
    assert gradgradcheck(Cube.apply, (x,))
    assert gradcheck(ScaledSoftplus.apply, (x, w, 0.5))
    assert gradgradcheck(ScaledSoftplus.apply, (x, w, 0.5))
    assert gradcheck(lambda t: SortWithIndices.apply(t)[0], (f64(5, seed=3),))


def test_gradcheck_reports_a_wrong_backward():
    x = f64(3, seed=4)
    with pytest.raises(GradcheckError) as error:
        gradcheck(WrongCube.apply, (x,))
    message = str(error.value)
    assert message.startswith("Jacobian mismatch for output 0 with respect to input 0,\n"
                              "numerical:tensor(")
    assert "\nanalytical:tensor(" in message
    assert isinstance(error.value, RuntimeError)
    assert gradcheck(WrongCube.apply, (x,), raise_exception=False) is False
    # the numbers in the message are the Jacobians: diagonal 3x² against 2x²
    numerical = np.diag(3 * x._data ** 2)
    assert np.allclose(np.array(eval(message.split("numerical:tensor(")[1]
                                     .split(", dtype")[0])), numerical, atol=1e-4)


def test_gradcheck_names_the_input_and_output():
    class SecondOutputWrong(Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a * 2, a * b

        @staticmethod
        def backward(ctx, ga, gab):
            _, b = ctx.saved_tensors
            return ga * 2 + gab * b, gab  # the gradient for b should be gab * a

    a, b = f64(2, seed=5), f64(2, seed=6)
    with pytest.raises(GradcheckError, match="for output 1 with respect to input 1,"):
        gradcheck(SecondOutputWrong.apply, (a, b))


def test_gradcheck_on_library_ops_and_warnings():
    x = f64(2, 3, seed=7)
    assert gradcheck(lambda t: tracegrad.nn.functional.layer_norm(t, (3,)), (x,))
    assert gradgradcheck(lambda t: t.softmax(-1), (x,))
    assert gradcheck(lambda t: tracegrad.nn.functional.cross_entropy(
        t, tracegrad.tensor([0, 2])), (x,))
    with pytest.raises(ValueError, match="at least one input tensor to require gradient"):
        gradcheck(lambda t: t * 2, (f64(2, requires_grad=False),))
    with pytest.warns(UserWarning, match="is not a double precision"):
        gradcheck(lambda t: t * 2, (tracegrad.ones(2, requires_grad=True),), eps=1e-2,
                  atol=1e-2)


def test_gradcheck_detects_a_backward_that_ignores_grad_output():
    class Ignores(Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            # right for every one-hot grad_output, but not zero for a zero grad_output
            return grad if grad.abs().sum().item() > 0 else tracegrad.ones_like(grad)

    with pytest.raises(GradcheckError, match="backward not multiplied by grad_output"):
        gradcheck(Ignores.apply, (f64(3),))


def test_double_backward_through_a_custom_function():
    x = tracegrad.tensor(2.0, dtype=tracegrad.float64, requires_grad=True)
    (dx,) = tracegrad.autograd.grad(Cube.apply(x), x, create_graph=True)
    assert dx.item() == 12.0 and dx.requires_grad
    (ddx,) = tracegrad.autograd.grad(dx, x)
    assert ddx.item() == 12.0  # 6x


def test_saved_tensors_are_freed_after_backward():
    x = f64(3)
    y = Cube.apply(x)
    y.sum().backward()
    with pytest.raises(RuntimeError, match="Trying to backward through the graph a second "
                                           "time"):
        _ = y.grad_fn.saved_tensors
    with pytest.raises(RuntimeError, match="Trying to backward through the graph a second"):
        y.sum().backward()
    z = Cube.apply(x)
    z.sum().backward(retain_graph=True)
    z.sum().backward()  # retained: a second pass works
    np.testing.assert_allclose(x.grad._data, 3 * 3 * x._data ** 2)


def test_in_place_change_of_a_saved_tensor_is_detected():
    x = f64(3)
    h = x * 1
    y = Cube.apply(h)
    with tracegrad.no_grad():
        h.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_multiple_outputs_non_differentiable_and_materialized_grads():
    x = f64(4, seed=8)
    values, indices = SortWithIndices.apply(x)
    assert not indices.requires_grad and values.requires_grad
    assert values._output_nr == 0 and values.grad_fn.n_outputs == 2
    (values * tracegrad.arange(4.0, dtype=tracegrad.float64)).sum().backward()
    expected = np.empty(4)
    expected[np.argsort(x._data)] = np.arange(4.0)
    np.testing.assert_allclose(x.grad._data, expected)

    seen = []

    class TwoOutputs(Function):
        @staticmethod
        def forward(ctx, x, materialize):
            ctx.set_materialize_grads(materialize)
            return x * 2, x * 3

        @staticmethod
        def backward(ctx, ga, gb):
            seen.append(gb)
            return ga * 2 if gb is None else ga * 2 + gb * 3, None

    for materialize in (True, False):
        a, _ = TwoOutputs.apply(x, materialize)
        a.sum().backward()
    assert isinstance(seen[0], tracegrad.Tensor) and seen[0].sum().item() == 0
    assert seen[1] is None


def test_needs_input_grad_and_non_tensor_arguments():
    seen = {}

    class Mul(Function):
        @staticmethod
        def forward(ctx, a, b, k):
            seen["needs"] = ctx.needs_input_grad
            return a * b * k

        @staticmethod
        def backward(ctx, g):
            return g, None, None

    a, b = f64(2), f64(2, requires_grad=False)
    out = Mul.apply(a, b, 3.0)
    assert seen["needs"] == (True, False, False)
    assert len(out.grad_fn.next_functions) == 2  # tensors only, as PyTorch shows
    with tracegrad.no_grad():
        assert Mul.apply(a, b, 3.0).grad_fn is None and seen["needs"] == (False,) * 3


def test_backward_errors_match_pytorch_wording():
    class TooMany(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g, g

    class WrongShape(TooMany):
        @staticmethod
        def backward(ctx, g):
            return tracegrad.ones(5, dtype=tracegrad.float64)

    x = f64(3)
    with pytest.raises(RuntimeError, match=r"function TooManyBackward returned an incorrect "
                                           r"number of gradients \(expected 1, got 2\)"):
        TooMany.apply(x).sum().backward()
    with pytest.raises(RuntimeError, match=r"Function WrongShapeBackward returned an invalid "
                                           r"gradient at index 0 - got \[5\] but expected "
                                           r"shape compatible with \[3\]"):
        WrongShape.apply(x).sum().backward()


def test_setup_context_style_and_returning_an_input():
    class Double(Function):
        @staticmethod
        def forward(x):
            return x * 2

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.marker = inputs[0].shape

        @staticmethod
        def backward(ctx, g):
            return g * 2

    class Same(Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            return g * 5

    x = f64(2)
    y = Double.apply(x)
    assert y.grad_fn.marker == x.shape
    same = Same.apply(x)
    assert same is not x and same.grad_fn.name() == "SameBackward"
    (y + same).sum().backward()
    assert x.grad.tolist() == [7.0, 7.0]


def test_once_differentiable_runs_backward_without_recording():
    class Square(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        @once_differentiable
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * x * g

    x = f64(2)
    (dx,) = tracegrad.autograd.grad(Square.apply(x).sum(), x, create_graph=True)
    assert not dx.requires_grad


# --- anomaly detection ---
def _line_of(marker: str) -> int:
    source, _ = inspect.getsourcelines(sys.modules[__name__])
    return next(i for i, line in enumerate(source, 1) if marker in line and "_line_of"
                not in line)


def test_anomaly_mode_names_the_forward_op_and_the_user_line():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with tracegrad.autograd.detect_anomaly():
            x = tracegrad.zeros(1, requires_grad=True)
            y = x.sqrt() * 0  # anomaly: sqrt
            with pytest.raises(RuntimeError) as error:
                y.backward()
    message = str(error.value)
    assert message.startswith("Function 'SqrtBackward0' returned nan values in its 0th output.")
    assert f"{__file__}, line {_line_of('# anomaly: sqrt')}" in message
    assert "y = x.sqrt() * 0" in message


def test_anomaly_mode_with_a_custom_function():
    class Bad(Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            return g * float("inf")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with tracegrad.autograd.detect_anomaly():
            x = tracegrad.ones(2, requires_grad=True)
            y = Bad.apply(x)  # anomaly: custom
            with pytest.raises(RuntimeError) as error:
                y.sum().backward()
    message = str(error.value)
    assert message.startswith("Function 'BadBackward' returned inf values in its 0th output.")
    assert f"line {_line_of('# anomaly: custom')}" in message


def test_without_anomaly_mode_nan_passes_silently():
    x = tracegrad.zeros(1, requires_grad=True)
    (x.sqrt() * 0).backward()
    assert np.isnan(x.grad._data).all()


def test_anomaly_mode_warns_when_enabled():
    with pytest.warns(UserWarning, match="Anomaly Detection has been enabled"), \
            tracegrad.autograd.detect_anomaly():
        pass
    assert not tracegrad.autograd.anomaly_mode.is_anomaly_enabled()


# --- profiler ---
def test_profiler_lists_forward_and_backward_ops():
    x = tracegrad.randn(8, 4, requires_grad=True)
    lin = tracegrad.nn.Linear(4, 3)
    with tracegrad.autograd.profiler.profile() as prof:
        y = Cube.apply(lin(x).relu())
        loss = tracegrad.nn.functional.mse_loss(y, tracegrad.zeros(8, 3))
        loss.backward()
    rows = {row.key: row for row in prof.key_averages()}
    for forward in ("matmul", "relu", "mse_loss", "Cube"):
        assert forward in rows, forward
    for backward in ("MseLossBackward0", "CubeBackward", "AddmmBackward0"):
        assert backward in rows, backward
    assert rows["CubeBackward"].count == 1
    assert all(row.self_cpu_time_total <= row.cpu_time_total + 1e-9 for row in rows.values())
    table = prof.key_averages().table(sort_by="self_cpu_time_total")
    assert table.splitlines()[1].split()[:2] == ["Name", "Self"]
    assert "CubeBackward" in table and "Self CPU time total" in table


def test_profiler_records_nothing_when_inactive_or_disabled():
    x = tracegrad.ones(2, requires_grad=True)
    with tracegrad.autograd.profiler.profile(enabled=False) as prof:
        (x * 2).sum().backward()
    assert len(prof.key_averages()) == 0
    assert not tracegrad.autograd.profiler.state.active
