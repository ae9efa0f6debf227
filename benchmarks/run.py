"""Benchmark chainrule against NumPy by hand, JAX and PyTorch.

    python benchmarks/run.py [--smoke] [--only NAME,...] [--repeat N]

For every workload of `benchmarks/workloads.py` this prints one table: the
median time of one value+grad call for each implementation, its spread, the
ratio to chainrule from the same run, a throughput figure (GB/s for the
memory-bound workloads, GFLOP/s for the MLP) next to this machine's reference
(a plain NumPy read, NumPy's matmul), and chainrule's compile times (cold in a
fresh process with an empty CHAINRULE_CACHE_DIR, and from that disk cache in
another fresh process) next to JAX's and torch.compile's first call.

Every result is checked against chainrule's (or NumPy-by-hand's when
chainrule is unavailable) before it is timed; a mismatch is printed loudly
and makes the exit status 1. An error in chainrule (e.g. a backend that does
not exist yet) is not a failure: its cells print `n/a` with the error.

OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: some machines set these so that old
OpenBLAS builds run; they make a current NumPy pick a slow kernel. When either
is set, this script re-executes itself once with both removed (for the
benchmark process only; pass --keep-openblas-env to keep them), and prints
the BLAS kernel in use (via threadpoolctl, when installed).
"""
from __future__ import annotations

import os
import sys

_OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_REEXEC_MARK = "CHAINRULE_BENCH_REEXEC"


def _maybe_reexec() -> None:
    """Re-exec without the OpenBLAS overrides; must run before numpy loads."""
    if "--keep-openblas-env" in sys.argv or os.environ.get(_REEXEC_MARK):
        return
    present = {k: os.environ[k] for k in _OPENBLAS_VARS if k in os.environ}
    if not present:
        return
    env = {k: v for k, v in os.environ.items() if k not in _OPENBLAS_VARS}
    env[_REEXEC_MARK] = ";".join(f"{k}={v}" for k, v in present.items())
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


if __name__ == "__main__":
    _maybe_reexec()

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

import workloads as W  # noqa: E402

# names a compiled Function may expose for its bare native entry point
NATIVE_ENTRY_NAMES = ("native_call", "call_native", "raw_call", "native")


# ------------------------------------------------------------------ timing
@dataclass
class Timing:
    median: float
    p25: float
    p75: float
    min: float
    samples: int
    inner: int

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def measure(call: Callable[[], Any], budget: float, min_samples: int,
            repeat: int | None = None) -> Timing:
    """Median seconds per call, time-based adaptive.

    One warm-up call, then samples until `budget` seconds have passed and at
    least `min_samples` were taken (exactly `repeat` samples if given). A
    sample of a call faster than 1 ms runs it `inner` times in a row, so the
    timer's resolution and loop overhead stay below 1%.
    """
    call()
    t0 = time.perf_counter()
    call()
    est = max(time.perf_counter() - t0, 1e-9)
    inner = 1 if est >= 1e-3 else min(10_000, math.ceil(1e-3 / est))
    samples: list[float] = []
    perf = time.perf_counter
    gc_was = gc.isenabled()
    gc.disable()
    try:
        deadline = perf() + budget
        while True:
            t = perf()
            for _ in range(inner):
                call()
            samples.append((perf() - t) / inner)
            n = len(samples)
            if repeat is not None:
                if n >= repeat:
                    break
            elif n >= min_samples and (perf() >= deadline or n >= 100_000):
                break
    finally:
        if gc_was:
            gc.enable()
    q25, q50, q75 = np.percentile(samples, [25, 50, 75])
    return Timing(float(q50), float(q25), float(q75), float(min(samples)),
                  len(samples), inner)


