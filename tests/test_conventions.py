"""The derivative conventions of the language contract, one test each:
tie splitting, relu'(0), abs'(0), sign', clip, NaN-safe where, IEEE
propagation of sqrt'(0) and log(0), and numerical stability at |x| = 1e4."""
from __future__ import annotations

import numpy as np
import pytest

import chainrule


def vg(src: str, **args):
    fn = chainrule.compile(src, backend="numpy")
    return fn.value_and_grad(**args)


def grad(src: str, name: str = "x", **args) -> np.ndarray:
    return np.asarray(vg(src, **args)[1][name])


def exactly(actual, expected) -> None:
    """Bit-for-bit equality, NaN never equal, and +0 distinguished from nothing else."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape
    assert not np.any(np.isnan(actual)), actual
    np.testing.assert_array_equal(actual, expected)


# ------------------------------------------------------------------ ties
@pytest.mark.parametrize("op", ["max", "min"])
def test_reduction_ties_split_evenly(op):
    x = np.array([1.0, 3.0, 3.0, 2.0]) * (1 if op == "max" else -1)
    exactly(grad(f"param x: [4]\nloss = {op}(x)\noutput loss", x=x), [0, 0.5, 0.5, 0])


@pytest.mark.parametrize("op", ["max", "min"])
def test_reduction_three_way_tie(op):
    x = np.array([2.0, 2.0, 2.0]) if op == "max" else np.array([-2.0, -2.0, -2.0])
    g = grad(f"param x: [3]\nloss = {op}(x)\noutput loss", x=x)
    np.testing.assert_allclose(g, [1 / 3] * 3, rtol=1e-15)
    assert g.sum() == pytest.approx(1.0, rel=1e-15)


@pytest.mark.parametrize("op", ["max", "min"])
@pytest.mark.parametrize("keep", ["", ", keepdims=true"])
def test_reduction_ties_per_row(op, keep):
    sgn = 1 if op == "max" else -1
    x = sgn * np.array([[1.0, 1.0, 0.0], [2.0, 0.0, 2.0], [0.0, 1.0, 2.0]])
    w = np.array([1.0, 10.0, 100.0]).reshape((3, 1) if keep else (3,))
    shape = "[3, 1]" if keep else "[3]"
    g = grad(f"input w: {shape}\nparam x: [3, 3]\nloss = sum(w * {op}(x, axis=1{keep}))\n"
             "output loss", x=x, w=w)
    exactly(g, [[0.5, 0.5, 0], [5, 0, 5], [0, 0, 100]])


def test_reduction_ties_over_several_axes():
    x = np.zeros((2, 3, 2))
    x[0, 1, 0] = x[0, 2, 1] = 5.0
    x[1, 0, 1] = 7.0
    g = grad("param x: [2, 3, 2]\nloss = sum(max(x, axis=(1, 2)))\noutput loss", x=x)
    want = np.zeros((2, 3, 2))
    want[0, 1, 0] = want[0, 2, 1] = 0.5
    want[1, 0, 1] = 1.0
    exactly(g, want)


@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_elementwise_tie_splits_evenly(op):
    a = np.array([1.0, 2.0, 3.0])
    b = np.array([1.0, 0.0, 5.0])
    _, g = vg(f"param a: [3]\nparam b: [3]\nloss = sum({op}(a, b))\noutput loss", a=a, b=b)
    if op == "maximum":
        exactly(g["a"], [0.5, 1, 0])
        exactly(g["b"], [0.5, 0, 1])
    else:
        exactly(g["a"], [0.5, 0, 1])
        exactly(g["b"], [0.5, 1, 0])


@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_elementwise_tie_with_broadcast_scalar(op):
    x = np.array([0.0, 1.0, -1.0, 0.0])
    _, g = vg(f"param x: [4]\nparam t\nloss = sum({op}(x, t))\noutput loss", x=x, t=0.0)
    if op == "maximum":
        exactly(g["x"], [0.5, 1, 0, 0.5])
        exactly(g["t"], 0.5 + 0 + 1 + 0.5)
    else:
        exactly(g["x"], [0.5, 0, 1, 0.5])
        exactly(g["t"], 0.5 + 1 + 0 + 0.5)


@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_elementwise_with_itself(op):
    """maximum(x, x) = x: the two halves of the tie add back up to 1."""
    exactly(grad(f"param x: [2]\nloss = sum({op}(x, x))\noutput loss", x=[3.0, -1.0]), [1, 1])


def test_literal_tie_gets_half():
    exactly(grad("param x: [3]\nloss = sum(maximum(x, 0))\noutput loss", x=[0.0, 2.0, -2.0]),
            [0.5, 1, 0])


# ------------------------------------------------------------ relu, abs, sign
def test_relu_derivative_at_zero_is_zero():
    exactly(grad("param x: [5]\nloss = sum(relu(x))\noutput loss",
                 x=[0.0, -0.0, -1.0, 2.0, 1e-300]), [0, 0, 0, 1, 1])
    exactly(grad("param x\nloss = relu(x)\noutput loss", x=0.0), 0.0)


def test_abs_derivative_at_zero_is_zero():
    exactly(grad("param x: [5]\nloss = sum(abs(x))\noutput loss",
                 x=[0.0, -0.0, -3.0, 2.0, -1e-300]), [0, 0, -1, 1, -1])
    exactly(grad("param x\nloss = abs(x)\noutput loss", x=0.0), 0.0)


def test_sign_derivative_is_zero_everywhere():
    x = np.array([0.0, -0.0, -3.0, 2.0, 1e-300, -np.inf, np.inf])
    loss, g = vg("param x: [7]\nloss = sum(sign(x) * 3)\noutput loss", x=x)
    exactly(g["x"], np.zeros(7))
    assert loss == 3 * (0 + 0 - 1 + 1 + 1 - 1 + 1)


def test_sign_blocks_the_gradient_of_its_argument():
    """d/dx sign(exp(x)) is 0, not exp(x) * 0 evaluated through exp (which could overflow)."""
    exactly(grad("param x: [2]\nloss = sum(sign(exp(x)) * x)\noutput loss", x=[1.0, 800.0]),
            [1, 1])


# ------------------------------------------------------------------ clip
def test_clip_gradient_one_strictly_inside_zero_outside():
    x = np.array([-3.0, -1.5, -0.99, 0.0, 0.5, 0.99, 1.5, 3.0])
    g = grad("param x: [8]\nloss = sum(clip(x, -1, 1) * 2)\noutput loss", x=x)
    exactly(g, [0, 0, 2, 2, 2, 2, 0, 0])


def test_clip_bounds_receive_the_gradient_where_they_bind():
    x = np.array([-3.0, 0.0, 3.0, 0.5])
    _, g = vg("param x: [4]\nparam lo\nparam hi\nloss = sum(clip(x, lo, hi))\noutput loss",
              x=x, lo=-1.0, hi=1.0)
    exactly(g["x"], [0, 1, 0, 1])
    exactly(g["lo"], 1.0)
    exactly(g["hi"], 1.0)


@pytest.mark.parametrize("t", [-1.0, 1.0])
def test_clip_at_a_bound_sums_to_one(t):
    """clip(t, lo, hi) with t on a bound: x, lo and hi move together, total slope 1."""
    _, g = vg("param x\nparam lo\nparam hi\nloss = clip(x, lo, hi)\noutput loss",
              x=t, lo=-1.0, hi=1.0)
    lo_or_hi = g["lo"] if t < 0 else g["hi"]
    assert g["x"] + lo_or_hi == 1.0
    assert g["x"] in (0.0, 1.0)


# ------------------------------------------------------------ NaN-safe where
X = np.array([-4.0, -1.0, -1e-300, -0.0, 0.0, 1e-300, 0.25, 4.0])
CHOSEN = X > 0


def _safe_where_case(src: str, expect_chosen):
    loss, g = vg(f"param x: [8]\nloss = {src}\noutput loss", x=X)
    g = np.asarray(g["x"])
    assert not np.any(np.isnan(g)), g
    exactly(g[~CHOSEN], np.zeros((~CHOSEN).sum()))
    np.testing.assert_allclose(g[CHOSEN], expect_chosen(X[CHOSEN]), rtol=1e-14)
    assert np.isfinite(loss)
    return loss


def test_where_sqrt_is_nan_safe():
    loss = _safe_where_case("sum(where(x > 0, sqrt(x), 0))", lambda x: 0.5 / np.sqrt(x))
    assert loss == pytest.approx(np.sum(np.sqrt(X[CHOSEN])), rel=1e-15)


def test_where_log_is_nan_safe():
    loss = _safe_where_case("sum(where(x > 0, log(x), 0))", lambda x: 1 / x)
    assert loss == pytest.approx(np.sum(np.log(X[CHOSEN])), rel=1e-15)


def test_where_chosen_branch_second():
    _safe_where_case("sum(where(x <= 0, 0, sqrt(x)))", lambda x: 0.5 / np.sqrt(x))


def test_where_log_chosen_branch_second():
    _safe_where_case("sum(where(x <= 0, 0, log(x)))", lambda x: 1 / x)


def test_where_nan_safe_through_a_chain():
    # d/dx (2 sqrt(x) + 1)^2 = 2 (2 sqrt(x) + 1) / sqrt(x)
    _safe_where_case("sum(where(x > 0, 2*sqrt(x) + 1, 0)^2)",
                     lambda x: 2 * (2 * np.sqrt(x) + 1) / np.sqrt(x))
    _safe_where_case("sum(where(x > 0, log(sqrt(x)), 0))", lambda x: 0.5 / x)


def test_where_nan_safe_when_the_branch_uses_its_value_twice():
    _safe_where_case("sum(where(x > 0, log(x) + log(x)^2, 0))",
                     lambda x: (1 + 2 * np.log(x)) / x)
    _safe_where_case("sum(where(x > 0, sqrt(x) * sqrt(x), 0))", lambda x: np.ones_like(x))


def test_where_nan_safe_with_a_non_zero_other_branch():
    # the other branch has a gradient of its own: d/dx (3x) = 3 where x <= 0
    loss, g = vg("param x: [8]\nloss = sum(where(x > 0, sqrt(x), 3*x))\noutput loss", x=X)
    g = np.asarray(g["x"])
    exactly(g[~CHOSEN], np.full((~CHOSEN).sum(), 3.0))
    np.testing.assert_allclose(g[CHOSEN], 0.5 / np.sqrt(X[CHOSEN]), rtol=1e-14)


def test_where_nan_safe_through_layout():
    """The unchosen branch's singular op sits before a slice or a broadcast."""
    _safe_where_case("sum(where(x > 0, sqrt(x)[::-1][::-1], 0))", lambda x: 0.5 / np.sqrt(x))
    loss, g = vg("param x: [4]\nparam s\nloss = sum(where(x > 0, sqrt(s), 0))\noutput loss",
                 x=[-1.0, -2.0, 0.0, -3.0], s=0.0)
    exactly(g["s"], 0.0)
    exactly(g["x"], [0, 0, 0, 0])
    assert loss == 0.0


