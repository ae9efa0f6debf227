"""vmath emitters: accuracy in ulps against NumPy, IEEE special values, and that
the loop `for i < n: y[i] = op(x[i])` is vectorized by LLVM.  The loop calls op
as the backend does (compiler/codegen/mathfns.py: a scalar function whose vector
variants the loop vectorizer swaps in), so both are checked.

Reference: float64 inputs are checked against NumPy in long double (x87 80-bit,
11 extra bits), float32 inputs against NumPy in float64.  `python
tests/test_vmath.py` prints speed per element against NumPy.
"""
import ctypes
import re

import numpy as np
import pytest
import llvmlite.binding as llvm
from llvmlite import ir

from chainrule.compiler.codegen import vmath
from chainrule.compiler.codegen.mathfns import math_function

llvm.initialize_native_target()
llvm.initialize_native_asmprinter()

IR_TYPE = {np.float64: ir.DoubleType(), np.float32: ir.FloatType()}
OPS = sorted(vmath.EMITTERS)
TRIG = {"sin", "cos", "tan"}
# (m, e): the doubles m * 2**e beyond TRIG_MAX closest to a multiple of pi/2, found
# by continued fractions of 2**e * 2/pi (mpmath, 3000 bits); |r| = |x - n*pi/2| in
# the comments.  The first is the closest of all doubles (Kahan/McDonald).
TRIG_HARD = [(6381956970095103, 797),    # 4.69e-19
             (6381956970095103, 798),    # 9.37e-19
             (5916243447979695, 79),     # 1.82e-18
             (8444920710073313, 939),    # 2.01e-18
             (5850965514341686, 525),    # 2.49e-18
             (8160885118204141, 808),    # 3.15e-18
             (8360820580228475, 628)]    # 3.26e-18

# max ulp error allowed; measured maxima (f64 / f32) in the comments
MAX_ULP = {"exp": 1.25,       # 0.96 / 0.93
           "expm1": 1.0,      # 0.89 / 0.71
           "log": 1.0,        # 0.77 / 0.76
           "log1p": 1.0,      # 0.75 / 0.74
           "tanh": 2.5,       # 2.21 / 2.04
           "sigmoid": 2.5,    # 1.99 / 1.99
           "softplus": 1.75,  # 1.45 / 1.46
           "sin": 1.0,        # 0.78 / 0.50
           "cos": 1.0,        # 0.75 / 0.50
           "tan": 2.25}       # 1.92 / 0.50


# ------------------------------------------------------------------ local JIT helper
def _target_machine(extra_features=""):
    return llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten() + extra_features,
        opt=3, reloc="pic", codemodel="jitdefault", jit=True)


def build_loop(op, ty):
    """void f(T* noalias x, T* noalias y, i64 n) { for i < n: y[i] = cr_<op>(x[i]) }"""
    mod = ir.Module(name="vmath_" + op)
    i64 = ir.IntType(64)
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [ty.as_pointer(), ty.as_pointer(), i64]), name="f")
    x, y, n = fn.args
    for a in (x, y):
        a.add_attribute("noalias")
    entry, cond, body, end = (fn.append_basic_block(s) for s in ("entry", "for.cond", "for.body", "for.end"))
    b = ir.IRBuilder(entry)
    b.branch(cond)
    b.position_at_end(cond)
    i = b.phi(i64, name="i")
    i.add_incoming(ir.Constant(i64, 0), entry)
    b.cbranch(b.icmp_signed("<", i, n), body, end)
    b.position_at_end(body)
    v = b.load(b.gep(x, [i], inbounds=True))
    fn_op = math_function(mod, op, "f64" if isinstance(ty, ir.DoubleType) else "f32")
    b.store(b.call(fn_op, [v], fastmath=vmath.FASTMATH), b.gep(y, [i], inbounds=True))
    i.add_incoming(b.add(i, ir.Constant(i64, 1), flags=["nsw"]), b.block)
    b.branch(cond)
    b.position_at_end(end)
    b.ret_void()
    return mod


