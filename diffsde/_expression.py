"""Safe evaluator for spec expressions.

An expression such as ``"-0.5 * (beta_min + t * (beta_max - beta_min)) * x"`` is parsed with
:mod:`ast`, every node is checked against a whitelist, and the tree is compiled into nested
Python closures over :mod:`jax.numpy` functions. Nothing is ever passed to ``eval``/``exec``.
"""

import ast
import difflib
import functools
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

# name -> jax function. Only these may be called from a spec expression.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "exp": jnp.exp,
    "log": jnp.log,
    "sqrt": jnp.sqrt,
    "sin": jnp.sin,
    "cos": jnp.cos,
    "tan": jnp.tan,
    "sinh": jnp.sinh,
    "cosh": jnp.cosh,
    "tanh": jnp.tanh,
    "arctan": jnp.arctan,
    "arctan2": jnp.arctan2,
    "expm1": jnp.expm1,
    "log1p": jnp.log1p,
    "abs": jnp.abs,
    "sign": jnp.sign,
    "square": jnp.square,
    "where": jnp.where,
    "minimum": jnp.minimum,
    "maximum": jnp.maximum,
    "clip": jnp.clip,
    "sum": jnp.sum,
    "mean": jnp.mean,
    "prod": jnp.prod,
    "dot": jnp.dot,
    "norm": jnp.linalg.norm,
    "sigmoid": jax.nn.sigmoid,
    "softplus": jax.nn.softplus,
    "logsumexp": jax.scipy.special.logsumexp,
    "ones_like": jnp.ones_like,
    "zeros_like": jnp.zeros_like,
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}
KEYWORDS = frozenset({"axis", "keepdims"})

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.Mod: operator.mod,
    ast.FloorDiv: operator.floordiv,
    ast.MatMult: operator.matmul,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
COMPARISONS = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_BOOLEAN = {ast.And: jnp.logical_and, ast.Or: jnp.logical_or}

_Env = Mapping[str, Any]
_Compiled = Callable[[_Env], Any]


class ExpressionError(ValueError):
    """A spec expression that is not allowed or does not parse.

    ``column`` is the 0-based offset of the offending token inside the expression string.
    """

    def __init__(self, message: str, column: int = 0):
        super().__init__(message)
        self.message = message
        self.column = column


