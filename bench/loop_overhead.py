"""What does diffsde's sampling loop cost on top of the solver's own arithmetic?

Side by side in one process, on the exact score of a 5-component Gaussian mixture
(``diffsde.GaussianMixture``, VP SDE, ε = 1e-3): every fixed-step sampler called through the
public ``diffsde.sample`` (chunking, NFE counting, the jitted dispatch, all included) against a
hand-written ``jax.jit`` of a ``lax.scan`` of the same update on the same score over the whole
batch. Wall times are medians of ``--repeats`` interleaved repeats (every repeat calls every
variant once, in turn) after a compiling warm-up call; the ratio is diffsde / hand-written.
The two give the same samples (to float32 round-off) for the deterministic PF-ODE solvers,
which the script asserts, and samples of the same law for the stochastic ones.

The adaptive reverse SDE (``reverse_sde_adaptive``) is timed per NFE against Euler–Maruyama
per NFE, both through ``diffsde.sample``, in d = 32 on ``--adaptive-n`` points.

    .venv/bin/python bench/loop_overhead.py            # d = 32, n = 10 000 and d = 2, n = 40 000
    .venv/bin/python bench/loop_overhead.py --quick    # smoke run: tiny sizes
"""

import argparse
import statistics
import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax
from sampling import mixture  # bench/sampling.py, this script's directory

import diffsde
from diffsde import (
    AdaptiveReverseSDE,
    ClassicalRK4,
    Euler,
    EulerMaruyama,
    ExponentialIntegrator,
    FixedSteps,
    Heun,
    PredictorCorrector,
    ProbabilityFlow,
)

EPS = 1e-3


def mixture_score(mix, sde, x, t):
    return mix.score(x, t, sde)


# hand-written loops: one jit, one lax.scan over the uniform grid, the score vmapped over rows --


def _grid(sde, steps):
    return jnp.linspace(sde.T, EPS, steps + 1)


def _rows(score):
    return jax.vmap(lambda x, t: score(x, t), in_axes=(0, None))


def hand_pf_ode(stages: str, steps: int):
    """The PF-ODE dx/dt = b − ½ g² s by Euler, Heun or RK4 on ``steps`` uniform steps."""

    @jax.jit
    def run(sde, score, x_T, key):
        del key
        s = _rows(score)

        def f(t, x):
            return -sde.schedule.beta(t) / 2 * x - 0.5 * sde.schedule.beta(t) * s(x, t)

        def step(x, times):
            t, t_next = times
            h = t_next - t
            if stages == "euler":
                return x + h * f(t, x), None
            if stages == "heun":
                k1 = f(t, x)
                k2 = f(t_next, x + h * k1)
                return x + h / 2 * (k1 + k2), None
            k1 = f(t, x)
            k2 = f(t + h / 2, x + h / 2 * k1)
            k3 = f(t + h / 2, x + h / 2 * k2)
            k4 = f(t_next, x + h * k3)
            return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), None

        ts = _grid(sde, steps)
        return jax.lax.scan(step, x_T, (ts[:-1], ts[1:]))[0]

    return run


def hand_euler_maruyama(steps: int):
    """x ← x + h (β x/2 + β s) + √(β h) z on the reverse SDE (VP), t from T down to ε."""

    @jax.jit
    def run(sde, score, x_T, key):
        s = _rows(score)

        def step(x, inputs):
            t, t_next, k = inputs
            h = t - t_next
            beta = sde.schedule.beta(t)
            z = jr.normal(k, x.shape)
            return x + h * (beta / 2 * x + beta * s(x, t)) + jnp.sqrt(beta * h) * z, None

        ts = _grid(sde, steps)
        return jax.lax.scan(step, x_T, (ts[:-1], ts[1:], jr.split(key, steps)))[0]

    return run


def hand_exponential(steps: int):
    """DEIS-style exponential step (frozen noise) on VP: x_s = a x_t + κ s + std z."""

    @jax.jit
    def run(sde, score, x_T, key):
        s = _rows(score)

        def step(x, inputs):
            t, t_next, k = inputs
            lam_t, sig_t = sde.kernel(t)
            lam_s, sig_s = sde.kernel(t_next)
            a = lam_s / lam_t
            kappa = 2 * sig_t * (a * sig_t - sig_s)
            std = jnp.sqrt(jnp.maximum((a * sig_t) ** 2 - sig_s**2, 0.0))
            return a * x + kappa * s(x, t) + std * jr.normal(k, x.shape), None

        ts = _grid(sde, steps)
        return jax.lax.scan(step, x_T, (ts[:-1], ts[1:], jr.split(key, steps)))[0]

    return run


