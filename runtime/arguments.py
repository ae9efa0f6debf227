"""Validating the arrays passed to a compiled function and binding symbolic dims.

Every mistake raises TypeError or ValueError naming the argument, what was
expected and what was given; nothing reaches a backend unchecked.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from chainrule.compiler.program import ArgInfo, Constraint
from chainrule.compiler.shapes import Sym, eval_size, shape_str

NP_DTYPES = {"f32": np.dtype(np.float32), "f64": np.dtype(np.float64)}


def describe(arg: ArgInfo) -> str:
    return f"{arg.kind} '{arg.name}': {arg.type}"


def collect(args: Sequence[ArgInfo], positional: tuple, keywords: Mapping[str, Any]) -> dict:
    """Match positional (declaration order) and keyword arguments to declarations."""
    if len(positional) > len(args):
        raise TypeError(f"expected at most {len(args)} arguments "
                        f"({', '.join(a.name for a in args)}), got {len(positional)}")
    given = {a.name: v for a, v in zip(args, positional)}
    known = {a.name for a in args}
    for name, value in keywords.items():
        if name not in known:
            raise TypeError(f"unexpected argument '{name}'; the program takes "
                            f"{', '.join(a.name for a in args) or 'no arguments'}")
        if name in given:
            raise TypeError(f"argument '{name}' given twice (by position and by keyword)")
        given[name] = value
    missing = [describe(a) for a in args if a.name not in given]
    if missing:
        raise TypeError("missing argument" + "s" * (len(missing) > 1) + ": " + ", ".join(missing))
    return given


def convert(arg: ArgInfo, value: Any) -> np.ndarray:
    """Any array-like of numbers becomes an array of the declared dtype."""
    want = NP_DTYPES[arg.type.dtype]
    try:
        array = np.asarray(value)
    except Exception as err:  # ragged lists and the like
        raise TypeError(f"argument '{arg.name}' ({arg.type}) is not an array: {err}") from None
    if array.dtype.kind not in "fiub":
        raise TypeError(f"argument '{arg.name}' must hold real numbers ({arg.type}), "
                        f"got dtype {array.dtype}")
    return array if array.dtype == want else array.astype(want)


def bind(args: Sequence[ArgInfo], arrays: Mapping[str, np.ndarray],
         constraints: Sequence[Constraint]) -> dict[str, int]:
    """Check every shape against its declaration; return the symbolic dims' sizes."""
    dims: dict[str, int] = {}
    source: dict[str, str] = {}
    for arg in args:
        array = arrays[arg.name]
        declared = arg.type.shape
        if array.ndim != len(declared):
            raise ValueError(f"argument '{arg.name}' expects shape {shape_str(declared)} "
                             f"(rank {len(declared)}), got shape {tuple(array.shape)} "
                             f"(rank {array.ndim})")
        for axis, (want, got) in enumerate(zip(declared, array.shape)):
            if isinstance(want, int):
                if want != got:
                    raise ValueError(f"argument '{arg.name}' expects shape {shape_str(declared)}, "
                                     f"got {tuple(array.shape)} (axis {axis}: {got} != {want})")
                continue
            name = _dim_name(want)
            if name in dims and dims[name] != got:
                raise ValueError(
                    f"argument '{arg.name}' has size {got} on axis {axis}, but dim {name} = "
                    f"{dims[name]} from argument '{source[name]}' (shape {shape_str(declared)})")
            dims.setdefault(name, got)
            source.setdefault(name, arg.name)
    for c in constraints:
        if eval_size(c.size, dims) < c.minimum:
            bound = ", ".join(f"{k} = {v}" for k, v in dims.items())
            raise ValueError(f"sizes {bound} are too small: {c.reason}")
    return dims


def _dim_name(size: Sym) -> str:
    (name, _), = size.terms
    return name
