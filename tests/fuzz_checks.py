"""The checks of the differential fuzzer (tests/fuzz.py), one per kind of case.

They are self-contained: each reads only NumPy, tracegrad and its arguments, because a
failure is printed as a standalone script that embeds their source (`inspect.getsource`)
and calls the check as the fuzzer did. Each returns None when compiled and eager agree
(or, for `check_gradients`, ("skipped", n)), else (category, message).

>>> import tracegrad
>>> compare("x", tracegrad.ones(2), tracegrad.ones(2), 1e-4, 1e-5) is None
True
"""

from __future__ import annotations

import numpy as np

import tracegrad


def compare(what, got, want, rtol, atol, noise=None, roundoff=4, names=("compiled", "eager")):
    """None if tensor `got` matches `want` (shape, dtype, values within `rtol` and `atol`
    times the largest finite |want|, at least 1), else (category, message).

    `noise`, when given, is a callable giving how far rounding noise moves `want` (see
    `rounding_noise`); where `got` and `want` differ by more than the tolerance, `got`
    still passes if the difference is no more than `roundoff` times that: it is then the
    round-off of an ill-conditioned value (the gradient of a layer_norm over close
    values, which cancellation amplifies), not a mistake."""
    if got is None or want is None:
        if (got is None) == (want is None):
            return None
        return "presence", f"{what}: {names[0]} {got!r}, {names[1]} {want!r}"
    if got.dtype != want.dtype:
        return "dtype", f"{what}: {names[0]} dtype {got.dtype}, {names[1]} {want.dtype}"
    a, e = got.detach().numpy(), want.detach().numpy()
    if a.shape != e.shape:
        return "shape", f"{what}: {names[0]} shape {a.shape}, {names[1]} {e.shape}"
    finite = np.abs(e[np.isfinite(e)])
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    bad = ~np.isclose(a, e, rtol=rtol, atol=atol * scale, equal_nan=True)
    if not bad.any():
        return None
    at = np.unravel_index(np.argmax(bad), bad.shape) if bad.ndim else ()
    note = ""
    if noise is not None:
        spread = noise()
        if np.all(np.abs(a - e)[bad] <= roundoff * spread[bad]):
            compare.roundoff = getattr(compare, "roundoff", 0) + 1  # counted for the summary
            return None
        note = f"; rounding noise moves eager's by up to {spread[at]:.3g} there"
    return "value", (f"{what}: {names[0]} {a[at]!r}, {names[1]} {e[at]!r} at {at} "
                     f"(rtol {rtol}, atol {atol * scale:.3g}; {int(bad.sum())} of {bad.size} "
                     f"differ{note})\n{names[0]}:\n{a}\n{names[1]}:\n{e}")


def rounding_noise(run, want, ulps=2, samples=3, seed=0):
    """How far rounding noise moves the tensor `want` that `run()` computes eagerly:
    `run()` again `samples` times with the result of every primitive that rounds moved by
    up to `ulps` units in the last place at random, and the inputs of those that round
    inside too (sums, matmul, the fused softmax and layer_norm: their partial results
    round at their inputs' scale) (Monte Carlo arithmetic); returns the largest
    |noisy - want| per element. Compiled code rounds differently from NumPy (sums in
    another order, fused kernels in steps, its own exp and log), by about an ulp per
    step; this measures what that becomes in `want`, however ill-conditioned it is."""
    from tracegrad.compiler.ops import PRIMITIVES

    inside = ("sum", "prod", "matmul", "gelu", "gelu_slope", "softmax", "softmax_backward",
              "log_softmax", "log_softmax_backward", "layer_norm", "layer_norm_backward")
    rounding = ("add", "sub", "mul", "div", "pow", "exp", "log", "log1p", "sin", "cos",
                "tanh", "sigmoid", "sqrt", "erf", "cast", *inside)
    rng = np.random.default_rng(seed)

    def shake(x):
        if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
            return x
        shift = rng.uniform(-ulps, ulps, x.shape) * np.finfo(x.dtype).eps
        return (x.astype(np.float64) * (1 + shift)).astype(x.dtype)

    def noisy(kernel, name):
        def run_kernel(*args, **attrs):
            args = [shake(x) for x in args] if name in inside else args
            return shake(np.asarray(kernel(*args, **attrs)))
        return run_kernel

    exact = {name: PRIMITIVES[name].kernel for name in rounding}
    e = want.detach().numpy().astype(np.float64)
    spread = np.zeros_like(e)
    try:
        for name, kernel in exact.items():
            PRIMITIVES[name].kernel = noisy(kernel, name)
        for _ in range(samples):
            moved = run()
            if moved is None or tuple(moved.shape) != e.shape:
                return np.zeros_like(e)
            with np.errstate(invalid="ignore"):
                spread = np.fmax(spread, np.abs(moved.detach().numpy() - e))
    finally:
        for name, kernel in exact.items():
            PRIMITIVES[name].kernel = kernel
    return spread


