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
    if isinstance(value, np.ma.MaskedArray):  # np.asarray would silently drop the mask
        raise TypeError(f"argument '{arg.name}' is a masked array; pass its values with the "
                        "masked ones filled in (x.filled(...))")
    try:
        array = np.asarray(value)
    except Exception as err:  # ragged lists and the like
        raise TypeError(f"argument '{arg.name}' ({arg.type}) is not an array: {err}") from None
    if array.dtype.kind not in "fiub":
        raise TypeError(f"argument '{arg.name}' must hold real numbers ({arg.type}), "
                        f"got dtype {array.dtype}")
    return array if array.dtype == want else array.astype(want)


def bind(args: Sequence[ArgInfo], arrays: Mapping[str, np.ndarray],
         constraints: Sequence[Constraint], symbolic: Sequence[str] = ()) -> dict[str, int]:
    """Check every shape against its declaration; return the symbolic dims' sizes.

    A symbolic dim that no argument uses (a `dim N` declared but never used in a
    type) is 0: no value's shape can mention it, so its size changes nothing."""
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
    for name in symbolic:
        dims.setdefault(name, 0)
    for c in constraints:
        if eval_size(c.size, dims) < c.minimum:
            bound = ", ".join(f"{k} = {v}" for k, v in dims.items())
            raise ValueError(f"sizes {bound} are too small: {c.reason}")
    return dims


def _dim_name(size: Sym) -> str:
    (name, _), = size.terms
    return name


def out_buffers(signature, out: Any, arrays: dict, dims: Mapping[str, int],
                with_grad: bool) -> tuple[list, list]:
    """Check caller-provided result buffers (`out={"loss": a, "grad_W": b}`).

    Each must be a writeable, C-contiguous array of exactly the result's dtype
    and shape. An input that shares memory with a buffer is copied first, so
    writing a result never changes an argument that is still being read.
    """
    if not isinstance(out, Mapping):
        raise TypeError("out must be a dict from output names (and grad_<param>) to arrays")
    from chainrule.compiler.shapes import eval_shape
    slots = {n: ("output", i, t) for i, (n, t) in enumerate(signature.outputs)}
    if with_grad:
        slots.update({f"grad_{n}": ("grad", i, t) for i, (n, t) in enumerate(signature.grads)})
    outputs: list = [None] * len(signature.outputs)
    grads: list = [None] * (len(signature.grads) if with_grad else 0)
    seen: list[np.ndarray] = []
    for key, buf in out.items():
        if key not in slots:
            raise TypeError(f"out has no result named '{key}'; results: {', '.join(slots)}")
        kind, index, type_ = slots[key]
        shape = eval_shape(type_.shape, dims)
        want = NP_DTYPES[type_.dtype]
        if not isinstance(buf, np.ndarray):
            raise TypeError(f"out['{key}'] must be a numpy array, got {type(buf).__name__}")
        if buf.dtype != want or buf.shape != shape:
            raise ValueError(f"out['{key}'] must be {want.name} of shape {shape}, "
                             f"got {buf.dtype.name} of shape {buf.shape}")
        if not buf.flags.c_contiguous or not buf.flags.writeable:
            raise ValueError(f"out['{key}'] must be a writeable C-contiguous array")
        if any(np.may_share_memory(buf, other) for other in seen):
            raise ValueError(f"out['{key}'] overlaps another result buffer")
        seen.append(buf)
        (outputs if kind == "output" else grads)[index] = buf
        for name, array in arrays.items():
            if np.may_share_memory(buf, array):
                arrays[name] = array.copy()
    return outputs, grads


class QuickCheck:
    """The common case in a few comparisons: arrays of the declared dtype and shape.

    `check` returns (arrays, dims) when every argument is already an ndarray of
    exactly the declared dtype with a matching shape, else None: the full path
    (`collect`, `convert`, `bind`) then runs and explains any mistake.
    """

    def __init__(self, signature):
        self.names = tuple(a.name for a in signature.args)
        self.plan = []
        for a in signature.args:
            shape = tuple(s if isinstance(s, int) else _dim_name(s) for s in a.type.shape)
            self.plan.append((a.name, NP_DTYPES[a.type.dtype], shape))
        self.constraints = tuple(signature.constraints)
        used = {d for _, _, shape in self.plan for d in shape if not isinstance(d, int)}
        self.unbound = tuple(d for d in signature.symbolic_dims if d not in used)

    def check(self, positional: tuple, keywords: Mapping[str, Any]):
        if positional:
            if keywords or len(positional) != len(self.names):
                return None
            values = positional
        elif len(keywords) == len(self.names):
            try:
                values = [keywords[n] for n in self.names]
            except KeyError:
                return None
        else:
            return None
        arrays, dims = {}, {}
        for (name, dtype, shape), value in zip(self.plan, values):
            if type(value) is not np.ndarray or value.dtype != dtype or value.ndim != len(shape):
                return None
            for want, got in zip(shape, value.shape):
                if want.__class__ is int:
                    if want != got:
                        return None
                elif dims.setdefault(want, got) != got:
                    return None
            arrays[name] = value
        for d in self.unbound:  # declared, in no argument's type: see bind()
            dims[d] = 0
        for c in self.constraints:
            if eval_size(c.size, dims) < c.minimum:
                return None
        return arrays, dims
