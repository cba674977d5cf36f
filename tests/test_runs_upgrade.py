"""`diffsde runs --upgrade`: runs of format 1 (one SWMR ``run.h5``) become format-2 runs."""

import subprocess
import sys
import textwrap
import time

import numpy as np

from diffsde import runs
from diffsde._jobs import CLI

SPEC = "name: old\nseed: 0\nsde: {type: vp}\ndata: {type: toy, name: moons}\n"
STEPS = np.arange(1, 6, dtype=np.float64)


def write_format1(run_dir, *, results: bool = True, leave_open: bool = False) -> None:
    """A run in the layout diffsde wrote before format 2 (see `diffsde._runs_legacy`)."""
    run_dir.mkdir()
    code = textwrap.dedent(
        f"""\
        import os, sys, h5py, numpy as np
        f = h5py.File(sys.argv[1], "w", libver="latest")
        f.attrs.update(format="diffsde-run", format_version=1, id="x", name="old run",
                       created="2026-01-02T03:04:05+00:00", host="h", pid=1)
        f.create_dataset("spec", data={SPEC!r}, dtype=h5py.string_dtype("utf-8"))
        f.create_group("environment").attrs["jax"] = "0.4"
        s = f.create_group("status")
        s.create_dataset("state", data=np.bytes_(b"completed"), dtype="S16")
        s.create_dataset("message", data=np.bytes_(b""), dtype="S8192")
        s.create_dataset("step", data=np.int64(-1))
        s.create_dataset("updated", data=np.float64(1.0))
        m = f.create_group("metrics")
        for name, scale in (("step", 1.0), ("loss", 0.5)):
            m.create_dataset(name, data=np.arange(1, 6, dtype=np.float64) * scale,
                             maxshape=(None,), chunks=(1024,))
        if {results!r}:
            f.create_group("eval").attrs.update({{"sliced_w2": 0.25, "em-n=3.sliced_w2": 0.5}})
            g = f.create_group("samples")
            g["samples"] = np.ones((4, 2), np.float32)
            g["reference"] = np.zeros((4, 2))
            g["em-n=3"] = np.full((3, 2), 2.0)
            f.create_group("nfe").attrs.update({{"pf_ode": 7, "em-n=3": 3}})
        f.flush()
        if {leave_open!r}:
            f.swmr_mode = True
            os._exit(0)  # the writer dies in SWMR mode: its superblock flags stay set
        f.close()
        """
    )
    subprocess.run([sys.executable, "-c", code, str(run_dir / "run.h5")], check=True)


def test_upgrade_converts_format1_runs(tmp_path):
    """Metrics, status, the run's own results and a `diffsde sample` label survive, including
    a file whose writer died in SWMR mode. Mutation: converting labelled samples as the run's
    own (no ``prefixed``) loses ``em-n=3`` from ``nfe`` and fails this."""
    write_format1(tmp_path / "clean")
    write_format1(tmp_path / "killed", leave_open=True)
    write_format1(tmp_path / "noresults", results=False)
    problems = []
    assert runs.list_runs(tmp_path, problems=problems) == []
    assert all("runs --upgrade" in p.reason for p in problems) and len(problems) == 3

    done = subprocess.run(
        [*CLI, "runs", "--upgrade", "--runs-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(": upgraded") == 3
    records = {r.id: r for r in runs.list_runs(tmp_path)}
    assert sorted(records) == ["clean", "killed", "noresults"]
    for name in ("clean", "killed"):
        record = records[name]
        assert (record.name, record.status, record.spec_yaml) == ("old run", "completed", SPEC)
        np.testing.assert_array_equal(record.metrics["step"], STEPS)
        np.testing.assert_array_equal(record.metrics["loss"], 0.5 * STEPS)
        assert record.eval == {"sliced_w2": 0.25, "em-n=3.sliced_w2": 0.5}
        assert record.nfe == {"pf_ode": 7, "em-n=3": 3}
        np.testing.assert_array_equal(record.samples["samples"], np.ones((4, 2), np.float32))
        np.testing.assert_array_equal(record.samples["em-n=3"], np.full((3, 2), 2.0))
        assert (tmp_path / name / "run.h5.format1").is_file()  # the original is kept
    assert records["noresults"].eval == {} and len(records["noresults"].samples) == 0
    again = subprocess.run(
        [*CLI, "runs", "--upgrade", "--runs-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0 and "no format-1 runs" in again.stdout


def test_upgrade_of_a_damaged_file_is_bounded_and_keeps_it(tmp_path):
    write_format1(tmp_path / "cut")
    data = (tmp_path / "cut" / "run.h5").read_bytes()
    (tmp_path / "cut" / "run.h5").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise").mkdir()
    (tmp_path / "noise" / "run.h5").write_bytes(np.random.default_rng(1).bytes(5000))
    start = time.perf_counter()
    outcomes = runs.upgrade_runs(tmp_path, time_limit=30.0)
    assert time.perf_counter() - start < 60
    assert [o.path.name for o in outcomes] == ["cut", "noise"]
    assert all(o.outcome.endswith("left as is") for o in outcomes), outcomes
    for name in ("cut", "noise"):
        assert (tmp_path / name / "run.h5").is_file()
        assert not (tmp_path / name / "run.json").exists()
        assert not (tmp_path / name / ".upgrade").exists()
