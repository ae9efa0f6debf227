"""The Python API: argument checking, array layouts, Python values, positional
arguments, `wrt`, several outputs, value-only evaluation and symbolic dims."""
from __future__ import annotations

import concurrent.futures
import sys
from pathlib import Path

import numpy as np
import pytest

import chainrule
from chainrule.compiler.ir import registry

BACKEND = "numpy"

DENSE = """\
dim B
input x: [B, 3]
param w: [3]
param c
r = x @ w + c
loss = sum(r^2)
output loss, r
"""


def dense_ref(x, w, c):
    r = x @ w + c
    return np.sum(r ** 2), r, {"w": 2 * x.T @ r, "c": 2 * np.sum(r)}


@pytest.fixture(scope="module")
def dense():
    return chainrule.compile(DENSE, backend=BACKEND)


def good_args(batch: int = 4, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return dict(x=rng.standard_normal((batch, 3)), w=rng.standard_normal(3), c=0.5)


def check_dense(fn, x, w, c):
    (loss, r), grads = fn.value_and_grad(x=x, w=w, c=c)
    want_loss, want_r, want = dense_ref(np.asarray(x, float), np.asarray(w, float), float(c))
    assert loss == pytest.approx(want_loss, rel=1e-13)
    np.testing.assert_allclose(r, want_r, rtol=1e-13)
    np.testing.assert_allclose(grads["w"], want["w"], rtol=1e-12)
    assert grads["c"] == pytest.approx(want["c"], rel=1e-12)


# ------------------------------------------------------------- wrong arrays
def raises_naming(exc, fn, name: str, **args):
    with pytest.raises(exc) as info:
        fn.value(**args)
    assert f"'{name}'" in str(info.value), str(info.value)
    return str(info.value)


def test_wrong_shape(dense):
    msg = raises_naming(ValueError, dense, "x", **{**good_args(), "x": np.ones((4, 2))})
    assert "[B, 3]" in msg


def test_wrong_shape_of_a_fixed_vector(dense):
    raises_naming(ValueError, dense, "w", **{**good_args(), "w": np.ones(4)})


def test_wrong_rank(dense):
    msg = raises_naming(ValueError, dense, "x", **{**good_args(), "x": np.ones((4, 3, 1))})
    assert "rank" in msg
    raises_naming(ValueError, dense, "c", **{**good_args(), "c": np.ones(1)})
    raises_naming(ValueError, dense, "w", **{**good_args(), "w": 1.0})


def test_inconsistent_symbolic_dims():
    fn = chainrule.compile("dim B\ninput x: [B]\ninput y: [B, 2]\nparam c\n"
                           "loss = sum(x * c) + sum(y)\noutput loss", backend=BACKEND)
    msg = raises_naming(ValueError, fn, "y", x=np.ones(3), y=np.ones((4, 2)), c=1.0)
    assert "B" in msg and "'x'" in msg


def test_missing_argument(dense):
    args = good_args()
    del args["w"]
    raises_naming(TypeError, dense, "w", **args)


def test_unexpected_argument(dense):
    raises_naming(TypeError, dense, "q", **good_args(), q=1.0)


@pytest.mark.parametrize("bad", ["abc", np.array(["1", "2", "3"]),
                                 np.array([object(), 1.0, 2.0], dtype=object),
                                 np.array([1 + 1j, 2, 3]), None, {"a": 1}],
                         ids=["str", "str-array", "object", "complex", "none", "dict"])
def test_non_numeric(dense, bad):
    raises_naming(TypeError, dense, "w", **{**good_args(), "w": bad})


def test_ragged_list(dense):
    raises_naming(TypeError, dense, "x", **{**good_args(), "x": [[1.0, 2.0, 3.0], [1.0]]})


def test_too_many_positional(dense):
    with pytest.raises(TypeError):
        dense.value(*good_args().values(), 1.0)


def test_given_twice(dense):
    a = good_args()
    with pytest.raises(TypeError) as info:
        dense.value(a["x"], x=a["x"], w=a["w"], c=a["c"])
    assert "'x'" in str(info.value)


def test_symbolic_size_too_small_for_an_index():
    fn = chainrule.compile("dim N\nparam x: [N]\nloss = x[4] + x[-1]\noutput loss",
                           backend=BACKEND)
    assert fn.value(x=np.arange(5.0)) == 8.0
    with pytest.raises(ValueError) as info:
        fn.value(x=np.arange(3.0))
    assert "N = 3" in str(info.value)


# ------------------------------------------------------------ array layouts
def test_fortran_ordered(dense):
    a = good_args(5)
    check_dense(dense, np.asfortranarray(a["x"]), a["w"], a["c"])


def test_strided(dense):
    a = good_args(10)
    x = a["x"][::2]           # a view with a row stride of two rows
    assert not x.flags.c_contiguous
    check_dense(dense, x, a["w"], a["c"])
    wide = np.random.default_rng(1).standard_normal(9)
    check_dense(dense, a["x"], wide[::3], a["c"])


def test_negative_strides(dense):
    a = good_args(6)
    check_dense(dense, a["x"][::-1], a["w"][::-1], a["c"])
    check_dense(dense, a["x"][::-2, ::-1], a["w"], a["c"])


def test_read_only(dense):
    a = good_args(4)
    for v in (a["x"], a["w"]):
        v.setflags(write=False)
    check_dense(dense, a["x"], a["w"], a["c"])


def test_inputs_are_not_modified(dense):
    a = good_args(4)
    before = {k: np.copy(v) for k, v in a.items()}
    dense.value_and_grad(**a)
    for k in a:
        np.testing.assert_array_equal(a[k], before[k])


def test_results_do_not_alias_arguments():
    fn = chainrule.compile("param x: [3]\nloss = sum(x)\noutput loss, x", backend=BACKEND)
    x = np.array([1.0, 2.0, 3.0])
    _, out = fn.value(x=x)
    out[0] = 99.0
    assert x[0] == 1.0


def test_f32_and_integer_arrays_are_converted(dense):
    a = good_args(3)
    check_dense(dense, a["x"].astype(np.float32).astype(np.float64), a["w"], a["c"])
    (loss, r), g = dense.value_and_grad(x=np.ones((2, 3), dtype=np.int64), w=[1, 2, 3], c=1)
    np.testing.assert_array_equal(r, [7.0, 7.0])
    assert r.dtype == np.float64 and g["w"].dtype == np.float64


def test_f32_program_returns_f32():
    fn = chainrule.compile("param x: f32[3]\nloss = sum(x * x)\noutput loss", backend=BACKEND)
    loss, g = fn.value_and_grad(x=np.array([1.0, 2.0, 3.0]))  # f64 given, f32 declared
    assert np.asarray(loss).dtype == np.float32 and g["x"].dtype == np.float32
    np.testing.assert_array_equal(g["x"], np.array([2, 4, 6], dtype=np.float32))


# ----------------------------------------------------------- Python values
def test_python_floats_and_lists(dense):
    x = [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]]
    w = [0.1, -0.2, 0.3]
    check_dense(dense, x, w, 0.25)
    check_dense(dense, x, tuple(w), 1)


