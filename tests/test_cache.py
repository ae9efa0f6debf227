"""The on-disk object cache: verification, atomicity, graceful degradation."""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys
import textwrap
import uuid
import warnings
from pathlib import Path

import pytest
from llvmlite import ir

from chainrule.runtime import cache as cache_mod
from chainrule.runtime import jit
from chainrule.runtime.cache import ObjectCache, default_cache

F64 = ir.DoubleType()
KEY = "ab" * 32


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAINRULE_CACHE_DIR", str(tmp_path / "default-cache"))
    monkeypatch.delenv("CHAINRULE_CACHE", raising=False)


def add_ir(tag: str = "") -> str:
    """double add(double a, double b) { return a + b; }, unique per `tag`."""
    mod = ir.Module(name=f"add{tag}")
    fn = ir.Function(mod, ir.FunctionType(F64, [F64, F64]), name="add")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    b.ret(b.fadd(*fn.args))
    return str(mod)


def call_add(cm: jit.CompiledModule) -> float:
    return ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double, ctypes.c_double)(
        cm.address("add"))(1.0, 2.5)


def entries(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.crobj"))


# -- ObjectCache on its own --------------------------------------------------

def test_roundtrip_and_miss(tmp_path):
    c = ObjectCache(tmp_path)
    assert c.get(KEY) is None
    assert c.put(KEY, b"\x7fELF object", b"; ir")
    assert c.get(KEY) == b"\x7fELF object"
    assert c.get_entry(KEY) == (b"\x7fELF object", b"; ir")
    assert not list(tmp_path.glob(".tmp-*")), "temporary files must be renamed away"


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage", "other-key"])
def test_damaged_entry_is_a_miss_and_deleted(tmp_path, damage):
    c = ObjectCache(tmp_path)
    c.put(KEY, b"x" * 100, b"extra")
    path = c.path_for(KEY)
    blob = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(blob[:-7])
    elif damage == "flip":
        path.write_bytes(blob[:-10] + bytes([blob[-10] ^ 1]) + blob[-9:])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(blob)))
    else:  # a valid entry copied under another key
        c.path_for("cd" * 32).write_bytes(blob)
        path = c.path_for("cd" * 32)
        assert c.get("cd" * 32) is None
        assert not path.exists()
        return
    assert c.get(KEY) is None
    assert not path.exists()


def test_bad_key_rejected(tmp_path):
    with pytest.raises(ValueError):
        ObjectCache(tmp_path).path_for("../escape")


