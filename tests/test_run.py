"""`diffsde run` end to end: stored results, SIGTERM keeps everything, resume is bit-for-bit,
a NaN loss fails the run cleanly, `sample`/`eval`/`runs` read it back."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import diffsde
from diffsde._cli import main
from tests.tiny import tiny_spec

SPEC = tiny_spec(
    steps="STEPS",
    n_samples=200,
    metrics="[{type: sliced_w2}, {type: moments}, {type: esm}]",
    extra_eval="  save_times: [0.5, 1.0]\n",
)


def _spec(tmp_path, steps=40, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(SPEC.replace("STEPS", str(steps)))
    return path


def _only_run(runs_dir):
    (run,) = [p for p in pathlib.Path(runs_dir).iterdir() if p.is_dir()]
    return run


def test_run_stores_spec_metrics_checkpoint_samples_and_eval(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["run", str(_spec(tmp_path)), "--runs-dir", str(runs), "-q"]) == 0
    assert capsys.readouterr().out.startswith("completed: ")
    record = diffsde.runs.open_run(_only_run(runs))
    assert record.status == "completed" and record.checkpoint_step == 40
    assert record.spec["training"]["steps"] == 40 and record.spec["sde"]["type"] == "vp"
    np.testing.assert_array_equal(record.metrics["step"], np.arange(1, 41))
    assert set(record.metrics) == {"step", "wall_time", "loss", "lr", "grad_norm"}
    assert np.all(np.diff(record.metrics["wall_time"]) >= 0)
    assert {"sliced_w2", "mean_error", "cov_error", "esm"} <= set(record.eval)
    assert record.samples["samples"].shape == (200, 2) and record.nfe == {"pf_ode": 10}
    assert record.samples["trajectory"].shape == (2, 200, 2)
    np.testing.assert_array_equal(record.samples["trajectory_times"], [1.0, 0.5])
    # the state saved at t = T is where the sampler started: the prior's N(0, I)
    assert abs(float(np.std(record.samples["trajectory"][0])) - 1.0) < 0.1
    assert record.environment["jax"] and record.environment["backend"] == "cpu"

    assert main(["sample", str(record.path), "--sampler", "euler_maruyama", "--n", "100"]) == 0
    assert "euler_maruyama-n=100: nfe 1000" in capsys.readouterr().out
    assert main(["eval", str(record.path)]) == 0
    again = diffsde.runs.open_run(record.path)
    assert again.samples["euler_maruyama-n=100"].shape == (100, 2)
    assert again.eval["sliced_w2"] == pytest.approx(record.eval["sliced_w2"], rel=1e-6)
    assert main(["runs", "--runs-dir", str(runs)]) == 0
    table = capsys.readouterr().out
    assert "tiny" in table and "completed" in table and "sliced_w2" in table


def test_trajectory_times_outside_the_sampled_interval_are_spec_errors(tmp_path):
    with pytest.raises(diffsde.SpecError, match=r"eval.save_times: times \[2.0\] lie outside"):
        diffsde.validate_text(SPEC.replace("STEPS", "10").replace("0.5, 1.0", "0.5, 2.0"))


def test_run_needs_model_objective_and_sampler(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("sde: {type: vp}\ndata: {type: toy, name: moons}\n")
    assert main(["run", str(path), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert f"{path}:1:1 model: `diffsde run` needs this section" in err
    assert "objective" in err and "sampler" in err and "Traceback" not in err


def test_sigterm_stops_the_run_and_resume_is_bit_for_bit(tmp_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    spec = _spec(tmp_path, steps=1000)
    assert main(["run", str(spec), "--runs-dir", str(straight), "-q"]) == 0

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "diffsde._cli", "run", str(spec), "--runs-dir", str(interrupted)]
    process = subprocess.Popen(cmd + ["-q"], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    meta = None
    while time.monotonic() < deadline:
        runs = list(interrupted.glob("*/checkpoint.json")) if interrupted.exists() else []
        if runs:
            try:
                meta = json.loads(runs[0].read_text())
            except (json.JSONDecodeError, OSError):
                meta = None
            if meta and meta["step"] >= 20:
                break
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    run = _only_run(interrupted)
    stopped = diffsde.runs.open_run(run)
    assert stopped.status == "stopped", (stopped.status, err.decode())
    assert 20 <= stopped.checkpoint_step < 1000 and len(stopped.metrics["step"]) >= 20

    assert main(["run", "--resume", str(run), "-q"]) == 0
    resumed, reference = diffsde.runs.open_run(run), diffsde.runs.open_run(_only_run(straight))
    assert resumed.status == "completed"
    for name in ("step", "loss", "lr", "grad_norm"):
        np.testing.assert_array_equal(resumed.metrics[name], reference.metrics[name])
    assert (run / "checkpoint.eqx").read_bytes() == (
        _only_run(straight) / "checkpoint.eqx"
    ).read_bytes()
    np.testing.assert_array_equal(resumed.samples["samples"], reference.samples["samples"])
    assert resumed.eval == reference.eval


def test_non_finite_loss_marks_the_run_failed(tmp_path, capsys):
    # One data row of 1e25 among 2000: the step whose batch first draws it has a loss of
    # ~(1e25)^2 = inf in float32. Every earlier row is finite and must be kept.
    data = np.random.default_rng(0).normal(size=(2000, 2))
    data[1234] = 1e25
    np.save(tmp_path / "data.npy", data)
    spec = _spec(tmp_path, steps=300)
    overrides = ["data={type: file, path: data.npy, test_fraction: 0.01}"]
    code = main(
        ["run", str(spec), "--runs-dir", str(tmp_path / "runs"), "-q"]
        + [f"--set={o}" for o in overrides]
    )
    assert code == 1
    record = diffsde.runs.open_run(_only_run(tmp_path / "runs"))
    assert record.status == "failed" and "at step" in record.message, record.message
    steps = record.metrics["step"]
    assert record.failed_step == int(steps[-1]) > 1
    np.testing.assert_array_equal(steps, np.arange(1, len(steps) + 1))
    assert not np.isfinite(record.metrics["loss"][-1])
    assert np.all(np.isfinite(record.metrics["loss"][:-1]))
    assert record.eval == {}
