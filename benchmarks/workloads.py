"""Benchmark workloads: one `.expr` program each, with its inputs and peers.

Every workload holds the `.expr` source that chainrule compiles, a seeded
NumPy input generator, and independent implementations of the SAME value and
gradient in the peer systems:

- NumPy by hand: forward and backward written out, vectorized (for the scalar
  neuron, plain Python `math` on floats, which is what one would write);
- JAX: `jax.jit(jax.value_and_grad(f, argnums=<params>))`;
- PyTorch eager (autograd, `torch.autograd.grad`) and `torch.compile`.

JAX and PyTorch are optional: they are imported only when a peer is built.
A peer is built with `build_peer(workload, kind, arrays)`, which converts the
inputs once (outside any timing) and returns a `Peer`: `call()` runs one
value+grad and waits for it, `to_numpy(result)` gives `(value, {param: grad})`.

Run this file to check the peers against each other:
`python benchmarks/workloads.py [--smoke]`.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

PEER_KINDS = ("numpy", "jax", "torch", "torch.compile")
PEER_LABELS = {
    "numpy": "numpy by hand",
    "jax": "jax.jit",
    "torch": "torch eager",
    "torch.compile": "torch.compile",
}


@dataclass
class Workload:
    """One benchmark problem; sizes depend on `smoke` (tiny for CI)."""

    name: str
    description: str
    source: Callable[[bool], str]          # smoke -> `.expr` text
    inputs: tuple[str, ...]                 # data argument names, in order
    params: tuple[str, ...]                 # differentiated argument names
    make_inputs: Callable[[bool, int], dict[str, Any]]  # (smoke, seed) -> args
    numpy_vg: Callable[..., tuple[float, dict[str, np.ndarray]]]
    jax_loss: Callable[..., Any]            # (**args) -> scalar, jnp ops
    torch_loss: Callable[..., Any]          # (**args) -> scalar, torch ops
    f32: bool = False                       # loose tolerance for the checks
    # performance model (None: not reported)
    bytes_moved: Callable[[dict], float] | None = None
    flops: Callable[[dict], float] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def arg_names(self) -> tuple[str, ...]:
        return self.inputs + self.params

    def tolerance(self) -> tuple[float, float]:
        """(rtol, atol relative to the largest magnitude) for the checks."""
        return (2e-3, 2e-4) if self.f32 else (1e-7, 1e-9)


# --------------------------------------------------------------- math helpers
def _np_sigmoid(z):
    # sigmoid(z) = (1 + tanh(z/2)) / 2: stable for every z, one transcendental
    # (5x faster than exp(-logaddexp(0, -z)) at N = 10^6)
    return 0.5 + 0.5 * np.tanh(0.5 * z)


def _py_sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    ez = math.exp(z)
    return ez / (1.0 + ez)


# ------------------------------------------------------------------ neuron (scalars)
NEURON_SRC = """\
# one neuron feeding two output neurons (the backpropagation lecture)
input x1, x2, y1, y2
param w1, w2, b, w3, w4, b1, b2

z    = x1*w1 + x2*w2 + b
a    = sigmoid(z)
z1   = a*w3 + b1
z2   = a*w4 + b2
loss = (sigmoid(z1) - y1)^2 + (sigmoid(z2) - y2)^2

