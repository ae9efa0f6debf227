"""Loop and size helpers shared by the code generators."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from llvmlite import ir

I1 = ir.IntType(1)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = ir.PointerType()
FLOAT_TYPES = {"f32": ir.FloatType(), "f64": ir.DoubleType(), "bool": I1}


def i64(value: int) -> ir.Constant:
    return ir.Constant(I64, value)


@contextmanager
def for_range(b: ir.IRBuilder, stop: ir.Value, name: str) -> Iterator[ir.Value]:
    """`for (i = 0; i < stop; i++)` with named blocks and an nsw increment."""
    pre = b.block
    cond = b.append_basic_block(f"{name}.cond")
    body = b.append_basic_block(f"{name}.body")
    end = b.append_basic_block(f"{name}.end")
    b.branch(cond)
    b.position_at_end(cond)
    i = b.phi(I64, name=name)
    i.add_incoming(i64(0), pre)
    b.cbranch(b.icmp_signed("<", i, stop), body, end)
    b.position_at_end(body)
    yield i
    nxt = b.add(i, i64(1), name=f"{name}.next", flags=("nsw",))
    i.add_incoming(nxt, b.block)
    b.branch(cond)
    b.position_at_end(end)
