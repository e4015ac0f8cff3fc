"""Shape arithmetic shared by the shape rules: broadcasting, reduced shapes, axes.

>>> broadcast_shapes((3, 1), (4,))
(3, 4)
"""

from __future__ import annotations


class ShapeError(RuntimeError):
    """A shape rule rejected its inputs (PyTorch raises RuntimeError for these)."""


def broadcast_shapes(*shapes: tuple) -> tuple:
    """PyTorch's broadcasting, with PyTorch's message when two shapes do not fit."""
    result = shapes[0]
    for shape in shapes[1:]:
        if shape != result:
            result = _broadcast_pair(result, shape)
    return tuple(result)


def _broadcast_pair(a: tuple, b: tuple) -> tuple:
    ndim = max(len(a), len(b))
    a = (1,) * (ndim - len(a)) + tuple(a)
    b = (1,) * (ndim - len(b)) + tuple(b)
    result = []
    for i, (sa, sb) in enumerate(zip(a, b)):
        if sa != sb and sa != 1 and sb != 1:
            raise ShapeError(f"The size of tensor a ({sa}) must match the size of tensor b "
                             f"({sb}) at non-singleton dimension {i}")
        result.append(sb if sa == 1 else sa)
    return tuple(result)


def normalize_axis(axis: int, ndim: int, op: str = "") -> int:
    """A possibly negative axis as a position in range, or PyTorch's IndexError."""
    lo = -max(ndim, 1)
    hi = max(ndim, 1) - 1
    if not lo <= axis <= hi:
        where = f"\n  in {op}" if op else ""  # PyTorch's first line, then ours
        raise IndexError(f"Dimension out of range (expected to be in range of [{lo}, {hi}], "
                         f"but got {axis}){where}")
    return axis % max(ndim, 1)


def normalize_axes(axes, ndim: int, op: str = "") -> tuple:
    """`None` (every axis), an int, or a sequence, as a sorted tuple of positions."""
    if axes is None:
        return tuple(range(ndim))
    if isinstance(axes, int):
        axes = (axes,)
    result = sorted({normalize_axis(a, ndim, op) for a in axes})
    if len(result) != len(axes):
        raise RuntimeError(f"dim appears multiple times in the list of dims ({op})")
    return tuple(result) if ndim else ()


def reduced_shape(shape: tuple, axes: tuple, keepdims: bool) -> tuple:
    if keepdims:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)