output loss
"""

NEURON_INPUTS = ("x1", "x2", "y1", "y2")
NEURON_PARAMS = ("w1", "w2", "b", "w3", "w4", "b1", "b2")


def _neuron_inputs(smoke: bool, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    vals = rng.normal(size=len(NEURON_INPUTS) + len(NEURON_PARAMS))
    vals[2:4] = rng.uniform(size=2)  # targets in (0, 1)
    return {k: float(v) for k, v in zip(NEURON_INPUTS + NEURON_PARAMS, vals)}


def _neuron_numpy(x1, x2, y1, y2, w1, w2, b, w3, w4, b1, b2):
    # scalars: plain Python floats are the sensible hand-written version
    a = _py_sigmoid(x1 * w1 + x2 * w2 + b)
    s1 = _py_sigmoid(a * w3 + b1)
    s2 = _py_sigmoid(a * w4 + b2)
    r1, r2 = s1 - y1, s2 - y2
    loss = r1 * r1 + r2 * r2
    dz1 = 2.0 * r1 * s1 * (1.0 - s1)          # dloss/dz1 = 2 r1 sigmoid'(z1)
    dz2 = 2.0 * r2 * s2 * (1.0 - s2)
    dz = (w3 * dz1 + w4 * dz2) * a * (1.0 - a)  # dloss/dz
    return loss, {"w1": x1 * dz, "w2": x2 * dz, "b": dz, "w3": a * dz1,
                  "w4": a * dz2, "b1": dz1, "b2": dz2}


def _neuron_jax(x1, x2, y1, y2, w1, w2, b, w3, w4, b1, b2):
    import jax
    a = jax.nn.sigmoid(x1 * w1 + x2 * w2 + b)
    return ((jax.nn.sigmoid(a * w3 + b1) - y1) ** 2
            + (jax.nn.sigmoid(a * w4 + b2) - y2) ** 2)


def _neuron_torch(x1, x2, y1, y2, w1, w2, b, w3, w4, b1, b2):
    import torch
    a = torch.sigmoid(x1 * w1 + x2 * w2 + b)
    return ((torch.sigmoid(a * w3 + b1) - y1) ** 2
            + (torch.sigmoid(a * w4 + b2) - y2) ** 2)


NEURON = Workload(
    name="neuron",
    description="the lecture's neuron network on f64 scalars: call latency "
                "from Python with Python floats",
    source=lambda smoke: NEURON_SRC,
    inputs=NEURON_INPUTS, params=NEURON_PARAMS,
    make_inputs=_neuron_inputs, numpy_vg=_neuron_numpy,
    jax_loss=_neuron_jax, torch_loss=_neuron_torch,
    notes=["numpy by hand = Python floats and math.exp (numpy on scalars is "
           "slower)", "torch: params are 0-d tensors (autograd needs "
           "tensors), inputs Python floats"],
)


# ------------------------------------------------------------------ rosenbrock
ROSEN_SRC = """\
dim N
param x: f64[N]
loss = sum(100*(x[1:] - x[:-1]^2)^2 + (1 - x[:-1])^2)
output loss
"""


def _rosen_inputs(smoke: bool, seed: int) -> dict[str, Any]:
    n = 1000 if smoke else 10**6
    rng = np.random.default_rng(seed)
    return {"x": rng.uniform(-2.0, 2.0, size=n)}


def _rosen_numpy(x):
    xa, xb = x[:-1], x[1:]
    t = xb - xa * xa
    u = 1.0 - xa
    loss = 100.0 * np.dot(t, t) + np.dot(u, u)
    g = np.empty_like(x)
    g[:-1] = -400.0 * t * xa - 2.0 * u     # d/dx_i of both terms with x_i = xa
    g[-1] = 0.0
    g[1:] += 200.0 * t                      # d/dx_{i+1} of 100 t_i^2
    return float(loss), {"x": g}


def _rosen_jax(x):
    import jax.numpy as jnp
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def _rosen_torch(x):
    import torch
    return torch.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


ROSENBROCK = Workload(
    name="rosenbrock",
    description="sum(100*(x[1:] - x[:-1]^2)^2 + (1 - x[:-1])^2), x f64[N], "
                "N = 10^6 (memory-bound)",
    source=lambda smoke: ROSEN_SRC,
    inputs=(), params=("x",),
    make_inputs=_rosen_inputs, numpy_vg=_rosen_numpy,
    jax_loss=_rosen_jax, torch_loss=_rosen_torch,
    bytes_moved=lambda a: 2 * a["x"].nbytes,      # read x, write dx
)


# ---------------------------------------------------------- batched neuron
BNEURON_SRC = """\
# the neuron network over a batch of N samples; loss = mean over samples
dim N
input x1: f64[N]
input x2: f64[N]
input y1: f64[N]
input y2: f64[N]
param w1, w2, b, w3, w4, b1, b2