def fmt_time(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "n/a"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


# ------------------------------------------------------------------ results
@dataclass
class Row:
    label: str
    timing: Timing | None = None
    error: str | None = None
    check: str = ""                 # "ok", "ref", "MISMATCH", ""
    note: str = ""

    def as_dict(self) -> dict:
        return {"label": self.label, "error": self.error, "check": self.check,
                "note": self.note,
                "timing": self.timing.as_dict() if self.timing else None}


@dataclass
class Report:
    workload: str
    rows: list[Row] = field(default_factory=list)
    base_label: str | None = None   # the chainrule row ratios refer to
    compile_rows: list[tuple[str, str]] = field(default_factory=list)
    throughput_unit: str = ""
    throughput_ref: tuple[str, float] | None = None
    mismatches: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def short_error(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    first = msg[0] if msg else ""
    text = f"{type(e).__name__}: {first}" if first else type(e).__name__
    return text if len(text) <= 110 else text[:107] + "..."


def loud(msg: str) -> None:
    bar = "!" * 78
    print(f"\n{bar}\n!!! MISMATCH: {msg}\n{bar}\n", flush=True)


# ------------------------------------------------------------------ machine
def machine_header(ns) -> dict:
    info: dict[str, Any] = {}
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["cpu"] = cpu
    info["cores"] = os.cpu_count()
    info["python"] = platform.python_version()
    info["numpy"] = np.__version__
    print(f"machine: {cpu}, {os.cpu_count()} cores; python {info['python']}, "
          f"numpy {np.__version__}")
    removed = os.environ.get(_REEXEC_MARK)
    if removed:
        print(f"note: re-executed without {removed} (they select a slow "
              "OpenBLAS kernel for a current numpy; unset for this run only)")
        info["openblas_env_removed"] = removed
    else:
        kept = {k: os.environ[k] for k in _OPENBLAS_VARS if k in os.environ}
        if kept:
            print(f"WARNING: running with {kept}: numpy's BLAS may use a slow "
                  "kernel (drop --keep-openblas-env)")
            info["openblas_env_kept"] = kept
    try:
        from threadpoolctl import threadpool_info
        for p in threadpool_info():
            line = (f"  {p.get('user_api')}: {p.get('internal_api')} "
                    f"{p.get('version')} kernel={p.get('architecture')} "
                    f"threads={p.get('num_threads')} "
                    f"({os.path.basename(p.get('filepath', ''))})")
            print(line)
            info.setdefault("threadpools", []).append(line.strip())
    except ImportError:
        print("  (threadpoolctl not installed: BLAS kernel not shown)")
    return info


def peer_setup(ns) -> dict:
    """Import the peers, start their runtimes once, and print their versions.

    The one-time costs (JAX's runtime start, torch.compile's first use: dynamo
    and inductor imports) are timed here, so that each workload's first-call
    time is that workload's own trace and compile. torch.compile gets an empty
    TORCHINDUCTOR_CACHE_DIR (unless --warm-torch-cache), so its first calls
    are cold compiles, comparable to chainrule's cold compile.
    """
    import shutil
    info: dict[str, Any] = {}
    parts = []
    if "jax" in ns.peers:
        try:
            t0 = time.perf_counter()
            jax = W._jax()
            jax.block_until_ready(jax.jit(lambda a: a + 1.0)(1.0))
            info["jax_startup_s"] = time.perf_counter() - t0
            parts.append(f"jax {jax.__version__} ({jax.devices()[0].platform}; "
                         f"import + runtime start {fmt_time(info['jax_startup_s'])})")
        except ImportError:
            parts.append("jax not installed")
    if "torch" in ns.peers or "torch.compile" in ns.peers:
        if "torch.compile" in ns.peers and not ns.warm_torch_cache:
            d = tempfile.mkdtemp(prefix="chainrule-bench-inductor-")
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = d
            import atexit
            atexit.register(shutil.rmtree, d, ignore_errors=True)
        try:
            import torch
            if _TORCH_THREADS:
                torch.set_num_threads(_TORCH_THREADS[0])
            parts.append(f"torch {torch.__version__} "
                         f"(threads={torch.get_num_threads()})")
            if "torch.compile" in ns.peers:
                t0 = time.perf_counter()
                try:
                    x = torch.ones(3, requires_grad=True)
                    torch.autograd.grad(torch.compile(lambda a: (a * 2).sum())(x), [x])
                    info["torch_compile_startup_s"] = time.perf_counter() - t0
                    parts.append("torch.compile startup "
                                 f"{fmt_time(info['torch_compile_startup_s'])}")
                except Exception as e:  # noqa: BLE001 - the rows will say why
                    parts.append(f"torch.compile fails: {short_error(e)}")
        except ImportError:
            parts.append("torch not installed")
    if parts:
        print("peers: " + ", ".join(parts))
    return info


def memory_read_gbps(nbytes: int, budget: float, min_samples: int) -> float:
    """GB/s of `np.sum` over a float64 array of `nbytes` (one thread)."""
    a = np.ones(max(nbytes // 8, 1))
    t = measure(lambda: a.sum(), budget, min_samples)
    return a.nbytes / t.median / 1e9


# ------------------------------------------------------------------ chainrule
def chainrule_version() -> str:
    try:
        import chainrule
        return getattr(chainrule, "__version__", "?") + " at " + \
            os.path.dirname(chainrule.__file__)
    except Exception as e:  # noqa: BLE001 - report, never crash
        return f"not importable ({short_error(e)})"


def compile_chainrule(src: str, backend: str):
    import chainrule
    return chainrule.compile(src, backend=backend)


def normalize_result(res, params) -> tuple[float, dict[str, np.ndarray]]:
    if not (isinstance(res, tuple) and len(res) == 2):
        raise TypeError(f"value_and_grad returned {type(res).__name__}, "
                        "expected (value, grads)")
    val, grads = res
    if not isinstance(grads, dict):
        raise TypeError(f"grads is {type(grads).__name__}, expected dict")
    return float(np.asarray(val)), {k: np.asarray(v) for k, v in grads.items()}


def native_entries(fn, w: W.Workload, args: dict) -> tuple[list, list[str]]:
    """Bare native calls of `fn`, without the Python-side argument handling.

    A public entry point (any of NATIVE_ENTRY_NAMES, called by keyword or by
    position) if the Function has one; else, through the llvm backend's
    internals (skipped with a reason when they change): its CPython-API
    wrapper for scalar programs, called with the argument tuple, and its C
    function called through ctypes with pointers prepared once.
    Returns ([(label, call)], [reasons for what was skipped]).
    """
    pos = tuple(args[n] for n in w.arg_names)
    for name in NATIVE_ENTRY_NAMES:
        f = getattr(fn, name, None)
        if not callable(f):
            continue
        for call in (lambda: f(**args), lambda: f(*pos)):
            try:
                call()
                return [(f"fn.{name}", call)], []
            except TypeError:
                continue
    found, skipped = [], []
    for label, probe in (("CPython wrapper", _internal_fast_entry),
                         ("native array call", _internal_array_entry)):
        try:
            found.append((f"{label} (internal)", probe(fn, pos, args)))
        except Exception as e:  # noqa: BLE001 - internals may change
            skipped.append(f"{label}: {short_error(e)}")
    return found, skipped


def _internal_fast_entry(fn, pos: tuple, args: dict):
    fast = (getattr(fn, "_fast", None) or getattr(fn._backend, "fast", {})).get(True)
    if fast is None:
        raise LookupError("no scalar fast path")
    fast(pos, np.float64)
    return lambda: fast(pos, np.float64)


def _internal_array_entry(fn, pos: tuple, args: dict):
    """The backend's native array call alone: pointers read in C, arrays prepared once."""
    b = fn._backend
    arrays, dims = fn._prepare((), args)
    dim_values = tuple(dims[d] for d in b.signature.symbolic_dims)
    ins = [np.ascontiguousarray(arrays[a.name]) for a in fn.args]
    outs, grads = b.run(arrays, dims, True)      # arrays of the right shapes
    packed = (*dim_values, *ins, *outs, *grads, b.workspaces.get(dim_values))
    native = b._calls[True]

    def call():
        return native(packed)

    if call() != 0:
        raise RuntimeError("native call returned an error code")
    return call


_COMPILE_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import chainrule
t_import = time.perf_counter() - t0
sys.path.insert(0, sys.argv[1])
import workloads
w = workloads.workloads(sys.argv[3] == "1")[sys.argv[2]]
src = w.source(sys.argv[3] == "1")
args = w.make_inputs(sys.argv[3] == "1", 0)
t0 = time.perf_counter()
fn = chainrule.compile(src, backend=sys.argv[4])
t_compile = time.perf_counter() - t0
t0 = time.perf_counter()
fn.value_and_grad(**args)
t_first = time.perf_counter() - t0
print("RESULT " + json.dumps({"import": t_import, "compile": t_compile,
                              "first_call": t_first}))
"""


def compile_times(name: str, smoke: bool, backend: str) -> dict:
    """Cold (empty CHAINRULE_CACHE_DIR) and cached compile, each in a new process."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="chainrule-bench-cache-") as cache:
        env = dict(os.environ, CHAINRULE_CACHE_DIR=cache)
        for phase in ("cold", "cached"):
            try:
                p = subprocess.run(
                    [sys.executable, "-c", _COMPILE_SCRIPT, BENCH_DIR, name,
                     "1" if smoke else "0", backend],
                    env=env, capture_output=True, text=True, timeout=900)
            except subprocess.TimeoutExpired:
                out[phase] = {"error": "timed out after 900 s"}
                break
            lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
            if p.returncode != 0 or not lines:
                err = (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]
                if p.returncode < 0:
                    err = f"killed by signal {-p.returncode}: {err}"
                out[phase] = {"error": err[:110], "returncode": p.returncode}
                break
            out[phase] = json.loads(lines[-1][len("RESULT "):])
    return out


def format_compile_times(ct: dict) -> str:
    parts = []
    for phase in ("cold", "cached"):
        d = ct.get(phase, {})
        if "error" in d:
            parts.append(f"{phase}: error {d['error']}")
        elif d:
            parts.append(f"{phase}: compile {fmt_time(d['compile'])} + "
                         f"first call {fmt_time(d['first_call'])} "
                         f"(import {fmt_time(d['import'])})")
    return "; ".join(parts)


# ------------------------------------------------------------------ one workload
def run_workload(w: W.Workload, ns, refs: dict) -> Report:
    rep = Report(w.name)
    smoke = ns.smoke
    args = w.make_inputs(smoke, 0)
    shapes = ", ".join(
        f"{k}" + ("" if isinstance(v, float) else
                  f" {np.asarray(v).dtype}{list(np.asarray(v).shape)}")
        for k, v in args.items() if not isinstance(v, float))
    print(f"\n=== {w.name}: {w.description}")
    if shapes:
        print(f"    arrays: {shapes}")
    for n in w.notes:
        print(f"    note: {n}")

    timed: list[tuple[Row, Callable[[], Any]]] = []
    reference: tuple[str, tuple] | None = None
    budget, min_samples = ns.budget, ns.min_samples

    def check(row: Row, got) -> None:
        if reference is None:
            row.check = "ref"
            return
        problems = W.compare(w, reference[1], got)
        if problems:
            row.check = "MISMATCH"
            msg = f"{w.name}: {row.label} vs {reference[0]}: " + "; ".join(problems)
            rep.mismatches.append(msg)
            loud(msg)
        else:
            row.check = "ok"

    # --- chainrule, one row per backend; the first that works is the base
    for backend in ns.backends:
        row = Row(f"chainrule[{backend}]")
        rep.rows.append(row)
        if not ns.no_compile_time and backend != "numpy":
            # in fresh processes first: a crash there must not kill this one
            # (the numpy reference interpreter has no native code or cache)
            ct = compile_times(w.name, smoke, backend)
            rep.extra[f"compile[{backend}]"] = ct
            rep.compile_rows.append((row.label, format_compile_times(ct)))
            if ct.get("cold", {}).get("returncode", 0) < 0:
                row.error = ("not run in-process: crashed in the compile "
                             f"subprocess ({ct['cold']['error']})")
                continue
        try:
            fn = compile_chainrule(w.source(smoke), backend)
            got = normalize_result(fn.value_and_grad(**args), w.params)
        except Exception as e:  # noqa: BLE001 - chainrule may be unfinished
            row.error = short_error(e)
            if ns.verbose:
                traceback.print_exc()
            continue
        check(row, got)
        if reference is None:
            reference = (row.label, got)
            rep.base_label = row.label
        timed.append((row, lambda fn=fn: fn.value_and_grad(**args)))
        if w.name == "neuron":
            # the same call with 0-d arrays instead of Python floats
            arr_args = {k: np.array(v) for k, v in args.items()}
            row0 = Row(f"chainrule[{backend}] 0-d arrays")
            rep.rows.append(row0)
            try:
                check(row0, normalize_result(fn.value_and_grad(**arr_args), w.params))
                timed.append((row0, lambda fn=fn: fn.value_and_grad(**arr_args)))
            except Exception as e:  # noqa: BLE001
                row0.error = short_error(e)
            if backend == "numpy":
                continue  # the reference interpreter has no native code
            found, skipped = native_entries(fn, w, args)
            for label, call in found:
                rown = Row(f"chainrule[{backend}] {label}", check="-",
                           note="native call only")
                rep.rows.append(rown)
                timed.append((rown, call))
            if skipped:
                print(f"    note: native-only probes skipped: {'; '.join(skipped)}")

    if reference is None:
        ref_np = W._numpy_result(w.numpy_vg(**args))
        reference = ("numpy by hand", ref_np)
        print("    note: no chainrule result; peers are checked against "
              "numpy by hand")

    # --- peers
    first_calls: dict[str, float] = {}
    for kind in ns.peers:
        row = Row(W.PEER_LABELS[kind])
        rep.rows.append(row)
        try:
            peer = W.build_peer(w, kind, args)
            got = peer.to_numpy(peer.call())
        except ImportError as e:
            row.error = f"skipped (not installed: {e.name or e})"
            continue
        except Exception as e:  # noqa: BLE001 - e.g. torch.compile failing
            row.error = "skipped: " + short_error(e)
            if ns.verbose:
                traceback.print_exc()
            continue
        if peer.first_call_s is not None:
            first_calls[kind] = peer.first_call_s
        check(row, got)
        timed.append((row, peer.call))

    # --- timing (after every check, so a mismatch shows before the numbers)
    for row, call in timed:
        try:
            row.timing = measure(call, budget, min_samples, ns.repeat)
        except Exception as e:  # noqa: BLE001
            row.error = "timing failed: " + short_error(e)
            row.timing = None

    # --- throughput model and machine reference
    if w.flops is not None:
        rep.throughput_unit = "GFLOP/s"
        rep.throughput_ref = ("numpy matmul, same 5 products",
                              numpy_matmul_gflops(w, args, ns))
        rep.extra["flops"] = w.flops(args)
    elif w.bytes_moved is not None:
        rep.throughput_unit = "GB/s"
        nbytes = int(w.bytes_moved(args))
        rep.throughput_ref = (f"numpy sum over {nbytes / 1e6:.3g} MB",
                              memory_read_gbps(nbytes, budget, min_samples))
        rep.extra["bytes"] = nbytes

    for kind, t in first_calls.items():
        what = "trace + XLA compile + run" if kind == "jax" else \
            "dynamo + inductor compile (fwd+bwd) + run"
        rep.compile_rows.append((W.PEER_LABELS[kind], f"first call {fmt_time(t)} ({what})"))
        rep.extra[f"first_call[{kind}]"] = t

    print_report(rep, w)
    refs[w.name] = rep
    return rep


def numpy_matmul_gflops(w: W.Workload, args: dict, ns) -> float:
    """GFLOP/s of NumPy doing just the value+grad's five matmuls, in one call."""
    rng = np.random.default_rng(0)
    mats = []
    for (sa, sb, ta, tb) in W.mlp_matmul_shapes(args):
        a = rng.random(sa, dtype=np.float32)
        b = rng.random(sb, dtype=np.float32)
        mats.append((a.T if ta else a, b.T if tb else b))

    def five():
        for a, b in mats:
            a @ b

    t = measure(five, ns.budget, ns.min_samples, ns.repeat)
    return w.flops(args) / t.median / 1e9


def print_report(rep: Report, w: W.Workload) -> None:
    base = next((r for r in rep.rows if r.label == rep.base_label and r.timing), None)
    unit = rep.throughput_unit
    lw = max([34] + [len(r.label) for r in rep.rows])
    head = (f"    {'implementation':{lw}s} {'median':>9s} {'p25..p75':>19s} "
            f"{'min':>9s} {'n x inner':>11s} {'/chainrule':>10s}")
    if unit:
        head += f" {unit:>8s}"
    head += "  check"
    print(head)
    for r in rep.rows:
        if r.timing is None:
            print(f"    {r.label:{lw}s} {'n/a':>9s}  {r.error or ''}")
            continue
        t = r.timing
        ratio = f"{t.median / base.timing.median:.2f}x" if base else "n/a"
        line = (f"    {r.label:{lw}s} {fmt_time(t.median):>9s} "
                f"{fmt_time(t.p25) + '..' + fmt_time(t.p75):>19s} "
                f"{fmt_time(t.min):>9s} {f'{t.samples}x{t.inner}':>11s} {ratio:>10s}")
        if unit == "GFLOP/s":
            line += f" {rep.extra['flops'] / t.median / 1e9:8.1f}"
        elif unit == "GB/s":
            line += f" {rep.extra['bytes'] / t.median / 1e9:8.2f}"
        line += f"  {r.check}"
        if r.note:
            line += f" ({r.note})"
        print(line)
    if rep.throughput_ref:
        label, val = rep.throughput_ref
        print(f"    machine reference: {label}: {val:.1f} {unit}")
    if rep.compile_rows:
        print("    compile / first call:")
        for label, text in rep.compile_rows:
            print(f"      {label:22s} {text}")
    sys.stdout.flush()


# ------------------------------------------------------------------ main
def parse_args(argv=None):
    names = W.WORKLOAD_NAMES
    ap = argparse.ArgumentParser(
        description="chainrule value+grad benchmarks against numpy/jax/torch")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes, few repetitions: seconds, for CI")
    ap.add_argument("--only", default="",
                    help="comma-separated workloads: " + ",".join(names))
    ap.add_argument("--repeat", type=int, default=None,
                    help="exactly N timed samples per cell instead of the "
                         "time budget")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of timing per cell (default 0.3, smoke 0.05)")
    ap.add_argument("--backends", default=None,
                    help="chainrule backends; the first that works is the base "
                         "of the ratios and checks (default llvm; "
                         "smoke: llvm,numpy)")
    ap.add_argument("--peers", default=None,
                    help="peers among " + ",".join(W.PEER_KINDS) +
                         " (default all; smoke: numpy,jax,torch)")
    ap.add_argument("--threads", type=int, default=None,
                    help="limit the peers' threads (numpy BLAS via threadpoolctl, "
                         "torch.set_num_threads; jax only for 1). chainrule is "
                         "single-threaded; default: each library's own default")
    ap.add_argument("--no-compile-time", action="store_true",
                    help="skip the cold/cached compile subprocesses")
    ap.add_argument("--json", default=None, help="also write results here")
    ap.add_argument("--warm-torch-cache", action="store_true",
                    help="let torch.compile use its usual on-disk cache (its "
                         "first calls are then not cold compiles)")
    ap.add_argument("--keep-openblas-env", action="store_true",
                    help="do not unset OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="print tracebacks of chainrule/peer errors")
    ns = ap.parse_args(argv)
    ns.only = [n for n in ns.only.split(",") if n]
    unknown = [n for n in ns.only if n not in names]
    if unknown:
        ap.error(f"unknown workload(s) {unknown}; known: {', '.join(names)}")
    if ns.budget is None:
        ns.budget = 0.05 if ns.smoke else 0.3
    ns.min_samples = 3 if ns.smoke else 7
    ns.backends = (ns.backends or ("llvm,numpy" if ns.smoke else "llvm")).split(",")
    ns.peers = (ns.peers or ("numpy,jax,torch" if ns.smoke
                             else ",".join(W.PEER_KINDS))).split(",")
    bad = [p for p in ns.peers if p not in W.PEER_KINDS]
    if bad:
        ap.error(f"unknown peer(s) {bad}; known: {', '.join(W.PEER_KINDS)}")
    return ns


def limit_threads(n: int) -> list[str]:
    """Apply --threads before any peer library starts its thread pools."""
    done = []
    if n == 1:  # XLA has no flag for an intra-op pool size other than this
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false").strip()
        done.append("jax: --xla_cpu_multi_thread_eigen=false")
    else:
        done.append("jax: not limited (XLA takes no pool size)")
    try:
        from threadpoolctl import threadpool_limits
        _KEEP.append(threadpool_limits(limits=n))
        done.append(f"numpy BLAS: {n} (threadpoolctl)")
    except ImportError:
        done.append("numpy BLAS: not limited (threadpoolctl not installed)")
    _TORCH_THREADS.append(n)
    done.append(f"torch: set_num_threads({n})")
    return done


_KEEP: list = []
_TORCH_THREADS: list[int] = []


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def main(argv=None) -> int:
    ns = parse_args(argv)
    t_start = time.perf_counter()
    if "CHAINRULE_CACHE_DIR" not in os.environ:
        # this process compiles afresh and leaves the user's cache alone
        import atexit
        import shutil
        d = tempfile.mkdtemp(prefix="chainrule-bench-main-cache-")
        os.environ["CHAINRULE_CACHE_DIR"] = d
        atexit.register(shutil.rmtree, d, ignore_errors=True)

    print(f"chainrule benchmarks ({'smoke' if ns.smoke else 'full'}; "
          f"{ns.budget} s per cell, >= {ns.min_samples} samples)")
    if ns.threads:
        print("threads: " + "; ".join(limit_threads(ns.threads)))
    info = machine_header(ns)
    load = load_average()
    if load is not None:
        busy = load > 0.5 * (os.cpu_count() or 1)
        print(f"load average (1 min) at start: {load:.2f}"
              + ("  WARNING: the machine is busy; timings (multi-threaded "
                 "BLAS above all) will be noisy and slow" if busy else ""))
        info["load_start"] = load
    print(f"chainrule: {chainrule_version()}; backends {','.join(ns.backends)}")
    info.update(peer_setup(ns))
    dram = memory_read_gbps((32 if ns.smoke else 1024) << 20, ns.budget,
                            ns.min_samples)
    print(f"memory read (numpy sum, {(32 if ns.smoke else 1024)} MiB f64, "
          f"one thread): {dram:.1f} GB/s")
    info["memory_read_gbps_large"] = dram

    all_w = W.workloads(ns.smoke)
    reports: dict[str, Report] = {}
    for name, w in all_w.items():
        if ns.only and name not in ns.only:
            continue
        run_workload(w, ns, reports)

    mismatches = [m for r in reports.values() for m in r.mismatches]
    load = load_average()
    info["load_end"] = load
    print(f"\ndone in {time.perf_counter() - t_start:.1f} s"
          + (f"; load average (1 min) at end: {load:.2f}" if load is not None else ""))
    if mismatches:
        print(f"{len(mismatches)} MISMATCH(ES):")
        for m in mismatches:
            print("  " + m)
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump({"machine": info, "smoke": ns.smoke,
                       "workloads": {k: {"rows": [r.as_dict() for r in v.rows],
                                         "base": v.base_label,
                                         "throughput_unit": v.throughput_unit,
                                         "throughput_ref": v.throughput_ref,
                                         "mismatches": v.mismatches,
                                         "extra": v.extra}
                                     for k, v in reports.items()}},
                      f, indent=1, default=str)
    return 1 if mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
