"""Random well-typed `.expr` programs for differential testing (tests/test_fuzz.py).

`ProgramBuilder` writes a program statement by statement from the whole
language: every builtin of `compiler/builtins.py`, the operators
`+ - * / ^ ** @`, unary minus, comparisons in `where`, masks bound to names,
indexing and slicing (constant and symbolic axes, negative steps), `.T`,
broadcasting (`[N, 1]` against `[K]`), reductions with every `axis=` form and
`keepdims`, `concat`, `reshape` (with dim names and `-1`), matmul chains,
`def`s (calling earlier `def`s), symbolic and constant dims, f32, f64 and
mixed programs with `f32()`/`f64()`, number literals in every spelling,
`pi` and `e`, shared subexpressions (fan-out) and long chains.

Every value carries a conservative interval of what it can hold, given the
intervals the arguments are sampled from (`ArgSpec.lo/hi`) and symbolic dims
of at most `DIM_MAX`. A primitive is applied only where its operand is inside
its safe domain (`log` of values >= 0.05, `tan` within +-1.2, `exp` of values
<= 10, a divisor away from 0, ...); otherwise the operand is first mapped into
the domain by an adapter (`softplus(x) + 0.5`, `tanh(x)`, `1 + square(x)`...).
Magnitudes stay below `BIG`, so nothing overflows, and central differences
are meaningful wherever the program is smooth.

Choices go through a `Chooser`: `HypothesisChooser` (draws from a hypothesis
`data` object, so failures shrink) or `RandomChooser` (a seeded
`random.Random`, for the long campaign and the coverage tests).
"""
from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

DIM_MAX = 8          # symbolic dims are bound to 1..DIM_MAX by the oracles (0 only llvm-vs-numpy)
BIG = 1e3            # magnitudes above this are scaled down before further use
EXP_MAX = 8.0        # exp/expm1 only of values <= EXP_MAX

# every builtin of compiler/builtins.py BUILTINS; test_fuzz asserts this list is complete
BUILTIN_NAMES = (
    "exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tan", "tanh", "sigmoid", "relu",
    "softplus", "abs", "sign", "square", "pow", "maximum", "minimum", "where", "clip",
    "sum", "mean", "max", "min", "logsumexp", "softmax", "log_softmax", "transpose",
    "reshape", "concat", "f32", "f64",
)
# constructs that are not builtins, also covered
CONSTRUCTS = ("add", "sub", "mul", "div", "caret", "starstar", "neg", "matmul", "index",
              "slice", "dot_T", "compare", "mask_name", "def", "def_calls_def", "keepdims",
              "axis_tuple", "axis_negative", "broadcast_column", "symbolic_slice", "concat_sym",
              "number_literal", "pi_e", "chain", "fanout")


# ------------------------------------------------------------------ choosers
class Chooser:
    """Where the builder's random choices come from."""

    def integer(self, lo: int, hi: int) -> int:
        raise NotImplementedError

    def choice(self, options: Sequence[Any]) -> Any:
        return options[self.integer(0, len(options) - 1)]

    def boolean(self, p: float = 0.5) -> bool:
        return self.integer(0, 999) < int(p * 1000)

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.integer(0, 1000) / 1000


class RandomChooser(Chooser):
    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)


class HypothesisChooser(Chooser):
    """Draws every choice from `data` (hypothesis.strategies.data()), so it shrinks."""

    def __init__(self, data):
        from hypothesis import strategies as st
        self.data = data
        self.st = st

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(self.st.integers(lo, hi))


# -------------------------------------------------------------------- sizes
@dataclass(frozen=True)
class Sym:
    """A symbolic size: sum of coef*dim plus const (enough for slices and concat)."""

    terms: tuple[tuple[str, int], ...]
    const: int = 0

    def __str__(self) -> str:
        parts = []
        for name, coef in self.terms:
            parts.append(name if coef == 1 else f"{coef}*{name}")
        text = " + ".join(parts)
        if self.const:
            text += f" {'+' if self.const > 0 else '-'} {abs(self.const)}"
        return text

    @property
    def plain(self) -> str | None:
        """The dim name when this size is exactly one dim (writable in reshape)."""
        if len(self.terms) == 1 and self.terms[0][1] == 1 and self.const == 0:
            return self.terms[0][0]
        return None


Size = Any  # int | Sym


def sym(name: str) -> Sym:
    return Sym(((name, 1),))


def add_size(a: Size, b: Size) -> Size:
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    if isinstance(a, int):
        a, b = b, a
    if isinstance(b, int):
        return Sym(a.terms, a.const + b)
    terms = dict(a.terms)
    for n, c in b.terms:
        terms[n] = terms.get(n, 0) + c
    return Sym(tuple(sorted(terms.items())), a.const + b.const)


def size_max(s: Size) -> int:
    if isinstance(s, int):
        return s
    return max(0, sum(c * DIM_MAX for _, c in s.terms) + s.const)


def size_value(s: Size, dims: dict) -> int:
    if isinstance(s, int):
        return s
    return sum(c * dims[n] for n, c in s.terms) + s.const


def broadcast(a: tuple, b: tuple) -> tuple | None:
    n = max(len(a), len(b))
    pa, pb = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(pa, pb):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            return None
    return tuple(out)


def numel_max(shape: tuple) -> int:
    total = 1
    for s in shape:
        total *= max(1, size_max(s))
    return total


# ------------------------------------------------------------------- values
@dataclass
class Val:
    """A generated expression: its source text, type and a bound of its values."""

    text: str
    dtype: str          # "f32", "f64", or "num" for a bare number (no dtype yet)
    shape: tuple
    lo: float
    hi: float
    atom: bool = True   # safe as an operand of any operator without parentheses

    @property
    def wrapped(self) -> str:
        return self.text if self.atom else f"({self.text})"

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def mag(self) -> float:
        return max(abs(self.lo), abs(self.hi))


@dataclass
class Mask:
    text: str
    shape: tuple
    atom: bool = True


@dataclass
class ArgSpec:
    name: str
    kind: str           # "input" or "param"
    dtype: str
    shape: tuple        # sizes: int or Sym (plain dims only)
    lo: float
    hi: float


