"""`Optimizer`: parameter groups, per-parameter state, `zero_grad`, and PyTorch's
`state_dict` format (parameters named by their position across the groups).

Each optimizer writes its update rule once, as a function of arrays-or-tensors and a math
namespace (`ARRAY_MATH` or `TENSOR_MATH`). Eager steps run the rule on the NumPy arrays
inside the tensors (a handful of ufunc calls per parameter, then the version counters are
bumped). While a tracer records (`tracegrad.compile`), the same rule runs with tensor
operations under `no_grad`, so that the trace sees every write, and the numeric
hyperparameters (`lr`, `momentum`, `betas`, `weight_decay`) are read as inputs of the trace:
a schedule that changes them needs no re-trace.

>>> import tracegrad as torch
>>> w = torch.nn.Parameter(torch.ones(2))
>>> opt = torch.optim.SGD([w], lr=0.5)
>>> (w * w).sum().backward(); opt.step(); w
Parameter containing:
tensor([0., 0.], requires_grad=True)
"""

from __future__ import annotations

import copy
from collections import defaultdict
from itertools import chain
from types import SimpleNamespace

import numpy as np

from ..autograd.grad_mode import enable_grad, no_grad
from ..functions.pointwise import maximum, sqrt
from ..functions.shaping import clone
from ..tensor import Tensor
from ..trace_state import state as _trace


class _RequiredParameter:
    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()

def _traced_nonzero(value) -> bool:
    """`value != 0` for a branch on a hyperparameter, while a tracer records."""
    if isinstance(value, Tensor) and _trace.tracer is not None:
        return _trace.tracer.hyperparameter_nonzero(value)
    return bool(value != 0)


# The few functions an update rule needs besides operators: one set per kind of value.
ARRAY_MATH = SimpleNamespace(sqrt=np.sqrt, maximum=np.maximum, copy=np.copy,
                             nonzero=lambda value: value != 0)
TENSOR_MATH = SimpleNamespace(sqrt=sqrt, maximum=maximum, copy=clone, nonzero=_traced_nonzero)


