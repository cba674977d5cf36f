"""PF-ODE convergence with fixed-step solvers: error ≈ C₁δ + C₂hᵖ (seeds slides, docs/math.md §7).

With the EXACT score of a Gaussian mixture, the probability-flow ODE is solved from T down to ε
from EXACT samples of p_T (x₀ ~ p_data, x_T = m_T(x₀) + σ_T z), so the only errors are the
solver's discretisation (step h = (T − ε)/steps) and an artificial score error δ added to the
exact score, as in the slides (d the dimension, m the mixture mean, sin entrywise):

    constant     s = ∇log p_t + δ 1/d
    linear       s = ∇log p_t + δ (x − m)/d
    sinusoidal   s = ∇log p_t + δ sin(x) ⊙ (x − m)/d

Two error measures, both deterministic given the seed:

- path error: the mean over the batch of ‖x̂ − x*‖, x̂ the fixed-step endpoint and x* the endpoint
  of the EXACT-score PF-ODE from the same x_T by Tsit5 at a tight tolerance (it isolates the
  discretisation and score errors; its own floor is the distance between two references at 10x
  apart tolerances, printed);
- moment error: ‖mean − μ_ε‖ + ‖Cov − Σ_ε‖_F against the exact moments of p_ε. The exact flow
  carries exact p_T samples to exact p_ε samples, so x* has only Monte Carlo error: its moment
  error is the sampling floor (~1/√n); a solver whose weak error is below it cannot be told
  from the exact flow by this measure.

Three experiments: (1) δ = 0, Euler (p = 1), Heun (p = 2), RK4 (p = 4) over step counts; slope of
log path error vs log h fitted over the 4 smallest h whose error exceeds 10x the reference floor;
(2) RK4 at a fixed small h, each perturbation over δ; slope of log error vs log δ over the δ ≤ 0.1
whose error exceeds 10x the δ = 0 error; (3) Heun over a grid of (h, δ): relative least squares
fit of error ≈ C₁δ + C₂h², and how far the grid is from it. Runs in float64: in float32 the
roundoff, amplified along the separatrices between modes, floors the mean path error at a few
1e-6, which RK4 reaches by 64 steps (``--float32`` shows it). Prints markdown tables and writes a
two-panel figure (needs matplotlib, not a project dependency; skipped without it).

    .venv/bin/python bench/convergence.py [--spec specs/ou_gmm.yaml] [--n 4000] [--quick]
        [--float32] [-o bench/figures/convergence.png]

Without ``--spec``: VP (β from 0.1 to 20, T = 1) on a 2-D mixture of 5 Gaussians (std 0.3,
means on the circle of radius 2), ε = 1e-3. With it, the spec's SDE (any with a Gaussian kernel)
and its data (``type: gmm``).
"""

import argparse
import os
import pathlib
import tempfile
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float

import diffsde

DEFAULT_SPEC = "sde: {type: vp}\ndata: {type: gmm, dim: 2, components: 5, std: 0.3}\n"
SOLVERS = {"euler": 1, "heun": 2, "rk4": 4}
FIXED_STEP_SOLVERS = {cls.tag: cls for cls in (diffsde.Euler, diffsde.Heun, diffsde.ClassicalRK4)}
KINDS = ("constant", "linear", "sinusoidal")
FLOOR_FACTOR = 10  # points used in a fit lie this far above the floor they are measured against
FIT_POINTS = 4  # slopes in h: over the smallest h above the floor
DELTA_MAX_FIT = 0.1  # slopes in δ: over δ up to this (larger δ bends the flow visibly)


def settings(quick: bool) -> dict:
    if quick:
        return dict(
            n=300,
            steps=(8, 16, 32),
            deltas=(1e-3, 1e-2, 1e-1),
            delta_steps=32,
            grid_steps=(8, 16),
            grid_deltas=(1e-3, 1e-1),
        )
    return dict(
        n=4000,
        steps=(8, 16, 32, 64, 128, 256, 512),
        deltas=tuple(10.0**k for k in np.arange(-5.0, 0.01, 0.5)),
        delta_steps=128,
        grid_steps=(16, 32, 64, 128, 256),
        grid_deltas=(1e-4, 1e-3, 1e-2, 1e-1),
    )


