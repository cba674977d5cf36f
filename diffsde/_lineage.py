"""Run lineage: a run that starts from another run's parameters, and components that hold another
run's trained model, frozen.

A spec says ``init: {run: RUN, checkpoint: ema}`` to start its model from the parameters of run
RUN's latest checkpoint (fine-tuning); a component whose constructor parameter is annotated
:class:`FrozenModel` takes the same ``{run: RUN, checkpoint: ema|raw}`` mapping and is built with
that run's model, frozen (a teacher for distillation, a classifier for guidance, a pretrained
score for RL fine-tuning). ``ema`` is the model the parent samples with (for score matching, the
EMA of its parameters); ``raw`` its last parameters (methods with a ``raw_model``).

RUN is a path to a run directory (absolute, or relative to the current working directory, as
``diffsde run`` prints it) or a run id: the directory's name, or its random tail when one run of
the runs directory has it. Ids are looked up in the runs directory, ``$DIFFSDE_RUNS_DIR`` (the
dashboard sets it), else ``runs`` in the current working directory; a program may set another
with :func:`runs_directory`.

Validation resolves every reference, reads the parent's spec and loads its checkpoint (a parent
that is missing, damaged or has no checkpoint yet is one located error at ``….run``), and for
``init`` checks that the parent's trainable leaves have the child model's shapes. When the child
run is created, what it took from each parent is copied into it, ``lineage/<role>/`` (the
parent's ``run.json``, the checkpoint's bytes as loaded, and the parent's own ``lineage/``), and
``run.json`` lists the parents (:func:`entries`). Resuming, sampling or evaluating the child then
reads only its own copies (:func:`stored`): parents are never opened for writing, and a parent
that trains on, moves or is deleted changes nothing in its children.
"""

import contextlib
import contextvars
import dataclasses
import hashlib
import io
import json
import os
import pathlib
import shutil
from collections.abc import Iterator
from typing import Any, Literal

import equinox as eqx
import jax
import jax.tree_util as jtu
import numpy as np
import pydantic
from jaxtyping import PyTree

from ._errors import SpecFieldError, first_line
from ._frozen import FrozenModel as FrozenModel

LINEAGE_DIR = "lineage"
"""The subdirectory of a run holding its copies of what it took from its parents."""
SNAPSHOT_FILE = "parent.json"
CHECKPOINT_FILE = "checkpoint.eqx"
RUNS_DIR_VARIABLE = "DIFFSDE_RUNS_DIR"
Role = str  # "init", or the dotted key path of a FrozenModel value ("transforms.0.teacher")


class LineageError(ValueError):
    """A reference to another run that cannot be used: missing, damaged, without a checkpoint,
    or with another architecture. One line, with the fix."""


_STORED: contextvars.ContextVar[pathlib.Path | None] = contextvars.ContextVar(
    "diffsde_lineage_stored", default=None
)
_RUNS_DIR: contextvars.ContextVar[pathlib.Path | None] = contextvars.ContextVar(
    "diffsde_lineage_runs_dir", default=None
)


@contextlib.contextmanager
def stored(run_dir: str | os.PathLike) -> Iterator[None]:
    """While validating the spec stored in ``run_dir``: its references resolve to the run's own
    copies (``run_dir/lineage/<role>``), not to the runs they name."""
    token = _STORED.set(pathlib.Path(run_dir))
    try:
        yield
    finally:
        _STORED.reset(token)


@contextlib.contextmanager
def runs_directory(runs_dir: str | os.PathLike) -> Iterator[None]:
    """Resolve run ids against ``runs_dir`` inside the block (``diffsde run --runs-dir``)."""
    token = _RUNS_DIR.set(pathlib.Path(runs_dir))
    try:
        yield
    finally:
        _RUNS_DIR.reset(token)


def current_runs_dir() -> pathlib.Path:
    """Where run ids are looked up: :func:`runs_directory`'s, else ``$DIFFSDE_RUNS_DIR``, else
    ``runs``."""
    chosen = _RUNS_DIR.get()
    if chosen is not None:
        return chosen
    return pathlib.Path(os.environ.get(RUNS_DIR_VARIABLE) or "runs")


