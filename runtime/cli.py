"""The `chainrule` command: show, check, run and compile `.expr` programs.

Why the error discipline: a command-line user should see what a compiler
shows (`file:line:col: error: message`, the line, a caret) or one line
saying what is wrong with a file or an array, never a Python traceback for
their own mistake. Exit codes: 0 success, 1 a gradient check failed, 2 a
usage, program or data error, 130 interrupted. A traceback still means a
bug in chainrule itself.

Each subcommand is an (`add_arguments`, `run`) pair in `COMMANDS`, so new
ones slot in without touching the others.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Sequence

import numpy as np

from chainrule.grammar.source import CompileError, Source

PROG = "chainrule"


class UsageError(Exception):
    """A mistake in the command line, a file or the data: one line, exit status 2."""


# ------------------------------------------------------------------ helpers
def _read(path: str) -> str:
    from chainrule.runtime.files import read_source
    try:
        return read_source(path)
    except OSError as err:
        raise UsageError(f"cannot read '{path}': {err.strerror or err}") from None


def _program(path: str, dtype: str | None):
    from chainrule.compiler.pipeline import build_program
    return build_program(Source(_read(path), path), dtype=dtype)


def _function(path: str, dtype: str | None, backend: str):
    from chainrule.runtime.api import compile as compile_source
    text = _read(path)
    try:
        return compile_source(text, filename=path, dtype=dtype, backend=backend)
    except ImportError as err:  # a backend whose dependencies are missing
        raise UsageError(f"the {backend} backend is not available: {err}") from None


def _dims_arg(text: str) -> dict[str, int]:
    """`B=8,N=5` -> {"B": 8, "N": 5} (argparse type for --dims)."""
    dims = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip().isidentifier() or not value.strip().isdigit():
            raise argparse.ArgumentTypeError(f"expected NAME=SIZE[,NAME=SIZE...], got '{text}'")
        dims[name.strip()] = int(value)
    return dims


def _summary(value: Any) -> str:
    array = np.asarray(value)
    if array.ndim == 0:
        return f"{float(array):.10g}"
    mean = float(np.mean(array)) if array.size else float("nan")
    return f"shape {tuple(array.shape)}, mean {mean:.6g}"


def _evaluate(fn, arrays: dict) -> tuple[Any, dict]:
    """value_and_grad, with the API's complaints about the arrays as one-line errors."""
    try:
        with np.errstate(all="ignore"):
            return fn.value_and_grad(**arrays)
    except (TypeError, ValueError) as err:
        raise UsageError(str(err)) from None


def _all_finite(value: Any, grads: dict) -> bool:
    values = value if isinstance(value, tuple) else (value,)
    return all(np.all(np.isfinite(np.asarray(v))) for v in (*values, *grads.values()))


# ------------------------------------------------------------------- show
def _show_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE.expr", help="the program")
    p.add_argument("--grad", action="store_true", help="also print the adjoint (gradient) program")
    p.add_argument("--format", choices=("text", "latex", "dot"), default="text",
                   help="equations as text (default) or LaTeX, or a Graphviz digraph")
    p.add_argument("--stats", action="store_true",
                   help="count primitives in the forward and backward programs")
    p.add_argument("--kernels", action="store_true",
                   help="print the fused loop schedule of the native code instead")
    p.add_argument("--dtype", choices=("f32", "f64"), help="override every declared dtype")


def _show(args: argparse.Namespace) -> int:
    from chainrule.compiler.printer import format_program, format_stats, stats
    program = _program(args.file, args.dtype)
    if args.kernels:
        from chainrule.compiler.codegen.abi import describe_kernels
        sys.stdout.write(describe_kernels(program))
        return 0
    sys.stdout.write(format_program(program, grad=args.grad, fmt=args.format))
    if args.stats:
        # keep a LaTeX or DOT file valid: the table goes in comments there
        prefix = {"text": "", "latex": "% ", "dot": "// "}[args.format]
        table = format_stats(stats(program))
        sys.stdout.write("\n" + "".join(prefix + line + "\n" for line in table.splitlines()))
    return 0


