"""The contractive-diffusion plugin ``diffsde-cdpm`` (plugins/cdpm): discovery, public-API-only
imports, closed forms against docs/math.md §2, and kernel/drift consistency of every Gaussian
SDE."""

import ast
import importlib.metadata
import math
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffsde
import diffsde_cdpm
from diffsde._cli import main as cli_main

CDPM_SDES = ("cou", "cvp", "csubvp")
ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIR = Path(diffsde_cdpm.__file__).resolve().parent
TIMES = (0.0, 0.01, 0.1, 0.37, 0.8, 1.0)  # fractions of T


# --- discovery -------------------------------------------------------------------------------


@pytest.fixture
def plugin_env(monkeypatch):
    """Change DIFFSDE_PLUGINS in a test; restore it and reload the plugins afterwards."""
    yield monkeypatch
    monkeypatch.undo()
    diffsde.reload_plugins()


def test_entry_point_is_installed():
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="diffsde")}
    assert "cdpm" in eps, "install the plugin: pip install -e plugins/cdpm"
    assert eps["cdpm"].value == "diffsde_cdpm"
    assert eps["cdpm"].dist.name == "diffsde-cdpm"


def test_registry_finds_the_plugin(plugin_env):
    plugin_env.delenv("DIFFSDE_PLUGINS", raising=False)
    diffsde.reload_plugins()
    registry = diffsde.get_registry()
    assert not [e for e in registry.errors if e.plugin == "cdpm"]
    for name in CDPM_SDES:
        component = registry.get("sde", name)
        assert component.distribution == "diffsde-cdpm"
        assert component.plugin == "cdpm"
        assert component.doc, f"{name}: the class needs a docstring (`diffsde plugins` shows it)"
        # one class: the SDE itself, its spec model generated from its constructor
        assert issubclass(component.cls, diffsde.AbstractGaussianSDE)
        assert component.config().build(dim=2) == component.cls(2)


def test_empty_allow_list_hides_the_plugin(plugin_env):
    plugin_env.setenv("DIFFSDE_PLUGINS", "")
    diffsde.reload_plugins()
    names = diffsde.get_registry().names("sde")
    assert not set(CDPM_SDES) & set(names)
    assert "vp" in names  # built-ins are not entry points: always there


def test_allow_list_naming_the_plugin_shows_it(plugin_env):
    plugin_env.setenv("DIFFSDE_PLUGINS", "cdpm")
    diffsde.reload_plugins()
    assert set(CDPM_SDES) <= set(diffsde.get_registry().names("sde"))


# --- only the public API ---------------------------------------------------------------------


def _private_uses(source: str) -> list[str]:
    """Every import of, or attribute access into, a private part of diffsde in ``source``."""

    def private(dotted: str) -> bool:
        parts = dotted.split(".")
        return parts[0] == "diffsde" and any(
            p.startswith("_") and not (p.startswith("__") and p.endswith("__")) for p in parts[1:]
        )

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if private(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [
                f"{node.module}.{a.name}"
                for a in node.names
                if private(f"{node.module}.{a.name}") or private(node.module)
            ]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and private(f"{node.value.id}.{node.attr}")
        ):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_private_use_checker_catches_violations():
    bad = (
        "import diffsde._sde\nfrom diffsde._config import SDEConfig\n"
        "from diffsde import _plugins\nimport diffsde\nx = diffsde._prior\n"
    )
    assert _private_uses(bad) == [
        "diffsde._sde",
        "diffsde._config.SDEConfig",
        "diffsde._plugins",
        "diffsde._prior",
    ]
    assert _private_uses("import diffsde\nfrom diffsde import hookimpl\ndiffsde.__version__") == []


def test_plugin_imports_only_public_diffsde():
    files = sorted(PLUGIN_DIR.glob("*.py"))
    assert PLUGIN_DIR / "__init__.py" in files
    for path in files:
        assert _private_uses(path.read_text()) == [], f"{path} uses private diffsde API"


# --- closed forms (docs/math.md §2 table, independently in float64) -------------------------------


