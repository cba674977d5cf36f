"""What does the training framework cost per step, against a minimal hand-written JAX loop?

A: ``diffsde.training.Trainer.run_chunk`` (``steps_per_dispatch`` = K steps in one ``lax.scan``)
with the built-in ``MLPScore`` (noise parameterisation) and ``DenoisingScoreMatching`` (σ²
weighting, uniform t) on a ``GaussianMixture``, once with the default training settings and once
configured like the hand loop (``grad_clip=None``; ``weight_decay`` is 0 by default).

B: the same ``eqx.nn.MLP`` (same initial weights, same sinusoidal time embedding), the same DSM
loss written by hand, ``optax.adam`` at a constant rate, a ``jax.jit``-ed chunk of K steps under
``lax.scan``, the data drawn inside with ``dataset.sample`` from ``fold_in(key, step)`` as the
trainer does. Same batch size, width and depth.

Timing is interleaved: each round times every variant once (``--chunks`` dispatches of K steps,
blocking on the result), over ``--rounds`` rounds; steps/s is reported as the median and the
best round. The ablation adds the trainer's features one at a time to the hand loop, to show
where any overhead goes.

    .venv/bin/python bench/training_throughput.py [--batch-size 256] [--K 50] [--rounds 7]
"""

import argparse
import os
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

import diffsde
from diffsde.spec import TrainingConfig, score_matching
from diffsde.training import Trainer

LEARNING_RATE = 1e-3
EPS = 1e-3
FEATURES = ("per_row_noise", "schedule_adamw", "clip", "ema", "metrics", "library_loss")


def mixture(dim: int) -> diffsde.GaussianMixture:
    key = jr.key(0)
    angles = jnp.linspace(0, 2 * jnp.pi, 6)[:-1]
    means = 2.5 * jnp.stack([jnp.cos(angles), jnp.sin(angles)], -1)
    means = jnp.concatenate([means, jnp.zeros((5, dim - 2))], -1) if dim > 2 else means
    return diffsde.GaussianMixture(jr.uniform(key, (5,)) + 0.5, means, 0.4)


def _score_model(args, sde, key):
    """The built-in MLPScore with the benchmark's sizes (both sides start from these weights)."""
    return diffsde.MLPScore(
        sde,
        width=args.width,
        depth=args.depth,
        n_frequencies=args.n_frequencies,
        parameterisation=diffsde.AutoParameterisation(),  # noise, for the VP SDE
        key=key,
    )


def framework(args, dataset, sde, model_key, train_key, **overrides):
    """A: the trainer, built as a user would."""
    model = _score_model(args, sde, model_key)
    config = TrainingConfig(
        steps=10**7,
        batch_size=args.batch_size,
        learning_rate=LEARNING_RATE,
        steps_per_dispatch=args.K,
        **overrides,
    )
    objective = diffsde.DenoisingScoreMatching(sde, eps=EPS)
    trainer = Trainer(
        score_matching(config, objective, model),
        dataset,
        train_key,
        steps=config.steps,
        batch_size=config.batch_size,
        steps_per_dispatch=config.steps_per_dispatch,
    )
    state = trainer.init(key=model_key)

    def run(state):
        state, rows = trainer.run_chunk(state)
        return state, rows["loss"]

    return run, state


