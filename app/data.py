"""The dashboard's data: run-store records as table rows, and a safe filter over them.

Pure functions, no Streamlit: everything here is tested without a browser. Runs are read with
`diffsde.runs.open_run` / `diffsde.runs.list_runs`, which open each ``run.h5`` as an SWMR reader
and close it before returning, so no handle outlives a call.

A filter such as ``sde.type == "vp" and eval.sliced_w2 < 0.1`` is parsed with :mod:`ast` and every
node is checked against a whitelist (the approach of ``diffsde/_expression.py``): comparisons,
``and``/``or``/``not``, ``in``/``not in`` a list of literals, string/number/boolean literals and
(dotted) column names. Nothing is passed to ``eval``/``exec``/``DataFrame.query``.
"""

from __future__ import annotations

import ast
import difflib
import operator
import os
import pathlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pandas as pd
import pydantic

from diffsde._expression import COMPARISONS
from diffsde._plugins import Registry
from diffsde.runs import RUN_FILE, RunProblem, RunRecord, list_runs, open_run

RUNS_DIR_VARIABLE = "DIFFSDE_RUNS_DIR"
# The columns the runs table leads with; every flattened spec key and metric follows.
LEADING_COLUMNS = (
    "name",
    "sde.type",
    "objective.type",
    "sampler.type",
    "status",
    "steps",
    "wall_time",
    "loss",
)


def runs_dir_from_env(default: str = "runs") -> pathlib.Path:
    """The runs directory the dashboard shows: ``$DIFFSDE_RUNS_DIR``, else ``default``."""
    return pathlib.Path(os.environ.get(RUNS_DIR_VARIABLE) or default)


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list | tuple):
        out[prefix] = str(list(value))  # lists (metrics, save_times) stay one readable cell
    else:
        out[prefix] = value


def _last(series: Any) -> float | None:
    return float(series[-1]) if series is not None and len(series) else None


def record_row(record: RunRecord) -> dict[str, Any]:
    """One table row for ``record``: the flattened resolved spec (``sde.type``, ``training.steps``,
    …), status, progress, final loss, and the run's own metrics as ``eval.<metric>``.

    Results win over a spec key of the same dotted name. Metrics that ``diffsde sample`` added
    under a label (``label.metric``) are left out: they belong to the Compare view.
    """
    row: dict[str, Any] = {}
    _flatten(record.spec if isinstance(record.spec, Mapping) else {}, "", row)
    steps = _last(record.metrics.get("step"))
    row.update(
        id=record.id,
        name=record.name,
        status=record.status,
        message=record.message,
        steps=int(steps) if steps is not None else 0,
        wall_time=_last(record.metrics.get("wall_time")),
        loss=_last(record.metrics.get("loss")),
        created=record.created,
        path=str(record.path),
    )
    for key, value in record.eval.items():
        if "." not in key:
            row[f"eval.{key}"] = value
    for key, value in record.nfe.items():
        row[f"nfe.{key}"] = value
    return row


def load_row(run_path: str | os.PathLike[str]) -> dict[str, Any]:
    """`record_row` of one run directory; raises `diffsde.runs.RunReadError` if unreadable."""
    return record_row(open_run(run_path))


def run_stamps(runs_dir: str | os.PathLike[str]) -> list[tuple[str, float]]:
    """``(run directory, mtime of its run.h5)`` for every candidate run: the cache keys."""
    runs_dir = pathlib.Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"runs directory {runs_dir} does not exist; train a run first.")
    stamps = []
    for child in sorted(runs_dir.iterdir()):
        file = child / RUN_FILE
        if child.is_dir() and not child.name.startswith(".") and file.is_file():
            stamps.append((str(child), file.stat().st_mtime))
    return stamps


