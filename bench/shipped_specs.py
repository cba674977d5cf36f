"""Which sampler should each shipped spec use? The fastest one that reaches the floor of its own
trained model.

For each spec of ``specs/*.yaml`` (``--specs`` to choose): train it once with the pipeline of
``diffsde run`` (into ``--runs-dir``, by default a temporary directory; a completed run of the
same spec name already there is reused), then re-sample the trained model (the EMA score model
of its last checkpoint, as ``diffsde sample`` does) with candidate samplers on a ladder of steps,
and evaluate the spec's ``sliced_w2`` item (its projections, its metric key) against the run's
own held-out reference, over ``--seeds`` sampling seeds (seed 0 is the run's own sampling key,
so it reproduces the run's stored value; seed s > 0 draws x_T and the noise from
``fold_in(keys.sample, 7919 + s)``; every sampler sees the same x_T and reference per seed).

Floor. References on the SAME model: the spec's sampler (``--before REV`` reads it from the spec
at git revision REV instead of the working tree), ``euler_maruyama`` with 1000 steps, and, for
SDEs with a Gaussian kernel, ``pf_ode`` tsit5 at rtol = atol = 1e-5. The floor is the reference
with the smallest mean over the seeds; a candidate "reaches the floor" when its mean is at most
that mean + 2 × its standard deviation over the seeds (sample sd, ddof 1). Deterministic
candidates converge to the PF-ODE solution as steps grow, so when the tsit5 reference itself
misses the floor they are skipped (said in the output).

Search. Candidates run in order; each searches its step ladder (NFE ≤ ``--max-nfe``, and no more
NFE than the best so far: a candidate that cannot beat it is dropped after one rung) by
bisection for its fewest steps that reach the floor, assuming the metric falls with the steps;
the first time a candidate becomes the best, the next rung up must reach the floor too (one
lucky draw does not win) or the search goes on above it. The winner is the fewest NFE, then the
smallest wall time; the spec's sampler and every candidate tied at the winner's NFE are timed
``--repeats`` times, interleaved, after they have compiled (sampling only: the ``sample`` call,
results ready; medians).

    .venv/bin/python bench/shipped_specs.py --specs vp_8gaussians --runs-dir /tmp/specs-runs
    .venv/bin/python bench/shipped_specs.py --runs-dir /tmp/specs-runs --out results.json
    .venv/bin/python bench/shipped_specs.py --specs vp_8gaussians --quick   # smoke run
"""

import argparse
import json
import math
import pathlib
import statistics
import subprocess
import tempfile
import time

import jax
import jax.random as jr
import numpy as np
import yaml

import diffsde
from diffsde.pipeline import eval_reference, load_model, require_runnable, run, sample_conditions

ROOT = pathlib.Path(__file__).resolve().parent.parent
LADDER = (2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 32, 40, 50, 64, 80, 100, 128, 160, 200, 256,
          320, 400, 500, 640, 800, 1000)  # fmt: skip
SAMPLE_SEED_OFFSET = 7919
START_NFE = 16  # the first candidate's search starts at about this many NFE


def fixed_pf_ode(solver: str, grid: str):
    return lambda n: {
        "type": "pf_ode",
        "solver": solver,
        "controller": {"type": "fixed", "steps": n, "grid": grid},
    }


def tagged(tag: str, **settings):
    return lambda n: {"type": tag, "steps": n, **settings}


