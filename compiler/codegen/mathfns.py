"""Transcendentals as small out-of-line functions with vector variants.

Inlining a polynomial exp into every use makes big programs (the 300-step
chain) produce huge loop bodies and slow compiles. Instead each (op, dtype)
becomes one scalar function plus vector versions of it, all built from
`vmath` on scalars or vectors, and the scalar function carries the
`vector-function-abi-variant` attribute: LLVM's loop vectorizer then calls
the vector version for a whole vector of lanes. The code is emitted once per
module however often the op is used.
"""
from __future__ import annotations

from llvmlite import ir

from chainrule.compiler.codegen import vmath
from chainrule.compiler.codegen.loops import FLOAT_TYPES

LANES = {"f64": (2, 4, 8), "f32": (4, 8, 16)}
_PURE = ("nounwind", "willreturn", "memory(none)")


def _attributes(fn: ir.Function, extra: tuple[str, ...]) -> None:
    for attr in _PURE + extra:
        set.add(fn.attributes, attr)  # llvmlite validates only the classic keywords


def _keep_alive(module: ir.Module, fns: list[ir.Function]) -> None:
    """List the variants in @llvm.compiler.used, or dead-code elimination drops them
    before the vectorizer runs (nothing calls them until it does)."""
    old = module.globals.get("llvm.compiler.used")
    kept = list(old.initializer.constant) if old is not None else []
    if old is not None:
        del module.globals["llvm.compiler.used"]
        module.scope._useset.discard("llvm.compiler.used")
    kept += fns
    arr = ir.ArrayType(ir.PointerType(), len(kept))
    used = ir.GlobalVariable(module, arr, "llvm.compiler.used")
    used.linkage = "appending"
    used.section = "llvm.metadata"
    used.initializer = ir.Constant(arr, kept)


def math_function(module: ir.Module, op: str, dtype: str) -> ir.Function:
    """The scalar function `cr_<op>_<dtype>`, defining its vector variants on first use."""
    name = f"cr_{op}_{dtype}"
    if name in module.globals:
        return module.globals[name]
    T = FLOAT_TYPES[dtype]
    variants = []
    for lanes in LANES[dtype]:
        vt = ir.VectorType(T, lanes)
        vname = f"{name}_v{lanes}"
        vfn = ir.Function(module, ir.FunctionType(vt, [vt]), vname)
        vfn.linkage = "internal"
        _attributes(vfn, ())
        b = ir.IRBuilder(vfn.append_basic_block("entry"))
        b.ret(vmath.EMITTERS[op](b, vfn.args[0]))
        variants.append(f"_ZGV_LLVM_N{lanes}v_{name}({vname})")
    _keep_alive(module, [module.globals[f"{name}_v{lanes}"] for lanes in LANES[dtype]])
    fn = ir.Function(module, ir.FunctionType(T, [T]), name)
    fn.linkage = "internal"
    # noinline: the vectorizer must see the call to swap in a vector variant
    _attributes(fn, ("noinline", f'"vector-function-abi-variant"="{",".join(variants)}"'))
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    b.ret(vmath.EMITTERS[op](b, fn.args[0]))
    return fn
