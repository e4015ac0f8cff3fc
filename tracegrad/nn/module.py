"""`Module`: a container of parameters, buffers and child modules, with a `forward`.

Assigning an attribute registers it: a `Parameter` goes to `_parameters`, a `Module` to
`_modules`, a tensor named by `register_buffer` to `_buffers`; the dictionaries keep
assignment order, which is the order of `parameters()` and of `state_dict()` (PyTorch's).

>>> import tracegrad as torch
>>> class Affine(torch.nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.scale = torch.nn.Parameter(torch.ones(2))
...         self.inner = torch.nn.Linear(2, 1)
...     def forward(self, x):
...         return self.inner(x * self.scale)
>>> [name for name, _ in Affine().named_parameters()]
['scale', 'inner.weight', 'inner.bias']
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterator

from ..autograd.grad_mode import no_grad
from ..compiler.ops.dtypes import DType, float32, float64
from ..tensor import Tensor
from .parameter import Parameter
from .structure import Registry, changed


def _type_word(tensor: Tensor) -> str:
    kind = {"float32": "Float", "float64": "Double", "int64": "Long", "int32": "Int",
            "bool": "Bool"}[tensor.dtype.name]
    return f"torch.{kind}Tensor"


def _addindent(text: str, spaces: int) -> str:
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


_NONE: dict = {}  # not found (a registered None is a value)
_hook_ids = itertools.count(1)  # keys of forward hooks, in registration order


class _RemovableHandle:
    def __init__(self, hooks: dict, key: int):
        self.hooks, self.key = hooks, key

    def remove(self) -> None:
        """Unregister the hook."""
        self.hooks.pop(self.key, None)


class Module:
    """Base class of every layer and model: subclass it and define `forward`.

    Assigning a `Parameter` or a `Module` to an attribute registers it; calling the module
    runs its forward hooks and `forward`.

    Example::

        >>> import tracegrad as torch
        >>> class TwoLayer(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.hidden = torch.nn.Linear(2, 3)
        ...         self.out = torch.nn.Linear(3, 1)
        ...     def forward(self, x):
        ...         return self.out(self.hidden(x).relu())
        >>> net = TwoLayer()
        >>> net
        TwoLayer(
          (hidden): Linear(in_features=2, out_features=3, bias=True)
          (out): Linear(in_features=3, out_features=1, bias=True)
        )
        >>> net(torch.ones(4, 2)).shape
        tracegrad.Size([4, 1])
    """

    training: bool

    def __init__(self, *args, **kwargs) -> None:
        if args or kwargs:
            raise TypeError(f"{type(self).__name__}.__init__() got unexpected arguments")
        state = self.__dict__
        state["training"] = True
        state["_parameters"] = Registry()
        state["_buffers"] = Registry()
        state["_non_persistent_buffers_set"] = set()
        state["_modules"] = Registry()
        state["_forward_hooks"] = {}
        state["_forward_pre_hooks"] = {}

    def forward(self, *args, **kwargs):
        """The computation: override it; call the module (`module(x)`), not `forward`.

        Example::

            >>> import tracegrad as torch
            >>> class Scale(torch.nn.Module):
            ...     def forward(self, x):
            ...         return 2 * x
            >>> Scale()(torch.tensor([1.0, 2.0]))
            tensor([2., 4.])
        """
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required '
                                  f'"forward" function')

    def __call__(self, *args, **kwargs):
        if self._forward_pre_hooks or self._forward_hooks:
            return self._call_with_hooks(args, kwargs)
        return self.forward(*args, **kwargs)

    def _call_with_hooks(self, args: tuple, kwargs: dict):
        for hook in list(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, output)
            output = result if result is not None else output
        return output

    def register_forward_hook(self, hook: Callable) -> _RemovableHandle:
        """`hook(module, args, output)` runs after `forward`; may return a new output.

        Example::

            >>> import tracegrad as torch
            >>> net = torch.nn.Identity()
            >>> handle = net.register_forward_hook(lambda module, args, output: output + 1)
            >>> net(torch.zeros(2))
            tensor([1., 1.])
            >>> handle.remove()
            >>> net(torch.zeros(2))
            tensor([0., 0.])
        """
        return self._add_hook(self._forward_hooks, hook)

    def register_forward_pre_hook(self, hook: Callable) -> _RemovableHandle:
        """`hook(module, args)` runs before `forward`; may return new arguments.

        Example::

            >>> import tracegrad as torch
            >>> net = torch.nn.Identity()
            >>> _ = net.register_forward_pre_hook(lambda module, args: (args[0] * 10,))
            >>> net(torch.ones(2))
            tensor([10., 10.])
        """
        return self._add_hook(self._forward_pre_hooks, hook)

    def _add_hook(self, hooks: dict, hook: Callable) -> _RemovableHandle:
        key = next(_hook_ids)
        hooks[key] = hook
        return _RemovableHandle(hooks, key)

    # --- registration ---
    def __setattr__(self, name: str, value) -> None:
        params = self.__dict__.get("_parameters")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            self._forget(name, self._parameters)
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{_describe(value)}' as parameter '{name}' "
                                f"(torch.nn.Parameter or None expected)")
            params[name] = None
        elif isinstance(value, Module):
            if params is None:
                raise AttributeError("cannot assign module before Module.__init__() call")
            self._forget(name, self._modules)
            self._modules[name] = value
        elif params is not None and name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign '{_describe(value)}' as child module '{name}' "
                                f"(torch.nn.Module or None expected)")
            self._modules[name] = None
        elif params is not None and name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{_describe(value)}' as buffer '{name}' "
                                f"(torch.Tensor or None expected)")
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)
            changed()  # guards of compiled calls may read it (the registries count their own)

    def _forget(self, name: str, kept: dict) -> None:
        """Drop `name` from wherever it was registered or stored before, but for `kept`,
        the registry it is about to be set in: there it keeps its place, as in PyTorch
        (`net[0] = layer` must not move the first layer last)."""
        self.__dict__.pop(name, None)
        for registry in (self._parameters, self._buffers, self._modules):
            if registry is not kept:
                registry.pop(name, None)
        self._non_persistent_buffers_set.discard(name)

    def __getattr__(self, name: str):
        state = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            found = state.get(registry, _NONE).get(name, _NONE)  # one lookup: forward's
            if found is not _NONE:  # `self.weight` pays for each
                return found
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                self._non_persistent_buffers_set.discard(name)
                return
        object.__delattr__(self, name)
        changed()

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers)
                      | set(self._modules))

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter (or None, a declared but absent one) under `name`.

        Example::

            >>> import tracegrad as torch
            >>> m = torch.nn.Module()
            >>> m.register_parameter("scale", torch.nn.Parameter(torch.ones(1)))
            >>> [name for name, _ in m.named_parameters()]
            ['scale']
        """
        if "_parameters" not in self.__dict__:
            raise AttributeError("cannot assign parameter before Module.__init__() call")
        _check_name(name, "parameter", self)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{_describe(param)}' object to parameter '{name}' "
                            f"(torch.nn.Parameter or None required)")
        if param is not None and param.grad_fn is not None:
            raise ValueError(f"Cannot assign non-leaf Tensor to parameter '{name}'. Model "
                             f"parameters must be created explicitly. To express '{name}' as "
                             f"a function of another Tensor, compute the value in the "
                             f"forward() method.")
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """A tensor that belongs to the module's state but is not trained (e.g. statistics).

        Example::

            >>> import tracegrad as torch
            >>> m = torch.nn.Module()
            >>> m.register_buffer("running_mean", torch.zeros(2))
            >>> m.running_mean, list(m.state_dict()), list(m.parameters())
            (tensor([0., 0.]), ['running_mean'], [])
        """
        if "_buffers" not in self.__dict__:
            raise AttributeError("cannot assign buffer before Module.__init__() call")
        _check_name(name, "buffer", self)
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{_describe(tensor)}' object to buffer '{name}' "
                            f"(torch Tensor or None required)")
        self._forget(name, self._buffers)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent_buffers_set.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Add a child module under `name` (as assigning the attribute does).

        Example::

            >>> import tracegrad as torch
            >>> net = torch.nn.Sequential()
            >>> net.add_module("act", torch.nn.ReLU())
            >>> net
            Sequential(
              (act): ReLU()
            )
        """
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{_describe(module)} is not a Module subclass")
        _check_name(name, "module", self)
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target: str) -> Module:
        """The descendant at the dotted path `target` (e.g. `"0.linear"`).

        Example::

            >>> import tracegrad as torch
            >>> net = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(2, 2)))
            >>> net.get_submodule("0.0")
            Linear(in_features=2, out_features=2, bias=True)
        """
        module = self
        for part in target.split(".") if target else ():
            if part not in module._modules:
                raise AttributeError(f"{module._get_name()} has no attribute `{part}`")
            module = module._modules[part]
        return module

    # --- iteration ---
    def named_modules(self, memo: set | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
        """(dotted name, module) for this module and every descendant, depth first.

        Example::

            >>> import tracegrad as torch
            >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU())
            >>> [name for name, _ in net.named_modules()]
            ['', '0', '1']
        """
        memo = set() if memo is None else memo
        if remove_duplicate and self in memo:
            return
        if remove_duplicate:
            memo.add(self)
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                sub = prefix + ("." if prefix else "") + name
                yield from module.named_modules(memo, sub, remove_duplicate)

    def modules(self) -> Iterator[Module]:
        """This module and every descendant, each once.

        Example::

            >>> import tracegrad as torch
            >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU())
            >>> [type(m).__name__ for m in net.modules()]
            ['Sequential', 'Linear', 'ReLU']
        """
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """(name, module) for the direct children, in registration order.

        Example::

            >>> import tracegrad as torch
            >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU())
            >>> [(name, type(m).__name__) for name, m in net.named_children()]
            [('0', 'Linear'), ('1', 'ReLU')]
        """
        seen = set()
        for name, module in self._modules.items():
            if module is not None and module not in seen:
                seen.add(module)
                yield name, module

    def children(self) -> Iterator[Module]:
        """The direct children, in registration order.

        Example::

            >>> import tracegrad as torch
            >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU())
            >>> list(net.children())
            [Linear(in_features=2, out_features=3, bias=True), ReLU()]
        """
        for _, module in self.named_children():
            yield module

    def _named_members(self, registry: str, prefix: str, recurse: bool,
                       remove_duplicate: bool = True):
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) \
            if recurse else [(prefix, self)]
        seen = set()
        for module_prefix, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield module_prefix + ("." if module_prefix else "") + name, value

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter), in registration order, shared parameters once.

        >>> import tracegrad as torch
        >>> [n for n, _ in torch.nn.Linear(2, 1).named_parameters(prefix="fc")]
        ['fc.weight', 'fc.bias']
        """
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """The parameters (of the descendants too, unless `recurse=False`), e.g. for an
        optimizer; shared parameters once.

        Example::

            >>> import tracegrad as torch
            >>> net = torch.nn.Linear(2, 3)
            >>> [p.shape for p in net.parameters()]
            [tracegrad.Size([3, 2]), tracegrad.Size([3])]
            >>> sum(p.numel() for p in net.parameters())
            9
        """
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
        """(dotted name, buffer), in registration order.

        Example::

            >>> import tracegrad as torch
            >>> net = torch.nn.Sequential(torch.nn.Module())
            >>> net[0].register_buffer("count", torch.tensor(0))
            >>> [name for name, _ in net.named_buffers()]
            ['0.count']
        """
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        """The buffers (persistent or not).

        Example::

            >>> import tracegrad as torch
            >>> m = torch.nn.Module()
            >>> m.register_buffer("mask", torch.ones(2), persistent=False)
            >>> list(m.buffers()), list(m.state_dict())
            ([tensor([1., 1.])], [])
        """
        for _, buffer in self.named_buffers(recurse=recurse):
            yield buffer

    # --- state ---
    def state_dict(self, destination=None, prefix: str = "", keep_vars: bool = False):
        """Parameters and persistent buffers by dotted name (detached, sharing memory).

        Example::

            >>> import tracegrad as torch
            >>> net = torch.nn.Sequential(torch.nn.Linear(2, 1))
            >>> {name: t.shape for name, t in net.state_dict().items()}
            {'0.weight': tracegrad.Size([1, 2]), '0.bias': tracegrad.Size([1])}
        """
        destination = OrderedDict() if destination is None else destination
        for name, param in self._parameters.items():
            if param is not None:
                destination[prefix + name] = param if keep_vars else param.detach()
        for name, buffer in self._buffers.items():
            if buffer is not None and name not in self._non_persistent_buffers_set:
                destination[prefix + name] = buffer if keep_vars else buffer.detach()
        for name, module in self._modules.items():
            if module is not None:
                module.state_dict(destination, prefix + name + ".", keep_vars)
        return destination

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Copy `state_dict`'s tensors into this module's parameters and buffers; with
        `strict`, missing or unexpected keys are errors, otherwise they are returned.

        Example::

            >>> import tracegrad as torch
            >>> a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
            >>> b.load_state_dict(a.state_dict())
            <All keys matched successfully>
            >>> torch.equal(a.weight, b.weight)
            True
            >>> b.load_state_dict({"weight": torch.zeros(1, 2)}, strict=False)
            _IncompatibleKeys(missing_keys=['bias'], unexpected_keys=[])
        """
        from .state_loading import load_state_dict

        return load_state_dict(self, state_dict, strict, assign)

    # --- modes and conversions ---
    def train(self, mode: bool = True) -> Module:
        """Set training mode (`mode=True`) or evaluation mode on every submodule.

        Example::

            >>> import tracegrad as torch
            >>> net = torch.nn.Sequential(torch.nn.Dropout())
            >>> net.train(False)[0].training
            False
            >>> net.train()[0].training
            True
        """
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")  # noqa: TRY004 (PyTorch's)
        for module in self.modules():
            module.__dict__["training"] = mode
        changed()
        return self

    def eval(self) -> Module:
        """Evaluation mode: `train(False)` (dropout becomes the identity).

        Example::

            >>> import tracegrad as torch
            >>> drop = torch.nn.Dropout(p=0.5).eval()
            >>> drop.training, drop(torch.ones(3))
            (False, tensor([1., 1., 1.]))
        """
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Turn gradient recording for every parameter on or off (e.g. to freeze).

        Example::

            >>> import tracegrad as torch
            >>> net = torch.nn.Linear(2, 1).requires_grad_(False)
            >>> [p.requires_grad for p in net.parameters()]
            [False, False]
        """
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the parameters' gradients: `.grad = None`, or zeros in place.

        Example::

            >>> import tracegrad as torch
            >>> net = torch.nn.Linear(2, 1)
            >>> net(torch.ones(1, 2)).sum().backward()
            >>> net.bias.grad
            tensor([1.])
            >>> net.zero_grad(set_to_none=False)
            >>> net.bias.grad
            tensor([0.])
            >>> net.zero_grad()
            >>> print(net.bias.grad)
            None
        """
        for p in self.parameters():
            if set_to_none:  # whether it had one or not (a trace need not know)
                p.grad = None
            elif p._has_grad():
                p._grad = p._grad.detach() if p._grad.grad_fn is not None else p._grad
                p._grad.zero_()

    def apply(self, fn: Callable[[Module], None]) -> Module:
        """Call `fn` on every submodule (children first) and on self, e.g. to initialise.

        Example::

            >>> import tracegrad as torch
            >>> def init(m):
            ...     if isinstance(m, torch.nn.Linear):
            ...         torch.nn.init.zeros_(m.weight)
            >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()).apply(init)
            >>> net[0].weight
            Parameter containing:
            tensor([[0., 0.],
                    [0., 0.]], requires_grad=True)
        """
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    def _apply(self, fn: Callable[[Tensor], Tensor]) -> Module:
        """Replace every parameter's and buffer's data by `fn(data)` (same objects)."""
        with no_grad():
            for module in self.modules():
                for param in module._parameters.values():
                    if param is not None:
                        param.data = fn(param)
                        if param._grad is not None:
                            param._grad.data = fn(param._grad)
                for name, buffer in module._buffers.items():
                    if buffer is not None:
                        module._buffers[name] = fn(buffer)
        return self

    def to(self, *args, **kwargs) -> Module:
        """`to(dtype)`, `to(tensor)` or `to("cpu")`: floating-point state cast to `dtype`.

        Example::

            >>> import tracegrad as torch
            >>> net = torch.nn.Linear(2, 1).to(torch.float64)
            >>> net.weight.dtype, net.to("cpu") is net
            (tracegrad.float64, True)
        """
        dtype = kwargs.get("dtype")
        for a in args:
            if isinstance(a, DType):
                dtype = a
            elif isinstance(a, Tensor):
                dtype = a.dtype
        if dtype is None:
            return self
        if not dtype.is_floating_point:
            raise TypeError(f"nn.Module.to only accepts floating point or complex dtypes, but "
                            f"got desired dtype={dtype}")
        return self._apply(lambda t: t.to(dtype) if t.is_floating_point() else t)

    def float(self) -> Module:
        """Floating-point parameters and buffers as float32.

        Example::

            >>> import tracegrad as torch
            >>> net = torch.nn.Linear(2, 1).double().float()
            >>> net.weight.dtype
            tracegrad.float32
        """
        return self.to(float32)

    def double(self) -> Module:
        """Floating-point parameters and buffers as float64.

        Example::

            >>> import tracegrad as torch
            >>> net = torch.nn.Linear(2, 1).double()
            >>> net.weight.dtype, net.bias.dtype
            (tracegrad.float64, tracegrad.float64)
        """
        return self.to(float64)

    def cpu(self) -> Module:
        """The module itself: everything lives in host memory.

        Example::

            >>> import tracegrad as torch
            >>> net = torch.nn.Linear(2, 1)
            >>> net.cpu() is net
            True
        """
        return self

    # --- printing ---
    def extra_repr(self) -> str:
        """The text between this module's parentheses (override to describe settings).

        Example::

            >>> import tracegrad as torch
            >>> torch.nn.Linear(2, 3).extra_repr()
            'in_features=2, out_features=3, bias=True'
            >>> class Scale(torch.nn.Module):
            ...     def __init__(self, factor):
            ...         super().__init__()
            ...         self.factor = factor
            ...     def extra_repr(self):
            ...         return f"factor={self.factor}"
            >>> Scale(2.0)
            Scale(factor=2.0)
        """
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({key}): " + _addindent(repr(module), 2)
                       for key, module in self._modules.items()]
        lines = extra_lines + child_lines
        text = self._get_name() + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                text += extra_lines[0]
            else:
                text += "\n  " + "\n  ".join(lines) + "\n"
        return text + ")"


def _describe(value) -> str:
    return _type_word(value) if isinstance(value, Tensor) else type(value).__name__


def _check_name(name, what: str, module: Module) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{what} name should be a string. Got {type(name).__name__}")
    if "." in name:
        raise KeyError(f'{what} name can\'t contain "."')
    if name == "":
        raise KeyError(f'{what} name can\'t be empty string ""')
    if name in module.__dict__ and name not in ("training",):
        raise KeyError(f"attribute '{name}' already exists")
