"""Codegen preparation: matrix products with a size-1 side become reductions.

A matrix-vector product (x @ w with w of one column, or X^T @ g) is memory
bound: the packed GEMM would copy the matrix first. As `reduce_sum(A * b)` it
is one streaming loop that also fuses with the producers of `b` and the
consumers of the result. The operand's own layout picks the reduced axis, so
the inner loop always walks contiguous memory (X^T @ g reads X row by row).
"""
from __future__ import annotations

from chainrule.compiler import ops
from chainrule.compiler.ir import Node
from chainrule.compiler.program import Program
from chainrule.compiler.rewrite import rewrite_program


def _matvec(matrix: Node, vector: Node) -> Node:
    """out[m] = sum_k matrix[m, k] * vector[k], reduced along the matrix's memory layout."""
    if matrix.op == "transpose":
        stored = matrix.inputs[0]  # matrix = stored^T: out[m] = sum_k stored[k, m] * vector[k]
        vec = ops.reshape(vector, (stored.shape[0], 1))
        return ops.reduce("reduce_sum", ops.mul(stored, ops.broadcast_to(vec, stored.shape)), (0,))
    vec = ops.reshape(vector, (1, matrix.shape[1]))
    return ops.reduce("reduce_sum", ops.mul(matrix, ops.broadcast_to(vec, matrix.shape)), (1,))


def _rule(node: Node) -> Node | None:
    if node.op != "matmul":
        return None
    a, b = node.inputs
    (m, k), n = a.shape, b.shape[1]
    if n == 1:  # A[M,K] @ b[K,1]
        out = _matvec(a, ops.reshape(b, (k,)))
    elif m == 1:  # a[1,K] @ B[K,N] = (B^T a^T)^T
        bt = b.inputs[0] if b.op == "transpose" else ops.transpose(b)
        out = _matvec(bt, ops.reshape(a, (k,)))
    elif k == 1:  # outer product
        return ops.mul(ops.broadcast_to(a, node.shape), ops.broadcast_to(b, node.shape))
    else:
        return None
    return ops.reshape(out, node.shape)


def matvec_to_reductions(program: Program) -> Program:
    return rewrite_program(program, _rule)