def load_problem(spec: str | None):
    """(sde, mixture, label) from a spec file, or the default spec above."""
    setup = (
        diffsde.validate_text(DEFAULT_SPEC, "<default>")
        if spec is None
        else diffsde.load_spec(spec)
    )
    if not isinstance(setup.data, diffsde.GaussianMixture):
        raise SystemExit(
            f"{setup.file}: data is {type(setup.data).__name__}; the study needs an exact score: "
            "use `data: {type: gmm, ...}`"
        )
    if not isinstance(setup.sde, diffsde.AbstractGaussianSDE):
        raise SystemExit(
            f"{setup.file}: the SDE {type(setup.sde).__name__} has no Gaussian kernel, so the "
            "mixture's score is not known in closed form; use vp, subvp, ve, ou or an affine SDE"
        )
    return setup.sde, setup.data, setup.file


class PerturbedScore(eqx.Module):
    """The exact mixture score plus ``weights @ (1, x − m, sin(x) ⊙ (x − m)) / d``.

    The weights (δ per kind) are an array, so changing δ or the kind reuses the compiled solve.
    """

    mixture: diffsde.GaussianMixture
    sde: diffsde.AbstractGaussianSDE
    weights: Float[Array, "3"]

    def __call__(self, x: Float[Array, " dim"], t) -> Float[Array, " dim"]:
        centred = x - self.mixture.mean()
        errors = jnp.stack([jnp.ones_like(x), centred, jnp.sin(x) * centred]) / x.shape[-1]
        return self.mixture.score(x, t, self.sde) + self.weights @ errors


def exact_moments(mixture, sde, t):
    """Mean and covariance of p_t, from the components' closed-form marginals (float64)."""
    means, stds = (np.asarray(a, np.float64) for a in mixture.marginal(sde, t))
    w = np.exp(np.asarray(mixture.log_weights, np.float64))
    mean = w @ means
    second = np.einsum("k,ki,kj->ij", w, means, means) + np.sum(w * stds**2) * np.eye(mixture.dim)
    return mean, second - np.outer(mean, mean)


def slope(x, y) -> float:
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def fit_window(errors, floor):
    """Indices of the (up to FIT_POINTS) last entries above FLOOR_FACTOR × floor."""
    above = [i for i, e in enumerate(errors) if e > FLOOR_FACTOR * floor]
    return above[-FIT_POINTS:]


class Study:
    """The problem, its exact references, and the two error measures."""

    def __init__(self, sde, mixture, eps, n, dtype, seed):
        self.sde, self.mixture, self.eps, self.dtype = sde, mixture, eps, dtype
        data_key, noise_key = jr.split(jr.key(seed))
        x0 = mixture.sample(key=data_key, n=n).astype(dtype)
        sample = lambda x, k: sde.sample_marginal(sde.T, x, key=k)[0]  # noqa: E731
        self.x_T = jax.vmap(sample)(x0, jr.split(noise_key, n))
        self.mean_eps, self.cov_eps = exact_moments(mixture, sde, eps)
        tol = 1e-10 if dtype == jnp.float64 else 1e-7
        self.tol = tol
        self.x_ref = self.reference(tol)
        self.ref_floor = self.path_error(self.reference(10 * tol))
        self.moment_floor = self.moment_error(self.x_ref)

    def score(self, **deltas) -> PerturbedScore:
        weights = jnp.asarray([deltas.get(k, 0.0) for k in KINDS], self.dtype)
        return PerturbedScore(self.mixture, self.sde, weights)

    def reference(self, tol) -> np.ndarray:
        controller = diffsde.PIDSteps(rtol=tol, atol=tol, dt0=1e-3, max_steps=100_000)
        sampler = diffsde.ProbabilityFlow(
            solver=diffsde.Tsit5(), controller=controller, eps=self.eps
        )
        return self._solve(sampler, self.score())

    def solve(self, solver, steps, **deltas) -> np.ndarray:
        sampler = diffsde.ProbabilityFlow(
            solver=FIXED_STEP_SOLVERS[solver](),
            controller=diffsde.FixedSteps(steps=steps),
            eps=self.eps,
        )
        return self._solve(sampler, self.score(**deltas))

    def _solve(self, sampler, score) -> np.ndarray:
        out = diffsde.sample(
            sampler, self.sde, score, self.x_T, key=jr.key(0), chunk_size=len(self.x_T)
        )
        return np.asarray(out.x, np.float64)

    def h(self, steps) -> float:
        return (self.sde.T - self.eps) / steps

    def path_error(self, x) -> float:
        return float(np.mean(np.linalg.norm(x - self.x_ref, axis=-1)))

    def moment_error(self, x) -> float:
        mean, cov = x.mean(0), np.cov(x.T).reshape(self.cov_eps.shape)
        return float(np.linalg.norm(mean - self.mean_eps) + np.linalg.norm(cov - self.cov_eps))


