"""The benchmark scripts in bench/ still run (``--quick``); their numbers are not checked here."""

import pathlib
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("sampling.py", "headline d=2"),
        ("training_throughput.py", "overhead of framework"),
        ("convergence.py", "headline: fitted slopes in h"),
        ("reverse_offset.py", "headline: cou, reverse SDE"),
    ],
)
def test_bench_quick(script, expected):
    result = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert expected in result.stdout
