"""Time grids (diffsde/_grids.py) and the schedule they are spaced in (diffsde/_schedule.py),
against their definitions: each grid's defining quantity is uniform along it, endpoints exact,
times strictly decreasing, the inverse maps invert, and the spec key ``grid:`` reaches every
fixed-step sampler, with located errors where a grid needs a kernel the SDE lacks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffsde
from diffsde._grids import (
    ExpressionGrid,
    KarrasGrid,
    LogSNRGrid,
    QuadraticGrid,
    UniformGrid,
)
from diffsde._sampler import interpolate_grid
from diffsde._schedule import (
    data_prediction,
    log_snr,
    noise_prediction,
    sigma_ratio,
    time_at_log_snr,
    time_at_sigma_ratio,
)

EPS = 1e-3
SDES = {
    "vp": diffsde.VP(dim=2),
    "ve": diffsde.VE(dim=2),
    "subvp": diffsde.SubVP(dim=2),
    "ou": diffsde.OU(dim=2),
    "affine": diffsde.Affine(dim=2, f="-0.5 * (0.1 + 19.9 * t)", g="sqrt(0.1 + 19.9 * t)"),
}


def _along(fn, sde, ts):
    return np.asarray(jax.vmap(lambda t: fn(sde, t))(ts), np.float64)


@pytest.mark.parametrize("name", sorted(SDES))
def test_inverse_maps_invert_the_schedule(name):
    """t(ℓ(t)) = t and ρ(t(ρ)) = ρ on a grid of times, to float32 resolution.

    Mutation: the bisection keeping the wrong half (``jnp.where(above, lo, mid)``) makes this
    fail."""
    sde = SDES[name]
    ts = jnp.linspace(EPS, sde.T, 50)
    back = time_at_log_snr(sde, jax.vmap(lambda t: log_snr(sde, t))(ts))
    np.testing.assert_allclose(back, ts, rtol=1e-4, atol=1e-6)
    rho = jax.vmap(lambda t: sigma_ratio(sde, t))(ts)
    np.testing.assert_allclose(
        _along(sigma_ratio, sde, time_at_sigma_ratio(sde, rho)), rho, rtol=1e-4
    )


@pytest.mark.parametrize("name", sorted(SDES))
def test_each_grid_is_uniform_in_its_quantity(name):
    """uniform: t is uniform; quadratic: √((t − ε)/(T − ε)) is uniform; log_snr: ℓ_t is uniform;
    karras: ρ_t^{1/7} is uniform; every grid has exact endpoints and strictly decreases.
    Tolerance: 1e-4 of the quantity's range (the bisection's float32 resolution in t).

    Mutation: the Karras grid interpolating ρ instead of ρ^{1/ρ} (power = 1) makes this fail."""
    sde, steps = SDES[name], 12
    cases = {
        UniformGrid(): lambda ts: ts,
        QuadraticGrid(): lambda ts: np.sqrt((ts - EPS) / (sde.T - EPS)),
        LogSNRGrid(): lambda ts: _along(log_snr, sde, ts),
        KarrasGrid(): lambda ts: _along(sigma_ratio, sde, ts) ** (1 / 7),
        KarrasGrid(rho=3.0): lambda ts: _along(sigma_ratio, sde, ts) ** (1 / 3),
    }
    for grid, quantity in cases.items():
        ts = grid.times(sde, EPS, steps)
        assert ts.shape == (steps + 1,)
        assert float(ts[0]) == np.float32(sde.T) and float(ts[-1]) == np.float32(EPS), grid
        assert np.all(np.diff(np.asarray(ts)) < 0), grid
        values = quantity(np.asarray(ts, np.float64))
        spacing = np.diff(values)
        span = abs(values[-1] - values[0])
        np.testing.assert_allclose(spacing, spacing.mean(), atol=1e-4 * span, err_msg=grid.tag)


def test_expression_grids_reproduce_the_named_ones():
    """``w = u`` in t, log_snr and sigma_ratio space is the uniform, log-SNR and uniform-in-ρ
    grid; the Karras formula written as an expression in sigma_ratio space is the Karras grid.

    Mutation: ExpressionGrid interpolating −log ρ (the log-SNR) in sigma_ratio space makes this
    fail."""
    sde, steps = SDES["vp"], 10

    def close(a, b):
        np.testing.assert_allclose(a.times(sde, EPS, steps), b.times(sde, EPS, steps), rtol=2e-4)

    close(ExpressionGrid("u"), UniformGrid())
    close(ExpressionGrid("u", "log_snr"), LogSNRGrid())
    top, bottom = float(sigma_ratio(sde, sde.T)), float(sigma_ratio(sde, EPS))
    p, q = top ** (1 / 7), bottom ** (1 / 7)
    karras = f"(({p!r} + u * ({q!r} - {p!r}))**7 - {top!r}) / ({bottom!r} - {top!r})"
    close(ExpressionGrid(karras, "sigma_ratio"), KarrasGrid())
    rho = _along(sigma_ratio, sde, ExpressionGrid("u", "sigma_ratio").times(sde, EPS, steps))
    np.testing.assert_allclose(np.diff(rho), np.diff(rho).mean(), atol=1e-4 * top)


@pytest.mark.parametrize(
    ("w", "says"),
    [
        ("1 - u", "must go from 0"),
        ("u * (u - 0.5) * 2", "not strictly increasing"),
        ("0.5 * u", "must go from 0"),
        ("u + 0.3 * sin(12.566370614359172 * u)", "not strictly increasing"),
        ("log(u)", "finite"),
        ("x", "unknown name 'x'"),
    ],
)
def test_bad_expression_grids_are_refused_at_construction(w, says):
    """w must be finite, start at 0, end at 1 and strictly increase on [0, 1].

    Mutation: dropping the monotonicity check lets the sine wobble through and fails this."""
    with pytest.raises(diffsde.SpecFieldError, match=says) as caught:
        ExpressionGrid(w)
    assert caught.value.field == "w"


def test_kernel_grids_need_a_gaussian_kernel():
    """log_snr, karras and expression grids outside t refuse an SDE without a Gaussian kernel at
    ``grid``, naming the fix; uniform and quadratic grids take any SDE.

    Mutation: LogSNRGrid.needs_kernel = False makes this fail."""
    langevin = diffsde.Langevin(dim=2)
    for grid in (LogSNRGrid(), KarrasGrid(), ExpressionGrid("u", "log_snr")):
        with pytest.raises(diffsde.SpecFieldError, match="grid: uniform") as caught:
            diffsde.EulerMaruyama(steps=4, grid=grid).check_sde(langevin)
        assert caught.value.field == "grid"
    for grid in (UniformGrid(), QuadraticGrid(), ExpressionGrid("u**2")):
        diffsde.EulerMaruyama(steps=4, grid=grid).check_sde(langevin)


def test_interpolation_on_a_non_uniform_grid_is_exact_for_linear_paths():
    """States linear in t are interpolated exactly between the nodes of a Karras grid.

    Mutation: the weight measured from the other end (1 − weight) makes this fail."""
    sde = SDES["vp"]
    ts = KarrasGrid().times(sde, EPS, 7)
    a, b = jnp.array([1.0, -2.0]), jnp.array([0.5, 3.0])
    states = (a + ts[:, None] * b)[:, None, :]
    save_ts = jnp.array([0.9, 0.5, 0.31, 0.05, 0.002])
    got = interpolate_grid(states, ts, save_ts)[:, 0]
    np.testing.assert_allclose(got, a + save_ts[:, None] * b, rtol=1e-5, atol=1e-6)


def test_predictions_recover_the_data_and_the_noise():
    """For y_t = c_t + α_t x₀ + σ_t ε and the conditional score −σ_t⁻¹ ε (one-point data), Tweedie's
    prediction is x₀ and the noise prediction is ε, on an SDE with a mean offset c_t (the cdpm
    plugin's COU with μ ≠ 0).

    Mutation: data_prediction without the offset c_t makes this fail."""
    sde = diffsde.get_registry().get("sde", "cou").cls(dim=2, mu=1.5)
    x0, noise, t = jnp.array([0.3, -0.7]), jnp.array([1.1, 0.4]), 0.6
    xt = sde.marginal_mean(t, x0) + sde.marginal_std(t) * noise
    score = sde.conditional_score(t, xt, x0)
    np.testing.assert_allclose(data_prediction(sde, xt, t, score), x0, rtol=1e-5)
    np.testing.assert_allclose(noise_prediction(sde, t, score), noise, rtol=1e-5)


def test_grid_spec_key_reaches_every_fixed_step_sampler():
    """``grid:`` builds the named grid on euler_maruyama, pc and exponential, and on pf_ode both
    in its controller and as the flat key (which moves into a fixed controller).

    Mutation: dropping "grid" from ProbabilityFlow's flat keys makes this fail."""
    registry = diffsde.get_registry()
    for tag in ("euler_maruyama", "pc", "exponential"):
        config = registry.get("sampler", tag).config
        built = config.model_validate({"type": tag, "steps": 8, "grid": "karras"}).build()
        assert isinstance(built.grid, KarrasGrid) and built.steps == 8
    pf = registry.get("sampler", "pf_ode").config
    flat = pf.model_validate(
        {"type": "pf_ode", "solver": "heun", "steps": 6, "grid": {"type": "karras", "rho": 5}}
    ).build()
    assert isinstance(flat.controller, diffsde.FixedSteps)
    assert flat.controller.grid == KarrasGrid(rho=5.0) and flat.controller.steps == 6
    nested = pf.model_validate(
        {"type": "pf_ode", "solver": "rk4", "controller": {"type": "fixed", "grid": "log_snr"}}
    ).build()
    assert isinstance(nested.controller.grid, LogSNRGrid)


def test_a_grid_that_repeats_a_float32_time_is_refused():
    """``w = u**8`` over 50 steps bunches its first times below float32's resolution at T:
    building the sampler from a spec refuses it at ``grid`` (every fixed-step sampler and
    pf_ode's fixed controller), and sampling it from Python stops with the grid named instead
    of returning NaN from a zero step.

    Mutation: dropping ``check_times`` from AbstractFixedStepSampler.check_context makes the
    first assertion fail; dropping ``strictly_decreasing`` from ``times`` the last."""
    sde = SDES["vp"]
    registry = diffsde.get_registry()
    grid = {"type": "expression", "w": "u**8"}
    for tag, extra in (
        ("dpm_solver_pp", {}),
        ("euler_maruyama", {}),
        ("pf_ode", {"solver": "heun"}),
    ):
        config = registry.get("sampler", tag).config
        section = config.model_validate({"type": tag, "steps": 50, "grid": grid, **extra})
        with pytest.raises(diffsde.SpecFieldError, match="repeated float32 time") as caught:
            section.build(sde=sde)
        assert caught.value.field == "grid"
    sampler = diffsde.DPMSolverPP(steps=50, grid=ExpressionGrid("u**8"))
    with pytest.raises(Exception, match="repeats a time"):
        diffsde.sample(
            sampler, sde, lambda x, t: -x, jnp.zeros((4, 2)), key=jax.random.key(0)
        ).x.block_until_ready()
