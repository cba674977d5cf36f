"""How few score evaluations does each sampler need to be indistinguishable from exact samples?

With the EXACT score of a 5-component Gaussian mixture (VP SDE, ε = 1e-3) and EXACT samples of
p_T as starting points, every sampler's only error is its discretisation. Quality is the
squared sliced W2 (``diffsde.SlicedWasserstein``, fixed projections; computed in numpy for
speed and checked against the library function) to independent exact sample sets of p_ε,
averaged over ``--references`` sets. The floor is the same distance from further independent
exact sets: mean and standard deviation over ``--floor-sets``. A sampler "reaches the floor"
when its sliced W2² ≤ floor mean + 3 sd: a perfect sampler's distance is one more draw from the
floor's distribution, so it misses with probability ~0.1 % (normal approximation).

1. Sweep. Every fixed-step sampler (euler_maruyama, pc with one corrector step, the exponential
   integrator with each ``frozen`` choice, pf_ode euler/heun/rk4) runs on the step ladder
   2, 4, 8, … up to ``--max-steps``, upwards until two consecutive rungs reach the floor; the
   first of the two is its fewest steps (the second guards against one lucky draw). The
   adaptive PF-ODE solvers (tsit5, dopri5) run at rtol = atol = 1e-1, 1e-2, … down to
   ``--min-tol`` the same way: the loosest tolerance that reaches the floor, confirmed by the
   next. ``--adaptive-sde`` adds the adaptive reverse SDE at rtol = atol = 1e-2 (and
   ``--sde-tols``): ~30 s per call at the default size, so it is off by default.
2. Timing. The selected configuration of each sampler (its fewest steps or loosest tolerance;
   the last rung tried if none reached the floor) and the 1000-step Euler–Maruyama reference
   are timed ``--repeats`` times, interleaved (every repeat calls every sampler once, in turn),
   after a warm-up call that compiles; the table gives medians. Ratios are to the BEST sampler:
   the one reaching the floor with the smallest median wall time, measured in the same run.

    .venv/bin/python bench/sampling.py              # d = 16, n = 20 000: ~3 min on 2 cores
    .venv/bin/python bench/sampling.py --dims 2 32 --n 40000 --repeats 5 --adaptive-sde  # bigger
    .venv/bin/python bench/sampling.py --quick      # smoke run: tiny sizes, a few samplers
"""

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import diffsde
from diffsde import (
    AdaptiveReverseSDE,
    ClassicalRK4,
    Dopri5,
    Euler,
    EulerMaruyama,
    ExponentialIntegrator,
    FixedSteps,
    Heun,
    PIDSteps,
    PredictorCorrector,
    ProbabilityFlow,
    Tsit5,
)

EM_REFERENCE_STEPS = 1000

# fixed-step samplers: name -> the sampler with `steps` steps
FIXED_STEP = {
    "euler_maruyama": lambda steps: EulerMaruyama(steps=steps),
    "pc (1 corrector)": lambda steps: PredictorCorrector(steps=steps, corrector_steps=1),
    "exponential (frozen noise)": lambda steps: ExponentialIntegrator(
        steps=steps, frozen=diffsde.FrozenNoise()
    ),
    "exponential (frozen score)": lambda steps: ExponentialIntegrator(
        steps=steps, frozen=diffsde.FrozenScore()
    ),
    "exponential (frozen data)": lambda steps: ExponentialIntegrator(
        steps=steps, frozen=diffsde.FrozenData()
    ),
    **{
        f"pf_ode {solver.tag}": (
            lambda steps, solver=solver: ProbabilityFlow(
                solver=solver(), controller=FixedSteps(steps=steps)
            )
        )
        for solver in (Euler, Heun, ClassicalRK4)
    },
}
# adaptive samplers: name -> the sampler at rtol = atol = tol
ADAPTIVE_PF_ODE = {
    f"pf_ode {solver.tag}": (
        lambda tol, solver=solver: ProbabilityFlow(
            solver=solver(), controller=PIDSteps(rtol=tol, atol=tol)
        )
    )
    for solver in (Tsit5, Dopri5)
}
QUICK = ("euler_maruyama", "pf_ode heun", "pf_ode tsit5")


