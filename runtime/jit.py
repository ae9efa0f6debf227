"""The JIT: target machine, optimisation pipeline, execution engine, caches.

This is the only module that knows about them (STYLE.md, convention 8), so a
change of LLVM version or pipeline touches one file.

Every compiled module takes the same road: optimise the IR, emit an object
file with ``TargetMachine.emit_object``, and load that object into a fresh
MCJIT engine with ``add_object_file``.  A disk-cache hit skips the first two
steps, so code loaded from the cache is byte-for-byte the code a build would
have produced.

Thread-safety: LLVM's global context and MCJIT are not safe to drive from
several threads at once, so every LLVM step runs under one process-wide lock;
the resulting machine code is immutable, and its addresses may be called from
any number of threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import re
import sys
import tempfile
import threading
import time
import warnings

import llvmlite
import llvmlite.binding as llvm

from .cache import ObjectCache, default_cache

__all__ = [
    "CompiledModule",
    "compile_ir",
    "compile_object",
    "NativeCode",
    "optimize",
    "target_machine",
    "host_cpu",
    "describe_target",
    "gemm_vector_bits",
    "known_cpus",
    "has_libmvec",
    "capi_resolvable",
    "cache_key",
    "clear_memory_cache",
    "stats",
]

# Bump when anything here changes the emitted code (pipeline, code model, ...)
# so that stale disk entries are never reused.
PIPELINE_ID = "chainrule-jit/v1:O3+loop-vec+slp-vec:reloc=pic:codemodel=jitdefault:mcjit-object+vec512"

#: Where compiled modules came from in this process; tests read the deltas.
stats: dict[str, int] = {"memory_hits": 0, "disk_hits": 0, "builds": 0}

_llvm_lock = threading.RLock()   # serialises every LLVM call (global context)
_memo_lock = threading.Lock()    # guards `_memo` and `stats`
_memo: dict[str, "CompiledModule"] = {}

_CAPI_PROBE = "PyFloat_FromDouble"
_DECLARE_RE = re.compile(r'^declare\b[^@\n]*@"?([A-Za-z_.$][\w.$]*)"?\s*\(', re.MULTILINE)


# -- process set-up ----------------------------------------------------------

@functools.cache
def _process_setup() -> tuple[bool, bool]:
    """Initialise the native target once; returns (capi_ok, libmvec_ok).

    LLVM makes the running process's symbols searchable when the first MCJIT
    engine is created (``LoadLibraryPermanently(nullptr)``), so a throwaway
    engine is built here; afterwards the CPython C API resolves like any other
    external symbol, which JIT wrappers that unpack argument tuples rely on.
    """
    with _llvm_lock:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        llvm.initialize_native_asmparser()
        probe = llvm.parse_assembly("")
        engine = llvm.create_mcjit_compiler(probe, _raw_target_machine(*host_cpu(), jit=True))
        del engine
        expected = ctypes.cast(getattr(ctypes.pythonapi, _CAPI_PROBE), ctypes.c_void_p).value
        capi_ok = llvm.address_of_symbol(_CAPI_PROBE) == expected
        if not capi_ok:
            warnings.warn("chainrule: the CPython C API is not visible to LLVM; "
                          "declared C-API functions will be bound one by one", RuntimeWarning)
        try:
            # glibc's vector math (e.g. _ZGVdN4v_exp); optional.
            llvm.load_library_permanently("libmvec.so.1")
            mvec_ok = llvm.address_of_symbol("_ZGVdN4v_exp") is not None
        except RuntimeError:
            mvec_ok = False
    return capi_ok, mvec_ok


def capi_resolvable() -> bool:
    """Whether JIT code can call CPython C-API functions by name."""
    return _process_setup()[0]


def has_libmvec() -> bool:
    """Whether glibc's libmvec was loaded, so `_ZGV*` vector math links."""
    return _process_setup()[1]


def _bind_declared_symbols(llvm_ir: str) -> None:
    """Fallback when the process is not searchable: bind C-API names explicitly."""
    for name in _DECLARE_RE.findall(llvm_ir):
        if llvm.address_of_symbol(name) is None:
            fn = getattr(ctypes.pythonapi, name, None)
            if fn is not None:
                llvm.add_symbol(name, ctypes.cast(fn, ctypes.c_void_p).value)


# -- target machines ---------------------------------------------------------

@functools.cache
def host_cpu() -> tuple[str, str]:
    """(cpu name, feature string) of this machine, as LLVM sees it."""
    _init_native()
    return llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()


@functools.cache
def _init_native() -> None:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()