def test_scalar_results_are_scalars():
    fn = chainrule.compile("param a\nparam b\nloss = a * b\noutput loss", backend=BACKEND)
    loss, g = fn.value_and_grad(a=2.0, b=3.0)
    assert np.ndim(loss) == 0 and float(loss) == 6.0
    assert np.ndim(g["a"]) == 0 and float(g["a"]) == 3.0 and float(g["b"]) == 2.0


def test_positional_arguments_in_declaration_order():
    # inputs and params interleaved: the order is the order of declaration
    fn = chainrule.compile("param a\ninput k\nparam b\nloss = a * k - b\noutput loss",
                           backend=BACKEND)
    assert [a.name for a in fn.args] == ["a", "k", "b"]
    assert fn.value(2.0, 10.0, 1.0) == 19.0
    assert fn.value(2.0, 10.0, b=1.0) == 19.0
    assert fn.value(2.0, b=1.0, k=10.0) == 19.0
    loss, g = fn.value_and_grad(2.0, 10.0, 1.0)
    assert g == {"a": 10.0, "b": -1.0}
    assert fn.grad(2.0, 10.0, 1.0) == {"a": 10.0, "b": -1.0}
    assert fn(2.0, 10.0, 1.0) == 19.0  # calling the function is value()


# ---------------------------------------------------------------- wrt, outputs
def test_wrt_narrows_the_gradient():
    src = "param a\nparam b\nparam c\nloss = a * b * c\noutput loss"
    full = chainrule.compile(src, backend=BACKEND)
    assert full.wrt == ("a", "b", "c")
    one = chainrule.compile(src, backend=BACKEND, wrt="b")
    assert one.wrt == ("b",)
    assert one.grad(a=2.0, b=3.0, c=5.0) == {"b": 10.0}
    two = chainrule.compile(src, backend=BACKEND, wrt=["c", "a"])
    assert set(two.grad(a=2.0, b=3.0, c=5.0)) == {"a", "c"}
    assert two.grad(a=2.0, b=3.0, c=5.0)["c"] == 6.0


def test_wrt_must_name_params():
    src = "param a\ninput k\nloss = a * k\noutput loss"
    for bad in ("k", "zz"):
        with pytest.raises(ValueError) as info:
            chainrule.compile(src, backend=BACKEND, wrt=bad)
        assert f"'{bad}'" in str(info.value)


