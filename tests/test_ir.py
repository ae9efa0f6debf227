"""The IR: hash-consing, the verifier, the primitive registry, the simplifier's
identities, and random elementwise programs against finite differences."""
from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chainrule
from chainrule.compiler import ops
from chainrule.compiler.ir import Node, TensorType, make, registry, topo_order
from chainrule.compiler.pipeline import build_program
from chainrule.compiler.verify import IRError, verify, verify_nodes
from chainrule.grammar.source import Source
from finite_diff import assert_grad_close, numerical_grad

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.expr"))


def program_of(src: str, **options):
    return build_program(Source(src), **options)


def arg(name: str, shape=(), dtype="f64", kind="param") -> Node:
    return make("arg", name=name, kind=kind, dtype=dtype, shape=tuple(shape))


# ------------------------------------------------------------ hash-consing
def test_same_construction_gives_the_same_node():
    x, y = arg("hx", (3,)), arg("hy", (3,))
    assert arg("hx", (3,)) is x
    assert ops.add(x, y) is ops.add(x, y)
    assert ops.mul(ops.add(x, y), 2.0) is ops.mul(ops.add(x, y), 2.0)
    assert ops.add(x, y) is not ops.add(y, x)  # argument order matters
    assert ops.unary("exp", x) is not ops.unary("log", x)
    assert ops.reduce("reduce_sum", arg("hm", (2, 3)), [0]) is not \
        ops.reduce("reduce_sum", arg("hm", (2, 3)), [1])


def test_signed_zeros_are_different_constants():
    assert ops.const(0.0, "f64") is not ops.const(-0.0, "f64")
    assert ops.const(0.0, "f64") is ops.const(0.0, "f64")
    assert ops.const(-0.0, "f64") is ops.const(-0.0, "f64")
    assert ops.const(1.0, "f64") is not ops.const(1.0, "f32")
    assert ops.const(float("nan"), "f64") is ops.const(float("nan"), "f64")


def test_nodes_are_immutable():
    x = arg("imm")
    with pytest.raises(AttributeError):
        x.op = "const"


def test_common_subexpressions_are_shared():
    p = program_of("param x: [3]\nloss = sum(exp(x) * exp(x)) + sum(exp(x))\noutput loss",
                   optimize=False)
    exps = [n for n in p.schedule(with_grad=False) if n.op == "exp"]
    assert len(exps) == 1


def test_compiling_twice_gives_the_same_graph():
    src = EXAMPLES[0].read_text()
    a, b = program_of(src), program_of(src)
    assert a.outputs[0][1] is b.outputs[0][1]
    assert all(ga is gb for (_, ga), (_, gb) in zip(a.grads, b.grads))


# ---------------------------------------------------------------- verifier
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
@pytest.mark.parametrize("optimize", [False, True])
@pytest.mark.parametrize("dtype", [None, "f32"])
def test_verifier_accepts_every_example(path, optimize, dtype):
    verify(build_program(Source(path.read_text(), str(path)), optimize=optimize, dtype=dtype))


def test_verifier_runs_on_every_program_of_the_tests():
    from conftest import VERIFIED
    before = VERIFIED[0]
    unique = f"# {uuid.uuid4().hex}\n"  # the API memoises compiled programs by source
    chainrule.compile(unique + "param x\nloss = x\noutput loss", backend="numpy")
    assert VERIFIED[0] == before + 1


def _builtin_case_programs():
    from test_builtins_grad import CASES
    return [f"{c.header}\nout = {c.expr}\nloss = sum(sin(out))\noutput loss, out\n"
            for c in CASES]


def test_verifier_accepts_every_builtin_case_unsimplified():
    for src in _builtin_case_programs():
        verify(program_of(src, optimize=False))


def test_verifier_rejects_a_wrong_type():
    x = arg("vx", (3,))
    good = ops.unary("exp", x)
    forged = Node("exp", (x,), (), TensorType("f64", (4,)))
    verify_nodes([x, good])
    with pytest.raises(IRError, match="differs from the inferred"):
        verify_nodes([x, forged])


def test_verifier_rejects_a_bad_order():
    x = arg("vo", (3,))
    y = ops.unary("exp", x)
    with pytest.raises(IRError, match="before its user"):
        verify_nodes([y, x])
    with pytest.raises(IRError, match="before its user"):
        verify_nodes([y])


