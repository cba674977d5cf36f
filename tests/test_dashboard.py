"""The dashboard (app/): table and filter over real runs, the comparison data functions, the
Runs, Compare and Plugins pages rendered with Streamlit's AppTest, and `diffsde dashboard`
launching Streamlit on app/main.py."""

import dataclasses
import pathlib
import subprocess

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.data import (
    FilterError,
    best_per_column,
    component_rows,
    curves,
    filter_table,
    final_metrics,
    image_tile,
    load_table,
    marginal_frame,
    parameter_rows,
    sample_sets,
    sample_view,
    scatter_frame,
    seed_groups,
    seed_summary,
    smooth,
    spec_diff,
)
from diffsde import get_registry
from diffsde._cli import main
from diffsde.runs import list_runs
from tests.tiny import tiny_spec

APP = pathlib.Path(__file__).resolve().parent.parent / "app"
SPEC = tiny_spec("NAME", sde="SDE")


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
    at = AppTest.from_file(str(APP / "views" / "runs.py"), default_timeout=30).run()
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
    at = AppTest.from_file(str(APP / "views" / "runs.py"), default_timeout=30).run()
    assert not at.exception
    assert "does not exist" in at.error[0].value


def test_plugins_page():
    rows = component_rows(get_registry())
    assert {("sde", "vp"), ("sde", "cvp")} <= {(r["kind"], r["name"]) for r in rows}
    vp = {r["parameter"]: r for r in parameter_rows(get_registry().get("sde", "vp").config)}
    assert "beta_max" in vp and vp["beta_max"]["default"] != "required"
    at = AppTest.from_file(str(APP / "views" / "plugins.py"), default_timeout=30).run()
    assert not at.exception
    names = set(at.dataframe[0].value["name"])
    assert {"vp", "cvp"} <= names
    assert any("cvp" in e.label for e in at.expander)


