"""Expressions of the IR as text in the language's own notation, or as LaTeX.

Why a separate module: the printers decide *which* nodes get a line of their
own (`printer.py`); this module only spells one node's expression, with
infix operators where the language has them, function calls elsewhere, and
the fewest parentheses the precedence rules of `language.md` allow. The two
spellings share the structure (`Renderer`) and differ only in the
`Syntax` that produces the strings.

Layout plumbing that lowering inserted is hidden where the language makes
it implicit: a `broadcast` feeding an elementwise operation is NumPy
broadcasting, `reshape(matmul(reshape(...)))` is a 1-D `@`, and constants are
printed as numbers.
"""
from __future__ import annotations

import math
import re
from typing import Callable

import numpy as np

from chainrule.compiler.ir import Node
from chainrule.compiler.shapes import ShapeError, Size, Sym, add_size, broadcast_shapes, scale_size

# precedence, loosest first (language.md): a subexpression needs parentheses
# when it binds more loosely than its context requires
CMP, ADD, MUL, NEG, POW, POST, ATOM = range(1, 8)

_INFIX = {"add": ("+", ADD), "sub": ("-", ADD), "mul": ("*", MUL), "div": ("/", MUL),
          "matmul": ("@", MUL), "lt": ("<", CMP), "le": ("<=", CMP), "gt": (">", CMP),
          "ge": (">=", CMP), "eq": ("==", CMP), "ne": ("!=", CMP)}
_REDUCTIONS = {"reduce_sum": "sum", "reduce_max": "max", "reduce_min": "min"}
ELEMENTWISE_FAMILY = "elementwise"


