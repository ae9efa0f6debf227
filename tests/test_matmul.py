"""The generated GEMM (compiler/codegen/matmul.py) against NumPy.

Sizes cover the tile edges (0, 1, primes, non-multiples of MR/NR, K=0),
layouts cover transposed and strided operands and a padded C, and both
orientations (C = AB and C^T = B^T A^T) are forced as well as auto-picked.
A small local JIT keeps this file independent of runtime/jit.py.
"""
from __future__ import annotations

import ctypes
import functools
import re
import threading

import llvmlite.binding as llvm
import llvmlite.ir as ir
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from chainrule.compiler.codegen.matmul import (
    emit_gemm, gemm_config, gemm_pack_bytes, host_vector_bits)

NP = {"f32": np.float32, "f64": np.float64}
TOL = {"f32": 2e-5, "f64": 1e-12}  # relative to sum_k |a_ik b_kj|

llvm.initialize_native_target()
llvm.initialize_native_asmprinter()
_LOCK = threading.Lock()


def _target_machine(cpu=None, features=None):
    return llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name() if cpu is None else cpu,
        features=llvm.get_host_cpu_features().flatten() if features is None else features,
        opt=3, reloc="pic", codemodel="jitdefault", jit=True)


class Gemm:
    """One JIT-compiled kernel plus the optimised IR and assembly it came from."""

    def __init__(self, dtype, vector_bits=None, cpu=None, features=None, **override):
        self.dtype, self.vector_bits, self.override = dtype, vector_bits, override
        module = ir.Module(name=f"gemm_{dtype}")
        module.triple = llvm.get_default_triple()
        emit_gemm(module, "gemm", dtype, vector_bits=vector_bits, **override)
        self.globals = list(module.global_values)
        with _LOCK:
            mod = llvm.parse_assembly(str(module))
            mod.verify()
            tm = _target_machine(cpu, features)
            pto = llvm.create_pipeline_tuning_options(speed_level=3)
            pto.loop_vectorization = True
            pto.slp_vectorization = True
            pb = llvm.create_pass_builder(tm, pto)
            pb.getModulePassManager().run(mod, pb)
            self.opt_ir = str(mod)
            self.asm = tm.emit_assembly(mod)
            self.engine = llvm.create_mcjit_compiler(mod, _target_machine(cpu, features))
            self.engine.finalize_object()
        P, L = ctypes.c_void_p, ctypes.c_int64
        self.fn = ctypes.CFUNCTYPE(None, L, L, L, P, L, L, P, L, L, P, L, ctypes.c_int32, P)(
            self.engine.get_function_address("gemm"))
        self.pack_bytes = ctypes.CFUNCTYPE(L, L, L, L)(
            self.engine.get_function_address("gemm_pack_bytes"))

    def __call__(self, A, B, C, accumulate=False, guard=64):
        """C (+)= A @ B in place, through strides; checks the pack stays in bounds."""
        (M, K), N = A.shape, B.shape[1]
        es = A.itemsize
        assert A.dtype == B.dtype == C.dtype and (C.size == 0 or C.strides[1] == es)
        nbytes = self.pack_bytes(M, N, K)
        assert nbytes == gemm_pack_bytes(self.dtype, M, N, K, self.vector_bits, **self.override)
        raw = np.full(nbytes + 64 + guard, 0xAB, np.uint8)
        off = (-raw.ctypes.data) % 64
        pack = raw[off:off + nbytes]
        self.fn(M, N, K, A.ctypes.data, A.strides[0] // es, A.strides[1] // es,
                B.ctypes.data, B.strides[0] // es, B.strides[1] // es,
                C.ctypes.data, C.strides[0] // es if C.size else N, int(accumulate),
                pack.ctypes.data)
        assert (raw[off + nbytes:off + nbytes + guard] == 0xAB).all(), "wrote past the pack"
        return C


@functools.lru_cache(maxsize=None)
def kernel(dtype, orient=0, **kw):
    return Gemm(dtype, orient=orient, **kw)


def layout(x, how, rng):
    """The same matrix values as a row-major, column-major or strided view."""
    if how == "row":
        return np.ascontiguousarray(x)
    if how == "col":
        return np.asfortranarray(x)
    if how == "strided":  # every other row and every third column of a bigger array
        big = rng.standard_normal((2 * x.shape[0] + 1, 3 * x.shape[1] + 2)).astype(x.dtype)
        view = big[1::2, 2::3][: x.shape[0], : x.shape[1]]
        view[...] = x
        return view
    if how == "reversed":  # negative strides
        return np.ascontiguousarray(x[::-1, ::-1])[::-1, ::-1]
    raise ValueError(how)


