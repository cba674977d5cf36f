"""Checks at registration and validation (issue 11, item 2), through the real command line.

Every problem a plugin has is ONE line naming the plugin, its distribution and the fix, never a
traceback: hook names that are no hook, hook arguments pluggy refuses, abstract members and
required attributes left undefined, a legacy spec model without `needs_gaussian_kernel`, bad
metric directions, shapes traced with `jax.eval_shape` at validation, and a plugin that fails to
import (a note next to "unknown type", a warning when validation otherwise succeeds).

Plugins here are real distributions: a directory on sys.path holding the module and
`NAME-0.1.dist-info/{METADATA,entry_points.txt}`, which importlib.metadata reads as installed.
"""

import importlib
import sys
import textwrap

import pytest

import diffsde
from diffsde.cli import main

HEADER = """\
from typing import ClassVar, Literal

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr

import diffsde
"""

VP_LIKE = """\
class {name}(diffsde.AbstractGaussianSDE):
    tag: ClassVar[str] = "{tag}"
    dim: int = eqx.field(static=True)
    T: float = eqx.field(static=True, default=1.0)

    def drift(self, t, x):
        return {drift}

    def diffusion(self, t):
        return {diffusion}

    def kernel(self, t):
        return {kernel}

    def prior(self):
        return {prior}
"""


def _sde(name, tag, **overrides):
    """The source of a VP-like SDE (β = 1) with some members replaced."""
    members = {
        "drift": "-0.5 * x",
        "diffusion": "jnp.asarray(1.0)",
        "kernel": "jnp.exp(-0.5 * t), jnp.sqrt(1 - jnp.exp(-t))",
        "prior": "diffsde.GaussianPrior(self.dim)",
        **overrides,
    }
    return VP_LIKE.format(name=name, tag=tag, **members)


@pytest.fixture
def install(tmp_path, monkeypatch):
    """``install(entry_point, distribution, source)``: make a distribution with one entry point
    in group `diffsde` whose module has ``source``; only installed ones load (DIFFSDE_PLUGINS)."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    names, modules = [], []

    def add(entry_point, distribution, source):
        module = f"checks_{entry_point}_{len(modules)}"
        (site / f"{module}.py").write_text(HEADER + "\n" + textwrap.dedent(source))
        info = site / f"{distribution}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.1\n"
        )
        (info / "entry_points.txt").write_text(f"[diffsde]\n{entry_point} = {module}\n")
        names.append(entry_point)
        modules.append(module)
        monkeypatch.setenv("DIFFSDE_PLUGINS", ",".join(names))
        importlib.invalidate_caches()
        diffsde.reload_plugins()

    yield add
    for module in modules:
        sys.modules.pop(module, None)
    monkeypatch.undo()
    diffsde.reload_plugins()


def _spec(tmp_path, text, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _validate(capsys, path):
    """(exit status, stdout lines, stderr lines) of `diffsde validate PATH`."""
    status = main(["validate", path])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return status, out.splitlines(), err.splitlines()


def _plugin_errors(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "Traceback" not in out
    return [line.strip() for line in out.split("plugin errors:")[-1].splitlines() if line.strip()]


def _one_issue(capsys, path, where):
    """The single issue line of a spec that fails validation, at ``where`` (file:line:col key)."""
    status, _, err = _validate(capsys, path)
    assert status == 2, err
    assert len(err) == 2 and err[1].endswith(": 1 problem"), err  # one issue, then the count
    assert err[0].startswith(f"{path}:{where}: "), err[0]
    return err[0]


GMM = "data: {type: gmm, dim: 2}\n"


# hook names and arguments -------------------------------------------------------------------


def test_a_misspelt_hook_is_reported_with_the_hook_it_resembles(install, tmp_path, capsys):
    """Mutation: leaving `_unknown_hooks` out of the registry's errors (pluggy ignores the
    hook silently, as before) makes this fail."""
    install(
        "misspelt",
        "misspelt-dist",
        _sde("Mine", "mine")
        + """
@diffsde.hookimpl
def register_sde(register):
    register(Mine)
""",
    )
    expected = (
        "plugin 'misspelt' (distribution 'misspelt-dist'): register_sde is not a diffsde hook: "
        "did you mean register_sdes?"
    )
    assert expected in _plugin_errors(capsys)
    line = _one_issue(capsys, _spec(tmp_path, "sde: {type: mine}\n" + GMM), "1:13 sde.type")
    assert "unknown sde type 'mine'; valid choices: " in line, line
    assert line.endswith(f"; note: {expected}"), line


def test_hook_arguments_pluggy_refuses_are_one_line_and_the_rest_works(install, tmp_path, capsys):
    """pluggy raises PluginValidationError while registering `register_sdes(reg)`. Mutation:
    not catching it in `_PluginHost.add` makes every command crash with that traceback."""
    install(
        "wrongargs",
        "wrongargs-dist",
        """
