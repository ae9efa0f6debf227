"""The `chainrule` command line: show, check, run, and how it reports mistakes.

Commands run in-process through `main([...])` (fast, and monkeypatching
reaches the compiler), and once as a real `python -m chainrule` process.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from chainrule.runtime import api

import chainrule
from chainrule.compiler import ops
from chainrule.compiler.ir import registry
from chainrule.runtime import cli
from chainrule.runtime.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ALL_EXAMPLES = sorted(p.name for p in EXAMPLES.glob("*.expr"))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, text: str, name: str = "prog.expr") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------- show
@pytest.mark.parametrize("name", ALL_EXAMPLES)
@pytest.mark.parametrize("options", [[], ["--grad"], ["--format", "latex"],
                                     ["--grad", "--format", "latex"], ["--format", "dot"],
                                     ["--grad", "--format", "dot", "--stats"],
                                     ["--stats"], ["--dtype", "f64", "--grad"]])
def test_show_every_example(capsys, name, options):
    code, out, err = run(capsys, "show", EXAMPLES / name, *options)
    assert code == 0 and err == ""
    assert "output loss" in out or "--format" in options


def test_show_grad_neuron_has_the_lecture_line(capsys):
    code, out, _ = run(capsys, "show", EXAMPLES / "neuron.expr", "--grad")
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("dloss/dw1 = "))
    assert "x1" in line
    assert line == "dloss/dw1 = x1 * dloss/dz"


def test_show_dtype_override(capsys):
    code, out, _ = run(capsys, "show", EXAMPLES / "mlp.expr", "--dtype", "f64")
    assert code == 0 and "param W1: f64[D, H]" in out


def _stats_totals(out: str) -> tuple[int, int]:
    match = re.search(r"^(?://\s*|%\s*)?total\s+(\d+)\s+(\d+)\s*$", out, re.M)
    assert match, out
    return int(match.group(1)), int(match.group(2))


@pytest.mark.parametrize("name", ALL_EXAMPLES)
def test_stats_backward_at_most_three_times_forward(capsys, name):
    """Acceptance: the adjoint costs at most 3x the forward's primitive count."""
    code, out, _ = run(capsys, "show", EXAMPLES / name, "--stats")
    assert code == 0
    forward, backward = _stats_totals(out)
    assert forward > 0
    assert backward <= 3 * forward, out
    ratio = float(re.search(r"ratio backward/forward: ([\d.]+)", out).group(1))
    assert ratio == pytest.approx(backward / forward, abs=0.005)


def test_stats_stay_comments_in_latex_and_dot(capsys):
    _, out, _ = run(capsys, "show", EXAMPLES / "neuron.expr", "--format", "dot", "--stats")
    after = out.split("}\n", 1)[1] if out.count("}\n") else ""
    assert all(line.startswith("//") for line in after.splitlines() if line.strip())
    _, out, _ = run(capsys, "show", EXAMPLES / "neuron.expr", "--format", "latex", "--stats")
    tail = out.split(r"\end{align*}", 1)[1]
    assert all(line.startswith("%") for line in tail.splitlines() if line.strip())


# ------------------------------------------------------------------ check
@pytest.mark.parametrize("name, options", [
    ("neuron.expr", []), ("logreg.expr", []), ("rosenbrock.expr", []),
    ("rosenbrock.expr", ["--dims", "N=7"]), ("mlp.expr", ["--dtype", "f64"]),
    ("logreg.expr", ["--backend", "numpy", "--seed", "3", "--tol", "1e-5"]),
])
def test_check_passes_on_the_examples(capsys, name, options):
    code, out, err = run(capsys, "check", EXAMPLES / name, *options)
    assert code == 0, out + err
    assert "param" in out and "value:" in out and "FAIL" not in out


