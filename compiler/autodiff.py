"""Reverse mode: the adjoint program of a Program, as IR in the same primitives.

A forward sweep marks the nodes that depend on a param; a reverse sweep in
reverse topological order hands each node's cotangent to its primitive's VJP
and sums the contributions arriving at every input (the fan-out sum of
backpropagation: dL/dz = sum over consumers c of dL/dc * dc/dz).

NaN-safe `where`: a cotangent of the form `where(m, g, 0)` is "masked". Through
an elementwise primitive the mask is carried to every contribution it
produces, so an element the `where` did not choose gets exactly zero even
where the unchosen branch's derivative is infinite or NaN (sqrt, log at 0).
"""
from __future__ import annotations

from chainrule.compiler import ops
from chainrule.compiler.ir import Node
from chainrule.compiler.program import Program


class MissingRule(Exception):
    """A primitive has no VJP; names the primitive."""


def _mask_of(g: Node) -> tuple[Node, bool] | None:
    """(m, True) if g is where(m, h, 0); (m, False) if g is where(m, 0, h)."""
    if g.op != "where":
        return None
    m, a, b = g.inputs
    if _is_zero(b):
        return m, True
    if _is_zero(a):
        return m, False
    return None


def _is_zero(x: Node) -> bool:
    while x.op == "broadcast":
        x = x.inputs[0]
    return x.op == "const" and x.attr("value") == 0.0


def _masked(contribution: Node, mask: tuple[Node, bool] | None) -> Node:
    if mask is None or mask[0].shape != contribution.shape:
        return contribution
    m, chosen_when_true = mask
    return ops.where(m, contribution, 0.0) if chosen_when_true else ops.where(m, 0.0, contribution)


def gradients(program: Program, wrt: tuple[str, ...] | None = None) -> Program:
    """Return `program` with `grads`: d(first output)/d(param) for each param in `wrt`."""
    names = tuple(a.name for a in program.params) if wrt is None else tuple(wrt)
    loss_name, loss = program.outputs[0]
    order = program.schedule(with_grad=False)
    targets = {program.arg_nodes[n] for n in names}
    # forward sweep: which nodes carry a derivative at all
    active: set[Node] = set()
    for node in order:
        if node in targets or (not node.prim.derivative_free
                               and any(i in active for i in node.inputs)):
            active.add(node)
    adjoint: dict[Node, Node] = {}
    if loss in active:
        adjoint[loss] = ops.const(1.0, loss.dtype)
    adjoint_names: dict[Node, str] = {}
    for node in reversed(order):
        g = adjoint.get(node)
        if g is None or node.op == "arg":
            continue
        label = program.names.get(node)
        if label and g not in program.names:
            adjoint_names.setdefault(g, f"d{loss_name}/d{label}")
        vjp = node.prim.vjp
        if vjp is None:
            raise MissingRule(f"primitive '{node.op}' has no VJP rule")
        mask = _mask_of(g) if node.prim.family == "elementwise" else None
        for x, contribution in zip(node.inputs, vjp(node, g)):
            if contribution is None or x not in active:
                continue
            contribution = _masked(contribution, mask)
            adjoint[x] = contribution if x not in adjoint else ops.add(adjoint[x], contribution)
    grads = []
    for n in names:
        arg = program.arg_nodes[n]
        g = adjoint.get(arg, ops.zeros_like(arg))
        grads.append((n, g))
        adjoint_names.setdefault(g, f"d{loss_name}/d{n}")
    names_all = dict(program.names)
    for node, label in adjoint_names.items():
        names_all.setdefault(node, label)
    return Program(program.source, program.dims, program.args, program.arg_nodes,
                   program.outputs, names_all, program.constraints, tuple(grads))
