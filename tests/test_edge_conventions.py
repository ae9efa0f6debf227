"""The derivative conventions of docs/language.md at the exact points where they
matter, on both backends and in both dtypes: kinks hit exactly (relu, abs, sign at
+0 and -0, ties of max/min and maximum/minimum, clip at its bounds and with
lo >= hi), `where` whose branches are NaN or infinite, IEEE special values, and
overflow-prone compositions written by hand against the stable builtins.

tests/test_conventions.py states each convention once on the NumPy backend;
this file checks that the native code keeps it bit for bit, in f32 too.
"""
from __future__ import annotations

import numpy as np
import pytest

import chainrule

BACKENDS = ["numpy", "llvm"]
DTYPES = ["f64", "f32"]
NP = {"f64": np.float64, "f32": np.float32}


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(params=DTYPES)
def dtype(request):
    return request.param


def vg(src: str, backend: str, dtype: str, **args):
    fn = chainrule.compile(src, backend=backend, dtype=dtype)
    with np.errstate(all="ignore"):
        value, grads = fn.value_and_grad(**{k: np.asarray(v, dtype=NP[dtype])
                                            for k, v in args.items()})
    return value, {k: np.asarray(g) for k, g in grads.items()}


def same(actual, expected) -> None:
    """Equal element by element, NaN where expected is NaN, signs of zeros ignored."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, (a.shape, e.shape)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(e), err_msg=f"{a} vs {e}")
    np.testing.assert_array_equal(a[~np.isnan(e)], e[~np.isnan(e)])


# ------------------------------------------------------------------- kinks
def test_relu_abs_sign_exactly_at_zero(backend, dtype):
    x = [0.0, -0.0, -2.0, 3.0, np.inf, -np.inf]
    _, g = vg("dim N\nparam x: [N]\nloss = sum(relu(x) + 2 * abs(x) + 5 * sign(x))\n"
              "output loss", backend, dtype, x=x)
    same(g["x"], [0, 0, -2, 3, 3, -2])  # relu'(0) = 0, abs'(0) = 0, sign' = 0


def test_relu_of_a_computed_zero(backend, dtype):
    """x - x is exactly 0 for finite x: relu' there is 0 and nothing flows to x."""
    _, g = vg("dim N\nparam x: [N]\nloss = sum(relu(x - x) + abs(x - x))\noutput loss",
              backend, dtype, x=[1.5, -2.0, 0.0])
    same(g["x"], [0, 0, 0])


@pytest.mark.parametrize("op", ["max", "min"])
def test_reduction_ties_split_evenly(op, backend, dtype):
    s = 1 if op == "max" else -1
    x = s * np.array([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0], [0.0, -1.0, 0.0, -0.0]])
    _, g = vg(f"dim N\nparam x: [N, 4]\nloss = sum({op}(x, axis=1))\noutput loss",
              backend, dtype, x=x)
    # the last row ties +0 and -0 (they compare equal) for max, and for min after negation
    want = [[0, 0.5, 0.5, 0], [0.25] * 4, [1 / 3, 0, 1 / 3, 1 / 3]]
    np.testing.assert_allclose(g["x"], want, rtol=1e-7 if dtype == "f32" else 1e-15)
    _, g = vg(f"dim N\nparam x: [N]\nloss = {op}(x)\noutput loss", backend, dtype,
              x=np.full(11, 2.0))
    np.testing.assert_allclose(g["x"], np.full(11, 1 / 11), rtol=1e-7 if dtype == "f32" else 1e-15)


@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_maximum_minimum_ties_split_in_half(op, backend, dtype):
    a = [1.0, 2.0, 3.0, 0.0, -0.0, np.inf]
    b = [1.0, 0.0, 5.0, -0.0, 0.0, np.inf]
    _, g = vg(f"dim N\nparam a: [N]\nparam b: [N]\nloss = sum({op}(a, b) * 2)\noutput loss",
              backend, dtype, a=a, b=b)
    # +0 and -0 compare equal: a tie, half each; inf == inf too
    if op == "maximum":
        same(g["a"], [1, 2, 0, 1, 1, 1])
        same(g["b"], [1, 0, 2, 1, 1, 1])
    else:
        same(g["a"], [1, 0, 2, 1, 1, 1])
        same(g["b"], [1, 2, 0, 1, 1, 1])


