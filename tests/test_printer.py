"""The program printers: equations in the user's names, LaTeX, Graphviz, op counts.

The strongest check is a round trip: the forward text is itself a `.expr`
program, so compiling what `show` prints must give the same value.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import chainrule
from chainrule.compiler.printer import Plan, format_program, format_stats, stats
from chainrule.runtime.samples import choose_dims, draw_arguments

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ALL_EXAMPLES = sorted(p.name for p in EXAMPLES.glob("*.expr"))


def program_of(source: str):
    return chainrule.compile(source).program


def example(name: str):
    return chainrule.compile_file(EXAMPLES / name).program


def lines(text: str) -> list[str]:
    return text.splitlines()


# ------------------------------------------------------------ the lecture
def test_neuron_forward_reads_like_the_source():
    text = format_program(example("neuron.expr"), grad=False)
    body = lines(text)
    assert "input x1: f64" in body and "param w1: f64" in body
    assert "z = x1*w1 + x2*w2 + b" in body
    assert "a = sigmoid(z)" in body
    assert "z1 = a*w3 + b1" in body
    assert body[-1] == "output loss"
    assert not any("/" in line for line in body)  # no adjoints without --grad


def test_neuron_adjoint_reads_like_the_lecture():
    body = lines(format_program(example("neuron.expr"), grad=True))
    assert "dloss/dw1 = x1 * dloss/dz" in body
    assert "dloss/dw2 = x2 * dloss/dz" in body
    assert "dloss/dz = dloss/da * (a * (1 - a))" in body
    assert "dloss/da = dloss/dz2 * w4 + dloss/dz1 * w3" in body
    assert "dloss/db = dloss/dz" in body
    grads = [line for line in body if re.match(r"dloss/d(w1|w2|b|w3|w4|b1|b2) = ", line)]
    assert len(grads) == 7
    # the gradients come last, in declaration order
    assert [g.split(" = ")[0] for g in grads] == [f"dloss/d{p}" for p in
                                                  ("w1", "w2", "b", "w3", "w4", "b1", "b2")]
    assert body[-7:] == grads


def test_the_seed_constant_is_never_called_dloss_dloss():
    # the adjoint names the shared constant 1.0 `dloss/dloss`; it must stay a number
    text = format_program(example("neuron.expr"), grad=True)
    assert "dloss/dloss" not in text
    assert "(1 - a)" in text


# ------------------------------------------------------------- round trip
# (logreg divides by its symbolic batch size, printed `/N`: printer notation only;
# mlp's logsumexp prints its internal stop_gradient shift)
@pytest.mark.parametrize("name", ["neuron.expr", "rosenbrock.expr"])
def test_forward_text_compiles_back_to_the_same_value(name):
    program = example(name)
    text = format_program(program, grad=False)
    again = chainrule.compile(text)
    original = chainrule.compile_file(EXAMPLES / name)
    dims = choose_dims(program, {})
    args = draw_arguments(program, dims, np.random.default_rng(1))
    np.testing.assert_allclose(again.value(**args), original.value(**args), rtol=1e-12)
    for (_, g1), (_, g2) in zip(sorted(again.grad(**args).items()),
                                sorted(original.grad(**args).items())):
        np.testing.assert_allclose(g1, g2, rtol=1e-10, atol=1e-14)


PRECEDENCE = """\
param x, y, z
a = -x^2
b = (x + y) * z
c = x - (y - z)
d = x / (y * z)
f = 2^x^y
g = (x^y)^2
h = x - -y
i = (x / y) / z
k = (-x)^2
m = -(x * y) + x * (y < z)
"""


@pytest.mark.parametrize("expr, expected", [
    ("-x^2", "-x^2"),
    ("(x + y) * z", "(x + y) * z"),
    ("x - (y - z)", "x - (y - z)"),
    ("x / (y * z)", "x / (y*z)"),
    ("2^x^y", "2^x^y"),
    ("(x^y)^z", "(x^y)^z"),
    ("(x / y) / z", "x/y / z"),
    ("x + (y + z)", "x + (y + z)"),
    ("(-x)^z", "(-x)^z"),
    ("where(x < y, x, y*z)", "where(x < y, x, y*z)"),
    ("x - (-y)", "x - (-y)"),
    ("exp(x + y) * sigmoid(z)", "exp(x + y) * sigmoid(z)"),
])
def test_minimal_parentheses(expr, expected):
    text = format_program(program_of(f"param x, y, z\nr = {expr}\noutput r\n"))
    assert f"r = {expected}" in lines(text)


@pytest.mark.parametrize("expr", [
    "-x^2 + (x + y) * z - (y - z)", "x / (y * z) + 2^x^y + (x^y)^2",
    "x - -y + (x / y) / z + (-x)^2", "-(x * y) + where(x < z, x, z) * y",
    "maximum(x, y) - minimum(y, z) + clip(x, -0.5, 0.5) + abs(x) * log(y)",
    "softplus(x) + tanh(y) / sqrt(z) + x^-1",
])
def test_printed_expressions_mean_the_same(expr):
    source = f"param x, y, z\nr = {expr}\noutput r\n"
    printed = format_program(program_of(source))
    args = {"x": 0.3, "y": 0.7, "z": 1.9}
    assert chainrule.compile(printed).value(**args) == pytest.approx(
        chainrule.compile(source).value(**args), rel=1e-14)


def test_shared_values_get_temporaries_and_single_uses_are_inlined():
    text = format_program(program_of("param x\nloss = sin(x*x) + cos(x*x) + exp(x)\noutput loss\n"))
    assert lines(text)[2:] == ["t1 = x^2", "loss = sin(t1) + cos(t1) + exp(x)", "output loss"]


def test_temporaries_avoid_user_names():
    text = format_program(program_of(
        "param x\nt1 = sin(x)\nloss = t1 + exp(x*x) * cos(x*x)\noutput loss\n"))
    assert "t1 = sin(x)" in lines(text)
    assert "t2 = x^2" in lines(text)


def test_long_expressions_are_split():
    terms = " + ".join(f"sin(x * {i})" for i in range(1, 16))
    text = format_program(program_of(f"param x\nloss = {terms}\noutput loss\n"))
    assert max(len(line) for line in lines(text)) < 200
    assert "t1 = " in text


# -------------------------------------------------------- tensors, layout
def test_mlp_hides_broadcasts_and_names_matmuls():
    text = format_program(example("mlp.expr"), grad=True)
    body = lines(text)
    assert "param W1: f32[D, H]" in body
    assert "h = relu(t1)" in body and "t1 = x @ W1 + b1" in body
    assert "logits = h @ W2 + b2" in body
    assert "dloss/dW1 = x.T @ " in text
    assert "dloss/dW2 = h.T @ dloss/dlogits" in body
    assert "dloss/db2 = sum(dloss/dlogits, axis=0)" in body
    assert "broadcast(b1" not in text


def test_vector_matmul_and_slices():
    body = lines(format_program(example("logreg.expr")))
    assert "margin = y * (X @ w + b)" in body
    text = format_program(example("rosenbrock.expr"), grad=True)
    assert "x[1:]" in text and "x[:-1]" in text
    assert "pad(" in text and "at=[1:]" in text


@pytest.mark.parametrize("expr, expected", [
    ("sum(X[:, 0])", "sum(X[:, 0])"), ("sum(X[1:, ::2])", "sum(X[1:, ::2])"),
    ("sum(X[-1])", "sum(X[-1])"), ("sum(X.T @ v)", "sum(X.T @ v)"),
    ("sum(X, axis=1) @ v", "sum(X, axis=1) @ v"), ("mean(X)", "sum(X) / (N*4)"),
])
def test_tensor_notation(expr, expected):
    source = f"dim N\nparam X: f64[N, 4]\nparam v: f64[N]\nr = {expr}\noutput r\n"
    text = format_program(program_of(source))
    assert f"r = {expected}" in lines(text)
    program = program_of(source)
    args = draw_arguments(program, choose_dims(program, {}), np.random.default_rng(0))
    if "(N*4)" not in expected:  # `N*4` as a size is printer notation only
        assert chainrule.compile(text).value(**args) == pytest.approx(
            chainrule.compile(source).value(**args), rel=1e-12)


# ------------------------------------------------------------------ latex
def test_latex_is_one_align_environment_with_partials():
    text = format_program(example("neuron.expr"), grad=True, fmt="latex")
    assert text.count(r"\begin{align*}") == 1 and text.count(r"\end{align*}") == 1
    assert r"a &= \sigma\left(z\right)" in text
    assert r"\frac{\partial loss}{\partial z}" in text
    assert r"\frac{\partial loss}{\partial w_{1}} &= x_{1} \cdot \frac{\partial loss}{\partial z}" \
        in text
    assert text.count("{") == text.count("}")
    body = text.split(r"\begin{align*}")[1].split(r"\end{align*}")[0]
    rows = [r for r in body.split("\\\\") if r.strip()]
    assert len(rows) == len([line for line in lines(format_program(
        example("neuron.expr"), grad=True)) if " = " in line])


@pytest.mark.parametrize("name", ALL_EXAMPLES)
def test_latex_braces_balance(name):
    text = format_program(example(name), grad=True, fmt="latex")
    assert text.count("{") == text.count("}")
    assert text.count(r"\left(") == text.count(r"\right)")
    assert r"\mathrm{relu}" in text or "mlp" not in name


# -------------------------------------------------------------------- dot
@pytest.mark.parametrize("name", ALL_EXAMPLES)
@pytest.mark.parametrize("grad", [False, True])
def test_dot_is_a_well_formed_digraph(name, grad):
    text = format_program(example(name), grad=grad, fmt="dot")
    assert text.startswith("digraph ") and text.rstrip().endswith("}")
    declared = set(re.findall(r"^\s+(\w+) \[", text, re.M))
    edges = re.findall(r"^\s+(\w+) -> (\w+)(.*);$", text, re.M)
    assert edges and all(a in declared and b in declared for a, b, _ in edges)
    dashed = [e for e in edges if "dashed" in e[2]]
    assert bool(dashed) == grad
    assert all("firebrick" in e[2] for e in dashed)


# ------------------------------------------------------------------ stats
@pytest.mark.parametrize("name", ALL_EXAMPLES)
def test_backward_costs_at_most_three_forwards(name):
    info = stats(example(name))
    assert info["forward"] > 0
    assert info["backward"] <= 3 * info["forward"], info
    assert sum(f for f, _ in info["by_op"].values()) == info["forward"]
    assert sum(b for _, b in info["by_op"].values()) == info["backward"]
    table = format_stats(info)
    assert "ratio backward/forward" in table and "not counted:" in table


def test_stats_count_the_neuron_by_hand():
    info = stats(example("neuron.expr"))
    # forward: 6 mul (4 products, 2 squares), 5 add, 2 sub, 3 sigmoid
    assert info["by_op"]["sigmoid"] == (3, 0)
    assert info["forward"] == 16


def test_plan_labels_every_line_once():
    plan = Plan(example("mlp.expr"), grad=True)
    labels = list(plan.labels.values())
    assert len(labels) == len(set(labels))


def test_unknown_format():
    with pytest.raises(ValueError, match="unknown format"):
        format_program(example("neuron.expr"), fmt="html")