def _suggest(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


class _Compiler:
    def __init__(self, variables: frozenset[str]):
        self.variables = variables
        self.used: set[str] = set()

    def fail(self, node: ast.AST, message: str):
        raise ExpressionError(message, getattr(node, "col_offset", 0))

    def compile(self, node: ast.AST) -> _Compiled:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            self.fail(node, self._why_not(node))
        return method(node)

    def _why_not(self, node: ast.AST) -> str:
        kind = type(node).__name__
        hints = {
            "Attribute": "attribute access is not allowed (write exp(x), not jnp.exp(x))",
            "IfExp": "'a if c else b' is not allowed; write where(c, a, b)",
            "Lambda": "lambdas are not allowed in expressions",
            "ListComp": "comprehensions are not allowed in expressions",
            "GeneratorExp": "comprehensions are not allowed in expressions",
            "DictComp": "comprehensions are not allowed in expressions",
            "SetComp": "comprehensions are not allowed in expressions",
            "NamedExpr": "assignment ':=' is not allowed in expressions",
            "Starred": "'*' unpacking is not allowed in expressions",
            "JoinedStr": "strings are not allowed in expressions",
            "Dict": "dict literals are not allowed in expressions",
            "Set": "set literals are not allowed in expressions",
            "Await": "'await' is not allowed in expressions",
        }
        return hints.get(kind, f"{kind} syntax is not allowed in expressions")

    # leaves ---------------------------------------------------------------------------------
    def visit_Constant(self, node: ast.Constant) -> _Compiled:
        value = node.value
        if not isinstance(value, int | float):
            self.fail(node, f"only numbers are allowed as literals, got {value!r}")
        return lambda env: value

    def visit_Name(self, node: ast.Name) -> _Compiled:
        name = node.id
        if name.startswith("_"):
            self.fail(node, f"name '{name}' is not allowed (names may not start with '_')")
        if name in self.variables:
            self.used.add(name)
            return lambda env: env[name]
        if name in CONSTANTS:
            value = CONSTANTS[name]
            return lambda env: value
        if name in FUNCTIONS:
            self.fail(node, f"'{name}' is a function: call it, e.g. {name}(x)")
        known = sorted(self.variables | set(CONSTANTS))
        self.fail(
            node,
            f"unknown name '{name}'{_suggest(name, known)} "
            f"(variables and params here: {', '.join(known)})",
        )

    def visit_List(self, node: ast.List | ast.Tuple) -> _Compiled:
        items = [self.compile(e) for e in node.elts]
        return lambda env: jnp.stack([jnp.asarray(f(env)) for f in items])

    visit_Tuple = visit_List

    # operators ------------------------------------------------------------------------------
    def visit_BinOp(self, node: ast.BinOp) -> _Compiled:
        op = _BINARY.get(type(node.op))
        if op is None:
            self.fail(node, f"operator {type(node.op).__name__} is not allowed")
        left, right = self.compile(node.left), self.compile(node.right)
        return lambda env: op(left(env), right(env))

    def visit_UnaryOp(self, node: ast.UnaryOp) -> _Compiled:
        if isinstance(node.op, ast.Not):
            operand = self.compile(node.operand)
            return lambda env: jnp.logical_not(operand(env))
        op = _UNARY.get(type(node.op))
        if op is None:
            self.fail(node, f"operator {type(node.op).__name__} is not allowed")
        operand = self.compile(node.operand)
        return lambda env: op(operand(env))

    def visit_BoolOp(self, node: ast.BoolOp) -> _Compiled:
        op = _BOOLEAN[type(node.op)]
        values = [self.compile(v) for v in node.values]

        def run(env):
            out = values[0](env)
            for v in values[1:]:
                out = op(out, v(env))
            return out

        return run

    def visit_Compare(self, node: ast.Compare) -> _Compiled:
        ops = []
        for op_node in node.ops:
            op = COMPARISONS.get(type(op_node))
            if op is None:
                self.fail(node, f"comparison {type(op_node).__name__} is not allowed")
            ops.append(op)
        operands = [self.compile(node.left)] + [self.compile(c) for c in node.comparators]

        def run(env):
            values = [f(env) for f in operands]
            out = ops[0](values[0], values[1])
            for i in range(1, len(ops)):
                out = jnp.logical_and(out, ops[i](values[i], values[i + 1]))
            return out

        return run

    # calls and indexing ---------------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> _Compiled:
        if not isinstance(node.func, ast.Name):
            self.fail(node.func, self._why_not(node.func))
        name = node.func.id
        if name.startswith("_"):
            self.fail(node.func, f"name '{name}' is not allowed (names may not start with '_')")
        function = FUNCTIONS.get(name)
        if function is None:
            self.fail(
                node.func,
                f"unknown function '{name}'{_suggest(name, FUNCTIONS)} "
                f"(allowed: {', '.join(sorted(FUNCTIONS))})",
            )
        args = [self.compile(a) for a in node.args]
        kwargs = {}
        for kw in node.keywords:
            if kw.arg not in KEYWORDS:
                self.fail(kw, f"keyword '{kw.arg}' is not allowed (allowed: axis, keepdims)")
            kwargs[kw.arg] = self.compile(kw.value)
        return lambda env: function(
            *(a(env) for a in args), **{k: v(env) for k, v in kwargs.items()}
        )

    def visit_Subscript(self, node: ast.Subscript) -> _Compiled:
        value = self.compile(node.value)
        index = self._static_index(node.slice)
        return lambda env: value(env)[index]

    def _static_index(self, node: ast.AST):
        """Indices must be integer literals or slices of them (shapes stay static)."""
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -self._static_index(node.operand)
        if isinstance(node, ast.Slice):
            parts = [
                None if p is None else self._static_index(p)
                for p in (node.lower, node.upper, node.step)
            ]
            return slice(*parts)
        if isinstance(node, ast.Tuple):
            return tuple(self._static_index(e) for e in node.elts)
        self.fail(node, "indices must be integer literals or slices, e.g. x[0] or x[1:]")


class Expression(eqx.Module):
    """A compiled spec expression: call it with the variables as keywords.

    ``params`` are pytree leaves (changing their values never recompiles), the compiled closure
    is static.
    """

    source: str = eqx.field(static=True)
    variables: tuple[str, ...] = eqx.field(static=True)
    params: dict[str, Array]
    _fn: _Compiled = eqx.field(static=True)

    def __call__(self, **variables: Any) -> Array:
        missing = set(self.variables) - set(variables)
        if missing:
            raise TypeError(f"expression {self.source!r} needs {sorted(missing)}")
        env = dict(self.params)
        env.update(variables)
        return jnp.asarray(self._fn(env))


def _parse(source: str) -> ast.Expression:
    if not isinstance(source, str):
        raise ExpressionError(f"an expression must be a string, got {type(source).__name__}")
    if not source.strip():
        raise ExpressionError("the expression is empty")
    try:
        return ast.parse(source.strip(), mode="eval")
    except SyntaxError as err:
        offset = max((err.offset or 1) - 1, 0)
        raise ExpressionError(f"syntax error: {err.msg}", offset) from None


def _lead(source: str) -> int:
    return len(source) - len(source.lstrip())


def check_syntax(source: str) -> None:
    """Syntax-and-whitelist check that needs no context (unknown names are allowed here)."""
    tree = _parse(source)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    allowed = frozenset(n for n in names if n not in FUNCTIONS and not n.startswith("_"))
    try:
        _Compiler(allowed).compile(tree.body)
    except ExpressionError as err:
        raise ExpressionError(err.message, err.column + _lead(source)) from None


@functools.lru_cache(maxsize=1024)
def _compile(source: str, names: frozenset[str]) -> _Compiled:
    """Cached, so equal expressions share one closure: jit sees equal static fields and never
    recompiles when only parameter values change."""
    try:
        return _Compiler(names).compile(_parse(source).body)
    except ExpressionError as err:
        raise ExpressionError(err.message, err.column + _lead(source)) from None


def compile_expression(
    source: str, variables: tuple[str, ...], params: Mapping[str, Any] | None = None
) -> Expression:
    """Compile ``source`` into an :class:`Expression` over ``variables`` and ``params``.

    Raises :class:`ExpressionError` (with the column of the offending token) for anything
    outside the whitelist: attributes, imports, dunder names, lambdas, comprehensions, calls
    to unknown names, strings.
    """
    params = dict(params or {})
    clash = set(params) & (set(variables) | set(FUNCTIONS) | set(CONSTANTS))
    if clash:
        raise ExpressionError(f"params {sorted(clash)} shadow a variable or function: rename them")
    fn = _compile(source, frozenset(variables) | frozenset(params))
    leaves = {k: jnp.asarray(np.asarray(v, dtype=np.float32)) for k, v in params.items()}
    return Expression(source=source, variables=tuple(variables), params=leaves, _fn=fn)
