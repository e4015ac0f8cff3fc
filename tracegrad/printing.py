"""Tensor text in exactly PyTorch's format, computed from a NumPy array.

``format_tensor`` reproduces ``repr(torch_tensor)`` character for character for the dtypes
tracegrad has (float32, float64, int64, int32, bool); the only intended difference is that
dtypes print as ``tracegrad.float64`` instead of ``torch.float64``. The rules follow
``torch/_tensor_str.py``:

* one element width for the whole tensor, measured over the values that are printed
  (for floats, the non-zero finite ones);
* floats whose non-zero finite values are all integers print as ``1.``; otherwise with
  ``precision`` decimals, or in scientific notation when the magnitudes span too much;
* more than ``threshold`` elements are summarized: every dimension longer than
  ``2 * edgeitems`` keeps ``edgeitems`` at each end, with ``...`` in between;
* rows wrap at ``linewidth``; trailing keywords (``dtype=``, ``requires_grad=True``) wrap too.

>>> import numpy as np
>>> format_tensor(np.array([1.0, 2.5], dtype=np.float32), "float32")
'tensor([1.0000, 2.5000])'
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Sequence

import numpy as np

__all__ = ["PrintOptions", "format_tensor", "get_printoptions", "printoptions", "set_printoptions"]


@dataclasses.dataclass
class PrintOptions:
    """Knobs of tensor printing, with torch's defaults."""

    precision: int = 4  # decimals after the point (or of the mantissa in scientific notation)
    threshold: float = 1000  # more elements than this are summarized
    edgeitems: int = 3  # elements kept at each edge of a summarized dimension
    linewidth: int = 80  # where rows of a vector wrap
    sci_mode: bool | None = None  # None: choose scientific notation from the values


_PROFILES = {
    "default": PrintOptions(),
    "short": PrintOptions(precision=2, edgeitems=2),
    "full": PrintOptions(threshold=math.inf),
}
_DTYPE_NAMES = ("float32", "float64", "int64", "int32", "bool")
_DTYPES_LEFT_UNSAID = ("float32", "int64", "bool")  # torch infers these from the values shown
_PREFIX = "tensor("

_options = PrintOptions()


def set_printoptions(
    precision: int | None = None,
    threshold: float | None = None,
    edgeitems: int | None = None,
    linewidth: int | None = None,
    sci_mode: bool | None = None,
    profile: str | None = None,
) -> None:
    """Change how tensors print, like ``torch.set_printoptions``.

    ``profile`` ("default", "short" or "full") first resets the four numeric options; any
    option given then overrides it. As in torch, ``sci_mode`` is always set, so leaving it
    out returns to choosing the notation automatically.

    >>> set_printoptions(precision=2)
    >>> format_tensor(np.array([1.12345], dtype=np.float32), "float32")
    'tensor([1.12])'
    >>> set_printoptions(profile="default")
    """
    if profile is not None:
        preset = _PROFILES[profile]
        _options.precision = preset.precision
        _options.threshold = preset.threshold
        _options.edgeitems = preset.edgeitems
        _options.linewidth = preset.linewidth
    if precision is not None:
        _options.precision = precision
    if threshold is not None:
        _options.threshold = threshold
    if edgeitems is not None:
        _options.edgeitems = edgeitems
    if linewidth is not None:
        _options.linewidth = linewidth
    _options.sci_mode = sci_mode


def get_printoptions() -> dict[str, object]:
    """The current options, as keywords that ``set_printoptions`` accepts.

    >>> get_printoptions()["precision"]
    4
    """
    return dataclasses.asdict(_options)


@contextlib.contextmanager
def printoptions(**options: object) -> Iterator[None]:
    """Set print options for the duration of a ``with`` block.

    >>> with printoptions(precision=1):
    ...     format_tensor(np.array([0.25, 1.5]), "float64")
    'tensor([0.2, 1.5], dtype=tracegrad.float64)'
    """
    saved = get_printoptions()
    set_printoptions(**options)
    try:
        yield
    finally:
        set_printoptions(**saved)


