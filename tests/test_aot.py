"""Ahead-of-time libraries (`chainrule compile`): built, linked and called from C and C++.

The artifacts are tested as a C program uses them: a client generated from
each library's signature is compiled with the machine's gcc/g++ against the
generated header (with -Werror, so a wrong parameter type in the header
fails the build), reads its arguments from a binary file written here, and
writes its results to another; they must match the Python API. Symbols and
dependencies are checked with nm/ldd/objdump, `--cpu generic` code for
AVX-512 registers, and the examples of docs/embedding.md are built and run.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import chainrule
from chainrule.compiler import ops
from chainrule.compiler.ir import registry
from chainrule.compiler.shapes import eval_shape
from chainrule.runtime import aot, api
from chainrule.runtime.cli import main
from chainrule.runtime.library import LibraryError, load_library

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GCC, GXX = shutil.which("gcc"), shutil.which("g++")
C_TYPES = {"f32": "float", "f64": "double"}
NP = {"f32": np.float32, "f64": np.float64}

needs_gcc = pytest.mark.skipif(GCC is None, reason="gcc is not installed")
needs_gxx = pytest.mark.skipif(GXX is None, reason="g++ is not installed")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


# ------------------------------------------------------------------ libraries
@dataclass
class Lib:
    name: str
    dir: Path
    expr: Path
    dtype: str | None

    @property
    def so(self) -> Path:
        return self.dir / f"{self.name}.so"

    @property
    def h(self) -> Path:
        return self.dir / f"{self.name}.h"

    def python(self):
        """The same program through the Python API (JIT), the reference."""
        return chainrule.compile_file(self.expr, dtype=self.dtype)


SPECS = {  # key: (example, --dtype, --name)
    "neuron": ("neuron.expr", None, None),      # f64 scalars, no dims
    "mlp": ("mlp.expr", None, None),            # f32, symbolic batch B
    "mlp64": ("mlp.expr", "f64", "mlp64"),      # the same in f64
    "logreg": ("logreg.expr", None, None),      # f64, symbolic N, workspace
}


@pytest.fixture(scope="module")
def libs(tmp_path_factory):
    """Build each library once per module, on first use."""
    root = tmp_path_factory.mktemp("aot")
    built: dict[str, Lib] = {}

    def get(key: str) -> Lib:
        if key not in built:
            example, dtype, name = SPECS[key]
            if aot.find_linker() is None:
                pytest.skip("no linker on this machine")
            out = root / key
            written = aot.compile_library(EXAMPLES / example, out, name=name, dtype=dtype,
                                          emit=("so", "h", "o"))
            lib = Lib(name or Path(example).stem, out, EXAMPLES / example, dtype)
            assert [Path(p) for p in written] == [lib.so, out / f"{lib.name}.o", lib.h]
            built[key] = lib
        return built[key]

    return get


def arguments(sig, dims: dict, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {a.name: (0.5 * rng.standard_normal(eval_shape(a.type.shape, dims)))
            .astype(NP[a.type.dtype]) for a in sig.args}


def close(got, want, dtype: str, what: str) -> None:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    rtol = 1e-12 if dtype == "f64" else 1e-5
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=what)


# ------------------------------------------------------------------ C clients
CLIENT = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include "@NAME@.h"

static FILE *in_file;
@GLOBALS@
struct results {
    void *work;
    int rc_vg, rc_v;
@FIELDS@
};

static int64_t next_i64(void) {
    int64_t v;
    if (fread(&v, sizeof v, 1, in_file) != 1) exit(3);
    return v;
}

static void *take(size_t elem) {
    int64_t n = next_i64();
    void *p = malloc((size_t)n * elem + 1);
    if (p == NULL || fread(p, elem, (size_t)n, in_file) != (size_t)n) exit(3);
    return p;
}

static void *room(size_t elem, int64_t n) {
    void *p = calloc((size_t)n + 1, elem);
    if (p == NULL) exit(3);
    return p;
}

static void *aligned_work(void) {
    int64_t size = @NAME@_work_size(@DIMS@);
    void *p;
    if (size <= 0) return NULL;
    p = aligned_alloc(64, (size_t)(size + 63) / 64 * 64);
    if (p == NULL) exit(3);
    return p;
}

static void allocate(struct results *r) {
@ALLOCATE@
}

static void call(struct results *r) {
    r->rc_vg = @NAME@_value_and_grad(@CALL_VG@);
    r->rc_v = @NAME@_value(@CALL_V@);
}

static int same(const struct results *a, const struct results *b) {
    int ok = a->rc_vg == b->rc_vg && a->rc_v == b->rc_v;
@SAME@
    return ok;
}

static void write_results(FILE *f, const struct results *r) {
    int64_t rc[2];
    rc[0] = r->rc_vg;
    rc[1] = r->rc_v;
    fwrite(rc, sizeof rc[0], 2, f);
@WRITE@
}

static void *thread_main(void *arg) {
    int i;
    for (i = 0; i < 20; i++) call((struct results *)arg);
    return NULL;
}

int main(int argc, char **argv) {
    struct results single, threads[4];
    int64_t work_size, agree = 1;
    pthread_t ids[4];
    FILE *out;
    int t;
    if (argc != 4) return 3;
    in_file = fopen(argv[1], "rb");
    out = fopen(argv[2], "wb");
    if (in_file == NULL || out == NULL) return 3;
@READ@
    work_size = @NAME@_work_size(@DIMS@);
    allocate(&single);
    single.work = aligned_work();
    call(&single);
    if (strcmp(argv[3], "threads") == 0) {
        for (t = 0; t < 4; t++) {  /* three own workspaces, and one NULL */
            allocate(&threads[t]);
            threads[t].work = t == 3 ? NULL : aligned_work();
            if (pthread_create(&ids[t], NULL, thread_main, &threads[t]) != 0) return 3;
        }
        for (t = 0; t < 4; t++) pthread_join(ids[t], NULL);
        for (t = 0; t < 4; t++) agree = agree && same(&single, &threads[t]);
    }
    fwrite(&work_size, sizeof work_size, 1, out);
    fwrite(&agree, sizeof agree, 1, out);
    write_results(out, &single);
    fclose(out);
    puts(@NAME@_info());
    return 0;
}
"""


