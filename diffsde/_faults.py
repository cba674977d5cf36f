"""Named fault points, for testing the run store against kills and full disks.

``DIFFSDE_FAULT=ACTION@POINT[#N]`` makes the N-th time (default: the first) this process reaches
``point(POINT)`` do ACTION: ``kill`` sends itself SIGKILL (nothing after it runs, as when the
machine's OOM killer or ``kill -9`` strikes), ``enospc`` raises ``OSError(ENOSPC)`` as a full
disk would. Several faults are separated by commas. Without the variable a point costs one
dictionary lookup. The points are listed in `POINTS`; tests/test_store_faults.py drives them
with real subprocesses.
"""

from __future__ import annotations

import errno
import functools
import os
import signal

VARIABLE = "DIFFSDE_FAULT"
ACTIONS = ("kill", "enospc")
POINTS = {
    "train": "after a dispatch's metric rows are written",
    "metrics": "before metric rows are written",
    "checkpoint": "after a checkpoint's temporary file is written, before it is renamed",
    "sample": "after training, while the final samples are drawn",
    "results": "after a result's arrays are in place, before its summary is written",
    "status": "before the status file is replaced",
}
_reached: dict[str, int] = {}


@functools.cache
def _parse(value: str) -> dict[str, tuple[str, int]]:
    faults = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        action, _, rest = item.partition("@")
        name, _, count = rest.partition("#")
        if action not in ACTIONS or name not in POINTS or not (count or "1").isdigit():
            raise ValueError(
                f"{VARIABLE}={value!r}: {item!r} is not ACTION@POINT[#N] with ACTION one of "
                f"{list(ACTIONS)} and POINT one of {sorted(POINTS)}."
            )
        faults[name] = (action, int(count or 1))
    return faults


def point(name: str) -> None:
    """A place where a test may kill this process or fill its disk (see the module doc)."""
    value = os.environ.get(VARIABLE)
    if not value:
        return
    fault = _parse(value).get(name)
    if fault is None:
        return
    _reached[name] = _reached.get(name, 0) + 1
    action, count = fault
    if _reached[name] != count:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise OSError(errno.ENOSPC, f"No space left on device (injected at {name})")
