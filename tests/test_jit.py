"""The JIT engine: compile, call, vectorise, memoise, target machines."""

from __future__ import annotations

import ctypes
import os
import re
import threading
import uuid

import numpy as np
import pytest
from llvmlite import ir

import chainrule
from chainrule.runtime import api, jit
from chainrule.runtime.cache import ObjectCache

F64 = ir.DoubleType()
I64 = ir.IntType(64)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Keep the default disk cache out of the user's home directory."""
    monkeypatch.setenv("CHAINRULE_CACHE_DIR", str(tmp_path / "default-cache"))
    monkeypatch.delenv("CHAINRULE_CACHE", raising=False)


def unique() -> tuple[str, ...]:
    """Key parts no other test shares, so the in-process memo cannot interfere."""
    return ("test", uuid.uuid4().hex)


def add_module() -> ir.Module:
    """double add(double a, double b) { return a + b; }"""
    mod = ir.Module(name="add")
    fn = ir.Function(mod, ir.FunctionType(F64, [F64, F64]), name="add")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    b.ret(b.fadd(*fn.args))
    return mod


def mul_loop_module() -> ir.Module:
    """void vmul(double* a, double* b, double* c, i64 n) { for i<n: c[i] = a[i]*b[i]; }"""
    mod = ir.Module(name="vmul")
    ptr = F64.as_pointer()
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [ptr, ptr, ptr, I64]), name="vmul")
    a, bb, c, n = fn.args
    for arg in (a, bb, c):
        arg.add_attribute("noalias")
    entry, cond, body, end = (fn.append_basic_block(name)
                              for name in ("entry", "for.cond", "for.body", "for.end"))
    b = ir.IRBuilder(entry)
    b.branch(cond)
    b.position_at_end(cond)
    i = b.phi(I64, name="i")
    i.add_incoming(ir.Constant(I64, 0), entry)
    b.cbranch(b.icmp_signed("<", i, n), body, end)
    b.position_at_end(body)
    x = b.load(b.gep(a, [i]))
    y = b.load(b.gep(bb, [i]))
    b.store(b.fmul(x, y), b.gep(c, [i]))
    i.add_incoming(b.add(i, ir.Constant(I64, 1), flags=("nsw",)), body)
    b.branch(cond)
    b.position_at_end(end)
    b.ret_void()
    return mod


VMUL = ctypes.CFUNCTYPE(None, *([ctypes.POINTER(ctypes.c_double)] * 3), ctypes.c_int64)


def call_vmul(cm: jit.CompiledModule, n: int = 37) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    c = np.zeros(n)
    as_ptr = lambda arr: arr.ctypes.data_as(ctypes.POINTER(ctypes.c_double))  # noqa: E731
    VMUL(cm.address("vmul"))(as_ptr(a), as_ptr(b), as_ptr(c), n)
    np.testing.assert_array_equal(c, a * b)


def test_add_compiles_and_calls(tmp_path):
    cm = jit.compile_ir(str(add_module()), key_parts=unique(), cache=ObjectCache(tmp_path))
    add = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double, ctypes.c_double)(cm.address("add"))
    assert add(1.5, 2.25) == 3.75
    assert "define" in cm.optimized_ir and "@add" in cm.optimized_ir


def test_loop_is_vectorized_and_correct():
    cm = jit.compile_ir(str(mul_loop_module()), key_parts=unique(), cache=None)
    assert re.search(r"<(2|4|8|16) x double>", cm.optimized_ir), cm.optimized_ir
    call_vmul(cm)


def test_generic_cpu_compiles_baseline_code():
    cm = jit.compile_ir(str(mul_loop_module()), key_parts=unique(), cache=None, cpu="generic")
    # x86-64 baseline is SSE2: two doubles per vector, nothing wider.
    assert "<2 x double>" in cm.optimized_ir
    assert "<4 x double>" not in cm.optimized_ir
    call_vmul(cm)


def test_memory_memo_returns_same_module():
    text, parts = str(add_module()), unique()
    first = jit.compile_ir(text, key_parts=parts, cache=None)
    before = dict(jit.stats)
    second = jit.compile_ir(text, key_parts=parts, cache=None)
    assert second is first
    assert jit.stats["memory_hits"] == before["memory_hits"] + 1
    assert jit.stats["builds"] == before["builds"]


def test_key_parts_change_the_key():
    text = str(add_module())
    assert jit.cache_key(text, ("a",)) != jit.cache_key(text, ("b",))
    assert jit.cache_key(text, ("a", "b")) != jit.cache_key(text, ("ab",))
    assert jit.cache_key(text, ("a",)) == jit.cache_key(text, ("a",))


def test_missing_symbol_raises_keyerror():
    cm = jit.compile_ir(str(add_module()), key_parts=unique(), cache=None)
    with pytest.raises(KeyError, match="nope"):
        cm.address("nope")


def test_threads_compile_same_key_once(tmp_path):
    text, parts = str(mul_loop_module()), unique()
    cache = ObjectCache(tmp_path)
    barrier = threading.Barrier(8)
    results: list[jit.CompiledModule] = []
    errors: list[BaseException] = []
    before = dict(jit.stats)

    def worker() -> None:
        try:
            barrier.wait()
            cm = jit.compile_ir(text, key_parts=parts, cache=cache)
            call_vmul(cm)
            results.append(cm)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 8 and all(r is results[0] for r in results)
    assert jit.stats["builds"] == before["builds"] + 1
    assert jit.stats["memory_hits"] == before["memory_hits"] + 7


