"""The record that describes one primitive: every facet of an op in one place.

A `Primitive` carries
* `shape`   — the shape/dtype rule: input `Spec`s and attributes to the output `Spec`;
* `kernel`  — the NumPy implementation that eager mode and the reference interpreter run;
* `vjp`     — one derivative rule per input, written with tensor operations (operators,
              Tensor methods and calls of other primitives), so that the same rule gives
              numbers in eager backward, graph nodes when traced, and can be differentiated
              again for higher-order gradients;
* `saves`   — which values the rules read (input positions and/or "out"); everything else
              is dropped after the forward, which is what keeps autograd's memory small;
* `lowering` — filled in by the compiler's backend (a slot, keyed by the primitive's name);
* `sample`  — example inputs and attributes, which drive the op-table tests.

Calling a primitive applies it to whatever tensor-like values it is given:

>>> from tracegrad.compiler.ops import mul  # doctest: +SKIP
>>> mul(x, y)  # same as x * y without type promotion  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .dtypes import DType


class Spec(NamedTuple):
    """What the shape rule knows of a value: its shape and dtype."""

    shape: tuple
    dtype: DType

    @property
    def ndim(self) -> int:
        return len(self.shape)


@dataclass(eq=False)
class Primitive:
    name: str
    kind: str  # elementwise | reduce | movement | matmul | index
    shape: Callable[..., Spec]
    kernel: Callable[..., Any]
    vjp: tuple | None = None  # one rule per input; None: not differentiable
    saves: tuple = ()  # input positions and/or "out" the rules read
    sample: Callable | None = None
    backward_name: str = ""  # PyTorch's grad_fn name, e.g. "MulBackward0"
    variadic: bool = False  # inputs are a list (cat): one rule, called with i=position
    lowering: Any = field(default=None, repr=False)

    def __post_init__(self):
        self.saves_out = "out" in self.saves
        self.saved_inputs = tuple(i for i in self.saves if i != "out")
        if not self.backward_name:
            self.backward_name = "".join(p.title() for p in self.name.split("_")) + "Backward0"

    @property
    def differentiable(self) -> bool:
        return self.vjp is not None

    def rule(self, i: int):
        """The derivative rule for input `i` (variadic primitives share one rule)."""
        return self.vjp[0] if self.variadic else self.vjp[i]

    def __call__(self, *inputs, **attrs):
        """Apply to tensor-like inputs; the first one that knows how does the work."""
        for x in inputs:
            apply = getattr(type(x), "_apply_primitive", None)
            if apply is not None:
                return apply(self, inputs, attrs)
        raise TypeError(f"{self.name}: expected at least one tensor among the inputs")

    def __repr__(self) -> str:
        return f"<primitive {self.name}>"
