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


def check_golden(path, text: str, request) -> None:
    """Compare `text` with the golden file at `path` (a pathlib.Path), or rewrite the file
    under `--update-golden`."""
    import pytest

    if request.config.getoption("--update-golden", default=False):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if not path.exists():
        pytest.fail(f"{path} is missing: run pytest --update-golden to write it")
    assert text == path.read_text(), f"{path.name} changed; pytest --update-golden accepts it"
