"""vmath emitters: accuracy in ulps against NumPy, IEEE special values, and that
the loop `for i < n: y[i] = op(x[i])` is vectorized by LLVM.

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

llvm.initialize_native_target()
llvm.initialize_native_asmprinter()

IR_TYPE = {np.float64: ir.DoubleType(), np.float32: ir.FloatType()}
OPS = sorted(vmath.EMITTERS)
TRIG = {"sin", "cos", "tan"}

# max ulp error allowed; measured maxima (f64 / f32) in the comments
MAX_ULP = {"exp": 1.25,       # 0.96 / 0.93
           "expm1": 1.0,      # 0.89 / 0.71
           "log": 1.0,        # 0.77 / 0.76
           "log1p": 1.0,      # 0.75 / 0.74
           "tanh": 2.5,       # 2.21 / 2.04
           "sigmoid": 2.5,    # 1.99 / 1.99
           "softplus": 1.75,  # 1.45 / 1.46
           "sin": 1.0,        # 0.76 / 0.50
           "cos": 1.0,        # 0.75 / 0.50
           "tan": 2.25}       # 1.92 / 0.50


# ------------------------------------------------------------------ local JIT helper
def _target_machine(extra_features=""):
    return llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten() + extra_features,
        opt=3, reloc="pic", codemodel="jitdefault", jit=True)


def build_loop(op, ty):
    """void f(T* noalias x, T* noalias y, i64 n) { for i < n: y[i] = op(x[i]) }"""
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
    b.store(vmath.EMITTERS[op](b, v), b.gep(y, [i], inbounds=True))
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
        parts += [rng.uniform(-1e9, 1e9, k), 10.0 ** rng.uniform(0, 9, k),
                  (m * pio2).astype(dtype),                  # closest to multiples of pi/2
                  (np.arange(-k // 2, k // 2) * pio2).astype(dtype)]
    x = np.concatenate(parts).astype(dtype)
    return np.concatenate([specials(dtype), x])


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("op", OPS)
def test_accuracy(op, dtype):
    x = inputs(op, dtype)
    y = compiled(op, dtype)(x)
    ref = reference(op, x)
    if op in TRIG:   # beyond TRIG_MAX the reduction is not exact: documented nan
        out = ~(np.abs(x) <= vmath.TRIG_MAX)
        assert np.isnan(y[out]).all()
        x, y, ref = x[~out], y[~out], ref[~out]
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
    """The polynomial itself must run on vectors (llvm.fmuladd.vNf64), not just the loads."""
    text = compiled(op, dtype).ir
    widths = {int(w) for w in re.findall(r"<(\d+) x (?:double|float)>", text)}
    assert widths and max(widths) >= 4, f"{op}: no vector fp code"
    assert re.search(r"@llvm\.fmuladd\.v\d+f(32|64)", text), f"{op}: polynomial not vectorized"
    calls = set(re.findall(r"call [^@]*@([\w.]+)", text))
    assert all(c.startswith("llvm.") for c in calls), f"{op}: non-intrinsic calls {calls}"


@pytest.mark.parametrize("op", OPS)
def test_emitters_are_straight_line(op):
    """Emitting into a block adds no blocks and no calls besides LLVM intrinsics."""
    for ty in IR_TYPE.values():
        mod = ir.Module()
        fn = ir.Function(mod, ir.FunctionType(ty, [ty]), name="g")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        out = vmath.EMITTERS[op](b, fn.args[0])
        assert out.type == ty
        b.ret(out)
        assert len(fn.blocks) == 1
        assert all(f.name.startswith("llvm.") for f in mod.functions if f is not fn)
        bad = [flag for flag in ("nnan", "ninf", "reassoc", " fast ") if flag in str(mod)]
        assert not bad, bad
        llvm.parse_assembly(str(mod)).verify()


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
            keep = ~(np.abs(x) > vmath.TRIG_MAX) if op in TRIG else np.ones(x.size, bool)
            x = x[keep]
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
