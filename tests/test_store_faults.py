"""Real processes killed (SIGKILL) or out of disk at every moment of a run, then resumed.

Each fault is injected at a named point (`diffsde._faults`, ``DIFFSDE_FAULT=ACTION@POINT#N``)
in a real ``diffsde run`` subprocess, so the kill is a real SIGKILL and nothing after it runs;
`diffsde run --resume` must then finish the run with metric rows, evaluation and samples equal
bit for bit to an uninterrupted run's. The tmpfs test fills a real, small file system while a
run trains (as root; skipped otherwise).
"""

import contextlib
import os
import pathlib
import shutil
import subprocess
import time

import numpy as np
import pytest
from tiny import tiny_spec

from diffsde import runs
from diffsde._jobs import CLI

TIMEOUT = 300


def diffsde(*args, fault: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("DIFFSDE_FAULT", None)
    if fault:
        env["DIFFSDE_FAULT"] = fault
    result = subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
    )
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def only_run(runs_dir: pathlib.Path) -> pathlib.Path:
    (run,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    return run


def start_run(spec: pathlib.Path, runs_dir: pathlib.Path, fault: str | None = None):
    return diffsde("run", str(spec), "--runs-dir", str(runs_dir), "-q", fault=fault, check=False)


def assert_same_run(run: pathlib.Path, reference: pathlib.Path) -> None:
    """Metric rows (all but wall time), evaluation, NFE and every array equal bit for bit."""
    a, b = runs.open_run(run), runs.open_run(reference)
    assert a.status == b.status == "completed", a.message
    assert set(a.metrics) == set(b.metrics)
    for name in a.metrics:
        if name != "wall_time":
            assert a.metrics[name].tobytes() == b.metrics[name].tobytes(), name
    assert a.eval == b.eval and a.nfe == b.nfe and a.problems == ()
    assert set(a.samples) == set(b.samples) and len(a.samples) >= 2
    for name in a.samples:
        assert a.samples[name].tobytes() == b.samples[name].tobytes(), name


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(tiny_spec("faults", steps=30))  # checkpoints at 10, 20, 30
    return path


@pytest.fixture(scope="module")
def reference(spec, tmp_path_factory) -> pathlib.Path:
    runs_dir = tmp_path_factory.mktemp("reference")
    assert start_run(spec, runs_dir).returncode == 0
    return only_run(runs_dir)


def kill_and_resume(spec, reference, tmp_path, fault: str, expect_checkpoint: int | None):
    killed = start_run(spec, tmp_path, fault=fault)
    assert killed.returncode == -9, (killed.returncode, killed.stderr[-2000:])
    run = only_run(tmp_path)
    record = runs.open_run(run)
    assert record.status == "killed" and record.checkpoint_step == expect_checkpoint
    listing = diffsde("runs", "--runs-dir", str(tmp_path))
    assert " killed" in listing.stdout
    # A reader holding the run's files open does not block the resume.
    with open(run / "status.json") as held_status, open(run / "run.json") as held_head:
        resumed = diffsde("run", "--resume", str(run))
        del held_status, held_head
    if expect_checkpoint is None:
        assert "from step 0: it saved no checkpoint" in resumed.stderr
    assert_same_run(run, reference)
    return run


def test_kill_during_training_then_resume_equals_uninterrupted(spec, reference, tmp_path):
    """SIGKILL after the second dispatch's rows (checkpoint at 10 kept, rows 10-19 logged past
    it): resume continues from step 10 and ends equal to the uninterrupted run. Mutation:
    `RunWriter.reopen` with ``from_step`` one dispatch later keeps rows 10-19 twice."""
    kill_and_resume(spec, reference, tmp_path, "kill@train#2", expect_checkpoint=10)


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault, checkpoint",
    [
        ("kill@train#1", None),  # before the first checkpoint: restart from step 0
        ("kill@checkpoint#2", 10),  # inside the second checkpoint's write
        ("kill@sample", 30),  # after training, while sampling
        ("kill@results", 30),  # between a result's arrays and its summary
        ("kill@status#2", 30),  # replacing the status with `completed`
    ],
)
def test_kill_at_every_moment_then_resume(spec, reference, tmp_path, fault, checkpoint):
    run = kill_and_resume(spec, reference, tmp_path, fault, expect_checkpoint=checkpoint)
    assert not list(run.rglob(".*.tmp"))


@pytest.mark.parametrize(
    "fault, kept_rows",
    [
        ("enospc@metrics#2", 10),
        ("enospc@checkpoint#2", 20),
        ("enospc@results", 30),
        ("enospc@status#2", 30),  # the final `completed` status: the reserve makes room
    ],
)
def test_disk_full_fails_the_run_and_keeps_everything(spec, reference, tmp_path, fault, kept_rows):
    """An injected ENOSPC ends the run ``failed`` with "disk full" and what was kept, no
    damaged row, a one-line error; resume then completes it exactly. Mutation: not cutting a
    failed append back to whole rows (`_Segment.append`) leaves a torn row and fails
    ``problems == ()``; removing the `_disk_full` branch leaves the message without "disk full"."""
    failed = start_run(spec, tmp_path, fault=fault)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert "disk full" in failed.stderr.splitlines()[-1]
    run = only_run(tmp_path)
    record = runs.open_run(run)
    assert record.status == "failed" and record.message.startswith("disk full"), record.message
    assert "are kept" in record.message and "--resume" in record.message
    assert len(record.metrics["step"]) == kept_rows and record.problems == ()
    np.testing.assert_array_equal(record.metrics["step"], np.arange(1, kept_rows + 1))
    diffsde("run", "--resume", str(run))
    assert_same_run(run, reference)


