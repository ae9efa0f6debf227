"""Ahead-of-time compilation: a `.expr` program to `NAME.so`, `NAME.o`, `NAME.h`, `.ll`, `.s`.

Why: C and C++ programs (simulators, control loops, engines) cannot run
Python; they link a library. The library is the same C ABI the JIT calls
(compiler/codegen/abi.py), emitted as an object file by LLVM, plus
`NAME_info()`: a private constant string (JSON) and an exported function
returning its address, so a tool can introspect a library it did not build
(runtime/library.py does, to wrap one as a `Function`).

The object needs only libc and libm (malloc, free, memset, and math calls
LLVM lowers to libm). chainrule links the shared library itself with a
linker the machine has (a C compiler driver, or plain `ld`), with a version
script so that only the four NAME-prefixed functions are exported.

Everything is built in memory and in a private temporary directory first;
the files land in OUTDIR at the end, each written to a temporary file
beside its final name and moved over it with `os.replace`, so an
interrupted or failed build never leaves a half-written library nor
replaces an existing one.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable

from llvmlite import ir

from chainrule.compiler.codegen.loops import PTR
from chainrule.compiler.program import Signature, signature_of

EMIT_KINDS = ("so", "o", "h", "ll", "s")
DEFAULT_EMIT = ("so", "h")
INFO_FORMAT = "chainrule-library/1"
LINKER_DRIVERS = ("cc", "gcc", "clang")  # then plain `ld`
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class BuildError(Exception):
    """An ahead-of-time build could not be done; the message is one line for the user."""


# ------------------------------------------------------------------ options
def is_c_identifier(name: str) -> bool:
    return bool(_IDENTIFIER.match(name))


def c_identifier(text: str) -> str:
    """A file stem made into a C identifier: `my-net.v2` -> `my_net_v2`, `2layer` -> `_2layer`."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", text) or "program"
    return "_" + name if name[0].isdigit() else name


def parse_emit(text: str | Iterable[str]) -> tuple[str, ...]:
    """`so,h` -> ("so", "h"); raises BuildError naming a kind that is not one of EMIT_KINDS."""
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text)]
    kinds = [s for s in items if s]
    bad = [s for s in kinds if s not in EMIT_KINDS]
    if bad or not kinds:
        raise BuildError(f"--emit takes a comma-separated list of {', '.join(EMIT_KINDS)}; "
                         f"got '{text if isinstance(text, str) else ','.join(items)}'")
    return tuple(dict.fromkeys(kinds))


# ------------------------------------------------------------------ metadata
def _shape(shape) -> list:
    return [s if isinstance(s, int) else str(s) for s in shape]


def info_text(sig: Signature, name: str, *, source_name: str, source_sha256: str,
              target: str, version: str) -> str:
    """The JSON that NAME_info() returns: readable fields for C tools, plus the
    exact Signature (`signature`) that load_library needs to rebuild a Function."""
    data = {
        "format": INFO_FORMAT, "name": name, "chainrule": version, "target": target,
        "source": source_name, "source_sha256": source_sha256,
        "dims": [{"name": d, "size": v} for d, v in sig.dims],
        "args": [{"name": a.name, "kind": a.kind, "dtype": a.type.dtype,
                  "shape": _shape(a.type.shape)} for a in sig.args],
        "outputs": [{"name": n, "dtype": t.dtype, "shape": _shape(t.shape)}
                    for n, t in sig.outputs],
        "grads": [{"name": n, "dtype": t.dtype, "shape": _shape(t.shape)}
                  for n, t in sig.grads],
        "signature": sig.to_json(),
    }
    return json.dumps(data, separators=(",", ":"))


def info_module(name: str, text: str) -> str:
    """IR of `const char *NAME_info(void)` returning a private constant C string."""
    module = ir.Module(name=f"{name}.info")
    data = bytearray(text.encode("utf-8") + b"\0")
    array = ir.ArrayType(ir.IntType(8), len(data))
    blob = ir.GlobalVariable(module, array, f"{name}.info")
    blob.linkage = "private"
    blob.global_constant = True
    blob.unnamed_addr = True
    blob.initializer = ir.Constant(array, data)
    fn = ir.Function(module, ir.FunctionType(PTR, []), f"{name}_info")
    fn.attributes.add("nounwind")
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    builder.ret(builder.bitcast(blob, PTR))
    return str(module)


