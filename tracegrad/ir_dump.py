"""What `tracegrad ir` prints: each compiled function's variants at one pipeline stage.

A script is run (or one of its functions traced on made-up inputs); then every compiled
function that got variants is described, one block per variant: a header saying what the
graph's inputs and outputs mean (captured tensors, value guards, what the step writes
back), then the graph as text, DOT or SVG:

    # function loss, variant 0: loss(x: f32[8,4], y: i64[8]), grad enabled, defined at train.py:10
    # stage traced (15 nodes): the forward as captured
    # captured tensors:
    #   x2  model.weight
    #   x3  model.bias
    # value guards:
    #   bool(v5) was True  at train.py:11
    # writes back: none
    # results: v11
    def loss(x: f32[8,4], y: i64[8], x2: f32[3,4], x3: f32[3]):
        v0 = permute(x2, dims=(1, 0))                 # f32[4,3]    train.py:11
        ...

>>> import tracegrad as torch
>>> f = torch.compile(lambda x: (x * 2).sum())
>>> _ = f(torch.ones(3))
>>> print(describe_variant(f, f.variants[0], "traced", "text").splitlines()[1])
# stage traced (2 nodes): the forward as captured
"""

from __future__ import annotations

import contextlib
import inspect
import os
import runpy
import shutil
import subprocess
import sys
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import compiled as compiled_module
from .compiled import CompiledFunction
from .tensor import Tensor