class Optimizer:
    """Base class: holds `param_groups` (dicts of hyperparameters and `params`) and `state`.

    `params` is an iterable of tensors, or of dicts each with its own `params` and any
    hyperparameters that differ from the defaults.

    Example::

        >>> import tracegrad as torch
        >>> w, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.zeros(1))
        >>> opt = torch.optim.SGD([{"params": [w]}, {"params": [b], "lr": 0.01}], lr=0.1)
        >>> [group["lr"] for group in opt.param_groups], opt.defaults["lr"]
        ([0.1, 0.01], 0.1)
    """

    def __init__(self, params, defaults: dict):
        self.defaults = defaults
        self.state: defaultdict = defaultdict(dict)
        self.param_groups: list[dict] = []
        if isinstance(params, Tensor):
            raise TypeError(f"params argument given to the optimizer should be an iterable of "
                            f"Tensors or dicts, but got {_type_word(params)}")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters with its own hyperparameters (the rest from defaults).

        Example::

            >>> import tracegrad as torch
            >>> a, b = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))
            >>> opt = torch.optim.SGD([a], lr=0.1, momentum=0.9)
            >>> opt.add_param_group({"params": [b], "lr": 0.01})
            >>> [(g["lr"], g["momentum"]) for g in opt.param_groups]
            [(0.1, 0.9), (0.01, 0.9)]
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, "
                            "but the ordering of tensors in sets will change between runs. "
                            "Please use a list instead.")
        params = list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params "
                                f"is {type(p).__name__}")
            if p.grad_fn is not None:
                raise ValueError("can't optimize a non-leaf Tensor")
        group = dict(param_group, params=params)
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            group.setdefault(name, default)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or seen & {id(p) for p in params}:
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients of every parameter: `.grad = None`, or zeros in place.

        Example::

            >>> import tracegrad as torch
            >>> w = torch.nn.Parameter(torch.ones(2))
            >>> opt = torch.optim.SGD([w], lr=0.1)
            >>> (w * 3).sum().backward()
            >>> opt.zero_grad(set_to_none=False)
            >>> w.grad
            tensor([0., 0.])
            >>> opt.zero_grad()
            >>> print(w.grad)
            None
        """
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:  # whether it had one or not (a trace need not know)
                    p.grad = None
                elif p._has_grad():
                    if p._grad.grad_fn is not None:
                        p._grad = p._grad.detach()
                    p._grad.zero_()

    def step(self, closure=None):
        """Update every parameter that has a gradient; `closure()`, if given, recomputes the
        loss (with gradients) first, and `step` returns it.

        Example::

            >>> import tracegrad as torch
            >>> w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
            >>> opt = torch.optim.SGD([w], lr=0.1)
            >>> (w * w).sum().backward()
            >>> opt.step()
            >>> w
            Parameter containing:
            tensor([0.8000, 1.6000], requires_grad=True)
            >>> def closure():
            ...     opt.zero_grad()
            ...     loss = (w * w).sum()
            ...     loss.backward()
            ...     return loss
            >>> opt.step(closure)
            tensor(3.2000, grad_fn=<SumBackward0>)
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                params = [p for p in group["params"] if p._has_grad()]
                if params:
                    self._update_group(group, params)
        return loss

    def _update_group(self, group: dict, params: list) -> None:
        """Update `params` (those of `group` that have a gradient) with the group's
        hyperparameters, as they are now (a schedule may have changed them)."""
        raise NotImplementedError

    # --- state_dict ---
    def state_dict(self) -> dict:
        """The optimizer's hyperparameters and state, with parameters named by their position
        across the groups (PyTorch's format):
        `{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}`.

        Example::

            >>> import tracegrad as torch
            >>> w = torch.nn.Parameter(torch.ones(1))
            >>> opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
            >>> (w * 2).sum().backward()
            >>> opt.step()
            >>> saved = opt.state_dict()
            >>> saved["state"]
            {0: {'momentum_buffer': tensor([2.])}}
            >>> saved["param_groups"][0]["params"], saved["param_groups"][0]["momentum"]
            ([0], 0.9)
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)] if isinstance(p, Tensor) else p: values
                 for p, values in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters and state saved by `state_dict` (copies the tensors).

        Example::

            >>> import tracegrad as torch
            >>> w = torch.nn.Parameter(torch.ones(1))
            >>> opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
            >>> (w * 2).sum().backward()
            >>> opt.step()
            >>> other = torch.optim.SGD([w], lr=0.5, momentum=0.5)
            >>> other.load_state_dict(opt.state_dict())
            >>> other.param_groups[0]["lr"], other.state[w]["momentum_buffer"]
            (0.1, tensor([2.]))
        """
        saved_groups = copy.deepcopy(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"])
               for g, s in zip(self.param_groups, saved_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match "
                             "the size of optimizer's group")
        params_by_index = dict(zip(chain.from_iterable(g["params"] for g in saved_groups),
                                   chain.from_iterable(g["params"] for g in self.param_groups)))
        state: defaultdict = defaultdict(dict)
        for key, values in state_dict["state"].items():
            param = params_by_index.get(key)
            if param is None:
                state[key] = values
                continue
            state[param] = {name: _cast_state(name, value, param)
                            for name, value in values.items()}
        for group, saved in zip(self.param_groups, saved_groups):
            saved["params"] = group["params"]
        self.state = state
        self.param_groups = saved_groups

    def __repr__(self) -> str:
        text = type(self).__name__ + " ("
        for i, group in enumerate(self.param_groups):
            text += f"\nParameter Group {i}\n"
            text += "".join(f"    {key}: {group[key]}\n" for key in sorted(group)
                            if key != "params")
        return text + ")"

    def __getstate__(self) -> dict:
        return {"defaults": self.defaults, "state": self.state,
                "param_groups": self.param_groups}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


def _cast_state(name: str, value, param: Tensor):
    """A copy of a saved state value; floating tensors take the parameter's dtype (but
    `step`, a count, keeps its own), as PyTorch's loading does."""
    if not isinstance(value, Tensor):
        return copy.deepcopy(value)
    if name != "step" and param.is_floating_point() and value.is_floating_point():
        value = value.to(param.dtype)
    return Tensor._wrap(value._data.copy(), value.dtype)


def _type_word(t: Tensor) -> str:
    kind = {"float32": "Float", "float64": "Double", "int64": "Long", "int32": "Int",
            "bool": "Bool"}[t.dtype.name]
    return f"torch.{kind}Tensor"


def on_arrays(*tensors) -> bool:
    """Whether the fast path applies: nothing is being traced, and every tensor holds a
    plain NumPy array."""
    return _trace.tracer is None and all(type(t._data) is np.ndarray
                                         for t in tensors if t is not None)


def numbers(group: dict, keys: tuple, dtype) -> dict:
    """The group's numeric hyperparameters `keys` for this step: Python floats, or, while a
    tracer records, 0-d tensors that are inputs of the trace."""
    tracer = _trace.tracer
    if tracer is None:
        return {key: as_float(group[key]) for key in keys}
    return {key: tracer.hyperparameter(group, key, dtype) for key in keys}


def betas(group: dict, dtype) -> tuple:
    """`group["betas"]`, as `numbers` reads numbers."""
    pair, tracer = group["betas"], _trace.tracer
    if tracer is None:
        return tuple(as_float(b) for b in pair)
    return tuple(tracer.hyperparameter(pair, i, dtype) for i in (0, 1))


def bump_versions(*tensors) -> None:
    """Record in-place writes made directly to the tensors' arrays."""
    for t in tensors:
        if t is not None:
            t._version[0] += 1


def as_float(value) -> float:
    """A hyperparameter that may be given as a one-element tensor."""
    return float(value.item()) if isinstance(value, Tensor) else value