def test_unused_param_gets_zero_gradient():
    fn = chainrule.compile("param a\nparam v: [3]\nloss = a * 2\noutput loss", backend=BACKEND)
    g = fn.grad(a=1.0, v=[1.0, 2.0, 3.0])
    np.testing.assert_array_equal(g["v"], np.zeros(3))
    assert g["a"] == 2.0


def test_multiple_outputs_are_a_tuple():
    fn = chainrule.compile("param x: [3]\nloss = sum(x)\ndouble = 2 * x\nm = max(x)\n"
                           "output loss, double, m", backend=BACKEND)
    assert list(fn.outputs) == ["loss", "double", "m"]
    out = fn.value(x=[1.0, 5.0, 3.0])
    assert isinstance(out, tuple) and len(out) == 3
    assert out[0] == 9.0 and out[2] == 5.0
    np.testing.assert_array_equal(out[1], [2.0, 10.0, 6.0])
    values, grads = fn.value_and_grad(x=[1.0, 5.0, 3.0])
    assert isinstance(values, tuple) and len(values) == 3
    np.testing.assert_array_equal(grads["x"], np.ones(3))  # gradient of the first output only


def test_single_output_is_not_a_tuple():
    fn = chainrule.compile("param x\nloss = x\noutput loss", backend=BACKEND)
    assert not isinstance(fn.value(x=1.0), tuple)


def test_introspection(dense):
    assert dense.inputs == {"x": "f64[B, 3]"}
    assert dense.params == {"w": "f64[3]", "c": "f64"}
    assert dense.outputs == {"loss": "f64", "r": "f64[B]"}
    assert dense.dims == {"B": None}
    assert "x: f64[B, 3]" in repr(dense)


# ------------------------------------------------------------- value only
def test_value_schedule_has_no_backward_node(dense):
    program = dense.program
    forward = program.schedule(with_grad=False)
    full = program.schedule(with_grad=True)
    backward_only = set(full) - set(forward)
    assert backward_only, "the gradient adds nodes"
    assert not backward_only & set(forward)
    assert len(dense._backend.schedules[False]) < len(dense._backend.schedules[True])
    assert set(dense._backend.schedules[False]) == set(forward)
    grads = {g for _, g in program.grads}
    assert not grads & set(forward)


def test_value_runs_none_of_the_backward(monkeypatch):
    """sqrt(x) - sqrt(x) at 0: the backward divides (1/(2 sqrt x), inf - inf = NaN);
    the value path has no division, so refusing to divide must not affect value()."""
    fn = chainrule.compile("param x: [2]\nloss = sum(sqrt(x) - sqrt(x))\noutput loss",
                           backend=BACKEND)
    _, g = fn.value_and_grad(x=[0.0, 4.0])
    assert np.isnan(g["x"][0])

    def refuse(*args, **kwargs):
        raise AssertionError("a backward node was evaluated")

    monkeypatch.setattr(registry()["div"], "evaluate", refuse)
    assert fn.value(x=[0.0, 4.0]) == 0.0  # clean: no NaN, and no division ran
    with pytest.raises(AssertionError):
        fn.value_and_grad(x=[0.0, 4.0])


# ----------------------------------------------------------- symbolic dims
def test_one_function_many_batch_sizes(dense):
    for batch in (1, 2, 7, 3, 64, 1):
        a = good_args(batch, seed=batch)
        check_dense(dense, a["x"], a["w"], a["c"])


def test_empty_batch(dense):
    (loss, r), g = dense.value_and_grad(x=np.ones((0, 3)), w=np.ones(3), c=1.0)
    assert loss == 0.0 and r.shape == (0,)
    np.testing.assert_array_equal(g["w"], np.zeros(3))


def test_mean_divides_by_the_bound_size():
    fn = chainrule.compile("dim B\nparam x: [B]\nloss = mean(x)\noutput loss", backend=BACKEND)
    for n in (1, 4, 9):
        loss, g = fn.value_and_grad(x=np.arange(float(n)))
        assert loss == pytest.approx((n - 1) / 2)
        np.testing.assert_allclose(g["x"], np.full(n, 1.0 / n), rtol=1e-15)


# ====================================== programs of floats: the native method
NEURON_SRC = (Path(__file__).resolve().parent.parent / "examples" / "neuron.expr").read_text()
NEURON_NAMES = "x1 x2 y1 y2 w1 w2 b w3 w4 b1 b2".split()


def neuron_pair():
    return (chainrule.compile(NEURON_SRC, backend="llvm"),
            chainrule.compile(NEURON_SRC, backend="numpy"))


def test_programs_of_floats_get_a_native_method():
    fn = neuron_pair()[0]
    assert type(fn.value_and_grad).__name__ == "builtin_function_or_method"
    assert type(fn.value).__name__ == "builtin_function_or_method"


@pytest.mark.parametrize("style", ["literal", "keyword", "position", "mixed", "built names",
                                   "numpy scalars", "reordered"])