class Compiled:
    """Optimized (O3 + loop/SLP vectorizer) and MCJIT-compiled loop; keeps the engine alive."""

    def __init__(self, op, dtype, extra_features=""):
        self.dtype = dtype
        tm = _target_machine(extra_features)
        m = llvm.parse_assembly(str(build_loop(op, IR_TYPE[dtype])))
        m.triple, m.data_layout = tm.triple, str(tm.target_data)
        m.verify()
        pto = llvm.create_pipeline_tuning_options(speed_level=3)
        pto.loop_vectorization = True
        pto.slp_vectorization = True
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(m, pb)
        self.ir = str(m)
        self.engine = llvm.create_mcjit_compiler(m, _target_machine(extra_features))
        self.engine.finalize_object()
        self.cfunc = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)(
            self.engine.get_function_address("f"))

    def __call__(self, x):
        x = np.ascontiguousarray(x, dtype=self.dtype)
        y = np.empty_like(x)
        self.cfunc(x.ctypes.data, y.ctypes.data, x.size)
        return y


_CACHE = {}


def compiled(op, dtype):
    if (op, dtype) not in _CACHE:
        _CACHE[op, dtype] = Compiled(op, dtype)
    return _CACHE[op, dtype]


# ------------------------------------------------------------------ references and inputs
def reference(op, x):
    """op(x) in long double (float64 inputs) or float64 (float32 inputs)."""
    x = x.astype(np.longdouble if x.dtype == np.float64 else np.float64)
    with np.errstate(all="ignore"):
        if op == "sigmoid":   # stable form; exp(-|x|) <= 1
            u = np.exp(-np.abs(x))
            return np.where(x >= 0, 1 / (1 + u), u / (1 + u))
        if op == "softplus":
            return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))
        return getattr(np, op)(x)


def ulp_error(y, ref, dtype):
    """|y - ref| in units of the spacing of dtype at ref; nan/inf must match exactly
    (the sign of zero is not compared: the nsz flag is on)."""
    with np.errstate(all="ignore"):
        ref_t = ref.astype(dtype)
        err = np.abs(y.astype(ref.dtype) - ref) / np.spacing(np.abs(ref_t)).astype(ref.dtype)
    special = ~np.isfinite(y) | ~np.isfinite(ref_t)
    same = (y == ref_t) | (np.isnan(y) & np.isnan(ref_t))
    err[special] = np.where(same[special], 0.0, np.inf)
    err[(y == 0) & (ref_t == 0)] = 0.0
    return err


def specials(dtype):
    fi = np.finfo(dtype)
    v = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, 2.0, fi.smallest_subnormal,
         -fi.smallest_subnormal, fi.smallest_normal, -fi.smallest_normal, fi.smallest_normal * (1 - fi.eps),
         fi.max, -fi.max, 1e4, -1e4, 1e5, -1e5, 1e30, -1e30]
    return np.array(v, dtype=dtype)


