"""Spec sections of the built-in score-matching objectives: dsm, esm, ism, ssm."""

from typing import ClassVar, Literal

import pydantic

from .._config import ObjectiveConfig
from .._data import AbstractDataset, GaussianMixture
from .._objective import (
    DenoisingScoreMatching,
    ExplicitScoreMatching,
    ImplicitScoreMatching,
    SlicedScoreMatching,
)
from .._sde._base import AbstractSDE


class _WeightedConfig(ObjectiveConfig):
    """The time weighting and time sampling every objective shares (docs/math.md §3), and how
    samples of p_t are made for an SDE without a Gaussian kernel."""

    weighting: Literal["sigma2", "g2", "uniform"] = "sigma2"
    time_sampling: Literal["uniform", "importance"] = "uniform"
    eps: pydantic.PositiveFloat = 1e-3
    simulation_steps: int = pydantic.Field(
        100, ge=2, description="Euler–Maruyama steps of the forward simulation (no kernel)"
    )
    times_per_path: pydantic.PositiveInt = pydantic.Field(
        4, description="(t, x_t) points taken from each simulated path (no kernel)"
    )

    def _weighted(self) -> dict:
        return self.model_dump(exclude={"type"})


class DSMConfig(_WeightedConfig):
    """Denoising score matching: regress on ∇ log p(x_t | x₀) of the SDE's Gaussian kernel."""

    type: Literal["dsm"] = "dsm"
    needs_gaussian_kernel: ClassVar[bool] = True

    def build(self, *, sde: AbstractSDE, data: AbstractDataset) -> DenoisingScoreMatching:
        del data
        return DenoisingScoreMatching(sde, **self._weighted())


class ESMConfig(_WeightedConfig):
    """Explicit score matching: regress on the exact score of p_t (Gaussian-mixture data)."""

    type: Literal["esm"] = "esm"
    needs_gaussian_kernel: ClassVar[bool] = True

    def build(self, *, sde: AbstractSDE, data: AbstractDataset) -> ExplicitScoreMatching:
        if not isinstance(data, GaussianMixture):
            raise ValueError(
                f"esm regresses on the exact score of p_t, which only a Gaussian mixture knows; "
                f"the data here is {type(data).__name__}: use data type 'gmm', or objective "
                "'dsm', 'ism' or 'ssm'"
            )
        return ExplicitScoreMatching(sde, lambda x, t: data.score(x, t, sde), **self._weighted())


class ISMConfig(_WeightedConfig):
    """Implicit score matching: |s|² + 2∇·s with the exact divergence; any SDE, small d."""

    type: Literal["ism"] = "ism"
    needs_gaussian_kernel: ClassVar[bool] = False
    weighting: Literal["sigma2", "g2", "uniform"] = "g2"

    def build(self, *, sde: AbstractSDE, data: AbstractDataset) -> ImplicitScoreMatching:
        del data
        return ImplicitScoreMatching(sde, **self._weighted())


class SSMConfig(_WeightedConfig):
    """Sliced score matching: random projections of the divergence; any SDE, any d."""

    type: Literal["ssm"] = "ssm"
    needs_gaussian_kernel: ClassVar[bool] = False
    weighting: Literal["sigma2", "g2", "uniform"] = "g2"
    n_projections: pydantic.PositiveInt = 1
    projection: Literal["rademacher", "gaussian"] = "rademacher"
    variance_reduction: bool = True

    def build(self, *, sde: AbstractSDE, data: AbstractDataset) -> SlicedScoreMatching:
        del data
        return SlicedScoreMatching(sde, **self._weighted())


OBJECTIVE_CONFIGS = (DSMConfig, ESMConfig, ISMConfig, SSMConfig)
