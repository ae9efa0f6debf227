"""Differential tests of the native LLVM backend against the NumPy reference backend.

Every program here is compiled twice from the same source -- `backend="llvm"`
and `backend="numpy"` -- and both are called on the same arrays; the outputs
and every gradient must agree. Both backends run the same IR (same lowering,
same autodiff, same simplifier), so a disagreement is a bug of the native
path: the fusion planner, the loop/GEMM codegen, the vector math, the C ABI
or the runtime glue.

Tolerances (norm-wise relative error ||llvm - numpy|| / ||numpy|| per array,
NaN masks and the positions and signs of infinities compared exactly):

    f64: 1e-12 for every op. The native transcendentals (exp log log1p expm1
         sin cos tan tanh sigmoid softplus, pow) are polynomial approximations
         of a few ulp; the largest error measured here is ~2e-15 (tan), so
         the 1e-12 bound needs no per-op exception.
    f32: 1e-5 for every op (measured: <= 1e-6; the loss of a program is a
         sum, so it also carries the difference between NumPy's pairwise
         summation and the vectorised native one).
    random programs (hypothesis), f64: 1e-12 with a floor in the denominator,
         ||a - b|| / max(||b||, 1, |loss|), because random programs cancel:
         `sum(X) - sum(X)` is 0 in one backend and 1e-16 in the other, and the
         gradient of a shift-invariant log_softmax w.r.t. the shift is 1e-10
         of rounding noise in both (257 rows, loss ~1e4).
    random programs, f32: cancellation makes even that fail on rounding alone
         (sum(e - mean(e)) over 33 rows: 2e-4), so both f32 backends are
         compared with the program run in f64, and the native error must be
         <= 10x NumPy's error + 1e-5 * max(||truth||, 1).

Each program is compiled once per dtype (module-level memo); the disk cache
is switched off so every run exercises the whole native pipeline.

The bugs this suite found are kept at the end of the file, reduced to minimal
programs: fixed ones as regression tests, open ones as `xfail(strict=True)`
(when one is fixed its test XPASSes, which fails the run and says: remove
the mark).
"""
from __future__ import annotations

import concurrent.futures
import functools
import math
import re
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llvmlite import ir

import chainrule
from chainrule.compiler import schedule
from chainrule.compiler.codegen import emit
from chainrule.compiler.codegen.abi import build_module
from chainrule.compiler.pipeline import build_program
from chainrule.compiler.schedule import plan
from chainrule.grammar.source import Source
from chainrule.runtime import jit

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RTOL = {"f32": 1e-5, "f64": 1e-12}
DTYPES = ["f64", "f32"]


@pytest.fixture(autouse=True, scope="module")
def _no_disk_cache():
    """Compile everything for real: no object cache on disk, read or written."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHAINRULE_CACHE", "0")
        yield


# --------------------------------------------------------------- compilation
@functools.lru_cache(maxsize=None)
def pair(src: str, dtype: str | None = None, wrt: tuple | None = None):
    """(llvm, numpy) Functions of one source, compiled once per process."""
    return (chainrule.compile(src, backend="llvm", dtype=dtype, wrt=wrt),
            chainrule.compile(src, backend="numpy", dtype=dtype, wrt=wrt))


@functools.lru_cache(maxsize=None)
def example_source(name: str) -> str:
    return (EXAMPLES / f"{name}.expr").read_text()


def result_dtype(fn) -> str:
    return fn.signature.outputs[0][1].dtype


# ---------------------------------------------------------------- comparison
def _as_tuple(v):
    return v if isinstance(v, tuple) else (v,)


def assert_same(actual, expected, rtol: float, what: str, floor: float = 0.0) -> float:
    """Same shape and dtype, NaN at the same places, the same infinities, and a
    norm-wise relative error <= rtol on the finite rest. Returns that error."""
    a, b = np.asarray(actual), np.asarray(expected)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != numpy's {b.shape}"
    assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} != numpy's {b.dtype}"
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if not np.array_equal(nan_a, nan_b):
        at = np.argwhere(nan_a != nan_b)[:5].tolist()
        raise AssertionError(f"{what}: NaN masks differ at {at}: llvm {a[nan_a != nan_b][:5]}, "
                             f"numpy {b[nan_a != nan_b][:5]}")
    inf = (np.isinf(a) | np.isinf(b)) & ~nan_a
    if not np.array_equal(a[inf], b[inf]):
        at = np.argwhere(inf & (a != b))[:5].tolist()
        raise AssertionError(f"{what}: infinities differ at {at}: llvm {a[inf][:5]}, "
                             f"numpy {b[inf][:5]}")
    fin = ~nan_a & ~inf
    a64, b64 = a[fin].astype(np.float64), b[fin].astype(np.float64)
    big = max(float(np.max(np.abs(a64), initial=0)), float(np.max(np.abs(b64), initial=0)), 1.0)
    diff = float(np.linalg.norm((a64 - b64) / big)) * big  # scaled: no overflow near 1e300
    scale = max(float(np.linalg.norm(b64 / big)) * big, floor)
    err = diff / scale if scale > 0 else diff
    if not err <= rtol:
        worst = np.unravel_index(np.argmax(np.abs(np.where(fin, a.astype(np.float64) - b, 0))),
                                 a.shape) if a.ndim else ()
        raise AssertionError(f"{what}: relative error {err:.3g} > {rtol:g} (worst at {worst}: "
                             f"llvm {a[worst]!r}, numpy {b[worst]!r})")
    return err


def compare(llvm_fn, numpy_fn, args: dict, rtol: float | None = None, what: str = "",
            floor: float = 0.0, check_value_only: bool = True,
            allow_error: bool = False) -> None:
    """value_and_grad (and value) of both backends agree on every output and gradient.

    With `allow_error`, a ValueError of the NumPy backend (e.g. sizes too small
    for a slice) is the expected result, and the native backend must raise it too."""
    rtol = RTOL[result_dtype(llvm_fn)] if rtol is None else rtol
    try:
        expected = numpy_fn.value_and_grad(**args)
    except ValueError as err:
        if not allow_error:
            raise
        with pytest.raises(ValueError) as got:
            llvm_fn.value_and_grad(**args)
        assert str(got.value) == str(err)
        return
    got = llvm_fn.value_and_grad(**args)
    outs = list(llvm_fn.outputs)
    for name, a, b in zip(outs, _as_tuple(got[0]), _as_tuple(expected[0])):
        assert_same(a, b, rtol, f"{what} output {name}", floor)
    assert set(got[1]) == set(expected[1])
    for name in expected[1]:
        assert_same(got[1][name], expected[1][name], rtol, f"{what} d/d{name}", floor)
    if check_value_only:
        for name, a, b in zip(outs, _as_tuple(llvm_fn.value(**args)), _as_tuple(expected[0])):
            assert_same(a, b, rtol, f"{what} value() output {name}", floor)


def make_args(fn, sizes: dict, sampler, rng) -> dict:
    """Arrays for every argument of `fn`, with symbolic dims taken from `sizes`
    (by name, else `sizes["*"]`)."""
    args = {}
    for a in fn.args:
        shape = tuple(s if isinstance(s, int) else sizes.get(str(s), sizes.get("*"))
                      for s in a.type.shape)
        value = sampler(a.name, shape, rng) if callable(sampler) else rng.normal(size=shape)
        # scalars as Python floats: programs of f64 scalars then take the native fast path
        args[a.name] = float(value) if shape == () else value
    return args


# ------------------------------------------------------------------ samplers
def uniform(lo, hi):
    return lambda rng, shape: rng.uniform(lo, hi, shape)


def signed(lo, hi):
    """Magnitudes in [lo, hi] with random signs (away from a kink at 0)."""
    return lambda rng, shape: rng.uniform(lo, hi, shape) * rng.choice([-1.0, 1.0], shape)


# ====================================================================== unary
# `{x}` is the operand; each is applied to a scalar, a symbolic vector and a
# broadcast: a [N, K] matrix (one symbolic, one constant dim) plus a [K] row,
# halved so that it stays in the op's domain. (Constant-dim matrices are
# covered by the binary, reduction, layout and matmul programs.)
UNARY = {
    "exp": ("exp({x})", uniform(-3, 3)),
    "log": ("log({x})", uniform(0.1, 5)),
    "log1p": ("log1p({x})", uniform(-0.9, 5)),
    "expm1": ("expm1({x})", uniform(-3, 3)),
    "sqrt": ("sqrt({x})", uniform(0.05, 5)),
    "sin": ("sin({x})", uniform(-7, 7)),
    "cos": ("cos({x})", uniform(-7, 7)),
    "tan": ("tan({x})", uniform(-1.4, 1.4)),
    # the VJPs 1 - tanh^2 and s(1 - s) cancel where the function saturates: a
    # 1-ulp difference of the value grows by ~2/(1 - tanh^2); f32 keeps |x| small
    "tanh": ("tanh({x})", uniform(-4, 4), uniform(-2, 2)),
    "sigmoid": ("sigmoid({x})", uniform(-7, 7), uniform(-4, 4)),
    "relu": ("relu({x})", signed(0.05, 3)),
    "softplus": ("softplus({x})", uniform(-9, 9)),
    "abs": ("abs({x})", signed(0.05, 3)),
    "sign": ("sign({x})", signed(0.05, 3)),
    "square": ("square({x})", uniform(-3, 3)),
    "neg": ("-{x}", uniform(-3, 3)),
    "pow2": ("{x}^2", uniform(-3, 3)),
    "pow3": ("{x}^3", uniform(-3, 3)),
    "starstar": ("{x} ** 3", uniform(-3, 3)),
    "pow0.5": ("{x}^0.5", uniform(0.05, 5)),
    "pow1.5": ("pow({x}, 1.5)", uniform(0.05, 5)),
    "pow-1": ("{x}^-1", signed(0.2, 3)),
    "pow-2": ("{x}^-2", signed(0.2, 3)),
    "pow-0.5": ("{x}^-0.5", uniform(0.2, 5)),
    "pow0": ("{x}^0", uniform(0.2, 5)),
    "pow1": ("{x}^1", uniform(-3, 3)),
    "exp2": ("2^{x}", uniform(-3, 3)),
    "e_pow": ("e^{x}", uniform(-3, 3)),
    "constants": ("pi*{x} + e - 1e-3*{x}", uniform(-3, 3)),
    "div_const": ("{x} / 3", uniform(-3, 3)),
    "rdiv_const": ("3 / {x}", signed(0.2, 3)),
    "sub_const": ("1 - {x}", uniform(-3, 3)),
}


def unary_program(template: str) -> str:
    def t(x):
        return template.format(x=x)
    return f"""
