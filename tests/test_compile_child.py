"""LLVM's work in a forked child (`runtime/compile_child.py`): same results, the
child's failures reported as errors of the compile, never the caller's crash."""

from __future__ import annotations

import faulthandler
import os
import signal

import numpy as np
import pytest
from test_runtime import SAXPY_IR, saxpy, saxpy_expected
from tracegrad.runtime import compile_child, engine
from tracegrad.runtime.engine import CompileError, Engine

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def test_work_runs_in_another_process_and_its_result_comes_back():
    assert compile_child.in_child(os.getpid) != os.getpid()
    assert compile_child.in_child(lambda a, b: {"sum": [a + b]}, 2, 3) == {"sum": [5]}


def test_an_exception_in_the_child_is_raised_here_with_its_type_named():
    def fail():
        raise KeyError("no such key")

    with pytest.raises(compile_child.ChildError, match="no such key") as caught:
        compile_child.in_child(fail)
    assert caught.value.kind == "KeyError"


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGSEGV])
def test_a_child_that_dies_is_reported_not_waited_for(how):
    with pytest.raises(compile_child.ChildDied, match=f"signal {int(how)} \\({how.name}\\)"):
        compile_child.in_child(crash, how)


def test_a_child_that_exits_without_answering_is_reported():
    with pytest.raises(compile_child.ChildDied, match="exited with status 3"):
        compile_child.in_child(os._exit, 3)


def test_a_crash_inside_a_compile_is_a_compile_error(monkeypatch, runtime_linked):
    """The child inherits the patched module: its 'LLVM' crashes, the caller lives on."""
    monkeypatch.setattr(engine, "compile_side_by_side",
                        lambda requests, threads: crash(signal.SIGSEGV))
    with pytest.raises(CompileError, match="killed by signal 11 .SIGSEGV. while compiling"):
        Engine().compile_object(SAXPY_IR.replace("@saxpy", "@saxpy_crash"))
    monkeypatch.undo()
    native = Engine().compile_module(SAXPY_IR, ["saxpy"])  # the next compile is fine
    np.testing.assert_array_equal(saxpy(native), saxpy_expected())


def test_an_unexpected_error_in_the_child_keeps_its_type_and_traceback(monkeypatch,
                                                                      runtime_linked):
    def broken(requests, threads):
        raise ValueError("a bug in the compiler")

    monkeypatch.setattr(engine, "compile_side_by_side", broken)
    with pytest.raises(CompileError, match="(?s)ValueError in the compile child: a bug in the "
                                               "compiler\nTraceback .*in broken"):
        Engine().compile_object(SAXPY_IR.replace("@saxpy", "@saxpy_bug"))


def test_when_fork_fails_the_work_runs_here_with_one_warning(monkeypatch):
    def no_fork():
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(os, "fork", no_fork)
    monkeypatch.setattr(compile_child, "_warned", [])
    open_files = len(os.listdir(f"/proc/{os.getpid()}/fd"))
    with pytest.warns(RuntimeWarning, match="cannot fork a compile child"):
        assert compile_child.in_child(os.getpid) == os.getpid()
    assert compile_child.in_child(lambda: 5) == 5  # no second warning (pytest would fail)
    assert len(os.listdir(f"/proc/{os.getpid()}/fd")) == open_files  # both pipe ends closed


def test_in_the_child_and_in_this_process_give_the_same_object_code(monkeypatch,
                                                                   runtime_linked):
    text = SAXPY_IR.replace("@saxpy", "@saxpy_same")
    forked = Engine().compile_object(text)
    monkeypatch.setenv(compile_child.ENVIRONMENT_VARIABLE, "0")
    assert not compile_child.enabled()
    assert compile_child.in_child(os.getpid) == os.getpid()
    assert Engine().compile_object(text) == forked


def crash(how: signal.Signals) -> None:
    """Die of `how` (quietly: no faulthandler dump in the test's output)."""
    faulthandler.disable()
    os.kill(os.getpid(), how)

