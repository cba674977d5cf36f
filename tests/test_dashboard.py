"""The dashboard (app/): table and filter over real runs, the Runs and Plugins pages rendered
with Streamlit's AppTest, and `diffsde dashboard` launching Streamlit on app/main.py."""

import pathlib
import subprocess

import pytest
from streamlit.testing.v1 import AppTest

from app.data import FilterError, component_rows, filter_table, load_table, parameter_rows
from diffsde import get_registry
from diffsde._cli import main

APP = pathlib.Path(__file__).resolve().parent.parent / "app"
SPEC = """\
name: NAME
seed: 3
sde: {type: SDE}
data: {type: gmm, dim: 2, components: 2, std: 0.3}
model: {type: mlp, width: 16, depth: 1, n_frequencies: 4}
objective: {type: dsm}
training:
  {steps: 20, batch_size: 32, steps_per_dispatch: 10, checkpoint_every: 10, warmup_steps: 5}
sampler: {type: pf_ode, solver: euler, steps: 10}
eval:
  n_samples: 100
  metrics: [{type: sliced_w2}]
"""


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dashboard")
    for name, sde in (("tiny-vp", "vp"), ("tiny-ve", "ve")):
        spec = root / f"{name}.yaml"
        spec.write_text(SPEC.replace("NAME", name).replace("SDE", sde))
        assert main(["run", str(spec), "--runs-dir", str(root / "runs"), "-q"]) == 0
    return root / "runs"


def test_load_table(runs_dir):
    frame = load_table(runs_dir)
    assert list(frame["name"]) == ["tiny-vp", "tiny-ve"]
    for column in ("id", "sde.type", "objective.type", "sampler.type", "status", "steps"):
        assert column in frame.columns
    assert {"wall_time", "eval.sliced_w2", "created", "training.batch_size"} <= set(frame.columns)
    assert list(frame["sde.type"]) == ["vp", "ve"]
    assert list(frame["steps"]) == [20, 20]
    assert (frame["wall_time"] > 0).all()


def test_filter_table(runs_dir):
    frame = load_table(runs_dir)
    assert list(filter_table(frame, 'sde.type == "vp"')["name"]) == ["tiny-vp"]
    both = filter_table(frame, 'eval.sliced_w2 < 1e9 and status == "completed"')
    assert len(both) == 2
    assert list(filter_table(frame, "not sde.type in ['vp'] or steps > 100")["name"]) == ["tiny-ve"]
    assert len(filter_table(frame, "  ")) == 2


@pytest.mark.parametrize(
    "expression, message",
    [
        ("__import__('os')", "function calls are not allowed"),
        ("eval.__class__ == 1", "may not start with '_'"),
        ('sde.typo == "vp"', "did you mean 'sde.type'"),
        ("sde.type ==", "syntax error"),
        ("eval.sliced_w2", "is not a condition"),
        ('eval.sliced_w2 < "a"', "cannot compare"),
    ],
)
def test_filter_rejects(runs_dir, expression, message):
    with pytest.raises(FilterError, match=message):
        filter_table(load_table(runs_dir), expression)


def test_runs_page(runs_dir, monkeypatch):
    monkeypatch.setenv("DIFFSDE_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(str(APP / "pages" / "runs.py"), default_timeout=30).run()
    assert not at.exception
    shown = at.dataframe[0].value
    assert list(shown["name"]) == ["tiny-ve", "tiny-vp"]  # newest first
    at.text_input(key="runs_filter").input('sde.type == "vp"').run()
    assert list(at.dataframe[0].value["name"]) == ["tiny-vp"]
    at.text_input(key="runs_filter").input("__import__('os')").run()
    assert not at.exception
    assert "function calls are not allowed" in at.error[0].value
    assert len(at.dataframe[0].value) == 2
    ids = list(shown["id"])
    at.multiselect(key="runs_compare_widget").select(ids[0]).run()
    assert at.session_state["compare_runs"] == [ids[0]]


def test_runs_page_missing_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFSDE_RUNS_DIR", str(tmp_path / "nowhere"))
    at = AppTest.from_file(str(APP / "pages" / "runs.py"), default_timeout=30).run()
    assert not at.exception
    assert "does not exist" in at.error[0].value


def test_plugins_page():
    rows = component_rows(get_registry())
    assert {("sde", "vp"), ("sde", "cvp")} <= {(r["kind"], r["name"]) for r in rows}
    vp = {r["parameter"]: r for r in parameter_rows(get_registry().get("sde", "vp").config)}
    assert "beta_max" in vp and vp["beta_max"]["default"] != "required"
    at = AppTest.from_file(str(APP / "pages" / "plugins.py"), default_timeout=30).run()
    assert not at.exception
    names = set(at.dataframe[0].value["name"])
    assert {"vp", "cvp"} <= names
    assert any("cvp" in e.label for e in at.expander)


def test_main_navigation(runs_dir, monkeypatch):
    monkeypatch.setenv("DIFFSDE_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(str(APP / "main.py"), default_timeout=30).run()
    assert not at.exception
    assert at.title[0].value == "Runs"


def test_dashboard_command(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, **kw: calls.append((cmd, kw)) or 0)
    assert main(["dashboard", "--runs-dir", str(tmp_path), "--port", "8600"]) == 0
    ((command, kwargs),) = calls
    assert command[1:5] == ["-m", "streamlit", "run", str(APP / "main.py")]
    assert command[5:7] == ["--server.port", "8600"]
    assert kwargs["env"]["DIFFSDE_RUNS_DIR"] == str(tmp_path.resolve())
