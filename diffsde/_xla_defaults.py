"""diffsde's default XLA settings, applied on import (before any computation starts the backend).

XLA's CPU backend (jaxlib ≥ 0.10) hands reductions to YNNPACK fusions, which run the small
reductions of batched scores 10–40× slower (bench/cpu_small_ops.py: 24 ms → 0.6 ms per call of a
mixture score, d = 2, 40 000 points, outputs equal to float32 round-off); that one fusion type is
removed unless XLA_FLAGS already chooses it. jax reads XLA_FLAGS when its backend starts, at the
first computation, not at ``import jax``, so this works after jax is imported too. Older XLAs
abort on the unknown flag, hence the version gate.
"""

import os
from importlib import metadata

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"


def cpu_defaults() -> None:
    """Add ``--xla_cpu_experimental_ynn_fusion_type=-reduce`` to XLA_FLAGS (jaxlib ≥ 0.10,
    the flag not already given)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if YNN_FLAG.lstrip("-") in flags:
        return
    try:
        version = tuple(int(p) for p in metadata.version("jaxlib").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return
    if version >= (0, 10):
        os.environ["XLA_FLAGS"] = f"{flags} {YNN_FLAG}=-reduce".strip()


cpu_defaults()
