"""The compiled-program cache: in memory, then on disk, then compile.

A program is found by a key: the SHA-256 of its LLVM IR text together with everything the
machine code depends on (llvmlite and LLVM versions, target triple, CPU name and feature
string, the tuning of LLVM's pipeline, this file's format version). Same key, same machine code.

On disk (``~/.cache/tracegrad``, or ``TRACEGRAD_CACHE_DIR``) each entry is one file,
``<key>.tgo``::

    tracegrad-object 3\\n
    {"key": ..., "size": ..., "parts": [...], "extra": ..., "sha256": ..., "externals": [...]}\\n
    <object code><extra bytes>

The object code is one object per group of modules the compile made
(``runtime/side_by_side.py``; ``parts`` gives their sizes, which add up to ``size``). The
engine keeps the threading runtime's object code here too (``stored_object``).

The extra bytes are what the caller stored with the program (``keep``): the compiler keeps
a program's binding there, under a key it computes before lowering (see
``compiler/lower/stored_program.py``); programs stored by IR hash have none. The checksum
covers both.

Entries are written to a temporary file in the same directory and renamed over the
target (``os.replace`` is atomic), so a reader sees a whole entry or none, and two
processes compiling the same program both succeed (the last rename wins; both files are
equally good). A read checks the magic line, the key, the size and the checksum of the
object code, and anything that fails is logged, ignored and rebuilt: an entry is never
trusted because of its name. A directory that cannot be written (read-only, full) costs
one warning; the program still runs, from memory.

>>> cache = ProgramCache(enabled=False)
>>> native = cache.compile_module("define void @f() {\\n  ret void\\n}", ["f"])
>>> cache.stats.compiles
1
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import pathlib
import threading
import warnings
from dataclasses import dataclass

from .engine import Engine, NativeModule, default_engine
from .llvm_steps import CompileError, ObjectCode, pipeline_options
from .once import once

FORMAT_VERSION = 3
MAGIC = b"tracegrad-object %d\n" % FORMAT_VERSION
SUFFIX = ".tgo"
ENVIRONMENT_VARIABLE = "TRACEGRAD_CACHE_DIR"

log = logging.getLogger("tracegrad.runtime.cache")


def default_directory() -> pathlib.Path:
    """``TRACEGRAD_CACHE_DIR`` if set, else ``~/.cache/tracegrad``."""
    configured = os.environ.get(ENVIRONMENT_VARIABLE)
    if configured:
        return pathlib.Path(configured).expanduser()
    return pathlib.Path.home() / ".cache" / "tracegrad"


def cache_key(ir_text: str, engine: Engine) -> str:
    """The hex SHA-256 that names ``ir_text`` compiled by ``engine`` on this machine."""
    host = engine.host
    pipeline = sorted(pipeline_options(engine.opt_level).items())
    parts = [f"format={FORMAT_VERSION}", f"pipeline={pipeline}",
             f"llvmlite={host.llvmlite_version}", f"llvm={host.llvm_version}",
             f"triple={host.triple}", f"cpu={host.cpu}", f"features={host.features}",
             "ir=" + hashlib.sha256(ir_text.encode()).hexdigest()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclass
class CacheStats:
    memory_hits: int = 0
    disk_hits: int = 0
    compiles: int = 0
    rejected_entries: int = 0  # on disk but corrupt, truncated or for another key
    failed_writes: int = 0


class CorruptEntryError(ValueError):
    """A cache file that is not a whole, intact entry for the key asked for."""


class ProgramCache:
    """Compiled programs by key. ``enabled=False`` keeps it in memory only (``cache=False``).

    Safe to share between threads; a process can share the directory with others.
    """

    def __init__(self, engine: Engine | None = None, directory: str | os.PathLike | None = None,
                 *, enabled: bool = True):
        self.engine = engine or default_engine()
        self.directory = pathlib.Path(directory) if directory else default_directory()
        self.enabled = enabled
        self.stats = CacheStats()
        self._programs: dict[str, tuple[NativeModule, bytes]] = {}  # key -> (code, extra)
        self._lock = threading.Lock()
        self._warned = False

    def compile_module(self, ir_text: str, entry_points: list[str], *,
                       use_disk: bool = True) -> NativeModule:
        """What ``Engine.compile_module`` returns, compiling only if no cache has it."""
        key = cache_key(ir_text, self.engine)
        found = self._programs.get(key)
        if found is None:
            native = self._build_once(key, ir_text, entry_points, use_disk and self.enabled)
        else:
            native = found[0]
            self.stats.memory_hits += 1
        native.require(entry_points)
        return native

    def _build_once(self, key: str, ir_text: str, entry_points: list[str],
                    use_disk: bool) -> NativeModule:
        with self._lock:  # one build per key, even when two threads ask at once
            found = self._programs.get(key)
            if found is None:
                found = self._programs[key] = (
                    self._build(key, ir_text, entry_points, use_disk), b"")
            else:
                self.stats.memory_hits += 1
            return found[0]

    def find(self, key: str, entry_points: list[str]) -> tuple[NativeModule, bytes] | None:
        """The module stored under ``key`` by ``keep``, and the bytes kept with it (from
        memory, else from disk), or None."""
        found = self._programs.get(key)
        if found is not None:
            self.stats.memory_hits += 1
            return found
        entry = self._read(key) if self.enabled else None
        if entry is None:
            return None
        native = self._loaded(key, entry[0], entry_points)
        if native is None:
            return None
        self.stats.disk_hits += 1
        with self._lock:
            return self._programs.setdefault(key, (native, entry[1]))

    def keep(self, key: str, native: NativeModule, extra: bytes) -> None:
        """Store ``native``'s code and ``extra`` under ``key`` too, for ``find``."""
        with self._lock:
            self._programs[key] = (native, extra)
        if self.enabled:
            self._write(key, native.object_code, extra)

    def stored_object(self, key: str) -> ObjectCode | None:
        """The object code on disk under ``key``, or None. (The engine keeps its threading
        runtime here: it is not a program and is not loaded through this cache.)"""
        entry = self._read(key) if self.enabled else None
        return None if entry is None else entry[0]

    def store_object(self, key: str, object_code: ObjectCode) -> None:
        """Write ``object_code`` for ``stored_object`` to find (if the cache is enabled)."""
        if self.enabled:
            self._write(key, object_code)

    def entry_path(self, key: str) -> pathlib.Path:
        return self.directory / (key + SUFFIX)

    def clear_memory(self) -> None:
        """Forget the programs held in memory (those in use stay alive while referenced)."""
        with self._lock:
            self._programs.clear()

    def _build(self, key: str, ir_text: str, entry_points: list[str],
               use_disk: bool) -> NativeModule:
        native = self._load_entry(key, entry_points) if use_disk else None
        if native is not None:
            self.stats.disk_hits += 1
            return native
        object_code = self.engine.compile_object(ir_text)
        self.stats.compiles += 1
        if use_disk:
            self._write(key, object_code)
        return self.engine.load_object(object_code, [])

    def _load_entry(self, key: str, entry_points: list[str]) -> NativeModule | None:
        """The program stored on disk under ``key``, or None (then it is compiled)."""
        entry = self._read(key)
        return None if entry is None else self._loaded(key, entry[0], entry_points)

    def _loaded(self, key: str, object_code: ObjectCode,
                entry_points: list[str]) -> NativeModule | None:
        try:
            return self.engine.load_object(object_code, entry_points)
        except CompileError as error:  # intact, but not a program this process can use
            self.stats.rejected_entries += 1
            log.warning("ignoring cache entry %s: %s; recompiling", self.entry_path(key), error)
            return None

    def _read(self, key: str) -> tuple[ObjectCode, bytes] | None:
        path = self.entry_path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            log.warning("cannot read cache entry %s (%s); recompiling", path, error)
            return None
        try:
            return decode_entry(data, key)
        except CorruptEntryError as error:
            self.stats.rejected_entries += 1
            log.warning("ignoring cache entry %s: %s; recompiling", path, error)
            return None

    def _write(self, key: str, object_code: ObjectCode, extra: bytes = b"") -> None:
        # Imported here: a process that only reads (a warm first call) need not pay the
        # 3-4 ms tempfile takes to import.
        import tempfile

        temporary = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tmp-",
                                                 suffix=SUFFIX)
            with os.fdopen(handle, "wb") as file:
                file.write(encode_entry(key, object_code, extra))
            os.replace(temporary, self.entry_path(key))
        except OSError as error:
            self.stats.failed_writes += 1
            if temporary is not None:
                _remove_quietly(temporary)
            if not self._warned:
                self._warned = True
                warnings.warn(f"tracegrad cannot write its compile cache in {self.directory} "
                              f"({error}); compiled programs are kept in memory only",
                              RuntimeWarning, stacklevel=4)