def test_native_method_agrees_with_the_reference(style):
    fast, ref = neuron_pair()
    rng = np.random.default_rng(5)
    values = {n: float(v) for n, v in zip(NEURON_NAMES, rng.normal(0, 1, len(NEURON_NAMES)))}
    ordered = [values[n] for n in NEURON_NAMES]

    def call(method_name, fn):
        method = getattr(fn, method_name)
        if style == "literal":  # interned names: matched by identity
            v = values
            return method(x1=v["x1"], x2=v["x2"], y1=v["y1"], y2=v["y2"], w1=v["w1"],
                          w2=v["w2"], b=v["b"], w3=v["w3"], w4=v["w4"], b1=v["b1"], b2=v["b2"])
        if style == "keyword":
            return method(**values)
        if style == "position":
            return method(*ordered)
        if style == "mixed":  # not the native path: the Python method takes it
            return method(*ordered[:3], **dict(list(values.items())[3:]))
        if style == "built names":  # equal strings that are not the interned names
            return method(**{"".join(list(n)): v for n, v in values.items()})
        if style == "numpy scalars":
            return method(**{n: np.float64(v) for n, v in values.items()})
        return method(**dict(reversed(list(values.items()))))

    for method_name in ("value", "value_and_grad", "grad"):
        got, want = call(method_name, fast), call(method_name, ref)
        if method_name == "value":
            assert got == pytest.approx(want, rel=1e-12) and isinstance(got, np.float64)
            continue
        if method_name == "value_and_grad":
            assert got[0] == pytest.approx(want[0], rel=1e-12)
            got, want = got[1], want[1]
        assert list(got) == list(want)
        for name in want:
            assert got[name] == pytest.approx(want[name], rel=1e-12)
            assert isinstance(got[name], np.float64)


@pytest.mark.parametrize("call", [
    lambda f: f.value_and_grad(1.0),                               # too few
    lambda f: f.value_and_grad(**{n: 1.0 for n in NEURON_NAMES[:-1]}, bogus=1.0),
    lambda f: f.value_and_grad(**{n: "1" for n in NEURON_NAMES}),  # not numbers
    lambda f: f.value(*[1.0] * 12),                                # too many
    lambda f: f.value(1.0, **{n: 1.0 for n in NEURON_NAMES}),      # x1 twice
])
def test_native_method_errors_are_the_python_methods_errors(call):
    fast, ref = neuron_pair()
    with pytest.raises(Exception) as want:
        call(ref)
    with pytest.raises(Exception) as got:
        call(fast)
    assert type(got.value) is type(want.value) and str(got.value) == str(want.value)


def test_native_method_takes_out_and_other_dtypes_through_the_python_method():
    fast = neuron_pair()[0]
    kw = {n: 0.5 for n in NEURON_NAMES}
    loss = np.zeros(())
    value, grads = fast.value_and_grad(**kw, out={"loss": loss})
    assert value is loss and loss[()] == pytest.approx(fast.value(**kw))
    ints = fast.value_and_grad(**{n: 1 for n in NEURON_NAMES})
    assert ints[0] == pytest.approx(fast.value(**{n: 1.0 for n in NEURON_NAMES}))


def test_native_method_keeps_reference_counts():
    """Results are new objects owned by the caller; arguments are only borrowed."""
    fast = neuron_pair()[0]
    arg = float("0.25")
    kw = {n: arg for n in NEURON_NAMES}
    before = sys.getrefcount(arg)
    for _ in range(1000):
        value, grads = fast.value_and_grad(**kw)
        single = fast.value(*[arg] * 11)
    assert sys.getrefcount(arg) == before
    assert sys.getrefcount(value) == 2 and sys.getrefcount(single) == 2
    assert sys.getrefcount(grads) == 2 and all(sys.getrefcount(v) == 3 for v in grads.values())


def test_native_method_from_many_threads():
    fast = neuron_pair()[0]
    want = fast.value_and_grad(**{n: 0.5 for n in NEURON_NAMES})

    def work(_):
        return [fast.value_and_grad(**{n: 0.5 for n in NEURON_NAMES}) for _ in range(200)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for results in pool.map(work, range(8)):
            assert all(r == want for r in results)


def test_native_method_with_several_outputs_and_wrt():
    src = "param a, b\ninput c\nu = a * b + c\nv = sin(a)\noutput u, v\n"
    fast = chainrule.compile(src, backend="llvm", wrt="b")
    (u, v), grads = fast.value_and_grad(a=2.0, b=3.0, c=1.0)
    assert (u, v) == (7.0, pytest.approx(np.sin(2.0))) and grads == {"b": 2.0}
    assert fast.value(2.0, 3.0, 1.0) == (7.0, pytest.approx(np.sin(2.0)))
