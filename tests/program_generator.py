"""Seeded random programs over tensors, for checking `tracegrad.compile` against eager.

`generate(seed)` makes a small straight-line program: a few steps over a pool of tensors,
each step one primitive family of the eager API (elementwise unary and binary with
broadcasting and Python scalars on either side, reductions over tuples of dims, max/min
with their indices, softmax and layer_norm, matmul in all its ranks, movement and
indexing ops, in-place writes (through a view, or to a tensor a view was taken of),
`where` with combined comparison masks, dtype casts), with shapes and dtypes tracked
while generating so every program runs. Values stay finite by construction: `exp` reads
a bounded value, `log`/`sqrt`/`pow` a positive one, division a value bounded away from
zero, and a value whose rough magnitude grows too large is squashed (tanh, sigmoid, ...)
before anything else reads it.

The program is Python source, executed to give the callables, so a failure can print it
as a runnable script (`Program.script()`); `Program.with_lines` rebuilds it from fewer
lines (tests/fuzz.py minimises failures so) and `Program.in_float64` gives its float64
twin:

>>> p = generate(3)
>>> "def program(" in p.source and "def make_inputs(" in p.source
True
>>> loss = p.fn(*p.make_inputs(0))
>>> loss.shape
tracegrad.Size([])
"""

from __future__ import annotations

import linecache
import math
import random
import re
import zlib
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np

MAX_NUMEL = 192  # no value in a program has more elements
MAX_NDIM = 4
MAX_MAGNITUDE = 1e3  # a value that may be larger is squashed before it is read
DIM_SIZES = (1, 2, 3, 4, 5)
DIM_WEIGHTS = (1.5, 3, 3, 2, 1)
SCALARS = (2, 3, -1, 0.5, -0.75, 1.5, 2.5, -2.0)
# What values are compared with (masks, branches, clamp bounds): none that a computation
# lands on exactly (the sum of a layer_norm is 0 up to round-off, the softmax of two equal
# values 0.5, a saturated tanh 1), so that round-off never decides which way one goes.
THRESHOLDS = (0.0317, 0.4871, -0.2471, -0.9733, 2)
DTYPE_SHORT = {"float32": "torch.float32", "float64": "torch.float64", "int64": "torch.int64"}


@dataclass
class Val:
    """A tensor the program has at some point: an input, a constant or a step's result."""

    name: str
    shape: tuple
    dtype: str  # "float32" or "float64"
    mag: float  # a rough bound on |value|
    kind: str = "temp"  # "input", "constant" or "temp"

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class InputSpec:
    """One argument of `program`: a float tensor (made with requires_grad) or an index."""

    name: str
    shape: tuple
    dtype: str  # "float32", "float64" or "int64"
    high: int = 0  # index inputs: values in [0, high)

    @property
    def is_index(self) -> bool:
        return self.dtype == "int64"

    def source(self, position: int) -> str:
        """The expression that makes it (`position`: its place among the float inputs)."""
        shape = repr(tuple(self.shape))
        if self.is_index:
            return f"torch.tensor(rng.integers(0, {self.high}, {shape}), dtype=torch.int64)"
        return (f"torch.tensor(rng.standard_normal({shape}), dtype={DTYPE_SHORT[self.dtype]}, "
                f"requires_grad=grad[{position}])")


@dataclass
class Program:
    """A generated program: its source, the callables made from it and what it is made of."""

    seed: int
    inputs: list  # InputSpec, in argument order
    body: list  # lines of `program`'s body
    outputs: list  # names of the final tensors (the loss is the sum of their sums)
    ops: list  # the step kinds, in order (for statistics and messages)
    has_branch: bool = False  # Python control flow reads a tensor value (a value guard)
    float_dtypes: frozenset = frozenset({"float32"})  # the dtypes of all its float values
    source: str = ""
    namespace: dict = field(default_factory=dict, repr=False)

    @property
    def fn(self):
        """`program(*inputs) -> scalar loss`."""
        return self.namespace["program"]

    def make_inputs(self, seed: int, requires_grad=True) -> list:
        """Fresh input tensors (same shapes, values drawn from `seed`); `requires_grad` is
        one flag for every float input, or a list of flags, one per float input."""
        return self.namespace["make_inputs"](seed, requires_grad)

    @property
    def float_inputs(self) -> list:
        return [spec for spec in self.inputs if not spec.is_index]


    @property
    def lowest_precision(self) -> str:
        """`float32` if any float32 value takes part, else `float64`."""
        return "float32" if "float32" in self.float_dtypes else "float64"

    @property
    def lines(self) -> list:
        """The body without its `return`."""
        return self.body[:-1]

    def with_lines(self, lines: list, outputs: list | None = None,
                   keep_inputs: bool = True) -> Program:
        """The program with the body `lines` (a failure's minimiser drops some); without
        `keep_inputs`, the arguments no line reads are dropped (later inputs then draw
        other values from the same seed)."""
        text = "\n".join(lines)
        inputs = [s for s in self.inputs if keep_inputs or re.search(rf"\b{s.name}\b", text)]
        return assemble(self.seed, inputs, lines, self.ops, any(" if " in line for line in lines),
                        self.float_dtypes, outputs)

    def requires_grad_flags(self) -> list:
        """Per float input, whether it requires grad: every third program freezes some."""
        n = len(self.float_inputs)
        if self.seed % 3 != 1 or n < 2:
            return [True] * n
        flags = [(self.seed >> i) % 2 == 0 for i in range(n)]
        return flags if any(flags) else [True] + flags[1:]

    def in_float64(self) -> Program:
        """The same program with every float value in float64: the finite-difference
        reference, whose gradients round-off does not blur."""
        inputs = [replace(s, dtype="float64") if s.dtype == "float32" else s
                  for s in self.inputs]
        lines = [line.replace("torch.float32", "torch.float64").replace(".float()", ".double()")
                 for line in self.lines]
        return assemble(self.seed, inputs, lines, self.ops, self.has_branch,
                        frozenset({"float64"}), self.outputs)

    def script(self, value_seeds=(0, 1), requires_grad=True) -> str:
        """A runnable script: the program, then eager against compiled on `value_seeds`."""
        return self.source + CHECK_TAIL.format(seeds=tuple(value_seeds),
                                               requires_grad=requires_grad)


CHECK_TAIL = '''

if __name__ == "__main__":
    compiled = torch.compile(program)
    requires_grad = {requires_grad!r}
    for call, seed in enumerate({seeds!r}):
        eager_inputs = make_inputs(seed, requires_grad)
        compiled_inputs = make_inputs(seed, requires_grad)
        loss = program(*eager_inputs)
        loss.backward()
        compiled_loss = compiled(*compiled_inputs)
        compiled_loss.backward()
        print(f"call {{call}}: eager loss {{loss.item()!r}}, compiled {{compiled_loss.item()!r}}")
        for i, (e, c) in enumerate(zip(eager_inputs, compiled_inputs)):
            if e.grad is None or c.grad is None:
                if (e.grad is None) != (c.grad is None):
                    print(f"  input {{i}}: eager grad {{e.grad}}, compiled grad {{c.grad}}")
                continue
            print(f"  input {{i}}: max |grad difference| {{(e.grad - c.grad).abs().max().item()}}")
    print("variants:", len(compiled.variants), "fallback:", compiled.fallback_reason)
'''


