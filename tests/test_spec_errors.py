"""Bad specs: each gives `file:line:col dotted.key: message`, exit code 2, no traceback."""

import textwrap

import pytest

from diffsde._cli import main

GOOD_DATA = "data: {type: toy, name: moons}\n"

# (name, spec text, expected line:col, dotted key, fragment of the message)
BAD_SPECS = [
    (
        "unknown sde tag with suggestion",
        "sde:\n  type: vpp\n" + GOOD_DATA,
        "2:9",
        "sde.type",
        "unknown sde type 'vpp'; valid choices: affine, ",
    ),
    (
        "did-you-mean on tag",
        "sde:\n  type: subpv\n" + GOOD_DATA,
        "2:9",
        "sde.type",
        "did you mean 'subvp'?",
    ),
    (
        "missing type",
        "sde:\n  beta_min: 0.1\n" + GOOD_DATA,
        "1:1",
        "sde",
        "missing `type:`",
    ),
    (
        "typo in a key",
        "sde:\n  type: vp\n  beta_maxx: 10\n" + GOOD_DATA,
        "3:3",
        "sde.beta_maxx",
        "unknown key 'beta_maxx' (did you mean 'beta_max'?)",
    ),
    (
        "wrong type of value",
        "sde:\n  type: vp\n  beta_max: lots\n" + GOOD_DATA,
        "3:13",
        "sde.beta_max",
        "valid number",
    ),
    (
        "negative where positive is required",
        "sde:\n  type: ve\n  sigma_min: -1\n" + GOOD_DATA,
        "3:14",
        "sde.sigma_min",
        "greater than 0",
    ),
    (
        "inconsistent values",
        "sde:\n  type: vp\n  beta_min: 30\n  beta_max: 20\n" + GOOD_DATA,
        "3:13",
        "sde.beta_min",
        "30.0 exceeds beta_max 20.0: swap them",
    ),
    (
        "missing required section",
        "sde: {type: vp}\n",
        "1:1",
        "data",
        "missing required key 'data'",
    ),
    (
        "unknown top-level section",
        "sde: {type: vp}\n" + GOOD_DATA + "trainig: {steps: 10}\n",
        "3:1",
        "trainig",
        "did you mean 'training'?",
    ),
    (
        "malicious expression: import",
        "sde:\n  type: general\n  drift: \"__import__('os').system('rm -rf /')\"\n"
        '  diffusion: "1.0"\nprior: {type: gaussian}\n' + GOOD_DATA,
        (3, "__import__"),
        "sde.drift",
        "attribute access is not allowed",
    ),
    (
        "malicious expression: dunder name",
        'sde:\n  type: general\n  drift: "-x + __builtins__"\n  diffusion: "1.0"\n'
        "prior: {type: gaussian}\n" + GOOD_DATA,
        (3, "__builtins__"),
        "sde.drift",
        "names may not start with '_'",
    ),
    (
        "malicious expression: lambda",
        'sde:\n  type: general\n  drift: "(lambda y: y)(x)"\n  diffusion: "1.0"\n'
        "prior: {type: gaussian}\n" + GOOD_DATA,
        (3, "lambda"),
        "sde.drift",
        "lambdas are not allowed",
    ),
    (
        "expression: comprehension, plain scalar",
        "sde:\n  type: general\n  drift: sum([y for y in x])\n  diffusion: '1.0'\n"
        "prior: {type: gaussian}\n" + GOOD_DATA,
        (3, "[y for"),
        "sde.drift",
        "comprehensions are not allowed",
    ),
    (
        "expression: unknown function",
        'sde:\n  type: affine\n  f: "-0.5 * betaa(t)"\n  g: "1.0"\n' + GOOD_DATA,
        (3, "betaa"),
        "sde.f",
        "unknown function 'betaa'",
    ),
    (
        "expression: unknown name with suggestion",
        'sde:\n  type: affine\n  f: "-0.5 * bta"\n  g: "1.0"\n  params: {beta: 1.0}\n' + GOOD_DATA,
        (3, "bta"),
        "sde.f",
        "unknown name 'bta'; did you mean 'beta'?",
    ),
    (
        "expression: x where only t is allowed",
        'sde:\n  type: affine\n  f: "-0.5"\n  g: "sqrt(t) * x"\n' + GOOD_DATA,
        (4, "x"),
        "sde.g",
        "unknown name 'x'",
    ),
    (
        "expression: syntax error",
        'sde:\n  type: affine\n  f: "-0.5 *"\n  g: "1.0"\n' + GOOD_DATA,
        (3, "-0.5"),
        "sde.f",
        "syntax error",
    ),
    (
        "expression: wrong shape",
        'sde:\n  type: general\n  drift: "dot(x, [1.0, 2.0, 3.0])"\n  diffusion: "1.0"\n'
        "prior: {type: gaussian}\n" + GOOD_DATA,
        (3, '"dot'),
        "sde.drift",
        "cannot be evaluated with x of shape (2,)",
    ),
    (
        "expression: vector where a scalar is needed",
        'sde:\n  type: general\n  drift: "-x"\n  diffusion: "x[0] * 0 + t * x"\n'
        "prior: {type: gaussian}\n" + GOOD_DATA,
        (4, "x[0]"),
        "sde.diffusion",
        "unknown name 'x'",
    ),
    (
        "expression: boolean output",
        'sde:\n  type: langevin\n  potential: "sum(x) > 0"\n' + GOOD_DATA,
        (3, '"sum'),
        "sde.potential",
        "expected floats",
    ),
    (
        "general SDE without a prior",
        'sde:\n  type: general\n  drift: "-x"\n  diffusion: "1.0"\n' + GOOD_DATA,
        "2:9",
        "sde.type",
        "no default prior",
    ),
    (
        "prior of the wrong dimension",
        "sde: {type: vp}\nprior: {type: gaussian, std: [1.0, 1.0, 1.0]}\n" + GOOD_DATA,
        (2, "[1.0"),
        "prior.std",
        "has 3 entries, the data has dimension 2",
    ),
    (
        "YAML syntax error",
        "sde:\n  type: vp\n   beta_min: 0.1\n" + GOOD_DATA,
        "3:12",
        "",
        "YAML syntax error",
    ),
    (
        "duplicate key",
        "sde:\n  type: vp\n  type: ve\n" + GOOD_DATA,
        "3:3",
        "",
        "duplicate key 'type' (first written at line 2)",
    ),
    (
        "section of the wrong kind",
        "sde: vp\n" + GOOD_DATA,
        "1:6",
        "sde",
        "",
    ),
    (
        # every kind of section now has built-ins, so this is an unknown tag, not an empty kind
        "unknown objective type",
        "sde: {type: vp}\n" + GOOD_DATA + "objective: {type: nope}\n",
        "3:19",
        "objective.type",
        "unknown objective type 'nope'; valid choices: dsm",
    ),
    (
        "unknown dataset option",
        "sde: {type: vp}\ndata: {type: toy, name: moon}\n",
        (2, "moon"),
        "data.name",
        "'moons'",
    ),
    (
        "not a mapping",
        "- sde\n- data\n",
        "1:1",
        "",
        "a spec must be a mapping",
    ),
]


