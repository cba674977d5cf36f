"""The run store (format 2): atomic files, append-only segments, verified results, listing."""

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffsde
from diffsde import _runs, runs

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
        writer.write_results({"mmd": 0.25, "w2": np.float32(0.5)}, samples, {"em": 100})
        writer.append_metrics(rows(9, 2))
        live = runs.open_run(writer.path)  # a reader while the writer is open
        assert live.status == "running" and len(live.metrics["step"]) == 11
    record = diffsde.open_run(writer.path / "run.json")
    assert record.path == writer.path and record.id == writer.id
    assert (record.name, record.status, record.message) == ("vp-8gaussians", "completed", "")
    assert record.failed_step is None and record.checkpoint_step is None
    assert record.spec_yaml == SPEC and record.spec["sde"] == {
        "type": "vp",
        "beta_min": 0.1,
        "beta_max": 20.0,
    }
    assert record.environment == ENV and record.problems == ()
    assert record.created.tzinfo is not None and record.updated >= record.created
    expected = rows(0, 11)
    assert set(record.metrics) == set(METRICS)
    for name in METRICS:
        assert record.metrics[name].dtype == np.float64
        np.testing.assert_array_equal(record.metrics[name], expected[name])
    assert record.eval == {"mmd": 0.25, "w2": 0.5}
    assert list(record.samples) == ["em"] and record.samples.shape("em") == (7, 2)
    np.testing.assert_array_equal(record.samples["em"], samples["em"])
    assert record.samples["em"].dtype == np.float32 and record.nfe == {"em": 100}
    assert [r.label for r in record.results] == ["run-step8"]

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


def test_no_file_is_reopened_for_writing(tmp_path):
    """Every file but the open segment is replaced by rename, never modified in place: the
    inode of each small file changes on every update, and a reader's handle keeps the old
    content. Mutation: writing status.json in place (open 'w') keeps its inode and fails this."""
    with create(tmp_path) as writer:
        status = writer.path / "status.json"
        before = os.stat(status).st_ino
        with open(status) as held:
            writer.set_status("running", "second")
            assert json.load(held)["message"] == ""  # the reader still sees a whole old file
        assert os.stat(status).st_ino != before
        assert json.loads(status.read_text())["message"] == "second"
    leftovers = [p.name for p in writer.path.rglob(".*.tmp")]
    assert leftovers == []


def test_writer_validates(tmp_path):
    with pytest.raises(ValueError, match="YAML mapping"):
        diffsde.RunWriter.create(tmp_path, "x", "- a list", ENV, metrics=METRICS)
    with pytest.raises(ValueError, match="duplicates"):
        diffsde.RunWriter.create(tmp_path, "x", SPEC, ENV, metrics=("loss", "loss"))
    for name, message in [
        ("", "no letter or digit"),
        ("!!!", "no letter or digit"),
        ("a\0b", "control characters"),
        ("two\nlines", "control characters"),
        ("line\u2028separator", "do not print"),
        ("x" * 101, "at most 100"),
    ]:
        with pytest.raises(ValueError, match=message):
            diffsde.RunWriter.create(tmp_path, name, SPEC, ENV, metrics=METRICS)
    assert list(tmp_path.iterdir()) == []  # refused before any directory was made
    with create(tmp_path) as writer:
        with pytest.raises(ValueError, match=r"missing \['lr', 'grad_norm'\]"):
            writer.append_metrics(
                {k: v for k, v in rows(0, 2).items() if k not in ("lr", "grad_norm")}
            )
        with pytest.raises(ValueError, match="differ in length"):
            writer.append_metrics({**rows(0, 2), "lr": np.zeros(3)})
        with pytest.raises(ValueError, match="finite and increasing"):
            writer.append_metrics({**rows(0, 2), "step": np.array([0.0, np.nan])})
        writer.append_metrics(rows(0, 2))
        with pytest.raises(ValueError, match="finite and increasing"):
            writer.append_metrics(rows(1, 2))  # step 1 again
        # A TypeError from the runtime type checker under pytest, a ValueError without it.
        with pytest.raises((TypeError, ValueError), match="crashed"):
            writer.set_status("crashed")
        with pytest.raises(ValueError, match="one real number"):
            writer.write_results({"mmd": np.zeros(2)}, {})
        with pytest.raises(ValueError, match="cannot name a result file"):
            runs.add_results(writer.path, "../escape", kind="sample")
    with pytest.raises(ValueError, match="closed"):
        writer.append_metrics(rows(2, 1))
    np.testing.assert_array_equal(runs.open_run(writer.path).metrics["step"], [0, 1])


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

    with pytest.raises(RuntimeError):
        with create(tmp_path, name="emoji") as writer:
            raise RuntimeError("😀" * 9000)  # 4 bytes each in UTF-8: the status stays readable
    assert runs.open_run(writer.path).message.endswith(" [truncated]")
    with create(tmp_path, name="explicit") as writer:
        writer.set_status("failed", "é" * 10_000, step=7)  # kept on clean exit, truncated
    record = runs.open_run(writer.path)
    assert (record.status, record.failed_step) == ("failed", 7)
    assert record.message.endswith(" [truncated]") and record.message.startswith("éé")
    assert len(record.message) <= _runs.MESSAGE_CHARS


