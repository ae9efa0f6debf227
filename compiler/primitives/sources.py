"""Leaf primitives: program arguments, constants and runtime sizes."""
from __future__ import annotations

import numpy as np

from chainrule.compiler.ir import Primitive, TensorType, register
from chainrule.compiler.shapes import eval_size


def _np_dtype(dtype: str):
    return np.float32 if dtype == "f32" else np.float64


def _leaf_type(types, attrs) -> TensorType:
    return TensorType(attrs["dtype"], tuple(attrs.get("shape", ())))


# `arg` is an input or param, read from the call's arrays by name
register(Primitive("arg", "source", _leaf_type, lambda v, a, d: d["args"][a["name"]], None,
                   derivative_free=True))
register(Primitive("const", "source", _leaf_type,
                   lambda v, a, d: np.asarray(a["value"], dtype=_np_dtype(a["dtype"])), None,
                   derivative_free=True))


def _size_of(v, a, d):
    total = 1
    for s in a["sizes"]:
        total *= eval_size(s, d["dims"])
    return np.asarray(total, dtype=_np_dtype(a["dtype"]))


# the product of (symbolic) sizes as a scalar: the count that `mean` divides by
register(Primitive("size_of", "source", _leaf_type, _size_of, None, derivative_free=True))