dim N
dim K = 3
param s
param v: [N]
param m: [N, K]
param r: [K]
os = {t('s')}
ov = {t('v')}
ob = {t('((m + r) * 0.5)')}
loss = 0.5 * (os*os + sum(ov*ov) + sum(ob*ob))
output loss, os, ov, ob
"""


def _sampler_for(sample):
    return lambda name, shape, rng: sample(rng, shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", list(UNARY))
def test_unary(op, dtype):
    template, sample = UNARY[op][:2]
    if dtype == "f32" and len(UNARY[op]) > 2:
        sample = UNARY[op][2]
    llvm_fn, numpy_fn = pair(unary_program(template), dtype)
    rng = np.random.default_rng(zlib.crc32(op.encode()))
    for n in (1, 5, 19):
        args = make_args(llvm_fn, {"N": n}, _sampler_for(sample), rng)
        compare(llvm_fn, numpy_fn, args, what=f"{op} N={n}")


def test_scalar_program_of_every_unary_op():
    """A program of f64 scalars takes the native CPython fast path; every op through it."""
    names = list(UNARY)
    lines = ["param " + ", ".join(f"x{i}" for i in range(len(names)))]
    for i, op in enumerate(names):
        lines.append(f"o{i} = " + UNARY[op][0].format(x=f"x{i}"))
    lines.append("loss = " + " + ".join(f"0.5*o{i}*o{i}" for i in range(len(names))))
    lines.append("output loss, " + ", ".join(f"o{i}" for i in range(len(names))))
    llvm_fn, numpy_fn = pair("\n".join(lines) + "\n")
    assert llvm_fn._backend.fast, "a program of f64 scalars should get the CPython wrapper"
    rng = np.random.default_rng(7)
    for _ in range(3):
        vals = [float(UNARY[op][1](rng, ())) for op in names]
        kwargs = {f"x{i}": v for i, v in enumerate(vals)}
        compare(llvm_fn, numpy_fn, kwargs, what="scalars by keyword")
        got, want = llvm_fn.value_and_grad(*vals), numpy_fn.value_and_grad(*vals)
        for a, b in zip(got[0], want[0]):
            assert_same(a, b, RTOL["f64"], "scalars by position")
        for k in want[1]:
            assert_same(got[1][k], want[1][k], RTOL["f64"], f"scalars by position d/d{k}")
    for special in (np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-310, 1e300, -1e300):
        vals = np.full(len(names), special)
        kwargs = {f"x{i}": float(1.0 if _special_excluded(op, "f64", vals[i:i + 1])[0] else special)
                  for i, op in enumerate(names)}
        compare(llvm_fn, numpy_fn, kwargs, what=f"scalars = {special}")


# ===================================================================== binary
# `{a}`, `{b}` are the operands; each is applied to six operand shape pairs.
PAIRS = [  # (shape of a, shape of b)
    ("[N, K]", "[N, K]"),  # same shape
    ("[N, K]", "[K]"),  # a row broadcast over a matrix
    ("[N, 1]", "[1, K]"),  # outer broadcast
    ("[N]", ""),  # vector and scalar
    ("", "[2, K]"),  # scalar and a matrix of constant dims
    ("", ""),  # scalars
]

BINARY = {
    "add": ("{a} + {b}", uniform(-3, 3), uniform(-3, 3)),
    "sub": ("{a} - {b}", uniform(-3, 3), uniform(-3, 3)),
    "mul": ("{a} * {b}", uniform(-3, 3), uniform(-3, 3)),
    "div": ("{a} / {b}", uniform(-3, 3), signed(0.3, 3)),
    "pow": ("pow({a}, {b})", uniform(0.2, 3), uniform(-2, 2)),
    "caret": ("{a} ^ {b}", uniform(0.2, 3), uniform(-2, 2)),
    "maximum": ("maximum({a}, {b})", uniform(-3, 3), uniform(-3, 3)),
    "minimum": ("minimum({a}, {b})", uniform(-3, 3), uniform(-3, 3)),
    "clip_lo": ("clip({a}, {b}, 2)", uniform(-3, 3), uniform(-3, 1)),
    "clip_hi": ("clip({a}, -1, {b})", uniform(-3, 3), uniform(-1, 3)),
    "clip_both": ("clip({a}, {b} - 1, {b} + 1)", uniform(-3, 3), uniform(-3, 3)),
    "where_lt": ("where({a} < {b}, {a}, {b} * 2)", uniform(-3, 3), uniform(-3, 3)),
    "where_le": ("where({a} <= {b}, {a} * {b}, {b})", uniform(-3, 3), uniform(-3, 3)),
    "where_gt": ("where({a} > {b}, tanh({a}), {b})", uniform(-3, 3), uniform(-3, 3)),
    "where_ge": ("where({a} >= {b}, {a}, 0)", uniform(-3, 3), uniform(-3, 3)),
    "where_eq": ("where({a} == {b}, {a} * 3, {b})", uniform(-3, 3), uniform(-3, 3)),
    "where_ne": ("where({a} != {b}, {a}, {b} - 1)", uniform(-3, 3), uniform(-3, 3)),
    "where_const": ("where({a} > 0, {b}, -1.5)", uniform(-3, 3), uniform(-3, 3)),
}


def binary_program(template: str) -> str:
    lines = ["dim N", "dim K = 3"]
    outs = []
    for i, (sa, sb) in enumerate(PAIRS):
        lines.append(f"param a{i}" + (f": {sa}" if sa else ""))
        lines.append(f"param b{i}" + (f": {sb}" if sb else ""))
        lines.append(f"o{i} = " + template.format(a=f"a{i}", b=f"b{i}"))
        outs.append(f"o{i}")
    lines.append("loss = 0.5 * (" + " + ".join(f"sum(o{i}*o{i})" for i in range(len(PAIRS))) + ")")
    lines.append("output loss, " + ", ".join(outs))
    return "\n".join(lines) + "\n"


def _binary_args(fn, n, sample_a, sample_b, rng) -> dict:
    args = make_args(fn, {"N": n}, lambda name, shape, r: (
        sample_a if name.startswith("a") else sample_b)(r, shape), rng)
    # exact ties on a quarter of the same-shape pair: the tie-split gradients
    tie = rng.random(args["a0"].shape) < 0.25
    args["b0"] = np.where(tie, args["a0"], args["b0"])
    return args


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", list(BINARY))
def test_binary(op, dtype):
    template, sample_a, sample_b = BINARY[op]
    llvm_fn, numpy_fn = pair(binary_program(template), dtype)
    rng = np.random.default_rng(zlib.crc32(op.encode()))
    for n in (1, 6, 17):
        compare(llvm_fn, numpy_fn, _binary_args(llvm_fn, n, sample_a, sample_b, rng),
                what=f"{op} N={n}")


# ================================================================= reductions
REDUCTIONS = ["sum", "mean", "max", "min", "logsumexp"]
FORMS_2D = ["", "axis=0", "axis=1", "axis=-1", "axis=-2", "axis=(0, 1)", "axis=(1, 0)",
            "axis=(-1, 0)"]
FORMS_3D = ["", "axis=1", "axis=(0, 2)", "axis=(2, 0, 1)", "axis=-3"]
FORMS_1D = ["", "axis=0", "axis=-1"]


def reduction_program(red: str) -> str:
    """Every axis form of `red`, with and without keepdims, one output each. The
    forms of one rank share their param: forms that normalise to the same axes
    are then one node (the IR is hash-consed), so the program compiles once per
    distinct reduction; each output is still compared on its own."""
    lines = ["dim N", "dim K = 4", "dim J = 3", "param x: [N, K]", "param t: [N, J, K]",
             "param v: [N]", "param c: [J, K]", "param s"]
    outs = []

    def add(name, form):
        for keep in (False, True):
            out = f"o{len(outs)}"
            args = ", ".join(x for x in (name, form, "keepdims=true" if keep else "") if x)
            lines.append(f"{out} = {red}({args})")
            outs.append(out)
    for form in FORMS_2D:
        add("x", form)
    for form in FORMS_3D:
        add("t", form)
    for form in FORMS_1D:
        add("v", form)
    add("c", "axis=1")  # constant dims
    add("s", "")  # a scalar: no axes to reduce
    # random weights per output: each form's gradient is a different mix
    lines += [f"input w{i}" for i in range(len(outs))]
    lines.append("loss = " + " + ".join(f"w{i} * sum({o}*{o})" for i, o in enumerate(outs)))
    lines.append("output loss, " + ", ".join(outs))
    return "\n".join(lines) + "\n"


def _weighted(sampler):
    """`sampler` for the params, weights in [0.5, 1.5] for the inputs w0, w1, ..."""
    return lambda name, shape, rng: rng.uniform(0.5, 1.5, shape) if name[0] == "w" and \
        name[1:].isdigit() else sampler(name, shape, rng)


def distinct(name, shape, rng):
    """Values at least 0.1 apart: a unique max and min along every axis."""
    n = int(np.prod(shape, dtype=int))
    return ((rng.permutation(n) - n / 2) * 0.1 + rng.uniform(0, 0.01, n)).reshape(shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("red", REDUCTIONS)
def test_reductions_every_axis_form(red, dtype):
    llvm_fn, numpy_fn = pair(reduction_program(red), dtype)
    rng = np.random.default_rng(11)
    for n in (1, 3, 10):
        compare(llvm_fn, numpy_fn, make_args(llvm_fn, {"N": n}, _weighted(distinct), rng),
                what=f"{red} N={n}")


@pytest.mark.parametrize("red", ["max", "min", "logsumexp"])
def test_reductions_with_ties(red):
    """Small integers: many exact ties, so max/min split the gradient among them."""
    llvm_fn, numpy_fn = pair(reduction_program(red), "f64")
    rng = np.random.default_rng(12)
    for n in (1, 4, 9):
        args = make_args(llvm_fn, {"N": n}, _weighted(
            lambda name, shape, r: r.integers(-2, 3, shape).astype(float)), rng)
        compare(llvm_fn, numpy_fn, args, what=f"{red} ties N={n}")


def test_f32_max_min_forward():
    """f32 max/min values (not differentiated: they reduce an input)."""
    src = ("dim N\ndim K = 4\ninput y: f32[N, K]\nparam p: f32[K]\n"
           "a = max(y, axis=0)\nb = min(y, axis=1, keepdims=true)\nc = max(y)\nd = min(y, axis=(1, 0))\n"
           "loss = sum(p * a) + c * d\noutput loss, a, b, c, d\n")
    llvm_fn, numpy_fn = pair(src)
    rng = np.random.default_rng(13)
    for n in (1, 5, 33):
        compare(llvm_fn, numpy_fn, make_args(llvm_fn, {"N": n}, distinct, rng), what=f"N={n}")


SOFTMAX_FORMS = [("v", "[N]", ""), ("x", "[N, K]", ""), ("x", "[N, K]", "axis=0"),
                 ("x", "[N, K]", "axis=-2"), ("x", "[N, K]", "axis=(0, 1)"),
                 ("t", "[N, J, K]", "axis=1"), ("c", "[J, K]", "axis=-1")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_softmax(fn, dtype):
    lines = ["dim N", "dim K = 4", "dim J = 3"]
    outs = []
    for kind, shape in dict.fromkeys((k, sh) for k, sh, _ in SOFTMAX_FORMS):
        lines.append(f"param {kind}: {shape}")
    for i, (kind, shape, form) in enumerate(SOFTMAX_FORMS):
        lines.append(f"input g{i}: {shape}")
        lines.append(f"o{i} = {fn}({kind}{', ' + form if form else ''})")
        outs.append(f"o{i}")
    # random cotangents: d softmax is zero for a uniform one, and a smooth one
    # (such as sin(o)) makes g - <g, softmax> cancel, which f32 cannot resolve
    lines.append("loss = " + " + ".join(f"sum(g{i} * {o})" for i, o in enumerate(outs)))
    lines.append("output loss, " + ", ".join(outs))
    llvm_fn, numpy_fn = pair("\n".join(lines) + "\n", dtype)
    rng = np.random.default_rng(14)
    for n in (1, 4, 13):
        args = make_args(llvm_fn, {"N": n}, lambda name, shape, r: r.normal(0, 3, shape), rng)
        compare(llvm_fn, numpy_fn, args, what=f"{fn} N={n}")


# ==================================================================== matmul
MATMUL = """
dim N
dim M
dim K
param A1: [N, K]
param B1: [K, M]
param A2: [N, K]
param b2: [K]
param a3: [K]
param B3: [K, M]
param a4: [K]
param b4: [K]
param A5: [N, 1]
param B5: [1, M]
param A6: [K, N]
param B6: [K, M]
param A7: [N, K]
param B7: [M, K]
param A8: [3, 5]
param B8: [5, 2]
param A9: [N, 5]
param b9: [5]
param a10: [1, K]
param B10: [K, 1]
param A11: [N, K]
param A12: [N, K]
param B12: [K, M]
param A13: [K, N]
param b13: [K]
o1 = A1 @ B1
o2 = A2 @ b2
o3 = a3 @ B3
o4 = a4 @ b4
o5 = A5 @ B5
o6 = A6.T @ B6
o7 = A7 @ transpose(B7)
o8 = A8 @ B8
o9 = A9 @ b9
o10 = a10 @ B10
o11 = A11 @ A11.T
o12 = tanh(A12) @ (B12 * 2 + 1)
o13 = b13 @ A13 + 1
loss = 0.5 * (sum(o1*o1) + sum(o2*o2) + sum(o3*o3) + o4*o4 + sum(o5*o5) + sum(o6*o6) + sum(o7*o7) + sum(o8*o8) + sum(o9*o9) + sum(o10*o10) + sum(o11*o11) + sum(o12*o12) + sum(o13*o13))
output loss, o1, o2, o3, o4, o5, o6, o7, o8, o9, o10, o11, o12, o13
"""

MATMUL_SIZES = [(1, 1, 1), (2, 3, 1), (1, 4, 5), (4, 1, 3), (3, 5, 2), (0, 3, 2), (3, 0, 2),
                (3, 2, 0), (8, 8, 8), (17, 9, 33), (37, 29, 45)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_all_shape_combinations(dtype):
    """matrix-matrix, matrix-vector, vector-matrix, dot, outer (K=1), transposed
    operands, constant dims, 1x1, X X^T, computed operands; GEMM edge sizes."""
    llvm_fn, numpy_fn = pair(MATMUL, dtype)
    rng = np.random.default_rng(15)
    for n, m, k in MATMUL_SIZES:
        args = make_args(llvm_fn, {"N": n, "M": m, "K": k}, None, rng)
        compare(llvm_fn, numpy_fn, args, what=f"N,M,K={n},{m},{k}")


# ==================================================================== layout
SLICES = """
dim N
dim K = 5
param x: [N, K]
param v: [N]
param c: [4, K]
o1 = x[1:]
o2 = x[:-1]
o3 = x[::2]
o4 = x[::-1]
o5 = x[::-2]
o6 = x[1::3]
o7 = x[-2::-2]
o8 = x[:, ::-1]
o9 = x[:, 1:4]
o10 = x[:, -1]
o11 = x[0]
o12 = x[-1]
o13 = x[1:, :-1] * x[:-1, 1:]
o14 = x[::-1, ::-2]
o15 = x[2:0:-1]
o16 = x[-1, -2]
o17 = x[:, 3:1:-1]
o18 = v[::-1]
o19 = v[3:0:-1]
o20 = v[-3:]
o21 = c[1:3, ::2]
o22 = c[::-1, 4]
o23 = c[-1]
o24 = v[2:] - 2*v[1:-1] + v[:-2]
loss = 0.5 * (sum(o1*o1) + sum(o2*o2) + sum(o3*o3) + sum(o4*o4) + sum(o5*o5) + sum(o6*o6) + sum(o7*o7) + sum(o8*o8) + sum(o9*o9) + sum(o10*o10) + sum(o11*o11) + sum(o12*o12) + sum(o13*o13) + sum(o14*o14) + sum(o15*o15) + o16*o16 + sum(o17*o17) + sum(o18*o18) + sum(o19*o19) + sum(o20*o20) + sum(o21*o21) + sum(o22*o22) + sum(o23*o23) + sum(o24*o24))
output loss, o1, o2, o3, o4, o5, o6, o7, o8, o9, o10, o11, o12, o13, o14, o15, o16, o17, o18, o19, o20, o21, o22, o23, o24
"""

RESHAPES = """
dim N
dim K = 6
param x: [N, K]
param t: [N, 2, 3]
param v: [K]
o1 = x.T
o2 = transpose(x) * 2
o3 = x.T.T + x
o4 = reshape(x, [-1])
o5 = reshape(x, [K, N])
o6 = reshape(x, [N, 3, 2])
o7 = reshape(x, [1, -1])
o8 = reshape(x, [-1, 3])
o9 = reshape(t, [N, 6]) + x
o10 = reshape(x.T, [-1])
o11 = reshape(v, [2, 3]) * t
o12 = reshape(v, [1, K]) + x
o13 = reshape(reshape(x, [-1]), [N, K]) * x
o14 = reshape(x, [3, -1]).T
loss = 0.5 * (sum(o1*o1) + sum(o2*o2) + sum(o3*o3) + sum(o4*o4) + sum(o5*o5) + sum(o6*o6) + sum(o7*o7) + sum(o8*o8) + sum(o9*o9) + sum(o10*o10) + sum(o11*o11) + sum(o12*o12) + sum(o13*o13) + sum(o14*o14))
output loss, o1, o2, o3, o4, o5, o6, o7, o8, o9, o10, o11, o12, o13, o14
"""

CONCATS = """
dim N
dim K = 3
param x: [N, K]
param y: [N, K]
param c: [2, K]
param u: [N]
param w: [K]
o1 = concat([x, y], axis=0)
o2 = concat([x, y], axis=1)
o3 = concat([x, exp(y), x], axis=-1)
o4 = concat([x, c], axis=0)
o5 = concat([c, x, c])
o6 = concat([u, w, u])
o7 = concat([x, reshape(u, [N, 1])], axis=1)
o8 = concat([x[1:], x[:1]], axis=0)
o9 = concat([reshape(w, [1, K]), x], axis=-2)
o10 = concat([u])
loss = 0.5 * (sum(o1*o1) + sum(o2*o2) + sum(o3*o3) + sum(o4*o4) + sum(o5*o5) + sum(o6*o6) + sum(o7*o7) + sum(o8*o8) + sum(o9*o9) + sum(o10*o10))
output loss, o1, o2, o3, o4, o5, o6, o7, o8, o9, o10
"""

LAYOUTS = {"slices": SLICES, "reshapes": RESHAPES, "concats": CONCATS}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("which", list(LAYOUTS))
def test_layout(which, dtype):
    llvm_fn, numpy_fn = pair(LAYOUTS[which], dtype)
    rng = np.random.default_rng(16)
    for n in (4, 5, 9, 16):  # the slices need N >= 4
        compare(llvm_fn, numpy_fn, make_args(llvm_fn, {"N": n}, None, rng),
                what=f"{which} N={n}")


CONVERSIONS = """
dim N
param x: f64[N]
param y: f32[N]
param s: f32
o1 = f32(x) * y
o2 = f64(y) + x
o3 = f64(f32(x)) - x
o4 = f32(f64(y) * 3) + s
o5 = f64(sum(y * s))
loss = 0.5 * (sum(f64(o1*o1)) + sum(o2*o2) + sum(o3*o3) + f64(sum(o4*o4)) + o5*o5)
output loss, o1, o2, o3, o4, o5
"""


def test_conversions():
    llvm_fn, numpy_fn = pair(CONVERSIONS)
    rng = np.random.default_rng(17)
    for n in (1, 7, 20):
        # the f32 parts bound the error: compare at f32 tolerance
        compare(llvm_fn, numpy_fn, make_args(llvm_fn, {"N": n}, None, rng), rtol=RTOL["f32"],
                what=f"N={n}")
        args = make_args(llvm_fn, {"N": n}, None, rng)
        got, want = llvm_fn.value(**args), numpy_fn.value(**args)
        assert got[3].dtype == np.float64 and got[1].dtype == np.float32  # (loss, o1, o2, ...)
        assert_same(got[3], want[3], RTOL["f64"], "f64(f32(x)) - x")


# ================================================================== examples
def example_args(name: str, fn, batch: int, rng) -> dict:
    def sample(arg, shape, r):
        if name == "mlp" and arg == "x":
            return r.uniform(0, 1, shape)
        if name == "mlp" and arg == "y":
            return np.eye(shape[1])[r.integers(0, shape[1], shape[0])] if shape[0] else \
                np.zeros(shape)
        if name == "mlp" and arg.startswith("W"):
            return r.normal(0, 1 / math.sqrt(shape[0]), shape)
        if name == "logreg" and arg == "y":
            return r.choice([-1.0, 1.0], shape)
        if name == "rosenbrock":
            return r.normal(1, 0.5, shape)
        return r.normal(0, 1, shape)
    return make_args(fn, {"*": batch}, sample, rng)


EXAMPLE_NAMES = sorted(p.stem for p in EXAMPLES.glob("*.expr"))


def test_examples_are_found():
    assert {"neuron", "mlp", "logreg", "rosenbrock"} <= set(EXAMPLE_NAMES)


@pytest.mark.parametrize("dtype", [None, "f32", "f64"])
@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_examples(name, dtype):
    """Every example as declared (mlp is f32), and with every dtype overridden."""
    llvm_fn, numpy_fn = pair(example_source(name), dtype)
    rng = np.random.default_rng(18)
    for batch in (3, 16):
        compare(llvm_fn, numpy_fn, example_args(name, llvm_fn, batch, rng),
                what=f"{name} dtype={dtype} batch={batch}")


BATCHED_NEURON = """
dim B
input x1: [B]
input x2: [B]
input y1: [B]
input y2: [B]
param w1, w2, b, w3, w4, b1, b2
z    = x1*w1 + x2*w2 + b
a    = sigmoid(z)
z1   = a*w3 + b1
z2   = a*w4 + b2
loss = mean((sigmoid(z1) - y1)^2 + (sigmoid(z2) - y2)^2)
output loss, a
"""

BATCH_SIZES = (0, 1, 2, 3, 7, 8, 9, 16, 31, 64)


@pytest.mark.parametrize("name", ["mlp", "logreg", "rosenbrock", "batched_neuron"])
def test_batch_sizes(name):
    """One compiled function, called with every batch size including 1 and 0
    (for 0 the expected result is the NumPy backend's: NaN for a mean over an
    empty batch, zeros for sums, or the same ValueError for too-small slices)."""
    src = BATCHED_NEURON if name == "batched_neuron" else example_source(name)
    llvm_fn, numpy_fn = pair(src)
    rng = np.random.default_rng(19)
    for batch in BATCH_SIZES:
        compare(llvm_fn, numpy_fn, example_args(name, llvm_fn, batch, rng),
                what=f"{name} batch={batch}", allow_error=batch < 2)


def test_empty_batch_results_defined():
    """Batch 0 explicitly: the mean over nothing is NaN (0/0), the batch output is
    empty, and the gradients are those of the NumPy backend."""
    llvm_fn, numpy_fn = pair(BATCHED_NEURON)
    empty = np.zeros(0)
    args = dict(x1=empty, x2=empty, y1=empty, y2=empty, w1=1.0, w2=1.0, b=0.0, w3=1.0,
                w4=1.0, b1=0.0, b2=0.0)
    (loss, a), grads = llvm_fn.value_and_grad(**args)
    assert np.isnan(loss) and a.shape == (0,)
    assert set(grads) == {"w1", "w2", "b", "w3", "w4", "b1", "b2"}
    compare(llvm_fn, numpy_fn, args, what="batch 0")
    loss_sum = pair("dim B\ninput x: [B]\nparam w\nloss = sum(x * w) + w\noutput loss\n")
    (value, grad) = loss_sum[0].value_and_grad(x=empty, w=2.0)
    assert value == 2.0 and grad["w"] == 1.0  # a sum over nothing is 0


# ============================================================ special values
SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 3.0, 1e-8, -1e-8,
                    40.0, -40.0, 100.0, -100.0, 700.0, -750.0, 89.0, -104.0, 1e4, -1e4, 1e9,
                    -1e9, 1e300, -1e300, 1e-310, 5e-324])


# Inputs left out per op (replaced by 1.0), for a divergence reported
# separately:
#   x^0.5 and the gradient of x^1.5 at -inf: pow(-inf, 0.5) is +inf natively,
#     as IEEE 754 / C99 pow says, and NaN in NumPy (np.power's sqrt shortcut):
#     the reference, not the native code, departs from IEEE here
def _special_excluded(op: str, dtype: str, values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = values.astype(np.float32 if dtype == "f32" else np.float64)
    bad = np.zeros(values.shape, bool)
    if op in ("pow0.5", "pow1.5"):
        bad |= np.isneginf(x)
    return bad


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", list(UNARY))
def test_special_values_unary(op, dtype):
    """NaN, +-inf, +-0, subnormals and huge values through every elementwise op
    and its gradient: NaN masks and infinities exactly as in the NumPy backend."""
    llvm_fn, numpy_fn = pair(unary_program(UNARY[op][0]), dtype)
    vals = np.where(_special_excluded(op, dtype, SPECIAL), 1.0, SPECIAL)
    m = np.stack([vals, vals[::-1], np.roll(vals, 5)], axis=1)  # [N, 3]
    # the broadcast operand is (m + r) / 2: r = 0 and 2m pass the specials through
    args = {"s": np.nan if op != "sign" else -0.0, "v": vals, "m": 2 * m, "r": np.zeros(3)}
    compare(llvm_fn, numpy_fn, args, what=f"{op} specials")
    args = {"s": np.inf, "v": vals[::-1].copy(), "m": m, "r": vals[6:9]}
    compare(llvm_fn, numpy_fn, args, what=f"{op} specials, reversed")
    for special in (0.0, -np.inf, 1e-310):  # the scalar path (straight-line code)
        if not _special_excluded(op, dtype, np.array([special]))[0]:
            compare(llvm_fn, numpy_fn, dict(args, s=special), what=f"{op} s={special}")


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["add", "mul", "div", "pow", "maximum", "minimum", "clip_both",
                                "where_gt", "where_eq", "where_ne"])
def test_special_values_binary(op, dtype):
    llvm_fn, numpy_fn = pair(binary_program(BINARY[op][0]), dtype)
    a, b = np.meshgrid(SPECIAL, SPECIAL[1::3])  # 28 x 9 pairs
    a, b = a.reshape(-1, 3), b.reshape(-1, 3)
    n = a.shape[0]
    args = {"a0": a, "b0": b, "a1": a, "b1": b[0], "a2": a[:, :1], "b2": b[:1],
            "a3": a[:, 0], "b3": np.nan, "a4": np.inf, "b4": b[:2], "a5": 0.0, "b5": -0.0}
    assert args["a3"].shape == (n,)
    compare(llvm_fn, numpy_fn, args, what=f"{op} specials")


SPECIAL_ROWS = np.array([
    [1.0, 2.0, 3.0, 4.0],
    [np.nan, 1.0, 2.0, 3.0],
    [np.inf, 1.0, 2.0, 3.0],
    [-np.inf, 1.0, 2.0, 3.0],
    [-np.inf, -np.inf, -np.inf, -np.inf],
    [np.inf, np.inf, 1.0, 2.0],
    [np.inf, -np.inf, 0.0, 1.0],
    [1e4, -1e4, 0.0, 1.0],
    [2.0, 2.0, 2.0, 1.0],
    [np.nan, np.inf, -np.inf, 0.0],
    [1.0, np.nan, 2.0, np.nan],
    [1e300, 1e300, -1e300, 0.0],
])

SPECIAL_REDUCTIONS = ["sum({x}, axis=1)", "mean({x}, axis=1)", "max({x}, axis=1)",
                      "min({x}, axis=1)", "logsumexp({x}, axis=1)", "softmax({x})[:, 0]",
                      "log_softmax({x})[:, 1]", "sum(maximum({x}, 1.5), axis=1)",
                      "sum(minimum({x}, -1.5), axis=1)",
                      "sum(where({x} > 1, sqrt({x}), 0), axis=1)", "sum(relu({x}), axis=1)",
                      "max(exp({x}), axis=1)", "logsumexp({x} * 2, axis=1, keepdims=true)[:, 0]",
                      "sum({x}, axis=0)[:4]", "max({x}, axis=0)[:4]", "min({x}, axis=0)[:4]",
                      "logsumexp({x}, axis=0)[:4]", "softmax({x}, axis=0)[:4, 1]",
                      "mean({x}, axis=(0, 1)) + 0 * {x}[:4, 0]"]


def special_reductions_program(dtype: str) -> tuple[str, list]:
    """Every expression on its own param (one compile): o_i has 4 entries for the
    column forms (read on the first 4 rows), one per row for the row forms."""
    exprs = SPECIAL_REDUCTIONS
    lines = ["dim N", "dim M", "input w: [N]"]
    terms = []
    for i, e in enumerate(exprs):
        lines += [f"param x{i}: [N, M]", f"o{i} = {e.format(x=f'x{i}')}"]
        terms.append(f"sum(o{i} * w[:4])" if "[:4" in e else f"sum(o{i} * w)")
    lines += ["loss = " + " + ".join(terms), "output loss, " + ", ".join(f"o{i}" for i in range(len(exprs)))]
    return "\n".join(lines) + "\n", exprs


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values_reductions(dtype):
    """NaN/inf in reductions, softmax and NaN-safe where, row by row and column by column."""
    src, exprs = special_reductions_program(dtype)
    llvm_fn, numpy_fn = pair(src, dtype)
    for what, rows in (("rows", SPECIAL_ROWS), ("tiled", np.tile(SPECIAL_ROWS, (3, 5))),
                       ("transposed", np.ascontiguousarray(np.tile(SPECIAL_ROWS, (1, 2)).T))):
        args = {f"x{i}": rows for i in range(len(exprs))}
        args["w"] = np.linspace(0.5, 1.5, rows.shape[0])
        compare(llvm_fn, numpy_fn, args, what=f"{what}: " + "; ".join(
            f"o{i} = {e}" for i, e in enumerate(exprs)))


def test_nan_safe_where_gradient_is_exactly_zero():
    src = "dim N\nparam x: [N]\nloss = sum(where(x > 0, sqrt(x), 0) + where(x > -1, log(x + 1), x))\noutput loss\n"
    llvm_fn, numpy_fn = pair(src)
    x = np.array([-3.0, -1.0, -0.5, 0.0, 1e-300, 0.25, 4.0, np.inf, -np.inf] * 3)
    compare(llvm_fn, numpy_fn, {"x": x})
    g = llvm_fn.grad(x=x)["x"]
    assert np.all(g[x == 0] == 1.0)  # sqrt branch not chosen; log branch: 1/(0+1)
    assert np.all(g[x <= -1] == 1.0)


# ================================================== generated code, by design
def _function_ir(fn, suffix: str) -> str:
    optimized = fn._backend.optimized_ir
    name = f"{fn._backend.name}_{suffix}"
    match = re.search(r"^define [^\n]*@" + re.escape(name) + r"\(.*?^}$", optimized, re.S | re.M)
    assert match, f"function {name} not found in the optimized IR"
    return match.group(0)


@pytest.mark.parametrize("dtype, pattern", [("f64", r"<(\d+) x double>"),
                                            ("f32", r"<(\d+) x float>")])
def test_elementwise_kernel_is_vectorized(dtype, pattern):
    src = (f"dim N\nparam x: {dtype}[N]\ninput y: {dtype}[N]\n"
           "o = exp(x) * y + sigmoid(x) - x / (1 + x*x)\nloss = sum(o)\noutput loss, o\n")
    llvm_fn, numpy_fn = pair(src)
    arithmetic = r"= (?:fadd|fsub|fmul|fdiv|load|call)\b[^\n]*" + pattern
    for suffix in ("value", "value_and_grad"):
        widths = {int(w) for w in re.findall(arithmetic, _function_ir(llvm_fn, suffix))}
        minimum = 2 if dtype == "f64" else 4
        assert widths and max(widths) >= minimum, \
            f"{suffix}: no vector arithmetic on {dtype} ({widths})"
    compare(llvm_fn, numpy_fn, {"x": np.linspace(-3, 3, 37), "y": np.linspace(1, 2, 37)})


def test_scalar_neuron_compiles_to_straight_line_code():
    llvm_fn, _ = pair(example_source("neuron"))
    for with_grad in (False, True):
        kinds = {k.kind for k in plan(llvm_fn.program, with_grad).kernels}
        assert kinds == {"scalar"}, f"with_grad={with_grad}: kernels {kinds}"
    for suffix in ("value", "value_and_grad"):
        body = _function_ir(llvm_fn, suffix)
        assert " phi " not in body, f"{suffix} has phi nodes"
        labels = re.findall(r"^([\w.$-]+):", body, re.M)
        position = {label: i for i, label in enumerate(labels)}
        block = -1
        for line in body.splitlines():
            label = re.match(r"^([\w.$-]+):", line)
            if label:
                block = position[label.group(1)]
            for target in re.findall(r"label %([\w.$-]+)", line):
                assert position[target] > block, f"{suffix}: back-edge to {target} (a loop)"
        assert not re.search(r"\.(cond|body)\b", body), f"{suffix} has a loop block"


# =============================================================== concurrency
MLP_SMALL = """
dim B
dim D = 13
dim H = 7
input x: [B, D]
input y: [B]
param W: [D, H]
param v: [H]
param c
h = tanh(x @ W)
p = sigmoid(h @ v + c)
loss = -mean(y*log(p) + (1-y)*log(1-p)) + 0.01*sum(W*W) + logsumexp(h)
output loss, h
"""


def test_threads_match_sequential_calls():
    llvm_fn, numpy_fn = pair(MLP_SMALL)
    rng = np.random.default_rng(20)
    sizes = [1, 2, 5, 8, 17, 33, 64, 100] * 3
    data = []
    for b in sizes:
        data.append({"x": rng.normal(size=(b, 13)), "y": rng.uniform(0.1, 0.9, b),
                     "W": rng.normal(size=(13, 7)), "v": rng.normal(size=7),
                     "c": float(rng.normal())})
    sequential = [llvm_fn.value_and_grad(**d) for d in data]
    # value() has its own schedule (no backward): compare it with itself, bit for bit
    sequential_values = [llvm_fn.value(**d) for d in data]
    barrier = threading.Barrier(8)

    def work(i):
        barrier.wait()
        out = []
        for rep in range(4):
            for j in range(i, len(data), 8):
                out.append((j, llvm_fn.value_and_grad(**data[j]), llvm_fn.value(**data[j])))
        return out

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = [r for chunk in pool.map(work, range(8)) for r in chunk]
    assert len(results) == 4 * len(data)
    for j, (values, grads), only in results:
        (want_loss, want_h), want_grads = sequential[j]
        assert values[0] == want_loss and np.array_equal(values[1], want_h), f"call {j}"
        want_only = sequential_values[j]
        assert only[0] == want_only[0] and np.array_equal(only[1], want_only[1]), f"value() {j}"
        for k in want_grads:
            assert np.array_equal(grads[k], want_grads[k]), f"call {j}: d/d{k}"
    for j in (0, 7, 12):
        compare(llvm_fn, numpy_fn, data[j])


# ===================================================== non-contiguous inputs
def _layouts(x: np.ndarray) -> dict:
    big = np.zeros((x.shape[0] * 2, x.shape[1] * 3))
    big[::2, ::3] = x
    rev = x[::-1, ::-1].copy()
    raw = np.zeros(x.size * 8 + 1, np.uint8)  # a misaligned buffer
    misaligned = np.ndarray(x.shape, np.float64, buffer=raw, offset=1)
    misaligned[...] = x
    return {"fortran": np.asfortranarray(x), "strided": big[::2, ::3],
            "negative": rev[::-1, ::-1], "negative_rows": x[::-1].copy()[::-1],
            "transposed": np.ascontiguousarray(x.T).T, "misaligned": misaligned,
            "big_endian": x.astype(">f8"), "f32_given": x.astype(np.float32),
            "readonly": np.frombuffer(x.tobytes(), np.float64).reshape(x.shape)}


def test_non_contiguous_inputs():
    llvm_fn, numpy_fn = pair(MLP_SMALL)
    rng = np.random.default_rng(21)
    x = rng.normal(size=(9, 13))
    W = rng.normal(size=(13, 7))
    base = {"x": x, "y": rng.uniform(0.1, 0.9, 9), "W": W, "v": rng.normal(size=7), "c": 0.3}
    (want_loss, want_h), want_grads = llvm_fn.value_and_grad(**base)
    for name, xv in _layouts(x).items():
        for target, arr in (("x", xv), ("W", _layouts(W)[name])):
            args = dict(base, **{target: arr})
            if name == "f32_given":
                args[target] = arr.astype(np.float64)  # the rounding is the point
                (want_loss2, _), _ = llvm_fn.value_and_grad(**args)
                (got_loss, _), _ = llvm_fn.value_and_grad(**dict(base, **{target: arr}))
                assert got_loss == want_loss2, name
                continue
            (loss, h), grads = llvm_fn.value_and_grad(**args)
            assert loss == want_loss and np.array_equal(h, want_h), f"{name} {target}"
            for k in want_grads:
                assert np.array_equal(grads[k], want_grads[k]), f"{name} {target}: d/d{k}"
            compare(llvm_fn, numpy_fn, args, what=f"{name} {target}")
    # a zero-stride broadcast view and a negative-stride vector
    args = dict(base, v=np.broadcast_to(np.float64(0.7), (7,)), y=base["y"][::-1])
    compare(llvm_fn, numpy_fn, args, what="broadcast view")
    assert llvm_fn.value(**args)[0] == llvm_fn.value(**{k: np.array(v) for k, v in args.items()})[0]


def test_same_array_for_two_arguments():
    """Arguments are declared noalias; passing one array twice is read-only aliasing."""
    llvm_fn, numpy_fn = pair("dim N\nparam x: [N]\nparam y: [N]\nloss = sum(x*y) + sum(exp(x) - y)\noutput loss, x\n")
    a = np.linspace(-1, 1, 21)
    compare(llvm_fn, numpy_fn, {"x": a, "y": a})


def test_out_buffers_and_aliasing():
    """out= result buffers (the native code writes into them), also when a buffer
    is an argument of the same call (in-place updates: W, grad_W = f(W))."""
    llvm_fn, numpy_fn = pair(MLP_SMALL)
    rng = np.random.default_rng(23)
    base = {"x": rng.normal(size=(6, 13)), "y": rng.uniform(0.1, 0.9, 6),
            "W": rng.normal(size=(13, 7)), "v": rng.normal(size=7), "c": 0.3}
    (want_loss, want_h), want_grads = numpy_fn.value_and_grad(**base)
    bufs = {"loss": np.empty(()), "h": np.empty((6, 7)), "grad_W": np.empty((13, 7)),
            "grad_c": np.empty(())}
    (loss, h), grads = llvm_fn.value_and_grad(**base, out=bufs)
    assert h is bufs["h"] and grads["W"] is bufs["grad_W"]
    assert_same(bufs["loss"], np.asarray(want_loss), RTOL["f64"], "out loss")
    assert_same(bufs["h"], want_h, RTOL["f64"], "out h")
    assert_same(bufs["grad_W"], want_grads["W"], RTOL["f64"], "out grad_W")
    assert_same(bufs["grad_c"], np.asarray(want_grads["c"]), RTOL["f64"], "out grad_c")
    assert_same(grads["v"], want_grads["v"], RTOL["f64"], "grad_v (no buffer)")
    # the gradient written over the param it is taken with respect to
    W = base["W"].copy()
    (loss, _), grads = llvm_fn.value_and_grad(**dict(base, W=W), out={"grad_W": W})
    assert grads["W"] is W
    assert_same(W, want_grads["W"], RTOL["f64"], "grad_W written over W")
    assert_same(np.asarray(loss), np.asarray(want_loss), RTOL["f64"], "loss with W aliased")
    # an output written over an input: h over a view of x's memory is refused or safe
    x = np.zeros((6, 13))
    x[...] = base["x"]
    out_h = x[:, :7].copy()
    values = llvm_fn.value(**dict(base, x=x), out={"h": out_h})
    assert_same(values[1], want_h, RTOL["f64"], "value(out=h)")


def test_long_elementwise_chain():
    """A loop body of hundreds of nodes (the 'huge' path: out-of-line vector math,
    no unrolling) agrees with NumPy, and the chain's gradient too."""
    lines = ["dim N", "param x: [N]", "param a", "h0 = x"]
    for i in range(1, 61):
        fn = ("tanh", "sin", "sigmoid", "softplus")[i % 4]
        lines.append(f"h{i} = {fn}(h{i - 1}) * a + 0.1 * h{i - 1}")
    lines += ["loss = sum(h60 * h60)", "output loss, h60"]
    llvm_fn, numpy_fn = pair("\n".join(lines) + "\n")
    rng = np.random.default_rng(24)
    for n in (1, 7, 64):
        compare(llvm_fn, numpy_fn, {"x": rng.normal(size=n), "a": 0.8}, what=f"N={n}")


