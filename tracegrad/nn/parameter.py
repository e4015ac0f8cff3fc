"""`Parameter`: a tensor that a `Module` registers as one of its learnable weights.

It is an ordinary leaf tensor (it shares memory with the tensor it was made from) whose
type tells `Module.__setattr__` to list it among the module's parameters.

>>> import tracegrad as torch
>>> torch.nn.Parameter(torch.ones(2))
Parameter containing:
tensor([1., 1.], requires_grad=True)
"""

from __future__ import annotations

from ..creation import empty
from ..tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor that requires grad (by default) and that modules collect; it shares
    memory with `data`.

    Example::

        >>> import tracegrad as torch
        >>> p = torch.nn.Parameter(torch.ones(2))
        >>> p
        Parameter containing:
        tensor([1., 1.], requires_grad=True)
        >>> p.is_leaf, torch.nn.Parameter(torch.ones(1), requires_grad=False).requires_grad
        (True, False)
    """

    def __new__(cls, data: Tensor | None = None, requires_grad: bool = True):
        if data is None:
            data = empty(0)
        p = cls._wrap(data._data, data.dtype)
        p._version = data._version  # the same memory, so the same version counter
        if requires_grad:
            p.requires_grad = True  # the setter rejects integer dtypes, as PyTorch does
        return p

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True):
        pass  # all done in __new__; Tensor.__init__ would rebuild from data

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__

    def __deepcopy__(self, memo: dict) -> Parameter:
        if id(self) not in memo:
            copied = Parameter(Tensor._wrap(self._data.copy(), self.dtype), self.requires_grad)
            if self._grad is not None:
                copied._grad = Tensor._wrap(self._grad._data.copy(), self._grad.dtype)
            memo[id(self)] = copied
        return memo[id(self)]

    def __reduce__(self):
        return (_rebuild_parameter, (self._data.copy(), self.dtype.name, self.requires_grad))


def _rebuild_parameter(data, dtype_name: str, requires_grad: bool) -> Parameter:
    from ..compiler.ops.dtypes import from_name

    return Parameter(Tensor._wrap(data, from_name(dtype_name)), requires_grad)