def test_capi_symbols_resolve_from_process():
    """JIT code calls PyFloat_FromDouble and returns a new Python float."""
    mod = ir.Module(name="capi")
    obj = ir.IntType(8).as_pointer()
    box = ir.Function(mod, ir.FunctionType(obj, [F64]), name="PyFloat_FromDouble")
    fn = ir.Function(mod, ir.FunctionType(obj, [obj, obj]), name="make_float")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    b.ret(b.call(box, [ir.Constant(F64, 2.5)]))
    assert jit.capi_resolvable()
    cm = jit.compile_ir(str(mod), key_parts=unique(), cache=None)
    make_float = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.py_object, ctypes.py_object)(
        cm.address("make_float"))
    assert make_float(None, ()) == 2.5


@pytest.mark.skipif(not jit.has_libmvec() or "+avx2" not in jit.host_cpu()[1],
                    reason="needs glibc libmvec and AVX2")
def test_libmvec_vector_exp_links():
    vec = ir.VectorType(F64, 4)
    mod = ir.Module(name="mvec")
    vexp = ir.Function(mod, ir.FunctionType(vec, [vec]), name="_ZGVdN4v_exp")
    ptr = F64.as_pointer()
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [ptr, ptr]), name="exp4")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    src = b.bitcast(fn.args[0], vec.as_pointer())
    dst = b.bitcast(fn.args[1], vec.as_pointer())
    b.store(b.call(vexp, [b.load(src, align=8)]), dst, align=8)
    b.ret_void()
    cm = jit.compile_ir(str(mod), key_parts=unique(), cache=None)
    x, y = np.array([0.0, 1.0, -2.0, 0.5]), np.zeros(4)
    p = ctypes.POINTER(ctypes.c_double)
    ctypes.CFUNCTYPE(None, p, p)(cm.address("exp4"))(x.ctypes.data_as(p), y.ctypes.data_as(p))
    np.testing.assert_allclose(y, np.exp(x), rtol=1e-15)


def test_target_machine_generic_native_and_named():
    mod = jit.optimize(str(add_module()), jit.target_machine("generic", jit=False))
    assert jit.target_machine("generic", jit=False).emit_object(mod)[:4] == b"\x7fELF"
    assert jit.target_machine(jit=True) is not jit.target_machine(jit=True)  # always fresh
    assert "znver4" in jit.known_cpus() and "x86-64" in jit.known_cpus()
    jit.target_machine("znver4", jit=False)


@pytest.mark.parametrize("name", ["bogus", "help", ""])
def test_unknown_cpu_raises_valueerror(name):
    with pytest.raises(ValueError, match="unknown CPU"):
        jit.target_machine(name, jit=True)


def test_host_cpu_is_cached_pair():
    name, features = jit.host_cpu()
    assert name and isinstance(features, str)
    assert jit.host_cpu() is jit.host_cpu()


def test_invalid_ir_raises():
    with pytest.raises(RuntimeError):
        jit.compile_ir("define i32 @f() { ret double 1.0 }", key_parts=unique(), cache=None)


# A fuzz program (seed 300092) whose summing loop reads a concat through clamped
# indices: LLVM cannot vectorize it although asked to, and says so on stderr.
UNVECTORIZABLE_SUM = """dim K = 32
dim L = 2
param w0: f64[2]
input x1: f32[32]
param w2: f64[32, 32, 2]
t1 = reshape(x1, [16, L])
t2 = concat([x1, tanh(x1), tanh(x1)])
t3 = square(t2)
t4 = (1 + square(t3)) ** -0.5
t5 = tan(sigmoid(w0))
t6 = w0[1:] - w0[:-1]
m7 = t3 < 7
t8 = maximum(t4, t4)
t9 = t8 @ t8
t10 = square(t6)
t11 = t1[:, 1]
t12 = log(abs(t9) + 0.5)
t13 = t12 / (1 + square(t12))
t14 = cos(t11)
t15 = tanh(t4)
t16 = w0[0]
t17 = where(t15 < t12, t15, f32(t16))
t18 = where(m7, f32(t6), t17)
t19 = logsumexp(t4, axis=-1, keepdims=true)
t20 = t17[1:]
t21 = t11 @ t1
t22 = where(t12 <= f32(t16), f32(t16), t20)
t23 = (t9 * t21) * 1e-3
m24 = t19 != t23
t25 = expm1(t10)
t26 = t23 + t23
t27 = min(t10, axis=0, keepdims=true)
t28 = minimum(t4, t3)
loss = sum(sin(t28)) + 0.5 * t12 * t12 + f32(sum(t27 * t6))
output loss, t27, t28
"""


def test_vectorizer_remarks_are_not_printed(capfd, monkeypatch):
    monkeypatch.setenv("CHAINRULE_CACHE", "0")  # LLVM must really run
    api.clear_cache()
    jit.clear_memory_cache()
    chainrule.compile(UNVECTORIZABLE_SUM, backend="llvm")
    assert "not vectorized" not in capfd.readouterr().err


def test_other_stderr_output_passes_through_the_remark_filter(capfd):
    with jit._without_vectorizer_remarks():
        os.write(2, b"remark: <unknown>:0:0: loop not vectorized: x\nsomething else\n")
    err = capfd.readouterr().err
    assert "something else" in err and "not vectorized" not in err
