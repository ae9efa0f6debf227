"""The primitive registry, populated by importing each family."""
from chainrule.compiler.primitives import (elementwise, layout, linalg,  # noqa: F401
                                           reductions, sources)
