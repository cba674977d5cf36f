"""Runs: every run in the store as a table (who, how it ended and its results first; the spec
after); filter, sort, select runs, and act on the selection: Compare, Clone, Monitor.

The selection and the filter live in the URL (``?runs=ID&runs=ID&filter=…``, widgets bound to
the query parameters) and in the session, so they survive a refresh, a shared link and a visit
to another page.
"""

import hashlib
import json
import pathlib

import streamlit as st

from app.data import (
    FilterError,
    default_columns,
    filter_table,
    record_row,
    table,
)
from app.ui import (
    KEPT_KEY,
    SELECTION_KEY,
    keep_selection,
    plain,
    run_store,
    seed_selection,
    show_selection,
)
from diffsde import jobs
from diffsde.runs import RunReadError, rename_run

VIEWS = pathlib.Path(__file__).resolve().parent
FILTER_KEY = "filter"  # also the query parameter
TABLE_KEY = "runs_table"  # the data frame's key: this prefix and a digest of what it shows
SHOWN_KEY = "runs_table_ids"  # the ids of the table's rows, in the order shown
PENDING_KEY = "runs_pending_action"  # a rename or delete waiting for confirmation
DONE_KEY = "runs_action_result"  # what the last confirmed one did, shown once
MONITOR_KEY = "monitor_run"  # the Monitor page's run (its SELECTED_KEY)
CLONE_KEY = "new_run_clone"  # the New run page loads this run's spec (its CLONE_KEY)

runs_dir, records, problems = run_store("Runs")
if (done := st.session_state.pop(DONE_KEY, None)) is not None:
    getattr(st, done[0])(done[1])
for problem in problems:
    st.warning(plain(f"skipped {problem.path}: {problem.reason}"))
frame = table(record_row(r) for r in records)
if frame.empty:
    st.info(f"no runs in {runs_dir}: start one with `diffsde run SPEC --runs-dir {runs_dir}`")
    st.stop()
labels = dict(zip(frame["id"], frame["label"], strict=True))
paths = dict(zip(frame["id"], frame["path"], strict=True))

expression = st.text_input(
    "Filter",
    key=FILTER_KEY,
    bind="query-params",
    persist_state="session",
    placeholder='sde.type == "vp" and eval.sliced_w2 < 0.1',
    help="Comparisons over columns (dotted spec keys, eval.<metric>, spec.eval.<key> for the "
    "spec's own eval section) joined by and/or/not; in/not in a list of literals.",
)
try:
    shown = filter_table(frame, expression)
except FilterError as err:
    st.error(f"bad filter — no runs shown: {err}")
    shown = frame.iloc[0:0]

left, middle, right = st.columns([3, 1, 1], vertical_alignment="bottom")
sort_by = left.selectbox(
    "Sort by", list(frame.columns), index=list(frame.columns).index("created"), key="runs_sort"
)
descending = middle.toggle("Descending", value=True, key="runs_descending")
all_columns = right.toggle("Every spec key", value=False, key="runs_all_columns")
try:
    shown = shown.sort_values(sort_by, ascending=not descending, na_position="last", kind="stable")
except TypeError:  # a column mixing numbers and text (a plugin's field): sort it as text
    shown = shown.sort_values(
        sort_by,
        ascending=not descending,
        na_position="last",
        kind="stable",
        key=lambda c: c.astype(str),
    )
visible = list(shown.columns) if all_columns else default_columns(shown)
st.session_state[SHOWN_KEY] = list(shown["id"])
seed_selection(labels)
selected = list(st.session_state.get(SELECTION_KEY, []))
# The table's key names the rows it shows and the selection: after a sort, a filter or a pick
# elsewhere it is a new table whose ticks come from the selection, never rows ticked at
# positions that now hold other runs.
_digest = hashlib.sha1(json.dumps([list(shown["id"]), selected]).encode()).hexdigest()[:12]
st.session_state[f"{TABLE_KEY}_now"] = table_key = f"{TABLE_KEY}_{_digest}"


def _table_selected() -> None:
    """Rows ticked in the table become the selection (in the table's order); selected runs the
    filter hides stay selected."""
    rows = st.session_state[st.session_state[f"{TABLE_KEY}_now"]]["selection"]["rows"]
    ids = st.session_state.get(SHOWN_KEY, [])
    hidden = [i for i in st.session_state.get(KEPT_KEY, []) if i not in ids]
    keep_selection([ids[r] for r in rows if r < len(ids)] + hidden)


