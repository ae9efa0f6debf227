"""A Program as readable equations (text or LaTeX), a Graphviz graph, or op counts.

Why: the compiler's claim is that the adjoint it builds is the one the
backpropagation lecture derives by hand. Printing it in the user's names
(`dloss/dw1 = x1 * dloss/dz`) lets a reader check that claim line by line.

Which nodes get a line (`Plan`): every node the user named, every output and
gradient, and every computation whose text would otherwise appear more than
once. Constants, arguments, sizes and layout plumbing (broadcast, reshape,
transpose) are inlined; other single-use intermediates are inlined into
their consumer. Unnamed lines are called `t1, t2, ...`.
"""
from __future__ import annotations

from chainrule.compiler.ir import Node
from chainrule.compiler.notation import LatexSyntax, Renderer, TextSyntax, shape_text
from chainrule.compiler.opcount import format_stats, stats
from chainrule.compiler.program import Program

__all__ = ["FORMATS", "Plan", "format_program", "format_stats", "stats"]

FORMATS = ("text", "latex", "dot")
_LEAVES = ("arg", "const", "size_of")
_LAYOUT = ("broadcast", "reshape", "transpose")
MAX_INLINE = 12  # operations in one line's expression before a part is named t<k>


def is_user_name(name: str | None) -> bool:
    """User variables cannot contain '/'; adjoints are named `dloss/dz`."""
    return bool(name) and "/" not in name


class Plan:
    """Which nodes get a line, under which name, in which section.

    `forward` and `backward` are the two schedules (the backward is what the
    value-and-gradient schedule adds); `labels` names every node a line may
    mention; `deferred` holds gradients that their `dloss/dparam` line defines.
    """

    def __init__(self, program: Program, grad: bool):
        self.program = program
        self.grad = grad
        self.forward = program.schedule(False)
        forward_set = set(self.forward)
        full = program.schedule(True) if self.grad else self.forward
        self.backward = [n for n in full if n not in forward_set]
        self.loss = program.outputs[0][0]
        grad_roots = {g for _, g in program.grads} if self.grad else set()
        roots = {n for _, n in program.outputs} | grad_roots
        names = {n: self._name(n, forward_set) for n in full}

        # textual references, consumers first: an inlined node passes its own
        # count on to its inputs, so a value reached twice through an inlined
        # broadcast still gets a line of its own
        refs: dict[Node, int] = {n: 0 for n in full}
        has_line: dict[Node, bool] = {}
        for node in reversed(full):
            has_line[node] = self._worth_a_line(node, names[node], refs[node], roots)
            for x in node.inputs:
                refs[x] += 1 if has_line[node] else refs[node]

        self._split_long(full, has_line)

        taken = {n for n in program.names.values()} | set(program.dims)
        self.labels = {}
        counter = 0
        for node in self.forward + self.backward:  # t<k> ascend in print order
            if node.op == "arg":
                self.labels[node] = node.attr("name")
            elif has_line[node]:
                label = names[node]
                if label is None and node in grad_roots and node not in forward_set:
                    label = self._grad_name(node)
                while label is None or (label in taken and label != names[node]):
                    counter += 1
                    label = f"t{counter}"
                self.labels[node] = label
        self.deferred = {g for g in grad_roots if g not in forward_set and refs[g] == 0
                         and self.labels.get(g) in self.grad_names()}

    # -------------------------------------------------------------- helpers
    @staticmethod
    def _split_long(full: list[Node], has_line: dict[Node, bool]) -> None:
        """Give the biggest inlined subexpression a line of its own while an
        expression holds more than MAX_INLINE operations (producers first)."""
        size: dict[Node, int] = {}

        def inlined(x: Node) -> int:
            return 0 if has_line[x] else size[x]

        for node in full:
            own = 0 if node.op in _LEAVES or node.op in _LAYOUT else 1
            size[node] = own + sum(inlined(x) for x in node.inputs)
            while size[node] > MAX_INLINE:
                chain = [max((x for x in node.inputs if not has_line[x]), key=inlined)]
                while chain[-1].op in _LAYOUT and not has_line[chain[-1].inputs[0]] \
                        and size[chain[-1].inputs[0]] == size[chain[-1]]:
                    chain.append(chain[-1].inputs[0])  # name the computation, not its reshape
                has_line[chain[-1]] = True
                for x in reversed(chain[:-1]):
                    size[x] = sum(inlined(i) for i in x.inputs)
                size[node] = own + sum(inlined(x) for x in node.inputs)

    def _name(self, node: Node, forward_set: set[Node]) -> str | None:
        """The program's name for a node, if the printers may use it.

        Constants are shared by every use (hash-consing), so a name the
        adjoint gave one (`dloss/dloss` for the seed 1.0) is not theirs alone;
        and in the forward program only the user's own names make sense.
        """
        if node.op in _LEAVES and node.op != "arg":
            return None
        name = self.program.names.get(node)
        if node in forward_set and not is_user_name(name):
            return None
        return name

    def _grad_name(self, node: Node) -> str:
        return next(self.grad_line_name(p) for p, g in self.program.grads if g is node)

    @staticmethod
    def _worth_a_line(node: Node, name: str | None, refs: int, roots: set[Node]) -> bool:
        if node.op in _LEAVES:
            return False
        if name is not None or node in roots:
            return True
        return node.op not in _LAYOUT and refs >= 2

    def grad_line_name(self, param: str) -> str:
        return f"d{self.loss}/d{param}"

    def grad_names(self) -> set[str]:
        return {self.grad_line_name(p) for p, _ in self.program.grads}

    def label(self, node: Node) -> str | None:
        return self.labels.get(node)

    # ---------------------------------------------------------------- lines
    def forward_lines(self) -> list[tuple[str, Node]]:
        return [(self.labels[n], n) for n in self.forward if n.op != "arg" and n in self.labels]

    def backward_lines(self) -> list[tuple[str, Node]]:
        return [(self.labels[n], n) for n in self.backward
                if n in self.labels and n not in self.deferred]


