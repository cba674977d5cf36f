"""The runs table's filter, evaluated by diffsde's own expression evaluator.

A filter such as ``sde.type == "vp" and eval.sliced_w2 < 0.1`` is the language of spec
expressions (`diffsde.compile_expression`: comparisons, ``and``/``or``/``not``, arithmetic and
its whitelisted functions such as ``abs``) over the table's columns, plus what a table needs:
dotted column names, quoted text and ``in``/``not in`` a list of literals. Before the evaluator
sees it, the filter is rewritten into that language: each column becomes a variable holding
the column as numbers, each quoted text its rank among all the texts in play (so ``==``,
``<`` and friends on text mean what they say), and ``x in [a, b]`` becomes
``x == a or x == b``. The evaluator then does the checking (its whitelist and bounds) and
the work; nothing reaches ``eval``, and any failure is a `FilterError`.
"""

from __future__ import annotations

import ast
import difflib

import numpy as np
import pandas as pd

from diffsde import ExpressionError, compile_expression

EXAMPLE = 'e.g. sde.type == "vp" and eval.sliced_w2 < 0.1'
MAX_FILTER_LENGTH = 2000  # characters
MAX_FILTER_DEPTH = 40  # nesting of the parsed expression
HELP = (
    "Comparisons over columns (dotted spec keys, eval.<metric>, spec.eval.<key> for the spec's "
    "own eval section) joined by and/or/not; in/not in a list of literals; the arithmetic and "
    "functions of spec expressions (abs, log, …)."
)


class FilterError(ValueError):
    """A filter expression that does not parse, is not allowed, or names an unknown column."""


def _fail(message: str, node: ast.AST | None = None):
    where = f"at column {node.col_offset + 1}; " if hasattr(node, "col_offset") else ""
    raise FilterError(f"{message} ({where}{EXAMPLE})")


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _truth(value: bool) -> ast.Compare:
    return ast.Compare(ast.Constant(1), [ast.Eq()], [ast.Constant(int(value))])


def _is_text(column: pd.Series) -> bool:
    return (
        not (
            pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype)
        )
        or column.dropna().map(lambda v: isinstance(v, str)).any()
    )


class _Rewrite(ast.NodeTransformer):
    """The filter in the evaluator's language; records the columns it reads and which
    operands are text."""

    def __init__(self, frame: pd.DataFrame, texts: list[str]):
        self.frame = frame
        self.columns = [str(c) for c in frame.columns]
        self.texts = {text: rank for rank, text in enumerate(texts)}
        self.variables: dict[str, str] = {}  # variable -> column
        self.text_nodes: set[int] = set()  # id() of rewritten nodes that hold text

    def _column(self, node: ast.AST) -> ast.AST:
        name = _dotted(node)
        if name is None:
            _fail("only column names may be written with dots", node)
        if any(part.startswith("_") for part in name.split(".")):
            _fail(f"name '{name}' is not allowed (names may not start with '_')", node)
        if name in ("True", "False"):  # the evaluator's literals are numbers: 1 == 1, 1 == 0
            return ast.copy_location(_truth(name == "True"), node)
        if name not in self.columns:
            close = difflib.get_close_matches(name, self.columns, n=1)
            _fail(f"unknown column '{name}'" + (f"; did you mean '{close[0]}'?" if close else ""))
        variable = next((v for v, c in self.variables.items() if c == name), None)
        variable = variable or f"column{len(self.variables)}"
        self.variables[variable] = name
        out = ast.copy_location(ast.Name(variable, ast.Load()), node)
        if _is_text(self.frame[name]):
            self.text_nodes.add(id(out))
        return out

    visit_Name = visit_Attribute = _column

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if not isinstance(node.func, ast.Name):
            _fail("only the evaluator's functions may be called (abs(x), …)", node)
        node.args = [self.visit(a) for a in node.args]
        node.keywords = [self.visit(k) for k in node.keywords]
        return node  # the function name is the evaluator's to check

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, str):
            out = ast.copy_location(ast.Constant(self.texts[node.value]), node)
            self.text_nodes.add(id(out))
            return out
        if isinstance(node.value, bool):
            return ast.copy_location(_truth(node.value), node)
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        if id(node.left) in self.text_nodes or id(node.right) in self.text_nodes:
            _fail(f"text takes no arithmetic: in {ast.unparse(node)!r} compare it instead", node)
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if not isinstance(node.op, ast.Not) and id(node.operand) in self.text_nodes:
            _fail('text takes no sign: compare it, e.g. sde.type == "vp"', node)
        return node

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        original = ast.unparse(node)
        left = self.visit(node.left)
        parts: list[ast.AST] = []
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn):
                if not isinstance(right, ast.List | ast.Tuple) or not all(
                    isinstance(e, ast.Constant) for e in right.elts
                ):
                    _fail("'in' needs a list of literals, e.g. sde.type in ['vp', 've']", right)
                test, join = (
                    (ast.Eq(), ast.Or()) if isinstance(op, ast.In) else (ast.NotEq(), ast.And())
                )
                tests = [self._pair(left, test, self.visit(e), original) for e in right.elts]
                empty = _truth(isinstance(op, ast.NotIn))
                parts.append(ast.BoolOp(join, tests) if len(tests) > 1 else (tests or [empty])[0])
            else:
                right = self.visit(right)
                parts.append(self._pair(left, op, right, original))
                left = right
        out = parts[0] if len(parts) == 1 else ast.BoolOp(ast.And(), parts)
        return ast.copy_location(out, node)

    def _pair(self, left: ast.AST, op: ast.cmpop, right: ast.AST, original: str) -> ast.AST:
        if (id(left) in self.text_nodes) != (id(right) in self.text_nodes):
            _fail(
                f"cannot compare text with a number in {original!r} (compare numbers with "
                "numbers and text with quoted text)"
            )
        return ast.Compare(left, [op], [right])


