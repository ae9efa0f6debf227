"""LLVM code generation: a Plan (kernels and storage) becomes one native function.

The function has the plain C ABI of chainrule (see `abi.py`): symbolic dims,
then argument pointers, output pointers, gradient pointers and a workspace.
Each kernel becomes a loop nest (or straight-line code for scalars, or a call
to the generated GEMM); inlined nodes are evaluated inside the loop body at
the index their consumer needs, with index arithmetic for layout operations.
"""
from __future__ import annotations

import math

from llvmlite import ir

from chainrule.compiler.codegen.loops import FLOAT_TYPES, I1, I32, I64, PTR, for_range, i64
from chainrule.compiler.codegen.scalar import FASTMATH, intrinsic
from chainrule.compiler.ir import Node
from chainrule.compiler.schedule import Buffer, Item, Kernel, Plan
from chainrule.compiler.shapes import Shape, Size, add_size

ALIGN = 64
_IDENTITY = {"reduce_sum": 0.0, "reduce_max": -math.inf, "reduce_min": math.inf}
_ACCUMULATE = {"f32": ir.DoubleType()}  # sums of f32 accumulate in f64 (registers only)


class Sizes:
    """Symbolic sizes as i64 values, computed once in the function's prelude.

    Every product and sum is overflow-checked: dims bound from zero-element
    arrays can be huge (an [N, 0] argument with N = 2^32 and an [N, N]
    intermediate), and a wrapped size would size the workspace too small.
    `overflow` is true when any size computed so far does not fit in int64.
    """

    def __init__(self, b: ir.IRBuilder, dims: dict[str, ir.Value]):
        self.b = b
        self.dims = dims
        self.cache: dict = {}
        self.overflow: ir.Value = ir.Constant(I1, 0)

    def _checked(self, op: str, x: ir.Value, y: ir.Value) -> ir.Value:
        if isinstance(x, ir.Constant) and isinstance(y, ir.Constant):
            exact = x.constant * y.constant if op == "mul" else x.constant + y.constant
            if -2 ** 63 <= exact < 2 ** 63:
                return i64(exact)
        fn = self.b.module.declare_intrinsic(
            f"llvm.s{op}.with.overflow", [I64],
            ir.FunctionType(ir.LiteralStructType([I64, I1]), [I64, I64]))
        pair = self.b.call(fn, [x, y])
        self.overflow = self.b.or_(self.overflow, self.b.extract_value(pair, 1))
        return self.b.extract_value(pair, 0)

    def mul(self, x: ir.Value, y: ir.Value) -> ir.Value:
        return self._checked("mul", x, y)

    def add(self, x: ir.Value, y: ir.Value) -> ir.Value:
        return self._checked("add", x, y)

    def size(self, s: Size) -> ir.Value:
        if isinstance(s, int):
            return i64(s)
        if s not in self.cache:
            total = i64(s.const)
            for name, coef in s.terms:
                total = self.add(total, self.mul(self.dims[name], i64(coef)))
            self.cache[s] = self.b.sdiv(total, i64(s.div)) if s.div != 1 else total
        return self.cache[s]

    def numel(self, shape: Shape) -> ir.Value:
        total = i64(1)
        for s in shape:
            total = self.mul(total, self.size(s))
        return total

    def bytes(self, shape: Shape, dtype: str) -> ir.Value:
        """Bytes of a dense array, rounded up to the workspace alignment."""
        nbytes = self.mul(self.numel(shape), i64(4 if dtype == "f32" else 8))
        return self.align(nbytes)

    def align(self, nbytes: ir.Value) -> ir.Value:
        return self.b.and_(self.add(nbytes, i64(ALIGN - 1)), i64(-ALIGN))

    def strides(self, shape: Shape) -> list[ir.Value]:
        """Row-major element strides."""
        key = ("strides", tuple(shape))
        if key not in self.cache:
            out, acc = [], i64(1)
            for s in reversed(shape):
                out.append(acc)
                acc = self.mul(acc, self.size(s))
            self.cache[key] = list(reversed(out))
        return self.cache[key]


