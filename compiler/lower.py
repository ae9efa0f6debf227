"""Lowering: AST -> typed IR.

Resolves names, inlines `def`s, turns literals into constants of the other
operand's dtype, makes broadcasting explicit and checks every shape and dtype
rule symbolically, reporting each mistake at the token that caused it.
"""
from __future__ import annotations

from collections import ChainMap
from typing import Any

from chainrule.compiler import ops
from chainrule.compiler.builtins import BUILTINS, CONSTANTS, RESERVED, ArgError
from chainrule.compiler.ir import Node, TensorType, make
from chainrule.compiler.indexing import lower_index
from chainrule.compiler.program import ArgInfo, Constraint, Program
from chainrule.compiler.shapes import MAX_ELEMENTS, ShapeError, Size, Sym, static_numel, sym
from chainrule.grammar import ast
from chainrule.grammar.source import CompileError, Source, Span

_BINARY = {"+": "add", "-": "sub", "*": "mul", "/": "div", "^": "pow"}
_COMPARE = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq", "!=": "ne"}

# Lowering recurses once per level of an expression's nesting (about four Python
# frames a level; chains of + - * / @, of ^ and of unary minus are walked in a
# loop and do not count). `lower()` runs on a large stack (compiler/deepstack.py)
# whose recursion limit leaves room for this many levels; deeper is a located error.
MAX_NESTING = 50_000
# Every def call lowers the def's body again, so a few lines can stand for an
# exponential amount of work (`def f2(a) = f1(a) * f1(a + 1)`, ...). Lowering
# stops with an error after this many expression nodes (a 10,000-line program
# takes about 100,000).
MAX_WORK = 1_000_000
_LEFT_ASSOCIATIVE = ("+", "-", "*", "/", "@")
MAX_RANK = 64  # NumPy's limit: arguments and results are NumPy arrays


