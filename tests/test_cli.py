"""The `tracegrad` command: `tracegrad ir` on a small training script (SPEC §4.4).

Most runs are in-process (`main([...])` with capsys); one goes through a subprocess, as a
user would run it. Every mistake must give one line on stderr, exit status 2, and no
traceback.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tracegrad.cli import main, split_target

TRAIN = """\
import sys

import tracegrad as torch
from tracegrad import nn
import tracegrad.nn.functional as F

torch.manual_seed(0)
model = nn.Linear(4, 10)  # 10 classes: `--input i64[8]` draws labels 0..9
opt = torch.optim.SGD(model.parameters(), lr=0.1)


@torch.compile
def loss_fn(x, y):
    return F.cross_entropy(model(x), y)


@torch.compile
def train_step(x, y):
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss


def plain_loss(x, y):
    return F.cross_entropy(model(x), y)


if __name__ == "__main__":
    print("argv", sys.argv)
    x, y = torch.randn(8, 4), torch.randint(0, 10, (8,))
    for _ in range(3):
        train_step(x, y)
        loss_fn(x, y)
"""


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(TRAIN)
    return path


def run(capsys, *argv):
    """(exit status, stdout, stderr) of `tracegrad ARGV`, in-process."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


# --- FILE: run the script, show every compiled function -----------------------------

def test_script_shows_every_compiled_function(capsys, script):
    status, out, err = run(capsys, "ir", script)
    assert status == 0, err
    assert ("# function loss_fn, variant 0: loss_fn(x: f32[8,4], y: i64[8]), grad enabled, "
            "defined at train.py:12\n") in out
    assert "# function train_step, variant 0: train_step(x: f32[8,4], y: i64[8])" in out
    assert "def loss_fn(" in out and "def train_step(" in out
    # the script ran as `python train.py` would, and its printing went to stderr
    assert f"argv ['{script}']" in err and "argv" not in out


def test_header_names_captured_tensors_guards_and_writes(capsys, script):
    status, out, _ = run(capsys, "ir", script)
    assert status == 0
    step = out[out.index("# function train_step"):]
    header = [line for line in step.splitlines() if line.startswith("#")]
    assert "# captured tensors:" in header
    assert any(line.endswith("opt.param_groups[0].params[0]") for line in header)
    assert any("hyperparameter 'lr'" in line for line in header)
    assert "# value guards:" in header
    writes = header[header.index("# writes back:") + 1:]
    assert any(line.endswith("-> opt.param_groups[0].params[0]") for line in writes)
    assert any(line.endswith("-> opt.param_groups[0].params[0].grad") for line in writes)
    loss = out[out.index("# function loss_fn"):out.index("# function train_step")]
    assert "#   x2  model.weight" in loss and "# writes back: none" in loss


def test_every_node_line_has_its_source_line(capsys, script):
    _, out, _ = run(capsys, "ir", script, "--stage", "traced")
    nodes = [line for line in out.splitlines() if " = " in line and not line.startswith("#")]
    assert nodes
    assert all(line.rstrip().endswith(tuple(f"train.py:{n}" for n in range(1, 40)))
               for line in nodes if "constant(" not in line)


def test_functions_compiled_inside_a_function_are_shown(capsys, tmp_path):
    path = tmp_path / "local.py"
    path.write_text(textwrap.dedent("""\
        import tracegrad as torch

        def main():
            double = torch.compile(lambda x: (x * 2).sum())
            double(torch.ones(3))

        main()
        """))
    status, out, err = run(capsys, "ir", path)
    assert status == 0, err
    assert "# function lambda, variant 0" in out


def test_the_tensor_an_argument_is_a_slice_of_is_named_as_its_base(capsys, tmp_path):
    path = tmp_path / "slice.py"
    path.write_text(textwrap.dedent("""\
        import tracegrad as torch

        @torch.compile
        def bump(x):
            x.add_(1.0)

        bump(torch.zeros(4)[1:3])
        """))
    status, out, err = run(capsys, "ir", path, "--stage", "traced")
    assert status == 0, err
    # only the base: the slice is its memory (a view is not written back twice)
    assert "# writes back:\n#   v1 -> x._base\n" in out


@pytest.mark.filterwarnings("ignore:tracegrad.compile")
def test_functions_that_run_eagerly_get_a_note(capsys, tmp_path):
    path = tmp_path / "detour.py"
    path.write_text(textwrap.dedent("""\
        import tracegrad as torch

        good = torch.compile(lambda x: x.sum())
        detour = torch.compile(lambda x: torch.tensor(x.numpy() * 2))
        good(torch.ones(2))
        detour(torch.ones(2))
        """))
    status, out, err = run(capsys, "ir", path)
    assert status == 0
    assert out.count("# function lambda, variant 0") == 1
    assert "tracegrad ir: note: lambda runs eagerly: Tensor.numpy() (a NumPy detour) at " \
           "detour.py:4\n" in err