def test_where_scalar_at_zero():
    for src in ("where(x > 0, sqrt(x), 0)", "where(x > 0, log(x), 0)",
                "where(x <= 0, 0, sqrt(x))"):
        for x in (0.0, -1.0, -0.0):
            loss, g = vg(f"param x\nloss = {src}\noutput loss", x=x)
            exactly(g["x"], 0.0)
            assert loss == 0.0


# ----------------------------------------------------------- IEEE propagation
def test_sqrt_derivative_at_zero_is_inf():
    loss, g = vg("param x\nloss = sqrt(x)\noutput loss", x=0.0)
    assert loss == 0.0
    assert g["x"] == np.inf


def test_log_of_zero_is_minus_inf():
    loss, g = vg("param x: [2]\nloss = sum(log(x))\noutput loss", x=[0.0, 1.0])
    assert loss == -np.inf
    assert g["x"][0] == np.inf and g["x"][1] == 1.0


def test_infinities_propagate_not_replaced():
    """Nothing is silently replaced: 0 * log(0) is NaN (as IEEE says), and so is its slope."""
    loss, g = vg("param x\nloss = 0 * log(x)\noutput loss", x=0.0)
    assert np.isnan(loss)
    assert np.isnan(g["x"])
    loss, g = vg("param x\nloss = sqrt(x) + 1\noutput loss", x=0.0)
    assert loss == 1.0 and g["x"] == np.inf


