"""`once(make)`: a function that calls `make()` the first time and returns that result after.

The runtime has a few things a process makes one of, lazily and from whichever thread
asks first: LLVM's set-up, the default engine and program cache, the BLAS library. Two
threads asking at once must not make two.

>>> calls = []
>>> get = once(lambda: calls.append(1) or len(calls))
>>> get(), get(), calls
(1, 1, [1])
"""

from __future__ import annotations

import functools
import threading


def once(make):
    lock, made = threading.Lock(), []

    @functools.wraps(make)
    def get():
        if not made:
            with lock:
                if not made:
                    made.append(make())
        return made[0]

    return get
