"""The C ABI of a compiled program, and the LLVM module that implements it.

For a program NAME:
    int     NAME_value_and_grad(<dims>, <args>, <outputs>, <grads>, void *work);
    int     NAME_value(<dims>, <args>, <outputs>, void *work);
    int64_t NAME_work_size(<dims>);
<dims> is `int64_t D` per symbolic dim in declaration order, <args> `const T *name`
per input and param in declaration order, <outputs> `T *out_name` per output,
<grads> `T *grad_name` per differentiated param; T is float or double, arrays
dense and row-major. `work` holds at least NAME_work_size(dims) bytes aligned
to 64, or is NULL (the function then allocates its own). Returns 0, 1 for
negative or too small dims, 2 when an allocation fails.
"""
from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from chainrule.compiler.codegen.emit import FunctionEmitter, Sizes, workspace_layout
from chainrule.compiler.codegen.loops import I32, I64, PTR
from chainrule.compiler.codegen.matmul import emit_gemm
from chainrule.compiler.codegen.pywrap import (emit_array_wrapper, emit_vectorcall_wrapper,
                                               emit_wrapper)
from chainrule.compiler.deepstack import run_deep
from chainrule.compiler.matvec import matvec_to_reductions
from chainrule.compiler.program import Program
from chainrule.compiler.schedule import Plan, plan


HUGE_LOOP_BODY = 400  # nodes in one loop body


@dataclass
class Module:
    """The LLVM IR text of a program and what a caller needs to know to call it."""

    name: str
    llvm_ir: str
    dims: tuple[str, ...]
    plans: dict[bool, Plan]
    program: Program  # as compiled (after codegen preparation)
    light: int  # effort for jit.optimize / the code generator: 0 full, 1 or 2 (see below)


def _signature(program: Program, dims, with_grad: bool) -> ir.FunctionType:
    n_ptrs = len(program.args) + len(program.outputs) + (len(program.grads) if with_grad else 0)
    return ir.FunctionType(I32, [I64] * len(dims) + [PTR] * n_ptrs + [PTR])


def scalar_only(program: Program) -> bool:
    """Every argument, output and gradient is an f64 scalar: the CPython wrapper applies."""
    nodes = [n for _, n in program.outputs] + [n for _, n in program.grads]
    return not program.symbolic_dims and \
        all(a.type.shape == () and a.type.dtype == "f64" for a in program.args) and \
        all(n.shape == () and n.dtype == "f64" for n in nodes)


def build_module(program: Program, name: str, vector_bits: int | None = None,
                 python_wrappers: bool = False) -> Module:
    """The LLVM module of `program` (emission recurses along expressions: big stack)."""
    return run_deep(_build_module, program, name, vector_bits, python_wrappers)


def _build_module(program: Program, name: str, vector_bits: int | None,
                  python_wrappers: bool) -> Module:
    program = matvec_to_reductions(program)
    dims = program.symbolic_dims
    module = ir.Module(name=name)
    plans = {flag: plan(program, flag) for flag in (True, False)}
    dtypes = sorted({k.items[0].node.dtype for p in plans.values() for k in p.kernels
                     if k.kind == "matmul"})
    gemm, gemm_pack = {}, {}
    for dtype in dtypes:
        gemm[dtype] = emit_gemm(module, f"{name}.gemm_{dtype}", dtype, vector_bits,
                                linkage="internal")
        gemm_pack[dtype] = module.globals[f"{name}.gemm_{dtype}_pack_bytes"]
    largest = 0
    for with_grad, suffix in ((True, "value_and_grad"), (False, "value")):
        fn = ir.Function(module, _signature(program, dims, with_grad), f"{name}_{suffix}")
        n_dims = len(dims)
        for i, arg in enumerate(fn.args):
            if i >= n_dims:  # callers pass distinct arrays and a private workspace
                arg.add_attribute("noalias")
        fn.attributes.add("nounwind")
        largest = max(largest, FunctionEmitter(fn, plans[with_grad], program, dims, gemm,
                                               gemm_pack).run())
        n_results = len(program.outputs) + (len(program.grads) if with_grad else 0)
        if python_wrappers:
            emit_array_wrapper(module, f"{name}_{suffix}_arrays", fn, len(dims),
                               len(program.args) + n_results)
        if python_wrappers and scalar_only(program):
            emit_wrapper(module, f"{name}_{suffix}_py", fn, len(program.args), n_results)
            emit_vectorcall_wrapper(module, f"{name}_{suffix}_vcall", fn, len(program.args),
                                    len(program.outputs), n_results - len(program.outputs))
    _emit_work_size(module, name, program, dims, plans, gemm_pack)
    return Module(name, str(module), dims, plans, program, _effort(largest, bool(gemm)))


def _effort(largest_body: int, has_gemm: bool) -> int:
    """0: the full pipeline. 1: a body so long (a 300-step elementwise chain, a
    10,000-line scalar program) that unrolling and scheduling it only cost
    compile time. 2: also select instructions the fast way (SelectionDAG is
    superlinear in a block's length: seconds for a 3,000-line scalar program),
    unless a GEMM micro-kernel, which needs the full code generator, is present."""
    if largest_body <= HUGE_LOOP_BODY:
        return 0
    return 1 if has_gemm else 2


def describe_kernels(program: Program) -> str:
    """The fused schedule that the native code runs, value and value-and-grad."""
    prepared = matvec_to_reductions(program)
    parts = []
    for with_grad, title in ((False, "value"), (True, "value and grad")):
        p = plan(prepared, with_grad)
        parts.append(f"# {title}: {len(p.kernels)} kernels, {len(p.work)} workspace buffers\n"
                     + p.describe(prepared.names))
    return "\n\n".join(parts) + "\n"


def _emit_work_size(module, name, program, dims, plans, gemm_pack) -> None:
    fn = ir.Function(module, ir.FunctionType(I64, [I64] * len(dims)), f"{name}_work_size")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    sizes = Sizes(b, dict(zip(dims, fn.args)))

    largest = ir.Constant(I64, 0)
    for p in plans.values():
        total = workspace_layout(sizes, p, gemm_pack)[0]
        largest = b.select(b.icmp_signed(">", total, largest), total, largest)
    b.ret(b.select(sizes.overflow, ir.Constant(I64, -1), largest))  # -1: sizes exceed int64