def workspace_layout(sizes: Sizes, plan: Plan, gemm_pack: dict) -> tuple:
    """Offsets of the work buffers: buffers whose lifetimes do not overlap share a slot.

    Returns (total bytes, {buffer number: offset}, pack offset, {buffer number:
    slot}), computed with `sizes`' builder and overflow check. `gemm_pack[dtype]` sizes a matmul's
    GEMM packing scratch (bounded by the GEMM's blocking, so it cannot
    overflow); matmuls run one at a time, so one slot.
    """
    b = sizes.b
    slots: list[list[int]] = []  # buffer numbers per slot
    slot_end: list[int] = []
    for k in sorted(range(len(plan.work)), key=lambda k: plan.lifetimes[k]):
        start, end = plan.lifetimes[k]
        for s, last in enumerate(slot_end):
            if last < start:
                slots[s].append(k)
                slot_end[s] = end
                break
        else:
            slots.append([k])
            slot_end.append(end)
    offsets: dict[int, ir.Value] = {}
    total = i64(0)
    for members in slots:
        width = i64(0)
        for k in members:
            nbytes = sizes.bytes(plan.work[k].shape, plan.work[k].dtype)
            width = b.select(b.icmp_signed(">", nbytes, width), nbytes, width)
        for k in members:
            offsets[k] = total
        total = sizes.add(total, width)
    slot_of = {k: s for s, members in enumerate(slots) for k in members}
    pack = i64(0)
    for kernel in plan.kernels:
        if kernel.kind == "matmul":
            node = kernel.items[0].node
            (m, k), n = node.inputs[0].shape, node.inputs[1].shape[1]
            nbytes = b.call(gemm_pack[node.dtype], [sizes.size(m), sizes.size(n), sizes.size(k)])
            pack = b.select(b.icmp_signed(">", nbytes, pack), nbytes, pack)
    return sizes.add(total, sizes.align(pack)), offsets, total, slot_of