class _Lowerer:
    def __init__(self, module: ast.Module, source: Source, dtype: str | None):
        self.source = source
        self.dtype_override = dtype
        self.dims: dict[str, int | None] = {}
        self.scope: dict[str, Any] = {}  # name -> Node | float | Size (dims)
        self.bound_at: dict[str, Span] = {}
        self.defs: dict[str, ast.Def] = {}
        self.args: list[ArgInfo] = []
        self.arg_nodes: dict[str, Node] = {}
        self.names: dict[Node, str] = {}
        self.constraints: list[Constraint] = []
        self.outputs: list[tuple[str, Node]] | None = None
        self.later = {s.target.id: s.span for s in module.statements if isinstance(s, ast.Assign)}
        self.later.update({s.name.id: s.span for s in module.statements if isinstance(s, ast.Def)})
        self.later_defs = {s.name.id for s in module.statements if isinstance(s, ast.Def)}
        self.call_depth = 0
        self.depth = 0
        self.work = 0
        self.inlined: dict[tuple, tuple] = {}  # (def, args) -> (args, result): defs are pure

    # ------------------------------------------------------------ statements
    def run(self, module: ast.Module) -> Program:
        for stmt in module.statements:
            getattr(self, "stmt_" + type(stmt).__name__)(stmt)
        if self.outputs is None:
            last = module.statements[-1].span if module.statements else Span(1, 1, 1, 1)
            raise CompileError("the program has no 'output' statement", last)
        return Program(self.source, self.dims, tuple(self.args), self.arg_nodes,
                       tuple(self.outputs), self.names, tuple(self.constraints))

    def bind(self, name: ast.Name, value: Any) -> None:
        if name.id in RESERVED:
            raise CompileError(f"'{name.id}' is a builtin and cannot be rebound", name.span)
        if name.id in self.bound_at or name.id in self.defs:
            first = self.bound_at.get(name.id) or self.defs[name.id].span
            raise CompileError(f"'{name.id}' is already bound (line {first.line}); "
                               "each name is bound once", name.span)
        self.bound_at[name.id] = name.span
        self.scope[name.id] = value

    def stmt_DimDecl(self, stmt: ast.DimDecl) -> None:
        for item in stmt.items:
            if item.value is not None and item.value > MAX_ELEMENTS:
                raise CompileError(f"dim {item.name.id} = {item.value} is too large "
                                   f"(sizes are limited to 2^53)", item.name.span)
            self.bind(item.name, item.value if item.value is not None else sym(item.name.id))
            self.dims[item.name.id] = item.value

    def stmt_ArgDecl(self, stmt: ast.ArgDecl) -> None:
        type_ = self.resolve_type(stmt.type)
        for name in stmt.names:
            node = make("arg", name=name.id, kind=stmt.kind, dtype=type_.dtype, shape=type_.shape)
            self.bind(name, node)
            self.args.append(ArgInfo(name.id, stmt.kind, type_, name.span))
            self.arg_nodes[name.id] = node
            self.names[node] = name.id

    def resolve_type(self, spec: ast.TypeSpec | None) -> TensorType:
        dtype = (spec.dtype if spec else None) or "f64"
        shape: list[Size] = []
        for item in (spec.shape or ()) if spec else ():
            if isinstance(item, int):
                if item > MAX_ELEMENTS:
                    raise CompileError(f"size {item} is too large (sizes are limited to 2^53)",
                                       spec.span)
                shape.append(item)
                continue
            if self.dims.get(item.id, "missing") == "missing":
                raise CompileError(f"unknown dim '{item.id}'; declare it with 'dim {item.id}'",
                                   item.span)
            value = self.dims[item.id]
            shape.append(value if value is not None else sym(item.id))
        type_ = TensorType(self.dtype_override or dtype, tuple(shape))
        self.check_size(type_.shape, spec.span if spec else None)
        return type_

    def check_size(self, shape: tuple, span: Span | None) -> None:
        """Element counts must fit the native code's 64-bit size arithmetic with room
        to spare: a tensor of more than 2^53 elements is an error, not an overflow.
        Ranks are limited to NumPy's 64, so every value can be a NumPy array."""
        if len(shape) > MAX_RANK:
            raise CompileError(f"a tensor of rank {len(shape)}: ranks are limited to "
                               f"{MAX_RANK} (as in NumPy)", span)
        count = static_numel(shape)
        if count <= MAX_ELEMENTS and all(not isinstance(s, int) or s <= MAX_ELEMENTS
                                         for s in shape):
            return
        from chainrule.compiler.shapes import shape_str
        what = f"at least {count} elements" if count > MAX_ELEMENTS else "a size"
        raise CompileError(f"a tensor of shape {shape_str(shape)} has {what}: "
                           "sizes and element counts are limited to 2^53", span)

    def stmt_Assign(self, stmt: ast.Assign) -> None:
        value = self.expr(stmt.value)
        if isinstance(value, (list, tuple, bool)):
            what = {list: "a list", tuple: "a tuple", bool: "a boolean"}[type(value)]
            raise CompileError(f"expected a value here, got {what}", stmt.value.span)
        if isinstance(value, Node) and value.op != "arg" and value not in self.names:
            self.names[value] = stmt.target.id
        self.bind(stmt.target, value)

    def stmt_Def(self, stmt: ast.Def) -> None:
        if stmt.name.id in RESERVED:
            raise CompileError(f"'{stmt.name.id}' is a builtin and cannot be redefined", stmt.name.span)
        if stmt.name.id in self.bound_at or stmt.name.id in self.defs:
            raise CompileError(f"'{stmt.name.id}' is already bound", stmt.name.span)
        seen = set()
        for p in stmt.params:
            if p.id in seen:
                raise CompileError(f"parameter '{p.id}' is repeated", p.span)
            if p.id in RESERVED:
                raise CompileError(f"'{p.id}' is a builtin and cannot be a parameter name", p.span)
            seen.add(p.id)
        self.check_def_body(stmt, stmt.body, seen)
        self.defs[stmt.name.id] = stmt

    def check_def_body(self, d: ast.Def, e: Any, params: set[str]) -> None:
        """Resolve the body's names now, so mistakes are found even if `d` is never called."""
        stack = [e]
        while stack:
            node = stack.pop()
            if isinstance(node, ast.Name) and node.id not in params:
                self.lookup(node)
            elif isinstance(node, ast.Call):
                if node.func == d.name.id:
                    raise CompileError(f"'{d.name.id}' calls itself; recursion is not allowed",
                                       node.func_span)
                if node.func not in BUILTINS and node.func not in self.defs:
                    self.unknown_function(node)
                stack.extend(node.args)
                stack.extend(k.value for k in node.kwargs)
            elif hasattr(node, "__dataclass_fields__"):
                for f in node.__dataclass_fields__:
                    child = getattr(node, f)
                    if isinstance(child, tuple):
                        stack.extend(c for c in child if hasattr(c, "__dataclass_fields__"))
                    elif hasattr(child, "__dataclass_fields__") and not isinstance(child, Span):
                        stack.append(child)

    def stmt_Output(self, stmt: ast.Output) -> None:
        if self.outputs is not None:
            raise CompileError("only one 'output' statement is allowed", stmt.span)
        outputs = []
        for i, name in enumerate(stmt.names):
            value = self.lookup(name)
            if isinstance(value, float):
                value = ops.const(value, self.dtype_override or "f64")
            if not isinstance(value, Node):
                raise CompileError(f"'{name.id}' is a dim, not a value", name.span)
            if value.dtype == "bool":
                raise CompileError(f"'{name.id}' is a mask (a comparison); outputs must be values",
                                   name.span)
            if i == 0 and value.shape != ():
                raise CompileError(
                    f"the first output '{name.id}' must be a scalar (its gradient is taken), "
                    f"but it has shape {value.type}; reduce it, e.g. with sum() or mean()",
                    name.span)
            outputs.append((name.id, value))
        self.outputs = outputs

    # ------------------------------------------------------------ expressions
    def lookup(self, name: ast.Name) -> Any:
        if name.id in self.scope:
            return self.scope[name.id]
        if name.id in CONSTANTS:
            return CONSTANTS[name.id]
        if name.id in BUILTINS or name.id in self.defs:
            raise CompileError(f"'{name.id}' is a function; call it with arguments", name.span)
        if name.id in self.later:
            raise CompileError(f"'{name.id}' is used before it is bound (line "
                               f"{self.later[name.id].line})", name.span)
        raise CompileError(f"unknown name '{name.id}'", name.span)

    def unknown_function(self, call: ast.Call) -> None:
        if call.func in self.later_defs and call.func not in self.scope:
            raise CompileError(f"'{call.func}' is used before it is defined (line "
                               f"{self.later[call.func].line})", call.func_span)
        if call.func in self.later or call.func in self.scope:
            raise CompileError(f"'{call.func}' is not a function", call.func_span)
        raise CompileError(f"unknown function '{call.func}'", call.func_span)

    def expr(self, e: Any) -> Any:
        if self.depth >= MAX_NESTING:
            raise CompileError(f"expression nested too deeply (limit {MAX_NESTING} levels)",
                               e.span)
        self.count_work(1, e)
        self.depth += 1
        try:
            v = getattr(self, "expr_" + type(e).__name__)(e)
        finally:
            self.depth -= 1
        if isinstance(v, Node) and v.shape:
            self.check_size(v.shape, e.span)
        return v

    def count_work(self, steps: int, e: Any) -> None:
        self.work += steps
        if self.work > MAX_WORK:
            raise CompileError(f"the program is too large: lowering it takes more than "
                               f"{MAX_WORK} steps (every def call is inlined, so a def that "
                               "calls another def twice doubles its size)", e.span)

    def value(self, e: Any) -> Node | float:
        """An expression used as an operand: a tensor or a number, never a mask or a list."""
        v = self.expr(e)
        if isinstance(v, Node) and v.dtype == "bool":
            raise CompileError("a comparison gives a mask, usable only as where's first argument",
                               e.span)
        if isinstance(v, int):  # a constant dim used as a number
            return float(v)
        if isinstance(v, (Node, float)) and not isinstance(v, bool):
            return v
        what = {list: "a list", tuple: "a tuple", bool: "a boolean", Sym: "a symbolic dim"}
        raise CompileError(f"expected a value here, got {what.get(type(v), 'something else')}",
                           e.span)

    def expr_Number(self, e: ast.Number) -> float:
        return float(e.text)  # correctly rounded; an integer beyond the f64 range is inf

    def expr_Bool(self, e: ast.Bool) -> bool:
        return e.value

    def expr_Name(self, e: ast.Name) -> Any:
        return self.lookup(e)

    def expr_ListExpr(self, e: ast.ListExpr) -> list:
        return [self.expr(i) for i in e.items]

    def expr_TupleExpr(self, e: ast.TupleExpr) -> tuple:
        return tuple(self.expr(i) for i in e.items)

    def expr_Neg(self, e: ast.Neg) -> Node | float:
        chain = [e]  # ---x: a loop, not a recursion
        while isinstance(chain[-1].operand, ast.Neg):
            chain.append(chain[-1].operand)
        self.count_work(len(chain), e)
        v = self.value(chain[-1].operand)
        for neg in reversed(chain):
            v = -v if isinstance(v, float) else self.located(neg.span, ops.neg, v)
        return v

    def expr_BinOp(self, e: ast.BinOp) -> Node | float:
        if e.op == "^":  # a^b^c^...: right-associative, walked along the right
            chain = [e]
            while isinstance(chain[-1].right, ast.BinOp) and chain[-1].right.op == "^":
                chain.append(chain[-1].right)
            self.count_work(len(chain), e)
            acc = self.value(chain[-1].right)
            for node in reversed(chain):
                acc = self.binop(node, self.value(node.left), acc)
            return acc
        chain = [e]  # a + b - c * ...: left-associative, walked along the left
        while isinstance(chain[-1].left, ast.BinOp) and chain[-1].left.op in _LEFT_ASSOCIATIVE:
            chain.append(chain[-1].left)
        self.count_work(len(chain), e)
        acc = self.value(chain[-1].left)
        for node in reversed(chain):
            acc = self.binop(node, acc, self.value(node.right))
        return acc

    def binop(self, e: ast.BinOp, a: Node | float, b: Node | float) -> Node | float:
        """`a op b` for the operator of `e` (operands already lowered)."""
        if e.op == "@":
            from chainrule.compiler.indexing import matmul
            out = self.located(e.span, matmul, a, b)
        elif isinstance(a, float) and isinstance(b, float):
            from chainrule.compiler.builtins import _fold
            return _fold(_BINARY[e.op], a, b)
        else:
            out = self.located(e.span, ops.apply, _BINARY[e.op], a, b)
        if out.shape:  # the links of a chain do not pass through expr()
            self.check_size(out.shape, e.span)
        return out

    def expr_Compare(self, e: ast.Compare) -> Node:
        a, b = self.value(e.left), self.value(e.right)
        if isinstance(a, float) and isinstance(b, float):
            a = ops.const(a, self.dtype_override or "f64")
        return self.located(e.span, ops.compare, _COMPARE[e.op], a, b)

    def expr_Transpose(self, e: ast.Transpose) -> Node:
        v = self.value(e.value)
        return v if isinstance(v, float) else ops.transpose(v)

    def expr_Index(self, e: ast.Index) -> Node:
        v = self.value(e.value)
        if isinstance(v, float):
            raise CompileError("a number cannot be indexed", e.value.span)
        return lower_index(self, v, e)

    def expr_Call(self, e: ast.Call) -> Any:
        if e.func in self.defs:
            return self.inline(e)
        if e.func not in BUILTINS:
            self.unknown_function(e)
        spec = BUILTINS[e.func]
        lo, hi = spec.nargs
        if not lo <= len(e.args) <= hi:
            want = f"{lo}" if lo == hi else f"{lo} to {hi}"
            raise CompileError(f"{e.func}() takes {want} argument{'s' * (hi != 1)}, "
                               f"got {len(e.args)}", e.func_span)
        kwargs, kw_spans = {}, {}
        for kw in e.kwargs:
            if kw.name not in spec.keywords:
                allowed = ", ".join(spec.keywords) or "none"
                raise CompileError(f"{e.func}() has no keyword '{kw.name}' (it takes: {allowed})",
                                   kw.span)
            if kw.name in kwargs:
                raise CompileError(f"keyword '{kw.name}' given twice", kw.span)
            kwargs[kw.name], kw_spans[kw.name] = self.expr(kw.value), kw.value.span
        args = [self.expr(a) for a in e.args]
        lower = spec.lower
        if self.dtype_override and e.func in ("f32", "f64"):
            lower = BUILTINS[self.dtype_override].lower
        try:
            return lower(args, kwargs)
        except ArgError as err:
            span = e.span
            if isinstance(err.index, int) and err.index < len(e.args):
                span = e.args[err.index].span
            elif isinstance(err.index, str):
                span = kw_spans.get(err.index, span)
            raise CompileError(str(err), span) from None
        except ShapeError as err:
            raise CompileError(f"{e.func}(): {err}", e.span) from None

    def inline(self, e: ast.Call) -> Any:
        d = self.defs[e.func]
        if e.kwargs:
            raise CompileError(f"{e.func}() takes no keyword arguments", e.kwargs[0].span)
        if len(e.args) != len(d.params):
            raise CompileError(f"{e.func}() takes {len(d.params)} argument"
                               f"{'s' * (len(d.params) != 1)}, got {len(e.args)}", e.func_span)
        values = [self.expr(a) for a in e.args]
        key = (e.func, tuple(_identity(v) for v in values))
        if key in self.inlined:  # the same def on the same values: the same result
            return self.inlined[key][1]
        saved = self.scope
        self.scope = ChainMap({p.id: v for p, v in zip(d.params, values)}, saved)
        try:
            result = self.expr(d.body)
            self.inlined[key] = (values, result)  # values keep the nodes (and their ids) alive
            return result
        except CompileError as err:
            # located in the body; say which call it came from (a def may be called often)
            raise CompileError(f"{err.message} (in {e.func}() called at line {e.span.line}, "
                               f"column {e.span.column})", err.span) from None
        finally:
            self.scope = saved

    def located(self, span: Span, fn, *args) -> Any:
        """Run a node constructor; a broken shape rule becomes an error at `span`."""
        try:
            return fn(*args)
        except ShapeError as err:
            raise CompileError(str(err), span) from None

    def require_at_runtime(self, size: Size, minimum: int, reason: str) -> None:
        if isinstance(size, int):
            return
        if all(c.size != size or c.minimum != minimum for c in self.constraints):
            self.constraints.append(Constraint(size, minimum, reason))


def _identity(v: Any) -> Any:
    """A hashable stand-in for a def argument: nodes by identity (they are interned)."""
    if isinstance(v, Node):
        return ("node", id(v))
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, tuple(_identity(x) for x in v))
    return (type(v).__name__, v if not isinstance(v, float) else v.hex())


def lower(module: ast.Module, source: Source, dtype: str | None = None) -> Program:
    """Lower a parsed module to a typed Program; `dtype` overrides every declared dtype.

    Runs on a large stack, so expressions nested up to MAX_NESTING levels lower
    whoever the caller is (the API, the CLI, a test)."""
    from chainrule.compiler.deepstack import run_deep
    try:
        return run_deep(_Lowerer(module, source, dtype).run, module)
    except CompileError as err:
        raise err.with_source(source)
