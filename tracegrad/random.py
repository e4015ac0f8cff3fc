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
from .compiler.ops.residuals import forget
from .creation import _finish, _shape, allocated
from .tensor import Tensor
from .trace_state import state as _trace


class Generator:
    """The source of random numbers (a NumPy PCG64 generator) and its seed.

    Functions that draw take `generator=`; without it they use the default generator that
    `torch.manual_seed` seeds. The streams differ from PyTorch's (seeded runs repeat).

    Example::

        >>> import tracegrad as torch
        >>> a = torch.rand(3, generator=torch.Generator().manual_seed(42))
        >>> b = torch.rand(3, generator=torch.Generator().manual_seed(42))
        >>> torch.equal(a, b)
        True
    """

    def __init__(self, seed: int = 0):
        self.manual_seed(seed)

    def manual_seed(self, seed: int) -> Generator:
        """Restart the stream from `seed`; returns the generator.

        Example::

            >>> import tracegrad as torch
            >>> g = torch.Generator()
            >>> g.manual_seed(7).initial_seed()
            7
        """
        self._seed = int(seed)
        self.numpy = np.random.default_rng(self._seed)
        return self

    def initial_seed(self) -> int:
        """The seed the stream was last started from.

        Example::

            >>> import tracegrad as torch
            >>> torch.Generator().manual_seed(5).initial_seed()
            5
        """
        return self._seed

    def get_state(self):
        """The generator's state (NumPy's bit-generator state), for `set_state`.

        Example::

            >>> import tracegrad as torch
            >>> g = torch.Generator().manual_seed(0)
            >>> state = g.get_state()
            >>> a = torch.rand(2, generator=g)
            >>> _ = g.set_state(state)
            >>> torch.equal(a, torch.rand(2, generator=g))
            True
        """
        return self.numpy.bit_generator.state

    def set_state(self, state) -> None:
        """Return to a state that `get_state` gave: the same values are drawn again.

        Example::

            >>> import tracegrad as torch
            >>> g = torch.Generator().manual_seed(0)
            >>> state = g.get_state()
            >>> a = torch.randn(2, generator=g)
            >>> _ = g.set_state(state)
            >>> torch.equal(a, torch.randn(2, generator=g))
            True
        """
        self.numpy.bit_generator.state = state


default_generator = Generator(np.random.SeedSequence().entropy % 2**63)


def manual_seed(seed: int) -> Generator:
    """Seed the default generator, so that what follows draws the same values on every run
    (not PyTorch's values: the stream is NumPy's); returns the generator.

    Example::

        >>> import tracegrad as torch
        >>> _ = torch.manual_seed(0)
        >>> a = torch.randn(3)
        >>> _ = torch.manual_seed(0)
        >>> torch.equal(a, torch.randn(3))
        True
    """
    return default_generator.manual_seed(seed)


def seed() -> int:
    """Seed the default generator from fresh entropy; returns the seed.

    Example::

        >>> import tracegrad as torch
        >>> s = torch.seed()
        >>> s == torch.initial_seed()
        True
    """
    s = int(np.random.SeedSequence().entropy % 2**63)
    default_generator.manual_seed(s)
    return s


def initial_seed() -> int:
    """The seed the default generator was last started from.

    Example::

        >>> import tracegrad as torch
        >>> _ = torch.manual_seed(3)
        >>> torch.initial_seed()
        3
    """
    return default_generator.initial_seed()


def _rng(generator):
    return (generator or default_generator).numpy


def _float_dtype(dtype):
    dtype = dtype or float32
    if not dtype.is_floating_point:
        raise RuntimeError(f"\"check_uniform_bounds\" not implemented for '{dtype.name}'")
    return dtype


