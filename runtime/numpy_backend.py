"""The reference backend: runs the program with the NumPy interpreter."""
from __future__ import annotations

import numpy as np

from chainrule.compiler.program import Program
from chainrule.runtime.reference import evaluate


class NumpyBackend:
    def __init__(self, program: Program):
        self.program = program
        self.schedules = {flag: program.schedule(flag) for flag in (False, True)}

    def run(self, arrays: dict, dims: dict, with_grad: bool,
            out: tuple[list, list] | None = None) -> tuple[list, list]:
        values = evaluate(self.schedules[with_grad], arrays, dims)
        outputs = [np.array(values[n]) for _, n in self.program.outputs]
        grads = [np.array(values[n]) for _, n in self.program.grads] if with_grad else []
        if out is not None:
            outputs, grads = [_into(b, v) for b, v in zip(out[0], outputs)], \
                [_into(b, v) for b, v in zip(out[1], grads)]
        return outputs, grads


def _into(buffer: np.ndarray | None, value: np.ndarray) -> np.ndarray:
    if buffer is None:
        return value
    np.copyto(buffer, value)
    return buffer
