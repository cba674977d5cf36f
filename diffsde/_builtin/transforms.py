"""The built-in score transforms: temperature, guidance, inpaint (written as a plugin's would be).

Each is exact for the cases its docstring states; tests/test_transforms.py checks them against
closed forms on Gaussian data.
"""

import ast
from typing import Annotated, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pydantic
from jaxtyping import Array, Bool, Float, PyTree

from .._custom_types import Scalar, ScalarLike, ScoreFn, Vector
from .._errors import SpecFieldError
from .._expression import Expression, ExpressionError, compile_expression
from .._fields import Expr, ParamValue
from .._sde._base import AbstractGaussianSDE, AbstractSDE
from .._transforms import AbstractScoreTransform

GAUSSIAN_SDES = "ou, ve, vp, subvp, affine"


class Temperature(AbstractScoreTransform):
    """s/τ: the score of p_t^{1/τ} at every t (τ < 1 sharpens, τ > 1 flattens).

    This is not sampling p_0^{1/τ}: the family p_t^{1/τ} does not solve the forward process's
    Fokker–Planck equation. For Gaussian data N(μ, s² I) under a linear-drift SDE (b = f x) the
    probability-flow ODE ends with variance V_ε = V_T exp(−∫_ε^T (2f + g²/(τ v_t)) dt),
    v_t = λ_t² s² + σ_t² (on VP: V_T (v_ε/v_T)^{1/τ} e^{(1 − 1/τ)(B(T) − B(ε))}).
    """

    tag: ClassVar[str] = "temperature"
    tau: Annotated[float, pydantic.Field(gt=0, description="temperature τ > 0")] = 1.0

    def __check_init__(self):
        if not self.tau > 0:
            raise SpecFieldError("tau", f"must be positive, got {self.tau}: e.g. tau: 0.5")

    def __call__(
        self, score: ScoreFn, x: Vector, t: ScalarLike, condition: PyTree | None = None
    ) -> Vector:
        del condition
        return score(x, t) / self.tau


KERNEL_VARIABLES = ("lam", "sigma")


class Guidance(AbstractScoreTransform):
    """s + w ∇ₓ log r(x, t): guidance by a log-potential, the score of p_t · r_t^w.

    log r is a spec expression in ``x`` and ``t`` (and, on an SDE with a Gaussian kernel,
    ``lam`` = λ_t and ``sigma`` = σ_t) and ``params``; its additive constants do not matter.

    Exact (the score of the diffused tilted target q ∝ p_0 r_0^w at every t) when r_t^w is
    q_t / p_t. A potential without t gives the tilted score only as t → 0, and over the whole
    path it also contracts the flow (the probability-flow ODE then over-concentrates). For
    Gaussian data N(μ, s² I) and log r = −|x − c|²/(2ρ²), the tilted target is N(μ', s'² I)
    with 1/s'² = 1/s² + w/ρ², μ' = s'² (μ/s² + w c/ρ²).
    """

    tag: ClassVar[str] = "guidance"
    log_potential: Expression
    weight: float
    sde: AbstractSDE

    def __init__(
        self,
        log_potential: Annotated[
            Expr, pydantic.Field(description="log r(x, t): a scalar expression")
        ],
        weight: Annotated[float, pydantic.Field(description="guidance weight w")] = 1.0,
        params: dict[str, ParamValue] | None = None,
        *,
        sde: AbstractSDE,
    ):
        gaussian = isinstance(sde, AbstractGaussianSDE)
        variables = ("x", "t", *(KERNEL_VARIABLES if gaussian else ()))
        try:
            expression = compile_expression(log_potential, variables, params)
        except ExpressionError as err:
            message = err.message
            if not gaussian and _names(log_potential) & set(KERNEL_VARIABLES):
                message = (
                    f"uses lam/sigma (the Gaussian kernel's λ_t, σ_t), but {type(sde).__name__} "
                    f"has no Gaussian kernel: write the potential in x and t only, or use an SDE "
                    f"with one ({GAUSSIAN_SDES})"
                )
            raise SpecFieldError("log_potential", message, err.column) from None
        dummies = {v: jax.ShapeDtypeStruct((), jnp.float32) for v in variables}
        dummies["x"] = jax.ShapeDtypeStruct((sde.dim,), jnp.float32)
        try:
            out = jax.eval_shape(lambda kw: expression(**kw), dummies)
        except Exception as err:  # jax's shape/type errors, reported at the field
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise SpecFieldError(
                "log_potential", f"cannot be evaluated with x of shape ({sde.dim},): {first}"
            ) from None
        if out.shape != () or not jnp.issubdtype(out.dtype, jnp.floating):
            raise SpecFieldError(
                "log_potential",
                f"must give one float (log r is a scalar), but gives {out.dtype} of shape "
                f"{out.shape}: reduce it, e.g. -0.5*sum((x-c)**2)",
            )
        self.log_potential, self.weight, self.sde = expression, weight, sde

    def log_r(self, x: Vector, t: ScalarLike) -> Scalar:
        """log r(x, t)."""
        variables = {"x": x, "t": t}
        if isinstance(self.sde, AbstractGaussianSDE):
            variables["lam"], variables["sigma"] = self.sde.kernel(t)
        return self.log_potential(**variables)

    def __call__(
        self, score: ScoreFn, x: Vector, t: ScalarLike, condition: PyTree | None = None
    ) -> Vector:
        del condition
        return score(x, t) + self.weight * jax.grad(self.log_r)(x, t)


