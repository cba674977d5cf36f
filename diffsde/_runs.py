"""The on-disk run format: one directory per run, holding ``run.h5`` and a checkpoint.

Layout of ``runs_dir/<YYYYmmdd-HHMMSS>-<name>-<random>/run.h5`` (HDF5, ``libver='latest'``)::

    /                 attrs: format="diffsde-run", format_version, id, name, created, host, pid
    /spec             scalar UTF-8 string: the resolved spec as YAML
    /environment      group; attrs: python, jax, equinox, diffrax, optax, diffsde, ..., device
    /status/state     scalar fixed-size bytes: running | completed | failed | stopped
    /status/message   scalar fixed-size bytes (UTF-8, truncated to MESSAGE_BYTES)
    /status/step      scalar int64: the step of a failure, -1 if none
    /status/updated   scalar float64: unix time of the last append or status change
    /metrics/<name>   1-D float64, resizable, one entry per logged row (NaN fill)
    /eval             attrs: name -> float         (written by write_results)
    /samples/<name>   arrays                        (written by write_results)
    /nfe              attrs: name -> int            (written by write_results)

Crash safety comes from HDF5's single-writer/multiple-reader (SWMR) mode. Everything the
training loop touches is created up front and the file is switched to SWMR at once; from
then on the writer only resizes and overwrites existing datasets and flushes after each
append, so a file whose writer is killed (even with SIGKILL) stays readable with every
flushed row. SWMR forbids creating objects or attributes, which is why the status is a set
of fixed-size datasets overwritten in place rather than attributes.

SWMR caveats (HDF5 2.0 / h5py 3.16, checked by tests/test_runs.py):

- A file whose writer died while in SWMR mode can only be opened by SWMR readers
  (``h5py.File(p, "r", libver="latest", swmr=True)``), never again for writing or by a plain
  reader, until its superblock's consistency flags are cleared: ``h5clear -s run.h5``
  (HDF5 command-line tools) or `RunWriter.reopen`, which does the same after checking that
  the recorded writer process is gone. Its status stays ``running`` until then;
  ``RunRecord.updated`` (and ``host``/``pid``) tell a reader how stale it is.
- ``write_results`` needs new groups, so it closes the SWMR file, reopens it in plain
  append mode, writes, and re-enters SWMR. A reader opening in those milliseconds fails;
  ``open_run`` retries. A process killed inside that window leaves the file readable by
  nobody until ``h5clear -s`` or `RunWriter.reopen`.
- An open SWMR reader holds HDF5's file lock, which blocks the writer's reopen. `open_run`
  closes at once, so the writer waits up to ``_LOCK_WAIT`` seconds; if a long-lived reader
  elsewhere still holds the file, it reopens with ``locking=False`` rather than lose the
  results (that reader may see errors meanwhile: it should close and reopen). Within one
  process HDF5 refuses to open a file twice with different ``locking`` values, so after
  such a fallback `open_run` in the writer's own process retries with ``locking=False``.

Checkpoints live beside ``run.h5``: ``checkpoint.eqx`` (``eqx.tree_serialise_leaves`` of
``(step, tree)``) and ``checkpoint.json`` (``{"step": ...}`` for cheap listing), each
written to a temporary file in the same directory, fsynced and renamed over the old one.

A run launched from the dashboard (`diffsde.jobs`) also holds ``spec.yaml`` (what was
launched), ``job.json`` (queue state, process id) and ``log.txt`` (the process's output); until
its process starts, the directory has no ``run.h5`` and `list_runs` passes over it.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
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
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

import h5py
import numpy as np
import yaml
from jaxtyping import ArrayLike

FORMAT = "diffsde-run"
FORMAT_VERSION = 1
RUN_FILE = "run.h5"
CHECKPOINT_FILE = "checkpoint.eqx"
CHECKPOINT_META_FILE = "checkpoint.json"
JOB_FILE = "job.json"  # a run launched by `diffsde.jobs`: queued until its run.h5 appears
STATUSES = ("running", "completed", "failed", "stopped")
MESSAGE_BYTES = 8192
_STATUS_BYTES = 16
_METRIC_CHUNK = 1024
_LOCK_WAIT = 2.0  # seconds write_results waits for readers to release run.h5

Status = Literal["running", "completed", "failed", "stopped"]
PathLike = str | os.PathLike[str]


class RunReadError(Exception):
    """A path that is not a readable diffsde run; the message says why and what to do."""


class CheckpointError(Exception):
    """A checkpoint that is missing, corrupt, or does not match the tree to load into."""


def environment() -> dict[str, str]:
    """The versions and device a run is trained with, as stored in ``run.h5``."""
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


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    if not slug:
        raise ValueError(f"run name {name!r} has no letters or digits; give the run a name.")
    return slug


def _check_h5_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise ValueError(
            f"{what} name {name!r} is not usable in HDF5; use a non-empty name without '/'."
        )


def _fsync_dir(directory: pathlib.Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _encode_message(message: str) -> bytes:
    data = message.encode("utf-8")
    if len(data) <= MESSAGE_BYTES:
        return data
    marker = b" [truncated]"
    data = data[: MESSAGE_BYTES - len(marker)]
    # Drop a multi-byte character cut in half.
    return data.decode("utf-8", errors="ignore").encode("utf-8") + marker


def _reopen_for_append(file_path: pathlib.Path) -> h5py.File:
    deadline = time.monotonic() + _LOCK_WAIT
    delay = 0.01
    while True:
        try:
            return h5py.File(file_path, "a", libver="latest")
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise
            if time.monotonic() > deadline:
                break
        time.sleep(delay)
        delay = min(2 * delay, 0.2)
    # A reader elsewhere keeps the file open (and locked); writing without the lock is
    # safe for the file (this is its only writer) and only disturbs that reader.
    return h5py.File(file_path, "a", libver="latest", locking=False)


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & 0xFFFFFFFF


def _words(chunk: bytes) -> tuple[int, int, int]:
    return tuple(int.from_bytes(chunk[i : i + 4], "little") for i in (0, 4, 8))


def _lookup3(data: bytes) -> int:
    """Bob Jenkins' lookup3 ``hashlittle`` with seed 0: HDF5's metadata checksum."""
    m = 0xFFFFFFFF
    a = b = c = (0xDEADBEEF + len(data)) & m
    pos = 0
    while len(data) - pos > 12:
        x, y, z = _words(data[pos : pos + 12])
        a, b, c = (a + x) & m, (b + y) & m, (c + z) & m
        a = ((a - c) & m) ^ _rot(c, 4)
        c = (c + b) & m
        b = ((b - a) & m) ^ _rot(a, 6)
        a = (a + c) & m
        c = ((c - b) & m) ^ _rot(b, 8)
        b = (b + a) & m
        a = ((a - c) & m) ^ _rot(c, 16)
        c = (c + b) & m
        b = ((b - a) & m) ^ _rot(a, 19)
        a = (a + c) & m
        c = ((c - b) & m) ^ _rot(b, 4)
        b = (b + a) & m
        pos += 12
    if pos == len(data):
        return c
    x, y, z = _words(data[pos:].ljust(12, b"\0"))
    a, b, c = (a + x) & m, (b + y) & m, (c + z) & m
    c = ((c ^ b) - _rot(b, 14)) & m
    a = ((a ^ c) - _rot(c, 11)) & m
    b = ((b ^ a) - _rot(a, 25)) & m
    c = ((c ^ b) - _rot(b, 16)) & m
    a = ((a ^ c) - _rot(c, 4)) & m
    b = ((b ^ a) - _rot(a, 14)) & m
    c = ((c ^ b) - _rot(b, 24)) & m
    return c


_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _clear_open_flags(file_path: pathlib.Path) -> None:
    """What ``h5clear -s`` does: zero the superblock's "open for (SWMR) write" flags.

    HDF5 sets them while a writer has the file open and clears them on close; a killed
    writer leaves them set, and HDF5 then refuses to open the file for writing. Only for
    files whose writer is known to be dead: the caller checks.
    """
    with open(file_path, "r+b") as f:
        head = f.read(12)
        if len(head) < 12 or head[:8] != _SIGNATURE or head[8] not in (2, 3):
            raise RunReadError(f"{file_path}: not an HDF5 file with a version 2/3 superblock.")
        size = 12 + 4 * head[9]
        block = head + f.read(size - 12 + 4)
        if _lookup3(block[:size]) != int.from_bytes(block[size : size + 4], "little"):
            raise RunReadError(f"{file_path}: superblock checksum mismatch; the file is damaged.")
        patched = block[:11] + b"\0" + block[12:size]
        f.seek(0)
        f.write(patched + _lookup3(patched).to_bytes(4, "little"))
        f.flush()
        os.fsync(f.fileno())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def _open_idle_for_append(file_path: pathlib.Path) -> h5py.File:
    """Open a run's file for writing when no live process writes it; a file whose writer
    died in SWMR mode gets its "open for writing" flags cleared first (``h5clear -s``)."""
    try:
        return h5py.File(file_path, "a", libver="latest")
    except OSError as e:
        if "already open for write" not in str(e):
            raise RunReadError(f"cannot open {file_path} for writing: {e}") from e
        with h5py.File(file_path, "r", libver="latest", swmr=True) as old:
            host, pid = _text(old.attrs["host"]), int(old.attrs["pid"])
        if host == socket.gethostname() and pid != os.getpid() and _pid_alive(pid):
            raise RunReadError(
                f"{file_path} is still being written by process {pid}; stop the run first."
            ) from e
        _clear_open_flags(file_path)
        return h5py.File(file_path, "a", libver="latest")


class RunWriter:
    """Writes one run's ``run.h5``; make one with `RunWriter.create`.

    Use as a context manager. Leaving the block normally marks a still-running run
    ``completed``; an exception marks it ``failed`` with the exception as message and the
    last logged ``step`` (if there is a ``step`` metric), ``KeyboardInterrupt`` and
    ``SystemExit`` mark it ``stopped``. A status already set to ``failed`` or ``stopped`` by
    the caller is kept. No signal handlers are installed here: SIGTERM is the trainer's.
    """

    def __init__(self, run_dir: pathlib.Path, file: h5py.File, metric_names: tuple[str, ...]):
        self.path = run_dir
        self.id = run_dir.name
        self.file_path = run_dir / RUN_FILE
        self.metric_names = metric_names
        self._file: h5py.File | None = file
        self._status: str = "running"
        self._last_step = -1

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
    ) -> RunWriter:
        """Make ``runs_dir/<YYYYmmdd-HHMMSS>-<name>-<random>/run.h5`` (or ``run_dir/run.h5``,
        for a directory made beforehand by `new_run_dir`) and enter SWMR mode.

        ``metrics`` names the per-row series the trainer will log (e.g. ``step``,
        ``wall_time``, ``loss``, ``lr``, ``grad_norm``); every `append_metrics` call must
        give all of them.
        """
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
        for metric in metric_names:
            _check_h5_name(metric, "metric")
        if len(set(metric_names)) != len(metric_names):
            raise ValueError(f"metrics {list(metric_names)} has duplicates; name each once.")

        created = _now()
        if run_dir is None:
            run_dir = new_run_dir(runs_dir, name, created)
        else:
            run_dir = pathlib.Path(run_dir)
            if (run_dir / RUN_FILE).exists():
                raise ValueError(f"{run_dir} already holds a run; give a new directory.")
            run_dir.mkdir(parents=True, exist_ok=True)
        run_id = run_dir.name

        f = h5py.File(run_dir / RUN_FILE, "w", libver="latest")
        try:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["id"] = run_id
            f.attrs["name"] = name
            f.attrs["created"] = created.isoformat()
            f.attrs["host"] = socket.gethostname()
            f.attrs["pid"] = os.getpid()
            f.create_dataset("spec", data=resolved_yaml, dtype=h5py.string_dtype("utf-8"))
            env_group = f.create_group("environment")
            for key, value in env.items():
                env_group.attrs[key] = value
            status = f.create_group("status")
            status.create_dataset("state", data=np.bytes_(b"running"), dtype=f"S{_STATUS_BYTES}")
            status.create_dataset("message", data=np.bytes_(b""), dtype=f"S{MESSAGE_BYTES}")
            status.create_dataset("step", data=np.int64(-1))
            status.create_dataset("updated", data=np.float64(time.time()))
            group = f.create_group("metrics")
            for metric in metric_names:
                group.create_dataset(
                    metric,
                    shape=(0,),
                    maxshape=(None,),
                    dtype=np.float64,
                    chunks=(_METRIC_CHUNK,),
                    fillvalue=np.nan,
                )
            f.flush()
            f.swmr_mode = True
        except BaseException:
            f.close()
            raise
        return cls(run_dir, f, metric_names)

    @classmethod
    def reopen(cls, run_path: PathLike, *, truncate_after_step: int) -> RunWriter:
        """Continue writing an existing run (to resume it from a checkpoint).

        Drops metric rows logged after ``truncate_after_step`` (the checkpoint's step) and
        any results, sets the status back to ``running`` and enters SWMR mode. A run whose
        writer was killed is reopened after clearing HDF5's "open for writing" flags (as
        ``h5clear -s`` would), unless its recorded writer process is still alive on this
        host.
        """
        run_dir = _run_dir(run_path)
        file_path = run_dir / RUN_FILE
        if not file_path.is_file():
            raise RunReadError(f"{run_dir} has no {RUN_FILE}; it is not a run directory.")
        f = _open_idle_for_append(file_path)
        try:
            if _text(f.attrs.get("format", "")) != FORMAT:
                raise RunReadError(f"{file_path} is an HDF5 file but not a diffsde run.")
            group = f["metrics"]
            if "step" not in group:
                raise RunReadError(f"{file_path} has no 'step' metric to truncate by.")
            steps = group["step"][...]
            later = np.flatnonzero(steps > truncate_after_step)
            keep = min(
                int(later[0]) if later.size else len(steps), *(ds.shape[0] for ds in group.values())
            )
            for dataset in group.values():
                dataset.resize((keep,))
            for name in ("eval", "samples", "nfe"):
                if name in f:
                    del f[name]
            f.attrs["host"] = socket.gethostname()
            f.attrs["pid"] = os.getpid()
            status = f["status"]
            status["state"][()] = np.bytes_(b"running")
            status["message"][()] = np.bytes_(b"")
            status["step"][()] = np.int64(-1)
            status["updated"][()] = time.time()
            f.flush()
            f.swmr_mode = True
        except BaseException:
            f.close()
            raise
        writer = cls(run_dir, f, tuple(group.keys()))
        writer._last_step = int(steps[keep - 1]) if keep else -1
        return writer

    # -- writing --------------------------------------------------------------------------

    def _open_file(self) -> h5py.File:
        if self._file is None:
            raise ValueError(f"the RunWriter for {self.file_path} is closed.")
        return self._file

    def append_metrics(self, rows: Mapping[str, ArrayLike]) -> None:
        """Append rows, one 1-D array per metric (all the same length), then flush."""
        f = self._open_file()
        missing = [m for m in self.metric_names if m not in rows]
        unexpected = [m for m in rows if m not in self.metric_names]
        if missing or unexpected:
            raise ValueError(
                f"append_metrics needs exactly the metrics {list(self.metric_names)}; "
                f"missing {missing}, unexpected {unexpected}."
            )
        columns = {}
        for metric in self.metric_names:
            value = np.asarray(rows[metric])
            if value.ndim == 0:
                value = value.reshape(1)
            if value.ndim != 1 or value.dtype.kind not in "biuf":
                raise ValueError(
                    f"metric {metric!r} must be a 1-D real array (one entry per row), "
                    f"got shape {value.shape} dtype {value.dtype}."
                )
            columns[metric] = value.astype(np.float64)
        lengths = {len(v) for v in columns.values()}
        if len(lengths) != 1:
            raise ValueError(
                "append_metrics rows differ in length: "
                f"{ {k: len(v) for k, v in columns.items()} }; give every metric the same rows."
            )
        (n,) = lengths
        if n == 0:
            return
        group = f["metrics"]
        for metric, value in columns.items():
            dataset = group[metric]
            start = dataset.shape[0]
            dataset.resize((start + n,))
            dataset[start:] = value
        if "step" in columns:
            self._last_step = int(columns["step"][-1])
        f["status/updated"][()] = time.time()
        f.flush()

    def set_status(self, status: Status, message: str = "", step: int = -1) -> None:
        """Overwrite the status (and failure message/step) in place and flush; SWMR-safe."""
        f = self._open_file()
        if status not in STATUSES:
            raise ValueError(f"status {status!r} is not one of {list(STATUSES)}.")
        f["status/state"][()] = np.bytes_(status.encode())
        f["status/message"][()] = np.bytes_(_encode_message(str(message)))
        f["status/step"][()] = np.int64(step)
        f["status/updated"][()] = time.time()
        f.flush()
        self._status = status

    def write_results(
        self,
        evaluation: Mapping[str, ArrayLike],
        samples: Mapping[str, ArrayLike],
        nfe: Mapping[str, int | np.integer] | None = None,
    ) -> None:
        """Store evaluation metrics, sample arrays and NFE counts (replacing earlier ones).

        SWMR forbids new objects, so this closes the file, reopens it in plain append mode,
        writes ``/eval``, ``/samples``, ``/nfe`` and re-enters SWMR; readers opening in those
        milliseconds fail (`open_run` retries), and a kill inside them leaves the file
        unreadable until ``h5clear -s``. Inputs are validated before the file is touched.
        """
        self._open_file()
        values = {}
        for key, value in evaluation.items():
            _check_h5_name(key, "evaluation metric")
            array = np.asarray(value)
            if array.size != 1 or array.dtype.kind not in "biuf":
                raise ValueError(f"evaluation[{key!r}] must be one real number, got {value!r}.")
            values[key] = float(array.reshape(()))
        arrays = {}
        for key, value in samples.items():
            _check_h5_name(key, "samples")
            array = np.asarray(value)
            if array.dtype.kind not in "biuf":
                raise ValueError(f"samples[{key!r}] must be a real array, got dtype {array.dtype}.")
            arrays[key] = array
        counts = {}
        for key, value in (nfe or {}).items():
            _check_h5_name(key, "nfe")
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ValueError(f"nfe[{key!r}] must be an int, got {value!r}.")
            counts[key] = int(value)

        self._file.close()
        self._file = None
        f = _reopen_for_append(self.file_path)
        try:
            for group_name in ("eval", "samples", "nfe"):
                if group_name in f:
                    del f[group_name]
            eval_group = f.create_group("eval")
            for key, value in values.items():
                eval_group.attrs[key] = value
            samples_group = f.create_group("samples")
            for key, array in arrays.items():
                samples_group.create_dataset(key, data=array)
            nfe_group = f.create_group("nfe")
            for key, count in counts.items():
                nfe_group.attrs[key] = np.int64(count)
            f["status/updated"][()] = time.time()
            f.flush()
        finally:
            f.swmr_mode = True
            self._file = f

    def close(self) -> None:
        """Close the file (idempotent); the run's status is left as it is."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        try:
            if self._file is not None:
                if exc is None:
                    if self._status == "running":
                        self.set_status("completed")
                elif self._status not in ("failed", "stopped"):
                    if isinstance(exc, KeyboardInterrupt | SystemExit):
                        self.set_status("stopped", type(exc).__name__, self._last_step)
                    else:
                        self.set_status("failed", f"{exc_type.__name__}: {exc}", self._last_step)
        finally:
            self.close()
        return False


