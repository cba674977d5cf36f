"""The dashboard (app/): table and filter over real runs, the comparison data functions, the
Runs, Compare and Plugins pages rendered with Streamlit's AppTest (state kept in the URL and
across pages, the actions on a selection), and `diffsde dashboard` launching Streamlit on
app/main.py, listening on 127.0.0.1 only."""

import dataclasses
import os
import pathlib
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.compare import (
    best_per_column,
    curves,
    final_metrics,
    format_number,
    mean_std_text,
    metric_directions,
    seed_groups,
    seed_summary,
    series_names,
    smooth,
    spec_diff,
)
from app.components import parameter_rows
from app.filter import MAX_FILTER_DEPTH, FilterError, filter_table
from app.samples import (
    image_tile,
    marginal_frame,
    sample_sets,
    sample_view,
    scatter_frame,
    square_domains,
    upscale,
)
from app.table import default_columns, runs_table
from app.ui import plain
from diffsde import get_registry
from diffsde._cli import main
from diffsde.runs import LazyArrays, list_runs, summarise
from tests.dashboard_server import DashboardServer
from tests.tiny import tiny_spec

APP = pathlib.Path(__file__).resolve().parent.parent / "app"
SPEC = tiny_spec("NAME", sde="SDE")


def load_table(runs_dir):
    return runs_table(list_runs(runs_dir))


def run_label(record):
    return summarise(record).label


def short_id(run_id):
    return run_id.rsplit("-", 1)[-1]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dashboard")
    for name, sde in (("tiny-vp", "vp"), ("tiny-ve", "ve")):
        spec = root / f"{name}.yaml"
        spec.write_text(SPEC.replace("NAME", name).replace("SDE", sde))
        assert main(["run", str(spec), "--runs-dir", str(root / "runs"), "-q"]) == 0
    return root / "runs"


def test_load_table(runs_dir):
    """Who the run is, how it ended and its results lead; the spec follows, and the spec's own
    ``eval`` section cannot be mistaken for results.

    Mutation: dropping the ``spec.`` prefix of spec keys in a result namespace, or putting the
    spec columns before the results, makes this fail."""
    frame = load_table(runs_dir)
    assert list(frame["name"]) == ["tiny-vp", "tiny-ve"]
    for column in ("id", "sde.type", "objective.type", "sampler.type", "status", "steps"):
        assert column in frame.columns
    assert {"wall_time", "eval.sliced_w2", "created", "training.batch_size"} <= set(frame.columns)
    assert list(frame["sde.type"]) == ["vp", "ve"]
    assert list(frame["steps"]) == [20, 20]
    assert (frame["wall_time"] > 0).all()
    assert list(frame["seed"]) == [3, 3]
    assert list(frame["short_id"]) == [short_id(i) for i in frame["id"]]
    assert all(len(s) == 6 and s in i for s, i in zip(frame["short_id"], frame["id"]))
    # eval.* are results only; the spec's eval section is spec.eval.*
    assert "spec.eval.n_samples" in frame.columns and "eval.n_samples" not in frame.columns
    assert "spec.eval.metrics" in frame.columns and "eval.metrics" not in frame.columns
    shown = default_columns(frame)
    assert shown[:7] == ["short_id", "name", "seed", "status", "steps", "loss", "wall_time"]
    assert shown.index("eval.sliced_w2") < shown.index("sde.type") < shown.index("created")
    assert not any(c.startswith("spec.") or c.startswith("training.") for c in shown)


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
        ("__import__('os')", "may not start with '_'"),
        ("open('x') == 1", "unknown function 'open'"),
        ("eval.__class__ == 1", "may not start with '_'"),
        ("lambda: 1", "lambdas are not allowed"),
        ('sde.typo == "vp"', "did you mean 'sde.type'"),
        ("sde.type ==", "syntax error"),
        ("eval.sliced_w2", "is not a condition"),
        ('eval.sliced_w2 < "a"', "cannot compare"),
        ("-sde.type == 1", "text takes no sign"),
        ("steps + sde.type > 1", "text takes no arithmetic"),
        ("not " * 400 + "True", "nested more than"),
        ("not " * 5000 + "True", "characters long"),
        ("-" * 1000 + "steps > 1", "nested more than"),
        ("steps > 1 and " * 300 + "True", "characters long"),
        ("(" * 250 + "steps > 1" + ")" * 250, "syntax error|parsed"),
        ("sde.type in 'vp'", "needs a list of literals"),
    ],
)
def test_filter_rejects(runs_dir, expression, message):
    """Every bad filter is a FilterError saying what is wrong: no TypeError, RecursionError or
    MemoryError reaches the page. Mutation: removing the depth bound (or catching only
    FilterError around the evaluation) makes the nesting (or the TypeError) cases fail."""
    with pytest.raises(FilterError, match=message):
        filter_table(load_table(runs_dir), expression)


