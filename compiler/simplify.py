"""Simplification: constant folding and algebraic identities, to a fixpoint.

Common subexpressions are already shared (nodes are hash-consed) and dead code
never runs (schedules walk from the roots), so this pass only rewrites.
Identities are those that IEEE arithmetic allows: x+0, x*1, x/1, x^1 are
exact; x*0 is NOT rewritten (inf*0 and nan*0 are nan).
"""
from __future__ import annotations

import numpy as np

from chainrule.compiler import ops
from chainrule.compiler.ir import Node, make
from chainrule.compiler.program import Program
from chainrule.compiler.rewrite import rewrite_program


def _scalar_const(x: Node) -> float | None:
    """The value of a constant, seen through broadcasts and reshapes."""
    while x.op in ("broadcast", "reshape"):
        x = x.inputs[0]
    return x.attr("value") if x.op == "const" else None


def _is(x: Node, value: float) -> bool:
    c = _scalar_const(x)
    return c is not None and c == value and not (value == 0 and np.signbit(c))


def _fold(node: Node) -> Node | None:
    values = [_scalar_const(i) for i in node.inputs]
    if node.prim.family != "elementwise" or node.dtype == "bool" or None in values:
        return None
    if node.op == "convert":
        return ops.full(values[0], node.dtype, node.shape)
    np_type = np.float32 if node.dtype == "f32" else np.float64
    with np.errstate(all="ignore"):
        out = node.prim.evaluate([np_type(v) for v in values], dict(node.attrs), {})
    return ops.full(float(out), node.dtype, node.shape)


def _hoist_broadcast(n: Node) -> Node | None:
    """op(broadcast(a), broadcast(b)) -> broadcast(op(a, b)): compute on the small shape."""
    if n.prim.family != "elementwise" or not n.inputs or \
            not all(i.op == "broadcast" for i in n.inputs):
        return None
    sources = [i.inputs[0] for i in n.inputs]
    shape = max((s.shape for s in sources), key=len)
    if shape == n.shape or any(s.shape not in ((), shape) for s in sources):
        return None
    small = make(n.op, [ops.broadcast_to(s, shape) for s in sources], **dict(n.attrs))
    return ops.broadcast_to(small, n.shape)


def _rewrite(n: Node) -> Node | None:
    """One identity applied to `n`, or None."""
    folded = _fold(n)
    if folded is not None:
        return folded
    hoisted = _hoist_broadcast(n)
    if hoisted is not None:
        return hoisted
    op, ins = n.op, n.inputs
    if op == "add":
        if _is(ins[1], 0.0):
            return ins[0]
        if _is(ins[0], 0.0):
            return ins[1]
        if ins[1].op == "neg":
            return make("sub", [ins[0], ins[1].inputs[0]])
    if op == "sub" and _is(ins[1], 0.0):
        return ins[0]
    if op == "mul":
        if _is(ins[1], 1.0):
            return ins[0]
        if _is(ins[0], 1.0):
            return ins[1]
        if _is(ins[1], -1.0):
            return ops.neg(ins[0])
        if _is(ins[0], -1.0):
            return ops.neg(ins[1])
    if op == "div" and _is(ins[1], 1.0):
        return ins[0]
    if op == "neg" and ins[0].op == "neg":
        return ins[0].inputs[0]
    if op == "pow":
        exponent = _scalar_const(ins[1])
        if exponent == 1.0:
            return ins[0]
        if exponent == 2.0:
            return ops.mul(ins[0], ins[0])
        if exponent == -1.0:
            return ops.div(1.0, ins[0])
    if op == "where" and ins[1] is ins[2]:
        return ins[1]
    if op == "where" and ins[1].op == "where" and ins[1].inputs[0] is ins[0]:
        return make("where", [ins[0], ins[1].inputs[1], ins[2]])  # same mask: inner choice is known
    if op == "where" and ins[2].op == "where" and ins[2].inputs[0] is ins[0]:
        return make("where", [ins[0], ins[1], ins[2].inputs[2]])
    if op in ("broadcast", "reshape") and ins[0].op == op:
        return make(op, [ins[0].inputs[0]], **dict(n.attrs))
    if op == "reshape" and ins[0].shape == n.shape:
        return ins[0]
    if op == "transpose" and ins[0].op == "transpose":
        inner, outer = ins[0].attr("perm"), n.attr("perm")
        return ops.transpose(ins[0].inputs[0], tuple(inner[p] for p in outer))
    return None


def simplify(program: Program) -> Program:
    return rewrite_program(program, _rewrite)
