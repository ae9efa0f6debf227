"""Reading program files: a file that is not UTF-8 text is a located error, not a crash."""
from __future__ import annotations

import os

from chainrule.grammar.source import CompileError, Source, Span


def read_source(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        before = data[:err.start]
        line = before.count(b"\n") + 1
        column = err.start - (before.rfind(b"\n") + 1) + 1
        raise CompileError(f"the file is not UTF-8 text (byte 0x{data[err.start]:02x})",
                           Span(line, column, line, column + 1),
                           Source("", os.fspath(path))) from None