def header_lines(program: Program) -> list[str]:
    """`dim`, `input` and `param` declarations, with dim names in the types."""
    lines = [f"dim {n}" if v is None else f"dim {n} = {v}" for n, v in program.dims.items()]
    by_value: dict[int, list[str]] = {}
    for name, value in program.dims.items():
        if value is not None:
            by_value.setdefault(value, []).append(name)
    for arg in program.args:
        # a constant size is shown by its dim name when exactly one dim has that value
        shape = tuple(by_value[s][0] if isinstance(s, int) and len(by_value.get(s, ())) == 1
                      else s for s in arg.type.shape)
        type_ = arg.type.dtype + (shape_text(shape) if shape else "")
        lines.append(f"{arg.kind} {arg.name}: {type_}")
    return lines


def equations(program: Program, grad: bool, renderer_for) -> tuple[list, list, list]:
    """(forward, backward, gradient) equations as (lhs, rhs) pairs of rendered text."""
    plan = Plan(program, grad)
    r = renderer_for(plan.label)
    forward = [(lhs, r.define(n)) for lhs, n in plan.forward_lines()]
    for name, node in program.outputs:
        if plan.label(node) != name:  # an output that is an argument, or an alias
            forward.append((name, r.reference(node)))
    backward = [(lhs, r.define(n)) for lhs, n in plan.backward_lines()]
    gradients = []
    defined: set[Node] = set()
    for param, g in program.grads if grad else ():
        lhs = plan.grad_line_name(param)
        if g in plan.deferred and g not in defined:
            defined.add(g)
            gradients.append((plan.label(g), r.define(g, lecture_order=True)))
        if plan.label(g) != lhs:
            gradients.append((lhs, r.reference(g)))
    return forward, backward, gradients


def format_text(program: Program, grad: bool) -> str:
    forward, backward, gradients = equations(
        program, grad, lambda label: Renderer(TextSyntax(), label))
    out = header_lines(program) + [""]
    out += [f"{lhs} = {rhs}" for lhs, rhs in forward]
    out.append("output " + ", ".join(n for n, _ in program.outputs))
    if grad:
        out += ["", "# adjoint (reverse mode)"]
        out += [f"{lhs} = {rhs}" for lhs, rhs in backward + gradients]
    return "\n".join(out) + "\n"


def format_latex(program: Program, grad: bool) -> str:
    syntax = LatexSyntax()
    forward, backward, gradients = equations(program, grad, lambda label: Renderer(syntax, label))
    out = [f"% {line}" for line in header_lines(program)]
    out.append(r"\begin{align*}")
    rows = [f"  {syntax.name(lhs)} &= {rhs}" for lhs, rhs in forward]
    if grad:
        rows += [f"  {syntax.name(lhs)} &= {rhs}" for lhs, rhs in backward + gradients]
    out.append(" \\\\\n".join(rows))
    out.append(r"\end{align*}")
    return "\n".join(out) + "\n"


def format_program(program: Program, grad: bool = False, fmt: str = "text") -> str:
    """The program (and with `grad`, its adjoint) as `text`, `latex` or `dot`."""
    if fmt == "text":
        return format_text(program, grad)
    if fmt == "latex":
        return format_latex(program, grad)
    if fmt == "dot":
        from chainrule.compiler.graphviz import format_dot
        return format_dot(program, grad, Plan(program, grad))
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