@diffsde.hookimpl
def register_sdes(reg):
    pass
""",
    )
    assert (
        "plugin 'wrongargs' (distribution 'wrongargs-dist'): register_sdes(reg) declares reg, "
        "which the hook does not pass: name its arguments from (register), e.g. "
        "def register_sdes(register)"
    ) in _plugin_errors(capsys)
    status, out, _ = _validate(capsys, _spec(tmp_path, "sde: {type: vp}\n" + GMM))
    assert status == 0 and out[0].startswith("ok: "), out


# registration checks ------------------------------------------------------------------------


def _registered(name, cls_source, hook, cls_name):
    return cls_source + f"\n\n@diffsde.hookimpl\ndef {hook}(register):\n    register({cls_name})\n"


def test_an_sde_missing_kernel_is_named_with_its_plugin_at_the_unknown_type(
    install, tmp_path, capsys
):
    """Mutation: dropping the `inspect.isabstract` check lets the class register, and the
    spec then fails in the middle of validation with equinox's TypeError instead."""
    source = _sde("NoKernel", "nokernel").replace(
        "    def kernel(self, t):\n        return jnp.exp(-0.5 * t), jnp.sqrt(1 - jnp.exp(-t))\n",
        "",
    )
    install("nokernel", "nokernel-dist", _registered("x", source, "register_sdes", "NoKernel"))
    expected = (
        "plugin 'nokernel' (distribution 'nokernel-dist'): registered NoKernel, which is "
        "abstract: implement kernel (abstract in diffsde.AbstractGaussianSDE)"
    )
    assert expected in _plugin_errors(capsys)
    line = _one_issue(capsys, _spec(tmp_path, "sde: {type: nokernel}\n" + GMM), "1:13 sde.type")
    assert "unknown sde type 'nokernel'; " in line and line.endswith(f"; note: {expected}")


@pytest.mark.parametrize(
    "kind, source, message",
    [
        (
            "sde",
            _sde("NoHorizon", "nohorizon").replace(
                "    T: float = eqx.field(static=True, default=1.0)\n", ""
            ),
            "registered NoHorizon, which does not define T (required by diffsde.AbstractSDE): "
            "add a field or class attribute for each, e.g. "
            "`T: float = eqx.field(static=True, default=…)`",
        ),
        (
            "sampler",
            """
class NoEps(diffsde.AbstractSampler):
    tag: ClassVar[str] = "noeps"

    def sample_from(self, sde, score, x_T, *, key, save_ts=None, condition=None):
        raise NotImplementedError
""",
            "registered NoEps, which does not define eps (required by diffsde.AbstractSampler): "
            "add a field or class attribute for each, e.g. "
            "`eps: float = eqx.field(static=True, default=…)`",
        ),
        (
            "metric",
            """
class Backwards(diffsde.AbstractMetric):
    tag: ClassVar[str] = "backwards"
    directions: ClassVar[dict] = {"gap": "lower"}

    def __call__(self, ctx):
        return {"gap": 0.0}
""",
            "registered Backwards, whose `directions` gives 'gap': 'lower': each name it reports "
            'maps to "min" (lower is better), "max" or "zero" (nearest 0)',
        ),
        (
            "objective",
            """
class Legacy(diffsde.ObjectiveConfig):
    type: Literal["legacy"] = "legacy"

    def build(self, *, sde, data):
        return diffsde.DenoisingScoreMatching(sde)
""",
            "registered Legacy without the class attribute `needs_gaussian_kernel` that "
            "diffsde.ObjectiveConfig requires: add `needs_gaussian_kernel: ClassVar[bool] = "
            "True` if it uses the SDE's Gaussian transition kernel (as dsm does), False if it "
            "needs only samples of p_t (as ssm does)",
        ),
    ],
    ids=["sde-without-T", "sampler-without-eps", "metric-directions", "legacy-objective"],
)
def test_required_attributes_are_checked_at_registration(install, capsys, kind, source, message):
    """Mutations: dropping `_abstract_variables` (sde, sampler), `_bad_directions` (metric) or
    `_missing_class_attributes` (objective) from `_check_component` makes the case fail."""
    hook = diffsde._plugins.HOOKS[kind]
    cls_name = source.split("class ", 1)[1].split("(", 1)[0]
    install("attrs", "attrs-dist", _registered("x", source, hook, cls_name))
    assert f"plugin 'attrs' (distribution 'attrs-dist'): {message}" in _plugin_errors(capsys)
    assert cls_name.lower() not in diffsde.get_registry().names(kind)