# ------------------------------------------------------------------ check
def _backend_argument(p: argparse.ArgumentParser) -> None:
    from chainrule.runtime.api import BACKENDS, DEFAULT_BACKEND
    p.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                   help=f"where to evaluate (default {DEFAULT_BACKEND})")


def _check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE.expr", nargs="?", help="the program")
    p.add_argument("--library", metavar="NAME.so",
                   help="check a library built by `chainrule compile` instead of a program "
                        "(its own machine code, in its own dtype)")
    p.add_argument("--dims", type=_dims_arg, action="append", default=[], metavar="B=8,N=5",
                   help="sizes of symbolic dims (repeatable; others default to 3, 4, 5, ...)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--dtype", choices=("f32", "f64"),
                   help="evaluate in this dtype (default f64: central differences in f32 are "
                        "too noisy to judge a gradient; --dtype f32 checks f32 as declared)")
    p.add_argument("--tol", type=float, default=None,
                   help="largest relative error accepted (default 1e-6 for f64, 2e-2 for f32)")
    _backend_argument(p)


def _library(path: str, dtype: str | None):
    """A `chainrule compile` library as a Function; its dtypes are fixed at build time."""
    from chainrule.runtime.library import LibraryError, load_library
    try:
        fn = load_library(path)
    except LibraryError as err:
        raise UsageError(str(err)) from None
    built = {a.type.dtype for a in fn.args} | {t.dtype for _, t in fn.signature.outputs}
    if dtype is not None and built != {dtype}:
        raise UsageError(f"'{path}' was built for {', '.join(sorted(built))}; its dtype cannot "
                         f"be changed (rebuild it with chainrule compile --dtype {dtype})")
    return fn


def _check(args: argparse.Namespace) -> int:
    from chainrule.runtime.check import check
    from chainrule.runtime.samples import choose_dims, draw_arguments
    if (args.file is None) == (args.library is None):
        raise UsageError("check takes a program FILE.expr or --library NAME.so (one of them)")
    if args.library is not None:
        fn = _library(args.library, args.dtype)
        args.file = args.library
    else:
        fn = _function(args.file, args.dtype or "f64", args.backend)
    given = {k: v for d in args.dims for k, v in d.items()}
    try:
        dims = choose_dims(fn.signature, given)
    except ValueError as err:
        raise UsageError(str(err)) from None
    rng = np.random.default_rng(args.seed)
    arrays = draw_arguments(fn.signature, dims, rng)
    value, grads = _evaluate(fn, arrays)
    note = "inputs ~ normal(0, 0.5^2)"
    if not _all_finite(value, grads):
        # logs and roots of normal samples: retry where the program is defined
        arrays = draw_arguments(fn.signature, dims, rng, positive=True)
        _evaluate(fn, arrays)
        note = "inputs ~ uniform(0.1, 1) (normal inputs gave non-finite results)"
    with np.errstate(all="ignore"):
        report = check(fn, seed=args.seed, tolerance=args.tol, **arrays)
    sized = ", ".join(f"{k}={v}" for k, v in dims.items())
    print(f"{args.file}: {note}" + (f", dims {sized}" if sized else "") + f", seed {args.seed}")
    print(report.table())
    print(f"value: {report.value:.10g}")
    failed = [p.name for p in report.params if not p.ok]
    if failed:
        print(f"FAIL: the gradient of {', '.join(failed)} disagrees with finite differences")
        return 1
    print(f"ok: {len(report.params)} gradient(s) agree with finite differences")
    return 0


# -------------------------------------------------------------------- run
def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE.expr", help="the program")
    p.add_argument("--inputs", required=True, metavar="IN.npz",
                   help="the arguments, one array per input and param, by name")
    p.add_argument("-o", "--output", metavar="OUT.npz",
                   help="write the outputs by name and the gradients as grad_<param>")
    p.add_argument("--dtype", choices=("f32", "f64"), help="override every declared dtype")
    _backend_argument(p)


