"""The main job for scripts: ``run(setup, …)`` trains, samples, evaluates and stores a spec
(what ``diffsde run`` does); ``load_model(run_dir)`` reads a finished run's setup, model and
keys back; ``eval_reference`` and ``sample_conditions`` give the held-out set and the sampling
conditions a run evaluates against (what ``diffsde sample`` re-uses). bench/shipped_specs.py is
an example."""

from ._run import (
    eval_reference as eval_reference,
    load_model as load_model,
    require_runnable as require_runnable,
    run as run,
    sample_conditions as sample_conditions,
)