def test_check_dims_are_reported_and_repeatable(capsys, tmp_path):
    prog = write(tmp_path, "dim A\ndim B\nparam x: f64[A, B]\nloss = sum(x^2)\noutput loss\n")
    code, out, _ = run(capsys, "check", prog, "--dims", "A=2", "--dims", "B=5")
    assert code == 0 and "dims A=2, B=5" in out
    code, out, _ = run(capsys, "check", prog, "--dims", "A=2,B=6")
    assert code == 0 and "dims A=2, B=6" in out
    code, out, _ = run(capsys, "check", prog)
    assert code == 0 and "dims A=3, B=4" in out


def test_check_retries_with_positive_inputs(capsys, tmp_path):
    prog = write(tmp_path, "dim N\nparam x: f64[N]\nloss = sum(log(x) + sqrt(x))\noutput loss\n")
    code, out, _ = run(capsys, "check", prog)
    assert code == 0, out
    assert "uniform(0.1, 1)" in out


def test_check_grows_dims_to_meet_constraints(capsys, tmp_path):
    prog = write(tmp_path, "dim N\nparam x: f64[N]\nloss = sum(x[5:] * x[:-5])\noutput loss\n")
    code, out, _ = run(capsys, "check", prog)
    assert code == 0, out


def test_check_fails_on_a_wrong_gradient(capsys, tmp_path, monkeypatch, request):
    request.addfinalizer(api.clear_cache)  # never leave the wrong function cached
    prog = write(tmp_path, "dim N\nparam x: f64[N]\nloss = sum(sin(x))\noutput loss\n")
    assert run(capsys, "check", prog)[0] == 0
    # d sin = -cos: a sign error in the VJP must be caught
    monkeypatch.setattr(registry()["sin"], "vjp",
                        lambda y, g: [ops.neg(ops.mul(g, ops.unary("cos", y.inputs[0])))])
    api.clear_cache()  # the correct function compiled above must not be reused,
    monkeypatch.setenv("CHAINRULE_CACHE", "0")  # in this process or from the disk cache
    code, out, _ = run(capsys, "check", prog)
    assert code == 1
    assert "FAIL" in out and re.search(r"^x\s.*FAIL$", out, re.M)


@pytest.mark.parametrize("argv, message", [
    (["--dims", "Q=3"], "--dims names 'Q', which is not a dim of the program"),
    (["--dims", "N=0"], "too small"),
])
def test_check_bad_dims(capsys, argv, message):
    code, out, err = run(capsys, "check", EXAMPLES / "rosenbrock.expr", *argv)
    assert code == 2 and message in err
    assert err.startswith("chainrule: error: ") and len(err.strip().splitlines()) == 1


def test_check_malformed_dims_is_a_usage_error(capsys):
    code, _, err = run(capsys, "check", EXAMPLES / "rosenbrock.expr", "--dims", "N=x")
    assert code == 2 and "NAME=SIZE" in err


def test_check_constant_dim_must_agree(capsys):
    code, _, err = run(capsys, "check", EXAMPLES / "logreg.expr", "--dims", "F=3")
    assert code == 2 and "dim F = 64" in err
    assert run(capsys, "check", EXAMPLES / "logreg.expr", "--dims", "F=64,N=4")[0] == 0


# -------------------------------------------------------------------- run
def neuron_arrays(rng) -> dict[str, np.ndarray]:
    names = "x1 x2 y1 y2 w1 w2 b w3 w4 b1 b2".split()
    return {n: np.asarray(rng.standard_normal()) for n in names}


def test_run_writes_outputs_and_gradients(capsys, tmp_path):
    arrays = neuron_arrays(np.random.default_rng(0))
    np.savez(tmp_path / "in.npz", **arrays)
    out_path = tmp_path / "out.npz"
    code, out, err = run(capsys, "run", EXAMPLES / "neuron.expr",
                         "--inputs", tmp_path / "in.npz", "-o", out_path)
    assert code == 0 and err == ""
    fn = chainrule.compile_file(EXAMPLES / "neuron.expr")
    value, grads = fn.value_and_grad(**arrays)
    with np.load(out_path) as saved:
        assert set(saved.files) == {"loss"} | {f"grad_{p}" for p in grads}
        np.testing.assert_array_equal(saved["loss"], value)
        for p, g in grads.items():
            np.testing.assert_array_equal(saved[f"grad_{p}"], g)
    assert f"loss = {float(value):.10g}" in out
    assert "grad_w1: shape (), norm" in out


