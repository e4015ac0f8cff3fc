"""The `tracegrad` command.

    tracegrad --version
    tracegrad --help
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="tracegrad",
        description="tracegrad: PyTorch-style autograd on NumPy, and a compiler to native code.",
        epilog="The compiler's commands (`tracegrad ir`) arrive with the compiler.")
    parser.add_argument("--version", action="version", version=f"tracegrad {__version__}")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
