"""Which of a call's tensors share memory: what a compiled function that writes in place
must see the same on every call.

A compiled program reads all of its inputs before it writes, and the writes go back into
the tensors afterwards. That gives eager's results only where a tensor written shares no
memory with another one read, or shares it in a way the trace followed: a view and the
tensor it is a view of (an in-place write to one remakes the other, `inplace.py`), a
tensor and itself. So a trace fails where tensors shared memory otherwise (two tensors
made with `from_numpy` on one array), and a later call is refused where they share it
otherwise than when traced (an argument that is now the tensor the function holds
itself).

>>> import numpy as np
>>> a = np.zeros(4)
>>> sharing([a, a[1:], np.zeros(2)])
((0, 0, 2), (True,))
"""

from __future__ import annotations

import numpy as np


def memory_owner(array):
    """The object that owns the memory `array` views: the end of its chain of `.base`s
    (through the helper objects `as_strided` leaves, and the objects memoryviews show)."""
    owner = array
    while True:
        base = owner.obj if isinstance(owner, memoryview) else getattr(owner, "base", None)
        if base is None:
            return owner
        owner = base


def sharing(arrays) -> tuple:
    """Which of `arrays` share memory: per array, the position of the first with the same
    owner; then, for each pair with one owner, whether their bytes may overlap (two
    slices of one array share an owner and need not overlap).

    >>> a = np.zeros(4)
    >>> sharing([a, a[1:], np.zeros(2)])
    ((0, 0, 2), (True,))
    >>> sharing([a[:2], a[2:]])
    ((0, 0), (False,))
    """
    first: dict = {}
    owners = tuple([first.setdefault(id(memory_owner(a)), k) for k, a in enumerate(arrays)])
    overlaps = tuple(bool(np.may_share_memory(arrays[i], arrays[j]))
                     for j, owner in enumerate(owners) if owner != j
                     for i in range(owner, j) if owners[i] == owner)
    return owners, overlaps


def unfollowed(tensors: list, arrays: list, written: set):
    """Two of `tensors` (with the arrays they had when the trace took them as inputs) that
    overlap in memory, one of them written in place (its id in `written`), where neither
    is a view made from the other or from a tensor they share; or None."""
    groups: dict = {}
    for tensor, array in zip(tensors, arrays):
        groups.setdefault(id(memory_owner(array)), []).append((tensor, array))
    for group in groups.values():
        for i, (a, a_array) in enumerate(group):
            for b, b_array in group[i + 1:]:
                if (id(a) in written or id(b) in written) and _root(a) is not _root(b) \
                        and np.may_share_memory(a_array, b_array):
                    return a, b
    return None


def _root(tensor):
    """The tensor at the end of `tensor`'s chain of views."""
    return [tensor, *tensor._bases()][-1]