@dataclass
class DefSpec:
    name: str
    params: list        # [(name, dtype, shape, lo, hi)]
    result: Val         # type and interval of the body (valid for any args in the intervals)


@dataclass
class GeneratedProgram:
    source: str
    args: list
    symbolic: dict      # dim name -> smallest size the program's slices and indices allow
    features: set = field(default_factory=set)

    def dims_choice(self, chooser_or_rng, upto: int = DIM_MAX) -> dict:
        out = {}
        for name, least in self.symbolic.items():
            lo = max(1, least)
            out[name] = chooser_or_rng.randint(lo, max(lo, upto)) \
                if hasattr(chooser_or_rng, "randint") else lo
        return out

    def arguments(self, dims: dict, rng, scalars_as_float: bool = True) -> dict:
        """Arrays (NumPy, declared dtype) for every argument, within its sampling range."""
        import numpy as np
        args = {}
        for a in self.args:
            shape = tuple(size_value(s, dims) for s in a.shape)
            value = rng.uniform(a.lo, a.hi, size=shape)
            value = value.astype(np.float32 if a.dtype == "f32" else np.float64)
            if shape == () and scalars_as_float and a.dtype == "f64" and rng.random() < 0.5:
                args[a.name] = float(value)
            else:
                args[a.name] = value
        return args


# ------------------------------------------------------------------ the builder
NUMBERS = [("-1", -1.0), ("-0.5", -0.5), ("0.5", 0.5), ("2", 2.0), ("3", 3.0), ("1.5", 1.5),
           ("0.1", 0.1), ("1e-3", 1e-3),
           ("2.", 2.0), (".5", 0.5), ("0.25", 0.25), ("1E1", 10.0), ("pi", math.pi),
           ("e", math.e), ("(1 + 2)", 3.0), ("2^-1", 0.5), ("sqrt(2)", math.sqrt(2)),
           ("7", 7.0), ("0.75", 0.75)]

UNARY_DOMAINS = {
    # op: (domain lo, domain hi) the operand must lie in
    "exp": (-math.inf, EXP_MAX), "expm1": (-math.inf, EXP_MAX),
    "log": (0.05, math.inf), "sqrt": (0.05, math.inf), "log1p": (-0.8, math.inf),
    "tan": (-1.2, 1.2),
}
SMOOTH_UNARY = ["sin", "cos", "tanh", "sigmoid", "softplus", "square", "neg"]
KINKED_UNARY = ["relu", "abs", "sign"]


def _f(op: str, x: float) -> float:
    return {"exp": math.exp, "expm1": math.expm1, "log": math.log, "sqrt": math.sqrt,
            "log1p": math.log1p, "tan": math.tan, "tanh": math.tanh,
            "sigmoid": lambda v: 1 / (1 + math.exp(-v)) if v > -700 else 0.0,
            "softplus": lambda v: max(v, 0) + math.log1p(math.exp(-abs(v)))}[op](x)


