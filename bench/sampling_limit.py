"""Fewest score evaluations to reach the sampling floor, for every fixed-step sampler × time grid,
on targets with structure at one scale and at every scale (issue 12, item 3).

Problems (VP SDE, β 0.1–20, T = 1, ε = 1e-3, float32, the EXACT score of each target and EXACT
starting points x_T ~ p_T: data drawn, then pushed through the forward kernel to T):

- ``a2``, ``a32``: bench/sampling.py's 5-component mixture (means at radius U[2, 3], stds
  U[0.3, 0.5]) in d = 2 and d = 32. Target: ≤ 12 NFE.
- ``b``: the same means and weights in d = 32 with stds 0.02–0.05 (each std mapped linearly
  from [0.3, 0.5]). Target: ≤ 10 NFE.
- ``c``: the empirical distribution of 500 shipped digits (``diffsde.load_digits()``, signed
  scale, the first 500 training rows, d = 64): a ``GaussianMixture`` of 500 points of std 0,
  uniform weights, so p_t is a mixture of N(λ_t x_i, σ_t² I). Target: ≤ 16 NFE.

Quality is the squared sliced W2 (``diffsde.SlicedWasserstein``'s definition, fixed
projections, computed in numpy and checked against the library once per problem) of the
samples to ``--references`` independent exact sample sets of p_ε, averaged. The floor is the
same distance from ``--floor-sets`` further exact sets; a sampler REACHES the floor when its
distance is ≤ floor mean + 2 sd (issue 12's definition).

Samplers are discovered from diffsde's registry: every registered sampler with ``steps`` and
``grid`` fields (with the variants in ``VARIANTS``; an unlisted one runs with its defaults),
and ``pf_ode`` with ``FixedSteps`` and the Euler, Heun and RK4 solvers. Each runs on each grid
(uniform, log_snr, karras ρ = 7, quadratic) on the step ladder ``LADDER``: its fewest NFE is
the first rung that reaches the floor and whose next rung does too (the second guards against
one lucky draw), found by the search of :func:`sweep`, within ``--max-nfe``. Wall times: the
``--timed`` configurations of fewest NFE that reached the floor, each at its fewest NFE,
called ``--repeats`` times interleaved (each repeat calls each one in turn) after the sweep's
call that compiled it; the table gives medians in ms (all n points, one chunk).

    .venv/bin/python bench/sampling_limit.py                     # all problems (long)
    .venv/bin/python bench/sampling_limit.py --problems b c --n 10000
    .venv/bin/python bench/sampling_limit.py --quick             # smoke run, < 40 s
"""

import argparse
import dataclasses
import os
import statistics
import time

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from sampling import exact_marginal, mixture  # bench/sampling.py, this script's directory

import diffsde

EPS = 1e-3
LADDER = (2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 20, 25, 32, 40, 50, 64)
GRIDS = {
    "uniform": diffsde.UniformGrid(),
    "log_snr": diffsde.LogSNRGrid(),
    "karras": diffsde.KarrasGrid(),
    "quadratic": diffsde.QuadraticGrid(),
}
TARGETS = {"a2": 12, "a32": 12, "b": 10, "c": 16}
PROBLEMS = {
    "a2": "(a) bench/sampling.py's mixture, d = 2 (stds 0.3–0.5)",
    "a32": "(a) bench/sampling.py's mixture, d = 32 (stds 0.3–0.5)",
    "b": "(b) the same means, stds 0.02–0.05, d = 32",
    "c": "(c) empirical distribution of 500 shipped digits, d = 64",
}

