"""Fused primitives: composites that eager mode runs as one NumPy kernel.

`gelu`, `softmax`, `log_softmax` and `layer_norm` could be written with the other
primitives, and `decomposition` says how; but run op by op in NumPy that costs several
passes over memory and a graph node per step. Here each is one record with a kernel that
makes few passes (in place where it can) and a derivative written with tensor operations,
so that higher-order gradients still work. The compiler may lower either form.

>>> import numpy as np
>>> softmax.kernel(np.zeros((1, 2), np.float32), axis=1)
array([[0.5, 0.5]], dtype=float32)
"""

from __future__ import annotations

import math

import numpy as np

from .elementwise import erf_kernel, quiet, same_shape
from .primitive import Primitive
from .residuals import recall, remember
from .samples import floats

GELU_C = math.sqrt(2 / math.pi)  # the tanh approximation's constants
GELU_A = 0.044715
INV_SQRT2 = 1 / math.sqrt(2)
INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


def lifted(kernel):
    """Run `kernel` on 1-d arrays when given 0-d ones: NumPy turns 0-d results into scalars,
    which the in-place (`out=`) steps below cannot write to."""

    def run(x, *rest, **attrs):
        if np.ndim(x) == 0:
            return kernel(np.reshape(x, (1,)), *rest, **attrs).reshape(())
        return kernel(x, *rest, **attrs)

    return run


# --- gelu ---
def _one_plus_tanh(x):
    """1 + tanh(u) with u = C (x + A x³), the core of the tanh approximation, in place.

    Computed as 2 / (1 + exp(-2u)), the same value without the cancellation of 1 + tanh u
    where tanh u nears -1 (a float32 1 + tanh u is off by 1e-5 relative at x = -2.5 and
    flushes to 0 below x = -5); the LLVM lowering computes it the same way."""
    s = x * x
    s *= GELU_A
    s += 1
    s *= x
    s *= -2 * GELU_C
    with np.errstate(over="ignore"):  # exp(-2u) = inf for very negative x: s = 0, right
        np.exp(s, out=s)
    s += 1
    np.divide(2, s, out=s)
    return s


@lifted
def _gelu_kernel(x, approximate):
    if approximate == "tanh":
        s = _one_plus_tanh(x)
        remember(x, "gelu_1+tanh", s)  # the backward's slope needs it too
        out = s * x
        out *= 0.5
        return out
    return (0.5 * x * (1 + erf_kernel(x * x.dtype.type(INV_SQRT2)))).astype(x.dtype, copy=False)


@lifted
def _gelu_slope_kernel(x, approximate):
    """d gelu / dx, elementwise."""
    if approximate == "tanh":
        # slope = (1 + t)/2 + x (1 - t²) u'/2 = s (1 + x (2 - s) u') / 2 with s = 1 + t
        s = recall(x, "gelu_1+tanh")
        if s is None:
            s = _one_plus_tanh(x)
        du = x * x
        du *= 3 * GELU_A * GELU_C
        du += GELU_C  # du = u' = C (1 + 3 A x²)
        slope = 2 - s
        slope *= x
        slope *= du
        slope += 1
        slope *= s
        slope *= 0.5
        return slope
    cdf = 0.5 * (1 + erf_kernel(x * x.dtype.type(INV_SQRT2)))
    return (cdf + x * INV_SQRT_2PI * np.exp(-0.5 * x * x)).astype(x.dtype, copy=False)


def _gelu_curvature(x, approximate):
    """d² gelu / dx², written with tensor operations (for double backward)."""
    if approximate == "tanh":
        u = GELU_C * (x + GELU_A * x * x * x)
        t = u.tanh()
        du = GELU_C * (1 + 3 * GELU_A * x * x)
        ddu = 6 * GELU_A * GELU_C * x
        return (1 - t * t) * (du + 0.5 * x * (ddu - 2 * t * du * du))
    return INV_SQRT_2PI * (-0.5 * x * x).exp() * (2 - x * x)


