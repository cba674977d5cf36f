"""Run lineage: ``init:`` starts a run from another run's parameters, ``diffsde.FrozenModel``
parameters take another run's model frozen; parents are checked at validation, recorded in the
child and never touched by it."""

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import diffsde
from diffsde._cli import main
from diffsde._lineage import runs_directory
from diffsde._methods import trainable
from diffsde._run import _generate, build_trainer, load_model
from tests.tiny import tiny_spec


def _api_run(setup, runs):
    from diffsde._run import run

    return run(setup, runs, progress=False)


@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> pathlib.Path:
    """A tiny trained run (40 steps, checkpoints every 20)."""
    runs = tmp_path_factory.mktemp("store") / "runs"
    return _api_run(diffsde.validate_text(tiny_spec("parent", steps=40, checkpoint_every=20)), runs)


def _with_init(spec: str, run, checkpoint: str = "ema") -> str:
    """``spec`` with ``init: {run, checkpoint}`` as its last line (replacing a stored spec's
    ``init: null``)."""
    spec = "".join(line for line in spec.splitlines(True) if line != "init: null\n")
    return spec + f"init: {{run: '{run}', checkpoint: {checkpoint}}}\n"


def _tree_state(directory: pathlib.Path) -> dict[str, tuple]:
    """Every entry under ``directory``: its bytes' digest (files) and mtime (files and dirs)."""
    state = {}
    for path in sorted([directory, *directory.rglob("*")]):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        state[str(path.relative_to(directory))] = (digest, info.st_mtime_ns, info.st_size)
    return state


def _sampling_model(run_dir):
    return load_model(run_dir)[1]


def test_a_child_with_no_steps_samples_exactly_what_the_parent_samples(parent):
    """init from the EMA: before its first step the child's sampling model is the parent's,
    so with the same seed and sampler it draws the parent's stored samples bit for bit; with
    ``checkpoint: raw`` its parameters are the parent's last (not averaged) ones. Mutation:
    `initialise` returning the model unchanged, or swapping ema/raw in `_load`, fails it."""
    record = diffsde.runs.open_run(parent)
    setup = diffsde.validate_text(_with_init(record.spec_yaml, parent))
    assert setup.spec.init.parent.step == 40
    trainer, state, keys = build_trainer(setup)
    result = _generate(setup, trainer.sampling_model(state), keys)
    np.testing.assert_array_equal(np.asarray(result.x), record.samples["samples"])

    raw_setup = diffsde.validate_text(_with_init(record.spec_yaml, parent, "raw"))
    _, raw_state, _ = build_trainer(raw_setup)
    _, parent_state, _ = build_trainer(diffsde.validate_text(record.spec_yaml))
    _, parent_state = diffsde.runs.load_checkpoint(parent, parent_state)
    ours = jax.tree_util.tree_leaves(raw_state.method.params)
    theirs = jax.tree_util.tree_leaves(parent_state.method.params)
    ema = jax.tree_util.tree_leaves(parent_state.method.ema)
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(ours, ema, strict=True))
    # the optimiser starts afresh, and the EMA at the parameters it starts from
    assert int(raw_state.step) == 0


def _score_error(model, data, sde, key) -> float:
    """E_t E_{x~p_t} σ_t² |s_θ(x, t) − ∇log p_t(x)|² / dim over t ∈ [0.05, 1] (the exact score
    of the Gaussian data)."""
    errors = []
    for i, t in enumerate(np.linspace(0.05, 1.0, 8)):
        k1, k2 = jr.split(jr.fold_in(key, i))
        x0 = data.sample(key=k1, n=512)
        lam, sigma = sde.kernel(t)
        x = lam * x0 + sigma * jr.normal(k2, x0.shape)
        ours = jax.vmap(lambda x: model(x, t))(x)
        exact = jax.vmap(lambda x: data.score(x, t, sde))(x)
        errors.append(float(sigma**2 * jnp.mean((ours - exact) ** 2)))
    return float(np.mean(errors))


GAUSSIAN = """\
name: {name}
seed: 1
sde: {{type: vp}}
data: {{type: gmm, dim: 2, components: 1, means: [[{mean}, 0.0]], std: 0.5}}
model: {{type: mlp, width: 32, depth: 2, n_frequencies: 4}}
objective: {{type: dsm}}
training: {{steps: 400, batch_size: 128, learning_rate: 0.003, warmup_steps: 20,
  ema_decay: 0.99, steps_per_dispatch: 100, checkpoint_every: 400}}
sampler: {{type: pf_ode, solver: euler, steps: 10}}
eval: {{n_samples: 100, metrics: []}}
"""


