"""The conformance kit (`diffsde check`, `diffsde.testing`): every registered component —
built-ins, the cdpm plugin, the examples — passes its kind's checks, and deliberately broken
components are caught by the check that guards each defect.

Mutations (each makes the named test fail; verified once): the kernel variance ×2 and the drift's
sign flipped pass `check_sde` when the kernel-vs-simulation comparison is removed; a Heun
sampler whose second stage reuses the first (order 1) declaring order 2 passes when the order
fit is skipped; doubling the reported NFE passes without the counted-calls check; DSM with the
target's sign flipped passes without the gradient-at-the-exact-score check; a metric declaring
"max" for a distance passes without the ranking check; a dataset whose score is that of data
twice as wide passes without Stein's identity.
"""

import pathlib
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

import diffsde
import diffsde.cli
import diffsde.spec
import diffsde.testing
from diffsde._data import GaussianMixture
from diffsde._objective import DenoisingScoreMatching
from diffsde._plugins import get_registry
from diffsde._sde._closed_form import VP

SETTINGS = {
    ("sde", "general"): {"drift": "-x", "diffusion": "1.0"},
    ("sde", "affine"): {"f": "-0.5 * (0.1 + 19.9 * t)", "g": "sqrt(0.1 + 19.9 * t)"},
    ("dataset", "toy"): {"name": "moons"},
    ("transform", "guidance"): {"log_potential": "-0.5 * sum((x - 1)**2)"},
    ("transform", "inpaint"): {"mask": [True, False], "values": [1.0]},
}
"""Settings of the components that have required keys."""
NEEDS_FILE = {("dataset", "file")}
SPECS = {("method", "moment_fit"): "examples/specs/moment_fit.yaml"}
"""Methods checked in a spec's context (moment_fit trains only its own Gaussian score model)."""


def _components() -> list[tuple[str, str]]:
    registry = get_registry()
    return [
        (kind, tag)
        for kind in diffsde.testing.KINDS
        for tag in sorted(registry.components[kind])
        if (kind, tag) not in NEEDS_FILE
    ]


@pytest.mark.parametrize(("kind", "tag"), _components(), ids=lambda v: v)
def test_every_registered_component_passes_quick(kind, tag):
    """`diffsde check KIND TAG --quick` passes for every built-in, cdpm and example component
    with its default settings (and the required keys above)."""
    diffsde.testing.assert_passes(
        kind, tag, settings=SETTINGS.get((kind, tag)), spec=_spec_of(kind, tag), quick=True
    )


def _spec_of(kind: str, tag: str):
    path = SPECS.get((kind, tag))
    return None if path is None else str(pathlib.Path(__file__).resolve().parents[1] / path)


def test_file_dataset_passes(tmp_path):
    path = tmp_path / "points.npy"
    jnp.save(path, jax.random.normal(jax.random.key(0), (300, 3)))
    diffsde.testing.assert_passes("dataset", "file", settings={"path": str(path)}, quick=True)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "tag"),
    [c for c in _components() if c[0] in ("sde", "sampler", "objective", "dataset", "method")],
    ids=lambda v: v,
)
def test_every_registered_component_passes_full(kind, tag):
    """The full checks (5× the paths, 4× the steps, longer training) of the kinds whose quick
    checks are Monte-Carlo estimates."""
    diffsde.testing.assert_passes(
        kind, tag, settings=SETTINGS.get((kind, tag)), spec=_spec_of(kind, tag)
    )


# broken components --------------------------------------------------------------------------


def _by_name(results):
    return {r.name: r for r in results}


class KernelVarianceTimesTwo(VP):
    def kernel(self, t):
        lam, sigma = super().kernel(t)
        return lam, jnp.sqrt(2.0) * sigma


class DriftSignFlipped(VP):
    def drift(self, t, x):
        return -super().drift(t, x)


@pytest.mark.parametrize("broken", [KernelVarianceTimesTwo, DriftSignFlipped])
def test_broken_sdes_are_caught(broken):
    results = _by_name(diffsde.testing.check_sde(broken(2), quick=True))
    assert not results["kernel variance vs simulation"].passed
    assert results["kernel variance vs simulation"].deviation > 20  # standard errors
    assert not results["kernel vs moment ODEs"].passed
    assert not results["reverse SDE returns the target"].passed
    if broken is DriftSignFlipped:
        assert not results["kernel mean vs simulation"].passed
        assert not results["stationary law"].passed
    with pytest.raises(AssertionError, match="FAIL  kernel variance vs simulation"):
        diffsde.testing.assert_ok(diffsde.testing.check_sde(broken(2), quick=True))


