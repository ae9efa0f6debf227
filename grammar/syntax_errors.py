"""Turn Lark's syntax errors into `CompileError`s a user can act on.

Lark reports terminal names (`RPAR`) and a raw expected set. Users need the
token they wrote (`')'`), where it is, and what would have been accepted in
plain words (`expected an expression after '+'`). The expected set comes from
`InteractiveParser.accepts()`, which replays the parser and so is exact even
where LALR merged the lookaheads of two contexts.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Callable, Iterable

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from chainrule.grammar.source import CompileError, Span

OPENERS = {"LPAR": "RPAR", "LSQB": "RSQB"}
CLOSERS = {"RPAR", "RSQB"}

_STATEMENT_KEYWORDS = {"DIM", "INPUT", "PARAM", "DEF", "OUTPUT"}
_KEYWORDS = _STATEMENT_KEYWORDS | {"TRUE", "FALSE"}
_ENDS = {"_NL", "$END"}
_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['",
    "RSQB": "']'", "COMMA": "','", "COLON": "':'", "DOT": "'.'", "EQUAL": "'='",
    "_NL": "end of line", "$END": "end of input",
}
_EXPR_START = {"NAME", "NUMBER", "TRUE", "FALSE", "LPAR", "LSQB", "MINUS"}
_COMPARISONS = {"LT", "LE", "GT", "GE", "EQEQ", "NE"}
_OPERATORS = {"PLUS", "MINUS", "STAR", "SLASH", "AT", "CARET", "POW", "DOT", "LSQB", "LPAR"}
_STATEMENT_START = _STATEMENT_KEYWORDS | {"NAME"}


def syntax_error(e: UnexpectedInput, text: str, lex: Callable[[str], Iterable[Token]]) -> CompileError:
    """The `CompileError` for Lark's error `e` on `text`; `lex` re-lexes `text`
    (through the postlexer) to find the error token's neighbours."""
    if isinstance(e, UnexpectedCharacters):
        return _character_error(text[e.pos_in_stream], e.line, e.column)
    if isinstance(e, UnexpectedToken):
        accepts = e.interactive_parser.accepts() if e.interactive_parser else set(e.expected)
        return _token_error(e.token, accepts, _context(lex(text), e.token))
    return CompileError(f"syntax error: {e}", Span(e.line, e.column, e.line, e.column + 1))


def _character_error(char: str, line: int, column: int) -> CompileError:
    span = Span(line, column, line, column + 1)
    if char.isprintable() and not char.isspace():
        return CompileError(f"unexpected character '{char}'", span)
    name = unicodedata.name(char, "control character").lower()
    return CompileError(f"invalid character U+{ord(char):04X} ({name})", span)


@dataclass
class _Context:
    """The error token's neighbours and the brackets still open before it."""

    before_previous: Token | None = None
    previous: Token | None = None
    following: Token | None = None
    open_brackets: tuple[Token, ...] = ()


def _context(tokens: Iterable[Token], error: Token) -> _Context:
    ctx = _Context()
    stack: list[Token] = []
    stream = iter(tokens)
    try:
        for tok in stream:
            if tok.start_pos >= error.start_pos:
                if tok.start_pos == error.start_pos and tok.type == error.type:
                    ctx.following = next(stream, None)
                break
            if tok.type in OPENERS:
                stack.append(tok)
            elif tok.type in CLOSERS and stack:
                stack.pop()
            ctx.before_previous, ctx.previous = ctx.previous, tok
    except UnexpectedInput:  # a bad character just after the error token
        pass
    ctx.open_brackets = tuple(stack)
    return ctx


def _describe(tok: Token) -> str:
    """A token in plain words: `')'`, `name 'y'`, `end of line`."""
    if tok.type in _ENDS:
        return "end of line" if tok.value else "end of input"
    if tok.type in ("NAME", "NUMBER"):
        return f"{tok.type.lower()} '{tok.value}'"
    if tok.type in _KEYWORDS:
        return f"keyword '{tok.value}'"
    return f"'{tok.value}'"


def _expected(accepts: set[str]) -> str:
    """What the parser would have taken instead, grouped into plain words."""
    words: list[str] = []
    rest = set(accepts)
    if _STATEMENT_START <= rest:
        words.append("a statement")
        rest -= _STATEMENT_START | {"$END"}
    if {"NAME", "NUMBER", "LPAR"} <= rest:
        words.append("an expression")
        rest -= _EXPR_START
    if rest & {"PLUS", "STAR", "CARET"}:
        words.append("an operator")
        rest -= _OPERATORS | _COMPARISONS
    words += [word for t, word in _WORDS.items() if t in rest]
    if len(words) < 2:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


def _span(tok: Token) -> Span:
    if tok.type in _ENDS:
        return Span(tok.line, tok.column, tok.line, tok.column + 1)
    return Span(tok.line, tok.column, tok.end_line, tok.end_column)


def _after(tok: Token) -> Span:
    return Span(tok.end_line, tok.end_column, tok.end_line, tok.end_column + 1)


def _first_on_line(tok: Token, before: Token | None) -> bool:
    return before is None or before.end_line < tok.line


def _bracket_error(tok: Token, accepts: set[str], ctx: _Context) -> CompileError | None:
    """A missing `)` or `]`: the postlexer joined lines, so the parser only
    notices when the next statement (or the end of input) shows up inside."""
    prev = ctx.previous
    if not ctx.open_brackets or prev is None:
        return None
    opener = ctx.open_brackets[-1]
    closer = OPENERS[opener.type]
    new_statement = _first_on_line(tok, prev) and (
        tok.type in _STATEMENT_KEYWORDS
        or (tok.type == "NAME" and ctx.following is not None and ctx.following.type == "EQUAL"))
    if (tok.type in _ENDS or new_statement) and closer in accepts:
        where = "input" if tok.type in _ENDS else "line"
        return CompileError(f"unexpected end of {where}: missing {_WORDS[closer]}", _after(prev))
    swallowed = tok.type == "EQUAL" and prev.type == "NAME" and _first_on_line(prev, ctx.before_previous)
    if (new_statement or swallowed) and opener.line < tok.line:
        return CompileError(f"'{opener.value}' is never closed", _span(opener))
    return None


def _token_error(tok: Token, accepts: set[str], ctx: _Context) -> CompileError:
    prev, span, here = ctx.previous, _span(tok), f"unexpected {_describe(tok)}"
    bracket = _bracket_error(tok, accepts, ctx)
    if bracket is not None:
        return bracket
    if tok.type in _KEYWORDS and "NAME" in accepts:
        return CompileError(f"'{tok.value}' is a keyword and cannot be used as a name", span)
    if tok.type == "EQUAL" and prev is not None and prev.type in _STATEMENT_KEYWORDS and "NAME" in accepts:
        return CompileError(f"'{prev.value}' is a keyword and cannot be used as a name", _span(prev))
    if tok.type in _COMPARISONS and "PLUS" in accepts:  # `a < b` is complete; no second `<`
        return CompileError("comparisons cannot be chained", span)
    if {"NAME", "NUMBER", "LPAR"} <= accepts and "PLUS" not in accepts and prev is not None:
        wanted = f"expected an expression after {_describe(prev)}"
        return CompileError(wanted if tok.type in _ENDS else f"{here}: {wanted}", span)
    if tok.type in CLOSERS and not ctx.open_brackets:
        return CompileError(here, span)
    expected = _expected(accepts)
    return CompileError(f"{here}: expected {expected}" if expected else here, span)