def add_results(
    run_path: PathLike,
    evaluation: Mapping[str, float],
    samples: Mapping[str, Any],
    nfe: Mapping[str, int],
    *,
    label: str | None = None,
) -> None:
    """Add (or replace) results in a finished run, e.g. from ``diffsde sample`` or ``eval``.

    With a ``label``, samples and NFE are stored under ``label`` and metrics as
    ``label.metric``, beside the run's own results; without one, the names are used as given.
    The run must not be running: its writer holds the file.
    """
    run_dir = _run_dir(run_path)
    file_path = run_dir / RUN_FILE
    prefix = f"{label}." if label else ""
    if label is not None:
        _check_h5_name(label, "results label")
    try:
        f = h5py.File(file_path, "a", libver="latest")
    except OSError as e:
        raise RunReadError(
            f"cannot add results to {file_path}: {e}; is the run still running?"
        ) from e
    with f:
        groups = {name: f.require_group(name) for name in ("eval", "samples", "nfe")}
        for key, value in evaluation.items():
            groups["eval"].attrs[prefix + key] = float(value)
        for key, value in samples.items():
            name = label if (label and key == "samples") else prefix + key
            _check_h5_name(name, "samples")
            if name in groups["samples"]:
                del groups["samples"][name]
            groups["samples"].create_dataset(name, data=np.asarray(value))
        for key, count in nfe.items():
            groups["nfe"].attrs[label or key] = np.int64(count)
        f["status/updated"][()] = time.time()


