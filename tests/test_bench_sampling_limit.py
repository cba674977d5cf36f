"""bench/sampling_limit.py --quick runs (problems a2 and c, DPM-Solver++ 2M on the log-SNR grid,
n = 500), checks its numpy sliced W2² against the library's (it exits non-zero otherwise), and
prints one table per problem and the best configuration against the target.

The claims checked are the harness's, not the numbers': a sampler that reaches the floor is
found on both problems (DPM-Solver++ 2M needs 8 NFE on each at n = 500, far inside the
targets), and the digits problem is the 500-point empirical distribution in d = 64.

Mutation: a floor of mean − 2 sd instead of + 2 sd (nothing reaches it) makes this fail; so
does building problem c from 50 rows (the header names the number of components checked
below).
"""

import pathlib
import re
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.slow
def test_sampling_limit_quick():
    result = subprocess.run(
        [sys.executable, str(BENCH / "sampling_limit.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    out = result.stdout
    assert "| sampler | grid | fewest NFE | sliced W2² | floor | wall ms |" in out
    for problem, target in (("a2", 12), ("c", 16)):
        best = re.search(rf"best \[{problem}\]: dpm_solver_pp history=2 / log_snr, NFE (\d+)", out)
        assert best, out[-3000:]
        assert int(best.group(1)) <= target
        assert f"(target ≤ {target} NFE: MET)" in out
    assert "500 components, d = 64" in out
