"""diffsde: score-based diffusion models declared as SDEs, with plugins."""

from ._config import (
    DatasetConfig as DatasetConfig,
    Expr as Expr,
    MetricConfig as MetricConfig,
    ModelConfig as ModelConfig,
    ObjectiveConfig as ObjectiveConfig,
    SamplerConfig as SamplerConfig,
    SDEConfig as SDEConfig,
    SpecFieldError as SpecFieldError,
    compile_field as compile_field,
)
from ._data import (
    AbstractDataset as AbstractDataset,
    GaussianMixture as GaussianMixture,
    TwoDToy as TwoDToy,
)
from ._expression import (
    Expression as Expression,
    ExpressionError as ExpressionError,
    compile_expression as compile_expression,
)
from ._plugins import (
    Component as Component,
    PluginError as PluginError,
    Registry as Registry,
    get_registry as get_registry,
    register_plugin as register_plugin,
    reload_plugins as reload_plugins,
    unregister_plugin as unregister_plugin,
)
from ._prior import (
    AbstractPrior as AbstractPrior,
    GaussianPrior as GaussianPrior,
    GibbsPrior as GibbsPrior,
)
from ._sde._base import AbstractGaussianSDE as AbstractGaussianSDE, AbstractSDE as AbstractSDE
from ._sde._closed_form import (
    OU as OU,
    VE as VE,
    VP as VP,
    LinearBeta as LinearBeta,
    SubVP as SubVP,
)
from ._sde._expression_sdes import Affine as Affine, General as General, Langevin as Langevin
from ._spec._validate import (
    Setup as Setup,
    SpecError as SpecError,
    SpecIssue as SpecIssue,
    load_spec as load_spec,
    validate_text as validate_text,
)
from .hookspecs import hookimpl as hookimpl

__version__ = "0.1.0"
