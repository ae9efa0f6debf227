"""The native backend: the program's C ABI functions, JIT-compiled, called from Python.

Arguments are validated once by the API; here they are made contiguous (a
strided or Fortran-ordered array is copied, never misread), outputs are
allocated (or taken from `out=`), and the native function runs with the GIL
released (ctypes releases it). Each thread keeps its own workspace per size,
so concurrent calls never share scratch memory.
"""
from __future__ import annotations

import ctypes
import hashlib
import threading

import numpy as np

from chainrule.compiler.codegen.abi import build_module, scalar_only
from chainrule.compiler.program import Program
from chainrule.runtime import jit

_ERRORS = {1: "dims are negative or too small for the program's slices",
           2: "the workspace could not be allocated"}


class LLVMBackend:
    def __init__(self, program: Program, cpu: str = "native"):
        self.program = program
        digest = hashlib.sha256(program.source.text.encode()).hexdigest()[:12]
        self.name = f"cr_{digest}"
        self.module = build_module(program, self.name, python_wrappers=True)
        self.compiled = jit.compile_ir(self.module.llvm_ir, key_parts=(self.name,), cpu=cpu,
                                       light=self.module.huge)
        n_dims = len(self.module.dims)
        n_args = len(program.args)
        n_out = len(program.outputs)
        n_grad = len(program.grads)
        ptrs = [ctypes.c_void_p]
        self._value = ctypes.CFUNCTYPE(ctypes.c_int, *([ctypes.c_int64] * n_dims),
                                       *(ptrs * (n_args + n_out + 1)))(
            self.compiled.address(f"{self.name}_value"))
        self._value_and_grad = ctypes.CFUNCTYPE(ctypes.c_int, *([ctypes.c_int64] * n_dims),
                                                *(ptrs * (n_args + n_out + n_grad + 1)))(
            self.compiled.address(f"{self.name}_value_and_grad"))
        self._work_size = ctypes.CFUNCTYPE(ctypes.c_int64, *([ctypes.c_int64] * n_dims))(
            self.compiled.address(f"{self.name}_work_size"))
        self._local = threading.local()
        self.fast = {}
        if scalar_only(self.module.program) and np.float64.__basicsize__ == 24:
            for with_grad, suffix in ((True, "value_and_grad"), (False, "value")):
                native = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.py_object, ctypes.py_object)(
                    self.compiled.address(f"{self.name}_{suffix}_py"))
                self.fast[with_grad] = native  # called as native(args_tuple, numpy.float64)

    @property
    def optimized_ir(self) -> str:
        return self.compiled.optimized_ir

    def workspace(self, dims: tuple[int, ...]) -> int:
        """A 64-byte aligned scratch buffer for this thread, reused across calls."""
        size = int(self._work_size(*dims))
        if size == 0:
            return 0
        cache = getattr(self._local, "buffers", None)
        if cache is None:
            cache = self._local.buffers = {}
        buf = cache.get(size)
        if buf is None:
            if len(cache) > 4:
                cache.clear()
            raw = np.empty(size + 64, dtype=np.uint8)
            offset = (-raw.ctypes.data) % 64
            buf = cache[size] = (raw, raw.ctypes.data + offset)
        return buf[1]

    def run(self, arrays: dict, dims: dict, with_grad: bool) -> tuple[list, list]:
        program = self.program
        dim_values = tuple(dims[d] for d in self.module.dims)
        args = [np.ascontiguousarray(arrays[a.name]) for a in program.args]
        from chainrule.compiler.shapes import eval_shape
        outputs = [np.empty(eval_shape(n.shape, dims), dtype=_np(n.dtype))
                   for _, n in program.outputs]
        grads = [np.empty(eval_shape(n.shape, dims), dtype=_np(n.dtype))
                 for _, n in program.grads] if with_grad else []
        pointers = [a.ctypes.data for a in args] + [o.ctypes.data for o in outputs] + \
                   [g.ctypes.data for g in grads]
        work = self.workspace(dim_values)
        fn = self._value_and_grad if with_grad else self._value
        rc = fn(*dim_values, *pointers, work or None)
        if rc:
            raise ValueError(f"native call failed: {_ERRORS.get(rc, f'error code {rc}')}")
        return outputs, grads


def _np(dtype: str):
    return np.float32 if dtype == "f32" else np.float64
