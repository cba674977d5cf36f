"""The Monitor page: progress, ETA, checkpoint and log tail computed from real runs
(`diffsde.runs.summarise`, `diffsde.jobs.summaries`), the page
rendered with AppTest on a finished run, its Stop button ending a live background run as
`stopped` (the run list following it: the list is drawn in the refreshing fragment), and its
Resume button queueing that run again."""

import dataclasses
import json
import os
import pathlib
import time

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.compare import curves
from app.monitor import duration, log_tail, offered
from diffsde import jobs
from diffsde._cli import main
from diffsde.runs import list_runs, open_run, summarise
from tests.tiny import tiny_spec

APP = pathlib.Path(__file__).resolve().parent.parent / "app"


def entries(runs_dir, records, keep=None):
    return offered(jobs.summaries(runs_dir, records), keep=keep)


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
    (record,) = list_runs(finished)
    done = summarise(record)
    assert (done.step, done.steps, done.fraction, done.eta) == (40, 40, 1.0, 0.0)
    assert done.rate > 0 and done.elapsed == pytest.approx(record.metrics["wall_time"][-1])
    assert record.checkpoint_step == done.checkpoint_step == 40
    frame = curves([record])
    assert set(frame["series"]) == {"loss", "lr", "grad_norm"} and len(frame) == 3 * 40
    # Half way, at a constant 10 steps/s: 20 steps left take 2 s.
    series = {"step": [10.0, 20.0], "wall_time": [1.0, 2.0], "loss": [1.0, 0.5]}
    half = dataclasses.replace(record, metrics={k: np.array(v) for k, v in series.items()})
    half = summarise(half)
    assert (half.rate, half.eta, half.fraction) == (10.0, 2.0, 0.5)


def _rows(record, steps, wall):
    metrics = {"step": np.asarray(steps, float), "wall_time": np.asarray(wall, float)}
    return dataclasses.replace(record, metrics=metrics)


def test_rate_over_dispatches(finished):
    """The rows of one dispatch share a wall time: the rate is measured between dispatches, so
    it is known from the second one on (it was "?" for a whole run whose dispatches are longer
    than the window). Mutation: measuring over the last rows again makes this fail."""
    (record,) = list_runs(finished)
    # three dispatches of 50 steps, one per second
    three = _rows(record, range(1, 151), [1.0] * 50 + [2.0] * 50 + [3.0] * 50)
    assert summarise(three).rate == pytest.approx(50.0)
    # 40 steps in total (the run's budget) and 150 done: nothing left
    assert summarise(three).eta == 0.0
    # one dispatch so far: the time since training started
    one = _rows(record, range(1, 51), [2.0] * 50)
    assert summarise(one).rate == pytest.approx(25.0)
    # many dispatches: the window covers the latest ones only (a slow start is forgotten)
    wall = [10.0] + [10.0 + 0.1 * i for i in range(1, 60)]
    many = _rows(record, range(1, 61), wall)
    assert summarise(many).rate == pytest.approx(10.0)
    assert summarise(_rows(record, [5], [0.0])).rate is None  # no time yet: unknown, not inf


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
    shown = entries(runs_dir, [])
    assert [(e.name, e.state, e.live) for e in shown] == [
        ("queued", "queued", True),
        ("cancelled", "cancelled", False),
    ]
    assert not any(e.resumable for e in shown)
    (done,) = entries(finished, list_runs(finished))
    assert (done.name, done.state, done.live, done.resumable) == ("done", "completed", False, False)
    for state, resumable in (
        ("stopped", True),
        ("killed", True),
        ("stale", True),
        ("running", False),
    ):
        record = dataclasses.replace(done.record, status=state)
        (entry,) = entries(finished, [record])
        assert (entry.live, entry.resumable) == (state == "running", resumable), state


def test_entries_keep_the_watched_run_and_show_a_queued_resume(finished, tmp_path):
    """The run being watched stays in the list however many runs finished after it, and a run
    queued to resume reads ``queued`` (Cancel, not Stop/Kill). Mutation: dropping ``keep``
    loses the old run; using the record's status shows the queued resume as ``stopped``."""
    (done,) = list_runs(finished)
    newer = [
        dataclasses.replace(done, id=f"{done.id}-{i}", path=done.path.with_name(f"z{i:02d}"))
        for i in range(12)
    ]
    shown = entries(finished, [done, *newer], keep=done.path)
    assert len(shown) == 11 and shown[-1].path == done.path
    assert done.path not in [e.path for e in entries(finished, [done, *newer])]
    stopped = dataclasses.replace(done, status="stopped")
    job = {"name": "done", "state": "queued", "created": time.time(), "resume": True}
    (done.path / "job.json").write_text(json.dumps(job))
    try:
        (entry,) = entries(finished, [stopped])
        assert (entry.state, entry.live, entry.resumable) == ("queued", True, False)
    finally:
        (done.path / "job.json").unlink()