# the variants of a registered sampler (tag -> [(label, constructor keywords)]); a registered
# fixed-step sampler not listed runs once, with its defaults
VARIANTS = {
    "dpm_solver": [(f"stages={k}", {"stages": k}) for k in (1, 2, 3)],
    "dpm_solver_pp": [
        (f"history={h}{' noise' if noise else ''}", {"history": h, "noise": noise})
        for h in (2, 3)
        for noise in (False, True)
    ],
    "unipc": [(f"history={h}", {"history": h}) for h in (2, 3)],
    "edm_heun": [("churn=0", {}), ("churn=1", {"churn": 1.0})],
    "ddim": [(f"eta={eta:g}", {"eta": eta}) for eta in (0.0, 1.0)],
    "deis": [(f"history={h}", {"history": h}) for h in (1, 2, 3)],
    "euler_maruyama": [("", {})],
    "pc": [("corrector_steps=1", {"corrector_steps": 1})],
    "exponential": [
        (f"frozen={name}", {"frozen": frozen()})
        for name, frozen in (
            ("noise", diffsde.FrozenNoise),
            ("score", diffsde.FrozenScore),
            ("data", diffsde.FrozenData),
        )
    ],
}
PF_ODE_SOLVERS = ("rk4", "heun", "euler")
PRIORITY = (
    "dpm_solver_pp history=2",
    "dpm_solver_pp history=3",
    "unipc history=2",
    "unipc history=3",
    "dpm_solver stages=2",
    "dpm_solver stages=3",
    "deis history=3",
    "deis history=2",
    "edm_heun churn=0",
    "pf_ode rk4",
    "pf_ode heun",
)
"""Samplers swept first (the likely winners, for a run cut short by --budget); then the rest
of the registry in alphabetical order."""
QUICK_SAMPLERS = ("dpm_solver_pp history=2",)


@dataclasses.dataclass(frozen=True)
class Family:
    """One sampler variant: ``make(steps, grid)`` builds it."""

    name: str
    make: object


def families() -> list[Family]:
    """Every fixed-step sampler of the registry (with its variants) and pf_ode's fixed-step
    solvers."""
    registry = diffsde.get_registry()
    out = []
    for tag in registry.names("sampler"):
        cls = registry.get("sampler", tag).cls
        fields = {f.name for f in dataclasses.fields(cls)} if cls is not None else set()
        if tag == "pf_ode":
            solvers = registry.parts["ode_solver"]
            for solver in PF_ODE_SOLVERS:
                if solver in solvers:
                    out.append(Family(f"pf_ode {solver}", _pf_ode(cls, solvers[solver][0])))
            continue
        if not {"steps", "grid"} <= fields:
            continue
        for label, kwargs in VARIANTS.get(tag, [("", {})]):
            name = f"{tag} {label}".strip()
            out.append(Family(name, _fixed(cls, kwargs)))
    rank = {name: i for i, name in enumerate(PRIORITY)}
    return sorted(out, key=lambda f: rank.get(f.name, len(rank)))  # stable: then registry order


def _fixed(cls, kwargs):
    return lambda steps, grid: cls(steps=steps, grid=grid, eps=EPS, **kwargs)


def _pf_ode(cls, solver):
    return lambda steps, grid: cls(
        solver=solver(), controller=diffsde.FixedSteps(steps=steps, grid=grid), eps=EPS
    )


def problem_data(name: str, seed: int):
    """(dataset, dim) of a problem; a and b share bench/sampling.py's means and weights."""
    if name == "c":
        rows = diffsde.load_digits().train[:500]
        return diffsde.GaussianMixture(1.0, rows, 0.0), 64
    dim = 2 if name == "a2" else 32
    # bench/sampling.py's Problem: the mixture's key is the first of six from fold_in(seed, dim)
    mix = mixture(dim, jr.split(jr.fold_in(jr.key(seed), dim), 6)[0])
    if name == "b":
        stds = 0.02 + (mix.stds - 0.3) / 0.2 * 0.03
        mix = diffsde.GaussianMixture(jnp.exp(mix.log_weights), mix.means, stds)
    return mix, dim


