"""Reverse mode: the adjoint program of a Program, as IR in the same primitives.

A forward sweep marks the nodes that depend on a param; a reverse sweep in
reverse topological order hands each node's cotangent to its primitive's VJP
and sums the contributions arriving at every input (the fan-out sum of
backpropagation: dL/dz = sum over consumers c of dL/dc * dc/dz).

NaN-safe `where`: a cotangent of the form `where(m, g, 0)` is "masked". Through
an elementwise primitive the mask is carried to every contribution it
produces, so an element the `where` did not choose gets exactly zero even
where the unchosen branch's derivative is infinite or NaN (sqrt, log at 0).
Through the structure-only primitives (layout, reduce_sum) the mask is moved
by the same VJP, and two contributions masked alike are summed under the
mask, so `where(x > 0, log(x) + log(x)^2, 0)` and `where(m, sqrt(s), 0)` with
a broadcast `s` stay exactly zero where not chosen too.
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


def _is_constant(x: Node) -> bool:
    """Constants are shared by every use (hash-consing): they never get an adjoint's name."""
    while x.op in ("broadcast", "reshape"):
        x = x.inputs[0]
    return x.op == "const"


def _is_zero(x: Node) -> bool:
    while x.op == "broadcast":
        x = x.inputs[0]
    return x.op == "const" and x.attr("value") == 0.0


def _masked(contribution: Node, mask: tuple[Node, bool] | None) -> Node:
    if mask is None or mask[0].shape not in ((), contribution.shape):
        return contribution
    m, chosen_when_true = mask
    m = ops.broadcast_to(m, contribution.shape)  # a scalar choice covers every element
    return ops.where(m, contribution, 0.0) if chosen_when_true else ops.where(m, 0.0, contribution)


def _unmasked(g: Node, mask: tuple[Node, bool]) -> Node:
    return g.inputs[1] if mask[1] else g.inputs[2]


def _accumulate(old: Node, new: Node) -> Node:
    """old + new; where(m, a, 0) + where(m, b, 0) stays masked as where(m, a + b, 0)."""
    mask = _mask_of(old)
    if mask is not None and mask == _mask_of(new):
        return _masked(ops.add(_unmasked(old, mask), _unmasked(new, mask)), mask)
    return ops.add(old, new)


def _input_masks(node: Node, g: Node) -> list | None:
    """The mask of each input's contribution when the cotangent `g` is masked."""
    mask = _mask_of(g)
    if mask is None:
        return None
    if node.prim.family == "elementwise" or mask[0].shape == ():
        return [mask] * len(node.inputs)  # a scalar choice masks every input whole
    if node.prim.family == "layout" or node.op == "reduce_sum":
        # move a 0/1 indicator of the chosen elements through the same VJP: an
        # input element is chosen when any element it flows into is
        m, chosen_when_true = mask
        one = ops.const(1.0, g.dtype)
        indicator = ops.where(m, one, 0.0) if chosen_when_true else ops.where(m, 0.0, one)
        return [None if t is None else (ops.compare("ne", t, 0.0), True)
                for t in node.prim.vjp(node, indicator)]
    return None


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
        if label and g not in program.names and not _is_constant(g):
            adjoint_names.setdefault(g, f"d{loss_name}/d{label}")
        vjp = node.prim.vjp
        if vjp is None:
            raise MissingRule(f"primitive '{node.op}' has no VJP rule")
        contributions = vjp(node, g)
        masks = _input_masks(node, g) or [None] * len(node.inputs)
        for x, contribution, mask in zip(node.inputs, contributions, masks):
            if contribution is None or x not in active:
                continue
            if x.op == "arg" and node.prim.family != "elementwise":
                mask = None  # layout and sum VJPs only move exact zeros; nothing is upstream
            contribution = _masked(contribution, mask)
            adjoint[x] = contribution if x not in adjoint else _accumulate(adjoint[x], contribution)
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
