"""Each workload written by hand in NumPy: forward and backward, no framework.

The same code serves as the speed baseline (float32) and, run in float64, as the
reference the other libraries' gradients are checked against.
"""

from __future__ import annotations

import math

import numpy as np

from .workloads import MLP_MNIST, MLP_SMALL, mlp_batch, mlp_weights


def seed_sin(data, dtype=np.float32):
    x = np.linspace(0, 2 * math.pi, 25).astype(dtype)

    def step():
        return [2 * np.cos(x)]

    return step


def seed_poly(data, dtype=np.float32):
    x, y = dtype(2.0), dtype(3.0)

    def step():
        return [2 * x * y + y * y, x * x + 2 * x * y]

    return step


def elementwise_1m(data, dtype=np.float32):
    x, w, b = (data[k].astype(dtype) for k in ("x1m", "w1m", "b1m"))
    c = dtype(math.sqrt(2 / math.pi))
    n = x.size

    def step():
        z = x * w + b
        inner = c * (z + dtype(0.044715) * z * z * z)
        t = np.tanh(inner)
        # d/dz of 0.5 * z * (1 + tanh(inner)), times the 0.5 scale and the mean's 1/n
        dz = (dtype(0.5) * (1 + t) + dtype(0.5) * z * (1 - t * t) * c
              * (1 + dtype(3 * 0.044715) * z * z)) * dtype(0.5 / n)
        return [dz * w, dz * x, dz]

    return step


def layernorm_softmax(data, dtype=np.float32):
    x, gamma, beta, t = (data[k].astype(dtype) for k in ("ln_x", "ln_gamma", "ln_beta",
                                                         "ln_t"))
    eps = dtype(1e-5)

    def step():
        mu = x.mean(-1, keepdims=True)
        xc = x - mu
        rstd = 1 / np.sqrt((xc * xc).mean(-1, keepdims=True) + eps)
        xhat = xc * rstd
        z = xhat * gamma + beta
        e = np.exp(z - z.max(-1, keepdims=True))
        s = e / e.sum(-1, keepdims=True)
        dz = s * (t - (s * t).sum(-1, keepdims=True))
        dxhat = dz * gamma
        dx = rstd * (dxhat - dxhat.mean(-1, keepdims=True)
                     - xhat * (dxhat * xhat).mean(-1, keepdims=True))
        return [dx, (dz * xhat).sum(0), dz.sum(0)]

    return step


def _train_step(sizes, batch, dtype):
    params = [w.astype(dtype) for w in mlp_weights(sizes)]
    xs, ys = mlp_batch(sizes, batch)
    x = xs.astype(dtype)
    onehot = np.eye(sizes[-1], dtype=dtype)[ys]
    lr = dtype(0.01)
    first = []

    def step():
        acts = [x]
        for i in range(0, len(params), 2):
            h = acts[-1] @ params[i].T + params[i + 1]
            acts.append(np.maximum(h, 0) if i + 2 < len(params) else h)
        logits = acts[-1]
        e = np.exp(logits - logits.max(1, keepdims=True))
        dh = (e / e.sum(1, keepdims=True) - onehot) / dtype(batch)
        grads = [None] * len(params)
        for i in range(len(params) - 2, -1, -2):
            grads[i] = dh.T @ acts[i // 2]
            grads[i + 1] = dh.sum(0)
            if i:
                dh = (dh @ params[i]) * (acts[i // 2] > 0)
        if not first:
            first.extend(grads)
        for p, g in zip(params, grads):
            p -= lr * g
        return first

    return step


def mlp_small_train_step(data, dtype=np.float32):
    return _train_step(dtype=dtype, **MLP_SMALL)


def mlp_mnist_train_step(data, dtype=np.float32):
    return _train_step(dtype=dtype, **MLP_MNIST)


REFERENCES = {f.__name__: f for f in (seed_sin, seed_poly, elementwise_1m, layernorm_softmax,
                                      mlp_small_train_step, mlp_mnist_train_step)}
