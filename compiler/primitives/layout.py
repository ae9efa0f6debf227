"""Layout primitives: broadcast, reshape, transpose, strided slice, its adjoint
`pad`, and concat. The native backend turns them into index arithmetic."""
from __future__ import annotations

import numpy as np

from chainrule.compiler import ops
from chainrule.compiler.ir import Node, Primitive, TensorType, make, register, require
from chainrule.compiler.shapes import (ShapeError, add_size, broadcast_shapes, eval_shape,
                                       eval_size, numel_key, shape_str)


def _broadcast_type(types, attrs) -> TensorType:
    (x,) = types
    shape = tuple(attrs["shape"])
    try:
        ok = broadcast_shapes(x.shape, shape) == shape
    except ShapeError:
        ok = False
    require(ok, f"cannot broadcast {shape_str(x.shape)} to {shape_str(shape)}")
    return TensorType(x.dtype, shape)


register(Primitive(
    "broadcast", "layout", _broadcast_type,
    lambda v, a, d: np.broadcast_to(v[0], eval_shape(a["shape"], d["dims"])),
    lambda y, g: [ops.sum_to_shape(g, y.inputs[0].shape)]))


def _reshape_type(types, attrs) -> TensorType:
    (x,) = types
    shape = tuple(attrs["shape"])
    require(numel_key(x.shape) == numel_key(shape),
            f"cannot reshape {shape_str(x.shape)} to {shape_str(shape)}: element counts differ")
    return TensorType(x.dtype, shape)


register(Primitive(
    "reshape", "layout", _reshape_type,
    lambda v, a, d: np.reshape(v[0], eval_shape(a["shape"], d["dims"])),
    lambda y, g: [ops.reshape(g, y.inputs[0].shape)]))


def _transpose_type(types, attrs) -> TensorType:
    (x,) = types
    perm = attrs["perm"]
    require(sorted(perm) == list(range(x.rank)), f"bad permutation {perm}")
    return TensorType(x.dtype, tuple(x.shape[p] for p in perm))


def _inverse(perm):
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


register(Primitive(
    "transpose", "layout", _transpose_type,
    lambda v, a, d: np.transpose(v[0], a["perm"]),
    lambda y, g: [ops.transpose(g, _inverse(y.attr("perm")))]))


def _indices(attrs, dims):
    """Per axis, the source index of each result element: start + step*i."""
    return [eval_size(st, dims) + step * np.arange(eval_size(n, dims))
            for st, n, step in zip(attrs["starts"], attrs["sizes"], attrs["steps"])]


def _slice_type(types, attrs) -> TensorType:
    (x,) = types
    require(len(attrs["starts"]) == x.rank, "slice needs one range per axis")
    return TensorType(x.dtype, tuple(attrs["sizes"]))


def _slice_eval(v, a, d):
    x = v[0]
    for axis, idx in enumerate(_indices(a, d["dims"])):
        x = np.take(x, idx, axis=axis)
    return x


def _pad_type(types, attrs) -> TensorType:
    (x,) = types
    require(tuple(attrs["sizes"]) == x.shape, "pad sizes must match its operand")
    return TensorType(x.dtype, tuple(attrs["shape"]))


def _pad_eval(v, a, d):
    out = np.zeros(eval_shape(a["shape"], d["dims"]), dtype=v[0].dtype)
    out[np.ix_(*_indices(a, d["dims"]))] = v[0]
    return out


def _range_attrs(y: Node) -> dict:
    return dict(starts=y.attr("starts"), sizes=y.attr("sizes"), steps=y.attr("steps"))


# x[start + step*i] along each axis; the adjoint scatters g back into zeros
register(Primitive(
    "slice", "layout", _slice_type, _slice_eval,
    lambda y, g: [make("pad", [g], shape=y.inputs[0].shape, **_range_attrs(y))]))
register(Primitive(
    "pad", "layout", _pad_type, _pad_eval,
    lambda y, g: [make("slice", [g], **_range_attrs(y))]))


def _concat_type(types, attrs) -> TensorType:
    axis = attrs["axis"]
    first = types[0]
    total = 0
    for t in types:
        require(t.dtype == first.dtype, f"cannot concat {first.dtype} and {t.dtype}")
        require(t.rank == first.rank and all(
            s == f for i, (s, f) in enumerate(zip(t.shape, first.shape)) if i != axis),
            f"cannot concat {shape_str(first.shape)} and {shape_str(t.shape)} along axis {axis}")
        total = add_size(total, t.shape[axis])
    return TensorType(first.dtype, first.shape[:axis] + (total,) + first.shape[axis + 1:])


def _concat_vjp(y: Node, g: Node) -> list[Node]:
    axis = y.attr("axis")
    grads, offset = [], 0
    for x in y.inputs:
        starts = tuple(offset if i == axis else 0 for i in range(x.type.rank))
        grads.append(make("slice", [g], starts=starts, sizes=x.shape,
                          steps=(1,) * x.type.rank))
        offset = add_size(offset, x.shape[axis])
    return grads


register(Primitive("concat", "layout", _concat_type,
                   lambda v, a, d: np.concatenate(v, axis=a["axis"]), _concat_vjp))