class Problem:
    """The target, its exact score, exact x_T, the reference sets and the floor."""

    def __init__(self, name, args):
        self.name = name
        self.data, self.dim = problem_data(name, args.seed)
        self.sde = diffsde.VP(self.dim)
        self.n = args.n
        key = jr.fold_in(jr.key(args.seed), list(PROBLEMS).index(name))
        tkey, rkey, fkey, pkey, self.key = jr.split(key, 5)
        data, sde = self.data, self.sde
        self.score = lambda x, t: data.score(x, t, sde)
        self.x_T = exact_marginal(data, sde, sde.T, self.n, tkey)
        references = [
            exact_marginal(data, sde, EPS, self.n, k) for k in jr.split(rkey, args.references)
        ]
        z = jr.normal(pkey, (args.projections, self.dim))
        self.directions = np.asarray(z / jnp.linalg.norm(z, axis=-1, keepdims=True), np.float64)
        self.sorted_refs = [self._project(r) for r in references]
        floor_keys = jr.split(fkey, args.floor_sets)
        floors = np.array(
            [self.distance(exact_marginal(data, sde, EPS, self.n, k)) for k in floor_keys]
        )
        self.floor, self.floor_sd = floors.mean(), floors.std(ddof=1)
        self.threshold = self.floor + 2 * self.floor_sd
        # the numpy distance is the library's (same directions from the same key)
        check = exact_marginal(data, sde, EPS, self.n, floor_keys[0])
        context = diffsde.EvalContext(
            samples=check, reference=references[0], dataset=data, sde=sde, score=None, key=pkey
        )
        library = diffsde.SlicedWasserstein(projections=args.projections)(context)["sliced_w2"]
        ours = float(np.mean((self._project(check) - self.sorted_refs[0]) ** 2))
        assert abs(library - ours) <= 1e-3 * ours, (library, ours)

    def _project(self, x):
        return np.sort(np.asarray(x, np.float64) @ self.directions.T, axis=0)

    def distance(self, x) -> float:
        projected = self._project(x)
        return float(np.mean([np.mean((projected - r) ** 2) for r in self.sorted_refs]))

    def run(self, sampler):
        """One call on all n points -> (samples, seconds)."""
        start = time.perf_counter()
        out = diffsde.sample(
            sampler, self.sde, self.score, self.x_T, key=self.key, chunk_size=self.n
        )
        jax.block_until_ready(out.x)
        return out, time.perf_counter() - start


@dataclasses.dataclass
class Rung:
    steps: int
    nfe: int
    sw2: float
    reaches: bool
    sampler: object


@dataclasses.dataclass
class Sweep:
    family: str
    grid: str
    rungs: list
    walls: list = dataclasses.field(default_factory=list)
    error: str | None = None

    ladder: tuple = LADDER

    @property
    def fewest(self) -> Rung | None:
        """The first of two consecutive ladder rungs that reach the floor."""
        by_steps = {r.steps: r for r in self.rungs}
        for first, second in zip(self.ladder, self.ladder[1:], strict=False):
            if first in by_steps and second in by_steps:
                if by_steps[first].reaches and by_steps[second].reaches:
                    return by_steps[first]
        return None

    @property
    def wall_ms(self) -> float:
        return 1e3 * statistics.median(self.walls) if self.walls else float("nan")


HOPELESS = 20.0
"""A sweep whose first rung is this many times the floor tries the --max-nfe rung next."""


class Unreached(Exception):
    """The sweep's search ends without a rung that reaches the floor."""


def sweep(problem, family, grid_name, args) -> Sweep:
    """The first ladder rung that reaches the floor and whose next rung does too, found by a
    search that assumes reaching is monotone in the steps (where the evaluated rungs say
    otherwise it walks on up): one call at the rung nearest ``--start-nfe`` steps gives the
    NFE per step; from the rung whose NFE is nearest ``--start-nfe`` it walks down while rungs
    reach, or gallops up (1, 2, 4, … rungs) to one that reaches and bisects back. Rungs past
    ``--max-nfe`` are not tried; a first rung ``HOPELESS`` times the floor tries the last rung
    at once and stops there if that misses too."""
    out = Sweep(family.name, grid_name, [], ladder=tuple(args.ladder))
    ladder = list(args.ladder)
    done = {}

    def reach(i):
        """Whether rung i reaches (evaluated once); None past the ladder or --max-nfe."""
        if i >= len(ladder):
            return None
        if i not in done:
            sampler = family.make(ladder[i], GRIDS[grid_name])
            samples, _ = problem.run(sampler)
            sw2 = problem.distance(samples.x)
            sw2 = sw2 if np.isfinite(sw2) else float("inf")
            nfe = int(samples.nfe)
            done[i] = Rung(ladder[i], nfe, sw2, bool(sw2 <= problem.threshold), sampler)
        return done[i].reaches

    try:
        # the first rung as if one NFE per step; then the NFE per step is known
        i = min(range(len(ladder)), key=lambda j: abs(ladder[j] - args.start_nfe))
        reach(i)
        per_step = done[i].nfe / ladder[i]
        capped = [j for j, s in enumerate(ladder) if s * per_step <= args.max_nfe] or [0]
        last = capped[-1]  # the last rung searched; the one after may only confirm it
        ladder = ladder[: last + 2]
        i = min(range(last + 1), key=lambda j: abs(ladder[j] * per_step - args.start_nfe))
        if reach(i):
            while i > 0 and reach(i - 1):
                i -= 1
        else:
            low = i
            if done[i].sw2 > HOPELESS * problem.floor and not reach(last):
                raise Unreached  # far off at the start and off at --max-nfe: stop here
            jump = 1
            while low + jump < last and reach(low + jump) is False:
                low, jump = low + jump, 2 * jump
            high = min(low + jump, last)
            if not reach(high):
                raise Unreached
            while high - low > 1:
                mid = (low + high) // 2
                if reach(mid):
                    high = mid
                else:
                    low = mid
            i = high
        # confirm: rung i and i + 1 reach; where noise breaks monotonicity, walk on up
        while i < len(ladder) and not (reach(i) and reach(i + 1)):
            i += 1
    except Unreached:
        pass
    except Exception as err:  # a sampler that refuses the configuration: one line, go on
        out.error = f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"
    out.rungs = [done[j] for j in sorted(done)]
    return out


