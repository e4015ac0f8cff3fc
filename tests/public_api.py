"""The public API as a list of objects: what must carry a docstring with an example.

Public means reachable from SPEC's namespaces under a name without a leading underscore:
the functions and classes of `tracegrad`, `tracegrad.autograd` (and its `profiler`),
`tracegrad.nn` (with `functional`, `init` and `utils`) and `tracegrad.optim`, and the
public methods and properties that those classes define. The compiler and the runtime
are internals. A module's `__all__`, where it has one, is its public list; otherwise the
public names are those bound to functions or classes of tracegrad (not the helpers a
module imports from elsewhere, nor submodules).

Run it to see what lacks a docstring or an example: `python tests/public_api.py`.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field

MODULES = ("tracegrad", "tracegrad.autograd", "tracegrad.autograd.profiler", "tracegrad.nn",
           "tracegrad.nn.functional", "tracegrad.nn.init", "tracegrad.nn.utils",
           "tracegrad.optim")
LAZY = {"tracegrad.autograd": ("Function", "FunctionCtx")}  # loaded by module __getattr__


@dataclass
class PublicObject:
    """One documented object and every public name it goes by (aliases share a docstring)."""

    obj: object
    names: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The name it is defined under where that is public, else the first found."""
        own = getattr(_target(self.obj), "__name__", None)
        if isinstance(self.obj, property):
            own = self.obj.fget.__name__
        return next((n for n in self.names if n.rsplit(".", 1)[-1] == own), self.names[0])

    @property
    def own_doc(self) -> str | None:
        """The docstring written for this object (None if it only inherits one)."""
        return _target(self.obj).__doc__

    @property
    def doc(self) -> str | None:
        """The docstring a user sees, inherited from an overridden method if need be."""
        obj = self.obj
        if isinstance(obj, property):
            return obj.__doc__ or inspect.getdoc(obj.fget)
        return inspect.getdoc(obj)


def _target(obj):
    """What carries the docstring: a classmethod's or staticmethod's function, else obj."""
    if isinstance(obj, (classmethod, staticmethod)):
        return obj.__func__
    return obj


def _defined_in(obj, prefix: str) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module == prefix or module.startswith(prefix + ".")


def _module_names(module) -> list[str]:
    if hasattr(module, "__all__"):
        return list(module.__all__)
    names = [n for n in dir(module) if not n.startswith("_")]
    names += LAZY.get(module.__name__, ())
    # The package exports its whole namespace; a submodule only what it defines.
    scope = "tracegrad" if module.__name__ == "tracegrad" else module.__name__
    return [n for n in names if (inspect.isfunction(obj := getattr(module, n))
                                 or inspect.isclass(obj)) and _defined_in(obj, scope)]


def _class_members(cls):
    """The public methods and properties a tracegrad class defines itself."""
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(member, (property, classmethod, staticmethod)) or inspect.isfunction(
                member):
            yield name, member


def public_objects() -> list[PublicObject]:
    """Every public object once, in the order the namespaces list them."""
    found: dict[int, PublicObject] = {}
    classes = []

    def add(qualname, obj):
        key = id(_target(obj))
        entry = found.setdefault(key, PublicObject(obj))
        if qualname not in entry.names:
            entry.names.append(qualname)

    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in _module_names(module):
            obj = getattr(module, name)
            add(f"{module_name}.{name}", obj)
            if inspect.isclass(obj) and obj not in classes:
                classes.append(obj)
    for cls in classes:
        owner = next(e.name for e in found.values() if e.obj is cls)
        for name, member in _class_members(cls):
            add(f"{owner}.{name}", member)
    return list(found.values())


def lacking_examples() -> list[tuple[str, str]]:
    """(name, what is missing) for each public object without a docstring or an example."""
    missing = []
    for entry in public_objects():
        doc = entry.doc
        if not doc:
            missing.append((entry.name, "no docstring"))
        elif ">>>" not in doc:
            missing.append((entry.name, "no example"))
    return missing


if __name__ == "__main__":
    entries = public_objects()
    missing = lacking_examples()
    for name, what in missing:
        print(f"{what:14} {name}")
    print(f"{len(entries)} public objects ({sum(len(e.names) for e in entries)} names), "
          f"{len(missing)} lacking a docstring or an example")
