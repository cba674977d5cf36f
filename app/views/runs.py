"""Runs: every run in the store as a table (who, how it ended and its results first; the spec
after); filter, sort, select runs, and act on the selection: Compare, Clone, Monitor.

The selection and the filter live in the URL (``?runs=ID&runs=ID&filter=…``, widgets bound to
the query parameters) and in the session, so they survive a refresh, a shared link and a visit
to another page.
"""

import hashlib
import json

import streamlit as st

from app import state
from app.filter import HELP, FilterError, filter_table
from app.table import default_columns, runs_table
from app.ui import VIEWS, keep_selection, plain, run_store, seed_selection, show_selection
from diffsde import jobs
from diffsde.runs import RunReadError, rename_run

runs_dir, records = run_store("Runs")
if (done := st.session_state.pop(state.RUNS_DONE, None)) is not None:
    getattr(st, done[0])(done[1])
frame = runs_table(records)
labels = dict(zip(frame["id"], frame["label"], strict=True))
paths = dict(zip(frame["id"], frame["path"], strict=True))

expression = st.text_input(
    "Filter",
    key=state.FILTER,
    bind="query-params",
    persist_state="session",
    placeholder='sde.type == "vp" and eval.sliced_w2 < 0.1',
    help=HELP,
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
st.session_state[state.RUNS_SHOWN] = list(shown["id"])
seed_selection(labels)
selected = list(st.session_state.get(state.SELECTION, []))
# The table's key names the rows it shows and the selection: after a sort, a filter or a pick
# elsewhere it is a new table whose ticks come from the selection, never rows ticked at
# positions that now hold other runs.
_digest = hashlib.sha1(json.dumps([list(shown["id"]), selected]).encode()).hexdigest()[:12]
st.session_state[state.RUNS_TABLE_NOW] = table_key = f"{state.RUNS_TABLE}_{_digest}"


def _table_selected() -> None:
    """Rows ticked in the table become the selection (in the table's order); selected runs the
    filter hides stay selected."""
    rows = st.session_state[st.session_state[state.RUNS_TABLE_NOW]]["selection"]["rows"]
    ids = st.session_state.get(state.RUNS_SHOWN, [])
    hidden = [i for i in st.session_state.get(state.KEPT_SELECTION, []) if i not in ids]
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
    key=state.SELECTION,
)
show_selection()
selected = list(st.session_state.get(state.SELECTION, []))
compare, clone, monitor, _ = st.columns([1, 1, 1, 3])
if compare.button("Compare selected", key="runs_compare", disabled=not selected):
    st.switch_page(VIEWS / "compare.py", query_params={state.SELECTION: selected})
one = selected[0] if len(selected) == 1 else None
if clone.button(
    "Clone",
    key="runs_clone",
    disabled=one is None,
    help="Open New run with this run's resolved spec (select exactly one run).",
):
    st.session_state[state.CLONE] = one
    st.switch_page(VIEWS / "new_run.py", query_params={state.FROM_RUN: one})
if monitor.button(
    "Monitor", key="runs_monitor", disabled=one is None, help="Watch this run (select one)."
):
    st.session_state[state.MONITOR_RUN] = paths[one]
    st.switch_page(VIEWS / "monitor.py")

st.subheader("Rename or delete")
target = st.selectbox(
    "Run", options=list(labels), format_func=labels.__getitem__, key="runs_manage_target"
)
name_column, rename_column, delete_column = st.columns([3, 1, 1], vertical_alignment="bottom")
new_name = name_column.text_input("New name", key="runs_new_name")


def _ask(action: str) -> None:
    """Nothing changes before the user confirms: remember what was asked."""
    st.session_state[state.RUNS_PENDING] = (action, target, new_name)


def _confirm() -> None:
    action, run_id, name = st.session_state.pop(state.RUNS_PENDING)
    try:
        if action == "delete":
            jobs.discard(paths[run_id], runs_dir)
            keep_selection([i for i in st.session_state.get(state.SELECTION, []) if i != run_id])
            st.session_state[state.RUNS_DONE] = ("success", plain(f"deleted {labels[run_id]}"))
        else:
            rename_run(paths[run_id], name)  # the id stays: the selection keeps the run
            done = f"renamed {labels[run_id]} to {name.strip()}"
            st.session_state[state.RUNS_DONE] = ("success", plain(done))
    except (RunReadError, ValueError, OSError) as err:
        st.session_state[state.RUNS_DONE] = (
            "error",
            plain(f"could not {action} {labels[run_id]}: {err}"),
        )


rename_column.button(
    "Rename", key="runs_rename", on_click=_ask, args=("rename",), disabled=not new_name.strip()
)
delete_column.button("Delete", key="runs_delete", on_click=_ask, args=("delete",))
pending = st.session_state.get(state.RUNS_PENDING)
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
    no.button(
        "Cancel", key="runs_cancel", on_click=st.session_state.pop, args=(state.RUNS_PENDING,)
    )
