"""The built-in components, registered through the same hooks as any third-party plugin."""

from ..hookspecs import hookimpl
from .datasets import DATASET_CONFIGS
from .sdes import SDE_CONFIGS


@hookimpl
def register_sdes(register):
    for config in SDE_CONFIGS:
        register(config)


@hookimpl
def register_datasets(register):
    for config in DATASET_CONFIGS:
        register(config)