z    = x1*w1 + x2*w2 + b
a    = sigmoid(z)
z1   = a*w3 + b1
z2   = a*w4 + b2
loss = mean((sigmoid(z1) - y1)^2 + (sigmoid(z2) - y2)^2)

output loss
"""


def _bneuron_inputs(smoke: bool, seed: int) -> dict[str, Any]:
    n = 1000 if smoke else 10**6
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {
        "x1": rng.normal(size=n), "x2": rng.normal(size=n),
        "y1": rng.uniform(size=n), "y2": rng.uniform(size=n),
    }
    for k in NEURON_PARAMS:
        out[k] = float(rng.normal())
    return out


def _bneuron_numpy(x1, x2, y1, y2, w1, w2, b, w3, w4, b1, b2):
    n = x1.shape[0]
    a = _np_sigmoid(x1 * w1 + x2 * w2 + b)
    s1 = _np_sigmoid(a * w3 + b1)
    s2 = _np_sigmoid(a * w4 + b2)
    r1, r2 = s1 - y1, s2 - y2
    loss = (np.dot(r1, r1) + np.dot(r2, r2)) / n
    dz1 = (2.0 / n) * r1 * s1 * (1.0 - s1)   # dloss/dz1 per sample
    dz2 = (2.0 / n) * r2 * s2 * (1.0 - s2)
    dz = (w3 * dz1 + w4 * dz2) * a * (1.0 - a)
    return float(loss), {
        "w1": float(np.dot(dz, x1)), "w2": float(np.dot(dz, x2)),
        "b": float(dz.sum()), "w3": float(np.dot(dz1, a)),
        "w4": float(np.dot(dz2, a)), "b1": float(dz1.sum()),
        "b2": float(dz2.sum()),
    }


def _bneuron_jax(x1, x2, y1, y2, w1, w2, b, w3, w4, b1, b2):
    import jax.numpy as jnp
    return jnp.mean(_neuron_jax(x1, x2, y1, y2, w1, w2, b, w3, w4, b1, b2))


def _bneuron_torch(x1, x2, y1, y2, w1, w2, b, w3, w4, b1, b2):
    return _neuron_torch(x1, x2, y1, y2, w1, w2, b, w3, w4, b1, b2).mean()


BATCHED_NEURON = Workload(
    name="batched_neuron",
    description="the neuron network over N = 10^6 samples (x1,x2,y1,y2 "
                "f64[N], scalar params), loss = mean (memory-bound)",
    source=lambda smoke: BNEURON_SRC,
    inputs=NEURON_INPUTS, params=NEURON_PARAMS,
    make_inputs=_bneuron_inputs, numpy_vg=_bneuron_numpy,
    jax_loss=_bneuron_jax, torch_loss=_bneuron_torch,
    bytes_moved=lambda a: sum(a[k].nbytes for k in NEURON_INPUTS),
)


# ------------------------------------------------------------------ mlp
def _mlp_src(smoke: bool) -> str:
    return """\
dim B
dim D = 784
dim H = 256
dim C = 10

input x: f32[B, D]
input y: f32[B, C]    # one-hot labels
param W1: f32[D, H]
param b1: f32[H]
param W2: f32[H, C]
param b2: f32[C]

def dense(x, W, b) = x @ W + b

h      = relu(dense(x, W1, b1))
logits = dense(h, W2, b2)
loss   = mean(logsumexp(logits, axis=1) - sum(y * logits, axis=1))

