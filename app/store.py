"""Where the dashboard's runs come from: the runs directory, and the cache keys that say when to
read it again. Pure functions, no Streamlit.

Runs are read only through `diffsde.runs` (`scan_store`, `list_runs`, `open_run`); the app
never opens a run's files itself. What it looks at is the ``stat`` of the store's entries.
"""

from __future__ import annotations

import os
import pathlib

from diffsde.runs import RunProblem, RunRecord, list_runs, open_run, run_state, scan_store

RUNS_DIR_VARIABLE = "DIFFSDE_RUNS_DIR"
SPECS_DIR = pathlib.Path(__file__).resolve().parent.parent / "specs"
# The files whose change can change a run's line in a list (its name, state, queue state):
# not its metrics or heartbeat, which change all the time while it trains.
_HEAD_FILES = ("run.json", "status.json", "job.json")


def runs_dir_from_env(default: str = "runs") -> pathlib.Path:
    """The runs directory the dashboard shows: ``$DIFFSDE_RUNS_DIR``, else ``default``."""
    return pathlib.Path(os.environ.get(RUNS_DIR_VARIABLE) or default)


def _entry_stamp(path: pathlib.Path) -> tuple:
    """(name, size, mtime) of every entry of one directory: changes whenever a file in it is
    written, replaced or added, whatever the store's file layout."""
    out = []
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                out.append((entry.name, info.st_size, info.st_mtime_ns))
    except OSError:
        return ()
    return tuple(sorted(out))


def store_stamp(runs_dir: str | os.PathLike[str]) -> tuple:
    """A cache key of the whole store: `_entry_stamp` of each run directory (by name) and of
    its ``metrics/`` (a segment grows in place, which changes no directory's own stamp).

    Raises `FileNotFoundError` (with what to do) when the store does not exist.
    """
    return tuple(
        (e.path.name, _entry_stamp(e.path), _entry_stamp(e.path / "metrics"))
        for e in scan_store(runs_dir)
    )


def head_stamp(runs_dir: str | os.PathLike[str]) -> tuple:
    """A cache key of the store's run list: each directory's name, the ``stat`` of the files
    that name a run and its state, and the state a reader shows (so a writer that died, which
    changes no file, changes the key). It reads each run's small status file only, so it can
    be taken every few seconds while a run trains."""
    stamps = []
    for entry in scan_store(runs_dir):
        files = []
        for name in _HEAD_FILES:
            try:
                info = os.stat(entry.path / name)
            except OSError:
                continue
            files.append((name, info.st_size, info.st_mtime_ns))
        stamps.append((entry.path.name, tuple(files), run_state(entry.path)))
    return tuple(stamps)


def read_store(runs_dir: str | os.PathLike[str]) -> tuple[list[RunRecord], list[RunProblem]]:
    """Every readable run of ``runs_dir`` (oldest first) and one `RunProblem` per unreadable
    one, through `diffsde.runs.list_runs`."""
    problems: list[RunProblem] = []
    return list_runs(runs_dir, problems=problems), problems


def shipped_specs(specs_dir: str | os.PathLike[str] = SPECS_DIR) -> dict[str, pathlib.Path]:
    """The example specs shipped in the repository's ``specs/``, by file stem, sorted."""
    specs_dir = pathlib.Path(specs_dir)
    if not specs_dir.is_dir():
        return {}
    return {path.stem: path for path in sorted(specs_dir.glob("*.yaml"))}


def run_spec(runs_dir: str | os.PathLike[str], run: str) -> str:
    """The resolved spec stored with run ``run`` (a directory name in ``runs_dir``).

    ``run`` comes from a URL or a form, so anything but a plain directory name (``../x``, an
    absolute path) is refused with a `ValueError` rather than read: the page only ever opens
    runs inside its own store. An unreadable run raises `diffsde.runs.RunReadError`.
    """
    if not run or run in (".", "..") or pathlib.PurePath(run).name != run or "\\" in run:
        raise ValueError(
            f"{run!r} is not a run of {runs_dir}: give a run id (a directory name in the runs "
            "directory); paths outside the runs directory are refused."
        )
    path = pathlib.Path(runs_dir) / run
    if not path.is_dir():
        raise ValueError(f"there is no run {run!r} in {runs_dir}.")
    return open_run(path).spec_yaml