def _names(source: str) -> set[str]:
    try:
        return {
            n.id
            for n in ast.walk(ast.parse(source.strip(), mode="eval"))
            if isinstance(n, ast.Name)
        }
    except (SyntaxError, RecursionError, MemoryError):
        return set()


class Inpaint(AbstractScoreTransform):
    """Observed coordinates held at given values by the Gaussian kernel's conditional score.

    On the coordinates where ``mask`` is true the score is −(x_O − m_t(y))/σ_t², the score of
    X_t | X_0,O = y with y = ``values``; elsewhere it is the model's.

    Exact when the observed and unobserved coordinates of the data are independent: the target
    δ_y(x_O) p(x_U) diffuses to N(m_t(y), σ_t²) ⊗ p_t(x_U), whose score this is, so the
    unobserved marginal is unchanged and the probability-flow ODE ends the observed coordinates
    at m_ε(y) + (σ_ε/σ_T)(x_T,O − m_T(y)). With dependent coordinates the unobserved score is
    the model's at the current x_O (the "replacement" approximation of Song et al. 2021).
    """

    tag: ClassVar[str] = "inpaint"
    mask: Bool[Array, " dim"]
    values: Float[Array, " dim"]
    sde: AbstractGaussianSDE

    def __init__(
        self,
        mask: Annotated[
            list[bool], pydantic.Field(description="one true/false per coordinate, true = observed")
        ],
        values: Annotated[
            list[float], pydantic.Field(description="the observed values, in coordinate order")
        ],
        *,
        sde: AbstractGaussianSDE,
    ):
        if not isinstance(sde, AbstractGaussianSDE):  # when built outside the spec
            raise SpecFieldError(
                "type",
                f"inpaint holds the observed coordinates with the SDE's Gaussian kernel "
                f"(λ_t, σ_t), but {type(sde).__name__} has none: use an SDE with one "
                f"({GAUSSIAN_SDES}) or drop this transform",
            )
        if len(mask) != sde.dim:
            raise SpecFieldError(
                "mask",
                f"has {len(mask)} entries but the data has dimension {sde.dim}: give one "
                "true/false per coordinate (true = observed)",
            )
        observed = np.flatnonzero(np.asarray(mask, bool))
        if observed.size == 0:
            raise SpecFieldError(
                "mask", "observes no coordinate: set at least one entry true, or drop inpaint"
            )
        if len(values) != observed.size:
            raise SpecFieldError(
                "values",
                f"has {len(values)} entries but mask observes {observed.size} coordinates: give "
                "one value per observed coordinate, in coordinate order",
            )
        full = np.zeros(sde.dim, np.float32)
        full[observed] = values
        self.mask = jnp.asarray(mask, bool)
        self.values = jnp.asarray(full)
        self.sde = sde

    def __call__(
        self, score: ScoreFn, x: Vector, t: ScalarLike, condition: PyTree | None = None
    ) -> Vector:
        del condition
        kernel = self.sde.conditional_score(t, x, self.values)
        return jnp.where(self.mask, kernel, score(x, t))


TRANSFORMS: tuple[type[AbstractScoreTransform], ...] = (Temperature, Guidance, Inpaint)
"""The built-in score transforms, in the order ``diffsde plugins`` lists them."""
