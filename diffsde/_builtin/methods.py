"""The built-in training methods (score_matching), registered through the same hook as a
plugin's."""

from .._methods import ScoreMatching

METHODS = (ScoreMatching,)

__all__ = ["METHODS"]
