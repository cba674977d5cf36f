"""Compare's data: curves, final metrics ranked as each metric declares, seed aggregates and
the spec diff of selected runs. Pure functions, no Streamlit."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from app.table import flat_spec, is_integer_column, result_columns, row, summary
from diffsde import Registry
from diffsde.runs import RunRecord, RunSummary

METRICS = ("loss", "lr", "grad_norm")  # what every score-matching run logs, shown first
X_AXES = ("step", "wall_time")
SEED_KEY = "seed"
# Spec keys that label a run rather than configure it: ignored when grouping runs over seeds.
_LABEL_KEYS = ("name", SEED_KEY)


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


def final_metrics(runs: Iterable[RunRecord | RunSummary]) -> pd.DataFrame:
    """One row per run (indexed by id): label, name, seed, steps, wall time, final loss, every
    ``eval.*`` metric (labelled ``diffsde sample`` metrics included) and every ``nfe.*`` count:
    the runs table's rows (`app.table.row`), these columns only."""
    rows = [row(r, labelled=True) for r in runs]
    leading = ["run", "name", "seed", "steps", "wall_time", "loss"]
    if not rows:
        return pd.DataFrame(columns=leading).rename_axis("id")
    frame = pd.DataFrame(rows).rename(columns={"label": "run"}).set_index("id")
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


def series_names(runs: Iterable[RunRecord | RunSummary]) -> list[str]:
    """Every per-step series the runs logged but the x axes: `METRICS` first (those present),
    then a training method's own (``variance``, …) by name."""
    logged: set[str] = set()
    for run in runs:
        run = summary(run)
        if run.record is not None:
            logged.update(run.record.metrics)
    logged -= set(X_AXES)
    return [m for m in METRICS if m in logged] + sorted(logged - set(METRICS))


def curves(
    runs: Iterable[RunRecord | RunSummary],
    series: Iterable[str] | None = None,
    x: str = "step",
    *,
    alpha: float = 0.0,
) -> pd.DataFrame:
    """Long frame (``run``, ``x``, ``series``, ``value``) of each of ``series`` against ``x``, for
    each run that logged both, smoothed with `smooth`; ``run`` is the run's label. Compare
    overlays one series of several runs, the Monitor draws each series of one run (by default
    every one, `series_names`)."""
    runs = list(runs)
    series = series_names(runs) if series is None else list(series)
    frames = []
    for run in runs:
        run = summary(run)
        metrics = run.record.metrics if run.record is not None else {}
        xs = metrics.get(x)
        for name in series:
            ys = metrics.get(name)
            if xs is None or ys is None or not len(ys):
                continue
            length = min(len(xs), len(ys))
            values = smooth(ys[:length], alpha)
            frames.append(
                pd.DataFrame({"run": run.label, x: xs[:length], "series": name, "value": values})
            )
    if not frames:
        return pd.DataFrame(columns=["run", x, "series", "value"])
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
