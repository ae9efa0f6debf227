"""Gradient checking against central finite differences (numerical differentiation).

For each param, the analytic gradient is compared with central differences
(f(x+h) - f(x-h)) / 2h: element by element for small params, along random
directions for large ones (as JAX's check_grads does). The step balances
truncation error (~h^2) against rounding error (~eps/h): h = eps^(1/3) * scale.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

TOLERANCE = {"f64": 1e-6, "f32": 2e-2}
ELEMENTWISE_LIMIT = 64   # params with at most this many elements are checked element by element
DIRECTIONS = 8           # random directions for larger params


@dataclass
class ParamCheck:
    name: str
    dtype: str
    max_abs_error: float
    max_rel_error: float
    checks: int
    tolerance: float

    @property
    def ok(self) -> bool:
        return bool(self.max_rel_error <= self.tolerance)


@dataclass
class CheckReport:
    value: float
    params: list[ParamCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.params)

    def table(self) -> str:
        rows = [("param", "dtype", "checks", "max abs err", "max rel err", "tol", "")]
        for p in self.params:
            rows.append((p.name, p.dtype, str(p.checks), f"{p.max_abs_error:.3e}",
                         f"{p.max_rel_error:.3e}", f"{p.tolerance:.0e}", "ok" if p.ok else "FAIL"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def check(fn, *, seed: int = 0, tolerance: float | None = None, **arrays: Any) -> CheckReport:
    """Compare `fn`'s gradient with central differences at `arrays`; returns a report."""
    rng = np.random.default_rng(seed)
    value, grads = fn.value_and_grad(**arrays)
    base = {a.name: np.array(arrays[a.name], dtype=np.float64 if a.type.dtype == "f64"
                             else np.float32) for a in fn.args}

    def loss(name: str, x: np.ndarray) -> float:
        out = fn.value(**{**base, name: x})
        return float(np.asarray(out[0] if isinstance(out, tuple) else out, dtype=np.float64))

    report = CheckReport(float(np.asarray(value[0] if isinstance(value, tuple) else value)))
    for name in fn.wrt:
        x = base[name]
        dtype = "f32" if x.dtype == np.float32 else "f64"
        eps = float(np.finfo(x.dtype).eps)
        g = np.asarray(grads[name], dtype=np.float64)
        if x.size <= ELEMENTWISE_LIMIT:
            directions = [np.eye(x.size)[i].reshape(x.shape) for i in range(x.size)]
        else:
            directions = [rng.standard_normal(x.shape) for _ in range(DIRECTIONS)]
        scale = max(1.0, float(np.max(np.abs(x))) if x.size else 1.0)
        abs_err = rel_err = 0.0
        for v in directions:
            v = v / max(float(np.max(np.abs(v))), 1e-300)
            h = eps ** (1 / 3) * scale
            plus, minus = (x + h * v).astype(x.dtype), (x - h * v).astype(x.dtype)
            fd = (loss(name, plus) - loss(name, minus)) / (2 * h)
            ad = float(np.sum(g * v))
            err = abs(fd - ad)
            floor = eps ** (2 / 3) * max(1.0, abs(report.value))
            abs_err = max(abs_err, err)
            rel_err = max(rel_err, err / max(abs(fd), abs(ad), floor))
        report.params.append(ParamCheck(name, dtype, abs_err, rel_err, len(directions),
                                        tolerance if tolerance is not None else TOLERANCE[dtype]))
    return report