def test_monitor_page_finished_run(finished, monkeypatch):
    monkeypatch.setenv("DIFFSDE_RUNS_DIR", str(finished))
    at = AppTest.from_file(str(APP / "views" / "monitor.py"), default_timeout=30).run()
    assert not at.exception
    assert at.title[0].value == "Monitor"
    assert "completed" in at.selectbox(key="monitor_run").format_func(at.selectbox[0].value)
    labels = {m.label: m.value for m in at.metric}
    assert labels["ETA"] == "–" and labels["last checkpoint"] == "step 40"
    assert labels["steps/s"] != "?"
    assert not at.button  # nothing to stop, nothing to resume


def _wait(condition, what, seconds=120):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.25)


def _trained(path, rows=2):
    try:
        return len(open_run(path).metrics["step"]) >= rows
    except Exception:  # not written yet
        return False


def test_monitor_page_stops_and_resumes_a_live_run(tmp_path, monkeypatch):
    """Stop ends the live run as `stopped`; the same page (the run list is in the fragment)
    then says `stopped` and offers Resume, which queues the run again. Mutation: drawing the
    run list outside the refreshed part, or dropping the Resume button, makes this fail."""
    runs_dir = tmp_path / "runs"
    job = jobs.submit(spec("live", 1_000_000), runs_dir)
    _wait(lambda: _trained(job.path), "the background run did not start training")
    monkeypatch.setenv("DIFFSDE_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(str(APP / "views" / "monitor.py"), default_timeout=30).run()
    assert not at.exception
    assert "running" in at.selectbox(key="monitor_run").format_func(at.selectbox[0].value)
    assert "of 1000000" in at.get("progress")[0].proto.text
    assert any("run " in c.value for c in at.code)  # the log tail shows the run's first line
    assert not [b for b in at.button if b.key == "monitor_resume"]
    at.button(key="monitor_stop").click().run()
    assert not at.exception
    _wait(lambda: jobs.read_job(job.path).state == "finished", "the run did not stop")
    record = open_run(job.path)
    assert record.status == "stopped" and len(record.metrics["step"]) >= 2
    at.run()
    assert "stopped" in at.selectbox(key="monitor_run").format_func(at.selectbox[0].value)
    at.button(key="monitor_resume").click().run()
    assert not at.exception and not at.error
    assert jobs.read_job(job.path).state in ("queued", "running")
    at.run()
    assert at.button(key="monitor_stop")  # queued or running again: it can be stopped
    _wait(lambda: jobs.read_job(job.path).state == "running", "the resumed run did not start")
    jobs.stop(job.path)
    _wait(lambda: jobs.read_job(job.path).state == "finished", "the resumed run did not stop")


def _metrics(step, wall, loss):
    loss = np.array(loss)
    return {"step": np.array(step), "wall_time": np.array(wall), "loss": loss, "variance": 2 * loss}


def test_monitor_reads_only_the_watched_run_while_it_trains(tmp_path, monkeypatch):
    """While a run trains, a refresh re-reads that run alone: the run list (every run of the
    store) is read again only when a run is added or changes state. Mutation: keying the run
    list on `store_stamp` (every file) re-lists the store on each refresh and fails this;
    leaving ``metrics/`` out of `store_stamp` fails its check; charting a fixed list of
    series (loss, lr, grad_norm) fails the chart titles."""
    import app.store
    from diffsde.runs import RunWriter

    listed = []
    real = app.store.list_runs
    monkeypatch.setattr(app.store, "list_runs", lambda *a, **k: listed.append(1) or real(*a, **k))
    monkeypatch.setenv("DIFFSDE_RUNS_DIR", str(tmp_path))
    spec_text = spec("watched", 1000)
    metrics = ("step", "wall_time", "loss", "variance")  # a training method's own series
    with RunWriter.create(tmp_path, "watched", spec_text, {}, metrics=metrics) as writer:
        writer.append_metrics(_metrics([1, 2], [1.0, 1.0], [1.0, 0.9]))
        before = app.store.head_stamp(tmp_path)
        at = AppTest.from_file(str(APP / "views" / "monitor.py"), default_timeout=30).run()
        assert not at.exception and "step 2 of 1000" in at.get("progress")[0].proto.text
        # one chart per logged series: loss, then the method's own; no lr or grad_norm
        charts = [json.loads(c.proto.spec)["title"] for c in at.get("vega_lite_chart")]
        assert charts == ["loss", "variance"]
        first, every_file = len(listed), app.store.store_stamp(tmp_path)
        writer.append_metrics(_metrics([3, 4], [2.0, 2.0], [0.8, 0.7]))
        assert app.store.store_stamp(tmp_path) != every_file  # the Runs page's key sees rows
        beat = time.time() + 1  # the writer's heartbeat, touched every 2 s
        os.utime(writer.path / "heartbeat", (beat, beat))
        assert app.store.head_stamp(tmp_path) == before  # metrics grew: the list stands
        at.run()
        assert not at.exception and "step 4 of 1000" in at.get("progress")[0].proto.text
        assert len(listed) == first  # the watched run was read, the store was not listed
    assert app.store.head_stamp(tmp_path) != before  # completed: the list is read again
    at.run()
    assert len(listed) == first + 1
    assert "completed" in at.selectbox(key="monitor_run").format_func(at.selectbox[0].value)
