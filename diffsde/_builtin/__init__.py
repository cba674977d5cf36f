"""The built-in components, registered through the same hooks as any third-party plugin."""

from ..hookspecs import hookimpl
from .datasets import DATASET_CONFIGS
from .metrics import METRIC_CONFIGS
from .models import MODEL_CONFIGS
from .objectives import OBJECTIVE_CONFIGS
from .samplers import SAMPLER_CONFIGS
from .sdes import SDE_CONFIGS


@hookimpl
def register_sdes(register):
    for config in SDE_CONFIGS:
        register(config)


@hookimpl
def register_datasets(register):
    for config in DATASET_CONFIGS:
        register(config)


@hookimpl
def register_models(register):
    for config in MODEL_CONFIGS:
        register(config)


@hookimpl
def register_objectives(register):
    for config in OBJECTIVE_CONFIGS:
        register(config)


@hookimpl
def register_samplers(register):
    for config in SAMPLER_CONFIGS:
        register(config)


@hookimpl
def register_metrics(register):
    for config in METRIC_CONFIGS:
        register(config)