def test_filter_depth_bound_is_just_enough(runs_dir):
    frame = load_table(runs_dir)
    fine = "not " * (MAX_FILTER_DEPTH // 2) + "True"
    assert len(filter_table(frame, fine)) in (0, 2)


def test_runs_page(runs_dir, monkeypatch):
    """The table (newest first), a good filter, a bad one (the error and no runs), the selection
    kept in the session. Mutation: showing every run under a bad filter fails this."""
    monkeypatch.setenv("DIFFSDE_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(str(APP / "views" / "runs.py"), default_timeout=30).run()
    assert not at.exception
    shown = at.dataframe[0].value
    assert list(shown["name"]) == ["tiny-ve", "tiny-vp"]  # newest first
    assert list(shown.columns[:3]) == ["short_id", "name", "seed"]
    at.text_input(key="filter").input('sde.type == "vp"').run()
    assert list(at.dataframe[0].value["name"]) == ["tiny-vp"]
    for bad, message in (
        ("__import__('os')", "may not start with '_'"),
        ("-sde.type == 1", "text takes no sign"),
        ("not " * 400 + "True", "nested more than"),
    ):
        at.text_input(key="filter").input(bad).run()
        assert not at.exception
        assert message in at.error[0].value and "no runs shown" in at.error[0].value
        assert len(at.dataframe[0].value) == 0
    at.text_input(key="filter").input("").run()
    ids = list(load_table(runs_dir)["id"])
    at.multiselect(key="runs").select(ids[0]).run()
    assert at.session_state["compare_runs"] == [ids[0]]
    assert not at.button(key="runs_compare").disabled and not at.button(key="runs_clone").disabled
    at.multiselect(key="runs").select(ids[1]).run()
    assert at.button(key="runs_clone").disabled  # Clone and Monitor take exactly one run
    assert at.button(key="runs_monitor").disabled


def test_runs_state_from_the_url(runs_dir, monkeypatch):
    """A refresh (a new session) restores the filter and the selection from the URL.
    Mutation: dropping bind="query-params" from the filter makes this fail."""
    monkeypatch.setenv("DIFFSDE_RUNS_DIR", str(runs_dir))
    ids = list(load_table(runs_dir)["id"])
    at = AppTest.from_file(str(APP / "views" / "runs.py"), default_timeout=30)
    at.query_params["filter"] = 'sde.type == "ve"'
    at.query_params["runs"] = ids
    at.run()
    assert not at.exception
    assert at.text_input(key="filter").value == 'sde.type == "ve"'
    assert list(at.dataframe[0].value["name"]) == ["tiny-ve"]
    assert at.multiselect(key="runs").value == ids


def test_runs_page_actions(runs_dir, monkeypatch):
    """Compare selected, Clone and Monitor open their pages on the selection, through the app's
    own navigation; a second Clone replaces the editor's text. Mutation: Clone or Monitor not
    handing its run to the next page (CLONE_KEY, MONITOR_KEY) makes this fail."""
    monkeypatch.setenv("DIFFSDE_RUNS_DIR", str(runs_dir))
    ids = list(load_table(runs_dir)["id"])
    at = AppTest.from_file(str(APP / "main.py"), default_timeout=60).run()
    at.multiselect(key="runs").set_value(ids).run()
    at.button(key="runs_compare").click().run()
    assert not at.exception and at.title[0].value == "Compare"
    assert at.multiselect(key="runs").value == ids
    assert "Final metrics" in [h.value for h in at.header]
    # to another page and back: the selection is still there
    at.switch_page(str(APP / "views" / "plugins.py")).run()
    at.switch_page(str(APP / "views" / "compare.py")).run()
    assert at.multiselect(key="runs").value == ids
    at.switch_page(str(APP / "views" / "runs.py")).run()
    assert at.multiselect(key="runs").value == ids
    at.multiselect(key="runs").set_value([ids[1]]).run()
    at.button(key="runs_clone").click().run()
    assert not at.exception and at.title[0].value == "New run"
    record = list_runs(runs_dir)[1]
    assert at.session_state["new_run_text"] == record.spec_yaml
    assert at.session_state["new_run_source"] == f"run:{record.id}"
    at.switch_page(str(APP / "views" / "runs.py")).run()
    at.multiselect(key="runs").set_value([ids[0]]).run()
    at.button(key="runs_clone").click().run()  # the editor has a text now: it is replaced
    oldest = list_runs(runs_dir)[0]
    assert at.session_state["new_run_text"] == oldest.spec_yaml != record.spec_yaml
    at.switch_page(str(APP / "views" / "runs.py")).run()
    at.button(key="runs_monitor").click().run()
    assert not at.exception and at.title[0].value == "Monitor"
    # not the page's default (the newest run): the one selected
    assert at.selectbox(key="monitor_run").value == str(oldest.path)


def test_runs_page_missing_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFSDE_RUNS_DIR", str(tmp_path / "nowhere"))
    at = AppTest.from_file(str(APP / "views" / "runs.py"), default_timeout=30).run()
    assert not at.exception
    assert "does not exist" in at.error[0].value


def test_plugins_page():
    rows = get_registry().rows()
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
    assert command[5:9] == ["--server.address", "127.0.0.1", "--server.port", "8600"]
    assert kwargs["env"]["DIFFSDE_RUNS_DIR"] == str(tmp_path.resolve())


# A child Python in which the dashboard's packages cannot be imported (as without the extra).
_WITHOUT_DASHBOARD = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("streamlit", "altair"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Hide())
"""


def test_dashboard_command_without_the_extra(tmp_path):
    """Without streamlit, `diffsde dashboard` says in one line how to get it and exits 1,
    starting nothing. Mutation: leaving streamlit out of the modules checked fails this."""
    code = _WITHOUT_DASHBOARD + (
        "from diffsde._cli import main\n"
        f"sys.exit(main(['dashboard', '--runs-dir', {str(tmp_path)!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=APP.parent
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        "diffsde dashboard: streamlit, altair not installed; install the dashboard with "
        "`pip install 'diffsde[dashboard]'`"
    ]
    assert done.stdout == ""


def test_core_does_not_import_the_dashboard():
    """`import diffsde` (and its run store and jobs) loads no Streamlit, Altair or pandas, and
    works where they are missing. Mutation: `import pandas` in diffsde/runs.py fails this."""
    code = _WITHOUT_DASHBOARD + (
        "import diffsde, diffsde.runs, diffsde.jobs\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('streamlit', 'altair', 'pandas', 'ruamel'))\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=APP.parent
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _listening(port: int) -> set[str]:
    """The local addresses with a socket listening on ``port`` (from /proc/net/tcp, tcp6)."""
    found = set()
    for table, size in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = pathlib.Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port or len(address) != size:
                continue
            if size == 8:
                found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
            else:
                words = [bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, 32, 8)]
                found.add(socket.inet_ntop(socket.AF_INET6, b"".join(words)))
    return found


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs Linux /proc/net/tcp")
def test_dashboard_listens_on_localhost_only(tmp_path):
    """The real `diffsde dashboard` (Streamlit started by the CLI) answers on 127.0.0.1 and has
    no socket on any other address: it can launch and delete runs, so it is not on the
    network unless asked with --host. Mutation: --host 0.0.0.0 as the default fails this."""
    server = DashboardServer(tmp_path, tmp_path / "dashboard.log")
    try:
        server.wait_healthy()
        assert _listening(server.port) == {"127.0.0.1"}, server.log.read_text()
    finally:
        server.stop()


# -- Compare ----------------------------------------------------------------------------------


class _Arrays(LazyArrays):
    """Sample arrays held in memory, as a run's lazily read ones (for made-up variants)."""

    def __init__(self, arrays):
        super().__init__(pathlib.Path("."), {})
        self._arrays = dict(arrays)

    def __getitem__(self, name):
        return self._arrays[name]

    def __iter__(self):
        return iter(self._arrays)

    def __len__(self):
        return len(self._arrays)

    def shape(self, name):
        return np.shape(self._arrays[name])


def _variant(record, id, seed=None, evaluation=None, name=None, **samples):
    spec = dict(record.spec, seed=record.spec["seed"] if seed is None else seed)
    arrays = {k: record.samples[k] for k in record.samples}
    return dataclasses.replace(
        record,
        id=id,
        name=name or record.name,
        spec=spec,
        eval=record.eval if evaluation is None else evaluation,
        samples=_Arrays({**arrays, **samples}),
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
    """The best of each metric as the metric declares it: lowest sliced W2, MMD² nearest 0
    (not the most negative), highest of a "max" metric; nothing marked where all are equal.
    Mutation: ranking "zero" like "min" (or ignoring "max") makes this fail."""
    vp, ve = list_runs(runs_dir)
    frame = final_metrics([vp, ve])
    assert list(frame.index) == [vp.id, ve.id]
    assert {"run", "name", "seed", "steps", "wall_time", "loss", "eval.sliced_w2"} <= set(
        frame.columns
    )
    assert list(frame["run"]) == [run_label(vp), run_label(ve)]
    assert list(frame["steps"]) == [20, 20]
    directions = metric_directions(get_registry())
    assert directions["sliced_w2"] == "min" and directions["mmd"] == "zero"
    assert directions["nll"] == "min" and directions["loss"] == "min"
    directions = {**directions, "accuracy": "max"}
    a = _variant(vp, "a", evaluation={"sliced_w2": 0.5, "mmd": -0.3, "x.mmd": 2.0, "accuracy": 1})
    b = _variant(vp, "b", evaluation={"sliced_w2": 0.2, "mmd": 0.01, "accuracy": 3})
    c = _variant(vp, "c", evaluation={"sliced_w2": 0.2, "mmd": 0.4, "accuracy": 2})
    best = best_per_column(final_metrics([a, b, c]), directions)
    assert list(best["eval.sliced_w2"]) == [False, True, True]  # ties both marked
    assert list(best["eval.mmd"]) == [False, True, False]  # nearest 0, not -0.3
    assert list(best["eval.accuracy"]) == [False, True, False]
    assert list(best["eval.x.mmd"]) == [True, False, False]  # NaN elsewhere
    assert not best["steps"].any() and not best["name"].any() and not best["wall_time"].any()
    assert not best["loss"].any()  # same training history: nothing to choose
    undeclared = best_per_column(final_metrics([a, b]), {"loss": "min"})
    assert not undeclared.to_numpy().any()  # a metric without a direction is never ranked


def test_directions_name_what_metrics_report(runs_dir):
    """Every metric a run reports has a direction (nll_se aside), so the Compare page can rank
    it. Mutation: a typo in a metric's `directions` key makes this fail."""
    directions = metric_directions(get_registry())
    for record in list_runs(runs_dir):
        assert set(record.eval) <= set(directions)
    for component in get_registry().components["metric"].values():
        assert set(component.cls.directions.values()) <= {"min", "max", "zero"}
        assert component.cls.directions, component


def test_number_formats():
    """Integers as integers and no "± 0": "steps 1500.0000 ± 0.0000" was the complaint.
    Mutation: formatting every value with %.4f makes this fail."""
    assert format_number(1500, integer=True) == "1500"
    assert format_number(np.int64(10)) == "10"
    assert format_number(0.012341) == "0.01234" and format_number(None) == "—"
    assert format_number(float("nan")) == "—"
    assert mean_std_text(1500.0, 0.0, 3, integer=True) == "1500 (all 3 equal)"
    assert mean_std_text(0.5, 0.25, 3, integer=False) == "0.5 ± 0.25"
    assert mean_std_text(1500.0, 50.0, 2, integer=True) == "1500 ± 50"
    assert mean_std_text(0.5, float("nan"), 1, integer=False) == "0.5"


def test_smooth_and_curves(runs_dir):
    values = np.array([1.0, 3.0, 2.0, 5.0])
    np.testing.assert_array_equal(smooth(values, 0.0), values)
    np.testing.assert_allclose(smooth(values, 0.5), [1.0, 2.0, 2.0, 3.5])
    with pytest.raises(ValueError):
        smooth(values, 1.0)
    vp, ve = list_runs(runs_dir)
    long = curves([vp, ve], ["loss"], "wall_time", alpha=0.9)
    assert list(long.columns) == ["run", "wall_time", "series", "value"]
    assert len(long) == len(vp.metrics["loss"]) + len(ve.metrics["loss"])
    assert long["run"].nunique() == 2
    np.testing.assert_allclose(
        long["value"][: len(vp.metrics["loss"])], smooth(vp.metrics["loss"], 0.9)
    )
    raw = curves([vp], ["grad_norm"], "step")
    np.testing.assert_array_equal(raw["value"], vp.metrics["grad_norm"])
    every = curves([vp])  # the Monitor's: each series of one run
    assert list(every["series"].unique()) == ["loss", "lr", "grad_norm"]
    # a training method's own series follow; one a run did not log is left out
    method = {k: v for k, v in vp.metrics.items() if k != "lr"}
    method = dataclasses.replace(vp, metrics={**method, "variance": vp.metrics["loss"] * 2})
    assert series_names([method]) == ["loss", "grad_norm", "variance"]
    assert series_names([vp, method]) == ["loss", "lr", "grad_norm", "variance"]
    assert list(curves([method])["series"].unique()) == ["loss", "grad_norm", "variance"]
    np.testing.assert_array_equal(every.loc[every["series"] == "lr", "step"], vp.metrics["step"])


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
    assert summary.loc["steps", "mean ± std"] == "20 (all 3 equal)"
    assert summary.loc["eval.sliced_w2", "mean ± std"] == "3 ± 2.646"


def test_sample_views(runs_dir):
    vp, _ = list_runs(runs_dir)
    labelled = _variant(
        vp,
        "l",
        **{
            "pf_ode-solver=heun-steps=20-n=1000": np.zeros((5, 2)),
            "trajectory": np.zeros((3, 5, 2)),
        },
    )
    assert sample_sets(labelled) == ["samples", "pf_ode-solver=heun-steps=20-n=1000"]
    assert [sample_view(d) for d in (2, 64, 4, 10, 1)] == ["scatter", "image"] + ["histogram"] * 3
    points = scatter_frame(vp.samples["samples"], vp.samples["reference"], max_points=30)
    assert list(points["set"].unique()) == ["reference", "samples"] and len(points) == 60
    marginals = marginal_frame(np.ones((10, 6)), None, coordinates=4)
    assert sorted(marginals["coordinate"].unique()) == ["x0", "x1", "x2", "x3"]
    tile = image_tile(np.arange(5 * 64).reshape(5, 64), count=4, columns=2)
    assert tile.shape == (17, 17) and tile.min() == 0 and tile.max() == 1
    # a shared grey scale: values beyond the reference's bounds are clipped, not rescaled
    shared = image_tile(np.full((1, 64), 2.0), count=1, columns=1, bounds=(0.0, 4.0))
    assert np.all(shared == 0.5)
    # nearest neighbour: every pixel becomes a 3x3 block of the same value, no blending
    big = upscale(np.array([[0.0, 1.0], [0.25, 0.5]]), 3)
    assert big.shape == (6, 6) and set(np.unique(big)) == {0.0, 0.25, 0.5, 1.0}
    np.testing.assert_array_equal(big[:3, 3:], 1.0)
    np.testing.assert_array_equal(big[3:, :3], 0.25)


def test_square_domains():
    """Both axes span the same length (equal aspect on a square chart), covering every point.
    Mutation: taking each axis's own extent makes this fail."""
    import pandas as pd

    points = pd.DataFrame({"x": [0.0, 10.0, 5.0], "y": [1.0, 2.0, np.nan], "set": "samples"})
    (x0, x1), (y0, y1) = square_domains(points)
    assert x1 - x0 == pytest.approx(y1 - y0) and x1 - x0 > 10.0
    assert x0 < 0.0 and x1 > 10.0 and y0 < 1.0 and y1 > 2.0
    assert (y0 + y1) / 2 == pytest.approx(1.5)


def test_compare_page(runs_dir, monkeypatch):
    monkeypatch.setenv("DIFFSDE_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(str(APP / "views" / "compare.py"), default_timeout=30).run()
    assert not at.exception
    assert any("pick runs" in i.value for i in at.info)
    records = list_runs(runs_dir)
    ids = [r.id for r in records]
    at = AppTest.from_file(str(APP / "views" / "compare.py"), default_timeout=30)
    at.session_state["compare_runs"] = ids  # as the Runs page leaves it
    at.run()
    assert not at.exception
    metrics, diff = at.dataframe[0].value, at.dataframe[1].value
    assert list(metrics.index) == ids and "eval.sliced_w2" in metrics.columns
    assert list(metrics["run"]) == [run_label(r) for r in records]
    assert "sde.type" in diff.index and "training.batch_size" not in diff.index
    assert list(diff.columns) == [run_label(r) for r in records]  # headers: name · seed · id
    assert [s.value for s in at.subheader] == [plain(run_label(r)) for r in records]
    assert any("`eval.sliced_w2`: lowest" in c.value for c in at.caption)
    assert len(at.get("download_button")) == 1
    # the digits-free tiny runs are 2-D: one scatter each, no blurry image
    assert not at.get("image")
    at.toggle(key="compare_all_keys").set_value(True).run()
    assert "training.batch_size" in at.dataframe[1].value.index
    at.selectbox(key="metric").set_value("grad_norm").run()
    at.selectbox(key="compare_x").set_value("wall_time").run()
    at.slider(key="smoothing").set_value(0.9).run()
    assert not at.exception
    at.multiselect(key="runs").unselect(ids[1]).run()
    assert at.session_state["compare_runs"] == [ids[0]]
    assert not at.exception


def test_compare_page_images(tmp_path, monkeypatch):
    """64-dimensional samples are drawn as 8x8 images: the samples' grid and the reference's
    side by side, lossless (PNG). Mutation: dropping the reference grid fails this."""
    spec = tmp_path / "image.yaml"
    spec.write_text(SPEC.replace("NAME", "img").replace("SDE", "vp").replace("dim: 2", "dim: 64"))
    assert main(["run", str(spec), "--runs-dir", str(tmp_path / "runs"), "-q"]) == 0
    monkeypatch.setenv("DIFFSDE_RUNS_DIR", str(tmp_path / "runs"))
    (record,) = list_runs(tmp_path / "runs")
    at = AppTest.from_file(str(APP / "views" / "compare.py"), default_timeout=30)
    at.query_params["runs"] = [record.id]
    at.run()
    assert not at.exception
    images = [i.proto.imgs[0] for i in at.get("image")]
    assert [i.caption for i in images] == ["samples", "reference"]
    assert all(i.url.endswith(".png") for i in images)


def test_compare_shows_a_damaged_sample_file_as_an_error(runs_dir, tmp_path, monkeypatch):
    """A run whose results file was cut short: the sample-set selector still lists it (from the
    stored shapes, without reading arrays), and opening it shows the store's one-line reason
    while the other run is drawn. Mutation: reading the arrays in `sample_sets` (as before), or
    no `RunReadError` clause in the view, puts an exception on the page."""
    store = tmp_path / "runs"
    shutil.copytree(runs_dir, store)
    first, second = list_runs(store)
    (data,) = (first.path / "results").glob("run-*.h5")
    data.write_bytes(data.read_bytes()[:100])
    monkeypatch.setenv("DIFFSDE_RUNS_DIR", str(store))
    at = AppTest.from_file(str(APP / "views" / "compare.py"), default_timeout=30)
    at.query_params["runs"] = [first.id, second.id]
    at.run()
    assert not at.exception
    (error,) = at.error
    assert "damaged" in error.value and plain(first.id) in error.value
    assert at.selectbox(key=f"compare_set_{second.id}").value == "samples"  # still drawn


def test_compare_state_from_the_url(runs_dir, monkeypatch):
    """``/compare?runs=ID&runs=ID&metric=grad_norm&smoothing=0.5`` (and the older
    ``?runs=ID,ID``) restores the comparison in a new session. Mutation: reading only the
    session's selection makes this fail."""
    monkeypatch.setenv("DIFFSDE_RUNS_DIR", str(runs_dir))
    ids = [r.id for r in list_runs(runs_dir)]
    for runs in (ids, ",".join(ids)):
        at = AppTest.from_file(str(APP / "views" / "compare.py"), default_timeout=30)
        at.query_params.update(runs=runs, metric="grad_norm", smoothing="0.5")
        at.run()
        assert not at.exception
        assert at.multiselect(key="runs").value == ids
        assert at.selectbox(key="metric").value == "grad_norm"
        assert at.slider(key="smoothing").value == 0.5
    at = AppTest.from_file(str(APP / "views" / "compare.py"), default_timeout=30)
    at.query_params["runs"] = ["nope", ids[0]]  # an id that is not a run is dropped
    at.run()
    assert at.multiselect(key="runs").value == [ids[0]]


def test_runs_page_rename_and_delete_ask_first(tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    for name in ("first", "second"):
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(SPEC.replace("NAME", name).replace("SDE", "vp"))
        assert main(["run", str(spec), "--runs-dir", str(runs_dir), "-q"]) == 0
    first, second = (r.id for r in list_runs(runs_dir))
    monkeypatch.setenv("DIFFSDE_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(str(APP / "views" / "runs.py"), default_timeout=30).run()
    at.multiselect(key="runs").set_value([first, second]).run()

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
    # the id stays, and so does the selection (under the new name)
    assert at.multiselect(key="runs").value == [first, second]
    assert at.session_state["compare_runs"] == [first, second]
    assert at.multiselect(key="runs").format_func(first).startswith("renamed · seed 3 · ")

    at.selectbox(key="runs_manage_target").select(second).run()
    at.button(key="runs_delete").click().run()
    assert "removed for good" in at.warning[0].value
    at.button(key="runs_cancel").click().run()
    assert not at.warning and len(list_runs(runs_dir)) == 2
    at.button(key="runs_delete").click().run()
    at.button(key="runs_confirm").click().run()
    assert "deleted second" in at.success[0].value
    assert [r.id for r in list_runs(runs_dir)] == [first]
    assert list(at.dataframe[0].value["short_id"]) == [short_id(first)]
    assert at.multiselect(key="runs").value == [first]  # a deleted run leaves the selection


def test_names_and_messages_are_shown_as_plain_text():
    """A run named like Markdown (an image link, emphasis, maths, a Streamlit colour) is shown
    as typed: every special character is escaped, so nothing is fetched or formatted.
    Mutation: dropping ``!`` ``[`` or ``:`` from `plain`'s character set fails this."""
    name = "![x](https://example.invalid/t.png) *bold* $x^2$ :red[r] `code` <b>"
    escaped = plain(name)
    assert escaped.replace("\\", "") == name
    for i, character in enumerate(escaped):
        if character in "![]()*$:`<>" and (i == 0 or escaped[i - 1] != "\\"):
            raise AssertionError(f"unescaped {character!r} at {i} in {escaped!r}")