def test_reopen_supersedes_rows_after_the_checkpoint_and_keeps_results(tmp_path):
    """A resumed run's new segment replaces the old rows after its ``from_step``, old files are
    not touched, and every result stays. Mutation: dropping the ``<= start`` filter in
    `_read_metrics` leaves steps 5..7 twice and fails this."""
    with create(tmp_path) as writer:
        writer.append_metrics(rows(0, 8))
        writer.write_results({"mmd": 1.0}, {"samples": np.zeros((3, 2))}, step=7)
        writer.set_status("stopped")
    runs.add_results(
        writer.path,
        "pf_ode-n=3",
        kind="sample",
        evaluation={"mmd": 2.0},
        samples={"samples": np.ones((3, 2))},
        nfe={"nfe": 9},
        step=7,
        prefixed=True,
    )
    first = (writer.path / "metrics" / "0000.f64").read_bytes()
    with runs.RunWriter.reopen(writer.path, from_step=4, metrics=METRICS) as again:
        assert runs.open_run(writer.path).status == "running"
        with pytest.raises(ValueError, match="increasing past 4"):
            again.append_metrics(rows(4, 1))
        again.append_metrics({**rows(5, 5), "loss": np.full(5, 9.0)})
    assert (writer.path / "metrics" / "0000.f64").read_bytes() == first
    record = runs.open_run(writer.path)
    np.testing.assert_array_equal(record.metrics["step"], np.arange(10))
    np.testing.assert_array_equal(record.metrics["loss"][5:], 9.0)
    assert record.status == "completed"
    assert record.eval == {"mmd": 1.0, "pf_ode-n=3.mmd": 2.0} and record.nfe == {"pf_ode-n=3": 9}
    np.testing.assert_array_equal(record.samples["pf_ode-n=3"], np.ones((3, 2)))
    with runs.RunWriter.reopen(
        writer.path, from_step=-1, metrics=METRICS
    ) as restart:  # no checkpoint: step 0
        restart.append_metrics(rows(0, 2))
    np.testing.assert_array_equal(runs.open_run(writer.path).metrics["step"], [0, 1])


def test_newer_run_results_move_older_ones_under_their_label(tmp_path):
    with create(tmp_path) as writer:
        writer.write_results({"mmd": 1.0}, {"samples": np.zeros(2)}, step=10)
        runs.add_results(
            writer.path, "likelihood-step10", kind="likelihood", evaluation={"nll": 3.0}, step=10
        )
        writer.write_results({"mmd": 0.5}, {"samples": np.ones(2)}, step=20)
    record = runs.open_run(writer.path)
    assert record.eval == {
        "run-step10.mmd": 1.0,
        "likelihood-step10.nll": 3.0,
        "mmd": 0.5,
    }
    np.testing.assert_array_equal(record.samples["samples"], np.ones(2))
    np.testing.assert_array_equal(record.samples["run-step10.samples"], np.zeros(2))


