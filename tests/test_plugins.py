"""The plugin registry: throwaway plugins, load errors, allow-list, and the CLI listing."""

import inspect
import json
import pathlib
import types
from typing import ClassVar, Literal

import equinox as eqx
import pytest

import diffsde
from diffsde import _plugins, hookspecs
from diffsde._cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]


class DoubleDriftConfig(diffsde.SDEConfig):
    """A throwaway SDE: the VP drift doubled (so its kernel is VP with 2β)."""

    type: Literal["double_vp"] = "double_vp"

    def build(self, *, dim):
        return diffsde.VP(dim, beta_min=0.2, beta_max=40.0)


class KernelObjective(diffsde.ObjectiveConfig):
    """A throwaway objective that needs a Gaussian kernel (like DSM)."""

    type: Literal["kernel_obj"] = "kernel_obj"
    needs_gaussian_kernel: ClassVar[bool] = True


class SampleObjective(diffsde.ObjectiveConfig):
    """A throwaway objective that needs only samples of p_t (like SSM)."""

    type: Literal["sample_obj"] = "sample_obj"
    needs_gaussian_kernel: ClassVar[bool] = False

    def build(self, *, sde, data):
        del data
        return diffsde.SlicedScoreMatching(sde, weighting=diffsde.UniformWeighting())


def _plugin(**hooks):
    """A plugin object with the given hook implementations."""
    plugin = types.SimpleNamespace()
    for name, register_all in hooks.items():
        setattr(plugin, name, diffsde.hookimpl(register_all))
    return plugin


@pytest.fixture
def throwaway():
    """Register plugins for one test, unregister them afterwards."""
    names = []

    def add(name, distribution="throwaway-dist", **hooks):
        diffsde.register_plugin(_plugin(**hooks), name, distribution)
        names.append(name)
        return diffsde.get_registry()

    yield add
    for name in names:
        diffsde.unregister_plugin(name)


def _register(*configs):
    def register_all(register):
        for config in configs:
            register(config)

    return register_all


def test_builtins_are_registered_through_the_hooks():
    registry = diffsde.get_registry()
    assert {"ou", "ve", "vp", "subvp", "langevin", "affine", "general"} <= set(
        registry.names("sde")
    )
    assert {"gmm", "toy"} <= set(registry.names("dataset"))
    vp = registry.get("sde", "vp")
    assert (vp.plugin, vp.distribution, vp.cls) == ("diffsde", "diffsde", diffsde.VP)


def test_throwaway_plugin_adds_an_sde_usable_in_specs(throwaway, tmp_path):
    registry = throwaway("throwaway", register_sdes=_register(DoubleDriftConfig))
    component = registry.get("sde", "double_vp")
    assert component.distribution == "throwaway-dist"
    assert component.doc.startswith("A throwaway SDE")
    setup = diffsde.validate_text("sde: {type: double_vp}\ndata: {type: toy, name: moons}\n")
    assert isinstance(setup.sde, diffsde.VP) and setup.sde.schedule.beta_max == 40.0
    assert "double_vp" in json.dumps(diffsde._spec._model.spec_model(registry).model_json_schema())


def test_unregistering_removes_the_component(throwaway):
    throwaway("throwaway", register_sdes=_register(DoubleDriftConfig))
    diffsde.unregister_plugin("throwaway")
    try:
        assert "double_vp" not in diffsde.get_registry().names("sde")
        with pytest.raises(diffsde.SpecError, match="unknown sde type 'double_vp'"):
            diffsde.validate_text("sde: {type: double_vp}\ndata: {type: toy, name: moons}\n")
    finally:
        diffsde.register_plugin(_plugin(), "throwaway")  # the fixture unregisters it


def test_duplicate_name_is_one_clear_error_and_the_rest_works(throwaway):
    class FakeVP(DoubleDriftConfig):
        type: Literal["vp"] = "vp"

    registry = throwaway("dupe", "dupe-dist", register_sdes=_register(FakeVP, DoubleDriftConfig))
    assert registry.get("sde", "vp").cls is diffsde.VP  # the first one stays
    assert "double_vp" in registry.names("sde")  # the rest of that plugin still registers
    (error,) = [e for e in registry.errors if e.plugin == "dupe"]
    assert str(error).startswith("plugin 'dupe' (distribution 'dupe-dist'): sde 'vp'")
    assert "already registered by plugin 'diffsde' (distribution 'diffsde')" in str(error)