@pytest.mark.slow
def test_fine_tuning_on_other_data_moves_to_the_new_datas_exact_score(tmp_path):
    """A parent trained on N((1.5, 0), 0.5²I), fine-tuned (``init:``) on N((−1.5, 0), 0.5²I):
    the child's σ²-weighted score error against the new data's exact score is under a fifth of
    the parent's, and under a fifth of its own error against the old data's exact score.
    Measured (seeds 1 and 7): parent vs new 0.89, child vs new 0.046, child vs old 0.93. That
    the child starts at the parent is checked bit for bit above. Mutation: the child training
    on the parent's data (its data section ignored) fails it."""
    runs = tmp_path / "runs"
    old = _api_run(diffsde.validate_text(GAUSSIAN.format(name="old", mean=1.5)), runs)
    new_spec = GAUSSIAN.format(name="new", mean=-1.5).replace("steps: 400", "steps: 200")
    child = _api_run(diffsde.validate_text(_with_init(new_spec, old)), runs)
    setup = diffsde.validate_text(new_spec)
    new, sde = setup.data, setup.sde
    old_data = diffsde.validate_text(GAUSSIAN.format(name="x", mean=1.5)).data
    key = jr.key(7)
    parent_new = _score_error(_sampling_model(old), new, sde, key)
    child_new = _score_error(_sampling_model(child), new, sde, key)
    child_old = _score_error(_sampling_model(child), old_data, sde, key)
    print(f"parent→new {parent_new:.4f} child→new {child_new:.4f} child→old {child_old:.4f}")
    assert child_new < parent_new / 5
    assert child_new < child_old / 5


class TeacherBlend(diffsde.AbstractScoreTransform):
    """A throwaway plugin transform: the score averaged with a teacher run's."""

    tag = "teacher_blend"
    teacher: diffsde.FrozenModel
    weight: float = 0.5

    def __call__(self, score, x, t, condition=None):
        del condition
        return (1 - self.weight) * score(x, t) + self.weight * self.teacher(x, t)


class OffsetModel(eqx.Module):
    """A throwaway plugin model: a frozen base run's score plus a trained constant offset."""

    tag: ClassVar[str] = "frozen_offset"
    base: diffsde.FrozenModel
    offset: jax.Array

    def __init__(self, base: diffsde.FrozenModel, *, sde, key, prior=None):
        del key, prior
        self.base = base
        self.offset = jnp.zeros(sde.dim)

    def __call__(self, x, t, condition=None):
        del condition
        return self.base(x, t) + self.offset


class LineagePlugin:
    @diffsde.hookimpl
    def register_score_transforms(self, register):
        register(TeacherBlend)

    @diffsde.hookimpl
    def register_models(self, register):
        register(OffsetModel)


@pytest.fixture
def plugin():
    diffsde.register_plugin(LineagePlugin(), "lineage-test")
    yield
    diffsde.unregister_plugin("lineage-test")


def test_a_frozen_model_gives_the_parents_exact_outputs_and_takes_no_gradient(parent, plugin):
    """A component parameter annotated FrozenModel takes {run, checkpoint}: built, it returns
    the parent's sampling model's outputs exactly; jax.grad gives zero for every one of its
    parameters while the gradient with respect to x is the parent's (guidance needs it).
    Mutation: removing the stop_gradient in FrozenModel.__call__ fails the zero-gradient
    check."""
    spec = tiny_spec() + f"transforms:\n  - {{type: teacher_blend, teacher: {{run: '{parent}'}}}}\n"
    setup = diffsde.validate_text(spec)
    (blend,) = setup.transforms
    teacher = blend.teacher
    model = _sampling_model(parent)
    xs = jr.normal(jr.key(0), (16, 2))
    for t in (0.1, 0.5, 1.0):
        ours = jax.vmap(lambda x, t=t: teacher(x, t))(xs)
        np.testing.assert_array_equal(ours, jax.vmap(lambda x, t=t: model(x, t))(xs))
    assert teacher.run == parent.name and teacher.step == 40

    def total(frozen, x):
        return jnp.sum(frozen(x, 0.5))

    grads = eqx.filter_grad(total)(teacher, xs[0])
    leaves = jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert leaves and all(float(jnp.max(jnp.abs(g))) == 0.0 for g in leaves)
    dx = jax.grad(lambda x: jnp.sum(teacher(x, 0.5)))(xs[0])
    np.testing.assert_allclose(dx, jax.grad(lambda x: jnp.sum(model(x, 0.5)))(xs[0]), rtol=1e-6)
    assert float(jnp.max(jnp.abs(dx))) > 0


