"""Several LLVM modules compiled at once, on threads.

A program comes as one module per kernel (``compiler/lower/program.py``), one after the
other in one text; a new module starts at each ``; ModuleID`` line (`split_modules`).
They are linked into a few groups of about the same size (`balanced_groups`), one per
thread, and the groups compile side by side, each in an LLVM context of its own
(`compile_side_by_side`): LLVM allows that, and llvmlite's lock is left out of the heavy
steps (`llvm_steps.unlocked`).

>>> split_modules("; ModuleID = 'a'\\n; ModuleID = 'b'\\n")
["; ModuleID = 'a'\\n", "; ModuleID = 'b'\\n"]
"""

from __future__ import annotations

import re
import threading

import llvmlite.binding as llvm

from .llvm_steps import (
    CompileError,
    ObjectCode,
    emit_object,
    external_symbols,
    llvm_ready,
    optimize,
    parse,
)


def compile_side_by_side(requests: list[tuple[str, int]],
                         thread_count: int) -> list[ObjectCode]:
    """The object code per ``(ir_text, opt_level)``: the modules of each text linked into
    groups (`balanced_groups`), and all groups compiled on up to ``thread_count`` threads,
    the largest first. The groups of the largest text are balanced around the rest (the
    threading runtime, compiled with a program in a new cache): it comes on top of the
    group that is left the lightest, where it had come after two equal groups (+6 ms)."""
    texts = [split_modules(ir_text) for ir_text, _ in requests]
    costs = [[compile_cost(text, opt_level) for text in modules]
             for modules, (_, opt_level) in zip(texts, requests)]
    totals = [sum(module_costs) for module_costs in costs]
    largest = max(range(len(totals)), key=totals.__getitem__, default=None)
    jobs, loads = [], []  # (modules, opt_level, request), and what each costs
    for r, (_, opt_level) in enumerate(requests):
        head_start = sum(totals) - totals[r] if r == largest else 0
        for group in _deal(costs[r], thread_count, head_start):
            jobs.append(([texts[r][k] for k in group], opt_level, r))
            loads.append(sum(costs[r][k] for k in group))
    order = sorted(range(len(jobs)), key=lambda j: -loads[j])
    compiled = dict(zip(order, _on_threads(_compile_group, [jobs[j] for j in order],
                                             thread_count)))
    objects = []
    for r in range(len(requests)):
        parts = [compiled[j] for j, (_, _, owner) in enumerate(jobs) if owner == r]
        names = [name for _, _, defined in parts for name in defined]
        defined = set(names)
        if len(defined) < len(names):  # as linking them into one module would say
            twice = sorted({name for name in names if names.count(name) > 1})
            raise CompileError(f"symbol multiply defined: {', '.join(twice)}")
        externals = sorted({name for _, used, _ in parts for name in used} - defined)
        objects.append(ObjectCode(tuple(code for code, _, _ in parts), tuple(externals)))
    return objects


# Each module LLVM optimises costs some milliseconds beyond its functions (`compile_cost`);
# a group is one module. So there are as many groups as threads, and only if each gets at
# least this much cost: the small MLP step (89,000 characters in
# 12 modules) compiles in 180 ms as one module, 105 ms as two groups on two cores, and
# 115-150 ms as three or four.
GROUP_CHARACTERS = 16_000


def balanced_groups(texts: list[str], count: int, opt_level: int = 3,
                    head_start: int = 0) -> list[list[str]]:
    """``texts`` (modules) dealt into at most ``count`` groups of about the same cost, the
    costliest first, the first group starting with ``head_start`` (other work its thread
    will do): no more groups than `GROUP_CHARACTERS` of cost fill.

    >>> [[len(t) for t in group] for group in balanced_groups(["a" * 20000] * 3 + ["b"], 4)]
    [[20000, 1], [20000], [20000]]
    >>> [[len(t) for t in group] for group in balanced_groups(["a" * 20000] * 3, 2, 3, 20000)]
    [[20000], [20000, 20000]]
    """
    costs = [compile_cost(text, opt_level) for text in texts]
    return [[texts[k] for k in group] for group in _deal(costs, count, head_start)]