OUTPUT_KINDS = """
dim N
param x: [N]
param y: [N, 3]
param s
param unused: [N, 3]
input t: [N]
c = 2
m = max(x)
z = x * s
loss = sum(z * t) + m
output loss, x, y, s, c, z, m, loss, t
"""


@pytest.mark.parametrize("wrt", [None, ("x",), ("s", "unused")])
def test_outputs_of_every_kind_and_unused_params(wrt):
    """Outputs that are arguments, constants, intermediates, repeats; a param the
    loss does not use must get an exact zero gradient (the native side allocates
    gradient arrays uninitialised); `wrt` narrows the gradients."""
    llvm_fn, numpy_fn = pair(OUTPUT_KINDS, None, wrt)
    rng = np.random.default_rng(25)
    for n in (1, 4, 19):
        args = make_args(llvm_fn, {"N": n}, distinct, rng)
        compare(llvm_fn, numpy_fn, args, what=f"wrt={wrt} N={n}")
        grads = llvm_fn.grad(**args)
        assert set(grads) == set(wrt or ("x", "y", "s", "unused"))
        for k in ("y", "unused"):
            if k in grads:
                assert not np.any(grads[k]), f"d/d{k} must be exactly 0"


# ================================================================ hypothesis
# A small generator of elementwise + reduction programs over
#   X, Y: [N, 3]   u: [N]   w: [3]   s: scalar
# built only from operations that stay finite for any finite input.
_LEAVES = {"m": ["X", "Y"], "r": ["u"], "c": ["w"], "s": ["s"]}
_UNARY_SAFE = ["sin({0})", "cos({0})", "tanh({0})", "sigmoid({0})", "softplus({0})",
               "exp(sin({0}))", "log(1 + square({0}))", "log1p(abs({0}))", "sqrt(1 + {0}^2)",
               "expm1(tanh({0}))", "abs({0})", "relu({0})", "-({0})", "({0})^2",
               "pow(1 + sigmoid({0}), 1.5)", "clip({0}, -1, 1)", "tan(tanh({0}))", "sign({0})"]
