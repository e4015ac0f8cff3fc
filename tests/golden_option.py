"""The `--update-golden` option: rewrite the golden files under tests/golden/ instead of
comparing against them. pytest reads options only from conftest files and plugins, so
tests/conftest.py imports this hook:

    from golden_option import pytest_addoption  # noqa: F401

(or, without that line: `pytest -p golden_option --update-golden` with tests/ on the path).
"""

from __future__ import annotations


def pytest_addoption(parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/golden/ files from the current output")
