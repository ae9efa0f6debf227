"""Numerical differentiation for the tests, independent of the compiler.

Central differences refined by one Richardson step,
    D(h) = (f(x+h) - f(x-h)) / 2h,   R = (4 D(h/2) - D(h)) / 3,
have truncation error O(h^4) instead of O(h^2), so with h = 1e-3 (relative)
both truncation (~1e-12) and rounding (~eps/h ~ 1e-13) stay far below the
1e-6 relative tolerance the tests ask for. Inputs must lie further than h
from any kink of the function being differentiated.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

H_REL = 1e-3


def numerical_grad(f: Callable[..., float], args: Mapping[str, np.ndarray], name: str,
                   h_rel: float = H_REL) -> np.ndarray:
    """d f(**args) / d args[name], element by element, in float64."""
    base = {k: np.array(v, dtype=np.float64) for k, v in args.items()}
    x = base[name]
    grad = np.zeros_like(x)

    def at(idx, delta: float) -> float:
        xp = x.copy()
        xp[idx] += delta
        return float(f(**{**base, name: xp}))

    for idx in np.ndindex(x.shape):
        h = h_rel * max(1.0, abs(float(x[idx])))
        d_h = (at(idx, h) - at(idx, -h)) / (2 * h)
        d_half = (at(idx, h / 2) - at(idx, -h / 2)) / h
        grad[idx] = (4 * d_half - d_h) / 3
    return grad


def assert_grad_close(analytic, numeric, rtol: float = 1e-6, what: str = "") -> None:
    """Element by element |a - n| <= rtol * max(|a|, |n|), with a tiny absolute
    floor (relative to the largest entry) for entries that are (nearly) zero."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    assert a.shape == n.shape, f"{what}: gradient shape {a.shape}, expected {n.shape}"
    assert np.all(np.isfinite(a)), f"{what}: non-finite gradient {a}"
    floor = 1e-9 * max(1.0, float(np.max(np.abs(n))) if n.size else 1.0)
    err = np.abs(a - n)
    bound = rtol * np.maximum(np.abs(a), np.abs(n)) + floor
    bad = err > bound
    assert not np.any(bad), (
        f"{what}: gradient differs from finite differences\n"
        f"analytic:\n{a}\nnumeric:\n{n}\nrelative error: "
        f"{np.max(err / np.maximum(np.maximum(np.abs(a), np.abs(n)), 1e-300))}")
