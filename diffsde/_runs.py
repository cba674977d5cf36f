"""The on-disk run store: one directory per run, of small atomic files and append-only segments.

Layout of ``runs_dir/<YYYYmmdd-HHMMSS>-<name>-<random>/`` (format 2)::

    run.json              format, format_version, id, name, created, the resolved spec (YAML
                          text), the environment (package versions, device), and for a run
                          that took models from other runs its ``lineage`` (`diffsde._lineage`)
    lineage/ROLE/         such a run's copy of what it took from a parent (its spec, the
                          checkpoint's bytes, its own lineage/), read when the run resumes
    status.json           state (running | completed | failed | stopped), message, step,
                          updated, and the writer: host, pid, its start time, heartbeat period
    heartbeat             empty; its mtime is touched by the writer every HEARTBEAT_SECONDS
    metrics/NNNN.json     one segment per writing process: its columns, the step it starts
                          after (``from_step``), host and pid
    metrics/NNNN.f64      that segment's rows: float64, C order, len(columns) per row, only
                          ever appended to by its one writer
    results/LABEL.h5      a result's arrays (HDF5, written whole)
    results/LABEL.json    its summary: kind, step, metrics, NFE, array shapes, and the size and
                          SHA-256 of LABEL.h5
    checkpoint.eqx        ``eqx.tree_serialise_leaves`` of ``(step, train state)``
    checkpoint.json       ``{"step": ...}``, for cheap listing
    .reserve              256 KiB written at creation, deleted to make room for the final
                          status when the disk fills

Rules that make it survive faults:

- **No file is ever reopened for writing.** Every JSON and HDF5 file is written to a temporary
  file in the same directory, fsynced and renamed over its target (`_atomic_write`); a reader
  sees the old file or the new one, never half of one. The one exception, a metric segment, is
  appended only by the process that created it, and readers take only its whole rows.
- **No locks.** Readers never hold anything a writer waits for; HDF5 files are opened by readers
  only after their size and SHA-256 match their summary, in plain (not SWMR) mode, so a damaged
  file is refused at once instead of being retried for minutes.
- **A resumed run appends, never truncates.** Resuming writes a new segment whose ``from_step``
  is the checkpoint's step; readers drop the earlier segments' rows after it. Results are kept
  under their labels: nothing a user ran is deleted by a resume.
- **A dead writer is recognised**, not trusted: a ``running`` status whose process is gone (same
  host: pid and process start time; any host: the heartbeat is older than STALE_SECONDS) is
  shown as ``killed`` (or ``stale``), and `diffsde run --resume` continues it.
- **A full disk ends the run ``failed``** with "disk full" and what was kept: the failing append
  is cut back to whole rows, the reserve is released so the final status fits, and every file
  written earlier is intact.

Runs of format 1 (one SWMR ``run.h5``) are converted by `diffsde runs --upgrade`
(`diffsde._runs_legacy`); until then a listing names them as problems.

A run launched from the dashboard (`diffsde.jobs`) also holds ``spec.yaml`` (what was
launched), ``job.json`` (queue state, process id) and ``log.txt`` (the process's output); until
its process starts, the directory has no ``run.json`` and `list_runs` passes over it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import hashlib
import importlib.metadata
import json
import math
import os
import pathlib
import platform
import re
import secrets
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Any, Literal, NamedTuple

import numpy as np
import yaml
from jaxtyping import ArrayLike

from . import _faults

FORMAT = "diffsde-run"
FORMAT_VERSION = 2
RUN_FILE = "run.json"  # its presence makes a directory a run
STATUS_FILE = "status.json"
HEARTBEAT_FILE = "heartbeat"
LOCK_FILE = "writer.lock"  # flock'ed by the one process writing the run
METRICS_DIR = "metrics"
RESULTS_DIR = "results"
RESERVE_FILE = ".reserve"
CHECKPOINT_FILE = "checkpoint.eqx"
CHECKPOINT_META_FILE = "checkpoint.json"
LEGACY_FILE = "run.h5"  # format 1
JOB_FILE = "job.json"  # a run launched by `diffsde.jobs`: queued until its run.json appears
STATUSES = ("running", "completed", "failed", "stopped")  # what a writer records
STATES = (*STATUSES, "killed", "stale")  # what a reader shows: killed/stale for dead writers
RUN_RESULT = "run"  # the kind of the results a run writes when it finishes training
HEARTBEAT_SECONDS = 2.0
STALE_SECONDS = 60.0  # a writer on another host whose heartbeat is older is shown as stale
MAX_NAME = 100
MAX_JSON_BYTES = 8 << 20  # run.json holds the spec, which validation bounds to 1 MiB
MAX_STATUS_BYTES = 1 << 20
MAX_SEGMENT_BYTES = 2 << 30  # a reader loads at most this much of one segment
SEGMENT_STEPS = 10_000_000  # the spec's bound on training.steps: one segment must hold them
MAX_COLUMNS = MAX_SEGMENT_BYTES // (8 * SEGMENT_STEPS)  # 26: step, wall_time and 24 metrics
MESSAGE_CHARS = 8192
RESERVE_BYTES = 256 << 10
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)

Status = Literal["running", "completed", "failed", "stopped"]
PathLike = str | os.PathLike[str]


class RunReadError(Exception):
    """A path that is not a readable diffsde run; the message says why and what to do."""


class CheckpointError(Exception):
    """A checkpoint that is missing, corrupt, or does not match the tree to load into."""


class RunBusyError(RunReadError):
    """The run is being written by a live process: stop it (or wait) first."""


def environment() -> dict[str, str]:
    """The versions and device a run is trained with, as stored in ``run.json``."""
    import jax

    env = {"python": platform.python_version()}
    for package in ("jax", "jaxlib", "equinox", "diffrax", "optax", "diffsde", "h5py", "numpy"):
        try:
            env[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            env[package] = "not installed"
    devices = jax.devices()
    env["backend"] = jax.default_backend()
    env["device"] = devices[0].device_kind
    env["device_count"] = str(len(devices))
    env["platform"] = platform.platform()
    return env


def _now() -> datetime.datetime:
    return datetime.datetime.now().astimezone()


def check_name(name: object) -> str:
    """``name`` stripped, if it can name a run: 1 to MAX_NAME characters, no control characters,
    at least one letter or digit. Raises ValueError saying what to change otherwise."""
    if not isinstance(name, str):
        raise ValueError(f"a run name must be text, got {type(name).__name__}.")
    stripped = name.strip()
    bad = sorted({repr(c) for c in stripped if not (c.isprintable() or c == " ")})
    if bad:
        raise ValueError(
            f"run name {name[:40]!r} contains control characters or others that do not "
            f"print ({', '.join(bad)}); "
            "use letters, digits, spaces and punctuation only."
        )
    if not re.search(r"[^\W_]", stripped):
        raise ValueError(f"run name {name[:40]!r} has no letter or digit; give the run a name.")
    if len(stripped) > MAX_NAME:
        raise ValueError(f"run name is {len(stripped)} characters long; use at most {MAX_NAME}.")
    return stripped


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", check_name(name)).strip("-.")[:60] or "run"


def _check_label(name: object, what: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._=+@,-]{0,199}", name):
        raise ValueError(
            f"{what} {name!r} cannot name a result file; use 1-200 letters, digits and "
            "'._=+@,-', starting with a letter or digit."
        )
    return name


def _check_key(name: object, what: str) -> str:
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise ValueError(f"{what} name {name!r} is not usable; use a non-empty name without '/'.")
    return name


# -- atomic files ---------------------------------------------------------------------------


def _fsync_dir(directory: pathlib.Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _atomic_write(
    target: pathlib.Path, write: Callable[[IO[bytes]], object] | bytes, *, fault: str | None = None
) -> None:
    """Write ``target`` whole or not at all: a temporary file beside it, fsync, rename."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # as open() would make it, not mkstemp's 0600
        with os.fdopen(fd, "wb") as out:
            if isinstance(write, bytes):
                out.write(write)
            else:
                write(out)
            out.flush()
            os.fsync(out.fileno())
        if fault is not None:
            _faults.point(fault)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(target.parent)


