"""A count of the changes made to modules, so that a compiled call need not re-read them.

A compiled function's guard (`tracegrad/reachable.py`) checks that the module tree it
reaches is the one it traced: the same submodules and parameters under the same names,
the same `training` flags and settings. Walking that tree costs microseconds on every
call, and in a training loop it never changes. So every change to a module counts here:
an attribute set or deleted through `Module.__setattr__`/`__delattr__`, `train()`/`eval()`,
and any change to the dicts that hold its parameters, buffers and submodules (which are
`Registry` dicts). A guard walks a module tree only when the count moved since it last
found the tree unchanged. (This is how Dynamo's `mutation_guard` watches `nn.Module`s;
writing to a module's `__dict__` directly is not seen, as there.)

Tensors are not structure: their shapes, dtypes and `requires_grad` are checked on every
call.

>>> import tracegrad as torch
>>> net = torch.nn.Linear(2, 2)
>>> before = CHANGES[0]
>>> net.bias = None
>>> CHANGES[0] > before
True
"""

from __future__ import annotations

CHANGES = [0]  # a list, so guards read the current count through one reference


def changed() -> None:
    """Count a change (after making it: a guard that reads the new count sees it)."""
    CHANGES[0] += 1


class Registry(dict):
    """A module's `_parameters`, `_buffers` or `_modules`: a dict whose changes count."""

    __slots__ = ()

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        changed()

    def __delitem__(self, key) -> None:
        super().__delitem__(key)
        changed()

    def __ior__(self, other):
        self.update(other)
        return self

    def pop(self, *args):
        value = super().pop(*args)
        changed()
        return value

    def popitem(self):
        item = super().popitem()
        changed()
        return item

    def setdefault(self, key, default=None):
        value = super().setdefault(key, default)
        changed()
        return value

    def update(self, *args, **kwargs) -> None:
        try:
            super().update(*args, **kwargs)
        finally:  # it may have changed some entries before it raised
            changed()

    def clear(self) -> None:
        super().clear()
        changed()