@dataclasses.dataclass(frozen=True, eq=False)
class Parent:
    """A run another one takes a model from, as loaded: where it was read (the run directory,
    or a child's copy of it), its id, the checkpoint kind and step, its stored spec, its data
    dimension and the model itself."""

    id: str
    origin: str  # the parent's run directory, absolute, when the child resolved it
    source: pathlib.Path  # where it was read from now
    checkpoint: str
    step: int
    spec_yaml: str
    dim: int
    model: PyTree
    checkpoint_bytes: bytes = dataclasses.field(repr=False)

    @property
    def spec_digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.spec_yaml.encode()).hexdigest()

    def entry(self, role: Role) -> dict[str, Any]:
        """What the child's ``run.json`` says about this parent."""
        return {
            "role": role,
            "id": self.id,
            "path": self.origin,
            "checkpoint": self.checkpoint,
            "step": self.step,
            "spec_digest": self.spec_digest,
        }


class RunRef(pydantic.BaseModel):
    """Another run's trained model: ``run`` is a run id or a run directory, ``checkpoint`` which
    of its models (``ema``: the one it samples with; ``raw``: its last parameters)."""

    model_config = pydantic.ConfigDict(
        extra="forbid", frozen=True, strict=True, title="RunReference"
    )
    run: str = pydantic.Field(min_length=1, description="run id (see `diffsde runs`) or path")
    checkpoint: Literal["ema", "raw"] = pydantic.Field(
        "ema", description="ema: the model the run samples with; raw: its last parameters"
    )
    _parent: Parent | None = pydantic.PrivateAttr(None)

    @property
    def parent(self) -> Parent:
        """The run referred to, loaded (resolved at validation; a reference built outside a
        spec, such as a ``--transform`` option's, is resolved here, its error at ``run``)."""
        if self._parent is None:
            try:
                self._parent = resolve(self, "")
            except LineageError as err:
                raise SpecFieldError("run", str(err)) from None
        return self._parent

    def build(self) -> FrozenModel:
        """The referred run's model, frozen (what a ``FrozenModel`` parameter receives)."""
        parent = self.parent
        return FrozenModel(parent.model, run=parent.id, step=parent.step)


def _find_run(value: str) -> pathlib.Path:
    """The run directory ``value`` names (see the module docstring for the rule)."""
    path = pathlib.Path(value).expanduser()
    if path.is_absolute() or os.sep in value or (os.altsep and os.altsep in value):
        if not path.is_dir():
            raise LineageError(f"no run directory {path}: give a run id or an existing run path")
        return path.resolve()
    runs_dir = current_runs_dir()
    if (runs_dir / value).is_dir():
        return (runs_dir / value).resolve()
    matches = []
    if runs_dir.is_dir():
        matches = [p for p in runs_dir.iterdir() if p.is_dir() and p.name.endswith(f"-{value}")]
    if len(matches) == 1:
        return matches[0].resolve()
    if len(matches) > 1:
        names = ", ".join(sorted(p.name for p in matches)[:3])
        raise LineageError(
            f"'{value}' names {len(matches)} runs in {runs_dir} ({names}): give the id"
        )
    if path.is_dir():
        return path.resolve()
    raise LineageError(
        f"no run '{value}' in the runs directory {runs_dir} (${RUNS_DIR_VARIABLE}, else ./runs) "
        "and no directory of that name: give a run id from `diffsde runs` or a run's path"
    )


_CACHE: dict[tuple, Parent] = {}
_CACHE_SIZE = 8


def _load(source: pathlib.Path, spec_yaml: str, checkpoint: str, *, id: str, origin: str) -> Parent:
    """Validate the parent's stored spec (its own references resolving to its copies), build its
    train state, load the checkpoint's bytes into it and take its ``checkpoint`` model."""
    from ._run import build_trainer
    from ._spec._validate import SpecError, validate_text

    file = source / CHECKPOINT_FILE
    try:
        stat = file.stat()
    except OSError:
        raise LineageError(f"{source} has no checkpoint ({CHECKPOINT_FILE})") from None
    key = (str(file), stat.st_mtime_ns, stat.st_size, checkpoint, spec_yaml)
    if key in _CACHE:
        return _CACHE[key]
    try:
        with stored(source):
            setup = validate_text(spec_yaml, f"{source}/run.json:spec")
    except SpecError as err:
        first = str(err.issues[0]) if err.issues else str(err)
        raise LineageError(
            f"the spec of {source} no longer validates ({first}); fix or re-run that run"
        ) from None
    trainer, state, _ = build_trainer(setup)
    data = file.read_bytes()
    try:
        step, state = eqx.tree_deserialise_leaves(
            io.BytesIO(data), (np.asarray(0, np.int64), state)
        )
    except Exception as err:
        first = first_line(err)
        raise LineageError(
            f"{file} is damaged or does not match its run's spec ({type(err).__name__}: {first});"
            " resume that run to rewrite its checkpoint, or choose another run"
        ) from None
    if checkpoint == "ema":
        model = trainer.sampling_model(state)
    else:
        raw = getattr(trainer.method, "raw_model", None)
        if not callable(raw):
            raise LineageError(
                f"checkpoint: raw needs a training method that keeps raw parameters, and "
                f"'{setup.spec.method.type}' of {source} does not: use checkpoint: ema"
            )
        model = raw(state.method)
    parent = Parent(
        id=id,
        origin=origin,
        source=source,
        checkpoint=checkpoint,
        step=int(step),
        spec_yaml=spec_yaml,
        dim=setup.dim,
        model=model,
        checkpoint_bytes=data,
    )
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = parent
    return parent