# -- checkpoints ----------------------------------------------------------------------------


def _run_dir(path: PathLike) -> pathlib.Path:
    path = pathlib.Path(path)
    return path.parent if path.name == RUN_FILE or path.suffix == ".h5" else path


def _atomic_write(target: pathlib.Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(target.parent)


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
    )
    meta = {"step": step, "file": CHECKPOINT_FILE, "saved": _now().isoformat()}
    _atomic_write(run_dir / CHECKPOINT_META_FILE, lambda out: out.write(json.dumps(meta).encode()))
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


# -- reading --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class RunRecord:
    """Everything in one run directory, read into plain Python and NumPy."""

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
    samples: dict[str, np.ndarray]
    nfe: dict[str, int]
    checkpoint_step: int | None


class RunProblem(NamedTuple):
    """A directory `list_runs` skipped, and why."""

    path: pathlib.Path
    reason: str


class _NotARun(Exception):
    pass


def _text(value: Any) -> str:
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _read(f: h5py.File, run_dir: pathlib.Path) -> RunRecord:
    if _text(f.attrs.get("format", "")) != FORMAT:
        raise _NotARun(f"{run_dir / RUN_FILE} is an HDF5 file but not a diffsde run")
    version = int(f.attrs["format_version"])
    if version > FORMAT_VERSION:
        raise _NotARun(
            f"{run_dir / RUN_FILE} has run format {version}; this diffsde reads up to "
            f"{FORMAT_VERSION}. Upgrade diffsde."
        )
    metrics = {name: np.asarray(ds[...], np.float64) for name, ds in f["metrics"].items()}
    length = min((len(v) for v in metrics.values()), default=0)
    metrics = {name: v[:length] for name, v in metrics.items()}
    spec_yaml = _text(f["spec"][()])
    status = f["status"]
    failed_step = int(status["step"][()])
    return RunRecord(
        id=_text(f.attrs["id"]),
        path=run_dir,
        name=_text(f.attrs["name"]),
        status=_text(status["state"][()]),
        message=_text(status["message"][()]),
        failed_step=None if failed_step < 0 else failed_step,
        spec_yaml=spec_yaml,
        spec=yaml.safe_load(spec_yaml),
        environment={k: _text(v) for k, v in f["environment"].attrs.items()},
        created=datetime.datetime.fromisoformat(_text(f.attrs["created"])),
        updated=datetime.datetime.fromtimestamp(float(status["updated"][()])).astimezone(),
        host=_text(f.attrs["host"]),
        pid=int(f.attrs["pid"]),
        metrics=metrics,
        eval={k: float(v) for k, v in f["eval"].attrs.items()} if "eval" in f else {},
        samples={k: ds[...] for k, ds in f["samples"].items()} if "samples" in f else {},
        nfe={k: int(v) for k, v in f["nfe"].attrs.items()} if "nfe" in f else {},
        checkpoint_step=_checkpoint_step(run_dir),
    )