class FakeHeun(diffsde.AbstractSampler):
    """Declares order 2 but its second stage reuses the first: Euler, order 1."""

    tag: ClassVar[str] = "fake_heun"
    order: ClassVar[float] = 2.0
    steps: int = 50
    eps: float = 1e-3
    nfe_factor: int = 2

    def sample_from(self, sde, score, x_T, *, key, save_ts=None, condition=None):
        del key, save_ts, condition
        field = jax.vmap(sde.probability_flow(score), in_axes=(None, 0))
        ts = jnp.linspace(sde.T, self.eps, self.steps + 1)

        def step(x, times):
            t, s = times
            k1 = field(t, x)
            k2 = field(s, x) * 0 + k1  # evaluated, then ignored: the mutation
            return x + (s - t) * (k1 + k2) / 2, None

        x, _ = jax.lax.scan(step, x_T, (ts[:-1], ts[1:]))
        return diffsde.Samples(x, jnp.asarray(self.nfe_factor * self.steps, jnp.int32))


def test_wrong_order_sampler_is_caught():
    results = _by_name(diffsde.testing.check_sampler(FakeHeun(), VP(8), quick=True))
    order = results["order of convergence"]
    assert not order.passed and 0.6 < order.deviation < 1.4, order.line()  # fitted ≈ 1, not 2
    assert results["NFE equals score calls"].passed


def test_misreported_nfe_is_caught():
    results = _by_name(diffsde.testing.check_sampler(FakeHeun(nfe_factor=4), VP(8), quick=True))
    assert not results["NFE equals score calls"].passed
    assert results["NFE equals score calls"].deviation == 100  # 200 reported, 100 made


class FlippedDSM(DenoisingScoreMatching):
    def target(self, t, xt, x0, condition=None):
        return -super().target(t, xt, x0, condition)


def test_wrong_sign_objective_is_caught():
    sde = VP(2)
    results = _by_name(diffsde.testing.check_objective(FlippedDSM(sde), sde, quick=True))
    assert not results["gradient vanishes at the exact score"].passed
    assert not results["gradient equals explicit score matching's"].passed


class Distance(diffsde.AbstractMetric):
    tag: ClassVar[str] = "distance"
    directions: ClassVar[dict] = {"distance": "max"}  # the mutation: a distance is "min"

    def __call__(self, ctx):
        return {"distance": float(jnp.linalg.norm(ctx.samples.mean(0) - ctx.reference.mean(0)))}


def test_misdirected_metric_is_caught():
    results = _by_name(diffsde.testing.check_metric(Distance(), VP(2)))
    assert not results["ranks 'distance'"].passed


class WideScore(GaussianMixture):
    """Claims the score of the same mixture with components twice as wide."""

    def score(self, x, t, sde, condition=None):
        wide = GaussianMixture(jnp.exp(self.log_weights), self.means, 2 * self.stds)
        return wide.score(x, t, sde, condition)


def test_wrong_exact_score_is_caught():
    data = WideScore([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], 0.3)
    results = _by_name(diffsde.testing.check_dataset(data, VP(2), quick=True))
    assert not results["exact score (Stein's identity)"].passed
    good = GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], 0.3)
    assert _by_name(diffsde.testing.check_dataset(good, VP(2), quick=True))[
        "exact score (Stein's identity)"
    ].passed


# the command --------------------------------------------------------------------------------