class ProgramBuilder:
    """Writes one random program; `build()` returns a GeneratedProgram."""

    def __init__(self, chooser: Chooser, focus: str | None = None, max_statements: int = 10):
        self.c = chooser
        self.focus = focus
        self.max_statements = max_statements
        self.lines: list[str] = []
        self.pool: list[tuple[str, Val]] = []     # bound values, in binding order
        self.masks: list[Mask] = []
        self.defs: list[DefSpec] = []
        self.args: list[ArgSpec] = []
        self.symbolic: dict[str, int] = {}        # dim -> least size needed
        self.constant_dims: dict[str, int] = {}
        self.features: set[str] = set()
        self.counter = 0
        self.in_def = False
        self.def_params: list[tuple[str, Val]] = []
        self.uses: dict[str, int] = {}

    # ------------------------------------------------------------- helpers
    def fresh(self, prefix: str = "t") -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def note(self, *features: str) -> None:
        self.features.update(features)

    def need(self, size: Size, least: int) -> None:
        """Record that a symbolic `size` must be >= least when dims are bound."""
        if isinstance(size, int):
            return
        if len(size.terms) == 1 and size.terms[0][1] == 1:
            name = size.terms[0][0]
            self.symbolic[name] = max(self.symbolic.get(name, 0), least - size.const)
        else:  # e.g. 2*N - 1 >= least: make every dim large enough on its own
            for name, _ in size.terms:
                self.symbolic[name] = max(self.symbolic.get(name, 0), least - size.const)

    def scope(self) -> list[tuple[str, Val]]:
        """Names usable here: in a def body its parameters (and now and then a name
        bound before the def line), elsewhere everything bound so far."""
        if self.in_def:
            return self.def_params + (self.pool if self.c.boolean(0.2) else [])
        return self.pool

    def uses_builtin(self, name: str) -> bool:
        return re.search(rf"(?<![A-Za-z0-9_]){name}\(", "\n".join(self.lines)) is not None

    def pick_leaf(self, dtype: str | None = None, pred: Callable[[Val], bool] | None = None
                  ) -> Val | None:
        options = [(n, v) for n, v in self.scope() if pred is None or pred(v)]
        if not options:
            return None
        if self.c.boolean(0.5):  # recent values: chains
            options = options[-3:]
        name, v = self.c.choice(options)
        self.uses[name] = self.uses.get(name, 0) + 1
        if self.uses[name] == 3:
            self.note("fanout")
        leaf = Val(name, v.dtype, v.shape, v.lo, v.hi)
        return self.convert(leaf, dtype) if dtype else leaf

    def convert(self, v: Val, dtype: str) -> Val:
        if v.dtype in (dtype, "num"):
            return v
        self.note(dtype)
        return Val(f"{dtype}({v.text})", dtype, v.shape, v.lo, v.hi)

    def number(self, lo: float = -math.inf, hi: float = math.inf) -> Val:
        options = [(t, x) for t, x in NUMBERS if lo <= x <= hi] or [("0.5", 0.5)]
        text, x = self.c.choice(options)
        self.note("number_literal")
        if text in ("pi", "e"):
            self.note("pi_e")
        return Val(text, "num", (), x, x, atom=not any(ch in text for ch in " ^-+"))

    def squash(self, v: Val) -> Val:
        """Keep magnitudes below BIG (scaling, so the value stays informative)."""
        if v.mag <= BIG:
            return v
        k = math.ceil(math.log10(v.mag / 10))
        scale = 10.0 ** -k
        return Val(f"{v.wrapped} * 1e-{k}", v.dtype, v.shape, v.lo * scale, v.hi * scale, False)

    # ----------------------------------------------------------- adapters
    def into(self, v: Val, lo: float, hi: float) -> Val:
        """`v` itself if its interval is inside [lo, hi], else an adapted version."""
        if lo <= v.lo and v.hi <= hi:
            return v
        candidates = []
        if lo >= -0.8 and hi == math.inf:  # positive-ish domains
            c = self.c.choice([0.1, 0.5, 1.0])
            candidates += [
                lambda: Val(f"softplus({v.text}) + {c}", v.dtype, v.shape,
                            _f("softplus", v.lo) + c, _f("softplus", v.hi) + c, False),
                lambda: Val(f"exp(tanh({v.text}))", v.dtype, v.shape,
                            math.exp(math.tanh(v.lo)), math.exp(math.tanh(v.hi))),
                lambda: Val(f"1 + square({v.text})", v.dtype, v.shape,
                            1 + (0 if v.lo <= 0 <= v.hi else min(v.lo ** 2, v.hi ** 2)),
                            1 + v.mag ** 2, False),
                lambda: Val(f"sigmoid({v.text}) + {c}", v.dtype, v.shape,
                            _f("sigmoid", v.lo) + c, _f("sigmoid", v.hi) + c, False),
                lambda: Val(f"2 + sin({v.text})", v.dtype, v.shape, 1.0, 3.0, False),
                lambda: Val(f"abs({v.text}) + 0.5", v.dtype, v.shape, 0.5, v.mag + 0.5, False),
            ]
            if v.mag <= 30:
                candidates.append(lambda: Val(f"sqrt(1 + {v.wrapped}^2)", v.dtype, v.shape,
                                              1.0, math.sqrt(1 + v.mag ** 2)))
        if hi <= EXP_MAX:
            candidates += [
                lambda: Val(f"2 * tanh({v.text})", v.dtype, v.shape, -2, 2, False),
                lambda: Val(f"sin({v.text})", v.dtype, v.shape, -1, 1),
                lambda: Val(f"-softplus({v.text})", v.dtype, v.shape,
                            -_f("softplus", v.hi), -_f("softplus", v.lo), False),
                lambda: Val(f"clip({v.text}, -3, 3)", v.dtype, v.shape,
                            max(-3, min(v.lo, 3)), min(3, max(v.hi, -3))),
                lambda: Val(f"minimum({v.text}, 2)", v.dtype, v.shape, min(v.lo, 2), min(v.hi, 2)),
            ]
        if hi <= 1.2:
            candidates += [
                lambda: Val(f"tanh({v.text})", v.dtype, v.shape, math.tanh(v.lo), math.tanh(v.hi)),
                lambda: Val(f"0.5 * cos({v.text})", v.dtype, v.shape, -0.5, 0.5, False),
                lambda: Val(f"sigmoid({v.text})", v.dtype, v.shape,
                            _f("sigmoid", v.lo), _f("sigmoid", v.hi)),
            ]
        for _ in range(4 if candidates else 0):
            out = self.c.choice(candidates)()
            if lo <= out.lo and out.hi <= hi:
                return out
        # the fallback: a sigmoid placed inside the domain
        if hi == math.inf:
            base = max(lo, 0.0) + 0.5
            return Val(f"sigmoid({v.text}) + {base}", v.dtype, v.shape, base, base + 1, False)
        if lo == -math.inf:
            top = min(hi, 0.0) - 1.5
            return Val(f"sigmoid({v.text}) + ({top})", v.dtype, v.shape, top, top + 1, False)
        mid, half = (lo + hi) / 2, (hi - lo) / 2 * 0.9
        return Val(f"{mid!r} + {half!r} * tanh({v.text})", v.dtype, v.shape, mid - half,
                   mid + half, False)

    def away_from_zero(self, v: Val) -> Val:
        if v.lo >= 0.2 or v.hi <= -0.2:
            return v
        return self.into(v, 0.2, math.inf)

    # -------------------------------------------------------------- values
    def gen(self, depth: int, dtype: str | None = None, top: bool = False) -> Val:
        """Any tensor-valued expression (of `dtype` if given); `top`: not just a name."""
        if depth <= 0 or (not top and self.c.boolean(0.2)):
            leaf = self.pick_leaf(dtype)
            if leaf is not None:
                return leaf
        for _ in range(6):
            kind = self.c.choice(KINDS)
            out = getattr(self, "op_" + kind)(depth)
            if out is not None:
                out = self.squash(out)
                return self.convert(out, dtype) if dtype else out
        return self.pick_leaf(dtype) or self.pick_leaf()

    def compatible(self, shape: tuple, dtype: str, depth: int, number_ok: bool = True) -> Val:
        """An operand that broadcasts with `shape` (a pool value, a subexpression or a number)."""
        r = self.c.integer(0, 9)
        if number_ok and r < 2:
            return self.number()
        if r < 6 or depth <= 0:
            leaf = self.pick_leaf(dtype, lambda v: broadcast(shape, v.shape) is not None)
            if leaf is not None:
                if leaf.shape != shape and leaf.shape:
                    self.note("broadcast_column" if 1 in leaf.shape + shape else "broadcast")
                return leaf
        for _ in range(3):
            v = self.gen(depth - 1, dtype)
            if broadcast(shape, v.shape) is not None:
                return v
        leaf = self.pick_leaf(dtype, lambda v: broadcast(shape, v.shape) is not None)
        return leaf if leaf is not None else self.number()

    def tensor_of_rank(self, depth: int, least: int, most: int = 9) -> Val | None:
        for _ in range(4):
            v = self.gen(depth - 1) if self.c.boolean(0.5) else \
                self.pick_leaf(pred=lambda v: least <= v.rank <= most)
            if v is not None and least <= v.rank <= most:
                return v
        return None

    # unary ----------------------------------------------------------------
    def op_unary(self, depth: int, op: str | None = None) -> Val | None:
        op = op or self.c.choice(list(UNARY_DOMAINS) + SMOOTH_UNARY + KINKED_UNARY)
        x = self.gen(depth - 1)
        if op in UNARY_DOMAINS:
            x = self.into(x, *UNARY_DOMAINS[op])
        self.note(op if op != "neg" else "neg")
        if op == "neg":
            return Val(f"-{x.wrapped}", x.dtype, x.shape, -x.hi, -x.lo, False)
        if op == "square":
            lo = 0 if x.lo <= 0 <= x.hi else min(x.lo ** 2, x.hi ** 2)
            return Val(f"square({x.text})", x.dtype, x.shape, lo, x.mag ** 2)
        if op in ("sin", "cos"):
            return Val(f"{op}({x.text})", x.dtype, x.shape, -1, 1)
        if op == "relu":
            return Val(f"relu({x.text})", x.dtype, x.shape, max(0, x.lo), max(0, x.hi))
        if op == "abs":
            lo = 0 if x.lo <= 0 <= x.hi else min(abs(x.lo), abs(x.hi))
            return Val(f"abs({x.text})", x.dtype, x.shape, lo, x.mag)
        if op == "sign":
            return Val(f"sign({x.text})", x.dtype, x.shape, -1, 1)
        return Val(f"{op}({x.text})", x.dtype, x.shape, _f(op, x.lo), _f(op, x.hi))

    # binary ---------------------------------------------------------------
    def op_binary(self, depth: int, op: str | None = None) -> Val | None:
        op = op or self.c.choice(["add", "sub", "mul", "div", "pow", "maximum", "minimum"])
        a = self.gen(depth - 1)
        b = self.compatible(a.shape, a.dtype, depth - 1)
        if self.c.boolean(0.3):
            a, b = b, a
        if a.dtype == "num" and b.dtype == "num":
            return None
        dtype = a.dtype if a.dtype != "num" else b.dtype
        a, b = self.convert(a, dtype), self.convert(b, dtype)
        shape = broadcast(a.shape, b.shape)
        if op in ("add", "sub", "mul"):
            self.note(op)
            sym_ = {"add": "+", "sub": "-", "mul": "*"}[op]
            if op == "add":
                lo, hi = a.lo + b.lo, a.hi + b.hi
            elif op == "sub":
                lo, hi = a.lo - b.hi, a.hi - b.lo
            else:
                corners = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi]
                lo, hi = min(corners), max(corners)
            return Val(f"{a.wrapped} {sym_} {b.wrapped}", dtype, shape, lo, hi, False)
        if op == "div":
            b = self.away_from_zero(b)
            corners = [a.lo / b.lo, a.lo / b.hi, a.hi / b.lo, a.hi / b.hi]
            self.note("div")
            return Val(f"{a.wrapped} / {b.wrapped}", dtype, shape, min(corners), max(corners),
                       False)
        if op in ("maximum", "minimum"):
            self.note(op)
            f = max if op == "maximum" else min
            return Val(f"{op}({a.text}, {b.text})", dtype, shape, f(a.lo, b.lo), f(a.hi, b.hi))
        return self.power(a, b, dtype)

    def power(self, a: Val, b: Val, dtype: str, spelling: str | None = None) -> Val | None:
        spelling = spelling or self.c.choice(["caret", "starstar", "pow"])
        shape = broadcast(a.shape, b.shape)
        if self.c.boolean(0.5) and a.dtype != "num":  # constant exponent
            shape = a.shape
            k = self.c.choice([2, 3, 0.5, 1.5, -1, -0.5, -2, 0, 1, 2.5])
            if k != int(k) or k < 0:
                a = self.into(a, 0.2, math.inf) if k < 0 else self.into(a, 0.05, math.inf)
            if k > 0 and a.mag ** k > BIG:
                return None
            corners = [a.lo ** k, a.hi ** k] if a.lo > 0 else [0.0, a.mag ** k, -(a.mag ** k)]
            if a.lo <= 0 and k == int(k) and int(k) % 2 == 0:
                corners = [0.0, a.mag ** k]
            lo, hi = min(corners), max(corners)
            b = Val(str(k) if k >= 0 else f"-{abs(k)}", "num", (), k, k, k >= 0)
        else:  # a positive base, an exponent within +-2
            a = self.into(a, 0.2, math.inf)
            if a.hi > 5:
                a = Val(f"sigmoid({a.text}) + 0.5", a.dtype, a.shape, 0.5, 1.5, False)
            if b.mag > 2:
                b = Val(f"tanh({b.text})", b.dtype, b.shape, -1, 1)
            corners = [x ** y for x in (a.lo, a.hi) for y in (b.lo, b.hi)]
            lo, hi = min(corners), max(corners)
        self.note(spelling)
        if spelling == "pow":
            text = f"pow({a.text}, {b.text})"
        else:
            exponent = b.text if b.atom or b.text.startswith("-") and b.dtype == "num" \
                else f"({b.text})"
            text = f"{a.wrapped} {'^' if spelling == 'caret' else '**'} {exponent}"
        return Val(text, dtype, shape, lo, hi, spelling == "pow")

    def op_number_base(self, depth: int) -> Val | None:
        """2^x, e^x: a number raised to a tensor."""
        x = self.into(self.gen(depth - 1), -math.inf, 3.0)
        base = self.c.choice([("2", 2.0), ("e", math.e), ("0.5", 0.5)])
        self.note("caret", "pi_e")
        corners = [base[1] ** x.lo, base[1] ** x.hi]
        return Val(f"{base[0]}^{x.wrapped}", x.dtype, x.shape, min(corners), max(corners), False)

    # where / clip ------------------------------------------------------------
    def condition(self, shape: tuple, dtype: str, depth: int) -> Mask:
        if self.masks and self.c.boolean(0.3):
            options = [m for m in self.masks if broadcast(shape, m.shape) is not None]
            if options:
                self.note("mask_name")
                return self.c.choice(options)
        p = self.compatible(shape, dtype, depth - 1, number_ok=False)
        q = self.compatible(shape, dtype, depth - 1)
        if p.dtype == "num":
            p, q = q, p
        if p.dtype == "num":
            return Mask(f"{p.text} > {q.text}", ())
        q = self.convert(q, p.dtype)
        if broadcast(p.shape, q.shape) is None:
            q = self.number()
        op = self.c.choice(["<", "<=", ">", ">=", "==", "!="])
        self.note("compare", "cmp" + op)
        return Mask(f"{p.text} {op} {q.text}", broadcast(p.shape, q.shape), False)

    def op_where(self, depth: int) -> Val | None:
        a = self.gen(depth - 1)
        b = self.compatible(a.shape, a.dtype, depth - 1)
        if self.c.boolean(0.3):
            a, b = b, a
        dtype = a.dtype if a.dtype != "num" else b.dtype
        a, b = self.convert(a, dtype), self.convert(b, dtype)
        shape = broadcast(a.shape, b.shape)
        cond = self.condition(shape, dtype, depth)
        shape = broadcast(shape, cond.shape)
        if shape is None:
            return None
        self.note("where")
        return Val(f"where({cond.text}, {a.text}, {b.text})", dtype, shape,
                   min(a.lo, b.lo), max(a.hi, b.hi))

    def op_clip(self, depth: int) -> Val | None:
        x = self.gen(depth - 1)
        lo = self.compatible(x.shape, x.dtype, depth - 1) if self.c.boolean(0.3) else \
            self.c.choice([self.number(-1, -0.05), Val("-1", "num", (), -1, -1, False)])
        hi = self.compatible(x.shape, x.dtype, depth - 1) if self.c.boolean(0.3) else \
            self.number(0.1, 3)
        lo, hi = self.convert(lo, x.dtype), self.convert(hi, x.dtype)
        shape = broadcast(broadcast(x.shape, lo.shape) or (), hi.shape)
        if shape is None or broadcast(x.shape, lo.shape) is None:
            return None
        self.note("clip")
        low = min(max(x.lo, lo.lo), hi.lo)
        high = min(max(x.hi, lo.hi), hi.hi)
        return Val(f"clip({x.text}, {lo.text}, {hi.text})", x.dtype, shape, low, high)

    # reductions ------------------------------------------------------------
    def axis_spec(self, rank: int, single: bool = False) -> tuple[str, tuple[int, ...]]:
        """(keyword text or '', normalised axes); '' means the default."""
        form = self.c.integer(0, 4 if not single else 2)
        if form == 0 or rank == 0:
            return "", tuple(range(rank))
        if form in (1, 2) or rank == 1:
            axis = self.c.integer(0, rank - 1)
            if form == 2 or self.c.boolean(0.3):
                self.note("axis_negative")
                return f"axis={axis - rank}", (axis,)
            return f"axis={axis}", (axis,)
        count = self.c.integer(1, rank)
        axes = sorted(self.c.rng.sample(range(rank), count)) if isinstance(self.c, RandomChooser) \
            else sorted(set(self.c.integer(0, rank - 1) for _ in range(count)))
        written = [a - rank if self.c.boolean(0.3) else a for a in axes]
        if self.c.boolean(0.5):
            written.reverse()
        self.note("axis_tuple")
        if form == 4:
            return f"axis=[{', '.join(map(str, written))}]", tuple(axes)
        return f"axis=({', '.join(map(str, written))}{',' if len(written) == 1 else ''})", \
            tuple(axes)

    def op_reduce(self, depth: int, op: str | None = None) -> Val | None:
        op = op or self.c.choice(["sum", "mean", "max", "min", "logsumexp"])
        x = self.tensor_of_rank(depth, 0 if self.c.boolean(0.1) else 1)
        if x is None:
            return None
        axis_text, axes = self.axis_spec(x.rank)
        keep = self.c.choice(["", "keepdims=true", "keepdims=false"])
        if keep:
            self.note("keepdims")
        kwargs = ", ".join(k for k in (axis_text, keep) if k)
        shape = tuple((1 if i in axes else s) for i, s in enumerate(x.shape)) \
            if keep == "keepdims=true" else tuple(s for i, s in enumerate(x.shape) if i not in axes)
        count = 1
        for a in axes:
            count *= max(1, size_max(x.shape[a]))
        lo, hi = x.lo, x.hi
        if op == "sum":
            lo, hi = min(lo, lo * count), max(hi, hi * count)
        elif op == "logsumexp":
            hi = hi + math.log(count)
        self.note(op)
        return Val(f"{op}({x.text}{', ' + kwargs if kwargs else ''})", x.dtype, shape, lo, hi)

    def op_softmax(self, depth: int, op: str | None = None) -> Val | None:
        op = op or self.c.choice(["softmax", "log_softmax"])
        x = self.tensor_of_rank(depth, 1)
        if x is None:
            return None
        axis_text, axes = self.axis_spec(x.rank, single=self.c.boolean(0.8))
        count = 1
        for a in axes:
            count *= max(1, size_max(x.shape[a]))
        self.note(op)
        if op == "softmax":
            lo, hi = 0.0, 1.0
        else:
            lo, hi = min(0.0, x.lo - x.hi - math.log(count)), 0.0
        return Val(f"{op}({x.text}{', ' + axis_text if axis_text else ''})", x.dtype, x.shape,
                   lo, hi)

    # linear algebra ------------------------------------------------------------
    def op_matmul(self, depth: int) -> Val | None:
        a = self.tensor_of_rank(depth, 1, 2)
        if a is None:
            return None
        k = a.shape[-1]
        b = self.pick_leaf(a.dtype, lambda v: 1 <= v.rank <= 2 and v.shape[0] == k)
        if b is None or self.c.boolean(0.2):
            b = Val(f"{a.wrapped}.T" if a.rank == 2 else a.wrapped, a.dtype,
                    tuple(reversed(a.shape)), a.lo, a.hi)
            if a.rank == 2:
                self.note("dot_T")
        out_shape = a.shape[:-1] + b.shape[1:]
        m = max(a.mag, 1e-9) * max(b.mag, 1e-9) * max(1, size_max(k))
        self.note("matmul")
        val = Val(f"{a.wrapped} @ {b.wrapped}", a.dtype, out_shape, -m, m, False)
        if len(out_shape) >= 1 and self.c.boolean(0.3):  # a chain A @ B @ C
            c = self.pick_leaf(a.dtype, lambda v: 1 <= v.rank <= 2 and v.shape[0] == out_shape[-1])
            if c is not None and val.mag * c.mag * size_max(out_shape[-1]) < BIG * 10:
                m2 = val.mag * c.mag * max(1, size_max(out_shape[-1]))
                self.note("matmul_chain")
                return Val(f"{val.text} @ {c.wrapped}", a.dtype, out_shape[:-1] + c.shape[1:],
                           -m2, m2, False)
        return val

    def op_transpose(self, depth: int) -> Val | None:
        x = self.tensor_of_rank(depth, 0)
        if x is None:
            return None
        if self.c.boolean(0.5):
            self.note("dot_T")
            return Val(f"{x.wrapped}.T", x.dtype, tuple(reversed(x.shape)), x.lo, x.hi)
        self.note("transpose")
        return Val(f"transpose({x.text})", x.dtype, tuple(reversed(x.shape)), x.lo, x.hi)

    # layout --------------------------------------------------------------------
    def op_index(self, depth: int) -> Val | None:
        x = self.tensor_of_rank(depth, 1)
        if x is None:
            return None
        items, shape = [], []
        n_items = self.c.integer(1, x.rank)
        for axis in range(n_items):
            size = x.shape[axis]
            simple = isinstance(size, int) or len(size.terms) == 1 and size.terms[0][1] == 1
            kind = self.c.integer(0, 3) if simple else 0
            if kind == 0:
                items.append(":")
                shape.append(size)
            elif kind == 1:  # an integer
                if isinstance(size, int) and size == 0:
                    return None
                i = self.c.choice([0, -1, 1] if size_max(size) >= 2 or not isinstance(size, int)
                                  else [0, -1])
                if isinstance(size, int) and not -size <= i < size:
                    i = 0
                self.need(size, i + 1 if i >= 0 else -i)
                items.append(str(i))
                self.note("index")
            else:  # a slice
                text, new = self.slice_of(size)
                if text is None:
                    return None
                items.append(text)
                shape.append(new)
                self.note("slice")
        while items and items[-1] == ":" and self.c.boolean(0.7):
            items.pop()
        if not items:
            items = [":"]
        shape += list(x.shape[n_items:])
        return Val(f"{x.wrapped}[{', '.join(items)}]", x.dtype, tuple(shape), x.lo, x.hi)

    def slice_of(self, size: Size) -> tuple[str | None, Size]:
        if isinstance(size, int):
            forms = [("1:", max(0, size - 1)), (":-1", max(0, size - 1)), ("::-1", size),
                     ("::2", (size + 1) // 2), ("1::2", size // 2), (":2", min(size, 2)),
                     ("-2:", min(size, 2)), ("0:1", min(size, 1)), (":", size),
                     ("-1::-1", size), ("5:", max(0, size - 5))]
            text, new = self.c.choice(forms)
            if new == 0:  # empty slices: zero-size values are tested through dims of 0
                return None, 0
            return text, new
        self.note("symbolic_slice")
        forms = [("1:", -1, 1), (":-1", -1, 1), ("1:-1", -2, 2), ("::-1", 0, 0), ("2:", -2, 2),
                 (":", 0, 0)]
        text, delta, least = self.c.choice(forms)
        self.need(size, least + 1 if least else 1)
        return text, add_size(size, delta)

    def op_difference(self, depth: int) -> Val | None:
        """x[1:] - x[:-1] along an axis (the Rosenbrock pattern)."""
        x = self.tensor_of_rank(depth, 1)
        if x is None or (isinstance(x.shape[0], int) and x.shape[0] < 2):
            return None
        size = x.shape[0]
        self.need(size, 2)
        self.note("slice", "symbolic_slice" if not isinstance(size, int) else "slice")
        return Val(f"{x.wrapped}[1:] - {x.wrapped}[:-1]", x.dtype,
                   (add_size(size, -1),) + x.shape[1:], x.lo - x.hi, x.hi - x.lo, False)

    def op_reshape(self, depth: int) -> Val | None:
        x = self.tensor_of_rank(depth, 0)
        if x is None:
            return None
        sizes = list(x.shape)
        const, syms = 1, []
        for s in sizes:
            if isinstance(s, int):
                const *= s
            else:
                syms.append(s)
        choice = self.c.integer(0, 4)
        if choice == 0:  # flatten to one axis, written [-1]
            if len(syms) > 1 or (syms and syms[0].plain is None and const != 1):
                return None
            if not syms:
                new = [const]
            else:
                new = [Sym(tuple((n, c * const) for n, c in syms[0].terms), syms[0].const * const)]
            target = ["-1"]
        elif choice == 1:  # a unit axis somewhere
            new = list(sizes)
            new.insert(self.c.integer(0, len(sizes)), 1)
            target = self.write_sizes(new)
        elif choice == 2 and len(sizes) >= 2:  # the sizes reversed (not a transpose)
            new = list(reversed(sizes))
            target = self.write_sizes(new)
        elif choice == 3 and not syms and const % 2 == 0 and const > 0:  # a split
            new = [2, const // 2] if self.c.boolean(0.5) else [const // 2, 2]
            target = self.write_sizes(new)
        else:  # unit axes dropped
            new = [s for s in sizes if s != 1] if 1 in sizes else list(sizes)
            target = self.write_sizes(new)
        if target is None:
            return None
        self.note("reshape")
        return Val(f"reshape({x.text}, [{', '.join(target)}])", x.dtype, tuple(new), x.lo, x.hi)

    def write_sizes(self, sizes: list) -> list[str] | None:
        """Sizes as reshape takes them: numbers, dim names, and at most one -1 (needed
        for a size such as N - 1, which has no name)."""
        texts = [self.size_text(s) for s in sizes]
        unnamed = [i for i, t in enumerate(texts) if t is None]
        if len(unnamed) > 1:
            return None
        if unnamed:
            texts[unnamed[0]] = "-1"
        elif texts and self.c.boolean(0.3):
            i = self.c.integer(0, len(texts) - 1)
            if sizes[i] != 0:
                texts[i] = "-1"
        if "-1" in texts:  # -1 stands for a size only if the others do not multiply to 0
            if any(s == 0 for s in sizes):
                return None
        return texts

    def size_text(self, s: Size) -> str | None:
        if isinstance(s, int):
            for name, value in self.constant_dims.items():
                if value == s and self.c.boolean(0.3):
                    return name
            return str(s)
        return s.plain

    def op_concat(self, depth: int) -> Val | None:
        a = self.tensor_of_rank(depth, 1)
        if a is None:
            return None
        axis = self.c.integer(0, a.rank - 1)
        parts = [a]
        for _ in range(self.c.integer(1, 2)):
            want = a.shape
            b = self.pick_leaf(a.dtype, lambda v: v.rank == a.rank and all(
                s == t for i, (s, t) in enumerate(zip(v.shape, want)) if i != axis))
            r = self.c.integer(0, 2)
            if r == 0 and axis == 0 and size_max(a.shape[0]) >= 2 and \
                    (isinstance(a.shape[0], int) or a.shape[0].plain):
                self.need(a.shape[0], 2)
                b = Val(f"{a.wrapped}[1:]", a.dtype, (add_size(a.shape[0], -1),) + a.shape[1:],
                        a.lo, a.hi)
            elif b is None or r == 1:
                fn = self.c.choice(["sin", "cos", "tanh", "sigmoid"])
                b = Val(f"{fn}({a.text})", a.dtype, a.shape, -1, 1)
            parts.append(b)
        total = 0
        for p in parts:
            total = add_size(total, p.shape[axis])
        if not isinstance(total, int):
            self.note("concat_sym")
        written = axis if self.c.boolean(0.6) else axis - a.rank
        kw = "" if axis == 0 and self.c.boolean(0.5) else f", axis={written}"
        self.note("concat")
        shape = a.shape[:axis] + (total,) + a.shape[axis + 1:]
        return Val(f"concat([{', '.join(p.text for p in parts)}]{kw})", a.dtype, shape,
                   min(p.lo for p in parts), max(p.hi for p in parts))

    def op_convert(self, depth: int) -> Val | None:
        x = self.gen(depth - 1)
        if x.dtype == "num":
            return None
        other = "f32" if x.dtype == "f64" else "f64"
        self.note(other, x.dtype)
        # a round trip keeps the dtype (and, from f64, rounds to f32)
        return Val(f"{x.dtype}({other}({x.text}))", x.dtype, x.shape, x.lo, x.hi)

    def op_call(self, depth: int) -> Val | None:
        if not self.defs:
            return None
        d = self.c.choice(self.defs)
        args = []
        for name, dtype, shape, lo, hi in d.params:
            fits = self.pick_leaf(None, lambda v: v.dtype == dtype and v.shape == shape
                                  and lo <= v.lo and v.hi <= hi)
            if fits is None and shape == () and self.c.boolean(0.5):
                fits = self.number(lo, hi)
                if not lo <= fits.lo <= hi:
                    fits = None
            if fits is None:
                return None
            args.append(fits)
        self.note("def")
        r = d.result
        return Val(f"{d.name}({', '.join(a.text for a in args)})", r.dtype, r.shape, r.lo, r.hi)

    # --------------------------------------------------------- statements
    def declare(self) -> None:
        c = self.c
        names = ["N", "M"][:c.integer(0, 2)] if c.boolean(0.75) else []
        consts = {}
        for name in ["K", "L"][:c.integer(0, 2)]:  # now and then sizes past vector widths
            consts[name] = c.integer(1, 4) if c.boolean(0.8) else c.choice([5, 8, 13, 32])
        dims: list[Size] = [sym(n) for n in names] + list(consts.values()) + [2, 3]
        for n in names:
            self.symbolic[n] = 0
        self.constant_dims = consts
        if names or consts:
            items = names + [f"{n} = {v}" for n, v in consts.items()]
            if c.boolean(0.5):
                self.lines.append(f"dim {', '.join(items)}")
            else:
                self.lines += [f"dim {i}" for i in items]
        mode = c.choice(["f64", "f64", "f32", "mixed"])
        n_args = c.integer(2, 5)
        for i in range(n_args):
            rank = c.choice([0, 1, 1, 2, 2, 2, 3]) if i else c.choice([1, 2])
            shape = tuple(c.choice(dims) for _ in range(rank))
            dtype = "f64" if mode == "f64" else "f32" if mode == "f32" else c.choice(["f32", "f64"])
            lo, hi = c.choice([(-2.0, 2.0), (0.5, 2.0), (-0.5, 0.5), (-4.0, 4.0), (0.1, 3.0)])
            kind = "param" if i == 0 or c.boolean(0.6) else "input"
            name = ("w" if kind == "param" else "x") + str(i)
            self.args.append(ArgSpec(name, kind, dtype, shape, lo, hi))
            self.pool.append((name, Val(name, dtype, shape, lo, hi)))
        for a in self.args:
            self.lines.append(f"{a.kind} {a.name}{self.type_text(a)}")

    def type_text(self, a: ArgSpec) -> str:
        if not a.shape:
            return {0: "", 1: f": {a.dtype}"}[self.c.integer(0, 1)] if a.dtype == "f64" \
                else f": {a.dtype}"
        sizes = []
        for s in a.shape:
            if isinstance(s, int):
                sizes.append(self.size_text(s))
            else:
                sizes.append(s.plain)
        dtype = a.dtype if (a.dtype == "f32" or self.c.boolean(0.7)) else ""
        return f": {dtype}[{', '.join(sizes)}]"

    def define(self) -> None:
        """A def whose params take the types (and widened intervals) of pool values."""
        n = self.c.integer(1, 2)
        params = []
        for i in range(n):
            _, v = self.c.choice(self.pool)
            lo, hi = min(v.lo, -1.0), max(v.hi, 1.0)
            params.append((f"p{i}", Val(f"p{i}", v.dtype, v.shape, lo, hi)))
        name = self.fresh("fn_")
        self.in_def, self.def_params = True, params
        try:
            body = self.gen(2, top=True)
        finally:
            self.in_def, self.def_params = False, []
        if body.dtype == "num":
            return
        if any(body.text.find(d.name + "(") >= 0 for d in self.defs):
            self.note("def_calls_def")
        self.lines.append(f"def {name}({', '.join(p for p, _ in params)}) = {body.text}")
        self.defs.append(DefSpec(name, [(p, v.dtype, v.shape, v.lo, v.hi) for p, v in params],
                                 body))

    def statement(self, depth: int | None = None) -> None:
        if self.c.boolean(0.08):
            v = self.pick_leaf()
            cond = self.condition(v.shape, v.dtype, 1)
            name = self.fresh("m")
            self.lines.append(f"{name} = {cond.text}")
            self.masks.append(Mask(name, cond.shape))
            self.note("mask_name")
            return
        value = self.gen(depth if depth is not None else self.c.integer(1, 3), top=True)
        if value.dtype == "num":
            return
        name = self.fresh()
        self.lines.append(f"{name} = {value.text}")
        self.pool.append((name, Val(name, value.dtype, value.shape, value.lo, value.hi)))

    def focused(self, name: str) -> Val | None:
        """An expression that certainly uses builtin `name`."""
        if name in UNARY_DOMAINS or name in SMOOTH_UNARY + KINKED_UNARY:
            return self.op_unary(2, name)
        if name in ("maximum", "minimum"):
            return self.op_binary(2, name)
        if name == "pow":
            a = self.gen(1)
            if a.dtype == "num":
                return None
            b = self.convert(self.compatible(a.shape, a.dtype, 1), a.dtype)
            return self.power(a, b, a.dtype, "pow")
        if name in ("sum", "mean", "max", "min", "logsumexp"):
            return self.op_reduce(2, name)
        if name in ("softmax", "log_softmax"):
            return self.op_softmax(2, name)
        if name in ("f32", "f64"):
            return self.op_convert(2)
        return getattr(self, "op_" + {"where": "where", "clip": "clip", "transpose": "transpose",
                                      "reshape": "reshape", "concat": "concat"}[name])(2)

    def build(self) -> GeneratedProgram:
        c = self.c
        self.declare()
        for _ in range(c.choice([0, 0, 1, 2])):
            self.define()
            if self.defs and c.boolean(0.5):
                self.statement(1)
        chain = c.boolean(0.12)
        count = c.integer(20, 40) if chain else c.integer(1, self.max_statements)
        if chain:
            self.note("chain")
        for _ in range(count):
            self.statement(1 if chain else None)
            if self.focus is not None and not self.uses_builtin(self.focus) and c.boolean(0.3):
                self.force_focus()
        if self.focus is not None and not self.uses_builtin(self.focus):
            self.force_focus()
        self.loss()
        return GeneratedProgram("\n".join(self.lines) + "\n", self.args, dict(self.symbolic),
                                set(self.features))

    def force_focus(self) -> None:
        for _ in range(8):
            v = self.focused(self.focus)
            if v is not None and v.dtype != "num":
                v = self.squash(v)
                name = self.fresh()
                self.lines.append(f"{name} = {v.text}")
                self.pool.append((name, Val(name, v.dtype, v.shape, v.lo, v.hi)))
                if self.uses_builtin(self.focus):
                    return

    def loss(self) -> None:
        """loss = a scalar mixing several values (the last one always)."""
        values = [(n, v) for n, v in self.pool if not n.startswith(("x", "w"))] or self.pool
        picks = [values[-1]] + [self.c.choice(self.pool) for _ in range(self.c.integer(0, 3))]
        dtype = picks[0][1].dtype
        terms = []
        for name, v in picks:
            form = self.c.integer(0, 5)
            if v.shape == ():
                term = name if form < 3 else f"0.5 * {name} * {name}"
            elif form == 0:
                term = f"sum({name})"
            elif form == 1:
                term = f"mean({name} * {name})"
            elif form == 2:
                term = f"0.5 * sum(square({name}))"
            elif form == 3:
                other = self.pick_leaf(v.dtype, lambda u: broadcast(v.shape, u.shape) == v.shape)
                term = f"sum({name} * {other.text})" if other is not None else f"sum({name})"
            elif form == 4:
                term = f"mean({name})"
            else:
                term = f"sum(sin({name}))"
            if v.dtype != dtype:
                term = f"{dtype}({term})"
            terms.append(term)
        self.lines.append(f"loss = {' + '.join(terms)}")
        extra = [n for n, _ in self.c.choice([[], [], self.pool[-2:], [self.c.choice(self.pool)]])]
        self.lines.append("output " + ", ".join(["loss"] + extra))


KINDS = (["unary"] * 6 + ["binary"] * 6 + ["where", "where", "clip", "reduce", "reduce",
         "reduce", "softmax", "matmul", "matmul", "transpose", "index", "index", "difference",
         "reshape", "concat", "convert", "call", "call", "number_base"])


def generate(chooser: Chooser, focus: str | None = None, max_statements: int = 10
             ) -> GeneratedProgram:
    return ProgramBuilder(chooser, focus, max_statements).build()


def programs(focus: Sequence[str] | None = None):
    """A hypothesis strategy of GeneratedPrograms (each focused on one builtin, so a
    run of a few dozen examples exercises every builtin)."""
    from hypothesis import strategies as st

    @st.composite
    def strategy(draw):
        data = draw(st.data())
        chooser = HypothesisChooser(data)
        name = chooser.choice(list(focus or BUILTIN_NAMES))
        return generate(chooser, name)
    return strategy()