def study_h(study, cfg):
    """δ = 0: path and moment errors per solver and step count; fitted slopes."""
    steps = cfg["steps"]
    h = np.array([study.h(s) for s in steps])
    path, moments = {}, {}
    for solver in SOLVERS:
        xs = [study.solve(solver, s) for s in steps]
        path[solver] = np.array([study.path_error(x) for x in xs])
        moments[solver] = np.array([study.moment_error(x) for x in xs])
        print(f"  [h] {solver} done", flush=True)
    fits = {}
    for solver, errors in path.items():
        window = fit_window(errors, study.ref_floor)
        fits[solver] = (slope(h[window], errors[window]), window) if len(window) >= 2 else None

    print("\n### error vs h (δ = 0): mean path error to the exact flow | moment error\n")
    print(
        "| steps | h | "
        + " | ".join(f"{s} path" for s in SOLVERS)
        + " | "
        + " | ".join(f"{s} moments" for s in SOLVERS)
        + " |"
    )
    print("|---:|---:|" + "---:|" * (2 * len(SOLVERS)))
    for i, s in enumerate(steps):
        cells = [f"{path[k][i]:.2e}" for k in SOLVERS] + [f"{moments[k][i]:.2e}" for k in SOLVERS]
        print(f"| {s} | {h[i]:.2e} | " + " | ".join(cells) + " |")
    print(
        f"\nreference floor (Tsit5 at rtol = atol = {study.tol:g} vs {10 * study.tol:g}): "
        f"{study.ref_floor:.1e}; sampling floor (moment error of the exact-flow samples, "
        f"n = {len(study.x_T)}): {study.moment_floor:.2e}\n"
    )
    print("| solver | order p | fitted slope | fitted over steps | local slopes (coarse → fine) |")
    print("|---|---:|---:|---|---|")
    for solver, order in SOLVERS.items():
        local = np.diff(np.log(path[solver])) / np.diff(np.log(h))
        local_text = ", ".join(f"{v:.2f}" for v in local)
        if fits[solver] is None:
            print(f"| {solver} | {order} | n/a (at the floor) | | {local_text} |")
            continue
        value, window = fits[solver]
        used = ", ".join(str(steps[i]) for i in window)
        print(f"| {solver} | {order} | {value:.2f} | {used} | {local_text} |")
    return dict(h=h, path=path, moments=moments, fits=fits)


def study_delta(study, cfg):
    """RK4 at a fixed small h: errors per perturbation kind and δ; fitted slopes."""
    deltas, steps = np.asarray(cfg["deltas"]), cfg["delta_steps"]
    base_x = study.solve("rk4", steps)
    base = study.path_error(base_x)
    path, moments, fits = {}, {}, {}
    for kind in KINDS:
        xs = [study.solve("rk4", steps, **{kind: float(d)}) for d in deltas]
        path[kind] = np.array([study.path_error(x) for x in xs])
        moments[kind] = np.array([study.moment_error(x) for x in xs])
        use = [
            i
            for i, d in enumerate(deltas)
            if d <= DELTA_MAX_FIT and path[kind][i] > FLOOR_FACTOR * base
        ]
        fits[kind] = slope(deltas[use], path[kind][use]) if len(use) >= 2 else None
    print(
        f"\n### error vs δ: RK4, {steps} steps (h = {study.h(steps):.2e}; path error at δ = 0: "
        f"{base:.1e}, moment error {study.moment_error(base_x):.2e})\n"
    )
    print(
        "| δ | "
        + " | ".join(f"{k} path" for k in KINDS)
        + " | "
        + " | ".join(f"{k} moments" for k in KINDS)
        + " |"
    )
    print("|---:|" + "---:|" * (2 * len(KINDS)))
    for i, d in enumerate(deltas):
        cells = [f"{path[k][i]:.2e}" for k in KINDS] + [f"{moments[k][i]:.2e}" for k in KINDS]
        print(f"| {d:.0e} | " + " | ".join(cells) + " |")
    text = " | ".join("n/a" if fits[k] is None else f"{fits[k]:.2f}" for k in KINDS)
    print(f"| **slope (δ ≤ {DELTA_MAX_FIT:g})** | {text} | | | |")
    return dict(deltas=deltas, steps=steps, base=base, path=path, moments=moments, fits=fits)


