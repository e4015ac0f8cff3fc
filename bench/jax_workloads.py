"""The workloads of ../shared/PEERS.md for JAX: one `jax.jit` per step, as PEERS.md measures.

JAX is functional, so a step is a jitted function of the current values returning the
gradients (and, for training steps, the updated parameters, which the step keeps for the
next call); `step()` waits for the result (`block_until_ready`), so its time is the
step's. Same data and initial weights as `workloads.py`; the same `(step, grads)` pair.
"""

from __future__ import annotations

import math

import numpy as np

from .workloads import MLP_MNIST, MLP_SMALL, SIZES, mlp_batch, mlp_weights


def _grad_step(jax, loss, arguments: tuple):
    """`step()` computes the gradients of `loss` in all its arguments."""
    grad = jax.jit(jax.grad(loss, argnums=tuple(range(len(arguments)))))
    last = {}

    def step():
        last["grads"] = jax.block_until_ready(grad(*arguments))

    return step, lambda: [np.asarray(g, dtype=np.float64) for g in last["grads"]]


def seed_sin(jax, data):
    jnp = jax.numpy
    x = jnp.linspace(0, 2 * math.pi, 25, dtype=jnp.float32)
    return _grad_step(jax, lambda x: (2 * jnp.sin(x) + 1).sum(), (x,))


def seed_poly(jax, data):
    jnp = jax.numpy
    return _grad_step(jax, lambda x, y: (x + y) * (x * y),
                      (jnp.float32(2.0), jnp.float32(3.0)))


def elementwise_1m(jax, data):
    jnp = jax.numpy

    def loss(x, w, b):
        return (jax.nn.gelu(x * w + b, approximate=True) * 0.5).mean()

    return _grad_step(jax, loss, tuple(jnp.asarray(data[k]) for k in ("x1m", "w1m", "b1m")))


def layernorm_softmax(jax, data):
    jnp = jax.numpy
    t = jnp.asarray(data["ln_t"])

    def loss(x, gamma, beta):
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        normed = (x - mean) / jnp.sqrt(var + 1e-5)
        return (jax.nn.softmax(normed * gamma + beta, axis=-1) * t).sum()

    assert data["ln_x"].shape[-1] == SIZES["cols"]
    return _grad_step(jax, loss, tuple(jnp.asarray(data[k])
                                       for k in ("ln_x", "ln_gamma", "ln_beta")))


def _train_step(jax, sizes, batch):
    """zero_grad, forward, cross_entropy, backward, SGD(lr=0.01): one jitted update."""
    jnp = jax.numpy
    xs, ys = mlp_batch(sizes, batch)
    x, y = jnp.asarray(xs), jnp.asarray(ys)

    def loss(params):
        h = x
        for i in range(0, len(params), 2):
            h = h @ params[i].T + params[i + 1]
            if i + 2 < len(params):
                h = jax.nn.relu(h)
        picked = jnp.take_along_axis(h, y[:, None], axis=1)[:, 0]
        return (jax.nn.logsumexp(h, axis=1) - picked).mean()

    @jax.jit
    def update(params):
        grads = jax.grad(loss)(params)
        return [p - 0.01 * g for p, g in zip(params, grads)], grads

    state = {"params": [jnp.asarray(w) for w in mlp_weights(sizes)]}

    def step():
        state["params"], state["grads"] = jax.block_until_ready(update(state["params"]))

    return step, lambda: [np.asarray(g, dtype=np.float64) for g in state["grads"]]


def mlp_small_train_step(jax, data):
    return _train_step(jax, **MLP_SMALL)


def mlp_mnist_train_step(jax, data):
    return _train_step(jax, **MLP_MNIST)


JAX_WORKLOADS = {f.__name__: f for f in (seed_sin, seed_poly, elementwise_1m,
                                         layernorm_softmax, mlp_small_train_step,
                                         mlp_mnist_train_step)}
