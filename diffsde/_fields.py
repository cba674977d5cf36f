"""Spec expressions as fields of components: the ``Expr`` annotation (a string checked for
syntax and whitelist when the spec is parsed) and :func:`compile_field`, which compiles one and
checks it by tracing, raising :class:`SpecFieldError` at that field."""

from collections.abc import Mapping
from typing import Annotated, Any

import jax
import jax.numpy as jnp
import pydantic
from pydantic_core import PydanticCustomError

from ._errors import SpecFieldError, SpecFieldErrors
from ._expression import Expression, ExpressionError, check_syntax, compile_expression

ParamValue = float | list[float] | list[list[float]]
Params = dict[str, ParamValue]
"""Named constants of an expression (scalars, vectors, matrices)."""


def compile_fields(
    config: Any,
    fields: Mapping[str, tuple[tuple[str, ...], str]],
    *,
    dim: int,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Expression]:
    """:func:`compile_field` for several fields ``{name: (variables, output)}`` of ``config``
    (anything with those attributes, or a mapping), reporting every failing field at once
    (:class:`SpecFieldErrors`)."""
    compiled, errors = {}, []
    for name, (variables, output) in fields.items():
        try:
            compiled[name] = compile_field(
                config, name, variables, dim=dim, output=output, params=params
            )
        except SpecFieldError as err:
            errors.append(err)
    if errors:
        raise SpecFieldErrors(errors)
    return compiled


def _syntax_only(value: str) -> str:
    try:
        check_syntax(value)
    except ExpressionError as err:
        raise PydanticCustomError(
            "expression", "{message}", {"message": err.message, "column": err.column}
        ) from None
    return value


Expr = Annotated[
    str,
    pydantic.AfterValidator(_syntax_only),
    pydantic.Field(json_schema_extra={"format": "diffsde-expression"}),
]
"""A spec expression: a string checked for syntax and whitelist at parse time."""


def compile_field(
    config: Any,
    field: str,
    variables: tuple[str, ...],
    *,
    dim: int,
    output: str,
    params: Mapping[str, Any] | None = None,
) -> Expression:
    """Compile the expression in ``config.<field>`` and check it by tracing.

    ``output`` is ``"scalar"`` (shape ()) or ``"vector"`` (shape (dim,), a scalar broadcasts).
    The expression is traced with ``jax.eval_shape`` on a dummy x of shape (dim,) and scalar t,
    so unknown names, shape and dtype mismatches become :class:`SpecFieldError` at validation.
    """
    source = config[field] if isinstance(config, Mapping) else getattr(config, field)
    try:
        expression = compile_expression(source, variables, params)
    except ExpressionError as err:
        raise SpecFieldError(field, err.message, err.column) from None
    dummies = {
        "x": jax.ShapeDtypeStruct((dim,), jnp.float32),
        "t": jax.ShapeDtypeStruct((), jnp.float32),
    }
    try:
        out = jax.eval_shape(lambda kw: expression(**kw), {v: dummies[v] for v in variables})
    except Exception as err:  # jax's shape/type errors: reported, never a traceback
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SpecFieldError(
            field, f"cannot be evaluated with x of shape ({dim},): {first}"
        ) from None
    allowed = [()] if output == "scalar" else [(), (dim,)]
    if out.shape not in allowed:
        want = "a scalar" if output == "scalar" else f"a vector of shape ({dim},) or a scalar"
        raise SpecFieldError(
            field, f"must give {want} for data of dimension {dim}, but gives shape {out.shape}"
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise SpecFieldError(
            field,
            f"gives {out.dtype} values, expected floats (wrap comparisons in where(cond, a, b))",
        )
    return expression
