"""The native backend: the program's C ABI functions, JIT-compiled, called from Python.

Arguments are validated once by the API; here they are made contiguous (a
strided or Fortran-ordered array is copied, never misread), outputs are
allocated, and the native function runs with the GIL released (ctypes
releases it). Each thread keeps its own workspace per size, so concurrent
calls never share scratch memory.

A compiled program is remembered on disk under its source and options, with
its signature: a later process calls it without parsing, lowering or
building IR again.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import pathlib
import sys
from typing import Callable

import numpy as np

from chainrule.compiler.program import Program, Signature, signature_of
from chainrule.runtime import jit
from chainrule.runtime.native import Results, Workspaces, check_return_code

class _PyMethodDef(ctypes.Structure):
    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p),
                ("ml_flags", ctypes.c_int), ("ml_doc", ctypes.c_char_p)]


_METH_FASTCALL, _METH_KEYWORDS = 0x0080, 0x0002
# the object layouts the vectorcall wrapper reads (a tuple's items at offset 24)
_VECTORCALL_LAYOUT = sys.implementation.name == "cpython" and tuple.__basicsize__ == 24 \
    and tuple.__itemsize__ == 8 and hasattr(ctypes.pythonapi, "PyObject_Vectorcall")
_new_cfunction = ctypes.pythonapi.PyCFunction_NewEx
_new_cfunction.restype = ctypes.py_object
_new_cfunction.argtypes = [ctypes.c_void_p, ctypes.py_object, ctypes.py_object]


class LLVMBackend:
    def __init__(self, signature: Signature, compiled: jit.CompiledModule, name: str,
                 fast: bool):
        self.signature = signature
        self.compiled = compiled
        self.name = name
        dims = signature.symbolic_dims
        i64 = ctypes.c_int64
        # native(tuple of dims, arrays and the workspace address) -> return code
        self._calls = {flag: ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.py_object)(
            compiled.address(f"{name}_{suffix}_arrays"))
            for flag, suffix in ((True, "value_and_grad"), (False, "value"))}
        self.workspaces = Workspaces(ctypes.CFUNCTYPE(i64, *([i64] * len(dims)))(
            compiled.address(f"{name}_work_size")))
        self._arg_names = tuple(a.name for a in signature.args)
        self._dims = signature.symbolic_dims
        self._outputs = Results(signature.outputs)
        self._grads = Results(signature.grads)
        self.fast = {}
        self._methods = {}
        if fast and np.float64.__basicsize__ == 24:
            for with_grad, suffix in ((True, "value_and_grad"), (False, "value")):
                native = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.py_object, ctypes.py_object)(
                    compiled.address(f"{name}_{suffix}_py"))
                self.fast[with_grad] = native  # called as native(args_tuple, numpy.float64)
                if _VECTORCALL_LAYOUT:
                    self._methods[with_grad] = compiled.address(f"{name}_{suffix}_vcall")

    def native_method(self, with_grad: bool, fallback: Callable, grad_names: tuple[str, ...]
                      ) -> Callable | None:
        """The program of scalars as a builtin method taking its floats by keyword or
        position with no Python frame (codegen/pywrap.py emit_vectorcall_wrapper);
        `fallback` serves every other call. None where the layout is not CPython's."""
        address = self._methods.get(with_grad)
        if address is None:
            return None
        suffix = b"value_and_grad" if with_grad else b"value"
        definition = _PyMethodDef(suffix, address, _METH_FASTCALL | _METH_KEYWORDS, None)
        names = tuple(sys.intern(n) for n in self._arg_names)
        state = (names, fallback, np.float64, grad_names, definition)  # keeps the def alive
        return _new_cfunction(ctypes.addressof(definition), state, None)

    @classmethod
    def build(cls, program: Program, alias: tuple[str, ...] | None = None,
              cpu: str = "native") -> "LLVMBackend":
        """Compile `program`; with `alias`, remember it on disk for `recall`."""
        from chainrule.compiler.codegen.abi import build_module, scalar_only  # not on recall
        digest = hashlib.sha256(program.source.text.encode()).hexdigest()[:12]
        name = f"cr_{digest}"
        module = build_module(program, name, python_wrappers=True)
        compiled = jit.compile_ir(module.llvm_ir, key_parts=(name,), cpu=cpu, light=module.light)
        signature = signature_of(program)
        fast = scalar_only(module.program)
        if alias is not None:
            payload = {"signature": signature.to_json(), "name": name, "fast": fast}
            jit.remember(alias, compiled, json.dumps(payload).encode(), cpu=cpu)
        return cls(signature, compiled, name, fast)

    @classmethod
    def recall(cls, alias: tuple[str, ...], cpu: str = "native") -> "LLVMBackend | None":
        found = jit.recall(alias, cpu=cpu)
        if found is None:
            return None
        payload, compiled = found
        try:
            data = json.loads(payload)
            return cls(Signature.from_json(data["signature"]), compiled, data["name"],
                       bool(data["fast"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # an entry from another format: compile anew

    @property
    def optimized_ir(self) -> str:
        return self.compiled.optimized_ir

    def run(self, arrays: dict, dims: dict, with_grad: bool,
            out: tuple[list, list] | None = None) -> tuple[list, list]:
        """Call the native function; `out` holds caller buffers (checked) or None per result."""
        dim_values = tuple(dims[d] for d in self._dims)
        args = [a if a.flags.c_contiguous else np.ascontiguousarray(a)
                for a in map(arrays.__getitem__, self._arg_names)]
        outputs = self._outputs.allocate(dims, out[0] if out is not None else None)
        grads = self._grads.allocate(dims, out[1] if out is not None else None) \
            if with_grad else []
        work = self.workspaces.get(dim_values)
        check_return_code(self._calls[with_grad]((*dim_values, *args, *outputs, *grads, work)),
                          "native call")
        return outputs, grads


@functools.lru_cache(maxsize=1)
def compiler_fingerprint() -> str:
    """A hash of chainrule's own code: a remembered program is reused only by the
    compiler that built it (a changed rule or pass must not meet stale machine code)."""
    root = pathlib.Path(__file__).resolve().parent.parent
    files = [p for sub in ("grammar", "compiler", "runtime") for p in (root / sub).rglob("*")
             if p.suffix in (".py", ".lark")]
    digest = hashlib.sha256()
    for path in sorted(files + list(root.glob("*.py"))):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