def mixture(dim: int, key) -> diffsde.GaussianMixture:
    """5 components: means at radius U[2, 3] in random directions, stds U[0.3, 0.5]."""
    dkey, rkey, skey, wkey = jr.split(key, 4)
    directions = jr.normal(dkey, (5, dim))
    directions = directions / jnp.linalg.norm(directions, axis=-1, keepdims=True)
    means = jr.uniform(rkey, (5, 1), minval=2.0, maxval=3.0) * directions
    stds = jr.uniform(skey, (5,), minval=0.3, maxval=0.5)
    weights = jr.uniform(wkey, (5,), minval=0.5, maxval=1.5)
    return diffsde.GaussianMixture(weights, means, stds)


def exact_marginal(mix, sde, t, n, key):
    """``n`` exact samples of p_t: x₀ ~ p_data, then x_t = m_t(x₀) + σ_t z."""
    dkey, zkey = jr.split(key)
    x0 = mix.sample(key=dkey, n=n)
    mean = jax.vmap(lambda x: sde.marginal_mean(t, x))(x0)
    return mean + sde.marginal_std(t) * jr.normal(zkey, x0.shape)


class Problem:
    """The mixture, its exact score, exact x_T, the reference sets and the floor, in one d."""

    def __init__(self, dim, args, key):
        self.dim, self.n, self.eps = dim, args.n, 1e-3
        self.sde = diffsde.VP(dim)
        mkey, tkey, rkey, fkey, pkey, self.key = jr.split(key, 6)
        mix = mixture(dim, mkey)
        sde = self.sde
        self.score = lambda x, t: mix.score(x, t, sde)
        self.x_T = exact_marginal(mix, sde, sde.T, args.n, tkey)
        references = [
            exact_marginal(mix, sde, self.eps, args.n, k) for k in jr.split(rkey, args.references)
        ]
        z = jr.normal(pkey, (args.projections, dim))
        directions = z / jnp.linalg.norm(z, axis=-1, keepdims=True)
        # For n = m, sliced_w2 matches sorted projections; XLA's CPU sort of a (40000, 128)
        # array takes ~1.4 s (numpy: ~0.14 s), so distances are computed in numpy with the
        # references sorted once, and checked against diffsde.SlicedWasserstein below (which
        # draws its directions from its key exactly as here).
        self.directions = np.asarray(directions, np.float64)
        self.sorted_refs = [self._project(r) for r in references]
        floor_keys = jr.split(fkey, args.floor_sets)
        floors = np.array(
            [self.distance(exact_marginal(mix, sde, self.eps, args.n, k)) for k in floor_keys]
        )
        self.floor, self.floor_sd = floors.mean(), floors.std(ddof=1)
        self.threshold = self.floor + 3 * self.floor_sd
        check = exact_marginal(mix, sde, self.eps, args.n, floor_keys[0])
        context = diffsde.EvalContext(
            samples=check, reference=references[0], dataset=mix, sde=sde, score=None, key=pkey
        )
        metric = diffsde.SlicedWasserstein(projections=args.projections)
        library = metric(context)["sliced_w2"]
        ours = float(np.mean((self._project(check) - self.sorted_refs[0]) ** 2))
        assert abs(library - ours) <= 1e-3 * ours, (library, ours)
        self.chunk = min(args.chunk_size, args.n)

    def _project(self, x):
        return np.sort(np.asarray(x, np.float64) @ self.directions.T, axis=0)

    def distance(self, x) -> float:
        projected = self._project(x)
        return float(np.mean([np.mean((projected - r) ** 2) for r in self.sorted_refs]))

    def run(self, sampler):
        """One timed call on all n points (compiled already or not) -> (samples, seconds)."""
        start = time.perf_counter()
        out = diffsde.sample(
            sampler, self.sde, self.score, self.x_T, key=self.key, chunk_size=self.chunk
        )
        jax.block_until_ready(out.x)
        return out, time.perf_counter() - start