def test_a_legacy_objective_is_named_at_the_spec_that_uses_it(install, tmp_path, capsys):
    """The refused spec model is the note of the 'unknown objective type' line, not a
    misleading error about its weighting. Mutation: `notes_for` ignoring tags makes this fail."""
    install(
        "legacy",
        "legacy-dist",
        """
class Legacy(diffsde.ObjectiveConfig):
    type: Literal["legacy"] = "legacy"

    def build(self, *, sde, data):
        return diffsde.DenoisingScoreMatching(sde)


@diffsde.hookimpl
def register_objectives(register):
    register(Legacy)
""",
    )
    spec = "sde: {type: vp}\n" + GMM + "objective: {type: legacy}\n"
    line = _one_issue(capsys, _spec(tmp_path, spec), "3:19 objective.type")
    assert "unknown objective type 'legacy'" in line
    note = (
        "; note: plugin 'legacy' (distribution 'legacy-dist'): registered Legacy without the "
        "class attribute `needs_gaussian_kernel`"
    )
    assert note in line, line


# shapes, traced at validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"diffusion": "jnp.ones(3)"},
            "diffusion(t) gives shape (3,), expected shape (), the scalar g(t) shared by every "
            "coordinate: return a scalar",
        ),
        (
            {"kernel": "jnp.exp(-0.5 * t), jnp.sqrt(1 - jnp.exp(-t)) * jnp.ones(3)"},
            "kernel(t) gives a tuple of shapes (), (3,), expected (λ_t, σ_t), two scalars (the "
            "mean's scale and the standard deviation, not a variance): return a tuple of two "
            "scalars",
        ),
        (
            {"drift": "-0.5 * x[:1]"},
            "drift(t, x) gives shape (1,), expected shape (2,), one value per coordinate of x: "
            "return an array like x",
        ),
        (
            {"drift": "x @ jnp.ones((3, 3))"},
            "drift(t, x) cannot be evaluated on t of shape () and x of shape (2,): TypeError: ",
        ),
    ],
    ids=["diffusion", "kernel", "drift", "drift-raises"],
)
def test_sde_shapes_are_checked_at_validation(install, tmp_path, capsys, overrides, message):
    """A σ/g of shape (3,) for data in R² used to pass `validate` and fail in the run.
    Mutations: leaving the kernel out of `_trace_sde` makes the kernel case fail; comparing
    the diffusion's shape with (dim,) makes the diffusion case fail."""
    install(
        "shapes",
        "shapes-dist",
        _registered("x", _sde("Odd", "odd", **overrides), "register_sdes", "Odd"),
    )
    line = _one_issue(capsys, _spec(tmp_path, "sde: {type: odd}\n" + GMM), "1:13 sde.type")
    assert line.split("sde.type: ", 1)[1].startswith(
        f"Odd (plugin 'shapes', distribution 'shapes-dist'): {message}"
    ), line


def test_prior_sample_shape_is_checked_at_validation(install, tmp_path, capsys):
    """Mutation: not calling `_trace_prior` lets this spec validate."""
    source = (
        _sde("FlatPrior", "flatprior", prior="Flat(self.dim)")
        + """

class Flat(diffsde.AbstractPrior):
    dim: int = eqx.field(static=True)

    def sample(self, *, key, n):
        return jr.normal(key, (n,))

    def log_prob(self, x):
        return -0.5 * jnp.sum(x**2)

    def score(self, x):
        return -x
"""
    )
    install("prior", "prior-dist", _registered("x", source, "register_sdes", "FlatPrior"))
    line = _one_issue(capsys, _spec(tmp_path, "sde: {type: flatprior}\n" + GMM), "1:13 sde.type")
    assert line.endswith(
        "sde.type: the prior() of FlatPrior (plugin 'prior', distribution 'prior-dist'): "
        "sample(key=…, n=4) gives shape (4,), expected shape (4, 2), n rows in the data's "
        "dimension 2"
    ), line


