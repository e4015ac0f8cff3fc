"""Which tracer, if any, is recording on this thread (see `tracing.py`).

Kept apart so that the hot paths (`Tensor._wrap`, `eager.apply`) can check it without
importing the tracer.
"""

import threading


class _TraceState(threading.local):
    tracer = None


state = _TraceState()