def format_tensor(array: np.ndarray, dtype_name: str, suffixes: Sequence[str] = ()) -> str:
    """Return PyTorch's repr text, e.g. 'tensor([1., 2.], requires_grad=True)'.

    ``array`` already has the NumPy dtype named by ``dtype_name``. ``suffixes`` are
    keyword parts, already formatted, that go after the size and dtype keywords.

    >>> format_tensor(np.array([1.0, 2.0], dtype=np.float32), "float32", ("requires_grad=True",))
    'tensor([1., 2.], requires_grad=True)'
    >>> format_tensor(np.zeros((0, 3), dtype=np.int64), "int64")
    'tensor([], size=(0, 3), dtype=tracegrad.int64)'
    """
    if dtype_name not in _DTYPE_NAMES:
        raise ValueError(
            f"format_tensor: unknown dtype {dtype_name!r}; expected one of "
            f"{', '.join(_DTYPE_NAMES)}"
        )
    indent = len(_PREFIX)
    if array.size == 0:
        body = "[]"
        show_size = array.ndim != 1  # like NumPy, say the shape unless it is the plain (0,)
        show_dtype = dtype_name != "float32"  # no values to tell ints from floats
    else:
        body = _format_values(array, indent)
        show_size = not _options.edgeitems  # no values are shown, so at least say how many
        show_dtype = dtype_name not in _DTYPES_LEFT_UNSAID
    keywords = [(suffix, len(suffix)) for suffix in suffixes]
    if show_dtype:
        # measured as torch spells it, so lines wrap where torch's do despite the longer name
        keywords.insert(0, (f"dtype=tracegrad.{dtype_name}", len(f"dtype=torch.{dtype_name}")))
    if show_size:
        size = f"size={tuple(array.shape)}"
        keywords.insert(0, (size, len(size)))
    return _append_keywords(_PREFIX + body, keywords, indent)


def _format_values(array: np.ndarray, indent: int) -> str:
    """The bracketed values of a non-empty array, e.g. '[[1., 2.],\\n        [3., 4.]]'."""
    summarize = array.size > _options.threshold
    if summarize and array.ndim > 0 and not _options.edgeitems:
        return "[...]"
    shown, elided = _edges(array, _options.edgeitems) if summarize else (array, ())
    cells, width = _format_cells(shown.ravel())
    return _nest(cells, shown.shape, elided, indent, width)


def _edges(array: np.ndarray, edgeitems: int) -> tuple[np.ndarray, tuple[bool, ...]]:
    """Keep ``edgeitems`` at each end of every long axis; say which axes lost their middle.

    >>> _edges(np.arange(10), 2)
    (array([0, 1, 8, 9]), (True,))
    """
    elided = tuple(size > 2 * edgeitems for size in array.shape)
    for axis, size in enumerate(array.shape):
        if elided[axis]:
            kept = np.r_[0:edgeitems, size - edgeitems : size]
            array = np.take(array, kept, axis=axis)
    return array, elided


def _format_cells(values: np.ndarray) -> tuple[list[str], int]:
    """Each value as text, right-aligned to one shared width, and that width.

    The width is measured over non-zero finite values only for floats, so ``nan``, ``-inf``
    or ``-0.`` may stick out (torch does the same).

    >>> _format_cells(np.array([1, -20]))
    (['  1', '-20'], 3)
    """
    if values.dtype.kind != "f":
        texts = [str(value) for value in values.tolist()]
        width = max(1, max(map(len, texts)))
    else:
        measured = np.isfinite(values) & (values != 0)
        texts = _float_texts(values, values[measured])
        measured_lengths = [len(text) for text, used in zip(texts, measured.tolist()) if used]
        width = max(1, max(measured_lengths, default=1))
    return [text.rjust(width) for text in texts], width


