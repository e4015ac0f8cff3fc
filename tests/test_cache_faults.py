"""The on-disk program cache under faults (SPEC §4.3 "Cache"): a compiled function always
runs, with eager's results, whatever state the cache directory is in.

A directory that cannot be written (or a disk that fills up mid-write) costs at most one
warning: programs are kept in memory. A damaged entry — truncated, random bytes, a wrong
checksum, a header that lies — is logged, ignored and rebuilt, never trusted (loading bad
object code would crash the process). A temporary file that a crashed writer left behind
is never taken for an entry. Two processes compiling the same function into one
directory at once both succeed.

These tests go through `tracegrad.compile`: the runtime's own unit tests
(`test_runtime.py`) cover `ProgramCache` on hand-written LLVM IR.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import tempfile
import warnings

import numpy as np
import pytest
from child_process import run_python, run_python_together
from tracegrad.runtime import cache as cache_module
from tracegrad.runtime.cache import MAGIC, ProgramCache, decode_entry
from tracegrad.runtime.engine import runtime_key

import tracegrad


def model(x, w):
    """What is compiled: one program (nothing requires grad, so no backward)."""
    return ((x @ w).tanh() * 2 + x.sum(1, keepdim=True)).relu()


def inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    return (tracegrad.tensor(rng.standard_normal((16, 8)).astype(np.float32)),
            tracegrad.tensor(rng.standard_normal((8, 4)).astype(np.float32)))


@pytest.fixture
def use_cache(monkeypatch, runtime_linked):
    """`use_cache(directory)` makes the process's program cache a fresh one (nothing in
    memory) on `directory`, for this test only (its counts are the programs': the
    threading runtime, kept there too, is linked already)."""

    def use(directory) -> ProgramCache:
        fresh = ProgramCache(directory=directory)
        monkeypatch.setattr(cache_module, "default_cache", lambda: fresh)
        return fresh

    return use


def compile_and_check(fn=model, seed: int = 0) -> None:
    """Compile `fn` anew, run its native variant, and compare with eager."""
    compiled = tracegrad.compile(fn)
    for call in range(3):
        args = inputs(seed + call)
        np.testing.assert_allclose(compiled(*args).numpy(), fn(*args).numpy(), rtol=1e-5,
                                   atol=1e-6)
    assert len(compiled.variants) == 1 and compiled.fallback_reason is None
    assert compiled.variants[0].trace.program.native is not None  # native code, no fallback


def entries(directory: pathlib.Path) -> list[pathlib.Path]:
    return sorted(directory.glob("*.tgo"))


def temporaries(directory: pathlib.Path) -> list[pathlib.Path]:
    return sorted(directory.glob(".tmp-*"))


def cache_warnings_of(run) -> list[str]:
    """The compile cache's warnings while `run()` runs (every one, even if said before)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    return [str(w.message) for w in caught if "compile cache" in str(w.message)]


# --- a directory that cannot be written -------------------------------------------------

def test_directory_under_a_file_runs_from_memory_with_one_warning(tmp_path, use_cache):
    blocker = tmp_path / "a file"
    blocker.write_text("mkdir under a regular file fails, even for root")
    cache = use_cache(blocker / "cache")

    def two_programs():
        compile_and_check()
        compile_and_check(lambda x, w: (x @ w).sigmoid())  # a second program: no new warning

    messages = cache_warnings_of(two_programs)
    assert len(messages) == 1
    assert "in memory only" in messages[0]
    assert cache.stats.failed_writes == 2 and cache.stats.compiles == 2


def test_read_only_directory_runs_from_memory(tmp_path, use_cache, monkeypatch):
    directory = tmp_path / "cache"
    directory.mkdir()
    directory.chmod(0o500)
    try:
        if os.geteuid() == 0:  # root writes anyway: refuse the way the kernel would
            def refuse(*args, **kwargs):
                raise PermissionError(errno.EACCES, "Permission denied", str(directory))

            monkeypatch.setattr(tempfile, "mkstemp", refuse)
        cache = use_cache(directory)
        assert len(cache_warnings_of(compile_and_check)) == 1
        assert cache.stats.failed_writes == 1
        assert entries(directory) == [] and temporaries(directory) == []
    finally:
        directory.chmod(0o700)