def diagnose(problem, family, grid_name, per_step, target, args):
    """Where along the path the error of ``family`` on ``grid_name`` builds up, at the most
    steps whose NFE is within ``target``: its states at the grid's own times (no interpolation)
    against exact draws of p_t there, as sliced W2² over that of a second exact set (1 = as
    good as exact)."""
    fits = [s for s in args.ladder if s * per_step <= target]
    if not fits:
        return f"no rung of {family.name} / {grid_name} within {target} NFE"
    steps = fits[-1]
    sampler = family.make(steps, GRIDS[grid_name])
    nfe = int(problem.run(sampler)[0].nfe)
    times = np.asarray(GRIDS[grid_name].times(problem.sde, EPS, steps))
    out = diffsde.sample(
        sampler,
        problem.sde,
        problem.score,
        problem.x_T,
        key=problem.key,
        chunk_size=problem.n,
        save_ts=jnp.asarray(times),
    )
    parts = []
    key = jr.key(args.seed + 7)
    for k, t in enumerate(times[1:], start=1):
        akey, bkey = jr.split(jr.fold_in(key, k))
        ref = problem._project(exact_marginal(problem.data, problem.sde, t, problem.n, akey))
        other = problem._project(exact_marginal(problem.data, problem.sde, t, problem.n, bkey))
        ours = problem._project(out.trajectory[k])
        ratio = np.mean((ours - ref) ** 2) / np.mean((other - ref) ** 2)
        parts.append(f"t={t:.3g}: {ratio:.2f}")
    return f"{family.name} / {grid_name} at {steps} steps (NFE {nfe}): " + ", ".join(parts)