def check(dtype, M, N, K, a_how="row", b_how="row", accumulate=False, ldc_pad=0,
          orient=0, seed=0, gemm=None):
    rng = np.random.default_rng(seed)
    t = NP[dtype]
    A = layout(rng.standard_normal((M, K)).astype(t), a_how, rng)
    B = layout(rng.standard_normal((K, N)).astype(t), b_how, rng)
    full = rng.standard_normal((M, N + ldc_pad)).astype(t)
    if not accumulate:
        full[:, :N] = np.nan  # overwrite must not read C
    before = full.copy()
    C = full[:, :N]
    (gemm or kernel(dtype, orient))(A, B, C, accumulate)
    a64, b64 = A.astype(np.float64), B.astype(np.float64)
    want = a64 @ b64 + (before[:, :N] if accumulate else 0.0)
    scale = np.abs(a64) @ np.abs(b64) + (np.abs(before[:, :N]) if accumulate else 0.0) + 1e-30
    assert np.all(np.isfinite(C)), "NaN/inf in result"
    err = np.max(np.abs(C - want) / scale) if C.size else 0.0
    assert err <= TOL[dtype], (dtype, M, N, K, a_how, b_how, accumulate, err)
    np.testing.assert_array_equal(full[:, N:], before[:, N:])  # ldc padding untouched


# ---------------------------------------------------------------- correctness
LAYOUTS = st.sampled_from(["row", "col", "strided"])


@settings(max_examples=300, deadline=None)
@given(dtype=st.sampled_from(["f32", "f64"]), M=st.integers(0, 70), N=st.integers(0, 70),
       K=st.integers(0, 70), a_how=LAYOUTS, b_how=LAYOUTS, accumulate=st.booleans(),
       ldc_pad=st.sampled_from([0, 3]), orient=st.sampled_from([0, 1, 2]),
       seed=st.integers(0, 2**16))
def test_random_sizes_and_layouts(dtype, M, N, K, a_how, b_how, accumulate, ldc_pad,
                                  orient, seed):
    check(dtype, M, N, K, a_how, b_how, accumulate, ldc_pad, orient, seed)