def _checkpoint_step(run_dir: pathlib.Path) -> int | None:
    try:
        step = json.loads((run_dir / CHECKPOINT_META_FILE).read_text())["step"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return step if isinstance(step, int) else None


def _transient_open_error(e: OSError) -> bool:
    # EAGAIN: a writer holds the lock; "SWMR": the writer is between SWMR sessions.
    return e.errno in (errno.EAGAIN, errno.EWOULDBLOCK) or "SWMR" in str(e)


def _open_swmr_reader(file_path: pathlib.Path) -> h5py.File:
    try:
        return h5py.File(file_path, "r", libver="latest", swmr=True)
    except OSError as e:
        if "locking flag values don't match" not in str(e):
            raise
    # This process writes the file and had to drop the lock (see `_reopen_for_append`).
    return h5py.File(file_path, "r", libver="latest", swmr=True, locking=False)


def open_run(path: PathLike, *, retries: int = 5, retry_delay: float = 0.05) -> RunRecord:
    """Read a run (its directory or its ``run.h5``); no file handle stays open.

    Opens as an SWMR reader, so it works on a run being written and on one whose writer
    was killed. Transient failures (the writer briefly outside SWMR mode in
    `RunWriter.write_results`) are retried ``retries`` times with doubling delays. Raises
    `RunReadError` otherwise.
    """
    run_dir = _run_dir(path)
    file_path = pathlib.Path(path) if pathlib.Path(path).is_file() else run_dir / RUN_FILE
    if not file_path.is_file():
        raise RunReadError(f"{run_dir} has no {RUN_FILE}; it is not a run directory.")
    delay = retry_delay
    for attempt in range(retries + 1):
        last = attempt == retries
        try:
            f = _open_swmr_reader(file_path)
        except OSError as e:
            if _transient_open_error(e) and not last:
                time.sleep(delay)
                delay *= 2
                continue
            hint = (
                " It was left open for writing outside SWMR mode by a process that died; "
                f"recover it with `h5clear -s {file_path}` or by resuming the run."
                if "SWMR" in str(e) or "already open" in str(e)
                else ""
            )
            raise RunReadError(f"cannot open {file_path}: {e}.{hint}") from e
        try:
            with f:
                return _read(f, run_dir)
        except _NotARun as e:
            raise RunReadError(str(e)) from None
        except Exception as e:
            # The writer may have restructured the file while we read; read again.
            if last:
                raise RunReadError(f"cannot read {file_path}: {type(e).__name__}: {e}") from e
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def list_runs(runs_dir: PathLike, *, problems: list[RunProblem] | None = None) -> list[RunRecord]:
    """Every readable run in ``runs_dir``, oldest first.

    Subdirectories that are not readable runs (no ``run.h5``, a corrupt file, a foreign
    HDF5 file) are skipped; pass a list as ``problems`` to receive a `RunProblem` for each.
    """
    runs_dir = pathlib.Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"runs directory {runs_dir} does not exist; train a run first.")
    records = []
    for child in sorted(runs_dir.iterdir()):
        if not child.is_dir() or child.name.startswith("."):
            continue
        if not (child / RUN_FILE).exists() and (child / JOB_FILE).exists():
            continue  # queued or starting: not a run yet, not a problem
        try:
            records.append(open_run(child))
        except RunReadError as e:
            if problems is not None:
                problems.append(RunProblem(child, str(e)))
    records.sort(key=lambda r: (r.created, r.id))
    return records


