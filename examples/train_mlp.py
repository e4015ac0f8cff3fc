"""Train an MLP classifier on three interleaved spirals, eagerly and compiled.

Written as PyTorch code: only the import differs (`import tracegrad as torch`). The data
are generated (no download): 3 000 points on three noisy spiral arms in the plane, of
which a quarter is held out for testing. The model is a 2-64-64-3 MLP trained with Adam
and cross-entropy on minibatches of 64; it must reach 95% test accuracy.

It is trained twice from the same start: once eagerly, once with the whole training step
(forward, backward, Adam) under `@torch.compile`. The two runs must follow the same loss
curve (their first epochs agree to float32 round-off; later, as between any two
frameworks, the round-off grows chaotically over hundreds of Adam steps), and the
speed-up of the compiled step is measured. The IR
of the compiled step is written at every stage of the pipeline to `out/ir/` (or the
directory given as the first argument). Finally the `state_dict` is written with
`numpy.savez`, read back into a fresh model, and the two models must predict identically.

Run: python examples/train_mlp.py [IR_DIRECTORY]   (a few seconds)
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time

import numpy as np

import tracegrad as torch
import tracegrad.nn.functional as F
from tracegrad import nn

CLASSES, POINTS_PER_CLASS, NOISE = 3, 1000, 0.3
EPOCHS, BATCH, LEARNING_RATE = 15, 64, 0.01
REQUIRED_ACCURACY = 0.95


def make_spirals(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points on `CLASSES` spiral arms, each arm a class, with Gaussian noise."""
    rng = np.random.default_rng(seed)
    radius = np.tile(np.linspace(0.1, 1.0, POINTS_PER_CLASS), CLASSES)
    labels = np.repeat(np.arange(CLASSES), POINTS_PER_CLASS)
    angle = 8.0 * radius + labels * 2 * math.pi / CLASSES  # about 1.3 turns per arm
    angle += rng.normal(0.0, NOISE, angle.shape)
    points = np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1)
    return points.astype(np.float32), labels.astype(np.int64)


def make_model() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                         nn.Linear(64, CLASSES))


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(dim=1) == y).float().mean().item()


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, compiled: bool):
    """Adam over shuffled minibatches; returns the training step (compiled or not), the
    mean loss of each epoch and the mean time of one step after the first epoch (which,
    compiled, includes tracing)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)

    def train_step(inputs, targets):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), targets)
        loss.backward()
        optimizer.step()
        return loss

    step = torch.compile(train_step) if compiled else train_step
    times, losses = [], []
    for epoch in range(1, EPOCHS + 1):
        order = torch.randperm(len(x))
        total, started = 0.0, time.perf_counter()
        for start in range(0, len(x), BATCH):
            batch = order[start:start + BATCH]
            total += step(x[batch], y[batch]).item() * len(batch)
        seconds = time.perf_counter() - started
        if epoch > 1:
            times.append(seconds)
        losses.append(total / len(x))
        print(f"  epoch {epoch:2d}  loss {total / len(x):.4f}  "
              f"train accuracy {accuracy(model, x, y):.1%}  {seconds * 1e3:6.1f} ms")
    steps = math.ceil(len(x) / BATCH)
    return step, losses, sum(times) / len(times) / steps


def write_ir(step, directory: str) -> list:
    """The compiled step's IR at every stage of the pipeline, one file per stage."""
    from tracegrad.ir_dump import STAGES, describe_variant

    os.makedirs(directory, exist_ok=True)
    suffix = {"llvm": "ll", "asm": "s"}
    written = []
    for stage in STAGES:
        path = os.path.join(directory, f"train_step.{stage.name}.{suffix.get(stage.name, 'txt')}")
        with open(path, "w") as f:
            f.write(describe_variant(step, step.variants[0], stage.name, "text"))
        written.append(path)
    return written


def save_and_reload(model: nn.Module, directory: str) -> nn.Module:
    """Write the state_dict as a .npz file and load it into a new model."""
    path = os.path.join(directory, "spirals_mlp.npz")
    np.savez(path, **{name: t.numpy() for name, t in model.state_dict().items()})
    fresh = make_model()
    with np.load(path) as arrays:
        result = fresh.load_state_dict({name: torch.from_numpy(arrays[name])
                                        for name in arrays.files})
    print(f"reloaded from {os.path.basename(path)}: {result}")
    return fresh


def main(seed: int = 0, ir_directory: str = "out/ir") -> None:
    started = time.perf_counter()
    torch.manual_seed(seed)
    points, labels = make_spirals(seed)
    split = torch.randperm(len(points)).numpy()
    test, training = split[: len(points) // 4], split[len(points) // 4:]
    x_train, y_train = torch.tensor(points[training]), torch.tensor(labels[training])
    x_test, y_test = torch.tensor(points[test]), torch.tensor(labels[test])

    models, steps, losses, step_times = {}, {}, {}, {}
    for mode in ("eager", "compiled"):
        torch.manual_seed(seed + 1)  # the same initial weights and batches for both
        models[mode] = model = make_model()
        if mode == "eager":
            print(model)
        print(f"training, {mode}:")
        steps[mode], losses[mode], step_times[mode] = train(model, x_train, y_train,
                                                            compiled=mode == "compiled")
        test_accuracy = accuracy(model, x_test, y_test)
        print(f"  test accuracy {test_accuracy:.1%} (required {REQUIRED_ACCURACY:.0%}); "
              f"{step_times[mode] * 1e6:.0f} µs per training step")
        assert test_accuracy >= REQUIRED_ACCURACY, "the model did not learn the spirals"

    drift = max(abs(a - b) / b for a, b in zip(losses["compiled"][:3], losses["eager"][:3]))
    print(f"compiled vs eager: {step_times['eager'] / step_times['compiled']:.1f}x faster "
          f"per step; the first three epochs' losses agree to {drift:.1e} (relative)")
    assert drift < 1e-4, "the compiled training step drifted from the eager one"
    stages = write_ir(steps["compiled"], ir_directory)
    print(f"the compiled step's IR at every stage: {', '.join(stages)}")

    with tempfile.TemporaryDirectory() as directory:
        reloaded = save_and_reload(models["compiled"], directory)
    with torch.no_grad():
        same = torch.equal(models["compiled"](x_test), reloaded(x_test))
    assert same, "the reloaded model predicts differently"
    print(f"the reloaded model predicts identically; "
          f"{time.perf_counter() - started:.1f} s in all")


if __name__ == "__main__":
    main(ir_directory=sys.argv[1] if len(sys.argv) > 1 else "out/ir")
