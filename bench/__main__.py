"""Benchmark runner: time per step and memory of each workload, for every peer, in one run.

    python -m bench                      # all workloads, all installed peers
    python -m bench --only seed_poly     # a subset
    python -m bench --readme             # also write the table into README.md
    python -m bench --peers tracegrad torch torch.compile jax   # every peer

Peers run interleaved, round after round, and each figure is the median over rounds;
ratios are taken within this one run (the machine is shared and noisy). Every peer's
gradients are checked against the float64 NumPy reference before it is timed.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc

import numpy as np

from . import numpy_reference
from .jax_workloads import JAX_WORKLOADS
from .workloads import WORKLOADS, inputs

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def load_peers(names) -> dict:
    """Module-like peers by name; a peer that is not installed is left out."""
    peers = {}
    if "tracegrad" in names:
        # An empty disk cache of its own, so that a first call compiles (a warm cache would
        # skip lowering and LLVM: bench/cold_start.py measures that case).
        cache = tempfile.mkdtemp(prefix="tracegrad-bench-")
        atexit.register(shutil.rmtree, cache, True)
        os.environ["TRACEGRAD_CACHE_DIR"] = cache
        import tracegrad

        peers["tracegrad eager"] = tracegrad
        peers["tracegrad compiled"] = tracegrad  # the same step, through tracegrad.compile
    if "torch" in names or "torch.compile" in names:
        try:
            os.environ.setdefault("TORCH_USE_RTLD_GLOBAL", "1")
            import torch

            torch.set_num_threads(2)
            if "torch" in names:
                peers["PyTorch eager"] = torch
            if "torch.compile" in names:  # opt-in: Inductor takes ~10 s per workload
                peers["torch.compile"] = torch
        except Exception as exc:  # noqa: BLE001 - any failure means: not available here
            print(f"(PyTorch not available: {exc})", file=sys.stderr)
    if "jax" in names:
        try:
            import jax

            peers["JAX jit"] = jax
        except Exception as exc:  # noqa: BLE001 - any failure means: not available here
            print(f"(JAX not available: {exc})", file=sys.stderr)
    return peers


def calibrate(step, target: float = 0.02) -> int:
    """How many steps make one timed batch of about `target` seconds."""
    step()
    start = time.perf_counter()
    step()
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, int(target / once))


def time_batch(step, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        step()
    return (time.perf_counter() - start) / count


def peak_memory(step) -> int | None:
    """Peak bytes NumPy allocates during one step (tracemalloc sees NumPy's buffers)."""
    gc.collect()
    tracemalloc.start()
    step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def gradient_error(got, want) -> float:
    worst = 0.0
    for g, w in zip(got, want):
        scale = max(float(np.max(np.abs(w))), 1e-12)
        worst = max(worst, float(np.max(np.abs(np.asarray(g, np.float64) - w))) / scale)
    return worst


def run_workload(name: str, peers: dict, rounds: int, data) -> dict:
    reference = numpy_reference.REFERENCES[name]
    expected = reference(data, np.float64)()
    steps = {"NumPy by hand": reference(data, np.float32)}
    errors = {}
    compile_info = {}
    for label, lib in peers.items():
        step, grads = (JAX_WORKLOADS if label == "JAX jit" else WORKLOADS)[name](lib, data)
        if label == "tracegrad compiled":
            # Its first calls trace; its gradients are checked against an eager twin that
            # took as many steps (the eager peer is checked against the reference).
            step, compile_info = compiled_step(lib, step)
            step()
            twin, twin_grads = WORKLOADS[name](lib, data)
            for _ in range(4):
                twin()
            errors[label] = gradient_error(grads(), twin_grads())
            if step.variants:  # measured last: it replays stored outputs into the state
                compile_info["overhead"] = call_overhead(step)
        else:
            if label == "torch.compile":
                step = lib.compile(step)  # the whole step, as PEERS.md measures it
            step()
            errors[label] = gradient_error(grads(), expected)
        steps[label] = step
    counts = {label: calibrate(step) for label, step in steps.items()}
    samples = {label: [] for label in steps}
    for _ in range(rounds):
        for label, step in steps.items():
            samples[label].append(time_batch(step, counts[label]))
    return {
        "compile": compile_info,
        "time": {label: statistics.median(s) for label, s in samples.items()},
        "memory": {label: peak_memory(step) for label, step in steps.items()
                   if label in ("NumPy by hand", "tracegrad eager")},
        "error": errors,
    }


def compiled_step(lib, step):
    """`step` through tracegrad.compile, with its trace time and per-call overhead."""
    compiled = lib.compile(step)
    start = time.perf_counter()
    compiled()  # the first call traces (an eager run plus recording)
    info = {"first call": time.perf_counter() - start}
    compiled()  # a step that created optimizer state traces once more
    compiled()
    info["variants"] = len(compiled.variants)
    info["fallback"] = compiled.fallback_reason
    if compiled.variants:
        info["nodes"] = len(compiled.variants[0].graph.nodes)
    return compiled, info


def call_overhead(compiled) -> float:
    """Time per compiled call with the graph's execution replaced by its stored result:
    what guards, binding and write-back cost."""
    program = compiled.variants[0].trace.program
    outputs = program.run(*[source((), {}) for source in compiled.variants[0].sources])
    program.run = lambda *arrays, into=None: outputs  # an attribute shadows the method
    variants = len(compiled.variants)
    try:
        count = calibrate(compiled)
        overhead = statistics.median(time_batch(compiled, count) for _ in range(5))
    finally:
        del program.run
    if len(compiled.variants) != variants or compiled.fallback_reason:
        reasons = [v.failure for v in compiled.variants if v.failure]
        raise RuntimeError(f"measuring the overhead made the compiled step trace anew: "
                           f"{compiled.fallback_reason or reasons}")
    return overhead


def format_time(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def format_table(results: dict) -> str:
    labels = list(next(iter(results.values()))["time"])
    head = ["workload", *labels, "tracegrad / NumPy"]
    if "PyTorch eager" in labels:
        head.append("tracegrad / PyTorch")
    if "torch.compile" in labels:
        head.append("compiled / torch.compile")
    if "JAX jit" in labels:
        head.append("compiled / JAX")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        t = r["time"]
        row = [name] + [format_time(t[label]) for label in labels]
        row.append(f"{t['tracegrad eager'] / t['NumPy by hand']:.2f}×")
        if "PyTorch eager" in t:
            row.append(f"{t['tracegrad eager'] / t['PyTorch eager']:.2f}×")
        if "torch.compile" in t:
            row.append(f"{t['tracegrad compiled'] / t['torch.compile']:.2f}×")
        if "JAX jit" in t:
            row.append(f"{t['tracegrad compiled'] / t['JAX jit']:.2f}×")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("Peak memory allocated during one step (tracemalloc); the largest relative "
                 "gradient error of eager against the float64 NumPy reference, and of the "
                 "compiled step against an eager twin after as many steps:")
    lines.append("")
    lines.append("| workload | NumPy by hand | tracegrad eager | gradient error, eager | "
                 "compiled vs eager |")
    lines.append("|---|---|---|---|---|")
    for name, r in results.items():
        m, e = r["memory"], r["error"]
        lines.append(f"| {name} | {m['NumPy by hand'] / 2**20:.1f} MiB | "
                     f"{m['tracegrad eager'] / 2**20:.1f} MiB | {e['tracegrad eager']:.1e} | "
                     f"{e.get('tracegrad compiled', float('nan')):.1e} |")
    rates = throughput(results)
    if rates:
        lines += ["", *rates]
    if any(r["compile"] for r in results.values()):
        lines += ["", ("The compiled path (native code from the LLVM backend): first call in a "
                       "fresh cache directory (trace, passes, schedule, LLVM), graph nodes, and "
                       "per-call overhead excluding execution (guards, binding, write-back):"), "",
                  "| workload | first call | nodes | overhead per call |", "|---|---|---|---|"]
        for name, r in results.items():
            c = r["compile"]
            if c:
                lines.append(f"| {name} | {format_time(c['first call'])} | {c.get('nodes', '–')}"
                             f" | {format_time(c['overhead']) if 'overhead' in c else '–'} |")
    return "\n".join(lines)


ELEMENTWISE_BYTES = 24 * 2**20  # x, w, b read and three gradients written (PEERS.md)
MNIST_FLOP = 3 * 2 * 128 * (784 * 512 + 512 * 512 + 512 * 10)  # forward + 2x backward
SGEMM_PEAK = 200e9  # OpenBLAS sgemm on this machine, PEERS.md


def throughput(results: dict) -> list:
    """The compiled step's memory and arithmetic rates, where PEERS.md asks for them."""
    lines = []
    for name, r in results.items():
        seconds = r["time"].get("tracegrad compiled")
        if seconds and name == "elementwise_1m":
            lines.append(f"`elementwise_1m` compiled moves {ELEMENTWISE_BYTES / seconds / 1e9:.0f}"
                         f" GB/s (the machine copies 61 GB/s on one core, 137 on two, in L3).")
        if seconds and name == "mlp_mnist_train_step":
            lines.append(f"`mlp_mnist_train_step` compiled runs {MNIST_FLOP / seconds / 1e9:.0f} "
                         f"GFLOP/s ({MNIST_FLOP / 1e9:.2f} GFLOP per step as PEERS.md counts "
                         f"it), {MNIST_FLOP / seconds / SGEMM_PEAK:.0%} of the sgemm peak.")
    return lines


def write_readme(table: str, marker: str = "bench") -> None:
    """Put `table` between the README's `<!-- marker:start -->` and `:end -->` lines."""
    with open(README) as f:
        text = f.read()
    block = f"<!-- {marker}:start -->\n{table}\n<!-- {marker}:end -->"
    text = re.sub(rf"<!-- {marker}:start -->.*<!-- {marker}:end -->", lambda _: block, text,
                  flags=re.DOTALL)
    with open(README, "w") as f:
        f.write(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", choices=list(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--peers", nargs="*", default=["tracegrad", "torch", "jax"],
                        help="tracegrad, torch (eager), jax (jit) and, opt-in, torch.compile")
    parser.add_argument("--readme", action="store_true", help="write the table into README.md")
    args = parser.parse_args(argv)
    peers = load_peers(args.peers)
    data = inputs()
    results = {}
    for name in args.only:
        results[name] = run_workload(name, peers, args.rounds, data)
        print(f"{name}: " + ", ".join(f"{k} {format_time(v)}"
                                      for k, v in results[name]["time"].items()), flush=True)
        bad = {k: e for k, e in results[name]["error"].items() if e > 2e-3}
        if bad:
            print(f"  GRADIENT MISMATCH {bad}", flush=True)
    table = format_table(results)
    print()
    print(table)
    if args.readme:
        from .graphs import table as graphs_table

        write_readme(table)
        write_readme(graphs_table(), "graphs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