def hand_pc(steps: int, snr: float = 0.16):
    """Euler–Maruyama predictor, then one Langevin corrector step at t_next (score_sde's)."""

    @jax.jit
    def run(sde, score, x_T, key):
        s = _rows(score)

        def step(x, inputs):
            t, t_next, k = inputs
            pkey, ckey = jr.split(k)
            h = t - t_next
            beta = sde.schedule.beta(t)
            z = jr.normal(pkey, x.shape)
            x = x + h * (beta / 2 * x + beta * s(x, t)) + jnp.sqrt(beta * h) * z
            g = s(x, t_next)
            z = jr.normal(ckey, x.shape)
            ratio = jnp.mean(jnp.linalg.norm(z, axis=-1)) / jnp.mean(jnp.linalg.norm(g, axis=-1))
            size = 2 * (snr * ratio) ** 2
            return x + size * g + jnp.sqrt(2 * size) * z, None

        ts = _grid(sde, steps)
        return jax.lax.scan(step, x_T, (ts[:-1], ts[1:], jr.split(key, steps)))[0]

    return run


def cases(ode_steps: int, sde_steps: int):
    """name -> (diffsde sampler, hand-written loop, deterministic)."""
    pf = {"euler": Euler, "heun": Heun, "rk4": ClassicalRK4}
    out = {
        f"pf_ode {name} {ode_steps} steps": (
            ProbabilityFlow(solver=solver(), controller=FixedSteps(steps=ode_steps)),
            hand_pf_ode(name, ode_steps),
            True,
        )
        for name, solver in pf.items()
    }
    out[f"euler_maruyama {sde_steps} steps"] = (
        EulerMaruyama(steps=sde_steps),
        hand_euler_maruyama(sde_steps),
        False,
    )
    out[f"exponential {sde_steps} steps"] = (
        ExponentialIntegrator(steps=sde_steps),
        hand_exponential(sde_steps),
        False,
    )
    out[f"pc {sde_steps // 2} steps"] = (
        PredictorCorrector(steps=sde_steps // 2, corrector_steps=1),
        hand_pc(sde_steps // 2),
        False,
    )
    return out


def timed(f):
    """Wall time of one call, and the process's CPU time (all threads) during it: other load
    on the machine stretches the first but hardly the second."""
    start, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(f())
    return time.perf_counter() - start, time.process_time() - cpu


def overhead(dim: int, n: int, args) -> None:
    sde = diffsde.VP(dim)
    mix = mixture(dim, jr.key(0))
    score = jax.tree_util.Partial(mixture_score, mix, sde)
    x_T = jr.normal(jr.key(1), (n, dim))
    key = jr.key(2)
    table = cases(args.ode_steps, args.sde_steps)
    calls = {}
    for name, (sampler, hand, deterministic) in table.items():
        calls[name, "diffsde"] = lambda s=sampler: (
            diffsde.sample(s, sde, score, x_T, key=key, chunk_size=args.chunk_size).x
        )
        calls[name, "hand"] = lambda h=hand: h(sde, score, x_T, key)
        if n > args.chunk_size:  # the same loop on chunks of chunk_size rows, concatenated
            calls[name, "hand, chunked"] = lambda h=hand: jnp.concatenate(
                [
                    h(sde, score, x_T[i : i + args.chunk_size], jr.fold_in(key, i))
                    for i in range(0, n, args.chunk_size)
                ]
            )
        for variant in [v for v in calls if v[0] == name][2:]:
            jax.block_until_ready(calls[variant]())  # compile
        ours, theirs = calls[name, "diffsde"](), calls[name, "hand"]()  # compile
        if deterministic:
            gap = float(jnp.max(jnp.abs(ours - theirs)))
            assert gap < 1e-3, (name, gap)
    times = {k: [] for k in calls}
    for _ in range(args.repeats):
        for k, f in calls.items():
            times[k].append(timed(f))
    print(f"\nd = {dim}, n = {n}, chunk_size = {args.chunk_size}: medians of {args.repeats}")
    chunked = n > args.chunk_size
    hands = ["hand", "hand, chunked"] if chunked else ["hand"]
    print(
        f"{'sampler':28s} {'diffsde ms':>11s} {'hand ms':>9s}"
        + (f" {'hand chunked':>13s}" if chunked else "")
        + f" {'ratio':>6s} {'CPU ratio':>9s}"
    )

    def median(key, which):
        return 1e3 * statistics.median(t[which] for t in times[key])

    for name in table:
        ours = median((name, "diffsde"), 0)
        theirs = [median((name, h), 0) for h in hands]
        cpu = median((name, "diffsde"), 1) / min(median((name, h), 1) for h in hands)
        hand = "".join(f" {t:{w}.1f}" for t, w in zip(theirs, (9, 13)))
        print(f"{name:28s} {ours:11.1f}{hand} {ours / min(theirs):6.2f} {cpu:9.2f}")
    print(
        "ratio: diffsde's median wall time / the faster hand-written loop's; CPU ratio: the same "
        "with the process's CPU time (insensitive to other load on the machine)"
    )


def _flat_reverse_terms(sde, score, shape, brownian) -> diffrax.MultiTerm:
    """The reverse SDE of a whole batch as one flat state (what AdaptiveReverseSDE solves),
    from the SDE's public reverse_drift and reverse_diffusion."""
    drift = jax.vmap(sde.reverse_drift(score), in_axes=(None, 0))
    return diffrax.MultiTerm(
        diffrax.ODETerm(lambda u, y, args: drift(u, y.reshape(shape)).reshape(-1)),
        diffrax.ControlTerm(
            lambda u, y, args: lineax.DiagonalLinearOperator(
                jnp.broadcast_to(sde.reverse_diffusion(u), y.shape)
            ),
            brownian,
        ),
    )


def _shark_fixed(sampler: AdaptiveReverseSDE, steps: int):
    """ShARK on a fixed uniform grid driven by ``UnsafeBrownianPath`` (diffrax refuses that
    path under an adaptive controller: a rejected step would draw fresh noise)."""

    @eqx.filter_jit
    def run(sde, score, x_T, key):
        U = sde.T - sampler.eps
        brownian = diffrax.UnsafeBrownianPath(
            shape=(x_T.size,), key=key, levy_area=diffrax.SpaceTimeLevyArea
        )
        sol = diffrax.diffeqsolve(
            _flat_reverse_terms(sde, score, x_T.shape, brownian),
            diffrax.ShARK(),
            t0=0.0,
            t1=U,
            dt0=None,
            y0=x_T.reshape(-1),
            stepsize_controller=diffrax.StepTo(jnp.linspace(0.0, U, steps + 1)),
            max_steps=steps,
            adjoint=diffrax.ForwardMode(),
        )
        return sol.ys[-1].reshape(x_T.shape), jnp.asarray(2 * steps)

    return run


def _per_sample(sampler: AdaptiveReverseSDE):
    """One adaptive solve per row under ``jax.vmap`` (its own Brownian tree and steps); the
    batched score runs once per iteration for every row, so NFE = 2 × the most steps."""

    @eqx.filter_jit
    def run(sde, score, x_T, key):
        def one(x, k):
            out = sampler.sample_from(sde, score, x[None], key=k)
            return out.x[0], out.nfe

        x, nfe = jax.vmap(one)(x_T, jr.split(key, x_T.shape[0]))
        return x, jnp.max(nfe)

    return run


def adaptive_per_nfe(args) -> None:
    dim, n = 32, args.adaptive_n
    sde = diffsde.VP(dim)
    mix = mixture(dim, jr.key(0))
    score = jax.tree_util.Partial(mixture_score, mix, sde)
    x_T = jr.normal(jr.key(1), (n, dim))

    def through_sample(sampler):
        def call(key):
            out = diffsde.sample(sampler, sde, score, x_T, key=key)
            return out.x, out.nfe

        return call

    variants = {
        "euler_maruyama": through_sample(EulerMaruyama(steps=args.sde_steps)),
        "reverse_sde_adaptive": through_sample(AdaptiveReverseSDE()),
    }
    if args.adaptive_variants:
        for tol in (1e-3, 1e-2):
            variants[f"  brownian_tol={tol:g}"] = through_sample(
                AdaptiveReverseSDE(brownian_tol=tol)
            )
        one = _per_sample(AdaptiveReverseSDE())
        variants["  one solve per sample (vmap)"] = lambda key: one(sde, score, x_T, key)
        fixed = _shark_fixed(AdaptiveReverseSDE(), args.sde_steps)
        variants["  ShARK fixed, unsafe path"] = lambda key: fixed(sde, score, x_T, key)
    nfe = {}
    for name, call in variants.items():
        nfe[name] = int(call(jr.key(2))[1])
    times = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, call in variants.items():
            times[name].append(timed(lambda c=call: c(jr.key(2))[0]))
    per = {
        name: 1e3 * statistics.median(t[0] for t in times[name]) / nfe[name] for name in variants
    }
    cpu = {
        name: 1e3 * statistics.median(t[1] for t in times[name]) / nfe[name] for name in variants
    }
    print(f"\nd = {dim}, n = {n}: ms per NFE (medians of {args.repeats})")
    for name in variants:
        ratio = per[name] / per["euler_maruyama"]
        cpu_ratio = cpu[name] / cpu["euler_maruyama"]
        print(
            f"{name:32s} NFE {nfe[name]:5d}  {per[name]:8.3f} ms/NFE  {ratio:6.2f}x EM"
            f"  (CPU time {cpu_ratio:6.2f}x EM)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ode-steps", type=int, default=10)
    parser.add_argument("--sde-steps", type=int, default=20)
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument("--adaptive-n", type=int, default=1000)
    parser.add_argument(
        "--adaptive-variants",
        action="store_true",
        help="also the Brownian tree's tolerance, one solve per sample, fixed-step ShARK",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    args = parser.parse_args()
    sizes = [(32, 10_000), (2, 40_000)]
    if args.quick:
        sizes, args.repeats, args.adaptive_n = [(4, 300)], 2, 100
        args.ode_steps, args.sde_steps, args.chunk_size = 3, 4, 128
    for dim, n in sizes:
        overhead(dim, n, args)
    adaptive_per_nfe(args)


if __name__ == "__main__":
    main()
