"""The Monitor page's data: which runs to offer (live ones first), how long things take, and a
run's log tail. Pure functions, no Streamlit: the page refreshes them every few seconds in a
fragment, which AppTest cannot fire, so everything it shows is computed and tested here.
Progress, rate and ETA are the run's `diffsde.runs.RunSummary`."""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Iterable
from typing import Any

from diffsde.jobs import LOG_FILE, job_summary, list_jobs
from diffsde.runs import RunSummary


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


def entry_label(summary: RunSummary) -> str:
    """How the Monitor's selector names a run or job: ``name (directory) — state``."""
    return f"{summary.name} ({summary.path.name}) — {summary.state}"


def offered(
    summaries: Iterable[RunSummary],
    recent: int = 10,
    keep: str | os.PathLike[str] | None = None,
) -> list[RunSummary]:
    """What the Monitor offers, from `diffsde.jobs.summaries`: live runs and jobs first (oldest
    first), then the ``recent`` latest finished ones, and the run at ``keep`` (the one being
    watched, however old) if it is not among them."""
    found = sorted(summaries, key=lambda s: s.path.name)
    live = [s for s in found if s.live]
    done = [s for s in found if not s.live][-recent:][::-1]
    kept = [s for s in found if keep is not None and str(s.path) == str(keep)]
    return live + done + [s for s in kept if s not in live + done]


def job_rows(runs_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The queue as table rows: queued and running jobs, oldest first."""
    return [job_summary(j) for j in list_jobs(runs_dir) if j.state in ("queued", "running")]
