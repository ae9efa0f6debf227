"""Counting primitives in the forward and the backward program.

Why: reverse mode promises that a gradient costs a small constant multiple
of the function itself (Baur-Strassen: at most ~3x for the whole adjoint).
Counting the primitives of both schedules makes that promise checkable.

What is counted: every primitive application except leaves (`arg`,
`const`, `size_of`: no computation) and views (`broadcast`, `reshape`,
`transpose`, `stop_gradient`: index arithmetic or identity, no arithmetic of
their own). Those are reported separately as `views`. The backward program
is every node of the value-and-gradient schedule that the value-only
schedule does not reach.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from chainrule.compiler.program import Program

LEAVES = ("arg", "const", "size_of")
VIEWS = ("broadcast", "reshape", "transpose", "stop_gradient")


def stats(program: Program) -> dict[str, Any]:
    """Primitive counts of the forward and backward schedules, and their ratio.

    Returns `forward`, `backward` (counted primitives), `forward_views`,
    `backward_views`, `ratio` (backward / forward), `by_op` ({op: (forward,
    backward)}) and `excluded` (the ops that are never counted).
    """
    forward = program.schedule(False)
    seen = set(forward)
    backward = [n for n in program.schedule(True) if n not in seen]
    fwd = Counter(n.op for n in forward if n.op not in LEAVES)
    bwd = Counter(n.op for n in backward if n.op not in LEAVES)
    counted = lambda c: sum(v for op, v in c.items() if op not in VIEWS)  # noqa: E731
    views = lambda c: sum(v for op, v in c.items() if op in VIEWS)  # noqa: E731
    f, b = counted(fwd), counted(bwd)
    return {
        "forward": f,
        "backward": b,
        "forward_views": views(fwd),
        "backward_views": views(bwd),
        "ratio": b / f if f else (0.0 if b == 0 else float("inf")),
        "by_op": {op: (fwd[op], bwd[op]) for op in sorted(set(fwd) | set(bwd))
                  if op not in VIEWS},
        "excluded": LEAVES + VIEWS,
    }


def format_stats(info: dict[str, Any]) -> str:
    """`stats()` as a table: one row per primitive, totals and the ratio."""
    rows = [("primitive", "forward", "backward")]
    rows += [(op, str(f), str(b)) for op, (f, b) in info["by_op"].items()]
    rows.append(("total", str(info["forward"]), str(info["backward"])))
    rows.append(("views (not counted)", str(info["forward_views"]), str(info["backward_views"])))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{r[0].ljust(width[0])}  {r[1].rjust(width[1])}  {r[2].rjust(width[2])}"
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 2, "-" * len(lines[0]))
    lines.append(f"ratio backward/forward: {info['ratio']:.2f}")
    lines.append("not counted: " + ", ".join(LEAVES) + " (leaves); "
                 + ", ".join(VIEWS) + " (views)")
    return "\n".join(lines) + "\n"
