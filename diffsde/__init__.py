"""diffsde: score-based diffusion models declared as SDEs, with plugins."""

from . import (  # diffsde.cli is imported on demand (`python -m diffsde._cli` stays clean)
    _xla_defaults as _xla_defaults,  # first: XLA flags before any computation starts jax's backend
    expression as expression,
    runs as runs,
    spec as spec,
    training as training,
)
from ._builtin.transforms import (
    Guidance as Guidance,
    Inpaint as Inpaint,
    Temperature as Temperature,
)
from ._config import (
    DatasetConfig as DatasetConfig,
    Expr as Expr,
    MetricConfig as MetricConfig,
    ModelConfig as ModelConfig,
    ObjectiveConfig as ObjectiveConfig,
    SamplerConfig as SamplerConfig,
    SDEConfig as SDEConfig,
    compile_field as compile_field,
)
from ._custom_types import Condition as Condition, Conditions as Conditions
from ._data import (
    AbstractDataset as AbstractDataset,
    ArrayDataset as ArrayDataset,
    ConditionedBatch as ConditionedBatch,
    ExactMoments as ExactMoments,
    ExactScore as ExactScore,
    GaussianMixture as GaussianMixture,
    TwoDToy as TwoDToy,
    exact_score as exact_score,
    load_digits as load_digits,
    split_batch as split_batch,
)
from ._dpm_solvers import DPMSolver as DPMSolver, DPMSolverPP as DPMSolverPP, UniPC as UniPC
from ._edm_solvers import DDIM as DDIM, DEIS as DEIS, EDMHeun as EDMHeun
from ._errors import SpecFieldError as SpecFieldError
from ._expression import (
    Expression as Expression,
    ExpressionError as ExpressionError,
    compile_expression as compile_expression,
)
from ._grids import (
    AbstractTimeGrid as AbstractTimeGrid,
    ExpressionGrid as ExpressionGrid,
    KarrasGrid as KarrasGrid,
    LogSNRGrid as LogSNRGrid,
    QuadraticGrid as QuadraticGrid,
    UniformGrid as UniformGrid,
)
from ._likelihood import (
    LikelihoodMetric as LikelihoodMetric,
    LogLikelihood as LogLikelihood,
    ProbabilityFlowLikelihood as ProbabilityFlowLikelihood,
    bits_per_dim as bits_per_dim,
    log_likelihood as log_likelihood,
)
from ._lineage import FrozenModel as FrozenModel, RunRef as RunRef
from ._methods import (
    AbstractTrainingMethod as AbstractTrainingMethod,
    ScoreMatching as ScoreMatching,
)
from ._metrics import (
    MMD as MMD,
    AbstractMetric as AbstractMetric,
    EvalContext as EvalContext,
    ExactScoreError as ExactScoreError,
    Moments as Moments,
    SlicedWasserstein as SlicedWasserstein,
)
from ._model import (
    AbstractParameterisation as AbstractParameterisation,
    AutoParameterisation as AutoParameterisation,
    ConditionedScore as ConditionedScore,
    MLPScore as MLPScore,
    NoiseOutput as NoiseOutput,
    PriorResidualOutput as PriorResidualOutput,
    ScoreOutput as ScoreOutput,
    ShortcutOutput as ShortcutOutput,
    bind_condition as bind_condition,
    takes_condition as takes_condition,
)
from ._objective import (
    AbstractObjective as AbstractObjective,
    AbstractTimeDistribution as AbstractTimeDistribution,
    AbstractWeighting as AbstractWeighting,
    AbstractXtSource as AbstractXtSource,
    AutoSource as AutoSource,
    DenoisingScoreMatching as DenoisingScoreMatching,
    ExplicitScoreMatching as ExplicitScoreMatching,
    G2Weighting as G2Weighting,
    ImplicitScoreMatching as ImplicitScoreMatching,
    ImportanceTimes as ImportanceTimes,
    KernelSource as KernelSource,
    Sigma2Weighting as Sigma2Weighting,
    SimulationSource as SimulationSource,
    SlicedScoreMatching as SlicedScoreMatching,
    UniformTimes as UniformTimes,
    UniformWeighting as UniformWeighting,
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
from ._runs import (
    RunRecord as RunRecord,
    RunWriter as RunWriter,
    list_runs as list_runs,
    load_checkpoint as load_checkpoint,
    open_run as open_run,
    save_checkpoint as save_checkpoint,
)
from ._sampler import (
    SRA1 as SRA1,
    AbstractFrozenQuantity as AbstractFrozenQuantity,
    AbstractODESolver as AbstractODESolver,
    AbstractSampler as AbstractSampler,
    AbstractSDESolver as AbstractSDESolver,
    AbstractStepController as AbstractStepController,
    AdaptiveReverseSDE as AdaptiveReverseSDE,
    ClassicalRK4 as ClassicalRK4,
    Dopri5 as Dopri5,
    Euler as Euler,
    EulerMaruyama as EulerMaruyama,
    ExponentialIntegrator as ExponentialIntegrator,
    FixedSteps as FixedSteps,
    FrozenData as FrozenData,
    FrozenNoise as FrozenNoise,
    FrozenScore as FrozenScore,
    Heun as Heun,
    PIDSteps as PIDSteps,
    PredictorCorrector as PredictorCorrector,
    ProbabilityFlow as ProbabilityFlow,
    Samples as Samples,
    ShARK as ShARK,
    Tsit5 as Tsit5,
    sample as sample,
)
from ._sde._base import (
    AbstractGaussianSDE as AbstractGaussianSDE,
    AbstractSDE as AbstractSDE,
    mean_dropping_bias as mean_dropping_bias,
)
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
from ._transforms import (
    AbstractScoreTransform as AbstractScoreTransform,
    TransformedScore as TransformedScore,
    apply_transforms as apply_transforms,
)
from .hookspecs import hookimpl as hookimpl

__version__ = "0.1.0"