def test_training_leaves_a_frozen_model_out(parent, plugin, tmp_path):
    """A model holding a FrozenModel trains only its own leaves: `trainable` marks the frozen
    ones False, the checkpointed parameters are the offset alone, the base's leaves after
    training are the parent's bit for bit, and the offset moved. The run's lineage names the
    key path ``model.base``. Mutation: dropping FrozenModel from `trainable` fails the
    parameter count."""
    spec = tiny_spec("offset").replace(
        "model: {type: mlp, width: 16, depth: 1, n_frequencies: 4}",
        f"model: {{type: frozen_offset, base: {{run: '{parent}'}}}}",
    )
    setup = diffsde.validate_text(spec)
    trainer, state, _ = build_trainer(setup)
    assert len(jax.tree_util.tree_leaves(state.method.params)) == 1
    marks = jax.tree_util.tree_leaves(trainable(trainer.method.model))
    assert marks.count(True) == 1
    run = _api_run(setup, tmp_path / "runs")
    model = _sampling_model(run)
    base = jax.tree_util.tree_leaves(eqx.filter(model.base.model, eqx.is_inexact_array))
    theirs = jax.tree_util.tree_leaves(eqx.filter(_sampling_model(parent), eqx.is_inexact_array))
    assert all(np.array_equal(a, b) for a, b in zip(base, theirs, strict=True))
    assert float(jnp.max(jnp.abs(model.offset))) > 0
    (entry,) = diffsde.runs.open_run(run).lineage
    assert entry["role"] == "model.base" and entry["id"] == parent.name


def test_the_lineage_is_stored_in_the_child_and_shown_by_diffsde_runs(parent, tmp_path, capsys):
    """run.json's lineage: role, id, path, checkpoint kind and step, and the digest of the
    parent's stored spec; RunRecord.lineage and the `parents` column of `diffsde runs`. A run
    without parents has no such column. Mutation: not passing lineage to RunWriter.create
    fails it."""
    runs = parent.parent
    spec = tmp_path / "child.yaml"
    # the parent by its path: `--runs-dir` (where the child goes) is where ids are looked up
    spec.write_text(_with_init(tiny_spec("child", steps=10), str(parent)))
    assert main(["run", str(spec), "--runs-dir", str(tmp_path / "children"), "-q"]) == 0
    capsys.readouterr()
    (child,) = (tmp_path / "children").iterdir()
    head = json.loads((child / "run.json").read_text())
    parent_spec = json.loads((parent / "run.json").read_text())["spec"]
    assert head["lineage"] == [
        {
            "role": "init",
            "id": parent.name,
            "path": str(parent.resolve()),
            "checkpoint": "ema",
            "step": 40,
            "spec_digest": "sha256:" + hashlib.sha256(parent_spec.encode()).hexdigest(),
        }
    ]
    assert diffsde.runs.open_run(child).lineage == tuple(head["lineage"])
    from app.table import runs_table  # the dashboard's runs table shows it too

    frame = runs_table([diffsde.runs.open_run(child), diffsde.runs.open_run(parent)])
    assert list(frame["parents"].fillna("")) == ["", f"init←{parent.name.rsplit('-', 1)[-1]}@40"]
    assert main(["runs", "--runs-dir", str(tmp_path / "children")]) == 0
    table = capsys.readouterr().out
    assert "parents" in table and f"init←{parent.name.rsplit('-', 1)[-1]}@40" in table
    assert main(["runs", "--runs-dir", str(runs)]) == 0
    assert "parents" not in capsys.readouterr().out


def test_run_ids_in_init_are_looked_up_in_runs_dir(parent, tmp_path, capsys):
    """`diffsde run --runs-dir DIR` finds `init: {run: ID}` in DIR. Mutation: dropping the
    runs_directory(args.runs_dir) around load_spec in diffsde run fails it (the id is then
    looked up in ./runs)."""
    runs = parent.parent
    spec = tmp_path / "child.yaml"
    spec.write_text(_with_init(tiny_spec("child", steps=10), parent.name))
    before = set(runs.iterdir())
    assert main(["run", str(spec), "--runs-dir", str(runs), "-q"]) == 0, capsys.readouterr().err
    (child,) = set(runs.iterdir()) - before
    assert json.loads((child / "run.json").read_text())["lineage"][0]["id"] == parent.name


