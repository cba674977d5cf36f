"""Converting runs of format 1 (one SWMR ``run.h5``) to the current store (`diffsde._runs`).

``diffsde runs --upgrade`` calls `upgrade_runs`. Each old file is read by a child process
(`_convert`) with a time limit, since an SWMR reader of a damaged file can wait on its metadata
for many minutes; the child writes the new files into a hidden directory beside the run, and the
parent moves them in only once the child has succeeded. ``run.h5`` itself is kept, renamed to
``run.h5.format1``, so nothing is lost if the conversion is wrong.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
from typing import Any, NamedTuple

import numpy as np

from ._runs import (
    FORMAT,
    FORMAT_VERSION,
    LEGACY_FILE,
    METRICS_DIR,
    RESULTS_DIR,
    RUN_FILE,
    RUN_RESULT,
    STATUS_FILE,
    PathLike,
    add_results,
    pid_alive,
    read_checkpoint_step,
    scan_store,
)

KEPT_SUFFIX = ".format1"
TIME_LIMIT = 120.0  # seconds for reading one old file


class Upgrade(NamedTuple):
    path: pathlib.Path
    outcome: str  # "upgraded", or why not


def _text(value: Any) -> str:
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _convert(old: pathlib.Path, out: pathlib.Path) -> None:
    """Read format-1 ``old`` (as an SWMR reader: it also opens files whose writer was killed)
    and write the format-2 files of the same run into the directory ``out``."""
    import h5py

    with h5py.File(old, "r", libver="latest", swmr=True) as f:
        if _text(f.attrs.get("format", "")) != FORMAT:
            raise ValueError(f"{old} is an HDF5 file but not a diffsde run")
        metrics = {name: np.asarray(ds[...], np.float64) for name, ds in f["metrics"].items()}
        length = min((len(v) for v in metrics.values()), default=0)
        status = f["status"]
        head = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "id": old.parent.name,
            "name": _text(f.attrs["name"]),
            "created": _text(f.attrs["created"]),
            "spec": _text(f["spec"][()]),
            "environment": {k: _text(v) for k, v in f["environment"].attrs.items()},
        }
        state = {
            "state": _text(status["state"][()]),
            "message": _text(status["message"][()]),
            "step": int(status["step"][()]),
            "updated": float(status["updated"][()]),
            "host": _text(f.attrs["host"]),
            "pid": int(f.attrs["pid"]),
            "process_start": None,
            "heartbeat_seconds": None,
        }
        if state["state"] == "running" and state["host"] == socket.gethostname():
            if pid_alive(state["pid"]):
                raise ValueError(f"process {state['pid']} may still be writing it; stop it first")
        evaluation = dict(f["eval"].attrs) if "eval" in f else {}
        samples = {k: ds[...] for k, ds in f["samples"].items()} if "samples" in f else {}
        nfe = {k: int(v) for k, v in f["nfe"].attrs.items()} if "nfe" in f else {}
    (out / METRICS_DIR).mkdir(parents=True)
    columns = list(metrics)
    table = np.stack([metrics[c][:length] for c in columns], axis=1) if columns else None
    if table is not None:
        if "step" in columns:
            table = table[np.isfinite(table[:, columns.index("step")])]
        (out / METRICS_DIR / "0000.f64").write_bytes(np.ascontiguousarray(table, "<f8").tobytes())
        header = {"columns": columns, "from_step": -1, "host": state["host"], "pid": state["pid"]}
        (out / METRICS_DIR / "0000.json").write_text(json.dumps(header))
    (out / RUN_FILE).write_text(json.dumps(head))
    (out / STATUS_FILE).write_text(json.dumps(state))
    # The run's own results (unlabelled names) and each `diffsde sample` label (`label.metric`,
    # samples and nfe under `label`) become result sets of their own.
    labels = sorted({k.split(".", 1)[0] for k in evaluation if "." in k} | (set(nfe) - {""}))
    labels = [
        label
        for label in labels
        if label in samples or any(k.startswith(label + ".") for k in evaluation)
    ]
    step = read_checkpoint_step(old.parent)
    for label in labels:
        add_results(
            out,
            label,
            kind="sample",
            evaluation={
                k.split(".", 1)[1]: v for k, v in evaluation.items() if k.startswith(label + ".")
            },
            samples={"samples": samples.pop(label)} if label in samples else {},
            nfe={"nfe": nfe.pop(label)} if label in nfe else {},
            step=step,
            prefixed=True,
        )
    own = {k: v for k, v in evaluation.items() if "." not in k}
    if own or samples or nfe:
        add_results(
            out,
            f"{RUN_RESULT}-step{step if step is not None else -1}",
            kind=RUN_RESULT,
            evaluation=own,
            samples=samples,
            nfe=nfe,
            step=step,
        )


def upgrade_run(run_dir: PathLike, *, time_limit: float = TIME_LIMIT) -> Upgrade:
    """Convert one run directory holding a format-1 ``run.h5``; what happened, in words."""
    run_dir = pathlib.Path(run_dir)
    old = run_dir / LEGACY_FILE
    if os.path.lexists(run_dir / RUN_FILE):
        return Upgrade(run_dir, "already format 2")
    if old.is_symlink() or not old.is_file():
        return Upgrade(run_dir, f"no {LEGACY_FILE} file to convert")
    staging = run_dir / ".upgrade"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        child = subprocess.run(
            [sys.executable, "-c", _CHILD, str(old), str(staging)],
            capture_output=True,
            text=True,
            timeout=time_limit,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        shutil.rmtree(staging, ignore_errors=True)
        return Upgrade(
            run_dir, f"reading {old} took over {time_limit:.0f} s: it is damaged; left as is"
        )
    if child.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        reason = (child.stderr.strip().splitlines() or [f"exit code {child.returncode}"])[-1]
        return Upgrade(run_dir, f"cannot convert {old}: {reason}; left as is")
    for name in (METRICS_DIR, RESULTS_DIR):
        if (staging / name).exists():
            shutil.rmtree(run_dir / name, ignore_errors=True)
            os.replace(staging / name, run_dir / name)
    os.replace(staging / STATUS_FILE, run_dir / STATUS_FILE)
    os.replace(staging / RUN_FILE, run_dir / RUN_FILE)  # this makes it a format-2 run
    os.replace(old, run_dir / (LEGACY_FILE + KEPT_SUFFIX))  # a kill before this keeps both
    shutil.rmtree(staging, ignore_errors=True)
    return Upgrade(run_dir, "upgraded")


_CHILD = """\
import pathlib, sys
from diffsde._runs_legacy import _convert
try:
    _convert(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]))
except Exception as e:
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
"""


def upgrade_runs(runs_dir: PathLike, *, time_limit: float = TIME_LIMIT) -> list[Upgrade]:
    """`upgrade_run` for every directory of ``runs_dir`` that holds a format-1 run."""
    return [
        upgrade_run(entry.path, time_limit=time_limit)
        for entry in scan_store(runs_dir)
        if entry.legacy and not entry.link
    ]