def _reference(name: str, p: dict, t: float) -> dict:
    """λ_t, σ_t², the prior, b's slope f(t), offset μ and g(t) from the docs/math.md table."""
    if name == "cou":
        theta, sigma, mu, T = p["theta"], p["sigma"], p["mu"], p["T"]
        var = lambda s: sigma**2 / (2 * theta) * (math.exp(2 * theta * s) - 1)  # noqa: E731
        return dict(
            lam=math.exp(theta * t), var=var(t), prior_mean=mu, prior_var=var(T),
            f=theta, mu=mu, g=sigma,
        )  # fmt: skip
    bmin, bmax, T = p["beta_min"], p["beta_max"], p["T"]
    beta = bmin + t / T * (bmax - bmin)
    B = lambda s: bmin * s + (bmax - bmin) * s**2 / (2 * T)  # noqa: E731
    if name == "cvp":
        var = lambda s: math.exp(B(s)) - 1  # noqa: E731
        g = math.sqrt(beta)
    else:  # csubvp
        var = lambda s: (math.exp(B(s)) - 1) ** 2  # noqa: E731
        g = math.sqrt(beta * (math.exp(2 * B(t)) - 1))
    return dict(
        lam=math.exp(B(t) / 2), var=var(t), prior_mean=0.0, prior_var=var(T),
        f=beta / 2, mu=0.0, g=g,
    )  # fmt: skip


CLOSED_FORM_CASES = [
    ("cou", dict(theta=1.0, sigma=1.0, mu=0.0, T=1.0)),
    ("cou", dict(theta=0.7, sigma=1.3, mu=-0.4, T=1.5)),
    ("cvp", dict(beta_min=1.0, beta_max=8.0, T=1.0)),
    ("cvp", dict(beta_min=0.5, beta_max=3.0, T=2.0)),
    ("csubvp", dict(beta_min=1.0, beta_max=8.0, T=1.0)),
    ("csubvp", dict(beta_min=0.5, beta_max=3.0, T=2.0)),
]


def test_defaults_are_the_cdpm_ones():
    registry = diffsde.get_registry()
    for name, params in CLOSED_FORM_CASES[::2]:  # the first case of each is the default
        config = registry.get("sde", name).config()
        assert config.model_dump(exclude={"type"}) == params


@pytest.mark.parametrize(
    ("name", "params"),
    CLOSED_FORM_CASES,
    ids=[f"{n}-{i}" for i, (n, _) in enumerate(CLOSED_FORM_CASES)],
)
def test_closed_forms_match_math_md(name, params):
    dim = 3
    config = diffsde.get_registry().get("sde", name).config(**params)
    sde = config.build(dim=dim)
    assert isinstance(sde, diffsde.AbstractGaussianSDE) and sde.has_gaussian_kernel
    x = jnp.asarray([0.3, -1.2, 2.0])
    for frac in TIMES:
        t = frac * params["T"]
        ref = _reference(name, params, t)
        lam, std = sde.kernel(t)
        np.testing.assert_allclose(lam, ref["lam"], rtol=1e-5)
        np.testing.assert_allclose(std, math.sqrt(ref["var"]), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(sde.marginal_std(t), math.sqrt(ref["var"]), rtol=1e-5, atol=1e-7)
        mean = ref["mu"] + ref["lam"] * (np.asarray(x, np.float64) - ref["mu"])
        np.testing.assert_allclose(sde.marginal_mean(t, x), mean, rtol=1e-5)
        drift = ref["f"] * (np.asarray(x, np.float64) - ref["mu"])
        np.testing.assert_allclose(sde.drift(t, x), drift, rtol=1e-5)
        np.testing.assert_allclose(sde.diffusion(t), ref["g"], rtol=1e-5, atol=1e-7)
    prior = sde.prior()
    assert isinstance(prior, diffsde.GaussianPrior) and prior.dim == dim
    ref = _reference(name, params, params["T"])
    np.testing.assert_allclose(prior.mean, np.full(dim, ref["prior_mean"]), rtol=1e-5)
    np.testing.assert_allclose(prior.std, np.full(dim, math.sqrt(ref["prior_var"])), rtol=1e-5)


def test_cou_conditional_score_is_centred_on_the_shifted_mean():
    sde = diffsde_cdpm.COU(2, theta=0.7, sigma=1.3, mu=-0.4)
    x0 = jnp.asarray([1.0, 2.0])
    t = 0.6
    mean = sde.marginal_mean(t, x0)
    np.testing.assert_allclose(sde.conditional_score(t, mean, x0), 0.0, atol=1e-6)
    xt, z = sde.sample_marginal(t, x0, key=jax.random.key(0))
    np.testing.assert_allclose(
        sde.conditional_score(t, xt, x0), -z / sde.marginal_std(t), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: diffsde_cdpm.COU(2, theta=-1.0), "theta=-1.0"),
        (lambda: diffsde_cdpm.COU(2, sigma=0.0), "sigma=0.0"),
        (lambda: diffsde_cdpm.COU(2, T=0.0), "T=0.0"),
        (lambda: diffsde_cdpm.COU(2, theta=50.0), "lower theta or T"),
        (lambda: diffsde_cdpm.CVP(2, T=-1.0), "T=-1.0"),
        (lambda: diffsde_cdpm.CVP(2, beta_max=200.0), "lower beta_max or T"),
        (lambda: diffsde_cdpm.CSubVP(2, beta_max=100.0), "lower beta_max or T"),
    ],
)
def test_invalid_parameters_are_explained(build, match):
    with pytest.raises(ValueError, match=match):
        build()


