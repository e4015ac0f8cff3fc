"""Check derivatives against central finite differences: `gradcheck`, `gradgradcheck`.

For each input that requires grad and each output, the numerical Jacobian (perturb one
input element by ±eps, take the difference of the outputs) is compared with the
analytical one (one vector-Jacobian product per output element, through autograd).
Rows are input elements, columns output elements, as in PyTorch. Use float64 inputs:
with float32 the differences drown in round-off.

>>> import tracegrad as torch
>>> x = torch.randn(3, dtype=torch.float64, requires_grad=True)
>>> torch.autograd.gradcheck(lambda t: (t.sin() * t).sum(), (x,))
True
>>> torch.autograd.gradgradcheck(lambda t: t.sin() * t, (x,))
True
"""

from __future__ import annotations

import warnings

import numpy as np

# Nothing from tracegrad at module level: `autograd` imports this module while the
# package is still loading (see `_is_tensor`).


class GradcheckError(RuntimeError):
    """Raised by `gradcheck` and `gradgradcheck` when a derivative is wrong."""


def _is_tensor(x) -> bool:
    from ..tensor import Tensor

    return isinstance(x, Tensor)


def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _differentiable(outputs) -> tuple:
    return tuple(o for o in _as_tuple(outputs) if _is_tensor(o) and o.requires_grad)


def _numbers(outputs) -> list:
    """The outputs' values as flat float64 arrays (copies: later calls may overwrite)."""
    return [np.array(o._data, dtype=np.float64).reshape(-1) for o in _as_tuple(outputs)
            if _is_tensor(o)]


def numerical_jacobians(func, inputs: tuple, eps: float) -> list:
    """`[input][output]` arrays of shape (input numel, output numel): central differences."""
    diff_inputs = [x for x in inputs if _is_tensor(x) and x.requires_grad]
    result = []
    for x in diff_inputs:
        columns = []
        for k in range(x.numel()):
            index = np.unravel_index(k, x._data.shape)
            original = x._data[index].copy()
            x._data[index] = original + eps
            plus = _numbers(func(*inputs))
            x._data[index] = original - eps
            minus = _numbers(func(*inputs))
            x._data[index] = original
            columns.append([(p - m) / (2 * eps) for p, m in zip(plus, minus)])
        outputs = _numbers(func(*inputs))
        result.append([np.stack([c[i] for c in columns]) if columns
                       else np.zeros((0, outputs[i].size)) for i in range(len(outputs))])
    return result


def analytical_jacobians(output, diff_inputs: list, check_grad_dtypes: bool) -> list:
    """Per input, (input numel, output numel): row by row vector-Jacobian products."""
    from ..creation import zeros_like
    from . import grad

    jacobians = [np.zeros((x.numel(), output.numel())) for x in diff_inputs]
    for k in range(output.numel()):
        seed = zeros_like(output)
        seed._data.reshape(-1)[k] = 1
        grads = grad(output, diff_inputs, seed, retain_graph=True, allow_unused=True)
        for j, (g, x) in enumerate(zip(grads, diff_inputs)):
            if g is None:
                continue
            if tuple(g.shape) != tuple(x.shape):
                raise GradcheckError("Analytical gradient has incorrect size")
            if check_grad_dtypes and g.dtype is not x.dtype:
                raise GradcheckError("Gradient has dtype mismatch")
            jacobians[j][:, k] = np.asarray(g._data, dtype=np.float64).reshape(-1)
    return jacobians


def _mismatch(analytical, numerical, output_idx: int, input_idx: int) -> str:
    from ..creation import tensor

    return (f"Jacobian mismatch for output {output_idx:d} with respect to input "
            f"{input_idx:d},\nnumerical:{tensor(numerical)}\nanalytical:{tensor(analytical)}\n")


def _check_backward_multiplies_grad_output(outputs: tuple, diff_inputs: list) -> None:
    from ..creation import zeros_like
    from . import grad

    grads = grad(outputs, diff_inputs, [zeros_like(o) for o in outputs], retain_graph=True,
                 allow_unused=True)
    for g in grads:
        if g is not None and np.any(g._data != 0):
            raise GradcheckError("backward not multiplied by grad_output")