def _deal(costs: list[int], count: int, head_start: int) -> list[list[int]]:
    """`balanced_groups` on the modules' costs: the positions in each group."""
    loads = [0] * max(1, min(count, sum(costs) // GROUP_CHARACTERS, len(costs)))
    loads[0] = head_start
    groups: list[list[int]] = [[] for _ in loads]
    for k in sorted(range(len(costs)), key=lambda k: costs[k], reverse=True):
        g = loads.index(min(loads))
        groups[g].append(k)
        loads[g] += costs[k]
    return [group for group in groups if group]


# What LLVM spends on each function it optimises besides its text, in characters of text
# it would spend as long on: fitted to the modules of the MLP steps (1.35 ms per 1000
# characters, 2 ms per function). Without it, groups of as many characters took 79 and
# 96 ms: one had 33 functions, the other 16.
FUNCTION_CHARACTERS = 1500


def compile_cost(text: str, opt_level: int = 3) -> int:
    """About how long LLVM takes on a module, in characters of optimised IR: its text and
    `FUNCTION_CHARACTERS` per function it defines. A function marked `optnone` is only
    translated, and counts a quarter of its text (the register transpose, 25,000
    characters, compiles in 12 ms where 25,000 characters of kernels take about 50:
    counted whole, it left the small MLP step's groups at 100 and 73 ms); so does a whole
    module at ``opt_level`` 0.

    >>> compile_cost('define void @f() noinline optnone\\n{\\n  ret void\\n}\\n')
    13
    >>> compile_cost('define void @f()\\n{\\n  ret void\\n}\\n')
    1532
    """
    if opt_level == 0:
        return len(text) // 4
    cost = len(text)
    for function in re.finditer(r"^define ([^\n]*).*?^\}", text, re.MULTILINE | re.DOTALL):
        if re.search(r"\boptnone\b", function.group(1)):
            cost -= 3 * len(function.group(0)) // 4
        else:
            cost += FUNCTION_CHARACTERS
    return cost


def _compile_group(job: tuple[list[str], int, int]) -> tuple[bytes, tuple, list]:
    """A group's object code (its modules linked into one, in a context of its own), the
    symbols it uses and those it defines for other objects to use."""
    texts, opt_level, _ = job
    context = llvm.create_context()
    module = parse(texts[0], context)
    for text in texts[1:]:
        try:
            module.link_in(parse(text, context))  # renames clashing internal symbols
        except RuntimeError as error:
            raise CompileError(f"cannot link LLVM modules: {error}") from None
    machine = llvm_ready().host.target_machine(opt_level)
    optimize(module, machine, opt_level)
    code = emit_object(machine, module)
    local = (llvm.Linkage.internal, llvm.Linkage.private)
    defined = [value.name for value in (*module.functions, *module.global_variables)
               if not value.is_declaration and value.linkage not in local]
    return code, external_symbols(module), defined


def split_modules(ir_text: str) -> list[str]:
    """The modules of ``ir_text``: a new one starts at each ``; ModuleID`` line."""
    return [text for text in re.split(r"(?m)^(?=; ModuleID)", ir_text) if text] or [ir_text]


def _on_threads(work, items: list, threads_wanted: int) -> list:
    """``[work(item) for item in items]`` on up to ``threads_wanted`` threads (this one
    included); the first exception raised is raised here, after every thread is done."""
    results: list = [None] * len(items)
    errors: list = []
    pending = iter(range(len(items)))
    claim = threading.Lock()

    def run() -> None:
        while not errors:
            with claim:
                i = next(pending, None)
            if i is None:
                return
            try:
                results[i] = work(items[i])
            except BaseException as error:  # noqa: BLE001 - re-raised by the caller
                errors.append(error)

    helpers = [threading.Thread(target=run, daemon=True)
               for _ in range(min(threads_wanted, len(items)) - 1)]
    for helper in helpers:
        helper.start()
    run()
    for helper in helpers:
        helper.join()
    if errors:
        raise errors[0]
    return results
