"""Benchmark of ash's native MLP kernel against numpy, scikit-learn and JAX, in one run.

Times ms per epoch (median of several timed runs) of the same network (ReLU hidden layer,
softmax cross-entropy, SGD with momentum 0.9, float32) on:

* Iris, full batch, hidden 64;
* digits, hidden 128, batch 32 and full batch;
* make_classification(100000, 64, 10 classes), hidden 256, batch 256.

at 1 and 2 threads: threadpoolctl limits ash (OpenMP), numpy and scikit-learn (OpenBLAS);
JAX runs in a subprocess with XLA flags (and CPU affinity) per thread count, jit per step and
the whole loop jitted, compile time excluded and reported. The large case also reports GFLOP/s
beside numpy's sgemm throughput. Run (OpenBLAS left to its own core detection):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/kernel/run.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

LR, MOMENTUM = 0.01, 0.9
TARGET_S = 0.25  # each timed run lasts about this long
REPS = 5


@dataclass(frozen=True)
class Case:
    name: str
    dataset: str
    hidden: int
    batch: int  # 0: full batch


CASES = [
    Case("Iris full batch, hidden 64", "iris", 64, 0),
    Case("digits batch 32, hidden 128", "digits", 128, 32),
    Case("digits full batch, hidden 128", "digits", 128, 0),
    Case("100k x 64, hidden 256, batch 256", "big", 256, 256),
]


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    if name == "iris":
        d = datasets.load_iris()
        X, y = d.data, d.target
    elif name == "digits":
        d = datasets.load_digits()
        X, y = d.data, d.target
    else:
        X, y = datasets.make_classification(
            100000,
            64,
            n_informative=32,
            n_redundant=16,
            n_classes=10,
            n_clusters_per_class=1,
            random_state=0,
        )
    X = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-8)
    return np.ascontiguousarray(X, dtype=np.float32), np.asarray(y, dtype=np.int32)


def flops_per_epoch(n: int, d: int, h: int, c: int) -> float:
    """2mnk per matmul: forward x2, backward dW1, dW2 and dH (no dX)."""
    return 2.0 * n * (d * h + h * c) * 2 + 2.0 * n * h * c


def init_params(d: int, h: int, c: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    w1 = rng.uniform(-1, 1, (d, h)) * np.sqrt(6.0 / d)
    w2 = rng.uniform(-1, 1, (h, c)) * np.sqrt(6.0 / h)
    return [a.astype(np.float32) for a in (w1, np.zeros(h), w2, np.zeros(c))]


WAIT_QUIET_S = 0.0  # --wait-quiet: wait up to this long for an idle machine before timing


def _busy_fraction(interval: float = 0.5) -> float:
    """Share of all CPUs busy (any process) over `interval`, from /proc/stat."""

    def snap() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]
        return sum(v) - idle, sum(v)

    b0, t0 = snap()
    time.sleep(interval)
    b1, t1 = snap()
    return (b1 - b0) / max(1, t1 - t0)


def wait_quiet() -> None:
    """On a shared machine, wait (bounded) until other work leaves the CPUs idle."""
    deadline = time.monotonic() + WAIT_QUIET_S
    while time.monotonic() < deadline and _busy_fraction() > 0.08:
        pass


def timed(run_epochs: Callable[[int], Any]) -> tuple[float, Any]:
    """Median seconds per epoch: grow the epoch count to ~TARGET_S, then time REPS runs."""
    wait_quiet()
    e, out = 1, run_epochs(1)  # warm-up
    while True:
        t = time.perf_counter()
        out = run_epochs(e)
        dt = time.perf_counter() - t
        if dt >= TARGET_S / 4 or e >= 1 << 16:
            break
        e *= 2
    e = max(1, int(e * TARGET_S / max(dt, 1e-9)))
    times = []
    for _ in range(REPS):
        t = time.perf_counter()
        out = run_epochs(e)
        times.append((time.perf_counter() - t) / e)
    return statistics.median(times), out


# ---- ash ------------------------------------------------------------------------------------


def bench_ash(X: np.ndarray, y: np.ndarray, case: Case) -> dict[str, Any]:
    from ash.native import mlp

    c = int(y.max()) + 1
    state = mlp.init_state(X.shape[1], [case.hidden], c, seed=0)
    bs = case.batch or len(X)

    def run(e: int) -> mlp.TrainResult:
        return mlp.train(state, X, y, e, lr=LR, momentum=MOMENTUM, batch_size=bs)

    s, res = timed(run)
    return {"s": s, "threads": res.threads, "loss": res.train_loss}


# ---- numpy ----------------------------------------------------------------------------------


def bench_numpy(X: np.ndarray, y: np.ndarray, case: Case) -> dict[str, Any]:
    c = int(y.max()) + 1
    n = len(X)
    bs = case.batch or n
    p0 = init_params(X.shape[1], case.hidden, c)
    eye = np.eye(c, dtype=np.float32)
    rng = np.random.default_rng(0)

    def run(e: int) -> float:
        w1, b1, w2, b2 = (a.copy() for a in p0)
        v = [np.zeros_like(a) for a in (w1, b1, w2, b2)]
        loss = 0.0
        for _ in range(e):
            order = rng.permutation(n) if bs < n else None
            loss = 0.0
            for s0 in range(0, n, bs):
                idx = order[s0 : s0 + bs] if order is not None else slice(None)
                xb, yb = X[idx], y[idx]
                m = len(yb)
                zh = xb @ w1 + b1
                h = np.maximum(zh, 0)
                z = h @ w2 + b2
                z -= z.max(axis=1, keepdims=True)
                p = np.exp(z)
                s = p.sum(axis=1, keepdims=True)
                loss += float(np.log(s).sum() - z[np.arange(m), yb].sum())
                g = (p / s - eye[yb]) / np.float32(m)
                gw2, gb2 = h.T @ g, g.sum(axis=0)
                gh = g @ w2.T
                gh *= zh > 0
                gw1, gb1 = xb.T @ gh, gh.sum(axis=0)
                for vi, gi, pi in zip(v, (gw1, gb1, gw2, gb2), (w1, b1, w2, b2), strict=True):
                    vi *= MOMENTUM
                    vi += gi
                    pi -= np.float32(LR) * vi
            loss /= n
        return loss

    s, loss = timed(run)
    return {"s": s, "loss": loss}


# ---- scikit-learn ---------------------------------------------------------------------------


def bench_sklearn(X: np.ndarray, y: np.ndarray, case: Case) -> dict[str, Any]:
    """fit(max_iter=e) trains e epochs in one call (partial_fit pays input validation per epoch)."""
    import warnings

    from sklearn.neural_network import MLPClassifier

    bs = case.batch or len(X)

    def run(e: int) -> float:
        clf = MLPClassifier(
            hidden_layer_sizes=(case.hidden,),
            activation="relu",
            solver="sgd",
            alpha=0.0,
            batch_size=bs,
            learning_rate_init=LR,
            momentum=MOMENTUM,
            nesterovs_momentum=False,
            shuffle=True,
            random_state=0,
            max_iter=e,
            tol=0.0,
            n_iter_no_change=e + 1,
        )
        clf.fit(X, y)
        return float(clf.loss_)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s, loss = timed(run)
    return {"s": s, "loss": loss}


# ---- JAX (in a subprocess per thread count) -------------------------------------------------

JAX_CHILD = r"""
import json, sys, time, statistics
import numpy as np
import jax, jax.numpy as jnp
from jax import lax
jax.config.update("jax_platforms", "cpu")
args = json.loads(sys.argv[1])
data = np.load(args["data"])
X, y = jnp.asarray(data["X"]), jnp.asarray(data["y"])
n, d = X.shape; h = args["hidden"]; c = int(data["y"].max()) + 1
bs = args["batch"] or n; lr, mu = args["lr"], args["momentum"]
p0 = tuple(jnp.asarray(data[k]) for k in ("w1", "b1", "w2", "b2"))
TARGET, REPS = args["target"], args["reps"]

