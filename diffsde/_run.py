"""The main job: train a spec's model with its training method, sample it, evaluate, and store it
all in one run.

The spec layer builds the core objects (`build_method`, `Trainer`); the loop here gives every
training method the same checkpoints, bit-for-bit resume, NaN stop, SIGTERM stop, progress line
and metric rows (``step``, ``wall_time`` and the method's ``metric_names``).

Everything a run produces goes to its run directory as it happens (metric rows after every
dispatch, checkpoints, results; see `diffsde._runs`), so a crash, a NaN, a full disk, Ctrl-C,
SIGTERM or SIGKILL keeps all of it, and `resume` continues from the last checkpoint.
"""

import contextlib
import dataclasses
import hashlib
import math
import pathlib
import re
import signal
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import yaml

from . import _faults
from ._component import changed_settings
from ._errors import SpecFieldError
from ._lineage import entries as lineage_entries, initialise, stored, write_copies
from ._methods import AbstractTrainingMethod
from ._metrics import EvalContext
from ._model import bind_condition
from ._plugins import get_registry
from ._runs import (
    RUN_FILE,
    CheckpointError,
    RunBusyError,
    RunWriter,
    add_results,
    environment,
    load_checkpoint,
    new_run_dir,
    open_run,
    save_checkpoint,
)
from ._sampler import sample
from ._spec._optim import build_method as build_spec_method, method_requires
from ._spec._source import Location
from ._spec._validate import Setup, SpecError, SpecIssue, validate_text
from ._train import Trainer, TrainState
from ._transforms import (
    AbstractScoreTransform,
    apply_transforms,
    build_transform,
    transforms_label,
)

RUNNABLE = {
    "model": "model: {type: mlp}",
    "objective": "objective: {type: dsm}",
    "sampler": "sampler: {type: pf_ode, solver: tsit5}",
}


def require_runnable(setup: Setup) -> None:
    """`diffsde run` needs a sampler and, for a training method that takes them (score matching
    does), a model and an objective: say which are missing."""
    issues = [
        SpecIssue(
            Location(setup.file, 1, 1), section, f"`diffsde run` needs this section, e.g. `{hint}`"
        )
        for section, hint in RUNNABLE.items()
        if getattr(setup.spec, section) is None
        and (section == "sampler" or method_requires(setup.spec, section))
    ]
    if issues:
        raise SpecError(issues)


@dataclasses.dataclass(frozen=True)
class Keys:
    """The run's randomness, all derived from the spec's seed."""

    model: jax.Array
    train: jax.Array
    sample: jax.Array
    eval: jax.Array

    @classmethod
    def from_seed(cls, seed: int) -> "Keys":
        return cls(*jr.split(jr.key(seed), 4))


def build_method(setup: Setup, model) -> AbstractTrainingMethod:
    """The spec's training method (``method:``, by default score matching) for ``model``, with
    the spec's objective and ``training:`` settings: the one place a run chooses its method."""
    section = setup.spec.objective
    objective = None if section is None else section.build(sde=setup.sde, data=setup.data)
    return build_spec_method(
        setup.spec, model, objective, sde=setup.sde, data=setup.data, prior=setup.prior
    )


def run_metrics(trainer: Trainer) -> tuple[str, ...]:
    """The run's metric columns: ``step``, ``wall_time`` and the method's metrics."""
    step, *method = trainer.metric_names
    return (step, "wall_time", *method)


def build_trainer(setup: Setup) -> tuple[Trainer, TrainState, Keys]:
    """The trainer of ``setup`` (its model, the method of ``method:``, the ``training:``
    budget), the state at step 0, and the run's keys."""
    keys = Keys.from_seed(setup.spec.seed)
    section = setup.spec.model
    model = (
        None if section is None else section.build(sde=setup.sde, key=keys.model, prior=setup.prior)
    )
    model = initialise(setup.spec, model)  # `init:`: the parent's parameters (see _lineage)
    config = setup.spec.training
    trainer = Trainer(
        build_method(setup, model),
        setup.data,
        keys.train,
        steps=config.steps,
        batch_size=config.batch_size,
        steps_per_dispatch=config.steps_per_dispatch,
    )
    # the method's initialisation key: derived from the model's, never a training step's key
    return trainer, trainer.init(key=jr.fold_in(keys.model, 1)), keys


