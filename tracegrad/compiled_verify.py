"""`compile(fn, verify=N)`: the first N compiled calls are checked against eager ones.

The compiled call runs first; then every tensor it could touch (arguments, captured
state, `.grad`s) and the random generator are put back, the function runs eagerly, and
outputs, values and `.grad`s are compared. A difference raises, naming the first
differing value and the IR node that computed it; otherwise eager's result is returned
(so the state after the call is eager's).
"""

from __future__ import annotations

import numpy as np

from . import tracing
from .compiled_variant import GUARD_FAILED
from .random import default_generator
from .tensor import Tensor


class CompileMismatch(RuntimeError):
    """A compiled call disagreed with eager execution (under `verify=N`)."""


def run_and_compare(compiled, variant, args, kwargs):
    touched = _touched(variant, args, kwargs)
    before = _snapshot(touched)
    rng = default_generator.get_state()
    result = variant.run(args, kwargs)
    if result is GUARD_FAILED:
        _restore(before)
        return compiled.fn(*args, **kwargs)
    after_compiled = _snapshot(touched)
    _restore(before)
    default_generator.set_state(rng)
    expected = compiled.fn(*args, **kwargs)
    _compare_results(variant, result, expected)
    for (tensor, data, grad), (_, want, want_grad) in zip(after_compiled, _snapshot(touched)):
        _compare(f"the value of a tensor the step writes (shape {list(data.shape)})", data,
                 want, variant, _write_value(variant, tensor))
        if (grad is None) != (want_grad is None):
            raise CompileMismatch(f"compiled call left .grad {'unset' if grad is None else 'set'}"
                                  f" where eager {'did not' if want_grad is None else 'did'}")
        if grad is not None:
            _compare(".grad of a tensor", grad, want_grad, variant, None)
    return expected


def _touched(variant, args, kwargs) -> list:
    tensors = [t for _, t in tracing.named_arguments(variant.fn, args, kwargs)]
    tensors += [t for t, _ in variant.trace.captured]
    tensors += [t for t, _ in variant.trace.writes]
    tensors += [t for t, _ in variant.trace.grad_writes]
    return list({id(t): t for t in tensors}.values())


def _snapshot(tensors) -> list:
    return [(t, t._data.copy(), None if t._grad is None else t._grad._data.copy())
            for t in tensors]


def _restore(snapshot) -> None:
    for tensor, data, grad in snapshot:
        np.copyto(tensor._data, data)
        tensor._grad = None if grad is None else Tensor._wrap(grad.copy(), tensor.dtype)


def _compare_results(variant, got, want) -> None:
    got_leaves, want_leaves = tracing.flatten(got), tracing.flatten(want)
    values = [v for v in tracing.flatten(variant.trace.outputs) if not tracing.is_scalar(v)]
    tensors = [(g, w) for g, w in zip(got_leaves, want_leaves) if isinstance(w, Tensor)]
    for k, ((g, w), value) in enumerate(zip(tensors, values)):
        _compare(f"output {k}", g._data, w._data, variant, value)


def _compare(what: str, got, want, variant, value) -> None:
    got, want = np.asarray(got), np.asarray(want)
    tolerance = 1e-4 if got.dtype == np.float32 else 1e-9
    if got.shape != want.shape or not np.allclose(got, want, rtol=tolerance, atol=tolerance,
                                                   equal_nan=True):
        raise CompileMismatch(f"compiled and eager results differ in {what}: "
                              f"{_made_by(variant, value)}\ncompiled: {got}\neager:    {want}")


def _made_by(variant, value) -> str:
    for node in variant.graph.nodes:
        if node.out is value:
            return f"computed by IR node {node.out.name} = {node.op}(...) at {node.loc}"
    return "an input of the graph" if value is not None else "(no single IR node)"


def _write_value(variant, tensor):
    for t, value in variant.trace.writes:
        if t is tensor:
            return value
    return None
