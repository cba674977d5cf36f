"""The dashboard's New run page: app/store.py (sources), app/validation.py (validation as the CLI
reports it, the annotated view), app/form.py (the form read off the JSON Schema, writing values
back into the YAML with a ruamel.yaml round trip) and the
page under AppTest, up to a launch that runs `diffsde run` in the background to completion."""

import dataclasses
import json
import pathlib
import time

import pytest
import yaml
from streamlit.testing.v1 import AppTest

from app.form import (
    COMMON_FIELDS,
    apply_form,
    form_field,
    form_fields,
    form_values,
    set_key,
    spec_schema,
)
from app.store import run_spec, shipped_specs
from app.table import runs_table
from app.validation import EDITOR_FILE, annotate, validate
from diffsde import get_registry
from diffsde._spec._source import Location
from diffsde._spec._validate import SpecIssue
from diffsde.runs import list_runs, open_run
from tests.tiny import tiny_spec

APP = pathlib.Path(__file__).resolve().parent.parent / "app"
PAGE = APP / "views" / "new_run.py"
SPEC = tiny_spec("NAME")
TYPO = SPEC.replace("NAME", "typo").replace("width: 16", "widht: 16")  # line 5, column 20


@dataclasses.dataclass(frozen=True)
class Launch:
    """What the page showed around one launch, and where the run went."""

    runs_dir: pathlib.Path
    path: pathlib.Path
    at: AppTest
    message: str  # right after Launch was clicked
    monitor_run: str  # the run the page left for the Monitor page
    links: int  # page links shown after the launch
    captions: list[str]  # one refresh later, while the run is still going


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """One run launched from the page, through the app's navigation, and waited for (120 s at
    most): the real run the other tests read, made the way the page makes runs."""
    runs_dir = tmp_path_factory.mktemp("new_run") / "runs"  # not there yet: the launch makes it
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIFFSDE_RUNS_DIR", str(runs_dir))
        at = AppTest.from_file(str(APP / "main.py"), default_timeout=60).run()
        at.switch_page("views/new_run.py").run()
        assert not at.exception and at.title[0].value == "New run"
        _type(at, SPEC.replace("NAME", "launched"))
        at.button(key="new_run_launch").click().run()
        assert not at.exception
        message = at.success[-1].value
        monitor_run, links = at.session_state["monitor_run"], len(at.get("page_link"))
        at.button(key="new_run_refresh").click().run()  # JAX alone takes seconds to import
        captions = [c.value for c in at.caption]
    (path,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (path / "run.h5").is_file() and open_run(path).status != "running":
            break
        time.sleep(0.5)
    return Launch(runs_dir, path, at, message, monitor_run, links, captions)


@pytest.fixture(scope="module")
def runs_dir(launched):
    return launched.runs_dir


@pytest.fixture(scope="module")
def schema():
    return spec_schema()


# -- app/editor.py ---------------------------------------------------------------------------


def test_shipped_specs(tmp_path):
    specs = shipped_specs()
    assert "vp_8gaussians" in specs and list(specs) == sorted(specs)
    assert validate(specs["vp_8gaussians"].read_text()).ok
    assert shipped_specs(tmp_path / "nowhere") == {}


def test_validate_typo_at_its_line():
    result = validate(TYPO)
    assert not result.ok and result.summary == ""
    (line,) = result.lines()  # the valid keys go on with the model's optional fields
    assert line.startswith(
        f"{EDITOR_FILE}:5:20 model.widht: unknown key 'widht' (did you mean 'width'?); "
        "valid keys: type, width, depth, n_frequencies"
    )
    assert str(result.issues[0]) == result.lines()[0]  # the CLI's line
    view = annotate(TYPO, result.issues, context=1).splitlines()
    assert [line[:4] for line in view] == ["4 | ", "5 | ", "  | ", "6 | "]
    assert view[1] == "5 | model: {type: mlp, widht: 16, depth: 1, n_frequencies: 4}"
    assert view[2].startswith("  | " + " " * 19 + "^ model.widht: unknown key 'widht'")
    far_apart = [
        SpecIssue(Location(EDITOR_FILE, 12, 1), "x", "bad"),
        SpecIssue(Location(EDITOR_FILE, 2, 1), "", "also bad"),
    ]
    wide = annotate("\n" * 11 + "x: 1\n", far_apart, context=0).splitlines()
    assert wide == [" 2 | ", "   | ^ also bad", " …", "12 | x: 1", "   | ^ x: bad"]


def test_validate_good_and_unrunnable():
    good = validate(SPEC.replace("NAME", "ok"))
    assert good.ok and good.issues == ()
    assert good.summary.startswith("ok: vp SDE on gmm data (dim 2), mlp model, dsm objective")
    no_sampler = validate(SPEC.replace("sampler:", "# sampler:"))
    assert not no_sampler.ok
    (issue,) = no_sampler.issues
    assert issue.key == "sampler" and "`diffsde run` needs this section" in issue.message


def test_validate_invalid_yaml():
    text = "name: a\nsde: {type: vp\n"
    result = validate(text)
    (line,) = result.lines()
    assert line.startswith(f"{EDITOR_FILE}:3:1 YAML syntax error")
    view = annotate(text, result.issues).splitlines()
    assert view[-2:] == ["3 | ", "  | ^ YAML syntax error" + line.split("YAML syntax error")[1]]
    assert annotate(text, []) == ""
    tabbed = [
        SpecIssue(Location(EDITOR_FILE, 2, 3), "k", "m"),
        SpecIssue(Location("x", 1, 1), "", ""),
    ]
    assert annotate("a: 1\n\tb: 2\n", tabbed, context=0) == "2 | \tb: 2\n  | \t ^ k: m"
    assert validate("- 1\n").lines() == [
        f"{EDITOR_FILE}:1:1 a spec must be a mapping of sections (sde:, data:, …)"
    ]


def test_form_fields_from_schema(schema):
    fields = {f.key: f for f in form_fields(schema)}
    assert list(fields) == list(COMMON_FIELDS)
    sde = fields["sde.type"]
    assert sde.kind == "choice" and sde.replaces_section and sde.default is None
    assert set(sde.choices) == set(get_registry().names("sde"))
    assert sde.choice_descriptions["vp"].startswith("Variance preserving")
    assert fields["objective.type"].choices == tuple(get_registry().names("objective"))
    assert set(fields["sampler.type"].choices) == set(get_registry().names("sampler"))
    steps = fields["training.steps"]
    assert (steps.kind, steps.default, steps.title) == ("integer", 2000, "Steps")
    assert steps.widget_bounds() == (1, None) and steps.bounds_text() == "> 0"
    assert steps.accepts(1) and not steps.accepts(0) and not steps.accepts(True)
    rate = fields["training.learning_rate"]
    assert rate.kind == "number" and rate.widget_bounds() == (None, None)
    assert rate.accepts(0.5) and not rate.accepts(0.0) and not rate.accepts("1e-3")
    assert fields["name"].kind == "string" and fields["name"].default == "unnamed"
    assert fields["eval.n_samples"].default == 2000
    ema = form_field(schema, "training.ema_decay")
    assert ema.bounds_text() == "≥ 0 and < 1" and ema.widget_bounds() == (0.0, None)
    with pytest.raises(KeyError, match="no key 'nope'"):
        form_field(schema, "nope")
    for bad in ("sde.beta_min", "training.steps.x", "training.nope"):
        with pytest.raises(KeyError, match="is not a form field"):
            form_field(schema, bad)


def test_form_values(schema):
    fields = form_fields(schema)
    values = form_values(SPEC.replace("NAME", "v"), fields)
    assert values["name"] == "v" and values["training.steps"] == 20
    assert values["sde.type"] == "vp" and values["training.learning_rate"] == 0.001  # default
    odd = form_values("seed: x\ntraining: {steps: 0}\nsde: {type: nope}\n", fields)
    assert odd["seed"] == 0 and odd["training.steps"] == 2000  # the widgets' fallbacks
    assert odd["sde.type"] == "nope" and odd["sampler.type"] is None
    with pytest.raises(ValueError, match="not valid YAML"):
        form_values("a: [", fields)
    with pytest.raises(ValueError, match="not a mapping"):
        form_values("- 1", fields)


@pytest.mark.parametrize(
    "text, key, value, expected",
    [
        ("# top\nseed: 1  # kept\n", "seed", 2, "# top\nseed: 2  # kept\n"),
        ("training: {steps: 20}\n", "training.steps", 5, "training: {steps: 5}\n"),
        (
            "training: {steps: 20}\n",
            "training.batch_size",
            8,
            "training: {steps: 20, batch_size: 8}\n",
        ),
        ("training: {}\n", "training.steps", 5, "training:\n  steps: 5\n"),
        (
            "training:\n  steps: 20\n\n# next\nseed: 1\n",
            "training.lr",
            0.5,
            "training:\n  steps: 20\n  lr: 0.5\n\n# next\nseed: 1\n",
        ),
        ("seed: 1", "eval.n_samples", 7, "seed: 1\neval: {n_samples: 7}\n"),
        ("# only a comment\n", "name", "a: b", "# only a comment\nname: 'a: b'\n"),
        (
            "sde:  # the SDE\n  type: vp\n  beta_min: 0.1\n\ndata: {type: gmm}\n",
            "sde",
            {"type": "ve"},
            "sde: {type: ve} # the SDE\ndata: {type: gmm}\n",
        ),
        ("training:\nseed: 1\n", "training.steps", 3, "training: {steps: 3}\nseed: 1\n"),
        ("training: 5\n", "training.steps", 3, "training: {steps: 3}\n"),
    ],
)
def test_set_key_edits_in_place(text, key, value, expected):
    assert set_key(text, key, value) == expected


def test_set_key_keeps_comments_and_refuses():
    """ruamel.yaml round trips: a trailing comma, an inline comment on the entry a key is added
    after, and the comment of the next section all survive. Mutation: not moving the comment
    that follows a block mapping's last entry (`_put`) puts the new key under `# next`."""
    text = set_key("# kept\ntraining: {steps: 1,}\n", "training.batch_size", 2)
    assert text == "# kept\ntraining: {steps: 1, batch_size: 2}\n"
    text = set_key("training:\n  steps: 20  # few\n\n# next\nseed: 1\n", "training.lr", 0.5)
    assert text == "training:\n  steps: 20  # few\n  lr: 0.5\n\n# next\nseed: 1\n"
    assert yaml.safe_load(set_key("lr: 1.0e-3\n", "lr", 0.25)) == {"lr": 0.25}
    with pytest.raises(ValueError, match="not valid YAML"):
        set_key("a: [", "seed", 1)
    with pytest.raises(ValueError, match="not a mapping"):
        set_key("- 1\n", "seed", 1)


def test_apply_form(schema):
    fields = form_fields(schema)
    text = SPEC.replace("NAME", "form").replace("sde: {type: vp}", "sde: {type: vp, beta_max: 10}")
    values = form_values(text, fields)
    same, notes = apply_form(text, fields, values)
    assert same == text and notes == []  # untouched defaults are not written
    values.update({"sde.type": "ve", "training.steps": 7, "name": "renamed", "seed": 9})
    new, notes = apply_form(text, fields, values)
    data = yaml.safe_load(new)
    assert data["sde"] == {"type": "ve"} and data["training"]["steps"] == 7
    assert (data["name"], data["seed"]) == ("renamed", 9)
    assert data["training"]["batch_size"] == 32 and "learning_rate" not in data["training"]
    (note,) = notes
    assert "`sde` is now `{type: ve}`" in note and "(beta_max) were dropped" in note
    assert validate(new).ok
    bare = "sde: {type: vp}\ndata: {type: gmm}\n"
    added, notes = apply_form(bare, fields, {"sampler.type": "pf_ode", "objective.type": None})
    assert yaml.safe_load(added)["sampler"] == {"type": "pf_ode"}
    assert notes == ["`sampler` is now `{type: pf_ode}`."]


def test_run_spec(runs_dir):
    (run,) = [p.name for p in runs_dir.iterdir() if p.is_dir()]
    text = run_spec(runs_dir, run)
    assert text == open_run(runs_dir / run).spec_yaml and validate(text).ok
    for bad in ("../" + run, str(runs_dir / run), "..", "", "a/b"):
        with pytest.raises(ValueError, match="outside the runs directory"):
            run_spec(runs_dir, bad)
    with pytest.raises(ValueError, match="there is no run"):
        run_spec(runs_dir, "missing")


# -- the page --------------------------------------------------------------------------------


def _type(at, text):
    """What the editor sends after a pause in typing: the page's text, validated on the rerun
    (the browser test types into the real editor)."""
    at.session_state["new_run_text"] = text
    return at.run()


def _page(runs_dir, monkeypatch, **query):
    monkeypatch.setenv("DIFFSDE_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(str(PAGE), default_timeout=60)
    at.query_params.update(query)
    return at.run()


def test_page_validates_inline(runs_dir, monkeypatch):
    at = _page(runs_dir, monkeypatch)
    assert not at.exception
    assert at.title[0].value == "New run"
    assert at.session_state["new_run_text"].startswith("# VP (DDPM)")
    assert at.success[0].value.startswith("✓ valid: vp-8gaussians")
    assert not at.button(key="new_run_launch").disabled
    _type(at, TYPO)
    assert not at.exception
    assert at.error[0].value.startswith("✗ 1 problem: fix it to launch")  # above the editor
    assert at.error[1].value.startswith("1 problem in the spec")
    assert at.code[0].value == validate(TYPO).lines()[0]  # the CLI's line, verbatim
    assert at.code[0].value.startswith(f"{EDITOR_FILE}:5:20 model.widht: unknown key 'widht'")
    assert "5 | model: {type: mlp, widht: 16" in at.code[1].value
    assert "^ model.widht: unknown key 'widht'" in at.code[1].value
    assert at.button(key="new_run_launch").disabled
    _type(at, "name: a\nsde: {type: vp\n")
    assert not at.exception
    assert at.code[0].value.startswith(f"{EDITOR_FILE}:3:1 YAML syntax error")
    assert any("needs a YAML mapping" in i.value for i in at.info)  # no form, no traceback
    assert at.button(key="new_run_launch").disabled


def test_page_form_rewrites_yaml(runs_dir, monkeypatch):
    at = _page(runs_dir, monkeypatch)
    at.number_input(key="new_run_form.training.steps").set_value(123)
    at.selectbox(key="new_run_form.sde.type").set_value("ve")
    at.button(key="FormSubmitter:new_run_form-Apply to the YAML").click().run()
    assert not at.exception
    text = at.session_state["new_run_text"]
    assert text.startswith("# VP (DDPM)")  # the comment survives
    data = yaml.safe_load(text)
    assert data["training"]["steps"] == 123 and data["sde"] == {"type": "ve"}
    assert any("beta_min, beta_max" in i.value for i in at.info)
    assert at.success[0].value.startswith("✓ valid: vp-8gaussians: ve SDE")
    assert at.number_input(key="new_run_form.training.steps").value == 123


def test_page_sources(runs_dir, monkeypatch):
    (run,) = [p.name for p in runs_dir.iterdir() if p.is_dir()]
    at = _page(runs_dir, monkeypatch, **{"from": run})
    assert not at.exception
    assert at.session_state["new_run_text"] == open_run(runs_dir / run).spec_yaml
    assert at.selectbox(key="new_run_source").value == f"run:{run}"
    at.selectbox(key="new_run_source").set_value("spec:ou_gmm").run()
    at.button[0].click().run()  # Load into editor
    assert at.session_state["new_run_text"] == shipped_specs()["ou_gmm"].read_text()
    bad = _page(runs_dir, monkeypatch, **{"from": "../../etc"})
    assert not bad.exception
    assert "outside the runs directory" in bad.error[0].value
    assert bad.session_state["new_run_text"] == ""
    _type(bad, SPEC.replace("NAME", "x"))
    assert not bad.exception and bad.success[0].value.startswith("✓ valid: x")


def test_launch_runs_to_completion(launched, monkeypatch):
    """Launch queued a real `diffsde run` in the background (its own process group, see
    diffsde/_jobs.py); it finished, and both the page and the run store say `completed`."""
    path, at = launched.path, launched.at
    assert launched.message.startswith("launched **launched** as `")
    assert "queued" in launched.message or "running" in launched.message
    assert str(path) in launched.message and str(path / "log.txt") in launched.message
    assert launched.monitor_run == str(path) and launched.links == 1
    assert any("1 run(s) queued or running" in c for c in launched.captions)
    assert open_run(path).status == "completed", (path / "log.txt").read_text()
    monkeypatch.setenv("DIFFSDE_RUNS_DIR", str(launched.runs_dir))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "finished" not in at.success[-1].value:
        at.button(key="new_run_refresh").click().run()  # the job is marked after its exit
        time.sleep(0.2)
    assert "finished (run completed)" in at.success[-1].value
    assert list(runs_table(list_runs(launched.runs_dir))["status"]) == ["completed"]


def _walk(node, out):
    for child in getattr(node, "children", {}).values():
        out.append(child)
        _walk(child, out)
    return out


def _editor_data(at):
    """What the page handed the editor component (its ``data``)."""
    (editor,) = [e for e in _walk(at._tree, []) if getattr(e, "key", None) == "new_run_editor"]
    assert editor.proto.component_name == "diffsde.spec_editor"
    return json.loads(editor.proto.json)


def test_page_editor_and_layout(runs_dir, monkeypatch):
    """The verdict and Launch come before the editor (above the fold); the editor gets the text
    the page validated, a new version only when the page replaces the text (a form change), and
    the same version after typing (so what is being typed is not overwritten). Mutation:
    drawing Launch below the editor, or a new version on every rerun, makes this fail."""
    at = _page(runs_dir, monkeypatch)
    order = [getattr(e, "key", None) or type(e).__name__ for e in _walk(at._tree, [])]
    assert order.index("new_run_launch") < order.index("new_run_editor")
    assert order.index("Success") < order.index("new_run_editor")
    first = _editor_data(at)
    assert first["text"] == at.session_state["new_run_text"] and first["height"] >= 300
    _type(at, TYPO)
    typed = _editor_data(at)
    assert typed == {**first, "text": TYPO}  # validated text follows, version stays
    _type(at, SPEC.replace("NAME", "ok"))
    at.number_input(key="new_run_form.training.steps").set_value(77)
    at.button(key="FormSubmitter:new_run_form-Apply to the YAML").click().run()
    applied = _editor_data(at)
    assert applied["version"] == first["version"] + 1
    assert "steps: 77" in applied["text"] and applied["text"] == at.session_state["new_run_text"]


def test_form_refuses_an_alias_bomb_at_once():
    """The form parses the editor's text with the validator's bounded loader: an alias bomb
    is refused in milliseconds instead of being built. Mutation: `yaml.safe_load` in
    `app.editor._parse` (as before) accepts it, and anything walking it expands 10^9 values."""
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi")
    )
    start = time.perf_counter()
    with pytest.raises(ValueError, match="alias"):
        form_values(bomb, form_fields())
    assert time.perf_counter() - start < 2.0
