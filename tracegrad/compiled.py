"""`tracegrad.compile`: trace a function once, then run its graph on later calls.

The first call with a new signature runs eagerly while being traced (so it returns
eager's results). The trace becomes a *variant*: a graph plus the guards under which it
describes a call — the arguments' shapes, dtypes and `requires_grad`, grad mode, Python
scalar arguments, the identity of the tensors the function reaches (`reachable.py`) and
the values Python read from tensors (`bool(t)`, `t.item()`). A later call that passes the
guards runs the graph and writes back every tensor and `.grad` the step changed; a call
whose value guards fail is discarded before anything is written, and traced anew.

>>> import tracegrad as torch
>>> @torch.compile
... def f(x):
...     return (x * 2).sin().sum()
>>> x = torch.ones(3)
>>> bool(f(x) == f(x))
True
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
import weakref

from . import tracing
from .autograd import anomaly_mode, grad_mode
from .compiled_log import log
from .compiled_variant import GUARD_FAILED
from .reachable import call_guard, reachable_tensors
from .tensor import Tensor

VARIANT_LIMIT = 8
NO_VARIANT = object()  # no variant took the call
# One trace at a time in the process, as torch._dynamo's compile lock: threads that call a
# function with a new signature at once trace it once (not once each, filling the variant
# limit), and one lock cannot deadlock with another. Re-entrant: a traced function may call
# compiled functions. Calls that a variant takes never wait for it.
TRACE_LOCK = threading.RLock()
# Every compiled function made in this process, for `tracegrad ir` to list (weakly held).
ALL_COMPILED = weakref.WeakSet()


class CompileFallback(RuntimeError):
    """Raised under `fullgraph=True` when a function cannot be captured whole."""


class CompiledFunction:
    """A function with its compiled variants; call it like the function."""

    def __init__(self, fn, *, fullgraph=False, dynamic=False, cache=True, verify=0):
        functools.update_wrapper(self, fn)
        if not hasattr(self, "__name__"):  # a functools.partial: named after its function
            self.__name__ = getattr(getattr(fn, "func", None), "__name__", type(fn).__name__)
        self.fn = fn
        self.fullgraph = fullgraph
        self.cache = cache
        self.interpreter_warned = False
        self.verify_calls = verify
        self.variants = []
        self.fallback_reason = None
        self.fallback_warned = False
        self.calls = 0
        self.events = []  # what happened, for explain()
        ALL_COMPILED.add(self)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        # Under detect_anomaly() a NaN made in backward must name the forward op and line
        # that made it: only an eager graph knows them, so debugging runs eagerly.
        if self.fallback_reason is not None or anomaly_mode.state.on:
            return self.fn(*args, **kwargs)
        known, refusals = len(self.variants), []
        result = self._run_variants(self.variants, args, kwargs, refusals)
        if result is not NO_VARIANT:
            return result
        with TRACE_LOCK:  # another thread may have traced this very call while we waited
            result = self._run_variants(self.variants[known:], args, kwargs, refusals)
            if result is NO_VARIANT and self.fallback_reason is None:
                result = self._trace(args, kwargs, refusals)
        return self.fn(*args, **kwargs) if result is NO_VARIANT else result

    def _run_variants(self, variants, args, kwargs, refusals: list):
        """The result of the first of `variants` that takes the call, or NO_VARIANT; why a
        variant whose guards passed refused the call is added to `refusals`."""
        for variant in variants:
            if variant.guard(args, kwargs):
                if self.calls <= self.verify_calls:
                    return self._verify(variant, args, kwargs)
                outcome = variant.run(args, kwargs)
                if outcome is not GUARD_FAILED:
                    return outcome
                refusals.append(f"variant {variant.index} refused the call "
                                f"({variant.failure}): tracing anew")
        return NO_VARIANT

    def _trace(self, args, kwargs, refusals):
        if len(self.variants) >= VARIANT_LIMIT:
            return self._fall_back(f"more than {VARIANT_LIMIT} variants were needed "
                                   f"(shapes, guards or captured tensors keep changing)")(
                *args, **kwargs)
        from .compiled_variant import Variant, trace_variant

        reach_before = _identities(self.fn)
        trace, result, outputs = trace_variant(self.fn, args, kwargs, self.cache)
        for refusal in refusals:  # logged once the call succeeded: one that raises (bad
            self._event("guards", refusal)  # input) leaves the function as it was
        if trace.broken:
            if self.fullgraph:
                tracing.undo(trace.tracer)
            self._fall_back(trace.broken)
            return result
        reach_after = _identities(self.fn)
        if reach_after != reach_before:  # the call made new state (optimizer
            self._event("recompiles", "the traced call created new state; tracing again "
                                      "on the next call")  # buffers): it was a one-off
            return result
        exempt = [(container, key) for container, key, _ in trace.hyperparameters]
        guard = call_guard(self.fn, args, kwargs, exempt)
        variant = Variant(len(self.variants), self.fn, trace, outputs, guard, args, kwargs)
        trace.tracer = None  # it keeps every tensor of the traced call (their graph, their
        # activations) alive: the variant needs none of them
        variant.key = signature_key(args, kwargs)  # for reports: what the call looked like
        variant.reach = reach_after
        self.variants.append(variant)
        self._event("recompiles", f"variant {variant.index} traced: {len(trace.graph.nodes)} "
                                  f"nodes, {len(trace.guards)} value guards")
        self._warn_if_interpreted(variant)
        return result

    def _fall_back(self, reason):
        """Stop compiling (warn once), or raise under fullgraph=True; returns the function."""
        if self.fullgraph:
            raise CompileFallback(f"tracegrad.compile(fullgraph=True): cannot compile "
                                  f"{self.__name__}: {reason}")
        self.fallback_reason = reason
        self._event("recompiles", f"falling back to eager: {reason}")
        if not self.fallback_warned:
            self.fallback_warned = True
            warnings.warn(f"tracegrad.compile: {self.__name__} runs eagerly: {reason}",
                          stacklevel=4)
        return self.fn

    def _warn_if_interpreted(self, variant) -> None:
        programs = [variant.trace.program]
        if variant.outputs.backward is not None:
            programs.append(variant.outputs.backward.partition.program)
        reasons = [p.fallback_reason for p in programs if p.fallback_reason]
        if reasons and not self.interpreter_warned:
            self.interpreter_warned = True
            self._event("kernels", f"runs on the NumPy interpreter: {reasons[0]}")
            warnings.warn(f"tracegrad.compile: {self.__name__} runs on the NumPy interpreter "
                          f"(no native code): {reasons[0]}", stacklevel=4)

    def _verify(self, variant, args, kwargs):
        from .compiled_verify import run_and_compare

        return run_and_compare(self, variant, args, kwargs)

    def _event(self, kind: str, message: str) -> None:
        self.events.append((kind, message))
        log(kind, f"{self.__name__}: {message}")

    def __get__(self, obj, objtype=None):  # compiled methods bind like functions
        return self if obj is None else functools.partial(self, obj)


def _identities(fn) -> list:
    return [(path, id(t)) for path, t in reachable_tensors(fn)]


def signature_key(args, kwargs) -> tuple:
    """A description of a call: grad mode and the arguments' types and values."""
    return (grad_mode.state.enabled, _key(args), _key(kwargs))


