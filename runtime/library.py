"""`load_library(path)`: an ahead-of-time library wrapped as the usual `Function`.

Why: the artifact a C program links is what should be tested, not the JIT's
copy of it. `chainrule check --library NAME.so` and the tests call the
library's own machine code through the same API (argument validation, dim
binding, out= buffers) by reading its `NAME_info()` description, so it works
for any library chainrule built, without its source.

The calling code is the JIT backend's (`LLVMBackend.run`), given a `compiled`
object that finds the functions in the library instead of in a JIT engine.
"""
from __future__ import annotations

import ctypes
import json
import os
import struct
from pathlib import Path

from chainrule.compiler.program import Signature
from chainrule.runtime.aot import INFO_FORMAT
from chainrule.runtime.llvm_backend import LLVMBackend


class LibraryError(ValueError):
    """The file is not a loadable chainrule library; the message says why (one line)."""


class SharedLibrary:
    """A loaded `.so` with the `address(symbol)` interface LLVMBackend calls through.

    The CDLL is kept alive by this object, so its functions stay valid as long
    as the Function built on it.
    """

    def __init__(self, path: str, cdll: ctypes.CDLL, name: str, info: dict):
        self.path = path
        self.cdll = cdll
        self.name = name
        self.info = info

    def address(self, symbol: str) -> int:
        try:
            return ctypes.cast(getattr(self.cdll, symbol), ctypes.c_void_p).value
        except AttributeError:
            raise KeyError(f"symbol {symbol!r} not found in {self.path}") from None


class LibraryBackend(LLVMBackend):
    """The JIT backend's calling code over a shared library's functions (no CPython wrappers)."""

    def __init__(self, signature: Signature, library: SharedLibrary):
        super().__init__(signature, library, library.name, fast=False)
        self.library = library

    @property
    def optimized_ir(self) -> str:
        raise AttributeError("a loaded library carries no LLVM IR")


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
