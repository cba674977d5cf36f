"""Runs: every run in the store as a table; filter, sort, and pick runs to compare."""

import streamlit as st

from app.data import (
    LEADING_COLUMNS,
    FilterError,
    filter_table,
    load_row,
    table,
)
from app.ui import run_store
from diffsde import jobs
from diffsde.runs import RunReadError, rename_run

COMPARE_KEY = "compare_runs"
PENDING_KEY = "runs_pending_action"  # a rename or delete waiting for confirmation
DONE_KEY = "runs_action_result"  # what the last confirmed one did, shown once


@st.cache_data(show_spinner=False)
def _row(path: str, mtime: float) -> dict:
    """One run's row, cached on (path, mtime): a run being written is re-read when it changes."""
    del mtime
    return load_row(path)


runs_dir, stamps = run_store("Runs")
if (done := st.session_state.pop(DONE_KEY, None)) is not None:
    getattr(st, done[0])(done[1])

rows, problems = [], []
for path, mtime in stamps:
    try:
        rows.append(_row(path, mtime))
    except RunReadError as err:
        problems.append(f"skipped {path}: {err}")
for problem in problems:
    st.warning(problem)
frame = table(rows)
if frame.empty:
    st.info(f"no runs in {runs_dir}: start one with `diffsde run SPEC --runs-dir {runs_dir}`")
    st.stop()

expression = st.text_input(
    "Filter",
    key="runs_filter",
    placeholder='sde.type == "vp" and eval.sliced_w2 < 0.1',
    help="Comparisons over columns (dotted spec keys, eval.<metric>) joined by and/or/not.",
)
try:
    shown = filter_table(frame, expression)
except FilterError as err:
    st.error(f"bad filter: {err}")
    shown = frame

left, right = st.columns([3, 1])
sort_by = left.selectbox("Sort by", list(shown.columns), index=list(shown.columns).index("created"))
descending = right.toggle("Descending", value=True)
shown = shown.sort_values(sort_by, ascending=not descending, na_position="last")

metric_columns = [c for c in shown.columns if c.startswith("eval.")]
visible = [c for c in ("id", *LEADING_COLUMNS) if c in shown.columns] + metric_columns
visible.append("created")
all_columns = st.toggle("Show every spec key", value=False)
st.dataframe(
    shown if all_columns else shown[visible],
    hide_index=True,
    column_config={"wall_time": st.column_config.NumberColumn("wall time (s)", format="%.1f")},
)
st.caption(f"{len(shown)} of {len(frame)} runs")

labels = {row.id: f"{row.name} ({row.id})" for row in frame.itertuples()}
WIDGET_KEY = "runs_compare_widget"  # widget state is dropped off-page; COMPARE_KEY persists
if WIDGET_KEY not in st.session_state:
    st.session_state[WIDGET_KEY] = [i for i in st.session_state.get(COMPARE_KEY, []) if i in labels]


def _keep_selection() -> None:
    st.session_state[COMPARE_KEY] = list(st.session_state[WIDGET_KEY])


st.multiselect(
    "Runs to compare",
    options=list(labels),
    format_func=labels.__getitem__,
    key=WIDGET_KEY,
    on_change=_keep_selection,
)

st.subheader("Rename or delete")
paths = dict(zip(frame["id"], frame["path"], strict=True))
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
            st.session_state[DONE_KEY] = ("success", f"deleted {labels[run_id]}")
        else:
            rename_run(paths[run_id], name)
            st.session_state[DONE_KEY] = ("success", f"renamed {labels[run_id]} to {name.strip()}")
    except (RunReadError, ValueError, OSError) as err:
        st.session_state[DONE_KEY] = ("error", f"could not {action} {labels[run_id]}: {err}")


rename_column.button(
    "Rename", key="runs_rename", on_click=_ask, args=("rename",), disabled=not new_name.strip()
)
delete_column.button("Delete", key="runs_delete", on_click=_ask, args=("delete",))
pending = st.session_state.get(PENDING_KEY)
if pending is not None and pending[1] in labels:
    action, run_id, name = pending
    st.warning(
        f"Delete {labels[run_id]}? Its run.h5, checkpoint and log are removed for good."
        if action == "delete"
        else f"Rename {labels[run_id]} to {name.strip()!r}?"
    )
    yes, no, _ = st.columns([1, 1, 4])
    yes.button("Confirm", key="runs_confirm", type="primary", on_click=_confirm)
    no.button("Cancel", key="runs_cancel", on_click=st.session_state.pop, args=(PENDING_KEY,))
