"""A failure of the differential fuzzer (tests/fuzz.py): made smaller, printed as a script.

`minimise` shrinks a failing case while it fails the same way: fewer calls or training
steps, fewer body lines and outputs, definitions replaced by a name they read, fewer
inputs. `failure_script` prints a case as a standalone script: the program, the source
of its check (fuzz_checks.py) and a call of it.
"""

from __future__ import annotations

import inspect
import re
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from fuzz_checks import CHECKS, check_graphs, compare, rounding_noise
from program_generator import NAME, unread_temps

if TYPE_CHECKING:
    from fuzz import Case


def minimise(case: Case, category: str, run, seconds: float = 120.0) -> Case:
    """A smaller case that `run(case)` reports failing with the same `category`: fewer
    calls or steps, fewer body lines, fewer outputs, fewer inputs (each tried while time
    is left)."""
    deadline = time.monotonic() + seconds

    def still_fails(candidate: Case) -> bool:
        if time.monotonic() > deadline:
            return False
        result = run(candidate)
        return result is not None and result[0] == category

    case = _fewer_calls(case, still_fails)
    outputs = list(case.program.outputs)
    case = _fewer_lines(case, still_fails, lambda lines: _auto_outputs(lines, outputs))
    for output in case.program.outputs:
        candidate = _with_lines(case, case.program.lines, [output])
        if candidate is not None and still_fails(candidate):
            case = candidate
            break
    chosen = list(case.program.outputs)
    case = _fewer_lines(case, still_fails, lambda lines: chosen)
    case = _simpler_definitions(case, still_fails, chosen)
    case = _fewer_lines(case, still_fails, lambda lines: chosen)
    candidate = _with_lines(case, case.program.lines, chosen, keep_inputs=False)
    if candidate is not None and candidate.program.inputs != case.program.inputs and \
            still_fails(candidate):
        case = candidate
    return case


def _fewer_calls(case: Case, still_fails) -> Case:
    if case.kind == "training":
        for steps in range(1, case.options["steps"]):
            candidate = replace(case, options={**case.options, "steps": steps})
            if still_fails(candidate):
                return candidate
        return case
    if case.kind != "calls":
        return case
    calls = case.options["calls"]
    for k in range(1, len(calls)):
        if still_fails(replace(case, options={**case.options, "calls": calls[:k]})):
            calls = calls[:k]
            break
    for k in range(len(calls) - 2, -1, -1):  # each call but the failing last one
        fewer = calls[:k] + calls[k + 1:]
        if fewer[0][1] in ("again", "accumulate"):
            continue
        if still_fails(replace(case, options={**case.options, "calls": fewer})):
            calls = fewer
    return replace(case, options={**case.options, "calls": calls})


def _auto_outputs(lines: list, original: list) -> list:
    """The temporaries no line reads, and those of `original` still defined."""
    defined = {re.match(r"\w+", line).group() for line in lines}
    found = unread_temps(lines)
    return found + [o for o in original if o in defined and o not in found]


def _groups(lines: list) -> list:
    """The body as groups of line numbers: a definition with the in-place updates of its
    name (dropped together; the lines keep their order)."""
    groups, owner = [], {}
    for k, line in enumerate(lines):
        name = re.match(r"\w+", line).group()
        if re.match(rf"{name} = ", line) and name not in owner:
            owner[name] = len(groups)
            groups.append([k])
        else:
            groups[owner.get(name, len(groups) - 1)].append(k)
    return groups


def _with_lines(case: Case, lines: list, outputs: list, keep_inputs: bool = True):
    """`case` with the program's body `lines`, or None if that is no program."""
    if not lines or not outputs:
        return None
    try:
        program = case.program.with_lines(lines, outputs, keep_inputs)
    except Exception:  # noqa: BLE001  (a line reads a name no longer defined: no program)
        return None
    options = dict(case.options)
    if "requires_grad" in options:  # one flag per float input that is left
        flags = dict(zip((s.name for s in case.program.float_inputs), options["requires_grad"]))
        options["requires_grad"] = [flags[s.name] for s in program.float_inputs]
    return replace(case, program=program, options=options)


def _fewer_lines(case: Case, still_fails, outputs_of) -> Case:
    body = case.program.lines
    groups = _groups(body)
    changed = True
    while changed:
        changed = False
        for g in range(len(groups) - 1, -1, -1):
            fewer = groups[:g] + groups[g + 1:]
            lines = [body[k] for k in sorted(k for group in fewer for k in group)]
            candidate = _with_lines(case, lines, outputs_of(lines))
            if candidate is not None and still_fails(candidate):
                groups, case, changed = fewer, candidate, True
    return case


def _simpler_definitions(case: Case, still_fails, outputs: list) -> Case:
    """Each definition `t5 = f(t2, x0)` replaced by one of the names it reads (`t5 = t2`)
    where that still fails: the lines that made the bypassed value may then go."""
    lines = list(case.program.lines)
    for k, line in enumerate(lines):
        target, _, expr = line.partition(" = ")
        if not expr or not NAME.fullmatch(target):
            continue
        for name in dict.fromkeys(NAME.findall(expr)):
            candidate = _with_lines(case, lines[:k] + [f"{target} = {name}"] + lines[k + 1:],
                                    outputs)
            if candidate is not None and still_fails(candidate):
                case, lines = candidate, list(candidate.program.lines)
                break
    return case


# --- the failure script -----------------------------------------------------------------

def failure_script(case: Case, failure) -> str:
    """A standalone script that replays `case`: the program, the check's source and a
    call of it; it prints the mismatch and exits 1, or prints "no mismatch"."""
    check = CHECKS[case.kind]
    args = ", ".join(f"{key}={value!r}" for key, value in case.options.items())
    call = f"{check.__name__}(program, make_inputs, {args})"
    functions = [compare, rounding_noise, check]
    if failure[0] == "ir":
        functions.append(check_graphs)
        call = (f"{check.__name__}(program, make_inputs, {args}, compiled_out=compiled) "
                f"or check_graphs(compiled)")
    header = [f"# tracegrad fuzz failure ({case.kind}): {failure[1].splitlines()[0]}"[:300],
              f"# found by: {case.origin}" if case.origin else "#",
              "# run: python this_file.py (exit status 1: the mismatch is reproduced)"]
    main = ['if __name__ == "__main__":',
            "    compiled = []",
            f"    problem = {call}",
            '    if problem is None or problem[0] == "skipped":',
            '        print("no mismatch")',
            "        raise SystemExit(0)",
            '    print("MISMATCH", problem[1])',
            "    raise SystemExit(1)"]
    return "\n".join([*header, case.program.source, "import tracegrad", "", "",
                      *("\n".join([inspect.getsource(f), ""]) for f in functions),
                      *main, ""])