class IRCommandError(Exception):
    """A mistake in how `tracegrad ir` was called, or in the script: one line, no traceback."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


# --- the stages ------------------------------------------------------------------------

@dataclass(frozen=True)
class Stage:
    name: str
    what: str
    graph: Callable | None  # variant -> Graph; None while the compiler does not build it
    text: Callable | None = None  # variant -> text, where the stage is more than a graph
    dot: Callable | None = None  # variant -> DOT text, likewise


STAGES = [
    Stage("traced", "the forward as captured", lambda v: v.trace.stages["traced"]),
    Stage("joint", "forward + backward, built by autodiff on the IR",
          lambda v: v.trace.stages["joint"]),
    Stage("optimized", "after the graph passes", lambda v: v.trace.stages["optimized"]),
    Stage("scheduled", "fused kernels, buffers and memory plan",
          lambda v: v.trace.program.graph, text=lambda v: _scheduled_text(v),
          dot=lambda v: _scheduled_dot(v)),
    Stage("llvm", "LLVM IR, before and after LLVM's optimiser",
          lambda v: v.trace.program.graph, text=lambda v: _native_text(v, "llvm")),
    Stage("asm", "host assembly", lambda v: v.trace.program.graph,
          text=lambda v: _native_text(v, "asm")),
]
STAGE_BY_NAME = {stage.name: stage for stage in STAGES}
FORMATS = ("text", "dot", "svg")
MODULE_NAME = "__tracegrad_ir__"  # FILE:FUNCTION imports the file under this name


def resolve_stage(name: str) -> Stage:
    """The `Stage` called `name`, or an `IRCommandError` that says why not."""
    stage = STAGE_BY_NAME.get(name)
    now = ", ".join(s.name for s in STAGES if s.graph is not None)
    if stage is None:
        raise IRCommandError(f"unknown stage '{name}' (stages: {', '.join(STAGE_BY_NAME)})")
    if stage.graph is None:
        raise IRCommandError(f"stage '{name}' ({stage.what}) is not available yet "
                             f"(available now: {now})")
    return stage


# --- finding compiled functions: run a script, or trace one function ------------------

def run_script(path: str) -> list[CompiledFunction]:
    """Run `path` as `__main__`; the functions it compiled, in the order it compiled them.

    The script's own printing goes to stderr, so that stdout holds only the IR.
    """
    made = []
    with _recording_compiled(made), contextlib.redirect_stdout(sys.stderr):
        _run_file(path, "__main__")
    return made


def trace_function(path: str, name: str, input_types: list[str],
                   requires_grad: bool = False) -> CompiledFunction:
    """Import `path` (its main block does not run), call its `name` once on inputs of
    `input_types`, compiled; returns the compiled function."""
    inputs = make_inputs(input_types, requires_grad)
    namespace = _run_file(path, MODULE_NAME)
    target = _lookup(namespace, name, path)
    compiled, call = _compiled_of(target, name)
    _check_arity(compiled, name, len(inputs))
    # A first call may only create state (gradients, optimizer buffers): then the
    # compiled function traces on the next one, as it would in a training loop.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fallback is reported below, in one line
        for _ in range(3):
            try:
                call(*inputs)
            except Exception as exc:  # noqa: BLE001  (the user's code: report it in one line)
                raise IRCommandError(f"{name} raised {one_line(exc)}") from None
            if compiled.variants or compiled.fallback_reason:
                break
    return compiled


def make_inputs(input_types: list[str], requires_grad: bool = False,
                seed: int = 0) -> list[Tensor]:
    """Tensors of the given types: floats standard normal, integers in 0..9, random bools.

    >>> [t.shape for t in make_inputs(["f32[2,3]", "i64[2]"])]
    [tracegrad.Size([2, 3]), tracegrad.Size([2])]
    """
    from .compiler.ir import IRError
    from .compiler.ir_text import parse_type
    from .creation import from_numpy

    rng = np.random.default_rng(seed)
    tensors = []
    for text in input_types:
        try:
            shape, dtype = parse_type(text)
        except IRError:
            raise IRCommandError(f"--input '{text}' is not a type like f32[64,784] "
                                 f"(element types: f32, f64, i32, i64, bool)") from None
        kind = np.dtype(dtype.numpy).kind
        if kind == "f":
            array = rng.standard_normal(shape)
        elif kind == "b":
            array = rng.random(shape) < 0.5
        else:
            array = rng.integers(0, 10, shape)
        tensor = from_numpy(np.asarray(array, dtype=dtype.numpy))
        tensors.append(tensor.requires_grad_() if requires_grad and kind == "f" else tensor)
    return tensors


def _run_file(path: str, run_name: str) -> dict:
    """Run `path` as `python path` would (that argv, its folder first on sys.path)."""
    if not Path(path).is_file():
        raise IRCommandError(f"no such file: {path}")
    with _script_context(path, [path]):
        try:
            return runpy.run_path(path, run_name=run_name)
        except SystemExit as exc:
            if isinstance(exc.code, int) and exc.code != 0:
                raise IRCommandError(f"the script exited with status {exc.code}") from None
            if exc.code not in (None, 0):  # sys.exit("message"): Python's status is 1
                raise IRCommandError(f"the script exited: {exc.code}") from None
            return {}
        except Exception as exc:  # noqa: BLE001  (the user's code: report it in one line)
            raise IRCommandError(f"the script raised {one_line(exc)}") from None


@contextlib.contextmanager
def _script_context(path: str, argv: list[str]):
    folder = str(Path(path).resolve().parent)
    saved_argv, sys.argv = sys.argv, argv
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        sys.argv = saved_argv
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)


@contextlib.contextmanager
def _recording_compiled(made: list):
    """Note each function compiled meanwhile, in order, and keep it alive (the registry
    holds functions weakly, and a script may compile inside a function that returned)."""
    registry = compiled_module.ALL_COMPILED

    class Recording:
        def add(self, compiled):
            registry.add(compiled)
            made.append(compiled)

        def __getattr__(self, name):
            return getattr(registry, name)

    compiled_module.ALL_COMPILED = Recording()
    try:
        yield
    finally:
        compiled_module.ALL_COMPILED = registry


def _lookup(namespace: dict, name: str, path: str):
    target = namespace
    for part in name.split("."):
        found = target.get(part) if isinstance(target, dict) else getattr(target, part, None)
        if found is None:
            known = ", ".join(_functions_in(namespace)) or "none"
            raise IRCommandError(f"{path} has no function '{name}' (functions found: {known})")
        target = found
    return target


def _functions_in(namespace: dict) -> list[str]:
    from .nn.module import Module

    return [key for key, value in namespace.items() if not key.startswith("__") and (
        isinstance(value, (CompiledFunction, Module)) or
        isinstance(value, types.FunctionType) and value.__module__ == MODULE_NAME)]


def _compiled_of(target, name: str):
    """(the CompiledFunction, what to call) for a function, compiled function or module."""
    from .compiled import compile
    from .compiled_module import CompiledModule
    from .nn.module import Module

    if isinstance(target, Module) and not isinstance(target, CompiledModule):
        target = compile(target)
    if isinstance(target, CompiledModule):
        return target._compiled_forward, target
    if not isinstance(target, CompiledFunction):
        if not callable(target):
            raise IRCommandError(f"'{name}' is a {type(target).__name__}, not a function")
        target = compile(target)
    if not isinstance(target, CompiledFunction):
        raise IRCommandError("TRACEGRAD_DISABLE_COMPILE=1 is set: nothing is compiled")
    return target, target


def _check_arity(compiled: CompiledFunction, name: str, count: int) -> None:
    try:
        signature = inspect.signature(compiled.fn)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(*range(count))
    except TypeError:
        params = ", ".join(signature.parameters)
        given = f"{count} --input" + ("" if count == 1 else "s")
        raise IRCommandError(f"{name}({params}) cannot be called with {given}") from None


def one_line(exc: BaseException) -> str:
    """`ValueError: message`, with a message of several lines joined into one."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {'; '.join(lines)}" if lines else type(exc).__name__


