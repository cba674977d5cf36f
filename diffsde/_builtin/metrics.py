"""Spec items of the built-in metrics (``eval.metrics``)."""

from typing import Literal

import pydantic

from .._config import MetricConfig
from .._metrics import MMD, ExactScoreError, Moments, SlicedWasserstein


class SlicedW2Config(MetricConfig):
    """Squared sliced 2-Wasserstein distance to held-out data, over random directions."""

    type: Literal["sliced_w2"] = "sliced_w2"
    projections: pydantic.PositiveInt = 256

    def build(self) -> SlicedWasserstein:
        return SlicedWasserstein(self.projections)


class MMDConfig(MetricConfig):
    """Unbiased MMD² to held-out data, RBF kernel (median-heuristic bandwidth by default)."""

    type: Literal["mmd"] = "mmd"
    bandwidth: pydantic.PositiveFloat | None = None
    max_points: int = pydantic.Field(2000, ge=2)

    def build(self) -> MMD:
        return MMD(self.bandwidth, self.max_points)


class ESMConfig(MetricConfig):
    """Exact score error E_t E_x |s_θ − ∇log p_t|² (Gaussian mixtures only; else skipped)."""

    type: Literal["esm"] = "esm"
    n_times: pydantic.PositiveInt = 16
    n_points: pydantic.PositiveInt = 512
    eps: pydantic.PositiveFloat = 1e-3

    def build(self) -> ExactScoreError:
        return ExactScoreError(self.n_times, self.n_points, self.eps)


class MomentsConfig(MetricConfig):
    """Errors of the sample mean and covariance (exact moments for Gaussian mixtures)."""

    type: Literal["moments"] = "moments"

    def build(self) -> Moments:
        return Moments()


METRIC_CONFIGS = (SlicedW2Config, MMDConfig, ESMConfig, MomentsConfig)