def _number(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4g}"


def summary_row(record: RunRecord) -> dict[str, str]:
    """One line of ``diffsde runs`` for ``record``: id, name, types, status, progress, metrics."""

    def section_type(section: str) -> str:
        value = record.spec.get(section) if isinstance(record.spec, dict) else None
        return str(value.get("type", "-")) if isinstance(value, dict) else "-"

    steps = record.metrics.get("step")
    if steps is not None and len(steps):
        progress = str(int(steps[-1]))
    else:
        progress = str(min((len(v) for v in record.metrics.values()), default=0))
    status = record.status
    if record.failed_step is not None:
        status = f"{status}@{record.failed_step}"
    loss = record.metrics.get("loss")
    row = {
        "id": record.id,
        "name": record.name,
        "sde": section_type("sde"),
        "objective": section_type("objective"),
        "status": status,
        "steps": progress,
        "loss": _number(float(loss[-1])) if loss is not None and len(loss) else "-",
    }
    for key, value in record.eval.items():
        if "." not in key:  # the run's own metrics; `diffsde sample` adds "label.metric" ones
            row[key] = _number(value)
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
    """Whether the process recorded as writing ``record`` is still running on this host."""
    return _alive(record.status, record.host, record.pid)


def _alive(status: str, host: str, pid: int) -> bool:
    return (
        status == "running"
        and host == socket.gethostname()
        and pid != os.getpid()
        and _pid_alive(pid)
    )


