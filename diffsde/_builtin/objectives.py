"""Spec sections of the built-in score-matching objectives: dsm."""

from typing import ClassVar, Literal

import pydantic

from .._config import ObjectiveConfig
from .._objective import DenoisingScoreMatching
from .._sde._base import AbstractSDE


class DSMConfig(ObjectiveConfig):
    """Denoising score matching: regress on ∇ log p(x_t | x₀) of the SDE's Gaussian kernel."""

    type: Literal["dsm"] = "dsm"
    needs_gaussian_kernel: ClassVar[bool] = True
    weighting: Literal["sigma2", "g2", "uniform"] = "sigma2"
    time_sampling: Literal["uniform", "importance"] = "uniform"
    eps: pydantic.PositiveFloat = 1e-3

    def build(self, *, sde: AbstractSDE) -> DenoisingScoreMatching:
        return DenoisingScoreMatching(
            sde, weighting=self.weighting, time_sampling=self.time_sampling, eps=self.eps
        )


OBJECTIVE_CONFIGS = (DSMConfig,)
