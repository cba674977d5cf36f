"""A state-dependent forward SDE learned end to end: the shipped double-well Langevin spec,
trained with sliced score matching on forward paths simulated with diffrax, samples the two
swiss roll through its reverse SDE far better than a score that ignores the data."""

import pathlib

import jax.numpy as jnp
import jax.random as jr

from diffsde._metrics import sliced_w2
from diffsde._run import run
from diffsde._sampler import sample
from diffsde._spec._validate import load_spec
from diffsde.runs import open_run

SPEC = pathlib.Path(__file__).resolve().parent.parent / "specs" / "langevin_double_well.yaml"


def test_double_well_langevin_learns_the_swiss_roll(tmp_path):
    # A quarter of the shipped spec's budget (800 of 3000 steps, half the width).
    setup = load_spec(
        SPEC, ["training.steps=800", "eval.n_samples=1000", "model.width=64", "sampler.steps=300"]
    )
    assert setup.spec.objective.type == "ssm" and not setup.sde.has_gaussian_kernel
    record = open_run(run(setup, tmp_path, progress=False))
    assert record.status == "completed", record.message
    samples, reference = record.samples["samples"], record.samples["reference"]
    assert jnp.all(jnp.isfinite(samples))

    # The score that ignores the data: the prior's own, ∇log p_T = −∇U. The reverse SDE then is
    # Langevin dynamics for e^{−U} again, and its samples stay double-well samples.
    sampler = setup.spec.sampler.build(sde=setup.sde)
    x_T = setup.prior.sample(key=jr.key(1), n=1000)
    ignorant = sample(sampler, setup.sde, lambda x, t: setup.prior.score(x), x_T, key=jr.key(2))
    z = jr.normal(jr.key(3), (256, 2))
    directions = z / jnp.linalg.norm(z, axis=-1, keepdims=True)
    learned = float(sliced_w2(jnp.asarray(samples), jnp.asarray(reference), directions))
    baseline = float(sliced_w2(ignorant.x, jnp.asarray(reference), directions))
    # Measured with this budget: learned 0.158, baseline 0.374 (2.4×); bound: at least 2×.
    assert learned < baseline / 2, (learned, baseline)
