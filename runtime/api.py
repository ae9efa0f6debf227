"""The Python API: `compile`, `compile_file` and the `Function` they return."""
from __future__ import annotations

import operator
import os
import types
import threading
from typing import Any, Callable

import numpy as np

from chainrule.compiler.deepstack import run_deep
from chainrule.compiler.program import ArgInfo, Program, Signature, signature_of
from chainrule.grammar.source import Source
from chainrule.runtime import arguments

BACKENDS = ("numpy", "llvm")
DEFAULT_BACKEND = "llvm"


class Function:
    """A compiled program: call `value`, `grad` or `value_and_grad` with its arguments.

    Arguments go by keyword or by position in declaration order; Python numbers
    and sequences are accepted where arrays are. Symbolic dims are bound from
    the arrays' shapes and checked for consistency.
    """

    def __init__(self, signature: Signature, backend: Any, backend_name: str,
                 program: Callable[[], Program]):
        self.signature = signature
        self.backend_name = backend_name
        self._backend = backend
        self._program = program
        self._names = tuple(a.name for a in signature.args)
        self._n_args = len(self._names)
        self._by_name = operator.itemgetter(*self._names) if len(self._names) > 1 else \
            (lambda kw, names=self._names: tuple(kw[n] for n in names))
        self._n_out = len(signature.outputs)
        self._fast = getattr(backend, "fast", {})
        self.wrt = tuple(n for n, _ in signature.grads)
        self._checker = arguments.QuickCheck(signature)
        native_method = getattr(backend, "native_method", None)
        for attr, with_grad in (("value", False), ("value_and_grad", True)) if native_method else ():
            method = native_method(with_grad, types.MethodType(getattr(Function, attr), self),
                                   self.wrt)
            if method is not None:  # a program of floats: no Python frame per call
                setattr(self, attr, method)

    @property
    def program(self) -> Program:
        """The typed program (rebuilt from the source on first use after a disk-cache load)."""
        if callable(self._program):
            self._program = self._program()
        return self._program

    # ------------------------------------------------------------ introspection
    @property
    def name(self) -> str:
        return os.path.splitext(os.path.basename(self.signature.filename))[0]

    @property
    def args(self) -> tuple[ArgInfo, ...]:
        return self.signature.args

    @property
    def inputs(self) -> dict[str, str]:
        return {a.name: str(a.type) for a in self.signature.args if a.kind == "input"}

    @property
    def params(self) -> dict[str, str]:
        return {a.name: str(a.type) for a in self.signature.args if a.kind == "param"}

    @property
    def outputs(self) -> dict[str, str]:
        return {n: str(t) for n, t in self.signature.outputs}

    @property
    def dims(self) -> dict[str, int | None]:
        return dict(self.signature.dims)

    def __repr__(self) -> str:
        sig = ", ".join(f"{a.name}: {a.type}" for a in self.signature.args)
        outs = ", ".join(self.outputs)
        return f"<chainrule.Function {self.name}({sig}) -> {outs} [{self.backend_name}]>"

    # ------------------------------------------------------------------- calls
    def _prepare(self, positional: tuple, keywords: dict) -> tuple[dict, dict]:
        quick = self._checker.check(positional, keywords)
        if quick is not None:
            return quick
        sig = self.signature
        given = arguments.collect(sig.args, positional, keywords)
        arrays = {a.name: arguments.convert(a, given[a.name]) for a in sig.args}
        dims = arguments.bind(sig.args, arrays, sig.constraints, sig.symbolic_dims)
        return arrays, dims

    def _result(self, outputs: list, given: bool = False) -> Any:
        values = tuple(_scalar_or_array(v, given) for v in outputs)
        return values[0] if len(values) == 1 else values

    def _take_out(self, kwargs: dict) -> Any:
        # `out=` names result buffers unless the program has an argument called out
        return kwargs.pop("out", None) if "out" not in self._names else None

    def _call_fast(self, with_grad: bool, args: tuple, kwargs: dict):
        """Programs of f64 scalars: one native call that reads the Python floats.

        Returns None whenever the arguments are not exactly floats by position or
        by keyword (or `out=` is given); the validating path then runs (and
        explains any mistake).
        """
        fast = self._fast.get(with_grad)
        if fast is None:
            return None
        if kwargs:
            if args or len(kwargs) != self._n_args:
                return None
            try:
                args = self._by_name(kwargs)  # a tuple in declaration order, in C
            except KeyError:
                return None
        elif len(args) != self._n_args:
            return None
        return fast(args, np.float64) or None

    def value(self, *args: Any, **kwargs: Any) -> Any:
        """The outputs (a tuple when the program has several).

        `out={"loss": array, ...}` writes results into the caller's arrays.
        """
        fast = self._call_fast(False, args, kwargs)
        if fast is not None:
            return fast[0] if self._n_out == 1 else fast
        out = self._take_out(kwargs)
        arrays, dims = self._prepare(args, kwargs)
        buffers = arguments.out_buffers(self.signature, out, arrays, dims, False) \
            if out is not None else None
        outputs, _ = self._backend.run(arrays, dims, with_grad=False, out=buffers)
        return self._result(outputs, out is not None)

    def grad(self, *args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        """d(first output)/d(param) for every param (or every `wrt` param)."""
        return self.value_and_grad(*args, **kwargs)[1]

    def value_and_grad(self, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, np.ndarray]]:
        """(outputs, gradients); `out={"loss": a, "grad_W": b}` fills caller arrays."""
        fast = self._call_fast(True, args, kwargs)
        if fast is not None:
            n = self._n_out
            return (fast[0] if n == 1 else fast[:n]), dict(zip(self.wrt, fast[n:]))
        out = self._take_out(kwargs)
        arrays, dims = self._prepare(args, kwargs)
        buffers = arguments.out_buffers(self.signature, out, arrays, dims, True) \
            if out is not None else None
        outputs, grads = self._backend.run(arrays, dims, with_grad=True, out=buffers)
        given = out is not None
        return self._result(outputs, given), \
            {n: _scalar_or_array(g, given) for n, g in zip(self.wrt, grads)}

    __call__ = value


