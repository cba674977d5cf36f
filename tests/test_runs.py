"""The run store: SWMR metrics that survive SIGKILL, atomic checkpoints, listing."""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import equinox as eqx
import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffsde
from diffsde import _runs, runs

REPO = pathlib.Path(__file__).resolve().parents[1]
SPEC = textwrap.dedent(
    """\
    name: vp-8gaussians
    seed: 0
    sde:
      type: vp
      beta_min: 0.1
      beta_max: 20.0
    data:
      type: toy
      name: eight_gaussians
    objective:
      type: dsm
    """
)
ENV = {"python": "3.11.0", "jax": "0.0.test", "device": "cpu"}
METRICS = ("step", "wall_time", "loss", "lr", "grad_norm")


def rows(start: int, n: int) -> dict[str, np.ndarray]:
    step = np.arange(start, start + n)
    return {
        "step": step,
        "wall_time": 0.5 * step,
        "loss": 1.0 / (1.0 + step),
        "lr": np.full(n, 1e-3),
        "grad_norm": np.sqrt(step + 1.0),
    }


def create(runs_dir, name="vp-8gaussians", **kwargs) -> runs.RunWriter:
    return diffsde.RunWriter.create(runs_dir, name, SPEC, ENV, metrics=METRICS, **kwargs)


def test_round_trip(tmp_path):
    samples = {"em": np.random.default_rng(0).normal(size=(7, 2)).astype(np.float32)}
    with create(tmp_path) as writer:
        assert re.fullmatch(r"\d{8}-\d{6}-vp-8gaussians-[0-9a-f]{6}", writer.id)
        assert writer.path == tmp_path / writer.id
        for start, n in [(0, 3), (3, 1), (4, 5)]:
            writer.append_metrics(rows(start, n))
        writer.set_status("running")
        writer.write_results({"mmd": 0.25, "w2": np.float32(0.5)}, samples, {"em": 100})
        writer.append_metrics(rows(9, 2))  # back in SWMR mode after the results
        assert writer._file.swmr_mode
    record = diffsde.open_run(writer.file_path)
    assert record.path == writer.path and record.id == writer.id
    assert (record.name, record.status, record.message) == ("vp-8gaussians", "completed", "")
    assert record.failed_step is None and record.checkpoint_step is None
    assert record.spec_yaml == SPEC and record.spec["sde"] == {
        "type": "vp",
        "beta_min": 0.1,
        "beta_max": 20.0,
    }
    assert record.environment == ENV
    assert record.created.tzinfo is not None and record.updated >= record.created
    expected = rows(0, 11)
    assert set(record.metrics) == set(METRICS)
    for name in METRICS:
        assert record.metrics[name].dtype == np.float64
        np.testing.assert_array_equal(record.metrics[name], expected[name])
    assert record.eval == {"mmd": 0.25, "w2": 0.5}
    np.testing.assert_array_equal(record.samples["em"], samples["em"])
    assert record.samples["em"].dtype == np.float32 and record.nfe == {"em": 100}

    row = runs.summary_row(record)
    assert row == {
        "id": record.id,
        "name": "vp-8gaussians",
        "sde": "vp",
        "objective": "dsm",
        "status": "completed",
        "steps": "10",
        "loss": "0.09091",
        "mmd": "0.25",
        "w2": "0.5",
    }
    table = runs.format_table([row, {"id": "x", "status": "running"}]).splitlines()
    assert table[0].split() == list(row) and set(table[1]) == {"-", " "}
    assert table[3].split() == ["x", "-", "-", "-", "running", "-", "-", "-", "-"]


def test_writer_validates(tmp_path):
    with pytest.raises(ValueError, match="YAML mapping"):
        diffsde.RunWriter.create(tmp_path, "x", "- a list", ENV, metrics=METRICS)
    with pytest.raises(ValueError, match="duplicates"):
        diffsde.RunWriter.create(tmp_path, "x", SPEC, ENV, metrics=("loss", "loss"))
    with create(tmp_path) as writer:
        with pytest.raises(ValueError, match=r"missing \['lr', 'grad_norm'\]"):
            writer.append_metrics(
                {k: v for k, v in rows(0, 2).items() if k not in ("lr", "grad_norm")}
            )
        with pytest.raises(ValueError, match="differ in length"):
            writer.append_metrics({**rows(0, 2), "lr": np.zeros(3)})
        # A TypeError from the runtime type checker under pytest, a ValueError without it.
        with pytest.raises((TypeError, ValueError), match="crashed"):
            writer.set_status("crashed")
        with pytest.raises(ValueError, match="one real number"):
            writer.write_results({"mmd": np.zeros(2)}, {})
    with pytest.raises(ValueError, match="closed"):
        writer.append_metrics(rows(0, 1))


