"""The tensors a function can reach without being passed them: its captured state.

A compiled function binds the tensors its trace found (parameters in closures, modules
and optimizers, their gradients and optimizer state) to graph inputs. If on a later call
the function would find *other* tensor objects there (a replaced parameter, optimizer
state that did not exist yet), the trace does not describe the call any more. This walk,
over closure cells, the globals the code names, default arguments and a bound method's
object, into modules, optimizers and containers, gives the identities to compare.

>>> import tracegrad as torch
>>> w = torch.ones(2)
>>> def f(x):
...     return x * w
>>> [path for path, _ in reachable_tensors(f)]
['w']
"""

from __future__ import annotations

import functools
import types

from .tensor import Tensor

MAX_DEPTH = 6
MAX_ITEMS = 10_000  # a walk that finds more gives up on the rest (and says so)


def reachable_tensors(fn) -> list:
    """(path, tensor) pairs, in a stable order."""
    found, seen = [], set()
    for path, obj in _roots(fn):
        _walk(obj, path, found, seen, 0)
    return found


def identity_key(fn) -> tuple:
    """What `reachable_tensors` found, as comparable identities (and shapes)."""
    # A .grad read by the function is bound through its owner on each call, so .grad is
    # left out: a new .grad object every step is the normal case.
    return tuple((path, id(t), t._data.shape, t.dtype, t._requires_grad)
                 for path, t in reachable_tensors(fn))


def _roots(fn):
    if isinstance(fn, types.MethodType):
        yield "self", fn.__self__
        fn = fn.__func__
    if hasattr(fn, "forward") and not isinstance(fn, types.FunctionType):  # a module
        yield "self", fn
        return
    code = getattr(fn, "__code__", None)
    if code is None:
        return
    for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
        try:
            yield name, cell.cell_contents
        except ValueError:  # an empty cell: the variable is not assigned yet
            continue
    module_globals = getattr(fn, "__globals__", {})
    for name in _names(code):
        if name in module_globals:
            yield name, module_globals[name]
    for i, default in enumerate(fn.__defaults__ or ()):
        yield f"default{i}", default


@functools.lru_cache(maxsize=4096)
def _names(code) -> tuple:
    """Global names used by `code` and the functions defined inside it."""
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.extend(_names(const))
    return tuple(dict.fromkeys(names))


def _walk(obj, path: str, found: list, seen: set, depth: int) -> None:
    if depth > MAX_DEPTH or len(seen) > MAX_ITEMS or id(obj) in seen:
        return
    if isinstance(obj, (str, bytes, int, float, bool, type(None), type, types.ModuleType,
                        types.FunctionType, types.BuiltinFunctionType)):
        return
    seen.add(id(obj))
    if isinstance(obj, Tensor):
        found.append((path, obj))
        return
    for key, item in _children(obj):
        _walk(item, f"{path}.{key}", found, seen, depth + 1)


def _children(obj):
    if isinstance(obj, dict):
        return [(_key(k), v) for k, v in obj.items()]
    if isinstance(obj, (list, tuple)):
        return list(enumerate(obj))
    state = getattr(obj, "__dict__", None)
    if not isinstance(state, dict):
        return []
    if "_parameters" in state and "_modules" in state:  # a module: where its tensors live
        return [(k, state[k]) for k in ("_parameters", "_buffers", "_modules") if k in state] \
            + [(k, v) for k, v in state.items() if isinstance(v, Tensor)]
    if "param_groups" in state and "state" in state:  # an optimizer
        return [("param_groups", state["param_groups"]), ("state", state["state"])]
    # other objects: their public attributes (private ones are implementation detail)
    return [(k, v) for k, v in state.items() if not k.startswith("_")]


def _key(key) -> str:
    return key if isinstance(key, str) else f"[{type(key).__name__}@{id(key):x}]"