def test_uncreatable_directory_is_a_noop(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    c = ObjectCache(tmp_path / "file" / "sub")
    assert c.get(KEY) is None
    with pytest.warns(RuntimeWarning, match="not writable"):
        assert c.put(KEY, b"data") is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        assert c.put(KEY, b"data") is False
    assert c.get(KEY) is None


def test_full_disk_is_a_noop(tmp_path, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_mod.tempfile, "mkstemp", no_space)
    c = ObjectCache(tmp_path)
    with pytest.warns(RuntimeWarning):
        assert c.put(KEY, b"data") is False
    assert c.get(KEY) is None


def test_disabled_cache_does_nothing(tmp_path):
    c = ObjectCache(tmp_path, enabled=False)
    assert c.put(KEY, b"data") is False
    assert c.get(KEY) is None
    assert not any(tmp_path.iterdir())


def test_default_cache_reads_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAINRULE_CACHE_DIR", str(tmp_path / "a"))
    assert default_cache().directory == tmp_path / "a"
    assert default_cache() is default_cache()
    monkeypatch.delenv("CHAINRULE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache().directory == tmp_path / "xdg" / "chainrule"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache().directory == tmp_path / "home" / ".cache" / "chainrule"
    for off in ("0", "off", "OFF"):
        monkeypatch.setenv("CHAINRULE_CACHE", off)
        assert default_cache().enabled is False
    monkeypatch.setenv("CHAINRULE_CACHE", "1")
    assert default_cache().enabled is True


# -- the cache seen through compile_ir ---------------------------------------

def test_compile_ir_stores_and_reloads_from_disk(tmp_path):
    c = ObjectCache(tmp_path)
    text, parts = add_ir(uuid.uuid4().hex), ("cache-test",)
    built = jit.compile_ir(text, key_parts=parts, cache=c)
    assert built.source == "build" and len(entries(tmp_path)) == 1
    jit.clear_memory_cache()
    before = dict(jit.stats)
    loaded = jit.compile_ir(text, key_parts=parts, cache=c)
    assert loaded.source == "disk" and loaded is not built
    assert jit.stats["disk_hits"] == before["disk_hits"] + 1
    assert jit.stats["builds"] == before["builds"]
    assert call_add(loaded) == 3.5
    assert loaded.optimized_ir == built.optimized_ir


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupted_entry_is_rebuilt(tmp_path, damage):
    c = ObjectCache(tmp_path)
    text, parts = add_ir(uuid.uuid4().hex), ("corrupt-test",)
    jit.compile_ir(text, key_parts=parts, cache=c)
    [path] = entries(tmp_path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2] if damage == "truncate"
                     else blob[:100] + bytes([blob[100] ^ 0xFF]) + blob[101:])
    jit.clear_memory_cache()
    before = dict(jit.stats)
    cm = jit.compile_ir(text, key_parts=parts, cache=c)
    assert cm.source == "build"
    assert jit.stats["builds"] == before["builds"] + 1
    assert jit.stats["disk_hits"] == before["disk_hits"]
    assert call_add(cm) == 3.5
    assert c.get_entry(cm.key) is not None, "the rebuilt entry is stored again"


def test_uncreatable_cache_dir_still_compiles(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("CHAINRULE_CACHE_DIR", str(tmp_path / "file" / "sub"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cm = jit.compile_ir(add_ir(uuid.uuid4().hex), key_parts=("uncreatable",))
    assert call_add(cm) == 3.5


def test_read_only_cache_dir_still_compiles(tmp_path, monkeypatch):
    """chmod does not stop root, so this only checks nothing raises."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    monkeypatch.setenv("CHAINRULE_CACHE_DIR", str(ro))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cm = jit.compile_ir(add_ir(uuid.uuid4().hex), key_parts=("read-only",))
        assert call_add(cm) == 3.5
    finally:
        ro.chmod(0o700)


def test_cache_env_off_disables(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAINRULE_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("CHAINRULE_CACHE", "0")
    text, parts = add_ir(uuid.uuid4().hex), ("env-off",)
    jit.compile_ir(text, key_parts=parts)
    jit.clear_memory_cache()
    before = dict(jit.stats)
    cm = jit.compile_ir(text, key_parts=parts)
    assert cm.source == "build" and jit.stats["builds"] == before["builds"] + 1
    assert not (tmp_path / "c").exists()


_CHILD = textwrap.dedent("""
    import ctypes, sys
    from chainrule.runtime import jit
    cm = jit.compile_ir(sys.argv[1], key_parts=("subprocess-test",))
    add = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double, ctypes.c_double)(cm.address("add"))
    assert add(1.0, 2.5) == 3.5
    assert "@add" in cm.optimized_ir
    print(cm.source, jit.stats["builds"], jit.stats["disk_hits"])
""")


def test_second_process_gets_disk_hit(tmp_path):
    env = dict(os.environ, CHAINRULE_CACHE_DIR=str(tmp_path / "shared"), CHAINRULE_JIT_LOG="1")
    env.pop("CHAINRULE_CACHE", None)
    text = add_ir(uuid.uuid4().hex)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", _CHILD, text], env=env,
                              capture_output=True, text=True, timeout=120, check=True)

    first, second = run(), run()
    assert first.stdout.split() == ["build", "1", "0"]
    assert "chainrule.jit: build" in first.stderr
    assert second.stdout.split() == ["disk", "0", "1"]
    assert "chainrule.jit: disk-hit" in second.stderr
    assert len(entries(tmp_path / "shared")) == 1
