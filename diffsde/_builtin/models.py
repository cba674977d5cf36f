"""The built-in score model (mlp) and its parameterisations (auto, score, noise, shortcut,
prior_residual)."""

from .._model import MODELS, PARAMETERISATIONS

__all__ = ["MODELS", "PARAMETERISATIONS"]
