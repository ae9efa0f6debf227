"""Tests of the `.expr` parser: statement forms, precedence (by tree shape),
spans, line structure, deep input and the exact text of syntax errors."""
from __future__ import annotations

import pytest

from chainrule.grammar import ast
from chainrule.grammar.parser import parse
from chainrule.grammar.source import CompileError, Span


def sx(node: object) -> str:
    """A compact s-expression of an expression, to assert tree shapes."""
    if isinstance(node, ast.Number):
        return node.text
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Bool):
        return "true" if node.value else "false"
    if isinstance(node, (ast.BinOp, ast.Compare)):
        return f"({node.op} {sx(node.left)} {sx(node.right)})"
    if isinstance(node, ast.Neg):
        return f"(neg {sx(node.operand)})"
    if isinstance(node, ast.Transpose):
        return f"(T {sx(node.value)})"
    if isinstance(node, ast.Index):
        return f"(index {sx(node.value)} {' '.join(sx(i) for i in node.items)})"
    if isinstance(node, ast.Slice):
        return ":".join("" if p is None else sx(p) for p in (node.start, node.stop, node.step))
    if isinstance(node, ast.ListExpr):
        return f"[{' '.join(sx(i) for i in node.items)}]"
    if isinstance(node, ast.TupleExpr):
        return f"(tuple {' '.join(sx(i) for i in node.items)})".replace("tuple )", "tuple)")
    if isinstance(node, ast.Call):
        parts = [sx(a) for a in node.args] + [f"{k.name}={sx(k.value)}" for k in node.kwargs]
        return "(" + " ".join([node.func] + parts) + ")"
    raise AssertionError(f"unexpected node {node!r}")


def expr(src: str) -> ast.Expr:
    (stmt,) = parse(f"x = {src}\n").statements
    assert isinstance(stmt, ast.Assign)
    return stmt.value


def error(src: str) -> CompileError:
    with pytest.raises(CompileError) as info:
        parse(src, "prog.expr")
    return info.value


# ------------------------------------------------------------- statements
def test_dim_forms():
    m = parse("dim N\ndim M = 128\ndim B, D = 784\n")
    n, m128, bd = m.statements
    assert isinstance(n, ast.DimDecl)
    assert [(i.name.id, i.value) for i in n.items] == [("N", None)]
    assert [(i.name.id, i.value) for i in m128.items] == [("M", 128)]
    assert [(i.name.id, i.value) for i in bd.items] == [("B", None), ("D", 784)]
    assert bd.span == Span(3, 1, 3, 15)


@pytest.mark.parametrize("kind", ["input", "param"])
def test_argument_declarations(kind):
    m = parse(f"{kind} x1, x2\n{kind} x: f32[B, 784]\n{kind} s: f64\n{kind} v: [3]\n{kind} w\n")
    plain, typed, scalar, bare, single = m.statements
    assert all(isinstance(s, ast.ArgDecl) and s.kind == kind for s in m.statements)
    assert [n.id for n in plain.names] == ["x1", "x2"] and plain.type is None
    assert typed.type.dtype == "f32"
    assert [s if isinstance(s, int) else s.id for s in typed.type.shape] == ["B", 784]
    assert (scalar.type.dtype, scalar.type.shape) == ("f64", None)
    assert (bare.type.dtype, bare.type.shape) == (None, (3,))
    assert [n.id for n in single.names] == ["w"]


def test_several_names_share_a_type():
    (decl,) = parse("param a, b: f32[2]\n").statements
    assert [n.id for n in decl.names] == ["a", "b"] and decl.type.shape == (2,)


def test_assign_def_output():
    m = parse("def dense(x, W, b) = x @ W + b\nh = dense(x, W1, b1)\noutput h, loss\n")
    d, a, o = m.statements
    assert isinstance(d, ast.Def) and d.name.id == "dense"
    assert [p.id for p in d.params] == ["x", "W", "b"]
    assert sx(d.body) == "(+ (@ x W) b)"
    assert isinstance(a, ast.Assign) and a.target.id == "h" and sx(a.value) == "(dense x W1 b1)"
    assert isinstance(o, ast.Output) and [n.id for n in o.names] == ["h", "loss"]


def test_contract_examples_parse():
    neuron = """
# one neuron feeding two output neurons
input x1, x2, y1, y2          # data: not differentiated (scalars, f64)
param w1, w2, b, w3, w4, b1, b2   # differentiated

z    = x1*w1 + x2*w2 + b
a    = sigmoid(z)
loss = (sigmoid(z1) - y1)^2 + (sigmoid(z2) - y2)^2

output loss
"""
    m = parse(neuron)
    assert [type(s).__name__ for s in m.statements] == [
        "ArgDecl", "ArgDecl", "Assign", "Assign", "Assign", "Output"]
    assert sx(m.statements[4].value) == "(+ (^ (- (sigmoid z1) y1) 2) (^ (- (sigmoid z2) y2) 2))"
    batch = parse("dim B\nloss = mean(logsumexp(logits, axis=1) - sum(y * logits, axis=1))\n")
    assert sx(batch.statements[1].value) == "(mean (- (logsumexp logits axis=1) (sum (* y logits) axis=1)))"


