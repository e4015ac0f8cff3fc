"""`TRACEGRAD_LOG=recompiles,guards,...`: compilation events printed to stderr.

>>> log("recompiles", "f: variant 0 traced")  # prints only when the kind is enabled
"""

from __future__ import annotations

import os
import sys


def enabled_kinds() -> set:
    return {k.strip() for k in os.environ.get("TRACEGRAD_LOG", "").split(",") if k.strip()}


def log(kind: str, message: str) -> None:
    kinds = enabled_kinds()
    if kind in kinds or "all" in kinds:
        print(f"[tracegrad:{kind}] {message}", file=sys.stderr)
