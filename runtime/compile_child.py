"""LLVM's optimiser and code generator in a child process, one per compile.

Optimising and emitting a program touches tens of megabytes of LLVM's code and heap that
running it never needs, and a process keeps its peak memory for life: the MNIST step's
process peaked at 150 MB compiling in place and at 121 MB with the compile in a child.
So `in_child(work, *arguments)` forks, runs `work(*arguments)` in the child, and takes
back its result (pickled through a pipe); the caller then only
loads the object code (MCJIT). A crash inside LLVM now ends the child, not the user's
process: the program that caused it gets `ChildDied`.

Why a fork per compile and not a long-lived worker: a fork starts in a millisecond with
LLVM already set up, and while the child compiles the parent only waits, so few of its
pages are copied; a fresh Python worker took 90 ms to start, and a long-lived forked one
made the parent copy every page it wrote afterwards (25 ms more on a first call).

The fork happens with llvmlite's lock held, so no other thread of the parent is inside
LLVM at that moment and the child finds LLVM consistent. The child ignores Ctrl-C (it
reaches the whole process group); an interrupted parent kills the child. Where there
is no `fork`, or with `TRACEGRAD_COMPILE_IN_CHILD=0`, the work runs in the caller.

>>> in_child(sum, [1, 2, 3])
6
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import threading
import traceback
import warnings

ENVIRONMENT_VARIABLE = "TRACEGRAD_COMPILE_IN_CHILD"
_LENGTH = struct.Struct("<Q")  # the reply: its length, then its bytes


class ChildDied(RuntimeError):
    """The child exited or was killed before it answered."""


class ChildError(RuntimeError):
    """`work` raised in the child: `kind` is the name of the exception's type, and
    `child_traceback` where it was raised."""

    def __init__(self, kind: str, message: str, child_traceback: str = ""):
        super().__init__(message)
        self.kind, self.child_traceback = kind, child_traceback


def enabled() -> bool:
    """Whether work goes to a child process (`TRACEGRAD_COMPILE_IN_CHILD`, default on)."""
    return hasattr(os, "fork") and os.environ.get(ENVIRONMENT_VARIABLE, "1") != "0"


def in_child(work, *arguments):
    """`work(*arguments)` computed in a forked child (in this process if `enabled()` is
    false). What it raised there is raised here as `ChildError`."""
    if not enabled():
        return work(*arguments)
    import llvmlite.binding as llvm

    # With llvmlite's lock held no thread of ours is inside LLVM, and no other thread
    # forks between making this pipe and closing the child's end (or its child would
    # inherit an end of it).
    with llvm.ffi.lib._lock:
        receive, send = os.pipe()
        try:
            pid = os.fork()
        except OSError as error:  # out of memory or processes: compile here instead
            os.close(receive)
            os.close(send)
            _warn_once(f"tracegrad: cannot fork a compile child ({error}); "
                       f"compiling in this process")
            pid = None
        if pid:
            os.close(send)
    if pid == 0:  # the child, with the locks released (its helper threads need LLVM's)
        os.close(receive)
        _child(send, work, arguments)  # never returns
    if pid is None:
        return work(*arguments)
    reply = None
    try:
        reply = _read_message(receive)
    finally:
        os.close(receive)
        if reply is None:  # dead, or we were interrupted: make sure it is gone
            _kill_quietly(pid)
            status = _reaped(pid)
    if reply is None:
        raise ChildDied(_describe(status))
    # It has answered and only has to exit: unmapping LLVM's memory takes it ~3 ms, which
    # the caller need not wait for.
    threading.Thread(target=_reaped, args=(pid,), daemon=True).start()
    ok, value = pickle.loads(reply)
    if not ok:
        raise ChildError(*value)
    return value


def _child(send: int, work, arguments) -> None:
    status = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            reply = (True, work(*arguments))
        except Exception as error:  # noqa: BLE001 - the parent raises it
            reply = (False, (type(error).__name__, str(error), traceback.format_exc()))
        data = pickle.dumps(reply)
        view = memoryview(_LENGTH.pack(len(data)) + data)
        while view:
            view = view[os.write(send, view):]
    except BaseException:  # noqa: BLE001 - the parent sees the pipe close early
        status = 1
    os._exit(status)  # no atexit handler or buffer of the parent's runs twice


def _read_message(fd: int) -> bytes | None:
    """The whole reply, or None at end-of-file (also in the middle of it)."""
    header = _read_exactly(fd, _LENGTH.size)
    return None if header is None else _read_exactly(fd, _LENGTH.unpack(header)[0])


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


_warned: list = []


def _warn_once(message: str) -> None:
    if not _warned:
        _warned.append(message)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def _reaped(pid: int) -> int | None:
    """The child's exit status, or None if it cannot be known (SIGCHLD is ignored)."""
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return None


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _describe(status: int | None) -> str:
    if status is None:
        return "the LLVM compile (a child process) ended without an answer"
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        return f"the LLVM compile (a child process) was killed by signal {number} " \
               f"({signal.Signals(number).name})"
    return f"the LLVM compile (a child process) exited with status {os.WEXITSTATUS(status)}"
