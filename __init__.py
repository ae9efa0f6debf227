"""chainrule: compile `.expr` programs into value-and-gradient functions.

    import chainrule
    fn = chainrule.compile(source)          # or chainrule.compile_file("net.expr")
    loss, grads = fn.value_and_grad(x=..., W=...)
    lib = chainrule.load_library("out/net.so")   # a `chainrule compile` library, same API
"""
from chainrule.grammar.source import CompileError
from chainrule.runtime.api import Function, compile, compile_file
from chainrule.runtime.check import check


def load_library(path):
    """Wrap a library built by `chainrule compile` as a `Function` (see runtime/library.py)."""
    from chainrule.runtime.library import load_library as load  # imports LLVM only when used
    return load(path)


__all__ = ["CompileError", "Function", "compile", "compile_file", "check", "load_library"]
__version__ = "0.1.0"