def test_empty_programs():
    assert parse("").statements == ()
    assert parse("\n\n# only a comment\n   \n").statements == ()


# ------------------------------------------------------------- precedence
@pytest.mark.parametrize("src, tree", [
    ("a + b * c", "(+ a (* b c))"),
    ("a * b + c", "(+ (* a b) c)"),
    ("a - b - c", "(- (- a b) c)"),
    ("a / b * c", "(* (/ a b) c)"),
    ("a @ b * c", "(* (@ a b) c)"),
    ("a + b @ c", "(+ a (@ b c))"),
    ("-x^2", "(neg (^ x 2))"),
    ("-2^2", "(neg (^ 2 2))"),
    ("2^3^2", "(^ 2 (^ 3 2))"),
    ("2**3**2", "(^ 2 (^ 3 2))"),
    ("2^-1", "(^ 2 (neg 1))"),
    ("a * -b", "(* a (neg b))"),
    ("a - -b", "(- a (neg b))"),
    ("--a", "(neg (neg a))"),
    ("-a * b", "(* (neg a) b)"),
    ("x[0]^2", "(^ (index x 0) 2)"),
    ("x.T^2", "(^ (T x) 2)"),
    ("-x.T", "(neg (T x))"),
    ("2^x[1]", "(^ 2 (index x 1))"),
    ("(a + b) * c", "(* (+ a b) c)"),
    ("a + b < c * d", "(< (+ a b) (* c d))"),
    ("a <= b", "(<= a b)"),
    ("a > -b", "(> a (neg b))"),
    ("a >= b", "(>= a b)"),
    ("a == b + 1", "(== a (+ b 1))"),
    ("a != b", "(!= a b)"),
    ("(a < b) < c", "(< (< a b) c)"),
    ("f(x)[0].T", "(T (index (f x) 0))"),
    ("x[0][1]", "(index (index x 0) 1)"),
])
def test_precedence(src, tree):
    assert sx(expr(src)) == tree


def test_power_spelling_is_normalized():
    assert expr("a ** b").op == "^"


# ------------------------------------------------------------- atoms
@pytest.mark.parametrize("text, value", [
    ("3", 3), ("2.5", 2.5), ("1e-3", 1e-3), (".5", 0.5), ("2.", 2.0), ("1E+2", 100.0)])
def test_numbers(text, value):
    node = expr(text)
    assert isinstance(node, ast.Number) and node.value == value and node.text == text


def test_integer_literals_are_ints():
    assert type(expr("3").value) is int and type(expr("3.0").value) is float


def test_bools_and_names():
    assert expr("true") == ast.Bool(True, Span(1, 5, 1, 9))
    assert expr("false").value is False
    assert expr("dimension") == ast.Name("dimension", Span(1, 5, 1, 14))  # a keyword prefix is a name


def test_calls_with_keywords():
    call = expr("sum(x, axis=(0, 1), keepdims=true)")
    assert isinstance(call, ast.Call) and call.func == "sum"
    assert sx(call) == "(sum x axis=(tuple 0 1) keepdims=true)"
    assert call.func_span == Span(1, 5, 1, 8)
    assert call.kwargs[0].span == Span(1, 12, 1, 23)
    assert sx(expr("f()")) == "(f)"
    assert sx(expr("f(a, b,)")) == "(f a b)"


def test_tuples_and_lists():
    assert sx(expr("(0, 1)")) == "(tuple 0 1)"
    assert sx(expr("(0,)")) == "(tuple 0)"
    assert sx(expr("()")) == "(tuple)"
    assert sx(expr("(0)")) == "0"
    assert sx(expr("reshape(x, [2, B])")) == "(reshape x [2 B])"
    assert sx(expr("concat([a, b], axis=0)")) == "(concat [a b] axis=0)"
    assert sx(expr("[]")) == "[]"


@pytest.mark.parametrize("src, tree", [
    ("x[1:]", "(index x 1::)"),
    ("x[:-1]", "(index x :(neg 1):)"),
    ("x[:, 0]", "(index x :: 0)"),
    ("x[::2]", "(index x ::2)"),
    ("x[1:5:2, -1]", "(index x 1:5:2 (neg 1))"),
    ("x[:]", "(index x ::)"),
    ("x[a:b:]", "(index x a:b:)"),
])
def test_slices(src, tree):
    assert sx(expr(src)) == tree


