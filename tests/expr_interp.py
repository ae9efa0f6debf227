"""An independent interpreter of `.expr` programs over NumPy or jax.numpy.

The oracles of tests/test_fuzz.py compare chainrule with this translation of
a program: it reads chainrule's AST (the parser is tested on its own) and
evaluates it directly with array-library calls, with none of chainrule's
lowering, IR, autodiff, simplifier or backends. Under jax it is
differentiated by `jax.value_and_grad`.

Semantics follow the language contract as docs/language.md explains it: NumPy
broadcasting, literals take the other operand's dtype (NumPy >= 2 and JAX
treat Python floats as weakly typed, which is the same rule), expressions of
numbers only are folded in float64, `where` with two number branches takes
the dtype of the compared values, reductions of numbers give f64, an empty
`max` is -inf. `dtype="f64"` overrides every declared dtype as
`chainrule.compile(..., dtype="f64")` does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from chainrule.grammar import ast
from chainrule.grammar.parser import parse

CONSTANTS = {"pi": math.pi, "e": math.e}


@dataclass
class SymbolicDim:
    """A symbolic dim's value: usable as a reshape size, never as a number."""

    value: int

    def __int__(self) -> int:
        return self.value


@dataclass
class Mask:
    value: Any
    dtype: str  # the dtype of the compared values (number branches of where take it)


class _Numpy:
    """The operations the interpreter needs, in NumPy."""

    xp = np
    name = "numpy"

    def dtype(self, name):
        return np.float32 if name == "f32" else np.float64

    def asarray(self, x, dtype):
        return np.asarray(x, dtype=self.dtype(dtype))

    def dtype_name(self, x) -> str:
        return "f32" if np.asarray(x).dtype == np.float32 else "f64"

    def sigmoid(self, x):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)

    def softplus(self, x):
        return np.logaddexp(np.zeros_like(x), x)

    def relu(self, x):
        return np.maximum(x, np.zeros_like(x))

    def stop_gradient(self, x):
        return x

    def logsumexp(self, x, axis, keepdims):
        m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
        m = np.where(np.isfinite(m), m, np.zeros_like(m))
        out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
        return out if keepdims else np.squeeze(out, axis=axis)

    def log_softmax(self, x, axis):
        m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
        m = np.where(np.isfinite(m), m, np.zeros_like(m))
        return (x - m) - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))

    def softmax(self, x, axis):
        return np.exp(self.log_softmax(x, axis))


class _Jax(_Numpy):
    name = "jax"

    def __init__(self):
        import jax
        import jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)
        self.jax, self.xp = jax, jnp

    def dtype(self, name):
        return self.xp.float32 if name == "f32" else self.xp.float64

    def asarray(self, x, dtype):
        return self.xp.asarray(x, dtype=self.dtype(dtype))

    def dtype_name(self, x) -> str:
        return "f32" if self.xp.asarray(x).dtype == self.xp.float32 else "f64"

    def sigmoid(self, x):
        return self.jax.nn.sigmoid(x)

    def softplus(self, x):
        return self.jax.nn.softplus(x)

    def relu(self, x):
        return self.jax.nn.relu(x)

    def stop_gradient(self, x):
        return self.jax.lax.stop_gradient(x)

    def logsumexp(self, x, axis, keepdims):
        from jax.scipy.special import logsumexp
        return logsumexp(x, axis=axis, keepdims=keepdims)

    def log_softmax(self, x, axis):
        return self.jax.nn.log_softmax(x, axis=axis)

    def softmax(self, x, axis):
        return self.jax.nn.softmax(x, axis=axis)


_BACKENDS: dict[str, _Numpy] = {}


def backend(name: str) -> _Numpy:
    if name not in _BACKENDS:
        _BACKENDS[name] = _Numpy() if name == "numpy" else _Jax()
    return _BACKENDS[name]


def _is_number(v) -> bool:
    return isinstance(v, float)


