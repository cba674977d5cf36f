"""The Monitor page's data: which runs are live, how far along they are, and their log tail.

Pure functions, no Streamlit: the page refreshes them every few seconds in a fragment, which
AppTest cannot fire, so everything it shows is computed and tested here.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import pathlib
from collections.abc import Callable
from typing import Any

import pandas as pd

from diffsde.jobs import LOG_FILE, Job, list_jobs
from diffsde.runs import CHECKPOINT_META_FILE, RUN_FILE, RunRecord, open_run, writer_alive

LIVE_SERIES = ("loss", "lr", "grad_norm")
RATE_WINDOW = 20  # metric rows the training rate (and so the ETA) is measured over


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
    """`Progress` of ``record`` from its metric rows and its spec's ``training.steps``."""
    training = record.spec.get("training", {}) if isinstance(record.spec, dict) else {}
    total = int(training.get("steps", 0) or 0)
    steps = record.metrics.get("step")
    wall = record.metrics.get("wall_time")
    if steps is None or not len(steps):
        return Progress(0, total, None, None, None)
    step = int(steps[-1])
    rate = eta = None
    if wall is not None and len(wall) >= 2:
        first = max(0, len(wall) - RATE_WINDOW)
        seconds = float(wall[-1] - wall[first])
        if seconds > 0 and steps[-1] > steps[first]:
            rate = float(steps[-1] - steps[first]) / seconds
            eta = max(total - step, 0) / rate
    elapsed = float(wall[-1]) if wall is not None and len(wall) else None
    return Progress(step, total, rate, eta, elapsed)


def duration(seconds: float | None) -> str:
    """``1:02:03`` / ``2:03`` for a number of seconds; ``?`` if unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def last_checkpoint(run_dir: str | os.PathLike[str]) -> tuple[int, datetime.datetime] | None:
    """Step and time of the run's last checkpoint, if it has one."""
    meta = pathlib.Path(run_dir) / CHECKPOINT_META_FILE
    try:
        step = json.loads(meta.read_text())["step"]
        return int(step), datetime.datetime.fromtimestamp(meta.stat().st_mtime)
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
    state: str  # queued | starting | running | completed | failed | stopped | cancelled
    live: bool  # queued, starting or running
    job: Job | None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.path.name}) — {self.state}"


def entries(
    runs_dir: str | os.PathLike[str],
    recent: int = 10,
    read: Callable[[pathlib.Path], RunRecord] = open_run,
) -> list[Entry]:
    """Live runs and jobs first (oldest first), then the ``recent`` latest finished ones; runs
    are read with ``read`` (the page passes one cached on the file's mtime)."""
    runs_dir = pathlib.Path(runs_dir)
    jobs = {job.path: job for job in list_jobs(runs_dir)}
    found: list[Entry] = []
    for child in sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []:
        if not child.is_dir() or child.name.startswith("."):
            continue
        job = jobs.get(child)
        if (child / RUN_FILE).is_file():
            try:
                record = read(child)
            except Exception:  # a half-written run: the Runs page explains it
                continue
            live = writer_alive(record) or (job is not None and job.state == "running")
            state = record.status if record.status != "running" or live else "running (stale)"
            found.append(Entry(child, record.name, state, live, job))
        elif job is not None:
            state = "starting" if job.state == "running" else job.state
            found.append(Entry(child, job.name, state, job.state in ("queued", "running"), job))
    live = [e for e in found if e.live]
    done = [e for e in found if not e.live][-recent:][::-1]
    return live + done


def job_rows(runs_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The queue as table rows: queued and running jobs, oldest first."""
    from diffsde.jobs import job_summary

    return [job_summary(j) for j in list_jobs(runs_dir) if j.state in ("queued", "running")]