def test_transpose():
    node = expr("x.T")
    assert isinstance(node, ast.Transpose) and node.span == Span(1, 5, 1, 8)
    assert sx(expr("(a @ b).T.T")) == "(T (T (@ a b)))"
    assert expr("T").id == "T"  # `T` alone is an ordinary name


# ------------------------------------------------------------- spans
def test_spans_of_nodes():
    src = "dim B\ny = a + f(b, axis=1) * -c[0]\n"
    (_, assign) = parse(src).statements
    assert assign.span == Span(2, 1, 2, 29)  # end_column is one past the last character
    assert assign.target.span == Span(2, 1, 2, 2)
    add = assign.value
    assert add.span == Span(2, 5, 2, 29)
    assert add.left.span == Span(2, 5, 2, 6)
    mul = add.right
    assert mul.span == Span(2, 9, 2, 29)
    assert mul.left.span == Span(2, 9, 2, 21)
    assert mul.right.span == Span(2, 24, 2, 29)  # `-c[0]`
    assert mul.right.operand.span == Span(2, 25, 2, 29)


def test_parentheses_widen_the_enclosing_node_only():
    node = expr("(a + b) * c")
    assert node.span == Span(1, 5, 1, 16)
    assert node.left.span == Span(1, 6, 1, 11)


def test_multiline_spans_and_tabs():
    (stmt,) = parse("\ty = f(a,\n\t\tb)\n").statements
    assert stmt.span == Span(1, 2, 2, 5)
    assert stmt.value.args[1].span == Span(2, 3, 2, 4)  # a tab is one column


def test_type_and_declaration_spans():
    (decl,) = parse("input x: f32[B, D]  # batch\n").statements
    assert decl.span == Span(1, 1, 1, 19)
    assert decl.type.span == Span(1, 10, 1, 19)
    assert decl.type.shape[1].span == Span(1, 17, 1, 18)


# ------------------------------------------------------------- line structure
def test_comments_and_blank_lines():
    m = parse("# header\n\n  \nx = 1  # trailing\n\n\n# end\ny = x\n")
    assert [s.target.id for s in m.statements] == ["x", "y"]
    assert m.statements[1].span.line == 8


def test_crlf_and_no_final_newline():
    m = parse("x = 1\r\ny = (x +\r\n  2)\r\noutput y")
    assert [type(s).__name__ for s in m.statements] == ["Assign", "Assign", "Output"]
    assert m.statements[1].span == Span(2, 1, 3, 5)
    assert m.statements[2].span == Span(4, 1, 4, 9)


def test_continuation_inside_brackets():
    m = parse("loss = mean(\n    logsumexp(logits,   # a comment\n\n              axis=1)\n  - sum(y * logits,\n        axis=1))\nz = [1,\n 2]\n")
    assert sx(m.statements[0].value) == "(mean (- (logsumexp logits axis=1) (sum (* y logits) axis=1)))"
    assert sx(m.statements[1].value) == "[1 2]"


def test_byte_order_mark_is_ignored():
    (stmt,) = parse("\ufeffx = 1\n").statements
    assert stmt.span == Span(1, 1, 1, 6)


def test_control_characters_allowed_in_comments():
    assert len(parse("x = 1 # a\x00b\x07\n").statements) == 1


# ------------------------------------------------------------- deep input
def _depth(node: ast.Expr, child) -> int:
    depth = 0
    while node is not None:
        depth, node = depth + 1, child(node)
    return depth


def test_ten_thousand_nested_parentheses():
    n = 10_000
    node = expr("(" * n + "a" + ")" * n)
    assert node == ast.Name("a", Span(1, 5 + n, 1, 6 + n))
    (stmt,) = parse("y = " + "(" * n + "a" + ")" * n + "\n").statements
    assert stmt.span.end_column == 6 + 2 * n  # exclusive: one past the last ')'


def test_ten_thousand_term_sum():
    n = 10_000
    node = expr(" + ".join(f"a{i}" for i in range(n)))
    assert _depth(node, lambda b: b.left if isinstance(b, ast.BinOp) else None) == n
    assert node.right.id == f"a{n - 1}"


def test_deep_calls_powers_and_negations():
    n = 10_000
    calls = expr("f(" * n + "a" + ")" * n)
    assert _depth(calls, lambda c: c.args[0] if isinstance(c, ast.Call) else None) == n + 1
    powers = expr("^".join(["a"] * n))
    assert _depth(powers, lambda b: b.right if isinstance(b, ast.BinOp) else None) == n
    negs = expr("-" * n + "a")
    assert _depth(negs, lambda u: u.operand if isinstance(u, ast.Neg) else None) == n + 1


def test_many_statements():
    m = parse("".join(f"x{i} = x{i - 1} + 1\n" for i in range(1, 5001)))
    assert len(m.statements) == 5000 and m.statements[-1].span.line == 5000


