"""Compare: curves, final metrics, spec diff, samples and seed aggregates of selected runs.

The selection, the metric and the smoothing are in the URL (``/compare?runs=ID&runs=ID&
metric=loss&smoothing=0.9``; the older ``?runs=ID,ID`` works too) and in the session.
"""

import altair as alt
import numpy as np
import streamlit as st

from app import state
from app.compare import (
    X_AXES,
    best_per_column,
    curves,
    direction_note,
    final_metrics,
    format_number,
    metric_direction,
    metric_directions,
    seed_groups,
    seed_summary,
    series_names,
    spec_diff,
)
from app.samples import (
    REFERENCE,
    image_bounds,
    image_tile,
    marginal_frame,
    sample_sets,
    sample_view,
    scatter_frame,
    square_domains,
    upscale,
)
from app.table import is_integer_column, summary
from app.ui import plain, run_store, seed_selection, show_selection
from diffsde import get_registry
from diffsde.runs import RunReadError

COLOURS = {"samples": "#1f77b4", REFERENCE: "#ff7f0e"}  # distinct, colour-blind safe pair
SCATTER_SIZE = 360  # px: square, so that x and y share one scale
IMAGE_SCALE = 6  # each pixel of a digit shown as 6×6 (nearest neighbour)

runs_dir, found = run_store("Compare")
records = {record.id: record for record in found}
labels = {record.id: summary(record).label for record in found}

seed_selection(records)
chosen = st.multiselect(
    "Runs",
    options=list(records),
    format_func=labels.__getitem__,
    key=state.SELECTION,
    help="Also picked on the Runs page. Each run is named `name · seed · short id`.",
)
show_selection()
selected = [records[i] for i in chosen if i in records]
if not selected:
    st.info("pick runs here or on the Runs page to compare them")
    st.stop()

st.header("Training curves")
c1, c2, c3, c4 = st.columns([1, 1, 1, 2])
metric = c1.selectbox(
    "Metric",
    series_names(selected) or ["loss"],
    key="metric",
    bind="query-params",
    persist_state="session",
    help="Every series the selected runs logged: loss, lr, grad_norm, then a method's own.",
)
x_axis = c2.selectbox("x axis", X_AXES, key="compare_x")
log_y = c3.toggle("Log y", value=metric == "loss", key="compare_log_y")
alpha = c4.slider(
    "Smoothing (EMA)",
    0.0,
    0.99,
    0.0,
    0.01,
    key="smoothing",
    bind="query-params",
    persist_state="session",
)
lines = curves(selected, [metric], x_axis, alpha=alpha).rename(columns={"value": metric})
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
            color=alt.Color(
                "run", legend=alt.Legend(orient="bottom", columns=1, labelLimit=0, title=None)
            ),
            tooltip=["run", x_axis, metric],
        )
        .interactive()
    )
    st.altair_chart(chart, width="stretch", key="compare_curves")

st.header("Final metrics")
directions = metric_directions(get_registry())
metrics = final_metrics(selected)
best = best_per_column(metrics, directions)
formats = {
    column: (lambda v, i=is_integer_column(str(column)): format_number(v, integer=i))
    for column in metrics.columns
    if column not in ("run", "name")
}
st.dataframe(
    metrics.style.apply(
        lambda _: best.map(lambda b: "font-weight: bold; background-color: #d4f4dd" if b else ""),
        axis=None,
    ).format(formats, na_rep="—"),
    column_config={
        "run": st.column_config.TextColumn("run", pinned=True),
        "wall_time": st.column_config.TextColumn("wall time (s)"),
    },
    key="compare_metrics",
)
ranked = [c for c in metrics.columns if metric_direction(str(c), directions) is not None]
st.caption(direction_note(ranked, directions) + " (as each metric declares).")
st.download_button(
    "Download CSV", metrics.to_csv().encode(), "compare_metrics.csv", "text/csv", key="compare_csv"
)

groups = seed_groups(selected)
if groups:
    st.header("Over seeds")
    for group in groups:
        st.caption(
            f"{group[0].name}: {len(group)} runs differing only in seed "
            f"({', '.join(str(r.spec.get('seed')) for r in group)}) — mean ± std (ddof 1)"
        )
        summary = seed_summary(group)
        st.dataframe(summary[["mean ± std", "n"]], key=f"compare_seeds_{group[0].id}")

st.header("Spec diff")
show_all = st.toggle("Show every key", value=False, key="compare_all_keys")
diff = spec_diff(selected, all_keys=show_all)
if diff.empty:
    st.info("the resolved specs are identical")
else:
    labelled = diff.rename(columns={r.id: labels[r.id] for r in selected})
    st.dataframe(labelled, key="compare_diff")


def _scatter(samples, reference):
    points = scatter_frame(samples, reference)
    x_domain, y_domain = square_domains(points)
    base = alt.Chart(points).encode(
        x=alt.X("x", scale=alt.Scale(domain=x_domain, nice=False), title="x₀"),
        y=alt.Y("y", scale=alt.Scale(domain=y_domain, nice=False), title="x₁"),
        color=alt.Color(
            "set",
            scale=alt.Scale(domain=["samples", REFERENCE], range=list(COLOURS.values())),
            legend=alt.Legend(orient="bottom", title=None),
        ),
    )
    # Samples below, the reference on top, both see-through: neither hides the other.
    drawn = base.transform_filter(alt.datum.set == "samples").mark_circle(size=10, opacity=0.45)
    ref = base.transform_filter(alt.datum.set == REFERENCE).mark_circle(size=10, opacity=0.55)
    return alt.layer(drawn, ref).properties(width=SCATTER_SIZE, height=SCATTER_SIZE)


st.header("Samples")
columns = st.columns(min(len(selected), 3))
for i, record in enumerate(selected):
    column = columns[i % len(columns)]
    column.subheader(plain(labels[record.id]), help=record.id)
    names = sample_sets(record)
    if not names:
        column.info("no samples stored")
        continue
    name = column.selectbox("Sample set", names, key=f"compare_set_{record.id}")
    try:
        samples, reference = record.samples[name], record.samples.get(REFERENCE)
    except RunReadError as e:  # a damaged result file: say so, draw the other runs
        column.error(plain(e))
        continue
    view = sample_view(samples.shape[1])
    if view == "image":
        bounds = image_bounds(reference if reference is not None else samples)
        left, right = column.columns(2)
        for place, array, title in ((left, samples, name), (right, reference, REFERENCE)):
            if array is None:
                place.caption(f"no {title} stored")
                continue
            tile = upscale(image_tile(array, bounds=bounds), IMAGE_SCALE)
            # width = the array's own: the browser shows the pixels as they are, no resampling
            place.image(
                np.clip(tile, 0, 1),
                caption=title,
                clamp=True,
                width=tile.shape[1],
                output_format="PNG",  # lossless: JPEG would smear the pixel edges
            )
    elif view == "scatter":
        column.altair_chart(_scatter(samples, reference), width="content", key=f"scatter_{i}")
    else:
        column.altair_chart(
            alt.Chart(marginal_frame(samples, reference))
            .mark_bar(opacity=0.55)
            .encode(
                x=alt.X("value", bin=alt.Bin(maxbins=30)),
                y=alt.Y("count()", stack=None),
                color=alt.Color(
                    "set",
                    scale=alt.Scale(domain=["samples", REFERENCE], range=list(COLOURS.values())),
                ),
            )
            .properties(height=120)
            .facet(row="coordinate"),
            width="stretch",
            key=f"marginals_{i}",
        )
