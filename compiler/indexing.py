"""Lowering of `x[...]` (constant integers and slices) and of `@` (NumPy matmul
rules for 1-D and 2-D operands) to the layout primitives."""
from __future__ import annotations

import math
from typing import Any

from chainrule.compiler import ops
from chainrule.compiler.ir import Node, make
from chainrule.compiler.shapes import (MAX_ELEMENTS, ShapeError, Size, add_size, floordiv_size,
                                       shape_str)
from chainrule.grammar import ast
from chainrule.grammar.source import CompileError


def matmul(a: Any, b: Any) -> Node:
    if isinstance(a, float) or isinstance(b, float):
        raise ShapeError("@ needs two tensors; use * to scale by a number")
    if not (1 <= a.type.rank <= 2 and 1 <= b.type.rank <= 2):
        raise ShapeError(f"@ takes 1-D or 2-D operands, got {shape_str(a.shape)} "
                         f"and {shape_str(b.shape)}")
    # NumPy: a 1-D left operand is a row, a 1-D right operand a column; both dropped after
    a2 = ops.reshape(a, (1, a.shape[0])) if a.type.rank == 1 else a
    b2 = ops.reshape(b, (b.shape[0], 1)) if b.type.rank == 1 else b
    if a2.shape[1] != b2.shape[0]:
        raise ShapeError(f"@ of {shape_str(a.shape)} and {shape_str(b.shape)}: "
                         f"inner sizes {a2.shape[1]} and {b2.shape[0]} differ")
    out = ops.make_matmul(a2, b2)
    shape = tuple(s for keep, s in ((a.type.rank == 2, out.shape[0]),
                                     (b.type.rank == 2, out.shape[1])) if keep)
    return ops.reshape(out, shape)


def _integer(lowerer, e: Any) -> int | None:
    if e is None:
        return None
    v = lowerer.expr(e)
    if isinstance(v, int) and not isinstance(v, bool):  # a constant dim
        return v
    if not (isinstance(v, float) and math.isfinite(v) and v == int(v)):
        raise CompileError("indices and slice bounds must be constant integers", e.span)
    if abs(v) > MAX_ELEMENTS:
        raise CompileError(f"index {int(v)} is too large (indices and slice bounds are "
                           "limited to 2^53 in magnitude)", e.span)
    return int(v)


def lower_index(lowerer, x: Node, e: ast.Index) -> Node:
    rank = x.type.rank
    if len(e.items) > rank:
        raise CompileError(f"too many indices: {len(e.items)} for a tensor of rank {rank}",
                           e.items[rank].span if rank < len(e.items) else e.span)
    starts, sizes, steps, drop = [], [], [], []
    for axis in range(rank):
        dim = x.shape[axis]
        item = e.items[axis] if axis < len(e.items) else None
        if item is None:
            starts.append(0), sizes.append(dim), steps.append(1)
        elif isinstance(item, ast.Slice):
            step = _integer(lowerer, item.step)
            if step == 0:
                raise CompileError("slice step cannot be zero", item.step.span)
            start, size = _slice(lowerer, dim, _integer(lowerer, item.start),
                                 _integer(lowerer, item.stop), step or 1, item)
            starts.append(start), sizes.append(size), steps.append(step or 1)
        else:
            starts.append(_point(lowerer, dim, _integer(lowerer, item), item, axis))
            sizes.append(1), steps.append(1), drop.append(axis)
    sliced = x
    if any(st != 0 for st in starts) or tuple(sizes) != x.shape or any(s != 1 for s in steps):
        sliced = make("slice", [x], starts=tuple(starts), sizes=tuple(sizes), steps=tuple(steps))
    return ops.reshape(sliced, tuple(s for i, s in enumerate(sizes) if i not in drop))


def _point(lowerer, dim: Size, index: int, item: Any, axis: int) -> Size:
    if isinstance(dim, int):
        if not -dim <= index < dim:
            raise CompileError(f"index {index} is out of range for axis {axis} of size {dim}",
                               item.span)
        return index % dim
    if index < 0:
        start = add_size(dim, index)
        lowerer.require_at_runtime(start, 0, f"index {index} needs {dim} >= {-index}")
        return start
    lowerer.require_at_runtime(add_size(dim, -index - 1), 0, f"index {index} needs {dim} > {index}")
    return index


def _slice(lowerer, dim: Size, start: int | None, stop: int | None, step: int, item) -> tuple:
    """(first index, element count) of start:stop:step over an axis of size `dim`."""
    if isinstance(dim, int):  # exact NumPy semantics, clamping included
        r = range(*slice(start, stop, step).indices(dim))
        return (r.start if len(r) else 0), len(r)
    # symbolic size: bounds are taken as written, and checked when dims are bound
    try:
        if step > 0:
            first = 0 if start is None else (add_size(dim, start) if start < 0 else start)
            end = dim if stop is None else (add_size(dim, stop) if stop < 0 else stop)
            count = floordiv_size(add_size(_neg_plus(end, first), step - 1), step)
            lowerer.require_at_runtime(_neg_plus(dim, end), 0, f"slice end must be within {dim}")
        else:
            first = add_size(dim, -1) if start is None else (add_size(dim, start) if start < 0 else start)
            end = -1 if stop is None else (add_size(dim, stop) if stop < 0 else stop)
            count = floordiv_size(add_size(_neg_plus(first, end), -step - 1), -step)
            lowerer.require_at_runtime(_neg_plus(dim, add_size(first, 1)), 0,
                                       f"slice start must be within {dim}")
        lowerer.require_at_runtime(first, 0, "slice start must not be negative")
        lowerer.require_at_runtime(count, 0, f"slice bounds must not cross on an axis of size {dim}")
    except ShapeError as err:
        raise CompileError(str(err), item.span) from None
    if isinstance(count, int) and count <= 0:
        return 0, 0  # bounds that cross select nothing, as in NumPy
    return first, count


def _neg(s: Size) -> Size:
    from chainrule.compiler.shapes import scale_size
    return scale_size(s, -1)


def _neg_plus(a: Size, b: Size) -> Size:
    """a - b."""
    return add_size(a, _neg(b))