# --- a full disk --------------------------------------------------------------------------

OPEN_FILE_DESCRIPTOR = os.fdopen  # the real one, for the stand-in below


class FillsUp:
    """A file that takes half of what it is given, then reports the disk full."""

    def __init__(self, handle: int):
        self.file = OPEN_FILE_DESCRIPTOR(handle, "wb")

    def write(self, data: bytes) -> int:
        self.file.write(data[:len(data) // 2])
        self.file.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["write", "rename"])
def test_full_disk_leaves_no_partial_entry_and_runs(tmp_path, use_cache, monkeypatch, where):
    if where == "write":
        monkeypatch.setattr(cache_module.os, "fdopen", lambda handle, mode: FillsUp(handle))
    else:
        monkeypatch.setattr(cache_module.os, "replace", disk_full)
    cache = use_cache(tmp_path)
    messages = cache_warnings_of(compile_and_check)
    assert len(messages) == 1 and "No space left on device" in messages[0]
    assert cache.stats.failed_writes == 1
    assert entries(tmp_path) == [] and temporaries(tmp_path) == []  # the half file is gone
    monkeypatch.undo()  # space again: the next process writes the entry
    cache = use_cache(tmp_path)
    compile_and_check()
    assert cache.stats.compiles == 1 and len(entries(tmp_path)) == 1


# --- damaged entries ----------------------------------------------------------------------

def _header_and_code(data: bytes) -> tuple[dict, bytes]:
    end = data.index(b"\n", len(MAGIC))
    return json.loads(data[len(MAGIC):end]), data[end + 1:]


def _with_header(data: bytes, **changes) -> bytes:
    header, code = _header_and_code(data)
    header.update(changes)
    return MAGIC + json.dumps(header).encode() + b"\n" + code


def _flip_code_byte(data: bytes) -> bytes:
    damaged = bytearray(data)
    damaged[-len(_header_and_code(data)[1]) // 2] ^= 0x5A
    return bytes(damaged)


DAMAGE = {
    "truncated to half": lambda data: data[:len(data) // 2],
    "truncated in the header": lambda data: data[:len(MAGIC) + 5],
    "empty": lambda data: b"",
    "random bytes": lambda data: np.random.default_rng(0).bytes(len(data)),
    "random bytes after a good magic line": lambda data: MAGIC + np.random.default_rng(1).bytes(
        len(data) - len(MAGIC)),
    "one byte of code flipped": _flip_code_byte,
    "wrong checksum": lambda data: _with_header(data, sha256="0" * 64),
    "wrong size": lambda data: _with_header(data, size=12),
    "parts that do not add up to the size": lambda data: _with_header(data, parts=[12, 5]),
    "another key": lambda data: _with_header(data, key="f" * 64),
    "header fields of the wrong type": lambda data: _with_header(data, externals=7),
    "a symbol this process lacks": lambda data: _with_header(
        data, externals=["tracegrad_no_such_symbol"]),  # intact code: fails only at load
    "an older format": lambda data: b"tracegrad-object 0\n" + data[len(MAGIC):],
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_entry_is_rebuilt_never_trusted(tmp_path, use_cache, caplog, damage):
    use_cache(tmp_path)
    compile_and_check()
    [entry] = entries(tmp_path)
    entry.write_bytes(DAMAGE[damage](entry.read_bytes()))

    cache = use_cache(tmp_path)  # a new process, in effect: only the disk remembers
    with caplog.at_level("WARNING", logger="tracegrad.runtime.cache"), \
            warnings.catch_warnings():
        warnings.simplefilter("error")  # a log line, not a warning
        compile_and_check()
    assert (cache.stats.disk_hits, cache.stats.compiles, cache.stats.rejected_entries) == (0, 1, 1)
    assert "ignoring cache entry" in caplog.text and entry.name in caplog.text
    decode_entry(entry.read_bytes(), entry.stem)  # rewritten whole

    cache = use_cache(tmp_path)  # and the rebuilt entry is used from then on
    compile_and_check()
    assert (cache.stats.disk_hits, cache.stats.compiles) == (1, 0)


def test_entry_that_is_a_directory_is_compiled_around(tmp_path, use_cache):
    use_cache(tmp_path)
    compile_and_check()
    [entry] = entries(tmp_path)
    entry.unlink()
    entry.mkdir()
    cache = use_cache(tmp_path)
    assert len(cache_warnings_of(compile_and_check)) == 1
    assert cache.stats.compiles == 1


def test_half_written_temporary_file_is_never_taken_for_an_entry(tmp_path, use_cache):
    use_cache(tmp_path)
    compile_and_check()
    [entry] = entries(tmp_path)
    whole = entry.read_bytes()
    entry.unlink()  # the writer crashed before its rename: only the temporary file is left
    stale = tmp_path / f".tmp-crashed{entry.name}"
    stale.write_bytes(whole[:len(whole) // 2])

    cache = use_cache(tmp_path)
    compile_and_check()
    assert (cache.stats.disk_hits, cache.stats.compiles, cache.stats.rejected_entries) == (0, 1, 0)
    decode_entry(entry.read_bytes(), entry.stem)
    assert stale.read_bytes() == whole[:len(whole) // 2]  # someone else's file: left alone


# --- two processes at once ------------------------------------------------------------------

CONCURRENT = """
import json, sys
import tracegrad
from test_cache_faults import inputs, model
from tracegrad.runtime.cache import default_cache
compiled = tracegrad.compile(model)
sys.stdin.readline()  # start together
results = [compiled(*inputs(seed)).numpy().tolist() for seed in range(3)]
stats = default_cache().stats
print(json.dumps({"results": results, "native": compiled.variants[0].trace.program.native
                  is not None, "compiles": stats.compiles, "disk_hits": stats.disk_hits}))
"""


def test_two_processes_compiling_the_same_function_at_once(tmp_path):
    done = run_python_together(CONCURRENT, TRACEGRAD_CACHE_DIR=str(tmp_path))
    assert [d.returncode for d in done] == [0, 0], [d.stderr for d in done]
    expected = [model(*inputs(seed)).numpy() for seed in range(3)]
    for d in done:
        assert "Warning" not in d.stderr, d.stderr
        report = json.loads(d.stdout)
        assert report["native"] and report["compiles"] + report["disk_hits"] == 1
        for got, want in zip(report["results"], expected):
            np.testing.assert_allclose(np.array(got, np.float32), want, rtol=1e-5, atol=1e-6)
    # One entry for the program and one for the threading runtime, whole, and no
    # temporary file left.
    assert [e.stem for e in entries(tmp_path)].count(runtime_key()) == 1
    assert len(entries(tmp_path)) == 2 and temporaries(tmp_path) == []
    for entry in entries(tmp_path):
        decode_entry(entry.read_bytes(), entry.stem)


BAD_RUNTIME = """
import ctypes, json, os, warnings
from tracegrad.runtime import cache, engine
from tracegrad.runtime.llvm_steps import ObjectCode
if os.environ["WRITE_BAD"] == "1":  # intact on disk, but it calls a symbol no process has
    cache.default_cache()._write(engine.runtime_key(),
                                 ObjectCode((b"not an object",), ("tracegrad_nothing",)))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    native = engine.default_engine().compile_module("define i64 @f() {\\n  ret i64 7\\n}",
                                                     ["f"])
print(json.dumps({"value": native.function("f", ctypes.c_int64, [])(),
                  "warnings": [str(w.message) for w in caught]}))
"""


def test_a_threading_runtime_entry_that_does_not_link_is_compiled_anew(tmp_path):
    """Every program links the runtime: a bad entry of it must cost one warning, not
    every compile of every process (the next process finds it rewritten)."""
    reports = []
    for write_bad in (True, False):
        done = run_python(BAD_RUNTIME, TRACEGRAD_CACHE_DIR=str(tmp_path),
                          WRITE_BAD=str(int(write_bad)))
        assert done.returncode == 0, done.stderr
        reports.append(json.loads(done.stdout))
    assert reports[0]["value"] == reports[1]["value"] == 7
    [warning] = reports[0]["warnings"]
    assert "ignoring the threading runtime" in warning and "tracegrad_nothing" in warning
    assert reports[1]["warnings"] == []
