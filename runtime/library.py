"""`load_library(path)`: an ahead-of-time library wrapped as the usual `Function`.

Why: the artifact a C program links is what should be tested, not the JIT's
copy of it. `chainrule check --library NAME.so` and the tests call the
library's own machine code through the same API (argument validation, dim
binding, out= buffers) by reading its `NAME_info()` description, so it works
for any library chainrule built, without its source.

The backend is a small ctypes caller of the C ABI (compiler/codegen/abi.py),
independent of the JIT's call path, which uses JIT-only CPython wrappers.
"""
from __future__ import annotations

import ctypes
import json
import os
import struct
from pathlib import Path

import numpy as np

from chainrule.compiler.program import Signature
from chainrule.runtime.aot import INFO_FORMAT
from chainrule.runtime.native import Results, Workspaces, check_return_code


class LibraryError(ValueError):
    """The file is not a loadable chainrule library; the message says why (one line)."""


class SharedLibrary:
    """A loaded `.so`, its program NAME and its parsed NAME_info() description.

    The CDLL is kept alive by this object, so its functions stay valid as long
    as the Function built on it.
    """

    def __init__(self, path: str, cdll: ctypes.CDLL, name: str, info: dict):
        self.path = path
        self.cdll = cdll
        self.name = name
        self.info = info


class LibraryBackend:
    """Calls a library's C ABI through ctypes (`run` as every backend; no fast path).

    Arguments arrive validated by the API; here they are made contiguous,
    results allocated (or the caller's out= buffers used), and the call runs
    with the GIL released (ctypes releases it). Each thread keeps its own
    64-byte aligned workspace per size: concurrent calls never share one.
    """

    def __init__(self, signature: Signature, library: SharedLibrary):
        self.signature = signature
        self.fast: dict = {}  # the JIT's CPython-wrapper fast path does not exist here
        self.library = library
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        n_dims = len(signature.symbolic_dims)
        n_ptrs = len(signature.args) + len(signature.outputs)
        lib, name = library.cdll, library.name
        self._calls = {}
        for with_grad, suffix in ((True, "value_and_grad"), (False, "value")):
            fn = getattr(lib, f"{name}_{suffix}")
            fn.restype = ctypes.c_int
            fn.argtypes = [i64] * n_dims + [ptr] * (n_ptrs + len(signature.grads) * with_grad + 1)
            self._calls[with_grad] = fn
        work_size = getattr(lib, f"{name}_work_size")
        work_size.restype, work_size.argtypes = i64, [i64] * n_dims
        self.workspaces = Workspaces(work_size)
        self._outputs = Results(signature.outputs)
        self._grads = Results(signature.grads)

    def run(self, arrays: dict, dims: dict, with_grad: bool,
            out: tuple[list, list] | None = None) -> tuple[list, list]:
        sig = self.signature
        dim_values = tuple(dims[d] for d in sig.symbolic_dims)
        args = [np.ascontiguousarray(arrays[a.name]) for a in sig.args]
        given_out, given_grads = out if out is not None else (None, None)
        outputs = self._outputs.allocate(dims, given_out)
        grads = self._grads.allocate(dims, given_grads) if with_grad else []
        pointers = [a.ctypes.data for a in (*args, *outputs, *grads)]
        work = self.workspaces.get(dim_values) or None
        check_return_code(self._calls[with_grad](*dim_values, *pointers, work), "library call")
        return outputs, grads


def dynamic_symbols(path: str) -> list[str]:
    """Names of the defined symbols in an ELF64 little-endian file's .dynsym (empty if not ELF64)."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return []
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    names = []
    for _, sh_type, _, _, offset, size, link, _, _, entsize in sections:
        if sh_type != 11 or not entsize:  # SHT_DYNSYM
            continue
        strtab = sections[link]
        str_off = strtab[4]
        for k in range(size // entsize):
            st_name, _, _, st_shndx = struct.unpack_from("<IBBH", data, offset + k * entsize)
            if st_shndx != 0 and st_name:  # defined here
                end = data.index(b"\0", str_off + st_name)
                names.append(data[str_off + st_name:end].decode("utf-8", "replace"))
    return names


def _find_name(path: str, cdll: ctypes.CDLL) -> str:
    stem = Path(path).name.split(".")[0]
    if hasattr(cdll, f"{stem}_info"):
        return stem
    try:
        candidates = [s[:-len("_info")] for s in dynamic_symbols(path) if s.endswith("_info")]
    except (OSError, struct.error, IndexError, ValueError):
        candidates = []
    found = [c for c in candidates if hasattr(cdll, f"{c}_value_and_grad")]
    if len(found) != 1:
        raise LibraryError(f"'{path}' is not a chainrule library: "
                           + ("no NAME_info function found" if not found else
                              f"several programs in it ({', '.join(found)})"))
    return found[0]


def open_library(path: str | os.PathLike) -> SharedLibrary:
    """Load the library and read its NAME_info() description."""
    path = os.fspath(path)
    try:
        # a path with a slash: the loader must not search LD_LIBRARY_PATH for it
        cdll = ctypes.CDLL(os.path.abspath(path))
    except OSError as err:
        raise LibraryError(f"cannot load '{path}': {err}") from None
    name = _find_name(path, cdll)
    info_fn = getattr(cdll, f"{name}_info")
    info_fn.restype, info_fn.argtypes = ctypes.c_char_p, []
    try:
        info = json.loads(info_fn().decode("utf-8"))
        if info.get("format") != INFO_FORMAT:
            raise ValueError(f"format {info.get('format')!r}, expected {INFO_FORMAT!r}")
    except (ValueError, AttributeError) as err:
        raise LibraryError(f"'{path}': {name}_info() is not a chainrule description: {err}") \
            from None
    return SharedLibrary(path, cdll, name, info)


def load_library(path: str | os.PathLike):
    """Wrap an ahead-of-time library (`chainrule compile`) as a `Function`.

    `fn.value`, `fn.grad`, `fn.value_and_grad` call the library's own machine
    code; `fn.signature` comes from its `NAME_info()`. `fn.library` is the
    loaded library (its `.info` is the parsed description). There is no
    source program: `fn.program` raises.
    """
    from chainrule.runtime.api import Function

    library = open_library(path)
    try:
        signature = Signature.from_json(library.info["signature"])
    except (KeyError, TypeError, ValueError) as err:
        raise LibraryError(f"'{library.path}': unreadable signature in {library.name}_info(): "
                           f"{err}") from None

    def no_program():
        raise AttributeError(f"'{library.path}' is a compiled library: it has a signature "
                             f"but no source program")

    fn = Function(signature, LibraryBackend(signature, library), "library", no_program)
    fn.library = library
    return fn