class FunctionEmitter:
    """Emits the body of one ABI function (value, or value and grad) for one Plan."""

    def __init__(self, fn: ir.Function, plan: Plan, program, dim_names, gemm, gemm_pack):
        self.fn = fn
        self.plan = plan
        self.program = program
        self.gemm = gemm  # dtype -> ir.Function
        self.gemm_pack = gemm_pack
        nd, na = len(dim_names), len(program.args)
        args = list(fn.args)
        self.dim_values = dict(zip(dim_names, args[:nd]))
        self.arg_ptrs = dict(zip((a.name for a in program.args), args[nd:nd + na]))
        rest = args[nd + na:-1]
        self.out_ptrs = rest[:len(program.outputs)]
        self.grad_ptrs = rest[len(program.outputs):]
        self.work_arg = args[-1]
        self.prelude = ir.IRBuilder(fn.append_basic_block("prelude"))
        self.sizes = Sizes(self.prelude, self.dim_values)
        self.ssa: dict[Node, ir.Value] = {}
        self.body_sizes: list[dict] = []
        self.straight_line = 0  # scalar items: long straight-line code is "huge" too
        self.work_ptrs: dict[int, ir.Value] = {}
        self.alias_tags: dict[int, tuple] = {}  # work buffer -> (alias.scope, noalias)

    # --------------------------------------------------------------- the body
    def emit(self) -> None:
        """check dims -> check sizes -> workspace -> kernels -> free.

        The prelude (sizes, workspace layout, allocas) and the size check are
        finished last: only then are all sizes the kernels use known.
        """
        check = self.fn.append_basic_block("check")
        p = ir.IRBuilder(check)
        bad = i64(0)
        for v in self.dim_values.values():
            bad = p.or_(bad, p.zext(p.icmp_signed("<", v, i64(0)), I64))
        for c in self.program.constraints:
            bad = p.or_(bad, p.zext(p.icmp_signed("<", self.sizes.size(c.size), i64(c.minimum)), I64))
        sizes_fit = self.fn.append_basic_block("sizes_fit")
        p.cbranch(p.icmp_signed("!=", bad, i64(0)), self._fail(1, "bad_dims"), sizes_fit)
        setup = self.fn.append_basic_block("setup")
        total, offsets, pack_offset, slot_of = workspace_layout(self.sizes, self.plan,
                                                                self.gemm_pack)
        self.alias_tags = _slot_alias_tags(self.fn, slot_of)
        b = ir.IRBuilder(setup)
        own = b.icmp_unsigned("==", self.work_arg, ir.Constant(PTR, None))
        malloc = _declare(b.module, "malloc", PTR, [I64])
        free = _declare(b.module, "free", ir.VoidType(), [PTR])
        allocated = b.select(own, b.call(malloc, [self.sizes.add(total, i64(ALIGN))]),
                             ir.Constant(PTR, None))
        run = self.fn.append_basic_block("run")
        failed = b.and_(own, b.icmp_unsigned("==", allocated, ir.Constant(PTR, None)))
        b.cbranch(failed, self._fail(2, "out_of_memory"), run)
        b.position_at_end(run)
        raw = b.select(own, allocated, self.work_arg)
        # align an owned allocation to 64 bytes (GEP from the base: no int-to-pointer)
        misalign = b.and_(b.ptrtoint(raw, I64), i64(ALIGN - 1))
        shift = b.select(own, b.and_(b.sub(i64(ALIGN), misalign), i64(ALIGN - 1)), i64(0))
        base = b.gep(raw, [shift], source_etype=ir.IntType(8))
        for k, off in offsets.items():
            self.work_ptrs[k] = b.gep(base, [off], source_etype=ir.IntType(8))
        self.pack_ptr = b.gep(base, [pack_offset], source_etype=ir.IntType(8))
        self.b = b
        if self.plan.outlined:
            self._emit_outlined()
        else:
            for kernel in self.plan.kernels:
                getattr(self, "kernel_" + kernel.kind)(kernel)
        b = self.b
        with b.if_then(own):
            b.call(free, [allocated])
        b.ret(ir.Constant(I32, 0))
        ir.IRBuilder(sizes_fit).cbranch(self.sizes.overflow, self._fail(3, "too_large"), setup)
        self.prelude.branch(check)

    def _emit_outlined(self) -> None:
        """A giant program: each kernel in a function of its own, called in order.

        LLVM's per-function work then grows with the largest kernel, not with
        the program. A kernel function takes the ABI function's dims and array
        pointers, and a table of the workspace buffers' addresses (then the
        GEMM packing scratch); kernels share nothing else (scalars live in the
        workspace, see schedule.GIANT_BODY).
        """
        n_work = len(self.plan.work)
        table = self.prelude.alloca(PTR, size=i64(n_work + 1))
        for k in range(n_work):
            self.b.store(self.work_ptrs[k], self._slot(self.b, table, k))
        self.b.store(self.pack_ptr, self._slot(self.b, table, n_work))
        params = list(self.fn.args)[:-1]  # dims and arrays; the table replaces work
        ftype = ir.FunctionType(ir.VoidType(), [p.type for p in params] + [PTR])
        outer = (self.fn, self.b, self.prelude, self.sizes, self.dim_values, self.arg_ptrs,
                 self.out_ptrs, self.grad_ptrs, self.work_ptrs, self.pack_ptr)
        for number, kernel in enumerate(self.plan.kernels):
            fn = ir.Function(self.fn.module, ftype, f"{outer[0].name}.kernel{number}")
            fn.linkage = "internal"
            fn.attributes.add("noinline")
            fn.attributes.add("nounwind")
            for arg in fn.args[:-1]:
                if isinstance(arg.type, ir.PointerType):
                    arg.add_attribute("noalias")
            body = self._enter(fn, n_work)
            getattr(self, "kernel_" + kernel.kind)(kernel)
            self.b.ret_void()
            self.prelude.branch(body)
            (self.fn, self.b, self.prelude, self.sizes, self.dim_values, self.arg_ptrs,
             self.out_ptrs, self.grad_ptrs, self.work_ptrs, self.pack_ptr) = outer
            self.b.call(fn, params + [table])

    def _enter(self, fn: ir.Function, n_work: int) -> ir.Block:
        """Point the emitter at kernel function `fn` (same parameters as the ABI
        function, the buffer table last); returns the block after its prelude."""
        nd, na, no = len(self.dim_values), len(self.arg_ptrs), len(self.out_ptrs)
        args = list(fn.args)
        self.fn = fn
        self.prelude = ir.IRBuilder(fn.append_basic_block("prelude"))
        self.b = ir.IRBuilder(fn.append_basic_block("run"))
        self.dim_values = dict(zip(self.dim_values, args[:nd]))
        self.sizes = Sizes(self.prelude, self.dim_values)
        self.arg_ptrs = dict(zip(self.arg_ptrs, args[nd:nd + na]))
        self.out_ptrs = args[nd + na:nd + na + no]
        self.grad_ptrs = args[nd + na + no:-1]
        self.work_ptrs = _TableEntries(self.prelude, args[-1])
        self.pack_ptr = self.work_ptrs[n_work]
        return self.b.block

    @staticmethod
    def _slot(b: ir.IRBuilder, table: ir.Value, k: int) -> ir.Value:
        return b.gep(table, [i64(k)], source_etype=PTR, inbounds=True)

    def _fail(self, code: int, name: str) -> ir.Block:
        """A block returning an ABI error code (see runtime/native.py RETURN_CODES)."""
        block = self.fn.append_basic_block(name)
        ir.IRBuilder(block).ret(ir.Constant(I32, code))
        return block

    # ---------------------------------------------------------------- storage
    def buffer_ptr(self, buf: Buffer) -> ir.Value:
        if buf.kind == "work":
            return self.work_ptrs[buf.index]
        if buf.kind == "output":
            return self.out_ptrs[buf.index]
        if buf.kind == "grad":
            return self.grad_ptrs[buf.index]
        raise AssertionError(buf.kind)

    def address(self, ptr: ir.Value, shape: Shape, idx, dtype: str) -> ir.Value:
        b = self.b
        if not shape:
            return ptr
        strides = self.sizes.strides(shape)
        offset = None
        for i, st in zip(idx, strides):
            term = i if _is_one(st) else b.mul(i, st, flags=("nsw",))
            offset = term if offset is None else b.add(offset, term, flags=("nsw",))
        return b.gep(ptr, [offset], source_etype=FLOAT_TYPES[dtype], inbounds=True)

    def store(self, buf: Buffer, node: Node, idx, value: ir.Value) -> None:
        if buf.kind == "ssa":
            self.ssa[node] = value
            return
        self.tag(self.b.store(value, self.address(self.buffer_ptr(buf), buf.shape, idx,
                                                  buf.dtype)), buf)

    def tag(self, access: ir.Instruction, buf: Buffer) -> ir.Instruction:
        """Say which workspace slot a load or store touches: accesses to different
        slots never overlap, which LLVM cannot see (every slot is an offset of
        one pointer), so a loop writing one buffer while reading another can be
        vectorized without runtime checks."""
        tags = self.alias_tags.get(buf.index) if buf.kind == "work" else None
        if tags is not None:
            access.set_metadata("alias.scope", tags[0])
            access.set_metadata("noalias", tags[1])
        return access

    # ------------------------------------------------------------------ values
    def value(self, node: Node, idx: tuple, cache: dict) -> ir.Value:
        key = (node, tuple(id(i) for i in idx))
        hit = cache.get(key)
        if hit is not None:
            return hit
        out = self._compute(node, idx, cache)
        cache[key] = out
        return out

    def _compute(self, node: Node, idx: tuple, cache: dict) -> ir.Value:
        b = self.b
        T = FLOAT_TYPES[node.dtype]
        buf = self.plan.storage.get(node)
        if buf is not None and node in self._done:
            if buf.kind == "ssa":
                return self.ssa[node]
            return self.tag(b.load(self.address(self.buffer_ptr(buf), buf.shape, idx, buf.dtype),
                                   typ=T), buf)
        op = node.op
        if op == "arg":
            ptr = self.arg_ptrs[node.attr("name")]
            return b.load(self.address(ptr, node.shape, idx, node.dtype), typ=T)
        if op == "const":
            return ir.Constant(T, node.attr("value"))
        if op == "size_of":
            total = i64(1)
            for s in node.attr("sizes"):
                total = b.mul(total, self.sizes.size(s))
            return b.sitofp(total, T)
        if node.prim.family == "elementwise":
            args = [self.value(i, idx, cache) for i in node.inputs]
            return node.prim.emit(b, args, node)
        return getattr(self, "index_" + op)(node, idx, cache)

    def index_broadcast(self, node: Node, idx: tuple, cache: dict) -> ir.Value:
        x = node.inputs[0]
        lead = len(node.shape) - len(x.shape)
        inner = tuple(self.zero if s == 1 and node.shape[lead + a] != 1 else idx[lead + a]
                      for a, s in enumerate(x.shape))
        return self.value(x, inner, cache)

    def index_reshape(self, node: Node, idx: tuple, cache: dict) -> ir.Value:
        x = node.inputs[0]
        kept = [i for i, s in zip(idx, node.shape) if s != 1]
        if [s for s in node.shape if s != 1] == [s for s in x.shape if s != 1]:
            it = iter(kept)  # only size-1 axes differ: map the others one to one
            return self.value(x, tuple(self.zero if s == 1 else next(it) for s in x.shape), cache)
        b = self.b
        flat = i64(0)
        for i, st in zip(idx, self.sizes.strides(node.shape)):
            flat = b.add(flat, b.mul(i, st, flags=("nsw",)), flags=("nsw",))
        inner = []
        for s, st in zip(x.shape, self.sizes.strides(x.shape)):
            inner.append(b.urem(b.udiv(flat, st), self.sizes.size(s)) if s != 1 else self.zero)
        return self.value(x, tuple(inner), cache)

    def index_transpose(self, node: Node, idx: tuple, cache: dict) -> ir.Value:
        perm = node.attr("perm")
        inner = [None] * len(perm)
        for i, p in enumerate(perm):
            inner[p] = idx[i]
        return self.value(node.inputs[0], tuple(inner), cache)

    def index_slice(self, node: Node, idx: tuple, cache: dict) -> ir.Value:
        b = self.b
        inner = []
        for i, start, step in zip(idx, node.attr("starts"), node.attr("steps")):
            j = i if step == 1 else b.mul(i, i64(step), flags=("nsw",))
            inner.append(j if start == 0 else b.add(j, self.sizes.size(start), flags=("nsw",)))
        return self.value(node.inputs[0], tuple(inner), cache)

    def index_pad(self, node: Node, idx: tuple, cache: dict) -> ir.Value:
        """g scattered into zeros: read the operand only where the index lands on it.

        The read sits in a conditional block at the unclamped (affine) index, so
        the vectorizer turns it into a masked load instead of a gather.
        """
        b = self.b
        inside = ir.Constant(I1, 1)
        inner = []
        for i, start, size, step in zip(idx, node.attr("starts"), node.attr("sizes"),
                                        node.attr("steps")):
            rel = i if start == 0 else b.sub(i, self.sizes.size(start))
            q = rel if step == 1 else b.sdiv(rel, i64(step))
            ok = b.and_(b.icmp_signed(">=", q, i64(0)), b.icmp_signed("<", q, self.sizes.size(size)))
            if step != 1:
                ok = b.and_(ok, b.icmp_signed("==", b.srem(rel, i64(step)), i64(0)))
            inside = b.and_(inside, ok)
            inner.append(q)
        T = FLOAT_TYPES[node.dtype]
        before = b.block
        then = b.append_basic_block("pad.in")
        merge = b.append_basic_block("pad.end")
        b.cbranch(inside, then, merge)
        b.position_at_end(then)
        v = self.value(node.inputs[0], tuple(inner), dict(cache))  # values made here stay here
        then_end = b.block
        b.branch(merge)
        b.position_at_end(merge)
        phi = b.phi(T)
        phi.add_incoming(ir.Constant(T, 0.0), before)
        phi.add_incoming(v, then_end)
        return phi

    def index_concat(self, node: Node, idx: tuple, cache: dict) -> ir.Value:
        b = self.b
        axis = node.attr("axis")
        offset: Size = 0
        result = None
        for x in node.inputs:
            start = self.sizes.size(offset)
            n = self.sizes.size(x.shape[axis])
            local = b.sub(idx[axis], start)
            top = b.sub(n, i64(1))
            clamped = b.select(b.icmp_signed("<", local, i64(0)), i64(0), local)
            clamped = b.select(b.icmp_signed(">", clamped, top), top, clamped)
            v = self.value(x, idx[:axis] + (clamped,) + idx[axis + 1:], cache)
            if result is None:
                result = v
            else:
                result = b.select(b.icmp_signed(">=", idx[axis], start), v, result)
            offset = add_size(offset, x.shape[axis])
        return result

    # ----------------------------------------------------------------- kernels
    @property
    def zero(self) -> ir.Constant:
        return i64(0)

    def kernel_scalar(self, kernel: Kernel) -> None:
        cache: dict = {}
        self.straight_line += len(kernel.items)
        for item in kernel.items:
            self.store(item.target, item.node, (), self.value(item.node, (), cache))
            self._done.add(item.node)

    def kernel_loop(self, kernel: Kernel) -> None:
        accumulators = self._start_reductions(kernel)
        self._nest(kernel, (), accumulators)
        self._finish(kernel, accumulators)

    def kernel_rows(self, group: Kernel) -> None:
        """Loops sharing a leading axis, run tile by tile: each part walks the tile's rows.

        A tile of rows stays in cache between the parts (one pass over memory),
        and each part's own loop over the tile's rows vectorizes: per-row
        transcendentals run on vectors, not one call per row.
        """
        b = self.b
        accumulators = {}
        for part in group.parts:
            accumulators.update(self._start_reductions(part))
        n = self.sizes.size(group.domain[0])
        tile = i64(_row_tile(group))
        tiles = b.sdiv(b.add(n, b.sub(tile, i64(1))), tile)
        with for_range(b, tiles, "tile") as t:
            base = b.mul(t, tile, flags=("nsw",))
            rest = b.sub(n, base)
            count = b.select(b.icmp_signed("<", rest, tile), rest, tile)
            for part in group.parts:
                with for_range(self.b, count, "row", _sums_over(part, 0)) as r:
                    self._nest(part, (self.b.add(base, r, flags=("nsw",)),), accumulators)
                self._done.update(it.node for it in part.items if it.target.kind != "ssa")
        for part in group.parts:
            self._finish(part, accumulators)

    def _start_reductions(self, kernel: Kernel) -> dict:
        """Reduction results start at the identity: a register for scalars, else a filled buffer."""
        accumulators = {}
        for item in kernel.items:
            if item.mode != "reduce":
                continue
            if item.target.kind == "ssa":
                accumulators[item.node] = self._accumulator(item.node)
            else:
                self._fill(item.target, ir.Constant(FLOAT_TYPES[item.node.dtype],
                                                    _IDENTITY[item.node.op]))
        return accumulators

    def _nest(self, kernel: Kernel, prefix: tuple, accumulators: dict) -> None:
        """The loop nest over the kernel's domain (below `prefix`).

        A reduction over trailing axes keeps its partial sum in a register for
        the inner loops and stores it once per output element, so the innermost
        loop is a plain vectorizable reduction.
        """
        idx = list(prefix)
        depth = len(kernel.domain)
        inner: dict[int, list[Item]] = {}
        for item in kernel.items:
            axes = item.node.attr("axes") if item.mode == "reduce" else None
            if axes and item.node not in accumulators and \
                    tuple(axes) == tuple(range(depth - len(axes), depth)) and \
                    depth - len(axes) >= len(prefix):
                inner.setdefault(depth - len(axes), []).append(item)

        def nest(level: int) -> None:
            local = {}
            for item in inner.get(level, []):
                local[item.node] = self._accumulator(item.node)
            accumulators.update(local)
            if level == depth:
                self._loop_body(kernel, tuple(idx), accumulators)
            else:
                with for_range(self.b, self.sizes.size(kernel.domain[level]), f"i{level}",
                               _sums_over(kernel, level)) as i:
                    idx.append(i)
                    nest(level + 1)
                    idx.pop()
            for node, slot in local.items():
                del accumulators[node]
                self.store(self.plan.storage[node], node, tuple(idx), self._total(node, slot))
        nest(len(prefix))

    def _accumulator(self, node: Node) -> ir.Value:
        """A register (stack slot) holding a reduction's partial result, at its identity.

        An f32 sum accumulates in f64: one long f32 sum of 40,000 terms was off
        by 3e-4 where NumPy's pairwise sum is exact to a few ulps."""
        T = self._accumulator_type(node)
        slot = self.prelude.alloca(T)
        self.b.store(ir.Constant(T, _IDENTITY[node.op]), slot)
        return slot

    @staticmethod
    def _accumulator_type(node: Node) -> ir.Type:
        if node.op == "reduce_sum":
            return _ACCUMULATE.get(node.dtype, FLOAT_TYPES[node.dtype])
        return FLOAT_TYPES[node.dtype]

    def _total(self, node: Node, slot: ir.Value) -> ir.Value:
        """The accumulated result in the node's own dtype."""
        value = self.b.load(slot, typ=self._accumulator_type(node))
        T = FLOAT_TYPES[node.dtype]
        return value if value.type == T else self.b.fptrunc(value, T)

    def _finish(self, kernel: Kernel, accumulators: dict) -> None:
        for item in kernel.items:
            if item.node in accumulators:
                self.ssa[item.node] = self._total(item.node, accumulators[item.node])
            self._done.add(item.node)

    def _loop_body(self, kernel: Kernel, idx: tuple, accumulators: dict) -> None:
        b = self.b
        cache: dict = {}
        self.body_sizes.append(cache)  # measured after emission: how big loop bodies get
        for item in kernel.items:
            if item.mode != "reduce":
                self.store(item.target, item.node, idx, self.value(item.node, idx, cache))
                continue
            x = self.value(item.node.inputs[0], idx, cache)
            axes = item.node.attr("axes")
            if item.node in accumulators:
                ptr = accumulators[item.node]
            else:
                kept = tuple(i for a, i in enumerate(idx) if a not in axes)
                ptr = self.address(self.buffer_ptr(item.target), item.target.shape, kept,
                                   item.target.dtype)
            in_memory = item.node not in accumulators
            old = b.load(ptr, typ=FLOAT_TYPES[item.node.dtype] if in_memory else
                         self._accumulator_type(item.node))
            if old.type != x.type:
                x = b.fpext(x, old.type)
            if item.node.op == "reduce_sum":
                new = b.fadd(old, x, flags=FASTMATH)
            else:
                name = "llvm.maximum" if item.node.op == "reduce_max" else "llvm.minimum"
                new = intrinsic(b, name, [old, x])
            stored = b.store(new, ptr)
            if in_memory:
                self.tag(old, item.target)
                self.tag(stored, item.target)

    def _fill(self, buf: Buffer, value: ir.Constant) -> None:
        ptr = self.buffer_ptr(buf)
        with for_range(self.b, self.sizes.numel(buf.shape), "fill") as i:
            self.tag(self.b.store(value, self.b.gep(ptr, [i], source_etype=value.type,
                                                    inbounds=True)), buf)

    def kernel_matmul(self, kernel: Kernel) -> None:
        item = kernel.items[0]
        node = item.node
        a, bm = node.inputs
        (m, k), n = a.shape, bm.shape[1]
        pa, rsa, csa = self.matrix(a)
        pb, rsb, csb = self.matrix(bm)
        c = self.buffer_ptr(item.target)
        self.b.call(self.gemm[node.dtype], [
            self.sizes.size(m), self.sizes.size(n), self.sizes.size(k), pa, rsa, csa, pb, rsb, csb,
            c, self.sizes.size(n), ir.Constant(I32, 0), self.pack_ptr])
        self._done.add(node)

    def matrix(self, node: Node) -> tuple[ir.Value, ir.Value, ir.Value]:
        """Pointer and row/column strides of a 2-D operand read in place."""
        ptr, strides = self._strided(node)
        return ptr, strides[0], strides[1]

    def _strided(self, node: Node) -> tuple[ir.Value, list]:
        buf = self.plan.storage.get(node)
        if buf is not None and node in self._done:
            return self.buffer_ptr(buf), self.sizes.strides(node.shape)
        if node.op == "arg":
            return self.arg_ptrs[node.attr("name")], self.sizes.strides(node.shape)
        ptr, inner = self._strided(node.inputs[0])
        if node.op == "transpose":
            return ptr, [inner[p] for p in node.attr("perm")]
        # reshape that only adds or drops size-1 axes
        it = iter([st for st, s in zip(inner, node.inputs[0].shape) if s != 1])
        return ptr, [i64(0) if s == 1 else next(it) for s in node.shape]

    _done: set

    def run(self) -> int:
        """Emit the function; returns the node count of its largest loop body."""
        self._done = set()
        self.emit()
        return max([len(c) for c in self.body_sizes] + [self.straight_line])


