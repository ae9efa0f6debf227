"""Elementwise primitives: math functions, arithmetic, comparisons, `where`.

Each entry declares the NumPy reference and the VJP (written with
`chainrule.compiler.ops`, so the adjoint is IR in the same primitives).
`x` is the input, `y` the node itself (its output), `g` the cotangent.
"""
from __future__ import annotations

import numpy as np

from chainrule.compiler import ops
from chainrule.compiler.codegen import scalar as S
from chainrule.compiler.ir import Node, Primitive, TensorType, register, require
from chainrule.compiler.primitives.common import mask_of, same_float

_ew = "elementwise"


def _unary(name: str, reference, vjp, **kw) -> None:
    register(Primitive(name, _ew, same_float, lambda v, a, d: reference(v[0]), vjp, **kw))


def _x(y: Node) -> Node:
    return y.inputs[0]


def _sigmoid(x):
    # two branches so exp never overflows: 1/(1+e^-x) for x >= 0, e^x/(1+e^x) below
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


def _softplus(x):
    # max(x, 0) + log1p(exp(-|x|)): never overflows
    return (np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))).astype(x.dtype)


_unary("neg", np.negative, lambda y, g: [ops.neg(g)], notation="-", emit=S.neg)
_unary("exp", np.exp, lambda y, g: [ops.mul(g, y)], emit=S.vector_math("exp"))                      # d e^x = e^x
_unary("log", np.log, lambda y, g: [ops.div(g, _x(y))], emit=S.vector_math("log"))                  # d log x = 1/x
_unary("log1p", np.log1p, lambda y, g: [ops.div(g, ops.add(_x(y), 1.0))],
       emit=S.vector_math("log1p"))
_unary("expm1", np.expm1, lambda y, g: [ops.mul(g, ops.add(y, 1.0))],
       emit=S.vector_math("expm1"))   # d(e^x - 1) = e^x
_unary("sqrt", np.sqrt, lambda y, g: [ops.div(g, ops.mul(2.0, y))],
       emit=S.call("llvm.sqrt"))     # 1/(2 sqrt x)
_unary("sin", np.sin, lambda y, g: [ops.mul(g, ops.unary("cos", _x(y)))],
       emit=S.vector_math("sin"))
_unary("cos", np.cos, lambda y, g: [ops.neg(ops.mul(g, ops.unary("sin", _x(y))))],
       emit=S.vector_math("cos"))
_unary("tan", np.tan, lambda y, g: [ops.mul(g, ops.add(1.0, ops.mul(y, y)))],
       emit=S.vector_math("tan"))  # 1 + tan^2
_unary("tanh", np.tanh, lambda y, g: [ops.mul(g, ops.sub(1.0, ops.mul(y, y)))],
       emit=S.vector_math("tanh"))  # 1 - tanh^2
_unary("sigmoid", _sigmoid, lambda y, g: [ops.mul(g, ops.mul(y, ops.sub(1.0, y)))],
       emit=S.vector_math("sigmoid"))  # s(1-s)
_unary("softplus", _softplus, lambda y, g: [ops.mul(g, ops.unary("sigmoid", _x(y)))],
       emit=S.vector_math("softplus"))
# relu'(0) = 0 (as PyTorch): the cotangent passes only where x > 0
_unary("relu", lambda x: np.maximum(x, 0).astype(x.dtype),
       lambda y, g: [ops.where(ops.compare("gt", _x(y), 0.0), g, 0.0)], emit=S.relu)
# abs'(x) = sign(x), so abs'(0) = 0
_unary("abs", np.abs, lambda y, g: [ops.mul(g, ops.unary("sign", _x(y)))],
       emit=S.call("llvm.fabs"))
_unary("sign", np.sign, lambda y, g: [None], derivative_free=True, emit=S.sign)
# blocks the gradient: used for the max shift of stable logsumexp
_unary("stop_gradient", lambda x: x, lambda y, g: [None], derivative_free=True,
       emit=S.identity)


def _binary(name: str, reference, vjp, **kw) -> None:
    register(Primitive(name, _ew, same_float, lambda v, a, d: reference(v[0], v[1]), vjp, **kw))


def _a(y: Node) -> Node:
    return y.inputs[0]


def _b(y: Node) -> Node:
    return y.inputs[1]


def _tie_split(y: Node, g: Node) -> list[Node]:
    """maximum/minimum: the winner takes g; exact ties split it evenly (as JAX and PyTorch)."""
    a, b = y.inputs
    win = "gt" if y.op == "maximum" else "lt"
    half = ops.where(ops.compare("eq", a, b), ops.mul(g, 0.5), 0.0)
    return [ops.where(ops.compare(win, a, b), g, half), ops.where(ops.compare(win, b, a), g, half)]