def test_dead_writer_is_killed_not_running(tmp_path):
    """A writer SIGKILLed mid-run is shown as ``killed`` (same host: its pid is gone) and one
    on another host whose heartbeat stopped as ``stale``; a live one stays ``running``.
    Mutation: `_writer_state` returning the stored state unchanged fails the first assert."""
    code = textwrap.dedent(
        f"""\
        import sys, time, numpy as np
        from diffsde import runs
        w = runs.RunWriter.create(sys.argv[1], "victim", {SPEC!r}, {ENV!r}, metrics=("step",))
        w.append_metrics({{"step": np.arange(3)}})
        print(w.path, flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    run_dir = child.stdout.readline().strip()
    try:
        assert runs.open_run(run_dir).status == "running" and runs.run_is_live(run_dir)
        assert runs.run_state(run_dir) == "running"
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    record = runs.open_run(run_dir)
    assert record.status == "killed" and not runs.run_is_live(run_dir)
    assert runs.run_state(run_dir) == "killed" and runs.run_state(tmp_path) is None
    np.testing.assert_array_equal(record.metrics["step"], [0, 1, 2])
    assert runs.mark_abandoned(run_dir, "stopped", "killed by test")
    assert runs.open_run(run_dir).status == "stopped"

    status = {"state": "running", "host": "elsewhere", "pid": 1, "updated": time.time() - 600}
    assert _runs._writer_state(status, time.time() - 600) == "stale"
    assert _runs._writer_state(status, time.time()) == "running"  # its heartbeat is fresh
    reused = {**status, "host": socket.gethostname(), "pid": os.getpid() + 0}
    reused["pid"] = os.getppid()  # alive, but not the process that wrote the run
    reused["process_start"] = "not-its-start-time"
    assert _runs._writer_state(reused, time.time()) == "killed"


def test_list_runs_skips_damaged_runs_in_bounded_time(tmp_path):
    """Truncated, empty, random, directory-instead-of-file, symlink-out-of-store, NaN-row and
    format-1 entries: the listing lists the good runs and one problem per bad entry, fast."""
    ids = []
    for name in ("first", "second"):
        with create(tmp_path, name=name) as writer:
            writer.append_metrics(rows(0, 2))
        ids.append(writer.id)

    def damaged(name: str):
        with create(tmp_path, name="bad", run_dir=tmp_path / name) as w:
            w.append_metrics(rows(0, 3))
        return w.path

    (damaged("truncated") / "run.json").write_bytes(
        (tmp_path / ids[0] / "run.json").read_bytes()[:40]
    )
    (damaged("zero") / "run.json").write_bytes(b"")
    (damaged("random") / "status.json").write_bytes(np.random.default_rng(0).bytes(4096))
    d = damaged("dir-run-json")
    (d / "run.json").unlink()
    (d / "run.json").mkdir()
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (tmp_path / "escape").symlink_to(outside)
    (damaged("link-file") / "status.json").unlink()
    (tmp_path / "link-file" / "status.json").symlink_to("/etc/hostname")
    nan_rows = damaged("nan-rows")
    with open(nan_rows / "metrics" / "0000.f64", "ab") as f:
        f.write(np.full(5, np.nan).tobytes() + b"\x01\x02\x03")  # a NaN row and a torn one
    (tmp_path / "loop").symlink_to("loop")
    (damaged("metrics-file") / "metrics" / "0000.f64").unlink()
    for child in (tmp_path / "metrics-file" / "metrics").iterdir():
        child.unlink()
    (tmp_path / "metrics-file" / "metrics").rmdir()
    (tmp_path / "metrics-file" / "metrics").write_text("not a directory")
    bad_pid = damaged("bad-pid")
    status = json.loads((bad_pid / "status.json").read_text())
    (bad_pid / "status.json").write_text(json.dumps({**status, "pid": None, "updated": "x"}))
    linked = damaged("linked-results")
    (linked / "results").symlink_to(outside)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "run.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not a run")
    problems = []
    start = time.perf_counter()
    records = diffsde.list_runs(tmp_path, problems=problems)
    assert time.perf_counter() - start < 5.0
    by_id = {r.id: r for r in records}
    assert [r.id for r in records][:2] == ids and set(by_id) == {*ids, "metrics-file", "nan-rows"}
    assert by_id["metrics-file"].metrics == {}  # a file where the segments go: no rows, no crash
    nan_record = by_id["nan-rows"]
    np.testing.assert_array_equal(nan_record.metrics["step"], [0, 1, 2])
    assert nan_record.problems == ("1 damaged metric rows (non-finite or repeated step) dropped",)
    runs.summary_row(nan_record)  # no NaN reaches int()
    reasons = {p.path.name: p.reason for p in problems}
    assert sorted(reasons) == sorted(
        [
            *("truncated", "zero", "random", "dir-run-json", "escape", "link-file", "old"),
            *("empty", "loop", "bad-pid", "linked-results"),
        ]
    )
    assert "cannot be followed" in reasons["loop"]
    assert "invalid 'updated', 'pid'" in reasons["bad-pid"]
    assert "symbolic link" in reasons["linked-results"]
    assert "not JSON" in reasons["truncated"] and "is empty" in reasons["zero"]
    assert "not a regular file" in reasons["dir-run-json"]
    assert "outside the store" in reasons["escape"] and "symbolic link" in reasons["link-file"]
    assert "runs --upgrade" in reasons["old"] and "no run.json" in reasons["empty"]
    assert all("\n" not in r for r in reasons.values())
    with pytest.raises(FileNotFoundError, match="does not exist"):
        runs.list_runs(tmp_path / "missing")


def test_damaged_result_file_is_refused_not_read(tmp_path):
    """A results file cut short or altered is refused by its size or checksum before HDF5 opens
    it. Mutation: skipping the checksum comparison lets the flipped byte through."""
    with create(tmp_path) as writer:
        writer.write_results({}, {"samples": np.arange(1000.0)}, step=0)
    data = next((writer.path / "results").glob("*.h5"))
    content = bytearray(data.read_bytes())
    data.write_bytes(bytes(content[: len(content) // 2]))
    with pytest.raises(runs.RunReadError, match="damaged"):
        runs.open_run(writer.path).samples["samples"]
    content[-100] ^= 0xFF
    data.write_bytes(bytes(content))
    with pytest.raises(runs.RunReadError, match="checksum"):
        runs.open_run(writer.path).samples["samples"]


def test_rename_checks_the_name_first(tmp_path):
    """``rename_run(run, "x\\0y")`` once removed the old name and then failed; now the name is
    checked before anything is written and the run stays readable."""
    with create(tmp_path) as writer:
        pass
    with pytest.raises(ValueError, match="control characters"):
        runs.rename_run(writer.path, "x\0y")
    assert runs.open_run(writer.path).name == "vp-8gaussians"
    runs.rename_run(writer.path, "  better name ")
    assert runs.open_run(writer.path).name == "better name"


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
        runs.load_checkpoint(writer.path, params(0))
    runs.save_checkpoint(writer.path, 5, params(0))
    runs.save_checkpoint(writer.path, 10, params(1))
    step, loaded = runs.load_checkpoint(writer.path, params(7))
    assert step == 10 and runs.open_run(writer.path).checkpoint_step == 10
    assert_bitwise_equal(loaded, params(1))
    with pytest.raises(runs.CheckpointError, match="shape"):
        runs.load_checkpoint(writer.path, eqx.tree_at(lambda p: p.weight, params(0), jnp.zeros(2)))
    with pytest.raises(ValueError, match="non-negative"):
        runs.save_checkpoint(writer.path, -1, params(0))


def test_a_summary_cannot_point_outside_its_run(tmp_path):
    """A result summary whose ``file`` names a path elsewhere is refused, not followed.
    Mutation: joining ``summary["file"]`` unchecked (as before) reads /etc/hostname."""
    with create(tmp_path) as writer:
        writer.write_results({}, {"samples": np.zeros(3)}, step=0)
    (summary,) = (writer.path / "results").glob("*.json")
    data = json.loads(summary.read_text())
    for name in ("/etc/hostname", "../run.json", ".."):
        summary.write_text(json.dumps({**data, "file": name}))
        with pytest.raises(runs.RunReadError, match="names no valid data file"):
            runs.open_run(writer.path).samples["samples"]


def test_one_writer_at_a_time(tmp_path):
    """While a writer holds a run, a second writer (a resume from a shell while the dashboard
    resumes it too) is refused before it writes anything. Mutation: `_claim` not taking the
    flock lets the second reopen through."""
    with create(tmp_path) as writer:
        writer.append_metrics(rows(1, 2))
        writer.set_status("stopped")
    with runs.RunWriter.reopen(writer.path, from_step=2, metrics=METRICS):
        status = (writer.path / "status.json").read_bytes()
        record = runs.open_run(writer.path)
        assert record.status == "running"
        with pytest.raises(runs.RunBusyError, match="is running"):
            runs.RunWriter.reopen(writer.path, from_step=2, metrics=METRICS)
        # Two resumes that both read the run before either wrote its status: the lock decides.
        with pytest.raises(runs.RunBusyError, match="being written by another process"):
            _runs._claim(writer.path)
        assert not runs.mark_abandoned(writer.path, "stopped", "no: it is alive")
        assert (writer.path / "status.json").read_bytes() == status
    os.close(_runs._claim(writer.path))  # released with the writer


def test_a_replaced_result_is_read_from_its_new_file(tmp_path):
    """A record read before a result was recomputed under the same label still loads it."""
    with create(tmp_path) as writer:
        runs.add_results(writer.path, "lik", kind="likelihood", samples={"x": np.zeros(2)})
    record = runs.open_run(writer.path)
    runs.add_results(writer.path, "lik", kind="likelihood", samples={"x": np.ones(2)})
    assert len(list((writer.path / "results").glob("lik.*.h5"))) == 1  # the old file is gone
    np.testing.assert_array_equal(record.samples["x"], np.ones(2))


def test_summarise(tmp_path):
    """The one summary every listing shows: progress against ``training.steps``, the rate over
    dispatches and the ETA at it, the run's own results apart from labelled sets, the spec's
    types, the label. Mutation: taking the ETA from ``step`` instead of the steps left (or
    counting ``label.metric`` among the run's own results) fails this."""
    spec = SPEC + "training: {steps: 100}\n"
    with diffsde.RunWriter.create(tmp_path, "sum", spec, ENV, metrics=METRICS) as writer:
        # two dispatches of 10 steps, 2 s apart: 5 steps/s, 80 steps left take 16 s
        writer.append_metrics({**rows(1, 20), "wall_time": np.repeat([1.0, 3.0], 10)})
        writer.write_results({"mmd": 0.25}, {}, {"em": 100})
        runs.add_results(writer.path, "pf", kind="sample", evaluation={"mmd": 0.5}, prefixed=True)
        live = runs.summarise(runs.open_run(writer.path))
    assert (live.state, live.live, live.step, live.steps, live.fraction) == (
        "running",
        True,
        20,
        100,
        0.2,
    )
    assert live.rate == pytest.approx(5.0) and live.eta == pytest.approx(16.0)
    assert live.elapsed == 3.0 and live.loss == pytest.approx(1 / 21)
    assert live.eval == {"mmd": 0.25} and live.sample_eval == {"pf.mmd": 0.5}
    assert live.nfe == {"em": 100} and live.seed == 0
    assert live.types == {"sde": "vp", "data": "toy", "objective": "dsm"}
    assert live.label == f"sum · seed 0 · {live.short_id}" and writer.id.endswith(live.short_id)
    done = runs.summarise(runs.open_run(writer.path))
    assert (done.state, done.live, done.resumable) == ("completed", False, False)
    assert runs.summary_row(done) == runs.summary_row(done.record)


def test_scan_store_is_the_one_walk(tmp_path):
    """Runs, queued jobs, format-1 runs and in-store links are entries (by name); hidden names,
    plain files and links out of the store are not, the latter a problem each. Mutation:
    following a link out of the store fails this."""
    with create(tmp_path, name="a") as writer:
        pass
    (tmp_path / "b-job").mkdir()
    (tmp_path / "b-job" / "job.json").write_text("{}")
    (tmp_path / "c-old").mkdir()
    (tmp_path / "c-old" / "run.h5").write_bytes(b"")
    (tmp_path / "d-link").symlink_to(writer.path)
    (tmp_path / ".queue.lock").write_text("")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "e-out").symlink_to(tmp_path.parent)
    problems = []
    found = runs.scan_store(tmp_path, problems=problems)
    flags = {e.path.name: (e.run, e.job, e.legacy, e.link) for e in found}
    assert flags == {
        writer.id: (True, False, False, False),
        "b-job": (False, True, False, False),
        "c-old": (False, False, True, False),
        "d-link": (True, False, False, True),
    }
    assert [p.path.name for p in problems] == ["e-out"]
    assert "outside the store" in problems[0].reason
    with pytest.raises(FileNotFoundError, match="does not exist"):
        runs.scan_store(tmp_path / "missing")


def test_metric_columns_are_bounded_by_what_a_segment_holds(tmp_path):
    """A run logs at most `MAX_COLUMNS` series, so that one segment of the spec's most steps
    stays under the readers' segment limit. Mutation: dropping the check lets 27 through."""
    assert runs.MAX_COLUMNS * 8 * _runs.SEGMENT_STEPS <= _runs.MAX_SEGMENT_BYTES
    assert runs.MAX_COLUMNS == 26
    many = ("step", "wall_time", *(f"m{i}" for i in range(24)))
    with diffsde.RunWriter.create(tmp_path, "wide", SPEC, ENV, metrics=many):
        pass
    with pytest.raises(ValueError, match="at most 26"):
        diffsde.RunWriter.create(tmp_path, "wider", SPEC, ENV, metrics=(*many, "one_more"))
