"""A Program as a Graphviz digraph: the forward graph solid, the adjoint dashed.

Why: the adjoint is built in the same graph as the forward program (nodes
are shared), and a picture shows at a glance where the backward reuses
forward values (a dashed edge leaving a black node).
"""
from __future__ import annotations

from chainrule.compiler.ir import Node
from chainrule.compiler.notation import const_value, number_text
from chainrule.compiler.program import Program

BACKWARD_COLOR = "firebrick"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _label(node: Node, name: str | None) -> str:
    if node.op == "arg":
        return f"{node.attr('kind')} {node.attr('name')}\n{node.type}"
    if node.op == "const":
        return number_text(node.attr("value"), node.dtype)
    head = f"{name} = {node.op}" if name else node.op
    return f"{head}\n{node.type}"


def format_dot(program: Program, grad: bool, plan) -> str:
    """The digraph; `plan` (a printer.Plan) supplies the names shown in the labels."""
    forward = set(plan.forward)
    nodes = plan.forward + plan.backward
    ids = {n: f"n{i}" for i, n in enumerate(nodes)}
    outputs = {n for _, n in program.outputs}
    grads = {g: p for p, g in program.grads} if grad else {}
    out = [f"digraph {_quote(program.source.filename)} {{",
           "  rankdir=TB;",
           '  node [shape=box, style="rounded", fontname="Helvetica", fontsize=10];',
           '  edge [fontname="Helvetica", fontsize=8];']
    for node in nodes:
        attrs = [f"label={_quote(_label(node, plan.label(node)))}"]
        if node.op == "arg":
            attrs.append("shape=ellipse")
        elif node.op == "const" or const_value(node) is not None:
            attrs.append("shape=plaintext")
        if node not in forward:
            attrs.append(f"color={BACKWARD_COLOR}, fontcolor={BACKWARD_COLOR}")
        if node in outputs or node in grads:
            attrs.append("peripheries=2")
        out.append(f"  {ids[node]} [{', '.join(attrs)}];")
    for node in nodes:
        style = "" if node in forward else f" [style=dashed, color={BACKWARD_COLOR}]"
        for x in node.inputs:
            out.append(f"  {ids[x]} -> {ids[node]}{style};")
    for param, g in program.grads if grad else ():
        gid = f"grad_{param}"
        out.append(f"  {gid} [label={_quote(plan.grad_line_name(param))}, shape=plaintext, "
                   f"fontcolor={BACKWARD_COLOR}];")
        out.append(f"  {ids[g]} -> {gid} [style=dashed, color={BACKWARD_COLOR}];")
    out.append("}")
    return "\n".join(out) + "\n"
