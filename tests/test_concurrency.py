"""Concurrency and the disk cache under stress, at the level of `chainrule.compile`:
many threads compiling the same and different programs at once, several processes
sharing one cache directory, a full or read-only cache, and truncated, tampered or
swapped entries (each carries a sha256 checksum and is rebuilt, never executed
unverified). tests/test_cache.py covers the ObjectCache itself.

Each scenario runs in fresh processes: a crash fails the test, and first-use
initialisation (lazy imports, LLVM set-up) is exercised too.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import chainrule

ROOT = Path(__file__).resolve().parent.parent

PROGRAMS = [
    f"dim N\nparam x: [N]\ninput y: [N]\nloss = sum(sin(x) * {i} + x * y) + max(x) + "
    f"logsumexp(x * {i + 1})\noutput loss\n" for i in range(6)
] + ["dim B\ndim D = 3\ninput x: [B, D]\nparam W: [D, 2]\nparam b: [2]\n"
     "loss = mean(logsumexp(x @ W + b, axis=1))\noutput loss\n",
     "param a\nparam b\nloss = a * b + sqrt(a) + sigmoid(b)\noutput loss\n"]

WORKER = textwrap.dedent(r"""
    import json, sys, threading, warnings, time, os
    import numpy as np
    import chainrule
    from chainrule.runtime import jit
    programs = json.loads(sys.argv[1])
    backend, threads, start_at = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    while time.time() < start_at:           # processes start compiling together
        time.sleep(0.001)
    barrier = threading.Barrier(threads)
    results, errors = {}, []

    def args_for(k):
        rng = np.random.default_rng(k)
        src = programs[k]
        if "param a" in src:
            return {"a": 2.0, "b": 0.5}
        if "dim B" in src:
            return {"x": rng.normal(size=(5, 3)), "W": rng.normal(size=(3, 2)),
                    "b": rng.normal(size=2)}
        return {"x": rng.normal(size=7), "y": rng.normal(size=7)}

    def work(t):
        try:
            barrier.wait()
            k = (t // 2) % len(programs) if t % 2 else 0   # half on program 0: the same one
            fn = chainrule.compile(programs[k], backend=backend)
            value, grads = fn.value_and_grad(**args_for(k))
            results[t] = [k, float(value), {n: np.asarray(g).tolist() for n, g in grads.items()}]
        except BaseException as err:
            import traceback
            errors.append(traceback.format_exc())

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    print(json.dumps({"results": results, "errors": errors, "stats": jit.stats
                      if "jit" in dir() else {},
                      "warnings": [str(w.message) for w in caught]}))
""")


def spawn(backend: str, threads: int, cache: Path | None, start_at: float = 0.0,
          extra_env: dict | None = None, preexec=None) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("CHAINRULE_CACHE", None)
    if cache is None:
        env["CHAINRULE_CACHE"] = "0"
    else:
        env["CHAINRULE_CACHE_DIR"] = str(cache)
    env.update(extra_env or {})
    return subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(PROGRAMS), backend,
                             str(threads), str(start_at)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=preexec)


def finish(proc: subprocess.Popen, timeout: float = 600) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"exit status {proc.returncode}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    report = json.loads(out.strip().splitlines()[-1])
    assert not report["errors"], report["errors"][0]
    return report


@pytest.fixture(scope="module")
def expected() -> dict:
    """Every program's value and gradient from the NumPy backend, in this process."""
    out = {}
    for k, src in enumerate(PROGRAMS):
        fn = chainrule.compile(src, backend="numpy")
        rng = np.random.default_rng(k)
        if "param a" in src:
            args = {"a": 2.0, "b": 0.5}
        elif "dim B" in src:
            args = {"x": rng.normal(size=(5, 3)), "W": rng.normal(size=(3, 2)),
                    "b": rng.normal(size=2)}
        else:
            args = {"x": rng.normal(size=7), "y": rng.normal(size=7)}
        value, grads = fn.value_and_grad(**args)
        out[k] = (float(value), {n: np.asarray(g) for n, g in grads.items()})
    return out


def check_results(report: dict, expected: dict, threads: int) -> None:
    assert len(report["results"]) == threads
    for k, value, grads in report["results"].values():
        want_value, want_grads = expected[k]
        assert value == pytest.approx(want_value, rel=1e-12, abs=1e-12)
        for name, g in grads.items():
            np.testing.assert_allclose(g, want_grads[name], rtol=1e-11, atol=1e-12)


def entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.crobj"))


# -------------------------------------------------------------------- threads
@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_many_threads_compile_same_and_different_programs(backend, expected, tmp_path):
    """16 threads released together in a fresh process: half compile one program,
    the others 8 different ones; every result equals the sequential NumPy one."""
    report = finish(spawn(backend, 16, tmp_path / "cache"))
    check_results(report, expected, 16)


def test_threads_call_one_function_with_different_sizes():
    """Concurrent calls of one native function, each with its own batch size (each
    thread has its own workspace of its own size)."""
    fn = chainrule.compile(PROGRAMS[6], backend="llvm")
    ref = chainrule.compile(PROGRAMS[6], backend="numpy")
    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(3, 2)), rng.normal(size=2)
    inputs = [rng.normal(size=(n, 3)) for n in (1, 3, 17, 64, 257, 1000)]
    want = [ref.value_and_grad(x=x, W=W, b=b) for x in inputs]
    errors: list = []

    def work(i: int) -> None:
        try:
            for _ in range(50):
                j = (i + _) % len(inputs)
                value, grads = fn.value_and_grad(x=inputs[j], W=W, b=b)
                assert value == pytest.approx(want[j][0], rel=1e-12)
                np.testing.assert_allclose(grads["W"], want[j][1]["W"], rtol=1e-11, atol=1e-13)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    pool = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors, errors[0]