_BINARY_SAFE = ["({0}) + ({1})", "({0}) - ({1})", "({0}) * ({1})", "({0}) / (1 + ({1})^2)",
                "maximum({0}, {1})", "minimum({0}, {1})", "where({0} > {1}, {0}, {1})",
                "where({0} <= {1}, sin({0}), {1} * 2)", "pow(1 + ({0})^2, tanh({1}))",
                "clip({0}, -abs({1}), abs({1}) + 0.5)"]
_REDUCE = ["sum", "mean", "max", "min", "logsumexp"]


@st.composite
def expressions(draw, shape: str, depth: int, reductions: tuple = tuple(_REDUCE)):
    """An expression of `shape`: "m" [N, 3], "r" [N], "c" [3] or "s" (scalar)."""
    def sub(s):
        return draw(expressions(s, depth - 1, reductions))

    def pick(options):
        return draw(st.sampled_from(options))

    if depth <= 0 or draw(st.integers(0, 4)) == 0:
        return pick(_LEAVES[shape])
    kind = pick(["unary", "binary", "binary", "reduce", "special", "layout"])
    if kind == "unary":
        return pick(_UNARY_SAFE).format(sub(shape))
    if kind == "layout":  # index arithmetic: slices, transposes, concats, reshapes
        if shape == "s":
            return pick(["({0})[-1, 1]", "({0})[0, ::-1][2]"]).format(sub("m"))
        if shape == "r":
            return pick(["({0})[:, {1}]", "({0})[::-1, 2]"]).format(sub("m"), pick(["0", "-1"])) \
                if draw(st.booleans()) else f"({sub('r')})[::-1]"
        if shape == "c":
            return pick(["({0})[0]", "({0})[-1, ::-1]"]).format(sub("m")) \
                if draw(st.booleans()) else f"reshape(reshape({sub('c')}, [1, 3]).T, [3])"
        return pick(["({0})[::-1]", "transpose(transpose({0}))", "({0})[:, ::-1]",
                     "concat([({0})[1:], ({0})[:1]], axis=0)",
                     "concat([({0})[:, 1:], ({0})[:, :1]], axis=1)",
                     "reshape(reshape({0}, [-1]), [N, 3])"]).format(sub("m"))
    if kind == "binary":
        other = pick({"m": ["m", "c", "s", "r"], "r": ["r", "s"], "c": ["c", "s"],
                      "s": ["s"]}[shape])
        a, b = sub(shape), sub(other)
        if other == "r" and shape == "m":
            b = f"reshape({b}, [N, 1])"
        if draw(st.booleans()):
            a, b = b, a
        return pick(_BINARY_SAFE).format(a, b)
    red = pick(list(reductions))
    if kind == "reduce":
        if shape == "r":
            return f"{red}({sub('m')}, axis={pick(['1', '-1'])})"
        if shape == "c":
            return f"{red}({sub('m')}, axis=0)"
        if shape == "s":
            return f"{red}({sub(pick(['m', 'r', 'c']))})"
        return f"({sub('m')}) - {red}({sub('m')}, axis={pick(['0', '1'])}, keepdims=true)"
    # special forms: softmax, matrix-vector products
    if shape == "m":
        return f"{pick(['softmax', 'log_softmax'])}({sub('m')}, axis={pick(['0', '1', '-1'])})"
    if shape == "r":
        return f"({sub('m')}) @ ({sub('c')})"
    if shape == "c":
        return f"({sub('r')}) @ ({sub('m')})"
    return f"({sub('c')}) @ ({sub('c')})"