def test_verifier_rejects_a_gradient_of_the_wrong_type():
    p = program_of("param x: [3]\nloss = sum(x)\noutput loss")
    x = p.arg_nodes["x"]
    p.grads = (("x", ops.reduce("reduce_sum", ops.unary("exp", x), [0])),)
    with pytest.raises(IRError, match="gradient of 'x'"):
        verify(p)


def test_verifier_rejects_undeclared_dims():
    x = arg("vd", (3,))
    from chainrule.compiler.shapes import sym
    y = make("broadcast", [x], shape=(sym("Q"), 3))
    verify_nodes([x, y])
    with pytest.raises(IRError, match="undeclared"):
        verify_nodes([x, y], symbolic={"B"})


# ---------------------------------------------------------------- registry
def test_registry_is_complete():
    families = {"elementwise", "reduce", "layout", "matmul", "source"}
    assert len(registry()) > 30
    for name, prim in registry().items():
        assert prim.name == name
        assert prim.family in families, name
        assert callable(prim.infer), name
        assert callable(prim.evaluate), name
        if not prim.derivative_free:
            assert callable(prim.vjp), f"primitive '{name}' has no VJP"
        if prim.family == "elementwise":
            assert prim.emit is not None, f"elementwise primitive '{name}' has no LLVM emission"


def test_every_primitive_is_reachable_from_the_language():
    """Each primitive is produced by some program of the builtin table (no dead rules)."""
    used = set()
    for src in _builtin_case_programs():
        for optimize in (False, True):  # rewrites may introduce primitives of their own
            p = program_of(src, optimize=optimize)
            used |= {n.op for n in p.schedule(with_grad=True)}
    for src in ("param x: [3]\nloss = sum(abs(x)) + max(x) - min(x)\noutput loss",
                "dim N\nparam x: [N]\nloss = mean(x)\noutput loss"):
        used |= {n.op for n in program_of(src).schedule(with_grad=True)}
    assert set(registry()) - used == set()


# --------------------------------------------------------------- simplifier
def ops_of(src: str, with_grad: bool = False) -> list[str]:
    return [n.op for n in program_of(src).schedule(with_grad)]


def test_additive_and_multiplicative_identities_are_removed():
    got = ops_of("param x: [3]\nloss = sum((x + 0) * 1 - 0)\noutput loss")
    assert "add" not in got and "mul" not in got and "sub" not in got
    got = ops_of("param x: [3]\nloss = sum(0 + 1 * (x / 1))\noutput loss")
    assert not {"add", "mul", "div"} & set(got)


def test_times_zero_is_kept():
    """x * 0 is not 0 in IEEE arithmetic (inf * 0 is NaN), so it stays."""
    assert "mul" in ops_of("param x: [3]\nloss = sum(x * 0)\noutput loss")
    fn = chainrule.compile("param x: [2]\nloss = sum(x * 0)\noutput loss", backend="numpy")
    assert np.isnan(fn.value(x=[np.inf, 1.0]))


def test_power_identities():
    assert "pow" not in ops_of("param x: [3]\nloss = sum(x ^ 1)\noutput loss")
    assert "pow" not in ops_of("param x: [3]\nloss = sum(x ^ 2)\noutput loss")


def test_double_negation_and_double_transpose():
    got = ops_of("param x: [2, 3]\nloss = sum(-(-x) * x.T.T)\noutput loss")
    assert "neg" not in got and "transpose" not in got


def test_constants_are_folded():
    p = program_of("param x\nloss = x * (2 * 3 + exp(0))\noutput loss")
    consts = [n.attr("value") for n in p.schedule(False) if n.op == "const"]
    assert consts == [7.0]