def loss_fn(p, xb, yb):
    w1, b1, w2, b2 = p
    z = jnp.maximum(xb @ w1 + b1, 0) @ w2 + b2
    return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.take_along_axis(z, yb[:, None], 1)[:, 0])

def sgd(p, v, xb, yb):
    l, g = jax.value_and_grad(loss_fn)(p, xb, yb)
    v = tuple(mu * vi + gi for vi, gi in zip(v, g))
    return tuple(pi - lr * vi for pi, vi in zip(p, v)), v, l

step = jax.jit(sgd)
nb, rem = n // bs, n % bs

def run_step(e):
    p, v = p0, tuple(jnp.zeros_like(a) for a in p0)
    rng = np.random.default_rng(0)
    for _ in range(e):
        if bs < n:
            perm = jnp.asarray(rng.permutation(n))
            Xp, yp = X[perm], y[perm]
        else:
            Xp, yp = X, y
        for b in range(0, n, bs):
            p, v, l = step(p, v, Xp[b:b + bs], yp[b:b + bs])
    jax.block_until_ready(p)
    return float(l)

@jax.jit
def run_loop_jit(e, key):
    def epoch(i, carry):
        p, v, key, l = carry
        key, sub = jax.random.split(key)
        if bs < n:
            perm = jax.random.permutation(sub, n)
            Xp, yp = X[perm], y[perm]
        else:
            Xp, yp = X, y
        def body(pv, xy):
            p, v, l = sgd(pv[0], pv[1], xy[0], xy[1])
            return (p, v), l
        (p, v), ls = lax.scan(body, (p, v), (Xp[: nb * bs].reshape(nb, bs, d),
                                            yp[: nb * bs].reshape(nb, bs)))
        l = ls[-1]
        if rem:
            p, v, l = sgd(p, v, Xp[nb * bs:], yp[nb * bs:])
        return p, v, key, l
    v0 = tuple(jnp.zeros_like(a) for a in p0)
    p, v, key, l = lax.fori_loop(0, e, epoch, (p0, v0, key, jnp.float32(0)))
    return p, l

