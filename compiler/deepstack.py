"""Running the recursive compiler stages on programs nested thousands deep.

Lowering and code generation walk expressions recursively (that keeps them
simple). A program of 10,000 nested parentheses needs tens of thousands of
frames: this runs a stage in a helper thread with a large stack and a raised
recursion limit, so deep programs compile instead of dying with RecursionError
(or overflowing the C stack on Pythons that use it for Python calls).
"""
from __future__ import annotations

import sys
import threading
from typing import Any, Callable

STACK_BYTES = 512 * 1024 * 1024  # reserved address space; pages are touched only if used
RECURSION_LIMIT = 400_000

_lock = threading.Lock()
_local = threading.local()
_active = 0
_saved_limit = 0


def run_deep(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """fn(*args, **kwargs) on a big stack; exceptions propagate to the caller."""
    global _active, _saved_limit
    if getattr(_local, "deep", False):  # already on a big stack: no second thread
        return fn(*args, **kwargs)
    outcome: dict[str, Any] = {}

    def target() -> None:
        _local.deep = True
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as err:  # re-raised in the caller's thread
            outcome["error"] = err

    with _lock:
        if _active == 0:
            _saved_limit = sys.getrecursionlimit()
            sys.setrecursionlimit(max(_saved_limit, RECURSION_LIMIT))
        _active += 1
        previous = threading.stack_size(STACK_BYTES)
        try:
            worker = threading.Thread(target=target, name="chainrule-compile")
            worker.start()
        finally:
            threading.stack_size(previous)
    try:
        worker.join()
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                sys.setrecursionlimit(_saved_limit)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
