"""The Monitor page: progress, ETA, checkpoint and log tail computed from real runs, the page
rendered with AppTest on a finished run, and its Stop button ending a live background run as
`stopped`."""

import dataclasses
import json
import pathlib
import time

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.monitor import duration, entries, last_checkpoint, live_curves, log_tail, progress
from diffsde import jobs
from diffsde._cli import main
from diffsde.runs import RUN_FILE, open_run
from tests.tiny import tiny_spec

APP = pathlib.Path(__file__).resolve().parent.parent / "app"


def spec(name: str, steps: int) -> str:
    return tiny_spec(name, steps=steps, checkpoint_every=10)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A runs directory with one finished run (40 steps, checkpoints every 10)."""
    root = tmp_path_factory.mktemp("monitor")
    (root / "spec.yaml").write_text(spec("done", 40))
    assert main(["run", str(root / "spec.yaml"), "--runs-dir", str(root / "runs"), "-q"]) == 0
    return root / "runs"


def test_progress_checkpoint_and_curves(finished):
    (run_dir,) = [p for p in finished.iterdir() if (p / RUN_FILE).is_file()]
    record = open_run(run_dir)
    done = progress(record)
    assert (done.step, done.total, done.fraction, done.eta) == (40, 40, 1.0, 0.0)
    assert done.rate > 0 and done.elapsed == pytest.approx(record.metrics["wall_time"][-1])
    step, written = last_checkpoint(run_dir)
    assert step == 40 and written.year >= 2024
    assert last_checkpoint(run_dir.parent) is None
    frame = live_curves(record)
    assert set(frame["series"]) == {"loss", "lr", "grad_norm"} and len(frame) == 3 * 40
    # Half way, at a constant 10 steps/s: 20 steps left take 2 s.
    series = {"step": [10.0, 20.0], "wall_time": [1.0, 2.0], "loss": [1.0, 0.5]}
    half = dataclasses.replace(record, metrics={k: np.array(v) for k, v in series.items()})
    assert (progress(half).rate, progress(half).eta, progress(half).fraction) == (10.0, 2.0, 0.5)


def test_duration():
    assert [duration(s) for s in (None, float("inf"), 0, 61.4, 3725)] == [
        "?",
        "?",
        "0:00",
        "1:01",
        "1:02:05",
    ]


def test_log_tail(tmp_path):
    assert log_tail(tmp_path) is None
    lines = [f"line {i}" for i in range(100)]
    (tmp_path / jobs.LOG_FILE).write_text("\n".join(lines) + "\n[##..] 1/4\r[####] 4/4\n")
    tail = log_tail(tmp_path, lines=3).splitlines()
    assert tail == ["line 98", "line 99", "[####] 4/4"]  # only what a terminal would show
    assert log_tail(tmp_path, lines=1000, max_bytes=64).count("\n") < 10


def test_entries_live_first(finished, tmp_path):
    runs_dir = tmp_path / "runs"
    for state in ("cancelled", "queued"):
        job_dir = runs_dir / f"20260101-00000{len(state) % 10}-{state}-abc"
        job_dir.mkdir(parents=True)
        job = {"name": state, "state": state, "created": time.time()}
        (job_dir / "job.json").write_text(json.dumps(job))
    shown = entries(runs_dir)
    assert [(e.name, e.state, e.live) for e in shown] == [
        ("queued", "queued", True),
        ("cancelled", "cancelled", False),
    ]
    assert [(e.name, e.state, e.live) for e in entries(finished)] == [("done", "completed", False)]


def test_monitor_page_finished_run(finished, monkeypatch):
    monkeypatch.setenv("DIFFSDE_RUNS_DIR", str(finished))
    at = AppTest.from_file(str(APP / "views" / "monitor.py"), default_timeout=30).run()
    assert not at.exception
    assert at.title[0].value == "Monitor"
    assert "completed" in at.selectbox(key="monitor_run").format_func(at.selectbox[0].value)
    labels = {m.label: m.value for m in at.metric}
    assert labels["ETA"] == "–" and labels["last checkpoint"] == "step 40"
    assert not at.button  # nothing to stop


def test_monitor_page_stops_a_live_run(tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    job = jobs.submit(spec("live", 1_000_000), runs_dir)
    deadline = time.monotonic() + 120
    while not (job.path / RUN_FILE).is_file() or len(open_run(job.path).metrics["step"]) < 2:
        assert time.monotonic() < deadline, "the background run did not start training"
        time.sleep(0.25)
    monkeypatch.setenv("DIFFSDE_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(str(APP / "views" / "monitor.py"), default_timeout=30).run()
    assert not at.exception
    assert "running" in at.selectbox(key="monitor_run").format_func(at.selectbox[0].value)
    assert "of 1000000" in at.get("progress")[0].proto.text
    assert any("run " in c.value for c in at.code)  # the log tail shows the run's first line
    at.button(key="monitor_stop").click().run()
    assert not at.exception
    while jobs.read_job(job.path).state != "finished":
        assert time.monotonic() < deadline, "the run did not stop"
        time.sleep(0.25)
    record = open_run(job.path)
    assert record.status == "stopped" and len(record.metrics["step"]) >= 2
