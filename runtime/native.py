"""What every caller of the C ABI needs, JIT module or AOT library alike.

A per-thread workspace cache (concurrent calls never share scratch memory),
the meaning of the ABI's return codes, and result arrays allocated from
precompiled shapes (or the caller's out= buffers).
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from chainrule.compiler.shapes import shape_evaluator

#: The ABI's nonzero return codes (the C header lists the same table).
RETURN_CODES = {1: "a dim is negative or too small for the program's slices",
                2: "the workspace (work == NULL) could not be allocated",
                3: "the dims make an array or the workspace larger than 2^63 bytes"}
TOO_LARGE = 3  # also what NAME_work_size's -1 means


def check_return_code(rc: int, what: str) -> None:
    if rc:
        raise ValueError(f"{what} failed: {RETURN_CODES.get(rc, f'error code {rc}')}")


class Workspaces:
    """64-byte aligned scratch buffers, one per thread and size, reused across calls."""

    def __init__(self, work_size: Callable[..., int]):
        self.work_size = work_size
        self._local = threading.local()

    def get(self, dims: tuple[int, ...]) -> int:
        """The buffer's address, or 0 when the program needs none."""
        size = int(self.work_size(*dims))
        if size < 0:
            raise ValueError(f"dims {dims}: {RETURN_CODES[TOO_LARGE]}")
        if size == 0:
            return 0
        buffers = self._local.__dict__.setdefault("buffers", {})
        buf = buffers.get(size)
        if buf is None:
            if len(buffers) > 4:
                buffers.clear()
            raw = np.empty(size + 64, dtype=np.uint8)
            buf = buffers[size] = (raw, raw.ctypes.data + (-raw.ctypes.data) % 64)
        return buf[1]


class Results:
    """Result arrays of one kind (outputs or gradients) with precompiled shapes."""

    def __init__(self, declared):
        self.shapes = [(shape_evaluator(t.shape), np.float32 if t.dtype == "f32" else np.float64)
                       for _, t in declared]

    def allocate(self, dims: dict, given: list | None = None) -> list[np.ndarray]:
        """The caller's out= buffers where given, else fresh arrays."""
        if given is None:
            return [np.empty(shape(dims), dtype) for shape, dtype in self.shapes]
        return [b if b is not None else np.empty(shape(dims), dtype)
                for b, (shape, dtype) in zip(given, self.shapes)]
