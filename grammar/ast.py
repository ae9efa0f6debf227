"""Typed AST of the `.expr` language, built by the parser's Transformer.

Nodes are frozen dataclasses; every one carries the `Span` of the source it
came from, so lowering can report shape and name errors at the right token.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from chainrule.grammar.source import Span


# ----------------------------------------------------------------- expressions
@dataclass(frozen=True)
class Number:
    value: float
    text: str
    span: Span


@dataclass(frozen=True)
class Bool:
    value: bool
    span: Span


@dataclass(frozen=True)
class Name:
    id: str
    span: Span


@dataclass(frozen=True)
class BinOp:
    """`left op right` for op in `+ - * / @ ^` (`**` is parsed as `^`)."""

    op: str
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(frozen=True)
class Compare:
    """`left op right` for op in `< <= > >= == !=`; yields a mask."""

    op: str
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(frozen=True)
class Neg:
    operand: "Expr"
    span: Span


@dataclass(frozen=True)
class Keyword:
    name: str
    value: "Expr"
    span: Span


@dataclass(frozen=True)
class Call:
    """`func(args..., key=value...)`; `func` is a builtin or a `def` name."""

    func: str
    args: tuple["Expr", ...]
    kwargs: tuple[Keyword, ...]
    span: Span
    func_span: Span


@dataclass(frozen=True)
class ListExpr:
    """`[a, b, ...]`: a shape for reshape or the operand list of concat."""

    items: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True)
class TupleExpr:
    """`(a, b, ...)` with at least one comma: an axis tuple."""

    items: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True)
class Slice:
    """`start:stop:step` inside brackets; each part may be None."""

    start: "Expr | None"
    stop: "Expr | None"
    step: "Expr | None"
    span: Span


@dataclass(frozen=True)
class Index:
    """`value[items...]`: one integer or slice per leading axis."""

    value: "Expr"
    items: tuple["Expr | Slice", ...]
    span: Span


@dataclass(frozen=True)
class Transpose:
    """`value.T`."""

    value: "Expr"
    span: Span


Expr = Union[Number, Bool, Name, BinOp, Compare, Neg, Call, ListExpr, TupleExpr, Index, Transpose]


# ------------------------------------------------------------------ statements
@dataclass(frozen=True)
class TypeSpec:
    """`f32[B, 784]`, `f64`, `[3]`: dtype None means f64, shape None a scalar.

    Shape items are ints or `Name`s of dims.
    """

    dtype: str | None
    shape: "tuple[int | Name, ...] | None"
    span: Span


@dataclass(frozen=True)
class DimItem:
    name: Name
    value: int | None


@dataclass(frozen=True)
class DimDecl:
    items: tuple[DimItem, ...]
    span: Span


@dataclass(frozen=True)
class ArgDecl:
    """`input ...` or `param ...`."""

    kind: str
    names: tuple[Name, ...]
    type: TypeSpec | None
    span: Span


@dataclass(frozen=True)
class Assign:
    target: Name
    value: Expr
    span: Span


@dataclass(frozen=True)
class Def:
    name: Name
    params: tuple[Name, ...]
    body: Expr
    span: Span


@dataclass(frozen=True)
class Output:
    names: tuple[Name, ...]
    span: Span


Statement = Union[DimDecl, ArgDecl, Assign, Def, Output]


@dataclass(frozen=True)
class Module:
    """A whole `.expr` program in source order."""

    statements: tuple[Statement, ...]