def _load_npz(path: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except OSError as err:
        raise UsageError(f"cannot read '{path}': {err.strerror or err}") from None
    except Exception as err:  # not a zip, an object array, a truncated member
        raise UsageError(f"cannot read '{path}' as .npz: {err}") from None


def _run(args: argparse.Namespace) -> int:
    fn = _function(args.file, args.dtype, args.backend)
    data = _load_npz(args.inputs)
    missing = [a for a in fn.program.args if a.name not in data]
    if missing:
        names = ", ".join(f"{a.kind} '{a.name}' ({a.type})" for a in missing)
        raise UsageError(f"'{args.inputs}' has no array for {names}")
    value, grads = _evaluate(fn, {a.name: data[a.name] for a in fn.program.args})
    values = value if isinstance(value, tuple) else (value,)
    results = {name: np.asarray(v) for (name, _), v in zip(fn.program.outputs, values)}
    for param, g in grads.items():
        results[f"grad_{param}"] = np.asarray(g)
    for (name, _), v in zip(fn.program.outputs, values):
        print(f"{name} = {_summary(v)}")
    for param, g in grads.items():
        g = np.asarray(g)
        print(f"grad_{param}: shape {tuple(g.shape)}, norm {float(np.linalg.norm(g)):.6g}")
    if args.output:
        if len(results) < len(fn.program.outputs) + len(grads):
            raise UsageError("an output is named like a gradient (grad_<param>); rename it")
        try:
            with open(args.output, "wb") as f:
                np.savez(f, **results)
        except OSError as err:
            raise UsageError(f"cannot write '{args.output}': {err.strerror or err}") from None
        print(f"wrote {args.output}")
    return 0


# ---------------------------------------------------------------- compile
def _compile_arguments(p: argparse.ArgumentParser) -> None:
    from chainrule.runtime.aot import EMIT_KINDS
    p.add_argument("file", metavar="FILE.expr", help="the program")
    p.add_argument("-o", "--outdir", required=True, metavar="OUTDIR",
                   help="where to write NAME.so, NAME.h, ... (created if missing)")
    p.add_argument("--name", help="the C name prefix (default: the file stem as a C identifier)")
    p.add_argument("--emit", default="so,h", metavar=",".join(EMIT_KINDS),
                   help="what to write: shared library, object, header, optimised LLVM IR, "
                        "assembly (default so,h)")
    p.add_argument("--cpu", default="native", metavar="native|generic|CPU",
                   help="target CPU: this machine's (default), the x86-64 baseline (generic), "
                        "or an LLVM CPU name")
    p.add_argument("--dtype", choices=("f32", "f64"), help="override every declared dtype")


def _compile(args: argparse.Namespace) -> int:
    from chainrule.runtime.aot import BuildError, compile_library
    try:
        written = compile_library(args.file, args.outdir, name=args.name, emit=args.emit,
                                  cpu=args.cpu, dtype=args.dtype)
    except BuildError as err:
        raise UsageError(str(err)) from None
    for path in written:
        print(f"wrote {path}")
    return 0


# ------------------------------------------------------------------- main
COMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "show": ("print the program (and its gradient) as equations, LaTeX or a graph",
             _show_arguments, _show),
    "check": ("compare the gradient with finite differences at random inputs",
              _check_arguments, _check),
    "run": ("evaluate the outputs and gradients on arrays from an .npz file",
            _run_arguments, _run),
    "compile": ("compile ahead of time to a shared library and C header for C/C++ programs",
                _compile_arguments, _compile),
}


def build_parser() -> argparse.ArgumentParser:
    from chainrule import __version__
    parser = argparse.ArgumentParser(
        prog=PROG, description="An expression-to-gradient compiler for .expr programs.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (summary, add_arguments, run) in COMMANDS.items():
        p = sub.add_parser(name, help=summary, description=summary)
        add_arguments(p)
        p.set_defaults(run=run)
    return parser


def _error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); return the exit status."""
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as stop:  # --help, --version, usage errors: argparse printed them
            return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
        return args.run(args)
    except CompileError as err:
        print(err.render(), file=sys.stderr)
        return 2
    except UsageError as err:
        return _error(str(err))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `chainrule show x.expr | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