MAX_ALIAS_SLOTS = 64  # beyond this, the per-slot lists would grow the IR quadratically


def _slot_alias_tags(fn: ir.Function, slot_of: dict[int, int]) -> dict[int, tuple]:
    """Scoped alias metadata per work buffer: its slot's scope, and every other
    slot's as `noalias`. Buffers that share a slot (one after the other) share
    its scope, so nothing is claimed about memory that is really reused."""
    n_slots = len(set(slot_of.values()))
    if not 1 < n_slots <= MAX_ALIAS_SLOTS:
        return {}
    module = fn.module
    domain = module.add_metadata([ir.MetaDataString(module, f"{fn.name}.workspace")])
    scopes = [module.add_metadata([ir.MetaDataString(module, f"{fn.name}.slot{s}"), domain])
              for s in range(n_slots)]
    lists = [(module.add_metadata([scopes[s]]),
              module.add_metadata([scopes[t] for t in range(n_slots) if t != s]))
             for s in range(n_slots)]
    return {k: lists[s] for k, s in slot_of.items()}


class _TableEntries(dict):
    """Buffer addresses read from a kernel function's table, each on first use."""

    def __init__(self, prelude: ir.IRBuilder, table: ir.Value):
        super().__init__()
        self.prelude, self.table = prelude, table

    def __missing__(self, k: int) -> ir.Value:
        self[k] = self.prelude.load(FunctionEmitter._slot(self.prelude, self.table, k), typ=PTR)
        return self[k]


