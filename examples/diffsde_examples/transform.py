"""A score transform (entry point example_transform): the score with its norm clipped.

s ↦ s · min(1, c/|s|): the direction is kept, the norm is at most ``max_norm``. It changes the
score only where |s| > c, i.e. near t = 0 far from the data (|s| ≈ |x − m_t|/σ_t² for a Gaussian
kernel); a guard against a model's large values there, not an exact transform of p_t.
"""

from typing import Annotated, ClassVar

import jax.numpy as jnp
import pydantic

import diffsde


class ClipNorm(diffsde.AbstractScoreTransform):
    """The score with its norm clipped to at most `max_norm`."""

    tag: ClassVar[str] = "clip_score"
    max_norm: Annotated[float, pydantic.Field(gt=0)] = 10.0

    def __call__(self, score, x, t, condition=None):
        del condition  # the score it wraps is already bound to it
        s = score(x, t)
        return s * jnp.minimum(1.0, self.max_norm / (jnp.linalg.norm(s) + 1e-12))


@diffsde.hookimpl
def register_score_transforms(register):
    register(ClipNorm)
