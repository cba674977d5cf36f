"""Training: a training method (:class:`AbstractTrainingMethod`) stepped by the
:class:`Trainer` inside ``lax.scan``, compiled once, with per-step randomness.

Score matching (:class:`ScoreMatching`) is the built-in method; a plugin's method subclasses
:class:`AbstractTrainingMethod` (its own train state, step, metrics and the model it samples
with) and gets the run's checkpoints, bit-for-bit resume, NaN stop, SIGTERM handling, progress
and metric rows from the same loop. :func:`ema_update` and :func:`trainable` are the pieces the
built-in method is made of, for methods that want them.
"""

from ._methods import (
    RESERVED_METRICS as RESERVED_METRICS,
    AbstractTrainingMethod as AbstractTrainingMethod,
    ScoreMatching as ScoreMatching,
    ScoreMatchingState as ScoreMatchingState,
    ema_update as ema_update,
    trainable as trainable,
)
from ._train import Trainer as Trainer, TrainState as TrainState
