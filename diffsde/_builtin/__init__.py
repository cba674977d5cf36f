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


def _registering(*classes: type):
    """A hook implementation that registers ``classes`` (pluggy finds it by the module
    attribute's name, which is the hook's)."""

    @hookimpl
    def register_all(register):
        for cls in classes:
            register(cls)

    return register_all


register_sdes = _registering(*SDES)
register_datasets = _registering(*DATASET_CONFIGS)
register_models = _registering(*MODELS)
register_objectives = _registering(*OBJECTIVES)
register_samplers = _registering(*SAMPLERS)
register_metrics = _registering(*METRICS)
register_training_methods = _registering(*METHODS)
register_score_transforms = _registering(*TRANSFORMS)
register_parts = _registering(*OBJECTIVE_PARTS, *SAMPLER_PARTS, *METRIC_PARTS, *PARAMETERISATIONS)
