"""Spec sections of the built-in score models: mlp."""

from typing import Literal

import pydantic
from jaxtyping import PRNGKeyArray

from .._config import ModelConfig
from .._model import MLPScore
from .._sde._base import AbstractSDE


class MLPConfig(ModelConfig):
    """An MLP on x and a sinusoidal time embedding; output read as score, noise or shortcut."""

    type: Literal["mlp"] = "mlp"
    width: pydantic.PositiveInt = 128
    depth: pydantic.PositiveInt = 3
    n_frequencies: pydantic.PositiveInt = 16
    parameterisation: Literal["score", "noise", "shortcut"] = "noise"

    def build(self, *, sde: AbstractSDE, key: PRNGKeyArray) -> MLPScore:
        return MLPScore(
            sde,
            width=self.width,
            depth=self.depth,
            n_frequencies=self.n_frequencies,
            parameterisation=self.parameterisation,
            key=key,
        )


MODEL_CONFIGS = (MLPConfig,)