ROW_TILE_ELEMENTS = 2048  # elements of one part's rows per tile: about 16 KiB of f64


def _row_tile(group: Kernel) -> int:
    """Rows per tile: the widest part's tile fits in L1 with room for the others."""
    widest = 1
    for part in group.parts:
        inner = 1
        for s in part.domain[1:]:
            inner *= s if isinstance(s, int) else 256
        widest = max(widest, inner)
    return max(1, min(256, ROW_TILE_ELEMENTS // widest))


MIN_VECTOR_TRIP = 16  # a shorter constant loop is not worth vectorizing (LLVM declines)


def _sums_over(kernel: Kernel, axis: int) -> bool:
    """Is `axis` the kernel's innermost loop, and does it carry a sum from one
    iteration to the next (so the loop must be allowed to reorder adds)?

    Short constant loops are left alone: LLVM would decline the request to
    vectorize them and print a warning."""
    size = kernel.domain[axis] if axis < len(kernel.domain) else 0
    if isinstance(size, int) and size < MIN_VECTOR_TRIP:
        return False
    return axis == len(kernel.domain) - 1 and any(
        item.mode == "reduce" and item.node.op == "reduce_sum" and axis in item.node.attr("axes")
        for item in kernel.items)


def _is_one(v: ir.Value) -> bool:
    return isinstance(v, ir.Constant) and v.constant == 1


def _declare(module: ir.Module, name: str, ret, args) -> ir.Function:
    if name in module.globals:
        return module.globals[name]
    return ir.Function(module, ir.FunctionType(ret, args), name)
