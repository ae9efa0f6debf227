"""Shape rules shared by the primitive families."""
from __future__ import annotations

from typing import Sequence

from chainrule.compiler.ir import FLOAT_DTYPES, TensorType, require
from chainrule.compiler.shapes import ShapeError, shape_str


def same_float(types: Sequence[TensorType], attrs: dict) -> TensorType:
    """Elementwise rule: operands of one float dtype and one (already broadcast) shape."""
    first = types[0]
    for t in types:  # messages are built only on failure: this runs for every node
        if t.dtype not in FLOAT_DTYPES:
            raise ShapeError(f"expected a float tensor, got a {t.dtype} mask")
        if t.dtype != first.dtype:
            raise ShapeError(f"cannot mix {first.dtype} and {t.dtype}; "
                             "convert with f32(x) or f64(x)")
        if t.shape != first.shape:
            raise ShapeError(f"shapes {shape_str(first.shape)} and {shape_str(t.shape)} differ")
    return first


def mask_of(types: Sequence[TensorType], attrs: dict) -> TensorType:
    return TensorType("bool", same_float(types, attrs).shape)


def normalize_axes(axes: Sequence[int], rank: int) -> tuple[int, ...]:
    out = []
    for a in axes:
        require(-rank <= a < rank, f"axis {a} is out of range for a tensor of rank {rank}")
        out.append(a % rank if rank else a)
    require(len(set(out)) == len(out), f"repeated axis in {tuple(axes)}")
    return tuple(sorted(out))
