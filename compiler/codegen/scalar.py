"""Scalar LLVM emission helpers for the elementwise primitives.

Each primitive's `emit(builder, args, node)` (declared with the primitive in
compiler/primitives/elementwise.py) is built from these. Transcendentals come
from `vmath` (inline, branch-free, so loops vectorize); the rest are plain
instructions or LLVM intrinsics that have vector forms.
"""
from __future__ import annotations

from llvmlite import ir

from chainrule.compiler.codegen import vmath
from chainrule.compiler.codegen.loops import FLOAT_TYPES
from chainrule.compiler.codegen.mathfns import math_function

# the primitives' arithmetic keeps NaN, inf and signed zeros (no nsz: 1/(1 + w) at
# w = -1 is +inf, and a sign flip there turns a gradient's -inf into +inf); the
# transcendentals inside vmath may return either zero
FASTMATH = ("arcp", "contract", "afn")
# sqrt, pow and division stay exact: with afn/arcp, x86 turns 1/sqrt(x) (and
# x^-0.5) into an rsqrt estimate plus a Newton step: NaN for x = inf, and bits lost
EXACT = ("contract",)


def intrinsic(b: ir.IRBuilder, name: str, args: list[ir.Value]) -> ir.Value:
    ty = args[0].type
    fn = b.module.declare_intrinsic(name, [ty], ir.FunctionType(ty, [a.type for a in args]))
    return b.call(fn, args, fastmath=EXACT if name in ("llvm.sqrt", "llvm.pow") else FASTMATH)


def binary(opname: str):
    """fadd/fsub/fmul/fdiv with the project's fast-math flags (division exact)."""
    flags = EXACT if opname == "fdiv" else FASTMATH

    def emit(b: ir.IRBuilder, args: list[ir.Value], node) -> ir.Value:
        return getattr(b, opname)(args[0], args[1], flags=flags)
    return emit


def call(name: str):
    """An LLVM intrinsic such as llvm.sqrt or llvm.maximum (NaN-propagating)."""
    def emit(b: ir.IRBuilder, args: list[ir.Value], node) -> ir.Value:
        return intrinsic(b, name, list(args))
    return emit


def vector_math(op: str):
    """A call to the op's vmath function; the vectorizer swaps in its vector variant."""
    def emit(b: ir.IRBuilder, args: list[ir.Value], node) -> ir.Value:
        dtype = "f64" if isinstance(args[0].type, ir.DoubleType) else "f32"
        return b.call(math_function(b.module, op, dtype), [args[0]], fastmath=FASTMATH)
    return emit


def constant(value: float, like: ir.Value) -> ir.Constant:
    return ir.Constant(like.type, value)


def neg(b, args, node):
    return b.fneg(args[0], flags=FASTMATH)


def relu(b, args, node):
    # maximum(x, 0): NaN propagates as in NumPy
    return intrinsic(b, "llvm.maximum", [args[0], constant(0.0, args[0])])


def sign(b, args, node):
    x = args[0]
    pos = b.fcmp_ordered(">", x, constant(0.0, x))
    negative = b.fcmp_ordered("<", x, constant(0.0, x))
    return b.select(pos, constant(1.0, x), b.select(negative, constant(-1.0, x), x))


def compare(symbol: str):
    # NumPy: every comparison with NaN is false except !=
    def emit(b, args, node):
        if symbol == "!=":
            return b.fcmp_unordered("!=", args[0], args[1])
        return b.fcmp_ordered(symbol, args[0], args[1])
    return emit


def where(b, args, node):
    return b.select(args[0], args[1], args[2])


def clip(b, args, node):
    x, lo, hi = args
    return intrinsic(b, "llvm.minimum", [intrinsic(b, "llvm.maximum", [x, lo]), hi])


def convert(b, args, node):
    target = FLOAT_TYPES[node.dtype]
    x = args[0]
    if x.type == target:
        return x
    return b.fpext(x, target) if node.dtype == "f64" else b.fptrunc(x, target)


def identity(b, args, node):
    return args[0]


def power(b, args, node):
    return intrinsic(b, "llvm.pow", list(args))

