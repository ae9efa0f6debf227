"""The reference backend: runs the program with the NumPy interpreter."""
from __future__ import annotations

import numpy as np

from chainrule.compiler.program import Program
from chainrule.runtime.reference import evaluate


class NumpyBackend:
    def __init__(self, program: Program):
        self.program = program
        self.schedules = {flag: program.schedule(flag) for flag in (False, True)}

    def run(self, arrays: dict, dims: dict, with_grad: bool) -> tuple[list, list]:
        values = evaluate(self.schedules[with_grad], arrays, dims)
        outputs = [np.array(values[n]) for _, n in self.program.outputs]
        grads = [np.array(values[n]) for _, n in self.program.grads] if with_grad else []
        return outputs, grads
