"""The built-in score-matching objectives (dsm, esm, ism, ssm) and their parts (weightings, time
distributions, sources of x_t)."""

from .._objective import OBJECTIVE_PARTS, OBJECTIVES

__all__ = ["OBJECTIVES", "OBJECTIVE_PARTS"]
