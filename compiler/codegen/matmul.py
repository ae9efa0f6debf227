"""Generated single-threaded GEMM in LLVM IR (BLIS/GotoBLAS structure).

    void name(i64 M, i64 N, i64 K, T* A, i64 rsa, i64 csa, T* B, i64 rsb,
              i64 csb, T* C, i64 ldc, i32 accumulate, T* pack)
    i64 name_pack_bytes(i64 M, i64 N, i64 K)

computes  C[i*ldc + j] (= or +=) sum_k A[i*rsa + k*csa] * B[k*rsb + j*csb]
(T = float for 'f32', double for 'f64'; accumulate != 0 adds into C, else C
is only written, never read; K = 0 gives C = 0 or leaves C).  A and B are
addressed through element strides, so a transposed operand is a stride swap
(dW = x^T g, dx = g W^T need no copies; zero strides and shared operands are
fine); C must not overlap A or B.  `pack` is caller-owned scratch of
name_pack_bytes(M, N, K) == gemm_pack_bytes(dtype, M, N, K) bytes, 64-byte
aligned (0 bytes, may be NULL, when M, N or K is 0).  No global state, no calls
outside the module: thread-safe with one pack per thread.

Why this shape (Goto / BLIS):
  for jc in N step NC:                  B block  kc x nc  (L3)
    for pc in K step KC:                pack B -> panels of NR columns
      for ic in M step MC:              pack A -> panels of MR rows (L2)
        for jr in nc step NR:           B micro-panel kc x NR stays in L1
          for ir in mc step MR:         micro-kernel: MR x NR accumulators
Packing makes the micro-kernel read two contiguous streams whatever the
strides are (row-major A and column-major B are transposed W x W blocks at a
time in registers), and zero-pads partial panels so the micro-kernel always
computes a full tile; only the write-back of edge tiles is masked.  The
micro-kernel keeps MR*NV vector accumulators (NV vectors of W lanes per row,
NR = NV*W) in registers: per k it loads NV vectors of B and, for each of MR
rows, broadcasts one element of A into NV fused multiply-adds.
When N is narrow (a 10-class output layer: 10 of 16 lanes used) the driver
runs the same nest on C^T = B^T A^T instead, with micro-kernels that
transpose their tile on the way out.
"""
from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from dataclasses import dataclass

import llvmlite.ir as ir

I1 = ir.IntType(1)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = ir.PointerType()
_FLOAT_TYPES = {"f32": (ir.FloatType(), 4), "f64": (ir.DoubleType(), 8)}
PACK_ALIGN = 64  # bytes; the caller aligns `pack` to this, we align sub-buffers


# --------------------------------------------------------------------------
# configuration: vector width from the host, block sizes from its caches
# --------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _host_features() -> dict:
    import llvmlite.binding as llvm
    return dict(llvm.get_host_cpu_features())


def host_vector_bits() -> int:
    """512 with AVX-512F, 256 with AVX2, else 128 (SSE2 is baseline x86-64)."""
    feats = _host_features()
    if feats.get("avx512f"):
        return 512
    if feats.get("avx2") and feats.get("fma"):
        return 256
    return 128


@functools.lru_cache(maxsize=None)
def _cache_bytes() -> tuple[int, int]:
    """(L1d, L2) sizes of cpu0 from sysfs; typical defaults if unreadable."""
    sizes = {1: 32 * 1024, 2: 1024 * 1024}
    root = "/sys/devices/system/cpu/cpu0/cache"
    try:
        entries = [d for d in os.listdir(root) if d.startswith("index")]
    except OSError:
        entries = []
    for idx in entries:
        try:
            with open(os.path.join(root, idx, "level")) as f:
                level = int(f.read())
            with open(os.path.join(root, idx, "type")) as f:
                kind = f.read().strip()
            with open(os.path.join(root, idx, "size")) as f:
                text = f.read().strip()
            size = int(text.rstrip("KM")) * {"K": 1024, "M": 1024 ** 2}.get(text[-1:], 1)
        except (OSError, ValueError):
            continue
        if level in sizes and kind in ("Data", "Unified"):
            sizes[level] = size
    return sizes[1], sizes[2]


@dataclass(frozen=True)
class GemmConfig:
    """Tile and block sizes of one generated kernel (all in elements)."""
    dtype: str
    vector_bits: int
    mr: int        # rows of the micro-tile (broadcast A elements)
    nv: int        # vectors per micro-tile row
    kc: int        # depth of a packed block (B micro-panel kc x nr sits in L1)
    mc: int        # rows of a packed A block (mc x kc sits in L2)
    nc: int        # columns of a packed B block
    ku: int = 4    # unroll of the micro-kernel k loop
    use_fma: bool = True  # llvm.fma (target has FMA) vs llvm.fmuladd
    orient: int = 0       # 0: pick C = AB or C^T = B^T A^T by cost; 1: AB; 2: B^T A^T

    @property
    def elem_bytes(self) -> int:
        return _FLOAT_TYPES[self.dtype][1]

    @property
    def lanes(self) -> int:
        return self.vector_bits // 8 // self.elem_bytes

    @property
    def nr(self) -> int:
        return self.nv * self.lanes