class Interpreter:
    """Evaluates one parsed program for given argument values and dims."""

    def __init__(self, module: ast.Module, lib: _Numpy, dtype: str | None = None):
        self.module = module
        self.lib = lib
        self.xp = lib.xp
        self.override = dtype

    def run(self, args: Mapping[str, Any], dims: Mapping[str, int]) -> dict[str, Any]:
        """{output name: value}; args by name, symbolic dims by name."""
        self.scope: dict[str, Any] = {}
        self.defs: dict[str, ast.Def] = {}
        self.dims: dict[str, int] = {}
        outputs: dict[str, Any] = {}
        for stmt in self.module.statements:
            if isinstance(stmt, ast.DimDecl):
                for item in stmt.items:
                    value = item.value if item.value is not None else dims[item.name.id]
                    self.dims[item.name.id] = value
                    self.scope[item.name.id] = float(value) if item.value is not None \
                        else SymbolicDim(value)
            elif isinstance(stmt, ast.ArgDecl):
                dtype = self.override or (stmt.type.dtype if stmt.type and stmt.type.dtype
                                          else "f64")
                for name in stmt.names:
                    self.scope[name.id] = self.lib.asarray(args[name.id], dtype)
            elif isinstance(stmt, ast.Assign):
                self.scope[stmt.target.id] = self.expr(stmt.value)
            elif isinstance(stmt, ast.Def):
                self.defs[stmt.name.id] = stmt
            elif isinstance(stmt, ast.Output):
                for name in stmt.names:
                    v = self.scope[name.id]
                    outputs[name.id] = self.tensor(v)
        return outputs

    # -------------------------------------------------------------- helpers
    def tensor(self, v, dtype: str = "f64"):
        if _is_number(v):
            return self.lib.asarray(v, self.override or dtype)
        return v

    def number_op(self, fn, *values) -> float:
        with np.errstate(all="ignore"):
            return float(fn(*[np.float64(v) for v in values]))

    def convert(self, v, dtype: str):
        dtype = self.override or dtype
        return self.lib.asarray(v, dtype)

    # ---------------------------------------------------------- expressions
    def expr(self, e):
        return getattr(self, "e_" + type(e).__name__)(e)

    def e_Number(self, e):
        return float(e.text)

    def e_Bool(self, e):
        return e.value

    def e_Name(self, e):
        if e.id in self.scope:
            return self.scope[e.id]
        return CONSTANTS[e.id]

    def e_ListExpr(self, e):
        return [self.expr(i) for i in e.items]

    def e_TupleExpr(self, e):
        return tuple(self.expr(i) for i in e.items)

    def e_Neg(self, e):
        v = self.expr(e.operand)
        return -v

    def e_BinOp(self, e):
        a, b = self.expr(e.left), self.expr(e.right)
        xp = self.xp
        if e.op == "@":
            return xp.matmul(a, b)
        fn = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide,
              "^": np.power}[e.op]
        if _is_number(a) and _is_number(b):
            return self.number_op(fn, a, b)
        return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                "/": lambda: a / b, "^": lambda: xp.power(a, b)}[e.op]()

    def e_Compare(self, e):
        a, b = self.expr(e.left), self.expr(e.right)
        dtype = (self.override or "f64") if _is_number(a) and _is_number(b) else \
            self.lib.dtype_name(a if not _is_number(a) else b)
        if _is_number(a) and _is_number(b):
            a = self.lib.asarray(a, dtype)
        op = {"<": "less", "<=": "less_equal", ">": "greater", ">=": "greater_equal",
              "==": "equal", "!=": "not_equal"}[e.op]
        return Mask(getattr(self.xp, op)(a, b), dtype)

    def e_Transpose(self, e):
        v = self.expr(e.value)
        return v if _is_number(v) else self.xp.transpose(v)

    def e_Index(self, e):
        v = self.expr(e.value)
        items = []
        for item in e.items:
            if isinstance(item, ast.Slice):
                items.append(slice(*(None if p is None else self.integer(p)
                                     for p in (item.start, item.stop, item.step))))
            else:
                items.append(self.integer(item))
        return v[tuple(items)]

    def integer(self, e) -> int:
        return int(self.expr(e))

    # ---------------------------------------------------------------- calls
    def e_Call(self, e):
        if e.func in self.defs:
            d = self.defs[e.func]
            values = [self.expr(a) for a in e.args]
            saved = self.scope
            self.scope = {**saved, **{p.id: v for p, v in zip(d.params, values)}}
            try:
                return self.expr(d.body)
            finally:
                self.scope = saved
        args = [self.expr(a) for a in e.args]
        kwargs = {k.name: self.expr(k.value) for k in e.kwargs}
        return getattr(self, "b_" + e.func)(*args, **kwargs)

    def elementwise(self, fn_np, fn_xp, *args):
        if all(_is_number(a) for a in args):
            return self.number_op(fn_np, *args)
        return fn_xp(*args)

    def b_pow(self, a, b):
        return self.elementwise(np.power, self.xp.power, a, b)

    def b_maximum(self, a, b):
        return self.elementwise(np.maximum, self.xp.maximum, a, b)

    def b_minimum(self, a, b):
        return self.elementwise(np.minimum, self.xp.minimum, a, b)

    def b_clip(self, x, lo, hi):
        # minimum(maximum(x, lo), hi), the documented definition (also for lo > hi)
        if all(_is_number(v) for v in (x, lo, hi)):
            return self.number_op(lambda a, b, c: np.minimum(np.maximum(a, b), c), x, lo, hi)
        return self.xp.minimum(self.xp.maximum(x, lo), hi)

    def b_where(self, mask: Mask, a, b):
        if _is_number(a) and _is_number(b):
            a = self.lib.asarray(a, mask.dtype)
        return self.xp.where(mask.value, a, b)

    def axes(self, x, axis, default=None):
        rank = self.xp.ndim(x)
        if axis is None:
            return default if default is not None else tuple(range(rank))
        items = list(axis) if isinstance(axis, (list, tuple)) else [axis]
        return tuple(sorted(int(a) % rank for a in items))

    def reduction(self, name, x, axis=None, keepdims=False):
        x = self.tensor(x)
        axes = self.axes(x, axis)
        xp = self.xp
        if name == "sum":
            return xp.sum(x, axis=axes, keepdims=keepdims)
        if name == "mean":
            return xp.mean(x, axis=axes, keepdims=keepdims)
        if name == "max":
            return xp.max(x, axis=axes, keepdims=keepdims, initial=-np.inf)
        if name == "min":
            return xp.min(x, axis=axes, keepdims=keepdims, initial=np.inf)
        return self.lib.logsumexp(x, axes, keepdims)

    def b_sum(self, x, axis=None, keepdims=False):
        return self.reduction("sum", x, axis, keepdims)

    def b_mean(self, x, axis=None, keepdims=False):
        return self.reduction("mean", x, axis, keepdims)

    def b_max(self, x, axis=None, keepdims=False):
        return self.reduction("max", x, axis, keepdims)

    def b_min(self, x, axis=None, keepdims=False):
        return self.reduction("min", x, axis, keepdims)

    def b_logsumexp(self, x, axis=None, keepdims=False):
        return self.reduction("logsumexp", x, axis, keepdims)

    def b_softmax(self, x, axis=None):
        x = self.tensor(x)
        return self.lib.softmax(x, self.axes(x, axis, (self.xp.ndim(x) - 1,)))

    def b_log_softmax(self, x, axis=None):
        x = self.tensor(x)
        return self.lib.log_softmax(x, self.axes(x, axis, (self.xp.ndim(x) - 1,)))

    def b_transpose(self, x):
        return x if _is_number(x) else self.xp.transpose(x)

    def b_reshape(self, x, sizes):
        x = self.tensor(x)
        shape = []
        for s in sizes:
            shape.append(int(s))
        return self.xp.reshape(x, tuple(shape))

    def b_concat(self, items, axis=0.0):
        return self.xp.concatenate(items, axis=int(axis))

    def b_f32(self, x):
        return self.convert(x, "f32")

    def b_f64(self, x):
        return self.convert(x, "f64")