@pytest.mark.parametrize(
    "text, position, key, fragment", [b[1:] for b in BAD_SPECS], ids=[b[0] for b in BAD_SPECS]
)
def test_bad_spec_is_reported_at_its_line(tmp_path, capsys, text, position, key, fragment):
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    if isinstance(position, tuple):  # (line, token): the column where the token starts
        line, token = position
        position = f"{line}:{text.splitlines()[line - 1].index(token) + 1}"
    code = main(["validate", str(path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    prefix = f"{path}:{position} {key}: " if key else f"{path}:{position} "
    matching = [line for line in lines if line.startswith(prefix) and fragment in line]
    assert matching, f"expected a line starting {prefix!r} containing {fragment!r}, got:\n{err}"
    assert lines[-1].startswith(f"{path}: ")


def test_every_problem_is_reported(tmp_path, capsys):
    path = tmp_path / "spec.yaml"
    path.write_text("sde:\n  type: vp\n  beta_maxx: 1\ndata:\n  type: gmm\n  dimm: 3\nseed: x\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "3:3 sde.beta_maxx" in err and "6:3 data.dimm" in err and "7:7 seed" in err
    assert "3 problems" in err


def test_every_bad_expression_of_a_section_is_reported(tmp_path, capsys):
    path = tmp_path / "spec.yaml"
    path.write_text('sde:\n  type: affine\n  f: "-bta"\n  g: "sqrt(x)"\n' + GOOD_DATA)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "3:8 sde.f: unknown name 'bta'" in err
    assert "4:12 sde.g: unknown name 'x'" in err


def test_override_errors_name_the_override(tmp_path, capsys):
    path = tmp_path / "spec.yaml"
    path.write_text("sde: {type: vp}\n" + GOOD_DATA)
    assert main(["validate", str(path), "--set", "sde.beta_max=abc"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("--set sde.beta_max=abc:1:14 sde.beta_max:")


def test_missing_file(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_aliases_within_budget_and_yaml_1_2_floats_are_accepted(tmp_path):
    """A reused anchor (within the alias budget) validates, and `1e-3` is the number 0.001 (YAML
    1.1 would read it as a string, which strict numbers refuse).

    Mutation: dropping the YAML 1.2 float resolver of BoundedLoader makes this fail."""
    from diffsde._spec._validate import validate_text

    text = (
        "sde: {type: affine, f: '-0.5 * b', g: 'sqrt(b)', params: &p {b: 2.0}}\n"
        "prior: {type: gibbs, potential: '0.5 * sum(x**2) / b', params: *p}\n"
        + GOOD_DATA
        + "training: {learning_rate: 1e-3, weight_decay: 2E-5}\n"
    )
    setup = validate_text(text)
    assert setup.spec.training.learning_rate == 0.001
    assert setup.spec.training.weight_decay == 2e-5
    assert setup.spec.prior.params == {"b": 2.0}


def test_memory_estimate_counts_the_mlp_exactly():
    """The parameter count and activations per point read from the model's shapes are those of
    an MLP on [x, sin, cos] (dim 2 + 2·4 frequencies = 10 inputs, one hidden layer of 16):
    10·16 + 16 + 16·2 + 2 = 210 parameters, 16 + 2 = 18 activations; and the memory of the tiny
    spec's phases is far below any machine.

    Mutation: counting only 2-D leaves as parameters (dropping biases) gives 192 and fails."""
    import equinox as eqx
    import jax.random as jr

    from diffsde._config import device_memory
    from diffsde._spec._memory import model_sizes, phases
    from diffsde._spec._validate import validate_text
    from tests.tiny import tiny_spec

    setup = validate_text(tiny_spec())
    shape = eqx.filter_eval_shape(
        setup.spec.model.build, sde=setup.sde, key=jr.key(0), prior=setup.prior
    )
    assert model_sizes(shape.mlp) == (210, 18)
    assert 210 <= model_sizes(shape)[0] <= 220  # with the few scalars of the SDE and prior
    needs = {p.name: p.bytes for p in phases(setup.spec, setup.sde, setup.data, shape)}
    assert set(needs) == {"training", "sampling", "metric 'sliced_w2'"}
    assert max(needs.values()) < 50 << 20
    assert device_memory()[0] > 1 << 28