def _gradcheck(func, inputs: tuple, eps, atol, rtol, nondet_tol, check_grad_dtypes) -> None:
    diff_inputs = [x for x in inputs if _is_tensor(x) and x.requires_grad]
    if not diff_inputs:
        raise ValueError("gradcheck expects at least one input tensor to require gradient, "
                         "but none of the them have requires_grad=True.")
    for i, x in enumerate(inputs):
        if _is_tensor(x) and x.requires_grad and x.dtype.name != "float64":
            warnings.warn(f"Input #{i} requires gradient and is not a double precision "
                          f"floating point or complex. This check will likely fail if all "
                          f"the inputs are not of double precision floating point or "
                          f"complex. ", UserWarning, stacklevel=3)
    outputs = _as_tuple(func(*inputs))
    numerical = numerical_jacobians(func, inputs, eps)
    tensor_outputs = [o for o in outputs if _is_tensor(o)]
    if not _differentiable(outputs):
        for per_input in numerical:
            if any(np.any(j != 0) for j in per_input):
                raise GradcheckError("Numerical gradient for function expected to be zero")
        return
    # outputs are numbered among the differentiable ones, as in PyTorch's messages
    differentiable = [k for k, o in enumerate(tensor_outputs) if o.requires_grad]
    for i, k in enumerate(differentiable):
        first = analytical_jacobians(tensor_outputs[k], diff_inputs, check_grad_dtypes)
        second = analytical_jacobians(tensor_outputs[k], diff_inputs, check_grad_dtypes)
        for j, (a, n) in enumerate(zip(first, (per_input[k] for per_input in numerical))):
            if not np.allclose(a, n, rtol=rtol, atol=atol):
                raise GradcheckError(_mismatch(a, n, i, j))
        if any(np.abs(a - b).max(initial=0.0) > nondet_tol for a, b in zip(first, second)):
            raise GradcheckError(
                f"Backward is not reentrant, i.e., running backward with same input and "
                f"grad_output multiple times gives different values, although analytical "
                f"gradient matches numerical gradient.The tolerance for nondeterminism was "
                f"{nondet_tol}.")
    _check_backward_multiplies_grad_output(_differentiable(outputs), diff_inputs)


def gradcheck(func, inputs, *, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              raise_exception: bool = True, nondet_tol: float = 0.0,
              check_undefined_grad: bool = True, check_grad_dtypes: bool = False,
              check_batched_grad: bool = False, check_batched_forward_grad: bool = False,
              check_forward_ad: bool = False, check_backward_ad: bool = True,
              fast_mode: bool = False, masked=None) -> bool:
    """True when every analytical Jacobian of `func` at `inputs` matches finite
    differences within `atol + rtol * |numerical|`; otherwise raises `GradcheckError`
    (or returns False with `raise_exception=False`). Use float64 inputs.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([0.5, 1.0], dtype=torch.float64, requires_grad=True)
        >>> torch.autograd.gradcheck(lambda t: (t.sin() * t).sum(), (x,))
        True
        >>> wrong = lambda t: t.detach() * t  # drops the gradient of one factor
        >>> torch.autograd.gradcheck(wrong, (x,), raise_exception=False)
        False
    """
    try:
        _gradcheck(func, _as_tuple(inputs), eps, atol, rtol, nondet_tol, check_grad_dtypes)
    except GradcheckError:
        if raise_exception:
            raise
        return False
    return True


def gradgradcheck(func, inputs, grad_outputs=None, *, eps: float = 1e-6, atol: float = 1e-5,
                  rtol: float = 1e-3, gen_non_contig_grad_outputs: bool = False,
                  raise_exception: bool = True, nondet_tol: float = 0.0,
                  check_undefined_grad: bool = True, check_grad_dtypes: bool = False,
                  check_batched_grad: bool = False, check_fwd_over_rev: bool = False,
                  check_rev_over_rev: bool = True, fast_mode: bool = False,
                  masked: bool = False) -> bool:
    """`gradcheck` of the function `(inputs, grad_outputs) -> vjp`, i.e. second derivatives
    (random `grad_outputs` on [-1, 1] unless given).

    Example::

        >>> import tracegrad as torch
        >>> x = torch.tensor([0.5, 1.0], dtype=torch.float64, requires_grad=True)
        >>> torch.autograd.gradgradcheck(lambda t: t ** 3, (x,))
        True
    """
    from ..random import rand
    from . import grad

    inputs = _as_tuple(inputs)
    if grad_outputs is None:
        grad_outputs = tuple(
            (rand(*o.shape, dtype=o.dtype) * 2 - 1).requires_grad_()
            for o in _differentiable(func(*inputs)))
    grad_outputs = _as_tuple(grad_outputs)
    count = len(grad_outputs)

    def vjp(*args):
        """The input gradients of `func` at `args[:-count]` for grad_outputs `args[-count:]`."""
        outputs = _differentiable(func(*args[:-count]))
        diff_inputs = [x for x in args[:-count] if _is_tensor(x) and x.requires_grad]
        grads = grad(outputs, diff_inputs, list(args[-count:]), create_graph=True,
                     allow_unused=True)
        return tuple(g for g in grads if g is not None)

    return gradcheck(vjp, inputs + grad_outputs, eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception, nondet_tol=nondet_tol,
                     check_grad_dtypes=check_grad_dtypes)
