"""Safe evaluator for spec expressions.

An expression such as ``"-0.5 * (beta_min + t * (beta_max - beta_min)) * x"`` is parsed with
:mod:`ast`, every node is checked against a whitelist, and the tree is compiled into nested
Python closures over :mod:`jax.numpy` functions. Nothing is ever passed to ``eval``/``exec``.

Work is bounded: a source has at most :data:`MAX_SOURCE_CHARS` characters, its tree at most
:data:`MAX_NODES` nodes nested at most :data:`MAX_DEPTH` deep, and constant sub-expressions are
folded at compile time with integers kept below 2**53 (larger results are computed as float64,
so ``9**9**9`` is an overflow error at once rather than an integer of 370 million digits).
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

MAX_SOURCE_CHARS = 10_000
"""The longest expression accepted (a drift written out by hand is a few hundred characters)."""
MAX_NODES = 2_000
"""The most syntax-tree nodes of an expression."""
MAX_DEPTH = 200
"""The deepest nesting of an expression's syntax tree."""
_MAX_EXACT_INT = 2**53
"""Folded integers beyond this are computed as float64 (exact integers up to here)."""

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


class _Constant:
    """A compiled constant: callable like every compiled node, and foldable at compile time."""

    def __init__(self, value: int | float):
        self.value = value

    def __call__(self, env: _Env) -> int | float:
        del env
        return self.value


def _fold(op, *values):
    """``op`` on constants without unbounded integer arithmetic: an integer result beyond 2**53
    (checked before computing powers) is computed in float64; overflow and division by zero
    raise ArithmeticError."""
    if op is operator.pow and all(type(v) is int for v in values):
        base, exponent = values
        if exponent < 0 or abs(base) > 1 and exponent * abs(base).bit_length() > 53:
            values = (float(base), float(exponent))
    result = op(*values)
    if type(result) is int and abs(result) > _MAX_EXACT_INT:
        result = float(result)
    if isinstance(result, complex):
        raise ArithmeticError("a negative number to a fractional power is not a real number")
    if isinstance(result, float) and not math.isfinite(result):
        raise OverflowError("result out of float range")
    return result


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
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(node, f"only numbers are allowed as literals, got {value!r}")
        if isinstance(value, int) and abs(value) > _MAX_EXACT_INT:
            try:
                value = float(value)
            except OverflowError:
                self.fail(node, "this integer literal is beyond the float64 range")
        return _Constant(value)

    def visit_Name(self, node: ast.Name) -> _Compiled:
        name = node.id
        if name.startswith("_"):
            self.fail(node, f"name '{name}' is not allowed (names may not start with '_')")
        if name in self.variables:
            self.used.add(name)
            return lambda env: env[name]
        if name in CONSTANTS:
            return _Constant(CONSTANTS[name])
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
        if isinstance(left, _Constant) and isinstance(right, _Constant):
            return self._folded(node, op, left.value, right.value)
        return lambda env: op(left(env), right(env))

    def _folded(self, node: ast.AST, op, *values) -> _Constant:
        try:
            return _Constant(_fold(op, *values))
        except ZeroDivisionError:
            self.fail(node, "division by zero in a constant part of the expression")
        except OverflowError:
            self.fail(
                node,
                "a constant part of the expression overflows: its value exceeds float64's "
                "range (about 1.8e308); use smaller numbers",
            )
        except ArithmeticError as err:
            self.fail(node, f"a constant part of the expression: {err}")

    def visit_UnaryOp(self, node: ast.UnaryOp) -> _Compiled:
        if isinstance(node.op, ast.Not):
            operand = self.compile(node.operand)
            return lambda env: jnp.logical_not(operand(env))
        op = _UNARY.get(type(node.op))
        if op is None:
            self.fail(node, f"operator {type(node.op).__name__} is not allowed")
        operand = self.compile(node.operand)
        if isinstance(operand, _Constant):
            return self._folded(node, op, operand.value)
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
            kwargs[kw.arg] = self._static_keyword(kw)
        return lambda env: function(*(a(env) for a in args), **kwargs)

    def _static_keyword(self, kw: ast.keyword):
        """``axis`` is an integer literal (or a tuple of them), ``keepdims`` True or False."""
        if kw.arg == "keepdims":
            if isinstance(kw.value, ast.Constant) and type(kw.value.value) is bool:
                return kw.value.value
            self.fail(kw.value, "keepdims must be True or False")
        return self._static_index(kw.value)

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
    if len(source) > MAX_SOURCE_CHARS:
        raise ExpressionError(
            f"the expression has {len(source):,} characters; the limit is "
            f"{MAX_SOURCE_CHARS:,}: split it with params or simplify it"
        )
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as err:
        offset = max((err.offset or 1) - 1, 0)
        if "integer string conversion" in err.msg:  # CPython's int-str limit: not a Python hint
            raise ExpressionError(
                "an integer literal has more than 4300 digits: write it as a float (1e300) "
                "or use a smaller number",
                offset,
            ) from None
        raise ExpressionError(f"syntax error: {err.msg}", offset) from None
    except (RecursionError, MemoryError):  # CPython's parser on very deep nesting
        raise ExpressionError(
            f"the expression is nested too deeply (at most {MAX_DEPTH} levels): simplify it"
        ) from None
    _check_size(tree)
    return tree


def _check_size(tree: ast.Expression) -> None:
    """At most MAX_NODES nodes, at most MAX_DEPTH deep (walked without recursion)."""
    stack, count = [(tree.body, 1)], 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise ExpressionError(
                f"the expression is nested more than {MAX_DEPTH} levels deep: simplify it",
                getattr(node, "col_offset", 0),
            )
        if count > MAX_NODES:
            raise ExpressionError(
                f"the expression has more than {MAX_NODES:,} terms: simplify it or split it "
                "with params"
            )
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


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
