"""Keep freed array memory in the process instead of returning it to the OS.

Eager mode allocates a fresh NumPy array per operation. glibc serves large blocks with
`mmap` and gives them back on `free`, so every new 4 MiB temporary page-faults its way
in again: on `elementwise_1m` that made allocation 3x the cost of the arithmetic. Raising
glibc's mmap and trim thresholds (`mallopt`) lets freed blocks be reused from the heap.
The process keeps up to its peak footprint, which is what array libraries with caching
allocators do too. Elsewhere than glibc this does nothing.

>>> keep_freed_memory() in (True, False)
True
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 << 20  # blocks below this come from the heap, so they can be reused
TRIM_THRESHOLD = 256 << 20  # free heap kept before any is returned to the OS


def keep_freed_memory() -> bool:
    """Tune glibc's allocator as described above; True if it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols include libc's
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