# ---------------------------------------------------------------- stability
BIG = [np.array([1e4, -1e4, 0.0]), np.array([1e4, 1e4]), np.array([-1e4, -1e4]),
       np.array([1e4, 1e4 - 1.0])]


def _softmax(v):
    z = np.exp(v - v.max())
    return z / z.sum()


def _lse(v):
    return v.max() + np.log(np.sum(np.exp(v - v.max())))


def _stable(src: str, v: np.ndarray, dtype: str = "f64"):
    n = len(v)
    w = np.arange(1.0, n + 1)
    loss, g = vg(f"input w: {dtype}[{n}]\nparam x: {dtype}[{n}]\nloss = {src}\noutput loss",
                 x=v, w=w)
    assert np.isfinite(loss), (src, v, loss)
    assert np.all(np.isfinite(g["x"])), (src, v, g["x"])
    return float(loss), np.asarray(g["x"], dtype=np.float64), w


@pytest.mark.parametrize("dtype", ["f64", "f32"])
@pytest.mark.parametrize("v", BIG, ids=lambda v: str(list(v)))
def test_logsumexp_stable(v, dtype):
    loss, g, _ = _stable("logsumexp(x)", v, dtype)
    assert loss == pytest.approx(_lse(v), rel=1e-7)
    np.testing.assert_allclose(g, _softmax(v), atol=1e-6)


