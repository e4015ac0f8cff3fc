"""Every public function, class, method and property has a docstring with an example, and
the examples print what they say (STYLE: "Every public function has a docstring with a
small runnable example").

`public_api.public_objects()` lists the public API (see its docstring for what counts);
each object's examples run as one doctest, in a copy of its module's namespace (as
`doctest.testmod` would), so a failure names the object. Objects that only inherit a
docstring (a layer's `forward`) are checked where the docstring is written. The public
modules' own docstrings (`tracegrad`, `tracegrad.nn`, ...) run too, and so do the
examples of the internal modules that have them (`INTERNAL_MODULES`), whole.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import io

import pytest
from public_api import MODULES, lacking_examples, public_objects
from tracegrad.compiler.pipeline import PASSES

OPTIONS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
ENTRIES = public_objects()
WITH_EXAMPLES = [e for e in ENTRIES if e.own_doc and ">>>" in e.own_doc]
# Modules outside the public API whose docstrings show how they work by example.
INTERNAL_MODULES = [
    *(f"tracegrad.compiler.lower.{name}" for name in (
        "index", "expr", "views", "lowering", "plan", "program", "reduce_loops", "execute",
        "scalar", "nests", "row_groups", "stored_program")),
    "tracegrad.compiler.passes", "tracegrad.compiler.pipeline",
    *(f"tracegrad.compiler.passes.{name}" for name, _ in PASSES),
    *(f"tracegrad.compiler.{name}" for name in (
        "fuse", "schedule", "memory_plan", "run_schedule", "remat", "dag")),
    *(f"tracegrad.runtime.{name}" for name in (
        "once", "threads", "cache", "engine", "buffers", "llvm_steps", "side_by_side",
        "compile_child")),
    "tracegrad.native_rows",
]


def _doctest(entry) -> doctest.DocTest:
    target = entry.obj.fget if isinstance(entry.obj, property) else entry.obj
    target = getattr(target, "__func__", target)  # classmethod, staticmethod
    module = inspect.getmodule(target)
    finder = doctest.DocTestFinder(recurse=False)
    (test,) = finder.find(entry.obj if isinstance(entry.obj, property) else target,
                          entry.name, module=module, globs=dict(vars(module)))
    return test


def _run(test: doctest.DocTest) -> None:
    report = io.StringIO()
    result = doctest.DocTestRunner(optionflags=OPTIONS).run(test, out=report.write)
    assert result.attempted, f"{test.name}: no example found"
    assert not result.failed, report.getvalue()


@pytest.mark.filterwarnings("ignore:Anomaly Detection has been enabled")
@pytest.mark.parametrize("entry", WITH_EXAMPLES, ids=lambda e: e.name)
def test_examples_print_what_they_show(entry):
    _run(_doctest(entry))


def _modules_with_examples_of_their_own() -> list:
    """Every module of the package whose own docstring shows an example."""
    import pkgutil

    import tracegrad

    return [info.name for info in pkgutil.walk_packages(tracegrad.__path__, "tracegrad.")
            if ">>>" in (importlib.import_module(info.name).__doc__ or "")]


@pytest.mark.filterwarnings("ignore:Anomaly Detection has been enabled")
@pytest.mark.parametrize("name", sorted({*MODULES, *_modules_with_examples_of_their_own()}))
def test_module_examples_print_what_they_show(name):
    module = importlib.import_module(name)
    assert module.__doc__ and ">>>" in module.__doc__, f"{name}: no example"
    _run(doctest.DocTestParser().get_doctest(module.__doc__, dict(vars(module)), name,
                                             module.__file__, 0))


@pytest.mark.parametrize("name", INTERNAL_MODULES)
def test_internal_module_examples_print_what_they_show(name):
    found = doctest.testmod(importlib.import_module(name))
    assert found.attempted, f"{name}: no example found"
    assert not found.failed


def test_every_public_object_has_an_example():
    missing = lacking_examples()
    assert not missing, "public objects without a docstring or a `>>>` example:\n" + "\n".join(
        f"  {name}: {what}" for name, what in missing)


def test_the_public_api_is_found():
    names = {name for entry in ENTRIES for name in entry.names}
    for name in ("tracegrad.tensor", "tracegrad.Tensor.backward", "tracegrad.Tensor.shape",
                 "tracegrad.autograd.grad", "tracegrad.autograd.Function.apply",
                 "tracegrad.nn.Module.parameters", "tracegrad.nn.functional.cross_entropy",
                 "tracegrad.nn.init.xavier_uniform_", "tracegrad.nn.utils.clip_grad_norm_",
                 "tracegrad.optim.Adam", "tracegrad.optim.Optimizer.step",
                 "tracegrad.Tensor.exp_"):
        assert name in names, name
