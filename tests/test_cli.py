"""The `diffsde` command: validate, --resolved, --set, schema; shipped specs are valid."""

import json
import pathlib

import numpy as np
import pytest
import yaml

import diffsde
from diffsde._cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


@pytest.mark.parametrize("spec", SPECS, ids=[s.stem for s in SPECS])
def test_shipped_specs_validate(spec, capsys):
    assert main(["validate", str(spec)]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {spec}")


def test_resolved_spec_fills_defaults_and_round_trips(tmp_path, capsys):
    spec = ROOT / "specs" / "vp_8gaussians.yaml"
    assert main(["validate", str(spec), "--resolved", "--set", "sde.beta_max=10"]) == 0
    text = capsys.readouterr().out
    resolved = yaml.safe_load(text)
    assert resolved["sde"] == {"type": "vp", "beta_min": 0.1, "beta_max": 10.0, "T": 1.0}
    assert resolved["training"]["weight_decay"] == 0.0 and resolved["eval"]["save_times"] == []
    again = tmp_path / "resolved.yaml"
    again.write_text(text)
    assert diffsde.load_spec(again).spec == diffsde.load_spec(spec, ["sde.beta_max=10"]).spec


def test_overrides_create_sections_and_parse_yaml_values():
    setup = diffsde.validate_text(
        "sde: {type: vp}\ndata: {type: toy, name: moons}\n",
        overrides=["prior.type=gaussian", "prior.std=[2.0, 3.0]", "data.name=rings", "seed=7"],
    )
    assert setup.spec.seed == 7 and setup.spec.data.name == "rings"
    assert list(setup.prior.std) == [2.0, 3.0]


def test_malformed_override_is_an_error(capsys, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("sde: {type: vp}\ndata: {type: toy, name: moons}\n")
    assert main(["validate", str(path), "--set", "seed"]) == 2
    assert "an override must look like key.path=value" in capsys.readouterr().err


def test_schema_lists_every_registered_tag(tmp_path):
    out = tmp_path / "schema.json"
    assert main(["schema", "-o", str(out)]) == 0
    schema = json.loads(out.read_text())
    text = json.dumps(schema)
    for tag in diffsde.get_registry().names("sde"):
        assert f'"const": "{tag}"' in text
    assert set(schema["required"]) == {"sde", "data"}
    assert "diffsde-expression" in text  # expression fields are marked for editors


def test_validate_reports_which_objectives_fit(capsys):
    assert main(["validate", str(ROOT / "specs" / "general_nonlinear.yaml")]) == 0
    out = capsys.readouterr().out
    assert "sde 'general' with no Gaussian kernel" in out and "objectives that can train it" in out


def test_run_commands_fail_with_one_line(tmp_path, capsys):
    """Every command that reads a run answers a missing, queued, damaged or format-1 run with
    one line naming it and exit code 1, never a traceback. Mutation: removing the RunReadError
    clause of `main` lets the exception escape and fails this."""
    queued = tmp_path / "queued"
    queued.mkdir()
    (queued / "job.json").write_text('{"state": "queued"}')
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "run.json").write_text('{"format": "diffsde-run", "format_ver')
    old = tmp_path / "old"
    old.mkdir()
    (old / "run.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    for run in (tmp_path / "missing", queued, damaged, old):
        for command in (["sample", str(run)], ["eval", str(run)], ["run", "--resume", str(run)]):
            assert main(command) == 1
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and str(run) in err, (command, err)
            assert err.startswith(f"diffsde {command[0]}: ")
    assert main(["runs", "--runs-dir", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["runs", "--runs-dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("skipped ") for line in err)  # queued: no problem


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished 20-step run of the tiny 2-D spec (tests/tiny.py) whose spec holds coordinate 1
    at −1 (`transforms:`)."""
    from tests.tiny import tiny_spec

    directory = tmp_path_factory.mktemp("transforms")
    spec = directory / "tiny.yaml"
    spec.write_text(
        tiny_spec() + "transforms:\n  - {type: inpaint, mask: [false, true], values: [-1.0]}\n"
    )
    assert main(["run", str(spec), "--runs-dir", str(directory / "runs"), "-q"]) == 0
    (run,) = (directory / "runs").iterdir()
    return run


def test_sample_applies_transforms_in_order_and_labels_them(tiny_run, capsys):
    """`sample --transform temperature:tau=0.5 --transform inpaint:…` stores exactly what the
    run's `_generate` gives with [Temperature(0.5), Inpaint] on its model, under a label naming
    both; the observed coordinate ends near its value. Mutation: dropping `transforms` from the
    `_generate` call in sample_run stores untransformed samples and fails it."""
    from diffsde._builtin.transforms import Inpaint, Temperature
    from diffsde._run import _generate, load_model

    inpaint = "inpaint:mask=[true,false],values=[1.5]"
    command = ["sample", str(tiny_run), "--n", "50", "--set", "sampler.steps=100"]
    command += ["--transform", "temperature:tau=0.5", "--transform", inpaint]
    assert main(command) == 0
    label = capsys.readouterr().out.split(": nfe")[0]
    assert label.endswith("-n=50+temperature-tau=0.5+inpaint-mask=_True,_False_-values=_1.5_")
    stored = diffsde.runs.open_run(tiny_run).samples[label]
    setup, model, keys, _, _ = load_model(tiny_run, ["eval.n_samples=50", "sampler.steps=100"])
    transforms = [Temperature(tau=0.5), Inpaint([True, False], [1.5], sde=setup.sde)]
    np.testing.assert_array_equal(stored, np.asarray(_generate(setup, model, keys, transforms).x))
    plain = np.asarray(_generate(setup, model, keys, []).x)
    assert np.max(np.abs(stored[:, 0] - 1.5)) < 0.05 < np.max(np.abs(plain[:, 0] - 1.5))


@pytest.mark.parametrize(
    "option, message",
    [
        ("temperature:tau=0", "--transform temperature:tau=0:1:1 tau: Input should be greater"),
        ("temperature:tau", "--transform 'temperature:tau': setting 'tau' is not KEY=VALUE"),
        (
            "warm",
            "type: unknown transform 'warm'; choose one of clip_score, guidance, inpaint, "
            "temperature",
        ),
        (
            "inpaint:mask=[true,true,false],values=[1.0,2.0]",
            "mask: has 3 entries but the data has dimension 2: give one true/false per",
        ),
    ],
)
def test_sample_reports_a_bad_transform_at_its_option(tiny_run, capsys, option, message):
    """Each bad --transform is one line naming the option, the field and the fix, exit 2,
    before anything is sampled."""
    assert main(["sample", str(tiny_run), "--transform", option]) == 2
    assert message in capsys.readouterr().err


def test_transform_options_split_at_top_level_commas_and_read_yaml():
    from diffsde._cli import parse_transform

    text = "guidance:log_potential=-0.5*sum((x-c)**2, axis=0)/maximum(s, 1),params={c: 1.0, s: 2}"
    assert parse_transform(text + ",weight=2") == {
        "type": "guidance",
        "log_potential": "-0.5*sum((x-c)**2, axis=0)/maximum(s, 1)",
        "params": {"c": 1.0, "s": 2},
        "weight": 2,
    }
    assert parse_transform("inpaint:mask=[true, false],values=[1.5]") == {
        "type": "inpaint",
        "mask": [True, False],
        "values": [1.5],
    }
    assert parse_transform("temperature") == {"type": "temperature"}
    for bad, why in [(":tau=1", "not a transform type"), ("t:tau=1,tau=2", "given twice")]:
        with pytest.raises(ValueError, match=why):
            parse_transform(bad)


def test_the_spec_transforms_apply_to_the_run_and_to_sample(tiny_run, capsys):
    """The spec's `transforms:` are applied by the run's own sampling and by `diffsde sample`
    without --transform (labelled with them); --transform replaces them. Mutation: `_generate`
    ignoring `setup.transforms` by default fails it."""
    from diffsde._builtin.transforms import Inpaint
    from diffsde._run import _generate, load_model

    record = diffsde.runs.open_run(tiny_run)
    setup, model, keys, _, _ = load_model(tiny_run)
    assert setup.transforms == (Inpaint([False, True], [-1.0], sde=setup.sde),)
    own = np.asarray(_generate(setup, model, keys, setup.transforms).x)
    np.testing.assert_allclose(record.samples["samples"], own, atol=1e-5)
    plain = np.asarray(_generate(setup, model, keys, []).x)
    assert np.max(np.abs(own[:, 1] - plain[:, 1])) > 0.1
    assert main(["sample", str(tiny_run), "--n", "40"]) == 0
    label = capsys.readouterr().out.split(": nfe")[0]
    assert label.endswith("-n=40+inpaint-mask=_False,_True_-values=_-1.0_")
    setup40, _, _, _, _ = load_model(tiny_run, ["eval.n_samples=40"])
    sampled = diffsde.runs.open_run(tiny_run).samples[label]
    np.testing.assert_array_equal(sampled, np.asarray(_generate(setup40, model, keys).x))
    assert main(["sample", str(tiny_run), "--n", "40", "--transform", "temperature:tau=1"]) == 0
    label = capsys.readouterr().out.split(": nfe")[0]
    assert label.endswith("-n=40+temperature-tau=1")
    replaced = diffsde.runs.open_run(tiny_run).samples[label]
    np.testing.assert_array_equal(replaced, np.asarray(_generate(setup40, model, keys, []).x))
