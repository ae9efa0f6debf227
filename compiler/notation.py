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
from chainrule.compiler.shapes import (ShapeError, Size, add_size, broadcast_shapes,
                                       floordiv_size, scale_size)

# precedence, loosest first (language.md): a subexpression needs parentheses
# when it binds more loosely than its context requires
CMP, ADD, MUL, NEG, POW, POST, ATOM = range(1, 8)
SLASHED = ATOM - 0.5  # a name like `dloss/dz`: an atom except where `/` would regroup

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
    if isinstance(size, (int, str)):  # a str is a dim's name
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


def _count(start: Size, full: Size, step: int) -> Size | None:
    """How many elements `start::step` takes from an axis of size `full`."""
    try:
        return floordiv_size(add_size(add_size(full, scale_size(start, -1)), step - 1), step)
    except ShapeError:
        return None


def _axis_text(start: Size, size: Size, step: int, full: Size) -> str | None:
    """One axis of a slice as `a:b:c`, or None if the language cannot say it."""
    if step <= 0:
        return None
    lo = "" if start == 0 else _bound(start, full)
    if _count(start, full, step) == size:
        hi = ""
    else:
        try:  # the smallest stop that gives `size` elements
            stop = add_size(start, add_size(scale_size(size, step), 1 - step))
        except ShapeError:
            return None
        hi = _bound(stop, full)
    if lo is None or hi is None:
        return None
    return f"{lo}:{hi}" + (f":{step}" if step != 1 else "")


def slice_text(starts: tuple, sizes: tuple, steps: tuple, shape: tuple,
               points: tuple[int, ...] = ()) -> str | None:
    """`[1:, ::2]`-style text of a strided range, or None if the language cannot say it.

    Axes in `points` are integer indices (`x[:, 0]`), which drop the axis.
    """
    items = []
    for axis, (start, size, step, full) in enumerate(zip(starts, sizes, steps, shape)):
        if axis in points:
            text = str(start) if isinstance(start, int) else _bound(start, full)
        else:
            text = _axis_text(start, size, step, full)
        if text is None:
            return None
        items.append(text)
    while len(items) > 1 and items[-1] == ":":
        items.pop()
    return "[" + ", ".join(items) + "]"


def range_text(node: Node) -> str:
    """The explicit form of a slice or pad range, when no `[a:b]` text exists."""
    return ", ".join(f"{k}={shape_text(node.attr(k))}" for k in ("starts", "sizes", "steps"))


def point_axes(reshape: Node) -> tuple[int, ...] | None:
    """The axes a `reshape(slice(x))` drops, if it is `x[..., i, ...]`; else None."""
    sliced = reshape.inputs[0]
    sizes, full = sliced.attr("sizes"), sliced.inputs[0].shape
    candidates = tuple(i for i, n in enumerate(sizes)
                       if n == 1 and not (sliced.attr("starts")[i] == 0 and full[i] == 1))
    kept = tuple(n for i, n in enumerate(sizes) if i not in candidates)
    return candidates if candidates and kept == reshape.shape else None


def _simple(item: tuple[str, float]) -> bool:
    """A bare name or number: `x1*w1` is written without spaces, `exp(x) * y` with."""
    return item[1] == ATOM and re.fullmatch(r"[A-Za-z0-9_.]+", item[0]) is not None


def _adds_leading_ones(reshape: Node) -> bool:
    inner, outer = reshape.inputs[0].shape, reshape.shape
    extra = len(outer) - len(inner)
    return extra >= 0 and outer[extra:] == inner and all(s == 1 for s in outer[:extra])


def const_value(node: Node) -> float | None:
    """The number a constant stands for, seen through broadcasts and reshapes."""
    while node.op in ("broadcast", "reshape"):
        node = node.inputs[0]
    return node.attr("value") if node.op == "const" else None


# ------------------------------------------------------------------- syntaxes
class TextSyntax:
    """The `.expr` language itself: what a user would write."""

    lparen, rparen = "(", ")"
    slashed_names_regroup = True
    exponent_minimum = NEG  # `2^-1` parses; `2^(a + b)` needs parentheses

    def name(self, label: str) -> str:
        return label

    def number(self, text: str) -> str:
        return text

    def infix(self, op: str, a: str, b: str, tight: bool = False) -> tuple[str, int]:
        symbol, prec = _INFIX[op]
        if tight and op in ("mul", "div"):  # `x1*w1 + x2*w2`: the product reads as a unit
            return f"{a}{symbol}{b}", prec
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

    def shape(self, shape: tuple) -> str:
        return shape_text(shape)


