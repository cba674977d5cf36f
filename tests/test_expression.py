"""The safe expression evaluator: what it computes, what it refuses, and that it compiles once."""

import ast
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffsde import ExpressionError, compile_expression
from diffsde._expression import FUNCTIONS, check_syntax


def test_vp_drift_expression_matches_numpy():
    expr = compile_expression(
        "-0.5 * (beta_min + t * (beta_max - beta_min)) * x",
        ("t", "x"),
        {"beta_min": 0.1, "beta_max": 20.0},
    )
    x = jnp.array([1.0, -2.0, 3.0])
    np.testing.assert_allclose(
        expr(t=0.3, x=x), -0.5 * (0.1 + 0.3 * 19.9) * np.asarray(x), rtol=1e-6
    )


@pytest.mark.parametrize(
    "source, expected",
    [
        ("where(x > 0, x, -x)", [1.0, 2.0]),
        ("sum(x**2)", 5.0),
        ("dot(x, [1.0, 2.0])", -3.0),
        ("x[0] * x[1]", -2.0),
        ("x[1:]", [-2.0]),
        ("norm(x)", 5.0**0.5),
        ("logsumexp(x)", float(np.log(np.exp(1.0) + np.exp(-2.0)))),
        ("sum(x, axis=0, keepdims=True)", [-1.0]),
        ("0 < t < 1 and not t > 2", 1.0),
        ("expm1(t) - log1p(t) + pi * e * 0", float(np.expm1(0.5) - np.log1p(0.5))),
        ("clip(x, -1, 0.5)", [0.5, -1.0]),
        ("2 ** -t % 1 // 1", 0.0),
    ],
)
def test_whitelisted_syntax_computes_what_numpy_does(source, expected):
    out = compile_expression(source, ("t", "x"))(t=0.5, x=jnp.array([1.0, -2.0]))
    np.testing.assert_allclose(np.asarray(out, dtype=float), expected, rtol=1e-6)


@pytest.mark.parametrize(
    "source, column, fragment",
    [
        ("__import__('os')", 0, "names may not start with '_'"),
        ("x.__class__", 0, "attribute access"),
        ("(lambda: 1)()", 1, "lambdas"),
        ("[a for a in x]", 0, "comprehensions"),
        ("open('f')", 0, "unknown function 'open'"),
        ("eval('1')", 0, "unknown function 'eval'"),
        ("x + 'a'", 4, "only numbers"),
        ("x if t else 0", 0, "where(c, a, b)"),
        ("{1: 2}", 0, "dict literals"),
        ("x[t]", 2, "indices must be integer literals"),
        ("sum(x, dtype=1)", 7, "keyword 'dtype'"),
        ("exp", 0, "'exp' is a function"),
        ("x + y", 4, "unknown name 'y'"),
        ("x + (1", 4, "syntax error"),
        ("(y := 1)", 1, "':='"),
        ("x is None", 0, "comparison Is"),
        ("x << 1", 0, "operator LShift"),
        ("f'{x}'", 0, "strings are not allowed"),
    ],
)
def test_everything_else_is_refused_with_a_column(source, column, fragment):
    with pytest.raises(ExpressionError) as err:
        compile_expression(source, ("t", "x"))
    assert fragment in err.value.message
    assert err.value.column == column


def test_leading_spaces_shift_the_column():
    with pytest.raises(ExpressionError) as err:
        compile_expression("   x + y", ("x",))
    assert err.value.column == 7


def test_syntax_check_allows_unknown_names_but_not_bad_nodes():
    check_syntax("a * b + exp(c)")  # names are resolved later, in context
    with pytest.raises(ExpressionError, match="attribute"):
        check_syntax("a.b")


def test_params_may_not_shadow_variables_or_functions():
    with pytest.raises(ExpressionError, match="shadow"):
        compile_expression("x", ("x",), {"exp": 1.0})


def test_changing_params_does_not_recompile():
    traces = []

    @jax.jit
    def run(expr, x):
        traces.append(1)
        return expr(t=0.5, x=x)

    x = jnp.ones(3)
    a = compile_expression("k * x * t", ("t", "x"), {"k": 1.0})
    b = compile_expression("k * x * t", ("t", "x"), {"k": 3.0})
    np.testing.assert_allclose(run(a, x), 0.5)
    np.testing.assert_allclose(run(b, x), 1.5)
    assert len(traces) == 1


def test_gradients_flow_through_expressions():
    U = compile_expression("sum((x**2 - 1)**2)", ("x",))
    x = jnp.array([0.5, 2.0])
    np.testing.assert_allclose(jax.grad(lambda y: U(x=y))(x), 4 * x * (x**2 - 1), rtol=1e-6)


def test_every_whitelisted_function_runs():
    x = jnp.array([0.3, 0.7])
    two_args = {"arctan2", "minimum", "maximum", "dot"}
    for name in FUNCTIONS:
        if name == "where":
            source = "where(x > 0.5, x, 0.0)"
        elif name == "clip":
            source = "clip(x, 0.0, 0.5)"
        else:
            source = f"{name}(x, x)" if name in two_args else f"{name}(x)"
        assert jnp.all(jnp.isfinite(compile_expression(source, ("x",))(x=x))), source


def test_the_package_never_calls_eval_or_exec():
    package = pathlib.Path(__file__).resolve().parents[1] / "diffsde"
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in {"eval", "exec", "compile"}, f"{path}: {node.func.id}"


@pytest.mark.parametrize(
    "source, expected",
    [
        ("2**10 + x", 1024.0),
        ("2**-1 + x", 0.5),
        ("7 // 2 + -(3) + x", 0.0),
        ("9.0**2 + x", 81.0),
        ("sum(x + 1, axis=-1, keepdims=False)", 1.0),
    ],
)
def test_constants_are_folded_at_compile_time(source, expected):
    """Constant sub-expressions are computed once, when compiled (the compiled tree is a
    constant plus x), with Python's exact small integers."""
    np.testing.assert_allclose(compile_expression(source, ("x",))(x=jnp.zeros(1)), expected)


@pytest.mark.parametrize(
    "source, fragment",
    [
        ("9**9**9 * x", "overflows"),
        ("x * (1 / (2 - 2))", "division by zero"),
        ("x + " * 3000 + "x", "the limit is 10,000"),
        ("-" * 250 + "x", "nested more than 200 levels"),
        ("+".join(["x"] * 2500), "nested"),
        ("sum(x, keepdims=1)", "keepdims must be True or False"),
    ],
)
def test_unbounded_work_is_refused_at_once(source, fragment):
    """Sources whose evaluation or compilation would not be bounded are refused in well under a
    second (``9**9**9`` would otherwise compute an integer of 370 million digits).

    Mutation: removing the bit-length check in _fold hangs the first case."""
    import time

    start = time.perf_counter()
    with pytest.raises(ExpressionError, match=fragment.replace("(", r"\(")):
        compile_expression(source, ("x",))
    assert time.perf_counter() - start < 1.0