HEADER = "dim N\ndim K = 3\nparam X: [N, K]\nparam Y: [N, K]\nparam u: [N]\nparam w: [K]\nparam s\n"


@st.composite
def programs(draw):
    shape = draw(st.sampled_from(["m", "r", "c", "s"]))
    body = draw(expressions(shape, 3, tuple(_REDUCE)))
    loss = "0.5 * o * o" if shape == "s" else "0.5 * sum(o * o)"
    return HEADER + f"o = {body}\nloss = {loss}\noutput loss, o\n"


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), n=st.sampled_from([1, 2, 5, 8, 17]), seed=st.integers(0, 2**32 - 1))
def test_random_programs(dtype, data, n, seed):
    src = data.draw(programs(), label="program")
    llvm_fn, numpy_fn = pair(src, dtype)
    rng = np.random.default_rng(seed)
    args = make_args(llvm_fn, {"N": n}, None, rng)
    if dtype == "f64":
        # floor: a rounding error grows with the magnitudes summed (the loss)
        loss = float(_as_tuple(numpy_fn.value(**args))[0])
        floor = max(1.0, abs(loss)) if np.isfinite(loss) else 1.0
        compare(llvm_fn, numpy_fn, args, floor=floor, what=f"\n{src}\nN={n}")
    else:
        compare_f32_to_truth(src, args, what=f"\n{src}\nN={n}")