def encode_entry(key: str, object_code: ObjectCode, extra: bytes = b"") -> bytes:
    """The bytes of a cache file for ``object_code`` (and ``extra``) under ``key``."""
    code = b"".join(object_code.parts)
    body = code + extra
    header = {"key": key, "size": len(code), "parts": [len(part) for part in object_code.parts],
              "extra": len(extra),
              "sha256": hashlib.sha256(body).hexdigest(),
              "externals": list(object_code.externals)}
    return MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + body


def decode_entry(data: bytes, key: str) -> tuple[ObjectCode, bytes]:
    """The object code and extra bytes in a cache file, or ``CorruptEntryError`` saying why
    it cannot be trusted."""
    if not data.startswith(MAGIC):
        raise CorruptEntryError("not a tracegrad cache entry of this format")
    end = data.find(b"\n", len(MAGIC))
    if end < 0:
        raise CorruptEntryError("truncated header")
    try:
        header = json.loads(data[len(MAGIC):end])
        expected = (header["key"], header["size"], header["sha256"], header["externals"],
                    header["extra"], header["parts"])
    except (ValueError, KeyError, TypeError, RecursionError) as error:
        raise CorruptEntryError(f"unreadable header ({error})") from None
    if not (isinstance(expected[1], int) and isinstance(expected[3], list)
            and isinstance(expected[4], int) and isinstance(expected[5], list)
            and all(isinstance(name, str) for name in expected[3])
            and all(isinstance(size, int) and size > 0 for size in expected[5])):
        raise CorruptEntryError("header fields of the wrong types")
    if sum(expected[5]) != expected[1]:
        raise CorruptEntryError(f"parts of {expected[5]} bytes do not make {expected[1]}")
    body = data[end + 1:]
    if expected[0] != key:
        raise CorruptEntryError("entry is for another key")
    if len(body) != expected[1] + expected[4]:
        raise CorruptEntryError(f"entry holds {len(body)} bytes, header says "
                                f"{expected[1]} + {expected[4]}")
    if hashlib.sha256(body).hexdigest() != expected[2]:
        raise CorruptEntryError("object code does not match its checksum")
    ends = list(itertools.accumulate(expected[5]))
    parts = tuple(body[end - size:end] for size, end in zip(expected[5], ends))
    return ObjectCode(parts, tuple(expected[3])), body[expected[1]:]


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


@once
def default_cache() -> ProgramCache:
    """The process's shared cache, on the default engine and directory."""
    return ProgramCache()