def test_a_module_is_compiled_and_traced(capsys, tmp_path):
    path = tmp_path / "net.py"
    path.write_text("from tracegrad import nn\nnet = nn.Sequential(nn.Linear(4, 8), nn.ReLU())\n")
    status, out, err = run(capsys, "ir", f"{path}:net", "--input", "f32[5,4]")
    assert status == 0, err
    assert out.startswith("# function Sequential.forward, variant 0: "
                          "Sequential.forward(input: f32[5,4]), grad enabled")
    assert "#   x1  self[0].weight" in out and "-> self[0].weight.grad" in out


def test_script_that_compiles_nothing_exits_1(capsys, tmp_path):
    path = tmp_path / "eager.py"
    path.write_text("import tracegrad as torch\nprint(torch.ones(2).sum())\n")
    status, out, err = run(capsys, "ir", path)
    assert status == 1 and out == ""
    assert err.strip().endswith("never called tracegrad.compile")


# --- FILE:FUNCTION with --input --------------------------------------------------------

def test_function_traced_on_given_inputs(capsys, script):
    status, out, err = run(capsys, "ir", f"{script}:plain_loss", "--input", "f32[64,4]",
                           "--input", "i64[64]")
    assert status == 0, err
    assert out.startswith("# function plain_loss, variant 0: "
                          "plain_loss(x: f32[64,4], y: i64[64]), grad enabled")
    assert "def plain_loss(x: f32[64,4], y: i64[64]" in out
    assert "argv" not in out + err  # the main block did not run


def test_stage_traced_is_forward_only_and_joint_adds_the_backward(capsys, script):
    target = [f"{script}:loss_fn", "--input", "f32[8,4]", "--input", "i64[8]"]
    _, traced, _ = run(capsys, "ir", *target, "--stage", "traced")
    _, joint, _ = run(capsys, "ir", *target, "--stage", "joint")
    assert "grad_out0" not in traced and "log_softmax_backward" not in traced
    assert "grad_out0: f32[]" in joint and "log_softmax_backward(" in joint
    assert "# gradients for backward():" in joint
    assert joint.count("\n    v") > traced.count("\n    v")


def test_requires_grad_inputs_get_gradients(capsys, script):
    status, out, _ = run(capsys, "ir", f"{script}:plain_loss", "--input", "f32[8,4]",
                         "--input", "i64[8]", "--requires-grad")
    assert status == 0
    assert "x: f32[8,4] requires_grad, y: i64[8]" in out  # integers never require grad
    assert "-> x.grad" in out


def test_a_training_step_is_traced_after_its_first_call_made_state(capsys, script):
    status, out, err = run(capsys, "ir", f"{script}:train_step", "--input", "f32[8,4]",
                           "--input", "i64[8]")
    assert status == 0, err
    assert "(the function calls backward() itself: same as traced)" in out


# --- formats and --out -----------------------------------------------------------------

def test_dot_format(capsys, script):
    status, out, _ = run(capsys, "ir", f"{script}:loss_fn", "--input", "f32[8,4]",
                         "--input", "i64[8]", "--format", "dot")
    assert status == 0
    assert out.startswith('digraph "loss_fn" {')
    assert "  // function loss_fn, variant 0" in out and out.rstrip().endswith("}")


def test_out_writes_a_file_and_prints_its_path(capsys, script, tmp_path):
    target = tmp_path / "ir.txt"
    status, out, _ = run(capsys, "ir", script, "--out", target)
    assert status == 0
    assert out == f"{target}\n"
    text = target.read_text()
    assert "# function loss_fn" in text and "# function train_step" in text


def test_out_with_several_graphs_writes_one_file_each(capsys, script, tmp_path):
    status, out, _ = run(capsys, "ir", script, "--format", "dot", "--out", tmp_path / "g.dot")
    assert status == 0
    paths = [tmp_path / "g-loss_fn-0.dot", tmp_path / "g-train_step-0.dot"]
    assert out.split() == [str(p) for p in paths]
    assert all(p.read_text().startswith("digraph") for p in paths)


