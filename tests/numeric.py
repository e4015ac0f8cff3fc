"""Central finite differences, the float64 reference every derivative is checked against."""

from __future__ import annotations

import numpy as np

EPS = 1e-6


def finite_differences(f, arrays: list, wrt) -> list:
    """d f(arrays) / d arrays[i] for each i in `wrt`, by central differences (f: scalar)."""
    result = []
    for i in wrt:
        grad = np.zeros_like(arrays[i])
        for k in range(arrays[i].size):
            shifted = [a.copy() for a in arrays]
            shifted[i].flat[k] += EPS
            up = f(shifted)
            shifted[i].flat[k] -= 2 * EPS
            grad.flat[k] = (up - f(shifted)) / (2 * EPS)
        result.append(grad)
    return result
