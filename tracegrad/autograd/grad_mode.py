"""Whether operations record themselves for autograd: `no_grad`, `enable_grad`, ...

The flag is per thread, as in PyTorch. Each switch works as a context manager and as a
decorator:

>>> import tracegrad as torch
>>> x = torch.ones(2, requires_grad=True)
>>> with torch.no_grad():
...     y = x * 2
>>> y.requires_grad
False
"""

from __future__ import annotations

import copy
import functools
import threading


class _GradState(threading.local):
    enabled = True
    inference = False


state = _GradState()


def is_grad_enabled() -> bool:
    """Whether operations are being recorded for autograd (False inside `no_grad`).

    Example::

        >>> import tracegrad as torch
        >>> torch.is_grad_enabled()
        True
        >>> with torch.no_grad():
        ...     torch.is_grad_enabled()
        False
    """
    return state.enabled


def is_inference_mode_enabled() -> bool:
    """Whether an `inference_mode` block is active.

    Example::

        >>> import tracegrad as torch
        >>> torch.is_inference_mode_enabled()
        False
        >>> with torch.inference_mode():
        ...     torch.is_inference_mode_enabled()
        True
    """
    return state.inference


class _GradModeSwitch:
    """Sets the grad mode on entry and restores it on exit; also decorates functions."""

    mode = True
    inference = None  # None: leave inference mode as it is

    def __enter__(self):
        self._saved = (state.enabled, state.inference)
        state.enabled = self.mode
        if self.inference is not None:
            state.inference = self.inference
        return self

    def __exit__(self, *exc):
        state.enabled, state.inference = self._saved
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def run_in_mode(*args, **kwargs):
            with copy.copy(self):  # a fresh switch per call: calls may nest or recurse
                return fn(*args, **kwargs)

        return run_in_mode


class _BareDecorator(_GradModeSwitch):
    """Also usable without parentheses: `@no_grad` as well as `@no_grad()`."""

    def __new__(cls, fn=None):
        switch = super().__new__(cls)
        return switch if fn is None else switch(fn)

    def __init__(self, fn=None):
        pass


class no_grad(_BareDecorator):
    """Operations inside record nothing: results do not require grad. A context manager,
    and a decorator (`@no_grad` or `@no_grad()`).

    Example::

        >>> import tracegrad as torch
        >>> x = torch.ones(2, requires_grad=True)
        >>> with torch.no_grad():
        ...     y = x * 2
        >>> y.requires_grad
        False
        >>> @torch.no_grad()
        ... def double(t):
        ...     return t * 2
        >>> double(x).requires_grad
        False
    """

    mode = False


class enable_grad(_BareDecorator):
    """Re-enables recording inside a `no_grad` block (a context manager and a decorator).

    Example::

        >>> import tracegrad as torch
        >>> x = torch.ones(2, requires_grad=True)
        >>> with torch.no_grad():
        ...     with torch.enable_grad():
        ...         y = x * 2
        >>> y.requires_grad
        True
    """

    mode = True


class set_grad_enabled(_GradModeSwitch):
    """Sets recording on or off: at once (like PyTorch's), for a `with` block, or per call
    of a decorated function.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.ones(2, requires_grad=True)
        >>> with torch.set_grad_enabled(False):
        ...     y = x * 2
        >>> y.requires_grad
        False
        >>> _ = torch.set_grad_enabled(False)  # from now on
        >>> (x * 2).requires_grad
        False
        >>> _ = torch.set_grad_enabled(True)
        >>> (x * 2).requires_grad
        True
    """

    def __init__(self, mode: bool):
        self.mode = bool(mode)
        self._previous = state.enabled
        state.enabled = self.mode

    def __enter__(self):
        self._saved = (self._previous, state.inference)
        state.enabled = self.mode
        return self

    def __call__(self, fn):
        state.enabled = self._previous  # as a decorator it acts per call, not from now on
        return (enable_grad if self.mode else no_grad)()(fn)


class inference_mode(_GradModeSwitch):
    """Like `no_grad` (tensors made inside are never recorded), for pure inference; a
    context manager and a decorator. `inference_mode(False)` leaves recording on.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.ones(2, requires_grad=True)
        >>> with torch.inference_mode():
        ...     y = x * 2
        >>> y.requires_grad
        False
    """

    def __init__(self, mode: bool = True):
        self.mode = not mode
        self.inference = bool(mode)

    def __call__(self, fn=None):
        if fn is None or isinstance(fn, bool):  # `@inference_mode()` and `inference_mode(False)`
            return inference_mode(True if fn is None else fn)
        return super().__call__(fn)