# ------------------------------------------------------------- syntax errors
@pytest.mark.parametrize("src, line, column, message", [
    ("x = a + b)\n", 1, 10, "unexpected ')'"),
    ("x = a +\n", 1, 8, "expected an expression after '+'"),
    ("x = a + )\n", 1, 9, "unexpected ')': expected an expression after '+'"),
    ("x = \n", 1, 5, "expected an expression after '='"),
    ("x = f(a, b\n", 1, 11, "unexpected end of input: missing ')'"),
    ("x = [1, 2", 1, 10, "unexpected end of input: missing ']'"),
    ("x = (a + b\ny = 2\n", 1, 11, "unexpected end of line: missing ')'"),
    ("x = (a +\ny = 2\n", 1, 5, "'(' is never closed"),
    ("x = a $ b\n", 1, 7, "unexpected character '$'"),
    ("x = a\t$\n", 1, 7, "unexpected character '$'"),
    ("x = a\x00\n", 1, 6, "invalid character U+0000 (control character)"),
    ("x = 1\ny = a\rb\n", 2, 6, "invalid character U+000D (control character)"),
    ("x = a < b < c\n", 1, 11, "comparisons cannot be chained"),
    ("x = f(a == b != c)\n", 1, 14, "comparisons cannot be chained"),
    ("x = input + 1\n", 1, 5, "'input' is a keyword and cannot be used as a name"),
    ("dim = 3\n", 1, 1, "'dim' is a keyword and cannot be used as a name"),
    ("true = 1\n", 1, 1, "'true' is a keyword and cannot be used as a name"),
    ("def f(param) = 1\n", 1, 7, "'param' is a keyword and cannot be used as a name"),
    ("output a, def\n", 1, 11, "'def' is a keyword and cannot be used as a name"),
    ("x = 1\ny = 2 3\n", 2, 7, "unexpected number '3': expected an operator or end of line"),
    ("3 = x\n", 1, 1, "unexpected number '3': expected a statement"),
    ("x = a\n  + b\n", 2, 3, "unexpected '+': expected a statement"),
    ("x y\n", 1, 3, "unexpected name 'y': expected '='"),
    ("output\n", 1, 7, "unexpected end of line: expected a name"),
    ("output a b\n", 1, 10, "unexpected name 'b': expected ',' or end of line"),
    ("input x:\n", 1, 9, "unexpected end of line: expected a name or '['"),
    ("dim N = \n", 1, 9, "unexpected end of line: expected a number"),
    ("x = (a]\n", 1, 7, "unexpected ']': expected ')' or ','"),
    ("x = a[]\n", 1, 7, "unexpected ']': expected an expression after '['"),
    ("x = a[1:2:3:4]\n", 1, 12, "unexpected ':': expected ']' or ','"),
    ("def f(a b) = a\n", 1, 9, "unexpected name 'b': expected ')' or ','"),
    ("input x: f32[]\n", 1, 14, "unexpected ']': expected a name or a number"),
    ("x = a[0\ny = 1\n", 1, 8, "unexpected end of line: missing ']'"),
    ("input x: i32[3]\n", 1, 10, "unknown type 'i32': expected f32 or f64"),
    ("input x: f32[1.5]\n", 1, 14, "a size must be an integer, got '1.5'"),
    ("dim N = 1e3\n", 1, 9, "a size must be an integer, got '1e3'"),
    ("x = a.foo\n", 1, 6, "unknown attribute '.foo': only '.T' (transpose) exists"),
    ("x = f(axis=1, a)\n", 1, 15, "positional argument follows keyword argument"),
    ("x = f(a, axis=1, axis=2)\n", 1, 18, "duplicate keyword argument 'axis'"),
    ("def f(a, a) = a\n", 1, 10, "duplicate parameter 'a'"),
    ("x = é\n", 1, 5, "unexpected character 'é'"),
    ("x = \u0663\n", 1, 5, "unexpected character '\u0663'"),  # an Arabic-Indic 3
    ("x = 1\u00a0+ 2\n", 1, 6, "invalid character U+00A0 (no-break space)"),
])
def test_syntax_errors(src, line, column, message):
    e = error(src)
    assert (e.line, e.column, e.message) == (line, column, message)
    assert e.filename == "prog.expr"


def test_error_renders_with_caret():
    e = error("y = 1\nx = a + b)\n")
    assert e.render() == "prog.expr:2:10: error: unexpected ')'\nx = a + b)\n         ^"


def test_error_inside_long_expression_is_located():
    src = "x = " + " + ".join(["a"] * 500) + " + * b\n"
    e = error(src)
    assert e.column == src.index("*") + 1
    assert e.message == "unexpected '*': expected an expression after '+'"


def test_text_must_be_str():
    with pytest.raises(TypeError):
        parse(b"x = 1\n")  # type: ignore[arg-type]
