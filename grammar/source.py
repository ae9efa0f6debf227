"""Source text, spans and the one error type that carries a span.

Every stage after parsing reports mistakes through `CompileError`, so the CLI
and the Python API can show `file:line:col: error: message`, the source line
and a caret under the offending token, whatever stage found the problem.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """A 1-based position range in the source: where a token or node starts and ends."""

    line: int
    column: int
    end_line: int
    end_column: int


NO_SPAN = Span(1, 1, 1, 1)
_SHOWN = 160  # at most this many characters of a source line in an error message


@dataclass(frozen=True)
class Source:
    """A program's text and the name used for it in messages (a path or `<string>`)."""

    text: str
    filename: str = "<string>"

    def line_text(self, line: int) -> str:
        lines = self.text.splitlines()
        return lines[line - 1] if 1 <= line <= len(lines) else ""


class CompileError(Exception):
    """A mistake in a program, located in its source.

    `line` and `column` are 1-based; `column` points at the first character of
    the offending token or name.
    """

    def __init__(self, message: str, span: Span | None = None, source: Source | None = None):
        super().__init__(message)
        self.message = message
        self.span = span or NO_SPAN
        self.source = source

    @property
    def line(self) -> int:
        return self.span.line

    @property
    def column(self) -> int:
        return self.span.column

    @property
    def filename(self) -> str:
        return self.source.filename if self.source else "<string>"

    def with_source(self, source: Source) -> "CompileError":
        """Attach the source the span refers to (stages below the parser do not know it)."""
        if self.source is None:
            self.source = source
        return self

    def render(self) -> str:
        """`file:line:col: error: message`, the source line, and a caret under the token."""
        head = f"{self.filename}:{self.line}:{self.column}: error: {self.message}"
        if self.source is None:
            return head
        text = self.source.line_text(self.line).replace("\t", " ")
        if not text:
            return head
        width = 1
        if self.span.end_line == self.span.line and self.span.end_column > self.span.column:
            width = self.span.end_column - self.span.column
        column = self.column
        if len(text) > _SHOWN:  # a window of a very long line, around the column
            start = max(0, min(column - 1 - _SHOWN // 2, len(text) - _SHOWN))
            text = ("..." if start else "") + text[start:start + _SHOWN] + \
                ("..." if start + _SHOWN < len(text) else "")
            column = column - start + (3 if start else 0)
        caret = " " * (column - 1) + "^" + "~" * max(0, min(width, len(text) - column + 1) - 1)
        return f"{head}\n{text}\n{caret}"

    def __str__(self) -> str:
        return self.render()
