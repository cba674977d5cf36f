"""Is a small-op score slower on the CPU under newer jax, and does an XLA setting fix it?

The formula is the exact mixture score as ``diffsde.GaussianMixture.score`` wrote it before
its matrix-product rewrite (issue 12): (n, K, d) temporaries, a softmax over components, VP
kernel inline, ``jax.jit(jax.vmap(score))`` over n points. It is written here with nothing
but jax, so the same file runs under any jax (0.4.33 … 0.10): one process measures the median
wall time of ``--calls`` calls (after a compiling call) in its own settings; ``--sweep`` runs
one process per setting (XLA_FLAGS, jax config, thread counts, dtype) and per ``--python``
interpreter, interleaved ``--repeats`` times, and prints medians.

    .venv/bin/python bench/cpu_small_ops.py                       # this jax, default settings
    python -m venv /tmp/jax0433 && /tmp/jax0433/bin/pip install jax==0.4.33 jaxlib==0.4.33
    .venv/bin/python bench/cpu_small_ops.py --sweep --python .venv/bin/python \
        /tmp/jax0433/bin/python
    .venv/bin/python bench/cpu_small_ops.py --sweep --settings default "YNN reduce fusion off"

A setting whose flag the interpreter's XLA does not know is reported as failed (XLA aborts on an
unknown flag: jax 0.4.33 has no YNN fusions).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# name -> (extra environment, extra args of the child)
SETTINGS = {
    "default": ({}, []),
    "float64 (jax_enable_x64)": ({"JAX_ENABLE_X64": "1"}, ["--float64"]),
    "thunk runtime off": ({"XLA_FLAGS": "--xla_cpu_use_thunk_runtime=false"}, []),
    "eigen single-thread": ({"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}, []),
    "async dispatch off": ({"JAX_CPU_ENABLE_ASYNC_DISPATCH": "0"}, ["--no-async"]),
    "1 host device forced": ({"XLA_FLAGS": "--xla_force_host_platform_device_count=1"}, []),
    "parallel codegen split 1": ({"XLA_FLAGS": "--xla_cpu_parallel_codegen_split_count=1"}, []),
    "fusion emitters off": ({"XLA_FLAGS": "--xla_cpu_use_fusion_emitters=false"}, []),
    "1 core (taskset)": ({}, ["--taskset"]),
    "YNN reduce fusion off": ({"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=-reduce"}, []),
}


def measure(args) -> dict:
    """Median and minimum ms per call of the jitted vmapped score, in this process."""
    import jax

    if args.no_async:
        jax.config.update("jax_cpu_enable_async_dispatch", False)
    import jax.numpy as jnp
    import jax.random as jr

    dtype = jnp.float64 if args.float64 else jnp.float32
    key = jr.PRNGKey(0)
    mkey, skey, xkey = jr.split(key, 3)
    means = (2.0 * jr.normal(mkey, (args.components, args.dim))).astype(dtype)
    stds = jr.uniform(skey, (args.components,), minval=0.3, maxval=0.5).astype(dtype)
    log_weights = jnp.full((args.components,), -jnp.log(args.components), dtype)
    x = jr.normal(xkey, (args.n, args.dim)).astype(dtype)
    beta_0, beta_1 = 0.1, 20.0

    def score(x, t):  # GaussianMixture.score before issue 12, VP kernel inline
        lam = jnp.exp(-0.5 * (beta_0 * t + 0.5 * (beta_1 - beta_0) * t**2))
        sigma = jnp.sqrt(1 - lam**2)
        m, s = lam * means, jnp.sqrt(lam**2 * stds**2 + sigma**2)
        sq = jnp.sum((x - m) ** 2, axis=-1)
        log_comp = -0.5 * sq / s**2 - args.dim * jnp.log(s)
        resp = jax.nn.softmax(log_weights + log_comp)
        return jnp.sum(resp[:, None] * (m - x) / s[:, None] ** 2, axis=0)

    f = jax.jit(jax.vmap(score, in_axes=(0, None)))
    t = jnp.asarray(0.5, dtype)
    jax.block_until_ready(f(x, t))
    times = []
    for _ in range(args.calls):
        start = time.perf_counter()
        jax.block_until_ready(f(x, t))
        times.append(time.perf_counter() - start)
    return {
        "jax": jax.__version__,
        "median_ms": 1e3 * statistics.median(times),
        "min_ms": 1e3 * min(times),
        "dtype": str(f(x, t).dtype),
    }


def child(python: str, setting: str, args) -> dict:
    env, extra = SETTINGS[setting]
    command = [python, os.path.abspath(__file__), "--json", *extra]
    command += ["--n", str(args.n), "--dim", str(args.dim), "--components", str(args.components)]
    command += ["--calls", str(args.calls)]
    if "--taskset" in extra:
        command.remove("--taskset")
        command = ["taskset", "-c", "0", *command]
    run = subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": last[:90]}
    return json.loads(run.stdout.strip().splitlines()[-1])


def sweep(args) -> None:
    results = {(p, s): [] for p in args.python for s in SETTINGS}
    unknown = set(args.settings or ()) - set(SETTINGS)
    if unknown:
        raise SystemExit(f"unknown settings {sorted(unknown)}: choose from {sorted(SETTINGS)}")
    errors = {}
    settings = args.settings or list(SETTINGS)
    for _ in range(args.repeats):
        for python in args.python:
            for setting in settings:
                out = child(python, setting, args)
                if "error" in out:
                    errors[python, setting] = out["error"]
                else:
                    results[python, setting].append(out)
    print(
        f"mixture score, n = {args.n}, d = {args.dim}, K = {args.components}: ms per call, "
        f"median over {args.repeats} processes of each one's median of {args.calls} calls"
    )
    for python in args.python:
        for setting in settings:
            runs = results[python, setting]
            if not runs:
                print(f"{python:28s} {setting:28s} failed: {errors.get((python, setting))}")
                continue
            median = statistics.median(r["median_ms"] for r in runs)
            low = min(r["min_ms"] for r in runs)
            label = f"jax {runs[0]['jax']}"
            print(f"{label:12s} {setting:28s} {median:8.2f} ms (min {low:.2f}) {runs[0]['dtype']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40_000)
    parser.add_argument("--dim", type=int, default=2)
    parser.add_argument("--components", type=int, default=5)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--float64", action="store_true")
    parser.add_argument("--no-async", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON line (for --sweep)")
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--python", nargs="+", default=[sys.executable])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--settings", nargs="+", help="a subset of the settings (default: all)")
    args = parser.parse_args()
    if args.sweep:
        sweep(args)
        return
    out = measure(args)
    print(json.dumps(out) if args.json else f"jax {out['jax']}: {out['median_ms']:.2f} ms/call")


if __name__ == "__main__":
    main()