class Trial:
    """One configuration of a sampler: its quality (from the sweep) and its timings."""

    def __init__(self, problem, name, setting, sampler):
        self.name, self.setting = name, setting
        self.sampler = sampler
        out, self.first_s = problem.run(self.sampler)  # compiles
        self.nfe = int(out.nfe)
        self.sw2 = problem.distance(out.x)
        self.reaches = self.sw2 <= problem.threshold
        self.ratio = self.sw2 / problem.floor
        self.walls: list[float] = []

    @property
    def label(self) -> str:
        return f"{self.name} {self.setting}"

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)


def sweep(problem, args, log):
    """Each sampler's sweep (its trials, cheapest first), up to two consecutive rungs that
    reach the floor."""
    ladder = [2**k for k in range(1, 31) if 2**k <= args.max_steps]
    tols = [10.0**-k for k in range(1, 31) if 10.0**-k >= args.min_tol * (1 - 1e-9)]
    plans = {
        name: [(f"{steps} steps", FIXED_STEP[name](steps)) for steps in ladder]
        for name in FIXED_STEP
    }
    plans.update(
        {
            name: [(f"tol {tol:g}", make(tol)) for tol in tols]
            for name, make in ADAPTIVE_PF_ODE.items()
        }
    )
    if args.adaptive_sde:
        plans["reverse_sde_adaptive"] = [
            (f"tol {tol:g}", AdaptiveReverseSDE(rtol=tol, atol=tol))
            for tol in sorted({1e-2, *args.sde_tols}, reverse=True)
        ]
    sweeps = {}
    for name, plan in plans.items():
        if args.quick and name not in QUICK:
            continue
        sweeps[name] = []
        for setting, config in plan:
            trial = Trial(problem, name, setting, config)
            sweeps[name].append(trial)
            log(trial)
            if len(sweeps[name]) >= 2 and all(t.reaches for t in sweeps[name][-2:]):
                break
    return sweeps


def fewest(trials):
    """The first of two consecutive trials that reach the floor, else the last one tried."""
    for first, second in zip(trials, trials[1:], strict=False):
        if first.reaches and second.reaches:
            return first
    return trials[-1]


