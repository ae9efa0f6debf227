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


@dataclass(eq=False)
class Kernel:
    """A loop nest over `domain` (or straight-line scalars, or a GEMM call).

    kind "rows" is a loop over the leading axis whose body runs each of
    `parts` (loops over the same leading axis) for the current row.
    """

    kind: str  # "loop", "scalar", "matmul", "rows"
    domain: Shape
    items: list[Item] = field(default_factory=list)
    parts: list["Kernel"] = field(default_factory=list)

    def all_items(self) -> list[Item]:
        return self.items + [it for p in self.parts for it in p.items]


@dataclass
class Plan:
    kernels: list[Kernel]
    storage: dict[Node, Buffer]
    work: list[Buffer]
    lifetimes: list[tuple[int, int]]  # per work buffer: first and last kernel using it
    # a giant program: each kernel becomes a function of its own, and kernels
    # pass everything (scalars too) through memory (see GIANT_BODY)
    outlined: bool = False

    def describe(self, names: dict[Node, str]) -> str:
        lines = ["(giant: one function per kernel)"] if self.outlined else []
        for i, k in enumerate(self.kernels):
            lines.append(f"kernel {i}: {k.kind} over {_dims(k.domain)}" +
                         (": " + _items(k, names) if k.items else ""))
            for part in k.parts:
                lines.append(f"  row part: loop over {_dims(part.domain)}: {_items(part, names)}")
        return "\n".join(lines)