@functools.cache
def known_cpus() -> frozenset[str]:
    """CPU names LLVM accepts for the host triple.

    llvmlite has no API for this, and an unknown name is only a warning on
    stderr at target-machine creation followed by a fatal LLVM error (process
    abort) at code generation, so validating up front is essential.  LLVM
    prints the list when asked for cpu ``help``; stderr (fd 2) is captured for
    that one call.
    """
    _init_native()
    target = llvm.Target.from_default_triple()
    with _llvm_lock, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            target.create_target_machine(cpu="help", features="", opt=0)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        text = sink.read().decode("utf-8", "replace")
    names: set[str] = set()
    in_cpus = False
    for line in text.splitlines():
        if line.startswith("Available CPUs"):
            in_cpus = True
        elif line.startswith("Available features"):
            break
        elif in_cpus and line.strip():
            names.add(line.split()[0])
    return frozenset(names)


def _resolve_cpu(cpu: str) -> tuple[str, str]:
    """Map "native"/"generic"/an LLVM cpu name to (cpu, features)."""
    if cpu == "native":
        name, features = host_cpu()
        if "+avx512f" in features.split(","):
            # LLVM tunes these CPUs to 256-bit vectors; our loops are streaming
            # math where full-width AVX-512 measured ~1.5x faster (vmath exp)
            features += ",-prefer-256-bit"
        return name, features
    if cpu == "generic":
        # The architecture baseline: x86-64 without AVX etc.
        arch = llvm.get_process_triple().split("-", 1)[0]
        return ("x86-64" if arch in ("x86_64", "amd64") else "generic"), ""
    known = known_cpus()
    if known and cpu not in known:
        sample = ", ".join(sorted(known)[:12])
        raise ValueError(
            f"unknown CPU {cpu!r} for target {llvm.get_process_triple()}; use 'native', "
            f"'generic' or an LLVM CPU name (e.g. {sample}, ...; {len(known)} known)")
    return cpu, ""


def describe_target(cpu: str) -> str:
    """The triple and resolved CPU name of `cpu`, for headers and metadata."""
    _init_native()
    return f"{llvm.get_process_triple()}, cpu {_resolve_cpu(cpu)[0]}"


def gemm_vector_bits(cpu: str) -> int | None:
    """The vector width the generated GEMM may assume for `cpu` (None: the host's).

    The GEMM kernel is shaped for a vector width and uses `llvm.fma` only where
    the host has FMA (compiler/codegen/matmul.py); code for another CPU must not
    assume the host's AVX-512 and FMA (without hardware FMA, `llvm.fma` becomes a
    libm call per element). LLVM does not tell a named CPU's features, so any
    CPU but the host's gets the SSE2 baseline kernel: correct everywhere.
    """
    if cpu == "native" or _resolve_cpu(cpu)[0] == host_cpu()[0]:
        return None
    return 128


def _raw_target_machine(cpu: str, features: str, *, jit: bool,
                        opt: int = 3) -> llvm.TargetMachine:
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=cpu, features=features, opt=opt, reloc="pic",
                                        codemodel="jitdefault", jit=jit)


def target_machine(cpu: str = "native", *, jit: bool, opt: int = 3) -> llvm.TargetMachine:
    """A fresh target machine (PIC; `opt` is the code generator's level, 3 by default).

    Always fresh: MCJIT takes ownership of the machine it is given, and reusing
    one after its engine closed crashed the process.
    """
    _init_native()
    name, features = _resolve_cpu(cpu)
    return _raw_target_machine(name, features, jit=jit, opt=opt)


# -- optimisation ------------------------------------------------------------

#: Code generator optimisation level per effort (`light`): huge bodies gain
#: little from O3 scheduling, and level 0 selects instructions with FastISel,
#: linear in a block's length where SelectionDAG is not.
CODEGEN_OPT = {0: 3, 1: 1, 2: 0}


def optimize(llvm_ir: str, tm: llvm.TargetMachine, light: int = 0) -> llvm.ModuleRef:
    """Parse, verify and run the O3 pipeline with loop and SLP vectorisation.

    The module gets `tm`'s triple and data layout first, or the vectoriser's
    cost model would not know the vector width.  The vectoriser flags must be
    set before `create_pass_builder`, which copies the tuning options.
    """
    with _llvm_lock:
        module = llvm.parse_assembly(llvm_ir)
        module.triple = tm.triple
        module.data_layout = str(tm.target_data)
        module.verify()
        pto = llvm.create_pipeline_tuning_options(speed_level=3)
        pto.loop_vectorization = True
        pto.slp_vectorization = not light
        if light:
            # huge loop bodies (long elementwise chains) gain nothing from unrolling
            # or interleaving, which multiply compile time; they still vectorize
            pto.loop_unrolling = False
            pto.loop_interleaving = False
        pb = llvm.create_pass_builder(tm, pto)
        with _without_vectorizer_remarks():
            pb.getModulePassManager().run(module, pb)
        return module


