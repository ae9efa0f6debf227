"""Every builtin, table-driven: values against NumPy written by hand here, and
every gradient against central finite differences of that hand-written NumPy
(so neither check trusts the compiler), on scalar, vector, matrix, broadcast
and symbolic-dim shapes, with inputs on each function's domain and away from
its kinks and ties.

Each case compiles
    <header>
    out  = <expr>
    loss = sum(sin(out))      # a non-uniform cotangent cos(out) reaches out
    output loss, out
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

import chainrule
from finite_diff import assert_grad_close, numerical_grad


# ------------------------------------------------------------------ samplers
def U(lo: float, hi: float):
    return lambda rng, shape: rng.uniform(lo, hi, shape)


def signed(lo: float, hi: float):
    """Magnitudes in [lo, hi] with random signs: keeps away from a kink at 0."""
    return lambda rng, shape: rng.uniform(lo, hi, shape) * rng.choice([-1.0, 1.0], shape)


def on_grid(offset: float):
    """Integers + offset + small noise: two samplers with offsets 0 and 0.5
    never come within 0.1 of each other (no ties for maximum/minimum)."""
    return lambda rng, shape: (rng.integers(-3, 4, shape) + offset
                               + rng.uniform(-0.2, 0.2, shape)).astype(np.float64)


def distinct(rng, shape):
    """Values at least 0.2 apart: a unique max and min along every axis."""
    n = int(np.prod(shape, dtype=int))
    return (rng.permutation(n) * 0.25 + rng.uniform(0, 0.05, n)).reshape(shape) - n * 0.125


def eighths(rng, shape):
    """Multiples of 1/8: exact in f32, so conversions lose nothing."""
    return rng.integers(-16, 16, shape) / 8.0


# --------------------------------------------------------------------- cases
@dataclass
class Case:
    id: str
    header: str
    expr: str
    ref: Callable[..., np.ndarray]          # the hand-written NumPy value of `out`
    args: dict                               # name -> (shape, sampler); shapes may use "B"
    batches: tuple[int, ...] = (3,)         # sizes tried for the symbolic dim B (one Function)
    rtol: float = 1e-6

    def draw(self, rng, batch: int) -> dict:
        out = {}
        for name, (shape, sampler) in self.args.items():
            concrete = tuple(batch if s == "B" else s for s in shape)
            out[name] = np.asarray(sampler(rng, concrete), dtype=np.float64)
        return out


CASES: list[Case] = []


def case(id, header, expr, ref, args, batches=(3,), rtol=1e-6):
    CASES.append(Case(id, header, expr, ref, args, batches, rtol))


def _type(shape) -> str:
    return "" if shape == () else ": [" + ", ".join(str(s) for s in shape) + "]"


def _header(args: dict, f32: tuple = ()) -> str:
    lines = []
    if any("B" in shape for shape, _ in args.values()):
        lines.append("dim B")
    for name, (shape, _) in args.items():
        t = _type(shape)
        if name in f32:
            t = ": f32" + (t[2:] if t else "")
        lines.append(f"param {name}{t}")
    return "\n".join(lines)


# --- elementwise unary: every function on every shape
def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


UNARY = {
    "exp": (np.exp, U(-2, 2)),
    "log": (np.log, U(0.3, 3)),
    "log1p": (np.log1p, U(-0.5, 2)),
    "expm1": (np.expm1, U(-2, 2)),
    "sqrt": (np.sqrt, U(0.3, 3)),
    "sin": (np.sin, U(-3, 3)),
    "cos": (np.cos, U(-3, 3)),
    "tan": (np.tan, U(-1.2, 1.2)),
    "tanh": (np.tanh, U(-2, 2)),
    "sigmoid": (sigmoid, U(-4, 4)),
    "relu": (lambda x: np.where(x > 0, x, 0.0), signed(0.1, 2)),
    "softplus": (lambda x: np.log(1.0 + np.exp(x)), U(-3, 3)),
    "abs": (lambda x: np.where(x < 0, -x, x), signed(0.1, 2)),
    "sign": (lambda x: np.where(x > 0, 1.0, -1.0), signed(0.1, 2)),
    "square": (lambda x: x * x, U(-2, 2)),
}

for fname, (f, dom) in UNARY.items():
    for sid, shape in (("scalar", ()), ("vector", (5,)), ("matrix", (3, 4)),
                       ("symbolic", ("B", 3))):
        args = {"x": (shape, dom)}
        case(f"{fname}-{sid}", _header(args), f"{fname}(x)", lambda x, f=f: f(x), args,
             batches=(1, 4) if sid == "symbolic" else (3,))
    args = {"x": (("B", 1), dom), "y": ((3,), U(-2, 2))}
    case(f"{fname}-broadcast", _header(args), f"{fname}(x) * y",
         lambda x, y, f=f: f(x) * y, args, batches=(2, 5))

# --- binary operators and functions, with broadcasting
BINARY = {
    "add": ("x + y", np.add, U(-2, 2), U(-2, 2)),
    "sub": ("x - y", np.subtract, U(-2, 2), U(-2, 2)),
    "mul": ("x * y", np.multiply, U(-2, 2), U(-2, 2)),
    "div": ("x / y", np.divide, U(-2, 2), signed(0.5, 2)),
    "caret": ("x ^ y", np.power, U(0.5, 2), U(-2, 2)),
    "starstar": ("x ** y", np.power, U(0.5, 2), U(-2, 2)),
    "pow": ("pow(x, y)", np.power, U(0.5, 2), U(-2, 2)),
    "maximum": ("maximum(x, y)", np.maximum, on_grid(0.0), on_grid(0.5)),
    "minimum": ("minimum(x, y)", np.minimum, on_grid(0.0), on_grid(0.5)),
}
SHAPE_PAIRS = {
    "scalars": ((), ()),
    "vectors": ((5,), (5,)),
    "row": ((3, 4), (4,)),
    "outer": ((3, 1), (1, 4)),
    "scalar-matrix": ((), (3, 4)),
    "matrix-scalar": ((3, 4), ()),
    "rank3": ((2, 3, 4), (3, 1)),
    "symbolic": (("B", 3), (3,)),
    "symbolic-both": (("B", 1), ("B", 4)),
}
for bname, (expr, f, dx, dy) in BINARY.items():
    for sid, (sx, sy) in SHAPE_PAIRS.items():
        args = {"x": (sx, dx), "y": (sy, dy)}
        case(f"{bname}-{sid}", _header(args), expr, lambda x, y, f=f: f(x, y), args,
             batches=(1, 4) if "symbolic" in sid else (3,))

# --- number literals take the other operand's dtype; precedence as the contract says
x_any = {"x": ((4,), U(-2, 2))}
x_pos = {"x": ((4,), U(0.5, 2))}
x_small = {"x": ((4,), U(-1, 1))}
for cid, expr, ref, args in [
    ("literal-mul", "2 * x", lambda x: 2 * x, x_any),
    ("literal-div", "x / 4", lambda x: x / 4, x_any),
    ("literal-rdiv", "1 / x", lambda x: 1 / x, x_pos),
    ("literal-rsub", "1 - x", lambda x: 1 - x, x_any),
    ("literal-cube", "x ^ 3", lambda x: x ** 3, x_any),
    ("literal-square", "x ^ 2", lambda x: x * x, x_any),
    ("literal-one", "x ^ 1", lambda x: x, x_any),
    ("literal-half", "x ^ 0.5", lambda x: np.sqrt(x), x_pos),
    ("literal-inverse", "x ^ -1", lambda x: 1 / x, x_pos),
    ("literal-base", "2 ^ x", lambda x: 2.0 ** x, x_any),
    ("right-assoc", "2 ^ 3 ^ x", lambda x: 2.0 ** (3.0 ** x), x_small),
    ("neg", "-x", lambda x: -x, x_any),
    ("neg-pow", "-x^2", lambda x: -(x ** 2), x_any),
    ("neg-pow-star", "-x**2 + 1e-3", lambda x: -(x ** 2) + 1e-3, x_any),
    ("identities", "(x + 0) * 1 - 0", lambda x: x, x_any),
    ("pi-e", "pi * x + e", lambda x: np.pi * x + np.e, x_any),
    ("folded-constants", "x * (2 * pi) + exp(1) - e", lambda x: x * (2 * np.pi), x_any),
    ("square-of-sum", "square(x + 1)", lambda x: (x + 1) ** 2, x_any),
    ("shared-subexpression", "x * x + x * x", lambda x: 2 * x * x, x_any),
]:
    case(cid, _header(args), expr, ref, args)

# --- clip: constant bounds, scalar params, broadcast vector bounds
def clip_x(rng, shape):
    """Below, inside and above bounds near -1 and 1, at least 0.3 from either."""
    return rng.choice([-2.0, -0.5, 0.0, 0.5, 2.0], shape) + rng.uniform(-0.1, 0.1, shape)


def near(c):
    return lambda rng, shape: c + rng.uniform(-0.1, 0.1, shape)


case("clip-constants", "param x: [3, 4]", "clip(x, -1, 1)",
     lambda x: np.minimum(np.maximum(x, -1.0), 1.0), {"x": ((3, 4), clip_x)})
for sid, bshape in (("scalar-bounds", ()), ("vector-bounds", (4,))):
    args = {"x": ((3, 4), clip_x), "lo": (bshape, near(-1.0)), "hi": (bshape, near(1.0))}
    case(f"clip-{sid}", _header(args), "clip(x, lo, hi)",
         lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi), args)
args = {"x": (("B", 4), clip_x), "hi": ((), near(1.0))}
case("clip-symbolic", _header(args), "clip(x, -1, hi)",
     lambda x, hi: np.minimum(np.maximum(x, -1.0), hi), args, batches=(1, 5))

# --- where with every comparison; mask from an input, a param, or broadcast
k_int = lambda rng, shape: rng.integers(0, 3, shape).astype(np.float64)  # noqa: E731
WHERE = [
    ("gt", "where(m > 0, a, b)", lambda m, a, b: np.where(m > 0, a, b),
     {"m": ((3, 4), signed(0.1, 1))}),
    ("lt", "where(m < 0, a, b)", lambda m, a, b: np.where(m < 0, a, b),
     {"m": ((3, 4), signed(0.1, 1))}),
    ("ge", "where(m >= 1, a, b)", lambda m, a, b: np.where(m >= 1, a, b),
     {"m": ((3, 4), k_int)}),
    ("le", "where(m <= 1, a, b)", lambda m, a, b: np.where(m <= 1, a, b),
     {"m": ((3, 4), k_int)}),
    ("eq", "where(m == 1, a, b)", lambda m, a, b: np.where(m == 1, a, b),
     {"m": ((3, 4), k_int)}),
    ("ne", "where(m != 1, a, b)", lambda m, a, b: np.where(m != 1, a, b),
     {"m": ((3, 4), k_int)}),
    ("broadcast-mask", "where(m > 0, a, b)", lambda m, a, b: np.where(m > 0, a, b),
     {"m": ((3, 1), signed(0.1, 1))}),
]
for wid, expr, ref, margs in WHERE:
    header = "\n".join(f"input {n}: [{', '.join(map(str, s))}]" for n, (s, _) in margs.items())
    args = {**margs, "a": ((3, 4), U(-2, 2)), "b": ((4,), U(-2, 2))}
    params = {"a": args["a"], "b": args["b"]}
    case(f"where-{wid}", header + "\n" + _header(params), expr, ref, args)
args = {"x": ((3, 4), signed(0.1, 2))}
case("where-leaky-relu", _header(args), "where(x > 0, x, 0.1 * x)",
     lambda x: np.where(x > 0, x, 0.1 * x), args)
args = {"x": ((5,), on_grid(0.0)), "y": ((5,), on_grid(0.5))}
case("where-param-mask", _header(args), "where(x < y, x^2, y)",
     lambda x, y: np.where(x < y, x ** 2, y), args)
args = {"x": (("B", 3), signed(0.1, 2))}
case("where-literal-branch", _header(args), "where(x > 0, 0, x)",
     lambda x: np.where(x > 0, 0.0, x), args, batches=(2, 4))


# --- reductions: every axis form, keepdims true/false/default
def logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis if axis is not None else None)


REDUCTIONS = {
    "sum": (np.sum, U(-2, 2)),
    "mean": (np.mean, U(-2, 2)),
    "max": (np.max, distinct),
    "min": (np.min, distinct),
    "logsumexp": (logsumexp, U(-2, 2)),
}
AXES = {"default": None, "0": 0, "1": 1, "-1": -1, "(0, 2)": (0, 2), "(-1, 0)": (-1, 0),
        "(0, 1, 2)": (0, 1, 2), "(1,)": (1,)}
for rname, (f, dom) in REDUCTIONS.items():
    for atext, axis in AXES.items():
        for ktext, keep in (("", False), ("keepdims=false", False), ("keepdims=true", True)):
            kws = [k for k in (f"axis={atext}" if axis is not None else "", ktext) if k]
            call = f"{rname}({', '.join(['x'] + kws)})"
            case(f"{rname}-axis{atext}-{ktext or 'nokeep'}", "param x: [2, 3, 4]", call,
                 lambda x, f=f, axis=axis, keep=keep: f(x, axis=axis, keepdims=keep),
                 {"x": ((2, 3, 4), dom)})
    case(f"{rname}-scalar", "param x", f"{rname}(x)", lambda x, f=f: f(x), {"x": ((), dom)})
    case(f"{rname}-vector", "param x: [5]", f"{rname}(x)", lambda x, f=f: f(x),
         {"x": ((5,), dom)})
    case(f"{rname}-vector-axis0-keep", "param x: [5]", f"{rname}(x, axis=0, keepdims=true)",
         lambda x, f=f: f(x, axis=0, keepdims=True), {"x": ((5,), dom)})
    for atext, axis in (("0", 0), ("1", 1), ("-2", -2)):
        case(f"{rname}-symbolic-axis{atext}", "dim B\nparam x: [B, 3]",
             f"{rname}(x, axis={atext})", lambda x, f=f, axis=axis: f(x, axis=axis),
             {"x": (("B", 3), dom)}, batches=(1, 4))
    case(f"{rname}-symbolic-all", "dim B\nparam x: [B, 3]", f"{rname}(x, keepdims=true)",
         lambda x, f=f: f(x, axis=None, keepdims=True), {"x": (("B", 3), dom)}, batches=(2, 5))


# --- softmax / log_softmax along an axis (default -1)
def softmax(x, axis=-1):
    z = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return z / np.sum(z, axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    return np.log(softmax(x, axis))


for sname, f in (("softmax", softmax), ("log_softmax", log_softmax)):
    for shape, atext, axis in (((5,), "", -1), ((3, 4), "", -1), ((3, 4), "0", 0),
                               ((3, 4), "1", 1), ((3, 4), "-1", -1), ((3, 4), "-2", -2),
                               ((2, 3, 4), "1", 1), (("B", 4), "", -1), (("B", 4), "0", 0)):
        call = f"{sname}(x{', axis=' + atext if atext else ''})"
        sid = "x".join(map(str, shape))
        case(f"{sname}-{sid}-axis{atext or 'default'}", _header({"x": (shape, None)}), call,
             lambda x, f=f, axis=axis: f(x, axis), {"x": (shape, U(-3, 3))},
             batches=(1, 4) if "B" in shape else (3,))

# --- matmul with NumPy's rules for 1-D and 2-D operands
for mid, sa, sb in (("vec-vec", (3,), (3,)), ("vec-mat", (3,), (3, 4)),
                    ("mat-vec", (2, 3), (3,)), ("mat-mat", (2, 3), (3, 4)),
                    ("symbolic-rows", ("B", 3), (3, 4)), ("symbolic-inner", (2, "B"), ("B", 3)),
                    ("symbolic-vec", ("B",), ("B", 2))):
    args = {"a": (sa, U(-1, 1)), "b": (sb, U(-1, 1))}
    case(f"matmul-{mid}", _header(args), "a @ b", lambda a, b: np.matmul(a, b), args,
         batches=(1, 4) if "symbolic" in mid else (3,))
args = {"x": (("B", 3), U(-1, 1)), "W": ((3, 4), U(-1, 1)), "c": ((4,), U(-1, 1))}
case("matmul-dense", _header(args), "x @ W + c", lambda x, W, c: x @ W + c, args,
     batches=(2, 3))
args = {"a": ((3, 4), U(-1, 1))}
case("matmul-same-operand", _header(args), "a.T @ a", lambda a: a.T @ a, args)
case("matmul-chain", "param a: [2, 3]\nparam b: [3, 3]\nparam v: [3]", "a @ b @ v",
     lambda a, b, v: a @ b @ v,
     {"a": ((2, 3), U(-1, 1)), "b": ((3, 3), U(-1, 1)), "v": ((3,), U(-1, 1))})
case("matmul-precedence", "param a: [2, 3]\nparam b: [3]", "2 * a @ b + 1",
     lambda a, b: (2 * a) @ b + 1, {"a": ((2, 3), U(-1, 1)), "b": ((3,), U(-1, 1))})

# --- transpose and .T (reverse the axes)
for tid, shape, expr in (("fn-matrix", (3, 4), "transpose(x)"), ("T-matrix", (3, 4), "x.T"),
                         ("fn-rank3", (2, 3, 4), "transpose(x)"), ("T-rank3", (2, 3, 4), "x.T"),
                         ("T-vector", (4,), "x.T"), ("T-scalar", (), "x.T"),
                         ("T-symbolic", ("B", 3), "x.T")):
    case(f"transpose-{tid}", _header({"x": (shape, None)}), expr,
         lambda x: np.transpose(x), {"x": (shape, U(-2, 2))},
         batches=(1, 4) if "B" in shape else (3,))
case("transpose-twice", "param x: [3, 4]", "x.T.T", lambda x: x, {"x": ((3, 4), U(-2, 2))})
case("transpose-mixed", "param x: [3, 4]\nparam y: [4, 3]", "x.T * transpose(y).T",
     lambda x, y: x.T * y, {"x": ((3, 4), U(-2, 2)), "y": ((4, 3), U(-2, 2))})

# --- reshape with sizes, dim names and -1
for rid, shape, target, ref in (
        ("static", (3, 4), "[4, 3]", lambda x: x.reshape(4, 3)),
        ("flatten", (3, 4), "[-1]", lambda x: x.reshape(-1)),
        ("infer-rows", (3, 4), "[-1, 2]", lambda x: x.reshape(-1, 2)),
        ("to-scalar", (1, 1), "[]", lambda x: x.reshape(())),
        ("dim-name", ("B", 2), "[2, B]", lambda x: x.reshape(2, -1)),
        ("dim-infer", ("B", 2, 3), "[B, -1]", lambda x: x.reshape(x.shape[0], -1)),
        ("infer-dim", ("B", 2), "[-1, 2]", lambda x: x.reshape(-1, 2)),
        ("flatten-symbolic", ("B", 3), "[-1]", lambda x: x.reshape(-1))):
    case(f"reshape-{rid}", _header({"x": (shape, None)}), f"reshape(x, {target})", ref,
         {"x": (shape, U(-2, 2))}, batches=(1, 3) if "B" in shape else (3,))
case("reshape-dim-arith", "dim B\nparam x: [B, 4]\nparam y: [2, B, 2]",
     "reshape(x, [2, B, 2]) * y", lambda x, y: x.reshape(2, -1, 2) * y,
     {"x": (("B", 4), U(-2, 2)), "y": ((2, "B", 2), U(-2, 2))}, batches=(1, 3))

# --- concat
for cid, sa, sb, axis in (("axis0", (2, 3), (4, 3), "axis=0"), ("default", (2, 3), (1, 3), ""),
                          ("axis1", (2, 3), (2, 1), "axis=1"), ("axis-1", (2, 3), (2, 2), "axis=-1"),
                          ("vectors", (2,), (3,), ""), ("symbolic", ("B", 3), (2, 3), "axis=0"),
                          ("symbolic-cols", ("B", 3), ("B", 1), "axis=1")):
    args = {"a": (sa, U(-2, 2)), "b": (sb, U(-2, 2))}
    ax = int(axis.split("=")[1]) if axis else 0
    call = f"concat([a, b]{', ' + axis if axis else ''})"
    case(f"concat-{cid}", _header(args), call,
         lambda a, b, ax=ax: np.concatenate([a, b], axis=ax), args,
         batches=(1, 4) if "symbolic" in cid else (3,))
args = {"a": ((2,), U(-2, 2)), "b": ((1,), U(-2, 2)), "c": ((3,), U(-2, 2))}
case("concat-three", _header(args), "concat([a, b, c, a], axis=0)",
     lambda a, b, c: np.concatenate([a, b, c, a]), args)
case("concat-then-slice", "dim N\nparam x: [N]", "concat([x[1:], x[:1]]) * x",
     lambda x: np.concatenate([x[1:], x[:1]]) * x, {"x": (("B",), U(-2, 2))},
     batches=(2, 5))

# --- indexing and slicing: negative, strided, reversed, mixed, symbolic
for iid, shape, index in (
        ("from1", (6,), "[1:]"), ("to-1", (6,), "[:-1]"), ("step2", (6,), "[::2]"),
        ("reverse", (6,), "[::-1]"), ("point", (6,), "[2]"), ("point-neg", (6,), "[-1]"),
        ("range-step", (7,), "[1:5:2]"), ("neg-step-range", (7,), "[5:1:-2]"),
        ("neg-bounds", (7,), "[-4:-1]"), ("clamped", (5,), "[-10:10]"),
        ("row", (3, 4), "[1]"), ("col", (3, 4), "[:, 0]"), ("col-neg", (3, 4), "[:, -1]"),
        ("elem", (3, 4), "[-1, -2]"), ("row-slice", (3, 4), "[2, 1:3]"),
        ("both-strided", (5, 6), "[-2:, ::-2]"), ("leading-only", (2, 3, 4), "[1:]"),
        ("rank3-mixed", (2, 3, 4), "[0, ::2, 1:-1]"), ("empty-slice-all", (3, 4), "[:, :]")):
    sl = eval(f"np.s_{index}")  # the same index in NumPy's own syntax
    case(f"index-{iid}", _header({"x": (shape, None)}), f"x{index}",
         lambda x, sl=sl: np.asarray(x[sl]), {"x": (shape, U(-2, 2))})
for iid, index in (("from1", "[1:]"), ("to-1", "[:-1]"), ("point-neg", "[-1]"),
                   ("point", "[0]"), ("step2", "[::2]"), ("reverse", "[::-1]"),
                   ("cols", "[:, -2:]"), ("rows-range", "[1:-1, 0]")):
    sl = eval(f"np.s_{index}")
    shape = ("B",) if "," not in index else ("B", 3)
    case(f"index-symbolic-{iid}", _header({"x": (shape, None)}), f"x{index}",
         lambda x, sl=sl: np.asarray(x[sl]), {"x": (shape, U(-2, 2))}, batches=(3, 6))
case("index-differences", "dim N\nparam x: [N]", "x[1:] - x[:-1]",
     lambda x: x[1:] - x[:-1], {"x": (("B",), U(-2, 2))}, batches=(2, 5))
case("index-rosenbrock", "dim N\nparam x: [N]",
     "sum((x[1:] - x[:-1]^2)^2 + (1 - x[:-1])^2)",  # sin(out) keeps the slopes moderate
     lambda x: np.sum((x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2),
     {"x": (("B",), U(-1.5, 1.5))}, batches=(2, 6))
case("index-of-expression", "param x: [3, 4]", "(x * 2).T[1:, -1]",
     lambda x: (x * 2).T[1:, -1], {"x": ((3, 4), U(-2, 2))})

# --- conversions (values exact in f32, so only the f32 rounding of cotangents remains)
case("convert-f32-roundtrip", "param x: [4]", "f64(f32(x) * 2)", lambda x: x * 2,
     {"x": ((4,), eighths)})
case("convert-f32-param", "param x: f32[4]", "f64(x) * 3", lambda x: x * 3,
     {"x": ((4,), eighths)})
case("convert-mixed", "param x: f32[4]\nparam y: [4]", "f64(x * f32(0.5)) + y",
     lambda x, y: x * 0.5 + y, {"x": ((4,), eighths), "y": ((4,), U(-2, 2))})
case("convert-f64-noop", "param x: [4]", "f64(x)", lambda x: x, {"x": ((4,), U(-2, 2))})
case("convert-literal", "param x: [4]", "x * f64(3)", lambda x: 3 * x, {"x": ((4,), U(-2, 2))})


def _f32_params(header: str) -> set[str]:
    return {line.split()[1].rstrip(":") for line in header.splitlines() if "f32" in line}


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_builtin(c: Case):
    src = f"{c.header}\nout = {c.expr}\nloss = sum(sin(out))\noutput loss, out\n"
    fn = chainrule.compile(src, backend="numpy")
    params = [a.name for a in fn.args if a.kind == "param"]
    assert fn.wrt == tuple(params)
    f32 = _f32_params(c.header)
    rng = np.random.default_rng(zlib.crc32(c.id.encode()))

    def ref_loss(**a):
        return np.sum(np.sin(c.ref(**a)))

    for batch in c.batches:
        arrays = c.draw(rng, batch)
        expect = np.asarray(c.ref(**arrays), dtype=np.float64)
        (loss, out), grads = fn.value_and_grad(**arrays)
        out = np.asarray(out)
        assert out.shape == expect.shape, f"{c.id}: shape {out.shape}, expected {expect.shape}"
        assert out.dtype == np.float64
        np.testing.assert_allclose(out, expect, rtol=1e-12, atol=1e-13, err_msg=c.id)
        np.testing.assert_allclose(loss, ref_loss(**arrays), rtol=1e-12, atol=1e-12)
        # value() agrees with value_and_grad()
        loss2, out2 = fn.value(**arrays)
        np.testing.assert_array_equal(out2, out)
        for name in params:
            g = np.asarray(grads[name])
            assert g.shape == arrays[name].shape
            assert g.dtype == (np.float32 if name in f32 else np.float64)
            fd = numerical_grad(ref_loss, arrays, name)
            assert_grad_close(g, fd, c.rtol, what=f"{c.id} d/d{name} (B={batch})")


def test_every_builtin_has_a_case():
    from chainrule.compiler.builtins import BUILTINS, CONSTANTS
    covered = " ".join(c.expr for c in CASES)
    for name in list(BUILTINS) + list(CONSTANTS):
        assert f"{name}(" in covered or (name in CONSTANTS and name in covered.split()), name
    for op in ("+", "-", "*", "/", "^", "**", "@", ".T", "[", ">", "<", ">=", "<=", "==", "!="):
        assert op in covered, op
