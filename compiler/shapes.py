"""Sizes and shapes, with symbolic `dim`s.

A size is an `int` or a `Sym`: `floor((c1*N1 + c2*N2 + ... + const) / div)`
over dim names. That form is closed under what the language does to sizes
(slicing with constant bounds and steps, concatenation, fixed offsets), so
`x[1:]` of an `f64[N]` has the size `N - 1` and matches `x[:-1]` exactly.
Two symbolic sizes match only when their canonical forms are equal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Union


# The largest element count of any tensor, and the largest size: 2^53 is the
# largest count a double holds exactly (`mean` divides by it), and keeps every
# byte count of the native code's 64-bit size arithmetic far from overflowing.
MAX_ELEMENTS = 2 ** 53


class ShapeError(Exception):
    """A shape or dtype rule was violated; lowering attaches the source span."""


@dataclass(frozen=True)
class Sym:
    terms: tuple[tuple[str, int], ...]
    const: int = 0
    div: int = 1

    def __str__(self) -> str:
        parts = []
        for name, coef in self.terms:
            term = name if abs(coef) == 1 else f"{abs(coef)}*{name}"
            if not parts:
                parts.append(term if coef > 0 else f"-{term}")
            else:
                parts.append(f"{'+' if coef > 0 else '-'} {term}")
        if self.const:
            parts.append(f"{'+' if self.const > 0 else '-'} {abs(self.const)}")
        text = " ".join(parts)
        if self.div != 1:
            text = f"({text}) // {self.div}" if len(parts) > 1 else f"{text} // {self.div}"
        return text


Size = Union[int, Sym]
Shape = tuple[Size, ...]


def sym(name: str) -> Sym:
    return Sym(((name, 1),))


def _make(terms: dict[str, int], const: int, div: int) -> Size:
    kept = tuple(sorted((n, c) for n, c in terms.items() if c != 0))
    if not kept:
        return const // div
    return Sym(kept, const, div)


def add_size(a: Size, b: Size) -> Size:
    """a + b; fails only for forms the language cannot produce together."""
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    if isinstance(a, int):
        a, b = b, a
    assert isinstance(a, Sym)
    if isinstance(b, int):
        return _make(dict(a.terms), a.const + b * a.div, a.div)
    if a.div != 1 or b.div != 1:
        raise ShapeError(f"size '{a} + {b}' is too complex to track symbolically")
    terms = dict(a.terms)
    for n, c in b.terms:
        terms[n] = terms.get(n, 0) + c
    return _make(terms, a.const + b.const, 1)


def scale_size(a: Size, k: int) -> Size:
    if isinstance(a, int):
        return a * k
    if a.div != 1:
        raise ShapeError(f"size '{k}*({a})' is too complex to track symbolically")
    return _make({n: c * k for n, c in a.terms}, a.const * k, 1)


def floordiv_size(a: Size, k: int) -> Size:
    """floor(a / k) for k > 0 (floor(floor(x/d)/k) = floor(x/(d*k)))."""
    if isinstance(a, int):
        return a // k
    return _make(dict(a.terms), a.const, a.div * k)


def eval_size(s: Size, dims: Mapping[str, int]) -> int:
    if isinstance(s, int):
        return s
    total = s.const + sum(c * dims[n] for n, c in s.terms)
    return total // s.div


def eval_shape(shape: Shape, dims: Mapping[str, int]) -> tuple[int, ...]:
    return tuple(eval_size(s, dims) for s in shape)


def static_numel(shape: Shape) -> int:
    """The product of the constant sizes of `shape` (a lower bound of its element
    count when no size is 0: a symbolic size counts as 1)."""
    total = 1
    for s in shape:
        if isinstance(s, int):
            total *= s
    return total


def size_names(s: Size) -> tuple[str, ...]:
    return () if isinstance(s, int) else tuple(n for n, _ in s.terms)


def is_static(shape: Shape) -> bool:
    return all(isinstance(s, int) for s in shape)


def shape_str(shape: Shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def numel_key(shape: Shape) -> tuple[int, tuple[Sym, ...]]:
    """A canonical product of sizes, to compare element counts symbolically."""
    const, syms = 1, []
    for s in shape:
        if isinstance(s, int):
            const *= s
        elif s.const == 0 and s.div == 1:
            # a common factor moves into the constant: [3*B] holds as many as [3, B]
            k = math.gcd(*(c for _, c in s.terms))
            const *= k
            syms.append(Sym(tuple((n, c // k) for n, c in s.terms)))
        else:
            syms.append(s)
    return (const if syms == [] or const != 0 else 0), tuple(sorted(syms, key=str))


def broadcast_shapes(a: Shape, b: Shape) -> Shape:
    """NumPy broadcasting; symbolic sizes match only when equal (or against 1)."""
    n = max(len(a), len(b))
    pa = (1,) * (n - len(a)) + tuple(a)
    pb = (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(pa, pb):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise ShapeError(f"shapes {shape_str(a)} and {shape_str(b)} do not broadcast "
                             f"(size {x} vs {y})")
    return tuple(out)


def shape_evaluator(shape: Shape):
    """A fast `eval_shape` for one shape, for call paths that run it every call."""
    items = tuple(s if isinstance(s, int) else
                  (s.terms[0][0] if s.terms[1:] == () and s.terms[0][1] == 1 and not s.const
                   and s.div == 1 else s) for s in shape)
    if all(isinstance(s, int) for s in items):
        return lambda dims: items
    return lambda dims: tuple(s if s.__class__ is int else dims[s] if s.__class__ is str
                              else eval_size(s, dims) for s in items)
