"""Reductions over a set of axes: sum, max, min (the result drops those axes)."""
from __future__ import annotations

import numpy as np

from chainrule.compiler import ops
from chainrule.compiler.ir import FLOAT_DTYPES, Node, Primitive, TensorType, register, require


def _reduce_type(types, attrs) -> TensorType:
    (x,) = types
    require(x.dtype in FLOAT_DTYPES, "cannot reduce a mask")
    axes = attrs["axes"]
    require(all(0 <= a < x.rank for a in axes), f"axes {axes} out of range for rank {x.rank}")
    return TensorType(x.dtype, tuple(s for i, s in enumerate(x.shape) if i not in axes))


def _sum_vjp(y: Node, g: Node) -> list[Node]:
    # every element contributed once: broadcast g back over the reduced axes
    x = y.inputs[0]
    return [ops.expand_reduced(g, y.attr("axes"), x.shape)]


def _extremum_vjp(y: Node, g: Node) -> list[Node]:
    """g goes to the elements equal to the extremum, split evenly among ties."""
    x = y.inputs[0]
    axes = y.attr("axes")
    hit = ops.compare("eq", x, ops.expand_reduced(y, axes, x.shape))
    one = ops.const(1.0, x.dtype)  # two bare numbers would make an f64 count for an f32 x
    count = ops.reduce("reduce_sum", ops.where(hit, one, 0.0), axes)
    share = ops.expand_reduced(ops.div(g, count), axes, x.shape)
    return [ops.where(hit, share, 0.0)]


def _reference(fn):
    def evaluate(v, a, d):
        x = v[0]
        # NumPy's max/min refuse empty reductions; IEEE says -inf/+inf
        if x.size == 0 and fn is not np.sum:
            shape = tuple(s for i, s in enumerate(x.shape) if i not in a["axes"])
            return np.full(shape, -np.inf if fn is np.max else np.inf, dtype=x.dtype)
        return np.asarray(fn(x, axis=a["axes"]), dtype=x.dtype)
    return evaluate


register(Primitive("reduce_sum", "reduce", _reduce_type, _reference(np.sum), _sum_vjp))
register(Primitive("reduce_max", "reduce", _reduce_type, _reference(np.max), _extremum_vjp))
register(Primitive("reduce_min", "reduce", _reduce_type, _reference(np.min), _extremum_vjp))