def test_run_tensor_program_summary(capsys, tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"X": rng.standard_normal((5, 64)), "y": np.sign(rng.standard_normal(5)),
              "w": rng.standard_normal(64), "b": np.float64(0.1)}
    np.savez(tmp_path / "in.npz", **arrays)
    code, out, _ = run(capsys, "run", EXAMPLES / "logreg.expr", "--inputs", tmp_path / "in.npz",
                       "-o", tmp_path / "result")
    assert code == 0
    assert "grad_w: shape (64,), norm" in out
    fn = chainrule.compile_file(EXAMPLES / "logreg.expr")
    with np.load(tmp_path / "result") as saved:  # written under the exact name given
        np.testing.assert_allclose(saved["grad_w"], fn.grad(**arrays)["w"])


def test_run_llvm_backend_matches_the_api(capsys, tmp_path):
    arrays = neuron_arrays(np.random.default_rng(2))
    np.savez(tmp_path / "in.npz", **arrays)
    code, _, err = run(capsys, "run", EXAMPLES / "neuron.expr", "--inputs", tmp_path / "in.npz",
                       "-o", tmp_path / "out.npz", "--backend", "llvm")
    assert code == 0, err
    grads = chainrule.compile_file(EXAMPLES / "neuron.expr").grad(**arrays)
    with np.load(tmp_path / "out.npz") as saved:
        for p, g in grads.items():
            np.testing.assert_allclose(saved[f"grad_{p}"], g, rtol=1e-12)


def test_run_without_output_file_only_prints(capsys, tmp_path):
    np.savez(tmp_path / "in.npz", **neuron_arrays(np.random.default_rng(1)))
    code, out, _ = run(capsys, "run", EXAMPLES / "neuron.expr", "--inputs", tmp_path / "in.npz")
    assert code == 0 and "loss = " in out and "wrote" not in out


def test_run_missing_array(capsys, tmp_path):
    arrays = neuron_arrays(np.random.default_rng(0))
    del arrays["y2"]
    np.savez(tmp_path / "in.npz", **arrays)
    code, out, err = run(capsys, "run", EXAMPLES / "neuron.expr", "--inputs", tmp_path / "in.npz")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("chainrule: error: ") and "'y2'" in err


def test_run_wrong_shape(capsys, tmp_path):
    arrays = neuron_arrays(np.random.default_rng(0))
    arrays["w1"] = np.zeros(3)
    np.savez(tmp_path / "in.npz", **arrays)
    code, _, err = run(capsys, "run", EXAMPLES / "neuron.expr", "--inputs", tmp_path / "in.npz")
    assert code == 2
    assert err.startswith("chainrule: error: argument 'w1'") and len(err.strip().splitlines()) == 1


def test_run_unreadable_inputs(capsys, tmp_path):
    code, _, err = run(capsys, "run", EXAMPLES / "neuron.expr", "--inputs", tmp_path / "no.npz")
    assert code == 2 and "cannot read" in err and "No such file or directory" in err
    (tmp_path / "junk.npz").write_text("not a zip")
    code, _, err = run(capsys, "run", EXAMPLES / "neuron.expr", "--inputs", tmp_path / "junk.npz")
    assert code == 2 and "cannot read" in err and len(err.strip().splitlines()) == 1


def test_run_requires_inputs(capsys):
    code, _, err = run(capsys, "run", EXAMPLES / "neuron.expr")
    assert code == 2 and "--inputs" in err


