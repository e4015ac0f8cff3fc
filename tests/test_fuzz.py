"""The differential fuzzer (tests/fuzz.py) in CI: a short seeded slice of
`python -m tests.fuzz`, through the same code, must find nothing; a failure must come out
as a script that runs on its own and shows it; and the bugs the fuzzer found stay fixed.
"""

from __future__ import annotations

import io
import subprocess
import sys

import fuzz
import fuzz_checks
import numpy as np
from child_process import run_python
from program_generator import generate
from tracegrad.compiler.ops import PRIMITIVES

import tracegrad

SLICE_SEED, SLICE_PROGRAMS = 0, 60  # with --kind all: 60 programs, 15 training runs


def test_a_seeded_slice_finds_no_mismatch():
    out = io.StringIO()
    summary = fuzz.fuzz(SLICE_SEED, SLICE_PROGRAMS, kind="all", minimise_seconds=30, out=out)
    assert not summary.failures, out.getvalue()
    assert summary.ran["calls"] == summary.ran["gradients"] == SLICE_PROGRAMS
    assert summary.ran["training"] == SLICE_PROGRAMS // 4
    assert len(summary.optimizers) == len(fuzz.OPTIMIZERS)
    assert summary.coverage.missing() == [], summary.report()


def _first_case_using(word: str, seed: int = 3) -> int:
    return next(i for i in range(1000) if word in generate(fuzz.case_seed(seed, i)).source)


WRONG_SIN = "PRIMITIVES['sin'].kernel = lambda x: np.sin(x) * 1.01"


def test_a_failure_prints_a_standalone_script_that_shows_it(monkeypatch, tmp_path):
    # A deliberately wrong eager kernel: eager and compiled (the LLVM lowering) part.
    monkeypatch.setattr(PRIMITIVES["sin"], "kernel", lambda x: np.sin(x) * 1.01)
    start = _first_case_using(".sin()")
    out = io.StringIO()
    summary = fuzz.fuzz(3, 1, start=start, kind="programs", minimise_seconds=20, out=out)
    assert len(summary.failures) == 1
    _, (category, _), script = summary.failures[0]
    assert category == "value" and "standalone script" in out.getvalue()
    assert "import tracegrad" in script and "def program(" in script
    assert "sin" in script and len(script.splitlines()) < 200
    path = tmp_path / "repro.py"
    path.write_text(script)
    # With the same wrong kernel the script shows the mismatch and exits 1 ...
    prelude = (f"import numpy as np; from tracegrad.compiler.ops import PRIMITIVES; "
               f"{WRONG_SIN}; exec(compile(open({str(path)!r}).read(), 'repro.py', 'exec'), "
               f"{{'__name__': '__main__'}})")
    run = run_python(prelude, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stdout.startswith("MISMATCH call"), run.stdout + run.stderr
    # ... and on the library as it is, it runs clean.
    run = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                         timeout=120, check=False)
    assert (run.returncode, run.stdout.strip()) == (0, "no mismatch"), run.stdout + run.stderr


def _one_input(values):
    def make_inputs(seed, requires_grad=True):
        return [tracegrad.tensor(values, dtype=tracegrad.float64, requires_grad=requires_grad)]

    return make_inputs


def _fd_check(program, make_inputs, tries=3):
    return fuzz_checks.check_gradients(program, make_inputs, 0, fuzz.FD_STEP,
                                       *fuzz.FD_TOLERANCE, tries=tries)


def test_the_finite_difference_check_sees_a_wrong_derivative(monkeypatch):
    def program(x):
        return (x.sin() * x).sum()

    make_inputs = _one_input([0.5, -1.0, 2.0])
    assert _fd_check(program, make_inputs) == ("skipped", 0)
    monkeypatch.setattr(PRIMITIVES["sin"], "vjp", (lambda g, x, out: g * x.cos() * 1.001,))
    assert _fd_check(program, make_inputs)[0] == "gradient"


def test_the_finite_difference_check_skips_a_kink():
    def program(x):
        return (x - 0.25).abs().sum()

    make_inputs = _one_input([0.25 + 1e-7, 1.0])  # a kink 1e-7 away, within the step
    assert _fd_check(program, make_inputs, tries=1) == ("skipped", 1)


def test_rounding_noise_explains_an_ill_conditioned_difference():
    # the sum of a layer_norm over two nearly equal values is 0 up to round-off, which
    # 1/sqrt(var + eps) amplifies: a float32 difference far past the tolerance, and not
    # a mistake (fuzz seed 2, case 390)
    x = tracegrad.tensor([[2.9017830, 2.9017834, 2.9017830, 2.9017834]])

    def loss():
        return tracegrad.nn.functional.layer_norm(x, (4,)).sum()

    spread = fuzz_checks.rounding_noise(loss, loss())
    assert spread > 1e-6
    wrong = loss() + 10 * spread
    assert fuzz_checks.compare("loss", loss(), loss(), 1e-4, 1e-5) is None
    assert fuzz_checks.compare("loss", wrong, loss(), 1e-8, 1e-9, lambda: spread)[0] == "value"
    assert fuzz_checks.compare("loss", loss() + spread, loss(), 1e-8, 1e-9,
                               lambda: spread) is None


# --- minimal reproductions of the bugs the fuzzer found (fixed; kept as regressions) ---

def test_contiguous_makes_a_transposed_or_expanded_tensor_viewable():
    # contiguous() copied with NumPy's order="K", which keeps a transposed layout, so
    # `.view()` after it failed (fuzz seed 1 during development; tracegrad/functions/shaping.py)
    x = tracegrad.arange(6.0).reshape(2, 3)
    assert x.t().contiguous().is_contiguous()
    assert x.t().contiguous().view(6).tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    e = tracegrad.ones(2, 3, requires_grad=True).expand(3, 2, 3).contiguous().view(9, 2)
    assert e.shape == (9, 2)


def test_a_view_sees_a_later_in_place_write_to_its_base():
    # v = t[1:]; t.mul_(2): v's values changed, and its history must too. Eager gave the
    # gradient of the old v, the compiled graph read the old value (fuzz seed 1, case 16).
    def f(a):
        t = a.clone()
        v = t[1:]
        t.mul_(2.0)
        return (v * v).sum() + t.sum()

    compiled = tracegrad.compile(f)
    for call in range(3):
        a = tracegrad.tensor([1.0, 2.0, 3.0], requires_grad=True)
        loss = (compiled if call else f)(a)
        loss.backward()
        assert loss.item() == 64.0
        assert a.grad.tolist() == [2.0, 18.0, 26.0]  # PyTorch: 2 + 8 a for a[1:]


def test_a_transposed_view_sees_a_later_in_place_write_to_its_base():
    def f(a):
        t = a.clone()
        v = t.T
        t.mul_(2.0)
        return (v * v * a.T).sum()

    compiled = tracegrad.compile(f)
    for call in range(3):
        a = tracegrad.full((2, 3), 2.0, requires_grad=True)
        loss = (compiled if call else f)(a)
        loss.backward()
        assert loss.item() == 6 * 32.0  # (2a)^2 a
        assert a.grad.tolist() == [[48.0] * 3] * 2  # d(4a^3)/da = 12 a^2