def client_source(sig, name: str) -> str:
    """A client for any library: the call spells out every argument with its C type."""
    dims = [f"d{i}" for i in range(len(sig.symbolic_dims))]
    args = [(f"a{i}", C_TYPES[a.type.dtype]) for i, a in enumerate(sig.args)]
    results = [(f"o{i}", C_TYPES[t.dtype]) for i, (_, t) in enumerate(sig.outputs)] + \
              [(f"g{i}", C_TYPES[t.dtype]) for i, (_, t) in enumerate(sig.grads)] + \
              [(f"v{i}", C_TYPES[t.dtype]) for i, (_, t) in enumerate(sig.outputs)]
    globals_ = "".join(f"static int64_t {d};\n" for d in dims) + \
        "".join(f"static const {t} *{a};\n" for a, t in args) + \
        "".join(f"static int64_t n_{r};\n" for r, _ in results)
    read = "".join(f"    {d} = next_i64();\n" for d in dims) + \
        "".join(f"    {a} = (const {t} *)take(sizeof(*{a}));\n" for a, t in args) + \
        "".join(f"    n_{r} = next_i64();\n" for r, _ in results)
    n_out = len(sig.outputs)
    outs, grads, vals = results[:n_out], results[n_out:len(results) - n_out], results[-n_out:]
    call_vg = ", ".join(dims + [a for a, _ in args] + [f"r->{r}" for r, _ in outs + grads]
                        + ["r->work"])
    call_v = ", ".join(dims + [a for a, _ in args] + [f"r->{r}" for r, _ in vals] + ["r->work"])
    text = CLIENT
    for key, value in {
        "GLOBALS": globals_,
        "FIELDS": "".join(f"    {t} *{r};\n" for r, t in results),
        "ALLOCATE": "".join(f"    r->{r} = ({t} *)room(sizeof(*r->{r}), n_{r});\n"
                            for r, t in results),
        "SAME": "".join(f"    ok = ok && memcmp(a->{r}, b->{r}, sizeof(*a->{r}) * n_{r}) == 0;\n"
                        for r, _ in results),
        "WRITE": "".join(f"    fwrite(r->{r}, sizeof(*r->{r}), (size_t)n_{r}, f);\n"
                         for r, _ in results),
        "READ": read, "CALL_VG": call_vg, "CALL_V": call_v,
        "DIMS": ", ".join(dims), "NAME": name,
    }.items():
        text = text.replace(f"@{key}@", value)
    return text


