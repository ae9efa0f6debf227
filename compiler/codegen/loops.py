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


def reorderable_loop(module: ir.Module) -> ir.MDValue:
    """A fresh loop ID asking the loop vectorizer to vectorize, reordering FP sums.

    Sum reductions need their adds reordered to keep partial sums in vector
    lanes. The `reassoc` flag would allow that too, but LLVM's reassociation
    then also rewrites the addends (acc + (x - x) becomes acc, sum(c * w)
    becomes c * sum(w)), losing the NaN of inf - inf. The loop hint allows only
    the reordering of the reduction itself. Each loop needs its own
    self-referential ID.
    """
    hint = module.add_metadata([ir.MetaDataString(module, "llvm.loop.vectorize.enable"),
                                ir.Constant(I1, 1)])
    loop_id = module.add_metadata([ir.MetaDataString(module, f"chainrule.loop{len(module.metadata)}")])
    loop_id.operands = (loop_id, hint)
    return loop_id


@contextmanager
def for_range(b: ir.IRBuilder, stop: ir.Value, name: str,
              reorder_sums: bool = False) -> Iterator[ir.Value]:
    """`for (i = 0; i < stop; i++)` with named blocks and an nsw increment.

    `reorder_sums` marks an innermost loop whose body accumulates a sum (see
    `reorderable_loop`).
    """
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
    latch = b.branch(cond)
    if reorder_sums:
        latch.set_metadata("llvm.loop", reorderable_loop(b.module))
    b.position_at_end(end)
