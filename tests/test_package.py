"""The package as a whole: layering (SPEC §2), import cost, the CLI, the examples."""

import ast
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from child_process import run_python

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _imports(folder: str):
    for path in (ROOT / folder).rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                level = "." * node.level
                yield path, f"{level}{node.module or ''}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    yield path, alias.name


def test_runtime_knows_neither_compiler_nor_front_end():
    for path, module in _imports("runtime"):
        assert not module.startswith(("tracegrad", "compiler", "..")), (path, module)


def test_compiler_does_not_know_the_front_end():
    """compiler/ may use the runtime (to run what it lowers), never the front end."""
    for path, module in _imports("compiler"):
        if module.startswith(("tracegrad.runtime", "...runtime", "..runtime")):
            continue
        assert not module.startswith("tracegrad"), (path, module)
        assert not module.startswith("..."), (path, module)  # above tracegrad.compiler


def test_import_loads_no_llvm_and_no_networkx():
    code = ("import sys, tracegrad; print(sorted(m for m in sys.modules if m.startswith("
            "('llvmlite', 'networkx', 'tracegrad.compiler.lower'))))")
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_one_import_name():
    import tracegrad.compiler.ops
    import tracegrad.runtime

    import tracegrad

    assert tracegrad.compiler.ops.PRIMITIVES
    assert tracegrad.runtime.__name__ == "tracegrad.runtime"


def test_cli_version_and_help():
    import tracegrad
    from tracegrad.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    out = subprocess.run([sys.executable, "-m", "tracegrad.cli", "--version"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"tracegrad {tracegrad.__version__}"


def test_autograd_tour_prints_what_pytorch_prints():
    """The tour's output equals PyTorch's for the same script (bar object addresses)."""
    script = ROOT / "examples" / "autograd_tour.py"
    ours = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          check=True).stdout
    assert "tensor(21.)" in ours and "tensor(16.)" in ours
    pytest.importorskip("torch")
    source = script.read_text().replace("import tracegrad as torch", "import torch")
    theirs = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                            check=True, env={**os.environ, "TORCH_USE_RTLD_GLOBAL": "1"}).stdout

    def strip(text):
        return [line for line in text.splitlines() if " object at 0x" not in line]

    assert strip(ours) == strip(theirs)


def test_training_demo_compiles_and_writes_the_ir(tmp_path):
    """`make demo`'s training: eager and compiled agree, and every IR stage is written."""
    script = ROOT / "examples" / "train_mlp.py"
    out = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True,
                         text=True, check=True).stdout
    assert "faster per step" in out and "predicts identically" in out
    stages = ["traced", "joint", "optimized", "scheduled", "llvm", "asm"]
    for stage in stages:
        [path] = tmp_path.glob(f"train_step.{stage}.*")
        assert str(path) in out
        assert path.read_text().startswith("# function train_step, variant 0")
    assert "define i64 @\"program\"" in next(tmp_path.glob("train_step.llvm.*")).read_text()


def test_fused_primitives_equal_their_decompositions():
    from tracegrad.compiler.ops import PRIMITIVES
    from tracegrad.compiler.ops.fused import DECOMPOSITIONS

    import tracegrad as torch

    rng = np.random.default_rng(0)
    for name, decomposition in DECOMPOSITIONS.items():
        arrays, attrs = PRIMITIVES[name].sample(rng)
        x = torch.tensor(arrays[0], dtype=torch.float64)
        fused = PRIMITIVES[name](x, **attrs)
        np.testing.assert_allclose(fused.numpy(), decomposition(x, **attrs).numpy(),
                                   rtol=1e-12, atol=1e-12, err_msg=name)
