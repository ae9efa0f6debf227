"""The neuron network of the backpropagation lecture (examples/neuron.expr):
every gradient against the chain rule worked out by hand, term by term."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import chainrule
from finite_diff import assert_grad_close, numerical_grad

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "neuron.expr"

CONTRACT_SOURCE = """\
# one neuron feeding two output neurons
input x1, x2, y1, y2          # data: not differentiated (scalars, f64)
param w1, w2, b, w3, w4, b1, b2   # differentiated

z    = x1*w1 + x2*w2 + b
a    = sigmoid(z)
z1   = a*w3 + b1
z2   = a*w4 + b2
loss = (sigmoid(z1) - y1)^2 + (sigmoid(z2) - y2)^2

output loss
"""

PARAMS = ("w1", "w2", "b", "w3", "w4", "b1", "b2")


def s(t: float) -> float:
    return 1.0 / (1.0 + math.exp(-t))


def ds(t: float) -> float:
    """sigmoid'(t) = sigmoid(t) (1 - sigmoid(t))."""
    return s(t) * (1.0 - s(t))


def by_hand(x1, x2, y1, y2, w1, w2, b, w3, w4, b1, b2):
    """The forward pass and backpropagation as written on the blackboard."""
    z = x1 * w1 + x2 * w2 + b
    a = s(z)
    z1 = a * w3 + b1
    z2 = a * w4 + b2
    loss = (s(z1) - y1) ** 2 + (s(z2) - y2) ** 2
    dz1 = 2 * (s(z1) - y1) * ds(z1)          # dloss/dz1
    dz2 = 2 * (s(z2) - y2) * ds(z2)          # dloss/dz2
    dz = ds(z) * (w3 * dz1 + w4 * dz2)       # dloss/dz: a feeds both output neurons
    grads = {
        "w1": x1 * dz,                       # = x1 * sigmoid'(z) * (w3 dz1 + w4 dz2)
        "w2": x2 * dz,
        "b": dz,
        "w3": a * dz1,
        "w4": a * dz2,
        "b1": dz1,
        "b2": dz2,
    }
    return loss, grads


def point(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    data = dict(x1=rng.uniform(-2, 2), x2=rng.uniform(-2, 2),
                y1=float(rng.integers(0, 2)), y2=float(rng.integers(0, 2)))
    data.update({p: rng.uniform(-1.5, 1.5) for p in PARAMS})
    return data


@pytest.fixture(scope="module")
def fn():
    return chainrule.compile_file(EXAMPLE, backend="numpy")


def test_example_is_the_contract_program():
    a = chainrule.compile(CONTRACT_SOURCE, backend="numpy")
    b = chainrule.compile_file(EXAMPLE, backend="numpy")
    data = point(7)
    va, ga = a.value_and_grad(**data)
    vb, gb = b.value_and_grad(**data)
    assert va == vb and ga == gb


def test_signature(fn):
    assert fn.params == {p: "f64" for p in PARAMS}
    assert fn.inputs == {n: "f64" for n in ("x1", "x2", "y1", "y2")}
    assert fn.wrt == PARAMS
    assert list(fn.outputs) == ["loss"]


@pytest.mark.parametrize("seed", range(8))
def test_every_gradient_by_hand(fn, seed):
    data = point(seed)
    loss, grads = fn.value_and_grad(**data)
    want_loss, want = by_hand(**data)
    assert loss == pytest.approx(want_loss, rel=1e-13, abs=1e-15)
    assert set(grads) == set(PARAMS)  # inputs are data: never differentiated
    for p in PARAMS:
        assert np.ndim(grads[p]) == 0
        assert float(grads[p]) == pytest.approx(want[p], rel=1e-12, abs=1e-15), p


def test_dloss_dw1_formula(fn):
    """The contract's formula, literally: x1 * sigmoid'(z) * (w3 dloss/dz1 + w4 dloss/dz2)."""
    d = point(3)
    z = d["x1"] * d["w1"] + d["x2"] * d["w2"] + d["b"]
    a = s(z)
    z1, z2 = a * d["w3"] + d["b1"], a * d["w4"] + d["b2"]
    dloss_dz1 = 2 * (s(z1) - d["y1"]) * s(z1) * (1 - s(z1))
    dloss_dz2 = 2 * (s(z2) - d["y2"]) * s(z2) * (1 - s(z2))
    expect = d["x1"] * s(z) * (1 - s(z)) * (d["w3"] * dloss_dz1 + d["w4"] * dloss_dz2)
    assert float(fn.grad(**d)["w1"]) == pytest.approx(expect, rel=1e-12)


def test_hand_formulas_match_finite_differences():
    """The blackboard derivation itself is right (guards the test's own algebra)."""
    data = point(11)
    _, want = by_hand(**data)
    f = lambda **a: by_hand(**{k: float(v) for k, v in a.items()})[0]  # noqa: E731
    for p in PARAMS:
        fd = numerical_grad(f, {k: np.float64(v) for k, v in data.items()}, p)
        assert_grad_close(want[p], fd, what=p)


def test_batched_calls_are_independent(fn):
    """Calling repeatedly with different data gives each point's own gradient."""
    for seed in (21, 22, 21):
        data = point(seed)
        _, grads = fn.value_and_grad(**data)
        _, want = by_hand(**data)
        for p in PARAMS:
            assert float(grads[p]) == pytest.approx(want[p], rel=1e-12, abs=1e-15)


def test_wrt_subset(fn):
    narrow = chainrule.compile_file(EXAMPLE, backend="numpy", wrt=("w1", "b2"))
    data = point(5)
    _, grads = narrow.value_and_grad(**data)
    _, want = by_hand(**data)
    assert set(grads) == {"w1", "b2"}
    assert float(grads["w1"]) == pytest.approx(want["w1"], rel=1e-12)
    assert float(grads["b2"]) == pytest.approx(want["b2"], rel=1e-12)