_binary("add", np.add, lambda y, g: [g, g], notation="+", emit=S.binary("fadd"))
_binary("sub", np.subtract, lambda y, g: [g, ops.neg(g)], notation="-",
        emit=S.binary("fsub"))
_binary("mul", np.multiply, lambda y, g: [ops.mul(g, _b(y)), ops.mul(g, _a(y))], notation="*",
        emit=S.binary("fmul"))
# d(a/b) = g/b, and -g*a/b^2 = -(g/b) * (a/b)
_binary("div", np.divide,
        lambda y, g: [ops.div(g, _b(y)), ops.neg(ops.mul(ops.div(g, _b(y)), y))], notation="/",
        emit=S.binary("fdiv"))
def _pow_vjp(y: Node, g: Node) -> list:
    """d a^b = b a^(b-1) da + a^b log(a) db; a constant b = 0 contributes nothing
    (written out, 0 * a^-1 would be NaN at a = 0)."""
    a, b = y.inputs
    exponent = b
    while exponent.op == "broadcast":
        exponent = exponent.inputs[0]
    if exponent.op == "const" and exponent.attr("value") == 0.0:
        return [None, None]
    return [ops.mul(g, ops.mul(b, ops.apply("pow", a, ops.sub(b, 1.0)))),
            ops.mul(g, ops.mul(y, ops.unary("log", a)))]


def _pow_ref(a, b):
    """np.power, with C99's (-inf) ** b = +inf for b > 0 not an odd integer: NumPy
    gives that for arrays but NaN for 0-d operands, the native code always +inf."""
    out = np.power(a, b)
    fix = (np.asarray(a) == -np.inf) & (np.asarray(b) > 0) & (np.mod(b, 2) != 1)
    return np.where(fix, np.inf, out)[()] if np.any(fix) else out


_binary("pow", _pow_ref, _pow_vjp, notation="^",
        emit=S.power)
_binary("maximum", np.maximum, _tie_split, emit=S.call("llvm.maximum"))
_binary("minimum", np.minimum, _tie_split, emit=S.call("llvm.minimum"))

_COMPARISONS = {"lt": np.less, "le": np.less_equal, "gt": np.greater,
                "ge": np.greater_equal, "eq": np.equal, "ne": np.not_equal}
_SYMBOLS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
for _name, _fn in _COMPARISONS.items():
    register(Primitive(_name, _ew, mask_of, lambda v, a, d, fn=_fn: fn(v[0], v[1]),
                       lambda y, g: [None, None], notation=_SYMBOLS[_name], derivative_free=True,
                       emit=S.compare(_SYMBOLS[_name])))


def _where_type(types, attrs) -> TensorType:
    mask, a, b = types
    require(mask.dtype == "bool", "where's first argument must be a comparison")
    out = same_float([a, b], attrs)
    require(mask.shape == out.shape, "where's mask and branches differ in shape")
    return out


# the cotangent flows only into the chosen branch; autodiff also keeps the
# unchosen elements exactly zero upstream (see autodiff.py, NaN-safe where)
register(Primitive("where", _ew, _where_type, lambda v, a, d: np.where(v[0], v[1], v[2]),
                   lambda y, g: [None, ops.where(y.inputs[0], g, 0.0),
                                 ops.where(y.inputs[0], 0.0, g)], emit=S.where))


def _clip_vjp(y: Node, g: Node) -> list[Node]:
    """clip = minimum(maximum(x, lo), hi): x gets g strictly inside, a bound where it binds."""
    x, lo, hi = y.inputs
    inside = ops.where(ops.compare("gt", x, lo), ops.where(ops.compare("lt", x, hi), g, 0.0), 0.0)
    lo_binds = ops.where(ops.compare("le", x, lo), ops.where(ops.compare("lt", lo, hi), g, 0.0), 0.0)
    hi_binds = ops.where(ops.compare("gt", x, lo), ops.where(ops.compare("lt", x, hi), 0.0, g),
                         ops.where(ops.compare("lt", lo, hi), 0.0, g))
    return [inside, lo_binds, hi_binds]


register(Primitive("clip", _ew, same_float,
                   lambda v, a, d: np.minimum(np.maximum(v[0], v[1]), v[2]), _clip_vjp,
                   emit=S.clip))


def _convert_type(types, attrs) -> TensorType:
    require(types[0].dtype in ("f32", "f64"), "only float tensors can be converted")
    return TensorType(attrs["dtype"], types[0].shape)


register(Primitive("convert", _ew, _convert_type,
                   lambda v, a, d: v[0].astype(np.float32 if a["dtype"] == "f32" else np.float64),
                   lambda y, g: [ops.convert(g, y.inputs[0].dtype)], emit=S.convert))