def test_check_command_exit_codes(capsys):
    assert diffsde.cli.main(["check", "sde", "vp", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "kernel variance vs simulation" in out and "sde 'vp':" in out and "passed" in out
    assert diffsde.cli.main(["check", "sde", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown sde 'nope'" in err and "Traceback" not in err
    assert diffsde.cli.main(["check", "sde", "vp", "--set", "beta_min=-1"]) == 2
    assert "diffsde check sde vp: --set beta_min: Input should be greater than or equal to 0" in (
        capsys.readouterr().err
    )
    assert diffsde.cli.main(["check", "thing", "vp"]) == 2


def test_check_command_fails_a_broken_plugin(capsys, tmp_path):
    """And `validate` warns of it (the moment-ODE check, one compiled call). Mutation: dropping
    the kernel warning from `_warn_of_plugins` makes this fail."""
    import types

    module = types.ModuleType("broken_plugin")
    module.KernelVarianceTimesTwo = type(
        "BrokenVP", (KernelVarianceTimesTwo,), {"tag": "broken_vp", "__annotations__": {}}
    )

    @diffsde.hookimpl
    def register_sdes(register):
        register(module.KernelVarianceTimesTwo)

    module.register_sdes = register_sdes
    diffsde.register_plugin(module, "broken_plugin")
    try:
        assert diffsde.cli.main(["check", "sde", "broken_vp", "--quick"]) == 1
        out = capsys.readouterr().out
        assert "FAIL  kernel variance vs simulation" in out and "FAILED" in out
        spec = tmp_path / "broken.yaml"
        spec.write_text("sde: {type: broken_vp}\ndata: {type: gmm}\n")
        assert diffsde.cli.main(["validate", str(spec)]) == 0
        err = capsys.readouterr().err
        assert "warning: sde 'broken_vp' (BrokenVP): its kernel(t) contradicts its drift" in err
        assert "relative error 0.333" in err and "diffsde check sde broken_vp" in err
        good = tmp_path / "good.yaml"
        good.write_text("sde: {type: vp}\ndata: {type: gmm}\n")
        assert diffsde.cli.main(["validate", str(good)]) == 0
        assert "warning" not in capsys.readouterr().err
    finally:
        diffsde.unregister_plugin("broken_plugin")


class RaisingDrift(VP):
    def drift(self, t, x):
        raise RuntimeError("a bug in the plugin")


def test_a_component_that_raises_is_one_failed_line():
    """Mutation: without `guarded`, the RuntimeError escapes as a traceback."""
    results = diffsde.testing.check_sde(RaisingDrift(2), quick=True)
    assert [(r.name, r.passed) for r in results] == [("shapes", False)]
    assert "raised RuntimeError: a bug in the plugin" in results[0].line()


class MomentMatched(GaussianMixture):
    """Claims the score of the one Gaussian with the mixture's own mean and variance: right in
    its first two moments, wrong beyond (Stein's identity with f = 1, x_i alone passes it)."""

    def score(self, x, t, sde, condition=None):
        weights = jnp.exp(self.log_weights)
        mean = weights @ self.means
        var = jnp.mean(weights @ ((self.means - mean) ** 2)) + jnp.mean(weights * self.stds**2)
        return GaussianMixture([1.0], mean[None], jnp.sqrt(var)).score(x, t, sde, condition)


def test_a_score_right_only_in_its_moments_is_caught():
    """Mutation: dropping the random Fourier features from `stein` makes this pass."""
    data = MomentMatched([0.3, 0.7], [[-1.2, -1.2], [1.2, 1.2]], 0.4)
    results = _by_name(diffsde.testing.check_dataset(data, VP(2), quick=True))
    assert not results["exact score (Stein's identity)"].passed


def test_a_prior_that_ignores_what_x_T_keeps_is_caught():
    """VP with β_max = 0.5 keeps λ_T = e^{−0.15} = 86 % of x₀ at T; its N(0, I) prior is wrong
    by that. Mutation: checking the prior on data N(0, I) (which VP leaves invariant) passes it."""
    report = diffsde.testing.check("sde", "vp", settings={"beta_max": 0.5}, quick=True)
    assert [r.name for r in report.failures] == ["prior vs law of X_T"]


class Recompiling(diffsde.AbstractSampler):
    """A static field that is a new function at every construction: each sampler built from the
    same settings is a new cache key, so every `diffsde sample` call compiles again."""

    tag: ClassVar[str] = "recompiling"
    eps: float = eqx.field(static=True, default=1e-3)
    steps: int = eqx.field(static=True, default=20)
    rate: Callable = eqx.field(static=True, default=None)

    def __post_init__(self):
        self.rate = lambda h: h  # the mutation: a new object each time

    def sample_from(self, sde, score, x_T, *, key, save_ts=None, condition=None):
        del key, save_ts, condition
        field = jax.vmap(sde.probability_flow(score), in_axes=(None, 0))
        ts = jnp.linspace(sde.T, self.eps, self.steps + 1)
        x, _ = jax.lax.scan(
            lambda x, ts: (x + self.rate(ts[1] - ts[0]) * field(ts[0], x), None),
            x_T,
            (ts[:-1], ts[1:]),
        )
        return diffsde.Samples(x, jnp.asarray(self.steps, jnp.int32))


def test_a_sampler_that_recompiles_is_caught():
    """Mutation: giving the second call the same sampler object (not one built again) passes."""
    sde = VP(8)
    results = _by_name(
        diffsde.testing.check_sampler(Recompiling(), sde, quick=True, rebuild=Recompiling)
    )
    assert not results["compiles once"].passed and results["compiles once"].deviation >= 1
    fixed = _by_name(diffsde.testing.check_sampler(FakeHeun(), sde, quick=True, rebuild=FakeHeun))
    assert fixed["compiles once"].passed


class Silent(diffsde.AbstractMetric):
    tag: ClassVar[str] = "silent"
    directions: ClassVar[dict] = {"w2": "min"}

    def __call__(self, ctx):
        return {}  # the mutation: it never applies


def test_a_metric_that_never_applies_is_caught():
    """Mutation: treating an empty result as "finite floats []" passes it."""
    results = diffsde.testing.check_metric(Silent(), VP(2))
    assert [(r.name, r.passed) for r in results] == [("values", False)]


@jax.custom_vjp
def _exp(x):
    return jnp.exp(x)


_exp.defvjp(lambda x: (jnp.exp(x), jnp.exp(x)), lambda e, g: (g * e,))


class ReverseModeKernel(VP):
    """A kernel written with a custom_vjp helper: fine for training and sampling, but it has no
    forward-mode derivative, which the moment-ODE check takes."""

    def kernel(self, t):
        B = self.schedule.integral(t)
        return _exp(-0.5 * B), jnp.sqrt(-jnp.expm1(-B))


def test_a_kernel_without_forward_mode_is_skipped_not_a_traceback():
    """Mutation: without the TypeError guard in `moment_odes`, `kernel_warning` (every
    validate and run) raises."""
    from diffsde._conformance import kernel_warning

    assert kernel_warning(ReverseModeKernel(2), "vp") is None
    results = _by_name(diffsde.testing.check_sde(ReverseModeKernel(2), quick=True))
    assert results["kernel vs moment ODEs"].skipped.startswith("the kernel cannot be diff")
    assert results["kernel variance vs simulation"].passed


def test_check_command_names_the_option_at_fault(capsys):
    cases = [
        (["sampler", "pf_ode", "--sde", "nope"], "diffsde check sampler pf_ode: --sde nope:"),
        (["sde", "vp", "--dim", "0"], "diffsde check sde vp: --dim 0:"),
        (["objective", "dsm", "--sde", "langevin"], "diffsde check objective dsm: objective 'dsm'"),
        (["sde", "vp", "--set", "T=1", "--set", "T.x=2"], "--set 'T.x=2': T is already set"),
        (["dataset", "toy"], "diffsde check dataset toy: --set name: missing required key"),
    ]
    for argv, expected in cases:
        assert diffsde.cli.main(["check", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, (argv, err)


class Frozen(diffsde.ScoreMatching):
    """Computes its loss but never applies the update."""

    def step(self, state, batch, *, step, key):
        _, metrics = super().step(state, batch, step=step, key=key)
        return state, metrics  # the mutation


class NoLoss(diffsde.ScoreMatching):
    metric_names: ClassVar[tuple[str, ...]] = ("lr", "grad_norm")


def test_broken_methods_are_caught():
    """Mutation: returning the updated state from `Frozen.step` passes it; naming "loss" passes
    `NoLoss`."""
    from diffsde._conformance._method import check_method

    setup = diffsde.validate_text(
        "sde: {type: vp}\ndata: {type: gmm, components: 2, std: 0.4}\n"
        "model: {type: mlp, width: 32, depth: 2}\nobjective: {type: dsm}\n"
    )
    model = setup.spec.model.build(sde=setup.sde, key=jax.random.key(0), prior=setup.prior)
    objective = setup.spec.objective.build(sde=setup.sde, data=setup.data)
    good = diffsde.spec.build_method(
        setup.spec, model, objective, sde=setup.sde, data=setup.data, prior=setup.prior
    )
    fields = {f: getattr(good, f) for f in ("model", "objective", "optimizer", "schedule")}
    frozen = _by_name(
        check_method(Frozen(**fields, ema_decay=0.9), setup.data, setup.sde, steps=200)
    )
    assert frozen["determinism"].passed and not frozen["trains"].passed
    assert frozen["trains"].deviation > 0.99  # no progress at all
    no_loss = check_method(NoLoss(**fields, ema_decay=0.9), setup.data, setup.sde, steps=200)
    assert [(r.name, r.passed) for r in no_loss] == [("structure", False)]
    assert "must contain 'loss'" in no_loss[0].line()