def run_problem(name, args):
    start = time.perf_counter()
    problem = Problem(name, args)
    print(
        f"\n[{name}] {PROBLEMS[name]}: {problem.data.means.shape[0]} components, d = "
        f"{problem.dim}, n = {problem.n}, floor {problem.floor:.4e} ± "
        f"{problem.floor_sd:.1e}, reaches: sliced W2² ≤ {problem.threshold:.4e}",
        flush=True,
    )
    sweeps, skipped = [], []
    for family in families():
        if args.quick and family.name not in QUICK_SAMPLERS:
            continue
        if args.samplers and not any(family.name.startswith(s) for s in args.samplers):
            continue
        for grid_name in args.grids:
            if args.budget and time.perf_counter() - start > args.budget:
                skipped.append(f"{family.name} / {grid_name}")
                continue
            s = sweep(problem, family, grid_name, args)
            sweeps.append(s)
            best = s.fewest
            rungs = " ".join(
                f"{r.nfe}:{r.sw2 / problem.floor:.2f}{'✓' if r.reaches else ''}" for r in s.rungs
            )
            status = f"NFE {best.nfe}" if best else (s.error or "not reached on the ladder")
            print(f"  [{name}] {s.family} / {grid_name}: {status}  [{rungs}]", flush=True)

    reaching = [s for s in sweeps if s.fewest is not None]
    timed = sorted(reaching, key=lambda s: s.fewest.nfe)[: args.timed]
    for _ in range(args.repeats):  # interleaved
        for s in timed:
            s.walls.append(problem.run(s.fewest.sampler)[1])

    print(
        f"\n### {PROBLEMS[name]}\n\nn = {problem.n}, VP, ε = {EPS}, {args.projections} "
        f"projections, {args.references} reference sets; floor (exact vs exact, "
        f"{args.floor_sets} sets) {problem.floor:.3e} ± {problem.floor_sd:.1e}, reaches: "
        f"≤ floor + 2 sd = {problem.threshold:.3e}; wall: median of {args.repeats} interleaved "
        f"repeats; load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| sampler | grid | fewest NFE | sliced W2² | floor | wall ms |")
    print("|---|---|---:|---:|---:|---:|")

    def order(s):
        if s.fewest is None:
            return (np.inf, np.inf)
        return (s.fewest.nfe, s.wall_ms if s.walls else np.inf)

    for s in sorted(sweeps, key=order):
        if s.fewest:
            r = s.fewest
            wall = f"{s.wall_ms:.1f}" if s.walls else "(not timed)"
            row = f"{r.nfe} | {r.sw2:.3e} | {problem.floor:.3e} | {wall}"
        else:
            last = s.rungs[-1] if s.rungs else None
            seen = f"> {last.nfe}" if last else "–"
            w2 = f"{min(r.sw2 for r in s.rungs):.3e} (best)" if s.rungs else (s.error or "–")
            row = f"{seen} | {w2} | {problem.floor:.3e} | –"
        print(f"| {s.family} | {s.grid} | {row} |")
    if skipped:
        print(f"\nnot run (past --budget {args.budget:g} s): {', '.join(skipped)}")
    target = TARGETS[name]
    if reaching:
        best = min(reaching, key=order)
        met = "MET" if best.fewest.nfe <= target else "NOT met"
        fastest = min(timed, key=lambda s: s.wall_ms)
        print(
            f"\nbest [{name}]: {best.family} / {best.grid}, NFE {best.fewest.nfe}, "
            f"{best.wall_ms:.1f} ms (target ≤ {target} NFE: {met}); fastest reaching: "
            f"{fastest.family} / {fastest.grid}, NFE {fastest.fewest.nfe}, "
            f"{fastest.wall_ms:.1f} ms"
        )
    else:
        print(f"\nbest [{name}]: nothing reached the floor (target ≤ {target} NFE: NOT met)")
    if args.diagnose and (not reaching or min(reaching, key=order).fewest.nfe > target):
        # the closest: fewest NFE reaching, else the smallest distance within the target
        if reaching:
            closest = min(reaching, key=order)
        else:
            closest = min(
                (s for s in sweeps if s.rungs),
                key=lambda s: min((r.sw2 for r in s.rungs if r.nfe <= target), default=np.inf),
            )
        family = next(f for f in families() if f.name == closest.family)
        per_step = closest.rungs[0].nfe / closest.rungs[0].steps
        print(
            f"error by time (sliced W2² / exact-vs-exact; the state at each grid time) [{name}]: "
            + diagnose(problem, family, closest.grid, per_step, target, args),
            flush=True,
        )
    print(f"[{name}] took {time.perf_counter() - start:.0f} s", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", choices=sorted(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument("--n", type=int, default=10_000, help="samples per set")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing repeats")
    parser.add_argument("--projections", type=int, default=128)
    parser.add_argument("--floor-sets", type=int, default=12)
    parser.add_argument("--references", type=int, default=4)
    parser.add_argument("--max-nfe", type=int, default=64, help="a sweep stops past this NFE")
    parser.add_argument("--start-nfe", type=int, default=8, help="where each search starts")
    parser.add_argument(
        "--timed", type=int, default=12, help="time the configurations of this many fewest NFE"
    )
    parser.add_argument("--grids", nargs="+", choices=sorted(GRIDS), default=list(GRIDS))
    parser.add_argument(
        "--samplers", nargs="+", default=[], help="only the samplers whose name starts so"
    )
    parser.add_argument("--ladder", type=int, nargs="+", default=list(LADDER))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--budget",
        type=float,
        default=0.0,
        help="seconds per problem after which no new sweep starts (listed as not run); 0: no limit",
    )
    parser.add_argument(
        "--no-diagnose",
        dest="diagnose",
        action="store_false",
        help="skip the error-by-time trace of the closest sampler where a target is missed",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: n = 500, problems a2 and c, one sampler, one grid",
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.quick:
        args.n, args.problems, args.floor_sets, args.references = 500, ["a2", "c"], 4, 2
        args.projections, args.grids, args.ladder = 32, ["log_snr"], [8, 16]
    print(
        f"device: {jax.devices()[0].platform}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at start; samplers: {', '.join(f.name for f in families())}"
    )
    total = time.perf_counter()
    for name in args.problems:
        run_problem(name, args)
    print(f"\ntotal {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main()