# name -> (sampler item with n steps, NFE of n steps (an estimate for pruning; the table gives
# the measured NFE), stochastic?)
KERNEL_CANDIDATES = {
    "dpm_solver_pp 3M karras": (tagged("dpm_solver_pp", history=3, grid="karras"), 1, False),
    "dpm_solver_pp 3M log_snr": (tagged("dpm_solver_pp", history=3, grid="log_snr"), 1, False),
    "dpm_solver_pp 2M karras": (tagged("dpm_solver_pp", history=2, grid="karras"), 1, False),
    "dpm_solver_pp 2M log_snr": (tagged("dpm_solver_pp", history=2, grid="log_snr"), 1, False),
    "unipc bh2 log_snr": (tagged("unipc", history=2, grid="log_snr"), 1, False),
    "unipc bh2 h3 karras": (tagged("unipc", history=3, grid="karras"), 1, False),
    "deis 3 log_snr": (tagged("deis", history=3, grid="log_snr"), 1, False),
    "dpm_solver 3 log_snr": (tagged("dpm_solver", stages=3, grid="log_snr"), 3, False),
    "dpm_solver 2 log_snr": (tagged("dpm_solver", stages=2, grid="log_snr"), 2, False),
    "edm_heun karras": (tagged("edm_heun", grid="karras"), 2, False),
    "ddim quadratic": (tagged("ddim", grid="quadratic"), 1, False),
    "pf_ode rk4 uniform": (fixed_pf_ode("rk4", "uniform"), 4, False),
    "pf_ode heun karras": (fixed_pf_ode("heun", "karras"), 2, False),
    "dpm_solver_pp 2M SDE karras": (
        tagged("dpm_solver_pp", history=2, noise=True, grid="karras"),
        1,
        True,
    ),
    "dpm_solver_pp 3M SDE karras": (
        tagged("dpm_solver_pp", history=3, noise=True, grid="karras"),
        1,
        True,
    ),
    "ddim eta=1 quadratic": (tagged("ddim", eta=1.0, grid="quadratic"), 1, True),
    "euler_maruyama karras": (tagged("euler_maruyama", grid="karras"), 1, True),
    "euler_maruyama log_snr": (tagged("euler_maruyama", grid="log_snr"), 1, True),
    "euler_maruyama uniform": (tagged("euler_maruyama"), 1, True),
}
# SDEs without a Gaussian kernel: reverse-SDE samplers on t-grids, and the PF-ODE
GENERAL_CANDIDATES = {
    "euler_maruyama uniform": (tagged("euler_maruyama"), 1, True),
    "euler_maruyama quadratic": (tagged("euler_maruyama", grid="quadratic"), 1, True),
    "pc uniform": (tagged("pc", corrector_steps=1), 2, True),
    "pc quadratic": (tagged("pc", corrector_steps=1, grid="quadratic"), 2, True),
    "pf_ode rk4 uniform": (fixed_pf_ode("rk4", "uniform"), 4, False),
    "pf_ode heun uniform": (fixed_pf_ode("heun", "uniform"), 2, False),
}
TSIT5_REFERENCE = {
    "type": "pf_ode",
    "solver": "tsit5",
    "controller": {"type": "pid", "rtol": 1e-5, "atol": 1e-5},
}
EM_REFERENCE = {"type": "euler_maruyama", "steps": 1000}


