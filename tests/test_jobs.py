"""Background runs (`diffsde.jobs`): submit starts a real `diffsde run` process through the
queue worker, a second job waits while the first uses the CPU, a queued job can be cancelled,
Stop ends a running job as `stopped` with its rows and checkpoint kept, and the next queued job
then runs to `completed`."""

import pathlib
import time

import pytest
import yaml

from diffsde import jobs
from diffsde._spec._validate import SpecError
from diffsde.runs import RUN_FILE, RunReadError, list_runs, open_run
from tests.tiny import tiny_spec

TIMEOUT = 120  # seconds; each job starts a fresh Python that imports and compiles JAX (~15 s)


def spec(name: str, steps: int) -> str:
    return tiny_spec(name, steps=steps, checkpoint_every=1000)


def wait_for(condition, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)
    return value


def rows(path: pathlib.Path) -> int:
    if not (path / RUN_FILE).is_file():
        return 0
    try:
        return len(open_run(path).metrics["step"])
    except RunReadError:
        return 0


def test_submit_rejects_a_bad_spec_before_making_a_run(tmp_path):
    with pytest.raises(SpecError, match=r"editor\.yaml:3:\d+ sde\.type"):
        jobs.submit(
            spec("bad", 20).replace("{type: vp}", "{type: vpp}"), tmp_path, source="editor.yaml"
        )
    with pytest.raises(SpecError, match="`diffsde run` needs this section"):
        jobs.submit(spec("partial", 20).replace("objective: {type: dsm}\n", ""), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_queue_cancel_stop_and_complete(tmp_path):
    runs_dir = tmp_path / "runs"
    long = jobs.submit(spec("long", 1_000_000), runs_dir)
    short = jobs.submit(spec("short", 20), runs_dir)
    cancelled = jobs.submit(spec("cancelled", 20), runs_dir)
    assert [j.state for j in (long, short, cancelled)] == ["queued"] * 3
    assert jobs.stop(cancelled.path) == "cancelled"
    launched = yaml.safe_load((long.path / jobs.SPEC_FILE).read_text())
    assert launched["training"]["steps"] == 1_000_000 and launched["training"]["ema_decay"] == 0.999
    assert list_runs(runs_dir) == []  # queued jobs are not runs yet, and not problems either

    wait_for(lambda: rows(long.path) >= 3, "the first job to train")
    assert jobs.worker_running(runs_dir)
    assert open_run(long.path).status == "running"
    assert jobs.read_job(short.path).state == "queued"  # one run uses the CPU at a time
    with pytest.raises(RunReadError, match="is running"):
        jobs.discard(long.path, runs_dir)

    assert jobs.stop(long.path) == "stopping"
    wait_for(lambda: jobs.read_job(long.path).state == "finished", "the stopped job to exit")
    record = open_run(long.path)
    assert record.status == "stopped", record.message
    assert record.message.startswith("signal 15 at step")
    assert len(record.metrics["step"]) >= 3 and record.checkpoint_step == record.metrics["step"][-1]
    assert "stopped:" in (long.path / jobs.LOG_FILE).read_text()

    wait_for(lambda: jobs.read_job(short.path).state == "finished", "the queued job to run")
    done = jobs.read_job(short.path)
    assert done.returncode == 0 and done.started >= jobs.read_job(long.path).finished
    assert open_run(short.path).status == "completed"
    log = (short.path / jobs.LOG_FILE).read_text()
    assert "20/20 steps" in log and "completed:" in log

    assert jobs.read_job(cancelled.path).state == "cancelled"
    assert not (cancelled.path / RUN_FILE).exists()
    assert [r.name for r in list_runs(runs_dir)] == ["long", "short"]
    wait_for(lambda: not jobs.worker_running(runs_dir), "the queue worker to exit", 10)
    for job in (cancelled, long):
        jobs.discard(job.path, runs_dir)
    assert [j.name for j in jobs.list_jobs(runs_dir)] == ["short"]


def test_resume_queues_a_killed_run_to_completion(tmp_path, monkeypatch):
    """`jobs.resume` (the dashboard's Resume) continues a run whose process was SIGKILLed (here
    by a fault point, after its checkpoint at step 10) in a queued ``diffsde run --resume``
    process; it refuses a queued, live or completed run. Mutation: `_start` ignoring
    ``job.resume`` starts `run spec.yaml --run-dir` on a directory that already holds a run,
    which fails, and the run never completes."""
    runs_dir = tmp_path / "runs"
    monkeypatch.setenv("DIFFSDE_FAULT", "kill@train#2")  # inherited by the worker and its run
    job = jobs.submit(tiny_spec("resumable", steps=40, checkpoint_every=10), runs_dir)
    with pytest.raises(RunReadError, match="already (queued|running)"):
        jobs.resume(job.path)
    wait_for(lambda: jobs.read_job(job.path).state == "finished", "the killed job to end")
    wait_for(lambda: not jobs.worker_running(runs_dir), "the queue worker to exit", 10)
    killed = open_run(job.path)
    assert killed.status == "failed" and "code -9" in killed.message
    assert killed.checkpoint_step == 10 and killed.metrics["step"][-1] == 20
    monkeypatch.delenv("DIFFSDE_FAULT")
    again = jobs.resume(job.path)
    assert again.state == "queued" and again.resume
    with pytest.raises(RunReadError, match="is (queued|running); stop it"):
        jobs.discard(job.path, runs_dir)  # the worker is about to resume it there
    wait_for(lambda: jobs.read_job(job.path).state == "finished", "the resumed job to finish")
    record = open_run(job.path)
    assert record.status == "completed", record.message
    assert record.metrics["step"].tolist() == list(range(1, 41)) and "samples" in record.samples
    assert "from step 10" in (job.path / jobs.LOG_FILE).read_text()
    with pytest.raises(RunReadError, match="nothing to resume"):
        jobs.resume(job.path)
