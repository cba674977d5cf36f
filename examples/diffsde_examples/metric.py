"""A metric (entry point example_metric): the distance between the mean of the samples and the
mean of the held-out data, |m̂_samples − m̂_reference|. For two independent samples of n and m
points of one law with covariance Σ its expectation is about √(tr Σ (1/n + 1/m)), not 0: it is
ranked "min", and a gap below that noise floor means nothing."""

from typing import ClassVar

import jax.numpy as jnp

import diffsde


class MeanGap(diffsde.AbstractMetric):
    """``mean_gap``: |mean(samples) − mean(held-out data)|."""

    tag: ClassVar[str] = "mean_gap"
    directions: ClassVar[dict] = {"mean_gap": "min"}  # how `diffsde runs`/Compare rank it

    def __call__(self, ctx):
        gap = jnp.linalg.norm(ctx.samples.mean(0) - ctx.reference.mean(0))
        return {"mean_gap": float(gap)}


@diffsde.hookimpl
def register_metrics(register):
    register(MeanGap)
