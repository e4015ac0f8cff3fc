"""The `tracegrad` command.

    tracegrad --version
    tracegrad ir train.py                                  # every compiled function
    tracegrad ir model.py:loss --input f32[64,784] --input i64[64] --stage traced
    tracegrad ir train.py --format dot --out step.dot

Mistakes (a missing file, a bad --input, an exception in the script) are reported in one
line on stderr with exit status 2; a script that compiles nothing gives status 1.
"""

from __future__ import annotations

import argparse
import sys

IR_USAGE = ("tracegrad ir FILE[:FUNCTION] [--stage STAGE] [--format text|dot|svg] "
            "[--out PATH]\n       [--input TYPE ...] [--requires-grad]")
IR_DESCRIPTION = """\
Print the IR of compiled functions, one block per variant: what its inputs are
(arguments, captured tensors), its value guards, what it writes back, then the graph
with the source line of every node.

  FILE           run FILE as __main__ (its own output goes to stderr) and show every
                 function it compiled
  FILE:FUNCTION  import FILE (its main block does not run), compile FUNCTION and call
                 it on inputs of the --input types"""


class UsageError(Exception):
    """argparse found a mistake in the command line."""


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line, not usage text and a message."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .ir_dump import FORMATS, STAGES

    parser = Parser(
        prog="tracegrad",
        description="tracegrad: PyTorch-style autograd on NumPy, and a compiler to native code.")
    parser.add_argument("--version", action="version", version=f"tracegrad {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    stages = "\n".join(f"  {s.name:<10} {s.what}" for s in STAGES)
    ir = commands.add_parser(
        "ir", help="print the IR of a script's compiled functions",
        usage=IR_USAGE, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=IR_DESCRIPTION, epilog=f"stages:\n{stages}")
    ir.add_argument("target", metavar="FILE[:FUNCTION]")
    ir.add_argument("--stage", default="joint", metavar="STAGE",
                    help="the pipeline stage to print (default: joint)")
    ir.add_argument("--format", default="text", choices=FORMATS,
                    help="text (default), Graphviz dot, or svg drawn by Graphviz")
    ir.add_argument("--out", metavar="PATH", help="write to PATH instead of stdout; with "
                    "several graphs in dot or svg, one file each: PATH-NAME-K.ext")
    ir.add_argument("--input", action="append", default=[], metavar="TYPE",
                    help="an argument of FUNCTION, like f32[64,784] or i64[64] (floats are "
                         "standard normal, integers 0..9, from a fixed seed); repeat per "
                         "argument")
    ir.add_argument("--requires-grad", action="store_true",
                    help="make the float inputs require grad (the joint stage then holds the "
                         "backward)")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "ir":
            return run_ir(args)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    parser.print_help()
    return 0


def run_ir(args) -> int:
    """`tracegrad ir`: dump, or print one line saying what went wrong."""
    from . import ir_dump, ir_sources

    try:
        ir_dump.resolve_stage(args.stage)
        ir_dump.check_format(args.format)
        path, function = split_target(args.target)
        if function is None:
            if args.input or args.requires_grad:
                raise ir_dump.IRCommandError("--input and --requires-grad need FILE:FUNCTION")
            found = ir_sources.run_script(path)
        else:
            found = [ir_sources.trace_function(path, function, args.input, args.requires_grad)]
        functions = ir_dump.with_variants(found, path)
        for note in ir_dump.notes(found):
            print(f"tracegrad ir: note: {note}", file=sys.stderr)
        sys.stdout.write(ir_dump.dump(functions, args.stage, args.format, args.out))
    except ir_dump.IRCommandError as exc:
        print(f"tracegrad ir: {exc}", file=sys.stderr)
        return exc.status
    return 0


def split_target(target: str) -> tuple[str, str | None]:
    """`"train.py:step"` -> `("train.py", "step")`; a plain file name has no function.

    >>> split_target("train.py:model.forward"), split_target("train.py")
    (('train.py', 'model.forward'), ('train.py', None))
    """
    path, colon, function = target.rpartition(":")
    if colon and path and all(part.isidentifier() for part in function.split(".")):
        return path, function
    return target, None


if __name__ == "__main__":
    sys.exit(main())