def check_calls(program, make_inputs, requires_grad, calls, rtol, atol, compiled_out=None):
    """Call `program` compiled and eagerly once per `(values, how)` of `calls`; how is
    "fresh" (new tensors from seed `values`), "again" (the same tensors, .grad reset),
    "accumulate" (the same tensors and .grad) or "no_grad" (fresh, under no_grad).
    Returns the first (category, message) where they differ, else None."""
    compiled = tracegrad.compile(program)
    if compiled_out is not None:
        compiled_out.append(compiled)
    inputs = eager_inputs = None
    passes = 0  # backward passes into the inputs' .grad

    def noise(want, index=None):  # rounding noise of the loss, or of argument index's .grad
        def value():
            copies = [t.detach().clone().requires_grad_(t.requires_grad)
                      if t.is_floating_point() else t for t in eager_inputs]
            loss = program(*copies)
            if index is None:
                return loss
            loss.backward()
            return None if copies[index].grad is None else copies[index].grad * passes

        return lambda: rounding_noise(value, want)

    for n, (values, how) in enumerate(calls):
        if how in ("fresh", "no_grad") or inputs is None:
            inputs, eager_inputs = make_inputs(values, requires_grad), \
                make_inputs(values, requires_grad)
            passes = 0
        elif how == "again":
            for t in inputs + eager_inputs:
                t.grad = None
            passes = 0
        where = f"call {n} ({how}, input values {values})"
        with tracegrad.set_grad_enabled(how != "no_grad"):
            eager_loss = program(*eager_inputs)
            loss = compiled(*inputs)
        if compiled.fallback_reason is not None:
            return "fallback", f"{where}: ran eagerly: {compiled.fallback_reason}"
        problem = compare(f"{where}: loss", loss, eager_loss, rtol, atol, noise(eager_loss))
        if problem is None and loss.requires_grad != eager_loss.requires_grad:
            problem = "requires_grad", (f"{where}: loss.requires_grad {loss.requires_grad}, "
                                        f"eager {eager_loss.requires_grad}")
        if problem is not None or not eager_loss.requires_grad:
            if problem is not None:
                return problem
            continue
        loss.backward()
        eager_loss.backward()
        passes += 1
        for k, (t, e) in enumerate(zip(inputs, eager_inputs)):
            problem = compare(f"{where}: grad of argument {k}", t.grad, e.grad, rtol, atol,
                              noise(e.grad, k) if e.grad is not None else None)
            if problem is not None:
                return problem
    return None


def check_training(program, make_inputs, optimizer, options, steps, explicit, clip, values,
                   rtol, atol, compiled_out=None):
    """Train `program`'s float inputs for `steps` steps, eagerly and with the whole step
    compiled (parameters passed as arguments if `explicit`, else found in the closure);
    returns the first (category, message) where loss, parameters, .grad or optimizer
    state differ, else None."""

    def setup():
        inputs = make_inputs(values)
        params = [t for t in inputs if t.is_floating_point()]
        opt = getattr(tracegrad.optim, optimizer)(params, **options)
        layout = [t.is_floating_point() for t in inputs]

        def step(*args):
            opt.zero_grad()
            if explicit:
                loss = program(*args)
            else:
                ps, rest = iter(params), iter(args)
                loss = program(*[next(ps) if is_param else next(rest) for is_param in layout])
            loss.backward()
            if clip == "norm":
                tracegrad.nn.utils.clip_grad_norm_(params, 10.0)
            elif clip == "value":
                tracegrad.nn.utils.clip_grad_value_(params, 1.0)
            opt.step()
            return loss

        def arguments(indices):
            if not explicit:
                return list(indices)
            ps, rest = iter(params), iter(indices)
            return [next(ps) if is_param else next(rest) for is_param in layout]

        return step, arguments, params, opt

    def run(run_step, arguments, opts, n):  # step n of a run, with its learning rate
        indices = [t for t in make_inputs(values + 1 + n, False) if not t.is_floating_point()]
        for opt in opts:  # a learning-rate schedule: no re-trace
            opt.param_groups[0]["lr"] = options["lr"] * 0.8 ** n
        return run_step(*arguments([t.clone() for t in indices]))

    def noise(want, get):  # rounding noise of value get(loss, params, opt) after step n
        def value():
            again, arguments, params, opt = setup()
            for m in range(n + 1):
                loss = run(again, arguments, [opt], m)
            return get(loss, params, opt)

        return lambda: rounding_noise(value, want)

    eager_step, eager_arguments, eager_params, eager_opt = setup()
    step, arguments, params, opt = setup()
    compiled = tracegrad.compile(step)
    if compiled_out is not None:
        compiled_out.append(compiled)
    for n in range(steps):
        eager_loss = run(eager_step, eager_arguments, [eager_opt, opt], n)
        loss = run(compiled, arguments, [], n)
        if compiled.fallback_reason is not None:
            return "fallback", f"step {n}: ran eagerly: {compiled.fallback_reason}"
        problem = compare(f"step {n}: loss", loss, eager_loss, rtol, atol,
                          noise(eager_loss, lambda loss, ps, o: loss))
        for k, (p, e) in enumerate(zip(params, eager_params)):
            if problem is not None:
                return problem
            problem = compare(f"step {n}: parameter {k}", p, e, rtol, atol,
                              noise(e, lambda loss, ps, o, k=k: ps[k])) or \
                compare(f"step {n}: parameter {k}.grad", p.grad, e.grad, rtol, atol,
                        noise(e.grad, lambda loss, ps, o, k=k: ps[k].grad))
            state, eager_state = opt.state.get(p, {}), eager_opt.state.get(e, {})
            if problem is None and sorted(state) != sorted(eager_state):
                problem = "state", (f"step {n}: parameter {k}: state keys {sorted(state)}, "
                                    f"eager {sorted(eager_state)}")
            for key in sorted(eager_state) if problem is None else ():
                problem = problem or compare(
                    f"step {n}: parameter {k} state {key!r}", state[key], eager_state[key],
                    rtol, atol, noise(eager_state[key],
                                      lambda loss, ps, o, k=k, key=key: o.state[ps[k]][key]))
        if problem is not None:
            return problem
    return None


