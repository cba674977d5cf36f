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
import types

import numpy as np
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


class FakeProblem:
    """Sampler ``steps`` -> sliced W2² ``distance(steps)``; the floor is 1, reaching ≤ 1."""

    floor, threshold = 1.0, 1.0

    def __init__(self, distance, per_step=1):
        self.distance_of, self.per_step, self.calls = distance, per_step, []

    def run(self, steps):
        self.calls.append(steps)
        return types.SimpleNamespace(x=steps, nfe=steps * self.per_step), 0.0

    def distance(self, steps):
        return np.float64(self.distance_of(steps))  # a numpy scalar, as the real distance


@pytest.mark.parametrize(
    ("distance", "per_step", "fewest"),
    [
        (lambda s: 12 / s, 1, 12),  # monotone: first reaching rung 12, confirmed by 14
        (lambda s: 0.5, 1, 2),  # reaches everywhere: walks down to the ladder's bottom
        (lambda s: 0.5 if s in (12, 16) or s >= 20 else 2.0, 1, 16),  # 14 misses: 16, 20
        (lambda s: 50.0 * 8 / s, 1, None),  # hopeless: start and --max-nfe rung miss
        (lambda s: 3 / s, 4, 3),  # 4 NFE per step: the search starts near 8 NFE (2 steps)
        (lambda s: 0.5 if s >= 25 else 2.0, 1, 25),  # gallops 8 → 9 → 12 → 20 → 40, bisects
    ],
)
def test_sweep_search(distance, per_step, fewest):
    """The search of ``sweep`` returns the first ladder rung that reaches the floor and whose
    next rung does too, on scripted distances, and stops early on a hopeless sampler.

    Mutation: dropping the final confirming loop (the next rung is then never evaluated)
    makes this fail; so does dropping the walk down (the second case then gives 8), and so
    does a numpy bool from ``reach`` (``is False`` never holds: the gallop stops at once).
    """
    sys.path.insert(0, str(BENCH))
    import sampling_limit

    problem = FakeProblem(distance, per_step)
    family = sampling_limit.Family("fake", lambda steps, grid: steps)
    args = types.SimpleNamespace(ladder=sampling_limit.LADDER, max_nfe=64, start_nfe=8)
    result = sampling_limit.sweep(problem, family, "uniform", args)
    assert result.error is None
    got = result.fewest.steps if result.fewest else None
    assert got == fewest, [(r.steps, r.sw2) for r in result.rungs]
    if fewest is None:
        assert len(problem.calls) == 2  # the start rung and the --max-nfe rung