# --- describing a variant --------------------------------------------------------------

def describe_variant(compiled: CompiledFunction, variant, stage: str, fmt: str) -> str:
    """One variant at `stage` as `fmt` ("text", "dot" or "svg"), with its header."""
    chosen = resolve_stage(stage)
    graph = chosen.graph(variant)
    header = variant_header(compiled, variant, stage)
    if fmt == "text":
        from .compiler.ir_text import print_graph

        body = chosen.text(variant) if chosen.text else print_graph(graph)
        return "\n".join(f"# {line}" for line in header) + "\n" + body
    from .compiler.ir_dot import graph_to_dot

    dot_text = chosen.dot(variant) if chosen.dot else graph_to_dot(graph)
    first, rest = dot_text.split("\n", 1)
    dot = "\n".join([first, *(f"  // {line}" for line in header), rest])
    return dot if fmt == "dot" else render_svg(dot)


def _scheduled_text(variant) -> str:
    """The forward program's kernels and memory plan (and the backward's, if compiled)."""
    parts = [variant.trace.program.describe()]
    backward = variant.outputs.backward
    if backward is not None:
        parts += ["# --- the backward program ---", backward.partition.program.describe(),
                  backward.partition.report()]
    return "\n".join(parts)


def _native_text(variant, stage: str) -> str:
    """The programs' LLVM IR (before and after LLVM's optimiser) or host assembly."""
    programs = [("forward" if variant.outputs.backward else "program",
                 variant.trace.program)]
    if variant.outputs.backward is not None:
        programs.append(("backward", variant.outputs.backward.partition.program))
    parts = []
    for label, program in programs:
        native = program.native
        if native is None:
            parts.append(f"; {label}: runs on the NumPy interpreter ({program.fallback_reason})")
        elif stage == "llvm":
            parts += [f"; --- {label}: LLVM IR before LLVM's optimiser ---", native.ir,
                      f"; --- {label}: LLVM IR after LLVM's optimiser ---", native.optimized_ir]
        else:
            parts += [f"# --- {label}: host assembly ---", native.assembly]
    return "\n".join(parts)


def _scheduled_dot(variant) -> str:
    from .compiler.schedule import schedule_to_dot

    return schedule_to_dot(variant.trace.program.schedule)


