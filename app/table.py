"""The runs table: one row per run, built from its `diffsde.runs.RunSummary`. Pure functions.

Who the run is and how it ended come first, then its results (``eval.<metric>``,
``nfe.<sampler>``), then what it was (the flattened resolved spec). The same rows feed the
Runs page, Compare's final metrics and the seed aggregates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from diffsde.runs import RunRecord, RunSummary, summarise

# Result namespaces: a spec key under one of them (the spec's `eval.metrics`, `eval.n_samples`)
# is shown as `spec.<key>` so that `eval.<metric>` is always a result.
RESULT_PREFIXES = ("eval.", "nfe.")
SPEC_PREFIX = "spec."
# The runs table: who the run is and how it ended, then its results, then what it was.
IDENTITY_COLUMNS = ("short_id", "name", "seed", "status", "steps", "loss", "wall_time")
KEY_SPEC_COLUMNS = ("sde.type", "objective.type", "sampler.type", "data.type")
LEADING_COLUMNS = (*IDENTITY_COLUMNS, *KEY_SPEC_COLUMNS)  # the order of the default view
INTEGER_COLUMNS = ("steps", "seed")  # and every nfe.* count
TRAILING_COLUMNS = ("id", "label", "path", "message")


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list | tuple):
        out[prefix] = str(list(value))  # lists (metrics, save_times) stay one readable cell
    else:
        out[prefix] = value


def flat_spec(record: RunRecord) -> dict[str, Any]:
    """``record``'s resolved spec flattened to dotted keys (lists kept as one string)."""
    out: dict[str, Any] = {}
    _flatten(record.spec, "", out)
    return out


def summary(run: RunRecord | RunSummary) -> RunSummary:
    """``run``'s `RunSummary` (`diffsde.runs.summarise` of a record; a summary as it is)."""
    return run if isinstance(run, RunSummary) else summarise(run)


def row(run: RunRecord | RunSummary, *, labelled: bool = False) -> dict[str, Any]:
    """One table row: who (id, short id, name, label, seed), how it ended (status, steps, final
    loss, wall time), the results as ``eval.<metric>`` and ``nfe.<key>`` (with ``labelled``, the
    metrics of `diffsde sample` sets too, ``eval.<label>.<metric>``), and the flattened resolved
    spec (``sde.type``, ``training.steps``, …; the spec's own ``eval.metrics`` and
    ``eval.n_samples`` as ``spec.eval.metrics``, ``spec.eval.n_samples``)."""
    run = summary(run)
    spec = flat_spec(run.record) if run.record is not None else {}
    out: dict[str, Any] = {
        (SPEC_PREFIX + key if key.startswith(RESULT_PREFIXES) else key): value
        for key, value in spec.items()
    }
    out.update(
        id=run.id,
        short_id=run.short_id,
        name=run.name,
        label=run.label,
        seed=run.seed,
        status=run.state,
        message=run.message,
        steps=run.step,
        wall_time=run.elapsed,
        loss=run.loss,
        created=run.created,
        path=str(run.path),
    )
    if run.parents:  # the column exists only where some run started from another
        out["parents"] = run.parents
    results = {**run.eval, **run.sample_eval} if labelled else run.eval
    out.update({f"eval.{key}": value for key, value in sorted(results.items())})
    out.update({f"nfe.{key}": value for key, value in sorted(run.nfe.items())})
    return out


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
    first = [c for c in (*IDENTITY_COLUMNS, "parents") if c in frame.columns]
    first += result_columns(frame.columns)
    first += [c for c in KEY_SPEC_COLUMNS if c in frame.columns] + ["created"]
    last = [c for c in TRAILING_COLUMNS if c in frame.columns]
    rest = sorted(c for c in frame.columns if c not in first and c not in last)
    return frame[first + rest + last]


def runs_table(runs: Iterable[RunRecord | RunSummary]) -> pd.DataFrame:
    """The runs table of ``runs`` (`row` each, `table` order)."""
    return table(row(r) for r in runs)


def default_columns(frame: pd.DataFrame) -> list[str]:
    """The columns the runs table shows unless asked for every spec key."""
    wanted = [*IDENTITY_COLUMNS, "parents", *result_columns(frame.columns)]
    wanted += [*KEY_SPEC_COLUMNS, "created"]
    return [c for c in wanted if c in frame.columns]


def is_integer_column(column: str) -> bool:
    return column in INTEGER_COLUMNS or column.startswith("nfe.")