def generate(seed: int, steps: int | None = None) -> Program:
    """The program for `seed` (the same program on every platform and run)."""
    builder = _Builder(seed)
    builder.build(builder.rng.randint(3, 9) if steps is None else steps)
    return builder.program()


NAME = re.compile(r"\b[txic]\d+\b")  # the names a program gives its tensors


def _target(line: str) -> str:
    """The name a body line defines or updates (`t3 = ...`, `t3.mul_(...)`, `t3[0] = ...`)."""
    return NAME.match(line).group()


def unread_temps(lines) -> list:
    """The temporaries (`t<n>`) that no later line reads, in order of definition."""
    defined, read = [], set()
    for line in lines:
        target = _target(line)
        if target.startswith("t") and target not in defined:
            defined.append(target)
        read.update(name for name in NAME.findall(line[len(target):]))
    return [name for name in defined if name not in read]


def assemble(seed: int, inputs: list, lines: list, ops: list, has_branch: bool,
             float_dtypes: frozenset, outputs: list | None = None) -> Program:
    """The `Program` whose body is `lines`, returning the sum of the sums of `outputs`
    (default: the temporaries no line reads); its source is executed to give `fn`."""
    outputs = outputs or unread_temps(lines) or [_target(lines[-1])]
    args = ", ".join(spec.name for spec in inputs)
    positions = iter(range(len(inputs)))
    make = ",\n        ".join(spec.source(0 if spec.is_index else next(positions))
                               for spec in inputs)
    floats = sum(not spec.is_index for spec in inputs)
    body = list(lines) + ["return " + " + ".join(f"{o}.sum()" for o in outputs)]
    source = "\n".join([
        f'"""Random program {seed} (tests/program_generator.py)."""',
        "import numpy as np",
        "import tracegrad as torch",
        "import tracegrad.nn.functional as F",
        "",
        "",
        "def make_inputs(seed, requires_grad=True):",
        "    rng = np.random.default_rng(seed)",
        (f"    grad = [requires_grad] * {floats} if isinstance(requires_grad, bool) "
         f"else list(requires_grad)"),
        "    return [",
        f"        {make},",
        "    ]",
        "",
        "",
        f"def program({args}):",
        *("    " + line for line in body),
        "",
    ])
    program = Program(seed, list(inputs), body, list(outputs), list(ops), has_branch,
                      float_dtypes, source)
    filename = f"random_program_{seed}_{zlib.crc32(source.encode()):08x}.py"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"__name__": f"random_program_{seed}"}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102  (our own source)
    program.namespace = namespace
    return program


# --- shapes ---------------------------------------------------------------------------

def broadcast(*shapes) -> tuple | None:
    """NumPy's broadcast of `shapes`, or None if they do not broadcast."""
    ndim = max(len(s) for s in shapes)
    out = []
    for i in range(ndim):
        sizes = {s[len(s) - ndim + i] for s in shapes if len(s) - ndim + i >= 0} - {1}
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _fits(shape) -> bool:
    return shape is not None and len(shape) <= MAX_NDIM and math.prod(shape) <= MAX_NUMEL


def _promote(*dtypes) -> str:
    return "float64" if "float64" in dtypes else "float32"


def _promote_tensors(*typed) -> str:
    """PyTorch's result dtype of float tensors given as (dtype, ndim): 0-d tensors widen
    the result only when every operand is 0-d."""
    dims = [(dtype, ndim) for dtype, ndim in typed if ndim > 0]
    return _promote(*(dtype for dtype, _ in dims or typed))


def _prime_factors(n: int) -> list:
    factors, p = [], 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors


def _fmt_float(x: float) -> str:
    return repr(float(x))


def _fmt_scalar(x) -> str:
    return repr(x)


def _tuple_src(items) -> str:
    items = list(items)
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(map(str, items))})"


# --- the generator ------------------------------------------------------------------