def variant_header(compiled: CompiledFunction, variant, stage: str) -> list[str]:
    """The lines above a variant's graph: what its inputs and outputs stand for."""
    trace, graph = variant.trace, resolve_stage(stage).graph(variant)
    names = _tensor_names(variant)
    nodes = f"{len(graph.nodes)} node{'s' * (len(graph.nodes) != 1)}"
    lines = [(f"function {function_name(compiled)}, variant {variant.index}: "
              f"{format_signature(compiled, variant.key)}{_defined_at(compiled)}"),
             f"stage {stage} ({nodes}): {_stage_note(variant, stage)}"]
    if stage == "optimized":
        lines += _section("passes", [
            f"{r.name}: {r.nodes_before} -> {r.nodes_after} nodes"
            + "".join(f", {name} {count}" for name, count in r.stats.items() if count)
            for r in trace.pass_reports if r.nodes_before != r.nodes_after or any(
                r.stats.values())])
    lines += _section("captured tensors", [f"{v.name}  {names[id(t)]}"
                                           for t, v in trace.captured])
    other = [f"{v.name}  hyperparameter '{key}' (read on every call; {container[key]!r} now)"
             for container, key, v in trace.hyperparameters]
    other += [f"{r.value.name}  random, drawn anew on every call" for r in trace.random_inputs]
    lines += _section("other inputs", other) if other else []
    lines += _section("value guards", [
        f"{g.value.name}.item() was {g.observed!r}  at {g.loc}" if g.kind == "item" else
        f"{g.kind}({g.value.name}) was {g.observed!r}  at {g.loc}" for g in trace.guards])
    writes = [f"{v.name} -> {names[id(t)]}" for t, v in trace.writes]
    writes += [f"{'None' if v is None else v.name} -> {names[id(t)]}.grad"
               for t, v in trace.grad_writes]
    lines += _section("writes back", writes)
    backward = variant.outputs.backward
    if stage == "joint" and backward is not None:
        joint, traced = trace.stages["joint"], trace.stages["traced"]
        grads = joint.outputs[len(traced.outputs):]
        candidates = [t for t, _ in trace.arguments + trace.captured]
        targets = [candidates[i] for i, present in zip(backward.positions,
                                                       backward.grad_present) if present]
        lines += _section("gradients for backward()", [
            f"{v.name} -> {names[id(t)]}.grad" for v, t in zip(grads, targets)])
    results = trace.stages["traced"].outputs[:variant.result_count]
    lines.append(f"results: {', '.join(v.name for v in results) or 'none'}")
    return lines


def _stage_note(variant, stage: str) -> str:
    what = STAGE_BY_NAME[stage].what
    if stage != "joint":
        return what
    if variant.trace.saw_backward:
        return f"{what} (the function calls backward() itself: same as traced)"
    if variant.outputs.backward is None:
        return f"{what} (no result requires grad: same as traced)"
    return what


def _section(title: str, items: list[str]) -> list[str]:
    return [f"{title}:", *(f"  {item}" for item in items)] if items else [f"{title}: none"]


def _tensor_names(variant) -> dict:
    """id(tensor) -> how the user would name it: argument name or path from the function."""
    trace = variant.trace
    names = {id(t): v.name for t, v in trace.arguments}
    paths = {r[1]: _pretty_path(r[0]) for r in variant.reach}
    for (tensor, value), owner in zip(trace.captured, variant.grad_owner):
        if owner is not None:
            names[id(tensor)] = f"{paths.get(id(owner), names.get(id(owner), '?'))}.grad"
        else:
            names[id(tensor)] = paths.get(id(tensor), f"a tensor the call reached ({value.name})")
    return names


def _pretty_path(path: str) -> str:
    """`model._parameters.weight` -> `model.weight`; `opt.groups.0` -> `opt.groups[0]`."""
    parts = [p for p in path.split(".") if p not in ("_parameters", "_buffers", "_modules")]
    text = parts[0]
    for part in parts[1:]:
        text += f"[{part}]" if part.isdigit() else f".{part}"
    return text


def function_name(compiled: CompiledFunction) -> str:
    fn = compiled.fn
    if isinstance(fn, types.MethodType):  # a compiled module's forward
        return f"{type(fn.__self__).__name__}.{fn.__name__}"
    return compiled.__name__.strip("<>")


def _defined_at(compiled: CompiledFunction) -> str:
    code = getattr(getattr(compiled.fn, "__func__", compiled.fn), "__code__", None)
    return "" if code is None else f", defined at {Path(code.co_filename).name}:" \
                                   f"{code.co_firstlineno}"