def test_live_reader_follows_swmr_writer(tmp_path):
    seen = []
    with create(tmp_path) as writer:
        assert writer._file.swmr_mode
        for i in range(4):
            writer.append_metrics(rows(3 * i, 3))
            # A fresh SWMR open/close each time, as a live dashboard would do.
            with h5py.File(writer.file_path, "r", libver="latest", swmr=True) as f:
                seen.append(f["metrics/loss"].shape[0])
            record = runs.open_run(writer.path)
            assert record.status == "running"
            np.testing.assert_array_equal(record.metrics["step"], np.arange(3 * i + 3))
    assert seen == [3, 6, 9, 12]


WRITER_SCRIPT = """
import sys, time
import numpy as np
from diffsde._runs import RunWriter

writer = RunWriter.create(sys.argv[1], "killed", sys.argv[2], {"device": "cpu"},
                          metrics=("step", "loss"))
print(writer.path, flush=True)
step = 0
while True:
    writer.append_metrics({"step": np.arange(step, step + 4), "loss": np.ones(4)})
    step += 4
    time.sleep(0.002)
"""


def test_sigkilled_writer_leaves_readable_run(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "runs"), SPEC],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        run_dir = pathlib.Path(proc.stdout.readline().strip())
        assert run_dir.is_dir(), "writer subprocess did not start"
        seen = 0
        deadline = time.monotonic() + 20
        while seen < 200:
            assert time.monotonic() < deadline, f"reader saw only {seen} rows"
            seen = len(runs.open_run(run_dir).metrics["step"])
        with pytest.raises(runs.RunReadError, match=f"still being written by process {proc.pid}"):
            runs.RunWriter.reopen(run_dir, truncate_after_step=100)
        assert runs.writer_alive(runs.open_run(run_dir)) and runs.run_is_live(run_dir)
        for refused in (
            lambda: runs.delete_run(run_dir, run_dir.parent),
            lambda: runs.rename_run(run_dir, "other"),
            lambda: runs.mark_abandoned(run_dir, "stopped", "no"),
        ):
            with pytest.raises(runs.RunReadError, match=f"is running \\(process {proc.pid}\\)"):
                refused()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    record = runs.open_run(run_dir)
    assert record.status == "running" and record.name == "killed"
    assert len(record.metrics["step"]) >= seen
    np.testing.assert_array_equal(record.metrics["step"], np.arange(len(record.metrics["step"])))
    np.testing.assert_array_equal(record.metrics["loss"], 1.0)
    assert [r.id for r in runs.list_runs(run_dir.parent)] == [record.id]
    with pytest.raises(OSError, match="already open for write"):
        h5py.File(run_dir / "run.h5", "r")  # the SWMR caveat RunWriter.reopen deals with
    assert not runs.writer_alive(record) and not runs.run_is_live(run_dir)

    # A copy of the killed run: given a final status, renamed and deleted, rows kept throughout.
    elsewhere = tmp_path / "elsewhere"
    copy = shutil.copytree(run_dir, elsewhere / run_dir.name)
    assert runs.mark_abandoned(copy, "stopped", "killed by the test")
    assert not runs.mark_abandoned(copy, "failed", "already has a status")
    runs.rename_run(copy, "  renamed ")
    kept = runs.open_run(copy)
    assert (kept.status, kept.message, kept.name) == ("stopped", "killed by the test", "renamed")
    np.testing.assert_array_equal(kept.metrics["step"], record.metrics["step"])
    with pytest.raises(ValueError, match="non-blank"):
        runs.rename_run(copy, " ")
    with pytest.raises(runs.RunReadError, match="not a run directory of"):
        runs.delete_run(copy, tmp_path)
    runs.delete_run(copy, elsewhere)
    assert not copy.exists()

    # Resume: the crash flags are cleared, rows after the checkpoint step dropped.
    with runs.RunWriter.reopen(run_dir, truncate_after_step=100) as writer:
        assert runs.open_run(run_dir).status == "running"
        writer.append_metrics({"step": np.array([101, 102]), "loss": np.array([0.5, 0.25])})
    record = runs.open_run(run_dir)
    assert record.status == "completed"
    np.testing.assert_array_equal(record.metrics["step"], np.arange(103))
    np.testing.assert_array_equal(record.metrics["loss"][-3:], [1.0, 0.5, 0.25])
    with h5py.File(run_dir / "run.h5", "r") as f:  # closed cleanly: plain readers work again
        assert f["metrics/step"].shape == (103,)