def hand_loop(args, dataset, sde, model_key, train_key, features=()):
    """B: a minimal loop on the same architecture; ``features`` adds trainer features back."""
    unknown = set(features) - set(FEATURES)
    if unknown:
        raise ValueError(f"unknown features {sorted(unknown)}; choose from {FEATURES}")
    dim, T = dataset.dim, sde.T
    beta_min, beta_max = sde.schedule.beta_min, sde.schedule.beta_max
    frequencies = jnp.asarray(np.geomspace(1.0, 64.0, args.n_frequencies), jnp.float32)
    mlp = eqx.nn.MLP(
        in_size=dim + 2 * args.n_frequencies,
        out_size=dim,
        width_size=args.width,
        depth=args.depth,
        activation=jax.nn.silu,
        key=model_key,
    )
    if "library_loss" in features:  # the built-in MLPScore and DenoisingScoreMatching.loss
        mlp = _score_model(args, sde, model_key)
        objective = diffsde.DenoisingScoreMatching(sde, eps=EPS)
    params, static = eqx.partition(mlp, eqx.is_inexact_array)
    if "schedule_adamw" in features:
        lr = optax.warmup_cosine_decay_schedule(0.0, LEARNING_RATE, 100, 10**7, LEARNING_RATE / 100)
        parts = [optax.adamw(lr, weight_decay=0.0)]
    else:
        lr, parts = LEARNING_RATE, [optax.adam(LEARNING_RATE)]
    if "clip" in features:
        parts.insert(0, optax.clip_by_global_norm(1.0))
    opt = optax.chain(*parts)

    def net(params, x, t):
        phase = 2 * jnp.pi * frequencies * (t / T)
        return eqx.combine(params, static)(jnp.concatenate([x, jnp.sin(phase), jnp.cos(phase)]))

    def loss_fn(params, x0, key):
        if "library_loss" in features:
            return objective.loss(eqx.combine(params, static), x0, key=key)
        tkey, zkey = jr.split(key)
        n = x0.shape[0]
        t = EPS + (T - EPS) * jr.uniform(tkey, (n,))
        B = beta_min * t + (beta_max - beta_min) * t**2 / (2 * T)
        lam, sigma = jnp.exp(-0.5 * B)[:, None], jnp.sqrt(-jnp.expm1(-B))[:, None]
        if "per_row_noise" in features:  # as the objective: one key and one draw per row
            z = jax.vmap(lambda k: jr.normal(k, (dim,)))(jr.split(zkey, n))
        else:
            z = jr.normal(zkey, (n, dim))
        xt = lam * x0 + sigma * z
        noise = jax.vmap(net, in_axes=(None, 0, 0))(params, xt, t)
        # σ² |s_θ − ∇log p(x_t|x₀)|² with s_θ = −noise/σ and ∇log p = −z/σ
        return jnp.mean(jnp.sum((noise - z) ** 2, axis=-1))

    def step(carry, _):
        i, params, ema, opt_state = carry
        data_key, loss_key = jr.split(jr.fold_in(train_key, i))
        x0 = dataset.sample(key=data_key, n=args.batch_size)
        loss, grads = jax.value_and_grad(loss_fn)(params, x0, loss_key)
        updates, new_opt_state = opt.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        new_ema = ema
        if "ema" in features:
            n = i.astype(jnp.float32)
            rate = jnp.minimum(0.999, (1.0 + n) / (10.0 + n))
            new_ema = optax.incremental_update(new_params, ema, step_size=1.0 - rate)
        new = (i + 1, new_params, new_ema, new_opt_state)
        row = loss
        if "metrics" in features:
            rate = lr(i) if callable(lr) else lr
            row = (loss, jnp.asarray(rate, jnp.float32), optax.tree.norm(grads))
        return new, row

    @jax.jit
    def chunk(carry):
        return jax.lax.scan(step, carry, None, length=args.K)

    return chunk, (jnp.zeros((), jnp.int32), params, params, opt.init(params))


def time_rounds(variants, args):
    """steps/s of each variant, per round; rounds interleave the variants."""
    states = {}
    for name, (fn, state) in variants.items():  # compile and warm up
        state, out = fn(state)
        jax.block_until_ready((state, out))
        states[name] = state
    rates = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (fn, _) in variants.items():
            state = states[name]
            start = time.perf_counter()
            for _ in range(args.chunks):
                state, out = fn(state)
            jax.block_until_ready((state, out))
            rates[name].append(args.chunks * args.K / (time.perf_counter() - start))
            states[name] = state
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--n-frequencies", type=int, default=16)
    parser.add_argument("--K", type=int, default=50, help="steps per dispatch")
    parser.add_argument("--chunks", type=int, default=20, help="dispatches per timing")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-ablation", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 2 chunks")
    args = parser.parse_args()
    if args.quick:
        args.chunks, args.rounds = 2, 2
    sde = diffsde.VP(args.dim)
    dataset = mixture(args.dim)
    model_key, train_key = jr.split(jr.key(0))
    common = (args, dataset, sde, model_key, train_key)

    variants = {
        "framework (defaults: clip 1.0, AdamW, warm-up+cosine, EMA)": framework(*common),
        "framework (grad_clip=None, weight_decay=0)": framework(*common, grad_clip=None),
        "hand loop (Adam, constant lr)": hand_loop(*common),
    }
    if not args.no_ablation:
        for feature in FEATURES:
            variants[f"hand loop + {feature}"] = hand_loop(*common, features=(feature,))
        variants["hand loop + all of the above"] = hand_loop(*common, features=FEATURES)

    print(
        f"device: {jax.devices()[0].platform}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    print(
        f"dim {args.dim}, batch {args.batch_size}, MLP width {args.width} depth {args.depth}, "
        f"{args.n_frequencies} frequencies, K = {args.K} steps per dispatch, "
        f"{args.chunks} dispatches per timing, {args.rounds} interleaved rounds\n"
    )
    rates = time_rounds(variants, args)
    base = "hand loop (Adam, constant lr)"
    base_median, base_best = statistics.median(rates[base]), max(rates[base])
    print("| variant | steps/s (median) | steps/s (best) | time/step vs hand loop (median) |")
    print("|---|---:|---:|---:|")
    for name, r in rates.items():
        median = statistics.median(r)
        print(f"| {name} | {median:,.0f} | {max(r):,.0f} | {base_median / median:.3f} |")
    print()
    for name in list(variants)[:2]:
        median, best = statistics.median(rates[name]), max(rates[name])
        print(
            f"overhead of {name}: {100 * (base_median / median - 1):+.1f} % (median), "
            f"{100 * (base_best / best - 1):+.1f} % (best); target ≤ 10 %"
        )
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