class _Builder:
    """Grows one program step by step; see the module docstring."""

    STEP_WEIGHTS: ClassVar[dict] = {
        "unary": 5, "binary": 5, "scalar": 3, "reduce": 3.5, "extremum": 1, "softmax": 1.5,
        "layer_norm": 1.2, "matmul": 3, "reshape": 1.2, "transpose": 1, "permute": 1,
        "unsqueeze": 0.8, "squeeze": 0.8, "expand": 1, "slice": 1.5, "index": 1.5,
        "gather": 1.2, "cat": 1.2, "stack": 1, "where": 1.5, "inplace": 1.5, "cast": 3,
        "branch": 0.4,
    }

    def __init__(self, seed: int):
        self.seed = seed
        self.rng = random.Random(seed)
        self.dtype = self.rng.choice(("float32", "float64"))
        self.mixed = self.rng.random() < 0.12  # casts between float32 and float64
        self.inputs: list[InputSpec] = []
        self.pool: list[Val] = []  # inputs and results a step may read
        self.lines: list[str] = []
        self.used: set[str] = set()
        self.ops: list[str] = []
        self.has_branch = False
        self.temps = 0
        self.constants = 0
        self.constant_dtypes: set[str] = set()

    # --- program assembly ---
    def build(self, steps: int) -> None:
        for _ in range(self.rng.randint(1, 3)):
            self.new_input(self.random_shape(self.rng.choice((1, 2, 2, 3, 3, 4))))
        kinds = [k for k in self.STEP_WEIGHTS if k != "cast" or self.mixed]
        weights = [self.STEP_WEIGHTS[k] for k in kinds]
        done = 0
        attempts = 0
        while done < steps and attempts < steps * 20:
            attempts += 1
            kind = self.rng.choices(kinds, weights)[0]
            if getattr(self, f"step_{kind}")():
                self.ops.append(kind)
                done += 1
        if not any(v.kind == "temp" for v in self.pool):
            self.step_unary()
            self.ops.append("unary")
        if self.rng.random() < 0.1:  # an argument the program never reads: its grad is None
            self.new_input(self.random_shape(2))

    def program(self) -> Program:
        outputs = [v.name for v in self.pool if v.kind == "temp" and v.name not in self.used]
        if not outputs:
            outputs = [self.pool[-1].name]
        dtypes = frozenset({v.dtype for v in self.pool} | self.constant_dtypes)
        return assemble(self.seed, self.inputs, self.lines, self.ops, self.has_branch, dtypes,
                        outputs)

    # --- values ---
    def random_shape(self, ndim: int) -> tuple:
        for _ in range(20):
            shape = tuple(self.rng.choices(DIM_SIZES, DIM_WEIGHTS, k=ndim))
            if math.prod(shape) <= MAX_NUMEL // 2:
                return shape
        return (2,) * ndim

    def new_input(self, shape: tuple, dtype: str | None = None) -> Val:
        name = f"x{len([s for s in self.inputs if not s.is_index])}"
        dtype = dtype or self.pick_dtype()
        self.inputs.append(InputSpec(name, tuple(shape), dtype))
        val = Val(name, tuple(shape), dtype, 4.0, "input")
        self.pool.append(val)
        return val

    def new_index(self, shape: tuple, high: int) -> str:
        """An integer index tensor with values in [0, high): an input, or a constant."""
        if self.rng.random() < 0.3:
            values = np.random.default_rng(self.rng.randrange(2**32)).integers(0, high, shape)
            name = f"c{self.constants}"
            self.constants += 1
            self.lines.append(f"{name} = torch.tensor({values.tolist()!r})")
            return name
        name = f"i{len([s for s in self.inputs if s.is_index])}"
        self.inputs.append(InputSpec(name, tuple(shape), "int64", high))
        return name

    def new_constant(self, shape: tuple, dtype: str) -> Val:
        values = np.round(np.random.default_rng(self.rng.randrange(2**32))
                          .uniform(-2, 2, shape), 2)
        name = f"c{self.constants}"
        self.constants += 1
        self.constant_dtypes.add(dtype)
        data = repr(float(values)) if values.ndim == 0 else repr(values.tolist())
        self.lines.append(f"{name} = torch.tensor({data}, dtype={DTYPE_SHORT[dtype]})")
        return Val(name, tuple(shape), dtype, 2.0, "constant")

    def pick_dtype(self) -> str:
        if self.mixed and self.rng.random() < 0.3:
            return "float64" if self.dtype == "float32" else "float32"
        return self.dtype

    def emit(self, expr: str, shape: tuple, dtype: str, mag: float, reads,
             name: str | None = None) -> Val:
        """`t<n> = expr` (or, given `name`, the statement `expr` that updates it)."""
        if name is None:
            name = f"t{self.temps}"
            expr = f"{name} = {expr}"
        self.temps += 1
        self.lines.append(expr)
        for v in reads:
            self.used.add(v.name)
        val = Val(name, tuple(shape), dtype, float(min(mag, 1e30)))
        self.pool.append(val)
        if val.mag > MAX_MAGNITUDE:  # squash it at once; nothing else reads it
            how = self.rng.choice(("{}.tanh()", "torch.sigmoid({})", "torch.sin({})",
                                   "F.softmax({}, dim=-1)" if val.ndim else "{}.tanh()"))
            return self.emit(how.format(name), shape, dtype, 1.0, [val])
        return val

    def pick(self, pred=lambda v: True, exclude=()) -> Val | None:
        """A value of the pool that `pred` accepts, recent and unread ones preferred."""
        choices = [v for v in self.pool
                   if v.mag <= MAX_MAGNITUDE and v.name not in exclude and pred(v)]
        if not choices:
            return None
        weights = [(i + 1) * (3 if v.name not in self.used else 1)
                   for i, v in enumerate(choices)]
        return self.rng.choices(choices, weights)[0]

    def bounded(self, v: Val) -> tuple[str, float]:
        """An expression for `v` squashed into [-1, 1] unless it is small already."""
        if v.mag <= 3:
            return v.name, v.mag
        return f"{v.name}.{self.rng.choice(('tanh', 'sin', 'cos'))}()", 1.0

    def positive(self, v: Val) -> tuple[str, float]:
        """An expression for a value >= 0.5 made from `v`, and its magnitude."""
        choice = self.rng.randrange(3)
        if choice == 0:
            return f"({v.name} * {v.name} + 1)", v.mag ** 2 + 1
        if choice == 1:
            return f"({v.name}.abs() + 0.5)", v.mag + 0.5
        return f"(torch.sigmoid({v.name}) + 0.5)", 1.5

    def partner(self, a: Val, allow_constant: bool = True) -> Val:
        """A value that broadcasts with `a`: from the pool, a new input or a constant."""
        r = self.rng.random()
        if r < 0.45:
            found = self.pick(lambda v: _fits(broadcast(a.shape, v.shape)))
            if found is not None:
                return found
        shape = self.partner_shape(a.shape)
        if allow_constant and r > 0.85 and math.prod(shape) <= 8:
            return self.new_constant(shape, self.pick_dtype())
        return self.new_input(shape)

    def partner_shape(self, s: tuple) -> tuple:
        rng = self.rng
        keep = rng.randint(0, len(s))
        t = [1 if rng.random() < 0.3 else d for d in s[len(s) - keep:]]
        for i in range(len(t)):  # broadcast the other way: a size-1 dim of `s` grows
            if t[i] == 1 and s[len(s) - keep + i] == 1 and rng.random() < 0.4:
                t[i] = rng.choice((2, 3))
        if keep == len(s) and len(s) < MAX_NDIM and rng.random() < 0.2:
            t.insert(0, rng.choice((2, 3)))
        t = tuple(t)
        return t if _fits(broadcast(s, t)) else s

    # --- steps: each returns whether it emitted something ---
    def step_unary(self) -> bool:
        a = self.pick()
        if a is None:
            return False
        n = a.name
        rng = self.rng
        op = rng.choice(("exp", "sin", "cos", "tanh", "sigmoid", "relu", "gelu", "gelu_tanh",
                         "abs", "sqrt", "log", "neg", "erf", "sign", "silu", "softplus", "clamp",
                         "tan", "rsqrt", "log1p"))
        if op in ("erf", "sign", "silu", "softplus", "clamp", "tan"):
            return self.unary_composite(op, a)
        if op == "exp":
            inner, m = self.bounded(a)
            expr = rng.choice((f"torch.exp({inner})", f"{inner}.exp()"))
            return bool(self.emit(expr, a.shape, a.dtype, math.exp(m), [a]))
        if op in ("sin", "cos", "tanh", "sigmoid"):
            expr = rng.choice((f"torch.{op}({n})", f"{n}.{op}()"))
            if op == "sigmoid" and rng.random() < 0.3:
                expr = f"F.sigmoid({n})"
            return bool(self.emit(expr, a.shape, a.dtype, 1.0, [a]))
        if op == "relu":
            expr = rng.choice((f"torch.relu({n})", f"F.relu({n})", f"{n}.relu()"))
            return bool(self.emit(expr, a.shape, a.dtype, a.mag, [a]))
        if op == "gelu":
            expr = rng.choice((f"F.gelu({n})", f"F.gelu({n}, approximate='none')"))
            return bool(self.emit(expr, a.shape, a.dtype, a.mag, [a]))
        if op == "gelu_tanh":
            return bool(self.emit(f"F.gelu({n}, approximate='tanh')", a.shape, a.dtype,
                                  a.mag, [a]))
        if op == "abs":
            expr = rng.choice((f"torch.abs({n})", f"{n}.abs()", f"abs({n})"))
            return bool(self.emit(expr, a.shape, a.dtype, a.mag, [a]))
        if op == "neg":
            expr = rng.choice((f"-{n}", f"torch.neg({n})", f"{n}.neg()"))
            return bool(self.emit(expr, a.shape, a.dtype, a.mag, [a]))
        inner, m = self.positive(a)
        if op == "sqrt":
            expr = rng.choice((f"torch.sqrt{inner}", f"{inner}.sqrt()"))
            return bool(self.emit(expr, a.shape, a.dtype, math.sqrt(m), [a]))
        if op == "rsqrt":
            expr = rng.choice((f"torch.rsqrt{inner}", f"{inner}.rsqrt()"))
            return bool(self.emit(expr, a.shape, a.dtype, 1.5, [a]))
        if op == "log1p":  # log1p reads x > -1; `inner` - 1 is >= -0.5
            expr = rng.choice((f"torch.log1p({inner} - 1)", f"({inner} - 1).log1p()"))
            return bool(self.emit(expr, a.shape, a.dtype, math.log(m) + 1, [a]))
        expr = rng.choice((f"torch.log{inner}", f"{inner}.log()"))
        return bool(self.emit(expr, a.shape, a.dtype, math.log(m) + 1, [a]))

    def unary_composite(self, op: str, a: Val) -> bool:
        """erf, sign, silu, softplus, clamp and tan (on a bounded value)."""
        n, rng = a.name, self.rng
        if op == "tan":  # |x| <= 1 keeps tan away from its poles
            inner, _ = self.bounded(a)
            inner = inner if inner != n or a.mag <= 1 else f"{n}.tanh()"
            return bool(self.emit(rng.choice((f"torch.tan({inner})", f"{inner}.tan()")),
                                  a.shape, a.dtype, 1.6, [a]))
        if op == "clamp":
            low, high = rng.choice(((-0.4871, 0.7519), (None, 0.2531), (-0.9733, None)))
            args = ", ".join(f"{k}={v!r}" for k, v in (("min", low), ("max", high))
                             if v is not None)
            expr = rng.choice((f"torch.clamp({n}, {args})", f"{n}.clamp({args})"))
            return bool(self.emit(expr, a.shape, a.dtype, max(a.mag, 1.0), [a]))
        forms = {"erf": (f"torch.erf({n})", f"{n}.erf()"),
                 "sign": (f"torch.sign({n})", f"{n}.sign()"),
                 "silu": (f"F.silu({n})",), "softplus": (f"F.softplus({n})",)}[op]
        mag = {"erf": 1.0, "sign": 1.0, "silu": a.mag, "softplus": a.mag + 1}[op]
        return bool(self.emit(rng.choice(forms), a.shape, a.dtype, mag, [a]))

    def step_binary(self) -> bool:
        a = self.pick()
        if a is None:
            return False
        b = self.partner(a)
        if self.rng.random() < 0.5:  # operand order varies which side broadcasts
            a, b = (b, a) if b.kind != "constant" else (a, b)
        shape = broadcast(a.shape, b.shape)
        dtype = _promote_tensors((a.dtype, a.ndim), (b.dtype, b.ndim))
        x, y = a.name, b.name
        rng = self.rng
        op = rng.choice(("add", "sub", "mul", "div", "maximum", "minimum", "pow"))
        if op == "add":
            expr, mag = rng.choice((f"{x} + {y}", f"torch.add({x}, {y})", f"{x}.add({y})")), \
                a.mag + b.mag
        elif op == "sub":
            expr, mag = rng.choice((f"{x} - {y}", f"torch.sub({x}, {y})")), a.mag + b.mag
        elif op == "mul":
            expr, mag = rng.choice((f"{x} * {y}", f"torch.mul({x}, {y})")), a.mag * b.mag
        elif op == "div":
            denominator, m = self.positive(b)
            expr = rng.choice((f"{x} / {denominator}", f"torch.div({x}, {denominator})"))
            mag = a.mag * 2 if m < 2 else a.mag
        elif op in ("maximum", "minimum"):
            expr, mag = f"torch.{op}({x}, {y})", max(a.mag, b.mag)
        else:
            base, m = self.positive(a)
            exponent, e = self.bounded(b)
            expr = rng.choice((f"{base} ** {exponent}", f"torch.pow({base}, {exponent})"))
            mag = max(m, 1.0) ** e
        return bool(self.emit(expr, shape, dtype, mag, [a, b]))

    def step_scalar(self) -> bool:
        a = self.pick()
        if a is None:
            return False
        rng, n = self.rng, a.name
        s = rng.choice(SCALARS)
        form = rng.randrange(12)
        if form == 0:
            expr, mag = f"{n} + {s!r}", a.mag + abs(s)
        elif form == 1:
            expr, mag = f"{s!r} + {n}", a.mag + abs(s)
        elif form == 2:
            expr, mag = f"{n} - {s!r}", a.mag + abs(s)
        elif form == 3:
            expr, mag = f"{s!r} - {n}", a.mag + abs(s)
        elif form == 4:
            expr, mag = rng.choice((f"{n} * {s!r}", f"{n}.mul({s!r})")), a.mag * abs(s)
        elif form == 5:
            expr, mag = f"{s!r} * {n}", a.mag * abs(s)
        elif form == 6:
            expr, mag = f"{n} / {s!r}", a.mag / abs(s)
        elif form == 7:
            positive, _ = self.positive(a)
            expr, mag = f"{s!r} / {positive}", 2 * abs(s)
        elif form == 8:
            p = rng.choice((2, 3, 2.0))
            expr, mag = f"{n} ** {p!r}", a.mag ** p
        elif form == 9:
            positive, m = self.positive(a)
            p = rng.choice((0.5, -0.5, 1.5))
            expr, mag = f"{positive} ** {p!r}", max(m, 1) ** abs(p) + 2
        elif form == 10:
            inner, m = self.bounded(a)
            base = rng.choice((2.0, 0.5, 3))
            expr, mag = f"{base!r} ** {inner}", 3.0 ** m
        else:
            expr, mag = f"torch.add({n}, {s!r})", a.mag + abs(s)
        return bool(self.emit(expr, a.shape, a.dtype, mag, [a]))

    def random_dims(self, ndim: int, at_least: int = 1) -> list:
        k = self.rng.randint(at_least, ndim)
        return sorted(self.rng.sample(range(ndim), k))

    def dim_src(self, d: int, ndim: int) -> int:
        """`d`, or its negative spelling."""
        return d - ndim if self.rng.random() < 0.3 else d

    def step_reduce(self) -> bool:
        a = self.pick(lambda v: v.ndim >= 1)
        if a is None:
            return False
        rng = self.rng
        op = rng.choice(("sum", "mean", "amax", "amin", "var", "logsumexp", "prod", "norm"))
        keepdim = rng.random() < 0.4
        src, m = a.name, a.mag
        if op == "prod" and a.mag > 1:  # factors in [-1, 1] keep the product bounded
            src, m = f"{a.name}.tanh()", 1.0
        if op in ("sum", "mean", "prod", "norm") and rng.random() < 0.15:
            expr = rng.choice((f"{src}.{op}()", f"torch.{op}({src})"))
            count = a.numel
            shape = ()
            dims = None
        else:
            for _ in range(5):  # (prod takes one dim, as in PyTorch)
                dims = self.random_dims(a.ndim) if op != "prod" else [rng.randrange(a.ndim)]
                count = math.prod(a.shape[d] for d in dims)
                if op != "var" or count >= 2:
                    break
            else:
                op = "sum"
            spelled = [self.dim_src(d, a.ndim) for d in dims]
            if len(dims) == 1 and (rng.random() < 0.6 or op == "prod"):
                dim = str(spelled[0])
            else:
                dim = _tuple_src(rng.sample(spelled, len(spelled)))
            extra = ""
            if op == "var":
                extra = rng.choice(("", ", unbiased=False", ", correction=0", ", unbiased=True"))
            if op == "norm":  # (a positional argument would be p)
                dim = rng.choice(("", "", "p=1, ", "p=2, ")) + f"dim={dim}"
            keep = f", keepdim={keepdim}" if keepdim or rng.random() < 0.3 else ""
            form = rng.randrange(3)
            named = dim if op == "norm" else f"dim={dim}"
            if form == 0:
                expr = f"{src}.{op}({named}{extra}{keep})"
            elif form == 1:
                expr = f"torch.{op}({src}, {named}{extra}{keep})"
            else:
                expr = f"{src}.{op}({dim}{extra}{keep})"
            if not keep:
                keepdim = False
            shape = tuple((1 if keepdim else None) if i in dims else s
                          for i, s in enumerate(a.shape))
            shape = tuple(s for s in shape if s is not None)
        mag = {"sum": a.mag * count, "mean": a.mag, "amax": a.mag, "amin": a.mag,
               "var": 2 * a.mag ** 2 * count / max(count - 1, 1),
               "logsumexp": a.mag + math.log(count) + 1, "prod": m ** count,
               "norm": a.mag * count}[op]
        return bool(self.emit(expr, shape, a.dtype, mag, [a]))

    def step_extremum(self) -> bool:
        """`max`/`min` over one dim (values and indices), or the indices of one value
        (`argmax`/`argmin`) picking from another of the same shape."""
        a = self.pick(lambda v: v.ndim >= 1)
        if a is None:
            return False
        rng = self.rng
        d = rng.randrange(a.ndim)
        ds = self.dim_src(d, a.ndim)
        word = rng.choice(("max", "min"))
        keepdim = rng.random() < 0.4
        keep = f", keepdim={keepdim}" if keepdim or rng.random() < 0.3 else ""
        shape = a.shape[:d] + ((1,) if keepdim else ()) + a.shape[d + 1:]
        reads = [a]
        form = rng.randrange(4)
        if form == 0:
            expr = f"{a.name}.{word}(dim={ds}{keep}).values"
        elif form == 1:
            expr = f"torch.{word}({a.name}, {ds}{keep})[0]"
        elif form == 2:  # the indices of one tensor pick from another
            b = self.pick(lambda v: v.shape == a.shape and v.name != a.name)
            b = b if b is not None else self.new_input(a.shape, a.dtype)
            reads.append(b)
            arg = rng.choice((f"{a.name}.arg{word}(dim={ds}, keepdim=True)",
                              f"torch.arg{word}({a.name}, {ds}, keepdim=True)"))
            expr = f"{b.name}.gather({ds}, {arg})"
            shape = a.shape[:d] + (1,) + a.shape[d + 1:]
            return bool(self.emit(expr, shape, b.dtype, b.mag, reads))
        else:  # the whole tensor's largest or smallest value
            expr, shape = rng.choice((f"{a.name}.{word}()", f"torch.{word}({a.name})")), ()
        return bool(self.emit(expr, shape, a.dtype, a.mag, reads))

    def step_softmax(self) -> bool:
        a = self.pick(lambda v: v.ndim >= 1)
        if a is None:
            return False
        rng = self.rng
        d = self.dim_src(rng.randrange(a.ndim), a.ndim)
        op = rng.choice(("softmax", "log_softmax"))
        expr = rng.choice((f"F.{op}({a.name}, dim={d})", f"torch.{op}({a.name}, {d})",
                           f"{a.name}.{op}(dim={d})", f"{a.name}.{op}({d})"))
        mag = 1.0 if op == "softmax" else 2 * a.mag + math.log(a.shape[d]) + 1
        return bool(self.emit(expr, a.shape, a.dtype, mag, [a]))

    def step_layer_norm(self) -> bool:
        a = self.pick(lambda v: v.ndim >= 1 and v.shape[-1] * (v.shape[-2] if v.ndim > 1
                                                                else 1) >= 2)
        if a is None:
            return False
        rng = self.rng
        for _ in range(5):
            k = rng.randint(1, min(2, a.ndim))
            normalized = a.shape[a.ndim - k:]
            if math.prod(normalized) >= 2:
                break
        else:
            return False
        if rng.random() < 0.3:  # (PyTorch's F.layer_norm takes no bare int)
            ns = repr(list(normalized))
        else:
            ns = _tuple_src(normalized)
        reads = [a]
        affine = rng.randrange(3)
        args = ""
        mag = math.sqrt(math.prod(normalized)) + 1
        if affine >= 1:
            weight = self.new_input(normalized, a.dtype)
            reads.append(weight)
            args = f", {weight.name}" if rng.random() < 0.5 else f", weight={weight.name}"
            mag *= weight.mag
        if affine == 2:
            bias = self.new_input(normalized, a.dtype)
            reads.append(bias)
            args += f", {bias.name}" if "weight=" not in args else f", bias={bias.name}"
            mag += bias.mag
        return bool(self.emit(f"F.layer_norm({a.name}, {ns}{args})", a.shape, a.dtype, mag,
                              reads))

    def step_matmul(self) -> bool:
        a = self.pick(lambda v: v.ndim >= 1)
        if a is None:
            return False
        rng = self.rng
        k = a.shape[-1]

        def shape_of(bshape):
            if a.ndim == 1 and len(bshape) == 1:
                return ()
            if len(bshape) == 1:
                return a.shape[:-1]
            if a.ndim == 1:
                return bshape[:-2] + bshape[-1:]
            batch = broadcast(a.shape[:-2], bshape[:-2])
            if batch is None:
                return None
            return batch + a.shape[-2:-1] + bshape[-1:]

        def ok(v):
            if v.ndim == 0 or (v.ndim == 1 and v.shape[0] != k) or \
                    (v.ndim >= 2 and v.shape[-2] != k):
                return False
            return _fits(shape_of(v.shape))

        b = self.pick(ok) if rng.random() < 0.4 else None
        if b is None:
            n = rng.choice((1, 2, 3, 4))
            options = [(k,), (k, n)]
            if a.ndim <= 2:
                options.append((rng.choice((2, 3)), k, n))
            if a.ndim == 3:
                options += [(a.shape[0], k, n), (1, k, n)]
            if a.ndim == 3 and a.shape[0] == 1:
                options.append((2, k, n))
            if a.ndim in (2, 3):  # batch dims that broadcast both ways
                options.append((2, 1, k, n))
            if a.ndim == 4:
                options += [(a.shape[1], k, n), (a.shape[0], 1, k, n),
                            (1, a.shape[1], k, n), a.shape[:2] + (k, n)]
            options = [s for s in options if _fits(shape_of(s)) and math.prod(s) <= MAX_NUMEL]
            if not options:
                return False
            b = self.new_input(rng.choice(options))
        shape = shape_of(b.shape)
        x, y = a.name, b.name
        forms = [f"{x} @ {y}", f"torch.matmul({x}, {y})", f"{x}.matmul({y})"]
        if a.ndim == 2 and b.ndim == 2:
            forms.append(f"torch.mm({x}, {y})")
        if a.ndim == 3 and b.ndim == 3 and a.shape[0] == b.shape[0]:
            forms.append(f"torch.bmm({x}, {y})")
        if a.dtype != b.dtype:  # matmul wants one dtype, as in PyTorch
            y = f"{y}.to({x}.dtype)"
            forms = [f"torch.matmul({x}, {y})"]
        return bool(self.emit(rng.choice(forms), shape, a.dtype, a.mag * b.mag * k, [a, b]))

    def step_reshape(self) -> bool:
        a = self.pick()
        if a is None:
            return False
        rng = self.rng
        if a.ndim >= 2 and rng.random() < 0.2:
            return bool(self.emit(f"{a.name}.flatten()", (a.numel,), a.dtype, a.mag, [a]))
        ndim = rng.randint(0 if a.numel == 1 else 1, MAX_NDIM)
        shape = [1] * ndim
        for f in _prime_factors(a.numel):
            shape[rng.randrange(ndim)] *= f
        spelled = [str(s) for s in shape]
        if ndim and rng.random() < 0.4:
            spelled[rng.randrange(ndim)] = "-1"
        form = rng.randrange(4)
        if form == 0 and ndim:
            expr = f"{a.name}.reshape({', '.join(spelled)})"
        elif form == 3:  # view() needs contiguous memory: an input's, or a copy's
            contiguous = a.name if a.kind == "input" else f"{a.name}.contiguous()"
            expr = f"{contiguous}.view({_tuple_src(spelled) if ndim else '()'})"
        elif form == 1:
            expr = f"{a.name}.reshape({_tuple_src(spelled) if ndim else '()'})"
        else:
            expr = f"torch.reshape({a.name}, {_tuple_src(spelled) if ndim else '()'})"
        return bool(self.emit(expr, tuple(shape), a.dtype, a.mag, [a]))

    def step_transpose(self) -> bool:
        a = self.pick(lambda v: v.ndim >= 2)
        if a is None:
            return False
        rng = self.rng
        d0, d1 = rng.sample(range(a.ndim), 2)
        shape = list(a.shape)
        shape[d0], shape[d1] = shape[d1], shape[d0]
        forms = [f"{a.name}.transpose({self.dim_src(d0, a.ndim)}, {self.dim_src(d1, a.ndim)})",
                 f"torch.transpose({a.name}, {d0}, {d1})"]
        if {d0, d1} == {a.ndim - 2, a.ndim - 1}:
            forms.append(f"{a.name}.mT")
            if a.ndim == 2:
                forms += [f"{a.name}.t()", f"{a.name}.T"]
        return bool(self.emit(rng.choice(forms), tuple(shape), a.dtype, a.mag, [a]))

    def step_permute(self) -> bool:
        a = self.pick(lambda v: v.ndim >= 2)
        if a is None:
            return False
        perm = list(range(a.ndim))
        while perm == sorted(perm):
            self.rng.shuffle(perm)
        spelled = [self.dim_src(d, a.ndim) for d in perm]
        expr = self.rng.choice((f"{a.name}.permute({', '.join(map(str, spelled))})",
                                f"{a.name}.permute({_tuple_src(spelled)})",
                                f"torch.permute({a.name}, {_tuple_src(spelled)})"))
        return bool(self.emit(expr, tuple(a.shape[d] for d in perm), a.dtype, a.mag, [a]))

    def step_unsqueeze(self) -> bool:
        a = self.pick(lambda v: v.ndim < MAX_NDIM)
        if a is None:
            return False
        d = self.rng.randint(0, a.ndim)
        spelled = d - a.ndim - 1 if self.rng.random() < 0.3 else d
        shape = a.shape[:d] + (1,) + a.shape[d:]
        expr = self.rng.choice((f"{a.name}.unsqueeze({spelled})",
                                f"torch.unsqueeze({a.name}, {spelled})"))
        return bool(self.emit(expr, shape, a.dtype, a.mag, [a]))

    def step_squeeze(self) -> bool:
        a = self.pick(lambda v: 1 in v.shape)
        if a is None:
            return False
        if self.rng.random() < 0.3:
            return bool(self.emit(f"{a.name}.squeeze()", tuple(s for s in a.shape if s != 1),
                                  a.dtype, a.mag, [a]))
        d = self.rng.choice([i for i, s in enumerate(a.shape) if s == 1])
        expr = self.rng.choice((f"{a.name}.squeeze({self.dim_src(d, a.ndim)})",
                                f"torch.squeeze({a.name}, {d})"))
        return bool(self.emit(expr, a.shape[:d] + a.shape[d + 1:], a.dtype, a.mag, [a]))

    def step_expand(self) -> bool:
        a = self.pick(lambda v: 1 in v.shape or v.ndim < MAX_NDIM)
        if a is None:
            return False
        rng = self.rng
        lead = [rng.choice((2, 3))] if a.ndim < MAX_NDIM and (1 not in a.shape
                                                              or rng.random() < 0.4) else []
        sizes, spelled = [], []
        for s in a.shape:
            if s == 1 and rng.random() < 0.7:
                sizes.append(rng.choice((2, 3, 4)))
                spelled.append(str(sizes[-1]))
            else:
                sizes.append(s)
                spelled.append(str(s) if rng.random() < 0.5 else "-1")
        shape = tuple(lead + sizes)
        if shape == a.shape or not _fits(shape):
            return False
        spelled = [str(s) for s in lead] + spelled
        form = rng.randrange(3)
        if form == 0:
            expr = f"{a.name}.expand({', '.join(spelled)})"
        elif form == 1:
            expr = f"{a.name}.expand({_tuple_src(spelled)})"
        else:
            expr = f"torch.broadcast_to({a.name}, {_tuple_src(shape)})"
        return bool(self.emit(expr, shape, a.dtype, a.mag, [a]))

    def basic_index(self, shape: tuple, ints: bool = True) -> tuple[str, tuple]:
        """A random basic index (slices with steps, integers, `...`) into `shape`: its
        source and the shape it selects (never empty)."""
        rng = self.rng
        ndim = len(shape)
        k = rng.randint(1, ndim)
        trailing = k < ndim and rng.random() < 0.3
        dims = list(range(ndim - k, ndim)) if trailing else list(range(k))
        parts, out = [], list(shape)
        for d in dims:
            n = shape[d]
            if ints and n > 1 and rng.random() < 0.15:  # an integer index drops the dim
                i = rng.randrange(n)
                parts.append(str(i - n if rng.random() < 0.3 else i))
                out[d] = None
                continue
            start = rng.choice((None, 0, 1, -1, -2)) if n > 1 else None
            stop = rng.choice((None, None, n - 1, -1, n)) if n > 1 else None
            step = rng.choice((None, None, 2, 3))
            if len(range(*slice(start, stop, step).indices(n))) == 0:
                start, stop = None, None
            text = ("" if start is None else str(start)) + ":" + \
                ("" if stop is None else str(stop))
            parts.append(text if step is None else f"{text}:{step}")
            out[d] = len(range(*slice(start, stop, step).indices(n)))
        if trailing:
            parts.insert(0, "...")
        return ", ".join(parts), tuple(s for s in out if s is not None)

    def step_slice(self) -> bool:
        a = self.pick(lambda v: v.ndim >= 1 and v.numel > 1)
        if a is None:
            return False
        index, shape = self.basic_index(a.shape)
        return bool(self.emit(f"{a.name}[{index}]", shape, a.dtype, a.mag, [a]))

    def step_inplace(self) -> bool:
        """An in-place update of a fresh copy: `t = a.clone()`, then `t.mul_(b)`,
        `t += s`, `t[1:, ::2] = b`, `t[:, 1:].mul_(s)` or `t[idx] = b`."""
        a = self.pick()
        if a is None:
            return False
        rng = self.rng
        form = rng.randrange(7) if a.ndim else rng.randrange(2)
        name = f"t{self.temps}"
        reads, mag = [a], a.mag
        copy = rng.choice((f"{a.name}.clone()", f"{a.name} * 1.0", f"{a.name}.clone()"))
        if form >= 5 and a.numel > 1:
            return self.inplace_with_view(a, copy, write_view=form == 5)
        if form >= 5:
            form = 1
        if form == 0:
            b = self.pick(lambda v: broadcast(a.shape, v.shape) == a.shape)
            if b is None:
                shape = self.partner_shape(a.shape)
                b = self.new_input(shape if broadcast(a.shape, shape) == a.shape else a.shape)
            op = rng.choice(("add_", "sub_", "mul_"))
            update = f"{name}.{op}({b.name})"
            reads.append(b)
            mag = a.mag * b.mag if op == "mul_" else a.mag + b.mag
        elif form == 1:
            s = rng.choice(SCALARS)
            op = rng.choice(("+=", "-=", "*="))
            update = f"{name} {op} {s!r}"
            mag = a.mag * abs(s) if op == "*=" else a.mag + abs(s)
        elif form == 2:
            index, shape = self.basic_index(a.shape)
            b = self.pick(lambda v: v.name != a.name and broadcast(shape, v.shape) == shape)
            if b is None:
                b = self.new_input(shape[rng.randint(0, len(shape)):])
            update = f"{name}[{index}] = {b.name}"
            reads.append(b)
            mag = max(a.mag, b.mag)
        elif form == 3:
            index, shape = self.basic_index(a.shape, ints=False)
            if rng.random() < 0.3:  # a view of a view
                index = f"{index}][{self.basic_index(shape)[0]}"
            s = rng.choice(SCALARS)
            update = f"{name}[{index}].{rng.choice(('mul_', 'add_'))}({s!r})"
            mag = a.mag * (abs(s) + 1)
        else:  # distinct indices: with repeats, which write wins is unspecified
            count = rng.randint(1, a.shape[0])
            rows = rng.sample(range(a.shape[0]), count)
            b = self.new_input(a.shape[1:] if rng.random() < 0.5 else (count,) + a.shape[1:],
                               a.dtype)  # PyTorch's index_put wants one dtype
            update = f"{name}[torch.tensor({rows!r})] = {b.name}"
            reads.append(b)
            mag = max(a.mag, b.mag)
        self.lines.append(f"{name} = {copy}")
        return bool(self.emit(update, a.shape, a.dtype, mag, reads, name=name))

    def inplace_with_view(self, a: Val, copy: str, write_view: bool) -> bool:
        """`t = copy; v = t[index]`, then an in-place write to `v` (which `t` sees) or to
        `t` (which `v` sees); later steps may read both."""
        rng = self.rng
        base, view = f"t{self.temps}", f"t{self.temps + 1}"
        self.temps += 2
        index, shape = self.basic_index(a.shape)
        target, target_shape = (view, shape) if write_view else (base, a.shape)
        b = self.pick(lambda v: v.name != a.name and broadcast(target_shape, v.shape)
                      == target_shape) if rng.random() < 0.5 else None
        s = rng.choice(SCALARS)
        update = rng.choice((f"{target}.mul_({s!r})", f"{target} += {s!r}")) if b is None \
            else rng.choice((f"{target}.add_({b.name})", f"{target} -= {b.name}",
                             f"{target}.mul_({b.name})"))
        self.lines += [f"{base} = {copy}", f"{view} = {base}[{index}]", update]
        mag = a.mag * (abs(s) + 1) if b is None else a.mag * (b.mag + 1)
        for v in [a] + ([b] if b is not None else []):
            self.used.add(v.name)
        self.pool += [Val(base, a.shape, a.dtype, mag), Val(view, shape, a.dtype, mag)]
        return True

    def step_index(self) -> bool:
        a = self.pick(lambda v: v.ndim >= 1)
        if a is None:
            return False
        rng = self.rng
        d = 1 if a.ndim >= 2 and rng.random() < 0.3 else 0
        two_d = d == 0 and rng.random() < 0.2
        ishape = (rng.randint(1, 3), rng.randint(1, 3)) if two_d else (rng.randint(1, 5),)
        shape = a.shape[:d] + ishape + a.shape[d + 1:]
        if not _fits(shape):
            return False
        idx = self.new_index(ishape, a.shape[d])
        forms = [f"{a.name}[{idx}]" if d == 0 else f"{a.name}[:, {idx}]"]
        if not two_d:
            forms += [f"{a.name}.index_select({d}, {idx})",
                      f"torch.index_select({a.name}, {d}, {idx})"]
        return bool(self.emit(rng.choice(forms), shape, a.dtype, a.mag, [a]))

    def step_gather(self) -> bool:
        a = self.pick(lambda v: v.ndim >= 1)
        if a is None:
            return False
        rng = self.rng
        d = rng.randrange(a.ndim)
        ishape = tuple(rng.randint(1, 4) if i == d else rng.randint(1, s)
                       for i, s in enumerate(a.shape))
        idx = self.new_index(ishape, a.shape[d])
        ds = self.dim_src(d, a.ndim)
        expr = rng.choice((f"{a.name}.gather({ds}, {idx})", f"torch.gather({a.name}, {ds}, {idx})"))
        return bool(self.emit(expr, ishape, a.dtype, a.mag, [a]))

    def step_cat(self) -> bool:
        a = self.pick(lambda v: v.ndim >= 1)
        if a is None:
            return False
        rng = self.rng
        d = rng.randrange(a.ndim)
        parts = [a]
        for _ in range(rng.choice((1, 1, 2))):
            def same_but_d(v):
                return v.ndim == a.ndim and all(s == t for i, (s, t) in
                                                enumerate(zip(v.shape, a.shape)) if i != d)
            b = self.pick(same_but_d) if rng.random() < 0.6 else None
            if b is None:
                shape = list(a.shape)
                shape[d] = rng.randint(1, 3)
                b = self.new_input(tuple(shape))
            parts.append(b)
        rng.shuffle(parts)
        shape = list(a.shape)
        shape[d] = sum(p.shape[d] for p in parts)
        if not _fits(tuple(shape)):
            return False
        names = ", ".join(p.name for p in parts)
        ds = self.dim_src(d, a.ndim)
        expr = rng.choice((f"torch.cat([{names}], dim={ds})", f"torch.cat(({names}), {ds})"))
        return bool(self.emit(expr, tuple(shape), _promote(*(p.dtype for p in parts)),
                              max(p.mag for p in parts), parts))

    def step_stack(self) -> bool:
        a = self.pick(lambda v: v.ndim < MAX_NDIM)
        if a is None:
            return False
        rng = self.rng
        parts = [a]
        for _ in range(rng.choice((1, 1, 2))):
            b = self.pick(lambda v: v.shape == a.shape) if rng.random() < 0.6 else None
            parts.append(b if b is not None else self.new_input(a.shape))
        d = rng.randint(0, a.ndim)
        shape = a.shape[:d] + (len(parts),) + a.shape[d:]
        if not _fits(shape):
            return False
        spelled = d - a.ndim - 1 if rng.random() < 0.3 else d
        names = ", ".join(p.name for p in parts)
        expr = rng.choice((f"torch.stack([{names}], dim={spelled})",
                           f"torch.stack(({names}), {spelled})"))
        dtypes = {p.dtype for p in parts}
        if len(dtypes) > 1:  # stack all in one dtype
            names = ", ".join(f"{p.name}.double()" for p in parts)
            expr = f"torch.stack([{names}], dim={spelled})"
        return bool(self.emit(expr, shape, _promote(*dtypes), max(p.mag for p in parts),
                              parts))

    def step_where(self) -> bool:
        a = self.pick()
        if a is None:
            return False
        rng = self.rng
        reads = [a]
        p = a if rng.random() < 0.5 else self.partner(a)
        reads.append(p)
        compare = rng.choice((">", "<", ">=", "<=", ">", "<", "==", "!="))
        if rng.random() < 0.4:
            q_src, q_shape = _fmt_scalar(rng.choice(THRESHOLDS)), ()
        else:
            q = self.partner(p)
            reads.append(q)
            q_src, q_shape = q.name, q.shape
        mask_shape = broadcast(p.shape, q_shape)
        other_dtype, other_ndim = a.dtype, a.ndim
        if rng.random() < 0.3:
            other, other_shape, other_mag = _fmt_scalar(rng.choice((0.0, 1.0, -0.5))), (), 1.0
        else:
            b = self.partner(a)
            reads.append(b)
            other, other_shape, other_mag, other_dtype = b.name, b.shape, b.mag, b.dtype
            other_ndim = b.ndim
        shape = broadcast(mask_shape, a.shape, other_shape)
        if not _fits(shape):
            return False
        mask = self.combine_masks(f"{p.name} {compare} {q_src}", p.name)
        forms = [f"torch.where({mask}, {a.name}, {other})", f"{a.name}.where({mask}, {other})"]
        if other_shape == () and broadcast(mask_shape, a.shape) == a.shape:
            forms.append(f"{a.name}.masked_fill({mask}, {other})")
        expr = rng.choice(forms)
        dtype = _promote_tensors((a.dtype, a.ndim), (other_dtype, other_ndim))
        if "masked_fill" in expr:  # fills in place of a copy: a's dtype
            dtype = a.dtype
        return bool(self.emit(expr, shape, dtype, max(a.mag, other_mag), reads))

    def combine_masks(self, mask: str, p: str) -> str:
        """`mask`, or it negated or combined with a second comparison of `p` with a scalar
        (the same shape): `~`, `&`, `|` and their function forms."""
        rng = self.rng
        form = rng.randrange(7)
        other = f"({p} {rng.choice(('>', '<'))} {rng.choice(THRESHOLDS)!r})"
        if form == 0:
            return f"~({mask})"
        if form == 1:
            return f"({mask}) & {other}"
        if form == 2:
            return f"({mask}) | {other}"
        if form == 3:
            return rng.choice((f"torch.logical_or({mask}, {other})",
                               f"torch.logical_and({mask}, {other})",
                               f"torch.logical_not({mask})"))
        return mask

    def step_cast(self) -> bool:
        a = self.pick()
        if a is None:
            return False
        if a.dtype == "float32":
            expr, dtype = self.rng.choice((f"{a.name}.double()",
                                           f"{a.name}.to(torch.float64)")), "float64"
        else:
            expr, dtype = self.rng.choice((f"{a.name}.float()",
                                           f"{a.name}.to(torch.float32)")), "float32"
        return bool(self.emit(expr, a.shape, dtype, a.mag, [a]))

    def step_branch(self) -> bool:
        """Python control flow on a tensor's value: the trace keeps it as a value guard."""
        a = self.pick(lambda v: v.ndim >= 1)
        if a is None:
            return False
        self.has_branch = True
        reduce = self.rng.choice(("sum", "mean", "amax"))
        test = f"{a.name}.{reduce}()" if reduce != "amax" else f"{a.name}.amax(dim=0).sum()"
        expr = f"{a.name} * 2 if {test} > {THRESHOLDS[0]} else {a.name}.sin()"
        return bool(self.emit(expr, a.shape, a.dtype, 2 * a.mag, [a]))