def check_gradients(program, make_inputs, values, step, rtol, atol, tries=3):
    """Eager gradients of `program` (float64) against central differences along a random
    unit direction per float input; returns (category, message) for the first that
    disagrees, else ("skipped", n): how many directions were not a test of the gradient
    because a kink or jump lay within the step (relu at 0, a max tie, a comparison
    flipping), each replaced by another direction (`tries` per input in all)."""
    inputs = make_inputs(values)
    program(*inputs).backward()
    arrays = [t.detach().numpy().copy() for t in inputs]

    def loss(k, shift):
        shifted = [a + shift if i == k else a for i, a in enumerate(arrays)]
        with tracegrad.no_grad():
            return float(program(*[tracegrad.from_numpy(np.array(a)) for a in shifted]))

    rng = np.random.default_rng(values)
    skipped = 0
    for k, t in enumerate(inputs):
        if not t.is_floating_point():
            continue
        grad = np.zeros_like(arrays[k]) if t.grad is None else t.grad.numpy()
        for _ in range(tries):
            direction = rng.standard_normal(arrays[k].shape)
            direction /= max(np.linalg.norm(direction), 1e-12)
            here, up, down = loss(k, 0.0), loss(k, step * direction), loss(k, -step * direction)
            slope, central = float(np.sum(grad * direction)), (up - down) / (2 * step)
            error = abs(slope - central) if np.isfinite(slope) else np.inf
            if error <= rtol * abs(central) + atol * max(1.0, abs(here)):
                break
            # A kink at distance c*step makes the one-sided slopes differ by J(1 - c) and
            # the central difference miss the slope by J(1 - c)/2; a jump, likewise. A
            # wrong gradient where the loss is smooth misses by more than the one-sided
            # slopes differ (step times the curvature).
            if error <= abs((up - here) - (here - down)) / step:
                skipped += 1
                continue
            return "gradient", (f"gradient of argument {k} along a random direction: "
                                f"eager {slope!r}, finite differences {central!r} "
                                f"(step {step}, loss {here!r})")
    return "skipped", skipped


def check_graphs(compiled_functions):
    """Every traced graph of the compiled functions verifies and round-trips through its
    text form; returns (category, message) for the first that does not, else None."""
    from tracegrad.compiler.ir import Graph, IRError, graph_equal, verify
    from tracegrad.compiler.ir_text import parse_graph, print_graph

    for compiled in compiled_functions:
        for variant in compiled.variants:
            for stage, graph in variant.trace.stages.items():
                if not isinstance(graph, Graph):
                    continue
                try:
                    verify(graph)
                except IRError as exc:
                    return "ir", f"variant {variant.index}, stage {stage}: {exc}"
                text = print_graph(graph)
                if not graph_equal(parse_graph(text), graph):
                    return "ir", (f"variant {variant.index}, stage {stage}: the text form "
                                  f"does not round-trip:\n{text}")
    return None


CHECKS = {"calls": check_calls, "gradients": check_gradients, "training": check_training}
