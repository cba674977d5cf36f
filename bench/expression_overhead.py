"""Does writing an SDE as spec expressions cost anything at run time?

Times one jitted PF-ODE-style vector-field evaluation b(t, x) - 0.5 g(t)^2 s(x, t) (with the
score of N(0, I), s = -x) over a batch, for the built-in VP SDE and for the same SDE written
as `general` expressions, side by side in one process, and prints the ratio.

    .venv/bin/python bench/expression_overhead.py [--n 100000] [--repeats 200]
"""

import argparse
import time

import jax
import jax.numpy as jnp

import diffsde


def _vector_field(sde):
    field = sde.probability_flow(lambda x, t: -x)

    @jax.jit
    def run(ts, xs):
        return jax.vmap(jax.vmap(field, in_axes=(None, 0)), in_axes=(0, None))(ts, xs)

    return run


def _time(fn, *args, repeats):
    jax.block_until_ready(fn(*args))  # compile
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            out = fn(*args)
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()

    params = {"beta_min": 0.1, "beta_max": 20.0}
    built_in = diffsde.VP(args.dim)
    expression = diffsde.General(
        args.dim,
        diffsde.compile_expression(
            "-0.5 * (beta_min + t * (beta_max - beta_min)) * x", ("t", "x"), params
        ),
        diffsde.compile_expression("sqrt(beta_min + t * (beta_max - beta_min))", ("t",), params),
    )
    xs = jax.random.normal(jax.random.key(0), (args.n, args.dim))
    ts = jnp.linspace(0.1, 1.0, 4)
    a, b = _vector_field(built_in), _vector_field(expression)
    assert jnp.allclose(a(ts, xs), b(ts, xs), rtol=1e-5, atol=1e-6)
    t_builtin = _time(a, ts, xs, repeats=args.repeats)
    t_expr = _time(b, ts, xs, repeats=args.repeats)
    print(f"device: {jax.devices()[0].platform}, batch {args.n} x dim {args.dim} x 4 times")
    print(f"built-in VP           {t_builtin * 1e3:8.3f} ms")
    print(f"VP as expressions     {t_expr * 1e3:8.3f} ms")
    print(f"ratio expression/built-in: {t_expr / t_builtin:.3f}")


if __name__ == "__main__":
    main()