# ------------------------------------------------------------------ linking
def find_linker() -> list[str] | None:
    """The command that links a shared library: $CC, cc, gcc, clang, or plain ld; None if none."""
    if os.environ.get("CC", "").strip():
        cc = shlex.split(os.environ["CC"])
        if shutil.which(cc[0]):
            return cc
    for driver in LINKER_DRIVERS:
        found = shutil.which(driver)
        if found:
            return [found]
    found = shutil.which("ld")
    return [found] if found else None


def no_linker_message(name: str) -> str:
    return (f"cannot link {name}.so: no linker found on PATH (looked for $CC, "
            f"{', '.join(LINKER_DRIVERS)} and ld); install binutils or a C compiler, "
            f"or use --emit o,h and link {name}.o yourself")


def link_shared(obj: bytes, name: str, linker: list[str]) -> bytes:
    """Link `obj` into NAME.so; only the NAME_ functions are exported (version script)."""
    exported = [f"{name}_{s}" for s in ("value_and_grad", "value", "work_size", "info")]
    with tempfile.TemporaryDirectory(prefix="chainrule-link-") as tmp:
        o, so, script = (os.path.join(tmp, f"{name}.{ext}") for ext in ("o", "so", "map"))
        Path(o).write_bytes(obj)
        Path(script).write_text("{\n  global: " + "; ".join(exported) + ";\n  local: *;\n};\n")
        if os.path.basename(linker[0]) == "ld" or linker[0].endswith("/ld"):
            command = [*linker, "-shared", "-soname", f"{name}.so", "--version-script", script,
                       "-z", "noexecstack", "-o", so, o, "--as-needed", "-lm", "-lc"]
        else:
            command = [*linker, "-shared", f"-Wl,-soname,{name}.so",
                       f"-Wl,--version-script,{script}", "-Wl,-z,noexecstack", "-o", so, o,
                       "-Wl,--as-needed", "-lm"]
        try:
            done = subprocess.run(command, capture_output=True, text=True)
        except OSError as err:
            raise BuildError(f"cannot run the linker {linker[0]}: {err.strerror or err}") from None
        if done.returncode != 0 or not os.path.exists(so):
            detail = next((line for line in done.stderr.splitlines() if line.strip()),
                          f"exit status {done.returncode}")
            raise BuildError(f"linking {name}.so with {os.path.basename(linker[0])} failed: "
                             f"{detail.strip()}")
        return Path(so).read_bytes()


