"""Modules that hold modules: `Sequential` (a pipeline) and `ModuleList` (a list).

>>> import tracegrad as torch
>>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU())
>>> len(net), net[1]
(2, ReLU())
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Iterable, Iterator

from .module import Module, _addindent


def _index(idx, size: int) -> int:
    idx = operator.index(idx)
    if not -size <= idx < size:
        raise IndexError(f"index {idx} is out of range")
    return idx % size


class Sequential(Module):
    """Runs its modules in order, each on the previous one's output; the modules are
    given as arguments (named "0", "1", ...) or as an OrderedDict of named modules.

    Example::

        >>> import tracegrad as torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
        >>> net(torch.ones(4, 2)).shape
        tracegrad.Size([4, 1])
        >>> net[1], len(net)
        (ReLU(), 3)
        >>> net[:2]
        Sequential(
          (0): Linear(in_features=2, out_features=3, bias=True)
          (1): ReLU()
        )
    """

    def __init__(self, *args: Module):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for key, module in args[0].items():
                self.add_module(key, module)
        else:
            for i, module in enumerate(args):
                self.add_module(str(i), module)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return type(self)(OrderedDict(list(self._modules.items())[idx]))
        return list(self._modules.values())[_index(idx, len(self))]

    def __setitem__(self, idx, module: Module) -> None:
        key = list(self._modules)[_index(idx, len(self))]
        setattr(self, key, module)

    def __delitem__(self, idx) -> None:
        keys = list(self._modules)
        for key in (keys[idx] if isinstance(idx, slice) else [keys[_index(idx, len(self))]]):
            del self._modules[key]
        _renumber(self, list(self._modules.values()))  # as PyTorch does: indices stay 0..n-1

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> Sequential:
        """Add `module` at the end; returns self.

        Example::

            >>> import tracegrad as torch
            >>> torch.nn.Sequential(torch.nn.Linear(2, 2)).append(torch.nn.ReLU())
            Sequential(
              (0): Linear(in_features=2, out_features=2, bias=True)
              (1): ReLU()
            )
        """
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> Sequential:
        """Add each of `modules` at the end; returns self.

        Example::

            >>> import tracegrad as torch
            >>> net = torch.nn.Sequential(torch.nn.ReLU())
            >>> len(net.extend([torch.nn.Tanh(), torch.nn.Sigmoid()]))
            3
        """
        for module in modules:
            self.append(module)
        return self

    def insert(self, index: int, module: Module) -> Sequential:
        """Put `module` at position `index` (later ones move up by one); returns self.

        Example::

            >>> import tracegrad as torch
            >>> net = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Tanh())
            >>> [type(m).__name__ for m in net.insert(1, torch.nn.Sigmoid())]
            ['ReLU', 'Sigmoid', 'Tanh']
        """
        modules = list(self._modules.values())
        modules.insert(index, module)
        _renumber(self, modules)
        return self

    def forward(self, input):
        """Each module on the previous one's output.

        Example::

            >>> import tracegrad as torch
            >>> net = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Tanh())
            >>> net.forward(torch.tensor([-1.0, 1.0]))
            tensor([0.0000, 0.7616])
        """
        for module in self._modules.values():
            input = module(input)
        return input


class ModuleList(Module):
    """A list of modules whose parameters the owning module sees; no `forward` of its own.

    Example::

        >>> import tracegrad as torch
        >>> class Stack(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.layers = torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(3)])
        ...     def forward(self, x):
        ...         for layer in self.layers:
        ...             x = layer(x)
        ...         return x
        >>> net = Stack()
        >>> len(list(net.parameters())), net(torch.ones(1, 2)).shape
        (6, tracegrad.Size([1, 2]))
        >>> net.layers
        ModuleList(
          (0-2): 3 x Linear(in_features=2, out_features=2, bias=True)
        )
    """

    def __init__(self, modules: Iterable[Module] | None = None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return type(self)(list(self._modules.values())[idx])
        return self._modules[str(_index(idx, len(self)))]

    def __setitem__(self, idx, module: Module) -> None:
        setattr(self, str(_index(idx, len(self))), module)

    def __delitem__(self, idx) -> None:
        modules = list(self._modules.values())
        del modules[idx if isinstance(idx, slice) else _index(idx, len(self))]
        _renumber(self, modules)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __iadd__(self, modules: Iterable[Module]):
        return self.extend(modules)

    def append(self, module: Module) -> ModuleList:
        """Add `module` at the end; returns self.

        Example::

            >>> import tracegrad as torch
            >>> layers = torch.nn.ModuleList().append(torch.nn.ReLU())
            >>> layers[0], len(layers)
            (ReLU(), 1)
        """
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        """Add each of `modules` at the end; returns self (also `+=`).

        Example::

            >>> import tracegrad as torch
            >>> layers = torch.nn.ModuleList([torch.nn.ReLU()])
            >>> layers.extend([torch.nn.Tanh(), torch.nn.Sigmoid()])
            ModuleList(
              (0): ReLU()
              (1): Tanh()
              (2): Sigmoid()
            )
        """
        for module in modules:
            self.append(module)
        return self

    def insert(self, index: int, module: Module) -> None:
        """Put `module` at position `index`.

        Example::

            >>> import tracegrad as torch
            >>> layers = torch.nn.ModuleList([torch.nn.ReLU(), torch.nn.Tanh()])
            >>> layers.insert(0, torch.nn.Sigmoid())
            >>> [type(m).__name__ for m in layers]
            ['Sigmoid', 'ReLU', 'Tanh']
        """
        modules = list(self._modules.values())
        modules.insert(index, module)
        _renumber(self, modules)

    def __repr__(self) -> str:
        """Runs of equal modules print once: `(0-2): 3 x Linear(...)` (PyTorch's form)."""
        reprs = [repr(m) for m in self]
        if not reprs:
            return self._get_name() + "()"
        runs = []  # [first index, last index, text]
        for i, text in enumerate(reprs):
            if runs and runs[-1][2] == text:
                runs[-1][1] = i
            else:
                runs.append([i, i, text])
        lines = [_addindent(f"({a}): {t}" if a == b else f"({a}-{b}): {b - a + 1} x {t}", 2)
                 for a, b, t in runs]
        return self._get_name() + "(\n  " + "\n  ".join(lines) + "\n)"


class ModuleDict(Module):
    """A dictionary of modules, in insertion order, whose parameters the owning module sees.

    Example::

        >>> import tracegrad as torch
        >>> acts = torch.nn.ModuleDict({"relu": torch.nn.ReLU(), "tanh": torch.nn.Tanh()})
        >>> acts["relu"](torch.tensor([-1.0, 1.0]))
        tensor([0., 1.])
        >>> list(acts), "tanh" in acts
        (['relu', 'tanh'], True)
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        del self._modules[key]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __contains__(self, key: str) -> bool:
        return key in self._modules

    def keys(self):
        """The names, in insertion order.

        Example::

            >>> import tracegrad as torch
            >>> torch.nn.ModuleDict({"b": torch.nn.ReLU(), "a": torch.nn.Tanh()}).keys()
            dict_keys(['b', 'a'])
        """
        return self._modules.keys()

    def items(self):
        """(name, module) pairs.

        Example::

            >>> import tracegrad as torch
            >>> list(torch.nn.ModuleDict({"act": torch.nn.ReLU()}).items())
            [('act', ReLU())]
        """
        return self._modules.items()

    def values(self):
        """The modules.

        Example::

            >>> import tracegrad as torch
            >>> list(torch.nn.ModuleDict({"act": torch.nn.ReLU()}).values())
            [ReLU()]
        """
        return self._modules.values()

    def update(self, modules) -> None:
        """Add (or replace) modules from a mapping or (name, module) pairs.

        Example::

            >>> import tracegrad as torch
            >>> acts = torch.nn.ModuleDict({"act": torch.nn.ReLU()})
            >>> acts.update([("act", torch.nn.Tanh()), ("out", torch.nn.Sigmoid())])
            >>> acts
            ModuleDict(
              (act): Tanh()
              (out): Sigmoid()
            )
        """
        items = modules.items() if hasattr(modules, "items") else modules
        for key, module in items:
            self[key] = module


def _renumber(container: Module, modules: list) -> None:
    """`modules`, in order, as the container's children named "0", "1", ..."""
    children = container._modules  # changed in place: a `Registry`, whose changes count
    children.clear()
    children.update((str(i), module) for i, module in enumerate(modules))
