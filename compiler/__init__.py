"""Compiler stages: IR, primitives, shape checking, autodiff, passes, codegen."""
from chainrule.compiler import primitives  # noqa: F401  (fills the registry)