def _depth(tree: ast.AST) -> int:
    """Nesting depth of ``tree``, walked without recursion (a deep tree cannot overflow)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_FILTER_DEPTH:
            break
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _parse(expression: str) -> ast.Expression:
    if len(expression) > MAX_FILTER_LENGTH:
        _fail(
            f"the filter is {len(expression)} characters long; at most {MAX_FILTER_LENGTH} "
            "are allowed"
        )
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as err:
        _fail(f"syntax error: {err.msg} (at column {err.offset})")
    except (RecursionError, MemoryError, ValueError) as err:
        _fail(f"the filter cannot be parsed ({type(err).__name__})")
    if _depth(tree) > MAX_FILTER_DEPTH:
        _fail(f"the filter is nested more than {MAX_FILTER_DEPTH} levels deep: write it flatter")
    return tree


def _texts(frame: pd.DataFrame, tree: ast.AST) -> list[str]:
    """Every text the filter compares: its quoted ones and the values of text columns."""
    found = {
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }
    for name in frame.columns:
        if _is_text(frame[name]):
            found.update(str(v) for v in frame[name].dropna())
    return sorted(found)


def _values(column: pd.Series, ranks: dict[str, int]) -> np.ndarray:
    """A column as the evaluator's numbers: text as its rank, missing as NaN (every comparison
    with it is false)."""
    if _is_text(column):
        return np.array([np.nan if pd.isna(v) else ranks[str(v)] for v in column], dtype=float)
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)


def filter_table(frame: pd.DataFrame, expression: str) -> pd.DataFrame:
    """Rows of ``frame`` where ``expression`` holds; an empty or blank filter keeps every row.

    Comparisons with a missing value (a run without that metric) are false. Every way a filter
    can fail is a `FilterError` saying what is wrong: nothing else reaches the page.
    """
    if not isinstance(expression, str) or not expression.strip():
        return frame
    tree = _parse(expression)
    texts = _texts(frame, tree)
    rewrite = _Rewrite(frame, texts)
    try:
        body = rewrite.visit(tree.body)
        compiled = compile_expression(
            ast.unparse(ast.fix_missing_locations(body)), tuple(rewrite.variables)
        )
    except ExpressionError as err:
        _fail(err.message.replace("expressions", "a filter"))
    except RecursionError:
        _fail(f"the filter is nested more than {MAX_FILTER_DEPTH} levels deep: write it flatter")
    ranks = {text: rank for rank, text in enumerate(texts)}
    columns = {v: _values(frame[c], ranks) for v, c in rewrite.variables.items()}
    try:
        mask = np.asarray(compiled(**columns))
        if mask.dtype != bool:
            _fail(f"{expression.strip()!r} is not a condition: compare it, e.g. steps > 100")
        return frame[np.broadcast_to(mask, (len(frame),))]
    except (TypeError, ValueError, ArithmeticError, IndexError) as err:
        if isinstance(err, FilterError):
            raise
        _fail(f"cannot evaluate the filter: {type(err).__name__}: {err}")