def write_json(target: pathlib.Path, data: Mapping[str, Any], *, fault: str | None = None) -> None:
    """Replace ``target`` with ``data`` as UTF-8 JSON, atomically (`_atomic_write`)."""
    text = json.dumps(data, indent=1, allow_nan=False, ensure_ascii=False)
    _atomic_write(target, text.encode("utf-8"), fault=fault)


def _read_json(path: pathlib.Path, what: str, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """A small JSON object file, read without following a symlink, size-bounded."""
    try:
        fd = os.open(
            path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        )
    except FileNotFoundError:
        raise RunReadError(f"{path} is missing; {what}") from None
    except OSError as e:
        reason = "a symbolic link" if e.errno == errno.ELOOP else e.strerror
        raise RunReadError(f"{path} cannot be read ({reason}); {what}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        os.close(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RunReadError(f"{path} is not a regular file; {what}")
        raise RunReadError(f"{path} is {info.st_size} bytes (over {limit}); {what}")
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        kind = "empty" if not data else f"not JSON ({type(e).__name__})"
        raise RunReadError(f"{path} is {kind}; {what}") from None
    if not isinstance(value, dict):
        raise RunReadError(f"{path} holds a JSON {type(value).__name__}, not an object; {what}")
    return value


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` says the disk (or the user's quota) is full."""
    return isinstance(error, OSError) and error.errno in DISK_FULL


# -- writer processes -----------------------------------------------------------------------


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux: /proc/PID/stat field 22), None if unknown;
    tells a live writer from an unrelated process that got its pid later."""
    try:
        text = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (whoever owns it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _writer_fields() -> dict[str, Any]:
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "process_start": _process_start(pid),
        "heartbeat_seconds": HEARTBEAT_SECONDS,
    }


def _writer_state(status: Mapping[str, Any], heartbeat: float | None) -> str:
    """``running`` if the writer recorded in ``status`` is alive, else ``killed`` (it is gone
    from this host) or ``stale`` (no heartbeat for STALE_SECONDS); other states as stored."""
    state = status.get("state")
    if state != "running":
        return str(state)
    pid = status.get("pid")
    if status.get("host") == socket.gethostname() and isinstance(pid, int):
        start = status.get("process_start")
        if start is not None and _process_start(pid) not in (None, start):
            return "killed"  # the pid now belongs to another process (a restarted container)
        if pid == os.getpid():
            return "running"
        if not pid_alive(pid):
            return "killed"
    last = max(filter(None, [heartbeat, status.get("updated")]), default=0.0)
    return "stale" if time.time() - last > STALE_SECONDS else "running"


def _claim(run_dir: pathlib.Path) -> int:
    """Take the run's writer lock (an exclusive ``flock`` on ``writer.lock``, which readers
    never touch) and return its descriptor; `RunBusyError` if another process holds it."""
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunBusyError(
            f"{run_dir} is being written by another process of this machine; stop it first."
        ) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


class _Heartbeat:
    """Touches ``heartbeat`` every HEARTBEAT_SECONDS from a daemon thread until stopped."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.path.touch()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="diffsde-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                os.utime(self.path)
            except OSError:
                pass  # a missing or unwritable heartbeat only makes the run look stale

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def new_run_dir(
    runs_dir: PathLike, name: str, created: datetime.datetime | None = None
) -> pathlib.Path:
    """Make and return a fresh ``runs_dir/<YYYYmmdd-HHMMSS>-<name>-<random>`` directory."""
    created = created or _now()
    runs_dir = pathlib.Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    while True:
        run_dir = runs_dir / f"{created:%Y%m%d-%H%M%S}-{_slug(name)}-{secrets.token_hex(3)}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue


def _clip(message: str) -> str:
    return (
        message if len(message) <= MESSAGE_CHARS else message[: MESSAGE_CHARS - 12] + " [truncated]"
    )


# -- metric segments ------------------------------------------------------------------------


class _Segment:
    """One process's append-only metric segment: whole float64 rows or nothing."""

    def __init__(self, metrics_dir: pathlib.Path, index: int, columns: tuple[str, ...], start: int):
        self.columns = columns
        self.data_path = metrics_dir / f"{index:04d}.f64"
        header = {"columns": list(columns), "from_step": start, **_writer_fields()}
        header["created"] = time.time()
        # The data file first: a header is only written for a segment that exists.
        self.fd = os.open(self.data_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self.size = 0
        try:
            write_json(metrics_dir / f"{index:04d}.json", header)
        except BaseException:
            os.close(self.fd)
            os.unlink(self.data_path)
            raise

    def append(self, rows: np.ndarray) -> None:
        data = np.ascontiguousarray(rows, dtype="<f8").tobytes()
        try:
            _faults.point("metrics")
            view = memoryview(data)
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
        except BaseException:
            os.ftruncate(self.fd, self.size)  # back to whole rows
            raise
        self.size += len(data)

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _segments(run_dir: pathlib.Path) -> list[tuple[int, pathlib.Path]]:
    directory = run_dir / METRICS_DIR
    try:
        names = os.listdir(directory)
    except OSError:  # missing, not a directory, unreadable: no segments (the head says why)
        return []
    found = []
    for name in names:
        match = re.fullmatch(r"(\d{4})\.json", name)
        if match:
            found.append((int(match.group(1)), directory / name))
    return sorted(found)


def _next_segment(run_dir: pathlib.Path) -> int:
    """One past the highest segment number, counting data files whose header never landed."""
    try:
        names = os.listdir(run_dir / METRICS_DIR)
    except OSError:
        return 0
    pattern = re.compile(r"(\d{4})\.(?:json|f64)")
    numbers = [int(m.group(1)) for m in map(pattern.fullmatch, names) if m]
    return max(numbers, default=-1) + 1


def _read_metrics(run_dir: pathlib.Path, problems: list[str]) -> dict[str, np.ndarray]:
    """Every segment's whole rows, later segments replacing the rows after their ``from_step``;
    rows whose step is not a finite, increasing number are dropped (and named in ``problems``)."""
    columns: list[str] | None = None
    table = np.zeros((0, 0))
    for _, header_path in _segments(run_dir):
        try:
            header = _read_json(header_path, "the segment is skipped")
        except RunReadError as e:
            problems.append(str(e))
            continue
        names = header.get("columns")
        start = header.get("from_step")
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(n, str) for n in names)
            or isinstance(start, bool)
            or not isinstance(start, int)
        ):
            problems.append(f"{header_path} is not a metric segment header; skipped")
            continue
        if columns is None:
            columns, table = names, np.zeros((0, len(names)))
        elif names != columns:
            problems.append(f"{header_path} has columns {names}, not {columns}; skipped")
            continue
        data_path = header_path.with_suffix(".f64")
        try:
            info = os.lstat(data_path)
            if not stat.S_ISREG(info.st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            if info.st_size > MAX_SEGMENT_BYTES:
                raise OSError(errno.EFBIG, f"{info.st_size} bytes, over {MAX_SEGMENT_BYTES}")
            rows = info.st_size // (8 * len(names))
            data = np.fromfile(data_path, dtype="<f8", count=rows * len(names))
        except OSError as e:
            problems.append(f"{data_path} cannot be read ({e.strerror}); segment skipped")
            continue
        data = data[: (len(data) // len(names)) * len(names)].reshape(-1, len(names))
        if "step" in names and len(table):
            table = table[table[:, names.index("step")] <= start]
        table = np.concatenate([table, data])
    if columns is None:
        return {}
    if "step" in columns and len(table):
        step = table[:, columns.index("step")]
        good = np.isfinite(step)
        good[good] &= np.concatenate([[True], np.diff(step[good]) > 0])
        if not good.all():
            problems.append(
                f"{int((~good).sum())} damaged metric rows (non-finite or repeated step) dropped"
            )
            table = table[good]
    return {name: table[:, i].copy() for i, name in enumerate(columns)}


# -- results --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Result:
    """One stored result set: what ``results/LABEL.json`` says."""

    label: str
    kind: str  # "run" (the run's own), "sample", "eval", "likelihood"
    step: int | None  # the checkpoint step of the model that produced it
    created: float
    eval: dict[str, float]
    nfe: dict[str, int]
    arrays: dict[str, dict[str, Any]]  # name -> {"shape", "dtype"}
    prefixed: bool  # listed as "label.name" beside the run's own metrics


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def add_results(
    run_path: PathLike,
    label: str,
    *,
    kind: str,
    evaluation: Mapping[str, ArrayLike] = {},
    samples: Mapping[str, ArrayLike] = {},
    nfe: Mapping[str, int | np.integer] = {},
    step: int | None = None,
    prefixed: bool = False,
) -> Result:
    """Store a result set under ``label`` (replacing an earlier one of that label, atomically):
    the arrays in ``results/LABEL.h5``, then the summary in ``results/LABEL.json``, which is
    what makes it visible. Safe while the run trains and while others read: no file is opened
    twice. Inputs are checked before anything is written."""
    import h5py

    run_dir = _run_dir(run_path)
    if not (run_dir / RUN_FILE).is_file():
        raise RunReadError(f"{run_dir} has no {RUN_FILE}; it is not a run directory.")
    _check_label(label, "results label")
    values = {}
    for key, value in evaluation.items():
        array = np.asarray(value)
        if array.size != 1 or array.dtype.kind not in "biuf":
            raise ValueError(f"evaluation[{key!r}] must be one real number, got {value!r}.")
        number = float(array.reshape(()))
        values[_check_key(key, "evaluation metric")] = number if math.isfinite(number) else None
    arrays = {}
    for key, value in samples.items():
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise ValueError(f"samples[{key!r}] must be a real array, got dtype {array.dtype}.")
        arrays[_check_key(key, "samples")] = array
    counts = {}
    for key, value in nfe.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"nfe[{key!r}] must be an int, got {value!r}.")
        counts[_check_key(key, "nfe")] = int(value)

    directory = run_dir / RESULTS_DIR
    directory.mkdir(exist_ok=True)
    summary_path = directory / f"{label}.json"
    # A new data file per write: the previous summary and its file stay valid until the new
    # summary replaces it, and only then is the previous file removed.
    data_path = directory / f"{label}.{secrets.token_hex(4)}.h5"
    previous = _result_file(summary_path)

    def write(out: IO[bytes]) -> None:
        with h5py.File(out, "w") as f:
            for key, array in arrays.items():
                f.create_dataset(key, data=array)

    try:
        _atomic_write(data_path, write)
        _faults.point("results")
        summary = _summary(label, kind, step, values, counts, arrays, prefixed, data_path)
        write_json(summary_path, summary)
    except BaseException:
        data_path.unlink(missing_ok=True)
        raise
    if previous is not None and previous != data_path.name:
        (directory / previous).unlink(missing_ok=True)
    return _result(summary)


def _data_name(label: str, name: object) -> str | None:
    """``name`` if it is a data file name `add_results` makes for ``label``, else None (a
    summary cannot point outside its directory or at another label's file)."""
    pattern = re.escape(str(label)) + r"\.[0-9a-f]{8}\.h5"
    return name if isinstance(name, str) and re.fullmatch(pattern, name) else None


def _result_file(summary_path: pathlib.Path) -> str | None:
    """The data file a result summary names, None if it names none or cannot be read."""
    try:
        name = _read_json(summary_path, "", limit=MAX_JSON_BYTES).get("file")
    except RunReadError:
        return None
    return _data_name(summary_path.stem, name)


def _older(path: pathlib.Path, age: float) -> bool:
    return time.time() - path.stat().st_mtime > age


def _drop_orphans(run_dir: pathlib.Path, *, age: float = 60.0) -> None:
    """Remove what a dead writer left mid-write: its temporary files, and result files (data no
    summary names, temporaries) older than ``age`` seconds — younger ones may belong to a
    `diffsde sample` that is writing right now."""
    owned = (CHECKPOINT_FILE, CHECKPOINT_META_FILE, STATUS_FILE, RESERVE_FILE)
    for stray in [*run_dir.glob(".*.tmp"), *(run_dir / METRICS_DIR).glob(".*.tmp")]:
        with contextlib.suppress(OSError):  # the writer's own, or anyone's once it is old
            if stray.name.startswith(tuple(f".{n}." for n in owned)) or _older(stray, age):
                stray.unlink()
    directory = run_dir / RESULTS_DIR
    if not directory.is_dir():
        return
    for path in [*directory.glob("*.h5"), *directory.glob(".*.tmp")]:
        with contextlib.suppress(OSError):
            if not _older(path, age):
                continue
            if path.suffix == ".tmp":
                path.unlink()
                continue
            label = path.name.rsplit(".", 2)[0]
            summary = directory / f"{label}.json"
            if not os.path.lexists(summary) or _result_file(summary) not in (None, path.name):
                path.unlink()  # no summary, or a summary that names another file: unreachable


def _summary(label, kind, step, values, counts, arrays, prefixed, data_path) -> dict[str, Any]:
    return {
        "label": label,
        "kind": kind,
        "step": step,
        "created": time.time(),
        "eval": values,
        "nfe": counts,
        "arrays": {k: {"shape": list(a.shape), "dtype": a.dtype.str} for k, a in arrays.items()},
        "prefixed": prefixed,
        "file": data_path.name,
        "size": data_path.stat().st_size,
        "sha256": _sha256(data_path),
    }


def _result(summary: Mapping[str, Any]) -> Result:
    values = summary["eval"]
    return Result(
        label=str(summary["label"]),
        kind=str(summary["kind"]),
        step=summary.get("step"),
        created=float(summary["created"]),
        eval={str(k): math.nan if v is None else float(v) for k, v in values.items()},
        nfe={str(k): int(v) for k, v in summary["nfe"].items()},
        arrays=dict(summary["arrays"]),
        prefixed=bool(summary["prefixed"]),
    )


def _read_results(run_dir: pathlib.Path, problems: list[str]) -> list[tuple[Result, dict]]:
    directory = run_dir / RESULTS_DIR
    if directory.is_symlink():
        problems.append(f"{directory} is a symbolic link; its results are not read")
        return []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    except OSError as e:
        problems.append(f"{directory} cannot be listed ({e.strerror}); its results are not read")
        return []
    found = []
    for name in names:
        if name.startswith(".") or not name.endswith(".json"):
            continue
        path = directory / name
        try:
            summary = _read_json(path, "the result is skipped")
            result = _result(summary)
        except RunReadError as e:
            problems.append(str(e))
            continue
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            problems.append(f"{path} is not a result summary ({type(e).__name__}: {e}); skipped")
            continue
        found.append((result, summary))
    found.sort(key=lambda item: item[0].created)
    return found


class LazyArrays(Mapping):
    """A run's stored arrays by name, each read (and verified) on first access."""

    def __init__(self, run_dir: pathlib.Path, sources: Mapping[str, tuple[dict, str]]):
        self._run_dir = run_dir
        self._sources = dict(sources)  # name -> (result summary, dataset name in its file)
        self._loaded: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._loaded:
            summary, dataset = self._sources[name]
            try:
                self._loaded[name] = _load_array(self._run_dir, summary, dataset)
            except FileNotFoundError:  # replaced by a newer result of that label since: read it
                path = self._run_dir / RESULTS_DIR / f"{summary['label']}.json"
                newer = _read_json(path, "the result was replaced and its summary is gone.")
                try:
                    self._loaded[name] = _load_array(self._run_dir, newer, dataset)
                except FileNotFoundError as e:
                    raise RunReadError(f"{e.filename} is missing; the result is lost.") from None
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)

    def shape(self, name: str) -> tuple[int, ...]:
        """The stored shape of ``name``, without reading it."""
        summary, dataset = self._sources[name]
        return tuple(summary["arrays"][dataset]["shape"])

    def __repr__(self) -> str:
        return f"LazyArrays({list(self._sources)})"


def _load_array(run_dir: pathlib.Path, summary: Mapping[str, Any], dataset: str) -> np.ndarray:
    import h5py

    name = _data_name(summary.get("label", ""), summary.get("file"))
    if name is None:
        raise RunReadError(
            f"the summary of result {summary.get('label')!r} in {run_dir} names no valid data "
            f"file ({summary.get('file')!r}); it is damaged."
        )
    path = run_dir / RESULTS_DIR / name
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise RunReadError(f"{path} cannot be read ({e.strerror}); the result is lost.") from None
    if not stat.S_ISREG(info.st_mode) or info.st_size != summary.get("size"):
        raise RunReadError(
            f"{path} is {info.st_size} bytes but its summary says {summary.get('size')}: it is "
            "damaged; recompute it (diffsde sample / eval)."
        )
    if _sha256(path) != summary.get("sha256"):
        raise RunReadError(f"{path} does not match its checksum: it is damaged; recompute it.")
    try:
        with h5py.File(path, "r") as f:
            return f[dataset][()]
    except (OSError, KeyError) as e:
        raise RunReadError(f"cannot read {dataset} from {path}: {e}") from None


# -- the writer -----------------------------------------------------------------------------


class RunWriter:
    """Writes one run; make one with `RunWriter.create` (a new run) or `RunWriter.reopen` (to
    resume one from its checkpoint).

    Use as a context manager. Leaving the block normally marks a still-running run
    ``completed``; a full disk marks it ``failed`` with "disk full" and what was kept; another
    exception marks it ``failed`` with the exception as message and the last logged ``step``;
    ``KeyboardInterrupt`` and ``SystemExit`` mark it ``stopped``. A status already set to
    ``failed`` or ``stopped`` by the caller is kept. No signal handlers are installed here:
    SIGTERM is the trainer's.
    """

    def __init__(self, run_dir: pathlib.Path, segment: _Segment, last_step: int, lock: int):
        self._lock = lock  # the writer lock's descriptor, held (flock) until `close`
        self.path = run_dir
        self.id = run_dir.name
        self.metric_names = segment.columns
        self._segment: _Segment | None = segment
        self._heartbeat = _Heartbeat(run_dir / HEARTBEAT_FILE)
        self._status: str = "running"
        self._last_step = last_step

    @classmethod
    def create(
        cls,
        runs_dir: PathLike,
        name: str,
        resolved_yaml: str,
        environment: Mapping[str, str],
        *,
        metrics: Sequence[str],
        run_dir: PathLike | None = None,
        lineage: Sequence[Mapping[str, Any]] = (),
    ) -> RunWriter:
        """Make ``runs_dir/<YYYYmmdd-HHMMSS>-<name>-<random>/`` (or fill ``run_dir``, a directory
        made beforehand by `new_run_dir`) and start its first metric segment.

        ``metrics`` names the per-row series the trainer will log (e.g. ``step``,
        ``wall_time``, ``loss``, ``lr``, ``grad_norm``); every `append_metrics` call must
        give all of them. ``lineage`` lists the runs it takes models from (one mapping each:
        role, id, path, checkpoint, step, spec_digest), stored in ``run.json``.
        """
        name = check_name(name)
        spec = yaml.safe_load(resolved_yaml)
        if not isinstance(spec, dict):
            raise ValueError(
                "resolved_yaml must be a YAML mapping (use Setup.resolved_yaml()), "
                f"got {type(spec).__name__}."
            )
        env = dict(environment)
        for key, value in env.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ValueError(
                    f"environment[{key!r}] = {value!r}: keys and values must be str "
                    "(use diffsde.runs.environment())."
                )
        metric_names = tuple(metrics)
        if not metric_names:
            raise ValueError("metrics is empty; name the series to log, e.g. ('step', 'loss').")
        if len(metric_names) > MAX_COLUMNS:
            raise ValueError(
                f"{len(metric_names)} metric series; a run stores at most {MAX_COLUMNS} (a "
                f"segment of {SEGMENT_STEPS:,} rows must stay under {MAX_SEGMENT_BYTES >> 30} "
                "GiB): log fewer."
            )
        for metric in metric_names:
            _check_key(metric, "metric")
        if len(set(metric_names)) != len(metric_names):
            raise ValueError(f"metrics {list(metric_names)} has duplicates; name each once.")

        created = _now()
        head = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "id": "",
            "name": name,
            "created": created.isoformat(),
            "spec": resolved_yaml,
            "environment": env,
        }
        if lineage:
            head["lineage"] = [dict(entry) for entry in lineage]
        if run_dir is None:
            run_dir = new_run_dir(runs_dir, name, created)
        else:
            run_dir = pathlib.Path(run_dir)
            if (run_dir / RUN_FILE).exists() or (run_dir / LEGACY_FILE).exists():
                raise ValueError(f"{run_dir} already holds a run; give a new directory.")
            run_dir.mkdir(parents=True, exist_ok=True)
        head["id"] = run_dir.name
        lock = _claim(run_dir)
        try:
            _atomic_write(run_dir / RESERVE_FILE, os.urandom(RESERVE_BYTES))
            (run_dir / METRICS_DIR).mkdir(exist_ok=True)
            segment = _Segment(run_dir / METRICS_DIR, 0, metric_names, -1)
        except BaseException:
            os.close(lock)
            raise
        try:
            _write_status(run_dir, "running")
            write_json(run_dir / RUN_FILE, head)  # last: this makes the directory a run
        except BaseException:
            segment.close()
            os.close(lock)
            raise
        return cls(run_dir, segment, -1, lock)

    @classmethod
    def reopen(cls, run_path: PathLike, *, from_step: int, metrics: Sequence[str]) -> RunWriter:
        """Continue an existing run (to resume it from the checkpoint at ``from_step``; -1 to
        restart it from scratch), logging ``metrics``: a new metric segment supersedes the rows
        logged after ``from_step``, the status goes back to ``running``. Results are kept.
        Refused while the run's writer is alive (its ``running`` status, or its writer lock on
        this host); a ``stale`` run (no heartbeat for STALE_SECONDS) counts as dead."""
        record = open_run(run_path)
        if record.status == "running":
            raise RunBusyError(
                f"{record.path} is running (process {record.pid} on {record.host}); stop it "
                "before you resume it."
            )
        run_dir = record.path
        lock = _claim(run_dir)
        try:
            _drop_orphans(run_dir)
            if not (run_dir / RESERVE_FILE).is_file():
                _atomic_write(run_dir / RESERVE_FILE, os.urandom(RESERVE_BYTES))
            (run_dir / METRICS_DIR).mkdir(exist_ok=True)
            segment = _Segment(
                run_dir / METRICS_DIR, _next_segment(run_dir), tuple(metrics), from_step
            )
        except BaseException:
            os.close(lock)
            raise
        try:
            _write_status(run_dir, "running")
        except BaseException:
            segment.close()
            os.close(lock)
            raise
        return cls(run_dir, segment, from_step, lock)

    # -- writing --------------------------------------------------------------------------

    def _open_segment(self) -> _Segment:
        if self._segment is None:
            raise ValueError(f"the RunWriter for {self.path} is closed.")
        return self._segment

    def append_metrics(self, rows: Mapping[str, ArrayLike]) -> None:
        """Append rows, one 1-D array per metric (all the same length), whole rows or none."""
        segment = self._open_segment()
        missing = [m for m in self.metric_names if m not in rows]
        unexpected = [m for m in rows if m not in self.metric_names]
        if missing or unexpected:
            raise ValueError(
                f"append_metrics needs exactly the metrics {list(self.metric_names)}; "
                f"missing {missing}, unexpected {unexpected}."
            )
        columns = []
        for metric in self.metric_names:
            value = np.asarray(rows[metric])
            if value.ndim == 0:
                value = value.reshape(1)
            if value.ndim != 1 or value.dtype.kind not in "biuf":
                raise ValueError(
                    f"metric {metric!r} must be a 1-D real array (one entry per row), "
                    f"got shape {value.shape} dtype {value.dtype}."
                )
            columns.append(value.astype(np.float64))
        lengths = {len(v) for v in columns}
        if len(lengths) != 1:
            raise ValueError(
                "append_metrics rows differ in length: "
                f"{ {m: len(v) for m, v in zip(self.metric_names, columns)} }; give every "
                "metric the same rows."
            )
        if not len(columns[0]):
            return
        if "step" in self.metric_names:
            step = columns[self.metric_names.index("step")]
            if not np.all(np.isfinite(step)) or np.any(np.diff(np.r_[self._last_step, step]) <= 0):
                raise ValueError(
                    f"metric 'step' must be finite and increasing past {self._last_step}, got "
                    f"{step[:5]}...; log each step once."
                )
        segment.append(np.stack(columns, axis=1))
        if "step" in self.metric_names:
            self._last_step = int(columns[self.metric_names.index("step")][-1])

    def sync(self) -> None:
        """Make the rows appended so far durable (fsync), e.g. before a checkpoint."""
        self._open_segment().sync()

    def set_status(self, status: Status, message: str = "", step: int = -1) -> None:
        """Replace the status (and failure message/step) atomically, rows synced first."""
        self._open_segment().sync()
        if status not in STATUSES:
            raise ValueError(f"status {status!r} is not one of {list(STATUSES)}.")
        _write_status(self.path, status, message, step)
        self._status = status

    def write_results(
        self,
        evaluation: Mapping[str, ArrayLike],
        samples: Mapping[str, ArrayLike],
        nfe: Mapping[str, int | np.integer] | None = None,
        *,
        step: int | None = None,
    ) -> Result:
        """Store the run's own results (metrics, samples, NFE) of the model at ``step``."""
        self._open_segment()
        return add_results(
            self.path,
            f"{RUN_RESULT}-step{self._last_step if step is None else step}",
            kind=RUN_RESULT,
            evaluation=evaluation,
            samples=samples,
            nfe=nfe or {},
            step=self._last_step if step is None else step,
        )

    def close(self) -> None:
        """Stop the heartbeat and close the segment (idempotent); the status is left as is."""
        if self._segment is not None:
            self._heartbeat.stop()
            self._segment.close()
            self._segment = None
            os.close(self._lock)

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        try:
            if self._segment is not None:
                if exc is None:
                    if self._status == "running":
                        try:
                            self.set_status("completed")
                        except OSError as e:
                            if not is_disk_full(e):
                                raise
                            self._disk_full(e)
                            raise
                elif is_disk_full(exc):
                    self._disk_full(exc)
                elif self._status not in ("failed", "stopped"):
                    if isinstance(exc, KeyboardInterrupt | SystemExit):
                        self.set_status("stopped", type(exc).__name__, self._last_step)
                    else:
                        self.set_status("failed", f"{exc_type.__name__}: {exc}", self._last_step)
        finally:
            self.close()
        return False

    def _disk_full(self, exc: OSError) -> None:
        """Release the reserve and record what was kept; a disk too full even for that leaves
        the status ``running``, which readers then show as ``killed``."""
        (self.path / RESERVE_FILE).unlink(missing_ok=True)
        checkpoint = read_checkpoint_step(self.path)
        kept = (
            f"metric rows up to step {self._last_step}"
            + (f" and the checkpoint at step {checkpoint}" if checkpoint is not None else "")
            + " are kept"
        )
        message = (
            f"disk full ({exc.strerror or exc}); {kept}. Free space on "
            f"{self.path.anchor or '/'}, then `diffsde run --resume {self.path}`."
        )
        try:
            _write_status(self.path, "failed", message, self._last_step)  # no sync: it may fail
            self._status = "failed"
        except OSError:
            pass


def _write_status(run_dir: pathlib.Path, state: str, message: str = "", step: int = -1) -> None:
    write_json(
        run_dir / STATUS_FILE,
        {
            "state": state,
            "message": _clip(str(message)),
            "step": int(step),
            "updated": time.time(),
            **_writer_fields(),
        },
        fault="status",
    )


# -- checkpoints ----------------------------------------------------------------------------


def _run_dir(path: PathLike) -> pathlib.Path:
    path = pathlib.Path(path)
    return path.parent if path.name in (RUN_FILE, LEGACY_FILE) else path


def save_checkpoint(run_dir: PathLike, step: int, tree: Any) -> pathlib.Path:
    """Atomically write ``checkpoint.eqx`` (the step and ``tree``) and ``checkpoint.json``.

    Each file goes to a temporary file in ``run_dir``, is fsynced, then renamed over the
    old one, so a crash at any point leaves a loadable checkpoint (the previous or the new
    one). The step is stored inside the ``.eqx`` too; ``checkpoint.json`` is a convenience
    for listings and may lag by one checkpoint after a crash between the two renames.
    """
    import equinox as eqx

    run_dir = _run_dir(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist; create the run first.")
    if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}.")
    step = int(step)
    _atomic_write(
        run_dir / CHECKPOINT_FILE,
        lambda out: eqx.tree_serialise_leaves(out, (np.asarray(step, np.int64), tree)),
        fault="checkpoint",
    )
    meta = {"step": step, "file": CHECKPOINT_FILE, "saved": _now().isoformat()}
    write_json(run_dir / CHECKPOINT_META_FILE, meta)
    return run_dir / CHECKPOINT_FILE


def load_checkpoint(run_dir: PathLike, like: Any) -> tuple[int, Any]:
    """Load ``checkpoint.eqx`` into a tree shaped like ``like``; returns ``(step, tree)``."""
    import equinox as eqx
    import jax

    path = _run_dir(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}; the run saved none yet (is checkpoint_every larger "
            "than the steps it ran?) or this is not a run directory."
        )
    skeleton = (np.asarray(0, np.int64), like)
    try:
        with open(path, "rb") as f:
            step, tree = eqx.tree_deserialise_leaves(f, skeleton)
            trailing = f.read(1)
    except Exception as e:
        raise CheckpointError(
            f"{path} is corrupt or does not match the tree it is loaded into "
            f"({type(e).__name__}: {e}); build the model from the run's spec before "
            "loading, or delete the checkpoint."
        ) from e
    if trailing:
        raise CheckpointError(
            f"{path} holds more leaves than the tree it was loaded into; it was saved from a "
            "different model. Build the model from the run's spec before loading."
        )
    loaded = jax.tree_util.tree_leaves_with_path(tree)
    for (key_path, leaf), expected in zip(loaded, jax.tree_util.tree_leaves(like), strict=True):
        if hasattr(expected, "shape") and hasattr(expected, "dtype"):
            if leaf.shape != expected.shape or leaf.dtype != expected.dtype:
                raise CheckpointError(
                    f"{path}: leaf {jax.tree_util.keystr(key_path)} was saved with shape "
                    f"{leaf.shape} dtype {leaf.dtype}, but the tree to load into has "
                    f"{expected.shape} {expected.dtype}; build the model from the run's spec."
                )
    return int(step), tree


def read_checkpoint_step(run_dir: pathlib.Path) -> int | None:
    """The step of the run's checkpoint from ``checkpoint.json`` (cheap), None if it has none."""
    try:
        step = _read_json(run_dir / CHECKPOINT_META_FILE, "", limit=MAX_STATUS_BYTES)["step"]
    except (RunReadError, KeyError):
        return None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


# -- reading --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class RunRecord:
    """Everything in one run directory, read into plain Python and NumPy (arrays lazily).

    ``status`` is what a reader should show: the stored status, or ``killed`` / ``stale`` for
    a ``running`` run whose writer is gone. ``eval``, ``samples`` and ``nfe`` merge the result
    sets: the newest of each kind's names as they are, other labelled sets as ``label.name``.
    ``problems`` lists damage that was read past (dropped rows, unreadable results).
    """

    id: str
    path: pathlib.Path
    name: str
    status: str
    message: str
    failed_step: int | None
    spec_yaml: str
    spec: dict[str, Any]
    environment: dict[str, str]
    created: datetime.datetime
    updated: datetime.datetime
    host: str
    pid: int
    metrics: dict[str, np.ndarray]
    eval: dict[str, float]
    samples: LazyArrays
    nfe: dict[str, int]
    checkpoint_step: int | None
    results: tuple[Result, ...] = ()
    problems: tuple[str, ...] = ()
    lineage: tuple[dict[str, Any], ...] = ()
    """The runs it took models from (``run.json``'s ``lineage``): role (``init`` or a key
    path), id, path, checkpoint kind and step, and the parent's spec digest."""


class RunProblem(NamedTuple):
    """A directory `list_runs` skipped, and why."""

    path: pathlib.Path
    reason: str


def _heartbeat_time(run_dir: pathlib.Path) -> float | None:
    try:
        return os.stat(run_dir / HEARTBEAT_FILE).st_mtime
    except OSError:
        return None


def _read_head(run_dir: pathlib.Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``run.json`` and ``status.json``, checked: the small files a listing needs."""
    if (run_dir / LEGACY_FILE).exists() and not os.path.lexists(run_dir / RUN_FILE):
        raise RunReadError(
            f"{run_dir} holds a run of format 1 ({LEGACY_FILE}); convert it with "
            f"`diffsde runs --upgrade --runs-dir {run_dir.parent}`."
        )
    if not os.path.lexists(run_dir / RUN_FILE):
        raise RunReadError(f"{run_dir} has no {RUN_FILE}; it is not a run directory.")
    head = _read_json(run_dir / RUN_FILE, "the run cannot be read.")
    if head.get("format") != FORMAT:
        raise RunReadError(
            f"{run_dir / RUN_FILE} is not a diffsde run (format {head.get('format')!r})."
        )
    version = head.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise RunReadError(
            f"{run_dir / RUN_FILE} has run format {version!r}; this diffsde reads up to "
            f"{FORMAT_VERSION}. Upgrade diffsde."
        )
    for key, kind in (
        ("id", str),
        ("name", str),
        ("created", str),
        ("spec", str),
        ("environment", dict),
    ):
        if not isinstance(head.get(key), kind):
            raise RunReadError(f"{run_dir / RUN_FILE} has no valid {key!r}; the run is damaged.")
    status = _read_json(
        run_dir / STATUS_FILE, "the run's status is unknown.", limit=MAX_STATUS_BYTES
    )
    problem = _status_problem(status)
    if problem:
        raise RunReadError(f"{run_dir / STATUS_FILE} has {problem}; the run is damaged.")
    for name in (METRICS_DIR, RESULTS_DIR):
        if (run_dir / name).is_symlink():
            raise RunReadError(
                f"{run_dir / name} is a symbolic link; a run's files stay inside it."
            )
    return head, status


def _is_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _status_problem(status: Mapping[str, Any]) -> str | None:
    """What is wrong with a ``status.json`` object, or None."""
    if status.get("state") not in STATUSES:
        return "no valid state"
    updated = status.get("updated")
    checks = {
        "message": isinstance(status.get("message"), str),
        "step": _is_int(status.get("step"), -1, 2**62),
        "updated": isinstance(updated, int | float)
        and not isinstance(updated, bool)
        and 0 <= updated < 1e11,
        "host": isinstance(status.get("host"), str),
        "pid": _is_int(status.get("pid"), 0, 2**31),
        "process_start": status.get("process_start") is None
        or isinstance(status.get("process_start"), str),
    }
    bad = [name for name, ok in checks.items() if not ok]
    return f"an invalid {', '.join(repr(b) for b in bad)}" if bad else None


def _merge_results(run_dir: pathlib.Path, found: list[tuple[Result, dict]]):
    """The record's ``eval``, ``samples``, ``nfe`` from result sets, oldest first."""
    evaluation: dict[str, float] = {}
    nfe: dict[str, int] = {}
    sources: dict[str, tuple[dict, str]] = {}
    newest_run = max(
        (r.step for r, _ in found if r.kind == RUN_RESULT and r.step is not None), default=None
    )
    for result, summary in found:
        # A result of an older model than the run's newest results is shown under its label.
        own = newest_run is None or result.step is None or result.step == newest_run
        prefix = f"{result.label}." if result.prefixed or not own else ""
        for key, value in result.eval.items():
            evaluation[prefix + key] = value
        for key, count in result.nfe.items():
            nfe[result.label if result.prefixed else prefix + key] = count
        for key in result.arrays:
            name = result.label if (result.prefixed and key == "samples") else prefix + key
            sources[name] = (summary, key)
    return evaluation, LazyArrays(run_dir, sources), nfe


def open_run(path: PathLike) -> RunRecord:
    """Read a run (its directory, or its ``run.json``); no file handle stays open, nothing is
    locked, and a damaged file is refused at once (`RunReadError`, one line)."""
    run_dir = _run_dir(path)
    if not run_dir.is_dir():
        raise RunReadError(f"{run_dir} is not a directory; give a run directory.")
    head, status = _read_head(run_dir)
    problems: list[str] = []
    metrics = _read_metrics(run_dir, problems)
    found = _read_results(run_dir, problems)
    evaluation, samples, nfe = _merge_results(run_dir, found)
    try:
        spec = yaml.safe_load(head["spec"])
        created = datetime.datetime.fromisoformat(head["created"])
        if created.tzinfo is None:
            created = created.astimezone()
    except (yaml.YAMLError, ValueError) as e:
        raise RunReadError(f"{run_dir / RUN_FILE} is damaged ({type(e).__name__}).") from None
    step = status.get("step")
    heartbeat = _heartbeat_time(run_dir)
    updated = max(filter(None, [heartbeat, status.get("updated")]), default=0.0)
    return RunRecord(
        id=head["id"],
        path=run_dir,
        name=head["name"],
        status=_writer_state(status, heartbeat),
        message=str(status.get("message", "")),
        failed_step=step if isinstance(step, int) and step >= 0 else None,
        spec_yaml=head["spec"],
        spec=spec if isinstance(spec, dict) else {},
        environment={str(k): str(v) for k, v in head["environment"].items()},
        created=created,
        updated=datetime.datetime.fromtimestamp(float(updated)).astimezone(),
        host=str(status.get("host", "")),
        pid=int(status.get("pid", -1)),
        metrics=metrics,
        eval=evaluation,
        samples=samples,
        nfe=nfe,
        checkpoint_step=read_checkpoint_step(run_dir),
        results=tuple(r for r, _ in found),
        problems=tuple(problems),
        lineage=_lineage_of(head, problems),
    )


def _lineage_of(head: Mapping[str, Any], problems: list[str]) -> tuple[dict[str, Any], ...]:
    lineage = head.get("lineage", [])
    if isinstance(lineage, list) and all(
        isinstance(e, dict) and isinstance(e.get("id"), str) and isinstance(e.get("role"), str)
        for e in lineage
    ):
        return tuple(lineage)
    problems.append(f"{RUN_FILE} has a damaged 'lineage'; the run's parents are not shown")
    return ()


def is_run_dir(path: PathLike) -> bool:
    """Whether ``path`` is a run directory (of either format), readable or not."""
    path = pathlib.Path(path)
    return os.path.lexists(path / RUN_FILE) or os.path.lexists(path / LEGACY_FILE)


@dataclasses.dataclass(frozen=True)
class StoreEntry:
    """One directory of a runs directory, as `scan_store` found it.

    ``run``: it has a ``run.json`` (a run, readable or not); ``job``: a ``job.json``
    (`diffsde.jobs` launched it; with no ``run.json`` yet it is queued or starting);
    ``legacy``: a format-1 ``run.h5`` and no ``run.json`` (`diffsde runs --upgrade`);
    ``link``: the entry is a symbolic link (to a directory inside the store).
    """

    path: pathlib.Path
    run: bool
    job: bool
    legacy: bool
    link: bool = False


def scan_store(runs_dir: PathLike, *, problems: list[RunProblem] | None = None) -> list[StoreEntry]:
    """Every directory of ``runs_dir``, by name: the one walk of a store that the listing, the
    queue, the upgrade and the dashboard share.

    Hidden names (the queue's lock and log files) and plain files are passed over; a symbolic
    link is followed only to a directory inside the store, and one that cannot be followed or
    leads out of it is a `RunProblem` (pass a list as ``problems``). `FileNotFoundError` when
    the store does not exist.
    """
    runs_dir = pathlib.Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"runs directory {runs_dir} does not exist; train a run first.")
    found = []
    store = runs_dir.resolve()
    for child in sorted(runs_dir.iterdir()):
        if child.name.startswith("."):
            continue
        link = child.is_symlink()
        if link:
            try:
                target = child.resolve(strict=True)
            except (OSError, RuntimeError) as e:  # a loop, a dangling link
                if problems is not None:
                    problems.append(
                        RunProblem(child, f"a symbolic link that cannot be followed ({e})")
                    )
                continue
            if store not in target.parents:
                if problems is not None:
                    problems.append(
                        RunProblem(
                            child, f"a symbolic link to {target}, outside the store; not followed"
                        )
                    )
                continue
        if not child.is_dir():
            continue
        run = os.path.lexists(child / RUN_FILE)
        legacy = not run and os.path.lexists(child / LEGACY_FILE)
        found.append(StoreEntry(child, run, (child / JOB_FILE).is_file(), legacy, link))
    return found


def list_runs(runs_dir: PathLike, *, problems: list[RunProblem] | None = None) -> list[RunRecord]:
    """Every readable run in ``runs_dir``, oldest first, in time bounded by the size of the
    small files (no lock is waited for).

    Entries that are not readable runs (no ``run.json``, damaged files, format 1 runs not yet
    upgraded, symbolic links out of the store) are skipped; pass a list as ``problems`` to
    receive a `RunProblem` for each. Queued jobs (``job.json``, no run yet) are not problems.
    """
    records = []
    for entry in scan_store(runs_dir, problems=problems):
        if entry.job and not entry.run and not entry.legacy:
            continue  # queued or starting: not a run yet, not a problem
        try:
            records.append(open_run(entry.path))
        except RunReadError as e:
            if problems is not None:
                problems.append(RunProblem(entry.path, str(e)))
        except (Exception, RecursionError) as e:  # damage no check foresaw: still one line
            if problems is not None:
                problems.append(RunProblem(entry.path, f"cannot be read ({type(e).__name__}: {e})"))
    records.sort(key=lambda r: (r.created, r.id))
    return records


def run_state(run_path: PathLike) -> str | None:
    """What a reader shows for the run (`STATES`: the stored state, ``killed``/``stale`` for a
    dead writer) from its status file and heartbeat alone: cheap enough to poll over a whole
    store. None when the status is missing or damaged."""
    run_dir = _run_dir(run_path)
    status = _sound_status(run_dir)
    return None if status is None else _writer_state(status, _heartbeat_time(run_dir))


def _sound_status(run_dir: pathlib.Path) -> dict | None:
    """The run's status file, or None when it is missing or damaged."""
    try:
        status = _read_json(run_dir / STATUS_FILE, "", limit=MAX_STATUS_BYTES)
    except RunReadError:
        return None
    return None if _status_problem(status) else status


# -- summaries ------------------------------------------------------------------------------

RATE_WINDOW = 20  # dispatches (distinct wall times) the training rate and ETA are measured over
RESUMABLE = ("stopped", "failed", "killed", "stale")  # what `diffsde run --resume` continues
SECTIONS = ("sde", "data", "model", "objective", "sampler")  # the sections whose type is shown


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """What a line about a run says, wherever runs are listed: ``diffsde runs``, the dashboard's
    runs table, Compare, the Monitor and the queue (`diffsde.jobs.summaries`).

    ``state`` is the reader's (`STATES`), or for a job with no run yet ``queued``, ``starting``,
    ``cancelled`` or ``finished``; ``live`` says whether it is queued, starting or running.
    ``step`` is the last logged step of ``steps`` (the spec's ``training.steps``); ``rate`` (steps
    per second over the last `RATE_WINDOW` dispatches), ``eta`` and ``elapsed`` (training wall
    time) are None until known. ``eval`` and ``nfe`` are the run's own results; ``sample_eval``
    the metrics of labelled `diffsde sample` sets (``label.metric``). ``types`` maps the spec's
    sections to their ``type``. ``record`` is the run read (None for a job not started).
    """

    path: pathlib.Path
    id: str
    name: str
    state: str
    live: bool
    message: str = ""
    failed_step: int | None = None
    seed: int | None = None
    created: datetime.datetime | None = None
    step: int = 0
    steps: int = 0
    elapsed: float | None = None
    rate: float | None = None
    eta: float | None = None
    loss: float | None = None
    checkpoint_step: int | None = None
    eval: Mapping[str, float] = dataclasses.field(default_factory=dict)
    sample_eval: Mapping[str, float] = dataclasses.field(default_factory=dict)
    nfe: Mapping[str, int] = dataclasses.field(default_factory=dict)
    types: Mapping[str, str] = dataclasses.field(default_factory=dict)
    problems: tuple[str, ...] = ()
    record: RunRecord | None = dataclasses.field(default=None, repr=False, compare=False)
    lineage: tuple[dict[str, Any], ...] = ()
    """The runs it took models from (`RunRecord.lineage`)."""

    @property
    def parents(self) -> str:
        """The lineage in a few characters: ``init←1a2b3c@2000, method.teacher←4d5e6f@500``."""
        return ", ".join(
            f"{e['role']}←{str(e['id']).rsplit('-', 1)[-1]}@{e.get('step', '?')}"
            for e in self.lineage
        )

    @property
    def short_id(self) -> str:
        """The random tail of the id (``20260101-120000-name-1a2b3c`` → ``1a2b3c``): unique in
        a store and short enough for a legend."""
        return self.id.rsplit("-", 1)[-1]

    @property
    def label(self) -> str:
        """How a run is named wherever runs are told apart: ``name · seed 3 · 1a2b3c``."""
        seed = f" · seed {self.seed}" if self.seed is not None else ""
        return f"{self.name}{seed} · {self.short_id}"

    @property
    def fraction(self) -> float:
        """How much of the training budget is done, in [0, 1]."""
        return min(self.step / self.steps, 1.0) if self.steps > 0 else 0.0

    @property
    def resumable(self) -> bool:
        """A run not live that ended `RESUMABLE` (`diffsde.jobs.resume` can continue it)."""
        return not self.live and self.record is not None and self.state in RESUMABLE


def _last(values: np.ndarray | None) -> float | None:
    return float(values[-1]) if values is not None and len(values) else None


def _rate(steps: np.ndarray, wall: np.ndarray) -> float | None:
    """Steps per second between the last rows of the last `RATE_WINDOW` dispatches (the rows of
    one dispatch share a wall time); with one dispatch only, since training started."""
    length = min(len(wall), len(steps))
    wall, steps = wall[:length].astype(float), steps[:length].astype(float)
    ends = np.append(wall[1:] != wall[:-1], True)  # the last row of each dispatch
    times, counts = wall[ends], steps[ends]
    if len(times) >= 2:
        first = max(0, len(times) - 1 - RATE_WINDOW)
        seconds, done = times[-1] - times[first], counts[-1] - counts[first]
    else:
        seconds, done = times[-1], counts[-1]
    ok = seconds > 0 and done > 0 and math.isfinite(seconds)
    return float(done / seconds) if ok else None


def summarise(record: RunRecord) -> RunSummary:
    """The `RunSummary` of a run read with `open_run`."""
    spec = record.spec
    training = spec.get("training") if isinstance(spec.get("training"), dict) else {}
    total = training.get("steps", 0)
    total = total if _is_int(total, 0, 2**62) else 0
    seed = spec.get("seed")
    metrics = record.metrics
    step = _last(metrics.get("step"))
    wall = metrics.get("wall_time")
    rate = None
    if step is not None and wall is not None and len(wall):
        rate = _rate(metrics["step"], wall)
    step = int(step) if step is not None and math.isfinite(step) else 0
    return RunSummary(
        path=record.path,
        id=record.id,
        name=record.name,
        state=record.status,
        live=record.status == "running",
        message=record.message,
        failed_step=record.failed_step,
        seed=seed if _is_int(seed, -(2**62), 2**62) else None,
        created=record.created,
        step=step,
        steps=total,
        elapsed=_last(wall),
        rate=rate,
        eta=max(total - step, 0) / rate if rate else None,
        loss=_last(metrics.get("loss")),
        checkpoint_step=record.checkpoint_step,
        eval={k: v for k, v in record.eval.items() if "." not in k},
        sample_eval={k: v for k, v in record.eval.items() if "." in k},
        nfe=dict(record.nfe),
        types={
            section: str(spec[section].get("type", "-"))
            for section in SECTIONS
            if isinstance(spec.get(section), dict)
        },
        problems=record.problems,
        record=record,
        lineage=record.lineage,
    )


def _number(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4g}"


def summary_row(record: RunRecord | RunSummary) -> dict[str, str]:
    """One line of ``diffsde runs`` for a run: id, name, types, status, progress, metrics."""
    summary = record if isinstance(record, RunSummary) else summarise(record)
    status = summary.state
    if summary.failed_step is not None:
        status = f"{status}@{summary.failed_step}"
    row = {
        "id": summary.id,
        "name": summary.name,
        "sde": summary.types.get("sde", "-"),
        "objective": summary.types.get("objective", "-"),
        "status": status,
        "steps": str(summary.step),
        "loss": "-" if summary.loss is None else _number(summary.loss),
    }
    if summary.lineage:
        row["parents"] = summary.parents
    row.update({key: _number(value) for key, value in summary.eval.items()})
    return row


def format_table(rows: Sequence[Mapping[str, str]]) -> str:
    """Rows of `summary_row` as an aligned text table; columns missing in a row show ``-``."""
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    if not columns:
        return ""
    cells = [columns] + [[str(row.get(c, "-")) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# -- managing --------------------------------------------------------------------------------


def writer_alive(record: RunRecord) -> bool:
    """Whether the process recorded as writing ``record`` is still running (and not this one)."""
    return record.status == "running" and not (
        record.host == socket.gethostname() and record.pid == os.getpid()
    )


def run_is_live(run_path: PathLike) -> bool:
    """`writer_alive` from the status file alone: cheap enough to poll over a whole runs
    directory. False if unreadable."""
    run_dir = _run_dir(run_path)
    status = _sound_status(run_dir)
    if status is None:
        return False
    same = status.get("host") == socket.gethostname() and status.get("pid") == os.getpid()
    return not same and _writer_state(status, _heartbeat_time(run_dir)) == "running"


def _idle_record(run_path: PathLike, action: str) -> RunRecord:
    record = open_run(run_path)
    if writer_alive(record):
        raise RunBusyError(
            f"{record.path} is running (process {record.pid} on {record.host}); stop it before "
            f"you {action} it."
        )
    return record


def mark_abandoned(run_path: PathLike, status: Status, message: str) -> bool:
    """Give a run whose writer died (killed, or never reached its own handler) a final status;
    False if the run already has one. Everything else is kept."""
    record = _idle_record(run_path, "mark")
    if record.status not in ("killed", "stale"):
        return False
    try:
        lock = _claim(record.path)
    except RunBusyError:
        return False  # a resume took the run over meanwhile
    try:
        if _read_head(record.path)[1].get("pid") != record.pid:
            return False
        _write_status(record.path, status, message, record.failed_step or -1)
    finally:
        os.close(lock)
    return True


def rename_run(run_path: PathLike, name: str) -> None:
    """Give a finished run a new display name (its directory and id stay as they are); the
    name is checked before anything is written, and ``run.json`` is replaced atomically."""
    name = check_name(name)
    record = _idle_record(run_path, "rename")
    head, _ = _read_head(record.path)
    write_json(record.path / RUN_FILE, {**head, "name": name})


def delete_run(run_path: PathLike, runs_dir: PathLike) -> None:
    """Delete a run directory that lies directly in ``runs_dir`` and is not being written."""
    run_dir = _run_dir(run_path)
    if run_dir.is_symlink() or run_dir.resolve().parent != pathlib.Path(runs_dir).resolve():
        raise RunReadError(f"{run_dir} is not a run directory of {runs_dir}; not deleting.")
    try:
        _idle_record(run_dir, "delete")
    except RunBusyError:
        raise
    except RunReadError:
        pass  # a damaged run can still be deleted
    shutil.rmtree(run_dir)