number = st.column_config.NumberColumn
st.dataframe(
    shown[visible],
    hide_index=True,
    key=table_key,
    on_select=_table_selected,
    selection_mode="multi-row",
    selection_default={
        "selection": {"rows": [i for i, id in enumerate(shown["id"]) if id in selected]}
    },
    column_config={
        "short_id": st.column_config.TextColumn("id", pinned=True, help="the run id's tail"),
        "name": st.column_config.TextColumn("name", pinned=True),
        "seed": number("seed", format="%d"),
        "steps": number("steps", format="%d"),
        "loss": number("loss", format="%.4g"),
        "wall_time": number("wall time (s)", format="%.1f"),
        **{c: number(c, format="%.4g") for c in visible if c.startswith("eval.")},
        **{c: number(c, format="%d") for c in visible if c.startswith("nfe.")},
    },
)
st.caption(
    f"{len(shown)} of {len(frame)} runs. Results (`eval.*`, `nfe.*`) come first, then the spec; "
    "tick rows to select them."
)

# The selection: ticked in the table or picked here; kept in the URL as ?runs=…
st.multiselect(
    "Selected runs",
    options=list(labels),
    format_func=labels.__getitem__,
    key=SELECTION_KEY,
)
show_selection()
selected = list(st.session_state.get(SELECTION_KEY, []))
compare, clone, monitor, _ = st.columns([1, 1, 1, 3])
if compare.button("Compare selected", key="runs_compare", disabled=not selected):
    st.switch_page(VIEWS / "compare.py", query_params={SELECTION_KEY: selected})
one = selected[0] if len(selected) == 1 else None
if clone.button(
    "Clone",
    key="runs_clone",
    disabled=one is None,
    help="Open New run with this run's resolved spec (select exactly one run).",
):
    st.session_state[CLONE_KEY] = one
    st.switch_page(VIEWS / "new_run.py", query_params={"from": one})
if monitor.button(
    "Monitor", key="runs_monitor", disabled=one is None, help="Watch this run (select one)."
):
    st.session_state[MONITOR_KEY] = paths[one]
    st.switch_page(VIEWS / "monitor.py")

st.subheader("Rename or delete")
target = st.selectbox(
    "Run", options=list(labels), format_func=labels.__getitem__, key="runs_manage_target"
)
name_column, rename_column, delete_column = st.columns([3, 1, 1], vertical_alignment="bottom")
new_name = name_column.text_input("New name", key="runs_new_name")


def _ask(action: str) -> None:
    """Nothing changes before the user confirms: remember what was asked."""
    st.session_state[PENDING_KEY] = (action, target, new_name)


def _confirm() -> None:
    action, run_id, name = st.session_state.pop(PENDING_KEY)
    try:
        if action == "delete":
            jobs.discard(paths[run_id], runs_dir)
            keep_selection([i for i in st.session_state.get(SELECTION_KEY, []) if i != run_id])
            st.session_state[DONE_KEY] = ("success", plain(f"deleted {labels[run_id]}"))
        else:
            rename_run(paths[run_id], name)  # the id stays: the selection keeps the run
            done = f"renamed {labels[run_id]} to {name.strip()}"
            st.session_state[DONE_KEY] = ("success", plain(done))
    except (RunReadError, ValueError, OSError) as err:
        st.session_state[DONE_KEY] = ("error", plain(f"could not {action} {labels[run_id]}: {err}"))


rename_column.button(
    "Rename", key="runs_rename", on_click=_ask, args=("rename",), disabled=not new_name.strip()
)
delete_column.button("Delete", key="runs_delete", on_click=_ask, args=("delete",))
pending = st.session_state.get(PENDING_KEY)
if pending is not None and pending[1] in labels:
    action, run_id, name = pending
    st.warning(
        plain(
            f"Delete {labels[run_id]}? Its files (metrics, results, checkpoint, log) are removed "
            "for good."
            if action == "delete"
            else f"Rename {labels[run_id]} to {name.strip()!r}?"
        )
    )
    yes, no, _ = st.columns([1, 1, 4])
    yes.button("Confirm", key="runs_confirm", type="primary", on_click=_confirm)
    no.button("Cancel", key="runs_cancel", on_click=st.session_state.pop, args=(PENDING_KEY,))