def build_client(lib: Lib, tmp_path: Path, lang: str) -> Path:
    compiler = {"c": GCC, "c++": GXX}[lang]
    if compiler is None:
        pytest.skip(f"no {'gcc' if lang == 'c' else 'g++'} on this machine")
    fn = load_library(lib.so)
    ext = "c" if lang == "c" else "cpp"
    source = tmp_path / f"client_{lib.name}.{ext}"
    source.write_text(client_source(fn.signature, lib.name))
    exe = tmp_path / f"client_{lib.name}_{ext}"
    std = ["-std=c11"] if lang == "c" else ["-std=c++17"]
    command = [compiler, *std, "-O1", "-Wall", "-Wextra", "-Werror", "-pedantic",
               "-Wno-unused-function", "-pthread", "-I", str(lib.dir), str(source),
               str(lib.so), f"-Wl,-rpath,{lib.dir}", "-o", str(exe)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return exe


def run_client(exe: Path, sig, dims: dict, arrays: dict, tmp_path: Path, mode="single"):
    """Returns (work_size, agree, rc_vg, rc_v, outputs, grads, values, info)."""
    inputs, results = tmp_path / "in.bin", tmp_path / "out.bin"
    counts = [int(np.prod(eval_shape(t.shape, dims))) for _, t in sig.outputs] + \
             [int(np.prod(eval_shape(t.shape, dims))) for _, t in sig.grads] + \
             [int(np.prod(eval_shape(t.shape, dims))) for _, t in sig.outputs]
    with open(inputs, "wb") as f:
        f.write(np.array([dims[d] for d in sig.symbolic_dims], np.int64).tobytes())
        for a in sig.args:
            data = np.ascontiguousarray(arrays[a.name], NP[a.type.dtype])
            f.write(np.int64(data.size).tobytes() + data.tobytes())
        f.write(np.array(counts, np.int64).tobytes())
    done = subprocess.run([str(exe), str(inputs), str(results), mode], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    raw = results.read_bytes()
    head = np.frombuffer(raw[:32], np.int64)
    pos, arrays_out = 32, []
    kinds = [t for _, t in sig.outputs] + [t for _, t in sig.grads] + [t for _, t in sig.outputs]
    for t, n in zip(kinds, counts):
        dt = np.dtype(NP[t.dtype])
        arrays_out.append(np.frombuffer(raw[pos:pos + n * dt.itemsize], dt)
                          .reshape(eval_shape(t.shape, dims)))
        pos += n * dt.itemsize
    assert pos == len(raw)
    n_out, n_grad = len(sig.outputs), len(sig.grads)
    return (int(head[0]), bool(head[1]), int(head[2]), int(head[3]), arrays_out[:n_out],
            arrays_out[n_out:n_out + n_grad], arrays_out[n_out + n_grad:],
            json.loads(done.stdout))


@pytest.mark.parametrize("key,dims", [("neuron", {}), ("mlp", {"B": 5}), ("mlp64", {"B": 5}),
                                      ("logreg", {"N": 7})])
@pytest.mark.parametrize("lang", ["c", "c++"])
def test_clients_match_the_python_api(libs, tmp_path, key, dims, lang):
    lib = libs(key)
    exe = build_client(lib, tmp_path, lang)
    reference = lib.python()
    sig = reference.signature
    arrays = arguments(sig, dims)
    size, _, rc_vg, rc_v, outputs, grads, values, info = run_client(exe, sig, dims, arrays,
                                                                    tmp_path)
    assert (rc_vg, rc_v) == (0, 0)
    value, want_grads = reference.value_and_grad(**arrays)
    dtype = sig.outputs[0][1].dtype
    assert dtype == (lib.dtype or {"mlp": "f32"}.get(key, "f64"))
    close(outputs[0], value, dtype, "output")
    close(values[0], value, dtype, "value-only output")
    for (name, _), got in zip(sig.grads, grads):
        close(got, want_grads[name], dtype, f"grad_{name}")
    assert info["name"] == lib.name and info["format"] == aot.INFO_FORMAT
    assert info["signature"]["args"] == json.loads(json.dumps(sig.to_json()))["args"]
    assert size >= 0


@needs_gcc
def test_four_threads_with_own_and_null_workspaces_agree(libs, tmp_path):
    lib = libs("mlp64")
    exe = build_client(lib, tmp_path, "c")
    reference = lib.python()
    dims = {"B": 16}
    arrays = arguments(reference.signature, dims, seed=3)
    size, agree, rc_vg, rc_v, outputs, grads, _, _ = run_client(
        exe, reference.signature, dims, arrays, tmp_path, mode="threads")
    assert size > 0, "the test needs a program that uses its workspace"
    assert (rc_vg, rc_v) == (0, 0)
    assert agree, "a thread's results differ from the single-threaded call"
    value, want = reference.value_and_grad(**arrays)
    close(outputs[0], value, "f64", "loss")
    for (name, _), got in zip(reference.signature.grads, grads):
        close(got, want[name], "f64", f"grad_{name}")


# ------------------------------------------------------------------ the artifact itself
@pytest.mark.parametrize("key", ["neuron", "mlp"])
def test_only_prefixed_symbols_and_no_python_dependency(libs, key):
    lib = libs(key)
    nm, ldd, objdump = tool("nm"), tool("ldd"), tool("objdump")
    listed = subprocess.run([nm, "-D", "--defined-only", str(lib.so)], capture_output=True,
                            text=True, check=True).stdout
    exported = {line.split()[-1] for line in listed.splitlines() if line.strip()}
    assert exported == {f"{lib.name}_{s}" for s in ("value_and_grad", "value", "work_size",
                                                    "info")}, listed
    undefined = subprocess.run([nm, "-D", "--undefined-only", str(lib.so)],
                               capture_output=True, text=True, check=True).stdout
    assert "Py" not in undefined and "_ZGV" not in undefined, undefined  # libc/libm only
    obj = subprocess.run([nm, "-g", "--defined-only", str(lib.dir / f"{lib.name}.o")],
                         capture_output=True, text=True, check=True).stdout
    assert all(line.split()[-1].startswith(lib.name + "_") for line in obj.splitlines()), obj
    deps = subprocess.run([ldd, str(lib.so)], capture_output=True, text=True).stdout
    assert "python" not in deps.lower() and "chainrule" not in deps and "LLVM" not in deps
    needed = re.findall(r"NEEDED\s+(\S+)", subprocess.run(
        [objdump, "-p", str(lib.so)], capture_output=True, text=True, check=True).stdout)
    assert set(needed) <= {"libc.so.6", "libm.so.6"}, needed


def _disassembly(path: Path) -> str:
    return subprocess.run([tool("objdump"), "-d", str(path)], capture_output=True, text=True,
                          check=True).stdout


def test_generic_cpu_has_no_avx512(tmp_path):
    if aot.find_linker() is None:
        pytest.skip("no linker on this machine")
    from chainrule.runtime import jit
    aot.compile_library(EXAMPLES / "logreg.expr", tmp_path / "generic", cpu="generic")
    code = _disassembly(tmp_path / "generic" / "logreg.so")
    assert "mulpd" in code or "mulsd" in code  # really the disassembly of float code
    assert "zmm" not in code and "ymm" not in code  # neither AVX-512 nor AVX
    assert "cpu x86-64" in (tmp_path / "generic" / "logreg.h").read_text()
    if "+avx512f" in jit.host_cpu()[1].split(","):  # the check can see AVX-512 when present
        aot.compile_library(EXAMPLES / "logreg.expr", tmp_path / "native", emit="so")
        assert "zmm" in _disassembly(tmp_path / "native" / "logreg.so")
    fn, reference = load_library(tmp_path / "generic" / "logreg.so"), \
        chainrule.compile_file(EXAMPLES / "logreg.expr")
    arrays = arguments(fn.signature, {"N": 9})
    (value, grads), (want, want_grads) = fn.value_and_grad(**arrays), \
        reference.value_and_grad(**arrays)
    np.testing.assert_allclose(value, want, rtol=1e-10)
    np.testing.assert_allclose(grads["w"], want_grads["w"], rtol=1e-9, atol=1e-12)


def test_header_declares_the_abi(libs):
    lib = libs("mlp64")
    text = lib.h.read_text()
    assert text.count("#ifndef CHAINRULE_MLP64_H") == 1 and "#define CHAINRULE_MLP64_H" in text
    assert '#ifdef __cplusplus\nextern "C" {' in text and "#include <stdint.h>" in text
    for fragment in ("int mlp64_value_and_grad(", "int mlp64_value(",
                     "int64_t mlp64_work_size(", "const char *mlp64_info(void);",
                     "int64_t B,", "const double *x,", "/* x: f64[B, 784]",
                     "const double *W1,", "/* W1: f64[784, 256]", "double *out_loss,",
                     "double *grad_W1,", "double *grad_b2,", "void *work);"):
        assert fragment in text, fragment
    sha = hashlib.sha256((EXAMPLES / "mlp.expr").read_bytes()).hexdigest()
    assert f"sha256: {sha}" in text and "source: mlp.expr" in text
    assert re.search(r"0\s+success", text) and re.search(r"1\s+a dim is negative", text)
    assert re.search(r"2\s+the workspace .* could not be allocated", text)
    # the value-only function has no gradient parameters
    value_proto = text[text.index("int mlp64_value("):text.index("int64_t mlp64_work_size(")]
    assert "grad_" not in value_proto and "out_loss" in value_proto


def test_load_library_is_the_function_api(libs, tmp_path):
    lib = libs("mlp64")
    fn = chainrule.load_library(lib.so)
    assert isinstance(fn, chainrule.Function) and fn.backend_name == "library"
    assert "[library]" in repr(fn) and fn.params["W1"] == "f64[784, 256]"
    assert fn.dims == {"B": None, "D": 784, "H": 256, "C": 10}
    arrays = arguments(fn.signature, {"B": 4}, seed=1)
    reference = lib.python()
    assert fn.value(**arrays) == pytest.approx(reference.value(**arrays), rel=1e-12)
    out = {"loss": np.empty((), np.float64), "grad_b2": np.empty(10)}
    fn.value_and_grad(**arrays, out=out)
    close(out["grad_b2"], reference.grad(**arrays)["b2"], "f64", "out= grad_b2")
    with pytest.raises(ValueError, match="axis 1: 783 != 784"):
        fn.value(**{**arrays, "x": np.zeros((4, 783))})
    with pytest.raises(AttributeError, match="no source program"):
        fn.program
    renamed = tmp_path / "renamed.so"  # the name is then found in the symbol table
    shutil.copy(lib.so, renamed)
    assert chainrule.load_library(renamed).value(**arrays) == fn.value(**arrays)
    with pytest.raises(LibraryError, match="cannot load"):
        load_library(lib.h)


def test_library_returns_code_1_for_too_small_dims(tmp_path):
    if aot.find_linker() is None:
        pytest.skip("no linker on this machine")
    aot.compile_library(EXAMPLES / "rosenbrock.expr", tmp_path, emit="so")
    import ctypes
    lib = ctypes.CDLL(str(tmp_path / "rosenbrock.so"))
    lib.rosenbrock_value.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                                     ctypes.c_void_p]
    x, loss = np.zeros(3), np.zeros(1)
    assert lib.rosenbrock_value(3, x.ctypes.data, loss.ctypes.data, None) == 0
    assert lib.rosenbrock_value(0, x.ctypes.data, loss.ctypes.data, None) == 1
    assert lib.rosenbrock_value(-1, x.ctypes.data, loss.ctypes.data, None) == 1


# ------------------------------------------------------------------ check --library
def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_library_passes_on_built_libraries(libs, capsys):
    code, out, _ = run(capsys, "check", "--library", libs("neuron").so)
    assert code == 0 and "ok: 7 gradient(s) agree" in out
    code, out, _ = run(capsys, "check", "--library", libs("mlp64").so, "--dims", "B=3")
    assert code == 0 and "dims B=3" in out


def test_check_library_fails_on_a_wrong_gradient(tmp_path, capsys, monkeypatch):
    if aot.find_linker() is None:
        pytest.skip("no linker on this machine")
    monkeypatch.setenv("CHAINRULE_CACHE", "0")
    # a wrong rule: d sigmoid = s instead of s(1 - s)
    monkeypatch.setattr(registry()["sigmoid"], "vjp", lambda y, g: [ops.mul(g, y)])
    api.clear_cache()
    try:
        aot.compile_library(EXAMPLES / "neuron.expr", tmp_path, name="bad")
    finally:
        monkeypatch.undo()
        api.clear_cache()
    code, out, _ = run(capsys, "check", "--library", tmp_path / "bad.so")
    assert code == 1 and "FAIL: the gradient of" in out


def test_check_library_usage_errors(libs, capsys, tmp_path):
    code, _, err = run(capsys, "check", "--library", libs("mlp").so, "--dtype", "f64")
    assert code == 2 and "built for f32" in err
    code, _, err = run(capsys, "check", EXAMPLES / "neuron.expr", "--library", libs("neuron").so)
    assert code == 2 and "one of them" in err
    code, _, err = run(capsys, "check")
    assert code == 2
    (tmp_path / "junk.so").write_bytes(b"not a library")
    code, _, err = run(capsys, "check", "--library", tmp_path / "junk.so")
    assert code == 2 and err.startswith("chainrule: error: cannot load") and err.count("\n") == 1


# ------------------------------------------------------------------ the command line
@needs_gcc
def test_compile_emits_every_kind(tmp_path, capsys):
    code, out, err = run(capsys, "compile", EXAMPLES / "neuron.expr", "-o", tmp_path / "out",
                         "--emit", "s,ll,o,h,so", "--name", "net")
    assert code == 0, err
    names = ["net.so", "net.o", "net.h", "net.ll", "net.s"]
    assert out.splitlines() == [f"wrote {tmp_path / 'out' / n}" for n in names]
    assert sorted(os.listdir(tmp_path / "out")) == sorted(names)  # no temporary files left
    ll = (tmp_path / "out" / "net.ll").read_text()
    assert "define" in ll and "@net_value_and_grad(" in ll and "@net_info(" in ll
    assert "net_value_and_grad:" in (tmp_path / "out" / "net.s").read_text()
    obj = (tmp_path / "out" / "net.o").read_bytes()
    assert obj[:4] == b"\x7fELF" and int.from_bytes(obj[16:18], "little") == 1  # ET_REL
    # position-independent: the object links into a shared library as it is
    subprocess.run([GCC, "-shared", "-o", str(tmp_path / "again.so"),
                    str(tmp_path / "out" / "net.o")], check=True)


def test_default_name_is_the_stem_as_a_c_identifier(tmp_path, capsys):
    source = tmp_path / "my-net.v2.expr"
    shutil.copy(EXAMPLES / "rosenbrock.expr", source)
    code, out, err = run(capsys, "compile", source, "-o", tmp_path / "out", "--emit", "h")
    assert code == 0, err
    assert out.strip() == f"wrote {tmp_path / 'out' / 'my_net_v2.h'}"
    assert aot.c_identifier("2layer") == "_2layer" and aot.c_identifier("a b-c") == "a_b_c"


@pytest.mark.parametrize("options,message", [
    (["--emit", "so,dll"], "--emit takes a comma-separated list of so, o, h, ll, s"),
    (["--emit", ""], "--emit takes"),
    (["--cpu", "pentium9"], "unknown CPU 'pentium9'"),
    (["--name", "my-lib"], "--name must be a C identifier"),
    (["--name", "1net"], "--name must be a C identifier"),
])
def test_bad_options_exit_2_and_write_nothing(tmp_path, capsys, options, message):
    out = tmp_path / "out"
    out.mkdir()
    (out / "neuron.h").write_text("old")
    code, stdout, err = run(capsys, "compile", EXAMPLES / "neuron.expr", "-o", out, *options)
    assert code == 2 and stdout == ""
    assert err.startswith("chainrule: error: ") and err.count("\n") == 1 and message in err
    assert os.listdir(out) == ["neuron.h"] and (out / "neuron.h").read_text() == "old"


def test_unwritable_output_dir_exits_2(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, err = run(capsys, "compile", EXAMPLES / "neuron.expr", "-o", blocker / "out")
    assert code == 2 and err.count("\n") == 1 and "cannot write to" in err
    assert "not a directory" in err
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            code, _, err = run(capsys, "compile", EXAMPLES / "neuron.expr", "-o", locked)
            assert code == 2 and "permission denied" in err and os.listdir(locked) == []
        finally:
            locked.chmod(0o700)


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_restores_the_directory(tmp_path, capsys, monkeypatch, failure):
    """The second rename fails (or Ctrl-C): the first is rolled back, the old files stay."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "rosenbrock.h").write_text("old header")
    (out / "rosenbrock.ll").write_text("old ir")
    real_replace, calls = os.replace, []

    def flaky_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise failure
        return real_replace(src, dst)

    monkeypatch.setattr(aot.os, "replace", flaky_replace)
    code, _, err = run(capsys, "compile", EXAMPLES / "rosenbrock.expr", "-o", out,
                       "--emit", "h,ll")
    if isinstance(failure, OSError):
        assert code == 2 and "No space left on device" in err and err.count("\n") == 1
    else:
        assert code == 130
    assert sorted(os.listdir(out)) == ["rosenbrock.h", "rosenbrock.ll"]
    assert (out / "rosenbrock.h").read_text() == "old header"
    assert (out / "rosenbrock.ll").read_text() == "old ir"
    monkeypatch.undo()
    code, _, _ = run(capsys, "compile", EXAMPLES / "rosenbrock.expr", "-o", out, "--emit", "h,ll")
    assert code == 0 and (out / "rosenbrock.h").read_text().startswith("/* rosenbrock.h")
    assert sorted(os.listdir(out)) == ["rosenbrock.h", "rosenbrock.ll"]


def test_a_new_output_dir_is_removed_when_writing_fails(tmp_path, capsys, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(aot.tempfile, "mkstemp", no_space)
    code, _, err = run(capsys, "compile", EXAMPLES / "rosenbrock.expr", "-o",
                       tmp_path / "new" / "dir", "--emit", "h")
    assert code == 2 and "No space left" in err
    assert os.listdir(tmp_path) == []


def _path_with(tmp_path: Path, *tools: str) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in tools:
        os.symlink(tool(name), bin_dir / name)
    return str(bin_dir)


def test_without_a_linker_so_fails_but_o_and_h_work(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", _path_with(tmp_path))
    out = tmp_path / "out"
    code, _, err = run(capsys, "compile", EXAMPLES / "neuron.expr", "-o", out)
    assert code == 2 and err.count("\n") == 1
    assert "cannot link neuron.so: no linker found on PATH" in err and "--emit o,h" in err
    assert not out.exists()
    code, stdout, err = run(capsys, "compile", EXAMPLES / "neuron.expr", "-o", out,
                            "--emit", "o,h")
    assert code == 0 and sorted(os.listdir(out)) == ["neuron.h", "neuron.o"]
    monkeypatch.undo()
    if GCC is None:
        return
    # the object links statically into a C program
    sig = chainrule.compile_file(EXAMPLES / "neuron.expr").signature
    source = tmp_path / "client.c"
    source.write_text(client_source(sig, "neuron"))
    exe = tmp_path / "client"
    subprocess.run([GCC, "-std=c11", "-Wall", "-Werror", "-pthread", "-I", str(out),
                    str(source), str(out / "neuron.o"), "-lm", "-o", str(exe)], check=True)
    arrays = arguments(sig, {})
    _, _, rc, _, outputs, grads, _, _ = run_client(exe, sig, {}, arrays, tmp_path)
    value, want = chainrule.compile_file(EXAMPLES / "neuron.expr").value_and_grad(**arrays)
    assert rc == 0
    close(outputs[0], value, "f64", "loss")
    close(grads[0], want["w1"], "f64", "grad_w1")


def test_plain_ld_links_the_library(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", _path_with(tmp_path, "ld"))
    code, _, err = run(capsys, "compile", EXAMPLES / "logreg.expr", "-o", tmp_path / "out")
    assert code == 0, err
    monkeypatch.undo()
    fn = load_library(tmp_path / "out" / "logreg.so")
    arrays = arguments(fn.signature, {"N": 6})
    assert fn.value(**arrays) == pytest.approx(
        chainrule.compile_file(EXAMPLES / "logreg.expr").value(**arrays), rel=1e-12)
    listed = subprocess.run([tool("nm"), "-D", "--defined-only", str(tmp_path / "out" /
                                                                      "logreg.so")],
                            capture_output=True, text=True, check=True).stdout
    assert all(line.split()[-1].startswith("logreg_") for line in listed.splitlines())


# ------------------------------------------------------------------ docs/embedding.md
def _doc_blocks() -> tuple[dict[str, str], list[str], dict[str, str]]:
    """Files (`<!-- file: X -->`), commands (`<!-- run -->`), outputs (`<!-- output: X -->`)."""
    text = (ROOT / "docs" / "embedding.md").read_text()
    files, commands, outputs = {}, [], {}
    for marker, body in re.findall(r"<!-- (.*?) -->\n```\w*\n(.*?)```", text, re.S):
        if marker.startswith("file: "):
            files[marker[6:]] = body
        elif marker == "run":
            commands += [line for line in body.splitlines() if line.strip()]
        elif marker.startswith("output: "):
            outputs[marker[8:]] = body
    return files, commands, outputs


@needs_gcc
@needs_gxx
def test_embedding_doc_examples_build_and_run(tmp_path):
    files, commands, outputs = _doc_blocks()
    assert set(files) == {"train.c", "folds.cpp"} and set(outputs) == {"./train", "./folds"}
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    os.symlink(EXAMPLES, tmp_path / "examples")
    python = f"{shlex.quote(sys.executable)} -m chainrule"
    ran = []
    for command in commands:
        done = subprocess.run(re.sub(r"^chainrule\b", python, command), shell=True,
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (command, done.stderr)
        if command in outputs:  # the printed output is the documented one (losses to 1e-4)
            ran.append(command)
            got = [float(x) for x in re.findall(r"loss (\S+)", done.stdout)]
            want = [float(x) for x in re.findall(r"loss (\S+)", outputs[command])]
            assert re.sub(r"loss \S+", "", done.stdout) == \
                re.sub(r"loss \S+", "", outputs[command])
            np.testing.assert_allclose(got, want, rtol=1e-4)
    assert ran == ["./train", "./folds"]
