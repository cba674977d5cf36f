"""Base classes of spec sections that plugins extend, and the expression field type.

A plugin registers a pydantic model subclassing one of the ``…Config`` bases below, with a
``type: Literal["tag"]`` field; the spec's discriminated unions are built from what is registered.
"""

import abc
import functools
import os
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

import jax
import jax.numpy as jnp
import pydantic
from pydantic_core import PydanticCustomError

from ._errors import SpecFieldError, SpecFieldErrors
from ._expression import Expression, ExpressionError, check_syntax, compile_expression

STRICT = pydantic.ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
"""The model config of every spec section: unknown keys are errors, no value is coerced (a YAML
boolean such as ``yes`` is not the number 1, the string "3" is not a number; an integer is
accepted where a float is expected), and infinite or NaN numbers are refused."""

ParamValue = float | list[float] | list[list[float]]
Seed = Annotated[int, pydantic.Field(ge=0, lt=2**32)]
"""A random seed, 0 ≤ seed < 2³² (what jax.random.key and numpy's PCG64 take as they are)."""


def host_memory() -> int:
    """Bytes of memory this process can expect to get: MemAvailable of /proc/meminfo, else the
    physical memory (``os.sysconf``)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 1 << 34  # 16 GiB, when the system says nothing


@functools.cache
def device_memory() -> tuple[int, str]:
    """(bytes, description) of the memory JAX computes in: the accelerator's, if JAX has one,
    else the host's."""
    device = jax.devices()[0]
    if device.platform != "cpu":
        try:
            stats = device.memory_stats() or {}
        except Exception:  # a backend without memory statistics
            stats = {}
        if stats.get("bytes_limit"):
            return int(stats["bytes_limit"]), f"the {device.device_kind} has"
    return host_memory(), "this machine has"


def format_bytes(n: int | float) -> str:
    """``n`` bytes in binary units with one decimal (``16.0 TiB``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError


def compile_fields(
    config: pydantic.BaseModel,
    fields: Mapping[str, tuple[tuple[str, ...], str]],
    *,
    dim: int,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Expression]:
    """:func:`compile_field` for several fields ``{name: (variables, output)}``, reporting every
    failing field at once (:class:`SpecFieldErrors`)."""
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
    config: pydantic.BaseModel,
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
    source = getattr(config, field)
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


class ComponentConfig(pydantic.BaseModel, abc.ABC):
    """Base of every registrable spec section. Subclasses add ``type: Literal["tag"]``."""

    model_config = STRICT
    kind: ClassVar[str]


class SDEConfig(ComponentConfig):
    """A forward SDE section (``sde:``). ``build`` returns an :class:`AbstractSDE`."""

    kind: ClassVar[str] = "sde"

    @abc.abstractmethod
    def build(self, *, dim: int):
        """The SDE on R^dim; raise SpecFieldError for a value that is wrong in context."""


class DatasetConfig(ComponentConfig):
    """A data section (``data:``). ``build`` returns an :class:`AbstractDataset`."""

    kind: ClassVar[str] = "dataset"

    @abc.abstractmethod
    def build(self):
        """The dataset."""


class ObjectiveConfig(ComponentConfig):
    """A score-matching objective section (``objective:``).

    ``needs_gaussian_kernel``: the objective uses the SDE's closed-form transition kernel
    (denoising score matching does); objectives that only need samples of p_t set it False.
    """

    kind: ClassVar[str] = "objective"
    needs_gaussian_kernel: ClassVar[bool]


class SamplerConfig(ComponentConfig):
    """A sampler section (``sampler:``)."""

    kind: ClassVar[str] = "sampler"


class ModelConfig(ComponentConfig):
    """A score-model section (``model:``)."""

    kind: ClassVar[str] = "model"


class MetricConfig(ComponentConfig):
    """An evaluation metric (an item of ``eval.metrics``). ``directions`` is its metric's: for
    each name it reports, which value is best ("min", "max" or "zero"); a name absent from it
    is not ranked."""

    kind: ClassVar[str] = "metric"
    directions: ClassVar[Mapping[str, str]] = {}


BASES: dict[str, type[ComponentConfig]] = {
    base.kind: base
    for base in (
        SDEConfig,
        ObjectiveConfig,
        SamplerConfig,
        ModelConfig,
        DatasetConfig,
        MetricConfig,
    )
}