def _scalar_or_array(v: np.ndarray, given: bool = False) -> Any:
    """A 0-d result becomes a NumPy scalar, unless it is the caller's own out= array."""
    return v[()] if v.ndim == 0 and not given else v


def compile(source: str, *, backend: str | None = None, wrt: Any = None,
            filename: str = "<string>", dtype: str | None = None) -> Function:
    """Compile `.expr` source text. Raises `CompileError` with `.line` and `.column`.

    `wrt` narrows the gradient to some params (a name or a sequence of names);
    `dtype` ("f32"/"f64") overrides every declared dtype.
    """
    backend = backend or DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not isinstance(source, str):
        raise TypeError(f"source must be the program text (str), got {type(source).__name__}")
    if dtype not in (None, "f32", "f64"):
        raise ValueError(f"dtype must be 'f32' or 'f64' (or None to keep the declared ones), "
                         f"got {dtype!r}")
    if isinstance(wrt, str):
        wrt = (wrt,)
    wrt = None if wrt is None else tuple(wrt)
    key = (source, filename, backend, wrt, dtype)
    with _compiled_lock:  # compiling the same program twice in a process is free
        if key in _compiled:
            return _compiled[key]
    fn = run_deep(_build, source, filename, backend, wrt, dtype)
    with _compiled_lock:
        return _compiled.setdefault(key, fn)


def _build(source: str, filename: str, backend: str, wrt, dtype) -> Function:
    def program() -> Program:
        from chainrule.compiler.pipeline import build_program  # the parser loads on demand
        return build_program(Source(source, filename), wrt=wrt, dtype=dtype)

    if backend == "numpy":
        from chainrule.runtime.numpy_backend import NumpyBackend
        built = program()
        return Function(signature_of(built), NumpyBackend(built), backend, built)
    from chainrule.runtime.llvm_backend import LLVMBackend, compiler_fingerprint
    # a program compiled before, in any process, is called without recompiling it
    alias = ("program-v1", compiler_fingerprint(), source, filename, repr(wrt), repr(dtype))
    native = LLVMBackend.recall(alias)
    if native is not None:
        return Function(native.signature, native, backend, program)
    built = program()
    native = LLVMBackend.build(built, alias)
    return Function(native.signature, native, backend, built)


_compiled: dict[tuple, Function] = {}
_compiled_lock = threading.Lock()


def clear_cache() -> None:
    """Forget the functions compiled in this process (e.g. after changing a primitive's rule)."""
    with _compiled_lock:
        _compiled.clear()


def compile_file(path: str | os.PathLike, **options: Any) -> Function:
    """Compile a `.expr` file; errors name the file."""
    from chainrule.runtime.files import read_source
    return compile(read_source(path), filename=os.fspath(path), **options)
