"""Runs in the background: submit a spec, queue it while the CPUs are busy, stop it.

A job is a run directory made before its process starts (`diffsde.runs.new_run_dir`), holding

- ``spec.yaml``: the spec as validated at submission (resolved: defaults filled in, paths
  absolute);
- ``job.json``: ``state`` (``queued`` → ``running`` → ``finished``, or ``cancelled`` while
  queued), times, the process id, its exit code, when a stop was asked for;
- ``log.txt``: everything the ``diffsde run`` process writes to stdout and stderr;

and, once the process has started, the usual run files (``run.json``, ``status.json``, metric
segments, checkpoint, results). `resume` queues a run that ended (stopped, failed, killed) to
continue from its checkpoint: the same directory gets a queued ``job.json`` whose process is
``diffsde run --resume DIR``.

One queue worker per runs directory (a background process running `work`, holding an exclusive
``flock`` on ``RUNS_DIR/.queue.lock``) starts queued jobs oldest first, each as
``diffsde run spec.yaml --run-dir DIR`` in a session of its own (so in its own process group),
whenever fewer than ``slots`` runs are using this machine: runs of this host whose writer is
alive, whether the worker started them or someone did from a shell. It exits when the queue is
empty and its runs have ended; `submit` starts one when none holds the lock. Neither the worker
nor its runs are children of the dashboard's session, so closing the browser or stopping the
dashboard leaves them running.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from ._runs import (
    JOB_FILE,
    RUN_FILE,
    PathLike,
    RunReadError,
    RunRecord,
    RunSummary,
    delete_run,
    mark_abandoned,
    new_run_dir,
    open_run,
    pid_alive,
    run_is_live,
    scan_store,
    summarise,
    write_json,
    writer_alive,
)

SPEC_FILE = "spec.yaml"
LOG_FILE = "log.txt"
QUEUE_LOCK = ".queue.lock"  # held by the one queue worker of a runs directory
STATE_LOCK = ".queue.state.lock"  # held briefly around every job.json read-modify-write
WORKER_LOG = ".queue.log"
SLOTS_VARIABLE = "DIFFSDE_RUN_SLOTS"
# The ``diffsde`` command in a child process: ``python -m diffsde._cli`` would warn that the
# module was imported twice (``import diffsde`` imports its CLI), in every run's log.
CLI = (sys.executable, "-c", "import sys; from diffsde.cli import main; sys.exit(main())")

JobState = Literal["queued", "running", "finished", "cancelled"]


@dataclasses.dataclass(frozen=True)
class Job:
    """One submitted run, as its ``job.json`` says."""

    path: pathlib.Path
    name: str
    state: JobState
    created: float
    started: float | None = None
    finished: float | None = None
    pid: int | None = None
    returncode: int | None = None
    stop_requested: float | None = None
    resume: bool = False  # the process continues the run in ``path`` (`diffsde run --resume`)

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def log(self) -> pathlib.Path:
        return self.path / LOG_FILE

    @property
    def spec_file(self) -> pathlib.Path:
        return self.path / SPEC_FILE


def default_slots() -> int:
    """How many runs may use this machine at once: ``$DIFFSDE_RUN_SLOTS``, default 1."""
    value = os.environ.get(SLOTS_VARIABLE, "1")
    try:
        slots = int(value)
    except ValueError:
        slots = 0
    if slots < 1:
        raise ValueError(f"{SLOTS_VARIABLE}={value!r}: give a whole number of runs, 1 or more.")
    return slots


# -- job.json ----------------------------------------------------------------------------------


def read_job(run_dir: PathLike) -> Job:
    """The job in ``run_dir``; `RunReadError` if it has no readable ``job.json``."""
    run_dir = pathlib.Path(run_dir)
    try:
        data = json.loads((run_dir / JOB_FILE).read_text())
        fields = {f.name for f in dataclasses.fields(Job)} - {"path"}
        return Job(path=run_dir, **{k: v for k, v in data.items() if k in fields})
    except (OSError, ValueError, TypeError) as e:
        raise RunReadError(f"{run_dir / JOB_FILE} is not a readable job file: {e}") from e


def _write_job(job: Job) -> None:
    data = {k: v for k, v in dataclasses.asdict(job).items() if k != "path"}
    write_json(job.path / JOB_FILE, data)


@contextlib.contextmanager
def _locked(path: pathlib.Path, *, blocking: bool = True) -> Iterator[bool]:
    """An exclusive ``flock`` on ``path`` for the block; yields False if ``blocking`` is off and
    another process holds it."""
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def list_jobs(runs_dir: PathLike) -> list[Job]:
    """Every job submitted to ``runs_dir``, oldest first (unreadable ``job.json`` skipped)."""
    if not pathlib.Path(runs_dir).is_dir():
        return []
    jobs = []
    for entry in scan_store(runs_dir):
        if entry.job:
            with contextlib.suppress(RunReadError):
                jobs.append(read_job(entry.path))
    return sorted(jobs, key=lambda job: (job.created, job.id))


# -- submitting and stopping -------------------------------------------------------------------


def submit(
    spec_text: str,
    runs_dir: PathLike,
    *,
    source: str = "<dashboard>",
    base_dir: PathLike | None = None,
) -> Job:
    """Validate ``spec_text`` (raising `SpecError` with ``source`` as its file name; relative
    data paths resolved against ``base_dir``, by default the working directory), make its run
    directory in ``runs_dir`` and queue it; the queue worker starts it when a slot is free.

    The job's ``spec.yaml`` is the resolved spec (every default filled in, paths absolute), so
    the run does exactly what was validated here wherever its directory lies."""
    from ._run import require_runnable
    from ._spec._validate import validate_text

    setup = validate_text(spec_text, source, base_dir=base_dir)
    require_runnable(setup)
    runs_dir = pathlib.Path(runs_dir)
    run_dir = new_run_dir(runs_dir, setup.spec.name)
    (run_dir / SPEC_FILE).write_text(setup.resolved_yaml())
    (run_dir / LOG_FILE).touch()
    job = Job(path=run_dir, name=setup.spec.name, state="queued", created=time.time())
    _write_job(job)
    ensure_worker(runs_dir)
    return job


def resume(run_dir: PathLike) -> Job:
    """Queue the run in ``run_dir`` to continue from its last checkpoint (from step 0 if it saved
    none) as ``diffsde run --resume``; refused (`RunReadError`) while it is queued or its writer
    is alive, and for a completed run (nothing to resume)."""
    run_dir = pathlib.Path(run_dir)
    runs_dir = run_dir.resolve().parent
    with _locked(runs_dir / STATE_LOCK):
        if (run_dir / JOB_FILE).is_file() and read_job(run_dir).state in ("queued", "running"):
            raise RunReadError(f"{run_dir} is already {read_job(run_dir).state}.")
        record = open_run(run_dir)
        if record.status == "running":
            raise RunReadError(
                f"{run_dir} is {record.status} (process {record.pid}); stop it before resuming."
            )
        if record.status == "completed":
            raise RunReadError(f"{run_dir} is completed; there is nothing to resume.")
        job = Job(path=run_dir, name=record.name, state="queued", created=time.time(), resume=True)
        _write_job(job)
    (run_dir / LOG_FILE).touch()
    ensure_worker(runs_dir)
    return job


def stop(run_dir: PathLike, *, kill: bool = False) -> str:
    """Stop the run in ``run_dir``: a queued job is cancelled; a running one gets SIGTERM (the
    run checkpoints and ends as `stopped` after its current dispatch), or SIGKILL with ``kill``
    (the queue worker then marks it `stopped`, keeping every row written so far). Works for runs
    started from a shell too. Returns what happened: cancelled, stopping, or not running."""
    run_dir = pathlib.Path(run_dir)
    sig = signal.SIGKILL if kill else signal.SIGTERM
    if (run_dir / JOB_FILE).is_file():
        with _locked(run_dir.parent / STATE_LOCK):
            job = read_job(run_dir)
            if job.state == "queued":
                _write_job(dataclasses.replace(job, state="cancelled", finished=time.time()))
                return "cancelled"
            if job.state != "running" or job.pid is None:
                return "not running"
            _write_job(dataclasses.replace(job, stop_requested=job.stop_requested or time.time()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job.pid, sig)  # its own session: the group id is its pid
        return "stopping"
    record = open_run(run_dir)
    if not writer_alive(record):
        return "not running"
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, sig)
    return "stopping"


def discard(run_dir: PathLike, runs_dir: PathLike) -> None:
    """Delete a run or a job that never ran (cancelled, or failed before its run started) from
    ``runs_dir``; refused while it is queued (to start or to resume) or running."""
    run_dir = pathlib.Path(run_dir)
    has_run = (run_dir / RUN_FILE).is_file()
    try:  # also a run queued to resume: the worker would start it in a deleted directory
        state = read_job(run_dir).state
    except RunReadError:
        if not has_run:
            raise
        state = None  # a shell-started run, or an unreadable job file beside a run
    if state in ("queued", "running"):
        raise RunReadError(f"{run_dir} is {state}; stop it before you delete it.")
    if has_run:
        delete_run(run_dir, runs_dir)
        return
    if run_dir.resolve().parent != pathlib.Path(runs_dir).resolve():
        raise RunReadError(f"{run_dir} is not a run directory of {runs_dir}; not deleting.")
    shutil.rmtree(run_dir)


# -- the queue worker --------------------------------------------------------------------------


def worker_running(runs_dir: PathLike) -> bool:
    """Whether a queue worker holds ``runs_dir``'s queue lock."""
    lock = pathlib.Path(runs_dir) / QUEUE_LOCK
    if not lock.exists():
        return False
    with _locked(lock, blocking=False) as free:
        return not free


