"""The Monitor page's data: which runs are live, how far along they are, and their log tail.

Pure functions, no Streamlit: the page refreshes them every few seconds in a fragment, which
AppTest cannot fire, so everything it shows is computed and tested here.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from diffsde.jobs import LOG_FILE, Job, job_summary, list_jobs
from diffsde.runs import RunRecord

LIVE_SERIES = ("loss", "lr", "grad_norm")
RATE_WINDOW = 20  # distinct wall times (dispatches) the training rate and ETA are measured over
# A run that is not live in one of these states can be resumed (`diffsde run --resume`).
RESUMABLE = ("stopped", "failed", "killed", "stale")


@dataclasses.dataclass(frozen=True)
class Progress:
    """How far a run has trained and how long the rest should take."""

    step: int
    total: int
    rate: float | None  # steps per second over the last RATE_WINDOW rows
    eta: float | None  # seconds to the training budget at that rate
    elapsed: float | None  # training wall time so far

    @property
    def fraction(self) -> float:
        return min(self.step / self.total, 1.0) if self.total > 0 else 0.0


def progress(record: RunRecord) -> Progress:
    """`Progress` of ``record`` from its metric rows and its spec's ``training.steps``.

    The rows of one dispatch share a wall time, so the rate is measured between the last rows
    of the last `RATE_WINDOW` dispatches (distinct wall times), not over the last rows; with
    one dispatch only, over the time since training started.
    """
    training = record.spec.get("training", {}) if isinstance(record.spec, dict) else {}
    total = int(training.get("steps", 0) or 0)
    steps = record.metrics.get("step")
    wall = record.metrics.get("wall_time")
    if steps is None or not len(steps):
        return Progress(0, total, None, None, None)
    step = int(steps[-1])
    rate = eta = elapsed = None
    if wall is not None and len(wall):
        length = min(len(wall), len(steps))
        wall = np.asarray(wall[:length], dtype=float)
        steps = np.asarray(steps[:length], dtype=float)
        ends = np.append(wall[1:] != wall[:-1], True)  # the last row of each dispatch
        times, counts = wall[ends], steps[ends]
        if len(times) >= 2:
            first = max(0, len(times) - 1 - RATE_WINDOW)
            seconds, done = times[-1] - times[first], counts[-1] - counts[first]
        else:
            seconds, done = times[-1], counts[-1]
        if seconds > 0 and done > 0 and math.isfinite(seconds):
            rate = float(done / seconds)
            eta = max(total - step, 0) / rate
        elapsed = float(wall[-1])
    return Progress(step, total, rate, eta, elapsed)


def duration(seconds: float | None) -> str:
    """``1:02:03`` / ``2:03`` for a number of seconds; ``?`` if unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def log_tail(
    run_dir: str | os.PathLike[str], lines: int = 40, max_bytes: int = 65536
) -> str | None:
    """The last ``lines`` lines of the run's ``log.txt`` (None if it has none), each as a
    terminal would show it: only what follows a line's last carriage return."""
    path = pathlib.Path(run_dir) / LOG_FILE
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - max_bytes))
            data = f.read()
    except OSError:
        return None
    text = data.decode("utf-8", errors="replace")
    # splitlines() would also split at "\r"; a progress bar rewritten in place is one line.
    shown = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.rstrip("\n").split("\n")]
    return "\n".join(shown[-lines:])


def live_curves(record: RunRecord, x: str = "step") -> pd.DataFrame:
    """Long frame (``x``, ``series``, ``value``) of loss, learning rate and gradient norm."""
    xs = record.metrics.get(x)
    frames = []
    for name in LIVE_SERIES:
        ys = record.metrics.get(name)
        if xs is None or ys is None:
            continue
        length = min(len(xs), len(ys))
        frames.append(pd.DataFrame({x: xs[:length], "series": name, "value": ys[:length]}))
    if not frames:
        return pd.DataFrame(columns=[x, "series", "value"])
    return pd.concat(frames, ignore_index=True)


@dataclasses.dataclass(frozen=True)
class Entry:
    """A run or job the Monitor page can show."""

    path: pathlib.Path
    name: str
    state: str  # queued | starting | running | completed | failed | stopped | killed | stale …
    live: bool  # queued, starting or running
    job: Job | None
    record: RunRecord | None = None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.path.name}) — {self.state}"

    @property
    def resumable(self) -> bool:
        """Not live, and stopped, failed, killed or stale: `diffsde.jobs.resume` can go on."""
        return not self.live and self.record is not None and self.state in RESUMABLE


def entries(
    runs_dir: str | os.PathLike[str],
    records: Iterable[RunRecord],
    recent: int = 10,
    keep: str | os.PathLike[str] | None = None,
) -> list[Entry]:
    """Live runs and jobs first (oldest first), then the ``recent`` latest finished ones, and
    the run at ``keep`` (the one being watched, however old) if it is not among them.

    ``records`` are the store's runs (`diffsde.runs.list_runs`); a run is live when the store
    says ``running`` (it reports a dead writer as ``killed`` or ``stale``) or when its job is
    queued or running. Jobs without a run yet are ``queued`` or ``starting``.
    """
    runs_dir = pathlib.Path(runs_dir)
    jobs = {job.path.name: job for job in list_jobs(runs_dir)} if runs_dir.is_dir() else {}
    found: list[Entry] = []
    seen = set()
    for record in records:
        job = jobs.get(record.id)
        seen.add(record.id)
        queued = job is not None and job.state == "queued"  # e.g. resumed, not started yet
        live = record.status == "running" or queued
        state = "queued" if queued and record.status != "running" else record.status
        found.append(Entry(record.path, record.name, state, live, job, record))
    for run_id, job in jobs.items():
        if run_id in seen:
            continue
        state = "starting" if job.state == "running" else job.state
        found.append(Entry(job.path, job.name, state, job.state in ("queued", "running"), job))
    found.sort(key=lambda e: e.path.name)
    live = [e for e in found if e.live]
    done = [e for e in found if not e.live][-recent:][::-1]
    kept = [e for e in found if keep is not None and str(e.path) == str(keep)]
    return live + done + [e for e in kept if e not in live + done]


def job_rows(runs_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The queue as table rows: queued and running jobs, oldest first."""
    return [job_summary(j) for j in list_jobs(runs_dir) if j.state in ("queued", "running")]
