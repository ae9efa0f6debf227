"""GFLOP/s of chainrule's generated GEMM against NumPy (OpenBLAS) matmul.

    python benchmarks/bench_matmul.py [--dtype f32,f64] [--rounds 5] [--budget 0.2]

Shapes are the MLP workload's products, with the operand layouts autodiff
uses (transposes are stride swaps, as in NumPy):
    x @ W1      [256,784] @ [784,256]      forward, layer 1
    h @ W2      [256,256] @ [256,10]       forward, layer 2
    x^T @ g     [784,256] @ [256,256]      dW1 (x^T is a column-major view)
    g2 @ W2^T   [256,10]  @ [10,256]       dh  (W2^T is a column-major view)

NumPy runs in two worker processes, one with OpenBLAS's default threads (MT)
and one with OPENBLAS_NUM_THREADS=1 (1T), both with OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE removed (they make current OpenBLAS pick slow kernels).
Our kernel is single-threaded, so 1T is the like-for-like comparison.
Measurements are interleaved (ours, MT, 1T per shape per round) so load from
other processes hits all three alike; each cell is the median of all samples.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time

import numpy as np

SHAPES = ["x@W1", "h@W2", "x^T@g", "g2@W2^T"]


def operands(name: str, dtype):
    """(A, B) for one shape: deterministic values, workload layouts."""
    rng = np.random.default_rng(0)

    def r(*s):
        return rng.standard_normal(s).astype(dtype)
    if name == "x@W1":
        return r(256, 784), r(784, 256)
    if name == "h@W2":
        return r(256, 256), r(256, 10)
    if name == "x^T@g":
        return r(256, 784).T, r(256, 256)
    if name == "g2@W2^T":
        return r(256, 10), r(256, 10).T
    raise KeyError(name)


def time_samples(fn, budget: float, min_samples: int = 20) -> list[float]:
    for _ in range(3):
        fn()
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < min_samples or time.perf_counter() - start < budget:
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return samples


# ------------------------------------------------------------ numpy worker
def numpy_worker() -> None:
    """Line protocol on stdin/stdout: `dtype shape budget` -> JSON sample list."""
    cache = {}
    for line in sys.stdin:
        dtype, name, budget = line.split()
        key = (dtype, name)
        if key not in cache:
            A, B = operands(name, np.dtype(dtype))
            cache[key] = (A, B, np.empty((A.shape[0], B.shape[1]), A.dtype))
        A, B, C = cache[key]
        samples = time_samples(lambda: np.matmul(A, B, out=C), float(budget))
        print(json.dumps(samples), flush=True)


def start_worker(threads: int | None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                        "OMP_NUM_THREADS")}
    if threads:
        env["OPENBLAS_NUM_THREADS"] = str(threads)
    return subprocess.Popen([sys.executable, __file__, "--numpy-worker"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def ask(worker: subprocess.Popen, dtype: str, name: str, budget: float) -> list[float]:
    worker.stdin.write(f"{dtype} {name} {budget}\n")
    worker.stdin.flush()
    return json.loads(worker.stdout.readline())


# ------------------------------------------------------------ our kernel
def build_gemm(dtype: str):
    """emit_gemm -> optimise (O3, vectorisers on) -> MCJIT; returns (gemm, pack_bytes)."""
    import llvmlite.binding as llvm
    import llvmlite.ir as ir
    from chainrule.compiler.codegen.matmul import emit_gemm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()

    def tm():
        return llvm.Target.from_default_triple().create_target_machine(
            cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(),
            opt=3, reloc="pic", codemodel="jitdefault", jit=True)

    module = ir.Module(name="bench_gemm")
    module.triple = llvm.get_default_triple()
    emit_gemm(module, "gemm", dtype)
    mod = llvm.parse_assembly(str(module))
    mod.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    machine = tm()
    pb = llvm.create_pass_builder(machine, pto)
    pb.getModulePassManager().run(mod, pb)
    engine = llvm.create_mcjit_compiler(mod, tm())
    engine.finalize_object()
    P, L = ctypes.c_void_p, ctypes.c_int64
    gemm = ctypes.CFUNCTYPE(None, L, L, L, P, L, L, P, L, L, P, L, ctypes.c_int32, P)(
        engine.get_function_address("gemm"))
    pack_bytes = ctypes.CFUNCTYPE(L, L, L, L)(engine.get_function_address("gemm_pack_bytes"))
    return engine, gemm, pack_bytes


def our_call(gemm, pack_bytes, A, B, C):
    """A zero-argument closure calling the kernel on numpy views (C = A @ B)."""
    (M, K), N = A.shape, B.shape[1]
    es = A.itemsize
    nbytes = pack_bytes(M, N, K)
    raw = np.empty(nbytes + 64, np.uint8)
    pack = raw[(-raw.ctypes.data) % 64:][:nbytes]
    args = (M, N, K, A.ctypes.data, A.strides[0] // es, A.strides[1] // es,
            B.ctypes.data, B.strides[0] // es, B.strides[1] // es,
            C.ctypes.data, C.strides[0] // es, 0, pack.ctypes.data)
    return lambda: gemm(*args), pack


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dtype", default="f32,f64")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per cell")
    ap.add_argument("--budget", type=float, default=0.2, help="seconds per sample batch")
    ap.add_argument("--numpy-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.numpy_worker:
        numpy_worker()
        return

    workers = {"MT": start_worker(None), "1T": start_worker(1)}
    print("GFLOP/s as median / best sample (the best is what an idle machine gives)")
    print(f"{'dtype':5} {'shape':8} {'M x N x K':>12} | {'ours':>13} {'numpy MT':>13} "
          f"{'numpy 1T':>13} | {'ours/MT':>11} {'ours/1T':>11}")
    try:
        for dtype in args.dtype.split(","):
            np_dtype = {"f32": "float32", "f64": "float64"}[dtype]
            engine, gemm, pack_bytes = build_gemm(dtype)
            for name in SHAPES:
                A, B = operands(name, np.dtype(np_dtype))
                C = np.empty((A.shape[0], B.shape[1]), A.dtype)
                call, _pack = our_call(gemm, pack_bytes, A, B, C)
                call()
                ref = A.astype(np.float64) @ B.astype(np.float64)
                tol = 1e-3 if dtype == "f32" else 1e-10
                assert np.allclose(C, ref, rtol=tol, atol=tol), f"wrong result for {name}"
                samples = {"ours": [], "MT": [], "1T": []}
                for _ in range(args.rounds):
                    samples["ours"] += time_samples(call, args.budget)
                    for key, w in workers.items():
                        samples[key] += ask(w, np_dtype, name, args.budget)
                (M, K), N = A.shape, B.shape[1]
                med = {k: 2 * M * N * K / np.median(v) / 1e9 for k, v in samples.items()}
                best = {k: 2 * M * N * K / np.min(v) / 1e9 for k, v in samples.items()}
                cells = " ".join(f"{med[k]:6.1f}/{best[k]:<6.1f}" for k in ("ours", "MT", "1T"))
                ratios = " ".join(f"{med['ours'] / med[k]:5.2f}/{best['ours'] / best[k]:<5.2f}"
                                  for k in ("MT", "1T"))
                print(f"{dtype:5} {name:8} {f'{M}x{N}x{K}':>12} | {cells} | {ratios}", flush=True)
    finally:
        for w in workers.values():
            w.stdin.close()
            w.wait()


if __name__ == "__main__":
    main()
