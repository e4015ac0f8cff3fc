"""Cold start, as PEERS.md measures it: each figure from a fresh process.

    python -m bench.cold_start               # tracegrad compiled and, when installed, JAX
    python -m bench.cold_start --readme      # also write the table into README.md

For every peer and MLP step, medians of three fresh processes: the time of `import`, of
the first call (trace, optimise, compile; for tracegrad once with an empty disk cache and
once more in a new process with the cache the first one left), and the peak resident
memory of a process that imports, compiles and runs the MNIST step ten times (and apart,
that of the largest child process it waited for: tracegrad's LLVM compiles run in one).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

# Run in a child process: prints one JSON line with the figures.
CHILD = r"""
import json, resource, sys, time
peer, workload = sys.argv[1], sys.argv[2]
start = time.perf_counter()
if peer == "tracegrad":
    import tracegrad as lib
else:
    import jax as lib
imported = time.perf_counter() - start
from bench.workloads import WORKLOADS
from bench.jax_workloads import JAX_WORKLOADS
table = WORKLOADS if peer == "tracegrad" else JAX_WORKLOADS
step, _ = table[workload](lib, {})  # the MLP steps make their own data
if peer == "tracegrad":
    step = lib.compile(step)
start = time.perf_counter()
step()
first = time.perf_counter() - start
for _ in range(10):
    step()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"import": imported, "first": first, "peak": peak, "children": children}))
"""

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = ("mlp_small_train_step", "mlp_mnist_train_step")


def measure(peer: str, workload: str, cache_dir: str) -> dict:
    env = {**os.environ, "TRACEGRAD_CACHE_DIR": cache_dir, "PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, "-c", CHILD, peer, workload], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# A first call is one sample, and a busy neighbour on this 2-core machine can add 100 ms
# to it: each figure is the median of this many fresh processes (every peer alike).
PROCESSES = 3


def medians(peer: str, workload: str, runs: int) -> list[dict]:
    """Each figure's median over `PROCESSES` fresh processes: of the first process in a new
    cache directory, and (`runs` 2) of a second one in the directory the first filled."""
    samples: list[list[dict]] = [[] for _ in range(runs)]
    for _ in range(PROCESSES):
        with tempfile.TemporaryDirectory() as cache:
            for figures in samples:
                figures.append(measure(peer, workload, cache))
    return [{key: statistics.median(run[key] for run in figures) for key in figures[0]}
            for figures in samples]


def compile_bytecode() -> None:
    """Write the bytecode of tracegrad's modules, as installing a package does (JAX's is
    written when pip installs it). An editable install leaves that to the first import,
    which does not write it under `PYTHONDONTWRITEBYTECODE` (set on some machines, this
    one among them): every fresh process then compiled the compiler from source, ~40 ms
    of its first call."""
    packages = [os.path.join(ROOT, name) for name in ("tracegrad", "compiler", "runtime")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *packages], check=True,
                   capture_output=True)


def installed(peer: str) -> bool:
    return subprocess.run([sys.executable, "-c", f"import {peer}"], capture_output=True,
                          check=False).returncode == 0


def table() -> str:
    rows = [("| peer | import | first call, small MLP step | first call, MNIST step | "
             "peak RSS, MNIST process |"), "|---|---|---|---|---|"]
    for peer in ("tracegrad", "jax"):
        if not installed(peer):
            continue
        labels = ["", *([" (warm disk cache)"] if peer == "tracegrad" else [])]
        by_step = [medians(peer, workload, len(labels)) for workload in STEPS]
        for label, small, mnist in zip(labels, *by_step):
            name = {"tracegrad": "tracegrad compiled", "jax": "JAX jit"}[peer] + label
            rows.append(f"| {name} | {min(small['import'], mnist['import']):.2f} s | "
                        f"{small['first'] * 1e3:.0f} ms | {mnist['first'] * 1e3:.0f} ms | "
                        f"{mnist['peak'] / 2**20:.0f} MB{_children(mnist)} |")
    return "\n".join(rows)


def _children(figures: dict) -> str:
    """The largest child process's peak, if there was one: tracegrad's LLVM compiles run
    in a forked child (`runtime/compile_child.py`), which shares most of its pages with
    the parent, as PEERS.md counts compile workers apart."""
    return f" (+{figures['children'] / 2**20:.0f} MB compile child)" if figures["children"] \
        else ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--readme", action="store_true", help="write the table into README.md")
    args = parser.parse_args(argv)
    compile_bytecode()
    text = table()
    print(text)
    if args.readme:
        from .__main__ import write_readme

        write_readme(text, "cold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