def compare_f32_to_truth(src: str, args: dict, what: str) -> None:
    """Random f32 programs cancel (sum(e - mean(e))): a fixed relative bound fails
    on rounding alone. So both f32 backends are measured against the program run
    in f64 on the same (f32-rounded) inputs, and the native one must be about as
    accurate as NumPy: error <= 10 * NumPy's error + 1e-5 * max(|truth|, 1)."""
    llvm_fn, numpy_fn = pair(src, "f32")
    truth_fn = pair(src, "f64")[1]
    rounded = {k: np.asarray(v, np.float32).astype(np.float64) for k, v in args.items()}
    results = [llvm_fn.value_and_grad(**args), numpy_fn.value_and_grad(**args),
               truth_fn.value_and_grad(**rounded)]
    names = list(llvm_fn.outputs) + [f"d/d{k}" for k in results[2][1]]

    def flat(r):
        return list(_as_tuple(r[0])) + [r[1][k] for k in results[2][1]]
    for name, a, b, t in zip(names, *map(flat, results)):
        a, b, t = (np.asarray(v, np.float64) for v in (a, b, t))
        assert a.shape == b.shape == t.shape, f"{what} {name}: shapes"
        assert np.array_equal(np.isnan(a), np.isnan(b)), f"{what} {name}: NaN masks"
        fin = np.isfinite(t) & np.isfinite(a) & np.isfinite(b)
        assert np.array_equal(a[~fin], b[~fin], equal_nan=True), f"{what} {name}: infinities"
        e_llvm = np.linalg.norm(a[fin] - t[fin])
        e_numpy = np.linalg.norm(b[fin] - t[fin])
        bound = 10 * e_numpy + 1e-5 * max(np.linalg.norm(t[fin]), 1.0)
        assert e_llvm <= bound, (f"{what} {name}: error vs f64 {e_llvm:.3g} > {bound:.3g} "
                                 f"(NumPy f32's error {e_numpy:.3g})")