def test_model_output_shape_is_checked_at_validation(install, tmp_path, capsys):
    """Mutation: not calling `_trace_model` lets this spec validate (and the run fails)."""
    install(
        "model",
        "model-dist",
        """
class Wide(eqx.Module):
    tag: ClassVar[str] = "wide"
    w: jnp.ndarray

    def __init__(self, *, key, sde=None, prior=None):
        self.w = jr.normal(key, (3,))

    def __call__(self, x, t):
        return self.w * t


@diffsde.hookimpl
def register_models(register):
    register(Wide)
""",
    )
    spec = "sde: {type: vp}\n" + GMM + "model: {type: wide}\nobjective: {type: dsm}\n"
    line = _one_issue(capsys, _spec(tmp_path, spec), "3:15 model.type")
    assert line.endswith(
        "model.type: Wide (plugin 'model', distribution 'model-dist'): model(x, t) gives shape "
        "(3,), expected shape (2,), the score at one point x: return one value per coordinate"
    ), line


def test_built_in_components_pass_the_shape_checks(capsys, tmp_path):
    """No false alarm: every built-in SDE with a Gaussian kernel, the MLP and the conditional
    MLP validate (the shape checks run on each). Mutation: closing `_trace_model` over the
    condition's ShapeDtypeStruct instead of passing it to eval_shape fails the conditional one."""
    for sde in ("vp", "ve", "subvp", "ou"):
        spec = f"sde: {{type: {sde}}}\n" + GMM + "model: {type: mlp, width: 8, depth: 1}\n"
        status, out, err = _validate(capsys, _spec(tmp_path, spec, f"{sde}.yaml"))
        assert status == 0, err
    spec = (
        "sde: {type: vp}\ndata: {type: gmm, dim: 2, components: 2, labels: true}\n"
        "model: {type: mlp, width: 8, depth: 1, classes: 2}\n"
    )
    status, out, err = _validate(capsys, _spec(tmp_path, spec, "conditional.yaml"))
    assert status == 0, err


# failed imports -----------------------------------------------------------------------------

BROKEN = "import a_module_that_is_not_installed  # noqa: F401\n"
IMPORT_ERROR = (
    "plugin 'broken' (distribution 'broken-dist'): failed to import: ModuleNotFoundError: "
    "No module named 'a_module_that_is_not_installed'"
)


def test_a_failed_import_is_the_note_of_an_unknown_type(install, tmp_path, capsys):
    """`validate` and `run` both: the "unknown sde type" line names the plugin that failed to
    import. Mutation: `_plugin_notes` returning "" makes this fail."""
    install("broken", "broken-dist", BROKEN)
    path = _spec(tmp_path, "sde: {type: foo}\n" + GMM)
    line = _one_issue(capsys, path, "1:13 sde.type")
    assert line.endswith(
        f"unknown sde type 'foo'; valid choices: affine, general, langevin, ou, "
        f"subvp, ve, vp; note: {IMPORT_ERROR}"
    ), line
    assert main(["run", path, "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"note: {IMPORT_ERROR}" in err.splitlines()[0]


def test_plugin_warnings_name_a_failed_import(install):
    """The lines `validate` and `run` print on stderr when they otherwise succeed. Mutation:
    `plugin_warnings` returning [] makes this fail."""
    install("broken", "broken-dist", BROKEN)
    assert diffsde._plugins.plugin_warnings() == [f"warning: {IMPORT_ERROR}"]


def test_validate_and_run_warn_of_a_failed_import_when_they_succeed(install, tmp_path, capsys):
    """A spec that needs nothing from the broken plugin validates, with the import failure on
    stderr as one warning line; `run` prints it too, before its own checks (here: the spec has
    no sampler, so nothing trains). Mutation: `plugin_warnings` returning [] (what the CLI
    prints) makes this fail."""
    install("broken", "broken-dist", BROKEN)
    path = _spec(tmp_path, "sde: {type: vp}\n" + GMM)
    status, out, err = _validate(capsys, path)
    assert status == 0 and out[0].startswith("ok: ")
    assert err == [f"warning: {IMPORT_ERROR}"]
    assert main(["run", path, "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"warning: {IMPORT_ERROR}" and "needs this section" in err[1], err


def test_one_module_registered_twice_is_one_line(capsys):
    """Two entry points naming one module (pluggy refuses the second with a ValueError).
    Mutation: not catching that ValueError in `_PluginHost.add` makes this raise."""
    import types

    module = types.ModuleType("twice")
    diffsde.register_plugin(module, "first", "twice-dist")
    try:
        diffsde.register_plugin(module, "second", "twice-dist")
        assert (
            "plugin 'second' (distribution 'twice-dist'): its module is already registered as "
            "plugin 'first': give each entry point its own module"
        ) in _plugin_errors(capsys)
    finally:
        diffsde.unregister_plugin("second")
        diffsde.unregister_plugin("first")
    assert not [e for e in diffsde.get_registry().errors if e.plugin in ("first", "second")]