def test_write_results_while_other_process_holds_file(tmp_path, monkeypatch):
    # An h5py SWMR reader elsewhere that keeps the file open (with HDF5's lock) must not
    # make the results fail.
    monkeypatch.setattr(_runs, "_LOCK_WAIT", 0.1)
    writer = create(tmp_path)
    writer.append_metrics(rows(0, 2))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import h5py, sys, time\n"
            "f = h5py.File(sys.argv[1], 'r', libver='latest', swmr=True)\n"
            "print('open', flush=True)\n"
            "sys.stdin.read()\n",
            str(writer.file_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        writer.write_results({"mmd": 1.0}, {"em": np.zeros((2, 2))})
        # The writer dropped the lock; reading in its own process still works.
        assert runs.open_run(writer.path).eval == {"mmd": 1.0}
        writer.append_metrics(rows(2, 1))
        writer.set_status("completed")
        writer.close()
    finally:
        holder.communicate("")
    record = runs.open_run(writer.path)
    assert record.eval == {"mmd": 1.0} and record.status == "completed"
    np.testing.assert_array_equal(record.metrics["step"], [0, 1, 2])


def test_exception_marks_failed(tmp_path):
    with pytest.raises(RuntimeError, match="diverged"):
        with create(tmp_path) as writer:
            writer.append_metrics(rows(0, 5))
            raise RuntimeError("loss diverged")
    record = runs.open_run(writer.path)
    assert record.status == "failed"
    assert record.message == "RuntimeError: loss diverged" and record.failed_step == 4
    assert runs.summary_row(record)["status"] == "failed@4"

    with pytest.raises(KeyboardInterrupt):
        with create(tmp_path, name="interrupted") as writer:
            raise KeyboardInterrupt
    assert runs.open_run(writer.path).status == "stopped"

    with create(tmp_path, name="explicit") as writer:
        writer.set_status("failed", "é" * 10_000, step=7)  # kept on clean exit, truncated
    record = runs.open_run(writer.path)
    assert (record.status, record.failed_step) == ("failed", 7)
    assert record.message.endswith(" [truncated]") and record.message.startswith("éé")
    assert len(record.message.encode()) <= _runs.MESSAGE_BYTES


def test_list_runs_skips_unreadable(tmp_path):
    ids = []
    for name in ("first", "second"):
        with create(tmp_path, name=name) as writer:
            writer.append_metrics(rows(0, 1))
        ids.append(writer.id)
    (tmp_path / "empty").mkdir()
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "run.h5").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "foreign").mkdir()
    with h5py.File(tmp_path / "foreign" / "run.h5", "w") as f:
        f["x"] = 1
    (tmp_path / "notes.txt").write_text("not a run")
    problems = []
    records = diffsde.list_runs(tmp_path, problems=problems)
    assert [r.id for r in records] == ids
    assert sorted(p.path.name for p in problems) == ["corrupt", "empty", "foreign"]
    reasons = {p.path.name: p.reason for p in problems}
    assert "no run.h5" in reasons["empty"] and "not a diffsde run" in reasons["foreign"]
    assert [r.id for r in diffsde.list_runs(tmp_path)] == ids
    with pytest.raises(runs.RunReadError, match="cannot open"):
        runs.open_run(tmp_path / "corrupt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        runs.list_runs(tmp_path / "missing")


class Params(eqx.Module):
    weight: jnp.ndarray
    bias: jnp.ndarray
    counts: np.ndarray
    scale: float


def params(seed: int) -> Params:
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(3, 4)).astype(np.float32)
    weight[0, 0] = np.float32(np.nan)
    return Params(
        weight=jnp.asarray(weight),
        bias=jnp.asarray(rng.normal(size=4), dtype=jnp.bfloat16),
        counts=rng.integers(0, 100, size=5).astype(np.int32),
        scale=0.5 + seed,
    )


def assert_bitwise_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if isinstance(x, float):
            assert x == y
        else:
            x, y = np.asarray(x), np.asarray(y)
            assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