class LatexSyntax(TextSyntax):
    """The same expressions typeset: \\cdot, \\frac, ^{}, \\sigma, \\mathrm{relu}."""

    lparen, rparen = r"\left(", r"\right)"
    slashed_names_regroup = False  # \frac{..}{..} is one box
    exponent_minimum = 0  # the exponent is its own group: x^{a + b}
    _FUNCTIONS = {"sigmoid": r"\sigma", "exp": r"\exp", "log": r"\log", "sin": r"\sin",
                  "cos": r"\cos", "tan": r"\tan", "tanh": r"\tanh", "max": r"\max",
                  "min": r"\min"}
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

    def infix(self, op: str, a: str, b: str, tight: bool = False) -> tuple[str, int]:
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

    def shape(self, shape: tuple) -> str:
        return "[" + ", ".join(self.size(x)[0] for x in shape) + "]"


# ------------------------------------------------------------------- renderer
class Renderer:
    """Spells the expression that defines a node, referring to named nodes by name.

    `label(node)` returns the name of a node that has a line (or is an
    argument), or None when the node is to be inlined into its consumer.
    """

    def __init__(self, syntax: TextSyntax, label: Callable[[Node], str | None]):
        self.syntax = syntax
        self.label = label

    # ---------------------------------------------------------- entry points
    def define(self, node: Node, lecture_order: bool = False) -> str:
        """The right-hand side of `name = ...` for `node` (never just its own name).

        `lecture_order` writes a product of a forward value and an adjoint as
        `x1 * dloss/dz`, the way the backpropagation lecture writes gradients.
        """
        if lecture_order and node.op == "mul":
            a, b = node.inputs
            if self._is_adjoint(a) and not self._is_adjoint(b):
                return self._binary("mul", node, swap=True)[0]
        return self._build(node, in_elementwise=False)[0]

    def reference(self, node: Node) -> str:
        """How a line mentions `node`: its name, or its whole expression if it has none."""
        return self._expr(node, False)[0]

    # ------------------------------------------------------------- internals
    def _is_adjoint(self, node: Node) -> bool:
        name = self.label(node)
        return bool(name and "/" in name)

    def _wrap(self, item: tuple[str, float], minimum: int, strict: bool = False) -> str:
        """Parenthesize unless `item` binds at least as tightly as `minimum`.

        `strict` marks the places (after `/`, around `^`, before `.T` and `[..]`)
        where a name like `dloss/dz` would read as a different grouping.
        """
        text, prec = item
        if prec == SLASHED:
            prec = ATOM if not (strict and self.syntax.slashed_names_regroup) else MUL
        if prec >= minimum:
            return text
        return f"{self.syntax.lparen}{text}{self.syntax.rparen}"

    def _expr(self, node: Node, in_elementwise: bool) -> tuple[str, float]:
        name = self.label(node)
        if name is not None:
            return self.syntax.name(name), SLASHED if "/" in name else ATOM
        return self._build(node, in_elementwise)

    def _build(self, node: Node, in_elementwise: bool) -> tuple[str, float]:
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
            return s.neg(self._wrap(self._operands(node)[0], POW)), NEG
        if op == "pow":
            base, exponent = self._operands(node)
            return s.power(self._wrap(base, POST, strict=True),
                           self._wrap(exponent, s.exponent_minimum, strict=True)), POW
        if op == "mul" and node.inputs[0] is node.inputs[1] and self.label(node.inputs[0]):
            base = self._operands(node)[0]
            return s.power(self._wrap(base, POST, strict=True), s.number("2")), POW
        if op in _INFIX:
            return self._binary(op, node)
        if op in _REDUCTIONS:
            return self._reduction(node), ATOM
        if op == "transpose" and node.attr("perm") == tuple(reversed(range(node.type.rank))):
            x = self._expr(node.inputs[0], False)
            return s.transpose(self._wrap(x, POST, strict=True)), POST
        if op == "slice":
            x = node.inputs[0]
            text = slice_text(node.attr("starts"), node.attr("sizes"), node.attr("steps"), x.shape)
            if text is not None:
                return s.index(self._wrap(self._expr(x, False), POST, strict=True), text), POST
        if op == "reshape":
            vector = self._vector_matmul(node) or self._point_index(node)
            if vector is not None:
                return vector
        return self._call(node), ATOM

    def _operands(self, node: Node) -> list[tuple[str, float]]:
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
        """Below a broadcast, drop it and any reshape that only adds leading 1s:
        NumPy broadcasting does both implicitly."""
        if x.op != "broadcast":
            return x
        while self.label(x) is None and (x.op == "broadcast" or (
                x.op == "reshape" and _adds_leading_ones(x))):
            x = x.inputs[0]
        return x

    def _binary(self, op: str, node: Node, swap: bool = False) -> tuple[str, float]:
        s = self.syntax
        a, b = self._operands(node)
        if swap:
            a, b = b, a
        prec = _INFIX[op][1]
        if not s.infix_operands_need_parens(op):
            return s.infix(op, a[0], b[0])
        if prec == CMP:  # comparisons do not chain
            return s.infix(op, self._wrap(a, ADD), self._wrap(b, ADD))
        # left-associative: a right operand of equal precedence keeps its parentheses
        # (IEEE sums and products are not associative: we show the real grouping),
        # and a negative right operand gets them for legibility (`a - (-1)`)
        right_min = POW if b[1] == NEG else prec + 1
        tight = _simple(a) and _simple(b)
        return s.infix(op, self._wrap(a, prec), self._wrap(b, right_min, strict=op == "div"),
                       tight)

    def _reduction(self, node: Node) -> str:
        x = node.inputs[0]
        axes = node.attr("axes")
        keywords = []
        if tuple(axes) != tuple(range(x.type.rank)):
            keywords.append(("axis", str(axes[0]) if len(axes) == 1
                             else "(" + ", ".join(map(str, axes)) + ")"))
        return self.syntax.call(_REDUCTIONS[node.op], [self._expr(x, False)[0]], keywords)

    def _vector_matmul(self, node: Node) -> tuple[str, float] | None:
        """reshape(matmul(...)) that lowering made of a `@` with 1-D operands.

        `v @ M` becomes matmul(reshape(v, [1, n]), M) and a reshape that drops
        the unit axis again; chains like `v @ X @ w` nest such row vectors.
        """
        mm = node.inputs[0]
        if mm.op != "matmul" or self.label(mm) is not None:
            return None
        rows, cols = mm.shape
        if node.shape == ():
            want = (rows == 1, cols == 1)
        elif node.shape == (cols,) and rows == 1:
            want = (True, False)
        elif node.shape == (rows,) and cols == 1:
            want = (False, True)
        else:
            return None
        return self._vector_product(mm, *want)

    def _vector_product(self, mm: Node, row: bool, col: bool) -> tuple[str, float] | None:
        """`a @ b` where a [1, n] is spelled as a 1-D row (`row`), b [n, 1] as a column."""
        a, b = mm.inputs
        left = self._as_vector(a, row=True) if row else self._expr(a, False)
        right = self._as_vector(b, row=False) if col else self._expr(b, False)
        if left is None or right is None:
            return None
        return self.syntax.infix("matmul", self._wrap(left, MUL), self._wrap(right, MUL + 1))

    def _as_vector(self, x: Node, row: bool) -> tuple[str, float] | None:
        """A [1, n] (row) or [n, 1] (column) node as the 1-D vector it came from."""
        if self.label(x) is not None:
            return None
        if x.op == "reshape" and x.inputs[0].type.rank == 1 and x.shape[0 if row else 1] == 1:
            return self._expr(x.inputs[0], False)
        if x.op == "matmul":
            return self._vector_product(x, row, not row)
        if x.op == "slice":  # `X[:, 0]` (lowered as X[:, 0:1]) used as a 1-D operand
            axis = 0 if row else 1
            src = x.inputs[0]
            text = slice_text(x.attr("starts"), x.attr("sizes"), x.attr("steps"), src.shape,
                              (axis,))
            if text is not None:
                return self.syntax.index(self._wrap(self._expr(src, False), POST, strict=True),
                                         text), POST
        return None

    def _point_index(self, node: Node) -> tuple[str, float] | None:
        """reshape(slice(x)) that drops unit axes: what lowering makes of `x[:, 0]`."""
        sliced = node.inputs[0]
        if sliced.op != "slice" or self.label(sliced) is not None:
            return None
        points = point_axes(node)
        x = sliced.inputs[0]
        text = points and slice_text(sliced.attr("starts"), sliced.attr("sizes"),
                                     sliced.attr("steps"), x.shape, points)
        if not text:
            return None
        return self.syntax.index(self._wrap(self._expr(x, False), POST, strict=True), text), POST

    def _call(self, node: Node) -> str:
        """Function notation for everything without an operator of its own."""
        s = self.syntax
        op = node.op
        if op == "broadcast":  # broadcast(reshape(x, [1]), [N]) is broadcast(x, [N])
            x = node.inputs[0]
            while x.op == "reshape" and self.label(x) is None and _adds_leading_ones(x):
                x = x.inputs[0]
            return s.call(op, [self._expr(x, False)[0], s.shape(node.shape)])
        if node.prim.family == ELEMENTWISE_FAMILY:
            args = [t for t, _ in self._operands(node)]
        else:
            args = [self._expr(x, False)[0] for x in node.inputs]
        if op == "convert":
            return s.call(node.dtype, args)
        if op == "reshape":
            return s.call(op, args + [s.shape(node.shape)])
        if op == "transpose":
            return s.call(op, args, [("perm", str(node.attr("perm")))])
        if op == "concat":
            return s.call(op, ["[" + ", ".join(args) + "]"], [("axis", str(node.attr("axis")))])
        if op in ("slice", "pad"):
            full = node.shape if op == "pad" else node.inputs[0].shape
            where = slice_text(node.attr("starts"), node.attr("sizes"), node.attr("steps"), full)
            target = [s.shape(node.shape)] if op == "pad" else []
            if where is None:
                return s.call(op, args + target + [range_text(node)])
            return s.call(op, args + target, [("at", where)])
        return s.call(op, args, [(k, str(v)) for k, v in node.attrs])