@pytest.mark.parametrize(
    "bad, fragment",
    [
        (KernelObjective, "does not subclass diffsde.SDEConfig"),
        (dict, "neither a subclass of diffsde.AbstractSDE (one class with a `tag`) nor of"),
        (type("UntaggedVP", (diffsde.VP,), {"tag": None}), "without a class attribute `tag"),
        (diffsde.SDEConfig, "which is abstract: implement build"),
    ],
)
def test_wrong_base_class_is_reported_with_the_plugin(throwaway, bad, fragment):
    registry = throwaway("wrong", "wrong-dist", register_sdes=_register(bad))
    (error,) = [e for e in registry.errors if e.plugin == "wrong"]
    assert error.distribution == "wrong-dist" and fragment in error.message


def test_missing_type_tag_is_reported(throwaway):
    class NoTag(diffsde.SDEConfig):
        def build(self, *, dim):
            return diffsde.VP(dim)

    registry = throwaway("notag", register_sdes=_register(NoTag))
    assert any('type: Literal["<tag>"]' in e.message for e in registry.errors)


def test_a_hook_that_raises_is_reported_and_the_rest_works(throwaway):
    def broken(register):
        raise RuntimeError("boom")

    registry = throwaway("broken", register_sdes=broken)
    assert any(e.plugin == "broken" and "RuntimeError: boom" in e.message for e in registry.errors)
    assert "vp" in registry.names("sde")


class _FakeDist:
    def __init__(self, name):
        self.name = name


class _FakeEntryPoint:
    def __init__(self, name, target, dist="fake-dist"):
        self.name, self._target, self.dist = name, target, _FakeDist(dist)

    def load(self):
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


@pytest.fixture
def fake_entry_points(monkeypatch):
    """Replace the installed entry points by fakes, on a fresh plugin host."""

    def install(*eps):
        monkeypatch.setattr(_plugins.importlib.metadata, "entry_points", lambda group: list(eps))
        diffsde.reload_plugins()

    yield install
    monkeypatch.undo()
    diffsde.reload_plugins()


def test_plugin_that_fails_to_import_is_reported_and_others_load(fake_entry_points):
    good = _plugin(register_sdes=_register(DoubleDriftConfig))
    fake_entry_points(
        _FakeEntryPoint("broken", ImportError("No module named 'missing_dep'"), "broken-dist"),
        _FakeEntryPoint("good", good, "good-dist"),
    )
    registry = diffsde.get_registry()
    assert "double_vp" in registry.names("sde")
    assert registry.get("sde", "double_vp").distribution == "good-dist"
    (error,) = registry.errors
    assert str(error) == (
        "plugin 'broken' (distribution 'broken-dist'): failed to import: "
        "ImportError: No module named 'missing_dep'"
    )


@pytest.mark.parametrize("allow, expected", [("", False), ("good", True), ("other,good", True)])
def test_allow_list_limits_which_entry_points_load(monkeypatch, fake_entry_points, allow, expected):
    monkeypatch.setenv("DIFFSDE_PLUGINS", allow)
    fake_entry_points(_FakeEntryPoint("good", _plugin(register_sdes=_register(DoubleDriftConfig))))
    assert ("double_vp" in diffsde.get_registry().names("sde")) is expected
    assert "vp" in diffsde.get_registry().names("sde")  # built-ins always load


