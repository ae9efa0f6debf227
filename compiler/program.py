"""The plain data that flows between stages: a lowered program and its signature."""
from __future__ import annotations

from dataclasses import dataclass, field

from chainrule.compiler.ir import Node, TensorType, topo_order
from chainrule.compiler.shapes import Size
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