# ============================================================ found bugs
# Each reproduces one bug found by this suite, reduced to a minimal program.
# Fixed ones stay as regression tests; open ones are xfail(strict=True): when
# one is fixed its test XPASSes and the run fails, which says: remove the mark.

def test_regression_max_of_recomputed_division_keeps_gradient():
    """Was: the max VJP compares a recomputed x/y with the reduced max; under
    'arcp' LLVM rewrote the divisions by y of the gradient loop as x*(1/y) (one
    reciprocal shared with g/y), the recomputed value no longer equalled the
    max, and the gradient was silently all zeros (fixed in cdb4e69: exact div)."""
    src = "dim N\nparam x: [N]\ninput y: [N]\nloss = max(x / y)\noutput loss\n"
    llvm_fn, numpy_fn = pair(src)
    # 7/3 != 7*(1/3) in binary64; 8 elements: a vector loop body
    compare(llvm_fn, numpy_fn, {"x": np.full(8, 7.0), "y": np.full(8, 3.0)})
    grad = llvm_fn.grad(x=np.full(8, 7.0), y=np.full(8, 3.0))["x"]
    assert np.all(grad == (1 / 3) / 8)  # the tie splits the gradient 8 ways
    rng = np.random.default_rng(22)
    for n in (8, 9, 17, 40):
        compare(llvm_fn, numpy_fn, {"x": rng.normal(size=n), "y": rng.normal(size=n)})


def test_regression_max_over_normalised_matrix_gradient():
    """The same bug in a realistic program: column-normalised rows, then max over rows."""
    src = ("dim N\ndim M\nparam x: [N, M]\nb = x / sum(x, axis=0)\n"
           "c = b * sum(b, axis=1, keepdims=true)\nloss = sum(max(c, axis=0))\noutput loss\n")
    llvm_fn, numpy_fn = pair(src)
    x = np.array([[1.0, 2, 1, 3], [1, 1, 2, 0.5], [2, 1, 1, 0.5]]) + 0.1
    compare(llvm_fn, numpy_fn, {"x": x})


@pytest.mark.parametrize("dtype", DTYPES)
def test_regression_sqrt_gradient_at_zero_and_inf(dtype):
    """Was (f32): 1/sqrt(x) of the sqrt VJP became an rsqrt estimate plus a Newton
    step (afn/arcp): NaN at x = 0 and x = inf instead of inf and 0 (fixed in cdb4e69)."""
    for src in ("param x\nloss = sqrt(x)\noutput loss\n",
                "dim N\nparam x: [N]\nloss = sum(sqrt(x))\noutput loss\n"):
        llvm_fn, numpy_fn = pair(src, dtype)
        for x in (0.0, np.inf, 4.0):
            arg = x if "dim N" not in src else np.full(9, x)
            compare(llvm_fn, numpy_fn, {"x": arg}, what=f"x={x}")


def test_regression_division_by_subnormal():
    """Was: y/x with the reciprocal 1/x shared with the gradient's g/x ('arcp');
    for a subnormal x, 1/x overflows and 1e-310/1e-310 gave inf (fixed in cdb4e69)."""
    llvm_fn, numpy_fn = pair("param x\ninput y\nloss = y / x\noutput loss\n")
    compare(llvm_fn, numpy_fn, {"x": 1e-310, "y": 1e-310})
    llvm_fn, numpy_fn = pair("dim N\nparam x: [N]\ninput y: [N]\nloss = sum(y / x)\noutput loss\n")
    compare(llvm_fn, numpy_fn, {"x": np.full(9, 1e-310), "y": np.full(9, 1e-310)})