class Progress:
    """Steps, steps/s, loss and ETA: one terminal line rewritten in place, or, when the stream is
    not a terminal (a log file), a new line at most every ``log_every`` seconds and at the end."""

    def __init__(
        self,
        total: int,
        start: int,
        stream=sys.stderr,
        enabled: bool = True,
        log_every: float = 2.0,
    ):
        self.total, self.start, self.stream, self.enabled = total, start, stream, enabled
        self.t0 = self.last_line = time.perf_counter()
        self.log_every = log_every
        self.terminal = enabled and stream.isatty()

    def update(self, step: int, loss: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not self.terminal and now - self.last_line < self.log_every and step < self.total:
            return
        self.last_line = now
        elapsed = now - self.t0
        rate = (step - self.start) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else math.inf
        width = 24
        done = int(width * step / self.total)
        bar = "#" * done + "." * (width - done)
        eta_text = "?" if math.isinf(eta) else f"{int(eta) // 60}:{int(eta) % 60:02d}"
        start, end = ("\r", "") if self.terminal else ("", "\n")
        self.stream.write(
            f"{start}[{bar}] {step}/{self.total} steps  {rate:7.1f} steps/s  "
            f"loss {loss:9.4g}  ETA {eta_text}  {end}"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.terminal:
            self.stream.write("\n")
            self.stream.flush()


class StopRequest:
    """Set by SIGTERM; the training loop checks it after every dispatch and stops the run
    (status `stopped`, everything kept). A flag, not an exception raised from the handler: an
    exception raised while Python runs a finaliser or weakref callback is swallowed."""

    def __init__(self):
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None


def _stop_request(stop: StopRequest | None):
    """The caller's stop flag, or a fresh one set by SIGTERM for the duration of the block."""
    return contextlib.nullcontext(stop) if stop is not None else sigterm_stops()


@contextlib.contextmanager
def sigterm_stops() -> Iterator[StopRequest]:
    request = StopRequest()

    def stop(signum, frame):
        del frame
        request.signal = signum

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals alone
        yield request
        return
    try:
        yield request
    finally:
        signal.signal(signal.SIGTERM, previous)


def _train(
    setup: Setup,
    writer: RunWriter,
    trainer: Trainer,
    state: TrainState,
    *,
    progress: bool,
    stop: StopRequest,
    wall_offset: float = 0.0,
) -> TrainState | None:
    """Train to the budget; None if the loss went non-finite (the run is then `failed`) or a
    stop was requested (`stopped`)."""
    config = setup.spec.training
    bar = Progress(trainer.steps, int(state.step), enabled=progress)
    t0 = time.perf_counter() - wall_offset
    last_checkpoint = int(state.step)
    try:
        while int(state.step) < trainer.steps and not stop:
            state, rows = trainer.run_chunk(state, trainer.chunk_length(state))
            rows = {k: np.asarray(v, np.float64) for k, v in rows.items()}
            rows["wall_time"] = np.full(len(rows["step"]), time.perf_counter() - t0)
            bad = np.flatnonzero(~np.isfinite(rows["loss"]))
            if bad.size:
                keep = bad[0] + 1  # keep the first non-finite row: it shows what happened
                writer.append_metrics({k: v[:keep] for k, v in rows.items()})
                step = int(rows["step"][bad[0]])
                writer.set_status(
                    "failed",
                    f"loss became {rows['loss'][bad[0]]} at step {step}; lower "
                    "training.learning_rate or set training.grad_clip (validation found the "
                    "SDE, prior and score finite where it probed them; if the SDE's parameters "
                    "make it blow up elsewhere, check them too)",
                    step,
                )
                return None
            writer.append_metrics(rows)
            _faults.point("train")
            step = int(state.step)
            if step // config.checkpoint_every > last_checkpoint // config.checkpoint_every:
                writer.sync()  # the rows up to a checkpoint are as durable as the checkpoint
                save_checkpoint(writer.path, step, state)
                last_checkpoint = step
            bar.update(step, float(rows["loss"][-1]))
    finally:
        bar.close()
    if stop:  # also when the signal came before the first dispatch or during the last one
        step = int(state.step)
        save_checkpoint(writer.path, step, state)
        writer.set_status("stopped", f"signal {stop.signal} at step {step}", step)
        return None
    if last_checkpoint != int(state.step):
        save_checkpoint(writer.path, int(state.step), state)
    return state


def _generate(
    setup: Setup, model, keys: Keys, transforms: Sequence[AbstractScoreTransform] | None = None
):
    """Draw ``eval.n_samples`` points with the spec's sampler, from the prior, the score
    ``transforms`` (by default the spec's ``transforms:``) applied to the model's score first,
    in order (the first wraps the model)."""
    transforms = setup.transforms if transforms is None else transforms
    x_T = setup.prior.sample(key=jr.fold_in(keys.sample, 0), n=setup.spec.eval.n_samples)
    sampler = setup.spec.sampler.build(sde=setup.sde)
    times = sorted(set(setup.spec.eval.save_times), reverse=True)  # the order the sampler visits
    return sample(
        sampler,
        setup.sde,
        apply_transforms(model, transforms),
        x_T,
        key=jr.fold_in(keys.sample, 1),
        save_ts=jnp.asarray(times) if times else None,
        condition=sample_conditions(setup, keys),
    )


# conditions (seam 1): which condition each sample gets, and what the samples are compared with


def sample_conditions(setup: Setup, keys: Keys):
    """One condition per sample, or None: ``eval.condition`` for every row when the spec sets
    it; else, for data with class labels, labels drawn from the data's own law (so the samples
    are of p(x) = Σ_c p(c) p(x | c)); else None."""
    n, fixed = setup.spec.eval.n_samples, setup.spec.eval.condition
    if fixed is not None:
        return jnp.full((n,), fixed, jnp.int32)
    if setup.data.classes:
        return setup.data.sample_conditions(key=jr.fold_in(keys.sample, 2), n=n)[1]
    return None


def _eval_law(setup: Setup, model):
    """(dataset, score) the metrics compare with: with ``eval.condition`` c, the law p(x | c)
    (``data.given(c)``) and the model bound to c; else the data and the model."""
    fixed = setup.spec.eval.condition
    if fixed is None:
        return setup.data, model
    score = None if model is None else bind_condition(model, jnp.asarray(fixed, jnp.int32))
    return setup.data.given(fixed), score


def eval_reference(setup: Setup, keys: Keys, n: int):
    """(held-out points, their conditions or None) of the law the metrics compare with."""
    data, _ = _eval_law(setup, None)
    return data.held_out_conditions(key=keys.eval, n=n)


def _evaluate(
    setup: Setup, model, x, reference, keys: Keys, reference_conditions=None
) -> dict[str, float]:
    """Every metric of ``eval.metrics`` on samples ``x`` against held-out ``reference`` (of
    p(x | c) and with the model bound to c under ``eval.condition`` c: see `_eval_law`)."""
    dataset, score = _eval_law(setup, model)
    context = EvalContext(
        samples=jnp.asarray(x),
        reference=jnp.asarray(reference),
        dataset=dataset,
        sde=setup.sde,
        score=score,
        prior=setup.prior,
        key=jr.fold_in(keys.eval, 1),
        reference_conditions=reference_conditions,
    )
    evaluation = {}
    for metric in setup.spec.eval.metrics:
        evaluation.update(metric.build()(context))
    return evaluation


def _sample_and_evaluate(setup: Setup, trainer: Trainer, state: TrainState, keys: Keys):
    model = trainer.sampling_model(state)
    _faults.point("sample")
    result = _generate(setup, model, keys)
    reference, reference_conditions = eval_reference(setup, keys, setup.spec.eval.n_samples)
    evaluation = _evaluate(setup, model, result.x, reference, keys, reference_conditions)
    samples = {"samples": np.asarray(result.x), "reference": np.asarray(reference)}
    conditions = sample_conditions(setup, keys)
    if conditions is not None:  # 1-D: the dashboard draws only (points × dim) sets
        samples["conditions"] = np.asarray(conditions)
    if reference_conditions is not None:
        samples["reference_conditions"] = np.asarray(reference_conditions)
    if result.trajectory is not None:
        samples["trajectory"] = np.asarray(result.trajectory)
        samples["trajectory_times"] = np.asarray(sorted(set(setup.spec.eval.save_times))[::-1])
    return evaluation, samples, {setup.spec.sampler.type: int(result.nfe)}


def run(
    setup: Setup,
    runs_dir: str | pathlib.Path,
    *,
    progress: bool = True,
    run_dir: str | pathlib.Path | None = None,
    stop: StopRequest | None = None,
) -> pathlib.Path:
    """Train, sample and evaluate ``setup``; return the run directory (a new one in
    ``runs_dir``, or ``run_dir`` if given). SIGTERM, or setting ``stop``, ends the run as
    `stopped` after the current dispatch."""
    require_runnable(setup)
    trainer, state, keys = build_trainer(setup)
    lineage = lineage_entries(setup.spec)
    if lineage:  # the run's copies of its parents' models go in before its run.json
        run_dir = new_run_dir(runs_dir, setup.spec.name) if run_dir is None else run_dir
        write_copies(run_dir, setup.spec)
    writer = RunWriter.create(
        runs_dir,
        setup.spec.name,
        setup.resolved_yaml(),
        environment(),
        metrics=run_metrics(trainer),
        run_dir=run_dir,
        lineage=lineage,
    )
    if progress:
        print(f"run {writer.path}", file=sys.stderr)
    with _stop_request(stop) as stop, writer:
        _finish(setup, writer, trainer, state, keys, progress=progress, stop=stop)
    return writer.path


def _finish(setup, writer, trainer, state, keys, *, progress, stop, wall_offset=0.0) -> None:
    state = _train(
        setup, writer, trainer, state, progress=progress, stop=stop, wall_offset=wall_offset
    )
    if state is not None:
        writer.write_results(
            *_sample_and_evaluate(setup, trainer, state, keys), step=int(state.step)
        )


def resume(
    run_path: str | pathlib.Path, *, progress: bool = True, stop: StopRequest | None = None
) -> pathlib.Path:
    """Continue a run from its last checkpoint, bit for bit as if it had not stopped; a run
    that saved no checkpoint restarts from step 0 (and says so). Earlier results are kept; a
    completed run whose results are in place is left alone."""
    record = open_run(run_path)
    if record.status == "running":
        raise RunBusyError(
            f"{record.path} is running (process {record.pid} on {record.host}); stop it before "
            "you resume it."
        )
    if record.status == "stale":
        print(
            f"{record.path}: its writer (process {record.pid} on {record.host}) has been silent "
            "for over a minute; taking the run over",
            file=sys.stderr,
        )
    with stored(record.path):  # its parents' models from its own copies, parents untouched
        setup = validate_text(record.spec_yaml, f"{record.path}/{RUN_FILE}:spec")
    trainer, state, keys = build_trainer(setup)
    try:
        step, state = load_checkpoint(record.path, state)
    except CheckpointError:
        if record.checkpoint_step is not None:
            raise  # there was one: a damaged checkpoint is not silently retrained
        step = -1
    done = any(r.kind == "run" and r.step == step for r in record.results)
    if record.status == "completed" and done and step >= setup.spec.training.steps:
        print(f"{record.path} is completed at step {step}; nothing to resume", file=sys.stderr)
        return record.path
    wall = record.metrics.get("wall_time", np.zeros(0))
    steps = record.metrics.get("step", np.zeros(0))
    offset = float(wall[steps <= step][-1]) if np.any(steps <= step) else 0.0
    writer = RunWriter.reopen(record.path, from_step=step, metrics=run_metrics(trainer))
    if progress or step < 0:
        start = f"from step {step}" if step >= 0 else "from step 0: it saved no checkpoint"
        print(f"resume {record.path} {start}", file=sys.stderr)
    with _stop_request(stop) as stop, writer:
        _finish(
            setup, writer, trainer, state, keys, progress=progress, stop=stop, wall_offset=offset
        )
    return record.path


def load_model(
    run_path: str | pathlib.Path, overrides: Sequence[str] = (), sampler: str | None = None
):
    """The run's setup (with ``overrides``, and ``sampler`` as a fresh sampler section) and its
    model to sample with from the last checkpoint (the method's ``sampling_model``: for score
    matching, the EMA score model)."""
    record = open_run(run_path)
    spec = yaml.safe_load(record.spec_yaml)
    if sampler is not None:
        spec["sampler"] = {"type": sampler}
    with stored(record.path):  # its parents' models from its own copies
        setup = validate_text(
            yaml.safe_dump(spec, sort_keys=False), f"{record.path}/{RUN_FILE}:spec", overrides
        )
    trainer, state, keys = build_trainer(setup)
    try:
        step, state = load_checkpoint(record.path, state)
    except CheckpointError as e:
        if record.status == "running":
            raise CheckpointError(
                f"{record.path} is still training and has saved no checkpoint yet; wait for "
                "its first checkpoint (training.checkpoint_every) or for the run to end."
            ) from e
        raise
    if record.status == "running":
        print(
            f"{record.path} is still training: using its checkpoint at step {step}",
            file=sys.stderr,
        )
    return setup, trainer.sampling_model(state), keys, record, step


def _sample_label(setup: Setup) -> str:
    """``sampler-key=value-…-n=N`` naming the sampler settings that differ from the defaults,
    with characters a file name cannot hold replaced, and a digest if it had to be shortened."""
    settings = changed_settings(setup.spec.sampler)
    parts = [setup.spec.sampler.type, *(f"{k}={v}" for k, v in settings)]
    label = "-".join([*parts, f"n={setup.spec.eval.n_samples}"])
    if setup.spec.eval.condition is not None:  # samples of one class
        label += f"-condition={setup.spec.eval.condition}"
    safe = re.sub(r"[^A-Za-z0-9._=+@,-]", "_", label)
    if len(safe) > 200:
        safe = f"{safe[:183]}-{hashlib.sha256(label.encode()).hexdigest()[:16]}"
    return safe


def sample_run(
    run_path: str | pathlib.Path,
    sampler: str | None,
    n: int | None,
    overrides: Sequence[str] = (),
    transforms: Sequence[Mapping[str, Any]] = (),
) -> tuple[str, dict[str, float], int]:
    """Sample a finished run's model with another sampler (or settings) and evaluate it against
    the run's held-out data. ``transforms`` (spec items ``{"type": tag, field: value}``, applied
    in order) replace the spec's ``transforms:`` when given. The results are stored in the run
    under a label naming the sampler settings and the transforms applied."""
    extra = [f"eval.n_samples={n}"] if n is not None else []
    setup, model, keys, record, step = load_model(run_path, [*overrides, *extra], sampler)
    if transforms:
        built = _build_transforms(setup, transforms)
    else:
        built = setup.transforms
        transforms = [
            {"type": t.type, **t.model_dump(exclude_defaults=True)} for t in setup.spec.transforms
        ]
    label = _sample_label(setup)  # before computing: a label that cannot be stored fails here
    if transforms:
        label = transforms_label(label, transforms)
    result = _generate(setup, model, keys, built)
    reference, reference_conditions = eval_reference(setup, keys, setup.spec.eval.n_samples)
    evaluation = _evaluate(setup, model, result.x, reference, keys, reference_conditions)
    add_results(
        record.path,
        label,
        kind="sample",
        evaluation=evaluation,
        samples={"samples": np.asarray(result.x)},
        nfe={"nfe": int(result.nfe)},
        step=step,
        prefixed=True,
    )
    return label, evaluation, int(result.nfe)


def _build_transforms(
    setup: Setup, items: Sequence[Mapping[str, Any]]
) -> list[AbstractScoreTransform]:
    """The score transforms (any registered) of spec ``items`` for the run's SDE; every bad item
    is a SpecIssue at ``transforms[i]`` naming its field."""
    registry = get_registry()
    configs = {n: registry.get("transform", n).config for n in registry.names("transform")}
    built, issues = [], []
    for i, item in enumerate(items):
        try:
            built.append(build_transform(item, sde=setup.sde, configs=configs))
        except SpecFieldError as err:
            issues.append(SpecIssue(Location(f"transforms[{i}]", 1, 1), err.field, err.message))
    if issues:
        raise SpecError(issues)
    return built


def evaluate_run(run_path: str | pathlib.Path) -> dict[str, float]:
    """Recompute the spec's metrics on the run's stored samples (e.g. after adding a metric)."""
    setup, model, keys, record, step = load_model(run_path)
    if "samples" not in record.samples or "reference" not in record.samples:
        raise CheckpointError(
            f"{record.path} has no stored samples: the run has not finished sampling; "
            "resume it or wait for it to end."
        )
    stored = record.samples
    conditions = stored.get("reference_conditions")  # labelled data's (seam 1)
    evaluation = _evaluate(setup, model, stored["samples"], stored["reference"], keys, conditions)
    add_results(record.path, f"eval-step{step}", kind="eval", evaluation=evaluation, step=step)
    return evaluation


def likelihood_run(run_path: str | pathlib.Path, **settings) -> tuple[dict[str, float], int]:
    """Log-likelihood of a finished run's held-out data under its sampling model (the last
    checkpoint's; for score matching the EMA), through the probability-flow ODE (``diffsde eval
    RUN --likelihood``); returns the metric's values (``nll``, and ``bpd``/``nll_se`` where they
    apply) and the NFE of one solve.

    ``settings`` are fields of the ``log_likelihood`` metric (``n``, ``divergence``, ``probes``,
    ``eps``, ``rtol``, ``atol``, …), over the spec's own ``log_likelihood`` item if it has one,
    else over the defaults. The points are the run's held-out reference (``n`` of them; more
    than ``eval.n_samples`` draws a larger held-out set), p_T is the run's prior. The values are
    stored as the run's ``eval`` metrics, the per-point log p as ``samples/log_likelihood`` and
    the NFE as ``nfe/likelihood``.
    """
    setup, model, keys, record, step = load_model(run_path)
    config = get_registry().get("metric", "log_likelihood").config
    own = [m for m in setup.spec.eval.metrics if m.type == "log_likelihood"]
    base = own[0].model_dump() if own else {}
    metric = config.model_validate({**base, **settings}).build()
    reference, conditions = eval_reference(setup, keys, max(setup.spec.eval.n_samples, metric.n))
    data, score = _eval_law(setup, model)
    values, result = metric.evaluate(
        data,
        setup.sde,
        setup.prior,
        score,
        jnp.asarray(reference),
        key=jr.fold_in(keys.eval, 1),  # the key of the run's own metrics: the same points
        condition=conditions,
    )
    add_results(
        record.path,
        f"likelihood-step{step}",
        kind="likelihood",
        evaluation=values,
        samples={"log_likelihood": np.asarray(result.log_prob)},
        nfe={"likelihood": int(result.nfe)},
        step=step,
    )
    return values, int(result.nfe)
