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

import numpy as np
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


# -- comparing runs --------------------------------------------------------------------------

METRICS = ("loss", "lr", "grad_norm")
X_AXES = ("step", "wall_time")
SEED_KEY = "seed"
# Spec keys that label a run rather than configure it: ignored when grouping runs over seeds.
_LABEL_KEYS = ("name", SEED_KEY)


def flat_spec(record: RunRecord) -> dict[str, Any]:
    """``record``'s resolved spec flattened to dotted keys (lists kept as one string)."""
    out: dict[str, Any] = {}
    _flatten(record.spec if isinstance(record.spec, Mapping) else {}, "", out)
    return out


def spec_diff(records: Iterable[RunRecord], *, all_keys: bool = False) -> pd.DataFrame:
    """The resolved specs side by side: one row per dotted key, one column per run id.

    Only keys whose values differ between the runs (a key missing from some run differs)
    unless ``all_keys``. Values are shown as text so mixed types fit one column.
    """
    records = list(records)
    flats = [flat_spec(r) for r in records]
    keys = sorted(set().union(*flats)) if flats else []
    rows = {}
    for key in keys:
        values = [repr(f[key]) if key in f else None for f in flats]
        if all_keys or len(set(values)) > 1:
            rows[key] = ["—" if v is None else str(flats[i][key]) for i, v in enumerate(values)]
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=[r.id for r in records])
    frame.index.name = "key"
    return frame


def _is_best_column(column: str) -> bool:
    return column == "loss" or column.startswith("eval.")


