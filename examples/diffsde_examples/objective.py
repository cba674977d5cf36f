"""An objective that needs a Gaussian kernel: noise prediction (entry point example_objective).

ℓ(θ) = E_t E_{x₀, z} |σ_t s_θ(x_t, t) + z|², x_t = m_t(x₀) + σ_t z, t ~ U[ε, T]: denoising score
matching with the weighting σ_t², written as the prediction of the noise z by −σ_t s_θ. Its
minimiser is the score of p_t (the conditional score −z/σ_t averages to it). At the exact
score s* its value is E_t [d − σ_t² tr C_t⁻¹] for Gaussian data N(μ, Σ) with
C_t = λ_t² Σ + σ_t² I (the DSM identity: E|σ s* + z|² = σ² (E|z/σ|² − E|s*|²)), which is
d E_t λ_t² for N(0, I) data under a VP SDE.

The annotation ``sde: diffsde.AbstractGaussianSDE`` is the requirement: a spec with an SDE
without a kernel is refused at ``objective.type``, once, before anything runs.
"""

from typing import Annotated, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import pydantic

import diffsde


class NoisePrediction(diffsde.AbstractObjective):
    """E_t E|σ_t s_θ(x_t, t) + z|²: denoising score matching with λ = σ_t², written as noise
    prediction (needs a Gaussian kernel)."""

    tag: ClassVar[str] = "noise_prediction"
    sde: diffsde.AbstractGaussianSDE  # context, and a requirement
    eps: Annotated[float, pydantic.Field(gt=0)] = eqx.field(static=True, default=1e-3)

    def check_context(self, **context):
        del context
        if not self.eps < self.sde.T:
            raise diffsde.SpecFieldError("eps", f"must be below T = {self.sde.T}: lower it")

    def loss(self, model, x0, *, key, condition=None):
        tkey, zkey = jr.split(key)
        n = x0.shape[0]
        t = jr.uniform(tkey, (n,), minval=self.eps, maxval=self.sde.T)
        xt, z = jax.vmap(lambda t, x, k: self.sde.sample_marginal(t, x, key=k))(
            t, x0, jr.split(zkey, n)
        )
        sigma = jax.vmap(self.sde.marginal_std)(t)[:, None]
        if condition is None:
            s = jax.vmap(model)(xt, t)
        else:  # the condition of each point, for a conditional model (ignored otherwise)
            s = jax.vmap(lambda x, t, c: diffsde.bind_condition(model, c)(x, t))(xt, t, condition)
        return jnp.mean(jnp.sum((sigma * s + z) ** 2, axis=-1))


@diffsde.hookimpl
def register_objectives(register):
    register(NoisePrediction)