def test_simplified_and_unsimplified_agree():
    for path in EXAMPLES:
        src = path.read_text()
        a = chainrule.compile(src, backend="numpy")
        p = program_of(src, optimize=False)
        args = {}
        rng = np.random.default_rng(0)
        for info in a.args:
            shape = tuple(s if isinstance(s, int) else 5 for s in info.type.shape)
            args[info.name] = rng.uniform(-1, 1, shape)
        from chainrule.runtime.numpy_backend import NumpyBackend
        dims = {d: 5 for d in p.symbolic_dims}
        arrays = {k: np.asarray(v, dtype=np.float32 if a.args[i].type.dtype == "f32"
                                else np.float64) for i, (k, v) in enumerate(args.items())}
        outs, grads = NumpyBackend(p).run(arrays, dims, with_grad=True)
        value, g = a.value_and_grad(**arrays)
        tol = 1e-4 if any(i.type.dtype == "f32" for i in a.args) else 1e-12
        np.testing.assert_allclose(np.asarray(value), outs[0], rtol=tol)
        for (name, _), ref in zip(p.grads, grads):
            np.testing.assert_allclose(g[name], ref, rtol=tol, atol=tol * 1e-3)


def test_schedule_is_topological_and_complete():
    p = program_of(EXAMPLES[0].read_text())
    order = p.schedule(with_grad=True)
    assert order == topo_order(p.roots(with_grad=True))
    assert set(order) >= {n for _, n in p.grads}


# ------------------------------------------------- random elementwise programs
# (expression text, NumPy text); every function is applied on its safe domain
LEAVES = [("a", "a"), ("b", "b"), ("c", "c"), ("0.5", "0.5"), ("2", "2.0")]
UNARY = [
    ("sin({})", "np.sin({})"), ("cos({})", "np.cos({})"), ("tanh({})", "np.tanh({})"),
    ("sigmoid({})", "1 / (1 + np.exp(-({})))"), ("softplus({})", "np.log1p(np.exp({}))"),
    ("exp(tanh({}))", "np.exp(np.tanh({}))"), ("log(1 + square({}))", "np.log(1 + ({}) ** 2)"),
    ("sqrt(1 + {}^2)", "np.sqrt(1 + ({}) ** 2)"), ("-({})", "-({})"),
    ("log1p(sigmoid({}))", "np.log1p(1 / (1 + np.exp(-({}))))"),
    ("expm1(sin({}))", "np.expm1(np.sin({}))"), ("square(tanh({}))", "np.tanh({}) ** 2"),
    ("abs({}) + 1e-300", "np.abs({}) + 1e-300"),  # kink only at 0: measure zero
]
BINARY = [
    ("({}) + ({})", "({}) + ({})"), ("({}) - ({})", "({}) - ({})"),
    ("({}) * ({})", "({}) * ({})"),
    ("({}) / (1 + square({}))", "({}) / (1 + ({}) ** 2)"),
    ("pow(1 + sigmoid({}), tanh({}))", "(1 + 1 / (1 + np.exp(-({})))) ** np.tanh({})"),
]


def _expressions():
    leaf = st.sampled_from(LEAVES)

    def extend(children):
        unary = st.tuples(st.sampled_from(UNARY), children).map(
            lambda t: (t[0][0].format(t[1][0]), t[0][1].format(t[1][1])))
        binary = st.tuples(st.sampled_from(BINARY), children, children).map(
            lambda t: (t[0][0].format(t[1][0], t[2][0]), t[0][1].format(t[1][1], t[2][1])))
        return unary | binary

    return st.recursive(leaf, extend, max_leaves=8)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(expr=_expressions(), seed=st.integers(0, 2**16))
def test_random_elementwise_programs_against_finite_differences(expr, seed):
    src_expr, np_expr = expr
    # a: vector, b: scalar, c: matrix: every binary op broadcasts
    src = (f"param a: [3]\nparam b\nparam c: [2, 3]\n"
           f"loss = sum({src_expr} + 0 * c)\noutput loss\n")
    fn = chainrule.compile(src, backend="numpy")
    verify(program_of(src, optimize=False))
    rng = np.random.default_rng(seed)
    args = {"a": rng.uniform(-1, 1, 3), "b": rng.uniform(-1, 1), "c": rng.uniform(-1, 1, (2, 3))}

    def ref(a, b, c):
        with np.errstate(all="ignore"):
            return float(np.sum(eval(np_expr) + 0 * c))

    loss, grads = fn.value_and_grad(**args)
    assert loss == pytest.approx(ref(**args), rel=1e-10, abs=1e-12), src_expr
    for name in ("a", "b", "c"):
        fd = numerical_grad(ref, args, name, h_rel=1e-4)
        assert_grad_close(grads[name], fd, rtol=1e-6, what=f"{src_expr} d/d{name}")