# --- kernel/drift consistency, for every registered Gaussian SDE -----------------------------

# Configs whose fields have no defaults: the VP expressions for affine, a linear drift for general.
REQUIRED_ARGS = {
    "affine": {"f": "-0.5 * (0.1 + 19.9 * t)", "g": "sqrt(0.1 + 19.9 * t)"},
    "general": {"drift": "-x", "diffusion": "1.0"},
}
# Non-default parameters, to exercise offsets (COU's μ) and horizons other than 1.
EXTRA_CASES = {
    "cou": dict(theta=0.7, sigma=1.3, mu=-0.4, T=1.5),
    "cvp": dict(beta_min=0.5, beta_max=3.0, T=2.0),
    "csubvp": dict(beta_min=0.5, beta_max=3.0, T=2.0),
}


def _sde_cases():
    names = diffsde.get_registry().names("sde")
    defaults = [pytest.param(n, REQUIRED_ARGS.get(n, {}), id=n) for n in names]
    extra = [pytest.param(n, kw, id=f"{n}-custom") for n, kw in EXTRA_CASES.items() if n in names]
    return defaults + extra


@pytest.mark.parametrize(("name", "kwargs"), _sde_cases())
def test_kernel_agrees_with_drift_and_diffusion(name, kwargs):
    """docs/math.md §2: f = d log λ_t/dt, g² = dσ_t²/dt − 2fσ_t², and the kernel mean m_t solves
    dm/dt = b(t, m), checked with jax derivatives of the kernel at several t."""
    config_cls = diffsde.get_registry().get("sde", name).config
    required = {n for n, f in config_cls.model_fields.items() if f.is_required()}
    assert required <= set(kwargs), (
        f"sde '{name}' needs {sorted(required)}: add them to REQUIRED_ARGS in this test"
    )
    dim = 2
    sde = config_cls(**kwargs).build(dim=dim)
    if not sde.has_gaussian_kernel:
        pytest.skip(f"sde '{name}' has no Gaussian kernel")
    x0 = jnp.asarray([0.7, -1.1])

    @eqx.filter_jit
    @eqx.filter_vmap(in_axes=(None, 0))
    def derivatives(sde, t):
        zeros, ones = jnp.zeros(dim), jnp.ones(dim)
        var = lambda s: sde.kernel(s)[1] ** 2  # noqa: E731
        mean = lambda s: sde.marginal_mean(s, x0)  # noqa: E731
        return dict(
            # an affine drift b(t, x) = f(t) x + c(t): its slope f, measured twice
            f=sde.drift(t, ones) - sde.drift(t, zeros),
            f2=(sde.drift(t, 2 * ones) - sde.drift(t, zeros)) / 2,
            dlog_lam=jax.grad(lambda s: jnp.log(sde.kernel(s)[0]))(t),
            var=var(t),
            dvar=jax.grad(var)(t),
            g2=sde.diffusion(t) ** 2,
            dmean=jax.jacfwd(mean)(t),
            drift_at_mean=sde.drift(t, mean(t)),
        )

    d = derivatives(sde, jnp.asarray([0.1, 0.3, 0.6, 0.9]) * sde.T)
    np.testing.assert_allclose(d["f2"], d["f"], rtol=1e-5, atol=1e-6)  # the drift is affine
    np.testing.assert_allclose(d["f"], jnp.tile(d["dlog_lam"][:, None], dim), rtol=1e-4, atol=1e-6)
    f = d["f"][:, 0]
    np.testing.assert_allclose(d["dvar"] - 2 * f * d["var"], d["g2"], rtol=1e-4)
    np.testing.assert_allclose(d["dmean"], d["drift_at_mean"], rtol=1e-4, atol=1e-6)


# --- the shipped specs -----------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["cvp_swiss_roll.yaml", "cou_swiss_roll.yaml"])
def test_specs_validate(spec, capsys):
    assert cli_main(["validate", str(ROOT / "specs" / spec)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok:") and "Gaussian kernel" in out
