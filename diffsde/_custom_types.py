"""Type aliases used across diffsde (one place, as in diffrax/_custom_types.py)."""

from collections.abc import Callable

from jaxtyping import Array, ArrayLike, Float, PyTree

Scalar = Float[Array, ""]
ScalarLike = float | Float[ArrayLike, ""]
Vector = Float[Array, " dim"]
# s(x, t) ≈ ∇ log p_t(x), for one point x. A conditional score also takes a keyword
# ``condition`` (s(x, t, condition=c) ≈ ∇ log p_t(x | c)); see diffsde._model.bind_condition.
ScoreFn = Callable[..., Vector]
# The condition of ONE point (a class index, later a vector), or None: unconditional.
Condition = PyTree | None
# The conditions of a batch: a pytree whose leaves have one row per point, or None.
Conditions = PyTree | None
# a vector field (t, x) -> dx/dt, diffrax's argument order without args.
VectorField = Callable[[ScalarLike, Vector], Vector]