def study_grid(study, cfg, by_h):
    """Heun over (h, δ): relative least-squares fit of error ≈ C₁δ + C₂h²."""
    steps, deltas = cfg["grid_steps"], cfg["grid_deltas"]
    order = SOLVERS["heun"]
    zero = {s: by_h["path"]["heun"][cfg["steps"].index(s)] for s in steps}
    rows = {}
    for kind in KINDS:
        rows[kind] = [(study.h(s), 0.0, zero[s]) for s in steps] + [
            (study.h(s), d, study.path_error(study.solve("heun", s, **{kind: d})))
            for s in steps
            for d in deltas
        ]
    print(f"\n### error ≈ C₁δ + C₂h^{order}: Heun over steps {steps} × δ {{0, {deltas}}}\n")
    print("| perturbation | C₁ | C₂ | largest \\|error / fit − 1\\| | median |")
    print("|---|---:|---:|---:|---:|")
    fits = {}
    for kind, table in rows.items():
        h, d, e = (np.array(c) for c in zip(*table, strict=True))
        design = np.stack([d / e, h**order / e], axis=1)
        (c1, c2), *_ = np.linalg.lstsq(design, np.ones_like(e), rcond=None)
        deviation = np.abs(e / (c1 * d + c2 * h**order) - 1)
        fits[kind] = (c1, c2)
        print(
            f"| {kind} | {c1:.3f} | {c2:.3f} | {deviation.max():.2f} | {np.median(deviation):.2f} |"
        )
    kind = KINDS[0]
    print(f"\npath error of Heun with the {kind} perturbation (rows: steps; columns: δ):\n")
    print("| steps | h | δ = 0 | " + " | ".join(f"{d:.0e}" for d in deltas) + " |")
    print("|---:|---:|---:|" + "---:|" * len(deltas))
    table = {(h, d): e for h, d, e in rows[kind]}
    for s in steps:
        h = study.h(s)
        cells = [f"{table[h, d]:.2e}" for d in (0.0, *deltas)]
        print(f"| {s} | {h:.2e} | " + " | ".join(cells) + " |")
    return fits


