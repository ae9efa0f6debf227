"""On-disk cache of compiled machine code, keyed by a hash the JIT computes.

Why a cache: LLVM's O3 pipeline costs far more than loading an object file,
so a second process compiling the same program should skip straight to
loading the bytes the first one emitted.

Why so defensive: the bytes in an entry are executed as machine code. An entry
is only returned after its header (magic, format version, lengths) and a
sha256 checksum over the key and payload check out; anything else -- a
truncated write, a flipped bit, an entry copied under another key -- is a miss
and is deleted.  Entries are written to a temporary file in the same directory
and renamed into place with ``os.replace``, so readers never observe a partial
entry.  The cache is an optimisation only: a missing, uncreatable, read-only or
full directory turns it into a no-op (with one ``warnings.warn``), never an
exception.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import tempfile
import threading
import warnings
from pathlib import Path

__all__ = ["ObjectCache", "default_cache", "cache_dir_from_env", "cache_enabled_from_env"]

MAGIC = b"CRJITOBJ"
FORMAT_VERSION = 1
# magic, format version, object length, extra length, sha256(key || object || extra)
_HEADER = struct.Struct("<8sIQQ32s")
_SUFFIX = ".crobj"
# Keys become file names: hex digests in practice, never path separators.
_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_OFF_VALUES = {"0", "off", "false", "no"}


def cache_dir_from_env() -> Path:
    """`$CHAINRULE_CACHE_DIR`, else `$XDG_CACHE_HOME/chainrule`, else `~/.cache/chainrule`."""
    explicit = os.environ.get("CHAINRULE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "chainrule"


def cache_enabled_from_env() -> bool:
    """False when `CHAINRULE_CACHE` is `0`/`off` (also `false`/`no`)."""
    return os.environ.get("CHAINRULE_CACHE", "1").strip().lower() not in _OFF_VALUES


def _digest(key: str, obj: bytes, extra: bytes) -> bytes:
    h = hashlib.sha256()
    h.update(key.encode("ascii"))
    h.update(b"\0")
    h.update(obj)
    h.update(extra)
    return h.digest()


class ObjectCache:
    """A directory of verified object-code entries, one file per key.

    Thread-safe: reads are independent file opens, writes go through unique
    temporary files, and the only shared state (whether writes still work) is
    guarded by a lock.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None, *,
                 enabled: bool | None = None) -> None:
        self.directory = Path(directory) if directory is not None else cache_dir_from_env()
        self.enabled = cache_enabled_from_env() if enabled is None else enabled
        self._writable = True
        self._warned = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        return f"ObjectCache({str(self.directory)!r}, {state})"

    # -- paths -----------------------------------------------------------
    def path_for(self, key: str) -> Path:
        """The file holding `key`'s entry (exists or not)."""
        if not _KEY_RE.match(key):
            raise ValueError(f"cache key must be 1-128 characters of [A-Za-z0-9_-], got {key!r}")
        return self.directory / f"{key}{_SUFFIX}"

    # -- reading ---------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        """The object bytes stored under `key`, or None on a miss."""
        entry = self.get_entry(key)
        return entry[0] if entry is not None else None

    def get_entry(self, key: str) -> tuple[bytes, bytes] | None:
        """`(object, extra)` stored under `key`, or None if absent or not verifiable."""
        if not self.enabled:
            return None
        path = self.path_for(key)
        try:
            with open(path, "rb") as f:
                blob = f.read()
        except OSError:
            # Absent, unreadable, or the directory is a file: all misses.
            return None
        entry = self._decode(key, blob)
        if entry is None:
            self._discard(path)
        return entry

    @staticmethod
    def _decode(key: str, blob: bytes) -> tuple[bytes, bytes] | None:
        if len(blob) < _HEADER.size:
            return None
        magic, version, obj_len, extra_len, digest = _HEADER.unpack_from(blob)
        if magic != MAGIC or version != FORMAT_VERSION:
            return None
        if len(blob) != _HEADER.size + obj_len + extra_len:
            return None
        obj = blob[_HEADER.size:_HEADER.size + obj_len]
        extra = blob[_HEADER.size + obj_len:]
        if _digest(key, obj, extra) != digest:
            return None
        return obj, extra

    @staticmethod
    def _discard(path: Path) -> None:
        try:
            path.unlink()
        except OSError:
            pass

    # -- writing ---------------------------------------------------------
    def put(self, key: str, data: bytes, extra: bytes = b"") -> bool:
        """Store `data` (and `extra`, e.g. the optimised IR) under `key`.

        Returns whether the entry was written; failures only warn (once).
        """
        path = self.path_for(key)
        if not self.enabled or not self._writable:
            return False
        header = _HEADER.pack(MAGIC, FORMAT_VERSION, len(data), len(extra),
                              _digest(key, data, extra))
        tmp_name: str | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=_SUFFIX, dir=self.directory)
            with os.fdopen(fd, "wb") as f:
                f.write(header)
                f.write(data)
                f.write(extra)
            os.replace(tmp_name, path)
            return True
        except OSError as exc:
            if tmp_name is not None:
                try:
                    os.unlink(tmp_name)
                except OSError:
                    pass
            self._disable_writes(exc)
            return False

    def _disable_writes(self, exc: OSError) -> None:
        with self._lock:
            self._writable = False
            if self._warned:
                return
            self._warned = True
        warnings.warn(
            f"chainrule: object cache at {self.directory} is not writable ({exc}); "
            "compiled code will not be cached on disk",
            RuntimeWarning,
            stacklevel=3,
        )

    def clear(self) -> int:
        """Delete every entry; returns how many were removed."""
        removed = 0
        try:
            paths = list(self.directory.glob(f"*{_SUFFIX}"))
        except OSError:
            return 0
        for p in paths:
            try:
                p.unlink()
                removed += 1
            except OSError:
                pass
        return removed


_instances: dict[tuple[str, bool], ObjectCache] = {}
_instances_lock = threading.Lock()


def default_cache() -> ObjectCache:
    """The process-wide cache for the current environment.

    The environment is re-read on every call (tests monkeypatch it); one
    instance per (directory, enabled) pair keeps the warn-once state.
    """
    ident = (str(cache_dir_from_env()), cache_enabled_from_env())
    with _instances_lock:
        inst = _instances.get(ident)
        if inst is None:
            inst = _instances[ident] = ObjectCache(ident[0], enabled=ident[1])
        return inst