def test_maximum_with_itself_and_a_broadcast_scalar(backend, dtype):
    _, g = vg("dim N\nparam x: [N]\nparam t\nloss = sum(maximum(x, x)) + sum(minimum(x, t))\n"
              "output loss", backend, dtype, x=[0.0, 1.0, -1.0], t=0.0)
    same(g["x"], [1.5, 1, 2])  # 1 from maximum(x, x); minimum ties at x = 0 give 1/2
    same(g["t"], 0.5 + 1)


@pytest.mark.parametrize("x, lo, hi, gx, glo, ghi", [
    (-1.0, -1.0, 1.0, 0, 1, 0),     # on the lower bound: the bound gets it
    (1.0, -1.0, 1.0, 0, 0, 1),      # on the upper bound
    (0.0, -1.0, 1.0, 1, 0, 0),      # strictly inside
    (5.0, -1.0, 1.0, 0, 0, 1),
    (-5.0, -1.0, 1.0, 0, 1, 0),
    (0.0, 2.0, 1.0, 0, 0, 1),       # lo > hi: the result is hi
    (1.0, 1.0, 1.0, 0, 0, 1),       # lo == hi == x: hi
    (0.5, 1.0, 1.0, 0, 0, 1),
])
def test_clip_at_and_beyond_its_bounds(x, lo, hi, gx, glo, ghi, backend, dtype):
    value, g = vg("param x\nparam lo\nparam hi\nloss = clip(x, lo, hi)\noutput loss",
                  backend, dtype, x=x, lo=lo, hi=hi)
    assert value == min(max(x, lo), hi)
    same([g["x"], g["lo"], g["hi"]], [gx, glo, ghi])


# -------------------------------------------------- where over NaN and inf
def test_where_with_nan_and_inf_branches(backend, dtype):
    """where picks values; the gradient flows only into the chosen branch, even when
    the other branch is NaN or infinite (a NaN branch value is selected only where
    chosen)."""
    x = np.array([-1.0, 0.0, 2.0, np.nan, np.inf])
    src = ("dim N\nparam x: [N]\ninput big: [N]\n"
           "y = where(x > 0, x, big)\nz = where(x > 0, 0 * big, x * 3)\n"
           "loss = sum(y) + sum(z)\noutput loss, y, z")
    big = np.array([np.nan, np.inf, np.nan, -np.inf, np.nan])
    (loss, y, z), g = vg(src, backend, dtype, x=x, big=big)
    same(y, [np.nan, np.inf, 2.0, -np.inf, np.inf])
    same(z, [-3.0, 0.0, np.nan, np.nan, np.nan])  # 0 * nan, nan * 3, 0 * nan
    assert np.isnan(loss)
    # x > 0 is False for NaN: the NaN element takes the gradient of x * 3, which is 3
    same(g["x"], [3, 3, 1, 3, 1])


def test_where_nan_safe_gradient_with_infinite_unchosen_derivative(backend, dtype):
    """sqrt'(0) and log'(0) are infinite, 1/x at 0 is inf, sqrt(-1) is NaN: none of it
    reaches an element where the branch was not chosen."""
    x = [-1.0, -0.0, 0.0, 0.25, 4.0]
    src = ("dim N\nparam x: [N]\nloss = sum(where(x > 0, sqrt(x) + log(x) + 1 / x, 7))\n"
           "output loss")
    loss, g = vg(src, backend, dtype, x=x)
    want = [0, 0, 0, 0.5 / 0.5 + 4 - 16, 0.25 + 0.25 - 1 / 16]
    np.testing.assert_allclose(g["x"], want, rtol=1e-6 if dtype == "f32" else 1e-15)
    assert np.isfinite(loss)


def test_chosen_branch_is_not_protected(backend, dtype):
    """IEEE results propagate: a chosen sqrt at 0 has gradient inf, a chosen log at 0
    is -inf with gradient inf."""
    loss, g = vg("dim N\nparam x: [N]\nloss = sum(where(x >= 0, sqrt(x), 0))\noutput loss",
                 backend, dtype, x=[0.0, 1.0])
    same(g["x"], [np.inf, 0.5])
    loss, g = vg("param x\nloss = log(x)\noutput loss", backend, dtype, x=0.0)
    assert loss == -np.inf and g["x"] == np.inf