def gelu_decomposition(x, approximate):
    if approximate == "tanh":
        return 0.5 * x * (1 + (GELU_C * (x + GELU_A * x * x * x)).tanh())
    return 0.5 * x * (1 + (x * INV_SQRT2).erf())


gelu_slope = Primitive(
    "gelu_slope", "elementwise", lambda x, approximate: same_shape(x),
    quiet(_gelu_slope_kernel),
    (lambda g, x, out, approximate: g * _gelu_curvature(x, approximate),),
    saves=(0,), sample=floats((3, 4), approximate="tanh"), backward_name="GeluBackwardBackward0")

gelu = Primitive(
    "gelu", "elementwise", lambda x, approximate: same_shape(x), quiet(_gelu_kernel),
    (lambda g, x, out, approximate: g * gelu_slope(x, approximate=approximate),),
    saves=(0,), sample=floats((3, 4), approximate="tanh"))


# --- row reductions ---
def row_sum(x, axes):
    """`np.sum(x, axes, keepdims=True)`; over the last axis of a contiguous float array it
    is a matrix-vector product with ones, which BLAS does 3x faster than NumPy's sum for
    rows of a thousand (the rounding differs in the last bits, as any summation order)."""
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    last = x.ndim - 1
    if x.ndim >= 2 and axes in ((last,), (-1,)) and x.flags.c_contiguous and \
            x.dtype.kind == "f" and x.shape[-1] >= 64:
        return np.matmul(x, np.ones(x.shape[-1], dtype=x.dtype))[..., None]
    return np.sum(x, axis=axes, keepdims=True)


def row_mean(x, axes):
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    total = row_sum(x, axes)
    total /= math.prod(x.shape[a] for a in axes)
    return total


# --- softmax and log_softmax ---
@lifted
def _softmax_kernel(x, axis):
    peak = np.max(x, axis=axis, keepdims=True, initial=-np.inf)  # -inf: an empty row is fine
    if x.dtype.kind == "f" and np.all(np.abs(peak) < 64):
        # exp cannot overflow, and each row's largest term cannot underflow: the shift by
        # the maximum (a full pass) changes nothing but rounding, so it is skipped
        e = np.exp(x)
    else:
        e = x - peak
        np.exp(e, out=e)
    e /= row_sum(e, axis)
    return e


def _log_softmax_kernel(x, axis):
    shifted = x - np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    shifted -= np.log(row_sum(np.exp(shifted), axis))
    return shifted


def softmax_decomposition(x, axis):
    e = (x - x.amax(axis, keepdim=True).detach()).exp()
    return e / e.sum(axis, keepdim=True)


def log_softmax_decomposition(x, axis):
    shifted = x - x.amax(axis, keepdim=True).detach()
    return shifted - shifted.exp().sum(axis, keepdim=True).log()


def _softmax_backward_kernel(g, out, axis):
    s = row_sum(g * out, axis)
    grad = g - s  # out (g - sum(g out)), in two passes over the rows
    grad *= out
    return grad


def _log_softmax_backward_kernel(g, out, axis):
    return g - np.exp(out) * row_sum(g, axis)


# The backward of softmax is itself a primitive (one fused kernel instead of four ops);
# its own derivatives, for double backward, are written out here.
softmax_backward = Primitive(
    "softmax_backward", "reduce", lambda g, out, axis: same_shape(g), _softmax_backward_kernel,
    (lambda gg, g, out, y, axis: softmax_backward(gg, out, axis=axis),
     lambda gg, g, out, y, axis: (gg * (g - (g * out).sum(axis, keepdim=True))
                                  - g * (gg * out).sum(axis, keepdim=True))),
    saves=(0, 1), sample=floats((3, 5), (3, 5), axis=1))

log_softmax_backward = Primitive(
    "log_softmax_backward", "reduce", lambda g, out, axis: same_shape(g),
    quiet(_log_softmax_backward_kernel),
    (lambda gg, g, out, y, axis: gg - (gg * out.exp()).sum(axis, keepdim=True),
     lambda gg, g, out, y, axis: -(gg * out.exp() * g.sum(axis, keepdim=True))),
    saves=(0, 1), sample=floats((3, 5), (3, 5), axis=1))

