"""Spec sections of the built-in score models: mlp."""

from typing import Literal

import pydantic
from jaxtyping import PRNGKeyArray

from .._config import ModelConfig
from .._model import MLPScore
from .._prior import AbstractPrior
from .._sde._base import AbstractSDE

MAX_DEPTH = 64
"""The most hidden layers of an MLP (each is a Python object built and traced one by one)."""
MAX_FREQUENCIES = 1024
"""The most time-embedding frequencies."""


class MLPConfig(ModelConfig):
    """An MLP on x and a sinusoidal time embedding; output read as score, noise or shortcut."""

    type: Literal["mlp"] = "mlp"
    width: pydantic.PositiveInt = 128
    depth: int = pydantic.Field(3, gt=0, le=MAX_DEPTH, description="hidden layers")
    n_frequencies: int = pydantic.Field(16, gt=0, le=MAX_FREQUENCIES)
    parameterisation: Literal["auto", "score", "noise", "shortcut", "prior_residual"] = (
        pydantic.Field(
            "auto",
            description="auto: noise (s = −ε/σ_t) for SDEs with a Gaussian kernel, else "
            "prior_residual (s = ∇log p_T + net)",
        )
    )

    def resolved_parameterisation(self, sde: AbstractSDE) -> str:
        if self.parameterisation != "auto":
            return self.parameterisation
        return "noise" if sde.has_gaussian_kernel else "prior_residual"

    def build(
        self, *, sde: AbstractSDE, key: PRNGKeyArray, prior: AbstractPrior | None = None
    ) -> MLPScore:
        """The model; ``prior`` (the spec's, else the SDE's own if it has one) is only used by
        the ``prior_residual`` parameterisation."""
        if prior is None and self.resolved_parameterisation(sde) == "prior_residual":
            try:
                prior = sde.prior()
            except ValueError:
                prior = None  # MLPScore explains what is missing
        return MLPScore(
            sde,
            width=self.width,
            depth=self.depth,
            n_frequencies=self.n_frequencies,
            parameterisation=self.resolved_parameterisation(sde),
            key=key,
            prior=prior,
        )


MODEL_CONFIGS = (MLPConfig,)
