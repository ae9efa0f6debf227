"""The NumPy reference interpreter of the IR: the oracle every backend is tested against.

It favours clarity over speed: each node is evaluated by its primitive's
NumPy reference, in topological order, with IEEE semantics (no warnings).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from chainrule.compiler.ir import Node


def evaluate(schedule: list[Node], args: Mapping[str, np.ndarray],
             dims: Mapping[str, int]) -> dict[Node, np.ndarray]:
    """Values of every node of `schedule` (inputs before their users)."""
    env = {"args": args, "dims": dims}
    values: dict[Node, np.ndarray] = {}
    with np.errstate(all="ignore"):
        for node in schedule:
            out = node.prim.evaluate([values[i] for i in node.inputs], dict(node.attrs), env)
            values[node] = np.asarray(out)
    return values
