"""Spec sections of the built-in datasets."""

from typing import Literal

import jax.numpy as jnp
import jax.random as jr
import pydantic

from .._config import DatasetConfig
from .._data import TOYS, GaussianMixture, TwoDToy


class GMMConfig(DatasetConfig):
    """Gaussian mixture in R^dim with exact scores at every t (given or random means)."""

    type: Literal["gmm"] = "gmm"
    dim: pydantic.PositiveInt = 2
    components: pydantic.PositiveInt = 5
    means: list[list[float]] | None = None
    std: pydantic.PositiveFloat | list[pydantic.PositiveFloat] = 0.2
    weights: list[pydantic.PositiveFloat] | None = None
    radius: pydantic.PositiveFloat = 2.0
    seed: int = 0

    @pydantic.model_validator(mode="after")
    def _consistent(self):
        if self.means is not None:
            if len(self.means) != self.components:
                raise ValueError(
                    f"means has {len(self.means)} rows but components is {self.components}"
                )
            bad = [i for i, m in enumerate(self.means) if len(m) != self.dim]
            if bad:
                raise ValueError(
                    f"means[{bad[0]}] has {len(self.means[bad[0]])} entries, dim is {self.dim}"
                )
        for name in ("weights", "std"):
            value = getattr(self, name)
            if isinstance(value, list) and len(value) != self.components:
                raise ValueError(
                    f"{name} has {len(value)} entries, components is {self.components}"
                )
        return self

    def build(self) -> GaussianMixture:
        if self.means is None:
            # random means on the sphere of the given radius, reproducible from seed
            z = jr.normal(jr.key(self.seed), (self.components, self.dim))
            means = self.radius * z / jnp.linalg.norm(z, axis=-1, keepdims=True)
        else:
            means = jnp.asarray(self.means)
        weights = 1.0 if self.weights is None else jnp.asarray(self.weights)
        return GaussianMixture(weights, means, jnp.asarray(self.std))


class ToyConfig(DatasetConfig):
    """A 2-D toy: eight_gaussians, moons, swiss_roll, checkerboard or rings."""

    type: Literal["toy"] = "toy"
    name: Literal[tuple(TOYS)]  # type: ignore[valid-type]
    noise: pydantic.NonNegativeFloat = 0.05

    @property
    def dim(self) -> int:
        return 2

    def build(self) -> TwoDToy:
        return TwoDToy(self.name, self.noise)


DATASET_CONFIGS = (GMMConfig, ToyConfig)