def ensure_worker(runs_dir: PathLike) -> None:
    """Start a queue worker for ``runs_dir`` if jobs are queued and none is running; it runs in
    a session of its own, with its output in ``RUNS_DIR/.queue.log``."""
    runs_dir = pathlib.Path(runs_dir).resolve()
    if worker_running(runs_dir) or not any(j.state == "queued" for j in list_jobs(runs_dir)):
        return
    with open(runs_dir / WORKER_LOG, "ab") as log:
        subprocess.run(  # returns at once: the worker forks into the background
            [sys.executable, "-c", _WORKER_BOOTSTRAP, str(runs_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_child_environment(),
            check=True,
        )


# The worker continues in a grandchild in a session of its own, so it is nobody's child to wait
# for and no terminal or dashboard session takes it down; it forks before importing anything,
# so `ensure_worker` returns in milliseconds.
_WORKER_BOOTSTRAP = """\
import os, sys
if os.fork():
    os._exit(0)
os.setsid()
from diffsde._jobs import work
work(sys.argv[1])
"""


def _child_environment() -> dict[str, str]:
    """The environment of workers and runs: this one, with this diffsde importable and output
    unbuffered so the log tail is live."""
    root = str(pathlib.Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1")


def _live_runs(runs_dir: pathlib.Path, exclude: set[pathlib.Path]) -> int:
    """Runs in ``runs_dir`` (not in ``exclude``) whose writer is alive on this host."""
    return sum(
        run_is_live(entry.path)
        for entry in scan_store(runs_dir)
        if entry.run and entry.path not in exclude
    )


def _start(job: Job, log_dir: pathlib.Path) -> subprocess.Popen | None:
    """Start a queued job (None if it was cancelled meanwhile); record its process id."""
    with _locked(log_dir / STATE_LOCK):
        job = read_job(job.path)
        if job.state != "queued":
            return None
        if job.resume:
            arguments = ("--resume", str(job.path))
        else:
            arguments = (str(job.spec_file), "--run-dir", str(job.path))
        with open(job.log, "ab") as log:
            process = subprocess.Popen(
                [*CLI, "run", *arguments],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=_child_environment(),
            )
        _write_job(dataclasses.replace(job, state="running", started=time.time(), pid=process.pid))
    return process


def _finish(path: pathlib.Path, returncode: int | None, log_dir: pathlib.Path) -> None:
    """Record a job's exit; a run left `running` (killed, or died before its own handler could
    act) gets its final status here, with everything it wrote kept."""
    with _locked(log_dir / STATE_LOCK):
        job = read_job(path)
        _write_job(
            dataclasses.replace(job, state="finished", finished=time.time(), returncode=returncode)
        )
    if not (path / RUN_FILE).is_file():
        return
    if job.stop_requested is not None:
        status, message = "stopped", f"stopped from the dashboard (exit code {returncode})"
    else:
        status, message = "failed", f"process exited with code {returncode}; see {LOG_FILE}"
    with contextlib.suppress(RunReadError):
        mark_abandoned(path, status, message)


def work(runs_dir: PathLike, *, slots: int | None = None, poll: float = 0.5) -> None:
    """The queue worker's loop: start queued jobs while slots are free, record their exits, and
    return when nothing is queued or running (at once if another worker holds the lock)."""
    runs_dir = pathlib.Path(runs_dir).resolve()
    slots = slots or default_slots()
    while True:
        with _locked(runs_dir / QUEUE_LOCK, blocking=False) as mine:
            if not mine:
                return
            children: dict[pathlib.Path, subprocess.Popen] = {}
            while True:
                for path, process in list(children.items()):
                    if process.poll() is not None:
                        _finish(path, process.returncode, runs_dir)
                        del children[path]
                jobs = list_jobs(runs_dir)
                for job in jobs:  # started by a worker that died: record that it has ended
                    if job.state == "running" and job.path not in children:
                        if job.pid is None or not pid_alive(job.pid):
                            _finish(job.path, None, runs_dir)
                queued = [j for j in jobs if j.state == "queued"]
                if not queued and not children:
                    break
                busy = len(children) + _live_runs(runs_dir, set(children))
                if queued and busy < slots:
                    process = _start(queued[0], runs_dir)
                    if process is not None:
                        children[queued[0].path] = process
                        print(f"{_stamp()} started {queued[0].id} (pid {process.pid})")
                    continue
                time.sleep(poll)
        # A job submitted after the last look but before the lock was released found the lock
        # held and started no worker: look again now that it is free.
        if not any(j.state == "queued" for j in list_jobs(runs_dir)):
            return


def _stamp() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def summaries(runs_dir: PathLike, records: Iterable[RunRecord]) -> list[RunSummary]:
    """Every run and job of ``runs_dir`` as one `RunSummary` each, by directory name.

    ``records`` are the store's runs (`list_runs`), with their job's state merged in: a run
    queued to resume reads ``queued`` (and is live) until its process writes ``running``. Jobs
    with no run yet follow: ``queued``, ``starting`` (its process runs but has written no run),
    ``cancelled``, or ``finished`` (it ended before writing one).
    """
    jobs = {job.path.name: job for job in list_jobs(runs_dir)}
    found = []
    for record in records:
        summary = summarise(record)
        job = jobs.pop(record.id, None)
        if job is not None and job.state == "queued" and record.status != "running":
            summary = dataclasses.replace(summary, state="queued", live=True)
        found.append(summary)
    for job in jobs.values():
        if (job.path / RUN_FILE).exists():
            continue  # a run the listing could not read: it is among the listing's problems
        state = "starting" if job.state == "running" else job.state
        live = job.state in ("queued", "running")
        found.append(RunSummary(job.path, job.id, job.name, state, live))
    return sorted(found, key=lambda s: s.path.name)


def job_summary(job: Job) -> dict[str, Any]:
    """A job as one table row for the dashboard."""

    def when(t: float | None) -> str:
        return "" if t is None else datetime.datetime.fromtimestamp(t).strftime("%H:%M:%S")

    return {
        "id": job.id,
        "name": job.name,
        "state": job.state,
        "created": when(job.created),
        "started": when(job.started),
        "finished": when(job.finished),
        "exit code": job.returncode,
    }
