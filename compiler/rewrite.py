"""Bottom-up graph rewriting: the engine under the simplifier and the codegen preparation."""
from __future__ import annotations

from typing import Callable

from chainrule.compiler.ir import Node, make, topo_order
from chainrule.compiler.program import Program

Rule = Callable[[Node], "Node | None"]


def rewrite_nodes(roots: list[Node], rule: Rule) -> dict[Node, Node]:
    """Map every node reachable from `roots` to its rewritten equivalent.

    Inputs are rewritten first; then `rule` is applied to the rebuilt node
    until it declines (returns None). Rules must preserve the node's type.
    """
    mapped: dict[Node, Node] = {}
    for node in topo_order(roots):
        new_inputs = [mapped[i] for i in node.inputs]
        current = node
        if any(a is not b for a, b in zip(new_inputs, node.inputs)):
            current = make(node.op, new_inputs, **dict(node.attrs))
        for _ in range(16):  # each rewrite shrinks the node; the bound is a safety net
            nxt = rule(current)
            if nxt is None:
                break
            current = nxt
        mapped[node] = current
    return mapped


def rewrite_program(program: Program, rule: Rule) -> Program:
    mapped = rewrite_nodes(program.roots(with_grad=True), rule)
    names: dict[Node, str] = {}
    for node, label in program.names.items():
        names.setdefault(mapped.get(node, node), label)
    return Program(program.source, program.dims, program.args, program.arg_nodes,
                   tuple((n, mapped[v]) for n, v in program.outputs), names,
                   program.constraints, tuple((n, mapped[v]) for n, v in program.grads))
