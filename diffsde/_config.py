"""Base classes of spec sections that plugins extend, and the expression field type.

A plugin registers a pydantic model subclassing one of the ``…Config`` bases below, with a
``type: Literal["tag"]`` field; the spec's discriminated unions are built from what is registered.
"""

import abc
import functools
import os
from collections.abc import Mapping
from typing import Annotated, ClassVar

import jax
import pydantic

from ._errors import SpecFieldError, SpecFieldErrors  # noqa: F401  (re-exported)
from ._fields import (  # noqa: F401  (re-exported: the spec-layer names of 0.1)
    Expr,
    ParamValue,
    compile_field,
    compile_fields,
)

STRICT = pydantic.ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
"""The model config of every spec section: unknown keys are errors, no value is coerced (a YAML
boolean such as ``yes`` is not the number 1, the string "3" is not a number; an integer is
accepted where a float is expected), and infinite or NaN numbers are refused."""

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
