"""The state a function can reach without being passed it, and a guard that it is unchanged.

A compiled function binds the tensors its trace found (parameters in closures, modules
and optimizers, optimizer state) to graph inputs, and bakes in the Python values it read
(a global `scale = 2.0`, a module's `training` flag, an optimizer's `nesterov`). If on a
later call the function would find *other* tensor objects or values there, the trace no
longer describes the call. One walk — over closure cells, the globals the code names,
default arguments and a bound method's object, into modules, optimizers, containers and
plain objects' public attributes — lists those tensors, and is compiled into a guard: a
small generated Python function that re-checks exactly what the walk saw (identities,
lengths, keys, shapes, values), which is far cheaper than walking again on every call.
What it saw inside a module tree it re-checks only when a module changed since it last
looked (`nn/structure.py`); the tensors there it checks on every call.

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

from .autograd import grad_mode
from .nn.module import Module
from .nn.structure import CHANGES, Registry
from .tensor import Tensor

MAX_DEPTH = 6
MAX_ITEMS = 10_000  # a walk that finds more gives up on the rest
_OPAQUE = (bytes, type, types.ModuleType, types.BuiltinFunctionType)
# Functions of these packages reach only their own machinery, never the user's state.
_LIBRARY_MODULES = ("tracegrad", "numpy", "builtins", "functools", "typing", "collections")
_VALUES = (str, int, float, bool, type(None))


def reachable_tensors(fn) -> list:
    """(path, tensor) pairs, in a stable order."""
    walk = _Walk(exempt=())
    walk.run(fn)
    return walk.found


def call_guard(fn, args: tuple, kwargs: dict, exempt=()):
    """A function `check(args, kwargs) -> bool`: is a call like this one, reaching the same
    state? Arguments must match in structure, tensor shapes, dtypes and `requires_grad`
    and Python values; grad mode must be the same; and `fn` must reach the same tensors and
    values. `exempt` lists (container, key) pairs read afresh on each call (hyperparameters
    that are graph inputs): a change there is no reason to trace again.
    """
    walk = _Walk(exempt)
    walk.check(f"GM.enabled is {grad_mode.state.enabled}")
    walk.check(f"len(A) == {len(args)} and tuple(W) == {walk.const(tuple(kwargs))}")
    for i, arg in enumerate(args):
        walk.visit_argument(arg, f"A[{i}]")
    for key, arg in kwargs.items():
        walk.visit_argument(arg, f"W[{key!r}]")
    # The trace saw one input where an argument was passed twice: aliasing must match.
    leaves = walk.argument_tensors
    for i, (expr_a, a) in enumerate(leaves):
        for expr_b, b in leaves[i + 1:]:
            walk.check(f"({expr_a} is {expr_b}) is {a is b}")
    walk.run(fn)
    return _compile_guard(walk, fn)


class _Walk:
    """Visits the reachable objects, collecting tensors and the checks for a guard."""

    def __init__(self, exempt):
        self.found, self.seen = [], set()
        self.exempt = {(id(c), k) for c, k in exempt}
        self.lines, self.constants, self.count = [], [], 0
        self.argument_tensors = []  # (expression, tensor) of the call's tensor arguments
        self.tree = None  # the _ModuleTree being walked, if any

    def run(self, fn) -> None:
        for path, expr, obj in _roots(fn, self):
            self.visit(obj, path, expr, 0)

    def const(self, obj) -> str:
        self.constants.append(obj)
        return f"K[{len(self.constants) - 1}]"

    def local(self, expr: str) -> str:
        name = f"v{self.count}"
        self.count += 1
        self.lines.append(f"{name} = {expr}")
        return name

    def check(self, condition: str) -> None:
        self.lines.append(f"if not ({condition}): return False")

    def visit_argument(self, obj, expr: str) -> None:
        """An argument: tensors by type (a new tensor each call is normal), the rest as
        reachable state."""
        if isinstance(obj, Tensor):
            self.argument_tensors.append((expr, obj))
            self.check(f"isinstance({expr}, {self.const(Tensor)}) and {expr}._data.shape == "
                       f"{obj._data.shape!r} and {expr}.dtype is {self.const(obj.dtype)} and "
                       f"{expr}._requires_grad is {obj._requires_grad} and "
                       f"{expr}._hooks is {self.const(obj._hooks)}")
        elif isinstance(obj, (list, tuple)):
            self.check(f"type({expr}) is {self.const(type(obj))} and len({expr}) == {len(obj)}")
            for i, item in enumerate(obj):
                self.visit_argument(item, f"{expr}[{i}]")
        elif isinstance(obj, dict):
            self.check(f"type({expr}) is dict and tuple({expr}) == {self.const(tuple(obj))}")
            for key, item in obj.items():
                self.visit_argument(item, f"{expr}[{self.const(key)}]")
        else:
            self.visit(obj, "argument", expr, 0)

    def visit(self, obj, path: str, expr: str, depth: int) -> None:
        if isinstance(obj, _VALUES):  # baked into the trace if it was read: must not change
            if obj is None or isinstance(obj, bool):  # singletons: identity says it all
                self.check(f"{expr} is {obj!r}")
            else:
                self.check(f"type({expr}) is {self.const(type(obj))} and {expr} == "
                           f"{self.const(obj)}")
            return
        if isinstance(obj, _OPAQUE) or depth > MAX_DEPTH or len(self.seen) > MAX_ITEMS:
            return
        var = self.local(expr)
        known = self.const(obj)
        self.check(f"{var} is {known}")
        if id(obj) in self.seen:
            return
        self.seen.add(id(obj))
        if self.tree is not None:
            self.tree.admit(obj)
        if isinstance(obj, (types.FunctionType, types.MethodType)):
            self.visit_function(obj, path, var, depth)
            return
        if isinstance(obj, Tensor):
            self.found.append((path, obj))
            # `.data = ...` can swap the array: its shape and dtype must stay. Checked on
            # every call, in a module tree too, where the tensor is the one known. A hook
            # registered or removed replaces the tensor's list of hooks (`register_hook`).
            subject = var if self.tree is None else known
            check = (f"{subject}._data.shape == {obj._data.shape!r} and {subject}.dtype is "
                     f"{self.const(obj.dtype)} and {subject}._requires_grad is "
                     f"{obj._requires_grad} and {subject}._hooks is {self.const(obj._hooks)}")
            (self.lines if self.tree is None else self.tree.tensor_checks).append(
                f"if not ({check}): return False")
            return
        if self.tree is None and isinstance(obj, Module):
            self.visit_module_tree(obj, path, var, depth)
            return
        for label, access, item in self.children(obj, var):
            self.visit(item, f"{path}.{label}", access, depth + 1)

    def visit_module_tree(self, module, path: str, var: str, depth: int) -> None:
        """A module and everything under it; the checks, but those of its tensors, run
        only when the count of module changes moved since they last passed."""
        outer, self.tree = self.lines, _ModuleTree()
        self.tree.admit(module)
        self.lines = self.tree.lines
        try:
            for label, access, item in self.children(module, var):
                self.visit(item, f"{path}.{label}", access, depth + 1)
        finally:
            tree, self.tree, self.lines = self.tree, None, outer
        if tree.counted:
            changes, checked_at = self.const(CHANGES), self.const([None])
            self.lines += [f"if {changes}[0] != {checked_at}[0]:",
                           f"    count = {changes}[0]  # read first: a change while we look",
                           *(f"    {line}" for line in tree.lines),  # counts again
                           f"    {checked_at}[0] = count"]
        else:
            self.lines += tree.lines
        self.lines += tree.tensor_checks

    def visit_function(self, fn, path: str, var: str, depth: int) -> None:
        """A function the traced one may call: what it reaches counts too (its closure,
        the globals it names, its defaults, a bound method's object)."""
        if isinstance(fn, types.MethodType):
            self.visit(fn.__self__, f"{path}.__self__", f"{var}.__self__", depth + 1)
            fn = fn.__func__
            var = f"{var}.__func__"
        module = getattr(fn, "__module__", None) or ""
        if module.split(".")[0] in _LIBRARY_MODULES:
            return
        for label, access, item in _function_parts(fn, var):
            self.visit(item, f"{path}.{label}", access, depth + 1)

    def children(self, obj, var: str) -> list:
        if isinstance(obj, dict):  # (`var` is this very dict: its keys may still change)
            self.check(f"tuple({var}) == {self.const(tuple(obj))}" if obj else f"not {var}")
            return [(_label(k), f"{var}[{self.const(k)}]", v) for k, v in obj.items()
                    if (id(obj), k) not in self.exempt]
        if isinstance(obj, (list, tuple)):
            self.check(f"len({var}) == {len(obj)}")
            return [(str(i), f"{var}[{i}]", v) for i, v in enumerate(obj)
                    if (id(obj), i) not in self.exempt]
        state = getattr(obj, "__dict__", None)
        if not isinstance(state, dict):
            return []
        keys = _attributes(state)
        return [(k, f"{var}.__dict__[{k!r}]", state[k]) for k in keys]


class _ModuleTree:
    """The checks of one module tree, and whether every change to what they read counts
    (`nn/structure.py`): only modules with their own `__setattr__`/`__delattr__` and
    `Registry` dicts, holding tensors, values and modules, are in it."""

    def __init__(self):
        self.lines, self.tensor_checks = [], []
        self.counted = True

    def admit(self, obj) -> None:
        if isinstance(obj, Module):
            state, kind = obj.__dict__, type(obj)
            self.counted &= (kind.__setattr__ is Module.__setattr__
                             and kind.__delattr__ is Module.__delattr__
                             and all(type(state.get(name)) is Registry
                                     for name in ("_parameters", "_buffers", "_modules")))
        elif not isinstance(obj, (Tensor, Registry)):
            self.counted = False


def _attributes(state: dict) -> list:
    """Which attributes of an object hold what a traced function may depend on."""
    if "_parameters" in state and "_modules" in state:  # a module: tensors and settings
        return [k for k, v in state.items() if k in ("_parameters", "_buffers", "_modules")
                or isinstance(v, (Tensor, *_VALUES))]
    if "param_groups" in state and "state" in state:  # an optimizer
        return ["param_groups", "state"]
    if "__wrapped__" in state:  # a wrapper (a compiled function): its own attributes are
        return ["__wrapped__"]  # its machinery (call counts, logs); it may call what it wraps
    return [k for k in state if not k.startswith("_")]  # private ones are implementation


def _roots(fn, walk: _Walk):
    """(path, expression, object) for each place a function can reach state from."""
    if isinstance(fn, types.MethodType):
        yield "self", "S", fn.__self__
        fn = fn.__func__
    if hasattr(fn, "forward") and not isinstance(fn, types.FunctionType):  # a module
        yield "self", "S", fn
        return
    if isinstance(fn, functools.partial):  # what it binds, and what its function reaches
        yield "func", "S.func", fn.func
        yield "args", "S.args", fn.args
        yield "keywords", "S.keywords", fn.keywords
        return
    yield from _function_parts(fn, None)


def _function_parts(fn, var: str | None):
    """(label, expression, object) for a function's closure cells, the globals its code
    names and its defaults; `var` is the expression for `fn` (None: the guard's C/G/D)."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return
    cells = "C" if var is None else f"{var}.__closure__"
    for i, (name, cell) in enumerate(zip(code.co_freevars, fn.__closure__ or ())):
        try:
            yield name, f"{cells}[{i}].cell_contents", cell.cell_contents
        except ValueError:  # an empty cell: the variable is not assigned yet
            continue
    module_globals = getattr(fn, "__globals__", {})
    names = "G" if var is None else f"{var}.__globals__"
    for name in _names(code):
        if name in module_globals:
            yield name, f"{names}[{name!r}]", module_globals[name]
    defaults = "D" if var is None else f"{var}.__defaults__"
    for i, default in enumerate(fn.__defaults__ or ()):
        yield f"default{i}", f"{defaults}[{i}]", default


def _compile_guard(walk: _Walk, fn):
    body = "\n".join(f"        {line}" for line in walk.lines) or "        pass"
    source = (f"def guard(S, C, G, D, K, GM, A, W):\n    try:\n{body}\n"
              f"    except Exception:\n        return False\n    return True\n")
    namespace: dict = {}
    exec(compile(source, "<tracegrad guard>", "exec"), namespace)  # noqa: S102 - our own code
    guard = namespace["guard"]
    target = fn.__func__ if isinstance(fn, types.MethodType) else fn
    owner = fn.__self__ if isinstance(fn, types.MethodType) else fn
    closure = getattr(target, "__closure__", None) or ()
    module_globals = getattr(target, "__globals__", {})
    defaults = getattr(target, "__defaults__", None) or ()
    check = functools.partial(guard, owner, closure, module_globals, defaults,
                              walk.constants, grad_mode.state)
    check.source = source  # for explain() and debugging
    return check


@functools.lru_cache(maxsize=4096)
def _names(code) -> tuple:
    """Global names used by `code` and the functions defined inside it."""
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.extend(_names(const))
    return tuple(dict.fromkeys(names))


def _label(key) -> str:
    return key if isinstance(key, str) else f"[{type(key).__name__}@{id(key):x}]"