@pytest.mark.slow
def test_resuming_a_killed_child_never_modifies_its_parent(parent, tmp_path):
    """A child run killed (SIGKILL) after its first checkpoint and resumed leaves every byte
    and mtime of the parent's directory as it was; the resumed child is the uninterrupted
    one bit for bit, and after the parent is moved away the child still resumes and samples
    from its own copy. Mutation: resume validating without `stored` (reading the parent)
    fails once the parent is gone."""
    store = tmp_path / "store"
    shutil.copytree(parent, store / parent.name)
    copy = store / parent.name
    before = _tree_state(copy)
    spec = tmp_path / "child.yaml"
    spec.write_text(_with_init(tiny_spec("child", steps=40, checkpoint_every=10), copy))
    straight = tmp_path / "straight"
    assert main(["run", str(spec), "--runs-dir", str(straight), "-q"]) == 0
    env = {**os.environ, "DIFFSDE_FAULT": "kill@train#3"}
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "diffsde._cli", "run", str(spec), "--runs-dir", str(killed), "-q"]
    process = subprocess.run(cmd, env=env, capture_output=True, timeout=300)
    assert process.returncode == -9, process.stderr.decode()[-2000:]
    (child,) = killed.iterdir()
    assert diffsde.runs.open_run(child).status == "killed"
    time.sleep(0.01)
    moved = tmp_path / "elsewhere"
    copy.rename(moved)  # the parent is gone from where the child found it
    assert main(["run", "--resume", str(child), "-q"]) == 0
    resumed = diffsde.runs.open_run(child)
    reference = diffsde.runs.open_run(next(straight.iterdir()))
    assert resumed.status == "completed"
    np.testing.assert_array_equal(resumed.metrics["loss"], reference.metrics["loss"])
    np.testing.assert_array_equal(resumed.samples["samples"], reference.samples["samples"])
    assert main(["sample", str(child), "--n", "20"]) == 0
    moved.rename(copy)
    assert _tree_state(copy) == before


def test_a_child_that_failed_resumes_from_its_own_copy_of_the_parent(parent, tmp_path, monkeypatch):
    """The fast variant of the test above: a child whose disk fills after its first
    checkpoint (status failed) resumes to completion while its parent is moved away, from its
    copy ``lineage/init`` (the parent's spec and checkpoint bytes); the parent's directory,
    put back, has every byte and mtime it had. Mutation: `write_copies` skipped, or resume
    validating without `stored`, fails it."""
    from diffsde import _faults

    store = tmp_path / "store"
    shutil.copytree(parent, store / parent.name)
    copy = store / parent.name
    before = _tree_state(copy)
    setup = diffsde.validate_text(
        _with_init(tiny_spec("child", steps=30, checkpoint_every=10), copy)
    )
    monkeypatch.setattr(_faults, "_reached", {})
    monkeypatch.setenv("DIFFSDE_FAULT", "enospc@train#2")
    with pytest.raises(OSError):
        _api_run(setup, tmp_path / "runs")
    monkeypatch.delenv("DIFFSDE_FAULT")
    (child,) = (tmp_path / "runs").iterdir()
    assert diffsde.runs.open_run(child).status == "failed"
    copied = json.loads((child / "lineage" / "init" / "parent.json").read_text())
    assert copied["spec"] == json.loads((copy / "run.json").read_text())["spec"]
    assert (child / "lineage/init/checkpoint.eqx").read_bytes() == (
        copy / "checkpoint.eqx"
    ).read_bytes()
    moved = tmp_path / "elsewhere"
    copy.rename(moved)
    assert main(["run", "--resume", str(child), "-q"]) == 0
    assert diffsde.runs.open_run(child).status == "completed"
    moved.rename(copy)
    assert _tree_state(copy) == before


def test_a_grandchild_carries_its_whole_lineage(parent, tmp_path):
    """A run started from a child of the parent copies the child's own copy of the parent
    (``lineage/init/lineage/init``), so with both ancestors moved away it still resumes and
    its sampling model is the one it trained. Mutation: `write_copies` not copying the
    parent's ``lineage/`` fails it."""
    store = tmp_path / "store"
    shutil.copytree(parent, store / parent.name)
    first = store / parent.name
    child = _api_run(diffsde.validate_text(_with_init(tiny_spec("child", steps=10), first)), store)
    grandchild = _api_run(
        diffsde.validate_text(_with_init(tiny_spec("grandchild", steps=10), child)), store
    )
    nested = grandchild / "lineage" / "init" / "lineage" / "init" / "checkpoint.eqx"
    assert nested.read_bytes() == (first / "checkpoint.eqx").read_bytes()
    model = _sampling_model(grandchild)
    away = tmp_path / "away"
    away.mkdir()
    for ancestor in (first, child):
        ancestor.rename(away / ancestor.name)
    again = _sampling_model(grandchild)
    leaves = zip(jax.tree_util.tree_leaves(model), jax.tree_util.tree_leaves(again), strict=True)
    assert all(np.array_equal(a, b) for a, b in leaves)
    (entry,) = diffsde.runs.open_run(grandchild).lineage
    assert entry["id"] == child.name and entry["step"] == 10


