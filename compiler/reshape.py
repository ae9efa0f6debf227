"""The target shape of `reshape(x, [...])`: sizes, dim names and one inferred -1."""
from __future__ import annotations

import math
from typing import Any

from chainrule.compiler.shapes import Shape, Size, Sym, numel_key, scale_size, shape_str


def target_shape(source: Shape, items: Any) -> Shape:
    from chainrule.compiler.builtins import ArgError
    if not isinstance(items, list):
        raise ArgError("reshape's shape must be a list such as [2, B]", 1)
    sizes: list[Size | None] = []
    for item in items:
        if isinstance(item, float) and math.isfinite(item) and item == int(item) and \
                (item >= 0 or item == -1):
            sizes.append(None if item == -1 else int(item))
        elif isinstance(item, (int, Sym)) and not isinstance(item, bool):
            sizes.append(item)
        else:
            raise ArgError("reshape's shape lists sizes: integers, dim names, or one -1", 1)
    if sizes.count(None) > 1:
        raise ArgError("reshape's shape can infer at most one size (-1)", 1)
    if None in sizes:
        sizes[sizes.index(None)] = _infer(source, [s for s in sizes if s is not None])
    shape = tuple(sizes)
    if numel_key(source) != numel_key(shape):
        raise ArgError(f"cannot reshape {shape_str(source)} to {shape_str(shape)}: "
                       "element counts differ", 1)
    return shape


def _infer(source: Shape, known: list[Size]) -> Size:
    """The size that makes the element counts equal, when it is a size we can name."""
    total_c, total_s = numel_key(source)
    part_c, part_s = numel_key(tuple(known))
    rest = list(total_s)
    for s in part_s:
        if s not in rest:
            raise _cannot(source, known)
        rest.remove(s)
    if part_c == 0 or total_c % part_c or len(rest) > 1:
        raise _cannot(source, known)
    factor = total_c // part_c
    return factor if not rest else scale_size(rest[0], factor)


def _cannot(source: Shape, known: list[Size]):
    from chainrule.compiler.builtins import ArgError
    return ArgError(f"cannot infer -1 when reshaping {shape_str(source)} "
                    f"with sizes {shape_str(tuple(known))}", 1)
