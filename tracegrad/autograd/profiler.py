"""A profiler for eager execution: per-operation counts, self and total times.

Primitive kernels, composite functions (such as `softmax`) and backward nodes each open a
range; a range's *total* time includes the ranges opened inside it, its *self* time does
not. Backward ranges carry their grad_fn's name (`MulBackward0`).

>>> import tracegrad as torch
>>> x = torch.ones(3, requires_grad=True)
>>> with torch.autograd.profiler.profile() as prof:
...     (x * 2).sum().backward()
>>> "MulBackward0" in prof.key_averages().table()
True
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass


class _ProfilerState(threading.local):
    active = False
    session = None


state = _ProfilerState()


@dataclass
class FunctionEventAvg:
    """The totals for one operation name (PyTorch's `key_averages()` rows); times in
    microseconds.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.ones(3, requires_grad=True)
        >>> with torch.autograd.profiler.profile() as prof:
        ...     (x * 2).sum().backward()
        >>> row = prof.key_averages()[0]
        >>> row.key, row.count, row.self_cpu_time_total <= row.cpu_time_total
        ('mul', 2, True)
    """

    key: str
    count: int = 0
    self_cpu_time_total: float = 0.0  # microseconds
    cpu_time_total: float = 0.0

    @property
    def cpu_time(self) -> float:
        """The mean total time of one call, in microseconds.

        Example::

            >>> import tracegrad as torch
            >>> with torch.autograd.profiler.profile() as prof:
            ...     y = torch.ones(2) * 2
            >>> row = prof.key_averages()[0]
            >>> row.cpu_time == row.cpu_time_total / row.count
            True
        """
        return self.cpu_time_total / max(self.count, 1)


class EventList(list):
    """Rows of `FunctionEventAvg` (a list), printable as a table.

    Example::

        >>> import tracegrad as torch
        >>> with torch.autograd.profiler.profile() as prof:
        ...     y = (torch.ones(2) * 2).sum()
        >>> [(row.key, row.count) for row in prof.key_averages()]
        [('mul', 1), ('sum', 1)]
    """

    def table(self, sort_by: str | None = None, row_limit: int = 100) -> str:
        """The rows as a text table like PyTorch's, sorted (descending) by the field `sort_by`
        if given (e.g. "self_cpu_time_total" or "count"), at most `row_limit` of them.

        Example::

            >>> import tracegrad as torch
            >>> x = torch.ones(3, requires_grad=True)
            >>> with torch.autograd.profiler.profile() as prof:
            ...     (x * 2).sum().backward()
            >>> print(prof.key_averages().table(sort_by="count", row_limit=2))  # doctest: +ELLIPSIS
            ---...
            Name   Self CPU %   Self CPU   CPU total   CPU time avg   # of Calls
            ---...
            mul   ...   2
            sum   ...   1
            ---...
            Self CPU time total: ...
        """
        rows = list(self)
        if sort_by:  # a FunctionEventAvg field, e.g. "self_cpu_time_total" or "count"
            rows.sort(key=lambda r: getattr(r, sort_by), reverse=True)
        rows = rows[:row_limit]
        width = max([len("Name")] + [len(r.key) for r in rows]) + 2
        total_self = sum(r.self_cpu_time_total for r in self) or 1.0
        header = (f"{'Name':<{width}}{'Self CPU %':>12}{'Self CPU':>14}{'CPU total':>14}"
                  f"{'CPU time avg':>14}{'# of Calls':>12}")
        line = "-" * len(header)
        body = [f"{r.key:<{width}}{100 * r.self_cpu_time_total / total_self:>11.2f}%"
                f"{_fmt_us(r.self_cpu_time_total):>14}{_fmt_us(r.cpu_time_total):>14}"
                f"{_fmt_us(r.cpu_time):>14}{r.count:>12}" for r in rows]
        footer = f"Self CPU time total: {_fmt_us(total_self)}"
        return "\n".join([line, header, line, *body, line, footer])


def _fmt_us(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:.3f}s"
    if us >= 1e3:
        return f"{us / 1e3:.3f}ms"
    return f"{us:.3f}us"


class profile:
    """Collects ranges while active: `with profile() as prof: ...; prof.key_averages()`.

    Forward ops are named after the primitive or function (`mul`, `softmax`), backward
    ones after their node (`MulBackward0`). `enabled=False` records nothing; PyTorch's
    other options are accepted and ignored.

    Example::

        >>> import tracegrad as torch
        >>> x = torch.ones(3, requires_grad=True)
        >>> with torch.autograd.profiler.profile() as prof:
        ...     (x * 2).sum().backward()
        >>> [row.key for row in prof.key_averages()]
        ['mul', 'sum', 'reshape', 'expand', 'SumBackward0', 'MulBackward0']
    """

    def __init__(self, enabled: bool = True, **_ignored_peer_options):
        self.enabled = enabled
        self.totals: dict[str, FunctionEventAvg] = {}
        self._stack: list[list] = []

    def __enter__(self):
        if self.enabled:
            self._saved = (state.active, state.session)
            state.active, state.session = True, self
        return self

    def __exit__(self, *exc):
        if self.enabled:
            state.active, state.session = self._saved
        return False

    def key_averages(self) -> EventList:
        """One row of totals per operation name, in the order the names were first closed.

        Example::

            >>> import tracegrad as torch
            >>> with torch.autograd.profiler.profile() as prof:
            ...     y = torch.ones(2).exp().exp()
            >>> [(row.key, row.count) for row in prof.key_averages()]
            [('exp', 2)]
        """
        return EventList(self.totals.values())

    def table(self, **kwargs) -> str:
        """`key_averages().table(**kwargs)` (also what printing the profile shows).

        Example::

            >>> import tracegrad as torch
            >>> with torch.autograd.profiler.profile() as prof:
            ...     y = torch.ones(2).exp()
            >>> print(prof.table())  # doctest: +ELLIPSIS
            ---...
            Name   Self CPU %   Self CPU   CPU total   CPU time avg   # of Calls
            ---...
            exp   100.00%   ...   1
            ---...
            Self CPU time total: ...
        """
        return self.key_averages().table(**kwargs)

    def __str__(self) -> str:
        return self.table()


@contextmanager
def record_function(name: str):
    """A named range: time spent inside is attributed to `name` (its self time excludes
    the ranges nested inside); does nothing outside a `profile`.

    Example::

        >>> import tracegrad as torch
        >>> with torch.autograd.profiler.profile() as prof:
        ...     with torch.autograd.profiler.record_function("my_block"):
        ...         y = torch.ones(2) * 2
        >>> [(row.key, row.count) for row in prof.key_averages()]
        [('mul', 1), ('my_block', 1)]
    """
    session = state.session
    if session is None:
        yield
        return
    frame = [0.0]  # time spent in ranges nested inside this one
    session._stack.append(frame)
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = (time.perf_counter() - start) * 1e6
        session._stack.pop()
        if session._stack:
            session._stack[-1][0] += elapsed
        row = session.totals.setdefault(name, FunctionEventAvg(name))
        row.count += 1
        row.cpu_time_total += elapsed
        row.self_cpu_time_total += elapsed - frame[0]