def test_main_navigation(runs_dir, monkeypatch):
    monkeypatch.setenv("DIFFSDE_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(str(APP / "main.py"), default_timeout=30).run()
    assert not at.exception
    assert at.title[0].value == "Runs"
    at.switch_page(str(APP / "views" / "compare.py")).run()
    assert not at.exception
    assert at.title[0].value == "Compare"


def test_dashboard_command(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, **kw: calls.append((cmd, kw)) or 0)
    assert main(["dashboard", "--runs-dir", str(tmp_path), "--port", "8600"]) == 0
    ((command, kwargs),) = calls
    assert command[1:5] == ["-m", "streamlit", "run", str(APP / "main.py")]
    assert command[5:7] == ["--server.port", "8600"]
    assert kwargs["env"]["DIFFSDE_RUNS_DIR"] == str(tmp_path.resolve())


# -- Compare ----------------------------------------------------------------------------------


def _variant(record, id, seed=None, evaluation=None, name=None, **samples):
    spec = dict(record.spec, seed=record.spec["seed"] if seed is None else seed)
    return dataclasses.replace(
        record,
        id=id,
        name=name or record.name,
        spec=spec,
        eval=record.eval if evaluation is None else evaluation,
        samples={**record.samples, **samples},
    )


def test_spec_diff(runs_dir):
    vp, ve = list_runs(runs_dir)
    diff = spec_diff([vp, ve])
    assert list(diff.columns) == [vp.id, ve.id]
    assert "sde.type" in diff.index and "training.batch_size" not in diff.index
    assert "name" in diff.index  # tiny-vp vs tiny-ve
    assert list(diff.loc["sde.type"]) == ["vp", "ve"]
    full = spec_diff([vp, ve], all_keys=True)
    assert "training.batch_size" in full.index and len(full) > len(diff)
    assert spec_diff([vp, _variant(vp, "copy")]).empty
    seeded = spec_diff([vp, _variant(vp, "s4", seed=4)])
    assert list(seeded.index) == ["seed"] and list(seeded.loc["seed"]) == ["3", "4"]


def test_final_metrics_best(runs_dir):
    vp, ve = list_runs(runs_dir)
    frame = final_metrics([vp, ve])
    assert list(frame.index) == [vp.id, ve.id]
    assert {"name", "steps", "wall_time", "loss", "eval.sliced_w2"} <= set(frame.columns)
    assert list(frame["steps"]) == [20, 20]
    a = _variant(vp, "a", evaluation={"sliced_w2": 0.5, "mmd": 0.1, "x.mmd": 2.0})
    b = _variant(vp, "b", evaluation={"sliced_w2": 0.2, "mmd": 0.3})
    c = _variant(vp, "c", evaluation={"sliced_w2": 0.2, "mmd": 0.4})
    best = best_per_column(final_metrics([a, b, c]))
    assert list(best["eval.sliced_w2"]) == [False, True, True]  # ties both marked
    assert list(best["eval.mmd"]) == [True, False, False]
    assert list(best["eval.x.mmd"]) == [True, False, False]  # NaN elsewhere
    assert not best["steps"].any() and not best["name"].any() and not best["wall_time"].any()
    assert best["loss"].all()  # same training history


def test_smooth_and_curves(runs_dir):
    values = np.array([1.0, 3.0, 2.0, 5.0])
    np.testing.assert_array_equal(smooth(values, 0.0), values)
    np.testing.assert_allclose(smooth(values, 0.5), [1.0, 2.0, 2.0, 3.5])
    with pytest.raises(ValueError):
        smooth(values, 1.0)
    vp, ve = list_runs(runs_dir)
    long = curves([vp, ve], "loss", "wall_time", alpha=0.9)
    assert list(long.columns) == ["run", "wall_time", "loss"]
    assert len(long) == len(vp.metrics["loss"]) + len(ve.metrics["loss"])
    assert long["run"].nunique() == 2
    raw = curves([vp], "grad_norm", "step")
    np.testing.assert_array_equal(raw["grad_norm"], vp.metrics["grad_norm"])


def test_seed_groups(runs_dir):
    vp, ve = list_runs(runs_dir)
    assert seed_groups([vp, ve]) == []
    assert seed_groups([vp, _variant(vp, "same-seed")]) == []
    runs = [
        _variant(vp, "s1", seed=1, evaluation={"sliced_w2": 1.0}, name="renamed"),
        _variant(vp, "s2", seed=2, evaluation={"sliced_w2": 2.0}),
        _variant(vp, "s3", seed=5, evaluation={"sliced_w2": 6.0}),
    ]
    (group,) = seed_groups([*runs, ve])
    assert [r.id for r in group] == ["s1", "s2", "s3"]
    summary = seed_summary(group)
    assert summary.loc["eval.sliced_w2", "mean"] == pytest.approx(3.0)
    assert summary.loc["eval.sliced_w2", "std"] == pytest.approx(np.std([1, 2, 6], ddof=1))
    assert summary.loc["eval.sliced_w2", "n"] == 3
    assert summary.loc["steps", "std"] == 0


def test_sample_views(runs_dir):
    vp, _ = list_runs(runs_dir)
    labelled = _variant(vp, "l", **{"pf_ode-solver=heun-steps=20-n=1000": np.zeros((5, 2))})
    labelled.samples["trajectory"] = np.zeros((3, 5, 2))
    assert sample_sets(labelled) == ["samples", "pf_ode-solver=heun-steps=20-n=1000"]
    assert [sample_view(d) for d in (2, 64, 4, 10, 1)] == ["scatter", "image"] + ["histogram"] * 3
    points = scatter_frame(vp.samples["samples"], vp.samples["reference"], max_points=30)
    assert list(points["set"].unique()) == ["reference", "samples"] and len(points) == 60
    marginals = marginal_frame(np.ones((10, 6)), None, coordinates=4)
    assert sorted(marginals["coordinate"].unique()) == ["x0", "x1", "x2", "x3"]
    tile = image_tile(np.arange(5 * 64).reshape(5, 64), count=4, columns=2)
    assert tile.shape == (17, 17) and tile.min() == 0 and tile.max() == 1


def test_compare_page(runs_dir, monkeypatch):
    monkeypatch.setenv("DIFFSDE_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(str(APP / "views" / "compare.py"), default_timeout=30).run()
    assert not at.exception
    assert any("pick runs" in i.value for i in at.info)
    ids = list(load_table(runs_dir)["id"])
    at = AppTest.from_file(str(APP / "views" / "compare.py"), default_timeout=30)
    at.session_state["compare_runs"] = ids  # as the Runs page leaves it
    at.run()
    assert not at.exception
    metrics, diff = at.dataframe[0].value, at.dataframe[1].value
    assert list(metrics.index) == ids and "eval.sliced_w2" in metrics.columns
    assert "sde.type" in diff.index and "training.batch_size" not in diff.index
    assert len(at.get("download_button")) == 1
    at.toggle(key="compare_all_keys").set_value(True).run()
    assert "training.batch_size" in at.dataframe[1].value.index
    at.selectbox(key="compare_metric").set_value("grad_norm").run()
    at.selectbox(key="compare_x").set_value("wall_time").run()
    at.slider(key="compare_alpha").set_value(0.9).run()
    assert not at.exception
    at.multiselect(key="compare_widget").unselect(ids[1]).run()
    assert at.session_state["compare_runs"] == [ids[0]]
    assert not at.exception


def test_runs_page_rename_and_delete_ask_first(tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    for name in ("first", "second"):
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(SPEC.replace("NAME", name).replace("SDE", "vp"))
        assert main(["run", str(spec), "--runs-dir", str(runs_dir), "-q"]) == 0
    first, second = (r.id for r in list_runs(runs_dir))
    monkeypatch.setenv("DIFFSDE_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(str(APP / "views" / "runs.py"), default_timeout=30).run()

    at.selectbox(key="runs_manage_target").select(first).run()
    at.text_input(key="runs_new_name").input("renamed").run()
    at.button(key="runs_rename").click().run()
    assert "Rename first" in at.warning[0].value
    assert [r.name for r in list_runs(runs_dir)] == ["first", "second"]  # not before confirming
    at.button(key="runs_confirm").click().run()
    assert not at.exception
    assert "renamed first" in at.success[0].value
    assert [r.name for r in list_runs(runs_dir)] == ["renamed", "second"]
    assert "renamed" in list(at.dataframe[0].value["name"])

    at.selectbox(key="runs_manage_target").select(second).run()
    at.button(key="runs_delete").click().run()
    assert "removed for good" in at.warning[0].value
    at.button(key="runs_cancel").click().run()
    assert not at.warning and len(list_runs(runs_dir)) == 2
    at.button(key="runs_delete").click().run()
    at.button(key="runs_confirm").click().run()
    assert "deleted second" in at.success[0].value
    assert [r.id for r in list_runs(runs_dir)] == [first]
    assert list(at.dataframe[0].value["id"]) == [first]
