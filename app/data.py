"""The dashboard's data: run-store records as table rows, and a safe filter over them.

Pure functions, no Streamlit: everything here is tested without a browser. Runs are read only
through `diffsde.runs` (`list_runs`, `open_run`); the app never opens a run's files itself, so
it follows the store's format wherever it goes. What it does look at is the ``stat`` of the
store's entries (`store_stamp`): the cache key that says when to read again.

A filter such as ``sde.type == "vp" and eval.sliced_w2 < 0.1`` is parsed with :mod:`ast` and every
node is checked against a whitelist (the approach of ``diffsde/_expression.py``): comparisons,
``and``/``or``/``not``, ``in``/``not in`` a list of literals, string/number/boolean literals and
(dotted) column names. Nothing is passed to ``eval``/``exec``/``DataFrame.query``; the length and
nesting depth of a filter are bounded, and any failure of it is a `FilterError`.
"""

from __future__ import annotations

import ast
import difflib
import math
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
from diffsde.runs import RunProblem, RunRecord, list_runs

RUNS_DIR_VARIABLE = "DIFFSDE_RUNS_DIR"
# Result namespaces: a spec key under one of them (the spec's `eval.metrics`, `eval.n_samples`)
# is shown as `spec.<key>` so that `eval.<metric>` is always a result.
RESULT_PREFIXES = ("eval.", "nfe.")
SPEC_PREFIX = "spec."
# The runs table: who the run is and how it ended, then its results, then what it was.
IDENTITY_COLUMNS = ("short_id", "name", "seed", "status", "steps", "loss", "wall_time")
KEY_SPEC_COLUMNS = ("sde.type", "objective.type", "sampler.type", "data.type")
LEADING_COLUMNS = (*IDENTITY_COLUMNS, *KEY_SPEC_COLUMNS)  # the order of the default view
INTEGER_COLUMNS = ("steps", "seed")  # and every nfe.* count


def runs_dir_from_env(default: str = "runs") -> pathlib.Path:
    """The runs directory the dashboard shows: ``$DIFFSDE_RUNS_DIR``, else ``default``."""
    return pathlib.Path(os.environ.get(RUNS_DIR_VARIABLE) or default)


def _entry_stamp(path: pathlib.Path) -> tuple:
    """(name, size, mtime) of every entry of one directory: changes whenever a file in it is
    written, replaced or added, whatever the store's file layout."""
    out = []
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                out.append((entry.name, info.st_size, info.st_mtime_ns))
    except OSError:
        return ()
    return tuple(sorted(out))


def store_stamp(runs_dir: str | os.PathLike[str]) -> tuple:
    """A cache key of the whole store: `_entry_stamp` of each run directory (by name).

    Raises `FileNotFoundError` (with what to do) when the store does not exist.
    """
    runs_dir = pathlib.Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"runs directory {runs_dir} does not exist; train a run first.")
    stamps = []
    for child in sorted(runs_dir.iterdir()):
        if child.name.startswith(".") or not child.is_dir():
            continue
        stamps.append((child.name, _entry_stamp(child)))
    return tuple(stamps)


def run_stamp(run_dir: str | os.PathLike[str]) -> tuple:
    """The cache key of one run directory (see `store_stamp`)."""
    return _entry_stamp(pathlib.Path(run_dir))


def read_store(runs_dir: str | os.PathLike[str]) -> tuple[list[RunRecord], list[RunProblem]]:
    """Every readable run of ``runs_dir`` (oldest first) and one `RunProblem` per unreadable
    one, through `diffsde.runs.list_runs`."""
    problems: list[RunProblem] = []
    return list_runs(runs_dir, problems=problems), problems


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


def short_id(run_id: str) -> str:
    """The random tail of a run id (``20260101-120000-name-1a2b3c`` → ``1a2b3c``): unique in a
    store and short enough for a legend."""
    return str(run_id).rsplit("-", 1)[-1]


def _seed(record: RunRecord) -> Any:
    return record.spec.get("seed") if isinstance(record.spec, Mapping) else None


def run_label(record: RunRecord) -> str:
    """How a run is named wherever runs are told apart: ``name · seed 3 · 1a2b3c``."""
    seed = _seed(record)
    seed_text = f" · seed {seed}" if seed is not None else ""
    return f"{record.name}{seed_text} · {short_id(record.id)}"