def random_tensor(draw, rng, dtype, requires_grad: bool = False, op: str = "random") -> Tensor:
    """A tensor of `draw()` (NumPy values from `rng`, a generator's NumPy generator).
    Inside a traced function it is redrawn on every call, not baked in."""
    t = _finish(Tensor._wrap(allocated(op, dtype, draw), dtype), requires_grad)
    if _trace.tracer is not None:
        _trace.tracer.note_random(t, draw, rng)
    return t


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Random values uniform on [0, 1), of the given size (ints or one tuple); float32
    unless `dtype` (a floating-point one).

    Example::

        >>> import tracegrad as torch
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(2, 3)
        >>> x.shape, bool(((x >= 0) & (x < 1)).all())
        (tracegrad.Size([2, 3]), True)
    """
    dtype, shape, rng = _float_dtype(dtype), _shape(size, "rand"), _rng(generator)
    return random_tensor(lambda: rng.random(shape, dtype=dtype.numpy.type), rng, dtype,
                         requires_grad, "rand")


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Random values from the standard normal distribution, of the given size; float32
    unless `dtype` (a floating-point one).

    Example::

        >>> import tracegrad as torch
        >>> _ = torch.manual_seed(0)
        >>> x = torch.randn(2, 3, dtype=torch.float64)
        >>> x.shape, x.dtype
        (tracegrad.Size([2, 3]), tracegrad.float64)
    """
    dtype, shape, rng = _float_dtype(dtype), _shape(size, "randn"), _rng(generator)
    return random_tensor(lambda: rng.standard_normal(shape, dtype=dtype.numpy.type), rng,
                         dtype, requires_grad, "randn")


def randint(low, high=None, size=None, *, generator=None, dtype=None, device=None,
            requires_grad=False) -> Tensor:
    """Random integers uniform on [low, high), of shape `size` (int64 unless `dtype`);
    `randint(high, size)` means low = 0.

    Example::

        >>> import tracegrad as torch
        >>> _ = torch.manual_seed(0)
        >>> x = torch.randint(0, 10, (3,))
        >>> x.dtype, bool(((x >= 0) & (x < 10)).all())
        (tracegrad.int64, True)
    """
    if size is None:
        low, high, size = 0, low, high
    dtype, shape, rng = dtype or int64, _shape((size,), "randint"), _rng(generator)
    return random_tensor(lambda: rng.integers(low, high, size=shape).astype(dtype.numpy),
                         rng, dtype, requires_grad, "randint")


def randperm(n: int, *, generator=None, dtype=None, device=None) -> Tensor:
    """A random permutation of 0, ..., n - 1 (int64 unless `dtype`).

    Example::

        >>> import tracegrad as torch
        >>> sorted(torch.randperm(4).tolist())
        [0, 1, 2, 3]
    """
    dtype, rng = dtype or int64, _rng(generator)
    return random_tensor(lambda: rng.permutation(n).astype(dtype.numpy), rng, dtype)


def rand_like(input, dtype=None, requires_grad=False) -> Tensor:
    """`rand` with `input`'s shape and (unless `dtype`) dtype.

    Example::

        >>> import tracegrad as torch
        >>> torch.rand_like(torch.zeros(2, 2)).shape
        tracegrad.Size([2, 2])
    """
    return rand(input.shape, dtype=dtype or input.dtype, requires_grad=requires_grad)


def randn_like(input, dtype=None, requires_grad=False) -> Tensor:
    """`randn` with `input`'s shape and (unless `dtype`) dtype.

    Example::

        >>> import tracegrad as torch
        >>> torch.randn_like(torch.zeros(2, dtype=torch.float64)).dtype
        tracegrad.float64
    """
    return randn(input.shape, dtype=dtype or input.dtype, requires_grad=requires_grad)


def randint_like(input, low, high=None, dtype=None) -> Tensor:
    """`randint(low, high)` with `input`'s shape and (unless `dtype`) dtype;
    `randint_like(input, high)` means low = 0.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.randint_like(torch.zeros(3), 5)
        >>> x.dtype, bool(((x >= 0) & (x < 5)).all())
        (tracegrad.float32, True)
    """
    return randint(low, high, input.shape, dtype=dtype or input.dtype)


def normal(mean=0.0, std=1.0, size=None, *, generator=None) -> Tensor:
    """Random normal values of the given `mean` and `std`, of shape `size`
    (`randn(size) * std + mean`).

    Example::

        >>> import tracegrad as torch
        >>> _ = torch.manual_seed(0)
        >>> torch.normal(2.0, 0.5, size=(2, 3)).shape
        tracegrad.Size([2, 3])
    """
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
    return random_tensor(lambda: bernoulli_mask(shape, keep, dtype, generator),
                         _rng(generator), dtype)