def inputs(op, dtype, n=100_000, seed=0):
    rng = np.random.default_rng(seed)
    fi = np.finfo(dtype)
    lo10, hi10 = np.log10(float(fi.smallest_subnormal)), np.log10(float(fi.max))
    k = n // 8
    sign = lambda m: rng.choice([-1.0, 1.0], m)
    parts = [
        sign(k) * 10.0 ** rng.uniform(lo10, hi10, k),        # every magnitude, subnormals included
        sign(k) * 10.0 ** rng.uniform(-20, 0, k),            # small
        rng.uniform(-5, 5, k), rng.uniform(-50, 50, k),      # moderate
        rng.uniform(-1e4, 1e4, k),                           # large
    ]
    big64 = dtype == np.float64
    if op in ("exp", "expm1", "sigmoid", "softplus"):
        over, under = (709.78, -745.13) if big64 else (88.72, -103.97)
        wide = np.longdouble if big64 else np.float64
        edges = np.log(np.array([fi.max, fi.smallest_normal, fi.smallest_subnormal], wide) * [1, 1, 0.5])
        edges = edges.astype(dtype)                          # inf / subnormal / 0 thresholds
        parts += [rng.uniform(under - 15, over + 15, k),
                  rng.uniform(under - 1, under + 40, k),      # subnormal results
                  rng.uniform(over - 1, over + 1, k),         # overflow threshold
                  (edges[:, None] + np.spacing(edges)[:, None] * np.arange(-16, 17)).ravel()]
    if op in ("log", "log1p"):
        parts += [10.0 ** rng.uniform(lo10, hi10, k),
                  rng.uniform(0.5, 2.0, k), 1 + sign(k) * 10.0 ** rng.uniform(-16, -1, k),
                  -1 + 10.0 ** rng.uniform(-16, 0, k)]
    if op == "tanh":
        parts += [rng.uniform(-25, 25, k), sign(k) * 10.0 ** rng.uniform(-9, 0.5, k)]
    if op in TRIG:
        m = rng.integers(-2 ** 29, 2 ** 29, k).astype(np.longdouble)
        pio2 = np.longdouble("1.57079632679489661923132169163975144")
        hard = np.array([float(m) * 2.0 ** e for m, e in TRIG_HARD] if big64 else [])
        parts += [rng.uniform(-1e9, 1e9, k), 10.0 ** rng.uniform(0, 9, k),
                  (m * pio2).astype(dtype),                  # closest to multiples of pi/2
                  (np.arange(-k // 2, k // 2) * pio2).astype(dtype),
                  sign(k) * 10.0 ** rng.uniform(9, np.log10(float(fi.max)), k),   # beyond TRIG_MAX
                  sign(k) * (2.0 ** 30 + rng.uniform(0, 1e3, k)),               # just beyond
                  np.concatenate([hard, -hard])]
    x = np.concatenate(parts).astype(dtype)
    return np.concatenate([specials(dtype), x])


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("op", OPS)
def test_accuracy(op, dtype):
    x = inputs(op, dtype)
    y = compiled(op, dtype)(x)
    ref = reference(op, x)
    err = ulp_error(y, ref, dtype)
    worst = int(np.argmax(err))
    slack = 0.0 if dtype == np.float32 or np.finfo(np.longdouble).nmant > 52 else 0.5   # no wider reference
    assert err[worst] <= MAX_ULP[op] + slack, f"{op}({x[worst]!r}) = {y[worst]!r}, ref {ref[worst]!r}: {err[worst]:.2f} ulp"


SPECIAL_CASES = {   # op: [(x, expected)], exact
    "exp": [(-np.inf, 0.0), (np.inf, np.inf), (np.nan, np.nan), (1e4, np.inf), (-1e4, 0.0), (0.0, 1.0)],
    "expm1": [(-np.inf, -1.0), (np.inf, np.inf), (np.nan, np.nan), (1e4, np.inf), (-1e4, -1.0), (0.0, 0.0)],
    "log": [(0.0, -np.inf), (-0.0, -np.inf), (-1.0, np.nan), (-np.inf, np.nan), (np.inf, np.inf),
            (np.nan, np.nan), (1.0, 0.0)],
    "log1p": [(-1.0, -np.inf), (-2.0, np.nan), (np.inf, np.inf), (np.nan, np.nan), (0.0, 0.0)],
    "tanh": [(np.inf, 1.0), (-np.inf, -1.0), (np.nan, np.nan), (1e4, 1.0), (-1e4, -1.0), (0.0, 0.0)],
    "sigmoid": [(np.inf, 1.0), (-np.inf, 0.0), (np.nan, np.nan), (1e4, 1.0), (-1e4, 0.0), (1e30, 1.0),
                (-1e30, 0.0), (0.0, 0.5)],
    "softplus": [(np.inf, np.inf), (-np.inf, 0.0), (np.nan, np.nan), (1e4, 1e4), (-1e4, 0.0),
                 (1e30, 1e30), (-1e30, 0.0)],
    "sin": [(np.inf, np.nan), (-np.inf, np.nan), (np.nan, np.nan), (0.0, 0.0)],
    "cos": [(np.inf, np.nan), (-np.inf, np.nan), (np.nan, np.nan), (0.0, 1.0)],
    "tan": [(np.inf, np.nan), (-np.inf, np.nan), (np.nan, np.nan), (0.0, 0.0)],
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("op", OPS)
def test_special_values(op, dtype):
    xs, want = (np.array(v, dtype=dtype) for v in zip(*SPECIAL_CASES[op]))
    got = compiled(op, dtype)(xs)
    np.testing.assert_array_equal(got, want, err_msg=f"{op} on {xs}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("op", OPS)
def test_loop_is_vectorized(op, dtype):
    """The loop calls a vector variant of >= 4 lanes, whose polynomial runs on
    vectors (llvm.fmuladd.vNf64), and nothing outside the module is called (no libm)."""
    text = compiled(op, dtype).ir
    loop = re.search(r"^define [^\n]*@f\(.*?^}$", text, re.S | re.M).group(0)
    lanes = {int(w) for w in re.findall(r"call [^@]*@cr_\w+_v(\d+)\(", loop)}
    assert lanes and max(lanes) >= 4, f"{op}: loop not vectorized"
    assert re.search(r"@llvm\.fmuladd\.v\d+f(32|64)", text), f"{op}: polynomial not vectorized"
    declared = set(re.findall(r"^declare [^@]*@\"?([\w.]+)", text, re.M))
    assert all(d.startswith("llvm.") for d in declared), f"{op}: external functions {declared}"


@pytest.mark.parametrize("op", sorted(set(OPS) - TRIG))
def test_emitters_are_straight_line(op):
    """Emitting into a block adds no blocks and no calls besides LLVM intrinsics."""
    for ty in IR_TYPE.values():
        mod, fn = _emitted_alone(op, ty)
        assert len(fn.blocks) == 1
        assert all(f.name.startswith("llvm.") for f in mod.functions if f is not fn)
        _assert_ieee_and_valid(mod)


def _emitted_alone(op: str, ty) -> tuple:
    """(module, function g) whose body is `op` applied to g's argument."""
    mod = ir.Module()
    fn = ir.Function(mod, ir.FunctionType(ty, [ty]), name="g")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    out = vmath.EMITTERS[op](b, fn.args[0])
    assert out.type == ty
    b.ret(out)
    return mod, fn


def _assert_ieee_and_valid(mod) -> None:
    """No flag that lets LLVM drop NaN or inf or reorder, and the module verifies."""
    bad = [flag for flag in ("nnan", "ninf", "reassoc", " fast ") if flag in str(mod)]
    assert not bad, bad
    llvm.parse_assembly(str(mod)).verify()


TRIG_TYPES = [*IR_TYPE.values(), ir.VectorType(ir.DoubleType(), 8), ir.VectorType(ir.FloatType(), 16)]


@pytest.mark.parametrize("ty", TRIG_TYPES, ids=str)
@pytest.mark.parametrize("op", sorted(TRIG))
def test_trig_fast_path_is_straight_line(op, ty):
    """Trig: straight-line code, then one branch (marked unlikely) taken when a lane
    is beyond TRIG_MAX, to a call of a module-internal function: `ret` follows it,
    so it is a tail call and the fast path needs no stack frame."""
    mod, fn = _emitted_alone(op, ty)
    entry, slow, done = fn.blocks
    assert isinstance(entry.terminator, ir.ConditionalBranch) and "prof" in entry.terminator.metadata
    called = [i.callee for i in slow.instructions if isinstance(i, ir.CallInstr)]
    assert len(called) == 1 and called[0].name.startswith("chainrule.trig_big.")
    assert [type(i) for i in done.instructions] == [ir.PhiInstr, ir.Ret]
    own = [f for f in mod.functions if not f.name.startswith("llvm.") and f is not fn]
    assert own and all(f.linkage == "internal" and not f.is_declaration for f in own)
    _assert_ieee_and_valid(mod)


def _large_arguments(dtype):
    """(x, hard): finite arguments beyond TRIG_MAX, both signs: round numbers, the
    edge, the largest finite value and (f64) the doubles closest to multiples of
    pi/2, marked in `hard`.  There NumPy's own cos is off by up to 1e5 ulp (its
    SIMD kernel bounds the absolute error), so only the long double reference
    judges them."""
    if dtype == np.float64:
        easy = [1e10, 1e22, 1e300, 2.0 ** 30 + 2.0 ** -22, np.nextafter(2.0 ** 30, 3.0), 2.0 ** 31, 3e9,
                1e15 + 0.5, 2.0 ** 52 + 1, 2.0 ** 1023, 1.7976931348623157e308]
        hard = [float(m) * 2.0 ** e for m, e in TRIG_HARD]
    else:
        easy = [1e30, 1e10, 1e20, 2.0 ** 30 * (1 + 2.0 ** -23), 2.0 ** 100, 1.2345678e15,
                float(np.finfo(np.float32).max)]
        hard = []
    x = np.array(easy + hard, dtype=dtype)
    is_hard = np.arange(x.size) >= len(easy)
    return np.concatenate([x, -x]), np.concatenate([is_hard, is_hard])


def _assert_ulp(op, x, y, ref, dtype, tol):
    err = ulp_error(y, ref, dtype)
    worst = int(np.argmax(err))
    assert err[worst] <= tol, f"{op}({x[worst]!r}) = {y[worst]!r}, ref {ref[worst]!r}: {err[worst]:.2f} ulp"


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("op", sorted(TRIG))
def test_trig_large_arguments(op, dtype):
    """Beyond TRIG_MAX (the table reduction), within MAX_ULP of the reference and
    one ulp more of NumPy: alone (scalar function), all big (vector variants), and
    mixed with ordinary values in the same vector."""
    big, hard = _large_arguments(dtype)
    mixed = np.empty(2 * big.size, dtype)
    mixed[0::2], mixed[1::2] = big, np.linspace(-3, 3, big.size)
    mixed_hard = np.zeros(mixed.size, bool)
    mixed_hard[0::2] = hard
    f = compiled(op, dtype)
    alone = np.concatenate([f(big[i:i + 1]) for i in range(big.size)])
    slack = 0.0 if dtype == np.float32 or np.finfo(np.longdouble).nmant > 52 else 0.5
    for x, y, skip_numpy in ((big, alone, hard), (big, f(big), hard), (mixed, f(mixed), mixed_hard)):
        _assert_ulp(op, x, y, reference(op, x), dtype, MAX_ULP[op] + slack)
        with np.errstate(all="ignore"):
            numpy = getattr(np, op)(x.astype(np.float64))
        keep = ~skip_numpy
        _assert_ulp(op, x[keep], y[keep], numpy[keep], dtype, MAX_ULP[op] + 1)


def test_two_over_pi_table():
    """The 2/pi bits (Machin's formula in integers at import) against its published
    leading digits, and every bit, with pi/2, against mpmath where installed."""
    assert vmath.TWO_OVER_PI[:4] == [0, 0xA2F9836E4E441529, 0xFC2757D1F534DDC0, 0xDB6295993C439041]
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workprec(64 * len(vmath.TWO_OVER_PI) + 64):
        bits = 64 * (len(vmath.TWO_OVER_PI) - 1)
        table = int("".join(f"{w:016x}" for w in vmath.TWO_OVER_PI), 16)
        assert table == int(mpmath.floor(2 / mpmath.pi * mpmath.mpf(2) ** bits))
        assert vmath.PIO2_FIXED == int(mpmath.floor(mpmath.pi * mpmath.mpf(2) ** 125))


def test_fastmath_flags():
    assert vmath.FASTMATH == ("nsz", "arcp", "contract", "afn")


# ------------------------------------------------------------------ report: accuracy and speed
def _numpy_op(op):
    """What a NumPy user would write (sigmoid: the stable two-sided form)."""
    if op == "sigmoid":
        return lambda x: np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(x) / (1 + np.exp(x)))
    if op == "softplus":
        return lambda x: np.logaddexp(0, x)
    return getattr(np, op)


def _ns_per_element(f, x, repeat=20):
    import time
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        f(x)
        best = min(best, time.perf_counter() - t)
    return best / x.size * 1e9


def main(n=1_000_000):
    """Accuracy and speed table.  'wide' adds the target feature -prefer-256-bit
    (LLVM otherwise picks 256-bit vectors on Intel server cores)."""
    print(f"CPU {llvm.get_host_cpu_name()}, {n} elements, best of 20; ns per element")
    print(f"{'op':9}{'dtype':8}{'ulp':>6}{'ulp vs np':>10}{'VF':>4}{'vmath':>7}{'VF':>4}{'wide':>7}{'numpy':>7}")
    for op in OPS:
        npf = _numpy_op(op)
        for dtype in (np.float64, np.float32):
            x = inputs(op, dtype)
            y = compiled(op, dtype)(x)
            with np.errstate(all="ignore"):
                ulp = ulp_error(y, reference(op, x), dtype).max()
                ulp_np = ulp_error(y, npf(x.astype(np.float64)), dtype).max()
            lo = {"log": 0.01, "log1p": 0.0}.get(op, -5.0)
            xt = np.random.default_rng(1).uniform(lo, 5.0, n).astype(dtype)
            out = np.empty_like(xt)
            row = []
            for c in (compiled(op, dtype), Compiled(op, dtype, ",-prefer-256-bit")):
                vf = max(int(w) for w in re.findall(r"<(\d+) x (?:double|float)>", c.ir))
                t = _ns_per_element(lambda a: c.cfunc(a.ctypes.data, out.ctypes.data, a.size), xt)
                row += [f"{vf:4d}", f"{t:7.2f}"]
            with np.errstate(all="ignore"):
                t_np = _ns_per_element(npf, xt)
            print(f"{op:9}{np.dtype(dtype).name:8}{ulp:6.2f}{ulp_np:10.2f}{''.join(row)}{t_np:7.2f}")


if __name__ == "__main__":
    main()