def final_metrics(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per run (indexed by id): name, steps, wall time, final loss, every ``eval.*``
    metric (labelled ``diffsde sample`` metrics included) and every ``nfe.*`` count."""
    rows = []
    for record in records:
        steps = _last(record.metrics.get("step"))
        row: dict[str, Any] = {
            "id": record.id,
            "name": record.name,
            "steps": int(steps) if steps is not None else 0,
            "wall_time": _last(record.metrics.get("wall_time")),
            "loss": _last(record.metrics.get("loss")),
        }
        row.update({f"eval.{k}": v for k, v in sorted(record.eval.items())})
        row.update({f"nfe.{k}": v for k, v in sorted(record.nfe.items())})
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["name", "steps", "wall_time", "loss"]).rename_axis("id")
    frame = pd.DataFrame(rows).set_index("id")
    results = sorted(c for c in frame.columns if c.startswith("eval.")) + sorted(
        c for c in frame.columns if c.startswith("nfe.")
    )
    return frame[["name", "steps", "wall_time", "loss", *results]]


def best_per_column(frame: pd.DataFrame) -> pd.DataFrame:
    """A boolean frame shaped like ``frame``: True at the lowest value of each metric column
    (``loss`` and ``eval.*``; lower is better for all of them). Ties are all marked; other
    columns, and columns with no values, are never marked."""
    mask = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    for column in frame.columns:
        if not _is_best_column(column):
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.notna().any():
            mask[column] = values == values.min()
    return mask


def smooth(values: Any, alpha: float) -> Any:
    """Exponential moving average: ``s[0] = v[0]``, ``s[t] = alpha*s[t-1] + (1-alpha)*v[t]``.

    ``alpha = 0`` returns the values unchanged; ``alpha`` must be in [0, 1).
    """
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"smoothing alpha must be in [0, 1), got {alpha}")
    series = pd.Series(values, dtype=float)
    if alpha == 0.0:
        return series.to_numpy()
    return series.ewm(alpha=1.0 - alpha, adjust=False).mean().to_numpy()


def curves(
    records: Iterable[RunRecord], metric: str, x: str = "step", *, alpha: float = 0.0
) -> pd.DataFrame:
    """Long frame (columns ``run``, ``x``, ``metric``) of ``metric`` against ``x`` for each run
    that logged both, smoothed with `smooth`; ``run`` is ``name (id)``."""
    frames = []
    for record in records:
        xs, ys = record.metrics.get(x), record.metrics.get(metric)
        if xs is None or ys is None or not len(ys):
            continue
        length = min(len(xs), len(ys))
        frames.append(
            pd.DataFrame(
                {
                    "run": f"{record.name} ({record.id})",
                    x: xs[:length],
                    metric: smooth(ys[:length], alpha),
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=["run", x, metric])
    return pd.concat(frames, ignore_index=True)


def seed_groups(records: Iterable[RunRecord]) -> list[list[RunRecord]]:
    """Groups of two or more runs whose resolved specs differ only in ``seed`` (the run
    ``name`` is a label and ignored too) and that have distinct seeds, in first-seen order."""
    groups: dict[str, list[RunRecord]] = {}
    for record in records:
        flat = flat_spec(record)
        key = repr(sorted((k, repr(v)) for k, v in flat.items() if k not in _LABEL_KEYS))
        groups.setdefault(key, []).append(record)
    out = []
    for group in groups.values():
        seeds = [flat_spec(r).get(SEED_KEY) for r in group]
        if len(group) > 1 and len(set(map(repr, seeds))) == len(group):
            out.append(group)
    return out


def seed_summary(group: Iterable[RunRecord]) -> pd.DataFrame:
    """Mean ± std (sample std, ddof=1) over the runs of one seed group of each numeric final
    metric (`final_metrics` columns but ``name``); one row per metric."""
    frame = final_metrics(group).drop(columns="name").apply(pd.to_numeric, errors="coerce")
    return pd.DataFrame(
        {"mean": frame.mean(), "std": frame.std(ddof=1), "n": frame.count()}
    ).rename_axis("metric")


# -- samples ---------------------------------------------------------------------------------

REFERENCE = "reference"


def sample_sets(record: RunRecord) -> list[str]:
    """The run's stored sample sets that can be shown: 2-D arrays (points × dim) other than the
    held-out reference; ``samples`` first, then labelled `diffsde sample` sets by name."""
    names = [
        k
        for k, v in record.samples.items()
        if k != REFERENCE and getattr(v, "ndim", 0) == 2 and len(v)
    ]
    return sorted(names, key=lambda k: (k != "samples", k))


def sample_view(dim: int) -> str:
    """How to draw points of dimension ``dim``: ``scatter`` (2-D), ``image`` (a perfect square
    of at least 16, e.g. 8×8 digits) or ``histogram`` (marginals of the first coordinates)."""
    side = int(round(dim**0.5))
    if dim == 2:
        return "scatter"
    if dim >= 16 and side * side == dim:
        return "image"
    return "histogram"


def _head(array: Any, max_points: int) -> Any:
    return np.asarray(array, dtype=float)[:max_points]


def scatter_frame(samples: Any, reference: Any = None, *, max_points: int = 1000) -> pd.DataFrame:
    """Long frame (``x``, ``y``, ``set``) of the first two coordinates: reference then samples."""
    parts = []
    for name, array in ((REFERENCE, reference), ("samples", samples)):
        if array is not None and len(array):
            head = _head(array, max_points)
            parts.append(pd.DataFrame({"x": head[:, 0], "y": head[:, 1], "set": name}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["x", "y", "set"])


def marginal_frame(
    samples: Any, reference: Any = None, *, coordinates: int = 4, max_points: int = 1000
) -> pd.DataFrame:
    """Long frame (``coordinate``, ``value``, ``set``) of the first ``coordinates`` columns."""
    parts = []
    for name, array in ((REFERENCE, reference), ("samples", samples)):
        if array is None or not len(array):
            continue
        head = _head(array, max_points)
        for j in range(min(coordinates, head.shape[1])):
            parts.append(pd.DataFrame({"coordinate": f"x{j}", "value": head[:, j], "set": name}))
    if not parts:
        return pd.DataFrame(columns=["coordinate", "value", "set"])
    return pd.concat(parts, ignore_index=True)


def image_tile(samples: Any, *, count: int = 16, columns: int = 4, gap: int = 1) -> Any:
    """The first ``count`` samples (each a flattened square image) as one grid in [0, 1], with a
    ``gap`` of pixels between images; scaled by the min and max of the shown images."""
    images = np.asarray(samples, dtype=float)[:count]
    n, dim = images.shape
    side = int(round(dim**0.5))
    if side * side != dim:
        raise ValueError(f"dimension {dim} is not a square image")
    low, high = float(images.min()), float(images.max())
    images = (images - low) / (high - low) if high > low else np.zeros_like(images)
    rows = -(-n // columns)
    step = side + gap
    tile = np.ones((rows * step - gap, columns * step - gap))
    for i, image in enumerate(images.reshape(n, side, side)):
        r, c = divmod(i, columns)
        tile[r * step : r * step + side, c * step : c * step + side] = image
    return tile
