"""Fusion and scheduling: which nodes get storage, and which loops compute them.

Every other node is *inlined*: computed inside the loop of the node that
consumes it, at the index that consumer asks for. So elementwise chains,
broadcasts and their adjoints become one loop body, a reduction absorbs its
elementwise producers, and slices, transposes, reshapes, pads and concats
become index arithmetic instead of copies.

A node is *materialized* when it must be: outputs and gradients (written to
the caller's arrays), reductions (accumulated), matrix products (a call to
the generated GEMM), scalars (SSA values computed once, so a program of
scalars is straight-line code), operands that the GEMM must read from memory,
expensive operands of an expanding broadcast, and nodes that several loops
would otherwise recompute. Materialized nodes of one iteration domain share
one loop when their dependencies are ready before it (horizontal fusion), so
all the gradient reductions of the batched neuron are one pass over memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from chainrule.compiler.ir import Node
from chainrule.compiler.program import Program
from chainrule.compiler.shapes import Shape

_CHEAP_SOURCES = ("arg", "const", "size_of")
_VIEWS = ("broadcast", "reshape", "transpose", "slice")


@dataclass(eq=False)
class Buffer:
    """Where a materialized node lives: a caller array, a workspace slot or an SSA scalar."""

    kind: str  # "arg", "output", "grad", "work", "ssa"
    index: int  # position among args/outputs/grads, or workspace buffer number
    shape: Shape
    dtype: str


@dataclass
class Item:
    """One materialized node computed in a kernel: stored, accumulated, or copied."""

    node: Node
    target: Buffer
    mode: str  # "store", "reduce", "matmul", "copy"

    @property
    def domain(self) -> Shape:
        return self.node.inputs[0].shape if self.mode == "reduce" else self.node.shape


@dataclass
class Kernel:
    kind: str  # "loop", "scalar", "matmul"
    domain: Shape
    items: list[Item] = field(default_factory=list)


@dataclass
class Plan:
    kernels: list[Kernel]
    storage: dict[Node, Buffer]
    work: list[Buffer]
    lifetimes: list[tuple[int, int]]  # per work buffer: first and last kernel using it
    matmul_count: int

    def describe(self, names: dict[Node, str]) -> str:
        lines = []
        for i, k in enumerate(self.kernels):
            what = ", ".join(f"{it.mode} {names.get(it.node, it.node.op)}" for it in k.items)
            dom = "[" + ", ".join(str(s) for s in k.domain) + "]"
            lines.append(f"kernel {i}: {k.kind} over {dom}: {what}")
        return "\n".join(lines)


def _is_cheap(node: Node, materialized: set) -> bool:
    while node.op in _VIEWS and node not in materialized:
        node = node.inputs[0]
    return node in materialized or node.op in _CHEAP_SOURCES


def _matrix_addressable(node: Node, materialized: set) -> bool:
    """Can the GEMM read `node` from memory with row/column strides?"""
    while node not in materialized and node.op in ("transpose", "reshape"):
        if node.op == "reshape" and _strip_ones(node.shape) != _strip_ones(node.inputs[0].shape):
            return False
        node = node.inputs[0]
    return node in materialized or node.op == "arg"


def _strip_ones(shape: Shape) -> tuple:
    return tuple(s for s in shape if s != 1)


def plan(program: Program, with_grad: bool) -> Plan:
    order = program.schedule(with_grad)
    roots = [(n, "output", i) for i, (_, n) in enumerate(program.outputs)]
    if with_grad:
        roots += [(n, "grad", i) for i, (_, n) in enumerate(program.grads)]
    consumers: dict[Node, list[Node]] = {n: [] for n in order}
    for n in order:
        for i in n.inputs:
            consumers[i].append(n)

    forced: set[Node] = set()
    for n in order:
        if n.op in _CHEAP_SOURCES:
            continue
        if n.op in ("reduce_sum", "reduce_max", "reduce_min", "matmul") or n.shape == ():
            forced.add(n)
    forced.update(n for n, _, _ in roots if n.op not in _CHEAP_SOURCES)
    for _ in range(8):  # grow the materialized set to a fixpoint
        grown = set(forced)
        for n in order:
            if n.op == "matmul":
                grown.update(i for i in n.inputs if not _matrix_addressable(i, grown))
            if n.op == "broadcast" and n.shape != n.inputs[0].shape \
                    and not _is_cheap(n.inputs[0], grown):
                grown.add(n.inputs[0])
        kernels_of = _kernel_reach(order, grown, consumers)
        for n, ks in kernels_of.items():
            if len(ks) > 1 and not _is_cheap(n, grown) and n.dtype != "bool":
                grown.add(n)
        if grown == forced:
            break
        forced = grown
    return _assign(order, forced, roots)


def _kernel_reach(order, materialized, consumers) -> dict[Node, set]:
    """For each inlined node, the materialized nodes whose loops would compute it."""
    reach: dict[Node, set] = {}
    for n in reversed(order):
        if n in materialized:
            continue
        owners = set()
        for c in consumers[n]:
            owners.update({c} if c in materialized else reach.get(c, set()))
        reach[n] = owners
    return reach


def _deps(node: Node, materialized: set) -> set[Node]:
    """Materialized nodes read (through inlined ones) when computing `node`."""
    found, stack, seen = set(), list(node.inputs), set()
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n in materialized:
            found.add(n)
        else:
            stack.extend(n.inputs)
    return found


def _assign(order, materialized: set, roots) -> Plan:
    storage: dict[Node, Buffer] = {}
    copies: list[Item] = []
    for node, kind, index in roots:
        target = Buffer(kind, index, node.shape, node.dtype)
        if node in storage or node not in materialized or node.shape == ():
            copies.append(Item(node, target, "copy"))
        else:
            storage[node] = target
    work: list[Buffer] = []
    for n in order:
        if n in materialized and n not in storage:
            if n.shape == ():
                storage[n] = Buffer("ssa", -1, (), n.dtype)
            else:
                storage[n] = Buffer("work", len(work), n.shape, n.dtype)
                work.append(storage[n])
    kernels: list[Kernel] = []
    produced_in: dict[Node, int] = {}
    matmuls = 0
    items = [Item(n, storage[n], _mode(n)) for n in order if n in materialized] + copies
    for item in items:
        deps = _deps(item.node, materialized)
        if item.mode == "copy" and item.node in materialized:
            deps = {item.node}
        ready = max((produced_in[d] for d in deps), default=-1)
        kind = "matmul" if item.mode == "matmul" else ("scalar" if item.domain == () else "loop")
        target = None
        if kind != "matmul":
            for k in range(len(kernels) - 1, ready, -1):
                if kernels[k].kind == kind and kernels[k].domain == item.domain:
                    target = k
                    break
        if target is None:
            kernels.append(Kernel(kind, item.domain))
            target = len(kernels) - 1
        matmuls += kind == "matmul"
        kernels[target].items.append(item)
        if item.mode != "copy":
            produced_in[item.node] = target
    # scalar kernels hold SSA values: they must run where they were placed, which
    # respects every dependency because a kernel is only joined after its inputs
    lifetimes = []
    for buf in work:
        users = [k for k, kern in enumerate(kernels) for it in kern.items
                 if it.target is buf or any(storage.get(d) is buf for d in
                                            _deps(it.node, materialized) | {it.node})]
        lifetimes.append((min(users), max(users)))
    return Plan(kernels, storage, work, lifetimes, matmuls)


def _mode(n: Node) -> str:
    if n.op in ("reduce_sum", "reduce_max", "reduce_min"):
        return "reduce"
    return "matmul" if n.op == "matmul" else "store"
