"""Parse `.expr` source text into the typed AST of `chainrule.grammar.ast`.

The syntax lives in `expr.lark` alone. Lark's LALR parser drives the `_Builder`
callbacks as it reduces (the `transformer=` option), so no parse tree is built
and nothing recurses: 10,000 nested parentheses or a 10,000-term sum parse in
constant Python stack depth. Every syntax error becomes a `CompileError` that
names the offending token and what was expected in plain words.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedInput, VisitError

from chainrule.grammar import ast
from chainrule.grammar.source import CompileError, Source, Span
from chainrule.grammar.syntax_errors import CLOSERS, OPENERS, syntax_error

__all__ = ["parse"]

_GRAMMAR = Path(__file__).with_name("expr.lark")
_SURROGATE = re.compile("[\ud800-\udfff]")


def parse(text: str, filename: str = "<string>") -> ast.Module:
    """Parse a whole program; raise `CompileError` at the first syntax error."""
    if not isinstance(text, str):
        raise TypeError(f"parse() needs the program as str, not {type(text).__name__}")
    text = text.removeprefix("\ufeff")  # a byte order mark is not part of line 1
    source = Source(text, filename)
    surrogate = _SURROGATE.search(text)
    if surrogate is not None:  # only a str built in Python has one: no file decodes to it
        at = surrogate.start()
        line, column = text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at)
        raise CompileError(f"invalid character U+{ord(text[at]):04X} (a lone surrogate: the "
                           "program is not valid Unicode text)",
                           Span(line, column, line, column + 1), source)
    try:
        return _lark().parse(text)
    except UnexpectedInput as e:
        raise syntax_error(e, text, _lark().lex).with_source(source) from None
    except VisitError as e:  # only if a callback error ever arrives wrapped
        if isinstance(e.orig_exc, CompileError):
            raise e.orig_exc.with_source(source) from None
        raise
    except CompileError as e:
        raise e.with_source(source) from None


@functools.lru_cache(maxsize=None)
def _lark() -> Lark:
    """Build the parser once per process: the LALR tables take a while."""
    return Lark(
        _GRAMMAR.read_text(encoding="utf-8"),
        parser="lalr",
        lexer="basic",
        postlex=_Postlexer(),
        transformer=_Builder(),
        keep_all_tokens=True,
        maybe_placeholders=False,
    )


# ---------------------------------------------------------------- postlexer
class _Postlexer:
    """Make line structure LALR-friendly.

    Drops `_NL` inside brackets (implicit continuation), drops blank lines, and
    ends the last statement with an empty `_NL` at the end of its last token,
    so the grammar can simply say `(_statement _NL)*`.
    """

    always_accept = ("_NL",)

    def process(self, stream: Iterable[Token]) -> Iterator[Token]:
        depth = 0
        last: Token | None = None
        for tok in stream:
            if tok.type == "_NL":
                if depth or last is None or last.type == "_NL":
                    continue
            elif tok.type in OPENERS:
                depth += 1
            elif tok.type in CLOSERS:
                depth = max(0, depth - 1)
            last = tok
            yield tok
        if last is not None and last.type != "_NL":
            yield _end_token(last)


def _end_token(last: Token) -> Token:
    """The empty `_NL` that stands for the end of input, just after `last`."""
    return Token("_NL", "", last.end_pos, last.end_line, last.end_column,
                 last.end_line, last.end_column, last.end_pos)


# -------------------------------------------------------------- AST builder
@dataclass(frozen=True)
class _Paren:
    """A parenthesized expression: the inner node keeps its own span, while
    the node that contains it spans the parentheses too."""

    node: ast.Expr
    span: Span


def _span(x: object) -> Span:
    if isinstance(x, Token):
        return Span(x.line, x.column, x.end_line, x.end_column)
    return x.span  # type: ignore[attr-defined]


def _join(first: object, last: object) -> Span:
    a, b = _span(first), _span(last)
    return Span(a.line, a.column, b.end_line, b.end_column)


def _expr(x: object) -> ast.Expr:
    return x.node if isinstance(x, _Paren) else x  # type: ignore[return-value]


def _values(children: list) -> list:
    """The children that are not punctuation tokens, parentheses unwrapped."""
    return [_expr(c) for c in children if not isinstance(c, Token)]


def _name(tok: Token) -> ast.Name:
    return ast.Name(str(tok), _span(tok))


def _names(children: list) -> tuple[ast.Name, ...]:
    return tuple(_name(c) for c in children if isinstance(c, Token) and c.type == "NAME")


def _integer(tok: Token) -> int:
    if not tok.value.isdigit():
        raise CompileError(f"a size must be an integer, got '{tok.value}'", _span(tok))
    return int(tok.value)


def _binop(op: str):
    def build(self: "_Builder", c: list) -> ast.BinOp:
        return ast.BinOp(op, _expr(c[0]), _expr(c[2]), _join(c[0], c[2]))
    return build


def _compare(op: str):
    def build(self: "_Builder", c: list) -> ast.Compare:
        return ast.Compare(op, _expr(c[0]), _expr(c[2]), _join(c[0], c[2]))
    return build


class _Builder(Transformer):
    """LALR reduce callbacks: each gets the rule's children (all tokens kept)
    and returns an AST node. Stateless, so one instance serves every parse."""

    add, sub, mul, div, matmul = (_binop(op) for op in "+-*/@")
    lt, le, gt, ge, eq, ne = (_compare(op) for op in ("<", "<=", ">", ">=", "==", "!="))

    def pow(self, c: list) -> ast.BinOp:  # `**` is a synonym of `^`
        return ast.BinOp("^", _expr(c[0]), _expr(c[2]), _join(c[0], c[2]))

    def neg(self, c: list) -> ast.Neg:
        return ast.Neg(_expr(c[1]), _join(c[0], c[1]))

    def number(self, c: list) -> ast.Number:
        text = c[0].value
        value = int(text) if text.isdigit() else float(text)
        return ast.Number(value, text, _span(c[0]))

    def name(self, c: list) -> ast.Name:
        return _name(c[0])

    def true(self, c: list) -> ast.Bool:
        return ast.Bool(True, _span(c[0]))

    def false(self, c: list) -> ast.Bool:
        return ast.Bool(False, _span(c[0]))

    def paren(self, c: list) -> _Paren:
        return _Paren(_expr(c[1]), _join(c[0], c[2]))

    def tuple(self, c: list) -> ast.TupleExpr:
        return ast.TupleExpr(tuple(_values(c)), _join(c[0], c[-1]))

    def list(self, c: list) -> ast.ListExpr:
        return ast.ListExpr(tuple(_values(c)), _join(c[0], c[-1]))

    def keyword(self, c: list) -> ast.Keyword:
        return ast.Keyword(c[0].value, _expr(c[2]), _join(c[0], c[2]))

    def call(self, c: list) -> ast.Call:
        args: list[ast.Expr] = []
        kwargs: list[ast.Keyword] = []
        for item in _values(c):
            if isinstance(item, ast.Keyword):
                if any(k.name == item.name for k in kwargs):
                    raise CompileError(f"duplicate keyword argument '{item.name}'", item.span)
                kwargs.append(item)
            elif kwargs:
                raise CompileError("positional argument follows keyword argument", item.span)
            else:
                args.append(item)
        return ast.Call(c[0].value, tuple(args), tuple(kwargs), _join(c[0], c[-1]), _span(c[0]))

    def index(self, c: list) -> ast.Index:
        return ast.Index(_expr(c[0]), tuple(_values(c[2:-1])), _join(c[0], c[-1]))

    def slice(self, c: list) -> ast.Slice:
        parts: list[ast.Expr | None] = [None, None, None]
        colons = 0
        for item in c:
            if isinstance(item, Token):  # a COLON
                colons += 1
            else:
                parts[colons] = _expr(item)
        return ast.Slice(parts[0], parts[1], parts[2], _join(c[0], c[-1]))

    def attribute(self, c: list) -> ast.Transpose:
        if c[2].value != "T":
            raise CompileError(f"unknown attribute '.{c[2].value}': only '.T' (transpose) exists",
                               _join(c[1], c[2]))
        return ast.Transpose(_expr(c[0]), _join(c[0], c[2]))

    # statements
    def dim_item(self, c: list) -> tuple[ast.DimItem, Token]:
        # DimItem has no span of its own: hand the last token on to dim_decl.
        return ast.DimItem(_name(c[0]), _integer(c[2]) if len(c) == 3 else None), c[-1]

    def dim_decl(self, c: list) -> ast.DimDecl:
        items = [x for x in c if isinstance(x, tuple)]
        return ast.DimDecl(tuple(item for item, _ in items), _join(c[0], items[-1][1]))

    def type(self, c: list) -> ast.TypeSpec:
        dtype = None
        if c[0].type == "NAME":
            dtype = c[0].value
            if dtype not in ("f32", "f64"):
                raise CompileError(f"unknown type '{dtype}': expected f32 or f64", _span(c[0]))
        sizes = [t for t in c if t.type == "NUMBER" or (t.type == "NAME" and t is not c[0])]
        shape = None
        if any(t.type == "LSQB" for t in c):
            shape = tuple(_integer(t) if t.type == "NUMBER" else _name(t) for t in sizes)
        return ast.TypeSpec(dtype, shape, _join(c[0], c[-1]))

    def arg_decl(self, c: list) -> ast.ArgDecl:
        spec = c[-1] if isinstance(c[-1], ast.TypeSpec) else None
        return ast.ArgDecl(c[0].value, _names(c[1:]), spec, _join(c[0], c[-1]))

    def assign(self, c: list) -> ast.Assign:
        return ast.Assign(_name(c[0]), _expr(c[2]), _join(c[0], c[2]))

    def function_def(self, c: list) -> ast.Def:
        params = _names(c[2:-2])
        seen: set[str] = set()
        for p in params:
            if p.id in seen:
                raise CompileError(f"duplicate parameter '{p.id}'", p.span)
            seen.add(p.id)
        return ast.Def(_name(c[1]), params, _expr(c[-1]), _join(c[0], c[-1]))

    def output(self, c: list) -> ast.Output:
        return ast.Output(_names(c[1:]), _join(c[0], c[-1]))

    def start(self, c: list) -> ast.Module:
        return ast.Module(tuple(x for x in c if not isinstance(x, Token)))
