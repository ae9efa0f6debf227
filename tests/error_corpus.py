"""A corpus of malformed `.expr` programs and the exact error each must give.

Each entry is (name, source, line, column, message_substring): compiling
`source` must raise `chainrule.CompileError` at 1-based `line` and `column`
(the first character of the offending token or name) with a message that
contains `message_substring`. Shared by test_errors.py (the Python API) and
the CLI tests (exit codes and `file:line:col: error:` output).
"""
from __future__ import annotations

from typing import NamedTuple


class ErrorCase(NamedTuple):
    name: str
    source: str
    line: int
    column: int
    message: str


def _case(name: str, source: str, line: int, column: int, message: str) -> ErrorCase:
    return ErrorCase(name, source.strip("\n") + "\n", line, column, message)


CORPUS: list[ErrorCase] = [
    # ------------------------------------------------------------ syntax
    _case("missing-operand", """
param x
y = x +
output y
""", 2, 8, "expected an expression after '+'"),
    _case("unclosed-paren", """
param x
y = (x + 1
output y
""", 2, 11, "missing ')'"),
    _case("unclosed-paren-at-end-of-input", """
param x
y = sum(x
""", 2, 10, "unexpected end of input: missing ')'"),
    _case("unclosed-bracket-in-type", """
param x: [3
output x
""", 1, 12, "missing ']'"),
    _case("stray-close-paren", """
param x
y = x + 1)
output y
""", 2, 10, "unexpected ')'"),
    _case("bad-character", """
param x
y = x $ 2
output y
""", 2, 7, "unexpected character '$'"),
    _case("chained-comparison", """
param x
y = where(x < x < x, x, 0)
output y
""", 2, 17, "comparisons cannot be chained"),
    _case("two-operators", """
param x
y = 1 +* x
output y
""", 2, 8, "unexpected '*'"),
    _case("juxtaposition", """
param x
y = 2 x
output y
""", 2, 7, "unexpected name 'x'"),
    _case("keyword-as-name", """
param x
def = x
output x
""", 2, 1, "'def' is a keyword and cannot be used as a name"),
    _case("def-without-equals", """
param x
def f(a) a
output x
""", 2, 10, "expected '='"),
    _case("unknown-attribute", """
param x: [3, 3]
y = sum(x.X)
output y
""", 2, 10, "unknown attribute '.X'"),
    _case("unknown-dtype", """
param x: f16
output x
""", 1, 10, "unknown type 'f16'"),
    _case("duplicate-keyword", """
param x: [3]
y = sum(x, axis=0, axis=0)
output y
""", 2, 20, "duplicate keyword argument 'axis'"),
    _case("positional-after-keyword", """
param x: [3]
y = sum(axis=0, x)
output y
""", 2, 17, "positional argument follows keyword argument"),
    _case("fractional-dim", """
dim N = 3.5
param x
output x
""", 1, 9, "a size must be an integer"),
    _case("too-many-colons", """
param x: [3]
y = sum(x[1:2:3:4])
output y
""", 2, 16, "unexpected ':'"),
    _case("statement-starting-with-operator", """
param x
y = x
  + 1
output y
""", 3, 3, "unexpected '+'"),
    _case("empty-output", """
param x
output
""", 2, 7, "expected a name"),
    # ------------------------------------------------------------ names
    _case("unknown-name", """
param x
y = z + x
output y
""", 2, 5, "unknown name 'z'"),
    _case("unknown-function", """
param x
y = foo(x)
output y
""", 2, 5, "unknown function 'foo'"),
    _case("use-before-binding", """
param x
y = z + 1
z = x
output y
""", 2, 5, "'z' is used before it is bound (line 3)"),
    _case("def-used-before-definition", """
param x
y = f(x)
def f(a) = a
output y
""", 2, 5, "'f' is used before it is defined (line 3)"),
    _case("rebinding", """
param x
y = x
y = x * 2
output y
""", 3, 1, "'y' is already bound (line 2)"),
    _case("rebinding-an-argument", """
input x, x
output x
""", 1, 10, "'x' is already bound"),
    _case("rebinding-a-dim", """
dim N
param N
output N
""", 2, 7, "'N' is already bound"),
    _case("rebinding-a-builtin", """
param x
sum = x
output sum
""", 2, 1, "'sum' is a builtin and cannot be rebound"),
    _case("rebinding-a-constant", """
param x
pi = x
output pi
""", 2, 1, "'pi' is a builtin and cannot be rebound"),
    _case("redefining-a-builtin", """
param x
def exp(a) = a
output x
""", 2, 5, "'exp' is a builtin and cannot be redefined"),
    _case("def-name-taken", """
param x
def x(a) = a
output x
""", 2, 5, "'x' is already bound"),
    _case("recursion", """
param x
def f(a) = f(a) + 1
y = f(x)
output y
""", 2, 12, "'f' calls itself; recursion is not allowed"),
    _case("unknown-name-in-def-body", """
param x
def f(a) = a + q
output x
""", 2, 16, "unknown name 'q'"),
    _case("unknown-function-in-def-body", """
param x
def f(a) = foo(a)
output x
""", 2, 12, "unknown function 'foo'"),
    _case("calling-a-value", """
param x
z = 2
y = z(x)
output y
""", 3, 5, "'z' is not a function"),
    _case("function-as-value", """
param x
y = sigmoid + x
output y
""", 2, 5, "'sigmoid' is a function; call it with arguments"),
    _case("dim-as-value", """
dim N
param x
y = N * x
output y
""", 3, 5, "expected a value here, got a symbolic dim"),
    _case("tuple-as-value", """
param x
y = (1, 2)
output x
""", 2, 5, "expected a value here, got a tuple"),
    _case("boolean-as-value", """
param x
y = true
output x
""", 2, 5, "expected a value here, got a boolean"),
    # --------------------------------------------------------- arity, keywords
    _case("builtin-too-many-args", """
param x
y = exp(x, x)
output y
""", 2, 5, "exp() takes 1 argument, got 2"),
    _case("builtin-too-few-args", """
param x
y = clip(x, 1)
output y
""", 2, 5, "clip() takes 3 arguments, got 2"),
    _case("reduction-with-two-args", """
param x: [3]
y = max(x, 1)
output y
""", 2, 5, "max() takes 1 argument, got 2"),
    _case("def-wrong-arity", """
param x
def f(a, b) = a + b
y = f(x)
output y
""", 3, 5, "f() takes 2 arguments, got 1"),
    _case("def-wrong-arity-second-call", """
param x: [3]
def f(a) = sum(a)
y = f(x) + f(x, 1)
output y
""", 3, 12, "f() takes 1 argument, got 2"),
    _case("def-with-keyword", """
param x
def f(a) = a
y = f(x, a=1)
output y
""", 3, 10, "f() takes no keyword arguments"),
    _case("unknown-keyword", """
param x: [3]
y = sum(x, foo=1)
output y
""", 2, 12, "sum() has no keyword 'foo' (it takes: axis, keepdims)"),
    _case("keyword-on-elementwise", """
param x
y = exp(x, axis=0)
output y
""", 2, 12, "exp() has no keyword 'axis'"),
    _case("keepdims-on-softmax", """
param x: [3]
y = sum(softmax(x, keepdims=true))
output y
""", 2, 20, "softmax() has no keyword 'keepdims'"),
    _case("keepdims-not-boolean", """
param x: [3]
y = sum(x, keepdims=1)
output y
""", 2, 21, "keepdims must be true or false"),
    # ------------------------------------------------------------ shapes
    _case("shape-mismatch", """
param x: [3]
param z: [4]
y = sum(x + z)
output y
""", 3, 9, "shapes [3] and [4] do not broadcast"),
    _case("symbolic-dim-mismatch", """
dim B, C
param x: [B]
param z: [C]
y = sum(x + z)
output y
""", 4, 9, "shapes [B] and [C] do not broadcast (size B vs C)"),
    _case("symbolic-slice-mismatch", """
dim N
param x: [N]
y = sum(x[1:] * x)
output y
""", 3, 9, "size N - 1 vs N"),
    _case("transpose-mismatch", """
param x: [2, 3]
y = sum(x.T + x)
output y
""", 2, 9, "shapes [3, 2] and [2, 3] do not broadcast"),
    _case("where-branch-mismatch", """
param x: [3]
param a: [4]
y = sum(where(x > 0, a, 0))
output y
""", 3, 9, "where(): shapes [3] and [4] do not broadcast"),
    _case("mixed-f32-f64", """
param x: f32
param z: f64
y = x + z
output y
""", 3, 5, "cannot mix f32 and f64; convert with f32(x) or f64(x)"),
    _case("mixed-f32-f64-matmul", """
param a: f32[2, 2]
param b: [2, 2]
y = sum(a @ b)
output y
""", 3, 9, "cannot mix f32 and f64"),
    _case("mixed-f32-f64-concat", """
param a: [2]
param b: f32[2]
y = sum(concat([a, b]))
output y
""", 3, 9, "cannot concat f64 and f32"),
    _case("axis-out-of-range", """
param x: [3]
y = sum(x, axis=1)
output y
""", 2, 17, "axis 1 is out of range for a tensor of rank 1"),
    _case("negative-axis-out-of-range", """
param x: [2, 3]
y = sum(x, axis=-3)
output y
""", 2, 17, "axis -3 is out of range for a tensor of rank 2"),
    _case("repeated-axis", """
param x: [3, 3]
y = sum(x, axis=(0, -2))
output y
""", 2, 17, "repeated axis"),
    _case("fractional-axis", """
param x: [3]
y = sum(x, axis=1.5)
output y
""", 2, 17, "axis must be an integer or a tuple of integers"),
    _case("softmax-axis-out-of-range", """
param x: [2, 3]
y = sum(softmax(x, axis=2))
output y
""", 2, 25, "axis 2 is out of range for a tensor of rank 2"),
    _case("softmax-of-scalar", """
param x
y = log_softmax(x)
output y
""", 2, 17, "log_softmax() needs a tensor with at least one axis"),
    _case("bad-reshape", """
param x: [3, 4]
y = sum(reshape(x, [5, 2]))
output y
""", 2, 20, "cannot reshape [3, 4] to [5, 2]: element counts differ"),
    _case("bad-reshape-symbolic", """
dim B, C
param x: [B, 2]
y = sum(reshape(x, [2, C]))
output y
""", 3, 20, "cannot reshape [B, 2] to [2, C]"),
    _case("reshape-two-minus-ones", """
param x: [12]
y = sum(reshape(x, [-1, -1]))
output y
""", 2, 20, "at most one size (-1)"),
    _case("reshape-cannot-infer", """
param x: [12]
y = sum(reshape(x, [-1, 5]))
output y
""", 2, 20, "cannot infer -1 when reshaping [12] with sizes [5]"),
    _case("reshape-not-a-list", """
param x: [12]
y = sum(reshape(x, 12))
output y
""", 2, 20, "reshape's shape must be a list"),
    _case("reshape-unknown-dim", """
dim B
param x: [B, 2]
y = sum(reshape(x, [2, C]))
output y
""", 3, 24, "unknown name 'C'"),
    _case("matmul-inner-mismatch", """
param a: [2, 3]
param b: [4, 3]
y = sum(a @ b)
output y
""", 3, 9, "inner sizes 3 and 4 differ"),
    _case("matmul-symbolic-inner-mismatch", """
dim B, C
param a: [B, C]
param b: [B, 2]
y = sum(a @ b)
output y
""", 4, 9, "inner sizes C and B differ"),
    _case("matmul-rank-3", """
param a: [2, 3, 4]
param b: [4, 3]
y = sum(a @ b)
output y
""", 3, 9, "@ takes 1-D or 2-D operands"),
    _case("matmul-with-number", """
param x: [2]
y = sum(x @ 2)
output y
""", 2, 9, "@ needs two tensors"),
    _case("error-inside-def-body", """
param x: [2, 3]
param W: [4, 5]
def dense(x, W) = x @ W
y = sum(dense(x, W))
output y
""", 3, 19, "(in dense() called at line 4, column 9)"),
    # --------------------------------------------------------- indexing
    _case("index-out-of-range", """
param x: [3]
y = x[3]
output y
""", 2, 7, "index 3 is out of range for axis 0 of size 3"),
    _case("negative-index-out-of-range", """
param x: [3]
y = x[-4]
output y
""", 2, 7, "index -4 is out of range"),
    _case("number-indexed", """
param x
y = 3[0] * x
output y
""", 2, 5, "a number cannot be indexed"),
    _case("constant-indexed", """
param x
y = pi[0] * x
output y
""", 2, 5, "a number cannot be indexed"),
    _case("too-many-indices", """
param x: [3]
y = sum(x[0, 1])
output y
""", 2, 14, "too many indices: 2 for a tensor of rank 1"),
    _case("scalar-indexed", """
param x
y = x[0]
output y
""", 2, 7, "too many indices: 1 for a tensor of rank 0"),
    _case("slice-step-zero", """
param x: [3]
y = sum(x[::0])
output y
""", 2, 13, "slice step cannot be zero"),
    _case("non-constant-index", """
param x: [3]
param i
y = x[i]
output y
""", 3, 7, "indices and slice bounds must be constant integers"),
    _case("fractional-index", """
param x: [3]
y = x[1.5]
output y
""", 2, 7, "indices and slice bounds must be constant integers"),
    # ------------------------------------------------------------- concat
    _case("concat-size-mismatch", """
param a: [2, 3]
param b: [2, 4]
y = sum(concat([a, b], axis=0))
output y
""", 3, 9, "cannot concat [2, 3] and [2, 4] along axis 0"),
    _case("concat-rank-mismatch", """
param a: [2, 3]
param b: [3]
y = sum(concat([a, b]))
output y
""", 3, 9, "cannot concat [2, 3] and [3] along axis 0"),
    _case("concat-not-a-list", """
param a: [2]
y = sum(concat(a))
output y
""", 2, 16, "concat takes a list of tensors"),
    _case("concat-of-scalars", """
param a
y = sum(concat([a, a]))
output y
""", 2, 16, "concat needs tensors of rank 1 or more"),
    _case("concat-two-axes", """
param a: [2, 2]
y = sum(concat([a, a], axis=(0, 1)))
output y
""", 2, 29, "concat takes a single axis"),
    # ------------------------------------------------------------- masks
    _case("comparison-as-value", """
param x
y = (x > 0) + 1
output y
""", 2, 6, "a comparison gives a mask, usable only as where's first argument"),
    _case("bound-mask-as-value", """
param x
m = x > 0
y = m * 2
output y
""", 3, 5, "a comparison gives a mask"),
    _case("mask-as-function-argument", """
param x
y = exp(x > 0)
output y
""", 2, 9, "a comparison gives a mask"),
    _case("where-without-comparison", """
param x
y = where(x, 1, 2)
output y
""", 2, 11, "where's first argument must be a comparison"),
    _case("mask-as-output", """
param x
m = x > 0
output x, m
""", 3, 11, "'m' is a mask (a comparison); outputs must be values"),
    # ------------------------------------------------------------- outputs
    _case("non-scalar-first-output", """
param x: [3]
y = x * 2
output y
""", 3, 8, "the first output 'y' must be a scalar"),
    _case("missing-output", """
param x
y = x * 2
""", 2, 1, "the program has no 'output' statement"),
    _case("two-output-statements", """
param x
output x
output x
""", 3, 1, "only one 'output' statement is allowed"),
    _case("unknown-output", """
param x
output z
""", 2, 8, "unknown name 'z'"),
    _case("dim-as-output", """
dim N
param x
output x, N
""", 3, 11, "'N' is a dim, not a value"),
    # ------------------------------------------------------------- types
    _case("unknown-dim-in-type", """
param x: [N]
y = sum(x)
output y
""", 1, 11, "unknown dim 'N'; declare it with 'dim N'"),
    _case("unknown-dim-in-f32-type", """
dim B
param x: f32[B, C]
y = sum(x)
output y
""", 2, 17, "unknown dim 'C'"),
]