softmax = Primitive(
    "softmax", "reduce", lambda x, axis: same_shape(x), quiet(_softmax_kernel),
    (lambda g, x, out, axis: softmax_backward(g, out, axis=axis),),
    saves=("out",), sample=floats((3, 5), axis=1))

log_softmax = Primitive(
    "log_softmax", "reduce", lambda x, axis: same_shape(x), quiet(_log_softmax_kernel),
    (lambda g, x, out, axis: log_softmax_backward(g, out, axis=axis),),
    saves=("out",), sample=floats((3, 5), axis=1))


# --- layer norm (without the affine part, which is an ordinary multiply-add) ---
def _layer_norm_kernel(x, axes, eps):
    centred = x - row_mean(x, axes)
    var = row_mean(np.square(centred), axes)
    var += eps
    rstd = 1 / np.sqrt(var)
    remember(x, ("rstd", axes, eps), rstd)  # the backward needs it too
    centred *= rstd
    return centred


def _inverse_std(x, axes, eps):
    centred = x - x.mean(axes, keepdim=True)
    return ((centred * centred).mean(axes, keepdim=True) + eps).rsqrt()


def _layer_norm_backward_kernel(g, x, out, axes, eps):
    rstd = recall(x, ("rstd", axes, eps))
    if rstd is None:
        centred = x - row_mean(x, axes)
        rstd = 1 / np.sqrt(row_mean(np.square(centred), axes) + eps)
    grad = g - row_mean(g, axes)
    grad -= out * row_mean(g * out, axes)
    grad *= rstd
    return grad


# y = r (g - mean(g) - out mean(g out)) with r = 1 / std(x) per normalised slice. Its
# derivatives: in g it has the same form; in out, -r (gg mean(g out) + g mean(gg out));
# in x (through r only, out being its own input), -r² (x - mean(x)) mean(gg y).
layer_norm_backward = Primitive(
    "layer_norm_backward", "reduce", lambda g, x, out, axes, eps: same_shape(g),
    quiet(_layer_norm_backward_kernel),
    (lambda gg, g, x, out, y, axes, eps: layer_norm_backward(gg, x, out, axes=axes, eps=eps),
     lambda gg, g, x, out, y, axes, eps: -(_inverse_std(x, axes, eps) ** 2
                                           * (x - x.mean(axes, keepdim=True))
                                           * (gg * y).mean(axes, keepdim=True)),
     lambda gg, g, x, out, y, axes, eps: -(_inverse_std(x, axes, eps)
                                           * (gg * (g * out).mean(axes, keepdim=True)
                                              + g * (gg * out).mean(axes, keepdim=True)))),
    saves=(0, 1, 2, "out"), sample=floats((3, 6), (3, 6), (3, 6), axes=(1,), eps=1e-5))


def _layer_norm_rule(g, x, out, axes, eps):
    return layer_norm_backward(g, x, out, axes=axes, eps=eps)


def layer_norm_decomposition(x, axes, eps):
    return (x - x.mean(axes, keepdim=True)) * _inverse_std(x, axes, eps)


layer_norm = Primitive(
    "layer_norm", "reduce", lambda x, axes, eps: same_shape(x), quiet(_layer_norm_kernel),
    (_layer_norm_rule,), saves=(0, "out"), sample=floats((3, 6), axes=(1,), eps=1e-5),
    backward_name="NativeLayerNormBackward0")

FUSED = [gelu, gelu_slope, softmax, softmax_backward, log_softmax, log_softmax_backward,
         layer_norm, layer_norm_backward]
DECOMPOSITIONS = {"gelu": gelu_decomposition, "softmax": softmax_decomposition,
                  "log_softmax": log_softmax_decomposition,
                  "layer_norm": layer_norm_decomposition}