def table(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame, oldest first, leading columns first, then metrics, then the rest."""
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        return pd.DataFrame(columns=["id", *LEADING_COLUMNS, "created"])
    frame = frame.sort_values(["created", "id"], ignore_index=True)
    metrics = sorted(c for c in frame.columns if c.startswith(("eval.", "nfe.")))
    first = [c for c in ("id", *LEADING_COLUMNS) if c in frame.columns] + metrics + ["created"]
    rest = [c for c in frame.columns if c not in first]
    return frame[first + rest]


def load_table(
    runs_dir: str | os.PathLike[str], *, problems: list[RunProblem] | None = None
) -> pd.DataFrame:
    """Every readable run in ``runs_dir`` as one row (`record_row`); unreadable ones go to
    ``problems`` as in `diffsde.runs.list_runs`."""
    return table(record_row(r) for r in list_runs(runs_dir, problems=problems))


# -- filtering -------------------------------------------------------------------------------


class FilterError(ValueError):
    """A filter expression that does not parse, is not allowed, or names an unknown column."""


_EXAMPLE = 'e.g. sde.type == "vp" and eval.sliced_w2 < 0.1'
_Value = Callable[[pd.DataFrame], Any]


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


class _FilterCompiler:
    def __init__(self, columns: Iterable[str]):
        self.columns = [str(c) for c in columns]

    def fail(self, node: ast.AST, message: str):
        column = getattr(node, "col_offset", 0)
        raise FilterError(f"{message} (at column {column + 1}; {_EXAMPLE})")

    def compile(self, node: ast.AST) -> _Value:
        if isinstance(node, ast.Name | ast.Attribute):
            return self.column(node)
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            kind = "function calls" if isinstance(node, ast.Call) else type(node).__name__
            self.fail(node, f"{kind} are not allowed in a filter")
        return method(node)

    def column(self, node: ast.Name | ast.Attribute) -> _Value:
        name = _dotted(node)
        if name is None:
            self.fail(node, "only column names may be written with dots")
        if any(part.startswith("_") for part in name.split(".")):
            self.fail(node, f"name '{name}' is not allowed (names may not start with '_')")
        if name in ("True", "False"):
            value = name == "True"
            return lambda frame: value
        if name not in self.columns:
            close = difflib.get_close_matches(name, self.columns, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            self.fail(node, f"unknown column '{name}'{hint}")
        return lambda frame: frame[name]

    def visit_Constant(self, node: ast.Constant) -> _Value:
        value = node.value
        if not isinstance(value, str | int | float | bool):
            self.fail(node, f"literal {value!r} is not allowed: use strings or numbers")
        return lambda frame: value

    def visit_UnaryOp(self, node: ast.UnaryOp) -> _Value:
        operand = self.compile(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda frame: _negate(_boolean(operand(frame)))
        if isinstance(node.op, ast.USub):
            return lambda frame: -operand(frame)
        if isinstance(node.op, ast.UAdd):
            return operand
        self.fail(node, f"operator {type(node.op).__name__} is not allowed in a filter")

    def visit_BoolOp(self, node: ast.BoolOp) -> _Value:
        values = [self.compile(v) for v in node.values]
        combine = operator.and_ if isinstance(node.op, ast.And) else operator.or_

        def run(frame):
            out = _boolean(values[0](frame))
            for value in values[1:]:
                out = combine(out, _boolean(value(frame)))
            return out

        return run

    def visit_Compare(self, node: ast.Compare) -> _Value:
        operands = [self.compile(node.left)]
        ops: list[Callable[[Any, Any], Any]] = []
        for op_node, right in zip(node.ops, node.comparators):
            if isinstance(op_node, ast.In | ast.NotIn):
                if not isinstance(right, ast.List | ast.Tuple):
                    self.fail(right, "'in' needs a list of literals, e.g. sde.type in ['vp', 've']")
                choices = [self.visit_Constant(e)(None) for e in self._constants(right.elts)]
                negate = isinstance(op_node, ast.NotIn)
                ops.append(lambda a, _, c=choices, n=negate: _isin(a, c, n))
                operands.append(lambda frame: None)
                continue
            op = COMPARISONS.get(type(op_node))
            if op is None:
                self.fail(node, f"comparison {type(op_node).__name__} is not allowed in a filter")
            ops.append(op)
            operands.append(self.compile(right))

        def run(frame):
            values = [f(frame) for f in operands]
            out = None
            for i, op in enumerate(ops):
                try:
                    part = _boolean(op(values[i], values[i + 1]))
                except TypeError as err:
                    raise FilterError(
                        f"cannot compare in {ast.unparse(node)!r}: {err} "
                        "(compare numbers with numbers and text with quoted text)"
                    ) from None
                out = part if out is None else out & part
            return out

        return run

    def _constants(self, nodes: list[ast.expr]) -> list[ast.Constant]:
        for e in nodes:
            if not isinstance(e, ast.Constant):
                self.fail(e, "the list after 'in' may hold only literals")
        return nodes  # type: ignore[return-value]


def _negate(value: Any) -> Any:
    return (not value) if isinstance(value, bool) else ~value


def _isin(values: Any, choices: list[Any], negate: bool) -> Any:
    if isinstance(values, pd.Series):
        inside = values.isin(choices)
    else:
        inside = values in choices
    return _negate(inside) if negate else inside


def _boolean(value: Any) -> Any:
    if isinstance(value, pd.Series):
        if not pd.api.types.is_bool_dtype(value.dtype):
            raise FilterError(
                f"column '{value.name}' is not a condition: compare it, e.g. {value.name} == ..."
            )
        return value
    if isinstance(value, bool):
        return value
    raise FilterError(f"{value!r} is not a condition ({_EXAMPLE})")


def compile_filter(expression: str, columns: Iterable[str]) -> Callable[[pd.DataFrame], Any]:
    """Check ``expression`` against the whitelist and the ``columns``; return frame -> mask.

    Raises `FilterError` with the offending column offset and an example for anything else.
    """
    if not isinstance(expression, str) or not expression.strip():
        raise FilterError(f"the filter is empty ({_EXAMPLE})")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as err:
        raise FilterError(f"syntax error: {err.msg} (at column {err.offset}; {_EXAMPLE})") from None
    return _FilterCompiler(columns).compile(tree.body)


def filter_table(frame: pd.DataFrame, expression: str) -> pd.DataFrame:
    """Rows of ``frame`` where ``expression`` holds; an empty or blank filter keeps every row.

    Comparisons with a missing value (a run without that metric) are false.
    """
    if not expression or not expression.strip():
        return frame
    mask = _boolean(compile_filter(expression, frame.columns)(frame))
    if isinstance(mask, bool):
        return frame if mask else frame.iloc[0:0]
    return frame[mask.fillna(False).astype(bool)]


# -- plugins ---------------------------------------------------------------------------------


def _annotation(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    return text or str(annotation).replace("typing.", "")


def parameter_rows(config: type[pydantic.BaseModel]) -> list[dict[str, str]]:
    """A component config's fields (``type`` aside): name, type, default (or "required"), doc."""
    rows = []
    for name, field in config.model_fields.items():
        if name == "type":
            continue
        if field.is_required():
            default = "required"
        elif field.default_factory is not None:
            default = repr(field.default_factory())
        else:
            default = repr(field.default)
        rows.append(
            {
                "parameter": name,
                "type": _annotation(field.annotation),
                "default": default,
                "description": field.description or "",
            }
        )
    return rows


def component_rows(registry: Registry) -> list[dict[str, str]]:
    """Every registered component: kind, name, distribution, plugin, one-line doc."""
    return registry.rows()
