"""Constructors for IR nodes, used by lowering and by the VJP rules.

Elementwise primitives take operands of one shape; these helpers insert the
explicit `broadcast` nodes (NumPy rules) and turn Python numbers into
constants of the other operand's dtype, so a VJP reads like the math:
`mul(g, sub(1.0, mul(y, y)))` for tanh.
"""
from __future__ import annotations

from typing import Sequence, Union

from chainrule.compiler.ir import Node, make
from chainrule.compiler.shapes import Shape, Size, broadcast_shapes

Operand = Union[Node, float, int]


def const(value: float, dtype: str) -> Node:
    return make("const", value=float(value), dtype=dtype)


def broadcast_to(x: Node, shape: Shape) -> Node:
    shape = tuple(shape)
    return x if x.shape == shape else make("broadcast", [x], shape=shape)


def full(value: float, dtype: str, shape: Shape) -> Node:
    return broadcast_to(const(value, dtype), shape)


def zeros_like(x: Node) -> Node:
    return full(0.0, x.dtype, x.shape)


def _operands(*args: Operand) -> list[Node]:
    """Numbers take the dtype of a node operand; all are broadcast together."""
    nodes = [a for a in args if isinstance(a, Node) and a.dtype != "bool"]
    dtype = nodes[0].dtype if nodes else "f64"
    as_nodes = [a if isinstance(a, Node) else const(a, dtype) for a in args]
    shape: Shape = ()
    for a in as_nodes:
        shape = broadcast_shapes(shape, a.shape)
    return [broadcast_to(a, shape) for a in as_nodes]


def apply(op: str, *args: Operand, **attrs) -> Node:
    """An elementwise primitive on broadcast operands."""
    return make(op, _operands(*args), **attrs)


def add(a: Operand, b: Operand) -> Node:
    return apply("add", a, b)


def sub(a: Operand, b: Operand) -> Node:
    return apply("sub", a, b)


def mul(a: Operand, b: Operand) -> Node:
    return apply("mul", a, b)


def div(a: Operand, b: Operand) -> Node:
    return apply("div", a, b)


def neg(a: Node) -> Node:
    return make("neg", [a])


def where(mask: Node, a: Operand, b: Operand) -> Node:
    return apply("where", mask, a, b)


def compare(op: str, a: Operand, b: Operand) -> Node:
    return apply(op, a, b)


def unary(op: str, x: Node) -> Node:
    return make(op, [x])


def convert(x: Node, dtype: str) -> Node:
    return x if x.dtype == dtype else make("convert", [x], dtype=dtype)


def reduce(op: str, x: Node, axes: Sequence[int]) -> Node:
    axes = tuple(sorted(set(axes)))
    return x if not axes else make(op, [x], axes=axes)


def reshape(x: Node, shape: Shape) -> Node:
    shape = tuple(shape)
    return x if x.shape == shape else make("reshape", [x], shape=shape)


def transpose(x: Node, perm: Sequence[int] | None = None) -> Node:
    perm = tuple(reversed(range(x.type.rank))) if perm is None else tuple(perm)
    return x if perm == tuple(range(x.type.rank)) else make("transpose", [x], perm=perm)


def keepdims_shape(shape: Shape, axes: Sequence[int]) -> Shape:
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def expand_reduced(y: Node, axes: Sequence[int], shape: Shape) -> Node:
    """Broadcast a reduction's result back over the reduced axes of `shape`."""
    return broadcast_to(reshape(y, keepdims_shape(shape, axes)), shape)


def sum_to_shape(g: Node, shape: Shape) -> Node:
    """Undo a NumPy broadcast from `shape` to g's shape by summing (the broadcast VJP)."""
    lead = g.type.rank - len(shape)
    axes = list(range(lead))
    for i, s in enumerate(shape):
        if s == 1 and g.shape[lead + i] != 1:
            axes.append(lead + i)
    return reshape(reduce("reduce_sum", g, axes), shape)


def size_of(sizes: Sequence[Size], dtype: str) -> Node:
    """The product of sizes as a scalar of `dtype` (a runtime value for symbolic dims)."""
    static = 1
    dynamic = []
    for s in sizes:
        if isinstance(s, int):
            static *= s
        else:
            dynamic.append(s)
    if not dynamic:
        return const(float(static), dtype)
    return make("size_of", sizes=tuple(sizes), dtype=dtype)


def make_matmul(a: Node, b: Node) -> Node:
    return make("matmul", [a, b])
