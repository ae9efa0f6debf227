"""The compiler pipeline, stage by stage: parse -> lower (shape check) -> autodiff -> simplify."""
from __future__ import annotations

from chainrule.compiler.autodiff import gradients
from chainrule.compiler.deepstack import run_deep
from chainrule.compiler.lower import lower
from chainrule.compiler.program import Program
from chainrule.compiler.simplify import simplify
from chainrule.grammar.parser import parse
from chainrule.grammar.source import CompileError, Source


def check_wrt(program: Program, wrt: tuple[str, ...] | None) -> None:
    if wrt is None:
        return
    params = [a.name for a in program.params]
    for name in wrt:
        if name not in params:
            raise ValueError(f"wrt names '{name}', which is not a param "
                             f"(params: {', '.join(params) or 'none'})")


def build_program(source: Source, wrt: tuple[str, ...] | None = None,
                  dtype: str | None = None, optimize: bool = True) -> Program:
    """Source text to a typed program with its gradient, simplified.

    Lowering recurses along expressions, so it runs on a big stack (deepstack).
    """
    return run_deep(_build_program, source, wrt, dtype, optimize)


def _build_program(source: Source, wrt: tuple[str, ...] | None, dtype: str | None,
                   optimize: bool) -> Program:
    module = parse(source.text, source.filename)
    program = lower(module, source, dtype)
    check_wrt(program, wrt)
    try:
        program = gradients(program, wrt)
    except CompileError as err:
        raise err.with_source(source)
    return simplify(program) if optimize else program
