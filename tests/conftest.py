"""Shared test setup.

PyTorch is only a reference: tests that compare against it use
`torch = pytest.importorskip("torch")` and skip cleanly when it is not installed. Some
builds of the CPU wheel fail to load `libtorch_global_deps` unless they are loaded with
RTLD_GLOBAL, which the variable below asks for (it must be set before torch is imported).
"""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("TORCH_USE_RTLD_GLOBAL", "1")

from golden_option import pytest_addoption  # noqa: F401  (--update-golden)

# Compiled programs go to a cache of this test run, not the user's ~/.cache/tracegrad.
os.environ.setdefault("TRACEGRAD_CACHE_DIR", tempfile.mkdtemp(prefix="tracegrad-test-cache-"))


@pytest.fixture
def threads():
    """The runtime's thread module; the thread count a test sets is undone after it."""
    from tracegrad.runtime import threads

    before = threads.num_threads()
    yield threads
    threads.set_num_threads(before)


@pytest.fixture
def runtime_linked():
    """LLVM set up and the threading runtime linked (it is kept in the process's program
    cache too): a compile then forks for itself only, and a cache counts programs only."""
    from tracegrad.runtime import engine

    engine._runtime()