def _float_texts(values: np.ndarray, nonzero_finite: np.ndarray) -> list[str]:
    """Unpadded text of each float, in the notation torch picks for the whole tensor.

    >>> _float_texts(np.array([1.0, np.inf]), np.array([1.0]))
    ['1.', 'inf']
    """
    precision = _options.precision
    scientific = _options.sci_mode
    integral = True
    if nonzero_finite.size == 0:
        scientific = False  # torch leaves its defaults when there is nothing to measure
    else:
        integral = bool(np.all(nonzero_finite == np.ceil(nonzero_finite)))
        if scientific is None:
            # Python floats (doubles) as torch uses: a float32 ratio of extremes would overflow
            magnitudes = np.abs(nonzero_finite)
            smallest, largest = float(magnitudes.min()), float(magnitudes.max())
            scientific = largest / smallest > 1000.0 or largest > 1.0e8 or smallest < 1.0e-4
    # tolist() gives Python floats holding each float32 exactly, the values torch formats
    if scientific:
        return [f"{value:.{precision}e}" for value in values.tolist()]
    if integral:  # the trailing point marks a float tensor that holds whole numbers
        return [
            f"{value:.0f}." if math.isfinite(value) else f"{value:.0f}" for value in values.tolist()
        ]
    return [f"{value:.{precision}f}" for value in values.tolist()]


def _nest(
    cells: list[str], shape: tuple[int, ...], elided: Sequence[bool], indent: int, width: int
) -> str:
    """Bracket a flat list of cells into ``shape``, one row per line, blank lines for 3-D+.

    ``elided`` says which axes get a '...' after their first ``edgeitems`` entries.

    >>> print(_nest(["1", "2", "3", "4"], (2, 2), (False, False), 7, 1))
    [[1, 2],
            [3, 4]]
    """
    if not shape:
        return cells[0]
    if len(shape) == 1:
        return _wrap_vector(cells, bool(elided and elided[0]), indent, width)
    block = len(cells) // shape[0]
    inner = elided[1:]
    rows = [
        _nest(cells[start : start + block], shape[1:], inner, indent + 1, width)
        for start in range(0, len(cells), block)
    ]
    if elided and elided[0]:
        rows.insert(_options.edgeitems, "...")
    separator = "," + "\n" * (len(shape) - 1) + " " * (indent + 1)
    return "[" + separator.join(rows) + "]"


def _wrap_vector(cells: list[str], elided: bool, indent: int, width: int) -> str:
    """One dimension of cells, as many per line as fit in ``linewidth``.

    >>> with printoptions(linewidth=14):
    ...     print(_wrap_vector(["1", "2", "3"], False, 7, 1))
    [1, 2,
            3]
    """
    if elided:
        cells = [*cells[: _options.edgeitems], " ...", *cells[_options.edgeitems :]]
    per_line = max(1, (_options.linewidth - indent) // (width + 2))  # 2 for ", "
    lines = [", ".join(cells[start : start + per_line]) for start in range(0, len(cells), per_line)]
    return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"


def _append_keywords(text: str, keywords: Sequence[tuple[str, int]], indent: int) -> str:
    """Close the parenthesis after ``keywords``, moving one to a new line when it won't fit.

    Each keyword comes with the length torch's text has for it, which decides the wrapping.

    >>> _append_keywords("tensor(1.", [("requires_grad=True", 18)], 7)
    'tensor(1., requires_grad=True)'
    """
    parts = [text]
    # torch counts the current line as two characters longer than it is until the first wrap;
    # copied so that we wrap exactly where it does
    line_length = len(text) - text.rfind("\n") + 1
    for keyword, length in keywords:
        if line_length + length + 2 > _options.linewidth:
            parts.append(",\n" + " " * indent + keyword)
            line_length = indent + length
        else:
            parts.append(", " + keyword)
            line_length += length + 2
    parts.append(")")
    return "".join(parts)
