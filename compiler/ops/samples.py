"""Example inputs for the op-table tests: each primitive's `sample` is built from these.

A sample is `(inputs, attrs)`: NumPy float64 arrays (the tests cast them) and the
primitive's attributes.

>>> import numpy as np
>>> inputs, attrs = floats((2, 3))(np.random.default_rng(0))
>>> inputs[0].shape
(2, 3)
"""

from __future__ import annotations

import numpy as np


def floats(*shapes, low: float = -2.0, high: float = 2.0, away_from: float | None = None,
           **attrs):
    """A sample of uniform floats per shape; `away_from` keeps values 0.1 from a kink."""

    def make(rng: np.random.Generator):
        arrays = []
        for shape in shapes:
            a = rng.uniform(low, high, size=shape)
            if away_from is not None:
                near = np.abs(a - away_from) < 0.1
                a[near] += 0.2 * np.sign(a[near] - away_from + 1e-12)
            arrays.append(a)
        return arrays, dict(attrs)

    return make


def distinct(*shapes, **attrs):
    """Floats with no ties, so max/min and sorting-like derivatives are well defined."""

    def make(rng: np.random.Generator):
        arrays = []
        for shape in shapes:
            n = int(np.prod(shape))
            arrays.append((rng.permutation(n) * 0.25 - n / 8).reshape(shape))
        return arrays, dict(attrs)

    return make
