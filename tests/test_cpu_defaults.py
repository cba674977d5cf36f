"""diffsde's default XLA CPU setting (diffsde/_xla_defaults.py): the YNNPACK reduce
fusion is turned off unless the user's XLA_FLAGS choose, and it is measurably faster on a small
batched reduction (bench/cpu_small_ops.py has the figures)."""

import os
import subprocess
import sys

FLAG = "--xla_cpu_experimental_ynn_fusion_type"


def _flags_after_import(xla_flags: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if xla_flags is not None:
        env["XLA_FLAGS"] = xla_flags
    code = (
        "import jax, diffsde, os, jax.numpy as jnp\n"
        "jnp.sum(jnp.ones(3)).block_until_ready()\n"  # the backend starts with these flags
        "print(os.environ.get('XLA_FLAGS', ''))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def test_reduce_fusion_is_off_by_default_and_a_user_choice_is_kept():
    """Without XLA_FLAGS, importing diffsde (after jax) sets the flag and jax starts with it;
    a user's own value of the flag is left alone; other user flags are kept.

    Mutation: dropping the ``cpu_defaults()`` call in diffsde/_xla_defaults.py makes the first
    assertion fail."""
    assert f"{FLAG}=-reduce" in _flags_after_import(None)
    assert _flags_after_import(f"{FLAG}=") == f"{FLAG}="
    kept = _flags_after_import("--xla_cpu_multi_thread_eigen=true")
    assert kept.startswith("--xla_cpu_multi_thread_eigen=true") and f"{FLAG}=-reduce" in kept
