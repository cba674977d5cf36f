"""Spec items of the built-in metrics (``eval.metrics``)."""

from collections.abc import Mapping
from typing import ClassVar, Literal

import pydantic

from .._config import MetricConfig
from .._likelihood import LikelihoodMetric, ProbabilityFlowLikelihood
from .._metrics import MMD, Direction, ExactScoreError, Moments, SlicedWasserstein

# Each config's ``directions`` (which value of each reported name is best) is its metric's, so a
# listing can rank stored results without building the metric.


class SlicedW2Config(MetricConfig):
    """Squared sliced 2-Wasserstein distance to held-out data, over random directions."""

    type: Literal["sliced_w2"] = "sliced_w2"
    directions: ClassVar[Mapping[str, Direction]] = SlicedWasserstein.directions
    projections: pydantic.PositiveInt = 256

    def build(self) -> SlicedWasserstein:
        return SlicedWasserstein(self.projections)


class MMDConfig(MetricConfig):
    """Unbiased MMD² to held-out data, RBF kernel (median-heuristic bandwidth by default)."""

    type: Literal["mmd"] = "mmd"
    directions: ClassVar[Mapping[str, Direction]] = MMD.directions
    bandwidth: pydantic.PositiveFloat | None = None
    max_points: int = pydantic.Field(2000, ge=2)

    def build(self) -> MMD:
        return MMD(self.bandwidth, self.max_points)


class ESMConfig(MetricConfig):
    """Exact score error E_t E_x |s_θ − ∇log p_t|² (Gaussian mixtures only; else skipped)."""

    type: Literal["esm"] = "esm"
    directions: ClassVar[Mapping[str, Direction]] = ExactScoreError.directions
    n_times: pydantic.PositiveInt = 16
    n_points: pydantic.PositiveInt = 512
    eps: pydantic.PositiveFloat = 1e-3

    def build(self) -> ExactScoreError:
        return ExactScoreError(self.n_times, self.n_points, self.eps)


class MomentsConfig(MetricConfig):
    """Errors of the sample mean and covariance (exact moments for Gaussian mixtures)."""

    type: Literal["moments"] = "moments"
    directions: ClassVar[Mapping[str, Direction]] = Moments.directions

    def build(self) -> Moments:
        return Moments()


class LogLikelihoodConfig(MetricConfig):
    """Negative log-likelihood of held-out data via the probability-flow ODE (nats/dim; bits/dim
    for quantised images)."""

    type: Literal["log_likelihood"] = "log_likelihood"
    directions: ClassVar[Mapping[str, Direction]] = LikelihoodMetric.directions
    n: pydantic.PositiveInt = 256
    divergence: Literal["auto", "exact", "hutchinson"] = "auto"
    probes: int = pydantic.Field(16, ge=2)
    solver: Literal["tsit5", "dopri5"] = "tsit5"
    rtol: pydantic.PositiveFloat = 1e-5
    atol: pydantic.PositiveFloat = 1e-5
    eps: pydantic.PositiveFloat = 1e-3
    max_steps: pydantic.PositiveInt = 4096
    quantisation: pydantic.PositiveFloat | None = None
    batch_size: pydantic.PositiveInt = 256

    def build(self) -> LikelihoodMetric:
        estimator = ProbabilityFlowLikelihood(
            rtol=self.rtol,
            atol=self.atol,
            eps=self.eps,
            divergence=self.divergence,
            probes=self.probes,
            solver=self.solver,
            max_steps=self.max_steps,
        )
        return LikelihoodMetric(estimator, self.n, self.quantisation, self.batch_size)


METRIC_CONFIGS = (SlicedW2Config, MMDConfig, ESMConfig, MomentsConfig, LogLikelihoodConfig)
