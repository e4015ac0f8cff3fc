"""Tensor text must be exactly PyTorch's repr (dtype prefix 'tracegrad.' instead of 'torch.').

Golden cases spell the expected text out, so they run without torch. When torch is installed,
a few hundred generated arrays (every dtype, 0-D to 4-D, summarized sizes, magnitudes from
1e-8 to 1e12, nan/inf/-0.) are printed by both and compared, also under random print options
and with real requires_grad / grad_fn suffixes.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

try:
    from tracegrad.printing import format_tensor, printoptions
except ImportError:  # the rest of the package may not exist yet; printing.py stands alone
    _path = Path(__file__).resolve().parents[1] / "tracegrad" / "printing.py"
    _spec = importlib.util.spec_from_file_location("tracegrad_printing_standalone", _path)
    _printing = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_printing)
    format_tensor, printoptions = _printing.format_tensor, _printing.printoptions

nan, inf = math.nan, math.inf
f32, f64, i64, i32 = np.float32, np.float64, np.int64, np.int32
REQUIRES_GRAD = ("requires_grad=True",)


def _array(values, dtype, shape=None):
    array = np.array(values, dtype=dtype)
    return array if shape is None else array.reshape(shape)


# (array, dtype name, suffixes, print options, expected text)
GOLDEN = [
    (_array(3, f32), "float32", (), {}, "tensor(3.)"),
    (_array(3, i64), "int64", (), {}, "tensor(3)"),
    (_array(True, bool), "bool", (), {}, "tensor(True)"),
    (_array(-0.0, f32), "float32", (), {}, "tensor(-0.)"),
    (_array(0.5, f64), "float64", (), {}, "tensor(0.5000, dtype=tracegrad.float64)"),
    (_array([1, 2], f32), "float32", (), {}, "tensor([1., 2.])"),
    (_array([1, 2.5], f32), "float32", (), {}, "tensor([1.0000, 2.5000])"),
    (_array([0.1, 0.2], f32), "float32", (), {}, "tensor([0.1000, 0.2000])"),
    (_array([1e10, 1], f32), "float32", (), {}, "tensor([1.0000e+10, 1.0000e+00])"),
    (_array([1e-5, 1], f32), "float32", (), {}, "tensor([1.0000e-05, 1.0000e+00])"),
    (_array([1, 1000], f32), "float32", (), {}, "tensor([   1., 1000.])"),
    (_array([1, 1001], f32), "float32", (), {}, "tensor([1.0000e+00, 1.0010e+03])"),
    (_array([nan, 1], f32), "float32", (), {}, "tensor([nan, 1.])"),
    (_array([-inf, 1.5], f32), "float32", (), {}, "tensor([  -inf, 1.5000])"),
    (_array([nan, inf, -inf], f32), "float32", (), {}, "tensor([nan, inf, -inf])"),
    (_array([-0.0, 0, 2], f32), "float32", (), {}, "tensor([-0., 0., 2.])"),
    (_array([0.99999, -1], f32), "float32", (), {}, "tensor([ 1.0000, -1.0000])"),
    (_array([-5, 10, 300], i64), "int64", (), {}, "tensor([ -5,  10, 300])"),
    (_array([1, 2], i32), "int32", (), {}, "tensor([1, 2], dtype=tracegrad.int32)"),
    (_array([True, False], bool), "bool", (), {}, "tensor([ True, False])"),
    (_array([], f32), "float32", (), {}, "tensor([])"),
    (_array([], i64), "int64", (), {}, "tensor([], dtype=tracegrad.int64)"),
    (np.zeros((0, 3), f32), "float32", (), {}, "tensor([], size=(0, 3))"),
    (np.zeros((2, 0), bool), "bool", (), {}, "tensor([], size=(2, 0), dtype=tracegrad.bool)"),
    (_array([1, 2], f32), "float32", REQUIRES_GRAD, {}, "tensor([1., 2.], requires_grad=True)"),
    (
        _array(range(4), f64, (2, 2)),
        "float64",
        ("grad_fn=<MulBackward0>",),
        {},
        "tensor([[0., 1.],\n        [2., 3.]], dtype=tracegrad.float64, grad_fn=<MulBackward0>)",
    ),
    (
        _array(range(8), i64, (2, 2, 2)),
        "int64",
        (),
        {},
        "tensor([[[0, 1],\n         [2, 3]],\n\n        [[4, 5],\n         [6, 7]]])",
    ),
    (
        _array(range(20), i64),
        "int64",
        (),
        {},
        (
            "tensor([ 0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14, 15, 16, 17,\n"
            "        18, 19])"
        ),
    ),
    (
        _array(range(18), f32) / 7,
        "float32",
        REQUIRES_GRAD,
        {},
        (
            "tensor([0.0000, 0.1429, 0.2857, 0.4286, 0.5714, 0.7143, 0.8571, 1.0000, 1.1429,\n"
            "        1.2857, 1.4286, 1.5714, 1.7143, 1.8571, 2.0000, 2.1429, 2.2857, 2.4286],\n"
            "       requires_grad=True)"
        ),
    ),
    (
        _array(range(2000), i64),
        "int64",
        (),
        {},
        "tensor([   0,    1,    2,  ..., 1997, 1998, 1999])",
    ),
    (
        _array(range(1500), f32, (30, 50)),
        "float32",
        (),
        {},
        (
            "tensor([[0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 4.7000e+01, 4.8000e+01,\n"
            "         4.9000e+01],\n"
            "        [5.0000e+01, 5.1000e+01, 5.2000e+01,  ..., 9.7000e+01, 9.8000e+01,\n"
            "         9.9000e+01],\n"
            "        [1.0000e+02, 1.0100e+02, 1.0200e+02,  ..., 1.4700e+02, 1.4800e+02,\n"
            "         1.4900e+02],\n"
            "        ...,\n"
            "        [1.3500e+03, 1.3510e+03, 1.3520e+03,  ..., 1.3970e+03, 1.3980e+03,\n"
            "         1.3990e+03],\n"
            "        [1.4000e+03, 1.4010e+03, 1.4020e+03,  ..., 1.4470e+03, 1.4480e+03,\n"
            "         1.4490e+03],\n"
            "        [1.4500e+03, 1.4510e+03, 1.4520e+03,  ..., 1.4970e+03, 1.4980e+03,\n"
            "         1.4990e+03]])"
        ),
    ),
    (_array([1.12345], f32), "float32", (), {"precision": 2}, "tensor([1.12])"),
    (_array([1, 2], f32), "float32", (), {"sci_mode": True}, "tensor([1.0000e+00, 2.0000e+00])"),
    (
        _array([1e-5, 1e5], f32),
        "float32",
        (),
        {"sci_mode": False},
        "tensor([     0.0000, 100000.0000])",
    ),
    (_array(range(10), i64), "int64", (), {"threshold": 5}, "tensor([0, 1, 2,  ..., 7, 8, 9])"),
    (
        _array(range(10), i64),
        "int64",
        (),
        {"threshold": 5, "edgeitems": 0},
        "tensor([...], size=(10,))",
    ),
    (_array([1, 2], f32), "float32", (), {"edgeitems": 0}, "tensor([1., 2.], size=(2,))"),
    (
        _array(range(6), i64),
        "int64",
        (),
        {"linewidth": 12},
        "tensor([0,\n        1,\n        2,\n        3,\n        4,\n        5])",
    ),
]


@pytest.mark.parametrize(
    "array, dtype_name, suffixes, options, expected",
    GOLDEN,
    ids=[repr(case[-1].split("\n")[0])[:60] for case in GOLDEN],
)
def test_golden(array, dtype_name, suffixes, options, expected):
    with printoptions(**options):
        assert format_tensor(array, dtype_name, suffixes) == expected


def test_unknown_dtype_is_rejected():
    with pytest.raises(ValueError, match="float16"):
        format_tensor(np.zeros(2, np.float16), "float16")


def test_printoptions_restores_previous_options():
    array = _array([1.12345], f32)
    with printoptions(precision=1):
        assert format_tensor(array, "float32") == "tensor([1.1])"
    assert format_tensor(array, "float32") == "tensor([1.1235])"


# ---------------------------------------------------------------- comparison with torch

NUMPY_DTYPES = {"float32": f32, "float64": f64, "int64": i64, "int32": i32, "bool": np.bool_}
SUMMARIZED_SHAPES = [(2000,), (1001,), (30, 50), (3, 4, 5, 6), (7, 7, 7, 7), (2, 600), (1100, 1)]
ODD_SHAPES = [(), (0,), (0, 3), (2, 0, 4), (1,), (1, 1, 1, 1)]
SPECIAL_FLOATS = [nan, inf, -inf, 0.0, -0.0]
# how the torch tensor is made, and the suffix that its repr then ends with
VARIANTS = {
    "plain": (),
    "leaf": REQUIRES_GRAD,
    "mul": ("grad_fn=<MulBackward0>",),
    "add": ("grad_fn=<AddBackward0>",),
}


def random_shape(rng: np.random.Generator) -> tuple[int, ...]:
    """Mostly small shapes up to 4-D, sometimes large enough to be summarized, or empty."""
    pick = rng.random()
    if pick < 0.2:
        return SUMMARIZED_SHAPES[rng.integers(len(SUMMARIZED_SHAPES))]
    if pick < 0.27:
        return ODD_SHAPES[rng.integers(len(ODD_SHAPES))]
    ndim = int(rng.integers(0, 5))
    longest_side = (1, 40, 12, 6, 4)[ndim]
    return tuple(int(side) for side in rng.integers(1, longest_side + 1, size=ndim))


def random_floats(rng: np.random.Generator, size: int) -> np.ndarray:
    """Floats whose spread exercises every notation torch chooses between."""
    kind = rng.integers(5)
    if kind == 0:  # magnitudes spread between two random powers of ten in 1e-8 .. 1e12
        low, high = np.sort(rng.uniform(-8, 12, size=2))
        values = 10 ** rng.uniform(low, high, size) * rng.choice([-1, 1], size)
    elif kind == 1:  # whole numbers, printed as '3.' until they get too large
        values = rng.integers(-(10 ** rng.integers(1, 11)), 10 ** rng.integers(1, 11), size)
    elif kind == 2:  # few decimals, where rounding to 4 places can change the width
        values = np.round(rng.standard_normal(size) * 10.0 ** rng.integers(-2, 4), rng.integers(6))
    elif kind == 3:  # near the thresholds of scientific notation
        values = rng.choice([1e-4, 9.9999e-5, 1e8, 1.00001e8, 999.99995, 0.99995, 1000.0], size)
    else:
        values = rng.standard_normal(size)
    values = np.asarray(values, dtype=np.float64)
    if rng.random() < 0.35:  # sprinkle nan, inf, zeros; sometimes replace everything
        share = 1.0 if rng.random() < 0.15 else rng.random()
        chosen = rng.random(size) < share
        values[chosen] = rng.choice(SPECIAL_FLOATS, int(chosen.sum()))
    return values


def random_case(seed: int) -> tuple[np.ndarray, str, str]:
    """An array, its dtype name and how the torch tensor is made, all chosen by ``seed``."""
    rng = np.random.default_rng(seed)
    dtype_name = str(rng.choice(list(NUMPY_DTYPES)))
    shape = random_shape(rng)
    size = math.prod(shape)
    if dtype_name == "bool":
        flat = rng.random(size) < rng.random()
    elif dtype_name.startswith("int"):
        digits = int(rng.integers(1, 10 if dtype_name == "int32" else 19))
        flat = rng.integers(-(10**digits) + 1, 10**digits, size)
    else:
        flat = random_floats(rng, size)
    array = np.asarray(flat).astype(NUMPY_DTYPES[dtype_name]).reshape(shape)
    variant = str(rng.choice(list(VARIANTS))) if dtype_name.startswith("float") else "plain"
    return array, dtype_name, variant


def random_options(rng: np.random.Generator) -> dict[str, object]:
    """Print options worth comparing, torch's keyword names."""
    options = {
        "precision": int(rng.integers(0, 11)),
        "threshold": [0, 5, 50, 200, 1000, math.inf][rng.integers(6)],
        "edgeitems": int(rng.integers(0, 6)),
        "linewidth": int(rng.integers(1, 160)),
        "sci_mode": [None, True, False][rng.integers(3)],
    }
    if rng.random() < 0.2:
        options["profile"] = ["default", "short", "full"][rng.integers(3)]
    return options


