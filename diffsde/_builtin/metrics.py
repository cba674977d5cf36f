"""The built-in metrics (``eval.metrics``): sliced_w2, mmd, esm, moments, log_likelihood, and the
likelihood estimator part."""

from .._likelihood import LikelihoodMetric, ProbabilityFlowLikelihood
from .._metrics import MMD, ExactScoreError, Moments, SlicedWasserstein

METRICS = (SlicedWasserstein, MMD, ExactScoreError, Moments, LikelihoodMetric)
METRIC_PARTS = (ProbabilityFlowLikelihood,)
