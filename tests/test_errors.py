"""Every malformed program of the corpus gives a `CompileError` at the exact
line and column of the offending token, with the expected message."""
from __future__ import annotations

import pytest

import chainrule
from error_corpus import CORPUS, ErrorCase


def compile_error(source: str, **options) -> chainrule.CompileError:
    with pytest.raises(chainrule.CompileError) as info:
        chainrule.compile(source, backend="numpy", **options)
    return info.value


def test_corpus_is_large_and_well_formed():
    assert len(CORPUS) >= 40
    names = [c.name for c in CORPUS]
    assert len(names) == len(set(names)), "duplicate case names"
    for c in CORPUS:
        lines = c.source.splitlines()
        assert 1 <= c.line <= len(lines), c.name
        assert 1 <= c.column <= len(lines[c.line - 1]) + 1, c.name


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_error_position_and_message(case: ErrorCase):
    err = compile_error(case.source)
    assert case.message in err.message, f"message was: {err.message}"
    assert (err.line, err.column) == (case.line, case.column), (
        f"{case.name}: error at {err.line}:{err.column}, expected {case.line}:{case.column}: "
        f"{err.message}")


@pytest.mark.parametrize("case", CORPUS[::7], ids=[c.name for c in CORPUS[::7]])
def test_rendered_error_names_file_line_and_column(case: ErrorCase, tmp_path):
    path = tmp_path / "prog.expr"
    path.write_text(case.source)
    with pytest.raises(chainrule.CompileError) as info:
        chainrule.compile_file(path, backend="numpy")
    err = info.value
    text = str(err)
    head, *rest = text.splitlines()
    assert head.startswith(f"{path}:{case.line}:{case.column}: error: ")
    assert err.filename == str(path)
    if rest:  # the source line and a caret under the offending token
        assert rest[0] == case.source.splitlines()[case.line - 1].replace("\t", " ")
        assert rest[1].index("^") == case.column - 1


def test_errors_are_located_with_a_dtype_override():
    """Overriding every dtype (f32) moves no error."""
    case = next(c for c in CORPUS if c.name == "shape-mismatch")
    err = compile_error(case.source, dtype="f32")
    assert (err.line, err.column) == (case.line, case.column)


def test_first_error_wins():
    err = compile_error("param x\ny = a\nz = b\noutput x\n")
    assert (err.line, err.column) == (2, 5) and "'a'" in err.message


def test_error_is_an_exception_with_position_attributes():
    err = compile_error("param x\ny = q\noutput y\n")
    assert isinstance(err, Exception)
    assert err.line == 2 and err.column == 5 and err.filename == "<string>"
