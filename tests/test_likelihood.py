"""Log-likelihood through the probability-flow ODE (docs/math.md §5) against closed forms:
Gaussian data and a Gaussian mixture with their exact scores under VP, OU and VE; Hutchinson
against the exact divergence; the bits/dim change of variables; `diffsde eval RUN --likelihood`
on a real run."""

import math

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import diffsde
from diffsde._cli import main
from diffsde._data import GaussianMixture
from diffsde._likelihood import (
    ProbabilityFlowLikelihood,
    bits_per_dim,
    dequantise,
    log_likelihood,
    quantisation_step,
    resolve_divergence,
)
from diffsde.runs import open_run
from tests.tiny import tiny_spec

# Every comparison is against the exact log p_ε(x) = data.marginal_log_prob(x, ε, sde), with the
# flow started from the exact p_T (data.marginal_log_prob(·, T, sde)) instead of the SDE's prior:
# the prior mismatch (λ_T μ ≠ 0 for VP/OU, the mean and σ_min² for VE) alone moves log p by
# 0.02–0.05 here, and is not what these tests are about. With the exact score and the exact p_T
# the only errors left are the solver's (rtol = atol = 1e-5: measured ≤ 5e-5 on 3-D Gaussians,
# ≤ 1.4e-4 on the 2-D mixture) and float32 round-off, so 1e-3 leaves a margin of ~10×.
TOL = 1e-3
GAUSSIAN = GaussianMixture(1.0, [[1.0, -0.5, 0.3]], 0.5)
MIXTURE = GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.0, -0.5]], 0.4)
SDES = {
    "vp": (diffsde.VP(3), 1e-3),
    "ou": (diffsde.OU(3), 1e-3),
    "ve": (diffsde.VE(3), 1e-5),
}


def _against_closed_form(data, sde, eps, *, divergence="exact", probes=2, n=16):
    x = data.sample(key=jr.key(0), n=n)
    estimator = ProbabilityFlowLikelihood(
        rtol=1e-5, atol=1e-5, eps=eps, divergence=divergence, probes=probes
    )
    result = log_likelihood(
        estimator,
        sde,
        lambda x, t: data.score(x, t, sde),
        x,
        key=jr.key(1),
        log_prior=lambda y: data.marginal_log_prob(y, sde.T, sde),
    )
    exact = jax.vmap(lambda y: data.marginal_log_prob(y, eps, sde))(x)
    return result, exact


@pytest.mark.parametrize("name", list(SDES))
def test_gaussian_data_gives_the_analytic_log_density(name):
    sde, eps = SDES[name]
    result, exact = _against_closed_form(GAUSSIAN, sde, eps)
    np.testing.assert_allclose(result.log_prob, exact, rtol=0, atol=TOL)
    assert not np.any(result.stderr) and 0 < int(result.nfe) < 4096


def test_gaussian_mixture_gives_the_analytic_log_density():
    result, exact = _against_closed_form(MIXTURE, diffsde.VP(2), 1e-3)
    np.testing.assert_allclose(result.log_prob, exact, rtol=0, atol=TOL)


def test_hutchinson_agrees_with_the_exact_divergence_within_its_standard_error():
    # the mixture's score has a non-diagonal Jacobian (for isotropic Gaussian data it is a
    # multiple of I and a Rademacher probe gives the trace exactly, with no variance)
    n = 16
    hutchinson, exact = _against_closed_form(
        MIXTURE, diffsde.VP(2), 1e-3, divergence="hutchinson", probes=100, n=n
    )
    error = hutchinson.log_prob - exact
    assert np.all(hutchinson.stderr > 0)
    # the mean over points, within 3 standard errors of the mean
    assert abs(float(jnp.mean(error))) < 3 * float(jnp.sqrt(jnp.sum(hutchinson.stderr**2)) / n)
    # and the standard errors are calibrated: z = error/se has mean square ≈ 1 (measured 0.74)
    assert 0.3 < float(jnp.mean((error / hutchinson.stderr) ** 2)) < 3.0


def test_auto_divergence_is_exact_up_to_64_dimensions():
    assert resolve_divergence("auto", 64) == "exact"
    assert resolve_divergence("auto", 65) == "hutchinson"
    assert resolve_divergence("hutchinson", 2) == "hutchinson"
    with pytest.raises(ValueError, match="probes: must be at least 2"):
        ProbabilityFlowLikelihood(rtol=1e-5, atol=1e-5, eps=1e-3, probes=1)
    estimator = ProbabilityFlowLikelihood(rtol=1e-5, atol=1e-5, eps=2.0)
    with pytest.raises(ValueError, match="eps=2.0 must lie below the horizon T=1.0"):
        log_likelihood(estimator, diffsde.VP(2), lambda x, t: -x, jnp.zeros((1, 2)), key=jr.key(0))


def test_bits_per_dim_of_a_piecewise_constant_density_is_the_entropy():
    # lattice data x = b + Δk with P(k); the continuous density P(k)/Δ^d on each cell gives
    # exactly −log₂ P(k)/d bits per dimension at any dequantised point of the cell
    step, dim = 0.125, 4
    probabilities = jnp.array([0.1, 0.2, 0.3, 0.4])
    log_prob = jnp.log(probabilities) - dim * math.log(step)  # log(P/Δ^d)
    bpd = bits_per_dim(log_prob, dim, step)
    np.testing.assert_allclose(bpd, -float(jnp.mean(jnp.log2(probabilities))) / dim, rtol=1e-6)
    lattice = -1.0 + step * jnp.arange(17.0)
    assert quantisation_step(lattice[jnp.array([0, 3, 4, 16])]) == step
    assert quantisation_step(jnp.array([0.0, 0.3, 1.0])) is None
    y = dequantise(jnp.broadcast_to(lattice, (8, 17)), step, key=jr.key(0))
    assert np.all(np.abs(np.asarray(y - lattice)) <= step / 2)


SPEC = tiny_spec(
    "tiny-likelihood",
    n_samples=50,
    metrics="[{type: log_likelihood, n: 8, rtol: 1.0e-3, atol: 1.0e-3}]",
)


def test_eval_likelihood_prints_and_stores_the_result(tmp_path, capsys):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC)
    assert main(["run", str(spec), "--runs-dir", str(tmp_path / "runs"), "-q"]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    in_run = open_run(run).eval["nll"]  # the metric, computed by the run itself
    capsys.readouterr()
    # the spec's own log_likelihood item gives the settings: the same points, the same value
    assert main(["eval", str(run), "--likelihood"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("likelihood: nfe ") and "nll" in out
    record = open_run(run)
    assert record.eval["nll"] == pytest.approx(in_run, rel=1e-6)
    assert record.samples["log_likelihood"].shape == (8,) and record.nfe["likelihood"] > 0
    assert main(["eval", str(run), "--likelihood", "--probes", "1"]) == 2
    assert "--probes: Input should be greater than or equal to 2" in capsys.readouterr().err
    assert main(["eval", str(run), "--n", "4"]) == 2


def test_log_likelihood_metric_config():
    config = diffsde.get_registry().get("metric", "log_likelihood").config
    metric = config.model_validate({"n": 4, "divergence": "hutchinson", "probes": 4}).build()
    assert metric.n == 4 and metric.estimator.probes == 4
    assert metric.estimator.rtol == 1e-5 and metric.estimator.eps == 1e-3
