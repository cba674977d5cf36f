"""The spec's pydantic model, rebuilt from the plugin registry."""

from typing import Annotated, Literal, Optional, Union

import pydantic
from pydantic_core import PydanticCustomError

from .._config import (
    STRICT,
    Expr,
    ParamValue,
    Seed,
    SpecFieldError,
    compile_field,
    format_bytes,
)
from .._lineage import RunRef
from .._plugins import Registry
from .._prior import GaussianPrior, GibbsPrior

# spec section -> registry kind, for the sections whose variants come from plugins
SECTIONS: dict[str, str] = {
    "sde": "sde",
    "data": "dataset",
    "model": "model",
    "objective": "objective",
    "sampler": "sampler",
    "method": "method",
}
REQUIRED_SECTIONS = ("sde", "data")
_Strict = STRICT
MAX_STEPS = 10_000_000
"""The most training steps of one run: 10⁷ steps write 400 MB of metric rows (5 float64 each)
and take hours even at a millisecond per step."""
METRIC_ROW_BYTES = 5 * 8
"""Bytes of the metric row stored per training step (5 float64)."""


def _bounded_steps(steps: int) -> int:
    if steps > MAX_STEPS:
        raise ValueError(
            f"{steps:,} steps would store ~{format_bytes(steps * METRIC_ROW_BYTES)} of metric rows "
            f"(5 float64 per step) and take ~{steps * 1e-3 / 86400:,.0f} days even at 1 ms per "
            f"step; the limit is {MAX_STEPS:,}: lower training.steps"
        )
    return steps


def _check_name(value: str) -> str:
    from .._runs import check_name  # the run store's rule for run names, said once

    check_name(value)
    return value


Name = Annotated[str, pydantic.AfterValidator(_check_name)]


class GaussianPriorConfig(pydantic.BaseModel):
    """p_noise = N(mean, std² I); mean and std are scalars or one value per dimension."""

    model_config = _Strict
    type: Literal["gaussian"] = "gaussian"
    mean: float | list[float] = 0.0
    std: pydantic.PositiveFloat | list[pydantic.PositiveFloat] = 1.0

    def build(self, *, dim: int) -> GaussianPrior:
        for name in ("mean", "std"):
            value = getattr(self, name)
            if isinstance(value, list) and len(value) != dim:
                raise SpecFieldError(
                    name, f"has {len(value)} entries, the data has dimension {dim}"
                )
        return GaussianPrior(dim, self.mean, self.std)


class GibbsPriorConfig(pydantic.BaseModel):
    """p_noise ∝ exp(−U(x)) for a potential expression U."""

    model_config = _Strict
    type: Literal["gibbs"] = "gibbs"
    potential: Expr
    params: dict[str, ParamValue] = {}

    def build(self, *, dim: int) -> GibbsPrior:
        U = compile_field(self, "potential", ("x",), dim=dim, output="scalar", params=self.params)
        return GibbsPrior(dim, U)


PriorConfig = Annotated[
    GaussianPriorConfig | GibbsPriorConfig, pydantic.Field(discriminator="type")
]


class TrainingConfig(pydantic.BaseModel):
    """Optimisation budget and settings (optax AdamW, warm-up, clipping, EMA)."""

    model_config = _Strict
    steps: Annotated[pydantic.PositiveInt, pydantic.AfterValidator(_bounded_steps)] = 2000
    batch_size: pydantic.PositiveInt = 256
    learning_rate: pydantic.PositiveFloat = 1e-3
    warmup_steps: pydantic.NonNegativeInt = 100
    weight_decay: pydantic.NonNegativeFloat = 0.0
    grad_clip: pydantic.PositiveFloat | None = 1.0
    ema_decay: Annotated[float, pydantic.Field(ge=0.0, lt=1.0)] = 0.999
    steps_per_dispatch: pydantic.PositiveInt = 50
    checkpoint_every: pydantic.PositiveInt = 500


def _none_registered(kind: str):
    def check(value):
        if value is not None:
            raise PydanticCustomError(
                "none_registered",
                "no {kind} is registered, so this section cannot be used yet: remove it or "
                "install a plugin that registers one (see `diffsde plugins`)",
                {"kind": kind},
            )
        return value

    return check


def _variants(registry: Registry, kind: str):
    configs = registry.configs(kind)
    if not configs:
        return Annotated[None, pydantic.BeforeValidator(_none_registered(kind))]
    if len(configs) == 1:
        return configs[0]
    return Annotated[Union[tuple(configs)], pydantic.Field(discriminator="type")]  # noqa: UP007


class SpecBase(pydantic.BaseModel):
    """Everything about one experiment: forward SDE, prior, data, model, objective, training,
    sampler and evaluation."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    name: Name = "unnamed"
    seed: Seed = 0
    prior: PriorConfig | None = None
    training: TrainingConfig = TrainingConfig()
    # lineage (helper "lineage"): start the model from another run's parameters; see _lineage
    init: RunRef | None = None


def _build_spec_model(registry: Registry) -> type[SpecBase]:
    metric = _variants(registry, "metric")
    metrics = (
        list[metric]
        if registry.configs("metric")
        else Annotated[list[object], pydantic.AfterValidator(_empty_metrics)]
    )
    evaluation = pydantic.create_model(
        "EvalConfig",
        __config__=_Strict,
        __doc__="What to measure after training.",
        n_samples=(pydantic.PositiveInt, 2000),
        save_times=(list[pydantic.NonNegativeFloat], []),
        metrics=(metrics, []),
        # conditions (seam 1): sample every point of this class and compare with p(x | class);
        # null: labelled data's samples get labels drawn from the data (see diffsde._run)
        condition=(Optional[pydantic.NonNegativeInt], None),  # noqa: UP045
    )
    fields = {}
    for section, kind in SECTIONS.items():
        default = ... if section in REQUIRED_SECTIONS else None
        variants = _variants(registry, kind)
        fields[section] = (variants if default is ... else Optional[variants], default)  # noqa: UP045
    fields["eval"] = (evaluation, evaluation())
    if "score_matching" in registry.components.get("method", {}):
        method = registry.get("method", "score_matching").config
        fields["method"] = (fields["method"][0], method())  # the default method, shown
    transform = _variants(registry, "transform")
    fields["transforms"] = (
        list[transform]
        if registry.configs("transform")
        else Annotated[list[object], pydantic.AfterValidator(_empty_transforms)],
        [],
    )
    return pydantic.create_model("Spec", __base__=SpecBase, **fields)


def _empty_transforms(value):
    if value:
        raise PydanticCustomError(
            "none_registered",
            "no score transform is registered, so transforms must stay empty: install a plugin "
            "that registers one (see `diffsde plugins`)",
        )
    return value


def _empty_metrics(value):
    if value:
        raise PydanticCustomError(
            "none_registered",
            "no metric is registered, so eval.metrics must stay empty: install a plugin that "
            "registers one (see `diffsde plugins`)",
        )
    return value


def spec_model(registry: Registry) -> type[SpecBase]:
    """The pydantic model of a spec, with unions over what ``registry`` holds."""
    cached = _MODELS.get(id(registry))
    if cached is None or cached[0] is not registry:
        cached = _MODELS[id(registry)] = (registry, _build_spec_model(registry))
    return cached[1]


_MODELS: dict[int, tuple[Registry, type[SpecBase]]] = {}
