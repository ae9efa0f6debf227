"""chainrule: compile `.expr` programs into value-and-gradient functions.

    import chainrule
    fn = chainrule.compile(source)          # or chainrule.compile_file("net.expr")
    loss, grads = fn.value_and_grad(x=..., W=...)
"""
from chainrule.grammar.source import CompileError
from chainrule.runtime.api import Function, compile, compile_file
from chainrule.runtime.check import check

__all__ = ["CompileError", "Function", "compile", "compile_file", "check"]
__version__ = "0.1.0"
