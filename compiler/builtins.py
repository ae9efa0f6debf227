"""The builtin functions of the language and how each lowers to primitives.

Composite builtins (mean, logsumexp, softmax, log_softmax, square) are
defined here from primitives; logsumexp shifts by the (gradient-stopped)
maximum so values and gradients stay finite for |x| up to 1e4 and beyond.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from chainrule.compiler import ops
from chainrule.compiler.ir import Node, registry
from chainrule.compiler.primitives.common import normalize_axes
from chainrule.compiler.shapes import ShapeError

CONSTANTS = {"pi": math.pi, "e": math.e}

UNARY = ("exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tan", "tanh", "sigmoid",
         "relu", "softplus", "abs", "sign")


class ArgError(Exception):
    """A builtin got an argument it cannot take; `index` says which (or a keyword name)."""

    def __init__(self, message: str, index: int | str | None = None):
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class Builtin:
    name: str
    nargs: tuple[int, int]  # min, max positional
    keywords: tuple[str, ...]
    lower: Callable[..., Any]  # (args, kwargs) -> Node | float


def _tensor(v: Any, index: int | str, what: str = "a tensor") -> Node | float:
    if isinstance(v, (Node, float)) and not (isinstance(v, Node) and v.dtype == "bool"):
        return v
    if isinstance(v, Node):
        raise ArgError("a comparison gives a mask, usable only as where's first argument", index)
    raise ArgError(f"expected {what}, got {_describe(v)}", index)


def _describe(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, tuple):
        return "a tuple"
    return "a number" if isinstance(v, float) else "a tensor"


def _fold(op: str, *values: float) -> float:
    """Evaluate a primitive on number literals (they have no dtype yet), in float64."""
    with np.errstate(all="ignore"):
        out = registry()[op].evaluate([np.float64(v) for v in values], {}, {})
    return float(out)


def _elementwise(op: str, *args: Any) -> Node | float:
    values = [_tensor(a, i) for i, a in enumerate(args)]
    if all(isinstance(v, float) for v in values):
        return _fold(op, *values)
    return ops.apply(op, *values)


def _axes(kwargs: dict, rank: int, default: tuple[int, ...] | None) -> tuple[int, ...]:
    if "axis" not in kwargs:
        return default if default is not None else tuple(range(rank))
    raw = kwargs["axis"]
    items = list(raw) if isinstance(raw, (tuple, list)) else [raw]
    if not items or not all(isinstance(a, float) and math.isfinite(a) and a == int(a)
                            for a in items):
        raise ArgError("axis must be an integer or a tuple of integers", "axis")
    try:
        return normalize_axes([int(a) for a in items], rank)
    except ShapeError as err:
        raise ArgError(str(err), "axis") from None


def _keepdims(kwargs: dict) -> bool:
    value = kwargs.get("keepdims", False)
    if not isinstance(value, bool):
        raise ArgError("keepdims must be true or false", "keepdims")
    return value


def _as_node(v: Node | float) -> Node:
    return v if isinstance(v, Node) else ops.const(v, "f64")


def _reduction(op: str):
    def lower(args, kwargs):
        x = _as_node(_tensor(args[0], 0))
        axes = _axes(kwargs, x.type.rank, None)
        y = ops.reduce(op, x, axes)
        return ops.reshape(y, ops.keepdims_shape(x.shape, axes)) if _keepdims(kwargs) else y
    return lower


def _mean(args, kwargs):
    x = _as_node(_tensor(args[0], 0))
    axes = _axes(kwargs, x.type.rank, None)
    total = ops.div(ops.reduce("reduce_sum", x, axes), ops.size_of([x.shape[a] for a in axes], x.dtype))
    return ops.reshape(total, ops.keepdims_shape(x.shape, axes)) if _keepdims(kwargs) else total


def _lse_parts(x: Node, axes: tuple[int, ...]) -> tuple[Node, Node, Node]:
    """(shift, x - shift, log(sum(exp(x - shift)))), shift and sum kept with size-1 axes.

    The shift is the max, gradient-stopped (the result does not depend on it) and
    replaced by 0 where the max is infinite, so all -inf rows give -inf, not NaN.
    """
    keep = ops.keepdims_shape(x.shape, axes)
    m = ops.reduce("reduce_max", x, axes)
    finite = ops.compare("lt", ops.unary("abs", m), math.inf)
    shift = ops.unary("stop_gradient", ops.where(finite, m, 0.0))
    centred = ops.sub(x, ops.expand_reduced(shift, axes, x.shape))
    total = ops.reduce("reduce_sum", ops.unary("exp", centred), axes)
    return ops.reshape(shift, keep), centred, ops.reshape(ops.unary("log", total), keep)


def _logsumexp_keep(x: Node, axes: tuple[int, ...]) -> Node:
    """log(sum(exp(x))) over `axes`, kept with size-1 axes: log(sum(exp(x - m))) + m."""
    shift, _, log_total = _lse_parts(x, axes)
    return ops.add(log_total, shift)


def _logsumexp(args, kwargs):
    x = _as_node(_tensor(args[0], 0))
    axes = _axes(kwargs, x.type.rank, None)
    lse = _logsumexp_keep(x, axes)
    return lse if _keepdims(kwargs) else ops.reshape(lse, tuple(
        s for i, s in enumerate(x.shape) if i not in axes))


def _along_axis(log: bool):
    name = "log_softmax" if log else "softmax"

    def lower(args, kwargs):
        x = _as_node(_tensor(args[0], 0))
        if x.type.rank == 0:
            raise ArgError(f"{name}() needs a tensor with at least one axis, got a scalar", 0)
        axes = _axes(kwargs, x.type.rank, (x.type.rank - 1,))
        # (x - m) - log(sum(exp(x - m))): x - m is exact, so no digits are lost to
        # rounding log(sum) + m near a large m first (that costs 3 digits in f32 at 1e4)
        _, centred, log_total = _lse_parts(x, axes)
        shifted = ops.sub(centred, log_total)
        return shifted if log else ops.unary("exp", shifted)
    return lower


def _square(args, kwargs):
    x = _tensor(args[0], 0)
    return x * x if isinstance(x, float) else ops.mul(x, x)


def _convert(dtype: str):
    def lower(args, kwargs):
        x = _tensor(args[0], 0)
        return ops.convert(_as_node(x) if isinstance(x, Node) else ops.const(x, dtype), dtype)
    return lower


def _where(args, kwargs):
    mask = args[0]
    if not (isinstance(mask, Node) and mask.dtype == "bool"):
        raise ArgError("where's first argument must be a comparison such as x > 0", 0)
    a, b = _tensor(args[1], 1), _tensor(args[2], 2)
    if isinstance(a, float) and isinstance(b, float):
        a = ops.const(a, mask.inputs[0].dtype)  # numbers take the compared values' dtype
    return ops.where(mask, a, b)


def _transpose(args, kwargs):
    return ops.transpose(_as_node(_tensor(args[0], 0)))


def _reshape(args, kwargs):
    from chainrule.compiler.reshape import target_shape  # shape arithmetic lives there
    x = _as_node(_tensor(args[0], 0))
    return ops.reshape(x, target_shape(x.shape, args[1]))


def _concat(args, kwargs):
    items = args[0]
    if not isinstance(items, list) or not items:
        raise ArgError("concat takes a list of tensors, e.g. concat([a, b], axis=0)", 0)
    nodes = [_tensor(v, 0) for v in items]
    if not all(isinstance(v, Node) and v.type.rank > 0 for v in nodes):
        raise ArgError("concat needs tensors of rank 1 or more", 0)
    rank = nodes[0].type.rank
    axis = _axes(kwargs, rank, (0,))
    if len(axis) != 1:
        raise ArgError("concat takes a single axis", "axis")
    from chainrule.compiler.ir import make
    return make("concat", nodes, axis=axis[0])


BUILTINS: dict[str, Builtin] = {}


def _define(name: str, nargs: tuple[int, int], lower, keywords: tuple[str, ...] = ()) -> None:
    BUILTINS[name] = Builtin(name, nargs, keywords, lower)


for _op in UNARY:
    _define(_op, (1, 1), lambda args, kw, op=_op: _elementwise(op, args[0]))
for _op in ("maximum", "minimum", "pow"):
    _define(_op, (2, 2), lambda args, kw, op=_op: _elementwise(op, *args))
_define("clip", (3, 3), lambda args, kw: _elementwise("clip", *args))
_define("square", (1, 1), _square)
_define("where", (3, 3), _where)
for _name, _op in (("sum", "reduce_sum"), ("max", "reduce_max"), ("min", "reduce_min")):
    _define(_name, (1, 1), _reduction(_op), ("axis", "keepdims"))
_define("mean", (1, 1), _mean, ("axis", "keepdims"))
_define("logsumexp", (1, 1), _logsumexp, ("axis", "keepdims"))
_define("softmax", (1, 1), _along_axis(log=False), ("axis",))
_define("log_softmax", (1, 1), _along_axis(log=True), ("axis",))
_define("transpose", (1, 1), _transpose)
_define("reshape", (2, 2), _reshape)
_define("concat", (1, 1), _concat, ("axis",))
_define("f32", (1, 1), _convert("f32"))
_define("f64", (1, 1), _convert("f64"))

RESERVED = frozenset(BUILTINS) | frozenset(CONSTANTS)