# ------------------------------------------------------------------ processes
def test_processes_share_one_cache_directory(expected, tmp_path):
    """Four processes compile the same programs into one empty cache at the same
    moment; afterwards a fifth process finds every program on disk (no build)."""
    cache = tmp_path / "shared"
    start = time.time() + 3.0  # after every interpreter has started
    procs = [spawn("llvm", 8, cache, start) for _ in range(4)]
    reports = [finish(p) for p in procs]
    for report in reports:
        check_results(report, expected, 8)
    assert not list(cache.glob(".tmp-*")), "temporary files must be renamed or removed"
    assert entries(cache)
    again = finish(spawn("llvm", 8, cache))
    check_results(again, expected, 8)
    assert again["stats"]["builds"] == 0, again["stats"]
    assert again["stats"]["disk_hits"] > 0


# ---------------------------------------------------------------- bad entries
def _flip(path: Path, where: float) -> None:
    data = bytearray(path.read_bytes())
    i = min(len(data) - 1, int(len(data) * where))
    data[i] ^= 0x40
    path.write_bytes(bytes(data))


def test_truncated_tampered_and_swapped_entries_are_rebuilt(expected, tmp_path):
    cache = tmp_path / "cache"
    finish(spawn("llvm", 4, cache))
    files = entries(cache)
    assert len(files) >= 4
    blobs = [p.read_bytes() for p in files]
    for i, path in enumerate(files):
        kind = i % 5
        if kind == 0:
            path.write_bytes(blobs[i][: len(blobs[i]) // 2])          # truncated write
        elif kind == 1:
            _flip(path, 0.6)                                          # a flipped bit
        elif kind == 2:
            path.write_bytes(blobs[(i + 1) % len(blobs)])             # another key's entry
        elif kind == 3:
            path.write_bytes(b"")                                     # empty file
        else:
            _flip(path, 0.01)                                         # a damaged header
    (cache / ".tmp-leftover.crobj").write_bytes(b"garbage of a killed writer")
    (cache / "not-an-entry.txt").write_text("hello")
    report = finish(spawn("llvm", 4, cache))
    check_results(report, expected, 4)
    assert report["stats"]["builds"] > 0, "damaged entries are rebuilt, not loaded"
    again = finish(spawn("llvm", 4, cache))
    check_results(again, expected, 4)
    assert again["stats"]["builds"] == 0, "the rebuilt entries were stored again"


# -------------------------------------------------------- unwritable caches
def test_cache_on_a_read_only_filesystem(expected):
    """/proc cannot hold directories, even for root: the cache is a no-op (one warning)."""
    report = finish(spawn("llvm", 4, Path("/proc/chainrule-test-cache")))
    check_results(report, expected, 4)
    assert report["stats"]["builds"] > 0
    assert any("not writable" in w for w in report["warnings"])


def _file_size_limit():  # runs in the child before exec
    import resource
    import signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_cache_on_a_full_disk(expected, tmp_path):
    """Writes fail part-way (RLIMIT_FSIZE: the kernel refuses to grow files past 4 kB,
    like a full disk): the programs still compile and run, nothing partial is left."""
    cache = tmp_path / "full"
    report = finish(spawn("llvm", 4, cache, preexec=_file_size_limit))
    check_results(report, expected, 4)
    assert any("not writable" in w for w in report["warnings"]), report["warnings"]
    for path in cache.glob("*"):
        assert not path.name.startswith(".tmp-"), "partial writes are removed"
    report = finish(spawn("llvm", 4, cache))  # a later process with room: still correct
    check_results(report, expected, 4)