def test_eval_and_sample_on_a_full_disk_change_nothing(reference, tmp_path):
    run = pathlib.Path(shutil.copytree(reference, tmp_path / reference.name))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "heartbeat"}
    for command in (["eval", str(run)], ["sample", str(run), "--n", "50"]):
        result = diffsde(*command, fault="enospc@results", check=False)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stderr.strip().count("\n") == 0 and "disk full" in result.stderr
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "heartbeat"}
    assert after == before


def test_sample_while_training_keeps_its_work(spec, tmp_path):
    """`diffsde sample` on a run that is still training uses its latest checkpoint and stores
    the result, which the trainer, stopped later, keeps; a resume meanwhile is refused."""
    slow = tmp_path / "slow.yaml"
    slow.write_text(tiny_spec("long", steps=200_000, checkpoint_every=10))
    env = dict(os.environ)
    env.pop("DIFFSDE_FAULT", None)
    trainer = subprocess.Popen(
        [*CLI, "run", str(slow), "--runs-dir", str(tmp_path / "r")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            found = list((tmp_path / "r").glob("*/checkpoint.json"))
            if found:
                break
            time.sleep(0.2)
        run = found[0].parent
        sampled = diffsde("sample", str(run), "--n", "50")
        assert "still training: using its checkpoint at step" in sampled.stderr
        assert runs.open_run(run).status == "running"
        resumed = diffsde("run", "--resume", str(run), check=False)
        assert resumed.returncode == 1 and "stop it before you resume it" in resumed.stderr
    finally:
        trainer.terminate()
        trainer.wait(TIMEOUT)
    record = runs.open_run(run)
    assert record.status == "stopped"
    (label,) = [r.label for r in record.results if r.kind == "sample"]
    assert record.samples[label].shape == (50, 2) and f"{label}.sliced_w2" in record.eval


@pytest.fixture
def tmpfs(tmp_path):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)])
    if done.returncode != 0:
        pytest.skip("this machine cannot mount a tmpfs")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: pathlib.Path) -> pathlib.Path:
    """Write zeros into ``directory/filler`` until the file system is full."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (64 << 10, 512):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, bytes(size))
    finally:
        os.close(fd)
    return filler


@pytest.mark.slow
def test_real_full_disk_during_training(tmpfs, tmp_path):
    """A 2 MiB tmpfs filled while the run trains: the run ends ``failed`` / disk full with
    every logged row finite and increasing and its checkpoint loadable, `diffsde runs` still
    lists it, and after space is freed the resume completes."""
    spec = tmp_path / "long.yaml"
    spec.write_text(tiny_spec("full", steps=400, checkpoint_every=10))
    env = dict(os.environ)
    env.pop("DIFFSDE_FAULT", None)
    trainer = subprocess.Popen(
        [*CLI, "run", str(spec), "--runs-dir", str(tmpfs), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and not list(tmpfs.glob("*/checkpoint.json")):
        time.sleep(0.1)
    filler = fill(tmpfs)
    _, err = trainer.communicate(timeout=TIMEOUT)
    assert trainer.returncode == 1 and "Traceback" not in err, err[-3000:]
    run = only_run(tmpfs)
    record = runs.open_run(run)
    assert record.status == "failed" and record.message.startswith("disk full"), record.message
    steps = record.metrics["step"]
    assert len(steps) >= 10 and np.all(np.diff(steps) == 1) and record.problems == ()
    assert np.all(np.isfinite(record.metrics["loss"]))
    assert record.checkpoint_step is not None and record.checkpoint_step <= steps[-1]
    assert "failed" in diffsde("runs", "--runs-dir", str(tmpfs)).stdout
    filler.unlink()
    diffsde("run", "--resume", str(run))
    record = runs.open_run(run)
    assert record.status == "completed" and record.metrics["step"][-1] == 400


def test_resume_of_a_completed_run_keeps_its_likelihood(reference, tmp_path):
    """`--resume` of a completed run once deleted its likelihood results; now it has nothing to
    do and says so, and every result stays."""
    run = pathlib.Path(shutil.copytree(reference, tmp_path / reference.name))
    diffsde("eval", str(run), "--likelihood", "--n", "16")
    before = runs.open_run(run)
    assert "nll" in before.eval and "log_likelihood" in before.samples
    resumed = diffsde("run", "--resume", str(run))
    assert "nothing to resume" in resumed.stderr
    after = runs.open_run(run)
    assert after.eval == before.eval and set(after.samples) == set(before.samples)