@pytest.mark.parametrize("dtype", ["f64", "f32"])
@pytest.mark.parametrize("v", BIG, ids=lambda v: str(list(v)))
def test_log_softmax_stable(v, dtype):
    loss, g, w = _stable("sum(w * log_softmax(x))", v, dtype)
    ls = v - _lse(v)
    assert loss == pytest.approx(np.sum(w * ls), rel=1e-7)
    # d/dx sum(w * (x - lse)) = w - sum(w) softmax(x)
    np.testing.assert_allclose(g, w - w.sum() * _softmax(v), atol=1e-5)


@pytest.mark.parametrize("dtype", ["f64", "f32"])
@pytest.mark.parametrize("v", BIG, ids=lambda v: str(list(v)))
def test_softmax_stable(v, dtype):
    loss, g, w = _stable("sum(w * softmax(x))", v, dtype)
    p = _softmax(v)
    assert loss == pytest.approx(np.sum(w * p), rel=1e-6)
    np.testing.assert_allclose(g, p * (w - np.sum(w * p)), atol=1e-6)


@pytest.mark.parametrize("dtype", ["f64", "f32"])
@pytest.mark.parametrize("v", BIG, ids=lambda v: str(list(v)))
def test_softplus_stable(v, dtype):
    loss, g, w = _stable("sum(w * softplus(x))", v, dtype)
    sp = np.maximum(v, 0) + np.log1p(np.exp(-np.abs(v)))
    assert loss == pytest.approx(np.sum(w * sp), rel=1e-7)
    np.testing.assert_allclose(g, w * 0.5 * (1 + np.tanh(v / 2)), atol=1e-7)


@pytest.mark.parametrize("dtype", ["f64", "f32"])
@pytest.mark.parametrize("v", BIG, ids=lambda v: str(list(v)))
def test_sigmoid_stable(v, dtype):
    loss, g, w = _stable("sum(w * sigmoid(x))", v, dtype)
    s = 0.5 * (1 + np.tanh(v / 2))
    assert loss == pytest.approx(np.sum(w * s), rel=1e-7)
    np.testing.assert_allclose(g, w * s * (1 - s), atol=1e-7)


@pytest.mark.parametrize("dtype", ["f64", "f32"])
def test_stable_along_an_axis(dtype):
    """The contract's cross-entropy on logits of magnitude 1e4, row-wise."""
    logits = np.array([[1e4, -1e4, 0.0], [1e4, 1e4, -1e4], [-1e4, -1e4, -1e4]])
    y = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]])
    src = (f"dim B\ninput y: {dtype}[B, 3]\nparam z: {dtype}[B, 3]\n"
           "loss = mean(logsumexp(z, axis=1) - sum(y * z, axis=1))\n"
           "p = softmax(z, axis=1)\nq = log_softmax(z)\noutput loss, p, q")
    (loss, p, q), g = vg(src, z=logits, y=y)
    expect_p = np.stack([_softmax(r) for r in logits])
    assert np.isfinite(loss) and np.all(np.isfinite(g["z"]))
    assert np.all(np.isfinite(p)) and np.all(np.isfinite(q))
    np.testing.assert_allclose(p, expect_p, atol=1e-6)
    np.testing.assert_allclose(q, np.stack([r - _lse(r) for r in logits]), rtol=1e-6)
    # the user's lse(z) - z_y rounds lse near 1e4 first: f32 keeps ~1e-3 absolute there
    assert loss == pytest.approx(np.mean([_lse(r) - r @ t for r, t in zip(logits, y)]),
                                 abs=2e-3 if dtype == "f32" else 1e-9)
    np.testing.assert_allclose(g["z"], (expect_p - y) / 3, atol=1e-6)


def test_logsumexp_of_all_minus_inf_is_minus_inf():
    loss, _ = vg("param x: [2]\nloss = logsumexp(x)\noutput loss", x=[-np.inf, -np.inf])
    assert loss == -np.inf