@contextlib.contextmanager
def _without_vectorizer_remarks():
    """Drop LLVM's "loop not vectorized" diagnostics, keep anything else it prints.

    Loops that accumulate a sum ask to be vectorized (codegen/loops.py), and
    LLVM prints a remark and a warning to the process's stderr when it cannot
    (a loop reading through clamped indices, say): the loop then simply runs
    scalar, so the message is noise for a user. stderr is redirected at the
    file-descriptor level for the duration; what others write meanwhile is
    passed on afterwards.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().splitlines(keepends=True)
                    if b"loop not vectorized" not in line]
            if kept:
                os.write(2, b"".join(kept))


# -- ahead-of-time code -------------------------------------------------------

class NativeCode:
    """What an ahead-of-time build produces: object bytes, the optimised IR and
    (when asked for) the assembly, all from one optimised module."""

    def __init__(self, obj: bytes, optimized_ir: str, assembly: str | None) -> None:
        self.object = obj
        self.optimized_ir = optimized_ir
        self.assembly = assembly


def compile_object(llvm_ir: str, *, cpu: str = "native", light: int = 0,
                   link: tuple[str, ...] = (), assembly: bool = False) -> NativeCode:
    """Optimise `llvm_ir` for `cpu` and emit a relocatable, position-independent object.

    `link` holds further IR modules (e.g. a library's metadata) linked in after
    optimisation. Nothing is cached or loaded: the code is for another process.
    Raises ValueError for an unknown `cpu`, before any work.
    """
    tm = target_machine(cpu, jit=False, opt=CODEGEN_OPT[light])
    with _llvm_lock:
        module = optimize(llvm_ir, tm, light)
        for extra_ir in link:
            extra = llvm.parse_assembly(extra_ir)
            extra.triple = tm.triple
            extra.data_layout = str(tm.target_data)
            extra.verify()
            module.link_in(extra)
        module.verify()
        return NativeCode(tm.emit_object(module), str(module),
                          tm.emit_assembly(module) if assembly else None)


# -- compiled modules --------------------------------------------------------

class CompiledModule:
    """Machine code loaded into an MCJIT engine, kept alive by this object.

    Addresses stay valid as long as the instance lives; hold on to it while
    any function pointer derived from it may be called.
    """

    def __init__(self, engine: llvm.ExecutionEngine, *, key: str, source: str,
                 optimized_ir: str | None) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._addresses: dict[str, int] = {}
        self.key = key
        self.source = source          # "build" or "disk"
        self._optimized_ir = optimized_ir

    def __repr__(self) -> str:
        return f"<CompiledModule {self.key[:12]} from {self.source}>"

    @property
    def optimized_ir(self) -> str:
        """The optimised LLVM IR the machine code was generated from."""
        if self._optimized_ir is None:
            raise AttributeError("optimised IR was not recorded for this module")
        return self._optimized_ir

    def address(self, symbol: str) -> int:
        """Address of a function or global; KeyError if the module lacks it."""
        with self._lock:
            addr = self._addresses.get(symbol)
            if addr is None:
                with _llvm_lock:
                    addr = (self._engine.get_function_address(symbol)
                            or self._engine.get_global_value_address(symbol))
                if not addr:
                    raise KeyError(f"symbol {symbol!r} not found in compiled module {self.key[:12]}")
                self._addresses[symbol] = addr
            return addr


def _package_version() -> str:
    # chainrule.__version__, not importlib.metadata: that import alone costs ~80 ms
    import chainrule
    return getattr(chainrule, "__version__", "0+unknown")


def cache_key(llvm_ir: str, key_parts: tuple[str, ...], cpu: str = "native") -> str:
    """sha256 over everything that determines the machine code.

    Each field is length-prefixed so that no two field lists collide.
    """
    name, features = _resolve_cpu(cpu)
    fields = [
        PIPELINE_ID,
        *key_parts,
        f"cpu={name}:{features}",
        llvm_ir,
        _package_version(),
        llvmlite.__version__,
        ".".join(map(str, llvm.llvm_version_info)),
        llvm.get_process_triple(),
        *host_cpu(),
    ]
    h = hashlib.sha256()
    h.update(len(key_parts).to_bytes(4, "little"))
    for field in fields:
        data = field.encode("utf-8", "surrogatepass")  # any str hashes (a lone surrogate too)
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _log(event: str, key: str, detail: str = "") -> None:
    if os.environ.get("CHAINRULE_JIT_LOG", "") not in ("", "0"):
        print(f"chainrule.jit: {event} {key[:16]}{detail}", file=sys.stderr, flush=True)


def _load_object(obj: bytes, cpu: str, ir_for_symbols: str | None) -> llvm.ExecutionEngine:
    """A fresh MCJIT engine over an empty module, with `obj` linked in."""
    capi_ok, _ = _process_setup()
    if not capi_ok and ir_for_symbols:
        _bind_declared_symbols(ir_for_symbols)
    tm = target_machine(cpu, jit=True)
    empty = llvm.parse_assembly("")
    empty.triple = tm.triple
    empty.data_layout = str(tm.target_data)
    engine = llvm.create_mcjit_compiler(empty, tm)  # takes ownership of both
    engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
    engine.finalize_object()
    return engine


_DEFAULT: object = object()


def compile_ir(llvm_ir: str, *, key_parts: tuple[str, ...],
               cache: ObjectCache | None = _DEFAULT,  # type: ignore[assignment]
               cpu: str = "native", light: int = 0) -> CompiledModule:
    """Compile LLVM IR text to machine code, reusing earlier work when possible.

    Lookup order: this process's memo (free), the disk cache (loads an object,
    no LLVM optimisation), then a full build whose object is stored on disk.
    `key_parts` should name whatever produced the IR (e.g. the program hash
    and codegen options); `cache=None` bypasses the disk.
    """
    _process_setup()
    key = cache_key(llvm_ir, key_parts + ((f"light{light}",) if light else ()), cpu)
    with _memo_lock:
        hit = _memo.get(key)
        if hit is not None:
            stats["memory_hits"] += 1
            return hit
    disk = default_cache() if cache is _DEFAULT else cache
    with _llvm_lock:
        # Re-check: another thread may have built it while we waited.
        with _memo_lock:
            hit = _memo.get(key)
            if hit is not None:
                stats["memory_hits"] += 1
                return hit
        module = _from_disk(key, disk, cpu) if disk is not None else None
        if module is None:
            module = _build(key, llvm_ir, disk, cpu, light)
        with _memo_lock:
            _memo[key] = module
        return module


def _from_disk(key: str, disk: ObjectCache, cpu: str) -> CompiledModule | None:
    entry = disk.get_entry(key)
    if entry is None:
        return None
    obj, extra = entry
    ir_text = extra.decode("utf-8", "replace")
    engine = _load_object(obj, cpu, ir_text)
    with _memo_lock:
        stats["disk_hits"] += 1
    _log("disk-hit", key, f" ({len(obj)} bytes)")
    return CompiledModule(engine, key=key, source="disk", optimized_ir=ir_text)


def _build(key: str, llvm_ir: str, disk: ObjectCache | None, cpu: str,
           light: int = 0) -> CompiledModule:
    start = time.perf_counter()
    tm = target_machine(cpu, jit=True, opt=CODEGEN_OPT[light])
    module = optimize(llvm_ir, tm, light)
    optimized_ir = str(module)
    obj = tm.emit_object(module)
    if disk is not None:
        disk.put(key, obj, optimized_ir.encode("utf-8"))
    engine = _load_object(obj, cpu, optimized_ir)
    with _memo_lock:
        stats["builds"] += 1
    _log("build", key, f" ({(time.perf_counter() - start) * 1e3:.1f} ms, {len(obj)} bytes)")
    return CompiledModule(engine, key=key, source="build", optimized_ir=optimized_ir)


def clear_memory_cache() -> None:
    """Forget this process's memo (tests use it to reach the disk cache)."""
    with _memo_lock:
        _memo.clear()