def gemm_config(dtype: str, vector_bits: int | None = None, **override) -> GemmConfig:
    """Pick MR x NR from the register file and KC/MC/NC from the caches."""
    if dtype not in _FLOAT_TYPES:
        raise ValueError(f"gemm: unsupported dtype {dtype!r} (want 'f32' or 'f64')")
    bits = host_vector_bits() if vector_bits is None else int(vector_bits)
    if bits not in (128, 256, 512):
        raise ValueError(f"gemm: vector_bits must be 128, 256 or 512, not {bits}")
    size = _FLOAT_TYPES[dtype][1]
    # 32 zmm: 10x2 accumulators + 2 B vectors + 1 broadcast (12x2 and 8x3 fit
    # too and run the square shapes as fast, but MR = 10 also fits the
    # transposed [10 x 256] products of a 10-class output layer exactly);
    # 16 xmm/ymm: 6x2 accumulators + 2 B vectors + 1 broadcast.
    mr, nv = (10, 2) if bits == 512 else (6, 2)
    mr, nv = override.pop("mr", mr), override.pop("nv", nv)
    nr = nv * bits // 8 // size
    l1, l2 = _cache_bytes()
    # B micro-panel (kc x nr) takes about half of L1, the rest streams A.
    kc = max(16, min(512, (l1 // 2) // (nr * size)) // 8 * 8)
    # packed A block (mc x kc) takes about half of L2.
    mc = max(mr, (l2 // 2) // (kc * size) // mr * mr)
    nc = 4096 // nr * nr
    # llvm.fma without hardware FMA becomes a call to libm's fma(): only 128-bit
    # (generic x86-64) builds and FMA-less hosts use llvm.fmuladd instead
    use_fma = bits >= 256 and bool(_host_features().get("fma"))
    cfg = dict(dtype=dtype, vector_bits=bits, mr=mr, nv=nv, kc=kc, mc=mc, nc=nc,
               use_fma=use_fma)
    cfg.update(override)
    return GemmConfig(**cfg)


# --------------------------------------------------------------------------
# pack-buffer size: one formula, evaluated in Python and emitted in IR
# --------------------------------------------------------------------------

class _PyInt:
    """Integer ops on Python ints (mirrors _IrInt)."""
    def const(self, v): return v
    def add(self, a, b): return a + b
    def sub(self, a, b): return a - b
    def mul(self, a, b): return a * b
    def div(self, a, b): return a // b          # operands are non-negative
    def min(self, a, b): return min(a, b)
    def max(self, a, b): return max(a, b)
    def select_pos(self, c, a, b): return a if c > 0 else b


class _IrInt:
    """The same ops on i64 SSA values."""
    def __init__(self, b: ir.IRBuilder):
        self.b = b
    def const(self, v): return ir.Constant(I64, v)
    def add(self, a, b): return self.b.add(a, b, flags=["nsw"])
    def sub(self, a, b): return self.b.sub(a, b, flags=["nsw"])
    def mul(self, a, b): return self.b.mul(a, b, flags=["nsw"])
    def div(self, a, b): return self.b.sdiv(a, b)
    def min(self, a, b): return self.b.select(self.b.icmp_signed("<", a, b), a, b)
    def max(self, a, b): return self.b.select(self.b.icmp_signed(">", a, b), a, b)
    def select_pos(self, c, a, b):
        return self.b.select(self.b.icmp_signed(">", c, self.const(0)), a, b)


def _blocking(o, cfg: GemmConfig, M, N, K):
    """Block sizes actually used for a call; balanced so no tiny last block.

    kcb = min(roundup(ceil(K / ceil(K/KC)), W), K),
    mcb = roundup(ceil(M / ceil(M/MC)), MR),
    ncp = min(roundup(N, NR), NC);  B pack is kcb x ncp, A pack is mcb x kcb.
    Callers guarantee M, N, K >= 1 (otherwise the divisions are guarded).
    """
    c = o.const
    one = c(1)

    def cdiv(a, b):
        return o.div(o.add(a, o.sub(b, one)), b)

    def roundup(a, m):
        return o.mul(cdiv(a, m), m)

    # a multiple of W unless K is smaller, so the packs' transposes have no k tail
    kcb = o.min(roundup(cdiv(K, cdiv(K, c(cfg.kc))), c(cfg.lanes)), K)
    mcb = roundup(cdiv(M, cdiv(M, c(cfg.mc))), c(cfg.mr))
    ncp = o.min(roundup(N, c(cfg.nr)), c(cfg.nc))
    return kcb, mcb, ncp


def _pack_a_offset(o, cfg: GemmConfig, M, N, K):
    """Element offset of the A pack: after the B pack, rounded up to 64 bytes."""
    kcb, mcb, ncp = _blocking(o, cfg, M, N, K)
    c = o.const
    b_bytes = o.mul(o.mul(kcb, ncp), c(cfg.elem_bytes))
    a_off = o.mul(o.div(o.add(b_bytes, c(PACK_ALIGN - 1)), c(PACK_ALIGN)), c(PACK_ALIGN))
    return o.div(a_off, c(cfg.elem_bytes))


def _pack_bytes(o, cfg: GemmConfig, M, N, K):
    """Bytes for B pack + A pack, the larger of C = AB and C^T = B^T A^T."""
    def one(M, N):
        kcb, mcb, _ = _blocking(o, cfg, M, N, K)
        a_elems = o.add(_pack_a_offset(o, cfg, M, N, K), o.mul(mcb, kcb))
        return o.mul(a_elems, o.const(cfg.elem_bytes))
    return o.max(one(M, N), one(N, M))


def gemm_pack_bytes(dtype: str, M: int, N: int, K: int, vector_bits: int | None = None,
                    **override) -> int:
    """Bytes of `pack` scratch the kernel emitted with the same arguments needs."""
    if min(M, N, K) <= 0:
        return 0
    cfg = gemm_config(dtype, vector_bits, **override)
    return _pack_bytes(_PyInt(), cfg, M, N, K)


# --------------------------------------------------------------------------
# IR helpers
# --------------------------------------------------------------------------

def _i64(v):
    return ir.Constant(I64, v)


@contextmanager
def _for_range(b: ir.IRBuilder, start, stop, step, name: str, at_least_once=False):
    """for (i = start; i < stop; i += step), blocks name.cond/body/end.

    at_least_once emits a do-while (the caller knows start < stop): the body
    then cannot be unswitched away, which keeps zero-padding loops from being
    rewritten into calls to memset.
    """
    pre = b.block
    cond = None if at_least_once else b.append_basic_block(f"{name}.cond")
    body = b.append_basic_block(f"{name}.body")
    end = b.append_basic_block(f"{name}.end")
    b.branch(body if at_least_once else cond)
    b.position_at_end(body if at_least_once else cond)
    i = b.phi(I64, name=name)
    i.add_incoming(start, pre)
    if not at_least_once:
        b.cbranch(b.icmp_signed("<", i, stop), body, end)
        b.position_at_end(body)
    yield i
    nxt = b.add(i, step, flags=["nsw"])
    i.add_incoming(nxt, b.block)
    if at_least_once:
        b.cbranch(b.icmp_signed("<", nxt, stop), body, end)
    else:
        b.branch(cond)
    b.position_at_end(end)


class _Emit:
    """Per-kernel emission context: types and intrinsic declarations."""

    def __init__(self, module: ir.Module, cfg: GemmConfig):
        self.m = module
        self.cfg = cfg
        self.T, _ = _FLOAT_TYPES[cfg.dtype]
        self.W = cfg.lanes
        self.V = ir.VectorType(self.T, self.W)
        self.MV = ir.VectorType(I1, self.W)
        self.VI = ir.VectorType(I64, self.W)
        self.iota = ir.Constant(self.VI, list(range(self.W)))
        self.vzero = ir.Constant(self.V, [0.0] * self.W)
        sfx = f"v{self.W}{cfg.dtype}"  # v16f32, v8f64, ...
        fma = "llvm.fma" if cfg.use_fma else "llvm.fmuladd"
        self.fma = self._intrinsic(f"{fma}.{sfx}", self.V, [self.V] * 3)
        self.mload = self._intrinsic(f"llvm.masked.load.{sfx}.p0", self.V,
                                     [PTR, self.MV, self.V])
        self.mstore = self._intrinsic(f"llvm.masked.store.{sfx}.p0", ir.VoidType(),
                                      [self.V, PTR, self.MV])

    def _intrinsic(self, name, ret, args):
        if name in self.m.globals:
            return self.m.globals[name]
        return ir.Function(self.m, ir.FunctionType(ret, args), name)

    def internal_fn(self, name, args, ret=ir.VoidType()):
        fn = ir.Function(self.m, ir.FunctionType(ret, args), name)
        fn.linkage = "internal"
        fn.attributes.add("nounwind")
        return fn

    # typed memory access (opaque pointers: the element type is explicit)
    def gep(self, b, p, idx, ty=None):
        return b.gep(p, [idx], inbounds=True, source_etype=ty or self.T)

    def load(self, b, p, idx=None):
        return b.load(p if idx is None else self.gep(b, p, idx), typ=self.T,
                      align=self.cfg.elem_bytes)

    def store(self, b, v, p, idx=None):
        b.store(v, p if idx is None else self.gep(b, p, idx), align=self.cfg.elem_bytes)

    def vload(self, b, p, align=None):
        return b.load(p, typ=self.V, align=align or self.cfg.elem_bytes)

    def vstore(self, b, v, p, align=None):
        b.store(v, p, align=align or self.cfg.elem_bytes)

    def masked_load(self, b, p, mask):
        call = b.call(self.mload, [p, mask, self.vzero])
        call.arg_attributes[0] = ir.values.ArgumentAttributes()
        call.arg_attributes[0].align = self.cfg.elem_bytes
        return call

    def masked_store(self, b, v, p, mask):
        call = b.call(self.mstore, [v, p, mask])
        call.arg_attributes[1] = ir.values.ArgumentAttributes()
        call.arg_attributes[1].align = self.cfg.elem_bytes

    def splat(self, b, s, ty=None):
        ty = ty or self.V
        n = ty.count
        v = b.insert_element(ir.Constant(ty, ir.Undefined), s, ir.Constant(I32, 0))
        return b.shuffle_vector(v, ir.Constant(ty, ir.Undefined),
                                ir.Constant(ir.VectorType(I32, n), [0] * n))

    def transpose(self, b, rows):
        """W x W in-register transpose: out[k][r] = rows[r][k] (W a power of 2).

        log2(W) butterfly stages; stage h swaps the off-diagonal h x h blocks
        of every 2h x 2h block. Undefined rows (missing A rows) fold away.
        """
        W = self.W
        rows = list(rows)
        h = W // 2
        while h:
            out = list(rows)
            for i in range(W):
                if i & h:
                    continue
                lo, hi = rows[i], rows[i + h]
                # lane l of the pair's first result: (l & h) ? hi[l-h] : lo[l]
                m0 = [l if not l & h else W + l - h for l in range(W)]
                # second result:                       (l & h) ? hi[l] : lo[l+h]
                m1 = [l + h if not l & h else W + l for l in range(W)]
                out[i] = b.shuffle_vector(lo, hi, ir.Constant(ir.VectorType(I32, W), m0))
                out[i + h] = b.shuffle_vector(lo, hi, ir.Constant(ir.VectorType(I32, W), m1))
            rows = out
            h //= 2
        return rows

    def prefix(self, b, v, count: int):
        """Lanes 0..count-1 of vector v as a <count x T> vector."""
        if count == self.W:
            return v
        return b.shuffle_vector(v, ir.Constant(self.V, ir.Undefined),
                                ir.Constant(ir.VectorType(I32, count), list(range(count))))

    def store_prefix(self, b, v, p, count: int):
        """Store lanes 0..count-1 of vector v at p."""
        b.store(self.prefix(b, v, count), p, align=self.cfg.elem_bytes)

    def load_w(self, b, p, rem=None):
        """W elements at p, or (rem given) only the first rem, the rest zero."""
        if rem is None:
            return self.vload(b, p)
        return self.masked_load(b, p, self.lane_mask(b, 0, rem))

    def guard(self, b, i: int, rem, exit_block):
        """Continue only if i < rem (no-op when rem is None or i == 0)."""
        if rem is None or i == 0:
            return
        nxt = b.append_basic_block(f"guard{i}")
        b.cbranch(b.icmp_signed("<", _i64(i), rem), nxt, exit_block)
        b.position_at_end(nxt)

    def lane_mask(self, b, first: int, count):
        """<W x i1>: lane l is on iff first + l < count."""
        lanes = ir.Constant(self.VI, [first + l for l in range(self.W)])
        return b.icmp_signed("<", lanes, self.splat(b, count, self.VI))


# --------------------------------------------------------------------------
# micro-kernel
# --------------------------------------------------------------------------

def _emit_ukernel(e: _Emit, name: str, nv: int, tc: bool) -> ir.Function:
    """C[0:mr, 0:nr] (+)= sum_k Ap[k*MR + i] * Bp[k*NR + j] for one micro-tile.

    The k loop carries MR*nv vector accumulators as phis (unrolled ku times,
    then a remainder loop); nv < NV variants serve narrow right-edge panels
    (N = 10 uses one vector instead of wasting NV-1 zero columns). With tc the
    tile is written transposed (C^T = B^T A^T when the driver swaps operands).
    """
    cfg = e.cfg
    MR, NR, W = cfg.mr, cfg.nr, e.W
    valign = W * cfg.elem_bytes  # B panel rows are NR elements from a 64-aligned base
    fn = e.internal_fn(name, [I64, PTR, PTR, PTR, I64, I64, I64, I1])
    fn.attributes.add("noinline")
    kc, pa, pb, pcc, ldc, mr, nr, beta = fn.args
    for a, nm in zip(fn.args, ("kc", "a", "b", "c", "ldc", "mr", "nr", "beta")):
        a.name = nm
    b = ir.IRBuilder(fn.append_basic_block("entry"))

    def kstep(pa, pb, acc, u):
        bv = [e.vload(b, e.gep(b, pb, _i64(u * NR + v * W)), valign) for v in range(nv)]
        out = []
        for r in range(MR):
            a = e.splat(b, e.load(b, pa, _i64(u * MR + r)))
            # acc[r][v] = fma(A[k, r] broadcast, B[k, v*W : v*W+W], acc[r][v])
            out.append([b.call(e.fma, [a, bv[v], acc[r][v]]) for v in range(nv)])
        return out

    def kloop(count, pa, pb, acc, unroll, tag):
        pre = b.block
        head = b.append_basic_block(f"{tag}.cond")
        body = b.append_basic_block(f"{tag}.body")
        end = b.append_basic_block(f"{tag}.end")
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64, name=f"{tag}.i")
        pa_phi = b.phi(PTR, name=f"{tag}.pa")
        pb_phi = b.phi(PTR, name=f"{tag}.pb")
        acc_phi = [[b.phi(e.V, name=f"{tag}.acc{r}_{v}") for v in range(nv)] for r in range(MR)]
        for phi, val in [(i, _i64(0)), (pa_phi, pa), (pb_phi, pb)] + [
                (acc_phi[r][v], acc[r][v]) for r in range(MR) for v in range(nv)]:
            phi.add_incoming(val, pre)
        b.cbranch(b.icmp_signed("<", i, count), body, end)
        b.position_at_end(body)
        cur = acc_phi
        for u in range(unroll):
            cur = kstep(pa_phi, pb_phi, cur, u)
        latch = b.block
        i.add_incoming(b.add(i, _i64(1), flags=["nsw"]), latch)
        pa_phi.add_incoming(e.gep(b, pa_phi, _i64(unroll * MR)), latch)
        pb_phi.add_incoming(e.gep(b, pb_phi, _i64(unroll * NR)), latch)
        for r in range(MR):
            for v in range(nv):
                acc_phi[r][v].add_incoming(cur[r][v], latch)
        b.branch(head)
        b.position_at_end(end)
        return pa_phi, pb_phi, acc_phi

    acc = [[e.vzero] * nv for _ in range(MR)]
    ku = cfg.ku
    nmain = b.sdiv(kc, _i64(ku))
    rem = b.sub(kc, b.mul(nmain, _i64(ku)))
    pa, pb, acc = kloop(nmain, pa, pb, acc, ku, "kmain")
    _, _, acc = kloop(rem, pa, pb, acc, 1, "krem")

    if tc:
        _writeback_transposed(e, b, acc, nv, pcc, ldc, mr, nr, beta)
    else:
        _writeback(e, b, acc, nv, pcc, ldc, mr, nr, beta)
    return fn


def _writeback(e: _Emit, b, acc, nv, c, ldc, mr, nr, beta):
    """C[r*ldc + v*W + l] (+)= acc[r][v][l]: full tiles plain, edges masked."""
    MR, W = e.cfg.mr, e.W
    full = b.and_(b.icmp_signed("==", mr, _i64(MR)), b.icmp_signed("==", nr, _i64(nv * W)))
    rows = [e.gep(b, c, b.mul(ldc, _i64(r))) for r in range(MR)]
    bb_full = b.append_basic_block("wb.full")
    bb_part = b.append_basic_block("wb.part")
    b.cbranch(full, bb_full, bb_part)

    b.position_at_end(bb_full)
    bb_add = b.append_basic_block("wb.full.add")
    bb_set = b.append_basic_block("wb.full.set")
    b.cbranch(beta, bb_add, bb_set)
    b.position_at_end(bb_add)
    for r in range(MR):
        for v in range(nv):
            p = e.gep(b, rows[r], _i64(v * W))
            e.vstore(b, b.fadd(e.vload(b, p), acc[r][v]), p)
    b.ret_void()
    b.position_at_end(bb_set)
    for r in range(MR):
        for v in range(nv):
            e.vstore(b, acc[r][v], e.gep(b, rows[r], _i64(v * W)))
    b.ret_void()

    b.position_at_end(bb_part)
    masks = [e.lane_mask(b, v * W, nr) for v in range(nv)]
    bsplat = e.splat(b, beta, ir.VectorType(I1, W))
    lmasks = [b.and_(m, bsplat) for m in masks]  # beta=0: C is never read
    done = b.append_basic_block("wb.part.done")
    for r in range(MR):
        if r:
            nxt = b.append_basic_block(f"wb.part.row{r}")
            b.cbranch(b.icmp_signed("<", _i64(r), mr), nxt, done)
            b.position_at_end(nxt)
        for v in range(nv):
            p = e.gep(b, rows[r], _i64(v * W))
            old = e.masked_load(b, p, lmasks[v])
            e.masked_store(b, b.fadd(old, acc[r][v]), p, masks[v])
    b.branch(done)
    b.position_at_end(done)
    b.ret_void()


def _writeback_transposed(e: _Emit, b, acc, nv, c, ldc, mr, nr, beta):
    """C[(v*W + l)*ldc + r] (+)= acc[r][v][l]  (the tile of C^T, for swapped operands).

    Groups of W accumulator rows are transposed in registers so each store
    writes up to W consecutive elements of one row of C.
    """
    MR, W = e.cfg.mr, e.W
    undef = ir.Constant(e.V, ir.Undefined)
    groups = []  # (r0, cnt, [transposed vector per v])
    for r0 in range(0, MR, W):
        cnt = min(W, MR - r0)
        groups.append((r0, cnt, [e.transpose(b, [acc[r0 + r][v] if r < cnt else undef
                                                  for r in range(W)]) for v in range(nv)]))
    full = b.and_(b.icmp_signed("==", mr, _i64(MR)), b.icmp_signed("==", nr, _i64(nv * W)))
    bb_full = b.append_basic_block("wbt.full")
    bb_part = b.append_basic_block("wbt.part")
    b.cbranch(full, bb_full, bb_part)

    b.position_at_end(bb_full)
    bb_add = b.append_basic_block("wbt.full.add")
    bb_set = b.append_basic_block("wbt.full.set")
    b.cbranch(beta, bb_add, bb_set)
    for blk, with_c in ((bb_add, True), (bb_set, False)):
        b.position_at_end(blk)
        for r0, cnt, tv in groups:
            VC = ir.VectorType(e.T, cnt)
            for v in range(nv):
                for l in range(W):
                    p = e.gep(b, c, b.add(b.mul(ldc, _i64(v * W + l)), _i64(r0)))
                    x = e.prefix(b, tv[v][l], cnt)
                    if with_c:
                        x = b.fadd(b.load(p, typ=VC, align=e.cfg.elem_bytes), x)
                    b.store(x, p, align=e.cfg.elem_bytes)
        b.ret_void()

    b.position_at_end(bb_part)
    done = b.append_basic_block("wbt.part.done")
    bsplat = e.splat(b, beta, ir.VectorType(I1, W))
    for r0, cnt, tv in groups:
        smask = e.lane_mask(b, r0, mr)       # lanes are rows r0 + lane of the tile
        lmask = b.and_(smask, bsplat)
        gend = b.append_basic_block(f"wbt.part.g{r0}.end")
        if r0:  # rows r0.. exist at all? (keeps every address in bounds)
            gbody = b.append_basic_block(f"wbt.part.g{r0}")
            b.cbranch(b.icmp_signed("<", _i64(r0), mr), gbody, gend)
            b.position_at_end(gbody)
        for v in range(nv):
            for l in range(W):
                if v or l:  # column v*W + l of the tile exists?
                    nxt = b.append_basic_block(f"wbt.part.g{r0}.c{v * W + l}")
                    b.cbranch(b.icmp_signed("<", _i64(v * W + l), nr), nxt, gend)
                    b.position_at_end(nxt)
                p = e.gep(b, c, b.add(b.mul(ldc, _i64(v * W + l)), _i64(r0)))
                old = e.masked_load(b, p, lmask)
                e.masked_store(b, b.fadd(old, tv[v][l]), p, smask)
        b.branch(gend)
        b.position_at_end(gend)
    b.branch(done)
    b.position_at_end(done)
    b.ret_void()


# --------------------------------------------------------------------------
# packing
# --------------------------------------------------------------------------

def _min(b, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)


def _emit_pack_b(e: _Emit, name: str) -> ir.Function:
    """dst[(j/NR)*kc*NR + k*NR + j%NR] = B[k, j] for k < kc, j < nc, zero-padded."""
    cfg = e.cfg
    NR, W, NV = cfg.nr, e.W, cfg.nv
    valign = W * cfg.elem_bytes
    fn = e.internal_fn(name, [I64, I64, PTR, I64, I64, PTR])
    fn.attributes.add("noinline")
    kc, nc, src, rs, cs, dst = fn.args
    for a, nm in zip(fn.args, ("kc", "nc", "src", "rs", "cs", "dst")):
        a.name = nm
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    kw = b.mul(b.sdiv(kc, _i64(W)), _i64(W))  # k rows handled by W x W transposes
    with _for_range(b, _i64(0), nc, _i64(NR), "jr") as jr:
        nr = _min(b, b.sub(nc, jr), _i64(NR))
        s = e.gep(b, src, b.mul(jr, cs))
        d = e.gep(b, dst, b.mul(jr, kc))
        whole = b.icmp_signed("==", nr, _i64(NR))
        rowmajor = b.and_(whole, b.icmp_signed("==", cs, _i64(1)))
        colmajor = b.and_(whole, b.icmp_signed("==", rs, _i64(1)))
        general = b.append_basic_block("general")
        done = b.append_basic_block("done")
        bb_row = b.append_basic_block("rowmajor")
        bb_t = b.append_basic_block("colmajor")
        bb_nrow = b.append_basic_block("not.rowmajor")
        b.cbranch(rowmajor, bb_row, bb_nrow)
        b.position_at_end(bb_nrow)
        b.cbranch(colmajor, bb_t, general)

        b.position_at_end(bb_row)  # B[k, jr:jr+NR] contiguous: vector copies
        with _for_range(b, _i64(0), kc, _i64(1), "k") as k:
            row = e.gep(b, s, b.mul(k, rs))
            drow = e.gep(b, d, b.mul(k, _i64(NR)))
            for v in range(NV):
                e.vstore(b, e.vload(b, e.gep(b, row, _i64(v * W))),
                         e.gep(b, drow, _i64(v * W)), valign)
        b.branch(done)

        b.position_at_end(bb_t)  # B[k:k+W, j] contiguous: load columns, transpose
        cols = [e.gep(b, s, b.mul(cs, _i64(j))) for j in range(NR)]

        def block(k, rem):
            """Rows k..k+W of the panel (only rem < W of them at the k tail)."""
            ts = [e.transpose(b, [e.load_w(b, e.gep(b, cols[v * W + j], k), rem)
                                  for j in range(W)]) for v in range(NV)]
            for kk in range(W):
                e.guard(b, kk, rem, done)
                drow = e.gep(b, d, b.mul(b.add(k, _i64(kk)), _i64(NR)))
                for v in range(NV):
                    e.vstore(b, ts[v][kk], e.gep(b, drow, _i64(v * W)), valign)

        with _for_range(b, _i64(0), kw, _i64(W), "kt") as k:
            block(k, None)
        with b.if_then(b.icmp_signed("<", kw, kc)):
            block(kw, b.sub(kc, kw))
        b.branch(done)

        b.position_at_end(general)  # any strides, edge panels: scalar
        with _for_range(b, _i64(0), kc, _i64(1), "kg") as k:
            row = e.gep(b, s, b.mul(k, rs))
            drow = e.gep(b, d, b.mul(k, _i64(NR)))
            # zero the whole row first (vector stores: a zero-store loop would
            # become a call to memset), then copy the nr real columns
            for v in range(NV):
                e.vstore(b, e.vzero, e.gep(b, drow, _i64(v * W)), valign)
            with _for_range(b, _i64(0), nr, _i64(1), "j", at_least_once=True) as j:
                e.store(b, e.load(b, row, b.mul(j, cs)), drow, j)
        b.branch(done)
        b.position_at_end(done)
    b.ret_void()
    return fn


def _emit_pack_a(e: _Emit, name: str) -> ir.Function:
    """dst[(i/MR)*kc*MR + k*MR + i%MR] = A[i, k] for i < mc, k < kc, zero-padded."""
    cfg = e.cfg
    MR, W = cfg.mr, e.W
    VM = ir.VectorType(e.T, MR)
    undef = ir.Constant(e.V, ir.Undefined)
    fn = e.internal_fn(name, [I64, I64, PTR, I64, I64, PTR])
    fn.attributes.add("noinline")
    mc, kc, src, rs, cs, dst = fn.args
    for a, nm in zip(fn.args, ("mc", "kc", "src", "rs", "cs", "dst")):
        a.name = nm
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    kw = b.mul(b.sdiv(kc, _i64(W)), _i64(W))  # k columns handled by transposes
    with _for_range(b, _i64(0), mc, _i64(MR), "ir") as i0:
        mr = _min(b, b.sub(mc, i0), _i64(MR))
        s = e.gep(b, src, b.mul(i0, rs))
        d = e.gep(b, dst, b.mul(i0, kc))
        whole = b.icmp_signed("==", mr, _i64(MR))
        colmajor = b.and_(whole, b.icmp_signed("==", rs, _i64(1)))
        rowmajor = b.and_(whole, b.icmp_signed("==", cs, _i64(1)))
        bb_col = b.append_basic_block("colmajor")
        bb_ncol = b.append_basic_block("not.colmajor")
        bb_nrow = b.append_basic_block("not.rowmajor")
        bb_row = b.append_basic_block("rowmajor")
        bb_whole = b.append_basic_block("whole")
        bb_edge = b.append_basic_block("edge")
        done = b.append_basic_block("done")
        b.cbranch(colmajor, bb_col, bb_ncol)
        b.position_at_end(bb_ncol)
        b.cbranch(rowmajor, bb_row, bb_nrow)
        b.position_at_end(bb_nrow)
        b.cbranch(whole, bb_whole, bb_edge)

        b.position_at_end(bb_col)  # A[i:i+MR, k] contiguous: one MR-vector per k
        with _for_range(b, _i64(0), kc, _i64(1), "kc") as k:
            x = b.load(e.gep(b, s, b.mul(k, cs)), typ=VM, align=cfg.elem_bytes)
            b.store(x, e.gep(b, d, b.mul(k, _i64(MR))), align=cfg.elem_bytes)
        b.branch(done)

        # A[i, k:k+W] contiguous (row-major A, the common case): load W-wide row
        # pieces of W rows at a time, transpose, store the first MR lanes per k
        b.position_at_end(bb_row)
        rowp = [e.gep(b, s, b.mul(rs, _i64(r))) for r in range(MR)]
        groups = [(r0, min(W, MR - r0)) for r0 in range(0, MR, W)]

        def block(k, rem):
            """Columns k..k+W of the panel (only rem < W of them at the k tail)."""
            ts = [e.transpose(b, [e.load_w(b, e.gep(b, rowp[r0 + r], k), rem) if r < cnt
                                  else undef for r in range(W)]) for r0, cnt in groups]
            for kk in range(W):
                e.guard(b, kk, rem, done)
                drow = e.gep(b, d, b.mul(b.add(k, _i64(kk)), _i64(MR)))
                for (r0, cnt), t in zip(groups, ts):
                    e.store_prefix(b, t[kk], e.gep(b, drow, _i64(r0)), cnt)

        with _for_range(b, _i64(0), kw, _i64(W), "kt") as k:
            block(k, None)
        with b.if_then(b.icmp_signed("<", kw, kc)):
            block(kw, b.sub(kc, kw))
        b.branch(done)

        b.position_at_end(bb_whole)  # arbitrary strides: scalar, rows unrolled
        rowp = [e.gep(b, s, b.mul(rs, _i64(r))) for r in range(MR)]
        with _for_range(b, _i64(0), kc, _i64(1), "kw") as k:
            off = b.mul(k, cs)
            drow = e.gep(b, d, b.mul(k, _i64(MR)))
            for r in range(MR):
                e.store(b, e.load(b, rowp[r], off), drow, _i64(r))
        b.branch(done)

        b.position_at_end(bb_edge)  # the last mr < MR rows: scalar, zero-padded
        with _for_range(b, _i64(0), kc, _i64(1), "ke") as k:
            col = e.gep(b, s, b.mul(k, cs))
            drow = e.gep(b, d, b.mul(k, _i64(MR)))
            b.store(ir.Constant(VM, [0.0] * MR), drow, align=cfg.elem_bytes)  # pad rows
            with _for_range(b, _i64(0), mr, _i64(1), "i", at_least_once=True) as i:
                e.store(b, e.load(b, col, b.mul(i, rs)), drow, i)
        b.branch(done)
        b.position_at_end(done)
    b.ret_void()
    return fn


# --------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------

def _kernel_cost(o, cfg: GemmConfig, M, N, K, transposed: bool):
    """Estimated cycles (x6) of the micro-kernels for an M x N x K problem.

    Per k step a tile with nv vectors costs max(MR*nv/2 FMA cycles, (MR+nv)/1.5
    load cycles) (the narrow nv=1 tile is load-bound); per tile the write-back
    costs ~MR*nv cycles, and a transposed one adds W*log2(W) shuffles per group.
    """
    MR, NR, NV, W = cfg.mr, cfg.nr, cfg.nv, cfg.lanes
    groups = -(-MR // W)

    def tile(nv):
        if nv == 0:
            return o.const(0)
        per_k = max(3 * MR * nv, 4 * (MR + nv))
        wb = 6 * MR * nv + (6 * nv * groups * W * (W.bit_length() - 1) if transposed else 0)
        return o.add(o.mul(K, o.const(per_k)), o.const(wb))

    c = o.const
    tail_nv = o.div(o.add(o.sub(N, o.mul(o.div(N, c(NR)), c(NR))), c(W - 1)), c(W))
    tail = tile(0)
    for nv in range(1, NV + 1):  # cost of the last, partial panel
        tail = o.select_pos(o.sub(tail_nv, c(nv - 1)), tile(nv), tail)
    per_row_panel = o.add(o.mul(o.div(N, c(NR)), tile(NV)), tail)
    return o.mul(o.div(o.add(M, c(MR - 1)), c(MR)), per_row_panel)


def _emit_pack_bytes(module, name, linkage, cfg):
    """i64 name_pack_bytes(M, N, K): the same formula as gemm_pack_bytes."""
    fn = ir.Function(module, ir.FunctionType(I64, [I64, I64, I64]), f"{name}_pack_bytes")
    fn.linkage = linkage
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    M, N, K = fn.args
    for a, nm in zip(fn.args, "MNK"):
        a.name = nm
    small = b.icmp_signed("<=", _min(b, _min(b, M, N), K), _i64(0))
    with b.if_then(small, likely=False):
        b.ret(_i64(0))
    b.ret(_pack_bytes(_IrInt(b), cfg, M, N, K))
    return fn


def emit_gemm(module: ir.Module, name: str, dtype: str, vector_bits: int | None = None,
              linkage: str = "external", **override) -> ir.Function:
    """Emit `name` (the GEMM above) and `name_pack_bytes`; return the GEMM.

    vector_bits defaults to the host (512 AVX-512F, 256 AVX2, 128 SSE2);
    `override` replaces GemmConfig fields (mr, nv, kc, mc, nc, ku, orient) for
    tuning and tests; gemm_pack_bytes must then get the same overrides.
    """
    cfg = gemm_config(dtype, vector_bits, **override)
    e = _Emit(module, cfg)
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [
        I64, I64, I64, PTR, I64, I64, PTR, I64, I64, PTR, I64, I32, PTR]), name)
    fn.linkage = linkage
    fn.attributes.add("nounwind")
    names = ("M", "N", "K", "A", "rsa", "csa", "B", "rsb", "csb", "C", "ldc", "accumulate", "pack")
    for a, nm in zip(fn.args, names):
        a.name = nm
    M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate, pack = fn.args
    _emit_pack_bytes(module, name, linkage, cfg)

    pack_a = _emit_pack_a(e, f"{name}.pack_a")
    pack_b = _emit_pack_b(e, f"{name}.pack_b")
    ukernels = {(nv, tc): _emit_ukernel(e, f"{name}.ukernel{nv}{'t' if tc else ''}", nv, tc)
                for tc in (False, True) for nv in range(1, cfg.nv + 1)}

    b = ir.IRBuilder(fn.append_basic_block("entry"))
    empty = b.or_(b.icmp_signed("<=", M, _i64(0)), b.icmp_signed("<=", N, _i64(0)))
    with b.if_then(empty, likely=False):
        b.ret_void()
    acc = b.icmp_signed("!=", accumulate, ir.Constant(I32, 0))
    with b.if_then(b.icmp_signed("<=", K, _i64(0)), likely=False):
        # empty sum: C = 0 (overwrite) or unchanged (accumulate)
        with b.if_then(b.not_(acc)):
            with _for_range(b, _i64(0), M, _i64(1), "zi") as i:
                row = e.gep(b, C, b.mul(i, ldc))
                # masked vector stores, not a scalar loop LLVM would turn into memset
                with _for_range(b, _i64(0), N, _i64(e.W), "zj") as j:
                    e.masked_store(b, e.vzero, e.gep(b, row, j),
                                   b.icmp_signed("<", b.add(e.splat(b, j, e.VI), e.iota),
                                                 e.splat(b, N, e.VI)))
        b.ret_void()

    # C = A B, or C^T = B^T A^T when the transposed problem tiles better
    # (N = 10 wastes 6 of 16 lanes per row, M = 256 wastes none).
    o = _IrInt(b)
    if cfg.orient == 0:
        swap = b.icmp_signed("<", o.mul(_kernel_cost(o, cfg, N, M, K, True), _i64(8)),
                             o.mul(_kernel_cost(o, cfg, M, N, K, False), _i64(7)))
    else:
        swap = ir.Constant(I1, int(cfg.orient == 2))
    one = _i64(1)
    with b.if_else(swap) as (swapped, normal):
        with normal:
            _emit_nest(e, b, (pack_a, pack_b, ukernels, False), M, N, K, A, rsa, csa,
                       B, rsb, csb, C, ldc, one, acc, pack)
        with swapped:
            _emit_nest(e, b, (pack_a, pack_b, ukernels, True), N, M, K, B, csb, rsb,
                       A, csa, rsa, C, one, ldc, acc, pack)
    b.ret_void()
    return fn


def _emit_nest(e: _Emit, b, fns, M, N, K, A, rsa, csa, B, rsb, csb, C, rsc, csc, acc, pack):
    """The five-loop nest for C[i*rsc + j*csc] (+)= sum_k A[i, k] B[k, j]."""
    pack_a, pack_b, ukernels, tc = fns
    cfg, o = e.cfg, _IrInt(b)
    NV, NR, MR, W = cfg.nv, cfg.nr, cfg.mr, e.W
    kcb, mcb, _ = _blocking(o, cfg, M, N, K)
    Bp = pack
    Ap = e.gep(b, pack, _pack_a_offset(o, cfg, M, N, K))
    ldt = csc if tc else rsc  # the stride the micro-kernel steps rows of its tile by
    with _for_range(b, _i64(0), N, _i64(cfg.nc), "jc") as jc:
        nc = o.min(o.sub(N, jc), _i64(cfg.nc))
        with _for_range(b, _i64(0), K, kcb, "pc") as pc:
            kc = o.min(o.sub(K, pc), kcb)
            beta = b.or_(acc, b.icmp_signed(">", pc, _i64(0)))  # later K blocks add
            b.call(pack_b, [kc, nc, e.gep(b, B, o.add(o.mul(pc, rsb), o.mul(jc, csb))),
                            rsb, csb, Bp])
            with _for_range(b, _i64(0), M, mcb, "ic") as ic:
                mc = o.min(o.sub(M, ic), mcb)
                b.call(pack_a, [mc, kc, e.gep(b, A, o.add(o.mul(ic, rsa), o.mul(pc, csa))),
                                rsa, csa, Ap])
                cblk = e.gep(b, C, o.add(o.mul(ic, rsc), o.mul(jc, csc)))
                with _for_range(b, _i64(0), nc, _i64(NR), "jr") as jr:
                    nr = o.min(o.sub(nc, jr), _i64(NR))
                    bpanel = e.gep(b, Bp, o.mul(jr, kc))
                    cpanel = e.gep(b, cblk, o.mul(jr, csc))
                    nvec = b.sdiv(b.add(nr, _i64(W - 1)), _i64(W))
                    after = b.append_basic_block("nv.end")
                    sw = b.switch(nvec, after)
                    for nv in range(1, NV + 1):
                        case = b.append_basic_block(f"nv{nv}")
                        sw.add_case(_i64(nv), case)
                        b.position_at_end(case)
                        with _for_range(b, _i64(0), mc, _i64(MR), f"ir{nv}") as ir_:
                            mr = o.min(o.sub(mc, ir_), _i64(MR))
                            b.call(ukernels[nv, tc], [
                                kc, e.gep(b, Ap, o.mul(ir_, kc)), bpanel,
                                e.gep(b, cpanel, o.mul(ir_, rsc)), ldt, mr, nr, beta])
                        b.branch(after)
                    b.position_at_end(after)