def format_signature(compiled: CompiledFunction, key: tuple) -> str:
    """`step(x: f32[8,4], lr=0.1), grad enabled`, from a variant's call key."""
    grad_enabled, (_, args), (_, kwargs) = key
    try:
        params = [p.name for p in inspect.signature(compiled.fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    if len(params) < len(args):
        params = [f"arg{i}" for i in range(len(args))]
    parts = [f"{name}: {_format_key(item)}" for name, item in zip(params, args)]
    parts += [f"{name}={_format_key(item)}" for name, item in kwargs]
    grad = "grad enabled" if grad_enabled else "grad disabled"
    return f"{function_name(compiled)}({', '.join(parts)}), {grad}"


def _format_key(item) -> str:
    from .compiler.ir import format_type

    tag = item[0]
    if tag == "T":
        _, shape, dtype, requires_grad = item
        return format_type(shape, dtype) + (" requires_grad" if requires_grad else "")
    if tag == "S":
        return repr(item[2])
    if tag in ("tuple", "list"):
        inner = ", ".join(map(_format_key, item[1]))
        return f"({inner})" if tag == "tuple" else f"[{inner}]"
    if tag == "dict":
        return "{" + ", ".join(f"{k!r}: {_format_key(v)}" for k, v in item[1]) + "}"
    return "object"


def check_format(fmt: str) -> None:
    """Fail early (before running the script) when `fmt` cannot be produced."""
    if fmt not in FORMATS:
        raise IRCommandError(f"unknown format '{fmt}' (formats: {', '.join(FORMATS)})")
    if fmt == "svg" and shutil.which("dot") is None:
        raise IRCommandError(GRAPHVIZ_MISSING)


def render_svg(dot: str) -> str:
    """SVG drawn by Graphviz's `dot` from DOT text."""
    program = shutil.which("dot")
    if program is None:
        raise IRCommandError(GRAPHVIZ_MISSING)
    done = subprocess.run([program, "-Tsvg"], input=dot, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise IRCommandError(f"Graphviz's dot failed: {one_line(RuntimeError(done.stderr))}")
    return done.stdout


GRAPHVIZ_MISSING = ("--format svg needs Graphviz (the `dot` program on PATH); "
                    "install graphviz, or use --format dot")


# --- the whole dump ------------------------------------------------------------------

def dump(functions: list[CompiledFunction], stage: str, fmt: str,
         out: str | None = None) -> str:
    """Every variant of `functions`; returns the text, or (with `out`) the paths written."""
    blocks = [(f"{name}-{variant.index}", describe_variant(compiled, variant, stage, fmt))
              for compiled, name in zip(functions, _unique_names(functions))
              for variant in compiled.variants]
    if out is None:
        return "\n".join(text for _, text in blocks)
    if fmt == "text" or len(blocks) == 1:
        written = {out: "\n".join(text for _, text in blocks)}
    else:
        path = Path(out)
        written = {str(path.with_name(f"{path.stem}-{suffix}{path.suffix}")): text
                   for suffix, text in blocks}
    for path, text in written.items():
        Path(path).write_text(text)
    return "".join(f"{path}\n" for path in written)


def _unique_names(functions: list[CompiledFunction]) -> list[str]:
    names, seen = [], {}
    for compiled in functions:
        name = "".join(c if c.isalnum() or c == "_" else "_" for c in function_name(compiled))
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return names


def with_variants(functions: list[CompiledFunction], what: str) -> list[CompiledFunction]:
    """The functions that have variants to show; an error (status 1) when none has."""
    if os.environ.get("TRACEGRAD_DISABLE_COMPILE") == "1":
        raise IRCommandError("TRACEGRAD_DISABLE_COMPILE=1 is set: nothing is compiled", 1)
    if not functions:
        raise IRCommandError(f"{what} never called tracegrad.compile", 1)
    shown = [f for f in functions if f.variants]
    if not shown:
        raise IRCommandError(f"{what} compiled nothing that can be shown ("
                             f"{'; '.join(notes(functions))})", 1)
    return shown


def notes(functions: list[CompiledFunction]) -> list[str]:
    """Why some of `functions` show no graph, or not every call's: one note each."""
    found = []
    for f in functions:
        if f.fallback_reason:
            found.append(f"{function_name(f)} runs eagerly: {f.fallback_reason}")
        elif not f.variants:
            calls = f"after {f.calls} call{'s' * (f.calls != 1)}" if f.calls else "never called"
            found.append(f"{function_name(f)} has no variant ({calls})")
    return found
