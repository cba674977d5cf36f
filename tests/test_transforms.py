"""Score transforms (temperature, guidance, inpaint) against closed forms on Gaussian data, their
composition, the condition they pass on, and their errors."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import diffsde
from diffsde._builtin.transforms import Guidance, Inpaint, Temperature
from diffsde._errors import SpecFieldError
from diffsde._transforms import (
    AbstractScoreTransform,
    TransformedScore,
    apply_transforms,
    build_transform,
    transforms_label,
)

REGISTRY = diffsde.get_registry()
CONFIGS = {n: REGISTRY.get("transform", n).config for n in REGISTRY.names("transform")}
VP = diffsde.VP(2)
PF_ODE = diffsde.ProbabilityFlow(controller=diffsde.PIDSteps(rtol=1e-6, atol=1e-6, dt0=1e-2))


def gaussian(mean, std) -> diffsde.GaussianMixture:
    return diffsde.GaussianMixture([1.0], [mean], [std])


def exact(data, sde=VP):
    return lambda x, t: data.score(x, t, sde)


def pf_ode(score, n=256, seed=0, sde=VP, sampler=PF_ODE):
    x_T = jr.normal(jr.key(seed), (n, sde.dim))
    return x_T, np.asarray(diffsde.sample(sampler, sde, score, x_T, key=jr.key(seed + 1)).x)


# temperature ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.8, 1.0, 1.25])
def test_temperature_pf_ode_variance_matches_closed_form(tau):
    """Data N(0, s² I) under VP with the exact score divided by τ: the PF-ODE is linear and
    homogeneous, x_ε = c x_T, and c² = V_ε/V_T = (v_ε/v_T)^{1/τ} e^{(1 − 1/τ)(B(T) − B(ε))},
    v_t = λ_t² s² + σ_t² (derivation in Temperature's docstring). Checked per point to 1e-3
    relative (measured: ≤ 1.4e-5). Mutation: `score * tau` instead of `/ tau` makes τ = 0.8 give
    c² = 2.44 instead of 0.0145, and fails."""
    s, eps = 0.5, PF_ODE.eps
    x_T, x = pf_ode(apply_transforms(exact(gaussian([0.0, 0.0], s)), [Temperature(tau=tau)]))
    v = [float(VP.kernel(t)[0] ** 2 * s**2 + VP.kernel(t)[1] ** 2) for t in (eps, VP.T)]
    dB = float(VP.schedule.integral(VP.T) - VP.schedule.integral(eps))
    expected = (v[0] / v[1]) ** (1 / tau) * np.exp((1 - 1 / tau) * dB)
    np.testing.assert_allclose((x / x_T) ** 2, expected, rtol=1e-3)
    if tau == 1.0:  # the untempered flow ends at the data's variance (sanity of the formula)
        assert expected == pytest.approx(s**2, rel=2e-3)


# guidance ------------------------------------------------------------------------------------

MU, S = np.array([0.5, -0.5]), 0.6
C, RHO = np.array([1.5, 1.0]), 0.8


def tilted(weight):
    """p_0 r^w for p_0 = N(μ, s²I), r = N(c, ρ²I): N(μ', s'²I), 1/s'² = 1/s² + w/ρ²."""
    var = 1 / (1 / S**2 + weight / RHO**2)
    return var * (MU / S**2 + weight * C / RHO**2), var


EXACT_TILT = (
    "-0.5*sum((x-lam*mq)**2)/(lam**2*vq+sigma**2) + 0.5*sum((x-lam*mp)**2)/(lam**2*vp+sigma**2)"
)


def test_guidance_with_time_dependent_potential_is_the_exact_tilted_score():
    """log r_t = log q_t − log p_t, written with lam = λ_t and sigma = σ_t, makes the guided
    score the exact score of the diffused tilted target q at every t (to 1e-4; measured ≤ 1e-6),
    and the PF-ODE then samples q = N(μ', s'²I): mean and variance within 5 standard errors.
    Mutation: dropping `self.weight *` (so w = 2 below acts as 1) or a `-` for the `+` in
    `score + w ∇ log r` fails the pointwise check."""
    mean_q, var_q = tilted(1.0)
    params = {"mq": mean_q.tolist(), "vq": var_q, "mp": MU.tolist(), "vp": S**2}
    guided = apply_transforms(exact(gaussian(MU, S)), [Guidance(EXACT_TILT, 1.0, params, sde=VP)])
    q = gaussian(mean_q, var_q**0.5)
    x = jr.normal(jr.key(5), (32, 2))
    for t in (1e-3, 0.1, 0.5, 1.0):
        got = jax.vmap(guided, (0, None))(x, t)
        want = jax.vmap(exact(q), (0, None))(x, t)
        np.testing.assert_allclose(got, want, atol=1e-4)
    # weight w scales ∇ log r: half the potential with w = 2 is the same score
    half = EXACT_TILT.replace("-0.5", "-0.25").replace("+ 0.5", "+ 0.25")
    doubled = apply_transforms(exact(gaussian(MU, S)), [Guidance(half, 2.0, params, sde=VP)])
    np.testing.assert_allclose(
        jax.vmap(doubled, (0, None))(x, 0.3), jax.vmap(guided, (0, None))(x, 0.3), atol=1e-5
    )
    n = 4000
    _, samples = pf_ode(guided, n=n)
    np.testing.assert_array_less(np.abs(samples.mean(0) - mean_q), 5 * (var_q / n) ** 0.5)
    np.testing.assert_array_less(
        np.abs(samples.var(0, ddof=1) - var_q), 5 * var_q * (2 / (n - 1)) ** 0.5
    )


def test_guidance_with_a_static_potential_is_the_tilted_score_only_as_t_goes_to_0():
    """log r = −|x − c|²/(2ρ²) (no t), weight 2: at t = ε = 1e-3 the guided score is the tilted
    target's within 1 % (measured 0.05 %); at t = 0.5 it is not (measured 540 % off), which is
    what the docstring states. Mutation: `jax.grad` of −log r (a sign) fails the first."""
    mean_q, var_q = tilted(2.0)
    potential = Guidance("-0.5*sum((x-c)**2)/rho**2", 2.0, {"c": C.tolist(), "rho": RHO}, sde=VP)
    guided = apply_transforms(exact(gaussian(MU, S)), [potential])
    q = exact(gaussian(mean_q, var_q**0.5))
    x = jnp.asarray(MU) + S * jr.normal(jr.key(6), (64, 2))

    def relative_error(t):
        got, want = jax.vmap(guided, (0, None))(x, t), jax.vmap(q, (0, None))(x, t)
        return float(jnp.linalg.norm(got - want) / jnp.linalg.norm(want))

    assert relative_error(1e-3) < 0.01
    assert relative_error(0.5) > 0.1


# inpainting ----------------------------------------------------------------------------------

LEFT = diffsde.GaussianMixture([0.5, 0.5], [[-1.0], [1.0]], [0.3])  # coordinate 0, free
RIGHT = gaussian([0.5], 0.4)  # coordinate 1, observed at Y
Y, VP1 = 1.2, diffsde.VP(1)


def product_score(x, t):
    """Exact score of LEFT ⊗ RIGHT: independent coordinates."""
    return jnp.concatenate([LEFT.score(x[:1], t, VP1), RIGHT.score(x[1:], t, VP1)])


def test_inpaint_pf_ode_ends_observed_coordinates_at_their_values_and_keeps_the_rest():
    """Independent coordinates, coordinate 1 observed at y = 1.2. The PF-ODE ends it at
    λ_ε y + (σ_ε/σ_T)(x_T − λ_T y) exactly (to 1e-4; σ_ε = 0.01 here, so within 0.04 of y);
    coordinate 0 follows the untransformed flow (to 1e-3) and its moments are the data's within
    5 SE. Mutation: `jnp.where(~mask, …)` or the kernel score with a `+` fails it."""
    inpaint = Inpaint([False, True], [Y], sde=VP)
    n = 2000
    x_T, x = pf_ode(apply_transforms(product_score, [inpaint]), n=n)
    _, free = pf_ode(product_score, n=n)
    (lam_e, sigma_e), (lam_T, sigma_T) = VP.kernel(PF_ODE.eps), VP.kernel(VP.T)
    predicted = lam_e * Y + sigma_e / sigma_T * (x_T[:, 1] - lam_T * Y)
    np.testing.assert_allclose(x[:, 1], predicted, atol=1e-4)
    assert np.max(np.abs(x[:, 1] - Y)) < 0.04
    np.testing.assert_allclose(x[:, 0], free[:, 0], atol=1e-3)
    var = 1.0 + 0.3**2  # LEFT's variance
    assert abs(x[:, 0].mean()) < 5 * (var / n) ** 0.5
    assert abs(x[:, 0].var(ddof=1) - var) < 5 * var * (2 / (n - 1)) ** 0.5


def test_inpaint_reverse_sde_keeps_the_unobserved_marginal():
    """The same with Euler–Maruyama (500 steps, 4000 points): the observed coordinate ends
    within 0.1 of y (measured max 0.074), mean within 5 SE of y's; the free one's mean and
    variance are LEFT's within 5 SE. Mutation: applying the kernel score on both coordinates
    (mask ignored) pulls coordinate 0 to 0 and fails it."""
    inpaint = Inpaint([False, True], [Y], sde=VP)
    n = 4000
    x_T = jr.normal(jr.key(2), (n, 2))
    sampler = diffsde.EulerMaruyama(steps=500)
    score = apply_transforms(product_score, [inpaint])
    x = np.asarray(diffsde.sample(sampler, VP, score, x_T, key=jr.key(3)).x)
    assert np.max(np.abs(x[:, 1] - Y)) < 0.1
    assert abs(x[:, 1].mean() - Y) < 5 * 0.03 / n**0.5 + 1e-3
    var = 1.0 + 0.3**2
    assert abs(x[:, 0].mean()) < 5 * (var / n) ** 0.5
    assert abs(x[:, 0].var(ddof=1) - var) < 5 * var * (2 / (n - 1)) ** 0.5


# composition and conditions ------------------------------------------------------------------


def test_transforms_apply_in_order_first_wraps_the_model():
    """[temperature, guidance] is s/τ + w∇log r; [guidance, temperature] is (s + w∇log r)/τ;
    inpaint last overrides the observed coordinate whatever came before. Mutation: applying
    the list reversed in TransformedScore fails it."""
    score = exact(gaussian(MU, S))
    temperature = Temperature(tau=0.5)
    guidance = Guidance("-0.5*sum((x-c)**2)", 3.0, {"c": C.tolist()}, sde=VP)
    x, t = jnp.array([0.2, -0.1]), 0.4
    s, grad = score(x, t), -(x - C)
    np.testing.assert_allclose(
        apply_transforms(score, [temperature, guidance])(x, t), s / 0.5 + 3 * grad, rtol=1e-5
    )
    np.testing.assert_allclose(
        apply_transforms(score, [guidance, temperature])(x, t), (s + 3 * grad) / 0.5, rtol=1e-5
    )
    inpaint = Inpaint([True, False], [1.0], sde=VP)
    out = apply_transforms(score, [temperature, inpaint])(x, t)
    np.testing.assert_allclose(out[0], VP.conditional_score(t, x, jnp.array([1.0, 0.0]))[0])
    np.testing.assert_allclose(out[1], s[1] / 0.5, rtol=1e-5)
    assert apply_transforms(score, []) is score


class ShiftByCondition(AbstractScoreTransform):
    """A throwaway transform that uses the condition: s + condition."""

    tag = "shift"

    def __call__(self, score, x, t, condition=None):
        return score(x, t) + condition


def test_the_condition_reaches_the_score_and_every_transform():
    """A conditional score gets `condition=` and so does each transform; with no condition the
    score is called as score(x, t). Mutation: not passing `condition` on in `_bind` fails it."""
    calls = []

    def conditional(x, t, condition=None):
        calls.append(condition)
        return x * 0 + (0.0 if condition is None else 10.0 * condition)

    wrapped = TransformedScore(conditional, (ShiftByCondition(), Temperature(tau=0.5)))
    np.testing.assert_allclose(wrapped(jnp.zeros(2), 0.5, condition=1.0), [22.0, 22.0])
    assert calls == [1.0]
    plain = apply_transforms(lambda x, t: x, [Temperature(tau=2.0)])
    np.testing.assert_allclose(plain(jnp.ones(2), 0.5), [0.5, 0.5])


def test_a_transformed_score_compiles_once_for_new_values():
    """The transforms are pytrees: a second sampling call with other observed values (same
    shapes) reuses the compiled sampler. Mutation: making Inpaint.values a static field fails
    it (two compilations)."""
    sampler = diffsde.EulerMaruyama(steps=50)
    x_T = jnp.zeros((8, 2))
    traces = []

    def counted(x, t):
        traces.append(None)
        return -x

    counts = []
    for value in (0.5, 1.5):
        score = apply_transforms(counted, [Inpaint([True, False], [value], sde=VP)])
        x = diffsde.sample(sampler, VP, score, x_T, key=jr.key(0)).x
        assert float(jnp.max(jnp.abs(x[:, 0] - value))) < 0.5
        counts.append(len(traces))
    assert counts[0] > 0 and counts[1] == counts[0]


# building from spec items, and errors --------------------------------------------------------


def general_sde():
    return diffsde.validate_text(
        "sde: {type: general, drift: '-x', diffusion: '1.0', T: 1.0}\n"
        "prior: {type: gaussian, std: 1.0}\ndata: {type: gmm, dim: 2, components: 2}\n"
    ).sde


@pytest.mark.parametrize(
    "item, sde, field, fix",
    [
        ({"type": "temperature", "tau": 0.0}, VP, "tau", "greater than 0"),
        ({"type": "temperature", "tau": "hot"}, VP, "tau", "valid number"),
        ({"type": "temperature", "t": 1.0}, VP, "t", "its fields: tau"),
        (
            {"type": "warmth"},
            VP,
            "type",
            "choose one of clip_score, guidance, inpaint, temperature",
        ),
        ({"type": "inpaint", "mask": [True], "values": [1.0]}, VP, "mask", "one true/false"),
        ({"type": "inpaint", "mask": [1, 0], "values": [1.0]}, VP, "mask.0", "boolean"),
        ({"type": "inpaint", "mask": [False, False], "values": []}, VP, "mask", "observes no"),
        (
            {"type": "inpaint", "mask": [True, True], "values": [1.0]},
            VP,
            "values",
            "one value per observed coordinate",
        ),
        (
            {"type": "inpaint", "mask": [True, False], "values": [1.0]},
            "general",
            "type",
            "needs an SDE with a Gaussian transition kernel (ou, ve, vp, subvp, affine",
        ),
        ({"type": "guidance", "log_potential": "x"}, VP, "log_potential", "must give one float"),
        ({"type": "guidance", "log_potential": "x.T"}, VP, "log_potential", "attribute"),
        (
            {"type": "guidance", "log_potential": "-sum(x**2)/sigma**2"},
            "general",
            "log_potential",
            "has no Gaussian kernel: write the potential in x and t only",
        ),
        ({"type": "guidance", "log_potential": "sum(x*c)"}, VP, "log_potential", "'c'"),
    ],
)
def test_bad_items_name_the_field_and_the_fix(item, sde, field, fix):
    """Each wrong item raises SpecFieldError at its field, with the fix in the message.
    Mutation: dropping Inpaint's dimension check lets the 1-entry mask through and fails it."""
    sde = general_sde() if sde == "general" else sde
    with pytest.raises(SpecFieldError) as info:
        build_transform(item, sde=sde, configs=CONFIGS)
    assert info.value.field == field
    assert fix in info.value.message


def test_items_build_the_classes_and_label_their_settings():
    sde = VP
    built = [
        build_transform(i, sde=sde, configs=CONFIGS)
        for i in (
            {"type": "temperature", "tau": 0.5},
            {"type": "guidance", "log_potential": "-0.5*sum(x**2)", "weight": 2},
            {"type": "inpaint", "mask": [True, False], "values": [1.0]},
        )
    ]
    assert built[0] == Temperature(tau=0.5)
    assert isinstance(built[1], Guidance) and built[1].weight == 2.0 and built[1].sde is sde
    np.testing.assert_array_equal(built[2].values, [1.0, 0.0])
    label = transforms_label("pf_ode-n=10", [{"type": "temperature", "tau": 0.5}])
    assert label == "pf_ode-n=10+temperature-tau=0.5"
    long = transforms_label("x", [{"type": "guidance", "log_potential": "x" * 400}])
    assert len(long) == 200 and long.startswith("x+guidance-log_potential=xxx")


class ClipNorm(AbstractScoreTransform):
    """A throwaway plugin transform: the score with its norm clipped to at most max_norm."""

    tag = "clip_norm"
    max_norm: float = 10.0

    def __call__(self, score, x, t, condition=None):
        del condition
        s = score(x, t)
        return s * jnp.minimum(1.0, self.max_norm / (jnp.linalg.norm(s) + 1e-12))


class ClipPlugin:
    @diffsde.hookimpl
    def register_score_transforms(self, register):
        register(ClipNorm)


def test_a_plugin_transform_is_a_spec_item_and_a_command_line_one():
    """A transform registered by a plugin is listed, validated in `transforms:` (its fields
    from its constructor, errors at its line) and built for the spec's SDE. Mutation:
    `apply_transforms` returning the score unwrapped fails it."""
    diffsde.register_plugin(ClipPlugin(), "clip")
    try:
        registry = diffsde.get_registry()
        assert "clip_norm" in registry.names("transform")
        spec = "sde: {type: vp}\ndata: {type: gmm, dim: 2, components: 2}\ntransforms:\n"
        setup = diffsde.validate_text(spec + "  - {type: clip_norm, max_norm: 2.0}\n")
        (clip,) = setup.transforms
        assert clip == ClipNorm(max_norm=2.0)
        score = apply_transforms(lambda x, t: -x / 0.01, setup.transforms)
        assert float(jnp.linalg.norm(score(jnp.ones(2), 0.5))) == pytest.approx(2.0)
        with pytest.raises(diffsde.SpecError) as err:
            diffsde.validate_text(spec + "  - {type: clip_norm, max_nrm: 2.0}\n", "s.yaml")
        assert str(err.value).startswith("s.yaml:4:")
        configs = {n: registry.get("transform", n).config for n in registry.names("transform")}
        item = {"type": "clip_norm", "max_norm": 3}
        assert build_transform(item, sde=VP, configs=configs) == ClipNorm(max_norm=3.0)
    finally:
        diffsde.unregister_plugin("clip")
    assert "clip_norm" not in diffsde.get_registry().names("transform")
