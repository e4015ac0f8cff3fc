"""Loading a `state_dict` into a module, with PyTorch's report of what did not fit.

Every key is matched against the module tree: a key naming a parameter or persistent
buffer is copied in (after a shape check), a parameter or buffer without a key is
*missing*, a key that names nothing is *unexpected*. With `strict`, missing and unexpected
keys are errors; all errors are raised together, in PyTorch's words. Unlike PyTorch, an
error loads nothing: every key is checked before any value is copied (SPEC §5).

>>> import tracegrad as torch
>>> net = torch.nn.Linear(2, 1)
>>> net.load_state_dict({"weight": torch.ones(1, 2), "scale": torch.ones(1)}, strict=False)
_IncompatibleKeys(missing_keys=['bias'], unexpected_keys=['scale'])
"""

from __future__ import annotations

from collections import namedtuple

from ..autograd.grad_mode import no_grad
from ..errors import op_error
from ..tensor import Tensor
from .parameter import Parameter


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What `load_state_dict` found missing or unexpected (PyTorch's named tuple)."""

    __slots__ = ()

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


def load_state_dict(root, state_dict, strict: bool, assign: bool) -> _IncompatibleKeys:
    """`root.load_state_dict(state_dict, strict, assign)`: see the module docstring."""
    missing, unexpected, errors, loads = [], [], [], []
    for prefix, module in root.named_modules(remove_duplicate=False):
        prefix = prefix + "." if prefix else ""
        loads += _check_own_state(module, state_dict, prefix, missing, unexpected, errors)
    if strict:
        if unexpected:
            errors.insert(0, "Unexpected key(s) in state_dict: {}. ".format(
                ", ".join(f'"{k}"' for k in unexpected)))
        if missing:
            errors.insert(0, "Missing key(s) in state_dict: {}. ".format(
                ", ".join(f'"{k}"' for k in missing)))
    if errors:
        raise op_error(RuntimeError, "load_state_dict", "Error(s) in loading state_dict for "
                       "{}:\n\t{}".format(type(root).__name__, "\n\t".join(errors)))
    for module, name, param, value in loads:
        _load(module, name, param, value, assign)
    return _IncompatibleKeys(missing, unexpected)


def _check_own_state(module, state_dict, prefix, missing, unexpected, errors) -> list:
    """What to load into `module`'s own parameters and buffers (not its children's) from
    the keys that start with `prefix`: (module, name, current tensor, new value)."""
    loads = []
    local = {**{k: v for k, v in module._parameters.items() if v is not None},
             **{k: v for k, v in module._buffers.items()
                if v is not None and k not in module._non_persistent_buffers_set}}
    for name, param in local.items():
        key = prefix + name
        if key not in state_dict:
            missing.append(key)
            continue
        value = state_dict[key]
        if not isinstance(value, Tensor):
            errors.append(f'While copying the parameter named "{key}", expected torch.Tensor '
                          f'or Tensor-like object from checkpoint but received {type(value)}')
        elif value.shape != param.shape:
            errors.append(f"size mismatch for {key}: copying a param with shape {value.shape} "
                          f"from checkpoint, the shape in current model is {param.shape}.")
        else:
            loads.append((module, name, param, value))
    for key in state_dict:
        if key.startswith(prefix):
            head = key[len(prefix):].split(".", 1)
            known = module._modules if len(head) > 1 else local
            if head[0] not in known:
                unexpected.append(key)
    return loads


def _load(module, name: str, param, value, assign: bool) -> None:
    if assign:
        if isinstance(param, Parameter) and not isinstance(value, Parameter):
            value = Parameter(value, param.requires_grad)
        setattr(module, name, value)
    else:
        with no_grad():
            param.copy_(value)
