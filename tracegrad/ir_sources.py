"""Where `tracegrad ir` finds compiled functions: it runs a script, or imports one and
calls one of its functions on made-up inputs of the given types.

>>> make_inputs(["f32[2,3]", "i64[2]"])[1].dtype
tracegrad.int64
"""

from __future__ import annotations

import contextlib
import inspect
import runpy
import sys
import types
import warnings
from pathlib import Path

import numpy as np

from . import compiled as compiled_module
from .compiled import CompiledFunction
from .tensor import Tensor

MODULE_NAME = "__tracegrad_ir__"  # FILE:FUNCTION imports the file under this name


class IRCommandError(Exception):
    """A mistake in how `tracegrad ir` was called, or in the script: one line, no traceback."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


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