output loss
"""


def _mlp_inputs(smoke: bool, seed: int) -> dict[str, Any]:
    bsz, d, h, c = (16 if smoke else 256), 784, 256, 10
    rng = np.random.default_rng(seed)
    y = np.zeros((bsz, c), np.float32)
    y[np.arange(bsz), rng.integers(0, c, size=bsz)] = 1.0
    f = np.float32
    return {
        "x": rng.uniform(0.0, 1.0, size=(bsz, d)).astype(f),
        "y": y,
        "W1": (rng.normal(size=(d, h)) / np.sqrt(d)).astype(f),
        "b1": (0.1 * rng.normal(size=h)).astype(f),
        "W2": (rng.normal(size=(h, c)) / np.sqrt(h)).astype(f),
        "b2": (0.1 * rng.normal(size=c)).astype(f),
    }


def _mlp_numpy(x, y, W1, b1, W2, b2):
    bsz = x.shape[0]
    pre = x @ W1 + b1
    h = np.maximum(pre, 0.0)
    logits = h @ W2 + b2
    m = logits.max(axis=1, keepdims=True)
    e = np.exp(logits - m)
    s = e.sum(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(s[:, 0])
    loss = np.mean(lse - np.sum(y * logits, axis=1))
    dlogits = (e / s - y) * np.float32(1.0 / bsz)   # (softmax - y) / B
    gW2 = h.T @ dlogits
    gb2 = dlogits.sum(axis=0)
    dpre = (dlogits @ W2.T) * (pre > 0)             # relu'(0) = 0
    gW1 = x.T @ dpre
    gb1 = dpre.sum(axis=0)
    return float(loss), {"W1": gW1, "b1": gb1, "W2": gW2, "b2": gb2}


def _mlp_jax(x, y, W1, b1, W2, b2):
    import jax
    import jax.numpy as jnp
    h = jax.nn.relu(x @ W1 + b1)
    logits = h @ W2 + b2
    return jnp.mean(jax.nn.logsumexp(logits, axis=1)
                    - jnp.sum(y * logits, axis=1))


def _mlp_torch(x, y, W1, b1, W2, b2):
    import torch
    h = torch.relu(x @ W1 + b1)
    logits = h @ W2 + b2
    return torch.mean(torch.logsumexp(logits, dim=1)
                      - torch.sum(y * logits, dim=1))


def mlp_flops(a: dict) -> float:
    """Matmul flops of one value+grad: 2*M*N*K per product.

    Forward x@W1 and h@W2; backward dW2 = h.T@dlogits, dh = dlogits@W2.T and
    dW1 = x.T@dpre (dx is not needed: x is an input). Five products.
    """
    bsz, d = a["x"].shape
    h = a["W1"].shape[1]
    c = a["W2"].shape[1]
    return 2.0 * bsz * d * h * 2 + 2.0 * bsz * h * c * 3


def mlp_matmul_shapes(a: dict) -> list[tuple[tuple[int, int], tuple[int, int], bool, bool]]:
    """The five products as (lhs shape, rhs shape, transpose lhs, transpose rhs)."""
    bsz, d = a["x"].shape
    h = a["W1"].shape[1]
    c = a["W2"].shape[1]
    return [((bsz, d), (d, h), False, False),   # x @ W1
            ((bsz, h), (h, c), False, False),   # h @ W2
            ((bsz, h), (bsz, c), True, False),  # h.T @ dlogits
            ((bsz, c), (h, c), False, True),    # dlogits @ W2.T
            ((bsz, d), (bsz, h), True, False)]  # x.T @ dpre


MLP = Workload(
    name="mlp",
    description="784-256-10 relu MLP, f32, batch 256, softmax cross-entropy "
                "(compute-bound: matmuls)",
    source=_mlp_src,
    inputs=("x", "y"), params=("W1", "b1", "W2", "b2"),
    make_inputs=_mlp_inputs, numpy_vg=_mlp_numpy,
    jax_loss=_mlp_jax, torch_loss=_mlp_torch,
    f32=True, flops=mlp_flops,
)


# ------------------------------------------------------------------ logreg
LOGREG_SRC = """\
dim N
dim D = 64
input X: f64[N, D]
input y: f64[N]       # labels in {-1, +1}
param w: f64[D]
param b: f64

