"""Matrix product of two 2-D operands (lowering reshapes 1-D operands)."""
from __future__ import annotations

import numpy as np

from chainrule.compiler import ops
from chainrule.compiler.ir import Node, Primitive, TensorType, register, require
from chainrule.compiler.primitives.common import same_float
from chainrule.compiler.shapes import shape_str


def _matmul_type(types, attrs) -> TensorType:
    a, b = types
    dtype = same_float([TensorType(a.dtype, ()), TensorType(b.dtype, ())], attrs).dtype
    require(a.rank == 2 and b.rank == 2, "matmul takes 2-D operands")
    require(a.shape[1] == b.shape[0],
            f"matmul of {shape_str(a.shape)} and {shape_str(b.shape)}: "
            f"inner sizes {a.shape[1]} and {b.shape[0]} differ")
    return TensorType(dtype, (a.shape[0], b.shape[1]))


def _matmul_vjp(y: Node, g: Node) -> list[Node]:
    # C = A B:  dA = G B^T,  dB = A^T G
    a, b = y.inputs
    return [ops.make_matmul(g, ops.transpose(b)), ops.make_matmul(ops.transpose(a), g)]


register(Primitive("matmul", "matmul", _matmul_type,
                   lambda v, a, d: np.matmul(v[0], v[1]), _matmul_vjp, notation="@"))