def number_text(value: float, dtype: str) -> str:
    """The shortest decimal that reads back as `value` in `dtype` (2.0 -> '2')."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == int(value) and abs(value) < 1e16:
        return "-0" if value == 0 and math.copysign(1, value) < 0 else str(int(value))
    x = np.float32(value) if dtype == "f32" else np.float64(value)
    if 1e-4 <= abs(value) < 1e16:
        return np.format_float_positional(x, unique=True, trim="-")
    return np.format_float_scientific(x, unique=True, trim="-").replace("e+", "e")


def size_text(size: Size) -> tuple[str, int]:
    """A size as text with its precedence (`N - 1` is a sum)."""
    if isinstance(size, int):
        return str(size), ATOM
    text = str(size)
    simple = len(size.terms) == 1 and not size.const and size.div == 1 and size.terms[0][1] == 1
    return text, ATOM if simple else ADD


def shape_text(shape: tuple) -> str:
    return "[" + ", ".join(size_text(s)[0] for s in shape) + "]"


def _difference(a: Size, b: Size) -> int | None:
    """a - b when it is a known integer, else None."""
    try:
        d = add_size(a, scale_size(b, -1))
    except ShapeError:
        return None
    return d if isinstance(d, int) else None


def _bound(value: Size, full: Size) -> str | None:
    """A slice bound as the language writes it: a constant, negative from the end."""
    from_end = _difference(value, full)
    if isinstance(value, int) and value >= 0:
        return str(value)
    if from_end is not None and from_end < 0:
        return str(from_end)
    return None


def slice_text(starts: tuple, sizes: tuple, steps: tuple, shape: tuple) -> str | None:
    """`[1:, ::2]`-style text of a strided range, or None if the language cannot say it."""
    items = []
    for start, size, step, full in zip(starts, sizes, steps, shape):
        if step <= 0:
            return None
        if start == 0 and step == 1 and size == full:
            items.append(":")
            continue
        try:
            stop = add_size(start, scale_size(size, step) if step == 1 else
                            add_size(scale_size(size, step), 1 - step))
        except ShapeError:
            return None
        lo = "" if start == 0 else _bound(start, full)
        hi = "" if stop == full or _difference(stop, full) == 0 else _bound(stop, full)
        if lo is None or hi is None:
            return None
        items.append(f"{lo}:{hi}" + (f":{step}" if step != 1 else ""))
    while len(items) > 1 and items[-1] == ":":
        items.pop()
    return "[" + ", ".join(items) + "]"


def const_value(node: Node) -> float | None:
    """The number a constant stands for, seen through broadcasts and reshapes."""
    while node.op in ("broadcast", "reshape"):
        node = node.inputs[0]
    return node.attr("value") if node.op == "const" else None


# ------------------------------------------------------------------- syntaxes
class TextSyntax:
    """The `.expr` language itself: what a user would write."""

    lparen, rparen = "(", ")"

    def name(self, label: str) -> str:
        return label

    def number(self, text: str) -> str:
        return text

    def infix(self, op: str, a: str, b: str) -> tuple[str, int]:
        symbol, prec = _INFIX[op]
        return f"{a} {symbol} {b}", prec

    def infix_operands_need_parens(self, op: str) -> bool:
        return True

    def power(self, base: str, exponent: str) -> str:
        return f"{base}^{exponent}"

    def neg(self, x: str) -> str:
        return f"-{x}"

    def call(self, fn: str, args: list[str], keywords: list[tuple[str, str]] = ()) -> str:
        parts = args + [f"{k}={v}" for k, v in keywords]
        return f"{fn}({', '.join(parts)})"

    def transpose(self, x: str) -> str:
        return f"{x}.T"

    def index(self, x: str, text: str) -> str:
        return f"{x}{text}"

    def size(self, size: Size) -> tuple[str, int]:
        return size_text(size)

    def product(self, parts: list[str]) -> str:
        return "*".join(parts)


class LatexSyntax(TextSyntax):
    """The same expressions typeset: \\cdot, \\frac, ^{}, \\sigma, \\mathrm{relu}."""

    lparen, rparen = r"\left(", r"\right)"
    _FUNCTIONS = {"sigmoid": r"\sigma", "exp": r"\exp", "log": r"\log", "sin": r"\sin",
                  "cos": r"\cos", "tan": r"\tan", "tanh": r"\tanh"}
    _SYMBOLS = {"add": "+", "sub": "-", "mul": r"\cdot", "matmul": r"\mathbin{@}", "lt": "<",
                "le": r"\leq", "gt": ">", "ge": r"\geq", "eq": "=", "ne": r"\neq"}

    def name(self, label: str) -> str:
        if "/" in label:  # an adjoint, dloss/dz
            top, bottom = label.split("/", 1)
            return (rf"\frac{{\partial {self.name(top[1:])}}}"
                    rf"{{\partial {self.name(bottom[1:])}}}")
        match = re.fullmatch(r"([A-Za-z]+)_?([0-9]+)", label)
        if match:
            return f"{match.group(1)}_{{{match.group(2)}}}"
        return label.replace("_", r"\_")

    def number(self, text: str) -> str:
        if "e" in text and text not in ("inf", "-inf"):
            mantissa, exponent = text.split("e")
            power = f"10^{{{int(exponent)}}}"
            return power if mantissa == "1" else rf"{mantissa} \times {power}"
        return {"inf": r"\infty", "-inf": r"-\infty", "nan": r"\mathrm{NaN}"}.get(text, text)

    def infix(self, op: str, a: str, b: str) -> tuple[str, int]:
        if op == "div":
            return rf"\frac{{{a}}}{{{b}}}", ATOM
        return f"{a} {self._SYMBOLS[op]} {b}", _INFIX[op][1]

    def infix_operands_need_parens(self, op: str) -> bool:
        return op != "div"  # \frac groups its operands itself

    def power(self, base: str, exponent: str) -> str:
        return f"{{{base}}}^{{{exponent}}}"

    def call(self, fn: str, args: list[str], keywords: list[tuple[str, str]] = ()) -> str:
        if fn == "sqrt" and not keywords:
            return rf"\sqrt{{{args[0]}}}"
        if fn == "abs" and not keywords:
            return rf"\left|{args[0]}\right|"
        head = self._FUNCTIONS.get(fn) or r"\mathrm{" + fn.replace("_", r"\_") + "}"
        parts = args + [rf"\mathrm{{{k}}}{{=}}{v}" for k, v in keywords]
        return rf"{head}\left({', '.join(parts)}\right)"

    def transpose(self, x: str) -> str:
        return f"{{{x}}}^{{\\top}}"

    def index(self, x: str, text: str) -> str:
        return f"{{{x}}}_{{{text}}}"

    def size(self, size: Size) -> tuple[str, int]:
        text, prec = size_text(size)
        return self.name(text) if prec == ATOM and not text.isdigit() else text, prec

    def product(self, parts: list[str]) -> str:
        return r" \cdot ".join(parts)


# ------------------------------------------------------------------- renderer
class Renderer:
    """Spells the expression that defines a node, referring to named nodes by name.

    `label(node)` returns the name of a node that has a line (or is an
    argument), or None when the node is to be inlined into its consumer.
    """

    def __init__(self, syntax: TextSyntax, label: Callable[[Node], str | None]):
        self.syntax = syntax
        self.label = label

    # entry points
    def define(self, node: Node, lecture_order: bool = False) -> str:
        """The right-hand side of `name = ...` for `node` (never just its own name)."""
        if lecture_order and node.op == "mul":
            a, b = node.inputs
            if self._is_adjoint(a) and not self._is_adjoint(b):
                return self._binary("mul", [b, a], node)[0]
        return self._build(node, in_elementwise=False)[0]

    def reference(self, node: Node) -> str:
        """How a line mentions `node`: its name, or its whole expression if it has none."""
        return self._expr(node, False)[0]

    # internals
    def _is_adjoint(self, node: Node) -> bool:
        name = self.label(node)
        return bool(name and "/" in name)

    def _paren(self, text: str) -> str:
        return f"{self.syntax.lparen}{text}{self.syntax.rparen}"

    def _wrap(self, item: tuple[str, int], minimum: int) -> str:
        text, prec = item
        return text if prec >= minimum else self._paren(text)

    def _expr(self, node: Node, in_elementwise: bool) -> tuple[str, int]:
        name = self.label(node)
        if name is not None:
            # `dloss/dz` reads as one atom, except where a `/` or `^` would regroup it
            return self.syntax.name(name), ATOM if "/" not in name else ATOM - 0.5
        return self._build(node, in_elementwise)

    def _build(self, node: Node, in_elementwise: bool) -> tuple[str, int]:
        s = self.syntax
        op = node.op
        value = const_value(node)
        if value is not None and (op == "const" or in_elementwise):
            text = s.number(number_text(value, node.dtype))
            return text, NEG if text.startswith("-") else ATOM
        if op == "arg":
            return s.name(node.attr("name")), ATOM
        if op == "size_of":
            parts = [s.size(x) for x in node.attr("sizes")]
            if len(parts) == 1:
                return parts[0]
            return s.product([self._wrap(p, POW) for p in parts]), MUL
        if op == "neg":
            return s.neg(self._wrap(self._operand(node, 0), POW)), NEG
        if op == "pow":
            base, exponent = self._operands(node)
            return s.power(self._wrap(base, POST), self._wrap(exponent, NEG)), POW
        if op == "mul" and node.inputs[0] is node.inputs[1] and self.label(node.inputs[0]):
            return s.power(self._wrap(self._operand(node, 0), POST), s.number("2")), POW
        if op in _INFIX:
            return self._binary(op, list(node.inputs), node)
        if op in _REDUCTIONS:
            return self._reduction(node), ATOM
        if op == "transpose" and node.attr("perm") == tuple(reversed(range(node.type.rank))):
            return s.transpose(self._wrap(self._expr(node.inputs[0], False), POST)), POST
        if op == "slice":
            x = node.inputs[0]
            text = slice_text(node.attr("starts"), node.attr("sizes"), node.attr("steps"), x.shape)
            if text is not None:
                return s.index(self._wrap(self._expr(x, False), POST), text), POST
        if op == "reshape":
            vector = self._vector_matmul(node)
            if vector is not None:
                return vector
        return self._call(node), ATOM

    def _operand(self, node: Node, i: int) -> tuple[str, int]:
        return self._operands(node)[i]

    def _operands(self, node: Node) -> list[tuple[str, int]]:
        """Operands of an elementwise node, with implicit (NumPy) broadcasts hidden."""
        inputs = list(node.inputs)
        if node.prim.family != ELEMENTWISE_FAMILY:
            return [self._expr(x, False) for x in inputs]
        stripped = [self._strip_broadcast(x) for x in inputs]
        try:
            shape: tuple = ()
            for x in stripped:
                shape = broadcast_shapes(shape, () if const_value(x) is not None else x.shape)
            implicit = shape == node.shape
        except ShapeError:
            implicit = False
        return [self._expr(x, True) for x in (stripped if implicit else inputs)]

    def _strip_broadcast(self, x: Node) -> Node:
        while x.op == "broadcast" and self.label(x) is None:
            x = x.inputs[0]
        return x

    def _binary(self, op: str, inputs: list[Node], node: Node) -> tuple[str, int]:
        s = self.syntax
        if node.prim.family == ELEMENTWISE_FAMILY and inputs == list(node.inputs):
            a, b = self._operands(node)
        elif node.prim.family == ELEMENTWISE_FAMILY:  # swapped for lecture order
            a, b = reversed(self._operands(node))
        else:
            a, b = (self._expr(x, False) for x in inputs)
        prec = _INFIX[op][1]
        if not s.infix_operands_need_parens(op):
            return s.infix(op, a[0], b[0])
        # left-associative: the right operand of equal precedence keeps its parentheses
        # (IEEE sums and products are not associative, so we show the real grouping)
        right_min = prec + 1 if op != "div" else ATOM
        if prec == CMP:
            return s.infix(op, self._wrap(a, ADD), self._wrap(b, ADD))
        return s.infix(op, self._wrap(a, prec), self._wrap(b, right_min if b[1] != ATOM - 0.5
                                                          or op == "div" else prec + 1))

    def _reduction(self, node: Node) -> str:
        x = node.inputs[0]
        axes = node.attr("axes")
        keywords = []
        if tuple(axes) != tuple(range(x.type.rank)):
            keywords.append(("axis", str(axes[0]) if len(axes) == 1
                             else "(" + ", ".join(map(str, axes)) + ")"))
        return self.syntax.call(_REDUCTIONS[node.op], [self._expr(x, False)[0]], keywords)

    def _vector_matmul(self, node: Node) -> tuple[str, int] | None:
        """reshape(matmul(reshape(a), reshape(b))) that lowering made of a 1-D `@`."""
        mm = node.inputs[0]
        if mm.op != "matmul" or self.label(mm) is not None:
            return None
        a, b = mm.inputs
        if a.op == "reshape" and a.inputs[0].type.rank == 1 and a.shape[0] == 1 \
                and self.label(a) is None:
            a = a.inputs[0]
        if b.op == "reshape" and b.inputs[0].type.rank == 1 and b.shape[1] == 1 \
                and self.label(b) is None:
            b = b.inputs[0]
        rows = a.shape[:1] if a.type.rank == 2 else ()
        cols = b.shape[1:] if b.type.rank == 2 else ()
        if (a is mm.inputs[0] and b is mm.inputs[1]) or rows + cols != node.shape:
            return None
        left, right = self._expr(a, False), self._expr(b, False)
        return self.syntax.infix("matmul", self._wrap(left, MUL), self._wrap(right, MUL + 1))

    def _call(self, node: Node) -> str:
        """Function notation for everything without an operator of its own."""
        s = self.syntax
        op = node.op
        args = [self._expr(x, op == "where")[0] for x in node.inputs]
        if op == "where" or node.prim.family == ELEMENTWISE_FAMILY:
            args = [t for t, _ in self._operands(node)]
        if op == "convert":
            return s.call(node.dtype, args)
        if op in ("broadcast", "reshape"):
            return s.call(op, args + [shape_text(node.shape)])
        if op == "transpose":
            return s.call(op, args, [("perm", str(node.attr("perm")))])
        if op == "concat":
            return s.call(op, ["[" + ", ".join(args) + "]"], [("axis", str(node.attr("axis")))])
        if op in ("slice", "pad"):
            full = node.shape if op == "pad" else node.inputs[0].shape
            where = slice_text(node.attr("starts"), node.attr("sizes"), node.attr("steps"), full)
            if where is None:
                where = (f"starts={node.attr('starts')}, sizes={node.attr('sizes')}, "
                         f"steps={node.attr('steps')}")
            keywords = [("at", where)] if op == "slice" else [("to", shape_text(node.shape)),
                                                              ("at", where)]
            return s.call(op, args, keywords)
        keywords = [(k, str(v)) for k, v in node.attrs]
        return s.call(op, args, keywords)