def import_torch_or_skip():
    """torch, or skip the test when it is not installed."""
    spec = importlib.util.find_spec("torch")
    if spec is not None and sys.platform == "linux":
        if not (Path(spec.origin).parent / "lib" / "libtorch_global_deps.so").exists():
            # Some installs (the reference venv here) lack this library, and importing torch
            # then fails; loading libtorch with RTLD_GLOBAL skips the step that needs it.
            os.environ.setdefault("TORCH_USE_RTLD_GLOBAL", "1")
    return pytest.importorskip("torch")


def torch_repr(torch, array: np.ndarray, variant: str) -> str:
    """What torch prints for the array, made as ``variant`` says, dtypes renamed to ours."""
    if variant == "plain":
        tensor = torch.from_numpy(array)
    else:
        tensor = torch.tensor(array, requires_grad=True)
        if variant == "mul":
            tensor = tensor * 1
        elif variant == "add":
            tensor = tensor + torch.full_like(tensor, -0.0)  # adding -0. keeps -0. as -0.
    text = repr(tensor)
    assert str(tensor) == text
    return text.replace("dtype=torch.", "dtype=tracegrad.")


@pytest.fixture(scope="module")
def torch():
    return import_torch_or_skip()


def check_against_torch(torch, seed: int) -> None:
    array, dtype_name, variant = random_case(seed)
    expected = torch_repr(torch, array, variant)
    actual = format_tensor(array, dtype_name, VARIANTS[variant])
    assert actual == expected, f"seed {seed}: {dtype_name} {array.shape} {variant}"