def _dims(shape: Shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _items(kernel: Kernel, names: dict) -> str:
    return ", ".join(f"{it.mode} {names.get(it.node, it.node.op)}" for it in kernel.items)


def _is_cheap(node: Node, materialized: set) -> bool:
    while node.op in _VIEWS and node not in materialized:
        node = node.inputs[0]
    return node in materialized or node.op in _CHEAP_SOURCES


def _under_views(node: Node) -> Node:
    """The computation under a chain of reshapes: storing it serves every view."""
    while node.op == "reshape":
        node = node.inputs[0]
    return node


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
        # the max/min gradient finds the winners by comparing the operand with the
        # result: both loops must see the same stored values, not two computations
        # that fast-math may round differently
        if n.op in ("reduce_max", "reduce_min") and len(consumers[n.inputs[0]]) > 1 \
                and n.inputs[0].op not in _CHEAP_SOURCES:
            forced.add(_under_views(n.inputs[0]))
    forced.update(n for n, _, _ in roots if n.op not in _CHEAP_SOURCES)
    for _ in range(8):  # grow the materialized set to a fixpoint
        grown = set(forced)
        for n in order:
            if n.op == "matmul":
                grown.update(i for i in n.inputs if not _matrix_addressable(i, grown))
        cost: dict[Node, int] = {}
        for n in order:
            # an expanding broadcast would recompute its operand for every copy
            if n.op == "broadcast" and n.shape != n.inputs[0].shape \
                    and not _is_cheap(n.inputs[0], grown) \
                    and _cost(_under_views(n.inputs[0]), grown, cost) > 1:
                grown.add(_under_views(n.inputs[0]))
        for n, owners in _kernel_reach(order, grown, consumers).items():
            domains = {_domain(o) for o in owners}
            if len(domains) > 1 and n.dtype != "bool" and _cost(n, grown, cost) >= EXPENSIVE:
                grown.add(n)
        if grown == forced:
            break
        forced = grown
    materialized, giant = _bound_bodies(order, forced)
    return _assign(order, materialized, roots, giant)


# Recomputing a cheap expression in a second loop beats a round trip through
# memory; an expression with a transcendental or a long chain is stored instead.
EXPENSIVE = 8
_OP_COST = {"exp": 8, "log": 8, "log1p": 8, "expm1": 8, "sin": 8, "cos": 8, "tan": 10,
            "tanh": 8, "sigmoid": 9, "softplus": 12, "pow": 16, "div": 2, "sqrt": 2}


def _cost(node: Node, materialized: set, memo: dict) -> int:
    """Work to recompute `node` inline, up to materialized nodes and sources."""
    if node in memo:
        return memo[node]
    total, stack, seen = 0, [node], set()
    while stack:
        n = stack.pop()
        if n in seen or (n is not node and n in materialized):
            continue
        seen.add(n)
        total += _OP_COST.get(n.op, 1 if n.prim.family == "elementwise" else 0)
        stack.extend(n.inputs)
    memo[node] = total
    return total


# A giant program is compiled in pieces. LLVM's loop vectorizer and instruction
# selection are superlinear in the size of a function (a 3,000-step elementwise
# chain over a vector took 9 s to vectorize as one loop, 10,000 steps minutes),
# and the emitter recurses along inline expressions (a chain of 200,000 nodes
# exhausted even a big stack). So when some inline expression costs more than
# GIANT_BODY (in _OP_COST units), expressions are cut into pieces of at most
# BODY_CHUNK by storing intermediates, no loop gathers items costing more than
# BODY_CHUNK, and each kernel becomes its own function. Smaller programs stay
# whole: there one fused loop compiles and runs faster than several.
GIANT_BODY = 16384
BODY_CHUNK = 1024


def _bound_bodies(order, materialized: set) -> tuple[set, bool]:
    """(`materialized` plus the nodes that cut inline expressions, giant?).

    `bound` over-estimates a node's inline cost (shared subexpressions counted
    per use), so the exact walk runs only where the estimate is over the limit.
    """
    cut = set(materialized)
    for limit in (GIANT_BODY, BODY_CHUNK):
        bound: dict[Node, int] = {}
        over = False
        for n in order:
            if n in cut:
                continue
            bound[n] = min(_OP_COST.get(n.op, 1 if n.prim.family == "elementwise" else 0)
                           + sum(bound.get(i, 0) for i in n.inputs if i not in cut), 1 << 30)
            if bound[n] > limit and n.shape != () and n.dtype != "bool" \
                    and n.prim.family == "elementwise":
                bound[n] = _cost(n, cut, {})
                if bound[n] > limit:
                    if limit == GIANT_BODY:
                        over = True
                        break
                    cut.add(n)
        if limit == GIANT_BODY and not over:
            return cut, False
    return cut, True


def _domain(n: Node) -> Shape:
    return n.inputs[0].shape if _mode(n) == "reduce" else n.shape


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


def _deps(node: Node, materialized: set, mode: str = "store") -> dict[Node, bool]:
    """Materialized nodes read (through inlined ones) when computing an item.

    The flag says whether every path reads the dependency at the loop's own
    index (only elementwise nodes in between): such a dependency may be
    produced earlier in the same loop body.
    """
    aligned_inputs = mode == "reduce" or node.prim.family == "elementwise"
    return _walk([(i, aligned_inputs) for i in node.inputs], materialized,
                 lambda n, aligned: [aligned and n.prim.family == "elementwise"] * len(n.inputs),
                 bool)


def _walk(start: list, materialized: set, step, wanted) -> dict[Node, bool]:
    """The materialized nodes reached from `start` through inlined nodes.

    Each path carries a state (e.g. which axis holds the loop index): `step`
    gives the states of a node's inputs, and a dependency's flag says whether
    `wanted(state)` held on every path that reached it.
    """
    found: dict[Node, bool] = {}
    stack, seen = list(start), set()
    while stack:
        n, state = stack.pop()
        if (n, state) in seen:
            continue
        seen.add((n, state))
        if n in materialized:
            found[n] = found.get(n, True) and wanted(state)
        else:
            stack.extend(zip(n.inputs, step(n, state)))
    return found


def _assign(order, materialized: set, roots, giant: bool = False) -> Plan:
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
            if n.shape == () and not giant:
                storage[n] = Buffer("ssa", -1, (), n.dtype)
            else:
                storage[n] = Buffer("work", len(work), n.shape, n.dtype)
                work.append(storage[n])
    items = [Item(n, storage[n], _mode(n)) for n in order if n in materialized] + copies
    kernels, produced_in = _place(items, materialized, BODY_CHUNK if giant else None)
    if not giant:  # a giant program keeps its loops apart, one function each
        kernels = _fuse_rows(kernels, produced_in, materialized)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for k, kern in enumerate(kernels):
        for it in kern.all_items():
            touched = [it.target] + [storage[d] for d in _deps(it.node, materialized, it.mode)]
            if it.node in storage:
                touched.append(storage[it.node])
            for buf in touched:
                if buf.kind == "work":
                    first.setdefault(buf.index, k)
                    last[buf.index] = k
    lifetimes = [(first[b.index], last[b.index]) for b in work]
    return Plan(kernels, storage, work, lifetimes, giant)


def _item_deps(item: Item, materialized: set) -> dict[Node, bool]:
    if item.mode == "copy" and item.node in materialized:
        return {item.node: True}
    return _deps(item.node, materialized, item.mode)


def _place(items: list[Item], materialized: set,
           budget: int | None = None) -> tuple[list[Kernel], dict[Node, Kernel]]:
    """Put each item in the earliest kernel of its domain that runs after its inputs.

    A new kernel is inserted as early as its inputs allow, so independent work
    (a scalar such as 1/N) does not hold back the loops that need it. With a
    `budget`, a loop takes no more items than their inline cost allows.
    """
    kernels: list[Kernel] = []
    produced_in: dict[Node, Kernel] = {}
    position: dict[int, int] = {}  # id(kernel) -> index, kept up to date on insertion
    spent: dict[int, int] = {}  # id(kernel) -> inline cost of its items (with a budget)
    for item in items:
        after = strictly_after = 0
        for d, aligned in _item_deps(item, materialized).items():
            k = produced_in[d]
            # the kernel storing a dependency read at the same index may be joined
            same_iteration = aligned and k.kind == "loop" and _stores(k, d)
            after = max(after, position[id(k)] + (0 if same_iteration else 1))
            strictly_after = max(strictly_after, position[id(k)] + 1)
        kind = "matmul" if item.mode == "matmul" else ("scalar" if item.domain == () else "loop")
        cost = _cost(item.node, materialized, {}) if budget is not None and kind == "loop" else 0
        target = None
        if kind == "scalar":  # straight-line code: run it as early as possible
            if after < len(kernels) and kernels[after].kind == "scalar":
                target = kernels[after]
        elif kind == "loop":
            target = next((k for k in kernels[after:]
                           if k.kind == kind and k.domain == item.domain
                           and (budget is None or spent[id(k)] + cost <= budget)), None)
        if target is None:  # after every dependency's loop, even one it could have joined
            after = strictly_after
            target = Kernel(kind, item.domain)
            spent[id(target)] = 0
            kernels.insert(after, target)
            for i in range(after, len(kernels)):
                position[id(kernels[i])] = i
        target.items.append(item)
        spent[id(target)] += cost
        if item.mode != "copy":
            produced_in[item.node] = target
    return kernels, produced_in


def _stores(kernel: Kernel, node: Node) -> bool:
    return any(it.node is node and it.mode == "store" for it in kernel.items)


def _fuse_rows(kernels: list[Kernel], produced_in: dict, materialized: set) -> list[Kernel]:
    """Share the outer loop between loops over the same leading axis (row fusion).

    A loop joins an earlier one when everything it reads from that group is read
    at the current row and is complete once the row is done (a stored row, or a
    reduction over the other axes). X^T g after X w then reads each row of X
    while it is still in cache: one pass over memory instead of two.
    """
    out: list[Kernel] = []
    group_of: dict[int, Kernel] = {}  # id(kernel) -> the top-level kernel holding it
    for k in kernels:
        host = None
        if k.kind == "loop" and k.domain:
            deps: dict[Node, bool] = {}
            for it in k.items:  # a dependency is row-aligned only if every item reads it so
                for d, aligned in _row_deps(it, materialized).items():
                    if produced_in[d] is not k:
                        deps[d] = deps.get(d, True) and aligned
            sources = {id(group_of[id(produced_in[d])]) for d in deps}
            for cand in reversed(out):
                if cand.kind in ("loop", "rows") and cand.domain[:1] == k.domain[:1] \
                        and all(_row_ready(d, a, produced_in[d])
                                for d, a in deps.items() if id(group_of[id(produced_in[d])]) == id(cand)):
                    host = cand
                    break
                if id(cand) in sources:
                    break  # a dependency is produced here or later: cannot move above it
        if host is None:
            out.append(k)
            group_of[id(k)] = k
            continue
        if host.kind == "loop":
            rows = Kernel("rows", host.domain[:1], parts=[host])
            out[out.index(host)] = rows
            for kid, top in list(group_of.items()):
                if top is host:
                    group_of[kid] = rows
            host = rows
        host.parts.append(k)
        group_of[id(k)] = host
    return out


def _row_ready(dep: Node, aligned_row: bool, producer: Kernel) -> bool:
    if not aligned_row or producer.kind != "loop":
        return False
    for it in producer.items:
        if it.node is dep:
            return it.mode == "store" or (it.mode == "reduce" and 0 not in it.node.attr("axes"))
    return False


def _row_deps(item: Item, materialized: set) -> dict[Node, bool]:
    """Materialized nodes an item reads, each flagged when always read at the loop's row."""
    if item.mode == "copy" and item.node in materialized:
        return {item.node: True}
    start = [(item.node.inputs[0], 0)] if item.mode == "reduce" else \
        [(i, p) for i, p in zip(item.node.inputs, _axis_through(item.node, 0))]
    return _walk(start, materialized, _axis_through, lambda pos: pos == 0)


def _axis_through(node: Node, pos):
    """For each input of `node`: which of its axes carries the loop row index (None: none)."""
    if pos is None:
        return [None] * len(node.inputs)
    fam = node.prim.family
    if fam == "elementwise":
        return [pos] * len(node.inputs)
    x = node.inputs[0] if node.inputs else None
    if node.op == "broadcast":
        lead = len(node.shape) - len(x.shape)
        a = pos - lead
        return [a if a >= 0 and x.shape[a] == node.shape[pos] else None]
    if node.op == "reshape" and _strip_ones(node.shape) == _strip_ones(x.shape) \
            and node.shape[pos] != 1:
        rank = sum(1 for s in node.shape[:pos] if s != 1)
        axes = [a for a, s in enumerate(x.shape) if s != 1]
        return [axes[rank]]
    if node.op == "transpose":
        return [node.attr("perm")[pos]]
    if node.op == "slice" and node.attr("starts")[pos] == 0 and node.attr("steps")[pos] == 1:
        return [pos]
    if node.op == "concat" and node.attr("axis") != pos:
        return [pos] * len(node.inputs)
    return [None] * len(node.inputs)


def _mode(n: Node) -> str:
    if n.op in ("reduce_sum", "reduce_max", "reduce_min"):
        return "reduce"
    return "matmul" if n.op == "matmul" else "store"
