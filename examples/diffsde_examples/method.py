"""A training method (entry point example_method): fit a Gaussian by maximum likelihood.

Instead of score matching, the model's (μ, L) — a :class:`diffsde_examples.model.GaussianScore`,
the spec's ``model: {type: gaussian_score}`` — are fitted to the data by SGD on the negative
log-likelihood of N(μ, L Lᵀ), ½ (x − μ)ᵀ (L Lᵀ)⁻¹ (x − μ) + log|det L| per point; the model
then samples with the exact score of the fitted Gaussian. The trainer gives it checkpoints,
bit-for-bit resume, the NaN stop, SIGTERM, progress and the dashboard's curves unchanged.

The train state is any pytree of arrays (here the parameters and the optimiser state); ``step``
is traced once inside ``lax.scan`` and returns the new state and the scalars ``metric_names``
lists (``"loss"`` first and required).
"""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg
import optax

import diffsde
from diffsde.training import AbstractTrainingMethod

from .model import GaussianScore


class MomentFit(AbstractTrainingMethod):
    """Fit the Gaussian score model's mean and covariance by maximum likelihood (SGD on the
    NLL); sample with its exact score."""

    tag: ClassVar[str] = "moment_fit"
    metric_names: ClassVar[tuple[str, ...]] = ("loss", "variance")
    model: GaussianScore  # context: the spec's model, which must be a gaussian_score
    optimizer: optax.GradientTransformation  # context: from `training:`

    def init(self, *, key):
        del key  # starts from the model's own initialisation
        params = (self.model.mu, self.model.cholesky)
        return params, self.optimizer.init(params)

    def step(self, state, batch, *, step, key):
        del step, key  # plain SGD on the batch
        x, _ = diffsde.split_batch(batch)  # the points (and conditions, unused)
        params, opt_state = state

        def nll(p):
            mu, chol = p
            lower = jnp.tril(chol)
            z = jax.scipy.linalg.solve_triangular(lower, (x - mu).T, lower=True)
            log_det = jnp.sum(jnp.log(jnp.abs(jnp.diag(lower))))
            return jnp.mean(0.5 * jnp.sum(z**2, axis=0)) + log_det

        loss, grads = jax.value_and_grad(nll)(params)
        updates, opt_state = self.optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        variance = jnp.trace(self._with(params).covariance()) / x.shape[-1]
        return (params, opt_state), {"loss": loss, "variance": variance}

    def _with(self, params):
        return eqx.tree_at(lambda m: (m.mu, m.cholesky), self.model, params)

    def sampling_model(self, state):
        params, _ = state
        return self._with(params)


@diffsde.hookimpl
def register_training_methods(register):
    register(MomentFit)