def test_regression_f32_max_min_reduction_gradient_compiles():
    """Was: the max/min VJP built where(hit, 1.0, 0.0) from two numbers, which
    default to f64: 'cannot mix f32 and f64' for an f32 operand (fixed in
    reductions.py _extremum_vjp)."""
    llvm_fn, numpy_fn = pair("dim N\nparam x: f32[N]\nloss = max(x) - min(x)\noutput loss\n")
    compare(llvm_fn, numpy_fn, {"x": np.array([1.0, 3.0, 2.0], np.float32)})


@pytest.mark.parametrize("dtype", DTYPES)
def test_regression_trig_of_large_arguments(dtype):
    """Was: sin/cos/tan reduced the argument only for |x| <= 2**30 and returned NaN
    beyond (no Payne-Hanek reduction).  Fixed in vmath: lanes beyond 2**30 take an
    out-of-line table reduction (the bits of 2/pi, integer arithmetic), on the
    scalar path and in vectors mixing small and huge values."""
    f32 = dtype == "f32"
    llvm_fn, numpy_fn = pair(f"param x: {dtype}\nloss = sin(x) + cos(x) + tan(x)\noutput loss\n")
    for x in (1e10, -1e22, 1e30) + (() if f32 else (1e300, 1.7976931348623157e308)):
        compare(llvm_fn, numpy_fn, {"x": np.float32(x) if f32 else x}, what=f"x={x}")
    llvm_fn, numpy_fn = pair(f"dim N\nparam x: {dtype}[N]\nloss = sum(sin(x) + cos(x) + tan(x))\n"
                             "output loss\n")
    huge = [1e10, -1e22, 2.0 ** 30 + 64, 3e38] + ([] if f32 else [1e300, -1.7976931348623157e308])
    x = np.resize(np.array([0.5, -2.0, 3.0] + huge), 37)        # small and huge lanes mixed
    np.random.default_rng(0).shuffle(x)
    compare(llvm_fn, numpy_fn, {"x": x.astype(np.float32 if f32 else np.float64)})


@pytest.mark.parametrize("exponent", ["-0.5", "-1.5", "0.5", "1.5", "-2.5", "0.25"])
def test_regression_pow_constant_exponent_at_zero_and_inf(exponent):
    """Was: with 'afn', LLVM expanded pow(x, -1.5) into powi(x, -2) * sqrt(x):
    0 * inf = NaN at x = 0 and x = inf (so x^-1.5, and the gradient of x^-0.5,
    were NaN there), and pow(-0, -0.5) became 1/sqrt(-0) = -inf instead of +inf
    (fixed in 9639b42: pow stays exact)."""
    for src in (f"param x\nloss = x^{exponent}\noutput loss\n",
                f"dim N\nparam x: [N]\no = x^{exponent}\nloss = sum(o)\noutput loss, o\n"):
        llvm_fn, numpy_fn = pair(src)
        for x in (0.0, -0.0, np.inf, 4.0, 1e-310):
            arg = x if "dim N" not in src else np.full(9, x)
            compare(llvm_fn, numpy_fn, {"x": arg}, what=f"x={x}")


# ============================================================ giant programs
GIANT_CHAIN = "dim N\nparam x: [N]\ninput c: [N]\ny0 = x\n" + "".join(
    f"y{i} = y{i - 1} * c + sin(x)\n" for i in range(1, 40)) + \
    "s = mean(y39)\nloss = sum((y39 - s)^2) + s * max(y20)\noutput loss, y20\n"


@pytest.mark.parametrize("name", EXAMPLE_NAMES + ["giant_chain", "batched_neuron"])
def test_giant_programs_compile_in_pieces(name, monkeypatch):
    """A program whose fused loops would be giant is cut into loops of bounded
    size, one function each, with scalars passed through memory (schedule.py
    GIANT_BODY). The limits are lowered here so that ordinary programs take that
    path; it must compute what the NumPy backend computes."""
    monkeypatch.setattr(schedule, "GIANT_BODY", 4)
    monkeypatch.setattr(schedule, "BODY_CHUNK", 2)
    monkeypatch.setenv("CHAINRULE_CACHE", "0")
    src = {"giant_chain": GIANT_CHAIN, "batched_neuron": BATCHED_NEURON}.get(name) or \
        example_source(name)
    src = f"# outlined\n{src}"  # not the in-process cache entry of the whole program
    program = build_program(Source(src))
    plans = [schedule.plan(program, flag) for flag in (True, False)]
    assert any(p.outlined for p in plans) or name == "neuron"  # neuron: scalars only
    if name != "neuron":
        assert re.search(r'define internal void @"cr_giant_value(_and_grad)?\.kernel1"',
                         build_module(program, "cr_giant").llvm_ir)
    llvm_fn, numpy_fn = pair(src)
    rng = np.random.default_rng(21)
    for batch in (1, 9, 40):
        compare(llvm_fn, numpy_fn, example_args(name, llvm_fn, batch, rng),
                what=f"{name} outlined, batch={batch}")


def test_regression_signed_zero_keeps_the_sign_of_infinite_gradients():
    """Was: arithmetic carried the 'nsz' flag, so 1/(1 + w) at w = -1 could see
    -0 and the gradient of sum((2 - log1p(w))^2) was +inf where NumPy (and IEEE)
    give -inf. Found by the campaign (seed 400924)."""
    llvm_fn, numpy_fn = pair("param w: [3]\nloss = 0.5 * sum(square(2 - log1p(w)))\n"
                             "output loss\n")
    w = np.array([-1.0, 0.5, 1.0])
    with np.errstate(all="ignore"):
        want = numpy_fn.grad(w=w)["w"]
    got = llvm_fn.grad(w=w)["w"]
    assert want[0] == -np.inf
    np.testing.assert_array_equal(got, want)


def test_workspace_slots_carry_alias_scopes(monkeypatch):
    """Every workspace buffer is an offset of one pointer, so LLVM could not tell
    that logreg's X^T g loop (writing one buffer, reading g from another) is
    safe to vectorize: it ran scalar. Slot scopes (emit.py _slot_alias_tags)
    let it vectorize: more vector operations than without them."""
    program = build_program(Source(example_source("logreg")))

    def vector_ops() -> int:
        optimized = str(jit.optimize(build_module(program, "cr_alias").llvm_ir,
                                     jit.target_machine(jit=True)))
        return len(re.findall(r"x (?:double|float)>", optimized))
    tagged = vector_ops()
    assert "!alias.scope" in build_module(program, "cr_alias").llvm_ir
    monkeypatch.setattr(emit, "MAX_ALIAS_SLOTS", 0)
    assert tagged > vector_ops()


def test_buffers_sharing_a_slot_share_its_scope():
    module = ir.Module()
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), []), "f")
    tags = emit._slot_alias_tags(fn, {0: 0, 1: 1, 2: 0})
    assert tags[0] == tags[2] and tags[0] != tags[1]
    scope0, noalias0 = tags[0]
    scope1, noalias1 = tags[1]
    assert scope0.operands[0] in noalias1.operands and scope1.operands[0] in noalias0.operands
    assert scope0.operands[0] not in noalias0.operands
    assert emit._slot_alias_tags(fn, {0: 0, 1: 0}) == {}  # one slot: nothing to say


@pytest.mark.parametrize("src", [
    "dim N\nparam x: f32[N]\nloss = sum(x)\noutput loss\n",
    "dim N, M\nparam x: f32[N, M]\ns = sum(x, axis=1)\nloss = sum(s) / 1000\noutput loss, s\n",
])
def test_regression_long_f32_sums_are_accurate(src):
    """Was: an f32 sum ran in f32 partial sums, thousands of terms each: 3e-4 off
    where NumPy's pairwise sum is within a few ulps (campaign seed 802936). f32
    sums now accumulate in f64 registers."""
    llvm_fn = chainrule.compile(src, backend="llvm")
    shape = (200_000,) if "M" not in src else (4, 100_000)
    x = np.full(shape, np.exp(4.0), np.float32)  # equal terms: rounding errors add up
    exact = x.astype(np.float64).sum() / (1000 if "M" in src else 1)
    value = llvm_fn.value(x=x)
    got = value[0] if isinstance(value, tuple) else value
    assert abs(float(got) - exact) <= 2e-7 * abs(exact), (float(got), exact)


@pytest.mark.parametrize("src", ["param a\ninput b\nloss = a ^ b\noutput loss\n",
                                 "dim N\nparam a: [N]\ninput b: [N]\no = a ^ b\n"
                                 "loss = sum(o)\noutput loss, o\n"])
def test_regression_pow_of_minus_infinity(src):
    """Was: (-inf) ^ 0.5 was +inf natively (C99 pow) and NaN in the NumPy backend
    for a 0-d operand (np.power says +inf for arrays). Both now follow C99
    (campaign seed 1003712)."""
    llvm_fn, numpy_fn = pair(src)
    for b, want in ((0.5, np.inf), (2.0, np.inf), (3.0, -np.inf), (1.5, np.inf),
                    (-0.5, 0.0), (-3.0, -0.0)):
        args = {"a": -np.inf, "b": b} if "N" not in src else \
            {"a": np.full(3, -np.inf), "b": np.full(3, b)}
        for fn in (llvm_fn, numpy_fn):
            with np.errstate(all="ignore"):
                value = fn.value(**args)
            got = value if "N" not in src else value[1]
            np.testing.assert_array_equal(got, np.full(np.shape(got), want), err_msg=f"b={b}")
