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
from diffsde.runs import RunReadError

COMPARE_KEY = "compare_runs"


@st.cache_data(show_spinner=False)
def _row(path: str, mtime: float) -> dict:
    """One run's row, cached on (path, mtime): a run being written is re-read when it changes."""
    del mtime
    return load_row(path)


runs_dir, stamps = run_store("Runs")

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
