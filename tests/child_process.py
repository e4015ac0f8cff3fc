"""Python code run in a child process, for what one process cannot show: a cache on disk
that a new process finds, imports that must not happen, two processes at once.

The child can import the test modules (tests/ is on its PYTHONPATH), so a script may use
a test's helpers:

>>> run_python("import numeric; print(numeric.EPS)").stdout
'1e-06\\n'
>>> [done.stdout for done in run_python_together("import sys; sys.stdin.readline(); "
...                                              "print('went')")]
['went\\n', 'went\\n']
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import subprocess
import sys

TESTS = pathlib.Path(__file__).resolve().parent


def _environment(overrides: dict) -> dict:
    """This process's environment, tests/ first on PYTHONPATH, then `overrides`."""
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **overrides}


def run_python(code: str, timeout: float = 60,
               **environment: str) -> subprocess.CompletedProcess:
    """`python -c code`, run to its end, with `environment` added to this process's (a
    child that runs past `timeout` seconds raises TimeoutExpired)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_environment(environment), timeout=timeout, check=False)


def run_python_together(code: str, count: int = 2, timeout: float = 120,
                        **environment: str) -> list[subprocess.CompletedProcess]:
    """`count` runs of `python -c code` at once. Each child starts up, then waits at
    `sys.stdin.readline()` until all are started, so the code after that line runs in all
    of them at the same moment."""
    command = [sys.executable, "-c", code]
    workers = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env=_environment(environment)) for _ in range(count)]
    try:
        for worker in workers:  # "go" to every child before waiting for any of them
            with contextlib.suppress(BrokenPipeError):  # it failed early: its stderr says why
                worker.stdin.write("go\n")
                worker.stdin.flush()
        outputs = [worker.communicate(timeout=timeout) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:  # timed out: leave no process behind
                worker.kill()
                worker.communicate()
    return [subprocess.CompletedProcess(command, worker.returncode, out, err)
            for worker, (out, err) in zip(workers, outputs)]
