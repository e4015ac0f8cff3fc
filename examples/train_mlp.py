"""Train an MLP classifier on three interleaved spirals, then save and reload it.

Written as PyTorch code: only the import differs (`import tracegrad as torch`). The data
are generated (no download): 3 000 points on three noisy spiral arms in the plane, of
which a quarter is held out for testing. The model is a 2-64-64-3 MLP trained with Adam
and cross-entropy on minibatches of 64; it must reach 95% test accuracy. The trained
`state_dict` is written with `numpy.savez`, read back into a fresh model, and the two
models must predict identically.

Run: python examples/train_mlp.py   (a few seconds)
"""

from __future__ import annotations

import math
import os
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


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    for epoch in range(1, EPOCHS + 1):
        order = torch.randperm(len(x))
        total = 0.0
        for start in range(0, len(x), BATCH):
            batch = order[start:start + BATCH]
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        print(f"epoch {epoch:2d}  loss {total / len(x):.4f}  "
              f"train accuracy {accuracy(model, x, y):.1%}")


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


def main(seed: int = 0) -> None:
    started = time.perf_counter()
    torch.manual_seed(seed)
    points, labels = make_spirals(seed)
    split = torch.randperm(len(points)).numpy()
    test, training = split[: len(points) // 4], split[len(points) // 4:]
    x_train, y_train = torch.tensor(points[training]), torch.tensor(labels[training])
    x_test, y_test = torch.tensor(points[test]), torch.tensor(labels[test])

    model = make_model()
    print(model)
    train(model, x_train, y_train)
    test_accuracy = accuracy(model, x_test, y_test)
    print(f"test accuracy {test_accuracy:.1%} (required {REQUIRED_ACCURACY:.0%})")
    assert test_accuracy >= REQUIRED_ACCURACY, "the model did not learn the spirals"

    with tempfile.TemporaryDirectory() as directory:
        reloaded = save_and_reload(model, directory)
    with torch.no_grad():
        same = torch.equal(model(x_test), reloaded(x_test))
    assert same, "the reloaded model predicts differently"
    print(f"the reloaded model predicts identically; "
          f"{time.perf_counter() - started:.1f} s in all")


if __name__ == "__main__":
    main()