# ----------------------------------------------------------------- errors
def test_syntax_error_is_rendered(capsys, tmp_path):
    prog = write(tmp_path, "param x\nloss = sin(x) +\noutput loss\n", "bad.expr")
    code, out, err = run(capsys, "show", prog)
    assert code == 2 and out == ""
    first, source, caret = err.splitlines()
    assert re.fullmatch(re.escape(str(prog)) + r":2:\d+: error: .+", first)
    assert source == "loss = sin(x) +"
    column = int(first.split(":")[2])
    assert caret.index("^") == column - 1
    assert "Traceback" not in err


def test_name_error_is_rendered(capsys, tmp_path):
    prog = write(tmp_path, "param x\nloss = sin(y) * x\noutput loss\n", "names.expr")
    for command in ("show", "check"):
        code, out, err = run(capsys, command, prog)
        assert code == 2 and out == ""
        assert err.splitlines() == [f"{prog}:2:12: error: unknown name 'y'",
                                    "loss = sin(y) * x",
                                    "           ^"]


def test_error_names_the_file_as_given(capsys, tmp_path, monkeypatch):
    write(tmp_path, "param x\nloss = x +* 2\noutput loss\n", "rel.expr")
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "show", "rel.expr")
    assert code == 2 and err.startswith("rel.expr:2:")


def test_missing_file(capsys):
    code, out, err = run(capsys, "show", "x.expr")
    assert code == 2 and out == ""
    assert err == "chainrule: error: cannot read 'x.expr': No such file or directory\n"
    for command in ("check", ["run", "--inputs", "in.npz"]):
        argv = command if isinstance(command, list) else [command]
        code, _, err = run(capsys, argv[0], "x.expr", *argv[1:])
        assert code == 2 and err == "chainrule: error: cannot read 'x.expr': No such file or directory\n"


def test_directory_and_binary_files(capsys, tmp_path):
    code, _, err = run(capsys, "show", tmp_path)
    assert code == 2 and err.startswith(f"chainrule: error: cannot read '{tmp_path}'")
    binary = tmp_path / "bin.expr"
    binary.write_bytes(b"param x\n\xff\xfe\n")
    code, _, err = run(capsys, "show", binary)
    assert code == 2 and err.startswith(f"{binary}:2:1: error: the file is not UTF-8")


@pytest.mark.parametrize("argv", [["show"], ["bogus"], ["show", "--bogus", "x.expr"],
                                  ["show", "x.expr", "--format", "html"], [],
                                  ["check", "x.expr", "--backend", "cuda"]])
def test_usage_errors_exit_2(capsys, argv):
    code, _, err = run(capsys, *argv)
    assert code == 2 and "usage:" in err


@pytest.mark.parametrize("command", [[], ["show"], ["check"], ["run"]])
def test_help(capsys, command):
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0 and out.startswith("usage: chainrule")


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"chainrule {chainrule.__version__}"


def test_keyboard_interrupt_exits_130_quietly(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setitem(cli.COMMANDS, "show", (cli.COMMANDS["show"][0], cli.COMMANDS["show"][1],
                                               interrupted))
    code, out, err = run(capsys, "show", EXAMPLES / "neuron.expr")
    assert code == 130 and out == "" and err == ""


# ------------------------------------------------------------- subprocess
def test_python_dash_m_chainrule(tmp_path):
    env = dict(os.environ, PYTHONPATH="")
    done = subprocess.run([sys.executable, "-m", "chainrule", "show", "examples/neuron.expr",
                           "--grad"], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "dloss/dw1 = x1 * dloss/dz" in done.stdout.splitlines()
    bad = write(tmp_path, "param x\nloss = sin(y)\noutput loss\n", "bad.expr")
    done = subprocess.run([sys.executable, "-m", "chainrule", "check", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == f"{bad}:2:12: error: unknown name 'y'"
    assert "Traceback" not in done.stderr
