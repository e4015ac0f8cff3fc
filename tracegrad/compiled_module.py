"""`tracegrad.compile(model)`: a module whose forward is compiled (SPEC §4.1, use 3).

>>> import tracegrad as torch
>>> model = torch.compile(torch.nn.Linear(2, 1))
>>> model(torch.ones(4, 2)).shape
tracegrad.Size([4, 1])
"""

from __future__ import annotations

from .compiled import CompiledFunction
from .nn.module import Module


class CompiledModule(Module):
    """Wraps `module`: parameters, state_dict and children are the original's."""

    def __init__(self, module: Module, **options):
        super().__init__()
        self._orig_mod = module  # registered as a child: parameters() sees the original's
        self._compiled_forward = CompiledFunction(module.forward, **options)

    def forward(self, *args, **kwargs):
        return self._compiled_forward(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Compiled{self._orig_mod!r}"