def figure(by_h, by_delta, study, output):
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no figure (pip install matplotlib)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_h, ax_d) = plt.subplots(1, 2, figsize=(11, 4.3))
    h = by_h["h"]
    for i, (solver, order) in enumerate(SOLVERS.items()):
        colour = f"C{i}"
        label = f"{solver} (p = {order})"
        fit = by_h["fits"][solver]
        if fit is not None:
            label += f", slope {fit[0]:.2f}"
        ax_h.loglog(h, by_h["path"][solver], "o-", c=colour, label=label)
        ax_h.loglog(h, by_h["moments"][solver], "s:", c=colour, mfc="none", ms=4)
        if fit is not None:  # h^p through the finest fitted point
            anchor = fit[1][-1]
            ref = by_h["path"][solver][anchor] * (h / h[anchor]) ** order
            ax_h.loglog(h, ref / 2, "--", c="0.5", lw=0.8)
            ax_h.text(h[-1] / 1.08, ref[-1] / 2, f"$h^{order}$", fontsize=8, ha="right")
    ax_h.axhline(study.moment_floor, c="0.3", lw=0.8, ls="-.")
    ax_h.axhline(study.ref_floor, c="0.8", lw=0.8)
    ax_h.text(h[-1], study.moment_floor / 1.3, "sampling floor (moments)", fontsize=7, va="top")
    ax_h.text(h[-1], study.ref_floor / 1.3, "reference floor", fontsize=7, color="0.5", va="top")
    ax_h.set_xlim(h[-1] / 1.6, h[0] * 1.2)
    ax_h.set_ylim(bottom=study.ref_floor / 6)
    ax_h.set_xlabel("step size h")
    ax_h.set_ylabel("error")
    ax_h.set_title("δ = 0: path error (solid), moment error (dotted)", fontsize=9)
    ax_h.legend(fontsize=8, loc="lower right")

    deltas = by_delta["deltas"]
    for i, kind in enumerate(KINDS):
        colour = f"C{i + 3}"
        fit = by_delta["fits"][kind]
        label = kind + ("" if fit is None else f", slope {fit:.2f}")
        ax_d.loglog(deltas, by_delta["path"][kind], "o-", c=colour, label=label)
        ax_d.loglog(deltas, by_delta["moments"][kind], "s:", c=colour, mfc="none", ms=4)
    lowest = min(by_delta["path"][k][0] for k in KINDS) / 3
    ax_d.loglog(deltas, deltas * lowest / deltas[0], "--", c="0.5", lw=0.8)
    ax_d.text(deltas[-1] * 1.1, lowest * deltas[-1] / deltas[0], "$\\delta^1$", fontsize=8)
    ax_d.axhline(study.moment_floor, c="0.3", lw=0.8, ls="-.")
    ax_d.axhline(by_delta["base"], c="0.8", lw=0.8)
    ax_d.text(deltas[0], study.moment_floor / 1.3, "sampling floor (moments)", fontsize=7, va="top")
    ax_d.text(deltas[0], by_delta["base"] * 1.3, "δ = 0 (discretisation)", fontsize=7, color="0.5")
    ax_d.set_xlabel("score error δ")
    ax_d.set_title(
        f"RK4, {by_delta['steps']} steps: path error (solid), moment error (dotted)", fontsize=9
    )
    ax_d.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    pathlib.Path(output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    print(f"wrote {output}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", help="a spec with a Gaussian-kernel SDE and `data: {type: gmm}`")
    parser.add_argument("--n", type=int, help="points (default 4000; 300 with --quick)")
    parser.add_argument("--eps", type=float, default=1e-3, help="end time ε (1e-5 suits VE)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--float32", action="store_true", help="float32 instead of float64")
    parser.add_argument("--quick", action="store_true", help="smoke run: few points and steps")
    parser.add_argument(
        "-o",
        "--output",
        help="figure path (default bench/figures/convergence.png; a temporary file with --quick)",
    )
    args = parser.parse_args()
    cfg = settings(args.quick)
    n = args.n or cfg["n"]
    output = args.output or (
        os.path.join(tempfile.gettempdir(), "diffsde-convergence-quick.png")
        if args.quick
        else "bench/figures/convergence.png"
    )
    if not args.float32:
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float32 if args.float32 else jnp.float64
    sde, mixture, source = load_problem(args.spec)
    print(
        f"device: {jax.devices()[0].platform}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    stds = ", ".join(f"{s:.3g}" for s in np.asarray(mixture.stds))
    print(
        f"problem ({source}): {sde}, T = {sde.T}, ε = {args.eps}; data: {mixture.dim}-D mixture of "
        f"{len(mixture.stds)} Gaussians (stds {stds}); "
        f"n = {n} exact samples of p_T, seed {args.seed}, {jnp.dtype(dtype).name}"
    )
    total = time.perf_counter()
    study = Study(sde, mixture, args.eps, n, dtype, args.seed)
    timings = {"references": time.perf_counter() - total}
    start = time.perf_counter()
    by_h = study_h(study, cfg)
    timings["h sweep"] = time.perf_counter() - start
    start = time.perf_counter()
    by_delta = study_delta(study, cfg)
    timings["δ sweep"] = time.perf_counter() - start
    start = time.perf_counter()
    grid = study_grid(study, cfg, by_h)
    timings["(h, δ) grid"] = time.perf_counter() - start
    figure(by_h, by_delta, study, output)
    h_text = ", ".join(
        f"{s} {'n/a' if by_h['fits'][s] is None else format(by_h['fits'][s][0], '.2f')} (p = {p})"
        for s, p in SOLVERS.items()
    )
    d_text = ", ".join(
        f"{k} {'n/a' if by_delta['fits'][k] is None else format(by_delta['fits'][k], '.2f')}"
        for k in KINDS
    )
    c_text = ", ".join(f"{k} C₁ {c1:.3f} C₂ {c2:.3f}" for k, (c1, c2) in grid.items())
    print(f"\nheadline: fitted slopes in h: {h_text}")
    print(f"headline: fitted slopes in δ: {d_text}")
    print(f"headline: Heun error ≈ C₁δ + C₂h²: {c_text}")
    parts = ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
    print(
        f"\ntotal {time.perf_counter() - total:.0f} s ({parts}), "
        f"load average {os.getloadavg()[0]:.2f} at end"
    )


if __name__ == "__main__":
    main()
