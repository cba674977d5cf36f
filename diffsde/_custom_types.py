"""Type aliases used across diffsde (one place, as in diffrax/_custom_types.py)."""

from collections.abc import Callable

from jaxtyping import Array, ArrayLike, Float

Scalar = Float[Array, ""]
ScalarLike = float | Float[ArrayLike, ""]
Vector = Float[Array, " dim"]
# s(x, t) ≈ ∇ log p_t(x), for one point x.
ScoreFn = Callable[[Vector, ScalarLike], Vector]
# a vector field (t, x) -> dx/dt, diffrax's argument order without args.
VectorField = Callable[[ScalarLike, Vector], Vector]
