"""Random arguments for a program: the sizes of its symbolic dims and arrays to match.

Why: `chainrule check FILE` must work on any program without the user
writing data. Symbolic dims get small distinct sizes (3, 4, 5, ...: distinct
so that a transposition bug cannot hide behind a square shape), grown until
the program's size constraints (e.g. `N - 1 >= 0` for `x[1:]`) hold.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from chainrule.compiler.program import Program, Signature
from chainrule.compiler.shapes import eval_shape, eval_size
from chainrule.runtime.arguments import NP_DTYPES

FIRST_SIZE = 3
MAX_GROWTH = 256


def choose_dims(program: Program | Signature, given: Mapping[str, int]) -> dict[str, int]:
    """Sizes for every symbolic dim: `given` ones as they are, others 3, 4, 5, ...

    Raises ValueError when `given` names an unknown dim or contradicts a constant one.
    """
    symbolic = program.symbolic_dims
    declared = dict(program.dims)  # a Program's dict or a Signature's pairs
    for name, value in given.items():
        if name not in declared:
            known = ", ".join(symbolic) or "none"
            raise ValueError(f"--dims names '{name}', which is not a dim of the program "
                             f"(symbolic dims: {known})")
        constant = declared[name]
        if constant is not None and constant != value:
            raise ValueError(f"--dims sets {name} = {value}, but the program declares "
                             f"dim {name} = {constant}")
    dims = {name: given.get(name, FIRST_SIZE + i) for i, name in enumerate(symbolic)}
    free = [n for n in symbolic if n not in given]
    for _ in range(MAX_GROWTH):  # grow the free dims a violated constraint mentions
        violated = [c for c in program.constraints if eval_size(c.size, dims) < c.minimum]
        growable = {n for c in violated for n, coef in getattr(c.size, "terms", ())
                    if coef > 0 and n in free}
        if not growable:
            break
        for name in growable:
            dims[name] += 1
    return dims


def draw_arguments(program: Program | Signature, dims: Mapping[str, int], rng: np.random.Generator,
                   positive: bool = False) -> dict[str, np.ndarray]:
    """One array per argument: N(0, 0.5^2), or uniform(0.1, 1) where logs and roots need it."""
    arrays = {}
    for arg in program.args:
        shape = eval_shape(arg.type.shape, dims)
        values = rng.uniform(0.1, 1.0, shape) if positive else 0.5 * rng.standard_normal(shape)
        arrays[arg.name] = np.asarray(values, dtype=NP_DTYPES[arg.type.dtype])
    return arrays