@pytest.mark.parametrize("first_seed", range(0, 400, 100))
def test_matches_torch_default_options(torch, first_seed):
    for seed in range(first_seed, first_seed + 100):
        check_against_torch(torch, seed)


@pytest.mark.parametrize("first_seed", range(0, 200, 50))
def test_matches_torch_random_options(torch, first_seed):
    for seed in range(first_seed, first_seed + 50):
        options = random_options(np.random.default_rng(10**6 + seed))
        try:
            torch.set_printoptions(**options)
            with printoptions(**options):
                check_against_torch(torch, seed)
        finally:
            torch.set_printoptions(profile="default")


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_suffix_wraps_where_torch_wraps(torch, dtype_name):
    # every length puts the end of the last row at a different column
    for length in range(1, 40):
        array = (np.arange(length) / 3).astype(NUMPY_DTYPES[dtype_name])
        for variant, suffixes in VARIANTS.items():
            expected = torch_repr(torch, array, variant)
            assert format_tensor(array, dtype_name, suffixes) == expected


EXTREME_VALUES = [
    [1e300, 1e-300],
    [5e-324, 1.0],  # float64 subnormal: the ratio of magnitudes overflows to inf
    [1.7e308, -1.7e308],
    [3.4e38, 1e-45],  # float32 largest and smallest subnormal
    [0.99995, 0.99994],  # one rounds up to 1.0000, the other does not
    [99999.5, 1.5],
    [1e8, 1],
    [1.00000001e8, 2],
    [9.9999e-5],
    [2.0**53, 1],
    [0.5, 1e15],
    [-1e-8, 3],
]


@pytest.mark.parametrize("values", EXTREME_VALUES, ids=str)
@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
@pytest.mark.parametrize("sci_mode", [None, True, False])
def test_matches_torch_at_extremes(torch, values, dtype_name, sci_mode):
    with np.errstate(over="ignore", under="ignore"):  # float32 turns 1e300 into inf
        array = np.array(values).astype(NUMPY_DTYPES[dtype_name])
    try:
        torch.set_printoptions(sci_mode=sci_mode)
        with printoptions(sci_mode=sci_mode):
            for shown in (array, np.array(array[0])):  # also as a 0-D tensor
                assert format_tensor(shown, dtype_name) == torch_repr(torch, shown, "plain")
    finally:
        torch.set_printoptions(profile="default")


@pytest.mark.parametrize("dtype_name", ["int64", "int32"])
def test_matches_torch_at_integer_limits(torch, dtype_name):
    limits = np.iinfo(NUMPY_DTYPES[dtype_name])
    array = np.array([limits.min, 0, limits.max], dtype=NUMPY_DTYPES[dtype_name])
    assert format_tensor(array, dtype_name) == torch_repr(torch, array, "plain")