EDGE_SIZES = [(1, 1, 1), (1, 1, 70), (2, 3, 5), (7, 11, 13), (12, 32, 1), (13, 33, 17),
              (12, 16, 16), (24, 64, 4), (11, 31, 97), (97, 5, 3), (31, 29, 37)]


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("orient", [1, 2])
@pytest.mark.parametrize("M,N,K", EDGE_SIZES)
def test_tile_edges(dtype, orient, M, N, K):
    for acc in (False, True):
        check(dtype, M, N, K, accumulate=acc, orient=orient)


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("M,N,K,a_how,b_how", [
    (257, 785, 129, "row", "row"),
    (129, 257, 785, "col", "row"),      # A^T: dW = x^T g
    (256, 256, 784, "row", "col"),      # B^T: dx = g W^T
    (256, 10, 256, "row", "row"),       # narrow N: the transposed orientation
    (10, 300, 200, "strided", "strided"),
    (600, 40, 1100, "reversed", "row"),  # several K and M blocks, negative strides
])
def test_large(dtype, M, N, K, a_how, b_how):
    check(dtype, M, N, K, a_how, b_how, accumulate=False, ldc_pad=5)
    check(dtype, M, N, K, a_how, b_how, accumulate=True)


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_mlp_gradients_via_strides(dtype):
    """dW = x^T g and dx = g W^T from the untransposed arrays, accumulated twice."""
    rng = np.random.default_rng(1)
    t = NP[dtype]
    x, g, W = (rng.standard_normal(s).astype(t) for s in [(64, 50), (64, 20), (50, 20)])
    g2 = kernel(dtype)
    dW = np.zeros((50, 20), t)
    g2(x.T, g, dW, accumulate=True)
    g2(x.T, g, dW, accumulate=True)
    np.testing.assert_allclose(dW, 2 * x.T.astype(np.float64) @ g, rtol=1e-4, atol=1e-4)
    dx = g2(g, W.T, np.empty((64, 50), t))
    np.testing.assert_allclose(dx, g.astype(np.float64) @ W.T, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_zero_strides_and_shared_operands(dtype):
    """Broadcast views (stride 0) and A, B views of one array (x^T x)."""
    rng = np.random.default_rng(2)
    t = NP[dtype]
    g = kernel(dtype)
    row, col = rng.standard_normal(37).astype(t), rng.standard_normal((37, 1)).astype(t)
    for A, B in [(np.broadcast_to(row, (45, 37)), rng.standard_normal((37, 29)).astype(t)),
                 (rng.standard_normal((45, 37)).astype(t), np.broadcast_to(col, (37, 29)))]:
        C = g(A, B, np.empty((45, 29), t))
        np.testing.assert_allclose(C, A.astype(np.float64) @ B, rtol=1e-4, atol=1e-4)
    x = rng.standard_normal((50, 33)).astype(t)
    C = g(x.T, x, np.empty((33, 33), t))
    np.testing.assert_allclose(C, x.T.astype(np.float64) @ x, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_empty_sum_and_empty_output(dtype):
    g = kernel(dtype)
    t = NP[dtype]
    A, B = np.zeros((5, 0), t), np.zeros((0, 7), t)
    C = np.full((5, 7), np.nan, t)
    np.testing.assert_array_equal(g(A, B, C), 0.0)       # K = 0 overwrites with zeros
    C = np.arange(35, dtype=t).reshape(5, 7)
    np.testing.assert_array_equal(g(A, B, C.copy(), accumulate=True), C)  # ... or keeps C
    assert g.pack_bytes(5, 7, 0) == g.pack_bytes(0, 7, 3) == g.pack_bytes(5, 0, 3) == 0
    C = np.full((0, 7), np.nan, t)
    g(np.zeros((0, 3), t), np.ones((3, 7), t), C)         # M = 0 touches nothing


def test_pack_bytes_formula_matches_ir():
    for dtype in ("f32", "f64"):
        g = kernel(dtype)
        for M, N, K in [(1, 1, 1), (256, 10, 256), (784, 256, 256), (5000, 3, 7), (3, 5000, 7),
                        (100, 100, 5000), (4097, 4099, 1)]:
            assert g.pack_bytes(M, N, K) == gemm_pack_bytes(dtype, M, N, K) > 0


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_threads_share_the_kernel(dtype):
    """No global state: concurrent calls with their own packs agree with NumPy."""
    g = kernel(dtype)
    errors = []

    def work(seed):
        try:
            for i in range(5):
                check(dtype, 90 + seed, 70, 130, seed=seed * 10 + i, gemm=g)
        except AssertionError as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert all(isinstance(v, ir.Function) for v in g.globals)  # no global variables


# ------------------------------------------------------- other vector widths
@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_generic_x86_64_sse2_build(dtype):
    """vector_bits=128 compiled for plain x86-64 (no FMA: llvm.fmuladd splits)."""
    g = Gemm(dtype, vector_bits=128, cpu="x86-64", features="")
    assert "ymm" not in g.asm and "zmm" not in g.asm and "vfmadd" not in g.asm
    for M, N, K in [(13, 33, 17), (64, 9, 70), (3, 4, 0)]:
        for acc in (False, True):
            check(dtype, M, N, K, "row", "col", acc, gemm=g)


@pytest.mark.skipif(host_vector_bits() < 256, reason="host has no AVX2")
@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_avx2_build(dtype):
    g = Gemm(dtype, vector_bits=256)
    for M, N, K in [(13, 33, 17), (64, 9, 70), (70, 70, 70)]:
        check(dtype, M, N, K, "strided", "row", True, gemm=g)


# -------------------------------------------------------------- code quality
@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_optimized_ir_uses_vector_fma_and_calls_nothing_external(dtype):
    g = kernel(dtype)
    cfg = gemm_config(dtype)
    ty = "float" if dtype == "f32" else "double"
    assert re.search(rf"call <{cfg.lanes} x {ty}> @llvm\.fma\.v{cfg.lanes}f{dtype[1:]}",
                     g.opt_ir)
    called = set(re.findall(r"call[^@]*@([\w.$]+)", g.opt_ir))
    assert all(c.startswith(("llvm.", "gemm.")) for c in called), called
    # memset/memcpy intrinsics may only survive as inline code, never as calls
    assert set(re.findall(r"\$([A-Za-z_]\w*)@(?:GOT|PLT)", g.asm)) == set()
    if cfg.vector_bits == 512:
        assert re.search(r"vfmadd\d+p[sd]\s+.*zmm", g.asm)


def test_config_follows_register_file_and_caches():
    c = gemm_config("f32", 512)
    assert (c.lanes, c.nr) == (16, c.nv * 16) and c.mr * c.nv + c.nv + 1 <= 32
    c = gemm_config("f64", 128)
    assert c.lanes == 2 and c.mr * c.nv + c.nv + 1 <= 16
    for dtype in ("f32", "f64"):
        c = gemm_config(dtype)
        assert c.kc * c.nr * c.elem_bytes <= 64 * 1024 and c.mc % c.mr == 0
    with pytest.raises(ValueError, match="dtype"):
        gemm_config("f16")
    with pytest.raises(ValueError, match="vector_bits"):
        gemm_config("f32", 384)


def test_internal_linkage():
    module = ir.Module()
    fn = emit_gemm(module, "mm", "f64", linkage="internal")
    assert fn.linkage == "internal" and fn.name == "mm"
    assert module.get_global("mm_pack_bytes").linkage == "internal"
    assert [a.type for a in fn.args][-2:] == [ir.IntType(32), ir.PointerType()]