def spec_text(name: str, before: str | None) -> str:
    path = ROOT / "specs" / f"{name}.yaml"
    if before is None:
        return path.read_text()
    return subprocess.run(
        ["git", "show", f"{before}:specs/{name}.yaml"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def trained_run(name: str, runs_dir: pathlib.Path) -> tuple[pathlib.Path, float | None]:
    """A completed run of spec ``name`` in ``runs_dir`` (the newest), or a new one: (path,
    training-and-run wall time in seconds, None when reused)."""
    spec_name = yaml.safe_load((ROOT / "specs" / f"{name}.yaml").read_text())["name"]
    done = [
        r for r in diffsde.list_runs(runs_dir) if r.name == spec_name and r.status == "completed"
    ]
    if done:
        return done[-1].path, None
    setup = diffsde.load_spec(ROOT / "specs" / f"{name}.yaml")
    require_runnable(setup)
    start = time.perf_counter()
    path = run(setup, runs_dir, progress=False)
    return pathlib.Path(path), time.perf_counter() - start


def describe(item: dict) -> str:
    """The sampler item as a one-line spec value."""
    return yaml.safe_dump(item, default_flow_style=True, sort_keys=False).strip()


class Bench:
    """One trained model: sample it with any sampler item and evaluate ``sliced_w2``."""

    def __init__(self, run_path: pathlib.Path, seeds: int):
        self.setup, self.model, self.keys, record, _ = load_model(run_path)
        self.spec_yaml = record.spec_yaml
        self.registry = diffsde.get_registry()
        spec = self.setup.spec
        metric = next((m for m in spec.eval.metrics if m.type == "sliced_w2"), None)
        self.metric = (metric or self.registry.get("metric", "sliced_w2").config()).build()
        n = spec.eval.n_samples
        self.reference, _ = eval_reference(self.setup, self.keys, n)
        self.condition = sample_conditions(self.setup, self.keys)
        fixed = spec.eval.condition
        self.score = (
            self.model
            if fixed is None
            else diffsde.bind_condition(self.model, jax.numpy.asarray(fixed, jax.numpy.int32))
        )
        self.dataset = self.setup.data if fixed is None else self.setup.data.given(fixed)
        sample_keys = [self.keys.sample] + [
            jr.fold_in(self.keys.sample, SAMPLE_SEED_OFFSET + s) for s in range(1, seeds)
        ]
        self.starts = [
            (self.setup.prior.sample(key=jr.fold_in(k, 0), n=n), jr.fold_in(k, 1))
            for k in sample_keys
        ]
        self.gaussian = isinstance(self.setup.sde, diffsde.AbstractGaussianSDE)
        self.eps = spec.sampler.eps
        self.built: dict[str, diffsde.AbstractSampler] = {}
        self.before: dict = {}

    def use_as_before(self, item: dict) -> None:
        """Make ``item`` (a spec's ``sampler:`` value, in any form the spec language reads) the
        'before' sampler, built as `diffsde run` builds it."""
        spec = yaml.safe_load(self.spec_yaml)
        spec["sampler"] = item
        setup = diffsde.validate_text(yaml.safe_dump(spec, sort_keys=False), "<before>")
        self.before = item
        self.built[describe(item)] = setup.spec.sampler.build(sde=self.setup.sde)

    def sampler(self, item: dict) -> diffsde.AbstractSampler:
        """The sampler of ``item`` (nested form; the spec's ``eps`` unless it sets one)."""
        key = describe(item)
        if key not in self.built:
            config = self.registry.get("sampler", item["type"]).config
            self.built[key] = config.model_validate({"eps": self.eps, **item}).build(
                sde=self.setup.sde
            )
        return self.built[key]

    def draw(self, item: dict, seed: int):
        """(samples, nfe, sampling wall time in seconds) of seed ``seed``."""
        x_T, key = self.starts[seed]
        sampler = self.sampler(item)
        start = time.perf_counter()
        out = diffsde.sample(
            sampler, self.setup.sde, self.model, x_T, key=key, condition=self.condition
        )
        out = jax.block_until_ready(out)
        return out.x, int(out.nfe), time.perf_counter() - start

    def evaluate(self, x) -> float:
        context = diffsde.EvalContext(
            samples=x,
            reference=self.reference,
            dataset=self.dataset,
            sde=self.setup.sde,
            score=self.score,
            prior=self.setup.prior,
            key=jr.fold_in(self.keys.eval, 1),
        )
        return self.metric(context)["sliced_w2"]

    def measure(self, item: dict) -> dict:
        """sliced W2² over the seeds: mean, sd, values, NFE (median over seeds), first-call wall
        (compiles) and the others'."""
        values, nfes, walls = [], [], []
        for seed in range(len(self.starts)):
            x, nfe, wall = self.draw(item, seed)
            values.append(self.evaluate(x))
            nfes.append(nfe)
            walls.append(wall)
        return {
            "sampler": describe(item),
            # a diverging solve (too few steps on a stiff drift) is a miss: mean inf
            "mean": float(np.mean(values)) if np.all(np.isfinite(values)) else math.inf,
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "values": values,
            "nfe": int(statistics.median(nfes)),
            "wall_first": walls[0],
        }

    def time_interleaved(self, items: list[dict], repeats: int) -> list[float]:
        """Median sampling wall time (s) of each item over ``repeats`` interleaved calls, after
        a call each that compiles."""
        for item in items:
            self.draw(item, 0)
        walls = [[] for _ in items]
        for r in range(repeats):
            for i, item in enumerate(items):
                walls[i].append(self.draw(item, r % len(self.starts))[2])
        return [statistics.median(w) for w in walls]


def log(text: str) -> None:
    print(text, flush=True)


def search(bench, name, make, per_step, best_nfe, floor, max_nfe, cache):
    """(steps, result) of the fewest ladder steps of candidate ``name`` that reach ``floor``
    with NFE ≤ ``best_nfe``, or None."""
    rungs = [n for n in LADDER if per_step * n <= min(max_nfe, best_nfe)]
    if not rungs:
        return None

    def passes(i):
        steps = rungs[i]
        if (name, steps) not in cache:
            result = bench.measure(make(steps))
            cache[name, steps] = result
            mark = "✓" if result["mean"] <= floor else " "
            log(
                f"    {name:<30} steps {steps:>4}  nfe {result['nfe']:>5}  sliced W2² "
                f"{result['mean']:.5f} ± {result['sd']:.5f} {mark}"
            )
        return cache[name, steps]["mean"] <= floor

    lo = -1  # rungs[lo] fails (or lo = -1); rungs[hi] passes
    if math.isfinite(best_nfe):  # can it beat the best? one rung says
        hi = len(rungs) - 1
        if not passes(hi):
            return None
    else:  # gallop up from ~START_NFE, about ×2 in steps per jump
        hi = max(i for i, n in enumerate(rungs) if per_step * n <= START_NFE or i == 0)
        while not passes(hi):
            if hi == len(rungs) - 1:
                return None
            lo, hi = hi, min(hi + 3, len(rungs) - 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid
    return rungs[hi], cache[name, rungs[hi]]


def confirm(bench, name, make, steps, floor, max_nfe, per_step, cache):
    """The next rung above ``steps`` reaches the floor too (measured if not yet)."""
    above = [n for n in LADDER if n > steps and per_step * n <= max_nfe]
    if not above:
        return True
    if (name, above[0]) not in cache:
        cache[name, above[0]] = bench.measure(make(above[0]))
        r = cache[name, above[0]]
        log(
            f"    {name:<30} steps {above[0]:>4}  nfe {r['nfe']:>5}  sliced W2² "
            f"{r['mean']:.5f} ± {r['sd']:.5f} (confirmation)"
        )
    return cache[name, above[0]]["mean"] <= floor


def bench_spec(name, run_path, args, train_wall) -> dict:
    bench = Bench(run_path, args.seeds)
    bench.use_as_before(yaml.safe_load(spec_text(name, args.before))["sampler"])
    references = {"before": bench.before, "euler_maruyama 1000": EM_REFERENCE}
    if bench.gaussian:
        references["pf_ode tsit5 1e-5"] = TSIT5_REFERENCE
    if args.quick:
        references = {"before": bench.before}
    measured = {}
    for label, item in references.items():
        same = [k for k in measured if describe(references[k]) == describe(item)]
        measured[label] = measured[same[0]] if same else bench.measure(item)
        r = measured[label]
        log(
            f"  reference {label:<22} {r['sampler']}: nfe {r['nfe']}, sliced W2² "
            f"{r['mean']:.5f} ± {r['sd']:.5f}  {np.round(r['values'], 5).tolist()}"
        )
    floor_label = min(measured, key=lambda k: measured[k]["mean"])
    floor = measured[floor_label]["mean"] + 2 * measured[floor_label]["sd"]
    log(f"  floor: {floor_label}, threshold {floor:.5f} (mean + 2 sd)")
    ode_ok = "pf_ode tsit5 1e-5" not in measured or measured["pf_ode tsit5 1e-5"]["mean"] <= floor
    pool = KERNEL_CANDIDATES if bench.gaussian else GENERAL_CANDIDATES
    if args.candidates:
        pool = {k: v for k, v in pool.items() if k in args.candidates}
    # the likelier winners first, so that the others are dropped after one rung: deterministic
    # ones on kernel SDEs whose PF-ODE reaches the floor, else stochastic ones
    deterministic_first = bench.gaussian and ode_ok
    order = sorted(pool, key=lambda k: pool[k][2] == deterministic_first)
    best, found, errors, skipped, cache = math.inf, {}, {}, [], {}
    for cand in order:
        make, per_step, stochastic = pool[cand]
        if not stochastic and not ode_ok:
            skipped.append(cand)
            continue
        try:
            hit = search(bench, cand, make, per_step, best, floor, args.max_nfe, cache)
            while hit is not None and hit[1]["nfe"] < best:
                if confirm(bench, cand, make, hit[0], floor, args.max_nfe, per_step, cache):
                    break
                rungs = [n for n in LADDER if n > hit[0] and per_step * n <= args.max_nfe]
                nxt = next(
                    (n for n in rungs if (cand, n) in cache and cache[cand, n]["mean"] <= floor),
                    None,
                )
                hit = None if nxt is None else (nxt, cache[cand, nxt])
        except Exception as err:  # a sampler that errors is reported, not fatal
            errors[cand] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
            log(f"    {cand}: ERROR {errors[cand]}")
            continue
        if hit is not None:
            found[cand] = hit[1] | {"steps": hit[0]}
            best = min(best, hit[1]["nfe"])
    if skipped:
        log(f"  skipped (deterministic; the PF-ODE limit misses the floor): {', '.join(skipped)}")
    result = {
        "spec": name,
        "run": str(run_path),
        "train_wall_s": train_wall,
        "sde": bench.setup.spec.sde.type,
        "references": measured,
        "floor": {"reference": floor_label, "threshold": floor},
        "found": found,
        "errors": errors,
        "skipped": skipped,
    }
    if found:
        fewest = min(r["nfe"] for r in found.values())
        tied = [k for k, r in found.items() if r["nfe"] == fewest]
        items = [bench.before] + [pool[k][0](found[k]["steps"]) for k in tied]
        walls = bench.time_interleaved(items, args.repeats)
        measured["before"]["wall_s"] = walls[0]
        for k, w in zip(tied, walls[1:]):
            found[k]["wall_s"] = w
        winner = min(tied, key=lambda k: found[k]["wall_s"])
        result["winner"] = winner
        w = found[winner]
        b = measured["before"]
        log(
            f"  BEFORE {b['sampler']}: nfe {b['nfe']}, sliced W2² {b['mean']:.5f} ± "
            f"{b['sd']:.5f}, {b['wall_s'] * 1e3:.0f} ms\n  AFTER  {winner}: {w['sampler']}: nfe "
            f"{w['nfe']}, sliced W2² {w['mean']:.5f} ± {w['sd']:.5f}, {w['wall_s'] * 1e3:.0f} ms"
        )
    else:
        b = measured["before"]
        b["wall_s"] = bench.time_interleaved([bench.before], args.repeats)[0]
        log(f"  no candidate reached the floor; before: {b['wall_s'] * 1e3:.0f} ms")
    return result


def short(item: dict) -> str:
    """A sampler item in a few words: its type and settings, nested parts by their tags."""
    words = [item["type"]]
    for key, value in item.items():
        if key == "type":
            continue
        if isinstance(value, dict):
            value = " ".join(f"{k}={v}" if k != "type" else str(v) for k, v in value.items())
        words.append(f"{key}={value}" if key != "solver" else str(value))
    return " ".join(words)


def table(results: list[dict]) -> str:
    """The README's table of shipped specs: before → after per spec."""
    rows = [
        "| spec | SDE | sampler before → after | NFE before → after | sliced W2² before → after "
        "(mean ± sd) | sampling time before → after |",
        "|---|---|---|---:|---|---:|",
    ]
    for r in results:
        b = r["references"]["before"]
        a = r["found"][r["winner"]] if "winner" in r else None
        after = a or b
        rows.append(
            f"| `{r['spec']}.yaml` | {r['sde']} | {short(yaml.safe_load(b['sampler']))} → "
            f"{short(yaml.safe_load(after['sampler'])) if a else 'unchanged'} | {b['nfe']} → "
            f"{after['nfe']} | {b['mean']:.4f} ± {b['sd']:.4f} → {after['mean']:.4f} ± "
            f"{after['sd']:.4f} | {b['wall_s'] * 1e3:.0f} ms → {after['wall_s'] * 1e3:.0f} ms |"
        )
    return "\n".join(rows)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--specs", nargs="+", help="spec names (files specs/NAME.yaml); default all")
    p.add_argument("--runs-dir", type=pathlib.Path, help="run store (default: a temporary one)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3, help="timed calls per sampler")
    p.add_argument("--max-nfe", type=int, default=1000)
    p.add_argument("--before", help="git revision whose spec sampler is the 'before' one")
    p.add_argument("--candidates", nargs="+", help="candidate names to try (default all)")
    p.add_argument("--out", type=pathlib.Path, help="write the results as JSON here")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 seeds, few candidates")
    p.add_argument("--table", nargs="+", type=pathlib.Path, help="print the table of --out files")
    args = p.parse_args()
    if args.table:
        print(table([r for path in args.table for r in json.loads(path.read_text())]))
        return
    if args.quick:
        args.seeds, args.repeats, args.max_nfe = 2, 1, 40
        args.candidates = args.candidates or ["dpm_solver_pp 2M log_snr", "euler_maruyama uniform"]
    names = args.specs or sorted(p.stem for p in (ROOT / "specs").glob("*.yaml"))
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = args.runs_dir or pathlib.Path(tmp)
        runs_dir.mkdir(parents=True, exist_ok=True)
        results = []
        for name in names:
            start = time.perf_counter()
            path, train_wall = trained_run(name, runs_dir)
            log(f"{name}: run {path}" + (f" (trained, {train_wall:.0f} s)" if train_wall else ""))
            results.append(bench_spec(name, path, args, train_wall))
            log(f"  ({time.perf_counter() - start:.0f} s)")
            if args.out:
                args.out.write_text(json.dumps(results, indent=1))
        print(table(results))


if __name__ == "__main__":
    main()
