"""Random tensors from one seeded generator: `manual_seed`, `rand`, `randn`, `randint`.

The stream is NumPy's PCG64, so the values differ from PyTorch's; seeding makes them
repeatable.

>>> import tracegrad as torch
>>> _ = torch.manual_seed(0); a = torch.rand(2)
>>> _ = torch.manual_seed(0); bool((a == torch.rand(2)).all())
True
"""

from __future__ import annotations

import numpy as np

from .compiler.ops.dtypes import float32, int64
from .creation import _finish, _shape
from .compiler.ops.residuals import forget
from .tensor import Tensor
from .trace_state import state as _trace


class Generator:
    """The source of random numbers (a NumPy generator) and its seed."""

    def __init__(self, seed: int = 0):
        self.manual_seed(seed)

    def manual_seed(self, seed: int) -> "Generator":
        self._seed = int(seed)
        self.numpy = np.random.default_rng(self._seed)
        return self

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self):
        return self.numpy.bit_generator.state

    def set_state(self, state) -> None:
        self.numpy.bit_generator.state = state


default_generator = Generator(np.random.SeedSequence().entropy % 2**63)


def manual_seed(seed: int) -> Generator:
    return default_generator.manual_seed(seed)


def seed() -> int:
    s = int(np.random.SeedSequence().entropy % 2**63)
    default_generator.manual_seed(s)
    return s


def initial_seed() -> int:
    return default_generator.initial_seed()


def _rng(generator):
    return (generator or default_generator).numpy


def _float_dtype(dtype):
    dtype = dtype or float32
    if not dtype.is_floating_point:
        raise RuntimeError(f"\"check_uniform_bounds\" not implemented for '{dtype.name}'")
    return dtype


def random_tensor(draw, dtype, requires_grad: bool = False) -> Tensor:
    """A tensor of `draw()` (NumPy values from the generator). Inside a traced function it
    is redrawn on every call, not baked in."""
    t = _finish(Tensor._wrap(draw(), dtype), requires_grad)
    if _trace.tracer is not None:
        _trace.tracer.note_random(t, draw)
    return t


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Uniform on [0, 1)."""
    dtype, shape, rng = _float_dtype(dtype), _shape(size), _rng(generator)
    return random_tensor(lambda: rng.random(shape, dtype=dtype.numpy.type), dtype,
                         requires_grad)


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Standard normal."""
    dtype, shape, rng = _float_dtype(dtype), _shape(size), _rng(generator)
    return random_tensor(lambda: rng.standard_normal(shape, dtype=dtype.numpy.type), dtype,
                         requires_grad)


def randint(low, high=None, size=None, *, generator=None, dtype=None, device=None,
            requires_grad=False) -> Tensor:
    """Integers uniform on [low, high); `randint(high, size)` means low = 0."""
    if size is None:
        low, high, size = 0, low, high
    dtype, shape, rng = dtype or int64, _shape((size,)), _rng(generator)
    return random_tensor(lambda: rng.integers(low, high, size=shape).astype(dtype.numpy),
                         dtype, requires_grad)


def randperm(n: int, *, generator=None, dtype=None, device=None) -> Tensor:
    dtype, rng = dtype or int64, _rng(generator)
    return random_tensor(lambda: rng.permutation(n).astype(dtype.numpy), dtype)


def rand_like(input, dtype=None, requires_grad=False) -> Tensor:
    return rand(input.shape, dtype=dtype or input.dtype, requires_grad=requires_grad)


def randn_like(input, dtype=None, requires_grad=False) -> Tensor:
    return randn(input.shape, dtype=dtype or input.dtype, requires_grad=requires_grad)


def randint_like(input, low, high=None, dtype=None) -> Tensor:
    return randint(low, high, input.shape, dtype=dtype or input.dtype)


def normal(mean=0.0, std=1.0, size=None, *, generator=None) -> Tensor:
    return randn(size, generator=generator) * std + mean


def fill_uniform_(tensor: Tensor, low: float, high: float, generator=None) -> Tensor:
    """Overwrite `tensor` with uniform values on [low, high) (for `nn.init`)."""
    data = _rng(generator).uniform(low, high, size=tensor._data.shape)
    forget(tensor._data)
    tensor._data[...] = data
    tensor._version[0] += 1
    return tensor


def fill_normal_(tensor: Tensor, mean: float, std: float, generator=None) -> Tensor:
    data = _rng(generator).normal(mean, std, size=tensor._data.shape)
    forget(tensor._data)
    tensor._data[...] = data
    tensor._version[0] += 1
    return tensor


def bernoulli_mask(shape, keep: float, dtype, generator=None) -> np.ndarray:
    """A 0/1 array with each element 1 with probability `keep` (for dropout)."""
    return (_rng(generator).random(shape, dtype=np.float32) < keep).astype(dtype.numpy)


def bernoulli(shape, keep: float, dtype, generator=None) -> Tensor:
    """A 0/1 tensor with each element 1 with probability `keep` (redrawn when traced)."""
    return random_tensor(lambda: bernoulli_mask(shape, keep, dtype, generator), dtype)
