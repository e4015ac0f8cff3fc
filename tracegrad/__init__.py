"""tracegrad: PyTorch's define-by-run autograd on NumPy, and a compiler to make it fast.

>>> import tracegrad as torch
>>> x = torch.linspace(0.0, 1.0, 3, requires_grad=True)
>>> (2 * x.sin() + 1).sum().backward()
>>> x.grad
tensor([2.0000, 1.7552, 1.0806])
"""

from __future__ import annotations

__version__ = "0.1.0"

from .allocator import keep_freed_memory as _keep_freed_memory

_keep_freed_memory()  # eager mode's temporaries reuse memory (see allocator.py)

from . import methods as _methods  # noqa: F401  (binds the Tensor's operations)
from .compiler.ops.dtypes import DType as dtype  # noqa: F401
from .compiler.ops.dtypes import bool_ as bool  # noqa: A001
from .compiler.ops.dtypes import float32, float64, int32, int64
from .tensor import Size, Tensor  # noqa: F401
from .errors import OutOfMemoryError  # noqa: F401  (PyTorch's name)
from .creation import (arange, as_tensor, empty, empty_like, eye, from_numpy, full,  # noqa: F401
                       full_like, linspace, ones, ones_like, tensor, zeros, zeros_like)
from .random import (Generator, initial_seed, manual_seed, normal, rand, rand_like,  # noqa: F401
                     randint, randint_like, randn, randn_like, randperm, seed)
from .functions.pointwise import (abs, add, allclose, clamp, clip, cos, div, divide,  # noqa: F401
                                  eq, equal, erf, exp, exp2, floor, ge, gt, isnan, le, log,
                                  log1p, log2, logical_and, logical_not, logical_or, lt,
                                  maximum, minimum, mul, multiply, ne, neg, negative, pow,
                                  reciprocal, relu, rsqrt, sigmoid, sign, sin, sqrt, square,
                                  sub, subtract, tan, tanh, true_divide, trunc, where)
from .functions.reductions import (amax, amin, argmax, argmin, count_nonzero,  # noqa: F401
                                   logsumexp, max, mean, min, norm, prod, std, sum, var)
from .functions.reductions import all, any  # noqa: F401
from .functions.shaping import (broadcast_tensors, broadcast_to, cat, chunk,  # noqa: F401
                                clone, concat, concatenate, flatten, narrow, permute, reshape,
                                split, squeeze, stack, swapaxes, t, transpose, unbind,
                                unflatten, unsqueeze)
from .functions.indexing import (gather, index_select, masked_fill, nonzero,  # noqa: F401
                                 take_along_dim)
from .functions.linalg import bmm, dot, matmul, mm, outer  # noqa: F401
from .functions.normalization import log_softmax, softmax  # noqa: F401
from .autograd.grad_mode import (enable_grad, inference_mode, is_grad_enabled,  # noqa: F401
                                 is_inference_mode_enabled, no_grad, set_grad_enabled)
from . import autograd  # noqa: F401, E402

float = float32  # noqa: A001
double = float64
long = int64
int = int32  # noqa: A001
from . import nn, optim  # noqa: E402, F401


def compile(fn=None, *, fullgraph: bool = False, dynamic: bool = False, cache: bool = True,
            verify: int = 0, backend=None, mode=None):  # noqa: A001
    """Compile a function or an `nn.Module` (SPEC §4.1), bare (`@tracegrad.compile`) or
    with options; the compiler loads on first use, so `import tracegrad` stays light.

    The first call with a new input signature runs eagerly while being traced; later calls
    run native code. `fullgraph=True` raises instead of falling back to eager on an
    unsupported operation; `cache=False` skips the disk cache; `verify=N` checks the first
    N calls against eager execution. `backend` and `mode` are accepted and ignored.

    Example::

        >>> import tracegrad as torch
        >>> @torch.compile
        ... def loss(w, x):
        ...     return ((x @ w) ** 2).mean()
        >>> w = torch.ones(2, requires_grad=True)
        >>> y = loss(w, torch.tensor([[1.0, 2.0]]))
        >>> y.item()
        9.0
        >>> y.backward()
        >>> w.grad
        tensor([ 6., 12.])
    """
    from .compiled import compile as compile_now

    return compile_now(fn, fullgraph=fullgraph, dynamic=dynamic, cache=cache, verify=verify)


def explain(fn, *args, **kwargs) -> dict:
    """Call `fn` (compiled if it is not yet) on the arguments and report what compiling did,
    as data: the number of variants, their guards and graphs, the reason for falling back
    to eager (None if it did not) and the events (traces, recompiles).

    Example::

        >>> import tracegrad as torch
        >>> report = torch.explain(lambda x: x.sin() * 2, torch.ones(3))
        >>> report["variants"], report["fallback"]
        (1, None)
        >>> sorted(report)
        ['events', 'fallback', 'graphs', 'guards', 'variants']
    """
    from .compiled import explain as explain_now

    return explain_now(fn, *args, **kwargs)
