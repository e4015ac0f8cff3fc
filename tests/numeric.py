"""The numeric rules of the tests: how close compiled results must be to eager's, and
central finite differences, the float64 reference every derivative is checked against."""

from __future__ import annotations

import numpy as np

EPS = 1e-6
# Compiled against eager: float32 kernels that fuse, sum in another (fixed) order and have
# their own exp and log part from NumPy's by a few hundred ulps of the largest value a
# program makes (eps 6e-8; programs of ~20 ops over at most 192 elements), so float32
# values agree to 1e-4 relative, or 1e-5 of the largest |value|; float64 to 1e-9 / 1e-12.
TOLERANCE = {"float32": (1e-4, 1e-5), "float64": (1e-9, 1e-12)}  # rtol, atol (x scale)


def distance(values: np.ndarray, exact: np.ndarray) -> float:
    """The largest |values - exact|, in float64, leaving out NaN."""
    return float(np.nanmax(np.abs(np.asarray(values, np.float64) - exact), initial=0.0))


def no_worse_than(ours: np.ndarray, theirs: np.ndarray, exact: np.ndarray,
                  slack: float = 0.0) -> bool:
    """Whether float32 `ours` is at most 4 times as far from `exact` (the same value
    computed in float64) as float32 `theirs` (NumPy's) is, give or take `slack`, with NaN
    in the same places: where two float32 results of an ill-conditioned value part (the
    gradient of a layer norm over equal values amplifies the round-off of a sum that
    cancels 316-fold), both are round-off and neither is wrong."""
    same_nan = np.array_equal(np.isnan(ours), np.isnan(theirs))
    return same_nan and distance(ours, exact) <= 4 * distance(theirs, exact) + slack


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