def run_dim(dim, args, key):
    problem = Problem(dim, args, key)
    print(
        f"\n[d={dim}] floor {problem.floor:.3e} ± {problem.floor_sd:.1e}; "
        f"reaches: sliced W2² ≤ {problem.threshold:.3e}",
        flush=True,
    )

    def log(trial):
        mark = "reaches" if trial.reaches else "misses"
        print(
            f"  [d={dim}] {trial.label}: NFE {trial.nfe}, W2²/floor {trial.ratio:.2f} ({mark}), "
            f"first call {trial.first_s:.1f} s",
            flush=True,
        )

    sweeps = sweep(problem, args, log)
    selected = [fewest(trials) for trials in sweeps.values()]
    em_steps = EM_REFERENCE_STEPS if not args.quick else 100
    em = Trial(problem, "euler_maruyama", f"{em_steps} steps", EulerMaruyama(steps=em_steps))
    log(em)
    selected.append(em)  # (the ladder's powers of two never contain the reference)

    # interleaved timing: every repeat calls every selected sampler once, in turn
    for _ in range(args.repeats):
        for trial in selected:
            trial.walls.append(problem.run(trial.sampler)[1])

    reaching = [t for t in selected if t.reaches]
    best = min(reaching, key=lambda t: t.wall) if reaching else None
    print(
        f"\n### d = {dim}, n = {args.n} (chunk_size {problem.chunk}), VP, ε = {problem.eps}, "
        f"{args.projections} projections, {args.references} reference sets, "
        f"medians of {args.repeats} interleaved repeats, load average {os.getloadavg()[0]:.2f}\n"
    )
    print(
        f"floor (exact vs exact, {args.floor_sets} sets): {problem.floor:.3e} ± "
        f"{problem.floor_sd:.1e} (sd); reaches floor: sliced W2² ≤ floor + 3 sd = "
        f"{problem.threshold:.3e}\n"
    )
    print("sweeps (W2²/floor per rung, ✓ = reaches the floor, * = selected):\n")
    for name, trials in sweeps.items():
        rungs = ", ".join(
            f"{t.setting.replace(' steps', '')}: {t.ratio:.2f}{' ✓' if t.reaches else ''}"
            f"{' *' if t is fewest(trials) else ''}"
            for t in trials
        )
        print(f"- {name}: {rungs}")
    print()
    print(
        "| sampler | setting | NFE | wall s (median) | min–max s | W2²/floor | reaches "
        "| NFE / best | wall / best |"
    )
    print("|---|---|---:|---:|---:|---:|:---:|---:|---:|")
    for trial in sorted(selected, key=lambda t: t.wall):
        nfe_ratio = f"{trial.nfe / best.nfe:.2f}" if best else "–"
        wall_ratio = f"{trial.wall / best.wall:.2f}" if best else "–"
        print(
            f"| {trial.name} | {trial.setting} | {trial.nfe} | {trial.wall:.3f} | "
            f"{min(trial.walls):.3f}–{max(trial.walls):.3f} | {trial.ratio:.2f} | "
            f"{'yes' if trial.reaches else 'no'} | {nfe_ratio} | {wall_ratio} |"
        )
    print()
    if best is None:
        print(f"headline d={dim}: no sampler reached the floor")
        return
    print(
        f"headline d={dim}: best sampler reaching the floor is '{best.label}' (NFE {best.nfe}, "
        f"{best.wall:.3f} s); {em.label} Euler–Maruyama takes {em.nfe / best.nfe:.1f}x its NFE "
        f"and {em.wall / best.wall:.1f}x its wall time"
        + ("" if em.reaches else " and misses the floor")
    )
    cheapest = min(reaching, key=lambda t: t.nfe)
    if cheapest is not best:
        print(
            f"  fewest NFE reaching the floor: '{cheapest.label}' (NFE {cheapest.nfe}, "
            f"{cheapest.wall / best.wall:.2f}x the best wall time)"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dims", type=int, nargs="+", default=[16])
    parser.add_argument("--chunk-size", type=int, default=5_000)
    parser.add_argument("--projections", type=int, default=128)
    parser.add_argument("--floor-sets", type=int, default=12)
    parser.add_argument("--references", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing repeats")
    parser.add_argument("--max-steps", type=int, default=1024, help="top of the step ladder")
    parser.add_argument("--min-tol", type=float, default=1e-6, help="tightest PF-ODE tolerance")
    parser.add_argument(
        "--adaptive-sde", action="store_true", help="add reverse_sde_adaptive (slow)"
    )
    parser.add_argument(
        "--sde-tols",
        type=float,
        nargs="*",
        default=[],
        help="with --adaptive-sde: tolerances tried after 1e-2",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: n = 1000, d = 2, three samplers"
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.quick:
        args.n, args.dims, args.floor_sets, args.references = 1000, [2], 4, 2
        args.max_steps, args.min_tol, args.projections = 64, 1e-3, 32
    print(
        f"device: {jax.devices()[0].platform}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    total = time.perf_counter()
    for dim in args.dims:
        run_dim(dim, args, jr.fold_in(jr.key(args.seed), dim))
    print(
        f"\ntotal {time.perf_counter() - total:.0f} s, load average {os.getloadavg()[0]:.2f} at end"
    )


if __name__ == "__main__":
    main()
