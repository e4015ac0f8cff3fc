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

import inspect
import os
import re
import shutil
import subprocess
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .compiled import CompiledFunction
from .ir_sources import IRCommandError, one_line

# --- the stages ------------------------------------------------------------------------

@dataclass(frozen=True)
class Stage:
    name: str
    what: str
    graph: Callable  # variant -> Graph
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


def resolve_stage(name: str) -> Stage:
    """The `Stage` called `name`, or an `IRCommandError` that says why not."""
    stage = STAGE_BY_NAME.get(name)
    if stage is None:
        raise IRCommandError(f"unknown stage '{name}' (stages: {', '.join(STAGE_BY_NAME)})")
    return stage


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
    paths = {key: _name_keys(path, paths) for key, path in paths.items()}
    # a tensor an argument is a view of is named as PyTorch names it: `x._base`
    for tensor, value in trace.arguments:
        for depth, base in enumerate(tensor._bases(), 1):
            paths.setdefault(id(base), value.name + "._base" * depth)
    for (tensor, value), owner in zip(trace.captured, variant.grad_owner):
        if owner is not None:
            names[id(tensor)] = f"{paths.get(id(owner), names.get(id(owner), '?'))}.grad"
        else:
            names[id(tensor)] = paths.get(id(tensor), f"a tensor the call reached ({value.name})")
    return names


def _name_keys(path: str, paths: dict) -> str:
    """`opt.state.[Parameter@7f..].exp_avg` -> `opt.state[model[0].weight].exp_avg`: a
    dictionary key that is a tensor the call reaches is named by its own path."""
    def name(match):
        found = paths.get(int(match.group(1), 16))
        return f"[{found}]" if found and "@" not in found else match.group(0)

    return re.sub(r"\.?\[\w+@([0-9a-f]+)\]", name, path)


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