def test_checkpoint_round_trip_and_errors(tmp_path):
    with create(tmp_path) as writer:
        pass
    with pytest.raises(runs.CheckpointError, match="no checkpoint"):
        diffsde.load_checkpoint(writer.path, params(0))
    diffsde.save_checkpoint(writer.path, 100, params(1))
    step, loaded = diffsde.load_checkpoint(writer.file_path, params(0))
    assert step == 100 and isinstance(loaded.weight, jnp.ndarray)
    assert_bitwise_equal(loaded, params(1))
    assert runs.open_run(writer.path).checkpoint_step == 100

    wrong = eqx.tree_at(lambda p: p.weight, params(0), jnp.zeros((4, 3), jnp.float32))
    with pytest.raises(runs.CheckpointError, match=r"weight.*changed shape from \(4, 3\)"):
        diffsde.load_checkpoint(writer.path, wrong)
    with pytest.raises(runs.CheckpointError, match="more leaves"):
        diffsde.load_checkpoint(writer.path, (params(0).weight,))
    (writer.path / "checkpoint.eqx").write_bytes(np.random.default_rng(0).bytes(100))
    with pytest.raises(runs.CheckpointError, match="corrupt"):
        diffsde.load_checkpoint(writer.path, params(0))


def test_checkpoint_crash_before_replace_keeps_previous(tmp_path, monkeypatch):
    with create(tmp_path) as writer:
        pass
    diffsde.save_checkpoint(writer.path, 10, params(1))

    def crash(src, dst):
        raise OSError("simulated crash between temp write and replace")

    with monkeypatch.context() as m:
        m.setattr(_runs.os, "replace", crash)
        with pytest.raises(OSError, match="simulated crash"):
            diffsde.save_checkpoint(writer.path, 20, params(2))
    assert sorted(p.name for p in writer.path.iterdir()) == [
        "checkpoint.eqx",
        "checkpoint.json",
        "run.h5",
    ]
    step, loaded = diffsde.load_checkpoint(writer.path, params(0))
    assert step == 10
    assert_bitwise_equal(loaded, params(1))

    # A crash between the two renames: the .eqx is new, checkpoint.json still old; the
    # step stored inside the .eqx is the one returned.
    real_replace = os.replace

    def crash_on_json(src, dst):
        if str(dst).endswith(".json"):
            raise OSError("simulated crash before json")
        real_replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr(_runs.os, "replace", crash_on_json)
        with pytest.raises(OSError, match="before json"):
            diffsde.save_checkpoint(writer.path, 30, params(3))
    assert json.loads((writer.path / "checkpoint.json").read_text())["step"] == 10
    step, loaded = diffsde.load_checkpoint(writer.path, params(0))
    assert step == 30
    assert_bitwise_equal(loaded, params(3))


def test_open_run_retries_while_file_is_briefly_locked(tmp_path):
    # What a reader meets while write_results has the file open outside SWMR mode.
    with create(tmp_path) as writer:
        writer.append_metrics(rows(0, 3))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import h5py, sys, time\n"
            "f = h5py.File(sys.argv[1], 'a', libver='latest')\n"
            "print('open', flush=True)\n"
            "time.sleep(0.3)\n"
            "f.close()\n",
            str(writer.file_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(runs.RunReadError, match="lock"):
            runs.open_run(writer.path, retries=0)
        record = runs.open_run(writer.path)
    finally:
        holder.communicate()
    assert record.status == "completed" and len(record.metrics["loss"]) == 3


def test_reopen_cleanly_closed_run(tmp_path):
    with create(tmp_path) as writer:
        writer.append_metrics(rows(0, 10))
        writer.write_results({"mmd": 1.0}, {"em": np.zeros((2, 2))}, {"em": 5})
    with runs.RunWriter.reopen(writer.path, truncate_after_step=5) as resumed:
        assert resumed.metric_names == tuple(sorted(METRICS))
        record = runs.open_run(writer.path)
        assert record.status == "running" and (record.eval, record.samples) == ({}, {})
        np.testing.assert_array_equal(record.metrics["step"], np.arange(6))
        resumed.append_metrics(rows(6, 4))
    record = runs.open_run(writer.path)
    assert record.status == "completed"
    for name in METRICS:
        np.testing.assert_array_equal(record.metrics[name], rows(0, 10)[name])
    with pytest.raises(runs.RunReadError, match="not a run directory"):
        runs.RunWriter.reopen(tmp_path / "missing", truncate_after_step=0)


def test_superblock_checksum_matches_hdf5(tmp_path):
    # The lookup3 port used to clear a killed writer's flags agrees with HDF5's own.
    with create(tmp_path) as writer:
        pass
    block = writer.file_path.read_bytes()[:48]
    assert block[8] in (2, 3) and block[9] == 8
    assert _runs._lookup3(block[:44]) == int.from_bytes(block[44:48], "little")
    assert _runs._lookup3(b"") == 0xDEADBEEF and _runs._lookup3(b"a" * 12) != 0