def run_loop(e):
    p, l = run_loop_jit(e, jax.random.PRNGKey(0))
    jax.block_until_ready(p)
    return float(l)

def timed(f):
    e = 1
    while True:
        t = time.perf_counter(); f(e); dt = time.perf_counter() - t
        if dt >= TARGET / 4 or e >= 1 << 16: break
        e *= 2
    e = max(1, int(e * TARGET / max(dt, 1e-9)))
    ts = []
    for _ in range(REPS):
        t = time.perf_counter(); l = f(e); ts.append((time.perf_counter() - t) / e)
    return statistics.median(ts), l

out = {"version": jax.__version__}
for name, f in (("jax_step", run_step), ("jax_loop", run_loop)):
    t = time.perf_counter(); f(1); compile_s = time.perf_counter() - t
    s, l = timed(f)
    out[name] = {"s": s, "loss": l, "compile_s": compile_s}
print(json.dumps(out))
"""


def bench_jax(X: np.ndarray, y: np.ndarray, case: Case, threads: int, tmp: str) -> dict[str, Any]:
    c = int(y.max()) + 1
    w1, b1, w2, b2 = init_params(X.shape[1], case.hidden, c)
    path = os.path.join(tmp, f"jax_{case.dataset}.npz")
    np.savez(path, X=X, y=y, w1=w1, b1=b1, w2=w2, b2=b2)
    env = dict(os.environ)
    if threads == 1:
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    else:
        env.pop("XLA_FLAGS", None)
    cpus = sorted(os.sched_getaffinity(0))[:threads]
    args = {
        "data": path,
        "hidden": case.hidden,
        "batch": case.batch,
        "lr": LR,
        "momentum": MOMENTUM,
        "target": TARGET_S,
        "reps": REPS,
    }
    cmd = [sys.executable, "-c", JAX_CHILD, json.dumps(args)]
    wait_quiet()
    proc = subprocess.run(
        cmd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def sgemm_gflops(threads: int) -> float:
    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    wait_quiet()
    with threadpool_limits(threads):
        a @ a
        best = min(_time(lambda: a @ a) for _ in range(5))
    return 2 * 2048**3 / best / 1e9


def _time(f: Callable[[], Any]) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--cases", default="all", help="comma-separated case indexes (0-3) or all")
    ap.add_argument("--no-jax", action="store_true")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each measurement wait up to S seconds for an idle machine",
    )
    opts = ap.parse_args()
    global WAIT_QUIET_S
    WAIT_QUIET_S = opts.wait_quiet
    import tempfile

    from ash.native import isa

    thread_counts = [int(t) for t in opts.threads.split(",")]
    cases = CASES if opts.cases == "all" else [CASES[int(i)] for i in opts.cases.split(",")]
    try:
        import jax  # noqa: F401

        have_jax = not opts.no_jax
    except ImportError:
        have_jax = False
    results: dict[str, Any] = {"isa": isa(), "sgemm": {}, "cases": {}}
    for t in thread_counts:
        results["sgemm"][t] = sgemm_gflops(t)
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            X, y = load(case.dataset)
            row: dict[str, Any] = {"n": len(X), "d": X.shape[1], "c": int(y.max()) + 1}
            for t in thread_counts:
                with threadpool_limits(t):
                    r = {
                        "ash": bench_ash(X, y, case),
                        "numpy": bench_numpy(X, y, case),
                        "sklearn": bench_sklearn(X, y, case),
                    }
                if have_jax:
                    r.update(bench_jax(X, y, case, t, tmp))
                row[t] = r
                print(
                    case.name,
                    t,
                    {k: round(v["s"] * 1e3, 3) for k, v in r.items() if isinstance(v, dict)},
                    file=sys.stderr,
                )
            results["cases"][case.name] = row
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(results, f, indent=1)
    print(markdown(results, thread_counts, have_jax))


def markdown(res: dict[str, Any], threads: list[int], have_jax: bool) -> str:
    cols = ["ash", "numpy", "sklearn"] + (["jax_step", "jax_loop"] if have_jax else [])
    head = {
        "ash": "ash (threads used)",
        "numpy": "numpy (OpenBLAS)",
        "sklearn": "sklearn MLPClassifier",
        "jax_step": "JAX jit per step",
        "jax_loop": "JAX whole loop jitted",
    }
    tl = " / ".join(str(t) for t in threads)
    lines = [
        f"ms per epoch, median, {tl} threads (GEMM kernel: {res['isa']})",
        "",
        "| case | " + " | ".join(head[c] for c in cols) + " | ash speedup vs best |",
        "|---" * (len(cols) + 2) + "|",
    ]
    big = None
    for name, row in res["cases"].items():
        cells = []
        for c in cols:
            vals = []
            for t in threads:
                v = row[t][c]["s"] * 1e3
                txt = f"{v:.3f}" if v < 10 else f"{v:.1f}"
                if c == "ash":
                    txt += f" ({row[t]['ash']['threads']})"
                vals.append(txt)
            cells.append(" / ".join(vals))
        speed = []
        for t in threads:
            best = min(row[t][c]["s"] for c in cols if c != "ash")
            speed.append(f"{best / row[t]['ash']['s']:.1f}x")
        lines.append(f"| {name} | " + " | ".join(cells) + " | " + " / ".join(speed) + " |")
        if row["n"] == 100000:
            big = row
    if have_jax:
        comp = []
        for name, row in res["cases"].items():
            t = threads[0]
            comp.append(
                f"{name}: step {row[t]['jax_step']['compile_s']:.2f} s, "
                f"loop {row[t]['jax_loop']['compile_s']:.2f} s"
            )
        lines += ["", "JAX first-call (compile) time, excluded above: " + "; ".join(comp) + "."]
    if big is not None:
        fl = flops_per_epoch(big["n"], big["d"], 256, big["c"])
        parts = []
        for t in threads:
            gf = fl / big[t]["ash"]["s"] / 1e9
            sg = res["sgemm"][t]
            parts.append(
                f"{t} thread{'s' if t > 1 else ''}: {gf:.1f} GFLOP/s = "
                f"{100 * gf / sg:.0f}% of numpy sgemm 2048^3 ({sg:.1f} GFLOP/s)"
            )
        lines += ["", f"100k case, {fl / 1e9:.2f} GFLOP per epoch: " + "; ".join(parts) + "."]
        if len(threads) >= 2:
            a, b = threads[0], threads[1]
            sp = big[a]["ash"]["s"] / big[b]["ash"]["s"]
            lines.append(f"ash {b}-thread speedup on the 100k case: {sp:.2f}x.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