# ------------------------------------------------------------------ writing
def check_outdir(outdir: str) -> None:
    """Fail early (before compiling) when OUTDIR cannot hold the results."""
    path = os.path.abspath(outdir)
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise BuildError(f"cannot write to '{outdir}': '{probe}' is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise BuildError(f"cannot write to '{outdir}': permission denied")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(outdir: str, files: dict[str, bytes]) -> list[str]:
    """Write every file or none; returns the final paths, in `files` order.

    All files go to temporary files in OUTDIR first (a rename within one
    directory is atomic); existing files are kept as hard-linked backups until
    every rename has succeeded, so a failure at any point restores OUTDIR as
    it was (new directories included).
    """
    created: list[str] = []
    staged: list[tuple[str, str]] = []
    backups: dict[str, str] = {}
    replaced: list[str] = []
    try:
        path = os.path.abspath(outdir)
        missing = []
        while not os.path.isdir(path):
            missing.append(path)
            path = os.path.dirname(path)
        for d in reversed(missing):
            os.mkdir(d)
            created.append(d)
        mask = _umask()
        for filename, data in files.items():
            fd, tmp = tempfile.mkstemp(dir=outdir, prefix=f".{filename}.", suffix=".tmp")
            staged.append((tmp, os.path.join(outdir, filename)))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
                os.fchmod(f.fileno(), (0o777 if filename.endswith(".so") else 0o666) & ~mask)
        for _, final in staged:
            if os.path.lexists(final):
                backup = f"{final}.{os.getpid()}.bak"
                try:
                    os.link(final, backup)
                except OSError:  # a file system without hard links
                    shutil.copy2(final, backup)
                backups[final] = backup
        for tmp, final in staged:
            os.replace(tmp, final)
            replaced.append(final)
    except BaseException as err:  # Ctrl-C included: leave OUTDIR as it was
        _roll_back(staged, replaced, backups, created)
        if not isinstance(err, OSError):
            raise
        where = f" ({err.filename})" if err.filename else ""
        raise BuildError(f"cannot write to '{outdir}': {err.strerror or err}{where}") from None
    for backup in backups.values():
        _unlink(backup)
    return [final for _, final in staged]


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _roll_back(staged, replaced, backups, created) -> None:
    for tmp, _ in staged:
        _unlink(tmp)
    for final in replaced:
        if final in backups:
            try:
                os.replace(backups.pop(final), final)
            except OSError:
                pass
        else:
            _unlink(final)
    for backup in backups.values():
        _unlink(backup)
    for d in reversed(created):
        try:
            os.rmdir(d)
        except OSError:
            pass


# ------------------------------------------------------------------ the build
def build_artifacts(program, name: str, *, emit: tuple[str, ...], cpu: str = "native",
                    source_name: str | None = None) -> dict[str, bytes]:
    """The contents of NAME.<kind> for each kind of `emit`, built in memory."""
    from chainrule import __version__
    from chainrule.compiler.codegen.abi import build_module
    from chainrule.runtime import jit

    sig = signature_of(program)
    source_name = source_name or os.path.basename(program.source.filename)
    meta = dict(source_name=source_name,
                source_sha256=hashlib.sha256(program.source.text.encode("utf-8")).hexdigest(),
                target=jit.describe_target(cpu), version=__version__)
    contents: dict[str, bytes] = {}
    if {"so", "o", "ll", "s"} & set(emit):
        module = build_module(program, name, vector_bits=jit.gemm_vector_bits(cpu),
                              python_wrappers=False)
        assert tuple(module.dims) == sig.symbolic_dims, (module.dims, sig.symbolic_dims)
        code = jit.compile_object(module.llvm_ir, cpu=cpu, light=module.light,
                                  link=(info_module(name, info_text(sig, name, **meta)),),
                                  assembly="s" in emit)
        contents["o"] = code.object
        contents["ll"] = code.optimized_ir.encode("utf-8")
        if code.assembly is not None:
            contents["s"] = code.assembly.encode("utf-8")
        if "so" in emit:
            linker = find_linker()
            if linker is None:
                raise BuildError(no_linker_message(name))
            contents["so"] = link_shared(code.object, name, linker)
    if "h" in emit:
        from chainrule.runtime.header import render_header
        contents["h"] = render_header(sig, name, **meta).encode("utf-8")
    # a fixed order (so, o, h, ll, s), whatever the order of `emit`
    return {f"{name}.{kind}": contents[kind] for kind in EMIT_KINDS if kind in emit}


def compile_library(path: str | os.PathLike, outdir: str | os.PathLike, *,
                    name: str | None = None, emit: str | Iterable[str] = DEFAULT_EMIT,
                    cpu: str = "native", dtype: str | None = None,
                    wrt: Iterable[str] | None = None) -> list[str]:
    """Compile the program in `path` ahead of time into OUTDIR; returns the paths written.

    Options are checked before any compiling: `name` must be a C identifier
    (default: the file stem made into one), `emit` kinds among EMIT_KINDS,
    `cpu` "native", "generic" or an LLVM CPU name, OUTDIR writable, and a
    linker present when a `.so` is asked for. Raises BuildError (one line) or
    CompileError (a located mistake in the program).
    """
    from chainrule.compiler.pipeline import build_program
    from chainrule.grammar.source import Source
    from chainrule.runtime import jit
    from chainrule.runtime.files import read_source

    path, outdir = os.fspath(path), os.fspath(outdir)
    if name is None:
        name = c_identifier(Path(path).stem)
    elif not is_c_identifier(name):
        raise BuildError(f"--name must be a C identifier (letters, digits, _; not starting "
                         f"with a digit), got '{name}'")
    kinds = parse_emit(emit)
    if dtype not in (None, "f32", "f64"):
        raise BuildError(f"--dtype must be f32 or f64, got '{dtype}'")
    try:
        jit.target_machine(cpu, jit=False)
    except ValueError as err:
        raise BuildError(str(err)) from None
    check_outdir(outdir)
    if "so" in kinds and find_linker() is None:
        raise BuildError(no_linker_message(name))
    try:
        text = read_source(path)
    except OSError as err:
        raise BuildError(f"cannot read '{path}': {err.strerror or err}") from None
    try:
        program = build_program(Source(text, path), wrt=None if wrt is None else tuple(wrt),
                                dtype=dtype)
    except ValueError as err:  # wrt naming a non-param
        raise BuildError(str(err)) from None
    files = build_artifacts(program, name, emit=kinds, cpu=cpu)
    return write_atomically(outdir, files)

