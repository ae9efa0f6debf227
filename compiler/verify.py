"""The IR verifier: structural invariants every stage must preserve.

`verify(program)` checks, for the forward and the gradient graph:
- every node's primitive is registered and its type is exactly what the
  primitive's shape rule infers from its inputs' types and its attributes;
- every node is the interned one (rebuilding it gives the same object);
- the schedule lists every input before its users, and each node once;
- arguments are the program's own declared arguments, with their types;
- symbolic sizes only name declared symbolic dims;
- the first output is a float scalar, outputs are never masks, and each
  gradient has exactly its param's type.
It raises `IRError` naming the offending node; the tests run it on every
program they build.
"""
from __future__ import annotations

from chainrule.compiler.ir import FLOAT_DTYPES, Node, registry
from chainrule.compiler.program import Program
from chainrule.compiler.shapes import ShapeError, size_names


class IRError(Exception):
    """A broken IR invariant."""


def _fail(node: Node | None, message: str) -> None:
    raise IRError(f"{message}" + (f" at {node!r}" if node is not None else ""))


def verify_nodes(schedule: list[Node], symbolic: set[str] | None = None) -> None:
    """Check a schedule: registered ops, types = inferred types, inputs first, interned."""
    position: dict[int, int] = {}
    for i, node in enumerate(schedule):
        if id(node) in position:
            _fail(node, "node scheduled twice")
        position[id(node)] = i
        if node.op not in registry():
            _fail(node, f"unregistered primitive '{node.op}'")
        for inp in node.inputs:
            if not isinstance(inp, Node):
                _fail(node, f"input {inp!r} is not a node")
            if position.get(id(inp), i) >= i:
                _fail(node, f"input {inp!r} is not scheduled before its user")
        try:
            inferred = registry()[node.op].infer([x.type for x in node.inputs], dict(node.attrs))
        except ShapeError as err:
            _fail(node, f"shape rule rejects the node: {err}")
        if inferred != node.type:
            _fail(node, f"type {node.type} differs from the inferred {inferred}")
        if Node(node.op, node.inputs, node.attrs, node.type) is not node:
            _fail(node, "node is not interned")
        if node.type.dtype not in FLOAT_DTYPES + ("bool",):
            _fail(node, f"unknown dtype {node.type.dtype}")
        if symbolic is not None:
            for s in node.shape:
                unknown = set(size_names(s)) - symbolic
                if unknown:
                    _fail(node, f"size {s} names undeclared dims {sorted(unknown)}")


def verify(program: Program) -> None:
    """Check every invariant of `program` (see the module docstring)."""
    symbolic = set(program.symbolic_dims)
    declared = {a.name: a for a in program.args}
    if set(program.arg_nodes) != set(declared):
        _fail(None, "arg_nodes and declared args differ")
    for name, node in program.arg_nodes.items():
        if node.op != "arg" or node.attr("name") != name:
            _fail(node, f"argument '{name}' is not its arg node")
        if node.type != declared[name].type or node.attr("kind") != declared[name].kind:
            _fail(node, f"argument '{name}' has type {node.type}, declared {declared[name].type}")
    for with_grad in (False, True):
        schedule = program.schedule(with_grad)
        verify_nodes(schedule, symbolic)
        for node in schedule:
            if node.op == "arg" and program.arg_nodes.get(node.attr("name")) is not node:
                _fail(node, "an argument node that is not the program's")
    if not program.outputs:
        _fail(None, "the program has no outputs")
    first = program.outputs[0][1]
    if first.shape != () or first.dtype not in FLOAT_DTYPES:
        _fail(first, "the first output is not a float scalar")
    for name, node in program.outputs:
        if node.dtype not in FLOAT_DTYPES:
            _fail(node, f"output '{name}' is not a float tensor")
    params = {a.name for a in program.params}
    for name, g in program.grads:
        if name not in params:
            _fail(g, f"gradient for '{name}', which is not a param")
        if g.type != program.arg_nodes[name].type:
            _fail(g, f"gradient of '{name}' has type {g.type}, "
                     f"its param {program.arg_nodes[name].type}")
