"""The plain data that flows between stages: a lowered program and its signature."""
from __future__ import annotations

from dataclasses import dataclass, field

from chainrule.compiler.ir import Node, TensorType, topo_order
from chainrule.compiler.shapes import Size, Sym
from chainrule.grammar.source import Source, Span


@dataclass(frozen=True)
class ArgInfo:
    """A declared `input` or `param`."""

    name: str
    kind: str  # "input" or "param"
    type: TensorType
    span: Span


@dataclass(frozen=True)
class Constraint:
    """A symbolic size that must be >= `minimum` once dims are bound (e.g. `N - 1 >= 0`)."""

    size: Size
    minimum: int
    reason: str


@dataclass
class Program:
    """A typed program: its signature, its outputs and, after autodiff, its gradients.

    `names` maps nodes to the user's variable names (and, after autodiff, the
    adjoints to `dloss/dx`), so printers speak the user's language.
    """

    source: Source
    dims: dict[str, int | None]  # declared dims: constant value or None (symbolic)
    args: tuple[ArgInfo, ...]
    arg_nodes: dict[str, Node]
    outputs: tuple[tuple[str, Node], ...]
    names: dict[Node, str] = field(default_factory=dict)
    constraints: tuple[Constraint, ...] = ()
    grads: tuple[tuple[str, Node], ...] = ()

    @property
    def params(self) -> tuple[ArgInfo, ...]:
        return tuple(a for a in self.args if a.kind == "param")

    @property
    def inputs(self) -> tuple[ArgInfo, ...]:
        return tuple(a for a in self.args if a.kind == "input")

    @property
    def symbolic_dims(self) -> tuple[str, ...]:
        return tuple(n for n, v in self.dims.items() if v is None)

    def roots(self, with_grad: bool) -> list[Node]:
        return [n for _, n in self.outputs] + ([n for _, n in self.grads] if with_grad else [])

    def schedule(self, with_grad: bool) -> list[Node]:
        """Every node needed for the outputs (and gradients), inputs first.

        A value-only schedule reaches none of the backward: dead-code elimination
        falls out of walking from the roots.
        """
        return topo_order(self.roots(with_grad))


@dataclass(frozen=True)
class Signature:
    """What a caller needs of a compiled program: names, kinds, types and size rules.

    It is plain data (JSON round-trips it), so a program loaded from the disk
    cache can be called without parsing or lowering its source again.
    """

    filename: str
    dims: tuple[tuple[str, int | None], ...]
    args: tuple[ArgInfo, ...]
    outputs: tuple[tuple[str, TensorType], ...]
    grads: tuple[tuple[str, TensorType], ...]
    constraints: tuple[Constraint, ...]

    @property
    def symbolic_dims(self) -> tuple[str, ...]:
        return tuple(n for n, v in self.dims if v is None)

    def to_json(self) -> dict:
        return {"filename": self.filename, "dims": [list(d) for d in self.dims],
                "args": [[a.name, a.kind, _type_json(a.type), list(astuple_span(a.span))]
                         for a in self.args],
                "outputs": [[n, _type_json(t)] for n, t in self.outputs],
                "grads": [[n, _type_json(t)] for n, t in self.grads],
                "constraints": [[_size_json(c.size), c.minimum, c.reason]
                                for c in self.constraints]}

    @classmethod
    def from_json(cls, data: dict) -> "Signature":
        return cls(data["filename"], tuple((n, v) for n, v in data["dims"]),
                   tuple(ArgInfo(n, k, _type_from(t), Span(*s)) for n, k, t, s in data["args"]),
                   tuple((n, _type_from(t)) for n, t in data["outputs"]),
                   tuple((n, _type_from(t)) for n, t in data["grads"]),
                   tuple(Constraint(_size_from(s), m, r) for s, m, r in data["constraints"]))


def signature_of(program: Program) -> Signature:
    return Signature(program.source.filename, tuple(program.dims.items()), program.args,
                     tuple((n, v.type) for n, v in program.outputs),
                     tuple((n, v.type) for n, v in program.grads), program.constraints)


def astuple_span(span: Span) -> tuple[int, int, int, int]:
    return span.line, span.column, span.end_line, span.end_column


def _size_json(s: Size):
    return s if isinstance(s, int) else {"terms": [list(t) for t in s.terms],
                                          "const": s.const, "div": s.div}


def _size_from(data) -> Size:
    if isinstance(data, int):
        return data
    return Sym(tuple((n, c) for n, c in data["terms"]), data["const"], data["div"])


def _type_json(t: TensorType) -> list:
    return [t.dtype, [_size_json(s) for s in t.shape]]


def _type_from(data) -> TensorType:
    return TensorType(data[0], tuple(_size_from(s) for s in data[1]))