def run_is_live(run_path: PathLike) -> bool:
    """`writer_alive` from the status and writer attributes alone, without reading metrics or
    samples: cheap enough to poll over a whole runs directory. False if unreadable (after a few
    retries: the writer may be briefly outside SWMR mode in `RunWriter.write_results`)."""
    for attempt in range(5):
        try:
            with _open_swmr_reader(_run_dir(run_path) / RUN_FILE) as f:
                status = _text(f["status/state"][()])
                return _alive(status, _text(f.attrs["host"]), int(f.attrs["pid"]))
        except OSError as e:
            if not _transient_open_error(e):
                return False
            time.sleep(0.05 * 2**attempt)
        except (KeyError, ValueError):
            return False
    return False


def _idle_record(run_path: PathLike, action: str) -> RunRecord:
    record = open_run(run_path)
    if writer_alive(record):
        raise RunReadError(
            f"{record.path} is running (process {record.pid}); stop it before you {action} it."
        )
    return record


def mark_abandoned(run_path: PathLike, status: Status, message: str) -> bool:
    """Give a run whose writer died (killed, or never reached its own handler) a final status;
    False if the run already has one. Everything in the file is kept."""
    record = _idle_record(run_path, "mark")
    if record.status != "running":
        return False
    with _open_idle_for_append(record.path / RUN_FILE) as f:
        f["status/state"][()] = np.bytes_(status.encode())
        f["status/message"][()] = np.bytes_(_encode_message(message))
        f["status/updated"][()] = time.time()
    return True


def rename_run(run_path: PathLike, name: str) -> None:
    """Give a finished run a new display name (its directory and id stay as they are)."""
    if not name.strip():
        raise ValueError("a run name needs at least one non-blank character.")
    record = _idle_record(run_path, "rename")
    with _open_idle_for_append(record.path / RUN_FILE) as f:
        f.attrs["name"] = name.strip()


def delete_run(run_path: PathLike, runs_dir: PathLike) -> None:
    """Delete a run directory that lies directly in ``runs_dir`` and is not being written."""
    record = _idle_record(run_path, "delete")
    if record.path.resolve().parent != pathlib.Path(runs_dir).resolve():
        raise RunReadError(f"{record.path} is not a run directory of {runs_dir}; not deleting.")
    shutil.rmtree(record.path)
