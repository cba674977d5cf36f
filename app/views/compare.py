"""Compare: curves, final metrics, spec diff, samples and seed aggregates of selected runs."""

import altair as alt
import streamlit as st

from app.data import (
    METRICS,
    REFERENCE,
    X_AXES,
    best_per_column,
    curves,
    final_metrics,
    image_tile,
    marginal_frame,
    sample_sets,
    sample_view,
    scatter_frame,
    seed_groups,
    seed_summary,
    spec_diff,
)
from app.ui import run_store
from diffsde.runs import RunReadError, open_run

COMPARE_KEY = "compare_runs"  # the selection the Runs page keeps (run ids)
WIDGET_KEY = "compare_widget"
QUERY_KEY = "runs"  # /compare?runs=ID,ID


@st.cache_data(show_spinner=False, max_entries=64)
def _record(path: str, mtime: float):
    """One run, cached on (path, mtime): a run being written is re-read when it changes."""
    del mtime
    return open_run(path)


runs_dir, stamps = run_store("Compare")

records = {}
for path, mtime in stamps:
    try:
        record = _record(path, mtime)
    except RunReadError as err:
        st.warning(f"skipped {path}: {err}")
        continue
    records[record.id] = record
if not records:
    st.info(f"no runs in {runs_dir}: start one with `diffsde run SPEC --runs-dir {runs_dir}`")
    st.stop()

if WIDGET_KEY not in st.session_state:
    # `/compare?runs=ID,ID` opens a comparison directly (a link, a browser test); otherwise the
    # Runs page's selection.
    query = st.query_params.get(QUERY_KEY)
    kept = query.split(",") if query else st.session_state.get(COMPARE_KEY, [])
    st.session_state[WIDGET_KEY] = [i for i in kept if i in records]


def _keep_selection() -> None:
    st.session_state[COMPARE_KEY] = list(st.session_state[WIDGET_KEY])


chosen = st.multiselect(
    "Runs",
    options=list(records),
    format_func=lambda i: f"{records[i].name} ({i})",
    key=WIDGET_KEY,
    on_change=_keep_selection,
    help="Also picked on the Runs page.",
)
selected = [records[i] for i in chosen]
if not selected:
    st.info("pick runs here or on the Runs page to compare them")
    st.stop()

st.header("Training curves")
c1, c2, c3, c4 = st.columns([1, 1, 1, 2])
metric = c1.selectbox("Metric", METRICS, key="compare_metric")
x_axis = c2.selectbox("x axis", X_AXES, key="compare_x")
log_y = c3.toggle("Log y", value=metric == "loss", key="compare_log_y")
alpha = c4.slider("Smoothing (EMA)", 0.0, 0.99, 0.0, 0.01, key="compare_alpha")
lines = curves(selected, metric, x_axis, alpha=alpha)
if lines.empty:
    st.info(f"no {metric} logged yet")
else:
    scale = alt.Scale(type="log") if log_y else alt.Scale(zero=False)
    chart = (
        alt.Chart(lines)
        .mark_line()
        .encode(
            x=alt.X(x_axis, title="wall time (s)" if x_axis == "wall_time" else x_axis),
            y=alt.Y(metric, scale=scale),
            color=alt.Color("run", legend=alt.Legend(orient="bottom", columns=1)),
            tooltip=["run", x_axis, metric],
        )
        .interactive()
    )
    st.altair_chart(chart, width="stretch")

st.header("Final metrics")
metrics = final_metrics(selected)
best = best_per_column(metrics)
st.dataframe(
    metrics.style.apply(
        lambda _: best.map(lambda b: "font-weight: bold; background-color: #d4f4dd" if b else ""),
        axis=None,
    ).format(precision=4, na_rep="—"),
    column_config={"wall_time": st.column_config.NumberColumn("wall time (s)", format="%.1f")},
)
st.caption("Best of each `loss` and `eval.*` column highlighted: lower is better for all of them.")
st.download_button(
    "Download CSV", metrics.to_csv().encode(), "compare_metrics.csv", "text/csv", key="compare_csv"
)

groups = seed_groups(selected)
if groups:
    st.header("Over seeds")
    for group in groups:
        st.caption(
            f"{group[0].name}: {len(group)} runs differing only in seed "
            f"({', '.join(str(r.spec.get('seed')) for r in group)}) — mean ± std"
        )
        st.dataframe(seed_summary(group).style.format(precision=4, na_rep="—"))

st.header("Spec diff")
show_all = st.toggle("Show every key", value=False, key="compare_all_keys")
diff = spec_diff(selected, all_keys=show_all)
if diff.empty:
    st.info("the resolved specs are identical")
else:
    st.dataframe(diff)

st.header("Samples")
columns = st.columns(min(len(selected), 3))
for i, record in enumerate(selected):
    column = columns[i % len(columns)]
    column.subheader(f"{record.name}", help=record.id)
    names = sample_sets(record)
    if not names:
        column.info("no samples stored")
        continue
    name = column.selectbox("Sample set", names, key=f"compare_set_{record.id}")
    samples, reference = record.samples[name], record.samples.get(REFERENCE)
    view = sample_view(samples.shape[1])
    if view == "image":
        column.image(image_tile(samples), clamp=True, width="stretch")
    elif view == "scatter":
        points = scatter_frame(samples, reference)
        column.altair_chart(
            alt.Chart(points)
            .mark_circle(size=8, opacity=0.6)
            .encode(
                x="x",
                y="y",
                color=alt.Color(
                    "set",
                    scale=alt.Scale(domain=[REFERENCE, "samples"], range=["lightgrey", "#1f77b4"]),
                ),
                order=alt.Order("set", sort="ascending"),
            ),
            width="stretch",
        )
    else:
        column.altair_chart(
            alt.Chart(marginal_frame(samples, reference))
            .mark_bar(opacity=0.6)
            .encode(
                x=alt.X("value", bin=alt.Bin(maxbins=30)),
                y=alt.Y("count()", stack=None),
                color=alt.Color(
                    "set",
                    scale=alt.Scale(domain=[REFERENCE, "samples"], range=["lightgrey", "#1f77b4"]),
                ),
            )
            .properties(height=120)
            .facet(row="coordinate"),
            width="stretch",
        )