def _issue(text: str):
    with pytest.raises(diffsde.SpecError) as err:
        diffsde.validate_text(text, "child.yaml")
    (issue,) = err.value.issues
    return issue


def test_a_parent_that_cannot_be_used_is_one_located_line_at_init_run(parent, tmp_path):
    """Missing (as an id and as a path), still training with no checkpoint, damaged, or of
    another architecture (naming the key and the leaf that differ, or the data dimension):
    each is one issue at init.run, on the line of its value. Mutation: reporting at ``init``
    instead, or omitting the differing key, fails it; so does RunRef.parent not turning the
    error into a SpecFieldError."""
    base = tiny_spec("child")
    line = base.count("\n") + 1
    with runs_directory(tmp_path / "empty"):
        issue = _issue(_with_init(base, "20990101-000000-nope-abcdef"))
    assert issue.key == "init.run" and issue.location.line == line
    assert "no run '20990101-000000-nope-abcdef' in the runs directory" in issue.message
    issue = _issue(_with_init(base, tmp_path / "no" / "such"))
    assert issue.key == "init.run" and "no run directory" in issue.message

    training = tmp_path / "training"
    writer = diffsde.runs.RunWriter.create(
        tmp_path, "training", tiny_spec(), {}, metrics=("step", "loss"), run_dir=training
    )
    try:
        issue = _issue(_with_init(base, training))
        assert issue.key == "init.run"
        assert "still training and has saved no checkpoint yet" in issue.message
    finally:
        writer.close()

    damaged = tmp_path / "damaged"
    shutil.copytree(parent, damaged)
    data = (damaged / "checkpoint.eqx").read_bytes()
    (damaged / "checkpoint.eqx").write_bytes(data[: len(data) // 2])
    issue = _issue(_with_init(base, damaged))
    assert issue.key == "init.run" and "damaged" in issue.message

    wider = base.replace("width: 16", "width: 32")
    issue = _issue(_with_init(wider, parent))
    assert issue.key == "init.run" and issue.location.line == line
    assert "model.width is 32 here and 16 in the parent" in issue.message
    assert "[32, 10] here and float32[16, 10] in the parent" in issue.message
    three = base.replace("dim: 2", "dim: 3")
    issue = _issue(_with_init(three, parent))
    assert "the data dimension is 3 here and 2 in the parent" in issue.message

    # a reference built outside a spec (a --transform option's) says so at its `run` key
    with pytest.raises(diffsde.SpecFieldError) as err:
        diffsde.RunRef(run=str(tmp_path / "no" / "such")).build()
    assert err.value.field == "run" and "no run directory" in err.value.message


def test_run_ids_resolve_in_the_runs_directory(parent, tmp_path, monkeypatch):
    """An id is a directory name of the runs directory (runs_directory(), else
    $DIFFSDE_RUNS_DIR, else ./runs) or its unique random tail; a relative path is from the
    working directory. Mutation: looking ids up in ./runs only fails it."""
    runs = parent.parent
    spec = tiny_spec("child")
    tail = parent.name.rsplit("-", 1)[-1]
    with runs_directory(runs):
        assert diffsde.validate_text(_with_init(spec, tail)).spec.init.parent.id == parent.name
    monkeypatch.setenv("DIFFSDE_RUNS_DIR", str(runs))
    assert diffsde.validate_text(_with_init(spec, parent.name)).spec.init.parent.step == 40
    monkeypatch.delenv("DIFFSDE_RUNS_DIR")
    monkeypatch.chdir(runs.parent)
    assert diffsde.validate_text(_with_init(spec, parent.name)).spec.init.parent.step == 40
    assert diffsde.validate_text(_with_init(spec, f"runs/{parent.name}")).spec.init.parent.id
    twin = runs / f"20990101-000000-twin-{tail}"
    twin.mkdir()
    try:
        issue = _issue(_with_init(spec, tail))
        assert f"'{tail}' names 2 runs" in issue.message
    finally:
        twin.rmdir()
