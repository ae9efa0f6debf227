"""Compiler stages: IR, primitives, shape checking, autodiff, passes, codegen."""
