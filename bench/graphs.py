"""What the compiler makes of each workload: nodes, kernels, memory, bytes moved.

    python -m bench.graphs            # prints a markdown table (also in the README)

For each workload of ../shared/PEERS.md the step is compiled with `tracegrad.compile` and
its steady-state variant inspected: IR nodes as traced (forward and backward) and after
the passes, the kernels of the schedule (matmuls among them), the planned arena peak
against the sum of all intermediate buffers, and the bytes the schedule reads and writes
per step against the least possible (every input read once, every output written once).
"""

from __future__ import annotations

import tracegrad

from .workloads import WORKLOADS, inputs


def figures(name: str, data) -> dict:
    from tracegrad.compiler.schedule import bytes_moved

    step, _ = WORKLOADS[name](tracegrad, data)
    compiled = tracegrad.compile(step)
    for _ in range(3):  # a step that makes optimizer state traces once more
        compiled()
    variant = compiled.variants[0]
    stages, program = variant.trace.stages, variant.trace.program
    kernels = program.schedule.kernels
    moved, least = bytes_moved(program.schedule)
    return {
        "traced": len(stages["joint"].nodes),
        "optimized": len(stages["optimized"].nodes),
        "kernels": len(kernels),
        "matmuls": sum(k.kind == "matmul" for k in kernels),
        "arena": program.plan.arena_bytes,
        "unplanned": program.plan.unplanned_bytes,
        "moved": moved,
        "least": least,
    }


def _bytes(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def table() -> str:
    data = inputs()
    lines = [("| workload | nodes traced → optimized | kernels (matmuls) | planned peak / "
              "unplanned | bytes moved / least |"), "|---|---|---|---|---|"]
    for name in WORKLOADS:
        f = figures(name, data)
        ratio = f["arena"] / f["unplanned"] if f["unplanned"] else 1.0
        lines.append(f"| {name} | {f['traced']} → {f['optimized']} | {f['kernels']} "
                     f"({f['matmuls']}) | {_bytes(f['arena'])} / {_bytes(f['unplanned'])} "
                     f"({ratio:.0%}) | {_bytes(f['moved'])} / {_bytes(f['least'])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