def test_nan_in_the_comparison_selects_the_else_branch(backend, dtype):
    _, g = vg("dim N\nparam x: [N]\nparam y: [N]\nloss = sum(where(x < y, x, y * 2))\n"
              "output loss", backend, dtype, x=[np.nan, 1.0], y=[1.0, np.nan])
    same(g["x"], [0, 0])   # NaN < 1 and 1 < NaN are both False
    same(g["y"], [2, 2])


# ----------------------------------------------------- overflow-prone forms
@pytest.mark.parametrize("scale", [1.0, 100.0, 1e3, 1e4])
def test_log_sum_exp_by_hand_against_logsumexp(scale, backend, dtype):
    """logsumexp is stable for any magnitude; log(sum(exp(x))) by hand overflows once
    exp does (x > 88 in f32, x > 709 in f64): inf, with a NaN gradient."""
    x = scale * np.array([1.0, 0.5, -1.0, 0.999])
    src = "dim N\nparam x: [N]\na = log(sum(exp(x)))\nb = logsumexp(x)\nloss = a + b\n" \
          "output loss, a, b"
    (loss, a, b), g = vg(src, backend, dtype, x=x)
    exact = scale + np.log(np.sum(np.exp(x - scale)))
    tol = 1e-6 if dtype == "f32" else 1e-14
    assert b == pytest.approx(exact, rel=tol)
    overflows = scale * 1.0 > (88.7 if dtype == "f32" else 709.7)
    if overflows:
        assert a == np.inf and loss == np.inf
        assert np.isnan(g["x"][0])  # exp(x) / sum(exp(x)) = inf / inf
    else:
        assert a == pytest.approx(exact, rel=10 * tol)
        softmax = np.exp(x - scale) / np.sum(np.exp(x - scale))
        np.testing.assert_allclose(g["x"], 2 * softmax, rtol=1e-5 if dtype == "f32" else 1e-12,
                                   atol=1e-7 if dtype == "f32" else 1e-300)


def test_logsumexp_with_infinite_entries(backend, dtype):
    (loss, a, b), g = vg("dim N\nparam x: [N]\na = logsumexp(x)\nb = logsumexp(x[1:])\n"
                         "loss = a\noutput loss, a, b", backend, dtype,
                         x=[0.0, -np.inf, -np.inf])
    assert a == 0.0 and b == -np.inf  # an all -inf row gives -inf, not NaN
    same(g["x"], [1, 0, 0])
    (loss, a, b), g = vg("dim N\nparam x: [N]\na = logsumexp(x)\nb = logsumexp(x[1:])\n"
                         "loss = a\noutput loss, a, b", backend, dtype,
                         x=[1.0, np.inf, 2.0])
    assert a == np.inf and b == np.inf


@pytest.mark.parametrize("v", [1e4, -1e4])
def test_stable_forms_against_their_naive_versions(v, backend, dtype):
    """softplus(x) vs log(1 + exp(x)), -softplus(-x) vs log(sigmoid(x)) at |x| = 1e4."""
    src = ("param x\na = softplus(x)\nb = log(1 + exp(x))\nc = -softplus(-x)\n"
           "d = log(sigmoid(x))\nloss = a + c\noutput loss, a, b, c, d")
    (loss, a, b, c, d), g = vg(src, backend, dtype, x=v)
    assert np.isfinite(loss) and np.isfinite(g["x"])
    if v > 0:
        assert a == v and b == np.inf and c == 0.0 and d == 0.0
        assert g["x"] == 1.0
    else:
        assert a == 0.0 and b == 0.0 and c == v and d == -np.inf
        assert g["x"] == 1.0


# -------------------------------------------------------------- empty input
def test_reductions_of_nothing(backend, dtype):
    src = ("dim N\nparam x: [N]\ns = sum(x)\nm = mean(x)\nhi = max(x)\nlo = min(x)\n"
           "l = logsumexp(x)\nloss = s\noutput loss, m, hi, lo, l")
    (loss, m, hi, lo, lse), g = vg(src, backend, dtype, x=np.empty(0))
    assert loss == 0.0 and np.isnan(m) and hi == -np.inf and lo == np.inf
    assert lse == -np.inf
    assert g["x"].shape == (0,)