loss = mean(softplus(-y*(X@w + b))) + 1e-3*sum(w^2)
output loss
"""


def _logreg_inputs(smoke: bool, seed: int) -> dict[str, Any]:
    n, d = (200 if smoke else 100_000), 64
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    w_true = rng.normal(size=d) / np.sqrt(d)
    y = np.where(X @ w_true + 0.5 * rng.normal(size=n) > 0, 1.0, -1.0)
    return {"X": X, "y": y, "w": 0.1 * rng.normal(size=d),
            "b": float(0.1 * rng.normal())}


def _logreg_numpy(X, y, w, b):
    n = X.shape[0]
    t = -y * (X @ w + b)
    sp = np.logaddexp(0.0, t)                    # softplus(t), stable
    loss = sp.mean() + 1e-3 * np.dot(w, w)
    dm = np.exp(t - sp) * (-y / n)               # softplus' = sigmoid = exp(t - sp)
    return float(loss), {"w": X.T @ dm + 2e-3 * w, "b": float(dm.sum())}


def _logreg_jax(X, y, w, b):
    import jax
    import jax.numpy as jnp
    return (jnp.mean(jax.nn.softplus(-y * (X @ w + b)))
            + 1e-3 * jnp.sum(w ** 2))


def _logreg_torch(X, y, w, b):
    import torch
    import torch.nn.functional as F
    return (torch.mean(F.softplus(-y * (X @ w + b)))
            + 1e-3 * torch.sum(w ** 2))


LOGREG = Workload(
    name="logreg",
    description="L2-regularised logistic regression, X f64[100000,64] "
                "(memory-bound: one pass over X is the minimum)",
    source=lambda smoke: LOGREG_SRC,
    inputs=("X", "y"), params=("w", "b"),
    make_inputs=_logreg_inputs, numpy_vg=_logreg_numpy,
    jax_loss=_logreg_jax, torch_loss=_logreg_torch,
    bytes_moved=lambda a: a["X"].nbytes + a["y"].nbytes + 2 * a["w"].nbytes,
)


# ------------------------------------------------------------------ chain
CHAIN_STEPS = 300
CHAIN_SMOKE_STEPS = 30
CHAIN_KINDS = 5


def _chain_coef(k: int) -> float:
    return round(0.01 * (1.0 + (k % 7) / 7.0), 6)


def _chain_step_expr(k: int, x: str) -> str:
    c = _chain_coef(k)
    kind = k % CHAIN_KINDS
    if kind == 0:
        return f"{x} + {c}*sin({x})"
    if kind == 1:
        return f"{x} + {c}*tanh({x})"
    if kind == 2:
        return f"{x} * (1 + {c}*exp(-{x}^2))"
    if kind == 3:
        return f"{x} - {c}*{x}*sigmoid({x})"
    return f"{x} + {c}*cos({x})*{x}"


def _chain_src(steps: int) -> str:
    lines = [f"# {steps} generated elementwise updates of a vector",
             "dim N", "param x: f64[N]", "x0 = x"]
    for k in range(steps):
        lines.append(f"x{k + 1} = {_chain_step_expr(k, f'x{k}')}")
    lines += [f"loss = sum(x{steps})", "output loss", ""]
    return "\n".join(lines)


def _chain_inputs(smoke: bool, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=1000)}


def _chain_numpy(x, *, steps):
    # every step is elementwise, so d x_{k+1}/d x_k is diagonal and the
    # gradient is the product of the local derivatives (one fused pass)
    g = np.ones_like(x)
    for k in range(steps):
        c = _chain_coef(k)
        kind = k % CHAIN_KINDS
        if kind == 0:
            g *= 1.0 + c * np.cos(x)
            x = x + c * np.sin(x)
        elif kind == 1:
            t = np.tanh(x)
            g *= 1.0 + c * (1.0 - t * t)
            x = x + c * t
        elif kind == 2:
            e = np.exp(-x * x)
            g *= 1.0 + c * e * (1.0 - 2.0 * x * x)
            x = x * (1.0 + c * e)
        elif kind == 3:
            s = _np_sigmoid(x)
            g *= 1.0 - c * (s + x * s * (1.0 - s))
            x = x - c * x * s
        else:
            cs = np.cos(x)
            g *= 1.0 + c * (cs - x * np.sin(x))
            x = x + c * cs * x
    return float(x.sum()), {"x": g}


def _chain_generic(x, steps, sin, tanh, exp, sigmoid, cos, sum_):
    for k in range(steps):
        c = _chain_coef(k)
        kind = k % CHAIN_KINDS
        if kind == 0:
            x = x + c * sin(x)
        elif kind == 1:
            x = x + c * tanh(x)
        elif kind == 2:
            x = x * (1 + c * exp(-x ** 2))
        elif kind == 3:
            x = x - c * x * sigmoid(x)
        else:
            x = x + c * cos(x) * x
    return sum_(x)


def _chain_jax(x, *, steps):
    import jax
    import jax.numpy as jnp
    return _chain_generic(x, steps, jnp.sin, jnp.tanh, jnp.exp, jax.nn.sigmoid,
                          jnp.cos, jnp.sum)


def _chain_torch(x, *, steps):
    import torch
    return _chain_generic(x, steps, torch.sin, torch.tanh, torch.exp, torch.sigmoid,
                          torch.cos, torch.sum)


def _chain(steps: int) -> Workload:
    return Workload(
        name="chain",
        description=f"{steps} generated elementwise updates (sin/tanh/exp/"
                    f"sigmoid/cos mix) of x f64[1000]; loss = sum(x_{steps}): "
                    "compile time and per-op overhead",
        source=lambda smoke: _chain_src(steps),
        inputs=(), params=("x",),
        make_inputs=_chain_inputs,
        numpy_vg=functools.partial(_chain_numpy, steps=steps),
        jax_loss=functools.partial(_chain_jax, steps=steps),
        torch_loss=functools.partial(_chain_torch, steps=steps),
    )


def workloads(smoke: bool = False) -> dict[str, Workload]:
    """The workloads by name, in run order (the chain is shorter in smoke)."""
    chain = _chain(CHAIN_SMOKE_STEPS if smoke else CHAIN_STEPS)
    return {w.name: w for w in (NEURON, ROSENBROCK, BATCHED_NEURON, MLP,
                                LOGREG, chain)}


WORKLOAD_NAMES = tuple(workloads())


# ================================================================ peers
@dataclass
class Peer:
    kind: str
    call: Callable[[], Any]                                  # one value+grad
    to_numpy: Callable[[Any], tuple[float, dict[str, np.ndarray]]]
    first_call_s: float | None = None                        # trace+compile


def _jax():
    import jax
    jax.config.update("jax_enable_x64", True)
    return jax


def build_peer(w: Workload, kind: str, args: dict[str, Any]) -> Peer:
    """Prepare peer `kind` on `args`; raises ImportError if not installed.

    Inputs are converted to the peer's arrays here, outside the timing. For
    jax and torch.compile the first call (trace + compile) is made and timed
    here, so `Peer.call` is steady state.
    """
    import time

    if kind == "numpy":
        return Peer(kind, lambda: w.numpy_vg(**args), _numpy_result)

    if kind == "jax":
        jax = _jax()
        names = w.arg_names
        nin = len(w.inputs)

        def f(*xs):
            return w.jax_loss(**dict(zip(names, xs)))

        vg = jax.jit(jax.value_and_grad(f, argnums=tuple(range(nin, len(names)))))
        # Python floats stay Python floats (call latency from Python floats)
        xs = [v if isinstance(v, float) else jax.device_put(v)
              for v in (args[n] for n in names)]

        def call():
            return jax.block_until_ready(vg(*xs))

        t0 = time.perf_counter()
        call()
        first = time.perf_counter() - t0

        def to_np(res):
            val, grads = res
            return float(val), {p: np.asarray(g) for p, g in zip(w.params, grads)}

        return Peer(kind, call, to_np, first)

    if kind in ("torch", "torch.compile"):
        import torch
        t: dict[str, Any] = {}
        for n in w.arg_names:
            v = args[n]
            if n in w.params:
                tv = (torch.tensor(v, dtype=torch.float64) if isinstance(v, float)
                      else torch.from_numpy(np.ascontiguousarray(v)))
                t[n] = tv.requires_grad_(True)
            else:  # inputs: Python floats stay floats, arrays are shared
                t[n] = v if isinstance(v, float) else torch.from_numpy(v)
        plist = [t[p] for p in w.params]
        loss_fn = w.torch_loss
        if kind == "torch.compile":
            loss_fn = torch.compile(w.torch_loss, dynamic=False)

        def call():
            loss = loss_fn(**t)
            grads = torch.autograd.grad(loss, plist)
            return loss.detach(), grads

        def to_np(res):
            val, grads = res
            return float(val), {p: g.numpy() for p, g in zip(w.params, grads)}

        first = None
        if kind == "torch.compile":
            t0 = time.perf_counter()
            call()
            first = time.perf_counter() - t0
        return Peer(kind, call, to_np, first)

    raise ValueError(f"unknown peer kind {kind!r}")


def _numpy_result(res):
    val, grads = res
    return float(val), {k: np.asarray(v) for k, v in grads.items()}


def compare(w: Workload, ref: tuple[float, dict], got: tuple[float, dict]) -> list[str]:
    """Differences between two (value, grads) results; [] when they agree."""
    rtol, atol_rel = w.tolerance()
    problems = []
    rv, rg = ref
    gv, gg = got
    rv, gv = float(np.asarray(rv)), float(np.asarray(gv))
    if not np.isclose(gv, rv, rtol=rtol, atol=atol_rel * max(1.0, abs(rv))):
        problems.append(f"value {gv!r} != {rv!r}")
    for p in w.params:
        if p not in gg:
            problems.append(f"grad {p} missing")
            continue
        a = np.asarray(gg[p], dtype=np.float64)
        b = np.asarray(rg[p], dtype=np.float64)
        if a.shape != b.shape:
            problems.append(f"grad {p} shape {a.shape} != {b.shape}")
            continue
        scale = float(np.max(np.abs(b))) if b.size else 0.0
        if not np.allclose(a, b, rtol=rtol, atol=atol_rel * max(scale, 1e-300)):
            err = float(np.max(np.abs(a - b)))
            problems.append(f"grad {p} max abs err {err:.3g} (max |ref| {scale:.3g})")
    return problems


def _selfcheck(argv=None) -> int:
    """Check every available peer against numpy-by-hand and finite differences."""
    import argparse
    ap = argparse.ArgumentParser(description=_selfcheck.__doc__)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--only", default="")
    ns = ap.parse_args(argv)
    wls = workloads(ns.smoke)
    bad = 0
    names = [n for n in ns.only.split(",") if n] or list(wls)
    for name in names:
        w = wls[name]
        args = w.make_inputs(ns.smoke, 0)
        ref = _numpy_result(w.numpy_vg(**args))
        # finite differences of the hand-written value along a random direction
        bad += _fd_check(w, args, ref)
        for kind in PEER_KINDS[1:]:
            try:
                peer = build_peer(w, kind, args)
            except ImportError as e:
                print(f"{name:15s} {kind:14s} skipped ({e})")
                continue
            got = peer.to_numpy(peer.call())
            problems = compare(w, ref, got)
            bad += bool(problems)
            print(f"{name:15s} {kind:14s} {'OK' if not problems else 'MISMATCH'} "
                  + "; ".join(problems))
    return 1 if bad else 0


def _fd_check(w: Workload, args: dict, ref) -> int:
    rng = np.random.default_rng(1)
    dirs = {}
    for p in w.params:
        v = np.asarray(args[p], dtype=np.float64)
        dirs[p] = rng.normal(size=v.shape)
    h = 1e-6

    def at(s):
        # in f64 even for an f32 workload, so that h can be small
        a = {k: (v if isinstance(v, float) else np.asarray(v, np.float64))
             for k, v in args.items()}
        for p in w.params:
            v = a[p] + s * dirs[p]
            a[p] = float(v) if isinstance(args[p], float) else v
        return float(w.numpy_vg(**a)[0])

    fd = (at(h) - at(-h)) / (2 * h)
    an = sum(float(np.sum(np.asarray(ref[1][p], np.float64) * dirs[p])) for p in w.params)
    tol = 2e-3 if w.f32 else 1e-5
    ok = abs(fd - an) <= tol * max(1.0, abs(an))
    print(f"{w.name:15s} {'numpy fd':14s} {'OK' if ok else 'MISMATCH'} "
          f"directional derivative analytic {an:.8g} vs finite difference {fd:.8g}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(_selfcheck())
