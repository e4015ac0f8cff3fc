"""Anomaly detection: remember where each op was created, and fail loudly on NaN.

Under `detect_anomaly()`, every node records the user's stack when it is made; when its
backward produces a NaN or infinity, the error names the forward operation and the line
of user code that created it.

>>> import tracegrad as torch
>>> with torch.autograd.detect_anomaly():
...     x = torch.zeros(1, requires_grad=True)
...     y = x.sqrt() * 0  # d sqrt(x)/dx is inf at 0: inf * 0 is nan in backward
...     y.backward()  # doctest: +ELLIPSIS
Traceback (most recent call last):
RuntimeError: Function 'SqrtBackward0' returned nan values in its 0th output...
"""

from __future__ import annotations

import os
import threading
import traceback
import warnings

import numpy as np


class _AnomalyState(threading.local):
    on = False
    check_nan = True


state = _AnomalyState()
_LIBRARY_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def creation_trace() -> list:
    """The stack where a node is being created, without the library's own frames."""
    frames = traceback.extract_stack()[:-1]
    return [f for f in frames if not os.path.abspath(f.filename).startswith(_LIBRARY_DIR)]


class detect_anomaly:
    """Context manager and decorator turning on anomaly detection for autograd: a backward
    that produces NaN or infinity raises, naming the forward operation and the line of
    user code that made it (`check_nan=False` only records where ops were made).

    Example::

        >>> import tracegrad as torch
        >>> with torch.autograd.detect_anomaly():
        ...     x = torch.zeros(1, requires_grad=True)
        ...     x.sqrt().mul(0).backward()  # d sqrt(x)/dx at 0 is inf; inf * 0 is nan
        Traceback (most recent call last):
        ...
        RuntimeError: Function 'SqrtBackward0' returned nan values in its 0th output...
    """

    def __init__(self, check_nan: bool = True):
        self.check_nan = check_nan

    def __enter__(self):
        self._saved = (state.on, state.check_nan)
        state.on, state.check_nan = True, self.check_nan
        warnings.warn("Anomaly Detection has been enabled. This mode will increase the runtime "
                      "and should only be enabled for debugging.", UserWarning, stacklevel=2)
        return self

    def __exit__(self, *exc):
        state.on, state.check_nan = self._saved
        return False

    def __call__(self, fn):
        def run_with_anomaly_detection(*args, **kwargs):
            with detect_anomaly(self.check_nan):
                return fn(*args, **kwargs)

        return run_with_anomaly_detection


class set_detect_anomaly:
    """Turn anomaly detection on or off, at once or for a `with` block.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.zeros(1, requires_grad=True)
        >>> with torch.autograd.set_detect_anomaly(False):
        ...     x.sqrt().mul(0).backward()  # the nan goes unnoticed
        >>> x.grad
        tensor([nan])
        >>> with torch.autograd.set_detect_anomaly(True):
        ...     x.sqrt().mul(0).backward()
        Traceback (most recent call last):
        ...
        RuntimeError: Function 'SqrtBackward0' returned nan values in its 0th output...
    """

    def __init__(self, mode: bool, check_nan: bool = True):
        self._saved = (state.on, state.check_nan)
        state.on, state.check_nan = bool(mode), check_nan

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        state.on, state.check_nan = self._saved
        return False


def is_anomaly_enabled() -> bool:
    return state.on


def check_gradients(node, grads) -> None:
    """Raise if `node`'s backward produced NaN or infinity, naming where it was made."""
    if not state.check_nan:
        return
    for i, g in enumerate(grads):
        if g is None:
            continue
        data = g._data
        if data.dtype.kind == "f" and not np.isfinite(data).all():
            what = "nan" if np.isnan(data).any() else "inf"
            raise RuntimeError(f"Function '{node.name()}' returned {what} values in its "
                               f"{i}th output.{_origin(node)}")


def _origin(node) -> str:
    trace = node.creation_trace
    if not trace:
        return ""
    where = "".join(traceback.format_list(trace[-3:]))
    last = trace[-1]
    return (f"\nThe forward operation was created at {last.filename}, line {last.lineno}, "
            f"in {last.name}: {last.line}\nTraceback of forward call that caused the error:\n"
            f"{where}")
