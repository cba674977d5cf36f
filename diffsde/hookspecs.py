"""The hooks a diffsde plugin can implement.

Each hook receives a ``register`` callback; call it once per component with a pydantic config
class that subclasses the matching base (``diffsde.SDEConfig`` for ``register_sdes``, …) and has
a ``type: Literal["tag"]`` field. The tag is the name used in specs and on the command line.

    import diffsde

    @diffsde.hookimpl
    def register_sdes(register):
        register(MySDEConfig)

Built-in components are registered through these same hooks (``diffsde._builtin``).
"""

from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("diffsde")
hookimpl = HookimplMarker("diffsde")


@hookspec
def register_sdes(register):
    """Register forward SDEs (subclasses of ``diffsde.SDEConfig``), used in ``sde:``."""


@hookspec
def register_objectives(register):
    """Register score-matching objectives (``diffsde.ObjectiveConfig``), used in ``objective:``."""


@hookspec
def register_samplers(register):
    """Register reverse-process samplers (``diffsde.SamplerConfig``), used in ``sampler:``."""


@hookspec
def register_models(register):
    """Register score models (``diffsde.ModelConfig``), used in ``model:``."""


@hookspec
def register_datasets(register):
    """Register datasets (``diffsde.DatasetConfig``), used in ``data:``."""


@hookspec
def register_metrics(register):
    """Register evaluation metrics (``diffsde.MetricConfig``), used in ``eval.metrics``."""


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