def resolve(ref: RunRef, role: Role) -> Parent:
    """Find and load the run ``ref`` names, or, while validating a stored run's spec
    (:func:`stored`), that run's copy of it; :class:`LineageError` says why it cannot."""
    from ._runs import RunReadError, open_run

    home = _STORED.get()
    if home is not None:
        source = home / LINEAGE_DIR / role
        try:
            head = json.loads((source / SNAPSHOT_FILE).read_text())
            spec_yaml, id, origin = head["spec"], head["id"], head["path"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise LineageError(
                f"{source} (this run's copy of its parent '{ref.run}') is missing or damaged "
                f"({type(err).__name__}); the run cannot be rebuilt without it"
            ) from None
        return _load(source, spec_yaml, ref.checkpoint, id=id, origin=origin)
    path = _find_run(ref.run)
    try:
        record = open_run(path)
    except RunReadError as err:
        raise LineageError(f"cannot read the run {path}: {err}") from None
    if not (path / CHECKPOINT_FILE).is_file():
        if record.status == "running":
            raise LineageError(
                f"{path} is still training and has saved no checkpoint yet: wait for its first "
                "checkpoint (its training.checkpoint_every) or for it to end"
            )
        raise LineageError(
            f"{path} ({record.status}) saved no checkpoint: resume it (`diffsde run --resume "
            f"{path}`) or choose another run"
        )
    return _load(path, record.spec_yaml, ref.checkpoint, id=record.id, origin=str(path))


def references(spec: pydantic.BaseModel) -> list[tuple[tuple[str | int, ...], RunRef]]:
    """Every run reference of a validated spec with its key path: ``init`` and the values of
    ``FrozenModel`` parameters, in the order of the spec's sections."""
    found: list[tuple[tuple[str | int, ...], RunRef]] = []

    def walk(node: Any, path: tuple[str | int, ...]) -> None:
        if isinstance(node, RunRef):
            found.append((path, node))
        elif isinstance(node, pydantic.BaseModel):
            for name in type(node).model_fields:
                walk(getattr(node, name), (*path, name))
        elif isinstance(node, list | tuple):
            for i, item in enumerate(node):
                walk(item, (*path, i))
        elif isinstance(node, dict):
            for k, item in node.items():
                walk(item, (*path, k))

    walk(spec, ())
    return found


def role_of(path: tuple[str | int, ...]) -> Role:
    return ".".join(str(p) for p in path)


def _leaves(model: PyTree) -> list[tuple[str, Any]]:
    """The trainable leaves of ``model`` with their key paths; an abstract model's
    (``jax.ShapeDtypeStruct`` leaves, from ``eqx.filter_eval_shape``) as zero-size views."""
    from ._methods import trainable

    model = jtu.tree_map(
        lambda x: (
            np.broadcast_to(np.zeros((), x.dtype), x.shape)
            if isinstance(x, jax.ShapeDtypeStruct)
            else x
        ),
        model,
    )
    params = eqx.filter(model, trainable(model))
    return [(jtu.keystr(p), leaf) for p, leaf in jtu.tree_leaves_with_path(params)]


def _section_differences(parent_spec: str, child: pydantic.BaseModel | None) -> list[str]:
    import yaml

    theirs = (yaml.safe_load(parent_spec) or {}).get("model") or {}
    ours = child.model_dump(mode="json") if child is not None else {}
    keys = [*ours, *(k for k in theirs if k not in ours)]
    return [
        f"model.{k} is {ours.get(k, '-')} here and {theirs.get(k, '-')} in the parent"
        for k in keys
        if ours.get(k) != theirs.get(k)
    ]


def architecture_difference(parent: Parent, model: PyTree, section, dim: int) -> str | None:
    """What keeps ``model`` (built, or abstract) from starting at ``parent``'s parameters: its
    trainable leaves must be the parent's, in number, order, shape and dtype. None if it can."""
    ours, theirs = _leaves(model), _leaves(parent.model)
    mismatch = None
    if len(ours) != len(theirs):
        mismatch = f"{len(ours)} trainable arrays here, {len(theirs)} in the parent"
    else:
        for (path, a), (_, b) in zip(ours, theirs, strict=True):
            if a.shape != b.shape or a.dtype != b.dtype:
                mismatch = (
                    f"{path or 'the model'} is {a.dtype}{list(a.shape)} here and "
                    f"{b.dtype}{list(b.shape)} in the parent"
                )
                break
    if mismatch is None:
        return None
    named = _section_differences(parent.spec_yaml, section)
    if dim != parent.dim:
        named.append(f"the data dimension is {dim} here and {parent.dim} in the parent")
    what = "; ".join([*named[:4], mismatch])
    return (
        f"the model's architecture differs from run {parent.id}'s ({what}): give the parent's "
        "model section and data dimension, or start without init"
    )


def check(spec: pydantic.BaseModel, sde, prior, dim: int) -> list[tuple[tuple, str]]:
    """Resolve every run reference of ``spec`` (loading the parents) and check ``init``'s
    architecture against the spec's model; the problems as (key path, message), located at the
    reference's ``run``."""
    import jax.random as jr

    problems = []
    for path, ref in references(spec):
        try:
            ref._parent = resolve(ref, role_of(path))
        except LineageError as err:
            problems.append(((*path, "run"), str(err)))
    init = getattr(spec, "init", None)
    if init is None or init._parent is None:
        return problems
    if spec.model is None:
        return [*problems, (("init",), "init needs a model: section to start from the parent")]
    model = eqx.filter_eval_shape(spec.model.build, sde=sde, key=jr.key(0), prior=prior)
    problem = architecture_difference(init._parent, model, spec.model, dim)
    if problem:
        problems.append((("init", "run"), problem))
    return problems


def initialise(spec: pydantic.BaseModel, model: PyTree) -> PyTree:
    """``model`` with its trainable leaves replaced by those of ``spec.init``'s parent (the
    model unchanged when the spec has no ``init``)."""
    from ._methods import trainable

    init = getattr(spec, "init", None)
    if init is None or model is None:
        return model
    parent = init.parent
    problem = architecture_difference(parent, model, spec.model, parent.dim)
    if problem:
        raise LineageError(f"init.run: {problem}")
    params, rest = eqx.partition(model, trainable(model))
    treedef = jtu.tree_structure(params)
    leaves = [leaf for _, leaf in _leaves(parent.model)]
    return eqx.combine(jtu.tree_unflatten(treedef, leaves), rest)


def entries(spec: pydantic.BaseModel) -> list[dict[str, Any]]:
    """The lineage a child run stores in ``run.json``: one entry per parent reference (role,
    id, path, checkpoint kind and step, the parent's spec digest)."""
    return [ref.parent.entry(role_of(path)) for path, ref in references(spec)]


def write_copies(run_dir: str | os.PathLike, spec: pydantic.BaseModel) -> None:
    """Copy into the new run ``run_dir`` what it takes from each parent: ``lineage/<role>/``
    with the parent's stored spec, the checkpoint bytes that were loaded and the parent's own
    copies. Written before the run's ``run.json``; the parents are only read."""
    from ._runs import write_json

    for path, ref in references(spec):
        parent, role = ref.parent, role_of(path)
        target = pathlib.Path(run_dir) / LINEAGE_DIR / role
        if target.exists():
            shutil.rmtree(target)  # a directory made beforehand and not yet a run
        target.mkdir(parents=True)
        nested = parent.source / LINEAGE_DIR
        if nested.is_dir():
            shutil.copytree(nested, target / LINEAGE_DIR, copy_function=shutil.copyfile)
        # plain writes suffice: the run's run.json, written atomically after these, is what
        # makes the directory a run, so a torn copy is never part of one
        with open(target / CHECKPOINT_FILE, "wb") as out:
            out.write(parent.checkpoint_bytes)
            out.flush()
            os.fsync(out.fileno())
        write_json(target / SNAPSHOT_FILE, {**parent.entry(role), "spec": parent.spec_yaml})
