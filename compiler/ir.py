"""The typed graph IR: immutable, hash-consed nodes and the primitive registry.

A `Node` is one primitive applied to input nodes with constant attributes.
Nodes are interned: building the same (op, inputs, attrs) twice gives the same
object, so common subexpressions are shared for free (as in tinygrad) and the
forward program, its adjoint and every rewrite live in one graph.

A `Primitive` holds everything about one operation in one place: its shape
rule, its NumPy reference, its vector-Jacobian product written in IR and,
for elementwise operations, its scalar LLVM emission.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from chainrule.compiler.shapes import Shape, ShapeError, shape_str

FLOAT_DTYPES = ("f32", "f64")


@dataclass(frozen=True)
class TensorType:
    dtype: str  # "f32", "f64" or "bool" (masks from comparisons)
    shape: Shape

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        return self.dtype if not self.shape else f"{self.dtype}{shape_str(self.shape)}"


def _attr_key(value: Any) -> Any:
    # floats by bit pattern so that -0.0 and 0.0 (and NaNs) never merge
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, tuple):
        return tuple(_attr_key(v) for v in value)
    return value


class Node:
    """One primitive application. Immutable and interned; compare by identity."""

    __slots__ = ("op", "inputs", "attrs", "type", "__weakref__")
    _interned: "weakref.WeakValueDictionary[tuple, Node]" = weakref.WeakValueDictionary()

    op: str
    inputs: tuple["Node", ...]
    attrs: tuple[tuple[str, Any], ...]
    type: TensorType

    def __new__(cls, op: str, inputs: tuple["Node", ...], attrs: tuple, type_: TensorType):
        key = (op, tuple(id(i) for i in inputs), _attr_key(attrs), type_)
        node = cls._interned.get(key)
        if node is None:
            node = object.__new__(cls)
            object.__setattr__(node, "op", op)
            object.__setattr__(node, "inputs", inputs)
            object.__setattr__(node, "attrs", attrs)
            object.__setattr__(node, "type", type_)
            cls._interned[key] = node
        return node

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("IR nodes are immutable")

    def attr(self, name: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == name:
                return v
        return default

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def shape(self) -> Shape:
        return self.type.shape

    @property
    def prim(self) -> "Primitive":
        return PRIMITIVES.get(self.op) or registry()[self.op]

    def __repr__(self) -> str:
        attrs = ", ".join(f"{k}={v}" for k, v in self.attrs)
        return f"<{self.op}{'(' + attrs + ')' if attrs else ''}: {self.type}>"


@dataclass
class Primitive:
    """Everything about one operation, declared once.

    - `infer(types, attrs) -> TensorType` is the shape/dtype rule (raises ShapeError);
    - `evaluate(values, attrs, dims) -> ndarray` is the NumPy reference;
    - `vjp(node, g) -> [cotangent or None per input]` builds the pullback in IR;
    - `emit(builder, args, node)` is the scalar LLVM emission of an
      elementwise primitive (None for the structured ones, which the
      scheduler lowers to loops itself).
    `family` groups primitives for the scheduler: "elementwise", "reduce",
    "layout", "matmul" or "source".
    """

    name: str
    family: str
    infer: Callable[[Sequence[TensorType], dict], TensorType]
    evaluate: Callable[..., Any]
    vjp: Callable[["Node", "Node"], Sequence["Node | None"]] | None
    emit: Callable[..., Any] | None = None
    notation: str | None = None  # infix symbol for the printers, e.g. "+"
    derivative_free: bool = False  # true for masks, constants, sign: no cotangent flows
    extra: dict = field(default_factory=dict)


PRIMITIVES: dict[str, Primitive] = {}


def registry() -> dict[str, Primitive]:
    """All primitives; their families are imported on first use (a program loaded
    from the disk cache is called without ever needing them)."""
    if not PRIMITIVES:
        import chainrule.compiler.primitives  # noqa: F401  (each family registers itself)
    return PRIMITIVES


def register(prim: Primitive) -> Primitive:
    if prim.name in PRIMITIVES:
        raise ValueError(f"primitive {prim.name!r} registered twice")
    PRIMITIVES[prim.name] = prim
    return prim


def make(op: str, inputs: Iterable[Node] = (), **attrs: Any) -> Node:
    """Apply primitive `op`: check the shape rule and return the interned node."""
    inputs = tuple(inputs)
    prim = PRIMITIVES.get(op) or registry()[op]
    type_ = prim.infer([i.type for i in inputs], attrs)
    return Node(op, inputs, tuple(sorted(attrs.items())), type_)


def topo_order(roots: Iterable[Node]) -> list[Node]:
    """All nodes reachable from `roots`, every node after its inputs (iterative DFS)."""
    order: list[Node] = []
    seen: set[int] = set()
    for root in roots:
        if id(root) in seen:
            continue
        stack: list[tuple[Node, int]] = [(root, 0)]
        seen.add(id(root))
        while stack:
            node, i = stack[-1]
            if i < len(node.inputs):
                stack[-1] = (node, i + 1)
                child = node.inputs[i]
                if id(child) not in seen:
                    seen.add(id(child))
                    stack.append((child, 0))
            else:
                stack.pop()
                order.append(node)
    return order


def require(cond: bool, message: str) -> None:
    """Raise the ShapeError that lowering turns into a located CompileError."""
    if not cond:
        raise ShapeError(message)
