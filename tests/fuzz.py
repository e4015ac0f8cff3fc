"""Differential fuzzing: compiled against eager, eager against finite differences.

    python -m tests.fuzz --n 1000 --seed 1 [--start 0] [--kind programs|train|all] [--quiet]

Case `i` (from `--start`) is the random program `generate(case_seed(seed, i))` of
tests/program_generator.py, checked three ways (the checks are in fuzz_checks.py):

* `programs`: the program as a differentiable function, called compiled and eagerly six
  times (traced, re-run, new values, gradients accumulating, under `no_grad`), with some
  inputs frozen; losses and input gradients must agree within round-off. Then the eager
  gradients of its float64 twin (`Program.in_float64`) must agree with central finite
  differences along random directions, where the loss is smooth there (a kink within the
  step, such as relu at 0 or a max tie, explains the difference by one-sided slopes that
  differ; that direction is replaced by another).
* `train`: the program as the loss of a whole compiled training step (zero_grad,
  backward, gradient clipping, an optimizer step: SGD plain, with momentum, Nesterov or
  weight decay, Adam, AdamW, amsgrad) over several steps with a learning-rate schedule;
  loss, parameters, `.grad` and optimizer state must agree.
* `all`: both; every fourth case also trains.

Round-off: values must agree to TOLERANCE; where they do not, Monte Carlo arithmetic
decides (`rounding_noise`): eager is run again with every rounding op's result moved by up
to 2 ulps at random, and compiled passes if it is within 4 times the spread that makes
(the round-off of an ill-conditioned value, such as the gradient of a layer_norm over
nearly equal values, which cancellation amplifies far past any fixed tolerance).

Every compiled graph is verified and must round-trip through its text form; the
primitives they contain are counted, and the summary names any primitive of
`compiler/ops` no program reached. On the first failure the case is minimised (body lines
and outputs dropped while it still fails the same way) and printed as a standalone script
that imports tracegrad and NumPy, builds the same inputs and shows the mismatch
(fuzz_failure.py); the exit status is then 1 (`--keep-going` reports every failure).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as `python -m tests.fuzz`
# Compiled programs go to a cache of this run, not the user's ~/.cache/tracegrad.
os.environ.setdefault("TRACEGRAD_CACHE_DIR", tempfile.mkdtemp(prefix="tracegrad-fuzz-cache-"))

from fuzz_checks import CHECKS, check_graphs, compare
from fuzz_failure import failure_script, minimise
from numeric import TOLERANCE  # compiled against eager: rtol, atol (x scale)
from program_generator import Program, generate
from tracegrad.compiler.ir import Graph
from tracegrad.compiler.ops import PRIMITIVES

FD_STEP = 1e-6  # central differences in float64: truncation ~1e-12 f''', round-off ~1e-10 f
FD_TOLERANCE = (1e-5, 1e-6)  # rtol, atol (x max(1, |f|)); see check_gradients
TRAINING_STEPS = 4
# (optimizer, options): every kind the SPEC names; a large Adam eps, because where a
# gradient is round-off noise (a softmax's sum) plain Adam normalises it into full steps.
OPTIMIZERS = [
    ("SGD", {"lr": 0.02}),
    ("SGD", {"lr": 0.02, "momentum": 0.9}),
    ("SGD", {"lr": 0.02, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.02, "momentum": 0.5, "dampening": 0.1, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.02, "eps": 0.1}),
    ("Adam", {"lr": 0.02, "eps": 0.1, "amsgrad": True, "weight_decay": 0.05}),
    ("AdamW", {"lr": 0.02, "eps": 0.1}),
    ("AdamW", {"lr": 0.02, "eps": 0.1, "amsgrad": True, "betas": (0.8, 0.95)}),
]
CLIPPING = (None, "norm", "value")


# --- cases ------------------------------------------------------------------------------

def case_seed(seed: int, i: int) -> int:
    """The generator seed of case `i` of the run `seed` (runs do not overlap below 100,000
    cases)."""
    return seed * 100_000 + i


@dataclass
class Case:
    """One check of one program: `CHECKS[kind](program.fn, program.make_inputs, **options)`."""

    kind: str  # "calls", "gradients" or "training"
    program: Program
    options: dict
    origin: str = ""  # the command that runs it

    def run(self, compiled_out=None):
        check = CHECKS[self.kind]
        options = dict(self.options)
        if compiled_out is not None and self.kind != "gradients":
            options["compiled_out"] = compiled_out
        return check(self.program.fn, self.program.make_inputs, **options)


def function_cases(program: Program, origin: str) -> list:
    """The program as a function, compiled against eager; its float64 twin's gradients
    against finite differences."""
    rtol, atol = TOLERANCE[program.lowest_precision]
    values = [10 * program.seed + k for k in range(4)]
    calls = [(values[0], "fresh"), (values[0], "again"), (values[1], "fresh"),
             (values[2], "fresh"), (values[2], "accumulate"), (values[3], "no_grad")]
    twin = program.in_float64()
    return [Case("calls", program, {"requires_grad": program.requires_grad_flags(),
                                    "calls": calls, "rtol": rtol, "atol": atol}, origin),
            Case("gradients", twin, {"values": values[0], "step": FD_STEP,
                                     "rtol": FD_TOLERANCE[0], "atol": FD_TOLERANCE[1]}, origin)]


def training_case(program: Program, index: int, origin: str) -> Case:
    """The program as the loss of a training step; `index` picks the optimizer, gradient
    clipping, and whether parameters are arguments or captured."""
    optimizer, options = OPTIMIZERS[index % len(OPTIMIZERS)]
    rtol, atol = TOLERANCE[program.lowest_precision]
    return Case("training", program, {
        "optimizer": optimizer, "options": options, "steps": TRAINING_STEPS,
        "explicit": (index // len(OPTIMIZERS)) % 2 == 1, "clip": CLIPPING[index % 3],
        "values": 10 * program.seed + 5, "rtol": rtol, "atol": atol}, origin)


def cases(seed: int, i: int, kind: str) -> list:
    """The checks of case `i` of the run `seed`."""
    program = generate(case_seed(seed, i))
    origin = f"python -m tests.fuzz --seed {seed} --start {i} --n 1 --kind {kind}"
    found = function_cases(program, origin) if kind in ("programs", "all") else []
    if kind == "train" or (kind == "all" and i % 4 == 0):
        found.append(training_case(program, i if kind == "train" else i // 4, origin))
    return found


# --- running one case -------------------------------------------------------------------

def exception_category(exc: BaseException) -> str:
    """An exception's type and first message line, numbers masked: two failures with the
    same category are taken to be the same bug."""
    first = (str(exc).splitlines() or [""])[0]
    return f"exception {type(exc).__name__}: {re.sub(r'[0-9]+', '#', first)}"


def run_case(case: Case, coverage: Coverage | None = None):
    """(category, message) if the case fails, else None (or ("skipped", n) for gradient
    checks that skipped `n` directions)."""
    compiled = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a fallback is reported as a failure
            result = case.run(compiled)
        if result is None and compiled:
            result = check_graphs(compiled)
    except Exception as exc:  # noqa: BLE001  (any exception is a finding)
        return exception_category(exc), (f"{type(exc).__name__}: {exc}\n"
                                          + "".join(traceback.format_exception(exc)[-12:]))
    if coverage is not None:
        coverage.add(compiled)
    return result


@dataclass
class Coverage:
    """Which primitives the compiled graphs contained: as traced (forward and backward)
    and after the graph passes."""

    traced: Counter = field(default_factory=Counter)
    optimized: set = field(default_factory=set)

    def add(self, compiled_functions) -> None:
        for compiled in compiled_functions:
            for variant in compiled.variants:
                for stage, graph in variant.trace.stages.items():
                    if not isinstance(graph, Graph):
                        continue
                    ops = [node.op for node in graph.nodes if node.op in PRIMITIVES]
                    if stage in ("traced", "joint"):
                        self.traced.update(ops)
                    else:
                        self.optimized.update(ops)

    def missing(self) -> list:
        return sorted(set(PRIMITIVES) - set(self.traced))


# --- the run ----------------------------------------------------------------------------

@dataclass
class Summary:
    """What a run did: cases by kind, failures (with their scripts), coverage, time."""

    ran: Counter = field(default_factory=Counter)
    optimizers: Counter = field(default_factory=Counter)
    roundoff: int = 0  # differences past the tolerance that rounding noise explained
    skipped_directions: int = 0
    failures: list = field(default_factory=list)  # (case, (category, message), script)
    coverage: Coverage = field(default_factory=Coverage)
    seconds: float = 0.0

    def report(self) -> str:
        optimizers = ", ".join(f"{k} {v}" for k, v in sorted(self.optimizers.items()))
        failures = "".join(f"\n  {case.origin} [{case.kind}]: {failure[1].splitlines()[0][:200]}"
                           for case, failure, _ in self.failures)
        traced, optimized = set(self.coverage.traced), self.coverage.optimized
        return "\n".join([
            (f"fuzz: {self.ran['programs']} programs, {self.ran['calls']} compiled-vs-eager "
             f"checks, {self.ran['gradients']} finite-difference checks "
             f"({self.skipped_directions} non-smooth directions replaced), "
             f"{self.ran['training']} training runs of {TRAINING_STEPS} steps ({optimizers})"),
            (f"mismatches: {len(self.failures)} ({self.roundoff} differences past the "
             f"tolerance explained by rounding noise){failures}"),
            (f"primitives covered: {len(traced)} of {len(PRIMITIVES)} traced (never: "
             f"{', '.join(self.coverage.missing()) or 'none'}); {len(optimized)} after the "
             f"graph passes (never: {', '.join(sorted(set(PRIMITIVES) - optimized)) or 'none'})"),
            f"time: {self.seconds:.1f} s",
        ])


def fuzz(seed: int, n: int, start: int = 0, kind: str = "all", quiet: bool = True,
         keep_going: bool = False, minimise_seconds: float = 120.0, out=sys.stdout) -> Summary:
    """Run cases `start` .. `start + n - 1` of the run `seed`; stop at the first failure
    (after minimising it and printing its script) unless `keep_going`."""
    summary = Summary()
    began, roundoff = time.monotonic(), getattr(compare, "roundoff", 0)
    for i in range(start, start + n):
        summary.ran["programs"] += 1
        for case in cases(seed, i, kind):
            summary.ran[case.kind] += 1
            if case.kind == "training":
                summary.optimizers[_optimizer_word(case)] += 1
            result = run_case(case, summary.coverage)
            if result is not None and result[0] == "skipped":
                summary.skipped_directions += result[1]
            elif result is not None:
                summary.roundoff = getattr(compare, "roundoff", 0) - roundoff
                small = minimise(case, result[0], run_case, minimise_seconds) \
                    if minimise_seconds else case
                script = failure_script(small, run_case(small) or result)
                # what minimising adds to the count is not counted
                roundoff = getattr(compare, "roundoff", 0) - summary.roundoff
                summary.failures.append((case, result, script))
                print(f"\nFAILED: {case.origin} [{case.kind}] {result[0]}\n{result[1]}\n\n"
                      f"--- a standalone script that shows it ---\n{script}", file=out)
                if not keep_going:
                    summary.seconds = time.monotonic() - began
                    return summary
        if not quiet and (i - start + 1) % 25 == 0:
            print(f"  {i - start + 1}/{n} programs, {len(summary.failures)} failures, "
                  f"{time.monotonic() - began:.0f} s", file=out, flush=True)
    summary.seconds = time.monotonic() - began
    summary.roundoff = getattr(compare, "roundoff", 0) - roundoff
    return summary


def _optimizer_word(case: Case) -> str:
    """`SGD(momentum, nesterov)`: the optimizer and the options that change its rule."""
    options = [k for k in case.options["options"] if k not in ("lr", "eps", "betas")]
    return f"{case.options['optimizer']}({', '.join(options)})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="how many programs (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="the run's seed (default 0)")
    parser.add_argument("--start", type=int, default=0, help="the first case (default 0)")
    parser.add_argument("--kind", choices=("programs", "train", "all"), default="all",
                        help="functions, training steps, or both (default)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--keep-going", action="store_true",
                        help="report every failure instead of stopping at the first")
    parser.add_argument("--minimise-seconds", type=float, default=120.0,
                        help="time to spend shrinking a failure (0: print it as found)")
    args = parser.parse_args(argv)
    summary = fuzz(args.seed, args.n, args.start, args.kind, args.quiet, args.keep_going,
                   args.minimise_seconds)
    print(summary.report())
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
