"""The built-in components, registered through the same hooks as any third-party plugin."""

from ..hookspecs import hookimpl
from .datasets import DATASET_CONFIGS
from .methods import METHODS
from .metrics import METRIC_PARTS, METRICS
from .models import MODELS, PARAMETERISATIONS
from .objectives import OBJECTIVE_PARTS, OBJECTIVES
from .samplers import SAMPLER_PARTS, SAMPLERS
from .sdes import SDES
from .transforms import TRANSFORMS


@hookimpl
def register_sdes(register):
    for sde in SDES:
        register(sde)


@hookimpl
def register_datasets(register):
    for config in DATASET_CONFIGS:
        register(config)


@hookimpl
def register_models(register):
    for model in MODELS:
        register(model)


@hookimpl
def register_objectives(register):
    for objective in OBJECTIVES:
        register(objective)


@hookimpl
def register_samplers(register):
    for sampler in SAMPLERS:
        register(sampler)


@hookimpl
def register_parts(register):
    for part in (*OBJECTIVE_PARTS, *SAMPLER_PARTS, *METRIC_PARTS, *PARAMETERISATIONS):
        register(part)


@hookimpl
def register_metrics(register):
    for metric in METRICS:
        register(metric)


@hookimpl
def register_training_methods(register):
    for method in METHODS:
        register(method)


@hookimpl
def register_score_transforms(register):
    for transform in TRANSFORMS:
        register(transform)