UNARY = ("exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tan", "tanh", "sigmoid", "relu",
         "softplus", "abs", "sign", "square")


def _unary(name: str):
    def method(self: Interpreter, x):
        if _is_number(x):  # folded in float64, as the compiler does
            ref = backend("numpy")
            fn = {"sigmoid": ref.sigmoid, "relu": ref.relu, "softplus": ref.softplus,
                  "square": lambda v: v * v}.get(name) or getattr(np, name)
            return self.number_op(fn, x)
        lib, xp = self.lib, self.xp
        fn = {"sigmoid": lib.sigmoid, "relu": lib.relu, "softplus": lib.softplus,
              "square": lambda v: v * v}.get(name) or getattr(xp, name)
        return fn(x)
    return method


for _name in UNARY:
    setattr(Interpreter, "b_" + _name, _unary(_name))


def interpret(source: str, args: Mapping[str, Any], dims: Mapping[str, int],
              lib: str = "numpy", dtype: str | None = None) -> dict[str, Any]:
    """The outputs of `source` at `args`, evaluated by `lib` ("numpy" or "jax")."""
    return Interpreter(parse(source), backend(lib), dtype).run(args, dims)


def jax_value_and_grad(source: str, args: Mapping[str, Any], dims: Mapping[str, int],
                       params: list[str], dtype: str | None = "f64"):
    """(outputs, {param: gradient of the first output}) computed by jax.value_and_grad."""
    lib = backend("jax")
    module = parse(source)
    interp = Interpreter(module, lib, dtype)
    first = next(s for s in module.statements if isinstance(s, ast.Output)).names[0].id
    fixed = {k: v for k, v in args.items() if k not in params}

    def loss(p):
        outs = interp.run({**fixed, **p}, dims)
        return outs[first], outs

    (value, outs), grads = lib.jax.value_and_grad(loss, has_aux=True)(
        {k: lib.asarray(np.asarray(args[k], dtype=np.float64), dtype or "f64") for k in params})
    return {k: np.asarray(v) for k, v in outs.items()}, {k: np.asarray(v) for k, v in grads.items()}