def record_row(record: RunRecord) -> dict[str, Any]:
    """One table row for ``record``: short id, name, seed, status, progress, final loss, the
    run's own metrics as ``eval.<metric>`` and NFE counts as ``nfe.<key>``, then the flattened
    resolved spec (``sde.type``, ``training.steps``, …).

    Spec keys in a result namespace (``eval.metrics``, ``eval.n_samples``) become
    ``spec.eval.metrics``, ``spec.eval.n_samples``. Metrics that ``diffsde sample`` added under a
    label (``label.metric``) are left out: they belong to the Compare view.
    """
    spec: dict[str, Any] = {}
    _flatten(record.spec if isinstance(record.spec, Mapping) else {}, "", spec)
    row: dict[str, Any] = {
        (SPEC_PREFIX + key if key.startswith(RESULT_PREFIXES) else key): value
        for key, value in spec.items()
    }
    steps = _last(record.metrics.get("step"))
    row.update(
        id=record.id,
        short_id=short_id(record.id),
        name=record.name,
        label=run_label(record),
        seed=_seed(record),
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


def result_columns(columns: Iterable[str]) -> list[str]:
    """The result columns among ``columns``: ``eval.*`` then ``nfe.*``, each sorted."""
    columns = [str(c) for c in columns]
    return [c for p in RESULT_PREFIXES for c in sorted(c for c in columns if c.startswith(p))]


def table(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame, oldest first: `IDENTITY_COLUMNS`, the results, the key spec
    columns, ``created``, the other spec keys, and ``id``, ``label``, ``path``, ``message``."""
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        return pd.DataFrame(columns=["id", *LEADING_COLUMNS, "created"])
    frame = frame.sort_values(["created", "id"], ignore_index=True)
    first = [c for c in IDENTITY_COLUMNS if c in frame.columns] + result_columns(frame.columns)
    first += [c for c in KEY_SPEC_COLUMNS if c in frame.columns] + ["created"]
    last = [c for c in ("id", "label", "path", "message") if c in frame.columns]
    rest = sorted(c for c in frame.columns if c not in first and c not in last)
    return frame[first + rest + last]


def default_columns(frame: pd.DataFrame) -> list[str]:
    """The columns the runs table shows unless asked for every spec key."""
    wanted = [*IDENTITY_COLUMNS, *result_columns(frame.columns), *KEY_SPEC_COLUMNS, "created"]
    return [c for c in wanted if c in frame.columns]


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


MAX_FILTER_LENGTH = 2000  # characters
MAX_FILTER_DEPTH = 40  # nesting of the parsed expression


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


def compile_filter(expression: str, columns: Iterable[str]) -> Callable[[pd.DataFrame], Any]:
    """Check ``expression`` against the whitelist and the ``columns``; return frame -> mask.

    Raises `FilterError` with the offending column offset and an example for anything else,
    including a filter longer than `MAX_FILTER_LENGTH` or nested deeper than
    `MAX_FILTER_DEPTH`.
    """
    if not isinstance(expression, str) or not expression.strip():
        raise FilterError(f"the filter is empty ({_EXAMPLE})")
    if len(expression) > MAX_FILTER_LENGTH:
        raise FilterError(
            f"the filter is {len(expression)} characters long; at most {MAX_FILTER_LENGTH} "
            f"are allowed ({_EXAMPLE})"
        )
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as err:
        raise FilterError(f"syntax error: {err.msg} (at column {err.offset}; {_EXAMPLE})") from None
    except (RecursionError, MemoryError, ValueError) as err:
        raise FilterError(
            f"the filter cannot be parsed ({type(err).__name__}; {_EXAMPLE})"
        ) from None
    if _depth(tree) > MAX_FILTER_DEPTH:
        raise FilterError(
            f"the filter is nested more than {MAX_FILTER_DEPTH} levels deep: write it flatter "
            f"({_EXAMPLE})"
        )
    return _FilterCompiler(columns).compile(tree.body)


def filter_table(frame: pd.DataFrame, expression: str) -> pd.DataFrame:
    """Rows of ``frame`` where ``expression`` holds; an empty or blank filter keeps every row.

    Comparisons with a missing value (a run without that metric) are false. Every way a filter
    can fail is a `FilterError` saying what is wrong: nothing else reaches the page.
    """
    if not expression or not expression.strip():
        return frame
    try:
        mask = _boolean(compile_filter(expression, frame.columns)(frame))
    except FilterError:
        raise
    except (TypeError, ValueError, ArithmeticError, RecursionError, KeyError) as err:
        raise FilterError(
            f"cannot evaluate the filter: {type(err).__name__}: {err} ({_EXAMPLE})"
        ) from None
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


def metric_directions(registry: Registry) -> dict[str, str]:
    """Which value is best, by reported metric name (``sliced_w2``: ``min``, ``mmd``: ``zero``,
    …), as each registered metric config declares in its ``directions``; ``loss``: ``min``."""
    out = {"loss": "min"}
    for config in registry.configs("metric"):
        out.update(config.directions)
    return out


def metric_direction(column: str, directions: Mapping[str, str]) -> str | None:
    """The direction of a results column: ``loss``, ``eval.<metric>`` or
    ``eval.<label>.<metric>`` (a `diffsde sample` set's); None for anything else."""
    if column == "loss":
        return directions.get("loss")
    if not column.startswith("eval."):
        return None
    return directions.get(column.rsplit(".", 1)[-1])


def final_metrics(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per run (indexed by id): label, name, seed, steps, wall time, final loss, every
    ``eval.*`` metric (labelled ``diffsde sample`` metrics included) and every ``nfe.*`` count."""
    rows = []
    for record in records:
        steps = _last(record.metrics.get("step"))
        row: dict[str, Any] = {
            "id": record.id,
            "run": run_label(record),
            "name": record.name,
            "seed": _seed(record),
            "steps": int(steps) if steps is not None else 0,
            "wall_time": _last(record.metrics.get("wall_time")),
            "loss": _last(record.metrics.get("loss")),
        }
        row.update({f"eval.{k}": v for k, v in sorted(record.eval.items())})
        row.update({f"nfe.{k}": v for k, v in sorted(record.nfe.items())})
        rows.append(row)
    leading = ["run", "name", "seed", "steps", "wall_time", "loss"]
    if not rows:
        return pd.DataFrame(columns=leading).rename_axis("id")
    frame = pd.DataFrame(rows).set_index("id")
    return frame[[*leading, *result_columns(frame.columns)]]


def best_per_column(frame: pd.DataFrame, directions: Mapping[str, str]) -> pd.DataFrame:
    """A boolean frame shaped like ``frame``: True at the best value of each results column
    that has a direction (`metric_direction`): the lowest for ``min``, the highest for
    ``max``, the nearest 0 for ``zero``. Ties are all marked; other columns, columns with no
    values and columns whose values are all equal (nothing to choose) are never marked."""
    mask = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    for column in frame.columns:
        direction = metric_direction(str(column), directions)
        if direction is None:
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        present = values.dropna()
        if len(present) > 1 and present.nunique() == 1:
            continue  # every run has the same value: nothing to choose
        if direction == "zero":
            values = values.abs()
        elif direction == "max":
            values = -values
        elif direction != "min":
            continue  # a direction this dashboard does not know: rank nothing
        if values.notna().any():
            mask[column] = values == values.min()
    return mask


def direction_note(columns: Iterable[str], directions: Mapping[str, str]) -> str:
    """One line saying how each ranked column was read (``mmd: nearest 0``, …)."""
    words = {"min": "lowest", "max": "highest", "zero": "nearest 0"}
    parts = []
    for column in columns:
        direction = metric_direction(str(column), directions)
        if direction in words:
            parts.append(f"`{column}`: {words[direction]}")
    return "Best highlighted — " + ", ".join(parts) if parts else "No metric declares a best."


def is_integer_column(column: str) -> bool:
    return column in INTEGER_COLUMNS or column.startswith("nfe.")


def format_number(value: Any, *, integer: bool = False) -> str:
    """A cell as text: ``—`` for missing, integers without decimals, others to 4 significant
    digits (``1500``, ``0.01234``, ``1.2e-05``)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "—" if value is None else str(value)
    if not math.isfinite(number):
        return "—" if math.isnan(number) else str(number)
    whole = isinstance(value, int | np.integer) and not isinstance(value, bool)
    if integer or whole:
        return str(int(round(number)))
    return f"{number:.4g}"


def mean_std_text(mean: float, std: float, n: int, *, integer: bool) -> str:
    """``0.1234 ± 0.005``; just the value when every run has the same one (no ``± 0``)."""
    if n == 0 or not math.isfinite(float(mean)):
        return "—"
    value = format_number(mean, integer=integer and float(mean).is_integer())
    if n < 2:
        return value
    if not std or not math.isfinite(float(std)):
        return f"{value} (all {n} equal)"
    return f"{value} ± {format_number(std)}"


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
    that logged both, smoothed with `smooth`; ``run`` is `run_label`."""
    frames = []
    for record in records:
        xs, ys = record.metrics.get(x), record.metrics.get(metric)
        if xs is None or ys is None or not len(ys):
            continue
        length = min(len(xs), len(ys))
        frames.append(
            pd.DataFrame(
                {
                    "run": run_label(record),
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
    metric (`final_metrics` columns but the labels and the seed); one row per metric, with the
    ``mean ± std`` text as the page shows it (integers as integers, no ``± 0``)."""
    frame = final_metrics(group).drop(columns=["run", "name", "seed"])
    frame = frame.apply(pd.to_numeric, errors="coerce")
    summary = pd.DataFrame({"mean": frame.mean(), "std": frame.std(ddof=1), "n": frame.count()})
    summary["mean ± std"] = [
        mean_std_text(
            row["mean"], row["std"], int(row["n"]), integer=is_integer_column(str(metric))
        )
        for metric, row in summary.iterrows()
    ]
    return summary.rename_axis("metric")


# -- samples ---------------------------------------------------------------------------------

REFERENCE = "reference"


def sample_sets(record: RunRecord) -> list[str]:
    """The run's stored sample sets that can be shown: 2-D arrays (points × dim) other than the
    held-out reference; ``samples`` first, then labelled `diffsde sample` sets by name."""
    shapes = {k: record.samples.shape(k) for k in record.samples}  # stored shapes: no array read
    names = [k for k, shape in shapes.items() if k != REFERENCE and len(shape) == 2 and shape[0]]
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


def image_tile(
    samples: Any,
    *,
    count: int = 16,
    columns: int = 4,
    gap: int = 1,
    bounds: tuple[float, float] | None = None,
) -> Any:
    """The first ``count`` samples (each a flattened square image) as one grid in [0, 1], with a
    ``gap`` of pixels between images; scaled by ``bounds`` (low, high), by default the min and
    max of the shown images (pass the reference's to show samples and reference alike)."""
    images = np.asarray(samples, dtype=float)[:count]
    n, dim = images.shape
    side = int(round(dim**0.5))
    if side * side != dim:
        raise ValueError(f"dimension {dim} is not a square image")
    low, high = bounds or (float(images.min()), float(images.max()))
    images = np.clip(images, low, high)
    images = (images - low) / (high - low) if high > low else np.zeros_like(images)
    rows = -(-n // columns)
    step = side + gap
    tile = np.ones((rows * step - gap, columns * step - gap))
    for i, image in enumerate(images.reshape(n, side, side)):
        r, c = divmod(i, columns)
        tile[r * step : r * step + side, c * step : c * step + side] = image
    return tile


def upscale(tile: Any, factor: int) -> Any:
    """``tile`` with each pixel repeated ``factor`` × ``factor`` times (nearest neighbour): an
    8×8 digit stays crisp when shown large, where the browser's resampling would blur it."""
    if factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    return np.kron(np.asarray(tile, dtype=float), np.ones((factor, factor)))


def image_bounds(array: Any) -> tuple[float, float]:
    """(min, max) of ``array``: the grey scale both image grids of one run share."""
    values = np.asarray(array, dtype=float)
    return float(values.min()), float(values.max())


def square_domains(points: pd.DataFrame, margin: float = 0.05) -> tuple[list, list]:
    """The x and y domains of a 2-D scatter: both as long as the larger extent of the points
    (reference and samples), plus a ``margin``, each centred on its data. Drawn on a square
    chart, one unit is as long on x as on y."""
    values = points[["x", "y"]].to_numpy(dtype=float) if len(points) else np.zeros((0, 2))
    values = values[np.isfinite(values).all(axis=1)]
    if not len(values):
        return [-1.0, 1.0], [-1.0, 1.0]
    low, high = values.min(axis=0), values.max(axis=0)
    centre = (low + high) / 2
    half = max(float((high - low).max()) / 2, 1e-9) * (1 + margin)
    return [float(centre[0] - half), float(centre[0] + half)], [
        float(centre[1] - half),
        float(centre[1] + half),
    ]
