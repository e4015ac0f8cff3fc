"""The workloads of ../shared/PEERS.md, written once against the PyTorch API.

Each workload is a function of a module that speaks that API (`tracegrad` or `torch`)
returning `(step, grads)`: `step()` runs one step, `grads()` the gradients it produced
(as NumPy arrays), which the runner checks against `numpy_reference`.
"""

from __future__ import annotations

import math

import numpy as np

SIZES = {"elementwise": 2**20, "rows": 256, "cols": 1024}
MLP_SMALL = dict(sizes=(64, 128, 128, 10), batch=32)
MLP_MNIST = dict(sizes=(784, 512, 512, 10), batch=128)


def inputs(seed: int = 0) -> dict:
    """The data every library starts from (float32), so results are comparable."""
    rng = np.random.default_rng(seed)
    n, r, c = SIZES["elementwise"], SIZES["rows"], SIZES["cols"]
    return {
        "x1m": rng.standard_normal(n, dtype=np.float32),
        "w1m": rng.standard_normal(n, dtype=np.float32),
        "b1m": rng.standard_normal(n, dtype=np.float32),
        "ln_x": rng.standard_normal((r, c), dtype=np.float32),
        "ln_gamma": rng.uniform(0.5, 1.5, c).astype(np.float32),
        "ln_beta": rng.uniform(-0.5, 0.5, c).astype(np.float32),
        "ln_t": rng.standard_normal((r, c), dtype=np.float32),
    }


def _numpy(t) -> np.ndarray:
    return np.asarray(t.detach().numpy() if hasattr(t, "detach") else t, dtype=np.float64)


def seed_sin(lib, data):
    x = lib.linspace(0, 2 * math.pi, 25, requires_grad=True)

    def step():
        x.grad = None
        (2 * lib.sin(x) + 1).sum().backward()

    return step, lambda: [_numpy(x.grad)]


def seed_poly(lib, data):
    x = lib.tensor(2.0, requires_grad=True)
    y = lib.tensor(3.0, requires_grad=True)

    def step():
        x.grad = None
        y.grad = None
        ((x + y) * (x * y)).backward()

    return step, lambda: [_numpy(x.grad), _numpy(y.grad)]


def elementwise_1m(lib, data):
    x, w, b = (lib.tensor(data[k], requires_grad=True) for k in ("x1m", "w1m", "b1m"))
    gelu = lib.nn.functional.gelu

    def step():
        for t in (x, w, b):
            t.grad = None
        (gelu(x * w + b, approximate="tanh") * 0.5).mean().backward()

    return step, lambda: [_numpy(t.grad) for t in (x, w, b)]


def layernorm_softmax(lib, data):
    x = lib.tensor(data["ln_x"], requires_grad=True)
    gamma = lib.tensor(data["ln_gamma"], requires_grad=True)
    beta = lib.tensor(data["ln_beta"], requires_grad=True)
    t = lib.tensor(data["ln_t"])
    F = lib.nn.functional

    def step():
        for p in (x, gamma, beta):
            p.grad = None
        normed = F.layer_norm(x, (SIZES["cols"],), eps=1e-5)
        (F.softmax(normed * gamma + beta, dim=-1) * t).sum().backward()

    return step, lambda: [_numpy(p.grad) for p in (x, gamma, beta)]


def mlp_weights(sizes, seed: int = 1) -> list:
    """PyTorch-style initial weights, stored (out, in), shared by every library."""
    rng = np.random.default_rng(seed)
    weights = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1 / math.sqrt(fan_in)
        weights.append(rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32))
        weights.append(rng.uniform(-bound, bound, fan_out).astype(np.float32))
    return weights


def mlp_batch(sizes, batch, seed: int = 2):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], batch)
    return x, y


def _train_step(lib, sizes, batch):
    nn = lib.nn
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    with lib.no_grad():
        for p, w in zip(model.parameters(), mlp_weights(sizes)):
            p.copy_(lib.tensor(w))
    opt = lib.optim.SGD(model.parameters(), lr=0.01)
    xs, ys = mlp_batch(sizes, batch)
    x, y = lib.tensor(xs), lib.tensor(ys)

    def step():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    # read after the first step: the step leaves its gradients in .grad
    return step, lambda: [_numpy(p.grad) for p in model.parameters()]


def mlp_small_train_step(lib, data):
    return _train_step(lib, **MLP_SMALL)


def mlp_mnist_train_step(lib, data):
    return _train_step(lib, **MLP_MNIST)


WORKLOADS = {f.__name__: f for f in (seed_sin, seed_poly, elementwise_1m, layernorm_softmax,
                                     mlp_small_train_step, mlp_mnist_train_step)}