def test_plugins_command_lists_components_and_errors(throwaway, capsys):
    throwaway("throwaway", register_sdes=_register(DoubleDriftConfig, dict))
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "double_vp" in out and "throwaway-dist" in out and "A throwaway SDE" in out
    assert "plugin errors:" in out and "nor of diffsde.SDEConfig" in out
    assert main(["plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    kinds = {row["kind"] for row in listing["components"]}
    assert {"sde", "dataset"} <= kinds and listing["errors"]
    # parts too, from their classes (mutation: listing registry.components only fails it)
    parts = {(row["kind"], row["name"]) for row in listing["parts"]}
    assert {("weighting", "g2"), ("ode_solver", "heun"), ("step_controller", "pid")} <= parts
    assert "step_controller pid" in out


def test_validation_says_which_objectives_fit_the_sde(throwaway, tmp_path):
    throwaway("objs", register_objectives=_register(KernelObjective, SampleObjective))
    general = (
        'sde: {type: general, drift: "-x", diffusion: "1.0"}\nprior: {type: gaussian}\n'
        "data: {type: toy, name: moons}\n"
    )
    with pytest.raises(diffsde.SpecError) as err:
        diffsde.validate_text(general + "objective: {type: kernel_obj}\n", "s.yaml")
    (issue,) = err.value.issues
    assert str(issue).startswith("s.yaml:4:19 objective.type: objective 'kernel_obj' needs an SDE")
    expected = "sde type 'general' has none; objectives that can train it: ism, sample_obj, ssm"
    assert expected in str(issue)
    assert diffsde.validate_text(general + "objective: {type: sample_obj}\n").spec.objective
    path = tmp_path / "general.yaml"
    path.write_text(general)
    assert main(["validate", str(path)]) == 0


def test_every_hook_is_collected_by_the_registry():
    """Every hookspec is either a component kind, the parts hook, or one of the two the registry
    handles itself (commands, pages); tests/test_plugin_docs.py runs each hook's documented
    example. Mutation: adding a hookspec the registry never calls fails this."""
    hooks = [
        n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("register_")
    ]
    others = (_plugins.PART_HOOK, "register_commands", "register_pages")
    assert sorted(hooks) == sorted([*_plugins.HOOKS.values(), *others])


class ThrowawaySampler(diffsde.EulerMaruyama):
    """A throwaway sampler, one class: its spec section is its constructor."""

    tag: ClassVar[str] = "tiny_sampler"
    steps: int = eqx.field(static=True, default=10)


class ThrowawayModel(diffsde.ModelConfig):
    """A throwaway model section."""

    type: Literal["tiny_model"] = "tiny_model"
    width: int = 8

    def build(self, *, sde, key, prior=None):
        return diffsde.MLPScore(
            sde,
            width=self.width,
            depth=1,
            n_frequencies=2,
            parameterisation=diffsde.ScoreOutput(),
            key=key,
        )


class ThrowawayMetric(diffsde.MetricConfig):
    """A throwaway metric."""

    type: Literal["tiny_metric"] = "tiny_metric"


class ThrowawayDataset(diffsde.DatasetConfig):
    """A throwaway dataset: one Gaussian in R^3."""

    type: Literal["one_gaussian"] = "one_gaussian"

    def build(self):
        return diffsde.GaussianMixture(1.0, [[0.0, 0.0, 0.0]], 1.0)


def test_every_kind_of_component_reaches_its_spec_section(throwaway):
    throwaway(
        "kinds",
        register_samplers=_register(ThrowawaySampler),
        register_models=_register(ThrowawayModel),
        register_metrics=_register(ThrowawayMetric),
        register_datasets=_register(ThrowawayDataset),
    )
    setup = diffsde.validate_text(
        "sde: {type: vp}\ndata: {type: one_gaussian}\nsampler: {type: tiny_sampler, steps: 3}\n"
        "model: {type: tiny_model}\neval: {metrics: [{type: tiny_metric}]}\n"
    )
    assert setup.dim == 3 and setup.spec.sampler.steps == 3
    assert setup.spec.model.width == 8 and setup.spec.eval.metrics[0].type == "tiny_metric"
    with pytest.raises(diffsde.SpecError, match="5:25 eval.metrics.0.type: unknown metric type"):
        diffsde.validate_text(
            "sde: {type: vp}\ndata: {type: one_gaussian}\nsampler: {type: tiny_sampler}\n"
            "model: {type: tiny_model}\neval: {metrics: [{type: nope}]}\n"
        )
