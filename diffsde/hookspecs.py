"""The hooks a diffsde plugin can implement.

Each component hook receives a ``register`` callback; call it once per component with its one
class (an ``equinox.Module`` deriving from the kind's base, ``diffsde.AbstractSDE`` for
``register_sdes``, …, with a class attribute ``tag``), or with a pydantic spec model
subclassing the matching ``…Config`` base with a ``type: Literal["tag"]`` field. The tag is the
name used in specs and on the command line.

    import diffsde

    @diffsde.hookimpl
    def register_sdes(register):
        register(MySDE)

Built-in components are registered through these same hooks (``diffsde._builtin``).

What is checked, each problem reported as one line naming the plugin and its distribution (in
``diffsde plugins``, and as a note of a spec's "unknown … type" error): a function marked
``@diffsde.hookimpl`` whose name is no hook here (``register_sde``: "did you mean
register_sdes?"); a hook implementation with arguments the hook does not pass (implement
``register_sdes(register)``, a subset of the hook's argument names); a class that leaves an
abstract method or an ``eqx.AbstractVar`` of its base undefined (an SDE's ``dim``, ``T``,
``kernel``; a sampler's ``eps``); a metric whose ``directions`` are not "min", "max" or "zero";
a spec model without a class attribute its base requires (``ObjectiveConfig``'s
``needs_gaussian_kernel``); a missing or taken tag. At validation the SDE's drift, diffusion
and kernel, the prior's samples and the model's output are traced with ``jax.eval_shape`` for
the data's dimension; a wrong shape is an error at the spec's ``type:`` line.
"""

from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("diffsde")
hookimpl = HookimplMarker("diffsde")


@hookspec
def register_sdes(register):
    """Register forward SDEs (``diffsde.AbstractSDE`` or ``AbstractGaussianSDE`` subclasses
    with a ``tag``, or ``diffsde.SDEConfig`` spec models), used in ``sde:``."""


@hookspec
def register_objectives(register):
    """Register score-matching objectives (``diffsde.AbstractObjective`` subclasses with a
    ``tag``, or ``diffsde.ObjectiveConfig`` spec models), used in ``objective:``."""


@hookspec
def register_samplers(register):
    """Register reverse-process samplers (``diffsde.AbstractSampler`` subclasses with a
    ``tag`` and an ``eps``, or ``diffsde.SamplerConfig`` spec models), used in ``sampler:``."""


@hookspec
def register_models(register):
    """Register score models (``equinox.Module`` classes with a ``tag`` whose
    ``model(x, t)`` is the score at one point, or ``diffsde.ModelConfig`` spec models), used in
    ``model:``."""


@hookspec
def register_datasets(register):
    """Register datasets (``diffsde.AbstractDataset`` subclasses with a ``tag``, or
    ``diffsde.DatasetConfig`` spec models), used in ``data:``. A dataset that knows its exact
    score implements ``diffsde.ExactScore`` (``esm`` uses it)."""


@hookspec
def register_metrics(register):
    """Register evaluation metrics (``diffsde.AbstractMetric`` subclasses with a ``tag`` and
    ``directions``, or ``diffsde.MetricConfig`` spec models), used in ``eval.metrics``."""


@hookspec
def register_training_methods(register):
    """Register training methods (subclasses of ``diffsde.training.AbstractTrainingMethod``
    with a ``tag``), used in ``method:``. A method owns its train state, step and metrics; the
    trainer gives it checkpoints, bit-for-bit resume, the NaN stop, SIGTERM, progress and the
    run store's metric rows."""


@hookspec
def register_score_transforms(register):
    """Register score transforms (subclasses of ``diffsde.AbstractScoreTransform`` with a
    ``tag``), listed in ``transforms:`` and by ``diffsde sample --transform``: wrappers of any
    model's score applied before any sampler (guidance, inpainting, temperature, …)."""


@hookspec
def register_parts(register):
    """Register parts that components are composed of — loss weightings, time distributions,
    sources of x_t, step-size controllers, time grids, … — each a class deriving from a part base
    (``diffsde.AbstractWeighting``, …) with a ``tag``. A component parameter annotated with that
    base accepts every registered part of its kind (``weighting: g2``)."""


@hookspec
def register_commands(subparsers):
    """Add ``diffsde`` subcommands: ``subparsers`` is the argparse sub-parser action of the
    ``diffsde`` command. Add a parser with ``subparsers.add_parser(name, help=...)`` and give it
    ``set_defaults(handler=fn)``; ``fn(args)`` returns the exit status (as ``llm``'s
    ``register_commands`` does for click)."""


@hookspec
def register_pages(register):
    """Add dashboard pages: ``register(title, render, *, icon=None)``, ``render()`` drawing the
    page with Streamlit calls. A page lives with the plugin that needs it."""