def test_svg_needs_graphviz(capsys, script, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    status, out, err = run(capsys, "ir", script, "--format", "svg")
    assert status == 2 and out == ""
    assert err == ("tracegrad ir: --format svg needs Graphviz (the `dot` program on PATH); "
                    "install graphviz, or use --format dot\n")


@pytest.mark.skipif(sys.platform == "win32", reason="the stand-in `dot` is a shell script")
def test_svg_is_drawn_by_dot(capsys, script, monkeypatch, tmp_path):
    fake = tmp_path / "bin" / "dot"  # a stand-in for Graphviz: wraps what it reads
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nread -r first\necho "<svg>$first</svg>"\n')  # builtins only
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    status, out, err = run(capsys, "ir", f"{script}:loss_fn", "--input", "f32[8,4]",
                           "--input", "i64[8]", "--format", "svg")
    assert status == 0, err
    assert out == '<svg>digraph "loss_fn" {</svg>\n'


# --- mistakes: one line on stderr, status 2 --------------------------------------------

ERRORS = {
    "missing file": (["ir", "{dir}/nope.py"], "tracegrad ir: no such file: {dir}/nope.py"),
    "bad function": (["ir", "{script}:lossfn"],
                     ("tracegrad ir: {script} has no function 'lossfn' (functions found: "
                      "model, loss_fn, train_step, plain_loss)")),
    "bad input type": (["ir", "{script}:loss_fn", "--input", "float[8,4]", "--input", "i64[8]"],
                       ("tracegrad ir: --input 'float[8,4]' is not a type like f32[64,784] "
                        "(element types: f32, f64, i32, i64, bool)")),
    "too few inputs": (["ir", "{script}:loss_fn", "--input", "f32[8,4]"],
                       "tracegrad ir: loss_fn(x, y) cannot be called with 1 --input"),
    "unknown stage": (["ir", "{script}", "--stage", "lowered"],
                      ("tracegrad ir: unknown stage 'lowered' "
                       "(stages: traced, joint, optimized, scheduled, llvm, asm)")),
    "unknown format": (["ir", "{script}", "--format", "png"],
                       "tracegrad ir: argument --format: invalid choice: 'png'"),
    "input without function": (["ir", "{script}", "--input", "f32[3]"],
                               "tracegrad ir: --input and --requires-grad need FILE:FUNCTION"),
    "script exits": (["ir", "{dir}/quits.py"], "tracegrad ir: the script exited with status 3"),
    "script raises": (["ir", "{dir}/bad.py"],
                      "tracegrad ir: the script raised ValueError: bad learning rate: -1"),
    "function raises": (["ir", "{script}:loss_fn", "--input", "f32[8,5]", "--input", "i64[8]"],
                        "tracegrad ir: loss_fn raised ShapeError: mat1 and mat2 shapes "),
}


@pytest.mark.parametrize("case", ERRORS)
def test_mistakes_give_one_line_and_status_2(capsys, script, tmp_path, case):
    (tmp_path / "bad.py").write_text("raise ValueError('bad learning rate: -1')\n")
    (tmp_path / "quits.py").write_text("import sys\nsys.exit(3)\n")
    argv, expected = ERRORS[case]
    fill = {"dir": tmp_path, "script": script}
    status, out, err = run(capsys, *(a.format(**fill) for a in argv))
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(expected.format(**fill))


def test_version_still_works(capsys):
    import tracegrad

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"tracegrad {tracegrad.__version__}"


def test_split_target():
    assert split_target("train.py:step") == ("train.py", "step")
    assert split_target("train.py:model.forward") == ("train.py", "model.forward")
    assert split_target("train.py") == ("train.py", None)
    assert split_target("C:\\work\\train.py") == ("C:\\work\\train.py", None)


# --- as a user runs it -----------------------------------------------------------------

def test_through_a_subprocess(script, tmp_path):
    command = [sys.executable, "-m", "tracegrad.cli", "ir"]
    done = subprocess.run([*command, str(script), "--stage", "traced"], capture_output=True,
                          text=True, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    assert "# function train_step, variant 0" in done.stdout
    assert "def train_step(x: f32[8,4], y: i64[8]" in done.stdout
    failed = subprocess.run([*command, f"{script}:loss_fn", "--input", "f32[8"],
                            capture_output=True, text=True, cwd=tmp_path, check=False)
    assert failed.returncode == 2 and failed.stdout == ""
    assert failed.stderr == ("tracegrad ir: --input 'f32[8' is not a type like f32[64,784] "
                              "(element types: f32, f64, i32, i64, bool)\n")


def test_llvm_and_asm_stages_show_native_code(tmp_path, capsys):
    from tracegrad.cli import main

    script = tmp_path / "native.py"
    script.write_text("import tracegrad as torch\n"
                      "f = torch.compile(lambda x: (x * 2 + 1).relu())\n"
                      "f(torch.ones(64)); f(torch.ones(64))\n")
    assert main(["ir", str(script), "--stage", "llvm"]) == 0
    llvm = capsys.readouterr().out
    assert "before LLVM's optimiser" in llvm and "after LLVM's optimiser" in llvm
    assert "define" in llvm
    assert main(["ir", str(script), "--stage", "asm"]) == 0
    assert "host assembly" in capsys.readouterr().out