def _key(x):
    if isinstance(x, Tensor):
        return ("T", x._data.shape, x.dtype, x._requires_grad)
    if isinstance(x, (tuple, list)):
        return (type(x).__name__, tuple(_key(i) for i in x))
    if isinstance(x, dict):
        return ("dict", tuple((k, _key(v)) for k, v in x.items()))
    if isinstance(x, (int, float, bool, str, type(None))):
        return ("S", type(x).__name__, x)
    return ("O", id(x))


def compile(fn=None, *, fullgraph: bool = False, dynamic: bool = False, cache: bool = True,
            verify: int = 0, backend=None, mode=None):
    """Compile a function or an `nn.Module` (see SPEC §4.1); usable bare or with arguments.

    >>> import tracegrad as torch
    >>> square = torch.compile(lambda x: x * x)
    >>> square(torch.tensor([3.0]))
    tensor([9.])
    """
    if fn is None:
        return functools.partial(compile, fullgraph=fullgraph, dynamic=dynamic, cache=cache,
                                 verify=verify)
    if os.environ.get("TRACEGRAD_DISABLE_COMPILE") == "1":
        return fn
    options = {"fullgraph": fullgraph, "dynamic": dynamic, "cache": cache, "verify": verify}
    from .nn.module import Module

    if isinstance(fn, Module):
        from .compiled_module import CompiledModule

        return CompiledModule(fn, **options)
    return CompiledFunction(fn, **options)


def explain(fn, *args, **kwargs) -> dict:
    """Call `fn` (compiled if it is not) and report, as data, what compilation did.

    >>> import tracegrad as torch
    >>> report = torch.explain(lambda x: x * 2, torch.ones(2))
    >>> report["variants"], report["fallback"]
    (1, None)
    """
    compiled = fn if isinstance(fn, CompiledFunction) else CompiledFunction(fn)
    compiled(*args, **kwargs)
    return {
        "variants": len(compiled.variants),
        "guards": [variant.describe_guards() for variant in compiled.variants],
        "fallback": compiled.fallback_reason,
        "events": list(compiled.events),
        "graphs": [variant.graph for variant in compiled.variants],
    }