# -- aliases: reaching a compiled module without rebuilding its IR --------------

def remember(alias_parts: tuple[str, ...], module: CompiledModule, payload: bytes,
             cache: ObjectCache | None = _DEFAULT, cpu: str = "native") -> None:  # type: ignore[assignment]
    """Record on disk that `alias_parts` (e.g. a program's source and options) compiles
    to `module`, with `payload` (what the caller needs to use it without the source)."""
    disk = default_cache() if cache is _DEFAULT else cache
    if disk is not None:
        disk.put(cache_key("", ("alias",) + alias_parts, cpu), module.key.encode("ascii"), payload)


def recall(alias_parts: tuple[str, ...], cache: ObjectCache | None = _DEFAULT,  # type: ignore[assignment]
           cpu: str = "native") -> tuple[bytes, CompiledModule] | None:
    """The payload and module remembered for `alias_parts`, or None (then compile anew)."""
    _process_setup()
    disk = default_cache() if cache is _DEFAULT else cache
    if disk is None:
        return None
    entry = disk.get_entry(cache_key("", ("alias",) + alias_parts, cpu))
    if entry is None:
        return None
    key_bytes, payload = entry
    key = key_bytes.decode("ascii", "replace")
    with _memo_lock:
        module = _memo.get(key)
    if module is None:
        with _llvm_lock:
            module = _from_disk(key, disk, cpu)
        if module is None:
            return None
        with _memo_lock:
            module = _memo.setdefault(key, module)
    return payload, module
